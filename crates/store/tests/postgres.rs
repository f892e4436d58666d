//! The PostgreSQL store against a real server on loopback (`.ci/run` installs and starts one
//! and sets `MAILSENTRY_TEST_PG`), including two instances sharing one feed.

mod common;
use common as common_scenarios;

use mailsentry_store::postgres_store::PgStore;
use mailsentry_store::AlertStore;

fn fresh() -> String {
    let params = std::env::var("MAILSENTRY_TEST_PG").expect(
        "MAILSENTRY_TEST_PG must name a PostgreSQL database for the tests (.ci/run sets it up)",
    );
    let mut client =
        postgres::Client::connect(&params, postgres::NoTls).expect("PostgreSQL reachable");
    client
        .batch_execute(
            "DROP TABLE IF EXISTS ms_triage_history, ms_alerts, ms_meta, ms_tokens, ms_checkpoints",
        )
        .unwrap();
    params
}

#[test]
fn postgres_store_behaves_like_the_sqlite_one_and_shares_its_feed() {
    let params = fresh();
    let store = PgStore::connect(&params).unwrap();
    common_scenarios::feed(&store);
    common_scenarios::triage(&store);
    common_scenarios::tokens(&store);
    common_scenarios::checkpoints(&store);
    // A second instance sees the same feed, and its commits continue the same sequence.
    let other = PgStore::connect(&params).unwrap();
    let before = store.counts().unwrap().sequence;
    other
        .upsert_alerts(&[common_scenarios::alert("from-other", 70)])
        .unwrap();
    let page = store.feed(before, 10).unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].alert.id, "from-other");
    assert_eq!(page.items[0].seq, before + 1);
    let token = store
        .create_token("shared", &[mailsentry_store::Scope::Triage])
        .unwrap();
    assert!(other.token_scopes(&token).unwrap().is_some());
}
