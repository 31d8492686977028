//! Reap latency on the real kernel: workloads with known exit-to-reap
//! delays under the real tracer, measured by the latency view, with exact
//! counts. Run as root, one test at a time: `cargo xtask test`.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;
use zombie_trace::engine::live::Session;
use zombie_trace::host::facts::LiveHost;
use zombie_trace::kernel::tracer::TracerOptions;
use zombie_trace::model::{Change, Ledger, ReapKind};
use zombie_trace::views::latency::{Group, GroupBy, Histogram, LatencyView};
use zombie_trace::views::report::Filter;
use zombie_trace_tests::client::{Workload, bin_path};

/// A session and a latency view (by parent, unfiltered) fed by it.
struct Traced {
    session: Session,
    view: LatencyView,
}

impl Traced {
    fn start() -> Traced {
        Traced {
            session: start_session(TracerOptions::default()),
            view: LatencyView::new(GroupBy::Parent, Filter::default()),
        }
    }

    /// Feeds the view until `done` holds for the ledger (panics after
    /// `TIMEOUT`, with `what`), then for `QUIET` more, so that any extra
    /// release would be counted too.
    async fn until(&mut self, what: &str, done: impl FnMut(&Ledger) -> bool) {
        let view = &mut self.view;
        let mut sink = |change: Change| view.on_change(&change);
        let held = self
            .session
            .run_until_with(TIMEOUT, &mut sink, done)
            .await
            .expect("tracer");
        assert!(held, "timed out waiting for {what}");
        self.session
            .run_until_with(QUIET, &mut sink, |_| false)
            .await
            .expect("tracer");
        assert_eq!(self.session.lost_events(), 0, "no event may be lost");
    }

    fn group(&self, category: ReapKind, pid: u32) -> &Group {
        self.view.find(category, pid).unwrap_or_else(|| {
            panic!(
                "no {} group for pid {pid}; groups: {:?}",
                category.as_str(),
                self.view.groups().collect::<Vec<_>>()
            )
        })
    }

    /// Categories with a group for `pid`.
    fn categories(&self, pid: u32) -> Vec<ReapKind> {
        let mut v: Vec<ReapKind> = self
            .view
            .groups()
            .filter(|g| g.parent.is_some_and(|p| p.pid == pid))
            .map(|g| g.category)
            .collect();
        v.sort();
        v
    }
}

/// Runs workload `name args` under a fresh session and latency view until
/// `done` (then `QUIET` more), and hands both to `check`.
fn scenario(
    name: &str,
    args: &[&str],
    what: &str,
    mut done: impl FnMut(&Ledger, &Workload) -> bool,
    check: impl FnOnce(&mut Traced, &Workload),
) {
    runtime().block_on(async {
        let mut t = Traced::start();
        let workload = Workload::start(name, args);
        t.until(what, |l| done(l, &workload)).await;
        check(&mut t, &workload);
        drop(workload);
    });
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// `count …, p50 … ms, …` for the test log.
fn summary(h: &Histogram) -> String {
    let at = |q| ms(h.percentile(q).unwrap_or(0));
    format!(
        "count {}, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, min {:.3} ms, max {:.3} ms",
        h.count(),
        at(0.5),
        at(0.9),
        at(0.99),
        ms(h.min_ns().unwrap_or(0)),
        ms(h.max_ns().unwrap_or(0))
    )
}

/// The parent reaps each child `delay_ms` after it became a zombie: the
/// median latency is the delay (±10 %), and every reap is counted once.
fn fixed_delay(children: usize, delay_ms: u64) {
    let args = [children.to_string(), delay_ms.to_string()];
    let reaped = |l: &Ledger, w: &Workload| stats(l, w.pid()).reaped == children as u64;
    scenario(
        "delayed-reaper",
        &[&args[0], &args[1]],
        "every delayed reap",
        reaped,
        |t, w| {
            let pid = w.pid();
            let g = t.group(ReapKind::ParentWait, pid);
            let h = &g.latency;
            assert_eq!(h.count(), children as u64, "one latency per child: {h:?}");
            assert_eq!(g.exit_time_unknown, 0);
            assert_eq!(g.comm.as_str_lossy(), "delayed-reaper");
            assert_eq!(
                t.categories(pid),
                [ReapKind::ParentWait],
                "nothing else released its children"
            );
            let p50 = h.percentile(0.5).expect("p50");
            let delay = delay_ms * 1_000_000;
            let seen: Vec<f64> = w.json()["delays_ms"]
                .as_array()
                .expect("delays_ms")
                .iter()
                .filter_map(Value::as_f64)
                .collect();
            eprintln!(
                "delayed-reaper {children} x {delay_ms} ms: {}; the workload measured {seen:?} ms",
                summary(h)
            );
            assert!(
                p50.abs_diff(delay) <= delay / 10,
                "p50 {:.3} ms is not within 10 % of {delay_ms} ms",
                ms(p50)
            );
            // A child is released only after the workload saw it dead and slept.
            assert!(
                h.min_ns().is_some_and(|min| min >= delay),
                "a reap earlier than the delay: min {:?}",
                h.min_ns()
            );
        },
    );
}

#[test]
fn reaps_20ms_after_exit_measure_20ms() {
    if privileged() {
        fixed_delay(10, 20);
    }
}

#[test]
fn reaps_100ms_after_exit_measure_100ms() {
    if privileged() {
        fixed_delay(8, 100);
    }
}

#[test]
fn reaps_500ms_after_exit_measure_500ms() {
    if privileged() {
        fixed_delay(3, 500);
    }
}

#[test]
fn a_sigchld_handler_reaps_in_under_a_millisecond() {
    if !privileged() {
        return;
    }
    let reaped = |l: &Ledger, w: &Workload| stats(l, w.pid()).reaped == 25;
    scenario(
        "handler-reaps",
        &["25"],
        "25 handler reaps",
        reaped,
        |t, w| {
            let h = &t.group(ReapKind::ParentWait, w.pid()).latency;
            assert_eq!(h.count(), 25, "{h:?}");
            let p50 = h.percentile(0.5).expect("p50");
            eprintln!("handler-reaps 25: {}", summary(h));
            assert!(p50 < 1_000_000, "p50 {:.3} ms, want < 1 ms", ms(p50));
            assert_eq!(t.categories(w.pid()), [ReapKind::ParentWait]);
        },
    );
}

#[test]
fn auto_reaped_children_are_their_own_category() {
    if !privileged() {
        return;
    }
    let released = |l: &Ledger, w: &Workload| stats(l, w.pid()).auto_reaped == 25;
    scenario(
        "ignores-sigchld",
        &["25"],
        "25 auto-reaps",
        released,
        |t, w| {
            let g = t.group(ReapKind::AutoReap, w.pid());
            assert_eq!(g.latency.count(), 25, "{g:?}");
            assert_eq!(
                g.latency.max_ns(),
                Some(0),
                "the kernel releases them as they exit"
            );
            assert_eq!(
                t.categories(w.pid()),
                [ReapKind::AutoReap],
                "never mixed with parent reaps"
            );
        },
    );
}

#[test]
fn orphans_reaped_by_the_subreaper_are_adopter_reaps() {
    if !privileged() {
        return;
    }
    let released = |l: &Ledger, w: &Workload| {
        stats(l, w.pid()).reaped == 10 && w.pids("orphans").iter().all(|&o| process(l, o).is_none())
    };
    scenario(
        "double-fork",
        &["10"],
        "the orphans released",
        released,
        |t, w| {
            // The workload reaped its 10 middles itself; the harness adopted and
            // reaped the 10 orphans.
            let (pid, harness) = (w.pid(), w.reaper_pid());
            assert_eq!(t.group(ReapKind::ParentWait, pid).latency.count(), 10);
            assert_eq!(t.categories(pid), [ReapKind::ParentWait]);
            let adopted = t.group(ReapKind::AdopterWait, harness);
            assert_eq!(adopted.latency.count(), 10, "{adopted:?}");
            assert_eq!(t.categories(harness), [ReapKind::AdopterWait]);
        },
    );
}

#[test]
fn a_parent_that_never_reaps_is_not_reaped_yet_not_a_latency() {
    if !privileged() {
        return;
    }
    let owed = |l: &Ledger, w: &Workload| pending(l, w.pid()) == 25;
    scenario("never-waits", &["25"], "25 pending", owed, |t, w| {
        let pid = w.pid();
        assert!(
            t.categories(pid).is_empty(),
            "no latency for unreaped zombies"
        );
        let now = zombie_trace::host::facts::now().expect("clock");
        let ledger = t.session.ledger();
        let report = t
            .view
            .report(ledger, now, 1.0, t.session.lost_by_reason(), &mut LiveHost);
        assert!(report.groups.iter().all(|g| g.pid != Some(pid)));
        let row = report
            .not_reaped
            .iter()
            .find(|r| r.pid == pid)
            .unwrap_or_else(|| panic!("{pid} not listed as not reaped: {report:?}"));
        assert_eq!(row.pending_zombies, 25);
        assert_eq!(row.comm, "never-waits");
        assert!(row.oldest_zombie_age_exact);
        assert!(
            row.oldest_zombie_age_ms >= QUIET.as_millis() as u64,
            "ages count from the exits: {row:?}"
        );
        let text = report.to_text();
        assert!(text.contains("not reaped yet"), "{text}");
    });
}

#[test]
fn zombies_older_than_the_tracer_are_counted_without_a_latency() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let mut workload = Workload::start("never-waits", &["5"]);
        let pid = workload.pid();
        let mut t = Traced::start();
        // Its cleanup reaps the 5 zombies the start-up scan found.
        workload.finish();
        t.until("the old zombies and their parent released", |l| {
            process(l, pid).is_none()
        })
        .await;
        let g = t.group(ReapKind::ParentWait, pid);
        assert_eq!(g.exit_time_unknown, 5, "{g:?}");
        assert_eq!(g.latency.count(), 0, "no latency without an exit time");
        assert_eq!(g.latency.percentile(0.5), None);
    });
}

/// A running `zombie-trace latency`; killed and reaped if a test fails.
pub(crate) struct LatencyCommand {
    child: Option<Child>,
}

impl LatencyCommand {
    /// Starts `zombie-trace latency args` and waits until it says it is
    /// tracing.
    pub(crate) fn start(args: &[&str]) -> LatencyCommand {
        let child = Command::new(bin_path("zombie-trace"))
            .arg("latency")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn zombie-trace latency");
        let mut command = LatencyCommand { child: Some(child) };
        let stderr = command
            .child
            .as_mut()
            .and_then(|c| c.stderr.take())
            .expect("piped stderr");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("latency stderr: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("latency said it is tracing");
            if line.contains("tracing reap latency") {
                return command;
            }
        }
    }

    pub(crate) fn interrupt(&self) {
        if let Some(child) = &self.child {
            // Safety: kill(2) on our own child's PID.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        }
    }

    /// Waits for it to exit cleanly; its standard output.
    pub(crate) fn output(mut self) -> String {
        let child = self.child.take().expect("running");
        let output = child.wait_with_output().expect("wait for zombie-trace");
        assert!(
            output.status.success(),
            "latency failed: {:?}",
            output.status
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for LatencyCommand {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `zombie-trace latency --json --duration 2` while a delayed reaper and a
/// leaker run: the JSON contract, with exact counts.
#[test]
fn latency_command_prints_the_json_contract() {
    if !privileged() {
        return;
    }
    let command = LatencyCommand::start(&["--json", "--duration", "2"]);
    let delayed = Workload::start("delayed-reaper", &["5", "20"]);
    let leaker = Workload::start("never-waits", &["3"]);
    let text = command.output();
    assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
    let json: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["by"], "parent");
    let groups = json["groups"].as_array().expect("groups");
    for g in groups {
        for field in [
            "key", "category", "pid", "comm", "count", "p50_us", "p90_us", "p99_us", "max_us",
            "buckets",
        ] {
            assert!(g.get(field).is_some(), "group misses {field}: {g}");
        }
        let in_buckets: u64 = g["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .map(|b| {
                assert!(b["le_us"].is_u64(), "{b}");
                b["count"].as_u64().expect("bucket count")
            })
            .sum();
        assert_eq!(Some(in_buckets), g["count"].as_u64(), "{g}");
    }
    let mine: Vec<&Value> = groups
        .iter()
        .filter(|g| g["pid"] == delayed.pid())
        .collect();
    assert_eq!(mine.len(), 1, "one group for the delayed reaper: {mine:?}");
    let g = mine[0];
    assert_eq!(g["category"], "parent_wait");
    assert_eq!(g["comm"], "delayed-reaper");
    assert_eq!(g["count"], 5);
    assert_eq!(g["exit_time_unknown"], 0);
    let p50 = g["p50_us"].as_f64().expect("p50_us");
    assert!((p50 - 20_000.0).abs() <= 2_000.0, "p50 {p50} us for 20 ms");
    let max = g["max_us"].as_f64().expect("max_us");
    for q in ["p90_us", "p99_us"] {
        let v = g[q].as_f64().expect(q);
        assert!(p50 <= v && v <= max, "{q} {v} outside [p50, max]: {g}");
    }
    assert_eq!(
        g["key"],
        format!("{}@{}", delayed.pid(), g["start_ticks"]),
        "{g}"
    );

    assert!(groups.iter().all(|g| g["pid"] != leaker.pid()));
    let owed = json["not_reaped"]
        .as_array()
        .expect("not_reaped")
        .iter()
        .find(|p| p["pid"] == leaker.pid())
        .unwrap_or_else(|| panic!("the leaker is not in not_reaped: {json}"));
    assert_eq!(owed["pending_zombies"], 3);
    assert!(owed["oldest_zombie_age_ms"].as_u64().is_some_and(|a| a > 0));
    drop((delayed, leaker));
}

/// Text output, grouped by command, until SIGINT.
#[test]
fn latency_command_prints_bcc_histograms_until_sigint() {
    if !privileged() {
        return;
    }
    let command = LatencyCommand::start(&["--by", "comm", "--comm", "delayed"]);
    let first = Workload::start("delayed-reaper", &["2", "20"]);
    let second = Workload::start("delayed-reaper", &["3", "20"]);
    let other = Workload::start("handler-reaps", &["5"]);
    command.interrupt();
    let text = command.output();
    eprintln!("{text}");
    assert!(text.contains("by comm: 1 groups"), "{text}");
    assert!(text.contains("parent_wait: comm delayed-reaper"), "{text}");
    assert!(
        text.contains("  count 5  p50 "),
        "both parents in one group: {text}"
    );
    assert!(text.contains("     usecs               : count     distribution"));
    assert!(text.contains(
        "     16384 -> 32767      : 5        |****************************************|"
    ));
    assert!(!text.contains("handler-reaps"), "filtered out: {text}");
    drop((first, second, other));
}
