//! The command line: shared arguments and output here, one file per
//! subcommand.

mod check;
mod explain;
mod generate;
mod latency;
mod record;
mod report;
mod run;
mod serve;
mod snapshot;
mod top;
mod watch;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use zombie_trace::engine::live::Session;
use zombie_trace::host::podnames::{PodNames, PodNamesSource};
use zombie_trace::kernel::check::privilege_problem_of;
use zombie_trace::kernel::tracer::TracerOptions;
use zombie_trace::recording::records::Header;
use zombie_trace::views::report::Filter;
use zombie_trace_common::DEFAULT_RING_BYTES;

/// Find parent processes whose exited children are never reaped.
#[derive(Debug, Parser)]
#[command(
    version,
    long_version = zombie_trace::build_info::LONG_VERSION,
    about,
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Trace live (needs root): report parents that owe reaps, and alert.
    Watch(watch::WatchArgs),
    /// Trace live (needs root): how long children stay zombies before they are
    /// released, as histograms per parent (or command) and way of release.
    Latency(latency::LatencyArgs),
    /// Why one process leaks zombies, how long until the PID space runs out, and
    /// what will (and will not) help. Live with root, /proc-only otherwise.
    Explain(explain::ExplainArgs),
    /// Record a live session into a file (needs root), for `report` later.
    Record(record::RecordArgs),
    /// Replay a recording (no privileges): what happened, the `watch`
    /// output it would have given, an HTML page with a timeline.
    Report(report::ReportArgs),
    /// Run a command as a test of its process tree's reaping (needs root):
    /// fails when a zombie in the tree stays unreaped longer than the grace.
    Run(run::RunArgs),
    /// Run as an agent (needs root): Prometheus metrics, a health check and
    /// the current report over HTTP, on loopback unless told otherwise.
    Serve(serve::ServeArgs),
    /// One live screen, like `top` (needs root): parents owing reaps with
    /// trends, PID pressure, a diagnosis of the selected one, alerts. With
    /// `--replay FILE`, the same screen over a recording (no privileges).
    Top(top::TopArgs),
    /// Zombies grouped by the parent that owes the reap, from /proc only (no privileges).
    Snapshot(snapshot::SnapshotArgs),
    /// What this kernel and these privileges allow, and the fix for each missing part.
    Check(check::CheckArgs),
}

pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // `generate` is parsed beside the documented commands but is not one of
    // them: the man pages and completions it renders from `Cli` never offer it.
    let matches = generate::beside(Cli::command()).get_matches();
    if let Some(args) = generate::requested(&matches) {
        return finish(args.and_then(generate::run));
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    let result = match cli.command {
        Command::Watch(args) => traced("watch", watch::run(args)),
        Command::Latency(args) => traced("latency", latency::run(args)),
        Command::Explain(args) => explain::run(args),
        Command::Record(args) => traced("record", record::run(args)),
        Command::Report(args) => report::run(args),
        Command::Run(args) => run::main(args),
        Command::Serve(args) => traced("serve", serve::run(args)),
        Command::Top(args) => top::run(args),
        Command::Snapshot(args) => snapshot::run(args),
        Command::Check(args) => check::run(args),
    };
    finish(result)
}

fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("zombie-trace: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exit status for bad input (a PID that is not a live process, a file
/// that is not a recording).
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only parents with this PID.
    #[arg(long)]
    pid: Option<u32>,
    /// Only parents whose command name contains this text.
    #[arg(long)]
    comm: Option<String>,
    /// Only parents in this cgroup or below it (a path as /proc/PID/cgroup
    /// shows it, e.g. `/kubepods.slice`).
    #[arg(long, value_name = "PATH")]
    cgroup: Option<String>,
    /// Only parents in this systemd unit (e.g. `cron.service`).
    #[arg(long, value_name = "NAME")]
    unit: Option<String>,
    /// Only parents in this container: its id, or the first digits of it.
    #[arg(long, value_name = "ID", value_parser = container_id_prefix)]
    container: Option<String>,
}

/// [`FilterArgs`] alone, to read the flags a recording keeps.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
struct RecordedFilterFlags {
    #[command(flatten)]
    filter: FilterArgs,
}

impl FilterArgs {
    /// Whether no filter flag was given.
    pub fn is_empty(&self) -> bool {
        self.to_flags().is_empty()
    }

    /// The flags that give this filter (`["--unit", "cron.service"]`).
    pub fn to_flags(&self) -> Vec<String> {
        self.filter().to_flags()
    }

    /// The filter a recording was made with, from its flags.
    pub fn from_flags(flags: &[String]) -> Result<Self, String> {
        RecordedFilterFlags::try_parse_from(flags)
            .map(|parsed| parsed.filter)
            .map_err(|e| format!("the recording's filter flags {flags:?} do not parse: {e}"))
    }

    pub fn filter(&self) -> Filter {
        Filter {
            pid: self.pid,
            comm: self.comm.clone(),
            cgroup: self.cgroup.clone(),
            unit: self.unit.clone(),
            container: self.container.clone(),
        }
    }
}

/// The parents a view of a recording shows: the command line's filter;
/// else, unless `all`, the one the recording was made with (said in one
/// line on stderr).
pub fn replayed_filter(given: &FilterArgs, all: bool, header: &Header) -> Result<Filter, String> {
    if !given.is_empty() || all || header.filter_flags.is_empty() {
        return Ok(given.filter());
    }
    let recorded = FilterArgs::from_flags(&header.filter_flags)?;
    eprintln!(
        "zombie-trace: recorded for {}: showing those parents (--all shows every parent)",
        header.filter_flags.join(" ")
    );
    Ok(recorded.filter())
}

/// A container id or its first digits: lowercase hex, at most 64.
fn container_id_prefix(s: &str) -> Result<String, String> {
    let id = s.trim().to_ascii_lowercase();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{s:?} is not a container id: give its hex digits (e.g. the 12 `docker ps` shows)"
        ));
    }
    Ok(id)
}

/// What every live-tracing command takes.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Stop by itself after this many seconds, with the final output (default:
    /// at SIGINT or SIGTERM).
    #[arg(long, value_parser = positive_seconds)]
    duration: Option<f64>,
    /// Ring buffer size in bytes (power of two, at least 4096). Raise it if
    /// reports show lost events.
    #[arg(long, default_value_t = DEFAULT_RING_BYTES)]
    ring_bytes: u32,
    /// Name pods and containers (pod, namespace, container) from the
    /// kubelet: a node's log root (`/var/log`, whose `pods/` and
    /// `containers/` the kubelet names) or its read-only port
    /// (`http://127.0.0.1:10255`). Off by default: pods and containers are
    /// named by UID and id, from their cgroup.
    #[arg(long, value_name = "SOURCE", value_parser = PodNamesSource::parse)]
    pod_names: Option<PodNamesSource>,
}

impl TraceArgs {
    pub fn options(&self) -> TracerOptions {
        TracerOptions {
            ring_bytes: self.ring_bytes,
            ..TracerOptions::default()
        }
    }

    pub fn start_session(&self) -> anyhow::Result<Session> {
        let mut session = Session::start(self.options())?;
        self.name_pods(&mut session);
        Ok(session)
    }

    /// Turns `--pod-names` on in `session`.
    pub fn name_pods(&self, session: &mut Session) {
        if let Some(names) = open_pod_names(self.pod_names.as_ref()) {
            session.name_pods(names);
        }
    }

    pub fn duration(&self) -> Option<Duration> {
        self.duration.map(Duration::from_secs_f64)
    }
}

/// Opens `--pod-names`'s source, saying in one line where names come from,
/// or why they cannot (names are then left out, and asked again later).
pub fn open_pod_names(source: Option<&PodNamesSource>) -> Option<PodNames> {
    let source = source?.clone();
    let described = source.describe();
    let (names, note) = PodNames::open(source);
    match note {
        Some(note) => eprintln!("zombie-trace: {note}"),
        None => eprintln!("zombie-trace: naming pods and containers from {described}"),
    }
    Some(names)
}

pub fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

/// Runs the live-tracing command `name`: privileges first, then its loop in
/// a runtime.
pub fn traced(
    name: &str,
    command: impl Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    if let Some(problem) = privilege_problem_of(name) {
        eprintln!("zombie-trace: {problem}");
        return Ok(ExitCode::FAILURE);
    }
    runtime()?.block_on(command)
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Where a command's objects go: JSON Lines or text, flushed at once.
pub struct Output {
    json: bool,
    out: std::io::Stdout,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            out: std::io::stdout(),
        }
    }

    pub fn json(&mut self, value: &impl serde::Serialize) -> std::io::Result<()> {
        let mut out = self.out.lock();
        serde_json::to_writer(&mut out, value)?;
        writeln!(out)?;
        out.flush()
    }

    pub fn text(&mut self, text: &str) -> std::io::Result<()> {
        let mut out = self.out.lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// `value` as one JSON line, or `text` of it.
    pub fn either<T: serde::Serialize>(
        &mut self,
        value: &T,
        text: impl FnOnce(&T) -> String,
    ) -> std::io::Result<()> {
        if self.json {
            self.json(value)
        } else {
            self.text(&text(value))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_flags_survive_a_recording() {
        let given = RecordedFilterFlags::try_parse_from([
            "--unit",
            "cron.service",
            "--container",
            "4C1F09A2B7D3",
            "--pid",
            "42",
        ])
        .expect("flags parse")
        .filter;
        let flags = given.to_flags();
        assert_eq!(
            flags,
            [
                "--pid",
                "42",
                "--unit",
                "cron.service",
                "--container",
                "4c1f09a2b7d3"
            ]
        );
        let back = FilterArgs::from_flags(&flags).expect("parse back");
        assert_eq!(back.to_flags(), flags);
        assert_eq!(back.filter().unit.as_deref(), Some("cron.service"));
        assert!(FilterArgs::from_flags(&[]).expect("none").is_empty());
        assert!(FilterArgs::from_flags(&["--nope".to_owned()]).is_err());
    }
}
