//! The incident report as one self-contained HTML page: inline CSS and
//! inline SVG, no JavaScript, nothing fetched. It can be attached to a
//! ticket, mailed, printed or opened offline years later and look the same.
//!
//! Written for incident reviewers who never ran the tool: the page opens with
//! the story (which parent leaked, since when, how fast, why, what fired,
//! how close the host came to running out of PIDs, and whether the recording
//! is complete), then the plots that show it, then the details.
//!
//! The plots are hand-written SVG, not drawn by a plotting crate: they need
//! only polylines, lines, rects and text; plotting crates bring large
//! dependency trees (font rasterisers, image codecs) for features unused
//! here; and by hand we control what matters: min/max downsampling so no
//! peak disappears, the same time axis and markers on every plot, escaping
//! of hostile process names, and the size of the file.

use std::cmp::Ordering;
use std::fmt::{self, Display, Write as _};

use crate::views::timeline::{
    CgroupPoint, LatencyHistogram, Marker, MarkerKind, Moment, RemediationStep, Timeline,
    TimelineParent,
};

/// Writes into a `String`, whose `fmt::Write` never fails: there is no error
/// to handle, so it is dropped here once instead of at every call.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// Parents drawn in the pending-zombies plot; more lines are unreadable. The
/// table lists them all.
pub const MAX_PLOTTED: usize = 8;
/// Markers listed in the markers table; the plots show all of them.
const MAX_MARKER_ROWS: usize = 1000;
/// Data gaps shaded in the plots (a broken recording could have thousands).
const MAX_HOLES: usize = 200;

// Geometry of the plots, in SVG user units. Both plots share the horizontal
// layout so that their time axes line up exactly.
const WIDTH: f64 = 1200.0;
const LEFT: f64 = 96.0;
/// Room for the labels at the right end of each line.
const RIGHT: f64 = 196.0;
const LANE: f64 = 18.0;
const PLOT1_HEIGHT: f64 = 300.0;
const PLOT2_HEIGHT: f64 = 200.0;
const AXIS_ROOM: f64 = 44.0;
/// Markers of one kind closer than this (in units) are drawn as one.
const MARKER_MERGE: f64 = 5.0;
/// Markers of one kind drawn as lines through the plots, at most.
const MAX_MARKER_LINES: usize = 24;

/// Okabe–Ito colours (distinguishable with the common colour-vision
/// deficiencies), yellow left out as unreadable on white; the last four are
/// also dashed, so that lines stay apart in greyscale print.
const PALETTE: [(&str, &str); MAX_PLOTTED] = [
    ("#D55E00", ""),
    ("#0072B2", ""),
    ("#009E73", ""),
    ("#CC79A7", ""),
    ("#E69F00", "7 3"),
    ("#56B4E9", "7 3"),
    ("#000000", "7 3"),
    ("#882255", "2 2"),
];
const TOTAL_COLOR: &str = "#8a8a8a";
const LIMIT_COLOR: &str = "#B2182B";

/// Kinds of markers, in the order of their lanes (top to bottom).
const KINDS: [MarkerKind; 5] = [
    MarkerKind::SigchldChange,
    MarkerKind::Alert,
    MarkerKind::EventsLost,
    MarkerKind::Resync,
    MarkerKind::Gap,
];

fn kind_class(k: MarkerKind) -> &'static str {
    match k {
        MarkerKind::Alert => "alert",
        MarkerKind::SigchldChange => "sigchld_change",
        MarkerKind::EventsLost => "events_lost",
        MarkerKind::Resync => "resync",
        MarkerKind::Gap => "gap",
    }
}

fn kind_label(k: MarkerKind) -> &'static str {
    match k {
        MarkerKind::Alert => "alert",
        MarkerKind::SigchldChange => "SIGCHLD change",
        MarkerKind::EventsLost => "events lost",
        MarkerKind::Resync => "resync",
        MarkerKind::Gap => "gap in recording",
    }
}

/// The name of a marker lane: short, it has to fit left of the plot.
fn lane_label(k: MarkerKind) -> &'static str {
    match k {
        MarkerKind::Alert => "alerts",
        MarkerKind::SigchldChange => "SIGCHLD",
        MarkerKind::EventsLost => "events lost",
        MarkerKind::Resync => "resyncs",
        MarkerKind::Gap => "gaps",
    }
}

fn kind_color(k: MarkerKind) -> &'static str {
    match k {
        MarkerKind::Alert => "#A50026",
        MarkerKind::SigchldChange => "#5E3C99",
        MarkerKind::EventsLost => "#8C510A",
        MarkerKind::Resync => "#4D4D4D",
        MarkerKind::Gap => "#4D4D4D",
    }
}

/// A small symbol per kind, centred on (x, y), so that kinds differ by shape
/// as well as colour.
fn kind_symbol(out: &mut String, k: MarkerKind, x: f64, y: f64) {
    let c = kind_color(k);
    match k {
        MarkerKind::Alert => w!(
            out,
            r#"<path d="M{:.1} {:.1}l5 9h-10z" fill="{c}"/>"#,
            x,
            y - 5.0
        ),
        MarkerKind::SigchldChange => w!(
            out,
            r#"<path d="M{:.1} {:.1}l5 5l-5 5l-5-5z" fill="{c}"/>"#,
            x,
            y - 5.0
        ),
        MarkerKind::EventsLost => w!(
            out,
            r#"<path d="M{:.1} {:.1}l8 8m0-8l-8 8" stroke="{c}" stroke-width="2.5"/>"#,
            x - 4.0,
            y - 4.0
        ),
        MarkerKind::Resync => w!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="none" stroke="{c}" stroke-width="2"/>"#,
            x,
            y
        ),
        MarkerKind::Gap => w!(
            out,
            r#"<rect x="{:.1}" y="{:.1}" width="6" height="10" fill="{c}"/>"#,
            x - 3.0,
            y - 5.0
        ),
    }
}

/// The report page for a timeline.
pub fn render(t: &Timeline) -> String {
    let ctx = Context::new(t);
    // It grows as needed: ~200 KB for the 3-day incident of the tests, ~1 MB
    // for 100,000 samples of 8 parents.
    let mut out = String::with_capacity(64 * 1024);
    head(&mut out, t, &ctx);
    integrity_box(&mut out, t, &ctx);
    headline(&mut out, t, &ctx);
    zombie_plot(&mut out, t, &ctx);
    pressure_plot(&mut out, t, &ctx);
    parents_table(&mut out, t, &ctx);
    zombie_lifetimes(&mut out, t);
    latency_section(&mut out, t);
    markers_table(&mut out, t);
    out.push_str(
        "<footer>Times are UTC. The plots place samples and markers by the kernel's boot \
         clock (which never jumps) and label the axis with the wall clock at the start of \
         the recording. Generated by zombie-trace.</footer>\n</main>\n</body>\n</html>\n",
    );
    out
}

// ---------------------------------------------------------------------------
// Escaping and formatting

/// Text escaped for HTML content and attribute values alike. Control
/// characters (possible in a process name) are shown as `\xNN`: raw, they
/// would be invisible or a parse error.
struct Esc<'a>(&'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let mut from = 0;
        for (i, c) in s.char_indices() {
            let with = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                c if c.is_control() && c != '\n' && c != '\t' => "",
                _ => continue,
            };
            f.write_str(&s[from..i])?;
            if with.is_empty() {
                write!(f, "\\x{:02x}", u32::from(c))?;
            } else {
                f.write_str(with)?;
            }
            from = i + c.len_utf8();
        }
        f.write_str(&s[from..])
    }
}

/// At most `max` characters of `s`, with an ellipsis if cut.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// `28147` → `28,147`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `v` with `digits` significant digits, trailing zeros dropped; whole
/// numbers from 1000 up are grouped instead.
fn sig(v: f64, digits: i32) -> String {
    if !v.is_finite() {
        return "?".to_string();
    }
    if v.abs() >= 1000.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        return format!("{sign}{}", group(v.abs().round() as u64));
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn percent(ratio: f64) -> String {
    let p = ratio * 100.0;
    if p < 1.0 {
        format!("{p:.2} %")
    } else {
        format!("{p:.1} %")
    }
}

/// A duration for people: `850 ms`, `42 s`, `15 min 30 s`, `3 h 5 min`, `3 d 2 h`.
fn duration_ns(ns: u64) -> String {
    const S: u64 = 1_000_000_000;
    let secs = ns / S;
    if ns < S {
        return format!("{} ms", sig(ns as f64 / 1e6, 3));
    }
    if secs < 60 {
        return format!("{} s", sig(ns as f64 / S as f64, 3));
    }
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let pair = |a: u64, ua: &str, b: u64, ub: &str| {
        if b == 0 {
            format!("{a} {ua}")
        } else {
            format!("{a} {ua} {b} {ub}")
        }
    };
    if secs < 3600 {
        pair(m, "min", s, "s")
    } else if secs < 86_400 {
        pair(h, "h", m, "min")
    } else {
        pair(d, "d", h, "h")
    }
}

/// Microseconds for people, with `digits` significant digits.
fn duration_us(us: f64, digits: i32) -> String {
    if us < 1000.0 {
        format!("{} µs", sig(us, digits))
    } else if us < 1e6 {
        format!("{} ms", sig(us / 1e3, digits))
    } else if us < 60e6 {
        format!("{} s", sig(us / 1e6, digits))
    } else {
        duration_ns((us * 1e3) as u64)
    }
}

/// A growth rate in the unit that makes it a number people can picture.
fn rate(per_s: f64) -> String {
    if !per_s.is_finite() {
        return "unknown".to_string();
    }
    if per_s <= 0.0 {
        return "not growing".to_string();
    }
    // The smallest unit that makes it at least 10: "400 / hour" is easier
    // to picture than "6.67 / min" or "0.111 / s".
    for (scale, unit) in [(1.0, "s"), (60.0, "min"), (3600.0, "hour")] {
        if per_s * scale >= 10.0 {
            return format!("≈ {} / {unit}", sig(per_s * scale, 3));
        }
    }
    if per_s * 86_400.0 >= 1.0 {
        return format!("≈ {} / day", sig(per_s * 86_400.0, 3));
    }
    "< 1 / day".to_string()
}

/// A UTC wall-clock time, split for the labels.
struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    milli: u32,
}

impl Utc {
    /// Hand-rolled (Howard Hinnant's days-to-civil) rather than humantime,
    /// whose formatter panics on times before 1970 or after 9999: a damaged
    /// recording must still render.
    fn of(unix_ms: i64) -> Self {
        let days = unix_ms.div_euclid(86_400_000);
        let in_day = unix_ms.rem_euclid(86_400_000);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Utc {
            year,
            month,
            day,
            hour: (in_day / 3_600_000) as u32,
            minute: (in_day / 60_000 % 60) as u32,
            second: (in_day / 1000 % 60) as u32,
            milli: (in_day % 1000) as u32,
        }
    }

    fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    fn hm(&self) -> String {
        format!("{:02}:{:02}", self.hour, self.minute)
    }

    fn hms(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }

    fn hms_milli(&self) -> String {
        format!("{}.{:03}", self.hms(), self.milli)
    }
}

/// `2024-03-01 12:00:05` (UTC).
fn when(m: Moment) -> String {
    let u = Utc::of(m.unix_ms());
    format!("{} {}", u.date(), u.hms())
}

/// Signed nanoseconds from `a` to `b` on the boot clock.
fn boot_diff(a: Moment, b: Moment) -> i128 {
    i128::from(b.boot_ns) - i128::from(a.boot_ns)
}

/// `+15 min`: how long after the start of the recording.
fn since(start: Moment, m: Moment) -> String {
    let d = boot_diff(start, m);
    if d.abs() < 1_000_000 {
        return "+0 s".to_string();
    }
    let sign = if d < 0 { "−" } else { "+" };
    format!(
        "{sign}{}",
        duration_ns(u64::try_from(d.unsigned_abs()).unwrap_or(u64::MAX))
    )
}

/// `2024-03-01 12:00:05 UTC (+15 min)` as HTML.
fn when_since(start: Moment, m: Moment) -> String {
    format!(
        r#"{} UTC <span class="rel">({})</span>"#,
        when(m),
        since(start, m)
    )
}

fn parent_name(p: &TimelineParent) -> String {
    format!(
        r#"pid {} <span class="comm">{}</span>"#,
        p.pid,
        Esc(&p.comm)
    )
}

// ---------------------------------------------------------------------------
// What every section needs: the time axis, the sample positions, the summary
// numbers.

/// Positions on the shared time axis.
struct TimeAxis {
    /// Boot-clock domain, nanoseconds; `hi > lo`.
    lo: u64,
    hi: u64,
    /// Ties the boot clock to the wall clock for the axis labels.
    anchor: Moment,
}

impl TimeAxis {
    fn x(&self, boot_ns: u64) -> f64 {
        let span = (self.hi - self.lo) as f64;
        let off = (i128::from(boot_ns) - i128::from(self.lo)) as f64;
        LEFT + off / span * (WIDTH - LEFT - RIGHT)
    }

    fn unix_ms(&self, boot_ns: u64) -> i64 {
        let off = (i128::from(boot_ns) - i128::from(self.anchor.boot_ns)) / 1_000_000;
        self.anchor.unix_ms().saturating_add(off as i64)
    }

    fn boot_of_unix(&self, unix_ms: i64) -> i128 {
        i128::from(self.anchor.boot_ns)
            + (i128::from(unix_ms) - i128::from(self.anchor.unix_ms())) * 1_000_000
    }

    fn x_of_unix(&self, unix_ms: i64) -> f64 {
        let span = (self.hi - self.lo) as f64;
        let off = (self.boot_of_unix(unix_ms) - i128::from(self.lo)) as f64;
        LEFT + off / span * (WIDTH - LEFT - RIGHT)
    }
}

/// The tightest a limit got: `used` of `limit` at `at`.
struct Closest {
    /// HTML: what the limit is.
    what: String,
    used: u64,
    limit: u64,
    at: Moment,
}

impl Closest {
    fn ratio(&self) -> f64 {
        self.used as f64 / self.limit as f64
    }
}

struct Context<'a> {
    axis: Option<TimeAxis>,
    /// x of every sample.
    xs: Vec<f64>,
    /// Whether the line breaks before sample i: too long since the previous
    /// one for the recording to know what happened in between.
    breaks: Vec<bool>,
    /// Index pairs (before, after) around each such hole.
    holes: Vec<(usize, usize)>,
    plotted: usize,
    by_kind: [Vec<&'a Marker>; KINDS.len()],
    /// Tightest first.
    limits: Vec<Closest>,
}

impl<'a> Context<'a> {
    fn new(t: &'a Timeline) -> Self {
        let axis = (!t.samples.is_empty()).then(|| {
            let mut lo = t.start.boot_ns.min(t.end.boot_ns);
            let mut hi = t.end.boot_ns.max(t.start.boot_ns);
            for s in [t.samples.first(), t.samples.last()].into_iter().flatten() {
                lo = lo.min(s.at.boot_ns);
                hi = hi.max(s.at.boot_ns);
            }
            if hi - lo < 1_000_000_000 {
                // One sample, or a recording shorter than a second: give the
                // axis a second around it so that positions are defined and
                // the data sits in the middle.
                let mid = lo / 2 + hi / 2;
                lo = mid.saturating_sub(500_000_000);
                hi = lo + 1_000_000_000;
            }
            TimeAxis {
                lo,
                hi,
                anchor: t.start,
            }
        });
        let xs: Vec<f64> = match &axis {
            Some(a) => t.samples.iter().map(|s| a.x(s.at.boot_ns)).collect(),
            None => Vec::new(),
        };
        let (breaks, holes) = find_holes(t);
        let mut by_kind: [Vec<&Marker>; KINDS.len()] = Default::default();
        for m in &t.markers {
            if let Some(i) = KINDS.iter().position(|k| *k == m.kind) {
                by_kind[i].push(m);
            }
        }
        Context {
            axis,
            xs,
            breaks,
            holes,
            plotted: t.parents.len().min(MAX_PLOTTED),
            by_kind,
            limits: closest_limits(t),
        }
    }

    fn markers(&self, k: MarkerKind) -> &[&'a Marker] {
        match KINDS.iter().position(|x| *x == k) {
            Some(i) => &self.by_kind[i],
            None => &[],
        }
    }

    fn kinds_present(&self) -> Vec<MarkerKind> {
        KINDS
            .iter()
            .zip(&self.by_kind)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| *k)
            .collect()
    }
}

/// Where the samples stop for much longer than their usual spacing (five
/// times the median interval): the line is broken there and the hole shaded,
/// rather than drawn across as if the recording had seen it.
fn find_holes(t: &Timeline) -> (Vec<bool>, Vec<(usize, usize)>) {
    let n = t.samples.len();
    let mut breaks = vec![false; n];
    let mut holes = Vec::new();
    if n < 3 {
        return (breaks, holes);
    }
    let mut gaps: Vec<u64> = t
        .samples
        .windows(2)
        .map(|w| w[1].at.boot_ns.saturating_sub(w[0].at.boot_ns))
        .collect();
    let mid = gaps.len() / 2;
    let median = *gaps.select_nth_unstable(mid).1;
    let threshold = median.saturating_mul(5).max(1);
    for (i, w) in t.samples.windows(2).enumerate() {
        if w[1].at.boot_ns.saturating_sub(w[0].at.boot_ns) > threshold {
            breaks[i + 1] = true;
            holes.push((i, i + 1));
        }
    }
    (breaks, holes)
}

/// How close the host, and the tightest cgroup, came to each PID limit.
fn closest_limits(t: &Timeline) -> Vec<Closest> {
    let mut peak_tasks: Option<(u64, Moment)> = None;
    let mut cgroup: Option<(&CgroupPoint, Moment)> = None;
    for s in &t.samples {
        if let Some(n) = s.tasks
            && peak_tasks.is_none_or(|(p, _)| n > p)
        {
            peak_tasks = Some((n, s.at));
        }
        if let Some(c) = &s.pids_cgroup
            && c.max > 0
        {
            let tighter = cgroup.is_none_or(|(best, _)| {
                // current/max > best.current/best.max, without division.
                u128::from(c.current) * u128::from(best.max)
                    > u128::from(best.current) * u128::from(c.max)
            });
            if tighter {
                cgroup = Some((c, s.at));
            }
        }
    }
    let mut out = Vec::new();
    if let Some((tasks, at)) = peak_tasks {
        if t.pid_max > 0 {
            out.push(Closest {
                what: "kernel.pid_max (host tasks)".to_string(),
                used: tasks,
                limit: u64::from(t.pid_max),
                at,
            });
        }
        if let Some(max) = t.threads_max.filter(|m| *m > 0) {
            out.push(Closest {
                what: "kernel.threads-max (host tasks)".to_string(),
                used: tasks,
                limit: max,
                at,
            });
        }
    }
    if let Some((c, at)) = cgroup {
        out.push(Closest {
            what: format!(
                r#"pids.max of cgroup <span class="path">{}</span>"#,
                Esc(&c.path)
            ),
            used: c.current,
            limit: c.max,
            at,
        });
    }
    out.sort_by(|a, b| b.ratio().partial_cmp(&a.ratio()).unwrap_or(Ordering::Equal));
    out
}

// ---------------------------------------------------------------------------
// Sections

const CSS: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: #1b1b1b;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 18px 20px 40px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 17px; margin: 26px 0 6px; padding-bottom: 3px; border-bottom: 1px solid #ddd; }
h3 { font-size: 14px; margin: 14px 0 4px; }
.sub { color: #555; margin: 0 0 12px; }
.rel, .muted { color: #666; }
td .comm { white-space: nowrap; }
.comm, .path, code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.95em; }
.lead { font-size: 16px; line-height: 1.5; margin: 10px 0 12px; padding: 10px 14px;
  border-left: 5px solid #D55E00; background: #fdf3ec; }
.lead.calm { border-left-color: #009E73; background: #eef8f4; }
.lead p { margin: 0 0 4px; }
.facts { display: grid; grid-template-columns: 190px 1fr; gap: 3px 16px; margin: 0; }
.facts dt { font-weight: 600; color: #333; }
.facts dd { margin: 0; }
.warn { border: 2px solid #B2182B; background: #fdecec; padding: 8px 14px; margin: 10px 0; }
.warn strong { color: #8b0f1f; }
.warn ul { margin: 4px 0 0; padding-left: 20px; }
.ok { color: #1a7f37; }
.bad { color: #B2182B; }
.unk { color: #8a5a00; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 4px 0 2px; font-size: 13px; }
.legend span { white-space: nowrap; }
.legend svg, .gauge { display: inline-block; vertical-align: middle; width: auto; }
figure { margin: 0; }
svg.plot { width: 100%; height: auto; display: block; }
svg text { font-size: 11px; fill: #333; }
svg .lbl { font-size: 12px; font-weight: 600; }
.empty { color: #666; font-style: italic; padding: 10px 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; vertical-align: top; padding: 4px 8px; border-bottom: 1px solid #e2e2e2; }
th { background: #f4f4f4; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.t { white-space: nowrap; font-variant-numeric: tabular-nums; }
ul.fix { margin: 0; padding-left: 0; list-style: none; }
ul.fix li { margin-bottom: 3px; }
.hists { display: flex; flex-wrap: wrap; gap: 10px 28px; }
.hist { width: 560px; }
.hist p { margin: 0 0 2px; font-size: 13px; }
footer { margin-top: 30px; color: #777; font-size: 12px; }
@page { size: A4 landscape; margin: 10mm; }
@media print {
  body { font-size: 11px; }
  main { max-width: none; padding: 0; }
  figure, tr, .lead, .warn, .facts, .legend { break-inside: avoid; }
  h2, h3, .legend { break-after: avoid; }
  .lead, .warn, th { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
"#;

fn head(out: &mut String, t: &Timeline, ctx: &Context) {
    let worst = t
        .parents
        .first()
        .map(|p| format!(" — pid {} ({})", p.pid, clip(&p.comm, 32)))
        .unwrap_or_default();
    w!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Zombie leak report: {}{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        Esc(&t.hostname),
        Esc(&worst)
    );
    w!(
        out,
        "<h1>Zombie process report: <span class=\"path\">{}</span></h1>\n",
        Esc(&t.hostname)
    );
    let span = u64::try_from(boot_diff(t.start, t.end)).unwrap_or(0);
    w!(
        out,
        "<p class=\"sub\">Recording {} → {} UTC ({}) · kernel {} · {} samples · pid_max {}",
        when(t.start),
        when(t.end),
        duration_ns(span),
        Esc(&t.kernel),
        group(t.samples.len() as u64),
        group(u64::from(t.pid_max)),
    );
    if let Some(m) = t.threads_max {
        w!(out, " · threads-max {}", group(m));
    }
    if ctx.axis.is_none() {
        out.push_str(" · <strong>no samples</strong>");
    }
    out.push_str("</p>\n");
}

/// Damage first: a reviewer must know how far the numbers can be trusted
/// before reading them.
fn integrity_box(out: &mut String, t: &Timeline, ctx: &Context) {
    let lost = ctx.markers(MarkerKind::EventsLost);
    let gaps = ctx.markers(MarkerKind::Gap);
    if t.notes.is_empty() && lost.is_empty() && gaps.is_empty() && ctx.holes.is_empty() {
        return;
    }
    out.push_str(
        "<div class=\"warn\" id=\"integrity\"><strong>⚠ This recording is incomplete or \
         damaged: some zombies, reaps or samples may be missing, so counts can be too low \
         or too high.</strong>\n<ul>\n",
    );
    for n in &t.notes {
        w!(out, "<li>{}</li>\n", Esc(n));
    }
    for (what, list) in [("event-loss", lost), ("gap", gaps)] {
        if let Some(first) = list.first() {
            w!(
                out,
                "<li>{} {what} marker{}, the first at {}: {}</li>\n",
                list.len(),
                if list.len() == 1 { "" } else { "s" },
                when_since(t.start, first.at),
                Esc(&first.text)
            );
        }
    }
    if let Some(&(a, b)) = ctx.holes.first() {
        let (a, b) = (&t.samples[a], &t.samples[b]);
        w!(
            out,
            "<li>{} stretch{} without samples (shaded in the plots), the first {} long from {}</li>\n",
            ctx.holes.len(),
            if ctx.holes.len() == 1 { "" } else { "es" },
            duration_ns(b.at.boot_ns.saturating_sub(a.at.boot_ns)),
            when_since(t.start, a.at)
        );
    }
    out.push_str("</ul></div>\n");
}

fn headline(out: &mut String, t: &Timeline, ctx: &Context) {
    let alerts = ctx.markers(MarkerKind::Alert);
    let sigchld = ctx.markers(MarkerKind::SigchldChange);
    let worst = t.parents.first();
    let leaking = worst.is_some_and(|p| p.pending_at_end > 0);
    w!(
        out,
        "<section id=\"summary\">\n<div class=\"lead{}\">\n",
        if leaking { "" } else { " calm" }
    );
    match worst {
        None => out.push_str(
            "<p><strong>No parent left unreaped zombies during this recording.</strong></p>\n",
        ),
        Some(p) => {
            out.push_str("<p>");
            if p.pending_at_end > 0 {
                w!(
                    out,
                    "<strong>{}</strong> left <strong>{} zombies</strong> unreaped at the end \
                     of the recording",
                    parent_name(p),
                    group(u64::from(p.pending_at_end))
                );
                if p.peak_pending > p.pending_at_end {
                    w!(
                        out,
                        " (peak {} at {})",
                        group(u64::from(p.peak_pending)),
                        when_since(t.start, p.peak_at)
                    );
                }
            } else {
                w!(
                    out,
                    "<strong>{}</strong> peaked at <strong>{} unreaped zombies</strong> at {}; \
                     all were reaped by the end",
                    parent_name(p),
                    group(u64::from(p.peak_pending)),
                    when_since(t.start, p.peak_at)
                );
            }
            out.push('.');
            if let Some(first) = p.first_zombie_at {
                w!(
                    out,
                    " Its zombies accumulated from {}",
                    when_since(t.start, first)
                );
                if let Some(g) = p.growth_per_s {
                    w!(out, " at <strong>{}</strong>", rate(g));
                }
                out.push('.');
            } else if let Some(g) = p.growth_per_s {
                w!(out, " Growth: <strong>{}</strong>.", rate(g));
            }
            if let Some(v) = &p.verdict {
                w!(out, " Verdict: <strong>{}</strong>.", Esc(v));
            }
            out.push_str("</p>\n");
            if let Some(m) = sigchld.iter().find(|m| m.pid == Some(p.pid)) {
                w!(
                    out,
                    "<p>Its SIGCHLD handling changed at <strong>{}</strong>: {}.</p>\n",
                    when_since(t.start, m.at),
                    Esc(&m.text)
                );
            }
        }
    }
    out.push_str("<p>");
    match alerts.first() {
        Some(a) => {
            w!(
                out,
                "<strong>{} alert{}</strong> fired, the first at {}",
                alerts.len(),
                if alerts.len() == 1 { "" } else { "s" },
                when_since(t.start, a.at)
            );
            // How long the leak went unnoticed: what reviews ask first.
            if let Some(first) = worst.and_then(|p| p.first_zombie_at)
                && let Ok(delay) = u64::try_from(boot_diff(first, a.at))
            {
                w!(
                    out,
                    ", <strong>{}</strong> after the leak started",
                    duration_ns(delay)
                );
            }
            out.push_str(". ");
        }
        None => out.push_str("No alert fired. "),
    }
    match ctx.limits.first() {
        Some(c) => w!(
            out,
            "Closest to a PID limit: <strong>{}</strong> of {} ({} of {}).",
            percent(c.ratio()),
            c.what,
            group(c.used),
            group(c.limit)
        ),
        None => out.push_str("No task counts were recorded."),
    }
    out.push_str("</p>\n</div>\n<dl class=\"facts\">\n");

    let span = u64::try_from(boot_diff(t.start, t.end)).unwrap_or(0);
    w!(
        out,
        "<dt>Recording</dt><dd>{} → {} UTC · <strong>{}</strong></dd>\n",
        when(t.start),
        when(t.end),
        duration_ns(span)
    );
    if let Some(p) = worst {
        w!(out, "<dt>Worst parent</dt><dd>{}", parent_name(p));
        if let Some(v) = &p.verdict {
            w!(out, " — {}", Esc(v));
        }
        out.push_str("</dd>\n<dt>Leak started</dt><dd>");
        match p.first_zombie_at {
            Some(m) => w!(out, "{} (its first zombie)", when_since(t.start, m)),
            None => out.push_str("unknown (no zombie exit seen)"),
        }
        w!(
            out,
            "</dd>\n<dt>Peak</dt><dd><strong>{}</strong> pending at {}; {} pending at the end</dd>\n",
            group(u64::from(p.peak_pending)),
            when_since(t.start, p.peak_at),
            group(u64::from(p.pending_at_end))
        );
        out.push_str("<dt>Growth</dt><dd>");
        match p.growth_per_s {
            Some(g) if g > 0.0 && g < 1.0 => {
                w!(out, "<strong>{}</strong> ({} / s)", rate(g), sig(g, 3))
            }
            Some(g) => w!(out, "<strong>{}</strong>", rate(g)),
            None => out.push_str("not enough data"),
        }
        out.push_str("</dd>\n");
    }
    out.push_str("<dt>SIGCHLD changes</dt><dd>");
    if sigchld.is_empty() {
        out.push_str("none seen");
    }
    for (i, m) in sigchld.iter().take(5).enumerate() {
        if i > 0 {
            out.push_str("<br>");
        }
        w!(out, "{}", when_since(t.start, m.at));
        if let Some(pid) = m.pid {
            w!(out, " pid {pid}");
        }
        w!(out, ": {}", Esc(&m.text));
    }
    if sigchld.len() > 5 {
        w!(
            out,
            "<br>… and {} more (see the markers table)",
            sigchld.len() - 5
        );
    }
    out.push_str("</dd>\n<dt>Alerts</dt><dd>");
    match alerts.first() {
        Some(a) => w!(
            out,
            "<strong>{}</strong>; first at {}: {}",
            alerts.len(),
            when_since(t.start, a.at),
            Esc(&a.text)
        ),
        None => out.push_str("none"),
    }
    out.push_str("</dd>\n<dt>PID pressure (peak)</dt><dd>");
    if ctx.limits.is_empty() {
        out.push_str("no task counts recorded");
    }
    for (i, c) in ctx.limits.iter().enumerate() {
        if i > 0 {
            out.push_str("<br>");
        }
        gauge(out, c.ratio());
        w!(
            out,
            " <strong>{}</strong> of {}: {} of {} ({} left) at {}",
            percent(c.ratio()),
            c.what,
            group(c.used),
            group(c.limit),
            group(c.limit.saturating_sub(c.used)),
            when_since(t.start, c.at)
        );
    }
    out.push_str("</dd>\n<dt>Data completeness</dt><dd>");
    let lost = ctx.markers(MarkerKind::EventsLost).len();
    let gaps = ctx.markers(MarkerKind::Gap).len();
    let resyncs = ctx.markers(MarkerKind::Resync).len();
    if t.notes.is_empty() && lost == 0 && gaps == 0 && ctx.holes.is_empty() {
        out.push_str("<span class=\"ok\">✓ complete: no events lost, no gaps</span>");
    } else {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let problems: Vec<String> = [
            (t.notes.len(), "note", "notes"),
            (lost, "event loss", "event losses"),
            (gaps, "gap", "gaps"),
            (
                ctx.holes.len(),
                "stretch without samples",
                "stretches without samples",
            ),
        ]
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| plural(n, one, many))
        .collect();
        w!(
            out,
            "<span class=\"bad\"><strong>⚠ incomplete:</strong> {}</span> (see the box at the top)",
            problems.join(", ")
        );
    }
    if resyncs > 0 {
        w!(
            out,
            "; {resyncs} resync{} with /proc",
            if resyncs == 1 { "" } else { "s" }
        );
    }
    out.push_str("</dd>\n");
    if t.parents.len() > 1 {
        w!(
            out,
            "<dt>Other parents</dt><dd>{} more left zombies (see the table)</dd>\n",
            t.parents.len() - 1
        );
    }
    out.push_str("</dl>\n</section>\n");
}

/// A small horizontal bar: how full a limit got.
fn gauge(out: &mut String, ratio: f64) {
    let r = ratio.clamp(0.0, 1.0);
    let color = if r >= 0.8 {
        LIMIT_COLOR
    } else if r >= 0.5 {
        "#E69F00"
    } else {
        "#009E73"
    };
    w!(
        out,
        r##"<svg class="gauge" width="160" height="12" viewBox="0 0 160 12" role="img" aria-label="{}"><rect width="160" height="12" fill="#e6e6e6"/><rect width="{:.1}" height="12" fill="{color}"/><rect width="160" height="12" fill="none" stroke="#999"/></svg>"##,
        percent(ratio),
        r * 160.0
    );
}

// ---------------------------------------------------------------------------
// Plots

/// One plot's vertical layout and value scale.
struct Frame {
    top: f64,
    bottom: f64,
    ymax: f64,
}

impl Frame {
    fn y(&self, v: f64) -> f64 {
        self.bottom - v / self.ymax * (self.bottom - self.top)
    }
}

/// A tick step of 1, 2 or 5 × 10^k giving about `target` ticks up to `max`,
/// and the axis top (a multiple of the step at or above `max`).
fn nice_scale(max: f64, target: f64) -> (f64, f64) {
    if max.is_nan() || max <= 0.0 {
        return (1.0, 1.0);
    }
    let raw = max / target;
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    let step = if n <= 1.0 {
        mag
    } else if n <= 2.0 {
        2.0 * mag
    } else if n <= 5.0 {
        5.0 * mag
    } else {
        10.0 * mag
    };
    // Counts: no fractional ticks.
    let step = step.max(1.0);
    (step, (max / step).ceil().max(1.0) * step)
}

fn y_axis(out: &mut String, f: &Frame, step: f64, title: &str) {
    out.push_str("<g class=\"yaxis\">");
    let mut v = 0.0;
    while v <= f.ymax + step * 0.001 {
        let y = f.y(v);
        w!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            if v == 0.0 { "#888" } else { "#e8e8e8" },
            LEFT - 6.0,
            y + 4.0,
            group(v as u64)
        );
        v += step;
    }
    w!(
        out,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text></g>"#,
        (f.top + f.bottom) / 2.0,
        (f.top + f.bottom) / 2.0,
        Esc(title)
    );
}

/// Time-axis steps, ms: round values of the wall clock.
const TIME_STEPS: [i64; 27] = [
    100,
    200,
    500,
    1000,
    2000,
    5000,
    10_000,
    15_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    172_800_000,
    604_800_000,
    1_209_600_000,
    2_592_000_000,
    7_776_000_000,
    31_536_000_000,
];

fn time_axis(out: &mut String, a: &TimeAxis, f: &Frame) {
    let lo = a.unix_ms(a.lo);
    let hi = a.unix_ms(a.hi);
    let span = hi.saturating_sub(lo).max(1);
    // About one label per 110 units, so that "2024-03-02" never overlaps.
    let max_ticks = ((WIDTH - LEFT - RIGHT) / 110.0).floor() as i64;
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| span / s <= max_ticks)
        .unwrap_or_else(|| (span / max_ticks).max(1));
    let mut tick = lo.div_euclid(step) * step;
    if tick < lo {
        tick = tick.saturating_add(step);
    }
    out.push_str("<g class=\"xaxis\">");
    let mut last_date = String::new();
    while tick <= hi {
        let x = a.x_of_unix(tick);
        let u = Utc::of(tick);
        let date = u.date();
        let (line1, line2) = if step >= 86_400_000 {
            (date.clone(), String::new())
        } else {
            let clock = if step < 1000 {
                u.hms_milli()
            } else if step < 60_000 {
                u.hms()
            } else {
                u.hm()
            };
            let d = if date != last_date {
                date.clone()
            } else {
                String::new()
            };
            (clock, d)
        };
        last_date = date;
        w!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="#efefef"/><line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="#888"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{line1}</text>"##,
            f.top,
            f.bottom,
            f.bottom,
            f.bottom + 4.0,
            f.bottom + 16.0
        );
        if !line2.is_empty() {
            w!(
                out,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" font-weight="600">{line2}</text>"#,
                f.bottom + 30.0
            );
        }
        match tick.checked_add(step) {
            Some(next) => tick = next,
            None => break,
        }
    }
    w!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="start">time (UTC)</text></g>"#,
        WIDTH - RIGHT + 24.0,
        f.bottom + 30.0
    );
}

/// Shades the stretches where samples are missing.
fn holes(out: &mut String, t: &Timeline, ctx: &Context, f: &Frame, plot_id: &str) {
    for &(a, b) in ctx.holes.iter().take(MAX_HOLES) {
        let (xa, xb) = (ctx.xs[a], ctx.xs[b]);
        w!(
            out,
            r##"<rect class="hole" x="{xa:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="url(#{plot_id}-hatch)" stroke="#bbb"><title>No samples from {} to {} UTC ({})</title></rect>"##,
            f.top,
            (xb - xa).max(1.0),
            f.bottom - f.top,
            when(t.samples[a].at),
            when(t.samples[b].at),
            duration_ns(
                t.samples[b]
                    .at
                    .boot_ns
                    .saturating_sub(t.samples[a].at.boot_ns)
            )
        );
    }
}

/// The hatching of data holes; its id is the plot's, as ids must be unique
/// in the page.
fn hatch_pattern(out: &mut String, plot_id: &str) {
    w!(
        out,
        r##"<defs><pattern id="{plot_id}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#f7f7f7"/><line x1="0" y1="0" x2="0" y2="6" stroke="#c8c8c8" stroke-width="2"/></pattern></defs>"##
    );
}

/// How a series is drawn.
struct Style<'s> {
    color: &'s str,
    dash: &'s str,
    width: f64,
    /// Extra attributes identifying the series (for tests and tooling).
    attrs: String,
}

/// Draws one series as polylines, broken at holes, and returns its last
/// point.
///
/// Downsampled per column of the plot (one unit wide): each column keeps
/// its first, lowest, highest and last point, in time order (the "M4"
/// reduction). That draws exactly the same pixels as every sample would,
/// peaks included, with at most four points per column whatever the number
/// of samples.
fn series(
    out: &mut String,
    ctx: &Context,
    f: &Frame,
    value: impl Fn(usize) -> Option<f64>,
    style: &Style,
) -> Option<(f64, f64)> {
    struct Column {
        col: i64,
        first: (usize, f64),
        low: (usize, f64),
        high: (usize, f64),
        last: (usize, f64),
    }
    let mut segment = String::new();
    let mut points = 0usize;
    let mut lone = (0.0, 0.0);
    let mut last_point = None;
    let mut column: Option<Column> = None;

    let flush_column =
        |c: &Column, segment: &mut String, points: &mut usize, lone: &mut (f64, f64)| {
            let mut four = [c.first, c.low, c.high, c.last];
            four.sort_by_key(|p| p.0);
            let mut prev = usize::MAX;
            for (i, v) in four {
                if i == prev {
                    continue;
                }
                prev = i;
                let (x, y) = (ctx.xs[i], f.y(v));
                w!(segment, "{x:.1},{y:.1} ");
                *points += 1;
                *lone = (x, y);
            }
        };
    let end_segment = |segment: &mut String,
                       points: &mut usize,
                       lone: (f64, f64),
                       out: &mut String| {
        if *points == 1 {
            w!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"{}/>"#,
                lone.0,
                lone.1,
                style.color,
                style.attrs
            );
        } else if *points > 1 {
            w!(
                out,
                r#"<polyline class="series" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round"{}{} points="{}"/>"#,
                style.color,
                style.width,
                if style.dash.is_empty() {
                    String::new()
                } else {
                    format!(r#" stroke-dasharray="{}""#, style.dash)
                },
                style.attrs,
                segment.trim_end()
            );
        }
        segment.clear();
        *points = 0;
    };

    for i in 0..ctx.xs.len() {
        // Before looking at the value: a series without one right after
        // the hole must break all the same.
        if ctx.breaks[i] {
            if let Some(c) = column.take() {
                flush_column(&c, &mut segment, &mut points, &mut lone);
            }
            end_segment(&mut segment, &mut points, lone, out);
        }
        let Some(v) = value(i) else { continue };
        let col = ctx.xs[i].floor() as i64;
        match &mut column {
            Some(c) if c.col == col => {
                if v < c.low.1 {
                    c.low = (i, v);
                }
                if v > c.high.1 {
                    c.high = (i, v);
                }
                c.last = (i, v);
            }
            _ => {
                if let Some(c) = column.take() {
                    flush_column(&c, &mut segment, &mut points, &mut lone);
                }
                column = Some(Column {
                    col,
                    first: (i, v),
                    low: (i, v),
                    high: (i, v),
                    last: (i, v),
                });
            }
        }
        last_point = Some((ctx.xs[i], f.y(v)));
    }
    if let Some(c) = column.take() {
        flush_column(&c, &mut segment, &mut points, &mut lone);
    }
    end_segment(&mut segment, &mut points, lone, out);
    last_point
}

/// Labels at the right end of the lines, pushed apart so none overlap.
fn end_labels(out: &mut String, f: &Frame, mut labels: Vec<(f64, String, &str)>) {
    const GAP: f64 = 14.0;
    labels.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    let mut ys: Vec<f64> = labels.iter().map(|l| l.0 + 4.0).collect();
    for i in 1..ys.len() {
        ys[i] = ys[i].max(ys[i - 1] + GAP);
    }
    let floor = f.bottom + 4.0;
    if let Some(last) = ys.last_mut() {
        *last = last.min(floor);
    }
    for i in (0..ys.len().saturating_sub(1)).rev() {
        ys[i] = ys[i].min(ys[i + 1] - GAP);
    }
    for ((_, text, color), y) in labels.iter().zip(ys) {
        w!(
            out,
            r#"<text class="lbl" x="{:.1}" y="{y:.1}" fill="{color}" style="fill:{color}">{text}</text>"#,
            WIDTH - RIGHT + 8.0,
        );
    }
}

/// Lanes of marker symbols above the plot and a line for each marker down
/// through it. Markers of one kind closer than [`MARKER_MERGE`] become one
/// symbol whose tooltip lists them.
fn markers(out: &mut String, t: &Timeline, ctx: &Context, a: &TimeAxis, lanes_top: f64, f: &Frame) {
    let kinds = ctx.kinds_present();
    for (lane, kind) in kinds.iter().enumerate() {
        let y = lanes_top + lane as f64 * LANE + LANE / 2.0;
        let color = kind_color(*kind);
        w!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" style="fill:{color}">{}</text>"#,
            LEFT - 10.0,
            y + 4.0,
            lane_label(*kind)
        );
        let list = ctx.markers(*kind);
        // Text labels only where they are few enough to be read.
        let mut groups: Vec<(f64, std::ops::Range<usize>)> = Vec::new();
        let mut i = 0;
        while i < list.len() {
            let x = a.x(list[i].at.boot_ns).clamp(LEFT, WIDTH - RIGHT);
            let mut j = i + 1;
            while j < list.len() && a.x(list[j].at.boot_ns) - x < MARKER_MERGE {
                j += 1;
            }
            groups.push((x, i..j));
            i = j;
        }
        // Text labels only where they are few enough to be read, each in
        // the room left between its symbol and its neighbours'.
        let label_them = matches!(kind, MarkerKind::SigchldChange) || groups.len() <= 4;
        // Lines through the plot only while they are few: hundreds would
        // hide the data. Many markers keep a tick down to the plot's top.
        let through = matches!(kind, MarkerKind::SigchldChange) || groups.len() <= MAX_MARKER_LINES;
        let mut label_end = f64::MIN;
        for (g, (x, range)) in groups.iter().enumerate() {
            let x = *x;
            let group_of = &list[range.clone()];
            w!(out, r#"<g class="marker {}">"#, kind_class(*kind));
            out.push_str("<title>");
            if group_of.len() > 1 {
                w!(out, "{} × {}\n", group_of.len(), kind_label(*kind));
            }
            for m in group_of.iter().take(8) {
                w!(out, "{} UTC ({})", when(m.at), since(t.start, m.at));
                if let Some(pid) = m.pid {
                    w!(out, " pid {pid}");
                }
                w!(out, ": {}\n", Esc(&m.text));
            }
            if group_of.len() > 8 {
                w!(out, "… and {} more\n", group_of.len() - 8);
            }
            out.push_str("</title>");
            w!(
                out,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="{color}" stroke-opacity="0.55" stroke-dasharray="3 3"/>"#,
                y + 5.0,
                if through { f.bottom } else { f.top }
            );
            kind_symbol(out, *kind, x, y);
            if label_them {
                let mut text = group_of[0].text.clone();
                if group_of.len() > 1 {
                    text = format!("{text} (+{} more)", group_of.len() - 1);
                }
                let next = groups.get(g + 1).map_or(WIDTH - 4.0, |n| n.0 - 9.0);
                let prev = if g > 0 { groups[g - 1].0 + 9.0 } else { LEFT };
                let right = next - (x + 9.0);
                let left = (x - 9.0) - prev.max(label_end + 8.0);
                // About 6.2 units per character at this size.
                let chars = |room: f64| (room / 6.2).floor() as usize;
                let want = text.chars().count();
                let placed = if chars(right) >= want.min(12) {
                    Some((x + 9.0, "start", chars(right)))
                } else if chars(left) >= want.min(12) {
                    Some((x - 9.0, "end", chars(left)))
                } else {
                    None
                };
                if let Some((lx, anchor, room)) = placed {
                    let shown = clip(&text, room.saturating_sub(1).max(1));
                    w!(
                        out,
                        r#"<text x="{lx:.1}" y="{:.1}" text-anchor="{anchor}" style="fill:{color}">{}</text>"#,
                        y + 4.0,
                        Esc(&shown)
                    );
                    let width = shown.chars().count() as f64 * 6.2;
                    label_end = if anchor == "start" { lx + width } else { lx };
                }
            }
            out.push_str("</g>");
        }
    }
}

/// Opens a plot's SVG element, with the hatch pattern for data holes and the
/// clip path that keeps lines inside the plot area.
fn open_plot(out: &mut String, id: &str, label: &str, f: &Frame) {
    w!(
        out,
        r#"<svg class="plot" id="{id}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {:.0}" role="img" aria-label="{}">"#,
        f.bottom + AXIS_ROOM,
        Esc(label)
    );
    hatch_pattern(out, id);
    w!(
        out,
        r##"<clipPath id="{id}-clip"><rect x="{LEFT}" y="{:.1}" width="{:.1}" height="{:.1}"/></clipPath>"##,
        f.top - 2.0,
        WIDTH - LEFT - RIGHT,
        f.bottom - f.top + 4.0
    );
}

fn frame_for(lanes: usize, height: f64, ymax: f64) -> Frame {
    let top = 8.0 + lanes as f64 * LANE + 8.0;
    Frame {
        top,
        bottom: top + height,
        ymax,
    }
}

fn legend_swatch(out: &mut String, color: &str, dash: &str) {
    w!(
        out,
        r#"<svg width="26" height="10" viewBox="0 0 26 10"><line x1="1" y1="5" x2="25" y2="5" stroke="{color}" stroke-width="3"{}/></svg>"#,
        if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        }
    );
}

fn zombie_plot(out: &mut String, t: &Timeline, ctx: &Context) {
    out.push_str("<section id=\"zombies\">\n<h2>Pending zombies per parent</h2>\n");
    let Some(a) = &ctx.axis else {
        out.push_str("<p class=\"empty\">No samples were recorded, so there is nothing to plot.</p>\n</section>\n");
        return;
    };
    let n = ctx.plotted;
    let mut max = 0u64;
    // The total is drawn when it says something the parents' lines don't:
    // zombies of parents not plotted (or no parent at all).
    let mut total_differs = t.parents.is_empty();
    for s in &t.samples {
        let plotted: u64 = s.per_parent.iter().take(n).map(|v| u64::from(*v)).sum();
        max = max.max(plotted);
        if s.pending_total != plotted {
            total_differs = true;
        }
    }
    if total_differs {
        max = max.max(t.samples.iter().map(|s| s.pending_total).max().unwrap_or(0));
    }
    let max_parent = t
        .samples
        .iter()
        .flat_map(|s| s.per_parent.iter().take(n))
        .copied()
        .max()
        .unwrap_or(0);
    let top_value = if total_differs {
        max
    } else {
        u64::from(max_parent)
    };

    out.push_str("<div class=\"legend\">");
    for (i, p) in t.parents.iter().take(n).enumerate() {
        let (color, dash) = PALETTE[i];
        out.push_str("<span>");
        legend_swatch(out, color, dash);
        w!(
            out,
            " {} · peak {}</span>",
            parent_name(p),
            group(u64::from(p.peak_pending))
        );
    }
    if total_differs {
        out.push_str("<span>");
        legend_swatch(out, TOTAL_COLOR, "4 3");
        out.push_str(" all parents (total)</span>");
    }
    if t.parents.len() > n {
        w!(
            out,
            "<span class=\"muted\">{} more parents not drawn: see the table</span>",
            t.parents.len() - n
        );
    }
    out.push_str("</div>\n");

    let lanes = ctx.kinds_present().len();
    let (step, ymax) = nice_scale(top_value as f64, 5.0);
    let f = frame_for(lanes, PLOT1_HEIGHT, ymax);
    out.push_str("<figure>");
    open_plot(
        out,
        "plot-zombies",
        "Pending zombies per parent over time",
        &f,
    );
    y_axis(out, &f, step, "pending zombies");
    time_axis(out, a, &f);
    holes(out, t, ctx, &f, "plot-zombies");
    out.push_str(r#"<g clip-path="url(#plot-zombies-clip)">"#);
    let mut labels = Vec::new();
    if total_differs {
        let style = Style {
            color: TOTAL_COLOR,
            dash: "4 3",
            width: 1.5,
            attrs: r#" data-series="total""#.to_string(),
        };
        if let Some((_, y)) = series(
            out,
            ctx,
            &f,
            |i| Some(t.samples[i].pending_total as f64),
            &style,
        ) {
            let last = t.samples.last().map(|s| s.pending_total).unwrap_or(0);
            labels.push((y, format!("all: {}", group(last)), TOTAL_COLOR));
        }
    }
    // Worst last, so that it is drawn on top.
    for (i, p) in t.parents.iter().take(n).enumerate().rev() {
        let (color, dash) = PALETTE[i];
        let style = Style {
            color,
            dash,
            width: if i == 0 { 2.5 } else { 2.0 },
            attrs: format!(r#" data-pid="{}""#, p.pid),
        };
        let value = |k: usize| t.samples[k].per_parent.get(i).map(|v| f64::from(*v));
        if let Some((_, y)) = series(out, ctx, &f, value, &style) {
            let last = t
                .samples
                .iter()
                .rev()
                .find_map(|s| s.per_parent.get(i))
                .copied()
                .unwrap_or(0);
            labels.push((
                y,
                format!(
                    "{} {}: {}",
                    p.pid,
                    Esc(&clip(&p.comm, 16)),
                    group(u64::from(last))
                ),
                color,
            ));
        }
    }
    out.push_str("</g>");
    end_labels(out, &f, labels);
    markers(out, t, ctx, a, 8.0, &f);
    out.push_str("</svg></figure>\n</section>\n");
}

fn pressure_plot(out: &mut String, t: &Timeline, ctx: &Context) {
    out.push_str("<section id=\"pressure\">\n<h2>PID pressure: tasks and their limits</h2>\n");
    let Some(a) = &ctx.axis else {
        out.push_str("<p class=\"empty\">No samples were recorded, so there is nothing to plot.</p>\n</section>\n");
        return;
    };
    let peak_tasks = t.samples.iter().filter_map(|s| s.tasks).max();
    let peak_cg = t
        .samples
        .iter()
        .filter_map(|s| s.pids_cgroup.as_ref().map(|c| c.current))
        .max();
    let peak_cg_max = t
        .samples
        .iter()
        .filter_map(|s| s.pids_cgroup.as_ref().map(|c| c.max))
        .max();
    let peak_zombies = t.samples.iter().map(|s| s.pending_total).max().unwrap_or(0);
    if peak_tasks.is_none() && peak_cg.is_none() {
        out.push_str("<p class=\"empty\">No task counts were recorded, so there is nothing to plot.</p>\n</section>\n");
        return;
    }
    let data_max = peak_tasks
        .unwrap_or(0)
        .max(peak_cg.unwrap_or(0))
        .max(peak_zombies);
    // A limit far above the data would flatten every line against the
    // bottom; such limits are named in a note at the top instead.
    let on_scale = |limit: u64| limit <= data_max.saturating_mul(4).max(1);
    let mut limits: Vec<(String, u64, &str)> = Vec::new();
    if t.pid_max > 0 {
        limits.push(("pid_max".to_string(), u64::from(t.pid_max), ""));
    }
    if let Some(m) = t.threads_max {
        limits.push(("threads-max".to_string(), m, "8 4"));
    }
    let mut top = data_max;
    for (_, l, _) in &limits {
        if on_scale(*l) {
            top = top.max(*l);
        }
    }
    let cg_on_scale = peak_cg_max.is_some_and(on_scale);
    if cg_on_scale {
        top = top.max(peak_cg_max.unwrap_or(0));
    }
    let paths: Vec<&str> = {
        let mut v: Vec<&str> = t
            .samples
            .iter()
            .filter_map(|s| s.pids_cgroup.as_ref().map(|c| c.path.as_str()))
            .collect();
        v.dedup();
        v.sort_unstable();
        v.dedup();
        v
    };
    let cg_name = match paths.as_slice() {
        [one] => format!(r#"cgroup <span class="path">{}</span>"#, Esc(one)),
        many => format!("tightest cgroup ({} different)", many.len()),
    };

    out.push_str("<div class=\"legend\">");
    if peak_tasks.is_some() {
        out.push_str("<span>");
        legend_swatch(out, "#0072B2", "");
        out.push_str(" host tasks</span>");
    }
    if peak_cg.is_some() {
        out.push_str("<span>");
        legend_swatch(out, "#E69F00", "");
        w!(out, " pids.current of {cg_name}</span><span>");
        legend_swatch(out, "#E69F00", "8 4");
        w!(out, " its pids.max</span>");
    }
    out.push_str("<span>");
    legend_swatch(out, TOTAL_COLOR, "4 3");
    out.push_str(" pending zombies (all parents)</span><span>");
    legend_swatch(out, LIMIT_COLOR, "");
    out.push_str(" host limits</span></div>\n");

    let lanes = ctx.kinds_present().len();
    let (step, ymax) = nice_scale(top as f64, 4.0);
    let f = frame_for(lanes, PLOT2_HEIGHT, ymax);
    out.push_str("<figure>");
    open_plot(
        out,
        "plot-pressure",
        "Tasks against the PID limits over time",
        &f,
    );
    y_axis(out, &f, step, "tasks");
    time_axis(out, a, &f);
    holes(out, t, ctx, &f, "plot-pressure");
    out.push_str(r#"<g clip-path="url(#plot-pressure-clip)">"#);
    let mut labels = Vec::new();
    let style = Style {
        color: TOTAL_COLOR,
        dash: "4 3",
        width: 1.5,
        attrs: r#" data-series="zombies""#.to_string(),
    };
    series(
        out,
        ctx,
        &f,
        |i| Some(t.samples[i].pending_total as f64),
        &style,
    );
    if cg_on_scale {
        let style = Style {
            color: "#E69F00",
            dash: "8 4",
            width: 2.0,
            attrs: r#" data-series="cgroup-max""#.to_string(),
        };
        let value = |i: usize| t.samples[i].pids_cgroup.as_ref().map(|c| c.max as f64);
        if let Some((_, y)) = series(out, ctx, &f, value, &style) {
            labels.push((
                y,
                format!("pids.max {}", group(peak_cg_max.unwrap_or(0))),
                "#E69F00",
            ));
        }
    }
    if peak_cg.is_some() {
        let style = Style {
            color: "#E69F00",
            dash: "",
            width: 2.0,
            attrs: r#" data-series="cgroup""#.to_string(),
        };
        let value = |i: usize| t.samples[i].pids_cgroup.as_ref().map(|c| c.current as f64);
        if let Some((_, y)) = series(out, ctx, &f, value, &style) {
            labels.push((
                y,
                format!("cgroup {}", group(peak_cg.unwrap_or(0))),
                "#E69F00",
            ));
        }
    }
    if peak_tasks.is_some() {
        let style = Style {
            color: "#0072B2",
            dash: "",
            width: 2.0,
            attrs: r#" data-series="tasks""#.to_string(),
        };
        let value = |i: usize| t.samples[i].tasks.map(|v| v as f64);
        if let Some((_, y)) = series(out, ctx, &f, value, &style) {
            labels.push((
                y,
                format!("tasks {}", group(peak_tasks.unwrap_or(0))),
                "#0072B2",
            ));
        }
    }
    out.push_str("</g>");
    let mut off_scale = Vec::new();
    for (name, limit, dash) in &limits {
        if on_scale(*limit) {
            let y = f.y(*limit as f64);
            w!(
                out,
                r#"<line class="limit" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{LIMIT_COLOR}" stroke-width="2"{}/>"#,
                WIDTH - RIGHT,
                if dash.is_empty() {
                    String::new()
                } else {
                    format!(r#" stroke-dasharray="{dash}""#)
                }
            );
            labels.push((y, format!("{name} {}", group(*limit)), LIMIT_COLOR));
        } else {
            let used = peak_tasks.unwrap_or(0) as f64 / *limit as f64;
            off_scale.push(format!(
                "{name} {} is far above (peak use {})",
                group(*limit),
                percent(used)
            ));
        }
    }
    if peak_cg.is_some() && !cg_on_scale {
        off_scale.push(format!(
            "cgroup pids.max {} is far above",
            group(peak_cg_max.unwrap_or(0))
        ));
    }
    if !off_scale.is_empty() {
        w!(
            out,
            r#"<text x="{:.1}" y="{:.1}" style="fill:{LIMIT_COLOR}">↑ {}</text>"#,
            LEFT + 8.0,
            f.top + 14.0,
            off_scale.join(" · ")
        );
    }
    end_labels(out, &f, labels);
    markers(out, t, ctx, a, 8.0, &f);
    out.push_str("</svg></figure>\n</section>\n");
}

// ---------------------------------------------------------------------------
// Tables

fn remediation(out: &mut String, steps: &[RemediationStep]) {
    if steps.is_empty() {
        out.push_str("<span class=\"muted\">—</span>");
        return;
    }
    out.push_str("<ul class=\"fix\">");
    for s in steps {
        let (class, mark) = match (s.works, s.unverified) {
            (true, false) => ("ok", "✓ works"),
            (true, true) => ("unk", "? unverified"),
            (false, false) => ("bad", "✗ won't work"),
            (false, true) => ("bad", "✗ probably won't work"),
        };
        w!(
            out,
            "<li><span class=\"{class}\"><strong>{mark}</strong></span>: {} <span class=\"muted\">— {}</span></li>",
            Esc(&s.action),
            Esc(&s.why)
        );
    }
    out.push_str("</ul>");
}

fn parents_table(out: &mut String, t: &Timeline, ctx: &Context) {
    out.push_str("<section id=\"parents\">\n<h2>Parents that left zombies</h2>\n");
    if t.parents.is_empty() {
        out.push_str(
            "<p class=\"empty\">No parent left zombies during the recording.</p>\n</section>\n",
        );
        return;
    }
    out.push_str(
        "<table>\n<thead><tr><th></th><th>PID</th><th>Command</th><th class=\"num\">Peak pending</th>\
         <th>First zombie (UTC)</th><th class=\"num\">Growth</th><th class=\"num\">Pending at end</th>\
         <th style=\"width:24%\">Verdict</th><th style=\"width:32%\">What to do</th></tr></thead>\n<tbody>\n",
    );
    for (i, p) in t.parents.iter().enumerate() {
        out.push_str("<tr><td>");
        if i < ctx.plotted {
            let (color, dash) = PALETTE[i];
            legend_swatch(out, color, dash);
        }
        w!(
            out,
            "</td><td class=\"num\">{}</td><td><span class=\"comm\">{}</span>{}</td>\
             <td class=\"num\"><strong>{}</strong><br><span class=\"rel\">at {}</span></td><td class=\"t\">",
            p.pid,
            Esc(&p.comm),
            p.runs_in
                .as_deref()
                .map_or_else(String::new, |place| format!(
                    "<br><span class=\"rel\">runs in {}</span>",
                    Esc(place)
                )),
            group(u64::from(p.peak_pending)),
            since(t.start, p.peak_at)
        );
        match p.first_zombie_at {
            Some(m) => w!(
                out,
                "{}<br><span class=\"rel\">{}</span>",
                when(m),
                since(t.start, m)
            ),
            None => out.push_str("<span class=\"muted\">—</span>"),
        }
        w!(
            out,
            "</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>",
            p.growth_per_s.map_or_else(|| "—".to_string(), rate),
            group(u64::from(p.pending_at_end))
        );
        if let Some(v) = &p.verdict {
            w!(out, "<strong>{}</strong>", Esc(v));
        }
        if let Some(s) = &p.summary {
            w!(out, "<br>{}", Esc(s));
        }
        out.push_str("</td><td>");
        remediation(out, &p.remediation);
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn zombie_lifetimes(out: &mut String, t: &Timeline) {
    if t.zombies.is_empty() && t.zombies_truncated == 0 {
        return;
    }
    out.push_str("<section id=\"lifetimes\">\n<h2>Zombie lifetimes</h2>\n<p>");
    let pending: Vec<_> = t
        .zombies
        .iter()
        .filter(|z| z.released_at.is_none())
        .collect();
    w!(out, "{} lifetimes recorded", group(t.zombies.len() as u64));
    if t.zombies_truncated > 0 {
        w!(
            out,
            " (<strong>{} more left out</strong> by the recording's cap on kept lifetimes)",
            group(t.zombies_truncated)
        );
    }
    w!(
        out,
        "; {} of them still pending at the end",
        group(pending.len() as u64)
    );
    if let Some(oldest) = pending.iter().min_by_key(|z| z.exit_at.boot_ns) {
        w!(
            out,
            ", the oldest pid {} (child of pid {} <span class=\"comm\">{}</span>) since {}{}",
            oldest.pid,
            oldest.parent_pid,
            Esc(&oldest.parent_comm),
            when_since(t.start, oldest.exit_at),
            if oldest.exit_time_exact {
                ""
            } else {
                " or earlier (already a zombie when the recording started)"
            }
        );
    }
    out.push('.');
    let mut by_how: Vec<(&str, u64)> = Vec::new();
    for z in t.zombies.iter().filter(|z| z.released_at.is_some()) {
        let how = z.how.as_deref().unwrap_or("unknown");
        match by_how.iter_mut().find(|(h, _)| *h == how) {
            Some(e) => e.1 += 1,
            None => by_how.push((how, 1)),
        }
    }
    if !by_how.is_empty() {
        out.push_str(" Released: ");
        for (i, (how, n)) in by_how.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            w!(out, "{} {}", group(*n), Esc(how_label(how)));
        }
        out.push('.');
    }
    out.push_str("</p>\n</section>\n");
}

/// What a release category means, in words.
fn how_label(how: &str) -> &str {
    match how {
        "parent_wait" => "reaped by the parent's own wait()",
        "auto_reap" => "auto-reaped by the kernel (parent ignores SIGCHLD or set SA_NOCLDWAIT)",
        "adopter_wait" => "reaped by an adopter (init or a subreaper) after the parent died",
        "adopter_auto_reap" => "auto-reaped by the kernel for an adopter that ignores SIGCHLD",
        "namespace_teardown" => "released when their PID namespace was torn down",
        "freed" => "freed with no wait seen (io_uring or compat wait): latency is an upper bound",
        "resync" => "found gone by a resync after lost events",
        other => other,
    }
}

fn latency_section(out: &mut String, t: &Timeline) {
    if t.parents.iter().all(|p| p.latency.is_empty()) {
        return;
    }
    out.push_str(
        "<section id=\"latency\">\n<h2>Reap latency: how long children stayed zombies</h2>\n\
         <p class=\"muted\">From the child's exit to its release, per parent and per way of \
         release; log2 buckets over microseconds.</p>\n",
    );
    for p in t.parents.iter().filter(|p| !p.latency.is_empty()) {
        w!(out, "<h3>{}</h3>\n<div class=\"hists\">\n", parent_name(p));
        for h in &p.latency {
            histogram(out, h);
        }
        out.push_str("</div>\n");
    }
    out.push_str("</section>\n");
}

fn histogram(out: &mut String, h: &LatencyHistogram) {
    const ROW: f64 = 15.0;
    const LABEL: f64 = 150.0;
    const BAR: f64 = 300.0;
    w!(
        out,
        "<figure class=\"hist\"><p><strong>{}</strong> <span class=\"muted\">({})</span><br>{} release{}",
        Esc(how_label(&h.how)),
        Esc(&h.how),
        group(h.count),
        if h.count == 1 { "" } else { "s" }
    );
    for (name, v) in [("p50", h.p50_us), ("p99", h.p99_us), ("max", h.max_us)] {
        if let Some(us) = v {
            w!(out, " · {name} <strong>{}</strong>", duration_us(us, 3));
        }
    }
    out.push_str("</p>");
    let first = h.buckets.iter().position(|b| b.count > 0);
    let last = h.buckets.iter().rposition(|b| b.count > 0);
    let (Some(first), Some(last)) = (first, last) else {
        out.push_str("<p class=\"empty\">No releases to show.</p></figure>\n");
        return;
    };
    let rows = &h.buckets[first..=last];
    let peak = rows.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
    w!(
        out,
        r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 560 {:.0}" role="img" aria-label="latency histogram">"#,
        rows.len() as f64 * ROW + 4.0
    );
    for (k, b) in rows.iter().enumerate() {
        let y = k as f64 * ROW + 2.0;
        let width = if b.count == 0 {
            0.0
        } else {
            (b.count as f64 / peak * BAR).max(1.0)
        };
        w!(
            out,
            r##"<g><title>{}–{} µs: {}</title><text x="{:.1}" y="{:.1}" text-anchor="end">{} – {}</text><rect x="{:.1}" y="{:.1}" width="{width:.1}" height="{:.1}" fill="#0072B2"/><text x="{:.1}" y="{:.1}">{}</text></g>"##,
            b.low_us,
            b.high_us,
            group(b.count),
            LABEL - 6.0,
            y + 11.0,
            duration_us(b.low_us as f64, 2),
            duration_us(b.high_us.saturating_add(1) as f64, 2),
            LABEL,
            y + 2.0,
            ROW - 4.0,
            LABEL + width + 5.0,
            y + 11.0,
            group(b.count)
        );
    }
    out.push_str("</svg></figure>\n");
}

fn markers_table(out: &mut String, t: &Timeline) {
    out.push_str("<section id=\"markers\">\n<h2>Markers</h2>\n");
    if t.markers.is_empty() {
        out.push_str("<p class=\"empty\">No alerts, SIGCHLD changes, losses, resyncs or gaps were recorded.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table>\n<thead><tr><th>Time (UTC)</th><th>Since start</th><th>Kind</th>\
         <th class=\"num\">PID</th><th>What</th></tr></thead>\n<tbody>\n",
    );
    for m in t.markers.iter().take(MAX_MARKER_ROWS) {
        w!(
            out,
            "<tr class=\"{}\"><td class=\"t\">{} {}</td><td class=\"t\">{}</td><td style=\"color:{}\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
            kind_class(m.kind),
            Utc::of(m.at.unix_ms()).date(),
            Utc::of(m.at.unix_ms()).hms_milli(),
            since(t.start, m.at),
            kind_color(m.kind),
            kind_label(m.kind),
            m.pid.map_or_else(String::new, |p| p.to_string()),
            Esc(&m.text)
        );
    }
    out.push_str("</tbody></table>\n");
    if t.markers.len() > MAX_MARKER_ROWS {
        w!(
            out,
            "<p class=\"muted\">… and {} more markers not listed (all are drawn in the plots).</p>\n",
            group((t.markers.len() - MAX_MARKER_ROWS) as u64)
        );
    }
    out.push_str("</section>\n");
}

/// Timelines for the renderers' tests (here rather than in `views`, which
/// holds data types only).
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::views::timeline::*;

    /// 2024-03-01 12:00:00 UTC.
    pub const T0_UNIX_MS: i64 = 1_709_294_400_000;
    /// The host had been up 50 h when the recording started.
    pub const T0_BOOT_NS: u64 = 50 * 3600 * 1_000_000_000;
    pub const LEAKER: u32 = 4242;
    pub const LEAKER_END: u32 = 28_147;

    /// `secs` after the start of the recording.
    pub fn at(secs: f64) -> Moment {
        Moment {
            boot_ns: T0_BOOT_NS + (secs * 1e9) as u64,
            unix_ns: u64::try_from(T0_UNIX_MS).unwrap_or(0) * 1_000_000 + (secs * 1e9) as u64,
        }
    }

    /// A deterministic pseudo-random sequence (no dependency for test noise).
    pub struct Lcg(pub u64);

    impl Lcg {
        pub fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
    }

    fn hist(how: &str, buckets: &[(u32, u64)], p50: f64, p99: f64, max: f64) -> LatencyHistogram {
        LatencyHistogram {
            how: how.to_string(),
            count: buckets.iter().map(|b| b.1).sum(),
            p50_us: Some(p50),
            p99_us: Some(p99),
            max_us: Some(max),
            buckets: buckets
                .iter()
                .map(|&(slot, count)| LatencyBucket {
                    low_us: if slot == 1 { 0 } else { 1 << (slot - 1) },
                    high_us: (1 << slot) - 1,
                    count,
                })
                .collect(),
        }
    }

    /// A 3-day incident: at t0 a deploy removes the SIGCHLD handler of
    /// `leaky-worker` (pid 4242), which from then on never reaps and grows
    /// ~400 zombies an hour to 28,147; the first alert fires at +15 min;
    /// events are lost once (and resynced) on day 2; `cron` leaves a burst of
    /// zombies that it reaps late; `nginx` reaps promptly.
    pub fn three_day_incident() -> Timeline {
        let tick = 60.0;
        let total = 72.0 * 3600.0;
        let n = (total / tick) as usize + 1;
        let leak_start = 5.0;
        let mut rng = Lcg(42);
        let mut samples = Vec::with_capacity(n);
        let mut leaker_prev = 0u32;
        for i in 0..n {
            let secs = i as f64 * tick;
            let leaker = if i + 1 == n {
                LEAKER_END
            } else if secs < leak_start {
                0
            } else {
                let base = f64::from(LEAKER_END) * (secs - leak_start) / (total - leak_start);
                let jitter = (rng.next() % 4) as f64;
                ((base - jitter).max(0.0) as u32).max(leaker_prev)
            };
            leaker_prev = leaker;
            // cron: a burst on day 2 (from +49 h), reaped 30 min later.
            let burst = secs - 49.0 * 3600.0;
            let cron = if (0.0..1800.0).contains(&burst) {
                (burst / 45.0) as u32
            } else if (1800.0..2100.0).contains(&burst) {
                (40.0 * (2100.0 - burst) / 300.0) as u32
            } else {
                0
            };
            let nginx = (rng.next() % 4) as u32;
            let pending = u64::from(leaker + cron + nginx);
            samples.push(Sample {
                at: at(secs),
                pending_total: pending,
                tasks: Some(612 + pending + rng.next() % 40),
                pids_cgroup: Some(CgroupPoint {
                    path: "/system.slice/leaky-worker.service".to_string(),
                    current: u64::from(leaker) + 14,
                    max: 32_768,
                }),
                per_parent: vec![leaker, cron, nginx],
            });
        }
        let leaker = TimelineParent {
            pid: LEAKER,
            comm: "leaky-worker".to_string(),
            start_ticks: 1_234_567,
            peak_pending: LEAKER_END,
            peak_at: at(total),
            first_zombie_at: Some(at(leak_start)),
            growth_per_s: Some(f64::from(LEAKER_END) / (total - leak_start)),
            pending_at_end: LEAKER_END,
            verdict: Some("leaking: never reaps".to_string()),
            summary: Some(
                "Forks a child per job and never calls wait(): its SIGCHLD handler was \
                 removed at the start, so every child stays a zombie until leaky-worker exits."
                    .to_string(),
            ),
            remediation: vec![
                RemediationStep {
                    action: "Restart leaky-worker.service".to_string(),
                    works: true,
                    unverified: false,
                    why: "its zombies are reparented to init, which reaps them".to_string(),
                },
                RemediationStep {
                    action: "Send SIGCHLD to pid 4242".to_string(),
                    works: true,
                    unverified: true,
                    why: "only helps if a handler that calls wait() is installed again".to_string(),
                },
                RemediationStep {
                    action: "kill -9 the zombies".to_string(),
                    works: false,
                    unverified: false,
                    why: "a zombie is already dead: only its parent's wait() releases it"
                        .to_string(),
                },
            ],
            latency: Vec::new(),
            runs_in: Some(
                "container 4c1f09a2b7d3 (containerd) in pod 7e0b1a52-93c4-4d1e-8f6a-2b9c0d3e4f51 (burstable)".to_owned(),
            ),
        };
        let cron = TimelineParent {
            pid: 2020,
            comm: "cron".to_string(),
            start_ticks: 900,
            peak_pending: 40,
            peak_at: at(49.0 * 3600.0 + 1800.0),
            first_zombie_at: Some(at(49.0 * 3600.0 + 45.0)),
            growth_per_s: Some(40.0 / 1800.0),
            pending_at_end: 0,
            verdict: Some("reaps late".to_string()),
            summary: Some("Reaps its children in batches, up to 35 min late.".to_string()),
            remediation: Vec::new(),
            latency: vec![hist(
                "parent_wait",
                &[(29, 10), (30, 20), (31, 10)],
                600e6,
                1900e6,
                2100e6,
            )],
            runs_in: None,
        };
        let nginx = TimelineParent {
            pid: 1337,
            comm: "nginx".to_string(),
            start_ticks: 800,
            peak_pending: 3,
            peak_at: at(3600.0),
            first_zombie_at: Some(at(61.0)),
            growth_per_s: None,
            pending_at_end: 2,
            verdict: Some("reaps promptly".to_string()),
            summary: None,
            remediation: Vec::new(),
            latency: vec![
                hist(
                    "parent_wait",
                    &[(5, 5), (6, 120), (7, 800), (8, 300), (9, 20), (11, 2)],
                    96.0,
                    410.0,
                    1900.0,
                ),
                hist("freed", &[(12, 3), (13, 1)], 2600.0, 5000.0, 5100.0),
            ],
            runs_in: None,
        };
        let marker = |secs: f64, kind, pid, text: &str| Marker {
            at: at(secs),
            kind,
            pid,
            text: text.to_string(),
        };
        let markers = vec![
            marker(
                0.0,
                MarkerKind::SigchldChange,
                Some(LEAKER),
                "SIGCHLD handler removed (handler → default)",
            ),
            marker(
                900.0,
                MarkerKind::Alert,
                Some(LEAKER),
                "pid 4242 (leaky-worker): 98 zombies, growing ≈ 390 / hour",
            ),
            marker(
                6.0 * 3600.0,
                MarkerKind::Alert,
                Some(LEAKER),
                "pid 4242 (leaky-worker): 2,340 zombies",
            ),
            marker(
                27.0 * 3600.0 + 12.0,
                MarkerKind::EventsLost,
                None,
                "1,204 events lost (ring buffer full)",
            ),
            marker(
                27.0 * 3600.0 + 42.0,
                MarkerKind::Resync,
                None,
                "resync with /proc corrected 3 entries",
            ),
            marker(
                68.0 * 3600.0,
                MarkerKind::Alert,
                Some(LEAKER),
                "cgroup /system.slice/leaky-worker.service: pids.max 80 % used",
            ),
        ];
        let mut zombies = Vec::new();
        for k in 0..500u32 {
            zombies.push(ZombieSpan {
                pid: 10_000 + k,
                parent_pid: LEAKER,
                parent_comm: "leaky-worker".to_string(),
                exit_at: at(leak_start + f64::from(k) * 9.2),
                released_at: None,
                how: None,
                exit_time_exact: true,
            });
        }
        for k in 0..40u32 {
            let exit = 49.0 * 3600.0 + f64::from(k) * 45.0;
            zombies.push(ZombieSpan {
                pid: 60_000 + k,
                parent_pid: 2020,
                parent_comm: "cron".to_string(),
                exit_at: at(exit),
                released_at: Some(at(49.0 * 3600.0 + 1800.0 + f64::from(k) * 7.5)),
                how: Some("parent_wait".to_string()),
                exit_time_exact: true,
            });
        }
        for k in 0..100u32 {
            let exit = 61.0 + f64::from(k) * 2500.0;
            zombies.push(ZombieSpan {
                pid: 70_000 + k,
                parent_pid: 1337,
                parent_comm: "nginx".to_string(),
                exit_at: at(exit),
                released_at: Some(at(exit + 0.0001)),
                how: Some("parent_wait".to_string()),
                exit_time_exact: true,
            });
        }
        zombies.sort_by_key(|z| z.exit_at.boot_ns);
        Timeline {
            hostname: "app-17.prod.example".to_string(),
            kernel: "6.8.0-45-generic".to_string(),
            pid_max: 4_194_304,
            threads_max: Some(126_592),
            start: at(0.0),
            end: at(total),
            samples,
            parents: vec![leaker, cron, nginx],
            markers,
            zombies,
            zombies_truncated: u64::from(LEAKER_END) - 500,
            notes: vec![
                "1,204 events lost at 2024-03-02 15:00:12 UTC (ring buffer full); the resync \
                 30 s later corrected 3 entries"
                    .to_string(),
            ],
        }
    }

    /// One sample, a parent and a marker whose names try to break the page.
    pub fn hostile_one_sample() -> Timeline {
        let hostile = "<script>&\"'";
        Timeline {
            hostname: format!("{hostile}host"),
            kernel: "</style><b>".to_string(),
            pid_max: 32_768,
            threads_max: None,
            start: at(0.0),
            end: at(0.0),
            samples: vec![Sample {
                at: at(0.0),
                pending_total: 3,
                tasks: Some(200),
                pids_cgroup: None,
                per_parent: vec![3],
            }],
            parents: vec![TimelineParent {
                pid: 66,
                comm: hostile.to_string(),
                peak_pending: 3,
                peak_at: at(0.0),
                pending_at_end: 3,
                verdict: Some(format!("{hostile}verdict")),
                summary: Some(format!("{hostile}summary\u{1b}[31m")),
                remediation: vec![RemediationStep {
                    action: hostile.to_string(),
                    works: false,
                    unverified: false,
                    why: hostile.to_string(),
                }],
                latency: vec![LatencyHistogram {
                    how: hostile.to_string(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            markers: vec![Marker {
                at: at(0.0),
                kind: MarkerKind::Alert,
                pid: Some(66),
                text: hostile.to_string(),
            }],
            zombies: vec![ZombieSpan {
                pid: 67,
                parent_pid: 66,
                parent_comm: hostile.to_string(),
                exit_at: at(0.0),
                released_at: None,
                how: None,
                exit_time_exact: false,
            }],
            zombies_truncated: 0,
            notes: vec![hostile.to_string()],
        }
    }

    /// `samples` one-second samples of 8 parents (waves with noise, one
    /// leaking steadily) and 2,000 markers: the size and speed case.
    pub fn large(samples: usize) -> Timeline {
        let mut rng = Lcg(7);
        let mut parents: Vec<TimelineParent> = (0..8u32)
            .map(|k| TimelineParent {
                pid: 1000 + k,
                comm: format!("worker-{k}"),
                ..Default::default()
            })
            .collect();
        let mut out = Vec::with_capacity(samples);
        for i in 0..samples {
            let per_parent: Vec<u32> = (0..8u32)
                .map(|k| {
                    let x = i as f64 / samples as f64;
                    let v = if k == 0 {
                        30_000.0 * x
                    } else {
                        let amp = 4000.0 / f64::from(k);
                        amp * (1.0 + (x * std::f64::consts::TAU * f64::from(k)).sin())
                    };
                    (v + (rng.next() % 200) as f64) as u32
                })
                .collect();
            let total: u64 = per_parent.iter().map(|v| u64::from(*v)).sum();
            out.push(Sample {
                at: at(i as f64),
                pending_total: total,
                tasks: Some(1000 + total + rng.next() % 100),
                pids_cgroup: None,
                per_parent,
            });
        }
        for (k, p) in parents.iter_mut().enumerate() {
            for s in &out {
                if s.per_parent[k] > p.peak_pending {
                    p.peak_pending = s.per_parent[k];
                    p.peak_at = s.at;
                }
            }
            p.pending_at_end = out.last().map_or(0, |s| s.per_parent[k]);
        }
        let markers = (0..2000)
            .map(|k| Marker {
                at: at(k as f64 * samples as f64 / 2000.0),
                kind: if k % 2 == 0 {
                    MarkerKind::Alert
                } else {
                    MarkerKind::Resync
                },
                pid: Some(1000),
                text: format!("marker {k}"),
            })
            .collect();
        Timeline {
            hostname: "big".to_string(),
            kernel: "6.1".to_string(),
            pid_max: 4_194_304,
            threads_max: None,
            start: at(0.0),
            end: at((samples.max(1) - 1) as f64),
            samples: out,
            parents,
            markers,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::views::timeline::*;

    /// Checks that every element opened is closed, in order (void elements
    /// and self-closing tags aside): catches markup broken by a bad escape
    /// or a forgotten close tag.
    fn assert_balanced(html: &str) {
        const VOID: [&str; 6] = ["meta", "br", "hr", "img", "input", "link"];
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = html;
        while let Some(open) = rest.find('<') {
            rest = &rest[open + 1..];
            let close = rest.find('>').expect("unterminated tag");
            let tag = &rest[..close];
            rest = &rest[close + 1..];
            if tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let top = stack.pop().unwrap_or_else(|| panic!("stray </{name}>"));
                assert_eq!(top, name, "mismatched close tag");
                continue;
            }
            let name = tag
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .expect("tag name");
            if tag.ends_with('/') || VOID.contains(&name) {
                continue;
            }
            if name == "style" {
                // CSS is raw text: skip to its end tag.
                let end = rest.find("</style>").expect("unterminated style");
                rest = &rest[end + "</style>".len()..];
                continue;
            }
            stack.push(name);
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    /// Everything a page must be, whatever the timeline.
    fn assert_self_contained(html: &str) {
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(!html.contains("<script"), "no script of any kind");
        assert!(!html.contains("src="), "nothing loaded");
        assert!(!html.contains("@import"));
        assert!(!html.contains("https://"));
        for (i, _) in html.match_indices("http://") {
            assert!(
                html[i..].starts_with("http://www.w3.org/2000/svg\""),
                "only the SVG namespace: {}",
                &html[i..(i + 60).min(html.len())]
            );
        }
        for (i, _) in html.match_indices("url(") {
            assert!(html[i..].starts_with("url(#"), "only in-page references");
        }
        let mut ids: Vec<&str> = html
            .split(" id=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "ids are unique");
        assert_balanced(html);
    }

    /// The points of the last polyline carrying `attr`.
    fn polyline_points(html: &str, attr: &str) -> Vec<(f64, f64)> {
        let start = html
            .match_indices("<polyline")
            .map(|(i, _)| i)
            .filter(|&i| {
                html[i..]
                    .split('>')
                    .next()
                    .is_some_and(|tag| tag.contains(attr))
            })
            .last()
            .unwrap_or_else(|| panic!("no polyline with {attr}"));
        let tag = html[start..].split('>').next().expect("tag");
        let points = tag
            .split("points=\"")
            .nth(1)
            .expect("points")
            .split('"')
            .next()
            .expect("end");
        points
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').expect("x,y");
                (x.parse().expect("x"), y.parse().expect("y"))
            })
            .collect()
    }

    #[test]
    fn three_day_incident_tells_the_story() {
        let t = three_day_incident();
        let html = render(&t);
        assert_self_contained(&html);
        // The headline: worst parent, counts, growth, the handler removal,
        // alerts, PID pressure, the loss.
        let summary = &html[html.find("id=\"summary\"").expect("summary")
            ..html.find("id=\"zombies\"").expect("plot")];
        assert!(summary.contains("pid 4242 <span class=\"comm\">leaky-worker</span>"));
        assert!(summary.contains("28,147 zombies"));
        assert!(
            summary.contains("≈ 391 / hour"),
            "growth in a unit people picture"
        );
        assert!(summary.contains("2024-03-01 12:00:05 UTC"), "leak start");
        assert!(summary.contains("SIGCHLD handler removed"));
        assert!(summary.contains("3 alerts"));
        assert!(summary.contains("2024-03-01 12:15:00 UTC"), "first alert");
        assert!(summary.contains("<strong>14 min 55 s</strong> after the leak started"));
        assert!(summary.contains("3 d"), "duration");
        // Closest limit: the cgroup, 28,161 of 32,768.
        assert!(summary.contains("85.9 %"));
        assert!(summary.contains("/system.slice/leaky-worker.service"));
        assert!(html.contains("class=\"warn\""), "loss shown prominently");
        assert!(
            html.find("class=\"warn\"") < html.find("id=\"summary\""),
            "before the summary"
        );

        // The leaker's line ends at the top right of the plot.
        let points = polyline_points(&html, "data-pid=\"4242\"");
        let &(x_last, y_last) = points.last().expect("points");
        let f = frame_for(
            4,
            PLOT1_HEIGHT,
            nice_scale(f64::from(LEAKER_END) + 3.0, 5.0).1,
        );
        assert!(
            (x_last - (WIDTH - RIGHT)).abs() < 0.5,
            "ends at the right edge: {x_last}"
        );
        let min_y = points.iter().map(|p| p.1).fold(f64::MAX, f64::min);
        assert_eq!(y_last, min_y, "its highest point is its last");
        assert!(
            y_last - f.top < 0.1 * (f.bottom - f.top),
            "near the top: {y_last} vs {}",
            f.top
        );
        assert!(
            points.len() <= 4 * (WIDTH - LEFT - RIGHT) as usize + 8,
            "downsampled"
        );
        // The other parents are drawn too, the total not (it adds nothing).
        assert!(html.contains("data-pid=\"2020\""));
        assert!(html.contains("data-pid=\"1337\""));
        assert!(!html.contains("data-series=\"total\""));

        // Markers: symbols in both plots, tooltips, the table.
        assert_eq!(
            html.matches("<g class=\"marker sigchld_change\">").count(),
            2
        );
        assert!(html.matches("<g class=\"marker alert\">").count() >= 4);
        assert!(
            html.contains(
                "<g class=\"marker events_lost\"><title>2024-03-02 15:00:12 UTC (+1 d 3 h)"
            )
        );
        assert!(html.contains("<tr class=\"resync\">"));
        // Plot 2: the cgroup limit is drawn, pid_max and threads-max are off the scale.
        assert!(html.contains("data-series=\"cgroup-max\""));
        assert!(html.contains("pid_max 4,194,304 is far above"));
        // Tables.
        assert!(html.contains("✓ works"));
        assert!(html.contains("? unverified"));
        assert!(html.contains("✗ won't work"));
        assert!(html.contains("p99 <strong>410 µs</strong>"));
        assert!(html.contains("27,647 more left out</strong> by the recording"));
        // Day labels on the time axis.
        for day in ["2024-03-02", "2024-03-03", "2024-03-04"] {
            assert!(
                html.contains(&format!("font-weight=\"600\">{day}</text>")),
                "{day}"
            );
        }
    }

    #[test]
    fn hostile_names_are_escaped() {
        let html = render(&hostile_one_sample());
        assert_self_contained(&html);
        assert!(!html.contains("<script>&\"'"));
        assert!(!html.contains("</style><b>"));
        assert!(html.contains("&lt;script&gt;&amp;&quot;&#39;"));
        assert!(
            html.contains("summary\\x1b[31m"),
            "control characters made visible"
        );
        // One sample: a point, not an invisible one-point line.
        let mid = (LEFT + WIDTH - RIGHT) / 2.0;
        assert!(
            html.contains(&format!(
                r##"<circle cx="{mid:.1}" cy="{:.1}" r="2.5" fill="#D55E00" data-pid="66"/>"##,
                frame_for(1, PLOT1_HEIGHT, 3.0).y(3.0)
            )),
            "the single sample drawn as a dot in the middle"
        );
    }

    #[test]
    fn empty_timeline_renders_text_not_broken_svg() {
        let html = render(&Timeline::default());
        assert_self_contained(&html);
        assert!(!html.contains("<svg class=\"plot\""));
        assert!(html.contains("No samples were recorded"));
        assert!(html.contains("No parent left unreaped zombies"));
        assert!(html.contains("No alert fired"));
        assert!(!html.contains("NaN") && !html.contains("inf"));
    }

    #[test]
    fn samples_without_parents_plot_the_total() {
        let mut t = three_day_incident();
        t.parents.clear();
        for s in &mut t.samples {
            s.per_parent.clear();
        }
        let html = render(&t);
        assert_self_contained(&html);
        assert!(html.contains("data-series=\"total\""));
        assert!(html.contains("No parent left zombies during the recording."));
    }

    #[test]
    fn large_timeline_stays_small_and_keeps_peaks() {
        let mut t = large(100_000);
        // One spike of one sample in the middle must survive downsampling.
        let s = &mut t.samples[50_000];
        s.pending_total += 99_999 - u64::from(s.per_parent[3]);
        s.per_parent[3] = 99_999;
        let started = std::time::Instant::now();
        let html = render(&t);
        let took = started.elapsed();
        assert_self_contained(&html);
        eprintln!("100k samples × 8 parents: {} bytes in {took:?}", html.len());
        assert!(html.len() < 2_000_000, "{} bytes", html.len());
        let points = polyline_points(&html, "data-pid=\"1003\"");
        let top = points.iter().map(|p| p.1).fold(f64::MAX, f64::min);
        // The total is the sum of the parents: not drawn, so the scale is
        // the highest parent's.
        assert!(!html.contains("data-series=\"total\""));
        let f = frame_for(2, PLOT1_HEIGHT, nice_scale(99_999.0, 5.0).1);
        assert!((top - f.y(99_999.0)).abs() < 0.2, "spike kept: {top}");
        assert!(html.contains("… and 1,000 more markers not listed"));
    }

    #[test]
    fn gaps_in_the_samples_break_the_lines() {
        let mut t = three_day_incident();
        // Drop 6 hours of samples on day 2.
        t.samples.retain(|s| {
            let h = (s.at.boot_ns - T0_BOOT_NS) as f64 / 3.6e12;
            !(30.0..36.0).contains(&h)
        });
        let html = render(&t);
        assert_self_contained(&html);
        assert!(
            html.matches("data-pid=\"4242\"").count() >= 2,
            "line broken"
        );
        assert!(html.contains("<rect class=\"hole\""));
        assert!(html.contains("1 stretch without samples"));
    }

    #[test]
    fn formatting() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(28_147), "28,147");
        assert_eq!(group(4_194_304), "4,194,304");
        assert_eq!(rate(400.0 / 3600.0), "≈ 400 / hour");
        assert_eq!(rate(25.0), "≈ 25 / s");
        assert_eq!(rate(2.5), "≈ 150 / min");
        assert_eq!(rate(1.0 / 3600.0), "≈ 24 / day");
        assert_eq!(rate(0.5), "≈ 30 / min");
        assert_eq!(rate(1.0 / 86_400.0 / 2.0), "< 1 / day");
        assert_eq!(duration_ns(900_000_000), "900 ms");
        assert_eq!(duration_ns(42_000_000_000), "42 s");
        assert_eq!(duration_ns(930_000_000_000), "15 min 30 s");
        assert_eq!(duration_ns(72 * 3_600_000_000_000), "3 d");
        assert_eq!(duration_us(410.0, 3), "410 µs");
        assert_eq!(duration_us(2048.0, 2), "2 ms");
        assert_eq!(duration_us(32_768.0, 2), "33 ms");
        let u = Utc::of(T0_UNIX_MS + 5_123);
        assert_eq!(
            (u.date(), u.hms_milli()),
            ("2024-03-01".to_string(), "12:00:05.123".to_string())
        );
        assert_eq!(Utc::of(0).date(), "1970-01-01");
        assert_eq!(Utc::of(-1).hms_milli(), "23:59:59.999");
        assert_eq!(Utc::of(951_782_400_000).date(), "2000-02-29");
        assert_eq!(Utc::of(i64::MIN).hms().len(), 8, "no panic on nonsense");
        assert_eq!(nice_scale(28_147.0, 5.0), (10_000.0, 30_000.0));
        assert_eq!(nice_scale(3.0, 5.0), (1.0, 3.0));
        assert_eq!(nice_scale(0.0, 5.0), (1.0, 1.0));
    }

    /// Writes the 3-day fixture's page (and the Perfetto trace) to look at
    /// in a browser: `cargo test -p zombie-trace -- --ignored write_example`,
    /// into `$ZOMBIE_TRACE_EXAMPLE_DIR` or the temp directory.
    #[test]
    #[ignore = "writes files for a human to look at"]
    fn write_example() {
        let dir = std::env::var_os("ZOMBIE_TRACE_EXAMPLE_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let t = three_day_incident();
        for (name, body) in [
            ("report-example.html", render(&t)),
            ("report-hostile.html", render(&hostile_one_sample())),
            ("report-empty.html", render(&Timeline::default())),
            ("report-large.html", render(&large(100_000))),
            (
                "report-example.json",
                crate::render::perfetto::render(&t).to_string(),
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, &body).expect("write");
            eprintln!("{}: {} bytes", path.display(), body.len());
        }
    }
}
