//! Writing a recording: the [`InputLog`] of a live session, into a
//! container file (framed, checksummed, compressed chunks).

use std::io;
use std::path::Path;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::engine::live::InputLog;
use crate::host::cgroup::Attribution;
use crate::host::facts::{Identity, Pressure, ProcFacts};
use crate::host::pressure::PidPressure;
use crate::host::procfs::ProcStat;
use crate::host::scan::{scan, vpid_resolver};
use crate::model::{LedgerHealth, Moment, ProcKey};
use crate::recording::RecordingError;
use crate::recording::compact::{EventCodec, MAX_COMPACT};
use crate::recording::container::ContainerWriter;
use crate::recording::records::{
    AttributionRecord, EndRecord, FactsRecord, Header, Kind, PidPressureRecord, TickRecord,
    WireSizes, encode_json, encode_moment, encode_procs,
};

/// A chunk is written when this much is buffered, or at the next flush
/// (once a second). Small chunks compress faster (they stay in the cache)
/// for a few percent more bytes; see the container's compression level.
const CHUNK_BYTES: usize = 64 << 10;

/// With `--max-bytes`, a new segment (which starts with a /proc scan, so
/// that it replays on its own) every this fraction of the bound: dropping
/// the oldest segment frees about a quarter of the file.
const SEGMENTS_PER_BOUND: u64 = 4;

/// What a recorder wrote so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecorderStats {
    pub events: u64,
    pub records: u64,
    pub segments: u64,
}

/// Records a live session's inputs into a file.
pub struct Recorder {
    writer: ContainerWriter,
    /// The first write error: recording stops there, and every flush
    /// returns it.
    failed: Option<String>,
    /// The last facts written per process, pressure per cgroup subject, and
    /// host pressure: only changes are written.
    facts: FxHashMap<u32, Option<ProcFacts>>,
    pid_pressure: FxHashMap<Option<u32>, PidPressure>,
    pressure: Option<Option<Pressure>>,
    attributions: FxHashMap<ProcKey, Option<Attribution>>,
    max_bytes: Option<u64>,
    /// The file's length when the current segment started.
    segment_start: u64,
    /// Compact-event state of the chunk being buffered, and that chunk's
    /// sequence number: deltas never cross a chunk.
    events: EventCodec,
    events_chunk: u64,
    /// The compact form of the event being written.
    event_bytes: Vec<u8>,
    pub stats: RecorderStats,
}

impl Recorder {
    /// Creates (or truncates) `path` and writes the header.
    pub fn create(
        path: &Path,
        command: &str,
        started: Moment,
        tick_interval: Duration,
        max_bytes: Option<u64>,
        filter_flags: Vec<String>,
    ) -> Result<Self, RecordingError> {
        let identity = Identity::read().map_err(|e| RecordingError::Host(e.to_string()))?;
        let header = Header {
            command: command.to_owned(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            host: identity,
            tick_interval_ns: u64::try_from(tick_interval.as_nanos()).unwrap_or(u64::MAX),
            started,
            wire_sizes: WireSizes::current(),
            max_bytes,
            filter_flags,
        };
        let writer =
            ContainerWriter::create(path, &encode_json(&header), max_bytes).map_err(|e| {
                RecordingError::Create {
                    path: path.to_owned(),
                    problem: e.to_string(),
                }
            })?;
        Ok(Self {
            writer,
            failed: None,
            facts: FxHashMap::default(),
            pid_pressure: FxHashMap::default(),
            pressure: None,
            attributions: FxHashMap::default(),
            max_bytes,
            segment_start: 0,
            events: EventCodec::new(),
            events_chunk: 0,
            event_bytes: Vec::with_capacity(64),
            stats: RecorderStats::default(),
        })
    }

    fn push(&mut self, kind: Kind, payload: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.writer.push(kind as u8, payload) {
            self.failed = Some(e.to_string());
            return;
        }
        self.stats.records += 1;
        if self.writer.buffered_bytes() >= CHUNK_BYTES {
            self.write_chunk();
            self.maybe_start_segment();
        }
    }

    fn write_chunk(&mut self) {
        if self.failed.is_some() {
            return;
        }
        let dropped = self.writer.dropped_bytes();
        if let Err(e) = self.writer.flush_chunk() {
            self.failed = Some(e.to_string());
        }
        // Older segments dropped to stay under the bound were before the
        // current one: it now starts that much earlier in the file.
        let now_dropped = self.writer.dropped_bytes().saturating_sub(dropped);
        self.segment_start = self.segment_start.saturating_sub(now_dropped);
    }

    /// Starts a new segment with a /proc scan of its own when the current
    /// one has reached its share of the bound (checked after every chunk
    /// written, so a segment outgrows its share by one chunk at most).
    fn maybe_start_segment(&mut self) {
        let Some(max) = self.max_bytes else {
            return;
        };
        let written = self.writer.file_len().saturating_sub(self.segment_start);
        if written < max / SEGMENTS_PER_BOUND {
            return;
        }
        let (Ok((stats, _)), Ok(now)) = (scan(), crate::host::facts::now()) else {
            return; // try again after the next chunk
        };
        self.write_chunk();
        self.start_segment();
        self.segment_start = self.writer.file_len();
        let mut vpid_of = vpid_resolver();
        let procs: Vec<(ProcStat, u32)> = stats.iter().map(|st| (*st, vpid_of(st))).collect();
        self.push(Kind::Seed, &encode_procs(now, &procs));
        // Facts are written again in the new segment: it must replay alone.
        self.facts.clear();
        self.pid_pressure.clear();
        self.pressure = None;
        self.attributions.clear();
    }

    fn start_segment(&mut self) {
        if self.failed.is_some() {
            return;
        }
        match self.writer.start_segment() {
            Ok(()) => self.stats.segments += 1,
            Err(e) => self.failed = Some(e.to_string()),
        }
    }

    /// Segments dropped to keep the file under `--max-bytes`, and their bytes.
    pub fn dropped(&self) -> (u64, u64) {
        (self.writer.dropped_segments(), self.writer.dropped_bytes())
    }
}

impl InputLog for Recorder {
    fn seed(&mut self, now: Moment, procs: &[(ProcStat, u32)]) {
        self.start_segment();
        self.push(Kind::Seed, &encode_procs(now, procs));
    }

    fn event(&mut self, record: &[u8]) {
        self.stats.events += 1;
        let mut compact = std::mem::take(&mut self.event_bytes);
        compact.clear();
        // An event that might not fit (compact, or as written) ends the
        // chunk here, so that it is encoded against the chunk it lands in.
        if !self.writer.fits(record.len().max(MAX_COMPACT)) {
            self.write_chunk();
        }
        if self.writer.next_seq() != self.events_chunk {
            self.events = EventCodec::new();
            self.events_chunk = self.writer.next_seq();
        }
        if self.events.encode(record, &mut compact) {
            self.push(Kind::CompactEvent, &compact);
        } else {
            self.push(Kind::Event, record);
        }
        self.event_bytes = compact;
    }

    fn batch(&mut self, now: Moment) {
        let mut out = Vec::with_capacity(16);
        encode_moment(&mut out, now);
        self.push(Kind::Batch, &out);
    }

    fn resync(&mut self, now: Moment, procs: &[(ProcStat, u32)]) {
        self.push(Kind::Resync, &encode_procs(now, procs));
    }

    fn tick(&mut self, now: Moment, health: &LedgerHealth, report: bool) {
        let tick = TickRecord {
            now,
            health: *health,
            report,
        };
        self.push(Kind::Tick, &encode_json(&tick));
    }

    fn end(&mut self, now: Moment, health: &LedgerHealth) {
        let end = EndRecord {
            now,
            health: *health,
        };
        self.push(Kind::End, &encode_json(&end));
    }

    fn process_facts(&mut self, pid: u32, facts: Option<&ProcFacts>) {
        if self
            .facts
            .get(&pid)
            .is_some_and(|last| last.as_ref() == facts)
        {
            return;
        }
        self.facts.insert(pid, facts.cloned());
        let record = FactsRecord {
            pid,
            facts: facts.cloned(),
        };
        self.push(Kind::Facts, &encode_json(&record));
    }

    fn pid_pressure(&mut self, pid: Option<u32>, pressure: &PidPressure) {
        if self.pid_pressure.get(&pid) == Some(pressure) {
            return;
        }
        self.pid_pressure.insert(pid, pressure.clone());
        let record = PidPressureRecord {
            pid,
            pressure: pressure.clone(),
        };
        self.push(Kind::PidPressure, &encode_json(&record));
    }

    fn pressure(&mut self, pressure: Option<&Pressure>) {
        if self.pressure == Some(pressure.copied()) {
            return;
        }
        self.pressure = Some(pressure.copied());
        self.push(Kind::Pressure, &encode_json(&pressure));
    }

    fn attribution(&mut self, key: ProcKey, attribution: Option<&Attribution>) {
        if self
            .attributions
            .get(&key)
            .is_some_and(|last| last.as_ref() == attribution)
        {
            return;
        }
        self.attributions.insert(key, attribution.cloned());
        let record = AttributionRecord {
            pid: key.pid,
            start_ticks: key.start_ticks,
            attribution: attribution.cloned(),
        };
        self.push(Kind::Attribution, &encode_json(&record));
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_chunk();
        if let Some(message) = &self.failed {
            return Err(io::Error::other(message.clone()));
        }
        self.maybe_start_segment();
        Ok(())
    }
}
