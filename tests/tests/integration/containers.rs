//! Culprits named by where they run. A leaker is placed in cgroups laid out
//! exactly as systemd, docker (both cgroup drivers), Kubernetes with
//! containerd, and podman lay them out, in every cgroup hierarchy this
//! machine has (hybrid: systemd's `name=systemd` v1 hierarchy, the v1
//! `pids` controller and the v2 mount; v2 only: the one tree). Each view
//! must name it by unit, container and pod.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use zombie_trace::host::mounts::read_mounts;
use zombie_trace_tests::client::{Workload, bin_path};

use crate::common::*;
use crate::latency::LatencyCommand;
use crate::serve::{Serve, prometheus_can_run, sample};
use crate::top::{Tmux, pending_of, tmux_problem};

/// The roots of the hierarchies a process's names can come from: every v2
/// mount, and the v1 hierarchies of systemd and of the `pids` controller.
fn hierarchy_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    for m in read_mounts() {
        let wanted = m.fs_type == "cgroup2"
            || (m.fs_type == "cgroup" && (m.has_option("name=systemd") || m.has_option("pids")));
        if wanted && !roots.contains(&m.mount_point) {
            roots.push(m.mount_point.clone());
        }
    }
    roots
}

/// A cgroup path created in every hierarchy, removed (deepest first) on
/// drop once the processes in it are gone.
struct PlacedCgroup {
    dirs: Vec<PathBuf>,
    created: Vec<PathBuf>,
}

impl PlacedCgroup {
    fn create(path: &str) -> PlacedCgroup {
        let mut placed = PlacedCgroup {
            dirs: Vec::new(),
            created: Vec::new(),
        };
        for root in hierarchy_roots() {
            let mut dir = root.clone();
            for part in path.trim_start_matches('/').split('/') {
                dir.push(part);
                if !dir.exists() {
                    if let Err(e) = std::fs::create_dir(&dir) {
                        panic!("cannot create cgroup {}: {e}", dir.display());
                    }
                    placed.created.push(dir.clone());
                }
            }
            placed.dirs.push(dir);
        }
        assert!(
            !placed.dirs.is_empty(),
            "no cgroup hierarchy is mounted here (/proc/mounts has no cgroup2 and no v1 name=systemd or pids)"
        );
        placed
    }
}

impl PlacedCgroup {
    /// Limits the tasks in it to `max` where a hierarchy has the pids
    /// controller (v1 `pids`; v2 once enabled on the way down): that
    /// directory, to read `pids.current` from.
    fn limit_pids(&self, max: u64) -> PathBuf {
        for dir in &self.dirs {
            if !dir.join("pids.max").exists() && dir.join("cgroup.controllers").exists() {
                let mut way: Vec<&std::path::Path> = dir
                    .ancestors()
                    .skip(1)
                    .take_while(|a| a.join("cgroup.controllers").exists())
                    .collect();
                way.reverse();
                for ancestor in way {
                    let _ = std::fs::write(ancestor.join("cgroup.subtree_control"), "+pids");
                }
            }
            if dir.join("pids.max").exists() {
                std::fs::write(dir.join("pids.max"), max.to_string())
                    .unwrap_or_else(|e| panic!("writing {}/pids.max: {e}", dir.display()));
                return dir.clone();
            }
        }
        panic!("no hierarchy has the pids controller for {:?}", self.dirs)
    }
}

impl Drop for PlacedCgroup {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            // The workload was reaped before: the cgroup is empty.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A 64-hex-digit container id, new for each run.
fn container_id(salt: u32) -> String {
    let seed = u64::from(std::process::id()) << 32 | u64::from(salt);
    (0..4)
        .map(|i| {
            format!(
                "{:016x}",
                seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(i * 13) ^ i as u64
            )
        })
        .collect()
}

fn pod_uid(salt: u32) -> String {
    let id = container_id(salt ^ 0x5a5a);
    format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    )
}

/// What the views must say about a leaker placed at a path.
struct Expected {
    path: String,
    unit: Option<String>,
    container_id: Option<String>,
    runtime: Option<&'static str>,
    pod_uid: Option<String>,
    qos: Option<&'static str>,
}

/// The layout whose description starts with `name`.
fn layout(name: &str) -> Expected {
    layouts()
        .into_iter()
        .find(|(l, _)| l.starts_with(name))
        .map(|(_, want)| want)
        .unwrap_or_else(|| panic!("no layout {name}"))
}

fn layouts() -> Vec<(&'static str, Expected)> {
    let n = std::process::id();
    let docker = container_id(1);
    let docker_fs = container_id(2);
    let containerd = container_id(3);
    let podman = container_id(4);
    let pod = pod_uid(5);
    vec![
        (
            "a systemd service",
            Expected {
                path: format!("/system.slice/zt-test-{n}.service"),
                unit: Some(format!("zt-test-{n}.service")),
                container_id: None,
                runtime: None,
                pod_uid: None,
                qos: None,
            },
        ),
        (
            "docker with the systemd cgroup driver",
            Expected {
                path: format!("/system.slice/docker-{docker}.scope"),
                unit: Some(format!("docker-{docker}.scope")),
                container_id: Some(docker.clone()),
                runtime: Some("docker"),
                pod_uid: None,
                qos: None,
            },
        ),
        (
            "docker with the cgroupfs driver",
            Expected {
                path: format!("/docker/{docker_fs}"),
                unit: None,
                container_id: Some(docker_fs.clone()),
                runtime: Some("docker"),
                pod_uid: None,
                qos: None,
            },
        ),
        (
            "a Kubernetes pod on containerd (systemd driver, Burstable)",
            Expected {
                path: format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{containerd}.scope",
                    pod.replace('-', "_")
                ),
                unit: Some(format!("cri-containerd-{containerd}.scope")),
                container_id: Some(containerd.clone()),
                runtime: Some("containerd"),
                pod_uid: Some(pod.clone()),
                qos: Some("burstable"),
            },
        ),
        (
            "podman (systemd driver)",
            Expected {
                path: format!("/machine.slice/libpod-{podman}.scope"),
                unit: Some(format!("libpod-{podman}.scope")),
                container_id: Some(podman.clone()),
                runtime: Some("podman"),
                pod_uid: None,
                qos: None,
            },
        ),
    ]
}

fn json_str(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

fn check_row(layout: &str, row: &Value, want: &Expected) {
    assert_eq!(
        json_str(&row["cgroup"]).as_deref(),
        Some(want.path.as_str()),
        "{layout}: cgroup of {row}"
    );
    assert_eq!(json_str(&row["unit"]), want.unit, "{layout}: unit of {row}");
    assert_eq!(
        json_str(&row["container_id"]),
        want.container_id,
        "{layout}: container of {row}"
    );
    assert_eq!(
        row["container_runtime"].as_str(),
        want.runtime,
        "{layout}: runtime of {row}"
    );
    assert_eq!(
        json_str(&row["pod_uid"]),
        want.pod_uid,
        "{layout}: pod of {row}"
    );
    assert_eq!(
        row["qos_class"].as_str(),
        want.qos,
        "{layout}: QoS of {row}"
    );
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin_path("zombie-trace"))
        .args(args)
        .output()
        .expect("run zombie-trace");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One `watch --json` report with the leaker's row, from a short run.
fn watch_row(leaker: u32) -> Value {
    watch_row_with(leaker, &[]).0
}

/// A short `watch --json` run with `flags`, which must succeed: its
/// stdout and stderr.
fn watch_json(flags: &[&str]) -> (String, String) {
    let duration = format!("{:.1}", budget(Duration::from_secs(1)).as_secs_f64());
    let mut args = vec![
        "watch",
        "--json",
        "--interval",
        "0.3",
        "--duration",
        &duration,
    ];
    args.extend_from_slice(flags);
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "watch {flags:?} failed: {stderr}");
    (stdout, stderr)
}

/// [`watch_row`] with more flags, and what watch said on stderr.
fn watch_row_with(leaker: u32, flags: &[&str]) -> (Value, String) {
    let (stdout, stderr) = watch_json(flags);
    let row = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["type"] == "report")
        .filter_map(|r| {
            r["parents"]
                .as_array()?
                .iter()
                .find(|p| p["pid"] == leaker)
                .cloned()
        })
        .next_back()
        .unwrap_or_else(|| panic!("no report names leaker {leaker}:\n{stdout}"));
    (row, stderr)
}

#[test]
fn every_view_names_the_leakers_unit_container_and_pod() {
    if !privileged() {
        return;
    }
    for (layout, want) in layouts() {
        let cgroup = PlacedCgroup::create(&want.path);
        let leaker = Workload::start_in(&cgroup.dirs, "never-waits", &["5"]);
        let pid = leaker.pid();

        // watch --json: the row of the leaker.
        let row = watch_row(pid);
        assert_eq!(row["pending_zombies"], 5, "{layout}: {row}");
        check_row(layout, &row, &want);

        // explain (from /proc: where a process runs needs no tracer), text
        // and JSON.
        let (ok, text, stderr) = run(&["explain", "--proc-only", &pid.to_string()]);
        assert!(ok, "{layout}: explain failed: {stderr}");
        let named = want
            .container_id
            .as_deref()
            .map(|id| id[..12].to_owned())
            .or_else(|| want.unit.clone())
            .unwrap_or_else(|| want.path.clone());
        assert!(
            text.lines()
                .any(|l| l.contains("runs in") && l.contains(&named)),
            "{layout}: explain does not say where {pid} runs ({named}):\n{text}"
        );
        let (ok, json, stderr) = run(&["explain", "--proc-only", "--json", &pid.to_string()]);
        assert!(ok, "{layout}: explain --json failed: {stderr}");
        let diagnosis: Value = serde_json::from_str(json.trim()).expect("explain --json");
        let runs_in = &diagnosis["runs_in"];
        assert_eq!(
            json_str(&runs_in["container_id"]),
            want.container_id,
            "{layout}: {runs_in}"
        );
        assert_eq!(
            json_str(&runs_in["pod_uid"]),
            want.pod_uid,
            "{layout}: {runs_in}"
        );
        assert_eq!(json_str(&runs_in["unit"]), want.unit, "{layout}: {runs_in}");

        drop(leaker);
        drop(cgroup);
    }

    // A container with its own PID namespace, whose init never reaps: its
    // row gives both PIDs, the host's and 1, with where it runs.
    let (layout, want) = layouts()
        .into_iter()
        .find(|(_, w)| w.container_id.is_some())
        .expect("a container layout");
    let cgroup = PlacedCgroup::create(&want.path);
    let workload = Workload::start_in(&cgroup.dirs, "pidns-init", &["3"]);
    let init = workload.json()["ns_init"].as_u64().expect("ns_init") as u32;
    let row = watch_row(init);
    assert_eq!(row["pending_zombies"], 3, "{row}");
    assert_eq!(row["pid"], init, "{row}");
    assert_eq!(row["pid_in_namespace"], 1, "{row}");
    check_row(layout, &row, &want);
    drop(workload);
    drop(cgroup);
}

#[test]
fn metrics_and_a_replayed_recording_name_the_leakers_container_and_pod() {
    if !privileged() {
        return;
    }
    let (_, want) = layouts()
        .into_iter()
        .find(|(_, w)| w.pod_uid.is_some())
        .expect("a Kubernetes layout");
    let cgroup = PlacedCgroup::create(&want.path);
    let dir = std::env::temp_dir().join(format!("zt-containers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let recording = dir.join("leak.ztr");
    let mut record = Command::new(bin_path("zombie-trace"))
        .args(["record", "-o"])
        .arg(&recording)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start zombie-trace record");
    let serve = Serve::start(&[]);
    std::thread::sleep(Duration::from_millis(500));

    let leaker = Workload::start_in(&cgroup.dirs, "never-waits", &["7"]);
    let pid = leaker.pid();
    let labels = format!(
        "pid=\"{pid}\",comm=\"never-waits\",container_id=\"{}\",pod_uid=\"{}\",unit=\"{}\"",
        want.container_id.as_deref().unwrap_or_default(),
        want.pod_uid.as_deref().unwrap_or_default(),
        want.unit.as_deref().unwrap_or_default(),
    );
    let deadline = std::time::Instant::now() + budget(TIMEOUT);
    let body = loop {
        let (body, _) = serve.scrape();
        if sample(&body, "zombietrace_parent_pending_zombies", &labels) == Some(7.0) {
            break body;
        }
        if std::time::Instant::now() > deadline {
            panic!("no series {labels} = 7 in /metrics:\n{body}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let cgroup_labels = format!("cgroup=\"{}\"", want.path);
    assert_eq!(
        sample(&body, "zombietrace_cgroup_pending_zombies", &cgroup_labels),
        Some(7.0),
        "the cgroup's series:\n{body}"
    );
    drop(serve);

    // The recording, replayed after the leaker and its cgroup are gone,
    // still names them: what the live session read is in the file.
    std::thread::sleep(Duration::from_millis(900));
    unsafe { libc::kill(record.id() as i32, libc::SIGINT) };
    let status = record.wait().expect("wait for record");
    assert!(status.success(), "record exited with {status}");
    drop(leaker);
    drop(cgroup);
    let (ok, stdout, stderr) = run(&["report", "--json", &recording.to_string_lossy()]);
    assert!(ok, "report failed: {stderr}");
    let row = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|r| {
            r["parents"]
                .as_array()?
                .iter()
                .find(|p| p["pid"] == pid && p["pending_zombies"] == 7)
                .cloned()
        })
        .next_back()
        .unwrap_or_else(|| panic!("the replay names no leaker {pid} with 7 zombies:\n{stdout}"));
    check_row("the replayed recording", &row, &want);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn top_shows_where_each_leaker_runs_and_filters_by_container() {
    if !privileged() || !can_run(tmux_problem(), None) {
        return;
    }
    let layouts = layouts();
    let (_, docker) = layouts
        .iter()
        .find(|(_, w)| w.runtime == Some("docker") && w.unit.is_some())
        .expect("the docker layout");
    let (_, pod) = layouts
        .iter()
        .find(|(_, w)| w.pod_uid.is_some())
        .expect("the Kubernetes layout");
    let docker_cgroup = PlacedCgroup::create(&docker.path);
    let pod_cgroup = PlacedCgroup::create(&pod.path);
    let in_docker = Workload::start_in(&docker_cgroup.dirs, "never-waits", &["6"]);
    let in_pod = Workload::start_in(&pod_cgroup.dirs, "never-waits", &["8"]);

    let tmux = Tmux {
        socket: format!("zombie-trace-test-containers-{}", std::process::id()),
    };
    start_top(&tmux, "");
    let docker_short = &docker.container_id.as_deref().expect("an id")[..12];
    let pod_short = &pod.pod_uid.as_deref().expect("a UID")[..8];
    let row_of = |screen: &str, pid: u32| {
        screen
            .lines()
            .find(|l| l.trim_start_matches('>').split_whitespace().next() == Some(&pid.to_string()))
            .map(str::to_owned)
    };
    tmux.until(
        "both leakers, each with where it runs",
        budget(Duration::from_secs(20)),
        |s| {
            pending_of(s, in_docker.pid()) == Some(6)
                && pending_of(s, in_pod.pid()) == Some(8)
                && row_of(s, in_docker.pid())
                    .is_some_and(|r| r.contains(&format!("docker {docker_short}")))
                && row_of(s, in_pod.pid()).is_some_and(|r| r.contains(&format!("pod {pod_short}")))
        },
    );

    // `/` with the container's short id keeps its leaker only.
    tmux.keys(&["/"]);
    tmux.keys(&[docker_short]);
    tmux.keys(&["Enter"]);
    tmux.until("the container filter", Duration::from_secs(3), |s| {
        s.contains(&format!("[filter: {docker_short}]"))
            && pending_of(s, in_docker.pid()) == Some(6)
            && pending_of(s, in_pod.pid()).is_none()
    });
    // Its detail says where it runs.
    tmux.keys(&["Enter"]);
    tmux.until("the detail's place", Duration::from_secs(3), |s| {
        s.contains(&format!("runs in container {docker_short} (docker)"))
    });
    tmux.keys(&["q"]);
    tmux.until("top's exit", Duration::from_secs(10), |s| {
        s.contains("top exited with status 0")
    });

    // Started with --cgroup, top shows the pods' leaker alone, and says so.
    tmux.ok(&["kill-session", "-t", "top"]);
    start_top(&tmux, " --cgroup /kubepods.slice");
    tmux.until(
        "the pod's leaker alone",
        budget(Duration::from_secs(20)),
        |s| {
            s.lines()
                .next()
                .is_some_and(|l| l.contains("only --cgroup /kubepods.slice"))
                && pending_of(s, in_pod.pid()) == Some(8)
                && pending_of(s, in_docker.pid()).is_none()
        },
    );
    tmux.keys(&["q"]);
    tmux.until("top's exit", Duration::from_secs(10), |s| {
        s.contains("top exited with status 0")
    });
    drop(tmux);
    drop(in_docker);
    drop(in_pod);
    drop(docker_cgroup);
    drop(pod_cgroup);
}

/// Starts `zombie-trace top{flags}` in tmux session `top`, 140x30; the
/// shell says how it exited.
fn start_top(tmux: &Tmux, flags: &str) {
    let command = format!(
        "{} top{flags}; echo \"top exited with status $?\"; sleep 120",
        bin_path("zombie-trace").display()
    );
    tmux.ok(&[
        "new-session",
        "-d",
        "-x",
        "140",
        "-y",
        "30",
        "-s",
        "top",
        &command,
    ]);
}

/// The PIDs of the parents `watch --json` (with `filter`) names in its
/// last report of a short run.
fn watched(filter: &[&str]) -> Vec<u64> {
    let (stdout, _) = watch_json(filter);
    let last = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|l| l["type"] == "report")
        .unwrap_or_else(|| panic!("watch {filter:?} printed no report:\n{stdout}"));
    last["parents"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["pid"].as_u64()).collect())
        .unwrap_or_default()
}

#[test]
fn cgroup_unit_and_container_filters_keep_the_leakers_placed_there() {
    if !privileged() {
        return;
    }
    let service = layout("a systemd service");
    let docker = layout("docker with the systemd");
    let pod = layout("a Kubernetes pod");
    let cgroups: Vec<PlacedCgroup> = [&service, &docker, &pod]
        .iter()
        .map(|w| PlacedCgroup::create(&w.path))
        .collect();
    let leakers: Vec<Workload> = cgroups
        .iter()
        .map(|c| Workload::start_in(&c.dirs, "never-waits", &["3"]))
        .collect();
    let [in_service, in_docker, in_pod] = [0, 1, 2].map(|i| u64::from(leakers[i].pid()));

    let unit = service.unit.clone().expect("a unit");
    assert_eq!(watched(&["--unit", &unit]), vec![in_service]);
    let short = &docker.container_id.as_deref().expect("an id")[..12];
    assert_eq!(watched(&["--container", short]), vec![in_docker]);
    // A cgroup and everything below it: the pod's QoS slice holds the pod.
    assert_eq!(
        watched(&["--cgroup", "/kubepods.slice/kubepods-burstable.slice"]),
        vec![in_pod]
    );
    let mut system = watched(&["--cgroup", "/system.slice"]);
    system.sort_unstable();
    let mut want = vec![in_service, in_docker];
    want.sort_unstable();
    assert_eq!(system, want, "both leakers of /system.slice");
    assert!(watched(&["--unit", "no-such.service"]).is_empty());

    // A container id must be hex.
    let (ok, _, stderr) = run(&["watch", "--container", "not-an-id", "--duration", "1"]);
    assert!(!ok && stderr.contains("is not a container id"), "{stderr}");

    drop(leakers);
    drop(cgroups);
}

/// The `parent_wait` groups of a `latency --json` report, by key.
fn parent_wait_groups(json: &str) -> Vec<Value> {
    let report: Value = serde_json::from_str(json.trim())
        .unwrap_or_else(|e| panic!("latency --json is not one JSON object ({e}):\n{json}"));
    report["groups"]
        .as_array()
        .map(|groups| {
            groups
                .iter()
                .filter(|g| g["category"] == "parent_wait")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn group_with_key<'a>(groups: &'a [Value], key: &str) -> &'a Value {
    groups
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no parent_wait group {key} in {groups:#?}"))
}

#[test]
fn latency_groups_reapers_by_container_and_unit_live_and_from_a_recording() {
    if !privileged() {
        return;
    }
    let (service, docker) = (
        layout("a systemd service"),
        layout("docker with the systemd"),
    );
    let docker_id = docker.container_id.clone().expect("an id");
    let unit = service.unit.clone().expect("a unit");
    let (in_service, in_docker) = (
        PlacedCgroup::create(&service.path),
        PlacedCgroup::create(&docker.path),
    );
    let dir = std::env::temp_dir().join(format!("zt-latency-places-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let recording = dir.join("reaps.ztr");
    let mut record = Command::new(bin_path("zombie-trace"))
        .args(["record", "-o"])
        .arg(&recording)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start zombie-trace record");
    let mut record_stderr = std::io::BufReader::new(record.stderr.take().expect("piped stderr"));
    let mut line = String::new();
    while !line.contains("recording to") {
        line.clear();
        let read = std::io::BufRead::read_line(&mut record_stderr, &mut line);
        assert!(
            matches!(read, Ok(n) if n > 0),
            "record ended before recording: {read:?}"
        );
    }
    let by_container = LatencyCommand::start(&["--by", "container", "--json"]);
    let only_docker = LatencyCommand::start(&["--container", &docker_id[..12], "--json"]);
    std::thread::sleep(Duration::from_millis(300));

    // Two reapers that wait for each child 30 ms after it exits, one in a
    // container and one in a service (ready once they have reaped them
    // all). They end after the tracers: the harness reaping each of them
    // in its cgroup would be one more release there.
    let mut docker_reaper = Workload::start_in(&in_docker.dirs, "delayed-reaper", &["4", "30"]);
    let mut service_reaper = Workload::start_in(&in_service.dirs, "delayed-reaper", &["3", "30"]);
    let (docker_pid, service_pid) = (docker_reaper.pid(), service_reaper.pid());
    std::thread::sleep(Duration::from_millis(500));
    by_container.interrupt();
    only_docker.interrupt();
    unsafe { libc::kill(record.id() as i32, libc::SIGINT) };

    // By container: the docker reaper's four waits under its id, with a
    // latency of at least the 30 ms it slept; the service reaper's among
    // the reapers in no container, never under the container.
    let groups = parent_wait_groups(&by_container.output());
    let container = group_with_key(&groups, &docker_id);
    assert_eq!(container["count"], 4, "{container}");
    assert_eq!(container["container_runtime"], "docker", "{container}");
    assert!(
        container["min_us"].as_f64().unwrap_or(0.0) >= 30_000.0,
        "{container}"
    );
    assert!(
        group_with_key(&groups, "none")["count"]
            .as_u64()
            .unwrap_or(0)
            >= 3
    );

    // Filtered by the container: its reaper alone.
    let groups = parent_wait_groups(&only_docker.output());
    let pids: Vec<&Value> = groups.iter().map(|g| &g["pid"]).collect();
    assert_eq!(pids, [&Value::from(docker_pid)], "{groups:#?}");
    assert_eq!(groups[0]["count"], 4);

    // The recording, replayed after both reapers and their cgroups are
    // gone, groups and filters the same way.
    let status = record.wait().expect("wait for record");
    assert!(status.success(), "record exited with {status}");
    drop(record_stderr);
    docker_reaper.finish();
    service_reaper.finish();
    drop(in_docker);
    drop(in_service);
    let file = recording.to_string_lossy();
    let (ok, json, stderr) = run(&["report", &file, "--as", "latency", "--by", "unit", "--json"]);
    assert!(ok, "report --as latency --by unit failed: {stderr}");
    let groups = parent_wait_groups(&json);
    assert_eq!(group_with_key(&groups, &unit)["count"], 3, "{groups:#?}");
    let docker_unit = docker.unit.clone().expect("docker's scope");
    assert_eq!(group_with_key(&groups, &docker_unit)["count"], 4);
    let (ok, json, stderr) = run(&[
        "report", &file, "--as", "latency", "--unit", &unit, "--json",
    ]);
    assert!(ok, "report --as latency --unit failed: {stderr}");
    let groups = parent_wait_groups(&json);
    let pids: Vec<&Value> = groups.iter().map(|g| &g["pid"]).collect();
    assert_eq!(pids, [&Value::from(service_pid)], "{groups:#?}");
    // --by belongs to the latency view.
    let (ok, _, stderr) = run(&["report", &file, "--by", "unit"]);
    assert!(!ok && stderr.contains("--as latency"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node's log root as the kubelet lays it out for one pod and one of its
/// containers (names only: the files are empty), removed on drop.
struct KubeletLogs(PathBuf);

impl KubeletLogs {
    fn new(namespace: &str, pod: &str, uid: &str, container: &str, id: &str) -> KubeletLogs {
        let root = std::env::temp_dir().join(format!("zt-kubelet-logs-{}", std::process::id()));
        let pod_dir = root.join("pods").join(format!("{namespace}_{pod}_{uid}"));
        std::fs::create_dir_all(pod_dir.join(container)).expect("pods/");
        std::fs::create_dir_all(root.join("containers")).expect("containers/");
        std::fs::write(
            root.join("containers")
                .join(format!("{pod}_{namespace}_{container}-{id}.log")),
            "",
        )
        .expect("a container's log name");
        KubeletLogs(root)
    }
}

impl Drop for KubeletLogs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A kubelet's read-only port on 127.0.0.1 answering `GET /pods` with
/// `pod_list` until the test ends.
fn fake_kubelet(pod_list: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = std::io::BufReader::new(&stream);
            let mut line = String::new();
            // The request line and headers, up to the blank line.
            while std::io::BufRead::read_line(&mut reader, &mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let answer =
                format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{pod_list}");
            let _ = std::io::Write::write_all(&mut stream, answer.as_bytes());
        }
    });
    port
}

#[test]
fn pod_names_from_the_kubelet_name_the_leakers_pod_namespace_and_container() {
    if !privileged() {
        return;
    }
    let (_, want) = layouts()
        .into_iter()
        .find(|(_, w)| w.pod_uid.is_some() && w.container_id.is_some())
        .expect("a Kubernetes layout");
    let (uid, id) = (
        want.pod_uid.clone().expect("a UID"),
        want.container_id.clone().expect("an id"),
    );
    let cgroup = PlacedCgroup::create(&want.path);
    let leaker = Workload::start_in(&cgroup.dirs, "never-waits", &["4"]);
    let pid = leaker.pid();

    // From the kubelet's log names: watch --json names the pod, its
    // namespace and the container, and says where the names come from.
    let logs = KubeletLogs::new("shop", "web-7d9f8b6c5-x2x4z", &uid, "app-server", &id);
    let root = logs.0.to_string_lossy().into_owned();
    let (row, stderr) = watch_row_with(pid, &["--pod-names", &root]);
    assert!(
        stderr.contains("naming pods and containers from"),
        "{stderr}"
    );
    assert_eq!(row["pod"], "web-7d9f8b6c5-x2x4z", "{row}");
    assert_eq!(row["namespace"], "shop", "{row}");
    assert_eq!(row["container"], "app-server", "{row}");
    check_row("named by the kubelet's logs", &row, &want);
    let (ok, text, stderr) = run(&[
        "explain",
        "--proc-only",
        "--pod-names",
        &root,
        &pid.to_string(),
    ]);
    assert!(ok, "explain --pod-names failed: {stderr}");
    let named = format!(
        "runs in container app-server ({}, containerd) in pod shop/web-7d9f8b6c5-x2x4z (burstable)",
        &id[..12]
    );
    assert!(
        text.contains(&named),
        "explain does not say {named}:\n{text}"
    );

    // From the kubelet's read-only pod list: the metrics carry the names.
    let pod_list = format!(
        r#"{{"kind":"PodList","items":[{{"metadata":{{"name":"web-7d9f8b6c5-x2x4z","namespace":"shop","uid":"{uid}"}},"status":{{"containerStatuses":[{{"name":"app-server","containerID":"containerd://{id}"}}]}}}}]}}"#
    );
    let kubelet = format!("http://127.0.0.1:{}", fake_kubelet(pod_list));
    let serve = Serve::start(&["--pod-names", &kubelet]);
    let labels = format!(
        "pid=\"{pid}\",container_id=\"{id}\",pod_uid=\"{uid}\",namespace=\"shop\",pod=\"web-7d9f8b6c5-x2x4z\",container=\"app-server\""
    );
    let deadline = std::time::Instant::now() + budget(TIMEOUT);
    loop {
        let (body, _) = serve.scrape();
        if sample(&body, "zombietrace_parent_pending_zombies", &labels) == Some(4.0) {
            break;
        }
        if std::time::Instant::now() > deadline {
            panic!("no series {labels} = 4 in /metrics:\n{body}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(serve);

    // A source that cannot be read: one line, and the ids still name it.
    let missing = format!("{root}-missing");
    let (row, stderr) = watch_row_with(pid, &["--pod-names", &missing]);
    let notes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("pod names:"))
        .collect();
    assert_eq!(notes.len(), 1, "one line: {stderr}");
    assert!(notes[0].contains(&missing), "{stderr}");
    assert!(
        row.get("pod").is_none(),
        "no name without the kubelet: {row}"
    );
    assert_eq!(json_str(&row["pod_uid"]), Some(uid));
    let (ok, _, stderr) = run(&["watch", "--pod-names", "https://127.0.0.1:10250"]);
    assert!(!ok && stderr.contains("TLS"), "{stderr}");

    drop(leaker);
    drop(cgroup);
}

#[test]
fn a_containers_pids_max_is_the_limit_its_leak_is_forecast_and_alerted_against() {
    if !privileged() {
        return;
    }
    use zombie_trace_tests::prometheus::{
        Prometheus, TempDir, rules_copy_with_short_for, samples, shipped_rules,
    };
    if !prometheus_can_run() {
        return;
    }
    const LIMIT: u64 = 200;
    let serve = Serve::start(&[]);
    let dir = TempDir::new("zombie-trace-rules").expect("a temporary directory");
    let rules = dir.path().join("zombie-trace.rules.yml");
    rules_copy_with_short_for(&shipped_rules(), &rules, "2s").expect("copy the rules");
    let prometheus = Prometheus::start(&serve.addr.to_string(), &[rules], Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("start prometheus: {e}"));

    // A pod's container limited to 200 tasks whose process leaks 8 zombies
    // a second, far below pid_max.
    let (_, pod) = layouts()
        .into_iter()
        .find(|(_, w)| w.pod_uid.is_some() && w.container_id.is_some())
        .expect("a Kubernetes layout");
    let container = PlacedCgroup::create(&pod.path);
    let limited = container.limit_pids(LIMIT);
    let mut leaker = Workload::start_in(&container.dirs, "steady-leaker", &["8"]);
    let pid = leaker.pid();
    leaker.send_line("go");

    // At 150 zombies: the headroom is the container's, to the task.
    let deadline = std::time::Instant::now() + budget(Duration::from_secs(60));
    let (body, current) = loop {
        let (body, _) = serve.scrape();
        let pending = sample(
            &body,
            "zombietrace_parent_pending_zombies",
            &format!("pid=\"{pid}\""),
        );
        let current: u64 = std::fs::read_to_string(limited.join("pids.current"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .expect("pids.current");
        if pending.is_some_and(|p| p >= 150.0) {
            break (body, current);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the leaker never reached 150 zombies:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let headroom = sample(
        &body,
        "zombietrace_pid_headroom",
        "limit=\"cgroup_pids_max\"",
    )
    .unwrap_or_else(|| panic!("the headroom is not the container's:\n{body}"));
    let want = (LIMIT - current) as f64;
    assert!(
        (headroom - want).abs() <= 8.0,
        "headroom {headroom}, pids.max - pids.current = {want} (8 zombies a second between the reads)"
    );
    let exhaustion = sample(&body, "zombietrace_pid_exhaustion_seconds", "")
        .unwrap_or_else(|| panic!("no forecast:\n{body}"));
    assert!(
        exhaustion > 0.0 && exhaustion < 60.0,
        "{headroom} tasks left at 8 a second, forecast {exhaustion} s"
    );

    // And Prometheus alerts on that forecast, not on pid_max's.
    let alerts = prometheus
        .wait_for_alert(
            "ZombiePIDExhaustionForecast",
            "firing",
            budget(Duration::from_secs(60)),
        )
        .unwrap_or_else(|e| panic!("{e}\nprometheus log:\n{}", prometheus.log()));
    assert!(!alerts.is_empty());
    let data = prometheus
        .query("zombietrace_pid_headroom")
        .unwrap_or_else(|e| panic!("{e}"));
    let limits: Vec<Option<String>> = samples(&data)
        .iter()
        .map(|(labels, _)| {
            labels
                .get("limit")
                .and_then(|l| l.as_str())
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(limits, [Some("cgroup_pids_max".to_owned())], "{data}");
    // Prometheus has the leaker's series named by its pod and container.
    let data = prometheus
        .query(&format!(
            "zombietrace_parent_pending_zombies{{pid=\"{pid}\"}}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let found = samples(&data);
    let labels = &found
        .first()
        .unwrap_or_else(|| panic!("no series: {data}"))
        .0;
    let label = |name: &str| labels.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    assert_eq!(label("pod_uid"), pod.pod_uid, "{data}");
    assert_eq!(label("container_id"), pod.container_id, "{data}");
    assert_eq!(label("unit"), pod.unit, "{data}");
    drop(leaker);
    drop(container);
}

/// The PIDs of the parents in the last report of `report FILE --json
/// flags`, and its standard error.
fn reported(file: &str, flags: &[&str]) -> (Vec<u64>, String) {
    let mut args = vec!["report", file, "--json"];
    args.extend_from_slice(flags);
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "report {flags:?} failed: {stderr}");
    let last = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|l| l["type"] == "report")
        .unwrap_or_else(|| panic!("report {flags:?} printed no report:\n{stdout}"));
    let mut pids: Vec<u64> = last["parents"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["pid"].as_u64()).collect())
        .unwrap_or_default();
    pids.sort_unstable();
    (pids, stderr)
}

#[test]
fn a_recording_made_for_one_unit_shows_its_parents_unless_told_otherwise() {
    if !privileged() {
        return;
    }
    let (service, docker) = (
        layout("a systemd service"),
        layout("docker with the systemd"),
    );
    let unit = service.unit.clone().expect("a unit");
    let cgroups = [
        PlacedCgroup::create(&service.path),
        PlacedCgroup::create(&docker.path),
    ];
    let leakers: Vec<Workload> = cgroups
        .iter()
        .map(|c| Workload::start_in(&c.dirs, "never-waits", &["3"]))
        .collect();
    let [in_service, in_docker] = [0, 1].map(|i| u64::from(leakers[i].pid()));

    // Recorded for the service's unit: every event is kept all the same.
    let dir = std::env::temp_dir().join(format!("zt-recorded-for-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let file = dir.join("unit.ztr").to_string_lossy().into_owned();
    let duration = format!("{:.1}", budget(Duration::from_secs(2)).as_secs_f64());
    let (ok, _, stderr) = run(&[
        "record",
        "-o",
        &file,
        "--unit",
        &unit,
        "--duration",
        &duration,
    ]);
    assert!(ok, "record --unit failed: {stderr}");

    let (pids, stderr) = reported(&file, &[]);
    assert_eq!(pids, [in_service], "the recording's own filter");
    assert!(
        stderr.contains(&format!("recorded for --unit {unit}")) && stderr.contains("--all"),
        "{stderr}"
    );
    let (pids, _) = reported(&file, &["--all"]);
    assert!(
        [in_service, in_docker].iter().all(|p| pids.contains(p)),
        "--all: {pids:?}"
    );
    let short = &docker.container_id.as_deref().expect("an id")[..12];
    let (pids, stderr) = reported(&file, &["--container", short]);
    assert_eq!(pids, [in_docker], "the command line's filter wins");
    assert!(!stderr.contains("recorded for"), "{stderr}");

    drop(leakers);
    drop(cgroups);
    let _ = std::fs::remove_dir_all(&dir);
}
