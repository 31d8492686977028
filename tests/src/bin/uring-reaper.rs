//! `uring-reaper [N=20]`: keeps the default SIGCHLD disposition, forks N
//! children that `_exit(0)` at once, waits until all N are zombies (state
//! `Z`, parent = self), then reaps every one of them with io_uring
//! `IORING_OP_WAITID` (Linux >= 6.7): one SQE per child, `P_PID` with the
//! child's pid, `WEXITED`, with a siginfo buffer. It never calls
//! wait4/waitid/waitpid for them. Ready when every CQE reported success,
//! every siginfo names its child with "exited 0", and none of the children
//! is left in `/proc`.
//!
//! Ready line: `{"ready":true,"pid":P,"children":[N pids],"workload":"uring-reaper","reaped_by_io_uring":N}`.
//! Cleanup: nothing is left to reap; exits 0.

use std::ffi::c_int;
use std::io;

use io_uring::{IoUring, opcode};
use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Pid, Ready, count_arg, fatal, fork_exiting_child, getpid, is_gone_from, wait_zombies,
};

/// Most SQEs in flight at once; larger counts are reaped in rounds.
const MAX_IN_FLIGHT: usize = 256;

/// The symbolic name of the errnos a WaitId CQE can plausibly carry.
fn errno_name(errno: c_int) -> &'static str {
    match errno {
        libc::EINVAL => "EINVAL",
        libc::ECHILD => "ECHILD",
        libc::EINTR => "EINTR",
        libc::EFAULT => "EFAULT",
        libc::ECANCELED => "ECANCELED",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOSYS => "ENOSYS",
        libc::EPERM => "EPERM",
        libc::ENOMEM => "ENOMEM",
        _ => "errno",
    }
}

/// Checks one completion: `res` is the CQE result for `child`, `info` the
/// siginfo the kernel filled in.
fn check_completion(child: Pid, res: i32, info: &libc::siginfo_t) {
    if res < 0 {
        let errno = -res;
        let hint = if errno == libc::EINVAL {
            " (the kernel lacks IORING_OP_WAITID, which needs Linux >= 6.7)"
        } else {
            ""
        };
        fatal(format_args!(
            "io_uring WAITID for child {child} failed with {} ({}){hint}",
            errno_name(errno),
            io::Error::from_raw_os_error(errno)
        ));
    }
    if res != 0 {
        fatal(format_args!(
            "io_uring WAITID for child {child}: unexpected CQE result {res}"
        ));
    }
    // SAFETY: the kernel filled in a SIGCHLD siginfo, for which si_pid and
    // si_status are the valid union members.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if info.si_signo != libc::SIGCHLD
        || info.si_code != libc::CLD_EXITED
        || pid != child
        || status != 0
    {
        fatal(format_args!(
            "io_uring WAITID for child {child}: unexpected siginfo (signo {}, code {}, pid {pid}, status {status})",
            info.si_signo, info.si_code
        ));
    }
}

/// Reaps every pid in `children` with IORING_OP_WAITID; returns how many
/// completions succeeded (all of them, or the process has exited).
fn reap_with_io_uring(ring: &mut IoUring, children: &[Pid]) -> usize {
    // SAFETY: an all-zero siginfo_t is a valid value.
    let mut infos: Vec<libc::siginfo_t> = vec![unsafe { std::mem::zeroed() }; children.len()];
    let infos_ptr = infos.as_mut_ptr();
    let mut reaped = 0;
    for (round, chunk) in children.chunks(MAX_IN_FLIGHT).enumerate() {
        let base = round * MAX_IN_FLIGHT;
        for (i, &child) in chunk.iter().enumerate() {
            let idx = base + i;
            let id = libc::id_t::try_from(child)
                .unwrap_or_else(|_| fatal(format_args!("child pid {child} is negative")));
            // SAFETY: idx < infos.len(); `infos` is neither moved nor
            // resized until every SQE of this round has completed.
            let infop = unsafe { infos_ptr.add(idx) };
            let sqe = opcode::WaitId::new(libc::P_PID, id, libc::WEXITED)
                .infop(infop.cast_const())
                .build()
                .user_data(idx as u64);
            // SAFETY: the siginfo buffer the entry points to outlives its
            // completion (see above).
            if unsafe { ring.submission().push(&sqe) }.is_err() {
                fatal("the io_uring submission queue is full");
            }
        }
        let mut in_flight = chunk.len();
        while in_flight > 0 {
            match ring.submit_and_wait(in_flight) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => fatal(format_args!("io_uring_enter: {e}")),
            }
            for cqe in ring.completion() {
                let idx = usize::try_from(cqe.user_data()).unwrap_or(usize::MAX);
                let Some(&child) = children.get(idx) else {
                    fatal(format_args!(
                        "io_uring completion with unknown user_data {}",
                        cqe.user_data()
                    ));
                };
                // SAFETY: this SQE has completed, so the kernel no longer
                // writes to its buffer.
                let info = unsafe { &*infos_ptr.add(idx) };
                check_completion(child, cqe.result(), info);
                reaped += 1;
                in_flight -= 1;
            }
        }
    }
    drop(infos);
    reaped
}

fn main() {
    let mut ctl = Control::install();
    let n = count_arg(1, 20);
    let me = getpid();

    let entries = u32::try_from(n.clamp(1, MAX_IN_FLIGHT)).unwrap_or(1);
    let mut ring = IoUring::new(entries).unwrap_or_else(|e| {
        fatal(format_args!(
            "io_uring_setup({entries}): {e} (io_uring unavailable? see sysctl kernel.io_uring_disabled)"
        ))
    });

    let children: Vec<_> = (0..n).map(|_| fork_exiting_child(0)).collect();
    wait_zombies(&children, me);

    let reaped = reap_with_io_uring(&mut ring, &children);
    drop(ring);
    if reaped != n {
        fatal(format_args!(
            "io_uring reaped {reaped} children, expected {n}"
        ));
    }
    // A successful WAITID has released the child before completing.
    if let Some(c) = children.iter().find(|&&c| !is_gone_from(c, me)) {
        fatal(format_args!(
            "child {c} is still in /proc after io_uring reaped it"
        ));
    }
    Ready::new(&children)
        .int(
            "reaped_by_io_uring",
            i64::try_from(reaped).unwrap_or(i64::MAX),
        )
        .print();

    ctl.wait_shutdown();
}
