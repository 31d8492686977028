//! What `watch` shows: alerts as parents cross the threshold (each with a
//! diagnosis), and a report every interval with the interval's reap
//! latencies. The same view runs live and over a recording (`report`).

use crate::engine::Context;
use crate::model::Change;
use crate::views::diagnosis::{self, GrowthTracker};
use crate::views::latency::IntervalLatency;
use crate::views::report::{Alert, AlertDiagnosis, AlertTracker, Filter, Report};

/// The state behind `watch`'s output.
#[derive(Debug)]
pub struct WatchView {
    filter: Filter,
    alerts: AlertTracker,
    latency: IntervalLatency,
    growth: GrowthTracker,
    /// The parents over the threshold at the start were taken.
    seeded: bool,
}

impl WatchView {
    pub fn new(filter: Filter, threshold: u32) -> Self {
        Self {
            filter,
            alerts: AlertTracker::new(threshold),
            latency: IntervalLatency::default(),
            growth: GrowthTracker::default(),
            seeded: false,
        }
    }

    /// Feeds one ledger change.
    pub fn on_change(&mut self, change: &Change) {
        self.alerts.on_change(change);
        self.latency.on_change(change);
    }

    /// Alerts that fired since the last call, diagnosed. The first call
    /// also takes the parents already over the threshold.
    pub fn alerts(&mut self, ctx: &mut Context<'_>) -> Vec<Alert> {
        if !self.seeded {
            self.alerts.seed(ctx.ledger);
            self.seeded = true;
        }
        if !self.alerts.has_due() {
            return Vec::new();
        }
        let mut alerts = self
            .alerts
            .take(ctx.ledger, &self.filter, ctx.now, ctx.host);
        for alert in &mut alerts {
            // Cold path: an alert is rare, a diagnosis reads a few /proc files.
            alert.diagnosis = diagnosis::diagnose_traced(ctx, alert.parent.pid, Some(&self.growth))
                .as_ref()
                .map(AlertDiagnosis::from);
        }
        alerts
    }

    /// The report on the ledger as it stands, with the interval's reap
    /// latencies; starts a new interval.
    pub fn report(&mut self, ctx: &mut Context<'_>) -> Report {
        let mut report = Report::new(ctx.ledger, &self.filter, ctx.now, &ctx.health, ctx.host);
        self.latency.annotate(&mut report.parents);
        self.latency.reset();
        self.growth.sample(ctx.ledger, ctx.now.boot_ns);
        report
    }
}
