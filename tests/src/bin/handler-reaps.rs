//! `handler-reaps [N=3]`: installs a SIGCHLD handler (`SA_RESTART`) that
//! loops `waitpid(-1, WNOHANG)` and counts the reaps in an atomic; forks N
//! children that `_exit(0)` at once. Ready when the counter is N and none
//! of the children is left in `/proc`.
//!
//! Ready line: `{"ready":true,"pid":P,"children":[N pids],"workload":"handler-reaps","reaped_by_handler":N}`.
//! Cleanup: nothing is left to reap; exits 0.

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Ready, count_arg, fatal, fork_exiting_child, getpid, install_reaping_handler, is_gone_from,
    reaped_by_handler, wait_until,
};

fn main() {
    let mut ctl = Control::install();
    let n = count_arg(1, 3);
    let me = getpid();
    install_reaping_handler();

    let children: Vec<_> = (0..n).map(|_| fork_exiting_child(0)).collect();
    wait_until(
        format_args!("the SIGCHLD handler to reap {n} children"),
        || reaped_by_handler() >= n && children.iter().all(|&c| is_gone_from(c, me)),
    );
    let reaped = reaped_by_handler();
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
