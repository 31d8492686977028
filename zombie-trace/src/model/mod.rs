//! The process model and the per-parent ledger: the one place that knows what
//! a process is, who must reap it, and what it owes.
//!
//! # Invariants
//!
//! 1. **Identity.** A process is a [`ProcKey`]: its thread-group id *and* the
//!    boot-time clock tick it started at. PIDs are reused (pid_max wraps in
//!    seconds under a fork storm); a PID alone never identifies anything here.
//! 2. **Processes, not threads.** Only thread groups are tracked. The kernel
//!    programs drop thread creation and every exit but the one that kills the
//!    whole group; the /proc scan lists only thread-group leaders.
//! 3. **Life cycle.** A tracked process is `Alive`, then a `Zombie` (its group
//!    is dead, nobody has released it yet), then it leaves the ledger the
//!    moment it is released — by its parent's wait, by the kernel (SIGCHLD
//!    ignored / SA_NOCLDWAIT), by an adopter, or by PID-namespace teardown.
//!    A process that is gone from the kernel is never kept: when the kernel
//!    frees a process still in the ledger, the release was done by a call
//!    the tracer does not see (io_uring `IORING_OP_WAITID`, a 32-bit wait)
//!    and it leaves then ([`ReapKind::Freed`]).
//! 4. **One reaper.** Every tracked process has at most one `parent`: the
//!    process that must reap it (the kernel's `real_parent`, as a process).
//!    The parent's children list holds exactly the tracked processes that
//!    name it as parent, live and zombie, and `pending` is the number of
//!    zombies among them.
//! 5. **Reparenting.** When a process dies, all its children (live and zombie)
//!    move to the adopter the kernel chose for them (nearest subreaper in the
//!    same PID namespace, else the namespace's init). Zombies keep their
//!    original exit time; the adopter now owes them.
//! 6. **What a wait returns.** wait4/waitid report the child's PID as the
//!    waiter's PID namespace sees it (`vpid`). Zombies are indexed by
//!    (parent, vpid); reparenting never crosses a PID namespace level, so a
//!    zombie's vpid stays valid for its adopter.
//! 7. **Exit times.** Zombies found by the start-up /proc scan exited at an
//!    unknown time: [`ExitTime::BeforeStart`]. Their age is counted from the
//!    tracer's start, a lower bound. Zombies a resync finds
//!    ([`Ledger::resync`]) are [`ExitTime::Unknown`], aged from the resync.
//! 8. **What it knows about a parent** (SIGCHLD action, subreaper flag) is
//!    `Unknown` until an event says; views fall back to /proc for the rest.
//!    A fork copies the parent's SIGCHLD action to the child; an exec resets
//!    a handler to the default (an ignored SIGCHLD stays ignored).
//! 9. **Seed and stream.** The process-table read that seeds the ledger
//!    (the kernel's task iterator, else a /proc scan: the same fields) runs after
//!    every program is attached, and the programs attach from the end of a
//!    life to its start (releases, then exits, then forks). So for every
//!    event the stream holds, it also holds every later event of the same
//!    process; events from before the scan are applied on top of it and
//!    each is idempotent against a scan that already shows its effect (a
//!    fork of a known process, an exit of a known zombie, a release of a
//!    process the scan no longer lists). No event is dropped and no zombie
//!    the scan saw can miss its release.
//! 10. **Healing.** After events were lost the ledger can be wrong in any
//!     way; [`Ledger::resync`] makes it equal to a /proc scan again, and is
//!     idempotent with the events still in flight.
//! 11. **Oldest zombie.** Each parent keeps the exit time of its oldest
//!     zombie as zombies are linked and unlinked (ordered by time, then by
//!     how well it is known: one value however the children are listed).
//!     When the oldest leaves, it is unknown until [`Ledger::refresh_oldest`]
//!     (the engine calls it before reports, queries and the end: not after
//!     every batch, where a reaper taking its oldest zombie each time would
//!     make it walk 20 times a second) finds it again; a question before
//!     that walks the children. The answer is always the walk's.
//!
//! Per-event work is O(1) with no allocation once the tables have grown to
//! the machine's process count (they start at twice the processes of the
//! start-up scan and grow with the host, but are never sized for pid_max,
//! which would make every new PID a cache miss), except reparenting, which
//! is O(children of the dead process).

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::fmt;

use zombie_trace_common::{
    AttrEvent, AttrKind, COMM_LEN, ExitEvent, ForkEvent, FreeEvent, ProcessId, WaitEvent,
    WaitSyscall, exit_flags, fork_flags, wait_flags,
};

mod health;
pub use health::{LedgerHealth, LostCounts, Moment};

use crate::host::procfs::ProcStat;
use crate::kernel::events::Event;

/// Identity of a process (invariant 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcKey {
    /// Thread-group id in the initial PID namespace.
    pub pid: u32,
    /// Start time in clock ticks since boot, as in /proc/<pid>/stat field 22.
    pub start_ticks: u64,
}

/// Converts kernel boot-time nanoseconds to /proc clock ticks.
#[derive(Clone, Copy, Debug)]
pub struct TickClock {
    ns_per_tick: u64,
}

impl TickClock {
    pub fn new(ticks_per_second: u64) -> Self {
        Self {
            ns_per_tick: 1_000_000_000 / ticks_per_second.max(1),
        }
    }

    /// Same rounding as the kernel's nsec_to_clock_t (truncation).
    pub fn key(&self, id: &ProcessId) -> ProcKey {
        ProcKey {
            pid: id.tgid,
            start_ticks: id.start_boottime_ns / self.ns_per_tick,
        }
    }
}

/// A task's comm (TASK_COMM_LEN bytes, NUL padded).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Comm(pub [u8; COMM_LEN]);

impl Comm {
    /// The name's bytes, without the NUL padding.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        &self.0[..end]
    }

    pub fn as_str_lossy(&self) -> String {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        String::from_utf8_lossy(&self.0[..end]).into_owned()
    }

    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str_lossy())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str_lossy())
    }
}

/// When a zombie's thread group died (invariant 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitTime {
    /// CLOCK_BOOTTIME nanoseconds.
    At(u64),
    /// Already a zombie when the tracer started.
    BeforeStart,
    /// Found a zombie by a resync (after lost events) at `seen_ns`
    /// (CLOCK_BOOTTIME); it exited at an unknown time before.
    Unknown { seen_ns: u64 },
}

impl ExitTime {
    /// Whether the exit time is known exactly.
    pub fn is_exact(&self) -> bool {
        matches!(self, ExitTime::At(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcState {
    Alive,
    Zombie(ExitTime),
}

/// Who released a zombie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReapKind {
    /// The parent called wait4/waitid.
    ParentWait,
    /// The kernel, because the parent ignores SIGCHLD or set SA_NOCLDWAIT.
    AutoReap,
    /// An adopter (init or a subreaper) called wait4/waitid.
    AdopterWait,
    /// The kernel, because the adopter ignores SIGCHLD.
    AdopterAutoReap,
    /// The kernel, tearing down a PID namespace whose init died.
    NamespaceTeardown,
    /// A release the tracer saw no call for (io_uring `IORING_OP_WAITID`, a
    /// 32-bit compat wait), noticed when the kernel freed the process: one
    /// RCU grace period after the real release, so its latency is an upper
    /// bound.
    Freed,
    /// Found gone by a resync after lost events: no latency.
    Resync,
}

impl ReapKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReapKind::ParentWait => "parent_wait",
            ReapKind::AutoReap => "auto_reap",
            ReapKind::AdopterWait => "adopter_wait",
            ReapKind::AdopterAutoReap => "adopter_auto_reap",
            ReapKind::NamespaceTeardown => "namespace_teardown",
            ReapKind::Freed => "freed",
            ReapKind::Resync => "resync",
        }
    }
}

/// A process's SIGCHLD action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigchldAction {
    /// No event has told the tracer yet (see /proc SigIgn/SigCgt).
    Unknown,
    /// SIG_DFL: the child becomes a zombie until the parent waits.
    Default,
    /// SIG_IGN: the kernel reaps children itself.
    Ignore,
    /// A handler is installed (it may or may not wait).
    Handler,
}

impl SigchldAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Default => "default",
            Self::Ignore => "ignored",
            Self::Handler => "handler",
        }
    }
}

/// Why a SIGCHLD action changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeCause {
    /// rt_sigaction(SIGCHLD, ...).
    Sigaction,
    /// execve() reset a handler to the default.
    Exec,
}

/// The last change of a process's SIGCHLD action seen by the tracer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigchldChange {
    /// CLOCK_BOOTTIME nanoseconds.
    pub at_ns: u64,
    pub from: SigchldAction,
    pub to: SigchldAction,
    pub cause: ChangeCause,
}

/// How a process has called wait4/waitid since the tracer started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitStats {
    /// Calls that named one child (wait4 pid > 0, waitid P_PID / P_PIDFD).
    pub specific: u64,
    /// Calls for any child (wait4 -1, waitid P_ALL).
    pub any: u64,
    /// Calls for a process group.
    pub group: u64,
    /// WNOHANG calls that found nothing ready.
    pub nohang_empty: u64,
    /// Calls that failed with ECHILD (no child to wait for).
    pub echild: u64,
    /// Calls that failed otherwise (EINTR, EFAULT, ...).
    pub errors: u64,
    /// waitid WNOWAIT calls that reported a child without releasing it.
    pub wnowait_peeks: u64,
    /// The PID (as the caller sees it) the last specific call waited for.
    pub last_specific_target: i32,
    /// CLOCK_BOOTTIME of the last call's return (0: none).
    pub last_call_ns: u64,
    /// CLOCK_BOOTTIME of the last call that released a zombie (0: none).
    pub last_reap_ns: u64,
}

/// What a process has done as a parent since the tracer started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParentStats {
    /// Children it created.
    pub forks: u64,
    /// Its children (own or adopted) whose thread group died.
    pub exits: u64,
    /// Zombies it released with wait4/waitid.
    pub reaped: u64,
    /// Children the kernel released at exit because of its SIGCHLD disposition.
    pub auto_reaped: u64,
    /// Children it inherited from dying processes.
    pub adopted: u64,
    /// Wait calls that returned.
    pub wait_calls: u64,
    /// Zombies currently owed (invariant 4).
    pub pending: u32,
    /// Of `pending`, those that were zombies before the tracer started.
    pub pending_before_start: u32,
}

type Slot = u32;

/// One tracked process.
#[derive(Clone, Debug)]
pub struct Process {
    pub key: ProcKey,
    pub comm: Comm,
    pub state: ProcState,
    /// Its PID as its parent's PID namespace sees it (invariant 6).
    pub vpid: u32,
    /// It was inherited by its current parent rather than forked by it.
    pub adopted: bool,
    /// It was the init of a PID namespace and has died: the kernel reaps
    /// everything still parented to it.
    pub dead_ns_init: bool,
    pub stats: ParentStats,
    pub waits: WaitStats,
    pub sigchld: SigchldAction,
    /// SA_NOCLDWAIT is set (children are auto-reaped even with a handler).
    pub nocldwait: bool,
    pub last_sigchld_change: Option<SigchldChange>,
    /// PR_SET_CHILD_SUBREAPER, when an event has told.
    pub subreaper: Option<bool>,
    /// Whether an ancestor is a child subreaper, when an event has told.
    pub has_subreaper_ancestor: Option<bool>,
    /// The exit time of the oldest zombie it owes, kept as zombies come and
    /// go; `None` with zombies owed when the oldest left (see
    /// [`Ledger::refresh_oldest`]).
    oldest_zombie: Option<ExitTime>,
    parent: Option<Slot>,
    first_child: Option<Slot>,
    prev_sibling: Option<Slot>,
    next_sibling: Option<Slot>,
}

impl Process {
    fn new(key: ProcKey, comm: Comm, state: ProcState, vpid: u32) -> Self {
        Self {
            key,
            comm,
            state,
            vpid,
            adopted: false,
            dead_ns_init: false,
            stats: ParentStats::default(),
            waits: WaitStats::default(),
            sigchld: SigchldAction::Unknown,
            nocldwait: false,
            last_sigchld_change: None,
            subreaper: None,
            has_subreaper_ancestor: None,
            oldest_zombie: None,
            parent: None,
            first_child: None,
            prev_sibling: None,
            next_sibling: None,
        }
    }

    pub fn is_zombie(&self) -> bool {
        matches!(self.state, ProcState::Zombie(_))
    }

    /// Sets the SIGCHLD action; returns the change, if it is one.
    fn set_sigchld(
        &mut self,
        to: SigchldAction,
        at_ns: u64,
        cause: ChangeCause,
    ) -> Option<SigchldChange> {
        let change = (to != self.sigchld).then_some(SigchldChange {
            at_ns,
            from: self.sigchld,
            to,
            cause,
        });
        if change.is_some() {
            self.last_sigchld_change = change;
        }
        self.sigchld = to;
        change
    }
}

/// What changed in the ledger, for the views (alerts, latency, reports).
#[derive(Clone, Copy, Debug)]
pub enum Change {
    /// A child's thread group died and it now waits to be reaped.
    Exited {
        parent: ProcKey,
        parent_comm: Comm,
        child: ProcKey,
        /// The parent's pending zombies after this change.
        pending: u32,
    },
    /// A zombie left the process table.
    Released {
        /// Who released it (its parent or adopter at the time).
        reaper: ProcKey,
        reaper_comm: Comm,
        child: ProcKey,
        child_comm: Comm,
        how: ReapKind,
        exited: ExitTime,
        released_ns: u64,
        /// The reaper's pending zombies after this change.
        pending: u32,
    },
    /// A dying process's children moved to an adopter.
    Adopted {
        from: ProcKey,
        to: ProcKey,
        to_comm: Comm,
        children: u32,
        zombies: u32,
        /// The adopter's pending zombies after this change.
        pending: u32,
    },
    /// A process's SIGCHLD action changed (rt_sigaction, or execve resetting
    /// a handler): the moment a job runner loses its handler.
    Sigchld {
        process: ProcKey,
        comm: Comm,
        change: SigchldChange,
    },
}

/// Counters about the ledger's own view of the world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerCounters {
    pub events: u64,
    /// Exit events for a process already known to be dead (duplicates from
    /// concurrent thread exits).
    pub duplicate_exits: u64,
    /// Wait returns that reported a child the ledger had no zombie for.
    pub unmatched_reaps: u64,
    /// Releases of processes with no known reaper (should stay 0).
    pub unattributed_releases: u64,
    /// Zombies released by a call the tracer did not see, noticed when the
    /// kernel freed them ([`ReapKind::Freed`]).
    pub freed_zombies: u64,
    /// Processes freed while the ledger still had them alive: their exit
    /// was never seen (lost events).
    pub freed_alive: u64,
}

/// What a resync ([`Ledger::resync`]) corrected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResyncSummary {
    /// Zombies the ledger held that /proc no longer lists (their release
    /// was lost).
    pub zombies_removed: u32,
    /// Zombies /proc lists that the ledger held alive or not at all.
    pub zombies_added: u32,
    /// Live processes the ledger held that /proc no longer lists.
    pub gone_removed: u32,
    /// Live processes /proc lists that the ledger did not hold.
    pub added: u32,
    /// Processes whose parent the ledger had wrong.
    pub relinked: u32,
}

impl ResyncSummary {
    /// Entries changed, all kinds.
    pub fn corrections(&self) -> u64 {
        [
            self.zombies_removed,
            self.zombies_added,
            self.gone_removed,
            self.added,
            self.relinked,
        ]
        .iter()
        .map(|&n| u64::from(n))
        .sum()
    }
}

/// Whether a scanned process is dead or dying: a zombie, or in `do_exit()`
/// (whose exit event may have fired before the programs were attached;
/// if it comes after, it dates the death and applies in full).
fn dead(st: &ProcStat) -> bool {
    st.is_zombie() || st.is_exiting()
}

fn key_of(st: &ProcStat) -> ProcKey {
    ProcKey {
        pid: st.pid,
        start_ticks: st.start_ticks,
    }
}

/// The per-parent ledger over the process model.
pub struct Ledger {
    slots: Vec<Option<Process>>,
    free: Vec<Slot>,
    /// Fx, not SipHash: lookups here are most of an event's cost. Keys are
    /// PIDs and start ticks the kernel hands out, not chosen by a client.
    by_key: FxHashMap<ProcKey, Slot>,
    /// Zombies by (parent slot, vpid): what a wait return names (invariant 6).
    zombies: FxHashMap<(Slot, u32), Slot>,
    clock: TickClock,
    /// CLOCK_BOOTTIME when tracing started; the exit time assumed for
    /// zombies found by the start-up scan.
    started_ns: u64,
    /// Parents whose oldest zombie was released since the last
    /// [`Ledger::refresh_oldest`].
    oldest_unknown: Vec<Slot>,
    pub counters: LedgerCounters,
}

const SIGCHLD_STOPPED: i32 = 0x7f;
const SIGCHLD_CONTINUED: i32 = 0xffff;
const WNOWAIT: u32 = 0x0100_0000;
const CLD_EXITED: i32 = 1;
const CLD_DUMPED: i32 = 3;

impl Ledger {
    /// `capacity`: expected number of processes (the tables grow beyond it).
    pub fn new(clock: TickClock, started_ns: u64, capacity: usize) -> Self {
        Self {
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            by_key: FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
            zombies: FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
            clock,
            started_ns,
            oldest_unknown: Vec::new(),
            counters: LedgerCounters::default(),
        }
    }

    pub fn clock(&self) -> TickClock {
        self.clock
    }

    /// Number of tracked processes (alive and zombie).
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn get(&self, key: &ProcKey) -> Option<&Process> {
        self.by_key.get(key).and_then(|&slot| self.proc(slot))
    }

    /// The process that must reap `key`.
    pub fn parent_of(&self, key: &ProcKey) -> Option<&Process> {
        let slot = *self.by_key.get(key)?;
        self.proc(slot)?.parent.and_then(|p| self.proc(p))
    }

    /// The live (not yet released) process with this PID, if any.
    pub fn find_pid(&self, pid: u32) -> Option<&Process> {
        self.processes()
            .filter(|p| p.key.pid == pid)
            .max_by_key(|p| p.key.start_ticks)
    }

    pub fn processes(&self) -> impl Iterator<Item = &Process> {
        self.slots.iter().flatten()
    }

    /// Up to `limit` zombies, in slot order from slot `cursor` on (wrapping
    /// once), and the cursor to continue from: for checking all zombies a
    /// few at a time.
    pub fn zombies_from(&self, cursor: usize, limit: usize) -> (Vec<ProcKey>, usize) {
        let n = self.slots.len();
        let start = if cursor < n { cursor } else { 0 };
        let mut keys = Vec::new();
        for i in 0..n {
            let slot = (start + i) % n;
            if keys.len() == limit {
                return (keys, slot);
            }
            if let Some(p) = self.slots[slot].as_ref().filter(|p| p.is_zombie()) {
                keys.push(p.key);
            }
        }
        (keys, start)
    }

    /// Processes that owe at least one reap.
    pub fn parents_with_zombies(&self) -> impl Iterator<Item = &Process> {
        self.processes().filter(|p| p.stats.pending > 0)
    }

    /// Children (live and zombie) of a tracked process.
    pub fn children(&self, key: &ProcKey) -> impl Iterator<Item = &Process> {
        let first = self
            .by_key
            .get(key)
            .and_then(|&s| self.proc(s))
            .and_then(|p| p.first_child);
        std::iter::successors(first.and_then(|s| self.proc(s)), |p| {
            p.next_sibling.and_then(|s| self.proc(s))
        })
    }

    /// Exit time of the oldest zombie `key` owes: kept as zombies come and
    /// go, so a view asks in O(1) (a report over 28,000 zombies walked them
    /// all, for each parent and each view: a fifth of a replay's time).
    /// When the oldest was released since the last
    /// [`Ledger::refresh_oldest`], the children are walked instead.
    pub fn oldest_zombie(&self, key: &ProcKey) -> Option<ExitTime> {
        let p = self.get(key)?;
        if p.stats.pending == 0 {
            return None;
        }
        p.oldest_zombie.or_else(|| self.walk_oldest_zombie(key))
    }

    fn walk_oldest_zombie(&self, key: &ProcKey) -> Option<ExitTime> {
        self.children(key)
            .filter_map(|c| match c.state {
                ProcState::Zombie(t) => Some(t),
                ProcState::Alive => None,
            })
            .min_by_key(|t| self.exit_order(*t))
    }

    /// Finds again the oldest zombie of every parent whose oldest was
    /// released: the engine calls it before a report, a query or the end,
    /// so that each such parent is walked once then, not once per view.
    pub fn refresh_oldest(&mut self) {
        for slot in std::mem::take(&mut self.oldest_unknown) {
            let Some(p) = self.proc(slot) else { continue };
            if p.oldest_zombie.is_some() || p.stats.pending == 0 {
                continue;
            }
            let key = p.key;
            let oldest = self.walk_oldest_zombie(&key);
            self.proc_mut(slot).oldest_zombie = oldest;
        }
    }

    /// Orders exit times: by when (the tracer start for `BeforeStart`),
    /// then by how well known, so that the oldest is one value however the
    /// zombies are listed.
    fn exit_order(&self, t: ExitTime) -> (u64, u8) {
        let rank = match t {
            ExitTime::BeforeStart => 0,
            ExitTime::Unknown { .. } => 1,
            ExitTime::At(_) => 2,
        };
        (self.exit_ns(t), rank)
    }

    /// Boot-time nanoseconds of an exit (the tracer start for `BeforeStart`).
    pub fn exit_ns(&self, t: ExitTime) -> u64 {
        match t {
            ExitTime::At(ns) => ns,
            ExitTime::BeforeStart => self.started_ns,
            ExitTime::Unknown { seen_ns } => seen_ns,
        }
    }

    fn proc(&self, slot: Slot) -> Option<&Process> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    fn proc_mut(&mut self, slot: Slot) -> &mut Process {
        match self.slots.get_mut(slot as usize).and_then(Option::as_mut) {
            Some(p) => p,
            // Slots handed out by `insert` stay occupied until `remove`;
            // every caller holds a slot it just looked up.
            None => unreachable!("ledger slot {slot} is empty"),
        }
    }

    fn insert(&mut self, process: Process) -> Slot {
        let key = process.key;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(process);
                slot
            }
            None => {
                self.slots.push(Some(process));
                (self.slots.len() - 1) as Slot
            }
        };
        self.by_key.insert(key, slot);
        slot
    }

    /// The slot of `key`, creating a placeholder for a process first seen as
    /// a parent, adopter or waiter.
    fn slot_or_placeholder(&mut self, key: ProcKey, comm: Comm) -> Slot {
        match self.by_key.get(&key) {
            Some(&slot) => slot,
            None => self.insert(Process::new(key, comm, ProcState::Alive, key.pid)),
        }
    }

    fn link(&mut self, child: Slot, parent: Slot) {
        let head = self.proc(parent).and_then(|p| p.first_child);
        {
            let c = self.proc_mut(child);
            c.parent = Some(parent);
            c.prev_sibling = None;
            c.next_sibling = head;
        }
        if let Some(head) = head {
            self.proc_mut(head).prev_sibling = Some(child);
        }
        self.proc_mut(parent).first_child = Some(child);
        if let ProcState::Zombie(t) = self.proc_mut(child).state {
            let vpid = self.proc_mut(child).vpid;
            self.zombies.insert((parent, vpid), child);
            let order = self.exit_order(t);
            let oldest = self.proc(parent).and_then(|p| match p.oldest_zombie {
                // Unknown while zombies are owed: stays so until refreshed.
                None if p.stats.pending > 0 => None,
                Some(o) if self.exit_order(o) <= order => Some(o),
                _ => Some(t),
            });
            let p = self.proc_mut(parent);
            p.oldest_zombie = oldest;
            p.stats.pending += 1;
            if t == ExitTime::BeforeStart {
                p.stats.pending_before_start += 1;
            }
        }
    }

    fn unlink(&mut self, child: Slot) {
        let (parent, prev, next, state, vpid) = {
            let c = self.proc_mut(child);
            let out = (c.parent, c.prev_sibling, c.next_sibling, c.state, c.vpid);
            c.parent = None;
            c.prev_sibling = None;
            c.next_sibling = None;
            out
        };
        let Some(parent) = parent else { return };
        match prev {
            Some(prev) => self.proc_mut(prev).next_sibling = next,
            None => self.proc_mut(parent).first_child = next,
        }
        if let Some(next) = next {
            self.proc_mut(next).prev_sibling = prev;
        }
        if let ProcState::Zombie(t) = state {
            if self.zombies.get(&(parent, vpid)) == Some(&child) {
                self.zombies.remove(&(parent, vpid));
            }
            let p = self.proc_mut(parent);
            p.stats.pending -= 1;
            if t == ExitTime::BeforeStart {
                p.stats.pending_before_start -= 1;
            }
            if p.stats.pending == 0 {
                p.oldest_zombie = None;
            } else if p.oldest_zombie == Some(t) {
                // The oldest left (or one as old): found again when asked.
                p.oldest_zombie = None;
                self.oldest_unknown.push(parent);
            }
        }
    }

    /// Removes a released process. Its children must already have moved.
    fn remove(&mut self, slot: Slot) {
        self.unlink(slot);
        // Children left behind (only if an adopter was unknown) lose their
        // reaper link; they are re-linked when their own events name one.
        let mut child = self.proc(slot).and_then(|p| p.first_child);
        while let Some(c) = child {
            child = self.proc(c).and_then(|p| p.next_sibling);
            self.unlink(c);
        }
        if let Some(p) = self.slots[slot as usize].take() {
            self.by_key.remove(&p.key);
        }
        self.free.push(slot);
    }

    /// Makes `child` a zombie owed by its current parent.
    fn mark_zombie(&mut self, child: Slot, exited: ExitTime) {
        self.set_state(child, ProcState::Zombie(exited));
    }

    fn set_state(&mut self, child: Slot, state: ProcState) {
        let parent = self.proc_mut(child).parent;
        match parent {
            Some(parent) => {
                // Re-link so that the zombie index and counters follow.
                self.unlink(child);
                self.proc_mut(child).state = state;
                self.link(child, parent);
            }
            None => self.proc_mut(child).state = state,
        }
    }

    fn release(&mut self, child: Slot, how: ReapKind, now_ns: u64, emit: &mut impl FnMut(Change)) {
        let c = self.proc_mut(child);
        let (child_key, child_comm, state, parent) = (c.key, c.comm, c.state, c.parent);
        self.remove(child);
        let exited = match state {
            ProcState::Zombie(t) => t,
            ProcState::Alive => ExitTime::At(now_ns),
        };
        // Every path that releases a process has linked it to its reaper
        // first (invariant 4); a release with no reaper is not reported as
        // anyone's.
        let Some(p) = parent.and_then(|p| self.proc(p)) else {
            self.counters.unattributed_releases += 1;
            return;
        };
        let (reaper, reaper_comm, pending) = (p.key, p.comm, p.stats.pending);
        emit(Change::Released {
            reaper,
            reaper_comm,
            child: child_key,
            child_comm,
            how,
            exited,
            released_ns: now_ns,
            pending,
        });
    }

    /// Seeds the ledger from a /proc scan: every process with its parent
    /// link; zombies with [`ExitTime::BeforeStart`]. `vpid_of` maps a child
    /// to its PID as its parent sees it (differs only across PID namespaces).
    pub fn seed(&mut self, stats: &[ProcStat], vpid_of: impl FnMut(&ProcStat) -> u32) {
        self.reconcile(stats, ExitTime::BeforeStart, vpid_of, &mut |_| {});
    }

    /// Makes the ledger equal to a /proc scan taken at `now_ns` (after lost
    /// events, invariant 10): what /proc no longer lists leaves, what it
    /// lists is added, zombies it shows become zombies
    /// ([`ExitTime::Unknown`]), parents follow its ppid. Zombies that leave
    /// are reported as [`ReapKind::Resync`] releases, zombies that appear as
    /// exits, so views stay in step.
    ///
    /// The scan must be taken after every queued event was applied; events
    /// that happen during the scan are applied after this call, and each is
    /// idempotent against a scan that already shows it (invariant 9).
    pub fn resync(
        &mut self,
        stats: &[ProcStat],
        now_ns: u64,
        vpid_of: impl FnMut(&ProcStat) -> u32,
        emit: &mut impl FnMut(Change),
    ) -> ResyncSummary {
        self.reconcile(stats, ExitTime::Unknown { seen_ns: now_ns }, vpid_of, emit)
    }

    fn reconcile(
        &mut self,
        stats: &[ProcStat],
        found_exited: ExitTime,
        mut vpid_of: impl FnMut(&ProcStat) -> u32,
        emit: &mut impl FnMut(Change),
    ) -> ResyncSummary {
        let mut summary = ResyncSummary::default();
        let listed: HashMap<u32, ProcKey> = stats.iter().map(|st| (st.pid, key_of(st))).collect();
        let is_listed = |key: &ProcKey| listed.get(&key.pid) == Some(key);

        // What /proc no longer lists has left the process table. Zombies
        // first, while their parents are still linked to be named.
        let gone: Vec<(Slot, bool)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, p)| {
                let p = p.as_ref().filter(|p| !is_listed(&p.key))?;
                Some((slot as Slot, p.is_zombie()))
            })
            .collect();
        for &(slot, _) in gone.iter().filter(|(_, zombie)| *zombie) {
            summary.zombies_removed += 1;
            self.release(slot, ReapKind::Resync, self.exit_ns(found_exited), emit);
        }
        for &(slot, _) in gone.iter().filter(|(_, zombie)| !*zombie) {
            summary.gone_removed += 1;
            self.remove(slot);
        }

        // Every listed process, in the state /proc shows.
        let mut found_zombies: Vec<Slot> = Vec::new();
        for st in stats {
            let key = key_of(st);
            match self.by_key.get(&key).copied() {
                None => {
                    let state = if dead(st) {
                        ProcState::Zombie(found_exited)
                    } else {
                        ProcState::Alive
                    };
                    let slot = self.insert(Process::new(key, Comm(st.comm), state, vpid_of(st)));
                    if dead(st) {
                        found_zombies.push(slot);
                    } else {
                        summary.added += 1;
                    }
                }
                Some(slot) if dead(st) && !self.proc_mut(slot).is_zombie() => {
                    // Its exit was lost (or is still in flight: then the
                    // exit event only dates it).
                    self.proc_mut(slot).vpid = vpid_of(st);
                    self.mark_zombie(slot, found_exited);
                    found_zombies.push(slot);
                }
                Some(_) => {}
            }
        }
        summary.zombies_added = found_zombies.len() as u32;

        // Under the parent /proc names.
        for st in stats {
            let Some(&slot) = self.by_key.get(&key_of(st)) else {
                continue;
            };
            let Some(&parent) = listed.get(&st.ppid).and_then(|k| self.by_key.get(k)) else {
                continue; // no parent (ppid 0), or one that left during the scan
            };
            let had = self.proc_mut(slot).parent;
            if had != Some(parent) {
                if had.is_some() {
                    summary.relinked += 1;
                    if self.proc_mut(slot).is_zombie() {
                        self.proc_mut(slot).vpid = vpid_of(st);
                    }
                }
                self.unlink(slot);
                self.link(slot, parent);
            }
        }

        for child in found_zombies {
            let Some(c) = self.proc(child) else { continue };
            let (child_key, parent) = (c.key, c.parent);
            if let Some(p) = parent.and_then(|p| self.proc(p)) {
                emit(Change::Exited {
                    parent: p.key,
                    parent_comm: p.comm,
                    child: child_key,
                    pending: p.stats.pending,
                });
            }
        }
        summary
    }

    /// Applies one kernel event, reporting what changed to `emit`.
    pub fn apply(&mut self, event: &Event, emit: &mut impl FnMut(Change)) {
        self.counters.events += 1;
        match event {
            Event::Fork(e) => self.on_fork(e),
            Event::Exit(e) => self.on_exit(e, emit),
            Event::Exec(e) => {
                let key = self.clock.key(&e.process);
                let slot = self.slot_or_placeholder(key, Comm(e.comm));
                let p = self.proc_mut(slot);
                p.comm = Comm(e.comm);
                // flush_signal_handlers(): handlers and flags are reset, an
                // ignored signal stays ignored.
                p.nocldwait = false;
                if p.sigchld == SigchldAction::Handler
                    && let Some(change) = p.set_sigchld(
                        SigchldAction::Default,
                        e.header.timestamp_ns,
                        ChangeCause::Exec,
                    )
                {
                    emit(Change::Sigchld {
                        process: key,
                        comm: p.comm,
                        change,
                    });
                }
            }
            Event::Wait(e) => self.on_wait(e, emit),
            Event::Attr(e) => self.on_attr(e, emit),
            Event::Free(e) => self.on_free(e, emit),
        }
    }

    /// The kernel freed a process. Usually it was released already and is
    /// not in the ledger (one hash lookup); a zombie still here was released
    /// by a call the tracer cannot see.
    fn on_free(&mut self, e: &FreeEvent, emit: &mut impl FnMut(Change)) {
        let key = self.clock.key(&e.process);
        let Some(&slot) = self.by_key.get(&key) else {
            return;
        };
        let now = e.header.timestamp_ns;
        if self.proc_mut(slot).is_zombie() {
            self.counters.freed_zombies += 1;
            if let Some(parent) = self.proc_mut(slot).parent {
                let p = self.proc_mut(parent);
                p.stats.reaped += 1;
                p.waits.last_reap_ns = now;
            }
            self.release(slot, ReapKind::Freed, now, emit);
        } else {
            // Its exit was lost: nobody owed it, it just leaves. Its children
            // were reparented by that exit; their next events (or a resync)
            // link them again.
            self.counters.freed_alive += 1;
            self.remove(slot);
        }
    }

    fn on_attr(&mut self, e: &AttrEvent, emit: &mut impl FnMut(Change)) {
        if e.ret != 0 {
            return; // the call failed: nothing changed
        }
        let key = self.clock.key(&e.process);
        let slot = self.slot_or_placeholder(key, Comm::default());
        let p = self.proc_mut(slot);
        match AttrKind::try_from(e.attr) {
            Ok(AttrKind::SigchldAction) => {
                const SIG_DFL: u64 = 0;
                const SIG_IGN: u64 = 1;
                const SA_NOCLDWAIT: u64 = 2;
                let action = match e.value {
                    SIG_DFL => SigchldAction::Default,
                    SIG_IGN => SigchldAction::Ignore,
                    _ => SigchldAction::Handler,
                };
                p.nocldwait = e.flags & SA_NOCLDWAIT != 0;
                if let Some(change) =
                    p.set_sigchld(action, e.header.timestamp_ns, ChangeCause::Sigaction)
                {
                    emit(Change::Sigchld {
                        process: key,
                        comm: p.comm,
                        change,
                    });
                }
            }
            Ok(AttrKind::ChildSubreaper) => p.subreaper = Some(e.value != 0),
            Err(_) => {}
        }
    }

    fn on_fork(&mut self, e: &ForkEvent) {
        let parent_key = self.clock.key(&e.parent);
        // The child inherited the forking task's comm.
        let parent = self.slot_or_placeholder(parent_key, Comm(e.comm));
        let (sigchld, nocldwait, child_has_subreaper_ancestor) = {
            let p = self.proc_mut(parent);
            p.stats.forks += 1;
            let is = e.parent_flags & fork_flags::PARENT_SUBREAPER != 0;
            let has = e.parent_flags & fork_flags::PARENT_HAS_SUBREAPER_ANCESTOR != 0;
            p.subreaper = Some(is);
            p.has_subreaper_ancestor = Some(has);
            // copy_signal(): a child has a subreaper ancestor if its parent
            // is one or has one.
            (p.sigchld, p.nocldwait, is || has)
        };
        let child_key = self.clock.key(&e.child);
        if let Some(&child) = self.by_key.get(&child_key) {
            // Already known from the start-up scan, which raced this event.
            if self.proc_mut(child).parent.is_none() {
                self.link(child, parent);
            }
            return;
        }
        let child = self.insert(Process::new(
            child_key,
            Comm(e.comm),
            ProcState::Alive,
            e.child_vpid,
        ));
        {
            // The child starts with a copy of the parent's signal actions.
            let c = self.proc_mut(child);
            c.sigchld = sigchld;
            c.nocldwait = nocldwait;
            c.subreaper = Some(false);
            c.has_subreaper_ancestor = Some(child_has_subreaper_ancestor);
        }
        self.link(child, parent);
    }

    fn on_exit(&mut self, e: &ExitEvent, emit: &mut impl FnMut(Change)) {
        let now = e.header.timestamp_ns;
        let key = self.clock.key(&e.process);
        let child = match self.by_key.get(&key) {
            Some(&slot) => slot,
            None => self.insert(Process::new(key, Comm(e.comm), ProcState::Alive, e.vpid)),
        };
        match self.proc_mut(child).state {
            ProcState::Zombie(ExitTime::At(_)) => {
                self.counters.duplicate_exits += 1;
                return;
            }
            ProcState::Zombie(ExitTime::BeforeStart | ExitTime::Unknown { .. }) => {
                // A scan saw the death this event reports: the event dates it
                // and applies in full (auto-reap, adoption of its children).
                self.set_state(child, ProcState::Alive);
            }
            ProcState::Alive => {}
        }
        {
            let c = self.proc_mut(child);
            c.comm = Comm(e.comm);
            c.vpid = e.vpid;
            c.subreaper = Some(e.flags & exit_flags::SUBREAPER != 0);
        }

        // Who must reap it: the kernel's real_parent at exit, unless that is
        // a process we already saw die, in which case the ledger has already
        // moved this child to its adopter (the child's exit raced the
        // parent's reparenting in the kernel).
        let event_parent = self.clock.key(&e.parent);
        let event_parent_dead = self
            .by_key
            .get(&event_parent)
            .and_then(|&s| self.proc(s))
            .is_some_and(|p| p.is_zombie() && !p.dead_ns_init);
        let current = self.proc_mut(child).parent;
        let parent = match current {
            Some(p) if event_parent_dead || self.proc(p).map(|p| p.key) == Some(event_parent) => p,
            _ => {
                let p = self.slot_or_placeholder(event_parent, Comm::default());
                self.unlink(child);
                self.link(child, p);
                p
            }
        };

        let flags = e.flags;
        self.proc_mut(parent).stats.exits += 1;
        self.adopt_children(child, e, emit);
        if flags & exit_flags::NS_INIT != 0 {
            self.proc_mut(child).dead_ns_init = true;
        }

        let parent_is_dead_ns_init = self.proc(parent).is_some_and(|p| p.dead_ns_init);
        if flags & exit_flags::AUTOREAP != 0 {
            self.proc_mut(parent).stats.auto_reaped += 1;
            let how = if self.proc_mut(child).adopted {
                ReapKind::AdopterAutoReap
            } else {
                ReapKind::AutoReap
            };
            self.release(child, how, now, emit);
        } else if parent_is_dead_ns_init {
            self.release(child, ReapKind::NamespaceTeardown, now, emit);
        } else {
            self.mark_zombie(child, ExitTime::At(now));
            let p = self.proc_mut(parent);
            emit(Change::Exited {
                parent: p.key,
                parent_comm: p.comm,
                child: key,
                pending: p.stats.pending,
            });
        }
    }

    /// Moves the children of the dying process `dead` to its adopter
    /// (invariant 5), or releases its zombies when the kernel does.
    fn adopt_children(&mut self, dead: Slot, e: &ExitEvent, emit: &mut impl FnMut(Change)) {
        let Some(first) = self.proc_mut(dead).first_child else {
            return;
        };
        let now = e.header.timestamp_ns;
        let from = self.proc_mut(dead).key;
        if e.flags & exit_flags::NS_INIT != 0 {
            // The kernel kills the namespace and reaps it from inside
            // zap_pid_ns_processes(); zombies go now, live children when
            // their own exits arrive.
            let mut child = Some(first);
            while let Some(c) = child {
                child = self.proc(c).and_then(|p| p.next_sibling);
                if self.proc_mut(c).is_zombie() {
                    self.release(c, ReapKind::NamespaceTeardown, now, emit);
                }
            }
            return;
        }
        if e.flags & exit_flags::HAS_ADOPTER == 0 {
            return;
        }
        let adopter_key = self.clock.key(&e.adopter);
        let adopter = self.slot_or_placeholder(adopter_key, Comm::default());
        let autoreaps = e.flags & exit_flags::ADOPTER_AUTOREAPS != 0;
        let (mut moved, mut zombies) = (0u32, 0u32);
        let mut child = Some(first);
        while let Some(c) = child {
            child = self.proc(c).and_then(|p| p.next_sibling);
            self.unlink(c);
            self.proc_mut(c).adopted = true;
            moved += 1;
            if self.proc_mut(c).is_zombie() {
                zombies += 1;
                if autoreaps {
                    // reparent_leader(): the adopter ignores SIGCHLD, so the
                    // kernel releases inherited zombies on the spot.
                    self.link(c, adopter);
                    self.proc_mut(adopter).stats.auto_reaped += 1;
                    self.release(c, ReapKind::AdopterAutoReap, now, emit);
                    continue;
                }
            }
            self.link(c, adopter);
        }
        let a = self.proc_mut(adopter);
        a.stats.adopted += u64::from(moved);
        emit(Change::Adopted {
            from,
            to: a.key,
            to_comm: a.comm,
            children: moved,
            zombies,
            pending: a.stats.pending,
        });
    }

    fn on_wait(&mut self, e: &WaitEvent, emit: &mut impl FnMut(Change)) {
        let waiter_key = self.clock.key(&e.waiter);
        let waiter = self.slot_or_placeholder(waiter_key, Comm::default());
        {
            let p = self.proc_mut(waiter);
            p.stats.wait_calls += 1;
            p.waits.record(e);
        }
        let Some(vpid) = reaped_vpid(e) else { return };
        match self.zombies.get(&(waiter, vpid)).copied() {
            Some(child) => {
                self.proc_mut(waiter).waits.last_reap_ns = e.header.timestamp_ns;
                let how = if self.proc_mut(child).adopted {
                    ReapKind::AdopterWait
                } else {
                    ReapKind::ParentWait
                };
                self.proc_mut(waiter).stats.reaped += 1;
                self.release(child, how, e.header.timestamp_ns, emit);
            }
            None => self.counters.unmatched_reaps += 1,
        }
    }
}

impl WaitStats {
    fn record(&mut self, e: &WaitEvent) {
        const ECHILD: i64 = -10;
        const WNOHANG: u32 = 1;
        const P_ALL: u32 = 0;
        const P_PID: u32 = 1;
        const P_PIDFD: u32 = 3;
        self.last_call_ns = e.header.timestamp_ns;
        let syscall = WaitSyscall::try_from(e.syscall).ok();
        if e.flags & wait_flags::ENTRY_SEEN != 0 {
            let specific = match syscall {
                Some(WaitSyscall::Wait4) => e.target > 0,
                Some(WaitSyscall::Waitid) => e.idtype == P_PID || e.idtype == P_PIDFD,
                None => false,
            };
            let any = match syscall {
                Some(WaitSyscall::Wait4) => e.target == -1,
                Some(WaitSyscall::Waitid) => e.idtype == P_ALL,
                None => false,
            };
            if specific {
                self.specific += 1;
                self.last_specific_target = e.target;
            } else if any {
                self.any += 1;
            } else {
                self.group += 1;
            }
        }
        match e.ret {
            ECHILD => self.echild += 1,
            r if r < 0 => self.errors += 1,
            _ => {
                let reported_nothing = match syscall {
                    Some(WaitSyscall::Wait4) => e.ret == 0,
                    _ => e.flags & wait_flags::RESULT_READ != 0 && e.child_vpid == 0,
                };
                if reported_nothing && e.options & WNOHANG != 0 {
                    self.nohang_empty += 1;
                } else if syscall == Some(WaitSyscall::Waitid)
                    && e.options & WNOWAIT != 0
                    && e.child_vpid > 0
                {
                    self.wnowait_peeks += 1;
                }
            }
        }
    }
}

/// The child a wait return released, as the waiter's vpid; `None` when the
/// call released nothing (error, WNOHANG with nothing ready, a stop or
/// continue report, or a WNOWAIT peek).
fn reaped_vpid(e: &WaitEvent) -> Option<u32> {
    let read = e.flags & wait_flags::RESULT_READ != 0;
    match WaitSyscall::try_from(e.syscall).ok()? {
        WaitSyscall::Wait4 => {
            if e.ret <= 0 {
                return None;
            }
            if read && ((e.status & 0xff) == SIGCHLD_STOPPED || e.status == SIGCHLD_CONTINUED) {
                return None;
            }
            u32::try_from(e.ret).ok()
        }
        WaitSyscall::Waitid => {
            if e.ret != 0 || !read || e.options & WNOWAIT != 0 {
                return None;
            }
            if !(CLD_EXITED..=CLD_DUMPED).contains(&e.status) {
                return None;
            }
            u32::try_from(e.child_vpid).ok().filter(|&p| p > 0)
        }
    }
}

#[cfg(test)]
mod tests;
