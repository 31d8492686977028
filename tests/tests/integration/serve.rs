//! `zombie-trace serve` end to end: the agent as Prometheus and a hostile
//! network see it.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use zombie_trace_tests::client::{Workload, bin_path};

/// A running `serve`, stopped (SIGTERM, then waited for) on drop.
pub(crate) struct Serve {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Serve {
    pub(crate) fn start(extra: &[&str]) -> Serve {
        Serve::start_with(Command::new(bin_path("zombie-trace")), extra)
    }

    /// `serve` run by `zombie_trace`, a command that ends in the binary (a
    /// `setpriv ... -- zombie-trace` that execs it, keeping its PID).
    pub(crate) fn start_with(mut zombie_trace: Command, extra: &[&str]) -> Serve {
        // A free loopback port: bind, read it, release it for serve.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let child = zombie_trace
            .args(["serve", "--listen", &addr.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start zombie-trace serve");
        let serve = Serve { child, addr };
        // Up when /healthz answers (the programs attach first).
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if serve.get("/healthz").is_ok_and(|(status, _)| status == 200) {
                return serve;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("zombie-trace serve did not answer /healthz within 20 s");
    }

    /// The PID of the serving process.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One request, its status and body.
    fn request(&self, raw: &[u8]) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(raw)?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map_or_else(String::new, |(_, b)| b.to_owned());
        Ok((status, body))
    }

    fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
    }

    /// A scrape's body and how long it took.
    pub(crate) fn scrape(&self) -> (String, Duration) {
        let started = Instant::now();
        let (status, body) = self.get("/metrics").expect("scrape /metrics");
        assert_eq!(status, 200, "{body}");
        (body, started.elapsed())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // Safety: kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The value of the sample `name{labels}` in an exposition, labels given
/// as they are printed (`pid="42",comm="x"`): the first sample of `name`
/// that has all of them (and maybe more).
pub(crate) fn sample(exposition: &str, name: &str, labels: &str) -> Option<f64> {
    let wanted: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
    exposition.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        let has = match rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            Some(block) => {
                let present: Vec<&str> = block.split(',').collect();
                wanted.iter().all(|w| present.contains(w))
            }
            None => rest.is_empty() && wanted.is_empty(),
        };
        if has { value.trim().parse().ok() } else { None }
    })
}

/// Whether a real Prometheus can run here (with `CI=true` a test that
/// needs one fails where it cannot; elsewhere it is skipped with the reason).
pub(crate) fn prometheus_can_run() -> bool {
    let no_prometheus = zombie_trace_tests::prometheus::prometheus_bin()
        .is_none()
        .then(|| "prometheus is not installed (`cargo xtask test` installs it as root)".to_owned());
    can_run(no_prometheus, None)
}

fn parent_series(exposition: &str) -> usize {
    exposition
        .lines()
        .filter(|l| l.starts_with("zombietrace_parent_pending_zombies{"))
        .count()
}

#[test]
fn metrics_name_the_leaking_parent_with_its_exact_count() {
    if !privileged() {
        return;
    }
    let serve = Serve::start(&[]);
    let leaky = Workload::start("never-waits", &["37"]);
    let labels = format!("pid=\"{}\",comm=\"never-waits\"", leaky.pid());
    let (body, _) = serve.scrape();
    assert_eq!(
        sample(&body, "zombietrace_parent_pending_zombies", &labels),
        Some(37.0),
        "{body}"
    );
    assert!(
        sample(
            &body,
            "zombietrace_parent_oldest_zombie_age_seconds",
            &labels
        )
        .is_some()
    );
    assert_eq!(sample(&body, "zombietrace_ledger_complete", ""), Some(1.0));
    // The exposition is valid for Prometheus's own checker, when installed.
    if let Some(promtool) = zombie_trace_tests::prometheus::promtool_bin() {
        let mut check = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run promtool");
        check
            .stdin
            .take()
            .expect("stdin")
            .write_all(body.as_bytes())
            .expect("feed promtool");
        let out = check.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true, but promtool is not installed (`cargo xtask test` installs it)");
    }
    // /parents is a watch report line.
    let (status, parents) = serve.get("/parents").expect("/parents");
    assert_eq!(status, 200);
    let report: serde_json::Value = serde_json::from_str(&parents).expect("JSON");
    assert_eq!(report["type"], "report");
    let row = report["parents"]
        .as_array()
        .and_then(|p| p.iter().find(|r| r["pid"] == leaky.pid()))
        .expect("the leak in /parents");
    assert_eq!(row["pending_zombies"], 37);
    // Once reaped, its series is gone.
    let pid = leaky.pid();
    drop(leaky);
    std::thread::sleep(Duration::from_millis(500));
    let (body, _) = serve.scrape();
    assert!(
        !body.contains(&format!("pid=\"{pid}\"")),
        "a parent that owes nothing has no series"
    );
}

#[test]
fn hostile_clients_never_stop_the_scrapes() {
    if !privileged() {
        return;
    }
    let serve = Serve::start(&[]);
    // Malformed requests get a 4xx each, never a hang or a crash.
    for (raw, want) in [
        (&b"BREW /pot HTCPCP/1.0\r\n\r\n"[..], 400),
        (b"POST /metrics HTTP/1.1\r\n\r\n", 405),
        (b"GET /nothing HTTP/1.1\r\n\r\n", 404),
        (b"GET metrics HTTP/1.1\r\n\r\n", 400),
        (b"\x00\xff\x10garbage\r\n\r\n", 400),
    ] {
        let (status, _) = serve.request(raw).expect("an answer");
        assert_eq!(status, want, "{:?}", String::from_utf8_lossy(raw));
    }
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    assert_eq!(serve.request(huge.as_bytes()).expect("an answer").0, 431);
    // 500 idle connections and 20 slow ones (a byte every 200 ms).
    let idle: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(serve.addr).expect("open an idle connection"))
        .collect();
    let slow: Vec<std::thread::JoinHandle<()>> = (0..20)
        .map(|_| {
            let addr = serve.addr;
            std::thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect(addr) else {
                    return;
                };
                for b in b"GET /metrics HTTP/1.1\r\nHost: slow\r\n\r\n" {
                    if s.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let (_, took) = serve.scrape();
        assert!(
            took < Duration::from_secs(1),
            "scrape took {took:?} beside 520 idle or slow clients"
        );
    }
    drop(idle);
    for t in slow {
        let _ = t.join();
    }
    assert_eq!(serve.get("/healthz").expect("health").0, 200);
}

#[test]
fn a_scrape_during_a_30000_exit_burst_answers_within_a_second_and_the_ledger_stays_exact() {
    if !privileged() {
        return;
    }
    let serve = Serve::start(&["--ring-bytes", "16777216"]);
    let burst = std::thread::spawn(|| Workload::start("zombie-burst", &["30000", "28000", "2"]));
    let mut slowest = Duration::ZERO;
    let mut scrapes = 0;
    while !burst.is_finished() {
        let (_, took) = serve.scrape();
        slowest = slowest.max(took);
        scrapes += 1;
    }
    let burst = burst.join().expect("the burst");
    assert!(scrapes >= 2, "scraped during the burst ({scrapes})");
    assert!(
        slowest < Duration::from_secs(1),
        "slowest scrape {slowest:?}"
    );
    // Exact after: every parent of the burst owes its share.
    std::thread::sleep(Duration::from_millis(1500));
    let (body, took) = serve.scrape();
    // The burst's parents are its workload's children.
    let parents: Vec<u32> = burst.children();
    let owed: f64 = parents
        .iter()
        .filter_map(|pid| {
            body.lines()
                .find(|l| {
                    l.starts_with("zombietrace_parent_pending_zombies{")
                        && l.contains(&format!("pid=\"{pid}\""))
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        })
        .sum();
    assert_eq!(owed, 28000.0, "{body}");
    assert!(
        took < Duration::from_secs(1),
        "scrape with 28,000 zombies took {took:?}"
    );
    drop(burst);
}

#[test]
fn per_parent_series_stay_bounded_under_pid_churn() {
    if !privileged() {
        return;
    }
    let top = 5;
    let serve = Serve::start(&["--top", &top.to_string()]);
    // Leaky parents come and go: 60 of them, 8 alive at a time.
    let mut alive: std::collections::VecDeque<Workload> = std::collections::VecDeque::new();
    let mut max_series = 0;
    for i in 0..60 {
        alive.push_back(Workload::start("never-waits", &[&(1 + i % 7).to_string()]));
        if alive.len() > 8 {
            alive.pop_front();
        }
        let (body, _) = serve.scrape();
        max_series = max_series.max(parent_series(&body));
    }
    assert!(
        max_series <= top,
        "{max_series} per-parent series for --top {top}"
    );
    assert!(max_series >= top, "the top {top} are shown ({max_series})");
}

#[test]
fn a_real_prometheus_sees_the_exact_count_and_fires_the_alert_naming_the_pid() {
    if !privileged() {
        return;
    }
    use zombie_trace_tests::prometheus::{
        Prometheus, TempDir, rules_copy_with_short_for, samples, shipped_rules,
    };
    if !prometheus_can_run() {
        return;
    }
    let serve = Serve::start(&[]);
    // The shipped rules, with every `for:` shortened so the test need not
    // wait 5 minutes.
    let dir = TempDir::new("zombie-trace-rules").expect("a temporary directory");
    let rules = dir.path().join("zombie-trace.rules.yml");
    let replaced =
        rules_copy_with_short_for(&shipped_rules(), &rules, "2s").expect("copy the rules");
    assert!(replaced > 0, "the rules have `for:` clauses");
    let prometheus = Prometheus::start(&serve.addr.to_string(), &[rules], Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("start prometheus: {e}"));
    let leaky = Workload::start("never-waits", &["120"]);
    let pid = leaky.pid();
    let query = format!("zombietrace_parent_pending_zombies{{pid=\"{pid}\"}}");
    let data = prometheus
        .wait_for(&query, Duration::from_secs(30), |data| {
            samples(data).iter().any(|(_, v)| *v == 120.0)
        })
        .unwrap_or_else(|e| panic!("{e}\nprometheus log:\n{}", prometheus.log()));
    let found = samples(&data);
    assert_eq!(found.len(), 1, "one series for the parent: {data}");
    assert_eq!(found[0].1, 120.0);
    assert_eq!(
        found[0].0.get("comm").and_then(|c| c.as_str()),
        Some("never-waits")
    );
    let alerts = prometheus
        .wait_for_alert("ZombieParentOwesReaps", "firing", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let pid_label = pid.to_string();
    let ours = alerts
        .iter()
        .find(|a| a["labels"]["pid"].as_str() == Some(pid_label.as_str()))
        .unwrap_or_else(|| panic!("the alert names PID {pid}: {alerts:?}"));
    let description = ours["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        description.contains(&pid.to_string()) && description.contains("never-waits"),
        "the alert's description names the pid and comm: {description}"
    );
    drop(leaky);
}
