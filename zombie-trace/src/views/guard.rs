//! What `run -- CMD` judges: the process tree under the guard (the `run`
//! process is a child subreaper, so everything CMD starts, and every
//! orphan of it, stays below it; nothing else on the host does). A
//! violation is a zombie in that tree left unreaped longer than the grace,
//! a parent owing more than the allowed number of zombies at any moment,
//! or (if asked) a slow p99 reap latency. The guard itself reaps what comes
//! back to it and is never judged.

use std::fmt::Write as _;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::engine::Context;
use crate::model::{Change, ExitTime, ProcKey};
use crate::views::diagnosis::{GrowthTracker, diagnose_traced};
use crate::views::latency::Histogram;

/// What counts as a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardRules {
    /// A zombie may stay unreaped this long.
    pub grace_ns: u64,
    /// At most this many zombies owed by one parent at any moment.
    pub max_pending: Option<u32>,
    /// The tree's p99 reap latency at most this.
    pub max_reap_latency_ns: Option<u64>,
}

/// One parent that broke a rule.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Violation {
    /// `unreaped`, `max_pending` or `reap_latency`.
    pub kind: &'static str,
    pub parent: Option<ParentId>,
    /// The most zombies it owed at once.
    pub zombies: u32,
    /// The longest any of its zombies was seen unreaped.
    pub longest_ms: u64,
    /// The diagnosis's cause (`never_waits`, ...), when it could be made.
    pub verdict: Option<&'static str>,
    pub summary: String,
}

/// Who a parent is.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ParentId {
    pub pid: u32,
    pub comm: String,
    pub cmdline: Option<String>,
    pub start_ticks: u64,
    /// Its SIGCHLD action, as traced or read.
    pub sigchld: &'static str,
    pub wait_calls: u64,
    /// Where it runs, in words (its container, unit or cgroup), when known.
    pub runs_in: Option<String>,
}

/// Reap-latency figures for the whole tree.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
}

/// The guard's judgement, before the command's own status is added.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Judgement {
    pub violations: Vec<Violation>,
    pub reap_latency: LatencySummary,
    /// Processes of the tree (the guard excluded): every one seen alive at
    /// a look, and every one released by a process of the tree.
    pub processes: u64,
    pub lost_events: u64,
    pub complete: bool,
}

/// Follows the tree below the guard and records who breaks the rules.
#[derive(Debug)]
pub struct GuardView {
    guard_pid: u32,
    rules: GuardRules,
    guard: Option<ProcKey>,
    members: FxHashSet<ProcKey>,
    /// Releases since the last look at the tree: (reaper, child, latency).
    releases: Vec<(ProcKey, ProcKey, u64)>,
    latency: Histogram,
    offenders: FxHashMap<(ProcKey, &'static str), Violation>,
    growth: GrowthTracker,
    /// A process of the tree other than the guard was alive at the last look.
    tree_alive: bool,
    lost: u64,
    complete: bool,
}

impl GuardView {
    pub fn new(guard_pid: u32, rules: GuardRules) -> Self {
        Self {
            guard_pid,
            rules,
            guard: None,
            members: FxHashSet::default(),
            releases: Vec::new(),
            latency: Histogram::default(),
            offenders: FxHashMap::default(),
            growth: GrowthTracker::default(),
            tree_alive: false,
            lost: 0,
            complete: true,
        }
    }

    /// Feeds one ledger change.
    pub fn on_change(&mut self, change: &Change) {
        if let Change::Released {
            reaper,
            child,
            exited: ExitTime::At(exit_ns),
            released_ns,
            ..
        } = *change
        {
            self.releases
                .push((reaper, child, released_ns.saturating_sub(exit_ns)));
        }
    }

    /// Whether a process of the tree (the guard excluded) is alive.
    pub fn tree_alive(&self) -> bool {
        self.tree_alive
    }

    /// Looks at the tree as it stands: members, latencies, violations.
    pub fn observe(&mut self, ctx: &mut Context<'_>) {
        self.lost = ctx.health.lost.total();
        self.complete = ctx.health.complete();
        let Some(guard) = self
            .guard
            .or_else(|| ctx.ledger.find_pid(self.guard_pid).map(|p| p.key))
        else {
            return;
        };
        self.guard = Some(guard);
        // The tree, guard first.
        let mut tree = vec![guard];
        let mut i = 0;
        while let Some(&key) = tree.get(i) {
            tree.extend(ctx.ledger.children(&key).map(|c| c.key));
            i += 1;
        }
        self.tree_alive = tree[1..]
            .iter()
            .any(|k| ctx.ledger.get(k).is_some_and(|p| !p.is_zombie()));
        self.members.extend(tree[1..].iter().copied());
        for (reaper, child, ns) in self.releases.drain(..) {
            if reaper == guard || self.members.contains(&reaper) {
                self.latency.record(ns);
                // Lived and died between two looks: still of the tree.
                self.members.insert(child);
            }
        }
        let now = ctx.now.boot_ns;
        for &key in &tree[1..] {
            let Some(p) = ctx.ledger.get(&key) else {
                continue;
            };
            if p.stats.pending == 0 {
                continue;
            }
            let oldest_ms = ctx
                .ledger
                .oldest_zombie(&key)
                .map_or(0, |t| now.saturating_sub(ctx.ledger.exit_ns(t)) / 1_000_000);
            let mut broke = Vec::new();
            if oldest_ms * 1_000_000 > self.rules.grace_ns {
                broke.push("unreaped");
            }
            if self
                .rules
                .max_pending
                .is_some_and(|max| p.stats.pending > max)
            {
                broke.push("max_pending");
            }
            for kind in broke {
                let pending = p.stats.pending;
                if let Some(v) = self.offenders.get_mut(&(key, kind)) {
                    v.zombies = v.zombies.max(pending);
                    v.longest_ms = v.longest_ms.max(oldest_ms);
                    continue;
                }
                // Cold path: the first time a parent breaks a rule.
                let facts = ctx.host.process(key.pid);
                let diagnosis = diagnose_traced(ctx, key.pid, Some(&self.growth));
                let summary = diagnosis.as_ref().map_or_else(
                    || format!("PID {} owes {pending} zombies", key.pid),
                    |d| d.summary.clone(),
                );
                self.offenders.insert(
                    (key, kind),
                    Violation {
                        kind,
                        parent: Some(ParentId {
                            pid: key.pid,
                            comm: p.comm.as_str_lossy(),
                            cmdline: facts.and_then(|f| f.cmdline),
                            start_ticks: key.start_ticks,
                            sigchld: diagnosis
                                .as_ref()
                                .map_or(p.sigchld.as_str(), |d| d.sigchld.action),
                            wait_calls: p.stats.wait_calls,
                            runs_in: diagnosis
                                .as_ref()
                                .and_then(|d| d.runs_in.as_ref())
                                .and_then(|a| a.describe()),
                        }),
                        zombies: pending,
                        longest_ms: oldest_ms,
                        verdict: diagnosis.as_ref().map(|d| d.verdict),
                        summary,
                    },
                );
            }
        }
        self.growth.sample(ctx.ledger, now);
    }

    /// The judgement as it stands.
    pub fn judgement(&self) -> Judgement {
        let us = |ns: u64| ns as f64 / 1e3;
        let reap_latency = LatencySummary {
            count: self.latency.count(),
            p50_us: self.latency.percentile(0.5).map(us),
            p90_us: self.latency.percentile(0.9).map(us),
            p99_us: self.latency.percentile(0.99).map(us),
            max_us: self.latency.max_ns().map(us),
        };
        let mut violations: Vec<Violation> = self.offenders.values().cloned().collect();
        violations.sort_by(|a, b| {
            b.zombies
                .cmp(&a.zombies)
                .then(b.longest_ms.cmp(&a.longest_ms))
                .then(a.kind.cmp(b.kind))
        });
        if let (Some(max), Some(p99)) = (
            self.rules.max_reap_latency_ns,
            self.latency.percentile(0.99),
        ) && p99 > max
        {
            violations.push(Violation {
                kind: "reap_latency",
                parent: None,
                zombies: 0,
                longest_ms: p99 / 1_000_000,
                verdict: None,
                summary: format!(
                    "p99 reap latency {:.1} ms is above the allowed {:.1} ms",
                    us(p99) / 1e3,
                    us(max) / 1e3
                ),
            });
        }
        Judgement {
            violations,
            reap_latency,
            processes: self.members.len() as u64,
            lost_events: self.lost,
            complete: self.complete,
        }
    }
}

/// How the command ended.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    Code(i32),
    Signal(i32),
}

impl CommandStatus {
    /// The shell's convention: the code, or 128 + the signal.
    pub fn shell_code(&self) -> i32 {
        match *self {
            CommandStatus::Code(c) => c,
            CommandStatus::Signal(s) => 128 + s,
        }
    }
}

/// The verdict `run` prints. JSON field names are a contract.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Verdict {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub pass: bool,
    pub command: Vec<String>,
    pub status: CommandStatus,
    /// What `run` exits with.
    pub exit_code: i32,
    pub grace_ms: u64,
    pub max_pending: Option<u32>,
    pub max_reap_latency_ms: Option<f64>,
    #[serde(flatten)]
    pub judgement: Judgement,
}

impl Verdict {
    /// The command's status when nothing was violated; with a violation,
    /// `violation_exit` unless the command failed itself (its status wins).
    pub fn new(
        command: Vec<String>,
        status: CommandStatus,
        rules: GuardRules,
        judgement: Judgement,
        violation_exit: i32,
    ) -> Self {
        let pass = judgement.violations.is_empty();
        let own = status.shell_code();
        let exit_code = if pass || own != 0 {
            own
        } else {
            violation_exit
        };
        Self {
            kind: "verdict",
            pass,
            command,
            status,
            exit_code,
            grace_ms: rules.grace_ns / 1_000_000,
            max_pending: rules.max_pending,
            max_reap_latency_ms: rules.max_reap_latency_ns.map(|ns| ns as f64 / 1e6),
            judgement,
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let status = match self.status {
            CommandStatus::Code(c) => format!("exited with status {c}"),
            CommandStatus::Signal(s) => format!("was killed by signal {s}"),
        };
        let _ = writeln!(
            out,
            "zombie-trace: `{}` {status}; {} processes in its tree; {}",
            shell_words(&self.command),
            self.judgement.processes,
            if self.pass {
                "every child was reaped in time: PASS".to_owned()
            } else {
                format!("{} violation(s): FAIL", self.judgement.violations.len())
            }
        );
        for v in &self.judgement.violations {
            match &v.parent {
                Some(p) => {
                    let _ = writeln!(
                        out,
                        "  {}: PID {} ({}) held {} zombies, one for {} ms (grace {} ms); SIGCHLD {}, {} wait calls",
                        v.kind,
                        p.pid,
                        p.comm,
                        v.zombies,
                        v.longest_ms,
                        self.grace_ms,
                        p.sigchld,
                        p.wait_calls
                    );
                    if let Some(cmdline) = &p.cmdline {
                        let _ = writeln!(out, "    started as: {cmdline}");
                    }
                    if let Some(place) = &p.runs_in {
                        let _ = writeln!(out, "    runs in {place}");
                    }
                    let _ = writeln!(
                        out,
                        "    why{}: {}",
                        v.verdict.map_or_else(String::new, |c| format!(" ({c})")),
                        v.summary
                    );
                }
                None => {
                    let _ = writeln!(out, "  {}: {}", v.kind, v.summary);
                }
            }
        }
        let l = &self.judgement.reap_latency;
        let ms =
            |us: Option<f64>| us.map_or_else(|| "-".to_owned(), |u| format!("{:.2} ms", u / 1e3));
        let _ = writeln!(
            out,
            "  reap latency over {} releases: p50 {}, p99 {}, max {}; lost events {}{}",
            l.count,
            ms(l.p50_us),
            ms(l.p99_us),
            ms(l.max_us),
            self.judgement.lost_events,
            if self.judgement.complete {
                ""
            } else {
                " (incomplete: counts may be off)"
            }
        );
        out
    }

    /// The verdict as JUnit XML, one test case per rule.
    pub fn to_junit(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&apos;")
        };
        let cases: [(&str, &str); 3] = [
            ("unreaped", "every zombie is reaped within the grace"),
            ("max_pending", "no parent owes more zombies than allowed"),
            ("reap_latency", "reap latency is within the bound"),
        ];
        let failures = cases
            .iter()
            .filter(|(kind, _)| self.judgement.violations.iter().any(|v| v.kind == *kind))
            .count();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"zombie-trace\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">",
            cases.len()
        );
        let _ = writeln!(
            out,
            "  <testsuite name=\"zombie-trace\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">",
            cases.len()
        );
        let _ = writeln!(
            out,
            "    <properties><property name=\"command\" value=\"{}\"/></properties>",
            esc(&shell_words(&self.command))
        );
        for (kind, name) in cases {
            let mine: Vec<&Violation> = self
                .judgement
                .violations
                .iter()
                .filter(|v| v.kind == kind)
                .collect();
            let _ = write!(
                out,
                "    <testcase classname=\"zombie-trace.{kind}\" name=\"{}\"",
                esc(name)
            );
            if mine.is_empty() {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            for v in mine {
                let who = v.parent.as_ref().map_or_else(String::new, |p| {
                    format!(
                        "PID {} ({}) held {} zombies for up to {} ms: ",
                        p.pid, p.comm, v.zombies, v.longest_ms
                    )
                });
                let _ = writeln!(
                    out,
                    "      <failure type=\"{kind}\" message=\"{}\">{}</failure>",
                    esc(&format!("{who}{}", v.summary)),
                    esc(&v
                        .parent
                        .as_ref()
                        .and_then(|p| p.cmdline.clone())
                        .unwrap_or_default())
                );
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }
}

/// `argv` as a POSIX shell would need it typed: words with anything but
/// `[A-Za-z0-9_./=:,+-]` single-quoted.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./=:,+-@%".contains(c));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> GuardRules {
        GuardRules {
            grace_ns: 1_000_000_000,
            max_pending: None,
            max_reap_latency_ns: None,
        }
    }

    fn leak() -> Judgement {
        Judgement {
            violations: vec![Violation {
                kind: "unreaped",
                parent: Some(ParentId {
                    pid: 42,
                    comm: "job<runner>".to_owned(),
                    cmdline: Some("runner --jobs \"a&b\"".to_owned()),
                    start_ticks: 7,
                    sigchld: "default",
                    wait_calls: 0,
                    runs_in: Some("unit ci-runner.service".to_owned()),
                }),
                zombies: 100,
                longest_ms: 2100,
                verdict: Some("never_waits"),
                summary: "PID 42 never waits".to_owned(),
            }],
            ..Judgement::default()
        }
    }

    #[test]
    fn commands_are_shown_as_they_would_be_typed() {
        let argv = ["sh", "-c", "\"$0\" 20; true", "it's"].map(String::from);
        assert_eq!(shell_words(&argv), r#"sh -c '"$0" 20; true' 'it'\''s'"#);
    }

    #[test]
    fn the_exit_status_is_the_commands_unless_only_the_tree_failed() {
        let cmd = vec!["runner".to_owned()];
        let pass = Verdict::new(
            cmd.clone(),
            CommandStatus::Code(0),
            rules(),
            Judgement::default(),
            86,
        );
        assert_eq!((pass.pass, pass.exit_code), (true, 0));
        let fail = Verdict::new(cmd.clone(), CommandStatus::Code(0), rules(), leak(), 86);
        assert_eq!((fail.pass, fail.exit_code), (false, 86));
        let both = Verdict::new(cmd.clone(), CommandStatus::Code(1), rules(), leak(), 86);
        assert_eq!(
            (both.pass, both.exit_code),
            (false, 1),
            "the command's own failure wins"
        );
        let killed = Verdict::new(
            cmd,
            CommandStatus::Signal(15),
            rules(),
            Judgement::default(),
            86,
        );
        assert_eq!(killed.exit_code, 143);
    }

    #[test]
    fn junit_names_the_parent_and_escapes_what_processes_chose() {
        let xml = Verdict::new(
            vec!["make".to_owned(), "test".to_owned()],
            CommandStatus::Code(0),
            rules(),
            leak(),
            86,
        )
        .to_junit();
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(
            xml.contains("PID 42 (job&lt;runner&gt;) held 100 zombies"),
            "{xml}"
        );
        assert!(xml.contains("runner --jobs &quot;a&amp;b&quot;"), "{xml}");
        assert!(!xml.contains("<runner>"), "{xml}");
        assert_eq!(xml.matches("<testcase").count(), 3);
    }
}
