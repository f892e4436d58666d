//! What happened, before it is written in a log format: one [`Activity`] per log record.

use chrono::{DateTime, Utc};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// One log record to write, with when it happened and when the log makes it available.
#[derive(Debug, Clone)]
pub struct Activity {
    /// Event time.
    pub time: DateTime<Utc>,
    /// When the record appears in its log (audit records arrive late); decides its file.
    pub available: DateTime<Utc>,
    /// The campaign it belongs to (index into the run's campaigns), if any.
    pub campaign: Option<u16>,
    /// The record.
    pub record: Record,
}

/// The kinds of record the simulator writes.
#[derive(Debug, Clone)]
pub enum Record {
    /// A Management Activity API MailItemsAccessed record.
    MailAccess(MailAccess),
    /// An Entra service-principal sign-in.
    SignIn(SignIn),
    /// An Entra audit record: credentials of an application changed.
    CredentialUpdate(CredentialUpdate),
    /// An IIS W3C line of an on-prem Exchange server.
    Iis(IisRequest),
    /// A relayed message (mbox).
    Message(Message),
}

impl Record {
    /// The output format's name, as counted in labels.
    pub fn format(&self) -> &'static str {
        match self {
            Record::MailAccess(_) => "management_api",
            Record::SignIn(_) => "entra_signin",
            Record::CredentialUpdate(_) => "entra_audit",
            Record::Iis(_) => "iis_w3c",
            Record::Message(_) => "mbox",
        }
    }
}

/// Bind (items read) or Sync (folders synchronised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    /// Items read.
    Bind,
    /// Folder synchronised.
    Sync,
}

/// A token as UAL records carry it in `AppAccessContext`.
#[derive(Debug, Clone)]
pub struct TokenRef {
    /// `UniqueTokenId`.
    pub id: Arc<str>,
    /// When it was issued.
    pub issued: DateTime<Utc>,
    /// `AADSessionId`.
    pub aad_session: Arc<str>,
}

/// One item read.
#[derive(Debug, Clone)]
pub struct Item {
    /// `InternetMessageId`.
    pub message_id: Arc<str>,
    /// Size in bytes.
    pub size: u32,
}

/// A MailItemsAccessed record.
#[derive(Debug, Clone)]
pub struct MailAccess {
    /// `AppId` (absent for users in Outlook on the web).
    pub app_id: Option<Arc<str>>,
    /// `ClientAppId`.
    pub client_app_id: Option<Arc<str>>,
    /// `UserId`.
    pub user_id: Arc<str>,
    /// `UserType`: 0 regular user, 5 application.
    pub user_type: u8,
    /// `ClientIPAddress`.
    pub ip: Ipv4Addr,
    /// Client port, when the record carries one.
    pub port: Option<u16>,
    /// `ClientInfoString`.
    pub client_info: Arc<str>,
    /// Mailbox index in the tenant.
    pub mailbox: usize,
    /// Bind or Sync.
    pub kind: AccessKind,
    /// `OperationCount`.
    pub count: u32,
    /// Folder path and the items read in it.
    pub folders: Vec<(&'static str, Vec<Item>)>,
    /// The token, for app-only access.
    pub token: Option<TokenRef>,
    /// Exchange session id.
    pub session_id: Arc<str>,
    /// `IsThrottled`: the last record before the mailbox's MailItemsAccessed auditing pauses.
    pub throttled: bool,
}

/// A service-principal sign-in.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// App id.
    pub app_id: Arc<str>,
    /// Service principal id.
    pub sp_id: Arc<str>,
    /// Service principal name.
    pub sp_name: Arc<str>,
    /// Source.
    pub ip: Ipv4Addr,
    /// Country of the source.
    pub country: &'static str,
    /// Credential key id.
    pub key_id: Arc<str>,
    /// Credential thumbprint.
    pub thumbprint: Arc<str>,
    /// Resource id and name.
    pub resource: (&'static str, &'static str),
    /// Token issued (`uniqueTokenIdentifier`).
    pub token_id: Arc<str>,
    /// Entra error code (0 = success).
    pub error_code: u32,
}

/// Certificates of an application changed (Entra AuditLogs).
#[derive(Debug, Clone)]
pub struct CredentialUpdate {
    /// Application (object) display name.
    pub app_name: Arc<str>,
    /// App id.
    pub app_id: Arc<str>,
    /// Key (id, display name) before.
    pub old_keys: Vec<(Arc<str>, Arc<str>)>,
    /// Keys after.
    pub new_keys: Vec<(Arc<str>, Arc<str>)>,
    /// Who changed it.
    pub actor: String,
    /// From where.
    pub actor_ip: Ipv4Addr,
    /// Record id.
    pub id: String,
}

/// One IIS request line.
#[derive(Debug, Clone)]
pub struct IisRequest {
    /// Server address.
    pub server_ip: Ipv4Addr,
    /// Method.
    pub method: &'static str,
    /// Path.
    pub stem: &'static str,
    /// Query (`-` when none).
    pub query: String,
    /// `DOMAIN\account`.
    pub username: String,
    /// Client.
    pub client_ip: Ipv4Addr,
    /// User agent (spaces written as `+`).
    pub user_agent: Arc<str>,
    /// HTTP status.
    pub status: u16,
    /// Response bytes.
    pub bytes: u64,
    /// Milliseconds.
    pub time_taken: u32,
}

/// One relay hop, newest first in the message.
#[derive(Debug, Clone)]
pub struct Hop {
    /// Sending host name.
    pub from_host: String,
    /// Sending address.
    pub from_ip: Ipv4Addr,
    /// Receiving host.
    pub by_host: String,
    /// TLS version and cipher, when TLS was used.
    pub tls: Option<(&'static str, &'static str)>,
    /// When the hop received it.
    pub time: DateTime<Utc>,
}

/// A relayed message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Sender address.
    pub from: String,
    /// Recipient mailbox index.
    pub to: usize,
    /// Subject.
    pub subject: String,
    /// Message-ID.
    pub message_id: Arc<str>,
    /// Hops, newest (the tenant's server receiving) first.
    pub hops: Vec<Hop>,
    /// SPF / DKIM / DMARC verdicts.
    pub auth: (&'static str, &'static str, &'static str),
    /// Sender domain.
    pub sender_domain: String,
}
