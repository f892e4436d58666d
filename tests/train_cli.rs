//! The data engineer's loop from the README, with the binary: `simulate → features → train →
//! eval`, a model refused for its schema, and `serve --model` swapping a retrained model in
//! without a restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("mailsentry"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{stderr}");
    stderr
}

fn simulate(dir: &Path, seed: u64) -> PathBuf {
    let out = dir.join(format!("sim{seed}"));
    run(bin()
        .args([
            "simulate",
            "--days",
            "21",
            "--tenants",
            "2",
            "--scale",
            "0.3",
        ])
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(&out));
    out
}

#[test]
fn simulate_features_train_eval_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulate(dir.path(), 3);

    let frame = dir.path().join("features.parquet");
    let said = run(bin()
        .args(["features", "--data"])
        .arg(&sim)
        .arg("--out")
        .arg(&frame));
    assert!(said.contains("sessions"), "{said}");
    let bytes = std::fs::read(&frame).unwrap();
    assert!(
        bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
        "a Parquet file"
    );

    // From the frame and from the logs: the same sessions, the same model.
    let from_frame = dir.path().join("models/a");
    run(bin()
        .args(["train", "--data"])
        .arg(&frame)
        .arg("--labels")
        .arg(sim.join("labels.json"))
        .arg("--out")
        .arg(&from_frame));
    let from_logs = dir.path().join("models/b");
    run(bin()
        .args(["train", "--name", "a", "--data"])
        .arg(&sim)
        .arg("--out")
        .arg(&from_logs));
    let model_a = std::fs::read_to_string(from_frame.join("model.json")).unwrap();
    let model_b = std::fs::read_to_string(from_logs.join("model.json")).unwrap();
    let strip = |s: &str| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
        v["provenance"]["command"] = serde_json::Value::Null;
        v
    };
    assert_eq!(
        strip(&model_a),
        strip(&model_b),
        "training is deterministic and both paths agree"
    );
    let card = std::fs::read_to_string(from_frame.join("MODEL.md")).unwrap();
    assert!(
        card.contains("mailsentry train --data") && card.contains("## Limits"),
        "{card}"
    );
    let v: serde_json::Value = serde_json::from_str(&model_a).unwrap();
    assert!(v["reranker"].is_object(), "labels give a re-ranker");

    // Held-out seed.
    let held_out = simulate(dir.path(), 4);
    let report = dir.path().join("report");
    let said = run(bin()
        .args(["eval", "--data"])
        .arg(&held_out)
        .arg("--model")
        .arg(&from_frame)
        .arg("--report")
        .arg(&report));
    assert!(said.contains("with the model: recall"), "{said}");
    let md = std::fs::read_to_string(report.join("REPORT.md")).unwrap();
    for needle in [
        "mailsentry + model",
        "elastic_unusual_asn",
        "Ablation",
        "time-to-detect.svg",
    ] {
        assert!(
            md.contains(needle),
            "{needle} missing from the report:\n{md}"
        );
    }
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("metrics.json")).unwrap()).unwrap();
    assert!(metrics["model_improves"].is_boolean());
    assert_eq!(metrics["detectors"].as_array().unwrap().len(), 6);
    let svgs = std::fs::read_dir(&report)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "svg")
        })
        .count();
    assert!(
        svgs >= 4,
        "precision-recall, distributions and time to detect: {svgs}"
    );

    // A model of another feature schema is refused by name.
    let mut stale: serde_json::Value = serde_json::from_str(&model_a).unwrap();
    stale["schema_hash"] = "00000000deadbeef".into();
    let stale_dir = dir.path().join("models/stale");
    std::fs::create_dir_all(&stale_dir).unwrap();
    std::fs::write(stale_dir.join("model.json"), stale.to_string()).unwrap();
    let out = bin()
        .args(["replay", "--model"])
        .arg(&stale_dir)
        .arg(held_out.join("logs"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("feature schema 00000000deadbeef"), "{err}");

    // Replay with the model: its signal explains alerts.
    let out = bin()
        .args(["replay", "--quiet-rejects", "--model"])
        .arg(&from_frame)
        .arg("--asn-db")
        .arg(held_out.join("asn.csv"))
        .arg(held_out.join("logs"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("model a@"));
}

fn metric(port: u16, token: &str, name: &str) -> Option<String> {
    let body = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    body.lines()
        .find(|l| l.starts_with(name))
        .map(|l| l[name.len()..].trim().to_owned())
}

fn wait_for(port: u16, token: &str, name: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = metric(port, token, name);
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: {got:?}, wanted {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn serve_swaps_a_retrained_model_in_and_keeps_it_when_the_next_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulate(dir.path(), 3);
    let model = dir.path().join("models/live");
    run(bin()
        .args(["train", "--name", "live", "--data"])
        .arg(&sim)
        .arg("--out")
        .arg(&model));
    let port = common::free_port();
    let token = "ms_test_model_reload_token_0123456789";
    let mut child = bin()
        .env("MAILSENTRY_BOOTSTRAP_TOKEN", token)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--model"])
        .arg(&model)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(port, token, "mailsentry_model_loads_total", "1");
    let first = metric(port, token, "mailsentry_model_info").unwrap_or_default();
    assert!(
        metric(port, token, "mailsentry_model_info{name=\"live@").is_some(),
        "{first}"
    );

    // Retrained (another seed, another name): swapped in without a restart.
    run(bin()
        .args(["train", "--name", "retrained", "--seed", "2", "--data"])
        .arg(&sim)
        .arg("--out")
        .arg(&model));
    wait_for(port, token, "mailsentry_model_loads_total", "2");
    assert!(metric(port, token, "mailsentry_model_info{name=\"retrained@").is_some());

    // A broken file is refused; the retrained model stays.
    std::fs::write(model.join("model.json"), b"{\"format_version\": 1").unwrap();
    wait_for(port, token, "mailsentry_model_load_errors_total", "1");
    assert!(metric(port, token, "mailsentry_model_info{name=\"retrained@").is_some());
    assert_eq!(
        metric(port, token, "mailsentry_model_loads_total").as_deref(),
        Some("2")
    );
    common::interrupt(&mut child);
}
