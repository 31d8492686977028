//! `zombie-trace watch`: alerts as they fire, a report every interval.

use std::io;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use zombie_trace::engine::{Consumer, Context};
use zombie_trace::model::Change;
use zombie_trace::views::report::{Alert, Report};
use zombie_trace::views::watch::WatchView;

use super::record::{RecordToArgs, start_recording};
use super::{FilterArgs, Output, TraceArgs, positive_seconds};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Write JSON Lines (one report or alert object per line) instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    flags: WatchFlags,
    #[command(flatten)]
    trace: TraceArgs,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    record: RecordToArgs,
}

/// What `watch` output depends on; `report` takes the same, so that the
/// same flags give the same lines.
#[derive(Debug, Args)]
pub struct WatchFlags {
    /// Seconds between reports.
    #[arg(long, default_value_t = 1.0, value_parser = positive_seconds)]
    pub interval: f64,
    /// Alert when a parent reaches this many pending zombies.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub threshold: u32,
}

impl WatchFlags {
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval)
    }
}

/// [`WatchView`] printing its alerts and reports.
pub struct Watcher {
    pub view: WatchView,
    pub out: Output,
}

impl Watcher {
    pub fn alert(&mut self, alert: &Alert) -> io::Result<()> {
        self.out.either(alert, Alert::to_text)
    }

    pub fn report(&mut self, report: &Report) -> io::Result<()> {
        self.out.either(report, |r| r.to_text() + "\n")
    }
}

impl Consumer for Watcher {
    fn on_change(&mut self, change: &Change) {
        self.view.on_change(change);
    }

    fn after_batch(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        for alert in self.view.alerts(ctx) {
            self.alert(&alert)?;
        }
        Ok(())
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        let report = self.view.report(ctx);
        self.report(&report)
    }

    /// The final report: the ledger as it stands after the last events.
    fn on_end(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        self.on_tick(ctx)
    }
}

pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let interval = args.flags.interval();
    let mut session = match &args.record.record {
        Some(path) => start_recording(
            &args.trace,
            path,
            "watch",
            interval,
            args.record.max_bytes,
            &args.filter,
        )?,
        None => args.trace.start_session()?,
    };
    let mut watcher = Watcher {
        view: WatchView::new(args.filter.filter(), args.flags.threshold),
        out: Output::new(args.json),
    };
    session
        .run(&mut watcher, args.trace.duration(), Some(interval))
        .await?;
    Ok(ExitCode::SUCCESS)
}
