//! How close the machine (or a process's cgroup) is to running out of PIDs.
//!
//! Every task holds a PID until it is released, zombies included. Three
//! limits can stop `fork()`: `kernel.pid_max`, `kernel.threads-max`, and the
//! `pids` cgroup controller's `pids.max` on the process's cgroup or any of
//! its ancestors (cgroup v1 `pids` hierarchy or cgroup v2).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::host::cgroup::Membership;
use crate::host::mounts::{MountEntry, read_mounts};
use crate::host::procfs;

/// The tightest `pids.max` on a process's cgroup path.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CgroupPids {
    /// The cgroup directory whose limit is tightest.
    pub path: PathBuf,
    pub current: u64,
    pub max: u64,
}

/// Which limit leaves the least headroom.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    PidMax,
    ThreadsMax,
    CgroupPidsMax,
}

impl Limit {
    pub fn describe(&self) -> &'static str {
        match self {
            Limit::PidMax => "kernel.pid_max",
            Limit::ThreadsMax => "kernel.threads-max",
            Limit::CgroupPidsMax => "the cgroup's pids.max",
        }
    }
}

/// PID-space usage as seen for one process (or the whole host).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PidPressure {
    /// Tasks in use on the host (each holds a PID).
    pub tasks: u64,
    pub pid_max: u32,
    pub threads_max: u32,
    /// The process's cgroup pids limit, when one applies.
    pub cgroup: Option<CgroupPids>,
    /// Tasks that can still be created before the tightest limit.
    pub headroom: u64,
    pub limit: Limit,
}

impl PidPressure {
    /// Reads the host limits and, with `pid`, that process's cgroup limit.
    pub fn read(pid: Option<u32>) -> Result<Self, procfs::ProcError> {
        let tasks = host_tasks().unwrap_or(0);
        let pid_max = procfs::pid_max()?;
        let threads_max = procfs::threads_max()?;
        let cgroup = pid.and_then(cgroup_pids);
        Ok(Self::from_parts(tasks, pid_max, threads_max, cgroup))
    }

    /// Limits that could not be read: no limit known.
    pub fn unknown() -> Self {
        Self::from_parts(0, u32::MAX, u32::MAX, None)
    }

    pub fn from_parts(
        tasks: u64,
        pid_max: u32,
        threads_max: u32,
        cgroup: Option<CgroupPids>,
    ) -> Self {
        // PIDs 0..300 are reserved once pid_max wraps; the kernel hands out
        // at most pid_max - 1 PIDs (PID 0 is never used).
        let mut best = (
            u64::from(pid_max).saturating_sub(1).saturating_sub(tasks),
            Limit::PidMax,
        );
        let threads = u64::from(threads_max).saturating_sub(tasks);
        if threads < best.0 {
            best = (threads, Limit::ThreadsMax);
        }
        if let Some(cg) = &cgroup {
            let room = cg.max.saturating_sub(cg.current);
            if room < best.0 {
                best = (room, Limit::CgroupPidsMax);
            }
        }
        Self {
            tasks,
            pid_max,
            threads_max,
            cgroup,
            headroom: best.0,
            limit: best.1,
        }
    }
}

/// The kernel's task count, from /proc/loadavg (4th field, "running/total").
pub fn host_tasks() -> Option<u64> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    loadavg
        .split_whitespace()
        .nth(3)?
        .split('/')
        .nth(1)?
        .parse()
        .ok()
}

/// The tightest `pids.max` on the cgroup path of `pid`, if any is set.
pub fn cgroup_pids(pid: u32) -> Option<CgroupPids> {
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mounts = read_mounts();
    let mut best: Option<CgroupPids> = None;
    for (mount, path) in pids_cgroup_dirs(&membership, &mounts) {
        let mut dir = mount.join(path.trim_start_matches('/'));
        loop {
            if let Some(found) = read_pids_limit(&dir) {
                let room = found.max.saturating_sub(found.current);
                if best
                    .as_ref()
                    .is_none_or(|b| room < b.max.saturating_sub(b.current))
                {
                    best = Some(found);
                }
            }
            if dir == mount || !dir.pop() || !dir.starts_with(&mount) {
                break;
            }
        }
    }
    best
}

fn read_pids_limit(dir: &Path) -> Option<CgroupPids> {
    let max = std::fs::read_to_string(dir.join("pids.max")).ok()?;
    let max: u64 = max.trim().parse().ok()?; // "max" means no limit here
    let current = std::fs::read_to_string(dir.join("pids.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(CgroupPids {
        path: dir.to_path_buf(),
        current,
        max,
    })
}

/// (mount point, cgroup path) pairs where a pids limit may live: the cgroup
/// v1 hierarchy that has the `pids` controller, and the cgroup v2 hierarchy.
fn pids_cgroup_dirs(membership: &str, mounts: &[MountEntry]) -> Vec<(PathBuf, String)> {
    let membership = Membership::parse(membership);
    let mut out = Vec::new();
    for (controllers, path) in &membership.v1 {
        if controllers.iter().any(|c| c == "pids")
            && let Some(mount) =
                mount_point(mounts, |m| m.fs_type == "cgroup" && m.has_option("pids"))
        {
            out.push((mount, path.clone()));
        }
    }
    if let Some(path) = &membership.unified
        && let Some(mount) = mount_point(mounts, |m| m.fs_type == "cgroup2")
    {
        out.push((mount, path.clone()));
    }
    out
}

fn mount_point(mounts: &[MountEntry], wanted: impl Fn(&MountEntry) -> bool) -> Option<PathBuf> {
    mounts
        .iter()
        .find(|m| wanted(m))
        .map(|m| m.mount_point.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mounts::parse_mounts;

    const MOUNTS: &str = "\
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";

    #[test]
    fn finds_v1_pids_and_v2_hierarchies() {
        let membership = "9:name=systemd:/\n8:pids:/jobs/runner\n1:cpu:/\n0::/jobs/runner\n";
        assert_eq!(
            pids_cgroup_dirs(membership, &parse_mounts(MOUNTS)),
            vec![
                (
                    PathBuf::from("/sys/fs/cgroup/pids"),
                    "/jobs/runner".to_owned()
                ),
                (
                    PathBuf::from("/sys/fs/cgroup/unified"),
                    "/jobs/runner".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn headroom_is_the_tightest_limit() {
        let host = PidPressure::from_parts(1000, 32768, 192_000, None);
        assert_eq!((host.headroom, host.limit), (31767, Limit::PidMax));
        let cg = PidPressure::from_parts(
            1000,
            32768,
            192_000,
            Some(CgroupPids {
                path: PathBuf::from("/sys/fs/cgroup/pids/jobs"),
                current: 180,
                max: 200,
            }),
        );
        assert_eq!((cg.headroom, cg.limit), (20, Limit::CgroupPidsMax));
        let threads = PidPressure::from_parts(1000, 4_194_304, 1500, None);
        assert_eq!((threads.headroom, threads.limit), (500, Limit::ThreadsMax));
    }

    #[test]
    fn reads_this_process_limits() {
        let p = PidPressure::read(Some(std::process::id())).expect("pressure");
        assert!(p.tasks > 0 && p.pid_max > 0 && p.threads_max > 0);
        assert!(p.headroom < u64::from(p.pid_max));
    }
}
