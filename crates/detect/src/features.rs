//! The per-session feature row: what the scorers saw when a session closed, one row per
//! session, taken from the live detector's own sessions and scoring (the `features` command
//! and the model layer read exactly what the detector computes, never a re-implementation).

use crate::scoring::Evaluation;
use crate::sessions::{Activity, Session};
use serde::{Deserialize, Serialize};

/// The statistical signals, in column order; each becomes `sig_<id>` = −log10 p (0 when the
/// signal was not computed for the session).
pub const SIGNALS: &[&str] = &[
    "source.country.first_seen",
    "source.asn.first_seen",
    "source.network.first_seen",
    "source.ip.first_seen",
    "source.network.rare",
    "source.user_agent.first_seen",
    "credential.key.first_seen",
    "target.new_mailboxes",
    "timing.hour_of_week",
    "timing.parallel_stream",
    "volume.items",
    "volume.mailboxes",
    "transport.weak_tls",
    "transport.dmarc_fail",
];

/// The rules, in column order; each becomes `rule_<id>` = 1 when it fired.
pub const RULES: &[&str] = &[
    "credential.added_then_used",
    "credential.concurrent_networks",
    "credential.removed_key_used",
    "credential.rotated_key_used",
    "credential.unexpected_key",
    "source.outside_vendor_ranges",
];

/// The raw session quantities, in column order (counts on a log1p scale where noted).
pub const QUANTITIES: &[&str] = &[
    "log_events",
    "log_items",
    "log_bytes",
    "log_mailboxes",
    "log_new_targets",
    "log_duration_min",
    "bind_share",
    "failed_signins",
    "late_share",
    "hour_local_sin",
    "hour_local_cos",
    "weekend",
    "transport",
];

/// Every numeric feature's column name, in order.
pub fn feature_names() -> Vec<String> {
    QUANTITIES
        .iter()
        .map(|q| q.to_string())
        .chain(SIGNALS.iter().map(|s| format!("sig_{s}")))
        .chain(RULES.iter().map(|r| format!("rule_{r}")))
        .collect()
}

/// A hash of the feature schema (names and order): a model trained on one schema is refused
/// by a detector computing another.
pub fn schema_hash() -> String {
    format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(feature_names().join(",").as_bytes())
    )
}

/// One closed session's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionFeatures {
    /// Tenant.
    pub tenant_id: String,
    /// Connector (app id or service account).
    pub connector: String,
    /// Source (IP or hop).
    pub source: String,
    /// First event, Unix seconds.
    pub first: i64,
    /// Last event, Unix seconds.
    pub last: i64,
    /// The detector's own score (0–100) and combined p-value.
    pub score: u8,
    /// Combined p-value.
    pub p_value: f64,
    /// The connector was still learning.
    pub learning: bool,
    /// Values in [`feature_names`] order.
    pub values: Vec<f64>,
}

fn log1p(x: u64) -> f64 {
    (x as f64).ln_1p()
}

/// The feature values of `session` given the signals and rules its evaluation computed, in
/// [`feature_names`] order; `utc_offset_secs` is the tenant's offset.
pub fn feature_values(
    session: &Session,
    signals: &[(&'static str, f64)],
    rules: &[&'static str],
    utc_offset_secs: i64,
) -> Vec<f64> {
    let local = session.first + utc_offset_secs;
    let hour = (local.rem_euclid(86_400)) as f64 / 3600.0;
    // 1970-01-01 was a Thursday: day 0 → Thursday; Saturday and Sunday are days 2 and 3.
    let weekday = local.div_euclid(86_400).rem_euclid(7);
    let access = session.binds + session.syncs;
    let mut values = Vec::with_capacity(QUANTITIES.len() + SIGNALS.len() + RULES.len());
    values.extend([
        log1p(session.events),
        log1p(session.items),
        log1p(session.bytes),
        log1p(session.mailboxes.len() as u64),
        log1p(session.new_targets),
        (((session.last - session.first).max(0) as f64) / 60.0).ln_1p(),
        if access == 0 {
            0.0
        } else {
            session.binds as f64 / access as f64
        },
        session.failed_signins as f64,
        if session.events == 0 {
            0.0
        } else {
            session.late_events as f64 / session.events as f64
        },
        (hour / 24.0 * std::f64::consts::TAU).sin(),
        (hour / 24.0 * std::f64::consts::TAU).cos(),
        f64::from(u8::from(weekday == 2 || weekday == 3)),
        f64::from(u8::from(session.activity == Activity::Transport)),
    ]);
    debug_assert!(
        signals.iter().all(|(id, _)| SIGNALS.contains(id)),
        "a signal missing from features::SIGNALS: {signals:?}"
    );
    debug_assert!(
        rules.iter().all(|id| RULES.contains(id)),
        "a rule missing from features::RULES: {rules:?}"
    );
    for id in SIGNALS {
        let p = signals
            .iter()
            .filter(|(s, _)| s == id)
            .map(|(_, p)| *p)
            .fold(1.0f64, f64::min);
        values.push(-p.clamp(1e-300, 1.0).log10());
    }
    for id in RULES {
        values.push(f64::from(u8::from(rules.contains(id))));
    }
    values
}

/// The row of `session` as scored by `eval`; `utc_offset_secs` is the tenant's offset.
pub fn session_features(
    session: &Session,
    eval: &Evaluation,
    utc_offset_secs: i64,
) -> SessionFeatures {
    SessionFeatures {
        tenant_id: session.key.tenant.clone(),
        connector: session.key.connector.clone(),
        source: session.key.source.clone(),
        first: session.first,
        last: session.last,
        score: eval.score,
        p_value: eval.p,
        learning: eval.learning,
        values: feature_values(session, &eval.signals, &eval.rules, utc_offset_secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_names_every_value_and_its_hash_is_stable() {
        let names = feature_names();
        assert_eq!(names.len(), QUANTITIES.len() + SIGNALS.len() + RULES.len());
        assert_eq!(schema_hash(), schema_hash());
        assert_eq!(schema_hash().len(), 16);
    }
}
