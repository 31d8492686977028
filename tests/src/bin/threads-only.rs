//! `threads-only [N=3]`: spawns N threads (`std::thread`) that return at
//! once and joins them all; forks nothing. Ready when every thread is also
//! gone from `/proc/<pid>/task/` (a join can return slightly before the
//! kernel has finished the thread's exit).
//!
//! Ready line: `{"ready":true,"pid":P,"children":[],"workload":"threads-only","threads":[N tids]}`.
//! Cleanup: nothing to do; exits 0.

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Ready, count_arg, fatal, getpid, gettid, task_exists, wait_until,
};

fn main() {
    let mut ctl = Control::install();
    let n = count_arg(1, 3);
    let me = getpid();

    let handles: Vec<_> = (0..n)
        .map(|i| {
            std::thread::Builder::new()
                .name(format!("short-{i}"))
                .spawn(gettid)
                .unwrap_or_else(|e| fatal(format_args!("spawning thread {i}: {e}")))
        })
        .collect();
    let tids: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| fatal("a thread panicked")))
        .collect();
    for &tid in &tids {
        wait_until(format_args!("thread {tid} to disappear"), || {
            !task_exists(me, tid)
        });
    }
    Ready::new(&[]).pids("threads", &tids).print();

    ctl.wait_shutdown();
}
