//! What packages ship besides the binary, as the binary itself produces it:
//! `--version`, the man pages and the shell completions (`zombie-trace
//! generate`, which `cargo xtask dist` runs). Nothing here needs privileges.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use zombie_trace_tests::client::bin_path;

/// A fresh directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "zombie-trace-packaging-{}-{}",
            std::process::id(),
            test_name().replace("::", "-")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn zombie_trace(args: &[&str]) -> String {
    let output = Command::new(bin_path("zombie-trace"))
        .args(args)
        .output()
        .expect("run zombie-trace");
    assert!(
        output.status.success(),
        "zombie-trace {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[test]
fn version_names_the_commit_and_the_embedded_ebpf_object() {
    let version = zombie_trace(&["--version"]);
    let lines: Vec<&str> = version.lines().collect();
    assert_eq!(lines.len(), 3, "{version}");
    assert_eq!(
        lines[0],
        format!("zombie-trace {}", env!("CARGO_PKG_VERSION"))
    );
    let commit = lines[1].strip_prefix("commit: ").expect("a commit line");
    assert!(
        commit == "unknown" || (commit.bytes().all(|b| b.is_ascii_hexdigit()) && commit.len() >= 7),
        "{version}"
    );
    // The library the tests link is the same build as the binary: the same
    // object, which its unit tests check against its SHA-256.
    let id = zombie_trace::build_info::EBPF_BUILD_ID;
    assert_eq!(id.len(), 16);
    assert_eq!(
        lines[2],
        format!("eBPF object: {id} (SHA-256 prefix of the embedded object)")
    );
    // `-V` is the short form.
    assert_eq!(zombie_trace(&["-V"]).trim(), lines[0]);
    // Built in a git checkout (the workspace's own), the commit is the one
    // checked out; outside one (a source tarball, a VM) there is none to
    // compare with.
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|output| output.status.success())?;
        Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent();
    let in_checkout = git(&["rev-parse", "--show-toplevel"]).is_some_and(|top| {
        workspace.and_then(|dir| dir.canonicalize().ok()) == Path::new(&top).canonicalize().ok()
    });
    if in_checkout {
        let head = git(&["rev-parse", "--short=12", "HEAD"]);
        assert_eq!(Some(commit), head.as_deref(), "the commit checked out");
    }
}

#[test]
fn generated_man_pages_document_the_real_flags() {
    let scratch = Scratch::new();
    let listed = zombie_trace(&["generate", "man", &scratch.0.to_string_lossy()]);
    for page in [
        "zombie-trace.1",
        "zombie-trace-watch.1",
        "zombie-trace-record.1",
    ] {
        let path = scratch.0.join(page);
        assert!(listed.contains(&*path.to_string_lossy()), "{listed}");
        assert!(path.is_file(), "{} missing", path.display());
    }
    let watch = std::fs::read_to_string(scratch.0.join("zombie-trace-watch.1")).expect("read");
    assert!(watch.contains(r"\-\-threshold"), "{watch}");
    // `generate` documents the others, not itself, and is not in --help.
    assert!(
        !scratch.0.join("zombie-trace-generate.1").exists(),
        "{listed}"
    );
    assert!(!zombie_trace(&["--help"]).contains("generate"));
    // A page man-db can render, if man is here.
    if let Some(rendered) = render_man(&scratch.0.join("zombie-trace-watch.1")) {
        assert!(rendered.contains("--threshold"), "{rendered}");
    }
}

/// `man -l PAGE` as plain text, or None when man is not installed.
fn render_man(page: &Path) -> Option<String> {
    let output = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .ok()?;
    assert!(
        output.status.success(),
        "man -l {}: {output:?}",
        page.display()
    );
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The bash completion script, sourced into a real bash, completes
/// `zombie-trace re` to the two commands that start so.
#[test]
fn bash_completion_completes_commands() {
    let bash = Command::new("bash").arg("--version").output();
    let problem = match bash {
        Ok(out) if out.status.success() => None,
        _ => Some("bash is not installed".to_owned()),
    };
    if !can_run(problem, None) {
        return;
    }
    let scratch = Scratch::new();
    zombie_trace(&["generate", "completions", &scratch.0.to_string_lossy()]);
    let script = scratch.0.join("zombie-trace.bash");
    let complete = |line: &str| -> String {
        let words = line.split(' ').collect::<Vec<_>>();
        let program = format!(
            r#"source "$1"
# The function the script registered for zombie-trace, as bash calls it.
spec=$(complete -p zombie-trace) || exit 3
function=${{spec#*-F }}
function=${{function%% *}}
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE={line:?}
COMP_POINT={point}
"$function" zombie-trace "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
            words = words.join(" "),
            cword = words.len() - 1,
            point = line.len(),
        );
        let output = Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &program, "bash"])
            .arg(&script)
            .output()
            .expect("run bash");
        assert!(output.status.success(), "bash: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let mut offered: Vec<String> = complete("zombie-trace re")
        .lines()
        .map(str::to_owned)
        .collect();
    offered.sort();
    assert_eq!(offered, ["record", "report"]);
    let flags = complete("zombie-trace watch --thr");
    assert_eq!(flags.trim(), "--threshold");
}
