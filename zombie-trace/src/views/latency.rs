//! Reap latency: how long children stay zombies, from the death of their
//! thread group to the moment they are released, whatever released them.
//! A view on the ledger's [`Change::Released`].
//!
//! Aggregated here, in userspace, not in the kernel: pairing an exit with its
//! release needs the ledger's identity model (PID reuse, the vpid a wait
//! returns, reparenting), which the kernel programs don't have. The events
//! are streamed anyway for the ledger; the cost added per reap is one hash
//! lookup and one histogram increment, with no allocation once the group
//! exists and has seen a latency of that power of two (see [`Histogram`]).
//!
//! Releases are grouped by category ([`ReapKind`]): a parent's own wait, the
//! kernel's auto-reap, an adopter's wait, ... are never mixed. Zombies that
//! were already dead when tracing started have no known exit time: they are
//! counted apart ("exit time unknown"), never as a latency.

use rustc_hash::FxHashMap;
use std::fmt::{self, Write as _};

use serde::Serialize;
use zombie_trace_common::COMM_LEN;

use crate::host::cgroup::Attribution;
use crate::host::facts::HostFacts;
use crate::model::{Change, Comm, ExitTime, Ledger, ProcKey, ReapKind};
use crate::model::{LostCounts, Moment};
use crate::render::text::{format_us, timestamp, write_lost_warnings};
use crate::views::report::{Filter, ParentRow, parent_rows};

/// Sub-buckets per power of two: 2^5 = 32, so a bucket is at most 1/32 of
/// its lower bound wide and a percentile (the bucket's midpoint) is within
/// 1/64 (1.6 %) of the true value.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Values below this have a bucket each (exact to the nanosecond).
const EXACT: u64 = 2 * SUB;
/// Buckets covering every u64 nanosecond value (0 ..= 584 years).
pub const BUCKETS: usize = BLOCKS << SUB_BITS;
/// Buckets are stored in blocks of `SUB`, one per power of two (the exact
/// range takes two), allocated the first time a value falls in them.
const BLOCKS: usize = (64 - SUB_BITS + 1) as usize;
type Block = [u64; SUB as usize];
/// bcc-style log2 slots over whole microseconds: slot i holds
/// 2^(i-1) ..= 2^i - 1 µs (slot 1 also holds 0). u64::MAX ns is slot 55.
const LOG2_SLOTS: usize = 56;

/// The bucket of a value in nanoseconds.
fn bucket_index(ns: u64) -> usize {
    if ns < EXACT {
        return ns as usize;
    }
    // ns >= 64, so the shift is 1 ..= 58 and ns >> shift is in [32, 64).
    let shift = 63 - ns.leading_zeros() - SUB_BITS;
    ((u64::from(shift) << SUB_BITS) + (ns >> shift)) as usize
}

/// The smallest and largest nanosecond values of a bucket.
fn bucket_bounds(index: usize) -> (u64, u64) {
    let i = index as u64;
    if i < EXACT {
        return (i, i);
    }
    let shift = (i >> SUB_BITS) - 1;
    let low = (i - (shift << SUB_BITS)) << shift;
    (low, low + ((1 << shift) - 1))
}

/// The bcc log2 slot of a value in nanoseconds (over whole microseconds).
fn log2_slot(ns: u64) -> usize {
    let us = ns / 1000;
    (64 - us.leading_zeros()).max(1) as usize
}

/// A log-linear latency histogram over nanoseconds: exact below 64 ns, then
/// 32 linear sub-buckets per power of two up to u64::MAX ns, so nothing
/// overflows and precision is ~1.6 % from 1 ns to centuries. Also keeps the
/// bcc log2-µs counts exactly, for display.
///
/// Memory: ~1 KiB, plus 256 bytes per power of two it has seen a value in
/// (allocated then, at most 60 times in its life; a reaper with a steady
/// latency has one or two). So a `--by parent` run over many short-lived
/// parents stays small, and [`Histogram::record`] allocates only on the
/// first value in a new power of two.
#[derive(Clone)]
pub struct Histogram {
    blocks: Box<[Option<Box<Block>>; BLOCKS]>,
    log2_us: Box<[u64; LOG2_SLOTS]>,
    count: u64,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
    /// The range of buckets touched since the last reset.
    lo: usize,
    hi: usize,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            blocks: Box::new(std::array::from_fn(|_| None)),
            log2_us: Box::new([0; LOG2_SLOTS]),
            count: 0,
            sum_ns: 0,
            min_ns: 0,
            max_ns: 0,
            lo: 0,
            hi: 0,
        }
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min_ns", &self.min_ns)
            .field("p50_ns", &self.percentile(0.5))
            .field("max_ns", &self.max_ns)
            .finish()
    }
}

impl Histogram {
    pub fn record(&mut self, ns: u64) {
        let i = bucket_index(ns);
        let block = self.blocks[i >> SUB_BITS].get_or_insert_with(|| Box::new([0; SUB as usize]));
        block[i & (SUB as usize - 1)] += 1;
        self.log2_us[log2_slot(ns)] += 1;
        if self.count == 0 {
            (self.lo, self.hi, self.min_ns, self.max_ns) = (i, i, ns, ns);
        } else {
            self.lo = self.lo.min(i);
            self.hi = self.hi.max(i);
            self.min_ns = self.min_ns.min(ns);
            self.max_ns = self.max_ns.max(ns);
        }
        self.count += 1;
        self.sum_ns += u128::from(ns);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn min_ns(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min_ns)
    }

    pub fn max_ns(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max_ns)
    }

    pub fn mean_ns(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ns as f64 / self.count as f64)
    }

    /// The value at quantile `q` (0.5 = median): the midpoint of the bucket
    /// holding the ⌈q·count⌉-th smallest value, kept within [min, max]; the
    /// largest value is exact.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == self.count {
            return Some(self.max_ns);
        }
        let mut seen = 0;
        for (i, count) in self.used() {
            seen += count;
            if seen >= rank {
                let (low, high) = bucket_bounds(i);
                let mid = low + (high - low) / 2;
                return Some(mid.clamp(self.min_ns, self.max_ns));
            }
        }
        Some(self.max_ns)
    }

    /// (bucket index, count) of the buckets in the range used since the
    /// last reset, in order.
    fn used(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        let (first, last) = (self.lo >> SUB_BITS, self.hi >> SUB_BITS);
        (first..=last).flat_map(move |b| {
            self.blocks[b]
                .iter()
                .flat_map(move |block| block.iter().enumerate())
                .map(move |(j, &count)| ((b << SUB_BITS) + j, count))
        })
    }

    /// Powers of two with storage allocated.
    pub fn allocated_blocks(&self) -> usize {
        self.blocks.iter().flatten().count()
    }

    /// Empties the histogram, touching only the blocks used since the last
    /// reset (and keeping them for reuse).
    pub fn reset(&mut self) {
        if self.count > 0 {
            let (first, last) = (self.lo >> SUB_BITS, self.hi >> SUB_BITS);
            for block in self.blocks[first..=last].iter_mut().flatten() {
                block.fill(0);
            }
        }
        self.log2_us.fill(0);
        (self.count, self.sum_ns, self.min_ns, self.max_ns) = (0, 0, 0, 0);
        (self.lo, self.hi) = (0, 0);
    }

    /// Adds every value `other` holds, as if each had been recorded here.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        for (i, count) in other.used().filter(|&(_, c)| c > 0) {
            let block =
                self.blocks[i >> SUB_BITS].get_or_insert_with(|| Box::new([0; SUB as usize]));
            block[i & (SUB as usize - 1)] += count;
        }
        for (mine, theirs) in self.log2_us.iter_mut().zip(other.log2_us.iter()) {
            *mine += theirs;
        }
        if self.count == 0 {
            (self.lo, self.hi) = (other.lo, other.hi);
            (self.min_ns, self.max_ns) = (other.min_ns, other.max_ns);
        } else {
            self.lo = self.lo.min(other.lo);
            self.hi = self.hi.max(other.hi);
            self.min_ns = self.min_ns.min(other.min_ns);
            self.max_ns = self.max_ns.max(other.max_ns);
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
    }

    /// bcc log2 buckets in microseconds, from the first non-empty one to the
    /// last.
    pub fn log2_us_buckets(&self) -> Vec<Log2Bucket> {
        let used = |c: &u64| *c > 0;
        let (Some(first), Some(last)) = (
            self.log2_us.iter().position(used),
            self.log2_us.iter().rposition(used),
        ) else {
            return Vec::new();
        };
        (first..=last)
            .map(|slot| {
                let (low_us, le_us) = slot_bounds(slot);
                Log2Bucket {
                    low_us,
                    le_us,
                    count: self.log2_us[slot],
                }
            })
            .collect()
    }

    /// The distribution as bcc tools print it (`usecs : count distribution`).
    pub fn render_log2_us(&self) -> String {
        render_log2(&self.log2_us_buckets(), "usecs")
    }
}

/// The whole-microsecond range of a log2 slot, as bcc prints it.
fn slot_bounds(slot: usize) -> (u64, u64) {
    let high = u64::MAX >> (64 - slot.clamp(1, LOG2_SLOTS - 1));
    (if slot <= 1 { 0 } else { (high >> 1) + 1 }, high)
}

/// One bcc log2 bucket: latencies whose whole microseconds (truncated) are
/// in `low_us ..= le_us`; `count` is for this bucket alone (not cumulative).
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Log2Bucket {
    pub low_us: u64,
    pub le_us: u64,
    pub count: u64,
}

/// Renders log2 buckets like bcc's `print_log2_hist`: every slot from
/// `0 -> 1` to the last non-empty one, 40 stars wide (20 and wider columns
/// past 2^32).
pub fn render_log2(buckets: &[Log2Bucket], unit: &str) -> String {
    let mut out = String::new();
    let Some(last) = buckets.iter().rev().find(|b| b.count > 0) else {
        return out;
    };
    let slot_of = |b: &Log2Bucket| (64 - b.le_us.leading_zeros()) as usize;
    let top = slot_of(last);
    let peak = buckets.iter().map(|b| b.count).max().unwrap_or(1).max(1);
    let (wide, stars) = if top <= 32 { (false, 40) } else { (true, 20) };
    if wide {
        let _ = writeln!(out, "{:15}{unit:<29} : count     distribution", "");
    } else {
        let _ = writeln!(out, "{:5}{unit:<19} : count     distribution", "");
    }
    for slot in 1..=top {
        let (low, high) = slot_bounds(slot);
        let count = buckets
            .iter()
            .find(|b| slot_of(b) == slot)
            .map_or(0, |b| b.count);
        let n = (u128::from(count) * stars / u128::from(peak)) as usize;
        let bar = "*".repeat(n.min(stars as usize));
        let stars = stars as usize;
        if wide {
            let _ = writeln!(out, "{low:>20} -> {high:<20} : {count:<8} |{bar:<stars$}|");
        } else {
            let _ = writeln!(out, "{low:>10} -> {high:<10} : {count:<8} |{bar:<stars$}|");
        }
    }
    out
}

/// What a latency group is keyed on besides its category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum GroupBy {
    /// The reaping process (its identity: PID and start time).
    #[default]
    Parent,
    /// The reaping process's command name.
    Comm,
    /// The container the reaper runs in (its cgroup names it).
    Container,
    /// The systemd unit the reaper runs in.
    Unit,
    /// The Kubernetes pod the reaper runs in (by UID).
    Pod,
}

impl GroupBy {
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupBy::Parent => "parent",
            GroupBy::Comm => "comm",
            GroupBy::Container => "container",
            GroupBy::Unit => "unit",
            GroupBy::Pod => "pod",
        }
    }

    /// Whether a group needs to know where its reapers run.
    fn by_place(self) -> bool {
        matches!(self, GroupBy::Container | GroupBy::Unit | GroupBy::Pod)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Subject {
    Parent(ProcKey),
    Comm([u8; COMM_LEN]),
    /// An index into [`LatencyView::places`].
    Place(u32),
}

/// A container, unit or pod that latency groups are keyed on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Place {
    /// The container id, unit name or pod UID; `None` when the reaper runs
    /// in no container (unit, pod), or when its place is unknown.
    pub name: Option<String>,
    /// Whether the reaper's cgroup was read (else it was gone first, or the
    /// recording does not have it).
    pub known: bool,
    /// The container runtime, or the pod's QoS class.
    pub detail: Option<&'static str>,
}

impl Place {
    fn of(by: GroupBy, attribution: Option<&Attribution>) -> Self {
        let Some(a) = attribution else {
            return Self {
                name: None,
                known: false,
                detail: None,
            };
        };
        let (name, detail) = match by {
            GroupBy::Container => (a.container_id.clone(), a.runtime.map(|r| r.as_str())),
            GroupBy::Unit => (a.unit.clone(), None),
            GroupBy::Pod => (a.pod_uid.clone(), a.qos.map(|q| q.as_str())),
            GroupBy::Parent | GroupBy::Comm => (None, None),
        };
        Self {
            name,
            known: true,
            detail,
        }
    }

    /// The group's key: the name, `none` or `unknown`.
    fn key(&self) -> String {
        match (&self.name, self.known) {
            (Some(name), _) => name.clone(),
            (None, true) => "none".to_owned(),
            (None, false) => "unknown".to_owned(),
        }
    }
}

/// What the view decided about one reaper, once its place was read.
#[derive(Clone, Copy, Debug)]
enum Verdict {
    /// Its releases count; in this place group when grouping by place.
    Admitted(Option<u32>),
    /// The filter's place tests refuse it.
    Refused,
    /// The filter tests its place, which is unknown: not counted, but said.
    Unplaced,
}

/// The releases of one reaper (or one reaper command, or one place) in one
/// category.
#[derive(Clone, Debug)]
pub struct Group {
    pub category: ReapKind,
    /// The reaper, when grouping by parent.
    pub parent: Option<ProcKey>,
    /// The reaper's command name at its latest release.
    pub comm: Comm,
    /// Where the reapers run, when grouping by place.
    pub place: Option<Place>,
    /// Exit-to-release times of the releases whose exit time is known.
    pub latency: Histogram,
    /// Releases of zombies that died before tracing started: no latency.
    pub exit_time_unknown: u64,
}

impl Group {
    fn new(category: ReapKind, comm: Comm) -> Self {
        Self {
            category,
            parent: None,
            comm,
            place: None,
            latency: Histogram::default(),
            exit_time_unknown: 0,
        }
    }

    /// Adds one release at `released_ns` of a zombie that exited at `exited`.
    fn add(&mut self, comm: Comm, exited: ExitTime, released_ns: u64) {
        if !comm.is_empty() {
            self.comm = comm;
        }
        match exited {
            // A resync only knows the zombie was gone by then.
            ExitTime::At(ns) if self.category != ReapKind::Resync => {
                self.latency.record(released_ns.saturating_sub(ns));
            }
            _ => self.exit_time_unknown += 1,
        }
    }

    fn releases(&self) -> u64 {
        self.latency.count() + self.exit_time_unknown
    }
}

/// Reapers whose verdict is kept: past it the verdicts are forgotten and
/// read again (only live reapers still release anything).
const REAPERS_KEPT: usize = 1 << 16;

/// `zombie-trace latency`: reap-latency histograms per reaper (or command,
/// container, unit, pod) and category.
///
/// Where a reaper runs is read from the host after the batch its release
/// came in ([`LatencyView::place_reapers`]), not on the hot path: until then
/// its releases wait in a group of their own. A reaper gone before that has
/// no known place: grouped as `unknown`, or, under a place filter, counted
/// apart as not attributed, never guessed.
#[derive(Debug)]
pub struct LatencyView {
    by: GroupBy,
    filter: Filter,
    groups: FxHashMap<(ReapKind, Subject), Group>,
    /// Releases by reapers not placed yet (only when places are asked).
    unplaced: FxHashMap<(ReapKind, ProcKey), Group>,
    verdicts: FxHashMap<ProcKey, Verdict>,
    places: Vec<Place>,
    place_slots: FxHashMap<Place, u32>,
    /// Releases left out because the filter tests a place nobody could read.
    not_attributed: u64,
}

impl LatencyView {
    /// `filter` selects reapers by PID and command name, and by where they
    /// run.
    pub fn new(by: GroupBy, filter: Filter) -> Self {
        Self {
            by,
            filter,
            groups: FxHashMap::default(),
            unplaced: FxHashMap::default(),
            verdicts: FxHashMap::default(),
            places: Vec::new(),
            place_slots: FxHashMap::default(),
            not_attributed: 0,
        }
    }

    fn needs_places(&self) -> bool {
        self.by.by_place() || self.filter.places()
    }

    fn subject(&self, reaper: ProcKey, comm: Comm, place: Option<u32>) -> Subject {
        match (self.by, place) {
            (GroupBy::Parent, _) => Subject::Parent(reaper),
            (GroupBy::Comm, _) => Subject::Comm(comm.0),
            (_, Some(slot)) => Subject::Place(slot),
            // Every reaper admitted while grouping by place has a slot.
            (_, None) => Subject::Parent(reaper),
        }
    }

    /// The group of `subject` in `category`.
    fn group(
        &mut self,
        category: ReapKind,
        subject: Subject,
        reaper: ProcKey,
        comm: Comm,
    ) -> &mut Group {
        let places = &self.places;
        self.groups.entry((category, subject)).or_insert_with(|| {
            let mut group = Group::new(category, comm);
            match subject {
                Subject::Parent(_) => group.parent = Some(reaper),
                Subject::Place(slot) => group.place = places.get(slot as usize).cloned(),
                Subject::Comm(_) => {}
            }
            group
        })
    }

    /// Feeds one ledger change (hot path: see the module doc).
    pub fn on_change(&mut self, change: &Change) {
        let Change::Released {
            reaper,
            reaper_comm,
            how,
            exited,
            released_ns,
            ..
        } = *change
        else {
            return;
        };
        if !self.filter.matches_id(reaper.pid, &reaper_comm) {
            return;
        }
        let place = if self.needs_places() {
            match self.verdicts.get(&reaper) {
                Some(Verdict::Admitted(place)) => *place,
                Some(Verdict::Refused) => return,
                Some(Verdict::Unplaced) => {
                    self.not_attributed += 1;
                    return;
                }
                None => {
                    self.unplaced
                        .entry((how, reaper))
                        .or_insert_with(|| Group::new(how, reaper_comm))
                        .add(reaper_comm, exited, released_ns);
                    return;
                }
            }
        } else {
            None
        };
        let subject = self.subject(reaper, reaper_comm, place);
        self.group(how, subject, reaper, reaper_comm)
            .add(reaper_comm, exited, released_ns);
    }

    /// Reads where the reapers met since the last call run (from `host`),
    /// and moves their releases to their groups. Called after each batch,
    /// while most reapers still live, and before a report.
    pub fn place_reapers(&mut self, host: &mut dyn HostFacts) {
        if self.unplaced.is_empty() {
            return;
        }
        if self.verdicts.len() > REAPERS_KEPT {
            self.verdicts.clear();
        }
        let unplaced = std::mem::take(&mut self.unplaced);
        for ((category, reaper), waiting) in unplaced {
            let verdict = match self.verdicts.get(&reaper) {
                Some(verdict) => *verdict,
                None => {
                    let verdict = self.verdict(host.attribution(reaper).as_ref());
                    self.verdicts.insert(reaper, verdict);
                    verdict
                }
            };
            match verdict {
                Verdict::Admitted(place) => {
                    let subject = self.subject(reaper, waiting.comm, place);
                    let group = self.group(category, subject, reaper, waiting.comm);
                    if !waiting.comm.is_empty() {
                        group.comm = waiting.comm;
                    }
                    group.latency.merge(&waiting.latency);
                    group.exit_time_unknown += waiting.exit_time_unknown;
                }
                Verdict::Refused => {}
                Verdict::Unplaced => self.not_attributed += waiting.releases(),
            }
        }
    }

    fn verdict(&mut self, attribution: Option<&Attribution>) -> Verdict {
        if self.filter.places() {
            if attribution.is_none() {
                return Verdict::Unplaced;
            }
            if !self.filter.matches_place(attribution) {
                return Verdict::Refused;
            }
        }
        if !self.by.by_place() {
            return Verdict::Admitted(None);
        }
        let place = Place::of(self.by, attribution);
        let next = self.places.len() as u32;
        let slot = *self.place_slots.entry(place.clone()).or_insert(next);
        if slot == next {
            self.places.push(place);
        }
        Verdict::Admitted(Some(slot))
    }

    /// The groups, as placed so far (see [`LatencyView::place_reapers`]).
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// Releases left out because the filter tests where their reaper runs,
    /// and that could not be read.
    pub fn not_attributed(&self) -> u64 {
        self.not_attributed
    }

    /// The group of the reaper with this PID in `category` (grouping by parent).
    pub fn find(&self, category: ReapKind, pid: u32) -> Option<&Group> {
        self.groups()
            .filter(|g| g.category == category && g.parent.is_some_and(|p| p.pid == pid))
            .max_by_key(|g| g.parent.map(|p| p.start_ticks))
    }

    /// The report at the end of the run: the groups, and the parents that
    /// still owe zombies (from `ledger`, as of `now`).
    pub fn report(
        &mut self,
        ledger: &Ledger,
        now: Moment,
        duration_s: f64,
        lost: LostCounts,
        host: &mut dyn HostFacts,
    ) -> LatencyReport {
        self.place_reapers(host);
        let mut groups: Vec<GroupRow> = self
            .groups
            .values()
            .map(|g| GroupRow::of(g, self.by))
            .collect();
        groups.sort_by(|a, b| {
            a.kind
                .cmp(&b.kind)
                .then(
                    b.p99_us
                        .unwrap_or(-1.0)
                        .total_cmp(&a.p99_us.unwrap_or(-1.0)),
                )
                .then(b.count.cmp(&a.count))
                .then(a.key.cmp(&b.key))
        });
        LatencyReport {
            time: timestamp(now.wall()),
            by: self.by.as_str(),
            duration_s,
            exit_time_unknown: groups.iter().map(|g| g.exit_time_unknown).sum(),
            groups,
            not_attributed: self.not_attributed,
            not_reaped: parent_rows(ledger, &self.filter, now.boot_ns, host),
            lost_events: lost.total(),
            lost_by_reason: lost,
            events: ledger.counters.events,
        }
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// One group in the report. JSON field names are a contract: add, never rename.
#[derive(Clone, Debug, Serialize)]
pub struct GroupRow {
    /// `<pid>@<start_ticks>` when grouping by parent, the command name when
    /// grouping by command; grouping by container, unit or pod: its id, name
    /// or UID, `none` for reapers outside any, `unknown` for reapers gone
    /// before their cgroup was read.
    pub key: String,
    /// How the zombies were released: `parent_wait`, `auto_reap`,
    /// `adopter_wait`, `adopter_auto_reap` or `namespace_teardown`.
    pub category: &'static str,
    pub pid: Option<u32>,
    pub start_ticks: Option<u64>,
    /// The reaper's command name (grouping by place: the latest reaper's).
    pub comm: String,
    /// Grouping by container: its runtime (`docker`, `containerd`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<&'static str>,
    /// Grouping by pod: its QoS class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos_class: Option<&'static str>,
    /// Releases with a measured latency.
    pub count: u64,
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
    pub min_us: Option<f64>,
    pub mean_us: Option<f64>,
    /// Releases of zombies older than the tracer: not in `count`.
    pub exit_time_unknown: u64,
    pub buckets: Vec<Log2Bucket>,
    #[serde(skip)]
    kind: ReapKind,
}

impl GroupRow {
    fn of(g: &Group, by: GroupBy) -> Self {
        let h = &g.latency;
        let pct = |q| h.percentile(q).map(us);
        Self {
            key: match (g.parent, &g.place) {
                (Some(p), _) => format!("{}@{}", p.pid, p.start_ticks),
                (None, Some(place)) => place.key(),
                (None, None) => g.comm.as_str_lossy(),
            },
            category: g.category.as_str(),
            pid: g.parent.map(|p| p.pid),
            start_ticks: g.parent.map(|p| p.start_ticks),
            comm: g.comm.as_str_lossy(),
            container_runtime: g
                .place
                .as_ref()
                .and_then(|p| p.detail)
                .filter(|_| by == GroupBy::Container),
            qos_class: g
                .place
                .as_ref()
                .and_then(|p| p.detail)
                .filter(|_| by == GroupBy::Pod),
            count: h.count(),
            p50_us: pct(0.5),
            p90_us: pct(0.9),
            p99_us: pct(0.99),
            max_us: h.max_ns().map(us),
            min_us: h.min_ns().map(us),
            mean_us: h.mean_ns().map(|ns| ns / 1000.0),
            exit_time_unknown: g.exit_time_unknown,
            buckets: h.log2_us_buckets(),
            kind: g.category,
        }
    }
}

impl GroupRow {
    /// A place group's header: `container 3f2a9c1b7d0e (docker), latest
    /// reaper python3`.
    fn place_text(&self, by: &str) -> String {
        let name = match (by, self.key.as_str()) {
            (_, "unknown") => {
                "place unknown (the reapers exited before their cgroup was read)".to_owned()
            }
            ("container", "none") => "no container".to_owned(),
            ("pod", "none") => "no pod".to_owned(),
            (_, "none") => format!("no {by}"),
            ("container", id) => {
                let short = id.get(..12).unwrap_or(id);
                match self.container_runtime {
                    Some(runtime) => format!("container {short} ({runtime})"),
                    None => format!("container {short}"),
                }
            }
            ("pod", uid) => match self.qos_class {
                Some(qos) => format!("pod {uid} ({qos})"),
                None => format!("pod {uid}"),
            },
            (by, name) => format!("{by} {name}"),
        };
        format!("{name}, latest reaper {}", self.comm)
    }
}

/// What each category means, for text headers.
pub fn category_meaning(kind: ReapKind) -> &'static str {
    match kind {
        ReapKind::ParentWait => "reaped by the parent's wait",
        ReapKind::AutoReap => "released by the kernel at exit: the parent ignores SIGCHLD",
        ReapKind::AdopterWait => "reaped by an adopter's wait after the parent died",
        ReapKind::AdopterAutoReap => "released by the kernel: the adopter ignores SIGCHLD",
        ReapKind::NamespaceTeardown => "released by the kernel tearing down a PID namespace",
        ReapKind::Freed => {
            "released by a call not traced (io_uring waitid, 32-bit wait), seen when freed"
        }
        ReapKind::Resync => "found released by a resync after lost events",
    }
}

/// The result of `zombie-trace latency`. JSON field names are a contract:
/// add, never rename.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyReport {
    pub time: String,
    /// `parent` or `comm`.
    pub by: &'static str,
    pub duration_s: f64,
    pub groups: Vec<GroupRow>,
    /// Parents that still owe zombies at the end: no latency yet, their
    /// zombies' ages instead.
    pub not_reaped: Vec<ParentRow>,
    /// Releases of zombies older than the tracer, in all groups.
    pub exit_time_unknown: u64,
    /// Releases left out of every group: the filter tests where their
    /// reaper runs, and the reaper was gone before its cgroup was read.
    pub not_attributed: u64,
    pub lost_events: u64,
    pub lost_by_reason: LostCounts,
    pub events: u64,
}

impl LatencyReport {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}  reap latency (child exit to release) over {:.1}s, by {}: {} groups",
            self.time,
            self.duration_s,
            self.by,
            self.groups.len()
        );
        write_lost_warnings(&mut out, self.lost_by_reason);
        if self.groups.is_empty() {
            let _ = writeln!(out, "\nno zombie was released");
        }
        if self.not_attributed > 0 {
            let _ = writeln!(
                out,
                "\nnot counted: {} releases by reapers that exited before their cgroup was read (the place filter could not be applied)",
                self.not_attributed
            );
        }
        for g in &self.groups {
            let who = match (g.pid, self.by) {
                (Some(pid), _) => format!("pid {pid} ({})", g.comm),
                (None, "comm") => format!("comm {}", g.comm),
                (None, by) => g.place_text(by),
            };
            let meaning = category_meaning(g.kind);
            let _ = writeln!(out, "\n{}: {who}  [{meaning}]", g.category);
            if let (Some(p50), Some(p90), Some(p99), Some(max)) =
                (g.p50_us, g.p90_us, g.p99_us, g.max_us)
            {
                let _ = writeln!(
                    out,
                    "  count {}  p50 {}  p90 {}  p99 {}  max {}",
                    g.count,
                    format_us(p50),
                    format_us(p90),
                    format_us(p99),
                    format_us(max)
                );
            }
            if g.exit_time_unknown > 0 {
                let _ = writeln!(
                    out,
                    "  exit time unknown: {} (zombies from before tracing began; no latency counted)",
                    g.exit_time_unknown
                );
            }
            out.push_str(&render_log2(&g.buckets, "usecs"));
        }
        if !self.not_reaped.is_empty() {
            let owed: u64 = self
                .not_reaped
                .iter()
                .map(|p| u64::from(p.pending_zombies))
                .sum();
            let _ = writeln!(
                out,
                "\nnot reaped yet: {} parents owe {owed} zombies (still waiting: ages, not latencies)",
                self.not_reaped.len()
            );
            let _ = writeln!(
                out,
                "  {:>7} {:<16} {:>8} {:>10} {:>12}",
                "PID", "COMM", "PENDING", "OLDEST", "BEFORE_START"
            );
            for p in &self.not_reaped {
                let _ = writeln!(
                    out,
                    "  {:>7} {:<16} {:>8} {:>10} {:>12}",
                    p.pid,
                    p.comm,
                    p.pending_zombies,
                    p.oldest_age_text(),
                    p.zombies_before_start
                );
            }
        }
        out
    }
}

/// Per-parent reap latency over one `watch` interval: the parent's own waits
/// on its own children (`parent_wait`) only. Parents that reaped nothing in
/// an interval give their histogram back at the next reset.
#[derive(Debug, Default)]
pub struct IntervalLatency {
    by_parent: FxHashMap<ProcKey, Histogram>,
    spare: Vec<Histogram>,
}

/// Emptied histograms kept for reuse.
const SPARE_HISTOGRAMS: usize = 64;

impl IntervalLatency {
    /// Feeds one ledger change (hot path).
    pub fn on_change(&mut self, change: &Change) {
        if let Change::Released {
            reaper,
            how: ReapKind::ParentWait,
            exited: ExitTime::At(exit_ns),
            released_ns,
            ..
        } = *change
        {
            let spare = &mut self.spare;
            self.by_parent
                .entry(reaper)
                .or_insert_with(|| spare.pop().unwrap_or_default())
                .record(released_ns.saturating_sub(exit_ns));
        }
    }

    pub fn get(&self, parent: &ProcKey) -> Option<&Histogram> {
        self.by_parent.get(parent).filter(|h| h.count() > 0)
    }

    /// Sets the rows' interval p99 and max.
    pub fn annotate(&self, rows: &mut [ParentRow]) {
        for row in rows {
            let key = ProcKey {
                pid: row.pid,
                start_ticks: row.start_ticks,
            };
            let h = self.get(&key);
            row.reap_latency_p99_us = h.and_then(|h| h.percentile(0.99)).map(us);
            row.reap_latency_max_us = h.and_then(Histogram::max_ns).map(us);
        }
    }

    /// Starts a new interval.
    pub fn reset(&mut self) {
        for (_, h) in self.by_parent.extract_if(|_, h| h.count() == 0) {
            if self.spare.len() < SPARE_HISTOGRAMS {
                self.spare.push(h);
            }
        }
        self.by_parent.values_mut().for_each(Histogram::reset);
    }
}

#[cfg(test)]
mod tests;
