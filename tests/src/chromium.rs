//! Loading a generated page in headless Chromium: does it render, does the
//! browser complain, what does the DOM look like after parsing. For tests of
//! zombie-trace's HTML report (and anything else that writes a page).
//!
//! Two runs per page, each with a fresh profile: one writes the screenshot,
//! one dumps the DOM with logging on stderr, from which the messages about
//! the page are kept and Chromium's own noise is dropped (see
//! [`page_messages`]).
//!
//! The flags are for running as root in a container without a sandbox, a
//! GPU, a D-Bus or a network; `--host-resolver-rules` keeps the runs
//! hermetic: Chromium pings update and account servers even with
//! `--disable-background-networking` (seen in a `--log-net-log`), and a page
//! that tried to fetch anything would fail rather than reach out.

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A run that takes longer than this has hung (a report loads in < 2 s).
const TIMEOUT: Duration = Duration::from_secs(90);

/// What loading a page produced.
#[derive(Clone, Debug, Default)]
pub struct PageLoad {
    /// The DOM after parsing, serialised (`--dump-dom`).
    pub dom: String,
    /// Console messages of the page (every level: at `--v=0` Chromium logs
    /// them all as INFO, so a page meant to be silent treats any as an
    /// error), uncaught exceptions, and Chromium errors that are not its own
    /// infrastructure noise (a failed page load, for one).
    pub console_errors: Vec<String>,
    pub screenshot_bytes: u64,
}

/// The `chromium` (or `chromium-browser`) executable on PATH, if any.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            {
                return Some(candidate);
            }
        }
    }
    None
}

/// Loads `html` in headless Chromium at 1280×2400: writes a screenshot to
/// `screenshot` and returns the parsed DOM and the page's complaints. An
/// error means Chromium could not be run or did not finish, not that the
/// page is bad: look at [`PageLoad::console_errors`] for that.
pub fn load(html: &Path, screenshot: &Path) -> Result<PageLoad, String> {
    let exe = chromium().ok_or("chromium is not on PATH")?;
    let html = html
        .canonicalize()
        .map_err(|e| format!("{}: {e}", html.display()))?;
    let url = file_url(&html);

    // So that a stale file from an earlier run can't pass for this one's.
    let _ = fs::remove_file(screenshot);
    let shot = run(
        &exe,
        &[
            format!("--screenshot={}", screenshot.display()).into(),
            url.clone().into(),
        ],
    )?;
    if !shot.status.success() {
        return Err(format!(
            "chromium --screenshot: {}\n{}",
            shot.status, shot.stderr
        ));
    }
    let screenshot_bytes = fs::metadata(screenshot)
        .map_err(|e| {
            format!(
                "no screenshot at {}: {e}\n{}",
                screenshot.display(),
                shot.stderr
            )
        })?
        .len();

    let dump = run(
        &exe,
        &[
            "--dump-dom".into(),
            "--enable-logging=stderr".into(),
            "--v=0".into(),
            url.into(),
        ],
    )?;
    if !dump.status.success() {
        return Err(format!(
            "chromium --dump-dom: {}\n{}",
            dump.status, dump.stderr
        ));
    }
    let mut console_errors = page_messages(&dump.stderr);
    // The screenshot run logs little (no --enable-logging) but an error
    // there is as much about the page.
    for e in page_messages(&shot.stderr) {
        if !console_errors.contains(&e) {
            console_errors.push(e);
        }
    }
    Ok(PageLoad {
        dom: dump.stdout,
        console_errors,
        screenshot_bytes,
    })
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs Chromium once with a fresh profile directory, removed afterwards.
fn run(exe: &Path, args: &[OsString]) -> Result<Output, String> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "zombie-trace-chromium-{}-{}-{nanos}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run_in(exe, args, &dir);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn run_in(exe: &Path, args: &[OsString], dir: &Path) -> Result<Output, String> {
    let profile = dir.join("profile");
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    // Output to files, not pipes: a DOM of megabytes would fill a pipe
    // that nobody reads while we wait.
    let stdout = File::create(&out_path).map_err(|e| e.to_string())?;
    let stderr = File::create(&err_path).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=1280,2400",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stdin(Stdio::null())
    .stdout(stdout)
    .stderr(stderr)
    // Its own process group, so that a hung run can be killed with all
    // its helper processes (zygote, renderer, GPU).
    .process_group(0);
    let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", exe.display()))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if started.elapsed() > TIMEOUT => {
                let group = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
                // SAFETY: kill(2) has no memory effects; the group is the
                // one this function created.
                unsafe { libc::kill(-group, libc::SIGKILL) };
                let _ = child.wait();
                return Err(format!("chromium did not finish in {TIMEOUT:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let read = |p: &Path| fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned());
    Ok(Output {
        status,
        stdout: read(&out_path).map_err(|e| e.to_string())?,
        stderr: read(&err_path).map_err(|e| e.to_string())?,
    })
}

/// `file://` URL of an absolute path, percent-encoding what a URL can't hold.
fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// Sources of Chromium's own complaints in a headless, root, sandbox-less
/// container. Seen on every run of Debian's Chromium 156 with the flags
/// above, page problem or not: no D-Bus (`dbus/`, and the Bluetooth,
/// screensaver and UPower probes), no GPU (`media/gpu/`), no sandbox
/// (`sandbox/`), the cookie store shutting down (`net/extras/sqlite/`). Not
/// seen here but the usual companions of `--disable-gpu` and of a missing
/// keyring elsewhere: `gpu/`, `ui/gl/`, `components/viz/`,
/// `components/os_crypt`.
const NOISE: [&str; 10] = [
    "dbus/",
    "device/bluetooth/",
    "ui/base/idle/",
    "media/gpu/",
    "sandbox/",
    "net/extras/sqlite/",
    "gpu/",
    "ui/gl/",
    "components/viz/",
    "components/os_crypt",
];

/// The lines of a Chromium log about the page. Chromium's log lines are
/// `[pid:tid:MMDD/HHMMSS.us:LEVEL:source.cc:line] text`; kept are:
///
/// * console messages of the page, `LEVEL:CONSOLE:line] "text", source: URL
///   (line)` (older Chromium: `CONSOLE(line)]`), every level;
/// * anything mentioning an uncaught exception;
/// * ERROR and FATAL lines from a source not in [`NOISE`]: unknown ones are
///   kept on purpose, so that a new failure surfaces (a page that failed to
///   load is `ERROR:components/headless/...] Page load failed: ...`); add a
///   prefix to [`NOISE`] when one turns out to be infrastructure.
///
/// Dropped: WARNING and INFO lines of Chromium itself, and lines that are
/// not log lines (Debian's wrapper script prints a shell error on every
/// start: `chromium: 9: [: ...: unexpected operator`).
pub fn page_messages(log: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some((header, text)) = line.strip_prefix('[').and_then(|l| l.split_once("] ")) else {
            if line.contains("Uncaught") {
                out.push(line.trim().to_string());
            }
            continue;
        };
        // pid:tid:time:LEVEL:source
        let mut fields = header.splitn(5, ':');
        let (Some(_pid), Some(_tid), Some(_time), Some(level), Some(source)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let page = source.starts_with("CONSOLE") || text.contains("Uncaught");
        let unknown_error =
            (level == "ERROR" || level == "FATAL") && !NOISE.iter().any(|n| source.starts_with(n));
        let keep = page || unknown_error;
        if keep {
            out.push(format!("{level}:{source}: {text}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log as Chromium 156 writes it for a page with errors, with the
    /// noise of a container around it.
    const LOG: &str = r#"chromium: 9: [: 25275990016: unexpected operator
[24304:24339:1201/145145.947440:ERROR:dbus/bus.cc:405] Failed to connect to the bus: Could not parse server address: Unknown address type
[24355:24355:1201/145146.226555:WARNING:media/gpu/vaapi/vaapi_wrapper.cc:1655] drmGetDevices2() has not found any devices
[24355:24355:1201/145146.400735:WARNING:sandbox/policy/linux/sandbox_linux.cc:405] InitializeSandbox() called with multiple threads in process gpu-process.
[24304:24304:1201/145146.629434:ERROR:dbus/object_proxy.cc:572] Failed to call method: org.freedesktop.DBus.NameHasOwner: object_path= /org/freedesktop/DBus: unknown error type:
[24304:24304:1201/145146.639326:WARNING:device/bluetooth/dbus/bluez_dbus_manager.cc:209] Floss manager service not available, cannot set Floss enable/disable.
[24304:24304:1201/145146.758923:WARNING:ui/base/idle/idle_linux.cc:111] None of the known D-Bus ScreenSaver services could be used.
[24304:24304:1201/145147.281062:INFO:CONSOLE:4] "error line", source: file:///srv/page/bad.html (4)
[24304:24304:1201/145147.281242:INFO:CONSOLE:4] "Uncaught ReferenceError: undefinedFunction is not defined", source: file:///srv/page/bad.html (4)
[24304:24304:1201/145147.281242:INFO:CONSOLE(5)] "Uncaught Error: thrown", source: file:///srv/page/bad.html (5)
[24518:24598:1201/145149.708192:WARNING:net/extras/sqlite/sqlite_persistent_store_backend_base.cc:182] Failed to post task
[25107:25107:1201/145202.075352:ERROR:components/headless/command_handler/headless_command_handler.cc:403] Page load failed: net::ERR_FILE_NOT_FOUND
"#;

    #[test]
    fn keeps_the_page_and_drops_the_noise() {
        let kept = page_messages(LOG);
        assert_eq!(kept.len(), 4, "{kept:#?}");
        assert!(kept[0].contains("\"error line\""));
        assert!(kept[1].contains("Uncaught ReferenceError"));
        assert!(kept[2].contains("Uncaught Error: thrown"));
        assert!(kept[3].contains("Page load failed"));
    }

    #[test]
    fn file_urls_are_encoded() {
        assert_eq!(
            file_url(Path::new("/srv/a b#c.html")),
            "file:///srv/a%20b%23c.html"
        );
    }

    /// Needs Chromium: skipped (passing) without it.
    #[test]
    fn loads_pages_and_reports_their_errors() {
        if chromium().is_none() {
            eprintln!("chromium not on PATH: skipped");
            return;
        }
        let dir =
            std::env::temp_dir().join(format!("zombie-trace-chromium-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let good = dir.join("good.html");
        fs::write(&good, "<!DOCTYPE html><title>good</title><p>fine</p>").expect("write");
        let bad = dir.join("bad.html");
        fs::write(
            &bad,
            "<!DOCTYPE html><title>bad</title><p>x</p><script>console.error('boom'); nope();</script>",
        )
        .expect("write");

        let ok = load(&good, &dir.join("good.png")).expect("good page loads");
        assert!(ok.console_errors.is_empty(), "{:#?}", ok.console_errors);
        assert!(ok.dom.contains("<p>fine</p>"));
        assert!(ok.screenshot_bytes > 1000);

        let ko = load(&bad, &dir.join("bad.png")).expect("bad page loads too");
        assert!(
            ko.console_errors.iter().any(|e| e.contains("boom")),
            "{:#?}",
            ko.console_errors
        );
        assert!(
            ko.console_errors
                .iter()
                .any(|e| e.contains("Uncaught ReferenceError")),
            "{:#?}",
            ko.console_errors
        );
        assert!(load(&dir.join("missing.html"), &dir.join("m.png")).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
