//! The analyst UI in a real headless browser (Debian's chromium driven through chromedriver's
//! WebDriver protocol): load the list, open an alert, triage it, see it leave the open list and
//! the label reach the store. `.ci/run` installs chromium and chromium-driver.

use mailsentry_detect::{DetectConfig, Enrichment};
use mailsentry_pipeline::Pipeline;
use mailsentry_server::{router, AppState};
use mailsentry_store::Store;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "ui-test-admin-token";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    base: String,
    session: String,
    process: Child,
}

impl Driver {
    fn start(profile: &std::path::Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed; .ci/run installs it");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     format!("--user-data-dir={}", profile.display())]
        }}}});
        let resp: Value = serde_json::from_str(
            &ureq::post(&format!("{base}/session"))
                .send_string(&caps.to_string())
                .unwrap()
                .into_string()
                .unwrap(),
        )
        .unwrap();
        let session = resp["value"]["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_owned();
        Driver {
            base,
            session,
            process,
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let r = match method {
            "GET" => ureq::get(&url).call(),
            "DELETE" => ureq::delete(&url).call(),
            _ => ureq::post(&url).send_string(&body.to_string()),
        };
        let text = match r {
            Ok(r) => r.into_string().unwrap(),
            Err(ureq::Error::Status(_, r)) => r.into_string().unwrap(),
            Err(e) => panic!("{e}"),
        };
        serde_json::from_str::<Value>(&text).unwrap()["value"].clone()
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        self.call(
            "POST",
            "/elements",
            json!({"using": "css selector", "value": css}),
        )
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    e[ELEMENT]
                        .as_str()
                        .unwrap_or_else(|| panic!("not an element: {e}"))
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
    }

    fn wait_all(&self, css: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.find_all(css);
            if found.len() == n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} × {css}, found {}",
                found.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), Value::Null)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.call("DELETE", "", Value::Null);
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[test]
fn an_analyst_opens_and_triages_an_alert_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("alerts.db")).unwrap());
    let alerts: Vec<mailsentry_events::Alert> = (0..3)
        .map(|i| {
            serde_json::from_value(json!({
                "id": format!("a{i}"), "version": 1, "created_at": "2024-03-12T10:00:00Z",
                "detected_at": format!("2024-03-12T1{i}:00:00Z"), "tenant_id": "t1",
                "connector": {"app_id": "app-1", "name": "BackupVendor Sync"},
                "session": {"client_ips": [format!("203.0.113.{i}")], "asns": [14061], "first_event": "2024-03-12T09:58:00Z",
                            "last_event": "2024-03-12T10:05:00Z", "events": 5, "mailboxes": 3, "items": 40, "bytes": 1000000},
                "score": 65, "severity": "high", "p_value": 1e-6,
                "reasons": [{"signal": "credential.concurrent_networks", "summary": format!("the connector's identity is used from 203.0.113.{i} while its usual network is active"),
                             "observed": "203.0.113.0/24", "baseline": "52.28.14.0/24", "weight": 1.0}],
                "evidence": {"event_ids": ["e1", "e2"]}, "status": "new"
            }))
            .unwrap()
        })
        .collect();
    store.upsert_alerts(&alerts).unwrap();
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
    // A connector the detector has seen, for the connectors view.
    let events: Vec<mailsentry_events::Event> = (0..3)
        .map(|i| {
            let line = format!(
                r#"{{"CreationTime":"2024-03-10T02:0{i}:00","Id":"e{i}","Operation":"MailItemsAccessed","RecordType":50,"OrganizationId":"t1","AppId":"app-1","ClientAppId":"app-1","UserType":5,"ClientIPAddress":"52.28.14.7","MailboxOwnerUPN":"u@x","OperationCount":2}}"#
            );
            match mailsentry_ingest::decode_bytes("ui", line.as_bytes(), Default::default()).0.remove(0) {
                mailsentry_ingest::Decoded::Event(e) => e,
                mailsentry_ingest::Decoded::Reject(r) => panic!("{r}"),
            }
        })
        .collect();
    runtime.block_on(pipeline.send(events)).unwrap();
    runtime.block_on(pipeline.flush()).unwrap();
    let state = Arc::new(AppState {
        store: store.clone(),
        pipeline,
        bootstrap_token: Some(TOKEN.into()),
        limiter: Default::default(),
    });
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    runtime.spawn(async move { axum::serve(listener, router(state, 1 << 20)).await.unwrap() });

    let profile = dir.path().join("chromium-profile");
    let d = Driver::start(&profile);
    d.call("POST", "/url", json!({"url": url}));
    let token = d.wait_all("#token", 1).remove(0);
    d.call(
        "POST",
        &format!("/element/{token}/value"),
        json!({"text": TOKEN}),
    );
    let header = d.wait_all("header h1", 1).remove(0);
    d.call("POST", &format!("/element/{header}/click"), json!({})); // blur: the token is committed
    let rows = d.wait_all("tr.alert-row", 3);
    assert!(
        d.text(&rows[0]).contains("BackupVendor Sync"),
        "{}",
        d.text(&rows[0])
    );
    // Newest first: a2 at the top. Open it and read the explanation.
    d.call("POST", &format!("/element/{}/click", rows[0]), json!({}));
    let detail = d.wait_all("#detail .reason", 1).remove(0);
    assert!(
        d.text(&detail).contains("203.0.113.2"),
        "{}",
        d.text(&detail)
    );
    // The chart is drawn by the server and shown in the detail.
    d.wait_all("#chart svg", 1);
    let fp = d.wait_all("button[data-label=false_positive]", 1).remove(0);
    d.call("POST", &format!("/element/{fp}/click"), json!({}));
    // Closed alerts leave the open list; the label is in the store.
    d.wait_all("tr.alert-row", 2);
    // The connectors view lists what the detector learned.
    let view = d.wait_all("#view", 1).remove(0);
    d.call("POST", &format!("/element/{view}/click"), json!({}));
    let connectors = d.wait_all("tr.connector-row", 1);
    let text = d.text(&connectors[0]);
    assert!(
        text.contains("app-1") && text.contains("learning"),
        "{text}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = store.get("a2").unwrap().unwrap().alert;
        if a.label.as_deref() == Some("false_positive") {
            assert_eq!(a.status, "closed");
            break;
        }
        assert!(Instant::now() < deadline, "triage did not reach the store");
        std::thread::sleep(Duration::from_millis(100));
    }
}
