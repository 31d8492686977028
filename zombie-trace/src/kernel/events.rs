//! Decoding of ring buffer records into typed events.
//!
//! Records are copied out of the ring buffer with `read_unaligned` after a
//! length check: no allocation, no transmute of the kind.

use std::mem::size_of;

use thiserror::Error;
use zombie_trace_common::{
    AttrEvent, EventHeader, EventKind, ExecEvent, ExitEvent, ForkEvent, FreeEvent, UnknownKind,
    WaitEvent,
};

/// One decoded record.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    Fork(ForkEvent),
    Exit(ExitEvent),
    Exec(ExecEvent),
    Wait(WaitEvent),
    Attr(AttrEvent),
    Free(FreeEvent),
}

impl Event {
    pub fn header(&self) -> &EventHeader {
        match self {
            Event::Fork(e) => &e.header,
            Event::Exit(e) => &e.header,
            Event::Exec(e) => &e.header,
            Event::Wait(e) => &e.header,
            Event::Attr(e) => &e.header,
            Event::Free(e) => &e.header,
        }
    }
}

/// A record that could not be decoded: the eBPF object and this binary disagree.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error(
        "ring buffer record of {len} bytes is shorter than its {kind} header/body ({need} bytes)"
    )]
    Short {
        kind: &'static str,
        len: usize,
        need: usize,
    },
    #[error("ring buffer record has unknown kind {0}")]
    UnknownKind(u32),
}

impl From<UnknownKind> for DecodeError {
    fn from(UnknownKind(kind): UnknownKind) -> Self {
        DecodeError::UnknownKind(kind)
    }
}

pub(crate) fn read<T: Copy>(bytes: &[u8], kind: &'static str) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            kind,
            len: bytes.len(),
            need,
        });
    }
    // Safety: the length is checked above and every wire type is
    // `#[repr(C)]` plain integers and byte arrays, valid for any bit pattern.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

impl TryFrom<&[u8]> for Event {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let header: EventHeader = read(bytes, "header")?;
        Ok(match EventKind::try_from(header.kind)? {
            EventKind::Fork => Event::Fork(read(bytes, "fork")?),
            EventKind::Exit => Event::Exit(read(bytes, "exit")?),
            EventKind::Exec => Event::Exec(read(bytes, "exec")?),
            EventKind::Wait => Event::Wait(read(bytes, "wait")?),
            EventKind::Attr => Event::Attr(read(bytes, "attr")?),
            EventKind::Free => Event::Free(read(bytes, "free")?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zombie_trace_common::ProcessId;

    fn bytes_of<T>(value: &T) -> Vec<u8> {
        let ptr = (value as *const T).cast::<u8>();
        unsafe { std::slice::from_raw_parts(ptr, size_of::<T>()) }.to_vec()
    }

    #[test]
    fn decodes_an_exec_record() {
        let event = ExecEvent {
            header: EventHeader {
                kind: EventKind::Exec as u32,
                tid: 42,
                timestamp_ns: 7,
            },
            process: ProcessId {
                tgid: 42,
                _pad: 0,
                start_boottime_ns: 99,
            },
            comm: *b"job-runner\0\0\0\0\0\0",
        };
        match Event::try_from(bytes_of(&event).as_slice()) {
            Ok(Event::Exec(decoded)) => {
                assert_eq!(decoded.process, event.process);
                assert_eq!(decoded.comm, event.comm);
            }
            other => panic!("expected an exec event, got {other:?}"),
        }
    }

    #[test]
    fn rejects_unknown_kinds_and_short_records() {
        let header = EventHeader {
            kind: 99,
            tid: 1,
            timestamp_ns: 1,
        };
        assert_eq!(
            Event::try_from(bytes_of(&header).as_slice()).err(),
            Some(DecodeError::UnknownKind(99))
        );
        let header = EventHeader {
            kind: EventKind::Exit as u32,
            ..header
        };
        assert!(matches!(
            Event::try_from(bytes_of(&header).as_slice()),
            Err(DecodeError::Short { kind: "exit", .. })
        ));
        assert!(matches!(
            Event::try_from(&[0u8; 3][..]),
            Err(DecodeError::Short { kind: "header", .. })
        ));
    }
}
