//! `reaper <program> [args...]`: a tini-like harness.
//!
//! Makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`), runs the
//! program (fork + execvp, stdin/stdout/stderr inherited) and reaps every
//! child it gets, the program and any orphan reparented to it, until the
//! program has exited and `waitpid` reports ECHILD. Exits with the
//! program's exit status (128 + signal number when it was killed by a
//! signal). SIGTERM and SIGINT are forwarded to the program.
//!
//! The harness never writes to stdout. With `ZT_REAPER_VERBOSE=1` it logs
//! every reaped pid to stderr.

use std::ffi::{CString, c_int};
use std::os::unix::ffi::OsStrExt as _;
use std::sync::atomic::{AtomicI32, Ordering};

use zombie_trace_tests::workload::{fatal, fatal_errno, handler_addr, set_signal, waitpid};

/// The program's pid while it has not been reaped yet, else 0.
static PROGRAM: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: c_int) {
    let pid = PROGRAM.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; errno is saved and restored.
        unsafe {
            let errno = *libc::__errno_location();
            libc::kill(pid, sig);
            *libc::__errno_location() = errno;
        }
    }
}

fn sigmask(how: c_int, set: &libc::sigset_t) -> libc::sigset_t {
    // SAFETY: valid sigset pointers.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        if libc::sigprocmask(how, set, &mut old) != 0 {
            fatal_errno("sigprocmask");
        }
        old
    }
}

fn main() {
    let args: Vec<CString> = std::env::args_os()
        .skip(1)
        .map(|a| {
            CString::new(a.as_bytes())
                .unwrap_or_else(|_| fatal("arguments must not contain NUL bytes"))
        })
        .collect();
    if args.is_empty() {
        fatal("usage: reaper <program> [args...]");
    }
    let verbose = std::env::var_os("ZT_REAPER_VERBOSE").is_some_and(|v| v == "1");
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());

    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        fatal_errno("prctl(PR_SET_CHILD_SUBREAPER)");
    }

    // Block the forwarded signals until the program's pid is known, so a
    // SIGTERM that arrives during start-up is forwarded, not lost.
    // SAFETY: sigset manipulation on a local value.
    let forwarded = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    };
    let old_mask = sigmask(libc::SIG_BLOCK, &forwarded);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        set_signal(sig, handler_addr(forward), libc::SA_RESTART);
    }

    // SAFETY: single-threaded; the child only calls sigaction,
    // sigprocmask, execvp and, on failure, writes a message and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fatal_errno("fork");
    }
    if pid == 0 {
        // Default dispositions first, then the original mask: a signal
        // sent to the program before exec then has its default effect.
        // SIGPIPE too: Rust's runtime ignores it, and ignored dispositions
        // survive exec.
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGPIPE] {
            set_signal(sig, libc::SIG_DFL, 0);
        }
        sigmask(libc::SIG_SETMASK, &old_mask);
        // SAFETY: argv is a NULL-terminated array of valid C strings.
        unsafe { libc::execvp(argv[0], argv.as_ptr()) };
        let err = std::io::Error::last_os_error();
        eprintln!("reaper: cannot execute {:?}: {err}", args[0]);
        // SAFETY: _exit is always safe to call.
        unsafe { libc::_exit(127) }
    }
    PROGRAM.store(pid, Ordering::SeqCst);
    sigmask(libc::SIG_SETMASK, &old_mask);

    // One blocking waitpid(-1, &status, 0) per reap and a final one that
    // fails with ECHILD: no WNOHANG polls, no WNOWAIT peeks, so a tracer
    // sees exactly one successful wait call per reaped child.
    let mut program_status: Option<c_int> = None;
    loop {
        let (child, status) = match waitpid(-1, 0) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => break,
            Err(e) => fatal(format_args!("waitpid(-1): {e}")),
        };
        if child == pid {
            // From here on nothing is forwarded. (A signal handled between
            // the reap and this store goes to a pid that was just freed;
            // pids are allocated cyclically, so in practice it has not
            // been reused within that window. tini has the same window.)
            PROGRAM.store(0, Ordering::SeqCst);
            program_status = Some(status);
        }
        if verbose {
            eprintln!(
                "reaper: reaped {} {child} (status {status:#x})",
                if child == pid { "program" } else { "orphan" }
            );
        }
    }

    let code = match program_status {
        Some(st) if libc::WIFEXITED(st) => libc::WEXITSTATUS(st),
        Some(st) if libc::WIFSIGNALED(st) => 128 + libc::WTERMSIG(st),
        _ => fatal("the program was never reaped"),
    };
    std::process::exit(code);
}
