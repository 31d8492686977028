//! The process model without the kernel: synthetic events, exact ledgers.

use super::*;
use zombie_trace_common::{AttrEvent, AttrKind, EventHeader, EventKind, WaitSyscall, wait_flags};

const TICKS: u64 = 100;
const NS_PER_TICK: u64 = 1_000_000_000 / TICKS;

fn clock() -> TickClock {
    TickClock::new(TICKS)
}

fn id(pid: u32, start_tick: u64) -> ProcessId {
    ProcessId {
        tgid: pid,
        _pad: 0,
        start_boottime_ns: start_tick * NS_PER_TICK + 1234,
    }
}

fn key(pid: u32, start_tick: u64) -> ProcKey {
    clock().key(&id(pid, start_tick))
}

fn comm(name: &str) -> [u8; COMM_LEN] {
    let mut c = [0u8; COMM_LEN];
    c[..name.len()].copy_from_slice(name.as_bytes());
    c
}

fn header(kind: EventKind, ts: u64) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        tid: 0,
        timestamp_ns: ts,
    }
}

fn fork(ts: u64, parent: ProcessId, child: ProcessId) -> Event {
    Event::Fork(ForkEvent {
        header: header(EventKind::Fork, ts),
        child,
        parent,
        child_vpid: child.tgid,
        parent_flags: 0,
        comm: comm("runner"),
    })
}

fn exit(ts: u64, process: ProcessId, parent: ProcessId, flags: u32, adopter: ProcessId) -> Event {
    Event::Exit(ExitEvent {
        header: header(EventKind::Exit, ts),
        process,
        parent,
        adopter,
        vpid: process.tgid,
        exit_code: 0,
        flags,
        _pad: 0,
        comm: comm("child"),
    })
}

fn wait4(ts: u64, waiter: ProcessId, ret: i64) -> Event {
    Event::Wait(WaitEvent {
        header: header(EventKind::Wait, ts),
        waiter,
        syscall: WaitSyscall::Wait4 as u32,
        options: 0,
        target: -1,
        idtype: 0,
        ret,
        child_vpid: ret as i32,
        status: 0,
        flags: wait_flags::ENTRY_SEEN | wait_flags::RESULT_READ,
        _pad: 0,
        entry_ns: ts,
    })
}

fn waitid(ts: u64, waiter: ProcessId, child: u32, si_code: i32, options: u32) -> Event {
    Event::Wait(WaitEvent {
        header: header(EventKind::Wait, ts),
        waiter,
        syscall: WaitSyscall::Waitid as u32,
        options,
        target: 0,
        idtype: 0,
        ret: 0,
        child_vpid: child as i32,
        status: si_code,
        flags: wait_flags::ENTRY_SEEN | wait_flags::RESULT_READ,
        _pad: 0,
        entry_ns: ts,
    })
}

struct Fixture {
    ledger: Ledger,
    changes: Vec<Change>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            ledger: Ledger::new(clock(), 1_000, 64),
            changes: Vec::new(),
        }
    }

    fn apply(&mut self, event: Event) {
        let changes = &mut self.changes;
        self.ledger.apply(&event, &mut |c| changes.push(c));
    }

    fn pending(&self, k: ProcKey) -> u32 {
        self.ledger.get(&k).map_or(0, |p| p.stats.pending)
    }

    fn released(&self) -> Vec<(u32, ReapKind)> {
        self.changes
            .iter()
            .filter_map(|c| match c {
                Change::Released { child, how, .. } => Some((child.pid, *how)),
                _ => None,
            })
            .collect()
    }
}

const NONE: ProcessId = ProcessId {
    tgid: 0,
    _pad: 0,
    start_boottime_ns: 0,
};

#[test]
fn a_parent_that_never_waits_owes_every_child() {
    let mut f = Fixture::new();
    let parent = id(1847, 5);
    for pid in 2000..2010 {
        f.apply(fork(10, parent, id(pid, 7)));
        f.apply(exit(20 + u64::from(pid), id(pid, 7), parent, 0, id(1, 0)));
    }
    assert_eq!(f.pending(key(1847, 5)), 10);
    let stats = f.ledger.get(&key(1847, 5)).map(|p| p.stats);
    assert_eq!(
        stats.map(|s| (s.forks, s.exits, s.reaped)),
        Some((10, 10, 0))
    );
    assert_eq!(
        f.ledger.oldest_zombie(&key(1847, 5)),
        Some(ExitTime::At(2020))
    );
}

#[test]
fn a_wait_releases_exactly_the_child_it_names() {
    let mut f = Fixture::new();
    let parent = id(100, 1);
    f.apply(fork(1, parent, id(200, 2)));
    f.apply(fork(1, parent, id(201, 2)));
    f.apply(exit(5, id(200, 2), parent, 0, id(1, 0)));
    f.apply(exit(6, id(201, 2), parent, 0, id(1, 0)));
    f.apply(wait4(9, parent, 201));
    assert_eq!(f.pending(key(100, 1)), 1);
    assert_eq!(f.released(), vec![(201, ReapKind::ParentWait)]);
    assert!(
        f.ledger.get(&key(201, 2)).is_none(),
        "released zombies leave"
    );
    assert!(f.ledger.get(&key(200, 2)).is_some_and(|p| p.is_zombie()));
}

#[test]
fn a_pid_reused_by_a_new_process_is_a_different_process() {
    let mut f = Fixture::new();
    let parent = id(100, 1);
    f.apply(fork(1, parent, id(300, 2)));
    f.apply(exit(2, id(300, 2), parent, 0, id(1, 0)));
    // PID 300 is still a zombie; a stale event about an older PID 300 must
    // not touch it, and a new PID 300 after the reap is a new process.
    f.apply(wait4(3, parent, 300));
    f.apply(fork(4, parent, id(300, 9)));
    assert_eq!(f.pending(key(100, 1)), 0);
    assert!(f.ledger.get(&key(300, 9)).is_some_and(|p| !p.is_zombie()));
    f.apply(exit(5, id(300, 9), parent, 0, id(1, 0)));
    assert_eq!(f.pending(key(100, 1)), 1);
    assert_eq!(
        f.ledger.oldest_zombie(&key(100, 1)),
        Some(ExitTime::At(5)),
        "the new zombie's exit time, not the old one's"
    );
}

#[test]
fn stop_reports_and_wnowait_peeks_release_nothing() {
    let mut f = Fixture::new();
    let parent = id(100, 1);
    f.apply(fork(1, parent, id(200, 2)));
    f.apply(exit(2, id(200, 2), parent, 0, id(1, 0)));
    let Event::Wait(mut stopped) = wait4(3, parent, 200) else {
        unreachable!()
    };
    stopped.status = 0x137f; // WIFSTOPPED, SIGSTOP
    f.apply(Event::Wait(stopped));
    f.apply(waitid(4, parent, 200, 1, 0x0100_0000)); // WNOWAIT
    f.apply(waitid(5, parent, 200, 5, 0)); // CLD_STOPPED
    assert_eq!(f.pending(key(100, 1)), 1);
    f.apply(waitid(6, parent, 200, 1, 0)); // CLD_EXITED
    assert_eq!(f.pending(key(100, 1)), 0);
    assert_eq!(
        f.ledger.get(&key(100, 1)).map(|p| p.stats.wait_calls),
        Some(4)
    );
}

#[test]
fn auto_reaped_children_never_become_pending() {
    let mut f = Fixture::new();
    let parent = id(100, 1);
    f.apply(fork(1, parent, id(200, 2)));
    f.apply(exit(2, id(200, 2), parent, exit_flags::AUTOREAP, id(1, 0)));
    assert_eq!(f.pending(key(100, 1)), 0);
    assert_eq!(f.released(), vec![(200, ReapKind::AutoReap)]);
    assert_eq!(
        f.ledger.get(&key(100, 1)).map(|p| p.stats.auto_reaped),
        Some(1)
    );
}

#[test]
fn a_dying_parent_hands_its_zombies_and_children_to_the_adopter() {
    let mut f = Fixture::new();
    let init = id(1, 0);
    let sub = id(50, 1);
    let leaky = id(100, 2);
    f.apply(fork(1, sub, leaky));
    for pid in [200, 201, 202] {
        f.apply(fork(2, leaky, id(pid, 3)));
    }
    f.apply(exit(3, id(200, 3), leaky, 0, init));
    f.apply(exit(4, id(201, 3), leaky, 0, init));
    assert_eq!(f.pending(key(100, 2)), 2);
    // The leaky parent dies; the kernel names the subreaper as adopter.
    f.apply(exit(5, leaky, sub, exit_flags::HAS_ADOPTER, sub));
    assert_eq!(f.pending(key(100, 2)), 0, "its zombies leave its row");
    assert_eq!(
        f.pending(key(50, 1)),
        3,
        "two adopted zombies + leaky itself"
    );
    // The live child exits later: the subreaper owes it too, even though the
    // event still names the dead parent (it raced the reparenting).
    f.apply(exit(6, id(202, 3), leaky, 0, init));
    assert_eq!(f.pending(key(50, 1)), 4);
    assert_eq!(
        f.ledger.parent_of(&key(202, 3)).map(|p| p.key),
        Some(key(50, 1))
    );
    // The subreaper reaps an adopted one: an adopter reap.
    f.apply(wait4(7, sub, 201));
    assert_eq!(f.released(), vec![(201, ReapKind::AdopterWait)]);
    assert_eq!(
        f.ledger.oldest_zombie(&key(50, 1)),
        Some(ExitTime::At(3)),
        "adopted zombies keep their exit time"
    );
}

#[test]
fn an_adopter_that_ignores_sigchld_releases_inherited_zombies() {
    let mut f = Fixture::new();
    let init = id(1, 0);
    let leaky = id(100, 2);
    f.apply(fork(1, init, leaky));
    f.apply(fork(2, leaky, id(200, 3)));
    f.apply(exit(3, id(200, 3), leaky, 0, init));
    f.apply(exit(
        5,
        leaky,
        init,
        exit_flags::HAS_ADOPTER | exit_flags::ADOPTER_AUTOREAPS,
        init,
    ));
    assert_eq!(f.pending(key(1, 0)), 1, "only the leaky parent itself");
    assert_eq!(f.released(), vec![(200, ReapKind::AdopterAutoReap)]);
    assert_eq!(
        f.ledger.get(&key(1, 0)).map(|p| p.stats.auto_reaped),
        Some(1),
        "the adopter's SIGCHLD disposition released it"
    );
}

#[test]
fn a_dead_namespace_init_takes_its_namespace_with_it() {
    let mut f = Fixture::new();
    let shim = id(90, 1);
    let ns_init = id(100, 2);
    f.apply(fork(1, shim, ns_init));
    f.apply(fork(2, ns_init, id(200, 3)));
    f.apply(fork(2, ns_init, id(201, 3)));
    f.apply(exit(3, id(200, 3), ns_init, 0, NONE));
    f.apply(exit(4, ns_init, shim, exit_flags::NS_INIT, NONE));
    f.apply(exit(5, id(201, 3), ns_init, 0, NONE));
    assert_eq!(f.pending(key(100, 2)), 0);
    assert_eq!(
        f.released(),
        vec![
            (200, ReapKind::NamespaceTeardown),
            (201, ReapKind::NamespaceTeardown)
        ]
    );
    assert_eq!(f.pending(key(90, 1)), 1, "the shim owes the init's reap");
}

#[test]
fn duplicate_exits_from_racing_threads_count_once() {
    let mut f = Fixture::new();
    let parent = id(100, 1);
    f.apply(fork(1, parent, id(200, 2)));
    f.apply(exit(2, id(200, 2), parent, 0, id(1, 0)));
    f.apply(exit(2, id(200, 2), parent, 0, id(1, 0)));
    assert_eq!(f.pending(key(100, 1)), 1);
    assert_eq!(f.ledger.counters.duplicate_exits, 1);
}

fn stat(pid: u32, ppid: u32, state: char, start_ticks: u64) -> ProcStat {
    ProcStat {
        pid,
        ppid,
        state,
        comm: comm("scanned"),
        start_ticks,
        num_threads: 1,
        flags: 0,
    }
}

#[test]
fn zombies_found_at_start_are_owed_since_before_start() {
    let mut f = Fixture::new();
    f.ledger.seed(
        &[
            stat(1, 0, 'S', 0),
            stat(1847, 1, 'S', 5),
            stat(3000, 1847, 'Z', 6),
            stat(3001, 1847, 'Z', 6),
            stat(3002, 1847, 'S', 6),
        ],
        |st| st.pid,
    );
    assert_eq!(f.pending(key(1847, 5)), 2);
    let p = f.ledger.get(&key(1847, 5)).map(|p| p.stats);
    assert_eq!(p.map(|s| s.pending_before_start), Some(2));
    assert_eq!(
        f.ledger.oldest_zombie(&key(1847, 5)),
        Some(ExitTime::BeforeStart)
    );
    // An exit event that raced the scan tells us when it really happened.
    f.apply(exit(
        1_500,
        ProcessId {
            tgid: 3000,
            _pad: 0,
            start_boottime_ns: 6 * NS_PER_TICK,
        },
        id(1847, 5),
        0,
        id(1, 0),
    ));
    assert_eq!(f.pending(key(1847, 5)), 2);
    assert_eq!(
        f.ledger
            .get(&key(1847, 5))
            .map(|p| p.stats.pending_before_start),
        Some(1)
    );
    // The parent's wait releases a before-start zombie.
    f.apply(wait4(2_000, id(1847, 5), 3001));
    assert_eq!(f.pending(key(1847, 5)), 1);
}

#[test]
fn threads_are_invisible_to_the_ledger() {
    // The kernel side never sends thread events; a process whose thread
    // reaps is still the same process (tgid identity).
    let mut f = Fixture::new();
    let parent = id(100, 1);
    f.apply(fork(1, parent, id(200, 2)));
    f.apply(exit(2, id(200, 2), parent, 0, id(1, 0)));
    let Event::Wait(mut from_thread) = wait4(3, parent, 200) else {
        unreachable!()
    };
    from_thread.header.tid = 101;
    f.apply(Event::Wait(from_thread));
    assert_eq!(f.pending(key(100, 1)), 0);
    assert_eq!(f.ledger.len(), 1);
}

fn sigaction(ts: u64, process: ProcessId, handler: u64, flags: u64) -> Event {
    Event::Attr(AttrEvent {
        header: header(EventKind::Attr, ts),
        process,
        attr: AttrKind::SigchldAction as u32,
        _pad: 0,
        value: handler,
        flags,
        ret: 0,
    })
}

#[test]
fn a_removed_sigchld_handler_is_remembered_with_its_time() {
    let mut f = Fixture::new();
    let runner = id(1847, 5);
    f.apply(sigaction(100, runner, 0x5555_0000, 0));
    f.apply(sigaction(200, runner, 0, 0));
    let p = f.ledger.get(&key(1847, 5)).expect("tracked");
    assert_eq!(p.sigchld, SigchldAction::Default);
    assert_eq!(
        p.last_sigchld_change,
        Some(SigchldChange {
            at_ns: 200,
            from: SigchldAction::Handler,
            to: SigchldAction::Default,
            cause: ChangeCause::Sigaction,
        })
    );
    // A failed call changes nothing.
    let Event::Attr(mut failed) = sigaction(300, runner, 1, 0) else {
        unreachable!()
    };
    failed.ret = -22;
    f.apply(Event::Attr(failed));
    assert_eq!(
        f.ledger.get(&key(1847, 5)).map(|p| p.sigchld),
        Some(SigchldAction::Default)
    );
}

#[test]
fn children_inherit_the_action_and_exec_resets_a_handler() {
    let mut f = Fixture::new();
    let parent = id(100, 1);
    f.apply(sigaction(1, parent, 0x4000, 2)); // handler + SA_NOCLDWAIT
    f.apply(fork(2, parent, id(200, 2)));
    let child = f.ledger.get(&key(200, 2)).expect("child");
    assert_eq!(
        (child.sigchld, child.nocldwait),
        (SigchldAction::Handler, true)
    );
    f.apply(Event::Exec(zombie_trace_common::ExecEvent {
        header: header(EventKind::Exec, 3),
        process: id(200, 2),
        comm: comm("worker"),
    }));
    let child = f.ledger.get(&key(200, 2)).expect("child");
    assert_eq!(
        (child.sigchld, child.nocldwait),
        (SigchldAction::Default, false)
    );
    assert_eq!(
        child.last_sigchld_change.map(|c| c.cause),
        Some(ChangeCause::Exec)
    );
}

#[test]
fn wait_calls_are_classified() {
    let mut f = Fixture::new();
    let parent = id(100, 1);
    f.apply(fork(1, parent, id(200, 2)));
    f.apply(fork(1, parent, id(201, 2)));
    f.apply(exit(2, id(200, 2), parent, 0, id(1, 0)));
    // waitpid(201, 0): a specific wait for a live child, while 200 is a zombie.
    let Event::Wait(mut specific) = wait4(3, parent, 0) else {
        unreachable!()
    };
    specific.target = 201;
    specific.ret = -4; // EINTR
    f.apply(Event::Wait(specific));
    // waitpid(-1, WNOHANG) finding nothing, then ECHILD.
    let Event::Wait(mut nohang) = wait4(4, parent, 0) else {
        unreachable!()
    };
    nohang.options = 1;
    f.apply(Event::Wait(nohang));
    f.apply(wait4(5, parent, -10));
    f.apply(waitid(6, parent, 200, 1, 0x0100_0000)); // WNOWAIT peek
    let p = f.ledger.get(&key(100, 1)).expect("parent");
    let w = p.waits;
    assert_eq!(
        (
            w.specific,
            w.any,
            w.nohang_empty,
            w.echild,
            w.errors,
            w.wnowait_peeks
        ),
        (1, 3, 1, 1, 1, 1)
    );
    assert_eq!(w.last_specific_target, 201);
    assert_eq!(w.last_reap_ns, 0);
    assert_eq!(p.stats.pending, 1);
}

#[test]
fn fork_events_tell_who_is_a_subreaper() {
    let mut f = Fixture::new();
    let Event::Fork(mut e) = fork(1, id(50, 1), id(60, 2)) else {
        unreachable!()
    };
    e.parent_flags = zombie_trace_common::fork_flags::PARENT_SUBREAPER;
    f.apply(Event::Fork(e));
    let sub = f.ledger.get(&key(50, 1)).expect("subreaper");
    assert_eq!(
        (sub.subreaper, sub.has_subreaper_ancestor),
        (Some(true), Some(false))
    );
    let child = f.ledger.get(&key(60, 2)).expect("child");
    assert_eq!(
        (child.subreaper, child.has_subreaper_ancestor),
        (Some(false), Some(true))
    );
}

fn free(ts: u64, process: ProcessId) -> Event {
    Event::Free(FreeEvent {
        header: header(EventKind::Free, ts),
        process,
    })
}

#[test]
fn a_zombie_freed_without_a_traced_wait_leaves_as_freed() {
    // io_uring IORING_OP_WAITID or a 32-bit wait: no wait event, only the
    // kernel freeing the process.
    let mut f = Fixture::new();
    let parent = id(100, 1);
    for n in 0..3 {
        f.apply(fork(10 + n, parent, id(200 + n as u32, 2)));
        f.apply(exit(20 + n, id(200 + n as u32, 2), parent, 0, id(1, 0)));
    }
    assert_eq!(f.pending(key(100, 1)), 3);
    for n in 0..3 {
        f.apply(free(30 + n, id(200 + n as u32, 2)));
    }
    assert_eq!(f.pending(key(100, 1)), 0);
    assert_eq!(f.ledger.counters.freed_zombies, 3);
    assert_eq!(f.ledger.len(), 1, "only the parent is left");
    assert_eq!(
        f.released(),
        vec![
            (200, ReapKind::Freed),
            (201, ReapKind::Freed),
            (202, ReapKind::Freed)
        ]
    );
    assert_eq!(f.ledger.get(&key(100, 1)).map(|p| p.stats.reaped), Some(3));
    // The usual case: a free after a traced release finds nothing to do.
    f.apply(fork(40, parent, id(300, 3)));
    f.apply(exit(41, id(300, 3), parent, 0, id(1, 0)));
    f.apply(wait4(42, parent, 300));
    f.apply(free(43, id(300, 3)));
    assert_eq!(f.ledger.counters.freed_zombies, 3);
    assert_eq!(f.released().last(), Some(&(300, ReapKind::ParentWait)));
}

#[test]
fn a_process_freed_while_alive_in_the_ledger_leaves_quietly() {
    // Its exit was lost: it leaves when the kernel frees it, owing nothing.
    let mut f = Fixture::new();
    let parent = id(100, 1);
    f.apply(fork(10, parent, id(200, 2)));
    f.apply(free(20, id(200, 2)));
    assert!(f.ledger.get(&key(200, 2)).is_none());
    assert_eq!(f.ledger.counters.freed_alive, 1);
    assert!(f.released().is_empty());
}

/// What the kernel does, as the tracer would see it: each action has an
/// effect on the process table (what a /proc scan shows) and an event. An
/// exit's event comes between its two effects (`sched_process_exit` fires
/// after the task is marked exiting and before it becomes a zombie); every
/// other event comes after its effect.
#[derive(Clone, Copy, Debug)]
enum Action {
    Fork {
        parent: ProcessId,
        child: ProcessId,
    },
    Exit {
        process: ProcessId,
        parent: ProcessId,
    },
    /// The parent's wait4 releases the child (a wait event, then later a free).
    Wait {
        parent: ProcessId,
        child: ProcessId,
    },
    /// A release the tracer sees no call for (io_uring waitid).
    Untraced {
        child: ProcessId,
    },
    /// The kernel frees a released process (one RCU grace period later).
    Free {
        process: ProcessId,
    },
}

#[derive(Clone, Copy, Debug)]
enum Step {
    /// `do_exit()` began: PF_EXITING.
    Exiting(ProcessId),
    Effect(Action),
    Event(Action),
}

fn steps(actions: &[Action]) -> Vec<Step> {
    actions
        .iter()
        .flat_map(|&a| match a {
            Action::Exit { process, .. } => {
                vec![Step::Exiting(process), Step::Event(a), Step::Effect(a)]
            }
            _ => vec![Step::Effect(a), Step::Event(a)],
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Alive,
    Exiting,
    Zombie,
}

/// The process table: (identity, ppid, life).
type Table = Vec<(ProcessId, u32, Life)>;

fn set_life(table: &mut Table, process: ProcessId, life: Life) {
    if let Some(entry) = table.iter_mut().find(|e| e.0 == process) {
        entry.2 = life;
    }
}

fn effect(table: &mut Table, step: Step) {
    match step {
        Step::Exiting(process) => set_life(table, process, Life::Exiting),
        Step::Effect(Action::Fork { parent, child }) => {
            table.push((child, parent.tgid, Life::Alive));
        }
        Step::Effect(Action::Exit { process, .. }) => set_life(table, process, Life::Zombie),
        Step::Effect(Action::Wait { child, .. } | Action::Untraced { child }) => {
            table.retain(|e| e.0 != child);
        }
        Step::Effect(Action::Free { .. }) | Step::Event(_) => {}
    }
}

fn event(ts: u64, action: Action) -> Option<Event> {
    match action {
        Action::Fork { parent, child } => Some(fork(ts, parent, child)),
        Action::Exit { process, parent } => Some(exit(ts, process, parent, 0, id(1, 0))),
        Action::Wait { parent, child } => Some(wait4(ts, parent, i64::from(child.tgid))),
        Action::Untraced { .. } => None,
        Action::Free { process } => Some(free(ts, process)),
    }
}

fn scan_of(table: &Table) -> Vec<ProcStat> {
    table
        .iter()
        .map(|&(p, ppid, life)| {
            let mut st = stat(
                p.tgid,
                ppid,
                if life == Life::Zombie { 'Z' } else { 'R' },
                p.start_boottime_ns / NS_PER_TICK,
            );
            if life == Life::Exiting {
                st.flags = 0x4; // PF_EXITING
            }
            st
        })
        .collect()
}

/// Zombies as (pid, start tick, parent pid), and live processes as (pid,
/// start tick).
type Census = (Vec<(u32, u64, u32)>, Vec<(u32, u64)>);

fn zombies_and_alive(table: &Table) -> Census {
    let mut zombies: Vec<_> = table
        .iter()
        .filter(|e| e.2 == Life::Zombie)
        .map(|&(p, ppid, _)| (p.tgid, p.start_boottime_ns / NS_PER_TICK, ppid))
        .collect();
    let mut alive: Vec<_> = table
        .iter()
        .filter(|e| e.2 != Life::Zombie)
        .map(|&(p, _, _)| (p.tgid, p.start_boottime_ns / NS_PER_TICK))
        .collect();
    zombies.sort_unstable();
    alive.sort_unstable();
    (zombies, alive)
}

fn ledger_zombies_and_alive(ledger: &Ledger) -> Census {
    let mut zombies: Vec<_> = ledger
        .processes()
        .filter(|p| p.is_zombie())
        .map(|p| {
            let parent = ledger.parent_of(&p.key).map_or(0, |q| q.key.pid);
            (p.key.pid, p.key.start_ticks, parent)
        })
        .collect();
    let mut alive: Vec<_> = ledger
        .processes()
        .filter(|p| !p.is_zombie())
        .map(|p| (p.key.pid, p.key.start_ticks))
        .collect();
    zombies.sort_unstable();
    alive.sort_unstable();
    (zombies, alive)
}

/// The oldest zombie the ledger keeps for each parent is the one a walk of
/// its children finds.
fn assert_oldest_kept(ledger: &Ledger) {
    for p in ledger.processes() {
        assert_eq!(
            ledger.oldest_zombie(&p.key),
            ledger.walk_oldest_zombie(&p.key),
            "{:?}",
            p.key
        );
    }
}

#[test]
fn the_oldest_zombie_is_kept_as_a_reaper_takes_them_in_order() {
    let parent = id(100, 1);
    let mut ledger = Ledger::new(clock(), 1_000, 64);
    ledger.apply(&fork(2_000, id(1, 0), parent), &mut |_| {});
    let children: Vec<ProcessId> = (0..5).map(|i| id(200 + i, 2)).collect();
    for (i, &child) in children.iter().enumerate() {
        let i = i as u64;
        ledger.apply(&fork(3_000 + i, parent, child), &mut |_| {});
        // Exits out of order: the third child exits first.
        let exit_ns = [50_000, 40_000, 10_000, 30_000, 20_000][i as usize];
        ledger.apply(&exit(exit_ns, child, parent, 0, id(1, 0)), &mut |_| {});
    }
    let owner = clock().key(&parent);
    assert_eq!(ledger.oldest_zombie(&owner), Some(ExitTime::At(10_000)));
    // Reaped oldest first; the answer is right before and after a refresh.
    for (reaped, next) in [
        (202, Some(20_000)),
        (204, Some(30_000)),
        (203, Some(40_000)),
    ] {
        ledger.apply(&wait4(60_000, parent, reaped), &mut |_| {});
        assert_eq!(ledger.oldest_zombie(&owner), next.map(ExitTime::At));
        ledger.refresh_oldest();
        assert_eq!(ledger.oldest_zombie(&owner), next.map(ExitTime::At));
        assert_oldest_kept(&ledger);
    }
    // A younger zombie reaped leaves the oldest as it was.
    ledger.apply(&wait4(61_000, parent, 200), &mut |_| {});
    assert_eq!(ledger.oldest_zombie(&owner), Some(ExitTime::At(40_000)));
    ledger.apply(&wait4(62_000, parent, 201), &mut |_| {});
    assert_eq!(ledger.oldest_zombie(&owner), None);
    assert_oldest_kept(&ledger);
}

/// Attaches the tracer before step `attach`, scans /proc before step `scan`
/// (after the attach, as the session does), applies every recorded event,
/// and checks that the ledger equals the process table at the end: no
/// zombie the kernel released, every zombie it holds, under its parent.
fn check_every_interleaving(initial: &Table, actions: &[Action]) {
    let steps = steps(actions);
    let mut end = initial.clone();
    for &step in &steps {
        effect(&mut end, step);
    }
    let truth = zombies_and_alive(&end);
    for attach in 0..=steps.len() {
        for scan in attach..=steps.len() {
            let mut table = initial.clone();
            for &step in &steps[..scan] {
                effect(&mut table, step);
            }
            let mut ledger = Ledger::new(clock(), 1_000, 64);
            ledger.seed(&scan_of(&table), |st| st.pid);
            for (i, step) in steps.iter().enumerate().skip(attach) {
                if let Step::Event(a) = *step
                    && let Some(e) = event(10_000 + i as u64, a)
                {
                    ledger.apply(&e, &mut |_| {});
                    // The engine refreshes before views read; between,
                    // the ledger answers by walking.
                    if i % 2 == 0 {
                        ledger.refresh_oldest();
                    }
                    assert_oldest_kept(&ledger);
                }
            }
            assert_eq!(
                ledger_zombies_and_alive(&ledger),
                truth,
                "attach before step {attach}, scan before step {scan} of {steps:?}"
            );
        }
    }
}

#[test]
fn the_start_up_scan_and_the_stream_agree_in_every_interleaving() {
    let init = id(1, 0);
    let runner = id(100, 1);
    let initial: Table = vec![
        (init, 0, Life::Alive),
        (runner, 1, Life::Alive),
        (id(150, 1), 100, Life::Zombie),
    ];
    let (a, b, c, d) = (id(200, 2), id(201, 2), id(202, 2), id(203, 2));
    check_every_interleaving(
        &initial,
        &[
            // A zombie from before the start, reaped by a wait.
            Action::Wait {
                parent: runner,
                child: id(150, 1),
            },
            Action::Free {
                process: id(150, 1),
            },
            // Forked, exited and reaped by a wait.
            Action::Fork {
                parent: runner,
                child: a,
            },
            Action::Exit {
                process: a,
                parent: runner,
            },
            Action::Wait {
                parent: runner,
                child: a,
            },
            Action::Free { process: a },
            // Reaped by a call the tracer does not see.
            Action::Fork {
                parent: runner,
                child: b,
            },
            Action::Exit {
                process: b,
                parent: runner,
            },
            Action::Untraced { child: b },
            Action::Free { process: b },
            // Never reaped.
            Action::Fork {
                parent: runner,
                child: c,
            },
            Action::Exit {
                process: c,
                parent: runner,
            },
            // Still alive.
            Action::Fork {
                parent: runner,
                child: d,
            },
        ],
    );
}

#[test]
fn a_reused_pid_never_confuses_the_scan_and_the_stream() {
    let init = id(1, 0);
    let runner = id(100, 1);
    let initial: Table = vec![(init, 0, Life::Alive), (runner, 1, Life::Alive)];
    // The same PID three times, each a different process; the second is
    // reaped without a traced call, the third is left a zombie.
    let (first, second, third) = (id(500, 2), id(500, 3), id(500, 4));
    let mut actions = Vec::new();
    for (child, reap) in [(first, true), (second, false)] {
        actions.push(Action::Fork {
            parent: runner,
            child,
        });
        actions.push(Action::Exit {
            process: child,
            parent: runner,
        });
        actions.push(if reap {
            Action::Wait {
                parent: runner,
                child,
            }
        } else {
            Action::Untraced { child }
        });
        actions.push(Action::Free { process: child });
    }
    actions.push(Action::Fork {
        parent: runner,
        child: third,
    });
    actions.push(Action::Exit {
        process: third,
        parent: runner,
    });
    check_every_interleaving(&initial, &actions);
}

#[test]
fn a_free_racing_ahead_of_the_wait_still_leaves_one_release() {
    // The reaper was preempted between releasing the child and returning
    // from wait4: the free event arrives first.
    let mut f = Fixture::new();
    let parent = id(100, 1);
    f.apply(fork(10, parent, id(200, 2)));
    f.apply(exit(20, id(200, 2), parent, 0, id(1, 0)));
    f.apply(free(30, id(200, 2)));
    f.apply(wait4(31, parent, 200));
    assert_eq!(f.pending(key(100, 1)), 0);
    assert_eq!(f.released(), vec![(200, ReapKind::Freed)]);
    assert_eq!(f.ledger.counters.unmatched_reaps, 1);
}

#[test]
fn a_resync_makes_the_ledger_equal_to_proc_and_reports_what_it_corrected() {
    let mut f = Fixture::new();
    let parent = id(100, 1);
    f.ledger
        .seed(&[stat(1, 0, 'S', 0), stat(100, 1, 'S', 1)], |st| st.pid);
    // What the ledger saw before events were lost: 3 zombies, 1 live child.
    for n in 0..3u32 {
        f.apply(fork(10, parent, id(200 + n, 2)));
        f.apply(exit(20, id(200 + n, 2), parent, 0, id(1, 0)));
    }
    f.apply(fork(30, parent, id(300, 2)));
    assert_eq!(f.pending(key(100, 1)), 3);
    // The kernel meanwhile: 200 and 201 were reaped (lost waits), 300 died
    // (lost exit), 400 was forked and died (all lost), 401 is a new live
    // child.
    let scan = [
        stat(1, 0, 'S', 0),
        stat(100, 1, 'S', 1),
        stat(202, 100, 'Z', 2),
        stat(300, 100, 'Z', 2),
        stat(400, 100, 'Z', 3),
        stat(401, 100, 'S', 3),
    ];
    f.changes.clear();
    let summary = f
        .ledger
        .resync(&scan, 5_000, |st| st.pid, &mut |c| f.changes.push(c));
    assert_eq!(
        summary,
        ResyncSummary {
            zombies_removed: 2,
            zombies_added: 2,
            gone_removed: 0,
            added: 1,
            relinked: 0,
        }
    );
    assert_eq!(summary.corrections(), 5);
    assert_eq!(f.pending(key(100, 1)), 3);
    let (zombies, alive) = ledger_zombies_and_alive(&f.ledger);
    assert_eq!(zombies, vec![(202, 2, 100), (300, 2, 100), (400, 3, 100)]);
    assert_eq!(alive, vec![(1, 0), (100, 1), (401, 3)]);
    assert_eq!(
        f.released(),
        vec![(200, ReapKind::Resync), (201, ReapKind::Resync)]
    );
    let exited: Vec<u32> = f
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Exited { child, .. } => Some(child.pid),
            _ => None,
        })
        .collect();
    assert_eq!(exited, vec![300, 400]);
    assert_eq!(
        f.ledger.get(&key(300, 2)).map(|p| p.state),
        Some(ProcState::Zombie(ExitTime::Unknown { seen_ns: 5_000 }))
    );
    // The events still in flight are idempotent against it: 300's exit
    // dates it, the parent's wait for 202 releases it.
    f.apply(exit(5_001, id(300, 2), parent, 0, id(1, 0)));
    f.apply(wait4(5_002, parent, 202));
    assert_eq!(f.pending(key(100, 1)), 2);
    // A second resync against the same table changes nothing more.
    let scan = [
        stat(1, 0, 'S', 0),
        stat(100, 1, 'S', 1),
        stat(300, 100, 'Z', 2),
        stat(400, 100, 'Z', 3),
        stat(401, 100, 'S', 3),
    ];
    let again = f.ledger.resync(&scan, 6_000, |st| st.pid, &mut |_| {});
    assert_eq!(again.corrections(), 0);
}

#[test]
fn a_resync_moves_zombies_to_the_parent_proc_names() {
    // The exit of their parent was lost: /proc shows them adopted by init.
    let mut f = Fixture::new();
    let parent = id(100, 1);
    f.ledger
        .seed(&[stat(1, 0, 'S', 0), stat(100, 1, 'S', 1)], |st| st.pid);
    f.apply(fork(10, parent, id(200, 2)));
    f.apply(exit(20, id(200, 2), parent, 0, id(1, 0)));
    let scan = [stat(1, 0, 'S', 0), stat(200, 1, 'Z', 2)];
    let summary = f.ledger.resync(&scan, 5_000, |st| st.pid, &mut |_| {});
    assert_eq!(summary.gone_removed, 1);
    assert_eq!(
        summary.relinked, 0,
        "its parent left: a new link, not a move"
    );
    assert_eq!(f.pending(key(1, 0)), 1);
    assert!(f.ledger.get(&key(100, 1)).is_none());
}

#[test]
fn zombies_are_handed_out_a_few_at_a_time_round_robin() {
    let mut f = Fixture::new();
    let parent = id(100, 1);
    for n in 0..5u32 {
        f.apply(fork(10, parent, id(200 + n, 2)));
        f.apply(exit(20, id(200 + n, 2), parent, 0, id(1, 0)));
    }
    let mut seen = Vec::new();
    let mut cursor = 0;
    for _ in 0..3 {
        let (keys, next) = f.ledger.zombies_from(cursor, 2);
        assert!(keys.len() <= 2);
        seen.extend(keys.iter().map(|k| k.pid));
        cursor = next;
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen,
        vec![200, 201, 202, 203, 204],
        "all five within three passes of two"
    );
    let (keys, _) = f.ledger.zombies_from(usize::MAX, 10);
    assert_eq!(keys.len(), 5, "a stale cursor starts over");
}
