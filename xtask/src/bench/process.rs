//! Binaries, clocks, `/proc`, and the processes the bench starts.

use super::*;

pub(super) struct Bins {
    pub(super) zombie_trace: PathBuf,
    pub(super) reaper: PathBuf,
    pub(super) fork_storm: PathBuf,
    pub(super) zombie_burst: PathBuf,
    pub(super) exit_latency: PathBuf,
}

impl Bins {
    /// The release binaries in `dir`; zombie-trace is `tracer` when given.
    pub(super) fn new(dir: &Path, tracer: Option<&Path>) -> Result<Self> {
        let bin = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(anyhow!(
                    "{} was not built; run `cargo build --release -p zombie-trace -p zombie-trace-tests --bins`",
                    path.display()
                ))
            }
        };
        Ok(Self {
            zombie_trace: match tracer {
                Some(path) => path.to_path_buf(),
                None => bin("zombie-trace")?,
            },
            reaper: bin("reaper")?,
            fork_storm: bin("fork-storm")?,
            zombie_burst: bin("zombie-burst")?,
            exit_latency: bin("exit-latency")?,
        })
    }

    /// `reaper <workload> args...`.
    pub(super) fn harness(&self, workload: &Path, args: &[String]) -> Command {
        let mut command = Command::new(&self.reaper);
        command.arg(workload).args(args);
        command
    }

    pub(super) fn watch(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.zombie_trace);
        command.arg("watch").args(args);
        command
    }
}

/// Tasks in use on the host: the denominator of `/proc/loadavg` field 4.
pub(super) fn host_tasks() -> Result<u32> {
    let text = std::fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    parse_loadavg_tasks(&text).ok_or_else(|| anyhow!("cannot parse /proc/loadavg: {text:?}"))
}

pub(super) fn parse_loadavg_tasks(text: &str) -> Option<u32> {
    let (_, total) = text.split_whitespace().nth(3)?.split_once('/')?;
    total.parse().ok()
}

/// Waits until the host is quiet and `planned` more tasks stay within
/// [`TASK_LIMIT`]; `Ok(Err(why))` when that did not happen in time.
pub(super) fn wait_for_quiet(planned: u32, timeout: Duration) -> Result<Result<u32, String>> {
    if planned + QUIET_TASKS > TASK_LIMIT + EXTRA_TASKS {
        return Ok(Err(format!(
            "{planned} tasks planned: more than the {TASK_LIMIT}-task limit allows on top of a quiet host"
        )));
    }
    let deadline = Instant::now() + timeout;
    loop {
        let tasks = host_tasks()?;
        if tasks <= QUIET_TASKS && tasks + planned <= TASK_LIMIT {
            return Ok(Ok(tasks));
        }
        if Instant::now() >= deadline {
            return Ok(Err(format!(
                "the host stayed busy ({tasks} tasks; needs ≤ {QUIET_TASKS} and ≤ {} with the \
                 {planned} planned) for {} s",
                TASK_LIMIT,
                timeout.as_secs()
            )));
        }
        eprintln!(
            "bench: host has {tasks} tasks; waiting for ≤ {QUIET_TASKS} before creating {planned}"
        );
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// `/proc/<pid>/stat` fields after the command name: (state, ppid).
pub(super) fn proc_state(pid: u32) -> Option<(char, u32)> {
    let stat = stat(pid)?;
    Some((stat.state, u32::try_from(stat.ppid).ok()?))
}

/// A `/proc/<pid>/status` value in KiB (e.g. `VmHWM`).
pub(super) fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

// ---------------------------------------------------------------------------
// Processes the bench starts

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// zombie-trace or bpftrace: stopped with SIGINT.
    Tracer,
    /// `reaper <workload>`: stopped by closing its stdin.
    Harness,
}

/// A process the bench started, its stdout lines going to the bench's
/// channel. Stopped (by its PID) and waited for when dropped.
pub(super) struct Spawned {
    pub(super) kind: Kind,
    pub(super) process: Process,
    /// The workload's own PID (from its ready line), for the harness.
    pub(super) workload_pid: Option<u32>,
}

impl Spawned {
    pub(super) fn spawn(
        mut command: Command,
        kind: Kind,
        source: Source,
        tx: &Sender<Line>,
    ) -> Result<Self> {
        let name = display(&command);
        eprintln!("$ {name}");
        let (process, out) = Process::spawn(&mut command, name.clone(), kind == Kind::Harness)
            .with_context(|| format!("could not start `{name}`"))?;
        forward_lines(out, source, tx.clone());
        Ok(Self {
            kind,
            process,
            workload_pid: None,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The command line, as messages quote it.
    pub(super) fn name(&self) -> &str {
        self.process.name()
    }

    /// The end of what the process wrote to stderr.
    pub(super) fn stderr_tail(&self) -> String {
        self.process.stderr_tail(8)
    }

    pub(super) fn send(&mut self, line: &str) -> Result<()> {
        self.process
            .send_line(line)
            .with_context(|| format!("writing to `{}`", self.process.name()))
    }

    pub(super) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// Stops the process and waits for it; escalates by PID on timeout.
    pub(super) fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.process.status() {
            return Some(status);
        }
        let pid = self.pid();
        match self.kind {
            Kind::Tracer => {
                for sig in [libc::SIGINT, libc::SIGTERM] {
                    signal(pid, sig);
                    if let Some(status) = self.wait_exit(Duration::from_secs(10)) {
                        return Some(status);
                    }
                }
            }
            Kind::Harness => {
                self.process.close_stdin();
                // Reaping tens of thousands of zombies takes a moment.
                if let Some(status) = self.wait_exit(Duration::from_secs(60)) {
                    return Some(status);
                }
                // The harness forwards SIGTERM to the workload, which cleans up.
                signal(pid, libc::SIGTERM);
                if let Some(status) = self.wait_exit(Duration::from_secs(30)) {
                    return Some(status);
                }
                // The workload's orphans go to the harness, which reaps them.
                if let Some(workload) = self.workload_pid
                    && proc_state(workload).is_some_and(|(_, ppid)| ppid == pid)
                {
                    signal(workload, libc::SIGKILL);
                    if let Some(status) = self.wait_exit(Duration::from_secs(30)) {
                        return Some(status);
                    }
                }
            }
        }
        eprintln!(
            "bench: `{}` did not stop; killing pid {pid}",
            self.process.name()
        );
        signal(pid, libc::SIGKILL);
        self.wait_exit(Duration::from_secs(10))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(super) fn parse_json(text: &str) -> Result<Value> {
    serde_json::from_str(text).with_context(|| format!("not JSON: {text:?}"))
}

/// Starts `reaper <workload> args` and waits for its ready line.
pub(super) fn start_workload(
    bins: &Bins,
    workload: &Path,
    args: &[String],
    tx: &Sender<Line>,
    rx: &Receiver<Line>,
    timeout: Duration,
) -> Result<(Spawned, Value)> {
    let mut harness = Spawned::spawn(
        bins.harness(workload, args),
        Kind::Harness,
        Source::Workload,
        tx,
    )?;
    let ready = wait_line(
        rx,
        Source::Workload,
        timeout,
        "the workload's ready line",
        |_| true,
        |_| {},
    )
    .map_err(anyhow::Error::from)
    .and_then(|line| parse_ready(line.text.as_deref().unwrap_or_default()).map_err(|e| anyhow!(e)));
    match ready {
        Ok(ready) => {
            harness.workload_pid = ready["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
            Ok((harness, ready))
        }
        Err(err) => {
            harness.stop();
            Err(err.context(format!("stderr: {}", harness.stderr_tail())))
        }
    }
}

/// Starts the burst workload (`zombie-burst TOTAL CAP PARENTS` under the
/// reaper harness) and waits for its ready line.
pub(super) fn start_burst(
    bins: &Bins,
    total: u32,
    cap: u32,
    parents: u32,
    tx: &Sender<Line>,
    rx: &Receiver<Line>,
) -> Result<(Spawned, Value)> {
    start_workload(
        bins,
        &bins.zombie_burst,
        &[total.to_string(), cap.to_string(), parents.to_string()],
        tx,
        rx,
        Duration::from_secs(300),
    )
}

/// Starts `zombie-trace watch args` and waits for its first output line;
/// returns it with the time from spawn to that line.
pub(super) fn start_watch(
    bins: &Bins,
    args: &[&str],
    tx: &Sender<Line>,
    rx: &Receiver<Line>,
) -> Result<(Spawned, Line, Duration)> {
    let spawned_at = Instant::now();
    let mut tracer = Spawned::spawn(bins.watch(args), Kind::Tracer, Source::Tracer, tx)?;
    match wait_line(
        rx,
        Source::Tracer,
        Duration::from_secs(60),
        "zombie-trace's first line",
        |_| true,
        |_| {},
    ) {
        Ok(line) => Ok((tracer, line, spawned_at.elapsed())),
        Err(err) => {
            tracer.stop();
            Err(anyhow::Error::new(err)
                .context(format!("zombie-trace stderr: {}", tracer.stderr_tail())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg_task_count() {
        assert_eq!(parse_loadavg_tasks("0.51 1.39 1.67 1/84 8196\n"), Some(84));
        assert_eq!(parse_loadavg_tasks("garbage"), None);
    }

    #[test]
    fn proc_state_of_self() {
        let me = std::process::id();
        assert!(proc_state(me).is_some_and(|(state, ppid)| state != 'Z' && ppid > 0));
        assert!(task_cpu_ns(me) > 0);
        assert_eq!(task_cpu_ns(0), 0);
    }
}
