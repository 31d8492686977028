//! Figure 2: fork-storm throughput, traced against untraced.

use super::*;

pub(super) fn throughput(
    bins: &Bins,
    args: &BenchArgs,
    workers: u32,
    bpftrace: &Result<Bpftrace, String>,
) -> Result<Figure> {
    let target = Target::AtLeast(0.99);
    let mut figure = Figure::new(
        2,
        "fork-storm throughput, traced / untraced (per-round ratios, interleaved)",
        "≥ 0.99",
    );
    // Warm-up, not counted.
    let warm_up = Settled {
        text: "warm-up".to_owned(),
        calm: true,
    };
    run_storm(bins, workers, args.storm_ms.min(1000), warm_up, None)?;
    let mut arms = vec![Arm::Untraced, Arm::ZombieTrace];
    if bpftrace.is_ok() {
        arms.push(Arm::Bpftrace);
    }
    let rounds = args.runs.max(1);
    let mut samples: Vec<Sample<Arm>> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut startups: Vec<f64> = Vec::new();
    for round in 0..rounds {
        // Each round in another order (rotated, then reversed), so that a
        // drift in the host's speed does not favour one arm.
        let mut order = arms.clone();
        order.rotate_left(round / 2 % arms.len());
        if round % 2 == 1 {
            order.reverse();
        }
        for arm in order {
            let (tx, rx) = mpsc::channel();
            let tracer = match (arm, bpftrace) {
                (Arm::Untraced, _) => None,
                (Arm::ZombieTrace, _) => {
                    let (tracer, _, startup) = start_watch(bins, &["--json"], &tx, &rx)?;
                    startups.push(startup.as_secs_f64());
                    Some(tracer)
                }
                (Arm::Bpftrace, Ok(bpftrace)) => Some(bpftrace.start(&tx, &rx)?),
                (Arm::Bpftrace, Err(_)) => continue,
            };
            // The calm-host wait also lets a tracer's start-up work settle.
            let host = settle(Duration::from_secs(args.calm_timeout))?;
            let storm = run_storm(
                bins,
                workers,
                args.storm_ms,
                host,
                tracer.as_ref().map(Spawned::pid),
            )?;
            drop(tracer);
            let line = format!(
                "- round {} {}: {:.0} cycles/s ({} cycles in {:.2} s, per worker {:?}; host: \
                 {})",
                round + 1,
                arm.label(),
                storm.per_second(),
                storm.cycles,
                storm.elapsed_ns as f64 / 1e9,
                storm.per_worker,
                storm.host_text()
            );
            eprintln!("{line}");
            lines.push(line);
            samples.push(Sample {
                round,
                arm,
                value: storm.per_second(),
                calm: storm.calm(),
            });
        }
    }

    let side = |arm: Arm| {
        let values: Vec<f64> = samples
            .iter()
            .filter(|s| s.arm == arm)
            .map(|s| s.value)
            .collect();
        Summary::of(&values)
    };
    let (Some(z), Some(u)) = (side(Arm::ZombieTrace), side(Arm::Untraced)) else {
        bail!("no storm ran");
    };
    let zt_pairs = pair_rounds(&samples, Arm::ZombieTrace, Arm::Untraced);
    let bt_pairs = pair_rounds(&samples, Arm::Bpftrace, Arm::Untraced);
    let Some(ratio) = zt_pairs.summary() else {
        bail!("no round had both an untraced and a zombie-trace storm");
    };
    let rate = |v: f64| format!("{v:.0} cycles/s");
    let r3 = |v: f64| format!("{v:.3}");
    figure.measured = format!(
        "{:.0} / {:.0} cycles/s (medians); per-round ratio **{}** (median of {}, {}–{})",
        z.median,
        u.median,
        r3(ratio.median),
        ratio.n,
        r3(ratio.min),
        r3(ratio.max)
    );
    if let Some(b) = bt_pairs.summary() {
        let _ = write!(figure.measured, "; bpftrace ledger: {}", r3(b.median));
    }
    figure.verdict = Verdict::from_bool(target.met(ratio.median));

    figure.raw.push(format!(
        "{workers} workers (one per CPU), {} ms per storm, {} of {} (order rotated and reversed \
         between rounds), bpf_stats off; a tracer is started before and stopped after each of \
         its storms (zombie-trace: `watch --json`; bpftrace: the ledger of figure 1, for \
         reference), and the host is left to calm down before each storm. The verdict uses the \
         median of the per-round ratios (a round's traced storm over the same round's untraced \
         storm, run seconds apart); IQR is their interquartile range, spread their (max − min) \
         / median; {MARKED_ROUNDS} zombie-trace start-up on the quiet host (spawn → first \
         report): median {:.3} s.",
        args.storm_ms,
        count(rounds, "round"),
        arms.iter()
            .map(|a| a.label())
            .collect::<Vec<_>>()
            .join(", "),
        median(startups).unwrap_or(0.0)
    ));
    for arm in &arms {
        if let Some(s) = side(*arm) {
            figure
                .raw
                .push(format!("- {}: {}", arm.label(), s.describe("storm", rate)));
        }
    }
    for (name, pairing, of_medians) in [
        ("zombie-trace", &zt_pairs, z.median),
        (
            "bpftrace",
            &bt_pairs,
            side(Arm::Bpftrace).map_or(0.0, |b| b.median),
        ),
    ] {
        if let Some(s) = pairing.summary() {
            figure.raw.push(format!(
                "- per-round ratio {name} / untraced: {}, IQR {}; by round: {}; ratio of the \
                 medians {}",
                s.describe("round", r3),
                r3(s.iqr()),
                pairing.list(r3),
                r3(of_medians / u.median.max(1.0))
            ));
        }
    }
    figure.raw.push(format!(
        "- stability: {}",
        stability("ratio", &zt_pairs, Some(target), r3)
    ));
    if bpftrace.is_ok() {
        figure.raw.push(format!(
            "- stability of the bpftrace reference (no target): {}",
            stability("ratio", &bt_pairs, None, r3)
        ));
    }
    for line in &figure.raw[1..] {
        eprintln!("{line}");
    }
    figure.raw.extend(lines);
    Ok(figure)
}
