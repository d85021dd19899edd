//! The module tree of guard-engine, followed from `src/lib.rs` through its `mod` declarations,
//! the graph of its imports, and the cycles in a graph.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::Path;

use crate::source::{Tok, Token, ident, is, lex, matching, paths_named, resolve, without_test_items};
use crate::{LAYERED, SRC};

/// One module (a file or an inline `mod x { .. }`): its tokens, without those of the inline
/// modules inside it.
struct Module {
    path: Vec<String>,
    file: String,
    tokens: Vec<Token>,
    children: BTreeSet<String>,
}

/// `tokens` as the body of module `path`, whose child files live in `dir`; pushes it, its
/// inline modules and, recursively, the files it declares.
fn read_module(tokens: &[Token], path: Vec<String>, file: &str, dir: &Path, modules: &mut Vec<Module>) {
    let mut own = Vec::new();
    let mut children = BTreeSet::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        if depth == 0
            && ident(tokens, i) == Some("mod")
            && let Some(name) = ident(tokens, i + 1)
        {
            children.insert(name.to_string());
            let child = [path.as_slice(), &[name.to_string()]].concat();
            if is(tokens, i + 2, &Tok::Punct('{')) {
                let end = matching(tokens, i + 2);
                read_module(&tokens[i + 3..end.saturating_sub(1)], child, file, &dir.join(name), modules);
                i = end;
                continue;
            }
            read_file(&dir.join(name), child, modules);
            i += 2;
            continue;
        }
        match tokens[i].tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        own.push(tokens[i].clone());
        i += 1;
    }
    modules.push(Module { path, file: file.to_string(), tokens: own, children });
}

/// The file of module `path`: `base.rs` or `base/mod.rs`; its children live in `base/`.
fn read_file(base: &Path, path: Vec<String>, modules: &mut Vec<Module>) {
    let flat = base.with_extension("rs");
    let file = if flat.is_file() { flat } else { base.join("mod.rs") };
    let text = fs::read_to_string(&file)
        .unwrap_or_else(|error| panic!("module {}: {}: {error}", path.join("::"), file.display()));
    let shown = file.strip_prefix(SRC).unwrap_or(&file).display().to_string();
    read_module(&without_test_items(&lex(&text)), path, &format!("src/{shown}"), base, modules);
}

/// Where each edge of the graph was seen first (`file:line`).
pub(crate) type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// The engine's module graph, at the granularity described at the top.
pub(crate) fn engine_graph() -> Graph {
    let text = fs::read_to_string(Path::new(SRC).join("lib.rs")).unwrap_or_else(|error| panic!("src/lib.rs: {error}"));
    let mut modules = Vec::new();
    read_module(&without_test_items(&lex(&text)), Vec::new(), "src/lib.rs", Path::new(SRC), &mut modules);
    let top: BTreeSet<String> =
        modules.iter().filter(|module| module.path.len() == 1).map(|m| m.path[0].clone()).collect();
    let layered: BTreeSet<Vec<String>> = modules
        .iter()
        .filter(|module| module.path.len() == 2 && LAYERED.contains(&module.path[0].as_str()))
        .map(|module| module.path.clone())
        .collect();
    let node = |path: &[String]| -> Option<String> {
        let first = path.first().filter(|first| top.contains(*first))?;
        match path.get(1) {
            Some(second) if layered.contains(&vec![first.clone(), second.clone()]) => {
                Some(format!("{first}::{second}"))
            }
            _ => Some(first.clone()),
        }
    };
    let mut graph = Graph::new();
    for module in &modules {
        let Some(from) = node(&module.path) else {
            continue;
        };
        graph.entry(from.clone()).or_default();
        for (path, line) in paths_named(&module.tokens) {
            let Some(to) = resolve(&path, &module.path, &module.children).and_then(|absolute| node(&absolute)) else {
                continue;
            };
            if to != from {
                graph.entry(from.clone()).or_default().entry(to).or_insert_with(|| format!("{}:{line}", module.file));
            }
        }
    }
    graph
}

/// Every cycle, one per strongly connected component, as `a -> b (where) -> .. -> a (where)`.
pub(crate) fn cycles(graph: &Graph) -> Vec<String> {
    // Tarjan's algorithm, iterative so a deep graph cannot overflow the stack.
    let nodes: Vec<&String> =
        graph.keys().chain(graph.values().flat_map(BTreeMap::keys)).collect::<BTreeSet<_>>().into_iter().collect();
    let index_of: BTreeMap<&String, usize> = nodes.iter().enumerate().map(|(index, node)| (*node, index)).collect();
    let successors: Vec<Vec<usize>> = nodes
        .iter()
        .map(|node| graph.get(*node).map(|edges| edges.keys().map(|to| index_of[to]).collect()).unwrap_or_default())
        .collect();
    let mut index = vec![usize::MAX; nodes.len()];
    let mut low = vec![0; nodes.len()];
    let mut on_stack = vec![false; nodes.len()];
    let mut stack = Vec::new();
    let mut components = Vec::new();
    let mut counter = 0;
    for root in 0..nodes.len() {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work = vec![(root, 0usize)];
        while let Some((v, next)) = work.pop() {
            if next == 0 {
                index[v] = counter;
                low[v] = counter;
                counter += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = successors[v].get(next) {
                work.push((v, next + 1));
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    components.push(component);
                }
            }
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
        }
    }
    components
        .into_iter()
        .map(|component| {
            // The shortest way round from the component's first node back to it.
            let members: BTreeSet<usize> = component.iter().copied().collect();
            let start = *members.iter().next().unwrap_or(&0);
            let mut came_from: BTreeMap<usize, usize> = BTreeMap::new();
            let mut queue = VecDeque::from([start]);
            'search: while let Some(v) = queue.pop_front() {
                for &w in &successors[v] {
                    if !members.contains(&w) || came_from.contains_key(&w) {
                        continue;
                    }
                    came_from.insert(w, v);
                    if w == start {
                        break 'search;
                    }
                    queue.push_back(w);
                }
            }
            let mut way = vec![start];
            let mut at = start;
            while let Some(&previous) = came_from.get(&at) {
                way.push(previous);
                at = previous;
                if at == start {
                    break;
                }
            }
            way.reverse();
            let mut text = nodes[way[0]].clone();
            for pair in way.windows(2) {
                let (from, to) = (nodes[pair[0]], nodes[pair[1]]);
                text.push_str(&format!(" -> {to} ({})", graph[from][to]));
            }
            // One cycle is shown; the others through this component are listed by name.
            if members.len() + 1 > way.len() {
                let names: Vec<&str> = members.iter().map(|&member| nodes[member].as_str()).collect();
                text.push_str(&format!("\n  (in a knot of {} modules: {})", names.len(), names.join(", ")));
            }
            text
        })
        .collect()
}

#[test]
fn cycles_are_found_and_named() {
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")] {
        graph.entry(from.into()).or_default().insert(to.into(), format!("src/{from}.rs:1"));
    }
    assert_eq!(cycles(&graph), vec!["a -> b (src/a.rs:1) -> c (src/b.rs:1) -> a (src/c.rs:1)".to_string()]);
    graph.entry("d".into()).or_default().insert("b".into(), "src/d.rs:2".into());
    assert_eq!(
        cycles(&graph),
        vec![
            "a -> b (src/a.rs:1) -> c (src/b.rs:1) -> a (src/c.rs:1)\n  (in a knot of 4 modules: a, b, c, d)"
                .to_string()
        ]
    );
    graph.entry("c".into()).or_default().remove("a");
    graph.entry("d".into()).or_default().remove("b");
    assert!(cycles(&graph).is_empty());
}
