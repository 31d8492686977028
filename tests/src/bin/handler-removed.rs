//! `handler-removed [N=3] [M=3]`: a parent that reaped its children with a
//! SIGCHLD handler, then dropped the handler and started leaking.
//!
//! Installs a SIGCHLD handler (`SA_RESTART`) that loops
//! `waitpid(-1, WNOHANG)` and counts the reaps in an atomic; forks N
//! children that `_exit(0)` at once and waits (counter and `/proc`) until
//! the handler has reaped all N. Then resets SIGCHLD to `SIG_DFL` with
//! `sigaction`, reading `CLOCK_BOOTTIME` just before (T0) and just after
//! (T1) that call, and forks M more children that `_exit(0)` at once and
//! are never reaped. Ready when all M are zombies (parent = self).
//!
//! Ready line: `{"ready":true,"pid":P,"children":[N+M pids, the N reaped first],"workload":"handler-removed","reaped_by_handler":N,"removed_before_ns":T0,"removed_after_ns":T1,"leaked":[M pids]}`.
//! T0 and T1 are `CLOCK_BOOTTIME` nanoseconds.
//! Cleanup (stdin EOF, SIGTERM, SIGINT): reaps each of the M by pid, exits 0.

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Ready, boottime_ns, count_arg, fatal, fork_exiting_child, getpid, install_reaping_handler,
    is_gone_from, reap, reaped_by_handler, set_signal, wait_until, wait_zombies,
};

fn main() {
    let mut ctl = Control::install();
    let n = count_arg(1, 3);
    let m = count_arg(2, 3);
    let me = getpid();
    install_reaping_handler();

    let reaped_children: Vec<_> = (0..n).map(|_| fork_exiting_child(0)).collect();
    wait_until(
        format_args!("the SIGCHLD handler to reap {n} children"),
        || reaped_by_handler() >= n && reaped_children.iter().all(|&c| is_gone_from(c, me)),
    );

    let removed_before = boottime_ns();
    set_signal(libc::SIGCHLD, libc::SIG_DFL, 0);
    let removed_after = boottime_ns();

    let reaped = reaped_by_handler();
    if reaped != n {
        fatal(format_args!(
            "the handler reaped {reaped} children, expected {n}"
        ));
    }

    let leaked: Vec<_> = (0..m).map(|_| fork_exiting_child(0)).collect();
    wait_zombies(&leaked, me);
    // No handler is left to reap them behind our back.
    if reaped_by_handler() != n {
        fatal("the SIGCHLD handler ran after it was removed");
    }

    let all: Vec<_> = reaped_children.iter().chain(&leaked).copied().collect();
    Ready::new(&all)
        .int(
            "reaped_by_handler",
            i64::try_from(reaped).unwrap_or(i64::MAX),
        )
        .int("removed_before_ns", removed_before)
        .int("removed_after_ns", removed_after)
        .pids("leaked", &leaked)
        .print();

    ctl.wait_shutdown();
    for &c in &leaked {
        reap(c);
    }
}
