//! zombie-trace eBPF programs: process creation, whole-process exit and wait
//! returns, streamed to userspace through one ring buffer.
//!
//! Nothing about the kernel's structure layout is compiled in: every offset
//! comes from the `LAYOUT` global that userspace fills from BTF and tracefs
//! before loading (the map is frozen, so the verifier sees constants).
//!
//! Each program reserves its ring buffer record first: when the buffer is
//! full it counts the loss and returns before doing any other work.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{
            bpf_get_current_task_btf, bpf_ktime_get_boot_ns, bpf_seq_write, bpf_task_pt_regs,
        },
    },
    macros::{btf_tracepoint, map, raw_tracepoint, tracepoint},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use aya_log_ebpf::warn;
use zombie_trace_common::{
    AttrEntry, AttrEvent, AttrKind, COMM_LEN, DEFAULT_RING_BYTES, EventHeader, EventKind,
    ExecEvent, ExitEvent, ForkEvent, FreeEvent, KernelLayout, LOST_SLOTS, LostReason, ProcessId,
    TaskRecord, WaitEntry, WaitEvent, WaitSyscall, exit_flags, fork_flags, wait_flags,
};

#[unsafe(no_mangle)]
static LAYOUT: KernelLayout = KernelLayout::UNSET;

/// Unread bytes at which a program wakes the reader (see
/// `zombie_trace_common::WAKEUP_BYTES_GLOBAL`); set by userspace.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 64 * 1024;

/// Resized by userspace (`--ring-bytes`) before loading.
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// Events that could not be delivered, per [`LostReason`].
#[map(name = "LOST")]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOST_SLOTS, 0);

/// Wait arguments saved at syscall entry until the matching exit, by thread id.
/// LRU so that a thread that never returns cannot leak an entry forever.
#[map(name = "WAIT_ENTRIES")]
static WAIT_ENTRIES: LruHashMap<u32, WaitEntry> = LruHashMap::with_max_entries(16384, 0);

/// SIGCHLD action / subreaper changes saved at syscall entry until the
/// matching exit, by thread id.
#[map(name = "ATTR_ENTRIES")]
static ATTR_ENTRIES: LruHashMap<u32, AttrEntry> = LruHashMap::with_max_entries(4096, 0);

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

const SIGCHLD: u64 = 17;
const WUNTRACED: u32 = 2;
const WCONTINUED: u32 = 8;
const PR_SET_CHILD_SUBREAPER: u64 = 36;
const SIG_IGN: u64 = 1;
const SA_NOCLDWAIT: u64 = 2;
/// MAX_PID_NS_LEVEL: bound of the ancestor walk looking for a subreaper.
const MAX_ANCESTORS: u32 = 32;
/// The deepest PID namespace level (`MAX_PID_NS_LEVEL`: levels 0 to 32).
const MAX_PID_NS_LEVEL: u32 = 32;
/// More than `pid->numbers` can span: 33 levels of 16-byte `struct upid`.
const MAX_UPIDS_BYTES: usize = 4096;

/// Reads one field of the layout. Volatile so that the compiler does not fold
/// the zero initializer; the verifier folds the frozen value instead.
macro_rules! layout {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&LAYOUT.$field) } as usize
    };
}

type Task = *const u8;

/// How a program reads kernel memory. The scheduler programs exist twice,
/// once per reader: as BTF tracepoints (`tp_btf`, [`Direct`]) where the
/// kernel has them, else as raw tracepoints ([`Probe`]).
trait Kernel {
    fn read<T: Copy>(base: *const u8, offset: usize) -> Result<T, u32>;
}

/// `bpf_probe_read_kernel`: a helper call per read, works on any pointer.
struct Probe;

impl Kernel for Probe {
    #[inline(always)]
    fn read<T: Copy>(base: *const u8, offset: usize) -> Result<T, u32> {
        unsafe { bpf_probe_read_kernel(base.wrapping_add(offset) as *const T) }.map_err(|_| 0u32)
    }
}

/// Plain loads through BTF-typed pointers (the task arguments of a
/// `tp_btf` program and the pointers loaded from them): the verifier checks
/// each offset against the kernel's types, and the JIT turns a fault into a
/// zero. No helper call.
struct Direct;

impl Kernel for Direct {
    #[inline(always)]
    fn read<T: Copy>(base: *const u8, offset: usize) -> Result<T, u32> {
        Ok(unsafe { core::ptr::read_volatile(base.wrapping_add(offset) as *const T) })
    }
}

/// Kernel memory behind a pointer the verifier does not type (one read
/// with a helper), whatever the program's reader.
#[inline(always)]
fn read<T>(base: *const u8, offset: usize) -> Result<T, u32> {
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset) as *const T) }.map_err(|_| 0u32)
}

#[inline(always)]
fn comm<K: Kernel>(task: Task) -> Result<[u8; COMM_LEN], u32> {
    // Two 8-byte loads: a typed access must fit inside the field.
    let lo: u64 = K::read(task, layout!(task_comm))?;
    let hi: u64 = K::read(task, layout!(task_comm) + 8)?;
    let mut comm = [0u8; COMM_LEN];
    comm[..8].copy_from_slice(&lo.to_ne_bytes());
    comm[8..].copy_from_slice(&hi.to_ne_bytes());
    Ok(comm)
}

#[inline(always)]
fn count_lost(reason: LostReason) {
    if let Some(slot) = LOST.get_ptr_mut(reason as u32) {
        unsafe { *slot += 1 };
    }
}

/// Submit flags: wake the reader only once enough is queued. Waking it for
/// every record costs more than the record; the reader also drains on a
/// short timer, so a quiet buffer is never left unread for long.
#[inline(always)]
fn wakeup() -> u64 {
    let threshold = unsafe { core::ptr::read_volatile(&WAKEUP_BYTES) };
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
fn header(kind: EventKind) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        tid: bpf_get_current_pid_tgid() as u32,
        timestamp_ns: unsafe { bpf_ktime_get_boot_ns() },
    }
}

/// Identity of the process `task` belongs to (it may be a thread).
#[inline(always)]
fn process_id<K: Kernel>(task: Task) -> Result<ProcessId, u32> {
    let leader: Task = K::read(task, layout!(task_group_leader))?;
    Ok(ProcessId {
        tgid: K::read(task, layout!(task_tgid))?,
        _pad: 0,
        start_boottime_ns: K::read(leader, layout!(task_start_boottime))?,
    })
}

/// `task_pid(task)->level`: depth of the task's PID namespace.
#[inline(always)]
fn pid_level<K: Kernel>(task: Task) -> Result<u32, u32> {
    let pid: *const u8 = K::read(task, layout!(task_thread_pid))?;
    K::read(pid, layout!(pid_level))
}

/// The task's PID as seen from PID namespace depth `level`. The index is
/// not a constant, so the entry is read with a helper.
#[inline(always)]
fn pid_nr_at<K: Kernel>(task: Task, level: u32) -> Result<u32, u32> {
    let pid: *const u8 = K::read(task, layout!(task_thread_pid))?;
    read(pid, upid_offset(level)? + layout!(upid_nr))
}

/// Offset of `pid->numbers[level]`, checked against the deepest level the
/// kernel allows and against the largest offset that can be: Linux 6.1's
/// verifier refuses an unbounded variable offset on a typed pointer (even
/// one only handed to a helper), and does not follow the bounds of a
/// product of two registers, only those a comparison sets.
#[inline(always)]
fn upid_offset(level: u32) -> Result<usize, u32> {
    let offset = (level as usize) * layout!(upid_size);
    if level > MAX_PID_NS_LEVEL || offset > MAX_UPIDS_BYTES {
        return Err(0);
    }
    Ok(layout!(pid_numbers) + offset)
}

/// The init (child_reaper) of the task's PID namespace. Found through a
/// variable index: the result is an untyped pointer (read it with helpers).
#[inline(always)]
fn ns_child_reaper<K: Kernel>(task: Task) -> Result<Task, u32> {
    let pid: *const u8 = K::read(task, layout!(task_thread_pid))?;
    let level: u32 = K::read(pid, layout!(pid_level))?;
    let ns: *const u8 = read(pid, upid_offset(level)? + layout!(upid_ns))?;
    read(ns, layout!(pid_ns_child_reaper))
}

/// The signal_struct word that holds the subreaper bitfields.
#[inline(always)]
fn subreaper_word<K: Kernel>(task: Task) -> Result<u32, u32> {
    let signal: *const u8 = K::read(task, layout!(task_signal))?;
    K::read(signal, layout!(signal_subreaper_word))
}

#[inline(always)]
fn bit(word: u32, bit: usize) -> bool {
    word & (1u32 << (bit & 31)) != 0
}

/// Whether the kernel reaps this task's exited children itself: SIGCHLD is
/// ignored or SA_NOCLDWAIT is set (do_notify_parent's autoreap rule).
#[inline(always)]
fn autoreaps_children<K: Kernel>(task: Task) -> Result<bool, u32> {
    let sighand: *const u8 = K::read(task, layout!(task_sighand))?;
    let action = layout!(sighand_action) + (SIGCHLD as usize - 1) * layout!(k_sigaction_size);
    let handler: u64 = K::read(sighand, action + layout!(sigaction_handler))?;
    let flags: u64 = K::read(sighand, action + layout!(sigaction_flags))?;
    Ok(handler == SIG_IGN || flags & SA_NOCLDWAIT != 0)
}

/// The task iterator (`iter/task`; aya-ebpf has no macro for iterators):
/// one [`TaskRecord`] per process into the iterator's file, for the
/// ledger's seed and resyncs. The kernel walks every task and calls this
/// with each, under RCU, then once with none.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub extern "C" fn seed_tasks(ctx: *mut core::ffi::c_void) -> i32 {
    // A failed read leaves the process out of the table: counted as a lost
    // event, so the ledger says it is incomplete and resyncs.
    if try_seed_tasks(ctx as *const u64).is_err() {
        count_lost(LostReason::ReadFailed);
    }
    0
}

#[inline(always)]
fn try_seed_tasks(ctx: *const u64) -> Result<(), u32> {
    // struct bpf_iter__task { struct bpf_iter_meta *meta; struct task_struct *task; }
    let meta = unsafe { core::ptr::read_volatile(ctx) } as *const u8;
    let task = unsafe { core::ptr::read_volatile(ctx.wrapping_add(1)) } as Task;
    if task.is_null() {
        return Ok(()); // the end of the walk
    }
    let tgid: u32 = Direct::read(task, layout!(task_tgid))?;
    if Direct::read::<u32>(task, layout!(task_pid))? != tgid {
        return Ok(()); // a thread: /proc lists processes only
    }
    let parent: Task = Direct::read(task, layout!(task_real_parent))?;
    let signal: *const u8 = Direct::read(task, layout!(task_signal))?;
    let level = pid_level::<Direct>(task)?;
    let parent_level = pid_level::<Direct>(parent)?;
    let record = TaskRecord {
        process: ProcessId {
            tgid,
            _pad: 0,
            start_boottime_ns: Direct::read(task, layout!(task_start_boottime))?,
        },
        ppid: Direct::read(parent, layout!(task_tgid))?,
        // A parent is never in a deeper namespace than its child; if it
        // were, the global PID is the only one to give.
        vpid: if parent_level <= level {
            pid_nr_at::<Direct>(task, parent_level)?
        } else {
            tgid
        },
        state: Direct::read(task, layout!(task_state))?,
        exit_state: Direct::read(task, layout!(task_exit_state))?,
        flags: Direct::read(task, layout!(task_flags))?,
        nr_threads: Direct::read(signal, layout!(signal_nr_threads))?,
        comm: comm::<Direct>(task)?,
    };
    // bpf_iter_meta's first member is the seq_file. A full buffer is not a
    // loss: the kernel drops the partial record and shows this task again
    // at the start of the next read.
    let seq: *mut aya_ebpf::bindings::seq_file = Direct::read(meta, 0)?;
    unsafe {
        bpf_seq_write(
            seq,
            &record as *const TaskRecord as *const core::ffi::c_void,
            core::mem::size_of::<TaskRecord>() as u32,
        )
    };
    Ok(())
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork_btf(ctx: BtfTracePointContext) -> u32 {
    let child: Task = ctx.arg(1);
    if fork::<Direct>(child).is_err() {
        warn!(
            &ctx,
            "sched_process_fork: a kernel read failed; event dropped"
        );
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> u32 {
    let child: Task = ctx.arg::<u64>(1) as Task;
    if fork::<Probe>(child).is_err() {
        warn!(
            &ctx,
            "sched_process_fork: a kernel read failed; event dropped"
        );
    }
    0
}

#[inline(always)]
fn fork<K: Kernel>(child: Task) -> Result<u32, u32> {
    let pid: u32 = K::read(child, layout!(task_pid))?;
    let tgid: u32 = K::read(child, layout!(task_tgid))?;
    if pid != tgid {
        return Ok(0); // a new thread, not a new process
    }
    let Some(mut entry) = EVENTS.reserve::<ForkEvent>(0) else {
        count_lost(LostReason::RingFull);
        return Ok(0);
    };
    let filled = (|| -> Result<ForkEvent, u32> {
        // The parent that must reap is real_parent's process, which differs
        // from the forking task with CLONE_PARENT.
        let parent: Task = K::read(child, layout!(task_real_parent))?;
        let word = subreaper_word::<K>(parent)?;
        let mut parent_flags = 0;
        if bit(word, layout!(signal_is_child_subreaper_bit)) {
            parent_flags |= fork_flags::PARENT_SUBREAPER;
        }
        if bit(word, layout!(signal_has_child_subreaper_bit)) {
            parent_flags |= fork_flags::PARENT_HAS_SUBREAPER_ANCESTOR;
        }
        Ok(ForkEvent {
            header: header(EventKind::Fork),
            child: ProcessId {
                tgid,
                _pad: 0,
                start_boottime_ns: K::read(child, layout!(task_start_boottime))?,
            },
            parent: process_id::<K>(parent)?,
            child_vpid: pid_nr_at::<K>(child, pid_level::<K>(parent)?)?,
            parent_flags,
            comm: comm::<K>(child)?,
        })
    })();
    match filled {
        Ok(event) => {
            entry.write(event);
            entry.submit(wakeup());
        }
        Err(err) => {
            entry.discard(0);
            count_lost(LostReason::ReadFailed);
            return Err(err);
        }
    }
    Ok(0)
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit_btf(ctx: BtfTracePointContext) -> u32 {
    let task: Task = ctx.arg(0);
    // The group_dead argument exists from Linux 6.16 on (LAYOUT says).
    let group_dead_arg = if layout!(exit_has_group_dead_arg) != 0 {
        Some(ctx.arg::<u64>(1) & 0xff != 0)
    } else {
        None
    };
    if exit::<Direct>(task, group_dead_arg).is_err() {
        warn!(
            &ctx,
            "sched_process_exit: a kernel read failed; event dropped"
        );
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(ctx: RawTracePointContext) -> u32 {
    let task: Task = ctx.arg::<u64>(0) as Task;
    let group_dead_arg = if layout!(exit_has_group_dead_arg) != 0 {
        Some(ctx.arg::<u64>(1) & 0xff != 0)
    } else {
        None
    };
    if exit::<Probe>(task, group_dead_arg).is_err() {
        warn!(
            &ctx,
            "sched_process_exit: a kernel read failed; event dropped"
        );
    }
    0
}

#[inline(always)]
fn exit<K: Kernel>(task: Task, group_dead_arg: Option<bool>) -> Result<u32, u32> {
    let group_dead = match group_dead_arg {
        Some(group_dead) => group_dead,
        None => {
            // do_exit() decrements signal->live before this tracepoint.
            let signal: *const u8 = K::read(task, layout!(task_signal))?;
            K::read::<i32>(signal, layout!(signal_live))? == 0
        }
    };
    if !group_dead {
        return Ok(0); // a thread exited, the process lives on
    }
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        count_lost(LostReason::RingFull);
        return Ok(0);
    };
    match exit_event::<K>(task) {
        Ok(event) => {
            entry.write(event);
            entry.submit(wakeup());
        }
        Err(err) => {
            entry.discard(0);
            count_lost(LostReason::ReadFailed);
            return Err(err);
        }
    }
    Ok(0)
}

#[inline(always)]
fn exit_event<K: Kernel>(task: Task) -> Result<ExitEvent, u32> {
    let leader: Task = K::read(task, layout!(task_group_leader))?;
    let parent: Task = K::read(leader, layout!(task_real_parent))?;
    let mut flags = 0;
    let exit_signal: i32 = K::read(leader, layout!(task_exit_signal))?;
    if exit_signal as u64 != SIGCHLD {
        flags |= exit_flags::NON_SIGCHLD_EXIT_SIGNAL;
    }
    let ptrace: u32 = K::read(leader, layout!(task_ptrace))?;
    if ptrace != 0 {
        flags |= exit_flags::PTRACED;
    } else if exit_signal as u64 == SIGCHLD && autoreaps_children::<K>(parent)? {
        flags |= exit_flags::AUTOREAP;
    }
    let leader_word = subreaper_word::<K>(leader)?;
    if bit(leader_word, layout!(signal_is_child_subreaper_bit)) {
        flags |= exit_flags::SUBREAPER;
    }

    // Who inherits this process's children: find_new_reaper()'s rule. The
    // nearest ancestor subreaper in the same PID namespace, else the
    // namespace's init. When this process is that init, the kernel kills and
    // reaps the whole namespace itself.
    let tgid: u32 = K::read(task, layout!(task_tgid))?;
    // Children live on the thread that forked them and move to a surviving
    // thread when it exits, so at the group's death they are all on `task`.
    // Most exiting processes have none: skip the adopter walk for them.
    let children = task.wrapping_add(layout!(task_children));
    let has_children = K::read::<*const u8>(task, layout!(task_children))? != children;
    let mut adopter = ProcessId::default();
    if has_children {
        // The namespace init comes through a variable index: untyped, so
        // the adopter is read with helpers whichever way it was found. The
        // walk up the ancestors uses helpers too: it is rare (exits with
        // children under a subreaper), and verifying up to 32 steps of typed
        // pointer loads costs the verifier a BTF name search per load —
        // a third of a second at start-up.
        let ns_reaper = ns_child_reaper::<K>(leader)?;
        if read::<u32>(ns_reaper, layout!(task_tgid))? == tgid {
            flags |= exit_flags::NS_INIT;
        } else {
            let mut reaper = ns_reaper;
            if bit(leader_word, layout!(signal_has_child_subreaper_bit)) {
                let level = pid_level::<Probe>(leader)?;
                let mut ancestor = parent;
                for _ in 0..MAX_ANCESTORS {
                    if pid_level::<Probe>(ancestor)? != level
                        || Probe::read::<u32>(ancestor, layout!(task_pid))? == 0
                    {
                        break;
                    }
                    if bit(
                        subreaper_word::<Probe>(ancestor)?,
                        layout!(signal_is_child_subreaper_bit),
                    ) {
                        reaper = ancestor;
                        break;
                    }
                    ancestor = Probe::read(ancestor, layout!(task_real_parent))?;
                }
            }
            adopter = process_id::<Probe>(reaper)?;
            flags |= exit_flags::HAS_ADOPTER;
            if autoreaps_children::<Probe>(reaper)? {
                flags |= exit_flags::ADOPTER_AUTOREAPS;
            }
        }
    }

    Ok(ExitEvent {
        header: header(EventKind::Exit),
        process: ProcessId {
            tgid,
            _pad: 0,
            start_boottime_ns: K::read(leader, layout!(task_start_boottime))?,
        },
        parent: process_id::<K>(parent)?,
        adopter,
        vpid: pid_nr_at::<K>(leader, pid_level::<K>(parent)?)?,
        exit_code: K::read(task, layout!(task_exit_code))?,
        flags,
        _pad: 0,
        comm: comm::<K>(leader)?,
    })
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec_btf(ctx: BtfTracePointContext) -> u32 {
    let task: Task = ctx.arg(0);
    if exec::<Direct>(task).is_err() {
        warn!(
            &ctx,
            "sched_process_exec: a kernel read failed; event dropped"
        );
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> u32 {
    let task: Task = ctx.arg::<u64>(0) as Task;
    if exec::<Probe>(task).is_err() {
        warn!(
            &ctx,
            "sched_process_exec: a kernel read failed; event dropped"
        );
    }
    0
}

#[inline(always)]
fn exec<K: Kernel>(task: Task) -> Result<u32, u32> {
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count_lost(LostReason::RingFull);
        return Ok(0);
    };
    let filled = (|| -> Result<ExecEvent, u32> {
        Ok(ExecEvent {
            header: header(EventKind::Exec),
            process: process_id::<K>(task)?,
            comm: comm::<K>(task)?,
        })
    })();
    match filled {
        Ok(event) => {
            entry.write(event);
            entry.submit(wakeup());
        }
        Err(err) => {
            entry.discard(0);
            count_lost(LostReason::ReadFailed);
            return Err(err);
        }
    }
    Ok(0)
}

#[btf_tracepoint(function = "sched_process_free")]
pub fn sched_process_free_btf(ctx: BtfTracePointContext) -> u32 {
    let task: Task = ctx.arg(0);
    if free::<Direct>(task).is_err() {
        warn!(
            &ctx,
            "sched_process_free: a kernel read failed; event dropped"
        );
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_process_free")]
pub fn sched_process_free(ctx: RawTracePointContext) -> u32 {
    let task: Task = ctx.arg::<u64>(0) as Task;
    if free::<Probe>(task).is_err() {
        warn!(
            &ctx,
            "sched_process_free: a kernel read failed; event dropped"
        );
    }
    0
}

/// Runs in an RCU callback, not in the process's context: everything comes
/// from the task argument.
#[inline(always)]
fn free<K: Kernel>(task: Task) -> Result<u32, u32> {
    let pid: u32 = K::read(task, layout!(task_pid))?;
    let tgid: u32 = K::read(task, layout!(task_tgid))?;
    if pid != tgid {
        return Ok(0); // a thread, not a process
    }
    let start_boottime_ns: u64 = K::read(task, layout!(task_start_boottime))?;
    let Some(mut entry) = EVENTS.reserve::<FreeEvent>(0) else {
        count_lost(LostReason::RingFull);
        return Ok(0);
    };
    entry.write(FreeEvent {
        header: header(EventKind::Free),
        process: ProcessId {
            tgid,
            _pad: 0,
            start_boottime_ns,
        },
    });
    entry.submit(wakeup());
    Ok(0)
}

/// Arguments 1 to 4 of the syscall the current task is returning from,
/// from its saved user registers (`LAYOUT.args_from_regs`). Syscall exit
/// tracepoints fire before anything (a signal, a ptrace stop) can change
/// them. The registers are a BTF-typed pointer: plain loads, no helper.
#[inline(always)]
fn syscall_args() -> Result<[u64; 4], u32> {
    syscall_args_of(unsafe { bpf_get_current_task_btf() } as Task)
}

/// [`syscall_args`] of `task`, the BTF-typed current task.
#[inline(always)]
fn syscall_args_of(task: Task) -> Result<[u64; 4], u32> {
    let regs = unsafe { bpf_task_pt_regs(task as *mut _) } as *const u8;
    if regs.is_null() {
        return Err(0);
    }
    let arg = |n: usize| unsafe {
        let offset = core::ptr::read_volatile(&LAYOUT.regs_arg[n]) as usize;
        core::ptr::read_volatile(regs.wrapping_add(offset) as *const u64)
    };
    Ok([arg(0), arg(1), arg(2), arg(3)])
}

/// The process of the current task: with plain loads through the BTF-typed
/// current task where the kernel has it (the same kernels that let exit
/// programs read the saved registers), else with helper reads.
#[inline(always)]
fn current_process() -> Result<ProcessId, u32> {
    process_of(current_task_btf())
}

/// [`current_process`], given [`current_task_btf`].
#[inline(always)]
fn process_of(task_btf: Task) -> Result<ProcessId, u32> {
    if args_from_regs() {
        process_id::<Direct>(task_btf)
    } else {
        process_id::<Probe>(unsafe { bpf_get_current_task() } as Task)
    }
}

/// The BTF-typed current task where the exit programs read registers
/// (null otherwise: not used then).
#[inline(always)]
fn current_task_btf() -> Task {
    if args_from_regs() {
        unsafe { bpf_get_current_task_btf() as Task }
    } else {
        core::ptr::null()
    }
}

/// Whether the exit programs read arguments from the saved registers (the
/// entry programs are then not attached).
#[inline(always)]
fn args_from_regs() -> bool {
    layout!(args_from_regs) != 0
}

#[inline(always)]
fn save_wait_entry(entry: WaitEntry) {
    let tid = bpf_get_current_pid_tgid() as u32;
    if WAIT_ENTRIES.insert(tid, entry, 0).is_err() {
        count_lost(LostReason::WaitMapFull);
    }
}

#[inline(always)]
fn field(ctx: &TracePointContext, offset: usize) -> Result<u64, u32> {
    // A helper read: a plain context load needs the offset in the
    // instruction itself, and LAYOUT's offsets are only known at load time.
    unsafe { ctx.read_at::<u64>(offset) }.map_err(|_| 0u32)
}

#[tracepoint(category = "syscalls", name = "sys_enter_wait4")]
pub fn sys_enter_wait4(ctx: TracePointContext) -> u32 {
    match try_sys_enter_wait4(ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

fn try_sys_enter_wait4(ctx: TracePointContext) -> Result<u32, u32> {
    save_wait_entry(WaitEntry {
        entry_ns: unsafe { bpf_ktime_get_boot_ns() },
        user_result: field(&ctx, layout!(wait4_stat_addr))?,
        syscall: WaitSyscall::Wait4 as u32,
        options: field(&ctx, layout!(wait4_options))? as u32,
        target: field(&ctx, layout!(wait4_upid))? as i32,
        idtype: 0,
    });
    Ok(0)
}

#[tracepoint(category = "syscalls", name = "sys_enter_waitid")]
pub fn sys_enter_waitid(ctx: TracePointContext) -> u32 {
    match try_sys_enter_waitid(ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

fn try_sys_enter_waitid(ctx: TracePointContext) -> Result<u32, u32> {
    save_wait_entry(WaitEntry {
        entry_ns: unsafe { bpf_ktime_get_boot_ns() },
        user_result: field(&ctx, layout!(waitid_infop))?,
        syscall: WaitSyscall::Waitid as u32,
        options: field(&ctx, layout!(waitid_options))? as u32,
        target: field(&ctx, layout!(waitid_upid))? as i32,
        idtype: field(&ctx, layout!(waitid_which))? as u32,
    });
    Ok(0)
}

#[tracepoint(category = "syscalls", name = "sys_exit_wait4")]
pub fn sys_exit_wait4(ctx: TracePointContext) -> u32 {
    match try_sys_exit_wait(ctx, WaitSyscall::Wait4) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[tracepoint(category = "syscalls", name = "sys_exit_waitid")]
pub fn sys_exit_waitid(ctx: TracePointContext) -> u32 {
    match try_sys_exit_wait(ctx, WaitSyscall::Waitid) {
        Ok(ret) | Err(ret) => ret,
    }
}

/// Offsets in the UAPI `siginfo_t` for SIGCHLD (64-bit): si_code, si_pid.
const SI_CODE: usize = 8;
const SI_PID: usize = 16;

/// The wait call's arguments: from the saved registers, or as the entry
/// program saved them.
#[inline(always)]
fn wait_arguments(syscall: WaitSyscall, task_btf: Task) -> Option<WaitEntry> {
    if args_from_regs() {
        let [a0, a1, a2, a3] = syscall_args_of(task_btf).ok()?;
        return Some(match syscall {
            // wait4(upid, stat_addr, options, rusage)
            WaitSyscall::Wait4 => WaitEntry {
                entry_ns: 0,
                user_result: a1,
                syscall: syscall as u32,
                options: a2 as u32,
                target: a0 as i32,
                idtype: 0,
            },
            // waitid(which, upid, infop, options, rusage)
            WaitSyscall::Waitid => WaitEntry {
                entry_ns: 0,
                user_result: a2,
                syscall: syscall as u32,
                options: a3 as u32,
                target: a1 as i32,
                idtype: a0 as u32,
            },
        });
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    let saved = unsafe { WAIT_ENTRIES.get(tid) }.copied();
    if saved.is_some() {
        let _ = WAIT_ENTRIES.remove(tid);
    }
    saved
}

fn try_sys_exit_wait(ctx: TracePointContext, syscall: WaitSyscall) -> Result<u32, u32> {
    let task_btf = current_task_btf();
    let saved = wait_arguments(syscall, task_btf);
    let ret = field(&ctx, layout!(sys_exit_ret))? as i64;
    let Some(mut entry) = EVENTS.reserve::<WaitEvent>(0) else {
        count_lost(LostReason::RingFull);
        return Ok(0);
    };
    let mut flags = 0;
    let mut child_vpid = 0i32;
    let mut status = 0i32;
    let saved = match saved {
        Some(saved) if saved.syscall == syscall as u32 => {
            flags |= wait_flags::ENTRY_SEEN;
            saved
        }
        _ => WaitEntry::default(),
    };
    let user = saved.user_result as *const u8;
    match syscall {
        WaitSyscall::Wait4 => {
            // The status only tells an exit from a stop or continue report,
            // which needs WUNTRACED or WCONTINUED (or is a ptrace stop,
            // which names a live child: never one of the ledger's zombies).
            if ret > 0 {
                child_vpid = ret as i32;
                let maybe_stop = flags & wait_flags::ENTRY_SEEN == 0
                    || saved.options & (WUNTRACED | WCONTINUED) != 0;
                if maybe_stop
                    && !user.is_null()
                    && let Ok(value) = unsafe { bpf_probe_read_user(user as *const i32) }
                {
                    status = value;
                    flags |= wait_flags::RESULT_READ;
                }
            }
        }
        WaitSyscall::Waitid => {
            if ret == 0
                && !user.is_null()
                && let (Ok(code), Ok(pid)) = unsafe {
                    (
                        bpf_probe_read_user(user.wrapping_add(SI_CODE) as *const i32),
                        bpf_probe_read_user(user.wrapping_add(SI_PID) as *const i32),
                    )
                }
            {
                status = code;
                child_vpid = pid;
                flags |= wait_flags::RESULT_READ;
            }
        }
    }
    let waiter = match process_of(task_btf) {
        Ok(waiter) => waiter,
        Err(err) => {
            entry.discard(0);
            count_lost(LostReason::ReadFailed);
            warn!(&ctx, "sys_exit_wait: a kernel read failed; event dropped");
            return Err(err);
        }
    };
    entry.write(WaitEvent {
        header: header(EventKind::Wait),
        waiter,
        syscall: syscall as u32,
        options: saved.options,
        target: saved.target,
        idtype: saved.idtype,
        ret,
        child_vpid,
        status,
        flags,
        _pad: 0,
        entry_ns: saved.entry_ns,
    });
    entry.submit(wakeup());
    Ok(0)
}

#[inline(always)]
fn save_attr_entry(entry: AttrEntry) {
    let tid = bpf_get_current_pid_tgid() as u32;
    if ATTR_ENTRIES.insert(tid, entry, 0).is_err() {
        count_lost(LostReason::WaitMapFull);
    }
}

/// Offsets in the UAPI `struct sigaction` of rt_sigaction (64-bit).
const SA_HANDLER: usize = 0;
const SA_FLAGS: usize = 8;

#[tracepoint(category = "syscalls", name = "sys_enter_rt_sigaction")]
pub fn sys_enter_rt_sigaction(ctx: TracePointContext) -> u32 {
    match try_sys_enter_rt_sigaction(ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

fn try_sys_enter_rt_sigaction(ctx: TracePointContext) -> Result<u32, u32> {
    let sig = field(&ctx, layout!(rt_sigaction_sig))?;
    let act = field(&ctx, layout!(rt_sigaction_act))? as *const u8;
    if let Some(entry) = sigchld_action(sig, act) {
        save_attr_entry(entry);
    }
    Ok(0)
}

/// rt_sigaction(sig, act, ...): the new SIGCHLD action, if it sets one.
#[inline(always)]
fn sigchld_action(sig: u64, act: *const u8) -> Option<AttrEntry> {
    if sig != SIGCHLD || act.is_null() {
        return None; // another signal, or a query
    }
    let (Ok(handler), Ok(flags)) = (unsafe {
        (
            bpf_probe_read_user(act.wrapping_add(SA_HANDLER) as *const u64),
            bpf_probe_read_user(act.wrapping_add(SA_FLAGS) as *const u64),
        )
    }) else {
        return None; // the kernel fails the call with EFAULT too
    };
    Some(AttrEntry {
        attr: AttrKind::SigchldAction as u32,
        _pad: 0,
        value: handler,
        flags,
    })
}

/// prctl(option, arg2, ...): the new subreaper flag, if it sets one.
#[inline(always)]
fn subreaper_change(option: u64, arg2: u64) -> Option<AttrEntry> {
    (option as u32 as u64 == PR_SET_CHILD_SUBREAPER).then_some(AttrEntry {
        attr: AttrKind::ChildSubreaper as u32,
        _pad: 0,
        value: arg2,
        flags: 0,
    })
}

#[tracepoint(category = "syscalls", name = "sys_enter_prctl")]
pub fn sys_enter_prctl(ctx: TracePointContext) -> u32 {
    match try_sys_enter_prctl(ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

fn try_sys_enter_prctl(ctx: TracePointContext) -> Result<u32, u32> {
    let option = field(&ctx, layout!(prctl_option))?;
    if let Some(entry) = subreaper_change(option, field(&ctx, layout!(prctl_arg2))?) {
        save_attr_entry(entry);
    }
    Ok(0)
}

#[tracepoint(category = "syscalls", name = "sys_exit_rt_sigaction")]
pub fn sys_exit_rt_sigaction(ctx: TracePointContext) -> u32 {
    let saved = if args_from_regs() {
        syscall_args()
            .ok()
            .and_then(|[sig, act, ..]| sigchld_action(sig, act as *const u8))
    } else {
        take_attr_entry()
    };
    match try_sys_exit_attr(ctx, saved) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[tracepoint(category = "syscalls", name = "sys_exit_prctl")]
pub fn sys_exit_prctl(ctx: TracePointContext) -> u32 {
    let saved = if args_from_regs() {
        syscall_args()
            .ok()
            .and_then(|[option, arg2, ..]| subreaper_change(option, arg2))
    } else {
        take_attr_entry()
    };
    match try_sys_exit_attr(ctx, saved) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn take_attr_entry() -> Option<AttrEntry> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let saved = (unsafe { ATTR_ENTRIES.get(tid) }).copied();
    if saved.is_some() {
        let _ = ATTR_ENTRIES.remove(tid);
    }
    saved
}

fn try_sys_exit_attr(ctx: TracePointContext, saved: Option<AttrEntry>) -> Result<u32, u32> {
    let Some(saved) = saved else {
        return Ok(0); // not a call we care about
    };
    let ret = field(&ctx, layout!(sys_exit_ret))? as i64;
    let Some(mut entry) = EVENTS.reserve::<AttrEvent>(0) else {
        count_lost(LostReason::RingFull);
        return Ok(0);
    };
    match current_process() {
        Ok(process) => {
            entry.write(AttrEvent {
                header: header(EventKind::Attr),
                process,
                attr: saved.attr,
                _pad: 0,
                value: saved.value,
                flags: saved.flags,
                ret,
            });
            entry.submit(wakeup());
        }
        Err(_) => {
            entry.discard(0);
            count_lost(LostReason::ReadFailed);
            warn!(&ctx, "sys_exit_attr: a kernel read failed; event dropped");
        }
    }
    Ok(0)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
