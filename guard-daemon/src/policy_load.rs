//! From a policy (file or built-in) to kernel maps and rule metadata.

use std::path::Path;

use guard_common::Config;
use guard_engine::records::RuleInfo;

use crate::kernel::Kernel;

pub struct LoadedPolicy {
    /// A file path, or `builtin`.
    pub source: String,
    rules: Vec<RuleInfo>,
}

pub fn load(path: Option<&Path>) -> anyhow::Result<LoadedPolicy> {
    let source = path.map(|p| p.display().to_string()).unwrap_or_else(|| "builtin".to_string());
    Ok(LoadedPolicy { source, rules: Vec::new() })
}

impl LoadedPolicy {
    pub fn apply_config(&self, _config: &mut Config) {}

    pub fn write_maps(&self, _kernel: &mut Kernel) -> anyhow::Result<()> {
        Ok(())
    }

    pub fn rule_infos(&self) -> Vec<RuleInfo> {
        self.rules.clone()
    }
}
