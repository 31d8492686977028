//! Unprivileged checks of the scenario workloads and of the `Workload`
//! helper: no BPF involved. Each test starts a workload under `reaper`,
//! checks its ready line against `/proc`, finishes it and checks that none
//! of the processes it mentioned is left as a zombie.
//!
//! The host may have unrelated zombies (and other tests run in parallel),
//! so every check is per pid, never a global zombie count.

use std::process::Command;
use std::time::Duration;

use zombie_trace_tests::client::Workload;
use zombie_trace_tests::client::{bin_path, stat, zombies_among};

/// Finishes `w`, asserts a clean exit and that nothing it created is left
/// as a zombie.
fn finish_clean(mut w: Workload) {
    let pids = w.all_pids();
    let status = w.finish();
    assert!(
        status.success(),
        "{} exited with {status}; stderr:\n{}",
        w.name(),
        w.stderr()
    );
    assert!(!w.was_killed(), "{} had to be killed", w.name());
    assert_eq!(zombies_among(&pids), Vec::<u32>::new(), "leftover zombies");
    for p in pids {
        assert!(
            stat(p).is_none_or(|s| s.state != 'Z'),
            "pid {p} of {} is still a zombie",
            w.name()
        );
    }
}

fn ppid(pid: u32) -> Option<u32> {
    stat(pid).and_then(|s| u32::try_from(s.ppid).ok())
}

/// Checks the fields every ready line has.
fn check_common(w: &Workload, name: &str) {
    let j = w.json();
    assert_eq!(j["ready"], true, "{j}");
    assert_eq!(j["workload"], name, "{j}");
    assert!(w.pid() > 0);
    assert_eq!(
        ppid(w.pid()),
        Some(w.reaper_pid()),
        "workload runs under reaper"
    );
}

fn assert_zombies_of(pids: &[u32], parent: u32) {
    for &p in pids {
        let s = stat(p);
        assert!(
            s.is_some_and(|s| s.state == 'Z' && u32::try_from(s.ppid).ok() == Some(parent)),
            "pid {p} should be a zombie child of {parent}: {s:?}"
        );
    }
}

fn assert_gone(pids: &[u32], former_parent: u32) {
    for &p in pids {
        let s = stat(p);
        assert!(
            s.is_none_or(|s| u32::try_from(s.ppid).ok() != Some(former_parent)),
            "pid {p} should be gone: {s:?}"
        );
    }
}

#[test]
fn never_waits() {
    let w = Workload::start("never-waits", &["5"]);
    check_common(&w, "never-waits");
    assert_eq!(w.children().len(), 5);
    assert_zombies_of(&w.children(), w.pid());
    finish_clean(w);
}

#[test]
fn handler_reaps() {
    let w = Workload::start("handler-reaps", &["5"]);
    check_common(&w, "handler-reaps");
    assert_eq!(w.children().len(), 5);
    assert_eq!(w.json()["reaped_by_handler"], 5);
    assert_gone(&w.children(), w.pid());
    finish_clean(w);
}

#[test]
fn uring_reaper() {
    let w = Workload::start("uring-reaper", &["20"]);
    check_common(&w, "uring-reaper");
    assert_eq!(w.children().len(), 20);
    assert_eq!(w.json()["reaped_by_io_uring"], 20);
    assert_gone(&w.children(), w.pid());
    finish_clean(w);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn compat_reaper() {
    let w = Workload::start("compat-reaper", &["10"]);
    check_common(&w, "compat-reaper");
    assert_eq!(w.children().len(), 10);
    assert_eq!(w.json()["reaped_by_compat_syscall"], 10);
    assert_gone(&w.children(), w.pid());
    finish_clean(w);
}

#[test]
fn ignores_sigchld() {
    let w = Workload::start("ignores-sigchld", &["5"]);
    check_common(&w, "ignores-sigchld");
    assert_eq!(w.children().len(), 5);
    assert_gone(&w.children(), w.pid());
    finish_clean(w);
}

#[test]
fn nocldwait() {
    let w = Workload::start("nocldwait", &["5"]);
    check_common(&w, "nocldwait");
    assert_eq!(w.children().len(), 5);
    assert_gone(&w.children(), w.pid());
    finish_clean(w);
}

#[test]
fn threads_only() {
    let w = Workload::start("threads-only", &["4"]);
    check_common(&w, "threads-only");
    assert!(w.children().is_empty());
    let tids = w.pids("threads");
    assert_eq!(tids.len(), 4);
    for t in tids {
        assert_ne!(t, w.pid());
        assert!(
            !std::path::Path::new(&format!("/proc/{}/task/{t}", w.pid())).exists(),
            "thread {t} still exists"
        );
    }
    finish_clean(w);
}

#[test]
fn double_fork() {
    let w = Workload::start("double-fork", &["3"]);
    check_common(&w, "double-fork");
    let (a, b) = (w.children(), w.pids("orphans"));
    assert_eq!((a.len(), b.len()), (3, 3));
    assert_gone(&a, w.pid());
    for p in &b {
        assert!(
            stat(*p).is_none_or(|s| s.state != 'Z'),
            "orphan {p} not reaped"
        );
    }
    finish_clean(w);
}

#[test]
fn subreaper() {
    let w = Workload::start("subreaper", &["4"]);
    check_common(&w, "subreaper");
    let middle = w.json()["middle"]
        .as_u64()
        .and_then(|m| u32::try_from(m).ok());
    assert!(middle.is_some());
    assert_eq!(w.children(), middle.into_iter().collect::<Vec<_>>());
    assert_gone(&w.children(), w.pid());
    let orphans = w.pids("orphans");
    assert_eq!(orphans.len(), 4);
    assert_zombies_of(&orphans, w.pid());
    finish_clean(w);
}

#[test]
fn leaky_then_exit_hands_zombies_to_reaper() {
    let mut w = Workload::start("leaky-then-exit", &["3"]);
    check_common(&w, "leaky-then-exit");
    let children = w.children();
    assert_zombies_of(&children, w.pid());
    w.send_line("exit");
    let status = w.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        w.stderr()
    );
    assert_eq!(zombies_among(&w.all_pids()), Vec::<u32>::new());
    finish_clean(w);
}

#[test]
fn leaky_then_exit_cleans_up_on_eof() {
    let w = Workload::start("leaky-then-exit", &["2"]);
    assert_zombies_of(&w.children(), w.pid());
    finish_clean(w);
}

#[test]
fn delayed_reaper() {
    let w = Workload::start("delayed-reaper", &["3", "40"]);
    check_common(&w, "delayed-reaper");
    assert_eq!(w.json()["delay_ms"], 40);
    let delays: Vec<f64> = w.json()["delays_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default();
    assert_eq!(delays.len(), 3, "{}", w.json());
    assert!(delays.iter().all(|&d| d >= 40.0), "{delays:?}");
    assert_gone(&w.children(), w.pid());
    finish_clean(w);
}

#[test]
fn wait_specific() {
    let w = Workload::start("wait-specific", &["3"]);
    check_common(&w, "wait-specific");
    let children = w.children();
    assert_eq!(children.len(), 4);
    assert_eq!(w.pids("reaped"), children[..1].to_vec());
    assert_eq!(w.pids("pending"), children[1..].to_vec());
    assert_gone(&children[..1], w.pid());
    assert_zombies_of(&children[1..], w.pid());
    finish_clean(w);
}

#[test]
fn default_counts() {
    let w = Workload::start("never-waits", &[]);
    assert_eq!(w.children().len(), 3);
    finish_clean(w);
}

#[test]
fn start_at_with_compile_time_paths() {
    let w = Workload::start_at(
        env!("CARGO_BIN_EXE_reaper"),
        env!("CARGO_BIN_EXE_wait-specific"),
        &["1"],
    );
    assert_eq!(w.pids("pending").len(), 1);
    finish_clean(w);
}

#[test]
fn drop_cleans_up() {
    let (pids, reaper) = {
        let w = Workload::start("never-waits", &["2"]);
        (w.all_pids(), w.reaper_pid())
    };
    assert_eq!(zombies_among(&pids), Vec::<u32>::new());
    assert!(stat(reaper).is_none_or(|s| s.state != 'Z'));
}

#[test]
fn sigterm_to_reaper_is_forwarded() {
    let mut w = Workload::start("subreaper", &["2"]);
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(w.reaper_pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = w.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        w.stderr()
    );
    finish_clean(w);
}

#[test]
fn bad_count_fails_to_start() {
    let r = Workload::try_start_at(
        &bin_path("reaper"),
        &bin_path("never-waits"),
        &["not-a-number"],
    );
    let err = r.err().unwrap_or_default();
    assert!(err.contains("expected a non-negative number"), "{err}");
}

#[test]
fn finish_kills_a_stuck_workload() {
    // A "workload" that prints a ready line and then ignores stdin.
    let mut w = Workload::start_at(
        bin_path("reaper"),
        "/bin/sh",
        &[
            "-c",
            "echo \"{\\\"ready\\\":true,\\\"pid\\\":$$}\"; exec sleep 600",
        ],
    );
    let status = w.finish_with_timeout(Duration::from_millis(200));
    assert!(w.was_killed());
    assert_eq!(status.code(), Some(128 + libc::SIGKILL));
    assert!(stat(w.pid()).is_none_or(|s| s.state != 'Z'));
}

#[test]
fn reaper_propagates_exit_status_and_reaps_orphans() {
    let reaper = bin_path("reaper");
    let st = Command::new(&reaper)
        .args(["/bin/sh", "-c", "exit 7"])
        .status()
        .expect("run reaper");
    assert_eq!(st.code(), Some(7));

    let st = Command::new(&reaper)
        .args(["/bin/sh", "-c", "kill -TERM $$"])
        .status()
        .expect("run reaper");
    assert_eq!(st.code(), Some(128 + libc::SIGTERM));

    // The background job outlives the shell and is reaped by the reaper,
    // which only exits after that.
    let out = Command::new(&reaper)
        .args(["/bin/sh", "-c", "sleep 0.2 & echo $!"])
        .output()
        .expect("run reaper");
    assert!(out.status.success());
    let orphan: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("orphan pid");
    assert!(stat(orphan).is_none_or(|s| s.state != 'Z'));

    let st = Command::new(&reaper)
        .arg("/nonexistent/program")
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run reaper");
    assert_eq!(st.code(), Some(127));
}
