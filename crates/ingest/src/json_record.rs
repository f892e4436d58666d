//! One tolerant, borrowed view of every JSON record shape mailsentry reads.
//!
//! The Management Activity API, Sentinel `OfficeActivity`, Defender `CloudAppEvents`, Entra
//! diagnostic exports, Sentinel `AuditLogs`/`*SignInLogs` rows, Graph activity logs and
//! Panther-lowercased copies of all of them share most of their field names up to letter case.
//! A record is parsed once into [`JsonRecord`]; [`crate::json_decoder`] then picks the shape
//! from the fields present. Entra's `properties` object uses the same key space and is parsed
//! into the same type.

use crate::loose_json::{
    borrowed_embedded_parse, case_insensitive_record, EmbeddedParse, List, Loose, Nested,
};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// A nested record (`properties`, `AppAccessContext`, `RawEventData`, Panther's `log`).
pub type Sub<'a> = Nested<SubRecord<'a>>;

/// A nested record, built on the heap where it is read ([`JsonRecord::deserialize_boxed`]).
#[derive(Debug)]
pub struct SubRecord<'a>(pub Box<JsonRecord<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for SubRecord<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        JsonRecord::deserialize_boxed(d).map(SubRecord)
    }
}

impl<'de> crate::strict_json::StrictRecord<'de> for SubRecord<'de> {
    fn read_record(
        de: &mut crate::strict_json::StrictJson<'de, '_>,
    ) -> Result<Self, crate::strict_json::Refused> {
        JsonRecord::from_strict(de).map(SubRecord)
    }
}

case_insensitive_record! {
    /// The union of the fields mailsentry uses, across every JSON shape.
    pub struct JsonRecord<'a> {
        "id" => id: Loose<'a>,
        "officeid" | "sourcerecordid" => office_id: Loose<'a>,
        "reportid" => report_id: Loose<'a>,
        "creationtime" => creation_time: Loose<'a>,
        "timegenerated" => time_generated: Loose<'a>,
        "timestamp" => timestamp: Loose<'a>,
        "time" => time: Loose<'a>,
        "createddatetime" => created_date_time: Loose<'a>,
        "activitydatetime" => activity_date_time: Loose<'a>,
        "recordtype" => record_type: Loose<'a>,
        "operation" => operation: Loose<'a>,
        "actiontype" => action_type: Loose<'a>,
        "operationname" => operation_name: Loose<'a>,
        "activitydisplayname" => activity_display_name: Loose<'a>,
        "organizationid" => organization_id: Loose<'a>,
        "tenantid" | "aadtenantid" => tenant_id: Loose<'a>,
        "usertype" => user_type: Loose<'a>,
        "userid" => user_id: Loose<'a>,
        "userprincipalname" => user_principal_name: Loose<'a>,
        "resultstatus" | "result" => result_status: Loose<'a>,
        "resulttype" => result_type: Loose<'a>,
        "workload" | "officeworkload" => workload: Loose<'a>,
        "clientip" | "ipaddress" => client_ip: Loose<'a>,
        "clientipaddress" | "client_ipaddress" => client_ip_address: Loose<'a>,
        "actoripaddress" => actor_ip_address: Loose<'a>,
        "calleripaddress" => caller_ip_address: Loose<'a>,
        "appid" => app_id: Loose<'a>,
        "clientappid" => client_app_id: Loose<'a>,
        "oauthappid" => oauth_app_id: Loose<'a>,
        "applicationid" => application_id: Loose<'a>,
        "serviceprincipalid" => service_principal_id: Loose<'a>,
        "serviceprincipalname" => service_principal_name: Loose<'a>,
        "appdisplayname" | "accountdisplayname" => app_display_name: Loose<'a>,
        "clientinfostring" => client_info_string: Loose<'a>,
        "useragent" | "useragent_string" => user_agent: Loose<'a>,
        "logontype" | "logon_type" => logon_type: Loose<'a>,
        "internallogontype" => internal_logon_type: Loose<'a>,
        "mailboxguid" => mailbox_guid: Loose<'a>,
        "mailboxownerupn" => mailbox_owner_upn: Loose<'a>,
        "sessionid" => session_id: Loose<'a>,
        "operationproperties" => operation_properties: List<NameValue<'a>>,
        "operationcount" => operation_count: Loose<'a>,
        "folders" => folders: List<FolderEntry<'a>>,
        "item" => item: Nested<ItemEntry<'a>>,
        "affecteditems" => affected_items: List<ItemEntry<'a>>,
        "appaccesscontext" => app_access_context: Nested<AccessContext<'a>>,
        "uniquetokenid" | "uniquetokenidentifier" => unique_token_id: Loose<'a>,
        "aadsessionid" => aad_session_id: Loose<'a>,
        "signinactivityid" => sign_in_activity_id: Loose<'a>,
        "parameters" => parameters: List<NameValue<'a>>,
        "modifiedproperties" => modified_properties: List<NameValue<'a>>,
        "extendedproperties" => extended_properties: List<NameValue<'a>>,
        "objectid" => object_id: Loose<'a>,
        "target" => target: List<ActorEntry<'a>>,
        "actor" => actor: List<ActorEntry<'a>>,
        "raweventdata" => raw_event_data: Sub<'a>,
        "log" => log: Sub<'a>,
        "auditdata" => audit_data: Sub<'a>,
        "category" => category: Loose<'a>,
        "type" => record_table: Loose<'a>,
        "properties" => properties: Sub<'a>,
        "status" => status: Sub<'a>,
        "errorcode" => error_code: Loose<'a>,
        "location" => location: Location<'a>,
        "locationdetails" => location_details: Sub<'a>,
        "countryorregion" | "countrycode" => country: Loose<'a>,
        "clientcredentialtype" => client_credential_type: Loose<'a>,
        "serviceprincipalcredentialkeyid" => credential_key_id: Loose<'a>,
        "serviceprincipalcredentialthumbprint" => credential_thumbprint: Loose<'a>,
        "resourceid" => resource_id: Loose<'a>,
        "resourceidentity" => resource_identity: Loose<'a>,
        "resourcedisplayname" => resource_display_name: Loose<'a>,
        "correlationid" => correlation_id: Loose<'a>,
        "requestmethod" => request_method: Loose<'a>,
        "requesturi" => request_uri: Loose<'a>,
        "responsestatuscode" => response_status_code: Loose<'a>,
        "responsesizebytes" => response_size_bytes: Loose<'a>,
        "targetresources" => target_resources: List<TargetResource<'a>>,
        "initiatedby" => initiated_by: Nested<InitiatedBy<'a>>,
    }
}

case_insensitive_record! {
    /// `AppAccessContext` of a mailbox access: the token behind it. Only these keys are read,
    /// so it is a small record of its own rather than a nested [`JsonRecord`].
    pub struct AccessContext<'a> {
        "clientappid" => client_app_id: Loose<'a>,
        "uniquetokenid" | "uniquetokenidentifier" => unique_token_id: Loose<'a>,
        "aadsessionid" => aad_session_id: Loose<'a>,
    }
}

impl EmbeddedParse for SubRecord<'_> {
    fn parse_embedded(text: &str) -> Option<Self> {
        let t = text.trim_start();
        if t.starts_with('{') {
            // An IoRead deserializer never borrows, so it can produce a record of any lifetime.
            let mut de = serde_json::Deserializer::from_reader(t.as_bytes());
            let record = JsonRecord::<'static>::deserialize_boxed(&mut de).ok()?;
            de.end().ok()?;
            return Some(SubRecord(record));
        }
        let json = crate::loose_json::powershell_hashtable_as_json(t)?;
        JsonRecord::<'static>::deserialize_boxed(json)
            .ok()
            .map(SubRecord)
    }

    fn parse_embedded_list(_text: &str) -> Option<Vec<Self>> {
        None
    }
}

/// Shorthand: the text of an optional loose field.
pub fn text<'r>(field: &'r Option<Loose<'_>>) -> Option<Cow<'r, str>> {
    field.as_ref().and_then(Loose::text)
}

/// Shorthand: the owned text of an optional loose field.
pub fn string(field: &Option<Loose<'_>>) -> Option<String> {
    field.as_ref().and_then(Loose::string)
}

/// Shorthand: the nested record behind an optional [`Sub`], when it was readable.
pub fn sub<'r, 'a>(field: &'r Option<Sub<'a>>) -> Option<&'r JsonRecord<'a>> {
    field.as_ref().and_then(Nested::value).map(|b| &*b.0)
}

case_insensitive_record! {
    /// `Name`/`Value` (or `displayName`/`oldValue`/`newValue`) pair.
    pub struct NameValue<'a> {
        "name" | "displayname" => name: Loose<'a>,
        "value" => value: Loose<'a>,
        "newvalue" => new_value: Loose<'a>,
        "oldvalue" => old_value: Loose<'a>,
    }
}

impl NameValue<'_> {
    /// True when the name equals `name` (case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name
            .as_ref()
            .and_then(Loose::text)
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    }

    /// The value, or the new value for modified properties.
    pub fn current_value(&self) -> Option<String> {
        self.current_text().map(Cow::into_owned)
    }

    /// [`NameValue::current_value`], borrowed.
    pub fn current_text(&self) -> Option<Cow<'_, str>> {
        self.value
            .as_ref()
            .or(self.new_value.as_ref())
            .and_then(Loose::text)
    }
}

case_insensitive_record! {
    /// A folder of a MailItemsAccessed record: `Id`, `Path` and the items read (`FolderItems`).
    pub struct FolderEntry<'a> {
        "id" => id: Loose<'a>,
        "path" => path: Loose<'a>,
        "folderitems" => folder_items: List<ItemEntry<'a>>,
    }
}

case_insensitive_record! {
    /// An item (MailItemsAccessed folder item, ExchangeItem `Item`, `AffectedItems` entry): `Id`,
    /// `InternetMessageId`, the size (`SizeInBytes` or `Size`, sometimes a float) and the
    /// `ParentFolder` of a single item.
    pub struct ItemEntry<'a> {
        "id" => id: Loose<'a>,
        "internetmessageid" => internet_message_id: Loose<'a>,
        "sizeinbytes" | "size" => size_in_bytes: Loose<'a>,
        "parentfolder" => parent_folder: Nested<FolderEntry<'a>>,
    }
}

case_insensitive_record! {
    /// `Actor` / `Target` entry of an AAD UAL record: `ID`, `Type` (identity type) and, in
    /// Sentinel's `target`, `displayName`.
    pub struct ActorEntry<'a> {
        "id" => id: Loose<'a>,
        "type" => kind: Loose<'a>,
        "displayname" => display_name: Loose<'a>,
    }
}

case_insensitive_record! {
    /// Entra audit `targetResources` entry: object id, display name, type (`Application`,
    /// `ServicePrincipal`, `User`, ...) and the changed properties.
    pub struct TargetResource<'a> {
        "id" => id: Loose<'a>,
        "displayname" => display_name: Loose<'a>,
        "type" => kind: Loose<'a>,
        "modifiedproperties" => modified_properties: List<NameValue<'a>>,
    }
}

case_insensitive_record! {
    /// Entra audit `initiatedBy`: a user or an application.
    pub struct InitiatedBy<'a> {
        "user" => user: Nested<Principal<'a>>,
        "app" => app: Nested<Principal<'a>>,
    }
}

case_insensitive_record! {
    /// A user or app inside `initiatedBy`.
    pub struct Principal<'a> {
        "id" => id: Loose<'a>,
        "displayname" => display_name: Loose<'a>,
        "userprincipalname" => user_principal_name: Loose<'a>,
        "ipaddress" => ip_address: Loose<'a>,
        "appid" => app_id: Loose<'a>,
        "serviceprincipalid" => service_principal_id: Loose<'a>,
    }
}

borrowed_embedded_parse!(
    AccessContext,
    NameValue,
    FolderEntry,
    ItemEntry,
    ActorEntry,
    TargetResource,
    InitiatedBy,
    Principal
);

/// Entra's `location`: a country code string (Panther, Sentinel) or an object with
/// `countryOrRegion` (diagnostic export).
#[derive(Debug)]
pub enum Location<'a> {
    /// A bare country code.
    Country(Cow<'a, str>),
    /// The detail object.
    Detail(Box<JsonRecord<'a>>),
    /// Anything else.
    Unreadable,
}

impl Location<'_> {
    /// The two-letter country, when present.
    pub fn country(&self) -> Option<String> {
        match self {
            Location::Country(c) => crate::field_values::clean_text(c).map(str::to_owned),
            Location::Detail(d) => string(&d.country),
            Location::Unreadable => None,
        }
    }
}

struct LocationVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for LocationVisitor<'a> {
    type Value = Location<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a location")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        if v.trim_start().starts_with('{') {
            return Ok(SubRecord::parse_embedded(v)
                .map_or(Location::Unreadable, |d| Location::Detail(d.0)));
        }
        Ok(Location::Country(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.trim_start().starts_with('{') {
            return Ok(SubRecord::parse_embedded(v)
                .map_or(Location::Unreadable, |d| Location::Detail(d.0)));
        }
        Ok(Location::Country(Cow::Owned(v.to_owned())))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let d = JsonRecord::deserialize_boxed(de::value::MapAccessDeserializer::new(map))?;
        Ok(Location::Detail(d))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Location::Unreadable)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Location::Unreadable)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Location::Unreadable)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Location::Unreadable)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Location::Unreadable)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Location::Unreadable)
    }
}

impl<'de> crate::strict_json::StrictField<'de> for Location<'de> {
    fn read_value(
        de: &mut crate::strict_json::StrictJson<'de, '_>,
    ) -> Result<Self, crate::strict_json::Refused> {
        Location::deserialize(de)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Location<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LocationVisitor(std::marker::PhantomData))
    }
}
