//! Reading a recording back: the header checked, then the inputs chunk by
//! chunk, with every damaged or missing part turned into a gap the replay
//! knows about and a note the user reads.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::recording::compact::EventCodec;
use crate::recording::container::{self, Entry, RecordingReader};
use crate::recording::records::{Header, Input, WireSizes, decode};

/// Why a file cannot be replayed at all.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error(transparent)]
    Container(#[from] container::Error),
    #[error("{}: the recording header does not parse ({problem}): the file is damaged or not from zombie-trace", .path.display())]
    Header { path: PathBuf, problem: String },
    #[error(
        "{}: recorded by a zombie-trace build whose kernel records differ from this one's ({there:?} there, {here:?} here): replay it with the zombie-trace {version} that recorded it",
        .path.display()
    )]
    WireSizes {
        path: PathBuf,
        there: WireSizes,
        here: WireSizes,
        version: String,
    },
}

impl OpenError {
    /// The file is not something this build can replay (exit status 2),
    /// rather than a read failure.
    pub fn is_usage(&self) -> bool {
        match self {
            OpenError::Container(e) => !matches!(
                e,
                container::Error::Io { .. } | container::Error::Write { .. }
            ),
            OpenError::Header { .. } | OpenError::WireSizes { .. } => true,
        }
    }
}

/// One step of a replay.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Input(Input),
    /// Inputs are missing here (a damaged or dropped part of the file).
    Gap(String),
}

/// A recording whose header was read.
pub struct Opened {
    pub header: Header,
    pub path: PathBuf,
    bytes: Vec<u8>,
    /// What was damaged, missing or skipped, found while iterating.
    notes: RefCell<Vec<String>>,
}

/// Reads `path` and checks its header.
pub fn open(path: &Path) -> Result<Opened, OpenError> {
    let bytes = std::fs::read(path).map_err(|source| {
        OpenError::Container(container::Error::Io {
            path: path.to_path_buf(),
            source,
        })
    })?;
    let reader = RecordingReader::new(&bytes).map_err(|e| e.in_file(path))?;
    let header: Header =
        serde_json::from_slice(reader.header()).map_err(|e| OpenError::Header {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
    let here = WireSizes::current();
    if header.wire_sizes != here {
        return Err(OpenError::WireSizes {
            path: path.to_path_buf(),
            there: header.wire_sizes,
            here,
            version: header.tool_version.clone(),
        });
    }
    Ok(Opened {
        header,
        path: path.to_path_buf(),
        bytes,
        notes: RefCell::new(Vec::new()),
    })
}

impl Opened {
    /// The inputs in file order, with a [`Item::Gap`] wherever some are
    /// missing. Notes about them are kept for [`Opened::notes`].
    pub fn items(&self) -> impl Iterator<Item = Item> + '_ {
        let mut reader = RecordingReader::new(&self.bytes).ok();
        let mut first = true;
        let mut undecodable = 0u64;
        let mut pending: std::collections::VecDeque<Item> = std::collections::VecDeque::new();
        std::iter::from_fn(move || {
            loop {
                if let Some(item) = pending.pop_front() {
                    return Some(item);
                }
                let Some(entry) = reader.as_mut()?.next() else {
                    if undecodable > 0 {
                        self.note(format!(
                            "{undecodable} records of unknown kinds were skipped (written by a newer zombie-trace)"
                        ));
                        undecodable = 0;
                    }
                    return None;
                };
                match entry {
                    Entry::Damage(damage) => {
                        let text = damage.to_string();
                        self.note(text.clone());
                        pending.push_back(Item::Gap(text));
                    }
                    Entry::Chunk(chunk) => {
                        if first && chunk.seq > 0 {
                            let text = format!(
                                "the first {} chunks are not in the file (the oldest segments were dropped to stay under --max-bytes, or lost): the replay starts at the first segment kept",
                                chunk.seq
                            );
                            self.note(text.clone());
                            pending.push_back(Item::Gap(text));
                        }
                        first = false;
                        // Compact events are deltas within their chunk.
                        let mut events = EventCodec::new();
                        for record in chunk.records {
                            match decode(record.kind, &record.payload, &mut events) {
                                Ok(input) => pending.push_back(Item::Input(input)),
                                Err(_) => undecodable += 1,
                            }
                        }
                    }
                }
            }
        })
    }

    fn note(&self, text: String) {
        self.notes.borrow_mut().push(text);
    }

    /// What the iteration so far found damaged, missing or skipped.
    pub fn notes(&self) -> Vec<String> {
        self.notes.borrow().clone()
    }
}
