//! Helpers shared by the record mappers: event time from candidate fields, operation-name
//! normalisation, credential key descriptions.

use crate::decoder::{RecordError, RejectClass};
use crate::field_values::parse_timestamp;
use crate::loose_json::Loose;
use chrono::{DateTime, Utc};

/// The event time from the first candidate field that is present: `MissingTime` when none is,
/// `BadTime` (naming the field's value) when the first present one does not parse.
pub fn event_time(candidates: &[(&str, Option<&Loose<'_>>)]) -> Result<DateTime<Utc>, RecordError> {
    for (name, value) in candidates {
        let Some(text) = value.and_then(Loose::text) else {
            continue;
        };
        return parse_timestamp(&text).ok_or_else(|| {
            RecordError::new(
                RejectClass::BadTime,
                format!("{name} {:?} is not a timestamp", excerpt(&text, 40)),
            )
        });
    }
    let names: Vec<&str> = candidates.iter().map(|(n, _)| *n).collect();
    Err(RecordError::new(
        RejectClass::MissingTime,
        format!("no time field ({})", names.join(", ")),
    ))
}

/// At most `max` characters of `text`, for error messages.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// True for an operation name that is one ASCII word (`MailItemsAccessed`, `Add-MailboxPermission`),
/// as nearly every one is: [`normalize_operation`] only lower-cases it.
pub fn is_one_ascii_word(op: &str) -> bool {
    op.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Lower-cases an operation name and folds the spellings Microsoft uses for the same operation:
/// a trailing period, en/em dashes, repeated or trailing spaces.
pub fn normalize_operation(op: &str) -> String {
    if is_one_ascii_word(op) {
        return op.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(op.len());
    let mut last_space = true;
    for c in op.chars() {
        let c = match c {
            '\u{2013}' | '\u{2014}' => '-',
            c if c.is_whitespace() => ' ',
            c => c,
        };
        if c == ' ' {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.extend(c.to_lowercase());
            last_space = false;
        }
    }
    while out.ends_with(' ') || out.ends_with('.') {
        out.pop();
    }
    out
}

/// The values of every `Key=value` occurrence in a key description
/// (`[KeyIdentifier=59eaeebc-…,KeyType=Password,KeyUsage=Verify,DisplayName=…]`).
pub fn key_description_values(text: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find(key) {
        let after = &rest[pos + key.len()..];
        let boundary_ok = pos == 0 || !rest.as_bytes()[pos - 1].is_ascii_alphanumeric();
        if boundary_ok {
            if let Some(value) = after.strip_prefix('=') {
                let end = value
                    .find([',', ']', '"', '\\', ';'])
                    .unwrap_or(value.len());
                let v = value[..end].trim();
                if !v.is_empty() && !out.iter().any(|x| x == v) {
                    out.push(v.to_owned());
                }
            }
        }
        rest = after;
    }
    out
}

/// Key ids added and removed between an old and a new key description.
pub fn key_id_changes(old: Option<&str>, new: Option<&str>) -> (Vec<String>, Vec<String>) {
    let old_ids = old
        .map(|t| key_description_values(t, "KeyIdentifier"))
        .unwrap_or_default();
    let new_ids = new
        .map(|t| key_description_values(t, "KeyIdentifier"))
        .unwrap_or_default();
    let added = new_ids
        .iter()
        .filter(|k| !old_ids.contains(k))
        .cloned()
        .collect();
    let removed = old_ids
        .iter()
        .filter(|k| !new_ids.contains(k))
        .cloned()
        .collect();
    (added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_spellings_fold() {
        assert_eq!(
            normalize_operation("Update application \u{2013} Certificates and secrets management "),
            "update application - certificates and secrets management"
        );
        assert_eq!(
            normalize_operation("Add service principal credentials."),
            "add service principal credentials"
        );
        assert_eq!(
            normalize_operation("MailItemsAccessed"),
            "mailitemsaccessed"
        );
    }

    #[test]
    fn key_rotation_is_read_from_key_descriptions() {
        let old = r#"["[KeyIdentifier=aaaa-1,KeyType=AsymmetricX509Cert,KeyUsage=Verify,DisplayName=CN=old]"]"#;
        let new = r#"["[KeyIdentifier=aaaa-1,KeyType=AsymmetricX509Cert,KeyUsage=Verify,DisplayName=CN=old]","[KeyIdentifier=bbbb-2,KeyType=AsymmetricX509Cert,KeyUsage=Verify,DisplayName=CN=new]"]"#;
        assert_eq!(
            key_id_changes(Some(old), Some(new)),
            (vec!["bbbb-2".to_string()], vec![])
        );
        assert_eq!(
            key_id_changes(Some(new), Some(old)),
            (vec![], vec!["bbbb-2".to_string()])
        );
        assert_eq!(
            key_description_values(new, "KeyType"),
            vec!["AsymmetricX509Cert".to_string()]
        );
    }

    #[test]
    fn time_candidates_report_what_was_wrong() {
        let good = Loose::Str("2021-08-02T13:32:07Z".into());
        let bad = Loose::Str("not a time".into());
        assert!(event_time(&[("CreationTime", None), ("TimeGenerated", Some(&good))]).is_ok());
        let e = event_time(&[("CreationTime", Some(&bad))]).unwrap_err();
        assert_eq!(e.class, RejectClass::BadTime);
        assert!(e.detail.contains("CreationTime"));
        let e = event_time(&[("CreationTime", None)]).unwrap_err();
        assert_eq!(e.class, RejectClass::MissingTime);
    }
}
