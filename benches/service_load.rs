//! Load on the service over loopback HTTP: ingest events/s, feed pages/s, and the latency from
//! an event's ingest to its alert appearing in the feed while a steady 20,000 events/s flow.
//!
//! `cargo bench -p mailsentry-server --bench service_load`; results in benches/RESULTS.md.

use mailsentry_detect::{DetectConfig, Enrichment, KnownConnector};
use mailsentry_pipeline::Pipeline;
use mailsentry_server::{router, AppState, RateLimiter};
use mailsentry_store::Store;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "load-test-token";

fn record(i: u64, app: &str, ip: &str, minute: u64) -> String {
    format!(
        r#"{{"CreationTime":"2024-03-10T{:02}:{:02}:{:02}","Id":"r{i}","Operation":"MailItemsAccessed","RecordType":50,"OrganizationId":"tenant-{}","AppId":"{app}","ClientAppId":"{app}","UserType":5,"ClientIPAddress":"{ip}","MailboxOwnerUPN":"user{}@contoso.example","OperationCount":3,"OperationProperties":[{{"Name":"MailAccessType","Value":"Bind"}}],"Folders":[{{"Path":"\\Inbox","FolderItems":[{{"InternetMessageId":"<m{i}@x>","SizeInBytes":4000}}]}}]}}"#,
        (minute / 60) % 24,
        minute % 60,
        i % 60,
        i % 20,
        i % 500
    )
}

/// A batch of `n` normal records from vendor addresses (inside the declared range).
fn normal_batch(start: u64, n: u64) -> String {
    (start..start + n)
        .map(|i| {
            record(
                i,
                &format!("app-{}", i % 50),
                &format!("52.28.14.{}", i % 200 + 1),
                600 + i / 2000,
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("service_load: bench");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("alerts.db")).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Declared connectors make a source outside the vendor range a hard fact, so alerts come
    // at once and their latency can be timed.
    let config = DetectConfig {
        connectors: vec![KnownConnector {
            name: Some("Backup".into()),
            app_ids: (0..1000).map(|i| format!("app-{i}")).collect(),
            vendor_cidrs: vec!["52.28.14.0/24".parse().unwrap()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let pipeline =
        Pipeline::start(config, Arc::new(Enrichment::none()), store.clone(), 64).unwrap();
    let state = Arc::new(AppState {
        store: store.clone(),
        pipeline: pipeline.clone(),
        bootstrap_token: Some(TOKEN.into()),
        limiter: RateLimiter::new(1e6, 1e6),
    });
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move {
        axum::serve(listener, router(state, 64 << 20))
            .await
            .unwrap()
    });
    let agent = ureq::AgentBuilder::new().build();
    let post = |body: &str| {
        agent
            .post(&format!("{base}/api/v1/events"))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .send_string(body)
            .unwrap();
    };

    // 1. Ingest throughput: 1,000-event batches, as fast as accepted, until all are processed.
    let batches: Vec<String> = (0..100).map(|b| normal_batch(b * 1000, 1000)).collect();
    let started = Instant::now();
    for b in &batches {
        post(b);
    }
    runtime.block_on(pipeline.flush()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!("ingest: 100,000 events in 1,000-event batches over HTTP, accepted and processed in {secs:.2} s = {:.0} events/s", 100_000.0 / secs);

    // 2. Feed paging: 10,000 alerts in the store, pages of 100 read from the start, one client.
    let alerts: Vec<mailsentry_events::Alert> = (0..10_000)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "id": format!("bulk-{i}"), "version": 1, "created_at": "2024-03-12T10:00:00Z",
                "detected_at": "2024-03-12T10:00:00Z", "tenant_id": "t", "connector": {"app_id": "x"},
                "session": {"client_ips": ["203.0.113.9"], "asns": [], "first_event": null, "last_event": null,
                            "events": 1, "mailboxes": 1, "items": 1, "bytes": 0},
                "score": 50, "severity": "medium", "p_value": 1e-5,
                "reasons": [{"signal": "source.asn.first_seen", "summary": "a reason of realistic length for the alert feed payload size", "observed": "AS1", "baseline": "AS2", "weight": 1.0}],
                "evidence": {"event_ids": ["e1", "e2", "e3"]}, "status": "new"
            }))
            .unwrap()
        })
        .collect();
    store.upsert_alerts(&alerts).unwrap();
    let started = Instant::now();
    let mut pages = 0u64;
    while started.elapsed() < Duration::from_secs(5) {
        let mut cursor = 0u64;
        loop {
            let text = agent
                .get(&format!("{base}/api/v1/alerts?limit=100&cursor={cursor}"))
                .set("Authorization", &format!("Bearer {TOKEN}"))
                .call()
                .unwrap()
                .into_string()
                .unwrap();
            pages += 1;
            let page: serde_json::Value = serde_json::from_str(&text).unwrap();
            cursor = page["next_cursor"].as_str().unwrap().parse().unwrap();
            if !page["has_more"].as_bool().unwrap() || started.elapsed() >= Duration::from_secs(5) {
                break;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "feed: {pages} pages of 100 alerts in {secs:.1} s = {:.0} pages/s ({:.0} alerts/s)",
        pages as f64 / secs,
        pages as f64 * 100.0 / secs
    );

    // 3. Ingest-to-feed latency at a steady 20,000 events/s (1,000 events every 50 ms): every
    //    half second one batch carries a read from outside the declared range for a fresh
    //    connector; the time until its alert is in the feed is measured.
    let sent = Arc::new(AtomicU64::new(0));
    let mut start_cursor = store.counts().unwrap().sequence;
    let mut latencies = Vec::new();
    let load_started = Instant::now();
    let mut next = Instant::now();
    let mut i = 1_000_000u64;
    let mut probe = 0u64;
    while latencies.len() < 40 {
        next += Duration::from_millis(50);
        let mut batch = normal_batch(i, 1000);
        i += 1000;
        let tick = (i / 1000).is_multiple_of(10);
        let app = format!("app-{}", 100 + probe);
        if tick {
            batch.push('\n');
            batch.push_str(&record(i, &app, "203.0.113.77", 600 + i / 2000));
            probe += 1;
        }
        let t0 = Instant::now();
        post(&batch);
        sent.fetch_add(1000, Ordering::Relaxed);
        if tick {
            // Wait for the alert, polling the feed.
            let deadline = Instant::now() + Duration::from_secs(10);
            'wait: loop {
                let page = store.feed(start_cursor, 1000).unwrap();
                for item in &page.items {
                    if item.alert.connector.app_id == app {
                        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                        start_cursor = page.next_cursor;
                        break 'wait;
                    }
                }
                assert!(Instant::now() < deadline, "alert for {app} never appeared");
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let rate = sent.load(Ordering::Relaxed) as f64 / load_started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    println!(
        "latency ingest -> feed at {rate:.0} events/s offered: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} alerts",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap(),
        latencies.len()
    );
    runtime.block_on(pipeline.shutdown()).unwrap();
}
