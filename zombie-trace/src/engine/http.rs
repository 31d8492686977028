//! The HTTP front of `serve`: requests become engine [`Query`]s, answered
//! from the ledger in the engine's own loop (so a scrape sees the ledger
//! as it stands, never a copy), and the answers go back as responses.
//!
//! Deliberately small: HTTP/1.1 `GET`/`HEAD` only, one request per
//! connection (`Connection: close`), the whole request head read within a
//! deadline and a size bound, a bound on open connections (beyond it a
//! connection gets `503` at once), and a deadline on the engine's answer.
//! A slow or idle client costs one task until its deadline, never the
//! engine's attention.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Answer, Query};

/// Limits of the HTTP front.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Open connections at most; more are answered `503` and closed.
    pub max_connections: usize,
    /// The request head must arrive within this.
    pub read_timeout: Duration,
    /// The response must be written within this.
    pub write_timeout: Duration,
    /// The engine must answer within this.
    pub answer_timeout: Duration,
    /// Request heads larger than this are refused (`431`).
    pub max_head_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            // Above a few hundred idle or slow clients, and below the
            // usual 1024 open-file limit.
            max_connections: 900,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(5),
            max_head_bytes: 8192,
        }
    }
}

/// A parsed request head: what the engine needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub head_only: bool,
    pub path: String,
    pub accept: String,
}

/// Why a request head is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    BadRequest(&'static str),
    MethodNotAllowed,
    TooLarge,
}

impl Refusal {
    fn answer(&self) -> Answer {
        let (status, body) = match self {
            Refusal::BadRequest(why) => (400, format!("bad request: {why}\n")),
            Refusal::MethodNotAllowed => (405, "only GET and HEAD are served\n".to_owned()),
            Refusal::TooLarge => (431, "request head too large\n".to_owned()),
        };
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

/// Parses a complete request head (up to the blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, Refusal> {
    let text = std::str::from_utf8(head).map_err(|_| Refusal::BadRequest("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::BadRequest("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Refusal::BadRequest("not HTTP/1.x"));
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(Refusal::MethodNotAllowed),
    };
    if !target.starts_with('/') {
        return Err(Refusal::BadRequest("the target must be a path"));
    }
    let path = target.split(['?', '#']).next().unwrap_or(target).to_owned();
    let mut accept = String::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Refusal::BadRequest("malformed header"));
        };
        if name.eq_ignore_ascii_case("accept") {
            accept = value.trim().to_owned();
        }
    }
    Ok(Request {
        head_only,
        path,
        accept,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The bytes of a response with `answer`.
pub fn response(answer: &Answer, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.status,
        reason(answer.status),
        answer.content_type,
        answer.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(answer.body.as_bytes());
    }
    out
}

fn unavailable(why: &str) -> Answer {
    Answer {
        status: 503,
        content_type: "text/plain; charset=utf-8",
        body: format!("{why}\n"),
    }
}

/// Accepts connections on `listener` for ever, passing requests to the
/// engine through `queries`.
pub async fn serve(listener: TcpListener, queries: mpsc::Sender<Query>, limits: HttpLimits) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, or the peer reset before the
                // accept: wait a little rather than spin.
                log::warn!("accepting a connection: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let queries = queries.clone();
        let open = Arc::clone(&open);
        if open.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            tokio::spawn(async move {
                let answer = unavailable("too many connections; try again");
                let _ = write_response(stream, &answer, false, limits).await;
                open.fetch_sub(1, Ordering::AcqRel);
            });
            continue;
        }
        tokio::spawn(async move {
            if let Err(err) = connection(stream, queries, limits).await {
                log::debug!("HTTP connection: {err}");
            }
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

async fn write_response(
    mut stream: TcpStream,
    answer: &Answer,
    head_only: bool,
    limits: HttpLimits,
) -> io::Result<()> {
    let bytes = response(answer, head_only);
    tokio::time::timeout(limits.write_timeout, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "writing the response"))?
}

/// Reads the request head: up to the blank line, within the deadline and
/// the size bound.
async fn read_head(stream: &mut TcpStream, limits: HttpLimits) -> Result<Vec<u8>, Answer> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limits.read_timeout;
    loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end + 2);
            return Ok(head);
        }
        if head.len() > limits.max_head_bytes {
            return Err(Refusal::TooLarge.answer());
        }
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await;
        match read {
            Err(_) => {
                return Err(Answer {
                    status: 408,
                    content_type: "text/plain; charset=utf-8",
                    body: "the request head did not arrive in time\n".to_owned(),
                });
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(Answer {
                    status: 400,
                    content_type: "text/plain; charset=utf-8",
                    body: "the connection closed before the request head ended\n".to_owned(),
                });
            }
            Ok(Ok(n)) => head.extend_from_slice(&buf[..n]),
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    queries: mpsc::Sender<Query>,
    limits: HttpLimits,
) -> io::Result<()> {
    let head = match read_head(&mut stream, limits).await {
        Ok(head) => head,
        Err(answer) => return write_response(stream, &answer, false, limits).await,
    };
    let request = match parse_head(&head) {
        Ok(request) => request,
        Err(refusal) => return write_response(stream, &refusal.answer(), false, limits).await,
    };
    let (reply, answer) = oneshot::channel();
    let query = Query {
        path: request.path.clone(),
        accept: request.accept.clone(),
        reply,
    };
    let answer = match queries.try_send(query) {
        Ok(()) => match tokio::time::timeout(limits.answer_timeout, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => unavailable("the tracer stopped"),
            Err(_) => unavailable("the tracer did not answer in time"),
        },
        Err(mpsc::error::TrySendError::Full(_)) => {
            unavailable("too many requests at once; try again")
        }
        Err(mpsc::error::TrySendError::Closed(_)) => unavailable("the tracer stopped"),
    };
    write_response(stream, &answer, request.head_only, limits).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_are_parsed_and_refused() {
        let ok = parse_head(
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: application/openmetrics-text\r\n",
        )
        .expect("a good head");
        assert_eq!(ok.path, "/metrics");
        assert_eq!(ok.accept, "application/openmetrics-text");
        assert!(!ok.head_only);
        assert!(parse_head(b"HEAD / HTTP/1.0\r\n").is_ok_and(|r| r.head_only));
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\n"),
            Err(Refusal::MethodNotAllowed)
        );
        for bad in [
            &b"GET /\r\n"[..],
            b"GET / HTTP/2\r\n",
            b"GET http://x/ HTTP/1.1\r\n",
            b"GET / HTTP/1.1 extra\r\n",
            b"GET / HTTP/1.1\r\nno-colon\r\n",
            b"\xff\xfe / HTTP/1.1\r\n",
            b"",
        ] {
            assert!(
                matches!(parse_head(bad), Err(Refusal::BadRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn responses_carry_length_and_close() {
        let answer = Answer {
            status: 200,
            content_type: "text/plain",
            body: "ok\n".to_owned(),
        };
        let text = String::from_utf8(response(&answer, false)).expect("UTF-8");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nok\n"));
        let head = String::from_utf8(response(&answer, true)).expect("UTF-8");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body");
    }
}
