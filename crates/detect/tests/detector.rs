//! The detector on simulated traffic: it finds the attacks, stays quiet otherwise, gives the
//! same alerts whatever the run is split into, and keeps its bounds.

use chrono::{DateTime, Duration, TimeZone, Utc};
use mailsentry_detect::evaluation::{at_least, evaluate};
use mailsentry_detect::reference::ReferenceDetectors;
use mailsentry_detect::{DetectConfig, Detector, Enrichment};
use mailsentry_events::{
    Alert, ClientAddress, ConnectorIdentity, Event, EventKind, GroundTruth, MailAccessType,
    MailboxAccess, Origin, Severity, SourceFormat,
};
use mailsentry_ingest::{collect_input_files, DecodeOptions, Decoded, MergedEvents};
use std::sync::{Arc, OnceLock};

/// The package's directory as cargo gives it when running the tests (the path compiled in
/// otherwise): a test binary reused from a build of another checkout then still reads this
/// checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

struct Run {
    truth: GroundTruth,
    events: Vec<Event>,
    enrichment: Arc<Enrichment>,
}

/// A month-long simulation (seed 5: neither the tuning seed 1 nor the reported seed 7),
/// decoded and merged once for all tests.
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = mailsentry_sim::SimConfig {
            seed: 5,
            days: 21,
            tenants: 3,
            scale: 0.3,
            ..Default::default()
        };
        mailsentry_sim::simulate(&config, dir.path()).unwrap();
        let truth: GroundTruth =
            serde_json::from_slice(&std::fs::read(dir.path().join("labels.json")).unwrap())
                .unwrap();
        let mut enrichment = Enrichment::none();
        enrichment.load(&dir.path().join("asn.csv")).unwrap();
        enrichment.load(&dir.path().join("country.csv")).unwrap();
        let files = collect_input_files(&[dir.path().join("logs")])
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let events = MergedEvents::new(files, DecodeOptions::default())
            .map(|d| match d {
                Decoded::Event(e) => e,
                Decoded::Reject(r) => panic!("reject: {r}"),
            })
            .collect();
        Run {
            truth,
            events,
            enrichment: Arc::new(enrichment),
        }
    })
}

fn epoch() -> DateTime<Utc> {
    Utc.timestamp_opt(0, 0).unwrap()
}

fn detect(events: &[Event], enrichment: &Arc<Enrichment>) -> Vec<Alert> {
    let mut d = Detector::new(DetectConfig::default(), enrichment.clone());
    for e in events {
        d.process(e);
    }
    d.finish();
    d.alerts(epoch())
}

#[test]
fn finds_the_attacks_and_beats_the_reference_rules() {
    let r = run();
    let alerts = detect(&r.events, &r.enrichment);
    let report = evaluate("mailsentry", &r.truth, &at_least(&alerts, Severity::Medium));
    assert!(
        report.recall >= 0.85,
        "recall {:.2}: {:#?}",
        report.recall,
        report.scenarios
    );
    assert!(report.false_per_connector_day <= 0.02, "{report:#?}");
    // Rules and easy scenarios must never be missed.
    for s in &report.scenarios {
        if [
            "hosting_bulk_night",
            "rotated_key_used",
            "credential_added_then_used",
            "rogue_relay_weak_tls",
        ]
        .contains(&s.scenario.as_str())
        {
            assert_eq!(s.detected, s.campaigns, "{} missed", s.scenario);
        }
    }
    let mut refs = ReferenceDetectors::new(r.enrichment.clone());
    for e in &r.events {
        refs.process(e);
    }
    let ref_alerts = refs.finish();
    for rule in mailsentry_detect::reference::REFERENCE_RULES {
        let d: Vec<_> = ref_alerts
            .iter()
            .filter(|a| a.detector == rule)
            .map(|a| mailsentry_detect::evaluation::Detection {
                tenant: a.tenant.clone(),
                connector: a.connector.clone(),
                at: a.at,
                ips: a.ips.clone(),
            })
            .collect();
        let theirs = evaluate(rule, &r.truth, &d);
        assert!(
            report.recall > theirs.recall,
            "{rule} recall {} ≥ ours {}",
            theirs.recall,
            report.recall
        );
    }
    // Every alert explains itself.
    for a in &alerts {
        assert!(!a.reasons.is_empty());
        assert!(a
            .reasons
            .iter()
            .all(|r| !r.summary.is_empty() && !r.baseline.is_empty()));
        assert!(!a.evidence.event_ids.is_empty());
    }
}

#[test]
fn same_input_same_alerts() {
    let r = run();
    let a = serde_json::to_string(&detect(&r.events, &r.enrichment)).unwrap();
    let b = serde_json::to_string(&detect(&r.events, &r.enrichment)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_run_split_by_a_snapshot_gives_the_same_alerts() {
    let r = run();
    let cut = r.truth.start.and_hms_opt(0, 0, 0).unwrap().and_utc() + Duration::days(10);
    let whole = detect(&r.events, &r.enrichment);
    let mut first = Detector::new(DetectConfig::default(), r.enrichment.clone());
    // Days 1–10, then the rest: the stream is cut where it reaches day 11 (the merged stream is
    // in event-time order up to the lateness of audit records).
    let k = r.events.iter().position(|e| e.time >= cut).unwrap();
    let (before, after) = r.events.split_at(k);
    for e in before {
        first.process(e);
    }
    let state = first.snapshot();
    let first_alerts = first.alerts(epoch());
    let mut second = Detector::restore(&state, r.enrichment.clone()).unwrap();
    for e in after {
        second.process(e);
    }
    second.finish();
    let mut merged: std::collections::BTreeMap<String, Alert> = first_alerts
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    for a in second.alerts(epoch()) {
        merged.insert(a.id.clone(), a);
    }
    let mut split: Vec<Alert> = merged.into_values().collect();
    split.sort_by(|a, b| {
        a.detected_at
            .cmp(&b.detected_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    assert!(!whole.is_empty());
    let (a, b) = (
        serde_json::to_string_pretty(&split).unwrap(),
        serde_json::to_string_pretty(&whole).unwrap(),
    );
    if a != b {
        std::fs::write("/tmp/split.json", &a).ok();
        std::fs::write("/tmp/whole.json", &b).ok();
    }
    assert!(
        a == b,
        "split and whole runs differ (see /tmp/split.json, /tmp/whole.json)"
    );
}

#[test]
fn a_snapshot_taken_anywhere_restores_exactly() {
    // Cut mid-stream (sessions open, some from networks their connector has not established,
    // tokens waiting to be joined): the restored detector must go on exactly as the one that
    // never stopped — same alerts, counters and final state (the expiry heap's layout aside).
    let r = run();
    let state_of = |d: &Detector| {
        let mut v: serde_json::Value = serde_json::from_slice(&d.snapshot()).unwrap();
        v.as_object_mut().unwrap().remove("deadlines");
        v
    };
    let mut whole = Detector::new(DetectConfig::default(), r.enrichment.clone());
    for e in &r.events {
        whole.process(e);
    }
    whole.finish();
    // Sessions held back from learning (probation, quarantine) are restored too: each must
    // find its connector again when it is finally learned.
    let mut held_at_cuts = 0;
    for sevenths in [1, 3, 5] {
        let k = r.events.len() * sevenths / 7;
        let mut d = Detector::new(DetectConfig::default(), r.enrichment.clone());
        for e in &r.events[..k] {
            d.process(e);
        }
        assert!(d.open_sessions() > 0, "the cut at {k} leaves sessions open");
        let snapshot = d.snapshot();
        let cut: serde_json::Value = serde_json::from_slice(&snapshot).unwrap();
        let held = |list: &str| cut[list].as_array().map_or(0, Vec::len);
        held_at_cuts += held("probation") + held("quarantine");
        let mut d = Detector::restore(&snapshot, r.enrichment.clone()).unwrap();
        for e in &r.events[k..] {
            d.process(e);
        }
        d.finish();
        assert_eq!(
            serde_json::to_string(&d.alerts(epoch())).unwrap(),
            serde_json::to_string(&whole.alerts(epoch())).unwrap(),
            "alerts after a cut at event {k}"
        );
        assert!(
            state_of(&d) == state_of(&whole),
            "state after a cut at event {k}"
        );
    }
    assert!(
        held_at_cuts > 0,
        "some cut holds sessions back from learning"
    );
}

fn access(tenant: &str, app: &str, ip: &str, t: DateTime<Utc>, mailbox: &str, id: &str) -> Event {
    Event {
        id: id.into(),
        time: t,
        tenant_id: Some(tenant.into()),
        origin: Origin {
            format: SourceFormat::ManagementApi,
            file: Arc::from("test"),
            line: 1,
            offset: 0,
            record_id: None,
        },
        kind: EventKind::MailboxAccess(MailboxAccess {
            operation: "MailItemsAccessed".into(),
            actor: ConnectorIdentity {
                app_id: Some(app.into()),
                client_app_id: Some(app.into()),
                ..Default::default()
            },
            user_type: Some(5),
            client: Some(ClientAddress {
                ip: ip.parse().unwrap(),
                port: None,
            }),
            access_type: Some(MailAccessType::Bind),
            operation_count: 1,
            mailbox_upn: Some(mailbox.into()),
            ..Default::default()
        }),
    }
}

#[test]
fn out_of_order_events_land_in_the_same_session() {
    let t0 = Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap();
    let events = [
        access("t", "app", "198.51.100.1", t0, "a@x", "1"),
        access(
            "t",
            "app",
            "198.51.100.1",
            t0 + Duration::minutes(50),
            "b@x",
            "2",
        ),
        // Late: bridges the two into one session.
        access(
            "t",
            "app",
            "198.51.100.1",
            t0 + Duration::minutes(25),
            "c@x",
            "3",
        ),
    ];
    let mut d = Detector::new(DetectConfig::default(), Arc::new(Enrichment::none()));
    for e in &events {
        d.process(e);
    }
    assert_eq!(
        d.open_sessions(),
        1,
        "the bridging event merged the two sessions"
    );
    d.finish();
    assert_eq!(d.stats().sessions_closed, 1);
}

#[test]
fn open_sessions_are_capped_and_evictions_counted() {
    let config = DetectConfig {
        max_open_sessions: 10,
        ..Default::default()
    };
    let mut d = Detector::new(config, Arc::new(Enrichment::none()));
    let t0 = Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap();
    for i in 0..100u32 {
        let ip = format!("198.51.{}.{}", i / 250, i % 250 + 1);
        d.process(&access(
            "t",
            "app",
            &ip,
            t0 + Duration::seconds(i as i64),
            "a@x",
            &i.to_string(),
        ));
    }
    assert!(d.open_sessions() <= 10);
    assert_eq!(d.stats().sessions_evicted, 90);
}

#[test]
fn eviction_closes_the_least_recently_active_session() {
    let config = DetectConfig {
        max_open_sessions: 2,
        ..Default::default()
    };
    let mut d = Detector::new(config, Arc::new(Enrichment::none()));
    let t0 = Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap();
    let at = |ip: &str, minutes: i64, id: &str| {
        access("t", "app", ip, t0 + Duration::minutes(minutes), "a@x", id)
    };
    // A opens first but is active again after B opened: B is the least recently active.
    d.process(&at("198.51.100.1", 0, "a1"));
    d.process(&at("198.51.100.2", 1, "b1"));
    d.process(&at("198.51.100.1", 2, "a2"));
    d.process(&at("198.51.100.3", 3, "c1"));
    assert_eq!(d.stats().sessions_evicted, 1);
    // A is still open: its next event joins it instead of opening a session.
    d.process(&at("198.51.100.1", 4, "a3"));
    assert_eq!(d.stats().sessions_opened, 3, "A was evicted instead of B");
    assert_eq!(d.stats().sessions_evicted, 1);
}

#[test]
fn a_snapshot_restores_to_the_same_state() {
    let r = run();
    let mut d = Detector::new(DetectConfig::default(), r.enrichment.clone());
    for e in r.events.iter().take(r.events.len() / 2) {
        d.process(e);
    }
    let s1 = d.snapshot();
    let mut restored = Detector::restore(&s1, r.enrichment.clone()).unwrap();
    assert!(restored.snapshot() == s1, "restore is not exact");
    for e in r.events.iter().skip(r.events.len() / 2) {
        d.process(e);
        restored.process(e);
    }
    let (s1, s2) = (d.snapshot(), restored.snapshot());
    if s1 != s2 {
        std::fs::write("/tmp/s1.json", &s1).ok();
        std::fs::write("/tmp/s2.json", &s2).ok();
    }
    assert!(
        s1 == s2,
        "snapshot does not round-trip (see /tmp/s1.json, /tmp/s2.json)"
    );
}

#[test]
fn maxmind_databases_give_asn_and_country() {
    let root = manifest_dir().join("../../tests/fixtures/mmdb");
    let mut e = Enrichment::none();
    e.load(&root.join("test-asn.mmdb")).unwrap();
    e.load(&root.join("test-country.mmdb")).unwrap();
    let p = e.lookup("198.51.100.7".parse().unwrap());
    assert_eq!(p.asn, Some(64501));
    assert_eq!(p.org.as_deref(), Some("EXAMPLE-HOSTING"));
    assert_eq!(p.country.as_deref(), Some("NL"));
    assert_eq!(e.lookup("2001:db8:1::9".parse().unwrap()).asn, Some(64502));
    assert_eq!(e.lookup("192.0.2.1".parse().unwrap()).asn, None);
    // A file that claims to be a database but is not is refused with its name.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), b"\xab\xcd\xefMaxMind.com garbage").unwrap();
    let err = Enrichment::none().load(bad.path()).unwrap_err().to_string();
    assert!(err.contains("not a readable MaxMind database"), "{err}");
}

fn signin(app: &str, ip: &str, key: &str, t: DateTime<Utc>) -> Event {
    Event {
        id: format!("signin-{ip}-{}", t.timestamp()),
        time: t,
        tenant_id: Some("t".into()),
        origin: Origin {
            format: SourceFormat::EntraDiagnostic,
            file: Arc::from("test"),
            line: 1,
            offset: 0,
            record_id: None,
        },
        kind: EventKind::SignIn(mailsentry_events::SignIn {
            category: mailsentry_events::SignInCategory::ServicePrincipal,
            actor: ConnectorIdentity {
                app_id: Some(app.into()),
                ..Default::default()
            },
            user_principal_name: None,
            client: Some(ClientAddress {
                ip: ip.parse().unwrap(),
                port: None,
            }),
            country: None,
            credential_type: None,
            credential_key_id: Some(key.into()),
            credential_thumbprint: None,
            resource_id: None,
            resource_name: None,
            token_id: Some(format!("tok-{ip}-{}", t.timestamp())),
            correlation_id: None,
            user_agent: None,
            error_code: 0,
            success: true,
        }),
    }
}

#[test]
fn declared_vendor_ranges_and_keys_sharpen_detection_from_the_first_day() {
    let config: DetectConfig = serde_json::from_value(serde_json::json!({
        "connectors": [{
            "name": "Backup",
            "app_ids": ["app"],
            "vendor_cidrs": ["198.51.100.0/24"],
            "expected_key_ids": ["key-1"]
        }]
    }))
    .unwrap();
    let mut d = Detector::new(config, Arc::new(Enrichment::none()));
    let t0 = Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap();
    // Inside the declared range, expected key: quiet, even on day one.
    d.process(&signin("app", "198.51.100.7", "key-1", t0));
    d.process(&access(
        "t",
        "app",
        "198.51.100.7",
        t0 + Duration::seconds(5),
        "a@x",
        "r1",
    ));
    assert!(d.alerts(epoch()).is_empty());
    // Outside the range, unexpected key: two hard facts.
    d.process(&signin(
        "app",
        "203.0.113.9",
        "key-2",
        t0 + Duration::hours(1),
    ));
    let alerts = d.alerts(epoch());
    assert_eq!(alerts.len(), 1);
    let signals: Vec<&str> = alerts[0]
        .reasons
        .iter()
        .map(|r| r.signal.as_str())
        .collect();
    assert!(
        signals.contains(&"source.outside_vendor_ranges"),
        "{signals:?}"
    );
    assert!(
        signals.contains(&"credential.unexpected_key"),
        "{signals:?}"
    );
    assert_eq!(alerts[0].connector.name.as_deref(), Some("Backup"));
    // On its first day the connector's baseline is barely formed, and the alert says so.
    assert!(alerts[0].connector.baseline_confidence.unwrap() < 0.1);
    assert_eq!(alerts[0].severity, Severity::High);
    // The analyst says false positive: the source is suppressed and learned, so the same use a
    // day later raises nothing new.
    assert!(d.apply_label(&alerts[0].id, "false_positive"));
    assert!(!d.apply_label("no-such-alert", "false_positive"));
    let before = serde_json::to_string(&d.alerts(epoch())).unwrap();
    d.process(&signin(
        "app",
        "203.0.113.9",
        "key-2",
        t0 + Duration::days(1),
    ));
    d.process(&access(
        "t",
        "app",
        "203.0.113.9",
        t0 + Duration::days(1) + Duration::seconds(5),
        "a@x",
        "r2",
    ));
    d.finish();
    assert_eq!(
        serde_json::to_string(&d.alerts(epoch())).unwrap(),
        before,
        "a suppressed source alerted again"
    );
}

mod invariants {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

        /// Every used event lands in exactly one session, whatever the order events arrive in
        /// (out of order by up to hours), however sessions merge, split at their maximum
        /// length, or are evicted at the cap.
        #[test]
        fn every_event_lands_in_exactly_one_session(
            events in proptest::collection::vec((0i64..6 * 3600, 0u8..5, 0u8..3), 1..300),
            cap in 2usize..50,
        ) {
            let config = DetectConfig { max_open_sessions: cap, ..Default::default() };
            let mut d = Detector::new(config, Arc::new(Enrichment::none()));
            let t0 = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
            for (i, (offset, source, app)) in events.iter().enumerate() {
                let ip = format!("198.51.100.{}", source + 1);
                d.process(&access("t", &format!("app-{app}"), &ip, t0 + Duration::seconds(*offset), "m@x", &i.to_string()));
            }
            d.finish();
            let s = d.stats();
            prop_assert_eq!(d.open_sessions(), 0);
            prop_assert_eq!(s.session_events, s.used - s.credential_changes);
            prop_assert_eq!(s.sessions_closed + merged(s), s.sessions_opened);
        }
    }

    /// Sessions that were merged into another never close on their own.
    fn merged(s: &mailsentry_detect::DetectStats) -> u64 {
        s.sessions_merged
    }
}

/// A one-component model fitted in the test (mean and diagonal variance of the benign,
/// post-learning rows) with a calibration set from the same rows.
fn diagonal_model(
    rows: &[mailsentry_detect::features::SessionFeatures],
) -> mailsentry_detect::model::Model {
    use mailsentry_detect::features::{feature_names, schema_hash};
    use mailsentry_detect::model::*;
    let d = feature_names().len();
    let benign: Vec<&Vec<f64>> = rows
        .iter()
        .filter(|r| !r.learning)
        .map(|r| &r.values)
        .collect();
    let n = benign.len() as f64;
    let mean: Vec<f64> = (0..d)
        .map(|j| benign.iter().map(|v| v[j]).sum::<f64>() / n)
        .collect();
    let scale: Vec<f64> = (0..d)
        .map(|j| {
            let var = benign.iter().map(|v| (v[j] - mean[j]).powi(2)).sum::<f64>() / n;
            if var > 1e-12 {
                var.sqrt()
            } else {
                1.0
            }
        })
        .collect();
    let mut precision = vec![0.0; d * d];
    for j in 0..d {
        precision[j * d + j] = 1.0 / 1.01; // standardized variance 1, regularized
    }
    let mut model = Model {
        format_version: FORMAT_VERSION,
        name: "test-diagonal@1".into(),
        schema_hash: schema_hash(),
        features: feature_names(),
        scaler: Scaler { mean, scale },
        mixture: Mixture {
            weights: vec![1.0],
            means: vec![vec![0.0; d]],
            precisions: vec![precision],
            log_det: vec![],
        },
        calibration: vec![0.0],
        reranker: None,
        weight: 0.3,
        provenance: Provenance {
            window_start: String::new(),
            window_end: String::new(),
            seed: 0,
            fit_rows: benign.len() as u64,
            calibration_rows: benign.len() as u64,
            attack_rows: 0,
            command: "test".into(),
        },
    }
    .validated(std::path::Path::new("test"))
    .unwrap();
    let mut cal: Vec<f64> = benign
        .iter()
        .map(|v| model.judge(v).nonconformity)
        .collect();
    cal.sort_by(f64::total_cmp);
    model.calibration = cal;
    model
}

#[test]
fn feature_rows_come_from_the_live_sessions_and_a_model_joins_the_scoring() {
    let r = run();
    let mut d = Detector::new(DetectConfig::default(), r.enrichment.clone());
    d.collect_feature_rows();
    for e in &r.events {
        d.process(e);
    }
    d.finish();
    let rows = d.take_feature_rows();
    assert_eq!(
        rows.len() as u64,
        d.stats().sessions_closed,
        "one row per closed session"
    );
    let width = mailsentry_detect::features::feature_names().len();
    assert!(rows
        .iter()
        .all(|r| r.values.len() == width && r.values.iter().all(|v| v.is_finite())));
    assert!(rows.iter().any(|r| !r.learning));
    // Rows of attack sessions carry the signals that made them alert.
    let alerted = rows.iter().filter(|r| r.score >= 40).count();
    assert!(alerted > 0);

    let model = std::sync::Arc::new(diagonal_model(&rows));
    let mut with = Detector::new(DetectConfig::default(), r.enrichment.clone());
    with.set_model(Some(model.clone()));
    assert_eq!(with.model_name(), Some("test-diagonal@1"));
    for e in &r.events {
        with.process(e);
    }
    with.finish();
    let alerts = with.alerts(epoch());
    let reasons: Vec<&str> = alerts
        .iter()
        .flat_map(|a| a.reasons.iter().map(|x| x.signal.as_str()))
        .collect();
    assert!(
        reasons.contains(&mailsentry_detect::model::SIGNAL_ID),
        "the model's signal explains some alerts: {reasons:?}"
    );
    // The campaigns are still found with the model layer in.
    let report = evaluate("with model", &r.truth, &at_least(&alerts, Severity::Medium));
    assert!(report.recall >= 0.9, "{report:?}");
}
