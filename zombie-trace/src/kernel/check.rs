//! `zombie-trace check`: can this host run `zombie-trace watch`?
//!
//! Each check reports what it found and, when something needs doing, the
//! concrete fix. A check is [`Status::Missing`] only when it determined that a
//! requirement is really absent; when it could not tell (no permission, file
//! not there for another reason) it is a [`Status::Warn`].
//!
//! The checks are pure functions of what was read from the system, so that
//! every branch can be tested; [`run_checks`] gathers the inputs.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::host::procfs;
use crate::kernel::btf::Btf;
use crate::kernel::tracer::Hook;

/// `CAP_SYS_ADMIN`: before Linux 5.8 the only capability that allows BPF; still
/// implies `CAP_BPF` and `CAP_PERFMON`.
pub const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_PERFMON` (Linux 5.8+): attaching to tracepoints, reading kernel memory from BPF.
pub const CAP_PERFMON: u32 = 38;
/// `CAP_BPF` (Linux 5.8+): loading BPF programs and creating maps.
pub const CAP_BPF: u32 = 39;
/// `CAP_DAC_READ_SEARCH`: read any file, search any directory. tracefs is
/// mode 0700 for its owner (uid 0): a tracer running as another uid needs
/// it to read the tracepoint formats and ids.
pub const CAP_DAC_READ_SEARCH: u32 = 2;
/// `CAP_SYS_PTRACE`: optional. The kernel hides `/proc/PID/wchan` of
/// another user's process behind a ptrace access check; without it a
/// diagnosis does not say where that process sleeps.
pub const CAP_SYS_PTRACE: u32 = 19;

/// The capabilities a live command needs to load and attach its programs.
pub const BPF_CAPS: [u32; 2] = [CAP_BPF, CAP_PERFMON];

/// The name of capability `cap`, as capabilities(7) spells it.
pub fn cap_name(cap: u32) -> &'static str {
    match cap {
        CAP_DAC_READ_SEARCH => "CAP_DAC_READ_SEARCH",
        CAP_SYS_PTRACE => "CAP_SYS_PTRACE",
        CAP_SYS_ADMIN => "CAP_SYS_ADMIN",
        CAP_PERFMON => "CAP_PERFMON",
        CAP_BPF => "CAP_BPF",
        _ => "another capability",
    }
}

/// The capabilities of `wanted` that `caps` lacks, by name (CAP_SYS_ADMIN
/// stands in for CAP_BPF and CAP_PERFMON, as the kernel lets it).
pub fn missing_caps(caps: u64, wanted: &[u32]) -> Vec<&'static str> {
    wanted
        .iter()
        .filter(|&&cap| {
            let admin_covers = matches!(cap, CAP_BPF | CAP_PERFMON) && has_cap(caps, CAP_SYS_ADMIN);
            !has_cap(caps, cap) && !admin_covers
        })
        .map(|&cap| cap_name(cap))
        .collect()
}

/// This process's effective capabilities (`CapEff` of /proc/self/status),
/// `None` when they cannot be read.
pub fn effective_caps() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(parse_cap_eff)
}

/// What to add to a refusal's fix: which of `wanted` this process lacks,
/// or, when it has them all, that something else refuses (a seccomp
/// filter, a security module).
pub fn missing_caps_note(wanted: &[u32]) -> String {
    missing_caps_note_for(effective_caps(), wanted)
}

/// [`missing_caps_note`] for effective capabilities `caps`.
pub fn missing_caps_note_for(caps: Option<u64>, wanted: &[u32]) -> String {
    match caps {
        Some(caps) => match missing_caps(caps, wanted).as_slice() {
            [] => format!(
                " (this process has {}: a seccomp filter or a security module refuses it)",
                wanted
                    .iter()
                    .map(|&cap| cap_name(cap))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            missing => format!(" (missing: {})", missing.join(", ")),
        },
        None => " (this process's capabilities could not be read)".to_owned(),
    }
}

/// `EPERM` for 1, ...: the name an errno has in the kernel's headers, for
/// the refusals zombie-trace explains.
pub fn errno_name(code: Option<i32>) -> String {
    match code {
        Some(libc::EPERM) => "EPERM".to_owned(),
        Some(libc::EACCES) => "EACCES".to_owned(),
        Some(libc::EBUSY) => "EBUSY".to_owned(),
        Some(libc::ENODEV) => "ENODEV".to_owned(),
        Some(code) => format!("errno {code}"),
        None => "no errno".to_owned(),
    }
}

/// The oldest kernel with the BPF ring buffer (`BPF_MAP_TYPE_RINGBUF`).
pub const MIN_KERNEL: (u32, u32) = (5, 8);

// Where zombie-trace mounts tracefs when it is not mounted, and the kernel
// BTF that gives the layout of kernel structures.
use crate::kernel::btf::VMLINUX_BTF_PATH as VMLINUX_BTF;
use crate::kernel::tracefs::TRACEFS_PATH as TRACEFS_DEFAULT;

/// The syscall tracepoints `zombie-trace watch` may attach to (the entry
/// ones only where exit programs cannot read the saved registers).
fn syscall_tracepoints() -> impl Iterator<Item = &'static str> {
    crate::kernel::tracer::PROGRAMS
        .into_iter()
        .filter(|(_, hook)| matches!(hook, Hook::Syscall | Hook::SyscallEntry))
        .map(|(name, _)| name)
}

/// The kernel that added `IORING_OP_WAITID` (a reap with no wait syscall).
const IO_URING_WAITID_KERNEL: (u32, u32) = (6, 7);
/// The kernel that added `bpf_task_pt_regs` (exit programs read their
/// call's arguments from the saved registers).
const TASK_PT_REGS_KERNEL: (u32, u32) = (5, 15);

/// The largest `kernel.pid_max` on 64-bit kernels (`PID_MAX_LIMIT`).
const PID_MAX_LIMIT: u32 = 4_194_304;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Present, or informational.
    Ok,
    /// Could not be determined, or works but deserves attention.
    Warn,
    /// Determined to be absent: `zombie-trace watch` will not work until fixed.
    Missing,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Missing => "MISSING",
        }
    }
}

/// One line of `zombie-trace check` (and one object of `--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short, stable identifier (`privileges`, `kernel-version`, ...).
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, when something needs doing.
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            name,
            status,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Runs every check against this host.
pub fn run_checks() -> Vec<Check> {
    let privileges = Privileges::current();
    let release = crate::host::facts::kernel_release();
    let mounts = std::fs::read_to_string("/proc/mounts").ok();
    let filesystems = std::fs::read_to_string("/proc/filesystems").ok();
    let tracefs = mounts.as_deref().and_then(preferred_tracefs_mount);

    let tracepoints = match &tracefs {
        Some(mount) => TracepointScan::look(&mount.join("events/syscalls")),
        None => TracepointScan::NotMounted,
    };

    let pids = PidUsage::current();
    let btf = Btf::from_sys_fs().ok();
    let version = release.as_deref().and_then(parse_kernel_release);

    vec![
        privileges_check(&privileges, TracefsAccess::probe(tracefs.as_deref())),
        kernel_check(release.as_deref()),
        btf_check(Path::new(VMLINUX_BTF)),
        tracefs_check(
            tracefs.as_deref(),
            mounts.is_some(),
            filesystems.as_deref(),
            privileges.can_mount(),
        ),
        tracepoints_check(&tracepoints, privileges.can_mount()),
        reap_paths_check(
            version,
            btf.as_ref().map(has_free_tracepoint),
            btf.as_ref().map(has_io_uring_waitid),
        ),
        scheduler_programs_check(version, btf.as_ref().map(has_btf_tracepoints)),
        exit_tracepoint_check(
            btf.as_ref()
                .and_then(|btf| crate::kernel::layout::exit_has_group_dead_arg(btf).ok()),
        ),
        syscall_arguments_check(version, btf.as_ref().map(has_syscall_arg_registers)),
        process_table_check(btf.as_ref().map(crate::kernel::layout::has_task_iterator)),
        unprivileged_bpf_check(
            read_sysctl("/proc/sys/kernel/unprivileged_bpf_disabled"),
            privileges.can_load_bpf(),
        ),
        pids_check(&pids),
        bpf_stats_check(read_sysctl("/proc/sys/kernel/bpf_stats_enabled")),
    ]
}

/// Renders checks as aligned text, each fix on its own line, and a verdict.
pub fn render_text(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for check in checks {
        let _ = writeln!(
            out,
            "{:<7}  {:<width$}  {}",
            check.status.label(),
            check.name,
            check.detail,
        );
        if let Some(fix) = &check.fix {
            let _ = writeln!(out, "{:<7}  {:<width$}  fix: {fix}", "", "");
        }
    }
    let missing = count(checks, Status::Missing);
    let warnings = count(checks, Status::Warn);
    let verdict = match (missing, warnings) {
        (0, 0) => "everything `zombie-trace watch` needs is present".to_owned(),
        (0, w) => format!(
            "nothing is missing, but see the {w} warning{} above",
            plural(w)
        ),
        (m, _) => format!(
            "{m} requirement{} missing: `zombie-trace watch` will not work until fixed \
             (`zombie-trace snapshot` reads /proc only and works anyway)",
            plural(m)
        ),
    };
    let _ = writeln!(out, "\n{verdict}");
    out
}

/// The most severe status among `checks` (`Ok` for none): for the exit code.
pub fn worst_status(checks: &[Check]) -> Status {
    checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok)
}

fn count(checks: &[Check], status: Status) -> usize {
    checks.iter().filter(|c| c.status == status).count()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// One clear line when this process cannot load zombie-trace's eBPF programs,
/// for `zombie-trace watch` to print before trying; `None` when it can (as far
/// as can be told without trying).
pub fn privilege_problem() -> Option<String> {
    privilege_problem_of("watch")
}

/// [`privilege_problem`] for the live command `command` (`watch`, `run`, ...),
/// which the message names; also refuses a PID namespace other than the
/// host's.
pub fn privilege_problem_of(command: &str) -> Option<String> {
    privilege_problem_for(&Privileges::current(), command)
        .or_else(|| pid_namespace_problem(command))
}

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`), the same
/// on every kernel.
const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// The kernel reports the host's PIDs; /proc in another PID namespace shows
/// that namespace's: the two would not match, and every count would be
/// wrong. So live tracing runs in the host's PID namespace only.
fn pid_namespace_problem(command: &str) -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let inode: u64 = link
        .to_str()?
        .strip_prefix("pid:[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    (inode != PROC_PID_INIT_INO).then(|| {
        format!(
            "zombie-trace {command} must run in the host's PID namespace (the kernel reports host PIDs, \
             this /proc shows a container's): run it on the host, or give its container the host's \
             PID namespace (`docker run --pid=host`, Kubernetes `hostPID: true`); the commands it \
             traces may run in any namespace."
        )
    })
}

fn privilege_problem_for(p: &Privileges, command: &str) -> Option<String> {
    if p.in_child_user_namespace {
        return Some(format!(
            "zombie-trace {command} cannot load eBPF programs inside a user namespace \
             (rootless container): run `sudo zombie-trace {command}` on the host, or use \
             `zombie-trace snapshot`, which reads /proc only and needs no privileges."
        ));
    }
    let missing = match p.cap_eff {
        Some(caps) if can_load_bpf(caps) => return None,
        Some(caps) => missing_caps(caps, &BPF_CAPS).join(", "),
        None if p.euid == 0 => return None,
        None => "this process's capabilities could not be read".to_owned(),
    };
    Some(format!(
        "zombie-trace {command} needs root, or CAP_BPF and CAP_PERFMON, to load its eBPF \
         programs (missing: {missing}): run `sudo zombie-trace {command}` or grant them (the \
         README's Privileges section lists the set), or use `zombie-trace snapshot`, which \
         reads /proc only and needs no privileges."
    ))
}

/// `kernel.perf_event_paranoid`. Above 2 the kernel itself adds no
/// restriction, but Debian's and Ubuntu's kernels then open perf events
/// (which attach the syscall tracepoints) only for CAP_SYS_ADMIN.
pub fn perf_event_paranoid() -> Option<i64> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Capabilities a live command needs only to attach: CAP_SYS_ADMIN (perf
/// events on kernels with perf_event_paranoid above 2) and
/// CAP_DAC_READ_SEARCH (tracefs, which only its owner may read).
const ATTACH_ONLY_CAPS: [u32; 2] = [CAP_SYS_ADMIN, CAP_DAC_READ_SEARCH];

/// Gives up, once the programs are attached, what only attaching needed
/// ([`ATTACH_ONLY_CAPS`]), and every ambient capability (which the commands
/// `run` starts would inherit), in a process given a chosen set (a non-root
/// user, the DaemonSet's uid 0 with two or three capabilities). Full root,
/// holding every capability (`sudo`), keeps them: an exec gives them back
/// anyway. Returns the capabilities given up. Capabilities are per thread:
/// called before the session starts any other thread.
pub fn drop_attach_only_capabilities() -> Result<Vec<&'static str>, io::Error> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 && holds_every_capability() {
        return Ok(Vec::new());
    }
    /// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
    const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two Data structs for version 3, which `data` holds.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut dropped = Vec::new();
    for cap in ATTACH_ONLY_CAPS {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        if data[word].permitted & bit != 0 {
            dropped.push(cap_name(cap));
        }
        data[word].effective &= !bit;
        data[word].permitted &= !bit;
        data[word].inheritable &= !bit;
    }
    // SAFETY: clearing the ambient set takes no pointers.
    let cleared = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if cleared != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: capset reads the header and two Data structs.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(dropped)
}

/// Whether this process's effective set holds every capability the kernel
/// knows (`kernel.cap_last_cap`).
fn holds_every_capability() -> bool {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    match (last, effective_caps()) {
        (Some(last), Some(caps)) if last < 64 => {
            let all = u64::MAX >> (63 - last);
            caps & all == all
        }
        _ => false,
    }
}

/// The `CapEff` (effective capabilities) mask from `/proc/<pid>/status` content.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Whether capability number `cap` is in mask `caps`.
pub fn has_cap(caps: u64, cap: u32) -> bool {
    cap < 64 && caps & (1u64 << cap) != 0
}

/// Whether capabilities `caps` allow loading and attaching tracing programs:
/// `CAP_BPF` and `CAP_PERFMON`, each of which `CAP_SYS_ADMIN` implies.
pub fn can_load_bpf(caps: u64) -> bool {
    let admin = has_cap(caps, CAP_SYS_ADMIN);
    admin || (has_cap(caps, CAP_BPF) && has_cap(caps, CAP_PERFMON))
}

/// What this process may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Privileges {
    euid: u32,
    /// `None` when `/proc/self/status` could not be read.
    cap_eff: Option<u64>,
    /// Definitely in a user namespace other than the initial one, whose
    /// capabilities do not count for BPF.
    in_child_user_namespace: bool,
    /// `kernel.perf_event_paranoid`, when readable.
    perf_event_paranoid: Option<i64>,
}

impl Privileges {
    fn current() -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        let cap_eff = effective_caps();
        let in_child_user_namespace = std::fs::read_to_string("/proc/self/uid_map")
            .map(|map| !is_identity_uid_map(&map))
            .unwrap_or(false);
        Self {
            euid,
            cap_eff,
            in_child_user_namespace,
            perf_event_paranoid: perf_event_paranoid(),
        }
    }

    fn can_load_bpf(&self) -> bool {
        privilege_problem_for(self, "watch").is_none()
    }

    /// Mounting tracefs needs CAP_SYS_ADMIN.
    fn can_mount(&self) -> bool {
        !self.in_child_user_namespace
            && match self.cap_eff {
                Some(caps) => has_cap(caps, CAP_SYS_ADMIN),
                None => self.euid == 0,
            }
    }
}

/// The initial user namespace maps all 2^32 - 1 IDs onto themselves; any other
/// map proves a child namespace (the converse does not hold, so `true` only
/// means "could be the initial namespace").
fn is_identity_uid_map(map: &str) -> bool {
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| !f.is_empty())
        .collect();
    matches!(lines.as_slice(), [only] if only.as_slice() == ["0", "0", "4294967295"])
}

/// The capabilities zombie-trace uses that are in `caps`, and how many
/// others there are.
fn cap_list(caps: u64) -> String {
    const KNOWN: [u32; 5] = [
        CAP_BPF,
        CAP_PERFMON,
        CAP_DAC_READ_SEARCH,
        CAP_SYS_PTRACE,
        CAP_SYS_ADMIN,
    ];
    let mut names: Vec<String> = KNOWN
        .iter()
        .filter(|&&cap| has_cap(caps, cap))
        .map(|&cap| cap_name(cap).to_owned())
        .collect();
    let others = (0..64)
        .filter(|cap| has_cap(caps, *cap) && !KNOWN.contains(cap))
        .count();
    if others > 0 {
        names.push(format!("{others} other{}", plural(others)));
    }
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Whether this process can read the tracepoint formats in tracefs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TracefsAccess {
    /// Readable; `by_capability`: only thanks to a capability (the mode
    /// bits do not let this uid or its groups in).
    Readable { by_capability: bool },
    /// The read was refused (EACCES/EPERM).
    Denied,
    /// Not mounted, or no such tracepoint: other checks say which.
    Unknown,
}

impl TracefsAccess {
    /// Opens one syscall tracepoint format below the tracefs mounted at `mount`.
    fn probe(mount: Option<&Path>) -> Self {
        let Some((mount, event)) = mount.zip(syscall_tracepoints().next()) else {
            return Self::Unknown;
        };
        let format = mount.join("events/syscalls").join(event).join("format");
        match std::fs::File::open(&format) {
            Ok(_) => Self::Readable {
                by_capability: !(mode_lets_in(mount, 0o1) && mode_lets_in(&format, 0o4)),
            },
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Self::Denied,
            Err(_) => Self::Unknown,
        }
    }
}

/// Whether the mode bits of `path` grant `want` (0o4 read, 0o1 search) to
/// this process's effective uid or one of its groups, without capabilities.
fn mode_lets_in(path: &Path, want: u32) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mode = meta.mode();
    if meta.uid() == uid {
        return (mode >> 6) & want == want;
    }
    let mut groups = vec![0 as libc::gid_t; 256];
    // SAFETY: the buffer holds as many gids as the length passed.
    let count = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    groups.truncate(usize::try_from(count).unwrap_or(0));
    if meta.gid() == gid || groups.contains(&meta.gid()) {
        return (mode >> 3) & want == want;
    }
    mode & want == want
}

/// The capabilities this process has against those `watch` needs: CAP_BPF
/// and CAP_PERFMON always, CAP_DAC_READ_SEARCH where tracefs refuses this
/// uid; CAP_SYS_PTRACE is optional (wait channels in diagnoses).
fn privileges_check(p: &Privileges, tracefs: TracefsAccess) -> Check {
    const NAME: &str = "privileges";
    let who = if p.euid == 0 {
        "running as root (uid 0)".to_owned()
    } else {
        format!("running as uid {}", p.euid)
    };
    if p.in_child_user_namespace {
        return Check::new(
            NAME,
            Status::Missing,
            format!(
                "{who} inside a user namespace (rootless container): capabilities \
                 there do not allow loading BPF programs (zombie-trace uses no BPF token)"
            ),
        )
        .fix("run zombie-trace on the host (or in a privileged container) with sudo");
    }
    let Some(caps) = p.cap_eff else {
        return Check::new(
            NAME,
            if p.euid == 0 {
                Status::Warn
            } else {
                Status::Missing
            },
            format!("{who}; could not read CapEff from /proc/self/status"),
        )
        .fix("run with sudo: `sudo zombie-trace watch`");
    };
    let mut needed: Vec<u32> = BPF_CAPS.to_vec();
    let mut missing = missing_caps(caps, &BPF_CAPS);
    let mut refused_anyway = None;
    if matches!(
        tracefs,
        TracefsAccess::Denied
            | TracefsAccess::Readable {
                by_capability: true
            }
    ) {
        needed.push(CAP_DAC_READ_SEARCH);
        if !has_cap(caps, CAP_DAC_READ_SEARCH) {
            missing.push(cap_name(CAP_DAC_READ_SEARCH));
        } else if tracefs == TracefsAccess::Denied {
            refused_anyway = Some(
                "tracefs refused to read a tracepoint format although this process has \
                 CAP_DAC_READ_SEARCH (a security module?)",
            );
        }
    }
    let needed_names: Vec<&str> = needed.iter().map(|&cap| cap_name(cap)).collect();
    let tracefs_note = match tracefs {
        TracefsAccess::Denied
        | TracefsAccess::Readable {
            by_capability: true,
        } => " (tracefs is readable by its owner only)",
        TracefsAccess::Readable {
            by_capability: false,
        } => " (tracefs is readable by this uid)",
        TracefsAccess::Unknown => "",
    };
    let ptrace_note = if has_cap(caps, CAP_SYS_PTRACE) {
        "optional CAP_SYS_PTRACE present"
    } else {
        "optional CAP_SYS_PTRACE absent: diagnoses omit where other users' processes sleep \
         (/proc/PID/wchan)"
    };
    let detail = format!(
        "{who}; effective: {}; needed: {}{tracefs_note}; {ptrace_note}",
        cap_list(caps),
        needed_names.join(", "),
    );
    if let Some(problem) = refused_anyway {
        return Check::new(NAME, Status::Missing, format!("{detail}; {problem}"))
            .fix("see the security module's log (audit, AppArmor, SELinux) for the denial");
    }
    let paranoid = p
        .perf_event_paranoid
        .filter(|&level| level > 2 && !has_cap(caps, CAP_SYS_ADMIN));
    if let (true, Some(level)) = (missing.is_empty(), paranoid) {
        return Check::new(
            NAME,
            Status::Warn,
            format!(
                "{detail}; kernel.perf_event_paranoid is {level}: Debian's and Ubuntu's kernels \
                 then open perf events (the syscall tracepoints) only for CAP_SYS_ADMIN, which \
                 this process lacks (upstream kernels treat {level} as 2)"
            ),
        )
        .fix(
            "grant CAP_SYS_ADMIN as well (zombie-trace gives it up once its programs are \
             attached), or `sysctl kernel.perf_event_paranoid=2`",
        );
    }
    if missing.is_empty() {
        return Check::new(NAME, Status::Ok, detail);
    }
    Check::new(
        NAME,
        Status::Missing,
        format!("{detail}; missing: {}", missing.join(", ")),
    )
    .fix(format!(
        "run with sudo (`sudo zombie-trace watch`), or grant {} (the README's Privileges \
         section: `setpriv`, systemd's AmbientCapabilities=)",
        needed_names.join(", ")
    ))
}

/// The running kernel's release (`uname -r`).
/// `(major, minor, patch)` from a release such as `6.8.0-45-generic` or `5.10`.
pub fn parse_kernel_release(release: &str) -> Option<(u32, u32, u32)> {
    let mut numbers = release.split(|c: char| !c.is_ascii_digit());
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    // The patch level may be absent ("5.10-rc1" splits into "5", "10", "", "rc1"...).
    let patch = numbers.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

fn kernel_check(release: Option<&str>) -> Check {
    const NAME: &str = "kernel-version";
    let Some(release) = release else {
        return Check::new(
            NAME,
            Status::Warn,
            "uname(2) failed: kernel version unknown",
        );
    };
    match parse_kernel_release(release) {
        Some((major, minor, _)) if (major, minor) >= MIN_KERNEL => Check::new(
            NAME,
            Status::Ok,
            format!(
                "Linux {release} (>= {}.{}: BPF ring buffer available)",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
        ),
        Some(_) => Check::new(
            NAME,
            Status::Missing,
            format!(
                "Linux {release} is older than {}.{}, which introduced the BPF ring buffer",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
        )
        .fix(format!(
            "upgrade to Linux {}.{} or newer (use `zombie-trace snapshot` meanwhile)",
            MIN_KERNEL.0, MIN_KERNEL.1
        )),
        None => Check::new(
            NAME,
            Status::Warn,
            format!("cannot parse kernel release {release:?}"),
        ),
    }
}

fn btf_check(path: &Path) -> Check {
    const NAME: &str = "btf";
    const FIX: &str = "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (the default of most \
                       distributions' kernels since 2020)";
    match std::fs::metadata(path) {
        Ok(meta) => {
            let readable = std::fs::File::open(path).is_ok();
            Check::new(
                NAME,
                Status::Ok,
                format!(
                    "{} present ({} KiB){}",
                    path.display(),
                    meta.len() / 1024,
                    if readable {
                        ""
                    } else {
                        "; not readable by this user, root can read it"
                    }
                ),
            )
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Missing only if sysfs is there to have it.
            let sysfs_up = path
                .parent()
                .and_then(Path::parent)
                .is_some_and(|kernel| kernel.is_dir());
            if sysfs_up {
                Check::new(
                    NAME,
                    Status::Missing,
                    format!(
                        "{} does not exist: this kernel exposes no BTF",
                        path.display()
                    ),
                )
                .fix(FIX)
            } else {
                Check::new(
                    NAME,
                    Status::Warn,
                    format!(
                        "{} not found, and sysfs does not seem mounted at /sys",
                        path.display()
                    ),
                )
                .fix("mount sysfs: `sudo mount -t sysfs sysfs /sys`")
            }
        }
        Err(e) => Check::new(
            NAME,
            Status::Warn,
            format!("cannot check {}: {e}", path.display()),
        )
        .fix("run as root: `sudo zombie-trace check`"),
    }
}

/// The tracefs mount to use, by tracefs.rs's preference (`/sys/kernel/tracing` first).
fn preferred_tracefs_mount(mounts: &str) -> Option<PathBuf> {
    crate::kernel::tracefs::tracefs_mount_points(&crate::host::mounts::parse_mounts(mounts))
        .into_iter()
        .next()
}

fn tracefs_check(
    mounted_at: Option<&Path>,
    mounts_readable: bool,
    filesystems: Option<&str>,
    can_mount: bool,
) -> Check {
    const NAME: &str = "tracefs";
    let mount_cmd = format!("sudo mount -t tracefs tracefs {TRACEFS_DEFAULT}");
    if let Some(at) = mounted_at {
        return Check::new(NAME, Status::Ok, format!("mounted at {}", at.display()));
    }
    if !mounts_readable {
        return Check::new(
            NAME,
            Status::Warn,
            "cannot read /proc/mounts to tell whether tracefs is mounted",
        );
    }
    let supported = filesystems.map(|fs| {
        fs.lines()
            .any(|line| line.split_whitespace().last() == Some("tracefs"))
    });
    match (supported, can_mount) {
        (Some(false), _) => Check::new(
            NAME,
            Status::Missing,
            "not mounted, and the kernel does not support it (no tracefs in /proc/filesystems)",
        )
        .fix("use a kernel built with CONFIG_FTRACE=y and CONFIG_FTRACE_SYSCALLS=y"),
        (_, true) => Check::new(
            NAME,
            Status::Ok,
            format!(
                "not mounted; `zombie-trace watch` mounts it at {TRACEFS_DEFAULT} automatically"
            ),
        ),
        (_, false) => Check::new(
            NAME,
            Status::Warn,
            "not mounted, and this user cannot mount it (`sudo zombie-trace watch` would)",
        )
        .fix(mount_cmd),
    }
}

/// What the `events/syscalls` directory of the tracefs mount holds.
#[derive(Debug)]
enum TracepointScan {
    /// tracefs is not mounted: nothing to look at.
    NotMounted,
    /// The directory was listed: which of the syscall tracepoints exist.
    Listed {
        dir: PathBuf,
        found: Vec<(&'static str, bool)>,
    },
    /// The directory could not be read.
    Failed { dir: PathBuf, error: io::Error },
}

impl TracepointScan {
    fn look(dir: &Path) -> Self {
        match std::fs::metadata(dir) {
            Ok(_) => Self::Listed {
                dir: dir.to_owned(),
                found: syscall_tracepoints()
                    .map(|tp| (tp, dir.join(tp).is_dir()))
                    .collect(),
            },
            Err(error) => Self::Failed {
                dir: dir.to_owned(),
                error,
            },
        }
    }
}

/// tracefs not mounted: the tracepoints cannot be looked for, which is not
/// the same as missing.
fn tracepoints_unmounted(can_mount: bool) -> Check {
    const NAME: &str = "syscall-tracepoints";
    let mount = format!("sudo mount -t tracefs tracefs {TRACEFS_DEFAULT}");
    if can_mount {
        Check::new(
            NAME,
            Status::Warn,
            "cannot look for the wait4/waitid tracepoints before tracefs is mounted \
             (`zombie-trace watch` mounts it)",
        )
        .fix(format!(
            "to check now: `{mount}`, then rerun `zombie-trace check`"
        ))
    } else {
        Check::new(
            NAME,
            Status::Warn,
            "cannot look for the wait4/waitid tracepoints: tracefs is not mounted",
        )
        .fix(format!("`{mount}`, then rerun `zombie-trace check`"))
    }
}

/// Whether the kernel has the `sched_process_free` raw tracepoint.
fn has_free_tracepoint(btf: &Btf) -> bool {
    btf.func_proto_param_count_of_typedef("btf_trace_sched_process_free")
        .is_ok()
}

/// Whether the kernel has io_uring's `IORING_OP_WAITID` (a reap with no wait
/// syscall): `None` when io_uring is not built in at all.
fn has_io_uring_waitid(btf: &Btf) -> Option<bool> {
    btf.enum_has_value("io_uring_op", "IORING_OP_WAITID").ok()
}

/// Whether BTF describes every scheduler tracepoint the tracer uses (what
/// a BTF tracepoint program attaches to).
fn has_btf_tracepoints(btf: &Btf) -> bool {
    crate::kernel::tracer::PROGRAMS
        .iter()
        .filter(|(_, hook)| matches!(hook, Hook::Sched { .. }))
        .all(|(event, _)| {
            btf.func_proto_param_count_of_typedef(&format!("btf_trace_{event}"))
                .is_ok()
        })
}

/// The kernel that added BTF tracepoints (`tp_btf`).
const BTF_TRACEPOINT_KERNEL: (u32, u32) = (5, 5);

/// Which scheduler programs the tracer loads: BTF tracepoints (plain loads
/// the verifier checks against the kernel's types) or raw tracepoints (a
/// helper call per read).
fn scheduler_programs_check(version: Option<(u32, u32, u32)>, typed: Option<bool>) -> Check {
    const NAME: &str = "scheduler-programs";
    let new_enough = version
        .map(|(major, minor, _)| (major, minor) >= BTF_TRACEPOINT_KERNEL)
        .unwrap_or(false);
    match typed {
        Some(true) if new_enough => Check::new(
            NAME,
            Status::Ok,
            "fork, exit, exec and free are BTF tracepoints (tp_btf): kernel fields are read \
             with plain loads the verifier checks, no helper call per field",
        ),
        Some(_) => Check::new(
            NAME,
            Status::Ok,
            format!(
                "fallback: raw tracepoints with a helper call per field read ({})",
                if new_enough {
                    "BTF lacks a btf_trace_sched_process_* type"
                } else {
                    "BTF tracepoints need Linux 5.5"
                }
            ),
        ),
        None => Check::new(
            NAME,
            Status::Warn,
            "cannot read kernel BTF: the program kind is decided at start",
        ),
    }
}

/// The kernel that added `group_dead` to `sched_process_exit`.
const GROUP_DEAD_KERNEL: (u32, u32) = (6, 16);

/// How the exit program tells the end of a process from the end of one of
/// its threads: the tracepoint's `group_dead` argument, or the thread
/// group's live count (both exact; this says which this kernel uses).
fn exit_tracepoint_check(group_dead_arg: Option<bool>) -> Check {
    const NAME: &str = "exit-tracepoint";
    let (major, minor) = GROUP_DEAD_KERNEL;
    match group_dead_arg {
        Some(true) => Check::new(
            NAME,
            Status::Ok,
            format!(
                "sched_process_exit passes group_dead (Linux {major}.{minor}+): the kernel says \
                 which thread's exit ends its process"
            ),
        ),
        Some(false) => Check::new(
            NAME,
            Status::Ok,
            format!(
                "sched_process_exit has no group_dead argument (before Linux {major}.{minor}): \
                 the exit program tells a process's last thread by signal_struct.live"
            ),
        ),
        None => Check::new(
            NAME,
            Status::Warn,
            "cannot read the sched_process_exit prototype from kernel BTF: decided at start",
        ),
    }
}

/// How the ledger's seed and resyncs read the whole process table: the
/// kernel's task iterator (one file for every process) or /proc (a file
/// per process: ~0.15 s more at start with 28,000 zombies). Both give the
/// same fields; this says which the tracer will use.
fn process_table_check(task_iterator: Option<bool>) -> Check {
    const NAME: &str = "process-table";
    match task_iterator {
        Some(true) => Check::new(
            NAME,
            Status::Ok,
            "read by a BPF task iterator (iter/task): every process in one file, no /proc \
             read per process",
        ),
        Some(false) => Check::new(
            NAME,
            Status::Ok,
            "fallback: read from /proc, a file per process (BTF has no bpf_iter_task, which \
             needs Linux 5.8, or lacks a task field the iterator reads)",
        ),
        None => Check::new(
            NAME,
            Status::Warn,
            "cannot read kernel BTF: decided at start (the task iterator, else /proc)",
        ),
    }
}

/// Whether BTF gives the saved registers that hold syscall arguments 1-4.
fn has_syscall_arg_registers(btf: &Btf) -> bool {
    cfg!(target_arch = "x86_64")
        && ["di", "si", "dx", "r10"]
            .iter()
            .all(|reg| btf.member_offset("pt_regs", reg).is_ok())
}

/// How each way a zombie can be released is seen: wait calls by their
/// syscall tracepoints (exact latency), every other path when the kernel
/// frees the process.
/// `waitid_op`: from BTF, whether io_uring has `IORING_OP_WAITID` (`Some(None)`:
/// BTF has no io_uring at all); the version decides only without BTF.
fn reap_paths_check(
    version: Option<(u32, u32, u32)>,
    free_tracepoint: Option<bool>,
    waitid_op: Option<Option<bool>>,
) -> Check {
    const NAME: &str = "reap-paths";
    let (major, minor) = IO_URING_WAITID_KERNEL;
    let by_version = version.map(|(a, b, _)| (a, b) >= IO_URING_WAITID_KERNEL);
    let io_uring = match waitid_op {
        Some(Some(true)) => "io_uring IORING_OP_WAITID (present here)".to_owned(),
        Some(Some(false)) => {
            format!("io_uring IORING_OP_WAITID (not in this kernel: added in {major}.{minor})")
        }
        Some(None) => "io_uring (not built into this kernel)".to_owned(),
        None => match by_version {
            Some(true) => format!("io_uring IORING_OP_WAITID (Linux {major}.{minor}+)"),
            Some(false) => {
                format!("io_uring IORING_OP_WAITID (not in this kernel: added in {major}.{minor})")
            }
            None => "io_uring IORING_OP_WAITID".to_owned(),
        },
    };
    let traced = "wait4/waitid: traced at the syscall (exact reap latency); kernel \
                auto-reap, adopters and PID-namespace teardown: from the exit";
    match free_tracepoint {
        Some(true) => Check::new(
            NAME,
            Status::Ok,
            format!(
                "{traced}; {io_uring}, 32-bit wait calls and any other release: seen when \
                the kernel frees the process (sched_process_free; category `freed`, latency \
                an upper bound by one RCU grace period)"
            ),
        ),
        Some(false) => Check::new(
            NAME,
            Status::Missing,
            "the kernel has no sched_process_free tracepoint: releases the wait \
                tracepoints do not see would stay in the ledger",
        )
        .fix("use a kernel with BTF that has the sched_process_free tracepoint (all since 2.6)"),
        None => Check::new(
            NAME,
            Status::Warn,
            format!("{traced}; cannot read kernel BTF to look for sched_process_free"),
        ),
    }
}

/// Whether the syscall exit programs read their arguments from the saved
/// registers, or need entry programs (which every syscall on the host
/// passes through).
fn syscall_arguments_check(version: Option<(u32, u32, u32)>, registers: Option<bool>) -> Check {
    const NAME: &str = "syscall-arguments";
    let new_enough = version
        .map(|(major, minor, _)| (major, minor) >= TASK_PT_REGS_KERNEL)
        .unwrap_or(false);
    match registers {
        Some(true) if new_enough => Check::new(
            NAME,
            Status::Ok,
            "the exit programs read wait/sigaction/prctl arguments from the saved registers \
                (bpf_task_pt_regs): no syscall entry program is attached",
        ),
        Some(_) => Check::new(
            NAME,
            Status::Ok,
            format!(
                "fallback: entry programs save wait/sigaction/prctl arguments ({}); every \
                syscall on the host passes their tracepoint",
                if new_enough {
                    "BTF has no x86-64 syscall argument registers"
                } else {
                    "bpf_task_pt_regs needs Linux 5.15"
                }
            ),
        ),
        None => Check::new(
            NAME,
            Status::Warn,
            "cannot read kernel BTF: whether entry programs are needed is decided at start",
        ),
    }
}

fn tracepoints_check(scan: &TracepointScan, can_mount: bool) -> Check {
    const NAME: &str = "syscall-tracepoints";
    const FIX: &str = "use a kernel built with CONFIG_FTRACE_SYSCALLS=y";
    let (dir, found) = match scan {
        TracepointScan::NotMounted => return tracepoints_unmounted(can_mount),
        TracepointScan::Listed { dir, found } => (dir, Ok(found)),
        TracepointScan::Failed { dir, error } => (dir, Err(error)),
    };
    match found {
        Ok(found) => {
            let missing: Vec<&str> = found
                .iter()
                .filter(|(_, present)| !present)
                .map(|(name, _)| *name)
                .collect();
            if missing.is_empty() {
                Check::new(
                    NAME,
                    Status::Ok,
                    format!(
                        "{} present in {}",
                        found.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
                        dir.display()
                    ),
                )
            } else {
                Check::new(
                    NAME,
                    Status::Missing,
                    format!("{} not found in {}", missing.join(", "), dir.display()),
                )
                .fix(FIX)
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Check::new(
            NAME,
            Status::Missing,
            format!(
                "{} does not exist: the kernel has no syscall tracepoints",
                dir.display()
            ),
        )
        .fix(FIX),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Check::new(
            NAME,
            Status::Warn,
            format!(
                "cannot read {}: {e} (tracefs is readable by its owner only)",
                dir.display()
            ),
        )
        .fix("run as root (`sudo zombie-trace check`), or grant CAP_DAC_READ_SEARCH"),
        Err(e) => Check::new(
            NAME,
            Status::Warn,
            format!("cannot read {}: {e}", dir.display()),
        )
        .fix("run as root: `sudo zombie-trace check`"),
    }
}

/// A numeric sysctl: `None` if the file does not exist, `Some(Err)` if unreadable.
fn read_sysctl(path: &'static str) -> Option<(&'static str, Result<i64, String>)> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some((
            path,
            text.trim()
                .parse()
                .map_err(|_| format!("unexpected content {:?}", text.trim())),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => Some((path, Err(e.to_string()))),
    }
}

fn unprivileged_bpf_check(
    value: Option<(&'static str, Result<i64, String>)>,
    privileged: bool,
) -> Check {
    const NAME: &str = "unprivileged-bpf";
    let Some((path, value)) = value else {
        return Check::new(
            NAME,
            Status::Warn,
            "/proc/sys/kernel/unprivileged_bpf_disabled does not exist: the kernel may \
             lack CONFIG_BPF_SYSCALL",
        );
    };
    let value = match value {
        Ok(v) => v,
        Err(e) => return Check::new(NAME, Status::Warn, format!("cannot read {path}: {e}")),
    };
    let meaning = match value {
        0 => "unprivileged users may load some BPF programs",
        1 => "unprivileged BPF disabled until reboot",
        2 => "unprivileged BPF disabled (an administrator can re-enable it)",
        _ => "unknown setting",
    };
    let detail = format!("kernel.unprivileged_bpf_disabled = {value}: {meaning}");
    if privileged {
        Check::new(
            NAME,
            Status::Ok,
            format!("{detail}; no effect on zombie-trace, which runs privileged"),
        )
    } else if value == 0 {
        Check::new(
            NAME,
            Status::Ok,
            format!("{detail}, but not tracing programs: those need CAP_BPF and CAP_PERFMON"),
        )
    } else {
        Check::new(NAME, Status::Warn, detail).fix("run with sudo: `sudo zombie-trace watch`")
    }
}

/// PID and task usage, for the `pids` check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PidUsage {
    pid_max: Result<u32, String>,
    threads_max: Result<u32, String>,
    scan: Result<(procfs::ScanSummary, u64), String>,
}

impl PidUsage {
    fn current() -> Self {
        let mut zombies = 0u64;
        let scan = procfs::scan_processes(|p| zombies += u64::from(p.is_zombie()))
            .map(|summary| (summary, zombies))
            .map_err(|e| e.to_string());
        Self {
            pid_max: procfs::pid_max().map_err(|e| e.to_string()),
            threads_max: procfs::threads_max().map_err(|e| e.to_string()),
            scan,
        }
    }
}

fn percent(part: u64, whole: u32) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    // Precision loss is irrelevant for a percentage.
    #[allow(clippy::cast_precision_loss)]
    let p = part as f64 * 100.0 / f64::from(whole);
    p
}

fn pids_check(usage: &PidUsage) -> Check {
    const NAME: &str = "pids";
    let mut detail = String::new();
    let mut problems = Vec::new();
    match &usage.pid_max {
        Ok(max) => {
            let _ = write!(detail, "pid_max {max}");
        }
        Err(e) => problems.push(e.clone()),
    }
    match &usage.threads_max {
        Ok(max) => {
            let _ = write!(
                detail,
                "{}threads-max {max}",
                if detail.is_empty() { "" } else { ", " }
            );
        }
        Err(e) => problems.push(e.clone()),
    }
    let mut crowded = false;
    match &usage.scan {
        Ok((summary, zombies)) => {
            let _ = write!(
                detail,
                "{}{} processes, {} tasks in use",
                if detail.is_empty() { "" } else { "; " },
                summary.processes,
                summary.tasks
            );
            if let Ok(max) = usage.pid_max {
                let _ = write!(detail, " ({:.1}% of pid_max)", percent(summary.tasks, max));
                crowded |= summary.tasks * 10 >= u64::from(max) * 9;
            }
            if let Ok(max) = usage.threads_max {
                crowded |= summary.tasks * 10 >= u64::from(max) * 9;
            }
            let _ = write!(detail, ", {zombies} zombies");
            if summary.unreadable > 0 {
                let _ = write!(
                    detail,
                    " ({} /proc entries unreadable: counts are lower bounds)",
                    summary.unreadable
                );
            }
        }
        Err(e) => problems.push(e.clone()),
    }
    if !problems.is_empty() {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        detail.push_str(&problems.join("; "));
        return Check::new(NAME, Status::Warn, detail);
    }
    if crowded {
        let mut fix = "find the parents that do not reap: `zombie-trace snapshot`, or \
                       `sudo zombie-trace watch`"
            .to_owned();
        if usage.pid_max.as_ref().is_ok_and(|&max| max < PID_MAX_LIMIT) {
            let _ = write!(
                fix,
                "; to buy time: `sudo sysctl -w kernel.pid_max={PID_MAX_LIMIT}`"
            );
        }
        return Check::new(
            NAME,
            Status::Warn,
            format!("{detail}: over 90% of the limit, new processes will soon fail to start"),
        )
        .fix(fix);
    }
    Check::new(NAME, Status::Ok, detail)
}

fn bpf_stats_check(value: Option<(&'static str, Result<i64, String>)>) -> Check {
    const NAME: &str = "bpf-stats";
    match value {
        None => Check::new(
            NAME,
            Status::Ok,
            "kernel.bpf_stats_enabled not available on this kernel",
        ),
        Some((path, Err(e))) => Check::new(NAME, Status::Ok, format!("cannot read {path}: {e}")),
        Some((_, Ok(0))) => Check::new(
            NAME,
            Status::Ok,
            "kernel.bpf_stats_enabled = 0: BPF programs run without run-time accounting",
        ),
        Some((_, Ok(v))) => Check::new(
            NAME,
            Status::Ok,
            format!(
                "kernel.bpf_stats_enabled = {v}: the kernel accounts every BPF program's run \
                 time (`bpftool prog` shows it), at a small cost per run"
            ),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const ROOT_STATUS: &str = "Name:\tzombie-trace\nUmask:\t0022\nState:\tR (running)\n\
        CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n\
        CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";

    fn privileges(euid: u32, cap_eff: Option<u64>) -> Privileges {
        Privileges {
            euid,
            cap_eff,
            in_child_user_namespace: false,
            perf_event_paranoid: Some(2),
        }
    }

    #[test]
    fn cap_eff_parsing() {
        let caps = parse_cap_eff(ROOT_STATUS).unwrap();
        assert_eq!(caps, 0x1ff_ffff_ffff);
        assert!(has_cap(caps, CAP_BPF) && has_cap(caps, CAP_PERFMON));
        assert!(can_load_bpf(caps));
        assert_eq!(parse_cap_eff("CapEff:\t0000000000000000\n"), Some(0));
        assert_eq!(parse_cap_eff("CapPrm:\t00000000000000ff\n"), None);
        assert_eq!(parse_cap_eff("CapEff:\tnot-hex\n"), None);
        assert!(!has_cap(u64::MAX, 64));
    }

    #[test]
    fn capability_combinations() {
        let bit = |c: u32| 1u64 << c;
        assert!(!can_load_bpf(0));
        assert!(can_load_bpf(bit(CAP_BPF) | bit(CAP_PERFMON)));
        assert!(can_load_bpf(bit(CAP_SYS_ADMIN)));
        assert!(can_load_bpf(bit(CAP_BPF) | bit(CAP_SYS_ADMIN)));
        assert!(!can_load_bpf(bit(CAP_BPF)));
        assert!(!can_load_bpf(bit(CAP_PERFMON)));
    }

    #[test]
    fn privilege_problem_messages() {
        let bit = |c: u32| 1u64 << c;
        assert_eq!(
            privilege_problem_for(&privileges(0, Some(u64::MAX)), "watch"),
            None
        );
        assert_eq!(
            privilege_problem_for(
                &privileges(1000, Some(bit(CAP_BPF) | bit(CAP_PERFMON))),
                "watch"
            ),
            None
        );
        let msg = privilege_problem_for(&privileges(1000, Some(0)), "run").unwrap();
        assert!(
            msg.contains("sudo zombie-trace run"),
            "the message names the command: {msg}"
        );
        assert!(msg.contains("zombie-trace snapshot"), "{msg}");
        assert!(!msg.contains('\n'));
        // Root without the capabilities (e.g. dropped by a container runtime).
        assert!(privilege_problem_for(&privileges(0, Some(0)), "watch").is_some());
        // Unknown capabilities: fall back on the uid.
        assert_eq!(privilege_problem_for(&privileges(0, None), "watch"), None);
        assert!(privilege_problem_for(&privileges(1000, None), "watch").is_some());
        let userns = Privileges {
            in_child_user_namespace: true,
            ..privileges(0, Some(u64::MAX))
        };
        assert!(
            privilege_problem_for(&userns, "watch")
                .unwrap()
                .contains("user namespace")
        );
    }

    /// Where perf_event_paranoid is above 2, a tracer without CAP_SYS_ADMIN
    /// is warned, with both fixes; root and 2 are fine.
    #[test]
    fn privileges_check_warns_of_a_distribution_perf_restriction() {
        let bit = |c: u32| 1u64 << c;
        let bpf = bit(CAP_BPF) | bit(CAP_PERFMON);
        let readable = TracefsAccess::Readable {
            by_capability: false,
        };
        let debian = Privileges {
            perf_event_paranoid: Some(3),
            ..privileges(65534, Some(bpf))
        };
        let c = privileges_check(&debian, readable);
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.detail.contains("perf_event_paranoid is 3"), "{c:?}");
        let fix = c.fix.unwrap_or_default();
        assert!(
            fix.contains("CAP_SYS_ADMIN") && fix.contains("perf_event_paranoid=2"),
            "{fix}"
        );
        let admin = Privileges {
            cap_eff: Some(bpf | bit(CAP_SYS_ADMIN)),
            ..debian
        };
        assert_eq!(privileges_check(&admin, readable).status, Status::Ok);
        assert_eq!(
            privileges_check(&privileges(65534, Some(bpf)), readable).status,
            Status::Ok
        );
    }

    #[test]
    fn privileges_check_statuses() {
        let readable = TracefsAccess::Readable {
            by_capability: false,
        };
        assert_eq!(
            privileges_check(&privileges(0, Some(u64::MAX)), readable).status,
            Status::Ok
        );
        let c = privileges_check(&privileges(1000, Some(0)), readable);
        assert_eq!(c.status, Status::Missing);
        assert!(c.fix.unwrap().contains("sudo"));
        assert_eq!(
            privileges_check(&privileges(0, None), readable).status,
            Status::Warn
        );
    }

    /// `check` says what it sees against what is needed, and names what is
    /// missing: CAP_DAC_READ_SEARCH only where tracefs refuses this uid.
    #[test]
    fn privileges_check_names_the_missing_capability() {
        let bit = |c: u32| 1u64 << c;
        let bpf = bit(CAP_BPF) | bit(CAP_PERFMON);
        let c = privileges_check(&privileges(65534, Some(bpf)), TracefsAccess::Denied);
        assert_eq!(c.status, Status::Missing);
        assert!(
            c.detail.contains("effective: CAP_BPF, CAP_PERFMON;")
                && c.detail
                    .contains("needed: CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH")
                && c.detail.ends_with("missing: CAP_DAC_READ_SEARCH"),
            "{c:?}"
        );
        let all = bpf | bit(CAP_DAC_READ_SEARCH);
        let by_capability = TracefsAccess::Readable {
            by_capability: true,
        };
        let c = privileges_check(&privileges(65534, Some(all)), by_capability);
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(
            c.detail
                .contains("needed: CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH"),
            "needed although present: {c:?}"
        );
        assert!(c.detail.contains("optional CAP_SYS_PTRACE absent"), "{c:?}");
        // Root reads tracefs as its owner: no CAP_DAC_READ_SEARCH needed.
        let as_owner = TracefsAccess::Readable {
            by_capability: false,
        };
        let c = privileges_check(&privileges(0, Some(bpf)), as_owner);
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(
            c.detail
                .contains("needed: CAP_BPF, CAP_PERFMON (tracefs is readable by this uid)")
        );
        let c = privileges_check(&privileges(65534, Some(bit(CAP_BPF))), as_owner);
        assert!(c.detail.ends_with("missing: CAP_PERFMON"), "{c:?}");
        // Denied although the capability is there: something else refuses.
        let c = privileges_check(&privileges(65534, Some(all)), TracefsAccess::Denied);
        assert_eq!(c.status, Status::Missing);
        assert!(c.detail.contains("security module"), "{c:?}");
        let c = privileges_check(&privileges(0, Some((1 << 41) - 1)), as_owner);
        assert!(
            c.detail.contains("CAP_SYS_ADMIN, 36 others"),
            "the other capabilities are counted: {c:?}"
        );
    }

    #[test]
    fn missing_capabilities_are_named() {
        let bit = |c: u32| 1u64 << c;
        assert_eq!(missing_caps(0, &BPF_CAPS), ["CAP_BPF", "CAP_PERFMON"]);
        assert_eq!(missing_caps(bit(CAP_BPF), &BPF_CAPS), ["CAP_PERFMON"]);
        assert!(missing_caps(bit(CAP_SYS_ADMIN), &BPF_CAPS).is_empty());
        assert_eq!(
            missing_caps(bit(CAP_SYS_ADMIN), &[CAP_DAC_READ_SEARCH]),
            ["CAP_DAC_READ_SEARCH"]
        );
        let msg = privilege_problem_for(&privileges(65534, Some(bit(CAP_BPF))), "serve").unwrap();
        assert!(msg.contains("(missing: CAP_PERFMON)"), "{msg}");
        let msg =
            privilege_problem_for(&privileges(65534, Some(bit(CAP_PERFMON))), "serve").unwrap();
        assert!(msg.contains("(missing: CAP_BPF)"), "{msg}");
        assert_eq!(errno_name(Some(libc::EPERM)), "EPERM");
        assert_eq!(errno_name(Some(libc::EACCES)), "EACCES");
    }

    #[test]
    fn uid_maps() {
        assert!(is_identity_uid_map("         0          0 4294967295\n"));
        assert!(!is_identity_uid_map("         0       1000          1\n"));
        assert!(!is_identity_uid_map("0 0 1000\n1000 100000 65536\n"));
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_release("6.8.0-45-generic"), Some((6, 8, 0)));
        assert_eq!(parse_kernel_release("5.10-rc1"), Some((5, 10, 0)));
        assert_eq!(parse_kernel_release("6.18.44-fc"), Some((6, 18, 44)));
        assert_eq!(parse_kernel_release("garbage"), None);
        assert_eq!(kernel_check(Some("5.8.0")).status, Status::Ok);
        assert_eq!(kernel_check(Some("5.15.0-1-amd64")).status, Status::Ok);
        assert_eq!(kernel_check(Some("4.19.0")).status, Status::Missing);
        assert_eq!(kernel_check(Some("5.7.19")).status, Status::Missing);
        assert_eq!(kernel_check(Some("x")).status, Status::Warn);
        assert_eq!(kernel_check(None).status, Status::Warn);
    }

    #[test]
    fn tracefs_mount_parsing() {
        let mounts = "proc /proc proc rw 0 0\n\
            tracefs /sys/kernel/debug/tracing tracefs rw 0 0\n\
            tracefs /sys/kernel/tracing tracefs rw,nosuid 0 0\n\
            tracefs /mnt/my\\040trace tracefs rw 0 0\n";
        assert_eq!(
            preferred_tracefs_mount(mounts),
            Some(PathBuf::from(TRACEFS_DEFAULT))
        );
        assert_eq!(preferred_tracefs_mount("proc /proc proc rw 0 0\n"), None);
    }

    #[test]
    fn tracefs_statuses() {
        let fs = "nodev\tsysfs\nnodev\ttracefs\n";
        let mounted = tracefs_check(
            Some(Path::new("/sys/kernel/tracing")),
            true,
            Some(fs),
            false,
        );
        assert_eq!(mounted.status, Status::Ok);
        let auto = tracefs_check(None, true, Some(fs), true);
        assert_eq!(auto.status, Status::Ok);
        assert!(auto.detail.contains("automatically"));
        let user = tracefs_check(None, true, Some(fs), false);
        assert_eq!(user.status, Status::Warn);
        assert!(user.fix.unwrap().contains("mount -t tracefs"));
        let unsupported = tracefs_check(None, true, Some("nodev\tsysfs\n"), true);
        assert_eq!(unsupported.status, Status::Missing);
        assert_eq!(tracefs_check(None, false, None, true).status, Status::Warn);
        assert_eq!(tracefs_check(None, true, None, false).status, Status::Warn);
    }

    #[test]
    fn reap_paths_name_what_sees_each_release() {
        let ok = reap_paths_check(Some((6, 18, 0)), Some(true), Some(Some(true)));
        assert_eq!(ok.status, Status::Ok);
        assert!(ok.detail.contains("present here"), "{}", ok.detail);
        assert!(ok.detail.contains("freed"), "{}", ok.detail);
        let old = reap_paths_check(Some((6, 1, 0)), Some(true), Some(Some(false)));
        assert!(old.detail.contains("not in this kernel"), "{}", old.detail);
        // BTF, not the version number, decides (distributions backport).
        let backported = reap_paths_check(Some((6, 1, 0)), Some(true), Some(Some(true)));
        assert!(
            backported.detail.contains("present here"),
            "{}",
            backported.detail
        );
        let no_uring = reap_paths_check(Some((6, 12, 0)), Some(true), Some(None));
        assert!(no_uring.detail.contains("not built"), "{}", no_uring.detail);
        let by_version = reap_paths_check(Some((6, 1, 0)), Some(true), None);
        assert!(
            by_version.detail.contains("not in this kernel"),
            "{}",
            by_version.detail
        );
        let missing = reap_paths_check(Some((6, 1, 0)), Some(false), Some(Some(false)));
        assert_eq!(missing.status, Status::Missing);
        assert!(missing.fix.is_some());
        assert_eq!(reap_paths_check(None, None, None).status, Status::Warn);
    }

    #[test]
    fn process_table_check_says_which_reader() {
        assert!(
            process_table_check(Some(true))
                .detail
                .contains("task iterator")
        );
        assert!(
            process_table_check(Some(false))
                .detail
                .starts_with("fallback: read from /proc")
        );
        assert_eq!(process_table_check(None).status, Status::Warn);
    }

    #[test]
    fn exit_tracepoint_says_how_a_process_end_is_told() {
        let new = exit_tracepoint_check(Some(true));
        assert!(new.detail.contains("passes group_dead"), "{}", new.detail);
        let old = exit_tracepoint_check(Some(false));
        assert_eq!(old.status, Status::Ok);
        assert!(old.detail.contains("no group_dead"), "{}", old.detail);
        assert_eq!(exit_tracepoint_check(None).status, Status::Warn);
    }

    #[test]
    fn scheduler_programs_say_which_kind_is_used() {
        let typed = scheduler_programs_check(Some((6, 1, 0)), Some(true));
        assert!(typed.detail.contains("tp_btf"), "{}", typed.detail);
        let old = scheduler_programs_check(Some((5, 4, 0)), Some(true));
        assert!(old.detail.contains("fallback"), "{}", old.detail);
        let untyped = scheduler_programs_check(Some((6, 1, 0)), Some(false));
        assert!(untyped.detail.contains("btf_trace"), "{}", untyped.detail);
        assert_eq!(scheduler_programs_check(None, None).status, Status::Warn);
    }

    #[test]
    fn syscall_arguments_say_which_path_is_used() {
        let regs = syscall_arguments_check(Some((6, 18, 0)), Some(true));
        assert_eq!(regs.status, Status::Ok);
        assert!(
            regs.detail.contains("no syscall entry program"),
            "{}",
            regs.detail
        );
        let old = syscall_arguments_check(Some((5, 10, 0)), Some(true));
        assert!(old.detail.contains("fallback"), "{}", old.detail);
        assert!(old.detail.contains("5.15"), "{}", old.detail);
        let no_regs = syscall_arguments_check(Some((6, 1, 0)), Some(false));
        assert!(no_regs.detail.contains("registers"), "{}", no_regs.detail);
        assert_eq!(syscall_arguments_check(None, None).status, Status::Warn);
    }

    #[test]
    fn tracepoint_statuses() {
        let dir = PathBuf::from("/sys/kernel/tracing/events/syscalls");
        let all: Vec<_> = syscall_tracepoints().map(|t| (t, true)).collect();
        let listed = |found: Vec<(&'static str, bool)>| TracepointScan::Listed {
            dir: dir.clone(),
            found,
        };
        assert_eq!(
            tracepoints_check(&listed(all.clone()), true).status,
            Status::Ok
        );
        let mut some = all;
        for entry in some
            .iter_mut()
            .filter(|(name, _)| *name == "sys_enter_waitid")
        {
            entry.1 = false;
        }
        let c = tracepoints_check(&listed(some), true);
        assert_eq!(c.status, Status::Missing);
        assert!(c.detail.contains("sys_enter_waitid"), "{}", c.detail);
        let failed = |kind| TracepointScan::Failed {
            dir: dir.clone(),
            error: io::Error::from(kind),
        };
        let c = tracepoints_check(&failed(io::ErrorKind::NotFound), true);
        assert_eq!(c.status, Status::Missing);
        assert!(c.fix.unwrap().contains("CONFIG_FTRACE_SYSCALLS"));
        let c = tracepoints_check(&failed(io::ErrorKind::PermissionDenied), false);
        assert_eq!(c.status, Status::Warn);
        // Not mounted: undetermined, never Missing.
        let c = tracepoints_check(&TracepointScan::NotMounted, true);
        assert_eq!(c.status, Status::Warn);
        assert!(c.fix.unwrap().contains("mount -t tracefs"));
        assert_eq!(
            tracepoints_check(&TracepointScan::NotMounted, false).status,
            Status::Warn
        );
    }

    #[test]
    fn sysctl_statuses() {
        let path = "/proc/sys/kernel/unprivileged_bpf_disabled";
        assert_eq!(
            unprivileged_bpf_check(Some((path, Ok(2))), true).status,
            Status::Ok
        );
        assert_eq!(
            unprivileged_bpf_check(Some((path, Ok(0))), false).status,
            Status::Ok
        );
        assert_eq!(
            unprivileged_bpf_check(Some((path, Ok(1))), false).status,
            Status::Warn
        );
        assert_eq!(unprivileged_bpf_check(None, true).status, Status::Warn);
        let stats = "/proc/sys/kernel/bpf_stats_enabled";
        assert_eq!(bpf_stats_check(Some((stats, Ok(1)))).status, Status::Ok);
        assert_eq!(bpf_stats_check(None).status, Status::Ok);
    }

    #[test]
    fn pid_usage() {
        let summary = procfs::ScanSummary {
            processes: 100,
            tasks: 29_600,
            vanished: 0,
            unreadable: 0,
        };
        let crowded = PidUsage {
            pid_max: Ok(32_768),
            threads_max: Ok(192_730),
            scan: Ok((summary, 29_000)),
        };
        let c = pids_check(&crowded);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("29000 zombies"), "{}", c.detail);
        assert!(c.fix.unwrap().contains("kernel.pid_max=4194304"));
        let calm = PidUsage {
            scan: Ok((
                procfs::ScanSummary {
                    tasks: 300,
                    ..summary
                },
                0,
            )),
            ..crowded.clone()
        };
        assert_eq!(pids_check(&calm).status, Status::Ok);
        let broken = PidUsage {
            pid_max: Err("cannot read /proc/sys/kernel/pid_max".into()),
            ..calm
        };
        assert_eq!(pids_check(&broken).status, Status::Warn);
    }

    #[test]
    fn text_rendering() {
        let checks = vec![
            Check::new("privileges", Status::Ok, "running as root (uid 0)"),
            Check::new(
                "btf",
                Status::Missing,
                "/sys/kernel/btf/vmlinux does not exist",
            )
            .fix("use a kernel built with CONFIG_DEBUG_INFO_BTF=y"),
            Check::new("tracefs", Status::Warn, "not mounted").fix("mount it"),
        ];
        let text = render_text(&checks);
        let expected = "\
ok       privileges  running as root (uid 0)
MISSING  btf         /sys/kernel/btf/vmlinux does not exist
                     fix: use a kernel built with CONFIG_DEBUG_INFO_BTF=y
warn     tracefs     not mounted
                     fix: mount it

1 requirement missing: `zombie-trace watch` will not work until fixed \
(`zombie-trace snapshot` reads /proc only and works anyway)
";
        assert_eq!(text, expected);
        assert_eq!(worst_status(&checks), Status::Missing);

        let ok = render_text(&checks[..1]);
        assert!(ok.ends_with("\neverything `zombie-trace watch` needs is present\n"));
        let warn = render_text(&[checks[0].clone(), checks[2].clone()]);
        assert!(warn.contains("nothing is missing, but see the 1 warning above"));
        assert_eq!(worst_status(&[]), Status::Ok);
    }

    #[test]
    fn json_shape() {
        let check = Check::new("btf", Status::Missing, "gone").fix("rebuild");
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "btf", "status": "missing", "detail": "gone", "fix": "rebuild"})
        );
    }

    #[test]
    fn real_host_checks_run() {
        let checks = run_checks();
        let names: Vec<_> = checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "privileges",
                "kernel-version",
                "btf",
                "tracefs",
                "syscall-tracepoints",
                "reap-paths",
                "scheduler-programs",
                "exit-tracepoint",
                "syscall-arguments",
                "process-table",
                "unprivileged-bpf",
                "pids",
                "bpf-stats"
            ]
        );
        for c in &checks {
            assert!(!c.detail.is_empty(), "{c:?}");
            if c.status == Status::Missing {
                assert!(c.fix.is_some(), "{c:?}");
            }
        }
        let text = render_text(&checks);
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("MISSING")
                    || l.starts_with("ok")
                    || l.starts_with("warn"))
                .count(),
            checks.len()
        );
    }
}
