//! The incident over a whole recording: what `report` shows a reviewer
//! (text, HTML, Perfetto). Fed by the replay like any consumer; builds a
//! [`Timeline`]: pending zombies per parent at every tick, PID pressure,
//! alerts, SIGCHLD handler changes, losses and resyncs, every zombie's
//! lifetime, and each worst parent's diagnosis and reap latencies.

use std::io;

use rustc_hash::FxHashMap;

use crate::engine::{Consumer, Context};
use crate::host::facts::HostFacts;
use crate::model::{Change, ExitTime, Ledger, Moment, ProcKey, ProcState};
use crate::recording::records::Header;
use crate::views::diagnosis::{Diagnosis, GrowthTracker, diagnose_traced};
use crate::views::latency::{GroupBy, LatencyView};
use crate::views::report::{AlertTracker, Filter};
use crate::views::timeline::{
    CgroupPoint, LatencyBucket, LatencyHistogram, Marker, MarkerKind, RemediationStep, Sample,
    Timeline, TimelineParent, ZombieSpan,
};

/// Parents drawn on the timeline (worst peak first).
pub const PLOTTED_PARENTS: usize = 8;
/// Parents remembered per tick (the worst ones), to choose the plotted ones from.
const PARENTS_PER_TICK: usize = 32;
/// Zombie lifetimes kept for the Perfetto trace; the rest are counted.
pub const MAX_ZOMBIE_SPANS: usize = 200_000;
/// SIGCHLD changes kept (before filtering to parents that owed zombies).
const MAX_SIGCHLD_CHANGES: usize = 100_000;

/// What is known of one parent over the recording.
#[derive(Debug, Clone)]
struct ParentTrack {
    comm: String,
    peak_pending: u32,
    peak_at: Moment,
    first_zombie_at: Option<Moment>,
    /// The last diagnosis made of it (at an alert, or at the end).
    diagnosis: Option<Diagnosis>,
}

/// Builds the [`Timeline`] of a replayed recording.
pub struct IncidentView {
    hostname: String,
    kernel: String,
    pid_max: u32,
    threads_max: u32,
    filter: Filter,
    alerts: AlertTracker,
    alerts_seeded: bool,
    growth: GrowthTracker,
    latency: LatencyView,
    parents: FxHashMap<ProcKey, ParentTrack>,
    /// Per tick: the moment, totals, and the worst parents' pending counts.
    ticks: Vec<(Sample, Vec<(ProcKey, u32)>)>,
    markers: Vec<Marker>,
    sigchld: Vec<(ProcKey, Marker)>,
    zombies: Vec<ZombieSpan>,
    zombies_truncated: u64,
    last_lost: u64,
    last_resyncs: u64,
    start: Option<Moment>,
    end: Option<Moment>,
    /// Per parent at the end: pending count and who it is.
    at_end: FxHashMap<ProcKey, u32>,
    /// Alerts whose parent had no recorded /proc facts yet (a `record`
    /// session reads them at its ticks): diagnosed at the next tick, with
    /// the index of their marker.
    undiagnosed: Vec<(ProcKey, usize)>,
}

impl IncidentView {
    pub fn new(header: &Header, filter: Filter, threshold: u32) -> Self {
        Self {
            hostname: header.host.hostname.clone(),
            kernel: header.host.kernel_release.clone(),
            pid_max: header.host.pid_max,
            threads_max: header.host.threads_max,
            latency: LatencyView::new(GroupBy::Parent, filter.clone()),
            filter,
            alerts: AlertTracker::new(threshold),
            alerts_seeded: false,
            growth: GrowthTracker::default(),
            parents: FxHashMap::default(),
            ticks: Vec::new(),
            markers: Vec::new(),
            sigchld: Vec::new(),
            zombies: Vec::new(),
            zombies_truncated: 0,
            last_lost: 0,
            last_resyncs: 0,
            start: None,
            end: None,
            at_end: FxHashMap::default(),
            undiagnosed: Vec::new(),
        }
    }

    fn span(&mut self, span: ZombieSpan) {
        if self.zombies.len() < MAX_ZOMBIE_SPANS {
            self.zombies.push(span);
        } else {
            self.zombies_truncated += 1;
        }
    }

    /// Updates peaks and first-zombie times of the parents with zombies.
    fn observe(
        &mut self,
        ledger: &Ledger,
        now: Moment,
        host: &mut dyn HostFacts,
    ) -> Vec<(ProcKey, u32)> {
        let mut worst: Vec<(ProcKey, u32)> = Vec::new();
        for p in ledger.parents_with_zombies() {
            if !self.filter.admits(p, host) {
                continue;
            }
            let pending = p.stats.pending;
            let oldest = ledger.oldest_zombie(&p.key);
            let track = self.parents.entry(p.key).or_insert_with(|| ParentTrack {
                comm: p.comm.as_str_lossy(),
                peak_pending: 0,
                peak_at: now,
                first_zombie_at: None,
                diagnosis: None,
            });
            if pending > track.peak_pending {
                track.peak_pending = pending;
                track.peak_at = now;
            }
            if track.first_zombie_at.is_none() {
                track.first_zombie_at = oldest.map(|t| now.at_boot(ledger.exit_ns(t)));
            }
            worst.push((p.key, pending));
        }
        worst.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        worst.truncate(PARENTS_PER_TICK);
        worst
    }

    /// Diagnoses the alerted parents that have /proc facts by now; their
    /// alert says why, and the parent keeps the diagnosis.
    fn diagnose_alerts(&mut self, ctx: &mut Context<'_>) {
        let mut still = Vec::new();
        for (key, marker) in std::mem::take(&mut self.undiagnosed) {
            if ctx.ledger.get(&key).is_none() {
                continue; // gone before anything was recorded about it
            }
            match diagnose_traced(ctx, key.pid, Some(&self.growth)) {
                Some(d) => {
                    if let Some(m) = self.markers.get_mut(marker) {
                        m.text = format!("{}: {}", m.text, d.summary);
                    }
                    if let Some(track) = self.parents.get_mut(&key) {
                        track.diagnosis = Some(d);
                    }
                }
                None => still.push((key, marker)),
            }
        }
        self.undiagnosed = still;
    }

    fn health_markers(&mut self, ctx: &Context<'_>) {
        let lost = ctx.health.lost.total();
        if lost > self.last_lost {
            self.markers.push(Marker {
                at: ctx.now,
                kind: MarkerKind::EventsLost,
                pid: None,
                text: format!(
                    "{} events lost by the kernel (ring buffer full or unreadable)",
                    lost - self.last_lost
                ),
            });
            self.last_lost = lost;
        }
        if ctx.health.resyncs > self.last_resyncs {
            let what = ctx.health.last_resync.map_or(0, |s| s.corrections());
            self.markers.push(Marker {
                at: ctx.now,
                kind: MarkerKind::Resync,
                pid: None,
                text: format!("ledger resynced with /proc ({what} corrections)"),
            });
            self.last_resyncs = ctx.health.resyncs;
        }
    }

    /// The timeline, with `notes` (damage and losses of the file) in it.
    pub fn timeline(mut self, notes: &[String]) -> Timeline {
        // The plotted parents: the worst peaks.
        let mut ranked: Vec<(&ProcKey, &ParentTrack)> = self.parents.iter().collect();
        ranked.sort_unstable_by(|a, b| b.1.peak_pending.cmp(&a.1.peak_pending).then(a.0.cmp(b.0)));
        let plotted: Vec<ProcKey> = ranked
            .iter()
            .take(PLOTTED_PARENTS)
            .map(|(k, _)| **k)
            .collect();
        let index: FxHashMap<ProcKey, usize> =
            plotted.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        let samples: Vec<Sample> = std::mem::take(&mut self.ticks)
            .into_iter()
            .map(|(mut sample, worst)| {
                sample.per_parent = vec![0; plotted.len()];
                for (key, pending) in worst {
                    if let Some(&i) = index.get(&key) {
                        sample.per_parent[i] = pending;
                    }
                }
                sample
            })
            .collect();
        let parents = plotted
            .iter()
            .map(|key| {
                let track = &self.parents[key];
                let diagnosis = track.diagnosis.as_ref();
                TimelineParent {
                    pid: key.pid,
                    comm: track.comm.clone(),
                    start_ticks: key.start_ticks,
                    peak_pending: track.peak_pending,
                    peak_at: track.peak_at,
                    first_zombie_at: track.first_zombie_at,
                    // The diagnosis's rate (the last minute before it), else
                    // the average rise from the first zombie to the peak.
                    growth_per_s: diagnosis.and_then(|d| d.growth_per_s).or_else(|| {
                        let first = track.first_zombie_at?;
                        let secs = track.peak_at.boot_ns.checked_sub(first.boot_ns)? as f64 / 1e9;
                        (secs >= 0.5).then(|| f64::from(track.peak_pending) / secs)
                    }),
                    pending_at_end: self.at_end.get(key).copied().unwrap_or(0),
                    verdict: diagnosis.map(|d| d.verdict.to_owned()),
                    runs_in: diagnosis
                        .and_then(|d| d.runs_in.as_ref())
                        .and_then(|a| a.describe()),
                    summary: diagnosis.map(|d| d.summary.clone()),
                    remediation: diagnosis.map_or_else(Vec::new, |d| {
                        d.remediation
                            .iter()
                            .map(|s| RemediationStep {
                                action: s.action.clone(),
                                works: s.works,
                                unverified: s.unverified,
                                why: s.why.clone(),
                            })
                            .collect()
                    }),
                    latency: self
                        .latency
                        .groups()
                        .filter(|g| g.parent.is_some_and(|p| p == *key))
                        .map(|g| LatencyHistogram {
                            how: g.category.as_str().to_owned(),
                            count: g.latency.count() + g.exit_time_unknown,
                            p50_us: g.latency.percentile(0.5).map(|ns| ns as f64 / 1e3),
                            p99_us: g.latency.percentile(0.99).map(|ns| ns as f64 / 1e3),
                            max_us: g.latency.max_ns().map(|ns| ns as f64 / 1e3),
                            buckets: g
                                .latency
                                .log2_us_buckets()
                                .into_iter()
                                .map(|b| LatencyBucket {
                                    low_us: b.low_us,
                                    high_us: b.le_us,
                                    count: b.count,
                                })
                                .collect(),
                        })
                        .collect(),
                }
            })
            .collect();
        // SIGCHLD changes of the processes that owed zombies at some point.
        let mut markers = self.markers;
        markers.extend(
            self.sigchld
                .into_iter()
                .filter(|(key, _)| self.parents.contains_key(key))
                .map(|(_, m)| m),
        );
        let start = self.start.unwrap_or(Moment {
            boot_ns: 0,
            unix_ns: 0,
        });
        for m in &mut markers {
            m.at = on_wall_clock(start, m.at);
        }
        markers.sort_by_key(|m| m.at.boot_ns);
        let mut zombies = self.zombies;
        for z in &mut zombies {
            z.exit_at = on_wall_clock(start, z.exit_at);
            z.released_at = z.released_at.map(|r| on_wall_clock(start, r));
        }
        Timeline {
            hostname: self.hostname,
            kernel: self.kernel,
            pid_max: self.pid_max,
            threads_max: Some(u64::from(self.threads_max)),
            start,
            end: self.end.unwrap_or(start),
            samples,
            parents,
            markers,
            zombies,
            zombies_truncated: self.zombies_truncated,
            notes: notes.to_vec(),
        }
    }
}

impl Consumer for IncidentView {
    fn on_change(&mut self, change: &Change) {
        self.alerts.on_change(change);
        self.latency.on_change(change);
        match *change {
            Change::Released {
                reaper,
                reaper_comm,
                child,
                how,
                exited,
                released_ns,
                ..
            } => {
                let exit_ns = match exited {
                    ExitTime::At(ns) => Some(ns),
                    _ => None,
                };
                self.span(ZombieSpan {
                    pid: child.pid,
                    parent_pid: reaper.pid,
                    parent_comm: reaper_comm.as_str_lossy(),
                    exit_at: boot_point(exit_ns.unwrap_or(released_ns)),
                    released_at: Some(boot_point(released_ns)),
                    how: Some(how.as_str().to_owned()),
                    exit_time_exact: exit_ns.is_some(),
                });
            }
            Change::Sigchld {
                process,
                comm,
                change,
            } => {
                if self.sigchld.len() < MAX_SIGCHLD_CHANGES {
                    self.sigchld.push((
                        process,
                        Marker {
                            at: boot_point(change.at_ns),
                            kind: MarkerKind::SigchldChange,
                            pid: Some(process.pid),
                            text: format!(
                                "{}: SIGCHLD {} -> {} ({})",
                                comm.as_str_lossy(),
                                change.from.as_str(),
                                change.to.as_str(),
                                match change.cause {
                                    crate::model::ChangeCause::Sigaction => "rt_sigaction",
                                    crate::model::ChangeCause::Exec => "execve",
                                }
                            ),
                        },
                    ));
                }
            }
            Change::Exited { .. } | Change::Adopted { .. } => {}
        }
    }

    fn after_batch(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        if self.start.is_none() {
            self.start = Some(ctx.started);
        }
        self.latency.place_reapers(ctx.host);
        if !self.alerts_seeded {
            self.alerts.seed(ctx.ledger);
            self.alerts_seeded = true;
        }
        if !self.alerts.has_due() {
            return Ok(());
        }
        for alert in self
            .alerts
            .take(ctx.ledger, &self.filter, ctx.now, ctx.host)
        {
            let key = ctx.ledger.find_pid(alert.parent.pid).map(|p| p.key);
            self.markers.push(Marker {
                at: ctx.now,
                kind: MarkerKind::Alert,
                pid: Some(alert.parent.pid),
                text: format!(
                    "ALERT pid {} ({}) owes {} reaps (threshold {})",
                    alert.parent.pid,
                    alert.parent.comm,
                    alert.parent.pending_zombies,
                    alert.threshold
                ),
            });
            if let Some(key) = key {
                self.undiagnosed.push((key, self.markers.len() - 1));
            }
        }
        self.diagnose_alerts(ctx);
        Ok(())
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        if self.start.is_none() {
            self.start = Some(ctx.started);
        }
        self.growth.sample(ctx.ledger, ctx.now.boot_ns);
        self.health_markers(ctx);
        let worst = self.observe(ctx.ledger, ctx.now, ctx.host);
        self.diagnose_alerts(ctx);
        let pending_total = ctx
            .ledger
            .parents_with_zombies()
            .map(|p| u64::from(p.stats.pending))
            .sum();
        let tasks = ctx.host.pressure().map(|p| p.tasks);
        let cgroup = ctx
            .host
            .pid_pressure(worst.first().map(|(k, _)| k.pid))
            .cgroup
            .map(|c| CgroupPoint {
                path: c.path.display().to_string(),
                current: c.current,
                max: c.max,
            });
        self.ticks.push((
            Sample {
                at: ctx.now,
                pending_total,
                tasks,
                pids_cgroup: cgroup,
                per_parent: Vec::new(),
            },
            worst,
        ));
        Ok(())
    }

    fn on_end(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        self.latency.place_reapers(ctx.host);
        self.on_tick(ctx)?;
        self.end = Some(ctx.now);
        // Zombies still owed at the end: lifetimes without a release.
        let owed: Vec<ZombieSpan> = ctx
            .ledger
            .processes()
            .filter_map(|c| match c.state {
                ProcState::Zombie(t) => {
                    let parent = ctx.ledger.parent_of(&c.key)?;
                    Some(ZombieSpan {
                        pid: c.key.pid,
                        parent_pid: parent.key.pid,
                        parent_comm: parent.comm.as_str_lossy(),
                        exit_at: boot_point(ctx.ledger.exit_ns(t)),
                        released_at: None,
                        how: None,
                        exit_time_exact: t.is_exact(),
                    })
                }
                ProcState::Alive => None,
            })
            .collect();
        for span in owed {
            self.span(span);
        }
        for p in ctx.ledger.parents_with_zombies() {
            self.at_end.insert(p.key, p.stats.pending);
        }
        // The worst parents still alive get their diagnosis as of the end.
        let keys: Vec<ProcKey> = self.parents.keys().copied().collect();
        for key in keys {
            if ctx.ledger.get(&key).is_none() {
                continue;
            }
            if let Some(d) = diagnose_traced(ctx, key.pid, Some(&self.growth))
                && let Some(track) = self.parents.get_mut(&key)
            {
                track.diagnosis = Some(d);
            }
        }
        Ok(())
    }
}

/// A point known on the boot clock only (a kernel timestamp): its wall
/// clock is set by [`IncidentView::timeline`] from the recording's start.
fn boot_point(boot_ns: u64) -> Moment {
    Moment {
        boot_ns,
        unix_ns: 0,
    }
}

/// `m` with its wall clock from `start`'s offset, if it has none.
fn on_wall_clock(start: Moment, m: Moment) -> Moment {
    if m.unix_ns == 0 {
        start.at_boot(m.boot_ns)
    } else {
        m
    }
}
