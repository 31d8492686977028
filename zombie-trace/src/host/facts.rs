//! The host facts views are computed from, besides the ledger: what /proc
//! says about a process, how full the PID space is, and the clocks. Views
//! ask a [`HostFacts`] for them and never read /proc themselves, so that
//! the same view runs live ([`LiveHost`]) and over a recording (which
//! answers with what the live run read).

use std::ffi::CStr;

use serde::{Deserialize, Serialize};

use rustc_hash::FxHashMap;

use crate::host::cgroup::{self, Attribution};
use crate::host::podnames::PodNames;
use crate::host::pressure::{PidPressure, host_tasks};
use crate::host::procfs::{self, ProcError, SigMasks};
use crate::model::{Moment, ProcKey};

/// What /proc says about one process, for a diagnosis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcFacts {
    /// State letter of `/proc/<pid>/stat` (`S`, `Z`, ...).
    pub state: char,
    pub ppid: u32,
    pub threads: u32,
    /// Where it sleeps in the kernel (`do_wait`, ...), when readable.
    pub wchan: Option<String>,
    pub masks: Option<SigMasks>,
    /// PIDs in each namespace from ours down (NSpid).
    pub ns_pids: Vec<u32>,
    /// The command line it runs (`/proc/PID/cmdline`, NULs as spaces).
    #[serde(default)]
    pub cmdline: Option<String>,
}

impl ProcFacts {
    /// Reads `pid`'s stat, status and wchan; `None` if it is gone.
    pub fn read(pid: u32) -> Option<Self> {
        let stat = procfs::read_stat(pid).ok().flatten()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .ok()
            .filter(|w| !w.is_empty() && w != "0");
        Some(Self {
            state: stat.state,
            ppid: stat.ppid,
            threads: stat.num_threads,
            wchan,
            masks: procfs::parse_sig_masks(status.as_bytes()),
            ns_pids: procfs::parse_ns_pids(&status),
            cmdline: std::fs::read(format!("/proc/{pid}/cmdline"))
                .ok()
                .filter(|c| !c.is_empty())
                .map(|c| {
                    let text = String::from_utf8_lossy(&c).replace('\0', " ");
                    text.trim_end().to_owned()
                }),
        })
    }

    /// PID 1 of its own PID namespace (the host's init, or a container's).
    pub fn is_ns_init(&self) -> bool {
        self.ns_pids.last() == Some(&1)
    }
}

/// How full the host's PID space is (cheap to read: no scan).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pressure {
    /// Tasks (threads) in use: each holds a PID.
    pub tasks: u64,
    pub pid_max: u32,
}

/// Where views get host facts from.
pub trait HostFacts {
    /// What /proc says about `pid` now; `None` if it is gone (or, over a
    /// recording, was not recorded).
    fn process(&mut self, pid: u32) -> Option<ProcFacts>;
    /// The PID limits, with `pid`'s cgroup limit.
    fn pid_pressure(&mut self, pid: Option<u32>) -> PidPressure;
    /// Tasks against pid_max.
    fn pressure(&mut self) -> Option<Pressure>;
    /// Where the process `key` runs: its cgroup, and the systemd unit,
    /// container and pod that cgroup names. `None` when it is gone, when its
    /// PID now names another process, or, over a recording, when the live
    /// session did not read it.
    fn attribution(&mut self, key: ProcKey) -> Option<Attribution>;
}

/// Host facts read from this machine's /proc when asked.
#[derive(Clone, Copy, Debug, Default)]
pub struct LiveHost;

impl HostFacts for LiveHost {
    fn process(&mut self, pid: u32) -> Option<ProcFacts> {
        ProcFacts::read(pid)
    }

    fn pid_pressure(&mut self, pid: Option<u32>) -> PidPressure {
        PidPressure::read(pid).unwrap_or_else(|_| PidPressure::unknown())
    }

    fn pressure(&mut self) -> Option<Pressure> {
        Some(Pressure {
            tasks: host_tasks()?,
            pid_max: procfs::pid_max().ok()?,
        })
    }

    fn attribution(&mut self, key: ProcKey) -> Option<Attribution> {
        read_attribution(key)
    }
}

/// This machine's /proc, with pods and containers named by the kubelet
/// when `names` is given (`--pod-names`): for the commands that read /proc
/// without a live session (`snapshot`, `explain --proc-only`).
#[derive(Debug, Default)]
pub struct NamingHost {
    pub names: Option<PodNames>,
}

impl HostFacts for NamingHost {
    fn process(&mut self, pid: u32) -> Option<ProcFacts> {
        LiveHost.process(pid)
    }

    fn pid_pressure(&mut self, pid: Option<u32>) -> PidPressure {
        LiveHost.pid_pressure(pid)
    }

    fn pressure(&mut self) -> Option<Pressure> {
        LiveHost.pressure()
    }

    fn attribution(&mut self, key: ProcKey) -> Option<Attribution> {
        let mut attribution = read_attribution(key);
        if let (Some(names), Some(a)) = (self.names.as_mut(), attribution.as_mut()) {
            names.name(a);
        }
        attribution
    }
}

/// A host that answers nothing: for views' unit tests, which build a ledger
/// by hand and have no /proc to ask.
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHost;

#[cfg(test)]
impl HostFacts for NoHost {
    fn process(&mut self, _pid: u32) -> Option<ProcFacts> {
        None
    }

    fn pid_pressure(&mut self, _pid: Option<u32>) -> PidPressure {
        PidPressure::unknown()
    }

    fn pressure(&mut self) -> Option<Pressure> {
        None
    }

    fn attribution(&mut self, _key: ProcKey) -> Option<Attribution> {
        None
    }
}

/// Reads the cgroup membership of `key`. The start time is read after it:
/// when it still matches, the PID named that process all along, so a PID
/// reused by a process in another container never lends it its name.
pub fn read_attribution(key: ProcKey) -> Option<Attribution> {
    let membership = cgroup::read_membership(key.pid).ok().flatten()?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", key.pid)).ok()?;
    let stat = procfs::read_stat(key.pid).ok().flatten()?;
    (stat.start_ticks == key.start_ticks).then(|| {
        let ns_pids = procfs::parse_ns_pids(&status);
        Attribution {
            pid_in_namespace: ns_pids.last().copied().filter(|_| ns_pids.len() > 1),
            ..Attribution::of(&membership)
        }
    })
}

/// Attributions read live, kept by process identity: a process's cgroup is
/// set when it starts (a runtime or systemd moves it before it runs the
/// workload), and a view asks for every parent at every report. Bounded:
/// emptied when it reaches [`AttributionCache::CAPACITY`] processes.
#[derive(Debug, Default)]
pub struct AttributionCache {
    known: FxHashMap<ProcKey, Option<Attribution>>,
    /// Kubernetes names, when asked for (`--pod-names`).
    names: Option<PodNames>,
}

impl AttributionCache {
    pub const CAPACITY: usize = 4096;

    /// A cache that also names pods and containers from `names`.
    pub fn naming(names: PodNames) -> Self {
        Self {
            known: FxHashMap::default(),
            names: Some(names),
        }
    }

    /// `key`'s attribution, read with [`read_attribution`] the first time
    /// (and named, until it has its names, each time).
    pub fn get(&mut self, key: ProcKey) -> Option<Attribution> {
        if let Some(known) = self.known.get_mut(&key) {
            if let (Some(names), Some(attribution)) = (self.names.as_mut(), known.as_mut()) {
                names.name(attribution);
            }
            return known.clone();
        }
        if self.known.len() >= Self::CAPACITY {
            self.known.clear();
        }
        let mut read = read_attribution(key);
        if let (Some(names), Some(attribution)) = (self.names.as_mut(), read.as_mut()) {
            names.name(attribution);
        }
        self.known.insert(key, read.clone());
        read
    }
}

/// Both clocks, read now.
pub fn now() -> Result<Moment, ProcError> {
    Ok(Moment {
        boot_ns: procfs::boot_time_now_ns()?,
        unix_ns: procfs::realtime_now_ns()?,
    })
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> Option<String> {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    // SAFETY: uname NUL-terminates `release`, and the zeroed tail guarantees a NUL.
    let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) };
    Some(release.to_string_lossy().into_owned())
}

/// Which host and boot this is: what a recording's header names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub kernel_release: String,
    pub hostname: String,
    /// Changes at every boot: recordings of one boot share it.
    pub boot_id: String,
    /// Clock ticks per second of /proc start times.
    pub user_hz: u64,
    pub pid_max: u32,
    pub threads_max: u32,
}

impl Identity {
    pub fn read() -> Result<Self, ProcError> {
        let text = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        Ok(Self {
            kernel_release: kernel_release().unwrap_or_default(),
            hostname: text("/proc/sys/kernel/hostname"),
            boot_id: text("/proc/sys/kernel/random/boot_id"),
            user_hz: procfs::clock_ticks_per_second()?,
            pid_max: procfs::pid_max()?,
            threads_max: procfs::threads_max()?,
        })
    }
}
