use crate::{ClientAddress, ConnectorIdentity};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The protocol a mailbox was reached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailProtocol {
    /// Exchange Web Services (`Client=WebServices`, `/EWS/Exchange.asmx`).
    Ews,
    /// REST / Microsoft Graph (`Client=REST`).
    Rest,
    /// Outlook on the web.
    Owa,
    /// Outlook desktop over MAPI (`Client=MSExchangeRPC`, `/mapi/`).
    Mapi,
    /// Exchange ActiveSync.
    ActiveSync,
    /// IMAP4.
    Imap,
    /// POP3.
    Pop,
    /// Anything else that was named (kept as [`MailboxAccess::client_info`]).
    Other,
}

/// `MailAccessType` of a MailItemsAccessed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailAccessType {
    /// Individual items read (merged per 2 minutes by the service).
    Bind,
    /// A folder synchronised (a whole folder's items downloaded).
    Sync,
}

/// How the mailbox was logged on to (UAL `LogonType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogonType {
    /// 0: the mailbox owner (also app-only access with application permissions).
    Owner,
    /// 1: an administrator.
    Admin,
    /// 2: a delegate.
    Delegated,
    /// 3: Microsoft datacenter transport service.
    Transport,
    /// 4: a service account in the Microsoft datacenter.
    SystemService,
    /// 6: a delegated administrator.
    DelegatedAdmin,
    /// Any other code.
    Other,
}

impl LogonType {
    /// Maps the UAL numeric code (or its name) to a logon type.
    pub fn from_code(code: i64) -> LogonType {
        match code {
            0 => LogonType::Owner,
            1 => LogonType::Admin,
            2 => LogonType::Delegated,
            3 => LogonType::Transport,
            4 => LogonType::SystemService,
            6 => LogonType::DelegatedAdmin,
            _ => LogonType::Other,
        }
    }

    /// Maps a logged name (`Owner`, `Admin`, `Delegate`, ...) to a logon type.
    pub fn from_name(name: &str) -> LogonType {
        let name = name.trim();
        if name.eq_ignore_ascii_case("owner") {
            LogonType::Owner
        } else if name.eq_ignore_ascii_case("admin") || name.eq_ignore_ascii_case("administrator") {
            LogonType::Admin
        } else if name.eq_ignore_ascii_case("delegate") || name.eq_ignore_ascii_case("delegated") {
            LogonType::Delegated
        } else if name.eq_ignore_ascii_case("transport") {
            LogonType::Transport
        } else if name.eq_ignore_ascii_case("systemservice") {
            LogonType::SystemService
        } else if name.eq_ignore_ascii_case("delegatedadmin") {
            LogonType::DelegatedAdmin
        } else {
            LogonType::Other
        }
    }
}

/// One item read in a folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailItemRef {
    /// `InternetMessageId` (or EWS item id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_message_id: Option<String>,
    /// `SizeInBytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// A folder touched by a mailbox access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderAccess {
    /// Folder id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Folder path (`\Inbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Items read in this folder (possibly empty when the log listed none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<MailItemRef>,
}

/// Mailbox content accessed: UAL MailItemsAccessed and other Exchange item operations, Graph
/// activity on mail resources, on-prem EWS requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MailboxAccess {
    /// The operation as logged (`MailItemsAccessed`, `Send`, `SoapAction`, HTTP method + path).
    pub operation: String,
    /// Who acted.
    pub actor: ConnectorIdentity,
    /// `UserId` of the record (the user, or the app's identity for app-only access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// UAL `UserType` (0 Regular, 2 Admin, 4 System, 5 Application, 6 ServicePrincipal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<i64>,
    /// The client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientAddress>,
    /// A client given as a host name rather than an IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_host: Option<String>,
    /// User agent or `ClientInfoString`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_info: Option<String>,
    /// Protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<MailProtocol>,
    /// Bind or Sync (MailItemsAccessed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_type: Option<MailAccessType>,
    /// Number of operations this record stands for (`OperationCount`; 1 when not logged).
    pub operation_count: u64,
    /// Target mailbox UPN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_upn: Option<String>,
    /// Target mailbox GUID (not validated: exports anonymise it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_guid: Option<String>,
    /// Folders touched, with the items read in each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<FolderAccess>,
    /// Bytes: the sum of item sizes, or the response size for protocol logs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes: u64,
    /// Logon type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logon_type: Option<LogonType>,
    /// Exchange `SessionId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// `AppAccessContext.UniqueTokenId` / Graph `signInActivityId`: joins to the sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// `AppAccessContext.AADSessionId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aad_session_id: Option<String>,
    /// The mailbox hit the MailItemsAccessed throttle: no further Bind records for 24 h.
    #[serde(default, skip_serializing_if = "is_false")]
    pub throttled: bool,
    /// `ResultStatus` or HTTP status as logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Fields present in the record that could not be read (e.g. `Folders.FolderItems` in a
    /// broken PowerShell export).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable_fields: Vec<String>,
}

impl MailboxAccess {
    /// One request by an on-prem service account (IIS and EWS protocol logs): one operation,
    /// the account as both actor and `user_id`, everything else unset.
    pub fn by_service_account(operation: String, account: &str) -> Self {
        MailboxAccess {
            operation,
            actor: ConnectorIdentity {
                service_account: Some(account.to_owned()),
                ..Default::default()
            },
            user_id: Some(account.to_owned()),
            operation_count: 1,
            ..Default::default()
        }
    }
}

/// Which kind of principal signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInCategory {
    /// `ServicePrincipalSignInLogs`: app-only token requests.
    ServicePrincipal,
    /// `ManagedIdentitySignInLogs`.
    ManagedIdentity,
    /// `SignInLogs`: interactive user sign-ins.
    User,
    /// `NonInteractiveUserSignInLogs`.
    NonInteractiveUser,
}

/// How a service principal proved its identity (`clientCredentialType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialType {
    /// An X.509 certificate (the Mimecast case).
    Certificate,
    /// A client secret.
    ClientSecret,
    /// A signed client assertion.
    ClientAssertion,
    /// A federated identity credential.
    FederatedIdentityCredential,
    /// A managed identity.
    ManagedIdentity,
    /// `none` (e.g. a failed request) or unknown.
    None,
}

impl CredentialType {
    /// Parses Entra's `clientCredentialType` spelling (case-insensitive).
    pub fn parse(value: &str) -> CredentialType {
        let v = value.trim();
        if v.eq_ignore_ascii_case("certificate") {
            CredentialType::Certificate
        } else if v.eq_ignore_ascii_case("clientSecret") {
            CredentialType::ClientSecret
        } else if v.eq_ignore_ascii_case("clientAssertion") {
            CredentialType::ClientAssertion
        } else if v.eq_ignore_ascii_case("federatedIdentityCredential") {
            CredentialType::FederatedIdentityCredential
        } else if v.eq_ignore_ascii_case("managedIdentity") {
            CredentialType::ManagedIdentity
        } else {
            CredentialType::None
        }
    }
}

/// A sign-in: who got a token, from where, with which credential, for which resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignIn {
    /// Service principal, managed identity or user sign-in.
    pub category: SignInCategory,
    /// The app (and service principal) that signed in.
    pub actor: ConnectorIdentity,
    /// The user, for user sign-ins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
    /// Source address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientAddress>,
    /// Two-letter country the IP was located in by Entra.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// `clientCredentialType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_type: Option<CredentialType>,
    /// `servicePrincipalCredentialKeyId`: which key was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_key_id: Option<String>,
    /// `servicePrincipalCredentialThumbprint`: which certificate was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_thumbprint: Option<String>,
    /// Resource app id the token is for (`00000002-0000-0ff1-ce00-000000000000` = Exchange Online).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Resource display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// `uniqueTokenIdentifier`: joins to UAL `AppAccessContext.UniqueTokenId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// `correlationId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// User agent, when logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// `status.errorCode` (0 = success).
    pub error_code: i64,
    /// True when the sign-in succeeded.
    pub success: bool,
}

/// Credentials added to or removed from an application (rotation, or an attacker adding a key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialChange {
    /// The operation as logged (`Add service principal credentials.`, `Update application –
    /// Certificates and secrets management`).
    pub operation: String,
    /// The application / service principal changed.
    pub target: ConnectorIdentity,
    /// Key ids present after the change but not before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_ids_added: Vec<String>,
    /// Key ids present before the change but not after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_ids_removed: Vec<String>,
    /// Key types seen (`AsymmetricX509Cert`, `Password`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_types: Vec<String>,
    /// Who made the change (UPN or app id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// From where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_ip: Option<IpAddr>,
    /// `success` / `failure` as logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// What kind of administrative change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminChangeCategory {
    /// Mailbox permission (`Add-MailboxPermission`, `Add-RecipientPermission`).
    MailboxPermission,
    /// RBAC role assignment (`New-ManagementRoleAssignment`, `Add member to role.`).
    RoleAssignment,
    /// Consent or permission grant to an application.
    Consent,
    /// Application registration / service principal change.
    Application,
    /// Mailbox configuration (forwarding, inbox rules, ...).
    MailboxConfiguration,
    /// Any other audited admin operation.
    Other,
}

/// A name/value parameter of an admin operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    /// Parameter name.
    pub name: String,
    /// Parameter value as logged.
    pub value: String,
}

/// A permission, role, consent or configuration change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminChange {
    /// Category.
    pub category: AdminChangeCategory,
    /// The operation as logged (trimmed).
    pub operation: String,
    /// Who made the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// From where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_ip: Option<IpAddr>,
    /// What was changed (mailbox, app, role, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Application concerned, when the change is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<ConnectorIdentity>,
    /// Parameters / modified properties.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    /// Result as logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// TLS protocol version of a relay hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsVersion {
    /// SSL 2 or 3.
    Ssl,
    /// TLS 1.0.
    Tls1_0,
    /// TLS 1.1.
    Tls1_1,
    /// TLS 1.2.
    Tls1_2,
    /// TLS 1.3.
    Tls1_3,
}

/// One `Received:` hop, newest first as in the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayHop {
    /// Name the sending host gave (`from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_host: Option<String>,
    /// The sending host's IP as seen by the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ip: Option<IpAddr>,
    /// The receiving host (`by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_host: Option<String>,
    /// Transmission protocol (`ESMTPS`, `SMTP`, `HTTP`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// TLS version when the hop says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<TlsVersion>,
    /// TLS cipher suite when the hop says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    /// Time stamped by the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
}

impl RelayHop {
    /// True when the hop was encrypted with TLS 1.3, or TLS 1.2 with a forward-secret
    /// (ECDHE/DHE) suite. `None` when the hop does not say.
    pub fn strong_tls(&self) -> Option<bool> {
        match self.tls_version? {
            TlsVersion::Tls1_3 => Some(true),
            TlsVersion::Tls1_2 => {
                let cipher = self.tls_cipher.as_deref()?.to_ascii_uppercase();
                Some(cipher.contains("ECDHE") || cipher.contains("DHE"))
            }
            _ => Some(false),
        }
    }
}

/// One `Authentication-Results` verdict (`spf=pass`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthVerdict {
    /// Method: `spf`, `dkim`, `dmarc`, `arc`, `compauth`, ...
    pub method: String,
    /// Result: `pass`, `fail`, `softfail`, `none`, ...
    pub result: String,
}

/// A message's transport trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transport {
    /// `Message-ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Sender domain (`From:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_domain: Option<String>,
    /// Recipient domains (`To:`, `Cc:`), deduplicated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient_domains: Vec<String>,
    /// Message size in bytes (headers and body).
    pub size_bytes: u64,
    /// Relay hops, newest (top) first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<RelayHop>,
    /// `Authentication-Results` verdicts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_results: Vec<AuthVerdict>,
    /// The header date was missing or unreadable and the time was taken from the newest hop
    /// or is the Unix epoch.
    #[serde(default, skip_serializing_if = "is_false")]
    pub time_inferred: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strong_tls_needs_forward_secrecy_on_tls12() {
        let mut hop = RelayHop {
            from_host: None,
            from_ip: None,
            by_host: None,
            protocol: Some("ESMTPS".into()),
            tls_version: Some(TlsVersion::Tls1_2),
            tls_cipher: Some("AES256-GCM-SHA384".into()),
            time: None,
        };
        assert_eq!(hop.strong_tls(), Some(false));
        hop.tls_cipher = Some("ECDHE-RSA-AES256-GCM-SHA384".into());
        assert_eq!(hop.strong_tls(), Some(true));
        hop.tls_version = Some(TlsVersion::Tls1_3);
        assert_eq!(hop.strong_tls(), Some(true));
        hop.tls_version = Some(TlsVersion::Tls1_0);
        assert_eq!(hop.strong_tls(), Some(false));
        hop.tls_version = None;
        assert_eq!(hop.strong_tls(), None);
    }

    #[test]
    fn logon_type_codes_and_names_agree() {
        assert_eq!(LogonType::from_code(2), LogonType::Delegated);
        assert_eq!(LogonType::from_name("Delegate"), LogonType::Delegated);
        assert_eq!(LogonType::from_name("Owner"), LogonType::from_code(0));
        assert_eq!(LogonType::from_code(99), LogonType::Other);
    }

    #[test]
    fn credential_type_parses_entra_spelling() {
        assert_eq!(
            CredentialType::parse("certificate"),
            CredentialType::Certificate
        );
        assert_eq!(
            CredentialType::parse("clientSecret"),
            CredentialType::ClientSecret
        );
        assert_eq!(CredentialType::parse("none"), CredentialType::None);
    }
}
