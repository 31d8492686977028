//! `zombie-trace snapshot`: zombies grouped by who owes the reap, from /proc.

use std::process::ExitCode;

use clap::Args;
use zombie_trace::engine::live::ledger_from_proc;
use zombie_trace::host::facts::{self, HostFacts, LiveHost, NamingHost};
use zombie_trace::host::podnames::PodNamesSource;
use zombie_trace::host::procfs;
use zombie_trace::views::report::Snapshot;

use super::{FilterArgs, Output, open_pod_names};

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Write JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: FilterArgs,
    /// Name pods and containers from the kubelet (as for `watch`).
    #[arg(long, value_name = "SOURCE", value_parser = PodNamesSource::parse)]
    pod_names: Option<PodNamesSource>,
}

pub fn run(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    let now = facts::now()?;
    let (ledger, scan) = ledger_from_proc(now.boot_ns)?;
    let pid_max = procfs::pid_max()?;
    let tasks = LiveHost.pressure().map_or(scan.tasks, |p| p.tasks);
    let snapshot = Snapshot::new(
        &ledger,
        &args.filter.filter(),
        tasks,
        pid_max,
        now,
        &mut NamingHost {
            names: open_pod_names(args.pod_names.as_ref()),
        },
    );
    Output::new(args.json).either(&snapshot, Snapshot::to_text)?;
    Ok(ExitCode::SUCCESS)
}
