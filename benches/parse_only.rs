//! The parse-only baseline shared by the throughput benchmarks: serde_json into a minimal
//! borrowed struct of six Management API fields, lines split on `\n`.

use serde::Deserialize;
use std::borrow::Cow;

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

/// Not a target's baseline: serde_json reading what the replay reads from a mailbox-access
/// record (the fields `management_api` maps into an event), borrowed where it can be, so the
/// replay's decoding can be told apart from what parsing those fields costs at all.
#[derive(Deserialize)]
#[allow(dead_code)]
pub struct ReplayFields<'a> {
    #[serde(rename = "CreationTime", borrow)]
    creation_time: Cow<'a, str>,
    #[serde(rename = "Id", borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "Operation", borrow)]
    operation: Cow<'a, str>,
    #[serde(rename = "OrganizationId", borrow, default)]
    organization_id: Option<Cow<'a, str>>,
    #[serde(rename = "RecordType", default)]
    record_type: Option<u64>,
    #[serde(rename = "ResultStatus", borrow, default)]
    result_status: Option<Cow<'a, str>>,
    #[serde(rename = "UserType", default)]
    user_type: Option<u64>,
    #[serde(rename = "Workload", borrow, default)]
    workload: Option<Cow<'a, str>>,
    #[serde(rename = "ClientIP", borrow, default)]
    client_ip: Option<Cow<'a, str>>,
    #[serde(rename = "ClientIPAddress", borrow, default)]
    client_ip_address: Option<Cow<'a, str>>,
    #[serde(rename = "UserId", borrow, default)]
    user_id: Option<Cow<'a, str>>,
    #[serde(rename = "AppId", borrow, default)]
    app_id: Option<Cow<'a, str>>,
    #[serde(rename = "ClientAppId", borrow, default)]
    client_app_id: Option<Cow<'a, str>>,
    #[serde(rename = "ClientInfoString", borrow, default)]
    client_info_string: Option<Cow<'a, str>>,
    #[serde(rename = "LogonType", default)]
    logon_type: Option<u64>,
    #[serde(rename = "MailboxGuid", borrow, default)]
    mailbox_guid: Option<Cow<'a, str>>,
    #[serde(rename = "MailboxOwnerUPN", borrow, default)]
    mailbox_owner_upn: Option<Cow<'a, str>>,
    #[serde(rename = "SessionId", borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(rename = "AppAccessContext", borrow, default)]
    app_access_context: Option<AccessContext<'a>>,
    #[serde(rename = "OperationCount", default)]
    operation_count: Option<u64>,
    #[serde(rename = "OperationProperties", borrow, default)]
    operation_properties: Vec<NameValue<'a>>,
    #[serde(rename = "Folders", borrow, default)]
    folders: Vec<Folder<'a>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
pub struct AccessContext<'a> {
    #[serde(rename = "AADSessionId", borrow, default)]
    aad_session_id: Option<Cow<'a, str>>,
    #[serde(rename = "ClientAppId", borrow, default)]
    client_app_id: Option<Cow<'a, str>>,
    #[serde(rename = "UniqueTokenId", borrow, default)]
    unique_token_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
pub struct NameValue<'a> {
    #[serde(rename = "Name", borrow)]
    name: Cow<'a, str>,
    #[serde(rename = "Value", borrow)]
    value: Cow<'a, str>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
pub struct Folder<'a> {
    #[serde(rename = "Id", borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "Path", borrow, default)]
    path: Option<Cow<'a, str>>,
    #[serde(rename = "FolderItems", borrow, default)]
    items: Vec<Item<'a>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
pub struct Item<'a> {
    #[serde(rename = "InternetMessageId", borrow, default)]
    internet_message_id: Option<Cow<'a, str>>,
    #[serde(rename = "SizeInBytes", default)]
    size_in_bytes: Option<u64>,
}

/// Parses every NDJSON line of `input` into [`ReplayFields`]; returns the number of folder
/// items (so the work is not optimised away).
#[allow(dead_code)]
pub fn parse_all_replay_fields(input: &[u8]) -> u64 {
    let mut n = 0u64;
    for line in input.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        let rec: ReplayFields = serde_json::from_slice(line).expect("bench input is valid");
        n += rec
            .folders
            .iter()
            .map(|f| f.items.len() as u64)
            .sum::<u64>();
    }
    n
}
