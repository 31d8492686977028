//! What `zombie-trace top` shows: a model of the screen ([`TopState`]:
//! rows, header, detail, alert log, and the user's selection, sort,
//! filter, pause and replay controls), kept up to date from the engine's
//! [`Context`] by [`TopView`], and changed by keys through [`on_key`], a
//! pure state machine. Drawing it is [`crate::render::top::draw`]; the
//! terminal itself is the command's business.

use std::collections::{HashMap, VecDeque};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::engine::Context;
use crate::host::pressure::Limit;
use crate::model::{Change, ProcKey, ReapKind};
use crate::render::text::{format_age_bound, timestamp};
use crate::views::diagnosis::{Diagnosis, GrowthTracker, diagnose_traced};
use crate::views::latency::{GroupBy, LatencyView, Log2Bucket};
use crate::views::report::{AlertTracker, Filter, parent_rows};

/// Pending-count samples kept per parent for its sparkline (one per
/// report tick: three minutes at the default interval).
pub const HISTORY_SAMPLES: usize = 180;
/// Alerts kept in the log.
pub const ALERT_LOG: usize = 50;
/// Rows whose verdict is diagnosed at each tick (the first ones shown).
pub const DIAGNOSED_ROWS: usize = 30;
/// Between ticks, the rows are rebuilt after a batch at most this often.
pub const REFRESH_NS: u64 = 250_000_000;

/// The order of the parents table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Most pending zombies first.
    #[default]
    Pending,
    /// Oldest zombie first.
    Oldest,
    /// Fastest growing first.
    Growth,
    /// Fewest reaps first (the parents that reap nothing at the top).
    Reaps,
}

impl SortKey {
    pub fn next(self) -> Self {
        match self {
            SortKey::Pending => SortKey::Oldest,
            SortKey::Oldest => SortKey::Growth,
            SortKey::Growth => SortKey::Reaps,
            SortKey::Reaps => SortKey::Pending,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Pending => "pending",
            SortKey::Oldest => "oldest",
            SortKey::Growth => "growth",
            SortKey::Reaps => "reaps",
        }
    }
}

/// What keys are going to.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum InputMode {
    #[default]
    Normal,
    /// Typing a filter after `/`.
    Filter,
    /// Typing a time to jump to after `g` (replay).
    Seek(String),
}

/// The user's control of a replay's clock.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayControl {
    pub playing: bool,
    /// Recorded seconds per real second.
    pub speed: f64,
    /// The recording's length, when known.
    pub span_ns: Option<u64>,
    /// The last problem with a typed time, shown until the next key.
    pub error: Option<String>,
}

impl Default for ReplayControl {
    fn default() -> Self {
        Self {
            playing: true,
            speed: 1.0,
            span_ns: None,
            error: None,
        }
    }
}

pub const MIN_SPEED: f64 = 0.25;
pub const MAX_SPEED: f64 = 64.0;
/// How far `[` and `]` jump.
pub const JUMP_NS: u64 = 10_000_000_000;

/// What the command must do after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing changed.
    Nothing,
    /// The screen changed: draw it.
    Redraw,
    /// Another parent is selected: its detail must be computed, then drawn.
    Select,
    Quit,
    /// Replay: go to this offset from the start of the recording.
    Seek(u64),
    /// Replay: show the next tick, then pause.
    Step,
}

/// One parent that owes reaps, as the table shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct TopRow {
    pub key: ProcKey,
    pub comm: String,
    pub pending: u32,
    pub oldest_ms: u64,
    pub oldest_exact: bool,
    pub forks: u64,
    pub exits: u64,
    /// Reaped by its waits, and by the kernel (SIGCHLD ignored).
    pub reaped: u64,
    pub auto_reaped: u64,
    pub growth_per_s: Option<f64>,
    /// Machine-readable cause from the diagnosis (`never_waits`), when
    /// diagnosed.
    pub verdict: Option<&'static str>,
    /// Pending count at each tick, oldest first.
    pub history: Vec<u32>,
    /// Where it runs, in a few words (pod, container, unit or cgroup).
    pub place: String,
    /// What the filter also looks in: its cgroup path, unit, full container
    /// id and dashed pod UID (the forms `kubectl` and `docker` print), as
    /// far as they are known.
    pub names: Vec<String>,
}

impl TopRow {
    pub fn oldest_text(&self) -> String {
        format_age_bound(self.oldest_ms, self.oldest_exact)
    }
}

/// The header's facts.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TopHeader {
    /// UTC time of the data shown.
    pub time: String,
    /// Since the source started.
    pub traced_ms: u64,
    pub pending: u64,
    pub parents: usize,
    pub tasks: u64,
    pub pid_max: u32,
    pub threads_max: u32,
    /// The tightest `pids.max` on the worst parent's cgroup: (current, max).
    pub cgroup: Option<(u64, u64)>,
    /// Sum of the parents' growth rates (zombies per second).
    pub growth_per_s: Option<f64>,
    /// Seconds until the tightest limit at that rate, and which limit.
    pub forecast: Option<(f64, Limit)>,
    pub lost_events: u64,
    /// No loss awaits a resync.
    pub complete: bool,
}

/// The reap-latency histogram of one parent (its own waits).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
    pub buckets: Vec<Log2Bucket>,
    /// Reaps of zombies older than tracing: no latency.
    pub exit_time_unknown: u64,
}

/// The detail pane: `explain` for the selected parent.
#[derive(Clone, Debug, PartialEq)]
pub struct Detail {
    pub key: ProcKey,
    pub diagnosis: Option<Diagnosis>,
    pub latency: LatencySummary,
}

/// One line of the alert log.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertLine {
    /// `HH:MM:SS` UTC.
    pub time: String,
    pub text: String,
}

/// The screen's model.
#[derive(Clone, Debug, Default)]
pub struct TopState {
    pub header: TopHeader,
    /// Every parent that owes reaps (unfiltered, unsorted).
    pub rows: Vec<TopRow>,
    pub detail: Option<Detail>,
    pub alerts: VecDeque<AlertLine>,
    /// The command line's filter (`--unit cron.service`): every row, count
    /// and alert is of the parents it lets through.
    pub scope: Option<String>,
    pub selected: Option<ProcKey>,
    pub sort: SortKey,
    pub filter: String,
    pub mode: InputMode,
    /// Live: the screen is frozen (the engine goes on).
    pub paused: bool,
    pub help: bool,
    pub detail_open: bool,
    /// Lines the detail pane is scrolled by.
    pub detail_scroll: u16,
    pub replay: Option<ReplayControl>,
    /// Draw with colours (off when NO_COLOR is set).
    pub color: bool,
    /// The alert threshold, shown in the help.
    pub threshold: u32,
    /// Replay: the offset of the data shown from the recording's start.
    pub at_ns: u64,
    /// Replay: the recording ended here.
    pub ended: bool,
}

impl TopState {
    pub fn new(threshold: u32, color: bool, replay: Option<ReplayControl>) -> Self {
        Self {
            threshold,
            color,
            replay,
            ..Self::default()
        }
    }

    /// Whether a row passes the filter: a PID (exact), or part of the comm
    /// or of where it runs (a container id, pod UID, unit or cgroup path).
    fn shows(&self, row: &TopRow) -> bool {
        let f = self.filter.trim();
        if f.is_empty() {
            return true;
        }
        if f.parse::<u32>().is_ok_and(|pid| row.key.pid == pid) {
            return true;
        }
        row.comm.contains(f) || row.place.contains(f) || row.names.iter().any(|n| n.contains(f))
    }

    /// The rows shown, in the chosen order (worst first).
    pub fn visible(&self) -> Vec<&TopRow> {
        let mut rows: Vec<&TopRow> = self.rows.iter().filter(|r| self.shows(r)).collect();
        let worst = |a: &&TopRow, b: &&TopRow| {
            b.pending
                .cmp(&a.pending)
                .then(b.oldest_ms.cmp(&a.oldest_ms))
                .then(a.key.pid.cmp(&b.key.pid))
        };
        match self.sort {
            SortKey::Pending => rows.sort_by(worst),
            SortKey::Oldest => rows.sort_by(|a, b| b.oldest_ms.cmp(&a.oldest_ms).then(worst(a, b))),
            SortKey::Growth => rows.sort_by(|a, b| {
                let g = |r: &TopRow| r.growth_per_s.unwrap_or(f64::NEG_INFINITY);
                g(b).total_cmp(&g(a)).then(worst(a, b))
            }),
            SortKey::Reaps => rows.sort_by(|a, b| {
                (a.reaped + a.auto_reaped)
                    .cmp(&(b.reaped + b.auto_reaped))
                    .then(worst(a, b))
            }),
        }
        rows
    }

    /// Index of the selected row among the visible ones.
    pub fn selected_index(&self) -> Option<usize> {
        let key = self.selected?;
        self.visible().iter().position(|r| r.key == key)
    }

    /// The selected row, if it is visible.
    pub fn selected_row(&self) -> Option<&TopRow> {
        let key = self.selected?;
        self.visible().into_iter().find(|r| r.key == key)
    }

    /// Keeps the selection on a visible row: the same parent if it is still
    /// shown, else the first row.
    pub fn fix_selection(&mut self) -> bool {
        let visible = self.visible();
        let before = self.selected;
        let keep = before.filter(|k| visible.iter().any(|r| r.key == *k));
        self.selected = keep.or_else(|| visible.first().map(|r| r.key));
        self.selected != before
    }

    fn move_selection(&mut self, delta: isize) -> Action {
        let visible = self.visible();
        if visible.is_empty() {
            return Action::Nothing;
        }
        let last = visible.len() - 1;
        let at = self.selected_index().unwrap_or(0);
        let to = at.saturating_add_signed(delta).min(last);
        let key = visible[to].key;
        if Some(key) == self.selected {
            return Action::Nothing;
        }
        self.selected = Some(key);
        self.detail_scroll = 0;
        Action::Select
    }

    /// Drops the data (a replay starting over); keeps the user's choices.
    pub fn clear_data(&mut self) {
        self.header = TopHeader::default();
        self.rows.clear();
        self.detail = None;
        self.alerts.clear();
        self.ended = false;
        self.at_ns = 0;
    }
}

/// Parses a replay time: an offset from the start (`90s`, `1m30s`, `+2m`).
pub fn parse_offset(text: &str) -> Result<u64, String> {
    let t = text.trim().trim_start_matches('+');
    humantime::parse_duration(t)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .map_err(|_| format!("`{text}` is not a time: type an offset such as 90s or 1m30s"))
}

/// What a key does to the screen: the whole of `top`'s key handling.
pub fn on_key(state: &mut TopState, key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::Nothing;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('d')) {
        return Action::Quit;
    }
    if let Some(replay) = &mut state.replay {
        replay.error = None;
    }
    match state.mode.clone() {
        InputMode::Filter => return filter_key(state, key),
        InputMode::Seek(text) => return seek_key(state, key, text),
        InputMode::Normal => {}
    }
    if state.help {
        // Any key closes the help; q still quits.
        state.help = false;
        return match key.code {
            KeyCode::Char('q') => Action::Quit,
            _ => Action::Redraw,
        };
    }
    match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Esc if state.detail_open => {
            state.detail_open = false;
            Action::Redraw
        }
        KeyCode::Esc if !state.filter.is_empty() => {
            state.filter.clear();
            state.fix_selection();
            Action::Select
        }
        KeyCode::Up | KeyCode::Char('k') => state.move_selection(-1),
        KeyCode::Down | KeyCode::Char('j') => state.move_selection(1),
        KeyCode::PageUp => state.move_selection(-10),
        KeyCode::PageDown => state.move_selection(10),
        KeyCode::Home => state.move_selection(isize::MIN / 2),
        KeyCode::End => state.move_selection(isize::MAX / 2),
        KeyCode::Enter | KeyCode::Char('d') => {
            state.detail_open = !state.detail_open;
            state.detail_scroll = 0;
            if state.detail_open {
                Action::Select
            } else {
                Action::Redraw
            }
        }
        KeyCode::Char('J') => {
            state.detail_scroll = state.detail_scroll.saturating_add(3);
            Action::Redraw
        }
        KeyCode::Char('K') => {
            state.detail_scroll = state.detail_scroll.saturating_sub(3);
            Action::Redraw
        }
        KeyCode::Char('/') => {
            state.mode = InputMode::Filter;
            Action::Redraw
        }
        KeyCode::Char('s') => {
            state.sort = state.sort.next();
            Action::Redraw
        }
        KeyCode::Char('?') | KeyCode::Char('h') => {
            state.help = true;
            Action::Redraw
        }
        _ => match &mut state.replay {
            Some(replay) => replay_key(replay, state.at_ns, key, &mut state.mode),
            None => match key.code {
                KeyCode::Char('p') | KeyCode::Char(' ') => {
                    state.paused = !state.paused;
                    Action::Redraw
                }
                _ => Action::Nothing,
            },
        },
    }
}

fn replay_key(
    replay: &mut ReplayControl,
    at_ns: u64,
    key: KeyEvent,
    mode: &mut InputMode,
) -> Action {
    match key.code {
        KeyCode::Char('p') | KeyCode::Char(' ') => {
            replay.playing = !replay.playing;
            Action::Redraw
        }
        KeyCode::Char('n') | KeyCode::Char('.') => {
            replay.playing = false;
            Action::Step
        }
        KeyCode::Char('+') | KeyCode::Char('=') => {
            replay.speed = (replay.speed * 2.0).min(MAX_SPEED);
            Action::Redraw
        }
        KeyCode::Char('-') => {
            replay.speed = (replay.speed / 2.0).max(MIN_SPEED);
            Action::Redraw
        }
        KeyCode::Char(']') | KeyCode::Right => Action::Seek(at_ns.saturating_add(JUMP_NS)),
        KeyCode::Char('[') | KeyCode::Left => Action::Seek(at_ns.saturating_sub(JUMP_NS)),
        KeyCode::Char('g') => {
            *mode = InputMode::Seek(String::new());
            Action::Redraw
        }
        _ => Action::Nothing,
    }
}

fn filter_key(state: &mut TopState, key: KeyEvent) -> Action {
    match key.code {
        KeyCode::Enter => {
            state.mode = InputMode::Normal;
            Action::Redraw
        }
        KeyCode::Esc => {
            state.mode = InputMode::Normal;
            state.filter.clear();
            state.fix_selection();
            Action::Select
        }
        KeyCode::Backspace => {
            state.filter.pop();
            state.fix_selection();
            Action::Select
        }
        KeyCode::Char(c) if !c.is_control() && state.filter.len() < 32 => {
            state.filter.push(c);
            state.fix_selection();
            Action::Select
        }
        _ => Action::Nothing,
    }
}

fn seek_key(state: &mut TopState, key: KeyEvent, mut text: String) -> Action {
    match key.code {
        KeyCode::Enter => {
            state.mode = InputMode::Normal;
            match parse_offset(&text) {
                Ok(at) => Action::Seek(at),
                Err(message) => {
                    if let Some(replay) = &mut state.replay {
                        replay.error = Some(message);
                    }
                    Action::Redraw
                }
            }
        }
        KeyCode::Esc => {
            state.mode = InputMode::Normal;
            Action::Redraw
        }
        KeyCode::Backspace => {
            text.pop();
            state.mode = InputMode::Seek(text);
            Action::Redraw
        }
        KeyCode::Char(c) if !c.is_control() && text.len() < 24 => {
            text.push(c);
            state.mode = InputMode::Seek(text);
            Action::Redraw
        }
        _ => Action::Nothing,
    }
}

/// Keeps a [`TopState`] up to date from the engine: the consumer side of
/// `top`, pure like every view (what it shows comes from the context).
#[derive(Debug)]
pub struct TopView {
    pub state: TopState,
    alerts: AlertTracker,
    growth: GrowthTracker,
    latency: LatencyView,
    /// The parents shown (from the command line; `/` narrows further).
    filter: Filter,
    history: HashMap<ProcKey, VecDeque<u32>>,
    /// Verdicts from the last tick's diagnoses.
    verdicts: HashMap<ProcKey, &'static str>,
    seeded: bool,
    last_refresh_ns: Option<u64>,
}

impl TopView {
    /// A view of the parents `filter` lets through.
    pub fn new(mut state: TopState, filter: Filter) -> Self {
        state.scope = filter.describe();
        Self {
            alerts: AlertTracker::new(state.threshold),
            state,
            growth: GrowthTracker::default(),
            latency: LatencyView::new(GroupBy::Parent, filter.clone()),
            filter,
            history: HashMap::new(),
            verdicts: HashMap::new(),
            seeded: false,
            last_refresh_ns: None,
        }
    }

    /// A new view for a replay starting over, with the user's choices.
    pub fn restarted(self) -> Self {
        let mut state = self.state;
        state.clear_data();
        Self::new(state, self.filter)
    }

    /// Feeds one ledger change.
    pub fn on_change(&mut self, change: &Change) {
        self.alerts.on_change(change);
        self.latency.on_change(change);
    }

    /// After a batch: alerts into the log, and the rows rebuilt if the last
    /// rebuild is old enough. Returns whether the screen changed.
    pub fn after_batch(&mut self, ctx: &mut Context<'_>) -> bool {
        self.latency.place_reapers(ctx.host);
        let alerted = self.take_alerts(ctx);
        let due = self
            .last_refresh_ns
            .is_none_or(|last| ctx.now.boot_ns.saturating_sub(last) >= REFRESH_NS);
        let refreshed = due && self.refresh(ctx);
        alerted || refreshed
    }

    /// At a report tick: growth and sparkline samples, verdicts, then the
    /// screen rebuilt. Returns whether the screen changed.
    pub fn on_tick(&mut self, ctx: &mut Context<'_>) -> bool {
        self.take_alerts(ctx);
        self.growth.sample(ctx.ledger, ctx.now.boot_ns);
        self.history.retain(|key, _| ctx.ledger.get(key).is_some());
        for p in ctx.ledger.parents_with_zombies() {
            let series = self.history.entry(p.key).or_default();
            series.push_back(p.stats.pending);
            if series.len() > HISTORY_SAMPLES {
                series.pop_front();
            }
        }
        // Parents that released all their zombies go on at 0.
        for (key, series) in &mut self.history {
            if ctx.ledger.get(key).is_some_and(|p| p.stats.pending == 0) {
                series.push_back(0);
                if series.len() > HISTORY_SAMPLES {
                    series.pop_front();
                }
            }
        }
        self.history.retain(|_, s| s.iter().any(|&n| n > 0));
        if self.state.paused {
            return false;
        }
        let mut verdicts = HashMap::new();
        let rows = parent_rows(ctx.ledger, &self.filter, ctx.now.boot_ns, ctx.host);
        for row in rows.iter().take(DIAGNOSED_ROWS) {
            if let Some(d) = diagnose_traced(ctx, row.pid, Some(&self.growth)) {
                verdicts.insert(self.key_of(row.pid, row.start_ticks), d.verdict);
            }
        }
        self.verdicts = verdicts;
        self.refresh(ctx)
    }

    fn key_of(&self, pid: u32, start_ticks: u64) -> ProcKey {
        ProcKey { pid, start_ticks }
    }

    /// At the end: the screen as of the last moment.
    pub fn on_end(&mut self, ctx: &mut Context<'_>) -> bool {
        self.take_alerts(ctx);
        self.state.ended = true;
        let paused = std::mem::replace(&mut self.state.paused, false);
        self.refresh(ctx);
        self.state.paused = paused;
        true
    }

    fn take_alerts(&mut self, ctx: &mut Context<'_>) -> bool {
        if !self.seeded {
            self.alerts.seed(ctx.ledger);
            self.seeded = true;
        }
        if !self.alerts.has_due() {
            return false;
        }
        let alerts = self
            .alerts
            .take(ctx.ledger, &self.filter, ctx.now, ctx.host);
        for alert in &alerts {
            let why = diagnose_traced(ctx, alert.parent.pid, Some(&self.growth))
                .map(|d| format!(": {}", d.verdict.replace('_', " ")))
                .unwrap_or_default();
            self.state.alerts.push_back(AlertLine {
                time: clock_of(&alert.time),
                text: format!(
                    "pid {} ({}) reached {} pending (threshold {}){why}",
                    alert.parent.pid,
                    alert.parent.comm,
                    alert.parent.pending_zombies,
                    alert.threshold
                ),
            });
            if self.state.alerts.len() > ALERT_LOG {
                self.state.alerts.pop_front();
            }
        }
        !alerts.is_empty()
    }

    /// Rebuilds header, rows and detail from the context, unless paused.
    /// Returns whether it did.
    pub fn refresh(&mut self, ctx: &mut Context<'_>) -> bool {
        if self.state.paused {
            return false;
        }
        self.last_refresh_ns = Some(ctx.now.boot_ns);
        let rows = parent_rows(ctx.ledger, &self.filter, ctx.now.boot_ns, ctx.host);
        self.state.rows = rows
            .iter()
            .map(|r| {
                let key = self.key_of(r.pid, r.start_ticks);
                TopRow {
                    key,
                    comm: r.comm.clone(),
                    pending: r.pending_zombies,
                    oldest_ms: r.oldest_zombie_age_ms,
                    oldest_exact: r.oldest_zombie_age_exact,
                    forks: r.forks,
                    exits: r.exits,
                    reaped: r.reaped,
                    auto_reaped: r.auto_reaped,
                    growth_per_s: self.growth.rate_per_s(&key),
                    verdict: self.verdicts.get(&key).copied(),
                    history: self
                        .history
                        .get(&key)
                        .map(|s| s.iter().copied().collect())
                        .unwrap_or_default(),
                    place: r.where_text(),
                    names: [&r.cgroup, &r.unit, &r.container_id, &r.pod_uid]
                        .into_iter()
                        .flatten()
                        .cloned()
                        .collect(),
                }
            })
            .collect();
        let worst = rows.first().map(|r| r.pid);
        let pressure = ctx.host.pid_pressure(worst);
        let growth: f64 = self.state.rows.iter().filter_map(|r| r.growth_per_s).sum();
        let any_growth = self.state.rows.iter().any(|r| r.growth_per_s.is_some());
        let growth_per_s = any_growth.then_some(growth);
        self.state.header = TopHeader {
            time: timestamp(ctx.now.wall()),
            traced_ms: ctx.now.boot_ns.saturating_sub(ctx.started.boot_ns) / 1_000_000,
            pending: rows.iter().map(|r| u64::from(r.pending_zombies)).sum(),
            parents: rows.len(),
            tasks: pressure.tasks,
            pid_max: pressure.pid_max,
            threads_max: pressure.threads_max,
            cgroup: pressure.cgroup.as_ref().map(|c| (c.current, c.max)),
            growth_per_s,
            forecast: growth_per_s
                .filter(|&g| g > 0.05)
                .map(|g| (pressure.headroom as f64 / g, pressure.limit)),
            lost_events: ctx.health.lost.total(),
            complete: ctx.health.complete(),
        };
        self.state.at_ns = ctx.now.boot_ns.saturating_sub(ctx.started.boot_ns);
        self.state.fix_selection();
        self.refresh_detail(ctx);
        true
    }

    /// The selected parent's diagnosis and latency histogram, as of now
    /// (none unless the detail pane is open).
    pub fn refresh_detail(&mut self, ctx: &mut Context<'_>) {
        let Some(key) = self.state.selected.filter(|_| self.state.detail_open) else {
            self.state.detail = None;
            return;
        };
        let diagnosis = diagnose_traced(ctx, key.pid, Some(&self.growth));
        let latency = match self.latency.find(ReapKind::ParentWait, key.pid) {
            Some(group) => LatencySummary {
                count: group.latency.count(),
                p50_us: group.latency.percentile(0.5).map(|ns| ns / 1000),
                p99_us: group.latency.percentile(0.99).map(|ns| ns / 1000),
                max_us: group.latency.max_ns().map(|ns| ns / 1000),
                buckets: group.latency.log2_us_buckets(),
                exit_time_unknown: group.exit_time_unknown,
            },
            None => LatencySummary::default(),
        };
        self.state.detail = Some(Detail {
            key,
            diagnosis,
            latency,
        });
    }
}

/// `HH:MM:SS` of an RFC 3339 time.
fn clock_of(time: &str) -> String {
    time.get(11..19).unwrap_or(time).to_owned()
}

#[cfg(test)]
mod tests;
