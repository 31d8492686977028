//! `ignores-sigchld [N=3]`: sets SIGCHLD to `SIG_IGN`, so the kernel reaps
//! exiting children itself; forks N children that `_exit(0)` at once.
//! Ready when none of them is left in `/proc`. Never calls any wait
//! function.
//!
//! Ready line: `{"ready":true,"pid":P,"children":[N pids],"workload":"ignores-sigchld"}`.
//! Cleanup: nothing to do; exits 0.

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Ready, count_arg, fork_exiting_child, getpid, set_signal, wait_gone,
};

fn main() {
    let mut ctl = Control::install();
    let n = count_arg(1, 3);
    let me = getpid();
    set_signal(libc::SIGCHLD, libc::SIG_IGN, 0);

    let children: Vec<_> = (0..n).map(|_| fork_exiting_child(0)).collect();
    wait_gone(&children, me);
    Ready::new(&children).print();

    ctl.wait_shutdown();
}
