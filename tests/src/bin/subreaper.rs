//! `subreaper [N=3]`: becomes a child subreaper, forks a middle process M;
//! M forks N children that `_exit(0)` at once, waits (polling `/proc`)
//! until they are all its zombies, and `_exit(0)`s without reaping them.
//! They are reparented to the workload, which reaps M only
//! (`waitpid(M, 0)`) and leaves the adopted zombies alone until cleanup.
//! Ready when all N grandchildren are zombies whose parent is the workload.
//!
//! Ready line: `{"ready":true,"pid":P,"children":[M],"workload":"subreaper","middle":M,"orphans":[N pids]}`.
//! Cleanup: `waitpid(-1, 0)` until ECHILD; exits 0.

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Pid, Ready, close, count_arg, decode_i64s, encode_i64s, exited_ok, fatal, fatal_errno, fork,
    fork_exiting_child, getpid, read_to_end, reap, reap_all, reset_signals_in_child, wait_zombies,
    write_all,
};

fn main() {
    let mut ctl = Control::install();
    let n = count_arg(1, 3);
    let me = getpid();
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        fatal_errno("prctl(PR_SET_CHILD_SUBREAPER)");
    }

    let (rd, wr) = zombie_trace_tests::workload::pipe();
    let middle = fork();
    if middle == 0 {
        close(rd);
        reset_signals_in_child();
        let m = getpid();
        let kids: Vec<Pid> = (0..n).map(|_| fork_exiting_child(0)).collect();
        wait_zombies(&kids, m);
        let encoded: Vec<i64> = kids.iter().map(|&k| i64::from(k)).collect();
        write_all(wr, &encode_i64s(&encoded));
        // SAFETY: _exit is always safe to call.
        unsafe { libc::_exit(0) }
    }
    close(wr);
    let orphans: Vec<Pid> = decode_i64s(&read_to_end(rd))
        .into_iter()
        .map(|p| Pid::try_from(p).unwrap_or_else(|_| fatal(format_args!("bad pid {p}"))))
        .collect();
    close(rd);
    let status = reap(middle);
    if !exited_ok(status) {
        fatal(format_args!(
            "middle process {middle} failed (status {status:#x})"
        ));
    }
    if orphans.len() != n {
        fatal(format_args!(
            "middle process reported {} children, expected {n}",
            orphans.len()
        ));
    }
    wait_zombies(&orphans, me);
    Ready::new(&[middle])
        .int("middle", i64::from(middle))
        .pids("orphans", &orphans)
        .print();

    ctl.wait_shutdown();
    reap_all();
}
