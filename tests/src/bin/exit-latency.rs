//! `exit-latency`: one zombie on demand, with the time it exited, for the
//! benchmark's exit → visible latency.
//!
//! Prints the ready line `{"ready":true,"pid":P,"children":[],"workload":"exit-latency"}`,
//! then serves stdin, one command per line:
//!
//! - `exit`: forks a child that reads CLOCK_MONOTONIC, sends the value on a
//!   pipe and `_exit(0)`s; once the pipe reaches end of file (the child has
//!   closed its files on the way out) prints
//!   `{"child":C,"exit_mono_ns":T}`. The child stays a zombie.
//! - `reap`: reaps every child still pending, by pid, and prints
//!   `{"reaped":[pids]}`.
//!
//! `T` is taken just before `_exit`, so a latency computed from it includes
//! the kernel's exit path. No other wait call is made.
//! Cleanup (stdin EOF, SIGTERM, SIGINT): reaps what is pending, exits 0.

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Pid, Ready, close, decode_i64s, encode_i64s, fatal, fork, mono_ns, pipe, read_to_end, reap,
    write_all,
};

fn say(line: &str) {
    write_all(libc::STDOUT_FILENO, format!("{line}\n").as_bytes());
}

/// Forks a child that reports its exit time and exits; returns its pid and
/// that time.
fn exiting_child() -> (Pid, i64) {
    let (rd, wr) = pipe();
    let pid = fork();
    if pid == 0 {
        close(rd);
        write_all(wr, &encode_i64s(&[mono_ns()]));
        // SAFETY: _exit is always safe to call.
        unsafe { libc::_exit(0) }
    }
    close(wr);
    let values = decode_i64s(&read_to_end(rd));
    close(rd);
    match values.as_slice() {
        [t] => (pid, *t),
        _ => fatal(format_args!("child {pid} sent no exit time")),
    }
}

fn main() {
    let mut ctl = Control::install();
    let mut pending: Vec<Pid> = Vec::new();
    Ready::new(&[]).print();
    ctl.serve(|line| match line.trim() {
        "exit" => {
            let (child, at) = exiting_child();
            pending.push(child);
            say(&format!("{{\"child\":{child},\"exit_mono_ns\":{at}}}"));
        }
        "reap" => {
            let reaped: Vec<String> = pending
                .drain(..)
                .map(|pid| {
                    reap(pid);
                    pid.to_string()
                })
                .collect();
            say(&format!("{{\"reaped\":[{}]}}", reaped.join(",")));
        }
        other => fatal(format_args!(
            "unknown command {other:?} (expected exit or reap)"
        )),
    });
    for pid in pending {
        reap(pid);
    }
}
