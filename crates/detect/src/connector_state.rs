//! What the detector keeps per connector (its learned baseline and credential history), and the
//! cap on the mailboxes it remembers per tenant.

use crate::baseline::{LogHistogram, Secs, ValueCounts, WeekProfile};
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Caps that keep one connector's baseline bounded.
pub const MAX_VALUES: usize = 2048;
/// Mailboxes remembered per connector.
pub const MAX_MAILBOXES: usize = 200_000;

/// The learned behaviour of one connector.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ConnectorBaseline {
    /// First event of the connector.
    pub first_seen: Secs,
    /// Last event.
    pub last_seen: Secs,
    /// Sessions learned.
    pub sessions: u64,
    /// Source IPs.
    pub ips: ValueCounts,
    /// Source networks (/24, /48).
    pub networks: ValueCounts,
    /// Source ASNs.
    pub asns: ValueCounts,
    /// Source countries.
    pub countries: ValueCounts,
    /// User agents / client info.
    pub agents: ValueCounts,
    /// Credential key ids.
    pub keys: ValueCounts,
    /// Items per session.
    pub items: LogHistogram,
    /// Items per session by hour of the day (tenant-local) the session started.
    #[serde(default)]
    pub items_by_hour: Vec<LogHistogram>,
    /// Distinct mailboxes per session.
    pub mailboxes: LogHistogram,
    /// Mailboxes new to this connector (known to the tenant) per session, after learning.
    pub new_targets: LogHistogram,
    /// Session starts by hour of week.
    pub week: WeekProfile,
    /// Mailboxes this connector has read (hashed).
    #[serde(serialize_with = "crate::sorted_on_disk::set")]
    pub read: FxHashSet<u64>,
    /// TLS versions / ciphers seen (transport connectors).
    pub tls: ValueCounts,
}

/// One credential key's history for a connector.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyState {
    /// First use.
    pub first: Secs,
    /// Last use from a learned source.
    pub last_known_source: Secs,
    /// Last use.
    pub last: Secs,
    /// When a newer key took over from this one, if one did.
    pub superseded_at: Option<Secs>,
    /// When an audit record removed it.
    pub removed_at: Option<Secs>,
    /// When an audit record added it (and who).
    pub added: Option<(Secs, String)>,
}

/// Everything per connector.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ConnectorState {
    /// Display name when a log named it.
    pub name: Option<String>,
    /// The baseline.
    pub baseline: ConnectorBaseline,
    /// Credential keys.
    pub keys: BTreeMap<String, KeyState>,
    /// First and last activity per source network, for concurrency (bounded).
    pub networks_active: BTreeMap<String, (Secs, Secs)>,
    /// Networks whose sessions raised an alert: never "established".
    pub suspicious_networks: BTreeSet<String>,
    /// Sessions held back from learning because they scored high.
    pub quarantined: u64,
    /// Items read per hour (hour start, items), the last [`HOURLY_KEPT`] hours, for charts.
    #[serde(default)]
    pub hourly: std::collections::VecDeque<(Secs, u64)>,
}

/// Hours of volume history kept per connector (two weeks).
pub const HOURLY_KEPT: usize = 14 * 24;

impl ConnectorState {
    /// Adds `items` read at `t` to its hour.
    pub fn add_hourly(&mut self, t: Secs, items: u64) {
        let hour = t - t.rem_euclid(3600);
        if let Some(i) = self.hourly.iter().rposition(|(h, _)| *h == hour) {
            self.hourly[i].1 += items;
            return;
        }
        // Late records for an hour already dropped are not charted.
        if self.hourly.front().is_some_and(|(h, _)| hour < *h) && self.hourly.len() >= HOURLY_KEPT {
            return;
        }
        let at = self.hourly.partition_point(|(h, _)| *h < hour);
        self.hourly.insert(at, (hour, items));
        while self.hourly.len() > HOURLY_KEPT {
            self.hourly.pop_front();
        }
    }
}

/// A network active for the connector at least this long is its established stream.
pub const ESTABLISHED_AFTER: Secs = 6 * 3600;
/// Networks silent this long are forgotten by the concurrency check.
const NETWORK_IDLE: Secs = 7 * 86400;
const MAX_ACTIVE_NETWORKS: usize = 256;

impl ConnectorState {
    /// Records activity from `network` at `t`.
    pub fn note_network(&mut self, network: &str, t: Secs) {
        match self.networks_active.get_mut(network) {
            Some((first, last)) => {
                *first = (*first).min(t);
                *last = (*last).max(t);
            }
            None => {
                if self.networks_active.len() >= MAX_ACTIVE_NETWORKS {
                    let stalest = self
                        .networks_active
                        .iter()
                        .min_by_key(|(n, (_, last))| (*last, (*n).clone()))
                        .map(|(n, _)| n.clone());
                    if let Some(n) = stalest {
                        self.networks_active.remove(&n);
                    }
                }
                self.networks_active.insert(network.to_owned(), (t, t));
            }
        }
    }

    /// Has `network` been the connector's own stream at `t`: active for hours, recently, and
    /// never behind an alert?
    pub fn is_established(&self, network: &str, t: Secs) -> bool {
        !self.suspicious_networks.contains(network)
            && self
                .networks_active
                .get(network)
                .is_some_and(|&(first, last)| {
                    first <= t - ESTABLISHED_AFTER && last >= t - NETWORK_IDLE
                })
    }

    /// An established network (other than `network`) active within `window` of `t`.
    pub fn concurrent_established(&self, network: &str, t: Secs, window: Secs) -> Option<String> {
        self.networks_active
            .iter()
            .filter(|(n, _)| n.as_str() != network)
            .filter(|(_, &(_, last))| (t - last).abs() <= window)
            .map(|(n, _)| n)
            .find(|n| self.is_established(n, t))
            .cloned()
    }

    /// Marks keys superseded: a key not used from a learned source for `grace` seconds after
    /// a newer key was first used from a learned source has been rotated out.
    pub fn update_rotation(&mut self, now: Secs, grace: Secs) {
        let newest: Option<(String, Secs)> = self
            .keys
            .iter()
            .filter(|(_, k)| k.last_known_source > 0)
            .max_by_key(|(id, k)| (k.first, (*id).clone()))
            .map(|(id, k)| (id.clone(), k.first));
        let Some((newest_id, newest_first)) = newest else {
            return;
        };
        for (id, k) in self.keys.iter_mut() {
            if *id == newest_id || k.superseded_at.is_some() || k.first >= newest_first {
                continue;
            }
            if now - newest_first >= grace && k.last_known_source < newest_first + grace {
                k.superseded_at = Some(newest_first.max(k.last_known_source));
            }
        }
    }
}

/// Mailboxes remembered per tenant (when each was first read by anyone, so a mailbox that is
/// new to the tenant, tenant growth, is not a new *target* for a connector).
pub const MAX_TENANT_MAILBOXES: usize = 1_000_000;
