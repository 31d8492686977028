use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;

use super::*;

const UID: &str = "7e0b1a52-93c4-4d1e-8f6a-2b9c0d3e4f51";
const APP: &str = "4c1f09a2b7d3e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e";
const SIDECAR: &str = "aaaa09a2b7d3e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e";

fn pod(namespace: &str, name: &str) -> PodName {
    PodName {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// A containerd container of a Burstable pod, as its cgroup path names it.
fn in_pod(container: &str) -> Attribution {
    let uid = UID.replace('-', "_");
    Attribution::parse(&format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{container}.scope\n"
    ))
}

#[test]
fn sources_parse_and_https_is_refused_with_the_reason() {
    assert_eq!(
        PodNamesSource::parse("http://127.0.0.1:10255"),
        Ok(PodNamesSource::Kubelet {
            host: "127.0.0.1".to_owned(),
            port: 10255
        })
    );
    assert_eq!(
        PodNamesSource::parse("http://node-a/pods"),
        Ok(PodNamesSource::Kubelet {
            host: "node-a".to_owned(),
            port: 10255
        })
    );
    assert_eq!(
        PodNamesSource::parse("/var/log"),
        Ok(PodNamesSource::LogRoot(PathBuf::from("/var/log")))
    );
    let https = PodNamesSource::parse("https://127.0.0.1:10250").expect_err("https");
    assert!(https.contains("TLS") && https.contains("10255"), "{https}");
    assert!(PodNamesSource::parse("http://h:port").is_err());
    assert!(PodNamesSource::parse("http://h:1/x/y").is_err());
    assert!(PodNamesSource::parse("  ").is_err());
}

#[test]
fn the_kubelets_log_names_map_uids_and_ids_to_names() {
    let index = NameIndex::from_log_names(
        [
            format!("shop_web-7d9f8b6c5-x2x4z_{UID}").as_str(),
            "not-a-pod",
            "ns_name_not-a-uid",
        ],
        [
            format!("web-7d9f8b6c5-x2x4z_shop_app-server-{APP}.log").as_str(),
            format!("web-7d9f8b6c5-x2x4z_shop_istio-proxy-{SIDECAR}.log").as_str(),
            "web_shop_app-0123.log",
            "README",
        ],
    );
    assert_eq!(index.pods.len(), 1);
    assert_eq!(index.pods[UID], pod("shop", "web-7d9f8b6c5-x2x4z"));
    assert_eq!(index.containers.len(), 2, "{index:?}");
    assert_eq!(
        index.containers[APP],
        (pod("shop", "web-7d9f8b6c5-x2x4z"), "app-server".to_owned())
    );
    assert_eq!(index.containers[SIDECAR].1, "istio-proxy");
}

const POD_LIST: &str = r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[
 {"metadata":{"name":"web-7d9f8b6c5-x2x4z","namespace":"shop","uid":"7e0b1a52-93c4-4d1e-8f6a-2b9c0d3e4f51"},
  "spec":{"containers":[{"name":"app-server"}]},
  "status":{"phase":"Running",
   "initContainerStatuses":[{"name":"migrate","containerID":"containerd://aaaa09a2b7d3e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e"}],
   "containerStatuses":[{"name":"app-server","containerID":"containerd://4c1f09a2b7d3e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e","ready":true}]}},
 {"metadata":{"name":"pending-pod","namespace":"default","uid":"11111111-2222-3333-4444-555555555555"},
  "status":{"phase":"Pending","containerStatuses":[{"name":"c","containerID":""}]}},
 {"metadata":{"name":"no-status","namespace":"default","uid":"66666666-2222-3333-4444-555555555555"}}
]}"#;

#[test]
fn the_kubelets_pod_list_names_pods_and_every_kind_of_container() {
    let index = NameIndex::from_pod_list(POD_LIST.as_bytes()).expect("a pod list");
    assert_eq!(index.pods.len(), 3);
    assert_eq!(index.pods[UID], pod("shop", "web-7d9f8b6c5-x2x4z"));
    assert_eq!(
        index.containers.len(),
        2,
        "a container not created yet has no id"
    );
    assert_eq!(index.containers[APP].1, "app-server");
    assert_eq!(index.containers[SIDECAR].1, "migrate");
    assert!(NameIndex::from_pod_list(b"<html>").is_err());
}

#[test]
fn naming_sets_names_only_from_the_index_never_from_a_guess() {
    let index = NameIndex::from_pod_list(POD_LIST.as_bytes()).expect("a pod list");
    let mut app = in_pod(APP);
    assert!(index.name(&mut app));
    assert_eq!(app.pod_name.as_deref(), Some("web-7d9f8b6c5-x2x4z"));
    assert_eq!(app.namespace.as_deref(), Some("shop"));
    assert_eq!(app.container_name.as_deref(), Some("app-server"));
    assert_eq!(
        app.describe().as_deref(),
        Some(
            "container app-server (4c1f09a2b7d3, containerd) in pod shop/web-7d9f8b6c5-x2x4z (burstable)"
        )
    );

    // A container the index does not know, in a known pod: the pod is
    // named, the container is not, and a later read may name it.
    let unknown = "b".repeat(64);
    let mut other = in_pod(&unknown);
    assert!(!index.name(&mut other));
    assert_eq!(other.pod_name.as_deref(), Some("web-7d9f8b6c5-x2x4z"));
    assert_eq!(other.container_name, None);

    // Docker outside Kubernetes has no Kubernetes names, and asks nothing.
    let mut docker = Attribution::parse(&format!("0::/system.slice/docker-{APP}.scope\n"));
    docker.runtime = None;
    let mut outside = Attribution::parse(&format!("0::/docker/{}\n", "c".repeat(64)));
    assert!(index.name(&mut outside));
    assert_eq!((outside.pod_name, outside.container_name), (None, None));
}

/// A directory laid out as a node's /var/log, removed on drop.
struct LogRoot(PathBuf);

impl LogRoot {
    fn new(tag: &str) -> Self {
        let root = std::env::temp_dir().join(format!("zt-podnames-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("pods")).expect("pods/");
        std::fs::create_dir_all(root.join("containers")).expect("containers/");
        Self(root)
    }

    fn add(&self, container: &str, name: &str) {
        std::fs::create_dir_all(self.0.join("pods").join(format!("shop_web-1_{UID}")))
            .expect("a pod dir");
        std::fs::write(
            self.0
                .join("containers")
                .join(format!("web-1_shop_{name}-{container}.log")),
            "",
        )
        .expect("a log file");
    }
}

impl Drop for LogRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_log_root_is_read_again_when_a_new_container_is_asked_for() {
    let root = LogRoot::new("refresh");
    root.add(APP, "app");
    let (mut names, note) = PodNames::open(PodNamesSource::LogRoot(root.0.clone()));
    assert_eq!(note, None);
    let mut app = in_pod(APP);
    names.name(&mut app);
    assert_eq!(app.container_name.as_deref(), Some("app"));

    // A container started since: found once a read is due, not before.
    root.add(SIDECAR, "sidecar");
    let mut sidecar = in_pod(SIDECAR);
    names.name(&mut sidecar);
    assert_eq!(
        sidecar.container_name, None,
        "read again only after the interval"
    );
    names.refresh_after = Duration::ZERO;
    names.name(&mut sidecar);
    assert_eq!(sidecar.container_name.as_deref(), Some("sidecar"));
    assert_eq!(sidecar.pod_name.as_deref(), Some("web-1"));
}

#[test]
fn an_unreadable_source_is_said_once_and_names_nothing() {
    let missing = std::env::temp_dir().join(format!("zt-podnames-missing-{}", std::process::id()));
    let (mut names, note) = PodNames::open(PodNamesSource::LogRoot(missing.clone()));
    let note = note.expect("a note");
    assert_eq!(note.lines().count(), 1);
    assert!(
        note.contains(&missing.join("pods").display().to_string()),
        "{note}"
    );
    assert!(note.contains("--pod-names"), "{note}");
    names.refresh_after = Duration::ZERO;
    let mut app = in_pod(APP);
    names.name(&mut app);
    assert_eq!((app.pod_name, app.container_name), (None, None));
    assert!(
        names.refresh().is_none(),
        "said once while it keeps failing"
    );
}

/// Serves `answers` to successive connections on 127.0.0.1, each request
/// line sent back through the returned channel.
fn fake_kubelet(answers: Vec<String>) -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("its address").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for answer in answers {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            // The request line, then the headers up to the blank line.
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let _ = tx.send(request);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (port, rx)
}

#[test]
fn the_kubelets_read_only_port_is_asked_for_its_pod_list() {
    let ok = format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{POD_LIST}");
    let denied = "HTTP/1.0 401 Unauthorized\r\n\r\nUnauthorized".to_owned();
    let (port, requests) = fake_kubelet(vec![ok, denied]);
    let source = PodNamesSource::Kubelet {
        host: "127.0.0.1".to_owned(),
        port,
    };
    let index = read_index(&source).expect("the pod list");
    assert_eq!(
        requests.recv().expect("a request").trim_end(),
        "GET /pods HTTP/1.0"
    );
    assert_eq!(index.containers[APP].1, "app-server");
    let err = read_index(&source).expect_err("401");
    assert!(err.to_string().contains("401 Unauthorized"), "{err}");
}
