//! The competitors' public detection rules (DETECTION.md), implemented as written so every
//! evaluation shows mailsentry and them side by side on the same events:
//!
//! - Elastic: service-principal sign-in from an ASN not seen for the app in the last 10 days
//!   (`new_terms`), Microsoft's own ASN excluded;
//! - Splunk: more than 5 distinct mailboxes in 10 minutes per `ClientAppId` over EWS/REST;
//! - Sentinel: an app's daily `OperationCount` above mean + 2.5σ of its previous days (Graph);
//! - Sentinel: a (reader app, mailbox) pair not seen in the last 10 days.

use crate::baseline::Secs;
use crate::enrichment::Enrichment;
use chrono::{DateTime, Utc};
use mailsentry_events::{Event, EventKind, MailboxAccess, SignInCategory, MICROSOFT_GRAPH_APP_ID};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One alert of a reference rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RefAlert {
    /// Rule name.
    pub detector: &'static str,
    /// Tenant.
    pub tenant: String,
    /// Connector (app id).
    pub connector: String,
    /// When the rule fired (event time).
    pub at: DateTime<Utc>,
    /// Source addresses involved, when the rule knows them.
    pub ips: Vec<String>,
}

const DAY: Secs = 86400;
const HISTORY: Secs = 10 * DAY;
/// Microsoft's ASN, which Elastic's rule skips.
const MICROSOFT_ASN: u32 = 8075;

fn ts(s: Secs) -> DateTime<Utc> {
    DateTime::from_timestamp(s, 0).unwrap_or_default()
}

fn app_of(m: &MailboxAccess) -> Option<String> {
    (m.user_type == Some(5))
        .then(|| m.actor.connector_key().map(str::to_owned))
        .flatten()
}

/// All four reference rules over one event stream.
pub struct ReferenceDetectors {
    enrichment: Arc<Enrichment>,
    // Elastic: (tenant, app) -> first seen, and (tenant, app, asn) -> last seen.
    app_first: BTreeMap<(String, String), Secs>,
    asn_last: BTreeMap<(String, String, u32), Secs>,
    // Splunk: (tenant, app) -> (10-minute bucket, mailboxes, fired).
    splunk: BTreeMap<(String, String), (Secs, BTreeSet<String>, bool)>,
    // Sentinel daily volume: (tenant, app) -> (day, count) and past daily totals.
    daily: BTreeMap<(String, String), (Secs, u64)>,
    daily_history: BTreeMap<(String, String), Vec<u64>>,
    // Sentinel pairs: (tenant, app, mailbox) -> last seen; (tenant, app, day) fired.
    pairs: BTreeMap<(String, String, String), Secs>,
    pair_fired: BTreeSet<(String, String, Secs)>,
    alerts: Vec<RefAlert>,
}

impl ReferenceDetectors {
    /// New rules; ASNs come from `enrichment`.
    pub fn new(enrichment: Arc<Enrichment>) -> Self {
        ReferenceDetectors {
            enrichment,
            app_first: BTreeMap::new(),
            asn_last: BTreeMap::new(),
            splunk: BTreeMap::new(),
            daily: BTreeMap::new(),
            daily_history: BTreeMap::new(),
            pairs: BTreeMap::new(),
            pair_fired: BTreeSet::new(),
            alerts: Vec::new(),
        }
    }

    /// Feeds one event.
    pub fn process(&mut self, e: &Event) {
        let t = e.time.timestamp();
        let tenant = e.tenant_id.clone().unwrap_or_default();
        match &e.kind {
            EventKind::SignIn(s) if s.category == SignInCategory::ServicePrincipal => {
                let (Some(app), Some(client)) = (s.actor.app_id.clone(), s.client.as_ref()) else {
                    return;
                };
                let first = *self
                    .app_first
                    .entry((tenant.clone(), app.clone()))
                    .or_insert(t);
                let Some(asn) = self.enrichment.lookup(client.ip).asn else {
                    return;
                };
                if asn == MICROSOFT_ASN {
                    return;
                }
                let k = (tenant.clone(), app.clone(), asn);
                let seen_recently = self
                    .asn_last
                    .get(&k)
                    .is_some_and(|&last| t - last <= HISTORY);
                if !seen_recently && t - first >= HISTORY {
                    self.alerts.push(RefAlert {
                        detector: "elastic_unusual_asn",
                        tenant,
                        connector: app,
                        at: e.time,
                        ips: vec![client.ip.to_string()],
                    });
                }
                self.asn_last.insert(k, t);
            }
            EventKind::MailboxAccess(m) => {
                let Some(app) = app_of(m) else { return };
                let mailbox = m.mailbox_upn.clone().unwrap_or_default();
                let ip = m.client.as_ref().map(|c| c.ip.to_string());
                // Splunk: EWS or REST (Graph).
                let bucket = t - t.rem_euclid(600);
                let entry = self.splunk.entry((tenant.clone(), app.clone())).or_insert((
                    bucket,
                    BTreeSet::new(),
                    false,
                ));
                if entry.0 != bucket {
                    *entry = (bucket, BTreeSet::new(), false);
                }
                entry.1.insert(mailbox.clone());
                if entry.1.len() > 5 && !entry.2 {
                    entry.2 = true;
                    self.alerts.push(RefAlert {
                        detector: "splunk_mailboxes_per_10min",
                        tenant: tenant.clone(),
                        connector: app.clone(),
                        at: e.time,
                        ips: Vec::new(),
                    });
                }
                // Sentinel daily volume, Graph only.
                if m.actor.app_id.as_deref() == Some(MICROSOFT_GRAPH_APP_ID) {
                    let day = t - t.rem_euclid(DAY);
                    let k = (tenant.clone(), app.clone());
                    let d = self.daily.entry(k.clone()).or_insert((day, 0));
                    if d.0 != day {
                        let (old_day, total) = *d;
                        *d = (day, 0);
                        self.close_day(&k, old_day, total);
                    }
                    self.daily.get_mut(&k).expect("just set").1 += m.operation_count.max(1);
                }
                // Sentinel new reader-mailbox pairs.
                let first = *self
                    .app_first
                    .entry((tenant.clone(), app.clone()))
                    .or_insert(t);
                let pk = (tenant.clone(), app.clone(), mailbox);
                let seen = self.pairs.get(&pk).is_some_and(|&last| t - last <= HISTORY);
                if !seen && t - first >= HISTORY {
                    let day = t - t.rem_euclid(DAY);
                    if self.pair_fired.insert((tenant.clone(), app.clone(), day)) {
                        self.alerts.push(RefAlert {
                            detector: "sentinel_new_reader_mailbox",
                            tenant,
                            connector: app,
                            at: e.time,
                            ips: ip.into_iter().collect(),
                        });
                    }
                }
                self.pairs.insert(pk, t);
            }
            _ => {}
        }
    }

    fn close_day(&mut self, k: &(String, String), day: Secs, total: u64) {
        let history = self.daily_history.entry(k.clone()).or_default();
        if history.len() >= 7 {
            let recent = &history[history.len().saturating_sub(30)..];
            let n = recent.len() as f64;
            let mean = recent.iter().sum::<u64>() as f64 / n;
            let var = recent
                .iter()
                .map(|&x| (x as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            if total as f64 > mean + 2.5 * var.sqrt() {
                self.alerts.push(RefAlert {
                    detector: "sentinel_daily_volume",
                    tenant: k.0.clone(),
                    connector: k.1.clone(),
                    at: ts(day + DAY),
                    ips: Vec::new(),
                });
            }
        }
        history.push(total);
    }

    /// Ends the stream (closes the last day) and returns every alert.
    pub fn finish(mut self) -> Vec<RefAlert> {
        let open: Vec<((String, String), (Secs, u64))> =
            std::mem::take(&mut self.daily).into_iter().collect();
        for (k, (day, total)) in open {
            self.close_day(&k, day, total);
        }
        self.alerts
    }
}

/// Names of the reference rules.
pub const REFERENCE_RULES: [&str; 4] = [
    "elastic_unusual_asn",
    "splunk_mailboxes_per_10min",
    "sentinel_daily_volume",
    "sentinel_new_reader_mailbox",
];
