//! The on-disk container of a recording: a file header, then framed,
//! compressed, checksummed chunks of `(kind, payload)` records.
//!
//! This module knows nothing of the tracer's types; it only promises that a
//! record read back is byte for byte a record that was written, and that a
//! damaged file (cut at any byte, any bits flipped) is read as far as it can
//! be trusted, with every skipped byte accounted for in a [`Damage`] entry.
//!
//! # Layout (all integers little-endian)
//!
//! File header:
//!
//! | bytes | field |
//! | --- | --- |
//! | 8 | [`MAGIC`] |
//! | 2 | format version ([`FORMAT_VERSION`]) |
//! | 2 | flags (none defined: 0) |
//! | 4 | header payload length `n` (at most [`MAX_HEADER_PAYLOAD`]) |
//! | n | header payload, opaque to this module (the caller's JSON) |
//! | 4 | CRC32 of every byte above |
//!
//! The magic and the version are the part every future version keeps, so a
//! reader can always tell "not a recording" from "a recording too new for me".
//!
//! Then chunks, each a fixed 32-byte header and a zstd frame:
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | [`CHUNK_MAGIC`] |
//! | 2 | flags: bit 0 = segment start ([`CHUNK_FLAG_SEGMENT_START`]) |
//! | 2 | reserved, 0 |
//! | 8 | sequence number: 0 for the first chunk ever written, +1 per chunk |
//! | 4 | compressed length `c` |
//! | 4 | uncompressed length (at most [`MAX_CHUNK_UNCOMPRESSED`]) |
//! | 4 | record count |
//! | 4 | CRC32 of the 28 header bytes above and of the `c` payload bytes |
//! | c | zstd frame of the records, each `kind: u8, len: u32, payload` |
//!
//! A *segment* is a run of chunks whose first chunk carries the segment-start
//! flag and whose records begin with a self-contained checkpoint: replay can
//! start at any segment, which is what lets a bounded recording
//! (`--max-bytes`) drop its oldest segments whole.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// First bytes of every recording. The high first byte and the trailing
/// newline make a text-mode transfer or a file of another kind fail at once.
pub const MAGIC: [u8; 8] = *b"\x89ZTRACE\n";
/// The format this code writes, and the newest it reads. Version 2 added
/// compact event records (record kind 11); version 1 files hold events as
/// the kernel wrote them (kind 3), which every version reads.
pub const FORMAT_VERSION: u16 = 2;
/// First bytes of every chunk; the reader scans for them to resynchronise
/// after a damaged chunk.
pub const CHUNK_MAGIC: [u8; 4] = *b"ZTck";
/// Chunk flag: first chunk of a segment (its records start with a checkpoint).
pub const CHUNK_FLAG_SEGMENT_START: u16 = 1;
/// Largest decompressed chunk payload. The reader refuses larger claims
/// before allocating anything, so a damaged length cannot make it allocate
/// gigabytes; the writer closes a chunk before reaching it.
pub const MAX_CHUNK_UNCOMPRESSED: usize = 64 << 20;
/// Largest header payload; the same guard for the file header.
pub const MAX_HEADER_PAYLOAD: usize = 16 << 20;

/// zstd's worst case for an incompressible 64 MiB input is 64 MiB + 256 KiB;
/// anything claiming more than this is damage.
const MAX_CHUNK_COMPRESSED: usize = MAX_CHUNK_UNCOMPRESSED + (MAX_CHUNK_UNCOMPRESSED >> 7);
/// Magic, version, flags, payload length.
const FILE_HEADER_FIXED_LEN: usize = 16;
const CRC_LEN: usize = 4;
const CHUNK_HEADER_LEN: usize = 32;
/// The chunk header bytes the chunk CRC covers (all but the CRC itself).
const CHUNK_HEADER_CRC_OFFSET: usize = CHUNK_HEADER_LEN - CRC_LEN;
/// `kind: u8` and `len: u32` in front of each record payload.
const RECORD_FRAMING_LEN: usize = 5;
const KNOWN_CHUNK_FLAGS: u16 = CHUNK_FLAG_SEGMENT_START;
/// Compression is most of what recording costs (a profile of `watch
/// --record` during a fork storm: 52% of its CPU in zstd at level 3).
/// Measured on 48-byte process events in chunks of 1,000 records (the
/// `measure` test): level 3 ~230 MB/s and 14.4 bytes a record, level 1
/// ~300 MB/s and 14.9, level -3 ~400 MB/s and 17.4, level -7 ~415 MB/s and
/// 27.6; larger chunks compress a little smaller and much slower (level 3
/// at 30,000 records a chunk: ~150 MB/s). Level 1 in small chunks (the
/// recorder writes one every 64 KiB) keeps a 30,000-exit burst near 1.5 MB
/// at about half level 3's CPU.
const COMPRESSION_LEVEL: i32 = 1;
/// A damaged record count must not size an allocation: start with at most
/// this many slots and let real records grow the vector.
const MAX_RECORDS_PREALLOCATED: usize = 4096;

// ---------------------------------------------------------------------------
// Errors

/// Why a recording could not be read or written.
#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "{} is empty (0 bytes), not a zombie-trace recording: the recorder wrote nothing, not even \
         the recording header",
        shown(.file)
    )]
    Empty { file: Option<PathBuf> },

    #[error("{} is not a zombie-trace recording (no recording header)", shown(.file))]
    NotARecording { file: Option<PathBuf> },

    #[error(
        "{} is a zombie-trace recording of format version {found}, but this zombie-trace reads \
         versions up to {supported}: use a newer zombie-trace",
        shown(.file)
    )]
    UnsupportedVersion {
        file: Option<PathBuf>,
        found: u16,
        supported: u16,
    },

    #[error(
        "the recording header of {} is damaged ({problem}): the recording cannot be read",
        shown(.file)
    )]
    DamagedHeader {
        file: Option<PathBuf>,
        problem: HeaderProblem,
    },

    #[error("cannot read {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error("cannot write the recording {}: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },

    #[error(
        "cannot write the recording {}: an earlier write failed and its partial chunk could not \
         be cut off the file, so nothing more is appended to it",
        .path.display()
    )]
    WriterBroken { path: PathBuf },

    #[error("a record of {len} bytes does not fit in a chunk (at most {max} bytes with framing)")]
    RecordTooLarge { len: usize, max: usize },

    #[error("a recording header of {len} bytes is over the {max}-byte limit")]
    HeaderTooLarge { len: usize, max: usize },

    #[error("zstd failed: {source}")]
    Zstd { source: io::Error },
}

impl Error {
    /// Names `path` in the errors that are about the file's content, which
    /// [`read_recording`] cannot name since it only sees bytes.
    /// The same error, naming the file it came from.
    pub fn in_file(self, path: &Path) -> Self {
        let file = Some(path.to_path_buf());
        match self {
            Error::Empty { .. } => Error::Empty { file },
            Error::NotARecording { .. } => Error::NotARecording { file },
            Error::UnsupportedVersion {
                found, supported, ..
            } => Error::UnsupportedVersion {
                file,
                found,
                supported,
            },
            Error::DamagedHeader { problem, .. } => Error::DamagedHeader { file, problem },
            other => other,
        }
    }
}

fn shown(file: &Option<PathBuf>) -> String {
    match file {
        Some(path) => path.display().to_string(),
        None => "the input".to_string(),
    }
}

/// What is wrong with a damaged file header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderProblem {
    #[error("the file is only {present} bytes long, it ends inside the header ({needed} bytes)")]
    Cut { present: usize, needed: usize },
    #[error("it claims a {len}-byte header payload, over the {MAX_HEADER_PAYLOAD}-byte limit")]
    ImplausibleLength { len: usize },
    #[error("checksum mismatch")]
    ChecksumMismatch,
    #[error("format version 0 does not exist")]
    VersionZero,
}

// ---------------------------------------------------------------------------
// Reading

/// One record: what the caller pushed, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// One chunk whose checksum, lengths and records all verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub seq: u64,
    /// First chunk of a segment: its records begin with a checkpoint.
    pub segment_start: bool,
    /// Byte offset of the chunk header in the file.
    pub offset: u64,
    /// Bytes the chunk takes in the file (header and compressed payload).
    pub len: u64,
    pub records: Vec<Record>,
}

/// A byte range of the file that was skipped, or chunks that are missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Where the skipped bytes start; for a sequence gap, where the chunk
    /// after the gap starts.
    pub offset: u64,
    /// Skipped bytes; 0 for a sequence gap, which skips no bytes.
    pub len: u64,
    pub kind: DamageKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DamageKind {
    /// The file ends inside a chunk.
    TruncatedTail,
    /// Bytes that do not form a chunk that verifies.
    CorruptChunk {
        problem: ChunkProblem,
        /// Reading resumed at an intact chunk right after these bytes (false:
        /// nothing intact follows).
        resynced: bool,
    },
    /// Chunks `after + 1 .. next` are not in the file.
    SequenceGap { after: u64, next: u64 },
    /// A chunk whose sequence number is not above its predecessor's: the
    /// writer never does that, the file was edited or concatenated.
    SequenceOutOfOrder { previous: u64, found: u64 },
}

/// Why bytes where a chunk should start were not trusted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkProblem {
    #[error("no chunk marker")]
    NoChunkMarker,
    #[error("reserved header field is {value}, not 0")]
    ReservedNotZero { value: u16 },
    #[error("unknown flags {flags:#06x}")]
    UnknownFlags { flags: u16 },
    #[error("uncompressed length {len} is over the {MAX_CHUNK_UNCOMPRESSED}-byte limit")]
    UncompressedTooLarge { len: u32 },
    #[error("compressed length {len} is over the {MAX_CHUNK_COMPRESSED}-byte limit")]
    CompressedTooLarge { len: u32 },
    #[error("{count} records cannot fit in {uncompressed} bytes")]
    TooManyRecords { count: u32, uncompressed: u32 },
    #[error("its length reaches past the end of the file")]
    ExtendsPastEnd,
    #[error("checksum mismatch")]
    ChecksumMismatch,
    #[error("payload does not decompress: {reason}")]
    Decompress { reason: String },
    #[error("payload decompresses to {actual} bytes, the header says {declared}")]
    LengthMismatch { declared: u32, actual: usize },
    #[error("record {index} runs past the end of the payload")]
    RecordCut { index: usize },
    #[error("the payload holds {found} records or more, the header says {declared}")]
    RecordCountMismatch { declared: u32, found: usize },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self.offset.saturating_add(self.len);
        match &self.kind {
            DamageKind::TruncatedTail => write!(
                f,
                "file ends inside a chunk at byte {}: {} bytes of an unfinished chunk (bytes \
                 {}..{end}), probably the recorder was killed or the disk filled",
                self.offset, self.len, self.offset
            ),
            DamageKind::CorruptChunk { problem, resynced } => {
                write!(
                    f,
                    "corrupt chunk at bytes {}..{end} ({} bytes, {problem}) skipped",
                    self.offset, self.len
                )?;
                if *resynced {
                    write!(f, "; reading resumed at the intact chunk at byte {end}")
                } else {
                    write!(f, "; no intact chunk follows it")
                }
            }
            DamageKind::SequenceGap { after, next } => write!(
                f,
                "{} chunks missing before byte {} (sequence numbers {}..={} between {after} and \
                 {next})",
                next.saturating_sub(*after).saturating_sub(1),
                self.offset,
                after.saturating_add(1),
                next.saturating_sub(1)
            ),
            DamageKind::SequenceOutOfOrder { previous, found } => write!(
                f,
                "chunk at byte {} has sequence number {found}, not after {previous}: the file \
                 was edited or concatenated",
                self.offset
            ),
        }
    }
}

/// What [`RecordingReader`] yields, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Chunk(Chunk),
    Damage(Damage),
}

/// A whole recording in memory, as [`read_recording`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// The caller's header payload.
    pub header: Vec<u8>,
    pub version: u16,
    pub chunks: Vec<Chunk>,
    /// In file order; empty for an intact file.
    pub damage: Vec<Damage>,
    /// Sequence number of the first chunk read. Above 0, earlier chunks are
    /// gone: dropped by `--max-bytes` when no damage precedes that chunk, or
    /// lost to the damage before it. `None` when no chunk was read.
    pub first_seq: Option<u64>,
}

/// Reads a recording held in memory.
pub fn read_recording(bytes: &[u8]) -> Result<Recording, Error> {
    let mut reader = RecordingReader::new(bytes)?;
    let mut chunks = Vec::new();
    let mut damage = Vec::new();
    for entry in reader.by_ref() {
        match entry {
            Entry::Chunk(chunk) => chunks.push(chunk),
            Entry::Damage(d) => damage.push(d),
        }
    }
    Ok(Recording {
        header: reader.header().to_vec(),
        version: reader.version(),
        chunks,
        damage,
        first_seq: reader.first_seq(),
    })
}

/// Reads the recording at `path` (all of it, into memory).
pub fn read_file(path: &Path) -> Result<Recording, Error> {
    let bytes = fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_recording(&bytes).map_err(|error| error.in_file(path))
}

/// Reads a recording chunk by chunk, so that a caller replaying it does not
/// hold every decompressed record at once (a few hundred MB of chunks are
/// several GB of records in memory).
pub struct RecordingReader<'a> {
    bytes: &'a [u8],
    header: &'a [u8],
    version: u16,
    pos: usize,
    prev_seq: Option<u64>,
    first_seq: Option<u64>,
    /// Entries found by one step and not yet returned (a step may find a
    /// damaged range, a gap and a chunk at once).
    pending: VecDeque<Entry>,
    decompressor: zstd::bulk::Decompressor<'static>,
    /// Decompression buffer, reused across chunks.
    scratch: Vec<u8>,
}

/// Why the bytes at an offset are not a chunk.
enum NotAChunk {
    /// They could be the start of a chunk that the end of the file cuts.
    Incomplete,
    Corrupt(ChunkProblem),
}

impl<'a> RecordingReader<'a> {
    /// Checks the file header; the chunks are read by iterating.
    pub fn new(bytes: &'a [u8]) -> Result<Self, Error> {
        let (header, version, header_end) = parse_file_header(bytes)?;
        let decompressor =
            zstd::bulk::Decompressor::new().map_err(|source| Error::Zstd { source })?;
        Ok(RecordingReader {
            bytes,
            header,
            version,
            pos: header_end,
            prev_seq: None,
            first_seq: None,
            pending: VecDeque::new(),
            decompressor,
            scratch: Vec::new(),
        })
    }

    /// The caller's header payload.
    pub fn header(&self) -> &'a [u8] {
        self.header
    }

    pub fn version(&self) -> u16 {
        self.version
    }

    /// Sequence number of the first chunk read so far.
    pub fn first_seq(&self) -> Option<u64> {
        self.first_seq
    }

    /// Reads at `self.pos`: a chunk, or the damaged range there and the
    /// intact chunk after it, if any.
    fn step(&mut self) {
        let failure = match self.parse_chunk_at(self.pos) {
            Ok(chunk) => {
                self.accept(chunk);
                return;
            }
            Err(failure) => failure,
        };
        // The lengths of a chunk that failed cannot be trusted, so the next
        // chunk may start at any byte after its first.
        let (next_chunk, first_incomplete) = self.resync(self.pos + 1);
        let damaged_from = self.pos as u64;
        let file_len = self.bytes.len() as u64;
        match (next_chunk, failure) {
            (Some(chunk), failure) => {
                let problem = match failure {
                    NotAChunk::Incomplete => ChunkProblem::ExtendsPastEnd,
                    NotAChunk::Corrupt(problem) => problem,
                };
                self.pending.push_back(Entry::Damage(Damage {
                    offset: damaged_from,
                    len: chunk.offset - damaged_from,
                    kind: DamageKind::CorruptChunk {
                        problem,
                        resynced: true,
                    },
                }));
                self.accept(chunk);
            }
            (None, NotAChunk::Incomplete) => {
                self.pending.push_back(Entry::Damage(Damage {
                    offset: damaged_from,
                    len: file_len - damaged_from,
                    kind: DamageKind::TruncatedTail,
                }));
                self.pos = self.bytes.len();
            }
            (None, NotAChunk::Corrupt(problem)) => {
                // A chunk cut by the end of the file after a corrupt one is
                // still the familiar truncated tail, reported as such.
                let corrupt_end = first_incomplete.unwrap_or(self.bytes.len()) as u64;
                self.pending.push_back(Entry::Damage(Damage {
                    offset: damaged_from,
                    len: corrupt_end - damaged_from,
                    kind: DamageKind::CorruptChunk {
                        problem,
                        resynced: false,
                    },
                }));
                if corrupt_end < file_len {
                    self.pending.push_back(Entry::Damage(Damage {
                        offset: corrupt_end,
                        len: file_len - corrupt_end,
                        kind: DamageKind::TruncatedTail,
                    }));
                }
                self.pos = self.bytes.len();
            }
        }
    }

    /// Queues `chunk` (and the sequence damage it reveals) and moves past it.
    fn accept(&mut self, chunk: Chunk) {
        if let Some(previous) = self.prev_seq {
            let kind = if chunk.seq <= previous {
                Some(DamageKind::SequenceOutOfOrder {
                    previous,
                    found: chunk.seq,
                })
            } else if chunk.seq - previous > 1 {
                Some(DamageKind::SequenceGap {
                    after: previous,
                    next: chunk.seq,
                })
            } else {
                None
            };
            if let Some(kind) = kind {
                self.pending.push_back(Entry::Damage(Damage {
                    offset: chunk.offset,
                    len: 0,
                    kind,
                }));
            }
        }
        self.first_seq.get_or_insert(chunk.seq);
        self.prev_seq = Some(chunk.seq);
        // Offsets and lengths come from a slice of `self.bytes`, so they fit.
        self.pos = (chunk.offset + chunk.len) as usize;
        self.pending.push_back(Entry::Chunk(chunk));
    }

    /// The first intact chunk at or after `from`, and the first place after
    /// `from` where a chunk starts that the end of the file cuts.
    fn resync(&mut self, from: usize) -> (Option<Chunk>, Option<usize>) {
        let mut first_incomplete = None;
        let mut at = from;
        while let Some(found) = find_chunk_magic(self.bytes, at) {
            match self.parse_chunk_at(found) {
                Ok(chunk) => return (Some(chunk), first_incomplete),
                Err(NotAChunk::Incomplete) => {
                    first_incomplete.get_or_insert(found);
                }
                Err(NotAChunk::Corrupt(_)) => {}
            }
            at = found + 1;
        }
        (None, first_incomplete)
    }

    fn parse_chunk_at(&mut self, pos: usize) -> Result<Chunk, NotAChunk> {
        let rest = self.bytes.get(pos..).unwrap_or_default();
        let Some(raw_header) = rest.first_chunk::<CHUNK_HEADER_LEN>() else {
            let present = rest.len().min(CHUNK_MAGIC.len());
            return if rest[..present] == CHUNK_MAGIC[..present] {
                Err(NotAChunk::Incomplete)
            } else {
                Err(NotAChunk::Corrupt(ChunkProblem::NoChunkMarker))
            };
        };
        let header = ChunkHeader::parse(raw_header).map_err(NotAChunk::Corrupt)?;
        let compressed_len = header.compressed_len as usize;
        let Some(payload) = rest.get(CHUNK_HEADER_LEN..CHUNK_HEADER_LEN + compressed_len) else {
            return Err(NotAChunk::Incomplete);
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&raw_header[..CHUNK_HEADER_CRC_OFFSET]);
        crc.update(payload);
        if crc.finalize() != header.crc {
            return Err(NotAChunk::Corrupt(ChunkProblem::ChecksumMismatch));
        }
        let records = self
            .decompress_records(payload, &header)
            .map_err(NotAChunk::Corrupt)?;
        Ok(Chunk {
            seq: header.seq,
            segment_start: header.flags & CHUNK_FLAG_SEGMENT_START != 0,
            offset: pos as u64,
            len: (CHUNK_HEADER_LEN + compressed_len) as u64,
            records,
        })
    }

    fn decompress_records(
        &mut self,
        payload: &[u8],
        header: &ChunkHeader,
    ) -> Result<Vec<Record>, ChunkProblem> {
        let declared = header.uncompressed_len as usize;
        self.scratch.clear();
        // The capacity bounds what zstd may write: the declared length was
        // checked against the limit, and a frame that expands further fails.
        self.scratch.reserve(declared);
        self.decompressor
            .decompress_to_buffer(payload, &mut self.scratch)
            .map_err(|error| ChunkProblem::Decompress {
                reason: error.to_string(),
            })?;
        if self.scratch.len() != declared {
            return Err(ChunkProblem::LengthMismatch {
                declared: header.uncompressed_len,
                actual: self.scratch.len(),
            });
        }
        parse_records(&self.scratch, header.record_count)
    }
}

impl Iterator for RecordingReader<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        while self.pending.is_empty() && self.pos < self.bytes.len() {
            self.step();
        }
        self.pending.pop_front()
    }
}

/// The caller's header payload, the format version and where the chunks start.
fn parse_file_header(bytes: &[u8]) -> Result<(&[u8], u16, usize), Error> {
    let damaged = |problem| Error::DamagedHeader {
        file: None,
        problem,
    };
    if bytes.is_empty() {
        return Err(Error::Empty { file: None });
    }
    let magic_present = bytes.len().min(MAGIC.len());
    if bytes[..magic_present] != MAGIC[..magic_present] {
        return Err(Error::NotARecording { file: None });
    }
    let cut = || {
        damaged(HeaderProblem::Cut {
            present: bytes.len(),
            needed: FILE_HEADER_FIXED_LEN + CRC_LEN,
        })
    };
    let version_bytes = bytes.get(MAGIC.len()..MAGIC.len() + 2).ok_or_else(cut)?;
    let version = u16::from_le_bytes(field(version_bytes, 0));
    // Checked before anything else: a newer version may lay out the rest of
    // the header differently, and must be told apart from damage.
    if version > FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            file: None,
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let fixed = bytes
        .first_chunk::<FILE_HEADER_FIXED_LEN>()
        .ok_or_else(cut)?;
    let payload_len = u32::from_le_bytes(field(fixed, 12)) as usize;
    if payload_len > MAX_HEADER_PAYLOAD {
        return Err(damaged(HeaderProblem::ImplausibleLength {
            len: payload_len,
        }));
    }
    let crc_at = FILE_HEADER_FIXED_LEN + payload_len;
    let Some(stored_crc) = bytes.get(crc_at..crc_at + CRC_LEN) else {
        return Err(damaged(HeaderProblem::Cut {
            present: bytes.len(),
            needed: crc_at + CRC_LEN,
        }));
    };
    let stored_crc = u32::from_le_bytes(field(stored_crc, 0));
    if crc32fast::hash(&bytes[..crc_at]) != stored_crc {
        return Err(damaged(HeaderProblem::ChecksumMismatch));
    }
    if version == 0 {
        return Err(damaged(HeaderProblem::VersionZero));
    }
    Ok((
        &bytes[FILE_HEADER_FIXED_LEN..crc_at],
        version,
        crc_at + CRC_LEN,
    ))
}

/// The fixed fields of a chunk header, sanity-checked (the CRC is checked
/// with the payload).
struct ChunkHeader {
    flags: u16,
    seq: u64,
    compressed_len: u32,
    uncompressed_len: u32,
    record_count: u32,
    crc: u32,
}

impl ChunkHeader {
    fn parse(raw: &[u8; CHUNK_HEADER_LEN]) -> Result<Self, ChunkProblem> {
        if raw[..CHUNK_MAGIC.len()] != CHUNK_MAGIC {
            return Err(ChunkProblem::NoChunkMarker);
        }
        let header = ChunkHeader {
            flags: u16::from_le_bytes(field(raw, 4)),
            seq: u64::from_le_bytes(field(raw, 8)),
            compressed_len: u32::from_le_bytes(field(raw, 16)),
            uncompressed_len: u32::from_le_bytes(field(raw, 20)),
            record_count: u32::from_le_bytes(field(raw, 24)),
            crc: u32::from_le_bytes(field(raw, 28)),
        };
        // These checks only reject early (the CRC would too): when scanning
        // for the next chunk, most false chunk markers stop here, before a
        // CRC over up to 64 MiB.
        let reserved = u16::from_le_bytes(field(raw, 6));
        if reserved != 0 {
            return Err(ChunkProblem::ReservedNotZero { value: reserved });
        }
        if header.flags & !KNOWN_CHUNK_FLAGS != 0 {
            return Err(ChunkProblem::UnknownFlags {
                flags: header.flags,
            });
        }
        if header.uncompressed_len as usize > MAX_CHUNK_UNCOMPRESSED {
            return Err(ChunkProblem::UncompressedTooLarge {
                len: header.uncompressed_len,
            });
        }
        if header.compressed_len as usize > MAX_CHUNK_COMPRESSED {
            return Err(ChunkProblem::CompressedTooLarge {
                len: header.compressed_len,
            });
        }
        if u64::from(header.record_count) * RECORD_FRAMING_LEN as u64
            > u64::from(header.uncompressed_len)
        {
            return Err(ChunkProblem::TooManyRecords {
                count: header.record_count,
                uncompressed: header.uncompressed_len,
            });
        }
        Ok(header)
    }
}

/// `N` bytes of `bytes` at `at`; only called on ranges inside fixed-size
/// headers whose length was checked.
fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

fn find_chunk_magic(bytes: &[u8], from: usize) -> Option<usize> {
    let tail = bytes.get(from..)?;
    tail.windows(CHUNK_MAGIC.len())
        .position(|window| window == CHUNK_MAGIC)
        .map(|found| from + found)
}

/// Splits a decompressed payload into exactly `count` records that use every
/// byte, or says why not.
fn parse_records(mut data: &[u8], count: u32) -> Result<Vec<Record>, ChunkProblem> {
    let declared = count as usize;
    let mut records = Vec::with_capacity(declared.min(MAX_RECORDS_PREALLOCATED));
    while !data.is_empty() {
        if records.len() == declared {
            return Err(ChunkProblem::RecordCountMismatch {
                declared: count,
                found: declared + 1,
            });
        }
        let index = records.len();
        let Some((framing, rest)) = data.split_first_chunk::<RECORD_FRAMING_LEN>() else {
            return Err(ChunkProblem::RecordCut { index });
        };
        let len = u32::from_le_bytes(field(framing, 1)) as usize;
        if len > rest.len() {
            return Err(ChunkProblem::RecordCut { index });
        }
        let (payload, rest) = rest.split_at(len);
        records.push(Record {
            kind: framing[0],
            payload: payload.to_vec(),
        });
        data = rest;
    }
    if records.len() != declared {
        return Err(ChunkProblem::RecordCountMismatch {
            declared: count,
            found: records.len(),
        });
    }
    Ok(records)
}

// ---------------------------------------------------------------------------
// Writing

fn encode_file_header(payload: &[u8]) -> Result<Vec<u8>, Error> {
    if payload.len() > MAX_HEADER_PAYLOAD {
        return Err(Error::HeaderTooLarge {
            len: payload.len(),
            max: MAX_HEADER_PAYLOAD,
        });
    }
    let mut out = Vec::with_capacity(FILE_HEADER_FIXED_LEN + payload.len() + CRC_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Appends one record's framing and payload to a chunk's uncompressed bytes.
fn encode_record(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A whole chunk, header and compressed payload, from encoded records
/// (at most [`MAX_CHUNK_UNCOMPRESSED`] bytes).
fn encode_chunk(
    compressor: &mut zstd::bulk::Compressor<'_>,
    seq: u64,
    segment_start: bool,
    records: &[u8],
    record_count: u32,
) -> io::Result<Vec<u8>> {
    let compressed = compressor.compress(records)?;
    let flags = if segment_start {
        CHUNK_FLAG_SEGMENT_START
    } else {
        0
    };
    let mut out = Vec::with_capacity(CHUNK_HEADER_LEN + compressed.len());
    out.extend_from_slice(&CHUNK_MAGIC);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.extend_from_slice(&record_count.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(&compressed);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&compressed);
    Ok(out)
}

/// Writes a recording: buffers records and appends them as a chunk when the
/// caller says so.
///
/// The caller calls [`flush_chunk`](Self::flush_chunk) at least once a
/// second and whenever [`buffered_bytes`](Self::buffered_bytes) grows large,
/// so that a killed recorder loses at most that much. Each chunk is handed to
/// the OS when written (a killed process loses nothing written); only
/// [`sync`](Self::sync) waits for the disk.
///
/// # Segments and `max_bytes`
///
/// A new writer is at the start of its first segment. The caller calls
/// [`start_segment`](Self::start_segment) and then pushes a self-contained
/// checkpoint record: the next chunk carries the segment-start flag.
///
/// With `max_bytes`, before a chunk is appended that would take the file
/// over it, the oldest whole segments are dropped, just enough to fit; the
/// newest complete segment and the segment in progress are always kept, so
/// that a replay always has one complete segment before the current one. To
/// drop them, the file is rewritten: the file header and the kept chunks,
/// copied byte for byte, go to a temporary file in the same directory, which
/// is synced and renamed over the recording, so a crash at any moment leaves
/// either the old or the new file, both intact.
///
/// The trade-off: a rewrite copies up to `max_bytes`, and happens about once
/// per dropped segment, so with segments of `max_bytes / 4` the disk writes
/// about four times what the recording grows by, while the file keeps
/// between three and four segments of history. Longer segments mean fewer
/// copies but a history that swings further. The file stays under
/// `max_bytes` unless the two kept segments alone exceed it: a single
/// segment bigger than `max_bytes` is kept whole (the file then grows past
/// `max_bytes`), since a partial segment cannot be replayed.
///
/// # Errors
///
/// Every write error (a full disk) is returned to the caller. A chunk whose
/// write failed is cut off the file again and its records stay buffered, so
/// a later [`flush_chunk`](Self::flush_chunk) can retry; if the cut fails
/// too, the writer refuses to write more ([`Error::WriterBroken`]) and the
/// reader sees the partial chunk as a truncated tail. A failed rewrite for
/// `max_bytes` leaves the recording as it was.
///
/// Dropping the writer writes nothing: call [`finish`](Self::finish) to
/// write the buffered records.
pub struct ContainerWriter {
    path: PathBuf,
    file: File,
    file_header: Vec<u8>,
    /// Bytes of complete chunks (and the header) in the file: where the
    /// next chunk goes.
    file_len: u64,
    max_bytes: Option<u64>,
    buffer: Vec<u8>,
    buffered_records: u32,
    next_seq: u64,
    segment_start_pending: bool,
    /// File offsets where the segments in the file start, oldest first.
    segment_starts: VecDeque<u64>,
    dropped_segments: u64,
    dropped_bytes: u64,
    broken: bool,
    compressor: zstd::bulk::Compressor<'static>,
}

impl ContainerWriter {
    /// Creates (or truncates) the recording at `path` and writes its header.
    pub fn create(path: &Path, header: &[u8], max_bytes: Option<u64>) -> Result<Self, Error> {
        let write_error = |source| Error::Write {
            path: path.to_path_buf(),
            source,
        };
        let file_header = encode_file_header(header)?;
        let compressor = zstd::bulk::Compressor::new(COMPRESSION_LEVEL)
            .map_err(|source| Error::Zstd { source })?;
        // Readable too: a rewrite for max_bytes copies the kept chunks out of it.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(write_error)?;
        file.write_all(&file_header)
            .and_then(|()| file.flush())
            .map_err(write_error)?;
        Ok(ContainerWriter {
            path: path.to_path_buf(),
            file,
            file_len: file_header.len() as u64,
            file_header,
            max_bytes,
            buffer: Vec::new(),
            buffered_records: 0,
            next_seq: 0,
            segment_start_pending: true,
            segment_starts: VecDeque::new(),
            dropped_segments: 0,
            dropped_bytes: 0,
            broken: false,
            compressor,
        })
    }

    /// Buffers a record for the next chunk. A record that would take the
    /// buffer over [`MAX_CHUNK_UNCOMPRESSED`] first flushes the buffer.
    pub fn push(&mut self, kind: u8, payload: &[u8]) -> Result<(), Error> {
        let framed_len = RECORD_FRAMING_LEN + payload.len();
        if framed_len > MAX_CHUNK_UNCOMPRESSED {
            return Err(Error::RecordTooLarge {
                len: payload.len(),
                max: MAX_CHUNK_UNCOMPRESSED,
            });
        }
        if self.buffer.len() + framed_len > MAX_CHUNK_UNCOMPRESSED {
            self.flush_chunk()?;
        }
        encode_record(&mut self.buffer, kind, payload);
        self.buffered_records += 1;
        Ok(())
    }

    /// Ends the current segment: the next chunk written starts a new one,
    /// and the next record pushed must be its checkpoint. Records already
    /// buffered still belong to the old segment, so they are flushed first.
    pub fn start_segment(&mut self) -> Result<(), Error> {
        self.flush_chunk()?;
        self.segment_start_pending = true;
        Ok(())
    }

    /// Compresses the buffered records into a chunk and appends it (nothing
    /// to do when no record is buffered).
    pub fn flush_chunk(&mut self) -> Result<(), Error> {
        if self.buffered_records == 0 {
            return Ok(());
        }
        if self.broken {
            return Err(Error::WriterBroken {
                path: self.path.clone(),
            });
        }
        let starts_segment = self.segment_start_pending;
        let chunk = encode_chunk(
            &mut self.compressor,
            self.next_seq,
            starts_segment,
            &self.buffer,
            self.buffered_records,
        )
        .map_err(|source| Error::Zstd { source })?;
        if let Some(max_bytes) = self.max_bytes {
            self.make_room(chunk.len() as u64, starts_segment, max_bytes)?;
        }
        let chunk_offset = self.file_len;
        if let Err(source) = self.append(&chunk) {
            // Without the partial chunk the file stays a clean sequence of
            // chunks and a retry continues it; if even the cut fails, more
            // chunks after the partial one would only add damage.
            let cut = self
                .file
                .set_len(self.file_len)
                .and_then(|()| self.file.flush());
            if cut.is_err() {
                self.broken = true;
            }
            return Err(Error::Write {
                path: self.path.clone(),
                source,
            });
        }
        self.file_len += chunk.len() as u64;
        if starts_segment {
            self.segment_starts.push_back(chunk_offset);
            self.segment_start_pending = false;
        }
        self.next_seq += 1;
        self.buffer.clear();
        self.buffered_records = 0;
        Ok(())
    }

    fn append(&mut self, chunk: &[u8]) -> io::Result<()> {
        // The cursor may be past a cut partial chunk; writing there would
        // leave a hole of zeros.
        self.file.seek(SeekFrom::Start(self.file_len))?;
        self.file.write_all(chunk)?;
        self.file.flush()
    }

    /// Drops the oldest segments that must go for `incoming` more bytes to
    /// fit in `max_bytes`.
    fn make_room(
        &mut self,
        incoming: u64,
        starts_segment: bool,
        max_bytes: u64,
    ) -> Result<(), Error> {
        if self.file_len + incoming <= max_bytes {
            return Ok(());
        }
        // Kept: the segment the incoming chunk belongs to and the newest
        // complete one before it.
        let kept = if starts_segment { 1 } else { 2 };
        let droppable = self.segment_starts.len().saturating_sub(kept);
        if droppable == 0 {
            return Ok(());
        }
        let header_len = self.file_header.len() as u64;
        let mut drop_count = 0;
        while drop_count < droppable {
            drop_count += 1;
            let keep_from = self.segment_starts[drop_count];
            if header_len + (self.file_len - keep_from) + incoming <= max_bytes {
                break;
            }
        }
        self.drop_oldest_segments(drop_count)
    }

    /// Rewrites the file without its `count` oldest segments (at least one
    /// segment stays).
    fn drop_oldest_segments(&mut self, count: usize) -> Result<(), Error> {
        let Some(&keep_from) = self.segment_starts.get(count) else {
            return Ok(());
        };
        let tmp_path = self.rewrite_path()?;
        let rewritten = self.write_rewrite(&tmp_path, keep_from);
        let new_file = match rewritten {
            Ok(file) => file,
            Err(source) => {
                // Best effort: the error that matters is the one returned.
                let _ = fs::remove_file(&tmp_path);
                return Err(Error::Write {
                    path: tmp_path,
                    source,
                });
            }
        };
        if let Err(source) = fs::rename(&tmp_path, &self.path) {
            let _ = fs::remove_file(&tmp_path);
            return Err(Error::Write {
                path: self.path.clone(),
                source,
            });
        }
        let shift = keep_from - self.file_header.len() as u64;
        self.file = new_file;
        self.file_len -= shift;
        for start in self.segment_starts.iter_mut() {
            *start = start.saturating_sub(shift);
        }
        self.segment_starts.drain(..count);
        self.dropped_segments += count as u64;
        self.dropped_bytes += shift;
        // The rename is durable only once the directory is synced; until
        // then a crash may bring back the old file, which is intact too.
        self.sync_directory().map_err(|source| Error::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// The file header and the chunks from `keep_from` on, in a new synced
    /// file at `tmp_path`.
    fn write_rewrite(&mut self, tmp_path: &Path, keep_from: u64) -> io::Result<File> {
        let mut tmp = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp_path)?;
        tmp.write_all(&self.file_header)?;
        let kept_len = self.file_len - keep_from;
        let mut source = self.file.try_clone()?;
        source.seek(SeekFrom::Start(keep_from))?;
        let copied = io::copy(&mut source.take(kept_len), &mut tmp)?;
        if copied != kept_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the recording is shorter than the {kept_len} bytes to keep ({copied} copied)"
                ),
            ));
        }
        tmp.sync_all()?;
        Ok(tmp)
    }

    /// A hidden name next to the recording: the rename must stay in one
    /// file system.
    fn rewrite_path(&self) -> Result<PathBuf, Error> {
        let Some(name) = self.path.file_name() else {
            return Err(Error::Write {
                path: self.path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
            });
        };
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".rewrite.tmp");
        Ok(self.path.with_file_name(tmp_name))
    }

    fn sync_directory(&self) -> io::Result<()> {
        let directory = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(directory)?.sync_all()
    }

    /// Waits until everything written so far is on the disk.
    pub fn sync(&mut self) -> Result<(), Error> {
        self.file.sync_data().map_err(|source| Error::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes the buffered records and syncs the file.
    pub fn finish(mut self) -> Result<(), Error> {
        self.flush_chunk()?;
        self.sync()
    }

    /// Bytes of records buffered for the next chunk.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    pub fn buffered_records(&self) -> u32 {
        self.buffered_records
    }

    /// Whether a record with a payload of `len` bytes goes into the chunk
    /// being buffered ([`ContainerWriter::push`] flushes it first if not).
    pub fn fits(&self, len: usize) -> bool {
        self.buffer.len() + RECORD_FRAMING_LEN + len <= MAX_CHUNK_UNCOMPRESSED
    }

    /// Sequence number the next chunk will get (= chunks written so far).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Bytes in the file: header and complete chunks.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Segments dropped for `max_bytes` so far.
    pub fn dropped_segments(&self) -> u64 {
        self.dropped_segments
    }

    /// Chunk bytes dropped for `max_bytes` so far.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};
    use std::time::Instant;

    /// A directory of its own for each test, removed at the end.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "zombie-trace-container-{}-{name}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create test dir");
            TestDir(dir)
        }

        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// xorshift64*: deterministic data without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    type Rec = (u8, Vec<u8>);

    fn to_records(records: &[Rec]) -> Vec<Record> {
        records
            .iter()
            .map(|(kind, payload)| Record {
                kind: *kind,
                payload: payload.clone(),
            })
            .collect()
    }

    /// What a test wrote: per chunk, its segment flag and records.
    struct Written {
        header: Vec<u8>,
        chunks: Vec<(bool, Vec<Rec>)>,
    }

    /// Writes `chunks` through the writer, one `flush_chunk` per chunk.
    fn write_with_writer(
        path: &Path,
        written: &Written,
        max_bytes: Option<u64>,
    ) -> ContainerWriter {
        let mut writer =
            ContainerWriter::create(path, &written.header, max_bytes).expect("create recording");
        for (index, (segment_start, records)) in written.chunks.iter().enumerate() {
            if *segment_start && index > 0 {
                writer.start_segment().expect("start segment");
            }
            for (kind, payload) in records {
                writer.push(*kind, payload).expect("push");
            }
            writer.flush_chunk().expect("flush chunk");
        }
        writer
    }

    fn sample(seed: u64, chunk_count: usize, segment_every: usize) -> Written {
        let mut rng = Rng(seed);
        let chunks = (0..chunk_count)
            .map(|index| {
                let record_count = 1 + rng.below(6) as usize;
                let records = (0..record_count)
                    .map(|_| {
                        let len = rng.below(40) as usize;
                        (rng.next() as u8, rng.bytes(len))
                    })
                    .collect();
                (index % segment_every == 0, records)
            })
            .collect();
        Written {
            header: br#"{"tool":"zombie-trace","test":true}"#.to_vec(),
            chunks,
        }
    }

    fn assert_chunks_match(read: &[Chunk], written: &Written, first_seq: u64) {
        assert_eq!(read.len() as u64 + first_seq, written.chunks.len() as u64);
        for (chunk, (seq, (segment_start, records))) in read
            .iter()
            .zip(written.chunks.iter().enumerate().skip(first_seq as usize))
        {
            assert_eq!(chunk.seq, seq as u64);
            assert_eq!(chunk.segment_start, *segment_start, "chunk {seq}");
            assert_eq!(chunk.records, to_records(records), "chunk {seq}");
        }
    }

    #[test]
    fn round_trip_several_chunks_and_segments() {
        let dir = TestDir::new("round-trip");
        let path = dir.file("rec.ztr");
        let mut written = sample(1, 12, 4);
        // Edge cases: an empty payload, and a chunk of one big record.
        written.chunks[2].1.push((0, Vec::new()));
        written.chunks[5].1 = vec![(7, Rng(9).bytes(200_000))];
        let writer = write_with_writer(&path, &written, None);
        assert_eq!(writer.next_seq(), 12);
        assert_eq!(writer.buffered_bytes(), 0);
        let file_len = writer.file_len();
        writer.finish().expect("finish");
        assert_eq!(fs::metadata(&path).expect("stat").len(), file_len);

        let recording = read_file(&path).expect("read");
        assert_eq!(recording.header, written.header);
        assert_eq!(recording.version, FORMAT_VERSION);
        assert_eq!(recording.damage, Vec::new());
        assert_eq!(recording.first_seq, Some(0));
        assert_chunks_match(&recording.chunks, &written, 0);
        // The chunks tile the file after the header.
        let mut at = recording.chunks[0].offset;
        for chunk in &recording.chunks {
            assert_eq!(chunk.offset, at);
            at += chunk.len;
        }
        assert_eq!(at, file_len);
    }

    #[test]
    fn buffered_records_are_written_by_finish_and_start_segment() {
        let dir = TestDir::new("finish");
        let path = dir.file("rec.ztr");
        let mut writer = ContainerWriter::create(&path, b"{}", None).expect("create");
        writer.push(1, b"checkpoint").expect("push");
        writer.push(2, b"event").expect("push");
        assert_eq!(writer.buffered_records(), 2);
        assert_eq!(writer.buffered_bytes(), 2 * RECORD_FRAMING_LEN + 15);
        // The buffered records belong to the first segment.
        writer.start_segment().expect("start segment");
        writer.push(1, b"checkpoint 2").expect("push");
        writer.finish().expect("finish");
        let recording = read_file(&path).expect("read");
        let flags: Vec<_> = recording.chunks.iter().map(|c| c.segment_start).collect();
        assert_eq!(flags, [true, true]);
        assert_eq!(recording.chunks[0].records.len(), 2);
        assert_eq!(recording.chunks[1].records[0].payload, b"checkpoint 2");
    }

    /// Every cut of a small file: the chunks before the cut, and one
    /// truncated-tail entry unless the cut falls between chunks.
    #[test]
    fn truncation_at_every_byte_offset() {
        let dir = TestDir::new("truncation");
        let path = dir.file("rec.ztr");
        let written = sample(2, 6, 3);
        write_with_writer(&path, &written, None)
            .finish()
            .expect("finish");
        let bytes = fs::read(&path).expect("read back");
        let full = read_recording(&bytes).expect("intact file");
        let header_end = full.chunks[0].offset as usize;
        let boundaries: Vec<usize> = full
            .chunks
            .iter()
            .map(|chunk| (chunk.offset + chunk.len) as usize)
            .collect();

        for cut in 0..=bytes.len() {
            let result = read_recording(&bytes[..cut]);
            if cut == 0 {
                assert!(matches!(result, Err(Error::Empty { .. })), "cut {cut}");
                continue;
            }
            if cut < header_end {
                assert!(
                    matches!(
                        result,
                        Err(Error::DamagedHeader {
                            problem: HeaderProblem::Cut { .. },
                            ..
                        })
                    ),
                    "cut {cut}: {result:?}"
                );
                continue;
            }
            let recording = result.expect("header intact");
            let complete = boundaries.iter().filter(|&&end| end <= cut).count();
            assert_eq!(recording.chunks, full.chunks[..complete], "cut {cut}");
            let last_end = if complete == 0 {
                header_end
            } else {
                boundaries[complete - 1]
            };
            if last_end == cut {
                assert_eq!(recording.damage, Vec::new(), "cut {cut}");
            } else {
                assert_eq!(
                    recording.damage,
                    vec![Damage {
                        offset: last_end as u64,
                        len: (cut - last_end) as u64,
                        kind: DamageKind::TruncatedTail,
                    }],
                    "cut {cut}"
                );
            }
        }
    }

    #[test]
    fn corrupt_chunk_is_skipped_and_reading_resumes() {
        let dir = TestDir::new("corrupt");
        let path = dir.file("rec.ztr");
        let written = sample(3, 6, 3);
        write_with_writer(&path, &written, None)
            .finish()
            .expect("finish");
        let mut bytes = fs::read(&path).expect("read back");
        let full = read_recording(&bytes).expect("intact file");
        let victim = &full.chunks[2];
        bytes[victim.offset as usize + CHUNK_HEADER_LEN + 1] ^= 0x10;

        let recording = read_recording(&bytes).expect("header intact");
        let seqs: Vec<u64> = recording.chunks.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, [0, 1, 3, 4, 5]);
        assert_eq!(
            recording.damage,
            vec![
                Damage {
                    offset: victim.offset,
                    len: victim.len,
                    kind: DamageKind::CorruptChunk {
                        problem: ChunkProblem::ChecksumMismatch,
                        resynced: true,
                    },
                },
                Damage {
                    offset: victim.offset + victim.len,
                    len: 0,
                    kind: DamageKind::SequenceGap { after: 1, next: 3 },
                },
            ]
        );
        let lines: Vec<String> = recording.damage.iter().map(|d| d.to_string()).collect();
        let end = victim.offset + victim.len;
        assert_eq!(
            lines[0],
            format!(
                "corrupt chunk at bytes {}..{end} ({} bytes, checksum mismatch) skipped; reading \
                 resumed at the intact chunk at byte {end}",
                victim.offset, victim.len
            )
        );
        assert_eq!(
            lines[1],
            format!("1 chunks missing before byte {end} (sequence numbers 2..=2 between 1 and 3)")
        );
        let tail = Damage {
            offset: 100,
            len: 20,
            kind: DamageKind::TruncatedTail,
        };
        assert_eq!(
            tail.to_string(),
            "file ends inside a chunk at byte 100: 20 bytes of an unfinished chunk (bytes \
             100..120), probably the recorder was killed or the disk filled"
        );
    }

    #[test]
    fn garbage_after_the_last_chunk_is_reported() {
        let dir = TestDir::new("garbage");
        let path = dir.file("rec.ztr");
        let written = sample(4, 3, 3);
        write_with_writer(&path, &written, None)
            .finish()
            .expect("finish");
        let mut bytes = fs::read(&path).expect("read back");
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&[0u8; 100]);
        let recording = read_recording(&bytes).expect("header intact");
        assert_chunks_match(&recording.chunks, &written, 0);
        assert_eq!(
            recording.damage,
            vec![Damage {
                offset: end,
                len: 100,
                kind: DamageKind::CorruptChunk {
                    problem: ChunkProblem::NoChunkMarker,
                    resynced: false,
                },
            }]
        );
    }

    #[test]
    fn wrong_magic_is_not_a_recording() {
        let dir = TestDir::new("magic");
        let path = dir.file("notes.txt");
        fs::write(&path, b"hello, this is text\n").expect("write");
        let error = read_file(&path).expect_err("not a recording");
        assert!(matches!(error, Error::NotARecording { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "{} is not a zombie-trace recording (no recording header)",
                path.display()
            )
        );
        // Shorter than the magic, and not its start either.
        assert!(matches!(
            read_recording(b"ZT"),
            Err(Error::NotARecording { file: None })
        ));
    }

    #[test]
    fn zero_length_file_is_empty() {
        let dir = TestDir::new("empty");
        let path = dir.file("rec.ztr");
        fs::write(&path, b"").expect("write");
        let error = read_file(&path).expect_err("empty");
        assert!(matches!(error, Error::Empty { .. }), "{error:?}");
        assert!(error.to_string().starts_with(&format!(
            "{} is empty (0 bytes), not a zombie-trace recording",
            path.display()
        )));
    }

    #[test]
    fn future_version_is_unsupported() {
        let mut bytes = encode_file_header(b"{}").expect("header");
        bytes[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        // A newer version may change everything after the version field.
        bytes.truncate(12);
        let error = read_recording(&bytes).expect_err("future version");
        assert!(
            matches!(
                error,
                Error::UnsupportedVersion {
                    found: 3,
                    supported: FORMAT_VERSION,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "the input is a zombie-trace recording of format version 3, but this zombie-trace \
             reads versions up to 2: use a newer zombie-trace"
        );
    }

    #[test]
    fn damaged_header_is_its_own_error() {
        let mut bytes = encode_file_header(b"{\"a\":1}").expect("header");
        bytes[17] ^= 1;
        let error = read_recording(&bytes).expect_err("bad crc");
        assert!(
            matches!(
                error,
                Error::DamagedHeader {
                    problem: HeaderProblem::ChecksumMismatch,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "the recording header of the input is damaged (checksum mismatch): the recording \
             cannot be read"
        );
        let mut huge = encode_file_header(b"{}").expect("header");
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            read_recording(&huge),
            Err(Error::DamagedHeader {
                problem: HeaderProblem::ImplausibleLength { .. },
                ..
            })
        ));
    }

    #[test]
    fn absurd_lengths_are_rejected_before_allocating() {
        let mut compressor = zstd::bulk::Compressor::new(COMPRESSION_LEVEL).expect("zstd");
        let mut records = Vec::new();
        encode_record(&mut records, 1, b"payload");
        let mut bytes = encode_file_header(b"{}").expect("header");
        let header_end = bytes.len();
        let chunk = encode_chunk(&mut compressor, 0, true, &records, 1).expect("chunk");
        bytes.extend_from_slice(&chunk);
        let at = header_end + 20;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let recording = read_recording(&bytes).expect("header intact");
        assert!(recording.chunks.is_empty());
        assert!(matches!(
            recording.damage[0].kind,
            DamageKind::CorruptChunk {
                problem: ChunkProblem::UncompressedTooLarge { .. },
                ..
            }
        ));
    }

    #[test]
    fn a_full_disk_is_returned_to_the_caller() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let error = match ContainerWriter::create(full, b"{}", None) {
            Ok(_) => panic!("writing to /dev/full succeeded"),
            Err(error) => error,
        };
        match error {
            Error::Write { path, source } => {
                assert_eq!(path, full);
                assert_eq!(source.kind(), io::ErrorKind::StorageFull);
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    /// Incompressible records, so that sizes on disk are predictable.
    fn random_chunk(rng: &mut Rng, bytes: usize) -> Vec<Rec> {
        (0..bytes / 100).map(|_| (3, rng.bytes(95))).collect()
    }

    #[test]
    fn max_bytes_drops_the_oldest_segments() {
        let dir = TestDir::new("rotation");
        let path = dir.file("rec.ztr");
        let max_bytes = 64 * 1024;
        let segment_chunks = 4;
        let chunk_bytes = 4000;
        let mut rng = Rng(5);
        let mut writer = ContainerWriter::create(&path, b"{\"max\":true}", Some(max_bytes))
            .expect("create recording");
        let mut written = Vec::new();
        let mut largest_segment = 0;
        let mut segment_len = 0;
        for index in 0..200 {
            let segment_start = index % segment_chunks == 0;
            if segment_start && index > 0 {
                writer.start_segment().expect("start segment");
                segment_len = 0;
            }
            let records = random_chunk(&mut rng, chunk_bytes);
            for (kind, payload) in &records {
                writer.push(*kind, payload).expect("push");
            }
            let before = writer.file_len() + writer.dropped_bytes();
            writer.flush_chunk().expect("flush chunk");
            segment_len += writer.file_len() + writer.dropped_bytes() - before;
            largest_segment = largest_segment.max(segment_len);
            written.push((segment_start, records));
            let on_disk = fs::metadata(&path).expect("stat").len();
            assert_eq!(on_disk, writer.file_len());
            assert!(
                on_disk <= max_bytes + largest_segment,
                "chunk {index}: {on_disk} bytes"
            );
        }
        assert!(writer.dropped_segments() > 0);
        let dropped_segments = writer.dropped_segments();
        let dropped_bytes = writer.dropped_bytes();
        let file_len = writer.file_len();
        writer.finish().expect("finish");
        assert!(file_len <= max_bytes, "{file_len} bytes");

        let recording = read_file(&path).expect("read");
        assert_eq!(recording.damage, Vec::new());
        let first_seq = recording.first_seq.expect("chunks");
        assert!(first_seq > 0);
        assert_eq!(first_seq, dropped_segments * segment_chunks as u64);
        assert!(recording.chunks[0].segment_start);
        let header_len = recording.chunks[0].offset;
        let chunk_bytes_total: u64 = recording.chunks.iter().map(|c| c.len).sum();
        assert_eq!(header_len + chunk_bytes_total, file_len);
        // Every chunk's byte count, dropped or kept, adds up.
        let all: u64 = dropped_bytes + chunk_bytes_total;
        assert!(all > max_bytes * 2);
        assert_chunks_match(
            &recording.chunks,
            &Written {
                header: b"{\"max\":true}".to_vec(),
                chunks: written,
            },
            first_seq,
        );
        assert!(!dir.file(".rec.ztr.rewrite.tmp").exists());
    }

    #[test]
    fn a_segment_bigger_than_max_bytes_is_kept() {
        let dir = TestDir::new("big-segment");
        let path = dir.file("rec.ztr");
        let max_bytes = 10_000;
        let mut rng = Rng(6);
        let mut writer = ContainerWriter::create(&path, b"{}", Some(max_bytes)).expect("create");
        let mut written = Vec::new();
        // Segments of 3 chunks of ~4 KB: each segment alone exceeds max_bytes.
        for index in 0..9 {
            if index % 3 == 0 && index > 0 {
                writer.start_segment().expect("start segment");
            }
            let records = random_chunk(&mut rng, 4000);
            for (kind, payload) in &records {
                writer.push(*kind, payload).expect("push");
            }
            writer.flush_chunk().expect("flush chunk");
            written.push((index % 3 == 0, records));
        }
        // The newest complete segment (3..6) and the one in progress (6..9).
        assert_eq!(writer.dropped_segments(), 1);
        writer.finish().expect("finish");
        let recording = read_file(&path).expect("read");
        assert_eq!(recording.first_seq, Some(3));
        assert_eq!(recording.damage, Vec::new());
        assert_chunks_match(
            &recording.chunks,
            &Written {
                header: b"{}".to_vec(),
                chunks: written,
            },
            3,
        );
    }

    // -----------------------------------------------------------------------
    // Property: any cut and any bit flips.

    /// A file image built in memory, with where each chunk went.
    struct Image {
        bytes: Vec<u8>,
        header_end: usize,
        /// seq = index; (offset, end, segment_start, records).
        chunks: Vec<(usize, usize, bool, Vec<Record>)>,
    }

    fn build_image(chunks: &[(bool, Vec<Rec>)]) -> Image {
        let mut compressor = zstd::bulk::Compressor::new(COMPRESSION_LEVEL).expect("zstd");
        let mut bytes = encode_file_header(b"{\"prop\":1}").expect("header");
        let header_end = bytes.len();
        let mut layout = Vec::new();
        for (seq, (segment_start, records)) in chunks.iter().enumerate() {
            let mut encoded = Vec::new();
            for (kind, payload) in records {
                encode_record(&mut encoded, *kind, payload);
            }
            let chunk = encode_chunk(
                &mut compressor,
                seq as u64,
                *segment_start,
                &encoded,
                records.len() as u32,
            )
            .expect("chunk");
            let offset = bytes.len();
            bytes.extend_from_slice(&chunk);
            layout.push((offset, bytes.len(), *segment_start, to_records(records)));
        }
        Image {
            bytes,
            header_end,
            chunks: layout,
        }
    }

    fn arb_payload() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..48),
            // Compressible, like real events.
            (any::<u8>(), 0..120usize).prop_map(|(byte, len)| vec![byte; len]),
        ]
    }

    fn arb_chunks() -> impl Strategy<Value = Vec<(bool, Vec<Rec>)>> {
        prop::collection::vec(
            (
                any::<bool>(),
                prop::collection::vec((any::<u8>(), arb_payload()), 1..6),
            ),
            1..8,
        )
    }

    fn check_damaged_image(
        image: &Image,
        cut: usize,
        flips: &[(usize, u8)],
    ) -> Result<(), TestCaseError> {
        let mut bytes = image.bytes.clone();
        for &(pos, bit) in flips {
            bytes[pos] ^= 1 << bit;
        }
        bytes.truncate(cut);
        let flipped: Vec<usize> = flips
            .iter()
            .map(|&(pos, _)| pos)
            .filter(|&pos| pos < cut)
            .collect();
        let header_damaged =
            cut < image.header_end || flipped.iter().any(|&p| p < image.header_end);

        let recording = match read_recording(&bytes) {
            Err(error) => {
                prop_assert!(header_damaged, "intact header refused: {error}");
                prop_assert!(
                    matches!(
                        error,
                        Error::Empty { .. }
                            | Error::NotARecording { .. }
                            | Error::UnsupportedVersion { .. }
                            | Error::DamagedHeader { .. }
                    ),
                    "{error:?}"
                );
                return Ok(());
            }
            Ok(recording) => recording,
        };
        prop_assert!(!header_damaged, "damaged header accepted");

        // Exactly the chunks that are whole and unflipped come back, intact.
        let intact: Vec<u64> = image
            .chunks
            .iter()
            .enumerate()
            .filter(|(_, (offset, end, _, _))| {
                *end <= cut && !flipped.iter().any(|p| (*offset..*end).contains(p))
            })
            .map(|(seq, _)| seq as u64)
            .collect();
        let returned: Vec<u64> = recording.chunks.iter().map(|c| c.seq).collect();
        prop_assert_eq!(&returned, &intact);
        for chunk in &recording.chunks {
            let (offset, end, segment_start, records) = &image.chunks[chunk.seq as usize];
            prop_assert_eq!(chunk.offset, *offset as u64);
            prop_assert_eq!(chunk.len, (*end - *offset) as u64);
            prop_assert_eq!(chunk.segment_start, *segment_start);
            prop_assert_eq!(&chunk.records, records);
        }
        prop_assert_eq!(recording.first_seq, returned.first().copied());

        // Chunks and skipped ranges tile the file after the header.
        let mut ranges: Vec<(u64, u64, bool)> = recording
            .chunks
            .iter()
            .map(|c| (c.offset, c.len, true))
            .chain(
                recording
                    .damage
                    .iter()
                    .filter(|d| d.len > 0)
                    .map(|d| (d.offset, d.len, false)),
            )
            .collect();
        ranges.sort_unstable();
        let mut at = image.header_end as u64;
        for &(offset, len, _) in &ranges {
            prop_assert_eq!(offset, at, "ranges {:?}", ranges);
            at += len;
        }
        prop_assert_eq!(at, cut as u64);
        // Every flipped byte lies in a skipped range.
        for &pos in &flipped {
            prop_assert!(
                ranges
                    .iter()
                    .any(|&(o, l, chunk)| !chunk && (o..o + l).contains(&(pos as u64))),
                "flip at {} not reported: {:?}",
                pos,
                recording.damage
            );
        }
        // Missing sequence numbers between returned chunks are reported.
        for pair in recording.chunks.windows(2) {
            if pair[1].seq > pair[0].seq + 1 {
                let gap = Damage {
                    offset: pair[1].offset,
                    len: 0,
                    kind: DamageKind::SequenceGap {
                        after: pair[0].seq,
                        next: pair[1].seq,
                    },
                };
                prop_assert!(recording.damage.contains(&gap), "no {:?}", gap);
            }
        }
        for damage in &recording.damage {
            prop_assert!(!damage.to_string().contains('\n'));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(Config {
            cases: 2000,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(0x7a6f_6d62),
            ..Config::default()
        })]

        #[test]
        fn damaged_files_never_yield_corrupt_records(
            chunks in arb_chunks(),
            cut_per_mille in prop_oneof![Just(1000u32), 0..=1000u32],
            flip_seeds in prop::collection::vec((any::<u32>(), 0..8u8), 1..=8),
        ) {
            let image = build_image(&chunks);
            let len = image.bytes.len();
            let cut = len * cut_per_mille as usize / 1000;
            // Distinct bytes, so that two flips never cancel out. One flip
            // in 16 may hit the file header; the rest hit the chunks, which
            // is where the interesting recovery happens.
            let chunks_len = len - image.header_end;
            let mut flips: Vec<(usize, u8)> = Vec::new();
            for (seed, bit) in flip_seeds {
                let pos = if seed % 16 == 0 {
                    (seed / 16) as usize % len
                } else {
                    image.header_end + (seed / 16) as usize % chunks_len
                };
                if !flips.iter().any(|&(p, _)| p == pos) {
                    flips.push((pos, bit));
                }
            }
            check_damaged_image(&image, cut, &flips)?;
        }
    }

    // -----------------------------------------------------------------------
    // Measurements: cargo test --release -p zombie-trace --lib
    //   recording::container::tests::measure -- --ignored --nocapture

    /// 48 bytes, the shape of a process event: what the tracer will record.
    fn process_events(count: usize) -> Vec<Rec> {
        let mut rng = Rng(42);
        let mut ts_ns: u64 = 3_612_000_000_000;
        let mut next_pid: u32 = 48_000;
        let parents = [1u32, 812, 1_544, 2_301, 2_302, 30_117];
        // (pid, ppid, start_ns) of children that have not exited yet.
        let mut alive: Vec<(u32, u32, u64)> = Vec::new();
        let mut exited: Vec<(u32, u32, u64)> = Vec::new();
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            ts_ns += 2_000 + rng.below(40_000);
            let cpu = rng.below(8) as u32;
            let choice = rng.below(10);
            let (kind, pid, ppid, start_ns, code): (u8, u32, u32, u64, i32) =
                if choice < 4 || alive.is_empty() {
                    next_pid += 1 + rng.below(3) as u32;
                    let ppid = parents[rng.below(parents.len() as u64) as usize];
                    alive.push((next_pid, ppid, ts_ns));
                    (1, next_pid, ppid, ts_ns, 0)
                } else if choice < 7 || exited.is_empty() {
                    // Most children are short-lived: one of the oldest few exits.
                    let index = rng.below(alive.len().min(8) as u64) as usize;
                    let (pid, ppid, start) = alive.remove(index);
                    exited.push((pid, ppid, start));
                    let code = if rng.below(20) == 0 { 1 << 8 } else { 0 };
                    (2, pid, ppid, start, code)
                } else {
                    let index = rng.below(exited.len().min(4) as u64) as usize;
                    let (pid, ppid, start) = exited.remove(index);
                    (3, pid, ppid, start, 0)
                };
            let mut event = Vec::with_capacity(48);
            event.extend_from_slice(&ts_ns.to_le_bytes());
            event.extend_from_slice(&u32::from(kind).to_le_bytes());
            event.extend_from_slice(&pid.to_le_bytes());
            event.extend_from_slice(&pid.to_le_bytes()); // tgid
            event.extend_from_slice(&ppid.to_le_bytes());
            event.extend_from_slice(&code.to_le_bytes());
            event.extend_from_slice(&cpu.to_le_bytes());
            event.extend_from_slice(&start_ns.to_le_bytes());
            event.extend_from_slice(&(0x1_0000_0000_u64 + u64::from(ppid % 3)).to_le_bytes());
            debug_assert_eq!(event.len(), 48);
            out.push((kind, event));
        }
        out
    }

    fn image_of(events: &[Rec], per_chunk: usize, level: i32) -> Vec<u8> {
        let mut compressor = zstd::bulk::Compressor::new(level).expect("zstd");
        let mut bytes = encode_file_header(b"{}").expect("header");
        for (seq, chunk) in events.chunks(per_chunk).enumerate() {
            let mut encoded = Vec::new();
            for (kind, payload) in chunk {
                encode_record(&mut encoded, *kind, payload);
            }
            bytes.extend_from_slice(
                &encode_chunk(
                    &mut compressor,
                    seq as u64,
                    seq == 0,
                    &encoded,
                    chunk.len() as u32,
                )
                .expect("chunk"),
            );
        }
        bytes
    }

    #[test]
    #[ignore = "measurement; run in release with --ignored --nocapture"]
    fn measure() {
        let events = process_events(30_000);
        for level in [-7, -3, -1, 1, 3] {
            for per_chunk in [1_000, 5_000, 30_000] {
                let mut bytes = Vec::new();
                let mut elapsed = std::time::Duration::MAX;
                for _ in 0..5 {
                    let started = Instant::now();
                    bytes = image_of(&events, per_chunk, level);
                    elapsed = elapsed.min(started.elapsed());
                }
                println!(
                    "30,000 x 48-byte events, level {level}, {per_chunk} per chunk: {} bytes, \
                     {:.2} bytes/record, compress {:.0} MB/s",
                    bytes.len(),
                    bytes.len() as f64 / 30_000.0,
                    (30_000.0 * 53.0) / elapsed.as_secs_f64() / 1e6
                );
            }
        }
        let events = process_events(1_000_000);
        let bytes = image_of(&events, 5_000, COMPRESSION_LEVEL);
        let started = Instant::now();
        let rounds = 5;
        let mut records = 0;
        for _ in 0..rounds {
            let recording = read_recording(&bytes).expect("read");
            records += recording
                .chunks
                .iter()
                .map(|c| c.records.len())
                .sum::<usize>();
        }
        let seconds = started.elapsed().as_secs_f64() / f64::from(rounds);
        assert_eq!(records, 1_000_000 * rounds as usize);
        println!(
            "read_recording of 1,000,000 events ({} bytes on disk): {:.0} ms, {:.0} MB/s of \
             file, {:.0} MB/s of records (53 bytes each with framing), {:.1} M records/s",
            bytes.len(),
            seconds * 1e3,
            bytes.len() as f64 / seconds / 1e6,
            53e6 / seconds / 1e6,
            1.0 / seconds
        );
        let started = Instant::now();
        let mut chunks = 0;
        for entry in RecordingReader::new(&bytes).expect("header") {
            if let Entry::Chunk(chunk) = entry {
                chunks += chunk.records.len();
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "RecordingReader streaming the same: {:.0} MB/s of records ({chunks} records)",
            53e6 / seconds / 1e6
        );
    }
}
