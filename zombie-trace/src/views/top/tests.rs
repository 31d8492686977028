//! The screen from a real recording (`testdata/top-leak.zrec`, made by
//! `zombie-trace record --duration 9` while `never-waits 40`,
//! `handler-removed 3 4`, `steady-leaker 5` and `delayed-reaper 30 60` ran),
//! drawn on ratatui's test backend; and the keys' state machine.

use std::io;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;

use super::*;
use crate::engine::Consumer;
use crate::engine::replay::{ReplayOptions, replay};
use crate::recording::reader;
use crate::render::top::draw;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/top-leak.zrec");
/// The recording's parents (PIDs of the run that made it).
const NEVER_WAITS: u32 = 23106;
const HANDLER_REMOVED: u32 = 23160;
const STEADY_LEAKER: u32 = 23216;

struct Feed(TopView);

impl Consumer for Feed {
    fn on_change(&mut self, change: &Change) {
        self.0.on_change(change);
    }
    fn after_batch(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        self.0.after_batch(ctx);
        Ok(())
    }
    fn on_tick(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        self.0.on_tick(ctx);
        Ok(())
    }
    fn on_end(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        self.0.on_end(ctx);
        Ok(())
    }
}

/// The recording replayed into a view (threshold 20) until `at_s` seconds
/// after its start (the end if None), with `setup` applied to the state
/// first (selection, detail, filter).
fn recorded(at_s: Option<f64>, setup: impl FnOnce(&mut TopState)) -> TopState {
    recorded_through(Filter::default(), at_s, setup)
}

/// [`recorded`], showing only the parents `filter` lets through.
fn recorded_through(
    filter: Filter,
    at_s: Option<f64>,
    setup: impl FnOnce(&mut TopState),
) -> TopState {
    let opened = reader::open(std::path::Path::new(FIXTURE)).expect("the fixture opens");
    let mut state = TopState::new(20, false, None);
    setup(&mut state);
    let mut feed = Feed(TopView::new(state, filter));
    let options = ReplayOptions {
        report_interval: Some(std::time::Duration::from_secs(1)),
        stop_at_boot_ns: at_s.map(|s| opened.header.started.boot_ns + (s * 1e9) as u64),
    };
    let outcome = replay(&opened.header, opened.items(), options, &mut feed).expect("replays");
    assert!(outcome.events > 100, "{outcome:?}");
    feed.0.state
}

fn screen(state: &TopState, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|f| draw(f, state)).expect("draws");
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..height {
        let mut line = String::new();
        for x in 0..width {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn typed(state: &mut TopState, text: &str) {
    for c in text.chars() {
        on_key(state, key(KeyCode::Char(c)));
    }
}

/// The recording with `pid`'s row selected (by filtering to it during
/// the replay, then clearing the filter) and its detail open.
fn with_detail(pid: u32) -> TopState {
    let opened = reader::open(std::path::Path::new(FIXTURE)).expect("the fixture opens");
    let mut state = TopState::new(20, false, None);
    state.detail_open = true;
    state.filter = pid.to_string();
    let mut feed = Feed(TopView::new(state, Filter::default()));
    let options = ReplayOptions {
        report_interval: Some(std::time::Duration::from_secs(1)),
        stop_at_boot_ns: None,
    };
    replay(&opened.header, opened.items(), options, &mut feed).expect("replays");
    let mut state = feed.0.state;
    state.filter.clear();
    state
}

#[test]
fn the_main_screen_at_80x24() {
    let state = recorded(None, |_| {});
    let text = screen(&state, 80, 24);
    // The worst parent first, with its exact count; every leaker listed.
    let first_row = text
        .lines()
        .find(|l| l.starts_with('>'))
        .expect("a selected row");
    assert!(first_row.contains(&NEVER_WAITS.to_string()), "{text}");
    assert!(first_row.contains(" 40 "), "{text}");
    assert!(text.contains(&STEADY_LEAKER.to_string()), "{text}");
    assert!(text.contains(&HANDLER_REMOVED.to_string()), "{text}");
    assert!(text.contains("never waits"), "{text}");
    assert!(text.contains("handler removed"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn the_sparkline_shows_the_steady_leak_growing() {
    let state = recorded(None, |_| {});
    let row = state
        .rows
        .iter()
        .find(|r| r.key.pid == STEADY_LEAKER)
        .expect("steady-leaker owes reaps");
    assert!(row.history.len() >= 5, "{:?}", row.history);
    assert!(
        row.history.windows(2).all(|w| w[0] <= w[1]),
        "{:?}",
        row.history
    );
    assert!(
        row.growth_per_s.is_some_and(|g| (4.0..6.0).contains(&g)),
        "{row:?}"
    );
    let spark = crate::render::top::sparkline(&row.history, 12);
    assert_eq!(spark.chars().count(), 12);
    assert!(spark.ends_with('█'), "{spark}");
}

#[test]
fn the_detail_pane_explains_the_handler_removal() {
    let state = with_detail(HANDLER_REMOVED);
    let detail = state.detail.as_ref().expect("detail computed");
    let diagnosis = detail
        .diagnosis
        .as_ref()
        .expect("diagnosed from recorded facts");
    assert_eq!(diagnosis.verdict, "handler_removed");
    let text = screen(&state, 80, 24);
    assert!(text.contains("removed its SIGCHLD handler"), "{text}");
    assert!(text.contains("changed handler -> default by"), "{text}");
    insta::assert_snapshot!(text);
    // J scrolls the detail down to the remediation.
    let mut state = state;
    for _ in 0..3 {
        on_key(&mut state, key(KeyCode::Char('J')));
    }
    let text = screen(&state, 80, 24);
    assert!(text.contains("1. [works]"), "{text}");
    assert!(text.contains("64.0us .. 127.0us       2"), "{text}");
    insta::assert_snapshot!("handler_removal_scrolled", text);
    for _ in 0..3 {
        on_key(&mut state, key(KeyCode::Char('J')));
    }
    let text = screen(&state, 80, 24);
    assert!(text.contains("[won't work] kill -9 the zombies"), "{text}");
}

#[test]
fn the_detail_pane_at_120x40_with_sigchld_waits_adopter_and_remediation() {
    let state = with_detail(NEVER_WAITS);
    let text = screen(&state, 120, 40);
    assert!(text.contains("SIGCHLD: default"), "{text}");
    assert!(text.contains("wait calls: 0"), "{text}");
    assert!(text.contains("adopter if it exits"), "{text}");
    assert!(text.contains("reap latency (its own waits)"), "{text}");
    assert!(text.contains("[won't work]"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn a_reaping_parents_latency_histogram() {
    // delayed-reaper waits ~60 ms for each child: its histogram has them.
    let opened = reader::open(std::path::Path::new(FIXTURE)).expect("opens");
    let mut view = TopView::new(TopState::new(20, false, None), Filter::default());
    let options = ReplayOptions {
        report_interval: Some(std::time::Duration::from_secs(1)),
        stop_at_boot_ns: None,
    };
    struct Find(TopView, Option<LatencySummary>);
    impl Consumer for Find {
        fn on_change(&mut self, change: &Change) {
            self.0.on_change(change);
        }
        fn on_end(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
            let pid = ctx
                .ledger
                .processes()
                .find(|p| p.comm.as_str_lossy() == "delayed-reaper")
                .map(|p| p.key)
                .expect("delayed-reaper in the ledger");
            self.0.state.selected = Some(pid);
            self.0.state.detail_open = true;
            self.0.refresh_detail(ctx);
            self.1 = self.0.state.detail.as_ref().map(|d| d.latency.clone());
            Ok(())
        }
    }
    view.state.threshold = 20;
    let mut find = Find(view, None);
    replay(&opened.header, opened.items(), options, &mut find).expect("replays");
    let latency = find.1.expect("a latency summary");
    assert_eq!(latency.count, 30, "{latency:?}");
    assert!(
        latency
            .p50_us
            .is_some_and(|us| (60_000..200_000).contains(&us)),
        "{latency:?}"
    );
}

#[test]
fn the_alert_log_has_the_recorded_crossings() {
    let state = recorded(None, |_| {});
    let texts: Vec<&str> = state.alerts.iter().map(|a| a.text.as_str()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains(&format!("pid {NEVER_WAITS} (never-waits) reached 40"))),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains(&format!("pid {STEADY_LEAKER} (steady-leaker) reached 20"))),
        "{texts:?}"
    );
}

#[test]
fn mid_replay_with_the_replay_controls() {
    let mut state = recorded(Some(5.0), |s| {
        s.replay = Some(ReplayControl {
            playing: false,
            speed: 4.0,
            span_ns: Some(9_000_000_000),
            error: None,
        });
    });
    // Stopped there by the test, not at the recording's end.
    state.ended = false;
    let text = screen(&state, 80, 24);
    assert!(text.contains("replay paused 4x 4.5s/9.0s"), "{text}");
    assert!(text.contains("space play"), "{text}");
    insta::assert_snapshot!(text);
    on_key(&mut state, key(KeyCode::Char('?')));
    insta::assert_snapshot!("help_over_a_replay", screen(&state, 80, 24));
}

#[test]
fn smaller_screens_degrade() {
    let state = recorded(None, |s| s.detail_open = true);
    let medium = screen(&state, 64, 16);
    assert!(!medium.contains("TREND"), "{medium}");
    assert!(medium.contains("FORK/EXIT/REAP"), "{medium}");
    assert!(!medium.contains("alerts"), "{medium}");
    insta::assert_snapshot!("at_64x16", medium);
    let small = screen(&state, 50, 10);
    assert!(!small.contains("FORK/EXIT/REAP"), "{small}");
    assert!(small.contains(&NEVER_WAITS.to_string()), "{small}");
    insta::assert_snapshot!("at_50x10", small);
    let tiny = screen(&state, 30, 6);
    assert!(tiny.contains("is 30x6; it needs"), "{tiny}");
}

#[test]
fn no_colour_when_told() {
    let mut state = recorded(None, |_| {});
    let coloured = |state: &TopState| {
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
        terminal.draw(|f| draw(f, state)).expect("draws");
        terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
            .count()
    };
    assert_eq!(coloured(&state), 0);
    state.color = true;
    assert!(coloured(&state) > 0);
}

fn rows_state() -> TopState {
    recorded(None, |_| {})
}

#[test]
fn keys_move_the_selection_within_bounds() {
    let mut s = rows_state();
    let n = s.visible().len();
    assert!(n >= 3, "{n}");
    assert_eq!(s.selected_index(), Some(0));
    assert_eq!(on_key(&mut s, key(KeyCode::Up)), Action::Nothing);
    assert_eq!(s.selected_index(), Some(0));
    assert_eq!(on_key(&mut s, key(KeyCode::Char('j'))), Action::Select);
    assert_eq!(s.selected_index(), Some(1));
    on_key(&mut s, key(KeyCode::Down));
    assert_eq!(s.selected_index(), Some(2));
    on_key(&mut s, key(KeyCode::End));
    assert_eq!(s.selected_index(), Some(n - 1));
    assert_eq!(on_key(&mut s, key(KeyCode::Char('j'))), Action::Nothing);
    assert_eq!(s.selected_index(), Some(n - 1));
    on_key(&mut s, key(KeyCode::Char('k')));
    assert_eq!(s.selected_index(), Some(n - 2));
    on_key(&mut s, key(KeyCode::Home));
    assert_eq!(s.selected_index(), Some(0));
    // Nothing to select: nothing happens.
    let mut empty = TopState::default();
    assert_eq!(on_key(&mut empty, key(KeyCode::Down)), Action::Nothing);
    assert_eq!(empty.selected, None);
}

#[test]
fn slash_filters_by_where_a_parent_runs_in_the_forms_users_paste() {
    let mut s = rows_state();
    let uid = "7e0b1a52-93c4-4d1e-8f6a-2b9c0d3e4f51";
    let id = "4c1f09a2b7d3e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e";
    let row = s
        .rows
        .iter_mut()
        .find(|r| r.key.pid == STEADY_LEAKER)
        .expect("the steady leaker's row");
    row.place = format!("pod 7e0b1a52 containerd {}", &id[..12]);
    row.names = vec![
        format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{id}.scope",
            uid.replace('-', "_")
        ),
        format!("cri-containerd-{id}.scope"),
        id.to_owned(),
        uid.to_owned(),
    ];
    // The full dashed UID (as kubectl prints it), a container id prefix, a
    // slice of the cgroup path: each finds it, and only it.
    for filter in [uid, &id[..12], "kubepods-burstable.slice"] {
        on_key(&mut s, key(KeyCode::Char('/')));
        typed(&mut s, filter);
        on_key(&mut s, key(KeyCode::Enter));
        let pids: Vec<u32> = s.visible().iter().map(|r| r.key.pid).collect();
        assert_eq!(pids, vec![STEADY_LEAKER], "filter {filter}");
        on_key(&mut s, key(KeyCode::Char('/')));
        on_key(&mut s, key(KeyCode::Esc));
        assert_eq!(s.filter, "");
    }
}

#[test]
fn slash_filters_by_comm_or_pid() {
    let mut s = rows_state();
    assert_eq!(on_key(&mut s, key(KeyCode::Char('/'))), Action::Redraw);
    assert_eq!(s.mode, InputMode::Filter);
    typed(&mut s, "steady");
    assert_eq!(s.filter, "steady");
    let pids: Vec<u32> = s.visible().iter().map(|r| r.key.pid).collect();
    assert_eq!(pids, vec![STEADY_LEAKER]);
    // The selection follows the filter.
    assert_eq!(s.selected.map(|k| k.pid), Some(STEADY_LEAKER));
    // While typing, q and s are text, not commands.
    on_key(&mut s, key(KeyCode::Backspace));
    assert_eq!(s.filter, "stead");
    on_key(&mut s, key(KeyCode::Enter));
    assert_eq!(s.mode, InputMode::Normal);
    assert_eq!(s.filter, "stead");
    // A PID.
    on_key(&mut s, key(KeyCode::Char('/')));
    for _ in 0..5 {
        on_key(&mut s, key(KeyCode::Backspace));
    }
    typed(&mut s, &HANDLER_REMOVED.to_string());
    let pids: Vec<u32> = s.visible().iter().map(|r| r.key.pid).collect();
    assert_eq!(pids, vec![HANDLER_REMOVED]);
    // Esc while typing clears it; no match shows nothing selected.
    on_key(&mut s, key(KeyCode::Esc));
    assert_eq!(s.filter, "");
    assert_eq!(s.visible().len(), s.rows.len());
    on_key(&mut s, key(KeyCode::Char('/')));
    typed(&mut s, "no-such-comm");
    on_key(&mut s, key(KeyCode::Enter));
    assert!(s.visible().is_empty());
    assert_eq!(s.selected, None);
    assert!(screen(&s, 80, 24).contains("no parent matches the filter `no-such-comm`"));
    // Esc in normal mode clears a kept filter.
    assert_eq!(on_key(&mut s, key(KeyCode::Esc)), Action::Select);
    assert_eq!(s.filter, "");
}

#[test]
fn s_cycles_the_sort() {
    let mut s = rows_state();
    let order = |s: &TopState| s.visible().iter().map(|r| r.key.pid).collect::<Vec<_>>();
    assert_eq!(s.sort, SortKey::Pending);
    assert_eq!(order(&s)[0], NEVER_WAITS);
    on_key(&mut s, key(KeyCode::Char('s')));
    assert_eq!(s.sort, SortKey::Oldest);
    assert_eq!(order(&s)[0], NEVER_WAITS);
    on_key(&mut s, key(KeyCode::Char('s')));
    assert_eq!(s.sort, SortKey::Growth);
    assert_eq!(order(&s)[0], STEADY_LEAKER);
    on_key(&mut s, key(KeyCode::Char('s')));
    assert_eq!(s.sort, SortKey::Reaps);
    // handler-removed reaped 3 with its handler: last.
    assert_eq!(order(&s).last().copied(), Some(HANDLER_REMOVED));
    on_key(&mut s, key(KeyCode::Char('s')));
    assert_eq!(s.sort, SortKey::Pending);
    assert!(screen(&s, 80, 24).contains("by most pending"));
}

#[test]
fn pause_help_detail_and_quit() {
    let mut s = rows_state();
    assert_eq!(on_key(&mut s, key(KeyCode::Char('p'))), Action::Redraw);
    assert!(s.paused);
    assert!(screen(&s, 80, 24).contains("PAUSED"));
    on_key(&mut s, key(KeyCode::Char('p')));
    assert!(!s.paused);
    on_key(&mut s, key(KeyCode::Char('?')));
    assert!(s.help);
    assert!(screen(&s, 80, 24).contains("zombie-trace top: keys"));
    // Any key closes the help, and does nothing else.
    assert_eq!(on_key(&mut s, key(KeyCode::Char('s'))), Action::Redraw);
    assert!(!s.help);
    assert_eq!(s.sort, SortKey::Pending);
    assert_eq!(on_key(&mut s, key(KeyCode::Enter)), Action::Select);
    assert!(s.detail_open);
    assert_eq!(on_key(&mut s, key(KeyCode::Esc)), Action::Redraw);
    assert!(!s.detail_open);
    assert_eq!(on_key(&mut s, key(KeyCode::Char('q'))), Action::Quit);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(on_key(&mut s, ctrl_c), Action::Quit);
    // Ctrl-C quits even while typing a filter; q does not.
    on_key(&mut s, key(KeyCode::Char('/')));
    assert_eq!(on_key(&mut s, key(KeyCode::Char('q'))), Action::Select);
    assert_eq!(on_key(&mut s, ctrl_c), Action::Quit);
}

#[test]
fn replay_controls() {
    let mut s = TopState::new(100, false, Some(ReplayControl::default()));
    s.at_ns = 30_000_000_000;
    let playing = |s: &TopState| s.replay.as_ref().map(|r| r.playing);
    let speed = |s: &TopState| s.replay.as_ref().map_or(0.0, |r| r.speed);
    assert_eq!(playing(&s), Some(true));
    on_key(&mut s, key(KeyCode::Char(' ')));
    assert_eq!(playing(&s), Some(false));
    on_key(&mut s, key(KeyCode::Char('p')));
    assert_eq!(playing(&s), Some(true));
    // Live pause is not touched by a replay's p.
    assert!(!s.paused);
    assert_eq!(on_key(&mut s, key(KeyCode::Char('n'))), Action::Step);
    assert_eq!(playing(&s), Some(false));
    for _ in 0..10 {
        on_key(&mut s, key(KeyCode::Char('+')));
    }
    assert_eq!(speed(&s), MAX_SPEED);
    for _ in 0..20 {
        on_key(&mut s, key(KeyCode::Char('-')));
    }
    assert_eq!(speed(&s), MIN_SPEED);
    assert_eq!(
        on_key(&mut s, key(KeyCode::Char(']'))),
        Action::Seek(40_000_000_000)
    );
    assert_eq!(
        on_key(&mut s, key(KeyCode::Char('['))),
        Action::Seek(20_000_000_000)
    );
    s.at_ns = 3_000_000_000;
    assert_eq!(on_key(&mut s, key(KeyCode::Left)), Action::Seek(0));
    // g: type a time.
    on_key(&mut s, key(KeyCode::Char('g')));
    typed(&mut s, "1m30s");
    assert_eq!(s.mode, InputMode::Seek("1m30s".to_owned()));
    assert!(screen(&s, 80, 24).contains("jump to (offset, e.g. 90s): 1m30s"));
    assert_eq!(
        on_key(&mut s, key(KeyCode::Enter)),
        Action::Seek(90_000_000_000)
    );
    assert_eq!(s.mode, InputMode::Normal);
    on_key(&mut s, key(KeyCode::Char('g')));
    typed(&mut s, "soon");
    assert_eq!(on_key(&mut s, key(KeyCode::Enter)), Action::Redraw);
    let error = s.replay.as_ref().and_then(|r| r.error.clone());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("`soon` is not a time")),
        "{error:?}"
    );
    assert!(screen(&s, 80, 24).contains("`soon` is not a time"));
    // The next key clears it; Esc cancels typing.
    on_key(&mut s, key(KeyCode::Char('g')));
    assert!(s.replay.as_ref().is_some_and(|r| r.error.is_none()));
    assert_eq!(on_key(&mut s, key(KeyCode::Esc)), Action::Redraw);
    assert_eq!(s.mode, InputMode::Normal);
    assert_eq!(parse_offset("+2m"), Ok(120_000_000_000));
}

#[test]
fn a_command_line_filter_scopes_rows_totals_and_alerts_and_says_so() {
    let whole = recorded(None, |_| {});
    let filter = Filter {
        pid: Some(HANDLER_REMOVED),
        ..Filter::default()
    };
    let state = recorded_through(filter, None, |_| {});
    let pids: Vec<u32> = state.rows.iter().map(|r| r.key.pid).collect();
    assert_eq!(pids, [HANDLER_REMOVED]);
    let row = &state.rows[0];
    assert_eq!(state.header.pending, u64::from(row.pending));
    assert!(
        state.header.pending < whole.header.pending,
        "{:?}",
        whole.header
    );
    assert!(
        state
            .alerts
            .iter()
            .all(|a| a.text.contains(&format!("pid {HANDLER_REMOVED} "))),
        "{:?}",
        state.alerts
    );
    let text = screen(&state, 120, 24);
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.contains(&format!("only --pid {HANDLER_REMOVED}"))),
        "{text}"
    );
}
