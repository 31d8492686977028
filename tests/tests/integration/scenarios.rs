//! Scenario tests on the real kernel: run a workload under the real tracer and
//! expect exact ledger rows for its PID. Run as root, one test at a time
//! (they share the kernel): `cargo xtask test`.

use crate::common::*;
use zombie_trace::engine::live::Session;
use zombie_trace::host::procfs::{clock_ticks_per_second, read_stat};
use zombie_trace::kernel::tracer::{Tracer, TracerOptions};
use zombie_trace::model::{Change, ExitTime, ProcState, ReapKind, SigchldAction};
use zombie_trace_tests::client::{Workload, kernel_has_io_uring_waitid};

/// A parent with the default SIGCHLD disposition that never waits owes
/// exactly one reap per child, named by its PID.
fn never_waits(options: TracerOptions) {
    runtime().block_on(async {
        let mut session = start_session(options);
        let workload = Workload::start("never-waits", &["25"]);
        let pid = workload.pid();
        let seen = session
            .run_until(TIMEOUT, |l| pending(l, pid) == 25)
            .await
            .expect("tracer");
        assert!(
            seen,
            "never-waits {pid}: expected 25 pending, ledger says {:?}",
            stats(session.ledger(), pid)
        );
        session.run_for(QUIET).await.expect("tracer");
        let ledger = session.ledger();
        let parent = process(ledger, pid).expect("the parent is tracked");
        assert_eq!(parent.comm.as_str_lossy(), "never-waits");
        let s = parent.stats;
        assert_eq!(
            (s.pending, s.forks, s.exits, s.reaped, s.auto_reaped),
            (25, 25, 25, 0, 0)
        );
        assert_eq!(s.pending_before_start, 0);
        let mut expected = workload.children();
        expected.sort_unstable();
        assert_eq!(
            zombies_owed(ledger, pid),
            expected,
            "the zombies are exactly its children"
        );
        assert!(matches!(
            ledger.oldest_zombie(&parent.key),
            Some(ExitTime::At(_))
        ));
        assert_eq!(session.lost_events(), 0);
        drop(workload);
    });
}

#[test]
fn never_waiting_parent_owes_every_child() {
    if privileged() {
        never_waits(TracerOptions::default());
    }
}

/// Same story on the code path for kernels whose sched_process_exit has no
/// `group_dead` argument (whole-process exit decided from signal->live).
#[test]
fn never_waiting_parent_owes_every_child_without_group_dead_arg() {
    if privileged() {
        never_waits(TracerOptions {
            force_live_counter: true,
            ..TracerOptions::default()
        });
    }
}

/// Same story on the path for kernels without BTF tracepoints (raw
/// tracepoints, a helper call per read).
#[test]
fn never_waiting_parent_owes_every_child_with_raw_tracepoints() {
    if privileged() {
        never_waits(TracerOptions {
            force_raw_tracepoints: true,
            ..TracerOptions::default()
        });
    }
}

#[test]
fn handler_that_reaps_owes_nothing() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let mut session = start_session(TracerOptions::default());
        let workload = Workload::start("handler-reaps", &["25"]);
        let pid = workload.pid();
        let done = session
            .run_until(TIMEOUT, |l| stats(l, pid).reaped == 25)
            .await
            .expect("tracer");
        assert!(
            done,
            "expected 25 reaps, ledger says {:?}",
            stats(session.ledger(), pid)
        );
        session.run_for(QUIET).await.expect("tracer");
        let s = stats(session.ledger(), pid);
        assert_eq!(
            (s.pending, s.forks, s.exits, s.reaped, s.auto_reaped),
            (0, 25, 25, 25, 0)
        );
        assert!(s.wait_calls >= 25, "each reap is a wait call: {s:?}");
        drop(workload);
    });
}

fn auto_reaping(workload_name: &str) {
    runtime().block_on(async {
        let mut session = start_session(TracerOptions::default());
        let workload = Workload::start(workload_name, &["25"]);
        let pid = workload.pid();
        let done = session
            .run_until(TIMEOUT, |l| stats(l, pid).auto_reaped == 25)
            .await
            .expect("tracer");
        assert!(
            done,
            "expected 25 auto-reaps, ledger says {:?}",
            stats(session.ledger(), pid)
        );
        session.run_for(QUIET).await.expect("tracer");
        let s = stats(session.ledger(), pid);
        assert_eq!(
            (s.pending, s.forks, s.exits, s.reaped, s.auto_reaped),
            (0, 25, 25, 0, 25)
        );
        assert_eq!(s.wait_calls, 0, "{workload_name} never waits");
        for child in workload.children() {
            assert!(
                process(session.ledger(), child).is_none(),
                "auto-reaped child {child} left the ledger"
            );
        }
        drop(workload);
    });
}

#[test]
fn parent_ignoring_sigchld_owes_nothing() {
    if privileged() {
        auto_reaping("ignores-sigchld");
    }
}

#[test]
fn parent_with_sa_nocldwait_owes_nothing() {
    if privileged() {
        auto_reaping("nocldwait");
    }
}

fn threads_only(options: TracerOptions) {
    runtime().block_on(async {
        let mut session = start_session(options);
        let workload = Workload::start("threads-only", &["40"]);
        let pid = workload.pid();
        session.run_for(QUIET).await.expect("tracer");
        let ledger = session.ledger();
        let s = stats(ledger, pid);
        assert_eq!(
            (s.pending, s.forks, s.exits),
            (0, 0, 0),
            "threads are not children"
        );
        let tids = workload.pids("threads");
        assert_eq!(tids.len(), 40);
        for tid in tids {
            assert!(
                process(ledger, tid).is_none(),
                "thread {tid} must not be a process in the ledger"
            );
        }
        assert!(
            matches!(
                process(ledger, pid).map(|p| p.state),
                Some(ProcState::Alive)
            ),
            "a thread's exit is not the process's exit"
        );
        drop(workload);
    });
}

#[test]
fn threads_are_not_children() {
    if privileged() {
        threads_only(TracerOptions::default());
    }
}

#[test]
fn threads_are_not_children_without_group_dead_arg() {
    if privileged() {
        threads_only(TracerOptions {
            force_live_counter: true,
            ..TracerOptions::default()
        });
    }
}

#[test]
fn double_fork_orphans_are_reaped_by_the_adopter() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let mut session = start_session(TracerOptions::default());
        let workload = Workload::start("double-fork", &["10"]);
        let pid = workload.pid();
        let orphans = workload.pids("orphans");
        assert_eq!(orphans.len(), 10);
        let done = session
            .run_until(TIMEOUT, |l| {
                stats(l, pid).reaped == 10 && orphans.iter().all(|&o| process(l, o).is_none())
            })
            .await
            .expect("tracer");
        assert!(
            done,
            "expected the middles reaped and the orphans gone: {:?}",
            stats(session.ledger(), pid)
        );
        session.run_for(QUIET).await.expect("tracer");
        let ledger = session.ledger();
        let s = stats(ledger, pid);
        assert_eq!(
            (s.pending, s.forks, s.reaped),
            (0, 10, 10),
            "the original parent owes nothing"
        );
        let harness = workload.reaper_pid();
        let h = stats(ledger, harness);
        assert_eq!(h.pending, 0, "the adopter reaped every orphan: {h:?}");
        assert_eq!(
            h.adopted, 10,
            "each orphan was adopted by the harness: {h:?}"
        );
        drop(workload);
    });
}

#[test]
fn subreaper_that_never_reaps_owes_the_orphans() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let mut session = start_session(TracerOptions::default());
        let workload = Workload::start("subreaper", &["12"]);
        let pid = workload.pid();
        let orphans = workload.pids("orphans");
        let done = session
            .run_until(TIMEOUT, |l| pending(l, pid) == 12)
            .await
            .expect("tracer");
        assert!(
            done,
            "expected 12 pending on the subreaper: {:?}",
            stats(session.ledger(), pid)
        );
        session.run_for(QUIET).await.expect("tracer");
        let ledger = session.ledger();
        let s = stats(ledger, pid);
        assert_eq!(
            (s.pending, s.adopted, s.reaped),
            (12, 12, 1),
            "owes the 12 adopted, reaped the middle"
        );
        for orphan in orphans {
            let parent = process(ledger, orphan).and_then(|o| ledger.parent_of(&o.key));
            assert_eq!(
                parent.map(|p| p.key.pid),
                Some(pid),
                "orphan {orphan} is owed by the subreaper"
            );
        }
        let middle = workload
            .json()
            .get("middle")
            .and_then(|v| v.as_u64())
            .expect("middle pid") as u32;
        assert!(
            process(ledger, middle).is_none(),
            "the middle process was reaped"
        );
        drop(workload);
    });
}

#[test]
fn leaky_parent_that_exits_hands_its_zombies_on() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let mut session = start_session(TracerOptions::default());
        let mut workload = Workload::start("leaky-then-exit", &["10"]);
        let pid = workload.pid();
        let children = workload.children();
        let seen = session
            .run_until(TIMEOUT, |l| pending(l, pid) == 10)
            .await
            .expect("tracer");
        assert!(
            seen,
            "expected 10 pending: {:?}",
            stats(session.ledger(), pid)
        );
        workload.send_line("exit");
        let gone = session
            .run_until(TIMEOUT, |l| {
                process(l, pid).is_none() && children.iter().all(|&c| process(l, c).is_none())
            })
            .await
            .expect("tracer");
        assert!(
            gone,
            "the leaky parent and its zombies should be released by the harness"
        );
        let h = stats(session.ledger(), workload.reaper_pid());
        assert_eq!(h.pending, 0, "{h:?}");
        assert_eq!(h.adopted, 10, "{h:?}");
        assert_eq!(
            h.reaped, 11,
            "10 adopted zombies and the leaky parent itself: {h:?}"
        );
        drop(workload);
    });
}

/// Zombies older than the tracer are in the ledger before any event is
/// applied: the seed read of the process table alone. In a PID namespace
/// too (a container without an init), each zombie indexed by the PID its
/// parent's wait will return.
fn zombies_older_than_the_tracer(options: TracerOptions) -> Session {
    runtime().block_on(async {
        let workload = Workload::start("never-waits", &["15"]);
        let container = Workload::start("pidns-init", &["4"]);
        let pid = workload.pid();
        let session = start_session(options);
        let ledger = session.ledger();
        let parent = process(ledger, pid).expect("parent found by the seed");
        assert_eq!(parent.stats.pending, 15);
        assert_eq!(parent.stats.pending_before_start, 15);
        assert_eq!(
            ledger.oldest_zombie(&parent.key),
            Some(ExitTime::BeforeStart)
        );
        let mut expected = workload.children();
        expected.sort_unstable();
        assert_eq!(zombies_owed(ledger, pid), expected);

        let init = container.json()["ns_init"]
            .as_u64()
            .and_then(|pid| u32::try_from(pid).ok())
            .expect("pidns-init names its namespace init");
        let init = process(ledger, init).expect("the namespace init found by the seed");
        let mut seen: Vec<(u32, u32)> = ledger
            .children(&init.key)
            .map(|child| (child.key.pid, child.vpid))
            .collect();
        seen.sort_unstable();
        let mut expected: Vec<(u32, u32)> = container
            .pids("zombies")
            .into_iter()
            .zip(container.pids("ns_pids"))
            .collect();
        expected.sort_unstable();
        assert_eq!(
            seen, expected,
            "the namespace init's zombies as (host pid, pid in its namespace)"
        );
        drop(container);
        drop(workload);
        session
    })
}

/// The seed through the kernel's task iterator, as `check` says this
/// kernel has it.
#[test]
fn zombies_older_than_the_tracer_are_in_the_ledger_at_start() {
    if !privileged() {
        return;
    }
    let session = zombies_older_than_the_tracer(TracerOptions::default());
    let (_, checks) = check_json();
    let detail = check_detail(&checks, "process-table");
    assert_eq!(
        session.task_iterator(),
        detail.contains("task iterator"),
        "check says {detail:?}"
    );
}

/// Same story with the seed read from /proc (kernels without the task
/// iterator).
#[test]
fn zombies_older_than_the_tracer_are_in_the_ledger_at_start_read_from_proc() {
    if !privileged() {
        return;
    }
    let session = zombies_older_than_the_tracer(TracerOptions {
        force_proc_scan: true,
        ..TracerOptions::default()
    });
    assert!(!session.task_iterator());
}

/// The task iterator reads each process as `/proc/<pid>/stat` shows it:
/// a sleeping parent, its zombies, and this test's own process (libtest's
/// main thread waiting for this one: several threads).
#[test]
fn the_task_iterator_reads_processes_as_proc_shows_them() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let workload = Workload::start("never-waits", &["6"]);
        let mut tracer = Tracer::attach(TracerOptions::default()).expect("the tracer attaches");
        let ticks = clock_ticks_per_second().expect("clock ticks");
        let problem = tracer.task_iterator_problem().map(str::to_owned);
        let table = tracer
            .scan_tasks(ticks)
            .unwrap_or_else(|| panic!("every tested kernel has the task iterator: {problem:?}"))
            .expect("the task iterator reads");
        let mut pids = vec![workload.pid(), std::process::id()];
        pids.extend(workload.children());
        for pid in pids {
            let from_proc = read_stat(pid)
                .expect("read /proc")
                .unwrap_or_else(|| panic!("{pid} is in /proc"));
            let at = table
                .stats
                .iter()
                .position(|st| st.pid == pid)
                .unwrap_or_else(|| panic!("{pid} is in the task iterator's table"));
            assert_eq!(table.stats[at], from_proc, "pid {pid}");
            assert_eq!(table.vpids[at], pid, "pid {pid} in the host's namespace");
        }
        let this = read_stat(std::process::id()).expect("read /proc");
        assert!(this.is_some_and(|st| st.num_threads > 1), "{this:?}");
        let procs = table.summary.processes;
        let on_proc = std::fs::read_dir("/proc")
            .expect("list /proc")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            })
            .count() as u64;
        assert!(
            procs.abs_diff(on_proc) < 50,
            "the iterator listed {procs} processes, /proc {on_proc}"
        );
        drop(workload);
    });
}

/// The wait, sigaction and prctl arguments the exit programs see: the
/// waited-for PID, a removed SIGCHLD handler, a subreaper flag.
fn syscall_arguments(options: TracerOptions) {
    runtime().block_on(async {
        let mut session = start_session(options);
        let workload = Workload::start("wait-specific", &["8"]);
        let pid = workload.pid();
        let done = session
            .run_until(TIMEOUT, |l| {
                stats(l, pid).reaped == 1 && pending(l, pid) == 8
            })
            .await
            .expect("tracer");
        assert!(done, "{:?}", stats(session.ledger(), pid));
        let waits = process(session.ledger(), pid).expect("tracked").waits;
        assert_eq!((waits.specific, waits.any), (1, 0), "{waits:?}");
        assert_eq!(
            waits.last_specific_target as u32,
            workload.pids("reaped")[0],
            "the PID it waited for"
        );

        let removed = Workload::start("handler-removed", &["2", "2"]);
        let pid = removed.pid();
        let seen = session
            .run_until(TIMEOUT, |l| {
                process(l, pid).is_some_and(|p| {
                    p.sigchld == SigchldAction::Default && p.last_sigchld_change.is_some()
                })
            })
            .await
            .expect("tracer");
        assert!(seen, "the handler's removal is seen");

        let subreaper = Workload::start("subreaper", &["2"]);
        let pid = subreaper.pid();
        let seen = session
            .run_until(TIMEOUT, |l| {
                process(l, pid).is_some_and(|p| p.subreaper == Some(true))
            })
            .await
            .expect("tracer");
        assert!(seen, "PR_SET_CHILD_SUBREAPER is seen");
        assert_eq!(session.lost_events(), 0);
    });
}

#[test]
fn exit_programs_read_the_syscall_arguments() {
    if privileged() {
        syscall_arguments(TracerOptions::default());
    }
}

/// Same story on the path for kernels where the exit programs cannot read
/// the saved registers (entry programs save the arguments) and have no BTF
/// tracepoints.
#[test]
fn entry_programs_save_the_syscall_arguments() {
    if privileged() {
        syscall_arguments(TracerOptions {
            force_entry_programs: true,
            force_raw_tracepoints: true,
            ..TracerOptions::default()
        });
    }
}

/// A one-page ring buffer that nobody drains during a burst must overflow,
/// and the loss must be counted, not hidden.
#[test]
fn a_tiny_ring_buffer_under_a_burst_counts_lost_events() {
    if !privileged() {
        return;
    }
    runtime().block_on(async {
        let session = start_session(TracerOptions {
            ring_bytes: 4096,
            ..TracerOptions::default()
        });
        // 200 forks and exits: ~40 KiB of records into 4 KiB, not drained.
        let workload = Workload::start("never-waits", &["200"]);
        let lost = session.lost_events();
        assert!(
            lost > 0,
            "expected lost events with a 4 KiB ring and 400 records, got {lost}"
        );
        drop(workload);
    });
}

/// A parent that reaps with a call the wait tracepoints never see owes
/// nothing once it has reaped: its zombies leave the ledger when the kernel
/// frees them, counted as `freed` releases (never as a parent's wait).
fn reaps_without_a_traced_wait(workload_name: &str, children: u32) {
    runtime().block_on(async {
        let mut session = start_session(TracerOptions::default());
        let mut freed = Vec::new();
        let workload = Workload::start(workload_name, &[&children.to_string()]);
        let pid = workload.pid();
        let done = session
            .run_until_with(
                TIMEOUT,
                &mut |change| {
                    if let Change::Released {
                        reaper, child, how, ..
                    } = change
                        && reaper.pid == pid
                    {
                        freed.push((child.pid, how));
                    }
                },
                |l| stats(l, pid).reaped == u64::from(children),
            )
            .await
            .expect("tracer");
        assert!(
            done,
            "{workload_name} {pid}: expected {children} releases, ledger says {:?}",
            stats(session.ledger(), pid)
        );
        session.run_for(QUIET).await.expect("tracer");
        let s = stats(session.ledger(), pid);
        assert_eq!(
            (s.pending, s.forks, s.exits, s.reaped),
            (
                0,
                u64::from(children),
                u64::from(children),
                u64::from(children)
            ),
            "{workload_name} owes nothing"
        );
        let mut expected: Vec<(u32, ReapKind)> = workload
            .children()
            .into_iter()
            .map(|c| (c, ReapKind::Freed))
            .collect();
        expected.sort_unstable();
        freed.sort_unstable();
        assert_eq!(freed, expected, "every child left as freed");
        assert!(session.ledger().counters.freed_zombies >= u64::from(children));
        assert_eq!(session.lost_events(), 0);
        drop(workload);
    });
}

/// On a kernel without `IORING_OP_WAITID` (before 6.7) this reap path does
/// not exist; what is left to prove there is that `check` says so.
#[test]
fn a_parent_reaping_with_io_uring_waitid_owes_nothing() {
    if !privileged() {
        return;
    }
    if kernel_has_io_uring_waitid().expect("probe io_uring") {
        reaps_without_a_traced_wait("uring-reaper", 20);
    } else {
        let (_, checks) = check_json();
        let detail = check_detail(&checks, "reap-paths");
        assert!(
            detail.contains("IORING_OP_WAITID (not in this kernel"),
            "io_uring has no WAITID here, but check says {detail:?}"
        );
        eprintln!("no IORING_OP_WAITID in this kernel, and check says so");
    }
}

#[test]
fn a_parent_reaping_with_32_bit_waitpid_owes_nothing() {
    if privileged() {
        reaps_without_a_traced_wait("compat-reaper", 10);
    }
}
