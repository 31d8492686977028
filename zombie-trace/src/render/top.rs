//! Draws `zombie-trace top`'s screen from its model ([`TopState`]): a pure
//! function of the state and the frame's size, so that the same state
//! gives the same screen (the snapshot tests draw on a test backend).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};

use crate::host::pressure::Limit;
use crate::render::text::format_age;
use crate::views::diagnosis::Diagnosis;
use crate::views::top::{Detail, InputMode, SortKey, TopRow, TopState};

/// Smallest screen anything is drawn on.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 8;

/// Styles, or none of them when colour is off (NO_COLOR).
#[derive(Clone, Copy)]
struct Theme {
    color: bool,
}

impl Theme {
    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::default().fg(color)
        } else {
            Style::default()
        }
    }

    fn bold(self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }

    fn alarm(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }

    fn selected(self) -> Style {
        if self.color {
            Style::default().bg(Color::Blue).fg(Color::White)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        }
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, state: &TopState) {
    let theme = Theme { color: state.color };
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "zombie-trace top: the terminal is {}x{}; it needs at least {MIN_WIDTH}x{MIN_HEIGHT} (q quits)",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let show_detail = state.detail_open && area.height >= 14;
    // The detail needs the room more than the alert log, below 30 lines.
    let show_alerts = area.height >= 20 && (!show_detail || area.height >= 30);
    let header_height = if area.height >= 12 { 3 } else { 1 };
    let alerts_height = if show_alerts { 4 } else { 0 };
    let body = area.height - header_height - alerts_height - 1;
    let (table_height, detail_height) = if show_detail {
        let table = (body / 3).max(4);
        (table, body - table)
    } else {
        (body, 0)
    };
    let [header, table, detail, alerts, keys] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Length(table_height),
        Constraint::Length(detail_height),
        Constraint::Length(alerts_height),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, state, theme);
    draw_table(frame, table, state, theme);
    if show_detail {
        draw_detail(frame, detail, state, theme);
    }
    if show_alerts {
        draw_alerts(frame, alerts, state, theme);
    }
    draw_keys(frame, keys, state, theme);
    if state.help {
        draw_help(frame, area, state, theme);
    }
}

/// `[████░░░░]`-like bar of `used` out of `max`, `width` cells.
fn bar(used: u64, max: u64, width: usize) -> String {
    let filled = if max == 0 {
        0
    } else {
        ((u128::from(used) * width as u128).div_ceil(u128::from(max)) as usize).min(width)
    };
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

fn percent(used: u64, max: u64) -> f64 {
    if max == 0 {
        0.0
    } else {
        100.0 * used as f64 / max as f64
    }
}

/// Gauge segment spans: `label bar used/max`.
fn gauge(label: &str, used: u64, max: u64, width: usize, theme: Theme) -> Vec<Span<'static>> {
    let p = percent(used, max);
    let style = if p >= 90.0 {
        theme.alarm()
    } else if p >= 50.0 {
        theme.fg(Color::Yellow)
    } else {
        theme.fg(Color::Green)
    };
    vec![
        Span::styled(format!("{label} "), theme.dim()),
        Span::styled(bar(used, max, width), style),
        Span::raw(format!(" {used}/{max}")),
    ]
}

fn draw_header(frame: &mut Frame<'_>, area: Rect, state: &TopState, theme: Theme) {
    let h = &state.header;
    let mut first = vec![Span::styled("zombie-trace top", theme.title())];
    // The date too when there is room (a replay may be of another day).
    let clock = h.time.get(..19).map(|t| {
        if area.width >= 96 {
            t.replace('T', " ") + " UTC"
        } else {
            t.get(11..).unwrap_or(t).to_owned() + " UTC"
        }
    });
    match &state.replay {
        Some(replay) => {
            let at = format_age(state.at_ns / 1_000_000);
            let span = replay
                .span_ns
                .map(|s| format!("/{}", format_age(s / 1_000_000)))
                .unwrap_or_default();
            let play = if state.ended {
                "at the end"
            } else if replay.playing {
                "playing"
            } else {
                "paused"
            };
            first.push(Span::styled(
                format!("  replay {play} {}x {at}{span}", speed_text(replay.speed)),
                theme.fg(Color::Magenta),
            ));
            if let Some(clock) = clock {
                first.push(Span::raw(format!("  {clock}")));
            }
        }
        None => {
            first.push(Span::styled("  live", theme.fg(Color::Green)));
            if let Some(clock) = clock {
                first.push(Span::raw(format!("  {clock}")));
            }
            first.push(Span::raw(format!("  traced {}", format_age(h.traced_ms))));
        }
    }
    if let Some(scope) = &state.scope {
        first.push(Span::styled(
            format!("  only {scope}"),
            theme.fg(Color::Cyan),
        ));
    }
    let lost = format!("  lost events {}", h.lost_events);
    first.push(if h.lost_events > 0 {
        Span::styled(
            if h.complete {
                lost
            } else {
                lost + " (resync due)"
            },
            theme.alarm(),
        )
    } else {
        Span::raw(lost)
    });
    if state.paused {
        first.push(Span::styled("  PAUSED", theme.alarm()));
    }
    if area.height == 1 {
        first.push(Span::raw(format!("  {} pending", h.pending)));
        frame.render_widget(Paragraph::new(Line::from(first)), area);
        return;
    }
    let width = area.width as usize;
    // Three gauges share the line; each bar takes what the text leaves.
    let text_len =
        |label: &str, used: u64, max: u64| label.len() + 3 + format!("{used}/{max}").len();
    let mut segments: Vec<(&str, u64, u64)> = vec![("pid_max", h.tasks, u64::from(h.pid_max))];
    segments.push(("threads-max", h.tasks, u64::from(h.threads_max)));
    if let Some((current, max)) = h.cgroup {
        segments.push(("pids.max", current, max));
    }
    let fixed: usize = segments
        .iter()
        .map(|&(l, u, m)| text_len(l, u, m))
        .sum::<usize>()
        + 2 * (segments.len() - 1);
    let mut bar_width = width.saturating_sub(fixed) / segments.len();
    if bar_width < 3 {
        segments.truncate(1);
        bar_width = width
            .saturating_sub(text_len(segments[0].0, segments[0].1, segments[0].2))
            .clamp(3, 20);
    }
    let bar_width = bar_width.min(20);
    let mut second = Vec::new();
    for (i, &(label, used, max)) in segments.iter().enumerate() {
        if i > 0 {
            second.push(Span::raw("  "));
        }
        second.extend(gauge(label, used, max, bar_width, theme));
    }
    let mut third = vec![Span::raw(format!(
        "{} pending in {} parent{}",
        h.pending,
        h.parents,
        if h.parents == 1 { "" } else { "s" }
    ))];
    match h.growth_per_s {
        Some(g) => third.push(Span::styled(
            format!("  growth {g:+.1}/s"),
            if g > 0.05 {
                theme.fg(Color::Yellow)
            } else {
                Style::default()
            },
        )),
        None => third.push(Span::raw("  growth -")),
    }
    match h.forecast {
        Some((seconds, limit)) => third.push(Span::styled(
            format!(
                "  fork() fails in ~{} ({})",
                format_age((seconds * 1000.0).min(1e15) as u64),
                limit_name(limit)
            ),
            if seconds < 3600.0 {
                theme.alarm()
            } else {
                theme.fg(Color::Yellow)
            },
        )),
        None => third.push(Span::raw("  no exhaustion forecast")),
    }
    let lines = vec![Line::from(first), Line::from(second), Line::from(third)];
    frame.render_widget(Paragraph::new(lines), area);
}

fn limit_name(limit: Limit) -> &'static str {
    match limit {
        Limit::PidMax => "pid_max",
        Limit::ThreadsMax => "threads-max",
        Limit::CgroupPidsMax => "pids.max",
    }
}

fn speed_text(speed: f64) -> String {
    if speed >= 1.0 {
        format!("{speed:.0}")
    } else {
        format!("{speed}")
    }
}

/// Unicode sparkline of `samples` in `width` cells: one sample per cell,
/// or the largest of each group of samples when there are more.
pub fn sparkline(samples: &[u32], width: usize) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if width == 0 || samples.is_empty() {
        return String::new();
    }
    let cells: Vec<u32> = if samples.len() <= width {
        samples.to_vec()
    } else {
        let per = samples.len().div_ceil(width);
        samples
            .rchunks(per)
            .rev()
            .map(|c| c.iter().copied().max().unwrap_or(0))
            .collect()
    };
    let max = cells.iter().copied().max().unwrap_or(0);
    let mut out: String = cells
        .iter()
        .map(|&v| {
            if max == 0 || v == 0 {
                ' '
            } else {
                let level = (u64::from(v) * 7).div_ceil(u64::from(max)) as usize;
                LEVELS[level.min(7)]
            }
        })
        .collect();
    let pad = width.saturating_sub(out.chars().count());
    out.insert_str(0, &" ".repeat(pad));
    out
}

fn verdict_text(row: &TopRow) -> String {
    row.verdict
        .map_or_else(|| "-".to_owned(), |v| v.replace('_', " "))
}

fn draw_table(frame: &mut Frame<'_>, area: Rect, state: &TopState, theme: Theme) {
    let visible = state.visible();
    let wide = area.width >= 80;
    let medium = area.width >= 64;
    let placed = area.width >= 110;
    let spark_width = if wide { 10 } else { 0 };
    let mut header = vec!["PID", "COMM", "PEND"];
    let mut widths = vec![
        Constraint::Length(7),
        Constraint::Length(15),
        Constraint::Length(5),
    ];
    if wide {
        header.push("TREND");
        widths.push(Constraint::Length(spark_width as u16));
    }
    header.push("OLDEST");
    widths.push(Constraint::Length(6));
    if medium {
        header.push("FORK/EXIT/REAP");
        widths.push(Constraint::Length(14));
    }
    header.push("VERDICT");
    widths.push(Constraint::Min(8));
    if placed {
        header.push("WHERE");
        widths.push(Constraint::Length(30));
    }
    let rows: Vec<Row> = visible
        .iter()
        .map(|r| {
            let mut cells = vec![
                Cell::from(format!("{:>7}", r.key.pid)),
                Cell::from(r.comm.clone()),
                Cell::from(format!("{:>5}", r.pending)).style(theme.bold()),
            ];
            if wide {
                cells.push(
                    Cell::from(sparkline(&r.history, spark_width)).style(theme.fg(Color::Yellow)),
                );
            }
            cells.push(Cell::from(format!("{:>6}", r.oldest_text())));
            if medium {
                cells.push(Cell::from(format!(
                    "{}/{}/{}",
                    r.forks,
                    r.exits,
                    r.reaped + r.auto_reaped
                )));
            }
            let verdict = verdict_text(r);
            let style = if r.verdict.is_some_and(|v| v != "no_zombies") {
                theme.fg(Color::Red)
            } else {
                Style::default()
            };
            cells.push(Cell::from(verdict).style(style));
            if placed {
                cells.push(Cell::from(r.place.clone()));
            }
            Row::new(cells)
        })
        .collect();
    let order = match state.sort {
        SortKey::Pending => "most pending",
        SortKey::Oldest => "oldest zombie",
        SortKey::Growth => "fastest growth",
        SortKey::Reaps => "fewest reaps",
    };
    let mut title = format!(
        " parents owing reaps: {} of {}, by {order} ",
        visible.len(),
        state.rows.len()
    );
    if !state.filter.is_empty() {
        title.push_str(&format!("[filter: {}] ", state.filter));
    }
    let block = Block::default()
        .borders(Borders::TOP)
        .title(Span::styled(title, theme.title()));
    let empty = visible.is_empty();
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.bold().patch(theme.dim())))
        .block(block)
        .column_spacing(1)
        .row_highlight_style(theme.selected())
        .highlight_symbol(">");
    // Scrolled just enough to show the selected row.
    let room = usize::from(area.height.saturating_sub(2)).max(1);
    let offset = state
        .selected_index()
        .map_or(0, |i| (i + 1).saturating_sub(room));
    let mut table_state = TableState::default()
        .with_offset(offset)
        .with_selected(state.selected_index());
    frame.render_stateful_widget(table, area, &mut table_state);
    if empty && area.height >= 4 {
        let message = if state.rows.is_empty() {
            "no parent owes reaps".to_owned()
        } else {
            format!(
                "no parent matches the filter `{}` (Esc clears it)",
                state.filter
            )
        };
        let line = Rect {
            y: area.y + 2,
            height: 1,
            ..area
        };
        frame.render_widget(Paragraph::new(Span::styled(message, theme.dim())), line);
    }
}

/// The detail pane's lines for `detail`.
pub fn detail_lines(detail: &Detail, width: u16) -> Vec<Line<'static>> {
    let theme = Theme { color: false };
    detail_lines_themed(detail, width, theme)
}

fn detail_lines_themed(detail: &Detail, width: u16, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let Some(d) = &detail.diagnosis else {
        lines.push(Line::from(format!(
            "PID {}: no /proc facts for it (it exited, or the recording did not keep them)",
            detail.key.pid
        )));
        return lines;
    };
    lines.push(Line::from(Span::styled(d.summary.clone(), theme.bold())));
    lines.push(Line::from(sigchld_line(d)));
    if let Some(w) = &d.waits {
        lines.push(Line::from(format!(
            "wait calls: {} ({} reaped, {} for a specific child, {} for any, {} WNOHANG empty, {} ECHILD)",
            w.calls, w.reaped, w.specific, w.any, w.nohang_empty, w.echild
        )));
    }
    lines.push(Line::from(format!(
        "state: {} ({}){}, {} threads, parent PID {}",
        d.process.state,
        d.process.state_name,
        d.process
            .wchan
            .as_deref()
            .map(|w| format!(" in {w}"))
            .unwrap_or_default(),
        d.process.threads,
        d.process.ppid
    )));
    if let Some(place) = d.runs_in.as_ref().and_then(|a| a.describe()) {
        let inside = d
            .process
            .pid_in_namespace
            .map(|pid| format!(", as PID {pid} in its PID namespace"))
            .unwrap_or_default();
        lines.push(Line::from(format!("runs in {place}{inside}")));
    }
    if let Some(a) = &d.adopter {
        lines.push(Line::from(format!(
            "adopter if it exits: PID {} ({}): {}",
            a.pid, a.comm, a.why
        )));
    }
    match (&d.forecast, d.growth_per_s) {
        (Some(f), Some(rate)) => lines.push(Line::from(Span::styled(
            format!(
                "growing {rate:.1} zombies/s: {} reached in ~{}",
                f.limit.describe(),
                format_age((f.seconds * 1000.0).min(1e15) as u64)
            ),
            theme.alarm(),
        ))),
        (_, Some(rate)) => lines.push(Line::from(format!(
            "not growing ({rate:.1} zombies/s): no exhaustion forecast"
        ))),
        _ => lines.push(Line::from("growth: not measured yet")),
    }
    let l = &detail.latency;
    if l.count == 0 {
        lines.push(Line::from(format!(
            "reap latency (its own waits): no reap with a known exit time{}",
            if l.exit_time_unknown > 0 {
                format!(" ({} of zombies older than tracing)", l.exit_time_unknown)
            } else {
                String::new()
            }
        )));
    } else {
        lines.push(Line::from(Span::styled(
            "Reap latency (its own waits)",
            theme.title(),
        )));
        let us =
            |v: Option<u64>| v.map_or("-".to_owned(), |v| crate::render::text::format_us(v as f64));
        lines.push(Line::from(format!(
            "  {} reaps: p50 {}  p99 {}  max {}",
            l.count,
            us(l.p50_us),
            us(l.p99_us),
            us(l.max_us)
        )));
        let peak = l.buckets.iter().map(|b| b.count).max().unwrap_or(1).max(1);
        let bar_width = usize::from(width).saturating_sub(34).clamp(4, 30);
        for b in l.buckets.iter() {
            let n = (u128::from(b.count) * bar_width as u128).div_ceil(u128::from(peak)) as usize;
            lines.push(Line::from(vec![
                Span::raw(format!(
                    "  {:>8} .. {:<8} {:>6} ",
                    crate::render::text::format_us(b.low_us as f64),
                    crate::render::text::format_us(b.le_us as f64),
                    b.count
                )),
                Span::styled("█".repeat(n.min(bar_width)), theme.fg(Color::Cyan)),
            ]));
        }
    }
    lines.push(Line::from(Span::styled("What to do", theme.title())));
    for (i, step) in d.remediation.iter().enumerate() {
        let (mark, style) = if step.works {
            (
                "[works]",
                theme.fg(Color::Green).add_modifier(Modifier::BOLD),
            )
        } else if step.unverified {
            ("[unverified]", theme.fg(Color::Yellow))
        } else {
            ("[won't work]", theme.fg(Color::Red))
        };
        lines.push(Line::from(vec![
            Span::raw(format!("{}. ", i + 1)),
            Span::styled(mark, style),
            Span::raw(format!(" {} — {}", step.action, step.why)),
        ]));
    }
    lines
}

fn sigchld_line(d: &Diagnosis) -> String {
    let s = &d.sigchld;
    let source = if s.source == "traced" {
        "seen by the tracer"
    } else {
        "from /proc"
    };
    let mut line = format!("SIGCHLD: {} ({source})", s.action);
    if s.blocked {
        line.push_str(", blocked");
    }
    if s.nocldwait == Some(true) {
        line.push_str(", SA_NOCLDWAIT");
    }
    match &s.last_change {
        Some(c) => line.push_str(&format!(
            "; changed {} -> {} by {} at {} ({} ago)",
            c.from,
            c.to,
            c.cause,
            c.time.get(11..19).unwrap_or(&c.time),
            format_age(c.ago_ms)
        )),
        None => line.push_str("; no change seen"),
    }
    line
}

fn draw_detail(frame: &mut Frame<'_>, area: Rect, state: &TopState, theme: Theme) {
    let title = match state.selected_row() {
        Some(r) => format!(" PID {} ({}): why, and what to do ", r.key.pid, r.comm),
        None => " detail ".to_owned(),
    };
    let block = Block::default()
        .borders(Borders::TOP)
        .title(Span::styled(title, theme.title()));
    let lines = match &state.detail {
        Some(detail) if state.selected.is_some_and(|k| k == detail.key) => {
            detail_lines_themed(detail, area.width, theme)
        }
        _ => vec![Line::from("select a parent (↑/↓) to see its diagnosis")],
    };
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((state.detail_scroll, 0)),
        area,
    );
}

fn draw_alerts(frame: &mut Frame<'_>, area: Rect, state: &TopState, theme: Theme) {
    let block = Block::default().borders(Borders::TOP).title(Span::styled(
        format!(" alerts (threshold {}) ", state.threshold),
        theme.title(),
    ));
    let room = usize::from(area.height.saturating_sub(1));
    let lines: Vec<Line> = if state.alerts.is_empty() {
        vec![Line::from(Span::styled("none yet", theme.dim()))]
    } else {
        state
            .alerts
            .iter()
            .rev()
            .take(room)
            .map(|a| {
                Line::from(vec![
                    Span::styled(format!("{} ", a.time), theme.dim()),
                    Span::styled("ALERT ", theme.alarm()),
                    Span::raw(a.text.clone()),
                ])
            })
            .collect()
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_keys(frame: &mut Frame<'_>, area: Rect, state: &TopState, theme: Theme) {
    let key = |k: &str| Span::styled(k.to_owned(), theme.bold().patch(theme.fg(Color::Cyan)));
    let text = |t: &str| Span::raw(t.to_owned());
    let line = match &state.mode {
        InputMode::Filter => Line::from(vec![
            text("filter (comm or pid): "),
            Span::styled(format!("{}█", state.filter), theme.bold()),
            text("  Enter keeps it, Esc clears it"),
        ]),
        InputMode::Seek(typed) => Line::from(vec![
            text("jump to (offset, e.g. 90s): "),
            Span::styled(format!("{typed}█"), theme.bold()),
            text("  Enter goes, Esc cancels"),
        ]),
        InputMode::Normal => {
            if let Some(error) = state.replay.as_ref().and_then(|r| r.error.as_ref()) {
                Line::from(Span::styled(error.clone(), theme.alarm()))
            } else {
                let mut spans = Vec::new();
                if state.replay.is_some() {
                    spans.extend([
                        key("↑↓/jk Enter / s ? q"),
                        text("  "),
                        key("space"),
                        text(" play "),
                        key("n"),
                        text(" step "),
                        key("[ ]"),
                        text(" ±10s "),
                        key("g"),
                        text(" jump "),
                        key("+ -"),
                        text(" speed"),
                    ]);
                } else {
                    spans.extend([
                        key("↑↓/jk"),
                        text(" select "),
                        key("Enter"),
                        text(" detail "),
                        key("/"),
                        text(" filter "),
                        key("s"),
                        text(" sort "),
                        key("p"),
                        text(" pause "),
                        key("?"),
                        text(" help "),
                        key("q"),
                        text(" quit"),
                    ]);
                }
                Line::from(spans)
            }
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_help(frame: &mut Frame<'_>, area: Rect, state: &TopState, theme: Theme) {
    let mut lines = vec![
        Line::from(Span::styled("zombie-trace top: keys", theme.title())),
        Line::from("↑ ↓ j k PgUp PgDn Home End  select a parent"),
        Line::from("Enter or d   open/close its detail: why it leaks, latency, what to do"),
        Line::from("J K          scroll the detail"),
        Line::from("/            filter by command name or PID (Enter keeps, Esc clears)"),
        Line::from("s            sort: pending → oldest → growth → reaps"),
    ];
    if state.replay.is_some() {
        lines.extend([
            Line::from("space or p   play / pause the replay"),
            Line::from("n or .       step to the next tick (pauses)"),
            Line::from("[ ] ← →      jump 10 s back / forward"),
            Line::from("g            jump to a time (offset from the start: 90s, 2m)"),
            Line::from("+ -          faster / slower (0.25x to 64x)"),
        ]);
    } else {
        lines.push(Line::from(
            "p or space   pause the screen (tracing goes on)",
        ));
    }
    lines.extend([
        Line::from("q, Ctrl-C    quit"),
        Line::from(""),
        Line::from(format!(
            "Alerts fire when a parent reaches {} pending zombies. Verdicts and",
            state.threshold
        )),
        Line::from("the detail are `zombie-trace explain`'s diagnosis. Any key closes this."),
    ]);
    let width = area.width.min(76);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::default().borders(Borders::ALL).title(" help "))
            .wrap(Wrap { trim: false }),
        popup,
    );
}
