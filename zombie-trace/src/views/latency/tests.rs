use super::*;
use crate::host::facts::NoHost;
use crate::model::TickClock;

const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const HOUR: u64 = 3_600_000_000_000;

fn hist(values: impl IntoIterator<Item = u64>) -> Histogram {
    let mut h = Histogram::default();
    for v in values {
        h.record(v);
    }
    h
}

/// |got - want| / want, in percent.
fn error_pct(got: u64, want: u64) -> f64 {
    (got as f64 - want as f64).abs() * 100.0 / want as f64
}

#[test]
fn buckets_tile_the_whole_u64_range() {
    let mut next = 0u64;
    for i in 0..BUCKETS {
        let (low, high) = bucket_bounds(i);
        assert_eq!(low, next, "bucket {i} starts where {} ended", i.max(1) - 1);
        assert!(high >= low);
        assert_eq!(bucket_index(low), i);
        assert_eq!(bucket_index(high), i);
        if high == u64::MAX {
            assert_eq!(i, BUCKETS - 1, "only the last bucket reaches u64::MAX");
            return;
        }
        next = high + 1;
    }
    panic!("the buckets stop before u64::MAX");
}

#[test]
fn small_values_are_exact_and_wide_buckets_are_narrow() {
    for v in 0..EXACT {
        assert_eq!(bucket_bounds(bucket_index(v)), (v, v));
    }
    // The first non-exact buckets are 2 ns wide.
    assert_eq!(bucket_bounds(bucket_index(64)), (64, 65));
    assert_eq!(bucket_bounds(bucket_index(127)), (126, 127));
    assert_eq!(bucket_bounds(bucket_index(128)), (128, 131));
    for i in EXACT as usize..BUCKETS {
        let (low, high) = bucket_bounds(i);
        let width = high - low + 1;
        assert!(
            width <= low / SUB,
            "bucket {i} [{low}, {high}] is wider than 1/{SUB} of its start"
        );
    }
}

#[test]
fn one_nanosecond_is_exact() {
    let h = hist([1]);
    assert_eq!(h.count(), 1);
    assert_eq!(h.percentile(0.5), Some(1));
    assert_eq!(h.percentile(0.99), Some(1));
    assert_eq!((h.min_ns(), h.max_ns()), (Some(1), Some(1)));
    let b = h.log2_us_buckets();
    assert_eq!(
        b,
        [Log2Bucket {
            low_us: 0,
            le_us: 1,
            count: 1
        }]
    );
}

#[test]
fn ten_hours_and_u64_max_do_not_overflow() {
    let ten_hours = 10 * HOUR;
    let h = hist([ten_hours, ten_hours + 1, ten_hours - 1]);
    let p50 = h.percentile(0.5).expect("p50");
    assert!(error_pct(p50, ten_hours) < 1.6, "p50 {p50}");
    assert_eq!(h.max_ns(), Some(ten_hours + 1));
    assert_eq!(h.mean_ns(), Some(ten_hours as f64));
    // 36e6 s = 36e9 us is in the 2^35 slot: wide bcc columns.
    let b = h.log2_us_buckets();
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].low_us, b[0].le_us, b[0].count),
        (1 << 35, (1 << 36) - 1, 3)
    );

    let mut h = hist([u64::MAX, u64::MAX, 0]);
    assert_eq!(h.count(), 3);
    assert_eq!(h.max_ns(), Some(u64::MAX));
    assert_eq!(h.percentile(1.0), Some(u64::MAX));
    assert!(error_pct(h.percentile(0.5).expect("p50"), u64::MAX) < 1.6);
    let b = h.log2_us_buckets();
    assert_eq!(b.first().map(|b| b.le_us), Some(1));
    assert_eq!(
        b.last().map(|b| (b.le_us, b.count)),
        Some(((1 << 55) - 1, 2))
    );
    assert!(
        h.render_log2_us()
            .contains(&format!("{}", (1u64 << 55) - 1))
    );
    h.reset();
    assert_eq!((h.count(), h.percentile(0.5), h.max_ns()), (0, None, None));
    assert!(h.log2_us_buckets().is_empty());
    assert!(h.used().all(|(_, c)| c == 0));
    assert!(h.blocks.iter().flatten().all(|b| b.iter().all(|&c| c == 0)));
}

#[test]
fn storage_grows_only_with_the_powers_of_two_seen() {
    let mut h = Histogram::default();
    assert_eq!(h.allocated_blocks(), 0);
    for i in 0..1000 {
        h.record(20 * MS + i * 100);
    }
    assert_eq!(
        h.allocated_blocks(),
        1,
        "20 ms +- 0.1 ms is one power of two"
    );
    h.record(5 * US);
    h.record(10 * HOUR);
    assert_eq!(h.allocated_blocks(), 3);
    assert_eq!(
        h.percentile(0.5)
            .map(|p| error_pct(p, 20 * MS + 50_000) < 1.6),
        Some(true)
    );
}

#[test]
fn percentiles_of_a_uniform_distribution() {
    // 1..=10_000 us.
    let h = hist((1..=10_000).map(|i| i * US));
    for (q, want) in [(0.5, 5_000 * US), (0.9, 9_000 * US), (0.99, 9_900 * US)] {
        let got = h.percentile(q).expect("percentile");
        assert!(
            error_pct(got, want) < 1.6,
            "p{} = {got} ns, want {want} ns",
            q * 100.0
        );
    }
    assert_eq!(h.percentile(1.0), Some(10_000 * US));
    assert_eq!(h.percentile(0.0), Some(US));
    assert_eq!(h.min_ns(), Some(US));
}

#[test]
fn percentiles_of_fixed_delays_and_a_bimodal_mix() {
    for delay in [20 * MS, 100 * MS, 500 * MS, 37 * US, 3 * HOUR] {
        // 100 values from delay to delay + 9.9 %: the 50th is delay + 4.9 %.
        let step = delay / 1000;
        let h = hist((0..100).map(|i| delay + i * step));
        let p50 = h.percentile(0.5).expect("p50");
        assert!(
            error_pct(p50, delay + 49 * step) < 1.6,
            "delay {delay}: p50 {p50}"
        );
    }
    // 90 fast (50 us), 10 slow (2 s): p50 fast, p99 slow, nothing in between.
    let h = hist((0..90).map(|_| 50 * US).chain((0..10).map(|_| 2_000 * MS)));
    assert_eq!(h.percentile(0.5), Some(50 * US));
    assert_eq!(h.percentile(0.9), Some(50 * US));
    for q in [0.91, 0.99] {
        let got = h.percentile(q).expect("percentile");
        assert!(error_pct(got, 2_000 * MS) < 1.6, "p{}: {got}", q * 100.0);
    }
    assert_eq!(h.percentile(1.0), Some(2_000 * MS));
}

#[test]
fn log2_buckets_follow_bcc() {
    // 0 and 999 ns are 0 whole microseconds: bcc's "0 -> 1" slot.
    let h = hist([
        0,
        999,
        1_000,
        1_999,
        2_000,
        3_999,
        64 * US,
        127_999,
        128 * US,
    ]);
    let b: Vec<(u64, u64, u64)> = h
        .log2_us_buckets()
        .iter()
        .map(|b| (b.low_us, b.le_us, b.count))
        .collect();
    assert_eq!(b[0], (0, 1, 4));
    assert_eq!(b[1], (2, 3, 2));
    assert_eq!(b[6], (64, 127, 2));
    assert_eq!(b[7], (128, 255, 1));
    assert_eq!(b.len(), 8);
    assert_eq!(b.iter().map(|b| b.2).sum::<u64>(), h.count());
}

#[test]
fn renders_like_bcc_runqlat() {
    let h = hist([0, 2_500, 2_600, 5_000, 5_000, 5_000, 5_000]);
    let text = h.render_log2_us();
    let expected = "     usecs               : count     distribution
         0 -> 1          : 1        |**********                              |
         2 -> 3          : 2        |********************                    |
         4 -> 7          : 4        |****************************************|
";
    assert_eq!(text, expected);
    assert_eq!(Histogram::default().render_log2_us(), "");
}

#[test]
fn reset_touches_only_used_buckets_and_empties_everything() {
    let mut h = hist([5, 7 * MS, 9 * HOUR]);
    assert_eq!(h.allocated_blocks(), 3);
    h.reset();
    assert!(h.blocks.iter().flatten().all(|b| b.iter().all(|&c| c == 0)));
    assert_eq!(h.allocated_blocks(), 3, "kept for reuse");
    h.record(42);
    assert_eq!((h.count(), h.min_ns(), h.max_ns()), (1, Some(42), Some(42)));
    assert_eq!(h.percentile(0.5), Some(42));
}

fn key(pid: u32) -> ProcKey {
    ProcKey {
        pid,
        start_ticks: 1000 + u64::from(pid),
    }
}

fn comm(name: &str) -> Comm {
    let mut c = [0u8; COMM_LEN];
    c[..name.len()].copy_from_slice(name.as_bytes());
    Comm(c)
}

fn released(reaper: u32, name: &str, how: ReapKind, exited: ExitTime, released_ns: u64) -> Change {
    Change::Released {
        reaper: key(reaper),
        reaper_comm: comm(name),
        child: key(reaper + 1),
        child_comm: comm("child"),
        how,
        exited,
        released_ns,
        pending: 0,
    }
}

#[test]
fn categories_are_separate_and_unknown_exits_are_not_latencies() {
    let mut view = LatencyView::new(GroupBy::Parent, Filter::default());
    let t0 = 1_000 * MS;
    for i in 0..10 {
        view.on_change(&released(
            100,
            "runner",
            ReapKind::ParentWait,
            ExitTime::At(t0 + i),
            t0 + i + 20 * MS,
        ));
    }
    for _ in 0..3 {
        view.on_change(&released(
            100,
            "runner",
            ReapKind::AdopterWait,
            ExitTime::At(t0),
            t0 + 5 * MS,
        ));
    }
    view.on_change(&released(
        100,
        "runner",
        ReapKind::ParentWait,
        ExitTime::BeforeStart,
        t0,
    ));
    view.on_change(&released(
        200,
        "ign",
        ReapKind::AutoReap,
        ExitTime::At(t0),
        t0,
    ));
    // Not releases: ignored.
    view.on_change(&Change::Exited {
        parent: key(100),
        parent_comm: comm("runner"),
        child: key(5),
        pending: 1,
    });

    let parent = view.find(ReapKind::ParentWait, 100).expect("parent_wait");
    assert_eq!(parent.latency.count(), 10);
    assert_eq!(parent.exit_time_unknown, 1);
    assert!(error_pct(parent.latency.percentile(0.5).expect("p50"), 20 * MS) < 1.6);
    let adopter = view.find(ReapKind::AdopterWait, 100).expect("adopter_wait");
    assert_eq!(adopter.latency.count(), 3);
    let auto = view.find(ReapKind::AutoReap, 200).expect("auto_reap");
    assert_eq!((auto.latency.count(), auto.latency.max_ns()), (1, Some(0)));
    assert_eq!(view.groups().count(), 3);

    let ledger = Ledger::new(crate::model::TickClock::new(100), 0, 16);
    let report = view.report(&ledger, moment(t0), 1.0, LostCounts::default(), &mut NoHost);
    assert_eq!(report.exit_time_unknown, 1);
    let cats: Vec<&str> = report.groups.iter().map(|g| g.category).collect();
    assert_eq!(cats, ["parent_wait", "auto_reap", "adopter_wait"]);
    let json = serde_json::to_value(&report).expect("JSON");
    let g = &json["groups"][0];
    for field in [
        "key", "pid", "comm", "count", "p50_us", "p90_us", "p99_us", "max_us", "buckets",
    ] {
        assert!(g.get(field).is_some(), "group misses {field}: {g}");
    }
    assert_eq!(g["key"], "100@1100");
    assert_eq!(g["count"], 10);
    assert_eq!(g["exit_time_unknown"], 1);
    assert_eq!(g["buckets"][0]["le_us"], 32767);
    assert_eq!(g["buckets"][0]["count"], 10);
    assert!(json["not_reaped"].as_array().is_some());
    let text = report.to_text();
    assert!(text.contains("parent_wait: pid 100 (runner)"), "{text}");
    assert!(text.contains("exit time unknown: 1"), "{text}");
    assert!(text.contains("16384 -> 32767"), "{text}");
}

#[test]
fn a_group_of_unknown_exits_only_has_no_percentiles() {
    let mut view = LatencyView::new(GroupBy::Parent, Filter::default());
    view.on_change(&released(
        7,
        "old",
        ReapKind::ParentWait,
        ExitTime::BeforeStart,
        5,
    ));
    let ledger = Ledger::new(crate::model::TickClock::new(100), 0, 16);
    let report = view.report(&ledger, moment(10), 1.0, LostCounts::default(), &mut NoHost);
    let json = serde_json::to_value(&report).expect("JSON");
    let g = &json["groups"][0];
    assert_eq!(g["count"], 0);
    assert_eq!(g["exit_time_unknown"], 1);
    assert!(g["p50_us"].is_null() && g["max_us"].is_null());
    assert_eq!(g["buckets"], serde_json::json!([]));
}

#[test]
fn by_comm_merges_parents_and_the_filter_selects_reapers() {
    let filter = Filter {
        comm: Some("work".to_owned()),
        ..Filter::default()
    };
    let mut view = LatencyView::new(GroupBy::Comm, filter);
    for pid in [10, 20, 30] {
        view.on_change(&released(
            pid,
            "worker",
            ReapKind::ParentWait,
            ExitTime::At(0),
            u64::from(pid) * MS,
        ));
    }
    view.on_change(&released(
        40,
        "other",
        ReapKind::ParentWait,
        ExitTime::At(0),
        MS,
    ));
    let groups: Vec<&Group> = view.groups().collect();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].parent, None);
    assert_eq!(groups[0].comm.as_str_lossy(), "worker");
    assert_eq!(groups[0].latency.count(), 3);
    assert_eq!(groups[0].latency.max_ns(), Some(30 * MS));

    let by_pid = Filter {
        pid: Some(20),
        ..Filter::default()
    };
    let mut view = LatencyView::new(GroupBy::Parent, by_pid);
    for pid in [10, 20] {
        view.on_change(&released(
            pid,
            "w",
            ReapKind::ParentWait,
            ExitTime::At(0),
            MS,
        ));
    }
    assert_eq!(view.groups().count(), 1);
    assert!(view.find(ReapKind::ParentWait, 20).is_some());
}

#[test]
fn merging_histograms_equals_recording_every_value_in_one() {
    let (a, b) = ([3, 70, 5 * US, 9 * MS], [1, 64 * US, 2 * HOUR]);
    let mut merged = hist(a);
    merged.merge(&hist(b));
    merged.merge(&Histogram::default());
    let whole = hist(a.into_iter().chain(b));
    assert_eq!(merged.count(), whole.count());
    assert_eq!(
        (merged.min_ns(), merged.max_ns()),
        (whole.min_ns(), whole.max_ns())
    );
    assert_eq!(merged.mean_ns(), whole.mean_ns());
    for q in [0.1, 0.5, 0.9, 0.99] {
        assert_eq!(merged.percentile(q), whole.percentile(q), "quantile {q}");
    }
    assert_eq!(merged.log2_us_buckets(), whole.log2_us_buckets());
    let mut into_empty = Histogram::default();
    into_empty.merge(&whole);
    assert_eq!(into_empty.percentile(0.5), whole.percentile(0.5));
    assert_eq!(into_empty.min_ns(), Some(1));
}

/// Where each reaper runs, as a live host would read it: reapers not listed
/// are gone.
struct Places(Vec<(ProcKey, Attribution)>, u32);

impl HostFacts for Places {
    fn process(&mut self, _pid: u32) -> Option<crate::host::facts::ProcFacts> {
        None
    }
    fn pid_pressure(&mut self, _pid: Option<u32>) -> crate::host::pressure::PidPressure {
        crate::host::pressure::PidPressure::unknown()
    }
    fn pressure(&mut self) -> Option<crate::host::facts::Pressure> {
        None
    }
    fn attribution(&mut self, key: ProcKey) -> Option<Attribution> {
        self.1 += 1;
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, a)| a.clone())
    }
}

const DOCKER_A: &str = "0::/system.slice/docker-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.scope\n";
const DOCKER_B: &str = "0::/system.slice/docker-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.scope\n";
const CRON: &str = "0::/system.slice/cron.service\n";

/// Reapers 10 and 20 in container A, 30 in container B, 40 in cron (no
/// container), 50 gone before its place is read.
fn placed_host() -> Places {
    Places(
        vec![
            (key(10), Attribution::parse(DOCKER_A)),
            (key(20), Attribution::parse(DOCKER_A)),
            (key(30), Attribution::parse(DOCKER_B)),
            (key(40), Attribution::parse(CRON)),
        ],
        0,
    )
}

fn release_from(view: &mut LatencyView, pids: &[u32], latency_ns: u64) {
    for &pid in pids {
        view.on_change(&released(
            pid,
            "reaper",
            ReapKind::ParentWait,
            ExitTime::At(HOUR),
            HOUR + latency_ns,
        ));
    }
}

#[test]
fn by_container_merges_reapers_of_one_container_and_never_guesses_a_gone_one() {
    let mut host = placed_host();
    let mut view = LatencyView::new(GroupBy::Container, Filter::default());
    release_from(&mut view, &[10, 20, 30, 40, 50], MS);
    assert_eq!(
        view.groups().count(),
        0,
        "nothing is grouped before the places are read"
    );
    view.place_reapers(&mut host);
    assert_eq!(host.1, 5, "each reaper's place is read once");
    // Later releases go straight to their groups, without another read.
    release_from(&mut view, &[10, 30], 3 * MS);
    view.place_reapers(&mut host);
    assert_eq!(host.1, 5);

    let ledger = Ledger::new(TickClock::new(100), 0, 16);
    let report = view.report(&ledger, moment(HOUR), 1.0, LostCounts::default(), &mut host);
    let count_of = |key: &str| {
        report
            .groups
            .iter()
            .find(|g| g.key == key)
            .map(|g| g.count)
            .unwrap_or_else(|| panic!("no group {key} in {:?}", report.groups))
    };
    assert_eq!(
        count_of(&"a".repeat(64)),
        3,
        "reapers 10 and 20, then 10 again"
    );
    assert_eq!(count_of(&"b".repeat(64)), 2);
    assert_eq!(count_of("none"), 1, "cron runs in no container");
    assert_eq!(count_of("unknown"), 1, "reaper 50 was gone");
    assert_eq!(report.groups.len(), 4);
    let a = report
        .groups
        .iter()
        .find(|g| g.key.starts_with('a'))
        .expect("group a");
    assert_eq!(a.container_runtime, Some("docker"));
    assert_eq!(a.pid, None);
    assert_eq!(report.not_attributed, 0);
    let text = report.to_text();
    assert!(
        text.contains("container aaaaaaaaaaaa (docker), latest reaper reaper"),
        "{text}"
    );
    assert!(
        text.contains("place unknown (the reapers exited before their cgroup was read)"),
        "{text}"
    );
    assert!(text.contains("no container, latest reaper"), "{text}");

    let mut by_unit = LatencyView::new(GroupBy::Unit, Filter::default());
    release_from(&mut by_unit, &[10, 40], MS);
    let report = by_unit.report(
        &ledger,
        moment(HOUR),
        1.0,
        LostCounts::default(),
        &mut placed_host(),
    );
    let keys: Vec<&str> = report.groups.iter().map(|g| g.key.as_str()).collect();
    assert!(keys.contains(&"cron.service"), "{keys:?}");
    assert!(
        keys.contains(&format!("docker-{}.scope", "a".repeat(64)).as_str()),
        "{keys:?}"
    );

    let pod = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_0000_4000_8000_00000000abcd.slice/cri-containerd-cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc.scope\n";
    let mut by_pod = LatencyView::new(GroupBy::Pod, Filter::default());
    release_from(&mut by_pod, &[60, 40], MS);
    let mut host = Places(
        vec![
            (key(60), Attribution::parse(pod)),
            (key(40), Attribution::parse(CRON)),
        ],
        0,
    );
    let report = by_pod.report(&ledger, moment(HOUR), 1.0, LostCounts::default(), &mut host);
    let in_pod = report
        .groups
        .iter()
        .find(|g| g.key == "1b2c3d4e-0000-4000-8000-00000000abcd")
        .unwrap_or_else(|| panic!("no pod group in {:?}", report.groups));
    assert_eq!((in_pod.count, in_pod.qos_class), (1, Some("burstable")));
    assert!(
        report
            .to_text()
            .contains("pod 1b2c3d4e-0000-4000-8000-00000000abcd (burstable)")
    );
    assert!(report.to_text().contains("no pod, latest reaper"));
}

#[test]
fn a_place_filter_keeps_its_reapers_and_says_what_it_could_not_place() {
    let filter = Filter {
        container: Some("aaaa".to_owned()),
        ..Filter::default()
    };
    let mut host = placed_host();
    let mut view = LatencyView::new(GroupBy::Parent, filter);
    release_from(&mut view, &[10, 20, 30, 40, 50], MS);
    view.place_reapers(&mut host);
    // Known verdicts apply on the hot path: 50 stays unplaced, 30 refused.
    release_from(&mut view, &[50, 30, 10], MS);
    let ledger = Ledger::new(TickClock::new(100), 0, 16);
    let report = view.report(&ledger, moment(HOUR), 1.0, LostCounts::default(), &mut host);
    let pids: Vec<Option<u32>> = report.groups.iter().map(|g| g.pid).collect();
    assert_eq!(report.groups.len(), 2, "{pids:?}");
    assert!(
        pids.contains(&Some(10)) && pids.contains(&Some(20)),
        "{pids:?}"
    );
    assert_eq!(
        view.find(ReapKind::ParentWait, 10)
            .map(|g| g.latency.count()),
        Some(2)
    );
    assert_eq!(report.not_attributed, 2, "reaper 50's two releases");
    assert!(
        report.to_text().contains("not counted: 2 releases"),
        "{}",
        report.to_text()
    );
}

#[test]
fn interval_latency_counts_own_waits_and_resets() {
    let mut interval = IntervalLatency::default();
    for i in 1..=100 {
        interval.on_change(&released(
            1,
            "p",
            ReapKind::ParentWait,
            ExitTime::At(0),
            i * MS,
        ));
    }
    // Neither adopted zombies nor kernel releases nor unknown exits count.
    interval.on_change(&released(
        1,
        "p",
        ReapKind::AdopterWait,
        ExitTime::At(0),
        HOUR,
    ));
    interval.on_change(&released(1, "p", ReapKind::AutoReap, ExitTime::At(0), HOUR));
    interval.on_change(&released(
        1,
        "p",
        ReapKind::ParentWait,
        ExitTime::BeforeStart,
        HOUR,
    ));
    let h = interval.get(&key(1)).expect("parent 1");
    assert_eq!(h.count(), 100);
    assert_eq!(h.max_ns(), Some(100 * MS));

    let row = |pid: u32| ParentRow {
        pid,
        comm: "p".to_owned(),
        start_ticks: key(pid).start_ticks,
        pending_zombies: 1,
        zombies_before_start: 0,
        oldest_zombie_age_ms: 0,
        oldest_zombie_age_exact: true,
        forks: 0,
        exits: 0,
        reaped: 0,
        auto_reaped: 0,
        adopted: 0,
        wait_calls: 0,
        reap_latency_p99_us: None,
        reap_latency_max_us: None,
        cgroup: None,
        unit: None,
        container_id: None,
        container_runtime: None,
        pod_uid: None,
        qos_class: None,
        pod: None,
        namespace: None,
        container: None,
        pid_in_namespace: None,
    };
    let mut rows = [row(1), row(9)];
    interval.annotate(&mut rows);
    assert_eq!(rows[0].reap_latency_max_us, Some(100_000.0));
    let p99 = rows[0].reap_latency_p99_us.expect("p99");
    assert!((p99 - 99_000.0).abs() < 99_000.0 * 0.016, "p99 {p99}");
    assert_eq!(
        (rows[1].reap_latency_p99_us, rows[1].reap_latency_max_us),
        (None, None),
        "reaped nothing: null"
    );

    interval.reset();
    assert!(
        interval.get(&key(1)).is_none(),
        "a new interval starts empty"
    );
    interval.on_change(&released(
        1,
        "p",
        ReapKind::ParentWait,
        ExitTime::At(0),
        3 * MS,
    ));
    assert_eq!(
        interval.get(&key(1)).map(Histogram::max_ns),
        Some(Some(3 * MS))
    );
    interval.reset();
    interval.reset();
    assert!(
        interval.by_parent.is_empty(),
        "idle parents give their histogram back"
    );
    assert_eq!(interval.spare.len(), 1);
    interval.on_change(&released(2, "q", ReapKind::ParentWait, ExitTime::At(0), MS));
    assert!(interval.spare.is_empty(), "the spare histogram is reused");
}

/// A clock reading at `boot_ns`, with the wall clock a fixed day later.
fn moment(boot_ns: u64) -> crate::model::Moment {
    crate::model::Moment {
        boot_ns,
        unix_ns: 1_790_000_000_000_000_000 + boot_ns,
    }
}
