//! A tracing session: the attached programs feeding the one ledger, seeded
//! from /proc so that zombies older than the session are there at once.

use std::collections::HashMap;
use std::time::Duration;

use thiserror::Error;

use crate::model::{Change, Ledger, TickClock};
use crate::procfs::{self, ProcError, ProcStat, ScanSummary};
use crate::tracer::{Tracer, TracerError, TracerOptions};

#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Tracer(#[from] TracerError),
    #[error(transparent)]
    Proc(#[from] ProcError),
}

/// Builds a ledger from one /proc scan (no BPF): zombies found get
/// [`crate::model::ExitTime::BeforeStart`].
pub fn ledger_from_proc(started_ns: u64) -> Result<(Ledger, ScanSummary), ProcError> {
    let ticks = procfs::clock_ticks_per_second()?;
    let pid_max = procfs::pid_max()?;
    let mut stats: Vec<ProcStat> = Vec::with_capacity(4096);
    let summary = procfs::scan_processes(|st| stats.push(*st))?;
    let mut ledger = Ledger::new(
        TickClock::new(ticks),
        started_ns,
        (pid_max as usize).clamp(1024, 1 << 20),
    );
    ledger.seed(&stats, vpid_resolver());
    Ok((ledger, summary))
}

/// For a zombie found in /proc, its PID as its parent's PID namespace sees
/// it (what the parent's wait will return). Equal to the PID unless the
/// parent lives in another PID namespace; that is checked once per parent.
fn vpid_resolver() -> impl FnMut(&ProcStat) -> u32 {
    let own_ns = std::fs::read_link("/proc/self/ns/pid").ok();
    let mut parent_level: HashMap<u32, Option<usize>> = HashMap::new();
    move |st: &ProcStat| {
        if !st.is_zombie() || own_ns.is_none() {
            return st.pid;
        }
        let level = *parent_level.entry(st.ppid).or_insert_with(|| {
            let ns = std::fs::read_link(format!("/proc/{}/ns/pid", st.ppid)).ok();
            if ns.is_none() || ns == own_ns {
                None
            } else {
                ns_pids(st.ppid).map(|pids| pids.len().saturating_sub(1))
            }
        });
        level
            .and_then(|level| ns_pids(st.pid)?.get(level).copied())
            .unwrap_or(st.pid)
    }
}

/// The PID of `pid` in each namespace from ours down to its own.
fn ns_pids(pid: u32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(procfs::parse_ns_pids(&status))
}

/// The attached tracer and the ledger it feeds.
pub struct Session {
    tracer: Tracer,
    ledger: Ledger,
}

impl Session {
    /// Attaches first, then scans /proc: a process that changes between the
    /// two is both in the scan and in the queued events, and the ledger
    /// accepts either order. Must be called inside a tokio runtime.
    pub fn start(options: TracerOptions) -> Result<Self, SessionError> {
        let tracer = Tracer::attach(options)?;
        let started_ns = procfs::boot_time_now_ns()?;
        let (ledger, _) = ledger_from_proc(started_ns)?;
        Ok(Self { tracer, ledger })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Events the kernel could not deliver, all reasons.
    pub fn lost_events(&self) -> u64 {
        self.tracer.lost_events()
    }

    /// Events the kernel could not deliver, by reason.
    pub fn lost_by_reason(&self) -> crate::tracer::LostCounts {
        self.tracer.lost_by_reason()
    }

    /// Applies every event available now; returns how many.
    pub fn drain(&mut self, emit: &mut impl FnMut(Change)) -> usize {
        let ledger = &mut self.ledger;
        self.tracer.drain(|record| match record {
            Ok(event) => ledger.apply(&event, emit),
            // A build mismatch between the programs and this binary.
            Err(err) => log::warn!("{err}"),
        })
    }

    /// Waits until events are available; [`Session::drain`] applies them.
    pub async fn readable(&mut self) -> Result<(), TracerError> {
        self.tracer.readable().await
    }

    /// Applies events until `done` holds for the ledger or `timeout` passes;
    /// returns whether it held.
    pub async fn run_until(
        &mut self,
        timeout: Duration,
        done: impl FnMut(&Ledger) -> bool,
    ) -> Result<bool, TracerError> {
        self.run_until_with(timeout, &mut |_: Change| {}, done)
            .await
    }

    /// [`Session::run_until`], passing every change to `emit` (a view).
    pub async fn run_until_with(
        &mut self,
        timeout: Duration,
        emit: &mut impl FnMut(Change),
        mut done: impl FnMut(&Ledger) -> bool,
    ) -> Result<bool, TracerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.drain(emit);
        while !done(&self.ledger) {
            match tokio::time::timeout_at(deadline, self.tracer.readable()).await {
                Ok(ready) => ready?,
                Err(_elapsed) => return Ok(done(&self.ledger)),
            }
            self.drain(emit);
        }
        Ok(true)
    }

    /// Applies events for `period` (for tests that check nothing happens).
    pub async fn run_for(&mut self, period: Duration) -> Result<(), TracerError> {
        self.run_until(period, |_| false).await.map(drop)
    }
}
