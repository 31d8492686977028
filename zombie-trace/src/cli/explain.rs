//! `zombie-trace explain PID`: why one process leaks zombies and what helps.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use zombie_trace::engine::explain::{explain_live, explain_proc_only, parse_pid};
use zombie_trace::host::podnames::PodNamesSource;
use zombie_trace::kernel::check::privilege_problem;
use zombie_trace::kernel::tracer::TracerOptions;

use super::{EXIT_USAGE, open_pod_names, positive_seconds, runtime};

#[derive(Debug, Args)]
pub struct ExplainArgs {
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
    /// Name its pod and container from the kubelet (as for `watch`).
    #[arg(long, value_name = "SOURCE", value_parser = PodNamesSource::parse)]
    pod_names: Option<PodNamesSource>,
}

pub fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let live = !args.proc_only && privilege_problem().is_none();
    let pid = match parse_pid(&args.pid) {
        Ok(pid) => pid,
        Err(err) => {
            eprintln!("zombie-trace: {err}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let names = open_pod_names(args.pod_names.as_ref());
    let result = if live {
        runtime()?.block_on(explain_live(
            pid,
            Duration::from_secs_f64(args.observe),
            TracerOptions::default(),
            names,
        ))
    } else {
        explain_proc_only(pid, names)
    };
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
