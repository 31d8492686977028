//! Statistics over the bench's repeated rounds: medians and percentiles,
//! the spread of a set of values, per-round (pairwise) ratios and the
//! one-line stability statement of a figure.

use std::fmt::Write as _;

/// The median; `None` for no values.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Nearest-rank percentile, `q` in 0..=1; 0 for no values.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Quantile `q` (0..=1) of sorted, non-empty values, interpolated linearly
/// between the closest ranks (the usual "type 7" definition).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = pos.floor() as usize;
    let above = pos.ceil() as usize;
    sorted[below] + (sorted[above] - sorted[below]) * (pos - below as f64)
}

/// Median, extremes and quartiles of a set of measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// First and third quartiles.
    pub q1: f64,
    pub q3: f64,
}

impl Summary {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            n: sorted.len(),
            median: quantile(&sorted, 0.5),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            q1: quantile(&sorted, 0.25),
            q3: quantile(&sorted, 0.75),
        })
    }

    /// Interquartile range, in the values' unit.
    pub fn iqr(&self) -> f64 {
        self.q3 - self.q1
    }

    /// The whole range relative to the median: (max − min) / median.
    pub fn spread(&self) -> f64 {
        if self.median == 0.0 {
            return 0.0;
        }
        (self.max - self.min) / self.median.abs()
    }

    /// "median M, min A, max B (N nouns)", each value written by `fmt`.
    pub fn describe(&self, noun: &str, fmt: impl Fn(f64) -> String) -> String {
        format!(
            "median {}, min {}, max {} ({} {noun}{})",
            fmt(self.median),
            fmt(self.min),
            fmt(self.max),
            self.n,
            plural(self.n)
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A figure's target on its ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    pub fn met(self, value: f64) -> bool {
        match self {
            Target::AtMost(limit) => value <= limit,
            Target::AtLeast(limit) => value >= limit,
        }
    }

    fn describe(self) -> String {
        match self {
            Target::AtMost(limit) => format!("≤ {limit}"),
            Target::AtLeast(limit) => format!("≥ {limit}"),
        }
    }
}

/// One storm's figure: which arm (tracer) of which round measured it, and
/// whether the host was calm before it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<A> {
    pub round: usize,
    pub arm: A,
    pub value: f64,
    pub calm: bool,
}

/// The ratio of two arms' values in one round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    pub round: usize,
    pub ratio: f64,
    /// Both storms of the pair had a calm host.
    pub calm: bool,
}

/// Per-round ratios of `num` to `den`, and the rounds where that ratio
/// could not be formed (an arm missing or a zero denominator).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pairing {
    pub pairs: Vec<Pair>,
    pub unpaired: Vec<usize>,
}

impl Pairing {
    /// The values of one arm alone, each as its round's "ratio": the
    /// stability of a figure whose reference is missing.
    pub fn alone<A: Copy + PartialEq>(samples: &[Sample<A>], arm: A) -> Self {
        Self {
            pairs: samples
                .iter()
                .filter(|s| s.arm == arm)
                .map(|s| Pair {
                    round: s.round,
                    ratio: s.value,
                    calm: s.calm,
                })
                .collect(),
            unpaired: Vec::new(),
        }
    }

    /// "r1 0.98, r2 1.01, …": each round's ratio, rounds numbered from 1,
    /// with a `*` on rounds without a calm host.
    pub fn list(&self, fmt: impl Fn(f64) -> String) -> String {
        self.pairs
            .iter()
            .map(|p| {
                format!(
                    "r{} {}{}",
                    p.round + 1,
                    fmt(p.ratio),
                    if p.calm { "" } else { "*" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn ratios(&self) -> Vec<f64> {
        self.pairs.iter().map(|p| p.ratio).collect()
    }

    pub fn summary(&self) -> Option<Summary> {
        Summary::of(&self.ratios())
    }
}

/// Pairs each round's `num` sample with the same round's `den` sample (the
/// runs of a round are neighbours in time, so a drift of the host's speed
/// between rounds cancels out of the ratio). Rounds in order of first
/// appearance; a round with either arm missing (or measured twice) is
/// listed as unpaired, never dropped silently.
pub fn pair_rounds<A: Copy + PartialEq>(samples: &[Sample<A>], num: A, den: A) -> Pairing {
    let mut rounds: Vec<usize> = Vec::new();
    for sample in samples {
        if !rounds.contains(&sample.round) {
            rounds.push(sample.round);
        }
    }
    let mut pairing = Pairing::default();
    for round in rounds {
        let of = |arm: A| -> Vec<&Sample<A>> {
            samples
                .iter()
                .filter(|s| s.round == round && s.arm == arm)
                .collect()
        };
        let (n, d) = (of(num), of(den));
        match (n.as_slice(), d.as_slice()) {
            ([n], [d]) if d.value != 0.0 => pairing.pairs.push(Pair {
                round,
                ratio: n.value / d.value,
                calm: n.calm && d.calm,
            }),
            // Rounds with only other arms have nothing to pair.
            ([], []) => {}
            _ => pairing.unpaired.push(round),
        }
    }
    pairing
}

/// The confidence with which the smallest and largest of `n` independent
/// samples enclose the median of their distribution: all `n` fall on one
/// side of it with probability 2 × 2⁻ⁿ, so 1 − 2¹⁻ⁿ (98.4% for 7).
pub fn median_confidence(n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    1.0 - 0.5f64.powi(i32::try_from(n - 1).unwrap_or(i32::MAX))
}

/// The one-line stability statement of a figure, from its per-round
/// ratios: their range and spread, and whether every round is on the same
/// side of the target as the median (the verdict) or the verdict depends
/// on the run: when all rounds are on one side, min–max (a confidence
/// interval for the median, see [`median_confidence`]) excludes the target.
/// `fmt` writes one ratio.
pub fn stability(
    what: &str,
    pairing: &Pairing,
    target: Option<Target>,
    fmt: impl Fn(f64) -> String,
) -> String {
    let Some(s) = pairing.summary() else {
        return format!("{what}: no round gave a ratio, so no statement on its stability");
    };
    let mut line = format!(
        "{what} {}–{} over {} round{} (median {}, IQR {}, spread {:.0}%; if the rounds are \
         independent, min–max holds the true median with {:.0}% confidence)",
        fmt(s.min),
        fmt(s.max),
        s.n,
        plural(s.n),
        fmt(s.median),
        fmt(s.iqr()),
        s.spread() * 100.0,
        median_confidence(s.n) * 100.0
    );
    if let Some(target) = target {
        let met = pairing.pairs.iter().filter(|p| target.met(p.ratio)).count();
        let verdict = if target.met(s.median) { "PASS" } else { "MISS" };
        let goal = target.describe();
        if met == s.n {
            let _ = write!(
                line,
                "; all {} rounds meet {goal}: the {verdict} is stable",
                s.n
            );
        } else if met == 0 {
            let _ = write!(
                line,
                "; none of the {} rounds meets {goal}: the {verdict} is stable",
                s.n
            );
        } else {
            let _ = write!(
                line,
                "; {met} of {} rounds meet {goal}: the {verdict} (from the median) is not \
                 stable, another run may give the other verdict",
                s.n
            );
        }
    }
    let busy = pairing.pairs.iter().filter(|p| !p.calm).count();
    if busy > 0 {
        let calm: Vec<f64> = pairing
            .pairs
            .iter()
            .filter(|p| p.calm)
            .map(|p| p.ratio)
            .collect();
        let _ = write!(
            line,
            "; {busy} round{} without a calm host (counted; ",
            plural(busy)
        );
        let _ = match median(calm.clone()) {
            Some(m) => write!(
                line,
                "the calm rounds alone: median {} over {})",
                fmt(m),
                calm.len()
            ),
            None => write!(line, "no calm round)"),
        };
    }
    if !pairing.unpaired.is_empty() {
        let _ = write!(
            line,
            "; round(s) {:?} without a pair (not in the ratio)",
            pairing
                .unpaired
                .iter()
                .map(|r| r + 1)
                .collect::<Vec<usize>>()
        );
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn summary_of_values() {
        assert_eq!(Summary::of(&[]), None);
        let one = Summary::of(&[2.0]);
        assert_eq!(
            one,
            Some(Summary {
                n: 1,
                median: 2.0,
                min: 2.0,
                max: 2.0,
                q1: 2.0,
                q3: 2.0
            })
        );
        assert_eq!(one.map(|s| (s.iqr(), s.spread())), Some((0.0, 0.0)));
        // Unsorted input; quartiles interpolated between ranks.
        let s = Summary::of(&[5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!(
            s,
            Some(Summary {
                n: 5,
                median: 3.0,
                min: 1.0,
                max: 5.0,
                q1: 2.0,
                q3: 4.0
            })
        );
        assert_eq!(s.map(|s| (s.iqr(), s.spread())), Some((2.0, 4.0 / 3.0)));
        let even = Summary::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            even.map(|s| (s.median, s.q1, s.q3)),
            Some((2.5, 1.75, 3.25))
        );
        assert_eq!(
            Summary::of(&[0.0, 0.0]).map(|s| s.spread()),
            Some(0.0),
            "no division by a zero median"
        );
        assert_eq!(
            even.map(|s| s.describe("run", |v| format!("{v:.1}"))),
            Some("median 2.5, min 1.0, max 4.0 (4 runs)".to_owned())
        );
        assert_eq!(
            one.map(|s| s.describe("round", |v| format!("{v:.0}"))),
            Some("median 2, min 2, max 2 (1 round)".to_owned())
        );
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Arm {
        Base,
        Traced,
        Other,
    }

    fn sample(round: usize, arm: Arm, value: f64) -> Sample<Arm> {
        Sample {
            round,
            arm,
            value,
            calm: true,
        }
    }

    #[test]
    fn pairs_within_each_round() {
        let mut samples = vec![
            sample(0, Arm::Base, 100.0),
            sample(0, Arm::Traced, 98.0),
            sample(0, Arm::Other, 1.0),
            // Order within a round does not matter.
            sample(1, Arm::Traced, 90.0),
            sample(1, Arm::Base, 100.0),
            // Only one side: unpaired, not dropped silently.
            sample(2, Arm::Base, 100.0),
            // A zero denominator cannot give a ratio.
            sample(3, Arm::Base, 0.0),
            sample(3, Arm::Traced, 5.0),
            // Neither side: nothing to pair.
            sample(4, Arm::Other, 3.0),
        ];
        samples[4].calm = false;
        let pairing = pair_rounds(&samples, Arm::Traced, Arm::Base);
        assert_eq!(
            pairing.pairs,
            [
                Pair {
                    round: 0,
                    ratio: 0.98,
                    calm: true
                },
                Pair {
                    round: 1,
                    ratio: 0.9,
                    calm: false
                },
            ]
        );
        assert_eq!(pairing.unpaired, [2, 3]);
        assert_eq!(pairing.ratios(), [0.98, 0.9]);
        assert_eq!(pairing.list(|v| format!("{v:.2}")), "r1 0.98, r2 0.90*");
        assert_eq!(pairing.summary().map(|s| s.n), Some(2));
        // Another pair of arms from the same samples.
        let other = pair_rounds(&samples, Arm::Other, Arm::Base);
        assert_eq!(other.ratios(), [0.01]);
        assert_eq!(other.unpaired, [1, 2, 3, 4]);
    }

    #[test]
    fn one_arm_alone() {
        let samples = [
            sample(0, Arm::Base, 10.0),
            sample(0, Arm::Traced, 5.0),
            sample(1, Arm::Traced, 7.0),
        ];
        let alone = Pairing::alone(&samples, Arm::Traced);
        assert_eq!(alone.ratios(), [5.0, 7.0]);
        assert_eq!(alone.pairs[1].round, 1);
        assert!(alone.unpaired.is_empty());
    }

    #[test]
    fn a_round_measured_twice_is_unpaired() {
        let samples = [
            sample(0, Arm::Base, 10.0),
            sample(0, Arm::Traced, 5.0),
            sample(0, Arm::Traced, 6.0),
        ];
        let pairing = pair_rounds(&samples, Arm::Traced, Arm::Base);
        assert!(pairing.pairs.is_empty());
        assert_eq!(pairing.unpaired, [0]);
    }

    fn pairing_of(ratios: &[f64]) -> Pairing {
        Pairing {
            pairs: ratios
                .iter()
                .enumerate()
                .map(|(round, &ratio)| Pair {
                    round,
                    ratio,
                    calm: true,
                })
                .collect(),
            unpaired: Vec::new(),
        }
    }

    #[test]
    fn targets() {
        assert!(Target::AtLeast(0.99).met(0.99) && !Target::AtLeast(0.99).met(0.989));
        assert!(Target::AtMost(0.5).met(0.5) && !Target::AtMost(0.5).met(0.51));
        assert_eq!(Target::AtLeast(0.99).describe(), "≥ 0.99");
        assert_eq!(Target::AtMost(0.5).describe(), "≤ 0.5");
    }

    #[test]
    fn confidence_of_min_max_for_the_median() {
        assert_eq!(median_confidence(0), 0.0);
        assert_eq!(median_confidence(1), 0.0);
        assert_eq!(median_confidence(2), 0.5);
        assert_eq!(median_confidence(7), 1.0 - 1.0 / 64.0);
        assert!(median_confidence(100) < 1.0 + f64::EPSILON);
    }

    #[test]
    fn stability_statements() {
        let fmt = |v: f64| format!("{v:.2}");
        let stable = stability(
            "ratio",
            &pairing_of(&[0.99, 1.0, 1.01, 0.995, 1.0]),
            Some(Target::AtLeast(0.99)),
            |v| format!("{v:.3}"),
        );
        assert_eq!(
            stable,
            "ratio 0.990–1.010 over 5 rounds (median 1.000, IQR 0.005, spread 2%; if the rounds \
             are independent, min–max holds the true median with 94% confidence); all 5 rounds \
             meet ≥ 0.99: the PASS is stable"
        );
        let miss = stability(
            "ratio",
            &pairing_of(&[4.0, 5.0, 4.5]),
            Some(Target::AtMost(0.5)),
            fmt,
        );
        assert!(miss.contains("none of the 3 rounds meets ≤ 0.5: the MISS is stable"));
        assert!(miss.contains("spread 22%"), "{miss}");

        let mut mixed = pairing_of(&[0.97, 0.985, 0.996, 1.0]);
        mixed.pairs[0].calm = false;
        mixed.unpaired.push(4);
        let mixed = stability("ratio", &mixed, Some(Target::AtLeast(0.99)), |v| {
            format!("{v:.3}")
        });
        assert!(
            mixed.contains("2 of 4 rounds meet ≥ 0.99: the PASS (from the median) is not stable"),
            "{mixed}"
        );
        assert!(
            mixed.contains(
                "1 round without a calm host (counted; the calm rounds alone: median 0.996 over 3)"
            ),
            "{mixed}"
        );
        assert!(mixed.contains("round(s) [5] without a pair"));

        let no_target = stability("cost", &pairing_of(&[1.0, 1.1]), None, fmt);
        assert_eq!(
            no_target,
            "cost 1.00–1.10 over 2 rounds (median 1.05, IQR 0.05, spread 10%; if the rounds are \
             independent, min–max holds the true median with 50% confidence)"
        );
        assert!(stability("ratio", &Pairing::default(), None, fmt).contains("no round"));
        let mut all_busy = pairing_of(&[1.0]);
        all_busy.pairs[0].calm = false;
        assert!(stability("ratio", &all_busy, None, fmt).ends_with("(counted; no calm round)"));
    }
}
