//! The store on a real SQLite file: feed cursor semantics, triage that survives re-emission and
//! reopening, hashed tokens with scopes, checkpoints.

use chrono::{TimeZone, Utc};
use mailsentry_events::{Alert, AlertConnector, AlertSession, Evidence, Severity};
mod common;
use common as common_scenarios;

use mailsentry_store::{allows, Scope, Store, Triage};

fn alert(id: &str, score: u8) -> Alert {
    Alert {
        id: id.into(),
        version: 1,
        created_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        detected_at: Utc.with_ymd_and_hms(2024, 3, 12, 10, 0, 0).unwrap(),
        tenant_id: "t1".into(),
        connector: AlertConnector {
            app_id: "app".into(),
            name: None,
            credential: None,
            baseline_confidence: None,
        },
        session: AlertSession::default(),
        score,
        severity: Severity::from_score(score),
        p_value: 1e-5,
        reasons: Vec::new(),
        evidence: Evidence::default(),
        sources: Vec::new(),
        status: "new".into(),
        label: None,
    }
}

#[test]
fn feed_pages_in_commit_order_and_an_empty_page_keeps_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    assert_eq!(
        store
            .upsert_alerts(&[alert("a", 50), alert("b", 60), alert("c", 70)])
            .unwrap(),
        3
    );
    let p1 = store.feed(0, 2).unwrap();
    assert_eq!(
        p1.items
            .iter()
            .map(|i| i.alert.id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(p1.has_more);
    let p2 = store.feed(p1.next_cursor, 2).unwrap();
    assert_eq!(p2.items.len(), 1);
    assert!(!p2.has_more);
    let p3 = store.feed(p2.next_cursor, 2).unwrap();
    assert!(p3.items.is_empty());
    assert_eq!(p3.next_cursor, p2.next_cursor);
    // Re-emitting the same alert is not a change; growing it is, and it comes after the cursor.
    assert_eq!(store.upsert_alerts(&[alert("a", 50)]).unwrap(), 0);
    assert_eq!(store.upsert_alerts(&[alert("a", 55)]).unwrap(), 1);
    let p4 = store.feed(p3.next_cursor, 10).unwrap();
    assert_eq!(p4.items.len(), 1);
    assert_eq!(p4.items[0].alert.score, 55);
}

#[test]
fn triage_is_kept_when_the_detector_re_emits_and_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let store = Store::open(&path).unwrap();
        store.upsert_alerts(&[alert("a", 50)]).unwrap();
        let before = store.feed(0, 10).unwrap().next_cursor;
        let t = Triage {
            status: "closed".into(),
            label: Some("false_positive".into()),
            note: Some("vendor maintenance".into()),
        };
        let triaged = store.triage("a", &t, "analyst@soc").unwrap().unwrap();
        assert!(triaged.seq > before);
        assert_eq!(triaged.alert.label.as_deref(), Some("false_positive"));
        // The detector grows the incident: its triage stays.
        store.upsert_alerts(&[alert("a", 65)]).unwrap();
        let bad = Triage {
            status: "closed".into(),
            label: Some("maybe".into()),
            note: None,
        };
        assert!(store
            .triage("a", &bad, "x")
            .unwrap_err()
            .to_string()
            .contains("label"));
        assert!(store.triage("missing", &t, "x").unwrap().is_none());
    }
    let store = Store::open(&path).unwrap();
    let a = store.get("a").unwrap().unwrap();
    assert_eq!(a.alert.score, 65);
    assert_eq!(a.alert.status, "closed");
    assert_eq!(a.alert.label.as_deref(), Some("false_positive"));
}

#[test]
fn tokens_are_hashed_and_scoped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    let token = store.create_token("siem", &[Scope::Read]).unwrap();
    assert!(token.starts_with("mst_") && token.len() > 40);
    assert_eq!(store.token_scopes(&token).unwrap(), Some(vec![Scope::Read]));
    assert_eq!(store.token_scopes("mst_wrong").unwrap(), None);
    // The plain token is nowhere in the database file.
    drop(store);
    let bytes = std::fs::read(&path).unwrap();
    let wal = std::fs::read(dir.path().join("s.db-wal")).unwrap_or_default();
    let needle = token.as_bytes();
    assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    assert!(!wal.windows(needle.len()).any(|w| w == needle));
    assert!(allows(&[Scope::Admin], Scope::Triage));
    assert!(!allows(&[Scope::Read], Scope::Triage));
    assert!(Store::open(&path)
        .unwrap()
        .create_token("none", &[])
        .is_err());
}

#[test]
fn checkpoints_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    assert_eq!(store.load_checkpoint("detector").unwrap(), None);
    store.save_checkpoint("detector", b"{\"state\":1}").unwrap();
    store.save_checkpoint("detector", b"{\"state\":2}").unwrap();
    assert_eq!(
        store.load_checkpoint("detector").unwrap().as_deref(),
        Some(&b"{\"state\":2}"[..])
    );
    let counts = store.counts().unwrap();
    assert_eq!(counts.sequence, 0);
}

#[test]
fn sqlite_store_passes_the_shared_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("shared.db")).unwrap();
    common_scenarios::feed(&store);
    common_scenarios::triage(&store);
    common_scenarios::tokens(&store);
    common_scenarios::checkpoints(&store);
}
