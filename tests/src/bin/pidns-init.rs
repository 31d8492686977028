//! `pidns-init [N=3]`: "the classic container without an init". Needs
//! root (`CAP_SYS_ADMIN`).
//!
//! The workload calls `unshare(CLONE_NEWPID)` and forks C, which is PID 1
//! of the new PID namespace. C keeps SIGCHLD at its default, forks N
//! children that `_exit(0)` at once and never calls any wait function:
//! they stay zombies owed by C. C then blocks reading a pipe from the
//! workload. The workload itself stays in the host namespace and waits,
//! polling `/proc` (host view: `/proc/<C>/task/*/children`, or a scan for
//! `ppid == C`), until C has exactly N children and all are zombies; it
//! also checks that C is PID 1 in its namespace (`NSpid` in
//! `/proc/<C>/status`).
//!
//! Ready line: `{"ready":true,"pid":P,"children":[C],"workload":"pidns-init","ns_init":C,"orphans":[N host pids],"zombies":[the same N],"ns_pids":[their pids inside the namespace]}`.
//! All pids are as seen from the host (the workload's namespace) except
//! `ns_pids`, which lists the same processes, in the same order, as C sees
//! them (2, 3, ... normally).
//!
//! Cleanup (stdin EOF, SIGTERM, SIGINT): closes the pipe; C `_exit(0)`s,
//! and because C is the namespace's init the kernel
//! (`zap_pid_ns_processes`) reaps its zombies as part of C's exit; the
//! workload reaps C (`waitpid(C, 0)`) and exits 0.
//!
//! Without the privilege: `pidns-init: unshare(CLONE_NEWPID): ...` on
//! stderr, exit status 1, nothing forked.

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Pid, Ready, children_of, close, count_arg, exited_ok, fatal, fork, fork_exiting_child, getpid,
    is_zombie_of, pipe, proc_stat, reap, reset_signals_in_child, wait_until,
};

/// The innermost pid of `pid` (the last `NSpid` field of its status file).
fn ns_pid(pid: Pid) -> Option<Pid> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_ascii_whitespace()
        .last()?
        .parse()
        .ok()
}

/// Body of C, the namespace's init: leak N zombies, then wait for the
/// workload to close the pipe.
fn ns_init(n: usize, rd: libc::c_int) -> ! {
    reset_signals_in_child();
    for _ in 0..n {
        fork_exiting_child(0);
    }
    let mut byte = 0u8;
    loop {
        // SAFETY: reading one byte into a valid buffer.
        let r = unsafe { libc::read(rd, (&mut byte as *mut u8).cast(), 1) };
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        // End of file (or anything else): time to go.
        break;
    }
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(0) }
}

fn main() {
    let mut ctl = Control::install();
    let n = count_arg(1, 3);
    let me = getpid();

    // SAFETY: unshare with a flag argument.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        let err = std::io::Error::last_os_error();
        fatal(format_args!(
            "unshare(CLONE_NEWPID): {err} (this workload needs root, i.e. CAP_SYS_ADMIN)"
        ));
    }

    let (rd, wr) = pipe();
    let init = fork();
    if init == 0 {
        close(wr);
        ns_init(n, rd);
    }
    close(rd);

    let mut zombies: Vec<Pid> = Vec::new();
    wait_until(
        format_args!("{n} zombie children of the namespace init {init}"),
        || {
            match proc_stat(init) {
                Some(s) if s.ppid == me && s.state != 'Z' => {}
                _ => fatal(format_args!(
                    "the namespace init {init} died before the scenario was set up"
                )),
            }
            zombies = children_of(init);
            zombies.len() == n && zombies.iter().all(|&z| is_zombie_of(z, init))
        },
    );
    if ns_pid(init) != Some(1) {
        fatal(format_args!(
            "process {init} is not PID 1 of its namespace (NSpid ends in {:?})",
            ns_pid(init)
        ));
    }
    let ns_pids: Vec<Pid> = zombies
        .iter()
        .map(|&z| ns_pid(z).unwrap_or_else(|| fatal(format_args!("no NSpid for {z}"))))
        .collect();

    Ready::new(&[init])
        .int("ns_init", i64::from(init))
        .pids("orphans", &zombies)
        .pids("zombies", &zombies)
        .pids("ns_pids", &ns_pids)
        .print();

    ctl.wait_shutdown();
    close(wr);
    let status = reap(init);
    if !exited_ok(status) {
        fatal(format_args!(
            "namespace init {init} failed (status {status:#x})"
        ));
    }
}
