//! How far the ledger can be trusted, and when it was read.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::ResyncSummary;

/// One reading of the two clocks every view needs: CLOCK_BOOTTIME (the
/// kernel's event timestamps, for ages) and the wall clock (for the times
/// printed). Taken by the engine's source, never by a view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moment {
    /// CLOCK_BOOTTIME nanoseconds.
    pub boot_ns: u64,
    /// Wall clock, nanoseconds since the Unix epoch.
    pub unix_ns: u64,
}

impl Moment {
    pub fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.unix_ns)
    }

    /// The wall-clock time of a CLOCK_BOOTTIME instant, by this reading's
    /// offset between the two clocks.
    pub fn wall_of(&self, boot_ns: u64) -> SystemTime {
        let offset = self.unix_ns as i128 - self.boot_ns as i128;
        let unix = (boot_ns as i128 + offset).max(0);
        SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(unix).unwrap_or(u64::MAX))
    }

    /// The moment at CLOCK_BOOTTIME `boot_ns`, by this reading's offset
    /// between the two clocks.
    pub fn at_boot(&self, boot_ns: u64) -> Self {
        let unix = self.wall_of(boot_ns);
        Self {
            boot_ns,
            unix_ns: unix
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_ms(&self) -> i64 {
        i64::try_from(self.unix_ns / 1_000_000).unwrap_or(i64::MAX)
    }

    /// This moment `ns` later (both clocks).
    pub fn plus_ns(&self, ns: u64) -> Self {
        Self {
            boot_ns: self.boot_ns.saturating_add(ns),
            unix_ns: self.unix_ns.saturating_add(ns),
        }
    }
}

/// Events the kernel side could not deliver, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostCounts {
    pub ring_full: u64,
    pub wait_map_full: u64,
    pub read_failed: u64,
}

impl LostCounts {
    pub fn total(&self) -> u64 {
        self.ring_full + self.wait_map_full + self.read_failed
    }
}

/// How far the ledger can be trusted. Losses stay counted for the life of
/// the session; a resync after them makes the ledger exact again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerHealth {
    /// Events the kernel could not deliver, by reason, since the start.
    pub lost: LostCounts,
    /// Of those, the ones no resync has covered yet: while non-zero the
    /// ledger may miss forks, exits or reaps.
    pub lost_since_resync: u64,
    /// Resyncs with /proc so far (after losses, or when a periodic check of
    /// the ledger's zombies found one /proc disagrees with).
    pub resyncs: u64,
    /// Entries all resyncs corrected.
    pub resync_corrections: u64,
    /// What the last resync corrected.
    pub last_resync: Option<ResyncSummary>,
    /// Zombies checked against /proc one by one (round-robin, without losses).
    pub zombie_checks: u64,
}

impl LedgerHealth {
    /// The ledger equals the kernel's process table as far as anyone can
    /// tell: no loss since the last resync.
    pub fn complete(&self) -> bool {
        self.lost_since_resync == 0
    }
}
