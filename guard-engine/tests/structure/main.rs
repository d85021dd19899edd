//! The shape of guard-engine's source: its module graph has no cycle, the policy is layered
//! bottom-up, and no file is too long to read.
//!
//! The graph is read from the source text, so the check needs no dependency: every path that
//! starts with `crate::`, `super::`, `self::` or the name of a child module, in `use` trees
//! (`use crate::{a, b::{c, d}}`) and in code (`crate::x::y(..)`), outside comments, strings and
//! `#[cfg(test)]` items. Tests are left out on purpose: a test in a low layer may drive the
//! whole pipeline (`parse_policy`) without making the layer depend on it.
//!
//! Nodes are the top-level modules, except `policy`, whose submodules are nodes of their own;
//! `policy` itself is then its facade (`policy/mod.rs`, which re-exports the submodules), so a
//! submodule that imports through the facade (`crate::policy::Mode`) depends on all of policy.
//! Deeper modules (`destructive/walk.rs`, `policy/validate/chains.rs`) count as the node they
//! sit in.

mod graph;
mod source;

use std::fs;
use std::path::{Path, PathBuf};

use graph::{cycles, engine_graph};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
/// Top-level modules whose submodules are nodes of the graph.
const LAYERED: &[&str] = &["policy"];
/// Longest source file, tests included.
const MAX_LINES: usize = 800;

/// The policy's submodules, bottom-up: each may import only from the groups before it (and
/// from outside the policy). The facade, `policy` itself, sits on top of them all.
const POLICY_LAYERS: &[&[&str]] = &[
    &["policy::dns", "policy::error", "policy::names", "policy::network", "policy::paths"],
    &["policy::model"],
    &["policy::raw"],
    &["policy::validate"],
    &["policy::compile"],
];
/// The evaluators read the validated policy, never how it is written, checked or compiled.
const MODEL_READERS: &[&str] = &["destructive", "trajectory"];
const MODEL_READERS_MUST_NOT_IMPORT: &[&str] =
    &["policy", "policy::raw", "policy::validate", "policy::compile", "policy::error"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            out.push(path);
        }
    }
}
// ---- the checks -------------------------------------------------------------------------

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = engine_graph();
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles in guard-engine (each edge: where it is first imported):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_policy_is_layered_bottom_up() {
    let graph = engine_graph();
    let layer_of = |node: &str| POLICY_LAYERS.iter().position(|layer| layer.contains(&node));
    let mut wrong = Vec::new();
    for (from, edges) in &graph {
        if from.starts_with("policy::") && layer_of(from).is_none() {
            wrong.push(format!("{from} is in no layer of POLICY_LAYERS"));
        }
        let Some(from_layer) = layer_of(from) else {
            continue;
        };
        for (to, place) in edges {
            let upward = match layer_of(to) {
                Some(to_layer) => to_layer >= from_layer,
                None => to == "policy",
            };
            if upward {
                wrong.push(format!("{from} imports {to} ({place})"));
            }
        }
    }
    assert!(wrong.is_empty(), "policy layers (bottom-up: {POLICY_LAYERS:?}):\n{}", wrong.join("\n"));
}

#[test]
fn evaluators_import_only_the_policy_model() {
    let graph = engine_graph();
    let mut wrong = Vec::new();
    for reader in MODEL_READERS {
        let edges = graph.get(*reader).unwrap_or_else(|| panic!("no module `{reader}` in the graph"));
        for (to, place) in edges {
            if MODEL_READERS_MUST_NOT_IMPORT.contains(&to.as_str()) {
                wrong.push(format!("{reader} imports {to} ({place})"));
            }
        }
    }
    assert!(wrong.is_empty(), "evaluators must read only the policy model:\n{}", wrong.join("\n"));
}

#[test]
fn the_graph_sees_the_imports_it_should() {
    // Without this, a reader that found nothing would pass every check above.
    let graph = engine_graph();
    for (from, to) in [
        ("destructive", "policy::model"),
        ("trajectory", "policy::model"),
        ("policy::validate", "policy::raw"),
        ("policy::raw", "policy::model"),
        ("policy::compile", "confinement"),
        ("records", "syscalls"),
        ("policy", "policy::validate"),
    ] {
        assert!(graph.get(from).is_some_and(|edges| edges.contains_key(to)), "no edge {from} -> {to} in {graph:#?}");
    }
}

#[test]
fn no_source_file_is_longer_than_the_limit() {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    assert!(!files.is_empty());
    let mut long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let text = fs::read_to_string(file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            let lines = text.lines().count();
            let shown = file.strip_prefix(SRC).unwrap_or(file).display();
            (lines > MAX_LINES).then(|| format!("src/{shown}: {lines} lines"))
        })
        .collect();
    long.sort();
    assert!(long.is_empty(), "files over {MAX_LINES} lines (split them by stage):\n{}", long.join("\n"));
}
