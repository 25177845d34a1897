//! The codec against adverts captured from keepalived (`tests/vrrp/*.hex`, made
//! by `tests/vrrp/capture.sh`), each fault it names, and arbitrary input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::packet::{checksum, sum_words};
use super::*;

const V2_PASS_IPV4: &str = include_str!("../../tests/vrrp/v2_pass_ipv4.hex");
const V3_IPV4: &str = include_str!("../../tests/vrrp/v3_ipv4.hex");
const V3_IPV4_UNICAST: &str = include_str!("../../tests/vrrp/v3_ipv4_unicast.hex");
const V3_IPV4_CHECKSUM_AS_V2: &str = include_str!("../../tests/vrrp/v3_ipv4_checksum_as_v2.hex");
const V3_IPV6: &str = include_str!("../../tests/vrrp/v3_ipv6.hex");

/// The address keepalived sent every IPv4 fixture from.
const KEEPALIVED_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The unicast peer of `v3_ipv4_unicast.hex`.
const PEER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// The bytes of a fixture: hex digits, `#` lines are comments.
fn fixture(text: &str) -> Vec<u8> {
    let hex: Vec<u8> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .flat_map(str::bytes)
        .filter(|byte| !byte.is_ascii_whitespace())
        .collect();
    hex.chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ASCII");
            u8::from_str_radix(pair, 16).expect("hex digits")
        })
        .collect()
}

fn password(text: &[u8]) -> [u8; 8] {
    let mut padded = [0; 8];
    padded[..text.len()].copy_from_slice(text);
    padded
}

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
}

fn v6(text: &str) -> IpAddr {
    IpAddr::V6(text.parse().expect("IPv6 address"))
}

fn expect_for(packet: &Packet, ipv6: bool) -> Expect {
    Expect {
        version: packet.version,
        vrid: packet.vrid,
        ipv6,
        auth: packet.auth,
    }
}

#[test]
fn keepalived_v2_password_advert_decodes_and_encodes_back_byte_for_byte() {
    let datagram = fixture(V2_PASS_IPV4);
    let (ip, message) = split_ipv4(&datagram).expect("IPv4 header");
    assert_eq!(
        ip,
        Ipv4Header {
            source: KEEPALIVED_V4,
            destination: MULTICAST_V4,
            ttl: TTL,
        }
    );
    assert_eq!(peek_vrid(message), Some(51));
    let s3cret = V2Auth::Password(password(b"s3cret"));
    let expect = Expect {
        version: Version::V2,
        vrid: 51,
        ipv6: false,
        auth: s3cret,
    };
    let (packet, form) =
        decode(message, &expect, Some((ip.source, ip.destination))).expect("decode");
    assert_eq!(
        packet,
        Packet {
            version: Version::V2,
            vrid: 51,
            priority: 150,
            interval_cs: 100,
            addresses: vec![v4(10), v4(11)],
            auth: s3cret,
        }
    );
    assert_eq!(form, None, "a v2 checksum has one form");
    assert_eq!(encode(&packet).expect("encode"), message);

    // The type and all 8 bytes count, the zero padding included.
    let with = |auth| Expect { auth, ..expect };
    assert_eq!(
        decode(message, &with(V2Auth::None), None),
        Err(VrrpError::AuthTypeMismatch {
            expected: 0,
            got: 1
        })
    );
    for wrong in [
        password(b"s3cres"),
        password(b"s3cret\0x"),
        password(b"s3cret!"),
    ] {
        assert_eq!(
            decode(message, &with(V2Auth::Password(wrong)), None),
            Err(VrrpError::WrongPassword)
        );
    }
}

/// A v3 IPv4 fixture decodes to `packet` with its checksum in `form`, and
/// encoding plus [`set_ipv4_checksum`] for its addresses gives keepalived's bytes.
fn assert_v3_ipv4_fixture(
    text: &str,
    destination: Ipv4Addr,
    form: ChecksumForm,
    packet: &Packet,
) -> Vec<u8> {
    let datagram = fixture(text);
    let (ip, message) = split_ipv4(&datagram).expect("IPv4 header");
    assert_eq!(
        ip,
        Ipv4Header {
            source: KEEPALIVED_V4,
            destination,
            ttl: TTL,
        }
    );
    let pseudo = Some((ip.source, ip.destination));
    assert_eq!(
        decode(message, &expect_for(packet, false), pseudo),
        Ok((packet.clone(), Some(form)))
    );
    let mut encoded = encode(packet).expect("encode");
    assert_eq!(encoded[6..8], [0, 0], "left for set_ipv4_checksum");
    set_ipv4_checksum(&mut encoded, form, ip.source, ip.destination);
    assert_eq!(encoded, message);
    encoded
}

#[test]
fn keepalived_v3_ipv4_multicast_advert_has_the_pseudo_header_checksum() {
    let packet = Packet {
        version: Version::V3,
        vrid: 52,
        priority: 200,
        interval_cs: 150,
        addresses: vec![v4(20), v4(21)],
        auth: V2Auth::None,
    };
    let mut message =
        assert_v3_ipv4_fixture(V3_IPV4, MULTICAST_V4, ChecksumForm::PseudoHeader, &packet);

    // The other form is a different checksum, accepted as such.
    let pseudo_checksum = message[6..8].to_vec();
    set_ipv4_checksum(
        &mut message,
        ChecksumForm::MessageOnly,
        KEEPALIVED_V4,
        MULTICAST_V4,
    );
    assert_ne!(message[6..8], pseudo_checksum);
    assert_eq!(
        decode(
            &message,
            &expect_for(&packet, false),
            Some((KEEPALIVED_V4, MULTICAST_V4))
        ),
        Ok((packet, Some(ChecksumForm::MessageOnly)))
    );
}

#[test]
fn keepalived_v3_ipv4_unicast_advert_checksums_its_peer_as_destination() {
    let packet = Packet {
        version: Version::V3,
        vrid: 54,
        priority: 120,
        interval_cs: 100,
        addresses: vec![v4(40), v4(41)],
        auth: V2Auth::None,
    };
    let message = assert_v3_ipv4_fixture(
        V3_IPV4_UNICAST,
        PEER_V4,
        ChecksumForm::PseudoHeader,
        &packet,
    );

    // Each destination has its own checksum: the copy for another peer (or
    // checked against the multicast group) does not verify.
    let mut to_multicast = message.clone();
    set_ipv4_checksum(
        &mut to_multicast,
        ChecksumForm::PseudoHeader,
        KEEPALIVED_V4,
        MULTICAST_V4,
    );
    assert_ne!(to_multicast[6..8], message[6..8]);
    assert!(matches!(
        decode(
            &message,
            &expect_for(&packet, false),
            Some((KEEPALIVED_V4, MULTICAST_V4))
        ),
        Err(VrrpError::V3Checksum { .. })
    ));
}

#[test]
fn keepalived_v3_checksum_as_v2_advert_has_the_message_only_checksum() {
    let packet = Packet {
        version: Version::V3,
        vrid: 55,
        priority: 180,
        interval_cs: 200,
        addresses: vec![v4(50), v4(51)],
        auth: V2Auth::None,
    };
    assert_v3_ipv4_fixture(
        V3_IPV4_CHECKSUM_AS_V2,
        MULTICAST_V4,
        ChecksumForm::MessageOnly,
        &packet,
    );
}

/// The checksum the kernel puts in an IPv6 VRRP message (RFC 8200 §8.1): over
/// the pseudo-header (source, destination, 32-bit length, 3 zero bytes, next
/// header 112) and the message.
fn ipv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&source.octets());
    pseudo.extend_from_slice(&destination.octets());
    pseudo.extend_from_slice(&u32::try_from(message.len()).expect("short").to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, IPPROTO_VRRP]);
    checksum(sum_words(&pseudo), message)
}

#[test]
fn keepalived_v3_ipv6_advert_decodes_and_its_kernel_checksum_is_the_pseudo_header_one() {
    let datagram = fixture(V3_IPV6);
    let (ipv6_header, message) = datagram.split_at(40);
    assert_eq!(ipv6_header[0] >> 4, 6);
    assert_eq!(ipv6_header[6], IPPROTO_VRRP, "next header");
    assert_eq!(ipv6_header[7], TTL, "hop limit");
    let address = |bytes: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes"));
    let (source, destination) = (address(&ipv6_header[8..24]), address(&ipv6_header[24..40]));
    assert_eq!(
        source,
        "fe80::ff:fe00:1".parse::<Ipv6Addr>().expect("address")
    );
    assert_eq!(destination, MULTICAST_V6);

    let expect = Expect {
        version: Version::V3,
        vrid: 53,
        ipv6: true,
        auth: V2Auth::None,
    };
    let (packet, form) = decode(message, &expect, None).expect("decode");
    assert_eq!(
        packet,
        Packet {
            version: Version::V3,
            vrid: 53,
            priority: 100,
            interval_cs: 50,
            addresses: vec![v6("2001:db8::30"), v6("2001:db8::31")],
            auth: V2Auth::None,
        }
    );
    assert_eq!(form, None, "the kernel checked it");

    let encoded = encode(&packet).expect("encode");
    assert_eq!(encoded[6..8], [0, 0], "left for the kernel");
    assert_eq!(encoded[..6], message[..6]);
    assert_eq!(encoded[8..], message[8..]);
    assert_eq!(
        ipv6_checksum(source, destination, &encoded).to_be_bytes(),
        message[6..8]
    );
}

fn v2_packet() -> Packet {
    Packet {
        version: Version::V2,
        vrid: 7,
        priority: 100,
        interval_cs: 300,
        addresses: vec![v4(1), v4(2)],
        auth: V2Auth::Password(password(b"pw")),
    }
}

fn v3_packet() -> Packet {
    Packet {
        version: Version::V3,
        vrid: 9,
        priority: 254,
        interval_cs: 25,
        addresses: vec![v4(3)],
        auth: V2Auth::None,
    }
}

#[test]
fn decode_names_each_fault_of_a_v2_message() {
    let packet = v2_packet();
    let expect = expect_for(&packet, false);
    let over_ipv6 = Expect {
        ipv6: true,
        ..expect
    };
    let valid = encode(&packet).expect("encode");
    assert_eq!(valid.len(), 24);
    assert_eq!(decode(&valid, &expect, None), Ok((packet, None)));
    let decode_changed = |change: &dyn Fn(&mut Vec<u8>)| {
        let mut message = valid.clone();
        change(&mut message);
        let sum = checksum(0, &message);
        if let Some(field) = message.get_mut(6..8) {
            field.copy_from_slice(&sum.to_be_bytes());
        }
        decode(&message, &expect, None).map(|_| ())
    };

    assert_eq!(
        decode(&valid[..7], &expect, None),
        Err(VrrpError::Truncated { len: 7 })
    );
    assert_eq!(
        decode_changed(&|m| m[0] = 0x31),
        Err(VrrpError::WrongVersion {
            expected: Version::V2,
            got: 3
        })
    );
    assert_eq!(
        decode_changed(&|m| m[0] = 0x22),
        Err(VrrpError::NotAdvertisement { packet_type: 2 })
    );
    assert_eq!(
        decode_changed(&|m| m[1] = 8),
        Err(VrrpError::WrongVrid {
            expected: 7,
            got: 8
        })
    );
    assert_eq!(decode(&valid, &over_ipv6, None), Err(VrrpError::V2OverIpv6));
    assert_eq!(
        decode_changed(&|m| m[3] = 3),
        Err(VrrpError::AddressesTruncated {
            len: 24,
            expected: 28,
            count: 3
        })
    );
    assert_eq!(
        decode_changed(&|m| m.push(0)),
        Err(VrrpError::TrailingBytes {
            len: 25,
            expected: 24,
            count: 2
        })
    );
    let mut corrupt = valid.clone();
    corrupt[2] = 99;
    assert_eq!(
        decode(&corrupt, &expect, None),
        Err(VrrpError::V2Checksum {
            got: u16::from_be_bytes([valid[6], valid[7]]),
            expected: checksum(0, &corrupt),
        })
    );
    assert_eq!(
        decode_changed(&|m| m[4] = 2),
        Err(VrrpError::AhAuthentication)
    );
    assert_eq!(
        decode_changed(&|m| m[4] = 3),
        Err(VrrpError::UnknownAuthType(3))
    );
    assert_eq!(
        decode_changed(&|m| m[4] = 0),
        Err(VrrpError::AuthTypeMismatch {
            expected: 1,
            got: 0
        })
    );
    assert_eq!(
        decode_changed(&|m| m[23] = b'!'),
        Err(VrrpError::WrongPassword)
    );
    assert_eq!(
        decode_changed(&|m| m[5] = 0),
        Err(VrrpError::ZeroInterval {
            version: Version::V2
        })
    );
}

#[test]
fn decode_names_each_fault_of_a_v3_ipv4_message() {
    let packet = v3_packet();
    let expect = expect_for(&packet, false);
    let over_ipv6 = Expect {
        ipv6: true,
        ..expect
    };
    let (source, destination) = (KEEPALIVED_V4, MULTICAST_V4);
    let pseudo = Some((source, destination));
    let mut valid = encode(&packet).expect("encode");
    set_ipv4_checksum(&mut valid, ChecksumForm::PseudoHeader, source, destination);
    let decode_changed = |change: &dyn Fn(&mut Vec<u8>)| {
        let mut message = valid.clone();
        change(&mut message);
        set_ipv4_checksum(
            &mut message,
            ChecksumForm::PseudoHeader,
            source,
            destination,
        );
        decode(&message, &expect, pseudo)
    };

    assert_eq!(
        decode(&valid, &expect, None),
        Err(VrrpError::MissingPseudoHeader)
    );
    assert_eq!(
        decode(&valid, &over_ipv6, None),
        Err(VrrpError::AddressesTruncated {
            len: 12,
            expected: 24,
            count: 1
        })
    );
    // Reserved bits are ignored on receive (RFC 5798 §5.2.5).
    assert_eq!(
        decode_changed(&|m| m[4] |= 0xf0),
        Ok((packet.clone(), Some(ChecksumForm::PseudoHeader)))
    );
    assert_eq!(
        decode_changed(&|m| {
            m[4] = 0xf0;
            m[5] = 0;
        }),
        Err(VrrpError::ZeroInterval {
            version: Version::V3
        })
    );

    let mut corrupt = valid.clone();
    corrupt[2] = 1;
    let mut pseudo_header = corrupt.clone();
    set_ipv4_checksum(
        &mut pseudo_header,
        ChecksumForm::PseudoHeader,
        source,
        destination,
    );
    let mut message_only = corrupt.clone();
    set_ipv4_checksum(
        &mut message_only,
        ChecksumForm::MessageOnly,
        source,
        destination,
    );
    let field = |m: &[u8]| u16::from_be_bytes([m[6], m[7]]);
    let error = decode(&corrupt, &expect, pseudo).expect_err("corrupt");
    assert_eq!(
        error,
        VrrpError::V3Checksum {
            got: field(&valid),
            pseudo_header: field(&pseudo_header),
            message_only: field(&message_only),
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "VRRP checksum {:#06x} matches neither form (pseudo-header {:#06x}, message-only {:#06x})",
            field(&valid),
            field(&pseudo_header),
            field(&message_only)
        )
    );
}

#[test]
fn split_ipv4_names_each_fault_and_skips_options() {
    let datagram = fixture(V2_PASS_IPV4);
    assert_eq!(datagram.len(), 44);
    let split_changed = |change: &dyn Fn(&mut Vec<u8>)| {
        let mut changed = datagram.clone();
        change(&mut changed);
        split_ipv4(&changed).map(|(header, message)| (header, message.len()))
    };

    assert_eq!(
        split_ipv4(&datagram[..19]),
        Err(VrrpError::Ipv4Truncated { len: 19 })
    );
    assert_eq!(split_changed(&|d| d[0] = 0x65), Err(VrrpError::NotIpv4(6)));
    assert_eq!(
        split_changed(&|d| d[0] = 0x44),
        Err(VrrpError::BadIpv4HeaderLength {
            header_len: 16,
            len: 44
        })
    );
    assert_eq!(
        split_changed(&|d| d[0] = 0x4f),
        Err(VrrpError::BadIpv4HeaderLength {
            header_len: 60,
            len: 44
        })
    );
    assert_eq!(
        split_changed(&|d| d.push(0)),
        Err(VrrpError::Ipv4TotalLength {
            total_len: 44,
            len: 45
        })
    );
    assert_eq!(
        split_changed(&|d| d[6] = 0x20),
        Err(VrrpError::Fragment {
            offset: 0,
            more_fragments: true
        })
    );
    assert_eq!(
        split_changed(&|d| d[7] = 1),
        Err(VrrpError::Fragment {
            offset: 8,
            more_fragments: false
        })
    );
    let ah = split_changed(&|d| d[9] = 51).expect_err("AH");
    assert_eq!(ah, VrrpError::NotVrrp { protocol: 51 });
    assert_eq!(
        ah.to_string(),
        "IP protocol 51 (IPsec AH), expected VRRP (112)"
    );
    // Don't Fragment is no fragment.
    assert!(split_changed(&|d| d[6] = 0x40).is_ok());

    // One word of options (IHL 6): the message starts after them.
    let mut with_options = datagram[..20].to_vec();
    with_options[0] = 0x46;
    with_options[3] += 4;
    with_options.extend_from_slice(&[1, 1, 1, 0]);
    with_options.extend_from_slice(&datagram[20..]);
    let (header, message) = split_ipv4(&with_options).expect("options");
    assert_eq!(header.source, KEEPALIVED_V4);
    assert_eq!(message, &datagram[20..]);
}

#[test]
fn encode_refuses_what_the_wire_cannot_carry() {
    let v2 = v2_packet();
    let v3 = v3_packet();
    let refuse = |packet: Packet| encode(&packet).expect_err("refused");

    assert_eq!(
        refuse(Packet {
            vrid: 0,
            ..v2.clone()
        }),
        VrrpError::ZeroVrid
    );
    for interval_cs in [0, 150, 25_600] {
        assert_eq!(
            refuse(Packet {
                interval_cs,
                ..v2.clone()
            }),
            VrrpError::V2IntervalOutOfRange { interval_cs }
        );
    }
    assert!(encode(&Packet {
        interval_cs: 25_500,
        ..v2.clone()
    })
    .is_ok());
    for interval_cs in [0, 4096] {
        assert_eq!(
            refuse(Packet {
                interval_cs,
                ..v3.clone()
            }),
            VrrpError::V3IntervalOutOfRange { interval_cs }
        );
    }
    assert_eq!(
        refuse(Packet {
            addresses: vec![v4(1), v6("2001:db8::1")],
            ..v3.clone()
        }),
        VrrpError::MixedFamilies
    );
    assert_eq!(
        refuse(Packet {
            addresses: vec![v6("2001:db8::1")],
            ..v2.clone()
        }),
        VrrpError::V2OverIpv6
    );
    assert_eq!(
        refuse(Packet {
            addresses: vec![v4(1); 256],
            ..v3.clone()
        }),
        VrrpError::TooManyAddresses { count: 256 }
    );
    assert!(encode(&Packet {
        addresses: vec![v4(1); 255],
        ..v3.clone()
    })
    .is_ok());
    assert_eq!(
        refuse(Packet {
            auth: v2.auth,
            ..v3
        }),
        VrrpError::V3Password
    );
    assert_eq!(format!("{:?}", v2.auth), "Password(..)", "kept out of logs");
}

#[test]
fn short_slices_are_left_alone() {
    assert_eq!(peek_vrid(&[0x21, 51, 100, 1, 0, 1, 0]), None);
    let mut short = [0x31, 1, 100, 0, 0, 100, 0];
    set_ipv4_checksum(
        &mut short,
        ChecksumForm::PseudoHeader,
        KEEPALIVED_V4,
        MULTICAST_V4,
    );
    assert_eq!(short, [0x31, 1, 100, 0, 0, 100, 0]);
}

/// Any packet [`encode`] accepts, with the family it is sent over.
fn arbitrary_packet() -> impl Strategy<Value = (Packet, bool)> {
    (
        (any::<bool>(), any::<bool>(), 1u8..=255, any::<u8>()),
        (1u16..=V3_MAX_INTERVAL_CS, 1u8..=255),
        prop::collection::vec(any::<[u8; 16]>(), 0..12),
        prop::option::of(any::<[u8; 8]>()),
    )
        .prop_map(
            |((v3, over_ipv6, vrid, priority), (v3_cs, v2_seconds), raw, password)| {
                let ipv6 = v3 && over_ipv6;
                let addresses = raw
                    .into_iter()
                    .map(|o| {
                        if ipv6 {
                            IpAddr::V6(Ipv6Addr::from(o))
                        } else {
                            IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
                        }
                    })
                    .collect();
                let (version, interval_cs, auth) = if v3 {
                    (Version::V3, v3_cs, V2Auth::None)
                } else {
                    let auth = password.map_or(V2Auth::None, V2Auth::Password);
                    (Version::V2, u16::from(v2_seconds) * 100, auth)
                };
                let packet = Packet {
                    version,
                    vrid,
                    priority,
                    interval_cs,
                    addresses,
                    auth,
                };
                (packet, ipv6)
            },
        )
}

fn arbitrary_expect() -> impl Strategy<Value = Expect> {
    (
        any::<bool>(),
        any::<u8>(),
        any::<bool>(),
        prop::option::of(any::<[u8; 8]>()),
    )
        .prop_map(|(v3, vrid, ipv6, password)| Expect {
            version: if v3 { Version::V3 } else { Version::V2 },
            vrid,
            ipv6,
            auth: password.map_or(V2Auth::None, V2Auth::Password),
        })
}

/// The message for `packet` as it goes out: v3 IPv4 with its checksum.
fn sent(
    packet: &Packet,
    ipv6: bool,
    form: ChecksumForm,
    source: Ipv4Addr,
    destination: Ipv4Addr,
) -> Vec<u8> {
    let mut message = encode(packet).expect("encode");
    if packet.version == Version::V3 && !ipv6 {
        set_ipv4_checksum(&mut message, form, source, destination);
    }
    message
}

proptest! {
    #[test]
    fn what_encode_sends_decodes_back(
        (packet, ipv6) in arbitrary_packet(),
        message_only in any::<bool>(),
        source in any::<[u8; 4]>(),
        destination in any::<[u8; 4]>(),
    ) {
        let form = if message_only { ChecksumForm::MessageOnly } else { ChecksumForm::PseudoHeader };
        let (source, destination) = (Ipv4Addr::from(source), Ipv4Addr::from(destination));
        let message = sent(&packet, ipv6, form, source, destination);
        let (decoded, found) = decode(&message, &expect_for(&packet, ipv6), Some((source, destination)))
            .expect("decodes");
        prop_assert_eq!(&decoded, &packet);
        match found {
            // The form found gives the same bytes (a pseudo-header summing to
            // zero makes both forms one checksum).
            Some(found) => prop_assert_eq!(&sent(&decoded, ipv6, found, source, destination), &message),
            None => prop_assert!(packet.version == Version::V2 || ipv6),
        }
        // Every shorter slice is refused.
        for len in 0..message.len() {
            prop_assert!(decode(&message[..len], &expect_for(&packet, ipv6), Some((source, destination))).is_err());
        }
    }

    #[test]
    fn any_single_bit_flip_in_a_v2_message_is_refused(
        (packet, _) in arbitrary_packet(),
        bit in any::<prop::sample::Index>(),
    ) {
        prop_assume!(packet.version == Version::V2);
        let mut message = encode(&packet).expect("encode");
        let bit = bit.index(message.len() * 8);
        message[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decode(&message, &expect_for(&packet, false), None).is_err());
    }

    #[test]
    fn no_input_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        expect in arbitrary_expect(),
        pseudo in prop::option::of(any::<([u8; 4], [u8; 4])>()),
    ) {
        let pseudo = pseudo.map(|(s, d)| (Ipv4Addr::from(s), Ipv4Addr::from(d)));
        let _ = decode(&bytes, &expect, pseudo);
        let _ = peek_vrid(&bytes);
        if let Ok((header, message)) = split_ipv4(&bytes) {
            let _ = decode(message, &expect, Some((header.source, header.destination)));
        }
        let mut copy = bytes.clone();
        set_ipv4_checksum(&mut copy, ChecksumForm::PseudoHeader, Ipv4Addr::LOCALHOST, MULTICAST_V4);
        prop_assert_eq!(copy.get(..6), bytes.get(..6));
    }

    #[test]
    fn edited_messages_do_not_panic(
        (packet, ipv6) in arbitrary_packet(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut message = sent(&packet, ipv6, ChecksumForm::PseudoHeader, KEEPALIVED_V4, MULTICAST_V4);
        for (at, value) in edits {
            let at = at.index(message.len());
            message[at] = value;
        }
        message.truncate(cut.index(message.len() + 1));
        let _ = decode(&message, &expect_for(&packet, ipv6), Some((KEEPALIVED_V4, MULTICAST_V4)));
        let _ = decode(&message, &expect_for(&packet, !ipv6), None);
    }
}
