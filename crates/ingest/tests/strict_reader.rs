//! The strict fast path of the JSON decoder reads every record exactly as the general parsers
//! (simd-json, then serde_json) do: same events, same rejects. It may refuse a record — the
//! general parsers then decide — but it may never accept one differently.

use mailsentry_ingest::json_framing::{Framed, JsonFramer};
use mailsentry_ingest::json_record::JsonRecord;
use mailsentry_ingest::strict_json::{read_strict, StrictBuffers};
use mailsentry_ingest::{decode_record, JsonDecoder};
use proptest::prelude::*;
use serde_json::{Map, Value};
use std::path::Path;

mod common;
use common::manifest_dir;

/// Decodes `bytes` both ways; returns whether the strict reader took the record.
fn assert_alike(bytes: &[u8]) -> bool {
    let mut fast = JsonDecoder::default();
    let mut general = JsonDecoder::general_parsers_only();
    let a = decode_record(&mut fast, bytes);
    let b = decode_record(&mut general, bytes);
    assert_eq!(
        a,
        b,
        "strict and general paths differ on {:?}",
        String::from_utf8_lossy(bytes)
    );
    fast.strict_refusals() == 0
}

fn fixture_records(path: &Path) -> Vec<Vec<u8>> {
    let file = std::fs::File::open(path).expect("fixture");
    let mut framer = JsonFramer::new(std::io::BufReader::new(file), 1 << 20);
    let mut records = Vec::new();
    while let Some(item) = framer.next_item().expect("read") {
        if let Framed::Record { .. } = item {
            records.push(framer.record().expect("read").to_vec());
        }
    }
    records
}

#[test]
fn every_fixture_record_decodes_alike_and_most_take_the_fast_path() {
    let root = manifest_dir().join("../../tests/fixtures");
    let mut taken = 0;
    let mut total = 0;
    for dir in ["handwritten", "otrf", "panther"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("fixture dir") {
            let path = entry.expect("entry").path();
            let name = path.to_string_lossy();
            if !(name.ends_with(".json") || name.ends_with(".ndjson")) {
                continue;
            }
            for record in fixture_records(&path) {
                total += 1;
                taken += usize::from(assert_alike(&record));
            }
        }
    }
    assert!(total >= 40, "{total} fixture records");
    eprintln!("{taken} of {total} fixture records took the fast path");
    // The refused ones hold floats (sign-in locations, risk scores), which the strict reader
    // leaves to the general parsers.
    assert!(
        taken * 10 >= total * 8,
        "{taken} of {total} took the fast path"
    );
}

#[test]
fn the_strict_reader_refuses_what_it_does_not_read_exactly() {
    let refused = [
        r#"{"a":1.5}"#,
        r#"{"a":1e3}"#,
        r#"{"a":-0}"#,
        r#"{"a":012}"#,
        r#"{"a":18446744073709551616}"#,
        r#"{"a":-9223372036854775809}"#,
        "{\"a\":\"tab\there\"}",
        r#"{"a":"\ud800"}"#,
        r#"{"a":"\udc00\ud800"}"#,
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12g4"}"#,
        r#"{"a":1,}"#,
        r#"{"a":[1,]}"#,
        r#"{"a":[1 2]}"#,
        r#"{"a" 1}"#,
        r#"{,"a":1}"#,
        r#"{"a":1}x"#,
        r#"{"a":tru}"#,
        r#"{"a":nul}"#,
        r#"{"a":"unterminated}"#,
        r#"{"a":1"#,
        r#"[{"a":1}]"#,
        r#"{"a":-}"#,
    ];
    for text in refused {
        let mut scratch = StrictBuffers::default();
        let mut order = Default::default();
        let mut record = JsonRecord::default();
        let read = read_strict(text, &mut scratch, |de| {
            JsonRecord::fill_strict(de, &mut record, Some(&mut order))
        });
        assert!(read.is_none(), "accepted {text}");
        assert_alike(text.as_bytes());
    }
    // Deeper than the strict limit, shallower than serde_json's: the general path reads it.
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(110), "]".repeat(110));
    let mut scratch = StrictBuffers::default();
    assert!(read_strict(&deep, &mut scratch, JsonRecord::from_strict).is_none());
    assert_alike(deep.as_bytes());
}

#[test]
fn escapes_integers_and_nesting_read_as_serde_json_reads_them() {
    let text = r#"{"CreationTime":"2024-03-01T10:00:00","Operation":"Mail\u0049temsAccessed",
        "RecordType":50,"OperationCount":"7","ClientIP":"\u0031\u0030.0.0.1",
        "MailboxOwnerUPN":"\u00e9l\u00e8ve\ud83d\ude00@contoso.example","Id":"a\/b\\c\"d\n",
        "UserType":-5,"Version":9223372036854775807,"ExternalAccess":true,"LogonType":null,
        "Folders":[{"ID":"f","PATH":"\\Inbox","folderitems":{"SizeInBytes":12,
        "InternetMessageId":"<x@y>"}},"System.Object[]",42,[1]],
        "OperationProperties":"[{\"Name\":\"MailAccessType\",\"Value\":\"Sync\"}]",
        "AppAccessContext":{"UniqueTokenId":"tok","Extra":{"deep":[{"x":[null,false]}]}},
        "Item":{"Id":"i","ParentFolder":{"Path":"\\Sent"}}, "Unknown":{"k":[1,"2",{"3":4}]}}"#;
    let mut scratch = StrictBuffers::default();
    let strict = read_strict(text, &mut scratch, JsonRecord::from_strict).expect("strict reads it");
    let general: JsonRecord = serde_json::from_str(text).expect("serde_json reads it");
    assert_eq!(format!("{strict:?}"), format!("{general:?}"));
    assert!(assert_alike(text.as_bytes()), "the fast path took it");
}

const KEYS: &[&str] = &[
    "CreationTime",
    "Id",
    "Operation",
    "OrganizationId",
    "RecordType",
    "ResultStatus",
    "UserType",
    "Workload",
    "ClientIP",
    "ClientIPAddress",
    "AppId",
    "ClientAppId",
    "ClientInfoString",
    "MailboxOwnerUPN",
    "MailboxGuid",
    "SessionId",
    "OperationCount",
    "OperationProperties",
    "Folders",
    "FolderItems",
    "Path",
    "InternetMessageId",
    "SizeInBytes",
    "Name",
    "Value",
    "AppAccessContext",
    "UniqueTokenId",
    "Item",
    "AffectedItems",
    "ParentFolder",
    "RawEventData",
    "AuditData",
    "log",
    "properties",
    "location",
    "TimeGenerated",
    "Type",
    "category",
    "initiatedBy",
    "user",
    "app",
    "targetResources",
    "modifiedProperties",
    "displayName",
    "newValue",
    "oldValue",
    "Actor",
    "status",
    "appId",
    "ipAddress",
    "servicePrincipalCredentialKeyId",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop::sample::select(KEYS), any::<bool>()).prop_map(|(k, upper)| {
            if upper { k.to_uppercase() } else { k.to_owned() }
        }),
        1 => "[a-zA-Z_]{1,10}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "2024-03-01T10:00:00",
            "MailItemsAccessed",
            "Bind",
            "198.51.100.7",
            "[2001:db8::1]:443",
            "System.Object[]",
            "@{Name=MailAccessType; Value=Bind}",
            "[{\"Name\":\"MailAccessType\",\"Value\":\"Sync\"}]",
            "{\"UniqueTokenId\":\"t\"}",
            "",
            "<null>",
        ])
        .prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn record() -> impl Strategy<Value = String> {
    prop::collection::vec((key(), value()), 0..14).prop_map(|entries| {
        let mut text = String::from("{");
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            // Written by hand so duplicate keys survive.
            text.push_str(&serde_json::to_string(k).unwrap_or_default());
            text.push(':');
            text.push_str(&serde_json::to_string(v).unwrap_or_default());
        }
        text.push('}');
        text
    })
}

/// A byte-level change: truncate, overwrite or insert at a position.
fn mutate(text: &str, kind: u8, at: usize, byte: u8) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    let at = at % (bytes.len() + 1);
    match kind % 4 {
        0 => bytes.truncate(at),
        1 if at < bytes.len() => bytes[at] = byte,
        2 => bytes.insert(at, byte),
        _ => {}
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// Generated records over the keys the decoder reads (any letter case, duplicates, every
    /// value type in every place) decode alike both ways.
    #[test]
    fn generated_records_decode_alike(text in record()) {
        assert_alike(text.as_bytes());
    }

    /// So do broken copies of them: whatever the strict reader accepts, the general parsers
    /// accept as the same record.
    #[test]
    fn mutated_records_decode_alike(
        text in record(),
        kind in any::<u8>(),
        at in any::<usize>(),
        byte in prop::sample::select(b"{}[],:\"\\ -0123456789.eEtfnul\x01\x7f\xc3\xa9".to_vec()),
    ) {
        assert_alike(&mutate(&text, kind, at, byte));
    }
}
