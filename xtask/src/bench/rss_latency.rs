//! Figure 5: peak RSS, and the exit → visible latency of the alert and
//! report paths.

use super::*;

pub(super) fn rss_and_latency(
    bins: &Bins,
    args: &BenchArgs,
    rss: Option<Measured>,
) -> Result<Figure> {
    let mut figure = Figure::new(
        5,
        "peak RSS with the burst's zombies tracked; exit → visible latency",
        "≤ 64 MiB",
    );
    let (tx, rx) = mpsc::channel();
    let (mut workload, _) = start_workload(
        bins,
        &bins.exit_latency,
        &[],
        &tx,
        &rx,
        Duration::from_secs(30),
    )?;
    let pid = workload
        .workload_pid
        .ok_or_else(|| anyhow!("exit-latency's ready line has no pid"))?;
    let pid_arg = pid.to_string();
    let (tracer, _, _) = start_watch(
        bins,
        &[
            "--json",
            "--interval",
            "0.05",
            "--threshold",
            "1",
            "--pid",
            &pid_arg,
        ],
        &tx,
        &rx,
    )?;

    let mut alert_us = Vec::new();
    let mut report_us = Vec::new();
    for sample in 0..args.latency_samples.max(1) {
        // Spread the exits over the report interval (50 ms).
        std::thread::sleep(Duration::from_millis((sample as u64 * 37) % 50));
        workload.send("exit")?;
        let mut exit_ns: Option<i64> = None;
        let mut alert_at: Option<i64> = None;
        let mut report_at: Option<i64> = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while exit_ns.is_none() || alert_at.is_none() || report_at.is_none() {
            let Some(line) = next_line(&rx, deadline)? else {
                bail!(
                    "no alert/report for the exit within 10 s; zombie-trace stderr: {}",
                    tracer.stderr_tail()
                );
            };
            let Some(text) = &line.text else {
                bail!("an output stream ended during the latency run");
            };
            let json = parse_json(text)?;
            match line.source {
                Source::Workload => exit_ns = json["exit_mono_ns"].as_i64(),
                Source::Tracer if json["type"] == "alert" => {
                    alert_at.get_or_insert(line.at_ns);
                }
                Source::Tracer => {
                    if parent_entry(&json, pid).is_some() {
                        report_at.get_or_insert(line.at_ns);
                    }
                }
            }
        }
        if let (Some(exit), Some(alert), Some(report)) = (exit_ns, alert_at, report_at) {
            alert_us.push((alert - exit) as f64 / 1e3);
            report_us.push((report - exit) as f64 / 1e3);
        }
        // Reap, then wait for a report without the parent: the alert is
        // re-armed before the next exit.
        workload.send("reap")?;
        wait_line(
            &rx,
            Source::Workload,
            Duration::from_secs(10),
            "the reap",
            |t| t.contains("reaped"),
            |_| {},
        )?;
        wait_line(
            &rx,
            Source::Tracer,
            Duration::from_secs(10),
            "a report without the reaped zombie",
            |t| {
                parse_json(t)
                    .is_ok_and(|r| r["type"] == "report" && parent_entry(&r, pid).is_none())
            },
            |_| {},
        )?;
    }
    let tracer_rss = status_kib(tracer.pid(), "VmHWM");
    drop(tracer);
    drop(workload);

    let stats = |v: &[f64]| {
        format!(
            "p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            percentile(v, 0.50),
            percentile(v, 0.90),
            percentile(v, 0.99),
            percentile(v, 1.0)
        )
    };
    let alerts = stats(&alert_us);
    let reports = stats(&report_us);
    match &rss {
        Some(rss) => {
            figure.measured = format!(
                "**{:.1} MiB**; alert p50 {:.2} ms, p99 {:.2} ms",
                rss.value,
                percentile(&alert_us, 0.5) / 1e3,
                percentile(&alert_us, 0.99) / 1e3
            );
            figure.verdict = Verdict::from_bool(rss.value <= 64.0);
            figure.raw.push(format!("- RSS: {}", rss.text));
        }
        None => {
            figure.measured = format!(
                "RSS not measured (figure 3 did not run); alert p50 {:.2} ms",
                percentile(&alert_us, 0.5) / 1e3
            );
            figure.verdict = Verdict::Info;
        }
    }
    figure.raw.push(format!(
        "- exit → visible, {} samples (child stamps CLOCK_MONOTONIC just before `_exit`; the \
         bench stamps the line when it reads zombie-trace's stdout), `watch --json --interval \
         0.05 --threshold 1 --pid P`:",
        alert_us.len()
    ));
    figure.raw.push(format!("  - alert path: {alerts}"));
    figure
        .raw
        .push(format!("  - report path (a report every 50 ms): {reports}"));
    if let Some(kib) = tracer_rss {
        figure.raw.push(format!(
            "- VmHWM of that latency run's tracer (quiet host): {:.1} MiB",
            kib as f64 / 1024.0
        ));
    }
    Ok(figure)
}
