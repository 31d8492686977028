//! `zombie-trace report FILE`: a recording replayed through the same engine
//! and views as the live commands. No privileges, any machine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use zombie_trace::engine::replay::{ReplayOptions, ReplayOutcome, replay};
use zombie_trace::engine::{Consumer, Context};
use zombie_trace::model::{Change, Moment};
use zombie_trace::recording::reader::{self, Opened};
use zombie_trace::render;
use zombie_trace::views::diagnosis::{Explanation, GrowthTracker, diagnose_traced};
use zombie_trace::views::incident::IncidentView;
use zombie_trace::views::latency::{GroupBy, LatencyView};
use zombie_trace::views::watch::WatchView;

use super::latency::{By, LatencyPrinter};
use super::watch::{WatchFlags, Watcher};
use super::{EXIT_USAGE, FilterArgs, Output, replayed_filter};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A recording from `zombie-trace record` or `watch --record`.
    file: PathBuf,
    /// Print exactly the JSON Lines `watch --json` printed live over the
    /// recorded period (with the same --interval and --threshold).
    #[arg(long)]
    json: bool,
    /// As `watch`'s (the same flags give the same lines).
    #[command(flatten)]
    flags: WatchFlags,
    /// Stop the replay at TIME: an offset from the start (`90s`, `+1h30m`) or
    /// a wall-clock time (`2026-12-01T15:04:05Z`); the views are as of then.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Show another view as of the end (or --at): `latency`, or
    /// `explain PID`.
    #[arg(long = "as", value_name = "VIEW", num_args = 1..=2)]
    view: Option<Vec<String>>,
    /// With `--as latency`: one histogram per reaping process (the default),
    /// command name, container, systemd unit or pod.
    #[arg(long, value_enum)]
    by: Option<By>,
    /// Write a self-contained HTML page (timeline, parents, latencies) to OUT.
    #[arg(long, value_name = "OUT")]
    html: Option<PathBuf>,
    /// Write a Chrome trace-event JSON file (ui.perfetto.dev) to OUT.
    #[arg(long, value_name = "OUT")]
    perfetto: Option<PathBuf>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Every parent, not only those the recording was made for (`record
    /// --unit ...`).
    #[arg(long)]
    all: bool,
}

/// Another view than the report, from `--as`.
enum AsView {
    Latency,
    Explain(u32),
}

fn parse_as(words: &[String]) -> Result<AsView, String> {
    match words {
        [v] if v == "latency" => Ok(AsView::Latency),
        [v, pid] if v == "explain" => pid
            .parse::<u32>()
            .ok()
            .filter(|&p| p > 0)
            .map(AsView::Explain)
            .ok_or_else(|| format!("`{pid}` is not a PID: `--as explain PID`")),
        [v] if v == "explain" => Err("`--as explain` needs the PID: `--as explain PID`".to_owned()),
        _ => Err(format!(
            "unknown view `{}`: use `--as latency` or `--as explain PID`",
            words.join(" ")
        )),
    }
}

/// `--at`: an offset from the start, or a wall-clock time, as CLOCK_BOOTTIME.
fn parse_at(text: &str, started: Moment) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(offset) = humantime::parse_duration(t.trim_start_matches('+')) {
        let ns = u64::try_from(offset.as_nanos()).unwrap_or(u64::MAX);
        return Ok(started.boot_ns.saturating_add(ns));
    }
    let wall = humantime::parse_rfc3339_weak(t).map_err(|_| {
        format!("`{text}` is not a time: give an offset (`90s`, `+1h30m`) or a UTC time (`2026-12-01T15:04:05Z`)")
    })?;
    let unix_ns = wall
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    if unix_ns < started.unix_ns {
        return Err(format!(
            "`{text}` is before the recording started ({})",
            zombie_trace::render::text::timestamp(started.wall())
        ));
    }
    Ok(started.boot_ns + (unix_ns - started.unix_ns))
}

/// Exits 2 with one line: the input cannot be used.
fn usage(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("zombie-trace: {message}");
    Ok(ExitCode::from(EXIT_USAGE))
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let opened = match reader::open(&args.file) {
        Ok(opened) => opened,
        Err(err) if err.is_usage() => return usage(err),
        Err(err) => return Err(err.into()),
    };
    let stop_at = match args
        .at
        .as_deref()
        .map(|t| parse_at(t, opened.header.started))
    {
        Some(Err(message)) => return usage(message),
        Some(Ok(at)) => Some(at),
        None => None,
    };
    let as_view = match args.view.as_deref().map(parse_as) {
        Some(Err(message)) => return usage(message),
        Some(Ok(AsView::Explain(_))) | None if args.by.is_some() => {
            return usage("--by groups the latency view: use it with `--as latency`");
        }
        Some(Ok(view)) => Some(view),
        None => None,
    };
    let filter = match replayed_filter(&args.filter, args.all, &opened.header) {
        Ok(filter) => filter,
        Err(message) => return usage(message),
    };
    let interval = args.flags.interval();
    let options = ReplayOptions {
        report_interval: Some(interval),
        stop_at_boot_ns: stop_at,
    };
    let out = Output::new(args.json);
    let outcome = match as_view {
        Some(AsView::Latency) => {
            let mut printer = LatencyPrinter {
                view: LatencyView::new(
                    args.by.map_or(GroupBy::Parent, GroupBy::from),
                    filter.clone(),
                ),
                out,
            };
            replay_into(
                &opened,
                ReplayOptions {
                    report_interval: None,
                    ..options
                },
                &mut printer,
            )?
        }
        Some(AsView::Explain(pid)) => {
            let mut explainer = Explainer {
                pid,
                growth: GrowthTracker::default(),
                explanation: None,
            };
            let outcome = replay_into(&opened, options, &mut explainer)?;
            let Some(explanation) = explainer.explanation else {
                return usage(format!(
                    "PID {pid} is not in the recording as a process with known /proc facts at that time"
                ));
            };
            let mut out = out;
            out.either(&explanation, Explanation::to_text)?;
            outcome
        }
        None if args.json => {
            let mut watcher = Watcher {
                view: WatchView::new(filter.clone(), args.flags.threshold),
                out,
            };
            replay_into(&opened, options, &mut watcher)?
        }
        None => {
            let mut incident =
                IncidentView::new(&opened.header, filter.clone(), args.flags.threshold);
            let outcome = replay_into(&opened, options, &mut incident)?;
            let timeline = incident.timeline(&opened.notes());
            if let Some(path) = &args.html {
                std::fs::write(path, render::html::render(&timeline))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &args.perfetto {
                std::fs::write(path, render::perfetto::render(&timeline).to_string())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let mut out = out;
            out.text(&render::summary::render(&timeline))?;
            outcome
        }
    };
    for note in opened.notes() {
        eprintln!("zombie-trace: {}: {note}", args.file.display());
    }
    if !outcome.reached_end && stop_at.is_none() {
        eprintln!(
            "zombie-trace: {}: the recording ends without its end mark (the recorder was killed, or the disk filled): the views are as of its last complete chunk",
            args.file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn replay_into(
    opened: &Opened,
    options: ReplayOptions,
    consumer: &mut impl Consumer,
) -> anyhow::Result<ReplayOutcome> {
    Ok(replay(&opened.header, opened.items(), options, consumer)?)
}

/// `--as explain PID`: growth sampled at every report tick, as `watch`
/// does, and the diagnosis at the end.
struct Explainer {
    pid: u32,
    growth: GrowthTracker,
    explanation: Option<Explanation>,
}

impl Consumer for Explainer {
    fn on_change(&mut self, _change: &Change) {}

    fn on_tick(&mut self, ctx: &mut Context<'_>) -> std::io::Result<()> {
        self.growth.sample(ctx.ledger, ctx.now.boot_ns);
        Ok(())
    }

    fn on_end(&mut self, ctx: &mut Context<'_>) -> std::io::Result<()> {
        let target_is_zombie = ctx.ledger.find_pid(self.pid).is_some_and(|p| p.is_zombie());
        let subject = if target_is_zombie {
            ctx.ledger
                .find_pid(self.pid)
                .and_then(|p| ctx.ledger.parent_of(&p.key))
                .map_or(self.pid, |p| p.key.pid)
        } else {
            self.pid
        };
        self.explanation =
            diagnose_traced(ctx, subject, Some(&self.growth)).map(|diagnosis| Explanation {
                target: self.pid,
                target_is_zombie,
                observed_s: Some(ctx.now.boot_ns.saturating_sub(ctx.started.boot_ns) as f64 / 1e9),
                diagnosis,
            });
        Ok(())
    }
}
