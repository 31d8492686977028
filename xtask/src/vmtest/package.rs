//! The package test (`cargo xtask dist --test`, and `cargo xtask test`):
//! the .deb installed with `dpkg -i` on a clean Debian 12 userland, booted on
//! the kernel matrix's 6.1 kernel, must give a `zombie-trace watch` that
//! names a leaker, a `man zombie-trace-watch` that renders, and a bash that
//! completes `zombie-trace re` to `record` and `report`.
//!
//! The userland is `debootstrap --variant=minbase bookworm` with man-db and
//! bash-completion, made once under `target/vmtest/package/` (a few minutes,
//! from the Debian mirror) and reused. It is packed with the .deb and an
//! /init into an initramfs: the guest runs in the unpacked root file system
//! (no disk), like the kernel matrix's guests, and /init prints one
//! `check NAME PASS|FAIL` line per check and a `result` line.
//!
//! Then /init becomes systemd (`exec`, so systemd is PID 1, as on a host),
//! whose one target runs the checks only a host run by systemd can make: a
//! leaker started with `systemd-run --scope` is named by its scope unit,
//! and the packaged unit, started by systemd with its least privileges
//! (a dynamic user, exactly the capabilities it lists), serves metrics that
//! name that leaker and its unit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::{Boot, GUEST_CPUS, GUEST_MEMORY_MIB, KERNELS, MARK, PROBE_ARG, QEMU, guest};
use crate::{
    Workspace,
    cmd::{find_in_path, run},
    setup,
};

/// The Debian release and mirror of the clean userland.
const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// What the checks need beyond minbase: `man` (man-db, which brings groff),
/// bash's programmable completion, and systemd as init (procps for `ps`).
const INCLUDE: &str = "man-db,bash-completion,systemd,systemd-sysv,procps";

/// The checks /init and then systemd run, in order; the package passes when
/// each printed PASS.
const CHECKS: [&str; 9] = [
    "install",
    "version",
    "unit",
    "watch",
    "man",
    "completion",
    "systemd",
    "scope",
    "service",
];

/// Why the package test cannot run here, when it cannot.
pub fn unavailable() -> Option<String> {
    if let Some(reason) = super::unavailable() {
        return Some(reason);
    }
    if !crate::is_root() {
        return Some("debootstrap (the clean Debian 12 userland) needs root".to_owned());
    }
    None
}

/// Makes what the package test boots, without booting: the clean userland
/// and the kernel (both cached).
pub fn prepare(ws: &Workspace) -> Result<()> {
    if let Some(reason) = unavailable() {
        bail!("{reason}");
    }
    setup::ensure_debian_packages(&[("debootstrap", "debootstrap")])?;
    let dir = ws.target_dir.join("vmtest");
    let work = dir.join("package");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut apt = super::Apt::new(dir.join("packages"));
    let package = apt.resolve(&KERNELS[0])?;
    apt.unpack(&package)?;
    userland(&work).map(drop)
}

pub fn test_package(ws: &Workspace, deb: &Path) -> Result<()> {
    if let Some(reason) = unavailable() {
        bail!("{reason}");
    }
    let started = Instant::now();
    setup::ensure_debian_packages(&[(QEMU, "qemu-system-x86"), ("debootstrap", "debootstrap")])?;
    let qemu = find_in_path(QEMU)
        .context("qemu-system-x86_64 is missing: `apt-get install qemu-system-x86`")?;
    let dir = ws.target_dir.join("vmtest");
    let work = dir.join("package");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    crate::banner("package test: kernel (Debian package, cached)");
    let mut apt = super::Apt::new(dir.join("packages"));
    let family = &KERNELS[0];
    let package = apt.resolve(family)?;
    let unpacked = apt.unpack(&package)?;
    let image = super::find_vmlinuz(&unpacked.root)?;

    crate::banner("package test: clean Debian 12 userland (debootstrap, cached)");
    let root = userland(&work)?;

    crate::banner("package test: initramfs");
    let initramfs = work.join("initramfs.cpio");
    let size = write_initramfs(&initramfs, &root, deb)?;
    eprintln!(
        "{}: {:.0} MiB (debootstrap {SUITE} minbase + {INCLUDE}, {})",
        initramfs.display(),
        size as f64 / (1024.0 * 1024.0),
        deb.display()
    );

    let accel = super::probe_kvm(&qemu, &image, &initramfs);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log = guest::log_path(&logs, "package");
    crate::banner(&format!("package test: boot {package}"));
    let boot = Boot {
        qemu: &qemu,
        kernel: &image,
        initramfs: &initramfs,
        accel,
        cpus: GUEST_CPUS,
        memory_mib: GUEST_MEMORY_MIB,
        probe: false,
        slowdown: 1,
    };
    let console = guest::run(&boot, GUEST_DEADLINE, &[], "[package] ", Some(&log))?;
    let verdict = judge(&console);
    eprintln!(
        "\npackage test ({}, {}): {} [guest {:.0} s, all {:.0} s; log {}]",
        console.mark("kernel").unwrap_or("did not boot"),
        accel.label(),
        if verdict.is_ok() { "PASS" } else { "FAIL" },
        console.elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        log.display()
    );
    verdict.map_err(anyhow::Error::msg)
}

/// A TCG guest unpacks the userland, installs and checks in ~2 minutes.
const GUEST_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// The debootstrapped root, made once: a marker written after debootstrap
/// succeeded names what it was made of, and a root without it (an
/// interrupted run) or made otherwise is made again.
fn userland(work: &Path) -> Result<PathBuf> {
    let root = work.join("debian12-root");
    let marker = work.join("debian12-root.made");
    let recipe = format!("debootstrap --variant=minbase --include={INCLUDE} {SUITE} {MIRROR}\n");
    if std::fs::read_to_string(&marker).is_ok_and(|made| made == recipe) && root.is_dir() {
        eprintln!("{}: reused ({})", root.display(), recipe.trim());
        return Ok(root);
    }
    let partial = work.join("debian12-root.partial");
    for stale in [&root, &partial] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    let mut debootstrap = std::process::Command::new("debootstrap");
    debootstrap
        .args(["--variant=minbase", &format!("--include={INCLUDE}"), SUITE])
        .arg(&partial)
        .arg(MIRROR);
    run(
        &mut debootstrap,
        &format!("debootstrap needs root and the Debian mirror {MIRROR}; check the network"),
    )?;
    std::fs::rename(&partial, &root).with_context(|| format!("renaming {}", partial.display()))?;
    std::fs::write(&marker, recipe).with_context(|| format!("writing {}", marker.display()))?;
    Ok(root)
}

/// Below the root, what the guest does not need: downloaded package files,
/// apt's lists, documentation and translations (a quarter of the tree).
const LEFT_OUT: [&str; 6] = [
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/locale",
    "usr/share/info",
    "dev",
];

/// Where the .deb is in the guest.
const GUEST_DEB: &str = "zombie-trace.deb";

fn write_initramfs(path: &Path, root: &Path, deb: &Path) -> Result<u64> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut cpio = super::Cpio::new(std::io::BufWriter::new(file));
    let write =
        |e: std::io::Error| anyhow::Error::new(e).context(format!("writing {}", path.display()));
    pack(&mut cpio, root, "").map_err(write)?;
    cpio.dir("dev", 0o755).map_err(write)?;
    cpio.file("init", 0o755, init_script().as_bytes())
        .map_err(write)?;
    cpio.file(SYSTEMD_CHECKS, 0o755, systemd_checks().as_bytes())
        .map_err(write)?;
    cpio.file(
        "etc/systemd/system/zt-checks.service",
        0o644,
        CHECKS_SERVICE.as_bytes(),
    )
    .map_err(write)?;
    cpio.file(
        "etc/systemd/system/zt-checks.target",
        0o644,
        CHECKS_TARGET.as_bytes(),
    )
    .map_err(write)?;
    cpio.symlink("etc/systemd/system/default.target", "zt-checks.target")
        .map_err(write)?;
    let deb_bytes = std::fs::read(deb).with_context(|| format!("reading {}", deb.display()))?;
    cpio.file(GUEST_DEB, 0o644, &deb_bytes).map_err(write)?;
    cpio.finish().map_err(write)?;
    Ok(std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len())
}

/// Packs the tree below `dir` (`relative` is its path in the archive):
/// directories, regular files and symbolic links with their permissions;
/// device nodes are left to the guest's devtmpfs.
fn pack<W: std::io::Write>(
    cpio: &mut super::Cpio<W>,
    dir: &Path,
    relative: &str,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let inside = if relative.is_empty() {
            name.into_owned()
        } else {
            format!("{relative}/{name}")
        };
        if LEFT_OUT.contains(&inside.as_str()) {
            continue;
        }
        let meta = entry.path().symlink_metadata()?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            cpio.symlink(&inside, &target.to_string_lossy())?;
        } else if meta.is_dir() {
            cpio.dir(&inside, mode)?;
            pack(cpio, &entry.path(), &inside)?;
        } else if meta.is_file() {
            cpio.file(&inside, mode, &std::fs::read(entry.path())?)?;
        }
    }
    Ok(())
}

/// The guest's /init (Debian's /bin/sh): mounts what a Debian host has,
/// installs the package and runs the checks, each printing `check NAME
/// PASS` or `check NAME FAIL: why`, then `result PASS|FAIL`, and powers off.
fn init_script() -> String {
    format!(
        r#"#!/bin/sh
# The zombie-trace package test guest, written by `cargo xtask dist --test`.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
echo "{MARK} kernel $(uname -r)"
off() {{ sync; echo o > /proc/sysrq-trigger; sleep 60; }}
if grep -qw {PROBE_ARG} /proc/cmdline; then echo "{MARK} probe ok"; off; fi
failed=0
pass() {{ echo "{MARK} check $1 PASS"; }}
fail() {{ echo "{MARK} check $1 FAIL: $2"; failed=1; }}
# man-db's trigger rebuilds its whole index after an install: minutes under
# emulation, and `man PAGE` does not need it.
rm -f /var/lib/man-db/auto-update

if dpkg -i /{GUEST_DEB}; then pass install; else fail install "dpkg -i exit $?"; fi

zombie-trace --version > /tmp/version 2>&1
cat /tmp/version
if [ "$(sed -n 1p /tmp/version)" != "" ] && grep -q '^eBPF object: ' /tmp/version; then
    pass version
else
    fail version "$(head -c 300 /tmp/version)"
fi

unit=/lib/systemd/system/zombie-trace.service
if ! grep -q '^ExecStart=/usr/bin/zombie-trace serve' $unit; then
    fail unit "$unit does not run /usr/bin/zombie-trace"
elif ls /etc/systemd/system/*.wants/zombie-trace.service 2>/dev/null; then
    fail unit "the package enabled the unit"
else
    pass unit
fi

# A leaker: the exec'd `sleep 30` never waits for its child `sleep 0.2`.
sh -c 'sleep 0.2 & exec sleep 30' &
leaker=$!
sleep 1
zombie-trace watch --duration 5 --pid $leaker > /tmp/watch 2> /tmp/watch.err
status=$?
cat /tmp/watch /tmp/watch.err
if [ $status -ne 0 ]; then
    fail watch "exit status $status: $(head -c 300 /tmp/watch.err)"
elif awk -v pid=$leaker '$1 == pid && $2 == "sleep" && $3 >= 1 {{ found = 1 }} END {{ exit !found }}' /tmp/watch; then
    pass watch
else
    fail watch "no row names PID $leaker (sleep) owing a zombie"
fi
kill $leaker
wait $leaker 2>/dev/null

MANPAGER=cat MANWIDTH=80 man zombie-trace-watch > /tmp/man 2> /tmp/man.err
status=$?
head -20 /tmp/man
if [ $status -eq 0 ] && grep -q 'zombie-trace-watch' /tmp/man && grep -q -- '--threshold' /tmp/man; then
    pass man
else
    fail man "exit status $status: $(head -c 300 /tmp/man.err)"
fi

# As an interactive bash does: bash-completion loads the script from its
# directory on first use of the command, then bash calls its function.
bash --norc --noprofile -c '
    . /usr/share/bash-completion/bash_completion
    __load_completion zombie-trace || exit 3
    spec=$(complete -p zombie-trace) || exit 4
    function=${{spec#*-F }}
    function=${{function%% *}}
    COMP_WORDS=(zombie-trace re)
    COMP_CWORD=1
    COMP_LINE="zombie-trace re"
    COMP_POINT=${{#COMP_LINE}}
    "$function" zombie-trace re zombie-trace
    echo "${{COMPREPLY[*]}}"
' > /tmp/completion 2>&1
status=$?
cat /tmp/completion
if [ $status -eq 0 ] && [ "$(tail -n 1 /tmp/completion | tr ' ' '\n' | sort | tr '\n' ' ')" = "record report " ]; then
    pass completion
else
    fail completion "exit status $status, offered: $(tail -n 1 /tmp/completion)"
fi

# Then systemd, as PID 1: the checks go on in zt-checks.service.
echo $failed > /run/zt-failed
if [ -x /lib/systemd/systemd ]; then
    echo "{MARK} check systemd PASS"
    exec /lib/systemd/systemd --log-target=console --show-status=false
fi
echo "{MARK} check systemd FAIL: no /lib/systemd/systemd"
echo "{MARK} result FAIL"
off
"#
    )
}

/// The service and target systemd boots to: the checks, then power off.
const CHECKS_SERVICE: &str = "[Unit]
Description=zombie-trace package checks under systemd
After=basic.target

[Service]
Type=oneshot
TimeoutStartSec=infinity
ExecStart=/zt-systemd-checks
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
";
const CHECKS_TARGET: &str = "[Unit]
Description=zombie-trace package checks
Requires=basic.target zt-checks.service
After=basic.target zt-checks.service
AllowIsolate=yes
";

/// Where the systemd checks' script is in the guest.
const SYSTEMD_CHECKS: &str = "zt-systemd-checks";

/// The checks under systemd, as `zt-checks.service`: a leaker in a
/// `systemd-run --scope` scope is named by it (`watch --json`), and the
/// packaged unit, started by systemd, serves metrics naming it.
fn systemd_checks() -> String {
    format!(
        r#"#!/bin/bash
# The zombie-trace package test under systemd, written by `cargo xtask dist --test`.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
failed=$(cat /run/zt-failed 2>/dev/null || echo 1)
pass() {{ echo "{MARK} check $1 PASS"; }}
fail() {{ echo "{MARK} check $1 FAIL: $2"; failed=1; }}
off() {{ sync; echo o > /proc/sysrq-trigger; sleep 60; }}

# A leaker in a transient scope, as `systemd-run --scope` makes for a
# command run by hand: systemd-run execs the command, so $! is the leaker.
systemd-run --quiet --scope --unit=zt-leak sh -c 'sleep 0.2 & exec sleep 120' &
leaker=$!
sleep 2
zombie-trace watch --json --interval 1 --duration 3 --pid $leaker > /tmp/scope 2> /tmp/scope.err
status=$?
tail -c 600 /tmp/scope; cat /tmp/scope.err
if [ $status -ne 0 ]; then
    fail scope "watch exit status $status: $(head -c 300 /tmp/scope.err)"
elif grep -q "\"pid\":$leaker,.*\"unit\":\"zt-leak.scope\"" /tmp/scope; then
    pass scope
else
    fail scope "no row names PID $leaker in unit zt-leak.scope"
fi

# The packaged unit, as systemd runs it: a dynamic user holding only the
# capabilities it lists. Its metrics name the leaker and its scope.
systemctl start zombie-trace.service
scrape() {{
    exec 3<>/dev/tcp/127.0.0.1/21717 || return 1
    printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
    cat <&3
    exec 3<&-
}}
found=0
for i in $(seq 60); do
    if scrape > /tmp/metrics 2>/dev/null && grep -q "^zombietrace_parent_pending_zombies{{pid=\"$leaker\".*unit=\"zt-leak.scope\".*}} 1" /tmp/metrics; then
        found=1
        break
    fi
    sleep 1
done
grep '^zombietrace_parent_pending_zombies' /tmp/metrics | head -5
systemctl status --no-pager zombie-trace.service | head -12
main=$(systemctl show -p MainPID --value zombie-trace.service)
user=$(ps -o user= -p "$main" 2>/dev/null)
capeff=$(awk '/^CapEff:/ {{ print $2 }}' /proc/$main/status 2>/dev/null)
echo "service user: $user, CapEff $capeff"
if [ $found -eq 1 ] && [ -n "$user" ] && [ "$user" != root ] && [ "$capeff" = 000000c000000000 ]; then
    pass service
elif [ $found -eq 1 ]; then
    fail service "it runs as $user with CapEff $capeff, not a dynamic user with CAP_BPF and CAP_PERFMON only"
else
    fail service "no series names PID $leaker in zt-leak.scope: $(journalctl -u zombie-trace --no-pager 2>/dev/null | tail -5 | tr '\n' ' ' | head -c 400)"
fi
systemctl stop zombie-trace.service
kill $leaker

if [ "$failed" = 0 ]; then echo "{MARK} result PASS"; else echo "{MARK} result FAIL"; fi
off
"#
    )
}

/// Passed only when the guest printed PASS for every check and the result.
fn judge(console: &guest::Console) -> Result<(), String> {
    if console.mark("kernel").is_none() {
        return Err(format!(
            "the package test guest never reached /init{}",
            if console.timed_out {
                " (timed out)"
            } else {
                ""
            }
        ));
    }
    let mut problems = Vec::new();
    for check in CHECKS {
        let line = console.lines.iter().find_map(|line| {
            line.trim()
                .strip_prefix(MARK)?
                .trim_start()
                .strip_prefix("check ")?
                .strip_prefix(check)?
                .strip_prefix(' ')
                .map(str::to_owned)
        });
        match line.as_deref() {
            Some("PASS") => {}
            Some(failure) => problems.push(format!("{check}: {failure}")),
            None => problems.push(format!("{check}: did not run")),
        }
    }
    if problems.is_empty() && console.mark("result") == Some("PASS") {
        Ok(())
    } else if problems.is_empty() {
        Err("the guest printed no `result PASS`".to_owned())
    } else {
        Err(format!(
            "the installed package failed: {}",
            problems.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(lines: &[&str]) -> guest::Console {
        guest::Console {
            lines: lines.iter().map(|&line| line.to_owned()).collect(),
            timed_out: false,
            qemu_status: None,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn the_package_passes_only_when_every_check_passed() {
        let mut lines = vec!["zombie-trace-vm: kernel 6.1.0-57-cloud-amd64".to_owned()];
        lines.extend(
            CHECKS
                .iter()
                .map(|check| format!("zombie-trace-vm: check {check} PASS")),
        );
        lines.push("zombie-trace-vm: result PASS".to_owned());
        let all: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(judge(&console(&all)), Ok(()));

        let mut failing = all.clone();
        failing[4] = "zombie-trace-vm: check watch FAIL: no row names PID 7 (sleep) owing a zombie";
        assert_eq!(
            judge(&console(&failing)),
            Err("the installed package failed: watch: FAIL: no row names PID 7 (sleep) owing a zombie".to_owned())
        );
        let missing: Vec<&str> = all
            .iter()
            .copied()
            .filter(|line| !line.contains("man"))
            .collect();
        assert!(judge(&console(&missing)).is_err_and(|err| err.contains("man: did not run")));
        assert!(judge(&console(&all[..all.len() - 1])).is_err());
        assert!(judge(&console(&all[1..])).is_err());
    }

    #[test]
    fn init_runs_every_check() {
        let script = init_script();
        assert!(script.starts_with("#!/bin/sh\n"));
        let systemd = systemd_checks();
        for check in CHECKS {
            assert!(
                script.contains(&format!("pass {check}"))
                    || script.contains(&format!("check {check} PASS"))
                    || systemd.contains(&format!("pass {check}")),
                "{check}"
            );
        }
    }
}
