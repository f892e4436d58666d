//! Labels for sessions: the simulator's ground truth (`labels.json`), or analyst triage labels
//! exported from the store (native alert JSON, as an array or one alert per line, e.g. from
//! `GET /api/v1/alerts?format=native`).

use crate::{io_at, TrainError};
use mailsentry_detect::features::SessionFeatures;
use mailsentry_events::{Alert, GroundTruth};
use std::path::Path;

/// One analyst-labelled alert, reduced to what matching a session needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledAlert {
    /// Tenant.
    pub tenant: String,
    /// Connector.
    pub connector: String,
    /// Source addresses.
    pub ips: Vec<String>,
    /// First event, Unix seconds.
    pub first: i64,
    /// Last event, Unix seconds.
    pub last: i64,
    /// `true_positive` → attack; `benign_true_positive` and `false_positive` → benign.
    pub attack: bool,
    /// The label as the analyst set it.
    pub label: String,
}

/// Where labels come from.
#[derive(Debug, Clone)]
pub enum Labels {
    /// Simulator ground truth: every session is labelled (attack when it belongs to a campaign).
    Truth(GroundTruth),
    /// Analyst labels: only sessions an analyst triaged are labelled.
    Analyst(Vec<LabelledAlert>),
}

/// What labels are matched on: a session's tenant, connector, source and time span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionKey<'a> {
    /// Tenant (or, for mail relay, the recipient domain).
    pub tenant: &'a str,
    /// Connector.
    pub connector: &'a str,
    /// Source address.
    pub source: &'a str,
    /// First event, Unix seconds.
    pub first: i64,
    /// Last event, Unix seconds.
    pub last: i64,
}

impl<'a> From<&'a SessionFeatures> for SessionKey<'a> {
    fn from(r: &'a SessionFeatures) -> Self {
        SessionKey {
            tenant: &r.tenant_id,
            connector: &r.connector,
            source: &r.source,
            first: r.first,
            last: r.last,
        }
    }
}

/// A session's label.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionLabel {
    /// Attack or benign.
    pub attack: bool,
    /// The campaign's scenario (ground truth) or the analyst's label.
    pub scenario: Option<String>,
}

impl Labels {
    /// Reads `labels.json` ground truth, or analyst-labelled alerts: the API's feed pages
    /// (`{"items": [...]}`, one page per file or per line), an array of alerts, or one alert
    /// per line. The file's shape says which.
    pub fn load(path: &Path) -> Result<Labels, TrainError> {
        let bytes = std::fs::read(path).map_err(io_at(path))?;
        let values: Vec<serde_json::Value> = match serde_json::from_slice(&bytes) {
            Ok(v) => vec![v],
            Err(_) => bytes
                .split(|&b| b == b'\n')
                .enumerate()
                .filter(|(_, l)| !l.trim_ascii().is_empty())
                .map(|(i, l)| {
                    serde_json::from_slice(l).map_err(|e| {
                        TrainError::Data(format!("{}:{}: not JSON: {e}", path.display(), i + 1))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let bad = |why: String| TrainError::Data(format!("{}: {why}", path.display()));
        if let [one] = values.as_slice() {
            if one.get("campaigns").is_some() {
                return serde_json::from_value(one.clone())
                    .map(Labels::Truth)
                    .map_err(|e| bad(format!("not labels.json ground truth: {e}")));
            }
        }
        let mut alerts = Vec::new();
        for v in values {
            let items = match v {
                serde_json::Value::Object(ref o) if o.contains_key("items") => {
                    o["items"].as_array().cloned().unwrap_or_default()
                }
                serde_json::Value::Array(a) => a,
                other => vec![other],
            };
            for item in items {
                alerts.push(
                    serde_json::from_value::<Alert>(item)
                        .map_err(|e| bad(format!("not a native alert: {e}")))?,
                );
            }
        }
        Ok(Labels::Analyst(labelled(&alerts)))
    }

    /// The ground truth, when these labels are one.
    pub fn truth(&self) -> Option<&GroundTruth> {
        match self {
            Labels::Truth(t) => Some(t),
            Labels::Analyst(_) => None,
        }
    }

    /// The label of a session, if known.
    pub fn of(&self, row: SessionKey<'_>) -> Option<SessionLabel> {
        match self {
            Labels::Truth(t) => Some(match label_of(t, row) {
                Some(s) => SessionLabel {
                    attack: true,
                    scenario: Some(s.to_owned()),
                },
                None => SessionLabel {
                    attack: false,
                    scenario: None,
                },
            }),
            Labels::Analyst(alerts) => alerts
                .iter()
                .find(|a| {
                    a.tenant == row.tenant
                        && a.connector == row.connector
                        && a.ips.iter().any(|ip| ip == row.source)
                        && row.last >= a.first
                        && row.first <= a.last
                })
                .map(|a| SessionLabel {
                    attack: a.attack,
                    scenario: Some(a.label.clone()),
                }),
        }
    }
}

fn labelled(alerts: &[Alert]) -> Vec<LabelledAlert> {
    alerts
        .iter()
        .filter_map(|a| {
            let label = a.label.clone()?;
            Some(LabelledAlert {
                tenant: a.tenant_id.clone(),
                connector: a.connector.app_id.clone(),
                ips: a.session.client_ips.clone(),
                first: a.session.first_event.unwrap_or(a.detected_at).timestamp(),
                last: a.session.last_event.unwrap_or(a.detected_at).timestamp(),
                attack: label == "true_positive",
                label,
            })
        })
        .collect()
}

/// The scenario of the campaign whose tenant (or, for mail relay, the tenant's domain),
/// connector and sources a session shares and whose window it overlaps.
pub fn label_of<'t>(truth: &'t GroundTruth, row: SessionKey<'_>) -> Option<&'t str> {
    truth
        .campaigns
        .iter()
        .find(|c| {
            let tenant_ok = c.tenant_id == row.tenant
                || truth
                    .tenants
                    .iter()
                    .any(|t| t.id == c.tenant_id && t.domain == row.tenant);
            tenant_ok
                && c.app_id == row.connector
                && c.source_ips.iter().any(|ip| ip == row.source)
                && row.last >= c.start.timestamp()
                && row.first <= c.end.timestamp()
        })
        .map(|c| c.scenario.as_str())
}
