//! `zombie-trace latency`: reap-latency histograms, printed at the end.

use std::io;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use zombie_trace::engine::{Consumer, Context};
use zombie_trace::model::Change;
use zombie_trace::views::latency::{GroupBy, LatencyReport, LatencyView};

use super::{FilterArgs, Output, TraceArgs};

#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// Write one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// One histogram per reaping process, reaping command name, or the
    /// container, systemd unit or pod the reaper runs in.
    #[arg(long, value_enum, default_value_t = By::Parent)]
    pub by: By,
    #[command(flatten)]
    trace: TraceArgs,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum By {
    Parent,
    Comm,
    Container,
    Unit,
    Pod,
}

impl From<By> for GroupBy {
    fn from(by: By) -> Self {
        match by {
            By::Parent => GroupBy::Parent,
            By::Comm => GroupBy::Comm,
            By::Container => GroupBy::Container,
            By::Unit => GroupBy::Unit,
            By::Pod => GroupBy::Pod,
        }
    }
}

/// [`LatencyView`] printing its report at the end.
pub struct LatencyPrinter {
    pub view: LatencyView,
    pub out: Output,
}

impl Consumer for LatencyPrinter {
    fn on_change(&mut self, change: &Change) {
        self.view.on_change(change);
    }

    fn after_batch(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        self.view.place_reapers(ctx.host);
        Ok(())
    }

    fn on_end(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        let traced_s = ctx.now.boot_ns.saturating_sub(ctx.started.boot_ns) as f64 / 1e9;
        let report = self
            .view
            .report(ctx.ledger, ctx.now, traced_s, ctx.health.lost, ctx.host);
        self.out.either(&report, LatencyReport::to_text)
    }
}

pub async fn run(args: LatencyArgs) -> anyhow::Result<ExitCode> {
    let mut session = args.trace.start_session()?;
    let mut printer = LatencyPrinter {
        view: LatencyView::new(args.by.into(), args.filter.filter()),
        out: Output::new(args.json),
    };
    let until = args
        .trace
        .duration
        .map_or_else(|| "Ctrl-C".to_owned(), |s| format!("{s} s or Ctrl-C"));
    eprintln!("zombie-trace: tracing reap latency (child exit to release) until {until}");
    session
        .run(&mut printer, args.trace.duration(), None)
        .await?;
    Ok(ExitCode::SUCCESS)
}
