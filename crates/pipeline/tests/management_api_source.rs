//! The Management Activity API source against a local fake of the API that pages, lists blobs
//! out of order and overlapping, lists an expired blob, throttles, expires the token and lacks
//! a subscription: every record arrives once, and a restarted source repeats none.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use mailsentry_pipeline::management_api_source::{
    ClientCredential, ManagementApiConfig, ManagementApiSource,
};
use mailsentry_store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Fake {
    base: Mutex<String>,
    tokens: AtomicU32,
    general_started: AtomicBool,
    throttled_once: AtomicBool,
    expired_token_once: AtomicBool,
    inflight: AtomicU32,
    max_inflight: AtomicU32,
    assertion_x5t: Mutex<Option<String>>,
}

fn record(id: &str, minute: u32) -> String {
    format!(
        r#"{{"CreationTime":"2024-03-10T02:{minute:02}:00","Id":"{id}","Operation":"MailItemsAccessed","RecordType":50,"OrganizationId":"tenant-1","AppId":"app","ClientAppId":"app","UserType":5,"ClientIPAddress":"203.0.113.9","MailboxOwnerUPN":"u@x","OperationCount":1}}"#
    )
}

async fn token(
    State(f): State<Arc<Fake>>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    if let Some(assertion) = form.get("client_assertion") {
        use base64::Engine;
        let header = assertion.split('.').next().unwrap_or("");
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        if header["alg"] != "RS256"
            || form.get("client_assertion_type").map(String::as_str)
                != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return StatusCode::BAD_REQUEST.into_response();
        }
        *f.assertion_x5t.lock().unwrap() = header["x5t"].as_str().map(str::to_owned);
    } else if form.get("client_secret").map(String::as_str) != Some("secret") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let n = f.tokens.fetch_add(1, Ordering::SeqCst) + 1;
    format!(r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"tok-{n}"}}"#)
        .into_response()
}

async fn start(State(f): State<Arc<Fake>>, Query(q): Query<HashMap<String, String>>) -> StatusCode {
    if q.get("contentType").map(String::as_str) == Some("Audit.General") {
        f.general_started.store(true, Ordering::SeqCst);
    }
    StatusCode::OK
}

fn authorized(f: &Fake, headers: &HeaderMap) -> bool {
    let current = format!("Bearer tok-{}", f.tokens.load(Ordering::SeqCst));
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(current.as_str())
}

async fn content(
    State(f): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&f, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // The first listing after the first token: the token "expired".
    if !f.expired_token_once.swap(true, Ordering::SeqCst) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let base = f.base.lock().unwrap().clone();
    match q.get("contentType").map(String::as_str) {
        Some("Audit.General") if !f.general_started.load(Ordering::SeqCst) => (
            StatusCode::BAD_REQUEST,
            r#"{"error":{"code":"AF20022","message":"No subscription found for the specified content type"}}"#,
        )
            .into_response(),
        Some("Audit.General") => "[]".into_response(),
        Some("Audit.Exchange") => {
            if !f.throttled_once.swap(true, Ordering::SeqCst) {
                return (StatusCode::TOO_MANY_REQUESTS, [("Retry-After", "1")], "").into_response();
            }
            let item = |name: &str, expires: &str| format!(r#"{{"contentUri":"{base}/blobs/{name}","contentId":"{name}","contentType":"Audit.Exchange","contentCreated":"2024-03-10T03:00:00.000Z","contentExpiration":"{expires}"}}"#);
            if q.contains_key("page") {
                format!("[{}]", item("a", "2099-01-01T00:00:00.000Z")).into_response()
            } else {
                let next = format!("{base}/api/v1.0/tenant-1/activity/feed/subscriptions/content?contentType=Audit.Exchange&page=2");
                (
                    [("NextPageUri", next.as_str())],
                    format!("[{},{},{}]", item("b", "2099-01-01T00:00:00.000Z"), item("expired", "2020-01-01T00:00:00.000Z"), item("c", "2099-01-01T00:00:00.000Z")),
                )
                    .into_response()
            }
        }
        _ => "[]".into_response(),
    }
}

async fn blob(
    State(f): State<Arc<Fake>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if !authorized(&f, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let now = f.inflight.fetch_add(1, Ordering::SeqCst) + 1;
    f.max_inflight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    f.inflight.fetch_sub(1, Ordering::SeqCst);
    let records = match name.as_str() {
        // Page 2's blob holds the oldest records (out of order).
        "a" => vec![record("r1", 1), record("r2", 2)],
        "b" => vec![record("r3", 3), record("r4", 4)],
        // Overlaps b.
        "c" => vec![record("r4", 4), record("r5", 5)],
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    format!("[{}]", records.join(",")).into_response()
}

fn serve() -> (String, tokio::runtime::Runtime, Arc<Fake>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let fake = Arc::new(Fake::default());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *fake.base.lock().unwrap() = base.clone();
    let app = Router::new()
        .route("/tenant-1/oauth2/v2.0/token", post(token))
        .route(
            "/api/v1.0/tenant-1/activity/feed/subscriptions/start",
            post(start),
        )
        .route(
            "/api/v1.0/tenant-1/activity/feed/subscriptions/content",
            get(content),
        )
        .route("/blobs/{name}", get(blob))
        .with_state(fake.clone());
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, runtime, fake)
}

#[test]
fn every_record_once_across_paging_throttling_expiry_and_restart() {
    let (base, _runtime, fake) = serve();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
    let config = ManagementApiConfig {
        tenant_id: "tenant-1".into(),
        client_id: "client".into(),
        credential: ClientCredential::Secret("secret".into()),
        token_url: format!("{base}/tenant-1/oauth2/v2.0/token"),
        api_base: base.clone(),
        content_types: vec!["Audit.Exchange".into(), "Audit.General".into()],
        lookback: Duration::from_secs(3600),
        max_concurrent_downloads: 2,
    };
    let now = chrono::Utc::now();
    let mut source = ManagementApiSource::new(config.clone(), store.clone()).unwrap();
    let events = source.poll(now).unwrap();
    let mut ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["r1", "r2", "r3", "r4", "r5"]);
    let s = &source.stats;
    assert_eq!(s.blobs, 3);
    assert_eq!(s.expired, 1);
    assert_eq!(s.duplicates, 1, "r4 is in two blobs");
    assert_eq!(s.throttled, 1);
    assert_eq!(s.subscriptions_started, 1);
    assert_eq!(s.tokens, 2, "a new token after the 401");
    assert_eq!(
        fake.max_inflight.load(Ordering::SeqCst),
        2,
        "two downloads at a time"
    );

    // Restarted (a new source on the same store), an hour later: the same blobs are listed
    // again (the fake ignores the window), and nothing is repeated.
    let mut again = ManagementApiSource::new(config, store).unwrap();
    let events = again.poll(now + chrono::Duration::hours(1)).unwrap();
    assert!(
        events.is_empty(),
        "repeated: {:?}",
        events.iter().map(|e| &e.id).collect::<Vec<_>>()
    );
    assert_eq!(
        again.stats.duplicates, 6,
        "three blobs of two records, all seen"
    );
}

#[test]
fn a_certificate_signs_the_client_assertion() {
    let (base, _runtime, fake) = serve();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=mailsentry-test",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed (.ci/services)")
        .status
        .success();
    assert!(ok);
    let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
    let config = ManagementApiConfig {
        tenant_id: "tenant-1".into(),
        client_id: "client".into(),
        credential: ClientCredential::Certificate {
            cert_pem: cert,
            key_pem: key,
        },
        token_url: format!("{base}/tenant-1/oauth2/v2.0/token"),
        api_base: base.clone(),
        content_types: vec!["Audit.AzureActiveDirectory".into()],
        lookback: Duration::from_secs(3600),
        max_concurrent_downloads: 4,
    };
    let mut source = ManagementApiSource::new(config, store).unwrap();
    source.poll(chrono::Utc::now()).unwrap();
    assert!(source.stats.tokens >= 1);
    let x5t = fake
        .assertion_x5t
        .lock()
        .unwrap()
        .clone()
        .expect("the assertion names the certificate");
    assert_eq!(x5t.len(), 27, "base64url SHA-1 thumbprint: {x5t}");
}
