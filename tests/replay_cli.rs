//! End-to-end tests of `mailsentry replay` on the committed demo set: alerts in the native JSON
//! contract, the same alerts and ids on every run, a summary on stderr, state that carries over.

use assert_cmd::Command;
use serde_json::Value;

mod common;
use common::repo_root;

fn replay(extra: &[&str]) -> (Vec<Value>, String, Option<i32>) {
    let out = Command::cargo_bin("mailsentry")
        .unwrap()
        .current_dir(repo_root())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "replay",
            "--asn-db",
            "datasets/demo/asn.csv",
            "--asn-db",
            "datasets/demo/country.csv",
        ])
        .args(extra)
        .arg("datasets/demo/logs")
        .output()
        .unwrap();
    let alerts = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        alerts,
        String::from_utf8(out.stderr).unwrap(),
        out.status.code(),
    )
}

#[test]
fn demo_replay_writes_contract_alerts_for_the_campaigns() {
    let (alerts, stderr, code) = replay(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("replay summary: files 146, records 25775"),
        "{stderr}"
    );
    assert!(stderr.contains("rejected 0"), "{stderr}");
    assert!(alerts.len() >= 5, "{} alerts", alerts.len());
    let labels: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("datasets/demo/labels.json")).unwrap(),
    )
    .unwrap();
    let attacker_ips: Vec<&str> = labels["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            c["source_ips"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
        })
        .collect();
    for a in &alerts {
        // Every field of the native contract, with the right types.
        for field in [
            "id",
            "created_at",
            "detected_at",
            "tenant_id",
            "severity",
            "status",
        ] {
            assert!(a[field].is_string(), "{field} in {a}");
        }
        assert_eq!(a["version"], 1);
        assert_eq!(a["created_at"], "2023-11-14T22:13:20Z");
        assert!(a["connector"]["app_id"].is_string());
        for field in ["client_ips", "asns"] {
            assert!(a["session"][field].is_array());
        }
        for field in ["first_event", "last_event"] {
            assert!(a["session"][field].is_string());
        }
        for field in ["events", "mailboxes", "items", "bytes"] {
            assert!(a["session"][field].is_u64());
        }
        assert!(a["score"].as_u64().unwrap() >= 40);
        assert!(["medium", "high", "critical"].contains(&a["severity"].as_str().unwrap()));
        assert!(a["p_value"].is_f64());
        let reasons = a["reasons"].as_array().unwrap();
        assert!(!reasons.is_empty());
        for r in reasons {
            for field in ["signal", "summary", "observed", "baseline"] {
                assert!(r[field].is_string(), "{field} in {r}");
            }
            assert!(r["weight"].is_f64() || r["weight"].is_u64());
        }
        assert!(!a["evidence"]["event_ids"].as_array().unwrap().is_empty());
        // Every alert on the demo set is about an attacker's source.
        let ips = a["session"]["client_ips"].as_array().unwrap();
        assert!(
            ips.iter()
                .any(|ip| attacker_ips.contains(&ip.as_str().unwrap())),
            "false alert {a}"
        );
    }
}

#[test]
fn same_input_same_alerts_and_ids() {
    let (a, _, _) = replay(&[]);
    let (b, _, _) = replay(&[]);
    assert_eq!(a, b);
}

#[test]
fn state_directory_is_saved_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (first, stderr, code) = replay(&["--state", state.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(state.join("detector.json").exists());
    // A second replay of nothing new restores the state: the same incidents come back.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::cargo_bin("mailsentry")
        .unwrap()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["replay", "--state", state.to_str().unwrap()])
        .arg(&empty)
        .output()
        .unwrap();
    assert!(out.status.success());
    let again: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids = |v: &[Value]| {
        v.iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ids(&again));
}

#[test]
fn a_bad_config_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailsentry.toml");
    std::fs::write(
        &config,
        "[detect]\nsession_gap_minutes = 45\nno_such_setting = 1\n",
    )
    .unwrap();
    let (_, stderr, code) = replay(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("no_such_setting"), "{stderr}");
}

/// The configuration example in the README parses and runs.
#[test]
fn the_readme_config_example_is_valid() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find("```toml\n")
        .expect("a TOML example in the README")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let example: String = readme[start..end]
        .lines()
        .map(|l| l.trim_start())
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailsentry.toml");
    std::fs::write(
        &config,
        format!("[detect]\nsession_gap_minutes = 30\n\n{example}\n"),
    )
    .unwrap();
    let (alerts, stderr, code) = replay(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!alerts.is_empty());
}
