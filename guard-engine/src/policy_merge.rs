//! Layering policies: a base (usually the built-in default) and snippets on top of it, such
//! as the agent recipes in `recipes/` (`guard policy merge`).
//!
//! The files are merged as YAML trees, then the result is validated as one policy:
//! * mappings merge key by key, recursively;
//! * the rule lists (`credentials.rules`, `destructive.rules`, `chains`) merge by `id`: a
//!   snippet's rule with the id of a base rule is merged into that rule (so a snippet can add
//!   `consumers` or `paths` to `dotenv`), any other rule is appended;
//! * every other list (`scope.network.allow`, `write_roots`, `consumers`, `cgroup_roots`, ...)
//!   gets the snippet's entries appended, skipping entries it already has;
//! * a scalar (`mode: enforce`) replaces the base's.
//!
//! Nothing is ever removed: a snippet widens or tightens settings, it cannot drop a base rule.

use serde_json::{Map, Value};

use crate::policy::{PolicyError, Problem, from_yaml_error, parse_policy};

/// Lists whose entries are rules identified by their `id` (paths from the top of the file).
const RULE_LISTS: &[&[&str]] = &[&["credentials", "rules"], &["destructive", "rules"], &["chains"]];

/// A merge that could not produce a valid policy.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A file is no YAML mapping (syntax error, or a list or scalar at the top).
    #[error("{0}")]
    Parse(PolicyError),
    /// The merged policy does not validate; the locations are in the merged text.
    #[error("the merged policy is invalid (lines refer to the merged text):\n{error}\n--- merged text ---\n{text}")]
    Invalid { error: PolicyError, text: String },
    /// The merged tree could not be written as YAML.
    #[error("writing the merged policy as YAML: {0}")]
    Write(String),
}

/// One input: a name for messages (the file path) and its text.
pub struct Layer<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// Merges `snippets` onto `base`, in order, and returns the merged policy as YAML, validated.
pub fn merge_policies(base: &Layer<'_>, snippets: &[Layer<'_>]) -> Result<String, MergeError> {
    let mut merged = tree(base)?;
    for snippet in snippets {
        let overlay = tree(snippet)?;
        merge_into(&mut merged, overlay, &mut Vec::new());
    }
    let text = serde_saphyr::to_string(&merged).map_err(|err| MergeError::Write(err.to_string()))?;
    match parse_policy("<merged policy>", &text) {
        Ok(_) => Ok(text),
        Err(error) => Err(MergeError::Invalid { error, text }),
    }
}

fn tree(layer: &Layer<'_>) -> Result<Value, MergeError> {
    let value: Value =
        serde_saphyr::from_str(layer.text).map_err(|err| MergeError::Parse(from_yaml_error(layer.name, &err)))?;
    if value.is_object() {
        Ok(value)
    } else {
        let what = if value.is_null() { "empty" } else { "not a mapping of policy sections" };
        Err(MergeError::Parse(PolicyError {
            source_name: layer.name.to_string(),
            problems: vec![Problem { line: 1, column: 1, message: format!("the policy is {what}") }],
        }))
    }
}

/// Merge `overlay` into `base`; `path` is where in the file we are (keys from the top).
fn merge_into(base: &mut Value, overlay: Value, path: &mut Vec<String>) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => {
                        path.push(key);
                        merge_into(existing, value, path);
                        path.pop();
                    }
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(base), Value::Array(overlay)) if is_rule_list(path) => {
            for rule in overlay {
                match rule_id(&rule).and_then(|id| base.iter_mut().find(|known| rule_id(known) == Some(id))) {
                    Some(known) => merge_into(known, rule, &mut vec!["<rule>".into()]),
                    None => base.push(rule),
                }
            }
        }
        (Value::Array(base), Value::Array(overlay)) => {
            for entry in overlay {
                if !base.contains(&entry) {
                    base.push(entry);
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

fn is_rule_list(path: &[String]) -> bool {
    RULE_LISTS.iter().any(|list| list.len() == path.len() && list.iter().zip(path).all(|(a, b)| a == b))
}

fn rule_id(rule: &Value) -> Option<&str> {
    rule.as_object().and_then(|rule: &Map<String, Value>| rule.get("id")).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{CompileContext, DEFAULT_POLICY_YAML};

    fn default_layer() -> Layer<'static> {
        Layer { name: "<default>", text: DEFAULT_POLICY_YAML }
    }

    #[test]
    fn lists_append_rules_merge_by_id_scalars_replace() {
        let snippet = r#"
scope:
  network:
    mode: enforce
    allow: ["api.example.com:443", "api.example.com:443"]
  files:
    write_roots: ["~/.agent", /tmp]
credentials:
  rules:
    - id: dotenv
      consumers: [/opt/agent/bin/agent]
    - id: agent-token
      paths: ["~/.agent/token.json"]
      consumers: [/opt/agent/bin/agent]
"#;
        let text = merge_policies(&default_layer(), &[Layer { name: "agent.yaml", text: snippet }]).expect("merges");
        let policy = parse_policy("merged", &text).expect("valid");
        let network = policy.network().expect("network scope");
        assert_eq!(network.mode, crate::policy::Mode::Enforce);
        let merged: Value = serde_saphyr::from_str(&text).expect("yaml");
        assert_eq!(merged["scope"]["network"]["allow"], serde_json::json!(["api.example.com:443"]));
        let roots = merged["scope"]["files"]["write_roots"].as_array().expect("roots");
        assert_eq!(roots.iter().filter(|r| *r == "/tmp").count(), 1, "{roots:?}");
        assert_eq!(roots.last(), Some(&serde_json::json!("~/.agent")));
        let rules = policy.credential_rules();
        let dotenv = rules.iter().find(|r| r.id == "dotenv").expect("dotenv kept");
        assert_eq!(dotenv.consumers, vec!["/opt/agent/bin/agent".to_string()]);
        assert!(!dotenv.names.is_empty(), "the base rule's names stay");
        assert_eq!(rules.iter().filter(|r| r.id == "dotenv").count(), 1);
        assert!(rules.iter().any(|r| r.id == "agent-token"));
        assert_eq!(rules.len(), parse_policy("d", DEFAULT_POLICY_YAML).expect("default").credential_rules().len() + 1);
        let compiled = policy.compile(&CompileContext::with_homes(vec!["/home/u".into()]));
        let hosts = &compiled.network.as_ref().expect("compiled network").hosts;
        assert!(hosts.iter().any(|h| h.host == "api.example.com"), "{hosts:?}");
    }

    /// The agent recipes (`recipes/*.yaml`): each merges onto the default into a valid policy
    /// whose compiled network scope holds the recipe's endpoint names and whose write roots
    /// and credential rules include the recipe's.
    #[test]
    fn every_agent_recipe_merges_onto_the_default_and_compiles_its_endpoints() {
        let recipes = [
            ("claude-code", include_str!("../../recipes/claude-code.yaml")),
            ("codex", include_str!("../../recipes/codex.yaml")),
            ("aider", include_str!("../../recipes/aider.yaml")),
            ("cursor-agent", include_str!("../../recipes/cursor-agent.yaml")),
            ("github-actions", include_str!("../../recipes/github-actions.yaml")),
        ];
        for (name, text) in recipes {
            let merged = merge_policies(&default_layer(), &[Layer { name, text }])
                .unwrap_or_else(|err| panic!("recipe {name}: {err}"));
            let policy = parse_policy(name, &merged).expect("validated by merge");
            let compiled = policy.compile(&CompileContext::with_homes(vec!["/home/u".into()]));
            let recipe: Value = serde_saphyr::from_str(text).expect("recipe yaml");
            let hosts = &compiled.network.as_ref().expect("network scope").hosts;
            for entry in recipe["scope"]["network"]["allow"].as_array().expect("recipe allow list") {
                let host = entry.as_str().expect("string").split(':').next().expect("host");
                assert!(hosts.iter().any(|h| h.host == host), "{name}: {host} not in the compiled scope {hosts:?}");
            }
            let roots = &compiled.files.as_ref().expect("file scope").write_roots;
            for root in recipe["scope"]["files"]["write_roots"].as_array().expect("recipe roots") {
                let root = root.as_str().expect("string").replace("~/", "/home/u/");
                assert!(roots.iter().any(|r| r.trim_end_matches('/') == root), "{name}: {root} not in {roots:?}");
            }
            for rule in recipe["credentials"]["rules"].as_array().into_iter().flatten() {
                let id = rule["id"].as_str().expect("id");
                let merged_rule = policy.credential_rules().iter().find(|r| r.id == id).expect("rule merged");
                for consumer in rule["consumers"].as_array().into_iter().flatten() {
                    assert!(merged_rule.consumers.iter().any(|c| c == consumer), "{name}: {consumer} not bound");
                }
            }
        }
    }

    /// `scope.unix` merges like the other scope sections: `paths` appended without
    /// duplicates, `mode` replaced; `$GUARD_SOCKET` survives the round trip through YAML.
    #[test]
    fn scope_unix_paths_append_and_mode_replaces() {
        let snippet = "scope:\n  unix:\n    mode: enforce\n    paths: [/run/docker.sock, /run/agent/agent.sock]\n";
        let text = merge_policies(&default_layer(), &[Layer { name: "unix.yaml", text: snippet }]).expect("merges");
        let policy = parse_policy("merged", &text).expect("valid");
        let unix = policy.unix().expect("unix scope");
        assert_eq!(unix.mode, crate::policy::Mode::Enforce);
        let merged: Value = serde_saphyr::from_str(&text).expect("yaml");
        let paths = merged["scope"]["unix"]["paths"].as_array().expect("paths");
        assert_eq!(paths.iter().filter(|p| *p == "/run/docker.sock").count(), 1, "{paths:?}");
        assert_eq!(paths.last(), Some(&serde_json::json!("/run/agent/agent.sock")));
        assert!(unix.paths.contains(&crate::policy::UnixPath::GuardSocket));
        // A snippet alone (on an empty base section) brings the section in.
        let base = Layer { name: "base.yaml", text: "mode: monitor\n" };
        let text = merge_policies(&base, &[Layer { name: "unix.yaml", text: snippet }]).expect("merges");
        assert_eq!(parse_policy("merged", &text).expect("valid").unix().map(|unix| unix.paths.len()), Some(2));
    }

    #[test]
    fn an_invalid_result_names_the_problem_and_a_broken_snippet_its_file() {
        let bad =
            merge_policies(&default_layer(), &[Layer { name: "x.yaml", text: "scope:\n  network:\n    alow: []\n" }]);
        let message = bad.expect_err("unknown key").to_string();
        assert!(message.contains("the merged policy is invalid") && message.contains("alow"), "{message}");
        let broken = merge_policies(&default_layer(), &[Layer { name: "y.yaml", text: "scope: [\n" }]);
        assert!(broken.expect_err("syntax").to_string().starts_with("y.yaml:"));
        let list = merge_policies(&default_layer(), &[Layer { name: "z.yaml", text: "- a\n" }]);
        assert!(list.expect_err("not a mapping").to_string().contains("z.yaml:1:1: the policy is not a mapping"));
    }
}
