//! Shared by the test modules: the CI rule, the runtime, lookups.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use zombie_trace::engine::live::Session;
use zombie_trace::kernel::tracer::TracerOptions;
use zombie_trace::model::{Ledger, ParentStats, Process};
use zombie_trace_tests::client::bin_path;
pub use zombie_trace_tests::client::budget;

/// The running test's name, module path included (`scenarios::...`):
/// libtest runs every test on a thread named after it, also with
/// `--test-threads=1`, so no test has to spell its own name.
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("an unnamed test thread")
        .to_owned()
}

/// Whether privileged (BPF-loading) tests can run here (see [`can_run`]).
pub fn privileged() -> bool {
    can_run(privilege_problem(), None)
}

/// [`privileged`] for the privileged `part` of a test whose other parts
/// run without privileges.
pub fn privileged_for(part: &str) -> bool {
    can_run(privilege_problem(), Some(part))
}

fn privilege_problem() -> Option<String> {
    zombie_trace::kernel::check::privilege_problem()
        .map(|problem| format!("this privileged test cannot run: {problem}"))
}

/// Whether the running test (or its `part`) can go on despite `problem`,
/// a missing privilege or tool. Under `CI=true` a test that cannot run
/// fails, so that CI never passes by skipping; elsewhere it is skipped with
/// the reason. Both name the test.
pub fn can_run(problem: Option<String>, part: Option<&str>) -> bool {
    let Some(problem) = problem else {
        return true;
    };
    let what = match part {
        Some(part) => format!("{} ({part})", test_name()),
        None => test_name(),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}: CI=true, but {problem}");
    }
    eprintln!("skipping {what}: {problem}");
    false
}

pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => panic!("cannot start a tokio runtime: {err}"),
    }
}

pub fn start_session(options: TracerOptions) -> Session {
    match Session::start(options) {
        Ok(session) => session,
        Err(err) => panic!("the tracer did not start: {err}"),
    }
}

/// Long enough for any event on an idle 2-core machine; a test that expects
/// a state waits at most this long, a test that expects nothing to happen
/// watches for `QUIET`.
pub const TIMEOUT: Duration = Duration::from_secs(5);
pub const QUIET: Duration = Duration::from_millis(300);

/// `zombie-trace check --json`: its exit status and the checks by name.
pub fn check_json() -> (std::process::ExitStatus, Vec<serde_json::Value>) {
    let output = Command::new(bin_path("zombie-trace"))
        .args(["check", "--json"])
        .output()
        .expect("run zombie-trace check");
    let checks: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("check --json prints an array");
    (output.status, checks)
}

/// The detail `check` gives for the check called `name`.
pub fn check_detail(checks: &[serde_json::Value], name: &str) -> String {
    checks
        .iter()
        .find(|check| check["name"] == name)
        .and_then(|check| check["detail"].as_str())
        .unwrap_or_else(|| panic!("check has no {name:?}: {checks:#?}"))
        .to_owned()
}

/// The live process with this PID in the ledger.
pub fn process(ledger: &Ledger, pid: u32) -> Option<&Process> {
    ledger.find_pid(pid)
}

pub fn stats(ledger: &Ledger, pid: u32) -> ParentStats {
    process(ledger, pid).map(|p| p.stats).unwrap_or_default()
}

pub fn pending(ledger: &Ledger, pid: u32) -> u32 {
    stats(ledger, pid).pending
}

/// The PIDs of the zombies the ledger says the live process `pid` owes,
/// sorted.
pub fn zombies_owed(ledger: &Ledger, pid: u32) -> Vec<u32> {
    let Some(parent) = process(ledger, pid) else {
        return Vec::new();
    };
    let mut zombies: Vec<u32> = ledger
        .children(&parent.key)
        .filter(|c| c.is_zombie())
        .map(|c| c.key.pid)
        .collect();
    zombies.sort_unstable();
    zombies
}

/// The unprivileged user the privilege tests switch to.
pub const NOBODY: u32 = 65534;

/// A copy of the zombie-trace binary that an unprivileged user can run, in a
/// fresh world-readable directory that is removed on drop: the build tree
/// may be private to root (a clone under /root is), and then nobody cannot
/// reach the binary there.
pub struct UnprivilegedBinary {
    dir: PathBuf,
    path: PathBuf,
}

impl UnprivilegedBinary {
    pub fn new() -> Self {
        let base = std::env::temp_dir();
        // A directory of our own: never reuse one somebody else created.
        let dir = (0..100)
            .map(|n| {
                base.join(format!(
                    "zombie-trace-unprivileged-{}-{n}",
                    std::process::id()
                ))
            })
            .find(|dir| std::fs::create_dir(dir).is_ok())
            .unwrap_or_else(|| panic!("cannot create a directory in {}", base.display()));
        let open = std::fs::Permissions::from_mode(0o755);
        let path = dir.join("zombie-trace");
        std::fs::set_permissions(&dir, open.clone())
            .and_then(|()| std::fs::copy(bin_path("zombie-trace"), &path).map(drop))
            .and_then(|()| std::fs::set_permissions(&path, open))
            .unwrap_or_else(|err| panic!("copying zombie-trace to {}: {err}", dir.display()));
        Self { dir, path }
    }

    /// The copy itself.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The world-readable directory the copy is in (for files nobody must read).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// A command running the copy, as nobody when the tests run as root.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.path);
        // Safety: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            // std drops supplementary groups when root switches uid.
            command.uid(NOBODY).gid(NOBODY);
        }
        command
    }
}

impl Drop for UnprivilegedBinary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private directory for one test's files, removed at the end.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh directory named after the running test (and this process):
    /// one per test.
    pub fn new() -> Scratch {
        let test = test_name().replace("::", "-");
        let dir = std::env::temp_dir().join(format!("zt-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
