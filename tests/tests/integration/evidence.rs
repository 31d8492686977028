//! Evidence capture end to end: record an incident, then replay it with no
//! privileges into the same views (`report`), also from damaged files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;
use zombie_trace::recording::records::Kind;
use zombie_trace_tests::client::{Workload, bin_path};

fn zombie_trace(args: &[&str]) -> Output {
    Command::new(bin_path("zombie-trace"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run zombie-trace")
}

fn report(file: &Path, args: &[&str]) -> Output {
    let mut all = vec!["report", file.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    zombie_trace(&all)
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// The parent row of `pid` in the last report line.
fn last_report_parent(lines: &[Value], pid: u32) -> Option<Value> {
    let report = lines.iter().rev().find(|l| l["type"] == "report")?;
    report["parents"]
        .as_array()?
        .iter()
        .find(|p| p["pid"] == pid)
        .cloned()
}

/// Waits for a started command, killing it after `timeout`.
fn wait_for(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("zombie-trace did not stop within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn report_json_replays_exactly_what_watch_json_printed_live() {
    if !privileged() {
        return;
    }
    let scratch = Scratch::new();
    let file = scratch.path("incident.ztr");
    let flags = ["--interval", "0.3", "--threshold", "8"];
    // At once: a leak, a handler that reaps, SIG_IGN, and a subreaper that
    // inherits zombies and leaves them.
    let mut workloads = None;
    let live = watch_recorded(&file, &flags, 4, || {
        workloads = Some((
            Workload::start("never-waits", &["12"]),
            Workload::start("handler-reaps", &["10"]),
            Workload::start("ignores-sigchld", &["10"]),
            Workload::start("subreaper", &["9"]),
        ));
    });
    let (leaky, reaping, ignoring, subreaper) = workloads.expect("the workloads started");
    drop((reaping, ignoring));
    let live_lines = json_lines(&live);
    // The story: the leak alerts and is owed 12, the subreaper owes 9,
    // in the live output.
    assert!(
        live_lines
            .iter()
            .any(|l| l["type"] == "alert" && l["parent"]["pid"] == leaky.pid()),
        "live output has the leak's alert"
    );
    let leak = last_report_parent(&live_lines, leaky.pid()).expect("the leak in the last report");
    assert_eq!(leak["pending_zombies"], 12);
    let sub = last_report_parent(&live_lines, subreaper.pid()).expect("the subreaper");
    assert_eq!(sub["pending_zombies"], 9);
    assert_replays_exactly(&file, &flags, &live);
    drop((leaky, subreaper));
}

/// A fork storm recorded as compact events over many chunks (each chunk's
/// deltas start afresh) replays byte for byte, every event the kernel
/// wrote coming back.
#[test]
fn a_recorded_fork_storm_replays_exactly_across_chunks() {
    if !privileged() {
        return;
    }
    let scratch = Scratch::new();
    let file = scratch.path("storm.ztr");
    let flags = ["--interval", "0.5"];
    let mut cycles = 0;
    let mut leaky = None;
    let live = watch_recorded(&file, &flags, 5, || {
        leaky = Some(Workload::start("never-waits", &["5"]));
        let storm = Command::new(bin_path("fork-storm"))
            .args(["2", "1500"])
            .stdin(Stdio::null())
            .output()
            .expect("run fork-storm");
        assert!(storm.status.success(), "fork-storm: {}", storm.status);
        let line: Value = serde_json::from_slice(&storm.stdout).expect("fork-storm's line");
        cycles = line["cycles"].as_u64().expect("cycles");
    });
    assert_replays_exactly(&file, &flags, &live);

    let recording = zombie_trace::recording::container::read_file(&file).expect("read it");
    assert!(recording.damage.is_empty(), "{:?}", recording.damage);
    let kinds = |kind: u8| {
        recording
            .chunks
            .iter()
            .flat_map(|c| &c.records)
            .filter(|r| r.kind == kind)
            .count() as u64
    };
    let compact = kinds(Kind::CompactEvent as u8);
    assert_eq!(kinds(Kind::Event as u8), 0, "every event is compact");
    // Fork, exit, wait and free for each cycle, at least.
    assert!(
        compact >= 4 * cycles,
        "{compact} compact events for {cycles} cycles"
    );
    assert!(
        recording.chunks.len() >= 4,
        "{} chunks for {cycles} cycles",
        recording.chunks.len()
    );
    drop(leaky);
}

/// Runs `watch --json --record FILE FLAGS` for `seconds`, starting
/// `during` once the programs are attached; returns what it printed.
fn watch_recorded(file: &Path, flags: &[&str], seconds: u32, during: impl FnOnce()) -> Vec<u8> {
    let mut watch = Command::new(bin_path("zombie-trace"))
        .args([
            "watch",
            "--json",
            "--duration",
            &seconds.to_string(),
            "--record",
        ])
        .arg(file)
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start watch --record");
    // Read as it comes: a full pipe would block watch.
    let mut stdout = watch.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut live = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut live).map(|_| live)
    });
    // Programs attached (a first report printed) before the workloads start.
    std::thread::sleep(Duration::from_millis(1500));
    during();
    let status = wait_for(&mut watch, Duration::from_secs(20 + u64::from(seconds)));
    assert!(status.success(), "watch --record: {status}");
    reader
        .join()
        .expect("the reader thread")
        .expect("read watch output")
}

/// `report FILE FLAGS --json` prints `live`, byte for byte (times
/// included: they are the recorded clock).
fn assert_replays_exactly(file: &Path, flags: &[&str], live: &[u8]) {
    let replayed = report(
        file,
        &flags.iter().copied().chain(["--json"]).collect::<Vec<_>>(),
    );
    assert!(
        replayed.status.success(),
        "report: {}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let live_lines = json_lines(live);
    let replay_lines = json_lines(&replayed.stdout);
    assert_eq!(
        live_lines.len(),
        replay_lines.len(),
        "as many lines replayed as printed live"
    );
    for (i, (a, b)) in live_lines.iter().zip(&replay_lines).enumerate() {
        assert_eq!(a, b, "line {i} differs");
    }
    assert_eq!(
        String::from_utf8_lossy(live),
        String::from_utf8_lossy(&replayed.stdout)
    );
}

/// Records a never-waiting parent with `record`, killed with SIGKILL after
/// `after`; returns the file and the parent's PID and zombie count.
fn killed_recording(scratch: &Scratch, after: Duration) -> (PathBuf, u32, u64) {
    let file = scratch.path("killed.ztr");
    let mut recorder = Command::new(bin_path("zombie-trace"))
        .arg("record")
        .arg("-o")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start record");
    // It says "recording to FILE" once its programs are attached and /proc
    // is seeded; the leak starts after that, so the recording sees it begin.
    let stderr = recorder.stderr.take().expect("piped stderr");
    let (attached, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            if line.contains("recording to") {
                let _ = attached.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the recorder attached within 30 s");
    std::thread::sleep(Duration::from_millis(1000));
    let leaky = Workload::start("never-waits", &["40"]);
    std::thread::sleep(after);
    recorder.kill().expect("SIGKILL the recorder");
    let _ = recorder.wait();
    let pid = leaky.pid();
    drop(leaky);
    (file, pid, 40)
}

#[test]
fn a_recorder_killed_with_sigkill_leaves_a_file_that_reports_the_leak() {
    if !privileged() {
        return;
    }
    let scratch = Scratch::new();
    let (file, pid, owed) = killed_recording(&scratch, Duration::from_secs(3));
    let out = report(&file, &["--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "report exits 0: {stderr}");
    assert!(
        stderr.contains("without its end mark"),
        "says the recording was cut: {stderr}"
    );
    let lines = json_lines(&out.stdout);
    let row = last_report_parent(&lines, pid).expect("the leaking parent is in the report");
    assert_eq!(row["pending_zombies"], owed, "{row}");
    // Without privileges, elsewhere: the same answer.
    let unprivileged = UnprivilegedBinary::new();
    let copy = unprivileged.dir().join("incident.ztr");
    std::fs::copy(&file, &copy).expect("copy the recording");
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("make it readable");
    let as_nobody = unprivileged
        .command()
        .args(["report", copy.to_str().expect("UTF-8"), "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run report as nobody");
    assert!(
        as_nobody.status.success(),
        "report needs no privileges: {}",
        String::from_utf8_lossy(&as_nobody.stderr)
    );
    assert_eq!(
        as_nobody.stdout, out.stdout,
        "the same lines as root's replay"
    );
    // The text summary names it as the worst parent.
    let text = report(&file, &[]);
    let summary = String::from_utf8_lossy(&text.stdout);
    assert!(
        summary.contains(&format!("pid {pid} (never-waits): peak {owed} zombies")),
        "{summary}"
    );
}

/// A small xorshift generator: the damage is reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn damaged_recordings_never_panic_and_never_hide_the_damage() {
    if !privileged() {
        return;
    }
    let scratch = Scratch::new();
    let (file, _, _) = killed_recording(&scratch, Duration::from_secs(2));
    let intact = std::fs::read(&file).expect("read the recording");
    let reference = report(&file, &["--json"]);
    assert!(reference.status.success());
    let damaged = scratch.path("damaged.ztr");
    let mut rng = Rng(0x5eed_2026_1201);
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for _ in 0..60 {
        let cut = rng.below(intact.len());
        cases.push((format!("cut at byte {cut}"), intact[..cut].to_vec()));
    }
    for _ in 0..60 {
        let mut bytes = intact.clone();
        let flips = 1 + rng.below(4);
        let mut at = Vec::new();
        for _ in 0..flips {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
            at.push(i);
        }
        cases.push((format!("bits flipped at bytes {at:?}"), bytes));
    }
    for (what, bytes) in cases {
        std::fs::write(&damaged, &bytes).expect("write the damaged copy");
        let out = report(&damaged, &["--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{what}: panic: {stderr}");
        match out.status.code() {
            // Damage within the chunks: what is intact is reported, and the
            // damage is said.
            Some(0) => {
                if out.stdout != reference.stdout {
                    assert!(
                        !stderr.trim().is_empty(),
                        "{what}: the output changed but nothing was said about damage"
                    );
                }
            }
            // The file header itself is damaged or cut: one clear line.
            Some(2) => assert_eq!(stderr.trim().lines().count(), 1, "{what}: {stderr}"),
            other => panic!("{what}: exit status {other:?}: {stderr}"),
        }
    }
}

#[test]
fn a_bounded_recording_drops_its_oldest_segments_and_says_so() {
    if !privileged() {
        return;
    }
    let scratch = Scratch::new();
    let file = scratch.path("bounded.ztr");
    let max = 96 * 1024;
    let mut recorder = Command::new(bin_path("zombie-trace"))
        .arg("record")
        .arg("-o")
        .arg(&file)
        .args(["--max-bytes", &max.to_string(), "--duration", "6"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start record");
    std::thread::sleep(Duration::from_millis(1200));
    // Churn: many short lives, so the recording outgrows its bound.
    let churn = Workload::start("churn", &["5", "1"]);
    let status = wait_for(&mut recorder, Duration::from_secs(30));
    drop(churn);
    assert!(status.success(), "record: {status}");
    let size = std::fs::metadata(&file).expect("the recording").len();
    // One segment (a quarter of the bound) may be in progress beyond it.
    assert!(size <= max + max / 2, "{size} bytes for a {max}-byte bound");
    let out = report(&file, &["--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("segments were dropped"),
        "report says the oldest segments were dropped: {stderr}"
    );
    let lines = json_lines(&out.stdout);
    assert!(
        lines.iter().any(|l| l["type"] == "report"),
        "reports replayed"
    );
}

#[test]
fn report_views_as_of_a_time_latency_and_explain() {
    if !privileged() {
        return;
    }
    let scratch = Scratch::new();
    let (file, pid, owed) = killed_recording(&scratch, Duration::from_secs(2));
    // As of the start, before the leak: the parent owes nothing.
    let at_start = report(&file, &["--json", "--at", "0.5s"]);
    assert!(at_start.status.success());
    let lines = json_lines(&at_start.stdout);
    assert!(
        last_report_parent(&lines, pid).is_none(),
        "no leak yet at +0.5 s"
    );
    let latency = report(&file, &["--as", "latency", "--json"]);
    assert!(latency.status.success());
    let latency: Value = serde_json::from_slice(&latency.stdout).expect("latency JSON");
    let row = latency["not_reaped"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["pid"] == pid))
        .expect("the leak is not reaped");
    assert_eq!(row["pending_zombies"], owed);
    let explain = report(&file, &["--as", "explain", &pid.to_string(), "--json"]);
    let stderr = String::from_utf8_lossy(&explain.stderr);
    assert!(explain.status.success(), "{stderr}");
    let explain: Value = serde_json::from_slice(&explain.stdout).expect("explain JSON");
    assert_eq!(explain["verdict"], "never_waits", "{explain}");
    assert_eq!(explain["pending_zombies"], owed);
    // Bad times and views: one line, exit 2.
    for args in [
        &["--at", "yesterday"][..],
        &["--as", "explain"][..],
        &["--as", "histogram"][..],
    ] {
        let out = report(&file, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim().lines().count(),
            1
        );
    }
}

#[test]
fn a_file_that_is_not_a_recording_gets_one_line_and_exit_2() {
    let scratch = Scratch::new();
    let text = scratch.path("notes.txt");
    std::fs::write(&text, "these are my incident notes\n").expect("write");
    let empty = scratch.path("empty.ztr");
    std::fs::write(&empty, b"").expect("write");
    for file in [&text, &empty] {
        let out = report(file, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", file.display());
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("not a zombie-trace recording"), "{stderr}");
    }
    let missing = report(&scratch.path("missing.ztr"), &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("missing.ztr"));
}

#[test]
fn the_html_report_opens_in_a_real_browser_and_the_perfetto_trace_has_every_zombie() {
    if !privileged() {
        return;
    }
    let no_chromium = zombie_trace_tests::chromium::chromium()
        .is_none()
        .then(|| "chromium is not installed (`cargo xtask test` installs it as root)".to_owned());
    if !can_run(no_chromium, None) {
        return;
    }
    let scratch = Scratch::new();
    let (file, pid, owed) = killed_recording(&scratch, Duration::from_secs(2));
    let html = scratch.path("incident.html");
    let trace = scratch.path("incident.trace.json");
    let out = report(
        &file,
        &[
            "--threshold",
            "20",
            "--html",
            html.to_str().expect("UTF-8"),
            "--perfetto",
            trace.to_str().expect("UTF-8"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).expect("the HTML page");
    assert!(
        !page.contains("<script src") && !page.contains("<link"),
        "self-contained"
    );
    let screenshot = scratch.path("incident.png");
    let load = zombie_trace_tests::chromium::load(&html, &screenshot)
        .unwrap_or_else(|e| panic!("chromium could not load the page: {e}"));
    assert!(
        load.console_errors.is_empty(),
        "console errors: {:?}",
        load.console_errors
    );
    assert!(load.dom.contains("<svg"), "the timeline is an SVG");
    assert!(load.dom.contains("<polyline"), "with a line per parent");
    assert!(
        load.dom.contains(&format!("{pid}")) && load.dom.contains("never-waits"),
        "the page names the leaking parent"
    );
    assert!(load.screenshot_bytes > 10_000, "a screenshot was taken");
    // Perfetto: one async slice per zombie of the leak, still open at the end.
    let trace: Value =
        serde_json::from_slice(&std::fs::read(&trace).expect("the trace")).expect("trace JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let begins = events
        .iter()
        .filter(|e| e["ph"] == "b" && e["pid"] == pid)
        .count() as u64;
    assert_eq!(begins, owed, "one slice per zombie of PID {pid}");
    assert!(
        events.iter().any(|e| e["ph"] == "C" && e["pid"] == pid),
        "a counter track of its pending zombies"
    );
}
