//! Scenario workloads for the zombie-trace integration tests, and the
//! client-side helper the tests use to drive them.
//!
//! The modules:
//!
//! * [`workload`]: code shared by the programs in `src/bin/` (the `reaper`
//!   harness and the scenario workloads). Those programs talk to libc
//!   directly (`fork`, `_exit`, `waitpid`, `sigaction`, `prctl`) so that the
//!   tracer sees exactly the system calls a scenario describes, and nothing
//!   else.
//! * [`control`]: how those programs wait for commands on stdin, end of
//!   file, SIGTERM or SIGINT once they are ready.
//! * [`client`]: the driving side, for the tests and the bench:
//!   [`client::Workload`] starts one workload under the `reaper` harness,
//!   reads its "ready" line, and shuts it down again without leaking a
//!   single process; [`client::Process`] and [`client::Line`] start and
//!   read any other program (zombie-trace itself).
//!
//! # The workload protocol
//!
//! Every workload is run as `reaper <workload> [COUNT] [more args]`. The
//! `reaper` makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`), so
//! every orphan a scenario creates is reparented to it and reaped by it; on
//! this host PID 1 does not reap orphans, so without the harness they would
//! leak forever.
//!
//! A workload sets up its scenario, *verifies* it through `/proc` (no
//! sleep-based guesses; a 10 s timeout turns into an error message and exit
//! status 1), prints exactly one line to stdout and flushes it:
//!
//! ```text
//! {"ready":true,"pid":<own pid>,"children":[<pids>],"workload":"<name>",...extra}
//! ```
//!
//! and then blocks reading stdin. On end of file on stdin (the test closes
//! it), SIGTERM or SIGINT it cleans up what it owns (reaps its remaining
//! children) and exits 0.

pub mod chromium;
pub mod prometheus;

pub mod client;
pub mod control;
pub mod workload;

#[cfg(test)]
mod tests {
    use super::workload::{ProcStat, decode_i64s, encode_i64s, parse_stat};

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = "4242 (a) b (c)) Z 17 4242 4242 0 -1 4227404 0 0 0 0 0 0 0 0 20 0 1 0 \
                    987654 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: 'Z',
                ppid: 17,
                starttime: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_stat_is_readable() {
        let me = super::workload::getpid();
        let s = super::workload::proc_stat(me);
        assert!(s.is_some_and(|s| s.ppid > 0 && s.starttime > 0), "{s:?}");
    }

    #[test]
    fn i64_round_trip() {
        let v = [1, -2, i64::MAX];
        assert_eq!(decode_i64s(&encode_i64s(&v)), v);
    }
}
