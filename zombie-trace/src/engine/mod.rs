//! The engine: feeds the one ledger from a source and fans its changes out
//! to views.
//!
//! A source is the live kernel ([`live::Session`]: the tracer's events on
//! top of a /proc seed) or a recording of one ([`replay`]). Both drive a
//! [`Consumer`] through the same calls, in the same order for the same
//! inputs: every ledger [`Change`] as it happens, `after_batch` after a
//! batch of events that changed the ledger, `on_tick` at each report
//! interval, `on_end` once. Each call gets a [`Context`]: the ledger, its
//! health, the clock reading of that moment and the host facts, so a
//! consumer never reads the clock or /proc itself, and replaying a
//! recording gives what the live run gave. A live session also answers
//! [`Query`]s (`serve`'s HTTP requests, through [`http`]) with `on_query`,
//! in its own loop, from the ledger as it stands.
pub mod explain;
pub mod http;
pub mod live;
pub mod replay;

use std::io;

use crate::host::facts::HostFacts;
use crate::kernel::tracer::ProgramRun;
use crate::model::{Change, Ledger, LedgerHealth, Moment};

/// What a consumer sees at a batch, a tick or the end.
pub struct Context<'a> {
    pub ledger: &'a Ledger,
    pub health: LedgerHealth,
    /// When the source started.
    pub started: Moment,
    /// This moment.
    pub now: Moment,
    pub host: &'a mut dyn HostFacts,
    /// The programs' run time and count, when a query asked and the kernel
    /// counts them; empty otherwise.
    pub programs: Option<Vec<ProgramRun>>,
}

/// A question from outside the engine (an HTTP request), answered by the
/// consumer from the ledger as it stands when the engine takes it.
#[derive(Debug)]
pub struct Query {
    /// What is asked: a path such as `/metrics`.
    pub path: String,
    /// The request's `Accept` header, for content negotiation.
    pub accept: String,
    pub reply: tokio::sync::oneshot::Sender<Answer>,
}

/// The answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    pub fn not_found(path: &str) -> Self {
        Self {
            status: 404,
            content_type: "text/plain; charset=utf-8",
            body: format!("no such path: {path} (try /metrics, /healthz, /parents)\n"),
        }
    }
}

/// What a command does with what the engine sees.
pub trait Consumer {
    /// One ledger change (the hot path: no allocation, no I/O).
    fn on_change(&mut self, change: &Change);
    /// After a batch of events that changed the ledger (also once at the
    /// start, for what the seed holds).
    fn after_batch(&mut self, _ctx: &mut Context<'_>) -> io::Result<()> {
        Ok(())
    }
    /// At each tick of the report interval.
    fn on_tick(&mut self, _ctx: &mut Context<'_>) -> io::Result<()> {
        Ok(())
    }
    /// Once, after the last events.
    fn on_end(&mut self, _ctx: &mut Context<'_>) -> io::Result<()> {
        Ok(())
    }
    /// A question from outside, after everything queued was applied.
    fn on_query(&mut self, _ctx: &mut Context<'_>, query: &Query) -> Answer {
        Answer::not_found(&query.path)
    }
}

/// Counts the changes it passes on, so the engine knows whether a batch
/// changed the ledger.
pub(crate) struct Counting<'a, C: ?Sized> {
    pub consumer: &'a mut C,
    pub changes: usize,
}

impl<C: Consumer + ?Sized> Counting<'_, C> {
    pub fn emit(&mut self, change: Change) {
        self.changes += 1;
        self.consumer.on_change(&change);
    }
}
