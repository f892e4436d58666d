//! The alert store on PostgreSQL, so several mailsentry instances share one feed (one
//! sequence, taken under a row lock in each commit's transaction), one triage state and one UI.
//! Same behaviour as the SQLite store; tested against a real server on loopback.

use crate::{
    detector_view, new_token, sha256_hex, validate_triage, AlertStore, FeedPage, Result, Scope,
    StoreCounts, StoreError, StoredAlert, Triage,
};
use chrono::Utc;
use mailsentry_events::Alert;
use postgres::{Client, NoTls};
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// The PostgreSQL store.
pub struct PgStore {
    client: Mutex<Client>,
}

fn pg(e: postgres::Error) -> StoreError {
    StoreError::Invalid(format!("postgres: {e}"))
}

impl PgStore {
    /// Connects (a libpq-style connection string, e.g. `host=/var/run/postgresql dbname=ms`)
    /// and creates the tables when missing.
    pub fn connect(params: &str) -> Result<PgStore> {
        let mut client = Client::connect(params, NoTls).map_err(pg)?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS ms_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
                 INSERT INTO ms_meta (key, value) VALUES ('seq', 0) ON CONFLICT (key) DO NOTHING;
                 CREATE TABLE IF NOT EXISTS ms_alerts (
                     id TEXT PRIMARY KEY, seq BIGINT NOT NULL UNIQUE, severity TEXT NOT NULL,
                     detected_at TEXT NOT NULL, tenant_id TEXT NOT NULL, connector TEXT NOT NULL,
                     status TEXT NOT NULL, label TEXT, detector_json TEXT NOT NULL, json TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS ms_triage_history (
                     alert_id TEXT NOT NULL REFERENCES ms_alerts (id), at TEXT NOT NULL, actor TEXT NOT NULL,
                     status TEXT NOT NULL, label TEXT, note TEXT);
                 CREATE TABLE IF NOT EXISTS ms_tokens (hash TEXT PRIMARY KEY, name TEXT NOT NULL, scopes TEXT NOT NULL, created_at TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS ms_checkpoints (name TEXT PRIMARY KEY, saved_at TEXT NOT NULL, data BYTEA NOT NULL);",
            )
            .map_err(pg)?;
        Ok(PgStore {
            client: Mutex::new(client),
        })
    }

    fn client(&self) -> std::sync::MutexGuard<'_, Client> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn next_seq(tx: &mut postgres::Transaction<'_>) -> Result<u64> {
    let row = tx
        .query_one(
            "UPDATE ms_meta SET value = value + 1 WHERE key = 'seq' RETURNING value",
            &[],
        )
        .map_err(pg)?;
    Ok(row.get::<_, i64>(0) as u64)
}

fn parse(id: String, seq: i64, json: &str) -> Result<StoredAlert> {
    let alert = serde_json::from_str(json).map_err(|source| StoreError::Corrupt { id, source })?;
    Ok(StoredAlert {
        seq: seq as u64,
        alert,
    })
}

/// Runs a store call on a thread of its own. The `postgres` client drives its connection with a
/// runtime of its own, which may not be started from inside another runtime's thread — and the
/// server calls the store from its async handlers. A scoped thread costs microseconds; a round
/// trip to PostgreSQL costs more.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

impl AlertStore for PgStore {
    fn upsert_alerts(&self, alerts: &[Alert]) -> Result<usize> {
        off_runtime(|| {
            let mut client = self.client();
            let mut tx = client.transaction().map_err(pg)?;
            let mut changed = 0;
            for a in alerts {
                let view = detector_view(a);
                let existing = tx
                    .query_opt(
                        "SELECT detector_json, status, label FROM ms_alerts WHERE id = $1",
                        &[&a.id],
                    )
                    .map_err(pg)?;
                let mut stored = a.clone();
                if let Some(row) = &existing {
                    if row.get::<_, String>(0) == view {
                        continue;
                    }
                    stored.status = row.get(1);
                    stored.label = row.get(2);
                }
                let seq = next_seq(&mut tx)? as i64;
                let json = serde_json::to_string(&stored).expect("alert serializes");
                tx.execute(
                    "INSERT INTO ms_alerts (id, seq, severity, detected_at, tenant_id, connector, status, label, detector_json, json)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, severity = excluded.severity,
                         detected_at = excluded.detected_at, detector_json = excluded.detector_json, json = excluded.json",
                    &[
                        &stored.id,
                        &seq,
                        &stored.severity.name(),
                        &stored.detected_at.to_rfc3339(),
                        &stored.tenant_id,
                        &stored.connector.app_id,
                        &stored.status,
                        &stored.label,
                        &view,
                        &json,
                    ],
                )
                .map_err(pg)?;
                changed += 1;
            }
            tx.commit().map_err(pg)?;
            Ok(changed)
        })
    }

    fn feed(&self, cursor: u64, limit: usize) -> Result<FeedPage> {
        off_runtime(|| {
            let limit = limit.clamp(1, 1000);
            let rows = self
                .client()
                .query(
                    "SELECT id, seq, json FROM ms_alerts WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&(cursor as i64), &(limit as i64 + 1)],
                )
                .map_err(pg)?;
            let has_more = rows.len() > limit;
            let mut items = Vec::new();
            for row in rows.into_iter().take(limit) {
                items.push(parse(row.get(0), row.get(1), &row.get::<_, String>(2))?);
            }
            let next_cursor = items.last().map_or(cursor, |i| i.seq);
            Ok(FeedPage {
                items,
                next_cursor,
                has_more,
            })
        })
    }

    fn get(&self, id: &str) -> Result<Option<StoredAlert>> {
        off_runtime(|| {
            let row = self
                .client()
                .query_opt("SELECT id, seq, json FROM ms_alerts WHERE id = $1", &[&id])
                .map_err(pg)?;
            row.map(|r| parse(r.get(0), r.get(1), &r.get::<_, String>(2)))
                .transpose()
        })
    }

    fn triage(&self, id: &str, t: &Triage, actor: &str) -> Result<Option<StoredAlert>> {
        off_runtime(|| {
            validate_triage(t)?;
            let mut client = self.client();
            let mut tx = client.transaction().map_err(pg)?;
            let Some(row) = tx
                .query_opt(
                    "SELECT json FROM ms_alerts WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .map_err(pg)?
            else {
                return Ok(None);
            };
            let mut alert: Alert =
                serde_json::from_str(&row.get::<_, String>(0)).map_err(|source| {
                    StoreError::Corrupt {
                        id: id.to_owned(),
                        source,
                    }
                })?;
            alert.status = t.status.clone();
            if t.label.is_some() {
                alert.label = t.label.clone();
            }
            let seq = next_seq(&mut tx)?;
            let json = serde_json::to_string(&alert).expect("alert serializes");
            tx.execute(
                "UPDATE ms_alerts SET seq = $2, status = $3, label = $4, json = $5 WHERE id = $1",
                &[&id, &(seq as i64), &alert.status, &alert.label, &json],
            )
            .map_err(pg)?;
            tx.execute(
                "INSERT INTO ms_triage_history (alert_id, at, actor, status, label, note) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&id, &Utc::now().to_rfc3339(), &actor, &t.status, &t.label, &t.note],
            )
            .map_err(pg)?;
            tx.commit().map_err(pg)?;
            Ok(Some(StoredAlert { seq, alert }))
        })
    }

    fn create_token(&self, name: &str, scopes: &[Scope]) -> Result<String> {
        off_runtime(|| {
            if scopes.is_empty() {
                return Err(StoreError::Invalid(
                    "a token needs at least one scope".into(),
                ));
            }
            let token = new_token();
            let names: Vec<&str> = scopes.iter().map(|s| s.name()).collect();
            self.client()
                .execute(
                    "INSERT INTO ms_tokens (hash, name, scopes, created_at) VALUES ($1, $2, $3, $4)",
                    &[
                        &sha256_hex(&token),
                        &name,
                        &names.join(","),
                        &Utc::now().to_rfc3339(),
                    ],
                )
                .map_err(pg)?;
            Ok(token)
        })
    }

    fn token_scopes(&self, presented: &str) -> Result<Option<Vec<Scope>>> {
        off_runtime(|| {
            let hash = sha256_hex(presented);
            let row = self
                .client()
                .query_opt(
                    "SELECT hash, scopes FROM ms_tokens WHERE hash = $1",
                    &[&hash],
                )
                .map_err(pg)?;
            Ok(row
                .filter(|r| bool::from(r.get::<_, String>(0).as_bytes().ct_eq(hash.as_bytes())))
                .map(|r| {
                    r.get::<_, String>(1)
                        .split(',')
                        .filter_map(Scope::parse)
                        .collect()
                }))
        })
    }

    fn save_checkpoint(&self, name: &str, data: &[u8]) -> Result<()> {
        off_runtime(|| {
            self.client()
                .execute(
                    "INSERT INTO ms_checkpoints (name, saved_at, data) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET saved_at = excluded.saved_at, data = excluded.data",
                    &[&name, &Utc::now().to_rfc3339(), &data],
                )
                .map_err(pg)?;
            Ok(())
        })
    }

    fn load_checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>> {
        off_runtime(|| {
            Ok(self
                .client()
                .query_opt("SELECT data FROM ms_checkpoints WHERE name = $1", &[&name])
                .map_err(pg)?
                .map(|r| r.get(0)))
        })
    }

    fn counts(&self) -> Result<StoreCounts> {
        off_runtime(|| {
            let mut client = self.client();
            let by_severity = client
                .query(
                    "SELECT severity, COUNT(*) FROM ms_alerts GROUP BY severity ORDER BY severity",
                    &[],
                )
                .map_err(pg)?
                .into_iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
                .collect();
            let sequence = client
                .query_one("SELECT value FROM ms_meta WHERE key = 'seq'", &[])
                .map_err(pg)?
                .get::<_, i64>(0) as u64;
            Ok(StoreCounts {
                by_severity,
                sequence,
            })
        })
    }
}
