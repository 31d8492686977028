//! The process table as the task iterator reads it in the kernel: one
//! [`TaskRecord`] per process, turned into the same [`ProcStat`] a
//! `/proc/<pid>/stat` read gives, with the PID each process has in its
//! parent's PID namespace.
//!
//! Why: the ledger's seed and every resync read the whole table. Through
//! /proc that is an `openat`, a `read` and a `close` per process (~6 µs
//! each here: ~0.17 s of a 0.28 s start with 28,000 zombies); the iterator
//! writes every process into one file read in a few large reads (~23 ms).

use zombie_trace_common::TaskRecord;

use crate::host::procfs::{ProcStat, ScanSummary};
use crate::kernel::events::{DecodeError, read};
use crate::model::TickClock;

/// One read of the whole table.
#[derive(Debug, Default)]
pub struct TaskTable {
    /// Every process, as /proc would list it.
    pub stats: Vec<ProcStat>,
    /// `vpids[i]` is the PID of `stats[i]` in its parent's PID namespace.
    pub vpids: Vec<u32>,
    pub summary: ScanSummary,
}

impl TaskTable {
    /// Decodes the iterator's file: whole records back to back.
    pub fn decode(bytes: &[u8], ticks_per_second: u64) -> Result<Self, DecodeError> {
        let size = std::mem::size_of::<TaskRecord>();
        if !bytes.len().is_multiple_of(size) {
            return Err(DecodeError::Short {
                kind: "task",
                len: bytes.len() % size,
                need: size,
            });
        }
        let count = bytes.len() / size;
        let mut table = Self {
            stats: Vec::with_capacity(count),
            vpids: Vec::with_capacity(count),
            summary: ScanSummary::default(),
        };
        for chunk in bytes.chunks_exact(size) {
            let record: TaskRecord = read(chunk, "task")?;
            let stat = proc_stat(&record, ticks_per_second);
            table.summary.processes += 1;
            table.summary.tasks += u64::from(stat.num_threads);
            table.stats.push(stat);
            table.vpids.push(record.vpid);
        }
        Ok(table)
    }
}

/// The `/proc/<pid>/stat` view of a record: state letter, start time in
/// clock ticks (`nsec_to_clock_t`, truncating), as `do_task_stat` computes
/// them.
pub fn proc_stat(record: &TaskRecord, ticks_per_second: u64) -> ProcStat {
    ProcStat {
        pid: record.process.tgid,
        ppid: record.ppid,
        state: state_letter(record.state, record.exit_state),
        comm: record.comm,
        start_ticks: TickClock::new(ticks_per_second)
            .key(&record.process)
            .start_ticks,
        num_threads: record.nr_threads,
        flags: record.flags,
    }
}

/// The letter /proc shows for a task's state and exit state: the kernel's
/// `task_state_index` (`TASK_REPORT` bits, an idle wait shown as `I`, an
/// rtlock wait as `D`) into "RSDTtXZPI".
pub fn state_letter(state: u32, exit_state: u32) -> char {
    const TASK_REPORT: u32 = 0x7f;
    const TASK_REPORT_IDLE: u32 = TASK_REPORT + 1;
    const TASK_UNINTERRUPTIBLE: u32 = 0x2;
    const TASK_NOLOAD: u32 = 0x400;
    const TASK_IDLE: u32 = TASK_UNINTERRUPTIBLE | TASK_NOLOAD;
    const TASK_RTLOCK_WAIT: u32 = 0x1000;
    const LETTERS: [char; 9] = ['R', 'S', 'D', 'T', 't', 'X', 'Z', 'P', 'I'];
    let mut report = (state | exit_state) & TASK_REPORT;
    if state & TASK_IDLE == TASK_IDLE {
        report = TASK_REPORT_IDLE;
    }
    if state & TASK_RTLOCK_WAIT != 0 {
        report = TASK_UNINTERRUPTIBLE;
    }
    // fls(): 0 for none, else the 1-based index of the highest set bit.
    let index = (u32::BITS - report.leading_zeros()) as usize;
    LETTERS.get(index).copied().unwrap_or('?')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use zombie_trace_common::ProcessId;

    #[test]
    fn state_letters_are_the_kernels() {
        assert_eq!(state_letter(0, 0), 'R');
        assert_eq!(state_letter(0x1, 0), 'S');
        assert_eq!(state_letter(0x2, 0), 'D');
        assert_eq!(state_letter(0x4, 0), 'T');
        assert_eq!(state_letter(0x8, 0), 't');
        // A stopped task is TASK_WAKEKILL | __TASK_STOPPED.
        assert_eq!(state_letter(0x100 | 0x4, 0), 'T');
        assert_eq!(state_letter(0x80, 0x10), 'X');
        // A zombie: TASK_DEAD in __state, EXIT_ZOMBIE in exit_state.
        assert_eq!(state_letter(0x80, 0x20), 'Z');
        assert_eq!(state_letter(0x40, 0), 'P');
        // TASK_IDLE (an idle kernel thread) and an rtlock wait.
        assert_eq!(state_letter(0x402, 0), 'I');
        assert_eq!(state_letter(0x1000, 0), 'D');
    }

    fn record(tgid: u32, start_ns: u64) -> TaskRecord {
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"sleep");
        TaskRecord {
            process: ProcessId {
                tgid,
                _pad: 0,
                start_boottime_ns: start_ns,
            },
            ppid: 7,
            vpid: 3,
            state: 0x80,
            exit_state: 0x20,
            flags: 0x4,
            nr_threads: 1,
            comm,
        }
    }

    fn bytes(records: &[TaskRecord]) -> Vec<u8> {
        let size = std::mem::size_of::<TaskRecord>();
        let mut out = Vec::new();
        for r in records {
            // SAFETY: TaskRecord is repr(C) integers and bytes with explicit padding.
            out.extend_from_slice(unsafe {
                std::slice::from_raw_parts((r as *const TaskRecord).cast::<u8>(), size)
            });
        }
        out
    }

    #[test]
    fn records_decode_as_proc_would_show_them() {
        let table =
            TaskTable::decode(&bytes(&[record(42, 1_234_567_890), record(43, 5)]), 100).unwrap();
        assert_eq!(table.summary.processes, 2);
        assert_eq!(table.summary.tasks, 2);
        assert_eq!(table.vpids, [3, 3]);
        let st = table.stats[0];
        assert_eq!((st.pid, st.ppid, st.state), (42, 7, 'Z'));
        // 1.23456789 s at 100 ticks a second: tick 123, truncated.
        assert_eq!(st.start_ticks, 123);
        assert_eq!(st.comm_bytes(), b"sleep");
        assert!(st.is_zombie());
        assert_eq!(table.stats[1].start_ticks, 0);
    }

    #[test]
    fn a_torn_file_is_an_error_not_a_short_table() {
        let mut b = bytes(&[record(42, 1)]);
        b.pop();
        assert!(TaskTable::decode(&b, 100).is_err());
        assert_eq!(TaskTable::decode(&[], 100).unwrap().stats.len(), 0);
    }
}
