//! zombie-trace: find parent processes whose exited children are never reaped.
//!
//! The kernel side streams process creation, whole-process exit and wait
//! returns ([`events`]); [`session`] feeds them into the one [`model::Ledger`];
//! everything the user sees is a view on that ledger ([`report`], [`latency`]).
pub mod btf;
pub mod check;
pub mod diagnosis;
pub mod events;
pub mod latency;
pub mod layout;
pub mod model;
pub mod pressure;
pub mod procfs;
pub mod report;
pub mod session;
pub mod tracefs;
pub mod tracer;
