//! What a recording holds: the inputs of a live session, one record each,
//! in the order the session read them (see [`crate::engine::live::InputLog`]).
//!
//! Bulk records are binary (events as the kernel wrote them, in the
//! [`compact`](crate::recording::compact) encoding, /proc scans as fixed
//! 45-byte entries); the rare ones are JSON, so that fields can be added
//! without a new format version.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use zombie_trace_common::{
    AttrEvent, COMM_LEN, EventHeader, ExecEvent, ExitEvent, ForkEvent, FreeEvent, WaitEvent,
};

use crate::engine::live::Seed;
use crate::host::cgroup::Attribution;
use crate::host::facts::{Identity, Pressure, ProcFacts};
use crate::host::pressure::PidPressure;
use crate::host::procfs::ProcStat;
use crate::model::{LedgerHealth, Moment};
use crate::recording::compact::EventCodec;

/// What the container's file header holds (as JSON): the facts about the
/// recording host and build that every replay needs first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Which command recorded (`record`, `watch`).
    pub command: String,
    pub tool_version: String,
    /// Kernel, hostname, boot id, USER_HZ, pid_max, threads-max.
    #[serde(flatten)]
    pub host: Identity,
    /// Spacing of the recorded ticks.
    pub tick_interval_ns: u64,
    /// The session's start (both clocks: their difference maps event
    /// timestamps to wall-clock time).
    pub started: Moment,
    /// Sizes of the kernel's event records in the build that recorded.
    pub wire_sizes: WireSizes,
    /// `--max-bytes`, if the recording was bounded.
    pub max_bytes: Option<u64>,
    /// The filter flags it was recorded with (`--unit cron.service`): the
    /// parents its views show unless told otherwise. The recording itself
    /// holds every event (the ledger replays exactly only from all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_flags: Vec<String>,
}

/// Sizes of the wire types: a build whose sizes differ cannot decode the
/// events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSizes {
    pub header: u32,
    pub fork: u32,
    pub exit: u32,
    pub exec: u32,
    pub wait: u32,
    pub attr: u32,
    pub free: u32,
}

impl WireSizes {
    /// This build's.
    pub fn current() -> Self {
        use std::mem::size_of;
        let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            header: size(size_of::<EventHeader>()),
            fork: size(size_of::<ForkEvent>()),
            exit: size(size_of::<ExitEvent>()),
            exec: size(size_of::<ExecEvent>()),
            wait: size(size_of::<WaitEvent>()),
            attr: size(size_of::<AttrEvent>()),
            free: size(size_of::<FreeEvent>()),
        }
    }
}

/// Record kinds (the container's per-record tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Seed = 2,
    Event = 3,
    Batch = 4,
    Resync = 5,
    Tick = 6,
    End = 7,
    Facts = 8,
    PidPressure = 9,
    Pressure = 10,
    /// A kernel event in the [`compact`](crate::recording::compact)
    /// encoding (format version 2 on; kind 3 holds the bytes as written).
    CompactEvent = 11,
    /// Where a process runs (its cgroup), as the live session read it.
    Attribution = 12,
}

impl TryFrom<u8> for Kind {
    type Error = RecordError;

    fn try_from(tag: u8) -> Result<Self, RecordError> {
        Ok(match tag {
            2 => Kind::Seed,
            3 => Kind::Event,
            4 => Kind::Batch,
            5 => Kind::Resync,
            6 => Kind::Tick,
            7 => Kind::End,
            8 => Kind::Facts,
            9 => Kind::PidPressure,
            10 => Kind::Pressure,
            11 => Kind::CompactEvent,
            12 => Kind::Attribution,
            other => return Err(RecordError::UnknownKind(other)),
        })
    }
}

/// A record that does not decode (inside a chunk whose checksum holds:
/// written by another build).
#[derive(Debug, Error)]
pub enum RecordError {
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("{0} record of {1} bytes is malformed")]
    Malformed(&'static str, usize),
    #[error("{0} record: {1}")]
    Json(&'static str, #[source] serde_json::Error),
    #[error(transparent)]
    Compact(#[from] crate::recording::compact::Malformed),
}

/// One decoded input.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A /proc scan a ledger starts from (the first one), or a checkpoint
    /// at the start of a later segment.
    Seed {
        now: Moment,
        procs: Seed,
    },
    /// One kernel record, as written.
    Event(Vec<u8>),
    /// A batch that changed the ledger ended.
    Batch(Moment),
    Resync {
        now: Moment,
        procs: Seed,
    },
    Tick(TickRecord),
    End(EndRecord),
    Facts(FactsRecord),
    PidPressure(PidPressureRecord),
    Pressure(Option<Pressure>),
    Attribution(AttributionRecord),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickRecord {
    pub now: Moment,
    pub health: LedgerHealth,
    /// A live view reported at this tick.
    pub report: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndRecord {
    pub now: Moment,
    pub health: LedgerHealth,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactsRecord {
    pub pid: u32,
    pub facts: Option<ProcFacts>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidPressureRecord {
    pub pid: Option<u32>,
    pub pressure: PidPressure,
}

/// A process by its identity (PID and start time in clock ticks), and the
/// cgroup attribution read for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributionRecord {
    pub pid: u32,
    pub start_ticks: u64,
    pub attribution: Option<Attribution>,
}

const MOMENT_LEN: usize = 16;
/// pid, ppid, state, comm, start_ticks, num_threads, flags, vpid.
const PROC_LEN: usize = 4 + 4 + 1 + COMM_LEN + 8 + 4 + 4 + 4;

pub fn encode_moment(out: &mut Vec<u8>, now: Moment) {
    out.extend_from_slice(&now.boot_ns.to_le_bytes());
    out.extend_from_slice(&now.unix_ns.to_le_bytes());
}

/// A scan: the moment, a count, the entries.
pub fn encode_procs(now: Moment, procs: &[(ProcStat, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MOMENT_LEN + 4 + procs.len() * PROC_LEN);
    encode_moment(&mut out, now);
    out.extend_from_slice(&u32::try_from(procs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (st, vpid) in procs {
        out.extend_from_slice(&st.pid.to_le_bytes());
        out.extend_from_slice(&st.ppid.to_le_bytes());
        out.push(u8::try_from(st.state).unwrap_or(b'?'));
        out.extend_from_slice(&st.comm);
        out.extend_from_slice(&st.start_ticks.to_le_bytes());
        out.extend_from_slice(&st.num_threads.to_le_bytes());
        out.extend_from_slice(&st.flags.to_le_bytes());
        out.extend_from_slice(&vpid.to_le_bytes());
    }
    out
}

pub fn encode_json(value: &impl Serialize) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Little-endian reads that fail instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    fn moment(&mut self) -> Option<Moment> {
        Some(Moment {
            boot_ns: self.u64()?,
            unix_ns: self.u64()?,
        })
    }
}

fn decode_moment(payload: &[u8]) -> Option<Moment> {
    let mut r = Reader { bytes: payload };
    let m = r.moment()?;
    r.bytes.is_empty().then_some(m)
}

fn decode_procs(payload: &[u8]) -> Option<(Moment, Seed)> {
    let mut r = Reader { bytes: payload };
    let now = r.moment()?;
    let count = r.u32()? as usize;
    if r.bytes.len() != count.checked_mul(PROC_LEN)? {
        return None;
    }
    let mut procs = Vec::with_capacity(count);
    for _ in 0..count {
        let pid = r.u32()?;
        let ppid = r.u32()?;
        let [state] = r.take::<1>()?;
        let comm = r.take::<COMM_LEN>()?;
        let start_ticks = r.u64()?;
        let num_threads = r.u32()?;
        let flags = r.u32()?;
        let vpid = r.u32()?;
        procs.push((
            ProcStat {
                pid,
                ppid,
                state: char::from(state),
                comm,
                start_ticks,
                num_threads,
                flags,
            },
            vpid,
        ));
    }
    Some((now, procs))
}

fn json<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    payload: &[u8],
) -> Result<T, RecordError> {
    serde_json::from_slice(payload).map_err(|e| RecordError::Json(what, e))
}

/// Decodes one record of the container; `events` is the compact-event
/// state of the chunk it is in (a new one for every chunk).
pub fn decode(tag: u8, payload: &[u8], events: &mut EventCodec) -> Result<Input, RecordError> {
    let malformed = |what| RecordError::Malformed(what, payload.len());
    Ok(match Kind::try_from(tag)? {
        Kind::CompactEvent => Input::Event(events.decode(payload)?),
        Kind::Seed => {
            let (now, procs) = decode_procs(payload).ok_or_else(|| malformed("seed"))?;
            Input::Seed { now, procs }
        }
        Kind::Event => Input::Event(payload.to_vec()),
        Kind::Batch => Input::Batch(decode_moment(payload).ok_or_else(|| malformed("batch"))?),
        Kind::Resync => {
            let (now, procs) = decode_procs(payload).ok_or_else(|| malformed("resync"))?;
            Input::Resync { now, procs }
        }
        Kind::Tick => Input::Tick(json("tick", payload)?),
        Kind::End => Input::End(json("end", payload)?),
        Kind::Facts => Input::Facts(json("facts", payload)?),
        Kind::PidPressure => Input::PidPressure(json("pid pressure", payload)?),
        Kind::Pressure => Input::Pressure(json("pressure", payload)?),
        Kind::Attribution => Input::Attribution(json("attribution", payload)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moment(boot_ns: u64) -> Moment {
        Moment {
            boot_ns,
            unix_ns: 1_800_000_000_000_000_000 + boot_ns,
        }
    }

    #[test]
    fn scans_round_trip() {
        let mut comm = [0u8; COMM_LEN];
        comm[..6].copy_from_slice(b"runner");
        let procs = vec![(
            ProcStat {
                pid: 4242,
                ppid: 1,
                state: 'Z',
                comm,
                start_ticks: 987_654,
                num_threads: 1,
                flags: 0x40_0044,
            },
            17,
        )];
        let bytes = encode_procs(moment(5), &procs);
        let decoded = decode(Kind::Resync as u8, &bytes, &mut EventCodec::new()).expect("decodes");
        assert_eq!(
            decoded,
            Input::Resync {
                now: moment(5),
                procs
            }
        );
        // Every cut of it is malformed, never a panic.
        for cut in 0..bytes.len() {
            assert!(
                decode(Kind::Seed as u8, &bytes[..cut], &mut EventCodec::new()).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn unknown_kinds_and_bad_json_are_errors() {
        assert!(matches!(
            decode(200, b"", &mut EventCodec::new()),
            Err(RecordError::UnknownKind(200))
        ));
        assert!(decode(Kind::Tick as u8, b"{", &mut EventCodec::new()).is_err());
        assert!(decode(Kind::Batch as u8, &[0; 15], &mut EventCodec::new()).is_err());
        let mut batch = Vec::new();
        encode_moment(&mut batch, moment(9));
        assert_eq!(
            decode(Kind::Batch as u8, &batch, &mut EventCodec::new()).expect("batch"),
            Input::Batch(moment(9))
        );
    }
}
