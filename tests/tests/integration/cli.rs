//! The `zombie-trace` binary end to end: what a user or a script sees.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;
use zombie_trace::kernel::tracer::TracerOptions;
use zombie_trace_tests::client::{Workload, bin_path, kernel_has_io_uring_waitid};

struct Watch {
    child: Child,
    lines: Receiver<(Instant, Value)>,
}

impl Watch {
    fn start(args: &[&str]) -> Watch {
        let mut child = Command::new(bin_path("zombie-trace"))
            .arg("watch")
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn zombie-trace watch");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("watch --json printed a non-JSON line {line:?}: {e}")
                });
                if tx.send((Instant::now(), value)).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    /// The next line, or None at end of output / timeout.
    fn next(&self, timeout: Duration) -> Option<(Instant, Value)> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Reads lines until one satisfies `want`, for at most `timeout`.
    fn until(
        &self,
        timeout: Duration,
        mut want: impl FnMut(&Value) -> bool,
    ) -> Option<(Instant, Value)> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let (at, line) = self.next(left)?;
            if want(&line) {
                return Some((at, line));
            }
        }
        None
    }

    /// Sends `signal`, then returns the remaining lines and the exit code.
    fn stop(mut self, signal: i32) -> (Vec<Value>, Option<i32>) {
        let pid = self.child.id() as i32;
        // Safety: kill(2) on our own child's PID.
        unsafe { libc::kill(pid, signal) };
        let mut rest = Vec::new();
        while let Some((_, line)) = self.next(Duration::from_secs(10)) {
            rest.push(line);
        }
        let status = self.child.wait().expect("wait for zombie-trace");
        (rest, status.code())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `report` does not name `pid` as owing reaps: no row, or (a parent that
/// reaps in its SIGCHLD handler caught between a child's exit and its
/// wait, as on a slow or emulated machine) a row whose oldest zombie is
/// younger than one report interval, as in the phantom test below.
fn assert_not_named(report: &Value, pid: u32, interval_ms: u64) {
    if let Some(row) = row(report, pid) {
        let age = row["oldest_zombie_age_ms"].as_u64().unwrap_or(u64::MAX);
        assert!(
            age <= interval_ms,
            "pid {pid} reaps its children but is named with a zombie {age} ms old \
             (interval {interval_ms} ms): {report}"
        );
    }
}

fn is_report(v: &Value) -> bool {
    v["type"] == "report"
}

fn row(report: &Value, pid: u32) -> Option<&Value> {
    report["parents"]
        .as_array()?
        .iter()
        .find(|p| p["pid"] == pid)
}

#[test]
fn watch_names_a_never_waiting_parent_within_two_seconds() {
    if !privileged() {
        return;
    }
    const INTERVAL_MS: u64 = 200;
    let watch = Watch::start(&["--interval", "0.2", "--threshold", "20"]);
    assert!(
        watch
            .until(budget(Duration::from_secs(30)), is_report)
            .is_some(),
        "watch printed no first report"
    );
    // Processes that reap, are auto-reaped, or only run threads must never
    // be named as owing, while the leaker must.
    let reaper = Workload::start("handler-reaps", &["20"]);
    let ignorer = Workload::start("ignores-sigchld", &["20"]);
    let threads = Workload::start("threads-only", &["20"]);
    let leaker = Workload::start("never-waits", &["20"]);
    let exited = Instant::now(); // every child of the leaker is a zombie by now
    let leaker_pid = leaker.pid();
    let quiet = [reaper.pid(), ignorer.pid(), threads.pid()];

    let mut alerted = false;
    let named = watch.until(Duration::from_secs(5), |line| {
        if line["type"] == "alert" && line["parent"]["pid"] == leaker_pid {
            assert_eq!(line["threshold"], 20);
            assert_eq!(line["parent"]["pending_zombies"], 20);
            assert_eq!(
                line["diagnosis"]["verdict"], "never_waits",
                "the alert says why: {line}"
            );
            assert!(
                line["diagnosis"]["next_step"].is_string(),
                "and what works: {line}"
            );
            alerted = true;
        }
        if is_report(line) {
            for pid in quiet {
                assert_not_named(line, pid, INTERVAL_MS);
            }
        }
        is_report(line) && row(line, leaker_pid).is_some_and(|r| r["pending_zombies"] == 20)
    });
    let Some((at, report)) = named else {
        panic!("no report named never-waits {leaker_pid} with 20 pending zombies");
    };
    let latency = at.duration_since(exited);
    assert!(
        latency < Duration::from_secs(2),
        "named after {latency:?}, wanted under 2 s"
    );
    assert!(alerted, "no alert line for {leaker_pid} at threshold 20");
    let leaker_row = row(&report, leaker_pid).expect("row");
    assert_eq!(leaker_row["comm"], "never-waits");
    assert_eq!(leaker_row["forks"], 20);
    assert_eq!(leaker_row["exits"], 20);
    assert_eq!(leaker_row["reaped"], 0);
    assert!(leaker_row["oldest_zombie_age_ms"].as_u64().is_some());
    assert!(report["lost_events"].as_u64().is_some());

    // A few more reports: still no row for the well-behaved ones.
    let deadline = Instant::now() + Duration::from_millis(800);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some((_, line)) = watch.next(left) else {
            break;
        };
        if is_report(&line) {
            for pid in quiet {
                assert_not_named(&line, pid, INTERVAL_MS);
            }
        }
    }

    let (rest, code) = watch.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "SIGINT must stop watch cleanly");
    let last = rest
        .iter()
        .rev()
        .find(|l| is_report(l))
        .expect("a final report after SIGINT");
    assert!(
        row(last, leaker_pid).is_some(),
        "the final report still names the leaker"
    );
    drop((reaper, ignorer, threads, leaker));
}

#[test]
fn first_report_lists_zombies_older_than_the_tracer() {
    if !privileged() {
        return;
    }
    let leaker = Workload::start("never-waits", &["7"]);
    let watch = Watch::start(&["--interval", "5"]);
    let (_, first) = watch
        .until(budget(Duration::from_secs(30)), is_report)
        .expect("a first report");
    let r = row(&first, leaker.pid())
        .unwrap_or_else(|| panic!("first report misses {}: {first}", leaker.pid()));
    assert_eq!(r["pending_zombies"], 7);
    assert_eq!(r["zombies_before_start"], 7);
    assert_eq!(r["oldest_zombie_age_exact"], false);
    let (_, code) = watch.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "SIGTERM must stop watch cleanly");
}

#[test]
fn watch_duration_stops_by_itself() {
    if !privileged() {
        return;
    }
    let started = Instant::now();
    let output = Command::new(bin_path("zombie-trace"))
        .args(["watch", "--json", "--duration", "1", "--interval", "0.3"])
        .stdin(Stdio::null())
        .output()
        .expect("run watch");
    assert!(
        output.status.success(),
        "watch --duration failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(
        lines.iter().filter(|l| is_report(l)).count() >= 2,
        "periodic reports and a final one: {lines:?}"
    );
}

#[test]
fn watch_without_privileges_says_what_is_missing() {
    let binary = UnprivilegedBinary::new();
    let output = binary
        .command()
        .args(["watch", "--duration", "1"])
        .stdin(Stdio::null())
        .output()
        .expect("run watch as nobody");
    assert!(
        !output.status.success(),
        "watch must fail without privileges"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one clear line, got: {stderr}"
    );
    assert!(
        stderr.contains("root"),
        "the message names what is missing: {stderr}"
    );
    assert!(
        stderr.contains("sudo"),
        "the message names the fix: {stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn snapshot_groups_zombies_by_parent_without_privileges() {
    let leaker = Workload::start("never-waits", &["5"]);
    let binary = UnprivilegedBinary::new();
    let output = binary
        .command()
        .args(["snapshot", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run snapshot");
    assert!(
        output.status.success(),
        "snapshot failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let snapshot: Value = serde_json::from_slice(&output.stdout).expect("snapshot JSON");
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("pid_max")
        .trim()
        .parse()
        .expect("number");
    assert_eq!(snapshot["pid_max"], pid_max);
    assert!(snapshot["tasks"].as_u64().is_some_and(|t| t > 0));
    assert!(snapshot["zombies"].as_u64().is_some_and(|z| z >= 5));
    let parent = row(&snapshot, leaker.pid())
        .unwrap_or_else(|| panic!("snapshot misses {}: {snapshot}", leaker.pid()));
    assert_eq!(parent["comm"], "never-waits");
    assert_eq!(parent["pending_zombies"], 5);
    let mut expected = leaker.children();
    expected.sort_unstable();
    let listed: Vec<u32> = parent["zombie_pids"]
        .as_array()
        .expect("zombie_pids")
        .iter()
        .filter_map(|v| v.as_u64().map(|v| v as u32))
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn check_reports_a_usable_kernel() {
    if !privileged() {
        return;
    }
    let (status, checks) = check_json();
    assert!(status.success(), "check found a missing part: {checks:#?}");
    assert!(!checks.is_empty());
}

/// What `check` says of this kernel is what the kernel itself says
/// elsewhere: the exit tracepoint's format in tracefs (`group_dead`),
/// io_uring's own probe (`IORING_OP_WAITID`), uname and the BTF file. Run on
/// every kernel of the VM matrix, it is the proof that `check` is truthful
/// there, not only on the host it was written on.
#[test]
fn check_tells_this_kernels_features_as_the_kernel_does() {
    if !privileged() {
        return;
    }
    // As after a user's first `watch`: the tracer mounts tracefs if needed.
    runtime().block_on(async { drop(start_session(TracerOptions::default())) });
    let (status, checks) = check_json();
    assert!(status.success(), "check found a missing part: {checks:#?}");

    let tracefs = std::fs::read_to_string("/proc/mounts")
        .expect("read /proc/mounts")
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&"tracefs")).then(|| fields[1].to_owned())
        })
        .expect("tracefs is mounted once the tracer has run");
    let exit_format =
        std::fs::read_to_string(format!("{tracefs}/events/sched/sched_process_exit/format"))
            .expect("read the sched_process_exit format");
    let kernel_has_group_dead = exit_format.contains("group_dead");
    let exit_detail = check_detail(&checks, "exit-tracepoint");
    assert_eq!(
        exit_detail.contains("passes group_dead"),
        kernel_has_group_dead,
        "check says {exit_detail:?}; the tracepoint's format:\n{exit_format}"
    );

    let kernel_has_waitid = kernel_has_io_uring_waitid().expect("probe io_uring");
    let reap_detail = check_detail(&checks, "reap-paths");
    let said = if kernel_has_waitid {
        "IORING_OP_WAITID (present here)"
    } else {
        "IORING_OP_WAITID (not in this kernel"
    };
    assert!(
        reap_detail.contains(said),
        "io_uring's probe says WAITID {}, check says {reap_detail:?}",
        if kernel_has_waitid {
            "is supported"
        } else {
            "is not"
        }
    );

    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let version_detail = check_detail(&checks, "kernel-version");
    assert!(
        version_detail.contains(release.trim()),
        "{version_detail:?} names {release:?}"
    );
    assert!(
        std::path::Path::new("/sys/kernel/btf/vmlinux").exists(),
        "check passed without kernel BTF"
    );
    let tracepoints = check_detail(&checks, "syscall-tracepoints");
    assert!(
        std::path::Path::new(&format!("{tracefs}/events/syscalls/sys_exit_wait4")).exists(),
        "check says {tracepoints:?} but there is no sys_exit_wait4 tracepoint"
    );
    eprintln!(
        "kernel {}: group_dead {kernel_has_group_dead}, io_uring WAITID {kernel_has_waitid}; \
         check agrees",
        release.trim()
    );
}

/// A busy job runner that reaps every child at once (two threads forking and
/// waiting ~10,000 times a second) must never be named as owing zombies,
/// however the start of `watch` falls in its storm: no row for it may show
/// a zombie older than one report interval.
#[test]
fn watch_started_during_a_fork_reap_storm_names_no_phantom() {
    if !privileged() {
        return;
    }
    let storm = Workload::start("churn", &["60", "2"]);
    let pid = storm.pid();
    let interval_ms = 200;
    let mut rows_seen = 0;
    for round in 0..5 {
        let watch = Watch::start(&["--interval", "0.2", "--duration", "1.3"]);
        let (lines, code) = {
            let mut lines = Vec::new();
            while let Some((_, line)) = watch.next(budget(Duration::from_secs(30))) {
                lines.push(line);
            }
            let mut watch = watch;
            (lines, watch.child.wait().ok().and_then(|s| s.code()))
        };
        assert_eq!(code, Some(0), "round {round}: watch failed");
        let reports: Vec<&Value> = lines.iter().filter(|v| is_report(v)).collect();
        assert!(
            reports.len() >= 5,
            "round {round}: {} reports",
            reports.len()
        );
        for report in &reports {
            assert_eq!(report["lost_events"], 0, "round {round}: {report}");
            if let Some(row) = row(report, pid) {
                rows_seen += 1;
                let age = row["oldest_zombie_age_ms"].as_u64().unwrap_or(u64::MAX);
                assert!(
                    age <= interval_ms,
                    "round {round}: the storm ({pid}) is named with a zombie {age} ms old, \
                     older than one interval: a phantom. Row: {row}"
                );
            }
        }
        let last = reports.last().expect("a final report");
        let pending = row(last, pid).map_or(0, |r| r["pending_zombies"].as_u64().unwrap_or(0));
        assert!(
            pending <= 2,
            "round {round}: the final report says the storm owes {pending}: {last}"
        );
    }
    eprintln!(
        "storm {pid}: 5 starts of watch, {rows_seen} rows naming it, none with an old zombie"
    );
}

/// A reader stalled while a 3,000-child burst goes through a 4 KiB ring
/// loses events; the first report after it resumes is exact again (resynced
/// with /proc), and still reports the loss.
#[test]
fn a_stalled_reader_is_exact_again_one_interval_after_a_burst() {
    if !privileged() {
        return;
    }
    let watch = Watch::start(&["--interval", "0.5", "--ring-bytes", "4096"]);
    assert!(
        watch
            .until(budget(Duration::from_secs(30)), is_report)
            .is_some(),
        "watch printed no first report"
    );
    let watch_pid = watch.child.id() as i32;
    // Safety: kill(2) on our own child's PID.
    unsafe { libc::kill(watch_pid, libc::SIGSTOP) };
    let burst = Workload::start("never-waits", &["3000"]);
    // Reports written before the stop may still be in the pipe.
    while watch.next(Duration::from_millis(300)).is_some() {}
    let resumed = Instant::now();
    // Safety: as above.
    unsafe { libc::kill(watch_pid, libc::SIGCONT) };
    let (at, report) = watch
        .until(budget(Duration::from_secs(10)), is_report)
        .expect("a report after resuming");
    let waited = at.duration_since(resumed);
    // One interval and a half on a host; the catch-up (3,000 events and a
    // /proc scan) is work, which an emulated guest does slower.
    assert!(
        waited <= budget(Duration::from_millis(750)),
        "the first report after resuming came {waited:?} later"
    );
    let owed = row(&report, burst.pid()).map(|r| r["pending_zombies"].clone());
    assert_eq!(
        owed,
        Some(Value::from(3000)),
        "the first report after the burst is exact: {report}"
    );
    assert!(
        report["lost_events"].as_u64().is_some_and(|n| n > 0),
        "the burst overflowed the ring: {report}"
    );
    assert_eq!(report["complete"], true, "{report}");
    assert!(
        report["resyncs"].as_u64().is_some_and(|n| n >= 1),
        "{report}"
    );
    assert!(
        report["resync_corrections"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{report}"
    );
    eprintln!(
        "after the burst: lost {}, resyncs {}, corrections {}, first report {waited:?} after resuming",
        report["lost_events"], report["resyncs"], report["resync_corrections"]
    );
    drop(burst);
}
