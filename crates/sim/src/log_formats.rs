//! Writes activities in the real log formats: Management Activity API records, Entra
//! diagnostic sign-in and audit records, IIS W3C lines, mbox messages.

use crate::activity::{AccessKind, CredentialUpdate, IisRequest, MailAccess, Message, SignIn};
use crate::world::{Tenant, FOLDERS};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::io::{self, Write};

fn ual_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Entra's timestamps: seven fractional digits (100 ns ticks) and `Z`.
fn entra_time(t: DateTime<Utc>) -> String {
    use chrono::Timelike;
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.nanosecond() / 100
    )
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UalAppAccessContext<'a> {
    #[serde(rename = "AADSessionId")]
    aad_session_id: &'a str,
    client_app_id: &'a str,
    issued_at_time: String,
    unique_token_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UalNameValue<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UalItem<'a> {
    internet_message_id: &'a str,
    size_in_bytes: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UalFolder<'a> {
    id: String,
    path: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    folder_items: Vec<UalItem<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UalRecord<'a> {
    creation_time: String,
    id: &'a str,
    operation: &'static str,
    organization_id: &'a str,
    record_type: u32,
    result_status: &'static str,
    user_key: &'a str,
    user_type: u8,
    version: u8,
    workload: &'static str,
    #[serde(rename = "ClientIP")]
    client_ip: &'a str,
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_app_id: Option<&'a str>,
    #[serde(rename = "ClientIPAddress")]
    client_ip_address: &'a str,
    client_info_string: &'a str,
    external_access: bool,
    internal_logon_type: u8,
    logon_type: u8,
    logon_user_sid: &'a str,
    mailbox_guid: &'a str,
    mailbox_owner_sid: &'a str,
    #[serde(rename = "MailboxOwnerUPN")]
    mailbox_owner_upn: &'a str,
    organization_name: String,
    originating_server: String,
    session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_access_context: Option<UalAppAccessContext<'a>>,
    operation_count: u32,
    operation_properties: [UalNameValue<'a>; 2],
    folders: Vec<UalFolder<'a>>,
}

/// One Management Activity API MailItemsAccessed record as JSON.
pub fn write_ual(
    out: &mut impl Write,
    tenant: &Tenant,
    time: DateTime<Utc>,
    id: &str,
    a: &MailAccess,
) -> io::Result<()> {
    let mailbox = &tenant.mailboxes[a.mailbox];
    let ip = a.ip.to_string();
    let client_ip = match a.port {
        Some(p) => format!("{ip}:{p}"),
        None => ip.clone(),
    };
    let folders = a
        .folders
        .iter()
        .map(|(path, items)| {
            let fi = FOLDERS.iter().position(|f| f == path).unwrap_or(0);
            UalFolder {
                id: format!("LgAAAAA{}{:04}{:02}", &mailbox.guid[..8], a.mailbox, fi),
                path,
                folder_items: items
                    .iter()
                    .map(|i| UalItem {
                        internet_message_id: &i.message_id,
                        size_in_bytes: i.size,
                    })
                    .collect(),
            }
        })
        .collect();
    let record = UalRecord {
        creation_time: ual_time(time),
        id,
        operation: "MailItemsAccessed",
        organization_id: &tenant.id,
        record_type: 50,
        result_status: "Succeeded",
        user_key: a.app_id.as_deref().unwrap_or(&mailbox.sid),
        user_type: a.user_type,
        version: 1,
        workload: "Exchange",
        client_ip: &client_ip,
        user_id: &a.user_id,
        app_id: a.app_id.as_deref(),
        client_app_id: a.client_app_id.as_deref(),
        client_ip_address: &client_ip,
        client_info_string: &a.client_info,
        external_access: false,
        internal_logon_type: 0,
        logon_type: 0,
        logon_user_sid: if a.user_type == 5 {
            &a.user_id
        } else {
            &mailbox.sid
        },
        mailbox_guid: &mailbox.guid,
        mailbox_owner_sid: &mailbox.sid,
        mailbox_owner_upn: &mailbox.upn,
        organization_name: format!("{}.onmicrosoft.com", tenant.name),
        originating_server: format!(
            "{}1PR0{}MB{:04} (15.20.7409.000)\r\n",
            &tenant.country,
            tenant.index % 9,
            a.mailbox % 97
        ),
        session_id: &a.session_id,
        app_access_context: a.token.as_ref().map(|t| UalAppAccessContext {
            aad_session_id: &t.aad_session,
            client_app_id: a.client_app_id.as_deref().unwrap_or_default(),
            issued_at_time: ual_time(t.issued),
            unique_token_id: &t.id,
        }),
        operation_count: a.count,
        operation_properties: [
            UalNameValue {
                name: "MailAccessType",
                value: match a.kind {
                    AccessKind::Bind => "Bind",
                    AccessKind::Sync => "Sync",
                },
            },
            UalNameValue {
                name: "IsThrottled",
                value: if a.throttled { "True" } else { "False" },
            },
        ],
        folders,
    };
    serde_json::to_writer(out, &record).map_err(io::Error::other)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntraLocation<'a> {
    country_or_region: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntraStatus {
    error_code: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignInProperties<'a> {
    id: String,
    created_date_time: String,
    app_id: &'a str,
    service_principal_id: &'a str,
    service_principal_name: &'a str,
    ip_address: String,
    location: EntraLocation<'a>,
    status: EntraStatus,
    client_credential_type: &'static str,
    service_principal_credential_key_id: &'a str,
    service_principal_credential_thumbprint: &'a str,
    resource_id: &'a str,
    resource_display_name: &'a str,
    unique_token_identifier: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DiagnosticRecord<'a, P> {
    time: String,
    resource_id: String,
    operation_name: &'a str,
    operation_version: &'static str,
    category: &'static str,
    tenant_id: &'a str,
    result_type: String,
    result_signature: &'static str,
    duration_ms: &'static str,
    caller_ip_address: String,
    correlation_id: String,
    #[serde(rename = "Level")]
    level: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<&'a str>,
    properties: P,
}

/// One Entra diagnostic ServicePrincipalSignInLogs record as JSON.
pub fn write_signin(
    out: &mut impl Write,
    tenant: &Tenant,
    time: DateTime<Utc>,
    s: &SignIn,
) -> io::Result<()> {
    let ip = s.ip.to_string();
    let record = DiagnosticRecord {
        time: entra_time(time),
        resource_id: format!("/tenants/{}/providers/Microsoft.aadiam", tenant.id),
        operation_name: "Sign-in activity",
        operation_version: "1.0",
        category: "ServicePrincipalSignInLogs",
        tenant_id: &tenant.id,
        result_type: s.error_code.to_string(),
        result_signature: "None",
        duration_ms: "0",
        caller_ip_address: ip.clone(),
        correlation_id: format!("corr-{}", s.token_id),
        level: 4,
        location: Some(s.country),
        properties: SignInProperties {
            id: format!("signin-{}", s.token_id),
            created_date_time: entra_time(time),
            app_id: &s.app_id,
            service_principal_id: &s.sp_id,
            service_principal_name: &s.sp_name,
            ip_address: ip,
            location: EntraLocation {
                country_or_region: s.country,
            },
            status: EntraStatus {
                error_code: s.error_code,
                failure_reason: (s.error_code != 0)
                    .then_some("The key used to sign the client assertion is not valid."),
            },
            client_credential_type: "certificate",
            service_principal_credential_key_id: &s.key_id,
            service_principal_credential_thumbprint: &s.thumbprint,
            resource_id: s.resource.0,
            resource_display_name: s.resource.1,
            unique_token_identifier: &s.token_id,
        },
    };
    serde_json::to_writer(out, &record).map_err(io::Error::other)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModifiedProperty {
    display_name: &'static str,
    old_value: Option<String>,
    new_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TargetResource<'a> {
    id: String,
    display_name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    modified_properties: Vec<ModifiedProperty>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitiatorUser<'a> {
    id: String,
    user_principal_name: &'a str,
    ip_address: String,
}

#[derive(Serialize)]
struct Initiator<'a> {
    user: InitiatorUser<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditProperties<'a> {
    id: &'a str,
    category: &'static str,
    correlation_id: &'a str,
    result: &'static str,
    activity_display_name: &'static str,
    activity_date_time: String,
    logged_by_service: &'static str,
    operation_type: &'static str,
    initiated_by: Initiator<'a>,
    target_resources: Vec<TargetResource<'a>>,
}

const KEY_ACTIVITY: &str = "Update application \u{2013} Certificates and secrets management ";

fn key_description(keys: &[(std::sync::Arc<str>, std::sync::Arc<str>)]) -> String {
    let parts: Vec<String> = keys
        .iter()
        .map(|(id, name)| {
            format!(
                "\"[KeyIdentifier={id},KeyType=AsymmetricX509Cert,KeyUsage=Verify,DisplayName={name}]\""
            )
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// One Entra diagnostic AuditLogs record (certificates of an application changed) as JSON.
pub fn write_audit(
    out: &mut impl Write,
    tenant: &Tenant,
    time: DateTime<Utc>,
    c: &CredentialUpdate,
) -> io::Result<()> {
    let properties = AuditProperties {
        id: &c.id,
        category: "ApplicationManagement",
        correlation_id: &c.id,
        result: "success",
        activity_display_name: KEY_ACTIVITY,
        activity_date_time: entra_time(time),
        logged_by_service: "Core Directory",
        operation_type: "Update",
        initiated_by: Initiator {
            user: InitiatorUser {
                id: format!("user-{}", c.actor.split('@').next().unwrap_or("admin")),
                user_principal_name: &c.actor,
                ip_address: c.actor_ip.to_string(),
            },
        },
        target_resources: vec![TargetResource {
            id: format!("obj-{}", c.app_id),
            display_name: &c.app_name,
            kind: "Application",
            modified_properties: vec![
                ModifiedProperty {
                    display_name: "KeyDescription",
                    old_value: Some(key_description(&c.old_keys)),
                    new_value: key_description(&c.new_keys),
                },
                ModifiedProperty {
                    display_name: "AppId",
                    old_value: None,
                    new_value: format!("\"{}\"", c.app_id),
                },
            ],
        }],
    };
    let record = DiagnosticRecord {
        time: entra_time(time),
        resource_id: format!("/tenants/{}/providers/Microsoft.aadiam", tenant.id),
        operation_name: KEY_ACTIVITY,
        operation_version: "1.0",
        category: "AuditLogs",
        tenant_id: &tenant.id,
        result_type: String::new(),
        result_signature: "None",
        duration_ms: "0",
        caller_ip_address: c.actor_ip.to_string(),
        correlation_id: c.id.clone(),
        level: 4,
        location: None,
        properties,
    };
    serde_json::to_writer(out, &record).map_err(io::Error::other)
}

/// The header of an IIS W3C log file.
pub fn iis_header(out: &mut impl Write, date: chrono::NaiveDate) -> io::Result<()> {
    write!(
        out,
        "#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n#Date: {} 00:00:00\r\n#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status sc-bytes time-taken\r\n",
        date.format("%Y-%m-%d")
    )
}

/// One IIS W3C line.
pub fn write_iis(out: &mut impl Write, time: DateTime<Utc>, r: &IisRequest) -> io::Result<()> {
    let (sub, win32) = if r.status == 401 {
        (1, 2148074254u64)
    } else {
        (0, 0)
    };
    write!(
        out,
        "{} {} {} {} {} 443 {} {} {} - {} {} {} {} {}\r\n",
        time.format("%Y-%m-%d %H:%M:%S"),
        r.server_ip,
        r.method,
        r.stem,
        r.query,
        if r.status == 401 { "-" } else { &r.username },
        r.client_ip,
        r.user_agent,
        r.status,
        sub,
        win32,
        r.bytes,
        r.time_taken
    )
}

/// One message in mbox form (`From ` line, headers, a short body, blank line).
pub fn write_mbox(
    out: &mut impl Write,
    tenant: &Tenant,
    time: DateTime<Utc>,
    m: &Message,
) -> io::Result<()> {
    let to = &tenant.mailboxes[m.to].upn;
    writeln!(
        out,
        "From {} {}",
        m.from,
        time.format("%a %b %e %H:%M:%S %Y")
    )?;
    for hop in &m.hops {
        writeln!(
            out,
            "Received: from {} ({} [{}])",
            hop.from_host, hop.from_host, hop.from_ip
        )?;
        if let Some((version, cipher)) = hop.tls {
            let bits = if cipher.contains("128") {
                "128/128"
            } else {
                "256/256"
            };
            writeln!(
                out,
                "\t(using {version} with cipher {cipher} ({bits} bits))"
            )?;
        }
        let with = if hop.tls.is_some() { "ESMTPS" } else { "SMTP" };
        writeln!(
            out,
            "\tby {} (Postfix) with {with} id {:X}\n\tfor <{to}>; {}",
            hop.by_host,
            hop.time.timestamp() as u64 ^ 0x5a5a,
            hop.time.format("%a, %d %b %Y %H:%M:%S +0000 (UTC)")
        )?;
    }
    writeln!(
        out,
        "Authentication-Results: mail.{}; spf={} smtp.mailfrom={d};\n\tdkim={} header.d={d}; dmarc={} header.from={d}",
        tenant.domain, m.auth.0, m.auth.1, m.auth.2, d = m.sender_domain
    )?;
    let sent = m.hops.last().map(|h| h.time).unwrap_or(time) - chrono::Duration::seconds(3);
    writeln!(out, "From: <{}>", m.from)?;
    writeln!(out, "To: <{to}>")?;
    writeln!(out, "Subject: {}", m.subject)?;
    writeln!(out, "Date: {}", sent.format("%a, %d %b %Y %H:%M:%S +0000"))?;
    writeln!(out, "Message-ID: {}", m.message_id)?;
    writeln!(out, "MIME-Version: 1.0")?;
    writeln!(out, "Content-Type: text/plain; charset=utf-8")?;
    writeln!(out)?;
    writeln!(
        out,
        "This message was generated by the mailsentry simulator."
    )?;
    writeln!(out)
}
