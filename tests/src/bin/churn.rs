//! `churn SECONDS [WORKERS=2]`: short-lived process churn for soak tests.
//!
//! Prints the ready line at once, then each worker loops fork → child
//! `_exit(0)` → `waitpid(child)` for SECONDS (never leaving a zombie behind),
//! then prints `{"done":true,"processes":N}` and waits for EOF/SIGTERM.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{Ready, count_arg, fatal, fork_exiting_child, print_line, reap};

fn main() {
    let mut ctl = Control::install();
    let seconds = count_arg(1, 10) as u64;
    let workers = count_arg(2, 2).max(1);
    Ready::new(&[]).int("seconds", seconds as i64).print();

    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let child = fork_exiting_child(0);
                    reap(child);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    stop.store(true, Ordering::Relaxed);
    let line = format!(
        "{{\"done\":true,\"processes\":{}}}",
        done.load(Ordering::Relaxed)
    );
    if let Err(err) = print_line(&line) {
        fatal(format_args!("writing the result line: {err}"));
    }
    ctl.wait_shutdown();
}
