//! Parsing of the scalar values real logs carry: timestamps in five spellings, client addresses in
//! ten, numbers and booleans that drift between JSON types and strings.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use mailsentry_events::ClientAddress;
use std::net::IpAddr;

/// Parses a timestamp as Microsoft's logs write it.
///
/// Accepts ISO 8601 with `T` or a space, any fraction length (7- and 9-digit fractions are
/// common), `Z`, `+hh:mm`, `+hhmm` or no offset (which means UTC in every Microsoft log), and
/// the US format of the Purview CSV export (`9/20/2023 4:05:03 AM`). Returns `None` for anything
/// else, including out-of-range dates.
pub fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    let s = raw.trim();
    let b = s.as_bytes();
    if b.len() >= 19 && b[4] == b'-' && b[7] == b'-' {
        return parse_iso_timestamp(b);
    }
    if b.contains(&b'/') {
        return parse_us_timestamp(s);
    }
    None
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() {
        return None;
    }
    let mut n: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u32::from(c - b'0'))?;
    }
    Some(n)
}

fn parse_iso_timestamp(b: &[u8]) -> Option<DateTime<Utc>> {
    if !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])? as i32;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    let mut rest = &b[19..];
    let mut nanos: u32 = 0;
    if let Some((&b'.', frac)) = rest.split_first() {
        let len = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        for (i, &c) in frac[..len].iter().enumerate() {
            if i < 9 {
                nanos = nanos * 10 + u32::from(c - b'0');
            }
        }
        for _ in len..9 {
            nanos *= 10;
        }
        rest = &frac[len..];
    }
    let offset_seconds: i64 = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (h, m) = match tail {
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?)
                }
                [h1, h2] => (digits(&[*h1, *h2])?, 0),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let total = i64::from(h * 3600 + m * 60);
            if *sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return None,
    };
    // Leap second 60 is folded into 59.999… so it still sorts correctly.
    let (second, nanos) = if second == 60 {
        (59, 999_999_999)
    } else {
        (second, nanos)
    };
    let naive =
        NaiveDate::from_ymd_opt(year, month, day)?.and_hms_nano_opt(hour, minute, second, nanos)?;
    let utc = Utc.from_utc_datetime(&naive);
    Some(utc - chrono::Duration::seconds(offset_seconds))
}

/// `9/20/2023 4:05:03 AM` (Purview export), also `9/20/2023 16:05:03` and without seconds.
fn parse_us_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let mut parts = s.split_whitespace();
    let date = parts.next()?;
    let time = parts.next().unwrap_or("0:00:00");
    let meridiem = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let mut d = date.split('/');
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let year: i32 = d.next()?.parse().ok()?;
    if d.next().is_some() {
        return None;
    }
    let mut t = time.split(':');
    let mut hour: u32 = t.next()?.parse().ok()?;
    let minute: u32 = t.next()?.parse().ok()?;
    let (second, nanos) = match t.next() {
        Some(sec) => match sec.split_once('.') {
            Some((whole, frac)) => {
                let mut n: u32 = 0;
                let mut len = 0;
                for c in frac.bytes().take(9) {
                    if !c.is_ascii_digit() {
                        return None;
                    }
                    n = n * 10 + u32::from(c - b'0');
                    len += 1;
                }
                (whole.parse().ok()?, n * 10u32.pow(9 - len))
            }
            None => (sec.parse().ok()?, 0),
        },
        None => (0, 0),
    };
    match meridiem {
        Some(m) if m.eq_ignore_ascii_case("AM") => {
            if hour == 0 || hour > 12 {
                return None;
            }
            if hour == 12 {
                hour = 0;
            }
        }
        Some(m) if m.eq_ignore_ascii_case("PM") => {
            if hour == 0 || hour > 12 {
                return None;
            }
            if hour != 12 {
                hour += 12;
            }
        }
        Some(_) => return None,
        None => {}
    }
    let naive =
        NaiveDate::from_ymd_opt(year, month, day)?.and_hms_nano_opt(hour, minute, second, nanos)?;
    Some(Utc.from_utc_datetime(&naive))
}

/// What a logged client address field turned out to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedAddress {
    /// An IP, with a port when one was attached.
    Ip(ClientAddress),
    /// A host name (not resolved: resolution would make decoding depend on the network).
    Host(String),
    /// Empty, a placeholder (`<null>`, `<IP Address>`, `-`) or the unspecified address.
    Missing,
}

/// Parses a client address as the logs write it: `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`,
/// `[1.2.3.4]`, `::ffff:1.2.3.4` (stored as IPv4), `fe80::1%12` (zone dropped), `localhost`,
/// host names, and the placeholders `""`, `<null>`, `-`, `0.0.0.0`, `::`.
pub fn parse_client_address(raw: &str) -> ParsedAddress {
    let s = raw.trim();
    if s.is_empty() || s == "-" || (s.starts_with('<') && s.ends_with('>')) {
        return ParsedAddress::Missing;
    }
    if s.eq_ignore_ascii_case("null") || s.eq_ignore_ascii_case("none") {
        return ParsedAddress::Missing;
    }
    if s.eq_ignore_ascii_case("localhost") {
        return ip_only(IpAddr::from([127, 0, 0, 1]), None);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return ip_only(ip, None);
    }
    // [v6]:port, [v6], [v4]
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((inside, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse::<u16>().ok());
            if let Some(ip) = parse_ip_with_zone(inside) {
                return ip_only(ip, port);
            }
            return ParsedAddress::Missing;
        }
    }
    // v4:port (exactly one colon; a v6 address has several)
    if let Some((host, port)) = s.rsplit_once(':') {
        if !host.contains(':') {
            if let (Ok(ip), Ok(port)) = (host.parse::<IpAddr>(), port.parse::<u16>()) {
                return ip_only(ip, Some(port));
            }
        }
    }
    if let Some(ip) = parse_ip_with_zone(s) {
        return ip_only(ip, None);
    }
    if is_host_name(s) {
        return ParsedAddress::Host(s.to_ascii_lowercase());
    }
    ParsedAddress::Missing
}

fn parse_ip_with_zone(s: &str) -> Option<IpAddr> {
    let no_zone = s.split_once('%').map_or(s, |(ip, _)| ip);
    no_zone.parse::<IpAddr>().ok()
}

fn ip_only(ip: IpAddr, port: Option<u16>) -> ParsedAddress {
    let ip = canonical_ip(ip);
    if ip.is_unspecified() {
        return ParsedAddress::Missing;
    }
    ParsedAddress::Ip(ClientAddress { ip, port })
}

/// IPv4-mapped IPv6 addresses become plain IPv4 so one client has one key.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.bytes().any(|c| c.is_ascii_alphabetic())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'_')
}

/// Parses the IP part only (ports and hosts dropped), for fields such as `actor_ip`.
pub fn parse_ip(raw: &str) -> Option<IpAddr> {
    match parse_client_address(raw) {
        ParsedAddress::Ip(addr) => Some(addr.ip),
        _ => None,
    }
}

/// Parses a boolean as logged: `true`/`false` in any case, `1`/`0`, `yes`/`no`.
pub fn parse_bool(raw: &str) -> Option<bool> {
    let s = raw.trim();
    if s.eq_ignore_ascii_case("true") || s == "1" || s.eq_ignore_ascii_case("yes") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") || s == "0" || s.eq_ignore_ascii_case("no") {
        Some(false)
    } else {
        None
    }
}

/// Parses a non-negative count that may be logged as `"50"`, `50` or `50.0`.
pub fn parse_count(raw: &str) -> Option<u64> {
    let s = raw.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let f = s.parse::<f64>().ok()?;
    float_to_count(f)
}

/// Converts a float count (`SizeInBytes` is sometimes a float) to an integer when it is a
/// finite, non-negative number.
pub fn float_to_count(f: f64) -> Option<u64> {
    if (0.0..1.8e19).contains(&f) {
        Some(f.round() as u64)
    } else {
        None
    }
}

/// Trims a string and drops it when it is empty or a placeholder (`<null>`, `null`, `-`).
pub fn clean_text(raw: &str) -> Option<&str> {
    // Whitespace and NUL are all below `!` in ASCII or start with a byte of 0x80 and above:
    // text that begins and ends with visible ASCII needs no trimming (almost every field).
    let visible = |b: &u8| (b'!'..0x80).contains(b);
    let s = if raw.as_bytes().first().is_some_and(visible)
        && raw.as_bytes().last().is_some_and(visible)
    {
        raw
    } else {
        raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{0}')
    };
    if s.is_empty()
        || s == "-"
        || s.eq_ignore_ascii_case("<null>")
        || s.eq_ignore_ascii_case("null")
    {
        None
    } else {
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ts(s: &str) -> String {
        parse_timestamp(s)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .unwrap_or_else(|| "none".into())
    }

    #[test]
    fn timestamps_in_every_spelling_seen() {
        assert_eq!(ts("2023-09-15T18:16:53"), "2023-09-15T18:16:53.000000000Z");
        assert_eq!(
            ts("2021-08-02T13:32:07.0000000Z"),
            "2021-08-02T13:32:07.000000000Z"
        );
        assert_eq!(
            ts("2023-07-26 22:58:30.983201900"),
            "2023-07-26T22:58:30.983201900Z"
        );
        assert_eq!(
            ts("2025-01-15T09:30:20.1234567Z"),
            "2025-01-15T09:30:20.123456700Z"
        );
        assert_eq!(
            ts("2023-09-15T18:16:53+00:00"),
            "2023-09-15T18:16:53.000000000Z"
        );
        assert_eq!(
            ts("2023-09-15T20:16:53+02:00"),
            "2023-09-15T18:16:53.000000000Z"
        );
        assert_eq!(
            ts("2023-09-15T13:16:53-0500"),
            "2023-09-15T18:16:53.000000000Z"
        );
        assert_eq!(ts("9/20/2023 4:05:03 AM"), "2023-09-20T04:05:03.000000000Z");
        assert_eq!(
            ts("9/20/2023 12:05:03 AM"),
            "2023-09-20T00:05:03.000000000Z"
        );
        assert_eq!(
            ts("9/20/2023 12:05:03 PM"),
            "2023-09-20T12:05:03.000000000Z"
        );
        assert_eq!(
            ts("12/31/2023 11:59:59 PM"),
            "2023-12-31T23:59:59.000000000Z"
        );
        assert_eq!(
            ts("2017-06-28T00:01:37.052Z"),
            "2017-06-28T00:01:37.052000000Z"
        );
        assert_eq!(ts("2015-06-08 04:19:25"), "2015-06-08T04:19:25.000000000Z");
    }

    #[test]
    fn bad_timestamps_are_refused() {
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-02-30T00:00:00Z",
            "2023-09-15T18:16:53.Z",
            "2023-09-15T18:16:53+25:00",
            "2023-09-15X18:16:53",
            "13/40/2023 4:05:03 AM",
            "9/20/2023 13:05:03 PM",
            "9/20/2023 4:05:03 XM",
        ] {
            assert_eq!(ts(bad), "none", "{bad}");
        }
    }

    fn ip(s: &str) -> ParsedAddress {
        parse_client_address(s)
    }

    #[test]
    fn client_addresses_in_every_spelling_seen() {
        let v4 = IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4));
        let a = |port| ParsedAddress::Ip(ClientAddress { ip: v4, port });
        assert_eq!(ip("1.2.3.4"), a(None));
        assert_eq!(ip(" 1.2.3.4 "), a(None));
        assert_eq!(ip("1.2.3.4:5678"), a(Some(5678)));
        assert_eq!(ip("[1.2.3.4]"), a(None));
        assert_eq!(ip("::ffff:1.2.3.4"), a(None));
        assert_eq!(ip("[::ffff:1.2.3.4]:443"), a(Some(443)));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            ip("[2001:db8::1]:443"),
            ParsedAddress::Ip(ClientAddress {
                ip: v6,
                port: Some(443)
            })
        );
        assert_eq!(
            ip("2001:db8::1"),
            ParsedAddress::Ip(ClientAddress { ip: v6, port: None })
        );
        let link: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(
            ip("fe80::1%12"),
            ParsedAddress::Ip(ClientAddress {
                ip: link,
                port: None
            })
        );
        assert_eq!(
            ip("localhost"),
            ParsedAddress::Ip(ClientAddress {
                ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: None
            })
        );
        assert_eq!(
            ip("::1"),
            ParsedAddress::Ip(ClientAddress {
                ip: "::1".parse().unwrap(),
                port: None
            })
        );
        assert_eq!(
            ip("mail.Contoso.com"),
            ParsedAddress::Host("mail.contoso.com".into())
        );
        for missing in [
            "",
            "<null>",
            "<IP Address>",
            "-",
            "0.0.0.0",
            "::",
            "null",
            "[garbage]",
        ] {
            assert_eq!(ip(missing), ParsedAddress::Missing, "{missing:?}");
        }
    }

    #[test]
    fn drifting_scalars() {
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_count("50"), Some(50));
        assert_eq!(parse_count("12.0"), Some(12));
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("NaN"), None);
        assert_eq!(
            clean_text("AB1CD23EF4567 (15.20.4200.000)\r\n"),
            Some("AB1CD23EF4567 (15.20.4200.000)")
        );
        assert_eq!(clean_text("<null>"), None);
    }
}
