//! The integration tests, one test binary: one module per area. Most of
//! them load the BPF programs (see [`common::privileged`]); run them with
//! `--test-threads=1`, as `cargo xtask test` does, since they count the
//! host's processes.

mod common;

mod cli;
mod containers;
mod deploy;
mod diagnosis;
mod evidence;
mod guard;
mod hardening;
mod latency;
mod packaging;
mod privileges;
mod scenarios;
mod serve;
mod top;
mod workloads;
