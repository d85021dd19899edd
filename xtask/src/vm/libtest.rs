//! Reads the full stage's console: libtest's output for each integration-test binary, between
//! the guest's `vm-rust: begin NAME` and `vm-rust: end NAME rc=N secs=S` lines, run with
//! `--show-output` so the stdout of passing tests (where a test says `SKIPPED <name>: why`)
//! is printed too.

/// How one test ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Ignored,
    /// Passed by returning early, saying why (`SKIPPED <test>: <why>`).
    Skip(String),
}

#[derive(Default)]
pub struct Suite {
    /// (binary, test, outcome), in the order they finished.
    pub tests: Vec<(String, String, Outcome)>,
    /// Binaries that ended without a clean libtest result: (binary, rc, seconds).
    pub broken: Vec<(String, i32, String)>,
    /// (binary, seconds).
    pub timings: Vec<(String, String)>,
    binary: Option<String>,
    /// The test whose captured stdout is being printed (`---- NAME stdout ----`).
    section: Option<String>,
    saw_result: bool,
}

impl Suite {
    pub fn observe(&mut self, line: &str) {
        if let Some(name) = line.strip_prefix("vm-rust: begin ") {
            self.binary = Some(name.trim().to_string());
            self.section = None;
            self.saw_result = false;
            return;
        }
        if let Some(rest) = line.strip_prefix("vm-rust: end ") {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or("?").to_string();
            let mut rc = -1;
            let mut secs = "?".to_string();
            for word in words {
                if let Some(v) = word.strip_prefix("rc=") {
                    rc = v.parse().unwrap_or(-1);
                } else if let Some(v) = word.strip_prefix("secs=") {
                    secs = v.to_string();
                }
            }
            // A binary that failed without a FAILED test (crashed, timed out, built wrong).
            let failed_tests = self.tests.iter().any(|(b, _, o)| *b == name && *o == Outcome::Fail);
            if rc != 0 && !failed_tests {
                self.broken.push((name.clone(), rc, secs.clone()));
            }
            self.timings.push((name, secs));
            self.binary = None;
            self.section = None;
            return;
        }
        let Some(binary) = self.binary.clone() else { return };
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((test, result)) = rest.rsplit_once(" ... ")
        {
            let outcome = match result.trim() {
                "ok" => Outcome::Pass,
                "FAILED" => Outcome::Fail,
                r if r.starts_with("ignored") => Outcome::Ignored,
                _ => return,
            };
            self.tests.push((binary, test.trim().to_string(), outcome));
            return;
        }
        if let Some(name) = line.strip_prefix("---- ").and_then(|l| l.strip_suffix(" stdout ----")) {
            self.section = Some(name.trim().to_string());
            return;
        }
        if line == "successes:" || line == "failures:" || line.starts_with("test result:") {
            self.section = None;
            self.saw_result |= line.starts_with("test result:");
            return;
        }
        if let (Some(test), Some(why)) = (self.section.clone(), line.strip_prefix("SKIPPED "))
            && let Some(entry) =
                self.tests.iter_mut().find(|(b, t, o)| *b == binary && *t == test && *o == Outcome::Pass)
        {
            let why = why.split_once(": ").map_or(why, |(_, reason)| reason);
            entry.2 = Outcome::Skip(why.to_string());
        }
    }

    /// Binaries that ran to their end line.
    pub fn finished_binaries(&self) -> Vec<String> {
        self.timings.iter().map(|(b, _)| b.clone()).collect()
    }

    /// Only what finished binaries reported (a crash cut the last one short).
    pub fn finished_only(self) -> Suite {
        let done = self.finished_binaries();
        Suite {
            tests: self.tests.into_iter().filter(|(b, _, _)| done.contains(b)).collect(),
            broken: self.broken,
            timings: self.timings,
            ..Suite::default()
        }
    }

    /// (passed, failed) as the guest counts them: ok lines; FAILED lines and broken binaries.
    pub fn counts(&self) -> (u32, u32) {
        let passed = self.tests.iter().filter(|(_, _, o)| matches!(o, Outcome::Pass | Outcome::Skip(_))).count();
        let failed = self.tests.iter().filter(|(_, _, o)| *o == Outcome::Fail).count() + self.broken.len();
        (passed as u32, failed as u32)
    }

    /// This suite's results followed by a later boot's.
    pub fn then(mut self, later: Suite) -> Suite {
        self.tests.extend(later.tests);
        self.broken.extend(later.broken);
        self.timings.extend(later.timings);
        self
    }

    /// One line per test: `PASS`, `SKIP ...: why`, `FAIL`, `IGNORED`; then broken binaries.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .tests
            .iter()
            .map(|(binary, test, outcome)| match outcome {
                Outcome::Pass => format!("PASS {binary}::{test}"),
                Outcome::Fail => format!("FAIL {binary}::{test}"),
                Outcome::Ignored => format!("IGNORED {binary}::{test}"),
                Outcome::Skip(why) => format!("SKIP {binary}::{test}: {why}"),
            })
            .collect();
        out.extend(self.broken.iter().map(|(b, rc, secs)| format!("FAIL {b}: exited rc={rc} after {secs} s")));
        out
    }

    /// `rust: 90 passed, 3 skipped, 1 failed (11 files)`, or nothing when no binary ran.
    pub fn summary(&self) -> String {
        if self.timings.is_empty() && self.tests.is_empty() {
            return String::new();
        }
        let count = |f: fn(&Outcome) -> bool| self.tests.iter().filter(|(_, _, o)| f(o)).count();
        let timings: Vec<String> = self.timings.iter().map(|(b, s)| format!("{b} {s} s")).collect();
        format!(
            "rust: {} passed, {} skipped, {} failed, {} ignored; {} broken binaries ({} files: {})",
            count(|o| *o == Outcome::Pass),
            count(|o| matches!(o, Outcome::Skip(_))),
            count(|o| *o == Outcome::Fail),
            count(|o| *o == Outcome::Ignored),
            self.broken.len(),
            self.timings.len(),
            timings.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_results_skips_and_broken_binaries() {
        let mut suite = Suite::default();
        for line in [
            "vm-rust: begin foundation",
            "running 3 tests",
            "test exec_is_recorded ... ok",
            "test needs_git ... ok",
            "test open_denied ... FAILED",
            "successes:",
            "---- needs_git stdout ----",
            "SKIPPED needs_git: git not available (no network)",
            "",
            "failures:",
            "---- open_denied stdout ----",
            "SKIPPED nothing: this one failed anyway",
            "test result: FAILED. 2 passed; 1 failed",
            "vm-rust: end foundation rc=101 secs=40",
            "vm-rust: begin outlive",
            "test a ... ok",
            "vm-rust: end outlive rc=124 secs=600",
        ] {
            suite.observe(line);
        }
        assert_eq!(
            suite.lines(),
            vec![
                "PASS foundation::exec_is_recorded",
                "SKIP foundation::needs_git: git not available (no network)",
                "FAIL foundation::open_denied",
                "PASS outlive::a",
                "FAIL outlive: exited rc=124 after 600 s",
            ]
        );
        assert!(
            suite.summary().starts_with("rust: 2 passed, 1 skipped, 1 failed, 0 ignored; 1 broken"),
            "{}",
            suite.summary()
        );
    }
}
