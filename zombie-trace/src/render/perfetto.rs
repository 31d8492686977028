//! The timeline as a Chrome trace-event JSON file (the "JSON Object Format"),
//! which ui.perfetto.dev and chrome://tracing open: for the reviewer who
//! wants to zoom into single zombies, which the HTML page only summarises.
//!
//! Layout: a "host" process (pid 0, never a parent of zombies) with the
//! host-wide counters and the markers that concern no process; one process
//! per parent (worst first) with its pending-zombies counter, one async
//! slice per zombie lifetime and the markers that concern it.
//!
//! Timestamps are microseconds since the start of the recording on the boot
//! clock, which never jumps; the wall clock of the start is in `otherData`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::views::timeline::{MarkerKind, Moment, Timeline};

/// The track of everything host-wide. PID 0 is the idle task: it never
/// appears as a parent of zombies, so it cannot collide with a parent track.
const HOST_PID: u32 = 0;

/// Category of the zombie slices: with the id, what pairs a "b" with its "e".
const ZOMBIE_CAT: &str = "zombie";

/// The trace for a timeline, as `{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}`.
pub fn render(t: &Timeline) -> Value {
    let ts = |m: Moment| micros_since(t.start, m);
    let end_ts = ts(t.end);
    let mut events: Vec<Value> = Vec::new();

    // Process tracks: the host, the parents (worst first), then any other
    // process a zombie or marker names.
    let mut names: BTreeMap<u32, (String, i64)> = BTreeMap::new();
    names.insert(HOST_PID, (format!("host {}", t.hostname), -1));
    for (i, p) in t.parents.iter().enumerate() {
        // A PID reused by a second parent during the recording shares the
        // first one's track: the trace format knows processes by PID only.
        names.entry(p.pid).or_insert_with(|| {
            let place = p
                .runs_in
                .as_deref()
                .map_or_else(String::new, |place| format!(", {place}"));
            (format!("pid {} ({}{place})", p.pid, p.comm), i as i64)
        });
    }
    let others = t.parents.len() as i64;
    for z in &t.zombies {
        names
            .entry(z.parent_pid)
            .or_insert_with(|| (format!("pid {} ({})", z.parent_pid, z.parent_comm), others));
    }
    for m in &t.markers {
        if let Some(pid) = m.pid {
            names
                .entry(pid)
                .or_insert_with(|| (format!("pid {pid}"), others));
        }
    }
    for (pid, (name, order)) in &names {
        events.push(json!({
            "ph": "M", "name": "process_name", "pid": pid, "tid": pid, "ts": 0,
            "args": {"name": name},
        }));
        events.push(json!({
            "ph": "M", "name": "process_sort_index", "pid": pid, "tid": pid, "ts": 0,
            "args": {"sort_index": order},
        }));
    }

    counters(t, &mut events);

    for (k, z) in t.zombies.iter().enumerate() {
        // Lifetimes overlap, so they are async slices told apart by id
        // (nested "B"/"E" on one thread could not express that).
        let id = format!("0x{:x}", k + 1);
        let begin = ts(z.exit_at);
        events.push(json!({
            "ph": "b", "cat": ZOMBIE_CAT, "name": "zombie", "id": id,
            "pid": z.parent_pid, "tid": z.parent_pid, "ts": begin,
            "args": {"pid": z.pid, "exit_time_exact": z.exit_time_exact},
        }));
        let end_args = match (&z.released_at, &z.how) {
            (Some(_), how) => json!({"released": how.as_deref().unwrap_or("unknown")}),
            (None, _) => {
                json!({"still_pending": true, "status": "still pending at the end of the recording"})
            }
        };
        // Never before the begin: a damaged recording must still nest.
        let end = z.released_at.map_or(end_ts, ts).max(begin);
        events.push(json!({
            "ph": "e", "cat": ZOMBIE_CAT, "name": "zombie", "id": id,
            "pid": z.parent_pid, "tid": z.parent_pid, "ts": end,
            "args": end_args,
        }));
    }

    for m in &t.markers {
        let (pid, scope) = match m.pid {
            Some(pid) => (pid, "p"),
            None => (HOST_PID, "g"),
        };
        events.push(json!({
            "ph": "i", "s": scope, "cat": "marker",
            "name": format!("{}: {}", kind_name(m.kind), clip(&m.text, 100)),
            "pid": pid, "tid": pid, "ts": ts(m.at),
            "args": {"kind": m.kind, "text": m.text, "unix_ms": m.at.unix_ms()},
        }));
    }

    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "tool": "zombie-trace",
            "hostname": t.hostname,
            "kernel": t.kernel,
            "pid_max": t.pid_max,
            "threads_max": t.threads_max,
            "start_unix_ms": t.start.unix_ms(),
            "end_unix_ms": t.end.unix_ms(),
            "zombies_truncated": t.zombies_truncated,
            "notes": t.notes,
        },
    })
}

/// Counter tracks from the samples. A counter holds its value until the
/// next event, so only changes are written (and the last sample, so the
/// track reaches the end): a flat hour costs nothing.
fn counters(t: &Timeline, events: &mut Vec<Value>) {
    // Samples whose time runs backwards (a damaged recording) are skipped:
    // a counter track must go forward.
    let mut ordered = Vec::with_capacity(t.samples.len());
    let mut last_boot = 0;
    for s in &t.samples {
        if s.at.boot_ns >= last_boot {
            ordered.push(s);
            last_boot = s.at.boot_ns;
        }
    }
    let n = ordered.len();
    // (pid, name, key) → last value written.
    let mut last: BTreeMap<(u32, &str, &str), f64> = BTreeMap::new();
    let mut push = |events: &mut Vec<Value>,
                    i: usize,
                    pid: u32,
                    name: &'static str,
                    key: &'static str,
                    v: f64| {
        if last.get(&(pid, name, key)) == Some(&v) && i + 1 != n {
            return;
        }
        last.insert((pid, name, key), v);
        events.push(json!({
            "ph": "C", "name": name, "pid": pid, "tid": pid,
            "ts": micros_since(t.start, ordered[i].at),
            "args": {key: v},
        }));
    };
    for (i, s) in ordered.iter().enumerate() {
        let mut seen = Vec::with_capacity(t.parents.len());
        for (k, p) in t.parents.iter().enumerate() {
            // Same-PID parents share a track: only the first writes to it.
            if seen.contains(&p.pid) {
                continue;
            }
            seen.push(p.pid);
            if let Some(v) = s.per_parent.get(k) {
                push(events, i, p.pid, "zombies", "pending", f64::from(*v));
            }
        }
        push(
            events,
            i,
            HOST_PID,
            "pending zombies",
            "all parents",
            s.pending_total as f64,
        );
        if let Some(tasks) = s.tasks {
            push(events, i, HOST_PID, "tasks", "tasks", tasks as f64);
        }
        if let Some(c) = &s.pids_cgroup {
            push(
                events,
                i,
                HOST_PID,
                "cgroup pids",
                "current",
                c.current as f64,
            );
            push(events, i, HOST_PID, "cgroup pids.max", "max", c.max as f64);
        }
    }
}

/// Microseconds from the start of the recording, on the boot clock; events
/// before the start (zombies already dead then) are put at the start.
fn micros_since(start: Moment, m: Moment) -> f64 {
    m.boot_ns.saturating_sub(start.boot_ns) as f64 / 1000.0
}

fn kind_name(k: MarkerKind) -> &'static str {
    match k {
        MarkerKind::Alert => "alert",
        MarkerKind::SigchldChange => "SIGCHLD change",
        MarkerKind::EventsLost => "events lost",
        MarkerKind::Resync => "resync",
        MarkerKind::Gap => "gap in recording",
    }
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::render::html::fixtures::*;
    use crate::views::timeline::Timeline;

    /// Renders, writes out as text and parses back: what a viewer gets.
    fn events(t: &Timeline) -> Vec<Value> {
        let text = render(t).to_string();
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["displayTimeUnit"], "ms");
        v["traceEvents"].as_array().expect("traceEvents").clone()
    }

    /// What every trace must be: the fields viewers need on every event,
    /// every async slice closed after it opened, counters going forward.
    fn assert_well_formed(events: &[Value]) {
        let mut open: HashMap<(String, String), f64> = HashMap::new();
        let mut counter_ts: HashMap<(u64, String), f64> = HashMap::new();
        for e in events {
            let ph = e["ph"].as_str().expect("ph");
            let ts = e["ts"].as_f64().expect("ts");
            let pid = e["pid"].as_u64().expect("pid");
            assert!(ts >= 0.0);
            match ph {
                "b" | "e" => {
                    let key = (
                        e["cat"].as_str().expect("cat").to_string(),
                        e["id"].as_str().expect("id").to_string(),
                    );
                    if ph == "b" {
                        assert!(open.insert(key, ts).is_none(), "id reused");
                    } else {
                        let begin = open.remove(&key).expect("e without b");
                        assert!(ts >= begin, "ends before it begins");
                    }
                }
                "C" => {
                    let key = (pid, e["name"].as_str().expect("name").to_string());
                    let prev = counter_ts.insert(key, ts).unwrap_or(0.0);
                    assert!(ts >= prev, "counter goes back in time");
                    assert!(e["args"].as_object().is_some_and(|a| a.len() == 1));
                }
                "i" => assert!(matches!(e["s"].as_str(), Some("p" | "g"))),
                "M" => assert!(e["args"].is_object()),
                other => panic!("unexpected phase {other}"),
            }
        }
        assert!(open.is_empty(), "unclosed slices: {}", open.len());
    }

    #[test]
    fn three_day_incident_trace() {
        let t = three_day_incident();
        let ev = events(&t);
        assert_well_formed(&ev);
        let names: Vec<&str> = ev
            .iter()
            .filter(|e| e["name"] == "process_name")
            .filter_map(|e| e["args"]["name"].as_str())
            .collect();
        // The leaker's track says where it ran.
        assert!(
            names.contains(
                &"pid 4242 (leaky-worker, container 4c1f09a2b7d3 (containerd) in pod 7e0b1a52-93c4-4d1e-8f6a-2b9c0d3e4f51 (burstable))"
            ),
            "{names:?}"
        );
        assert!(names.contains(&"pid 2020 (cron)"));
        assert!(names.contains(&"host app-17.prod.example"));

        // One slice per zombie; the never-released end with the recording.
        let begins = ev.iter().filter(|e| e["ph"] == "b").count();
        assert_eq!(begins, t.zombies.len());
        let end_ts = micros_since(t.start, t.end);
        let pending: Vec<&Value> = ev
            .iter()
            .filter(|e| e["ph"] == "e" && e["args"]["still_pending"] == true)
            .collect();
        assert_eq!(pending.len(), 500);
        assert!(
            pending
                .iter()
                .all(|e| e["ts"].as_f64() == Some(end_ts) && e["pid"] == LEAKER)
        );
        assert!(
            ev.iter()
                .any(|e| e["ph"] == "e" && e["args"]["released"] == "parent_wait")
        );

        // Counters: the leaker's last value, and only changes for the idle cron.
        let leaker: Vec<&Value> = ev
            .iter()
            .filter(|e| e["ph"] == "C" && e["pid"] == LEAKER)
            .collect();
        let last = leaker.last().expect("leaker counter");
        assert_eq!(last["args"]["pending"], f64::from(LEAKER_END));
        assert_eq!(last["ts"].as_f64(), Some(end_ts));
        let cron = ev
            .iter()
            .filter(|e| e["ph"] == "C" && e["pid"] == 2020)
            .count();
        assert!(
            cron < 100,
            "{cron} counter events for a parent idle most of 3 days"
        );
        assert!(ev.iter().any(|e| e["ph"] == "C" && e["name"] == "tasks"));

        // Markers: one instant each; the ones about a process on its track.
        let instants: Vec<&Value> = ev.iter().filter(|e| e["ph"] == "i").collect();
        assert_eq!(instants.len(), t.markers.len());
        let handler = instants
            .iter()
            .find(|e| e["args"]["kind"] == "sigchld_change")
            .expect("SIGCHLD marker");
        assert_eq!(
            (handler["s"].as_str(), handler["pid"].as_u64()),
            (Some("p"), Some(4242))
        );
        let lost = instants
            .iter()
            .find(|e| e["args"]["kind"] == "events_lost")
            .expect("loss marker");
        assert_eq!(
            (lost["s"].as_str(), lost["pid"].as_u64()),
            (Some("g"), Some(0))
        );
        assert_eq!(lost["ts"].as_f64(), Some((27.0 * 3600.0 + 12.0) * 1e6));
    }

    #[test]
    fn empty_and_hostile_timelines_are_valid() {
        let empty = events(&Timeline::default());
        assert_well_formed(&empty);
        assert!(empty.iter().all(|e| e["ph"] == "M"));

        let hostile = hostile_one_sample();
        let ev = events(&hostile);
        assert_well_formed(&ev);
        assert!(
            ev.iter()
                .any(|e| e["args"]["name"] == "pid 66 (<script>&\"')")
        );
    }

    #[test]
    fn damaged_times_still_nest() {
        let mut t = three_day_incident();
        // A release before the exit, and samples going back in time.
        t.zombies[0].released_at = Some(at(-10.0));
        t.samples.swap(10, 20);
        assert_well_formed(&events(&t));
    }
}
