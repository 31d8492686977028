use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};
use zombie_trace::diagnosis::{self, GrowthTracker};
use zombie_trace::latency::{GroupBy, IntervalLatency, LatencyView};
use zombie_trace::model::Change;
use zombie_trace::report::{
    Alert, AlertDiagnosis, AlertTracker, Filter, Pressure, Report, Snapshot,
};
use zombie_trace::session::{Session, ledger_from_proc};
use zombie_trace::tracer::TracerOptions;
use zombie_trace::{check, procfs};
use zombie_trace_common::DEFAULT_RING_BYTES;

/// Find parent processes whose exited children are never reaped.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Trace live (needs root): report parents that owe reaps, and alert.
    Watch(WatchArgs),
    /// Trace live (needs root): how long children stay zombies before they are
    /// released, as histograms per parent (or command) and way of release.
    Latency(LatencyArgs),
    /// Why one process leaks zombies, how long until the PID space runs out, and
    /// what will (and will not) help. Live with root, /proc-only otherwise.
    Explain(ExplainArgs),
    /// Zombies grouped by the parent that owes the reap, from /proc only (no privileges).
    Snapshot(SnapshotArgs),
    /// What this kernel and these privileges allow, and the fix for each missing part.
    Check {
        /// Write JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct FilterArgs {
    /// Only parents with this PID.
    #[arg(long)]
    pid: Option<u32>,
    /// Only parents whose command name contains this text.
    #[arg(long)]
    comm: Option<String>,
}

impl FilterArgs {
    fn filter(&self) -> Filter {
        Filter {
            pid: self.pid,
            comm: self.comm.clone(),
        }
    }
}

#[derive(Debug, Args)]
struct WatchArgs {
    /// Write JSON Lines (one report or alert object per line) instead of text.
    #[arg(long)]
    json: bool,
    /// Seconds between reports.
    #[arg(long, default_value_t = 1.0, value_parser = positive_seconds)]
    interval: f64,
    /// Alert when a parent reaches this many pending zombies.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    threshold: u32,
    #[command(flatten)]
    trace: TraceArgs,
    #[command(flatten)]
    filter: FilterArgs,
}

/// What every live-tracing command takes.
#[derive(Debug, Args)]
struct TraceArgs {
    /// Stop by itself after this many seconds, with the final output (default:
    /// at SIGINT or SIGTERM).
    #[arg(long, value_parser = positive_seconds)]
    duration: Option<f64>,
    /// Ring buffer size in bytes (power of two, at least 4096). Raise it if
    /// reports show lost events.
    #[arg(long, default_value_t = DEFAULT_RING_BYTES)]
    ring_bytes: u32,
}

impl TraceArgs {
    fn start_session(&self) -> anyhow::Result<Session> {
        Ok(Session::start(TracerOptions {
            ring_bytes: self.ring_bytes,
            ..TracerOptions::default()
        })?)
    }
}

#[derive(Debug, Args)]
struct LatencyArgs {
    /// Write one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// One histogram per reaping process, or per reaping command name.
    #[arg(long, value_enum, default_value_t = By::Parent)]
    by: By,
    #[command(flatten)]
    trace: TraceArgs,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum By {
    Parent,
    Comm,
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// The process to explain (a parent, or a zombie: then its parent).
    #[arg(allow_hyphen_values = true)]
    pid: String,
    /// Write JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Seconds to trace before diagnosing (with root), to see waits and
    /// measure the zombie growth rate.
    #[arg(long, default_value_t = 2.0, value_parser = positive_seconds)]
    observe: f64,
    /// Diagnose from /proc only, even with root.
    #[arg(long)]
    proc_only: bool,
}

#[derive(Debug, Args)]
struct SnapshotArgs {
    /// Write JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Watch(args) => traced(watch_loop(args)),
        Command::Latency(args) => traced(latency_loop(args)),
        Command::Explain(args) => explain(args),
        Command::Snapshot(args) => snapshot(args),
        Command::Check { json } => check_command(json),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("zombie-trace: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_command(json: bool) -> anyhow::Result<ExitCode> {
    let checks = check::run_checks();
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", check::render_text(&checks));
    }
    Ok(if check::worst_status(&checks) != check::Status::Missing {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Exit status for a PID that is not a live process.
const EXIT_USAGE: u8 = 2;

fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let live = !args.proc_only && check::privilege_problem().is_none();
    let result = diagnosis::parse_pid(&args.pid).and_then(|pid| {
        if live {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(diagnosis::ExplainError::Runtime)?;
            runtime.block_on(diagnosis::explain_live(
                pid,
                Duration::from_secs_f64(args.observe),
                TracerOptions::default(),
            ))
        } else {
            diagnosis::explain_proc_only(pid)
        }
    });
    let explanation = match result {
        Ok(explanation) => explanation,
        Err(err) if err.is_usage() => {
            eprintln!("zombie-trace: {err}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        Err(err) => return Err(err.into()),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &explanation)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", explanation.to_text())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn snapshot(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    let now = procfs::boot_time_now_ns()?;
    let (ledger, scan) = ledger_from_proc(now)?;
    let pid_max = procfs::pid_max()?;
    let tasks = Pressure::read().map_or(scan.tasks, |p| p.tasks);
    let snapshot = Snapshot::new(&ledger, &args.filter.filter(), tasks, pid_max);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &snapshot)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", snapshot.to_text())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a live-tracing command: privileges first, then its loop in a runtime.
fn traced(command: impl Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    if let Some(problem) = check::privilege_problem() {
        eprintln!("zombie-trace: {problem}");
        return Ok(ExitCode::FAILURE);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(command)
}

/// Where reports and alerts go.
struct Output {
    json: bool,
    out: std::io::Stdout,
}

impl Output {
    fn write_json(&mut self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        let mut out = self.out.lock();
        serde_json::to_writer(&mut out, value)?;
        writeln!(out)?;
        out.flush()?;
        Ok(())
    }

    fn write_text(&mut self, text: &str) -> anyhow::Result<()> {
        let mut out = self.out.lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }

    fn alert(&mut self, alert: &Alert) -> anyhow::Result<()> {
        if self.json {
            self.write_json(alert)
        } else {
            self.write_text(&alert.to_text())
        }
    }

    fn report(&mut self, report: &Report) -> anyhow::Result<()> {
        if self.json {
            self.write_json(report)
        } else {
            self.write_text(&(report.to_text() + "\n"))
        }
    }
}

/// What a live-tracing command does with what the session sees.
trait Consumer {
    /// One ledger change (the hot path).
    fn on_change(&mut self, change: &Change);
    /// After each batch of changes.
    fn after_batch(&mut self, _session: &Session) -> anyhow::Result<()> {
        Ok(())
    }
    /// At each tick of the report interval.
    fn on_tick(&mut self, _session: &Session) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Feeds `session` to `consumer` until SIGINT, SIGTERM or `duration`
/// seconds, ticking every `interval` seconds if given (else every
/// [`MAINTAIN_INTERVAL`]); what is still queued at the end is applied too.
/// Each tick first keeps the ledger exact ([`Session::maintain`]: a resync
/// with /proc after lost events), so a report is never off for longer than
/// one interval.
async fn trace(
    session: &mut Session,
    duration: Option<f64>,
    interval: Option<f64>,
    consumer: &mut impl Consumer,
) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // A closed terminal or a supervisor's HUP stops tracing cleanly too.
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let deadline = duration.map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s));
    let mut ticker =
        tokio::time::interval(interval.map_or(MAINTAIN_INTERVAL, Duration::from_secs_f64));
    // The first tick is immediate: the first report comes at once.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ready = session.readable() => {
                ready?;
                session.drain(&mut |change: Change| consumer.on_change(&change));
                consumer.after_batch(session)?;
            }
            _ = ticker.tick() => {
                // Everything up to the tick is in the report. (A tick that
                // comes before the drain timer would otherwise starve the
                // drain when the interval is that short.)
                session.drain(&mut |change: Change| consumer.on_change(&change));
                consumer.after_batch(session)?;
                session.maintain(&mut |change: Change| consumer.on_change(&change))?;
                if interval.is_some() {
                    consumer.on_tick(session)?;
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
            () = until_deadline => break,
        }
    }
    session.drain(&mut |change: Change| consumer.on_change(&change));
    session.maintain(&mut |change: Change| consumer.on_change(&change))?;
    Ok(())
}

/// How often a command without a report interval keeps its ledger exact.
const MAINTAIN_INTERVAL: Duration = Duration::from_secs(1);

/// `watch`: alerts as they fire, a report every interval.
struct Watcher {
    filter: Filter,
    out: Output,
    alerts: AlertTracker,
    latency: IntervalLatency,
    growth: GrowthTracker,
}

impl Watcher {
    fn alerts(&mut self, session: &Session) -> anyhow::Result<()> {
        let now = procfs::boot_time_now_ns()?;
        for mut alert in self.alerts.take(session.ledger(), &self.filter, now) {
            // Cold path: an alert is rare, a diagnosis reads a few /proc files.
            alert.diagnosis = diagnosis::diagnose(
                session.ledger(),
                alert.parent.pid,
                true,
                Some(&self.growth),
                now,
            )
            .as_ref()
            .map(AlertDiagnosis::from);
            self.out.alert(&alert)?;
        }
        Ok(())
    }

    /// The report on the ledger as it stands, with the interval's reap
    /// latencies; starts a new interval.
    fn report(&mut self, session: &Session) -> anyhow::Result<()> {
        let now = procfs::boot_time_now_ns()?;
        let mut report = Report::new(session.ledger(), &self.filter, now, &session.health());
        self.latency.annotate(&mut report.parents);
        self.latency.reset();
        self.growth.sample(session.ledger(), now);
        self.out.report(&report)
    }
}

impl Consumer for Watcher {
    fn on_change(&mut self, change: &Change) {
        self.alerts.on_change(change);
        self.latency.on_change(change);
    }

    fn after_batch(&mut self, session: &Session) -> anyhow::Result<()> {
        self.alerts(session)
    }

    fn on_tick(&mut self, session: &Session) -> anyhow::Result<()> {
        self.report(session)
    }
}

async fn watch_loop(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let mut session = args.trace.start_session()?;
    let mut watcher = Watcher {
        filter: args.filter.filter(),
        out: Output {
            json: args.json,
            out: std::io::stdout(),
        },
        alerts: AlertTracker::new(args.threshold),
        latency: IntervalLatency::default(),
        growth: GrowthTracker::default(),
    };
    watcher.alerts.seed(session.ledger());
    watcher.alerts(&session)?;
    trace(
        &mut session,
        args.trace.duration,
        Some(args.interval),
        &mut watcher,
    )
    .await?;
    // Final report: the ledger as it stands after the last events.
    watcher.report(&session)?;
    Ok(ExitCode::SUCCESS)
}

impl Consumer for LatencyView {
    fn on_change(&mut self, change: &Change) {
        LatencyView::on_change(self, change);
    }
}

async fn latency_loop(args: LatencyArgs) -> anyhow::Result<ExitCode> {
    let mut session = args.trace.start_session()?;
    let by = match args.by {
        By::Parent => GroupBy::Parent,
        By::Comm => GroupBy::Comm,
    };
    let mut view = LatencyView::new(by, args.filter.filter());
    let until = args
        .trace
        .duration
        .map_or_else(|| "Ctrl-C".to_owned(), |s| format!("{s} s or Ctrl-C"));
    eprintln!("zombie-trace: tracing reap latency (child exit to release) until {until}");
    let started = Instant::now();
    trace(&mut session, args.trace.duration, None, &mut view).await?;
    let now = procfs::boot_time_now_ns()?;
    let report = view.report(
        session.ledger(),
        now,
        started.elapsed().as_secs_f64(),
        session.lost_by_reason(),
    );
    let mut out = Output {
        json: args.json,
        out: std::io::stdout(),
    };
    if args.json {
        out.write_json(&report)?;
    } else {
        out.write_text(&report.to_text())?;
    }
    Ok(ExitCode::SUCCESS)
}
