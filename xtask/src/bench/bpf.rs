//! The tracer's cost (BPF run time and userspace CPU of one process) and
//! the bpftrace reference of figure 1.

use super::*;

/// Per-program (run_time_ns, run_cnt), by program id.
pub(super) type ProgStats = BTreeMap<u32, (u64, u64)>;

#[derive(Clone, Debug, Default)]
pub(super) struct Cost {
    pub(super) progs: ProgStats,
    /// Attach points by program id, from the process's BPF links.
    pub(super) names: BTreeMap<u32, String>,
    /// CPU time of all the process's threads (schedstat), ns.
    pub(super) cpu_ns: u64,
    /// utime + stime from /proc/<pid>/stat, in ns (tick resolution).
    pub(super) ticks_ns: u64,
}

impl Cost {
    pub(super) fn read(pid: u32) -> Result<Self> {
        let mut progs = ProgStats::new();
        let mut names = BTreeMap::new();
        let dir = format!("/proc/{pid}/fdinfo");
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
            let Ok(entry) = entry else { continue };
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            if let Some((id, run_time, runs)) = parse_prog_fdinfo(&text) {
                progs.insert(id, (run_time, runs));
            } else if let Some((id, name)) = parse_link_fdinfo(&text) {
                names.insert(id, name);
            }
        }
        let cpu_ns = task_cpu_ns(pid);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ticks: u64 = stat
            .rfind(')')
            .map(|i| &stat[i + 1..])
            .map(|rest| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        let hz = clock_ticks();
        Ok(Self {
            progs,
            names,
            cpu_ns,
            ticks_ns: ticks * (1_000_000_000 / hz),
        })
    }

    pub(super) fn since(&self, before: &Cost) -> Cost {
        let progs = self
            .progs
            .iter()
            .map(|(id, (time, runs))| {
                let (t0, r0) = before.progs.get(id).copied().unwrap_or((0, 0));
                (*id, (time.saturating_sub(t0), runs.saturating_sub(r0)))
            })
            .collect();
        Cost {
            progs,
            names: self.names.clone(),
            cpu_ns: self.cpu_ns.saturating_sub(before.cpu_ns),
            ticks_ns: self.ticks_ns.saturating_sub(before.ticks_ns),
        }
    }

    pub(super) fn bpf_ns(&self) -> u64 {
        self.progs.values().map(|(t, _)| t).sum()
    }

    pub(super) fn bpf_runs(&self) -> u64 {
        self.progs.values().map(|(_, r)| r).sum()
    }
}

/// `(prog_id, run_time_ns, run_cnt)` from a BPF program fd's fdinfo (links
/// and maps have no run_time_ns).
pub(super) fn parse_prog_fdinfo(text: &str) -> Option<(u32, u64, u64)> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let run_time = field("run_time_ns")?;
    Some((
        u32::try_from(field("prog_id")?).ok()?,
        run_time,
        field("run_cnt")?,
    ))
}

/// `(prog_id, tp_name)` from a BPF link's fdinfo: where the program is
/// attached (program names are cut to 15 bytes).
pub(super) fn parse_link_fdinfo(text: &str) -> Option<(u32, String)> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
    };
    field("link_type")?;
    Some((
        field("prog_id")?.parse().ok()?,
        field("tp_name")?.to_owned(),
    ))
}

/// Names of the loaded BPF programs, by id.
pub(super) fn program_names() -> HashMap<u32, String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|info| {
            (
                info.id(),
                info.name_as_str().unwrap_or("(unnamed)").to_owned(),
            )
        })
        .collect()
}

/// Keeps the kernel's BPF run-time statistics on while alive
/// (BPF_ENABLE_STATS; the kernel turns them off when the last such fd
/// closes, even if the bench dies).
pub(super) fn enable_bpf_stats() -> Result<OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|err| anyhow!("BPF_ENABLE_STATS failed: {err}; the kernel needs ≥ 5.8"))
}

pub(super) struct Bpftrace {
    pub(super) path: PathBuf,
    pub(super) script: PathBuf,
    pub(super) version: String,
}

impl Bpftrace {
    /// Finds bpftrace, installing it with apt-get when allowed; the error
    /// says why there is no reference.
    pub(super) fn find(install: bool, work: &Path) -> Result<Self, String> {
        let mut path = find_in_path("bpftrace");
        if path.is_none() && install {
            if find_in_path("apt-get").is_none() {
                return Err("bpftrace is not installed and there is no apt-get".to_owned());
            }
            eprintln!("bench: bpftrace is missing; installing it (the reference for figure 1)");
            let apt = |args: &[&str]| {
                let mut apt = cmd("apt-get", args);
                apt.env("DEBIAN_FRONTEND", "noninteractive");
                run(&mut apt, "")
            };
            if apt(&["install", "-y", "bpftrace"]).is_err() {
                let _ = apt(&["update"]);
                let _ = apt(&["install", "-y", "bpftrace"]);
            }
            path = find_in_path("bpftrace");
        }
        let Some(path) = path else {
            return Err(if install {
                "bpftrace could not be installed (`apt-get install bpftrace` failed)".to_owned()
            } else {
                "bpftrace is not installed (--no-install)".to_owned()
            });
        };
        let version = capture(&mut cmd(&path.to_string_lossy(), ["--version"]), "")
            .map_or_else(|_| "bpftrace".to_owned(), |v| v.trim().to_owned());
        let script = work.join("ledger.bt");
        std::fs::write(&script, BPFTRACE_SCRIPT)
            .map_err(|e| format!("writing {}: {e}", script.display()))?;
        Ok(Self {
            path,
            script,
            version,
        })
    }

    pub(super) fn start(&self, tx: &Sender<Line>, rx: &Receiver<Line>) -> Result<Spawned> {
        let mut command = Command::new(&self.path);
        command.arg(&self.script);
        let mut tracer = Spawned::spawn(command, Kind::Tracer, Source::Tracer, tx)?;
        match wait_line(
            rx,
            Source::Tracer,
            Duration::from_secs(120),
            "bpftrace's BEGIN probe",
            |text| text == "ready",
            |_| {},
        ) {
            Ok(_) => Ok(tracer),
            Err(err) => {
                tracer.stop();
                Err(anyhow::Error::new(err)
                    .context(format!("bpftrace stderr: {}", tracer.stderr_tail())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_of_a_program_and_of_a_link() {
        let prog = "pos:\t0\nflags:\t02000002\nprog_type:\t5\nprog_id:\t623\n\
                    run_time_ns:\t1500\nrun_cnt:\t3\nverified_insns:\t17\n";
        assert_eq!(parse_prog_fdinfo(prog), Some((623, 1500, 3)));
        let link = "pos:\t0\nlink_type:\traw_tracepoint\nlink_id:\t7\nprog_id:\t623\n";
        assert_eq!(parse_prog_fdinfo(link), None);
    }

    #[test]
    fn link_fdinfo_names_the_attach_point() {
        let link = "pos:\t0\nlink_type:\tperf\nlink_id:\t3817\nprog_tag:\t4fc2\n\
                    prog_id:\t4484\ntp_name:\tsys_enter_wait4\nevent_type:\ttracepoint\n";
        assert_eq!(
            parse_link_fdinfo(link),
            Some((4484, "sys_enter_wait4".to_owned()))
        );
        assert_eq!(parse_link_fdinfo("prog_id:\t1\nrun_time_ns:\t5\n"), None);
    }

    #[test]
    fn cost_deltas_per_program() {
        let mut before = Cost::default();
        before.progs.insert(1, (100, 2));
        before.cpu_ns = 1000;
        let mut after = Cost::default();
        after.progs.insert(1, (400, 5));
        after.progs.insert(2, (50, 1));
        after.cpu_ns = 4000;
        let delta = after.since(&before);
        assert_eq!(delta.bpf_ns(), 350);
        assert_eq!(delta.bpf_runs(), 4);
        assert_eq!(delta.cpu_ns, 3000);
    }
}
