//! A virtual IP address as written in `vips`, and which addresses may be one.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// A virtual IP address with its prefix length, as written `10.0.0.200/24`.
///
/// [`FromStr`] accepts only addresses usable as a VIP: not unspecified, loopback,
/// multicast, the IPv4 broadcast address or IPv6 link-local (`fe80::/10`); the
/// prefix length is required and 1..=32 (IPv4) or 1..=128 (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vip {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length of the subnet the address is added with.
    pub prefix_len: u8,
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why a string is not a usable [`Vip`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VipParseError {
    /// No `/PREFIX`.
    #[error("{0:?} has no prefix length; write ADDRESS/PREFIX, e.g. \"10.0.0.200/24\" or \"2001:db8::200/64\"")]
    MissingPrefix(String),
    /// The part before `/` is not an IP address.
    #[error("{0:?} is not an IP address; write ADDRESS/PREFIX, e.g. \"10.0.0.200/24\" or \"2001:db8::200/64\"")]
    BadAddress(String),
    /// The part after `/` is not a number in range.
    #[error("prefix length {text:?} is not valid for an IPv{version} address; valid: 1..={max}")]
    BadPrefix {
        /// What was written after `/`.
        text: String,
        /// 4 or 6.
        version: u8,
        /// 32 or 128.
        max: u8,
    },
    /// The address cannot be a VIP.
    #[error("{addr} is {reason} and cannot be a VIP")]
    Unusable {
        /// The address.
        addr: IpAddr,
        /// "a loopback address", ...
        reason: &'static str,
    },
}

impl FromStr for Vip {
    type Err = VipParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_text, prefix_text) = s
            .split_once('/')
            .ok_or_else(|| VipParseError::MissingPrefix(s.to_owned()))?;
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| VipParseError::BadAddress(addr_text.to_owned()))?;
        let (version, max) = match addr {
            IpAddr::V4(_) => (4, 32),
            IpAddr::V6(_) => (6, 128),
        };
        let prefix_len = prefix_text
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=max).contains(p) && prefix_text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| VipParseError::BadPrefix {
                text: prefix_text.to_owned(),
                version,
                max,
            })?;
        if let Some(reason) = unusable_vip_reason(addr) {
            return Err(VipParseError::Unusable { addr, reason });
        }
        Ok(Self { addr, prefix_len })
    }
}

fn unusable_vip_reason(addr: IpAddr) -> Option<&'static str> {
    if addr.is_unspecified() {
        return Some("the unspecified address");
    }
    if addr.is_loopback() {
        return Some("a loopback address");
    }
    if addr.is_multicast() {
        return Some("a multicast address");
    }
    match addr {
        IpAddr::V4(a) if a == Ipv4Addr::BROADCAST => Some("the broadcast address"),
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => {
            Some("an IPv6 link-local address (fe80::/10)")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_parse_and_display() {
        let v: Vip = "10.0.0.200/24".parse().unwrap();
        assert_eq!(v.to_string(), "10.0.0.200/24");
        let v: Vip = "2001:db8::200/64".parse().unwrap();
        assert_eq!(v.prefix_len, 64);
        assert!(matches!(
            "10.0.0.1".parse::<Vip>(),
            Err(VipParseError::MissingPrefix(_))
        ));
        assert!(matches!(
            "10.0.0/24".parse::<Vip>(),
            Err(VipParseError::BadAddress(_))
        ));
        for bad in [
            "10.0.0.1/33",
            "10.0.0.1/0",
            "10.0.0.1/+8",
            "10.0.0.1/",
            "::1:2/129",
        ] {
            assert!(
                matches!(bad.parse::<Vip>(), Err(VipParseError::BadPrefix { .. })),
                "{bad}"
            );
        }
        for bad in [
            "0.0.0.0/8",
            "127.0.0.2/8",
            "224.0.0.18/4",
            "255.255.255.255/32",
            "::/64",
            "::1/128",
            "ff02::1/64",
            "fe80::1/64",
            "febf::1/64",
        ] {
            assert!(
                matches!(bad.parse::<Vip>(), Err(VipParseError::Unusable { .. })),
                "{bad}"
            );
        }
        assert!("fec0::1/64".parse::<Vip>().is_ok());
    }
}
