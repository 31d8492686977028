//! `zombie-trace run -- CMD`: runs a command as a regression test of its
//! process tree's reaping (for CI): a zombie left unreaped longer than the
//! grace fails the run.

use std::cell::Cell;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use zombie_trace::engine::{Consumer, Context};
use zombie_trace::model::Change;
use zombie_trace::views::guard::{CommandStatus, GuardRules, GuardView, Verdict};

use zombie_trace::kernel::check::privilege_problem_of;

use super::{TraceArgs, runtime};

/// The status `run` exits with when the command succeeded but its tree
/// broke a rule: outside the statuses commands commonly use (0, 1, 2, the
/// sysexits 64–78, timeout's 124, 126, 127, 128+N, 255).
pub const VIOLATION_EXIT: u8 = 86;

/// The status `run` exits with when it fails itself (no privileges, cannot
/// trace): apart from CMD's statuses, as `env` and `timeout` use 125.
pub const OWN_FAILURE_EXIT: u8 = 125;

/// How often the tree is checked (and orphans reaped): well under the
/// grace, so a violation is seen within a tenth of a second of it.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// How long a zombie in the tree may stay unreaped (`1s`, `250ms`).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Fail when one parent owes more than N zombies at any moment.
    #[arg(long, value_name = "N")]
    max_pending: Option<u32>,
    /// Fail when the tree's p99 reap latency is above this (`20ms`).
    #[arg(long, value_parser = humantime::parse_duration)]
    max_reap_latency: Option<Duration>,
    /// After CMD exits, wait for the rest of its tree too.
    #[arg(long)]
    wait_descendants: bool,
    /// Print the verdict as one JSON line on stdout, after CMD's output.
    #[arg(long)]
    json: bool,
    /// Also write the verdict as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Exit status when the tree broke a rule and CMD itself succeeded.
    #[arg(long, default_value_t = VIOLATION_EXIT, value_name = "N")]
    violation_exit: u8,
    #[command(flatten)]
    trace: TraceArgs,
    /// The command and its arguments (after `--`).
    #[arg(required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// The guard's view, and what the stop condition reads of it.
struct Guard {
    view: GuardView,
    tree_alive: Rc<Cell<bool>>,
}

impl Consumer for Guard {
    fn on_change(&mut self, change: &Change) {
        self.view.on_change(change);
    }

    fn after_batch(&mut self, ctx: &mut Context<'_>) -> std::io::Result<()> {
        self.view.observe(ctx);
        self.tree_alive.set(self.view.tree_alive());
        Ok(())
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>) -> std::io::Result<()> {
        self.after_batch(ctx)
    }

    fn on_end(&mut self, ctx: &mut Context<'_>) -> std::io::Result<()> {
        self.after_batch(ctx)
    }
}

/// Reaps every child that has exited (CMD, and orphans of its tree that
/// came back to us as the subreaper); records CMD's status.
fn reap_children(cmd_pid: i32, status: &Cell<Option<CommandStatus>>) {
    loop {
        let mut raw = 0;
        // SAFETY: waitpid with a valid pointer to an int.
        let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if pid == cmd_pid {
            let decoded = if libc::WIFSIGNALED(raw) {
                CommandStatus::Signal(libc::WTERMSIG(raw))
            } else {
                CommandStatus::Code(libc::WEXITSTATUS(raw))
            };
            status.set(Some(decoded));
        }
    }
}

/// `run`: its own failures (no privileges, cannot trace) exit
/// [`OWN_FAILURE_EXIT`], apart from any status of CMD's.
pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(problem) = privilege_problem_of("run") {
        eprintln!("zombie-trace: {problem}");
        return Ok(ExitCode::from(OWN_FAILURE_EXIT));
    }
    match runtime().and_then(|rt| rt.block_on(run(args))) {
        Ok(code) => Ok(code),
        Err(err) => {
            eprintln!("zombie-trace: {err:#}");
            Ok(ExitCode::from(OWN_FAILURE_EXIT))
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        anyhow::bail!(
            "cannot become a child subreaper: {}",
            std::io::Error::last_os_error()
        );
    }
    let rules = GuardRules {
        grace_ns: u64::try_from(args.grace.as_nanos()).unwrap_or(u64::MAX),
        max_pending: args.max_pending,
        max_reap_latency_ns: args
            .max_reap_latency
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
    };
    // Signals are ours from the start: the command gets them forwarded.
    let mut sigchld = signal(SignalKind::child()).context("installing the SIGCHLD handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    // Attached and seeded before the command starts: its whole life is seen.
    let mut session = args.trace.start_session()?;
    let program = &args.command[0];
    let child = match Command::new(program).args(&args.command[1..]).spawn() {
        Ok(child) => child,
        Err(err) => {
            let (code, what) = match err.kind() {
                std::io::ErrorKind::NotFound => (127, "command not found"),
                _ => (126, "cannot run the command"),
            };
            eprintln!("zombie-trace: {what}: {program}: {err}");
            return Ok(ExitCode::from(code));
        }
    };
    let cmd_pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    // Reaped by `reap_children`, never by `child.wait()`.
    drop(child);
    let status: Rc<Cell<Option<CommandStatus>>> = Rc::new(Cell::new(None));
    let tree_alive = Rc::new(Cell::new(true));
    let mut guard = Guard {
        view: GuardView::new(std::process::id(), rules),
        tree_alive: Rc::clone(&tree_alive),
    };
    let wait_descendants = args.wait_descendants;
    let stop = {
        let status = Rc::clone(&status);
        async move {
            let mut poll = tokio::time::interval(CHECK_INTERVAL);
            loop {
                let forward = tokio::select! {
                    _ = sigchld.recv() => None,
                    _ = poll.tick() => None,
                    _ = sigint.recv() => Some(libc::SIGINT),
                    _ = sigterm.recv() => Some(libc::SIGTERM),
                    _ = sighup.recv() => Some(libc::SIGHUP),
                };
                if let Some(sig) = forward {
                    // SAFETY: kill(2) on our own child's PID.
                    unsafe { libc::kill(cmd_pid, sig) };
                }
                reap_children(cmd_pid, &status);
                if status.get().is_some() && (!wait_descendants || !tree_alive.get()) {
                    return;
                }
            }
        }
    };
    session
        .run_until_stop(&mut guard, stop, Some(CHECK_INTERVAL), None)
        .await?;
    reap_children(cmd_pid, &status);
    let Some(command_status) = status.get() else {
        anyhow::bail!("the command's status was lost");
    };
    let verdict = Verdict::new(
        args.command.clone(),
        command_status,
        rules,
        guard.view.judgement(),
        i32::from(args.violation_exit),
    );
    if let Some(path) = &args.junit {
        std::fs::write(path, verdict.to_junit())
            .with_context(|| format!("writing the JUnit report {}", path.display()))?;
    }
    eprint!("{}", verdict.to_text());
    if args.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &verdict)?;
        writeln!(out)?;
        out.flush()?;
    }
    Ok(ExitCode::from(u8::try_from(verdict.exit_code).unwrap_or(1)))
}
