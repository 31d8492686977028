//! A real Prometheus server for tests: scrape a target on loopback, evaluate
//! the shipped alert rules, and ask its HTTP API what it saw.
//!
//! ```no_run
//! use std::time::Duration;
//! use zombie_trace_tests::prometheus::{self, Prometheus, TempDir};
//!
//! let dir = TempDir::new("rules").expect("temp dir");
//! let rules = dir.path().join("zombie-trace.rules.yml");
//! // Alerts fire after 1 s instead of minutes.
//! prometheus::rules_copy_with_short_for(&prometheus::shipped_rules(), &rules, "1s")
//!     .expect("rules");
//! let prom = Prometheus::start("127.0.0.1:21717", &[rules], Duration::from_secs(1))
//!     .expect("prometheus");
//! let firing = prom
//!     .wait_for_alert("ZombieParentOwesReaps", "firing", Duration::from_secs(30))
//!     .expect("the alert fires");
//! assert_eq!(firing[0]["labels"]["pid"], "42");
//! ```
//!
//! Everything is std (plus serde_json): the API is spoken over a raw
//! [`TcpStream`] in HTTP/1.0, so the response is never chunked and ends when
//! the server closes the connection. The server listens on a free loopback
//! port and keeps its TSDB in a fresh temporary directory; both are released
//! when the [`Prometheus`] is dropped (the process is killed by PID, reaped,
//! and the directory removed).
//!
//! `prometheus` and `promtool` come from Debian's `prometheus` package
//! (2.42 on bookworm); tests skip without them, except under `CI=true`,
//! where a missing server is a failure.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How long Prometheus may take to answer `/-/ready` (it replays nothing:
/// the TSDB is new, but a loaded 2-CPU machine can be slow to start it).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The scrape job's name: the shipped rules expect it (`up{job="zombie-trace"}`).
pub const JOB: &str = "zombie-trace";

/// Bound on one API response; Prometheus's answers in tests are tiny.
const MAX_RESPONSE: u64 = 64 << 20;

/// The `prometheus` executable on PATH, if any.
pub fn prometheus_bin() -> Option<PathBuf> {
    on_path("prometheus")
}

/// The `promtool` executable on PATH, if any.
pub fn promtool_bin() -> Option<PathBuf> {
    on_path("promtool")
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The alert rules shipped in `deploy/prometheus/`.
pub fn shipped_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/zombie-trace.rules.yml")
}

/// A directory under the system's temporary directory, removed (with all it
/// holds) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/<prefix>-<pid>-<n>-<nanos>`, mode 0700.
    pub fn new(prefix: &str) -> io::Result<TempDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for _ in 0..100 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
                    return Ok(TempDir { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("no free temporary directory name"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A Prometheus server of its own: one scrape job (`zombie-trace`) with one
/// target, the given rule files, evaluated every second.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    /// Configuration, TSDB and log; removed after the process is gone.
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `scrape_target` (`"127.0.0.1:PORT"`) every
    /// `scrape_interval` (at least 1 ms; the scrape timeout is the same),
    /// with `rule_files` (each must exist; they are not copied), and returns
    /// once `/-/ready` answers 200. A lost race for the free port is retried.
    pub fn start(
        scrape_target: &str,
        rule_files: &[PathBuf],
        scrape_interval: Duration,
    ) -> Result<Prometheus, String> {
        let bin = prometheus_bin()
            .ok_or("prometheus is not installed (Debian: `apt-get install prometheus`)")?;
        let config = config_yaml(scrape_target, rule_files, scrape_interval)?;
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_loopback_port().map_err(|e| format!("no free port: {e}"))?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut prom = Self::spawn(&bin, &config, addr)?;
            match prom.wait_ready(READY_TIMEOUT) {
                Ok(()) => return Ok(prom),
                Err(e) if e.contains("address already in use") => last_error = e,
                Err(e) => return Err(e),
            }
        }
        Err(last_error)
    }

    fn spawn(bin: &Path, config: &str, addr: SocketAddr) -> Result<Prometheus, String> {
        let dir = TempDir::new("zombie-trace-prometheus").map_err(|e| format!("temp dir: {e}"))?;
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config).map_err(|e| format!("{}: {e}", config_path.display()))?;
        let log_path = dir.path().join("prometheus.log");
        let log =
            fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        Ok(Prometheus { child, addr, dir })
    }

    /// Until `/-/ready` answers 200; an error with the log if the process
    /// exits first or `timeout` passes.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "prometheus exited ({status}) before it was ready; its log:\n{}",
                    self.log()
                ));
            }
            if let Ok((200, _)) = http_get(self.addr, "/-/ready") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "prometheus was not ready within {timeout:?}; its log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where its HTTP API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it logged so far (stdout and stderr), for failure messages.
    pub fn log(&self) -> String {
        fs::read(self.dir.path().join("prometheus.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// An instant query now: the API's `data`, `{"resultType": ...,
    /// "result": [...]}`. See [`samples`] for the values of a vector.
    pub fn query(&self, promql: &str) -> Result<Value, String> {
        self.api(&format!("/api/v1/query?query={}", percent_encode(promql)))
    }

    /// The active alerts (pending and firing): the API's `data.alerts`, an
    /// array of `{"labels", "annotations", "state", "activeAt", "value"}`.
    pub fn alerts(&self) -> Result<Value, String> {
        let mut data = self.api("/api/v1/alerts")?;
        Ok(data
            .get_mut("alerts")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }

    /// Queries `promql` until `predicate` holds for the answer (`data`, as
    /// from [`Prometheus::query`]) and returns it; an error after `timeout`,
    /// with the last answer.
    pub fn wait_for(
        &self,
        promql: &str,
        timeout: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.query(promql) {
                Ok(data) if predicate(&data) => return Ok(data),
                Ok(data) => data.to_string(),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "`{promql}` did not satisfy the condition within {timeout:?}; last answer: {last}"
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until at least one alert named `alertname` is in `state`
    /// (`pending` or `firing`) and returns all such alerts.
    pub fn wait_for_alert(
        &self,
        alertname: &str,
        state: &str,
        timeout: Duration,
    ) -> Result<Vec<Value>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.alerts() {
                Ok(alerts) => {
                    let matching: Vec<Value> = alerts
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|a| a["labels"]["alertname"] == alertname && a["state"] == state)
                        .cloned()
                        .collect();
                    if !matching.is_empty() {
                        return Ok(matching);
                    }
                    alerts.to_string()
                }
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "no {alertname} alert in state {state} within {timeout:?}; alerts: {last}; log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// GET `path_and_query` from the API; its `data` when `status` is
    /// `success`, else the API's error.
    fn api(&self, path_and_query: &str) -> Result<Value, String> {
        let (status, body) = http_get(self.addr, path_and_query)?;
        let mut answer: Value = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "GET {path_and_query}: HTTP {status}, not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        if answer["status"] != "success" {
            return Err(format!(
                "GET {path_and_query}: HTTP {status}: {} {}",
                answer["errorType"], answer["error"]
            ));
        }
        Ok(answer
            .get_mut("data")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // By PID (`Child::kill`), then reaped; `dir` is removed after this.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The samples of an instant-vector answer (`data` of [`Prometheus::query`]):
/// each series' labels and value. Empty for any other shape.
pub fn samples(data: &Value) -> Vec<(serde_json::Map<String, Value>, f64)> {
    data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|series| {
            let labels = series["metric"].as_object()?.clone();
            let value = series["value"][1].as_str()?.parse().ok()?;
            Some((labels, value))
        })
        .collect()
}

/// The Prometheus configuration: 1 s evaluation, one job, one target.
fn config_yaml(
    scrape_target: &str,
    rule_files: &[PathBuf],
    scrape_interval: Duration,
) -> Result<String, String> {
    let valid_target = !scrape_target.is_empty()
        && scrape_target
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(c));
    if !valid_target {
        return Err(format!(
            "{scrape_target:?} is not a host:port scrape target"
        ));
    }
    let interval = prometheus_duration(scrape_interval)?;
    let mut rules = String::new();
    for file in rule_files {
        let path = fs::canonicalize(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let path = path
            .to_str()
            .ok_or_else(|| format!("{}: not UTF-8", path.display()))?;
        rules.push_str(&format!("  - {}\n", yaml_quote(path)));
    }
    let rule_files = if rules.is_empty() {
        "rule_files: []\n".to_owned()
    } else {
        format!("rule_files:\n{rules}")
    };
    Ok(format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  \
         evaluation_interval: 1s\n{rule_files}scrape_configs:\n  - job_name: {JOB}\n    \
         scrape_interval: {interval}\n    scrape_timeout: {interval}\n    static_configs:\n      \
         - targets: [{}]\n",
        yaml_quote(scrape_target)
    ))
}

/// A YAML single-quoted scalar.
fn yaml_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `d` as a Prometheus duration: whole seconds as `Ns`, else `Nms`.
fn prometheus_duration(d: Duration) -> Result<String, String> {
    let ms = d.as_millis();
    match ms {
        0 => Err(format!(
            "{d:?} is shorter than Prometheus's 1 ms resolution"
        )),
        ms if ms % 1000 == 0 => Ok(format!("{}s", ms / 1000)),
        ms => Ok(format!("{ms}ms")),
    }
}

/// A loopback port that was free a moment ago: bind port 0, read the port
/// the kernel chose, release it.
fn free_loopback_port() -> io::Result<u16> {
    TcpListener::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}

/// Percent-encodes a URL query component (RFC 3986): everything but
/// `A-Z a-z 0-9 - . _ ~`, byte by byte (UTF-8), spaces as `%20`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.0 GET: the status and the body.
fn http_get(addr: SocketAddr, path_and_query: &str) -> Result<(u16, Vec<u8>), String> {
    let fail = |e: io::Error| format!("GET http://{addr}{path_and_query}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    stream
        .write_all(
            format!(
                "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .map_err(fail)?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut response)
        .map_err(fail)?;
    parse_response(&response).map_err(|e| format!("GET http://{addr}{path_and_query}: {e}"))
}

/// Splits a complete HTTP/1.x response into status and body, undoing a
/// chunked transfer encoding (which an HTTP/1.0 request should not get).
fn parse_response(response: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = find(response, b"\r\n\r\n").ok_or("no end of the response head")?;
    let head = String::from_utf8_lossy(&response[..end]);
    let body = &response[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("chunked body: no chunk size line")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("chunked body: bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("chunked body: cut short".to_owned());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Copies the rules file `src` to `dst` with the value of every `for:` key
/// replaced by `for_` (a Prometheus duration such as `1s`), so that alerts
/// fire within a test's patience. The rewrite is textual: a line whose first
/// non-blank text is `for:` keeps its indentation and any trailing
/// `# comment`; nothing else changes (`keep_firing_for:` included). Returns
/// how many durations it replaced.
pub fn rules_copy_with_short_for(src: &Path, dst: &Path, for_: &str) -> Result<usize, String> {
    let valid = for_.starts_with(|c: char| c.is_ascii_digit())
        && for_
            .chars()
            .all(|c| c.is_ascii_digit() || "smhdwy".contains(c));
    if !valid {
        return Err(format!(
            "{for_:?} is not a Prometheus duration (like 1s or 500ms)"
        ));
    }
    let text = fs::read_to_string(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let (rewritten, count) = shorten_for(&text, for_);
    fs::write(dst, rewritten).map_err(|e| format!("{}: {e}", dst.display()))?;
    Ok(count)
}

fn shorten_for(text: &str, for_: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut count = 0;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let newline = &line[content.len()..];
        let rest = content.trim_start();
        let Some(value) = rest.strip_prefix("for:") else {
            out.push_str(line);
            continue;
        };
        let indent = &content[..content.len() - rest.len()];
        // The duration is the first word; a comment after it stays as it was.
        let value = value.trim_start();
        let after = &value[value.find(char::is_whitespace).unwrap_or(value.len())..];
        let comment = if after.trim_start().starts_with('#') {
            after
        } else {
            ""
        };
        out.push_str(&format!("{indent}for: {for_}{comment}{newline}"));
        count += 1;
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::thread::JoinHandle;

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("up"), "up");
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(
            percent_encode(r#"zombietrace_parent_pending_zombies{pid="42"} >= 100"#),
            "zombietrace_parent_pending_zombies%7Bpid%3D%2242%22%7D%20%3E%3D%20100"
        );
        assert_eq!(
            percent_encode("rate(x[5m]) + 1/2 & a?b#c%"),
            "rate%28x%5B5m%5D%29%20%2B%201%2F2%20%26%20a%3Fb%23c%25"
        );
        // UTF-8, byte by byte, upper-case hex.
        assert_eq!(percent_encode("é\n"), "%C3%A9%0A");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn the_rewrite_replaces_every_for_and_nothing_else() {
        let rules = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        \
                     for: 5m\n        keep_firing_for: 10m\n        annotations:\n          \
                     description: waits for: 5m, and more\n      - alert: B\n        expr: up\n        \
                     for: 1h30m   # the post-mortem's\r\n      - alert: C\n        expr: vector(1)\n";
        let (out, count) = shorten_for(rules, "1s");
        assert_eq!(count, 2);
        assert_eq!(
            out,
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        \
             for: 1s\n        keep_firing_for: 10m\n        annotations:\n          \
             description: waits for: 5m, and more\n      - alert: B\n        expr: up\n        \
             for: 1s   # the post-mortem's\r\n      - alert: C\n        expr: vector(1)\n"
        );
        // No newline at the end of the file: none added.
        assert_eq!(shorten_for("  for: 5m", "2s"), ("  for: 2s".to_owned(), 1));
    }

    #[test]
    fn the_shipped_rules_are_rewritten_and_bad_durations_refused() {
        let dir = TempDir::new("zombie-trace-rules-rewrite").expect("temp dir");
        let dst = dir.path().join("rules.yml");
        let original = fs::read_to_string(shipped_rules()).expect("the shipped rules");
        let fors = original
            .lines()
            .filter(|l| l.trim_start().starts_with("for:"))
            .count();
        assert!(fors >= 5, "the shipped rules have {fors} `for:` keys");
        let count = rules_copy_with_short_for(&shipped_rules(), &dst, "1s").expect("rewrite");
        assert_eq!(count, fors);
        let copy = fs::read_to_string(&dst).expect("the copy");
        assert!(
            copy.lines()
                .filter(|l| l.trim_start().starts_with("for:"))
                .all(|l| l.trim() == "for: 1s"),
            "{copy}"
        );
        assert_eq!(copy.lines().count(), original.lines().count());
        for bad in ["", "5 minutes", "1s; rm", "m5"] {
            assert!(
                rules_copy_with_short_for(&shipped_rules(), &dst, bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn durations_and_the_config() {
        assert_eq!(
            prometheus_duration(Duration::from_secs(15)).as_deref(),
            Ok("15s")
        );
        assert_eq!(
            prometheus_duration(Duration::from_millis(1500)).as_deref(),
            Ok("1500ms")
        );
        assert!(prometheus_duration(Duration::from_micros(10)).is_err());
        let config = config_yaml("127.0.0.1:21717", &[], Duration::from_secs(1)).expect("config");
        assert!(config.contains("job_name: zombie-trace"), "{config}");
        assert!(config.contains("targets: ['127.0.0.1:21717']"), "{config}");
        assert!(config.contains("evaluation_interval: 1s"), "{config}");
        assert!(config_yaml("127.0.0.1:1' x", &[], Duration::from_secs(1)).is_err());
        assert!(
            config_yaml(
                "127.0.0.1:1",
                &[PathBuf::from("/nonexistent/r.yml")],
                Duration::from_secs(1)
            )
            .is_err()
        );
        assert_eq!(yaml_quote("it's"), "'it''s'");
    }

    #[test]
    fn responses_are_parsed_chunked_or_not() {
        assert_eq!(
            parse_response(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nok\n"),
            Ok((200, b"ok\n".to_vec()))
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: Chunked\r\n\r\n\
                  4\r\nWiki\r\n6;x=y\r\npedia \r\n0\r\n\r\n"
            ),
            Ok((503, b"Wikipedia ".to_vec()))
        );
        assert!(parse_response(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(parse_response(b"SMTP 220\r\n\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nshort")
                .is_err()
        );
    }

    /// The exposition the fake exporter serves.
    const EXPOSITION: &str = "\
# HELP zombietrace_parent_pending_zombies Zombies the parent owes.
# TYPE zombietrace_parent_pending_zombies gauge
zombietrace_parent_pending_zombies{pid=\"42\",comm=\"runner\"} 150
";

    /// A loopback HTTP server answering every request with [`EXPOSITION`],
    /// stopped and joined on drop.
    struct StaticExporter {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl StaticExporter {
        fn start() -> StaticExporter {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            let addr = listener.local_addr().expect("its address");
            listener.set_nonblocking(true).expect("non-blocking accept");
            let stop = Arc::new(AtomicBool::new(false));
            let stopped = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => Self::answer(stream),
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
            StaticExporter {
                addr,
                stop,
                thread: Some(thread),
            }
        }

        /// Reads the request head (bounded in size and time), answers it.
        fn answer(mut stream: TcpStream) {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while find(&head, b"\r\n\r\n").is_none() && head.len() < 16 * 1024 {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let response = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{EXPOSITION}",
                EXPOSITION.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    }

    impl Drop for StaticExporter {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// Needs Prometheus: skipped (passing, with the reason printed) without
    /// it, failing under `CI=true`.
    #[test]
    fn prometheus_scrapes_and_fires_the_shipped_alert() {
        if prometheus_bin().is_none() {
            let reason = "prometheus is not installed (Debian: `apt-get install prometheus`)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true, but {reason}");
            }
            println!("skipped: {reason}");
            return;
        }
        let exporter = StaticExporter::start();
        let dir = TempDir::new("zombie-trace-prometheus-test").expect("temp dir");
        let rules = dir.path().join("zombie-trace.rules.yml");
        rules_copy_with_short_for(&shipped_rules(), &rules, "1s").expect("short rules");
        let prom = Prometheus::start(
            &exporter.addr.to_string(),
            std::slice::from_ref(&rules),
            Duration::from_secs(1),
        )
        .expect("prometheus starts");

        let data = prom
            .wait_for(
                "zombietrace_parent_pending_zombies",
                Duration::from_secs(30),
                |data| !samples(data).is_empty(),
            )
            .expect("the series is scraped");
        let found = samples(&data);
        assert_eq!(found.len(), 1, "{data}");
        let (labels, value) = &found[0];
        assert_eq!(*value, 150.0);
        assert_eq!(labels["pid"], "42");
        assert_eq!(labels["comm"], "runner");
        assert_eq!(labels["job"], JOB);
        assert_eq!(labels["instance"], exporter.addr.to_string().as_str());

        let firing = prom
            .wait_for_alert("ZombieParentOwesReaps", "firing", Duration::from_secs(30))
            .expect("ZombieParentOwesReaps fires");
        assert_eq!(firing.len(), 1, "{firing:?}");
        let alert = &firing[0];
        assert_eq!(alert["labels"]["pid"], "42");
        assert_eq!(alert["labels"]["comm"], "runner");
        assert_eq!(alert["labels"]["severity"], "warning");
        let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
        assert_eq!(
            summary,
            format!("PID 42 (runner) on {} owes 150 reaps", exporter.addr),
            "{alert}"
        );
        // Nothing else: the target is up and nothing else is exported.
        let alerts = prom.alerts().expect("alerts");
        let names: Vec<&str> = alerts
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["labels"]["alertname"].as_str())
            .collect();
        assert_eq!(names, ["ZombieParentOwesReaps"], "{alerts}");
        let up = prom.query(r#"up{job="zombie-trace"}"#).expect("up");
        assert_eq!(samples(&up).first().map(|s| s.1), Some(1.0), "{up}");
    }
}
