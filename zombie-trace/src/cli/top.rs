//! `zombie-trace top`: one screen, like `top`, live (root) or over a
//! recording (`--replay FILE`, no privileges). The screen's model, its key
//! handling and its drawing are pure ([`zombie_trace::views::top`],
//! [`zombie_trace::render::top`]); this file owns the terminal (raw mode,
//! the alternate screen, key events), restores it whatever happens (normal
//! exit, error, panic, SIGTERM/SIGHUP), and drives the engine: the live
//! session, or a replay whose clock the user controls.

use std::cell::Cell;
use std::io::{self, IsTerminal as _, Stdout};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use tokio::sync::Notify;
use zombie_trace::engine::live::stop_on_signals;
use zombie_trace::engine::replay::{ReplayOptions, replay};
use zombie_trace::engine::{Answer, Consumer, Context, Query};
use zombie_trace::model::{Change, Moment};
use zombie_trace::recording::reader::{self, Item};
use zombie_trace::recording::records::Input;
use zombie_trace::render::top::draw;
use zombie_trace::views::top::{
    Action, MAX_SPEED, MIN_SPEED, ReplayControl, TopState, TopView, on_key,
};

use super::watch::WatchFlags;
use super::{EXIT_USAGE, FilterArgs, TraceArgs, replayed_filter, traced};

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Browse a recording (from `zombie-trace record` or `watch --record`)
    /// instead of tracing live; needs no privileges.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// Replay speed: recorded seconds per second (0.25 to 64; `+`/`-` change it).
    #[arg(long, default_value_t = 1.0, requires = "replay")]
    speed: f64,
    /// `--interval`: seconds between samples of the sparklines and verdicts;
    /// `--threshold`: the alert log's threshold.
    #[command(flatten)]
    flags: WatchFlags,
    #[command(flatten)]
    trace: TraceArgs,
    /// The parents shown (`/` narrows the screen further); with --replay,
    /// by default those the recording was made for.
    #[command(flatten)]
    filter: FilterArgs,
    /// With --replay: every parent, not only those the recording was made
    /// for.
    #[arg(long, requires = "replay")]
    all: bool,
}

/// Exits 2 with one line: this cannot be used.
fn usage(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("zombie-trace: {message}");
    Ok(ExitCode::from(EXIT_USAGE))
}

/// Whether top can draw: stdin and stdout are a terminal.
fn no_terminal() -> Option<ExitCode> {
    if io::stdout().is_terminal() && io::stdin().is_terminal() {
        return None;
    }
    eprintln!(
        "zombie-trace: top draws a full-screen view and needs a terminal, but its input or output is not a TTY: run it in an interactive terminal (ssh -t), or use `zombie-trace watch` (or `report` for a recording) for plain text"
    );
    Some(ExitCode::from(EXIT_USAGE))
}

pub fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    match args.replay.clone() {
        Some(path) => replay_top(args, path, color),
        None => match no_terminal() {
            Some(code) => Ok(code),
            None => traced("top", live_top(args, color)),
        },
    }
}

/// Puts the terminal back as it was: cooked mode, the normal screen, the
/// cursor. Safe to call more than once.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
}

/// The terminal in raw mode on the alternate screen; restored when
/// dropped (also on an error's way out), and by the panic hook.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> anyhow::Result<Self> {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            hook(info);
        }));
        enable_raw_mode().context("switching the terminal to raw mode")?;
        let screen = execute!(io::stdout(), EnterAlternateScreen)
            .context("switching to the alternate screen")
            .and_then(|()| {
                Terminal::new(CrosstermBackend::new(io::stdout())).context("opening the terminal")
            });
        match screen {
            Ok(terminal) => Ok(Self { terminal }),
            Err(err) => {
                restore_terminal();
                Err(err)
            }
        }
    }

    fn draw(&mut self, state: &TopState) -> io::Result<()> {
        self.terminal.draw(|frame| draw(frame, state)).map(drop)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Live: the session's consumer. Keys come from a thread reading the
/// terminal, each announced to the session as a [`Query`] so that it is
/// handled with the ledger as it stands (a newly selected parent's
/// diagnosis needs it).
struct LiveTop {
    view: TopView,
    screen: Screen,
    keys: std::sync::mpsc::Receiver<Event>,
    quit: Arc<Notify>,
    quitting: bool,
}

impl LiveTop {
    fn draw(&mut self) -> io::Result<()> {
        if self.quitting {
            return Ok(());
        }
        self.screen.draw(&self.view.state)
    }
}

impl Consumer for LiveTop {
    fn on_change(&mut self, change: &Change) {
        self.view.on_change(change);
    }

    fn after_batch(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        if self.view.after_batch(ctx) {
            self.draw()?;
        }
        Ok(())
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        self.view.on_tick(ctx);
        self.draw()
    }

    fn on_query(&mut self, ctx: &mut Context<'_>, _query: &Query) -> Answer {
        let mut redraw = false;
        while let Ok(event) = self.keys.try_recv() {
            let Event::Key(key) = event else {
                // A resize (or focus, paste): draw again at the new size.
                redraw = true;
                continue;
            };
            match on_key(&mut self.view.state, key) {
                Action::Nothing => {}
                Action::Quit => {
                    self.quitting = true;
                    self.quit.notify_one();
                }
                Action::Select => {
                    self.view.refresh_detail(ctx);
                    redraw = true;
                }
                Action::Redraw | Action::Seek(_) | Action::Step => {
                    self.view.refresh(ctx);
                    redraw = true;
                }
            }
        }
        if redraw && let Err(err) = self.draw() {
            log::warn!("drawing the screen: {err}");
        }
        Answer {
            status: 204,
            content_type: "text/plain; charset=utf-8",
            body: String::new(),
        }
    }
}

/// Reads the terminal's events, hands each to `keys` and wakes the session.
fn read_keys(keys: std::sync::mpsc::Sender<Event>, wake: tokio::sync::mpsc::Sender<Query>) {
    while let Ok(event) = event::read() {
        if keys.send(event).is_err() {
            return;
        }
        let (reply, _) = tokio::sync::oneshot::channel();
        let query = Query {
            path: "/top/keys".to_owned(),
            accept: String::new(),
            reply,
        };
        if wake.blocking_send(query).is_err() {
            return;
        }
    }
}

async fn live_top(args: TopArgs, color: bool) -> anyhow::Result<ExitCode> {
    // Attach before taking the screen: a failure prints as usual.
    let mut session = args.trace.start_session()?;
    let state = TopState::new(args.flags.threshold, color, None);
    let screen = Screen::enter()?;
    let (keys_in, keys) = std::sync::mpsc::channel();
    let (wake, mut woken) = tokio::sync::mpsc::channel::<Query>(16);
    std::thread::spawn(move || read_keys(keys_in, wake));
    let quit = Arc::new(Notify::new());
    let mut top = LiveTop {
        view: TopView::new(state, args.filter.filter()),
        screen,
        keys,
        quit: quit.clone(),
        quitting: false,
    };
    let stop = stop_on_signals(args.trace.duration(), async move {
        quit.notified().await;
    })?;
    let result = session
        .run_until_stop(
            &mut top,
            stop,
            Some(args.flags.interval()),
            Some(&mut woken),
        )
        .await;
    top.quitting = true;
    drop(top);
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Set by SIGTERM, SIGHUP or SIGINT during a replay.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn catch_stop_signals() {
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            libc::signal(sig, on_stop_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Replay: the consumer that paces the recording to the user's clock. It
/// waits at each report tick until the playback clock reaches it, handling
/// keys meanwhile; a jump back starts the replay over (the ledger only goes
/// forward) and runs through to the target without drawing.
struct ReplayTop {
    view: TopView,
    screen: Screen,
    /// Set to stop the replay's input (quit, or a jump back).
    restart: Rc<Cell<bool>>,
    quit: bool,
    /// The playback clock: offset from the recording's start.
    position_ns: u64,
    /// Run through to this offset without waiting or drawing.
    seek: Option<u64>,
    stepping: bool,
    failed: Option<io::Error>,
}

impl ReplayTop {
    fn offset(ctx: &Context<'_>) -> u64 {
        ctx.now.boot_ns.saturating_sub(ctx.started.boot_ns)
    }

    /// At the data of offset `t`: shows it once the playback clock is
    /// there, handling keys until then (forever at the end: `until` None).
    fn pace(&mut self, ctx: &mut Context<'_>, until: Option<u64>) -> io::Result<()> {
        let t = Self::offset(ctx);
        if let Some(target) = self.seek {
            if until.is_some() && t < target {
                return Ok(());
            }
            self.seek = None;
            self.position_ns = t;
        }
        if self.stepping {
            self.stepping = false;
            self.position_ns = t;
        }
        let mut last = Instant::now();
        loop {
            if STOP.load(Ordering::Relaxed) {
                self.stop();
                return Ok(());
            }
            let now = Instant::now();
            let (playing, speed) = self
                .view
                .state
                .replay
                .as_ref()
                .map_or((false, 1.0), |r| (r.playing, r.speed));
            if playing {
                let ns = now.duration_since(last).as_nanos() as f64 * speed;
                self.position_ns = self.position_ns.saturating_add(ns as u64);
            }
            last = now;
            if let Some(t) = until
                && playing
                && self.position_ns >= t
            {
                return Ok(());
            }
            self.screen.draw(&self.view.state)?;
            if !event::poll(Duration::from_millis(50))? {
                continue;
            }
            let Event::Key(key) = event::read()? else {
                continue;
            };
            match on_key(&mut self.view.state, key) {
                Action::Nothing | Action::Redraw => {}
                Action::Select => self.view.refresh_detail(ctx),
                Action::Quit => {
                    self.stop();
                    return Ok(());
                }
                Action::Step if until.is_some() => {
                    self.stepping = true;
                    return Ok(());
                }
                Action::Step => {}
                Action::Seek(target) if target < t => {
                    // The ledger only goes forward: start over.
                    self.seek = Some(target);
                    self.restart.set(true);
                    return Ok(());
                }
                Action::Seek(target) if until.is_some() => {
                    self.seek = Some(target);
                    return Ok(());
                }
                Action::Seek(_) => {}
            }
        }
    }

    fn stop(&mut self) {
        self.quit = true;
        self.restart.set(true);
    }

    fn keep(&mut self, result: io::Result<()>) -> io::Result<()> {
        if let Err(err) = result {
            // Stop the replay; the error is reported once the screen is gone.
            self.stop();
            self.failed = Some(io::Error::new(err.kind(), err.to_string()));
            return Err(err);
        }
        Ok(())
    }
}

impl Consumer for ReplayTop {
    fn on_change(&mut self, change: &Change) {
        self.view.on_change(change);
    }

    fn after_batch(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        if !self.restart.get() {
            self.view.after_batch(ctx);
        }
        Ok(())
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        if self.restart.get() {
            return Ok(());
        }
        self.view.on_tick(ctx);
        let t = Self::offset(ctx);
        let paced = self.pace(ctx, Some(t));
        self.keep(paced)
    }

    fn on_end(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
        if self.restart.get() {
            return Ok(());
        }
        self.view.on_end(ctx);
        let paced = self.pace(ctx, None);
        self.keep(paced)
    }
}

/// Where the recording's session starts (its seed) and how long it runs.
fn span_of(items: impl Iterator<Item = Item>) -> Option<(Moment, u64)> {
    let mut start: Option<Moment> = None;
    let mut last = 0;
    for item in items {
        let Item::Input(input) = item else { continue };
        let now = match input {
            Input::Seed { now, .. } => {
                start.get_or_insert(now);
                now
            }
            Input::Batch(now) => now,
            Input::Resync { now, .. } => now,
            Input::Tick(tick) => tick.now,
            Input::End(end) => end.now,
            _ => continue,
        };
        last = last.max(now.boot_ns);
    }
    start.map(|s| (s, last.saturating_sub(s.boot_ns)))
}

fn replay_top(args: TopArgs, path: PathBuf, color: bool) -> anyhow::Result<ExitCode> {
    let opened = match reader::open(&path) {
        Ok(opened) => opened,
        Err(err) if err.is_usage() => return usage(err),
        Err(err) => return Err(err.into()),
    };
    let Some((_, span_ns)) = span_of(opened.items()) else {
        return usage(format!(
            "{}: the recording holds no session (no /proc scan to start from): record one with `zombie-trace record -o FILE`",
            path.display()
        ));
    };
    if let Some(code) = no_terminal() {
        return Ok(code);
    }
    let filter = match replayed_filter(&args.filter, args.all, &opened.header) {
        Ok(filter) => filter,
        Err(message) => return usage(message),
    };
    let control = ReplayControl {
        speed: args.speed.clamp(MIN_SPEED, MAX_SPEED),
        span_ns: Some(span_ns),
        ..ReplayControl::default()
    };
    let options = ReplayOptions {
        report_interval: Some(args.flags.interval()),
        stop_at_boot_ns: None,
    };
    catch_stop_signals();
    let mut top = ReplayTop {
        view: TopView::new(
            TopState::new(args.flags.threshold, color, Some(control)),
            filter,
        ),
        screen: Screen::enter()?,
        restart: Rc::new(Cell::new(false)),
        quit: false,
        position_ns: 0,
        seek: None,
        stepping: false,
        failed: None,
    };
    loop {
        let restart = top.restart.clone();
        let items = opened.items().take_while(move |_| !restart.get());
        let result = replay(&opened.header, items, options, &mut top);
        if let Some(err) = top.failed.take() {
            drop(top);
            return Err(err).context("drawing the screen");
        }
        result?;
        if top.quit || !top.restart.get() {
            break;
        }
        top.view = std::mem::replace(
            &mut top.view,
            TopView::new(TopState::default(), Default::default()),
        )
        .restarted();
        top.restart.set(false);
        top.position_ns = 0;
    }
    drop(top);
    for note in opened.notes() {
        eprintln!("zombie-trace: {}: {note}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
