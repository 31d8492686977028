//! Project tasks: `cargo xtask <setup|build|run|test|lint|bench|vmtest|dist>`.

mod bench;
mod cmd;
mod dist;
mod setup;
mod vmtest;

use std::{ffi::OsString, os::unix::process::ExitStatusExt as _, path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Parser, Subcommand};

use crate::cmd::{capture, cmd, find_in_path, run, status};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "zombie-trace project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the eBPF build needs (nightly, rust-src, bpf-linker); idempotent.
    Setup,
    /// Setup, then build zombie-trace (and its eBPF programs).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Setup, build, then run zombie-trace (under sudo if not root).
    Run {
        #[arg(long)]
        release: bool,
        /// Arguments for zombie-trace, after `--`.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Setup, build, then run the unit tests and the privileged scenario tests.
    Test {
        /// Extra arguments for the scenario tests' `cargo test`, after `--`
        /// (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// rustfmt check and clippy (-D warnings) on every crate, eBPF included.
    Lint,
    /// Release build, then the benchmark (root): CPU per process lifecycle
    /// against bpftrace, fork-storm throughput, a burst of exits, start-up
    /// with many zombies, RSS and latency, the cost of recording, `serve`'s
    /// scrapes and series; refreshes docs/benchmarks.md.
    Bench(bench::BenchArgs),
    /// The privileged tests on other kernels (Debian's 6.1 and 6.12 cloud
    /// kernels) in qemu VMs; prints `kernel X: N passed, M failed` for each.
    Vmtest(vmtest::VmtestArgs),
    /// Release packages in target/dist/: a tarball (binary, man pages,
    /// completions, deploy/, README), a .deb (dpkg-deb) and SHA256SUMS;
    /// `--test` then installs the .deb in a clean Debian 12 VM and checks it.
    Dist(dist::DistArgs),
}

/// The cargo workspace xtask works on, from `cargo metadata`.
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
}

impl Workspace {
    fn load() -> Result<Self> {
        let json = capture(
            &mut cmd("cargo", ["metadata", "--format-version", "1", "--no-deps"]),
            "run xtask from inside the zombie-trace workspace",
        )?;
        let meta: serde_json::Value =
            serde_json::from_str(&json).context("parsing `cargo metadata` output")?;
        let path = |key: &str| {
            meta.get(key)
                .and_then(serde_json::Value::as_str)
                .map(PathBuf::from)
                .ok_or_else(|| anyhow!("`cargo metadata` output has no {key:?}"))
        };
        Ok(Self {
            root: path("workspace_root")?,
            target_dir: path("target_directory")?,
        })
    }

    /// `cargo <args>` run in the workspace root.
    fn cargo<const N: usize>(&self, args: [&str; N]) -> std::process::Command {
        let mut cargo = cmd("cargo", args);
        cargo.current_dir(&self.root);
        cargo
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.task) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(task: Task) -> Result<ExitCode> {
    let ws = Workspace::load()?;
    match task {
        Task::Setup => setup::setup(&ws)?,
        Task::Build { release } => {
            setup::setup(&ws)?;
            build(&ws, release)?;
        }
        Task::Run { release, args } => {
            setup::setup(&ws)?;
            build(&ws, release)?;
            return run_tracer(&ws, release, &args);
        }
        Task::Test { args } => test(&ws, &args)?,
        Task::Lint => lint(&ws)?,
        Task::Bench(args) => bench::bench(&ws, args)?,
        Task::Vmtest(args) => {
            setup::setup(&ws)?;
            vmtest::vmtest(&ws, &args)?;
        }
        Task::Dist(args) => {
            setup::setup(&ws)?;
            let artifacts = dist::dist(&ws)?;
            if args.test {
                vmtest::package::test_package(&ws, &artifacts.deb)?;
            }
            if args.prepare {
                vmtest::package::prepare(&ws)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cargo` arguments that build what the integration tests run: zombie-trace
/// and the scenario workloads, into one directory.
const BUILD_TEST_BINARIES: [&str; 6] = [
    "build",
    "-p",
    "zombie-trace",
    "-p",
    "zombie-trace-tests",
    "--bins",
];

/// What to do when a build fails.
const BUILD_FIX: &str =
    "fix the compile error above; if the eBPF build failed, rerun `cargo xtask setup`";

fn build(ws: &Workspace, release: bool) -> Result<()> {
    let mut build = ws.cargo(["build", "-p", "zombie-trace"]);
    if release {
        build.arg("--release");
    }
    run(&mut build, BUILD_FIX)
}

fn run_tracer(ws: &Workspace, release: bool, args: &[OsString]) -> Result<ExitCode> {
    let profile = if release { "release" } else { "debug" };
    let bin = ws.target_dir.join(profile).join("zombie-trace");
    let mut tracer = if !is_root() && find_in_path("sudo").is_some() {
        eprintln!("not root: running zombie-trace under sudo (it needs BPF privileges)");
        let mut sudo = cmd("sudo", ["-E"]);
        sudo.arg(&bin);
        sudo
    } else {
        std::process::Command::new(&bin)
    };
    tracer.args(args);
    let status = status(&mut tracer)?;
    // Forward the exit code; a signal becomes 128+N as in a shell.
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn banner(title: &str) {
    eprintln!("\n==== xtask: {title} ====");
}

/// Runs every phase even if an earlier one failed, then fails naming the
/// phases that did.
#[derive(Default)]
struct Phases {
    failed: Vec<&'static str>,
}

impl Phases {
    fn run(&mut self, name: &'static str, phase: impl FnOnce() -> Result<()>) {
        banner(name);
        if let Err(err) = phase() {
            eprintln!("xtask: {name}: {err:#}");
            self.failed.push(name);
        }
    }

    fn finish(self, task: &str) -> Result<()> {
        if self.failed.is_empty() {
            eprintln!("\n{task}: ok");
            Ok(())
        } else {
            bail!("{task} failed in: {}", self.failed.join(", "))
        }
    }
}

fn test(ws: &Workspace, args: &[String]) -> Result<()> {
    banner("setup");
    setup::setup(ws)?;
    setup::ensure_debian_packages(&setup::TEST_PACKAGES)?;
    banner("build zombie-trace and the scenario workloads");
    run(&mut ws.cargo(BUILD_TEST_BINARIES), BUILD_FIX)?;
    let mut phases = Phases::default();
    phases.run("unit tests", || {
        run(
            &mut ws.cargo([
                "test",
                "-p",
                "zombie-trace-common",
                "-p",
                "zombie-trace",
                "-p",
                "xtask",
            ]),
            "see the failing tests above",
        )
    });
    phases.run("privileged scenario tests (one thread)", || {
        let mut scenario = ws.cargo(["test", "-p", "zombie-trace-tests", "--"]);
        scenario.arg("--test-threads=1").args(args);
        run(
            &mut scenario,
            "see the failing tests above; they need root (BPF, tracefs)",
        )
    });
    // The kernel matrix runs the same tests, so a name filter is for the
    // host only; under CI it always runs.
    let in_ci = std::env::var("CI").is_ok_and(|value| value == "true");
    // The package test's release build and clean userland are made while
    // the kernel matrix runs: its guests keep one core busy (TCG runs
    // single-threaded), the build takes the other.
    let package_skip = package_test_skip_reason(in_ci, args);
    let mut preparing = match package_skip {
        None => Some(PackagePrep::start(ws)),
        Some(_) => None,
    };
    match vmtest_skip_reason(in_ci, args) {
        Some(reason) => eprintln!("\n==== xtask: kernel matrix (VMs): skipped: {reason} ===="),
        None => phases.run("kernel matrix (VMs)", || {
            vmtest::vmtest(ws, &vmtest::VmtestArgs::all())
        }),
    }
    // The .deb on a clean Debian 12 userland (`cargo xtask dist --test`).
    match package_skip {
        Some(reason) => eprintln!("\n==== xtask: package test (VM): skipped: {reason} ===="),
        None => phases.run("package test (VM)", || {
            let package_ws = match preparing.take() {
                Some(prep) => prep.finish()?,
                None => bail!("the package test was not prepared"),
            };
            let artifacts = dist::dist(&package_ws)?;
            vmtest::package::test_package(&package_ws, &artifacts.deb)
        }),
    }
    phases.finish("test")
}

/// `cargo xtask dist --prepare` running in the background, in its own
/// target directory (so that it never waits for the build lock of the
/// kernel matrix's builds), one compiler job at a time, its output in a log.
struct PackagePrep {
    workspace: Workspace,
    log: PathBuf,
    child: std::io::Result<std::process::Child>,
}

impl PackagePrep {
    fn start(ws: &Workspace) -> Self {
        let workspace = Workspace {
            root: ws.root.clone(),
            target_dir: ws.target_dir.join("package-build"),
        };
        let log = ws.target_dir.join("package-build.log");
        let child = std::env::current_exe().and_then(|xtask| {
            std::fs::create_dir_all(&workspace.target_dir)?;
            let out = std::fs::File::create(&log)?;
            let err = out.try_clone()?;
            eprintln!(
                "xtask: preparing the package test in the background (log: {})",
                log.display()
            );
            std::process::Command::new(xtask)
                .args(["dist", "--prepare"])
                .current_dir(&ws.root)
                .env("CARGO_TARGET_DIR", &workspace.target_dir)
                .env("CARGO_BUILD_JOBS", "1")
                .stdin(std::process::Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
        });
        Self {
            workspace,
            log,
            child,
        }
    }

    /// Waits for it; the workspace it prepared, or why it failed (with the
    /// end of its log).
    fn finish(self) -> Result<Workspace> {
        let status = self
            .child
            .and_then(|mut child| child.wait())
            .context("running `cargo xtask dist --prepare` in the background")?;
        if !status.success() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            bail!(
                "`cargo xtask dist --prepare` failed ({status}); the end of {}:\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        eprintln!(
            "package test: prepared in the background (log: {})",
            self.log.display()
        );
        Ok(self.workspace)
    }
}

/// Why `cargo xtask test` leaves the package test out: never under CI (it
/// fails there instead); elsewhere as for the kernel matrix, or when
/// debootstrap cannot run.
fn package_test_skip_reason(in_ci: bool, args: &[String]) -> Option<String> {
    if in_ci {
        return None;
    }
    vmtest_skip_reason(in_ci, args).or_else(vmtest::package::unavailable)
}

/// Why `cargo xtask test` leaves the kernel matrix out: never under CI (it
/// fails there instead); elsewhere when the host cannot run it or the user
/// asked for some tests only.
fn vmtest_skip_reason(in_ci: bool, args: &[String]) -> Option<String> {
    if in_ci {
        return None;
    }
    if !args.is_empty() {
        return Some("a test filter was given (run `cargo xtask vmtest` for the VMs)".to_owned());
    }
    if let Some(reason) = vmtest::unavailable() {
        return Some(reason);
    }
    if find_in_path(vmtest::QEMU).is_none() && !is_root() {
        return Some(
            "qemu-system-x86_64 is missing and installing it needs root \
             (`sudo apt-get install qemu-system-x86`)"
                .to_owned(),
        );
    }
    None
}

fn lint(ws: &Workspace) -> Result<()> {
    // Clippy runs zombie-trace's build script, which builds the eBPF programs.
    banner("setup");
    setup::setup(ws)?;
    setup::ensure_nightly_component("clippy")?;
    let mut phases = Phases::default();
    phases.run("rustfmt", || {
        run(
            &mut ws.cargo(["fmt", "--all", "--", "--check"]),
            "run `cargo fmt --all`",
        )
    });
    phases.run("clippy (host crates)", || {
        run(
            &mut ws.cargo([
                "clippy",
                "-p",
                "zombie-trace-common",
                "-p",
                "zombie-trace",
                "-p",
                "xtask",
                "-p",
                "zombie-trace-tests",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
            "fix the clippy findings above",
        )
    });
    phases.run("clippy (eBPF crate, nightly)", || {
        // `rustup run nightly` so that the nightly toolchain is used and
        // bpf-linker (linked to nightly's libLLVM) finds its library.
        let mut clippy = cmd(
            "rustup",
            [
                "run",
                "nightly",
                "cargo",
                "clippy",
                "-p",
                "zombie-trace-ebpf",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--release",
                "--",
                "-D",
                "warnings",
            ],
        );
        clippy.current_dir(&ws.root);
        run(&mut clippy, "fix the clippy findings above")
    });
    phases.finish("lint")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_passes_args_after_double_dash() -> Result<()> {
        let cli = Cli::try_parse_from(["xtask", "run", "--release", "--", "--pid", "1"])?;
        let Task::Run { release, args } = cli.task else {
            bail!("parsed as another task");
        };
        assert!(release);
        assert_eq!(args, ["--pid", "1"]);
        Ok(())
    }

    #[test]
    fn test_passes_filter_after_double_dash() -> Result<()> {
        let cli = Cli::try_parse_from(["xtask", "test", "--", "reaps_children"])?;
        let Task::Test { args } = cli.task else {
            bail!("parsed as another task");
        };
        assert_eq!(args, ["reaps_children"]);
        Ok(())
    }
}
