use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// Builds the eBPF object with nightly and bpf-linker (see `cargo xtask setup`)
/// and places it in OUT_DIR, where `src/tracer.rs` embeds it.
fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "zombie-trace-ebpf")
        .ok_or_else(|| anyhow!("zombie-trace-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = ebpf_package;
    let root_dir = manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?;
    let ebpf_package = aya_build::Package {
        name: name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf_package], Toolchain::default())
        .context("building the eBPF programs failed; `cargo xtask setup` installs nightly rust-src and bpf-linker")
}
