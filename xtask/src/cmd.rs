//! Running external commands: every command is echoed as `$ cmd args` on
//! stderr before it runs, and a failure names the command and the fix.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Builds a [`Command`] from a program and its arguments.
pub fn cmd<I, S>(program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command.args(args);
    command
}

/// Runs `command` with inherited stdio and fails unless it exits 0.
/// `fix` tells the user what to do about a failure.
pub fn run(command: &mut Command, fix: &str) -> Result<()> {
    let status = status(command)?;
    if !status.success() {
        bail!("`{}` failed ({status}); {fix}", display(command));
    }
    Ok(())
}

/// Runs `command` with inherited stdio and returns its exit status, whatever
/// it is. Fails only if the command cannot be started.
pub fn status(command: &mut Command) -> Result<ExitStatus> {
    eprintln!("$ {}", display(command));
    command
        .status()
        .with_context(|| format!("could not start `{}`", display(command)))
}

/// Runs `command` and returns its stdout; fails (with its stderr) unless it
/// exits 0. `fix` tells the user what to do about a failure.
pub fn capture(command: &mut Command, fix: &str) -> Result<String> {
    eprintln!("$ {}", display(command));
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`; {fix}", display(command)))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}; {fix}",
            display(command),
            output.status,
            summarize(&String::from_utf8_lossy(&output.stderr))
        );
    }
    String::from_utf8(output.stdout)
        .with_context(|| format!("`{}` printed non-UTF-8 output", display(command)))
}

/// The start of a failed command's stderr, without any backtrace.
fn summarize(stderr: &str) -> String {
    const MAX_LINES: usize = 15;
    stderr
        .trim()
        .lines()
        .take_while(|line| !line.starts_with("Stack backtrace:"))
        .take(MAX_LINES)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}

/// The command as a shell-like line: `VAR=value program arg...`.
pub fn display(command: &Command) -> String {
    let envs = command.get_envs().filter_map(|(key, value)| {
        value.map(|value| format!("{}={}", key.to_string_lossy(), quote(value)))
    });
    let dir = command
        .get_current_dir()
        .map(|dir| format!("(cd {} &&", quote(dir.as_os_str())));
    let words = envs
        .chain(std::iter::once(quote(command.get_program())))
        .chain(command.get_args().map(quote));
    let line = words.collect::<Vec<_>>().join(" ");
    match dir {
        Some(dir) => format!("{dir} {line})"),
        None => line,
    }
}

/// Quotes a word for display if the shell would split or expand it.
fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=+:,@%~^".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The first executable called `name` in `$PATH`, as `which` would find it.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let mut command = cmd("cargo", ["install", "--version", "~0.13", "a b", "it's"]);
        command.env("LLVM_PREFIX", "/some/dir");
        assert_eq!(
            display(&command),
            r"LLVM_PREFIX=/some/dir cargo install --version ~0.13 'a b' 'it'\''s'"
        );
    }

    #[test]
    fn display_shows_the_working_directory() {
        let mut command = cmd("cargo", ["test"]);
        command.current_dir("/w s");
        assert_eq!(display(&command), "(cd '/w s' && cargo test)");
    }

    #[test]
    fn run_reports_the_failing_command_and_the_fix() {
        let err = run(&mut cmd("false", [] as [&str; 0]), "try again").err();
        let message = err.map(|err| err.to_string()).unwrap_or_default();
        assert!(message.starts_with("`false` failed"), "{message}");
        assert!(message.ends_with("try again"), "{message}");
    }

    #[test]
    fn summarize_drops_backtraces() {
        let stderr =
            "error: command failed\n\nCaused by:\n    ENOENT\n\nStack backtrace:\n   0: x\n";
        assert_eq!(
            summarize(stderr),
            "error: command failed\n\nCaused by:\n    ENOENT"
        );
    }

    #[test]
    fn capture_returns_stdout() {
        let out = capture(&mut cmd("echo", ["hello"]), "").ok();
        assert_eq!(out.as_deref(), Some("hello\n"));
    }
}
