//! `cargo xtask dist`: the release `.deb` (cargo-deb), and `cargo xtask package-check`, the
//! `test` stage that installs it on this machine and checks what it installed.
//!
//! dist: setup (installs cargo-deb CARGO_DEB_VERSION like bpf-linker) and a release build,
//! then `target/release/guard generate-assets target/release/assets` (man pages and
//! completions from the binary's own clap command), then `cargo deb -p guard-daemon
//! --no-build` with the metadata in guard-daemon/Cargo.toml and the files in packaging/.
//!
//! package-check (root): dist, `dpkg -i`, the installed files and conffiles, `guard --version`,
//! `man guard` (rendered), the bash/zsh/fish completions (bash and fish complete a real word;
//! zsh parses), `systemd-analyze verify` of the installed unit (no diagnostics at all),
//! `logrotate -d` on the snippet, the unit's ExecStart run by hand (tests/tests/service.rs
//! against /usr/bin/guard: READY=1, a refusal, the snippet's `logrotate -f` and reopen with an
//! intact chain, STOPPING=1), then `dpkg -r` (program files gone, conffiles kept, as dpkg
//! documents) and `dpkg --purge` (conffiles gone). It purges the package whatever failed.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{
    flow, note,
    util::{self, cargo, output},
};

pub const DEB_NAME: &str = "guard";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where the package installs packaging/guard.service.
pub const INSTALLED_UNIT: &str = "/usr/lib/systemd/system/guard.service";
/// Conffiles (everything the package puts under /etc).
pub const CONFFILES: [&str; 2] = ["/etc/guard/policy.yaml", "/etc/logrotate.d/guard"];
const BASH_COMPLETION: &str = "/usr/share/bash-completion/completions/guard";
const ZSH_COMPLETION: &str = "/usr/share/zsh/vendor-completions/_guard";
const FISH_COMPLETION: &str = "/usr/share/fish/vendor_completions.d/guard.fish";

/// Files the installed package must hold (beyond the conffiles); all gone after `dpkg -r`.
pub fn program_files() -> Vec<&'static str> {
    vec![
        "/usr/bin/guard",
        INSTALLED_UNIT,
        "/usr/share/man/man1/guard.1.gz",
        "/usr/share/man/man1/guard-run.1.gz",
        "/usr/share/man/man1/guard-launch.1.gz",
        "/usr/share/man/man1/guard-audit-verify.1.gz",
        BASH_COMPLETION,
        ZSH_COMPLETION,
        FISH_COMPLETION,
        "/usr/share/doc/guard/README.md",
    ]
}

/// Builds the release binary and the .deb; returns the .deb's path.
pub fn dist() -> Result<PathBuf> {
    let bin = flow::build(true)?;
    let assets = util::target_dir()?.join("release").join("assets");
    if assets.exists() {
        std::fs::remove_dir_all(&assets).with_context(|| format!("cannot clear {}", assets.display()))?;
    }
    util::run(Command::new(&bin).arg("generate-assets").arg(&assets))?;
    // Debian policy: man pages gzipped (-n: no name or time stamp, the same bytes each build).
    let pages = man_pages(&assets.join("man"))?;
    util::run(Command::new("gzip").args(["-9nf"]).args(&pages))?;
    let out_dir = util::target_dir()?.join("debian");
    let mut cmd = Command::new(cargo());
    cmd.current_dir(crate::workspace_root())
        .args(["deb", "-p", "guard-daemon", "--no-build", "--output"])
        .arg(&out_dir);
    note!("$ {}", util::display(&cmd));
    let printed = output(&mut cmd)?;
    let deb = deb_path_from_output(&printed).with_context(|| format!("cargo deb printed no .deb path: {printed:?}"))?;
    if !deb.is_file() {
        bail!("cargo deb named {} but it does not exist", deb.display());
    }
    note!("built {}", deb.display());
    Ok(deb)
}

fn man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut pages = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry.with_context(|| format!("cannot list {}", dir.display()))?.path();
        if path.extension().is_some_and(|ext| ext == "1") {
            pages.push(path);
        }
    }
    if pages.is_empty() {
        bail!("guard generate-assets wrote no man page into {}", dir.display());
    }
    pages.sort();
    Ok(pages)
}

/// cargo-deb prints the written package's path as its last line.
pub fn deb_path_from_output(printed: &str) -> Option<PathBuf> {
    printed.lines().map(str::trim).rev().find(|line| line.ends_with(".deb")).map(PathBuf::from)
}

/// `cargo xtask package-check`: dist, install, check, remove; root only.
pub fn check() -> Result<()> {
    if !util::is_root() {
        bail!("package-check installs a .deb with dpkg: run it as root");
    }
    let deb = dist()?;
    let installed = step("dpkg -i", || util::run(Command::new("dpkg").arg("-i").arg(&deb)));
    let checked = installed.and_then(|()| installed_checks());
    // Whatever failed: leave the machine without the package (and check removal when it can).
    let removed = if checked.is_ok() { removal_checks() } else { purge() };
    checked.and(removed)
}

/// The `test` stage: (passed, text for the summary).
pub fn test_stage() -> (bool, String) {
    if !util::is_root() {
        note!("SKIPPED package: needs root (dpkg -i)");
        return (true, "skipped: not root".to_string());
    }
    match check() {
        Ok(()) => (true, "passed".to_string()),
        Err(err) => (false, format!("FAILED: {err:#}")),
    }
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    note!("-- package: {name}");
    f().with_context(|| format!("package check `{name}` failed"))
}

fn installed_checks() -> Result<()> {
    step("installed files and conffiles", || {
        let listed = output(Command::new("dpkg").args(["-L", DEB_NAME]))?;
        let missing = missing_from_listing(&listed, program_files().iter().chain(CONFFILES.iter()).copied());
        if !missing.is_empty() {
            bail!("dpkg -L {DEB_NAME} lacks {}", missing.join(", "));
        }
        let conffiles = output(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", DEB_NAME]))?;
        let missing = missing_from_listing(&conffiles.replace(' ', "\n"), CONFFILES.iter().copied());
        if !missing.is_empty() {
            bail!("not conffiles: {} (dpkg-query lists {conffiles:?})", missing.join(", "));
        }
        Ok(())
    })?;
    step("guard --version", || {
        let printed = output(Command::new("/usr/bin/guard").arg("--version"))?;
        if printed.trim() != format!("guard {VERSION}") {
            bail!("prints {:?}, expected \"guard {VERSION}\"", printed.trim());
        }
        Ok(())
    })?;
    step("man guard", || {
        ensure_tool("man", "man-db")?;
        let page = man_page("guard")?;
        for want in ["NAME", "SYNOPSIS", "guard-run(1)", "Keeps AI coding agents"] {
            if !page.contains(want) {
                bail!("`man -P cat guard` lacks {want:?}:\n{page}");
            }
        }
        let run = man_page("guard-run")?;
        if !run.contains("--policy") {
            bail!("`man -P cat guard-run` does not document --policy:\n{run}");
        }
        Ok(())
    })?;
    step("bash completion", || {
        let script = format!(
            "source {BASH_COMPLETION} && complete -p guard && COMP_WORDS=(guard la) COMP_CWORD=1 \
             COMP_LINE='guard la' COMP_POINT=8 && _guard guard la guard && printf 'reply:%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let printed = output(Command::new("bash").args(["--norc", "-c", &script]))?;
        if !printed.contains("-F _guard guard") || !printed.lines().any(|l| l == "reply:launch") {
            bail!("sourcing it registers no `_guard` completing `guard la` to `launch`: {printed:?}");
        }
        Ok(())
    })?;
    step("zsh completion", || {
        ensure_tool("zsh", "zsh")?;
        output(Command::new("zsh").args(["-n", ZSH_COMPLETION])).map(drop)
    })?;
    step("fish completion", || {
        ensure_tool("fish", "fish")?;
        output(Command::new("fish").args(["--no-config", "-n", FISH_COMPLETION]))?;
        // With its configuration (that sets $fish_complete_path), as a user's shell: fish
        // autoloads the vendor file for the installed /usr/bin/guard.
        let printed = output(Command::new("fish").args(["-c", "complete -C'guard la'"]))?;
        if !printed.lines().any(|l| l.split('\t').next() == Some("launch")) {
            bail!("fish completes `guard la` without `launch`: {printed:?}");
        }
        Ok(())
    })?;
    step("systemd-analyze verify", || {
        ensure_tool("systemd-analyze", "systemd")?;
        // PID 1 is not systemd here: --man=no keeps verify from looking up Documentation=
        // pages; it loads the unit in a private test manager and checks the ExecStart binary.
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no", INSTALLED_UNIT])
            .output()
            .context("cannot run systemd-analyze")?;
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // A bad line is only a warning with exit 0: any diagnostic fails the check.
        if !out.status.success() || !said.trim().is_empty() {
            bail!("systemd-analyze verify {INSTALLED_UNIT} ({}): {}", out.status, said.trim());
        }
        if let Ok(security) =
            output(Command::new("systemd-analyze").args(["security", "--offline=yes", INSTALLED_UNIT]))
            && let Some(line) = security.lines().find(|l| l.contains("Overall exposure level"))
        {
            note!("{}", line.trim_start_matches(['→', ' ']));
        }
        Ok(())
    })?;
    step("logrotate -d", || {
        ensure_tool("logrotate", "logrotate")?;
        // Debug mode: parses the snippet and says what it would do, touching nothing.
        let out = Command::new("logrotate").args(["-d", CONFFILES[1]]).output().context("cannot run logrotate")?;
        let said = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || said.contains("error") {
            bail!("logrotate -d {} ({}): {}", CONFFILES[1], out.status, said.trim());
        }
        Ok(())
    })?;
    step("the unit's ExecStart, run by hand", || {
        let mut cmd = Command::new(cargo());
        cmd.current_dir(crate::workspace_root())
            .args(["test", "-p", "guard-tests", "--test", "service", "--", "--include-ignored"])
            .env("GUARD_BIN", "/usr/bin/guard")
            .env("GUARD_UNIT", INSTALLED_UNIT)
            .env("GUARD_LOGROTATE", CONFFILES[1])
            .env("RUST_TEST_THREADS", "1");
        util::run(&mut cmd)
    })
}

fn removal_checks() -> Result<()> {
    step("dpkg -r", || {
        util::run(Command::new("dpkg").args(["-r", DEB_NAME]))?;
        let left: Vec<&str> = program_files().into_iter().filter(|p| Path::new(p).exists()).collect();
        if !left.is_empty() {
            bail!("still there after dpkg -r: {}", left.join(", "));
        }
        // dpkg keeps conffiles on remove (state `rc`) and deletes them on purge.
        let kept: Vec<&str> = CONFFILES.into_iter().filter(|p| !Path::new(p).exists()).collect();
        if !kept.is_empty() {
            bail!("dpkg -r deleted conffiles {} (it keeps them until --purge)", kept.join(", "));
        }
        let state = package_state()?;
        if state.trim() != "rc" {
            bail!("after dpkg -r the package state is {state:?}, expected \"rc\"");
        }
        Ok(())
    })?;
    step("dpkg --purge", || {
        purge()?;
        let left: Vec<&str> = CONFFILES.into_iter().filter(|p| Path::new(p).exists()).collect();
        if !left.is_empty() || Path::new("/etc/guard").exists() {
            bail!("still there after dpkg --purge: {} /etc/guard", left.join(", "));
        }
        Ok(())
    })
}

fn purge() -> Result<()> {
    util::run(Command::new("dpkg").args(["--purge", DEB_NAME]))
}

/// `dpkg-query`'s abbreviated status (`ii `, `rc `), or "" when dpkg does not know it.
fn package_state() -> Result<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", DEB_NAME])
        .output()
        .context("cannot run dpkg-query")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `man -P cat PAGE` as plain ASCII text.
fn man_page(page: &str) -> Result<String> {
    output(Command::new("man").args(["-P", "cat", page]).env("LC_ALL", "C").env("MANWIDTH", "100"))
}

/// The wanted paths a `dpkg -L`-style listing (one path a line) does not hold.
pub fn missing_from_listing<'a>(listing: &str, wanted: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let have: std::collections::HashSet<&str> = listing.lines().map(str::trim).collect();
    wanted.into_iter().filter(|path| !have.contains(path)).collect()
}

/// Installs a Debian package when its binary is not on PATH.
fn ensure_tool(binary: &str, package: &str) -> Result<()> {
    if util::find_in_path(binary).is_some() {
        return Ok(());
    }
    note!("{binary} missing: installing Debian's {package}");
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .or_else(|_| {
        util::run(Command::new("apt-get").arg("update"))?;
        util::run(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", package])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    })
    .with_context(|| format!("cannot install {package} (for {binary})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT_SOURCE: &str = "packaging/guard.service";

    fn unit() -> String {
        std::fs::read_to_string(crate::workspace_root().join(UNIT_SOURCE)).unwrap()
    }

    /// `Key=value` lines of the unit that are not comments.
    fn active(unit: &str) -> Vec<(String, String)> {
        unit.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    }

    fn value(unit: &str, key: &str) -> Vec<String> {
        active(unit).into_iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect()
    }

    #[test]
    fn unit_is_notify_restarting_and_runs_the_packaged_policy() {
        let unit = unit();
        assert_eq!(value(&unit, "Type"), ["notify"]);
        assert_eq!(value(&unit, "Restart"), ["always"]);
        assert_eq!(
            value(&unit, "ExecStart"),
            ["/usr/bin/guard run --policy /etc/guard/policy.yaml --metrics 127.0.0.1:9464"]
        );
        assert!(CONFFILES.contains(&"/etc/guard/policy.yaml"));
        assert_eq!(value(&unit, "WantedBy"), ["multi-user.target"]);
    }

    #[test]
    fn every_hardening_line_says_why() {
        let unit = unit();
        let lines: Vec<&str> = unit.lines().collect();
        let start = lines.iter().position(|l| l.contains("--- Hardening")).expect("a hardening block");
        let mut checked = 0;
        for (i, line) in lines.iter().enumerate().skip(start + 1) {
            if line.starts_with('[') {
                break;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // A comment right above it, or above the (at most three) settings before it that
            // share that comment.
            let settings_between = lines[start + 1..i].iter().rev().take_while(|l| !l.starts_with('#')).count();
            assert!(
                settings_between <= 3 && lines[start + 1..i].iter().any(|l| l.starts_with('#')),
                "{line}: no comment"
            );
            checked += 1;
        }
        assert!(checked >= 15, "only {checked} hardening settings");
        // What would break a BPF loader stays out (see the unit's comments).
        for key in ["ProtectKernelTunables", "ProtectControlGroups", "PrivateTmp", "SystemCallFilter"] {
            assert!(value(&unit, key).is_empty(), "{key} is set");
        }
        assert_eq!(value(&unit, "ProtectHome"), ["read-only"]);
    }

    #[test]
    fn deb_metadata_ships_every_file_the_check_expects() {
        let manifest = std::fs::read_to_string(crate::workspace_root().join("guard-daemon/Cargo.toml")).unwrap();
        let deb = &manifest[manifest.find("[package.metadata.deb]").expect("deb metadata")..];
        for dest in [
            "\"usr/bin/\"",
            "\"etc/guard/policy.yaml\"",
            "\"etc/logrotate.d/guard\"",
            "\"target/release/assets/man/*.1.gz\", \"usr/share/man/man1/\"",
            "\"usr/share/bash-completion/completions/guard\"",
            "\"usr/share/zsh/vendor-completions/_guard\"",
            "\"usr/share/fish/vendor_completions.d/guard.fish\"",
        ] {
            assert!(deb.contains(dest), "no asset for {dest}");
        }
        for (dest, installed) in [
            ("usr/share/bash-completion/completions/guard", BASH_COMPLETION),
            ("usr/share/zsh/vendor-completions/_guard", ZSH_COMPLETION),
            ("usr/share/fish/vendor_completions.d/guard.fish", FISH_COMPLETION),
        ] {
            assert_eq!(format!("/{dest}"), installed);
            assert!(program_files().contains(&installed));
        }
        assert!(deb.contains("name = \"guard\"") && deb.contains("unit-name = \"guard\""));
        // The packaged policy is the built-in default, not a copy that could drift.
        assert!(deb.contains("\"../guard-engine/src/default-policy.yaml\", \"etc/guard/policy.yaml\""));
        // Sources outside target/ exist.
        let daemon = crate::workspace_root().join("guard-daemon");
        for source in ["../guard-engine/src/default-policy.yaml", "../packaging/guard.logrotate", "../README.md"] {
            assert!(daemon.join(source).is_file(), "{source}");
        }
        assert!(daemon.join("../packaging/guard.service").is_file());
    }

    #[test]
    fn logrotate_snippet_reopens_and_never_copytruncates() {
        let text = std::fs::read_to_string(crate::workspace_root().join("packaging/guard.logrotate")).unwrap();
        let active: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
        assert!(active.iter().any(|l| l.starts_with("/var/log/guard/audit.jsonl {")));
        assert!(active.iter().any(|l| l.contains("/usr/bin/guard reopen")));
        assert!(active.contains(&"delaycompress"));
        assert!(!active.iter().any(|l| l.contains("copytruncate")));
    }

    #[test]
    fn listing_and_cargo_deb_output() {
        let listing = "/.\n/usr\n/usr/bin/guard\n/etc/guard/policy.yaml\n";
        assert_eq!(missing_from_listing(listing, ["/usr/bin/guard", "/etc/guard/policy.yaml"]), Vec::<&str>::new());
        assert_eq!(missing_from_listing(listing, ["/usr/bin/guard", INSTALLED_UNIT]), [INSTALLED_UNIT]);
        let printed = "warning: something\n/w/target/debian/guard_0.1.0-1_amd64.deb\n";
        assert_eq!(deb_path_from_output(printed), Some(PathBuf::from("/w/target/debian/guard_0.1.0-1_amd64.deb")));
        assert_eq!(deb_path_from_output("nothing\n"), None);
    }
}
