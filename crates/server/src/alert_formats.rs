//! Alerts in the formats SIEMs read: OCSF Detection Finding (class 2004, schema 1.5), Elastic
//! Common Schema, and ArcSight CEF (with its escaping rules).

use mailsentry_events::{Alert, Severity};
use serde_json::{json, Value};

/// Product version written into every format.
pub const PRODUCT_VERSION: &str = env!("CARGO_PKG_VERSION");

fn millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

fn title(a: &Alert) -> String {
    format!(
        "Connector {} used unusually ({})",
        a.connector.name.as_deref().unwrap_or(&a.connector.app_id),
        a.reasons
            .first()
            .map(|r| r.signal.as_str())
            .unwrap_or("anomaly")
    )
}

fn summary(a: &Alert) -> String {
    a.reasons
        .iter()
        .take(3)
        .map(|r| r.summary.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// OCSF severity_id: 1 informational … 5 critical.
fn ocsf_severity(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// OCSF Detection Finding (class_uid 2004, category 2 Findings, schema 1.5.0): every required
/// attribute (activity_id, category_uid, class_uid, finding_info with uid and title,
/// metadata with product and version, severity_id, time, type_uid) plus status, evidence and
/// the observed source addresses.
pub fn ocsf(a: &Alert) -> Value {
    let (severity_id, severity) = ocsf_severity(a.severity);
    let (status_id, status) = match a.status.as_str() {
        "acknowledged" => (2, "In Progress"),
        "closed" => (4, "Resolved"),
        _ => (1, "New"),
    };
    json!({
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "time": millis(a.detected_at),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "risk_score": a.score,
        "message": summary(a),
        "metadata": {
            "version": "1.5.0",
            "product": { "name": "mailsentry", "vendor_name": "mailsentry", "version": PRODUCT_VERSION },
            "uid": a.id,
            "logged_time": millis(a.created_at),
        },
        "finding_info": {
            "uid": a.id,
            "title": title(a),
            "desc": summary(a),
            "created_time": millis(a.created_at),
            "first_seen_time": a.session.first_event.map(millis),
            "last_seen_time": a.session.last_event.map(millis),
            "types": a.reasons.iter().map(|r| r.signal.clone()).collect::<Vec<_>>(),
            "analytic": { "name": "mailsentry connector behaviour", "type_id": 5, "type": "Behavioral" },
        },
        "cloud": { "provider": "Microsoft 365", "account": { "uid": a.tenant_id } },
        "actor": { "app_uid": a.connector.app_id, "app_name": a.connector.name },
        "src_endpoint": a.session.client_ips.first().map(|ip| json!({ "ip": ip })),
        "observables": a.session.client_ips.iter().map(|ip| json!({ "name": "src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": ip })).collect::<Vec<_>>(),
        "evidences": [{ "data": { "event_ids": a.evidence.event_ids } }],
        "unmapped": { "p_value": a.p_value, "reasons": a.reasons, "label": a.label },
    })
}

/// Elastic Common Schema.
pub fn ecs(a: &Alert) -> Value {
    json!({
        "@timestamp": a.detected_at.to_rfc3339(),
        "ecs": { "version": "8.11.0" },
        "message": summary(a),
        "event": {
            "kind": "alert",
            "category": ["iam", "intrusion_detection"],
            "type": ["info"],
            "id": a.id,
            "created": a.created_at.to_rfc3339(),
            "start": a.session.first_event.map(|t| t.to_rfc3339()),
            "end": a.session.last_event.map(|t| t.to_rfc3339()),
            "severity": a.score,
            "risk_score": a.score,
            "outcome": "unknown",
        },
        "rule": { "name": title(a), "category": a.reasons.first().map(|r| r.signal.clone()) },
        "organization": { "id": a.tenant_id },
        "source": {
            "ip": a.session.client_ips.first(),
            "as": a.session.asns.first().map(|n| json!({ "number": n })),
        },
        "related": { "ip": a.session.client_ips },
        "observer": { "vendor": "mailsentry", "product": "mailsentry", "version": PRODUCT_VERSION },
        "mailsentry": a,
    })
}

/// Escapes a CEF header field (`\` and `|`).
pub fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// Escapes a CEF extension value (`\`, `=`, newlines).
pub fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace("\r\n", "\\n")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// ArcSight CEF, one line.
pub fn cef(a: &Alert) -> String {
    let severity = (a.score as u32 * 10).div_ceil(100).min(10);
    let mut ext = vec![
        format!("rt={}", millis(a.detected_at)),
        format!("externalId={}", cef_value(&a.id)),
        format!("cs1Label=tenant cs1={}", cef_value(&a.tenant_id)),
        format!("cs2Label=appId cs2={}", cef_value(&a.connector.app_id)),
        format!("cn1Label=score cn1={}", a.score),
        format!("msg={}", cef_value(&summary(a))),
    ];
    if let Some(ip) = a.session.client_ips.first() {
        ext.push(format!("src={}", cef_value(ip)));
    }
    if let Some(k) = a
        .connector
        .credential
        .as_ref()
        .and_then(|c| c.key_id.as_deref())
    {
        ext.push(format!("cs3Label=credentialKeyId cs3={}", cef_value(k)));
    }
    format!(
        "CEF:0|mailsentry|mailsentry|{}|{}|{}|{}|{}",
        cef_header(PRODUCT_VERSION),
        cef_header(
            a.reasons
                .first()
                .map(|r| r.signal.as_str())
                .unwrap_or("anomaly")
        ),
        cef_header(&title(a)),
        severity,
        ext.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cef_escapes_headers_and_values() {
        assert_eq!(cef_header(r"a|b\c"), r"a\|b\\c");
        assert_eq!(cef_value("k=v\\x\nnext"), r"k\=v\\x\nnext");
    }
}
