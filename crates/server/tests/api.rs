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
    start_limited(max_body, 1000.0)
}

fn start_limited(max_body: usize, rate: f64) -> Server {
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
        limiter: mailsentry_server::RateLimiter::new(rate, 5.0),
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

fn three_alerts(s: &Server) {
    let alerts: Vec<mailsentry_events::Alert> = (0..3)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "id": format!("a{i}"), "version": 1, "created_at": "2024-03-12T10:00:00Z",
                "detected_at": "2024-03-12T10:00:00Z", "tenant_id": "t1",
                "connector": {"app_id": "app|1", "name": "Backup=Vendor"},
                "session": {"client_ips": ["203.0.113.9"], "asns": [14061],
                "first_event": "2024-03-12T09:58:00Z", "last_event": "2024-03-12T10:05:00Z", "events": 1, "mailboxes": 1, "items": 3, "bytes": 0},
                "score": 65, "severity": "high", "p_value": 1e-6,
                "reasons": [{"signal": "credential.concurrent_networks", "summary": "used from a=b\nsecond line", "observed": "x", "baseline": "y", "weight": 1.0}],
                "evidence": {"event_ids": ["e1"]}, "status": "new"
            }))
            .unwrap()
        })
        .collect();
    s.store.upsert_alerts(&alerts).unwrap();
}

#[test]
fn feed_formats_ocsf_ecs_and_cef() {
    let s = start(1 << 20);
    three_alerts(&s);
    let body = |format: &str| -> Value {
        get(
            &s,
            &format!("/api/v1/alerts?format={format}&limit=1"),
            Some(BOOTSTRAP),
        )
        .unwrap()
        .into_string()
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap()
    };
    let ocsf = &body("ocsf")["items"][0];
    for field in [
        "activity_id",
        "category_uid",
        "class_uid",
        "severity_id",
        "time",
        "type_uid",
    ] {
        assert!(ocsf[field].is_number(), "{field} in {ocsf}");
    }
    assert_eq!(ocsf["class_uid"], 2004);
    assert_eq!(ocsf["type_uid"], 200401);
    assert_eq!(ocsf["finding_info"]["uid"], "a0");
    assert!(ocsf["finding_info"]["title"].is_string());
    assert_eq!(ocsf["metadata"]["version"], "1.5.0");
    assert_eq!(ocsf["metadata"]["product"]["name"], "mailsentry");
    let ecs = &body("ecs")["items"][0];
    assert_eq!(ecs["event"]["kind"], "alert");
    assert_eq!(ecs["source"]["ip"], "203.0.113.9");
    let cef = body("cef")["items"][0].as_str().unwrap().to_owned();
    assert!(cef.starts_with("CEF:0|mailsentry|mailsentry|"), "{cef}");
    assert!(
        cef.contains(r"cs2=app|1"),
        "pipes are not escaped in extensions: {cef}"
    );
    assert!(cef.contains(r"msg=used from a\=b\nsecond line"), "{cef}");
    assert!(!cef.contains('\n'));
    assert_eq!(
        status(get(&s, "/api/v1/alerts?format=xml", Some(BOOTSTRAP))),
        400
    );
}

fn first_sse_event(s: &Server, last_event_id: Option<&str>) -> (String, Value) {
    use std::io::BufRead;
    let mut req = ureq::get(&format!("{}/api/v1/alerts/stream", s.base))
        .set("Authorization", &format!("Bearer {BOOTSTRAP}"));
    if let Some(id) = last_event_id {
        req = req.set("Last-Event-ID", id);
    }
    let resp = req.call().unwrap();
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let reader = std::io::BufReader::new(resp.into_reader());
    let (mut id, mut data) = (None, None);
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str(v).unwrap());
        } else if line.is_empty() && id.is_some() && data.is_some() {
            break;
        }
    }
    (id.unwrap(), data.unwrap())
}

#[test]
fn the_stream_resumes_from_last_event_id() {
    let s = start(1 << 20);
    three_alerts(&s);
    let (id, first) = first_sse_event(&s, None);
    assert_eq!(first["id"], "a0");
    let (next_id, second) = first_sse_event(&s, Some(&id));
    assert_eq!(second["id"], "a1");
    assert!(next_id.parse::<u64>().unwrap() > id.parse::<u64>().unwrap());
}

#[test]
fn clients_over_their_rate_get_429_with_retry_after() {
    let s = start_limited(1 << 20, 0.5);
    let mut codes = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        match get(&s, "/healthz", None) {
            Ok(r) => codes.push(r.status()),
            Err(ureq::Error::Status(code, r)) => {
                codes.push(code);
                retry_after = r.header("retry-after").map(str::to_owned);
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 5, "{codes:?}");
    assert_eq!(codes.last(), Some(&429));
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
}

#[test]
fn connectors_view_and_admin_only_rebaseline() {
    let s = start(1 << 20);
    ureq::post(&format!("{}/api/v1/events", s.base))
        .set("Authorization", &format!("Bearer {BOOTSTRAP}"))
        .send_string(&ndjson_events())
        .unwrap();
    s.runtime.block_on(s.pipeline.flush()).unwrap();
    let reader = s.store.create_token("siem", &[Scope::Read]).unwrap();
    let list: Value = get(&s, "/api/v1/connectors", Some(&reader))
        .unwrap()
        .into_string()
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    let item = &list["items"][0];
    assert_eq!(item["tenant_id"], "t1");
    assert_eq!(item["connector"], "app-1");
    assert_eq!(item["learning"], true);
    assert!(item["baseline_confidence"].as_f64().unwrap() < 1.0);
    let post = |token: &str, path: &str| {
        status(
            ureq::post(&format!("{}{path}", s.base))
                .set("Authorization", &format!("Bearer {token}"))
                .send_string(""),
        )
    };
    assert_eq!(post(&reader, "/api/v1/connectors/t1/app-1/rebaseline"), 403);
    assert_eq!(
        post(BOOTSTRAP, "/api/v1/connectors/t1/nope/rebaseline"),
        404
    );
    assert_eq!(
        post(BOOTSTRAP, "/api/v1/connectors/t1/app-1/rebaseline"),
        200
    );
    assert_eq!(status(get(&s, "/api/v1/connectors", None)), 401);
}

/// Every route but `/healthz` (and the static UI page) refuses a request without a token (401)
/// and one whose token lacks the scope (403).
#[test]
fn every_route_checks_its_scope() {
    let s = start(1 << 20);
    three_alerts(&s);
    let wrong_for_read = s.store.create_token("collector", &[Scope::Ingest]).unwrap();
    let wrong_for_others = s.store.create_token("siem", &[Scope::Read]).unwrap();
    let routes: [(&str, &str, Scope); 11] = [
        ("POST", "/api/v1/events", Scope::Ingest),
        ("GET", "/api/v1/alerts", Scope::Read),
        ("GET", "/api/v1/alerts/stream", Scope::Read),
        ("GET", "/api/v1/alerts/a0", Scope::Read),
        ("GET", "/api/v1/alerts/a0/volume.svg", Scope::Read),
        ("POST", "/api/v1/alerts/a0/triage", Scope::Triage),
        ("GET", "/api/v1/connectors", Scope::Read),
        ("POST", "/api/v1/connectors/t1/app/rebaseline", Scope::Admin),
        ("GET", "/metrics", Scope::Read),
        ("GET", "/openapi.json", Scope::Read),
        ("GET", "/api/v1/alerts?format=ocsf", Scope::Read),
    ];
    for (method, path, scope) in routes {
        let call = |token: Option<&str>| {
            let url = format!("{}{path}", s.base);
            let mut r = if method == "GET" {
                ureq::get(&url)
            } else {
                ureq::post(&url)
            };
            if let Some(t) = token {
                r = r.set("Authorization", &format!("Bearer {t}"));
            }
            status(if method == "GET" {
                r.call()
            } else {
                r.send_string("{\"status\":\"closed\"}")
            })
        };
        assert_eq!(call(None), 401, "{method} {path} without a token");
        let wrong = if scope == Scope::Read {
            &wrong_for_read
        } else {
            &wrong_for_others
        };
        assert_eq!(
            call(Some(wrong)),
            403,
            "{method} {path} with a token lacking {}",
            scope.name()
        );
    }
    assert_eq!(status(get(&s, "/healthz", None)), 200);
}
