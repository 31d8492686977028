//! `cargo xtask dist`: the release artifacts in `target/dist/`.
//!
//! - `zombie-trace-<version>-x86_64-linux.tar.gz`: the binary (release,
//!   eBPF object embedded, stripped), its man pages and shell completions,
//!   `deploy/` (the systemd unit, Prometheus rules, the Kubernetes
//!   DaemonSet) and the README;
//! - `zombie-trace_<version>-1_amd64.deb`, built by cargo-deb from
//!   `[package.metadata.deb]` in zombie-trace/Cargo.toml;
//! - `SHA256SUMS` of both.
//!
//! The binary links glibc dynamically (it needs glibc 2.34 or later, the
//! newest symbol version it references when built on Debian 12): static musl
//! was not attempted, as its C dependency (zstd) needs a musl C toolchain.
//! The man pages and completions come from the binary itself (`zombie-trace
//! generate`), so they document exactly the binary shipped.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::{
    Workspace,
    cmd::{capture, cmd, find_in_path, run},
};

/// The cargo-deb release `dist` installs when cargo-deb is missing (the
/// newest that builds with this project's rust-version).
const CARGO_DEB_VERSION: &str = "3.8.0";

#[derive(Debug, clap::Args)]
pub struct DistArgs {
    /// Then install the .deb in a clean Debian 12 VM and check that it works
    /// (see `cargo xtask vmtest --help`).
    #[arg(long)]
    pub test: bool,
}

/// What `dist` made.
pub struct Artifacts {
    pub deb: PathBuf,
}

/// Where the generated files the .deb takes live: cargo-deb's `target/release/`
/// (see zombie-trace/Cargo.toml).
fn packaging_dir(ws: &Workspace) -> PathBuf {
    ws.target_dir.join("release").join("packaging")
}

pub fn dist(ws: &Workspace) -> Result<Artifacts> {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        bail!("`cargo xtask dist` builds x86_64 Linux packages: run it on an x86_64 Linux host");
    }
    let missing: Vec<&str> = ["tar", "strip", "sha256sum"]
        .into_iter()
        .filter(|tool| find_in_path(tool).is_none())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} missing: install tar, binutils and coreutils",
            missing.join(", ")
        );
    }
    crate::banner("dist: release build");
    run(
        &mut ws.cargo(["build", "--release", "-p", "zombie-trace"]),
        crate::BUILD_FIX,
    )?;
    let binary = ws.target_dir.join("release").join("zombie-trace");
    let version = binary_version(&binary)?;

    crate::banner("dist: man pages, completions, unit");
    let packaging = packaging_dir(ws);
    remove_dir(&packaging)?;
    let man = packaging.join("man");
    let completions = packaging.join("completions");
    generate(&binary, "man", &man)?;
    generate(&binary, "completions", &completions)?;
    let unit_source = ws.root.join("deploy/systemd/zombie-trace.service");
    let unit = read_text(&unit_source)?;
    write(
        &packaging.join("zombie-trace.service"),
        &unit_for_package(&unit)?,
    )?;

    crate::banner("dist: tarball");
    let dist = ws.target_dir.join("dist");
    remove_dir(&dist)?;
    let name = format!("zombie-trace-{version}-x86_64-linux");
    let stage = dist.join(&name);
    create_dir(&stage)?;
    run(
        cmd("strip", ["-o"])
            .arg(stage.join("zombie-trace"))
            .arg(&binary),
        "strip (binutils) failed on the release binary",
    )?;
    copy_tree(&man, &stage.join("man"))?;
    copy_tree(&completions, &stage.join("completions"))?;
    copy_tree(&ws.root.join("deploy"), &stage.join("deploy"))?;
    copy(&ws.root.join("README.md"), &stage.join("README.md"))?;
    let tarball = dist.join(format!("{name}.tar.gz"));
    // Owned by root, in name order, dated at the epoch: the same files give
    // the same archive listing wherever and whenever they are packed.
    run(
        cmd(
            "tar",
            [
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mtime=@0",
                "-czf",
            ],
        )
        .arg(&tarball)
        .arg("-C")
        .arg(&dist)
        .arg(&name),
        "tar could not write the tarball",
    )?;
    remove_dir(&stage)?;

    crate::banner("dist: .deb (cargo-deb)");
    ensure_cargo_deb()?;
    let mut deb = ws.cargo(["deb", "-p", "zombie-trace", "--no-build", "--output"]);
    deb.arg(&dist);
    run(&mut deb, "see cargo-deb's error above")?;
    let deb = single_file(&dist, ".deb")?;

    let mut sums = cmd("sha256sum", [] as [&str; 0]);
    for artifact in [&tarball, &deb] {
        sums.arg(artifact.file_name().context("artifact without a name")?);
    }
    sums.current_dir(&dist);
    let sums = capture(&mut sums, "sha256sum (coreutils) failed")?;
    write(&dist.join("SHA256SUMS"), &sums)?;

    eprintln!("\ndist: {} ({version})", dist.display());
    for artifact in [&tarball, &deb] {
        let size = std::fs::metadata(artifact)
            .with_context(|| format!("reading {}", artifact.display()))?
            .len();
        eprintln!(
            "  {} {:.1} MiB",
            artifact.display(),
            size as f64 / (1024.0 * 1024.0)
        );
    }
    eprintln!("  {}", dist.join("SHA256SUMS").display());
    Ok(Artifacts { deb })
}

/// `0.1.0` from `zombie-trace -V` (`zombie-trace 0.1.0`).
fn binary_version(binary: &Path) -> Result<String> {
    let mut version = std::process::Command::new(binary);
    version.arg("-V");
    let out = capture(&mut version, "the release binary does not run")?;
    parse_version(&out).with_context(|| format!("`zombie-trace -V` printed {out:?}"))
}

fn parse_version(out: &str) -> Option<String> {
    let version = out.trim().strip_prefix("zombie-trace ")?;
    (!version.is_empty() && !version.contains(char::is_whitespace)).then(|| version.to_owned())
}

fn generate(binary: &Path, what: &str, dir: &Path) -> Result<()> {
    let mut generate = std::process::Command::new(binary);
    generate.args(["generate", what]).arg(dir);
    capture(&mut generate, "see the error above").map(drop)
}

/// The unit as the .deb installs it: the binary is at /usr/bin, not at
/// /usr/local/bin where a hand install (the tarball) puts it.
fn unit_for_package(unit: &str) -> Result<String> {
    const HAND: &str = "ExecStart=/usr/local/bin/zombie-trace";
    const PACKAGED: &str = "ExecStart=/usr/bin/zombie-trace";
    if !unit.lines().any(|line| line.starts_with(HAND)) {
        bail!(
            "deploy/systemd/zombie-trace.service has no `{HAND} ...` line to point at the \
             packaged binary: update unit_for_package in xtask/src/dist.rs with the unit"
        );
    }
    Ok(unit
        .lines()
        .map(|line| line.replace(HAND, PACKAGED))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// Installs cargo-deb [`CARGO_DEB_VERSION`] unless that version is there.
fn ensure_cargo_deb() -> Result<()> {
    let installed = cmd("cargo", ["deb", "--version"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    // Prints e.g. `3.8.0`.
    if installed
        .as_deref()
        .is_some_and(|v| v.split_whitespace().any(|word| word == CARGO_DEB_VERSION))
    {
        eprintln!("cargo-deb {CARGO_DEB_VERSION}: ok");
        return Ok(());
    }
    eprintln!(
        "cargo-deb: {}; installing {CARGO_DEB_VERSION} (takes a few minutes)",
        installed.map_or_else(|| "missing".to_owned(), |v| format!("found {v}"))
    );
    run(
        &mut cmd(
            "cargo",
            [
                "install",
                "cargo-deb",
                "--locked",
                "--force",
                "--version",
                CARGO_DEB_VERSION,
            ],
        ),
        "check the network (crates.io), then rerun `cargo xtask dist`",
    )
}

fn single_file(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one *{suffix} in {} after cargo-deb, found {found:?}",
            dir.display()
        ),
    }
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

/// Copies the regular files and directories below `from` to `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    create_dir(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry.with_context(|| format!("listing {}", from.display()))?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            copy(&entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_unit_runs_the_packaged_binary() -> Result<()> {
        let unit = "# ExecStart=/usr/local/bin/zombie-trace serve --listen 0.0.0.0:21717\n\
                    ExecStartPre=-+/bin/sh -c 'true'\n\
                    ExecStart=/usr/local/bin/zombie-trace serve\n";
        let packaged = unit_for_package(unit)?;
        assert!(packaged.contains("\nExecStart=/usr/bin/zombie-trace serve\n"));
        assert!(!packaged.contains("/usr/local/bin"), "{packaged}");
        assert!(unit_for_package("ExecStart=/opt/zt serve\n").is_err());
        // The shipped unit has the line it rewrites.
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/systemd/zombie-trace.service"
        ))?;
        assert!(unit_for_package(&shipped)?.contains("\nExecStart=/usr/bin/zombie-trace serve\n"));
        Ok(())
    }

    #[test]
    fn the_version_is_read_from_the_short_version_line() {
        assert_eq!(
            parse_version("zombie-trace 0.1.0\n").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(parse_version("zombie-trace\n"), None);
        assert_eq!(parse_version("other 1.0\n"), None);
    }
}
