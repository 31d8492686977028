//! `never-waits [N=3]`: forks N children that `_exit(0)` at once and never
//! calls any wait function until cleanup, keeping the default SIGCHLD
//! disposition. Ready when all N are zombies (state `Z`, parent = self).
//!
//! Ready line: `{"ready":true,"pid":P,"children":[N pids],"workload":"never-waits"}`.
//! Cleanup (stdin EOF, SIGTERM, SIGINT): reaps each child by pid, exits 0.

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Ready, count_arg, fork_exiting_child, getpid, reap, wait_zombies,
};

fn main() {
    let mut ctl = Control::install();
    let n = count_arg(1, 3);
    let me = getpid();

    let children: Vec<_> = (0..n).map(|_| fork_exiting_child(0)).collect();
    wait_zombies(&children, me);
    Ready::new(&children).print();

    ctl.wait_shutdown();
    for &c in &children {
        reap(c);
    }
}
