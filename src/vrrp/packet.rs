//! The VRRP message codec and the IPv4 header split; see the module doc of
//! [`crate::vrrp`] for the layout and the checksum rules.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The IPv4 multicast group adverts go to.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group adverts go to.
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The TTL / hop limit a multicast advert is sent with and must arrive with.
pub const TTL: u8 = 255;
/// The fixed header in front of the addresses.
pub const HEADER_LEN: usize = 8;
/// The authentication data behind a v2 message's addresses.
pub const V2_AUTH_LEN: usize = 8;
/// The largest v3 Max Adver Int: 12 bits of centiseconds.
pub const V3_MAX_INTERVAL_CS: u16 = 0x0fff;

const TYPE_ADVERTISEMENT: u8 = 1;
const AUTH_TYPE_NONE: u8 = 0;
const AUTH_TYPE_PASSWORD: u8 = 1;
const AUTH_TYPE_AH: u8 = 2;
const IPV4_MIN_HEADER_LEN: usize = 20;
const IPPROTO_AH: u8 = 51;
const CHECKSUM: std::ops::Range<usize> = 6..8;

/// The protocol version, which fixes the message layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768: IPv4 only, whole-second intervals, 8 bytes of authentication data.
    V2,
    /// RFC 5798 / RFC 9568: IPv4 or IPv6, centisecond intervals, no authentication.
    V3,
}

impl Version {
    fn number(self) -> u8 {
        match self {
            Self::V2 => 2,
            Self::V3 => 3,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VRRPv{}", self.number())
    }
}

/// How a VRRPv3 IPv4 checksum is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumForm {
    /// RFC 5798 §5.2.8: over the IPv4 pseudo-header and the message; what
    /// keepalived sends by default.
    PseudoHeader,
    /// Over the message only, as VRRPv2 does: keepalived 2.2.8 and later with
    /// `v3_checksum_as_v2`, and some routers.
    MessageOnly,
}

impl fmt::Display for ChecksumForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PseudoHeader => "pseudo-header",
            Self::MessageOnly => "message-only",
        })
    }
}

/// VRRPv2 authentication. IPsec AH (auth type 2) is refused on decode
/// ([`VrrpError::AhAuthentication`]) and cannot be encoded.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum V2Auth {
    /// Auth type 0; the 8 authentication bytes are sent as zeros and not read.
    None,
    /// Auth type 1, "simple text password": up to 8 bytes, zero-padded to 8,
    /// all 8 compared (keepalived truncates a longer `auth_pass` to 8).
    Password([u8; V2_AUTH_LEN]),
}

impl V2Auth {
    fn auth_type(&self) -> u8 {
        match self {
            Self::None => AUTH_TYPE_NONE,
            Self::Password(_) => AUTH_TYPE_PASSWORD,
        }
    }

    fn data(&self) -> [u8; V2_AUTH_LEN] {
        match self {
            Self::None => [0; V2_AUTH_LEN],
            Self::Password(password) => *password,
        }
    }
}

/// Keeps the password out of logs and panic messages.
impl fmt::Debug for V2Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Password(_) => f.write_str("Password(..)"),
        }
    }
}

/// One VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The protocol version.
    pub version: Version,
    /// The virtual router id, 1..=255.
    pub vrid: u8,
    /// 0 = the master is leaving, 255 = the address owner.
    pub priority: u8,
    /// v3: Max Adver Int in centiseconds (1..=4095); v2: the advert interval in
    /// whole seconds (1..=255), carried here as seconds × 100.
    pub interval_cs: u16,
    /// The virtual addresses, all of one family (IPv4 only in v2), at most 255.
    /// None at all is allowed: keepalived sends a count of 0 for an instance
    /// without VIPs, although RFC 5798 asks for at least one.
    pub addresses: Vec<IpAddr>,
    /// v2 authentication; always [`V2Auth::None`] in v3.
    pub auth: V2Auth,
}

/// What the receiving instance is configured for; [`decode`] rejects the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// The version the instance speaks (keepalived does not mix them either).
    pub version: Version,
    /// The instance's virtual router id.
    pub vrid: u8,
    /// The instance's family: IPv6 addresses (16 bytes each) or IPv4 (4).
    pub ipv6: bool,
    /// v2: the configured authentication (type and password must match); not
    /// read in v3.
    pub auth: V2Auth,
}

/// The fields of an IPv4 header the election needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    /// The sender's address: keepalived breaks equal-priority ties on it.
    pub source: Ipv4Addr,
    /// 224.0.0.18 for multicast, else this host's unicast address.
    pub destination: Ipv4Addr,
    /// Must be 255 on a multicast advert ([`TTL`]); unicast may differ.
    pub ttl: u8,
}

/// Why bytes are not a VRRP message this instance accepts, or a packet cannot
/// be encoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VrrpError {
    /// Shorter than the 8-byte header.
    #[error("VRRP message truncated: {len} bytes, the header alone is 8")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// The version nibble is not the instance's version.
    #[error("VRRP version {got}, expected {expected}")]
    WrongVersion {
        /// The instance's version.
        expected: Version,
        /// The version nibble received.
        got: u8,
    },
    /// The type nibble is not 1 (ADVERTISEMENT, the only type defined).
    #[error("VRRP packet type {packet_type}, only 1 (ADVERTISEMENT) is defined")]
    NotAdvertisement {
        /// The type nibble received.
        packet_type: u8,
    },
    /// An advert for another virtual router.
    #[error("VRRP advert for VRID {got}, expected VRID {expected}")]
    WrongVrid {
        /// The instance's VRID.
        expected: u8,
        /// The VRID received.
        got: u8,
    },
    /// VRRPv2 over IPv6, or an IPv6 address in a v2 packet: v2 is IPv4 only.
    #[error("VRRPv2 is IPv4 only: IPv6 needs VRRPv3")]
    V2OverIpv6,
    /// Shorter than the address count says.
    #[error("VRRP message truncated: {len} bytes, but {count} addresses make it {expected}")]
    AddressesTruncated {
        /// Bytes received.
        len: usize,
        /// The length the count and version give.
        expected: usize,
        /// The address count received.
        count: u8,
    },
    /// Longer than the address count says (keepalived rejects trailing bytes too).
    #[error(
        "VRRP message has trailing bytes: {len} bytes, but {count} addresses make it {expected}"
    )]
    TrailingBytes {
        /// Bytes received.
        len: usize,
        /// The length the count and version give.
        expected: usize,
        /// The address count received.
        count: u8,
    },
    /// VRRPv2 auth type 2, IPsec AH: not supported.
    #[error("VRRPv2 IPsec AH authentication (auth type 2) is not supported")]
    AhAuthentication,
    /// A VRRPv2 auth type RFC 2338 does not define.
    #[error("VRRPv2 auth type {0} is not defined (0 = none, 1 = password, 2 = IPsec AH)")]
    UnknownAuthType(u8),
    /// The VRRPv2 auth type differs from the instance's.
    #[error("VRRPv2 auth type {got}, expected auth type {expected}")]
    AuthTypeMismatch {
        /// The instance's auth type.
        expected: u8,
        /// The auth type received.
        got: u8,
    },
    /// The VRRPv2 password (all 8 bytes, padding included) differs from the instance's.
    #[error("VRRPv2 password mismatch")]
    WrongPassword,
    /// An advert interval of 0.
    #[error("{version} advert interval 0")]
    ZeroInterval {
        /// The message's version.
        version: Version,
    },
    /// A VRRPv2 checksum that does not verify.
    #[error("VRRPv2 checksum {got:#06x}, expected {expected:#06x}")]
    V2Checksum {
        /// The checksum received.
        got: u16,
        /// The checksum of the message as received.
        expected: u16,
    },
    /// A VRRPv3 IPv4 checksum that verifies in neither form.
    #[error(
        "VRRP checksum {got:#06x} matches neither form \
         (pseudo-header {pseudo_header:#06x}, message-only {message_only:#06x})"
    )]
    V3Checksum {
        /// The checksum received.
        got: u16,
        /// The checksum with the IPv4 pseudo-header.
        pseudo_header: u16,
        /// The checksum over the message only.
        message_only: u16,
    },
    /// A VRRPv3 IPv4 message decoded without the IPv4 addresses its checksum covers.
    #[error("VRRPv3 over IPv4 needs the IPv4 source and destination to check its checksum")]
    MissingPseudoHeader,
    /// A packet to encode with VRID 0.
    #[error("VRID 0 is reserved; VRIDs are 1..=255")]
    ZeroVrid,
    /// A VRRPv2 interval to encode that is not whole seconds in 1..=255.
    #[error("VRRPv2 advert interval {interval_cs} cs is not whole seconds in 1..=255 s")]
    V2IntervalOutOfRange {
        /// The interval asked for.
        interval_cs: u16,
    },
    /// A VRRPv3 interval to encode outside 1..=4095 centiseconds.
    #[error("VRRPv3 advert interval {interval_cs} cs is outside 1..=4095 cs")]
    V3IntervalOutOfRange {
        /// The interval asked for.
        interval_cs: u16,
    },
    /// A packet to encode with IPv4 and IPv6 addresses together.
    #[error("VRRP addresses mix IPv4 and IPv6; one advert carries one family")]
    MixedFamilies,
    /// A packet to encode with more addresses than the count byte holds.
    #[error("{count} VRRP addresses, at most 255 fit the count")]
    TooManyAddresses {
        /// The addresses asked for.
        count: usize,
    },
    /// A VRRPv3 packet to encode with a password: v3 has no authentication.
    #[error("VRRPv3 has no authentication; a password needs VRRPv2")]
    V3Password,
    /// Shorter than an IPv4 header.
    #[error("IPv4 datagram truncated: {len} bytes, the header alone is at least 20")]
    Ipv4Truncated {
        /// Bytes received.
        len: usize,
    },
    /// The IP version nibble is not 4.
    #[error("IP version {0}, expected an IPv4 header")]
    NotIpv4(u8),
    /// An IHL under 5 words or past the end of the datagram.
    #[error("IPv4 header length {header_len} bytes, datagram {len} bytes")]
    BadIpv4HeaderLength {
        /// IHL × 4.
        header_len: usize,
        /// Bytes received.
        len: usize,
    },
    /// The total length field differs from what was received (keepalived checks it too).
    #[error("IPv4 total length {total_len}, but {len} bytes received")]
    Ipv4TotalLength {
        /// The header's total length.
        total_len: usize,
        /// Bytes received.
        len: usize,
    },
    /// A fragment: a whole advert always fits one datagram.
    #[error("IPv4 fragment (offset {offset} bytes, more fragments: {more_fragments})")]
    Fragment {
        /// The fragment offset in bytes.
        offset: usize,
        /// The MF flag.
        more_fragments: bool,
    },
    /// Another protocol than VRRP (112), IPsec AH (51) included.
    #[error("IP protocol {protocol}{}, expected VRRP (112)", protocol_note(.protocol))]
    NotVrrp {
        /// The header's protocol.
        protocol: u8,
    },
}

fn protocol_note(protocol: &u8) -> &'static str {
    if *protocol == IPPROTO_AH {
        " (IPsec AH)"
    } else {
        ""
    }
}

/// The message for `packet`. v2 carries its checksum; v3 has 0 there: for IPv6
/// the kernel fills it (`IPV6_CHECKSUM`), for IPv4 [`set_ipv4_checksum`] does,
/// once per destination.
pub fn encode(packet: &Packet) -> Result<Vec<u8>, VrrpError> {
    if packet.vrid == 0 {
        return Err(VrrpError::ZeroVrid);
    }
    let count = u8::try_from(packet.addresses.len()).map_err(|_| VrrpError::TooManyAddresses {
        count: packet.addresses.len(),
    })?;
    let ipv6 = packet.addresses.first().is_some_and(IpAddr::is_ipv6);
    if packet
        .addresses
        .iter()
        .any(|address| address.is_ipv6() != ipv6)
    {
        return Err(VrrpError::MixedFamilies);
    }
    let (interval_bytes, auth) = match packet.version {
        Version::V2 => {
            if ipv6 {
                return Err(VrrpError::V2OverIpv6);
            }
            let interval_cs = packet.interval_cs;
            let out_of_range = VrrpError::V2IntervalOutOfRange { interval_cs };
            if interval_cs == 0 || interval_cs % 100 != 0 {
                return Err(out_of_range);
            }
            let seconds = u8::try_from(interval_cs / 100).map_err(|_| out_of_range)?;
            ([packet.auth.auth_type(), seconds], Some(packet.auth.data()))
        }
        Version::V3 => {
            if packet.auth != V2Auth::None {
                return Err(VrrpError::V3Password);
            }
            let interval_cs = packet.interval_cs;
            if interval_cs == 0 || interval_cs > V3_MAX_INTERVAL_CS {
                return Err(VrrpError::V3IntervalOutOfRange { interval_cs });
            }
            (interval_cs.to_be_bytes(), None)
        }
    };

    let mut message = Vec::with_capacity(message_len(packet.version, ipv6, count));
    message.push(packet.version.number() << 4 | TYPE_ADVERTISEMENT);
    message.extend_from_slice(&[packet.vrid, packet.priority, count]);
    message.extend_from_slice(&interval_bytes);
    message.extend_from_slice(&[0, 0]);
    for address in &packet.addresses {
        match address {
            IpAddr::V4(v4) => message.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => message.extend_from_slice(&v6.octets()),
        }
    }
    if let Some(data) = auth {
        message.extend_from_slice(&data);
        write_checksum(&mut message, 0);
    }
    Ok(message)
}

/// Fills the checksum of a v3 IPv4 `message` for one copy from `source` to
/// `destination` (224.0.0.18, or each unicast peer in turn); with
/// [`ChecksumForm::MessageOnly`] the addresses do not count. A slice shorter
/// than the header is left as it is.
pub fn set_ipv4_checksum(
    message: &mut [u8],
    form: ChecksumForm,
    source: Ipv4Addr,
    destination: Ipv4Addr,
) {
    let pseudo = match form {
        ChecksumForm::PseudoHeader => ipv4_pseudo_header_sum(source, destination, message.len()),
        ChecksumForm::MessageOnly => 0,
    };
    write_checksum(message, pseudo);
}

/// Splits a datagram from a raw IPv4 socket (which hands over the IP header)
/// into its header and the VRRP message. IP options are skipped; the total
/// length must match the bytes received exactly, as keepalived requires.
pub fn split_ipv4(datagram: &[u8]) -> Result<(Ipv4Header, &[u8]), VrrpError> {
    let len = datagram.len();
    let Some(header) = datagram.first_chunk::<IPV4_MIN_HEADER_LEN>() else {
        return Err(VrrpError::Ipv4Truncated { len });
    };
    let ip_version = header[0] >> 4;
    if ip_version != 4 {
        return Err(VrrpError::NotIpv4(ip_version));
    }
    let header_len = usize::from(header[0] & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER_LEN || header_len > len {
        return Err(VrrpError::BadIpv4HeaderLength { header_len, len });
    }
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if total_len != len {
        return Err(VrrpError::Ipv4TotalLength { total_len, len });
    }
    let fragment = u16::from_be_bytes([header[6], header[7]]);
    let more_fragments = fragment & 0x2000 != 0;
    let offset = usize::from(fragment & 0x1fff) * 8;
    if more_fragments || offset != 0 {
        return Err(VrrpError::Fragment {
            offset,
            more_fragments,
        });
    }
    let protocol = header[9];
    if protocol != IPPROTO_VRRP {
        return Err(VrrpError::NotVrrp { protocol });
    }
    let ipv4_header = Ipv4Header {
        source: Ipv4Addr::new(header[12], header[13], header[14], header[15]),
        destination: Ipv4Addr::new(header[16], header[17], header[18], header[19]),
        ttl: header[8],
    };
    Ok((ipv4_header, &datagram[header_len..]))
}

/// The VRID of a message long enough to hold a header, to pick the instance
/// before decoding.
pub fn peek_vrid(message: &[u8]) -> Option<u8> {
    message.first_chunk::<HEADER_LEN>().map(|header| header[1])
}

/// Decodes and checks `message` for the instance described by `expect`.
///
/// `pseudo` is the IPv4 (source, destination) from [`split_ipv4`], which a v3
/// IPv4 checksum covers; `None` for IPv6, whose checksum the kernel checked.
/// The checksum form is returned for v3 over IPv4 (either form is accepted, the
/// pseudo-header first); `None` for v2 and IPv6. Reserved v3 bits are ignored,
/// as RFC 5798 says. Checks come in this order: header length, version, type,
/// VRID, family, length against the address count, checksum, authentication,
/// interval.
pub fn decode(
    message: &[u8],
    expect: &Expect,
    pseudo: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Result<(Packet, Option<ChecksumForm>), VrrpError> {
    let len = message.len();
    let Some(header) = message.first_chunk::<HEADER_LEN>() else {
        return Err(VrrpError::Truncated { len });
    };
    let version_number = header[0] >> 4;
    if version_number != expect.version.number() {
        return Err(VrrpError::WrongVersion {
            expected: expect.version,
            got: version_number,
        });
    }
    let packet_type = header[0] & 0x0f;
    if packet_type != TYPE_ADVERTISEMENT {
        return Err(VrrpError::NotAdvertisement { packet_type });
    }
    if header[1] != expect.vrid {
        return Err(VrrpError::WrongVrid {
            expected: expect.vrid,
            got: header[1],
        });
    }
    if expect.version == Version::V2 && expect.ipv6 {
        return Err(VrrpError::V2OverIpv6);
    }
    let count = header[3];
    let expected = message_len(expect.version, expect.ipv6, count);
    if len < expected {
        return Err(VrrpError::AddressesTruncated {
            len,
            expected,
            count,
        });
    }
    if len > expected {
        return Err(VrrpError::TrailingBytes {
            len,
            expected,
            count,
        });
    }

    let checksum_form = check_checksum(message, expect, pseudo)?;

    let (auth, interval_cs) = match expect.version {
        Version::V2 => {
            // The length check above leaves 8 bytes of authentication data last.
            let data = message
                .last_chunk::<V2_AUTH_LEN>()
                .copied()
                .unwrap_or_default();
            let auth = decode_v2_auth(header[4], data, &expect.auth)?;
            (auth, u16::from(header[5]) * 100)
        }
        Version::V3 => (
            V2Auth::None,
            u16::from_be_bytes([header[4], header[5]]) & V3_MAX_INTERVAL_CS,
        ),
    };
    if interval_cs == 0 {
        return Err(VrrpError::ZeroInterval {
            version: expect.version,
        });
    }

    let address_bytes =
        &message[HEADER_LEN..HEADER_LEN + usize::from(count) * address_len(expect.ipv6)];
    let addresses = if expect.ipv6 {
        address_bytes
            .chunks_exact(16)
            .filter_map(|chunk| <[u8; 16]>::try_from(chunk).ok())
            .map(|octets| IpAddr::V6(Ipv6Addr::from(octets)))
            .collect()
    } else {
        address_bytes
            .chunks_exact(4)
            .filter_map(|chunk| <[u8; 4]>::try_from(chunk).ok())
            .map(|octets| IpAddr::V4(Ipv4Addr::from(octets)))
            .collect()
    };

    let packet = Packet {
        version: expect.version,
        vrid: header[1],
        priority: header[2],
        interval_cs,
        addresses,
        auth,
    };
    Ok((packet, checksum_form))
}

fn address_len(ipv6: bool) -> usize {
    if ipv6 {
        16
    } else {
        4
    }
}

fn message_len(version: Version, ipv6: bool, count: u8) -> usize {
    let auth_len = match version {
        Version::V2 => V2_AUTH_LEN,
        Version::V3 => 0,
    };
    HEADER_LEN + usize::from(count) * address_len(ipv6) + auth_len
}

/// v2: over the message; v3 IPv4: either form; IPv6: left to the kernel.
fn check_checksum(
    message: &[u8],
    expect: &Expect,
    pseudo: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Result<Option<ChecksumForm>, VrrpError> {
    if expect.ipv6 {
        return Ok(None);
    }
    let got = received_checksum(message);
    match expect.version {
        Version::V2 => {
            if verifies(0, message) {
                Ok(None)
            } else {
                Err(VrrpError::V2Checksum {
                    got,
                    expected: checksum(0, message),
                })
            }
        }
        Version::V3 => {
            let (source, destination) = pseudo.ok_or(VrrpError::MissingPseudoHeader)?;
            let pseudo_sum = ipv4_pseudo_header_sum(source, destination, message.len());
            if verifies(pseudo_sum, message) {
                Ok(Some(ChecksumForm::PseudoHeader))
            } else if verifies(0, message) {
                Ok(Some(ChecksumForm::MessageOnly))
            } else {
                Err(VrrpError::V3Checksum {
                    got,
                    pseudo_header: checksum(pseudo_sum, message),
                    message_only: checksum(0, message),
                })
            }
        }
    }
}

/// Auth type 0 leaves the data unread, as keepalived does.
fn decode_v2_auth(
    auth_type: u8,
    data: [u8; V2_AUTH_LEN],
    configured: &V2Auth,
) -> Result<V2Auth, VrrpError> {
    let auth = match auth_type {
        AUTH_TYPE_NONE => V2Auth::None,
        AUTH_TYPE_PASSWORD => V2Auth::Password(data),
        AUTH_TYPE_AH => return Err(VrrpError::AhAuthentication),
        other => return Err(VrrpError::UnknownAuthType(other)),
    };
    if auth.auth_type() != configured.auth_type() {
        return Err(VrrpError::AuthTypeMismatch {
            expected: configured.auth_type(),
            got: auth.auth_type(),
        });
    }
    if !same_bytes(&auth.data(), &configured.data()) {
        return Err(VrrpError::WrongPassword);
    }
    Ok(auth)
}

/// Compares every byte whatever the first difference, as keepalived's
/// `memcmp_constant_time` does, so the time taken does not tell how much of a
/// guess was right.
fn same_bytes(a: &[u8; V2_AUTH_LEN], b: &[u8; V2_AUTH_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn received_checksum(message: &[u8]) -> u16 {
    match message.get(CHECKSUM) {
        Some(&[high, low]) => u16::from_be_bytes([high, low]),
        _ => 0,
    }
}

/// The one's-complement sum of the IPv4 pseudo-header: source, destination,
/// a zero byte, the protocol and the VRRP message length.
fn ipv4_pseudo_header_sum(source: Ipv4Addr, destination: Ipv4Addr, message_len: usize) -> u64 {
    sum_words(&source.octets())
        + sum_words(&destination.octets())
        + u64::from(IPPROTO_VRRP)
        + (message_len as u64 & 0xffff)
}

/// Writes the checksum of `message` (over `pseudo` and the message with its
/// checksum field as zero) into bytes 6..8.
fn write_checksum(message: &mut [u8], pseudo: u64) {
    let value = checksum(pseudo, message);
    if let Some(field) = message.get_mut(CHECKSUM) {
        field.copy_from_slice(&value.to_be_bytes());
    }
}

/// The checksum `message` should carry: RFC 1071 over `pseudo` and the
/// message, its checksum field counted as zero.
pub(super) fn checksum(pseudo: u64, message: &[u8]) -> u16 {
    let before = message.get(..CHECKSUM.start).unwrap_or(message);
    let after = message.get(CHECKSUM.end..).unwrap_or(&[]);
    !fold(pseudo + sum_words(before) + sum_words(after))
}

/// Whether the checksum field in `message` is right: the sum over `pseudo` and
/// the whole message, checksum included, is all ones.
fn verifies(pseudo: u64, message: &[u8]) -> bool {
    fold(pseudo + sum_words(message)) == 0xffff
}

/// The sum of `bytes` as big-endian 16-bit words, an odd last byte padded with
/// zero. A u64 cannot overflow on any slice that fits in memory.
pub(super) fn sum_words(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(2);
    let sum: u64 = words
        .by_ref()
        .map(|word| u64::from(word[0]) << 8 | u64::from(word[1]))
        .sum();
    match words.remainder() {
        [last] => sum + (u64::from(*last) << 8),
        _ => sum,
    }
}

/// Folds the carries back in until 16 bits remain (one's-complement addition).
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}
