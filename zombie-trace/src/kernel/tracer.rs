//! Loading and attaching the eBPF programs, and draining their ring buffer.

use std::io::Read as _;
use std::time::Duration;

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, Iter, RawTracePoint, TracePoint},
};
use aya_log::EbpfLogger;
use thiserror::Error;
use tokio::io::unix::AsyncFd;
use zombie_trace_common::{
    DEFAULT_RING_BYTES, EVENTS_MAP, KernelLayout, LAYOUT_GLOBAL, LOST_MAP, LostReason,
    SEED_PROGRAM, WAKEUP_BYTES_GLOBAL,
};

use crate::kernel::check::{
    BPF_CAPS, CAP_SYS_ADMIN, effective_caps, errno_name, has_cap, missing_caps,
    missing_caps_note_for, perf_event_paranoid,
};
use crate::kernel::tasks::TaskTable;

/// The eBPF object, built by build.rs, embedded once.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/zombie-trace-ebpf"));

/// How long records may wait in the ring buffer before the reader drains
/// them on its own. The programs wake the reader only when an eighth of the
/// ring is full (a wake-up per event costs more than the event), so under a
/// light load this is the latency from an event to the ledger. Each timer
/// wake-up costs ~80 µs of CPU on a VM (timer programming, epoll, a
/// self-wake of the runtime): at 10 ms an idle agent spent 10 ms of CPU a
/// second and a fork storm ~1 µs per process on wake-ups alone; at 50 ms,
/// 3.4 ms a second and ~0.4 µs, for an alert that comes tens of
/// milliseconds later — nothing, for zombies that matter after seconds.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(50);

/// How a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A scheduler tracepoint (task_struct arguments): the BTF tracepoint
    /// program `btf_program` (plain loads the verifier types, no helper
    /// calls) where the kernel has BTF tracepoints, else the raw tracepoint
    /// program named after the event (a helper call per read).
    Sched { btf_program: &'static str },
    /// A classic `syscalls/` tracepoint (the program is named after the event).
    Syscall,
    /// A `syscalls/sys_enter_*` tracepoint that saves the call's arguments
    /// for its exit program: attached only where the exit programs cannot
    /// read them from the saved registers (see
    /// `KernelLayout::args_from_regs`). Any entry program makes every
    /// syscall on the host pass through the tracepoint.
    SyscallEntry,
}

/// Every program, in the order they attach: from the end of a process's
/// life to its start — releases (wait returns, the kernel freeing a
/// process) first, then exits, then forks. So once any event of a process
/// is recorded, every later event of its life is recorded too, and the
/// ledger never holds a zombie whose release happened before the release
/// programs were in place (the model's invariant 9).
pub const PROGRAMS: [(&str, Hook); 12] = [
    ("sys_enter_wait4", Hook::SyscallEntry),
    ("sys_enter_waitid", Hook::SyscallEntry),
    ("sys_exit_wait4", Hook::Syscall),
    ("sys_exit_waitid", Hook::Syscall),
    ("sys_enter_rt_sigaction", Hook::SyscallEntry),
    ("sys_exit_rt_sigaction", Hook::Syscall),
    ("sys_enter_prctl", Hook::SyscallEntry),
    ("sys_exit_prctl", Hook::Syscall),
    (
        "sched_process_free",
        Hook::Sched {
            btf_program: "sched_process_free_btf",
        },
    ),
    (
        "sched_process_exec",
        Hook::Sched {
            btf_program: "sched_process_exec_btf",
        },
    ),
    (
        "sched_process_exit",
        Hook::Sched {
            btf_program: "sched_process_exit_btf",
        },
    ),
    (
        "sched_process_fork",
        Hook::Sched {
            btf_program: "sched_process_fork_btf",
        },
    ),
];

/// Which scheduler programs are in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SchedPrograms {
    Btf,
    Raw,
}

#[derive(Debug, Error)]
pub enum TracerError {
    #[error("{0}")]
    Privileges(String),
    /// The kernel refused a step for want of a privilege (EPERM, EACCES):
    /// one line naming the step and the capabilities, no error chain.
    #[error("{step} was refused ({errno}): {fix}")]
    Refused {
        step: String,
        errno: String,
        /// What to grant or change ([`refusal_fix`]).
        fix: String,
    },
    #[error(transparent)]
    Layout(#[from] crate::kernel::layout::LayoutError),
    #[error(
        "--ring-bytes {0} is not usable: the ring buffer size must be a power of two and at least the page size (4096)"
    )]
    RingSize(u32),
    #[error(
        "loading the eBPF programs failed: {0}; run `zombie-trace check` to see what this kernel lacks"
    )]
    Load(#[source] aya::EbpfError),
    #[error(
        "the eBPF object has no program or map `{0}`: this binary was built from mismatched sources; rebuild with `cargo xtask build`"
    )]
    Missing(&'static str),
    #[error(
        "the kernel refused program `{name}`: {source}; run `zombie-trace check` to see what this kernel lacks"
    )]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("the eBPF map `{name}` is unusable: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("waiting on the ring buffer failed: {0}")]
    Poll(#[source] std::io::Error),
    #[error("reading the process table through the task iterator failed: {0}")]
    TaskIterator(String),
}

pub use crate::model::LostCounts;

/// Knobs of the kernel side.
#[derive(Clone, Copy, Debug)]
pub struct TracerOptions {
    /// Ring buffer size in bytes (power of two, ≥ page size).
    pub ring_bytes: u32,
    /// Decide "whole process exited" from `signal->live` even when the
    /// kernel passes `group_dead` (to exercise the older kernels' path).
    pub force_live_counter: bool,
    /// Save syscall arguments with entry programs even where the exit
    /// programs could read them from the saved registers (to exercise the
    /// older kernels' path).
    pub force_entry_programs: bool,
    /// Use the raw tracepoint programs even where BTF tracepoints work (to
    /// exercise the older kernels' path).
    pub force_raw_tracepoints: bool,
    /// Leave `sched_process_free` out, so that releases no traced call
    /// makes leave the ledger only through its periodic zombie check (to
    /// test that safety net).
    pub without_free_program: bool,
    /// Read the process table from /proc even where the task iterator
    /// loads (to exercise the older kernels' path).
    pub force_proc_scan: bool,
}

impl Default for TracerOptions {
    fn default() -> Self {
        Self {
            ring_bytes: DEFAULT_RING_BYTES,
            force_live_counter: false,
            force_entry_programs: false,
            force_raw_tracepoints: false,
            without_free_program: false,
            force_proc_scan: false,
        }
    }
}

/// The programs `layout` needs, in attach order (`sched_process_free` left
/// out only for tests of the ledger's own zombie check).
fn programs(
    layout: &KernelLayout,
    without_free: bool,
) -> impl Iterator<Item = (&'static str, Hook)> {
    let entries = layout.args_from_regs == 0;
    PROGRAMS
        .into_iter()
        .filter(move |&(_, hook)| entries || hook != Hook::SyscallEntry)
        .filter(move |&(name, _)| !(without_free && name == "sched_process_free"))
}

/// Loads the object and every program `layout` needs into the kernel
/// (verified, not attached yet).
fn load<'a>(
    mut loader: EbpfLoader<'a>,
    layout: &'a KernelLayout,
    ring_bytes: u32,
    wakeup_bytes: &'a u64,
    btf: Option<&'a aya::Btf>,
    sched: SchedPrograms,
    without_free: bool,
) -> Result<Ebpf, TracerError> {
    let mut ebpf = loader
        .btf(btf)
        .override_global(LAYOUT_GLOBAL, layout, true)
        .override_global(WAKEUP_BYTES_GLOBAL, wakeup_bytes, true)
        .map_max_entries(EVENTS_MAP, ring_bytes)
        .load(EBPF_OBJECT)
        .map_err(TracerError::Load)?;
    for (name, hook) in programs(layout, without_free) {
        let loaded = match (hook, btf) {
            (Hook::Sched { btf_program }, Some(btf)) if sched == SchedPrograms::Btf => {
                let name = btf_program;
                btf_tracepoint(&mut ebpf, name)?
                    .load(event_of(name), btf)
                    .map_err(|source| TracerError::Program { name, source })?;
                continue;
            }
            (Hook::Sched { .. }, _) => raw_tracepoint(&mut ebpf, name)?.load(),
            (Hook::Syscall | Hook::SyscallEntry, _) => syscall_tracepoint(&mut ebpf, name)?.load(),
        };
        loaded.map_err(|source| TracerError::Program { name, source })?;
    }
    Ok(ebpf)
}

/// `err` as [`TracerError::Refused`] when an OS error in its chain is a
/// refusal ([`refusal_fix`]). Checked before any fallback, which would only
/// hide it behind a less clear failure of the fallback's own programs.
fn refused(err: TracerError) -> TracerError {
    let step = match &err {
        TracerError::Load(_) => "loading the eBPF programs".to_owned(),
        TracerError::Program { name, .. } => format!("loading or attaching program `{name}`"),
        _ => return err,
    };
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(cause) = next {
        let code = cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error);
        if let Some(code) = code
            && let Some(fix) = refusal_fix(code, effective_caps(), perf_event_paranoid())
        {
            return TracerError::Refused {
                step,
                errno: errno_name(Some(code)),
                fix,
            };
        }
        next = cause.source();
    }
    err
}

/// Whether errno `code` from loading or attaching is a refusal, and then
/// its fix, given this process's capabilities and `kernel.perf_event_paranoid`:
///
/// - EPERM, or EACCES without CAP_BPF and CAP_PERFMON: a missing capability
///   (or, with both, a seccomp filter or security module);
/// - EACCES with both, but without CAP_SYS_ADMIN, where perf_event_paranoid
///   is above 2: Debian's and Ubuntu's kernels then open perf events (the
///   syscall tracepoints) only for CAP_SYS_ADMIN;
/// - any other EACCES with both is the verifier rejecting a program (an
///   older kernel): not a refusal, the fallbacks deal with it.
fn refusal_fix(code: i32, caps: Option<u64>, paranoid: Option<i64>) -> Option<String> {
    if code != libc::EPERM && code != libc::EACCES {
        return None;
    }
    let lacks_bpf = caps.is_none_or(|caps| !missing_caps(caps, &BPF_CAPS).is_empty());
    if code == libc::EPERM || lacks_bpf {
        return Some(format!(
            "run as root or grant CAP_BPF and CAP_PERFMON{}",
            missing_caps_note_for(caps, &BPF_CAPS)
        ));
    }
    let admin = caps.is_some_and(|caps| has_cap(caps, CAP_SYS_ADMIN));
    match paranoid {
        Some(level) if level > 2 && !admin => Some(format!(
            "kernel.perf_event_paranoid is {level}, and above 2 this kernel (Debian's, Ubuntu's) \
             opens perf events only for CAP_SYS_ADMIN (missing: CAP_SYS_ADMIN): grant it too \
             (zombie-trace gives it up once its programs are attached), or set \
             `sysctl kernel.perf_event_paranoid=2`, or run as root"
        )),
        _ => None,
    }
}

fn is_btf_program(name: &str) -> bool {
    PROGRAMS
        .iter()
        .any(|(_, hook)| matches!(hook, Hook::Sched { btf_program } if *btf_program == name))
}

/// `sched_process_fork_btf` → `sched_process_fork`.
fn event_of(btf_program: &str) -> &str {
    btf_program.strip_suffix("_btf").unwrap_or(btf_program)
}

/// Program `name` of the object as its kind `P`.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, TracerError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(TracerError::Missing(name))?
        .try_into()
        .map_err(|source| TracerError::Program { name, source })
}

fn btf_tracepoint<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut BtfTracePoint, TracerError> {
    program(ebpf, name)
}

fn raw_tracepoint<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut RawTracePoint, TracerError> {
    program(ebpf, name)
}

fn syscall_tracepoint<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut TracePoint, TracerError> {
    program(ebpf, name)
}

/// A scoped thread's result, its panic carried on.
fn joined<T>(result: std::thread::Result<T>) -> T {
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The loaded and attached programs. Detached when dropped.
/// How long one attached program has run, from the kernel's BPF
/// statistics (only counted while `kernel.bpf_stats_enabled` is 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramRun {
    pub program: String,
    pub run_time: Duration,
    pub runs: u64,
}

pub struct Tracer {
    ring: AsyncFd<RingBuf<MapData>>,
    /// Warnings the programs log (through aya-log) when a kernel read fails;
    /// forwarded to the `log` crate on every drain.
    kernel_log: Option<EbpfLogger<&'static dyn log::Log>>,
    lost: PerCpuArray<MapData, u64>,
    args_from_regs: bool,
    btf_tracepoints: bool,
    /// The task iterator program is loaded (see [`Tracer::scan_tasks`]),
    /// or why not.
    task_iterator: Result<(), String>,
    // Owns the programs and their links: dropping it detaches everything.
    ebpf_object: Ebpf,
}

impl Tracer {
    /// Loads and attaches the programs. Must be called inside a tokio runtime.
    pub fn attach(options: TracerOptions) -> Result<Self, TracerError> {
        if let Some(problem) = crate::kernel::check::privilege_problem() {
            return Err(TracerError::Privileges(problem));
        }
        let ring_bytes = options.ring_bytes;
        if !ring_bytes.is_power_of_two() || ring_bytes < 4096 {
            return Err(TracerError::RingSize(ring_bytes));
        }
        // The kernel's BTF is parsed three times, at once on two CPUs (each
        // parse takes 10-20 ms, and start-up is what an on-call engineer
        // waits for): ours for the layout, aya's for the BTF tracepoints and
        // the task iterator, and the one aya's loader makes for itself (it
        // cannot be handed ours, only told to use another).
        let (layout, btf, first_loader) = std::thread::scope(|scope| {
            let btf = scope.spawn(|| {
                if options.force_raw_tracepoints {
                    return None;
                }
                aya::Btf::from_sys_fs()
                    .inspect_err(|err| log::info!("kernel BTF unusable by the loader: {err}"))
                    .ok()
            });
            let loader = scope.spawn(EbpfLoader::<'static>::new);
            let layout = crate::kernel::layout::discover();
            (layout, joined(btf.join()), joined(loader.join()))
        });
        let mut layout = layout?;
        if options.force_live_counter {
            layout.exit_has_group_dead_arg = 0;
        }
        if options.force_entry_programs {
            layout.args_from_regs = 0;
        }
        let wakeup_bytes = u64::from(ring_bytes / 8);
        let mut sched = match btf {
            Some(_) => SchedPrograms::Btf,
            None => SchedPrograms::Raw,
        };
        let mut first_loader = Some(first_loader);
        let mut ebpf = loop {
            let loader = first_loader.take().unwrap_or_else(EbpfLoader::new);
            match load(
                loader,
                &layout,
                ring_bytes,
                &wakeup_bytes,
                btf.as_ref(),
                sched,
                options.without_free_program,
            )
            .map_err(refused)
            {
                Ok(ebpf) => break ebpf,
                // BTF tracepoints need Linux 5.5 and a BTF type per tracepoint.
                Err(TracerError::Program { name, source })
                    if sched == SchedPrograms::Btf && is_btf_program(name) =>
                {
                    log::info!(
                        "BTF tracepoint program {name} unusable ({source}); \
                         using raw tracepoints"
                    );
                    sched = SchedPrograms::Raw;
                }
                // bpf_task_pt_regs needs Linux 5.15: read the arguments at entry.
                Err(TracerError::Program { name, source }) if layout.args_from_regs != 0 => {
                    log::info!(
                        "program {name} cannot read syscall arguments from registers ({source}); \
                         attaching the syscall entry programs instead"
                    );
                    layout.args_from_regs = 0;
                }
                Err(err) => return Err(err),
            }
        };
        // The process table through the task iterator (Linux 5.8, BTF, and
        // the fields it reads); else the seed and resyncs read /proc.
        let task_iterator = match (&btf, layout.seed_fields != 0) {
            _ if options.force_proc_scan => Err("not used (forced off)".to_owned()),
            (None, _) => Err("not used: aya cannot use the kernel's BTF".to_owned()),
            (_, false) => Err("not used: BTF lacks a task field it reads".to_owned()),
            (Some(btf), true) => program::<Iter>(&mut ebpf, SEED_PROGRAM)
                .and_then(|iter| {
                    iter.load("task", btf)
                        .map_err(|source| TracerError::Program {
                            name: SEED_PROGRAM,
                            source,
                        })
                })
                .map_err(|err| format!("{err:?}")),
        };
        if let Err(problem) = &task_iterator {
            log::info!("task iterator: {problem}; the process table is read from /proc");
        }
        let kernel_log = match EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(err) => {
                log::warn!("kernel-side warnings will not be shown: {err}");
                None
            }
        };
        for (name, hook) in programs(&layout, options.without_free_program) {
            let attached = match hook {
                Hook::Sched { btf_program } if sched == SchedPrograms::Btf => {
                    let name = btf_program;
                    btf_tracepoint(&mut ebpf, name)?
                        .attach()
                        .map(drop)
                        .map_err(|source| TracerError::Program { name, source })
                        .map_err(refused)?;
                    continue;
                }
                Hook::Sched { .. } => raw_tracepoint(&mut ebpf, name)?.attach(name).map(drop),
                Hook::Syscall | Hook::SyscallEntry => syscall_tracepoint(&mut ebpf, name)?
                    .attach("syscalls", name)
                    .map(drop),
            };
            attached
                .map_err(|source| TracerError::Program { name, source })
                .map_err(refused)?;
        }

        let ring = ebpf
            .take_map(EVENTS_MAP)
            .ok_or(TracerError::Missing("EVENTS"))?;
        let ring = RingBuf::try_from(ring).map_err(|source| TracerError::Map {
            name: "EVENTS",
            source,
        })?;
        // Safety: the RingBuf owns its map fd, which stays open and the same
        // for as long as the AsyncFd (which owns the RingBuf) lives.
        let ring = unsafe { AsyncFd::register(ring) }
            .map_err(|err| TracerError::Poll(err.into_parts().1))?;
        let lost = ebpf
            .take_map(LOST_MAP)
            .ok_or(TracerError::Missing("LOST"))?;
        let lost = PerCpuArray::try_from(lost).map_err(|source| TracerError::Map {
            name: "LOST",
            source,
        })?;
        Ok(Self {
            ring,
            kernel_log,
            lost,
            args_from_regs: layout.args_from_regs != 0,
            btf_tracepoints: sched == SchedPrograms::Btf,
            task_iterator,
            ebpf_object: ebpf,
        })
    }

    /// Whether the process table is read with the task iterator (else
    /// from /proc).
    pub fn task_iterator(&self) -> bool {
        self.task_iterator.is_ok()
    }

    /// Why the task iterator is not used (the loader's error, with the
    /// verifier's log), if it is not.
    pub fn task_iterator_problem(&self) -> Option<&str> {
        self.task_iterator.as_ref().err().map(String::as_str)
    }

    /// Every process, read in the kernel by a new instance of the task
    /// iterator; `None` where it is not loaded (read /proc instead). The
    /// read is no more atomic than a /proc scan, and needs no more: the
    /// programs are attached first (the model's invariant 9).
    pub fn scan_tasks(&mut self, ticks_per_second: u64) -> Option<Result<TaskTable, TracerError>> {
        self.task_iterator.as_ref().ok()?;
        Some(self.read_task_iterator(ticks_per_second))
    }

    fn read_task_iterator(&mut self, ticks_per_second: u64) -> Result<TaskTable, TracerError> {
        let iter: &mut Iter = program(&mut self.ebpf_object, SEED_PROGRAM)?;
        let failed = |what: &str, err: &dyn std::fmt::Display| {
            TracerError::TaskIterator(format!("{what}: {err}"))
        };
        let link = iter
            .attach()
            .and_then(|id| iter.take_link(id))
            .map_err(|err| failed("attaching it", &err))?;
        let mut file = link
            .into_file()
            .map_err(|err| failed("creating an instance", &err))?;
        let mut bytes = Vec::with_capacity(256 * 1024);
        file.read_to_end(&mut bytes)
            .map_err(|err| failed("reading it", &err))?;
        TaskTable::decode(&bytes, ticks_per_second).map_err(|err| failed("decoding it", &err))
    }

    /// Whether the scheduler programs are BTF tracepoints (else raw ones).
    pub fn btf_tracepoints(&self) -> bool {
        self.btf_tracepoints
    }

    /// Whether the syscall exit programs read their arguments from the
    /// saved registers (no entry program attached).
    pub fn args_from_regs(&self) -> bool {
        self.args_from_regs
    }

    /// Events the kernel could not deliver, by reason, summed over CPUs.
    pub fn lost_by_reason(&self) -> LostCounts {
        let mut counts = LostCounts::default();
        for reason in LostReason::ALL {
            let count = self
                .lost
                .get(&(reason as u32), 0)
                .map_or(0, |per_cpu| per_cpu.iter().sum::<u64>());
            match reason {
                LostReason::RingFull => counts.ring_full = count,
                LostReason::WaitMapFull => counts.wait_map_full = count,
                LostReason::ReadFailed => counts.read_failed = count,
            }
        }
        counts
    }

    /// Events the kernel could not deliver, all reasons.
    pub fn lost_events(&self) -> u64 {
        self.lost_by_reason().total()
    }

    /// Waits until the programs wake the reader (the ring is filling up) or
    /// [`DRAIN_INTERVAL`] passes, whichever comes first; then [`Tracer::drain`].
    pub async fn readable(&mut self) -> Result<(), TracerError> {
        if let Ok(ready) = tokio::time::timeout(DRAIN_INTERVAL, self.ring.readable_mut()).await {
            ready.map_err(TracerError::Poll)?.clear_ready();
        }
        Ok(())
    }

    /// Run time and count of every loaded program; `None` unless the kernel
    /// counts them (`sysctl kernel.bpf_stats_enabled=1`: counting costs a
    /// little on every run, so it is off by default and we never turn it on).
    pub fn program_runs(&self) -> Option<Vec<ProgramRun>> {
        let enabled = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .is_ok_and(|v| v.trim() == "1");
        if !enabled {
            return None;
        }
        Some(
            self.ebpf_object
                .programs()
                .filter_map(|(name, program)| {
                    let info = program.info().ok()?;
                    Some(ProgramRun {
                        program: name.to_owned(),
                        run_time: info.run_time(),
                        runs: info.run_count(),
                    })
                })
                .collect(),
        )
    }

    /// Hands every record available now to `handle`, as the kernel wrote
    /// it ([`Event::try_from`] decodes it); returns how many.
    pub fn drain(&mut self, handle: impl FnMut(&[u8])) -> usize {
        self.drain_at_most(usize::MAX, handle)
    }

    /// [`Tracer::drain`], stopping after `max` records: a reader that a
    /// storm outpaces still gets back to its ticks, signals and queries.
    pub fn drain_at_most(&mut self, max: usize, mut handle: impl FnMut(&[u8])) -> usize {
        if let Some(kernel_log) = &mut self.kernel_log {
            kernel_log.flush();
        }
        let ring = self.ring.get_mut();
        let mut count = 0;
        while count < max
            && let Some(record) = ring.next()
        {
            handle(&record);
            count += 1;
        }
        count
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn program_error(call: &'static str, errno: i32) -> TracerError {
        TracerError::Program {
            name: "sys_exit_wait4",
            source: aya::programs::ProgramError::SyscallError(aya::sys::SyscallError {
                call,
                io_error: std::io::Error::from_raw_os_error(errno),
            }),
        }
    }

    /// A refusal deep in aya's error chain becomes one line naming the step,
    /// the errno and the capabilities; other failures are left alone (the
    /// fallbacks and `check` deal with them).
    #[test]
    fn refusals_are_named_in_one_line() {
        let refusal = refused(program_error("perf_event_open", libc::EPERM));
        let TracerError::Refused { step, errno, .. } = &refusal else {
            panic!("a refusal: {refusal:?}");
        };
        assert_eq!(step, "loading or attaching program `sys_exit_wait4`");
        assert_eq!(errno, "EPERM");
        let line = refusal.to_string();
        assert!(
            line.contains("was refused (EPERM): run as root or grant CAP_BPF and CAP_PERFMON ("),
            "{line}"
        );
        assert!(!line.contains('\n'), "{line}");
        // EACCES: a refusal when a capability is missing, or when a
        // distribution kernel's perf_event_paranoid wants CAP_SYS_ADMIN;
        // else the verifier's answer, left to the fallbacks.
        let (bpf, perfmon, admin) = (1u64 << 39, 1u64 << 38, 1u64 << 21);
        let fix = |code, caps, paranoid| refusal_fix(code, Some(caps), paranoid);
        assert!(
            fix(libc::EACCES, bpf, Some(2)).is_some_and(|f| f.contains("missing: CAP_PERFMON"))
        );
        assert_eq!(fix(libc::EACCES, bpf | perfmon, Some(2)), None);
        assert_eq!(fix(libc::EACCES, bpf | perfmon | admin, Some(3)), None);
        let debian = fix(libc::EACCES, bpf | perfmon, Some(3)).expect("a refusal");
        assert!(
            debian.contains("perf_event_paranoid is 3")
                && debian.contains("missing: CAP_SYS_ADMIN")
                && debian.contains("kernel.perf_event_paranoid=2"),
            "{debian}"
        );
        assert!(fix(libc::EPERM, bpf | perfmon, Some(2)).is_some());
        assert_eq!(fix(libc::ENOENT, 0, Some(3)), None);
        assert!(matches!(
            refused(program_error("perf_event_open", libc::ENOENT)),
            TracerError::Program { .. }
        ));
        assert!(matches!(
            refused(TracerError::RingSize(3)),
            TracerError::RingSize(3)
        ));
    }
}
