//! `double-fork [N=3]`: the classic daemonising double fork, N times. For
//! each i the workload forks A; A forks B and `_exit(0)`s at once; the
//! workload reaps A with `waitpid(A, 0)`. B sleeps about 50 ms (its job:
//! outlive A) and `_exit(0)`s as an orphan, reparented to the nearest
//! subreaper, the `reaper` harness, which reaps it. Ready when every B is
//! gone from `/proc`.
//!
//! Must run under `reaper` (or another subreaper): otherwise the B's are
//! reparented to PID 1, which does not reap on our hosts, and the workload
//! times out.
//!
//! Ready line: `{"ready":true,"pid":P,"children":[N A pids],"workload":"double-fork","orphans":[N B pids]}`.
//! Cleanup: nothing left to reap; exits 0.

use std::time::Duration;

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Pid, Ready, close, count_arg, decode_i64s, encode_i64s, exited_ok, fatal, fork, is_gone_since,
    proc_stat, read_to_end, reap, reset_signals_in_child, wait_until, write_all,
};

/// How long each B outlives its parent A.
const ORPHAN_LIFETIME: Duration = Duration::from_millis(50);

/// Forks A (which forks B); returns A's pid, B's pid and B's start time.
fn double_fork() -> (Pid, Pid, u64) {
    let (rd, wr) = zombie_trace_tests::workload::pipe();
    let a = fork();
    if a == 0 {
        // A
        close(rd);
        reset_signals_in_child();
        let b = fork();
        if b == 0 {
            // B
            close(wr);
            std::thread::sleep(ORPHAN_LIFETIME);
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) }
        }
        // B cannot be reaped before A exits, so its stat is readable here.
        let Some(st) = proc_stat(b) else {
            fatal(format_args!("cannot read /proc/{b}/stat of my child"))
        };
        write_all(
            wr,
            &encode_i64s(&[i64::from(b), i64::try_from(st.starttime).unwrap_or(-1)]),
        );
        // SAFETY: _exit is always safe to call.
        unsafe { libc::_exit(0) }
    }
    close(wr);
    let msg = decode_i64s(&read_to_end(rd));
    close(rd);
    let status = reap(a);
    if !exited_ok(status) {
        fatal(format_args!(
            "intermediate child {a} failed (status {status:#x})"
        ));
    }
    match msg[..] {
        [b, start] => match (Pid::try_from(b), u64::try_from(start)) {
            (Ok(b), Ok(start)) => (a, b, start),
            _ => fatal(format_args!("intermediate child {a} sent garbage {msg:?}")),
        },
        _ => fatal(format_args!("intermediate child {a} sent {msg:?}")),
    }
}

fn main() {
    let mut ctl = Control::install();
    let n = count_arg(1, 3);

    let (mut a_pids, mut b_pids, mut b_starts) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let (a, b, start) = double_fork();
        a_pids.push(a);
        b_pids.push(b);
        b_starts.push(start);
    }
    for (&b, &start) in b_pids.iter().zip(&b_starts) {
        wait_until(
            format_args!("orphan {b} to be reaped by the subreaper"),
            || is_gone_since(b, start),
        );
    }
    Ready::new(&a_pids).pids("orphans", &b_pids).print();

    ctl.wait_shutdown();
}
