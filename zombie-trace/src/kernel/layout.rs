//! Discovery of the [`KernelLayout`] the eBPF programs need.
//!
//! Kernel structure offsets come from BTF ([`crate::kernel::btf`]); tracepoint record
//! offsets come from tracefs format files ([`crate::kernel::tracefs`]). Every field
//! is checked for the size the eBPF programs read, so a kernel whose layout
//! differs from what the programs expect fails here, with a message naming
//! the field, instead of producing wrong data.

use thiserror::Error;
use zombie_trace_common::{COMM_LEN, KernelLayout};

use crate::kernel::btf::{Btf, BtfError, Kind, Member};
use crate::kernel::tracefs::{EventFormat, TraceFs, TraceFsError};

/// Why the kernel layout could not be determined.
#[derive(Debug, Error)]
pub enum LayoutError {
    #[error(transparent)]
    Btf(#[from] BtfError),

    #[error(transparent)]
    TraceFs(#[from] TraceFsError),

    #[error("cannot locate `{structure}.{field}`: {error}; {impact}")]
    MissingField {
        structure: &'static str,
        field: &'static str,
        error: Box<BtfError>,
        impact: &'static str,
    },

    #[error("cannot find the size of `struct {structure}`: {error}; {impact}")]
    MissingSize {
        structure: &'static str,
        error: Box<BtfError>,
        impact: &'static str,
    },

    #[error(
        "`{structure}.{field}` is {found} in this kernel, but zombie-trace reads {expected}; \
         {impact}"
    )]
    UnexpectedSize {
        structure: &'static str,
        field: &'static str,
        found: String,
        expected: String,
        impact: &'static str,
    },

    #[error(
        "`{structure}.{field}` is at bit {bit_offset} (bitfield width {bitfield_size}), not at \
         a whole byte; {impact}"
    )]
    NotByteAligned {
        structure: &'static str,
        field: &'static str,
        bit_offset: u32,
        bitfield_size: u32,
        impact: &'static str,
    },

    #[error(
        "`signal_struct.{field}` is not a one-bit bitfield in this kernel (width \
         {bitfield_size}); zombie-trace cannot tell which processes are child subreapers"
    )]
    NotAFlagBit {
        field: &'static str,
        bitfield_size: u32,
    },

    #[error(
        "`signal_struct.is_child_subreaper` (bit {is_bit}) and `has_child_subreaper` (bit \
         {has_bit}) are not in the same 32-bit word; zombie-trace reads both from one word and \
         cannot tell which processes are child subreapers"
    )]
    SubreaperBitsSplit { is_bit: u32, has_bit: u32 },

    #[error("cannot read the record format of tracepoint {category}/{event}: {error}; {impact}")]
    TracepointFormat {
        category: &'static str,
        event: &'static str,
        error: Box<TraceFsError>,
        impact: &'static str,
    },

    #[error("cannot use field `{field}` of tracepoint {category}/{event}: {error}; {impact}")]
    TracepointField {
        category: &'static str,
        event: &'static str,
        field: &'static str,
        error: Box<TraceFsError>,
        impact: &'static str,
    },

    #[error(
        "field `{field}` of tracepoint {category}/{event} is {found} bytes, zombie-trace reads \
         {expected}; {impact}"
    )]
    TracepointFieldSize {
        category: &'static str,
        event: &'static str,
        field: &'static str,
        found: u32,
        expected: u32,
        impact: &'static str,
    },

    #[error(
        "`ret` is at offset {found} in syscalls/{event} but at {expected} in \
         sys_exit_wait4; zombie-trace uses one offset for all syscall returns and cannot report \
         them on this kernel"
    )]
    ExitRetMismatch {
        event: &'static str,
        found: u32,
        expected: u32,
    },
}

const IDENTITY: &str = "zombie-trace cannot identify processes on this kernel";
const PARENT: &str = "zombie-trace cannot tell who must reap a process on this kernel";
const EXIT: &str = "zombie-trace cannot report how processes exit on this kernel";
const SIGNALS: &str =
    "zombie-trace cannot tell whether a parent ignores SIGCHLD (auto-reaps) on this kernel";
const PIDNS: &str = "zombie-trace cannot translate PIDs between PID namespaces on this kernel";
const SUBREAPER: &str = "zombie-trace cannot tell which processes are child subreapers";
const WAITS: &str = "zombie-trace cannot see wait4/waitid calls on this kernel";
const SEED: &str = "the process table is read from /proc instead of the task iterator";

/// What size a field must have for the eBPF programs' reads to be right.
#[derive(Clone, Copy)]
enum Expect {
    Bytes(u32),
    /// A kernel pointer.
    Pointer,
    /// Either of two sizes (the programs only use the low bits).
    OneOf(u32, u32),
    /// Any size (arrays whose elements are sized separately).
    Any,
}

struct Lookup<'a> {
    btf: &'a Btf,
}

impl Lookup<'_> {
    /// Byte offset of a non-bitfield member, checked for size.
    fn field(
        &self,
        structure: &'static str,
        field: &'static str,
        expect: Expect,
        impact: &'static str,
    ) -> Result<u32, LayoutError> {
        let member = self.member(structure, field, impact)?;
        self.byte_offset(structure, field, member, expect, impact)
    }

    /// Like [`Self::field`] for the first of `names` that exists (a field
    /// renamed across kernel versions or spelled differently by some
    /// architectures); errors name the first.
    fn first_field(
        &self,
        structure: &'static str,
        names: &[&'static str],
        expect: Expect,
        impact: &'static str,
    ) -> Result<u32, LayoutError> {
        let mut first_error = None;
        for &field in names {
            match self.btf.member_offset(structure, field) {
                Ok(member) => return self.byte_offset(structure, field, member, expect, impact),
                Err(error @ BtfError::MemberNotFound { .. }) => {
                    first_error.get_or_insert(error);
                }
                Err(error) => {
                    return Err(LayoutError::MissingField {
                        structure,
                        field,
                        error: Box::new(error),
                        impact,
                    });
                }
            }
        }
        Err(LayoutError::MissingField {
            structure,
            field: names.first().copied().unwrap_or_default(),
            error: Box::new(first_error.unwrap_or_else(|| BtfError::MemberNotFound {
                name: structure.to_string(),
                member: String::new(),
            })),
            impact,
        })
    }

    fn member(
        &self,
        structure: &'static str,
        field: &'static str,
        impact: &'static str,
    ) -> Result<Member, LayoutError> {
        self.btf
            .member_offset(structure, field)
            .map_err(|error| LayoutError::MissingField {
                structure,
                field,
                error: Box::new(error),
                impact,
            })
    }

    fn byte_offset(
        &self,
        structure: &'static str,
        field: &'static str,
        member: Member,
        expect: Expect,
        impact: &'static str,
    ) -> Result<u32, LayoutError> {
        let offset = member.byte_offset().ok_or(LayoutError::NotByteAligned {
            structure,
            field,
            bit_offset: member.bit_offset,
            bitfield_size: member.bitfield_size,
            impact,
        })?;
        let (ok, expected) = match expect {
            Expect::Any => (true, String::new()),
            Expect::Bytes(n) => (member.size == Some(n), format!("{n} bytes")),
            Expect::Pointer => {
                let n = self.btf.pointer_size();
                (member.size == Some(n), format!("a {n}-byte pointer"))
            }
            Expect::OneOf(a, b) => (
                member.size == Some(a) || member.size == Some(b),
                format!("{a} or {b} bytes"),
            ),
        };
        if !ok {
            return Err(LayoutError::UnexpectedSize {
                structure,
                field,
                found: member
                    .size
                    .map_or("of unknown size".to_string(), |s| format!("{s} bytes")),
                expected,
                impact,
            });
        }
        Ok(offset)
    }

    fn struct_size(
        &self,
        structure: &'static str,
        impact: &'static str,
    ) -> Result<u32, LayoutError> {
        self.btf
            .type_size(structure, Kind::Struct)
            .map_err(|error| LayoutError::MissingSize {
                structure,
                error: Box::new(error),
                impact,
            })
    }
}

/// Word offset and bits of the two subreaper flags of `signal_struct`:
/// `(byte offset of the aligned 32-bit word, is_child_subreaper bit,
/// has_child_subreaper bit)`. The bits are numbered as the eBPF programs
/// test them: `(word >> bit) & 1` on a native-endian load.
pub fn subreaper_bits(is: Member, has: Member) -> Result<(u32, u32, u32), LayoutError> {
    for (field, m) in [("is_child_subreaper", is), ("has_child_subreaper", has)] {
        if m.bitfield_size != 1 {
            return Err(LayoutError::NotAFlagBit {
                field,
                bitfield_size: m.bitfield_size,
            });
        }
    }
    if is.bit_offset / 32 != has.bit_offset / 32 {
        return Err(LayoutError::SubreaperBitsSplit {
            is_bit: is.bit_offset,
            has_bit: has.bit_offset,
        });
    }
    // BTF numbers bits in memory order: from the least significant bit of the
    // first byte on little-endian machines, from the most significant on
    // big-endian ones.
    let bit = |m: Member| {
        let b = m.bit_offset % 32;
        if cfg!(target_endian = "big") {
            31 - b
        } else {
            b
        }
    };
    Ok(((is.bit_offset / 32) * 4, bit(is), bit(has)))
}

/// Fills the kernel-structure part of `layout` from BTF.
pub fn fill_struct_offsets(btf: &Btf, layout: &mut KernelLayout) -> Result<(), LayoutError> {
    use Expect::{Any, Bytes, OneOf, Pointer};
    let l = Lookup { btf };

    // struct task_struct
    layout.task_pid = l.field("task_struct", "pid", Bytes(4), IDENTITY)?;
    layout.task_tgid = l.field("task_struct", "tgid", Bytes(4), IDENTITY)?;
    layout.task_real_parent = l.field("task_struct", "real_parent", Pointer, PARENT)?;
    layout.task_group_leader = l.field("task_struct", "group_leader", Pointer, IDENTITY)?;
    // Called real_start_time before Linux 5.5.
    layout.task_start_boottime = l.first_field(
        "task_struct",
        &["start_boottime", "real_start_time"],
        Bytes(8),
        IDENTITY,
    )?;
    layout.task_exit_code = l.field("task_struct", "exit_code", Bytes(4), EXIT)?;
    layout.task_exit_signal = l.field("task_struct", "exit_signal", Bytes(4), EXIT)?;
    layout.task_ptrace = l.field("task_struct", "ptrace", Bytes(4), PARENT)?;
    layout.task_signal = l.field("task_struct", "signal", Pointer, EXIT)?;
    layout.task_sighand = l.field("task_struct", "sighand", Pointer, SIGNALS)?;
    layout.task_thread_pid = l.field("task_struct", "thread_pid", Pointer, PIDNS)?;
    layout.task_comm = l.field("task_struct", "comm", Bytes(COMM_LEN as u32), IDENTITY)?;
    layout.task_children = l.field("task_struct", "children.next", Pointer, PARENT)?;

    // struct signal_struct
    layout.signal_live = l.field("signal_struct", "live.counter", Bytes(4), EXIT)?;
    let is = l.member("signal_struct", "is_child_subreaper", SUBREAPER)?;
    let has = l.member("signal_struct", "has_child_subreaper", SUBREAPER)?;
    let (word, is_bit, has_bit) = subreaper_bits(is, has)?;
    layout.signal_subreaper_word = word;
    layout.signal_is_child_subreaper_bit = is_bit;
    layout.signal_has_child_subreaper_bit = has_bit;

    // struct sighand_struct, k_sigaction, sigaction
    let action = l.member("sighand_struct", "action", SIGNALS)?;
    layout.sighand_action = l.byte_offset("sighand_struct", "action", action, Any, SIGNALS)?;
    layout.k_sigaction_size = l.struct_size("k_sigaction", SIGNALS)?;
    // action is `struct k_sigaction action[_NSIG]`.
    if layout.k_sigaction_size == 0 || action.size.is_none_or(|s| s % layout.k_sigaction_size != 0)
    {
        return Err(LayoutError::UnexpectedSize {
            structure: "sighand_struct",
            field: "action",
            found: action
                .size
                .map_or("of unknown size".to_string(), |s| format!("{s} bytes")),
            expected: format!(
                "an array of {}-byte struct k_sigaction",
                layout.k_sigaction_size
            ),
            impact: SIGNALS,
        });
    }
    // The kernel's struct sigaction is k_sigaction's first member `sa`; some
    // architectures' headers put the handler in a union `_u`.
    layout.sigaction_handler = l.first_field(
        "k_sigaction",
        &["sa.sa_handler", "sa._u._sa_handler"],
        Pointer,
        SIGNALS,
    )?;
    layout.sigaction_flags = l.field("k_sigaction", "sa.sa_flags", OneOf(4, 8), SIGNALS)?;

    // struct pid, upid, pid_namespace
    layout.pid_level = l.field("pid", "level", Bytes(4), PIDNS)?;
    layout.pid_numbers = l.field("pid", "numbers", Any, PIDNS)?;
    layout.upid_size = l.struct_size("upid", PIDNS)?;
    layout.upid_nr = l.field("upid", "nr", Bytes(4), PIDNS)?;
    layout.upid_ns = l.field("upid", "ns", Pointer, PIDNS)?;
    layout.pid_ns_child_reaper = l.field("pid_namespace", "child_reaper", Pointer, PARENT)?;

    // Syscall arguments in the saved user registers (the x86-64 syscall
    // ABI: rdi, rsi, rdx, r10). Elsewhere, or if BTF does not have them,
    // the entry programs save the arguments instead.
    let regs: Result<Vec<u32>, _> = ["di", "si", "dx", "r10"]
        .iter()
        .map(|reg| btf.member_offset("pt_regs", reg))
        .map(|m| m.ok().and_then(|m| m.byte_offset()).ok_or(()))
        .collect();
    match regs {
        Ok(offsets) if cfg!(target_arch = "x86_64") => {
            layout.regs_arg.copy_from_slice(&offsets);
            layout.args_from_regs = 1;
        }
        _ => layout.args_from_regs = 0,
    }

    match seed_fields(&l) {
        Ok([state, exit_state, flags, nr_threads]) => {
            layout.task_state = state;
            layout.task_exit_state = exit_state;
            layout.task_flags = flags;
            layout.signal_nr_threads = nr_threads;
            layout.seed_fields = 1;
        }
        Err(e) => {
            log::info!("{e}");
            layout.seed_fields = 0;
        }
    }

    layout.exit_has_group_dead_arg = match exit_has_group_dead_arg(btf) {
        Ok(has) => u32::from(has),
        Err(BtfError::TypeNotFound { .. }) => {
            log::warn!(
                "kernel BTF has no btf_trace_sched_process_exit; \
                     process exits are detected with signal_struct.live"
            );
            0
        }
        Err(e) => return Err(e.into()),
    };
    Ok(())
}

/// Whether the kernel's BTF has what the task iterator needs: the
/// iterator's target (`bpf_iter_task`, Linux 5.8) and the fields it reads.
pub fn has_task_iterator(btf: &Btf) -> bool {
    btf.type_ids_by_name("bpf_iter_task", Kind::Func)
        .is_ok_and(|ids| !ids.is_empty())
        && seed_fields(&Lookup { btf }).is_ok()
}

/// What the task iterator reads besides the identity fields: the state
/// words, the `PF_*` flags and the thread count, as `/proc/<pid>/stat`
/// shows them. Optional: without them the seed comes from /proc.
fn seed_fields(l: &Lookup<'_>) -> Result<[u32; 4], LayoutError> {
    use Expect::{Bytes, OneOf};
    // `unsigned int __state` from Linux 5.14, `volatile long state` before;
    // the state bits are in the low word.
    let state = match l.field("task_struct", "__state", Bytes(4), SEED) {
        Ok(offset) => offset,
        Err(LayoutError::MissingField { .. }) => {
            let offset = l.field("task_struct", "state", OneOf(4, 8), SEED)?;
            let size = l.member("task_struct", "state", SEED)?.size.unwrap_or(4);
            if cfg!(target_endian = "big") {
                offset + size - 4
            } else {
                offset
            }
        }
        Err(e) => return Err(e),
    };
    Ok([
        state,
        l.field("task_struct", "exit_state", Bytes(4), SEED)?,
        l.field("task_struct", "flags", Bytes(4), SEED)?,
        l.field("signal_struct", "nr_threads", Bytes(4), SEED)?,
    ])
}

/// Whether `sched_process_exit` passes `group_dead` (Linux 6.16 on); before,
/// the exit program tells a process's last thread by `signal_struct.live`.
pub fn exit_has_group_dead_arg(btf: &Btf) -> Result<bool, BtfError> {
    // void (*)(void *__data, struct task_struct *p[, bool group_dead])
    btf.func_proto_param_count_of_typedef("btf_trace_sched_process_exit")
        .map(|params| params >= 3)
}

/// One `syscalls` tracepoint's format.
struct Tracepoint {
    event: &'static str,
    format: EventFormat,
}

impl Tracepoint {
    const CATEGORY: &'static str = "syscalls";

    fn open(tracefs: &TraceFs, event: &'static str) -> Result<Self, LayoutError> {
        let format = tracefs
            .event_format(Self::CATEGORY, event)
            .map_err(|error| match error {
                // A missing privilege is the whole story, in one line.
                TraceFsError::Permission { .. } => LayoutError::TraceFs(error),
                error => LayoutError::TracepointFormat {
                    category: Self::CATEGORY,
                    event,
                    error: Box::new(error),
                    impact: WAITS,
                },
            })?;
        Ok(Self { event, format })
    }

    /// Offset of a syscall argument or return value: always `long`-sized.
    fn offset(&self, field: &'static str) -> Result<u32, LayoutError> {
        let f = self
            .format
            .require_field(field)
            .map_err(|error| LayoutError::TracepointField {
                category: Self::CATEGORY,
                event: self.event,
                field,
                error: Box::new(error),
                impact: WAITS,
            })?;
        let expected = std::mem::size_of::<u64>() as u32;
        if f.size != expected {
            return Err(LayoutError::TracepointFieldSize {
                category: Self::CATEGORY,
                event: self.event,
                field,
                found: f.size,
                expected,
                impact: WAITS,
            });
        }
        Ok(f.offset)
    }
}

/// Fills the `syscalls` tracepoint record offsets of `layout` from tracefs.
pub fn fill_tracepoint_offsets(
    tracefs: &TraceFs,
    layout: &mut KernelLayout,
) -> Result<(), LayoutError> {
    let wait4 = Tracepoint::open(tracefs, "sys_enter_wait4")?;
    layout.wait4_upid = wait4.offset("upid")?;
    layout.wait4_stat_addr = wait4.offset("stat_addr")?;
    layout.wait4_options = wait4.offset("options")?;

    let waitid = Tracepoint::open(tracefs, "sys_enter_waitid")?;
    layout.waitid_which = waitid.offset("which")?;
    layout.waitid_upid = waitid.offset("upid")?;
    layout.waitid_infop = waitid.offset("infop")?;
    layout.waitid_options = waitid.offset("options")?;

    let sigaction = Tracepoint::open(tracefs, "sys_enter_rt_sigaction")?;
    layout.rt_sigaction_sig = sigaction.offset("sig")?;
    layout.rt_sigaction_act = sigaction.offset("act")?;

    let prctl = Tracepoint::open(tracefs, "sys_enter_prctl")?;
    layout.prctl_option = prctl.offset("option")?;
    layout.prctl_arg2 = prctl.offset("arg2")?;

    let ret = Tracepoint::open(tracefs, "sys_exit_wait4")?.offset("ret")?;
    for event in ["sys_exit_waitid", "sys_exit_rt_sigaction", "sys_exit_prctl"] {
        let found = Tracepoint::open(tracefs, event)?.offset("ret")?;
        if found != ret {
            return Err(LayoutError::ExitRetMismatch {
                event,
                found,
                expected: ret,
            });
        }
    }
    layout.sys_exit_ret = ret;
    Ok(())
}

/// The complete layout: kernel structures from `btf`, tracepoint records
/// from `tracefs`.
pub fn kernel_layout(btf: &Btf, tracefs: &TraceFs) -> Result<KernelLayout, LayoutError> {
    let mut layout = KernelLayout::UNSET;
    fill_struct_offsets(btf, &mut layout)?;
    fill_tracepoint_offsets(tracefs, &mut layout)?;
    Ok(layout)
}

/// Reads the running kernel's BTF, finds (or mounts) tracefs, and returns
/// the complete layout. Mounting tracefs and reading formats need root.
pub fn discover() -> Result<KernelLayout, LayoutError> {
    let btf = Btf::from_sys_fs()?;
    let tracefs = TraceFs::open_or_mount()?;
    kernel_layout(&btf, &tracefs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn bit(bit_offset: u32, bitfield_size: u32) -> Member {
        Member {
            bit_offset,
            bitfield_size,
            size: Some(4),
            type_id: 1,
        }
    }

    #[test]
    fn subreaper_word_and_bits() {
        let (word, is, has) = subreaper_bits(bit(8 * 100 + 3, 1), bit(8 * 100 + 4, 1)).unwrap();
        assert_eq!(word, 100);
        if cfg!(target_endian = "little") {
            assert_eq!((is, has), (3, 4));
        }
        // Bit 70 and 71 of the struct: word at byte 8, bits 6 and 7.
        let (word, is, has) = subreaper_bits(bit(70, 1), bit(71, 1)).unwrap();
        assert_eq!(word, 8);
        if cfg!(target_endian = "little") {
            assert_eq!((is, has), (6, 7));
        }
        assert!(matches!(
            subreaper_bits(bit(63, 1), bit(64, 1)),
            Err(LayoutError::SubreaperBitsSplit { .. })
        ));
        assert!(matches!(
            subreaper_bits(bit(64, 0), bit(65, 1)),
            Err(LayoutError::NotAFlagBit { .. })
        ));
        assert!(matches!(
            subreaper_bits(bit(64, 1), bit(65, 2)),
            Err(LayoutError::NotAFlagBit { .. })
        ));
    }

    /// A made-up kernel with every structure zombie-trace reads, at known
    /// offsets, exercising anonymous members, kind_flag bitfields and the
    /// `sa._u._sa_handler` spelling.
    fn synthetic_kernel() -> Vec<u8> {
        use crate::kernel::btf::tests::{ARRAY, Builder, FUNC_PROTO, PTR, STRUCT, TYPEDEF, UNION};
        let mut b = Builder::new();
        let int = b.int("int", 4, 32, 0);
        let uint = b.int("unsigned int", 4, 32, 0);
        let long = b.int("long int", 8, 64, 0);
        let u64_ = b.int("long long unsigned int", 8, 64, 0);
        let char_ = b.int("char", 1, 8, 0);
        let void_ptr = b.ty("", PTR, 0, false, 0, &[]);
        let comm = b.ty("", ARRAY, 0, false, 0, &[char_, int, 16]);
        let atomic = b.composite(STRUCT, "", 4, false, &[("counter", int, 0)]);
        let atomic_t = b.ty("atomic_t", TYPEDEF, 0, false, atomic, &[]);
        let parents = b.composite(
            STRUCT,
            "",
            16,
            false,
            &[("real_parent", void_ptr, 0), ("group_leader", void_ptr, 64)],
        );
        let at = |byte: u32| byte * 8;
        let list_head = b.composite(
            STRUCT,
            "list_head",
            16,
            false,
            &[("next", void_ptr, 0), ("prev", void_ptr, 64)],
        );
        b.composite(
            STRUCT,
            "task_struct",
            512,
            true,
            &[
                ("ptrace", uint, at(16)),
                ("pid", int, at(100)),
                ("tgid", int, at(104)),
                ("", parents, at(200)),
                ("start_boottime", u64_, at(300)),
                ("exit_code", int, at(320)),
                ("exit_signal", int, at(324)),
                ("signal", void_ptr, at(400)),
                ("sighand", void_ptr, at(408)),
                ("thread_pid", void_ptr, at(416)),
                ("comm", comm, at(432)),
                ("children", list_head, at(448)),
            ],
        );
        b.composite(
            STRUCT,
            "signal_struct",
            128,
            true,
            &[
                ("live", atomic_t, at(4)),
                ("flags", uint, at(60)),
                ("is_child_subreaper", uint, (1 << 24) | (at(64) + 2)),
                ("has_child_subreaper", uint, (1 << 24) | (at(64) + 3)),
            ],
        );
        let handler_union = b.composite(
            UNION,
            "",
            8,
            false,
            &[("_sa_handler", void_ptr, 0), ("_sa_sigaction", void_ptr, 0)],
        );
        let sigaction = b.composite(
            STRUCT,
            "sigaction",
            24,
            false,
            &[
                ("sa_flags", long, 0),
                ("_u", handler_union, at(8)),
                ("sa_mask", long, at(16)),
            ],
        );
        let k_sigaction = b.composite(STRUCT, "k_sigaction", 24, false, &[("sa", sigaction, 0)]);
        let actions = b.ty("", ARRAY, 0, false, 0, &[k_sigaction, int, 64]);
        b.composite(
            STRUCT,
            "sighand_struct",
            24 + 64 * 24,
            false,
            &[("count", int, 0), ("action", actions, at(24))],
        );
        let upid = b.composite(
            STRUCT,
            "upid",
            16,
            false,
            &[("nr", int, 0), ("ns", void_ptr, at(8))],
        );
        let numbers = b.ty("", ARRAY, 0, false, 0, &[upid, int, 0]);
        b.composite(
            STRUCT,
            "pid",
            96,
            false,
            &[("level", uint, at(4)), ("numbers", numbers, at(96))],
        );
        b.composite(
            STRUCT,
            "pid_namespace",
            64,
            false,
            &[("child_reaper", void_ptr, at(40))],
        );
        let n = b.name("__data");
        let proto = b.ty("", FUNC_PROTO, 2, false, 0, &[n, void_ptr, n, void_ptr]);
        let proto_ptr = b.ty("", PTR, 0, false, proto, &[]);
        b.ty(
            "btf_trace_sched_process_exit",
            TYPEDEF,
            0,
            false,
            proto_ptr,
            &[],
        );
        b.build()
    }

    #[test]
    fn struct_offsets_from_synthetic_btf() {
        let btf = Btf::parse(synthetic_kernel()).unwrap();
        let mut l = KernelLayout::UNSET;
        fill_struct_offsets(&btf, &mut l).unwrap();
        let expected = KernelLayout {
            task_pid: 100,
            task_tgid: 104,
            task_real_parent: 200,
            task_group_leader: 208,
            task_start_boottime: 300,
            task_exit_code: 320,
            task_exit_signal: 324,
            task_ptrace: 16,
            task_signal: 400,
            task_sighand: 408,
            task_thread_pid: 416,
            task_comm: 432,
            task_children: 448,
            signal_live: 4,
            signal_subreaper_word: 64,
            signal_is_child_subreaper_bit: if cfg!(target_endian = "big") { 29 } else { 2 },
            signal_has_child_subreaper_bit: if cfg!(target_endian = "big") { 28 } else { 3 },
            sighand_action: 24,
            k_sigaction_size: 24,
            sigaction_handler: 8,
            sigaction_flags: 0,
            pid_level: 4,
            pid_numbers: 96,
            upid_size: 16,
            upid_nr: 0,
            upid_ns: 8,
            pid_ns_child_reaper: 40,
            exit_has_group_dead_arg: 0,
            ..KernelLayout::UNSET
        };
        assert_eq!(l, expected);
    }

    #[test]
    fn missing_fields_are_named() {
        // The synthetic kernel with `task_struct.comm` renamed.
        let mut blob = synthetic_kernel();
        let at = blob.windows(6).position(|w| w == b"\0comm\0").unwrap();
        blob[at + 1..at + 5].copy_from_slice(b"name");
        let btf = Btf::parse(blob).unwrap();
        let mut l = KernelLayout::UNSET;
        let err = fill_struct_offsets(&btf, &mut l).unwrap_err();
        assert!(
            matches!(
                err,
                LayoutError::MissingField {
                    structure: "task_struct",
                    field: "comm",
                    ..
                }
            ),
            "{err}"
        );
        let text = err.to_string();
        println!("{text}");
        assert!(text.contains("task_struct.comm") && text.contains("cannot identify"));

        // A kernel with none of the structures.
        let mut b = crate::kernel::btf::tests::Builder::new();
        b.int("int", 4, 32, 0);
        let btf = Btf::parse(b.build()).unwrap();
        let mut l = KernelLayout::UNSET;
        let err = fill_struct_offsets(&btf, &mut l).unwrap_err();
        println!("{err}");
        assert!(
            err.to_string()
                .contains("no struct or union named `task_struct`")
        );
    }

    fn vmlinux() -> Option<Btf> {
        if !std::path::Path::new(crate::kernel::btf::VMLINUX_BTF_PATH).exists() {
            println!(
                "skipping: {} not present (kernel without BTF)",
                crate::kernel::btf::VMLINUX_BTF_PATH
            );
            return None;
        }
        Some(Btf::from_sys_fs().unwrap())
    }

    /// Kernel-structure offsets from the real BTF (an unprivileged read).
    #[test]
    fn struct_offsets_from_real_btf() {
        let Some(btf) = vmlinux() else { return };
        let mut l = KernelLayout::UNSET;
        fill_struct_offsets(&btf, &mut l).unwrap();
        println!("{l:#?}");
        assert_eq!(l.task_tgid, l.task_pid + 4);
        assert!(l.task_start_boottime > 0);
        assert!(l.task_comm > 0 && l.task_real_parent > 0);
        assert_ne!(
            l.signal_is_child_subreaper_bit,
            l.signal_has_child_subreaper_bit
        );
        assert!(l.signal_is_child_subreaper_bit < 32 && l.signal_has_child_subreaper_bit < 32);
        assert_eq!(l.signal_subreaper_word % 4, 0);
        assert!(l.k_sigaction_size >= 24);
        assert!(l.pid_numbers > l.pid_level);
        assert!(l.pid_ns_child_reaper > 0 || l.upid_ns > 0);
        assert!(l.exit_has_group_dead_arg <= 1);
        assert_eq!(l.marker, KernelLayout::MARKER);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(l.upid_size, 16);
            assert_eq!((l.upid_nr, l.upid_ns), (0, 8));
            assert_eq!(l.sigaction_handler, 0);
            assert_eq!(l.sigaction_flags, l.sigaction_handler + 8);
        }
    }

    /// The whole layout on this machine: needs root for tracefs.
    #[test]
    fn kernel_layout_on_this_machine() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            println!("skipping: not root (tracefs formats are readable by root only)");
            return;
        }
        let Some(btf) = vmlinux() else { return };
        let tracefs = match TraceFs::find_mounted() {
            Ok(Some(t)) => t,
            other => {
                println!("skipping: no tracefs mounted ({other:?}); not mounting one in a test");
                return;
            }
        };
        if !tracefs.has_event("syscalls", "sys_enter_wait4") {
            println!("skipping: no syscall tracepoints (CONFIG_FTRACE_SYSCALLS)");
            return;
        }
        let l = kernel_layout(&btf, &tracefs).unwrap();
        println!("tracefs at {tracefs}\n{l:#?}");
        assert_eq!(l.waitid_upid, l.waitid_which + 8);
        assert!(l.wait4_upid >= 8 && l.sys_exit_ret >= 8);
        assert!(l.wait4_stat_addr > l.wait4_upid && l.wait4_options > l.wait4_stat_addr);
    }
}
