//! `leaky-then-exit [N=3]`: like `never-waits` (N zombie children, ready
//! when all are zombies), but on reading the line `exit` from stdin it
//! calls `_exit(0)` at once without reaping: its zombies are reparented to
//! the `reaper` harness, which reaps them. Other lines are ignored.
//!
//! Ready line: `{"ready":true,"pid":P,"children":[N pids],"workload":"leaky-then-exit"}`.
//! Cleanup on stdin EOF, SIGTERM, SIGINT: reaps each child by pid, exits 0.

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

    ctl.serve(|line| {
        if line.trim() == "exit" {
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) }
        }
    });
    for &c in &children {
        reap(c);
    }
}
