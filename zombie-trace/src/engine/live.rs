//! The live source: the attached programs feeding the one ledger, seeded
//! from a read of the whole process table (the kernel's task iterator where
//! it loads, else /proc) so that zombies older than the session are there
//! at once, and kept exact by resyncs with such a read after lost events.

use std::io;
use std::time::Duration;

use rustc_hash::FxHashSet;
use thiserror::Error;
use tokio::signal::unix::{SignalKind, signal};

use crate::engine::{Consumer, Context, Counting, Query};
use crate::host::cgroup::Attribution;
use crate::host::facts::{self, AttributionCache, HostFacts, LiveHost, Pressure, ProcFacts};
use crate::host::podnames::PodNames;
use crate::host::pressure::PidPressure;
use crate::host::procfs::{self, ProcError, ProcStat, ScanSummary};
use crate::host::scan::{scan, vpid_resolver};
use crate::kernel::events::Event;
use crate::kernel::tracer::{Tracer, TracerError, TracerOptions};
use crate::model::{
    Change, Ledger, LedgerHealth, LostCounts, Moment, ProcKey, ProcState, ResyncSummary, TickClock,
};

#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Tracer(#[from] TracerError),
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error("writing the output: {0}")]
    Output(#[source] io::Error),
    #[error("installing the {0} handler: {1}")]
    Signal(&'static str, #[source] io::Error),
    #[error("{0}")]
    Recording(String),
}

/// Where a live session writes every input it reads, in order, so that a
/// replay feeds the same consumer the same calls (a recording). Write
/// errors are kept by the log and reported by [`InputLog::flush`].
pub trait InputLog {
    /// The /proc scan a ledger was seeded from, each process with its PID
    /// in its parent's namespace.
    fn seed(&mut self, now: Moment, procs: &[(ProcStat, u32)]);
    /// One record as the kernel wrote it.
    fn event(&mut self, record: &[u8]);
    /// A batch that changed the ledger ended at `now`.
    fn batch(&mut self, now: Moment);
    /// The ledger was resynced with this /proc scan.
    fn resync(&mut self, now: Moment, procs: &[(ProcStat, u32)]);
    /// A report tick (`report`: whether a view reported at it).
    fn tick(&mut self, now: Moment, health: &LedgerHealth, report: bool);
    /// The end of the session.
    fn end(&mut self, now: Moment, health: &LedgerHealth);
    /// What /proc said about a process.
    fn process_facts(&mut self, pid: u32, facts: Option<&ProcFacts>);
    fn pid_pressure(&mut self, pid: Option<u32>, pressure: &PidPressure);
    fn pressure(&mut self, pressure: Option<&Pressure>);
    /// Where a process runs (its cgroup), as first read.
    fn attribution(&mut self, key: ProcKey, attribution: Option<&Attribution>);
    /// Writes what is buffered (at least once a second); a write error (a
    /// full disk, ...) is returned, and again at every later call.
    fn flush(&mut self) -> io::Result<()>;
}

/// The host facts of a live session: read from /proc, and logged when the
/// session records.
struct LoggedHost<'a> {
    log: Option<&'a mut (dyn InputLog + 'static)>,
    attributions: &'a mut AttributionCache,
}

impl HostFacts for LoggedHost<'_> {
    fn process(&mut self, pid: u32) -> Option<ProcFacts> {
        let facts = LiveHost.process(pid);
        if let Some(log) = self.log.as_deref_mut() {
            log.process_facts(pid, facts.as_ref());
        }
        facts
    }

    fn pid_pressure(&mut self, pid: Option<u32>) -> PidPressure {
        let pressure = LiveHost.pid_pressure(pid);
        if let Some(log) = self.log.as_deref_mut() {
            log.pid_pressure(pid, &pressure);
        }
        pressure
    }

    fn pressure(&mut self) -> Option<Pressure> {
        let pressure = LiveHost.pressure();
        if let Some(log) = self.log.as_deref_mut() {
            log.pressure(pressure.as_ref());
        }
        pressure
    }

    fn attribution(&mut self, key: ProcKey) -> Option<Attribution> {
        let attribution = self.attributions.get(key);
        if let Some(log) = self.log.as_deref_mut() {
            log.attribution(key, attribution.as_ref());
        }
        attribution
    }
}

/// Builds a ledger from one /proc scan (no BPF): zombies found get
/// [`crate::model::ExitTime::BeforeStart`]. `seeded` sees every process
/// with its vpid (for a recording).
pub fn ledger_from_proc(started_ns: u64) -> Result<(Ledger, ScanSummary), SessionError> {
    let (ledger, summary, _) = seeded_ledger(started_ns, false, ProcessTable::read(None)?)?;
    Ok((ledger, summary))
}

/// [`ledger_from_proc`] from `table`, also returning the seed with each
/// process's vpid when `keep` is set.
fn seeded_ledger(
    started_ns: u64,
    keep: bool,
    table: ProcessTable,
) -> Result<(Ledger, ScanSummary, Seed), SessionError> {
    let ticks = procfs::clock_ticks_per_second()?;
    // Room for twice the processes there are: the tables grow with the
    // host, and stay small enough to sit in the cache (a table sized for
    // pid_max makes every lookup of a new PID a cache miss).
    let mut ledger = Ledger::new(
        TickClock::new(ticks),
        started_ns,
        (2 * table.stats.len()).max(1024),
    );
    let ProcessTable {
        stats,
        summary,
        mut vpids,
    } = table;
    ledger.seed(&stats, |st| vpids.of(st));
    let seed = if keep {
        vpids.resolved.seed(&stats)
    } else {
        Seed::new()
    };
    Ok((ledger, summary, seed))
}

/// One read of the whole process table, and the vpids it already knows.
struct ProcessTable {
    stats: Vec<ProcStat>,
    summary: ScanSummary,
    vpids: Vpids,
}

/// The vpid of each process of a [`ProcessTable`], as a seed or resync
/// asks for them.
struct Vpids {
    /// Processes whose vpid is not their PID, noted so far.
    resolved: Resolved,
    /// Reads a vpid from /proc when asked; `None` when `resolved` already
    /// holds every such process (the task iterator reads vpids with the
    /// table).
    from_proc: Option<VpidReader>,
}

/// Reads a process's vpid from /proc ([`vpid_resolver`]).
type VpidReader = Box<dyn FnMut(&ProcStat) -> u32>;

impl Vpids {
    fn of(&mut self, st: &ProcStat) -> u32 {
        let vpid = match &mut self.from_proc {
            Some(read) => read(st),
            None => self.resolved.get(st),
        };
        self.resolved.note(st, vpid)
    }
}

impl ProcessTable {
    /// Through the tracer's task iterator where it has one, else (and when
    /// the iterator fails, said once on stderr) from /proc.
    fn read(tracer: Option<&mut Tracer>) -> Result<Self, SessionError> {
        let ticks = procfs::clock_ticks_per_second()?;
        match tracer.and_then(|tracer| tracer.scan_tasks(ticks)) {
            Some(Ok(table)) => {
                let mut resolved = Resolved::default();
                for (st, &vpid) in table.stats.iter().zip(&table.vpids) {
                    resolved.note(st, vpid);
                }
                return Ok(Self {
                    stats: table.stats,
                    summary: table.summary,
                    vpids: Vpids {
                        resolved,
                        from_proc: None,
                    },
                });
            }
            Some(Err(err)) => log::warn!("{err}; reading /proc instead"),
            None => {}
        }
        let (stats, summary) = scan()?;
        Ok(Self {
            stats,
            summary,
            vpids: Vpids {
                resolved: Resolved::default(),
                from_proc: Some(Box::new(vpid_resolver())),
            },
        })
    }
}

/// The vpids a seed or resync resolved (it asks only for the processes it
/// adds or changes), to log the whole scan with them.
#[derive(Default)]
struct Resolved(rustc_hash::FxHashMap<(u32, u64), u32>);

impl Resolved {
    fn note(&mut self, st: &ProcStat, vpid: u32) -> u32 {
        if vpid != st.pid {
            self.0.insert((st.pid, st.start_ticks), vpid);
        }
        vpid
    }

    /// The vpid noted for `st`, else its PID.
    fn get(&self, st: &ProcStat) -> u32 {
        self.0
            .get(&(st.pid, st.start_ticks))
            .copied()
            .unwrap_or(st.pid)
    }

    /// Every process of the scan, with its vpid (its PID unless resolved
    /// otherwise).
    fn seed(&self, stats: &[ProcStat]) -> Seed {
        stats
            .iter()
            .map(|st| {
                let vpid = self.0.get(&(st.pid, st.start_ticks)).copied();
                (*st, vpid.unwrap_or(st.pid))
            })
            .collect()
    }
}

/// A /proc scan as a ledger saw it: each process with its PID in its
/// parent's PID namespace.
pub type Seed = Vec<(ProcStat, u32)>;

/// How many of the ledger's zombies each [`Session::maintain`] checks
/// against /proc when nothing was lost (a loss triggers a full resync
/// instead), round-robin. One `stat` read each: measured 15–19 µs here, so
/// at most ~4 ms per report interval, and nothing while there are no
/// zombies; 28,000 zombies are all checked once every 140 intervals. (All
/// of them at once cost 0.43–0.54 s of CPU.)
pub const ZOMBIE_CHECKS_PER_PASS: usize = 200;

/// Events applied per batch at most: under a storm that outpaces the reader
/// (a slow host, a debug build), the loop still gets back to its ticks,
/// signals and queries between batches (~10 ms of work in a release build).
pub const EVENTS_PER_BATCH: usize = 16_384;

/// How often a command without a report interval keeps its ledger exact.
pub const MAINTAIN_INTERVAL: Duration = Duration::from_secs(1);

/// How often a recording session writes its buffered inputs: a recorder
/// killed at any moment loses at most this much.
pub const RECORD_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Parents owing zombies whose /proc facts each tick of a recording keeps
/// (worst first), with their ancestors: what a later diagnosis of them
/// reads.
pub const RECORDED_PARENTS_PER_TICK: usize = 20;

/// The attached tracer and the ledger it feeds.
pub struct Session {
    tracer: Tracer,
    ledger: Ledger,
    health: LedgerHealth,
    started: Moment,
    /// Lost-event total that the last resync (or the start) covered.
    lost_covered: u64,
    /// Where the next round-robin zombie check starts in the ledger.
    check_cursor: usize,
    log: Option<Box<dyn InputLog>>,
    attributions: AttributionCache,
    /// When recording: the reapers met since the last tick, whose place is
    /// logged after their batch (a replayed latency view groups and filters
    /// by it, and most reapers never owe a zombie at a tick).
    reapers_met: FxHashSet<ProcKey>,
    reapers_new: Vec<ProcKey>,
}

impl Session {
    /// Attaches first, then scans /proc: a process that changes between the
    /// two is both in the scan and in the queued events, and the ledger
    /// accepts either order (the model's invariant 9). Must be called inside
    /// a tokio runtime.
    pub fn start(options: TracerOptions) -> Result<Self, SessionError> {
        Self::start_logged(options, None)
    }

    /// [`Session::start`], writing every input to `log` (a recording).
    pub fn start_logged(
        options: TracerOptions,
        mut log: Option<Box<dyn InputLog>>,
    ) -> Result<Self, SessionError> {
        let mut tracer = Tracer::attach(options)?;
        let started = facts::now()?;
        let table = ProcessTable::read(Some(&mut tracer))?;
        // Attached and seeded: what only attaching needed is given up.
        match crate::kernel::check::drop_attach_only_capabilities() {
            Ok(dropped) if !dropped.is_empty() => {
                log::info!("attached; gave up {}", dropped.join(", "));
            }
            Ok(_) => {}
            Err(err) => log::warn!("giving up the capabilities only attaching needs: {err}"),
        }
        let (ledger, _, seed) = seeded_ledger(started.boot_ns, log.is_some(), table)?;
        if let Some(log) = log.as_deref_mut() {
            log.seed(started, &seed);
        }
        Ok(Self {
            tracer,
            ledger,
            health: LedgerHealth::default(),
            started,
            lost_covered: 0,
            check_cursor: 0,
            log,
            attributions: AttributionCache::default(),
            reapers_met: FxHashSet::default(),
            reapers_new: Vec::new(),
        })
    }

    /// Names pods and containers from `names` too (`--pod-names`), in
    /// every view and in the recording.
    pub fn name_pods(&mut self, names: PodNames) {
        self.attributions = AttributionCache::naming(names);
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

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Whether the seed and resyncs read the process table with the
    /// kernel's task iterator (else from /proc).
    pub fn task_iterator(&self) -> bool {
        self.tracer.task_iterator()
    }

    /// When the session started.
    pub fn started(&self) -> Moment {
        self.started
    }

    /// Events the kernel could not deliver, all reasons (read now).
    pub fn lost_events(&self) -> u64 {
        self.tracer.lost_events()
    }

    /// Events the kernel could not deliver, by reason.
    pub fn lost_by_reason(&self) -> LostCounts {
        self.tracer.lost_by_reason()
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
        let ProcessTable {
            stats, mut vpids, ..
        } = ProcessTable::read(Some(&mut self.tracer))?;
        let now = facts::now()?;
        let summary = self
            .ledger
            .resync(&stats, now.boot_ns, |st| vpids.of(st), emit);
        if let Some(log) = self.log.as_deref_mut() {
            log.resync(now, &vpids.resolved.seed(&stats));
        }
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

    /// Applies every event available now; returns how many.
    pub fn drain(&mut self, emit: &mut impl FnMut(Change)) -> usize {
        self.drain_at_most(usize::MAX, emit)
    }

    /// Applies at most `max` of the events available now; returns how many.
    fn drain_at_most(&mut self, max: usize, emit: &mut impl FnMut(Change)) -> usize {
        let ledger = &mut self.ledger;
        let log = &mut self.log;
        self.tracer.drain_at_most(max, |record| {
            if let Some(log) = log.as_deref_mut() {
                log.event(record);
            }
            match Event::try_from(record) {
                Ok(event) => ledger.apply(&event, emit),
                // A build mismatch between the programs and this binary.
                Err(err) => log::warn!("{err}"),
            }
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

    /// A [`Context`] for `consumer` at `now`.
    fn call<C: Consumer + ?Sized>(
        &mut self,
        consumer: &mut C,
        now: Moment,
        call: impl FnOnce(&mut C, &mut Context<'_>) -> io::Result<()>,
    ) -> Result<(), SessionError> {
        self.call_with(consumer, now, None, call)
    }

    /// [`Session::call`] with the programs' run statistics in the context.
    fn call_with<C: Consumer + ?Sized>(
        &mut self,
        consumer: &mut C,
        now: Moment,
        programs: Option<Vec<crate::kernel::tracer::ProgramRun>>,
        call: impl FnOnce(&mut C, &mut Context<'_>) -> io::Result<()>,
    ) -> Result<(), SessionError> {
        let health = self.health();
        let mut host = LoggedHost {
            log: self.log.as_deref_mut(),
            attributions: &mut self.attributions,
        };
        let mut ctx = Context {
            ledger: &self.ledger,
            health,
            started: self.started,
            now,
            host: &mut host,
            programs,
        };
        call(consumer, &mut ctx).map_err(SessionError::Output)
    }

    /// Answers `query` from the ledger with everything queued applied.
    fn answer<C: Consumer + ?Sized>(
        &mut self,
        consumer: &mut C,
        query: Query,
    ) -> Result<(), SessionError> {
        self.drain_batch(consumer)?;
        let now = facts::now()?;
        let programs = self.tracer.program_runs();
        let mut answer = None;
        self.ledger.refresh_oldest();
        self.call_with(consumer, now, programs, |c, ctx| {
            answer = Some(c.on_query(ctx, &query));
            Ok(())
        })?;
        if let Some(answer) = answer {
            // The asker may have given up (a timeout): nothing to do then.
            let _ = query.reply.send(answer);
        }
        Ok(())
    }

    /// Ends a batch: if it changed the ledger, `after_batch` at this moment.
    fn end_batch<C: Consumer + ?Sized>(
        &mut self,
        consumer: &mut C,
        changes: usize,
    ) -> Result<(), SessionError> {
        if changes == 0 {
            return Ok(());
        }
        let now = facts::now()?;
        if !self.reapers_new.is_empty() {
            let mut host = LoggedHost {
                log: self.log.as_deref_mut(),
                attributions: &mut self.attributions,
            };
            for reaper in self.reapers_new.drain(..) {
                host.attribution(reaper);
            }
        }
        self.call(consumer, now, |c, ctx| c.after_batch(ctx))?;
        if let Some(log) = self.log.as_deref_mut() {
            // After the call: the facts it read come first in the log.
            log.batch(now);
        }
        Ok(())
    }

    /// Drains (at most [`EVENTS_PER_BATCH`]), then ends the batch; returns
    /// how many events it applied.
    fn drain_batch<C: Consumer + ?Sized>(
        &mut self,
        consumer: &mut C,
    ) -> Result<usize, SessionError> {
        let mut counting = Counting {
            consumer: &mut *consumer,
            changes: 0,
        };
        let events = if self.log.is_some() {
            let (mut met, mut new) = (
                std::mem::take(&mut self.reapers_met),
                std::mem::take(&mut self.reapers_new),
            );
            let events = self.drain_at_most(EVENTS_PER_BATCH, &mut |change| {
                if let Change::Released { reaper, .. } = change
                    && met.insert(reaper)
                {
                    new.push(reaper);
                }
                counting.emit(change);
            });
            (self.reapers_met, self.reapers_new) = (met, new);
            events
        } else {
            self.drain_at_most(EVENTS_PER_BATCH, &mut |change| counting.emit(change))
        };
        let changes = counting.changes;
        self.end_batch(consumer, changes)?;
        Ok(events)
    }

    /// Keeps the ledger exact, then ends the batch of its corrections.
    fn maintain_batch<C: Consumer + ?Sized>(
        &mut self,
        consumer: &mut C,
    ) -> Result<(), SessionError> {
        let mut counting = Counting {
            consumer: &mut *consumer,
            changes: 0,
        };
        self.maintain(&mut |change| counting.emit(change))?;
        let changes = counting.changes;
        self.end_batch(consumer, changes)
    }

    /// One tick: everything up to now applied, the ledger kept exact, then
    /// `on_tick` if `report`.
    fn tick<C: Consumer + ?Sized>(
        &mut self,
        consumer: &mut C,
        report: bool,
    ) -> Result<(), SessionError> {
        self.drain_batch(consumer)?;
        self.maintain_batch(consumer)?;
        // The tick's facts are logged before the view reads its own, so
        // that over a recording the view finds what it read live.
        if self.log.is_some() {
            self.log_tick_facts();
            // Met again after this tick, a reaper is logged again (read from
            // the cache, and written once per segment by the recorder).
            self.reapers_met.clear();
        }
        let now = facts::now()?;
        if report {
            self.ledger.refresh_oldest();
            self.call(consumer, now, |c, ctx| c.on_tick(ctx))?;
        }
        if self.log.is_some() {
            let health = self.health();
            if let Some(log) = self.log.as_deref_mut() {
                log.tick(now, &health, report);
            }
        }
        Ok(())
    }

    /// What a later diagnosis of the worst parents will read, for a
    /// recording: their /proc facts and their ancestors', the PID limits
    /// with the worst parent's cgroup, tasks against pid_max, and where
    /// every parent owing zombies runs. The log keeps only what changed.
    fn log_tick_facts(&mut self) {
        let mut parents: Vec<(u32, ProcKey)> = self
            .ledger
            .parents_with_zombies()
            .map(|p| (p.stats.pending, p.key))
            .collect();
        parents.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        parents.truncate(RECORDED_PARENTS_PER_TICK);
        let mut pids: Vec<u32> = Vec::new();
        for &(_, key) in &parents {
            let mut next = Some(key);
            let mut hops = 0;
            while let Some(k) = next {
                if pids.contains(&k.pid) || hops > 64 {
                    break;
                }
                pids.push(k.pid);
                next = self.ledger.parent_of(&k).map(|p| p.key);
                hops += 1;
            }
        }
        let mut host = LoggedHost {
            log: self.log.as_deref_mut(),
            attributions: &mut self.attributions,
        };
        for pid in pids {
            host.process(pid);
        }
        // Where every parent owing zombies runs (read once per process,
        // written once per segment): a report may filter or group by it.
        for p in self.ledger.parents_with_zombies() {
            host.attribution(p.key);
        }
        host.pid_pressure(parents.first().map(|&(_, key)| key.pid));
        host.pressure();
    }

    /// The end: what is still queued applied, the ledger kept exact, then
    /// `on_end`.
    pub fn finish<C: Consumer + ?Sized>(&mut self, consumer: &mut C) -> Result<(), SessionError> {
        // Everything the ring holds now, in batches; bounded, should a
        // storm go on (a million events at most).
        for _ in 0..64 {
            if self.drain_batch(consumer)? < EVENTS_PER_BATCH {
                break;
            }
        }
        self.maintain_batch(consumer)?;
        let now = facts::now()?;
        self.ledger.refresh_oldest();
        self.call(consumer, now, |c, ctx| c.on_end(ctx))?;
        let health = self.health();
        if let Some(log) = self.log.as_deref_mut() {
            log.end(now, &health);
        }
        self.flush_log()
    }

    fn flush_log(&mut self) -> Result<(), SessionError> {
        let Some(log) = self.log.as_deref_mut() else {
            return Ok(());
        };
        log.flush().map_err(|e| {
            SessionError::Recording(format!(
                "writing the recording failed: {e}; what was written before is readable with `zombie-trace report`"
            ))
        })
    }

    /// Feeds `consumer` until SIGINT, SIGTERM, SIGHUP or `duration`,
    /// ticking every `interval` (reports) if given, else every
    /// [`MAINTAIN_INTERVAL`] (the ledger kept exact, no report); then
    /// [`Session::finish`]. Each tick first keeps the ledger exact
    /// ([`Session::maintain`]: a resync with /proc after lost events), so a
    /// report is never off for longer than one interval.
    pub async fn run<C: Consumer + ?Sized>(
        &mut self,
        consumer: &mut C,
        duration: Option<Duration>,
        interval: Option<Duration>,
    ) -> Result<(), SessionError> {
        self.run_answering(consumer, duration, interval, None).await
    }

    /// [`Session::run`], also answering the [`Query`]s that come through
    /// `queries` (an HTTP server's requests), each from the ledger as it
    /// stands with everything queued applied.
    pub async fn run_answering<C: Consumer + ?Sized>(
        &mut self,
        consumer: &mut C,
        duration: Option<Duration>,
        interval: Option<Duration>,
        queries: Option<&mut tokio::sync::mpsc::Receiver<Query>>,
    ) -> Result<(), SessionError> {
        let stop = stop_on_signals(duration, std::future::pending())?;
        self.run_until_stop(consumer, stop, interval, queries).await
    }

    /// Feeds `consumer` until `stop` completes (the caller decides what
    /// ends the session: signals, a deadline, a command's exit), ticking
    /// every `interval` (reports) if given, else every
    /// [`MAINTAIN_INTERVAL`]; answers `queries`; then [`Session::finish`].
    pub async fn run_until_stop<C: Consumer + ?Sized>(
        &mut self,
        consumer: &mut C,
        stop: impl Future<Output = ()>,
        interval: Option<Duration>,
        mut queries: Option<&mut tokio::sync::mpsc::Receiver<Query>>,
    ) -> Result<(), SessionError> {
        let mut ticker = tokio::time::interval(interval.unwrap_or(MAINTAIN_INTERVAL));
        // The first tick is immediate: the first report comes at once.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flusher = tokio::time::interval(RECORD_FLUSH_INTERVAL);
        flusher.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let recording = self.log.is_some();
        // What the seed holds is the first batch (alerts for parents over
        // the threshold at the start).
        let now = self.started;
        self.call(consumer, now, |c, ctx| c.after_batch(ctx))?;
        if let Some(log) = self.log.as_deref_mut() {
            log.batch(now);
        }
        let mut stop = std::pin::pin!(stop);
        loop {
            let next_query = async {
                match queries.as_deref_mut() {
                    Some(q) => q.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ready = self.tracer.readable() => {
                    ready?;
                    self.drain_batch(consumer)?;
                }
                // Everything up to the tick is in the report. (A tick that
                // comes before the drain timer would otherwise starve the
                // drain when the interval is that short.)
                _ = ticker.tick() => self.tick(consumer, interval.is_some())?,
                _ = flusher.tick(), if recording => self.flush_log()?,
                Some(query) = next_query => self.answer(consumer, query)?,
                () = &mut stop => break,
            }
        }
        self.finish(consumer)
    }
}

/// Whether /proc shows `key` as a zombie under the parent the ledger names.
fn zombie_in_proc(ledger: &Ledger, key: ProcKey) -> Result<bool, ProcError> {
    let Some(st) = procfs::read_stat(key.pid)? else {
        return Ok(false);
    };
    let parent = ledger.parent_of(&key).map(|p| p.key.pid);
    Ok(st.start_ticks == key.start_ticks && st.is_zombie() && parent == Some(st.ppid))
}

/// Completes at SIGINT, SIGTERM or SIGHUP, once `duration` has passed (if
/// given), or when `also` completes (a command's own reason to stop): what
/// ends a live session. The handlers are installed now.
pub fn stop_on_signals(
    duration: Option<Duration>,
    also: impl Future<Output = ()>,
) -> Result<impl Future<Output = ()>, SessionError> {
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| SessionError::Signal("SIGINT", e))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| SessionError::Signal("SIGTERM", e))?;
    // A closed terminal or a supervisor's HUP stops tracing cleanly too.
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| SessionError::Signal("SIGHUP", e))?;
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    Ok(async move {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
            _ = sighup.recv() => {}
            () = until_deadline => {}
            () = also => {}
        }
    })
}
