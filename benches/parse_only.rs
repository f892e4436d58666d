//! The parse-only baseline shared by the throughput benchmarks: serde_json into a minimal
//! borrowed struct of six Management API fields, lines split on `\n`.

use serde::Deserialize;

/// What a parse-only consumer would read: a few borrowed fields, the rest skipped.
#[derive(Deserialize)]
#[allow(dead_code)]
pub struct Minimal<'a> {
    #[serde(rename = "CreationTime", borrow)]
    creation_time: &'a str,
    #[serde(rename = "Id", borrow)]
    id: &'a str,
    #[serde(rename = "Operation", borrow)]
    operation: &'a str,
    #[serde(rename = "ClientIPAddress", borrow)]
    client_ip: &'a str,
    #[serde(rename = "AppId", borrow, default)]
    app_id: Option<&'a str>,
    #[serde(rename = "OperationCount")]
    operation_count: u64,
}

/// Parses every NDJSON line of `input`; returns the sum of `OperationCount` (so the work is
/// not optimised away).
pub fn parse_all(input: &[u8]) -> u64 {
    let mut n = 0u64;
    for line in input.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        let rec: Minimal = serde_json::from_slice(line).expect("bench input is valid");
        n += rec.operation_count;
    }
    n
}
