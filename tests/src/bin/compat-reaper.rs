//! `compat-reaper [N=10]`: keeps the default SIGCHLD disposition, forks N
//! children that `_exit(0)` at once, waits until all N are zombies (state
//! `Z`, parent = self), then reaps every one of them through the 32-bit
//! compat syscall entry: `int 0x80` with eax = 7 (i386 `waitpid`), ebx =
//! the child's pid, ecx = NULL status pointer, edx = 0 options. That path
//! goes through the compat syscall table, which the native
//! `syscalls:sys_*_wait4` tracepoints do not see. Ready when every call
//! returned the child's pid and none of the children is left in `/proc`.
//! x86_64 only: elsewhere it exits 1 with an "x86_64 only" message.
//!
//! Ready line: `{"ready":true,"pid":P,"children":[N pids],"workload":"compat-reaper","reaped_by_compat_syscall":N}`.
//! Cleanup: nothing is left to reap; exits 0.

use std::ffi::c_int;
use std::sync::OnceLock;

use zombie_trace_tests::control::Control;
use zombie_trace_tests::workload::{
    Pid, Ready, count_arg, fatal, fork_exiting_child, getpid, handler_addr, is_gone_from,
    prog_name, set_signal, wait_zombies,
};

/// Why an `int 0x80` can fail on x86_64: the kernel was built without
/// `CONFIG_IA32_EMULATION` or booted with `ia32_emulation=0`.
const NO_IA32: &str =
    "this kernel has no IA32 emulation (CONFIG_IA32_EMULATION off or ia32_emulation=0)";

/// The complete message the SIGSEGV handler writes, prepared beforehand
/// so that the handler only needs `write` and `_exit`.
static SEGV_MESSAGE: OnceLock<Vec<u8>> = OnceLock::new();

extern "C" fn on_sigsegv(_sig: c_int) {
    // SAFETY: only async-signal-safe calls (write, _exit); the message was
    // initialised before the handler was installed.
    unsafe {
        if let Some(msg) = SEGV_MESSAGE.get() {
            libc::write(libc::STDERR_FILENO, msg.as_ptr().cast(), msg.len());
        }
        libc::_exit(1);
    }
}

/// i386 `waitpid(pid, NULL, 0)` through `int 0x80`; returns the raw result
/// (the pid, or `-errno`).
#[cfg(target_arch = "x86_64")]
fn compat_waitpid(pid: Pid) -> i32 {
    /// `__NR_waitpid` in the i386 syscall table.
    const NR_WAITPID: i32 = 7;
    let ret: i32;
    // SAFETY: `int 0x80` from 64-bit user mode enters the kernel's compat
    // syscall path on the kernel stack: the user stack (and red zone) is
    // not touched, hence `nostack`. Arguments: eax = syscall number, ebx =
    // pid, ecx = status pointer (NULL, so the kernel writes no memory; a
    // 64-bit pointer could not be passed anyway), edx = options. Only eax
    // (the result) is changed by the kernel; r8-r11 are preserved by the
    // compat entry since Linux 4.17 (older kernels zeroed them), but ecx,
    // edx and r8-r11 are declared clobbered anyway, as are the flags (the
    // default without `preserves_flags`). rbx cannot be an asm operand
    // (LLVM reserves it), so the pid is swapped into it and the caller's
    // rbx swapped back afterwards. A kernel without IA32 emulation raises
    // SIGSEGV instead (see `on_sigsegv`).
    unsafe {
        std::arch::asm!(
            "xchg {pid}, rbx",
            "int 0x80",
            "xchg {pid}, rbx",
            pid = inout(reg) u64::from(pid.unsigned_abs()) => _,
            inout("eax") NR_WAITPID => ret,
            inout("ecx") 0u32 => _,
            inout("edx") 0u32 => _,
            lateout("r8") _,
            lateout("r9") _,
            lateout("r10") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
fn compat_waitpid(_pid: Pid) -> i32 {
    fatal("compat-reaper is x86_64 only (it reaps with the i386 int 0x80 entry)")
}

/// Reaps `child` with [`compat_waitpid`], retrying on EINTR; exits on any
/// other result than the child's pid.
fn compat_reap(child: Pid) {
    loop {
        let r = compat_waitpid(child);
        if r == child {
            return;
        }
        if r == -libc::EINTR {
            continue;
        }
        if r == -libc::ENOSYS {
            fatal(format_args!(
                "int 0x80 waitpid({child}) returned ENOSYS: {NO_IA32}"
            ));
        }
        if r < 0 {
            fatal(format_args!(
                "int 0x80 waitpid({child}): {}",
                std::io::Error::from_raw_os_error(-r)
            ));
        }
        fatal(format_args!(
            "int 0x80 waitpid({child}) returned {r}, expected {child}"
        ));
    }
}

fn main() {
    if !cfg!(target_arch = "x86_64") {
        fatal("compat-reaper is x86_64 only (it reaps with the i386 int 0x80 entry)");
    }
    let mut ctl = Control::install();
    let n = count_arg(1, 10);
    let me = getpid();

    let children: Vec<_> = (0..n).map(|_| fork_exiting_child(0)).collect();
    wait_zombies(&children, me);

    let msg = format!(
        "{}[{me}]: int 0x80 raised SIGSEGV: {NO_IA32}\n",
        prog_name()
    );
    SEGV_MESSAGE.get_or_init(|| msg.into_bytes());
    set_signal(libc::SIGSEGV, handler_addr(on_sigsegv), 0);
    for &c in &children {
        compat_reap(c);
    }
    set_signal(libc::SIGSEGV, libc::SIG_DFL, 0);

    if let Some(c) = children.iter().find(|&&c| !is_gone_from(c, me)) {
        fatal(format_args!(
            "child {c} is still in /proc after the compat waitpid reaped it"
        ));
    }
    Ready::new(&children)
        .int(
            "reaped_by_compat_syscall",
            i64::try_from(n).unwrap_or(i64::MAX),
        )
        .print();

    ctl.wait_shutdown();
}
