//! `zombie-trace top`, the real binary on the real kernel, in a terminal:
//! tmux gives it one (a pane of 100x30 on a tmux server of its own) and
//! shows what it drew.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use zombie_trace_tests::client::{Workload, bin_path};

use crate::common::{can_run, privileged};

/// A tmux server of this test's own (its own socket), killed when dropped:
/// the pane's processes get SIGHUP from it.
pub(crate) struct Tmux {
    pub(crate) socket: String,
}

impl Tmux {
    fn tmux(&self, args: &[&str]) -> Output {
        match Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
        {
            Ok(out) => out,
            Err(err) => panic!("running tmux {args:?}: {err}"),
        }
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.tmux(args);
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn screen(&self) -> String {
        self.ok(&["capture-pane", "-p", "-t", "top"])
    }

    pub(crate) fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        self.ok(&args);
    }

    /// Polls the pane until `done` holds (returns when), or panics with
    /// the last screen after `timeout`.
    pub(crate) fn until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

pub(crate) fn tmux_problem() -> Option<String> {
    match Command::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        _ => Some(
            "tmux is not installed (`cargo xtask test` installs it; or apt-get install tmux)"
                .to_owned(),
        ),
    }
}

/// The pending count of `pid`'s row in the parents table, if shown.
pub(crate) fn pending_of(screen: &str, pid: u32) -> Option<u32> {
    let pid = pid.to_string();
    screen.lines().find_map(|line| {
        let mut words = line.trim_start_matches('>').split_whitespace();
        (words.next()? == pid).then_some(())?;
        words.next()?; // comm
        words.next()?.parse().ok()
    })
}

#[test]
fn top_shows_a_leak_filters_explains_and_restores_the_terminal() {
    if !privileged() || !can_run(tmux_problem(), None) {
        return;
    }
    let tmux = Tmux {
        socket: format!("zombie-trace-test-{}", std::process::id()),
    };
    let bin = bin_path("zombie-trace");
    let command = format!(
        "{} top --threshold 20; echo \"top exited with status $?\"; sleep 120",
        bin.display()
    );
    tmux.ok(&[
        "new-session",
        "-d",
        "-x",
        "100",
        "-y",
        "30",
        "-s",
        "top",
        &command,
    ]);
    tmux.until("top drew its screen", Duration::from_secs(20), |s| {
        s.contains("zombie-trace top  live") && s.contains("parents owing reaps")
    });
    assert_eq!(
        tmux.ok(&["display", "-p", "-t", "top", "#{alternate_on}"])
            .trim(),
        "1"
    );

    let workload = Workload::start("never-waits", &["25"]);
    let ready = Instant::now();
    let pid = workload.pid();
    let shown = tmux.until(
        "the workload with its 25 pending zombies",
        Duration::from_secs(10),
        |s| pending_of(s, pid) == Some(25),
    );
    let latency = shown.duration_since(ready);
    eprintln!("top showed PID {pid} with 25 pending {latency:?} after it was ready");
    assert!(
        latency <= Duration::from_secs(2),
        "shown {latency:?} after ready"
    );
    let screen = tmux.screen();
    assert!(screen.contains("never waits"), "{screen}");

    // `/` filters to it.
    tmux.keys(&["/"]);
    tmux.keys(&[&pid.to_string()]);
    tmux.keys(&["Enter"]);
    let filtered = format!("[filter: {pid}]");
    tmux.until("the filter", Duration::from_secs(3), |s| {
        s.contains(&filtered) && s.contains("1 of ")
    });
    let screen = tmux.screen();
    let rows: Vec<&str> = screen
        .lines()
        .filter(|l| l.starts_with("  ") || l.starts_with('>'))
        .filter(|l| {
            let first = l.trim_start_matches('>').split_whitespace().next();
            first.is_some_and(|w| w.parse::<u32>().is_ok())
        })
        .collect();
    assert_eq!(pending_of(&screen, pid), Some(25), "{screen}");
    assert!(
        rows.len() == 1 && rows[0].contains(&pid.to_string()),
        "only PID {pid} shown: {rows:?}\n{screen}"
    );

    // Enter opens its detail: explain's diagnosis.
    tmux.keys(&["Enter"]);
    let why = format!("PID {pid} never waits: it has no SIGCHLD handler");
    tmux.until("the detail pane", Duration::from_secs(3), |s| {
        s.contains(&why) && s.contains("SIGCHLD: default") && s.contains("wait calls: 0")
    });
    let screen = tmux.screen();
    assert!(
        screen.contains(&format!("PID {pid} (never-waits): why, and what to do")),
        "{screen}"
    );
    eprintln!("the screen with the detail open:\n{screen}");

    // q quits with status 0, and the terminal is back.
    tmux.keys(&["q"]);
    tmux.until("top's exit", Duration::from_secs(10), |s| {
        s.contains("top exited with status")
    });
    let screen = tmux.screen();
    assert!(screen.contains("top exited with status 0"), "{screen}");
    assert!(!screen.contains("parents owing reaps"), "{screen}");
    assert_eq!(
        tmux.ok(&["display", "-p", "-t", "top", "#{alternate_on}"])
            .trim(),
        "0"
    );
    drop(workload);
}

#[test]
fn top_without_a_terminal_says_so_and_suggests_watch() {
    let out = match Command::new(bin_path("zombie-trace"))
        .arg("top")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(err) => panic!("running zombie-trace top: {err}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a TTY"), "{stderr}");
    assert!(stderr.contains("zombie-trace watch"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn top_replay_of_a_file_that_is_not_a_recording_exits_2_with_one_line() {
    let dir = std::env::temp_dir().join(format!("zombie-trace-top-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("not-a-recording.txt");
    if let Err(err) = std::fs::write(&file, "hello\n") {
        panic!("writing {}: {err}", file.display());
    }
    let out = match Command::new(bin_path("zombie-trace"))
        .arg("top")
        .arg("--replay")
        .arg(&file)
        .output()
    {
        Ok(out) => out,
        Err(err) => panic!("running zombie-trace top --replay: {err}"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not-a-recording.txt"), "{stderr}");
}
