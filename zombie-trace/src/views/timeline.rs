//! The timeline of a recorded incident: what `zombie-trace report` replays a
//! recording into, and what the renderers ([`crate::render::html`],
//! [`crate::render::perfetto`]) draw. Data only: building it belongs to the
//! replay, drawing it to the renderers, so either can change alone.
//!
//! Every point in time is a [`Moment`]: the kernel's boot clock orders and
//! spaces events (it never jumps), the wall clock says when they happened to
//! a reader.

use serde::{Deserialize, Serialize};

pub use crate::model::Moment;

/// A recorded incident, from the start to the end of the recording.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub hostname: String,
    pub kernel: String,
    pub pid_max: u32,
    pub threads_max: Option<u64>,
    /// Span of the recording.
    pub start: Moment,
    pub end: Moment,
    /// One per tick, time-ordered.
    pub samples: Vec<Sample>,
    /// Worst first; the plots draw the first few (the table lists all).
    pub parents: Vec<TimelineParent>,
    /// Time-ordered.
    pub markers: Vec<Marker>,
    /// One per zombie lifetime (the builder may cap how many it keeps).
    pub zombies: Vec<ZombieSpan>,
    /// Spans left out by that cap.
    pub zombies_truncated: u64,
    /// Damage, dropped segments, losses: shown before anything else, because
    /// they say how far the rest can be trusted.
    pub notes: Vec<String>,
}

/// The state at one tick.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub at: Moment,
    /// Pending zombies of all parents, plotted or not.
    pub pending_total: u64,
    /// Tasks (threads) on the host: each holds a PID.
    pub tasks: Option<u64>,
    /// The cgroup whose `pids.max` is tightest at this tick.
    pub pids_cgroup: Option<CgroupPoint>,
    /// Pending zombies per parent, index-aligned with [`Timeline::parents`].
    pub per_parent: Vec<u32>,
}

/// A `pids` cgroup's use and limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPoint {
    pub path: String,
    pub current: u64,
    pub max: u64,
}

/// A parent that left zombies during the recording.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelineParent {
    pub pid: u32,
    pub comm: String,
    /// Start time in clock ticks since boot: with `pid`, the parent's identity.
    pub start_ticks: u64,
    pub peak_pending: u32,
    pub peak_at: Moment,
    pub first_zombie_at: Option<Moment>,
    /// Zombies gained per second while leaking (None: not enough data).
    pub growth_per_s: Option<f64>,
    pub pending_at_end: u32,
    pub verdict: Option<String>,
    pub summary: Option<String>,
    pub remediation: Vec<RemediationStep>,
    pub latency: Vec<LatencyHistogram>,
    /// Where it ran, in words (`container 0123456789ab (containerd) in pod
    /// …`, `unit cron.service`, a cgroup path), as its diagnosis read it.
    #[serde(default)]
    pub runs_in: Option<String>,
}

/// One thing an operator could do about a parent, and whether it helps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemediationStep {
    pub action: String,
    pub works: bool,
    /// Follows from the rules, but was not seen working on this host.
    pub unverified: bool,
    pub why: String,
}

/// How long a parent's children stayed zombies, for one way of release.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    /// How they were released: `parent_wait`, `auto_reap`, `adopter_wait`,
    /// `freed`, ... (the names of [`crate::model::ReapKind`]).
    pub how: String,
    pub count: u64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
    /// bcc-style log2 buckets over microseconds, low to high.
    pub buckets: Vec<LatencyBucket>,
}

/// Releases whose latency was `low_us ..= high_us` microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBucket {
    pub low_us: u64,
    pub high_us: u64,
    pub count: u64,
}

/// Something that happened at one moment, drawn across the plots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub at: Moment,
    pub kind: MarkerKind,
    /// The process it concerns, if one.
    pub pid: Option<u32>,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerKind {
    Alert,
    SigchldChange,
    EventsLost,
    Resync,
    /// A damaged or dropped part of the recording.
    Gap,
}

/// One zombie's lifetime: from its exit to its release.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZombieSpan {
    pub pid: u32,
    pub parent_pid: u32,
    pub parent_comm: String,
    pub exit_at: Moment,
    /// None: still pending at the end of the recording.
    pub released_at: Option<Moment>,
    pub how: Option<String>,
    /// False for zombies already dead when the recording started: `exit_at`
    /// is then when the recording first saw them, not when they died.
    pub exit_time_exact: bool,
}
