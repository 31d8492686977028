//! `zombie-burst [TOTAL=28000] [CAP=TOTAL] [PARENTS=1]`: the benchmark's
//! burst of exits.
//!
//! Forks PARENTS parent processes (one per CPU makes the burst as fast as
//! the host allows). Released together, each forks its share of TOTAL
//! children that `_exit(0)` at once, as fast as it can, and keeps at most
//! its share of CAP as zombies: once that many are pending it reaps the
//! oldest (`waitpid(pid, 0)`) before each further fork. So TOTAL children
//! exit within the burst while live + zombie children never exceed CAP,
//! and at the end exactly CAP zombies are pending and TOTAL - CAP were
//! reaped.
//!
//! The host's task count is guarded: it refuses to start when the tasks in
//! use (`/proc/loadavg`) plus CAP would pass [`TASK_LIMIT`], and a parent
//! stops (exit 1; the `reaper` harness reaps what is left) if the host
//! reaches it during the burst.
//!
//! Ready when every parent's last child has exited (a
//! `waitid(WEXITED | WNOWAIT)` peek, which releases nothing) and all its
//! pending children are zombies in `/proc`. Ready line (the zombies are not
//! listed: there are up to 28,500):
//!
//! `{"ready":true,"pid":P,"children":[parent pids],"workload":"zombie-burst","forked":TOTAL,"reaped":R,"pending":CAP,"parent_forked":[..],"parent_reaped":[..],"parent_pending":[..],"fork_loop_us":F,"burst_us":B}`
//!
//! The `parent_*` arrays follow `children`. `burst_us` runs from the
//! release of the parents to the last child's exit (the slowest parent).
//! Cleanup (stdin EOF, SIGTERM, SIGINT): the parents reap every pending
//! child by pid and exit; the workload reaps the parents and exits 0.

use std::collections::VecDeque;
use std::time::Instant;

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Pid, Ready, close, decode_i64s, encode_i64s, fatal, fatal_errno, fork, fork_exiting_child,
    getpid, number_arg, pipe, read_to_end, reap, reap_all, reset_signals_in_child, wait_zombies,
    write_all,
};

/// Most children it will create in one run.
const MAX_TOTAL: u64 = 30_000;
/// Most zombies it will keep pending: with the harness and the host's own
/// tasks this stays under [`TASK_LIMIT`].
const MAX_CAP: u64 = 28_500;
/// Most forking parents.
const MAX_PARENTS: u64 = 16;
/// The host must never hold more tasks than this (pid_max is 32,768).
const TASK_LIMIT: u64 = 29_000;
/// How often (in forks) the host's task count is checked during the burst.
const CHECK_EVERY: u64 = 256;

/// Tasks in use on the host: the denominator of `/proc/loadavg` field 4.
fn host_tasks() -> u64 {
    let text = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_else(|e| fatal(format_args!("reading /proc/loadavg: {e}")));
    text.split_whitespace()
        .nth(3)
        .and_then(|f| f.split_once('/'))
        .and_then(|(_, total)| total.parse().ok())
        .unwrap_or_else(|| fatal(format_args!("cannot parse /proc/loadavg: {text:?}")))
}

/// Blocks until `pid` (a child) has exited, without reaping it.
fn wait_exited_nowait(pid: Pid) {
    loop {
        // SAFETY: an all-zero siginfo_t is valid; waitid writes it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: info is a valid out-pointer.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                libc::id_t::try_from(pid).unwrap_or(0),
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            fatal_errno(format_args!("waitid({pid}, WEXITED | WNOWAIT)"));
        }
    }
}

fn micros(from: Instant, to: Instant) -> i64 {
    i64::try_from(to.duration_since(from).as_micros()).unwrap_or(i64::MAX)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Pipes between the workload and one forking parent.
struct Pipes {
    /// Closed by the workload: start forking.
    start_rd: i32,
    /// Closed by the workload: reap and exit.
    shutdown_rd: i32,
    /// `[forked, reaped, pending, fork_loop_us, burst_us]`, then closed.
    result_wr: i32,
}

/// One forking parent: `total` children, at most `cap` pending. Never
/// returns.
fn parent(pipes: &Pipes, total: u64, cap: u64) -> ! {
    let me = getpid();
    let _ = read_to_end(pipes.start_rd);
    close(pipes.start_rd);
    let capacity = usize::try_from(cap).unwrap_or(0);
    let mut pending: VecDeque<Pid> = VecDeque::with_capacity(capacity);
    let mut reaped: u64 = 0;
    let mut last: Pid = 0;
    let start = Instant::now();
    for i in 0..total {
        if i % CHECK_EVERY == 0 {
            let tasks = host_tasks();
            if tasks + 2 >= TASK_LIMIT {
                fatal(format_args!(
                    "stopping after {i} forks: the host reached {tasks} tasks (limit {TASK_LIMIT})"
                ));
            }
        }
        if pending.len() >= capacity
            && let Some(oldest) = pending.pop_front()
        {
            reap(oldest);
            reaped += 1;
        }
        last = fork_exiting_child(0);
        pending.push_back(last);
    }
    let forked = Instant::now();
    if last > 0 {
        wait_exited_nowait(last);
    }
    let last_exit = Instant::now();
    let pids: Vec<Pid> = pending.iter().copied().collect();
    wait_zombies(&pids, me);
    write_all(
        pipes.result_wr,
        &encode_i64s(&[
            to_i64(total),
            to_i64(reaped),
            to_i64(pids.len() as u64),
            micros(start, forked),
            micros(start, last_exit),
        ]),
    );
    close(pipes.result_wr);

    let _ = read_to_end(pipes.shutdown_rd);
    for pid in pids {
        reap(pid);
    }
    reap_all();
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(0) }
}

/// `n` split into `parts` shares that differ by at most one.
fn share(n: u64, parts: u64, index: u64) -> u64 {
    n / parts + u64::from(index < n % parts)
}

fn main() {
    let mut ctl = Control::install();
    let total = number_arg(1, 28_000);
    let cap = number_arg(2, total);
    let parents = number_arg(3, 1);
    if total == 0 || total > MAX_TOTAL {
        fatal(format_args!("TOTAL must be 1..={MAX_TOTAL}, got {total}"));
    }
    if cap == 0 || cap > total || cap > MAX_CAP {
        fatal(format_args!(
            "CAP must be 1..=min(TOTAL, {MAX_CAP}), got {cap}"
        ));
    }
    if parents == 0 || parents > MAX_PARENTS || parents > cap {
        fatal(format_args!(
            "PARENTS must be 1..=min(CAP, {MAX_PARENTS}), got {parents}"
        ));
    }
    let tasks = host_tasks();
    if tasks + cap + parents + 2 > TASK_LIMIT {
        fatal(format_args!(
            "refusing: the host has {tasks} tasks, and {} more would pass the limit of {TASK_LIMIT}",
            cap + parents
        ));
    }

    let (start_rd, start_wr) = pipe();
    let (shutdown_rd, shutdown_wr) = pipe();
    let mut children: Vec<Pid> = Vec::new();
    let mut results: Vec<i32> = Vec::new();
    for index in 0..parents {
        let (result_rd, result_wr) = pipe();
        let pid = fork();
        if pid == 0 {
            reset_signals_in_child();
            close(start_wr);
            close(shutdown_wr);
            close(result_rd);
            for &fd in &results {
                close(fd);
            }
            let pipes = Pipes {
                start_rd,
                shutdown_rd,
                result_wr,
            };
            parent(
                &pipes,
                share(total, parents, index),
                share(cap, parents, index),
            );
        }
        close(result_wr);
        children.push(pid);
        results.push(result_rd);
    }
    close(start_rd);
    close(shutdown_rd);
    // Go.
    close(start_wr);

    let mut per_parent: Vec<Vec<i64>> = Vec::new();
    for (&fd, &pid) in results.iter().zip(&children) {
        let values = decode_i64s(&read_to_end(fd));
        close(fd);
        if values.len() != 5 {
            fatal(format_args!(
                "forking parent {pid} failed (see its message)"
            ));
        }
        per_parent.push(values);
    }
    let column = |i: usize| per_parent.iter().map(|v| v[i]).collect::<Vec<i64>>();
    let (forked, reaped, pending) = (column(0), column(1), column(2));
    let max = |i: usize| column(i).into_iter().max().unwrap_or(0);
    let ints = |v: &[i64]| {
        v.iter()
            .map(|&n| Pid::try_from(n).unwrap_or(-1))
            .collect::<Vec<_>>()
    };

    Ready::new(&children)
        .int("forked", forked.iter().sum())
        .int("reaped", reaped.iter().sum())
        .int("pending", pending.iter().sum())
        .pids("parent_forked", &ints(&forked))
        .pids("parent_reaped", &ints(&reaped))
        .pids("parent_pending", &ints(&pending))
        .int("fork_loop_us", max(3))
        .int("burst_us", max(4))
        .print();

    ctl.wait_shutdown();
    close(shutdown_wr);
    for pid in children {
        reap(pid);
    }
    reap_all();
}
