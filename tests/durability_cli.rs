//! Killing the service loses nothing: SIGKILL during ingest, restart on the same data
//! directory — every alert that was in the feed is still there once, the feed sequence goes on,
//! and the detector resumes from its checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{free_port, repo_root, wait_healthy};

const TOKEN: &str = "durability-test-admin-token";

fn start(data: &Path, port: u16) -> Child {
    let child = Command::new(assert_cmd::cargo::cargo_bin("mailsentry"))
        .env("MAILSENTRY_BOOTSTRAP_TOKEN", TOKEN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--checkpoint-secs",
            "1",
            "--rate-limit",
            "10000",
            "--data-dir",
        ])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_healthy(port, &String::new);
    child
}

fn metric(port: u16, name: &str) -> u64 {
    common::metric(port, TOKEN, name).expect("the server answers /metrics")
}

/// The whole feed: id -> feed sequence (asserting no id appears twice in one read).
fn feed(port: u16) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut cursor = "0".to_owned();
    loop {
        let body = ureq::get(&format!(
            "http://127.0.0.1:{port}/api/v1/alerts?limit=50&cursor={cursor}"
        ))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        for item in page["items"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap().to_owned();
            let seq = item["feed_sequence"].as_u64().unwrap();
            out.insert(id, seq);
        }
        cursor = page["next_cursor"].as_str().unwrap().to_owned();
        if !page["has_more"].as_bool().unwrap() {
            return out;
        }
    }
}

fn post(port: u16, file: &Path) {
    let body = std::fs::read(file).unwrap();
    let r = ureq::post(&format!("http://127.0.0.1:{port}/api/v1/events"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_bytes(&body)
        .unwrap();
    assert_eq!(r.status(), 202);
}

fn wait_processed(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (sent, done) = (
            metric(port, "mailsentry_events_in_total"),
            metric(port, "mailsentry_events_processed_total"),
        );
        if sent == done {
            return;
        }
        assert!(Instant::now() < deadline, "pipeline stuck at {done}/{sent}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigkill_during_ingest_loses_no_alert_and_duplicates_none() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The demo's JSON logs (Management API, Entra), in date order, as a collector would post them.
    let mut files: Vec<PathBuf> = ["m365-audit", "entra-signins", "entra-audit"]
        .iter()
        .flat_map(|d| walk(&repo_root().join("datasets/demo/logs").join(d)))
        .collect();
    files.sort_by_key(|p| (p.file_name().unwrap().to_owned(), p.clone()));
    let split = files.len() * 3 / 4;
    let port = free_port();
    let mut server = start(&data, port);
    for f in &files[..split] {
        post(port, f);
    }
    wait_processed(port);
    std::thread::sleep(Duration::from_millis(1500)); // let a checkpoint happen
    let before = feed(port);
    assert!(!before.is_empty(), "no alerts before the kill");
    // Keep posting while the process is killed.
    post(port, &files[split]);
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();

    let mut server = start(&data, port);
    let after_restart = feed(port);
    for (id, seq) in &before {
        assert!(after_restart.contains_key(id), "alert {id} lost");
        assert!(
            after_restart[id] >= *seq,
            "alert {id} went back in the feed"
        );
    }
    let max_before = before.values().max().copied().unwrap();
    for f in &files[split..] {
        post(port, f);
    }
    wait_processed(port);
    let end = feed(port);
    assert!(end.len() >= before.len());
    assert!(
        end.values().max().copied().unwrap() >= max_before,
        "the feed sequence went back"
    );
    // The detector resumed from its checkpoint: it still knows the connectors (no relearning
    // burst of alerts on normal traffic): every alert is about an attacker's source.
    let labels: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("datasets/demo/labels.json")).unwrap(),
    )
    .unwrap();
    let attackers: Vec<String> = labels["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            c["source_ips"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
        })
        .collect();
    for id in end.keys() {
        let body = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/alerts/{id}"))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let a: serde_json::Value = serde_json::from_str(&body).unwrap();
        let ips = a["session"]["client_ips"].as_array().unwrap();
        assert!(
            ips.iter()
                .any(|ip| attackers.contains(&ip.as_str().unwrap().to_owned())),
            "false alert after restart: {a}"
        );
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
