//! `delayed-reaper [N=3] [DELAY_MS=100]`: for reap-latency tests. One
//! child at a time: fork a child that `_exit(0)`s at once, poll `/proc`
//! until it is a zombie (time t0), sleep until t0 + DELAY_MS, then
//! `waitpid(child, 0)` (time t1). Ready after all N.
//!
//! Ready line: `{"ready":true,"pid":P,"children":[N pids],"workload":"delayed-reaper","delay_ms":D,"delays_ms":[N measured t1 - t0 in ms, 3 decimals]}`.
//! The measured delays are from when the workload *saw* the zombie, so the
//! true exit-to-reap latency is slightly (about one poll interval) longer.
//! Cleanup: nothing left to reap; exits 0.

use std::time::{Duration, Instant};

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Ready, count_arg, fork_exiting_child, getpid, number_arg, reap, wait_zombies,
};

fn main() {
    let mut ctl = Control::install();
    let n = count_arg(1, 3);
    let delay_ms = number_arg(2, 100);
    let delay = Duration::from_millis(delay_ms);
    let me = getpid();

    let mut children = Vec::with_capacity(n);
    let mut delays = Vec::with_capacity(n);
    for _ in 0..n {
        let child = fork_exiting_child(0);
        wait_zombies(&[child], me);
        let t0 = Instant::now();
        let deadline = t0 + delay;
        // sleep() may return early on a signal; sleep until the deadline.
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep(deadline - now);
        }
        reap(child);
        delays.push(t0.elapsed().as_secs_f64() * 1000.0);
        children.push(child);
    }
    Ready::new(&children)
        .int("delay_ms", i64::try_from(delay_ms).unwrap_or(i64::MAX))
        .floats("delays_ms", &delays)
        .print();

    ctl.wait_shutdown();
}
