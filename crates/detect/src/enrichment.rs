//! Where an address is: its ASN (and organisation) and country, from a MaxMind-format database
//! (GeoLite2-ASN / GeoLite2-Country / DB-IP, `.mmdb`) or from ip-location-db CSV tables
//! (`start_ip,end_ip,asn,organization` and `start_ip,end_ip,country_code`). Without a
//! database the /24 (IPv4) or /48 (IPv6) prefix stands in for the network.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// An error loading an enrichment database.
#[derive(Debug, thiserror::Error)]
pub enum EnrichmentError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a database of a known kind.
    #[error("{path}: {why}")]
    Format {
        /// File.
        path: String,
        /// What is wrong, with the line when there is one.
        why: String,
    },
}

/// What is known about an address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Place {
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// AS organisation.
    pub org: Option<String>,
    /// ISO country code.
    pub country: Option<String>,
}

#[derive(Debug, Clone)]
struct Range {
    start: u128,
    end: u128,
    asn: Option<u32>,
    org: Option<String>,
    country: Option<String>,
}

/// IP enrichment: zero or more databases, consulted in order.
#[derive(Default)]
pub struct Enrichment {
    ranges: Vec<Range>,
    mmdb: Vec<maxminddb::Reader<Vec<u8>>>,
}

impl std::fmt::Debug for Enrichment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrichment")
            .field("ranges", &self.ranges.len())
            .field("mmdb", &self.mmdb.len())
            .finish()
    }
}

fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u32::from(v4) as u128,
            None => u128::from(v6),
        },
    }
}

#[derive(serde::Deserialize)]
struct MmdbAsn<'a> {
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct MmdbCountryInner<'a> {
    iso_code: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct MmdbCountry<'a> {
    #[serde(borrow)]
    country: Option<MmdbCountryInner<'a>>,
}

impl Enrichment {
    /// No database: prefixes stand in for networks.
    pub fn none() -> Self {
        Enrichment::default()
    }

    /// True when some database is loaded.
    pub fn has_data(&self) -> bool {
        !self.ranges.is_empty() || !self.mmdb.is_empty()
    }

    /// Loads a database, recognised by content: `.mmdb` (MaxMind) or an ip-location-db CSV
    /// (ASN rows with four fields, country rows with three).
    pub fn load(&mut self, path: &Path) -> Result<(), EnrichmentError> {
        let name = path.display().to_string();
        let bytes = fs::read(path).map_err(|source| EnrichmentError::Io {
            path: name.clone(),
            source,
        })?;
        if bytes.windows(14).any(|w| w == b"\xab\xcd\xefMaxMind.com") {
            // The reader trusts the file's structure and can panic on a corrupt one: open it
            // and probe a lookup behind a panic guard, so a bad file is an error, not a crash.
            let opened = std::panic::catch_unwind(|| {
                let reader = maxminddb::Reader::from_source(bytes)?;
                let _ = reader.lookup::<MmdbAsn>(IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)));
                Ok::<_, maxminddb::MaxMindDBError>(reader)
            });
            let reader = match opened {
                Ok(Ok(reader)) => reader,
                Ok(Err(e)) => {
                    return Err(EnrichmentError::Format {
                        path: name,
                        why: format!("not a readable MaxMind database: {e}"),
                    })
                }
                Err(_) => {
                    return Err(EnrichmentError::Format {
                        path: name,
                        why: "not a readable MaxMind database: corrupt structure".into(),
                    })
                }
            };
            self.mmdb.push(reader);
            return Ok(());
        }
        let text = String::from_utf8(bytes).map_err(|e| EnrichmentError::Format {
            path: name.clone(),
            why: format!(
                "neither a MaxMind database nor UTF-8 CSV (byte {})",
                e.utf8_error().valid_up_to()
            ),
        })?;
        let mut added = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.splitn(4, ',').collect();
            let bad = |why: &str| EnrichmentError::Format {
                path: name.clone(),
                why: format!("line {}: {why}", i + 1),
            };
            if fields.len() < 3 {
                return Err(bad(
                    "expected start_ip,end_ip,asn,organization or start_ip,end_ip,country_code",
                ));
            }
            let (Ok(start), Ok(end)) = (
                fields[0].trim().parse::<IpAddr>(),
                fields[1].trim().parse::<IpAddr>(),
            ) else {
                if i == 0 {
                    continue; // a header line
                }
                return Err(bad("start or end is not an IP address"));
            };
            let (asn, org, country) = if fields.len() == 4 {
                let asn = fields[2]
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| bad("ASN is not a number"))?;
                let org = fields[3].trim().trim_matches('"').to_owned();
                (Some(asn), (!org.is_empty()).then_some(org), None)
            } else {
                let cc = fields[2].trim();
                if cc.len() != 2 {
                    return Err(bad("country code is not two letters"));
                }
                (None, None, Some(cc.to_ascii_uppercase()))
            };
            let (s, e) = (key(start), key(end));
            if s > e {
                return Err(bad("start after end"));
            }
            self.ranges.push(Range {
                start: s,
                end: e,
                asn,
                org,
                country,
            });
            added += 1;
        }
        if added == 0 {
            return Err(EnrichmentError::Format {
                path: name,
                why: "no ranges".into(),
            });
        }
        self.ranges.sort_by_key(|r| (r.start, r.end));
        Ok(())
    }

    /// What is known about `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Place {
        let mut place = Place::default();
        if !self.ranges.is_empty() {
            let k = key(ip);
            // Ranges may overlap (ASN and country tables together): scan the candidates whose
            // start is at most k, nearest first, until both facts are known.
            let upto = self.ranges.partition_point(|r| r.start <= k);
            for r in self.ranges[..upto].iter().rev().take(64) {
                if r.end < k {
                    continue;
                }
                if place.asn.is_none() && r.asn.is_some() {
                    place.asn = r.asn;
                    place.org = r.org.clone();
                }
                if place.country.is_none() && r.country.is_some() {
                    place.country = r.country.clone();
                }
                if place.asn.is_some() && place.country.is_some() {
                    break;
                }
            }
        }
        for db in &self.mmdb {
            // Guarded like loading: a database corrupt past its probed parts yields nothing
            // for the address instead of a crash.
            let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let asn = db.lookup::<MmdbAsn>(ip).ok().map(|a| {
                    (
                        a.autonomous_system_number,
                        a.autonomous_system_organization.map(str::to_owned),
                    )
                });
                let country = db
                    .lookup::<MmdbCountry>(ip)
                    .ok()
                    .and_then(|c| c.country.and_then(|c| c.iso_code).map(str::to_owned));
                (asn, country)
            }));
            let Ok((asn, country)) = found else { continue };
            if place.asn.is_none() {
                if let Some((number, org)) = asn {
                    place.asn = number;
                    place.org = org;
                }
            }
            if place.country.is_none() {
                place.country = country;
            }
        }
        place
    }
}

/// The /24 (IPv4) or /48 (IPv6) an address is in, as text (`203.0.113.0/24`).
pub fn prefix_of(ip: IpAddr) -> String {
    crate::key_text::KeyText::network(ip).as_str().to_owned()
}

/// True for addresses that never identify an outside network (private, loopback, link-local).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4 == Ipv4Addr::UNSPECIFIED
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_tables_give_asn_and_country() {
        let dir = tempfile::tempdir().unwrap();
        let asn = dir.path().join("asn.csv");
        std::fs::write(&asn, "52.28.14.0,52.28.14.255,16509,AMAZON-02\n159.89.12.0,159.89.12.255,14061,\"DIGITALOCEAN, LLC\"\n2001:db8::,2001:db8::ffff,64500,DOC-V6\n").unwrap();
        let cc = dir.path().join("country.csv");
        std::fs::write(&cc, "52.28.14.0,52.28.14.255,de\n").unwrap();
        let mut e = Enrichment::none();
        e.load(&asn).unwrap();
        e.load(&cc).unwrap();
        let p = e.lookup("52.28.14.9".parse().unwrap());
        assert_eq!(p.asn, Some(16509));
        assert_eq!(p.country.as_deref(), Some("DE"));
        assert_eq!(
            e.lookup("159.89.12.1".parse().unwrap()).org.as_deref(),
            Some("DIGITALOCEAN, LLC")
        );
        assert_eq!(e.lookup("2001:db8::5".parse().unwrap()).asn, Some(64500));
        assert_eq!(e.lookup("8.8.8.8".parse().unwrap()), Place::default());
    }

    #[test]
    fn bad_tables_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let asn = dir.path().join("asn.csv");
        std::fs::write(&asn, "1.0.0.0,1.0.0.255,13335,CF\n1.0.1.0,nope,1,X\n").unwrap();
        let err = Enrichment::none().load(&asn).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix_of("203.0.113.7".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(
            prefix_of("2001:db8:1:2::7".parse().unwrap()),
            "2001:db8:1::/48"
        );
        assert!(is_internal("10.1.2.3".parse().unwrap()));
    }
}
