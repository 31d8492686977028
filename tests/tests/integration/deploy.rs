//! What `deploy/` ships is checked by the tools that will read it.

use std::path::PathBuf;
use std::process::Command;

use crate::common::can_run;

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

/// promtool, or `None` when the test cannot run (a failure with CI=true).
fn promtool() -> Option<PathBuf> {
    let bin = zombie_trace_tests::prometheus::promtool_bin();
    let missing = bin.is_none().then(|| {
        "promtool is not installed (`cargo xtask test` installs the prometheus package)".to_owned()
    });
    if can_run(missing, None) { bin } else { None }
}

fn run_ok(command: &mut Command) -> String {
    let out = command.output().expect("run the checker");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?}: {text}");
    text
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = promtool() else {
        return;
    };
    let checked = run_ok(
        Command::new(&promtool)
            .args(["check", "rules"])
            .arg(deploy("prometheus/zombie-trace.rules.yml")),
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run_ok(
        Command::new(&promtool)
            .args(["test", "rules"])
            .arg(deploy("prometheus/zombie-trace.rules.test.yml")),
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
    run_ok(
        Command::new(&promtool)
            .args(["check", "config"])
            .arg(deploy("prometheus/prometheus.example.yml")),
    );
}
