//! The normalized event model of mailsentry.
//!
//! Every decoder in `mailsentry-ingest` turns one raw record (a Management API record, an Entra
//! sign-in, an IIS line, a message) into zero or more [`Event`]s. Everything downstream — the
//! sessionizer, the scorers, the store — sees only these types.
//!
//! Promises:
//! - No I/O and no wall-clock time: an event carries its own event time.
//! - Every event keeps its [`Origin`] (format, file, line, byte offset, record id) so an alert can
//!   point back to the raw record.
//! - Fields Microsoft did not send are `None` / empty, never invented. A field that was present
//!   but could not be read (a broken PowerShell export, say) is named in
//!   [`MailboxAccess::unreadable_fields`] instead of being silently dropped.
//! - The JSON form (serde) is the `mailsentry decode` output and is stable: fields may be added,
//!   none renamed or dropped.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;

mod alert;
mod connector_identity;
mod event_kinds;
mod ground_truth;

pub use alert::*;
pub use connector_identity::{ConnectorIdentity, EXCHANGE_ONLINE_APP_ID, MICROSOFT_GRAPH_APP_ID};
pub use event_kinds::*;
pub use ground_truth::*;

/// One normalized event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable id: the source record's own id where it has one (so the same audit record seen
    /// through two exports dedupes), otherwise a content hash; `#n` is appended when one record
    /// yields several events.
    pub id: String,
    /// Event time (when it happened, not when it was logged or read), UTC.
    pub time: DateTime<Utc>,
    /// Entra / Microsoft 365 tenant (organization) id, or the on-prem organization name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Where the raw record is.
    pub origin: Origin,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an event is about; serialized with a `"kind"` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// Someone (a connector, a user, a service account) read or touched mailbox content.
    MailboxAccess(MailboxAccess),
    /// A sign-in: a service principal obtaining a token (the only log that names the
    /// credential key used and the source IP), or a user sign-in.
    SignIn(SignIn),
    /// Credentials (certificates, secrets) added to or removed from an application.
    CredentialChange(CredentialChange),
    /// Permission, role, consent or mailbox configuration change.
    AdminChange(AdminChange),
    /// A message's transport trail: relay hops, TLS, authentication results.
    Transport(Transport),
}

impl EventKind {
    /// The tag used in JSON (`mailbox_access`, `sign_in`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::MailboxAccess(_) => "mailbox_access",
            EventKind::SignIn(_) => "sign_in",
            EventKind::CredentialChange(_) => "credential_change",
            EventKind::AdminChange(_) => "admin_change",
            EventKind::Transport(_) => "transport",
        }
    }
}

/// Where a raw record came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The concrete format of the record (more precise than the file's format when records of
    /// several shapes share one file).
    pub format: SourceFormat,
    /// The file (or `-` for standard input, or an ingest batch name). Shared between all the
    /// events of one file.
    pub file: Arc<str>,
    /// 1-based line where the record starts (0 when the format has no lines).
    pub line: u64,
    /// Byte offset of the record's start in the (decompressed) stream.
    pub offset: u64,
    /// The record's own id (`Id`, `properties.id`, `RecordId`, `Message-ID`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

/// The concrete record shapes mailsentry decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// Office 365 Management Activity API record (NDJSON or content-blob array).
    ManagementApi,
    /// Microsoft Sentinel `OfficeActivity` table row.
    SentinelOfficeActivity,
    /// Microsoft Defender XDR `CloudAppEvents` row (record in `RawEventData`).
    DefenderCloudAppEvents,
    /// Purview audit search CSV export (record in the `AuditData` column).
    PurviewCsv,
    /// Entra diagnostic-settings export (Event Hub / storage): sign-in and audit logs.
    EntraDiagnostic,
    /// Entra logs as Sentinel / Log Analytics table rows (`AuditLogs`, `AADServicePrincipalSignInLogs`, ...).
    EntraLogAnalytics,
    /// Microsoft Graph activity logs.
    GraphActivity,
    /// On-prem Exchange IIS W3C log line.
    IisW3c,
    /// On-prem Exchange EWS protocol log row.
    EwsProtocolLog,
    /// Raw RFC 5322 message (`.eml`, mbox, Maildir).
    Mime,
}

impl SourceFormat {
    /// The snake_case name used in JSON and reports.
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::ManagementApi => "management_api",
            SourceFormat::SentinelOfficeActivity => "sentinel_office_activity",
            SourceFormat::DefenderCloudAppEvents => "defender_cloud_app_events",
            SourceFormat::PurviewCsv => "purview_csv",
            SourceFormat::EntraDiagnostic => "entra_diagnostic",
            SourceFormat::EntraLogAnalytics => "entra_log_analytics",
            SourceFormat::GraphActivity => "graph_activity",
            SourceFormat::IisW3c => "iis_w3c",
            SourceFormat::EwsProtocolLog => "ews_protocol_log",
            SourceFormat::Mime => "mime",
        }
    }
}

/// A network endpoint as logged: an IP with an optional port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientAddress {
    /// The IP; IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is stored as IPv4.
    pub ip: IpAddr,
    /// The source port when the log carried one (`ip:port`, `[v6]:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}
