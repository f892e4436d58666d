//! The short texts baselines are keyed by — addresses and AS numbers — written into a stack
//! buffer without the formatting machinery (they are built for every session scored and
//! learned). The text is exactly what `Display` writes.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One key text on the stack.
pub struct KeyText {
    buf: [u8; 48],
    len: usize,
}

impl KeyText {
    fn empty() -> Self {
        KeyText {
            buf: [0; 48],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn push_number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[at..]);
    }

    /// Dotted decimal octets, as `Ipv4Addr`'s `Display` writes them.
    fn push_octets(&mut self, octets: &[u8]) {
        let mut at = self.len;
        for (i, &octet) in octets.iter().enumerate() {
            if i > 0 {
                self.buf[at] = b'.';
                at += 1;
            }
            if octet >= 100 {
                self.buf[at] = b'0' + octet / 100;
                at += 1;
            }
            if octet >= 10 {
                self.buf[at] = b'0' + octet / 10 % 10;
                at += 1;
            }
            self.buf[at] = b'0' + octet % 10;
            at += 1;
        }
        self.len = at;
    }

    /// An address as `Display` writes it (IPv4 dotted quads directly, IPv6 through `Display`).
    pub fn ip(ip: IpAddr) -> Self {
        let mut text = KeyText::empty();
        match ip {
            IpAddr::V4(v4) => text.push_octets(&v4.octets()),
            IpAddr::V6(_) => text.push_display(ip),
        }
        text
    }

    /// The network an address stands in for without an AS number: its IPv4 /24 (IPv4-mapped
    /// addresses included) or IPv6 /48, as `a.b.c.0/24` or `x:y:z::/48`.
    pub fn network(ip: IpAddr) -> Self {
        let mut text = KeyText::empty();
        match ip {
            IpAddr::V4(v4) => text.push_network_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => text.push_network_v4(v4),
                None => {
                    let s = v6.segments();
                    text.push_display(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0));
                    text.push(b"/48");
                }
            },
        }
        text
    }

    fn push_network_v4(&mut self, v4: Ipv4Addr) {
        self.push_octets(&v4.octets()[..3]);
        self.push(b".0/24");
    }

    /// Writes through `Display` (an IPv6 address is at most 45 characters: it fits).
    fn push_display(&mut self, value: impl std::fmt::Display) {
        let mut cursor = std::io::Cursor::new(&mut self.buf[self.len..]);
        let _ = write!(cursor, "{value}");
        self.len += cursor.position() as usize;
    }

    /// A session's source: its address, or `none` without one.
    pub fn source(ip: Option<IpAddr>) -> Self {
        match ip {
            Some(ip) => KeyText::ip(ip),
            None => {
                let mut text = KeyText::empty();
                text.push(b"none");
                text
            }
        }
    }

    /// An AS number as the baselines key it: `AS` and the number.
    pub fn asn(asn: u32) -> Self {
        let mut text = KeyText::empty();
        text.push(b"AS");
        text.push_number(u64::from(asn));
        text
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn texts_are_what_display_writes() {
        for ip in [
            "0.0.0.0",
            "10.1.20.255",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(KeyText::ip(ip).as_str(), ip.to_string());
        }
        assert_eq!(KeyText::source(None).as_str(), "none");
        for (ip, network) in [
            ("203.0.113.7", "203.0.113.0/24"),
            ("0.0.0.0", "0.0.0.0/24"),
            ("::ffff:192.0.2.1", "192.0.2.0/24"),
            ("2001:db8:1:2::7", "2001:db8:1::/48"),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(KeyText::network(ip).as_str(), network);
        }
        assert_eq!(KeyText::asn(0).as_str(), "AS0");
        assert_eq!(KeyText::asn(u32::MAX).as_str(), format!("AS{}", u32::MAX));
    }

    proptest! {
        #[test]
        fn any_address_and_asn(v4 in any::<u32>(), v6 in any::<u128>(), asn in any::<u32>()) {
            let a = IpAddr::from(v4.to_be_bytes());
            let b = IpAddr::from(v6.to_be_bytes());
            let (ta, tb, tn) = (KeyText::ip(a), KeyText::ip(b), KeyText::asn(asn));
            prop_assert_eq!(ta.as_str(), a.to_string());
            prop_assert_eq!(tb.as_str(), b.to_string());
            prop_assert_eq!(tn.as_str(), format!("AS{asn}"));
        }
    }
}
