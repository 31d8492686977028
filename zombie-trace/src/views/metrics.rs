//! What `serve` exposes to Prometheus: the ledger, its health and the PID
//! limits as metrics, computed when scraped.
//!
//! Names are a contract (prefix `zombietrace_`, base units, `_total` on
//! counters). Per-parent series exist only for the `top` parents owing the
//! most zombies at the scrape: a parent that leaves the top, or dies, has
//! no series at the next scrape, so the series count stays bounded however
//! many PIDs churn through. Everything else has fixed label sets.

use std::collections::VecDeque;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::engine::Context;
use rustc_hash::FxHashMap;

use crate::host::cgroup::Attribution;
use crate::host::pressure::Limit;
use crate::model::{Change, ExitTime, LostCounts, ProcKey, ReapKind};
use crate::views::diagnosis::GrowthTracker;
use crate::views::latency::Histogram;
use crate::views::report::Filter;

/// Every way a zombie leaves, in the order of [`ReapKind`].
const HOWS: [ReapKind; 7] = [
    ReapKind::ParentWait,
    ReapKind::AutoReap,
    ReapKind::AdopterWait,
    ReapKind::AdopterAutoReap,
    ReapKind::NamespaceTeardown,
    ReapKind::Freed,
    ReapKind::Resync,
];

/// Reap-latency bucket bounds: powers of two microseconds, the bounds of
/// the log2 histograms `latency` prints, from 1 µs to 2^32 µs (~72 min);
/// longer waits than that are leaks, counted in `+Inf`.
const LATENCY_BUCKETS: u32 = 33;

/// How far back the host-wide growth rate looks.
const GROWTH_WINDOW_NS: u64 = 60_000_000_000;

fn how_index(how: ReapKind) -> usize {
    HOWS.iter().position(|&h| h == how).unwrap_or(0)
}

/// The metrics state that lives between scrapes: counters of releases and
/// their latencies, and pending-zombie samples for growth rates.
#[derive(Debug)]
pub struct MetricsView {
    filter: Filter,
    top: usize,
    reaps: [u64; HOWS.len()],
    latency: Vec<Histogram>,
    growth: GrowthTracker,
    /// (CLOCK_BOOTTIME, zombies on the host) at each tick, over the window.
    host_series: VecDeque<(u64, u64)>,
    /// How long the previous scrape took (the serving side measures it).
    last_scrape_s: Option<f64>,
}

impl MetricsView {
    pub fn new(filter: Filter, top: usize) -> Self {
        Self {
            filter,
            top,
            reaps: [0; HOWS.len()],
            latency: (0..HOWS.len()).map(|_| Histogram::default()).collect(),
            growth: GrowthTracker::default(),
            host_series: VecDeque::new(),
            last_scrape_s: None,
        }
    }

    /// Feeds one ledger change (hot path: no allocation).
    pub fn on_change(&mut self, change: &Change) {
        if let Change::Released {
            how,
            exited,
            released_ns,
            ..
        } = *change
        {
            let i = how_index(how);
            self.reaps[i] += 1;
            if let ExitTime::At(exit_ns) = exited {
                self.latency[i].record(released_ns.saturating_sub(exit_ns));
            }
        }
    }

    /// Samples pending counts for the growth rates (every tick).
    pub fn sample(&mut self, ctx: &Context<'_>) {
        let now = ctx.now.boot_ns;
        self.growth.sample(ctx.ledger, now);
        let total = zombies(ctx);
        self.host_series.push_back((now, total));
        while self
            .host_series
            .front()
            .is_some_and(|&(t, _)| now.saturating_sub(t) > GROWTH_WINDOW_NS)
        {
            self.host_series.pop_front();
        }
    }

    /// The previous scrape took this long.
    pub fn set_last_scrape(&mut self, seconds: f64) {
        self.last_scrape_s = Some(seconds);
    }

    /// Zombies per second on the whole host: least-squares slope over the
    /// window; `None` without 3 samples spanning 0.5 s.
    pub fn host_growth_per_s(&self) -> Option<f64> {
        slope(self.host_series.iter().copied())
    }

    /// The metrics as of `ctx`, in the OpenMetrics text format (or the
    /// Prometheus 0.0.4 text format when `openmetrics` is false).
    pub fn render(&self, ctx: &mut Context<'_>, openmetrics: bool) -> String {
        let snapshot = self.snapshot(ctx);
        let mut registry = Registry::with_prefix("zombietrace");
        registry.register_collector(Box::new(snapshot));
        let mut out = String::new();
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        };
        // Writing into a String cannot fail; an encoder error would be a
        // bug in a label value, which are all escaped by the encoder.
        if encoded.is_err() {
            out.push_str("# encoding failed\n");
        }
        out
    }

    fn snapshot(&self, ctx: &mut Context<'_>) -> Snapshot {
        let mut parents: Vec<ParentPoint> = ctx
            .ledger
            .parents_with_zombies()
            .filter(|p| self.filter.matches(p))
            .map(|p| {
                let oldest = ctx.ledger.oldest_zombie(&p.key);
                ParentPoint {
                    key: p.key,
                    pid: p.key.pid,
                    comm: p.comm.as_str_lossy(),
                    pending: p.stats.pending,
                    oldest_age_s: oldest.map_or(0.0, |t| {
                        ctx.now.boot_ns.saturating_sub(ctx.ledger.exit_ns(t)) as f64 / 1e9
                    }),
                    growth_per_s: self.growth.rate_per_s(&p.key),
                    container_id: String::new(),
                    pod_uid: String::new(),
                    unit: String::new(),
                    names: None,
                }
            })
            .collect();
        let cgroups = self.cgroups(ctx, &mut parents);
        parents.sort_by(|a, b| {
            b.pending
                .cmp(&a.pending)
                .then(b.oldest_age_s.total_cmp(&a.oldest_age_s))
                .then(a.pid.cmp(&b.pid))
        });
        parents.truncate(self.top);
        let pressure = ctx.host.pid_pressure(parents.first().map(|p| p.pid));
        let growth = self.host_growth_per_s();
        Snapshot {
            zombies: zombies(ctx),
            tasks: pressure.tasks,
            pid_max: pressure.pid_max,
            threads_max: pressure.threads_max,
            headroom: pressure.headroom,
            limit: pressure.limit,
            cgroup_headroom: pressure
                .cgroup
                .as_ref()
                .map(|c| c.max.saturating_sub(c.current)),
            growth_per_s: growth,
            exhaustion_s: growth
                .filter(|&g| g > 0.0)
                .map(|g| pressure.headroom as f64 / g),
            parents,
            cgroups,
            reaps: self.reaps,
            latency: self.latency.iter().map(LatencyPoint::of).collect(),
            lost: ctx.health.lost,
            complete: ctx.health.complete(),
            resyncs: ctx.health.resyncs,
            programs: ctx.programs.clone().unwrap_or_default(),
            last_scrape_s: self.last_scrape_s,
        }
    }
}

impl MetricsView {
    /// Places every parent (each read once by `ctx.host`), drops those the
    /// filter's place tests refuse, and returns the `top` cgroups owing the
    /// most zombies, summed over the parents kept.
    fn cgroups(&self, ctx: &mut Context<'_>, parents: &mut Vec<ParentPoint>) -> Vec<CgroupPoint> {
        let mut by_path: FxHashMap<String, CgroupPoint> = FxHashMap::default();
        parents.retain_mut(|p| {
            let place = ctx.host.attribution(p.key);
            if !self.filter.matches_place(place.as_ref()) {
                return false;
            }
            let Some(a) = place else {
                return true;
            };
            p.place(Some(&a));
            let point = by_path
                .entry(a.cgroup.clone())
                .or_insert_with(|| CgroupPoint {
                    cgroup: a.cgroup.clone(),
                    container_id: a.container_id.clone().unwrap_or_default(),
                    pod_uid: a.pod_uid.clone().unwrap_or_default(),
                    unit: a.unit.clone().unwrap_or_default(),
                    names: KubernetesNames::of(&a),
                    pending: 0,
                });
            point.pending += u64::from(p.pending);
            true
        });
        let mut points: Vec<CgroupPoint> = by_path.into_values().collect();
        points.sort_by(|a, b| b.pending.cmp(&a.pending).then(a.cgroup.cmp(&b.cgroup)));
        points.truncate(self.top);
        points
    }
}

fn zombies(ctx: &Context<'_>) -> u64 {
    ctx.ledger
        .parents_with_zombies()
        .map(|p| u64::from(p.stats.pending))
        .sum()
}

/// Least-squares slope per second of `(ns, value)` points.
fn slope(points: impl Iterator<Item = (u64, u64)> + Clone) -> Option<f64> {
    let n = points.clone().count();
    let first = points.clone().next()?.0;
    let last = points.clone().last()?.0;
    if n < 3 || last.saturating_sub(first) < 500_000_000 {
        return None;
    }
    let n = n as f64;
    let xs = points
        .clone()
        .map(|(t, v)| ((t - first) as f64 / 1e9, v as f64));
    let mean_x = xs.clone().map(|(x, _)| x).sum::<f64>() / n;
    let mean_y = xs.clone().map(|(_, y)| y).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in xs {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

#[derive(Clone, Debug)]
struct ParentPoint {
    key: ProcKey,
    pid: u32,
    comm: String,
    pending: u32,
    oldest_age_s: f64,
    growth_per_s: Option<f64>,
    /// Where it runs (empty label values when unknown: Prometheus treats
    /// an empty label as absent).
    container_id: String,
    pod_uid: String,
    unit: String,
    /// With `--pod-names`, when the kubelet names them.
    names: Option<KubernetesNames>,
}

/// The `namespace`, `pod` and `container` labels.
#[derive(Clone, Debug, PartialEq)]
struct KubernetesNames {
    namespace: String,
    pod: String,
    container: String,
}

impl KubernetesNames {
    fn of(a: &Attribution) -> Option<Self> {
        Some(Self {
            namespace: a.namespace.clone()?,
            pod: a.pod_name.clone()?,
            container: a.container_name.clone().unwrap_or_default(),
        })
    }

    /// Added to a series' labels: only when known, as an empty label is
    /// the same as none to Prometheus.
    fn extend(names: Option<&Self>, labels: &mut Vec<(&'static str, String)>) {
        if let Some(n) = names {
            labels.push(("namespace", n.namespace.clone()));
            labels.push(("pod", n.pod.clone()));
            if !n.container.is_empty() {
                labels.push(("container", n.container.clone()));
            }
        }
    }
}

impl ParentPoint {
    fn place(&mut self, attribution: Option<&Attribution>) {
        if let Some(a) = attribution {
            self.container_id = a.container_id.clone().unwrap_or_default();
            self.pod_uid = a.pod_uid.clone().unwrap_or_default();
            self.unit = a.unit.clone().unwrap_or_default();
            self.names = KubernetesNames::of(a);
        }
    }

    fn labels(&self) -> Vec<(&'static str, String)> {
        let mut labels = vec![
            ("pid", self.pid.to_string()),
            ("comm", self.comm.clone()),
            ("container_id", self.container_id.clone()),
            ("pod_uid", self.pod_uid.clone()),
            ("unit", self.unit.clone()),
        ];
        KubernetesNames::extend(self.names.as_ref(), &mut labels);
        labels
    }
}

/// The zombies owed by the parents of one cgroup.
#[derive(Clone, Debug, PartialEq)]
struct CgroupPoint {
    cgroup: String,
    container_id: String,
    pod_uid: String,
    unit: String,
    names: Option<KubernetesNames>,
    pending: u64,
}

/// A reap-latency histogram as Prometheus buckets.
#[derive(Clone, Debug)]
struct LatencyPoint {
    sum_s: f64,
    count: u64,
    /// Cumulative counts at `le` = 2^k µs, k = 0 .. LATENCY_BUCKETS.
    buckets: Vec<(f64, u64)>,
}

impl LatencyPoint {
    fn of(h: &Histogram) -> Self {
        // bcc slot i holds whole microseconds 2^(i-1) ..= 2^i - 1: below
        // 2^i µs, so it counts towards `le = 2^i µs` and above.
        let mut per_slot = [0u64; LATENCY_BUCKETS as usize + 1];
        for b in h.log2_us_buckets() {
            let slot = (64 - b.le_us.leading_zeros()).min(LATENCY_BUCKETS) as usize;
            per_slot[slot] += b.count;
        }
        let mut cumulative = 0;
        let buckets = (0..LATENCY_BUCKETS)
            .map(|k| {
                cumulative += per_slot[k as usize];
                (2f64.powi(k as i32) / 1e6, cumulative)
            })
            .collect();
        Self {
            sum_s: h.mean_ns().unwrap_or(0.0) * h.count() as f64 / 1e9,
            count: h.count(),
            buckets,
        }
    }
}

impl EncodeMetric for LatencyPoint {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum_s,
            self.count,
            &self.buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Everything one scrape shows, computed from the ledger when scraped.
#[derive(Debug)]
struct Snapshot {
    zombies: u64,
    tasks: u64,
    pid_max: u32,
    threads_max: u32,
    headroom: u64,
    limit: Limit,
    cgroup_headroom: Option<u64>,
    growth_per_s: Option<f64>,
    exhaustion_s: Option<f64>,
    parents: Vec<ParentPoint>,
    cgroups: Vec<CgroupPoint>,
    reaps: [u64; HOWS.len()],
    latency: Vec<LatencyPoint>,
    lost: LostCounts,
    complete: bool,
    resyncs: u64,
    programs: Vec<crate::kernel::tracer::ProgramRun>,
    last_scrape_s: Option<f64>,
}

fn gauge<T: prometheus_client::encoding::EncodeGaugeValue + Copy + std::fmt::Debug>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: T,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        gauge(
            e,
            "zombies",
            "Zombies pending on the host (exited, not yet reaped).",
            None,
            self.zombies as i64,
        )?;
        gauge(
            e,
            "tasks",
            "Tasks (threads) in use on the host; each holds a PID.",
            None,
            self.tasks as i64,
        )?;
        gauge(
            e,
            "pid_max",
            "kernel.pid_max.",
            None,
            i64::from(self.pid_max),
        )?;
        gauge(
            e,
            "threads_max",
            "kernel.threads-max.",
            None,
            i64::from(self.threads_max),
        )?;
        {
            let mut family = e.encode_descriptor(
                "pid_headroom",
                "Tasks that can still be created before the tightest PID limit (pid_max, threads-max, or the worst parent's cgroup pids.max).",
                None,
                MetricType::Gauge,
            )?;
            let limit = match self.limit {
                Limit::PidMax => "pid_max",
                Limit::ThreadsMax => "threads_max",
                Limit::CgroupPidsMax => "cgroup_pids_max",
            };
            ConstGauge::new(self.headroom as i64)
                .encode(family.encode_family(&[("limit", limit)])?)?;
        }
        if let Some(room) = self.cgroup_headroom {
            gauge(
                e,
                "cgroup_pids_headroom",
                "pids.max minus pids.current of the tightest cgroup of the parent owing the most zombies.",
                None,
                room as i64,
            )?;
        }
        if let Some(g) = self.growth_per_s {
            gauge(
                e,
                "zombie_growth_per_second",
                "Growth of the host's zombies per second (least squares over the last minute).",
                None,
                g,
            )?;
        }
        if let Some(s) = self.exhaustion_s {
            gauge(
                e,
                "pid_exhaustion",
                "Forecast: seconds until the tightest PID limit at the current zombie growth (absent when not growing).",
                Some(&Unit::Seconds),
                s,
            )?;
        }
        {
            let mut family = e.encode_descriptor(
                "parent_pending_zombies",
                "Zombies a parent owes (the top parents only).",
                None,
                MetricType::Gauge,
            )?;
            for p in &self.parents {
                let labels = p.labels();
                ConstGauge::new(i64::from(p.pending)).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let mut family = e.encode_descriptor(
                "parent_oldest_zombie_age",
                "Age of a parent's oldest zombie (the top parents only; a lower bound for zombies older than the tracer).",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for p in &self.parents {
                let labels = p.labels();
                ConstGauge::new(p.oldest_age_s).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let mut family = e.encode_descriptor(
                "parent_zombie_growth_per_second",
                "Growth of a parent's zombies per second over the last minute (the top parents only).",
                None,
                MetricType::Gauge,
            )?;
            for p in &self.parents {
                if let Some(g) = p.growth_per_s {
                    let labels = p.labels();
                    ConstGauge::new(g).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut family = e.encode_descriptor(
                "cgroup_pending_zombies",
                "Zombies owed by the parents in a cgroup (the cgroups owing the most only).",
                None,
                MetricType::Gauge,
            )?;
            for c in &self.cgroups {
                let mut labels = vec![
                    ("cgroup", c.cgroup.clone()),
                    ("container_id", c.container_id.clone()),
                    ("pod_uid", c.pod_uid.clone()),
                    ("unit", c.unit.clone()),
                ];
                KubernetesNames::extend(c.names.as_ref(), &mut labels);
                ConstGauge::new(c.pending as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let mut family = e.encode_descriptor(
                "reaps",
                "Zombies released, by how.",
                None,
                MetricType::Counter,
            )?;
            for (how, n) in HOWS.iter().zip(self.reaps) {
                ConstCounter::new(n).encode(family.encode_family(&[("how", how.as_str())])?)?;
            }
        }
        {
            let mut family = e.encode_descriptor(
                "reap_latency",
                "Time from a child's exit to its release, by how it was released.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (how, h) in HOWS.iter().zip(&self.latency) {
                h.encode(family.encode_family(&[("how", how.as_str())])?)?;
            }
        }
        {
            let mut family = e.encode_descriptor(
                "lost_events",
                "Events the kernel could not deliver, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, n) in [
                ("ring_full", self.lost.ring_full),
                ("wait_map_full", self.lost.wait_map_full),
                ("read_failed", self.lost.read_failed),
            ] {
                ConstCounter::new(n).encode(family.encode_family(&[("reason", reason)])?)?;
            }
        }
        gauge(
            e,
            "ledger_complete",
            "1 while no event loss is uncovered by a resync with /proc; 0 until the next resync.",
            None,
            i64::from(self.complete),
        )?;
        {
            let c = ConstCounter::new(self.resyncs);
            c.encode(e.encode_descriptor(
                "resyncs",
                "Resyncs of the ledger with /proc.",
                None,
                c.metric_type(),
            )?)?;
        }
        if !self.programs.is_empty() {
            {
                let mut family = e.encode_descriptor(
                    "bpf_program_run",
                    "Time the eBPF programs ran (kernel.bpf_stats_enabled=1 only).",
                    Some(&Unit::Seconds),
                    MetricType::Counter,
                )?;
                for p in &self.programs {
                    ConstCounter::new(p.run_time.as_secs_f64())
                        .encode(family.encode_family(&[("program", p.program.as_str())])?)?;
                }
            }
            let mut family = e.encode_descriptor(
                "bpf_program_runs",
                "Runs of the eBPF programs (kernel.bpf_stats_enabled=1 only).",
                None,
                MetricType::Counter,
            )?;
            for p in &self.programs {
                ConstCounter::new(p.runs)
                    .encode(family.encode_family(&[("program", p.program.as_str())])?)?;
            }
        }
        if let Some(s) = self.last_scrape_s {
            gauge(
                e,
                "scrape_duration",
                "How long the previous scrape of these metrics took.",
                Some(&Unit::Seconds),
                s,
            )?;
        }
        let build = Info::new([("version", env!("CARGO_PKG_VERSION"))]);
        build.encode(e.encode_descriptor(
            "build",
            "The zombie-trace build.",
            None,
            build.metric_type(),
        )?)?;
        Ok(())
    }
}
