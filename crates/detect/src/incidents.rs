//! Alert grouping: a connector's high-scoring sessions within a day of each other are one
//! incident, one alert that grows, not one alert per session.

use crate::baseline::Secs;
use crate::scoring::Evaluation;
use crate::sessions::Session;
use chrono::{TimeZone, Utc};
use mailsentry_events::{
    Alert, AlertConnector, AlertCredential, AlertSession, AlertSource, Evidence, Reason, Severity,
    ALERT_VERSION,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Sessions of one connector this close (seconds) join the open incident.
pub const INCIDENT_WINDOW: Secs = 24 * 3600;
const MAX_REASONS: usize = 8;
const MAX_EVIDENCE: usize = 50;

/// An incident being built.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Incident {
    /// Alert id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Connector key.
    pub connector: String,
    /// Name.
    pub name: Option<String>,
    /// First decision (event time).
    pub detected_at: Secs,
    /// Last update (event time).
    pub updated_at: Secs,
    /// Highest score.
    pub score: u8,
    /// Lowest combined p-value.
    pub p: f64,
    /// Reasons by signal (the strongest reading of each).
    pub reasons: BTreeMap<String, Reason>,
    /// Sources.
    pub ips: BTreeSet<String>,
    /// ASNs.
    pub asns: BTreeSet<u32>,
    /// Keys.
    pub keys: BTreeSet<String>,
    /// Thumbprints.
    pub thumbprints: BTreeSet<String>,
    /// Per-session contributions (first, last, events, mailboxes, items, bytes), by session.
    pub sessions: BTreeMap<String, (Secs, Secs, u64, u64, u64, u64)>,
    /// Evidence.
    pub event_ids: Vec<String>,
    /// Per source: first event, first alert-level decision, best score.
    pub sources: BTreeMap<String, (Secs, Secs, u8)>,
    /// Per source: ASN and country, when known.
    #[serde(default)]
    pub places: BTreeMap<String, (Option<u32>, Option<String>)>,
    /// Baseline confidence at the last update.
    #[serde(default)]
    pub confidence: Option<f64>,
}

impl Incident {
    fn new(session: &Session, eval: &Evaluation, now: Secs) -> Self {
        let id = format!(
            "ms-{:016x}",
            xxhash_rust::xxh3::xxh3_64(
                format!(
                    "{}|{}|{}|{}",
                    session.key.tenant, session.key.connector, session.key.source, session.first
                )
                .as_bytes()
            )
        );
        Incident {
            id,
            tenant: session.key.tenant.clone(),
            connector: session.key.connector.clone(),
            name: session.connector_name.clone(),
            detected_at: now,
            updated_at: now,
            score: eval.score,
            p: eval.p,
            reasons: BTreeMap::new(),
            ips: BTreeSet::new(),
            asns: BTreeSet::new(),
            keys: BTreeSet::new(),
            thumbprints: BTreeSet::new(),
            sessions: BTreeMap::new(),
            event_ids: Vec::new(),
            sources: BTreeMap::new(),
            places: BTreeMap::new(),
            confidence: None,
        }
    }

    fn absorb(&mut self, session: &Session, eval: &Evaluation, now: Secs) {
        self.updated_at = self.updated_at.max(now);
        self.confidence = Some(eval.confidence);
        self.score = self.score.max(eval.score);
        self.p = self.p.min(eval.p);
        if self.name.is_none() {
            self.name = session.connector_name.clone();
        }
        for r in &eval.reasons {
            let keep = match self.reasons.get(&r.signal) {
                Some(old) => r.p_value < old.p_value,
                None => true,
            };
            if keep {
                self.reasons.insert(r.signal.clone(), r.clone());
            }
        }
        if let Some(ip) = session.ip {
            self.ips.insert(ip.to_string());
        }
        let src = self.sources.entry(session.key.source.clone()).or_insert((
            session.first,
            now,
            eval.score,
        ));
        src.0 = src.0.min(session.first);
        src.2 = src.2.max(eval.score);
        self.places
            .entry(session.key.source.clone())
            .or_insert_with(|| (session.asn, session.country.clone()));
        if let Some(a) = session.asn {
            self.asns.insert(a);
        }
        self.keys.extend(session.keys.iter().cloned());
        self.thumbprints.extend(session.thumbprints.iter().cloned());
        self.sessions.insert(
            format!("{}|{}", session.key.source, session.first),
            (
                session.first,
                session.last,
                session.events,
                session.mailboxes.len() as u64,
                session.items,
                session.bytes,
            ),
        );
        for id in &session.event_ids {
            if self.event_ids.len() >= MAX_EVIDENCE {
                break;
            }
            if !self.event_ids.contains(id) {
                self.event_ids.push(id.clone());
            }
        }
    }

    /// The alert as it stands. `created_at` is wall time, given by the caller.
    pub fn to_alert(&self, created_at: chrono::DateTime<Utc>) -> Alert {
        let ts = |s: Secs| Utc.timestamp_opt(s, 0).single().unwrap_or_default();
        let mut reasons: Vec<Reason> = self.reasons.values().cloned().collect();
        reasons.sort_by(|a, b| {
            a.p_value
                .total_cmp(&b.p_value)
                .then_with(|| a.signal.cmp(&b.signal))
        });
        reasons.truncate(MAX_REASONS);
        let first = self.sessions.values().map(|s| s.0).min();
        let last = self.sessions.values().map(|s| s.1).max();
        Alert {
            id: self.id.clone(),
            version: ALERT_VERSION,
            created_at,
            detected_at: ts(self.detected_at),
            tenant_id: self.tenant.clone(),
            connector: AlertConnector {
                app_id: self.connector.clone(),
                name: self.name.clone(),
                baseline_confidence: self.confidence,
                credential: (!self.keys.is_empty() || !self.thumbprints.is_empty()).then(|| {
                    AlertCredential {
                        key_id: self.keys.iter().next().cloned(),
                        thumbprint: self.thumbprints.iter().next().cloned(),
                    }
                }),
            },
            session: AlertSession {
                client_ips: self.ips.iter().cloned().collect(),
                asns: self.asns.iter().copied().collect(),
                first_event: first.map(ts),
                last_event: last.map(ts),
                events: self.sessions.values().map(|s| s.2).sum(),
                mailboxes: self.sessions.values().map(|s| s.3).max().unwrap_or(0),
                items: self.sessions.values().map(|s| s.4).sum(),
                bytes: self.sessions.values().map(|s| s.5).sum(),
            },
            score: self.score,
            severity: Severity::from_score(self.score),
            p_value: self.p,
            reasons,
            evidence: Evidence {
                event_ids: self.event_ids.clone(),
            },
            sources: self
                .sources
                .iter()
                .map(|(ip, &(first, detected, score))| {
                    let (asn, country) = self.places.get(ip).cloned().unwrap_or_default();
                    AlertSource {
                        ip: ip.clone(),
                        first_event: ts(first),
                        detected_at: ts(detected),
                        score,
                        asn,
                        country,
                    }
                })
                .collect(),
            status: "new".into(),
            label: None,
        }
    }
}

/// Open and finished incidents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Incidents {
    /// Every incident, in order of creation.
    pub all: Vec<Incident>,
    /// Open incident per (tenant, connector): index into `all`.
    #[serde(with = "crate::pair_keyed")]
    open: BTreeMap<(String, String), usize>,
}

impl Incidents {
    /// Adds a session that scored at or above the alert threshold.
    pub fn record(&mut self, session: &Session, eval: &Evaluation, now: Secs) {
        let k = (session.key.tenant.clone(), session.key.connector.clone());
        if let Some(&i) = self.open.get(&k) {
            if now - self.all[i].updated_at <= INCIDENT_WINDOW {
                self.all[i].absorb(session, eval, now);
                return;
            }
        }
        let mut incident = Incident::new(session, eval, now);
        incident.absorb(session, eval, now);
        self.all.push(incident);
        self.open.insert(k, self.all.len() - 1);
    }
}
