//! The API over real HTTP on loopback: scopes, ingest with rejects and size limits, the cursor
//! feed, triage, metrics.

use mailsentry_detect::{DetectConfig, Enrichment};
use mailsentry_pipeline::Pipeline;
use mailsentry_server::{router, AppState};
use mailsentry_store::{Scope, Store};
use serde_json::Value;
use std::sync::Arc;

struct Server {
    base: String,
    store: Arc<Store>,
    pipeline: Pipeline,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

const BOOTSTRAP: &str = "bootstrap-secret-for-tests";

fn start(max_body: usize) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("alerts.db")).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pipeline = Pipeline::start(
        DetectConfig::default(),
        Arc::new(Enrichment::none()),
        store.clone(),
        4,
    )
    .unwrap();
    let state = Arc::new(AppState {
        store: store.clone(),
        pipeline: pipeline.clone(),
        bootstrap_token: Some(BOOTSTRAP.into()),
    });
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        axum::serve(listener, router(state, max_body))
            .await
            .unwrap();
    });
    Server {
        base: format!("http://{addr}"),
        store,
        pipeline,
        runtime,
        _dir: dir,
    }
}

#[allow(clippy::result_large_err)] // ureq's own error type, in a test helper
fn get(s: &Server, path: &str, token: Option<&str>) -> Result<ureq::Response, ureq::Error> {
    let mut r = ureq::get(&format!("{}{path}", s.base));
    if let Some(t) = token {
        r = r.set("Authorization", &format!("Bearer {t}"));
    }
    r.call()
}

#[allow(clippy::result_large_err)]
fn status(r: Result<ureq::Response, ureq::Error>) -> u16 {
    match r {
        Ok(resp) => resp.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("transport error: {e}"),
    }
}

/// Two connector sessions: a long normal history would be needed for statistical alerts, so
/// the test uses a hard fact instead — a source outside the declared vendor range.
fn ndjson_events() -> String {
    let rec = |minute: u32, ip: &str| {
        format!(
            r#"{{"CreationTime":"2024-03-10T02:{minute:02}:00","Id":"r{minute}-{ip}","Operation":"MailItemsAccessed","RecordType":50,"OrganizationId":"t1","AppId":"app-1","ClientAppId":"app-1","UserType":5,"ClientIPAddress":"{ip}","MailboxOwnerUPN":"u@x","OperationCount":3}}"#
        )
    };
    [
        rec(1, "198.51.100.7"),
        rec(2, "198.51.100.7"),
        "{broken".to_owned(),
        rec(3, "203.0.113.9"),
    ]
    .join("\n")
}

#[test]
fn health_is_open_everything_else_needs_the_right_scope() {
    let s = start(1 << 20);
    assert_eq!(status(get(&s, "/healthz", None)), 200);
    assert_eq!(status(get(&s, "/api/v1/alerts", None)), 401);
    assert_eq!(status(get(&s, "/api/v1/alerts", Some("nope"))), 401);
    assert_eq!(status(get(&s, "/metrics", None)), 401);
    assert_eq!(status(get(&s, "/openapi.json", None)), 401);
    let ingest_only = s.store.create_token("collector", &[Scope::Ingest]).unwrap();
    assert_eq!(status(get(&s, "/api/v1/alerts", Some(&ingest_only))), 403);
    let reader = s.store.create_token("siem", &[Scope::Read]).unwrap();
    assert_eq!(status(get(&s, "/api/v1/alerts", Some(&reader))), 200);
    let triage = ureq::post(&format!("{}/api/v1/alerts/x/triage", s.base))
        .set("Authorization", &format!("Bearer {reader}"))
        .send_string(r#"{"status":"closed"}"#);
    assert_eq!(status(triage), 403);
    assert_eq!(status(get(&s, "/openapi.json", Some(BOOTSTRAP))), 200);
    assert_eq!(status(get(&s, "/", None)), 200);
}

#[test]
fn ingest_counts_and_locates_rejects_and_refuses_oversize_bodies() {
    let s = start(4096);
    let resp = ureq::post(&format!("{}/api/v1/events", s.base))
        .set("Authorization", &format!("Bearer {BOOTSTRAP}"))
        .send_string(&ndjson_events())
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: Value = resp
        .into_string()
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(body["events"], 3);
    assert_eq!(body["rejected"], 1);
    assert!(
        body["rejects"][0].as_str().unwrap().starts_with("3: "),
        "{body}"
    );
    let big = "x".repeat(10_000);
    let r = ureq::post(&format!("{}/api/v1/events", s.base))
        .set("Authorization", &format!("Bearer {BOOTSTRAP}"))
        .send_string(&big);
    assert_eq!(status(r), 413);
}

#[test]
fn feed_pages_with_link_and_triage_moves_the_alert_to_the_end() {
    let s = start(1 << 20);
    // Alerts straight into the store, as the pipeline would commit them.
    let alerts: Vec<mailsentry_events::Alert> = (0..3)
        .map(|i| serde_json::from_value(serde_json::json!({
            "id": format!("a{i}"), "version": 1, "created_at": "2024-03-12T10:00:00Z",
            "detected_at": "2024-03-12T10:00:00Z", "tenant_id": "t1",
            "connector": {"app_id": "app-1"}, "session": {"client_ips": ["203.0.113.9"], "asns": [],
            "first_event": null, "last_event": null, "events": 1, "mailboxes": 1, "items": 3, "bytes": 0},
            "score": 60, "severity": "high", "p_value": 1e-6, "reasons": [], "evidence": {"event_ids": []},
            "status": "new"
        })).unwrap())
        .collect();
    s.store.upsert_alerts(&alerts).unwrap();
    let reader = s
        .store
        .create_token("siem", &[Scope::Read, Scope::Triage])
        .unwrap();
    let r = get(&s, "/api/v1/alerts?limit=2", Some(&reader)).unwrap();
    let link = r.header("link").unwrap().to_owned();
    let page: Value = r
        .into_string()
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    assert!(
        link.contains(&format!("cursor={}", page["next_cursor"].as_str().unwrap()))
            && link.contains("rel=\"next\"")
    );
    let next = page["next_cursor"].as_str().unwrap().to_owned();
    let page2: Value = get(
        &s,
        &format!("/api/v1/alerts?limit=2&cursor={next}"),
        Some(&reader),
    )
    .unwrap()
    .into_string()
    .map(|t| serde_json::from_str::<Value>(&t).unwrap())
    .unwrap();
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    let end = page2["next_cursor"].as_str().unwrap().to_owned();
    let empty: Value = get(&s, &format!("/api/v1/alerts?cursor={end}"), Some(&reader))
        .unwrap()
        .into_string()
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(empty["items"].as_array().unwrap().len(), 0);
    assert_eq!(empty["next_cursor"], end.as_str());
    // Triage: bad label refused, good one accepted, and the alert reappears after the cursor.
    let bad = ureq::post(&format!("{}/api/v1/alerts/a0/triage", s.base))
        .set("Authorization", &format!("Bearer {reader}"))
        .send_string(r#"{"status":"closed","label":"maybe"}"#);
    assert_eq!(status(bad), 400);
    let ok: Value = ureq::post(&format!("{}/api/v1/alerts/a0/triage", s.base))
        .set("Authorization", &format!("Bearer {reader}"))
        .send_string(r#"{"status":"closed","label":"false_positive","note":"vendor change"}"#)
        .unwrap()
        .into_string()
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(ok["label"], "false_positive");
    let after: Value = get(&s, &format!("/api/v1/alerts?cursor={end}"), Some(&reader))
        .unwrap()
        .into_string()
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(after["items"][0]["id"], "a0");
    assert_eq!(after["items"][0]["status"], "closed");
    assert_eq!(status(get(&s, "/api/v1/alerts/nope", Some(&reader))), 404);
}

#[test]
fn ingested_events_reach_the_detector_and_metrics() {
    let s = start(1 << 20);
    ureq::post(&format!("{}/api/v1/events", s.base))
        .set("Authorization", &format!("Bearer {BOOTSTRAP}"))
        .send_string(&ndjson_events())
        .unwrap();
    s.runtime.block_on(s.pipeline.flush()).unwrap();
    let text = get(&s, "/metrics", Some(BOOTSTRAP))
        .unwrap()
        .into_string()
        .unwrap();
    assert!(text.contains("mailsentry_events_in_total 3"), "{text}");
    assert!(
        text.contains("mailsentry_events_processed_total 3"),
        "{text}"
    );
    assert!(
        text.contains("mailsentry_rejects_total{class=\"truncated\"} 1")
            || text.contains("mailsentry_rejects_total{class=\"invalid_json\"} 1"),
        "{text}"
    );
    assert!(text.contains("mailsentry_sessions_open 2"), "{text}");
}
