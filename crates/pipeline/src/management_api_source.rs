//! The Office 365 Management Activity API as a source: OAuth2 client credentials, the
//! subscriptions it needs, content listing in windows of at most 24 hours following
//! `NextPageUri`, blob downloads, throttling (429 / AF429) with backoff, a refreshed token on
//! 401, expired content skipped and counted, records deduplicated on their `Id`, and a cursor
//! (window end per content type, plus the recently seen ids) persisted in the store so a
//! restart neither loses nor repeats records.

use mailsentry_events::Event;
use mailsentry_ingest::{decode_bytes, DecodeOptions, Decoded};
use mailsentry_store::AlertStore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where and how to read.
#[derive(Debug, Clone)]
pub struct ManagementApiConfig {
    /// Entra tenant id.
    pub tenant_id: String,
    /// App (client) id.
    pub client_id: String,
    /// How the app proves itself.
    pub credential: ClientCredential,
    /// Token endpoint (sovereign clouds differ).
    pub token_url: String,
    /// API base (`https://manage.office.com`, or a sovereign cloud's).
    pub api_base: String,
    /// Content types to read.
    pub content_types: Vec<String>,
    /// How far back to start on the first run (at most 7 days: the API's limit).
    pub lookback: Duration,
    /// Blobs downloaded at once.
    pub max_concurrent_downloads: usize,
}

/// The app's credential for the client-credentials grant.
#[derive(Debug, Clone)]
pub enum ClientCredential {
    /// A client secret.
    Secret(String),
    /// A certificate: PEM certificate (its SHA-1 thumbprint goes in the assertion's `x5t`) and
    /// its RSA private key (PEM), used to sign a client assertion (RS256 JWT).
    Certificate {
        /// Certificate PEM file.
        cert_pem: std::path::PathBuf,
        /// Private key PEM file.
        key_pem: std::path::PathBuf,
    },
}

impl ManagementApiConfig {
    /// The commercial cloud's endpoints for a tenant.
    pub fn commercial(tenant_id: &str, client_id: &str, client_secret: &str) -> Self {
        ManagementApiConfig {
            tenant_id: tenant_id.to_owned(),
            client_id: client_id.to_owned(),
            credential: ClientCredential::Secret(client_secret.to_owned()),
            token_url: format!("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token"),
            api_base: "https://manage.office.com".into(),
            content_types: vec![
                "Audit.Exchange".into(),
                "Audit.AzureActiveDirectory".into(),
                "Audit.General".into(),
            ],
            lookback: Duration::from_secs(24 * 3600),
            max_concurrent_downloads: 4,
        }
    }
}

/// A signed client assertion (RFC 7523) for the token endpoint.
fn client_assertion(
    config: &ManagementApiConfig,
    cert_pem: &std::path::Path,
    key_pem: &std::path::Path,
) -> Result<String, SourceError> {
    use base64::Engine;
    use sha1::Digest;
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| SourceError::Api(format!("{}: {e}", p.display())))
    };
    let cert = rustls_pemfile::certs(&mut &read(cert_pem)?[..])
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| SourceError::Api(format!("{}: no certificate", cert_pem.display())))?;
    let thumbprint = sha1::Sha1::digest(cert.as_ref());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.x5t = Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(thumbprint));
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "aud": config.token_url,
        "iss": config.client_id,
        "sub": config.client_id,
        "jti": format!("{:016x}{:016x}", rand_u64(), rand_u64()),
        "nbf": now,
        "exp": now + 600,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&read(key_pem)?).map_err(|e| {
        SourceError::Api(format!(
            "{}: not an RSA private key: {e}",
            key_pem.display()
        ))
    })?;
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| SourceError::Api(format!("signing the client assertion: {e}")))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// What a poll did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PollStats {
    /// Content blobs downloaded.
    pub blobs: u64,
    /// Blobs listed after their expiry (skipped).
    pub expired: u64,
    /// Records read.
    pub records: u64,
    /// Records already seen (overlapping blobs, re-listed windows).
    pub duplicates: u64,
    /// Records that did not decode.
    pub rejected: u64,
    /// Throttled responses waited out.
    pub throttled: u64,
    /// Tokens obtained.
    pub tokens: u64,
    /// Subscriptions started.
    pub subscriptions_started: u64,
}

/// Errors that stop a poll (the cursor is not advanced past them).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The API or the token endpoint answered with an error.
    #[error("{0}")]
    Api(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] mailsentry_store::StoreError),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    /// Per content type: the end of the last fully read window (RFC 3339).
    windows: BTreeMap<String, chrono::DateTime<chrono::Utc>>,
    /// Recently seen record ids, oldest first.
    seen: VecDeque<String>,
}

const CURSOR: &str = "source:management-api";
const MAX_SEEN: usize = 200_000;
const MAX_RETRIES: u32 = 8;

#[derive(Deserialize)]
struct ContentItem {
    #[serde(rename = "contentUri")]
    uri: String,
    #[serde(rename = "contentExpiration")]
    expiration: Option<chrono::DateTime<chrono::Utc>>,
}

/// The source.
pub struct ManagementApiSource {
    config: ManagementApiConfig,
    store: Arc<dyn AlertStore>,
    agent: ureq::Agent,
    token: Option<(String, Instant)>,
    cursor: Cursor,
    seen: BTreeSet<String>,
    /// Cumulative counters.
    pub stats: PollStats,
}

enum Outcome {
    Ok(Box<ureq::Response>),
    NoSubscription,
}

impl ManagementApiSource {
    /// A source whose cursor lives in `store`.
    pub fn new(
        config: ManagementApiConfig,
        store: Arc<dyn AlertStore>,
    ) -> Result<Self, SourceError> {
        let cursor: Cursor = store
            .load_checkpoint(CURSOR)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let seen = cursor.seen.iter().cloned().collect();
        Ok(ManagementApiSource {
            config,
            store,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
            token: None,
            cursor,
            seen,
            stats: PollStats::default(),
        })
    }

    fn token(&mut self) -> Result<String, SourceError> {
        if let Some((t, expires)) = &self.token {
            if Instant::now() < *expires {
                return Ok(t.clone());
            }
        }
        let resource = format!("{}/.default", self.config.api_base.trim_end_matches('/'));
        let request = self.agent.post(&self.config.token_url);
        let result = match &self.config.credential {
            ClientCredential::Secret(secret) => request.send_form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &self.config.client_id),
                ("client_secret", secret),
                ("scope", &resource),
            ]),
            ClientCredential::Certificate { cert_pem, key_pem } => {
                let assertion = client_assertion(&self.config, cert_pem, key_pem)?;
                request.send_form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &self.config.client_id),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &assertion),
                    ("scope", &resource),
                ])
            }
        };
        let resp =
            result.map_err(|e| SourceError::Api(format!("token endpoint: {}", short_error(e))))?;
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            expires_in: Option<u64>,
        }
        let t: Token = serde_json::from_str(
            &resp
                .into_string()
                .map_err(|e| SourceError::Api(e.to_string()))?,
        )
        .map_err(|e| SourceError::Api(format!("token response: {e}")))?;
        let life = Duration::from_secs(t.expires_in.unwrap_or(3600).saturating_sub(120).max(60));
        self.token = Some((t.access_token.clone(), Instant::now() + life));
        self.stats.tokens += 1;
        Ok(t.access_token)
    }

    /// One API call with the token, retrying throttling (429, AF429) with backoff and a 401
    /// once with a new token.
    fn call(&mut self, method: &str, url: &str) -> Result<Outcome, SourceError> {
        let mut refreshed = false;
        let mut backoff = Duration::from_millis(500);
        for _ in 0..MAX_RETRIES {
            let token = self.token()?;
            let req = if method == "POST" {
                self.agent.post(url)
            } else {
                self.agent.get(url)
            };
            let req = req.set("Authorization", &format!("Bearer {token}"));
            let result = if method == "POST" {
                req.send_string("")
            } else {
                req.call()
            };
            match result {
                Ok(resp) => return Ok(Outcome::Ok(Box::new(resp))),
                Err(ureq::Error::Status(429, resp)) => {
                    self.stats.throttled += 1;
                    let wait = resp
                        .header("Retry-After")
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .unwrap_or(backoff);
                    std::thread::sleep(wait.min(Duration::from_secs(120)));
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
                Err(ureq::Error::Status(401, _)) if !refreshed => {
                    self.token = None;
                    refreshed = true;
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let body = resp.into_string().unwrap_or_default();
                    if body.contains("AF20022") || body.contains("AF20021") {
                        return Ok(Outcome::NoSubscription);
                    }
                    if body.contains("AF429") {
                        self.stats.throttled += 1;
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                        continue;
                    }
                    // The API's own error code (AF…), when it gave one.
                    let af = body
                        .find("AF")
                        .map(|i| {
                            body[i..]
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric())
                                .collect::<String>()
                        })
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default();
                    return Err(SourceError::Api(format!("HTTP {code}{af}")));
                }
                Err(e) => return Err(SourceError::Api(short_error(e))),
            }
        }
        Err(SourceError::Api(format!(
            "still throttled after {MAX_RETRIES} tries"
        )))
    }

    /// Downloads blobs, `max_concurrent_downloads` at a time, in listing order. A download
    /// that fails in parallel (throttled, token expired) is retried through [`Self::call`].
    fn download_all(
        &mut self,
        items: &[ContentItem],
    ) -> Result<Vec<(String, Vec<u8>)>, SourceError> {
        let token = self.token()?;
        let width = self.config.max_concurrent_downloads.max(1);
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(width) {
            let agent = &self.agent;
            let token = &token;
            let results: Vec<Option<Vec<u8>>> = std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|item| {
                        scope.spawn(move || {
                            let resp = agent
                                .get(&item.uri)
                                .set("Authorization", &format!("Bearer {token}"))
                                .call()
                                .ok()?;
                            let mut bytes = Vec::new();
                            std::io::Read::read_to_end(&mut resp.into_reader(), &mut bytes).ok()?;
                            Some(bytes)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().ok().flatten())
                    .collect()
            });
            for (item, result) in chunk.iter().zip(results) {
                let bytes = match result {
                    Some(b) => b,
                    None => match self.call("GET", &item.uri)? {
                        Outcome::Ok(r) => {
                            let mut bytes = Vec::new();
                            std::io::Read::read_to_end(&mut r.into_reader(), &mut bytes)
                                .map_err(|e| SourceError::Api(e.to_string()))?;
                            bytes
                        }
                        Outcome::NoSubscription => continue,
                    },
                };
                out.push((item.uri.clone(), bytes));
            }
        }
        Ok(out)
    }

    fn feed_url(&self, path: &str) -> String {
        format!(
            "{}/api/v1.0/{}/activity/feed/{path}",
            self.config.api_base.trim_end_matches('/'),
            self.config.tenant_id
        )
    }

    /// Reads every content type from its cursor up to `now` (in windows of at most 24 hours)
    /// and returns the new events. The cursor is saved after each completed window.
    pub fn poll(&mut self, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<Event>, SourceError> {
        let mut events = Vec::new();
        let oldest = now - chrono::Duration::days(7) + chrono::Duration::minutes(5);
        for content_type in self.config.content_types.clone() {
            let lookback = chrono::Duration::from_std(self.config.lookback)
                .unwrap_or(chrono::Duration::hours(24));
            let mut start = self
                .cursor
                .windows
                .get(&content_type)
                .copied()
                .unwrap_or(now - lookback)
                .max(oldest);
            while start < now {
                let end = (start + chrono::Duration::hours(24)).min(now);
                let fmt =
                    |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S").to_string();
                let mut next = Some(self.feed_url(&format!(
                    "subscriptions/content?contentType={content_type}&startTime={}&endTime={}",
                    fmt(start),
                    fmt(end)
                )));
                while let Some(url) = next.take() {
                    let resp = match self.call("GET", &url)? {
                        Outcome::Ok(r) => *r,
                        Outcome::NoSubscription => {
                            let start_url = self.feed_url(&format!(
                                "subscriptions/start?contentType={content_type}"
                            ));
                            match self.call("POST", &start_url)? {
                                Outcome::Ok(_) => self.stats.subscriptions_started += 1,
                                Outcome::NoSubscription => {
                                    return Err(SourceError::Api(format!(
                                        "cannot start the {content_type} subscription"
                                    )))
                                }
                            }
                            next = Some(url);
                            continue;
                        }
                    };
                    next = resp.header("NextPageUri").map(str::to_owned);
                    let items: Vec<ContentItem> = serde_json::from_str(
                        &resp
                            .into_string()
                            .map_err(|e| SourceError::Api(e.to_string()))?,
                    )
                    .map_err(|e| SourceError::Api(format!("content list: {e}")))?;
                    let live: Vec<ContentItem> = items
                        .into_iter()
                        .filter(|item| {
                            let expired = item.expiration.is_some_and(|x| x < now);
                            if expired {
                                self.stats.expired += 1;
                            }
                            !expired
                        })
                        .collect();
                    for (uri, bytes) in self.download_all(&live)? {
                        self.stats.blobs += 1;
                        let (items, stats) = decode_bytes(&uri, &bytes, DecodeOptions::default());
                        self.stats.rejected += stats.rejected_total();
                        for d in items {
                            if let Decoded::Event(e) = d {
                                self.stats.records += 1;
                                let id = e.origin.record_id.clone().unwrap_or_else(|| e.id.clone());
                                if self.seen.insert(id.clone()) {
                                    self.cursor.seen.push_back(id);
                                    events.push(e);
                                } else {
                                    self.stats.duplicates += 1;
                                }
                            }
                        }
                    }
                }
                while self.cursor.seen.len() > MAX_SEEN {
                    if let Some(old) = self.cursor.seen.pop_front() {
                        self.seen.remove(&old);
                    }
                }
                self.cursor.windows.insert(content_type.clone(), end);
                self.store.save_checkpoint(
                    CURSOR,
                    &serde_json::to_vec(&self.cursor).expect("cursor serializes"),
                )?;
                start = end;
            }
        }
        Ok(events)
    }
}

/// An HTTP error without the URL (which carries no secret here, but keeps logs short).
fn short_error(e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, _) => format!("HTTP {code}"),
        ureq::Error::Transport(t) => format!("transport: {}", t.kind()),
    }
}
