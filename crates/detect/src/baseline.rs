//! Decayed, bounded statistics of one connector's behaviour, and the tail probabilities the
//! scorers read from them.
//!
//! Everything decays with one half-life (default 14 days) so a connector's habits can change,
//! and every map is capped so a connector that sprays addresses cannot grow its baseline without
//! bound (the lightest entries are dropped first).

use serde::{Deserialize, Serialize};
use std::cell::{Cell, OnceCell};
use std::collections::BTreeMap;

/// Seconds.
pub type Secs = i64;

fn decay(value: f64, from: Secs, to: Secs, half_life: f64) -> f64 {
    if to <= from {
        return value;
    }
    value * (-(to - from) as f64 * std::f64::consts::LN_2 / half_life).exp()
}

/// A reading computed from a statistic when first asked for and kept until the statistic
/// next changes (scoring asks the same questions of a baseline many times between two sessions
/// that change it). Not part of the state: never serialized nor compared, and a copy starts
/// without it.
struct Kept<T>(OnceCell<T>);

impl<T> Kept<T> {
    fn get_or(&self, compute: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(compute)
    }

    fn clear(&mut self) {
        self.0.take();
    }
}

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept(OnceCell::new())
    }
}

impl<T> Clone for Kept<T> {
    fn clone(&self) -> Self {
        Kept::default()
    }
}

impl<T> PartialEq for Kept<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> std::fmt::Debug for Kept<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kept")
    }
}

/// A decayed count.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Decayed {
    value: f64,
    at: Secs,
}

impl Decayed {
    /// The count at `now`.
    pub fn get(&self, now: Secs, half_life: f64) -> f64 {
        decay(self.value, self.at, now, half_life)
    }

    /// Adds `x` at `now`.
    pub fn add(&mut self, x: f64, now: Secs, half_life: f64) {
        let now = now.max(self.at);
        self.value = decay(self.value, self.at, now, half_life) + x;
        self.at = now;
    }
}

/// One value's history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Seen {
    /// Decayed count.
    pub count: Decayed,
    /// First seen.
    pub first: Secs,
    /// Last seen.
    pub last: Secs,
}

/// Counts of a categorical value (an IP, a prefix, an ASN, a country, a user agent) with
/// first-seen times, and how often a never-seen value turned up after the learning period.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ValueCounts {
    values: BTreeMap<String, Seen>,
    total: Decayed,
    novel: Decayed,
    mature: Decayed,
}

/// The tail probability of a categorical observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Rarity {
    /// Probability of a value at least this rare.
    pub p: f64,
    /// Never seen before.
    pub first_seen: bool,
    /// Its decayed count.
    pub count: f64,
    /// Total decayed count.
    pub total: f64,
    /// Distinct values known.
    pub distinct: usize,
}

impl ValueCounts {
    /// Records one observation; returns true when the value was new. `learning`
    /// observations do not count towards the novelty rate (everything is new at first).
    pub fn observe(
        &mut self,
        value: &str,
        now: Secs,
        half_life: f64,
        learning: bool,
        cap: usize,
    ) -> bool {
        self.total.add(1.0, now, half_life);
        if !learning {
            self.mature.add(1.0, now, half_life);
        }
        match self.values.get_mut(value) {
            Some(seen) => {
                seen.count.add(1.0, now, half_life);
                seen.last = seen.last.max(now);
                false
            }
            None => {
                if !learning {
                    self.novel.add(1.0, now, half_life);
                }
                if self.values.len() >= cap {
                    self.evict(now, half_life);
                }
                let mut count = Decayed::default();
                count.add(1.0, now, half_life);
                self.values.insert(
                    value.to_owned(),
                    Seen {
                        count,
                        first: now,
                        last: now,
                    },
                );
                true
            }
        }
    }

    /// Probability that a never-seen value turns up, shrunk toward `pooled_rate` (the rate
    /// across all connectors) with the weight of `k` observations: a connector that rarely
    /// sees new values borrows the population's (small) rate instead of the 1/n floor of its
    /// own short history, and a connector that often does keeps its own (large) rate.
    pub fn novelty(&self, now: Secs, half_life: f64, pooled_rate: f64, k: f64) -> f64 {
        let novel = self.novel.get(now, half_life);
        let mature = self.mature.get(now, half_life);
        ((novel + k * pooled_rate) / (mature + k)).clamp(1e-12, 1.0)
    }

    fn evict(&mut self, now: Secs, half_life: f64) {
        let lightest = self
            .values
            .iter()
            .min_by(|a, b| {
                a.1.count
                    .get(now, half_life)
                    .total_cmp(&b.1.count.get(now, half_life))
                    .then_with(|| a.0.cmp(b.0))
            })
            .map(|(k, _)| k.clone());
        if let Some(k) = lightest {
            self.values.remove(&k);
        }
    }

    /// Is `value` known?
    pub fn get(&self, value: &str) -> Option<&Seen> {
        self.values.get(value)
    }

    /// Distinct values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when nothing was observed.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The most frequent values, heaviest first.
    pub fn top(&self, n: usize, now: Secs, half_life: f64) -> Vec<(String, f64)> {
        let mut all: Vec<(String, f64)> = self
            .values
            .iter()
            .map(|(k, s)| (k.clone(), s.count.get(now, half_life)))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// Rarity of `value`: for a known value the share of observations whose value is at most
    /// as frequent; for a new one the rate at which new values appeared after learning
    /// (Good–Turing with a half-count prior).
    pub fn rarity(&self, value: &str, now: Secs, half_life: f64) -> Rarity {
        let total = self.total.get(now, half_life);
        let distinct = self.values.len();
        match self.values.get(value) {
            None => Rarity {
                p: ((self.novel.get(now, half_life) + 0.5) / (total + 1.0)).min(1.0),
                first_seen: true,
                count: 0.0,
                total,
                distinct,
            },
            Some(seen) => {
                let c = seen.count.get(now, half_life);
                let at_most: f64 = self
                    .values
                    .values()
                    .map(|s| s.count.get(now, half_life))
                    .filter(|&x| x <= c * (1.0 + 1e-9))
                    .sum();
                Rarity {
                    p: ((at_most + 0.5) / (total + 1.0)).min(1.0),
                    first_seen: false,
                    count: c,
                    total,
                    distinct,
                }
            }
        }
    }
}

/// A decayed histogram of log2(x + 1) in half-octave bins, read as a robust log-normal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogHistogram {
    bins: Vec<f64>,
    at: Secs,
    #[serde(skip)]
    shape: Kept<Shape>,
}

/// What a histogram's tail readings share whatever the value asked about.
#[derive(Clone, Copy)]
struct Shape {
    /// Sum of the bins, in bin order.
    total: f64,
    /// The last bin holding more than a trace.
    max_bin: usize,
    /// Bins of the 25th, 50th, 75th and 99th percentiles.
    quantiles: [f64; 4],
}

const BINS: usize = 64;

impl Default for LogHistogram {
    fn default() -> Self {
        LogHistogram {
            bins: vec![0.0; BINS],
            at: 0,
            shape: Kept::default(),
        }
    }
}

/// An upper-tail reading of a volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Tail {
    /// Probability of a value at least this large.
    pub p: f64,
    /// Typical value (median).
    pub median: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Observations behind the baseline.
    pub total: f64,
}

fn bin_of(x: f64) -> usize {
    (((x.max(0.0) + 1.0).log2() * 2.0) as usize).min(BINS - 1)
}

fn value_of_bin(b: f64) -> f64 {
    2f64.powf(b / 2.0) - 1.0
}

/// Standard normal upper tail.
pub fn normal_upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    // Numerical Recipes' erfc, relative error < 1.2e-7.
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

impl LogHistogram {
    fn decay_to(&mut self, now: Secs, half_life: f64) {
        if now > self.at {
            let f = decay(1.0, self.at, now, half_life);
            for b in &mut self.bins {
                *b *= f;
            }
            self.at = now;
        }
    }

    /// Records `x`.
    pub fn observe(&mut self, x: f64, now: Secs, half_life: f64) {
        self.decay_to(now, half_life);
        self.bins[bin_of(x)] += 1.0;
        self.shape.clear();
    }

    fn shape(&self) -> Shape {
        *self.shape.get_or(|| {
            let mut total = -0.0;
            let mut max_bin = 0;
            for (i, &c) in self.bins.iter().enumerate() {
                total += c;
                if c > 1e-9 {
                    max_bin = i;
                }
            }
            Shape {
                total,
                max_bin,
                quantiles: self.quantile_bins(total, [0.25, 0.5, 0.75, 0.99]),
            }
        })
    }

    /// Total decayed observations.
    pub fn total(&self, now: Secs, half_life: f64) -> f64 {
        decay(self.shape().total, self.at, now, half_life)
    }

    /// The bins (as midpoints) holding the quantiles `qs`, given in increasing order, in one
    /// pass over the bins.
    fn quantile_bins<const N: usize>(&self, total: f64, qs: [f64; N]) -> [f64; N] {
        let mut out = [BINS as f64; N];
        let mut next = 0;
        let mut acc = 0.0;
        for (i, b) in self.bins.iter().enumerate() {
            acc += b;
            while next < N && acc >= qs[next] * total {
                out[next] = i as f64 + 0.5;
                next += 1;
            }
            if next == N {
                break;
            }
        }
        out
    }

    /// Upper tail of `x`: a log-normal fitted robustly (median, MAD with a floor of half an
    /// octave) beyond the largest bin seen, never smaller than the empirical tail within it.
    pub fn upper_tail(&self, x: f64, now: Secs, half_life: f64) -> Tail {
        let b = bin_of(x);
        let Shape {
            total,
            max_bin,
            quantiles: [q1, med, q3, q99],
        } = self.shape();
        let total_now = decay(total, self.at, now, half_life);
        if total <= 0.0 {
            return Tail {
                p: 1.0,
                median: 0.0,
                p99: 0.0,
                total: 0.0,
            };
        }
        let above = self.bins[b..].iter().fold(-0.0, |acc, &c| acc + c);
        let sigma = ((q3 - q1) / 1.349).max(1.0);
        let z = (b as f64 + 0.5 - med) / sigma;
        let parametric = normal_upper_tail(z);
        let empirical = (above / total * total_now + 0.5) / (total_now + 1.0);
        let p = if b > max_bin {
            parametric.min(empirical)
        } else {
            parametric.max(empirical)
        };
        Tail {
            p: p.clamp(1e-12, 1.0),
            median: value_of_bin(med),
            p99: value_of_bin(q99),
            total: total_now,
        }
    }
}

/// Hour readings a week profile keeps: a connector's overlapping sessions started in a few
/// different hours.
const HOURS_KEPT: usize = 4;

/// Activity by hour of the week (tenant-local when the zone is known), decayed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WeekProfile {
    hours: Vec<f64>,
    at: Secs,
    #[serde(skip)]
    smoothed: Kept<Box<SmoothedWeek>>,
}

/// An hour's rarity and its density relative to the average hour (see
/// [`WeekProfile::rarity`]).
type HourReading = (f64, f64);

/// A week profile smoothed hour by hour, with the readings of the last hours asked about
/// (newest first).
struct SmoothedWeek {
    hours: [f64; 168],
    /// Sum of the raw hours.
    total: f64,
    /// Sum of the smoothed hours.
    total_smoothed: f64,
    readings: Cell<[Option<(usize, HourReading)>; HOURS_KEPT]>,
}

impl Default for WeekProfile {
    fn default() -> Self {
        WeekProfile {
            hours: vec![0.0; 168],
            at: 0,
            smoothed: Kept::default(),
        }
    }
}

impl WeekProfile {
    /// Records activity at hour-of-week `h`.
    pub fn observe(&mut self, h: usize, weight: f64, now: Secs, half_life: f64) {
        if now > self.at {
            let f = decay(1.0, self.at, now, half_life);
            for x in &mut self.hours {
                *x *= f;
            }
            self.at = now;
        }
        self.hours[h % 168] += weight;
        self.smoothed.clear();
    }

    /// Rarity of hour `h`: the share of activity in hours at most as active, with a prior.
    ///
    /// Every hour is smoothed first: half its own activity, a quarter its neighbours' (the week
    /// wraps around), a quarter the mean of the same hour over the week's seven days (weekly
    /// profiles are sparse). The smoothed week is kept until the profile changes, and with it
    /// the readings of the last few hours asked about (a connector's sessions start in a few).
    pub fn rarity(&self, h: usize) -> (f64, f64) {
        let week = self.smoothed.get_or(|| Box::new(self.smooth()));
        if week.total <= 0.0 {
            return (1.0, 0.0);
        }
        let mut kept = week.readings.get();
        if let Some((_, reading)) = kept.iter().flatten().find(|(asked, _)| *asked == h) {
            return *reading;
        }
        let here = week.hours[h % 168];
        let bound = here * (1.0 + 1e-9);
        let at_most = sum_where(&week.hours, |x| x <= bound);
        let reading = (
            ((at_most / week.total_smoothed) * week.total + 0.5) / (week.total + 1.0),
            here / week.total_smoothed * 168.0,
        );
        kept.rotate_right(1);
        kept[0] = Some((h, reading));
        week.readings.set(kept);
        reading
    }

    /// The smoothed week.
    fn smooth(&self) -> SmoothedWeek {
        let hours = &self.hours[..168];
        let mut day_sums = [0.0; 24];
        for day in hours.chunks_exact(24) {
            for (sum, &x) in day_sums.iter_mut().zip(day) {
                *sum += x;
            }
        }
        let day_means = day_sums.map(|d| d / 7.0);
        // The week with its wrap-around neighbours at both ends: hour i is around[i + 1].
        let mut around = [0.0; 170];
        around[0] = hours[167];
        around[1..169].copy_from_slice(hours);
        around[169] = hours[0];
        let mut smoothed = [0.0; 168];
        for (day, out) in smoothed.chunks_exact_mut(24).enumerate() {
            let near = &around[day * 24..day * 24 + 26];
            for (hour, x) in out.iter_mut().enumerate() {
                *x = 0.5 * near[hour + 1]
                    + 0.25 * (near[hour] + near[hour + 2])
                    + 0.25 * day_means[hour];
            }
        }
        SmoothedWeek {
            hours: smoothed,
            total: sum_where(hours, |_| true),
            total_smoothed: sum_where(&smoothed, |_| true),
            readings: Cell::new([None; HOURS_KEPT]),
        }
    }
}

/// The sum of the values `keep` accepts, added up in eight lanes: a serial sum of a week's
/// hours waits on 168 additions one after another, the lanes on 21 (the result differs from
/// the serial sum in the last bits only).
fn sum_where(xs: &[f64], keep: impl Fn(f64) -> bool) -> f64 {
    let mut lanes = [0.0; 8];
    let chunks = xs.chunks_exact(8);
    let mut rest = 0.0;
    for &x in chunks.remainder() {
        if keep(x) {
            rest += x;
        }
    }
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += if keep(x) { x } else { 0.0 };
        }
    }
    let [a, b, c, d, e, f, g, h] = lanes;
    ((a + b) + (c + d)) + ((e + f) + (g + h)) + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    const HL: f64 = 14.0 * 86400.0;

    #[test]
    fn hour_rarity_is_the_smoothing_formula_hour_by_hour() {
        // The one-pass smoothing must give exactly what smoothing each hour on its own gives,
        // however the profile changes between two questions.
        let expected = |w: &WeekProfile, h: usize| {
            let one_hour = |h: usize| {
                let prev = w.hours[(h + 167) % 168];
                let next = w.hours[(h + 1) % 168];
                let day: f64 = (0..7).map(|d| w.hours[(h % 24) + 24 * d]).sum::<f64>() / 7.0;
                0.5 * w.hours[h % 168] + 0.25 * (prev + next) + 0.25 * day
            };
            let all: Vec<f64> = (0..168).map(one_hour).collect();
            let total: f64 = w.hours.iter().sum();
            let stotal: f64 = all.iter().sum();
            let here = one_hour(h);
            let at_most: f64 = all.iter().filter(|&&x| x <= here * (1.0 + 1e-9)).sum();
            (
                ((at_most / stotal) * total + 0.5) / (total + 1.0),
                here / stotal * 168.0,
            )
        };
        let mut w = WeekProfile::default();
        assert_eq!(w.rarity(5), (1.0, 0.0));
        for i in 0..500u64 {
            let h = ((i * 7919) % 168) as usize;
            w.observe(h, 1.0 + (i % 5) as f64, (i * 3_000) as Secs, HL);
            if i % 97 == 0 {
                // Asked between changes: the cache must follow every change.
                assert_close(w.rarity(h), expected(&w, h), &format!("after {i} changes"));
            }
        }
        for h in [0, 1, 23, 24, 100, 166, 167] {
            assert_close(w.rarity(h), expected(&w, h), &format!("hour {h}"));
        }
    }

    /// Equal but for the order of additions (relative difference at most 1e-12).
    fn assert_close(got: (f64, f64), want: (f64, f64), what: &str) {
        for (g, w) in [(got.0, want.0), (got.1, want.1)] {
            assert!(
                (g - w).abs() <= 1e-12 * w.abs().max(1e-300),
                "{what}: {got:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn volume_tails_follow_every_change_of_the_histogram() {
        // The histogram's shape is kept between questions: asked between changes, it must give
        // what a histogram asked for the first time gives (a clone starts without it).
        let mut h = LogHistogram::default();
        for i in 0..300i64 {
            h.observe((i % 17 * i % 5) as f64, i * 600, HL);
            if i % 13 == 0 {
                for x in [0.0, 3.0, 40.0, 1e4] {
                    let now = i * 600 + 60;
                    assert_eq!(h.upper_tail(x, now, HL), h.clone().upper_tail(x, now, HL));
                    assert_eq!(h.total(now, HL), h.clone().total(now, HL));
                }
            }
        }
    }

    #[test]
    fn decays_by_half_life() {
        let mut d = Decayed::default();
        d.add(8.0, 0, HL);
        assert!((d.get(14 * 86400, HL) - 4.0).abs() < 1e-9);
    }

    #[test]
    fn new_values_are_rare_only_when_the_set_is_stable() {
        let mut stable = ValueCounts::default();
        let mut churn = ValueCounts::default();
        for i in 0..1000 {
            stable.observe(&format!("ip{}", i % 3), i * 60, HL, i < 100, 100);
            churn.observe(&format!("ip{}", i), i * 60, HL, i < 100, 100_000);
        }
        let s = stable.rarity("new", 60_000, HL);
        let c = churn.rarity("new", 60_000, HL);
        assert!(s.first_seen && s.p < 0.002, "{s:?}");
        assert!(c.p > 0.8, "{c:?}");
        assert!(stable.rarity("ip1", 60_000, HL).p > 0.3);
        // The cap holds.
        let mut capped = ValueCounts::default();
        for i in 0..50 {
            capped.observe(&i.to_string(), i, HL, false, 10);
        }
        assert_eq!(capped.len(), 10);
    }

    #[test]
    fn volume_tails() {
        let mut h = LogHistogram::default();
        for i in 0..500 {
            h.observe(20.0 + (i % 10) as f64, i, HL);
        }
        let typical = h.upper_tail(25.0, 500, HL);
        let huge = h.upper_tail(2000.0, 500, HL);
        assert!(typical.p > 0.1, "{typical:?}");
        assert!(huge.p < 1e-5, "{huge:?}");
        assert!((15.0..35.0).contains(&typical.median));
    }

    #[test]
    fn quiet_hours_are_rare() {
        let mut w = WeekProfile::default();
        for day in 0..7 {
            for h in 8..18 {
                for _ in 0..20 {
                    w.observe(day * 24 + h, 1.0, 0, HL);
                }
            }
        }
        assert!(w.rarity(10).0 > 0.3);
        assert!(w.rarity(3).0 < 0.01);
    }
}

/// How often established connectors (past learning) see a value they never saw, pooled over
/// all connectors: the prior for one connector's novelty.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct NoveltyPool {
    novel: Decayed,
    total: Decayed,
}

impl NoveltyPool {
    /// Records one observation of an established connector.
    pub fn observe(&mut self, was_new: bool, now: Secs, half_life: f64) {
        self.total.add(1.0, now, half_life);
        if was_new {
            self.novel.add(1.0, now, half_life);
        }
    }

    /// The pooled rate, with a half-count prior.
    pub fn rate(&self, now: Secs, half_life: f64) -> f64 {
        (self.novel.get(now, half_life) + 0.5) / (self.total.get(now, half_life) + 1.0)
    }
}
