//! zombie-trace: find parent processes whose exited children are never reaped.
pub mod btf;
pub mod check;
pub mod layout;
pub mod procfs;
pub mod tracefs;
