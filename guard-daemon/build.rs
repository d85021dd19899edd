//! Compiles guard-ebpf for bpfel with the nightly toolchain (aya-build) so the daemon can embed
//! the object, with the `ebpf` feature (the default). `cargo xtask setup` installs what that
//! needs (rust-src, bpf-linker).

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let object = std::path::Path::new(&std::env::var("OUT_DIR").context("OUT_DIR")?).join("guard-ebpf");
    if std::env::var_os("CARGO_FEATURE_EBPF").is_none() {
        // The library for xtask and the tests: no object (the binary, if built so, embeds an
        // empty one and says so when it loads). Else cargo would run this for any change.
        println!("cargo:rerun-if-changed=build.rs");
        return std::fs::write(&object, b"").context("writing the placeholder eBPF object");
    }
    build_ebpf()?;
    // With AYA_BUILD_SKIP=1 (checks without nightly) nothing was built: embed an empty object so
    // the daemon still compiles; loading it then fails with a clear error at run time.
    if !object.exists() {
        std::fs::write(&object, b"").context("writing the placeholder eBPF object")?;
    }
    Ok(())
}

fn build_ebpf() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = std::path::Path::new(&manifest_dir)
        .parent()
        .context("guard-daemon has no parent directory")?
        .join("guard-ebpf");
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path to guard-ebpf")?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "guard-ebpf", root_dir: ebpf_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
