//! The driving side, for the tests and the bench (`cargo xtask bench`):
//! start a workload under the `reaper` harness, read its ready line, shut
//! it down ([`Workload`]); start any other process with its stderr
//! collected and stop it by its PID ([`Process`]); read the lines of
//! several processes in the order they come, stamped ([`Line`]).
//!
//! # Finding the binaries
//!
//! Cargo builds the package's binaries before running its integration
//! tests and exposes their paths as `env!("CARGO_BIN_EXE_<name>")`, but
//! only while compiling those tests. This library therefore resolves
//! binaries at run time ([`bin_dir`]), trying in order:
//!
//! 1. the directory in `$ZOMBIE_TRACE_BIN_DIR`, if set;
//! 2. the directory of `$CARGO_BIN_EXE_reaper`, if set at run time;
//! 3. the directory of the running executable, and its parent when that
//!    directory is called `deps`: integration-test executables live in
//!    `target/[<triple>/]<profile>/deps/`, binaries one level up.
//!
//! The first candidate that contains an executable `reaper` wins; the
//! `zombie-trace` binary is looked up in the same directory. Tests
//! that prefer compile-time paths can use [`Workload::start_at`] with
//! `env!("CARGO_BIN_EXE_reaper")` and `env!("CARGO_BIN_EXE_<name>")`.

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::workload::{ProcStat, mono_ns, proc_stat};

/// How long [`Workload::start`] waits for the ready line on a host (a
/// workload forks up to a few thousand children first); stretched by
/// [`budget`].
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How many times slower than a host the machine running the tests is:
/// `ZOMBIE_TRACE_TEST_SLOWDOWN`, which `cargo xtask vmtest` sets in an
/// emulated (TCG) guest, where every instruction is interpreted; 1
/// elsewhere.
pub fn slowdown() -> u32 {
    std::env::var("ZOMBIE_TRACE_TEST_SLOWDOWN")
        .ok()
        .and_then(|value| value.parse::<u32>().ok())
        .filter(|&factor| factor >= 1)
        .unwrap_or(1)
}

/// A budget for work to get done (a start-up, a catch-up after a burst),
/// stretched by [`slowdown`]. Never for a bound that is what a test is
/// about, such as a zombie's age against the report interval.
pub fn budget(on_a_host: Duration) -> Duration {
    on_a_host * slowdown()
}

/// How long [`Workload::finish`] waits for a clean exit before killing.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Grace period after each kill step in [`Workload::finish`].
const KILL_GRACE: Duration = Duration::from_secs(3);

fn is_executable(p: &Path) -> bool {
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The directory holding the `reaper`, workload and zombie-trace binaries (see the
/// module documentation for how it is found). Panics when none of the
/// candidates has a `reaper`.
pub fn bin_dir() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("ZOMBIE_TRACE_BIN_DIR") {
        candidates.push(PathBuf::from(d));
    }
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_reaper")
        && let Some(d) = Path::new(&p).parent()
    {
        candidates.push(d.to_path_buf());
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.to_path_buf());
        if dir.file_name().is_some_and(|n| n == "deps")
            && let Some(up) = dir.parent()
        {
            candidates.push(up.to_path_buf());
        }
    }
    for c in &candidates {
        if is_executable(&c.join("reaper")) {
            return c.clone();
        }
    }
    panic!(
        "cannot find the zombie-trace-tests binaries (looked for `reaper` in {candidates:?}); \
         build them with `cargo build -p zombie-trace-tests --bins` or set ZOMBIE_TRACE_BIN_DIR"
    );
}

/// Path of binary `name` (e.g. `"never-waits"`, `"zombie-trace"`) in
/// [`bin_dir`]. Panics when it is missing.
pub fn bin_path(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        is_executable(&p),
        "{} is missing: build it first (`cargo build -p zombie-trace -p zombie-trace-tests --bins`; \
         `cargo xtask test` does)",
        p.display()
    );
    p
}

/// Whether this kernel's io_uring has `IORING_OP_WAITID` (Linux 6.7 on), as
/// io_uring's own probe says; an error when io_uring cannot be set up.
pub fn kernel_has_io_uring_waitid() -> io::Result<bool> {
    let ring = io_uring::IoUring::new(2)?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    Ok(probe.is_supported(io_uring::opcode::WaitId::CODE))
}

/// Pids (from `pids`) that are zombies right now.
pub fn zombies_among(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|&p| stat(p).is_some_and(|s| s.state == 'Z'))
        .collect()
}

/// `/proc/<pid>/stat` of `pid`, if it exists.
pub fn stat(pid: u32) -> Option<ProcStat> {
    proc_stat(libc::pid_t::try_from(pid).ok()?)
}

/// All live descendants of `root` (children first), from a `/proc` scan.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut all: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(s) = stat(pid) {
                all.push((pid, u32::try_from(s.ppid).unwrap_or(0)));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &all {
            if ppid == p && !out.contains(&pid) {
                out.push(pid);
                frontier.push(pid);
            }
        }
    }
    out
}

/// Sends `signal` to `pid`, a process the caller started and has not
/// reaped yet (so the PID cannot have been reused).
pub fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(p) = libc::pid_t::try_from(pid)
        && p > 0
    {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(p, signal) };
    }
}

fn sigkill(pid: u32) {
    signal(pid, libc::SIGKILL);
}

type Shared = Arc<Mutex<Vec<u8>>>;

fn shared_text(buf: &Shared) -> String {
    match buf.lock() {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(p) => String::from_utf8_lossy(&p.into_inner()).into_owned(),
    }
}

fn append(buf: &Shared, bytes: &[u8]) {
    match buf.lock() {
        Ok(mut b) => b.extend_from_slice(bytes),
        Err(p) => p.into_inner().extend_from_slice(bytes),
    }
}

/// A process started with its stderr collected in the background (so that
/// a chatty process never blocks on a full pipe, and a failure can quote
/// it). Its owner stops it: dropping a `Process` neither signals nor
/// waits.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Shared,
    status: Option<ExitStatus>,
}

impl Process {
    /// Starts `command` with stdout and stderr piped, and stdin piped when
    /// `with_stdin` (else `/dev/null`); `name` is what messages call it.
    /// Returns the process and its stdout, for the caller to read.
    pub fn spawn(
        command: &mut Command,
        name: String,
        with_stdin: bool,
    ) -> io::Result<(Process, ChildStdout)> {
        let mut child = command
            .stdin(if with_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr: Shared = Arc::default();
        if let Some(mut err) = child.stderr.take() {
            let buf = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = err.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    append(&buf, &chunk[..n]);
                }
            });
        }
        let Some(stdout) = child.stdout.take() else {
            // Unreachable with Stdio::piped(); never leave the child behind.
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("the child has no stdout pipe"));
        };
        let stdin = child.stdin.take();
        let process = Process {
            name,
            child,
            stdin,
            stderr,
            status: None,
        };
        Ok((process, stdout))
    }

    /// What messages call the process.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes `line` and a newline to the process's stdin.
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("stdin of {} is already closed", self.name),
            ));
        };
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
    }

    /// Closes the process's stdin (end of file for it).
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        shared_text(&self.stderr)
    }

    /// The last `lines` lines the process wrote to stderr so far.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = self.stderr();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status, if the process has exited and been collected.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    self.status = Some(st);
                    return self.status;
                }
                Ok(None) => {}
                Err(_) => return None,
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL, then waits for the process without a time limit.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        sigkill(self.pid());
        match self.child.wait() {
            Ok(st) => {
                self.status = Some(st);
                st
            }
            Err(_) => ExitStatus::from_raw(libc::SIGKILL),
        }
    }
}

/// Who wrote a [`Line`], when the lines of several processes go to one
/// channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// zombie-trace (or another tracer).
    Tracer,
    /// A workload under the `reaper` harness.
    Workload,
}

/// One line of a process's stdout, without its line terminator, stamped
/// with `CLOCK_MONOTONIC` when it was read (comparable with the
/// workloads' `mono_ns` stamps); `text` is `None` at end of file.
#[derive(Debug)]
pub struct Line {
    pub source: Source,
    pub at_ns: i64,
    pub text: Option<String>,
}

/// Sends every line of `out` to `tx`, then one end-of-file [`Line`], from
/// a thread of its own.
pub fn forward_lines(out: ChildStdout, source: Source, tx: Sender<Line>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(out);
        loop {
            let mut text = String::new();
            let eof = !matches!(reader.read_line(&mut text), Ok(n) if n > 0);
            let line = Line {
                source,
                at_ns: mono_ns(),
                text: (!eof).then(|| text.trim_end().to_owned()),
            };
            if tx.send(line).is_err() || eof {
                break;
            }
        }
    });
}

/// Why [`next_line`] or [`wait_line`] returned no line.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("timed out after {secs:.1} s waiting for {what}")]
    Timeout { secs: f64, what: String },
    #[error("the output ended while waiting for {what}")]
    Ended { what: String },
    #[error("every output stream closed")]
    Closed,
}

/// The next line from `rx` by `deadline`; `None` on timeout.
pub fn next_line(rx: &Receiver<Line>, deadline: Instant) -> Result<Option<Line>, LineError> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(timeout) {
        Ok(line) => Ok(Some(line)),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(RecvTimeoutError::Disconnected) => Err(LineError::Closed),
    }
}

/// Reads lines until one from `source` satisfies `want`; fails on timeout
/// or when that source's output ends. Lines from other sources are passed
/// to `other`.
pub fn wait_line(
    rx: &Receiver<Line>,
    source: Source,
    timeout: Duration,
    what: &str,
    mut want: impl FnMut(&str) -> bool,
    mut other: impl FnMut(&Line),
) -> Result<Line, LineError> {
    let deadline = Instant::now() + timeout;
    loop {
        let Some(line) = next_line(rx, deadline)? else {
            return Err(LineError::Timeout {
                secs: timeout.as_secs_f64(),
                what: what.to_owned(),
            });
        };
        if line.source != source {
            other(&line);
            continue;
        }
        match &line.text {
            None => {
                return Err(LineError::Ended {
                    what: what.to_owned(),
                });
            }
            Some(text) if want(text) => return Ok(line),
            Some(_) => {}
        }
    }
}

/// A workload's ready line, parsed: a JSON object with `"ready":true` and
/// its `"pid"` (see the protocol in the crate documentation).
pub fn parse_ready(line: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(line.trim_end()) {
        Ok(v) if v["ready"] == serde_json::Value::Bool(true) && v["pid"].is_u64() => Ok(v),
        Ok(_) => Err(format!("unexpected ready line {line:?}")),
        Err(e) => Err(format!("ready line {line:?} is not JSON: {e}")),
    }
}

/// One workload running under the `reaper` harness.
///
/// Dropping it calls [`Workload::finish`].
#[derive(Debug)]
pub struct Workload {
    name: String,
    process: Process,
    /// The parsed ready line.
    pub ready: serde_json::Value,
    stdout_rest: Shared,
    /// Bytes of `stdout_rest` already returned by [`Workload::next_line`].
    stdout_cursor: usize,
    killed: bool,
}

impl Workload {
    /// Starts workload `name` (e.g. `"never-waits"`) with `args` under
    /// `reaper`, both found with [`bin_path`], and waits for its ready
    /// line. Panics (with the workload's stderr) on failure.
    pub fn start(name: &str, args: &[&str]) -> Workload {
        Workload::start_at(bin_path("reaper"), bin_path(name), args)
    }

    /// Like [`Workload::start`] with explicit paths for the harness and
    /// the workload, e.g. `env!("CARGO_BIN_EXE_reaper")`.
    pub fn start_at(
        reaper: impl AsRef<Path>,
        program: impl AsRef<Path>,
        args: &[&str],
    ) -> Workload {
        match Workload::try_start_at(reaper.as_ref(), program.as_ref(), args) {
            Ok(w) => w,
            Err(msg) => panic!("{msg}"),
        }
    }

    /// Like [`Workload::start`], with the harness (and so the workload it
    /// forks) placed in each of `cgroups` (directories of cgroup
    /// hierarchies) before it runs, as a container runtime or systemd places
    /// a service's first process.
    pub fn start_in(cgroups: &[PathBuf], name: &str, args: &[&str]) -> Workload {
        let procs: Vec<std::ffi::CString> = cgroups
            .iter()
            .map(|dir| {
                use std::os::unix::ffi::OsStrExt as _;
                std::ffi::CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
                    .expect("a cgroup path without NUL")
            })
            .collect();
        let mut command = Command::new(bin_path("reaper"));
        command.arg(bin_path(name)).args(args);
        // Safety: between fork and exec only async-signal-safe calls:
        // open, write, close; "0" names the writing process itself.
        unsafe {
            use std::os::unix::process::CommandExt as _;
            command.pre_exec(move || {
                for path in &procs {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                    let error = io::Error::last_os_error();
                    libc::close(fd);
                    if written != 1 {
                        return Err(error);
                    }
                }
                Ok(())
            });
        }
        match Workload::try_start_command(&mut command, name, args) {
            Ok(w) => w,
            Err(msg) => panic!("{msg} (in cgroups {cgroups:?})"),
        }
    }

    /// Like [`Workload::start_at`], returning the failure message
    /// instead of panicking. Nothing is left running on failure.
    pub fn try_start_at(reaper: &Path, program: &Path, args: &[&str]) -> Result<Workload, String> {
        let name = program.file_name().map_or_else(
            || program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Workload::try_start_command(Command::new(reaper).arg(program).args(args), &name, args)
            .map_err(|e| format!("{e} ({} {})", reaper.display(), program.display()))
    }

    /// Spawns `command` (a harness running workload `name`) and waits for
    /// the workload's ready line.
    fn try_start_command(
        command: &mut Command,
        name: &str,
        args: &[&str],
    ) -> Result<Workload, String> {
        let name = name.to_owned();
        let (process, out) = Process::spawn(command, name.clone(), true)
            .map_err(|e| format!("cannot start workload {name}: {e}"))?;

        let stdout_rest: Shared = Arc::default();
        let (tx, rx) = mpsc::channel::<Result<String, String>>();
        {
            let rest = Arc::clone(&stdout_rest);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(out);
                let mut first = String::new();
                let sent = match reader.read_line(&mut first) {
                    Ok(0) => tx.send(Err("stdout closed before the ready line".into())),
                    Ok(_) => tx.send(Ok(first)),
                    Err(e) => tx.send(Err(format!("reading stdout: {e}"))),
                };
                if sent.is_err() {
                    return;
                }
                let mut chunk = [0u8; 4096];
                while let Ok(n) = reader.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    append(&rest, &chunk[..n]);
                }
            });
        }
        let mut w = Workload {
            name,
            process,
            ready: serde_json::Value::Null,
            stdout_rest,
            stdout_cursor: 0,
            killed: false,
        };

        let ready_timeout = budget(READY_TIMEOUT);
        let problem = match rx.recv_timeout(ready_timeout) {
            Ok(Ok(line)) => match parse_ready(&line) {
                Ok(v) => {
                    w.ready = v;
                    None
                }
                Err(msg) => Some(msg),
            },
            Ok(Err(msg)) => Some(msg),
            Err(_) => Some(format!(
                "no ready line within {} s",
                ready_timeout.as_secs()
            )),
        };
        match problem {
            None => Ok(w),
            Some(p) => {
                let status = w.finish_with_timeout(Duration::from_secs(2));
                // Give the stderr reader a moment to collect the tail.
                std::thread::sleep(Duration::from_millis(50));
                Err(format!(
                    "workload {} {args:?} failed to become ready: {p}; reaper exit: {status}; \
                     stderr:\n{}",
                    w.name,
                    w.process.stderr()
                ))
            }
        }
    }

    /// The workload's name (file name of its binary).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parsed ready line.
    pub fn json(&self) -> &serde_json::Value {
        &self.ready
    }

    /// The workload's own pid (from the ready line; not the reaper's).
    pub fn pid(&self) -> u32 {
        self.ready["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0)
    }

    /// The pid of the `reaper` harness (the workload's parent, and the
    /// subreaper that adopts and reaps its orphans).
    pub fn harness_pid(&self) -> u32 {
        self.process.pid()
    }

    /// Same as [`Workload::harness_pid`].
    pub fn reaper_pid(&self) -> u32 {
        self.process.pid()
    }

    /// The `"children"` pids from the ready line.
    pub fn children(&self) -> Vec<u32> {
        self.pids("children")
    }

    /// The integers in array `key` of the ready line (e.g. `"orphans"`,
    /// `"pending"`, `"threads"`); empty when absent.
    pub fn pids(&self, key: &str) -> Vec<u32> {
        self.ready[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_u64().and_then(|p| u32::try_from(p).ok()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every process pid the ready line mentions: `pid`, `middle` and
    /// the arrays `children`, `orphans`, `pending`, `reaped` (not
    /// `threads`: those are thread ids).
    pub fn all_pids(&self) -> Vec<u32> {
        let mut v = vec![self.pid()];
        if let Some(m) = self.ready["middle"]
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
        {
            v.push(m);
        }
        for key in ["children", "orphans", "pending", "reaped"] {
            for p in self.pids(key) {
                if !v.contains(&p) {
                    v.push(p);
                }
            }
        }
        v
    }

    /// Writes `line` and a newline to the workload's stdin. Panics when
    /// stdin is already closed or the write fails.
    pub fn send_line(&mut self, line: &str) {
        if let Err(e) = self.process.send_line(line) {
            panic!("send_line({line:?}) to {}: {e}", self.name);
        }
    }

    /// Everything the harness and workload wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Anything written to stdout after the ready line so far.
    pub fn stdout_after_ready(&self) -> String {
        shared_text(&self.stdout_rest)
    }

    /// Waits up to `timeout` for the next complete line the workload
    /// writes to stdout after the ready line and returns it without its
    /// line terminator. Each line is returned once, in order; this does
    /// not change what [`Workload::stdout_after_ready`] returns. `None`
    /// on timeout, or soon after the harness has exited without
    /// writing another complete line.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut exited_at: Option<Instant> = None;
        loop {
            let line = {
                let buf = match self.stdout_rest.lock() {
                    Ok(b) => b,
                    Err(p) => p.into_inner(),
                };
                let rest = buf.get(self.stdout_cursor..).unwrap_or_default();
                rest.iter().position(|&b| b == b'\n').map(|pos| {
                    let text = String::from_utf8_lossy(&rest[..pos])
                        .trim_end_matches('\r')
                        .to_owned();
                    (text, pos + 1)
                })
            };
            if let Some((text, used)) = line {
                self.stdout_cursor += used;
                return Some(text);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            // Once the harness is gone, the stdout reader thread only
            // has the pipe's last bytes left to collect.
            if exited_at.is_none() && self.wait_exit(Duration::ZERO).is_some() {
                exited_at = Some(now);
            }
            if exited_at.is_some_and(|t| now >= t + Duration::from_millis(200)) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether [`Workload::finish`] had to kill processes.
    pub fn was_killed(&self) -> bool {
        self.killed
    }

    /// The reaper's exit status, if it has exited and been collected.
    pub fn status(&self) -> Option<ExitStatus> {
        self.process.status()
    }

    /// Waits up to `timeout` for the reaper to exit by itself (without
    /// closing stdin), e.g. after `send_line("exit")`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// [`Workload::finish_with_timeout`] with [`FINISH_TIMEOUT`].
    pub fn finish(&mut self) -> ExitStatus {
        self.finish_with_timeout(FINISH_TIMEOUT)
    }

    /// Closes the workload's stdin and waits up to `timeout` for the
    /// reaper (which exits once the workload and every orphan are
    /// reaped). Idempotent: later calls return the same status.
    ///
    /// On timeout it escalates, by pid, waiting [`KILL_GRACE`] after
    /// each step: SIGKILL the workload (the reaper then reaps it and
    /// its orphans); SIGKILL every remaining descendant of the reaper;
    /// finally SIGKILL the reaper itself. [`Workload::was_killed`]
    /// reports whether that happened; the status is then non-zero.
    pub fn finish_with_timeout(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(st) = self.process.status() {
            return st;
        }
        self.process.close_stdin();
        if let Some(st) = self.wait_exit(timeout) {
            return st;
        }
        self.killed = true;
        let reaper = self.reaper_pid();
        let pid = self.pid();
        if pid != 0 && stat(pid).is_some_and(|s| u32::try_from(s.ppid).ok() == Some(reaper)) {
            sigkill(pid);
            if let Some(st) = self.wait_exit(KILL_GRACE) {
                return st;
            }
        }
        for p in descendants(reaper) {
            sigkill(p);
        }
        if let Some(st) = self.wait_exit(KILL_GRACE) {
            return st;
        }
        self.process.kill()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.finish();
    }
}
