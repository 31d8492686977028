//! Which container, Kubernetes pod and systemd unit a process runs in, named
//! from its cgroup paths as `/proc/<pid>/cgroup` lists them.
//!
//! No container runtime is asked. Every runtime and systemd name the cgroup
//! they create after the thing it holds, so the path alone says where a
//! process runs: it needs no socket and no privilege beyond reading `/proc`,
//! costs no round trip, and still answers for a parent whose container the
//! runtime has already forgotten. A layout not listed below degrades to the
//! raw path, never to an error.
//!
//! # The file
//!
//! One line per hierarchy, `ID:CONTROLLERS:PATH`. `0::PATH` is cgroup v2 (the
//! unified hierarchy); the kernel prints it only once cgroup2 is mounted, so a
//! v1-only host has no such line. Every other line is a cgroup v1 hierarchy
//! with its comma-separated controllers, `name=systemd` being systemd's own
//! controller-less hierarchy. The path is everything after the second colon
//! (a cgroup directory may have a colon in its name). A v2 cgroup removed
//! while a task is still listed in it, which happens to a zombie once its
//! unit has stopped, is printed with ` (deleted)` appended; the names ignore
//! that suffix, [`Attribution::cgroup`] keeps it.
//!
//! # Which path names the process
//!
//! See [`Membership::primary_path`]: the `name=systemd` path, else the v2
//! path, else the first v1 path that is not the root. systemd's own
//! hierarchy comes first because on a hybrid host a v1-only cgroup manager
//! (runc's cgroupfs driver, which is Docker's default there) moves the
//! container into its v1 cgroups only, so the v2 line keeps the cgroup of
//! whoever forked it: `1:name=systemd:/docker/<id>` but
//! `0::/system.slice/containerd.service`.
//!
//! # Layouts
//!
//! The path is read component by component, root to leaf. For each name the
//! deepest component that gives one wins, so a nested cgroup (a container's
//! own `/container` child, docker-in-docker) is named after its innermost
//! owner.
//!
//! **Unit**: a component ending in `.service` or `.scope`. The deepest wins
//! because user services nest under the user manager's unit
//! (`user@1000.service/app.slice/foo.service` is `foo.service`) and systemd
//! itself names each container's scope (`docker-<id>.scope`).
//!
//! **Container**: `<id>` is exactly 64 lowercase hex digits (the sha256 every
//! runtime here names its containers by); anything else is not an id.
//!
//! | component                           | runtime    | made by                                           |
//! |-------------------------------------|------------|---------------------------------------------------|
//! | `docker-<id>.scope`                 | docker     | dockerd, systemd cgroup driver                    |
//! | `<id>` right under `docker`         | docker     | dockerd, cgroupfs driver: `/docker/<id>`          |
//! | `cri-containerd-<id>.scope`         | containerd | containerd's CRI plugin, systemd driver           |
//! | `crio-<id>.scope`, `crio-<id>`      | cri-o      | CRI-O, systemd or cgroupfs driver                 |
//! | `libpod-<id>.scope`, `libpod-<id>`  | podman     | podman, systemd or cgroupfs (`/libpod_parent/…`)  |
//! | `<id>` anywhere else                | unknown    | kubelet's cgroupfs driver (`/kubepods/…/pod<uid>/<id>`), custom cgroup parents |
//!
//! `crio-conmon-<id>.scope` and `libpod-conmon-<id>.scope` hold conmon, the
//! process that monitors (and reaps) the container from outside it: it is not
//! in the container, so it gets a unit but no container id. No special case
//! is needed, `conmon-<id>` is not 64 hex digits.
//!
//! **Pod**: kubelet names a pod's cgroup `pod<uid>` under its QoS class.
//!
//! | driver   | guaranteed                     | burstable / besteffort                                                  |
//! |----------|--------------------------------|-------------------------------------------------------------------------|
//! | systemd  | `kubepods-pod<uid>.slice`      | `kubepods-burstable-pod<uid>.slice`, `kubepods-besteffort-pod<uid>.slice` |
//! | cgroupfs | `kubepods/pod<uid>`            | `kubepods/burstable/pod<uid>`, `kubepods/besteffort/pod<uid>`           |
//!
//! The systemd driver writes the UID's dashes as `_`, since systemd reads `-`
//! in a slice name as "child of": they are turned back into dashes. A prefix
//! before `kubepods-` (kubelet's `--cgroup-root`, e.g. kind's
//! `kubelet-kubepods-burstable-pod<uid>.slice`) is allowed, and so are
//! parents above `kubepods`. A UID is a lowercase UUID (8-4-4-4-12) or 32
//! lowercase hex digits (a static pod's UID is a hash of its manifest). The
//! QoS class is only reported with the pod it belongs to.

use std::io;

use serde::{Deserialize, Serialize};

/// What the kernel appends to a removed v2 cgroup's path.
const DELETED: &str = " (deleted)";

/// A process's cgroup membership, as `/proc/<pid>/cgroup` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// The cgroup v2 (unified) path: the `0::PATH` line, when there is one.
    pub unified: Option<String>,
    /// cgroup v1 hierarchies: (controllers, path) per line, e.g. (["pids"], "/jobs"), (["name=systemd"], "/system.slice/cron.service"), (["cpu","cpuacct"], "/").
    pub v1: Vec<(Vec<String>, String)>,
}

impl Membership {
    /// Parses the text of `/proc/<pid>/cgroup`. Malformed lines are skipped, never an error.
    ///
    /// A line is kept when its hierarchy ID is decimal and its path starts
    /// with `/`; `0` with no controllers is the v2 line (the first one
    /// counts), any other ID needs at least one controller.
    pub fn parse(text: &str) -> Self {
        let mut membership = Membership::default();
        for line in text.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || !path.starts_with('/') {
                continue;
            }
            // Hierarchy 0 is always the unified one, which has no controller
            // list; a v1 hierarchy always has one. Anything else is malformed.
            match (id == "0", controllers.is_empty()) {
                (true, true) => {
                    // There is one v2 line; should a second appear, the first counts.
                    membership.unified.get_or_insert_with(|| path.to_owned());
                }
                (false, false) => {
                    let controllers = controllers
                        .split(',')
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect();
                    membership.v1.push((controllers, path.to_owned()));
                }
                _ => {}
            }
        }
        membership
    }

    /// The path names are taken from: the `name=systemd` v1 path when it is
    /// not "/", else the v2 path when it is not "/", else the first v1 path
    /// that is not "/" (in the order of the file), else "/" (or "" when the
    /// file had no line).
    ///
    /// Why this order: a `name=systemd` line exists only on hosts that still
    /// mount v1 hierarchies (hybrid and v1-only), and there systemd and every
    /// container runtime place their cgroups in it. The v2 path of such a
    /// host is "/" where nothing manages that hierarchy, agrees with
    /// systemd's where systemd mirrors its units there, and is stale where a
    /// v1-only manager (runc's cgroupfs driver, Docker's default there) moved
    /// the process: `1:name=systemd:/docker/<id>` beside
    /// `0::/system.slice/containerd.service`. On a v2-only host the v2 line
    /// is the only one. Where both are "/" (a process systemd did not place,
    /// or no systemd) a v1 controller path is all there is: Docker's cgroupfs
    /// driver puts containers in `memory:/docker/<id>` and the like.
    pub fn primary_path(&self) -> &str {
        let systemd = self.v1.iter().find(|(controllers, path)| {
            path != "/" && controllers.iter().any(|c| c == "name=systemd")
        });
        if let Some((_, path)) = systemd {
            return path;
        }
        if let Some(path) = self.unified.as_deref()
            && path != "/"
        {
            return path;
        }
        if let Some((_, path)) = self.v1.iter().find(|(_, path)| path != "/") {
            return path;
        }
        if self.unified.is_some() || !self.v1.is_empty() {
            "/"
        } else {
            ""
        }
    }
}

/// The container runtime a container id came from (named by its cgroup path).
/// Serialized as [`Runtime::as_str`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Containerd,
    #[serde(rename = "cri-o")]
    CriO,
    Podman,
}

impl Runtime {
    /// The runtime's own name, as its users write it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
        }
    }
}

/// A Kubernetes pod's QoS class, from its cgroup slice.
/// Serialized as [`QosClass::as_str`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The class as kubelet spells it in cgroup names.
    pub fn as_str(&self) -> &'static str {
        match self {
            QosClass::Guaranteed => "guaranteed",
            QosClass::Burstable => "burstable",
            QosClass::BestEffort => "besteffort",
        }
    }
}

/// Where a process runs, named from its cgroup path. Every field but `cgroup` is optional: an unknown layout degrades to the raw path, never an error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attribution {
    /// The cgroup path the names come from (`Membership::primary_path`).
    pub cgroup: String,
    /// The systemd unit: the deepest path component ending in `.service` or `.scope`.
    pub unit: Option<String>,
    /// The full container id (64 lowercase hex digits).
    pub container_id: Option<String>,
    pub runtime: Option<Runtime>,
    /// The Kubernetes pod UID, dashed (`kubepods-burstable-pod1b2c_...slice` gives `1b2c-...`).
    pub pod_uid: Option<String>,
    pub qos: Option<QosClass>,
    /// The pod's name, its namespace and the container's name: from the
    /// kubelet with `--pod-names` ([`crate::host::podnames`]), never from
    /// the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// Its PID in its own PID namespace, when that is not the reader's
    /// (a container's): the last `NSpid` of `/proc/PID/status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_in_namespace: Option<u32>,
}

impl Attribution {
    /// Names `membership`'s primary path by the layouts of the module doc.
    pub fn of(membership: &Membership) -> Self {
        let cgroup = membership.primary_path();
        let path = cgroup.strip_suffix(DELETED).unwrap_or(cgroup);

        let mut unit = None;
        let mut container = None;
        let mut pod = None;
        let (mut parent, mut grandparent) = (None, None);
        for component in path.split('/').filter(|c| !c.is_empty()) {
            if is_unit(component) {
                unit = Some(component);
            }
            if let Some(found) = container_in(component, parent) {
                container = Some(found);
            }
            if let Some(found) = pod_in(component, parent, grandparent) {
                pod = Some(found);
            }
            grandparent = parent;
            parent = Some(component);
        }

        let (container_id, runtime) = match container {
            Some((id, runtime)) => (Some(id.to_owned()), runtime),
            None => (None, None),
        };
        let (pod_uid, qos) = pod.unzip();
        Attribution {
            cgroup: cgroup.to_owned(),
            unit: unit.map(str::to_owned),
            container_id,
            runtime,
            pod_uid,
            qos,
            pod_name: None,
            namespace: None,
            container_name: None,
            pid_in_namespace: None,
        }
    }

    /// `of(&Membership::parse(text))`.
    pub fn parse(text: &str) -> Self {
        Self::of(&Membership::parse(text))
    }

    /// The first 12 hex digits of the container id (what `docker ps` shows).
    pub fn short_container_id(&self) -> Option<&str> {
        let id = self.container_id.as_deref()?;
        Some(id.get(..12).unwrap_or(id))
    }

    /// One short phrase for text views, the most specific name first: `container 0123456789ab (containerd) in pod 1b2c3d4e-…` , `unit cron.service`, `cgroup /jobs/runner`; `None` when the path is "/" or empty (the root: nothing to say).
    ///
    /// The pod UID is given in full: it is what `kubectl get pod -o
    /// jsonpath='{.metadata.uid}'` prints, and a prefix of it matches nothing.
    /// A process in a pod but in no container (conmon) is named by its unit
    /// and the pod.
    pub fn describe(&self) -> Option<String> {
        if self.cgroup.is_empty() || self.cgroup == "/" {
            return None;
        }
        let qos = self
            .qos
            .map_or_else(String::new, |q| format!(" ({})", q.as_str()));
        let pod = match (&self.pod_name, &self.namespace, &self.pod_uid) {
            (Some(name), Some(namespace), _) => Some(format!("{namespace}/{name}")),
            (_, _, uid) => uid.clone(),
        };
        let in_pod = match &pod {
            Some(pod) => format!(" in pod {pod}{qos}"),
            None => String::new(),
        };
        let phrase = if let Some(id) = self.short_container_id() {
            let what = match (&self.container_name, self.runtime) {
                (Some(name), Some(runtime)) => format!("{name} ({id}, {})", runtime.as_str()),
                (Some(name), None) => format!("{name} ({id})"),
                (None, Some(runtime)) => format!("{id} ({})", runtime.as_str()),
                (None, None) => id.to_owned(),
            };
            format!("container {what}{in_pod}")
        } else if let Some(unit) = &self.unit {
            format!("unit {unit}{in_pod}")
        } else if let Some(pod) = &pod {
            format!("pod {pod}{qos}")
        } else {
            format!("cgroup {}", self.cgroup)
        };
        Some(phrase)
    }
}

/// Reads `/proc/<pid>/cgroup`: `Ok(None)` when the process is gone (ENOENT/ESRCH), other IO errors returned.
///
/// A zombie still has the file (its task exists until it is reaped), so this
/// works for the processes this tool looks at. The process can vanish between
/// open and read, which is ESRCH rather than ENOENT. Bytes that are not UTF-8
/// (a cgroup directory may be named anything) are replaced, not refused.
pub fn read_membership(pid: u32) -> io::Result<Option<Membership>> {
    /// `ESRCH`, the same number on every Linux architecture (std has no
    /// `ErrorKind` for it).
    const ESRCH: i32 = 3;
    match std::fs::read(format!("/proc/{pid}/cgroup")) {
        Ok(bytes) => Ok(Some(Membership::parse(&String::from_utf8_lossy(&bytes)))),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(ESRCH) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Whether a path component names a systemd unit a process can run in.
fn is_unit(component: &str) -> bool {
    [".service", ".scope"]
        .iter()
        .any(|suffix| component.len() > suffix.len() && component.ends_with(suffix))
}

/// Container id prefixes of the runtimes that name their cgroups `PREFIX<id>`
/// (with `.scope` under the systemd driver).
const PREFIXES: [(&str, Runtime); 4] = [
    ("docker-", Runtime::Docker),
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("libpod-", Runtime::Podman),
];

/// The container id a path component names, with its runtime when the layout
/// says which. `parent` is the component above it.
fn container_in<'a>(
    component: &'a str,
    parent: Option<&str>,
) -> Option<(&'a str, Option<Runtime>)> {
    if is_container_id(component) {
        let runtime = (parent == Some("docker")).then_some(Runtime::Docker);
        return Some((component, runtime));
    }
    let name = component.strip_suffix(".scope").unwrap_or(component);
    PREFIXES.iter().find_map(|&(prefix, runtime)| {
        let id = name.strip_prefix(prefix)?;
        is_container_id(id).then_some((id, Some(runtime)))
    })
}

/// 64 lowercase hex digits: a sha256, as every runtime here names containers.
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(is_lower_hex)
}

fn is_lower_hex(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

/// The pod (dashed UID, QoS class) a path component names, under either of
/// kubelet's cgroup drivers.
fn pod_in(
    component: &str,
    parent: Option<&str>,
    grandparent: Option<&str>,
) -> Option<(String, QosClass)> {
    if let Some(name) = component.strip_suffix(".slice") {
        return systemd_pod(name);
    }
    let uid = component.strip_prefix("pod")?;
    let qos = match (grandparent, parent) {
        (_, Some("kubepods")) => QosClass::Guaranteed,
        (Some("kubepods"), Some("burstable")) => QosClass::Burstable,
        (Some("kubepods"), Some("besteffort")) => QosClass::BestEffort,
        _ => return None,
    };
    Some((pod_uid(uid, b'-')?, qos))
}

/// A pod slice of kubelet's systemd driver, without `.slice`:
/// `[PREFIX-]kubepods[-burstable|-besteffort]-pod<uid with _>`.
fn systemd_pod(name: &str) -> Option<(String, QosClass)> {
    const KUBEPODS: &str = "kubepods-";
    // `kubepods-` must start a segment of the slice name, not end a word.
    let start = name
        .match_indices(KUBEPODS)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || name[..i].ends_with('-'))?;
    let rest = &name[start + KUBEPODS.len()..];
    let (qos, pod) = if let Some(pod) = rest.strip_prefix("burstable-") {
        (QosClass::Burstable, pod)
    } else if let Some(pod) = rest.strip_prefix("besteffort-") {
        (QosClass::BestEffort, pod)
    } else {
        (QosClass::Guaranteed, rest)
    };
    Some((pod_uid(pod.strip_prefix("pod")?, b'_')?, qos))
}

/// `raw` as a dashed pod UID, when it is a lowercase UUID whose dashes are
/// written `sep`, or 32 lowercase hex digits (a static pod's hash).
fn pod_uid(raw: &str, sep: u8) -> Option<String> {
    let bytes = raw.as_bytes();
    let valid = match bytes.len() {
        32 => bytes.iter().all(|&b| is_lower_hex(b)),
        36 => bytes.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == sep,
            _ => is_lower_hex(b),
        }),
        _ => false,
    };
    valid.then(|| raw.replace(char::from(sep), "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Realistic ids: sha256 digests (container ids) and UUIDs (pod UIDs).
    const ID: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
    const ID2: &str = "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d";
    const UID: &str = "81fbf81e-a286-4984-915f-bf93ed50fd08";
    const UID_: &str = "81fbf81e_a286_4984_915f_bf93ed50fd08";
    const STATIC_UID: &str = "a81259cef8e959c624df1d456e5d3297";

    /// The whole file on a pure cgroup v2 host: one line.
    fn v2(path: &str) -> String {
        format!("0::{path}\n")
    }

    /// The whole file on a hybrid host (Ubuntu 20.04-like) whose systemd
    /// cgroup driver put the process at `path` in every hierarchy but rdma.
    fn hybrid(path: &str) -> String {
        format!(
            "12:rdma:/\n\
             11:cpuset:{path}\n\
             10:net_cls,net_prio:{path}\n\
             9:name=systemd:{path}\n\
             8:pids:{path}\n\
             7:hugetlb:{path}\n\
             6:perf_event:{path}\n\
             5:memory:{path}\n\
             4:freezer:{path}\n\
             3:blkio:{path}\n\
             2:cpu,cpuacct:{path}\n\
             1:devices:{path}\n\
             0::/\n"
        )
    }

    fn owned(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[track_caller]
    fn assert_unit_only(text: &str, cgroup: &str, unit: &str) {
        let a = Attribution::parse(text);
        assert_eq!(
            a,
            Attribution {
                cgroup: cgroup.to_owned(),
                unit: owned(unit),
                ..Attribution::default()
            }
        );
        assert_eq!(a.describe(), Some(format!("unit {unit}")));
    }

    // --- Membership::parse ---

    #[test]
    fn parses_v2_and_v1_lines() {
        let m = Membership::parse(
            "4:memory:/jobs\n3:cpu,cpuacct:/\n2:name=systemd:/system.slice/cron.service\n1:pids:/jobs\n0::/system.slice/cron.service\n",
        );
        assert_eq!(m.unified.as_deref(), Some("/system.slice/cron.service"));
        let v1: Vec<(Vec<&str>, &str)> =
            m.v1.iter()
                .map(|(c, p)| (c.iter().map(String::as_str).collect(), p.as_str()))
                .collect();
        assert_eq!(
            v1,
            [
                (vec!["memory"], "/jobs"),
                (vec!["cpu", "cpuacct"], "/"),
                (vec!["name=systemd"], "/system.slice/cron.service"),
                (vec!["pids"], "/jobs"),
            ]
        );
    }

    #[test]
    fn parse_skips_malformed_lines() {
        let text = "garbage\n\
                    :\n\
                    ::\n\
                    ::/no-id\n\
                    x::/non-decimal-id\n\
                    +1:pids:/signed-id\n\
                    1:pids:relative\n\
                    1:pids:\n\
                    0:memory:/v2-with-controllers\n\
                    3::/v1-without-controllers\n\
                    \n\
                    2:pids:/kept\n\
                    0::/kept.scope\n\
                    0::/second-v2-line-ignored\n";
        let m = Membership::parse(text);
        assert_eq!(m.unified.as_deref(), Some("/kept.scope"));
        assert_eq!(m.v1, [(vec!["pids".to_owned()], "/kept".to_owned())]);
    }

    #[test]
    fn path_is_everything_after_the_second_colon() {
        let text = "2:pids:/jobs/a:b:c\n0::/system.slice/odd:name.service\n";
        let m = Membership::parse(text);
        assert_eq!(m.unified.as_deref(), Some("/system.slice/odd:name.service"));
        assert_eq!(m.v1[0].1, "/jobs/a:b:c");
        assert_unit_only(text, "/system.slice/odd:name.service", "odd:name.service");
    }

    #[test]
    fn parse_handles_crlf_and_missing_final_newline() {
        let m = Membership::parse("1:name=systemd:/user.slice\r\n0::/init.scope");
        assert_eq!(m.unified.as_deref(), Some("/init.scope"));
        assert_eq!(m.v1[0].1, "/user.slice");
    }

    // --- Membership::primary_path ---

    #[test]
    fn primary_path_prefers_name_systemd_then_v2_then_first_v1() {
        let systemd_wins = Membership::parse("2:name=systemd:/a.scope\n1:pids:/b\n0::/c.scope\n");
        assert_eq!(systemd_wins.primary_path(), "/a.scope");

        let v2_next = Membership::parse("3:pids:/b\n2:name=systemd:/\n1:memory:/c\n0::/d.scope\n");
        assert_eq!(v2_next.primary_path(), "/d.scope");

        let systemd_over_root_v2 =
            Membership::parse("3:pids:/b\n2:name=systemd:/a.scope\n1:memory:/c\n0::/\n");
        assert_eq!(systemd_over_root_v2.primary_path(), "/a.scope");

        let first_v1 = Membership::parse("3:pids:/\n2:name=systemd:/\n1:memory:/c\n4:cpu:/d\n");
        assert_eq!(first_v1.primary_path(), "/c");

        let all_root = Membership::parse("2:name=systemd:/\n1:pids:/\n0::/\n");
        assert_eq!(all_root.primary_path(), "/");
        assert_eq!(Membership::parse("1:pids:/\n").primary_path(), "/");
        assert_eq!(Membership::parse("0::/\n").primary_path(), "/");

        assert_eq!(Membership::parse("").primary_path(), "");
        assert_eq!(Membership::default().primary_path(), "");
        assert_eq!(Membership::parse("garbage\n").primary_path(), "");
    }

    // --- systemd units ---

    #[test]
    fn systemd_service() {
        assert_unit_only(
            &v2("/system.slice/cron.service"),
            "/system.slice/cron.service",
            "cron.service",
        );
    }

    #[test]
    fn user_session_scope() {
        let path = "/user.slice/user-1000.slice/session-3.scope";
        assert_unit_only(&v2(path), path, "session-3.scope");
    }

    #[test]
    fn user_service_names_the_deepest_unit() {
        let path = "/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service";
        assert_unit_only(&v2(path), path, "foo.service");
    }

    #[test]
    fn systemd_run_scope() {
        let path = "/system.slice/run-r3b1c2d4e5f6.scope";
        assert_unit_only(&v2(path), path, "run-r3b1c2d4e5f6.scope");
    }

    #[test]
    fn bare_suffixes_are_not_units() {
        let a = Attribution::parse(&v2("/jobs/.service/.scope"));
        assert_eq!(a.unit, None);
    }

    // --- Docker ---

    #[test]
    fn docker_systemd_driver() {
        let path = format!("/system.slice/docker-{ID}.scope");
        let a = Attribution::parse(&v2(&path));
        assert_eq!(
            a,
            Attribution {
                cgroup: path,
                unit: Some(format!("docker-{ID}.scope")),
                container_id: owned(ID),
                runtime: Some(Runtime::Docker),
                pod_uid: None,
                qos: None,
                pod_name: None,
                namespace: None,
                container_name: None,
                pid_in_namespace: None,
            }
        );
        assert_eq!(a.short_container_id(), Some("ca978112ca1b"));
        assert_eq!(
            a.describe().as_deref(),
            Some("container ca978112ca1b (docker)")
        );
    }

    #[test]
    fn docker_cgroupfs_driver() {
        let path = format!("/docker/{ID}");
        let a = Attribution::parse(&v2(&path));
        assert_eq!(
            a,
            Attribution {
                cgroup: path,
                container_id: owned(ID),
                runtime: Some(Runtime::Docker),
                ..Attribution::default()
            }
        );
    }

    #[test]
    fn docker_in_docker_names_the_innermost_container() {
        let path = format!("/docker/{ID}/docker/{ID2}");
        let a = Attribution::parse(&v2(&path));
        assert_eq!(a.container_id.as_deref(), Some(ID2));
        assert_eq!(a.runtime, Some(Runtime::Docker));
        assert_eq!(a.cgroup, path);
    }

    #[test]
    fn docker_on_a_v1_only_host() {
        // CentOS 7: no `0::` line, cgroupfs driver in every hierarchy.
        let text = format!(
            "11:devices:/docker/{ID}\n\
             10:pids:/docker/{ID}\n\
             9:perf_event:/docker/{ID}\n\
             8:cpuset:/docker/{ID}\n\
             7:hugetlb:/docker/{ID}\n\
             6:net_prio,net_cls:/docker/{ID}\n\
             5:blkio:/docker/{ID}\n\
             4:freezer:/docker/{ID}\n\
             3:cpuacct,cpu:/docker/{ID}\n\
             2:memory:/docker/{ID}\n\
             1:name=systemd:/docker/{ID}\n"
        );
        let m = Membership::parse(&text);
        assert_eq!(m.unified, None);
        assert_eq!(m.v1.len(), 11);
        let a = Attribution::of(&m);
        assert_eq!(a.cgroup, format!("/docker/{ID}"));
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.runtime, Some(Runtime::Docker));
    }

    #[test]
    fn v1_host_with_root_systemd_path_uses_the_memory_path() {
        let text = format!(
            "11:pids:/\n\
             10:cpuset:/\n\
             9:name=systemd:/\n\
             8:blkio:/\n\
             7:net_cls,net_prio:/\n\
             6:devices:/\n\
             5:freezer:/\n\
             4:memory:/docker/{ID}\n\
             3:cpu,cpuacct:/\n\
             2:perf_event:/\n\
             1:hugetlb:/\n"
        );
        let a = Attribution::parse(&text);
        assert_eq!(a.cgroup, format!("/docker/{ID}"));
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.runtime, Some(Runtime::Docker));
    }

    #[test]
    fn hybrid_host_uses_the_name_systemd_path() {
        let text = format!(
            "12:rdma:/\n\
             11:cpuset:/system.slice/docker-{ID}.scope\n\
             10:memory:/system.slice/docker-{ID}.scope\n\
             9:name=systemd:/system.slice/docker-{ID}.scope\n\
             8:pids:/system.slice/docker-{ID}.scope\n\
             7:hugetlb:/system.slice/docker-{ID}.scope\n\
             6:freezer:/system.slice/docker-{ID}.scope\n\
             5:blkio:/system.slice/docker-{ID}.scope\n\
             4:net_cls,net_prio:/system.slice/docker-{ID}.scope\n\
             3:devices:/system.slice/docker-{ID}.scope\n\
             2:cpu,cpuacct:/system.slice/docker-{ID}.scope\n\
             1:perf_event:/system.slice/docker-{ID}.scope\n\
             0::/\n"
        );
        let m = Membership::parse(&text);
        assert_eq!(m.unified.as_deref(), Some("/"));
        let a = Attribution::of(&m);
        assert_eq!(a.cgroup, format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(a.unit, Some(format!("docker-{ID}.scope")));
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.runtime, Some(Runtime::Docker));
    }

    #[test]
    fn hybrid_host_session_scope() {
        let path = "/user.slice/user-1000.slice/session-3.scope";
        assert_unit_only(&hybrid(path), path, "session-3.scope");
    }

    /// Documents the caveat of the module doc: runc's cgroupfs driver on a
    /// hybrid host leaves the v2 line at the forking daemon's cgroup, and the
    /// v2 path wins. Change this test if `primary_path`'s order changes.
    #[test]
    fn hybrid_host_cgroupfs_driver_is_named_by_systemds_hierarchy_not_the_stale_v2_path() {
        let text = format!(
            "12:net_cls,net_prio:/docker/{ID}\n\
             11:freezer:/docker/{ID}\n\
             10:rdma:/\n\
             9:blkio:/docker/{ID}\n\
             8:memory:/docker/{ID}\n\
             1:name=systemd:/docker/{ID}\n\
             0::/system.slice/containerd.service\n"
        );
        let a = Attribution::parse(&text);
        assert_eq!(a.cgroup, format!("/docker/{ID}"));
        assert_eq!(a.unit, None);
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.runtime, Some(Runtime::Docker));
    }

    // --- Kubernetes, systemd driver ---

    #[test]
    fn kubernetes_containerd_burstable() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        let a = Attribution::parse(&v2(&path));
        assert_eq!(
            a,
            Attribution {
                cgroup: path,
                unit: Some(format!("cri-containerd-{ID}.scope")),
                container_id: owned(ID),
                runtime: Some(Runtime::Containerd),
                pod_uid: owned(UID),
                qos: Some(QosClass::Burstable),
                pod_name: None,
                namespace: None,
                container_name: None,
                pid_in_namespace: None,
            }
        );
        assert_eq!(
            a.describe(),
            Some(format!(
                "container ca978112ca1b (containerd) in pod {UID} (burstable)"
            ))
        );
    }

    #[test]
    fn kubernetes_containerd_besteffort_on_a_hybrid_host() {
        let path = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        let a = Attribution::parse(&hybrid(&path));
        assert_eq!(a.cgroup, path);
        assert_eq!(a.pod_uid.as_deref(), Some(UID));
        assert_eq!(a.qos, Some(QosClass::BestEffort));
        assert_eq!(a.runtime, Some(Runtime::Containerd));
        assert_eq!(a.container_id.as_deref(), Some(ID));
    }

    #[test]
    fn kubernetes_containerd_guaranteed() {
        let path = format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope");
        let a = Attribution::parse(&v2(&path));
        assert_eq!(a.pod_uid.as_deref(), Some(UID));
        assert_eq!(a.qos, Some(QosClass::Guaranteed));
        assert_eq!(a.runtime, Some(Runtime::Containerd));
        assert_eq!(a.container_id.as_deref(), Some(ID));
    }

    #[test]
    fn kubernetes_with_a_cgroup_root_prefix() {
        // kind runs kubelet with --cgroup-root=/kubelet.
        let path = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        let a = Attribution::parse(&v2(&path));
        assert_eq!(a.pod_uid.as_deref(), Some(UID));
        assert_eq!(a.qos, Some(QosClass::Burstable));
        assert_eq!(a.container_id.as_deref(), Some(ID));
    }

    #[test]
    fn qos_slice_alone_is_not_a_pod() {
        let a = Attribution::parse(&v2("/kubepods.slice/kubepods-burstable.slice"));
        assert_eq!(a.pod_uid, None);
        assert_eq!(a.qos, None);
        assert_eq!(
            a.describe().as_deref(),
            Some("cgroup /kubepods.slice/kubepods-burstable.slice")
        );
    }

    #[test]
    fn pod_slice_with_a_malformed_uid_is_not_a_pod() {
        for uid in [
            "81fbf81e-a286-4984-915f-bf93ed50fd08", // dashes where systemd needs `_`
            "81fbf81e_a286_4984_915f_bf93ed50fd0",  // one digit short
            "81FBF81E_A286_4984_915F_BF93ED50FD08", // uppercase
            "81fbf81ea_286_4984_915f_bf93ed50fd08", // separator misplaced
            "",
        ] {
            let a = Attribution::parse(&v2(&format!("/kubepods.slice/kubepods-pod{uid}.slice")));
            assert_eq!(a.pod_uid, None, "{uid}");
            assert_eq!(a.qos, None, "{uid}");
        }
        let not_kubepods = Attribution::parse(&v2(&format!("/xkubepods-pod{UID_}.slice")));
        assert_eq!(not_kubepods.pod_uid, None);
    }

    // --- Kubernetes, cgroupfs driver ---

    #[test]
    fn kubernetes_cgroupfs_burstable_on_a_v1_host() {
        let path = format!("/kubepods/burstable/pod{UID}/{ID}");
        let text = format!(
            "12:hugetlb:{path}\n\
             11:memory:{path}\n\
             10:pids:{path}\n\
             9:cpuset:{path}\n\
             8:devices:{path}\n\
             7:net_cls,net_prio:{path}\n\
             6:rdma:/\n\
             5:perf_event:{path}\n\
             4:freezer:{path}\n\
             3:cpu,cpuacct:{path}\n\
             2:blkio:{path}\n\
             1:name=systemd:{path}\n"
        );
        let a = Attribution::parse(&text);
        assert_eq!(
            a,
            Attribution {
                cgroup: path,
                unit: None,
                container_id: owned(ID),
                runtime: None,
                pod_uid: owned(UID),
                qos: Some(QosClass::Burstable),
                pod_name: None,
                namespace: None,
                container_name: None,
                pid_in_namespace: None,
            }
        );
        assert_eq!(
            a.describe(),
            Some(format!("container ca978112ca1b in pod {UID} (burstable)"))
        );
    }

    #[test]
    fn kubernetes_cgroupfs_guaranteed() {
        let a = Attribution::parse(&v2(&format!("/kubepods/pod{UID}/{ID}")));
        assert_eq!(a.pod_uid.as_deref(), Some(UID));
        assert_eq!(a.qos, Some(QosClass::Guaranteed));
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.runtime, None);
    }

    #[test]
    fn kubernetes_cgroupfs_besteffort() {
        let a = Attribution::parse(&v2(&format!("/kubepods/besteffort/pod{UID}/{ID}")));
        assert_eq!(a.pod_uid.as_deref(), Some(UID));
        assert_eq!(a.qos, Some(QosClass::BestEffort));
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.runtime, None);
    }

    #[test]
    fn kubernetes_cgroupfs_static_pod() {
        let a = Attribution::parse(&v2(&format!("/kubepods/burstable/pod{STATIC_UID}/{ID}")));
        assert_eq!(a.pod_uid.as_deref(), Some(STATIC_UID));
        assert_eq!(a.qos, Some(QosClass::Burstable));
    }

    #[test]
    fn pod_directory_outside_kubepods_is_not_a_pod() {
        let a = Attribution::parse(&v2(&format!("/jobs/burstable/pod{UID}")));
        assert_eq!(a.pod_uid, None);
        let a = Attribution::parse(&v2(&format!("/kubepods/other/pod{UID}")));
        assert_eq!(a.pod_uid, None);
    }

    // --- CRI-O ---

    #[test]
    fn crio_container() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope"
        );
        let a = Attribution::parse(&v2(&path));
        assert_eq!(a.runtime, Some(Runtime::CriO));
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.unit, Some(format!("crio-{ID}.scope")));
        assert_eq!(a.pod_uid.as_deref(), Some(UID));
        assert_eq!(
            a.describe(),
            Some(format!(
                "container ca978112ca1b (cri-o) in pod {UID} (burstable)"
            ))
        );
    }

    #[test]
    fn crio_conmon_is_not_the_container() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{ID}.scope"
        );
        let a = Attribution::parse(&v2(&path));
        assert_eq!(a.container_id, None);
        assert_eq!(a.runtime, None);
        assert_eq!(a.unit, Some(format!("crio-conmon-{ID}.scope")));
        assert_eq!(a.pod_uid.as_deref(), Some(UID));
        assert_eq!(
            a.describe(),
            Some(format!(
                "unit crio-conmon-{ID}.scope in pod {UID} (burstable)"
            ))
        );
    }

    // --- Podman ---

    #[test]
    fn podman_rootful_systemd() {
        let path = format!("/machine.slice/libpod-{ID}.scope");
        let a = Attribution::parse(&v2(&path));
        assert_eq!(
            a,
            Attribution {
                cgroup: path,
                unit: Some(format!("libpod-{ID}.scope")),
                container_id: owned(ID),
                runtime: Some(Runtime::Podman),
                pod_uid: None,
                qos: None,
                pod_name: None,
                namespace: None,
                container_name: None,
                pid_in_namespace: None,
            }
        );
    }

    #[test]
    fn podman_conmon_is_not_the_container() {
        let a = Attribution::parse(&v2(&format!("/machine.slice/libpod-conmon-{ID}.scope")));
        assert_eq!(a.container_id, None);
        assert_eq!(a.runtime, None);
        assert_eq!(a.unit, Some(format!("libpod-conmon-{ID}.scope")));
    }

    #[test]
    fn podman_rootless() {
        let path =
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope");
        let a = Attribution::parse(&v2(&path));
        assert_eq!(a.runtime, Some(Runtime::Podman));
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.unit, Some(format!("libpod-{ID}.scope")));
    }

    #[test]
    fn podman_cgroupfs() {
        let a = Attribution::parse(&v2(&format!("/libpod_parent/libpod-{ID}")));
        assert_eq!(a.runtime, Some(Runtime::Podman));
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.unit, None);
    }

    #[test]
    fn podman_nested_init_cgroup() {
        let path = format!("/machine.slice/libpod-{ID}.scope/container");
        let a = Attribution::parse(&v2(&path));
        assert_eq!(a.cgroup, path);
        assert_eq!(a.runtime, Some(Runtime::Podman));
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.unit, Some(format!("libpod-{ID}.scope")));
    }

    // --- Degrading ---

    #[track_caller]
    fn assert_raw(text: &str, cgroup: &str) {
        let a = Attribution::parse(text);
        assert_eq!(
            a,
            Attribution {
                cgroup: cgroup.to_owned(),
                ..Attribution::default()
            }
        );
    }

    #[test]
    fn unknown_layout_keeps_the_raw_path() {
        assert_raw("1:pids:/jobs/runner\n0::/jobs/runner\n", "/jobs/runner");
        assert_eq!(
            Attribution::parse(&v2("/jobs/runner"))
                .describe()
                .as_deref(),
            Some("cgroup /jobs/runner")
        );
    }

    #[test]
    fn non_hex_pseudo_ids_are_not_containers() {
        let fake = "g".repeat(64);
        assert_raw(&v2(&format!("/docker/{fake}")), &format!("/docker/{fake}"));
        let path = "/system.slice/docker-my-container.scope";
        assert_unit_only(&v2(path), path, "docker-my-container.scope");
    }

    #[test]
    fn id_of_63_or_65_hex_digits_is_not_a_container() {
        for id in [ID[..63].to_owned(), format!("{ID}0")] {
            let path = format!("/docker/{id}");
            assert_raw(&v2(&path), &path);
            let path = format!("/system.slice/docker-{id}.scope");
            assert_unit_only(&v2(&path), &path, &format!("docker-{id}.scope"));
        }
    }

    #[test]
    fn uppercase_hex_is_not_a_container() {
        let upper = ID.to_ascii_uppercase();
        let path = format!("/docker/{upper}");
        assert_raw(&v2(&path), &path);
    }

    #[test]
    fn empty_file() {
        assert_raw("", "");
        assert_eq!(Attribution::parse("").describe(), None);
    }

    #[test]
    fn garbage_lines() {
        assert_raw("garbage\n\u{0}\u{ff}:::\n:::::\n", "");
        // Garbage around a good line leaves the good line.
        let text = format!("nonsense\n0::/system.slice/docker-{ID}.scope\n12\n");
        assert_eq!(Attribution::parse(&text).container_id.as_deref(), Some(ID));
    }

    #[test]
    fn extra_colons_stay_in_the_path() {
        let path = format!("/docker/{ID}:extra");
        assert_raw(&v2(&path), &path);
    }

    #[test]
    fn deleted_cgroup_is_named_without_the_suffix() {
        // A zombie whose unit stopped, reading its cgroup after rmdir.
        let path = "/system.slice/cron.service (deleted)";
        let a = Attribution::parse(&v2(path));
        assert_eq!(a.cgroup, path);
        assert_eq!(a.unit.as_deref(), Some("cron.service"));
        let a = Attribution::parse(&v2(&format!("/system.slice/docker-{ID}.scope (deleted)")));
        assert_eq!(a.container_id.as_deref(), Some(ID));
    }

    #[test]
    fn root_says_nothing() {
        assert_raw("0::/\n", "/");
        assert_eq!(Attribution::parse("0::/\n").describe(), None);
        assert_raw(&hybrid("/"), "/");
    }

    #[test]
    fn cgroup_namespace_paths_degrade() {
        // Outside a process's cgroup namespace paths climb with `..`.
        assert_raw("0::/../../sibling\n", "/../../sibling");
    }

    #[test]
    fn a_pod_seen_from_another_pods_cgroup_namespace_is_still_named() {
        // What an agent in a DaemonSet pod (its own cgroup namespace, on a
        // v2 node) reads for a process of another pod: the path from the
        // agent's cgroup up to their common ancestor and down again.
        for path in [
            format!(
                "/../../../kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
            ),
            format!("/../../kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"),
        ] {
            let a = Attribution::parse(&v2(&path));
            assert_eq!(a.cgroup, path);
            assert_eq!(a.pod_uid.as_deref(), Some(UID), "{path}");
            assert_eq!(a.qos, Some(QosClass::Burstable), "{path}");
            assert_eq!(a.container_id.as_deref(), Some(ID), "{path}");
            assert_eq!(a.runtime, Some(Runtime::Containerd), "{path}");
        }
    }

    // --- Small pieces ---

    #[test]
    fn short_container_id_is_the_first_twelve_digits() {
        let a = Attribution {
            container_id: owned(ID),
            ..Attribution::default()
        };
        assert_eq!(a.short_container_id(), Some("ca978112ca1b"));
        assert_eq!(Attribution::default().short_container_id(), None);
        let short = Attribution {
            container_id: owned("abc"),
            ..Attribution::default()
        };
        assert_eq!(short.short_container_id(), Some("abc"));
    }

    #[test]
    fn describe_pod_without_container_or_unit() {
        let path = format!("/kubepods/burstable/pod{UID}");
        let a = Attribution::parse(&v2(&path));
        assert_eq!(a.describe(), Some(format!("pod {UID} (burstable)")));
    }

    #[test]
    fn names_and_serde() {
        assert_eq!(Runtime::Docker.as_str(), "docker");
        assert_eq!(Runtime::Containerd.as_str(), "containerd");
        assert_eq!(Runtime::CriO.as_str(), "cri-o");
        assert_eq!(Runtime::Podman.as_str(), "podman");
        assert_eq!(QosClass::Guaranteed.as_str(), "guaranteed");
        assert_eq!(QosClass::Burstable.as_str(), "burstable");
        assert_eq!(QosClass::BestEffort.as_str(), "besteffort");

        let a = Attribution::parse(&v2(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope"
        )));
        let json = serde_json::to_string(&a).expect("serializes");
        assert!(json.contains("\"qos\":\"besteffort\""), "{json}");
        assert!(json.contains("\"runtime\":\"cri-o\""), "{json}");
        let back: Attribution = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, a);
    }

    // --- The reader ---

    #[test]
    fn reads_this_process() {
        let m = read_membership(std::process::id())
            .expect("reads /proc/self's cgroup")
            .expect("this process exists");
        assert!(m.unified.is_some() || !m.v1.is_empty(), "{m:?}");
        // Well above any pid_max (at most 2^22).
        assert_eq!(
            read_membership(u32::MAX - 1).expect("a gone PID is not an error"),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_names_the_primary_path(text in ".*") {
            let a = Attribution::parse(&text);
            let membership = Membership::parse(&text);
            proptest::prop_assert_eq!(a.cgroup.as_str(), membership.primary_path());
            let _ = a.describe();
        }

        #[test]
        fn parse_cgroup_like_text(
            text in "([0-9]{1,2}:(name=systemd|pids|cpu,cpuacct|)?:(/(kubepods|burstable|pod[0-9a-f_-]{0,36}|docker|[0-9a-f]{60,66}|[a-z@-]{0,12}\\.(service|scope|slice))){0,5}( \\(deleted\\))?\n){0,6}"
        ) {
            let a = Attribution::parse(&text);
            let membership = Membership::parse(&text);
            proptest::prop_assert_eq!(a.cgroup.as_str(), membership.primary_path());
            if let Some(id) = &a.container_id {
                proptest::prop_assert!(is_container_id(id));
            }
            if let Some(uid) = &a.pod_uid {
                proptest::prop_assert!(pod_uid(uid, b'-').is_some());
            }
            proptest::prop_assert_eq!(a.describe().is_none(), a.cgroup.is_empty() || a.cgroup == "/");
        }
    }
}
