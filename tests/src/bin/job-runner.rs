//! `job-runner [--handler] [N=100] [HOLD_MS=2000]`: the incident's job
//! runner, for `zombie-trace run`. It runs by itself from start to end (no
//! stdin protocol): `run` waits for it.
//!
//! Forks N jobs that `_exit(0)` at once.
//!
//! * Without `--handler` (the incident: its SIGCHLD handler was lost in a
//!   refactor) it never calls any wait function and keeps the default
//!   SIGCHLD disposition. Once all N are its zombies (state `Z`, parent =
//!   self) it prints the ready line, holds them for HOLD_MS and exits 0
//!   without reaping: its zombies are reparented to the nearest subreaper
//!   (`zombie-trace run`, or the `reaper` harness), which reaps them.
//! * With `--handler` (the fix) it first installs a SIGCHLD handler
//!   (`SA_RESTART`) that loops `waitpid(-1, WNOHANG)`; once the handler has
//!   reaped all N and none is left in `/proc` it prints the ready line,
//!   stays alive for HOLD_MS (as long as the leaking runner) and exits 0.
//!
//! Ready line: `{"ready":true,"pid":P,"children":[N pids],"workload":"job-runner","start_ticks":T,"handler":0|1,"hold_ms":H}`,
//! T = its own start time from `/proc/self/stat` (clock ticks since boot).
//! Either way it leaves nothing behind that a subreaper does not reap.

use std::time::{Duration, Instant};

use zombie_trace_tests::workload::{
    Ready, count_arg, fatal, fork_exiting_child, getpid, install_reaping_handler, is_gone_from,
    number_arg, proc_stat, reaped_by_handler, wait_until, wait_zombies,
};

/// Sleeps until `hold` has passed, whatever interrupts the sleep.
fn hold_for(hold: Duration) {
    let deadline = Instant::now() + hold;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

fn main() {
    let handler = std::env::args().nth(1).is_some_and(|a| a == "--handler");
    let first = if handler { 2 } else { 1 };
    let n = count_arg(first, 100);
    let hold_ms = number_arg(first + 1, 2000);
    let me = getpid();
    let Some(own) = proc_stat(me) else {
        fatal("cannot read /proc/self/stat")
    };
    if handler {
        install_reaping_handler();
    }

    let children: Vec<_> = (0..n).map(|_| fork_exiting_child(0)).collect();
    if handler {
        wait_until(format_args!("the SIGCHLD handler to reap {n} jobs"), || {
            reaped_by_handler() >= n && children.iter().all(|&c| is_gone_from(c, me))
        });
    } else {
        wait_zombies(&children, me);
    }
    Ready::new(&children)
        .int("start_ticks", i64::try_from(own.starttime).unwrap_or(-1))
        .int("handler", i64::from(handler))
        .int("hold_ms", i64::try_from(hold_ms).unwrap_or(i64::MAX))
        .print();

    hold_for(Duration::from_millis(hold_ms));
}
