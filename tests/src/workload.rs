//! Helpers shared by the workload programs in `src/bin/`.
//!
//! Everything here either works or calls [`fatal`]: the programs are
//! tiny and an error always means "print why, exit 1".

use std::ffi::c_int;
use std::fmt::{Display, Write as _};
use std::io::{self, Write as _};
use std::time::{Duration, Instant};

/// A process id, as libc spells it.
pub type Pid = libc::pid_t;

/// How long a workload waits for its scenario to be established.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Interval between two looks at `/proc` while waiting for a state.
pub const POLL_INTERVAL: Duration = Duration::from_micros(250);

/// Upper bound for any count argument: pid_max is 32,768 on the hosts
/// we run on, so a typo must not exhaust the pid space.
pub const MAX_COUNT: usize = 8192;

/// The program name (file name of argv\[0\]), for messages.
pub fn prog_name() -> String {
    std::env::args_os()
        .next()
        .map(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map_or_else(|| a.clone(), |f| f.to_os_string())
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_else(|| "workload".to_owned())
}

/// Prints `<prog>: <msg>` to stderr and terminates the calling process
/// with `_exit(1)`.
///
/// `_exit` (not `exit`) so that it is also correct in a forked helper
/// process. Nothing is ever left in the stdout buffer: the ready line is
/// flushed as soon as it is written.
pub fn fatal(msg: impl Display) -> ! {
    let _ = writeln!(io::stderr(), "{}[{}]: {msg}", prog_name(), getpid());
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(1) }
}

/// Like [`fatal`], with the current `errno` appended.
pub fn fatal_errno(what: impl Display) -> ! {
    let err = io::Error::last_os_error();
    fatal(format_args!("{what}: {err}"))
}

/// `getpid()`.
pub fn getpid() -> Pid {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// `gettid()`.
pub fn gettid() -> Pid {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Positional argument `index` (1 = first argument after the program
/// name) parsed as a count, or `default` when it is absent. Exits on a
/// malformed value or one above [`MAX_COUNT`].
pub fn count_arg(index: usize, default: usize) -> usize {
    let n = number_arg(index, default as u64);
    match usize::try_from(n) {
        Ok(n) if n <= MAX_COUNT => n,
        _ => fatal(format_args!(
            "argument {index}: count {n} is larger than the maximum {MAX_COUNT}"
        )),
    }
}

/// Positional argument `index` parsed as an unsigned number, or
/// `default` when it is absent.
pub fn number_arg(index: usize, default: u64) -> u64 {
    match std::env::args().nth(index) {
        None => default,
        Some(s) => s.trim().parse().unwrap_or_else(|_| {
            fatal(format_args!(
                "argument {index}: expected a non-negative number, got {s:?}"
            ))
        }),
    }
}

/// `fork()`; exits on failure. Returns 0 in the child.
///
/// The workloads are single-threaded when they fork, so the child may
/// allocate and use std freely.
pub fn fork() -> Pid {
    // SAFETY: fork has no memory-safety preconditions; the callers are
    // single-threaded.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fatal_errno("fork");
    }
    pid
}

/// Forks a child that immediately calls `_exit(code)`; returns its pid.
pub fn fork_exiting_child(code: c_int) -> Pid {
    let pid = fork();
    if pid == 0 {
        // SAFETY: _exit is always safe to call.
        unsafe { libc::_exit(code) }
    }
    pid
}

/// In a forked helper process that lives for a while (not one that
/// `_exit`s at once): restores default dispositions for the signals the
/// workload itself catches, so that the helper is not confused with
/// the workload.
pub fn reset_signals_in_child() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGCHLD] {
        set_signal(sig, libc::SIG_DFL, 0);
    }
}

/// `sigaction(sig, {handler, flags, empty mask})`; exits on failure.
///
/// `handler` is `SIG_DFL`, `SIG_IGN` or a handler function pointer
/// converted with [`handler_addr`].
pub fn set_signal(sig: c_int, handler: libc::sighandler_t, flags: c_int) {
    // SAFETY: an all-zero sigaction is a valid value; the mask is
    // initialised with sigemptyset before use.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler;
    sa.sa_flags = flags;
    // SAFETY: sa is a valid sigaction, and a null old-action pointer is
    // allowed.
    let rc = unsafe {
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut())
    };
    if rc != 0 {
        fatal_errno(format_args!("sigaction({sig})"));
    }
}

/// The address of a signal handler, as `sigaction` wants it.
pub fn handler_addr(handler: extern "C" fn(c_int)) -> libc::sighandler_t {
    handler as *const () as libc::sighandler_t
}

/// Children reaped by the handler [`install_reaping_handler`] installs.
static REAPED_BY_HANDLER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn reap_on_sigchld(_sig: c_int) {
    // SAFETY: only async-signal-safe calls: errno access and waitpid.
    unsafe {
        let errno = *libc::__errno_location();
        while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {
            REAPED_BY_HANDLER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        *libc::__errno_location() = errno;
    }
}

/// Installs the SIGCHLD handler a correct parent has (`SA_RESTART`): it
/// loops `waitpid(-1, WNOHANG)` and counts the children it reaps.
pub fn install_reaping_handler() {
    set_signal(
        libc::SIGCHLD,
        handler_addr(reap_on_sigchld),
        libc::SA_RESTART,
    );
}

/// How many children the handler of [`install_reaping_handler`] reaped.
pub fn reaped_by_handler() -> usize {
    REAPED_BY_HANDLER.load(std::sync::atomic::Ordering::SeqCst)
}

/// The fields of `/proc/<pid>/stat` the workloads care about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3, e.g. `'R'`, `'S'`, `'Z'`.
    pub state: char,
    /// Field 4.
    pub ppid: Pid,
    /// Field 22, in clock ticks since boot; with the pid it identifies
    /// a process across pid reuse.
    pub starttime: u64,
}

/// Parses the contents of a `/proc/<pid>/stat` file.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may itself
    // contain spaces and parentheses: everything after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    // Fields 5..=21 are skipped; starttime is field 22.
    let starttime = fields.nth(17)?.parse().ok()?;
    Some(ProcStat {
        state,
        ppid,
        starttime,
    })
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process (or
/// the file cannot be parsed).
pub fn proc_stat(pid: Pid) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Whether thread `tid` of process `pid` still exists.
pub fn task_exists(pid: Pid, tid: Pid) -> bool {
    std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
}

/// Whether `pid` is a zombie child of `parent`.
pub fn is_zombie_of(pid: Pid, parent: Pid) -> bool {
    proc_stat(pid).is_some_and(|s| s.state == 'Z' && s.ppid == parent)
}

/// Whether `pid`, once a child of `parent`, is gone: no `/proc` entry,
/// or the entry belongs to some other process (pid reused) that is
/// not a child of `parent`.
pub fn is_gone_from(pid: Pid, parent: Pid) -> bool {
    proc_stat(pid).is_none_or(|s| s.ppid != parent)
}

/// Whether the process `pid` that started at `starttime` is gone: no
/// `/proc` entry, or one with another start time (pid reused).
pub fn is_gone_since(pid: Pid, starttime: u64) -> bool {
    proc_stat(pid).is_none_or(|s| s.starttime != starttime)
}

/// Polls `cond` every [`POLL_INTERVAL`] until it is true; after
/// [`SETUP_TIMEOUT`] calls [`fatal`] with a message naming `what`.
pub fn wait_until(what: impl Display, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            fatal(format_args!(
                "timed out after {} s waiting for {what}",
                SETUP_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Waits until every pid in `pids` is a zombie whose parent is `parent`.
pub fn wait_zombies(pids: &[Pid], parent: Pid) {
    for &pid in pids {
        wait_until(
            format_args!("pid {pid} to be a zombie child of {parent}"),
            || is_zombie_of(pid, parent),
        );
    }
}

/// Waits until every pid in `pids` (children of `parent`) is gone.
pub fn wait_gone(pids: &[Pid], parent: Pid) {
    for &pid in pids {
        wait_until(
            format_args!("child {pid} of {parent} to disappear from /proc"),
            || is_gone_from(pid, parent),
        );
    }
}

/// `waitpid(pid, &status, flags)`, retried on EINTR. Returns the pid
/// and status, or the errno.
pub fn waitpid(pid: Pid, flags: c_int) -> Result<(Pid, c_int), io::Error> {
    loop {
        let mut status: c_int = 0;
        // SAFETY: status is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r >= 0 {
            return Ok((r, status));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Reaps the child `pid` (blocking); exits on error. Returns the raw
/// wait status.
pub fn reap(pid: Pid) -> c_int {
    match waitpid(pid, 0) {
        Ok((_, status)) => status,
        Err(e) => fatal(format_args!("waitpid({pid}): {e}")),
    }
}

/// Reaps children with `waitpid(-1, 0)` until ECHILD; returns the pids
/// reaped.
pub fn reap_all() -> Vec<Pid> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(-1, 0) {
            Ok((pid, _)) => reaped.push(pid),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return reaped,
            Err(e) => fatal(format_args!("waitpid(-1): {e}")),
        }
    }
}

/// Whether a raw wait status says "exited with status 0".
pub fn exited_ok(status: c_int) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// A pipe whose both ends are close-on-exec.
pub fn pipe() -> (c_int, c_int) {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds is a valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        fatal_errno("pipe2");
    }
    (fds[0], fds[1])
}

/// `close(fd)`, ignoring errors.
pub fn close(fd: c_int) {
    // SAFETY: closing a descriptor we own.
    unsafe { libc::close(fd) };
}

/// Writes all of `buf` to `fd`; exits on failure.
pub fn write_all(fd: c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            fatal_errno("write");
        }
        buf = &buf[n.unsigned_abs()..];
    }
}

/// Reads from `fd` until end of file; exits on failure.
pub fn read_to_end(fd: c_int) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            fatal_errno("read");
        }
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n.unsigned_abs()]);
    }
}

/// Encodes numbers as little-endian `i64`s (for helper-to-workload pipes).
pub fn encode_i64s(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Inverse of [`encode_i64s`]; exits when the length is not a multiple
/// of 8.
pub fn decode_i64s(bytes: &[u8]) -> Vec<i64> {
    if !bytes.len().is_multiple_of(8) {
        fatal(format_args!(
            "helper sent {} bytes, not a whole number of i64s",
            bytes.len()
        ));
    }
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            i64::from_le_bytes(a)
        })
        .collect()
}

/// Builder for the single "ready" JSON line.
///
/// Keys come out in insertion order, starting with `ready`, `pid`,
/// `children` and `workload`.
#[derive(Debug)]
pub struct Ready {
    line: String,
}

fn json_list<T: Display>(items: &[T]) -> String {
    let mut s = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{item}");
    }
    s.push(']');
    s
}

impl Ready {
    /// `{"ready":true,"pid":<getpid()>,"children":[..],"workload":"<prog name>"`.
    pub fn new(children: &[Pid]) -> Ready {
        let mut r = Ready {
            line: format!("{{\"ready\":true,\"pid\":{}", getpid()),
        };
        r.raw("children", &json_list(children));
        // Program names are plain ASCII without quotes or backslashes.
        let name = prog_name().replace(['"', '\\'], "_");
        r.raw("workload", &format!("\"{name}\""));
        r
    }

    fn raw(&mut self, key: &str, value: &str) {
        let _ = write!(self.line, ",\"{key}\":{value}");
    }

    /// Adds `"key":[pids]`.
    pub fn pids(mut self, key: &str, pids: &[Pid]) -> Ready {
        self.raw(key, &json_list(pids));
        self
    }

    /// Adds `"key":<integer>`.
    pub fn int(mut self, key: &str, value: i64) -> Ready {
        self.raw(key, &value.to_string());
        self
    }

    /// Adds `"key":[numbers]`, printed with three decimals.
    pub fn floats(mut self, key: &str, values: &[f64]) -> Ready {
        let rendered: Vec<String> = values.iter().map(|v| format!("{v:.3}")).collect();
        self.raw(key, &json_list(&rendered));
        self
    }

    /// Writes the line plus `\n` to stdout and flushes; exits on error.
    pub fn print(mut self) {
        self.line.push_str("}\n");
        let mut out = io::stdout().lock();
        if let Err(e) = out
            .write_all(self.line.as_bytes())
            .and_then(|()| out.flush())
        {
            fatal(format_args!("writing the ready line to stdout: {e}"));
        }
    }
}

/// `clock` in nanoseconds.
pub fn clock_ns(clock: libc::clockid_t) -> io::Result<i64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ts.tv_sec * 1_000_000_000 + ts.tv_nsec)
}

/// `CLOCK_BOOTTIME` in nanoseconds (the clock of `bpf_ktime_get_boot_ns`).
pub fn boottime_ns() -> i64 {
    clock_ns(libc::CLOCK_BOOTTIME)
        .unwrap_or_else(|e| fatal(format_args!("clock_gettime(CLOCK_BOOTTIME): {e}")))
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock the bench compares the
/// workloads' time stamps with.
pub fn mono_ns() -> i64 {
    clock_ns(libc::CLOCK_MONOTONIC)
        .unwrap_or_else(|e| fatal(format_args!("clock_gettime(CLOCK_MONOTONIC): {e}")))
}

/// Writes `line` plus `\n` to stdout and flushes: for the extra lines
/// some workloads print after the ready line. Unlike [`Ready::print`]
/// it returns the error (e.g. EPIPE when the reader is gone), so that
/// the caller can still clean up.
pub fn print_line(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The children of process `pid` (zombies included), sorted, as seen
/// from this process's pid namespace: from
/// `/proc/<pid>/task/*/children`, or from a scan of `/proc` for
/// `ppid == pid` when the kernel lacks those files. Empty when `pid`
/// does not exist.
pub fn children_of(pid: Pid) -> Vec<Pid> {
    let mut out: Vec<Pid> = Vec::new();
    let mut have_files = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                have_files = true;
                out.extend(
                    text.split_ascii_whitespace()
                        .filter_map(|w| w.parse::<Pid>().ok()),
                );
            }
        }
    }
    if !have_files && let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<Pid>().ok())
                && proc_stat(p).is_some_and(|s| s.ppid == pid)
            {
                out.push(p);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}
