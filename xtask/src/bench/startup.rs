//! Figure 4: start-up with many pre-existing zombies, against `ps`.

use super::*;

pub(super) fn startup(bins: &Bins, args: &BenchArgs, parents: u32) -> Result<Figure> {
    let zombies = args.startup_zombies;
    let mut figure = Figure::new(
        4,
        &format!("start-up with {zombies} pre-existing zombies → first complete report"),
        "≤ 0.25 s and ≤ 0.3× ps",
    );
    let planned = zombies + EXTRA_TASKS;
    let tasks = match wait_for_quiet(planned, Duration::from_secs(args.quiet_timeout))? {
        Ok(tasks) => tasks,
        Err(why) => return Ok(figure.skipped(&why)),
    };
    let (tx, rx) = mpsc::channel();
    let (workload, ready) = start_burst(bins, zombies, zombies, parents, &tx, &rx)?;
    let burst = BurstReady::parse(&ready)?;
    let proc_total = burst.zombies_on_proc()?;

    let mut ps_times = Vec::new();
    let mut ps_lines = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let out = cmd("ps", ["-e", "-o", "pid,ppid,stat,comm"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .context("running ps")?;
        ps_times.push(start.elapsed().as_secs_f64());
        ps_lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
    }

    let mut zt_times = Vec::new();
    let mut alert_times = Vec::new();
    let parents = burst.parents.clone();
    for _ in 0..args.startup_runs.max(1) {
        // A channel of its own: nothing from an earlier run can be mistaken
        // for this one's report.
        let (tx, rx) = mpsc::channel();
        let spawn_ns = mono_ns();
        let mut tracer = Spawned::spawn(
            bins.watch(&["--json", "--interval", "0.05"]),
            Kind::Tracer,
            Source::Tracer,
            &tx,
        )?;
        let mut alerted: Vec<u32> = Vec::new();
        let mut all_alerted: Option<f64> = None;
        let complete = wait_line(
            &rx,
            Source::Tracer,
            Duration::from_secs(60),
            "a report listing every zombie",
            |text| {
                let Ok(line) = parse_json(text) else {
                    return false;
                };
                if line["type"] == "alert" {
                    if let Some(p) = line["parent"]["pid"]
                        .as_u64()
                        .and_then(|p| u32::try_from(p).ok())
                        .filter(|p| parents.contains(p) && !alerted.contains(p))
                    {
                        alerted.push(p);
                        if alerted.len() == parents.len() {
                            all_alerted = Some((mono_ns() - spawn_ns) as f64 / 1e9);
                        }
                    }
                    return false;
                }
                sum_over(&line, &parents, "pending_zombies") == proc_total
            },
            |_| {},
        );
        let stderr = tracer.stderr_tail();
        tracer.stop();
        let complete = complete.map_err(|err| {
            anyhow::Error::new(err).context(format!("zombie-trace stderr: {stderr}"))
        })?;
        zt_times.push((complete.at_ns - spawn_ns) as f64 / 1e9);
        alert_times.extend(all_alerted);
    }
    drop(workload);

    let zt = median(zt_times.clone()).unwrap_or(0.0);
    let ps = median(ps_times.clone()).unwrap_or(0.0);
    let ratio = zt / ps.max(1e-9);
    figure.measured = format!("{zt:.3} s vs ps {ps:.3} s = **{ratio:.2}×**");
    figure.verdict = Verdict::from_bool(zt <= 0.25 && ratio <= 0.3);
    let secs = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    figure.raw.push(format!(
        "- host tasks before: {tasks}; `zombie-burst {zombies} {zombies} {}` left {proc_total} \
         zombies, owed by pids {:?}",
        parents.len(),
        parents
    ));
    figure.raw.push(format!(
        "- `ps -e -o pid,ppid,stat,comm` ({ps_lines} lines), wall time s: {} (median {ps:.3})",
        secs(&ps_times)
    ));
    figure.raw.push(format!(
        "- `zombie-trace watch --json --interval 0.05`, spawn → first report listing all \
         {proc_total}, s: {} (median {zt:.3}); spawn → the threshold alerts for those parents: {}",
        secs(&zt_times),
        secs(&alert_times)
    ));
    Ok(figure)
}
