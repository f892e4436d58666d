//! Detection figures on simulated data: mailsentry beside the reference rules, per scenario,
//! with false alerts per connector-day, confounder noise and time to detect.
//!
//! `cargo bench -p mailsentry-detect --bench detection_eval` simulates a month (seed 7, 6
//! tenants, scale 0.5, every scenario twice; tuning was done on seed 1) into a temporary
//! directory, replays it
//! (decode → event-time merge → detector and reference rules in one pass) and prints Markdown.
//! `MAILSENTRY_EVAL_DATA=DIR` evaluates an existing `mailsentry simulate` output instead;
//! `MAILSENTRY_EVAL_SEED`, `_DAYS`, `_TENANTS`, `_SCALE`, `_ROUNDS` change the simulation;
//! `MAILSENTRY_EVAL_ALERTS=FILE` writes mailsentry's alerts as JSON lines.

use mailsentry_detect::evaluation::{at_least, evaluate, of_reference_rule, EvalReport};
use mailsentry_detect::reference::{ReferenceDetectors, REFERENCE_RULES};
use mailsentry_detect::{DetectConfig, Detector, Enrichment};
use mailsentry_events::{GroundTruth, Severity};
use mailsentry_ingest::{collect_input_files, DecodeOptions, Decoded, MergedEvents};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn print_report(reports: &[EvalReport]) {
    let scenarios: Vec<(String, String)> = reports[0]
        .scenarios
        .iter()
        .map(|s| (s.scenario.clone(), s.difficulty.clone()))
        .collect();
    print!("| scenario | difficulty |");
    for r in reports {
        print!(" {} |", r.detector);
    }
    println!();
    print!("|---|---|");
    for _ in reports {
        print!("---|");
    }
    println!();
    for (name, difficulty) in &scenarios {
        print!("| {name} | {difficulty} |");
        for r in reports {
            let s = r
                .scenarios
                .iter()
                .find(|s| &s.scenario == name)
                .expect("same scenarios");
            let ttd = s
                .minutes_to_detect
                .first()
                .map(|m| format!(" ({m:.0} min)"))
                .unwrap_or_default();
            print!(" {}/{}{} |", s.detected, s.campaigns, ttd);
        }
        println!();
    }
    print!("| **recall** | |");
    for r in reports {
        print!(" **{:.0}%** |", r.recall * 100.0);
    }
    println!();
    print!("| false alerts (per connector-day) | |");
    for r in reports {
        print!(" {} ({:.4}) |", r.false_alerts, r.false_per_connector_day);
    }
    println!();
    print!("| median / p90 minutes to detect | |");
    for r in reports {
        let f = |x: Option<f64>| x.map(|m| format!("{m:.0}")).unwrap_or_else(|| "–".into());
        print!(
            " {} / {} |",
            f(r.median_minutes_to_detect),
            f(r.p90_minutes_to_detect)
        );
    }
    println!();
    print!("| false alerts during confounders | |");
    for r in reports {
        let parts: Vec<String> = r
            .noisy_confounders
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        print!(
            " {} |",
            if parts.is_empty() {
                "none".into()
            } else {
                parts.join(", ")
            }
        );
    }
    println!();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("detection_eval: bench");
        return;
    }
    let scratch = tempfile::tempdir().expect("temp dir");
    let data: PathBuf = match std::env::var("MAILSENTRY_EVAL_DATA") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            let config = mailsentry_sim::SimConfig {
                seed: env_or("MAILSENTRY_EVAL_SEED", 7),
                days: env_or("MAILSENTRY_EVAL_DAYS", 30),
                tenants: env_or("MAILSENTRY_EVAL_TENANTS", 6),
                scale: env_or("MAILSENTRY_EVAL_SCALE", 0.5),
                campaign_rounds: env_or("MAILSENTRY_EVAL_ROUNDS", 2),
                command: "mailsentry_sim::simulate (detection_eval bench)".into(),
                ..Default::default()
            };
            eprintln!(
                "simulating seed {} for {} days, {} tenants, scale {}",
                config.seed, config.days, config.tenants, config.scale
            );
            mailsentry_sim::simulate(&config, scratch.path()).expect("simulate");
            scratch.path().to_owned()
        }
    };
    let truth: GroundTruth =
        serde_json::from_slice(&std::fs::read(data.join("labels.json")).expect("labels.json"))
            .expect("labels parse");
    let mut enrichment = Enrichment::none();
    for table in ["asn.csv", "country.csv"] {
        let p = data.join(table);
        if p.exists() {
            enrichment.load(&p).expect("enrichment table");
        }
    }
    let enrichment = Arc::new(enrichment);
    let files: Vec<PathBuf> = collect_input_files(&[data.join("logs")])
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let started = Instant::now();
    let mut merged = MergedEvents::new(files, DecodeOptions::default());
    let mut config = DetectConfig::default();
    if std::env::var("MAILSENTRY_EVAL_VERBOSE").as_deref() == Ok("2") {
        // Show low-severity incidents too (they are not counted as detections below).
        config.min_severity = Severity::Low;
    }
    let mut detector = Detector::new(config, enrichment.clone());
    let mut references = ReferenceDetectors::new(enrichment);
    for item in merged.by_ref() {
        if let Decoded::Event(e) = item {
            detector.process(&e);
            references.process(&e);
        }
    }
    detector.finish();
    let secs = started.elapsed().as_secs_f64();
    let stats = merged.stats().clone();
    let created = chrono::DateTime::from_timestamp(0, 0).expect("epoch");
    let alerts = detector.alerts(created);
    if let Ok(path) = std::env::var("MAILSENTRY_EVAL_ALERTS") {
        let mut f = std::fs::File::create(path).expect("alerts file");
        for a in &alerts {
            serde_json::to_writer(&mut f, a).expect("write");
            f.write_all(b"\n").expect("write");
        }
    }
    let ref_alerts = references.finish();
    let mut reports = vec![evaluate(
        "mailsentry (≥ medium)",
        &truth,
        &at_least(&alerts, Severity::Medium),
    )];
    for rule in REFERENCE_RULES {
        reports.push(evaluate(
            rule,
            &truth,
            &of_reference_rule(rule, &ref_alerts),
        ));
    }
    println!(
        "data: {} (seed {}, {} days, {} tenants, learning {} days): {} records, {} events, replayed with all detectors in {:.1} s ({:.0} records/s)",
        truth.command, truth.seed, truth.days, truth.tenants.len(), truth.learning_days, stats.records, stats.events, secs, stats.records as f64 / secs
    );
    let ds = detector.stats();
    println!(
        "detector: {} sessions, {} evaluations, {} quarantined, {} tokens joined, {} late events, {} alerts (≥ medium), connector-days after learning {:.0}\n",
        ds.sessions_opened, ds.evaluations, ds.sessions_quarantined, ds.tokens_joined, ds.late, alerts.len(), reports[0].connector_days
    );
    print_report(&reports);
    if std::env::var("MAILSENTRY_EVAL_VERBOSE").is_ok() {
        for a in &alerts {
            println!(
                "\n{} {} {} {} score {} ips {:?}",
                a.detected_at,
                a.tenant_id,
                a.connector.app_id,
                a.severity.name(),
                a.score,
                a.session.client_ips
            );
            for r in &a.reasons {
                println!("   - [{}] p={:.2e} {}", r.signal, r.p_value, r.summary);
            }
        }
    }
}
