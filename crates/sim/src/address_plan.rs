//! Who owns which addresses: the autonomous systems the simulation draws IPs from, and the
//! IP-to-ASN and IP-to-country tables written beside the logs.
//!
//! ASN numbers and organisations are the real ones of the kind of network each plays (a cloud
//! provider, a hosting company, a national ISP); the /24s are from ranges those networks
//! announce, but which host is "the vendor" or "the attacker" is invented.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// What kind of network an AS is; detection treats them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkKind {
    /// A public cloud where connector vendors run their workers.
    Cloud,
    /// A connector vendor's own network.
    Vendor,
    /// Cheap hosting / VPS, favoured by attackers.
    Hosting,
    /// A residential or mobile ISP.
    Residential,
    /// A company's own office range.
    Corporate,
}

/// An autonomous system and the /24s of it the simulation uses.
#[derive(Debug, Clone)]
pub struct Network {
    /// AS number.
    pub asn: u32,
    /// AS organisation.
    pub org: &'static str,
    /// ISO country of its addresses.
    pub country: &'static str,
    /// Kind.
    pub kind: NetworkKind,
    /// First three octets of each /24.
    pub prefixes: Vec<[u8; 3]>,
}

impl Network {
    /// Host `host` (1–254) of the `i`-th /24.
    pub fn ip(&self, prefix: usize, host: u8) -> Ipv4Addr {
        let p = self.prefixes[prefix % self.prefixes.len()];
        Ipv4Addr::new(p[0], p[1], p[2], host.clamp(1, 254))
    }

    /// The `i`-th /24 as CIDR text.
    pub fn cidr(&self, prefix: usize) -> String {
        let p = self.prefixes[prefix % self.prefixes.len()];
        format!("{}.{}.{}.0/24", p[0], p[1], p[2])
    }
}

/// Names of the networks in [`AddressPlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// AWS: the backup vendor's workers (and the "unseen prefix" attacker).
    Aws,
    /// Microsoft Azure: the continuity vendor's workers.
    Azure,
    /// The archiving vendor's own AS.
    ArchiveVendor,
    /// The mail gateway vendor's AS.
    Gateway,
    /// The eDiscovery vendor onboarded mid-run.
    Ediscovery,
    /// DigitalOcean.
    DigitalOcean,
    /// OVH.
    Ovh,
    /// Hetzner.
    Hetzner,
    /// A small VPS host for low-and-slow reads.
    SmallVps,
    /// Senders of inbound mail.
    Senders,
}

/// Every network of the simulation.
#[derive(Debug, Clone)]
pub struct AddressPlan {
    named: Vec<(Net, Network)>,
    /// Residential ISPs by country.
    residential: Vec<Network>,
    /// Tenant office ranges, by tenant index.
    offices: Vec<Network>,
}

impl AddressPlan {
    /// The plan for `tenants` tenants whose countries are `countries`.
    pub fn new(countries: &[&'static str]) -> Self {
        let net = |asn, org, country, kind, prefixes: &[[u8; 3]]| Network {
            asn,
            org,
            country,
            kind,
            prefixes: prefixes.to_vec(),
        };
        use NetworkKind::*;
        let named = vec![
            (
                Net::Aws,
                net(
                    16509,
                    "AMAZON-02",
                    "DE",
                    Cloud,
                    // Four /24s: three are the backup vendor's pool, the fourth its planned
                    // expansion (confounder); the fifth is an unrelated AWS customer (attacker).
                    &[
                        [52, 28, 14],
                        [52, 28, 97],
                        [18, 184, 33],
                        [18, 185, 120],
                        [3, 120, 181],
                    ],
                ),
            ),
            (
                Net::Azure,
                net(
                    8075,
                    "MICROSOFT-CORP-MSN-AS-BLOCK",
                    "NL",
                    Cloud,
                    &[[20, 50, 64], [20, 50, 65]],
                ),
            ),
            (
                Net::ArchiveVendor,
                net(
                    394536,
                    "ARCHIVEVENDOR-AS",
                    "US",
                    Vendor,
                    &[[198, 18, 40], [198, 18, 41]],
                ),
            ),
            (
                Net::Gateway,
                net(
                    30031,
                    "MAILGATEWAY-AS",
                    "GB",
                    Vendor,
                    &[[185, 58, 84], [185, 58, 85]],
                ),
            ),
            (
                Net::Ediscovery,
                net(395747, "EDISCOVERY-VENDOR", "US", Vendor, &[[199, 47, 112]]),
            ),
            (
                Net::DigitalOcean,
                net(
                    14061,
                    "DIGITALOCEAN-ASN",
                    "NL",
                    Hosting,
                    &[[159, 89, 12], [167, 99, 40]],
                ),
            ),
            (
                Net::Ovh,
                net(16276, "OVH", "FR", Hosting, &[[51, 75, 162], [54, 38, 77]]),
            ),
            (
                Net::Hetzner,
                net(24940, "HETZNER-AS", "DE", Hosting, &[[95, 216, 88]]),
            ),
            (
                Net::SmallVps,
                net(212238, "DATACAMP-LIMITED", "GB", Hosting, &[[185, 107, 56]]),
            ),
            (
                Net::Senders,
                net(
                    15169,
                    "GOOGLE",
                    "US",
                    Cloud,
                    &[[209, 85, 220], [209, 85, 221], [209, 85, 128]],
                ),
            ),
        ];
        let residential = vec![
            net(
                3320,
                "DTAG",
                "DE",
                Residential,
                &[[84, 150, 21], [91, 37, 203]],
            ),
            net(
                7922,
                "COMCAST-7922",
                "US",
                Residential,
                &[[73, 15, 142], [73, 92, 18]],
            ),
            net(
                2516,
                "KDDI",
                "JP",
                Residential,
                &[[106, 128, 77], [106, 130, 4]],
            ),
            net(
                1221,
                "ASN-TELSTRA",
                "AU",
                Residential,
                &[[1, 120, 144], [1, 121, 9]],
            ),
            net(
                5089,
                "VIRGINM",
                "GB",
                Residential,
                &[[82, 21, 64], [86, 4, 190]],
            ),
        ];
        let offices = countries
            .iter()
            .enumerate()
            .map(|(i, country)| Network {
                asn: 64_512 + i as u32,
                org: "TENANT-OFFICE",
                country,
                kind: Corporate,
                prefixes: vec![[
                    100 + (i / 200) as u8,
                    64 + (i % 200) as u8 / 4,
                    (i % 4) as u8 * 64 + 1,
                ]],
            })
            .collect();
        AddressPlan {
            named,
            residential,
            offices,
        }
    }

    /// A named network.
    pub fn get(&self, which: Net) -> &Network {
        &self
            .named
            .iter()
            .find(|(n, _)| *n == which)
            .expect("every Net is in the plan")
            .1
    }

    /// The residential ISP of a country (the first one when the country has none).
    pub fn residential(&self, country: &str) -> &Network {
        self.residential
            .iter()
            .find(|n| n.country == country)
            .unwrap_or(&self.residential[0])
    }

    /// A residential ISP in another country than `country`.
    pub fn foreign_residential(&self, country: &str) -> &Network {
        self.residential
            .iter()
            .find(|n| n.country != country)
            .expect("more than one residential ISP")
    }

    /// A tenant's office range.
    pub fn office(&self, tenant: usize) -> &Network {
        &self.offices[tenant]
    }

    fn all(&self) -> impl Iterator<Item = &Network> {
        self.named
            .iter()
            .map(|(_, n)| n)
            .chain(&self.residential)
            .chain(&self.offices)
    }

    /// The IP-to-ASN table in ip-location-db's CSV layout (`start_ip,end_ip,asn,organization`,
    /// no header), one row per /24, sorted by address.
    pub fn asn_csv(&self) -> String {
        let mut rows: Vec<([u8; 3], u32, &str)> = self
            .all()
            .flat_map(|n| n.prefixes.iter().map(move |p| (*p, n.asn, n.org)))
            .collect();
        rows.sort();
        let mut out = String::new();
        for (p, asn, org) in rows {
            let _ = writeln!(
                out,
                "{a}.{b}.{c}.0,{a}.{b}.{c}.255,{asn},{org}",
                a = p[0],
                b = p[1],
                c = p[2]
            );
        }
        out
    }

    /// The IP-to-country table in ip-location-db's CSV layout (`start_ip,end_ip,country_code`).
    pub fn country_csv(&self) -> String {
        let mut rows: Vec<([u8; 3], &str)> = self
            .all()
            .flat_map(|n| n.prefixes.iter().map(move |p| (*p, n.country)))
            .collect();
        rows.sort();
        let mut out = String::new();
        for (p, country) in rows {
            let _ = writeln!(
                out,
                "{a}.{b}.{c}.0,{a}.{b}.{c}.255,{country}",
                a = p[0],
                b = p[1],
                c = p[2]
            );
        }
        out
    }

    /// The network an address belongs to.
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<&Network> {
        let o = ip.octets();
        self.all()
            .find(|n| n.prefixes.iter().any(|p| p[..] == o[..3]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_is_unique_and_in_the_tables() {
        let plan = AddressPlan::new(&["DE", "US", "JP", "AU", "DE", "US"]);
        let mut seen = std::collections::BTreeSet::new();
        for n in plan.all() {
            for p in &n.prefixes {
                assert!(seen.insert(*p), "prefix {p:?} used twice");
            }
        }
        let csv = plan.asn_csv();
        assert_eq!(csv.lines().count(), seen.len());
        assert!(csv.contains("52.28.14.0,52.28.14.255,16509,AMAZON-02\n"));
        let ip = plan.get(Net::DigitalOcean).ip(1, 7);
        assert_eq!(plan.lookup(ip).unwrap().asn, 14061);
    }
}
