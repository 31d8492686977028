//! `zombie-trace check`: what this kernel and these privileges allow.

use std::process::ExitCode;

use clap::Args;
use zombie_trace::kernel::check;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Write JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let checks = check::run_checks();
    if args.json {
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
