//! `handler-reaps [N=3]`: installs a SIGCHLD handler (`SA_RESTART`) that
//! loops `waitpid(-1, WNOHANG)` and counts the reaps in an atomic; forks N
//! children that `_exit(0)` at once. Ready when the counter is N and none
//! of the children is left in `/proc`.
//!
//! Ready line: `{"ready":true,"pid":P,"children":[N pids],"workload":"handler-reaps","reaped_by_handler":N}`.
//! Cleanup: nothing is left to reap; exits 0.

use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};

use zombie_trace_tests::workload::{
    Control, Ready, count_arg, fatal, fork_exiting_child, getpid, handler_addr, is_gone_from,
    set_signal, wait_until,
};

static REAPED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_sigchld(_sig: c_int) {
    // SAFETY: only async-signal-safe calls: errno access and waitpid.
    unsafe {
        let errno = *libc::__errno_location();
        while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {
            REAPED.fetch_add(1, Ordering::SeqCst);
        }
        *libc::__errno_location() = errno;
    }
}

fn main() {
    let mut ctl = Control::install();
    let n = count_arg(1, 3);
    let me = getpid();
    set_signal(libc::SIGCHLD, handler_addr(on_sigchld), libc::SA_RESTART);

    let children: Vec<_> = (0..n).map(|_| fork_exiting_child(0)).collect();
    wait_until(
        format_args!("the SIGCHLD handler to reap {n} children"),
        || REAPED.load(Ordering::SeqCst) >= n && children.iter().all(|&c| is_gone_from(c, me)),
    );
    let reaped = REAPED.load(Ordering::SeqCst);
    if reaped != n {
        fatal(format_args!(
            "the handler reaped {reaped} children, expected {n}"
        ));
    }
    Ready::new(&children)
        .int(
            "reaped_by_handler",
            i64::try_from(reaped).unwrap_or(i64::MAX),
        )
        .print();

    ctl.wait_shutdown();
}
