//! Fast, hand-parsed `/proc` scanning.
//!
//! `zombie-trace snapshot` and the start-up of `zombie-trace watch` walk every
//! process on the host, and the hosts we care about are exactly the ones with
//! tens of thousands of zombies. The procfs crate (and `ps`) do far more work
//! per process than we need, so this module reads only `/proc/<pid>/stat`,
//! with one reused buffer, `openat(2)` relative to an open `/proc` directory,
//! and no allocation per process.
//!
//! Processes come and go during a scan: an entry that vanishes between
//! `readdir` and `read` is skipped silently (and counted), an entry that cannot
//! be read (for example `/proc` mounted with `hidepid=`) is counted as
//! unreadable, and only problems with `/proc` itself are errors.

use std::ffi::{CStr, CString};
use std::fmt::Write as _;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// Where procfs is expected; every path in this module is relative to it.
pub const PROC_ROOT: &str = "/proc";

/// The kernel's `TASK_COMM_LEN`: a task name is at most 15 bytes plus a NUL.
pub use zombie_trace_common::COMM_LEN as TASK_COMM_LEN;

/// Signal number of SIGCHLD on Linux (all architectures we build for).
pub const SIGCHLD: u32 = 17;

/// Size of the reused read buffer. A `/proc/<pid>/stat` line has 52 fields; even
/// with every numeric field at its 20-digit maximum and a 64-byte kernel
/// thread name it stays below 1,200 bytes.
const STAT_BUF_LEN: usize = 4096;

/// Errors from reading procfs.
///
/// Every message names the file involved and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// `/proc` itself (the directory) could not be opened or listed.
    #[error(
        "cannot list {path}: {source}; zombie-trace needs procfs: check that it is mounted \
         (`mount -t proc proc /proc`) and readable by this user"
    )]
    ProcDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file under `/proc` could not be read.
    #[error(
        "cannot read {path}: {source}; check that procfs is mounted at /proc and that this \
         user may read it (with `hidepid=` mount options, run as root)"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The scan ran out of a system resource (file descriptors, memory).
    #[error(
        "cannot open {path}: {source}; the process is out of file descriptors or memory: \
         raise the limit (`ulimit -n`) or free memory and retry"
    )]
    Resource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file under `/proc` did not have the format we expect.
    #[error(
        "unexpected content in {path}: {reason}; this kernel's procfs format is not \
         supported, please report it to zombie-trace with the file's content"
    )]
    Parse { path: PathBuf, reason: String },
    /// `sysconf(3)` failed.
    #[error(
        "sysconf({name}) failed: {source}; the C library cannot report this value, \
         please report it to zombie-trace with your libc and kernel versions"
    )]
    Sysconf {
        name: &'static str,
        #[source]
        source: io::Error,
    },
    /// `clock_gettime(2)` failed.
    #[error(
        "clock_gettime({clock}) failed: {source}; this clock needs Linux 2.6.39 or newer \
         (and must not be blocked by a seccomp filter)"
    )]
    Clock {
        clock: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Why a stat line could not be parsed (without the file name; see
/// [`ProcError::Parse`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StatParseError(&'static str);

/// The parts of `/proc/<pid>/stat` zombie-trace uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 1: the process ID (for top-level `/proc` entries, the thread group ID).
    pub pid: u32,
    /// Field 4: the parent's process ID (0 for PID 1 and kernel threads' parent kthreadd).
    pub ppid: u32,
    /// Field 3: the state letter (`R`, `S`, `D`, `Z`, `T`, `t`, `X`, `I`, ...).
    pub state: char,
    /// Field 2: the task name, truncated to 15 bytes and NUL padded, as the kernel's
    /// `task_struct::comm` and `bpf_get_current_comm()`.
    pub comm: [u8; TASK_COMM_LEN],
    /// Field 22: start time in clock ticks since boot (see [`clock_ticks_per_second`]).
    pub start_ticks: u64,
    /// Field 20: threads in the thread group.
    pub num_threads: u32,
    /// Field 9: the leader's `PF_*` flags.
    pub flags: u32,
}

/// `PF_EXITING`: the task is in `do_exit()`.
const PF_EXITING: u32 = 0x4;

impl ProcStat {
    /// The name's bytes, without the NUL padding.
    pub fn comm_bytes(&self) -> &[u8] {
        let len = self
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(TASK_COMM_LEN);
        &self.comm[..len]
    }

    /// The name as text (invalid UTF-8 is replaced).
    pub fn comm_lossy(&self) -> String {
        String::from_utf8_lossy(self.comm_bytes()).into_owned()
    }

    /// Whether the process is a zombie: every thread exited, and the parent has
    /// not reaped it yet.
    ///
    /// State `Z` alone is not enough: when only the thread group leader has exited
    /// (`pthread_exit` from `main`) while other threads still run, the kernel also
    /// reports `Z` (`ps` shows `Zl`), with `num_threads` counting the live threads.
    /// Such a process is alive and is nobody's unreaped child.
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' && self.num_threads <= 1
    }

    /// Whether the process is dying: its one thread is in `do_exit()` and
    /// will be a zombie (or auto-reaped) within microseconds. The kernel's
    /// exit event fires in that window, so a scan that sees this state may
    /// come after an exit event it does not show yet.
    pub fn is_exiting(&self) -> bool {
        self.flags & PF_EXITING != 0 && self.num_threads <= 1 && !self.is_zombie()
    }

    /// Start time in nanoseconds since boot (the clock of `CLOCK_BOOTTIME` and
    /// `bpf_ktime_get_boot_ns()`), given [`clock_ticks_per_second`].
    pub fn start_boot_ns(&self, ticks_per_second: u64) -> u64 {
        ticks_to_ns(self.start_ticks, ticks_per_second)
    }
}

impl std::fmt::Debug for ProcStat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcStat")
            .field("pid", &self.pid)
            .field("ppid", &self.ppid)
            .field("state", &self.state)
            .field("comm", &self.comm_lossy())
            .field("start_ticks", &self.start_ticks)
            .field("num_threads", &self.num_threads)
            .field("flags", &format_args!("{:#x}", self.flags))
            .finish()
    }
}

/// Converts clock ticks to nanoseconds without overflow for any realistic uptime.
pub fn ticks_to_ns(ticks: u64, ticks_per_second: u64) -> u64 {
    if ticks_per_second == 0 {
        return 0;
    }
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(ticks_per_second);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Parses one `/proc/<pid>/stat` line.
///
/// The name is everything between the first `(` and the last `)`: it may contain
/// spaces, parentheses and even newlines. Names longer than 15 bytes (kernel
/// threads' full names) are truncated, as `task_struct::comm` is.
pub fn parse_stat(line: &[u8]) -> Result<ProcStat, StatParseError> {
    let open = line
        .iter()
        .position(|&b| b == b'(')
        .ok_or(StatParseError("no '(' before the process name"))?;
    let close = line
        .iter()
        .rposition(|&b| b == b')')
        .ok_or(StatParseError("no ')' after the process name"))?;
    if close < open {
        return Err(StatParseError("')' before '('"));
    }
    let pid_field = line[..open]
        .strip_suffix(b" ")
        .ok_or(StatParseError("no space between the pid and '('"))?;
    let pid = parse_u32(pid_field).ok_or(StatParseError("field 1 (pid) is not a number"))?;

    let name = &line[open + 1..close];
    let mut comm = [0u8; TASK_COMM_LEN];
    let n = name.len().min(TASK_COMM_LEN - 1);
    comm[..n].copy_from_slice(&name[..n]);

    // Fields 3.. follow ") ", separated by single spaces.
    let rest = line[close + 1..]
        .strip_prefix(b" ")
        .ok_or(StatParseError("no space after ')'"))?;
    let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
    let mut fields = rest.split(|&b| b == b' ');

    let mut next = |missing: &'static str| fields.next().ok_or(StatParseError(missing));
    let state = match next("missing field 3 (state)")? {
        [c] if c.is_ascii_graphic() => char::from(*c),
        _ => return Err(StatParseError("field 3 (state) is not one letter")),
    };
    let ppid = parse_u32(next("missing field 4 (ppid)")?)
        .ok_or(StatParseError("field 4 (ppid) is not a number"))?;
    for _ in 5..9 {
        next("stat line ends before field 9 (flags)")?;
    }
    let flags = parse_u32(next("missing field 9 (flags)")?)
        .ok_or(StatParseError("field 9 (flags) is not a number"))?;
    for _ in 10..20 {
        next("stat line ends before field 20 (num_threads)")?;
    }
    let num_threads = parse_u32(next("missing field 20 (num_threads)")?)
        .ok_or(StatParseError("field 20 (num_threads) is not a number"))?;
    next("stat line ends before field 22 (starttime)")?;
    let start_ticks = parse_u64(next("missing field 22 (starttime)")?)
        .ok_or(StatParseError("field 22 (starttime) is not a number"))?;

    Ok(ProcStat {
        pid,
        ppid,
        state,
        comm,
        start_ticks,
        num_threads,
        flags,
    })
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

fn parse_u32(digits: &[u8]) -> Option<u32> {
    parse_u64(digits).and_then(|v| u32::try_from(v).ok())
}

/// What a [`scan_processes`] pass saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanSummary {
    /// Processes (thread groups) read and passed to the visitor.
    pub processes: u64,
    /// Sum of their `num_threads`: tasks in use, the number that counts against
    /// `kernel.threads-max` (and, one PID each, against `kernel.pid_max`).
    pub tasks: u64,
    /// Entries that disappeared between listing `/proc` and reading them.
    pub vanished: u64,
    /// Entries that could not be read (permission denied, I/O error, unparsable).
    pub unreadable: u64,
}

/// Reads `/proc/<pid>/stat` for every process, calling `visit` for each.
///
/// Processes that exit during the scan are skipped; see [`ScanSummary`].
pub fn scan_processes(visit: impl FnMut(&ProcStat)) -> Result<ScanSummary, ProcError> {
    Scanner::new().scan(visit)
}

/// A reusable scanner: keeps its read buffer between scans (for periodic rescans).
#[derive(Debug)]
pub struct Scanner {
    root: PathBuf,
    buf: Vec<u8>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// A scanner of `/proc`.
    pub fn new() -> Self {
        Self::with_root(PROC_ROOT)
    }

    /// A scanner of a procfs mounted elsewhere (or a fake one, in tests).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            buf: vec![0; STAT_BUF_LEN],
        }
    }

    /// Reads `<root>/<pid>/stat` for every numeric entry of `<root>`, calling `visit`
    /// for each. See [`scan_processes`].
    pub fn scan(&mut self, mut visit: impl FnMut(&ProcStat)) -> Result<ScanSummary, ProcError> {
        let dir = Dir::open(&self.root).map_err(|source| ProcError::ProcDir {
            path: self.root.clone(),
            source,
        })?;
        let mut summary = ScanSummary::default();
        // "<pid>/stat\0": at most 10 digits + 6 bytes.
        let mut rel = [0u8; 24];
        loop {
            let name = match dir.next_name() {
                Ok(Some(name)) => name,
                Ok(None) => break,
                Err(source) => {
                    return Err(ProcError::ProcDir {
                        path: self.root.clone(),
                        source,
                    });
                }
            };
            let name = name.to_bytes();
            if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
                continue;
            }
            let len = name.len();
            rel[..len].copy_from_slice(name);
            rel[len..len + 6].copy_from_slice(b"/stat\0");
            let Ok(rel) = CStr::from_bytes_with_nul(&rel[..len + 6]) else {
                continue;
            };
            match read_at(dir.fd(), rel, &mut self.buf) {
                Ok(0) => summary.vanished += 1,
                Ok(n) => match parse_stat(&self.buf[..n]) {
                    Ok(stat) => {
                        summary.processes += 1;
                        summary.tasks += u64::from(stat.num_threads);
                        visit(&stat);
                    }
                    Err(e) => {
                        log::debug!("{}/{}: {e}", self.root.display(), rel.to_string_lossy());
                        summary.unreadable += 1;
                    }
                },
                Err(e) => match classify(&e) {
                    ErrorKind::Gone => summary.vanished += 1,
                    ErrorKind::Unreadable => {
                        log::debug!("{}/{}: {e}", self.root.display(), rel.to_string_lossy());
                        summary.unreadable += 1;
                    }
                    ErrorKind::Resource => {
                        return Err(ProcError::Resource {
                            path: self.root.join(rel.to_string_lossy().as_ref()),
                            source: e,
                        });
                    }
                },
            }
        }
        Ok(summary)
    }
}

enum ErrorKind {
    /// The process exited (and was reaped) meanwhile.
    Gone,
    /// Permission denied and the like: count it and go on.
    Unreadable,
    /// Out of descriptors or memory: every further read would fail too.
    Resource,
}

fn classify(e: &io::Error) -> ErrorKind {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ESRCH) => ErrorKind::Gone,
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM) => ErrorKind::Resource,
        _ => ErrorKind::Unreadable,
    }
}

/// An open directory, listed with `readdir(3)`; its descriptor serves `openat(2)`.
struct Dir(std::ptr::NonNull<libc::DIR>);

impl Dir {
    fn open(path: &Path) -> io::Result<Self> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `c` is a valid NUL-terminated string.
        let dir = unsafe { libc::opendir(c.as_ptr()) };
        std::ptr::NonNull::new(dir)
            .map(Self)
            .ok_or_else(io::Error::last_os_error)
    }

    fn fd(&self) -> libc::c_int {
        // SAFETY: `self.0` is an open directory stream.
        unsafe { libc::dirfd(self.0.as_ptr()) }
    }

    /// The next entry's name, borrowed until the next call (the borrow of `self`
    /// enforces that).
    fn next_name(&self) -> io::Result<Option<&CStr>> {
        // readdir reports errors only through errno, so clear it first.
        // SAFETY: `__errno_location` returns this thread's errno.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `self.0` is an open directory stream, used by one thread.
        let entry = unsafe { libc::readdir(self.0.as_ptr()) };
        if entry.is_null() {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(0) | None => Ok(None),
                Some(_) => Err(e),
            };
        }
        // SAFETY: `entry` points to a dirent valid until the next readdir on this
        // stream; `d_name` is NUL terminated.
        Ok(Some(unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: `self.0` is an open directory stream, closed exactly once.
        unsafe { libc::closedir(self.0.as_ptr()) };
    }
}

/// A file descriptor closed on drop.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: `self.0` is an open descriptor we own, closed exactly once.
        unsafe { libc::close(self.0) };
    }
}

/// Opens `rel` relative to directory `dirfd` and reads it into `buf` (until end
/// of file or `buf` is full). Returns the number of bytes read.
fn read_at(dirfd: libc::c_int, rel: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    let fd = loop {
        // SAFETY: `rel` is NUL terminated; `dirfd` is an open directory.
        let fd = unsafe {
            libc::openat(
                dirfd,
                rel.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY,
            )
        };
        if fd >= 0 {
            break Fd(fd);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes.
        let n = unsafe { libc::read(fd.0, rest.as_mut_ptr().cast(), rest.len()) };
        match n {
            0 => break,
            n if n > 0 => {
                // `n` is positive and at most `rest.len()`.
                filled += n.unsigned_abs();
                // procfs seq files return the whole content in one read when the
                // buffer is big enough; a short read ending in a newline is the
                // complete line, and saves the read() that would return 0.
                if filled < buf.len() && buf[filled - 1] == b'\n' {
                    break;
                }
            }
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(filled)
}

fn pid_path(pid: u32, file: &str) -> PathBuf {
    let mut s = String::with_capacity(PROC_ROOT.len() + 24);
    let _ = write!(s, "{PROC_ROOT}/{pid}/{file}");
    PathBuf::from(s)
}

/// Reads a file under /proc; `Ok(None)` when the process is gone.
fn read_pid_file(pid: u32, file: &str) -> Result<Option<(PathBuf, Vec<u8>)>, ProcError> {
    let path = pid_path(pid, file);
    match std::fs::read(&path) {
        Ok(content) => Ok(Some((path, content))),
        Err(e) => match classify(&e) {
            ErrorKind::Gone => Ok(None),
            ErrorKind::Resource => Err(ProcError::Resource { path, source: e }),
            ErrorKind::Unreadable => Err(ProcError::Read { path, source: e }),
        },
    }
}

/// Reads `/proc/<pid>/stat`; `Ok(None)` when the process no longer exists.
pub fn read_stat(pid: u32) -> Result<Option<ProcStat>, ProcError> {
    let Some((path, content)) = read_pid_file(pid, "stat")? else {
        return Ok(None);
    };
    if content.is_empty() {
        return Ok(None);
    }
    parse_stat(&content)
        .map(Some)
        .map_err(|e| ProcError::Parse {
            path,
            reason: e.to_string(),
        })
}

/// Reads `/proc/<pid>/comm` (without the newline); `Ok(None)` when the process no
/// longer exists. Unlike [`ProcStat::comm`] this is not truncated to 15 bytes for
/// kernel threads, whose full names the kernel reports here.
pub fn read_comm(pid: u32) -> Result<Option<String>, ProcError> {
    let Some((_, content)) = read_pid_file(pid, "comm")? else {
        return Ok(None);
    };
    let name = content.strip_suffix(b"\n").unwrap_or(&content);
    Ok(Some(String::from_utf8_lossy(name).into_owned()))
}

/// Signal masks of a process, from `/proc/<pid>/status`; bit `n - 1` is signal `n`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SigMasks {
    /// `SigBlk`: signals blocked by the thread group leader (a per-thread mask).
    pub blocked: u64,
    /// `SigIgn`: signals whose disposition is SIG_IGN (shared by the thread group).
    pub ignored: u64,
    /// `SigCgt`: signals with a handler installed (shared by the thread group).
    pub caught: u64,
}

impl SigMasks {
    fn bit(signal: u32) -> u64 {
        match signal {
            1..=64 => 1u64 << (signal - 1),
            _ => 0,
        }
    }

    /// Whether `signal` (1..=64) is blocked.
    pub fn is_blocked(&self, signal: u32) -> bool {
        self.blocked & Self::bit(signal) != 0
    }

    /// Whether `signal` (1..=64) is ignored.
    pub fn is_ignored(&self, signal: u32) -> bool {
        self.ignored & Self::bit(signal) != 0
    }

    /// Whether `signal` (1..=64) has a handler.
    pub fn is_caught(&self, signal: u32) -> bool {
        self.caught & Self::bit(signal) != 0
    }

    /// SIGCHLD set to SIG_IGN: the kernel reaps this process's children itself,
    /// so it never accumulates zombies (short of SA_NOCLDWAIT, which status does
    /// not show).
    pub fn sigchld_ignored(&self) -> bool {
        self.is_ignored(SIGCHLD)
    }

    /// SIGCHLD has a handler: the process at least intends to reap.
    pub fn sigchld_caught(&self) -> bool {
        self.is_caught(SIGCHLD)
    }
}

/// Parses the `SigBlk`, `SigIgn` and `SigCgt` lines of `/proc/<pid>/status`
/// content; `None` if one is missing or malformed.
pub fn parse_sig_masks(status: &[u8]) -> Option<SigMasks> {
    let (mut blocked, mut ignored, mut caught) = (None, None, None);
    for line in status.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let slot = match &line[..colon] {
            b"SigBlk" => &mut blocked,
            b"SigIgn" => &mut ignored,
            b"SigCgt" => &mut caught,
            _ => continue,
        };
        let hex = std::str::from_utf8(&line[colon + 1..]).ok()?.trim();
        *slot = Some(u64::from_str_radix(hex, 16).ok()?);
        if blocked.is_some() && ignored.is_some() && caught.is_some() {
            break;
        }
    }
    Some(SigMasks {
        blocked: blocked?,
        ignored: ignored?,
        caught: caught?,
    })
}

/// The signal masks of process `pid`, or `None` if it is gone or its status is
/// unreadable.
pub fn read_status_sig_masks(pid: u32) -> Option<SigMasks> {
    let path = pid_path(pid, "status");
    let content = std::fs::read(path).ok()?;
    parse_sig_masks(&content)
}

/// Reads a one-number file such as `/proc/sys/kernel/pid_max`.
fn read_number(path: &str) -> Result<u64, ProcError> {
    let content = std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: PathBuf::from(path),
        source,
    })?;
    content.trim().parse().map_err(|_| ProcError::Parse {
        path: PathBuf::from(path),
        reason: format!("expected a number, found {:?}", content.trim()),
    })
}

fn read_u32(path: &str) -> Result<u32, ProcError> {
    let value = read_number(path)?;
    u32::try_from(value).map_err(|_| ProcError::Parse {
        path: PathBuf::from(path),
        reason: format!("{value} is out of range"),
    })
}

/// The `NSpid:` line of a `/proc/<pid>/status` text: the PID in each PID
/// namespace from the reader's down to the process's own (empty if absent).
pub fn parse_ns_pids(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `kernel.pid_max`: PIDs (and thread IDs) are allocated below this.
pub fn pid_max() -> Result<u32, ProcError> {
    read_u32("/proc/sys/kernel/pid_max")
}

/// `kernel.threads-max`: the system-wide limit on tasks.
pub fn threads_max() -> Result<u32, ProcError> {
    read_u32("/proc/sys/kernel/threads-max")
}

/// `sysconf(_SC_CLK_TCK)`: the unit of [`ProcStat::start_ticks`] (USER_HZ, 100 on
/// every common configuration).
pub fn clock_ticks_per_second() -> Result<u64, ProcError> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks)
        .ok()
        .filter(|&t| t > 0)
        .ok_or_else(|| ProcError::Sysconf {
            name: "_SC_CLK_TCK",
            source: io::Error::last_os_error(),
        })
}

fn clock_ns(clock: libc::clockid_t, name: &'static str) -> Result<u64, ProcError> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Err(ProcError::Clock {
            clock: name,
            source: io::Error::last_os_error(),
        });
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// Nanoseconds since boot, including suspend (`CLOCK_BOOTTIME`): the clock of
/// `bpf_ktime_get_boot_ns()` and of [`ProcStat::start_boot_ns`].
pub fn boot_time_now_ns() -> Result<u64, ProcError> {
    clock_ns(libc::CLOCK_BOOTTIME, "CLOCK_BOOTTIME")
}

/// Nanoseconds since the Unix epoch (`CLOCK_REALTIME`).
pub fn realtime_now_ns() -> Result<u64, ProcError> {
    clock_ns(libc::CLOCK_REALTIME, "CLOCK_REALTIME")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn line(pid: &str, comm: &str) -> Vec<u8> {
        format!(
            "{pid} ({comm}) S 4321 7 7 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 98765 \
             1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 \
             0 0 0 0 0 0 0 0\n"
        )
        .into_bytes()
    }

    #[test]
    fn parses_plain_line() {
        let stat = parse_stat(&line("1234", "bash")).unwrap();
        assert_eq!(stat.pid, 1234);
        assert_eq!(stat.ppid, 4321);
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.comm_bytes(), b"bash");
        assert_eq!(&stat.comm[4..], &[0u8; 12]);
        assert_eq!(stat.num_threads, 3);
        assert_eq!(stat.start_ticks, 98765);
        assert!(!stat.is_zombie());
    }

    #[test]
    fn parses_weird_names() {
        for comm in [
            "a) b",
            "a b c",
            "",
            ")",
            "((",
            ") S 1 2 3",
            "x\ny",
            "(sd-pam)",
        ] {
            let stat = parse_stat(&line("42", comm)).unwrap();
            assert_eq!(stat.comm_bytes(), comm.as_bytes(), "comm {comm:?}");
            assert_eq!(stat.ppid, 4321, "comm {comm:?}");
            assert_eq!(stat.start_ticks, 98765, "comm {comm:?}");
        }
    }

    #[test]
    fn truncates_long_names_like_the_kernel() {
        let stat = parse_stat(&line("2", "kworker/u8:1-events_unbound")).unwrap();
        assert_eq!(stat.comm_bytes(), b"kworker/u8:1-ev");
        assert_eq!(stat.comm[15], 0);
        let stat = parse_stat(&line("2", "exactly15chars!")).unwrap();
        assert_eq!(stat.comm_bytes(), b"exactly15chars!");
    }

    #[test]
    fn parses_zombie_and_line_without_newline() {
        let text = "77 (defunct) Z 1 77 77 0 -1 4227148 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0 \
                    18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        let stat = parse_stat(text.as_bytes()).unwrap();
        assert!(stat.is_zombie());
        assert_eq!(
            (stat.pid, stat.ppid, stat.num_threads, stat.start_ticks),
            (77, 1, 1, 5)
        );
        // A leader that called pthread_exit while 2 other threads run: alive.
        let text = text.replacen(" 20 0 1 0 5 ", " 20 0 3 0 5 ", 1);
        let stat = parse_stat(text.as_bytes()).unwrap();
        assert_eq!((stat.state, stat.num_threads), ('Z', 3));
        assert!(!stat.is_zombie());
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(parse_stat(b"").is_err());
        assert!(parse_stat(b"12 bash S 1").is_err());
        assert!(parse_stat(b"12 (bash) S 1 2 3").is_err());
        assert!(
            parse_stat(b"x (bash) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20").is_err()
        );
        assert!(parse_stat(&line("99999999999", "a")).is_err());
        let mut bad = line("5", "a");
        let pos = bad.iter().position(|&b| b == b'4').unwrap();
        bad[pos] = b'x';
        assert!(parse_stat(&bad).is_err());
    }

    #[test]
    fn ticks_convert_to_ns() {
        assert_eq!(ticks_to_ns(250, 100), 2_500_000_000);
        assert_eq!(ticks_to_ns(1, 0), 0);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn sig_masks_parse() {
        let status =
            b"Name:\tx\nSigQ:\t0/63\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n\
            SigBlk:\t0000000000010000\nSigIgn:\t0000000000001000\nSigCgt:\t0000000180014a07\n";
        let m = parse_sig_masks(status).unwrap();
        assert_eq!(m.blocked, 0x10000);
        assert!(m.is_blocked(SIGCHLD));
        assert!(!m.sigchld_ignored());
        assert!(m.is_ignored(13)); // SIGPIPE
        assert!(m.sigchld_caught());
        assert!(!m.is_caught(0) && !m.is_caught(65));
        assert_eq!(parse_sig_masks(b"SigBlk:\t0\nSigIgn:\t0\n"), None);
        assert_eq!(
            parse_sig_masks(b"SigBlk:\tzz\nSigIgn:\t0\nSigCgt:\t0\n"),
            None
        );
    }

    #[test]
    fn own_sig_masks() {
        let m = read_status_sig_masks(std::process::id()).unwrap();
        assert!(!m.sigchld_ignored());
    }

    #[test]
    fn scan_finds_this_process() {
        let me = std::process::id();
        // SAFETY: getppid has no preconditions.
        let parent = u32::try_from(unsafe { libc::getppid() }).unwrap();
        let own = std::fs::read("/proc/self/stat").unwrap();
        let own = parse_stat(&own).unwrap();
        let mut found = None;
        let mut pids = Vec::new();
        let summary = scan_processes(|s| {
            pids.push(s.pid);
            if s.pid == me {
                found = Some(*s);
            }
        })
        .unwrap();
        let found = found.expect("the scan did not find the test process");
        assert_eq!(found.ppid, parent);
        assert_eq!(found.start_ticks, own.start_ticks);
        assert_eq!(found.comm, own.comm);
        assert!(found.num_threads >= 1);
        assert_eq!(summary.processes, pids.len() as u64);
        assert!(summary.processes >= 2, "{summary:?}");
        assert!(summary.tasks >= summary.processes, "{summary:?}");
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len() as u64, summary.processes);
    }

    #[test]
    fn read_stat_and_comm_of_self_and_of_missing_process() {
        let me = std::process::id();
        let stat = read_stat(me).unwrap().unwrap();
        assert_eq!(stat.pid, me);
        assert!(!stat.is_zombie());
        let comm = read_comm(me).unwrap().unwrap();
        assert!(comm.as_bytes().starts_with(stat.comm_bytes()));
        // Above any possible pid_max (2^22).
        assert_eq!(read_stat(u32::MAX).unwrap(), None);
        assert_eq!(read_comm(u32::MAX).unwrap(), None);
        assert_eq!(read_status_sig_masks(u32::MAX), None);
    }

    #[test]
    fn scan_of_fake_root_counts_vanished_and_unreadable() {
        let root = std::env::temp_dir().join(format!("zombie-trace-procfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (pid, content) in [("10", line("10", "ok").as_slice()), ("11", b"garbage")] {
            std::fs::create_dir_all(root.join(pid)).unwrap();
            std::fs::write(root.join(pid).join("stat"), content).unwrap();
        }
        std::fs::create_dir_all(root.join("12")).unwrap(); // no stat: vanished
        std::fs::create_dir_all(root.join("self")).unwrap(); // not a pid
        std::fs::write(root.join("13"), b"").unwrap(); // not a directory: unreadable
        let mut seen = Vec::new();
        let summary = Scanner::with_root(&root)
            .scan(|s| seen.push(s.pid))
            .unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(seen, [10]);
        assert_eq!(
            summary,
            ScanSummary {
                processes: 1,
                tasks: 3,
                vanished: 1,
                unreadable: 2,
            }
        );
    }

    #[test]
    fn missing_root_is_an_error_naming_it() {
        let err = Scanner::with_root("/nonexistent/proc")
            .scan(|_| {})
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/proc"), "{msg}");
        assert!(msg.contains("mount -t proc"), "{msg}");
    }

    #[test]
    fn system_values() {
        assert!(pid_max().unwrap() >= 301);
        assert!(threads_max().unwrap() >= 1);
        assert!(clock_ticks_per_second().unwrap() >= 1);
        let boot = boot_time_now_ns().unwrap();
        let own = read_stat(std::process::id()).unwrap().unwrap();
        let hz = clock_ticks_per_second().unwrap();
        assert!(own.start_boot_ns(hz) <= boot);
        assert!(realtime_now_ns().unwrap() > 1_600_000_000 * 1_000_000_000);
    }
}
