//! Views on the ledger: per-parent rows, the periodic report, alerts and the
//! /proc-only snapshot, as JSON (a stable contract) or text.

use rustc_hash::FxHashSet;
use std::fmt::Write as _;

use serde::Serialize;

use crate::host::cgroup::{Attribution, QosClass, Runtime};
use crate::host::facts::{HostFacts, Pressure};
use crate::model::{
    Change, Comm, Ledger, LedgerHealth, LostCounts, Moment, ProcKey, ProcState, Process,
    ResyncSummary,
};
use crate::render::text::{
    format_age, format_age_bound, format_us, timestamp, write_lost_warnings,
};

/// Which parents a view shows.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub pid: Option<u32>,
    /// Substring of the parent's comm.
    pub comm: Option<String>,
    /// A cgroup path: parents in it or below it.
    pub cgroup: Option<String>,
    /// A systemd unit (`cron.service`, `docker-<id>.scope`), exactly.
    pub unit: Option<String>,
    /// A container id, or its first digits (`docker ps` shows 12).
    pub container: Option<String>,
}

impl Filter {
    /// The PID and comm tests (see [`Filter::admits`] for all of them).
    pub fn matches(&self, p: &Process) -> bool {
        self.matches_id(p.key.pid, &p.comm)
    }

    /// The flags that give this filter (`["--unit", "cron.service"]`).
    pub fn to_flags(&self) -> Vec<String> {
        let flags: [(&str, Option<String>); 5] = [
            ("--pid", self.pid.map(|p| p.to_string())),
            ("--comm", self.comm.clone()),
            ("--cgroup", self.cgroup.clone()),
            ("--unit", self.unit.clone()),
            ("--container", self.container.clone()),
        ];
        flags
            .into_iter()
            .filter_map(|(flag, value)| Some([flag.to_owned(), value?]))
            .flatten()
            .collect()
    }

    /// The filter as the flags that give it (`--unit cron.service`), or
    /// `None` when it lets every parent through.
    pub fn describe(&self) -> Option<String> {
        let flags = self.to_flags();
        (!flags.is_empty()).then(|| flags.join(" "))
    }

    /// Whether the filter asks where a parent runs.
    pub fn places(&self) -> bool {
        self.cgroup.is_some() || self.unit.is_some() || self.container.is_some()
    }

    /// The cgroup, unit and container tests on where a parent runs; a
    /// parent whose place is unknown passes only a filter that asks none.
    pub fn matches_place(&self, place: Option<&Attribution>) -> bool {
        if !self.places() {
            return true;
        }
        let Some(a) = place else {
            return false;
        };
        let in_cgroup = self.cgroup.as_deref().is_none_or(|want| {
            let want = want.trim_end_matches('/');
            want.is_empty()
                || a.cgroup == want
                || a.cgroup
                    .strip_prefix(want)
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        let in_unit = self
            .unit
            .as_deref()
            .is_none_or(|want| a.unit.as_deref() == Some(want));
        let in_container = self.container.as_deref().is_none_or(|want| {
            !want.is_empty()
                && a.container_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with(want))
        });
        in_cgroup && in_unit && in_container
    }

    /// Every test: PID, comm, and where it runs as `host` says (asked only
    /// when the filter has a place test).
    pub fn admits(&self, p: &Process, host: &mut dyn HostFacts) -> bool {
        self.matches(p) && (!self.places() || self.matches_place(host.attribution(p.key).as_ref()))
    }

    /// Same test on a PID and comm (no allocation: usable per event).
    pub fn matches_id(&self, pid: u32, comm: &Comm) -> bool {
        self.pid.is_none_or(|want| pid == want)
            && self.comm.as_deref().is_none_or(|c| {
                let name = comm.as_bytes();
                c.is_empty() || name.windows(c.len()).any(|w| w == c.as_bytes())
            })
    }
}

/// One parent that owes reaps. JSON field names are a contract: add, never rename.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ParentRow {
    pub pid: u32,
    pub comm: String,
    /// Start time in clock ticks since boot: with `pid`, the parent's identity.
    pub start_ticks: u64,
    pub pending_zombies: u32,
    /// Of `pending_zombies`, those already zombies when tracing started.
    pub zombies_before_start: u32,
    /// Age of the oldest pending zombie. For zombies older than the tracer it
    /// counts from the tracer's start (a lower bound): see `oldest_zombie_age_exact`.
    pub oldest_zombie_age_ms: u64,
    pub oldest_zombie_age_exact: bool,
    pub forks: u64,
    pub exits: u64,
    pub reaped: u64,
    pub auto_reaped: u64,
    pub adopted: u64,
    pub wait_calls: u64,
    /// In `watch` reports: p99 and max time its own children stayed zombies
    /// before its wait reaped them, over the last interval; null when it
    /// reaped none in the interval (and outside `watch` reports).
    pub reap_latency_p99_us: Option<f64>,
    pub reap_latency_max_us: Option<f64>,
    /// Where it runs: its cgroup path (the v2 path; on hybrid and v1 hosts
    /// systemd's own hierarchy, else the first controller's), and the
    /// systemd unit, container and Kubernetes pod that path names. Null
    /// when /proc could not say (the process is gone) or the path names
    /// none of them.
    pub cgroup: Option<String>,
    pub unit: Option<String>,
    pub container_id: Option<String>,
    pub container_runtime: Option<Runtime>,
    pub pod_uid: Option<String>,
    pub qos_class: Option<QosClass>,
    /// With `--pod-names`: the pod's name and namespace and the
    /// container's name, as the kubelet gives them (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Its PID inside its own PID namespace (a container's), beside the
    /// host's `pid`; absent when it runs in the reader's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_in_namespace: Option<u32>,
}

impl ParentRow {
    /// The row of parent `p` as of `now_ns`, running in `place`.
    pub fn of(ledger: &Ledger, p: &Process, now_ns: u64, place: Option<Attribution>) -> Self {
        let oldest = ledger.oldest_zombie(&p.key);
        let age_ns = oldest.map_or(0, |t| now_ns.saturating_sub(ledger.exit_ns(t)));
        let mut row = Self {
            pid: p.key.pid,
            comm: p.comm.as_str_lossy(),
            start_ticks: p.key.start_ticks,
            pending_zombies: p.stats.pending,
            zombies_before_start: p.stats.pending_before_start,
            oldest_zombie_age_ms: age_ns / 1_000_000,
            oldest_zombie_age_exact: oldest.is_none_or(|t| t.is_exact()),
            forks: p.stats.forks,
            exits: p.stats.exits,
            reaped: p.stats.reaped,
            auto_reaped: p.stats.auto_reaped,
            adopted: p.stats.adopted,
            wait_calls: p.stats.wait_calls,
            reap_latency_p99_us: None,
            reap_latency_max_us: None,
            cgroup: None,
            unit: None,
            container_id: None,
            container_runtime: None,
            pod_uid: None,
            qos_class: None,
            pod: None,
            namespace: None,
            container: None,
            pid_in_namespace: None,
        };
        if let Some(a) = place {
            row.pid_in_namespace = a.pid_in_namespace;
            row.pod = a.pod_name;
            row.namespace = a.namespace;
            row.container = a.container_name;
            row.cgroup = Some(a.cgroup);
            row.unit = a.unit;
            row.container_id = a.container_id;
            row.container_runtime = a.runtime;
            row.pod_uid = a.pod_uid;
            row.qos_class = a.qos;
        }
        row
    }

    /// Where it runs, in a few words for a table: the pod and container,
    /// else the container, else the unit, else the cgroup path; "-" when
    /// unknown or the root cgroup.
    pub fn where_text(&self) -> String {
        let container = self.container_id.as_deref().map(|id| {
            let short = id.get(..12).unwrap_or(id);
            match (&self.container, self.container_runtime) {
                (Some(name), _) => format!("container {name}"),
                (None, Some(runtime)) => format!("{} {short}", runtime.as_str()),
                (None, None) => format!("container {short}"),
            }
        });
        let pod = match (&self.pod, &self.namespace, self.pod_uid.as_deref()) {
            (Some(name), Some(namespace), _) => Some(format!("pod {namespace}/{name}")),
            (_, _, uid) => uid.map(|uid| format!("pod {}", uid.get(..8).unwrap_or(uid))),
        };
        match (pod, container) {
            (Some(pod), Some(container)) => format!("{pod} {container}"),
            (Some(pod), None) => pod,
            (None, Some(container)) => container,
            (None, None) => match (&self.unit, self.cgroup.as_deref()) {
                (Some(unit), _) => unit.clone(),
                (None, Some(path)) if path != "/" && !path.is_empty() => path.to_owned(),
                _ => "-".to_owned(),
            },
        }
    }

    /// The oldest zombie's age, `>` in front when it is a lower bound.
    pub fn oldest_age_text(&self) -> String {
        format_age_bound(self.oldest_zombie_age_ms, self.oldest_zombie_age_exact)
    }
}

/// Parents with at least one pending zombie, worst first (most pending, then
/// oldest zombie), each with where it runs.
pub fn parent_rows(
    ledger: &Ledger,
    filter: &Filter,
    now_ns: u64,
    host: &mut dyn HostFacts,
) -> Vec<ParentRow> {
    let mut rows: Vec<ParentRow> = Vec::new();
    for p in ledger.parents_with_zombies().filter(|p| filter.matches(p)) {
        let place = host.attribution(p.key);
        if filter.matches_place(place.as_ref()) {
            rows.push(ParentRow::of(ledger, p, now_ns, place));
        }
    }
    rows.sort_by(|a, b| {
        b.pending_zombies
            .cmp(&a.pending_zombies)
            .then(b.oldest_zombie_age_ms.cmp(&a.oldest_zombie_age_ms))
            .then(a.pid.cmp(&b.pid))
    });
    rows
}

/// The periodic `watch` report. JSON: `{"type":"report",...}`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub time: String,
    pub parents: Vec<ParentRow>,
    /// Events the kernel could not deliver since the start (never reset).
    pub lost_events: u64,
    pub lost_by_reason: LostCounts,
    /// False while events were lost that no resync with /proc has covered
    /// yet: the ledger may miss forks, exits or reaps. A resync runs at the
    /// next report interval and makes it true again.
    pub complete: bool,
    /// Resyncs of the ledger with /proc so far, and the entries they corrected.
    pub resyncs: u64,
    pub resync_corrections: u64,
    /// What the last resync corrected (null before the first).
    pub last_resync: Option<ResyncSummary>,
    pub pending_zombies: u64,
    #[serde(flatten)]
    pub pressure: Option<Pressure>,
    /// Events the kernel sent that the ledger applied.
    pub events: u64,
}

impl Report {
    /// The report as of `now`, with the host's pressure and where each
    /// parent runs as `host` says then.
    pub fn new(
        ledger: &Ledger,
        filter: &Filter,
        now: Moment,
        health: &LedgerHealth,
        host: &mut dyn HostFacts,
    ) -> Self {
        let pressure = host.pressure();
        let lost = health.lost;
        let parents = parent_rows(ledger, filter, now.boot_ns, host);
        Self {
            kind: "report",
            time: timestamp(now.wall()),
            pending_zombies: parents.iter().map(|p| u64::from(p.pending_zombies)).sum(),
            parents,
            lost_events: lost.total(),
            lost_by_reason: lost,
            complete: health.complete(),
            resyncs: health.resyncs,
            resync_corrections: health.resync_corrections,
            last_resync: health.last_resync,
            pressure,
            events: ledger.counters.events,
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let pressure = self.pressure.map_or(String::new(), |p| {
            format!(
                "  tasks {}/{} ({:.1}% of pid_max)",
                p.tasks,
                p.pid_max,
                100.0 * p.tasks as f64 / f64::from(p.pid_max.max(1))
            )
        });
        let _ = writeln!(
            out,
            "{}  {} pending zombies, {} parents{}  lost events: {}{}{}",
            self.time,
            self.pending_zombies,
            self.parents.len(),
            pressure,
            self.lost_events,
            if self.resyncs > 0 {
                format!(
                    "  resynced with /proc: {}x, {} corrections",
                    self.resyncs, self.resync_corrections
                )
            } else {
                String::new()
            },
            if self.complete { "" } else { "  [INCOMPLETE]" }
        );
        write_lost_warnings(&mut out, self.lost_by_reason);
        if self.parents.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "  {:>7} {:<16} {:>8} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>10} {:>10}  WHERE",
            "PID",
            "COMM",
            "PENDING",
            "OLDEST",
            "FORKS",
            "EXITS",
            "REAPED",
            "AUTO",
            "ADOPTED",
            "REAP_P99",
            "REAP_MAX"
        );
        let latency = |us: Option<f64>| us.map_or_else(|| "-".to_owned(), format_us);
        for p in &self.parents {
            let _ = writeln!(
                out,
                "  {:>7} {:<16} {:>8} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>10} {:>10}  {}",
                p.pid,
                p.comm,
                p.pending_zombies,
                p.oldest_age_text(),
                p.forks,
                p.exits,
                p.reaped,
                p.auto_reaped,
                p.adopted,
                latency(p.reap_latency_p99_us),
                latency(p.reap_latency_max_us),
                p.where_text()
            );
        }
        out
    }
}

/// An alert: a parent reached the threshold. JSON: `{"type":"alert",...}`.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub time: String,
    pub parent: ParentRow,
    pub threshold: u32,
    /// Why it leaks and what to do (see `zombie-trace explain`).
    pub diagnosis: Option<AlertDiagnosis>,
}

/// The diagnosis summary an alert carries.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AlertDiagnosis {
    pub verdict: &'static str,
    pub summary: String,
    /// Seconds until the tightest PID limit at the current growth, if growing.
    pub exhausted_in_s: Option<f64>,
    /// The first action that will work.
    pub next_step: Option<String>,
}

impl From<&crate::views::diagnosis::Diagnosis> for AlertDiagnosis {
    fn from(d: &crate::views::diagnosis::Diagnosis) -> Self {
        Self {
            verdict: d.verdict,
            summary: d.summary.clone(),
            exhausted_in_s: d.forecast.as_ref().map(|f| f.seconds),
            next_step: d
                .remediation
                .iter()
                .find(|s| s.works)
                .map(|s| s.action.clone()),
        }
    }
}

impl Alert {
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}  ALERT pid {} ({}){} owes {} reaps (threshold {}), oldest zombie {}\n",
            self.time,
            self.parent.pid,
            self.parent.comm,
            match self.parent.where_text().as_str() {
                "-" => String::new(),
                place => format!(" in {place}"),
            },
            self.parent.pending_zombies,
            self.threshold,
            self.parent.oldest_age_text()
        );
        if let Some(d) = &self.diagnosis {
            let _ = writeln!(out, "    why: {}", d.summary);
            if let Some(s) = d.exhausted_in_s {
                let _ = writeln!(
                    out,
                    "    PID space exhausted in ~{}",
                    format_age((s * 1000.0) as u64)
                );
            }
            if let Some(step) = &d.next_step {
                let _ = writeln!(
                    out,
                    "    do: {step}   (details: zombie-trace explain {})",
                    self.parent.pid
                );
            }
        }
        out
    }
}

/// Decides when a parent crosses the alert threshold. Fires once per
/// crossing; re-arms when the parent falls back below the threshold.
#[derive(Debug)]
pub struct AlertTracker {
    threshold: u32,
    alerted: FxHashSet<ProcKey>,
    due: Vec<ProcKey>,
}

impl AlertTracker {
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            alerted: FxHashSet::default(),
            due: Vec::new(),
        }
    }

    /// Parents already over the threshold when tracing starts.
    pub fn seed(&mut self, ledger: &Ledger) {
        for p in ledger.parents_with_zombies() {
            self.observe(p.key, p.stats.pending);
        }
    }

    fn observe(&mut self, parent: ProcKey, pending: u32) {
        if pending >= self.threshold {
            if self.alerted.insert(parent) {
                self.due.push(parent);
            }
        } else if !self.alerted.is_empty() {
            self.alerted.remove(&parent);
        }
    }

    /// Feeds one ledger change (hot path: no allocation unless an alert fires).
    pub fn on_change(&mut self, change: &Change) {
        match *change {
            Change::Exited {
                parent, pending, ..
            } => self.observe(parent, pending),
            Change::Adopted { to, pending, .. } => self.observe(to, pending),
            Change::Sigchld { .. } => {}
            Change::Released {
                reaper,
                pending,
                child,
                ..
            } => {
                if self.alerted.is_empty() {
                    return; // the common case: nothing to forget
                }
                if pending < self.threshold {
                    self.alerted.remove(&reaper);
                }
                // A released process is gone for good: forget it (keeps the
                // set bounded under churn).
                self.alerted.remove(&child);
            }
        }
    }

    /// Whether alerts fired since the last [`AlertTracker::take`].
    pub fn has_due(&self) -> bool {
        !self.due.is_empty()
    }

    /// Alerts that fired since the last call, for parents the filter shows,
    /// each with where the parent runs as `host` says.
    pub fn take(
        &mut self,
        ledger: &Ledger,
        filter: &Filter,
        now: Moment,
        host: &mut dyn HostFacts,
    ) -> Vec<Alert> {
        if self.due.is_empty() {
            return Vec::new();
        }
        let threshold = self.threshold;
        let time = timestamp(now.wall());
        self.due
            .drain(..)
            .filter_map(|key| ledger.get(&key))
            .filter(|p| filter.matches(p))
            .filter_map(|p| {
                let place = host.attribution(p.key);
                if !filter.matches_place(place.as_ref()) {
                    return None;
                }
                Some(Alert {
                    kind: "alert",
                    time: time.clone(),
                    parent: ParentRow::of(ledger, p, now.boot_ns, place),
                    threshold,
                    diagnosis: None,
                })
            })
            .collect()
    }
}

/// `zombie-trace snapshot`: zombies grouped by who owes the reap, from /proc.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub time: String,
    pub pid_max: u32,
    pub tasks: u64,
    pub zombies: u64,
    pub parents: Vec<SnapshotParent>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SnapshotParent {
    pub pid: u32,
    pub comm: String,
    pub state: &'static str,
    pub pending_zombies: u32,
    pub zombie_pids: Vec<u32>,
}

impl Snapshot {
    pub fn new(
        ledger: &Ledger,
        filter: &Filter,
        tasks: u64,
        pid_max: u32,
        now: Moment,
        host: &mut dyn HostFacts,
    ) -> Self {
        let mut parents: Vec<SnapshotParent> = ledger
            .parents_with_zombies()
            .filter(|p| filter.admits(p, host))
            .map(|p| {
                let mut zombie_pids: Vec<u32> = ledger
                    .children(&p.key)
                    .filter(|c| c.is_zombie())
                    .map(|c| c.key.pid)
                    .collect();
                zombie_pids.sort_unstable();
                SnapshotParent {
                    pid: p.key.pid,
                    comm: p.comm.as_str_lossy(),
                    state: match p.state {
                        ProcState::Alive => "alive",
                        ProcState::Zombie(_) => "zombie",
                    },
                    pending_zombies: p.stats.pending,
                    zombie_pids,
                }
            })
            .collect();
        parents.sort_by(|a, b| {
            b.pending_zombies
                .cmp(&a.pending_zombies)
                .then(a.pid.cmp(&b.pid))
        });
        Self {
            time: timestamp(now.wall()),
            pid_max,
            tasks,
            zombies: ledger.processes().filter(|p| p.is_zombie()).count() as u64,
            parents,
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}  {} zombies, {} parents owe reaps; tasks {}/{} pid_max\n",
            self.time,
            self.zombies,
            self.parents.len(),
            self.tasks,
            self.pid_max
        );
        if self.parents.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "  {:>7} {:<16} {:>8}  ZOMBIE PIDS",
            "PID", "COMM", "PENDING"
        );
        for p in &self.parents {
            const SHOWN: usize = 10;
            let mut pids: Vec<String> = p
                .zombie_pids
                .iter()
                .take(SHOWN)
                .map(u32::to_string)
                .collect();
            if p.zombie_pids.len() > SHOWN {
                pids.push(format!("... (+{})", p.zombie_pids.len() - SHOWN));
            }
            let _ = writeln!(
                out,
                "  {:>7} {:<16} {:>8}  {}",
                p.pid,
                p.comm,
                p.pending_zombies,
                pids.join(" ")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4c1f09a2b7d3e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e";

    fn placed_in(cgroup: &str) -> Attribution {
        Attribution::parse(&format!("0::{cgroup}\n"))
    }

    #[test]
    fn place_filters_select_by_cgroup_prefix_unit_and_container_prefix() {
        let docker = placed_in(&format!("/system.slice/docker-{ID}.scope"));
        let cron = placed_in("/system.slice/cron.service");
        let filter = |f: Filter| (f.matches_place(Some(&docker)), f.matches_place(Some(&cron)));

        assert_eq!(filter(Filter::default()), (true, true));
        let cgroup = |path: &str| Filter {
            cgroup: Some(path.to_owned()),
            ..Filter::default()
        };
        assert_eq!(filter(cgroup("/system.slice")), (true, true));
        assert_eq!(filter(cgroup("/system.slice/")), (true, true));
        assert_eq!(filter(cgroup("/system.slice/cron.service")), (false, true));
        // A path prefix, not a string prefix.
        assert_eq!(filter(cgroup("/system.sl")), (false, false));
        assert_eq!(filter(cgroup("/")), (true, true));
        let unit = Filter {
            unit: Some("cron.service".to_owned()),
            ..Filter::default()
        };
        assert_eq!(filter(unit), (false, true));
        let container = |id: &str| Filter {
            container: Some(id.to_owned()),
            ..Filter::default()
        };
        assert_eq!(filter(container(&ID[..12])), (true, false));
        assert_eq!(filter(container(ID)), (true, false));
        assert_eq!(filter(container("4c1f0a")), (false, false));
        assert_eq!(filter(container("")), (false, false));
        // Every test must hold.
        let both = Filter {
            unit: Some("cron.service".to_owned()),
            container: Some(ID[..12].to_owned()),
            ..Filter::default()
        };
        assert_eq!(filter(both), (false, false));
    }

    #[test]
    fn an_unknown_place_passes_only_a_filter_without_place_tests() {
        assert!(Filter::default().matches_place(None));
        let unit = Filter {
            unit: Some("cron.service".to_owned()),
            ..Filter::default()
        };
        assert!(unit.places() && !unit.matches_place(None));
    }
}
