use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;
use sha2::{Digest as _, Sha256};

/// Builds the eBPF object with nightly and bpf-linker (see `cargo xtask setup`)
/// and places it in OUT_DIR, where `src/kernel/tracer.rs` embeds it; then
/// tells the crate what `zombie-trace --version` prints about this build
/// (see `src/build_info.rs`).
fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata {
        packages,
        workspace_root,
        ..
    } = cargo_metadata::MetadataCommand::new()
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
        .context("building the eBPF programs failed; `cargo xtask setup` installs nightly rust-src and bpf-linker")?;

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").context("cargo sets OUT_DIR")?);
    let object_path = out_dir.join("zombie-trace-ebpf");
    let object = std::fs::read(&object_path)
        .with_context(|| format!("reading the eBPF object {}", object_path.display()))?;
    // The build id is the digest's first 16 hex digits: enough to tell two
    // builds apart, short enough to read out in a bug report.
    let digest = hex(&Sha256::digest(&object));
    println!("cargo:rustc-env=ZOMBIE_TRACE_EBPF_SHA256={digest}");
    println!(
        "cargo:rustc-env=ZOMBIE_TRACE_EBPF_BUILD_ID={}",
        digest.get(..16).unwrap_or(&digest)
    );
    let commit = git_commit(workspace_root.as_std_path());
    println!(
        "cargo:rustc-env=ZOMBIE_TRACE_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The short hash of the commit the workspace is checked out at, or `None`
/// when it is not a git checkout (a source tarball), git is missing, or the
/// workspace merely lies inside some other repository: a version must never
/// name a commit that is not this source's, and must never fail the build.
fn git_commit(workspace_root: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .args(args)
            .current_dir(workspace_root)
            .output()
            .ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let toplevel = git(&["rev-parse", "--show-toplevel"])?;
    let same_root = match (
        std::fs::canonicalize(&toplevel),
        std::fs::canonicalize(workspace_root),
    ) {
        (Ok(toplevel), Ok(root)) => toplevel == root,
        _ => false,
    };
    if !same_root {
        return None;
    }
    // Rerun when the checked-out commit changes: HEAD moves to another
    // branch or commit, or the branch it names gets a new commit (a loose
    // ref, or packed after `git gc`). Paths are asked of git because a
    // worktree keeps HEAD and the branch refs in different directories; a
    // path that does not exist would make cargo rerun this every build.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        let path = git(&["rev-parse", "--path-format=absolute", "--git-path", &name]);
        if let Some(path) = path.filter(|path| Path::new(path).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}
