//! Scenario workloads for the zombie-trace integration tests, and the
//! client-side helper the tests use to drive them.
//!
//! There are two halves:
//!
//! * [`workload`]: code shared by the programs in `src/bin/` (the `reaper`
//!   harness and the scenario workloads). Those programs talk to libc
//!   directly (`fork`, `_exit`, `waitpid`, `sigaction`, `prctl`) so that the
//!   tracer sees exactly the system calls a scenario describes, and nothing
//!   else.
//! * [`client`]: [`Workload`], which a test uses to start one workload under
//!   the `reaper` harness, read its "ready" line, and shut it down again
//!   without leaking a single process.
//!
//! # The workload protocol
//!
//! Every workload is run as `reaper <workload> [COUNT] [more args]`. The
//! `reaper` makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`), so
//! every orphan a scenario creates is reparented to it and reaped by it; on
//! this host PID 1 does not reap orphans, so without the harness they would
//! leak forever.
//!
//! A workload sets up its scenario, *verifies* it through `/proc` (no
//! sleep-based guesses; a 10 s timeout turns into an error message and exit
//! status 1), prints exactly one line to stdout and flushes it:
//!
//! ```text
//! {"ready":true,"pid":<own pid>,"children":[<pids>],"workload":"<name>",...extra}
//! ```
//!
//! and then blocks reading stdin. On end of file on stdin (the test closes
//! it), SIGTERM or SIGINT it cleans up what it owns (reaps its remaining
//! children) and exits 0.

pub mod chromium;
pub mod prometheus;

pub mod workload {
    //! Helpers shared by the workload programs in `src/bin/`.
    //!
    //! Everything here either works or calls [`fatal`]: the programs are
    //! tiny and an error always means "print why, exit 1".

    use std::ffi::c_int;
    use std::fmt::{Display, Write as _};
    use std::io::{self, Write as _};
    use std::sync::atomic::{AtomicI32, Ordering};
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
    static REAPED_BY_HANDLER: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(0);

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

    /// Write end of the self-pipe the SIGTERM/SIGINT handler writes to.
    static SIGNAL_PIPE_WR: AtomicI32 = AtomicI32::new(-1);

    extern "C" fn on_shutdown_signal(sig: c_int) {
        // SAFETY: only async-signal-safe calls (errno access, write).
        unsafe {
            let errno = *libc::__errno_location();
            let fd = SIGNAL_PIPE_WR.load(Ordering::Relaxed);
            if fd >= 0 {
                // The signal number fits in one byte; a full pipe (EAGAIN)
                // only loses a duplicate notification.
                let byte = sig as u8;
                libc::write(fd, (&byte as *const u8).cast(), 1);
            }
            *libc::__errno_location() = errno;
        }
    }

    /// What ended a workload's wait on stdin.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Shutdown {
        /// End of file (or a read error) on stdin.
        Eof,
        /// SIGTERM or SIGINT (the signal number).
        Signal(c_int),
    }

    /// Something that happened while waiting on stdin.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Event {
        /// One line of input, without its line terminator.
        Line(String),
        /// Shut down.
        Shutdown(Shutdown),
    }

    /// Waits for input lines, end of file on stdin, SIGTERM or SIGINT,
    /// without races: the signal handlers write to a self-pipe that is
    /// polled together with stdin.
    #[derive(Debug)]
    pub struct Control {
        signal_rd: c_int,
        buf: Vec<u8>,
        eof: bool,
    }

    impl Control {
        /// Installs the SIGTERM and SIGINT handlers (no `SA_RESTART`).
        /// Call this first thing in `main`, before forking.
        pub fn install() -> Control {
            let (rd, wr) = pipe();
            // SAFETY: fcntl on descriptors we own.
            unsafe {
                let flags = libc::fcntl(wr, libc::F_GETFL);
                libc::fcntl(wr, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
            SIGNAL_PIPE_WR.store(wr, Ordering::Relaxed);
            for sig in [libc::SIGTERM, libc::SIGINT] {
                set_signal(sig, handler_addr(on_shutdown_signal), 0);
            }
            Control {
                signal_rd: rd,
                buf: Vec::new(),
                eof: false,
            }
        }

        fn take_line(&mut self) -> Option<String> {
            let pos = self.buf.iter().position(|&b| b == b'\n')?;
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..pos]);
            Some(text.trim_end_matches('\r').to_owned())
        }

        /// Blocks until the next line, end of file, SIGTERM or SIGINT. A
        /// partial last line before end of file is returned as a line.
        pub fn next_event(&mut self) -> Event {
            loop {
                if let Some(line) = self.take_line() {
                    return Event::Line(line);
                }
                if self.eof {
                    if !self.buf.is_empty() {
                        let rest = std::mem::take(&mut self.buf);
                        return Event::Line(String::from_utf8_lossy(&rest).into_owned());
                    }
                    return Event::Shutdown(Shutdown::Eof);
                }
                let mut fds = [
                    libc::pollfd {
                        fd: self.signal_rd,
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: libc::STDIN_FILENO,
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                // SAFETY: fds is a valid array of two pollfds.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                if n < 0 {
                    if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                        continue;
                    }
                    fatal_errno("poll");
                }
                if fds[0].revents & libc::POLLIN != 0 {
                    let mut byte = 0u8;
                    // SAFETY: reading one byte into a valid buffer.
                    let r = unsafe { libc::read(self.signal_rd, (&mut byte as *mut u8).cast(), 1) };
                    if r == 1 {
                        return Event::Shutdown(Shutdown::Signal(c_int::from(byte)));
                    }
                }
                let rev = fds[1].revents;
                if rev & libc::POLLNVAL != 0 {
                    // stdin is not open at all.
                    self.eof = true;
                } else if rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    let mut chunk = [0u8; 4096];
                    // SAFETY: chunk is valid for chunk.len() bytes.
                    let r = unsafe {
                        libc::read(libc::STDIN_FILENO, chunk.as_mut_ptr().cast(), chunk.len())
                    };
                    if r > 0 {
                        self.buf.extend_from_slice(&chunk[..r.unsigned_abs()]);
                    } else if r == 0
                        || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)
                    {
                        self.eof = true;
                    }
                }
            }
        }

        /// Blocks until end of file, SIGTERM or SIGINT, calling `on_line`
        /// for every input line in between.
        pub fn serve(&mut self, mut on_line: impl FnMut(&str)) -> Shutdown {
            loop {
                match self.next_event() {
                    Event::Line(line) => on_line(&line),
                    Event::Shutdown(why) => return why,
                }
            }
        }

        /// [`Control::serve`] ignoring input lines.
        pub fn wait_shutdown(&mut self) -> Shutdown {
            self.serve(|_| {})
        }
    }

    /// `CLOCK_BOOTTIME` in nanoseconds (the clock of `bpf_ktime_get_boot_ns`).
    pub fn boottime_ns() -> i64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid out-pointer.
        if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
            fatal_errno("clock_gettime(CLOCK_BOOTTIME)");
        }
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
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

    impl Control {
        /// Like [`Control::next_event`], but gives up at `deadline`:
        /// `None` when no line, end of file or signal came by then. Waits
        /// with `ppoll` (nanosecond timeout), so it can pace a schedule.
        pub fn next_event_until(&mut self, deadline: Instant) -> Option<Event> {
            loop {
                if let Some(line) = self.take_line() {
                    return Some(Event::Line(line));
                }
                if self.eof {
                    // Returns at once once end of file has been seen.
                    return Some(self.next_event());
                }
                let now = Instant::now();
                if now >= deadline {
                    return None;
                }
                let left = deadline - now;
                let ts = libc::timespec {
                    tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                    tv_nsec: libc::c_long::from(left.subsec_nanos()),
                };
                let mut fds = [
                    libc::pollfd {
                        fd: self.signal_rd,
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: libc::STDIN_FILENO,
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                // SAFETY: fds is a valid array of two pollfds, ts a valid
                // timespec; a null signal mask means "leave it alone".
                let n = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
                if n < 0 {
                    if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                        continue;
                    }
                    fatal_errno("ppoll");
                }
                if n == 0 {
                    continue;
                }
                if let Some(ev) = self.after_poll(&fds) {
                    return Some(ev);
                }
            }
        }

        /// The reads [`Control::next_event`] does after `poll`, for
        /// [`Control::next_event_until`]: a signal byte is returned as
        /// an event, stdin data is buffered (or end of file noted).
        fn after_poll(&mut self, fds: &[libc::pollfd; 2]) -> Option<Event> {
            if fds[0].revents & libc::POLLIN != 0 {
                let mut byte = 0u8;
                // SAFETY: reading one byte into a valid buffer.
                let r = unsafe { libc::read(self.signal_rd, (&mut byte as *mut u8).cast(), 1) };
                if r == 1 {
                    return Some(Event::Shutdown(Shutdown::Signal(c_int::from(byte))));
                }
            }
            let rev = fds[1].revents;
            if rev & libc::POLLNVAL != 0 {
                self.eof = true;
            } else if rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                let mut chunk = [0u8; 4096];
                // SAFETY: chunk is valid for chunk.len() bytes.
                let r = unsafe {
                    libc::read(libc::STDIN_FILENO, chunk.as_mut_ptr().cast(), chunk.len())
                };
                if r > 0 {
                    self.buf.extend_from_slice(&chunk[..r.unsigned_abs()]);
                } else if r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    self.eof = true;
                }
            }
            None
        }
    }
}

pub mod client {
    //! Test-side helper: start a workload under the `reaper` harness, read
    //! its ready line, shut it down.
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
    //! The first candidate that contains an executable `reaper` wins. Tests
    //! that prefer compile-time paths can use [`Workload::start_at`] with
    //! `env!("CARGO_BIN_EXE_reaper")` and `env!("CARGO_BIN_EXE_<name>")`.

    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::ExitStatusExt as _;
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use crate::workload::{ProcStat, proc_stat};

    /// How long [`Workload::start`] waits for the ready line.
    pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

    /// How long [`Workload::finish`] waits for a clean exit before killing.
    pub const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

    /// Grace period after each kill step in [`Workload::finish`].
    const KILL_GRACE: Duration = Duration::from_secs(3);

    fn is_executable(p: &Path) -> bool {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }

    /// The directory holding the `reaper` and workload binaries (see the
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

    /// Path of binary `name` (e.g. `"never-waits"`) in [`bin_dir`].
    pub fn bin_path(name: &str) -> PathBuf {
        let p = bin_dir().join(name);
        assert!(
            is_executable(&p),
            "workload binary {} not found",
            p.display()
        );
        p
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

    fn sigkill(pid: u32) {
        if let Ok(p) = libc::pid_t::try_from(pid)
            && p > 0
        {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
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

    /// One workload running under the `reaper` harness.
    ///
    /// Dropping it calls [`Workload::finish`].
    #[derive(Debug)]
    pub struct Workload {
        name: String,
        child: Child,
        stdin: Option<ChildStdin>,
        /// The parsed ready line.
        pub ready: serde_json::Value,
        stderr: Shared,
        stdout_rest: Shared,
        /// Bytes of `stdout_rest` already returned by [`Workload::next_line`].
        stdout_cursor: usize,
        status: Option<ExitStatus>,
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

        /// Like [`Workload::start_at`], returning the failure message
        /// instead of panicking. Nothing is left running on failure.
        pub fn try_start_at(
            reaper: &Path,
            program: &Path,
            args: &[&str],
        ) -> Result<Workload, String> {
            let name = program.file_name().map_or_else(
                || program.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let mut child = Command::new(reaper)
                .arg(program)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| {
                    format!(
                        "cannot start {} {}: {e}",
                        reaper.display(),
                        program.display()
                    )
                })?;

            let stderr: Shared = Arc::default();
            let stdout_rest: Shared = Arc::default();
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
            let (tx, rx) = mpsc::channel::<Result<String, String>>();
            if let Some(out) = child.stdout.take() {
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
            let stdin = child.stdin.take();
            let mut w = Workload {
                name,
                child,
                stdin,
                ready: serde_json::Value::Null,
                stderr,
                stdout_rest,
                stdout_cursor: 0,
                status: None,
                killed: false,
            };

            let problem = match rx.recv_timeout(READY_TIMEOUT) {
                Ok(Ok(line)) => match serde_json::from_str::<serde_json::Value>(line.trim_end()) {
                    Ok(v) if v["ready"] == serde_json::Value::Bool(true) && v["pid"].is_u64() => {
                        w.ready = v;
                        None
                    }
                    Ok(_) => Some(format!("unexpected ready line {line:?}")),
                    Err(e) => Some(format!("ready line {line:?} is not JSON: {e}")),
                },
                Ok(Err(msg)) => Some(msg),
                Err(_) => Some(format!(
                    "no ready line within {} s",
                    READY_TIMEOUT.as_secs()
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
                        shared_text(&w.stderr)
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
            self.child.id()
        }

        /// Same as [`Workload::harness_pid`].
        pub fn reaper_pid(&self) -> u32 {
            self.child.id()
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
            let Some(stdin) = self.stdin.as_mut() else {
                panic!(
                    "send_line({line:?}): stdin of {} is already closed",
                    self.name
                );
            };
            if let Err(e) = stdin
                .write_all(format!("{line}\n").as_bytes())
                .and_then(|()| stdin.flush())
            {
                panic!("send_line({line:?}) to {}: {e}", self.name);
            }
        }

        /// Everything the harness and workload wrote to stderr so far.
        pub fn stderr(&self) -> String {
            shared_text(&self.stderr)
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
            self.status
        }

        /// Waits up to `timeout` for the reaper to exit by itself (without
        /// closing stdin), e.g. after `send_line("exit")`.
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
            if let Some(st) = self.status {
                return st;
            }
            drop(self.stdin.take());
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
            sigkill(reaper);
            match self.child.wait() {
                Ok(st) => {
                    self.status = Some(st);
                    st
                }
                Err(_) => ExitStatus::from_raw(libc::SIGKILL),
            }
        }
    }

    impl Drop for Workload {
        fn drop(&mut self) {
            self.finish();
        }
    }
}

pub use client::Workload;

#[cfg(test)]
mod tests {
    use super::workload::{ProcStat, decode_i64s, encode_i64s, parse_stat};

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = "4242 (a) b (c)) Z 17 4242 4242 0 -1 4227404 0 0 0 0 0 0 0 0 20 0 1 0 \
                    987654 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: 'Z',
                ppid: 17,
                starttime: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_stat_is_readable() {
        let me = super::workload::getpid();
        let s = super::workload::proc_stat(me);
        assert!(s.is_some_and(|s| s.ppid > 0 && s.starttime > 0), "{s:?}");
    }

    #[test]
    fn i64_round_trip() {
        let v = [1, -2, i64::MAX];
        assert_eq!(decode_i64s(&encode_i64s(&v)), v);
    }
}
