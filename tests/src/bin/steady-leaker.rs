//! `steady-leaker [RATE=100]`: leaks zombies at a steady rate until fork
//! fails, e.g. because the test put it in a cgroup with a `pids.max`.
//!
//! Prints the ready line at once, then waits for the line `go` on stdin
//! (other lines are ignored). After `go` it forks one child every 1/RATE
//! seconds (RATE children per second, 1..=100000) on a fixed schedule:
//! child k is forked at go + k/RATE (the first one at once), measured
//! from absolute deadlines, so time spent forking does not add drift;
//! when it falls behind it forks without waiting until it has caught up.
//! Each child `_exit(0)`s at once and is never reaped. SIGCHLD stays at
//! its default.
//!
//! The leak phase ends at the first failed `fork()`, after
//! [`HARD_CAP`] children, or on stdin EOF / SIGTERM / SIGINT, and then it
//! prints one more line and flushes it:
//!
//! * fork failed: `{"limit_reached":true,"at_ns":T,"forked":K,"errno":E}`,
//!   T = `CLOCK_BOOTTIME` ns just after the failed `fork()` returned, K =
//!   children forked, E = its errno (11 = EAGAIN for `pids.max`);
//! * cap reached, or shut down during the leak phase:
//!   `{"limit_reached":false,"forked":K}`.
//!
//! Shut down before `go`: exits 0 without a second line (nothing forked).
//!
//! Ready line: `{"ready":true,"pid":P,"children":[],"workload":"steady-leaker","rate":RATE}`.
//! Cleanup (stdin EOF, SIGTERM, SIGINT): reaps every child by pid, exits 0.

use std::io;
use std::time::{Duration, Instant};

use zombie_trace_tests::control::{Control, Event};
use zombie_trace_tests::workload::{Pid, Ready, boottime_ns, fatal, number_arg, print_line, reap};

/// At most this many children, whatever the rate and the pid limit.
const HARD_CAP: usize = 4000;

/// Largest accepted RATE (children per second).
const MAX_RATE: u64 = 100_000;

/// How the leak phase ended.
enum End {
    /// `fork()` failed: `CLOCK_BOOTTIME` ns and errno.
    ForkFailed { at_ns: i64, errno: i32 },
    /// [`HARD_CAP`] children forked.
    Cap,
    /// EOF, SIGTERM or SIGINT during the leak phase.
    Shutdown,
}

fn emit(line: &str) {
    if let Err(e) = print_line(line) {
        // Keep going: the children still have to be reaped.
        eprintln!("steady-leaker: writing {line:?} to stdout: {e}");
    }
}

fn main() {
    let mut ctl = Control::install();
    let rate = number_arg(1, 100);
    if rate == 0 || rate > MAX_RATE {
        fatal(format_args!("RATE must be in 1..={MAX_RATE}, got {rate}"));
    }
    Ready::new(&[])
        .int("rate", i64::try_from(rate).unwrap_or(i64::MAX))
        .print();

    loop {
        match ctl.next_event() {
            Event::Line(line) if line.trim() == "go" => break,
            Event::Line(line) => {
                eprintln!("steady-leaker: ignoring input {line:?} (waiting for go)")
            }
            Event::Shutdown(_) => return,
        }
    }

    let start = Instant::now();
    let deadline = |k: u64| {
        let ns = u128::from(k) * 1_000_000_000 / u128::from(rate);
        start + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    };
    let mut children: Vec<Pid> = Vec::with_capacity(HARD_CAP);
    let end = 'leak: loop {
        let due = deadline(children.len() as u64);
        // Until the next fork is due, watch stdin and the signals.
        while Instant::now() < due {
            match ctl.next_event_until(due) {
                None | Some(Event::Line(_)) => {}
                Some(Event::Shutdown(_)) => break 'leak End::Shutdown,
            }
        }
        // SAFETY: single-threaded; the child only calls _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            let at_ns = boottime_ns();
            break End::ForkFailed { at_ns, errno };
        }
        if pid == 0 {
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) }
        }
        children.push(pid);
        if children.len() >= HARD_CAP {
            break End::Cap;
        }
    };

    let forked = children.len();
    let shut_down = match end {
        End::ForkFailed { at_ns, errno } => {
            emit(&format!(
                "{{\"limit_reached\":true,\"at_ns\":{at_ns},\"forked\":{forked},\"errno\":{errno}}}"
            ));
            false
        }
        End::Cap => {
            emit(&format!("{{\"limit_reached\":false,\"forked\":{forked}}}"));
            false
        }
        End::Shutdown => {
            emit(&format!("{{\"limit_reached\":false,\"forked\":{forked}}}"));
            true
        }
    };
    if !shut_down {
        ctl.wait_shutdown();
    }
    for &c in &children {
        reap(c);
    }
}
