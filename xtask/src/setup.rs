//! `cargo xtask setup`: installs what the eBPF build needs, idempotently.
//!
//! zombie-trace's build.rs (aya-build) runs
//! `rustup run nightly cargo build -Z build-std=core --target bpfel-unknown-none`
//! on zombie-trace-ebpf, which needs
//! - the nightly toolchain with its `rust-src` component (for build-std), and
//! - `bpf-linker` 0.13 built against the same LLVM major as nightly's rustc.
//!
//! bpf-linker is built against nightly's own `libLLVM.so` (found through a
//! small `LLVM_PREFIX` directory under the target dir), so it only runs where
//! rustup puts nightly's `lib/` on the library path: `rustup run nightly ...`,
//! which is how aya-build ends up invoking it.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::{
    Workspace,
    cmd::{capture, cmd, find_in_path, run},
};

/// The bpf-linker release series this project builds with.
const BPF_LINKER_SERIES: &str = "0.13";

pub fn setup(ws: &Workspace) -> Result<()> {
    eprintln!("setup: checking the nightly toolchain, rust-src and bpf-linker");
    ensure_nightly()?;
    ensure_rust_src()?;
    let llvm_major = nightly_llvm_major()?;
    ensure_bpf_linker(ws, llvm_major)?;
    eprintln!("setup: ok");
    Ok(())
}

fn ensure_nightly() -> Result<()> {
    let host = host_triple()?;
    let toolchains = capture(
        &mut cmd("rustup", ["toolchain", "list"]),
        "is rustup installed and on PATH? See https://rustup.rs",
    )?;
    if has_nightly(&toolchains, &host) {
        eprintln!("nightly toolchain: ok");
        return Ok(());
    }
    eprintln!("nightly toolchain: missing; installing it");
    run(
        &mut cmd(
            "rustup",
            ["toolchain", "install", "nightly", "--profile", "minimal"],
        ),
        "check the network and disk space, then rerun `cargo xtask setup`",
    )
}

/// The host triple of the default toolchain, e.g. `x86_64-unknown-linux-gnu`.
fn host_triple() -> Result<String> {
    let version = capture(
        &mut cmd("rustc", ["-vV"]),
        "is a Rust toolchain installed? `rustup default stable`",
    )?;
    version_field(&version, "host")
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("`rustc -vV` printed no `host:` line:\n{version}"))
}

/// Whether `rustup toolchain list` lists the (undated) nightly for `host`.
fn has_nightly(toolchains: &str, host: &str) -> bool {
    let wanted = format!("nightly-{host}");
    toolchains
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|name| name == wanted || name == "nightly")
}

fn ensure_rust_src() -> Result<()> {
    ensure_nightly_component("rust-src")
}

/// Installs a rustup component (`rust-src`, `clippy`, ...) on nightly if missing.
pub fn ensure_nightly_component(name: &str) -> Result<()> {
    let installed = capture(
        &mut cmd(
            "rustup",
            ["component", "list", "--toolchain", "nightly", "--installed"],
        ),
        "is the nightly toolchain installed? `rustup toolchain install nightly --profile minimal`",
    )?;
    if has_component(&installed, name) {
        eprintln!("nightly {name}: ok");
        return Ok(());
    }
    eprintln!("nightly {name}: missing; installing it");
    run(
        &mut cmd(
            "rustup",
            ["component", "add", name, "--toolchain", "nightly"],
        ),
        &format!("check the network, then `rustup component add {name} --toolchain nightly`"),
    )
}

/// Whether `rustup component list --installed` lists `name` (`rust-src`, or
/// `clippy` as `clippy-<host>`).
fn has_component(installed: &str, name: &str) -> bool {
    installed.lines().map(str::trim).any(|line| {
        line == name
            || line
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('-'))
    })
}

/// The LLVM major version nightly's rustc is built with (e.g. 22).
fn nightly_llvm_major() -> Result<u32> {
    let version = capture(
        &mut cmd("rustup", ["run", "nightly", "rustc", "-vV"]),
        "reinstall nightly: `rustup toolchain install nightly --profile minimal --force`",
    )?;
    let major = version_field(&version, "LLVM version").and_then(llvm_major);
    major.ok_or_else(|| anyhow!("no `LLVM version: N.x` line in `rustc -vV`:\n{version}"))
}

/// The value of a `key: value` line of `rustc -vV`.
fn version_field<'a>(version: &'a str, key: &str) -> Option<&'a str> {
    version.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// `22.1.4` -> 22.
fn llvm_major(version: &str) -> Option<u32> {
    version.split('.').next()?.trim().parse().ok()
}

/// Where `cargo install` puts binaries and its `.crates2.json`, as cargo
/// itself decides (`install.root` in a cargo config aside); xtask passes it
/// to `cargo install --root` so that both always agree.
fn install_root() -> Result<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(root) = var("CARGO_INSTALL_ROOT") {
        return Ok(root.into());
    }
    if let Some(home) = var("CARGO_HOME") {
        return Ok(home.into());
    }
    let home =
        var("HOME").ok_or_else(|| anyhow!("neither CARGO_HOME nor HOME is set; set CARGO_HOME"))?;
    Ok(Path::new(&home).join(".cargo"))
}

/// What `.crates2.json` records about an installed bpf-linker.
#[derive(Debug, PartialEq)]
struct InstallRecord {
    version: String,
    features: Vec<String>,
    default_features: bool,
}

impl InstallRecord {
    /// Whether this is a 0.13.x install built with exactly `llvm-<major>`.
    fn matches(&self, llvm_major: u32) -> bool {
        let wanted = format!("llvm-{llvm_major}");
        let llvm_features: Vec<_> = self
            .features
            .iter()
            .filter(|feature| {
                feature.starts_with("llvm-") && feature.as_str() != "llvm-link-static"
            })
            .collect();
        is_wanted_series(&self.version) && !self.default_features && llvm_features == [&wanted]
    }

    fn describe(&self) -> String {
        let mut features = self.features.join(",");
        if self.default_features {
            features = format!("default,{features}");
        }
        format!("{} with features [{features}]", self.version)
    }
}

fn is_wanted_series(version: &str) -> bool {
    version
        .strip_prefix(BPF_LINKER_SERIES)
        .is_some_and(|rest| rest.starts_with('.'))
}

/// Finds bpf-linker in the JSON that `cargo install` keeps in
/// `$CARGO_HOME/.crates2.json` (or the install root).
fn parse_crates2(json: &str) -> Result<Option<InstallRecord>> {
    let root: Value = serde_json::from_str(json).context("parsing .crates2.json")?;
    let Some(installs) = root.get("installs").and_then(Value::as_object) else {
        return Ok(None);
    };
    // Keys look like "bpf-linker 0.13.0 (registry+https://...)".
    let found = installs.iter().find_map(|(key, info)| {
        let mut words = key.split_whitespace();
        (words.next() == Some("bpf-linker")).then(|| (words.next().unwrap_or_default(), info))
    });
    let Some((version, info)) = found else {
        return Ok(None);
    };
    let features = info
        .get("features")
        .and_then(Value::as_array)
        .map(|features| {
            features
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let no_default_features = info
        .get("no_default_features")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Some(InstallRecord {
        version: version.to_owned(),
        features,
        default_features: !no_default_features,
    }))
}

fn read_install_record(root: &Path) -> Result<Option<InstallRecord>> {
    let path = root.join(".crates2.json");
    match fs::read_to_string(&path) {
        Ok(json) => parse_crates2(&json).with_context(|| format!("reading {}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

/// Runs `rustup run nightly <bin> --version`; returns the version it prints
/// if it is in the wanted series, or why not.
fn probe_bpf_linker(bin: &Path, fix: &str) -> Result<String> {
    let bin = bin.to_string_lossy();
    let out = capture(
        &mut cmd("rustup", ["run", "nightly", bin.as_ref(), "--version"]),
        fix,
    )?;
    // Prints e.g. "bpf-linker 0.13.0".
    let version = out.split_whitespace().nth(1).unwrap_or_default();
    if !is_wanted_series(version) {
        bail!(
            "it printed `{}`, not bpf-linker {BPF_LINKER_SERIES}.x; {fix}",
            out.trim()
        );
    }
    Ok(version.to_owned())
}

fn ensure_bpf_linker(ws: &Workspace, llvm_major: u32) -> Result<()> {
    let root = install_root()?;
    let bin = root.join("bin").join("bpf-linker");
    let feature = format!("llvm-{llvm_major}");
    eprintln!(
        "bpf-linker: want {BPF_LINKER_SERIES}.x built with {feature} (nightly's LLVM), in {}",
        root.display()
    );

    let record = read_install_record(&root)?;
    let checked = match &record {
        None => Err("not installed (no bpf-linker in .crates2.json)".to_owned()),
        Some(record) if !record.matches(llvm_major) => Err(format!(
            "installed {} but need {BPF_LINKER_SERIES}.x with only {feature}",
            record.describe()
        )),
        Some(_) if !bin.exists() => Err(format!(
            "recorded in .crates2.json but {} is missing",
            bin.display()
        )),
        Some(_) => probe_bpf_linker(&bin, "it will be reinstalled")
            .map_err(|err| format!("installed but does not run: {err:#}")),
    };
    let version = match checked {
        Ok(version) => version,
        Err(problem) => {
            eprintln!("bpf-linker: {problem}; installing it (takes about a minute)");
            let reinstall = record.is_some() || bin.exists();
            install_bpf_linker(ws, &root, &feature, reinstall)?;
            let record = read_install_record(&root)?;
            if !record
                .as_ref()
                .is_some_and(|record| record.matches(llvm_major))
            {
                bail!(
                    "after `cargo install`, {} does not record bpf-linker {BPF_LINKER_SERIES}.x \
                     with {feature} (found {record:?}); see the `cargo install` output above",
                    root.join(".crates2.json").display()
                );
            }
            probe_bpf_linker(
                &bin,
                "the freshly installed bpf-linker does not run; check the `cargo install` \
                 output above and that nightly's lib/libLLVM.so.* is intact",
            )?
        }
    };
    check_on_path(&bin)?;
    eprintln!("bpf-linker {version} ({feature}): ok");
    Ok(())
}

/// rustc finds `bpf-linker` through PATH: make sure that is the one we checked.
fn check_on_path(bin: &Path) -> Result<()> {
    let fix = format!(
        "put {} first on PATH",
        bin.parent().unwrap_or(bin).display()
    );
    let Some(found) = find_in_path("bpf-linker") else {
        bail!(
            "bpf-linker is installed as {} but is not on PATH; {fix}",
            bin.display()
        );
    };
    let same = match (fs::canonicalize(&found), fs::canonicalize(bin)) {
        (Ok(found), Ok(bin)) => found == bin,
        _ => false,
    };
    if !same {
        bail!(
            "the bpf-linker on PATH is {}, not the checked {}; {fix}",
            found.display(),
            bin.display()
        );
    }
    Ok(())
}

/// `cargo install bpf-linker` linked against nightly's own libLLVM.
fn install_bpf_linker(ws: &Workspace, root: &Path, feature: &str, force: bool) -> Result<()> {
    let prefix = llvm_prefix(ws)?;
    let mut install = cmd("cargo", ["install", "--root"]);
    install.arg(root).args([
        "bpf-linker",
        "--version",
        &format!("~{BPF_LINKER_SERIES}"),
        "--no-default-features",
        "--features",
        feature,
    ]);
    if force {
        install.arg("--force");
    }
    install.env("LLVM_PREFIX", &prefix);
    run(
        &mut install,
        "see the error above; it needs a C++ toolchain (`apt-get install build-essential`) \
         and network access to crates.io",
    )
}

/// Makes `<target>/xtask/llvm-prefix/lib/libLLVM.so` point at nightly's
/// `lib/libLLVM.so.<ver>-rust-*`, which is what bpf-linker's build script
/// links against when `LLVM_PREFIX` names that directory.
fn llvm_prefix(ws: &Workspace) -> Result<PathBuf> {
    let sysroot = capture(
        &mut cmd("rustup", ["run", "nightly", "rustc", "--print", "sysroot"]),
        "reinstall nightly: `rustup toolchain install nightly --profile minimal --force`",
    )?;
    let sysroot_lib = Path::new(sysroot.trim()).join("lib");
    let libllvm = find_libllvm(&sysroot_lib)?;
    let prefix = ws.target_dir.join("xtask").join("llvm-prefix");
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let link = lib.join("libLLVM.so");
    if link.symlink_metadata().is_ok() {
        fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("linking {} -> {}", link.display(), libllvm.display()))?;
    eprintln!("linked {} -> {}", link.display(), libllvm.display());
    Ok(prefix)
}

fn find_libllvm(sysroot_lib: &Path) -> Result<PathBuf> {
    let entries =
        fs::read_dir(sysroot_lib).with_context(|| format!("listing {}", sysroot_lib.display()))?;
    let mut candidates: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(is_libllvm_name)
        })
        .collect();
    candidates.sort();
    match candidates.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no libLLVM.so.*-rust-* in {}; the nightly toolchain looks broken: \
             `rustup toolchain install nightly --profile minimal --force`",
            sysroot_lib.display()
        ),
        many => bail!(
            "several libLLVM.so.*-rust-* in {}: {many:?}; reinstall nightly: \
             `rustup toolchain install nightly --profile minimal --force`",
            sysroot_lib.display()
        ),
    }
}

/// `libLLVM.so.22.1-rust-1.97.0-nightly`, the soname rustc links to.
fn is_libllvm_name(name: &str) -> bool {
    name.strip_prefix("libLLVM.so.")
        .is_some_and(|rest| rest.contains("-rust-"))
}

/// Debian packages the test suite needs, by the command each provides:
/// headless Chromium opens the HTML incident report in a real browser; a
/// real Prometheus scrapes `serve` and evaluates the shipped alert rules,
/// and its promtool checks them; tmux runs `top` in a real terminal; qemu
/// boots the kernel matrix's guests (`cargo xtask vmtest`); setpriv runs the
/// tracer as a non-root user with only the capabilities the README lists
/// (util-linux: on every Debian, but not on every image); all in one
/// `apt-get update` and install.
pub const TEST_PACKAGES: [(&str, &str); 7] = [
    ("chromium", "chromium"),
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    ("tmux", "tmux"),
    (crate::vmtest::QEMU, "qemu-system-x86"),
    ("setpriv", "util-linux"),
    ("debootstrap", "debootstrap"),
];

/// Installs the Debian packages of `packages` whose command is missing
/// (`apt-get update` once, then `apt-get install`). Needs root; without it,
/// says what to install and leaves the tests that need it to skip (outside
/// CI) or fail (in CI).
pub fn ensure_debian_packages(packages: &[(&str, &str)]) -> Result<()> {
    let mut missing: Vec<&str> = packages
        .iter()
        .filter(|(command, _)| find_in_path(command).is_none())
        .map(|&(_, package)| package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "setup: not root: install {} yourself (`sudo apt-get install {}`); the tests that need it skip",
            missing.join(", "),
            missing.join(" ")
        );
        return Ok(());
    }
    if find_in_path("apt-get").is_none() {
        bail!(
            "{} missing and there is no apt-get here: install it with this system's package manager",
            missing.join(", ")
        );
    }
    let noninteractive = |c: &mut std::process::Command| {
        c.env("DEBIAN_FRONTEND", "noninteractive");
    };
    let mut update = cmd("apt-get", ["update"]);
    noninteractive(&mut update);
    run(&mut update, "check the network and /etc/apt/sources.list")?;
    let mut install = cmd("apt-get", ["install", "-y"]);
    install.args(&missing);
    noninteractive(&mut install);
    run(&mut install, "see apt-get's error above")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUSTC_VV: &str = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\n\
        binary: rustc\n\
        host: x86_64-unknown-linux-gnu\n\
        release: 1.97.0-nightly\n\
        LLVM version: 22.1.4\n";

    #[test]
    fn reads_llvm_major_and_host() {
        let major = version_field(RUSTC_VV, "LLVM version").and_then(llvm_major);
        assert_eq!(major, Some(22));
        assert_eq!(
            version_field(RUSTC_VV, "host"),
            Some("x86_64-unknown-linux-gnu")
        );
    }

    #[test]
    fn finds_undated_nightly_for_host() {
        let host = "x86_64-unknown-linux-gnu";
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-x86_64-unknown-linux-gnu\n";
        assert!(has_nightly(list, host));
        let dated = "stable-x86_64-unknown-linux-gnu (default)\n\
                     nightly-2024-01-01-x86_64-unknown-linux-gnu\n";
        assert!(!has_nightly(dated, host));
        assert!(!has_nightly("no installed toolchains\n", host));
    }

    const CRATES2: &str = r#"{"installs":{
        "cargo-foo 1.0.0 (registry+https://github.com/rust-lang/crates.io-index)":{"features":[]},
        "bpf-linker 0.13.0 (registry+https://github.com/rust-lang/crates.io-index)":{
            "version_req":"^0.13","bins":["bpf-linker"],"features":["llvm-22"],
            "all_features":false,"no_default_features":true,"profile":"release"}}}"#;

    #[test]
    fn parses_bpf_linker_install_record() -> Result<()> {
        let record = parse_crates2(CRATES2)?;
        assert_eq!(
            record,
            Some(InstallRecord {
                version: "0.13.0".into(),
                features: vec!["llvm-22".into()],
                default_features: false,
            })
        );
        Ok(())
    }

    #[test]
    fn no_record_without_bpf_linker() -> Result<()> {
        assert_eq!(parse_crates2(r#"{"installs":{}}"#)?, None);
        assert_eq!(parse_crates2("{}")?, None);
        assert!(parse_crates2("not json").is_err());
        Ok(())
    }

    #[test]
    fn record_must_match_series_and_llvm_feature() {
        let record = |version: &str, features: &[&str], default_features| InstallRecord {
            version: version.into(),
            features: features.iter().map(|f| f.to_string()).collect(),
            default_features,
        };
        assert!(record("0.13.0", &["llvm-22"], false).matches(22));
        assert!(record("0.13.7", &["llvm-22", "llvm-link-static"], false).matches(22));
        assert!(!record("0.13.0", &["llvm-21"], false).matches(22));
        assert!(!record("0.13.0", &["llvm-22", "llvm-23"], false).matches(22));
        // Default features bring in another LLVM.
        assert!(!record("0.13.0", &["llvm-22"], true).matches(22));
        assert!(!record("0.12.1", &["llvm-22"], false).matches(22));
        assert!(!record("0.130.0", &["llvm-22"], false).matches(22));
    }

    #[test]
    fn finds_installed_components() {
        let installed = "cargo-x86_64-unknown-linux-gnu\n\
                         clippy-x86_64-unknown-linux-gnu\n\
                         rust-src\n\
                         rust-std-x86_64-unknown-linux-gnu\n";
        assert!(has_component(installed, "rust-src"));
        assert!(has_component(installed, "clippy"));
        assert!(!has_component(installed, "rustfmt"));
        assert!(!has_component(
            "rust-std-x86_64-unknown-linux-gnu\n",
            "rust-src"
        ));
    }

    #[test]
    fn recognises_rust_libllvm_soname() {
        assert!(is_libllvm_name("libLLVM.so.22.1-rust-1.97.0-nightly"));
        assert!(!is_libllvm_name("libLLVM-22-rust-1.97.0-nightly.so"));
        assert!(!is_libllvm_name("librustc_driver-b5a965480ee51f9a.so"));
    }
}
