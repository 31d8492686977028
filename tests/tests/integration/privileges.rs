//! Least privilege, measured: the live commands run as a non-root user
//! holding only the capabilities the README's "Privileges" section lists,
//! and without any one of them say which, in one line.
//!
//! The user is switched with util-linux's `setpriv`, which execs the command
//! (no process of its own): uid and gid 65534, no supplementary groups, and
//! the capabilities in the inheritable, ambient and bounding sets, so that
//! they survive the exec into zombie-trace as its effective set and nothing
//! else can be gained. The leaker runs as root: the tracer sees every user's
//! processes.

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::*;
use crate::serve::{Serve, sample};
use zombie_trace_tests::client::{Workload, bin_path};

/// What a non-root user needs for `watch`, `serve`, `record` and `run`, as
/// setpriv spells each capability and as zombie-trace names it: loading
/// and attaching the programs, and reading tracefs (mode 0700, owned by
/// uid 0) for the tracepoint formats and ids.
const NON_ROOT_SET: [(&str, &str); 3] = [
    ("bpf", "CAP_BPF"),
    ("perfmon", "CAP_PERFMON"),
    ("dac_read_search", "CAP_DAC_READ_SEARCH"),
];

/// What uid 0 needs (the DaemonSet's identity): tracefs is its own.
const ROOT_SET: [(&str, &str); 2] = [("bpf", "CAP_BPF"), ("perfmon", "CAP_PERFMON")];

/// The privileged tests here also need root (to switch users), setpriv, and
/// tracefs mounted, as the systemd unit and the DaemonSet have it.
fn can_switch_users() -> bool {
    if !privileged() {
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    let not_root = (unsafe { libc::geteuid() } != 0)
        .then(|| "switching to another user with setpriv needs root".to_owned());
    let no_setpriv = Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
        .then(|| {
            "setpriv is not installed (util-linux; `cargo xtask test` installs it)".to_owned()
        });
    if !can_run(not_root.or(no_setpriv), None) {
        return false;
    }
    mount_tracefs();
    true
}

/// Mounts tracefs where the systemd unit's ExecStartPre does, unless one is
/// mounted: a non-root tracer cannot mount it, and must not have to.
fn mount_tracefs() {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
    if mounts
        .lines()
        .any(|l| l.split(' ').nth(2) == Some("tracefs"))
    {
        return;
    }
    let status = Command::new("mount")
        .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
        .status()
        .expect("run mount");
    assert!(status.success(), "mounting tracefs failed: {status}");
}

/// A command running `binary` as `uid` (with its gid) with exactly `caps`
/// (setpriv's names); the caller adds zombie-trace's arguments.
fn with_caps(binary: &Path, uid: u32, caps: &[&str]) -> Command {
    let sets: String = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|cap| format!("+{cap}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg(format!("--inh-caps={sets}"))
        .arg(format!("--ambient-caps={sets}"))
        .arg(format!("--bounding-set={sets}"))
        .arg("--")
        .arg(binary)
        .stdin(Stdio::null());
    command
}

/// A directory in `scratch` the unprivileged user may write recordings into.
fn writable_by_nobody(scratch: &Scratch) -> std::path::PathBuf {
    let dir = scratch.path("recordings");
    std::fs::create_dir(&dir).expect("create the recordings directory");
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown it to nobody");
    dir
}

fn names(set: &[(&'static str, &'static str)]) -> Vec<&'static str> {
    set.iter().map(|(setpriv_name, _)| *setpriv_name).collect()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `watch --json` for a moment: the leaker's row must say it owes `owed`.
fn watch_names(mut zombie_trace: Command, leaker: &Workload, owed: u64, who: &str) {
    let output = zombie_trace
        .args(["watch", "--json", "--duration", "1.5", "--interval", "0.5"])
        .output()
        .expect("run watch");
    assert!(output.status.success(), "watch as {who}: {}", text(&output));
    let names_it = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["type"] == "report")
        .any(|report| {
            report["parents"].as_array().is_some_and(|parents| {
                parents
                    .iter()
                    .any(|p| p["pid"] == leaker.pid() && p["pending_zombies"] == owed)
            })
        });
    assert!(
        names_it,
        "watch as {who} never named PID {} owing {owed}: {}",
        leaker.pid(),
        text(&output)
    );
}

/// A never-waiting parent (run by root) owes 3 zombies; a user who is not
/// root and holds only CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH finds
/// it with each live command: `watch` lists it, `serve` exports it, `record`
/// keeps it for `report`, and `run` fails a command whose tree leaks.
#[test]
fn a_user_with_only_the_listed_capabilities_finds_the_leak_with_every_live_command() {
    if !can_switch_users() {
        return;
    }
    let binary = UnprivilegedBinary::new();
    let caps = names(&NON_ROOT_SET);
    let as_user = || with_caps(binary.path(), NOBODY, &caps);
    let leaker = Workload::start("never-waits", &["3"]);
    let who = "uid 65534 with CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH";

    watch_names(as_user(), &leaker, 3, who);

    let serve = Serve::start_with(as_user(), &[]);
    let (metrics, _) = serve.scrape();
    let labels = format!("pid=\"{}\",comm=\"never-waits\"", leaker.pid());
    assert_eq!(
        sample(&metrics, "zombietrace_parent_pending_zombies", &labels),
        Some(3.0),
        "serve as {who} exports the leaker:\n{metrics}"
    );
    // Attached, it has given up what only attaching needed, and passes no
    // capability on.
    let status = std::fs::read_to_string(format!("/proc/{}/status", serve.pid()))
        .expect("serve's /proc status");
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no {field} in serve's status:\n{status}"))
    };
    let (bpf, perfmon) = (1u64 << 39, 1u64 << 38);
    assert_eq!(
        (mask("CapEff:"), mask("CapPrm:"), mask("CapAmb:")),
        (bpf | perfmon, bpf | perfmon, 0),
        "serve keeps CAP_BPF and CAP_PERFMON only once attached:\n{status}"
    );
    drop(serve);

    let scratch = Scratch::new();
    let recording = writable_by_nobody(&scratch).join("leak.ztr");
    let output = as_user()
        .args(["record", "--duration", "1.5", "-o"])
        .arg(&recording)
        .output()
        .expect("run record");
    assert!(
        output.status.success(),
        "record as {who}: {}",
        text(&output)
    );
    let report = Command::new(bin_path("zombie-trace"))
        .arg("report")
        .arg(&recording)
        .output()
        .expect("run report");
    let summary = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.status.success() && summary.contains(&format!("pid {} (never-waits)", leaker.pid())),
        "the recording made as {who} names the leaker: {}",
        text(&report)
    );
    drop(leaker);

    // The exec'd `sleep 1.5` never waits for its `sleep 0.2`: run's own
    // leaker, reaped by run (a subreaper) once the tree is done.
    let output = as_user()
        .args(["run", "--grace", "0.3s", "--"])
        .args(["sh", "-c", "sleep 0.2 & exec sleep 1.5"])
        .output()
        .expect("run run");
    let verdict = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code() == Some(86)
            && verdict.contains("unreaped: PID")
            && verdict.contains("(sleep) held 1 zombies"),
        "run as {who} fails the leaking tree (exit 86) and names its parent: {}",
        text(&output)
    );
}

/// Without any one of the capabilities, each live command refuses: a
/// non-zero exit status and one line on stderr naming the one missing.
#[test]
fn without_any_one_listed_capability_each_live_command_names_it_in_one_line() {
    if !can_switch_users() {
        return;
    }
    let binary = UnprivilegedBinary::new();
    let scratch = Scratch::new();
    let recording = writable_by_nobody(&scratch).join("refused.ztr");
    let commands: [(&str, Vec<&str>); 4] = [
        ("watch", vec!["watch", "--duration", "1"]),
        (
            "serve",
            vec!["serve", "--listen", "127.0.0.1:0", "--duration", "1"],
        ),
        (
            "record",
            vec![
                "record",
                "--duration",
                "1",
                "-o",
                recording.to_str().expect("a UTF-8 temp path"),
            ],
        ),
        ("run", vec!["run", "--", "true"]),
    ];
    for (dropped, name) in NON_ROOT_SET {
        let caps: Vec<&str> = names(&NON_ROOT_SET)
            .into_iter()
            .filter(|cap| *cap != dropped)
            .collect();
        for (command, args) in &commands {
            let output = with_caps(binary.path(), NOBODY, &caps)
                .args(args)
                .output()
                .expect("run zombie-trace");
            let stderr = String::from_utf8_lossy(&output.stderr);
            let context = format!("{command} without {name}: {}", text(&output));
            assert!(
                !output.status.success() && output.status.signal().is_none(),
                "{context}"
            );
            if *command == "run" {
                assert_eq!(
                    output.status.code(),
                    Some(125),
                    "run's own failure: {context}"
                );
            }
            assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {context}");
            assert!(
                stderr.contains(&format!("missing: {name})")),
                "the line names {name}, and only it: {context}"
            );
            assert!(output.stdout.is_empty(), "{context}");
        }
    }
}

/// Root needs no CAP_DAC_READ_SEARCH, as tracefs is its own: with only
/// CAP_BPF and CAP_PERFMON (the DaemonSet's set, where Kubernetes gives
/// added capabilities to uid 0 only) `watch` finds the leak.
#[test]
fn root_with_only_cap_bpf_and_cap_perfmon_finds_the_leak() {
    if !can_switch_users() {
        return;
    }
    let leaker = Workload::start("never-waits", &["2"]);
    let as_root = with_caps(&bin_path("zombie-trace"), 0, &names(&ROOT_SET));
    watch_names(as_root, &leaker, 2, "uid 0 with CAP_BPF, CAP_PERFMON");
}
