use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use zombie_trace::model::Change;
use zombie_trace::report::{Alert, AlertTracker, Filter, Pressure, Report, Snapshot};
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
    /// Stop by itself after this many seconds (with a final report).
    #[arg(long, value_parser = positive_seconds)]
    duration: Option<f64>,
    /// Ring buffer size in bytes (power of two, at least 4096). Raise it if
    /// reports show lost events.
    #[arg(long, default_value_t = DEFAULT_RING_BYTES)]
    ring_bytes: u32,
    #[command(flatten)]
    filter: FilterArgs,
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
        Command::Watch(args) => watch(args),
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

fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    if let Some(problem) = check::privilege_problem() {
        eprintln!("zombie-trace: {problem}");
        return Ok(ExitCode::FAILURE);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(watch_loop(args))
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

async fn watch_loop(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let filter = args.filter.filter();
    let mut session = Session::start(TracerOptions {
        ring_bytes: args.ring_bytes,
        ..TracerOptions::default()
    })?;
    let mut out = Output {
        json: args.json,
        out: std::io::stdout(),
    };
    let mut alerts = AlertTracker::new(args.threshold);
    alerts.seed(session.ledger());
    let now = procfs::boot_time_now_ns()?;
    for alert in alerts.take(session.ledger(), &filter, now) {
        out.alert(&alert)?;
    }

    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let deadline = args
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(args.interval));
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
                session.drain(&mut |change: Change| alerts.on_change(&change));
                let now = procfs::boot_time_now_ns()?;
                for alert in alerts.take(session.ledger(), &filter, now) {
                    out.alert(&alert)?;
                }
            }
            _ = ticker.tick() => {
                let now = procfs::boot_time_now_ns()?;
                out.report(&Report::new(session.ledger(), &filter, now, session.lost_by_reason()))?;
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            () = until_deadline => break,
        }
    }
    // Final report: whatever is still queued, then the ledger as it stands.
    session.drain(&mut |change: Change| alerts.on_change(&change));
    let now = procfs::boot_time_now_ns()?;
    out.report(&Report::new(
        session.ledger(),
        &filter,
        now,
        session.lost_by_reason(),
    ))?;
    Ok(ExitCode::SUCCESS)
}
