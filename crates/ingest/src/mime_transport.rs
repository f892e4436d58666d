//! Raw messages (`.eml`, mbox, Maildir) → transport events, with `mail-parser`.
//!
//! Only the header block is parsed (and held in memory, bounded by the maximum record size);
//! the body is counted, not stored. From the `Received:` chain come relay hops (from host and IP,
//! by host, protocol, TLS version and cipher, time); from `Authentication-Results` the SPF, DKIM,
//! DMARC and ARC verdicts.

use crate::decoder::{Decoder, InputFormat, RawRecord, RecordError, RecordOutcome, RejectClass};
use crate::field_values::canonical_ip;
use chrono::{DateTime, TimeZone, Utc};
use mail_parser::{Address, Host, MessageParser};
use mailsentry_events::{
    AuthVerdict, Event, EventKind, RelayHop, SourceFormat, TlsVersion, Transport,
};

/// Decodes one message's header block.
#[derive(Debug, Default)]
pub struct MimeDecoder {
    mbox: bool,
}

impl MimeDecoder {
    /// A decoder for messages framed out of an mbox file.
    pub fn for_mbox() -> MimeDecoder {
        MimeDecoder { mbox: true }
    }
}

fn host_text(host: &Host<'_>) -> String {
    match host {
        Host::Name(n) => n.trim_matches(['[', ']']).to_ascii_lowercase(),
        Host::IpAddr(ip) => ip.to_string(),
    }
}

fn tls_version(v: mail_parser::TlsVersion) -> TlsVersion {
    use mail_parser::TlsVersion as T;
    match v {
        T::SSLv2 | T::SSLv3 => TlsVersion::Ssl,
        T::TLSv1_0 | T::DTLSv1_0 => TlsVersion::Tls1_0,
        T::TLSv1_1 => TlsVersion::Tls1_1,
        T::TLSv1_2 | T::DTLSv1_2 => TlsVersion::Tls1_2,
        T::TLSv1_3 | T::DTLSv1_3 => TlsVersion::Tls1_3,
    }
}

fn timestamp(ts: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(ts, 0).single()
}

fn domain_of(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    let d = domain.trim().trim_end_matches('>').to_ascii_lowercase();
    (!d.is_empty()).then_some(d)
}

fn domains(address: Option<&Address<'_>>, out: &mut Vec<String>) {
    let Some(address) = address else { return };
    for a in address.iter() {
        if let Some(d) = a.address().and_then(domain_of) {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
}

/// Parses `Authentication-Results: authserv-id; spf=pass …; dkim=fail …` into verdicts.
pub fn parse_authentication_results(value: &str, out: &mut Vec<AuthVerdict>) {
    for part in value.split(';').skip(1) {
        let part = part.trim();
        let Some((method, rest)) = part.split_once('=') else {
            continue;
        };
        let method = method.trim().to_ascii_lowercase();
        if method.is_empty()
            || !method
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        {
            continue;
        }
        let result: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if !result.is_empty() {
            out.push(AuthVerdict { method, result });
        }
    }
}

impl Decoder for MimeDecoder {
    fn format(&self) -> InputFormat {
        if self.mbox {
            InputFormat::Mbox
        } else {
            InputFormat::Eml
        }
    }

    fn decode(
        &mut self,
        raw: RawRecord<'_>,
        out: &mut Vec<Event>,
    ) -> Result<RecordOutcome, RecordError> {
        let message = MessageParser::default()
            .parse_headers(raw.bytes)
            .ok_or_else(|| {
                RecordError::new(RejectClass::BadMessage, "no RFC 5322 header fields found")
            })?;
        if message.headers().is_empty() {
            return Err(RecordError::new(
                RejectClass::BadMessage,
                "no RFC 5322 header fields found",
            ));
        }
        let mut hops = Vec::new();
        for r in message.received_all() {
            let from_ip = r.from_ip.map(canonical_ip).or(match &r.from {
                Some(Host::IpAddr(ip)) => Some(canonical_ip(*ip)),
                _ => None,
            });
            hops.push(RelayHop {
                from_host: r.from.as_ref().or(r.helo.as_ref()).map(host_text),
                from_ip,
                by_host: r.by.as_ref().map(host_text),
                protocol: r.with.map(|p| format!("{p:?}")),
                tls_version: r.tls_version.map(tls_version),
                tls_cipher: r.tls_cipher.as_ref().map(|c| c.to_string()),
                time: r.date.as_ref().and_then(|d| timestamp(d.to_timestamp())),
            });
        }
        let mut auth_results = Vec::new();
        for header in message.headers() {
            let name = header.name.as_str();
            if name.eq_ignore_ascii_case("Authentication-Results")
                || name.eq_ignore_ascii_case("ARC-Authentication-Results")
            {
                let start = header.offset_start as usize;
                let end = (header.offset_end as usize).min(raw.bytes.len());
                if start < end {
                    let value = String::from_utf8_lossy(&raw.bytes[start..end]);
                    parse_authentication_results(&value, &mut auth_results);
                }
            }
        }
        let header_time = message.date().and_then(|d| timestamp(d.to_timestamp()));
        let hop_time = hops.iter().find_map(|h| h.time);
        let (time, time_inferred) = match (header_time, hop_time) {
            (Some(t), _) => (t, false),
            (None, Some(t)) => (t, true),
            (None, None) => (DateTime::<Utc>::UNIX_EPOCH, true),
        };
        let mut recipient_domains = Vec::new();
        domains(message.to(), &mut recipient_domains);
        domains(message.cc(), &mut recipient_domains);
        let sender_domain = message
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .and_then(domain_of);
        let message_id = message.message_id().map(str::to_owned);
        let transport = Transport {
            message_id: message_id.clone(),
            sender_domain,
            recipient_domains,
            size_bytes: raw.total_len,
            hops,
            auth_results,
            time_inferred,
        };
        // Message-IDs repeat (forwards, copies in several mailboxes): hash the headers instead,
        // seeded with the position so identical copies in one mbox stay distinct.
        let id = format!(
            "m{:016x}",
            xxhash_rust::xxh3::xxh3_64_with_seed(raw.bytes, raw.offset)
        );
        out.push(Event {
            id,
            time,
            tenant_id: None,
            origin: raw.origin(SourceFormat::Mime, message_id),
            kind: EventKind::Transport(transport),
        });
        Ok(RecordOutcome::Decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_results_verdicts() {
        let mut v = Vec::new();
        parse_authentication_results(
            " mx.google.com;\r\n dkim=pass header.i=@example.com;\r\n spf=softfail (domain of transitioning) smtp.mailfrom=x@y.com; dmarc=fail (p=NONE) header.from=y.com",
            &mut v,
        );
        let pairs: Vec<(&str, &str)> = v
            .iter()
            .map(|a| (a.method.as_str(), a.result.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![("dkim", "pass"), ("spf", "softfail"), ("dmarc", "fail")]
        );
    }
}
