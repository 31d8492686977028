//! Wire types shared by the eBPF programs and userspace.
//!
//! Every record in the ring buffer starts with an [`EventHeader`]; its `kind`
//! says which record follows. All types are `#[repr(C)]` with explicit padding
//! and a size assertion, so both sides agree byte for byte without any
//! compiler-dependent layout. Kinds are decoded with `TryFrom`, never transmuted.
#![no_std]

/// Length of `task_struct::comm` (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;

/// Name of the ring buffer map in the eBPF object.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU counter array of events that could not be delivered.
pub const LOST_MAP: &str = "LOST";
/// Name of the global holding the kernel layout ([`KernelLayout`]).
pub const LAYOUT_GLOBAL: &str = "LAYOUT";
/// Name of the u64 global: unread bytes in the ring buffer at which a
/// program wakes the reader. Below it the reader is not woken per event; it
/// drains on its own timer instead (a wake-up per event costs more than the
/// event).
pub const WAKEUP_BYTES_GLOBAL: &str = "WAKEUP_BYTES";
/// Default ring buffer size in bytes (power of two, multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 4 * 1024 * 1024;

/// Indices in the `LOST` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// `bpf_ringbuf_reserve` failed: the ring buffer was full.
    RingFull = 0,
    /// The per-thread wait-argument map was full: a wait return could not be matched.
    WaitMapFull = 1,
    /// A kernel memory read failed while filling an event, which was dropped
    /// (a wrong structure offset would show up here).
    ReadFailed = 2,
}

impl LostReason {
    pub const ALL: [LostReason; 3] = [Self::RingFull, Self::WaitMapFull, Self::ReadFailed];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::RingFull => "ring_full",
            Self::WaitMapFull => "wait_map_full",
            Self::ReadFailed => "read_failed",
        }
    }
}

/// Number of slots in the `LOST` array.
pub const LOST_SLOTS: u32 = LostReason::ALL.len() as u32;

/// What kind of record follows the header.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A new process (not a thread) was created.
    Fork = 1,
    /// The last thread of a process exited: the process is now a zombie or auto-reaped.
    Exit = 2,
    /// A process executed a new program (its comm changed).
    Exec = 3,
    /// A wait4/waitid call returned.
    Wait = 4,
    /// A process changed an attribute that decides who reaps and how
    /// (its SIGCHLD action, its child-subreaper flag).
    Attr = 5,
    /// The kernel freed a process: it has left the process table, whatever
    /// released it.
    Free = 6,
}

/// A value that is not a known [`EventKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownKind(pub u32);

impl TryFrom<u32> for EventKind {
    type Error = UnknownKind;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(Self::Fork),
            2 => Ok(Self::Exit),
            3 => Ok(Self::Exec),
            4 => Ok(Self::Wait),
            5 => Ok(Self::Attr),
            6 => Ok(Self::Free),
            other => Err(UnknownKind(other)),
        }
    }
}

/// Common header of every ring buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] as u32.
    pub kind: u32,
    /// Thread id of the task that emitted the event (the current task).
    pub tid: u32,
    /// CLOCK_BOOTTIME in nanoseconds when the event happened.
    pub timestamp_ns: u64,
}
const _: () = assert!(core::mem::size_of::<EventHeader>() == 16);

/// Identity of a process: its tgid and the boot-time start of its thread
/// group leader. A PID alone is never an identity: PIDs are reused.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// Thread group id in the initial PID namespace.
    pub tgid: u32,
    pub _pad: u32,
    /// `task_struct::start_boottime` of the leader, nanoseconds.
    pub start_boottime_ns: u64,
}
const _: () = assert!(core::mem::size_of::<ProcessId>() == 16);

/// A new process was created (`sched_process_fork`, threads filtered out).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkEvent {
    pub header: EventHeader,
    pub child: ProcessId,
    /// The process that must reap the child (`real_parent`'s thread group).
    pub parent: ProcessId,
    /// The child's PID as its parent sees it (the parent's PID namespace):
    /// what wait4/waitid return to the parent.
    pub child_vpid: u32,
    /// [`fork_flags`]: what the kernel knows about the parent.
    pub parent_flags: u32,
    /// The child's comm at fork time (inherited from the forking task).
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<ForkEvent>() == 72);

/// Flags of a [`ForkEvent`], about the parent.
pub mod fork_flags {
    /// The parent set PR_SET_CHILD_SUBREAPER.
    pub const PARENT_SUBREAPER: u32 = 1 << 0;
    /// An ancestor of the parent is a child subreaper.
    pub const PARENT_HAS_SUBREAPER_ANCESTOR: u32 = 1 << 1;
}

/// Flags of an [`ExitEvent`].
pub mod exit_flags {
    /// The parent ignores SIGCHLD or set SA_NOCLDWAIT: the kernel reaps the
    /// child itself at exit; it never becomes a waitable zombie.
    pub const AUTOREAP: u32 = 1 << 0;
    /// The process is traced: its tracer is notified first.
    pub const PTRACED: u32 = 1 << 1;
    /// `adopter` is valid: who inherits this process's children. Only
    /// computed when the process has children at its death.
    pub const HAS_ADOPTER: u32 = 1 << 2;
    /// The adopter ignores SIGCHLD or set SA_NOCLDWAIT: zombies it inherits
    /// are released at once.
    pub const ADOPTER_AUTOREAPS: u32 = 1 << 3;
    /// The exiting process is the init of its PID namespace: the kernel kills
    /// and reaps everything in the namespace itself. Only computed when the
    /// process has children at its death.
    pub const NS_INIT: u32 = 1 << 4;
    /// The process had set PR_SET_CHILD_SUBREAPER.
    pub const SUBREAPER: u32 = 1 << 5;
    /// `exit_signal` is not SIGCHLD.
    pub const NON_SIGCHLD_EXIT_SIGNAL: u32 = 1 << 6;
}

/// The whole thread group of a process has exited.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub header: EventHeader,
    pub process: ProcessId,
    /// `real_parent` at exit: who must reap it.
    pub parent: ProcessId,
    /// Where this process's own children go (valid with `HAS_ADOPTER`).
    pub adopter: ProcessId,
    /// The process's PID as its parent sees it.
    pub vpid: u32,
    /// `task_struct::exit_code` of the last thread (wait status encoding).
    pub exit_code: u32,
    /// [`exit_flags`].
    pub flags: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 96);

/// A process executed a new program.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub header: EventHeader,
    pub process: ProcessId,
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 48);

/// Which wait syscall returned.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitSyscall {
    Wait4 = 1,
    Waitid = 2,
}

impl TryFrom<u32> for WaitSyscall {
    type Error = UnknownKind;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(Self::Wait4),
            2 => Ok(Self::Waitid),
            other => Err(UnknownKind(other)),
        }
    }
}

/// Flags of a [`WaitEvent`].
pub mod wait_flags {
    /// The user-memory result (wait status or siginfo) was read.
    pub const RESULT_READ: u32 = 1 << 0;
    /// The matching syscall entry was seen (arguments are valid).
    pub const ENTRY_SEEN: u32 = 1 << 1;
}

/// A wait4 or waitid call returned.
///
/// For wait4, `ret` is the reported child's PID in the waiter's namespace.
/// For waitid, `ret` is 0 on success and the child is `si_pid`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WaitEvent {
    pub header: EventHeader,
    pub waiter: ProcessId,
    /// A [`WaitSyscall`] as u32.
    pub syscall: u32,
    /// `options` argument (WNOHANG, WNOWAIT, WEXITED, ...).
    pub options: u32,
    /// wait4: the `pid` argument. waitid: the `id` argument.
    pub target: i32,
    /// waitid: `idtype` (P_ALL, P_PID, P_PGID, P_PIDFD). wait4: 0.
    pub idtype: u32,
    /// Syscall return value (negative errno on failure).
    pub ret: i64,
    /// The reported child's PID in the waiter's namespace (0 if none).
    pub child_vpid: i32,
    /// waitid: `si_code` (CLD_EXITED, ...). wait4: the wait status.
    pub status: i32,
    /// [`wait_flags`].
    pub flags: u32,
    pub _pad: u32,
    /// CLOCK_BOOTTIME when the call entered the kernel.
    pub entry_ns: u64,
}
const _: () = assert!(core::mem::size_of::<WaitEvent>() == 80);

/// Which attribute an [`AttrEvent`] changed.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrKind {
    /// rt_sigaction(SIGCHLD, act, ...): `value` is the new handler (0 =
    /// SIG_DFL, 1 = SIG_IGN, else a handler address), `flags` its sa_flags.
    SigchldAction = 1,
    /// prctl(PR_SET_CHILD_SUBREAPER, value).
    ChildSubreaper = 2,
}

impl TryFrom<u32> for AttrKind {
    type Error = UnknownKind;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(Self::SigchldAction),
            2 => Ok(Self::ChildSubreaper),
            other => Err(UnknownKind(other)),
        }
    }
}

/// A process changed its SIGCHLD action or its subreaper flag. Emitted at
/// the syscall's return, with its result.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AttrEvent {
    pub header: EventHeader,
    pub process: ProcessId,
    /// An [`AttrKind`] as u32.
    pub attr: u32,
    pub _pad: u32,
    pub value: u64,
    pub flags: u64,
    /// Syscall return value (0 on success, negative errno on failure).
    pub ret: i64,
}
const _: () = assert!(core::mem::size_of::<AttrEvent>() == 64);

/// The kernel freed a process's thread-group leader (`sched_process_free`,
/// threads filtered out): the process has left the process table. Fires one
/// RCU grace period after the release, whatever released it — a wait call
/// the tracer sees, io_uring's `IORING_OP_WAITID`, a 32-bit compat wait, the
/// kernel itself — so no zombie can outlive its process in the ledger.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FreeEvent {
    pub header: EventHeader,
    pub process: ProcessId,
}
const _: () = assert!(core::mem::size_of::<FreeEvent>() == 32);

/// An attribute change saved at syscall entry until its return, by thread id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AttrEntry {
    pub attr: u32,
    pub _pad: u32,
    pub value: u64,
    pub flags: u64,
}
const _: () = assert!(core::mem::size_of::<AttrEntry>() == 24);

/// One process as the task iterator (`iter/task`, the [`SEED_PROGRAM`])
/// sees it: the fields of `/proc/<pid>/stat` that seed the ledger, read
/// from the thread-group leader in the kernel instead of one file per
/// process. Written to the iterator's file, not to the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskRecord {
    pub process: ProcessId,
    /// `real_parent`'s thread-group id (0 for PID 1 and kthreadd).
    pub ppid: u32,
    /// The process's PID as its parent's PID namespace sees it (what the
    /// parent's wait returns).
    pub vpid: u32,
    /// `task_struct.__state` (low 32 bits of `state` before Linux 5.14).
    pub state: u32,
    /// `task_struct.exit_state`.
    pub exit_state: u32,
    /// `task_struct.flags` (`PF_*`).
    pub flags: u32,
    /// `signal_struct.nr_threads`: threads in the group.
    pub nr_threads: u32,
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<TaskRecord>() == 56);

/// Name of the task iterator program that lists every process for the
/// ledger's seed and resyncs.
pub const SEED_PROGRAM: &str = "seed_tasks";

/// Largest record in the ring buffer.
pub const MAX_EVENT_SIZE: usize = core::mem::size_of::<ExitEvent>();

/// Arguments of a wait call saved at syscall entry, keyed by thread id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WaitEntry {
    pub entry_ns: u64,
    /// wait4: `stat_addr`. waitid: `infop`.
    pub user_result: u64,
    pub syscall: u32,
    pub options: u32,
    pub target: i32,
    pub idtype: u32,
}
const _: () = assert!(core::mem::size_of::<WaitEntry>() == 32);

/// Offsets of kernel structure fields and tracepoint record fields, read by
/// userspace from BTF and tracefs at start-up and written into the eBPF
/// object as a global before loading. Nothing about the kernel's layout is
/// compiled into the programs.
///
/// Bitfields are given as the byte offset of the 32-bit word that holds them
/// and the bit within that word.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    // struct task_struct
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    pub task_exit_code: u32,
    pub task_exit_signal: u32,
    pub task_ptrace: u32,
    pub task_signal: u32,
    pub task_sighand: u32,
    pub task_thread_pid: u32,
    pub task_comm: u32,
    /// `task_struct.children.next`: the list is empty when it points at itself.
    pub task_children: u32,
    // struct signal_struct
    pub signal_live: u32,
    pub signal_subreaper_word: u32,
    pub signal_is_child_subreaper_bit: u32,
    pub signal_has_child_subreaper_bit: u32,
    // struct sighand_struct / k_sigaction / sigaction
    pub sighand_action: u32,
    pub k_sigaction_size: u32,
    pub sigaction_handler: u32,
    pub sigaction_flags: u32,
    // struct pid / upid / pid_namespace
    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_nr: u32,
    pub upid_ns: u32,
    pub pid_ns_child_reaper: u32,
    /// 1 when the `sched_process_exit` raw tracepoint passes `group_dead` as
    /// its second argument (recent kernels); otherwise the programs read
    /// `signal->live`.
    pub exit_has_group_dead_arg: u32,
    // tracepoint records: syscalls/sys_enter_wait4
    pub wait4_upid: u32,
    pub wait4_stat_addr: u32,
    pub wait4_options: u32,
    // syscalls/sys_enter_waitid
    pub waitid_which: u32,
    pub waitid_upid: u32,
    pub waitid_infop: u32,
    pub waitid_options: u32,
    // syscalls/sys_exit_{wait4,waitid,rt_sigaction,prctl}
    pub sys_exit_ret: u32,
    // syscalls/sys_enter_rt_sigaction
    pub rt_sigaction_sig: u32,
    pub rt_sigaction_act: u32,
    // syscalls/sys_enter_prctl
    pub prctl_option: u32,
    pub prctl_arg2: u32,
    /// 1 when the syscall exit programs read their call's arguments from the
    /// task's saved user registers (`bpf_task_pt_regs`, offsets below), so
    /// no syscall entry program is attached: entry programs cost every
    /// syscall on the host, not only the traced ones. 0 on kernels or
    /// architectures where that is not possible: the entry programs save
    /// the arguments in a map instead.
    pub args_from_regs: u32,
    /// Offsets in `struct pt_regs` of syscall arguments 1 to 4.
    pub regs_arg: [u32; 4],
    // What the task iterator reads besides the fields above (0 when BTF
    // lacks one: the seed then comes from /proc, see `seed_fields`).
    /// `task_struct.__state` (or the low word of `state` before 5.14).
    pub task_state: u32,
    pub task_exit_state: u32,
    pub task_flags: u32,
    pub signal_nr_threads: u32,
    /// 1 when the four fields above were all found.
    pub seed_fields: u32,
    /// Always [`KernelLayout::MARKER`]. Keeps the eBPF-side initializer
    /// non-zero so the global lands in `.rodata` (patchable and, once frozen,
    /// constant to the verifier) rather than `.bss`.
    pub marker: u32,
}
const _: () = assert!(core::mem::size_of::<KernelLayout>() == 51 * 4);

impl KernelLayout {
    pub const MARKER: u32 = 0x5a54_4c59;
    /// All offsets zero: what the eBPF object holds until userspace patches it.
    pub const UNSET: Self = Self {
        task_pid: 0,
        task_tgid: 0,
        task_real_parent: 0,
        task_group_leader: 0,
        task_start_boottime: 0,
        task_exit_code: 0,
        task_exit_signal: 0,
        task_ptrace: 0,
        task_signal: 0,
        task_sighand: 0,
        task_thread_pid: 0,
        task_comm: 0,
        task_children: 0,
        signal_live: 0,
        signal_subreaper_word: 0,
        signal_is_child_subreaper_bit: 0,
        signal_has_child_subreaper_bit: 0,
        sighand_action: 0,
        k_sigaction_size: 0,
        sigaction_handler: 0,
        sigaction_flags: 0,
        pid_level: 0,
        pid_numbers: 0,
        upid_size: 0,
        upid_nr: 0,
        upid_ns: 0,
        pid_ns_child_reaper: 0,
        exit_has_group_dead_arg: 0,
        wait4_upid: 0,
        wait4_stat_addr: 0,
        wait4_options: 0,
        waitid_which: 0,
        waitid_upid: 0,
        waitid_infop: 0,
        waitid_options: 0,
        sys_exit_ret: 0,
        rt_sigaction_sig: 0,
        rt_sigaction_act: 0,
        prctl_option: 0,
        prctl_arg2: 0,
        args_from_regs: 0,
        regs_arg: [0; 4],
        task_state: 0,
        task_exit_state: 0,
        task_flags: 0,
        signal_nr_threads: 0,
        seed_fields: 0,
        marker: Self::MARKER,
    };
}

// Safety: every type below is `#[repr(C)]`, made only of integers and byte
// arrays, with all padding explicit, so any bit pattern is valid.
#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::KernelLayout {}
    unsafe impl aya::Pod for super::WaitEntry {}
    unsafe impl aya::Pod for super::AttrEntry {}
}
