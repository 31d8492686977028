//! The compact encoding of kernel event records in a recording (record kind
//! [`Kind::CompactEvent`](crate::recording::records::Kind)): each record
//! written as its difference from the previous record of the same event
//! kind in the same chunk, and rebuilt byte for byte when read.
//!
//! Why: a fork→exit→reap lifecycle is four records, 280 bytes as the kernel
//! writes them, and compressing those bytes was most of what recording
//! cost (`docs/benchmarks.md`, figure 6). Two records of one kind differ in
//! a few 32-bit words (the timestamp, the PIDs, a start time), so a record
//! is a bitmap of the words that changed and, for each, the zigzag LEB128
//! varint of the change (wrapping, so any bytes encode): 10–20 bytes.
//!
//! Deltas never cross a chunk: the recorder starts a new [`EventCodec`] with
//! every chunk and the reader with every chunk it reads, so a damaged or
//! dropped chunk loses only its own records and a segment replays alone.

use zombie_trace_common::{
    AttrEvent, EventKind, ExecEvent, ExitEvent, ForkEvent, FreeEvent, WaitEvent,
};

/// Event kinds 1 to this have a slot of their own.
const KINDS: usize = 6;

/// Bytes of a record of each event kind, by `kind - 1`.
const SIZES: [usize; KINDS] = [
    size_of::<ForkEvent>(),
    size_of::<ExitEvent>(),
    size_of::<ExecEvent>(),
    size_of::<WaitEvent>(),
    size_of::<AttrEvent>(),
    size_of::<FreeEvent>(),
];

/// The largest record, in words.
const MAX_WORDS: usize = size_of::<ExitEvent>() / 4;

/// 32-bit words of a record of each event kind, by `kind - 1`.
const WORDS: [usize; KINDS] = {
    assert!(EventKind::Fork as usize == 1 && EventKind::Free as usize == KINDS);
    let mut words = [0; KINDS];
    let mut i = 0;
    while i < KINDS {
        assert!(SIZES[i].is_multiple_of(4) && SIZES[i] / 4 <= MAX_WORDS);
        words[i] = SIZES[i] / 4;
        i += 1;
    }
    words
};

/// The longest compact record: the kind, the bitmap, five bytes a word.
pub const MAX_COMPACT: usize = 1 + MAX_WORDS.div_ceil(8) + 5 * MAX_WORDS;

/// The previous record of each kind in this chunk, as 32-bit words (zero
/// before the first).
#[derive(Debug)]
pub struct EventCodec {
    previous: [[u32; MAX_WORDS]; KINDS],
}

impl Default for EventCodec {
    fn default() -> Self {
        Self {
            previous: [[0; MAX_WORDS]; KINDS],
        }
    }
}

/// A compact record that does not decode: truncated, over-long, or of a
/// kind or size this build does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("compact event record is malformed")]
pub struct Malformed;

/// `kind - 1` and the record's words, if this build knows the kind.
fn slot_of(kind: u8) -> Option<(usize, usize)> {
    let slot = usize::from(kind).checked_sub(1)?;
    Some((slot, *WORDS.get(slot)?))
}

impl EventCodec {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the compact form of `record` (one kernel record as written)
    /// to `out`; `false`, with nothing appended, for a record whose kind or
    /// size this build does not know (write it as it is instead).
    pub fn encode(&mut self, record: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(&kind) = record.first() else {
            return false;
        };
        let Some((slot, words)) = slot_of(kind) else {
            return false;
        };
        if record.len() != words * 4 || record[1..4] != [0, 0, 0] {
            return false;
        }
        let previous = &mut self.previous[slot];
        let mut buf = [0u8; MAX_COMPACT];
        buf[0] = kind;
        let bitmap_len = words.div_ceil(8);
        let mut len = 1 + bitmap_len;
        for (i, (bytes, prev)) in record.chunks_exact(4).zip(previous.iter_mut()).enumerate() {
            let word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            if word != *prev {
                buf[1 + i / 8] |= 1 << (i % 8);
                let mut value = zigzag(word.wrapping_sub(*prev));
                while value >= 0x80 {
                    buf[len] = (value as u8) | 0x80;
                    len += 1;
                    value >>= 7;
                }
                buf[len] = value as u8;
                len += 1;
                *prev = word;
            }
        }
        out.extend_from_slice(&buf[..len]);
        true
    }

    /// The kernel record `payload` (a compact record) stands for.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Vec<u8>, Malformed> {
        let (&kind, rest) = payload.split_first().ok_or(Malformed)?;
        let (slot, words) = slot_of(kind).ok_or(Malformed)?;
        let (bitmap, mut deltas) = rest.split_at_checked(words.div_ceil(8)).ok_or(Malformed)?;
        // Changed only once the whole record decodes.
        let mut current = self.previous[slot];
        let mut record = Vec::with_capacity(words * 4);
        for (i, prev) in current[..words].iter_mut().enumerate() {
            if bitmap[i / 8] & (1 << (i % 8)) != 0 {
                let delta = take_varint(&mut deltas).ok_or(Malformed)?;
                *prev = prev.wrapping_add(unzigzag(delta));
            }
            record.extend_from_slice(&prev.to_le_bytes());
        }
        // Bits past the last word, and bytes past the last varint, are damage.
        let spare_bits = bitmap.len() * 8 - words;
        let last_byte_clean =
            spare_bits == 0 || bitmap.last().is_none_or(|b| b >> (8 - spare_bits) == 0);
        if !deltas.is_empty() || !last_byte_clean || record[..4] != [kind, 0, 0, 0] {
            return Err(Malformed);
        }
        self.previous[slot] = current;
        Ok(record)
    }
}

fn zigzag(delta: u32) -> u32 {
    let signed = delta as i32;
    ((signed << 1) ^ (signed >> 31)) as u32
}

fn unzigzag(value: u32) -> u32 {
    (value >> 1) ^ (value & 1).wrapping_neg()
}

#[cfg(test)]
fn put_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A LEB128 varint of at most five bytes that fits in 32 bits.
fn take_varint(bytes: &mut &[u8]) -> Option<u32> {
    let mut value = 0u32;
    for (i, &byte) in bytes.iter().enumerate().take(5) {
        let bits = u32::from(byte & 0x7f);
        if i == 4 && bits > 0x0f {
            return None;
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record_of(kind: u8, fill: impl Fn(usize) -> u8) -> Vec<u8> {
        let (_, words) = slot_of(kind).unwrap();
        let mut record: Vec<u8> = (0..words * 4).map(fill).collect();
        record[..4].copy_from_slice(&u32::from(kind).to_le_bytes());
        record
    }

    #[test]
    fn varints_and_zigzag_round_trip_at_the_edges() {
        for value in [0, 1, 0x7f, 0x80, 0x3fff, 0x4000, u32::MAX - 1, u32::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut bytes = &out[..];
            assert_eq!(take_varint(&mut bytes), Some(value));
            assert!(bytes.is_empty());
            assert_eq!(unzigzag(zigzag(value)), value);
        }
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(u32::MAX), 1, "-1 is small");
        // Six bytes, or a fifth byte past 32 bits, is not a varint here.
        assert_eq!(
            take_varint(&mut &[0x80u8, 0x80, 0x80, 0x80, 0x80, 0x01][..]),
            None
        );
        assert_eq!(
            take_varint(&mut &[0xffu8, 0xff, 0xff, 0xff, 0x1f][..]),
            None
        );
        assert_eq!(take_varint(&mut &[0x80u8][..]), None);
    }

    #[test]
    fn a_record_like_the_last_costs_a_few_bytes() {
        let mut codec = EventCodec::new();
        let fork = record_of(EventKind::Fork as u8, |i| (i % 7) as u8);
        let mut out = Vec::new();
        assert!(codec.encode(&fork, &mut out));
        let first = out.len();
        let mut next = fork.clone();
        next[8] = next[8].wrapping_add(3); // the timestamp moved on
        out.clear();
        assert!(codec.encode(&next, &mut out));
        // Kind, a 3-byte bitmap (18 words), one 1-byte delta.
        assert_eq!(out.len(), 5, "{out:?}");
        assert!(first > out.len());
        let mut decoder = EventCodec::new();
        let mut first_out = Vec::new();
        EventCodec::new().encode(&fork, &mut first_out);
        assert_eq!(decoder.decode(&first_out).unwrap(), fork);
        assert_eq!(decoder.decode(&out).unwrap(), next);
    }

    #[test]
    fn unknown_kinds_and_sizes_are_left_to_the_plain_record() {
        let mut codec = EventCodec::new();
        let mut out = Vec::new();
        assert!(!codec.encode(&[], &mut out));
        assert!(!codec.encode(&record_of(1, |_| 0)[..70], &mut out));
        let mut odd = record_of(1, |_| 0);
        odd[0] = 9;
        assert!(!codec.encode(&odd, &mut out));
        // A kind with high bytes set is not a kind this build wrote.
        let mut high = record_of(1, |_| 0);
        high[2] = 1;
        assert!(!codec.encode(&high, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn damaged_compact_records_do_not_decode() {
        let mut out = Vec::new();
        EventCodec::new().encode(&record_of(6, |i| i as u8), &mut out);
        assert!(EventCodec::new().decode(&out).is_ok());
        let mut longer = out.clone();
        longer.push(0);
        assert_eq!(EventCodec::new().decode(&longer), Err(Malformed));
        for cut in 0..out.len() {
            assert_eq!(
                EventCodec::new().decode(&out[..cut]),
                Err(Malformed),
                "cut at {cut}"
            );
        }
        // A bit for a word the kind does not have (free: 8 words, 1 byte).
        let mut extra_bit = vec![6u8, 0];
        extra_bit[1] = 0;
        assert!(
            EventCodec::new().decode(&extra_bit).is_err(),
            "kind word 0 is not 6"
        );
        assert_eq!(EventCodec::new().decode(&[7, 0xff]), Err(Malformed));
    }

    proptest! {
        /// Any sequence of records of known kinds and sizes, whatever their
        /// bytes, comes back exactly; records the codec declines are
        /// skipped on both sides, as the recorder writes them plainly.
        #[test]
        fn every_record_comes_back_byte_for_byte(
            records in prop::collection::vec(
                (1u8..=6, prop::collection::vec(
                    prop::sample::select(vec![0u8, 1, 2, 0x7f, 0x80, 0xff]), 96)),
                0..40,
            )
        ) {
            let mut encoder = EventCodec::new();
            let mut decoder = EventCodec::new();
            for (kind, bytes) in records {
                let (_, words) = slot_of(kind).unwrap();
                let mut record = bytes[..words * 4].to_vec();
                record[..4].copy_from_slice(&u32::from(kind).to_le_bytes());
                let mut out = Vec::new();
                prop_assert!(encoder.encode(&record, &mut out));
                prop_assert_eq!(decoder.decode(&out).unwrap(), record);
            }
        }

        /// Hostile compact records (a checksum-valid file can hold any
        /// bytes) give an error or a record, never a panic.
        #[test]
        fn any_bytes_decode_or_fail_cleanly(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..20)
        ) {
            let mut decoder = EventCodec::new();
            for payload in payloads {
                if let Ok(record) = decoder.decode(&payload) {
                    prop_assert_eq!(record.len() % 4, 0);
                }
            }
        }
    }
}
