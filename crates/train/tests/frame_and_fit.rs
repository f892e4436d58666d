//! The feature frame round-trips through Parquet with exactly the live detector's sessions, and
//! training on it is deterministic and refuses what it cannot use.

use mailsentry_detect::features::SessionFeatures;
use mailsentry_detect::model::Model;
use mailsentry_detect::{DetectConfig, Enrichment};
use mailsentry_train::fit::{train, write_model, TrainOptions};
use mailsentry_train::frame::{extract_features, read_rows, Rows};
use mailsentry_train::labels::Labels;
use mailsentry_train::pass::{run_pass, Pass};
use polars::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

struct Sim {
    _dir: tempfile::TempDir,
    logs: PathBuf,
    labels: Labels,
    enrichment: Arc<Enrichment>,
}

fn sim() -> &'static Sim {
    static SIM: OnceLock<Sim> = OnceLock::new();
    SIM.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = mailsentry_sim::SimConfig {
            seed: 11,
            days: 21,
            tenants: 2,
            scale: 0.3,
            ..Default::default()
        };
        mailsentry_sim::simulate(&config, dir.path()).unwrap();
        let mut enrichment = Enrichment::none();
        enrichment.load(&dir.path().join("asn.csv")).unwrap();
        enrichment.load(&dir.path().join("country.csv")).unwrap();
        Sim {
            logs: dir.path().join("logs"),
            labels: Labels::load(&dir.path().join("labels.json")).unwrap(),
            enrichment: Arc::new(enrichment),
            _dir: dir,
        }
    })
}

/// The live detector over the simulation, collecting feature rows.
fn live_pass(s: &Sim) -> (Pass, Vec<SessionFeatures>) {
    run_pass(
        std::slice::from_ref(&s.logs),
        &DetectConfig::default(),
        &s.enrichment,
        None,
        false,
        &mut |_| {},
    )
}

#[test]
fn the_parquet_frame_holds_the_live_sessions_and_reads_back() {
    let s = sim();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.parquet");
    let stats = extract_features(
        std::slice::from_ref(&s.logs),
        DetectConfig::default(),
        s.enrichment.clone(),
        Some(&s.labels),
        &out,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(stats.rejected, 0);
    assert!(stats.attack_rows > 0, "{stats:?}");

    // The same sessions as an in-memory pass of the live detector.
    let (_, live) = live_pass(s);
    assert_eq!(stats.rows, live.len() as u64);

    // Anyone's polars reads it: every feature column, one row per session.
    let df = ParquetReader::new(std::fs::File::open(&out).unwrap())
        .finish()
        .unwrap();
    assert_eq!(df.height() as u64, stats.rows);
    for name in mailsentry_detect::features::feature_names() {
        assert!(df.column(&name).is_ok(), "{name}");
    }
    let attacks = df
        .column("label")
        .unwrap()
        .bool()
        .unwrap()
        .sum()
        .unwrap_or(0);
    assert_eq!(attacks as u64, stats.attack_rows);

    let rows = read_rows(&out).unwrap();
    let expected = Rows::from_features(&live, Some(&s.labels));
    assert_eq!(rows, expected, "scored rows read back exactly");
}

#[test]
fn a_frame_of_another_schema_is_refused_by_column() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("old.parquet");
    let mut df = df!("tenant_id" => ["t"], "learning" => [false]).unwrap();
    ParquetWriter::new(std::fs::File::create(&out).unwrap())
        .finish(&mut df)
        .unwrap();
    let err = read_rows(&out).unwrap_err().to_string();
    assert!(
        err.contains("old.parquet") && err.contains("another feature schema"),
        "{err}"
    );
}

#[test]
fn training_is_deterministic_and_the_detector_loads_the_result() {
    let s = sim();
    let (_, live) = live_pass(s);
    let rows = Rows::from_features(&live, Some(&s.labels));
    let options = TrainOptions {
        name: "t@1".into(),
        min_attacks: 1,
        ..TrainOptions::default()
    };
    let (a, summary) = train(&rows, &options).unwrap();
    let (b, _) = train(&rows, &options).unwrap();
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    assert!(a.reranker.is_some());
    assert_eq!(
        summary.calibration_rows + summary.fit_rows + summary.attack_rows,
        rows.len()
    );
    // The density was fitted on benign sessions only: attacks look less likely.
    assert!(summary.density_auc.unwrap() > 0.7, "{summary:?}");
    let other = train(
        &rows,
        &TrainOptions {
            seed: 2,
            ..options.clone()
        },
    )
    .unwrap()
    .0;
    assert_ne!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&other).unwrap()
    );

    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &a, &summary, &options).unwrap();
    let loaded = Model::load(dir.path()).unwrap();
    assert_eq!(loaded.name, "t@1");
    let card = std::fs::read_to_string(dir.path().join("MODEL.md")).unwrap();
    assert!(card.contains("re-ranker coefficient"), "{card}");

    // Too little data is a clear error, not a model.
    let few = Rows {
        width: rows.width,
        values: rows.values[..10 * rows.width].to_vec(),
        tenant: rows.tenant[..10].to_vec(),
        connector: rows.connector[..10].to_vec(),
        source: rows.source[..10].to_vec(),
        first: rows.first[..10].to_vec(),
        last: rows.last[..10].to_vec(),
        score: rows.score[..10].to_vec(),
        p_value: rows.p_value[..10].to_vec(),
        label: rows.label[..10].to_vec(),
        scenario: rows.scenario[..10].to_vec(),
    };
    let err = train(&few, &options).unwrap_err().to_string();
    assert!(err.contains("at least 50"), "{err}");
}

#[test]
fn analyst_labels_from_an_exported_feed_page_label_their_sessions_only() {
    let s = sim();
    let (pass, live) = live_pass(s);
    let mut alerts = pass.alerts.clone();
    assert!(alerts.len() >= 2);
    alerts[0].label = Some("true_positive".into());
    alerts[1].label = Some("false_positive".into());
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("feed.json");
    std::fs::write(
        &page,
        serde_json::json!({"items": alerts, "next_cursor": "9"}).to_string(),
    )
    .unwrap();
    let labels = Labels::load(&page).unwrap();
    assert!(labels.truth().is_none());
    let rows = Rows::from_features(&live, Some(&labels));
    let attack = rows.label.iter().filter(|l| **l == Some(true)).count();
    let benign = rows.label.iter().filter(|l| **l == Some(false)).count();
    let unknown = rows.label.iter().filter(|l| l.is_none()).count();
    assert!(attack > 0 && benign > 0, "{attack} {benign}");
    assert!(
        unknown > attack + benign,
        "untriaged sessions stay unlabelled"
    );
    // Garbage is a located error.
    std::fs::write(&page, b"{\"items\": [1]}\n").unwrap();
    let err = Labels::load(&page).unwrap_err().to_string();
    assert!(
        err.contains("feed.json") && err.contains("not a native alert"),
        "{err}"
    );
}
