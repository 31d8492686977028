//! The text `report` prints: what a reviewer asks first about a recorded
//! incident — when, which parent, how fast, what the on-call saw, how close
//! fork() came to failing, and whether the recording can be trusted.

use std::fmt::Write as _;

use crate::model::Moment;
use crate::render::text::{format_age, timestamp};
use crate::views::timeline::{MarkerKind, Timeline};

fn at(m: Moment) -> String {
    timestamp(m.wall())
}

fn span(from: Moment, to: Moment) -> String {
    format_age(to.boot_ns.saturating_sub(from.boot_ns) / 1_000_000)
}

/// The reviewer's summary of `t`.
pub fn render(t: &Timeline) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Recording of {} (kernel {}): {} to {} ({})",
        t.hostname,
        t.kernel,
        at(t.start),
        at(t.end),
        span(t.start, t.end)
    );
    for note in &t.notes {
        let _ = writeln!(out, "  WARNING: {note}");
    }
    let lost: Vec<_> = t
        .markers
        .iter()
        .filter(|m| m.kind == MarkerKind::EventsLost)
        .collect();
    if lost.is_empty() && t.notes.is_empty() {
        let _ = writeln!(
            out,
            "  Complete: no event was lost, no part of the file is damaged."
        );
    }
    for m in &lost {
        let _ = writeln!(out, "  LOSS at {}: {}", at(m.at), m.text);
    }

    let _ = writeln!(out, "\nWorst parents (by peak of zombies owed):");
    if t.parents.is_empty() {
        let _ = writeln!(out, "  none: no process owed a reap during the recording.");
    }
    for p in &t.parents {
        let started = p.first_zombie_at.map_or_else(|| "unknown".to_owned(), at);
        let growth = p.growth_per_s.map_or_else(
            || "-".to_owned(),
            |g| format!("{:.2}/s ({:.0}/h)", g, g * 3600.0),
        );
        let _ = writeln!(
            out,
            "  pid {} ({}): peak {} zombies at {}; first zombie {}; growth {}; {} still owed at the end",
            p.pid,
            p.comm,
            p.peak_pending,
            at(p.peak_at),
            started,
            growth,
            p.pending_at_end
        );
        if let (Some(verdict), Some(summary)) = (&p.verdict, &p.summary) {
            let _ = writeln!(out, "    why ({verdict}): {summary}");
        }
        if let Some(step) = p.remediation.iter().find(|s| s.works) {
            let _ = writeln!(out, "    do: {}", step.action);
        }
    }

    let alerts: Vec<_> = t
        .markers
        .iter()
        .filter(|m| m.kind == MarkerKind::Alert)
        .collect();
    let _ = writeln!(out, "\nAlerts ({}):", alerts.len());
    for m in &alerts {
        let _ = writeln!(out, "  {}  {}", at(m.at), m.text);
    }
    let handler: Vec<_> = t
        .markers
        .iter()
        .filter(|m| m.kind == MarkerKind::SigchldChange)
        .collect();
    let _ = writeln!(
        out,
        "\nSIGCHLD handler changes of parents that owed zombies ({}):",
        handler.len()
    );
    for m in &handler {
        let pid = m.pid.map_or_else(String::new, |p| format!("pid {p} "));
        let _ = writeln!(out, "  {}  {pid}{}", at(m.at), m.text);
    }

    let _ = writeln!(out, "\nPID pressure:");
    match t
        .samples
        .iter()
        .filter_map(|s| s.tasks.map(|tasks| (tasks, s.at)))
        .max_by_key(|&(tasks, _)| tasks)
    {
        Some((tasks, when)) => {
            let _ = writeln!(
                out,
                "  peak {} tasks at {}: {:.1}% of pid_max {} ({} PIDs to spare){}",
                tasks,
                at(when),
                100.0 * tasks as f64 / f64::from(t.pid_max.max(1)),
                t.pid_max,
                u64::from(t.pid_max).saturating_sub(tasks),
                t.threads_max.map_or_else(String::new, |m| format!(
                    ", {:.1}% of threads-max {}",
                    100.0 * tasks as f64 / m.max(1) as f64,
                    m
                ))
            );
        }
        None => {
            let _ = writeln!(out, "  no task counts recorded");
        }
    }
    if let Some((cg, when)) = t
        .samples
        .iter()
        .filter_map(|s| s.pids_cgroup.as_ref().map(|c| (c, s.at)))
        .min_by_key(|(c, _)| c.max.saturating_sub(c.current))
    {
        let _ = writeln!(
            out,
            "  closest to a cgroup limit: {} at {}/{} pids.max at {} ({} to spare)",
            cg.path,
            cg.current,
            cg.max,
            at(when),
            cg.max.saturating_sub(cg.current)
        );
    }
    let resyncs = t
        .markers
        .iter()
        .filter(|m| m.kind == MarkerKind::Resync)
        .count();
    if resyncs > 0 {
        let _ = writeln!(
            out,
            "\nThe ledger was resynced with /proc {resyncs} times (after lost events, or when a check found /proc disagreeing with it)."
        );
    }
    let _ = writeln!(
        out,
        "\nZombie lifetimes recorded: {}{}",
        t.zombies.len(),
        if t.zombies_truncated > 0 {
            format!(" (+{} not kept)", t.zombies_truncated)
        } else {
            String::new()
        }
    );
    out
}
