//! `fork-storm [WORKERS=<online CPUs>] [MILLIS=3000]`: the benchmark's
//! process-churn load. Forks WORKERS worker processes; each loops
//! `fork` → child `_exit(0)` → `waitpid(child, 0)` for MILLIS milliseconds
//! and counts the completed cycles. The workers start together (released by
//! closing a pipe) and stop at the same CLOCK_MONOTONIC deadline.
//!
//! Not a scenario workload: it does not wait for stdin. It prints one line
//! and exits 0 after reaping every worker:
//!
//! `{"ready":true,"pid":P,"children":[worker pids],"workload":"fork-storm","workers":W,"millis":M,"cycles":C,"elapsed_ns":E,"per_worker":[cycles...],"start_mono_ns":S}`
//!
//! `cycles` is the sum over workers; `elapsed_ns` the longest worker loop.
//! Every process it creates is reaped by it: the children by their worker,
//! the workers by the main process.

use zombie_trace_tests::workload::{
    Pid, close, decode_i64s, encode_i64s, fatal, fork, getpid, mono_ns, number_arg, pipe,
    read_to_end, reap, waitpid, write_all,
};

/// Upper bound for WORKERS: more than a few per CPU only measures the
/// scheduler.
const MAX_WORKERS: u64 = 64;
/// Upper bound for MILLIS (10 minutes).
const MAX_MILLIS: u64 = 600_000;

fn online_cpus() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u64::try_from(n).unwrap_or(1).max(1)
}

/// One worker: waits for the start signal, then forks and reaps until
/// `deadline_ns`; sends `[cycles, elapsed_ns]` on `result_fd`.
fn worker(start_fd: i32, result_fd: i32, duration_ns: i64) -> ! {
    // Blocks until the main process closes the write end.
    let _ = read_to_end(start_fd);
    close(start_fd);
    let start = mono_ns();
    let deadline = start + duration_ns;
    let mut cycles: i64 = 0;
    let mut now = start;
    while now < deadline {
        // SAFETY: the worker is single-threaded; the child only calls _exit.
        let child = unsafe { libc::fork() };
        if child < 0 {
            fatal(format_args!(
                "fork failed after {cycles} cycles: {}",
                std::io::Error::last_os_error()
            ));
        }
        if child == 0 {
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) }
        }
        if let Err(e) = waitpid(child, 0) {
            fatal(format_args!("waitpid({child}): {e}"));
        }
        cycles += 1;
        now = mono_ns();
    }
    write_all(result_fd, &encode_i64s(&[cycles, now - start]));
    close(result_fd);
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(0) }
}

fn main() {
    let workers = number_arg(1, online_cpus());
    let millis = number_arg(2, 3000);
    if workers == 0 || workers > MAX_WORKERS {
        fatal(format_args!(
            "WORKERS must be 1..={MAX_WORKERS}, got {workers}"
        ));
    }
    if millis == 0 || millis > MAX_MILLIS {
        fatal(format_args!(
            "MILLIS must be 1..={MAX_MILLIS}, got {millis}"
        ));
    }
    let duration_ns = i64::try_from(millis).unwrap_or(i64::MAX) * 1_000_000;

    let (start_rd, start_wr) = pipe();
    let mut pids: Vec<Pid> = Vec::new();
    let mut results = Vec::new();
    for _ in 0..workers {
        let (res_rd, res_wr) = pipe();
        let pid = fork();
        if pid == 0 {
            close(start_wr);
            close(res_rd);
            worker(start_rd, res_wr, duration_ns);
        }
        close(res_wr);
        pids.push(pid);
        results.push(res_rd);
    }
    close(start_rd);
    let start_mono_ns = mono_ns();
    // Go: every worker's read returns end of file.
    close(start_wr);

    let mut per_worker = Vec::with_capacity(pids.len());
    let mut elapsed_ns = 0;
    for fd in results {
        let values = decode_i64s(&read_to_end(fd));
        close(fd);
        match values.as_slice() {
            [cycles, elapsed] => {
                per_worker.push(*cycles);
                elapsed_ns = elapsed_ns.max(*elapsed);
            }
            _ => fatal("a worker died without reporting its cycles"),
        }
    }
    for &pid in &pids {
        reap(pid);
    }
    // Nothing else may be left: the workers reaped their own children.
    if !matches!(waitpid(-1, libc::WNOHANG), Err(e) if e.raw_os_error() == Some(libc::ECHILD)) {
        fatal("a child is left after the storm");
    }
    let list = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let worker_pids: Vec<i64> = pids.iter().map(|&p| i64::from(p)).collect();
    let line = format!(
        "{{\"ready\":true,\"pid\":{},\"children\":[{}],\"workload\":\"fork-storm\",\
         \"workers\":{workers},\"millis\":{millis},\"cycles\":{},\"elapsed_ns\":{elapsed_ns},\
         \"per_worker\":[{}],\"start_mono_ns\":{start_mono_ns}}}\n",
        getpid(),
        list(&worker_pids),
        per_worker.iter().sum::<i64>(),
        list(&per_worker),
    );
    write_all(libc::STDOUT_FILENO, line.as_bytes());
}
