//! The durable alert store: SQLite (bundled) in WAL mode with `synchronous=FULL`, so a commit
//! survives a crash.
//!
//! - Alerts are kept as their native JSON with a **feed sequence** assigned at commit: every
//!   insert or change (the detector growing an incident, an analyst triaging it) takes the next
//!   sequence number, so a feed reader that remembers the last sequence it saw gets every change
//!   at least once, in commit order.
//! - Triage (status, label, note, who, when) is kept with its history and survives the detector
//!   re-emitting the alert.
//! - API tokens are stored as SHA-256 hashes with their scopes; the plain token is shown once.
//! - Detector checkpoints (its JSON snapshot) are kept by name.

use chrono::{DateTime, Utc};
use mailsentry_events::Alert;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

pub mod postgres_store;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored alert could not be read back.
    #[error("store: alert {id} is not valid JSON: {source}")]
    Corrupt {
        /// Alert id.
        id: String,
        /// Cause.
        source: serde_json::Error,
    },
    /// A request named something invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Result type of the store.
pub type Result<T> = std::result::Result<T, StoreError>;

/// API scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Send events.
    Ingest,
    /// Read alerts, connectors, metrics.
    Read,
    /// Triage alerts.
    Triage,
    /// Everything, including tokens and re-baselining.
    Admin,
}

impl Scope {
    /// Parses `ingest`, `read`, `triage`, `admin`.
    pub fn parse(s: &str) -> Option<Scope> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ingest" => Some(Scope::Ingest),
            "read" => Some(Scope::Read),
            "triage" => Some(Scope::Triage),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Triage => "triage",
            Scope::Admin => "admin",
        }
    }
}

/// Does a token with `granted` scopes allow `needed`? Admin allows everything.
pub fn allows(granted: &[Scope], needed: Scope) -> bool {
    granted.contains(&Scope::Admin) || granted.contains(&needed)
}

/// An alert as stored, with its feed sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAlert {
    /// Feed sequence of its last change.
    pub seq: u64,
    /// The alert (status and label as triaged).
    pub alert: Alert,
}

/// One page of the feed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedPage {
    /// Alerts changed after the cursor, in sequence order.
    pub items: Vec<StoredAlert>,
    /// The cursor to ask with next (the same cursor when the page is empty).
    pub next_cursor: u64,
    /// More items are waiting.
    pub has_more: bool,
}

/// One triage action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Triage {
    /// New status: `new`, `acknowledged`, `closed`.
    pub status: String,
    /// Label: `true_positive`, `benign_true_positive`, `false_positive`.
    #[serde(default)]
    pub label: Option<String>,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// Statuses an alert may have.
pub const STATUSES: [&str; 3] = ["new", "acknowledged", "closed"];
/// Labels an analyst may give.
pub const LABELS: [&str; 3] = ["true_positive", "benign_true_positive", "false_positive"];

/// Counts for metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreCounts {
    /// Alerts by severity.
    pub by_severity: Vec<(String, u64)>,
    /// Current feed sequence.
    pub sequence: u64,
}

/// What the service needs from an alert store. [`Store`] (SQLite) is the default;
/// [`postgres_store::PgStore`] lets several instances share one feed and one UI.
pub trait AlertStore: Send + Sync {
    /// See [`Store::upsert_alerts`].
    fn upsert_alerts(&self, alerts: &[Alert]) -> Result<usize>;
    /// See [`Store::feed`].
    fn feed(&self, cursor: u64, limit: usize) -> Result<FeedPage>;
    /// See [`Store::get`].
    fn get(&self, id: &str) -> Result<Option<StoredAlert>>;
    /// See [`Store::triage`].
    fn triage(&self, id: &str, t: &Triage, actor: &str) -> Result<Option<StoredAlert>>;
    /// See [`Store::create_token`].
    fn create_token(&self, name: &str, scopes: &[Scope]) -> Result<String>;
    /// See [`Store::token_scopes`].
    fn token_scopes(&self, presented: &str) -> Result<Option<Vec<Scope>>>;
    /// See [`Store::save_checkpoint`].
    fn save_checkpoint(&self, name: &str, data: &[u8]) -> Result<()>;
    /// See [`Store::load_checkpoint`].
    fn load_checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// See [`Store::counts`].
    fn counts(&self) -> Result<StoreCounts>;
}

impl AlertStore for Store {
    fn upsert_alerts(&self, alerts: &[Alert]) -> Result<usize> {
        Store::upsert_alerts(self, alerts)
    }
    fn feed(&self, cursor: u64, limit: usize) -> Result<FeedPage> {
        Store::feed(self, cursor, limit)
    }
    fn get(&self, id: &str) -> Result<Option<StoredAlert>> {
        Store::get(self, id)
    }
    fn triage(&self, id: &str, t: &Triage, actor: &str) -> Result<Option<StoredAlert>> {
        Store::triage(self, id, t, actor)
    }
    fn create_token(&self, name: &str, scopes: &[Scope]) -> Result<String> {
        Store::create_token(self, name, scopes)
    }
    fn token_scopes(&self, presented: &str) -> Result<Option<Vec<Scope>>> {
        Store::token_scopes(self, presented)
    }
    fn save_checkpoint(&self, name: &str, data: &[u8]) -> Result<()> {
        Store::save_checkpoint(self, name, data)
    }
    fn load_checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Store::load_checkpoint(self, name)
    }
    fn counts(&self) -> Result<StoreCounts> {
        Store::counts(self)
    }
}

/// Checks a triage request; the error names what is wrong.
pub(crate) fn validate_triage(t: &Triage) -> Result<()> {
    if !STATUSES.contains(&t.status.as_str()) {
        return Err(StoreError::Invalid(format!(
            "status {:?} is not one of {}",
            t.status,
            STATUSES.join(", ")
        )));
    }
    if let Some(l) = &t.label {
        if !LABELS.contains(&l.as_str()) {
            return Err(StoreError::Invalid(format!(
                "label {l:?} is not one of {}",
                LABELS.join(", ")
            )));
        }
    }
    Ok(())
}

/// A new random token (`mst_` + 32 random bytes, base64url).
pub(crate) fn new_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    format!(
        "mst_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

/// The store.
pub struct Store {
    conn: Mutex<Connection>,
}

pub(crate) fn sha256_hex(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares a presented token with a known one in constant time (over their SHA-256 hashes,
/// so lengths do not leak either).
pub fn token_matches(presented: &str, known: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(known.as_bytes());
    a.ct_eq(&b).into()
}

/// The part of an alert that the detector owns (everything but triage and wall time), to tell
/// a real change from a re-emission.
pub(crate) fn detector_view(a: &Alert) -> String {
    let mut copy = a.clone();
    copy.status = String::new();
    copy.label = None;
    copy.created_at = DateTime::<Utc>::default();
    serde_json::to_string(&copy).expect("alert serializes")
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', 0);
             CREATE TABLE IF NOT EXISTS alerts (
                 id TEXT PRIMARY KEY,
                 seq INTEGER NOT NULL UNIQUE,
                 severity TEXT NOT NULL,
                 detected_at TEXT NOT NULL,
                 tenant_id TEXT NOT NULL,
                 connector TEXT NOT NULL,
                 status TEXT NOT NULL,
                 label TEXT,
                 detector_json TEXT NOT NULL,
                 json TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS alerts_seq ON alerts (seq);
             CREATE TABLE IF NOT EXISTS triage_history (
                 alert_id TEXT NOT NULL REFERENCES alerts (id),
                 at TEXT NOT NULL,
                 actor TEXT NOT NULL,
                 status TEXT NOT NULL,
                 label TEXT,
                 note TEXT
             );
             CREATE TABLE IF NOT EXISTS tokens (
                 hash TEXT PRIMARY KEY,
                 name TEXT NOT NULL,
                 scopes TEXT NOT NULL,
                 created_at TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS checkpoints (
                 name TEXT PRIMARY KEY,
                 saved_at TEXT NOT NULL,
                 data BLOB NOT NULL
             );",
        )?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts new alerts and updates changed ones in one transaction; each insert or change
    /// takes the next feed sequence. Triage (status, label) already in the store is kept.
    /// Returns how many alerts were new or changed.
    pub fn upsert_alerts(&self, alerts: &[Alert]) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut changed = 0;
        for a in alerts {
            let view = detector_view(a);
            let existing: Option<(String, String, Option<String>)> = tx
                .query_row(
                    "SELECT detector_json, status, label FROM alerts WHERE id = ?1",
                    params![a.id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let mut stored = a.clone();
            if let Some((old_view, status, label)) = &existing {
                if *old_view == view {
                    continue;
                }
                stored.status = status.clone();
                stored.label = label.clone();
            }
            let seq: u64 = tx.query_row(
                "UPDATE meta SET value = value + 1 WHERE key = 'seq' RETURNING value",
                [],
                |r| r.get(0),
            )?;
            let json = serde_json::to_string(&stored).expect("alert serializes");
            tx.execute(
                "INSERT INTO alerts (id, seq, severity, detected_at, tenant_id, connector, status, label, detector_json, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, severity = excluded.severity,
                     detected_at = excluded.detected_at, detector_json = excluded.detector_json,
                     json = excluded.json",
                params![
                    stored.id,
                    seq,
                    stored.severity.name(),
                    stored.detected_at.to_rfc3339(),
                    stored.tenant_id,
                    stored.connector.app_id,
                    stored.status,
                    stored.label,
                    view,
                    json
                ],
            )?;
            changed += 1;
        }
        tx.commit()?;
        Ok(changed)
    }

    fn row_to_stored(id: String, seq: u64, json: String) -> Result<StoredAlert> {
        let alert =
            serde_json::from_str(&json).map_err(|source| StoreError::Corrupt { id, source })?;
        Ok(StoredAlert { seq, alert })
    }

    /// Alerts changed after `cursor`, oldest change first, at most `limit`.
    pub fn feed(&self, cursor: u64, limit: usize) -> Result<FeedPage> {
        let limit = limit.clamp(1, 1000);
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, seq, json FROM alerts WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows: Vec<(String, u64, String)> = stmt
            .query_map(params![cursor, limit as u64 + 1], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<std::result::Result<_, _>>()?;
        let has_more = rows.len() > limit;
        let mut items = Vec::with_capacity(rows.len().min(limit));
        for (id, seq, json) in rows.into_iter().take(limit) {
            items.push(Self::row_to_stored(id, seq, json)?);
        }
        let next_cursor = items.last().map_or(cursor, |i| i.seq);
        Ok(FeedPage {
            items,
            next_cursor,
            has_more,
        })
    }

    /// One alert.
    pub fn get(&self, id: &str) -> Result<Option<StoredAlert>> {
        let conn = self.conn();
        let row: Option<(String, u64, String)> = conn
            .query_row(
                "SELECT id, seq, json FROM alerts WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        row.map(|(id, seq, json)| Self::row_to_stored(id, seq, json))
            .transpose()
    }

    /// Records a triage action by `actor`; the alert takes a new feed sequence. `None` when
    /// there is no such alert.
    pub fn triage(&self, id: &str, t: &Triage, actor: &str) -> Result<Option<StoredAlert>> {
        validate_triage(t)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let row: Option<String> = tx
            .query_row("SELECT json FROM alerts WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(json) = row else { return Ok(None) };
        let mut alert: Alert =
            serde_json::from_str(&json).map_err(|source| StoreError::Corrupt {
                id: id.to_owned(),
                source,
            })?;
        alert.status = t.status.clone();
        if t.label.is_some() {
            alert.label = t.label.clone();
        }
        let seq: u64 = tx.query_row(
            "UPDATE meta SET value = value + 1 WHERE key = 'seq' RETURNING value",
            [],
            |r| r.get(0),
        )?;
        tx.execute(
            "UPDATE alerts SET seq = ?2, status = ?3, label = ?4, json = ?5 WHERE id = ?1",
            params![
                id,
                seq,
                alert.status,
                alert.label,
                serde_json::to_string(&alert).expect("alert serializes")
            ],
        )?;
        tx.execute(
            "INSERT INTO triage_history (alert_id, at, actor, status, label, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, Utc::now().to_rfc3339(), actor, t.status, t.label, t.note],
        )?;
        tx.commit()?;
        Ok(Some(StoredAlert { seq, alert }))
    }

    /// Creates an API token with `scopes`; returns the token, which is not stored (only its
    /// SHA-256 hash is).
    pub fn create_token(&self, name: &str, scopes: &[Scope]) -> Result<String> {
        if scopes.is_empty() {
            return Err(StoreError::Invalid(
                "a token needs at least one scope".into(),
            ));
        }
        let token = new_token();
        let names: Vec<&str> = scopes.iter().map(|s| s.name()).collect();
        self.conn().execute(
            "INSERT INTO tokens (hash, name, scopes, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                sha256_hex(&token),
                name,
                names.join(","),
                Utc::now().to_rfc3339()
            ],
        )?;
        Ok(token)
    }

    /// The scopes of a presented token, `None` when it is unknown.
    pub fn token_scopes(&self, presented: &str) -> Result<Option<Vec<Scope>>> {
        let hash = sha256_hex(presented);
        let row: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT hash, scopes FROM tokens WHERE hash = ?1",
                params![hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row
            .filter(|(stored, _)| bool::from(stored.as_bytes().ct_eq(hash.as_bytes())))
            .map(|(_, scopes)| scopes.split(',').filter_map(Scope::parse).collect()))
    }

    /// Saves a checkpoint.
    pub fn save_checkpoint(&self, name: &str, data: &[u8]) -> Result<()> {
        self.conn().execute(
            "INSERT INTO checkpoints (name, saved_at, data) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET saved_at = excluded.saved_at, data = excluded.data",
            params![name, Utc::now().to_rfc3339(), data],
        )?;
        Ok(())
    }

    /// Loads a checkpoint.
    pub fn load_checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT data FROM checkpoints WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Alerts by severity and the current feed sequence.
    pub fn counts(&self) -> Result<StoreCounts> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT severity, COUNT(*) FROM alerts GROUP BY severity ORDER BY severity",
        )?;
        let by_severity = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?
            .collect::<std::result::Result<_, _>>()?;
        let sequence =
            conn.query_row("SELECT value FROM meta WHERE key = 'seq'", [], |r| r.get(0))?;
        Ok(StoreCounts {
            by_severity,
            sequence,
        })
    }
}
