//! `guard generate-assets DIR` (hidden): the man pages and shell completions the package
//! ships, generated from this binary's own clap command, so they never drift from it.
//! `cargo xtask dist` runs it on the release binary before `cargo deb`.
//!
//! Layout under DIR (the package metadata in guard-daemon/Cargo.toml maps each file):
//! - `man/guard.1`, `man/guard-run.1`, ... (one page per visible subcommand, `clap_mangen`);
//! - `completions/bash/guard`, `completions/zsh/_guard`, `completions/fish/guard.fish`
//!   (`clap_complete`, named as bash-completion, zsh and fish look them up).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct AssetsArgs {
    /// Directory to write `man/` and `completions/` into (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// The completion files, by shell: (shell, directory below `completions/`, file name).
pub const COMPLETIONS: [(Shell, &str, &str); 3] =
    [(Shell::Bash, "bash", "guard"), (Shell::Zsh, "zsh", "_guard"), (Shell::Fish, "fish", "guard.fish")];

pub fn main(args: AssetsArgs) -> anyhow::Result<ExitCode> {
    let written = generate(&args.dir)?;
    for path in &written {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes every asset below `dir`; returns the files written.
pub fn generate(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let man_dir = dir.join("man");
    std::fs::create_dir_all(&man_dir).with_context(|| format!("creating {}", man_dir.display()))?;
    clap_mangen::generate_to(visible_command(), &man_dir)
        .with_context(|| format!("writing man pages into {}", man_dir.display()))?;
    let mut written = list_files(&man_dir)?;
    for (shell, sub, name) in COMPLETIONS {
        let shell_dir = dir.join("completions").join(sub);
        std::fs::create_dir_all(&shell_dir).with_context(|| format!("creating {}", shell_dir.display()))?;
        let path = shell_dir.join(name);
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut visible_command(), "guard", &mut text);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// guard's clap command without its hidden subcommands (this one): clap_complete would
/// complete them otherwise.
pub fn visible_command() -> clap::Command {
    let full = super::Cli::command();
    let mut cmd = clap::Command::new("guard")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommands(full.get_subcommands().filter(|sub| !sub.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

fn list_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        files.push(entry.with_context(|| format!("listing {}", dir.display()))?.path());
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn man_pages_and_completions_come_from_the_real_command() {
        let dir = Dir(std::env::temp_dir().join(format!("guard-assets-{}", std::process::id())));
        let written = generate(&dir.0).unwrap();
        let name = |p: &PathBuf| p.strip_prefix(&dir.0).unwrap().display().to_string();
        let names: Vec<String> = written.iter().map(name).collect();
        // One page for guard and one per visible subcommand (nested ones too); the hidden
        // generator itself has none.
        for page in ["man/guard.1", "man/guard-run.1", "man/guard-launch.1", "man/guard-audit-verify.1"] {
            assert!(names.iter().any(|n| n == page), "{page} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("generate-assets")), "{names:?}");
        let top = std::fs::read_to_string(dir.0.join("man/guard.1")).unwrap();
        assert!(top.contains(".TH guard 1"), "{top}");
        assert!(top.contains(env!("CARGO_PKG_VERSION")), "the page names the version");
        let run = std::fs::read_to_string(dir.0.join("man/guard-run.1")).unwrap();
        assert!(run.contains("policy"), "guard-run.1 documents --policy");

        let bash = std::fs::read_to_string(dir.0.join("completions/bash/guard")).unwrap();
        assert!(bash.contains("complete -F _guard"), "{bash}");
        assert!(bash.contains("launch"), "subcommands are completed");
        let zsh = std::fs::read_to_string(dir.0.join("completions/zsh/_guard")).unwrap();
        assert!(zsh.starts_with("#compdef guard"), "{zsh}");
        let fish = std::fs::read_to_string(dir.0.join("completions/fish/guard.fish")).unwrap();
        assert!(fish.contains("complete -c guard"), "{fish}");
        assert!(!bash.contains("generate-assets") && !fish.contains("generate-assets"));
    }
}
