//! Scoring a detector against simulator ground truth: which campaigns raised an alert, how
//! fast, how many alerts were false, and which confounders were noisy.

use chrono::{DateTime, Duration, Utc};
use mailsentry_events::{Alert, GroundTruth, Severity};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A detection from any detector, reduced to what matching needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Tenant id, or the recipient domain for transport alerts.
    pub tenant: String,
    /// Connector key.
    pub connector: String,
    /// When it fired (event time).
    pub at: DateTime<Utc>,
    /// Source addresses, when known (empty: matched on connector and time only).
    pub ips: Vec<String>,
}

impl Detection {
    /// From a mailsentry alert: one detection per source the incident grew by, at the time
    /// that source first scored at alert level.
    pub fn from_alert(a: &Alert) -> Vec<Self> {
        if a.sources.is_empty() {
            return vec![Detection {
                tenant: a.tenant_id.clone(),
                connector: a.connector.app_id.clone(),
                at: a.detected_at,
                ips: a.session.client_ips.clone(),
            }];
        }
        a.sources
            .iter()
            .map(|s| Detection {
                tenant: a.tenant_id.clone(),
                connector: a.connector.app_id.clone(),
                at: s.detected_at,
                ips: vec![s.ip.clone()],
            })
            .collect()
    }
}

/// The detections of reference rule `rule` among `alerts`.
pub fn of_reference_rule(rule: &str, alerts: &[crate::reference::RefAlert]) -> Vec<Detection> {
    alerts
        .iter()
        .filter(|a| a.detector == rule)
        .map(|a| Detection {
            tenant: a.tenant.clone(),
            connector: a.connector.clone(),
            at: a.at,
            ips: a.ips.clone(),
        })
        .collect()
}

/// Per-scenario result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScenarioResult {
    /// Scenario.
    pub scenario: String,
    /// Difficulty.
    pub difficulty: String,
    /// Campaigns.
    pub campaigns: usize,
    /// Detected.
    pub detected: usize,
    /// Time to detect of each detected campaign, minutes of event time after its first record.
    pub minutes_to_detect: Vec<f64>,
}

/// A detector's whole result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalReport {
    /// Detector name.
    pub detector: String,
    /// Per scenario.
    pub scenarios: Vec<ScenarioResult>,
    /// Campaigns detected / campaigns.
    pub recall: f64,
    /// Detections after the learning period matching no campaign.
    pub false_alerts: usize,
    /// Connector-days after the learning period.
    pub connector_days: f64,
    /// False alerts per connector-day.
    pub false_per_connector_day: f64,
    /// Median time to detect, minutes.
    pub median_minutes_to_detect: Option<f64>,
    /// 90th percentile time to detect, minutes.
    pub p90_minutes_to_detect: Option<f64>,
    /// False alerts that fall in a confounder's tenant and window, by confounder kind.
    pub noisy_confounders: BTreeMap<String, usize>,
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i])
}

/// Matches `detections` to the campaigns of `truth`.
///
/// A detection matches a campaign when it is for the campaign's tenant (or, for mail relay,
/// the tenant's domain) and connector, fires between 5 minutes before the campaign's first
/// record and 6 hours after its last, and — when it names sources — shares a source with it.
pub fn evaluate(detector: &str, truth: &GroundTruth, detections: &[Detection]) -> EvalReport {
    let domain_of: BTreeMap<&str, &str> = truth
        .tenants
        .iter()
        .map(|t| (t.id.as_str(), t.domain.as_str()))
        .collect();
    let start = truth
        .start
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let learning_end = start + Duration::days(truth.learning_days as i64);
    let end = start + Duration::days(truth.days as i64);
    let matches = |d: &Detection, c: &mailsentry_events::Campaign| {
        let tenant_ok = d.tenant == c.tenant_id
            || domain_of.get(c.tenant_id.as_str()) == Some(&d.tenant.as_str());
        let ips_ok = d.ips.is_empty() || d.ips.iter().any(|ip| c.source_ips.contains(ip));
        tenant_ok
            && d.connector == c.app_id
            && d.at >= c.start - Duration::minutes(5)
            && d.at <= c.end + Duration::hours(6)
            && ips_ok
    };
    let mut by_scenario: BTreeMap<String, ScenarioResult> = BTreeMap::new();
    let mut all_ttd = Vec::new();
    let mut detected_total = 0;
    for c in &truth.campaigns {
        let first = detections
            .iter()
            .filter(|d| matches(d, c))
            .map(|d| d.at)
            .min();
        let r = by_scenario
            .entry(c.scenario.clone())
            .or_insert_with(|| ScenarioResult {
                scenario: c.scenario.clone(),
                difficulty: format!("{:?}", c.difficulty).to_lowercase(),
                campaigns: 0,
                detected: 0,
                minutes_to_detect: Vec::new(),
            });
        r.campaigns += 1;
        if let Some(at) = first {
            r.detected += 1;
            detected_total += 1;
            let minutes = ((at - c.start).num_seconds().max(0)) as f64 / 60.0;
            r.minutes_to_detect.push(minutes);
            all_ttd.push(minutes);
        }
    }
    let false_alerts: Vec<&Detection> = detections
        .iter()
        .filter(|d| d.at >= learning_end && !truth.campaigns.iter().any(|c| matches(d, c)))
        .collect();
    let mut noisy: BTreeMap<String, usize> = BTreeMap::new();
    for d in &false_alerts {
        for q in &truth.confounders {
            let tenant_ok = q
                .tenant_ids
                .iter()
                .any(|t| *t == d.tenant || domain_of.get(t.as_str()) == Some(&d.tenant.as_str()));
            if tenant_ok
                && d.at >= q.start - Duration::hours(1)
                && d.at <= q.end + Duration::hours(6)
            {
                *noisy.entry(q.kind.clone()).or_default() += 1;
            }
        }
    }
    let connectors: BTreeSet<(&str, &str)> = truth
        .connectors
        .iter()
        .map(|c| (c.tenant_id.as_str(), c.app_id.as_str()))
        .collect();
    let connector_days =
        connectors.len() as f64 * (end - learning_end).num_seconds().max(0) as f64 / 86400.0;
    all_ttd.sort_by(f64::total_cmp);
    EvalReport {
        detector: detector.to_owned(),
        scenarios: by_scenario.into_values().collect(),
        recall: if truth.campaigns.is_empty() {
            0.0
        } else {
            detected_total as f64 / truth.campaigns.len() as f64
        },
        false_alerts: false_alerts.len(),
        connector_days,
        false_per_connector_day: if connector_days > 0.0 {
            false_alerts.len() as f64 / connector_days
        } else {
            0.0
        },
        median_minutes_to_detect: quantile(&all_ttd, 0.5),
        p90_minutes_to_detect: quantile(&all_ttd, 0.9),
        noisy_confounders: noisy,
    }
}

/// Keeps the alerts at or above `min`.
pub fn at_least(alerts: &[Alert], min: Severity) -> Vec<Detection> {
    alerts
        .iter()
        .filter(|a| a.severity >= min)
        .flat_map(Detection::from_alert)
        .collect()
}
