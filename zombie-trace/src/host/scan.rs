//! A whole-table /proc scan, and the PID each zombie has in its parent's
//! PID namespace: the seed of a ledger and of every resync.

use std::collections::HashMap;

use crate::host::procfs::{self, ProcError, ProcStat, ScanSummary};

/// Every process in /proc.
pub fn scan() -> Result<(Vec<ProcStat>, ScanSummary), ProcError> {
    let mut stats: Vec<ProcStat> = Vec::with_capacity(4096);
    let summary = procfs::scan_processes(|st| stats.push(*st))?;
    Ok((stats, summary))
}

/// For a zombie found in /proc, its PID as its parent's PID namespace sees
/// it (what the parent's wait will return). Equal to the PID unless the
/// parent lives in another PID namespace; that is checked once per parent.
///
/// The parent's namespace depth is read from `NSpid` in its
/// `/proc/PID/status`, which anyone may read, not from the `ns/pid` link,
/// which the kernel guards with a ptrace access check: a tracer without
/// CAP_SYS_PTRACE could not read it for other users' processes, and would
/// index their zombies by the wrong PID.
pub fn vpid_resolver() -> impl FnMut(&ProcStat) -> u32 {
    let mut parent_level: HashMap<u32, Option<usize>> = HashMap::new();
    move |st: &ProcStat| {
        if !st.is_zombie() {
            return st.pid;
        }
        let level = *parent_level.entry(st.ppid).or_insert_with(|| {
            // One entry per namespace from ours down: one means ours.
            ns_pids(st.ppid).and_then(|pids| (pids.len() > 1).then(|| pids.len() - 1))
        });
        level
            .and_then(|level| ns_pids(st.pid)?.get(level).copied())
            .unwrap_or(st.pid)
    }
}

/// The PID of `pid` in each namespace from ours down to its own.
fn ns_pids(pid: u32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(procfs::parse_ns_pids(&status))
}
