//! Abuse: overflow, signals, bad input, long churn. The tracer must count what
//! it loses, stop cleanly, refuse nonsense with a message, and stay flat.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use zombie_trace::host::facts::LiveHost;
use zombie_trace::kernel::tracer::TracerOptions;
use zombie_trace::views::report::{Filter, Report};
use zombie_trace_tests::client::{Workload, bin_path};

/// A one-page ring buffer overflowed by an undrained burst: the loss is
/// counted, and the report says its ledger is incomplete.
#[test]
fn an_overflowing_ring_marks_the_report_incomplete() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let mut session = start_session(TracerOptions {
            ring_bytes: 4096,
            ..TracerOptions::default()
        });
        let workload = Workload::start("never-waits", &["300"]);
        let lost = session.lost_by_reason();
        assert!(lost.ring_full > 0, "expected ring_full losses: {lost:?}");
        session.drain(&mut |_| {});
        let now = zombie_trace::host::facts::now().expect("clock");
        let report = Report::new(
            session.ledger(),
            &Filter::default(),
            now,
            &session.health(),
            &mut LiveHost,
        );
        assert!(!report.complete);
        assert_eq!(report.lost_events, report.lost_by_reason.total());
        let json = serde_json::to_value(&report).expect("JSON");
        assert_eq!(json["complete"], false);
        assert!(json["lost_events"].as_u64().is_some_and(|n| n > 0));
        assert!(
            report.to_text().contains("INCOMPLETE"),
            "{}",
            report.to_text()
        );
        assert!(report.to_text().contains("raise --ring-bytes"));
        drop(workload);
    });
}

/// After an overflow the ledger is wrong in any way; one maintenance pass
/// resyncs it with /proc: every zombie of a 3,000-child burst, exactly, while
/// the loss stays counted.
#[test]
fn a_resync_after_an_overflow_makes_the_ledger_equal_to_proc() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let mut session = start_session(TracerOptions {
            ring_bytes: 4096,
            ..TracerOptions::default()
        });
        // Nothing drains the ring while the burst runs.
        let workload = Workload::start("never-waits", &["3000"]);
        let pid = workload.pid();
        session.drain(&mut |_| {});
        let before = pending(session.ledger(), pid);
        assert!(!session.health().complete());
        let summary = session
            .maintain(&mut |_| {})
            .expect("maintain")
            .expect("the loss triggers a resync");
        // Whatever else the host does during the scan can overflow a 4 KiB
        // ring again; each further pass resyncs again.
        for _ in 0..5 {
            if session.health().complete() {
                break;
            }
            session.maintain(&mut |_| {}).expect("maintain");
        }
        let health = session.health();
        let ledger = session.ledger();
        let parent = process(ledger, pid).expect("the parent is tracked");
        let zombies = zombies_owed(ledger, pid);
        let mut expected = workload.children();
        expected.sort_unstable();
        assert_eq!(zombies.len(), 3000, "pending before the resync: {before}");
        assert_eq!(zombies, expected, "the ledger's zombies are /proc's");
        assert_eq!(parent.stats.pending, 3000);
        assert!(health.complete(), "{health:?}");
        assert!(health.lost.ring_full > 0, "{health:?}");
        assert!(health.resyncs >= 1);
        assert!(health.resync_corrections >= summary.corrections());
        let now = zombie_trace::host::facts::now().expect("clock");
        let report = Report::new(ledger, &Filter::default(), now, &health, &mut LiveHost);
        assert!(report.complete);
        assert!(report.lost_events > 0);
        assert_eq!(report.resyncs, health.resyncs);
        eprintln!(
            "pending {before} before the resync, 3000 after; lost {}; {summary:?}",
            health.lost.total()
        );
        drop(workload);
    });
}

/// BPF program IDs held open by a process (from its fdinfo).
fn bpf_program_ids(pid: u32) -> HashSet<u32> {
    let mut ids = HashSet::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for entry in entries.flatten() {
        if let Ok(info) = std::fs::read_to_string(entry.path()) {
            ids.extend(
                info.lines()
                    .filter_map(|l| l.strip_prefix("prog_id:"))
                    .filter_map(|v| v.trim().parse::<u32>().ok()),
            );
        }
    }
    ids
}

fn loaded_program_ids() -> HashSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect()
}

#[test]
fn sigint_sigterm_and_sighup_detach_flush_and_exit_zero() {
    if !privileged() {
        return;
    }
    for (name, signal) in [
        ("SIGINT", libc::SIGINT),
        ("SIGTERM", libc::SIGTERM),
        ("SIGHUP", libc::SIGHUP),
    ] {
        let mut child = Command::new(bin_path("zombie-trace"))
            .args(["watch", "--json", "--interval", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn watch");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().and_then(Result::ok).expect("a first report");
        assert!(first.contains("\"type\":\"report\""), "{first}");
        let programs = bpf_program_ids(child.id());
        // 8, or 12 where syscall entry programs save the arguments.
        assert!(
            programs.len() >= 8,
            "{name}: its programs are loaded: {programs:?}"
        );

        // Safety: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let status = child.wait().expect("wait");
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        assert_eq!(
            status.code(),
            Some(0),
            "{name}: exit status, stderr: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(
            rest.iter().any(|l| l.contains("\"type\":\"report\"")),
            "{name}: a final report is flushed: {rest:?}"
        );
        // The kernel frees a program after an RCU grace period once its last
        // reference is gone: give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut still = &programs & &loaded_program_ids();
        while !still.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            still = &programs & &loaded_program_ids();
        }
        assert!(
            still.is_empty(),
            "{name}: programs still loaded after exit: {still:?}"
        );
    }
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(bin_path("zombie-trace"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run zombie-trace");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_get_a_message_not_a_panic() {
    for (args, fragment) in [
        (
            &["watch", "--interval", "0"][..],
            "positive number of seconds",
        ),
        (
            &["watch", "--interval", "soon"][..],
            "positive number of seconds",
        ),
        (&["watch", "--threshold", "0"][..], "threshold"),
        (&["watch", "--bogus"][..], "--bogus"),
        (&["latency", "--by", "nothing"][..], "nothing"),
        (&["explain"][..], "PID"),
        (&["snapshot", "--pid", "-5"][..], "-5"),
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(fragment),
            "{args:?} should mention {fragment}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    if privileged_for("ring size") {
        let (code, stderr) = run(&["watch", "--ring-bytes", "5000", "--duration", "1"]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("power of two"), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }
}

/// Ten minutes of short-lived processes (well over 100,000) under the real
/// `watch`: its memory stays flat. `ZOMBIE_TRACE_SOAK_SECS` shortens it for
/// local runs; CI runs the full ten minutes.
#[test]
fn a_ten_minute_churn_soak_keeps_memory_flat() {
    if !privileged() {
        return;
    }
    let soak_secs: u64 = std::env::var("ZOMBIE_TRACE_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let mut watch = Command::new(bin_path("zombie-trace"))
        .args(["watch", "--json", "--interval", "5", "--threshold", "50"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn watch");
    let stdout = watch.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut last = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            last = line;
        }
        last
    });
    std::thread::sleep(Duration::from_secs(2));
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .expect("VmRSS")
    };
    let mut churn = Workload::start("churn", &[&soak_secs.to_string()]);
    // Warm up: tables reach their working size in the first stretch.
    let warm = Duration::from_secs((soak_secs / 10).clamp(10, 60));
    std::thread::sleep(warm);
    let warm_kib = rss(watch.id());
    let started = Instant::now();
    let line = churn
        .next_line(Duration::from_secs(soak_secs + 60))
        .expect("churn reports its count");
    let end_kib = rss(watch.id());
    let done: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    let processes = done["processes"].as_u64().expect("processes");
    eprintln!(
        "soak: {processes} processes in {soak_secs} s; watch RSS {warm_kib} KiB after {warm:?}, {end_kib} KiB after {:?} more",
        started.elapsed()
    );
    if soak_secs >= 600 {
        assert!(processes >= 100_000, "only {processes} processes churned");
    }
    assert!(
        end_kib <= warm_kib + 4096,
        "RSS grew from {warm_kib} KiB to {end_kib} KiB under churn"
    );
    // Safety: kill(2) on our own child.
    unsafe { libc::kill(watch.id() as i32, libc::SIGTERM) };
    let status = watch.wait().expect("wait watch");
    assert_eq!(status.code(), Some(0));
    let last = reader.join().expect("reader");
    let report: serde_json::Value = serde_json::from_str(&last).expect("final report");
    assert_eq!(report["type"], "report");
    assert_eq!(
        report["complete"], true,
        "no events lost under churn: {report}"
    );
    drop(churn);
}

/// What a user sees when the kernel lacks BTF or tracefs cannot be mounted:
/// one line that names the problem and the fix.
#[test]
fn missing_btf_and_unmountable_tracefs_name_the_fix() {
    let err = match zombie_trace::kernel::btf::Btf::from_path(std::path::Path::new(
        "/nonexistent/zombie-trace-test/vmlinux",
    )) {
        Ok(_) => panic!("BTF parsed from a path that does not exist"),
        Err(err) => err.to_string(),
    };
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("CONFIG_DEBUG_INFO_BTF"), "{err}");

    let err = zombie_trace::kernel::tracefs::TraceFsError::MountPermission {
        errno: zombie_trace::kernel::check::errno_name(Some(libc::EPERM)),
        missing: " (missing: CAP_SYS_ADMIN)".to_owned(),
    }
    .to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("mount -t tracefs tracefs"), "{err}");
    assert!(err.contains("root"), "{err}");
    assert!(err.contains("(EPERM)"), "{err}");
    assert!(err.contains("missing: CAP_SYS_ADMIN"), "{err}");
}

/// The safety net behind the free events: with them switched off, a parent
/// that reaps through io_uring leaves phantoms — and one maintenance pass
/// finds them by checking the ledger's zombies against /proc, without any
/// loss, and resyncs them away.
#[test]
fn the_zombie_check_removes_phantoms_without_any_loss() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let mut session = start_session(TracerOptions {
            without_free_program: true,
            ..TracerOptions::default()
        });
        let workload = Workload::start("uring-reaper", &["20"]);
        let pid = workload.pid();
        let forked = session
            .run_until(TIMEOUT, |l| pending(l, pid) == 20)
            .await
            .expect("tracer");
        assert!(forked, "{:?}", stats(session.ledger(), pid));
        session.run_for(QUIET).await.expect("tracer");
        assert_eq!(
            pending(session.ledger(), pid),
            20,
            "phantoms without free events"
        );
        let summary = session
            .maintain(&mut |_| {})
            .expect("maintain")
            .expect("the check finds them and resyncs");
        let health = session.health();
        assert_eq!(pending(session.ledger(), pid), 0);
        assert!(zombies_owed(session.ledger(), pid).is_empty());
        assert_eq!(summary.zombies_removed, 20, "{summary:?}");
        assert_eq!(health.lost.total(), 0, "no loss was needed");
        assert!(health.zombie_checks >= 20, "{health:?}");
        assert_eq!(health.resyncs, 1);
        assert!(health.complete());
        drop(workload);
    });
}
