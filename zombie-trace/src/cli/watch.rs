//! `zombie-trace watch`: alerts as they fire, a report every interval.

use std::io;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use zombie_trace::engine::{Consumer, Context};
use zombie_trace::model::Change;
use zombie_trace::views::report::{Alert, Report};
use zombie_trace::views::watch::WatchView;

use super::{FilterArgs, Output, TraceArgs, positive_seconds};

#[derive(Debug, Args)]
pub struct WatchArgs {
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
    let interval = Duration::from_secs_f64(args.interval);
    let mut session = args.trace.start_session()?;
    let mut watcher = Watcher {
        view: WatchView::new(args.filter.filter(), args.threshold),
        out: Output::new(args.json),
    };
    session
        .run(&mut watcher, args.trace.duration(), Some(interval))
        .await?;
    Ok(ExitCode::SUCCESS)
}
