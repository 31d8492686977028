//! Text rendering shared by the views: units, ages, times, warnings.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::model::LostCounts;

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(now: SystemTime) -> String {
    humantime::format_rfc3339_millis(now).to_string()
}

/// Warning lines for events the kernel could not deliver.
pub fn write_lost_warnings(out: &mut String, lost: LostCounts) {
    if lost.ring_full > 0 {
        let _ = writeln!(
            out,
            "  warning: the kernel dropped {} events (ring buffer full): counts may be off until the next resync with /proc; raise --ring-bytes",
            lost.ring_full
        );
    }
    if lost.read_failed + lost.wait_map_full > 0 {
        let _ = writeln!(
            out,
            "  warning: {} events could not be built in the kernel ({} field reads failed, {} wait calls unmatched): run `zombie-trace check`",
            lost.read_failed + lost.wait_map_full,
            lost.read_failed,
            lost.wait_map_full
        );
    }
}

/// `1d3h`, `4m12s`, `850ms`.
pub fn format_age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{}.{}s", s, (ms % 1000) / 100),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// [`format_age`], with `>` in front when the age is a lower bound (a
/// zombie older than tracing).
pub fn format_age_bound(ms: u64, exact: bool) -> String {
    let age = format_age(ms);
    if exact { age } else { format!(">{age}") }
}

/// `1.5us`, `20.12ms`, `1.234s`, then [`format_age`].
pub fn format_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.1}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else if us < 60_000_000.0 {
        format!("{:.3}s", us / 1_000_000.0)
    } else {
        format_age((us / 1000.0) as u64)
    }
}
