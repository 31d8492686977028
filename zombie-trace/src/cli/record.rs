//! `zombie-trace record -o FILE`: the live session's inputs into a file,
//! for `zombie-trace report` later, anywhere.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use zombie_trace::engine::live::{InputLog, MAINTAIN_INTERVAL, Session};
use zombie_trace::engine::{Consumer, Context};
use zombie_trace::host::facts;
use zombie_trace::model::Change;
use zombie_trace::recording::recorder::Recorder;

use super::{FilterArgs, TraceArgs};

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The recording to write (created or truncated).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Keep the file under this size (e.g. `500M`, `2G`): the oldest segment
    /// is dropped when it would grow past it, and `report` says so.
    #[arg(long, value_parser = parse_bytes)]
    max_bytes: Option<u64>,
    #[command(flatten)]
    trace: TraceArgs,
    /// The parents the recording's views show by default (`report`, `top
    /// --replay`); every event is recorded all the same.
    #[command(flatten)]
    filter: FilterArgs,
}

/// Options for recording beside another command (`watch --record`).
#[derive(Debug, Args)]
pub struct RecordToArgs {
    /// Also record the session's inputs into FILE (see `zombie-trace record`).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// With --record: keep the file under this size (e.g. `500M`).
    #[arg(long, value_parser = parse_bytes, requires = "record")]
    pub max_bytes: Option<u64>,
}

/// `123`, `64K`, `500M`, `2G` (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let multiplier: u64 = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => {
            return Err(format!(
                "`{s}` is not a size: use bytes or K, M, G (e.g. 500M)"
            ));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size: use bytes or K, M, G (e.g. 500M)"))?;
    match n.checked_mul(multiplier) {
        Some(bytes) if bytes >= 1 << 16 => Ok(bytes),
        _ => Err(format!("`{s}` is too small for a recording: at least 64K")),
    }
}

/// Starts a session that records into `path`.
pub fn start_recording(
    trace: &TraceArgs,
    path: &Path,
    command: &str,
    tick_interval: Duration,
    max_bytes: Option<u64>,
    filter: &FilterArgs,
) -> anyhow::Result<Session> {
    // The header's start is the recorder's; the seed carries the session's.
    let started = facts::now()?;
    let recorder = Recorder::create(
        path,
        command,
        started,
        tick_interval,
        max_bytes,
        filter.to_flags(),
    )?;
    let log: Box<dyn InputLog> = Box::new(recorder);
    let mut session = Session::start_logged(trace.options(), Some(log))?;
    trace.name_pods(&mut session);
    Ok(session)
}

/// Records and shows nothing.
struct Nothing;

impl Consumer for Nothing {
    fn on_change(&mut self, _change: &Change) {}

    fn on_end(&mut self, ctx: &mut Context<'_>) -> std::io::Result<()> {
        let secs = ctx.now.boot_ns.saturating_sub(ctx.started.boot_ns) as f64 / 1e9;
        eprintln!(
            "zombie-trace: recorded {:.1} s: {} events, {} processes owe {} zombies at the end",
            secs,
            ctx.ledger.counters.events,
            ctx.ledger.parents_with_zombies().count(),
            ctx.ledger
                .parents_with_zombies()
                .map(|p| u64::from(p.stats.pending))
                .sum::<u64>()
        );
        Ok(())
    }
}

pub async fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let mut session = start_recording(
        &args.trace,
        &args.output,
        "record",
        MAINTAIN_INTERVAL,
        args.max_bytes,
        &args.filter,
    )?;
    let until = args
        .trace
        .duration
        .map_or_else(|| "Ctrl-C".to_owned(), |s| format!("{s} s or Ctrl-C"));
    eprintln!(
        "zombie-trace: recording to {} until {until}; read it with `zombie-trace report {}`",
        args.output.display(),
        args.output.display()
    );
    session
        .run(&mut Nothing, args.trace.duration(), None)
        .await?;
    let written = std::fs::metadata(&args.output).map_or(0, |m| m.len());
    eprintln!(
        "zombie-trace: {} bytes in {}",
        written,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("500M"), Ok(500 << 20));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert_eq!(parse_bytes("64KiB"), Ok(64 << 10));
        assert!(parse_bytes("12").is_err(), "too small");
        assert!(parse_bytes("5X").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("99999999999999999999G").is_err());
    }
}
