//! `mailsentry serve --demo` as a user runs it: the demo replays through the live pipeline, the
//! API answers with the token written for the demo, and Ctrl-C shuts down with a checkpoint.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{free_port, repo_root};

#[test]
fn serve_demo_answers_alerts_and_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let child = Command::new(assert_cmd::cargo::cargo_bin("mailsentry"))
        .current_dir(repo_root())
        .env_remove("MAILSENTRY_BOOTSTRAP_TOKEN")
        .args([
            "serve",
            "--demo",
            "--demo-speed",
            "0",
            "--log-format",
            "json",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut alerts = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        if ureq::get(&format!("{base}/healthz")).call().is_err() {
            continue;
        }
        let Ok(token) = std::fs::read_to_string(data.join("demo-admin-token")) else {
            continue;
        };
        let token = token.trim().to_owned();
        let body = ureq::get(&format!("{base}/api/v1/alerts?limit=100"))
            .set("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        alerts = page["items"].as_array().unwrap().len();
        if alerts >= 5 {
            break;
        }
    }
    assert!(alerts >= 5, "only {alerts} alerts from the demo");
    // The token is in a private file, never in the log.
    let token = std::fs::read_to_string(data.join("demo-admin-token")).unwrap();
    let metrics = ureq::get(&format!("{base}/metrics"))
        .set("Authorization", &format!("Bearer {}", token.trim()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let events_in: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mailsentry_events_in_total "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("demo-admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "token file readable by others");
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains(token.trim()), "the token appeared in the log");
    assert!(log.contains("shutting down"), "{log}");
    // What /metrics counts is what the log says (JSON log lines).
    let replayed: u64 = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "demo replayed")
        .and_then(|v| v["fields"]["events"].as_u64())
        .expect("a JSON log line for the demo replay");
    assert_eq!(replayed, events_in, "metrics and logs disagree");
    let store = mailsentry_store::Store::open(&data.join("alerts.db")).unwrap();
    assert!(
        store.load_checkpoint("detector").unwrap().is_some(),
        "no checkpoint at shutdown"
    );
}
