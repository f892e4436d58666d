//! The data engineer's loop at size: `features`, `train` and `eval` with the release binary,
//! each step's wall time and peak resident set (the binary reports its own `VmHWM`).
//!
//! `cargo bench -p mailsentry-cli --bench train_scale` simulates `--seed 7 --days 30 --tenants 6
//! --scale 0.5 --campaign-rounds 2` into a temporary directory; `TRAIN_SCALE_DATA=DIR` uses an
//! existing `mailsentry simulate` output instead (the large recipe of datasets/README.md:
//! `--seed 7 --days 30 --tenants 24 --scale 12`, 15.6 million records). `TRAIN_SCALE_EVAL=0`
//! skips the evaluation passes.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mailsentry"))
}

struct Step {
    name: &'static str,
    seconds: f64,
    peak_mib: Option<f64>,
    said: String,
}

fn step(name: &'static str, args: &[&std::ffi::OsStr]) -> Step {
    let started = Instant::now();
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run mailsentry");
    let seconds = started.elapsed().as_secs_f64();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{name} failed:\n{said}");
    let peak_mib = said
        .rsplit("peak RSS ")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    let said = said
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_owned();
    Step {
        name,
        seconds,
        peak_mib,
        said,
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("train_scale: bench");
        return;
    }
    let scratch = tempfile::tempdir().expect("temp dir");
    let data: PathBuf = match std::env::var("TRAIN_SCALE_DATA") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            let out = scratch.path().join("sim");
            let status = Command::new(bin())
                .args(["simulate", "--seed", "7", "--days", "30", "--tenants", "6"])
                .args(["--scale", "0.5", "--campaign-rounds", "2", "--out"])
                .arg(&out)
                .status()
                .expect("simulate");
            assert!(status.success());
            out
        }
    };
    let frame = scratch.path().join("features.parquet");
    let model = scratch.path().join("model");
    let report = scratch.path().join("report");
    let d = data.as_os_str();
    let mut steps = vec![
        step(
            "features (decode, sessionize, score, write Parquet)",
            &[
                os("features"),
                os("--data"),
                d,
                os("--out"),
                frame.as_os_str(),
            ],
        ),
        step(
            "train from the Parquet frame",
            &[
                os("train"),
                os("--data"),
                frame.as_os_str(),
                os("--labels"),
                data.join("labels.json").as_os_str(),
                os("--out"),
                model.as_os_str(),
            ],
        ),
    ];
    if std::env::var("TRAIN_SCALE_EVAL").as_deref() != Ok("0") {
        steps.push(step(
            "eval (two passes + reference rules, report)",
            &[
                os("eval"),
                os("--data"),
                d,
                os("--model"),
                model.as_os_str(),
                os("--report"),
                report.as_os_str(),
            ],
        ));
    }
    let frame_mb = std::fs::metadata(&frame).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    println!("data: {}; Parquet frame {frame_mb:.1} MB", data.display());
    println!("| step | wall s | peak RSS MiB | summary |");
    println!("|---|---:|---:|---|");
    for s in &steps {
        println!(
            "| {} | {:.1} | {} | {} |",
            s.name,
            s.seconds,
            s.peak_mib
                .map(|m| format!("{m:.0}"))
                .unwrap_or_else(|| "–".into()),
            s.said.replace('|', "/")
        );
    }
}
