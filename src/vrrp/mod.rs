//! VRRP message bytes: the VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798, RFC 9568)
//! advertisement as keepalived 2.2.7 sends and checks it.
//!
//! What it owns: encoding and decoding one VRRP message, its checksums, and the
//! IPv4 header a raw `IPPROTO_VRRP` socket hands over with each datagram
//! ([`split_ipv4`]). What it may not touch: sockets, the clock and every
//! election rule (priorities, the VIP set a peer must carry, the advert interval
//! it must use, TTL 255 on multicast) belong to the callers.
//!
//! # Layout
//!
//! All integers are big-endian. `n` is the address count; addresses are 4 bytes
//! (IPv4) or 16 (IPv6), all of the instance's family.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type=1|     VRID      |   Priority    |  Count Addrs  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! v2: | Auth Type   |  Adver Int (s)|           Checksum            |
//! v3: | Rsvd  |  Max Adver Int (cs, 12 bits)   |     Checksum      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 n addresses, in the sender's order            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  v2 only: 8 bytes of authentication data (zeros for auth type |
//! |  0, the zero-padded password for auth type 1)                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The length is exactly `8 + n × 4 + 8` (v2, IPv4 only), `8 + n × 4` (v3 IPv4)
//! or `8 + n × 16` (v3 IPv6): keepalived rejects a message with any byte more
//! or less, and so does [`decode`].
//!
//! # Checksums
//!
//! The Internet checksum (RFC 1071) in bytes 6..8:
//!
//! - v2: over the message, authentication data included; [`encode`] fills it.
//! - v3 over IPv4: over the IPv4 pseudo-header (source, destination, zero,
//!   protocol 112, message length) and the message, as RFC 5798 §5.2.8 says and
//!   keepalived sends; [`ChecksumForm::MessageOnly`] leaves the pseudo-header
//!   out, as keepalived 2.2.8 and later do with `v3_checksum_as_v2` (2.2.7 has
//!   no such option). The destination is each copy's own (224.0.0.18, or the
//!   unicast peer), so [`encode`] leaves it zero and [`set_ipv4_checksum`] fills
//!   it per destination. A keepalived instance with `old_unicast_checksum` (the
//!   form of keepalived 1.3.6 and earlier) puts 224.0.0.18 in the pseudo-header
//!   of its unicast copies too; passing that as the destination sends or checks
//!   that form.
//! - v3 over IPv6: over the IPv6 pseudo-header; the kernel fills it on send
//!   (`IPV6_CHECKSUM` at offset 6) and drops a wrong one on receive, so
//!   [`encode`] leaves it zero and [`decode`] does not look at it.
//!
//! The fixtures in `tests/vrrp/` are adverts captured from keepalived by
//! `tests/vrrp/capture.sh`; the unit tests decode them and encode them back
//! byte for byte.

mod packet;

pub use packet::{
    decode, encode, peek_vrid, set_ipv4_checksum, split_ipv4, ChecksumForm, Expect, Ipv4Header,
    Packet, V2Auth, Version, VrrpError, HEADER_LEN, IPPROTO_VRRP, MULTICAST_V4, MULTICAST_V6, TTL,
    V2_AUTH_LEN, V3_MAX_INTERVAL_CS,
};

#[cfg(test)]
mod tests;
