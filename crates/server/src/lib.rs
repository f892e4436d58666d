//! The HTTP face of mailsentry (axum): event ingest, the alert feed and triage for SIEMs and
//! analysts, metrics, health, the OpenAPI description and the web UI.
//!
//! Every route but `/healthz` and the static UI page needs a bearer token with the right scope
//! (`ingest`, `read`, `triage`, `admin`). Tokens are checked against the store's SHA-256
//! hashes, or against `MAILSENTRY_BOOTSTRAP_TOKEN` (admin) in constant time; no token is ever
//! logged.

pub mod alert_formats;
pub mod tls;
pub mod volume_chart;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mailsentry_ingest::{decode_bytes, DecodeOptions, Decoded};
use mailsentry_pipeline::Pipeline;
use mailsentry_store::{allows, token_matches, AlertStore, Scope, Triage};
use serde::Deserialize;
use serde_json::json;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Largest accepted request body (events), bytes.
pub const DEFAULT_MAX_BODY: usize = 32 << 20;

/// What the handlers share.
pub struct AppState {
    /// The store.
    pub store: Arc<dyn AlertStore>,
    /// The pipeline.
    pub pipeline: Pipeline,
    /// `MAILSENTRY_BOOTSTRAP_TOKEN`, accepted as an admin token.
    pub bootstrap_token: Option<String>,
    /// Requests allowed per client.
    pub limiter: RateLimiter,
}

/// A token bucket per client (per bearer token, or one shared bucket for requests without
/// one): `rate` requests a second, bursts of `burst`.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<[u8; 8], (f64, std::time::Instant)>>,
}

impl RateLimiter {
    /// A limiter of `rate` requests per second with bursts of `burst`.
    pub fn new(rate: f64, burst: f64) -> Self {
        RateLimiter {
            rate: rate.max(0.001),
            burst: burst.max(1.0),
            buckets: Default::default(),
        }
    }

    /// Takes one request from `client`'s bucket; `Err(seconds)` to wait when it is empty.
    pub fn check(&self, client: &str) -> Result<(), u64> {
        let key: [u8; 8] = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            client.hash(&mut h);
            h.finish().to_le_bytes()
        };
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 600);
        }
        let (tokens, at) = buckets.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(50.0, 200.0)
    }
}

async fn rate_limit(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let client = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned();
    match state.limiter.check(&client) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let mut r = problem(
                StatusCode::TOO_MANY_REQUESTS,
                format!("rate limit: retry in {wait} s"),
            );
            if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let mut r = (
        status,
        Json(json!({ "error": status.canonical_reason(), "detail": detail.into() })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// Checks the bearer token for `needed`; the actor name for audit trails on success.
fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    needed: Scope,
) -> Result<String, Box<Response>> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Box::new(problem(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required",
            ))
        })?;
    if let Some(boot) = &state.bootstrap_token {
        if token_matches(presented, boot) {
            return Ok("bootstrap-admin".into());
        }
    }
    let scopes = state
        .store
        .token_scopes(presented)
        .map_err(|e| Box::new(problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())))?
        .ok_or_else(|| Box::new(problem(StatusCode::UNAUTHORIZED, "unknown token")))?;
    if !allows(&scopes, needed) {
        return Err(Box::new(problem(
            StatusCode::FORBIDDEN,
            format!("this token lacks the {} scope", needed.name()),
        )));
    }
    let names: Vec<&str> = scopes.iter().map(|s| s.name()).collect();
    Ok(format!("token({})", names.join(",")))
}

/// The router.
pub fn router(state: Arc<AppState>, max_body: usize) -> Router {
    Router::new()
        .route("/", get(ui))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/api/v1/events", post(ingest))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/stream", get(stream))
        .route("/api/v1/alerts/{id}", get(alert))
        .route("/api/v1/alerts/{id}/triage", post(triage))
        .route("/api/v1/alerts/{id}/volume.svg", get(volume_svg))
        .route("/api/v1/connectors", get(connectors))
        .route(
            "/api/v1/connectors/{tenant}/{connector}/rebaseline",
            post(rebaseline),
        )
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit,
        ))
        .with_state(state)
}

async fn ui() -> Html<&'static str> {
    Html(include_str!("../assets/index.html"))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn ingest(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&state, &headers, Scope::Ingest) {
        return *r;
    }
    let decoded = tokio::task::spawn_blocking(move || {
        decode_bytes("request", &body, DecodeOptions::default())
    })
    .await;
    let Ok((items, stats)) = decoded else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "decoding failed");
    };
    let mut events = Vec::new();
    let mut rejects = Vec::new();
    for item in items {
        match item {
            Decoded::Event(e) => events.push(e),
            Decoded::Reject(r) => {
                state.pipeline.metrics.reject(r.error.class.name());
                if rejects.len() < 20 {
                    rejects.push(format!(
                        "{}: {}: {}",
                        r.line,
                        r.error.class.name(),
                        r.error.detail
                    ));
                }
            }
        }
    }
    let accepted = events.len();
    if state.pipeline.send(events).await.is_err() {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "the detector has stopped");
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "records": stats.records,
            "events": accepted,
            "rejected": stats.rejected_total(),
            "skipped": stats.skipped_total(),
            "rejects": rejects,
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct FeedQuery {
    cursor: Option<u64>,
    limit: Option<usize>,
    format: Option<String>,
}

async fn alerts(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> Response {
    if let Err(r) = authorize(&state, &headers, Scope::Read) {
        return *r;
    }
    let format = q.format.as_deref().unwrap_or("native");
    if !["native", "ocsf", "ecs", "cef"].contains(&format) {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("format {format:?} is not one of native, ocsf, ecs, cef"),
        );
    }
    let cursor = q.cursor.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let page = match state.store.feed(cursor, limit) {
        Ok(p) => p,
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let items: Vec<serde_json::Value> = page
        .items
        .iter()
        .map(|i| match format {
            "ocsf" => alert_formats::ocsf(&i.alert),
            "ecs" => alert_formats::ecs(&i.alert),
            "cef" => json!(alert_formats::cef(&i.alert)),
            _ => {
                let mut v = serde_json::to_value(&i.alert).expect("alert serializes");
                v["feed_sequence"] = json!(i.seq);
                v
            }
        })
        .collect();
    let mut resp = Json(json!({
        "items": items,
        "next_cursor": page.next_cursor.to_string(),
        "has_more": page.has_more,
    }))
    .into_response();
    let link = format!(
        "</api/v1/alerts?cursor={}&limit={limit}&format={format}>; rel=\"next\"",
        page.next_cursor
    );
    if let Ok(v) = HeaderValue::from_str(&link) {
        resp.headers_mut().insert(header::LINK, v);
    }
    resp
}

async fn alert(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&state, &headers, Scope::Read) {
        return *r;
    }
    match state.store.get(&id) {
        Ok(Some(a)) => Json(a.alert).into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, format!("no alert {id}")),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn triage(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let actor = match authorize(&state, &headers, Scope::Triage) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let t: Triage = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("triage body: {e}")),
    };
    match state.store.triage(&id, &t, &actor) {
        Ok(Some(a)) => {
            if let Some(label) = &t.label {
                // The detector learns from the label (a false positive is released into the
                // baseline and its sources suppressed).
                let _ = state.pipeline.label(&id, label).await;
            }
            Json(a.alert).into_response()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, format!("no alert {id}")),
        Err(mailsentry_store::StoreError::Invalid(why)) => problem(StatusCode::BAD_REQUEST, why),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers, Scope::Read) {
        return *r;
    }
    let m = &state.pipeline.metrics;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP mailsentry_events_in_total Events accepted into the pipeline.\n# TYPE mailsentry_events_in_total counter");
    let _ = writeln!(
        out,
        "mailsentry_events_in_total {}",
        m.events_in.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# HELP mailsentry_events_processed_total Events the detector processed.\n# TYPE mailsentry_events_processed_total counter");
    let _ = writeln!(
        out,
        "mailsentry_events_processed_total {}",
        m.events_processed.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# HELP mailsentry_labels_applied_total Analyst labels applied by this instance's detectors.\n# TYPE mailsentry_labels_applied_total counter");
    let _ = writeln!(
        out,
        "mailsentry_labels_applied_total {}",
        m.labels_applied.load(Ordering::Relaxed)
    );
    for (name, help, v) in [
        (
            "model_loads_total",
            "Models loaded, at start and on every change of the model file.",
            &m.model_loads,
        ),
        (
            "model_load_errors_total",
            "Model files refused (the model in use stays).",
            &m.model_load_errors,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP mailsentry_{name} {help}\n# TYPE mailsentry_{name} counter\nmailsentry_{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
    if let Some(name) = m
        .model_name
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_deref()
    {
        let _ = writeln!(
            out,
            "# HELP mailsentry_model_info The model layer in use.\n# TYPE mailsentry_model_info gauge\nmailsentry_model_info{{name=\"{}\"}} 1",
            name.replace('\\', "\\\\").replace('"', "\\\"")
        );
    }
    let k = &m.kafka;
    for (name, help, v) in [
        ("messages", "Kafka messages read.", &k.messages),
        (
            "offset_gaps",
            "Kafka offsets that never arrived between two reads of a partition.",
            &k.gaps,
        ),
        (
            "already_absorbed",
            "Kafka messages skipped because a restored checkpoint covered them.",
            &k.already_absorbed,
        ),
        ("commits", "Kafka offset commits.", &k.commits),
        (
            "partitions_assigned",
            "Kafka partitions assigned to this instance.",
            &k.assigned,
        ),
        (
            "partitions_revoked",
            "Kafka partitions revoked from this instance.",
            &k.revoked,
        ),
    ] {
        let _ = writeln!(out, "# HELP mailsentry_kafka_{name}_total {help}\n# TYPE mailsentry_kafka_{name}_total counter");
        let _ = writeln!(
            out,
            "mailsentry_kafka_{name}_total {}",
            v.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# HELP mailsentry_rejects_total Rejected records by class.\n# TYPE mailsentry_rejects_total counter");
    for (class, n) in m.rejects.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(out, "mailsentry_rejects_total{{class=\"{class}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP mailsentry_sessions_open Sessions open in the detector.\n# TYPE mailsentry_sessions_open gauge");
    let _ = writeln!(
        out,
        "mailsentry_sessions_open {}",
        m.sessions_open.load(Ordering::Relaxed)
    );
    if let Ok(c) = state.store.counts() {
        let _ = writeln!(out, "# HELP mailsentry_alerts Alerts in the store by severity.\n# TYPE mailsentry_alerts gauge");
        for (sev, n) in &c.by_severity {
            let _ = writeln!(out, "mailsentry_alerts{{severity=\"{sev}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP mailsentry_feed_sequence Current alert feed sequence.\n# TYPE mailsentry_feed_sequence gauge");
        let _ = writeln!(out, "mailsentry_feed_sequence {}", c.sequence);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn openapi(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers, Scope::Read) {
        return *r;
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../assets/openapi.json"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct StreamQuery {
    cursor: Option<u64>,
}

/// Server-sent events: every alert change after the cursor (`Last-Event-ID`, or `?cursor=`),
/// as native JSON with the feed sequence as the event id, then new changes as they commit.
async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    if let Err(r) = authorize(&state, &headers, Scope::Read) {
        return *r;
    }
    let start = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.cursor)
        .unwrap_or(0);
    let store = state.store.clone();
    let events = futures_util::stream::unfold(
        (store, start, std::collections::VecDeque::new()),
        |(store, mut cursor, mut queue)| async move {
            loop {
                if let Some(item) = queue.pop_front() {
                    return Some((
                        Ok::<Event, std::convert::Infallible>(item),
                        (store, cursor, queue),
                    ));
                }
                let page = {
                    let store = store.clone();
                    tokio::task::spawn_blocking(move || store.feed(cursor, 100)).await
                };
                match page {
                    Ok(Ok(page)) if !page.items.is_empty() => {
                        cursor = page.next_cursor;
                        for i in page.items {
                            let data = serde_json::to_string(&i.alert).expect("alert serializes");
                            queue.push_back(
                                Event::default()
                                    .id(i.seq.to_string())
                                    .event("alert")
                                    .data(data),
                            );
                        }
                    }
                    Ok(Ok(_)) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
                    _ => return None,
                }
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn connectors(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers, Scope::Read) {
        return *r;
    }
    match state.pipeline.connectors().await {
        Ok(list) => Json(json!({ "items": list })).into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn rebaseline(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((tenant, connector)): Path<(String, String)>,
) -> Response {
    if let Err(r) = authorize(&state, &headers, Scope::Admin) {
        return *r;
    }
    match state.pipeline.rebaseline(&tenant, &connector).await {
        Ok(true) => Json(json!({ "rebaselined": { "tenant_id": tenant, "connector": connector } }))
            .into_response(),
        Ok(false) => problem(
            StatusCode::NOT_FOUND,
            format!("no connector {connector} in tenant {tenant}"),
        ),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The alerting connector's hourly volume with its usual band and the alert window (SVG).
async fn volume_svg(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&state, &headers, Scope::Read) {
        return *r;
    }
    let alert = match state.store.get(&id) {
        Ok(Some(a)) => a.alert,
        Ok(None) => return problem(StatusCode::NOT_FOUND, format!("no alert {id}")),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let hourly = state
        .pipeline
        .hourly_volume(&alert.tenant_id, &alert.connector.app_id)
        .await
        .unwrap_or_default();
    let first = alert.session.first_event.unwrap_or(alert.detected_at);
    let last = alert.session.last_event.unwrap_or(alert.detected_at);
    let title = alert
        .connector
        .name
        .clone()
        .unwrap_or(alert.connector.app_id.clone());
    let svg = volume_chart::render(&title, &hourly, (first, last));
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}
