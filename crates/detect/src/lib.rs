//! The streaming detection engine of mailsentry.
//!
//! Events (from `mailsentry-ingest`) are grouped into connector sessions on event time —
//! `(tenant, connector, source)` until a 30-minute gap or 4 hours — with a watermark that
//! tolerates audit records arriving hours late. Each session is scored against its connector's
//! own decayed baseline (sources, volume, targets, timing, credentials, transport), the
//! signals combined with a Cauchy combination valid under dependence, hard facts (a rotated or
//! removed key in use, a key used from two networks at once, a freshly added key used from a
//! new network) scored by rule, and high-scoring sessions grouped into one growing alert per
//! connector incident. Everything is deterministic: no wall clock, no I/O; the whole state
//! snapshots to JSON and restores.

pub mod baseline;
pub mod connector_state;
mod connector_table;
pub mod detector;
pub mod enrichment;
pub mod evaluation;
pub mod features;
pub mod incidents;
pub mod key_text;
pub mod model;
pub mod reference;
pub mod scoring;
pub mod sessions;
mod sorted_on_disk;
mod tenant_mailboxes;

pub use detector::{ConnectorSummary, DetectStats, Detector, KeySummary};
pub use enrichment::{Enrichment, EnrichmentError, Place};

use mailsentry_events::Severity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Detector settings. Every field has a default; a config file overrides any of them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// Inactivity that ends a session, minutes.
    pub session_gap_minutes: u32,
    /// Longest session, hours.
    pub session_max_hours: u32,
    /// How late (event time behind the newest event) an event may arrive and still join its
    /// session, hours. Audit records arrive up to hours late.
    pub lateness_hours: u32,
    /// Days a connector learns before statistical signals may alert (rules alert at once).
    pub learning_days: f64,
    /// Sessions a connector must have before statistical signals may alert.
    pub min_sessions: u64,
    /// Half-life of every baseline count, days.
    pub half_life_days: f64,
    /// A key not used by the connector's known sources for this long after a newer key took
    /// over is rotated out, hours.
    pub rotation_grace_hours: u32,
    /// Lowest severity written as an alert.
    pub min_severity: Severity,
    /// Cap on open sessions; the least recently active is closed early when it is reached.
    pub max_open_sessions: usize,
    /// Offset of tenant-local time for tenants without a zone, seconds.
    pub utc_offset_secs: i64,
    /// IANA time zone per tenant id (hour-of-week profiles in local time, DST-aware).
    pub tenant_zones: BTreeMap<String, String>,
    /// Highest score a learning connector may reach without a rule.
    pub learning_score_cap: u8,
    /// Signals with a p-value below this are given as reasons.
    pub reason_p: f64,
    /// Sessions scoring at least this (but below alert level) are learned only after the
    /// probation period, and not at all if their source raises an alert meanwhile.
    pub probation_score: u8,
    /// Probation period, hours.
    pub probation_hours: u32,
    /// Optional declarations of known connectors; with none, everything is learned.
    pub connectors: Vec<KnownConnector>,
}

/// What an operator declares about a connector. Every field is optional; what is declared
/// sharpens the detector (sources outside the vendor's ranges and unexpected keys become
/// hard facts, even while the connector is still learning).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct KnownConnector {
    /// Display name for alerts.
    pub name: Option<String>,
    /// App ids (or on-prem service accounts) that are this connector.
    pub app_ids: Vec<String>,
    /// Networks the vendor runs its workers in (CIDR).
    pub vendor_cidrs: Vec<ipnet::IpNet>,
    /// ASNs the vendor runs its workers in.
    pub vendor_asns: Vec<u32>,
    /// Credential key ids the connector is expected to use.
    pub expected_key_ids: Vec<String>,
}

impl KnownConnector {
    /// Is the source inside the declared vendor ranges? `None` when no range is declared.
    pub fn declares_source(&self, ip: Option<std::net::IpAddr>, asn: Option<u32>) -> Option<bool> {
        if self.vendor_cidrs.is_empty() && self.vendor_asns.is_empty() {
            return None;
        }
        let in_cidr = ip.is_some_and(|ip| self.vendor_cidrs.iter().any(|n| n.contains(&ip)));
        let in_asn = asn.is_some_and(|a| self.vendor_asns.contains(&a));
        Some(in_cidr || in_asn)
    }
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            session_gap_minutes: 30,
            session_max_hours: 4,
            lateness_hours: 3,
            learning_days: 7.0,
            min_sessions: 50,
            half_life_days: 14.0,
            rotation_grace_hours: 6,
            min_severity: Severity::Medium,
            max_open_sessions: 1_000_000,
            utc_offset_secs: 0,
            tenant_zones: BTreeMap::new(),
            learning_score_cap: 39,
            reason_p: 0.01,
            probation_score: 25,
            probation_hours: 72,
            connectors: Vec::new(),
        }
    }
}

impl DetectConfig {
    /// Session gap in seconds.
    pub fn session_gap_secs(&self) -> i64 {
        self.session_gap_minutes as i64 * 60
    }
    /// Session maximum in seconds.
    pub fn session_max_secs(&self) -> i64 {
        self.session_max_hours as i64 * 3600
    }
    /// Lateness in seconds.
    pub fn lateness_secs(&self) -> i64 {
        self.lateness_hours as i64 * 3600
    }
    /// Learning period in seconds.
    pub fn learning_secs(&self) -> i64 {
        (self.learning_days * 86400.0) as i64
    }
    /// Half-life in seconds.
    pub fn half_life_secs(&self) -> f64 {
        self.half_life_days * 86400.0
    }
    /// Probation period in seconds.
    pub fn probation_secs(&self) -> i64 {
        self.probation_hours as i64 * 3600
    }
    /// Rotation grace in seconds.
    pub fn rotation_grace_secs(&self) -> i64 {
        self.rotation_grace_hours as i64 * 3600
    }
    /// The declaration for a connector key, if any.
    pub fn known(&self, connector: &str) -> Option<&KnownConnector> {
        self.connectors
            .iter()
            .find(|c| c.app_ids.iter().any(|a| a.eq_ignore_ascii_case(connector)))
    }

    /// The lowest score that raises an alert.
    pub fn alert_score(&self) -> u8 {
        match self.min_severity {
            Severity::Low => 20,
            Severity::Medium => 40,
            Severity::High => 60,
            Severity::Critical => 80,
        }
    }
}

/// Maps keyed by (tenant, connector): look-ups by borrowed parts, and serde (JSON object keys
/// must be strings, so these maps are written as lists of `[key, value]` pairs).
pub(crate) mod pair_keyed {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::borrow::Borrow;
    use std::cmp::Ordering;
    use std::collections::BTreeMap;

    /// A (tenant, connector) pair, owned or borrowed: an owned key lends itself as one, so a
    /// map keyed by `(String, String)` is searched with two `&str` and no key is built.
    pub trait Pair {
        /// The two parts.
        fn parts(&self) -> (&str, &str);
    }

    impl Pair for (String, String) {
        fn parts(&self) -> (&str, &str) {
            (&self.0, &self.1)
        }
    }

    impl Pair for (&str, &str) {
        fn parts(&self) -> (&str, &str) {
            *self
        }
    }

    impl<'a> Borrow<dyn Pair + 'a> for (String, String) {
        fn borrow(&self) -> &(dyn Pair + 'a) {
            self
        }
    }

    // Ordered as `(String, String)` is: by the first part, then the second.
    impl PartialEq for dyn Pair + '_ {
        fn eq(&self, other: &Self) -> bool {
            self.parts() == other.parts()
        }
    }

    impl Eq for dyn Pair + '_ {}

    impl PartialOrd for dyn Pair + '_ {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }

    impl Ord for dyn Pair + '_ {
        fn cmp(&self, other: &Self) -> Ordering {
            self.parts().cmp(&other.parts())
        }
    }

    /// The value under (`a`, `b`).
    pub fn get<'m, V>(map: &'m BTreeMap<(String, String), V>, a: &str, b: &str) -> Option<&'m V> {
        map.get(&(a, b) as &dyn Pair)
    }

    /// The value under (`a`, `b`), mutable.
    pub fn get_mut<'m, V>(
        map: &'m mut BTreeMap<(String, String), V>,
        a: &str,
        b: &str,
    ) -> Option<&'m mut V> {
        map.get_mut(&(a, b) as &dyn Pair)
    }

    /// The value under (`a`, `b`), a default one inserted first (the key is copied only when
    /// it is new).
    pub fn entry<'m, V: Default>(
        map: &'m mut BTreeMap<(String, String), V>,
        a: &str,
        b: &str,
    ) -> &'m mut V {
        if !map.contains_key(&(a, b) as &dyn Pair) {
            map.insert((a.to_owned(), b.to_owned()), V::default());
        }
        map.get_mut(&(a, b) as &dyn Pair).expect("inserted above")
    }

    pub fn serialize<V: Serialize, S: Serializer>(
        map: &BTreeMap<(String, String), V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(&(String, String), &V)> = map.iter().collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<(String, String), V>, D::Error> {
        let pairs: Vec<((String, String), V)> = Vec::deserialize(d)?;
        Ok(pairs.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::pair_keyed;
    use std::collections::BTreeMap;

    #[test]
    fn pairs_are_found_by_borrowed_parts_in_owned_key_order() {
        // Keys whose concatenations collide or share prefixes: the borrowed comparison must
        // order them exactly as the owned tuples are ordered, or searches go astray.
        let keys = [
            ("a", "bc"),
            ("ab", "c"),
            ("", "abc"),
            ("abc", ""),
            ("t", "app"),
            ("t", "app2"),
            ("t2", ""),
            ("T", "app"),
        ];
        let mut map = BTreeMap::new();
        for (i, (a, b)) in keys.iter().enumerate() {
            map.insert((a.to_string(), b.to_string()), i);
        }
        for (i, (a, b)) in keys.iter().enumerate() {
            assert_eq!(pair_keyed::get(&map, a, b), Some(&i), "{a:?} {b:?}");
        }
        for (a, b) in [("a", "b"), ("t", "ap"), ("", ""), ("abc", "d")] {
            assert_eq!(pair_keyed::get(&map, a, b), None, "{a:?} {b:?}");
        }
        *pair_keyed::entry(&mut map, "t", "app") += 10;
        assert_eq!(map[&("t".to_string(), "app".to_string())], 14);
        *pair_keyed::entry(&mut map, "new", "one") += 1;
        assert_eq!(map.len(), keys.len() + 1);
    }
}
