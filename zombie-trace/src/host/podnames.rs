//! Kubernetes names for what the cgroup path gives by id: the pod name and
//! namespace of a pod UID, the container name of a container id. Off by
//! default (`--pod-names`); the cgroup path alone names every container and
//! pod by id, with no access to anything but /proc.
//!
//! Two sources, both read-only and local to the node:
//!
//! - the kubelet's log directories (`--pod-names /var/log`): the kubelet
//!   names `pods/<namespace>_<pod>_<uid>/` and
//!   `containers/<pod>_<namespace>_<container>-<id>.log` for every CRI
//!   runtime, so their names alone map a UID and an id to names (the files
//!   are not opened; log agents read the same names);
//! - the kubelet's read-only pod list (`--pod-names
//!   http://127.0.0.1:10255`): `GET /pods`, plain HTTP. The authenticated
//!   port (10250, HTTPS with a token) is not spoken: it needs a TLS client
//!   this tool does not carry.
//!
//! The index is read at start and again when a lookup misses, at most once
//! per [`REFRESH_AFTER`]: a pod started since is found on its first report,
//! and a storm of unknown ids costs one read per interval. When the source
//! cannot be read, names are left out (never guessed) and one line says why.

use std::io::{self, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use serde::Deserialize;
use thiserror::Error;

use crate::host::cgroup::Attribution;

/// The shortest time between two reads of the source.
pub const REFRESH_AFTER: Duration = Duration::from_secs(5);
/// How long a kubelet request may take.
const KUBELET_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest pod list read (a node runs at most a few hundred pods).
const KUBELET_MAX_BYTES: u64 = 64 << 20;

/// Where names come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodNamesSource {
    /// A node's log root, holding the kubelet's `pods/` and `containers/`.
    LogRoot(PathBuf),
    /// The kubelet's read-only endpoint: host and port.
    Kubelet { host: String, port: u16 },
}

impl PodNamesSource {
    /// `http://HOST:PORT` (the kubelet) or a directory (a log root).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("http://") {
            let authority = rest.trim_end_matches('/').trim_end_matches("/pods");
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) => (
                    host,
                    port.parse::<u16>()
                        .map_err(|_| format!("`{text}`: `{port}` is not a port number"))?,
                ),
                None => (authority, 10255),
            };
            if host.is_empty() || authority.contains('/') {
                return Err(format!(
                    "`{text}` is not a kubelet address: give http://HOST:PORT (e.g. http://127.0.0.1:10255)"
                ));
            }
            return Ok(Self::Kubelet {
                host: host.to_owned(),
                port,
            });
        }
        if text.starts_with("https://") {
            return Err(format!(
                "`{text}`: the kubelet's HTTPS port needs a TLS client and a token, which zombie-trace does not carry; give its read-only port (http://127.0.0.1:10255) or the node's log root (/var/log)"
            ));
        }
        if text.is_empty() {
            return Err("--pod-names needs a log root (/var/log) or a kubelet address".to_owned());
        }
        Ok(Self::LogRoot(PathBuf::from(text)))
    }

    pub fn describe(&self) -> String {
        match self {
            Self::LogRoot(root) => format!("the kubelet's log names under {}", root.display()),
            Self::Kubelet { host, port } => {
                format!("the kubelet's pod list at http://{host}:{port}/pods")
            }
        }
    }
}

#[derive(Debug, Error)]
pub enum PodNamesError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("asking the kubelet at {address}: {source}")]
    Kubelet { address: String, source: io::Error },
    #[error("the kubelet at {address} answered {status}")]
    Status { address: String, status: String },
    #[error("the kubelet's pod list at {address} is not JSON: {source}")]
    Json {
        address: String,
        source: serde_json::Error,
    },
}

/// A pod's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

/// What one read of the source gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameIndex {
    /// Pod UID (dashed) → its names.
    pub pods: FxHashMap<String, PodName>,
    /// Container id (64 hex digits) → its pod and its name.
    pub containers: FxHashMap<String, (PodName, String)>,
}

impl NameIndex {
    /// The names the kubelet gives a node's log files: `pods/<namespace>_<pod>_<uid>`
    /// and `containers/<pod>_<namespace>_<container>-<id>.log`.
    pub fn from_log_names<'a>(
        pods: impl IntoIterator<Item = &'a str>,
        containers: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut index = Self::default();
        for dir in pods {
            // Namespaces and pod names are DNS names: no `_` in them.
            let mut parts = dir.splitn(3, '_');
            if let (Some(namespace), Some(name), Some(uid)) =
                (parts.next(), parts.next(), parts.next())
                && is_uid(uid)
            {
                index.pods.insert(
                    uid.to_owned(),
                    PodName {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                    },
                );
            }
        }
        for file in containers {
            let Some(stem) = file.strip_suffix(".log") else {
                continue;
            };
            let Some((rest, id)) = stem.rsplit_once('-') else {
                continue;
            };
            let mut parts = rest.splitn(3, '_');
            if let (Some(pod), Some(namespace), Some(container)) =
                (parts.next(), parts.next(), parts.next())
                && is_container_id(id)
            {
                index.containers.insert(
                    id.to_owned(),
                    (
                        PodName {
                            namespace: namespace.to_owned(),
                            name: pod.to_owned(),
                        },
                        container.to_owned(),
                    ),
                );
            }
        }
        index
    }

    /// The kubelet's `GET /pods` answer (a `v1.PodList`).
    pub fn from_pod_list(body: &[u8]) -> Result<Self, serde_json::Error> {
        let list: PodList = serde_json::from_slice(body)?;
        let mut index = Self::default();
        for pod in list.items {
            let names = PodName {
                namespace: pod.metadata.namespace,
                name: pod.metadata.name,
            };
            let statuses = [
                pod.status.container_statuses,
                pod.status.init_container_statuses,
                pod.status.ephemeral_container_statuses,
            ];
            for status in statuses.into_iter().flatten().flatten() {
                // `containerd://<id>`, `docker://<id>`, `cri-o://<id>`.
                let id = status
                    .container_id
                    .rsplit_once("://")
                    .map_or(status.container_id.as_str(), |(_, id)| id);
                if is_container_id(id) {
                    index
                        .containers
                        .insert(id.to_owned(), (names.clone(), status.name));
                }
            }
            if !pod.metadata.uid.is_empty() {
                index.pods.insert(pod.metadata.uid, names);
            }
        }
        Ok(index)
    }

    /// Sets `attribution`'s names from the index; whether it knew them all.
    fn name(&self, attribution: &mut Attribution) -> bool {
        let mut complete = true;
        if let Some(id) = &attribution.container_id {
            match self.containers.get(id) {
                Some((pod, container)) => {
                    attribution.container_name = Some(container.clone());
                    attribution.pod_name = Some(pod.name.clone());
                    attribution.namespace = Some(pod.namespace.clone());
                }
                // Only a container in a pod has a Kubernetes name.
                None => complete = attribution.pod_uid.is_none(),
            }
        }
        if let Some(uid) = &attribution.pod_uid
            && attribution.pod_name.is_none()
        {
            match self.pods.get(uid) {
                Some(pod) => {
                    attribution.pod_name = Some(pod.name.clone());
                    attribution.namespace = Some(pod.namespace.clone());
                }
                None => complete = false,
            }
        }
        complete
    }
}

fn is_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A pod UID as the API prints it: 36 characters, hex and dashes.
fn is_uid(uid: &str) -> bool {
    uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

#[derive(Deserialize)]
struct PodList {
    #[serde(default)]
    items: Vec<Pod>,
}

#[derive(Deserialize)]
struct Pod {
    metadata: PodMetadata,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Deserialize)]
struct PodMetadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    container_statuses: Option<Vec<ContainerStatus>>,
    init_container_statuses: Option<Vec<ContainerStatus>>,
    ephemeral_container_statuses: Option<Vec<ContainerStatus>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatus {
    #[serde(default)]
    name: String,
    /// Empty until the container is created.
    #[serde(default, rename = "containerID")]
    container_id: String,
}

/// Reads `source` once.
pub fn read_index(source: &PodNamesSource) -> Result<NameIndex, PodNamesError> {
    match source {
        PodNamesSource::LogRoot(root) => {
            let pods = dir_names(&root.join("pods"))?;
            let containers = dir_names(&root.join("containers"))?;
            Ok(NameIndex::from_log_names(
                pods.iter().map(String::as_str),
                containers.iter().map(String::as_str),
            ))
        }
        PodNamesSource::Kubelet { host, port } => {
            let address = format!("{host}:{port}");
            let body = kubelet_pods(host, *port).map_err(|e| match e {
                KubeletError::Io(source) => PodNamesError::Kubelet {
                    address: address.clone(),
                    source,
                },
                KubeletError::Status(status) => PodNamesError::Status {
                    address: address.clone(),
                    status,
                },
            })?;
            NameIndex::from_pod_list(&body)
                .map_err(|source| PodNamesError::Json { address, source })
        }
    }
}

fn dir_names(dir: &Path) -> Result<Vec<String>, PodNamesError> {
    let read = |source| PodNamesError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

enum KubeletError {
    Io(io::Error),
    Status(String),
}

/// `GET /pods` over HTTP/1.0 (so the answer is never chunked), the body.
fn kubelet_pods(host: &str, port: u16) -> Result<Vec<u8>, KubeletError> {
    let address = (host, port)
        .to_socket_addrs()
        .map_err(KubeletError::Io)?
        .next()
        .ok_or_else(|| KubeletError::Io(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
    let mut stream =
        TcpStream::connect_timeout(&address, KUBELET_TIMEOUT).map_err(KubeletError::Io)?;
    stream
        .set_read_timeout(Some(KUBELET_TIMEOUT))
        .map_err(KubeletError::Io)?;
    stream
        .set_write_timeout(Some(KUBELET_TIMEOUT))
        .map_err(KubeletError::Io)?;
    let request = format!(
        "GET /pods HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: application/json\r\nUser-Agent: zombie-trace\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(KubeletError::Io)?;
    let mut answer = Vec::new();
    stream
        .take(KUBELET_MAX_BYTES)
        .read_to_end(&mut answer)
        .map_err(KubeletError::Io)?;
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(KubeletError::Status("no HTTP header".to_owned()));
    };
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head.lines().next().unwrap_or_default().to_owned();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(KubeletError::Status(format!("`{status}`")));
    }
    Ok(answer[split + 4..].to_vec())
}

/// Names kept from the source, read again when a lookup misses.
#[derive(Debug)]
pub struct PodNames {
    source: PodNamesSource,
    index: NameIndex,
    read_at: Option<Instant>,
    refresh_after: Duration,
    /// The last read failed: names are left out until one works.
    failing: bool,
}

impl PodNames {
    /// Reads `source` once; the one-line note to print when it cannot be
    /// read (names are then left out, and asked again later).
    pub fn open(source: PodNamesSource) -> (Self, Option<String>) {
        let mut names = Self {
            source,
            index: NameIndex::default(),
            read_at: None,
            refresh_after: REFRESH_AFTER,
            failing: false,
        };
        let note = names.refresh();
        (names, note)
    }

    /// Reads the source again; a note when it fails for the first time
    /// since it last worked.
    fn refresh(&mut self) -> Option<String> {
        self.read_at = Some(Instant::now());
        match read_index(&self.source) {
            Ok(index) => {
                self.index = index;
                self.failing = false;
                None
            }
            Err(err) => {
                let first = !self.failing;
                self.failing = true;
                first.then(|| {
                    format!(
                        "pod names: {err}; pods and containers are named by UID and id only until it can be read (mount the node's /var/log into the agent, or drop --pod-names)"
                    )
                })
            }
        }
    }

    /// Sets the Kubernetes names of `attribution`'s pod and container, when
    /// the source has them (reading it again if it may have them by now).
    pub fn name(&mut self, attribution: &mut Attribution) {
        let unnamed_pod = attribution.pod_uid.is_some() && attribution.pod_name.is_none();
        let unnamed_container =
            attribution.container_id.is_some() && attribution.container_name.is_none();
        if !unnamed_pod && !unnamed_container {
            return;
        }
        if self.index.name(attribution) {
            return;
        }
        let due = self
            .read_at
            .is_none_or(|at| at.elapsed() >= self.refresh_after);
        if due {
            if let Some(note) = self.refresh() {
                log::warn!("{note}");
            }
            self.index.name(attribution);
        }
    }
}

#[cfg(test)]
mod tests;
