//! End-to-end tests of `mailsentry simulate`: the committed demo set is exactly what its
//! documented command makes, simulated logs decode strictly, bad parameters are refused.

use assert_cmd::Command;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;
use common::repo_root;

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// The command documented in datasets/README.md, run in a scratch directory (so the `--out`
/// recorded in labels.json is the same), must reproduce datasets/demo byte for byte.
#[test]
fn demo_dataset_is_exactly_what_its_command_makes() {
    let scratch = tempfile::tempdir().unwrap();
    let readme = std::fs::read_to_string(repo_root().join("datasets/README.md")).unwrap();
    let command = readme
        .lines()
        .find(|l| l.starts_with("mailsentry simulate --out datasets/demo"))
        .expect("datasets/README.md documents the demo command");
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    Command::cargo_bin("mailsentry")
        .unwrap()
        .current_dir(scratch.path())
        .args(&args)
        .assert()
        .success();
    let made = files(&scratch.path().join("datasets/demo"));
    let committed = files(&repo_root().join("datasets/demo"));
    assert_eq!(
        made.keys().collect::<Vec<_>>(),
        committed.keys().collect::<Vec<_>>(),
        "file lists differ: regenerate datasets/demo with the README's command"
    );
    for (path, bytes) in &made {
        assert!(
            committed[path] == *bytes,
            "{} differs: regenerate datasets/demo with the README's command",
            path.display()
        );
    }
    let size: usize = committed.values().map(Vec::len).sum();
    assert!(size <= 10 << 20, "demo set is {size} bytes, over 10 MB");
}

#[test]
fn simulated_logs_decode_strictly_into_the_labelled_counts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let sim = Command::cargo_bin("mailsentry")
        .unwrap()
        .args(["simulate", "--out"])
        .arg(&out)
        .args([
            "--seed",
            "3",
            "--days",
            "12",
            "--tenants",
            "2",
            "--scale",
            "0.1",
        ])
        .output()
        .unwrap();
    assert!(sim.status.success());
    let summary = String::from_utf8(sim.stderr).unwrap();
    assert!(
        summary.starts_with("simulate summary: records "),
        "{summary}"
    );
    let labels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("labels.json")).unwrap()).unwrap();
    let written: u64 = labels["records"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let decode = Command::cargo_bin("mailsentry")
        .unwrap()
        .args(["decode", "--strict", "--quiet-rejects"])
        .arg(out.join("logs"))
        .output()
        .unwrap();
    let stderr = String::from_utf8(decode.stderr).unwrap();
    assert!(decode.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("records {written}, ")) && stderr.contains("rejected 0,"),
        "{stderr}"
    );
}

#[test]
fn bad_parameters_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (args, why) in [
        (
            vec!["--days", "0"],
            "--days and --tenants must be at least 1",
        ),
        (vec!["--scale", "0"], "--scale 0 is outside"),
    ] {
        let out = Command::cargo_bin("mailsentry")
            .unwrap()
            .args(["simulate", "--out"])
            .arg(dir.path())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(why), "{stderr}");
    }
}
