//! Why a parent leaks zombies, how long until the PID space runs out, and
//! what will (and will not) help. A view on the ledger plus /proc.
//!
//! Every recommendation follows from a fact shown next to it; where the data
//! cannot support an action, the action is listed as not working, with why.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use crate::host::cgroup::Attribution;
use crate::host::facts::{HostFacts, ProcFacts};
use crate::host::pressure::{Limit, PidPressure};
use crate::host::procfs::SIGCHLD;
use crate::model::Moment;
use crate::model::{ChangeCause, Ledger, ProcKey, Process, SigchldAction};
use crate::render::text::{format_age, timestamp};

/// Pending-zombie samples per parent, for growth rates.
#[derive(Debug, Default)]
pub struct GrowthTracker {
    samples: HashMap<ProcKey, VecDeque<(u64, u32)>>,
}

/// How far back the growth rate looks.
const GROWTH_WINDOW_NS: u64 = 60_000_000_000;
const MAX_SAMPLES: usize = 256;

impl GrowthTracker {
    /// Records every parent's pending count at `now_ns`.
    pub fn sample(&mut self, ledger: &Ledger, now_ns: u64) {
        self.samples.retain(|key, _| ledger.get(key).is_some());
        for p in ledger.parents_with_zombies() {
            let series = self.samples.entry(p.key).or_default();
            series.push_back((now_ns, p.stats.pending));
            while series.len() > MAX_SAMPLES
                || series
                    .front()
                    .is_some_and(|&(t, _)| now_ns.saturating_sub(t) > GROWTH_WINDOW_NS)
            {
                series.pop_front();
            }
        }
    }

    /// Zombies per second: least-squares slope of the pending count over the
    /// window. `None` without at least 3 samples spanning 0.5 s.
    pub fn rate_per_s(&self, key: &ProcKey) -> Option<f64> {
        let series = self.samples.get(key)?;
        let (first, last) = (series.front()?.0, series.back()?.0);
        if series.len() < 3 || last.saturating_sub(first) < 500_000_000 {
            return None;
        }
        let n = series.len() as f64;
        let xs = series.iter().map(|&(t, _)| (t - first) as f64 / 1e9);
        let mean_x = xs.clone().sum::<f64>() / n;
        let mean_y = series.iter().map(|&(_, y)| f64::from(y)).sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (x, &(_, y)) in xs.zip(series.iter()) {
            sxy += (x - mean_x) * (f64::from(y) - mean_y);
            sxx += (x - mean_x) * (x - mean_x);
        }
        (sxx > 0.0).then(|| sxy / sxx)
    }
}

/// Where the diagnosis's facts come from.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The eBPF tracer watched the process.
    Live,
    /// /proc only (no privileges or no tracer): wait behaviour is unknown.
    ProcOnly,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SigchldView {
    pub action: &'static str,
    /// "traced" (the tracer saw the action set) or "/proc".
    pub source: &'static str,
    pub blocked: bool,
    pub nocldwait: Option<bool>,
    pub last_change: Option<ChangeView>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ChangeView {
    pub time: String,
    pub at_boot_ns: u64,
    pub ago_ms: u64,
    pub from: &'static str,
    pub to: &'static str,
    pub cause: &'static str,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WaitView {
    pub calls: u64,
    pub reaped: u64,
    pub specific: u64,
    pub any: u64,
    pub group: u64,
    pub nohang_empty: u64,
    pub echild: u64,
    pub errors: u64,
    pub wnowait_peeks: u64,
    pub last_specific_target: Option<i32>,
    pub last_call_ago_ms: Option<u64>,
    pub last_reap_ago_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProcessView {
    pub state: String,
    pub state_name: &'static str,
    pub wchan: Option<String>,
    pub threads: u32,
    pub ppid: u32,
    pub subreaper: Option<bool>,
    pub pid_ns_init: bool,
    /// Its PID as its own PID namespace sees it (a container's), when that
    /// is not the host's.
    pub pid_in_namespace: Option<u32>,
}

/// Who would inherit the parent's zombies if it exited.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AdopterView {
    pub pid: u32,
    pub comm: String,
    /// Whether it would release them: Some(true) reaps, Some(false) does not,
    /// None unknown.
    pub reaps: Option<bool>,
    pub why: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Forecast {
    /// Seconds until the tightest limit is reached at the current rate.
    pub seconds: f64,
    pub limit: Limit,
    pub time: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Step {
    pub action: String,
    /// The data shows it will work.
    pub works: bool,
    /// The data can neither confirm nor rule it out (`works` is false).
    pub unverified: bool,
    pub why: String,
}

/// The full diagnosis of one process as a parent.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Diagnosis {
    pub pid: u32,
    pub comm: String,
    pub mode: Mode,
    pub pending_zombies: u32,
    pub zombies_before_start: u32,
    pub oldest_zombie_age_ms: Option<u64>,
    /// False when the oldest zombie predates tracing: its age is a lower bound.
    pub oldest_zombie_age_exact: bool,
    /// Machine-readable cause, e.g. `never_waits`.
    pub verdict: &'static str,
    /// One line for alerts.
    pub summary: String,
    pub findings: Vec<String>,
    pub process: ProcessView,
    pub sigchld: SigchldView,
    pub waits: Option<WaitView>,
    pub adopter: Option<AdopterView>,
    /// Where it runs: its cgroup and the unit, container and pod it names.
    pub runs_in: Option<Attribution>,
    pub pressure: PidPressure,
    pub growth_per_s: Option<f64>,
    pub forecast: Option<Forecast>,
    pub remediation: Vec<Step>,
}

fn state_name(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "uninterruptible sleep (D)",
        'T' => "stopped",
        't' => "stopped by a tracer",
        'Z' => "zombie",
        'X' => "dead",
        'I' => "idle",
        _ => "unknown",
    }
}

/// [`diagnose`] with live data (the ledger was fed by the tracer), as of
/// the engine's moment.
pub fn diagnose_traced(
    ctx: &mut crate::engine::Context<'_>,
    pid: u32,
    growth: Option<&GrowthTracker>,
) -> Option<Diagnosis> {
    diagnose(ctx.ledger, pid, true, growth, ctx.now, ctx.host)
}

/// Diagnoses `pid` as a parent, as of `now`. `live` is true when the ledger
/// was fed by the tracer (wait behaviour and SIGCHLD changes are known);
/// `growth` supplies the zombie growth rate when sampled; `host` answers
/// what /proc says about the process and its ancestors.
pub fn diagnose(
    ledger: &Ledger,
    pid: u32,
    live: bool,
    growth: Option<&GrowthTracker>,
    now: Moment,
    host: &mut dyn HostFacts,
) -> Option<Diagnosis> {
    let facts = host.process(pid)?;
    let process = ledger.find_pid(pid)?;
    Some(
        Diagnoser {
            ledger,
            process,
            facts,
            live,
            growth,
            now,
            host,
        }
        .run(),
    )
}

struct Diagnoser<'a> {
    ledger: &'a Ledger,
    process: &'a Process,
    facts: ProcFacts,
    live: bool,
    growth: Option<&'a GrowthTracker>,
    now: Moment,
    host: &'a mut dyn HostFacts,
}

impl Diagnoser<'_> {
    fn ago_ms(&self, at_ns: u64) -> u64 {
        self.now.boot_ns.saturating_sub(at_ns) / 1_000_000
    }

    fn wall_time(&self, at_ns: u64) -> String {
        timestamp(self.now.wall_of(at_ns))
    }

    fn sigchld(&self) -> SigchldView {
        let p = self.process;
        let masks = self.facts.masks;
        let blocked = masks.is_some_and(|m| m.is_blocked(SIGCHLD));
        let (action, source) = match p.sigchld {
            SigchldAction::Unknown => {
                let action = match masks {
                    Some(m) if m.sigchld_ignored() => SigchldAction::Ignore,
                    Some(m) if m.sigchld_caught() => SigchldAction::Handler,
                    Some(_) => SigchldAction::Default,
                    None => SigchldAction::Unknown,
                };
                (action, "/proc")
            }
            known => (known, "traced"),
        };
        SigchldView {
            action: action.as_str(),
            source,
            blocked,
            nocldwait: (source == "traced").then_some(p.nocldwait),
            last_change: p.last_sigchld_change.map(|c| ChangeView {
                time: self.wall_time(c.at_ns),
                at_boot_ns: c.at_ns,
                ago_ms: self.ago_ms(c.at_ns),
                from: c.from.as_str(),
                to: c.to.as_str(),
                cause: match c.cause {
                    ChangeCause::Sigaction => "rt_sigaction",
                    ChangeCause::Exec => "execve",
                },
            }),
        }
    }

    fn waits(&self) -> Option<WaitView> {
        if !self.live {
            return None;
        }
        let p = self.process;
        let w = p.waits;
        let when = |ns: u64| (ns != 0).then(|| self.ago_ms(ns));
        Some(WaitView {
            calls: p.stats.wait_calls,
            reaped: p.stats.reaped,
            specific: w.specific,
            any: w.any,
            group: w.group,
            nohang_empty: w.nohang_empty,
            echild: w.echild,
            errors: w.errors,
            wnowait_peeks: w.wnowait_peeks,
            last_specific_target: (w.specific > 0).then_some(w.last_specific_target),
            last_call_ago_ms: when(w.last_call_ns),
            last_reap_ago_ms: when(w.last_reap_ns),
        })
    }

    /// find_new_reaper()'s answer if this process exited now: the nearest
    /// ancestor subreaper in the same PID namespace, else the namespace's
    /// init. An ancestor whose subreaper flag no event has shown yet makes
    /// the answer uncertain, and says so.
    fn adopter(&mut self) -> Option<AdopterView> {
        let p = self.process;
        if self.facts.is_ns_init() {
            return None; // its namespace dies with it
        }
        let level = self.facts.ns_pids.len();
        let mut unknown: Option<&Process> = None;
        let mut ancestor = self.ledger.parent_of(&p.key);
        let mut hops = 0;
        while let Some(a) = ancestor {
            let facts = self.host.process(a.key.pid);
            let same_ns = facts.as_ref().is_some_and(|f| f.ns_pids.len() == level);
            if !same_ns || hops > 64 {
                break;
            }
            if a.subreaper == Some(true) || facts.as_ref().is_some_and(ProcFacts::is_ns_init) {
                let mut view = self.adopter_view(a, facts.as_ref());
                if let Some(u) = unknown.filter(|_| p.has_subreaper_ancestor != Some(false)) {
                    view.reaps = None;
                    view.why = format!(
                        "{}; unless PID {} ({}), whose subreaper flag was not observed, is a child subreaper",
                        view.why, u.key.pid, u.comm
                    );
                }
                return Some(view);
            }
            if a.subreaper.is_none() && unknown.is_none() {
                unknown = Some(a);
            }
            ancestor = self.ledger.parent_of(&a.key);
            hops += 1;
        }
        None
    }

    fn adopter_view(&self, a: &Process, facts: Option<&ProcFacts>) -> AdopterView {
        let ignores = a.sigchld == SigchldAction::Ignore
            || facts
                .and_then(|f| f.masks)
                .is_some_and(|m| m.sigchld_ignored());
        let role = if facts.is_some_and(ProcFacts::is_ns_init) {
            "the init of its PID namespace"
        } else {
            "the nearest child subreaper"
        };
        let (reaps, why) = if ignores {
            (
                Some(true),
                format!(
                    "{role}; it ignores SIGCHLD, so the kernel releases inherited zombies at once"
                ),
            )
        } else if a.stats.pending > 0 && (!self.live || a.stats.wait_calls == 0) {
            (
                Some(false),
                format!(
                    "{role}; it owes {} zombies itself{}",
                    a.stats.pending,
                    if self.live {
                        " and has not called wait"
                    } else {
                        ""
                    }
                ),
            )
        } else if self.live && a.stats.reaped > 0 {
            (
                Some(true),
                format!("{role}; it reaps ({} so far)", a.stats.reaped),
            )
        } else {
            (None, format!("{role}; whether it reaps was not observed"))
        };
        AdopterView {
            pid: a.key.pid,
            comm: a.comm.as_str_lossy(),
            reaps,
            why,
        }
    }

    fn run(mut self) -> Diagnosis {
        let p = self.process;
        let sigchld = self.sigchld();
        let waits = self.waits();
        let adopter = self.adopter();
        let pressure = self.host.pid_pressure(Some(p.key.pid));
        let growth_per_s = self.growth.and_then(|g| g.rate_per_s(&p.key));
        let forecast = growth_per_s.filter(|&r| r > 0.0).map(|rate| {
            let seconds = pressure.headroom as f64 / rate;
            Forecast {
                seconds,
                limit: pressure.limit,
                time: timestamp(self.now.wall() + Duration::from_secs_f64(seconds.min(1e9))),
            }
        });
        // Zombies found by a scan have no exit time: their age counts from the
        // start of tracing (a lower bound), which in /proc-only mode is now.
        let oldest_exit = self.ledger.oldest_zombie(&p.key);
        let oldest_exact = oldest_exit.is_none_or(|t| t.is_exact());
        let oldest = oldest_exit
            .filter(|_| self.live || oldest_exact)
            .map(|t| self.ago_ms(self.ledger.exit_ns(t)));
        let process = ProcessView {
            state: self.facts.state.to_string(),
            state_name: state_name(self.facts.state),
            wchan: self.facts.wchan.clone(),
            threads: self.facts.threads,
            ppid: self.facts.ppid,
            subreaper: p.subreaper,
            pid_ns_init: self.facts.is_ns_init(),
            pid_in_namespace: (self.facts.ns_pids.len() > 1)
                .then(|| self.facts.ns_pids.last().copied())
                .flatten(),
        };
        let runs_in = self.host.attribution(p.key);

        let (verdict, summary) = self.verdict(&sigchld);
        let mut findings = vec![summary.clone()];
        self.findings(&sigchld, waits.as_ref(), &mut findings);
        let remediation =
            self.remediation(verdict, &sigchld, adopter.as_ref(), &pressure, growth_per_s);
        Diagnosis {
            pid: p.key.pid,
            comm: p.comm.as_str_lossy(),
            mode: if self.live {
                Mode::Live
            } else {
                Mode::ProcOnly
            },
            pending_zombies: p.stats.pending,
            zombies_before_start: p.stats.pending_before_start,
            oldest_zombie_age_ms: oldest,
            oldest_zombie_age_exact: oldest_exact,
            verdict,
            summary,
            findings,
            process,
            sigchld,
            waits,
            adopter,
            runs_in,
            pressure,
            growth_per_s,
            forecast,
            remediation,
        }
    }

    fn is_adopting_role(&self) -> Option<&'static str> {
        if self.facts.is_ns_init() && self.facts.ns_pids.len() > 1 {
            Some("the init of a PID namespace (a container without an init process)")
        } else if self.facts.is_ns_init() {
            Some("the host's init (PID 1)")
        } else if self.process.subreaper == Some(true) {
            Some("a child subreaper (PR_SET_CHILD_SUBREAPER)")
        } else {
            None
        }
    }

    fn verdict(&self, sigchld: &SigchldView) -> (&'static str, String) {
        let p = self.process;
        let pid = p.key.pid;
        let n = p.stats.pending;
        if n == 0 {
            return ("no_zombies", format!("PID {pid} owes no reaps"));
        }
        match self.facts.state {
            'T' | 't' => {
                return (
                    "stopped",
                    format!(
                        "PID {pid} is stopped, so it cannot run the code that reaps its {n} zombies"
                    ),
                );
            }
            'D' => {
                return (
                    "uninterruptible",
                    format!(
                        "PID {pid} is in uninterruptible sleep{} and cannot reap its {n} zombies until it returns",
                        self.facts
                            .wchan
                            .as_deref()
                            .map(|w| format!(" in {w}"))
                            .unwrap_or_default()
                    ),
                );
            }
            _ => {}
        }
        let reaped = p.stats.reaped;
        // A subreaper or namespace init cannot name orphans it never forked:
        // only waits for any child (or a group) can release them.
        if let Some(role) = self.is_adopting_role()
            && (!self.live || reaped == 0 || (p.waits.any == 0 && p.waits.group == 0))
        {
            return (
                "adopter_does_not_reap",
                format!(
                    "PID {pid} is {role}: orphans are reparented to it and it must reap them, but it does not ({n} pending{})",
                    if p.stats.adopted > 0 {
                        format!(", {} adopted", p.stats.adopted)
                    } else {
                        String::new()
                    }
                ),
            );
        }
        if sigchld.blocked && sigchld.action == "handler" {
            return (
                "sigchld_blocked",
                format!(
                    "PID {pid} has a SIGCHLD handler but blocks SIGCHLD, so the handler never runs ({n} pending)"
                ),
            );
        }
        if !self.live {
            return match sigchld.action {
                "handler" => (
                    "handler_installed_proc_only",
                    format!(
                        "PID {pid} owes {n} reaps although a SIGCHLD handler is installed; run zombie-trace as root to see whether it calls wait"
                    ),
                ),
                "ignored" => (
                    "ignores_sigchld_now",
                    format!(
                        "PID {pid} ignores SIGCHLD now, but these {n} zombies exited before that; they stay until it waits or exits"
                    ),
                ),
                _ => (
                    "no_handler_proc_only",
                    format!(
                        "PID {pid} owes {n} reaps and has no SIGCHLD handler: unless its main loop calls wait, nothing reaps them"
                    ),
                ),
            };
        }
        let w = p.waits;
        // Only the process's own rt_sigaction removes its handler: an execve
        // resetting the handler of the program it replaced (a shell's, when
        // a shell starts it) leaves a program that never had one.
        if let Some(change) = p.last_sigchld_change
            && change.cause == ChangeCause::Sigaction
            && change.from == SigchldAction::Handler
            && change.to != SigchldAction::Handler
            && w.last_reap_ns <= change.at_ns
        {
            return (
                "handler_removed",
                format!(
                    "PID {pid} removed its SIGCHLD handler {} ago ({}) and has not reaped since ({n} pending)",
                    format_age(self.ago_ms(change.at_ns)),
                    self.wall_time(change.at_ns)
                ),
            );
        }
        if p.stats.wait_calls == 0 {
            let how = match sigchld.action {
                "handler" => "has a SIGCHLD handler that never calls wait",
                _ => "has no SIGCHLD handler and never calls wait",
            };
            return (
                "never_waits",
                format!(
                    "PID {pid} never waits: it {how} ({n} pending, {reaped} reaped since tracing began)"
                ),
            );
        }
        if w.specific > 0 && w.any == 0 && w.group == 0 {
            return (
                "waits_for_specific_child",
                format!(
                    "PID {pid} only waits for specific children (last: PID {}) while {n} others pile up",
                    w.last_specific_target
                ),
            );
        }
        if reaped > 0 {
            return (
                "reaps_too_slowly",
                format!(
                    "PID {pid} reaps ({reaped} so far) but more slowly than its children exit ({n} pending)"
                ),
            );
        }
        (
            "waits_without_reaping",
            format!(
                "PID {pid} calls wait ({} calls) but releases none of its {n} zombies",
                p.stats.wait_calls
            ),
        )
    }

    fn findings(&self, sigchld: &SigchldView, waits: Option<&WaitView>, out: &mut Vec<String>) {
        let p = self.process;
        out.push(format!(
            "SIGCHLD action: {} (from {}){}{}",
            sigchld.action,
            sigchld.source,
            if sigchld.blocked { ", blocked" } else { "" },
            if sigchld.nocldwait == Some(true) {
                ", SA_NOCLDWAIT"
            } else {
                ""
            }
        ));
        if let Some(c) = &sigchld.last_change {
            out.push(format!(
                "SIGCHLD action changed from {} to {} at {} ({} ago, by {})",
                c.from,
                c.to,
                c.time,
                format_age(c.ago_ms),
                c.cause
            ));
        }
        match waits {
            Some(w) => out.push(format!(
                "wait calls since tracing began: {} ({} reaped, {} for a specific child, {} for any child, {} WNOHANG with nothing ready, {} ECHILD, {} WNOWAIT peeks)",
                w.calls, w.reaped, w.specific, w.any, w.nohang_empty, w.echild, w.wnowait_peeks
            )),
            None => out.push(
                "wait behaviour unknown: /proc-only diagnosis (run as root for live tracing)".to_owned(),
            ),
        }
        if p.stats.pending_before_start > 0 {
            out.push(format!(
                "{} of its zombies existed before tracing began (exit time unknown)",
                p.stats.pending_before_start
            ));
        }
    }

    fn remediation(
        &self,
        verdict: &str,
        sigchld: &SigchldView,
        adopter: Option<&AdopterView>,
        pressure: &PidPressure,
        growth: Option<f64>,
    ) -> Vec<Step> {
        let p = self.process;
        let pid = p.key.pid;
        let mut steps = Vec::new();
        if verdict == "no_zombies" {
            return steps;
        }
        if verdict == "stopped" {
            steps.push(Step {
                action: format!("kill -CONT {pid}"),
                works: true,
                unverified: false,
                why: "a stopped process runs again and can reap".to_owned(),
            });
        }
        let handler_waits = self.live && sigchld.action == "handler" && p.stats.reaped > 0;
        steps.push(Step {
            action: format!("kill -CHLD {pid}"),
            works: handler_waits && !sigchld.blocked,
            unverified: !self.live && sigchld.action == "handler" && !sigchld.blocked,
            why: match (sigchld.action, self.live) {
                _ if sigchld.blocked => {
                    "SIGCHLD is blocked: the signal stays pending and nothing runs".to_owned()
                }
                ("handler", true) if p.stats.reaped > 0 => {
                    "its SIGCHLD handler reaps: a fresh signal makes it run again".to_owned()
                }
                ("handler", true) => {
                    "it has a handler, but no wait call was seen: the handler does not reap"
                        .to_owned()
                }
                ("handler", false) => {
                    "a handler is installed, but without tracing it is unknown whether it reaps"
                        .to_owned()
                }
                _ => "it has no SIGCHLD handler: the signal's default action is to do nothing"
                    .to_owned(),
            },
        });
        let restart_works =
            !self.facts.is_ns_init() && adopter.is_some_and(|a| a.reaps == Some(true));
        steps.push(Step {
            action: format!("restart PID {pid} gracefully (SIGTERM, let it drain its jobs)"),
            works: restart_works,
            unverified: !self.facts.is_ns_init() && adopter.is_some_and(|a| a.reaps.is_none()),
            why: match adopter {
                _ if self.facts.is_ns_init() => "it is the init of its PID namespace: when it exits, the kernel kills every process in the namespace".to_owned(),
                Some(a) => format!(
                    "its zombies are then reparented to PID {} ({}): {}",
                    a.pid, a.comm, a.why
                ),
                None => "who would inherit its zombies could not be determined".to_owned(),
            },
        });
        if self.is_adopting_role().is_some() {
            steps.push(Step {
                action: "run a real init as PID 1 of the container (tini, dumb-init, `docker run --init`) or make the subreaper wait for adopted children".to_owned(),
                works: true,
                unverified: false,
                why: "an init that loops on waitpid(-1) reaps every orphan it inherits".to_owned(),
            });
        }
        steps.push(Step {
            action: "fix the parent: a SIGCHLD handler (or main loop) that calls waitpid(-1, &status, WNOHANG) until it returns 0".to_owned(),
            works: true,
            unverified: false,
            why: "only the parent can release its zombies; waiting for any child (-1), not one specific PID, reaps them all".to_owned(),
        });
        steps.push(Step {
            action: "kill -9 the zombies".to_owned(),
            works: false,
            unverified: false,
            why: "zombies are already dead: signals do nothing; only a wait by the parent releases them".to_owned(),
        });
        steps.push(Step {
            action: "waitpid() from another process or a helper script".to_owned(),
            works: false,
            unverified: false,
            why: "only the parent (or, after it dies, its adopter) can wait for a child".to_owned(),
        });
        let buys = match (growth, pressure.limit) {
            (Some(rate), _) if rate > 0.0 => {
                let per_thousand = 1000.0 / rate;
                format!(
                    "it only delays the wall: at {rate:.1} zombies/s each 1,000 more PIDs last about {}",
                    format_age((per_thousand * 1000.0) as u64)
                )
            }
            _ => "it only delays the wall while the leak continues".to_owned(),
        };
        steps.push(Step {
            action: match pressure.limit {
                Limit::CgroupPidsMax => "raise the cgroup's pids.max".to_owned(),
                Limit::ThreadsMax => "raise kernel.threads-max".to_owned(),
                Limit::PidMax => "raise kernel.pid_max".to_owned(),
            },
            works: false,
            unverified: false,
            why: buys,
        });
        steps.sort_by_key(|s| (!s.works, !s.unverified));
        steps
    }
}

impl Diagnosis {
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ =
            writeln!(
            out,
            "PID {} ({}{}): {} pending zombies{}  [{}]",
            self.pid,
            self.comm,
            self.process
                .pid_in_namespace
                .map(|ns| format!(", PID {ns} in its namespace"))
                .unwrap_or_default(),
            self.pending_zombies,
            self.oldest_zombie_age_ms
                .map(|ms| format!(
                    ", oldest {}{}",
                    if self.oldest_zombie_age_exact { "" } else { ">" },
                    format_age(ms)
                ))
                .unwrap_or_else(|| ", oldest: age unknown (exited before this scan)".to_owned()),
            match self.mode {
                Mode::Live => "live: traced",
                Mode::ProcOnly => "/proc only: run as root for wait behaviour",
            }
        );
        let _ = writeln!(out, "\nWhy");
        for f in &self.findings {
            let _ = writeln!(out, "  - {f}");
        }
        let _ = writeln!(
            out,
            "  - state: {} ({}){}, {} threads, parent PID {}{}",
            self.process.state,
            self.process.state_name,
            self.process
                .wchan
                .as_deref()
                .map(|w| format!(", waiting in {w}"))
                .unwrap_or_default(),
            self.process.threads,
            self.process.ppid,
            if self.process.pid_ns_init {
                ", init of its PID namespace"
            } else if self.process.subreaper == Some(true) {
                ", child subreaper"
            } else {
                ""
            }
        );
        if let Some(place) = self.runs_in.as_ref().and_then(Attribution::describe) {
            let _ = writeln!(out, "  - runs in {place}");
        }
        if let Some(a) = &self.adopter {
            let _ = writeln!(
                out,
                "  - if it exits, PID {} ({}) inherits its zombies: {}",
                a.pid, a.comm, a.why
            );
        }
        let _ = writeln!(out, "\nPressure");
        let p = &self.pressure;
        let _ = writeln!(
            out,
            "  - tasks {} / pid_max {} / threads-max {}{}",
            p.tasks,
            p.pid_max,
            p.threads_max,
            p.cgroup
                .as_ref()
                .map(|c| format!(
                    "; cgroup {}: pids {} / {}",
                    c.path.display(),
                    c.current,
                    c.max
                ))
                .unwrap_or_default()
        );
        match (&self.forecast, self.growth_per_s) {
            (Some(f), Some(rate)) => {
                let _ = writeln!(
                    out,
                    "  - growing {rate:.1} zombies/s: {} exhausted in ~{} ({})",
                    f.limit.describe(),
                    format_age((f.seconds * 1000.0) as u64),
                    f.time
                );
            }
            (None, Some(rate)) => {
                let _ = writeln!(
                    out,
                    "  - not growing ({rate:.1} zombies/s): no exhaustion forecast"
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  - growth rate not measured (needs a few seconds of tracing)"
                );
            }
        }
        let _ = writeln!(out, "\nWhat to do");
        for (i, s) in self.remediation.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}. [{}] {} — {}",
                i + 1,
                if s.works {
                    "works"
                } else if s.unverified {
                    "unverified"
                } else {
                    "won't work"
                },
                s.action,
                s.why
            );
        }
        out
    }
}

/// What `zombie-trace explain PID` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// The PID asked about.
    pub target: u32,
    /// The target is itself a zombie: the diagnosis is of its parent.
    pub target_is_zombie: bool,
    /// Seconds the tracer watched before diagnosing (live mode).
    pub observed_s: Option<f64>,
    #[serde(flatten)]
    pub diagnosis: Diagnosis,
}

impl Explanation {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if self.target_is_zombie {
            out.push_str(&format!(
                "PID {} is a zombie: it is already dead, and only its parent, PID {}, can release it.\n\n",
                self.target, self.diagnosis.pid
            ));
        }
        if let Some(s) = self.observed_s {
            out.push_str(&format!("(traced for {s:.1} s)\n"));
        }
        out.push_str(&self.diagnosis.to_text());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TickClock;

    #[test]
    fn growth_is_the_slope_of_pending_zombies() {
        use crate::host::procfs::ProcStat;
        let mut growth = GrowthTracker::default();
        let mut key = None;
        for step in 0..=10u32 {
            // A parent that gains 5 zombies every 100 ms: 50 per second.
            let mut stats = vec![ProcStat {
                pid: 100,
                ppid: 1,
                state: 'S',
                comm: [0; 16],
                start_ticks: 1,
                num_threads: 1,
                flags: 0,
            }];
            for z in 0..step * 5 {
                stats.push(ProcStat {
                    pid: 1000 + z,
                    ppid: 100,
                    state: 'Z',
                    comm: [0; 16],
                    start_ticks: 2,
                    num_threads: 1,
                    flags: 0,
                });
            }
            let mut ledger = Ledger::new(TickClock::new(100), 0, 64);
            ledger.seed(&stats, |s| s.pid);
            key = ledger.find_pid(100).map(|p| p.key);
            growth.sample(&ledger, u64::from(step) * 100_000_000);
        }
        let rate = key.and_then(|k| growth.rate_per_s(&k)).expect("a rate");
        assert!((rate - 50.0).abs() < 1e-6, "rate {rate}");
    }
}
