//! One guest: qemu boots a kernel with the initramfs, the guest's console
//! (its only output) is read line by line, echoed, kept in a log, and read
//! for the test results the guest's /init prints.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::cmd::display;

/// How qemu runs the guest's CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM when a probe guest boots with it, TCG otherwise.
    Auto,
    /// Hardware virtualisation (fails where /dev/kvm cannot run a guest).
    Kvm,
    /// Software emulation: slower, works everywhere.
    Tcg,
}

impl Accel {
    pub fn label(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Kvm => "KVM",
            Self::Tcg => "TCG",
        }
    }
}

/// What /init prints, one line each, so that the host can tell the guest's
/// own words from the tests' and the kernel's.
pub const MARK: &str = "zombie-trace-vm:";

/// The kernel command line's word that makes /init power off at once
/// (the KVM probe).
pub const PROBE_ARG: &str = "zt.probe";

/// A guest to boot.
pub struct Boot<'a> {
    pub qemu: &'a Path,
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub accel: Accel,
    pub cpus: u32,
    pub memory_mib: u32,
    pub probe: bool,
    /// What the tests stretch their work budgets by (see [`SLOWDOWN_ARG`]).
    pub slowdown: u32,
}

/// The kernel command line's word that /init exports as
/// `ZOMBIE_TRACE_TEST_SLOWDOWN`, e.g. `zt.slowdown=4`.
pub const SLOWDOWN_ARG: &str = "zt.slowdown";

impl Boot<'_> {
    fn command(&self) -> Command {
        let mut qemu = Command::new(self.qemu);
        let accel = match self.accel {
            Accel::Kvm => "kvm",
            // One host thread runs the guest's CPUs in turn. With a thread
            // per CPU (qemu's default here), 6.12 guests stopped at `int3`
            // traps the kernel's own code patching had already removed, on
            // the CPU that had just patched (3 of 4 boots of the suite); in
            // turn, none did, and the suite took as long (330 s against
            // 276-300 s): its tests mostly wait.
            Accel::Tcg | Accel::Auto => "tcg,thread=single",
        };
        let mut append = format!(
            "console=ttyS0 quiet panic=-1 {SLOWDOWN_ARG}={}",
            self.slowdown
        );
        if self.probe {
            append.push(' ');
            append.push_str(PROBE_ARG);
        }
        // No default devices (no NIC option ROM to wait for): the serial
        // console is the guest's only device, and its only output.
        qemu.args(["-accel", accel, "-smp"])
            .arg(self.cpus.to_string())
            .arg("-m")
            .arg(self.memory_mib.to_string())
            .args(["-nodefaults", "-display", "none", "-serial", "stdio"])
            .arg("-no-reboot")
            .arg("-kernel")
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initramfs)
            .arg("-append")
            .arg(append);
        qemu
    }
}

/// What a guest said and how it ended.
pub struct Console {
    pub lines: Vec<String>,
    /// The guest ran until the deadline and was stopped.
    pub timed_out: bool,
    /// qemu's own exit status.
    pub qemu_status: Option<std::process::ExitStatus>,
    pub elapsed: Duration,
}

impl Console {
    /// The value of `MARK key value` lines /init printed, first one.
    pub fn mark(&self, key: &str) -> Option<&str> {
        self.lines.iter().find_map(|line| {
            let rest = line.trim().strip_prefix(MARK)?.trim_start();
            let value = rest.strip_prefix(key)?;
            value
                .starts_with(char::is_whitespace)
                .then(|| value.trim())
                .or_else(|| value.is_empty().then_some(""))
        })
    }
}

/// Boots the guest and reads its console until it powers off, `deadline`
/// passes, or a line contains one of `abort_on`. Each line is echoed to
/// stderr after `prefix` (unless `quiet`) and appended to `log`.
pub fn run(
    boot: &Boot<'_>,
    deadline: Duration,
    abort_on: &[&str],
    prefix: &str,
    log: Option<&Path>,
) -> Result<Console> {
    let mut command = boot.command();
    eprintln!("$ {}", display(&command));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {}", boot.qemu.display()))?;
    let mut log_file = match log {
        Some(path) => Some(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => None,
    };
    let (tx, rx) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|out| Box::new(out) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|err| Box::new(err) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut raw = Vec::new();
            while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
                if tx.send(clean_line(&raw)).is_err() {
                    break;
                }
                raw.clear();
            }
        })
    })
    .collect();
    drop(tx);

    let started = Instant::now();
    let mut lines = Vec::new();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(file) = log_file.as_mut() {
                    // A log that cannot be written is not worth a failed run.
                    let _ = writeln!(file, "{line}");
                }
                if !prefix.is_empty() {
                    eprintln!("{prefix}{line}");
                }
                let abort = abort_on.iter().any(|needle| line.contains(needle));
                lines.push(line);
                if abort {
                    stop(&mut child);
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                stop(&mut child);
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let qemu_status = child.wait().ok();
    for reader in readers {
        let _ = reader.join();
    }
    Ok(Console {
        lines,
        timed_out,
        qemu_status,
        elapsed: started.elapsed(),
    })
}

/// Stops qemu (our own child, by PID).
fn stop(child: &mut Child) {
    let _ = child.kill();
}

/// A console line as text: no line ending, no terminal escape sequences
/// (the firmware clears the screen), no carriage returns.
fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // ESC [ params final-byte, or ESC and one character.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// The outcome of the tests in one guest, from libtest's output.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub passed: u32,
    pub failed: u32,
    pub ignored: u32,
    /// Names of the failed tests.
    pub failures: Vec<String>,
    /// Test binaries that printed a result line.
    pub binaries: u32,
}

/// Sums libtest's `test result:` lines and collects `test NAME ... FAILED`.
pub fn outcome(lines: &[String]) -> Outcome {
    let mut outcome = Outcome::default();
    for line in lines {
        let line = line.trim();
        if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.strip_suffix(" ... FAILED"))
        {
            outcome.failures.push(name.to_owned());
        }
        let Some(result) = line.strip_prefix("test result: ") else {
            continue;
        };
        outcome.binaries += 1;
        // "ok. 17 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s"
        for part in result.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u32>() else {
                continue;
            };
            match what {
                "passed" => outcome.passed += count,
                "failed" => outcome.failed += count,
                "ignored" => outcome.ignored += count,
                _ => {}
            }
        }
    }
    outcome
}

/// The first kernel oops on a guest's console.
#[derive(Debug, PartialEq, Eq)]
pub struct Oops {
    /// The trap or fault as the kernel names it (`int3`, `general
    /// protection fault`), or `Oops` when the line names none (a page fault
    /// says what it was on the `BUG:` line before).
    pub kind: String,
    /// Where it happened, as the kernel prints it (`symbol+0xe1/0x170`),
    /// when that was kernel code.
    pub rip: Option<String>,
    /// The task that was running.
    pub comm: Option<String>,
    /// A BPF program is where it happened or in its call trace.
    pub in_bpf: bool,
}

/// Finds the first oops: the kernel's `KIND: CODE [#N]` line (6.1 prints
/// `int3: 0000 [#1] …`, 6.12 `Oops: int3: 0000 [#1] …`), possibly in the
/// middle of a test's line, and reads the report up to its `end trace`.
pub fn first_oops(lines: &[String]) -> Option<Oops> {
    let (start, kind) = lines
        .iter()
        .enumerate()
        .find_map(|(index, line)| oops_kind(line).map(|kind| (index, kind)))?;
    let report: Vec<&str> = lines[start..]
        .iter()
        .map(String::as_str)
        .take_while(|line| !line.contains("---[ end trace"))
        .collect();
    let after = |key: &str| {
        report.iter().find_map(|line| {
            let (_, rest) = line.split_once(key)?;
            rest.split_whitespace().next().map(str::to_owned)
        })
    };
    Some(Oops {
        kind,
        rip: after("RIP: 0010:"),
        comm: after(" Comm: "),
        in_bpf: report.iter().any(|line| line.contains("bpf_prog_")),
    })
}

fn oops_kind(line: &str) -> Option<String> {
    let head = &line[..line.find(" [#")?];
    // After the kernel's `[  100.066017] ` timestamp.
    let head = head.rsplit_once("] ").map_or(head, |(_, head)| head);
    let (kind, code) = head.rsplit_once(": ")?;
    if code.len() != 4 || !code.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let kind = kind.strip_prefix("Oops: ").unwrap_or(kind).trim();
    (!kind.is_empty()).then(|| kind.to_owned())
}

/// Where a guest's console log goes.
pub fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_lose_escapes_and_line_ends() {
        assert_eq!(
            clean_line(b"\x1bc\x1b[?7l\x1b[2Jzombie-trace-vm: kernel 6.1.0\r\n"),
            "zombie-trace-vm: kernel 6.1.0"
        );
        assert_eq!(clean_line(b"plain"), "plain");
    }

    #[test]
    fn marks_are_found_by_key() {
        let console = Console {
            lines: vec![
                "noise".to_owned(),
                "zombie-trace-vm: kernel 6.1.0-57-cloud-amd64".to_owned(),
                "zombie-trace-vm: kernels 2".to_owned(),
                "zombie-trace-vm: exit 0".to_owned(),
            ],
            timed_out: false,
            qemu_status: None,
            elapsed: Duration::ZERO,
        };
        assert_eq!(console.mark("kernel"), Some("6.1.0-57-cloud-amd64"));
        assert_eq!(console.mark("exit"), Some("0"));
        assert_eq!(console.mark("missing"), None);
    }

    /// The oops that stopped a 6.12 guest in CI, cut short.
    const OOPS_6_12: [&str; 12] = [
        "test cli::watch_started_during_a_fork_reap_storm_names_no_phantom ... [  100.066017] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
        "[  100.066720] CPU: 0 UID: 0 PID: 10877 Comm: zombie-trace Not tainted 6.12.117+deb12-cloud-amd64 #1  Debian 6.12.117-1~deb12u1",
        "[  100.067059] RIP: 0010:syscall_exit_to_user_mode_prepare+0xe1/0x170",
        "[  100.068589] Call Trace:",
        "[  100.069547]  syscall_exit_to_user_mode+0x10/0x1b0",
        "[  100.069730]  do_syscall_64+0x93/0x180",
        "[  100.070574] RIP: 0033:0x7f90a7fd8829",
        "[  100.072028] ---[ end trace 0000000000000000 ]---",
        "[  100.072064] Oops: int3: 0000 [#2] PREEMPT SMP NOPTI",
        "[  100.072197] RIP: 0010:syscall_exit_to_user_mode_prepare+0xe1/0x170",
        "[  100.072415] CPU: 1 UID: 0 PID: 14306 Comm: churn Tainted: G      D            6.12.117+deb12-cloud-amd64 #1",
        "[  100.072640] Kernel panic - not syncing: Fatal exception in interrupt",
    ];

    fn lines(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|&line| line.to_owned()).collect()
    }

    #[test]
    fn the_first_oops_is_read_whatever_the_kernel_prints_before_it() {
        assert_eq!(
            first_oops(&lines(&OOPS_6_12)),
            Some(Oops {
                kind: "int3".to_owned(),
                rip: Some("syscall_exit_to_user_mode_prepare+0xe1/0x170".to_owned()),
                comm: Some("zombie-trace".to_owned()),
                in_bpf: false,
            })
        );
        // 6.1 has no "Oops: " before the trap's name; a BPF frame is seen.
        let in_bpf = [
            "[   42.000000] general protection fault, probably for non-canonical address 0xdead: 0000 [#1] PREEMPT SMP NOPTI",
            "[   42.000001] CPU: 1 PID: 7 Comm: sleep Not tainted 6.1.0-57-cloud-amd64 #1",
            "[   42.000002] RIP: 0010:bpf_prog_0123456789abcdef_handle_exit+0x42/0x1f0",
            "[   42.000003] ---[ end trace 0000000000000000 ]---",
        ];
        let oops = first_oops(&lines(&in_bpf)).expect("a general protection fault");
        assert_eq!(
            oops.kind,
            "general protection fault, probably for non-canonical address 0xdead"
        );
        assert!(oops.in_bpf);
        assert_eq!(oops.comm.as_deref(), Some("sleep"));
        let page_fault = [
            "[ 1.0] BUG: unable to handle page fault",
            "[ 1.1] Oops: 0000 [#1] SMP",
        ];
        assert_eq!(
            first_oops(&lines(&page_fault)).map(|oops| oops.kind),
            Some("Oops".to_owned())
        );
        let quiet = [
            "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s",
            "[#1] is not an oops: 12345",
        ];
        assert_eq!(first_oops(&lines(&quiet)), None);
    }

    #[test]
    fn results_of_every_binary_are_summed() {
        let lines: Vec<String> = [
            "test scenarios::a ... ok",
            "test scenarios::b ... FAILED",
            "test result: FAILED. 16 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 122.91s",
            "test result: ok. 5 passed; 0 failed; 2 ignored; 0 measured; 40 filtered out; finished in 1.00s",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            outcome(&lines),
            Outcome {
                passed: 21,
                failed: 1,
                ignored: 2,
                failures: vec!["scenarios::b".to_owned()],
                binaries: 2,
            }
        );
    }
}
