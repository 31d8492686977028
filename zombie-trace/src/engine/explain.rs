//! The `explain` run: one /proc scan, or a short live observation that
//! samples the zombie growth rate, then the diagnosis of one parent.

use std::io;
use std::time::Duration;

use crate::engine::live::{Session, SessionError, ledger_from_proc};
use crate::engine::{Consumer, Context};
use crate::host::facts::{self, NamingHost};
use crate::host::podnames::PodNames;
use crate::host::procfs::{self, ProcError};
use crate::kernel::tracer::{TracerError, TracerOptions};
use crate::model::Change;
use crate::views::diagnosis::{Diagnosis, Explanation, GrowthTracker, diagnose, diagnose_traced};

/// `zombie-trace explain` errors. [`ExplainError::is_usage`] ones exit 2.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("`{0}` is not a PID: give a process ID, e.g. `zombie-trace explain 1847`")]
    NotAPid(String),
    #[error(
        "no process with PID {0}: it has exited and been reaped, or it is hidden from this /proc (check the PID with `ps -p {0}`)"
    )]
    NoSuchProcess(u32),
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Tracer(#[from] TracerError),
}

impl ExplainError {
    /// The user named something that is not a live process.
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::NotAPid(_) | Self::NoSuchProcess(_))
    }
}

/// Parses a PID argument.
pub fn parse_pid(arg: &str) -> Result<u32, ExplainError> {
    match arg.trim().parse::<u32>() {
        Ok(pid) if pid > 0 && i32::try_from(pid).is_ok() => Ok(pid),
        _ => Err(ExplainError::NotAPid(arg.to_owned())),
    }
}

/// The process to diagnose for `pid`: itself, or its parent if it is a zombie.
fn subject(pid: u32) -> Result<(u32, bool), ExplainError> {
    let stat = procfs::read_stat(pid)?.ok_or(ExplainError::NoSuchProcess(pid))?;
    if stat.is_zombie() && stat.ppid != 0 {
        Ok((stat.ppid, true))
    } else {
        Ok((pid, false))
    }
}

/// Diagnosis from one /proc scan: no wait behaviour, no live changes.
/// Pods and containers are named by `names` when given.
pub fn explain_proc_only(pid: u32, names: Option<PodNames>) -> Result<Explanation, ExplainError> {
    let (subject, target_is_zombie) = subject(pid)?;
    let now = facts::now()?;
    let (ledger, _) = ledger_from_proc(now.boot_ns)?;
    let diagnosis = diagnose(
        &ledger,
        subject,
        false,
        None,
        now,
        &mut NamingHost { names },
    )
    .ok_or(ExplainError::NoSuchProcess(subject))?;
    Ok(Explanation {
        target: pid,
        target_is_zombie,
        observed_s: None,
        diagnosis,
    })
}

/// How often the live observation samples the pending counts.
const GROWTH_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Samples growth at every tick; diagnoses `subject` at the end.
struct Observer {
    subject: u32,
    growth: GrowthTracker,
    diagnosis: Option<Diagnosis>,
}

impl Consumer for Observer {
    fn on_change(&mut self, _change: &Change) {}

    fn on_tick(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        self.growth.sample(ctx.ledger, ctx.now.boot_ns);
        Ok(())
    }

    fn on_end(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        self.diagnosis = diagnose_traced(ctx, self.subject, Some(&self.growth));
        Ok(())
    }
}

/// Traces for `observe`, sampling growth, then diagnoses with live data.
/// Must be called inside a tokio runtime.
pub async fn explain_live(
    pid: u32,
    observe: Duration,
    options: TracerOptions,
    names: Option<PodNames>,
) -> Result<Explanation, ExplainError> {
    let (subject, target_is_zombie) = subject(pid)?;
    let mut session = Session::start(options)?;
    if let Some(names) = names {
        session.name_pods(names);
    }
    let mut observer = Observer {
        subject,
        growth: GrowthTracker::default(),
        diagnosis: None,
    };
    session
        .run(&mut observer, Some(observe), Some(GROWTH_SAMPLE_INTERVAL))
        .await?;
    let observed = facts::now()?
        .boot_ns
        .saturating_sub(session.started().boot_ns);
    let diagnosis = observer
        .diagnosis
        .ok_or(ExplainError::NoSuchProcess(subject))?;
    Ok(Explanation {
        target: pid,
        target_is_zombie,
        observed_s: Some(observed as f64 / 1e9),
        diagnosis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_validated() {
        assert_eq!(parse_pid("1847").ok(), Some(1847));
        assert!(matches!(parse_pid("0"), Err(ExplainError::NotAPid(_))));
        assert!(matches!(parse_pid("-3"), Err(ExplainError::NotAPid(_))));
        assert!(matches!(parse_pid("job"), Err(ExplainError::NotAPid(_))));
        assert!(matches!(
            parse_pid("4294967295"),
            Err(ExplainError::NotAPid(_))
        ));
        assert!(parse_pid("abc").is_err_and(|e| e.is_usage()));
    }
}
