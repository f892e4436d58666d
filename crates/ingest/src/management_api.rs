//! Unified Audit Log records, however delivered: Management Activity API (NDJSON, content
//! blobs), Sentinel `OfficeActivity` rows, Defender `CloudAppEvents` `RawEventData`, the Purview
//! CSV `AuditData` column, Panther copies.
//!
//! MailItemsAccessed and the other Exchange item operations become [`MailboxAccess`]; mailbox
//! permission and role changes, consent and application changes become [`AdminChange`]; AAD
//! credential operations become [`CredentialChange`]; STS logons become user [`SignIn`]s.

use crate::decoder::{RawRecord, RecordError, RecordOutcome, RejectClass};
use crate::field_values::{parse_client_address, parse_ip, ParsedAddress};
use crate::json_record::{string, text, FolderEntry, ItemEntry, JsonRecord};
use crate::loose_json::{Element, List, Loose, Nested};
use crate::record_helpers::{event_time, is_one_ascii_word, key_id_changes, normalize_operation};
use mailsentry_events::{
    AdminChange, AdminChangeCategory, ConnectorIdentity, CredentialChange, Event, EventKind,
    FolderAccess, LogonType, MailAccessType, MailItemRef, MailProtocol, MailboxAccess, Parameter,
    SignIn, SignInCategory, SourceFormat, MICROSOFT_GRAPH_APP_ID,
};

/// Maps `RecordType` names (Purview CSV writes them as names) to their codes.
fn record_type_code(value: &Loose<'_>) -> Option<i64> {
    if let Some(n) = value.as_i64() {
        return Some(n);
    }
    let t = value.text()?;
    let code = match t.trim().to_ascii_lowercase().as_str() {
        "exchangeadmin" => 1,
        "exchangeitem" => 2,
        "exchangeitemgroup" => 3,
        "azureactivedirectory" => 8,
        "azureactivedirectoryaccountlogon" => 9,
        "azureactivedirectorystslogon" => 15,
        "exchangeaggregatedoperation" | "exchangeitemaggregated" => 50,
        _ => return None,
    };
    Some(code)
}

/// Exchange item operations that read or act on mailbox content (mailbox auditing).
const EXCHANGE_ITEM_OPERATIONS: &[&str] = &[
    "mailitemsaccessed",
    "send",
    "sendas",
    "sendonbehalf",
    "softdelete",
    "harddelete",
    "movetodeleteditems",
    "move",
    "copy",
    "create",
    "update",
    "folderbind",
    "messagebind",
    "searchqueryinitiatedexchange",
    "mailboxlogin",
    "updatefolderpermissions",
    "addfolderpermissions",
    "applyrecord",
    "updatecalendardelegation",
    "updateinboxrules",
];

/// Context a wrapper row adds to the record it carries (Defender `CloudAppEvents`).
#[derive(Default)]
pub struct OuterRow<'r, 'a> {
    /// The wrapper row, for fallbacks (IP, country, time, app display name).
    pub row: Option<&'r JsonRecord<'a>>,
}

/// Decodes one UAL record into events.
pub fn decode_ual_record(
    rec: &JsonRecord<'_>,
    format: SourceFormat,
    outer: OuterRow<'_, '_>,
    raw: &RawRecord<'_>,
    out: &mut Vec<Event>,
) -> Result<RecordOutcome, RecordError> {
    let outer_row = outer.row;
    let time = event_time(&[
        ("CreationTime", rec.creation_time.as_ref()),
        ("TimeGenerated", rec.time_generated.as_ref()),
        ("Timestamp", rec.timestamp.as_ref()),
        (
            "Timestamp (row)",
            outer_row.and_then(|r| r.timestamp.as_ref()),
        ),
    ])?;
    let operation_raw = text(&rec.operation)
        .or_else(|| outer_row.and_then(|r| text(&r.action_type)))
        .ok_or_else(|| RecordError::new(RejectClass::MissingField, "no Operation"))?;
    let operation = operation_raw.trim().to_owned();
    let record_type = rec.record_type.as_ref().and_then(record_type_code);
    let record_id = string(&rec.id)
        .or_else(|| string(&rec.office_id))
        .or_else(|| outer_row.and_then(|r| string(&r.report_id)));
    let tenant_id = string(&rec.organization_id)
        .or_else(|| string(&rec.tenant_id).filter(|t| !t.starts_with('$')));

    let kind = if matches!(record_type, Some(2 | 3 | 50)) || is_exchange_item_operation(&operation)
    {
        EventKind::MailboxAccess(mailbox_access(rec, outer_row, operation))
    } else {
        let op = normalize_operation(&operation);
        let workload = text(&rec.workload).map(|w| w.to_ascii_lowercase());
        if is_credential_operation(&op) {
            EventKind::CredentialChange(credential_change(rec, operation))
        } else if let Some(category) = admin_category(&op, record_type, workload.as_deref()) {
            EventKind::AdminChange(admin_change(rec, outer_row, category, operation))
        } else if matches!(record_type, Some(15)) || op == "userloggedin" || op == "userloginfailed"
        {
            EventKind::SignIn(user_sign_in(rec, &op))
        } else {
            return Ok(RecordOutcome::Skipped("ual_operation_not_used"));
        }
    };

    let id = raw.event_id(record_id.as_deref());
    out.push(Event {
        id,
        time,
        tenant_id,
        origin: raw.origin(format, record_id),
        kind,
    });
    Ok(RecordOutcome::Decoded)
}

/// Whether `operation` (as written) is one of [`EXCHANGE_ITEM_OPERATIONS`] once normalised; the
/// usual one-word names are compared without building the normalised name.
fn is_exchange_item_operation(operation: &str) -> bool {
    if is_one_ascii_word(operation) {
        return EXCHANGE_ITEM_OPERATIONS
            .iter()
            .any(|o| o.eq_ignore_ascii_case(operation));
    }
    EXCHANGE_ITEM_OPERATIONS.contains(&normalize_operation(operation).as_str())
}

fn is_credential_operation(op: &str) -> bool {
    op.contains("service principal credentials")
        || op.contains("certificates and secrets management")
}

fn admin_category(
    op: &str,
    record_type: Option<i64>,
    workload: Option<&str>,
) -> Option<AdminChangeCategory> {
    let category = match op {
        "add-mailboxpermission"
        | "remove-mailboxpermission"
        | "add-recipientpermission"
        | "remove-recipientpermission"
        | "add-adpermission" => AdminChangeCategory::MailboxPermission,
        "new-managementroleassignment"
        | "remove-managementroleassignment"
        | "set-managementroleassignment"
        | "add member to role"
        | "remove member from role"
        | "add eligible member to role" => AdminChangeCategory::RoleAssignment,
        "consent to application"
        | "add delegated permission grant"
        | "add app role assignment to service principal"
        | "add app role assignment grant to user"
        | "remove delegated permission grant"
        | "remove app role assignment from service principal" => AdminChangeCategory::Consent,
        "add service principal"
        | "update service principal"
        | "remove service principal"
        | "delete service principal"
        | "add application"
        | "update application"
        | "delete application"
        | "hard delete application" => AdminChangeCategory::Application,
        "set-mailbox"
        | "new-inboxrule"
        | "set-inboxrule"
        | "remove-inboxrule"
        | "new-transportrule"
        | "set-transportrule"
        | "set-casmailbox"
        | "set-ownavirtualdirectory"
        | "new-applicationaccesspolicy"
        | "set-applicationaccesspolicy"
        | "remove-applicationaccesspolicy" => AdminChangeCategory::MailboxConfiguration,
        _ if record_type == Some(1) => AdminChangeCategory::Other,
        _ if record_type == Some(8) || workload == Some("azureactivedirectory") => {
            AdminChangeCategory::Other
        }
        _ => return None,
    };
    Some(category)
}

fn protocol_from_client_info(info: &str) -> Option<MailProtocol> {
    // Compared without regard to ASCII case, as the client strings vary in it.
    let client = info
        .split(';')
        .find_map(|part| strip_prefix_ignore_case(part.trim(), "client="))
        .unwrap_or(info);
    let starts = |prefix: &str| strip_prefix_ignore_case(client, prefix).is_some();
    let contains = |needle: &str| {
        client
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    let protocol = if starts("webservices") {
        MailProtocol::Ews
    } else if starts("rest") {
        MailProtocol::Rest
    } else if starts("owa") {
        MailProtocol::Owa
    } else if starts("msexchangerpc") || contains("mapi") {
        MailProtocol::Mapi
    } else if contains("activesync") || starts("airsync") {
        MailProtocol::ActiveSync
    } else if starts("imap") {
        MailProtocol::Imap
    } else if starts("pop") {
        MailProtocol::Pop
    } else if client.is_empty() {
        return None;
    } else {
        MailProtocol::Other
    };
    Some(protocol)
}

/// `text` without `prefix`, compared without regard to ASCII case.
fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.as_bytes().get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix.as_bytes()) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

fn item_ref(item: &ItemEntry) -> MailItemRef {
    MailItemRef {
        internet_message_id: string(&item.internet_message_id).or_else(|| string(&item.id)),
        size_bytes: item.size_in_bytes.as_ref().and_then(|s| s.as_count()),
    }
}

fn folder_access(folder: &FolderEntry, unreadable: &mut Vec<String>) -> FolderAccess {
    let items = match &folder.folder_items {
        Some(list) => {
            if list.has_unreadable() {
                push_unique(unreadable, "Folders.FolderItems");
            }
            list.values().map(item_ref).collect()
        }
        None => Vec::new(),
    };
    FolderAccess {
        id: string(&folder.id),
        path: string(&folder.path),
        items,
    }
}

fn push_unique(list: &mut Vec<String>, name: &str) {
    if !list.iter().any(|n| n == name) {
        list.push(name.to_owned());
    }
}

fn mailbox_access(
    rec: &JsonRecord<'_>,
    outer: Option<&JsonRecord<'_>>,
    operation: String,
) -> MailboxAccess {
    let mut unreadable = Vec::new();
    let context = rec.app_access_context.as_ref().and_then(Nested::value);
    if matches!(rec.app_access_context, Some(Nested::Unreadable)) {
        unreadable.push("AppAccessContext".to_owned());
    }

    // Access type and throttling from OperationProperties.
    let mut access_type = None;
    let mut throttled = false;
    if let Some(props) = &rec.operation_properties {
        if props.has_unreadable() {
            push_unique(&mut unreadable, "OperationProperties");
        }
        for p in props.values() {
            if p.is("MailAccessType") {
                access_type = match p.current_text() {
                    Some(v) if v.eq_ignore_ascii_case("bind") => Some(MailAccessType::Bind),
                    Some(v) if v.eq_ignore_ascii_case("sync") => Some(MailAccessType::Sync),
                    _ => None,
                };
            } else if p.is("IsThrottled") {
                throttled = p
                    .current_text()
                    .and_then(|v| crate::field_values::parse_bool(&v))
                    .unwrap_or(false);
            }
        }
    }

    let mut folders = Vec::new();
    match &rec.folders {
        Some(List::Items(list)) => {
            for f in list {
                match f {
                    Element::Value(folder) => folders.push(folder_access(folder, &mut unreadable)),
                    Element::Unreadable => push_unique(&mut unreadable, "Folders"),
                }
            }
        }
        Some(List::Unreadable) => push_unique(&mut unreadable, "Folders"),
        _ => {}
    }
    // Single-item operations (ExchangeItem) and item groups.
    if let Some(Nested::Value(item)) = &rec.item {
        let parent = item.parent_folder.as_ref().and_then(Nested::value);
        folders.push(FolderAccess {
            id: parent.and_then(|p| string(&p.id)),
            path: parent.and_then(|p| string(&p.path)),
            items: vec![item_ref(item)],
        });
    }
    if let Some(items) = &rec.affected_items {
        let refs: Vec<MailItemRef> = items.values().map(item_ref).collect();
        if !refs.is_empty() {
            folders.push(FolderAccess {
                id: None,
                path: None,
                items: refs,
            });
        }
    }

    let item_count: u64 = folders.iter().map(|f| f.items.len() as u64).sum();
    let bytes: u64 = folders
        .iter()
        .flat_map(|f| f.items.iter())
        .filter_map(|i| i.size_bytes)
        .sum();
    let operation_count = match rec.operation_count.as_ref() {
        Some(v) if v.is_complex() => {
            unreadable.push("OperationCount".to_owned());
            item_count.max(1)
        }
        Some(v) => v.as_count().unwrap_or(item_count.max(1)),
        None => item_count.max(1),
    };

    let app_id = string(&rec.app_id);
    let client_app_id = string(&rec.client_app_id)
        .or_else(|| context.and_then(|c| string(&c.client_app_id)))
        .or_else(|| outer.and_then(|o| string(&o.oauth_app_id)));
    let name = outer.and_then(|o| string(&o.app_display_name));

    let address_field = text(&rec.client_ip_address)
        .or_else(|| text(&rec.client_ip))
        .or_else(|| outer.and_then(|o| text(&o.client_ip)));
    let (client, client_host) = match address_field.as_deref().map(parse_client_address) {
        Some(ParsedAddress::Ip(addr)) => (Some(addr), None),
        Some(ParsedAddress::Host(h)) => (None, Some(h)),
        _ => (None, None),
    };

    let client_info = string(&rec.client_info_string);
    let protocol = client_info
        .as_deref()
        .and_then(protocol_from_client_info)
        .or_else(|| {
            (app_id.as_deref() == Some(MICROSOFT_GRAPH_APP_ID)).then_some(MailProtocol::Rest)
        });

    let logon_type = rec
        .logon_type
        .as_ref()
        .or(rec.internal_logon_type.as_ref())
        .and_then(|v| match v.as_i64() {
            Some(code) => Some(LogonType::from_code(code)),
            None => v.text().map(|t| LogonType::from_name(&t)),
        });

    MailboxAccess {
        operation,
        actor: ConnectorIdentity {
            app_id,
            client_app_id,
            service_principal_id: None,
            name,
            service_account: None,
        },
        user_id: string(&rec.user_id),
        user_type: rec.user_type.as_ref().and_then(user_type_code),
        client,
        client_host,
        client_info,
        protocol,
        access_type,
        operation_count,
        mailbox_upn: string(&rec.mailbox_owner_upn),
        mailbox_guid: string(&rec.mailbox_guid),
        folders,
        bytes,
        logon_type,
        session_id: string(&rec.session_id),
        token_id: context
            .and_then(|c| string(&c.unique_token_id))
            .or_else(|| string(&rec.unique_token_id)),
        aad_session_id: context
            .and_then(|c| string(&c.aad_session_id))
            .or_else(|| string(&rec.aad_session_id)),
        throttled,
        result: string(&rec.result_status),
        unreadable_fields: unreadable,
    }
}

/// `UserType` as a code; Sentinel writes the name.
fn user_type_code(value: &Loose<'_>) -> Option<i64> {
    if let Some(n) = value.as_i64() {
        return Some(n);
    }
    let code = match value.text()?.to_ascii_lowercase().as_str() {
        "regular" => 0,
        "reserved" => 1,
        "admin" => 2,
        "dcadmin" => 3,
        "system" => 4,
        "application" => 5,
        "serviceprincipal" => 6,
        "customPolicy" => 7,
        "systempolicy" => 8,
        _ => return None,
    };
    Some(code)
}

fn parameters(rec: &JsonRecord<'_>) -> Vec<Parameter> {
    let lists = [&rec.parameters, &rec.modified_properties];
    lists
        .into_iter()
        .flatten()
        .flat_map(|l| l.values())
        .filter_map(|p| {
            Some(Parameter {
                name: string(&p.name)?,
                value: p.current_value().unwrap_or_default(),
            })
        })
        .collect()
}

fn target_text(rec: &JsonRecord<'_>) -> Option<String> {
    string(&rec.object_id).or_else(|| {
        rec.target
            .as_ref()?
            .values()
            .find_map(|t| string(&t.display_name).or_else(|| string(&t.id)))
    })
}

fn admin_change(
    rec: &JsonRecord<'_>,
    outer: Option<&JsonRecord<'_>>,
    category: AdminChangeCategory,
    operation: String,
) -> AdminChange {
    let params = parameters(rec);
    let target = params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case("Identity"))
        .map(|p| p.value.clone())
        .or_else(|| target_text(rec));
    let app = if category == AdminChangeCategory::Consent
        || category == AdminChangeCategory::Application
    {
        let app = ConnectorIdentity {
            app_id: string(&rec.app_id).or_else(|| {
                params
                    .iter()
                    .find(|p| p.name.eq_ignore_ascii_case("ServicePrincipal.AppId"))
                    .map(|p| p.value.trim_matches('"').to_owned())
                    .filter(|v| !v.is_empty())
            }),
            name: outer
                .and_then(|o| string(&o.app_display_name))
                .filter(|_| false),
            ..Default::default()
        };
        (!app.is_empty()).then_some(app)
    } else {
        None
    };
    AdminChange {
        category,
        operation,
        actor: string(&rec.user_id),
        actor_ip: text(&rec.client_ip)
            .or_else(|| text(&rec.actor_ip_address))
            .or_else(|| outer.and_then(|o| text(&o.client_ip)))
            .and_then(|t| parse_ip(&t)),
        target,
        app,
        parameters: params,
        result: string(&rec.result_status),
    }
}

fn credential_change(rec: &JsonRecord<'_>, operation: String) -> CredentialChange {
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut key_types = Vec::new();
    if let Some(list) = &rec.modified_properties {
        for p in list.values() {
            if p.is("KeyDescription") {
                let old = string(&p.old_value);
                let new = string(&p.new_value);
                let (a, r) = key_id_changes(old.as_deref(), new.as_deref());
                added.extend(a);
                removed.extend(r);
                for t in [old, new].iter().flatten() {
                    for kt in crate::record_helpers::key_description_values(t, "KeyType") {
                        if !key_types.contains(&kt) {
                            key_types.push(kt);
                        }
                    }
                }
            } else if p.is("KeyType") {
                if let Some(v) = p.current_value() {
                    let v = v.trim_matches('"').to_owned();
                    if !v.is_empty() && !key_types.contains(&v) {
                        key_types.push(v);
                    }
                }
            }
        }
    }
    // Target: the application / service principal, from Target entries.
    let mut target = ConnectorIdentity::default();
    if let Some(list) = &rec.target {
        for t in list.values() {
            let Some(id) = string(&t.id) else { continue };
            let looks_like_guid = id.len() == 36 && id.matches('-').count() == 4;
            if looks_like_guid && target.service_principal_id.is_none() {
                target.service_principal_id = Some(id);
            } else if !looks_like_guid && target.name.is_none() {
                target.name = Some(id);
            }
        }
    }
    if let Some(object) = string(&rec.object_id) {
        target.name = Some(object);
    }
    target.app_id = string(&rec.app_id);
    CredentialChange {
        operation,
        target,
        key_ids_added: added,
        key_ids_removed: removed,
        key_types,
        actor: string(&rec.user_id),
        actor_ip: text(&rec.client_ip)
            .or_else(|| text(&rec.actor_ip_address))
            .and_then(|t| parse_ip(&t)),
        result: string(&rec.result_status),
    }
}

fn user_sign_in(rec: &JsonRecord<'_>, op: &str) -> SignIn {
    let client = text(&rec.actor_ip_address)
        .or_else(|| text(&rec.client_ip))
        .and_then(|t| match parse_client_address(&t) {
            ParsedAddress::Ip(a) => Some(a),
            _ => None,
        });
    let user_agent = rec.extended_properties.as_ref().and_then(|l| {
        l.values()
            .find(|p| p.is("UserAgent"))
            .and_then(|p| p.current_value())
    });
    let failed = op == "userloginfailed";
    SignIn {
        category: SignInCategory::User,
        actor: ConnectorIdentity {
            app_id: string(&rec.application_id),
            ..Default::default()
        },
        user_principal_name: string(&rec.user_id),
        client,
        country: None,
        credential_type: None,
        credential_key_id: None,
        credential_thumbprint: None,
        resource_id: None,
        resource_name: None,
        token_id: None,
        correlation_id: None,
        user_agent,
        error_code: if failed { 1 } else { 0 },
        success: !failed,
    }
}
