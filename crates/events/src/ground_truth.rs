//! Ground truth for simulated data: `labels.json`, written by `mailsentry simulate` and read by
//! evaluation. It names the tenants and connectors in the data, every attack campaign (with
//! its window, sources and difficulty) and every benign confounder (where detection should
//! stay quiet).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole `labels.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Format version of this file.
    pub version: u32,
    /// The command that generated the data.
    pub command: String,
    /// Simulator seed.
    pub seed: u64,
    /// First simulated day (UTC).
    pub start: NaiveDate,
    /// Number of simulated days.
    pub days: u32,
    /// Days before the first attack: the detector's learning period.
    pub learning_days: u32,
    /// Tenants.
    pub tenants: Vec<TenantTruth>,
    /// Connectors (per tenant).
    pub connectors: Vec<ConnectorTruth>,
    /// Attack campaigns: detection should alert.
    pub campaigns: Vec<Campaign>,
    /// Benign confounders: detection should stay quiet.
    pub confounders: Vec<Confounder>,
    /// Records written, by output format (`management_api`, `entra_signin`, `entra_audit`,
    /// `iis_w3c`, `mbox`), so a decode of the data can be checked against it.
    pub records: BTreeMap<String, u64>,
}

/// A simulated tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantTruth {
    /// Entra tenant id.
    pub id: String,
    /// Short name.
    pub name: String,
    /// Mail domain.
    pub domain: String,
    /// IANA time zone of its users.
    pub time_zone: String,
    /// ISO country of its users.
    pub country: String,
    /// Mailboxes at the start (growth is a confounder).
    pub mailboxes: u32,
    /// Has an on-prem Exchange server (IIS logs).
    pub on_prem: bool,
    /// Days (UTC dates) whose local clock changes for daylight saving time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dst_changes: Vec<NaiveDate>,
}

/// A simulated connector in one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorTruth {
    /// Tenant id.
    pub tenant_id: String,
    /// Connector shape: `backup`, `continuity`, `archive_graph`, `onprem_ews`, `gateway`,
    /// `onboarded`.
    pub shape: String,
    /// Display name.
    pub name: String,
    /// The app id (the connector key), or the on-prem service account.
    pub app_id: String,
    /// Service principal object id in this tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_principal_id: Option<String>,
    /// Vendor ASN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// Vendor prefixes the connector uses (CIDR).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// Credentials, with when they were in use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<CredentialTruth>,
}

/// One credential of a connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialTruth {
    /// Key id (`servicePrincipalCredentialKeyId`).
    pub key_id: String,
    /// Certificate thumbprint.
    pub thumbprint: String,
    /// First use.
    pub from: DateTime<Utc>,
    /// Last legitimate use (rotation), if it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// How hard a campaign is meant to be to detect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Difficulty {
    /// Loud: new hosting ASN, night, bulk.
    Easy,
    /// One strong signal.
    Medium,
    /// Only weak or combined signals.
    Hard,
}

/// One attack campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    /// Campaign id (`c01-...`).
    pub id: String,
    /// Scenario name.
    pub scenario: String,
    /// What happens, in words.
    pub description: String,
    /// Tenant id.
    pub tenant_id: String,
    /// Connector app id (or service account) whose identity is abused.
    pub app_id: String,
    /// Credential key id used, when app-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Source IPs of the attacker.
    pub source_ips: Vec<String>,
    /// First attacker record.
    pub start: DateTime<Utc>,
    /// Last attacker record.
    pub end: DateTime<Utc>,
    /// Difficulty.
    pub difficulty: Difficulty,
    /// `alert`.
    pub expected: String,
    /// Records the campaign wrote, by format.
    pub records: BTreeMap<String, u64>,
}

/// One benign confounder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confounder {
    /// Confounder id (`q01-...`).
    pub id: String,
    /// Kind: `vendor_new_prefix`, `backfill_after_outage`, `new_connector`, `dst`,
    /// `throttled_mailbox`, `tenant_growth`.
    pub kind: String,
    /// What happens, in words.
    pub description: String,
    /// Tenant ids affected.
    pub tenant_ids: Vec<String>,
    /// Connector app id, when one is concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Source IPs involved (new prefix, new connector).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// `quiet`.
    pub expected: String,
}
