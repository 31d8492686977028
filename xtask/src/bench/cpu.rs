//! Figure 1: CPU per fork → exit → reap cycle, zombie-trace against bpftrace.

use super::*;

pub(super) struct CostRun {
    pub(super) round: usize,
    pub(super) arm: Arm,
    pub(super) storm: Storm,
    pub(super) cost: Cost,
    /// Where each program is attached (its name when that is unknown), by
    /// program id.
    pub(super) names: BTreeMap<u32, String>,
}

impl CostRun {
    /// Lifecycles the tracer paid for: every process (and thread) created
    /// on the host during the storm, which is the storm's cycles on a calm
    /// host.
    pub(super) fn lifecycles(&self) -> f64 {
        self.storm.host_forks.max(self.storm.cycles).max(1) as f64
    }

    pub(super) fn per_lifecycle_ns(&self) -> f64 {
        (self.cost.bpf_ns() + self.cost.cpu_ns) as f64 / self.lifecycles()
    }

    pub(super) fn bpf_per_lifecycle_ns(&self) -> f64 {
        self.cost.bpf_ns() as f64 / self.lifecycles()
    }

    pub(super) fn name(&self, id: u32) -> &str {
        self.names.get(&id).map_or("?", String::as_str)
    }

    /// Runs per lifecycle of every program the tracer holds, in program id
    /// order (load order); programs that share a name are added up.
    pub(super) fn runs_per_lifecycle(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        for (id, (_, runs)) in &self.cost.progs {
            let name = self.name(*id);
            let per = *runs as f64 / self.lifecycles();
            match out.iter_mut().find(|(n, _)| n == name) {
                Some((_, total)) => *total += per,
                None => out.push((name.to_owned(), per)),
            }
        }
        out
    }

    pub(super) fn describe(&self) -> String {
        let cycles = self.lifecycles();
        let progs: Vec<String> = self
            .cost
            .progs
            .iter()
            .filter(|(_, (_, runs))| *runs > 0)
            .map(|(id, (time, runs))| {
                format!(
                    "{} {:.0} ns × {:.2}",
                    self.name(*id),
                    *time as f64 / (*runs).max(1) as f64,
                    *runs as f64 / cycles
                )
            })
            .collect();
        format!(
            "- round {} {}: storm {} cycles in {:.2} s ({:.0}/s); host forks in that time {} \
             (host: {}); per lifecycle: BPF {:.0} ns ({:.2} program runs) + userspace {:.0} ns \
             (schedstat; utime+stime gives {:.0}) = **{:.0} ns**; per program, ns/run × \
             runs/lifecycle: {}",
            self.round + 1,
            self.arm.label(),
            self.storm.cycles,
            self.storm.elapsed_ns as f64 / 1e9,
            self.storm.per_second(),
            self.storm.host_forks,
            self.storm.host_text(),
            self.cost.bpf_ns() as f64 / cycles,
            self.cost.bpf_runs() as f64 / cycles,
            self.cost.cpu_ns as f64 / cycles,
            self.cost.ticks_ns as f64 / cycles,
            self.per_lifecycle_ns(),
            progs.join(", ")
        )
    }
}

/// Program runs per lifecycle, measured: for each storm of one tracer the
/// runs per lifecycle of each of its programs (by name); returns "T = a x +
/// b y …" with T the median of the storms' totals and each program's median
/// over the storms, then the programs the tracer holds that ran less than
/// 0.01 times per lifecycle.
pub(super) fn program_runs_text(per_storm: &[Vec<(String, f64)>]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for storm in per_storm {
        for (name, _) in storm {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    let of = |name: &str| {
        let runs: Vec<f64> = per_storm
            .iter()
            .map(|s| s.iter().filter(|(n, _)| n == name).map(|(_, r)| r).sum())
            .collect();
        median(runs).unwrap_or(0.0)
    };
    let total = median(
        per_storm
            .iter()
            .map(|s| s.iter().map(|(_, r)| r).sum())
            .collect(),
    )
    .unwrap_or(0.0);
    let (mut ran, mut idle) = (Vec::new(), Vec::new());
    for name in names {
        let runs = of(name);
        if runs >= 0.01 {
            ran.push(format!("{name} {runs:.2}"));
        } else {
            idle.push(name);
        }
    }
    let mut text = format!("{total:.2}");
    if !ran.is_empty() {
        let _ = write!(text, " = {}", ran.join(" + "));
    }
    if !idle.is_empty() {
        let _ = write!(
            text,
            " (also attached, < 0.01 runs per lifecycle: {})",
            idle.join(", ")
        );
    }
    text
}

/// Runs one storm under an attached tracer and returns the tracer's cost.
pub(super) fn traced_cost(
    pid: u32,
    bins: &Bins,
    workers: u32,
    millis: u64,
    host: Settled,
) -> Result<(Storm, Cost)> {
    let before = Cost::read(pid)?;
    let storm = run_storm(bins, workers, millis, host, Some(pid))?;
    // Let the tracer handle the storm's last events (zombie-trace drains its
    // ring on a 50 ms timer), so that a short storm is not undercounted.
    std::thread::sleep(Duration::from_millis(120));
    let after = Cost::read(pid)?;
    Ok((storm, after.since(&before)))
}

pub(super) fn cpu_per_cycle(
    bins: &Bins,
    args: &BenchArgs,
    workers: u32,
    bpftrace: &Result<Bpftrace, String>,
) -> Result<Figure> {
    let target = Target::AtMost(0.5);
    let mut figure = Figure::new(
        1,
        "CPU per fork→exit→reap cycle (BPF run time + tracer userspace)",
        "≤ 0.5× bpftrace",
    );
    let _stats = enable_bpf_stats()?;
    let mut arms = vec![Arm::ZombieTrace];
    if bpftrace.is_ok() {
        arms.push(Arm::Bpftrace);
    }
    let rounds = args.cpu_rounds.max(1);
    let mut runs: Vec<CostRun> = Vec::new();
    for round in 0..rounds {
        // Each round in another order, so that neither tracer always runs
        // first.
        let mut order = arms.clone();
        order.rotate_left(round % arms.len());
        for arm in order {
            let (tx, rx) = mpsc::channel();
            let tracer = match (arm, bpftrace) {
                (Arm::Bpftrace, Ok(bpftrace)) => bpftrace.start(&tx, &rx)?,
                (Arm::Bpftrace, Err(why)) => bail!("no bpftrace: {why}"),
                _ => start_watch(bins, &["--json"], &tx, &rx)?.0,
            };
            // The calm-host wait also lets the tracer's start-up work (the
            // /proc scan, the first report) settle.
            let host = settle(Duration::from_secs(args.calm_timeout))?;
            let (storm, cost) = traced_cost(tracer.pid(), bins, workers, args.storm_ms, host)?;
            let loaded = program_names();
            drop(tracer);
            let names = cost
                .progs
                .keys()
                .map(|id| {
                    let name = cost.names.get(id).or_else(|| loaded.get(id));
                    (*id, name.cloned().unwrap_or_else(|| format!("prog {id}")))
                })
                .collect();
            let run = CostRun {
                round,
                arm,
                storm,
                cost,
                names,
            };
            eprintln!("{}", run.describe());
            runs.push(run);
        }
    }

    let samples: Vec<Sample<Arm>> = runs
        .iter()
        .map(|r| Sample {
            round: r.round,
            arm: r.arm,
            value: r.per_lifecycle_ns(),
            calm: r.storm.calm(),
        })
        .collect();
    let side = |arm: Arm, value: fn(&CostRun) -> f64| {
        let values: Vec<f64> = runs.iter().filter(|r| r.arm == arm).map(value).collect();
        Summary::of(&values)
    };
    let zt = side(Arm::ZombieTrace, CostRun::per_lifecycle_ns)
        .ok_or_else(|| anyhow!("no zombie-trace run"))?;
    let zt_bpf = side(Arm::ZombieTrace, CostRun::bpf_per_lifecycle_ns).map_or(0.0, |s| s.median);
    let us = |ns: f64| format!("{:.2} µs", ns / 1e3);
    let times = |ratio: f64| format!("{ratio:.2}×");
    let pairing = pair_rounds(&samples, Arm::ZombieTrace, Arm::Bpftrace);
    let mut summary = vec![format!(
        "- zombie-trace per lifecycle: {}; its BPF alone: median {}",
        zt.describe("storm", us),
        us(zt_bpf)
    )];
    let statement = match (
        side(Arm::Bpftrace, CostRun::per_lifecycle_ns),
        pairing.summary(),
    ) {
        (Some(bt), Some(ratio)) => {
            figure.measured = format!(
                "{} vs {} per lifecycle (medians) = **{}** (median of {} per-round ratios, \
                 {}–{}; zombie-trace's BPF alone {})",
                us(zt.median),
                us(bt.median),
                times(ratio.median),
                ratio.n,
                times(ratio.min),
                times(ratio.max),
                us(zt_bpf)
            );
            figure.verdict = Verdict::from_bool(target.met(ratio.median));
            summary.push(format!(
                "- bpftrace per lifecycle: {}",
                bt.describe("storm", us)
            ));
            summary.push(format!(
                "- per-round ratio zombie-trace / bpftrace: {}, IQR {}; by round: {}; ratio of \
                 the medians {}",
                ratio.describe("round", times),
                times(ratio.iqr()),
                pairing.list(times),
                times(zt.median / bt.median.max(1.0))
            ));
            stability("ratio", &pairing, Some(target), times)
        }
        _ => {
            let why = match bpftrace {
                Err(why) => why.clone(),
                Ok(_) => "no round had both tracers".to_owned(),
            };
            figure.measured = format!(
                "{} per lifecycle (median of {}; BPF {}); no reference: {why}",
                us(zt.median),
                count(zt.n, "storm"),
                us(zt_bpf)
            );
            figure.verdict = Verdict::Info;
            stability(
                "zombie-trace's cost",
                &Pairing::alone(&samples, Arm::ZombieTrace),
                None,
                us,
            )
        }
    };
    let program_runs: Vec<String> = arms
        .iter()
        .map(|&arm| {
            let per_storm: Vec<Vec<(String, f64)>> = runs
                .iter()
                .filter(|r| r.arm == arm)
                .map(CostRun::runs_per_lifecycle)
                .collect();
            format!("{} {}", arm.label(), program_runs_text(&per_storm))
        })
        .collect();
    figure.raw.push(format!(
        "{workers} workers, {} ms per storm, {} of {} (order rotated each round); each tracer \
         is started, the host left to calm down, then one storm runs and the tracer is stopped. \
         The verdict uses the median of the per-round ratios (a round's zombie-trace storm over \
         its bpftrace storm, run seconds apart); IQR is their interquartile range, spread their \
         (max − min) / median; {MARKED_ROUNDS} A lifecycle is one process created on the host \
         during the storm (`/proc/stat` processes; on a calm host the storm's fork→exit→reap \
         cycles): every tracer pays for every process on the host, not only the storm's. Program \
         runs per lifecycle, measured (bpf_stats run counts, median over the storms): {}. BPF run time \
         from the kernel's bpf_stats (BPF_ENABLE_STATS) of the programs the tracer process \
         holds (its /proc/PID/fdinfo); userspace CPU from its /proc/PID/task/*/schedstat, up to \
         50 ms after the storm so that the tracer has handled the storm's events.\n\n```\n{}```",
        args.storm_ms,
        count(rounds, "round"),
        arms.iter()
            .map(|a| match a {
                Arm::ZombieTrace => "zombie-trace `watch --json`",
                _ => "the bpftrace ledger below",
            })
            .collect::<Vec<_>>()
            .join(" / "),
        program_runs.join("; "),
        BPFTRACE_SCRIPT
    ));
    figure.raw.extend(summary);
    figure.raw.push(format!("- stability: {statement}"));
    figure.raw.extend(runs.iter().map(CostRun::describe));
    for line in &figure.raw[1..] {
        eprintln!("{line}");
    }
    Ok(figure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_runs_come_from_the_measured_counts() {
        let storm = |runs: &[(&str, f64)]| -> Vec<(String, f64)> {
            runs.iter().map(|(n, r)| ((*n).to_owned(), *r)).collect()
        };
        let storms = [
            storm(&[("fork", 1.0), ("exit", 1.0), ("exec", 0.0), ("free", 0.98)]),
            storm(&[
                ("fork", 1.0),
                ("exit", 1.01),
                ("exec", 0.001),
                ("free", 1.0),
            ]),
            storm(&[("fork", 1.0), ("exit", 1.0), ("exec", 0.0), ("free", 1.02)]),
        ];
        assert_eq!(
            program_runs_text(&storms),
            "3.01 = fork 1.00 + exit 1.00 + free 1.00 (also attached, < 0.01 runs per \
             lifecycle: exec)"
        );
        // A program missing from a storm counts 0 there; no programs, no runs.
        let partial = [storm(&[("a", 1.0)]), storm(&[("a", 1.0), ("b", 1.0)])];
        assert_eq!(program_runs_text(&partial), "1.50 = a 1.00 + b 0.50");
        assert_eq!(program_runs_text(&[]), "0.00");
    }
}
