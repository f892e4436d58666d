//! Entra ID logs: sign-ins (service principal, managed identity, user), audit logs (credential
//! changes, consent, role and application changes) and Microsoft Graph activity logs, in both
//! the diagnostic-settings shape (`{time, category, properties{…}}`, Event Hub / storage) and the
//! Log Analytics / Sentinel table shape (fields at the top level, nested objects as strings).

use crate::decoder::{RawRecord, RecordError, RecordOutcome};
use crate::field_values::{parse_client_address, parse_ip, ParsedAddress};
use crate::json_record::{string, sub, text, JsonRecord, Principal, TargetResource};
use crate::loose_json::Nested;
use crate::record_helpers::{
    event_time, key_description_values, key_id_changes, normalize_operation,
};
use mailsentry_events::{
    AdminChange, AdminChangeCategory, ConnectorIdentity, CredentialChange, CredentialType, Event,
    EventKind, MailProtocol, MailboxAccess, Parameter, SignIn, SignInCategory, SourceFormat,
};

/// Which Entra log a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntraLog {
    /// A sign-in log of this category.
    SignIn(SignInCategory),
    /// `AuditLogs`.
    Audit,
    /// `MicrosoftGraphActivityLogs`.
    GraphActivity,
}

/// Recognises an Entra record from its `category` (diagnostic export) or `Type` (table row).
pub fn classify(rec: &JsonRecord<'_>) -> Option<EntraLog> {
    let category = text(&rec.category).map(|c| c.to_ascii_lowercase());
    let table = text(&rec.record_table).map(|c| c.to_ascii_lowercase());
    for name in [category.as_deref(), table.as_deref()]
        .into_iter()
        .flatten()
    {
        let log = match name {
            "serviceprincipalsigninlogs" | "aadserviceprincipalsigninlogs" => {
                EntraLog::SignIn(SignInCategory::ServicePrincipal)
            }
            "managedidentitysigninlogs" | "aadmanagedidentitysigninlogs" => {
                EntraLog::SignIn(SignInCategory::ManagedIdentity)
            }
            "signinlogs" => EntraLog::SignIn(SignInCategory::User),
            "noninteractiveusersigninlogs" | "aadnoninteractiveusersigninlogs" => {
                EntraLog::SignIn(SignInCategory::NonInteractiveUser)
            }
            "microsoftgraphactivitylogs" => EntraLog::GraphActivity,
            "auditlogs" => EntraLog::Audit,
            _ => continue,
        };
        return Some(log);
    }
    // Audit rows projected out of `AuditLogs` keep their operation and targets.
    let props = sub(&rec.properties).unwrap_or(rec);
    let has_audit_shape = (props.target_resources.is_some() || rec.target_resources.is_some())
        && (props.operation_name.is_some()
            || props.activity_display_name.is_some()
            || rec.operation_name.is_some());
    // Diagnostic audit records carry the audit category (`DirectoryManagement`, `Policy`, ...)
    // rather than `AuditLogs`; the operation inside `properties` identifies them.
    let diagnostic_audit = sub(&rec.properties).is_some()
        && (props.activity_display_name.is_some() || rec.operation_name.is_some())
        && props.created_date_time.is_none();
    if has_audit_shape || diagnostic_audit {
        return Some(EntraLog::Audit);
    }
    None
}

/// Decodes one Entra record.
pub fn decode_entra_record(
    rec: &JsonRecord<'_>,
    log: EntraLog,
    raw: &RawRecord<'_>,
    out: &mut Vec<Event>,
) -> Result<RecordOutcome, RecordError> {
    let (props, format) = match sub(&rec.properties) {
        Some(p) => (p, SourceFormat::EntraDiagnostic),
        None => (rec, SourceFormat::EntraLogAnalytics),
    };
    let format = if log == EntraLog::GraphActivity {
        SourceFormat::GraphActivity
    } else {
        format
    };
    let tenant_id = string(&rec.tenant_id).or_else(|| string(&props.tenant_id));
    match log {
        EntraLog::SignIn(category) => {
            let time = event_time(&[
                (
                    "properties.createdDateTime",
                    props.created_date_time.as_ref(),
                ),
                ("time", rec.time.as_ref()),
                ("TimeGenerated", rec.time_generated.as_ref()),
            ])?;
            let record_id = string(&props.id).or_else(|| string(&rec.id));
            let kind = EventKind::SignIn(sign_in(rec, props, category));
            push(out, raw, format, record_id, time, tenant_id, kind);
            Ok(RecordOutcome::Decoded)
        }
        EntraLog::Audit => {
            let time = event_time(&[
                (
                    "properties.activityDateTime",
                    props.activity_date_time.as_ref(),
                ),
                ("time", rec.time.as_ref()),
                ("ActivityDateTime", rec.activity_date_time.as_ref()),
                ("TimeGenerated", rec.time_generated.as_ref()),
            ])?;
            let record_id = string(&props.id).or_else(|| string(&rec.id));
            let kind = audit_event(rec, props);
            push(out, raw, format, record_id, time, tenant_id, kind);
            Ok(RecordOutcome::Decoded)
        }
        EntraLog::GraphActivity => {
            let uri = text(&props.request_uri).map(|u| u.into_owned());
            let touches_mail = uri.as_deref().is_some_and(is_mail_uri);
            if !touches_mail {
                return Ok(RecordOutcome::Skipped("graph_request_not_mail"));
            }
            let time = event_time(&[
                ("time", rec.time.as_ref()),
                ("TimeGenerated", rec.time_generated.as_ref()),
                ("properties.timeGenerated", props.time_generated.as_ref()),
            ])?;
            let record_id = string(&props.id).or_else(|| string(&rec.id));
            let kind =
                EventKind::MailboxAccess(graph_mail_access(rec, props, uri.unwrap_or_default()));
            push(out, raw, format, record_id, time, tenant_id, kind);
            Ok(RecordOutcome::Decoded)
        }
    }
}

fn push(
    out: &mut Vec<Event>,
    raw: &RawRecord<'_>,
    format: SourceFormat,
    record_id: Option<String>,
    time: chrono::DateTime<chrono::Utc>,
    tenant_id: Option<String>,
    kind: EventKind,
) {
    out.push(Event {
        id: raw.event_id(record_id.as_deref()),
        time,
        tenant_id,
        origin: raw.origin(format, record_id),
        kind,
    });
}

fn sign_in(rec: &JsonRecord<'_>, p: &JsonRecord<'_>, category: SignInCategory) -> SignIn {
    let address = text(&p.client_ip)
        .or_else(|| text(&rec.caller_ip_address))
        .or_else(|| text(&rec.client_ip));
    let client = address.and_then(|a| match parse_client_address(&a) {
        ParsedAddress::Ip(addr) => Some(addr),
        _ => None,
    });
    let country = p
        .location
        .as_ref()
        .and_then(|l| l.country())
        .or_else(|| sub(&p.location_details).and_then(|d| string(&d.country)))
        .or_else(|| rec.location.as_ref().and_then(|l| l.country()));
    let error_code = sub(&p.status)
        .and_then(|s| s.error_code.as_ref().and_then(|c| c.as_i64()))
        .or_else(|| p.error_code.as_ref().and_then(|c| c.as_i64()))
        .or_else(|| {
            let rt = rec.result_type.as_ref().or(p.result_type.as_ref())?;
            rt.as_i64().or_else(|| {
                rt.text()
                    .filter(|t| t.eq_ignore_ascii_case("success"))
                    .map(|_| 0)
            })
        })
        .unwrap_or(0);
    // On a table row the top-level `ResourceId` is the ARM path; the resource app is `ResourceIdentity`.
    let resource_id = string(&p.resource_identity).or_else(|| {
        string(&p.resource_id)
            .filter(|r| !r.starts_with("/tenants/") && !r.starts_with("/subscriptions/"))
    });
    let service_principal_name = string(&p.service_principal_name);
    SignIn {
        category,
        actor: ConnectorIdentity {
            app_id: string(&p.app_id),
            client_app_id: None,
            service_principal_id: string(&p.service_principal_id),
            name: service_principal_name.or_else(|| string(&p.app_display_name)),
            service_account: None,
        },
        user_principal_name: string(&p.user_principal_name),
        client,
        country,
        credential_type: text(&p.client_credential_type).map(|t| CredentialType::parse(&t)),
        credential_key_id: string(&p.credential_key_id),
        credential_thumbprint: string(&p.credential_thumbprint),
        resource_id,
        resource_name: string(&p.resource_display_name),
        token_id: string(&p.unique_token_id),
        correlation_id: string(&p.correlation_id).or_else(|| string(&rec.correlation_id)),
        user_agent: string(&p.user_agent),
        error_code,
        success: error_code == 0,
    }
}

fn unquote(value: String) -> String {
    let t = value.trim();
    t.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(t)
        .to_owned()
}

fn initiator(
    rec: &JsonRecord<'_>,
    p: &JsonRecord<'_>,
) -> (Option<String>, Option<std::net::IpAddr>) {
    let by = p
        .initiated_by
        .as_ref()
        .or(rec.initiated_by.as_ref())
        .and_then(Nested::value);
    let Some(by) = by else {
        return (None, None);
    };
    fn principal<'r, 'a>(n: &'r Option<Nested<Principal<'a>>>) -> Option<&'r Principal<'a>> {
        n.as_ref().and_then(Nested::value)
    }
    let user = principal(&by.user);
    let app = principal(&by.app);
    let who = user
        .as_ref()
        .and_then(|u| string(&u.user_principal_name).or_else(|| string(&u.id)))
        .or_else(|| {
            app.as_ref().and_then(|a| {
                string(&a.display_name)
                    .or_else(|| string(&a.app_id))
                    .or_else(|| string(&a.service_principal_id))
            })
        });
    let ip = user
        .as_ref()
        .and_then(|u| string(&u.ip_address))
        .or_else(|| app.as_ref().and_then(|a| string(&a.ip_address)))
        .and_then(|t| parse_ip(&t))
        .or_else(|| text(&rec.caller_ip_address).and_then(|t| parse_ip(&t)));
    (who, ip)
}

fn targets<'r, 'a>(rec: &'r JsonRecord<'a>, p: &'r JsonRecord<'a>) -> Vec<&'r TargetResource<'a>> {
    p.target_resources
        .as_ref()
        .or(rec.target_resources.as_ref())
        .map(|l| l.values().collect())
        .unwrap_or_default()
}

fn audit_event(rec: &JsonRecord<'_>, p: &JsonRecord<'_>) -> EventKind {
    let operation = text(&p.activity_display_name)
        .or_else(|| text(&p.operation_name))
        .or_else(|| text(&rec.operation_name))
        .map(|o| o.trim().to_owned())
        .unwrap_or_default();
    let op = normalize_operation(&operation);
    let (actor, actor_ip) = initiator(rec, p);
    let result = string(&p.result_status).or_else(|| string(&rec.result_status));
    let targets = targets(rec, p);

    let properties: Vec<(String, Option<String>, Option<String>)> = targets
        .iter()
        .flat_map(|t| t.modified_properties.iter().flat_map(|l| l.values()))
        .filter_map(|m| Some((string(&m.name)?, string(&m.old_value), string(&m.new_value))))
        .collect();

    let app_target = targets.iter().find(|t| {
        string(&t.kind).is_some_and(|k| {
            k.eq_ignore_ascii_case("Application") || k.eq_ignore_ascii_case("ServicePrincipal")
        })
    });
    let app_identity = |t: Option<&&TargetResource>| {
        let mut id = ConnectorIdentity::default();
        if let Some(t) = t {
            let is_sp = string(&t.kind).is_some_and(|k| k.eq_ignore_ascii_case("ServicePrincipal"));
            if is_sp {
                id.service_principal_id = string(&t.id);
            }
            id.name = string(&t.display_name);
        }
        id.app_id = properties
            .iter()
            .find(|(n, _, _)| {
                n.eq_ignore_ascii_case("AppId") || n.eq_ignore_ascii_case("ServicePrincipal.AppId")
            })
            .and_then(|(_, _, new)| new.clone().map(unquote))
            .filter(|v| !v.is_empty() && v != "null");
        id
    };

    let is_key_change = op.contains("certificates and secrets management")
        || op.contains("service principal credentials")
        || properties
            .iter()
            .any(|(n, _, _)| n.eq_ignore_ascii_case("KeyDescription"));
    if is_key_change {
        let mut added = Vec::new();
        let mut removed = Vec::new();
        let mut key_types = Vec::new();
        for (name, old, new) in &properties {
            if name.eq_ignore_ascii_case("KeyDescription") {
                let (a, r) = key_id_changes(old.as_deref(), new.as_deref());
                added.extend(a);
                removed.extend(r);
                for t in [old, new].into_iter().flatten() {
                    for kt in key_description_values(t, "KeyType") {
                        if !key_types.contains(&kt) {
                            key_types.push(kt);
                        }
                    }
                }
            } else if name.eq_ignore_ascii_case("KeyType") {
                if let Some(v) = new.clone().map(unquote).filter(|v| !v.is_empty()) {
                    if !key_types.contains(&v) {
                        key_types.push(v);
                    }
                }
            }
        }
        return EventKind::CredentialChange(CredentialChange {
            operation,
            target: app_identity(app_target),
            key_ids_added: added,
            key_ids_removed: removed,
            key_types,
            actor,
            actor_ip,
            result,
        });
    }

    let category = match op.as_str() {
        "consent to application"
        | "add delegated permission grant"
        | "remove delegated permission grant"
        | "add app role assignment to service principal"
        | "add app role assignment grant to user"
        | "remove app role assignment from service principal" => AdminChangeCategory::Consent,
        "add member to role"
        | "remove member from role"
        | "add eligible member to role"
        | "add member to role completed (pim activation)" => AdminChangeCategory::RoleAssignment,
        "add application"
        | "update application"
        | "delete application"
        | "hard delete application"
        | "add service principal"
        | "update service principal"
        | "remove service principal" => AdminChangeCategory::Application,
        _ => AdminChangeCategory::Other,
    };
    let app = matches!(
        category,
        AdminChangeCategory::Consent | AdminChangeCategory::Application
    )
    .then(|| app_identity(app_target))
    .filter(|a| !a.is_empty() || a.name.is_some());
    EventKind::AdminChange(AdminChange {
        category,
        operation,
        actor,
        actor_ip,
        target: targets
            .first()
            .and_then(|t| string(&t.display_name).or_else(|| string(&t.id))),
        app,
        parameters: properties
            .into_iter()
            .map(|(name, _, new)| Parameter {
                name,
                value: new.map(unquote).unwrap_or_default(),
            })
            .collect(),
        result,
    })
}

/// True for Graph request URIs on mail: messages, mail folders, attachments, mailbox settings.
pub fn is_mail_uri(uri: &str) -> bool {
    let lower = uri.to_ascii_lowercase();
    [
        "/messages",
        "/mailfolders",
        "/mailboxsettings",
        "/attachments",
        "/inbox",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// The mailbox in `/users/{upn-or-id}/...`, when the URI names one.
fn mailbox_from_uri(uri: &str) -> Option<String> {
    let lower = uri.to_ascii_lowercase();
    let start = lower.find("/users/")? + "/users/".len();
    let rest = &uri[start..];
    let end = rest.find(['/', '?', '(']).unwrap_or(rest.len());
    let id = rest[..end].trim_matches(['\'', '"']);
    (!id.is_empty()).then(|| id.to_owned())
}

fn graph_mail_access(rec: &JsonRecord<'_>, p: &JsonRecord<'_>, uri: String) -> MailboxAccess {
    let method = string(&p.request_method).unwrap_or_else(|| "GET".into());
    let address = text(&p.client_ip).or_else(|| text(&rec.caller_ip_address));
    let (client, client_host) = match address.as_deref().map(parse_client_address) {
        Some(ParsedAddress::Ip(a)) => (Some(a), None),
        Some(ParsedAddress::Host(h)) => (None, Some(h)),
        _ => (None, None),
    };
    let path = uri
        .split_once("://")
        .map(|(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]))
        .unwrap_or(&uri);
    let path = path.split('?').next().unwrap_or(path);
    MailboxAccess {
        operation: format!("{method} {path}"),
        actor: ConnectorIdentity {
            app_id: string(&p.app_id),
            client_app_id: None,
            service_principal_id: string(&p.service_principal_id),
            name: string(&p.app_display_name),
            service_account: None,
        },
        user_id: string(&p.user_id),
        user_type: None,
        client,
        client_host,
        client_info: string(&p.user_agent),
        protocol: Some(MailProtocol::Rest),
        access_type: None,
        operation_count: 1,
        mailbox_upn: mailbox_from_uri(&uri),
        mailbox_guid: None,
        folders: Vec::new(),
        bytes: p
            .response_size_bytes
            .as_ref()
            .and_then(|b| b.as_count())
            .unwrap_or(0),
        logon_type: None,
        session_id: None,
        token_id: string(&p.sign_in_activity_id),
        aad_session_id: None,
        throttled: false,
        result: string(&p.response_status_code),
        unreadable_fields: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_mail_uris() {
        assert!(is_mail_uri(
            "https://graph.microsoft.com/v1.0/users/a@b.com/messages?$top=10"
        ));
        assert!(is_mail_uri(
            "https://graph.microsoft.com/v1.0/users/x/mailFolders/inbox/messages"
        ));
        assert!(!is_mail_uri(
            "https://graph.microsoft.com/v1.0/users/x/drive/root"
        ));
        assert_eq!(
            mailbox_from_uri(
                "https://graph.microsoft.com/v1.0/users/ceo@contoso.com/messages/AAMk"
            ),
            Some("ceo@contoso.com".into())
        );
        assert_eq!(
            mailbox_from_uri("https://graph.microsoft.com/v1.0/me/messages"),
            None
        );
    }
}
