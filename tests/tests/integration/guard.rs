//! `zombie-trace run -- CMD`, the CI guard, end to end: a command runs under
//! it as it would without it (its output, its exit status), and a parent in
//! the command's tree that leaves a zombie unreaped longer than the grace
//! fails the run, named by PID and command name. Processes outside the tree
//! are never blamed.
//!
//! Every run here goes through the `reaper` harness: should `run` hang or
//! die, the test kills the whole tree and the harness reaps it, so nothing
//! is left under PID 1 (which does not reap on our hosts).

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};
use zombie_trace_tests::client::Workload;
use zombie_trace_tests::client::{bin_path, descendants, stat};

/// The longest any one guarded run may take before the test gives up on it
/// (they all end within a few seconds; attaching takes up to about 1 s).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The exit status of a run with a violation (`--violation-exit` default).
const VIOLATION_EXIT: i32 = 86;

/// The grace by default: a zombie unreaped longer than this is a violation.
const DEFAULT_GRACE_MS: u64 = 1000;

/// How long a leaking job runner holds its zombies: twice the grace.
const HOLD_MS: &str = "2000";

/// The path of a workload binary, as an argument.
fn bin(name: &str) -> String {
    bin_path(name)
        .to_str()
        .expect("the workload path is UTF-8")
        .to_owned()
}

/// The `/proc/<pid>/comm` of a live process.
fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned())
}

fn sigkill(pid: u32) {
    // Safety: kill(2) on a PID of our own tree.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// A `zombie-trace run [OPTIONS] -- COMMAND` in progress, started under
/// the `reaper` harness with stdin from /dev/null.
struct Guard {
    harness: Child,
    options: Vec<String>,
    command: Vec<String>,
    stdout: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: Receiver<()>,
    finished: bool,
}

/// What a finished run left: its exit status and everything it printed.
struct Outcome {
    options: Vec<String>,
    command: Vec<String>,
    /// `run`'s exit status (through the harness, which passes it on).
    code: i32,
    stdout: Vec<String>,
    stderr: String,
}

impl Guard {
    fn start(options: &[&str], command: &[&str]) -> Guard {
        Guard::start_within(&[], options, command)
    }

    /// Like [`Guard::start`], with `zombie-trace` started by `launcher`
    /// (e.g. `unshare ...`, which then execs or forks it).
    fn start_within(launcher: &[&str], options: &[&str], command: &[&str]) -> Guard {
        let mut harness = Command::new(bin_path("reaper"))
            .args(launcher)
            .arg(bin_path("zombie-trace"))
            .arg("run")
            .args(options)
            .arg("--")
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start reaper zombie-trace run");
        let out = harness.stdout.take().expect("piped stdout");
        let (tx, stdout) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = harness.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (done, stderr_done) = channel();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                match sink.lock() {
                    Ok(mut b) => b.extend_from_slice(&chunk[..n]),
                    Err(p) => p.into_inner().extend_from_slice(&chunk[..n]),
                }
            }
            let _ = done.send(());
        });
        Guard {
            harness,
            options: options.iter().map(|s| (*s).to_owned()).collect(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            stdout,
            seen: Vec::new(),
            stderr,
            stderr_done,
            finished: false,
        }
    }

    fn stderr_text(&self) -> String {
        match self.stderr.lock() {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(p) => String::from_utf8_lossy(&p.into_inner()).into_owned(),
        }
    }

    /// The next line on stdout (the command's own, or the verdict), or
    /// `None` at end of output or after `timeout`.
    fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = self.stdout.recv_timeout(timeout).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// The PID of `zombie-trace run` itself (the harness's child).
    fn run_pid(&self) -> u32 {
        let harness = self.harness.id();
        let deadline = Instant::now() + RUN_TIMEOUT;
        loop {
            let children = zombie_trace_tests::workload::children_of(harness as i32);
            if let Some(&pid) = children.first()
                && comm(pid as u32).as_deref() == Some("zombie-trace")
            {
                return pid as u32;
            }
            assert!(
                Instant::now() < deadline,
                "zombie-trace run did not start under the harness {harness}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills `run` and every process of the command's tree, by PID; the
    /// harness reaps them all and exits.
    fn kill_all(&mut self) {
        for pid in descendants(self.harness.id()) {
            sigkill(pid);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.harness.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.harness.kill();
        let _ = self.harness.wait();
    }

    /// Waits for `run` to exit by itself and collects its output; panics
    /// (after killing the tree) when it takes longer than `timeout`.
    fn finish(mut self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.harness.try_wait().expect("try_wait on the harness") {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill_all();
                self.finished = true;
                while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(1)) {
                    self.seen.push(line);
                }
                panic!(
                    "zombie-trace run {:?} -- {:?} did not exit within {timeout:?} \
                     (killed)\nstdout:\n{}\nstderr:\n{}",
                    self.options,
                    self.command,
                    self.seen.join("\n"),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.finished = true;
        // Everything that could write to the pipes is gone with the
        // harness (it waits for every orphan): the readers end soon.
        loop {
            match self.stdout.recv_timeout(Duration::from_secs(5)) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("stdout of zombie-trace run still open 5 s after it exited")
                }
            }
        }
        let _ = self.stderr_done.recv_timeout(Duration::from_secs(5));
        let Some(code) = status.code() else {
            panic!("the reaper harness was killed: {status}");
        };
        Outcome {
            options: std::mem::take(&mut self.options),
            command: std::mem::take(&mut self.command),
            code,
            stdout: std::mem::take(&mut self.seen),
            stderr: self.stderr_text(),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.finished {
            self.kill_all();
        }
    }
}

/// Runs `zombie-trace run --json OPTIONS -- COMMAND` to its end.
fn guard_json(options: &[&str], command: &[&str]) -> Outcome {
    let mut all = vec!["--json"];
    all.extend_from_slice(options);
    Guard::start(&all, command).finish(RUN_TIMEOUT)
}

impl Outcome {
    /// The run, its exit status and its output, for failure messages.
    fn context(&self) -> String {
        format!(
            "zombie-trace run {:?} -- {:?} exited {}\nstdout:\n{}\nstderr:\n{}",
            self.options,
            self.command,
            self.code,
            self.stdout.join("\n"),
            self.stderr
        )
    }

    /// The JSON verdict: the last line of stdout, printed once, after the
    /// command's own output. Checks the fields every verdict has.
    fn verdict(&self) -> Value {
        let ctx = self.context();
        let Some(last) = self.stdout.last() else {
            panic!("no verdict: stdout is empty\n{ctx}");
        };
        let v: Value = serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("the last stdout line is not JSON ({e}): {last:?}\n{ctx}"));
        assert_eq!(v["type"], "verdict", "the last stdout line\n{ctx}");
        let verdicts = self
            .stdout
            .iter()
            .filter(|l| l.contains("\"verdict\""))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["type"] == "verdict")
            .count();
        assert_eq!(verdicts, 1, "exactly one verdict line\n{ctx}");

        assert_eq!(
            v["command"],
            json!(self.command),
            "the command, as run\n{ctx}"
        );
        assert_eq!(
            v["exit_code"],
            json!(self.code),
            "exit_code is the status run exited with\n{ctx}"
        );
        let status = v["status"].as_object().unwrap_or_else(|| {
            panic!("status is an object, {{\"code\":N}} or {{\"signal\":N}}\n{ctx}")
        });
        assert!(
            status.len() == 1
                && (status.get("code").is_some_and(Value::is_u64)
                    || status.get("signal").is_some_and(Value::is_u64)),
            "status is {{\"code\":N}} or {{\"signal\":N}}\n{ctx}"
        );
        let violations = v["violations"]
            .as_array()
            .unwrap_or_else(|| panic!("violations is an array\n{ctx}"));
        assert_eq!(
            v["pass"],
            json!(violations.is_empty()),
            "pass means no violation\n{ctx}"
        );
        assert!(v["grace_ms"].is_u64(), "grace_ms\n{ctx}");
        let reaps = v["reap_latency"]["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("reap_latency.count\n{ctx}"));
        for key in ["p50_us", "p99_us", "max_us"] {
            let value = &v["reap_latency"][key];
            assert!(
                value.is_number() || (reaps == 0 && value.is_null()),
                "reap_latency.{key} is a number (null only without reaps)\n{ctx}"
            );
        }
        assert!(v["processes"].is_u64(), "processes\n{ctx}");
        assert!(v["lost_events"].is_u64(), "lost_events\n{ctx}");
        assert!(v["complete"].is_boolean(), "complete\n{ctx}");
        for violation in violations {
            assert!(
                ["unreaped", "max_pending", "reap_latency"]
                    .contains(&violation["kind"].as_str().unwrap_or_default()),
                "violation kind: {violation}\n{ctx}"
            );
            assert!(violation["parent"]["pid"].is_u64(), "{violation}\n{ctx}");
            assert!(
                violation["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "every violation has a summary: {violation}\n{ctx}"
            );
        }
        v
    }

    fn violations(&self) -> Vec<Value> {
        self.verdict()["violations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The ready line a workload of the command's tree printed.
    fn ready_line(&self, workload: &str) -> Value {
        self.stdout
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["ready"] == true && l["workload"] == workload)
            .unwrap_or_else(|| panic!("no ready line of {workload}\n{}", self.context()))
    }

    /// The number after `label ` in a line the command printed (`top 123`).
    fn labelled_pid(&self, label: &str) -> u64 {
        self.stdout
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{label} "))?.trim().parse().ok())
            .unwrap_or_else(|| panic!("the command printed no `{label} PID`\n{}", self.context()))
    }
}

/// Whether any `"pid"` field anywhere in `v` is `pid`.
fn names_pid(v: &Value, pid: u64) -> bool {
    match v {
        Value::Object(map) => map
            .iter()
            .any(|(k, x)| (k == "pid" && x.as_u64() == Some(pid)) || names_pid(x, pid)),
        Value::Array(items) => items.iter().any(|x| names_pid(x, pid)),
        _ => false,
    }
}

/// Whether `text` has `pid` as a whole number (not inside a longer one).
fn mentions_number(text: &str, pid: u64) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|word| word.parse::<u64>().ok() == Some(pid))
}

/// The diagnosis of a parent with no SIGCHLD handler that never calls wait:
/// `never_waits` while it lives, `no_handler_proc_only` when only /proc is
/// left to go by.
const NEVER_WAITS_VERDICTS: [&str; 2] = ["never_waits", "no_handler_proc_only"];

// ---------------------------------------------------------------------------
// The incident and its fix
// ---------------------------------------------------------------------------

/// The incident: a job runner's SIGCHLD handler was lost in a refactor, and
/// its finished jobs piled up as zombies until fork() failed. Under `run`,
/// the CI job that runs it fails, and the verdict names the runner.
#[test]
fn a_job_runner_that_lost_its_sigchld_handler_fails_the_run_and_is_named() {
    if !privileged() {
        return;
    }
    let runner = bin("job-runner");
    let out = guard_json(&[], &[&runner, "100", HOLD_MS]);
    let ctx = out.context();
    assert_eq!(out.code, VIOLATION_EXIT, "a leak fails the run\n{ctx}");

    let verdict = out.verdict();
    let ready = out.ready_line("job-runner");
    let pid = ready["pid"].as_u64().expect("the runner's pid");
    assert_eq!(verdict["pass"], false, "\n{ctx}");
    assert_eq!(
        verdict["status"],
        json!({"code": 0}),
        "the runner itself exited 0\n{ctx}"
    );
    assert_eq!(verdict["grace_ms"], DEFAULT_GRACE_MS, "\n{ctx}");
    assert_eq!(verdict["max_pending"], Value::Null, "\n{ctx}");
    assert_eq!(verdict["max_reap_latency_ms"], Value::Null, "\n{ctx}");

    let violations = out.violations();
    assert_eq!(
        violations.len(),
        1,
        "one violation, the runner's (nobody else in the tree leaked)\n{ctx}"
    );
    let v = &violations[0];
    assert_eq!(v["kind"], "unreaped", "\n{ctx}");
    assert_eq!(v["parent"]["pid"], pid, "the runner is named\n{ctx}");
    assert_eq!(v["parent"]["comm"], "job-runner", "\n{ctx}");
    assert_eq!(
        v["parent"]["start_ticks"], ready["start_ticks"],
        "PID and start time identify the runner\n{ctx}"
    );
    assert!(
        v["parent"]["cmdline"]
            .as_str()
            .is_some_and(|c| c.contains("job-runner")),
        "the runner's command line\n{ctx}"
    );
    assert_eq!(v["zombies"], 100, "all 100 jobs were left unreaped\n{ctx}");
    assert!(
        v["longest_ms"]
            .as_u64()
            .is_some_and(|ms| ms > DEFAULT_GRACE_MS),
        "a zombie was unreaped longer than the grace\n{ctx}"
    );
    let why = v["verdict"]
        .as_str()
        .unwrap_or_else(|| panic!("the violation says why (diagnosis verdict), not null\n{ctx}"));
    assert!(
        NEVER_WAITS_VERDICTS.contains(&why),
        "a runner with no SIGCHLD handler that never waits: verdict {why:?}\n{ctx}"
    );

    assert!(
        verdict["processes"].as_u64().is_some_and(|n| n >= 101),
        "the runner and its 100 jobs were followed\n{ctx}"
    );
    assert_eq!(verdict["lost_events"], 0, "\n{ctx}");
    assert_eq!(verdict["complete"], true, "\n{ctx}");
}

/// The fix: the same runner with its SIGCHLD handler restored reaps every
/// job at once, and the same CI job passes with the runner's own status.
#[test]
fn the_same_job_runner_with_its_handler_restored_passes() {
    if !privileged() {
        return;
    }
    let runner = bin("job-runner");
    let out = guard_json(&[], &[&runner, "--handler", "100", HOLD_MS]);
    let ctx = out.context();
    assert_eq!(out.code, 0, "the runner's own status\n{ctx}");
    let verdict = out.verdict();
    assert_eq!(verdict["pass"], true, "\n{ctx}");
    assert_eq!(verdict["violations"], json!([]), "\n{ctx}");
    assert_eq!(verdict["status"], json!({"code": 0}), "\n{ctx}");
    assert_eq!(out.ready_line("job-runner")["handler"], 1, "\n{ctx}");
    assert!(
        verdict["reap_latency"]["count"]
            .as_u64()
            .is_some_and(|n| n >= 100),
        "the 100 reaps were measured\n{ctx}"
    );
    assert!(
        verdict["processes"].as_u64().is_some_and(|n| n >= 101),
        "the runner and its 100 jobs were followed\n{ctx}"
    );
}

/// In CI the runner is not started by `run` itself but by `make` or a shell,
/// which has a SIGCHLD handler of its own; `execve` resets it to the default
/// in the runner before the runner's first instruction. The runner never
/// had a handler: the diagnosis must say it never waits, not that it
/// removed a handler.
#[test]
fn a_leaking_runner_started_by_a_shell_is_said_to_never_wait() {
    if !privileged() {
        return;
    }
    let runner = bin("job-runner");
    let script = format!("\"$0\" 20 {HOLD_MS}; true");
    let out = guard_json(&[], &["sh", "-c", &script, &runner]);
    let ctx = out.context();
    assert_eq!(out.code, VIOLATION_EXIT, "\n{ctx}");
    let pid = out.ready_line("job-runner")["pid"]
        .as_u64()
        .expect("the runner's pid");
    let violations = out.violations();
    let Some(v) = violations.iter().find(|v| v["parent"]["pid"] == pid) else {
        panic!("the runner {pid} is not named\n{ctx}");
    };
    let why = v["verdict"].as_str().unwrap_or_default();
    assert!(
        NEVER_WAITS_VERDICTS.contains(&why),
        "the runner never installed a SIGCHLD handler (the shell's was reset by execve): \
         verdict {why:?}, summary {}\n{ctx}",
        v["summary"]
    );
}

/// Without `--json` the verdict is text on stderr, and stdout carries only
/// the command's own output.
#[test]
fn without_json_the_verdict_is_text_on_stderr_and_stdout_is_the_commands_own() {
    if !privileged() {
        return;
    }
    let runner = bin("job-runner");
    let out = Guard::start(&[], &[&runner, "20", HOLD_MS]).finish(RUN_TIMEOUT);
    let ctx = out.context();
    assert_eq!(out.code, VIOLATION_EXIT, "\n{ctx}");
    let ready = out.ready_line("job-runner");
    assert_eq!(
        out.stdout.len(),
        1,
        "stdout is the runner's ready line and nothing else\n{ctx}"
    );
    let pid = ready["pid"].as_u64().expect("the runner's pid");
    assert!(
        mentions_number(&out.stderr, pid) && out.stderr.contains("job-runner"),
        "the text verdict on stderr names the runner {pid} (job-runner)\n{ctx}"
    );
}

// ---------------------------------------------------------------------------
// Whose fault: only the real culprit, only inside the tree
// ---------------------------------------------------------------------------

/// A clean top process (a shell that waits for everything it starts) runs a
/// clean middle shell, which runs the leaking runner: the runner, deep in
/// the tree, is named; neither shell is.
#[test]
fn a_leaking_grandchild_under_a_clean_top_process_is_named_not_the_top() {
    if !privileged() {
        return;
    }
    let runner = bin("job-runner");
    // $0 is the runner's path in both shells.
    let script = format!(
        "echo \"top $$\"; \
         sh -c 'echo \"middle $$\"; \"$0\" 30 {HOLD_MS}; true' \"$0\"; \
         echo done"
    );
    let out = guard_json(&[], &["sh", "-c", &script, &runner]);
    let ctx = out.context();
    assert_eq!(
        out.code, VIOLATION_EXIT,
        "the leak deep in the tree fails the run\n{ctx}"
    );
    let top = out.labelled_pid("top");
    let middle = out.labelled_pid("middle");
    let leaker = out.ready_line("job-runner")["pid"]
        .as_u64()
        .expect("the runner's pid");
    assert!(
        out.stdout.iter().any(|l| l == "done"),
        "the top ran to its end\n{ctx}"
    );

    let violations = out.violations();
    assert_eq!(violations.len(), 1, "only the runner leaked\n{ctx}");
    let v = &violations[0];
    assert_eq!(v["kind"], "unreaped", "\n{ctx}");
    assert_eq!(v["parent"]["pid"], leaker, "the grandchild is named\n{ctx}");
    assert_eq!(v["parent"]["comm"], "job-runner", "\n{ctx}");
    assert_eq!(v["zombies"], 30, "\n{ctx}");
    let verdict = out.verdict();
    for (who, pid) in [("top", top), ("middle", middle)] {
        assert!(
            !names_pid(&verdict["violations"], pid),
            "the clean {who} shell {pid} is blamed\n{ctx}"
        );
    }
}

/// The container without an init: inside a PID namespace orphans go to the
/// namespace's PID 1, not to `run`. A PID 1 that never waits (here `sleep`,
/// exec'd by the shell that started a leaking runner) keeps the runner and
/// its 5 adopted jobs as zombies: both are named, the init as the adopter.
#[test]
fn a_pid_namespace_init_that_never_reaps_is_named_as_the_adopter() {
    if !privileged() {
        return;
    }
    let runner = bin("job-runner");
    // --mount-proc: the runner checks its zombies in its namespace's /proc.
    let script = format!("\"$0\" 5 {HOLD_MS} & exec sleep 5");
    let out = guard_json(
        &[],
        &[
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
            &script,
            &runner,
        ],
    );
    let ctx = out.context();
    assert_eq!(out.code, VIOLATION_EXIT, "\n{ctx}");
    let violations = out.violations();
    // By the program it runs, not by comm: a busybox shell (a container's,
    // or the test VM's) execs its applets as /proc/self/exe, comm `exe`.
    let by_program = |program: &str| {
        violations
            .iter()
            .find(|v| {
                v["parent"]["cmdline"]
                    .as_str()
                    .and_then(|line| line.split_whitespace().next())
                    .is_some_and(|word| word.rsplit('/').next() == Some(program))
            })
            .unwrap_or_else(|| panic!("no violation names {program}\n{ctx}"))
    };
    let init = by_program("sleep");
    assert_eq!(init["kind"], "unreaped", "\n{ctx}");
    assert_eq!(
        init["zombies"], 6,
        "the init owes the runner and its 5 adopted jobs\n{ctx}"
    );
    assert_eq!(init["verdict"], "adopter_does_not_reap", "\n{ctx}");
    let leaker = by_program("job-runner");
    assert_eq!(leaker["zombies"], 5, "\n{ctx}");
    assert_eq!(violations.len(), 2, "nobody else\n{ctx}");
}

/// Inside a container's own PID namespace the kernel's PIDs (which the
/// programs report) and /proc's (which the seed reads) differ, so `run`
/// could not follow the tree there: it refuses at once, with its own exit
/// status and one line saying how to run it, and never starts the command.
/// (The command itself may create PID namespaces: see the test above.)
#[test]
fn inside_a_pid_namespace_run_refuses_and_says_how_to_run_it() {
    if !privileged() {
        return;
    }
    let container = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];
    let marker = std::env::temp_dir().join(format!("zt-guard-ns-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let touch = format!("touch {}", marker.display());
    let out =
        Guard::start_within(&container, &["--json"], &["sh", "-c", &touch]).finish(RUN_TIMEOUT);
    let ctx = out.context();
    assert_eq!(out.code, 125, "run's own failure status\n{ctx}");
    assert!(
        out.stderr.contains("host's PID namespace") && out.stderr.contains("--pid=host"),
        "says why and how\n{ctx}"
    );
    assert!(!marker.exists(), "the command was not started\n{ctx}");
}

/// Daemons started with the classic double fork: the intermediate child is
/// reaped at once, the daemon is orphaned to `run` (the subreaper) and
/// reaped by it when it exits. Nothing is owed longer than the grace.
#[test]
fn double_forked_daemons_pass_with_the_default_grace() {
    if !privileged() {
        return;
    }
    // Ready once every daemon was reaped by the subreaper; ends on stdin EOF.
    let out = guard_json(&[], &[&bin("double-fork"), "5"]);
    let ctx = out.context();
    assert_eq!(out.code, 0, "\n{ctx}");
    let verdict = out.verdict();
    assert_eq!(verdict["pass"], true, "\n{ctx}");
    assert_eq!(verdict["violations"], json!([]), "\n{ctx}");
    assert_eq!(
        out.ready_line("double-fork")["orphans"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    assert!(
        verdict["processes"].as_u64().is_some_and(|n| n >= 11),
        "the workload, 5 intermediates and 5 daemons were followed\n{ctx}"
    );
}

/// A parent that reaps each child 100 ms after it exits is slow but not
/// leaking: it passes with the default grace of 1 s, and the latency shows.
#[test]
fn a_parent_that_reaps_after_100_ms_passes_with_the_default_grace() {
    if !privileged() {
        return;
    }
    let out = guard_json(&[], &[&bin("delayed-reaper"), "5", "100"]);
    let ctx = out.context();
    assert_eq!(out.code, 0, "\n{ctx}");
    let verdict = out.verdict();
    assert_eq!(verdict["pass"], true, "\n{ctx}");
    assert_eq!(verdict["violations"], json!([]), "\n{ctx}");
    let latency = &verdict["reap_latency"];
    assert!(
        latency["count"].as_u64().is_some_and(|n| n >= 5),
        "the 5 delayed reaps were measured\n{ctx}"
    );
    assert!(
        latency["max_us"].as_f64().is_some_and(|us| us >= 90_000.0),
        "the slowest reap took about 100 ms\n{ctx}"
    );
}

/// A leaky process beside the guarded command, one holding zombies from
/// before `run` started and one leaking while it runs, is not in the tree:
/// the clean command passes and the verdict never mentions them.
#[test]
fn a_leaky_process_outside_the_tree_is_never_blamed() {
    if !privileged() {
        return;
    }
    let before = Workload::start("never-waits", &["50"]);
    let runner = bin("job-runner");
    let mut guard = Guard::start(
        &["--json"],
        &["sh", "-c", "\"$0\" --handler 50 0 && sleep 2", &runner],
    );
    // The runner's ready line: the command is running, so traced.
    let first = guard.next_line(RUN_TIMEOUT);
    assert!(
        first.as_deref().is_some_and(|l| l.contains("job-runner")),
        "the guarded runner printed {first:?}"
    );
    let during = Workload::start("never-waits", &["50"]);
    let out = guard.finish(RUN_TIMEOUT);
    let ctx = out.context();
    assert_eq!(out.code, 0, "the clean command passes\n{ctx}");
    let verdict = out.verdict();
    assert_eq!(verdict["pass"], true, "\n{ctx}");
    assert_eq!(verdict["violations"], json!([]), "\n{ctx}");
    for leaker in [&before, &during] {
        let pid = u64::from(leaker.pid());
        assert!(
            !names_pid(&verdict, pid),
            "the outsider never-waits {pid} is in the verdict\n{ctx}"
        );
    }
    assert!(
        !out.stderr.contains("never-waits"),
        "stderr names an outsider\n{ctx}"
    );
    drop((before, during));
}

// ---------------------------------------------------------------------------
// The command's status, errors and signals
// ---------------------------------------------------------------------------

/// With no leak, `run` exits exactly as the command did, 128+N for a
/// signal, and the verdict records it.
#[test]
fn the_commands_exit_status_comes_through() {
    if !privileged() {
        return;
    }
    for (script, code, status) in [
        ("exit 0", 0, json!({"code": 0})),
        ("exit 1", 1, json!({"code": 1})),
        ("exit 7", 7, json!({"code": 7})),
        (
            "kill -TERM $$",
            128 + libc::SIGTERM,
            json!({"signal": libc::SIGTERM}),
        ),
    ] {
        let out = guard_json(&[], &["sh", "-c", script]);
        let ctx = out.context();
        assert_eq!(out.code, code, "sh -c {script:?}\n{ctx}");
        let verdict = out.verdict();
        assert_eq!(verdict["status"], status, "sh -c {script:?}\n{ctx}");
        assert_eq!(verdict["pass"], true, "no zombie, no violation\n{ctx}");
    }
}

/// A leak in a command that fails anyway: the command's own status is kept
/// (the failure the CI job shows is the command's), and the verdict still
/// says the run did not pass, naming the leaker.
#[test]
fn a_leak_and_a_failing_command_keep_the_commands_status() {
    if !privileged() {
        return;
    }
    let runner = bin("job-runner");
    let script = format!("\"$0\" 20 {HOLD_MS}; exit 1");
    let out = guard_json(&[], &["sh", "-c", &script, &runner]);
    let ctx = out.context();
    assert_eq!(
        out.code, 1,
        "the command's failure, not {VIOLATION_EXIT}\n{ctx}"
    );
    let verdict = out.verdict();
    assert_eq!(verdict["pass"], false, "\n{ctx}");
    assert_eq!(verdict["status"], json!({"code": 1}), "\n{ctx}");
    let leaker = out.ready_line("job-runner")["pid"]
        .as_u64()
        .expect("the runner's pid");
    assert!(
        out.violations()
            .iter()
            .any(|v| v["kind"] == "unreaped" && v["parent"]["pid"] == leaker),
        "the runner {leaker} is named\n{ctx}"
    );
}

#[test]
fn a_command_that_is_not_found_exits_127_and_says_so() {
    if !privileged() {
        return;
    }
    let name = format!("zt-no-such-command-{}", std::process::id());
    let path = format!("/nonexistent-zt-dir/{name}");
    for command in [name.as_str(), path.as_str()] {
        let out = Guard::start(&[], &[command, "arg"]).finish(RUN_TIMEOUT);
        let ctx = out.context();
        assert_eq!(out.code, 127, "{command}\n{ctx}");
        let said = out.stderr.to_lowercase();
        assert!(
            out.stderr.contains(&name)
                && (said.contains("not found") || said.contains("no such file")),
            "stderr says that {command} was not found\n{ctx}"
        );
    }
}

#[test]
fn a_command_that_is_not_executable_exits_126_and_says_so() {
    if !privileged() {
        return;
    }
    let scratch = Scratch::new();
    let file = scratch.path("not-executable.sh");
    std::fs::write(&file, "#!/bin/sh\nexit 0\n").expect("write the script");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
        .expect("drop the x bits");
    let path = file.to_str().expect("UTF-8 path");
    let out = Guard::start(&[], &[path]).finish(RUN_TIMEOUT);
    let ctx = out.context();
    assert_eq!(out.code, 126, "\n{ctx}");
    let said = out.stderr.to_lowercase();
    assert!(
        out.stderr.contains("not-executable.sh")
            && (said.contains("permission denied") || said.contains("not executable")),
        "stderr says that {path} cannot be executed\n{ctx}"
    );
}

/// Ctrl-C on a CI job: SIGINT to `run` stops the command (forwarded), and
/// the verdict is still printed; the exit status is the command's, 130.
#[test]
fn sigint_stops_the_command_and_still_prints_the_verdict() {
    if !privileged() {
        return;
    }
    let guard = Guard::start(&["--json"], &["sleep", "30"]);
    let run = guard.run_pid();
    let deadline = Instant::now() + RUN_TIMEOUT;
    let sleep = loop {
        if let Some(pid) = descendants(run)
            .into_iter()
            .find(|&p| comm(p).as_deref() == Some("sleep"))
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "run {run} never started sleep");
        std::thread::sleep(Duration::from_millis(10));
    };
    let sleep_start = stat(sleep).map(|s| s.starttime);
    let sent = Instant::now();
    // Safety: kill(2) on the run we started.
    unsafe { libc::kill(run as i32, libc::SIGINT) };
    let out = guard.finish(Duration::from_secs(20));
    let took = sent.elapsed();
    let ctx = out.context();
    assert_eq!(out.code, 128 + libc::SIGINT, "\n{ctx}");
    assert!(
        took < Duration::from_secs(10),
        "stopped after {took:?}\n{ctx}"
    );
    assert!(
        stat(sleep).map(|s| s.starttime) != sleep_start || sleep_start.is_none(),
        "sleep {sleep} is still there\n{ctx}"
    );
    let verdict = out.verdict();
    assert_eq!(
        verdict["status"],
        json!({"signal": libc::SIGINT}),
        "sleep was stopped by the forwarded SIGINT\n{ctx}"
    );
    assert_eq!(verdict["violations"], json!([]), "\n{ctx}");
}

// ---------------------------------------------------------------------------
// JUnit
// ---------------------------------------------------------------------------

/// A numeric attribute of a JUnit element.
fn count_attr(node: roxmltree::Node, name: &str, xml: &str) -> u64 {
    node.attribute(name)
        .unwrap_or_else(|| {
            panic!(
                "<{}> has no {name} attribute:\n{xml}",
                node.tag_name().name()
            )
        })
        .parse()
        .unwrap_or_else(|e| {
            panic!(
                "<{}> {name} is not a count ({e}):\n{xml}",
                node.tag_name().name()
            )
        })
}

fn children_named<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    node.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// Checks the common JUnit shape (`testsuites` > `testsuite` > `testcase`,
/// counts consistent with the children) and returns the `message` of every
/// `<failure>`.
fn junit_failures(xml: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml)
        .unwrap_or_else(|e| panic!("--junit wrote invalid XML ({e}):\n{xml}"));
    let root = doc.root_element();
    assert_eq!(
        root.tag_name().name(),
        "testsuites",
        "the root element:\n{xml}"
    );
    let suites: Vec<_> = children_named(root, "testsuite").collect();
    assert!(
        suites
            .iter()
            .any(|s| s.attribute("name") == Some("zombie-trace")),
        "a <testsuite name=\"zombie-trace\">:\n{xml}"
    );
    let (mut tests, mut failures, mut errors) = (0, 0, 0);
    let mut messages = Vec::new();
    for suite in &suites {
        assert!(
            suite.attribute("name").is_some(),
            "every testsuite has a name:\n{xml}"
        );
        let cases: Vec<_> = children_named(*suite, "testcase").collect();
        let failed = cases
            .iter()
            .filter(|c| children_named(**c, "failure").next().is_some())
            .count() as u64;
        let errored = cases
            .iter()
            .filter(|c| children_named(**c, "error").next().is_some())
            .count() as u64;
        assert_eq!(
            count_attr(*suite, "tests", xml),
            cases.len() as u64,
            "tests=\n{xml}"
        );
        assert_eq!(
            count_attr(*suite, "failures", xml),
            failed,
            "failures=\n{xml}"
        );
        assert_eq!(count_attr(*suite, "errors", xml), errored, "errors=\n{xml}");
        tests += cases.len() as u64;
        failures += failed;
        errors += errored;
        for case in &cases {
            assert!(
                case.attribute("name").is_some(),
                "every testcase has a name:\n{xml}"
            );
            for failure in children_named(*case, "failure") {
                let message = failure
                    .attribute("message")
                    .unwrap_or_else(|| panic!("a <failure> without a message:\n{xml}"));
                messages.push(message.to_owned());
            }
        }
    }
    for (name, total) in [("tests", tests), ("failures", failures), ("errors", errors)] {
        if root.attribute(name).is_some() {
            assert_eq!(
                count_attr(root, name, xml),
                total,
                "<testsuites {name}=>\n{xml}"
            );
        }
    }
    assert!(tests >= 1, "a suite with at least one test case:\n{xml}");
    messages
}

/// `--junit FILE` is JUnit XML that CI systems read: a passing run is a
/// suite with no failure; a failing run has one `<failure>` per violation,
/// whose message names the leaking parent's PID.
#[test]
fn junit_output_has_the_common_shape_for_a_pass_and_a_failure() {
    if !privileged() {
        return;
    }
    let scratch = Scratch::new();
    let runner = bin("job-runner");

    let passing = scratch.path("pass.xml");
    let out = guard_json(
        &["--junit", passing.to_str().expect("UTF-8 path")],
        &[&runner, "--handler", "20", "0"],
    );
    assert_eq!(out.code, 0, "\n{}", out.context());
    let xml = std::fs::read_to_string(&passing)
        .unwrap_or_else(|e| panic!("--junit {}: {e}\n{}", passing.display(), out.context()));
    let messages = junit_failures(&xml);
    assert!(messages.is_empty(), "a passing run has no failure:\n{xml}");

    let failing = scratch.path("fail.xml");
    let out = guard_json(
        &["--junit", failing.to_str().expect("UTF-8 path")],
        &[&runner, "20", HOLD_MS],
    );
    assert_eq!(out.code, VIOLATION_EXIT, "\n{}", out.context());
    let leaker = out.ready_line("job-runner")["pid"]
        .as_u64()
        .expect("the runner's pid");
    let xml = std::fs::read_to_string(&failing)
        .unwrap_or_else(|e| panic!("--junit {}: {e}\n{}", failing.display(), out.context()));
    let messages = junit_failures(&xml);
    assert_eq!(
        messages.len(),
        out.violations().len(),
        "one <failure> per violation:\n{xml}\n{}",
        out.context()
    );
    assert!(
        messages.iter().any(|m| mentions_number(m, leaker)),
        "a failure message names the runner {leaker}:\n{xml}"
    );
}
