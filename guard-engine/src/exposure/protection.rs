//! Which credential rule of the compiled policy protects a file, as the kernel would decide:
//! a path glob (matched on the path and on a symlink's target: the kernel keys files by the
//! inode an open reaches), else a name pattern on the file's own name (not below a directory
//! exempted with a `!dir/` path), exemptions (`!*.pub`, `!/etc/ssl/certs/`) winning.

use thiserror::Error;

use crate::policy::{CompiledPolicy, CredentialPathMatcher, Mode};

use super::{Protection, Status};

#[derive(Debug, Error)]
pub enum ProtectionError {
    #[error("the policy's credential path globs do not build: {0}")]
    Glob(#[from] globset::Error),
}

/// Classifies files against one compiled policy.
pub struct Protector<'a> {
    compiled: &'a CompiledPolicy,
    matcher: CredentialPathMatcher,
    /// `!dir/` paths: name matches below them are no credentials.
    exempt_dirs: Vec<String>,
}

impl<'a> Protector<'a> {
    pub fn new(compiled: &'a CompiledPolicy) -> Result<Self, ProtectionError> {
        let matcher = compiled.credentials.path_matcher()?;
        let exempt_dirs = compiled
            .credentials
            .paths
            .iter()
            .filter(|path| path.rule.exempt != 0 && path.glob.ends_with("/**"))
            .map(|path| path.scan_root.clone())
            .collect();
        Ok(Protector { compiled, matcher, exempt_dirs })
    }

    /// The protection of the file at `path`; `target` is where a symlink at `path` leads.
    pub fn file(&self, path: &str, target: Option<&str>) -> Protection {
        let opened = target.unwrap_or(path);
        let by_path = [Some(path), target].into_iter().flatten().find_map(|candidate| {
            let rule = self.matcher.classify(candidate)?;
            Some((rule, self.matching_glob(rule.rule, candidate)))
        });
        if let Some((rule, glob)) = by_path {
            return self.protection(rule.rule, format!("path {glob}"));
        }
        let name = opened.rsplit('/').next().unwrap_or(opened);
        let below_exempt = self.exempt_dirs.iter().any(|dir| crate::policy::paths::is_strictly_below(opened, dir));
        if !below_exempt && let Some(rule) = self.compiled.credentials.match_name(name) {
            return self.protection(rule.rule, format!("name {}", self.matching_name(rule.rule, name)));
        }
        Protection::unprotected(None)
    }

    /// A credential rule names files called `name` (an exemption such as `!*.pub` does not count).
    pub fn names(&self, name: &str) -> bool {
        self.compiled.credentials.match_name(name).is_some()
    }

    /// Environment variables of a session's processes: the processes hold them already, so
    /// no rule protects them; say what the `proc_environ` rule does cover.
    pub fn environment(&self) -> Protection {
        let note = match self.compiled.credentials.proc_environ.and_then(|rule| self.compiled.rule(rule.rule)) {
            Some(meta) => format!(
                "held by the session's own processes; rule {} ({}) only guards /proc/<pid>/environ against other processes",
                meta.id,
                meta.mode.as_str()
            ),
            None => "held by the session's own processes; no rule guards /proc/<pid>/environ either".into(),
        };
        Protection::unprotected(Some(note))
    }

    fn protection(&self, rule: u32, matched: String) -> Protection {
        let Some(meta) = self.compiled.rule(rule) else {
            return Protection::unprotected(Some(format!("rule #{rule} is missing from the compiled policy")));
        };
        let status = match meta.mode {
            Mode::Enforce => Status::Protected,
            Mode::Monitor => Status::Monitored,
        };
        let consumers = self
            .compiled
            .credentials
            .consumers
            .iter()
            .filter(|consumer| consumer.rule_ids.contains(&meta.id))
            .map(|consumer| consumer.name.clone())
            .collect();
        Protection {
            status,
            rule: Some(meta.id.clone()),
            mode: Some(meta.mode),
            matched: Some(matched),
            consumers,
            note: None,
        }
    }

    /// The first non-exempt glob of `rule` matching `path` (for the text; the matcher said one does).
    fn matching_glob(&self, rule: u32, path: &str) -> String {
        self.compiled
            .credentials
            .paths
            .iter()
            .filter(|entry| entry.rule.rule == rule && entry.rule.exempt == 0)
            .find(|entry| {
                globset::GlobBuilder::new(&entry.glob)
                    .literal_separator(true)
                    .build()
                    .is_ok_and(|glob| glob.compile_matcher().is_match(path))
            })
            .map_or_else(|| path.to_string(), |entry| entry.path.clone())
    }

    fn matching_name(&self, rule: u32, name: &str) -> String {
        let credentials = &self.compiled.credentials;
        credentials
            .exact_names
            .iter()
            .chain(&credentials.prefix_names)
            .chain(&credentials.suffix_names)
            .filter(|entry| entry.rule.rule == rule && entry.rule.exempt == 0)
            .find(|entry| crate::policy::NamePattern::parse(&entry.pattern).is_ok_and(|pattern| pattern.matches(name)))
            .map_or_else(|| name.to_string(), |entry| entry.pattern.clone())
    }
}
