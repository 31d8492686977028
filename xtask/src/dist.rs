//! `cargo xtask dist`: the release artifacts in `target/dist/`.
//!
//! - `zombie-trace-<version>-x86_64-linux.tar.gz`: the binary (release,
//!   eBPF object embedded, stripped), its man pages and shell completions,
//!   `deploy/` (the systemd unit, Prometheus rules, the Kubernetes
//!   DaemonSet) and the README;
//! - `zombie-trace_<version>-1_amd64.deb`, built by `dpkg-deb` (Debian's
//!   own tool, on every Debian system: nothing to compile first) from a
//!   staged tree: the binary, gzipped man pages, completions, the unit
//!   (installed, not enabled: there are no maintainer scripts), the docs;
//!   its `Depends` come from the binary's own ELF (`NEEDED` libraries and
//!   the newest glibc symbol version it uses);
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

#[derive(Debug, clap::Args)]
pub struct DistArgs {
    /// Then install the .deb in a clean Debian 12 VM and check that it works
    /// (see `cargo xtask vmtest --help`).
    #[arg(long)]
    pub test: bool,
    /// Build the packages and make the package test's userland and kernel,
    /// without booting (what `cargo xtask test` runs in the background
    /// while the kernel matrix runs).
    #[arg(long, hide = true, conflicts_with = "test")]
    pub prepare: bool,
}

/// What `dist` made.
pub struct Artifacts {
    pub deb: PathBuf,
}

/// Where the generated man pages, completions and unit are written.
fn packaging_dir(ws: &Workspace) -> PathBuf {
    ws.target_dir.join("release").join("packaging")
}

pub fn dist(ws: &Workspace) -> Result<Artifacts> {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        bail!("`cargo xtask dist` builds x86_64 Linux packages: run it on an x86_64 Linux host");
    }
    let missing: Vec<&str> = ["tar", "strip", "sha256sum", "gzip", "objdump", "dpkg-deb"]
        .into_iter()
        .filter(|tool| find_in_path(tool).is_none())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} missing: install tar, gzip, binutils, coreutils and dpkg",
            missing.join(", ")
        );
    }
    crate::banner("dist: release build");
    run(
        ws.cargo(["build", "--release", "-p", "zombie-trace"])
            .env("CARGO_TARGET_DIR", &ws.target_dir),
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

    crate::banner("dist: .deb (dpkg-deb)");
    let deb = build_deb(ws, &stage.join("zombie-trace"), &packaging, &version, &dist)?;
    remove_dir(&stage)?;

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

/// What the package says of itself.
const MAINTAINER: &str = "zombie-trace developers <dev@zombie-trace.invalid>";
const SUMMARY: &str = "find parent processes that never reap their exited children, with eBPF";
const DESCRIPTION: &str = "zombie-trace traces process creation, exit and reaping with eBPF and \
names the parent processes that leave their exited children unreaped (zombies): how many each \
owes, since when, why (its SIGCHLD handling and wait calls), how long until fork() fails, and \
what will help. Live (watch, top), recorded (record, report), as a Prometheus exporter (serve, \
with a systemd unit, disabled) and as a CI check (run).";

/// Stages the package's files under `target/dist/deb/` and packs them
/// with `dpkg-deb`: the path of the .deb.
fn build_deb(
    ws: &Workspace,
    stripped: &Path,
    packaging: &Path,
    version: &str,
    dist: &Path,
) -> Result<PathBuf> {
    let root = dist.join("deb");
    remove_dir(&root)?;
    let place = |from: &Path, to: &str| -> Result<()> {
        let target = root.join(to);
        create_dir(target.parent().context("a file in a directory")?)?;
        copy(from, &target)
    };
    place(stripped, "usr/bin/zombie-trace")?;
    let completions = packaging.join("completions");
    place(
        &completions.join("zombie-trace.bash"),
        "usr/share/bash-completion/completions/zombie-trace",
    )?;
    place(
        &completions.join("_zombie-trace"),
        "usr/share/zsh/vendor-completions/_zombie-trace",
    )?;
    place(
        &completions.join("zombie-trace.fish"),
        "usr/share/fish/vendor_completions.d/zombie-trace.fish",
    )?;
    place(
        &packaging.join("zombie-trace.service"),
        "lib/systemd/system/zombie-trace.service",
    )?;
    let doc = "usr/share/doc/zombie-trace";
    place(&ws.root.join("README.md"), &format!("{doc}/README.md"))?;
    copy_tree(&ws.root.join("deploy"), &root.join(doc).join("deploy"))?;
    write(
        &root.join(doc).join("copyright"),
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: zombie-trace\n\n\
         Files: *\n\
         Copyright: zombie-trace developers\n\
         License: MIT or Apache-2.0\n",
    )?;
    // Man pages gzipped (Debian policy), without a name or date inside.
    let man1 = root.join("usr/share/man/man1");
    create_dir(&man1)?;
    for entry in std::fs::read_dir(packaging.join("man")).context("listing the man pages")? {
        let page = entry.context("listing the man pages")?.path();
        let name = page.file_name().context("a man page's name")?;
        let mut gzipped = man1.join(name).into_os_string();
        gzipped.push(".gz");
        let out = std::fs::File::create(&gzipped)
            .with_context(|| format!("creating {}", Path::new(&gzipped).display()))?;
        let status = cmd("gzip", ["-9nc"])
            .arg(&page)
            .stdout(out)
            .status()
            .context("running gzip")?;
        if !status.success() {
            bail!("gzip failed on {}", page.display());
        }
    }

    let depends = elf_depends(stripped)?;
    let installed_kib = tree_size(&root)?.div_ceil(1024);
    let description: String = textwrap_lines(DESCRIPTION, 78)
        .iter()
        .map(|line| format!(" {line}\n"))
        .collect();
    let control = format!(
        "Package: zombie-trace\n\
         Version: {version}-1\n\
         Architecture: amd64\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\n\
         Depends: {depends}\n\
         Recommends: man-db, bash-completion\n\
         Section: admin\n\
         Priority: optional\n\
         Description: {SUMMARY}\n{description}"
    );
    create_dir(&root.join("DEBIAN"))?;
    write(&root.join("DEBIAN").join("control"), &control)?;
    let sums = capture(
        cmd(
            "sh",
            ["-c", "find usr lib -type f | LC_ALL=C sort | xargs md5sum"],
        )
        .current_dir(&root),
        "md5sum (coreutils) failed on the staged package",
    )?;
    write(&root.join("DEBIAN").join("md5sums"), &sums)?;
    let deb = dist.join(format!("zombie-trace_{version}-1_amd64.deb"));
    run(
        cmd("dpkg-deb", ["--root-owner-group", "--build"])
            .arg(&root)
            .arg(&deb),
        "dpkg-deb could not build the package (see above)",
    )?;
    remove_dir(&root)?;
    Ok(deb)
}

/// The package's `Depends` from the binary's ELF: each `NEEDED` library's
/// package, libc6 at the newest `GLIBC_x.y` symbol version it uses.
fn elf_depends(binary: &Path) -> Result<String> {
    let mut dynamic = cmd("objdump", ["-p", "-T"]);
    dynamic.arg(binary);
    let dump = capture(&mut dynamic, "objdump (binutils) could not read the binary")?;
    let mut depends: Vec<String> = Vec::new();
    let glibc = newest_glibc(&dump).context("the binary references no GLIBC_ symbol version")?;
    for needed in dump
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        .map(str::trim)
    {
        let package = match needed {
            "libc.so.6"
            | "libm.so.6"
            | "libpthread.so.0"
            | "libdl.so.2"
            | "librt.so.1"
            | "ld-linux-x86-64.so.2" => {
                format!("libc6 (>= {glibc})")
            }
            "libgcc_s.so.1" => "libgcc-s1".to_owned(),
            other => bail!(
                "the binary needs {other}, which dist does not know the Debian package of: \
                 add it to elf_depends in xtask/src/dist.rs"
            ),
        };
        if !depends.contains(&package) {
            depends.push(package);
        }
    }
    Ok(depends.join(", "))
}

/// The newest `GLIBC_x.y[.z]` version in `objdump -T` output.
fn newest_glibc(dump: &str) -> Option<String> {
    dump.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let parts: Option<Vec<u32>> = v.split('.').map(|n| n.parse().ok()).collect();
            parts.map(|p| (p, v.to_owned()))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v)
}

/// Bytes of the regular files below `dir`.
fn tree_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        total += if path.is_dir() {
            tree_size(&path)?
        } else {
            std::fs::metadata(&path).map_or(0, |m| m.len())
        };
    }
    Ok(total)
}

/// `text`'s words in lines of at most `width` characters.
fn textwrap_lines(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
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
    fn depends_come_from_the_newest_glibc_version_used() {
        let dump = "  NEEDED               libgcc_s.so.1\n  NEEDED               libc.so.6\n\
                    0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.2.5) memcpy\n\
                    0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.34) __libc_start_main\n\
                    0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.14) memmove\n";
        assert_eq!(newest_glibc(dump).as_deref(), Some("2.34"));
        assert_eq!(newest_glibc("no versions"), None);
        let lines = textwrap_lines("a bb ccc dddd", 6);
        assert_eq!(lines, ["a bb", "ccc", "dddd"]);
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
