//! Diagnosis on the real kernel: why a parent leaks, what to do, when the
//! PID space runs out.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use zombie_trace::engine::explain::explain_proc_only;
use zombie_trace::engine::live::Session;
use zombie_trace::host::facts::{LiveHost, now};
use zombie_trace::host::procfs::boot_time_now_ns;
use zombie_trace::kernel::tracer::TracerOptions;
use zombie_trace::views::diagnosis::{Diagnosis, GrowthTracker, diagnose};
use zombie_trace_tests::client::{Workload, bin_path};

fn diagnosis(session: &Session, pid: u32) -> Diagnosis {
    let now = now().expect("clock");
    diagnose(session.ledger(), pid, true, None, now, &mut LiveHost)
        .unwrap_or_else(|| panic!("no diagnosis for PID {pid}"))
}

fn step<'a>(d: &'a Diagnosis, action: &str) -> &'a zombie_trace::views::diagnosis::Step {
    d.remediation
        .iter()
        .find(|s| s.action.contains(action))
        .unwrap_or_else(|| panic!("no remediation step `{action}` in {:#?}", d.remediation))
}

/// Runs the session until `pid` owes `n` zombies.
async fn until_pending(session: &mut Session, pid: u32, n: u32) {
    let seen = session
        .run_until(TIMEOUT, |l| pending(l, pid) == n)
        .await
        .expect("tracer");
    assert!(
        seen,
        "PID {pid}: expected {n} pending, got {:?}",
        stats(session.ledger(), pid)
    );
}

#[test]
fn a_parent_without_handler_or_waits_never_waits() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let mut session = start_session(TracerOptions::default());
        let workload = Workload::start("never-waits", &["10"]);
        until_pending(&mut session, workload.pid(), 10).await;
        let d = diagnosis(&session, workload.pid());
        assert_eq!(d.verdict, "never_waits", "{}", d.summary);
        assert_eq!(d.sigchld.action, "default");
        assert_eq!(d.waits.as_ref().map(|w| w.calls), Some(0));
        assert!(!step(&d, "kill -9").works, "zombies cannot be killed");
        assert!(!step(&d, "kill -CHLD").works, "no handler to run");
        assert!(!step(&d, "waitpid() from another process").works);
        assert!(step(&d, "fix the parent").works);
        assert!(d.remediation[0].works, "what works comes first");
    });
}

#[test]
fn a_parent_that_waits_for_one_child_is_diagnosed_as_such() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let mut session = start_session(TracerOptions::default());
        let workload = Workload::start("wait-specific", &["6"]);
        until_pending(&mut session, workload.pid(), 6).await;
        let d = diagnosis(&session, workload.pid());
        assert_eq!(d.verdict, "waits_for_specific_child", "{}", d.summary);
        let waits = d.waits.as_ref().expect("live wait behaviour");
        assert_eq!((waits.specific, waits.any, waits.reaped), (1, 0, 1));
        let first = workload.pids("reaped")[0];
        assert_eq!(waits.last_specific_target, Some(first as i32));
    });
}

#[test]
fn a_removed_sigchld_handler_is_shown_with_its_time() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let mut session = start_session(TracerOptions::default());
        let workload = Workload::start("handler-removed", &["5", "7"]);
        until_pending(&mut session, workload.pid(), 7).await;
        let d = diagnosis(&session, workload.pid());
        assert_eq!(d.verdict, "handler_removed", "{}", d.summary);
        let change = d
            .sigchld
            .last_change
            .as_ref()
            .expect("the change is recorded");
        assert_eq!(
            (change.from, change.to, change.cause),
            ("handler", "default", "rt_sigaction")
        );
        let json = workload.json();
        let before = json["removed_before_ns"]
            .as_u64()
            .expect("removed_before_ns");
        let after = json["removed_after_ns"].as_u64().expect("removed_after_ns");
        assert!(
            (before..=after).contains(&change.at_boot_ns),
            "removal traced at {} ns, the workload removed it between {before} and {after}",
            change.at_boot_ns
        );
        assert!(
            d.summary.contains("removed its SIGCHLD handler"),
            "{}",
            d.summary
        );
        assert_eq!(stats(session.ledger(), workload.pid()).reaped, 5);
    });
}

#[test]
fn a_subreaper_that_never_reaps_is_the_one_that_must_reap() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let mut session = start_session(TracerOptions::default());
        let workload = Workload::start("subreaper", &["6"]);
        until_pending(&mut session, workload.pid(), 6).await;
        let d = diagnosis(&session, workload.pid());
        assert_eq!(d.verdict, "adopter_does_not_reap", "{}", d.summary);
        assert_eq!(d.process.subreaper, Some(true));
        // Asked about one of the orphans, zombie-trace names the subreaper.
        let orphan = workload.pids("orphans")[0];
        let e = explain_proc_only(orphan, None).expect("explain an orphan");
        assert!(e.target_is_zombie);
        assert_eq!(
            e.diagnosis.pid,
            workload.pid(),
            "the subreaper must reap {orphan}"
        );
    });
}

#[test]
fn a_pid_namespace_init_that_never_reaps_is_the_one_that_must_reap() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let mut session = start_session(TracerOptions::default());
        let workload = Workload::start("pidns-init", &["5"]);
        let init = workload.json()["ns_init"].as_u64().expect("ns_init") as u32;
        until_pending(&mut session, init, 5).await;
        let d = diagnosis(&session, init);
        assert_eq!(d.verdict, "adopter_does_not_reap", "{}", d.summary);
        assert!(d.process.pid_ns_init);
        // Both PIDs: the host's, and 1 inside its namespace.
        assert_eq!(d.process.pid_in_namespace, Some(1), "{:?}", d.process);
        assert!(
            d.to_text().starts_with(&format!("PID {init} ("))
                && d.to_text().contains(", PID 1 in its namespace)"),
            "{}",
            d.to_text()
        );
        assert!(d.summary.contains("PID namespace"), "{}", d.summary);
        let restart = step(&d, "restart");
        assert!(
            !restart.works,
            "restarting a namespace init kills the namespace: {restart:?}"
        );
    });
}

/// A cgroup with a pids.max, removed again on drop.
struct PidsCgroup {
    dir: PathBuf,
}

impl PidsCgroup {
    fn create(limit: u64) -> PidsCgroup {
        let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
        let v1 = mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && f[2] == "cgroup" && f[3].split(',').any(|o| o == "pids"))
                .then(|| PathBuf::from(f[1]))
        });
        let v2 = mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        });
        let root = match (v1, v2) {
            (Some(v1), _) => v1,
            (None, Some(v2)) => {
                // cgroup v2: the pids controller must be enabled for children.
                let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+pids");
                v2
            }
            (None, None) => panic!("no cgroup hierarchy with the pids controller"),
        };
        let dir = root.join(format!("zombie-trace-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        std::fs::write(dir.join("pids.max"), limit.to_string()).expect("pids.max");
        PidsCgroup { dir }
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).expect("cgroup.procs");
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove {}", self.dir.display());
    }
}

#[test]
fn the_forecast_for_a_steady_leak_is_within_twenty_percent() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        const LIMIT: u64 = 200;
        const RATE: &str = "50";
        let cgroup = PidsCgroup::create(LIMIT);
        let mut session = start_session(TracerOptions::default());
        let mut workload = Workload::start("steady-leaker", &[RATE]);
        let pid = workload.pid();
        cgroup.add(pid);
        workload.send_line("go");
        // Watch the leak for 2 s, sampling growth like `watch` does.
        let mut growth = GrowthTracker::default();
        let started = tokio::time::Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            session
                .run_for(Duration::from_millis(100))
                .await
                .expect("tracer");
            growth.sample(session.ledger(), boot_time_now_ns().expect("clock"));
        }
        let now = now().expect("clock");
        let d = diagnose(
            session.ledger(),
            pid,
            true,
            Some(&growth),
            now,
            &mut LiveHost,
        )
        .expect("diagnosis");
        let forecast = d
            .forecast
            .as_ref()
            .unwrap_or_else(|| panic!("no forecast: {d:#?}"));
        assert_eq!(
            d.pressure.limit,
            zombie_trace::host::pressure::Limit::CgroupPidsMax,
            "{:?}",
            d.pressure
        );
        let line = workload
            .next_line(Duration::from_secs(30))
            .expect("the leaker reports when fork fails");
        let report: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(report["limit_reached"], true, "{report}");
        let hit = report["at_ns"].as_u64().expect("at_ns");
        let actual = hit.saturating_sub(now.boot_ns) as f64 / 1e9;
        let error = (forecast.seconds - actual).abs() / actual;
        eprintln!(
            "forecast {:.3} s, actual {actual:.3} s ({:.1}% off), rate {:?}/s, headroom {}",
            forecast.seconds,
            error * 100.0,
            d.growth_per_s,
            d.pressure.headroom
        );
        assert!(
            error <= 0.2,
            "forecast {:.2} s, actual {actual:.2} s ({:.0}% off); rate {:?}/s",
            forecast.seconds,
            error * 100.0,
            d.growth_per_s
        );
        drop(workload);
        drop(cgroup);
    });
}

#[test]
fn explain_works_without_privileges_and_says_so() {
    let leaker = Workload::start("never-waits", &["4"]);
    let binary = UnprivilegedBinary::new();
    let output = binary
        .command()
        .args(["explain", &leaker.pid().to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run explain");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "explain failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("/proc only"),
        "must say it is /proc-only: {stdout}"
    );
    assert!(stdout.contains("4 pending zombies"), "{stdout}");
    assert!(stdout.contains("no SIGCHLD handler"), "{stdout}");
}

#[test]
fn explain_rejects_bad_pids_with_exit_2() {
    for arg in ["abc", "0", "-1", "2147483648"] {
        let output = Command::new(bin_path("zombie-trace"))
            .args(["explain", arg])
            .stdin(Stdio::null())
            .output()
            .expect("run explain");
        assert_eq!(output.status.code(), Some(2), "explain {arg}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("is not a PID"), "explain {arg}: {stderr}");
    }
    // A PID nobody has: the largest pid_max allows is free on any sane host.
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").expect("pid_max");
    let unused = (pid_max.trim().parse::<u32>().expect("number") - 1).to_string();
    if !std::path::Path::new(&format!("/proc/{unused}")).exists() {
        let output = Command::new(bin_path("zombie-trace"))
            .args(["explain", &unused])
            .stdin(Stdio::null())
            .output()
            .expect("run explain");
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("no process with PID"), "{stderr}");
    }
}

#[test]
fn explain_as_root_traces_live() {
    if !privileged() {
        return;
    }
    let leaker = Workload::start("never-waits", &["3"]);
    let output = Command::new(bin_path("zombie-trace"))
        .args([
            "explain",
            "--json",
            "--observe",
            "1",
            &leaker.pid().to_string(),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run explain");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let e: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(e["mode"], "live");
    assert_eq!(e["pid"], leaker.pid());
    assert_eq!(e["pending_zombies"], 3);
    assert_eq!(e["verdict"], "never_waits");
    assert!(e["remediation"].as_array().is_some_and(|r| !r.is_empty()));
}
