//! The store on a real SQLite file: feed cursor semantics, triage that survives re-emission and
//! reopening, hashed tokens with scopes, checkpoints.

mod common;
use common as common_scenarios;

use common::alert;
use mailsentry_store::{allows, Scope, Store, Triage};

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
fn sqlite_store_passes_the_shared_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("shared.db")).unwrap();
    common_scenarios::feed(&store);
    common_scenarios::triage(&store);
    common_scenarios::tokens(&store);
    common_scenarios::checkpoints(&store);
}
