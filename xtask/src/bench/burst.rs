//! Figure 3: a burst of exits, the ledger against /proc (and the RSS
//! for figure 5).

use super::*;

/// The report's entry for parent `pid`, if listed.
pub(super) fn parent_entry(report: &Value, pid: u32) -> Option<&Value> {
    report["parents"]
        .as_array()?
        .iter()
        .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
}

pub(super) fn field(value: &Value, key: &str) -> u64 {
    value[key].as_u64().unwrap_or(0)
}

/// What `zombie-burst` reports: its forking parents and their counts.
pub(super) struct BurstReady {
    pub(super) parents: Vec<u32>,
    pub(super) forked: Vec<u64>,
    pub(super) reaped: Vec<u64>,
    pub(super) fork_loop_s: f64,
    pub(super) burst_s: f64,
}

impl BurstReady {
    /// The zombies /proc shows under the burst's parents now.
    pub(super) fn zombies_on_proc(&self) -> Result<u64> {
        let on_proc = proc_zombies_by_parent()?;
        Ok(self
            .parents
            .iter()
            .map(|p| on_proc.get(p).copied().unwrap_or(0))
            .sum())
    }

    pub(super) fn parse(ready: &Value) -> Result<Self> {
        let list = |key: &str| -> Vec<u64> {
            ready[key]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default()
        };
        let parents: Vec<u32> = list("children")
            .into_iter()
            .filter_map(|p| u32::try_from(p).ok())
            .collect();
        let (forked, reaped) = (list("parent_forked"), list("parent_reaped"));
        if parents.is_empty() || forked.len() != parents.len() || reaped.len() != parents.len() {
            bail!("unexpected zombie-burst ready line {ready}");
        }
        Ok(Self {
            parents,
            forked,
            reaped,
            fork_loop_s: field(ready, "fork_loop_us") as f64 / 1e6,
            burst_s: field(ready, "burst_us") as f64 / 1e6,
        })
    }
}

/// Zombies per parent, from one scan of /proc.
pub(super) fn proc_zombies_by_parent() -> Result<HashMap<u32, u64>> {
    let mut counts = HashMap::new();
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some(('Z', ppid)) = proc_state(pid) {
            *counts.entry(ppid).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// Sum of `key` over the report's entries for `parents`.
pub(super) fn sum_over(report: &Value, parents: &[u32], key: &str) -> u64 {
    parents
        .iter()
        .filter_map(|&p| parent_entry(report, p))
        .map(|e| field(e, key))
        .sum()
}

pub(super) fn burst(
    bins: &Bins,
    args: &BenchArgs,
    parents: u32,
) -> Result<(Figure, Option<Measured>)> {
    let total = args.burst_total;
    let cap = args.burst_cap.min(total);
    let mut figure = Figure::new(
        3,
        &format!("burst: {total} children exit, ≤ {cap} zombies pending at once"),
        "ledger = /proc, loss 0 (default ring)",
    );
    let planned = cap + EXTRA_TASKS;
    let tasks = match wait_for_quiet(planned, Duration::from_secs(args.quiet_timeout))? {
        Ok(tasks) => tasks,
        Err(why) => return Ok((figure.skipped(&why), None)),
    };
    let (tx, rx) = mpsc::channel();
    let (tracer, _, _) = start_watch(bins, &["--json", "--interval", "0.5"], &tx, &rx)?;
    let (workload, ready) = start_burst(bins, total, cap, parents, &tx, &rx)?;
    let ready_at = mono_ns();
    let burst = BurstReady::parse(&ready)?;
    let on_proc = proc_zombies_by_parent()?;
    let proc_of = |p: &u32| on_proc.get(p).copied().unwrap_or(0);
    let proc_total: u64 = burst.parents.iter().map(proc_of).sum();
    let forked: u64 = burst.forked.iter().sum();
    let reaped: u64 = burst.reaped.iter().sum();

    // Reports until the ledger matches /proc and the workload for every
    // forking parent.
    let matches = |report: &Value| {
        burst.parents.iter().enumerate().all(|(i, p)| {
            parent_entry(report, *p).is_some_and(|e| {
                field(e, "pending_zombies") == proc_of(p)
                    && field(e, "forks") == burst.forked[i]
                    && field(e, "exits") == burst.forked[i]
                    && field(e, "reaped") == burst.reaped[i]
            })
        })
    };
    let mut last: Option<Value> = None;
    let mut exact_after: Option<f64> = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(line) = next_line(&rx, deadline)? {
        let (Source::Tracer, Some(text)) = (line.source, &line.text) else {
            continue;
        };
        let Ok(report) = parse_json(text) else {
            continue;
        };
        if report["type"] != "report" {
            continue;
        }
        let exact = matches(&report);
        last = Some(report);
        if exact {
            exact_after = Some((line.at_ns - ready_at) as f64 / 1e9);
            break;
        }
    }
    let hwm = status_kib(tracer.pid(), "VmHWM");
    let rss_now = status_kib(tracer.pid(), "VmRSS");
    drop(workload);
    drop(tracer);

    let last = last.ok_or_else(|| anyhow!("zombie-trace printed no report after the burst"))?;
    let lost = field(&last, "lost_events");
    let sum = |key: &str| sum_over(&last, &burst.parents, key);
    let exact = exact_after.is_some();
    figure.measured = format!(
        "{forked} exits in {:.2} s; ledger {} /proc ({} vs {proc_total} pending), lost {lost}",
        burst.burst_s,
        if exact { "=" } else { "≠" },
        sum("pending_zombies"),
    );
    figure.verdict = Verdict::from_bool(exact && lost == 0);
    figure.raw.push(format!(
        "- host tasks before: {tasks}. `zombie-burst {total} {cap} {parents}`: {parents} \
         parent(s) released together forked {forked} children that exit at once, each parent \
         reaping its oldest whenever its share of {cap} was pending ({reaped} reaped in all), \
         so live + zombie children never passed {cap} and the host stayed under {TASK_LIMIT} \
         tasks (30,000 zombies at once would not: 30,000 + the host's own tasks > \
         {TASK_LIMIT}). Fork loop {:.2} s; release → last child's exit {:.2} s.",
        burst.fork_loop_s, burst.burst_s
    ));
    let per_parent: Vec<String> = burst
        .parents
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let e = parent_entry(&last, *p).cloned().unwrap_or(Value::Null);
            format!(
                "pid {p}: /proc {} zombies, workload forked {} reaped {}; zombie-trace pending \
                 {}, forks {}, exits {}, reaped {}, wait calls {}",
                proc_of(p),
                burst.forked[i],
                burst.reaped[i],
                field(&e, "pending_zombies"),
                field(&e, "forks"),
                field(&e, "exits"),
                field(&e, "reaped"),
                field(&e, "wait_calls"),
            )
        })
        .collect();
    figure.raw.push(format!(
        "- zombie-trace `watch --json --interval 0.5`, default ring size: {}; lost_events \
         {lost} {}; {}",
        per_parent.join("; "),
        last["lost_by_reason"],
        exact_after.map_or_else(
            || "never exact within 10 s".to_owned(),
            |s| format!("exact in the first report {s:.2} s after the burst ended")
        )
    ));
    let measured = hwm.map(|kib| Measured {
        value: kib as f64 / 1024.0,
        text: format!(
            "VmHWM {:.1} MiB (VmRSS {:.1} MiB) with {proc_total} zombies tracked after the \
             burst (`watch --json --interval 0.5`)",
            kib as f64 / 1024.0,
            rss_now.unwrap_or(0) as f64 / 1024.0,
        ),
    });
    Ok((figure, measured))
}
