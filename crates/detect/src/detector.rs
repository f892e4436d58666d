//! The streaming detector: events in (roughly event-time order), sessions built and scored
//! against each connector's baseline, incidents out. Pure and deterministic: no wall clock,
//! no I/O.

use crate::baseline::{NoveltyPool, Secs};
use crate::connector_state::{
    ConnectorState, KeyState, MAX_MAILBOXES, MAX_TENANT_MAILBOXES, MAX_VALUES,
};
use crate::connector_table::{ConnectorId, ConnectorTable};
use crate::enrichment::{is_internal, prefix_of, Enrichment};
use crate::incidents::Incidents;
use crate::key_text::KeyText;
use crate::pair_keyed;
use crate::scoring::{evaluate, hour_of_week, Evaluation, PoolRates, ScoringContext};
use crate::sessions::{Activity, Session, SessionKey};
use crate::tenant_mailboxes::TenantMailboxes;
use crate::DetectConfig;
use mailsentry_events::{
    Alert, CredentialChange, Event, EventKind, MailAccessType, MailProtocol, MailboxAccess, SignIn,
    SignInCategory, TlsVersion, Transport,
};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

/// What the detector has learned about a connector.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConnectorSummary {
    /// Tenant.
    pub tenant_id: String,
    /// Connector key (app id or service account).
    pub connector: String,
    /// Name, when known.
    pub name: Option<String>,
    /// First event.
    pub first_seen: chrono::DateTime<chrono::Utc>,
    /// Last learned session.
    pub last_seen: chrono::DateTime<chrono::Utc>,
    /// Still in its learning period.
    pub learning: bool,
    /// How settled its baseline is (0–1): learning time and sessions seen as shares of what
    /// the learning period asks, multiplied.
    pub baseline_confidence: f64,
    /// Sessions in the baseline.
    pub sessions_learned: u64,
    /// Sessions held back after alerting.
    pub sessions_quarantined: u64,
    /// Usual networks, heaviest first.
    pub networks: Vec<String>,
    /// Usual ASNs.
    pub asns: Vec<String>,
    /// Usual countries.
    pub countries: Vec<String>,
    /// Usual clients.
    pub user_agents: Vec<String>,
    /// Mailboxes it reads.
    pub mailboxes_read: u64,
    /// Credential keys and their history.
    pub keys: Vec<KeySummary>,
}

/// A credential key of a connector.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeySummary {
    /// Key id.
    pub key_id: String,
    /// First use.
    pub first_used: Option<chrono::DateTime<chrono::Utc>>,
    /// Last use.
    pub last_used: Option<chrono::DateTime<chrono::Utc>>,
    /// When a newer key took over.
    pub rotated_out_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When an audit record removed it.
    pub removed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When an audit record added it.
    pub added_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Counters of a detector run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DetectStats {
    /// Events seen.
    pub events: u64,
    /// Events used (connector activity, sign-ins, credential changes, transport).
    pub used: u64,
    /// Events of people or of no interest.
    pub ignored: u64,
    /// Events older than the watermark when they arrived.
    pub late: u64,
    /// Sessions opened.
    pub sessions_opened: u64,
    /// Sessions closed.
    pub sessions_closed: u64,
    /// Sessions closed early because the open-session cap was reached.
    pub sessions_evicted: u64,
    /// Sessions held back from learning (quarantined).
    pub sessions_quarantined: u64,
    /// Sessions learned only after a probation period.
    pub sessions_on_probation: u64,
    /// Session evaluations.
    pub evaluations: u64,
    /// Events counted in sessions when they closed (every used event but credential changes
    /// lands in exactly one session).
    pub session_events: u64,
    /// Sessions merged into another when a late event bridged them.
    pub sessions_merged: u64,
    /// Credential changes (kept per connector, not in sessions).
    pub credential_changes: u64,
    /// Sign-in tokens joined to mailbox access.
    pub tokens_joined: u64,
    /// Mailboxes whose MailItemsAccessed auditing was throttled (blind for 24 h).
    pub throttled_mailboxes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenInfo {
    key_id: Option<String>,
    thumbprint: Option<String>,
    issued: Secs,
}

/// How far a learned network's activity and a new source's session may be apart and still
/// count as "at the same time".
const CONCURRENCY_WINDOW: Secs = 15 * 60;
/// A token is joined for this long after its sign-in.
const TOKEN_TTL: Secs = 2 * 3600;
/// Cap on quarantined sessions kept for an analyst's label.
const MAX_QUARANTINE: usize = 10_000;
/// Cap on sessions waiting out their probation.
const MAX_PROBATION: usize = 100_000;
/// Mailboxes first seen in the tenant this recently are new mailboxes, not new targets.
const NEW_MAILBOX_GRACE: Secs = 7 * 86400;

/// The detector.
#[derive(Debug, Serialize, Deserialize)]
pub struct Detector {
    config: DetectConfig,
    #[serde(skip)]
    enrichment: Arc<Enrichment>,
    /// Written as a list of `[[tenant, connector], state]` pairs (see [`ConnectorTable`]).
    connectors: ConnectorTable,
    /// When each mailbox was first read by anyone, per tenant.
    tenant_mailbox_first: TenantMailboxes,
    #[serde(with = "sessions_as_vec")]
    sessions: FxHashMap<u64, Session>,
    #[serde(skip)]
    /// Open session ids by their connector's index and source address, which name their key
    /// (tenant, connector, source) exactly.
    by_key: FxHashMap<(ConnectorId, Option<IpAddr>), Vec<u64>>,
    /// Scratch for `session_for` (the sessions an event may join), kept to spare an allocation.
    #[serde(skip)]
    touching: Vec<u64>,
    next_session: u64,
    deadlines: BinaryHeap<Reverse<(Secs, u64)>>,
    /// Per connector, its open sessions from networks it had not established when they opened
    /// (the table counts them, so a connector with none is not looked up here).
    #[serde(with = "crate::pair_keyed")]
    unlearned_open: BTreeMap<(String, String), BTreeSet<u64>>,
    /// Shared, so joining a token to each mailbox access copies a pointer, not its strings.
    #[serde(serialize_with = "crate::sorted_on_disk::map")]
    tokens: FxHashMap<String, Arc<TokenInfo>>,
    token_order: VecDeque<(Secs, String)>,
    max_time: Secs,
    pools: BTreeMap<String, NoveltyPool>,
    probation: VecDeque<(Secs, Session)>,
    quarantine: VecDeque<Session>,
    suppressed: BTreeSet<(String, String, String)>,
    incidents: Incidents,
    stats: DetectStats,
    /// Feature rows of closed sessions, collected only when asked for (`features` command).
    #[serde(skip)]
    feature_rows: Option<Vec<crate::features::SessionFeatures>>,
    /// The model layer, when a model is loaded (not part of the snapshot: it is a file).
    #[serde(skip)]
    model: Option<Arc<crate::model::Model>>,
}

mod sessions_as_vec {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        map: &FxHashMap<u64, Session>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut v: Vec<&Session> = map.values().collect();
        v.sort_by_key(|s| s.id);
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<FxHashMap<u64, Session>, D::Error> {
        let v: Vec<Session> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|s| (s.id, s)).collect())
    }
}

/// The xxh3 hash of the `len` bytes `fill` writes, written on the stack when they fit.
fn hash_written(len: usize, fill: impl FnOnce(&mut [u8])) -> u64 {
    let mut stack = [0u8; 256];
    if len <= stack.len() {
        fill(&mut stack[..len]);
        return xxhash_rust::xxh3::xxh3_64(&stack[..len]);
    }
    let mut heap = vec![0u8; len];
    fill(&mut heap);
    xxhash_rust::xxh3::xxh3_64(&heap)
}

/// The value under `key`, `init()` inserted first: the key is copied only when it is new
/// (`entry` would copy it on every event).
fn entry_for<'m, V>(
    map: &'m mut BTreeMap<String, V>,
    key: &str,
    init: impl FnOnce() -> V,
) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), init());
    }
    map.get_mut(key).expect("inserted above")
}

/// The hash of `tenant|mailbox` with the mailbox lower-cased (on the stack when it fits).
fn mailbox_hash(tenant: &str, mailbox: &str) -> u64 {
    hash_written(tenant.len() + mailbox.len() + 1, |buf| {
        let (t, rest) = buf.split_at_mut(tenant.len());
        t.copy_from_slice(tenant.as_bytes());
        rest[0] = b'|';
        for (d, c) in rest[1..].iter_mut().zip(mailbox.bytes()) {
            *d = c.to_ascii_lowercase();
        }
    })
}

fn is_weak_tls(version: Option<TlsVersion>, cipher: Option<&str>) -> bool {
    let old = matches!(
        version,
        Some(TlsVersion::Ssl | TlsVersion::Tls1_0 | TlsVersion::Tls1_1)
    );
    let no_pfs = cipher.is_some_and(|c| {
        let c = c.to_ascii_uppercase();
        !(c.starts_with("TLS_") || c.contains("ECDHE") || c.contains("DHE"))
    });
    old || no_pfs
}

impl Detector {
    /// A detector with `config`, enriching addresses with `enrichment`.
    pub fn new(config: DetectConfig, enrichment: Arc<Enrichment>) -> Self {
        Detector {
            config,
            enrichment,
            connectors: ConnectorTable::default(),
            tenant_mailbox_first: TenantMailboxes::default(),
            sessions: FxHashMap::default(),
            by_key: FxHashMap::default(),
            touching: Vec::new(),
            next_session: 0,
            deadlines: BinaryHeap::new(),
            unlearned_open: BTreeMap::new(),
            tokens: FxHashMap::default(),
            token_order: VecDeque::new(),
            max_time: i64::MIN,
            pools: BTreeMap::new(),
            probation: VecDeque::new(),
            quarantine: VecDeque::new(),
            suppressed: BTreeSet::new(),
            incidents: Incidents::default(),
            stats: DetectStats::default(),
            feature_rows: None,
            model: None,
        }
    }

    /// Loads (or, with `None`, unloads) the model layer; sessions scored from now on use it.
    pub fn set_model(&mut self, model: Option<Arc<crate::model::Model>>) {
        self.model = model;
    }

    /// The loaded model's name.
    pub fn model_name(&self) -> Option<&str> {
        self.model.as_deref().map(|m| m.name.as_str())
    }

    /// Starts collecting a feature row for every session as it closes (see
    /// [`crate::features`]); [`Detector::take_feature_rows`] drains them.
    pub fn collect_feature_rows(&mut self) {
        self.feature_rows.get_or_insert_with(Vec::new);
    }

    /// The feature rows collected since the last call.
    pub fn take_feature_rows(&mut self) -> Vec<crate::features::SessionFeatures> {
        self.feature_rows
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Restores a snapshot (see [`Detector::snapshot`]) with fresh enrichment.
    pub fn restore(json: &[u8], enrichment: Arc<Enrichment>) -> Result<Self, serde_json::Error> {
        let mut d: Detector = serde_json::from_slice(json)?;
        d.enrichment = enrichment;
        let mut ids: Vec<u64> = d.sessions.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let s = d.sessions.get_mut(&id).expect("listed");
            let cid = d.connectors.id_or_insert(&s.key.tenant, &s.key.connector);
            s.connector_id = cid;
            d.by_key.entry((cid, s.ip)).or_default().push(id);
        }
        let held = d.probation.iter_mut().map(|(_, s)| s);
        for s in held.chain(d.quarantine.iter_mut()) {
            s.connector_id = d.connectors.id_or_insert(&s.key.tenant, &s.key.connector);
        }
        for ((tenant, connector), open) in &d.unlearned_open {
            let cid = d.connectors.id_or_insert(tenant, connector);
            *d.connectors.unlearned_open_mut(cid) = open.len() as u32;
        }
        Ok(d)
    }

    /// The whole state as JSON: baselines, open sessions, tokens, incidents, counters.
    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("detector state serializes")
    }

    /// Replaces the configuration (a snapshot keeps the one it was made with).
    pub fn set_config(&mut self, config: DetectConfig) {
        self.config = config;
    }

    /// Counters.
    pub fn stats(&self) -> &DetectStats {
        &self.stats
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Connectors known.
    pub fn connector_count(&self) -> usize {
        self.connectors.len()
    }

    /// What the detector has learned about each connector, for the connectors view.
    pub fn connector_summaries(&self) -> Vec<ConnectorSummary> {
        let now = self.max_time.max(0);
        let hl = self.config.half_life_secs();
        let ts = |s: Secs| chrono::DateTime::from_timestamp(s, 0).unwrap_or_default();
        self.connectors
            .iter()
            .filter(|(_, c)| c.baseline.first_seen > 0)
            .map(|((tenant, connector), c)| {
                let b = &c.baseline;
                let top = |v: &crate::baseline::ValueCounts| {
                    v.top(5, now, hl).into_iter().map(|(k, _)| k).collect()
                };
                ConnectorSummary {
                    tenant_id: tenant.clone(),
                    connector: connector.clone(),
                    name: c
                        .name
                        .clone()
                        .or_else(|| self.config.known(connector).and_then(|k| k.name.clone())),
                    first_seen: ts(b.first_seen),
                    last_seen: ts(b.last_seen.max(b.first_seen)),
                    learning: now - b.first_seen < self.config.learning_secs()
                        || b.sessions < self.config.min_sessions,
                    baseline_confidence: (((now - b.first_seen) as f64
                        / self.config.learning_secs().max(1) as f64)
                        .clamp(0.0, 1.0)
                        * (b.sessions as f64 / self.config.min_sessions.max(1) as f64)
                            .clamp(0.0, 1.0)
                        * 100.0)
                        .round()
                        / 100.0,
                    sessions_learned: b.sessions,
                    sessions_quarantined: c.quarantined,
                    networks: top(&b.networks),
                    asns: top(&b.asns),
                    countries: top(&b.countries),
                    user_agents: top(&b.agents),
                    mailboxes_read: b.read.len() as u64,
                    keys: c
                        .keys
                        .iter()
                        .map(|(id, k)| KeySummary {
                            key_id: id.clone(),
                            first_used: (k.first != i64::MAX).then(|| ts(k.first)),
                            last_used: (k.last > 0).then(|| ts(k.last)),
                            rotated_out_at: k.superseded_at.map(ts),
                            removed_at: k.removed_at.map(ts),
                            added_at: k.added.as_ref().map(|(t, _)| ts(*t)),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// A connector's items per hour, the last two weeks (hour start, items).
    pub fn hourly_volume(
        &self,
        tenant: &str,
        connector: &str,
    ) -> Option<Vec<(chrono::DateTime<chrono::Utc>, u64)>> {
        let state = self.connectors.get(tenant, connector)?;
        Some(
            state
                .hourly
                .iter()
                .map(|&(h, n)| {
                    (
                        chrono::DateTime::from_timestamp(h, 0).unwrap_or_default(),
                        n,
                    )
                })
                .collect(),
        )
    }

    /// Forgets what a connector learned (after a planned change an analyst knows about): its
    /// baseline starts again with a new learning period. Returns false for an unknown connector.
    pub fn rebaseline(&mut self, tenant: &str, connector: &str) -> bool {
        let Some(state) = self.connectors.get_mut(tenant, connector) else {
            return false;
        };
        let name = state.name.take();
        *state = ConnectorState {
            name,
            ..Default::default()
        };
        self.suppressed
            .retain(|(t, c, _)| !(t == tenant && c == connector));
        true
    }

    /// Alerts so far (incidents at or above the minimum severity), ordered by detection time.
    pub fn alerts(&self, created_at: chrono::DateTime<chrono::Utc>) -> Vec<Alert> {
        let mut alerts: Vec<Alert> = self
            .incidents
            .all
            .iter()
            .filter(|i| {
                mailsentry_events::Severity::from_score(i.score) >= self.config.min_severity
            })
            .map(|i| i.to_alert(created_at))
            .collect();
        alerts.sort_by(|a, b| {
            a.detected_at
                .cmp(&b.detected_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        alerts
    }

    fn watermark(&self) -> Secs {
        self.max_time.saturating_sub(self.config.lateness_secs())
    }

    /// Applies an analyst's label to an alert. `false_positive` and `benign_true_positive`
    /// release the incident's quarantined sessions into the baseline and suppress further alerts
    /// from its sources for that connector; `true_positive` discards them. Returns false when no
    /// incident has that id.
    pub fn apply_label(&mut self, alert_id: &str, label: &str) -> bool {
        let Some(incident) = self.incidents.all.iter().find(|i| i.id == alert_id) else {
            return false;
        };
        let (tenant, connector) = (incident.tenant.clone(), incident.connector.clone());
        let sources: Vec<String> = incident.sources.keys().cloned().collect();
        let benign = matches!(label, "false_positive" | "benign_true_positive");
        let belongs = |s: &Session| {
            s.key.tenant == tenant
                && s.key.connector == connector
                && sources.contains(&s.key.source)
        };
        let (held, kept): (Vec<Session>, Vec<Session>) = std::mem::take(&mut self.quarantine)
            .into_iter()
            .partition(|s| belongs(s));
        self.quarantine = kept.into();
        if benign {
            for source in &sources {
                self.suppressed
                    .insert((tenant.clone(), connector.clone(), source.clone()));
            }
            for mut s in held {
                s.quarantined = false;
                self.connectors
                    .at_mut(s.connector_id)
                    .suspicious_networks
                    .remove(&s.network);
                self.learn(s);
            }
            for s in self.sessions.values_mut().filter(|s| belongs(s)) {
                s.quarantined = false;
            }
        }
        true
    }

    /// Feeds one event.
    pub fn process(&mut self, event: &Event) {
        self.stats.events += 1;
        let t = event.time.timestamp();
        if t > self.max_time {
            self.max_time = t;
        }
        let late = t < self.watermark();
        let used = match &event.kind {
            EventKind::MailboxAccess(m) => self.on_access(event, m, t, late),
            EventKind::SignIn(s) => self.on_signin(event, s, t, late),
            EventKind::CredentialChange(c) => {
                let used = self.on_credential_change(event, c, t);
                if used {
                    self.stats.credential_changes += 1;
                }
                used
            }
            EventKind::Transport(tr) => self.on_transport(event, tr, t, late),
            EventKind::AdminChange(_) => false,
        };
        if used {
            self.stats.used += 1;
            if late {
                self.stats.late += 1;
            }
        } else {
            self.stats.ignored += 1;
        }
        self.expire();
    }

    /// Closes every open session (end of input) so their learning is applied.
    pub fn finish(&mut self) {
        let mut ids: Vec<u64> = self.sessions.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.close(id, false);
        }
        self.deadlines.clear();
        while let Some((_, s)) = self.probation.pop_front() {
            self.learn(s);
        }
    }

    fn connector_of(m: &MailboxAccess) -> Option<&str> {
        let app = m.user_type == Some(5)
            || (m.user_type.is_none()
                && (m.actor.app_id.is_some() || m.actor.client_app_id.is_some()));
        if app {
            return m.actor.connector_key();
        }
        // On-prem protocol logs: an account using EWS is a connector candidate.
        if m.user_type.is_none() && m.protocol == Some(MailProtocol::Ews) {
            return m.actor.service_account.as_deref();
        }
        None
    }

    fn tenant_offset(&self, tenant: &str, t: Secs) -> i64 {
        match self.config.tenant_zones.get(tenant) {
            Some(tz) => {
                use chrono::{Offset, TimeZone};
                let tz: chrono_tz::Tz = match tz.parse() {
                    Ok(z) => z,
                    Err(_) => return self.config.utc_offset_secs,
                };
                let naive = chrono::DateTime::from_timestamp(t, 0)
                    .unwrap_or_default()
                    .naive_utc();
                tz.offset_from_utc_datetime(&naive).fix().local_minus_utc() as i64
            }
            None => self.config.utc_offset_secs,
        }
    }

    /// Finds, merges or opens the session of (tenant, connector, source) that event time `t`
    /// belongs to. Sessions are event-time windows: an event joins a session whose span,
    /// widened by the gap, contains it; one that touches two sessions bridges them into one;
    /// a session never grows past the maximum length. Out-of-order events therefore land in
    /// the same sessions whatever order they arrive in. Returns the session and its
    /// connector's index (the connector is added when new).
    fn session_for(
        &mut self,
        tenant: &str,
        connector: &str,
        ip: Option<IpAddr>,
        activity: Activity,
        t: Secs,
        late: bool,
    ) -> (u64, ConnectorId) {
        let cid = self.connectors.id_or_insert(tenant, connector);
        let gap = self.config.session_gap_secs();
        let max = self.config.session_max_secs();
        let mut touching = std::mem::take(&mut self.touching);
        touching.clear();
        if let Some(ids) = self.by_key.get(&(cid, ip)) {
            touching.extend(ids.iter().copied().filter(|id| {
                let s = &self.sessions[id];
                t >= s.first - gap && t <= s.last + gap
            }));
        }
        let mut chosen: Option<u64> = None;
        for &id in &touching {
            let s = &self.sessions[&id];
            let (first, last) = (s.first.min(t), s.last.max(t));
            match chosen {
                None if last - first <= max => chosen = Some(id),
                Some(c) => {
                    let into = &self.sessions[&c];
                    if into.last.max(last) - into.first.min(first) <= max {
                        let other = self.remove_session(id);
                        let into = self.sessions.get_mut(&c).expect("chosen session");
                        into.merge(other);
                        self.stats.sessions_merged += 1;
                    }
                }
                None => {}
            }
        }
        self.touching = touching;
        let id = match chosen {
            Some(id) => id,
            None => {
                let key = SessionKey {
                    tenant: tenant.to_owned(),
                    connector: connector.to_owned(),
                    source: KeyText::source(ip).as_str().to_owned(),
                };
                self.open_session(key, cid, activity, ip, t, late)
            }
        };
        let s = self.sessions.get_mut(&id).expect("session exists");
        s.first = s.first.min(t);
        s.last = s.last.max(t);
        s.events += 1;
        (id, cid)
    }

    fn open_session(
        &mut self,
        key: SessionKey,
        cid: ConnectorId,
        activity: Activity,
        ip: Option<IpAddr>,
        t: Secs,
        late: bool,
    ) -> u64 {
        if self.sessions.len() >= self.config.max_open_sessions {
            self.evict_oldest();
        }
        let id = self.next_session;
        self.next_session += 1;
        let network = ip.map(prefix_of).unwrap_or_else(|| "none".into());
        let mut s = Session::new(id, key, activity, ip, network, t);
        s.connector_id = cid;
        if let Some(ip) = ip.filter(|i| !is_internal(*i)) {
            let place = self.enrichment.lookup(ip);
            s.asn = place.asn;
            s.org = place.org;
            s.country = place.country;
        }
        if late {
            s.late_events += 1;
        }
        s.connector_name = self
            .config
            .known(&s.key.connector)
            .and_then(|k| k.name.clone());
        self.stats.sessions_opened += 1;
        let state = self.connectors.at_mut(cid);
        if state.baseline.first_seen == 0 || t < state.baseline.first_seen {
            state.baseline.first_seen = t;
        }
        if !state.is_established(&s.network, t) {
            *self.connectors.unlearned_open_mut(cid) += 1;
            pair_keyed::entry(&mut self.unlearned_open, &s.key.tenant, &s.key.connector).insert(id);
        }
        self.by_key.entry((cid, ip)).or_default().push(id);
        // The session's one deadline entry; it moves later only when it comes due (see
        // `pop_due`).
        self.deadlines
            .push(Reverse((t + self.config.session_gap_secs(), id)));
        self.sessions.insert(id, s);
        id
    }

    /// Takes a session out of every index.
    fn remove_session(&mut self, id: u64) -> Session {
        let s = self.sessions.remove(&id).expect("session exists");
        let cid = s.connector_id;
        let slot = (cid, s.ip);
        if let Some(ids) = self.by_key.get_mut(&slot) {
            ids.retain(|x| *x != id);
            if ids.is_empty() {
                self.by_key.remove(&slot);
            }
        }
        let (tenant, connector) = (s.key.tenant.as_str(), s.key.connector.as_str());
        if self.connectors.unlearned_open(cid) > 0 {
            if let Some(set) = pair_keyed::get_mut(&mut self.unlearned_open, tenant, connector) {
                if set.remove(&id) {
                    *self.connectors.unlearned_open_mut(cid) -= 1;
                }
                if set.is_empty() {
                    self.unlearned_open
                        .remove(&(tenant, connector) as &dyn pair_keyed::Pair);
                }
            }
        }
        s
    }

    /// The open session with the earliest current deadline (its last event plus the gap),
    /// taken off the deadline heap, when that deadline is before `before`. Each open session has
    /// one entry, written when it opened; an entry found out of date is moved to the session's
    /// current deadline and one of a closed session dropped, so sessions come out in the order
    /// of their current deadlines without an entry per event.
    fn pop_due(&mut self, before: Secs) -> Option<u64> {
        let gap = self.config.session_gap_secs();
        while let Some(&Reverse((deadline, id))) = self.deadlines.peek() {
            if deadline >= before {
                return None;
            }
            self.deadlines.pop();
            match self.sessions.get(&id).map(|s| s.last + gap) {
                Some(current) if current == deadline => return Some(id),
                Some(current) => self.deadlines.push(Reverse((current, id))),
                None => {}
            }
        }
        None
    }

    /// Closes the open session whose current deadline is the earliest.
    fn evict_oldest(&mut self) {
        if let Some(id) = self.pop_due(Secs::MAX) {
            self.close(id, true);
        }
    }

    fn expire(&mut self) {
        self.release_probation();
        let wm = self.watermark();
        while let Some(id) = self.pop_due(wm) {
            self.close(id, false);
        }
        while let Some((issued, _)) = self.token_order.front() {
            if *issued >= wm - TOKEN_TTL {
                break;
            }
            let (_, id) = self.token_order.pop_front().expect("front exists");
            self.tokens.remove(&id);
        }
    }

    /// Notes the network activity of session `id` of connector `cid` at `t`, and marks
    /// concurrency between a learned network's activity and open sessions of the same connector
    /// from networks it never used.
    fn note_network_activity(&mut self, id: u64, cid: ConnectorId, t: Secs) {
        let learning_secs = self.config.learning_secs();
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let state = self.connectors.at_mut(cid);
        let network = session.network.as_str();
        state.note_network(network, t);
        if t - state.baseline.first_seen < learning_secs {
            return;
        }
        if state.is_established(network, t) {
            if self.connectors.unlearned_open(cid) == 0 {
                return;
            }
            let key = &session.key;
            let candidates: Vec<u64> =
                match pair_keyed::get(&self.unlearned_open, &key.tenant, &key.connector) {
                    Some(set) => set.iter().copied().collect(),
                    None => return,
                };
            let network = network.to_owned();
            for other in candidates {
                let Some(s) = self.sessions.get(&other) else {
                    continue;
                };
                let overlapping =
                    t >= s.first - CONCURRENCY_WINDOW && t <= s.last + CONCURRENCY_WINDOW;
                if s.concurrent_with.is_some() || !overlapping || s.network == network {
                    continue;
                }
                if self.connectors.at(cid).is_established(&s.network, s.first) {
                    continue;
                }
                if let Some(s) = self.sessions.get_mut(&other) {
                    s.concurrent_with = Some(network.clone());
                }
                self.evaluate_session(other, t);
            }
        } else if let Some(n) = state.concurrent_established(network, t, CONCURRENCY_WINDOW) {
            if let Some(s) = self.sessions.get_mut(&id) {
                if s.concurrent_with.is_none() {
                    s.concurrent_with = Some(n);
                    s.next_eval = s.events;
                }
            }
        }
    }

    fn on_access(&mut self, event: &Event, m: &MailboxAccess, t: Secs, late: bool) -> bool {
        if m.throttled {
            self.stats.throttled_mailboxes += 1;
        }
        let Some(connector) = Self::connector_of(m) else {
            return false;
        };
        let tenant = event.tenant_id.as_deref().unwrap_or("unknown");
        let ip = m.client.as_ref().map(|c| c.ip);
        let (key, cid) = self.session_for(tenant, connector, ip, Activity::MailboxAccess, t, late);
        let token = m
            .token_id
            .as_ref()
            .and_then(|id| self.tokens.get(id))
            .cloned();
        if token.is_some() {
            self.stats.tokens_joined += 1;
        }
        let mailbox = m
            .mailbox_upn
            .as_deref()
            .or(m.mailbox_guid.as_deref())
            .map(|mb| (mb, mailbox_hash(tenant, mb)));
        let items = m.operation_count.max(1);
        // One look-up of the connector for everything this event reads or adds there.
        let (learning, known_to_connector) = {
            let state = self.connectors.at_mut(cid);
            let learning = t - state.baseline.first_seen < self.config.learning_secs();
            let known = mailbox.is_some_and(|(_, h)| state.baseline.read.contains(&h));
            state.add_hourly(t, items);
            (learning, known)
        };
        let first_in_tenant = mailbox.map(|(_, h)| {
            let slot = match self.connectors.tenant_slot(cid) {
                Some(slot) => slot,
                None => {
                    let slot = self.tenant_mailbox_first.slot(tenant);
                    self.connectors.set_tenant_slot(cid, slot);
                    slot
                }
            };
            let map = self.tenant_mailbox_first.at_mut(slot);
            if map.len() < MAX_TENANT_MAILBOXES {
                *map.entry(h).or_insert(t)
            } else {
                map.get(&h).copied().unwrap_or(t)
            }
        });
        {
            let s = self.sessions.get_mut(&key).expect("session");
            if let (Some((mb, h)), Some(first_in_tenant)) = (mailbox, first_in_tenant) {
                if s.add_mailbox(h, mb)
                    && !known_to_connector
                    && !learning
                    && t - first_in_tenant > NEW_MAILBOX_GRACE
                {
                    s.new_targets += 1;
                    if s.new_targets.is_power_of_two() {
                        s.next_eval = s.events;
                    }
                }
            }
            s.items += items;
            s.bytes += m.bytes;
            match m.access_type {
                Some(MailAccessType::Bind) => s.binds += 1,
                Some(MailAccessType::Sync) => s.syncs += 1,
                _ => {}
            }
            if let Some(agent) = &m.client_info {
                Session::add_small(&mut s.agents, agent);
            }
            if s.connector_name.is_none() {
                s.connector_name = m.actor.name.clone();
            }
            if let Some(tok) = &token {
                if let Some(k) = &tok.key_id {
                    Session::add_small(&mut s.keys, k);
                }
                if let Some(th) = &tok.thumbprint {
                    Session::add_small(&mut s.thumbprints, th);
                }
            }
            s.add_evidence(&event.id);
        }
        if let Some(k) = token.as_ref().and_then(|t| t.key_id.as_deref()) {
            self.note_key_use(key, cid, k, t);
        }
        self.note_network_activity(key, cid, t);
        if self.sessions.get_mut(&key).is_some_and(|s| s.due()) {
            self.evaluate_session(key, t);
        }
        true
    }

    /// Notes the use of credential `key_id` by session `id` of connector `cid`.
    fn note_key_use(&mut self, id: u64, cid: ConnectorId, key_id: &str, t: Secs) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let grace = self.config.rotation_grace_secs();
        let state = self.connectors.at_mut(cid);
        let learned = state.baseline.networks.get(&session.network).is_some();
        let k = entry_for(&mut state.keys, key_id, || KeyState {
            first: t,
            last_known_source: 0,
            last: t,
            superseded_at: None,
            removed_at: None,
            added: None,
        });
        k.first = k.first.min(t);
        k.last = k.last.max(t);
        if learned {
            k.last_known_source = k.last_known_source.max(t);
        }
        state.update_rotation(t, grace);
    }

    fn on_signin(&mut self, event: &Event, s: &SignIn, t: Secs, late: bool) -> bool {
        if !matches!(
            s.category,
            SignInCategory::ServicePrincipal | SignInCategory::ManagedIdentity
        ) {
            return false;
        }
        let Some(app) = s.actor.app_id.clone() else {
            return false;
        };
        let tenant = event.tenant_id.clone().unwrap_or_else(|| "unknown".into());
        if let Some(token) = &s.token_id {
            if !self.tokens.contains_key(token) {
                self.token_order.push_back((t, token.clone()));
            }
            self.tokens.insert(
                token.clone(),
                Arc::new(TokenInfo {
                    key_id: s.credential_key_id.clone(),
                    thumbprint: s.credential_thumbprint.clone(),
                    issued: t,
                }),
            );
        }
        let ip = s.client.as_ref().map(|c| c.ip);
        let (key, cid) = self.session_for(&tenant, &app, ip, Activity::MailboxAccess, t, late);
        {
            let sess = self.sessions.get_mut(&key).expect("session");
            if sess.connector_name.is_none() {
                sess.connector_name = s.actor.name.clone();
            }
            if sess.country.is_none() {
                sess.country = s.country.clone();
            }
            if let Some(k) = &s.credential_key_id {
                Session::add_small(&mut sess.keys, k);
            }
            if let Some(th) = &s.credential_thumbprint {
                Session::add_small(&mut sess.thumbprints, th);
            }
            if !s.success {
                sess.failed_signins += 1;
            }
            sess.add_evidence(&event.id);
        }
        if let (Some(k), true) = (&s.credential_key_id, s.success) {
            self.note_key_use(key, cid, k, t);
        }
        if let Some(name) = &s.actor.name {
            self.connectors
                .at_mut(cid)
                .name
                .get_or_insert_with(|| name.clone());
        }
        self.note_network_activity(key, cid, t);
        if self.sessions.get_mut(&key).is_some_and(|s| s.due()) {
            self.evaluate_session(key, t);
        }
        true
    }

    fn on_credential_change(&mut self, event: &Event, c: &CredentialChange, t: Secs) -> bool {
        let Some(app) = c
            .target
            .app_id
            .clone()
            .or_else(|| c.target.client_app_id.clone())
        else {
            return false;
        };
        let tenant = event.tenant_id.clone().unwrap_or_else(|| "unknown".into());
        let state = self.connectors.entry(&tenant, &app);
        let by = c.actor.clone().unwrap_or_else(|| "unknown actor".into());
        for k in &c.key_ids_added {
            let entry = state.keys.entry(k.clone()).or_insert(KeyState {
                first: i64::MAX,
                last_known_source: 0,
                last: 0,
                superseded_at: None,
                removed_at: None,
                added: None,
            });
            entry.added = Some((t, by.clone()));
        }
        for k in &c.key_ids_removed {
            if let Some(entry) = state.keys.get_mut(k) {
                entry.removed_at = Some(t);
            } else {
                state.keys.insert(
                    k.clone(),
                    KeyState {
                        first: i64::MAX,
                        last_known_source: 0,
                        last: 0,
                        superseded_at: None,
                        removed_at: Some(t),
                        added: None,
                    },
                );
            }
        }
        true
    }

    fn on_transport(&mut self, event: &Event, tr: &Transport, t: Secs, late: bool) -> bool {
        let Some(hop) = tr.hops.first() else {
            return false;
        };
        let Some(ip) = hop.from_ip else { return false };
        let tenant = tr
            .recipient_domains
            .first()
            .cloned()
            .or_else(|| event.tenant_id.clone())
            .unwrap_or_else(|| "unknown".into());
        let (key, _) = self.session_for(
            &tenant,
            "mail-gateway",
            Some(ip),
            Activity::Transport,
            t,
            late,
        );
        let s = self.sessions.get_mut(&key).expect("session");
        s.items += 1;
        s.bytes += tr.size_bytes;
        let tls = format!(
            "{} {}",
            hop.tls_version
                .map(|v| format!("{v:?}"))
                .unwrap_or_else(|| "no TLS".into()),
            hop.tls_cipher.clone().unwrap_or_default()
        );
        let tls = tls.trim().to_owned();
        if is_weak_tls(hop.tls_version, hop.tls_cipher.as_deref()) || hop.tls_version.is_none() {
            s.weak_tls = Some(tls.clone());
        }
        Session::add_small(&mut s.tls, &tls);
        if tr.auth_results.iter().any(|a| {
            a.method.eq_ignore_ascii_case("dmarc") && a.result.eq_ignore_ascii_case("fail")
        }) {
            s.dmarc_fail += 1;
        }
        s.add_evidence(&event.id);
        if s.due() {
            self.evaluate_session(key, t);
        }
        true
    }

    /// Scores an open session as of `now` without acting on the result; `explain` also writes
    /// the reasons' sentences (see `evaluate_session`).
    fn score_session(&self, id: u64, now: Secs, explain: bool) -> Option<Evaluation> {
        let session = self.sessions.get(&id)?;
        let tenant = &session.key.tenant;
        let state = self.connectors.at(session.connector_id);
        let offset = self.tenant_offset(tenant, session.first);
        let hl = self.config.half_life_secs();
        // One pass over the pools (a level without a pool yet has the prior rate).
        let mut rates = PoolRates {
            ip: 0.5,
            network: 0.5,
            asn: 0.5,
            country: 0.5,
            agent: 0.5,
            key: 0.5,
        };
        for (level, pool) in &self.pools {
            let rate = match level.as_str() {
                "ip" => &mut rates.ip,
                "network" => &mut rates.network,
                "asn" => &mut rates.asn,
                "country" => &mut rates.country,
                "agent" => &mut rates.agent,
                "key" => &mut rates.key,
                _ => continue,
            };
            *rate = pool.rate(now, hl);
        }
        // The decision is as of the latest event it rests on.
        let now = now.max(session.last);
        Some(evaluate(
            session,
            state,
            &ScoringContext {
                config: &self.config,
                rates,
                utc_offset_secs: offset,
                now,
                model: self.model.as_deref(),
                explain,
            },
        ))
    }

    fn evaluate_session(&mut self, id: u64, now: Secs) -> Option<Evaluation> {
        let mut eval = self.score_session(id, now, false)?;
        self.stats.evaluations += 1;
        let threshold = self.config.alert_score();
        let session = self.sessions.get_mut(&id)?;
        let now = now.max(session.last);
        if eval.score > session.best_score {
            session.best_score = eval.score;
        }
        if eval.score < threshold {
            return Some(eval);
        }
        let key = &session.key;
        let suppressed = self.suppressed.contains(&(
            key.tenant.clone(),
            key.connector.clone(),
            key.source.clone(),
        ));
        if !suppressed {
            // Scored without sentences (most evaluations never alert); explain this one.
            eval = self.score_session(id, now, true)?;
            let session = self.sessions.get_mut(&id)?;
            session.quarantined = true;
            let snapshot = session.clone();
            self.connectors
                .at_mut(snapshot.connector_id)
                .suspicious_networks
                .insert(snapshot.network.clone());
            let before = self.probation.len();
            self.probation.retain(|(_, s)| s.key != snapshot.key);
            self.stats.sessions_quarantined += (before - self.probation.len()) as u64;
            self.incidents.record(&snapshot, &eval, now);
        }
        Some(eval)
    }

    fn close(&mut self, id: u64, evicted: bool) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let last = session.last;
        // A last look with everything the session did.
        let last_look = if session.events > 1 && session.next_eval > session.events {
            self.evaluate_session(id, last)
        } else {
            None
        };
        if self.feature_rows.is_some() {
            // Acting on an evaluation changes nothing it is computed from: the last look, when
            // there was one, is the session's row.
            if let Some(eval) = last_look.or_else(|| self.score_session(id, last, false)) {
                let session = &self.sessions[&id];
                let offset = self.tenant_offset(&session.key.tenant, session.first);
                let row = crate::features::session_features(session, &eval, offset);
                self.feature_rows.get_or_insert_with(Vec::new).push(row);
            }
        }
        let session = self.remove_session(id);
        self.stats.sessions_closed += 1;
        self.stats.session_events += session.events;
        if evicted {
            self.stats.sessions_evicted += 1;
        }
        if session.quarantined {
            self.connectors.at_mut(session.connector_id).quarantined += 1;
            self.stats.sessions_quarantined += 1;
            // Kept (bounded) until an analyst's label releases or discards it.
            self.quarantine.push_back(session);
            while self.quarantine.len() > MAX_QUARANTINE {
                self.quarantine.pop_front();
            }
            return;
        }
        if session.best_score >= self.config.probation_score {
            // Suspicious but below alert level: learned only if its source raises no alert
            // for the probation period.
            self.stats.sessions_on_probation += 1;
            let release = session.last + self.config.probation_secs();
            self.probation.push_back((release, session));
            while self.probation.len() > MAX_PROBATION {
                let (_, s) = self.probation.pop_front().expect("non-empty");
                self.learn(s);
            }
            return;
        }
        self.learn(session);
    }

    /// Releases probation sessions whose period ended.
    fn release_probation(&mut self) {
        let wm = self.watermark();
        while self
            .probation
            .front()
            .is_some_and(|(release, _)| *release < wm)
        {
            let (_, s) = self.probation.pop_front().expect("non-empty");
            self.learn(s);
        }
    }

    /// Folds a closed session into its connector's baseline.
    fn learn(&mut self, session: Session) {
        let key = &session.key;
        let hl = self.config.half_life_secs();
        let learning_secs = self.config.learning_secs();
        let grace = self.config.rotation_grace_secs();
        let offset = self.tenant_offset(&key.tenant, session.first);
        let state = self.connectors.at_mut(session.connector_id);
        let b = &mut state.baseline;
        let t = session.last;
        let learning = t - b.first_seen < learning_secs;
        b.last_seen = b.last_seen.max(t);
        b.sessions += 1;
        // After the learning period, whether each value was new feeds its level's pool.
        let pools = &mut self.pools;
        let mut novel = |level: &str, was_new: bool| {
            if learning {
                return;
            }
            match pools.get_mut(level) {
                Some(pool) => pool.observe(was_new, t, hl),
                None => pools
                    .entry(level.to_owned())
                    .or_default()
                    .observe(was_new, t, hl),
            }
        };
        if let Some(ip) = session.ip {
            let ip = KeyText::ip(ip);
            novel(
                "ip",
                b.ips.observe(ip.as_str(), t, hl, learning, MAX_VALUES),
            );
        }
        novel(
            "network",
            b.networks
                .observe(&session.network, t, hl, learning, MAX_VALUES),
        );
        if let Some(a) = session.asn {
            let asn = KeyText::asn(a);
            novel(
                "asn",
                b.asns.observe(asn.as_str(), t, hl, learning, MAX_VALUES),
            );
        }
        if let Some(c) = &session.country {
            novel(
                "country",
                b.countries.observe(c, t, hl, learning, MAX_VALUES),
            );
        }
        for a in &session.agents {
            novel("agent", b.agents.observe(a, t, hl, learning, MAX_VALUES));
        }
        for k in &session.keys {
            novel("key", b.keys.observe(k, t, hl, learning, MAX_VALUES));
        }
        for tls in &session.tls {
            b.tls.observe(tls, t, hl, learning, MAX_VALUES);
        }
        if session.activity == Activity::MailboxAccess
            && (session.items > 0 || !session.mailboxes.is_empty())
        {
            b.items.observe(session.items as f64, t, hl);
            if b.items_by_hour.len() != 24 {
                b.items_by_hour = vec![Default::default(); 24];
            }
            let hour = hour_of_week(session.first, offset) % 24;
            b.items_by_hour[hour].observe(session.items as f64, t, hl);
            b.mailboxes.observe(session.mailboxes.len() as f64, t, hl);
            if !learning {
                b.new_targets.observe(session.new_targets as f64, t, hl);
            }
        }
        b.week
            .observe(hour_of_week(session.first, offset), 1.0, t, hl);
        for h in &session.mailboxes {
            if b.read.len() >= MAX_MAILBOXES {
                break;
            }
            b.read.insert(*h);
        }
        // Keys used by this (now learned) source count as used from a known source.
        for k in &session.keys {
            if let Some(ks) = state.keys.get_mut(k) {
                ks.last_known_source = ks.last_known_source.max(session.last);
            }
        }
        state.update_rotation(t, grace);
    }
}

#[cfg(test)]
mod tests {
    use super::mailbox_hash;

    #[test]
    fn mailbox_hash_is_the_hash_of_tenant_bar_lower_cased_mailbox_at_any_length() {
        for mailbox in ["Alice@Contoso.example".to_owned(), "B".repeat(300)] {
            let text = format!("tenant-1|{}", mailbox.to_ascii_lowercase());
            assert_eq!(
                mailbox_hash("tenant-1", &mailbox),
                xxhash_rust::xxh3::xxh3_64(text.as_bytes())
            );
        }
    }
}
