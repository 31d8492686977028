//! A tracing session: the attached programs feeding the one ledger, seeded
//! from /proc so that zombies older than the session are there at once.

use std::collections::HashMap;
use std::time::Duration;

use thiserror::Error;

use crate::model::{Change, Ledger, ProcState, ResyncSummary, TickClock};
use crate::procfs::{self, ProcError, ProcStat, ScanSummary};
use crate::tracer::{LostCounts, Tracer, TracerError, TracerOptions};

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
    let (stats, summary) = scan()?;
    // Room for twice the processes there are: the tables grow with the
    // host, and stay small enough to sit in the cache (a table sized for
    // pid_max makes every lookup of a new PID a cache miss).
    let mut ledger = Ledger::new(
        TickClock::new(ticks),
        started_ns,
        (2 * stats.len()).max(1024),
    );
    ledger.seed(&stats, vpid_resolver());
    Ok((ledger, summary))
}

/// Every process in /proc.
fn scan() -> Result<(Vec<ProcStat>, ScanSummary), ProcError> {
    let mut stats: Vec<ProcStat> = Vec::with_capacity(4096);
    let summary = procfs::scan_processes(|st| stats.push(*st))?;
    Ok((stats, summary))
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

/// How far the ledger can be trusted. Losses stay counted for the life of
/// the session; a resync after them makes the ledger exact again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LedgerHealth {
    /// Events the kernel could not deliver, by reason, since the start.
    pub lost: LostCounts,
    /// Of those, the ones no resync has covered yet: while non-zero the
    /// ledger may miss forks, exits or reaps.
    pub lost_since_resync: u64,
    /// Resyncs with /proc so far (after losses, or when a periodic check of
    /// the ledger's zombies found one /proc disagrees with).
    pub resyncs: u64,
    /// Entries all resyncs corrected.
    pub resync_corrections: u64,
    /// What the last resync corrected.
    pub last_resync: Option<ResyncSummary>,
    /// Zombies checked against /proc one by one (round-robin, without losses).
    pub zombie_checks: u64,
}

impl LedgerHealth {
    /// The ledger equals the kernel's process table as far as anyone can
    /// tell: no loss since the last resync.
    pub fn complete(&self) -> bool {
        self.lost_since_resync == 0
    }
}

/// How many of the ledger's zombies each [`Session::maintain`] checks
/// against /proc when nothing was lost (a loss triggers a full resync
/// instead), round-robin. One `stat` read each: measured 15–19 µs here, so
/// at most ~4 ms per report interval, and nothing while there are no
/// zombies; 28,000 zombies are all checked once every 140 intervals. (All
/// of them at once cost 0.43–0.54 s of CPU.)
pub const ZOMBIE_CHECKS_PER_PASS: usize = 200;

/// The attached tracer and the ledger it feeds.
pub struct Session {
    tracer: Tracer,
    ledger: Ledger,
    health: LedgerHealth,
    /// Lost-event total that the last resync (or the start) covered.
    lost_covered: u64,
    /// Where the next round-robin zombie check starts in the ledger.
    check_cursor: usize,
}

impl Session {
    /// Attaches first, then scans /proc: a process that changes between the
    /// two is both in the scan and in the queued events, and the ledger
    /// accepts either order (the model's invariant 9). Must be called inside
    /// a tokio runtime.
    pub fn start(options: TracerOptions) -> Result<Self, SessionError> {
        let tracer = Tracer::attach(options)?;
        let started_ns = procfs::boot_time_now_ns()?;
        let (ledger, _) = ledger_from_proc(started_ns)?;
        Ok(Self {
            tracer,
            ledger,
            health: LedgerHealth::default(),
            lost_covered: 0,
            check_cursor: 0,
        })
    }

    /// The ledger's health, with the loss counters read now.
    pub fn health(&self) -> LedgerHealth {
        let lost = self.tracer.lost_by_reason();
        LedgerHealth {
            lost,
            lost_since_resync: lost.total().saturating_sub(self.lost_covered),
            ..self.health
        }
    }

    /// Keeps the ledger exact; call it periodically (every report interval).
    /// Reads the loss counters and checks the next [`ZOMBIE_CHECKS_PER_PASS`]
    /// of the ledger's zombies against /proc; after new losses, or when a
    /// checked zombie disagrees with /proc, drains the ring, scans /proc and
    /// resyncs the ledger ([`Ledger::resync`]), passing the corrections to
    /// `emit`. Returns the resync, if one ran.
    pub fn maintain(
        &mut self,
        emit: &mut impl FnMut(Change),
    ) -> Result<Option<ResyncSummary>, SessionError> {
        // Read before the drain and the scan: every loss counted here
        // happened before the scan, which therefore covers it.
        let lost = self.tracer.lost_by_reason();
        self.health.lost = lost;
        self.health.lost_since_resync = lost.total().saturating_sub(self.lost_covered);
        let mut due = lost.total() > self.lost_covered;
        if !due {
            due = !self.zombies_match_proc(emit)?;
        }
        if !due {
            return Ok(None);
        }
        self.drain(emit);
        let (stats, _) = scan()?;
        let now = procfs::boot_time_now_ns()?;
        let summary = self.ledger.resync(&stats, now, vpid_resolver(), emit);
        self.lost_covered = lost.total();
        self.health.lost_since_resync = 0;
        self.health.resyncs += 1;
        self.health.resync_corrections += summary.corrections();
        self.health.last_resync = Some(summary);
        Ok(Some(summary))
    }

    /// Whether the next [`ZOMBIE_CHECKS_PER_PASS`] zombies of the ledger
    /// are zombies in /proc, with the same start time and parent. A
    /// mismatch is checked again after a drain, since its release (or exit)
    /// may just be in flight.
    fn zombies_match_proc(&mut self, emit: &mut impl FnMut(Change)) -> Result<bool, ProcError> {
        let (keys, next) = self
            .ledger
            .zombies_from(self.check_cursor, ZOMBIE_CHECKS_PER_PASS);
        self.check_cursor = next;
        self.health.zombie_checks += keys.len() as u64;
        let mut suspects = Vec::new();
        for key in keys {
            if !zombie_in_proc(&self.ledger, key)? {
                suspects.push(key);
            }
        }
        if suspects.is_empty() {
            return Ok(true);
        }
        self.drain(emit);
        for key in suspects {
            let still = self
                .ledger
                .get(&key)
                .is_some_and(|p| matches!(p.state, ProcState::Zombie(_)));
            if still && !zombie_in_proc(&self.ledger, key)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Events the kernel could not deliver, all reasons (read now).
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

/// Whether /proc shows `key` as a zombie under the parent the ledger names.
fn zombie_in_proc(ledger: &Ledger, key: crate::model::ProcKey) -> Result<bool, ProcError> {
    let Some(st) = procfs::read_stat(key.pid)? else {
        return Ok(false);
    };
    let parent = ledger.parent_of(&key).map(|p| p.key.pid);
    Ok(st.start_ticks == key.start_ticks && st.is_zombie() && parent == Some(st.ppid))
}
