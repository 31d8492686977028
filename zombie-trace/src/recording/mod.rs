//! Recordings: a live session's inputs in a file ([`recorder`]), read back
//! ([`reader`]) and replayed through the same engine and views
//! ([`crate::engine::replay`]). The file is a [`container`] of framed,
//! checksummed, compressed chunks of [`records`], kernel events among them
//! in a [`compact`] encoding. The format is described in
//! docs/recording-format.md.
pub mod compact;
pub mod container;
pub mod reader;
pub mod recorder;
pub mod records;

use std::path::PathBuf;

use thiserror::Error;

/// Why a recording cannot be written or read.
#[derive(Debug, Error)]
pub enum RecordingError {
    #[error("cannot create the recording {}: {problem}", .path.display())]
    Create { path: PathBuf, problem: String },
    #[error("reading this host's facts for the recording header: {0}")]
    Host(String),
    #[error("{0}")]
    Read(String),
}
