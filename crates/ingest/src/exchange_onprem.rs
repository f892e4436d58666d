//! On-premises Exchange logs: IIS W3C logs of the client access services and EWS protocol logs.
//! Both are header-driven: every `#Fields:` line replaces the column list for the lines after it.

use crate::decoder::{Decoder, InputFormat, RawRecord, RecordError, RecordOutcome, RejectClass};
use crate::field_values::{
    clean_text, parse_client_address, parse_count, parse_timestamp, ParsedAddress,
};
use crate::record_helpers::excerpt;
use mailsentry_events::{Event, EventKind, MailProtocol, MailboxAccess, SourceFormat};

/// Splits one CSV record (already framed) into fields with `csv-core`.
pub fn split_csv(line: &[u8], delimiter: u8, fields: &mut Vec<String>) -> Result<(), RecordError> {
    fields.clear();
    let mut reader = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    let mut output = vec![0u8; line.len() + 1];
    let mut ends = vec![0usize; line.iter().filter(|&&c| c == delimiter).count() + 2];
    let mut input = line;
    let mut out_pos = 0;
    let mut end_pos = 0;
    loop {
        let (result, read, written, ended) =
            reader.read_record(input, &mut output[out_pos..], &mut ends[end_pos..]);
        input = &input[read..];
        out_pos += written;
        end_pos += ended;
        match result {
            csv_core::ReadRecordResult::InputEmpty => {
                if input.is_empty() {
                    // Signal the end of input so the last field is closed.
                    let (r, _, _, e) =
                        reader.read_record(&[], &mut output[out_pos..], &mut ends[end_pos..]);
                    end_pos += e;
                    if matches!(
                        r,
                        csv_core::ReadRecordResult::Record | csv_core::ReadRecordResult::End
                    ) {
                        break;
                    }
                    return Err(RecordError::new(
                        RejectClass::BadRow,
                        "unterminated CSV record",
                    ));
                }
            }
            csv_core::ReadRecordResult::Record | csv_core::ReadRecordResult::End => break,
            csv_core::ReadRecordResult::OutputFull | csv_core::ReadRecordResult::OutputEndsFull => {
                return Err(RecordError::new(
                    RejectClass::BadRow,
                    "CSV record could not be split",
                ));
            }
        }
    }
    let mut start = 0;
    for &end in &ends[..end_pos] {
        let bytes = &output[start..end];
        let text = std::str::from_utf8(bytes).map_err(|e| {
            RecordError::new(
                RejectClass::InvalidUtf8,
                format!(
                    "invalid UTF-8 in field {} at byte {}",
                    fields.len() + 1,
                    e.valid_up_to()
                ),
            )
        })?;
        fields.push(text.to_owned());
        start = end;
    }
    Ok(())
}

fn utf8(bytes: &[u8]) -> Result<&str, RecordError> {
    std::str::from_utf8(bytes).map_err(|e| {
        RecordError::new(
            RejectClass::InvalidUtf8,
            format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
        )
    })
}

/// The IIS fields of Exchange's front-end site (W3SVC1) when no `#Fields:` header was seen.
const IIS_DEFAULT_FRONT_END: &[&str] = &[
    "date",
    "time",
    "s-ip",
    "cs-method",
    "cs-uri-stem",
    "cs-uri-query",
    "s-port",
    "cs-username",
    "c-ip",
    "cs(user-agent)",
    "cs(referer)",
    "sc-status",
    "sc-substatus",
    "sc-win32-status",
    "time-taken",
];
/// The back-end site (W3SVC2, port 444) logs no referer.
const IIS_DEFAULT_BACK_END: &[&str] = &[
    "date",
    "time",
    "s-ip",
    "cs-method",
    "cs-uri-stem",
    "cs-uri-query",
    "s-port",
    "cs-username",
    "c-ip",
    "cs(user-agent)",
    "sc-status",
    "sc-substatus",
    "sc-win32-status",
    "time-taken",
];

/// Decodes IIS W3C extended logs: EWS, OWA, MAPI, ActiveSync requests become mailbox access.
#[derive(Debug, Default)]
pub struct IisW3cDecoder {
    fields: Option<Vec<String>>,
    header_date: Option<String>,
    tokens: Vec<String>,
}

/// Splits a W3C line on spaces; a `<…>` placeholder containing spaces (a redaction such as
/// `<IP Address>`) stays one field.
fn w3c_tokens(line: &str, out: &mut Vec<String>) {
    out.clear();
    let mut pending: Option<String> = None;
    for tok in line.split(' ').filter(|t| !t.is_empty()) {
        if let Some(mut p) = pending.take() {
            p.push(' ');
            p.push_str(tok);
            if tok.ends_with('>') {
                out.push(p);
            } else {
                pending = Some(p);
            }
            continue;
        }
        if tok.starts_with('<') && !tok.ends_with('>') {
            pending = Some(tok.to_owned());
        } else {
            out.push(tok.to_owned());
        }
    }
    if let Some(p) = pending {
        out.push(p);
    }
}

fn protocol_for_path(path: &str) -> Option<MailProtocol> {
    let p = path.to_ascii_lowercase();
    if p.starts_with("/ews/") {
        Some(MailProtocol::Ews)
    } else if p.starts_with("/owa") {
        Some(MailProtocol::Owa)
    } else if p.starts_with("/mapi/") || p.starts_with("/rpc/") {
        Some(MailProtocol::Mapi)
    } else if p.starts_with("/microsoft-server-activesync") {
        Some(MailProtocol::ActiveSync)
    } else if p.starts_with("/api/") {
        Some(MailProtocol::Rest)
    } else {
        None
    }
}

fn w3c_text(value: &str) -> Option<String> {
    clean_text(value).map(|v| v.replace('+', " "))
}

impl Decoder for IisW3cDecoder {
    fn format(&self) -> InputFormat {
        InputFormat::IisW3c
    }

    fn decode(
        &mut self,
        raw: RawRecord<'_>,
        out: &mut Vec<Event>,
    ) -> Result<RecordOutcome, RecordError> {
        let line = utf8(raw.bytes)?.trim_end();
        if line.is_empty() {
            return Ok(RecordOutcome::Meta);
        }
        if let Some(directive) = line.strip_prefix('#') {
            if let Some(fields) = directive.strip_prefix("Fields:") {
                self.fields = Some(
                    fields
                        .split_whitespace()
                        .map(|f| f.to_ascii_lowercase())
                        .collect(),
                );
            } else if let Some(date) = directive.strip_prefix("Date:") {
                self.header_date = date.split_whitespace().next().map(str::to_owned);
            }
            return Ok(RecordOutcome::Meta);
        }
        w3c_tokens(line, &mut self.tokens);
        let names: Vec<&str> = match &self.fields {
            Some(f) => f.iter().map(String::as_str).collect(),
            None if self.tokens.len() == IIS_DEFAULT_FRONT_END.len() => {
                IIS_DEFAULT_FRONT_END.to_vec()
            }
            None if self.tokens.len() == IIS_DEFAULT_BACK_END.len() => {
                IIS_DEFAULT_BACK_END.to_vec()
            }
            None => {
                return Err(RecordError::new(
                    RejectClass::NoHeader,
                    format!(
                        "{} fields before any #Fields: line and not a default Exchange layout",
                        self.tokens.len()
                    ),
                ))
            }
        };
        if names.len() != self.tokens.len() {
            return Err(RecordError::new(
                RejectClass::BadRow,
                format!(
                    "{} fields where #Fields: names {}",
                    self.tokens.len(),
                    names.len()
                ),
            ));
        }
        let get = |name: &str| -> Option<&str> {
            names
                .iter()
                .position(|n| *n == name)
                .map(|i| self.tokens[i].as_str())
        };
        let stem = get("cs-uri-stem").unwrap_or("");
        let Some(protocol) = protocol_for_path(stem) else {
            return Ok(RecordOutcome::Skipped("iis_request_not_mailbox"));
        };
        let Some(account) = get("cs-username").and_then(clean_text) else {
            return Ok(RecordOutcome::Skipped("iis_anonymous_request"));
        };
        let date = get("date")
            .map(str::to_owned)
            .or_else(|| self.header_date.clone());
        let time = match (date, get("time")) {
            (Some(d), Some(t)) => {
                let d = d.split('T').next().unwrap_or(&d).to_owned();
                parse_timestamp(&format!("{d} {t}")).ok_or_else(|| {
                    RecordError::new(
                        RejectClass::BadTime,
                        format!("date/time {d:?} {t:?} is not a timestamp"),
                    )
                })?
            }
            _ => {
                return Err(RecordError::new(
                    RejectClass::MissingTime,
                    "no date and time fields",
                ))
            }
        };
        let forwarded = get("cs(x-forwarded-for)").and_then(clean_text);
        let (client, client_host) =
            match parse_client_address(forwarded.or(get("c-ip")).unwrap_or("")) {
                ParsedAddress::Ip(a) => (Some(a), None),
                ParsedAddress::Host(h) => (None, Some(h)),
                ParsedAddress::Missing => (None, None),
            };
        let method = get("cs-method").unwrap_or("-");
        let query = get("cs-uri-query").and_then(clean_text).unwrap_or("");
        let mailbox = query_value(query, "mailboxid").or_else(|| query_value(query, "user"));
        let access = MailboxAccess {
            client,
            client_host,
            client_info: get("cs(user-agent)").and_then(w3c_text),
            protocol: Some(protocol),
            mailbox_upn: mailbox,
            bytes: get("sc-bytes").and_then(parse_count).unwrap_or(0),
            result: get("sc-status").and_then(clean_text).map(str::to_owned),
            ..MailboxAccess::by_service_account(format!("{method} {stem}"), account)
        };
        let id = raw.positional_id();
        out.push(Event {
            id,
            time,
            tenant_id: None,
            origin: raw.origin(SourceFormat::IisW3c, None),
            kind: EventKind::MailboxAccess(access),
        });
        Ok(RecordOutcome::Decoded)
    }
}

fn query_value(query: &str, key: &str) -> Option<String> {
    query
        .split(['&', ';', '?'])
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| clean_text(v).map(str::to_owned))
}

/// Decodes Exchange EWS protocol logs (`V15\Logging\Ews`).
#[derive(Debug, Default)]
pub struct EwsLogDecoder {
    fields: Option<Vec<String>>,
    row: Vec<String>,
}

impl Decoder for EwsLogDecoder {
    fn format(&self) -> InputFormat {
        InputFormat::EwsLog
    }

    fn decode(
        &mut self,
        raw: RawRecord<'_>,
        out: &mut Vec<Event>,
    ) -> Result<RecordOutcome, RecordError> {
        if raw.bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(RecordOutcome::Meta);
        }
        if raw.bytes.starts_with(b"#") {
            let line = utf8(raw.bytes)?;
            if let Some(fields) = line.strip_prefix("#Fields:") {
                split_csv(fields.trim().as_bytes(), b',', &mut self.row)?;
                self.fields = Some(
                    self.row
                        .iter()
                        .map(|f| f.trim().to_ascii_lowercase())
                        .collect(),
                );
            }
            return Ok(RecordOutcome::Meta);
        }
        split_csv(raw.bytes, b',', &mut self.row)?;
        // Some collectors write the column names as a plain first line.
        let is_header = self
            .row
            .first()
            .is_some_and(|f| f.eq_ignore_ascii_case("DateTime"))
            && self
                .row
                .iter()
                .any(|f| f.eq_ignore_ascii_case("SoapAction"));
        if is_header {
            self.fields = Some(
                self.row
                    .iter()
                    .map(|f| f.trim().to_ascii_lowercase())
                    .collect(),
            );
            return Ok(RecordOutcome::Meta);
        }
        let Some(fields) = &self.fields else {
            return Err(RecordError::new(
                RejectClass::NoHeader,
                "EWS log row before any #Fields: line",
            ));
        };
        if fields.len() != self.row.len() {
            return Err(RecordError::new(
                RejectClass::BadRow,
                format!(
                    "{} fields where the header names {}",
                    self.row.len(),
                    fields.len()
                ),
            ));
        }
        let get = |name: &str| -> Option<&str> {
            fields
                .iter()
                .position(|n| n == name)
                .and_then(|i| clean_text(&self.row[i]))
        };
        let Some(account) = get("authenticateduser") else {
            return Ok(RecordOutcome::Skipped("ews_unauthenticated_or_internal"));
        };
        let time_text = get("datetime")
            .ok_or_else(|| RecordError::new(RejectClass::MissingTime, "no DateTime"))?;
        let time = parse_timestamp(time_text).ok_or_else(|| {
            RecordError::new(
                RejectClass::BadTime,
                format!("DateTime {:?} is not a timestamp", excerpt(time_text, 40)),
            )
        })?;
        let client = match parse_client_address(get("clientipaddress").unwrap_or("")) {
            ParsedAddress::Ip(a) => Some(a),
            _ => None,
        };
        let mailbox = get("impersonateduser")
            .or_else(|| get("actasuser"))
            .or_else(|| get("proxyasuser"))
            .unwrap_or(account);
        let record_id = get("requestid").map(str::to_owned);
        let bytes = get("responsesize")
            .and_then(parse_count)
            .or_else(|| get("requestsize").and_then(parse_count))
            .unwrap_or(0);
        let access = MailboxAccess {
            client,
            client_info: get("useragent").map(str::to_owned),
            protocol: Some(MailProtocol::Ews),
            mailbox_upn: Some(mailbox.to_owned()),
            bytes,
            result: get("httpstatus").map(str::to_owned),
            ..MailboxAccess::by_service_account(
                get("soapaction").unwrap_or("unknown").to_owned(),
                account,
            )
        };
        let id = match &record_id {
            Some(r) => r.clone(),
            None => raw.positional_id(),
        };
        out.push(Event {
            id,
            time,
            tenant_id: get("organization").map(str::to_owned),
            origin: raw.origin(SourceFormat::EwsProtocolLog, record_id),
            kind: EventKind::MailboxAccess(access),
        });
        Ok(RecordOutcome::Decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_quotes_and_doubled_quotes() {
        let mut f = Vec::new();
        split_csv(br#"a,"b,c","say ""hi""",,e"#, b',', &mut f).unwrap();
        assert_eq!(f, vec!["a", "b,c", "say \"hi\"", "", "e"]);
    }

    #[test]
    fn w3c_redaction_placeholders_stay_one_field() {
        let mut t = Vec::new();
        w3c_tokens(
            "2015-06-08 04:19:25 <IP Address> POST /EWS/Exchange.asmx",
            &mut t,
        );
        assert_eq!(
            t,
            vec![
                "2015-06-08",
                "04:19:25",
                "<IP Address>",
                "POST",
                "/EWS/Exchange.asmx"
            ]
        );
    }
}
