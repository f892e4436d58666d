//! Connector sessions: one connector's events from one source until an inactivity gap or a
//! maximum length, on event time.

use crate::baseline::Secs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Caps on what one session remembers.
const MAX_SESSION_MAILBOXES: usize = 50_000;
const MAX_SMALL_SET: usize = 16;
/// Event ids kept as evidence per session.
pub const MAX_EVIDENCE: usize = 8;

/// Identifies a session: tenant, connector, source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionKey {
    /// Tenant id (or recipient domain for transport).
    pub tenant: String,
    /// Connector key (app id, service account, `mail-gateway`).
    pub connector: String,
    /// Source address (`none` when the log had none).
    pub source: String,
}

/// What kind of connector activity a session holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activity {
    /// Mailbox reads and sign-ins of an app or service account.
    MailboxAccess,
    /// Relayed mail.
    Transport,
}

/// An open (or just closed) session with its running features.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Unique id (in order of opening).
    pub id: u64,
    /// Key.
    pub key: SessionKey,
    /// Kind.
    pub activity: Activity,
    /// Source IP.
    pub ip: Option<IpAddr>,
    /// Source network (/24, /48) or `none`.
    pub network: String,
    /// ASN when known.
    pub asn: Option<u32>,
    /// AS organisation when known.
    pub org: Option<String>,
    /// Country when known.
    pub country: Option<String>,
    /// First event time.
    pub first: Secs,
    /// Last event time.
    pub last: Secs,
    /// Events.
    pub events: u64,
    /// Items (operation count).
    pub items: u64,
    /// Bytes.
    pub bytes: u64,
    /// Mailboxes (hashed).
    pub mailboxes: BTreeSet<u64>,
    /// A few mailbox names, for the analyst.
    pub mailbox_names: Vec<String>,
    /// Mailboxes new to the connector but known to the tenant.
    pub new_targets: u64,
    /// User agents.
    pub agents: Vec<String>,
    /// Credential key ids (from sign-ins and the token join).
    pub keys: Vec<String>,
    /// Certificate thumbprints.
    pub thumbprints: Vec<String>,
    /// Sign-ins that failed.
    pub failed_signins: u64,
    /// Binds and Syncs.
    pub binds: u64,
    /// Sync operations.
    pub syncs: u64,
    /// Weakest TLS seen on the delivering hop (transport).
    pub weak_tls: Option<String>,
    /// TLS descriptions seen (transport).
    pub tls: Vec<String>,
    /// Messages failing DMARC (transport).
    pub dmarc_fail: u64,
    /// A learned network of the same connector was active at the same time (and which).
    pub concurrent_with: Option<String>,
    /// Evidence event ids.
    pub event_ids: Vec<String>,
    /// Evaluate again when `events` reaches this.
    pub next_eval: u64,
    /// Best score so far.
    pub best_score: u8,
    /// Held back from learning.
    pub quarantined: bool,
    /// Events that arrived after the watermark had passed them.
    pub late_events: u64,
    /// Connector display name, when a log named it.
    pub connector_name: Option<String>,
    /// Its connector's index in the detector's table, so learning and scoring reach the
    /// connector without finding it by name. Not written: the detector sets it again when it
    /// restores.
    #[serde(skip)]
    pub(crate) connector_id: crate::connector_table::ConnectorId,
}

impl Session {
    /// A new session.
    pub fn new(
        id: u64,
        key: SessionKey,
        activity: Activity,
        ip: Option<IpAddr>,
        network: String,
        time: Secs,
    ) -> Self {
        Session {
            id,
            key,
            activity,
            ip,
            network,
            asn: None,
            org: None,
            country: None,
            first: time,
            last: time,
            events: 0,
            items: 0,
            bytes: 0,
            mailboxes: BTreeSet::new(),
            mailbox_names: Vec::new(),
            new_targets: 0,
            agents: Vec::new(),
            keys: Vec::new(),
            thumbprints: Vec::new(),
            failed_signins: 0,
            binds: 0,
            syncs: 0,
            weak_tls: None,
            tls: Vec::new(),
            dmarc_fail: 0,
            concurrent_with: None,
            event_ids: Vec::new(),
            next_eval: 1,
            best_score: 0,
            quarantined: false,
            late_events: 0,
            connector_name: None,
            connector_id: 0,
        }
    }

    /// Adds a mailbox; returns true when it is new to the session.
    pub fn add_mailbox(&mut self, hash: u64, name: &str) -> bool {
        if self.mailboxes.len() >= MAX_SESSION_MAILBOXES {
            return false;
        }
        let added = self.mailboxes.insert(hash);
        if added && self.mailbox_names.len() < 5 {
            self.mailbox_names.push(name.to_owned());
        }
        added
    }

    /// Adds to a small bounded set.
    /// Small sets are vectors: a handful of values, searched linearly, without a tree node
    /// per session.
    pub fn add_small(set: &mut Vec<String>, value: &str) {
        if set.len() < MAX_SMALL_SET && !set.iter().any(|v| v == value) {
            set.push(value.to_owned());
        }
    }

    /// Keeps an event id as evidence.
    pub fn add_evidence(&mut self, id: &str) {
        if self.event_ids.len() < MAX_EVIDENCE {
            self.event_ids.push(id.to_owned());
        }
    }

    /// Takes in another session of the same key whose time range touched this one (an
    /// out-of-order event bridged them).
    pub fn merge(&mut self, other: Session) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.events += other.events;
        self.items += other.items;
        self.bytes += other.bytes;
        for h in other.mailboxes {
            if self.mailboxes.len() >= MAX_SESSION_MAILBOXES {
                break;
            }
            self.mailboxes.insert(h);
        }
        for n in &other.mailbox_names {
            if self.mailbox_names.len() < 5 {
                Session::add_small(&mut self.mailbox_names, n);
            }
        }
        self.new_targets += other.new_targets;
        for a in &other.agents {
            Session::add_small(&mut self.agents, a);
        }
        for k in &other.keys {
            Session::add_small(&mut self.keys, k);
        }
        for t in &other.thumbprints {
            Session::add_small(&mut self.thumbprints, t);
        }
        for t in &other.tls {
            Session::add_small(&mut self.tls, t);
        }
        self.failed_signins += other.failed_signins;
        self.binds += other.binds;
        self.syncs += other.syncs;
        self.weak_tls = self.weak_tls.take().or(other.weak_tls);
        self.dmarc_fail += other.dmarc_fail;
        self.concurrent_with = self.concurrent_with.take().or(other.concurrent_with);
        for id in other.event_ids {
            self.add_evidence(&id);
        }
        self.best_score = self.best_score.max(other.best_score);
        self.quarantined |= other.quarantined;
        self.late_events += other.late_events;
        self.connector_name = self.connector_name.take().or(other.connector_name);
        self.next_eval = self.events;
    }

    /// Should the session be scored now? At events 1, 2, 4, 8, … so a long session costs
    /// a logarithmic number of evaluations.
    pub fn due(&mut self) -> bool {
        if self.events >= self.next_eval {
            self.next_eval = (self.next_eval * 2).max(self.events + 1);
            true
        } else {
            false
        }
    }
}
