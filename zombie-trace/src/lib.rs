//! zombie-trace: find parent processes whose exited children are never reaped.
//!
//! One engine, many views. The [`model::Ledger`] is the single source of
//! truth about processes; the [`engine`] feeds it from a source (the live
//! kernel through [`kernel`], seeded from /proc through [`host`]) and fans
//! its changes out to the [`views`], which are pure functions of the
//! ledger, a clock reading and host facts. [`render`] turns view rows into
//! text. Nothing in `views` or `render` reads /proc or the clock.
pub mod build_info;
pub mod engine;
pub mod host;
pub mod kernel;
pub mod model;
pub mod recording;
pub mod render;
pub mod views;
