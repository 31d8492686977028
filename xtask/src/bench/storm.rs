//! Fork storms: one measured storm, the calm-host check before it.

use super::*;

/// The host before a storm, from [`settle`].
#[derive(Clone, Debug)]
pub(super) struct Settled {
    /// E.g. "2% CPU busy, 3 forks/s before", with "(busy host)" when the
    /// host did not calm down in time.
    pub(super) text: String,
    pub(super) calm: bool,
}

#[derive(Clone, Debug)]
pub(super) struct Storm {
    pub(super) cycles: u64,
    pub(super) elapsed_ns: u64,
    pub(super) per_worker: Vec<u64>,
    pub(super) tasks: u32,
    /// Processes and threads created on the whole host while the storm ran
    /// (`/proc/stat` `processes`): its cycles plus any background.
    pub(super) host_forks: u64,
    /// The host before the run.
    pub(super) host: Settled,
    /// Share of the host's CPU time that went to other work while the storm
    /// ran: all busy time (`/proc/stat`) less the storm's own (its harness,
    /// workers and their children, reaped) and the tracer's userspace.
    pub(super) other_cpu: f64,
    /// Tracing BPF programs on the host that the storm's tracer does not
    /// hold (another tracer the storm's processes pay for), most seen.
    pub(super) foreign_progs: usize,
}

impl Storm {
    pub(super) fn per_second(&self) -> f64 {
        self.cycles as f64 / (self.elapsed_ns.max(1) as f64 / 1e9)
    }

    /// Processes the rest of the host created while the storm ran (the
    /// harness and the workers themselves are a handful).
    pub(super) fn other_forks(&self) -> u64 {
        self.host_forks.saturating_sub(self.cycles)
    }

    /// Other work forked more than a calm host would ([`settle`]'s 50
    /// forks/s, plus the harness's own), took more than 15% of the CPU time
    /// (on a calm host the kernel's own share is 5–10%) or traced the host
    /// while the storm ran.
    pub(super) fn disturbed(&self) -> bool {
        let allowed = 50.0 * self.elapsed_ns as f64 / 1e9 + 20.0;
        self.other_forks() as f64 > allowed || self.other_cpu > 0.15 || self.foreign_progs > 0
    }

    /// A calm host before the storm and no burst of other work during it.
    pub(super) fn calm(&self) -> bool {
        self.host.calm && !self.disturbed()
    }

    /// The host around the storm, e.g. "1% CPU busy, 0 forks/s before, 85
    /// tasks; during the run 6 other forks, 7% of the CPU time to other
    /// work".
    pub(super) fn host_text(&self) -> String {
        let foreign = match self.foreign_progs {
            0 => String::new(),
            n => format!(", {n} tracing BPF program(s) of another tracer loaded"),
        };
        format!(
            "{}, {} tasks; during the run {} other forks, {:.0}% of the CPU time to other \
             work{foreign}{}",
            self.host.text,
            self.tasks,
            self.other_forks(),
            self.other_cpu * 100.0,
            if self.disturbed() {
                " (busy host during the run)"
            } else {
                ""
            }
        )
    }
}

/// Runs one fork storm; `tracer` is the PID of the tracer attached, whose
/// userspace CPU is not "other work".
pub(super) fn run_storm(
    bins: &Bins,
    workers: u32,
    millis: u64,
    host: Settled,
    tracer: Option<u32>,
) -> Result<Storm> {
    let tasks = host_tasks()?;
    let foreign_before = foreign_tracing_programs(tracer);
    let stat_before = ProcStat::read()?;
    let own_before = children_cpu_ns();
    let tracer_before = tracer.map_or(0, task_cpu_ns);
    let (tx, rx) = mpsc::channel();
    let args = [workers.to_string(), millis.to_string()];
    let mut harness = Spawned::spawn(
        bins.harness(&bins.fork_storm, &args),
        Kind::Harness,
        Source::Workload,
        &tx,
    )?;
    let line = wait_line(
        &rx,
        Source::Workload,
        Duration::from_millis(millis) + Duration::from_secs(60),
        "the fork storm's result",
        |_| true,
        |_| {},
    )
    .map_err(|err| {
        anyhow::Error::new(err).context(format!("fork-storm stderr: {}", harness.stderr_tail()))
    })?;
    let status = harness.stop();
    let stat_after = ProcStat::read()?;
    let own_ns = children_cpu_ns().saturating_sub(own_before)
        + tracer.map_or(0, task_cpu_ns).saturating_sub(tracer_before);
    let tick_ns = 1e9 / clock_ticks() as f64;
    let busy_ns = stat_after.busy.saturating_sub(stat_before.busy) as f64 * tick_ns;
    let total_ns = stat_after.total.saturating_sub(stat_before.total).max(1) as f64 * tick_ns;
    let other_cpu = ((busy_ns - own_ns as f64) / total_ns).clamp(0.0, 1.0);
    let host_forks = stat_after.forks.saturating_sub(stat_before.forks);
    let foreign_progs = foreign_before.max(foreign_tracing_programs(tracer));
    if !status.is_some_and(|s| s.success()) {
        bail!(
            "fork-storm exited with {status:?}: {}",
            harness.stderr_tail()
        );
    }
    let json = parse_json(line.text.as_deref().unwrap_or_default())?;
    let number = |key: &str| {
        json[key]
            .as_u64()
            .ok_or_else(|| anyhow!("fork-storm result has no {key:?}: {json}"))
    };
    Ok(Storm {
        cycles: number("cycles")?,
        elapsed_ns: number("elapsed_ns")?,
        per_worker: json["per_worker"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default(),
        tasks,
        host_forks,
        host,
        other_cpu,
        foreign_progs,
    })
}

/// Tracing BPF programs (tracepoint, kprobe, perf event, raw tracepoint,
/// BTF tracing) loaded on the host and not held by `tracer`: another tracer,
/// e.g. a second zombie-trace, would slow every storm, "untraced" ones too.
pub(super) fn foreign_tracing_programs(tracer: Option<u32>) -> usize {
    const TRACING: [&str; 6] = [
        "BPF_PROG_TYPE_KPROBE",
        "BPF_PROG_TYPE_TRACEPOINT",
        "BPF_PROG_TYPE_PERF_EVENT",
        "BPF_PROG_TYPE_RAW_TRACEPOINT",
        "BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE",
        "BPF_PROG_TYPE_TRACING",
    ];
    let own: Vec<u32> = tracer
        .and_then(|pid| Cost::read(pid).ok())
        .map(|cost| cost.progs.keys().copied().collect())
        .unwrap_or_default();
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|info| TRACING.contains(&format!("{:?}", info.program_type()).as_str()))
        .filter(|info| !own.contains(&info.id()))
        .count()
}

/// CPU time of the bench's children that have been waited for, and of
/// their waited-for descendants (`RUSAGE_CHILDREN`), in ns.
pub(super) fn children_cpu_ns() -> u64 {
    // SAFETY: rusage is plain data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is a valid out-pointer; RUSAGE_CHILDREN always exists.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let ns = |tv: libc::timeval| {
        u64::try_from(tv.tv_sec).unwrap_or(0) * 1_000_000_000
            + u64::try_from(tv.tv_usec).unwrap_or(0) * 1_000
    };
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// CPU time of all the threads of `pid` (schedstat), in ns.
pub(super) fn task_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Clock ticks per second (USER_HZ) of `/proc/stat` and `/proc/<pid>/stat`.
pub(super) fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1)
}

/// The host-wide counters of `/proc/stat` the bench watches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ProcStat {
    /// Jiffies spent not idle (all CPUs).
    pub(super) busy: u64,
    /// All jiffies (all CPUs).
    pub(super) total: u64,
    /// Processes and threads created since boot.
    pub(super) forks: u64,
}

impl ProcStat {
    pub(super) fn read() -> Result<Self> {
        let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        parse_proc_stat(&text).ok_or_else(|| anyhow!("cannot parse /proc/stat"))
    }
}

pub(super) fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let cpu: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))?
        .split_whitespace()
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    let [user, nice, system, idle, iowait, irq, softirq, steal] = cpu[..] else {
        return None;
    };
    let total = user + nice + system + idle + iowait + irq + softirq + steal;
    let forks = text
        .lines()
        .find_map(|l| l.strip_prefix("processes "))?
        .trim()
        .parse()
        .ok()?;
    Some(ProcStat {
        busy: total - idle - iowait,
        total,
        forks,
    })
}

/// Waits up to `budget` for a calm host (≤ 15% CPU busy and ≤ 50 forks/s
/// over one second), so that other work does not blur a storm; returns the
/// last sample, marked "busy host" when it never calmed down.
pub(super) fn settle(budget: Duration) -> Result<Settled> {
    let deadline = Instant::now() + budget;
    loop {
        let before = ProcStat::read()?;
        std::thread::sleep(Duration::from_secs(1));
        let after = ProcStat::read()?;
        let busy = (after.busy - before.busy) as f64 / (after.total - before.total).max(1) as f64;
        let forks = after.forks - before.forks;
        let text = format!("{:.0}% CPU busy, {forks} forks/s before", busy * 100.0);
        if busy <= 0.15 && forks <= 50 {
            return Ok(Settled { text, calm: true });
        }
        if Instant::now() >= deadline {
            return Ok(Settled {
                text: format!("{text} (busy host)"),
                calm: false,
            });
        }
        eprintln!("bench: waiting for a calm host ({text})");
    }
}

/// How figures 1 and 2 explain the `*` on a round.
pub(super) const MARKED_ROUNDS: &str = "a round is marked `*` (and still counted) when a storm of it had \
    no calm host before it, or when, while it ran, other work forked more than 50/s, took more \
    than 15% of the CPU time or had tracing BPF programs loaded (another tracer).";

/// What a fork storm has attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Arm {
    Untraced,
    ZombieTrace,
    Bpftrace,
}

impl Arm {
    pub(super) fn label(self) -> &'static str {
        match self {
            Arm::Untraced => "untraced",
            Arm::ZombieTrace => "zombie-trace",
            Arm::Bpftrace => "bpftrace",
        }
    }
}

/// "2 rounds" / "1 round".
pub(super) fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_counters() {
        let text = "cpu  10 1 5 100 4 1 1 0 0 0\ncpu0 5 0 2 50 2 0 0 0 0 0\n\
                    intr 1 2\nprocesses 4321\nprocs_running 2\n";
        assert_eq!(
            parse_proc_stat(text),
            Some(ProcStat {
                busy: 18,
                total: 122,
                forks: 4321
            })
        );
        assert_eq!(parse_proc_stat("cpu  1 2\n"), None);
    }

    #[test]
    fn storms_disturbed_by_other_work() {
        let storm = |host_forks: u64, calm: bool| Storm {
            other_cpu: 0.07,
            foreign_progs: 0,
            cycles: 10_000,
            elapsed_ns: 1_000_000_000,
            per_worker: vec![5_000, 5_000],
            tasks: 85,
            host_forks,
            host: Settled {
                text: "0% CPU busy, 0 forks/s before".to_owned(),
                calm,
            },
        };
        let quiet = storm(10_006, true);
        assert!(quiet.calm() && !quiet.disturbed());
        assert_eq!(
            quiet.host_text(),
            "0% CPU busy, 0 forks/s before, 85 tasks; during the run 6 other forks, 7% of the \
             CPU time to other work"
        );
        // 50 forks/s over 1 s plus the harness's own are allowed.
        assert!(storm(10_070, true).calm());
        // Other work that takes CPU without forking.
        let busy_cpu = Storm {
            other_cpu: 0.3,
            ..quiet.clone()
        };
        assert!(busy_cpu.disturbed() && !busy_cpu.calm());
        let traced = Storm {
            foreign_progs: 2,
            ..quiet.clone()
        };
        assert!(!traced.calm());
        assert!(
            traced
                .host_text()
                .contains("2 tracing BPF program(s) of another tracer loaded")
        );
        let busy = storm(12_846, true);
        assert!(busy.disturbed() && !busy.calm());
        assert!(busy.host_text().ends_with("(busy host during the run)"));
        assert!(!storm(10_006, false).calm());
    }
}
