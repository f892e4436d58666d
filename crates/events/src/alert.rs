//! The alert: what the detector raises, the store keeps, the API serves and `replay` writes.
//!
//! Its JSON form is the native alert contract of ARCHITECTURE.md: fields may be added, none
//! renamed or dropped. Times are RFC 3339 UTC.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Alert format version.
pub const ALERT_VERSION: u32 = 1;

/// One alert: a connector incident, grown as more of its sessions score high.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id (same input, same id).
    pub id: String,
    /// Format version.
    pub version: u32,
    /// Wall time the alert was made (replay: when the replay wrote it).
    pub created_at: DateTime<Utc>,
    /// Event time at which the detector first decided to alert.
    pub detected_at: DateTime<Utc>,
    /// Tenant.
    pub tenant_id: String,
    /// The connector.
    pub connector: AlertConnector,
    /// The sessions' summary.
    pub session: AlertSession,
    /// 0–100, a fixed mapping of −log10 of the combined p-value (rules set it directly).
    pub score: u8,
    /// Severity from the score.
    pub severity: Severity,
    /// Combined p-value (tail probability under the connector's baseline).
    pub p_value: f64,
    /// Why, strongest first.
    pub reasons: Vec<Reason>,
    /// Events behind the alert.
    pub evidence: Evidence,
    /// Each source the incident grew by, with when it first scored at alert level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<AlertSource>,
    /// Lifecycle status (`new`, `acknowledged`, `closed`).
    pub status: String,
    /// Analyst label once triaged: `true_positive`, `benign_true_positive`, `false_positive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Which connector an alert is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertConnector {
    /// App id (or on-prem service account).
    pub app_id: String,
    /// Name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Credential used, when known from the sign-in join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<AlertCredential>,
    /// How settled the connector's baseline was (0 new … 1 past its learning period with enough
    /// sessions); below 1 only hard facts could raise the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_confidence: Option<f64>,
}

/// A credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertCredential {
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
}

/// What the alert's sessions did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AlertSession {
    /// Source addresses.
    pub client_ips: Vec<String>,
    /// Source ASNs, when known.
    pub asns: Vec<u32>,
    /// First event.
    pub first_event: Option<DateTime<Utc>>,
    /// Last event.
    pub last_event: Option<DateTime<Utc>>,
    /// Events.
    pub events: u64,
    /// Distinct mailboxes.
    pub mailboxes: u64,
    /// Items (operation count).
    pub items: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Investigate.
    Medium,
    /// Likely misuse.
    High,
    /// Misuse.
    Critical,
}

impl Severity {
    /// The severity of a score: critical ≥ 80, high ≥ 60, medium ≥ 40, else low.
    pub fn from_score(score: u8) -> Severity {
        match score {
            80.. => Severity::Critical,
            60..=79 => Severity::High,
            40..=59 => Severity::Medium,
            _ => Severity::Low,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One reason: a signal, what it saw, against what baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// Signal id (`source.asn.first_seen`, `credential.rotated_key_used`, …).
    pub signal: String,
    /// One sentence for the analyst.
    pub summary: String,
    /// Observed value.
    pub observed: String,
    /// Baseline it was compared with.
    pub baseline: String,
    /// Share of the combined evidence (weights sum to 1 over the reasons).
    pub weight: f64,
    /// The signal's own p-value.
    #[serde(default)]
    pub p_value: f64,
}

/// One source of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSource {
    /// Address (or `none`).
    pub ip: String,
    /// First event of its sessions in the incident.
    pub first_event: DateTime<Utc>,
    /// Event time at which it first scored at alert level.
    pub detected_at: DateTime<Utc>,
    /// Its highest score.
    pub score: u8,
    /// Its ASN, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// Its country, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// Evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Evidence {
    /// Event ids (capped; the first and the strongest).
    pub event_ids: Vec<String>,
}

/// The fixed score of a p-value: 10 × −log10 p, capped at 100.
pub fn score_of_p(p: f64) -> u8 {
    if p.is_nan() {
        return 0;
    }
    let s = -10.0 * p.max(1e-300).log10();
    s.clamp(0.0, 100.0).round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_mapping_is_fixed() {
        assert_eq!(score_of_p(1.0), 0);
        assert_eq!(score_of_p(1e-4), 40);
        assert_eq!(score_of_p(1e-6), 60);
        assert_eq!(score_of_p(1e-12), 100);
        assert_eq!(Severity::from_score(40), Severity::Medium);
        assert_eq!(Severity::from_score(39), Severity::Low);
        assert_eq!(Severity::from_score(80), Severity::Critical);
    }
}
