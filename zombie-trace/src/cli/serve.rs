//! `zombie-trace serve`: the long-running agent. The same engine and ledger
//! as `watch`, exposing metrics to Prometheus (computed from the ledger when
//! scraped), a health check and the current report.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use zombie_trace::engine::http::{self, HttpLimits};
use zombie_trace::engine::{Answer, Consumer, Context, Query};
use zombie_trace::model::Change;
use zombie_trace::views::metrics::MetricsView;
use zombie_trace::views::report::{Filter, Report};

use super::{FilterArgs, TraceArgs, positive_seconds};

/// Where `serve` listens unless told otherwise: loopback only (a scraper on
/// another host needs an explicit `--listen`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:21717";

/// Requests waiting for the engine at most; more get `503` at once.
const QUERY_QUEUE: usize = 32;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to serve HTTP on. The default is loopback only; give
    /// `0.0.0.0:PORT` (or a host address) to let another host scrape.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Per-parent series for this many parents owing the most zombies.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    top: u16,
    /// Seconds between growth samples and ledger checks.
    #[arg(long, default_value_t = 1.0, value_parser = positive_seconds)]
    interval: f64,
    #[command(flatten)]
    trace: TraceArgs,
    #[command(flatten)]
    filter: FilterArgs,
}

/// The agent's views: metrics, health, the report.
struct Server {
    metrics: MetricsView,
    filter: Filter,
}

const TEXT: &str = "text/plain; charset=utf-8";

impl Server {
    fn metrics(&mut self, ctx: &mut Context<'_>, accept: &str) -> Answer {
        let started = Instant::now();
        let openmetrics = accept.contains("application/openmetrics-text");
        let body = self.metrics.render(ctx, openmetrics);
        self.metrics
            .set_last_scrape(started.elapsed().as_secs_f64());
        Answer {
            status: 200,
            content_type: if openmetrics {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            } else {
                "text/plain; version=0.0.4; charset=utf-8"
            },
            body,
        }
    }

    /// `ok` while the programs are attached (the engine answers at all) and
    /// the reader keeps up (no loss a resync has not covered yet).
    fn health(ctx: &Context<'_>) -> Answer {
        if ctx.health.complete() {
            Answer {
                status: 200,
                content_type: TEXT,
                body: "ok\n".to_owned(),
            }
        } else {
            Answer {
                status: 503,
                content_type: TEXT,
                body: format!(
                    "events lost ({} since the last resync): the ledger is resynced with /proc at the next interval\n",
                    ctx.health.lost_since_resync
                ),
            }
        }
    }

    fn parents(&self, ctx: &mut Context<'_>) -> Answer {
        let report = Report::new(ctx.ledger, &self.filter, ctx.now, &ctx.health, ctx.host);
        Answer {
            status: 200,
            content_type: "application/json",
            body: serde_json::to_string(&report).unwrap_or_default() + "\n",
        }
    }
}

impl Consumer for Server {
    fn on_change(&mut self, change: &Change) {
        self.metrics.on_change(change);
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>) -> std::io::Result<()> {
        self.metrics.sample(ctx);
        Ok(())
    }

    fn on_query(&mut self, ctx: &mut Context<'_>, query: &Query) -> Answer {
        match query.path.as_str() {
            "/metrics" => self.metrics(ctx, &query.accept),
            "/healthz" => Self::health(ctx),
            "/parents" => self.parents(ctx),
            "/" => Answer {
                status: 200,
                content_type: TEXT,
                body: "zombie-trace: /metrics (Prometheus), /healthz, /parents (JSON)\n".to_owned(),
            },
            path => Answer::not_found(path),
        }
    }
}

/// Lets the process hold as many connections as the HTTP front allows
/// (the soft open-file limit is often 1024, the hard one much higher).
fn raise_open_file_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, writable rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let limits = HttpLimits::default();
    raise_open_file_limit(limits.max_connections as u64 + 256);
    // Bind before attaching: a taken port fails at once, with nothing loaded.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: another process has the port, or the address is not this host's; choose another with --listen",
                args.listen
            )
        })?;
    let mut session = args.trace.start_session()?;
    let (queries, mut requests) = tokio::sync::mpsc::channel::<Query>(QUERY_QUEUE);
    let front = tokio::spawn(http::serve(listener, queries, limits));
    eprintln!(
        "zombie-trace: serving http://{}/metrics (also /healthz, /parents)",
        args.listen
    );
    let mut server = Server {
        metrics: MetricsView::new(args.filter.filter(), usize::from(args.top)),
        filter: args.filter.filter(),
    };
    let result = session
        .run_answering(
            &mut server,
            args.trace.duration(),
            Some(Duration::from_secs_f64(args.interval)),
            Some(&mut requests),
        )
        .await;
    front.abort();
    result?;
    Ok(ExitCode::SUCCESS)
}
