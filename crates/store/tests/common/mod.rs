//! Behaviour every alert store must have, run against SQLite (store.rs) and PostgreSQL
//! (postgres.rs).

use chrono::{TimeZone, Utc};
use mailsentry_events::{Alert, AlertConnector, AlertSession, Evidence, Severity};
use mailsentry_store::{AlertStore, Scope, Triage};

pub fn alert(id: &str, score: u8) -> Alert {
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

/// Paging in commit order, the same cursor for an empty page, re-emission is not a change,
/// growth is.
pub fn feed(store: &dyn AlertStore) {
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
    assert_eq!(store.upsert_alerts(&[alert("a", 50)]).unwrap(), 0);
    assert_eq!(store.upsert_alerts(&[alert("a", 55)]).unwrap(), 1);
    let p4 = store.feed(p3.next_cursor, 10).unwrap();
    assert_eq!(p4.items.len(), 1);
    assert_eq!(p4.items[0].alert.score, 55);
}

/// Triage is kept when the detector re-emits, bad labels are refused.
pub fn triage(store: &dyn AlertStore) {
    store.upsert_alerts(&[alert("t", 50)]).unwrap();
    let before = store.counts().unwrap().sequence;
    let t = Triage {
        status: "closed".into(),
        label: Some("false_positive".into()),
        note: Some("vendor maintenance".into()),
    };
    let triaged = store.triage("t", &t, "analyst@soc").unwrap().unwrap();
    assert!(triaged.seq > before);
    store.upsert_alerts(&[alert("t", 65)]).unwrap();
    let got = store.get("t").unwrap().unwrap().alert;
    assert_eq!(
        (got.score, got.status.as_str(), got.label.as_deref()),
        (65, "closed", Some("false_positive"))
    );
    let bad = Triage {
        status: "closed".into(),
        label: Some("maybe".into()),
        note: None,
    };
    assert!(store
        .triage("t", &bad, "x")
        .unwrap_err()
        .to_string()
        .contains("label"));
    assert!(store.triage("missing", &t, "x").unwrap().is_none());
}

/// Tokens are scoped; unknown tokens have no scopes; a token needs a scope.
pub fn tokens(store: &dyn AlertStore) {
    let token = store.create_token("siem", &[Scope::Read]).unwrap();
    assert_eq!(store.token_scopes(&token).unwrap(), Some(vec![Scope::Read]));
    assert_eq!(store.token_scopes("mst_wrong").unwrap(), None);
    assert!(store.create_token("none", &[]).is_err());
}

/// Checkpoints overwrite.
pub fn checkpoints(store: &dyn AlertStore) {
    assert_eq!(store.load_checkpoint("detector").unwrap(), None);
    store.save_checkpoint("detector", b"{\"state\":1}").unwrap();
    store.save_checkpoint("detector", b"{\"state\":2}").unwrap();
    assert_eq!(
        store.load_checkpoint("detector").unwrap().as_deref(),
        Some(&b"{\"state\":2}"[..])
    );
}
