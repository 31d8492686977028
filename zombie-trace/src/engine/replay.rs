//! The recorded source: a recording's inputs fed to the same consumers, in
//! the same calls, as the live session that wrote them (see
//! [`crate::engine::live::InputLog`]). Nothing here reads the clock or
//! /proc: the clock is the recorded one, host facts are the recorded ones.

use std::io;
use std::time::Duration;

use rustc_hash::FxHashMap;
use thiserror::Error;

use crate::engine::{Consumer, Context};
use crate::host::cgroup::Attribution;
use crate::host::facts::{HostFacts, Pressure, ProcFacts};
use crate::host::pressure::PidPressure;
use crate::host::procfs::ProcStat;
use crate::kernel::events::Event;
use crate::model::{Change, Ledger, LedgerHealth, Moment, ProcKey, TickClock};
use crate::recording::reader::Item;
use crate::recording::records::{Header, Input};

#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("writing the output: {0}")]
    Output(#[from] io::Error),
}

/// How to replay.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplayOptions {
    /// Call `on_tick` at the recorded ticks spaced by this (as a live view
    /// with this report interval would have); `None`: never.
    pub report_interval: Option<Duration>,
    /// Stop at this CLOCK_BOOTTIME instant, as if the session ended then.
    pub stop_at_boot_ns: Option<u64>,
}

/// How a replay went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Inputs applied.
    pub inputs: u64,
    pub events: u64,
    /// Events that did not decode, or came before any seed.
    pub events_skipped: u64,
    /// Damaged or missing parts of the file met on the way.
    pub gaps: u64,
    /// The recording's own end was reached (else it was cut short, or
    /// `stop_at` came first).
    pub reached_end: bool,
    /// Where the replay stopped.
    pub last: Option<Moment>,
}

/// Host facts as the live session read them, latest first.
#[derive(Debug, Default)]
struct ReplayHost {
    facts: FxHashMap<u32, Option<ProcFacts>>,
    pid_pressure: FxHashMap<Option<u32>, PidPressure>,
    pressure: Option<Pressure>,
    attributions: FxHashMap<ProcKey, Option<Attribution>>,
}

impl HostFacts for ReplayHost {
    fn process(&mut self, pid: u32) -> Option<ProcFacts> {
        self.facts.get(&pid).cloned().flatten()
    }

    fn pid_pressure(&mut self, pid: Option<u32>) -> PidPressure {
        self.pid_pressure
            .get(&pid)
            .or_else(|| self.pid_pressure.get(&None))
            .cloned()
            .unwrap_or_else(PidPressure::unknown)
    }

    fn pressure(&mut self) -> Option<Pressure> {
        self.pressure
    }

    fn attribution(&mut self, key: ProcKey) -> Option<Attribution> {
        self.attributions.get(&key).cloned().flatten()
    }
}

/// The ledger being rebuilt, and what the consumer is told.
struct State {
    ledger: Option<Ledger>,
    host: ReplayHost,
    health: LedgerHealth,
    started: Moment,
    now: Moment,
    /// A damaged part was skipped and no scan has covered it since.
    gap_open: bool,
}

impl State {
    fn call<C: Consumer + ?Sized>(
        &mut self,
        consumer: &mut C,
        call: impl FnOnce(&mut C, &mut Context<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let mut health = self.health;
        if self.gap_open {
            // What the damaged part held is unknown, as after lost events.
            health.lost_since_resync = health.lost_since_resync.max(1);
        }
        let mut ctx = Context {
            ledger,
            health,
            started: self.started,
            now: self.now,
            host: &mut self.host,
            programs: None,
        };
        call(consumer, &mut ctx)
    }
}

/// Replays `items` (from [`crate::recording::reader`]) into `consumer`.
pub fn replay<C: Consumer + ?Sized>(
    header: &Header,
    items: impl IntoIterator<Item = Item>,
    options: ReplayOptions,
    consumer: &mut C,
) -> Result<ReplayOutcome, ReplayError> {
    let mut state = State {
        ledger: None,
        host: ReplayHost::default(),
        health: LedgerHealth::default(),
        started: header.started,
        now: header.started,
        gap_open: false,
    };
    let mut outcome = ReplayOutcome::default();
    let mut last_report: Option<u64> = None;
    let half_tick = header.tick_interval_ns / 2;
    let past_stop = |m: &Moment| options.stop_at_boot_ns.is_some_and(|stop| m.boot_ns > stop);
    let emit = |consumer: &mut C, change| consumer.on_change(&change);
    for item in items {
        let input = match item {
            Item::Input(input) => input,
            Item::Gap(_) => {
                outcome.gaps += 1;
                state.gap_open = true;
                continue;
            }
        };
        outcome.inputs += 1;
        match input {
            Input::Seed { now, procs } => match &mut state.ledger {
                None => {
                    let mut ledger = Ledger::new(
                        TickClock::new(header.host.user_hz),
                        now.boot_ns,
                        (2 * procs.len()).max(1024),
                    );
                    let (stats, vpid_of) = split_seed(&procs);
                    ledger.seed(&stats, vpid_of);
                    state.ledger = Some(ledger);
                    state.started = now;
                    state.now = now;
                }
                // A later segment's checkpoint: only needed after a gap.
                Some(ledger) if state.gap_open => {
                    resync(ledger, now, &procs, &mut |c| emit(consumer, c));
                    state.gap_open = false;
                }
                Some(_) => {}
            },
            Input::Event(bytes) => {
                let (Some(ledger), Ok(event)) = (&mut state.ledger, Event::try_from(&bytes[..]))
                else {
                    outcome.events_skipped += 1;
                    continue;
                };
                outcome.events += 1;
                ledger.apply(&event, &mut |c| emit(consumer, c));
            }
            Input::Batch(now) => {
                if past_stop(&now) {
                    break;
                }
                state.now = now;
                state.call(consumer, |c, ctx| c.after_batch(ctx))?;
            }
            Input::Resync { now, procs } => {
                if past_stop(&now) {
                    break;
                }
                if let Some(ledger) = &mut state.ledger {
                    resync(ledger, now, &procs, &mut |c| emit(consumer, c));
                    state.gap_open = false;
                }
            }
            Input::Tick(tick) => {
                if past_stop(&tick.now) {
                    break;
                }
                state.now = tick.now;
                state.health = tick.health;
                let due = options.report_interval.is_some_and(|interval| {
                    let interval = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
                    last_report.is_none_or(|last| {
                        tick.now.boot_ns.saturating_sub(last) + half_tick >= interval
                    })
                });
                if due && let Some(ledger) = &mut state.ledger {
                    last_report = Some(tick.now.boot_ns);
                    ledger.refresh_oldest();
                    state.call(consumer, |c, ctx| c.on_tick(ctx))?;
                }
            }
            Input::End(end) => {
                if past_stop(&end.now) {
                    break;
                }
                state.now = end.now;
                state.health = end.health;
                outcome.reached_end = true;
                break;
            }
            Input::Facts(record) => {
                state.host.facts.insert(record.pid, record.facts);
            }
            Input::PidPressure(record) => {
                state.host.pid_pressure.insert(record.pid, record.pressure);
            }
            Input::Pressure(pressure) => state.host.pressure = pressure,
            Input::Attribution(record) => {
                let key = ProcKey {
                    pid: record.pid,
                    start_ticks: record.start_ticks,
                };
                state.host.attributions.insert(key, record.attribution);
            }
        }
    }
    if let Some(stop) = options.stop_at_boot_ns
        && !outcome.reached_end
        && stop > state.now.boot_ns
        && state.ledger.is_some()
    {
        // Nothing happened between the last input before `stop` and it.
        state.now = state.now.plus_ns(stop - state.now.boot_ns);
    }
    outcome.last = state.ledger.is_some().then_some(state.now);
    if let Some(ledger) = &mut state.ledger {
        ledger.refresh_oldest();
    }
    state.call(consumer, |c, ctx| c.on_end(ctx))?;
    Ok(outcome)
}

/// A recorded scan as the ledger takes it: the processes, and each one's
/// recorded vpid.
fn split_seed(procs: &[(ProcStat, u32)]) -> (Vec<ProcStat>, impl Fn(&ProcStat) -> u32) {
    let stats = procs.iter().map(|(st, _)| *st).collect();
    let vpids: FxHashMap<(u32, u64), u32> = procs
        .iter()
        .map(|(st, vpid)| ((st.pid, st.start_ticks), *vpid))
        .collect();
    let vpid_of = move |st: &ProcStat| {
        vpids
            .get(&(st.pid, st.start_ticks))
            .copied()
            .unwrap_or(st.pid)
    };
    (stats, vpid_of)
}

fn resync(
    ledger: &mut Ledger,
    now: Moment,
    procs: &[(ProcStat, u32)],
    emit: &mut impl FnMut(Change),
) {
    let (stats, vpid_of) = split_seed(procs);
    ledger.resync(&stats, now.boot_ns, vpid_of, emit);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    use super::*;
    use crate::host::facts::Identity;
    use crate::recording::compact::EventCodec;
    use crate::recording::records::{
        EndRecord, Kind, TickRecord, WireSizes, decode, encode_json, encode_moment, encode_procs,
    };
    use crate::render;
    use crate::views::incident::IncidentView;
    use crate::views::report::Filter;
    use crate::views::watch::WatchView;

    fn header() -> Header {
        Header {
            command: "record".to_owned(),
            tool_version: "test".to_owned(),
            host: Identity {
                kernel_release: "6.18".to_owned(),
                hostname: "host".to_owned(),
                boot_id: "id".to_owned(),
                user_hz: 100,
                pid_max: 32768,
                threads_max: 100_000,
            },
            tick_interval_ns: 1_000_000_000,
            started: Moment {
                boot_ns: 1_000,
                unix_ns: 1_800_000_000_000_000_000,
            },
            wire_sizes: WireSizes::current(),
            max_bytes: None,
            filter_flags: Vec::new(),
        }
    }

    /// Every view a report can show, fed at once.
    struct AllViews {
        watch: WatchView,
        incident: IncidentView,
        out: Vec<String>,
    }

    impl Consumer for AllViews {
        fn on_change(&mut self, change: &crate::model::Change) {
            self.watch.on_change(change);
            self.incident.on_change(change);
        }

        fn after_batch(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
            for alert in self.watch.alerts(ctx) {
                self.out.push(alert.to_text());
            }
            self.incident.after_batch(ctx)
        }

        fn on_tick(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
            let report = self.watch.report(ctx);
            self.out.push(serde_json::to_string(&report)?);
            self.out.push(report.to_text());
            self.incident.on_tick(ctx)
        }

        fn on_end(&mut self, ctx: &mut Context<'_>) -> io::Result<()> {
            self.on_tick(ctx)?;
            self.incident.on_end(ctx)
        }
    }

    /// Bytes from a small alphabet: PIDs, kinds and flags made of them
    /// collide often, so random events refer to each other.
    fn small_bytes(len: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 3, 0x40, 0xff]), len)
    }

    /// One record of any kind with a payload a damaged or hostile (but
    /// checksum-valid) file could hold.
    fn record() -> impl Strategy<Value = (u8, Vec<u8>)> {
        let sizes = WireSizes::current();
        let event = (1u32..=7, 0usize..7).prop_flat_map(move |(kind, pick)| {
            let len = [
                sizes.fork, sizes.exit, sizes.exec, sizes.wait, sizes.attr, sizes.free, 8,
            ][pick] as usize;
            small_bytes(len).prop_map(move |mut bytes| {
                if bytes.len() >= 4 {
                    bytes[..4].copy_from_slice(&kind.to_le_bytes());
                }
                (Kind::Event as u8, bytes)
            })
        });
        let scan =
            (prop::bool::ANY, small_bytes(45 * 6), any::<u64>()).prop_map(|(seed, bytes, t)| {
                let procs: Vec<(ProcStat, u32)> = bytes
                    .chunks(45)
                    .map(|c| {
                        let mut comm = [0u8; 16];
                        comm[..4].copy_from_slice(&c[9..13]);
                        (
                            ProcStat {
                                pid: u32::from(c[0]) + 1,
                                ppid: u32::from(c[1]),
                                state: if c[2] % 2 == 0 { 'Z' } else { 'S' },
                                comm,
                                start_ticks: u64::from(c[3]),
                                num_threads: u32::from(c[4]),
                                flags: u32::from(c[5]) << 2,
                            },
                            u32::from(c[6]) + 1,
                        )
                    })
                    .collect();
                let kind = if seed { Kind::Seed } else { Kind::Resync };
                let now = Moment {
                    boot_ns: t % 1_000_000_000_000,
                    unix_ns: t,
                };
                (kind as u8, encode_procs(now, &procs))
            });
        let moment = any::<u64>().prop_map(|t| {
            let mut out = Vec::new();
            encode_moment(
                &mut out,
                Moment {
                    boot_ns: t % 1_000_000_000_000,
                    unix_ns: t / 2,
                },
            );
            (Kind::Batch as u8, out)
        });
        let tick = (any::<u64>(), prop::bool::ANY).prop_map(|(t, end)| {
            let now = Moment {
                boot_ns: t % 1_000_000_000_000,
                unix_ns: t / 2,
            };
            let health = LedgerHealth::default();
            if end {
                (Kind::End as u8, encode_json(&EndRecord { now, health }))
            } else {
                let report = true;
                let tick = TickRecord {
                    now,
                    health,
                    report,
                };
                (Kind::Tick as u8, encode_json(&tick))
            }
        });
        let garbage = (any::<u8>(), small_bytes(24)).prop_map(|(k, b)| (k, b));
        // Compact events: a kind, then bytes a bitmap and deltas are made of.
        let compact =
            (1u8..=7, prop::collection::vec(small_bytes(1), 0..24)).prop_map(|(kind, bytes)| {
                let mut payload = vec![kind];
                payload.extend(bytes.into_iter().flatten());
                (Kind::CompactEvent as u8, payload)
            });
        prop_oneof![
            3 => event,
            2 => compact,
            1 => scan,
            2 => moment,
            2 => tick,
            1 => garbage
        ]
    }

    proptest! {
        #![proptest_config(Config {
            cases: 400,
            rng_seed: RngSeed::Fixed(0x2026_1201),
            failure_persistence: None,
            ..Config::default()
        })]

        /// Whatever a file holds, replaying it into every view and
        /// rendering every output never panics.
        #[test]
        fn any_records_replay_into_every_view_without_panic(
            records in prop::collection::vec(record(), 0..120),
            gaps in prop::collection::vec(0usize..120, 0..3),
        ) {
            let header = header();
            let mut events = EventCodec::new();
            let mut items: Vec<Item> = records
                .iter()
                .filter_map(|(kind, payload)| {
                    decode(*kind, payload, &mut events).ok().map(Item::Input)
                })
                .collect();
            for at in gaps {
                let at = at.min(items.len());
                items.insert(at, Item::Gap("damaged chunk".to_owned()));
            }
            let mut views = AllViews {
                watch: WatchView::new(Filter::default(), 2),
                incident: IncidentView::new(&header, Filter::default(), 2),
                out: Vec::new(),
            };
            let options = ReplayOptions {
                report_interval: Some(Duration::from_millis(500)),
                stop_at_boot_ns: None,
            };
            replay(&header, items, options, &mut views).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let timeline = views.incident.timeline(&["a note".to_owned()]);
            let _ = render::summary::render(&timeline);
            let _ = render::html::render(&timeline);
            let _ = render::perfetto::render(&timeline).to_string();
        }
    }
}
