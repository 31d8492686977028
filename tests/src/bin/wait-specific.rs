//! `wait-specific [N=3]`: forks N+1 children that `_exit(0)` at once,
//! reaps only the first with `waitpid(first, 0)` and leaves the other N as
//! zombies. Ready when the N are zombies (state `Z`, parent = self).
//!
//! Ready line: `{"ready":true,"pid":P,"children":[all N+1 pids],"workload":"wait-specific","reaped":[first],"pending":[N pids]}`.
//! Cleanup: reaps the N pending children by pid, exits 0.

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Ready, count_arg, fork_exiting_child, getpid, reap, wait_zombies,
};

fn main() {
    let mut ctl = Control::install();
    let n = count_arg(1, 3);
    let me = getpid();

    let children: Vec<_> = (0..=n).map(|_| fork_exiting_child(0)).collect();
    let (first, pending) = (children[0], &children[1..]);
    reap(first);
    wait_zombies(pending, me);
    Ready::new(&children)
        .pids("reaped", &[first])
        .pids("pending", pending)
        .print();

    ctl.wait_shutdown();
    for &c in pending {
        reap(c);
    }
}
