//! The advert packet: byte layout, encode/decode, authentication and replay guard.
//!
//! Every node of a group multicasts (or unicasts) one advert per advert interval. This
//! module turns an [`Advert`] into bytes and back. It has no sockets and no clock reads;
//! the transport hands it datagrams, the election hands it [`AdvertBody`]s.
//!
//! # Layout
//!
//! All integers are big-endian (network order). `N` is the node name length.
//!
//! ```text
//! offset size field
//! 0      4    magic "VIPD"
//! 4      1    version = 1
//! 5      1    auth type (0 = none: unkeyed SHA-256 checksum, 1 = HMAC-SHA256)
//! 6      1    group id (1..=255)
//! 7      1    priority (0..=255, 0 = releasing)
//! 8      2    advert interval in centiseconds (1..=4095)
//! 10     1    flags (bits defined by Flags; unknown bits rejected)
//! 11     1    node name length N (1..=64)
//! 12     8    node id
//! 20     8    boot id
//! 28     8    sequence
//! 36     8    promote epoch
//! 44     8    VIP set digest
//! 52     N    node name (UTF-8)
//! 52+N   E    extension area: E = 0..=256 bytes of type-length-value fields
//! 52+N+E 32   MAC: HMAC-SHA256(key, bytes 0..52+N+E), or SHA-256 of them when auth type is 0
//! ```
//!
//! The same, RFC style (bit 0 is the most significant bit of byte 0):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  magic "VIPD" (0x56 0x49 0x50 0x44)           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  version = 1  |   auth type   |   group id    |   priority    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   advert interval (centiseconds)  |     flags     |  name len N |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                        node id (64 bits)                      +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                        boot id (64 bits)                      +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                        sequence (64 bits)                     +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                     promote epoch (64 bits)                   +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                    VIP set digest (8 bytes)                   +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        node name (N bytes of UTF-8, no padding) ...           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  extension area (E bytes, often none): TLVs, see below ...    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        MAC (32 bytes, the last 32 of the datagram) ...        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! flags byte:  7 6 5 4 3 2 1 0   (bit 0 = least significant)
//!             +-+-+-+-+-+-+-+-+
//!             |0|0|0|S|F|P|D|M|  M = MASTER, D = DRAINED, P = PROMOTED,
//!             +-+-+-+-+-+-+-+-+  F = FAULT, S = SHUTTING_DOWN; 0 = must be zero
//! ```
//!
//! The total length is `52 + N + E + 32` bytes: at least 85, at most
//! [`MAX_PACKET_LEN`] (404). Without extensions (E = 0) that is exactly the layout of the
//! first vipd releases, byte for byte. The MAC is always the last 32 bytes, so the
//! extension area is authenticated like everything else, and every valid advert has
//! exactly one encoding: `encode_with_extensions(decode_extended(bytes)) == bytes`.
//!
//! # Extension area
//!
//! A sequence of fields, each `type (1 byte) | length L (1 byte) | value (L bytes)`, packed
//! with no padding, filling the area exactly; at most [`MAX_EXTENSIONS_LEN`] bytes in all.
//! A field whose header or value runs past the end of the area is rejected
//! ([`WireError::InvalidField`], field "extension area", saying which type at which
//! offset and how many bytes were missing). Types this build does not know are ignored:
//! [`decode`] returns the advert without them, [`decode_extended`] returns every field
//! as received.
//!
//! Defined types (this build):
//!
//! - `1` ([`EXT_SOFTWARE_VERSION`]): the sender's software version, UTF-8 (e.g. `0.1.0`),
//!   at most [`MAX_SOFTWARE_VERSION_LEN`] bytes; informational only (shown per peer in
//!   `vipd status`, useful during a rolling upgrade). [`encode`] never adds it: the daemon
//!   adds it ([`software_version_extension`]) when it sends, so the golden tests of the
//!   fixed layout (tests/wire.rs) keep their bytes. The daemon sends it unless the
//!   environment variable `VIPD_WIRE_SEND_EXTENSIONS=0` is set: a testing-only switch that
//!   makes this build send byte for byte what the release before it sent (no extension
//!   area), standing in for that release in tests/wire_upgrade.rs; the extension area's
//!   decoder is the same in both, so only what is sent differs.
//! - `2` ([`EXT_LINK_ADDRESS`]): the sender's Ethernet address on the advert's
//!   interface, 6 bytes. It tells a master which MACs are its peers', so a peer
//!   claiming the VIP (two masters, the election's business) is not taken for a
//!   foreign host answering for it (see [`crate::conflict`]). Informational like type 1:
//!   a field of another length is ignored, and a node that never sends it is
//!   only never exempt from the foreign-MAC alarm. Sent under the same switch as type 1.
//! - `3` ([`EXT_REPLACED_MASTER`]): the node name (UTF-8, 1..=[`MAX_NAME_LEN`] bytes)
//!   of the master the sender replaced on purpose: it heard that master and preempted
//!   it, or was promoted over it. Only a master sends it, in its master adverts during a
//!   bounded window after that takeover (the master-down interval; the election's rule
//!   "Planned overlaps"), never otherwise. The node it names, hearing it while still
//!   master itself, counts the overlap as planned instead of as two masters.
//!   Informational like types 1 and 2: it never changes who steps down; a node that
//!   ignores it, or never receives it, counts that overlap as two masters, as before
//!   the field. A field that is empty, longer than a node name or not UTF-8 is
//!   ignored. Sent under the same switch as type 1.
//! - `4` ([`EXT_CLAIM_PENDING`]): empty. The sender is master but has not
//!   claimed the VIPs yet: its `before_claim` gate (a promotion) or its
//!   conflict probe is still running. Only a master sends it, in every master
//!   advert until it claims, and it sends one advert without it as soon as it
//!   has claimed. A draining node reads it to know whether its successor
//!   serves (`vipd drain --wait` returns then) or failed before serving (the
//!   drain is rolled back: the instance core's rule "A drain rolls back").
//!   Informational like types 1 to 3: it never changes who is master; a node
//!   that ignores it takes a master for serving as soon as it says master.
//!   A field with a value is ignored. Sent under the same switch as type 1.
//!
//! # Compatibility rule
//!
//! - A node accepts exactly one version byte, [`VERSION`] (1); anything else is
//!   [`WireError::UnsupportedVersion`]. A change that a node must understand to elect
//!   correctly (a new meaning for a fixed field, a new flag bit, a field it may not
//!   ignore) needs a new version, and two versions do not interoperate: such a change
//!   cannot be rolled out one node at a time.
//! - Within version 1, everything new goes into the extension area as a new type, and a
//!   node that ignores the field must still elect correctly: extensions inform, they
//!   never decide who is master.
//! - Accept before send: builds from this one on accept adverts with an extension area
//!   (ignoring unknown types); earlier builds reject any advert longer than
//!   `52 + N + 32` (as a bad MAC or a length mismatch). So a release may send a field
//!   by default only if the release before it already accepts extension areas. Rolling
//!   upgrades are supported from one release to the next: upgrade every node, one at a
//!   time, and only then turn on anything new that the next release sends.
//!
//! # Authentication
//!
//! With [`Auth::HmacSha256`] the MAC is HMAC-SHA256 under the group's shared key over
//! everything before it; it is checked in constant time. With [`Auth::None`] the same 32
//! bytes hold a plain SHA-256 of everything before them. That offers no protection against
//! a forger (anyone can compute it), but it does detect corruption that the UDP checksum
//! missed (a bad NIC, a mangling middlebox, a bug in a peer): a corrupted advert must never
//! be read as, say, priority 0 or a different node id. SHA-256 rejects every single-bit
//! flip (and any other accidental change, except with probability 2^-256), and keeping one
//! layout for both modes means auth type and length are the only things that differ.
//!
//! Key rotation: a receiver may hold further verify-only keys besides the one it signs
//! with ([`decode_with_keys`]); an advert is accepted if its MAC matches any of them. Every
//! key is tried on every advert, whichever matches, so the time taken says nothing about
//! which key (or how much of a MAC) matched.
//!
//! A receiver configured for one auth type rejects adverts of the other, in both
//! directions: an HMAC receiver must not accept unauthenticated adverts (downgrade), and a
//! receiver without a key cannot verify keyed ones.
//!
//! # Validation order
//!
//! [`decode`] checks, in order: length bounds, magic, version (these three are
//! [`peek_group`]), group, auth type, name length and total length (room for the name
//! and the MAC, at most [`MAX_EXTENSIONS_LEN`] between them), then the MAC, and only then
//! the meaning of the authenticated fields (interval, flags, UTF-8 name, the extension
//! area's fields).
//! No field other than the framing is interpreted before the MAC has been verified.
//!
//! Replay protection is separate: run every decoded advert through a [`ReplayGuard`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The first four bytes of every advert.
pub const MAGIC: [u8; 4] = *b"VIPD";
/// The only protocol version this build speaks.
pub const VERSION: u8 = 1;
/// The longest valid advert: header, a 64-byte name, a full extension area and the MAC.
pub const MAX_PACKET_LEN: usize = 404;
/// The longest extension area, in bytes.
pub const MAX_EXTENSIONS_LEN: usize = 256;
/// The longest node name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;
/// The shortest advert interval, in centiseconds (10 ms).
pub const MIN_INTERVAL_CS: u16 = 1;
/// The longest advert interval, in centiseconds (40.95 s).
pub const MAX_INTERVAL_CS: u16 = 4095;

/// Bytes before the node name.
const HEADER_LEN: usize = 52;
/// Bytes of MAC (or checksum) after the node name.
const MAC_LEN: usize = 32;
/// Header plus MAC: the length needed before the name length can be trusted to frame
/// the packet. A valid advert is at least one byte longer (names are never empty).
const FIXED_LEN: usize = HEADER_LEN + MAC_LEN;

const _: () = assert!(MAX_PACKET_LEN == HEADER_LEN + MAX_NAME_LEN + MAX_EXTENSIONS_LEN + MAC_LEN);
/// Bytes of a TLV's type and length.
const TLV_HEADER_LEN: usize = 2;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_AUTH: usize = 5;
const OFF_GROUP: usize = 6;
const OFF_PRIORITY: usize = 7;
const OFF_INTERVAL: usize = 8;
const OFF_FLAGS: usize = 10;
const OFF_NAME_LEN: usize = 11;
const OFF_NODE_ID: usize = 12;
const OFF_BOOT_ID: usize = 20;
const OFF_SEQUENCE: usize = 28;
const OFF_PROMOTE_EPOCH: usize = 36;
const OFF_VIP_DIGEST: usize = 44;
const OFF_NAME: usize = HEADER_LEN;

const AUTH_TYPE_NONE: u8 = 0;
const AUTH_TYPE_HMAC_SHA256: u8 = 1;

// Field names used in `WireError::InvalidField`.
const FIELD_GROUP: &str = "group id";
const FIELD_INTERVAL: &str = "advert interval";
const FIELD_FLAGS: &str = "flags";
const FIELD_NAME: &str = "node name";
const FIELD_EXTENSIONS: &str = "extension area";

/// Flag bits carried in every advert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// The sender holds the VIPs (it is master, possibly handing over).
    pub const MASTER: u8 = 0x01;
    /// The sender is drained for maintenance and will not become master.
    pub const DRAINED: u8 = 0x02;
    /// The sender was promoted by an operator (see `AdvertBody::promote_epoch`).
    pub const PROMOTED: u8 = 0x04;
    /// The sender's health checks failed; it will not become master.
    pub const FAULT: u8 = 0x08;
    /// The sender is shutting down.
    pub const SHUTTING_DOWN: u8 = 0x10;
    /// Every bit this version defines; others are rejected on decode.
    pub const ALL: u8 = 0x1f;

    /// Whether every bit of `bit` is set.
    pub fn contains(self, bit: u8) -> bool {
        self.0 & bit == bit
    }

    /// Sets (`on`) or clears every bit of `bit`.
    pub fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.0 |= bit
        } else {
            self.0 &= !bit
        }
    }

    /// The set bits that this version does not define (0 for a valid advert).
    pub fn unknown_bits(self) -> u8 {
        self.0 & !Self::ALL
    }
}

/// What the election says in an advert. The transport adds `boot_id` and `sequence`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvertBody {
    /// 1..=255, the same on every peer of one instance.
    pub group: u8,
    /// Effective priority; 0 means "I am releasing the VIPs, take over now".
    pub priority: u8,
    /// The sender's current advert interval in centiseconds (1..=4095).
    pub interval_cs: u16,
    /// The sender's state bits; see [`Flags`].
    pub flags: Flags,
    /// Stable node identity; breaks priority ties (higher wins).
    pub node_id: u64,
    /// Lamport counter of promotions: a higher epoch is a later promotion.
    pub promote_epoch: u64,
    /// First 8 bytes of SHA-256 over the sender's sorted VIP list; see [`vip_digest`].
    pub vip_digest: [u8; 8],
    /// The sender's node name, 1..=64 bytes of UTF-8.
    pub node_name: String,
}

/// One type-length-value field of the extension area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// What the value means; types this build does not know are ignored.
    pub kind: u8,
    /// 0..=255 bytes.
    pub value: Vec<u8>,
}

/// A whole advert as it travels on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    /// What the election said.
    pub body: AdvertBody,
    /// Identifies one run of the sender's daemon; increases on every start.
    pub boot_id: u64,
    /// Increases with every advert the sender sends within one boot.
    pub sequence: u64,
}

/// A shared HMAC key, at least [`AuthKey::MIN_LEN`] bytes.
///
/// Its `Debug` output never shows the key. It keeps the HMAC state already
/// keyed with it (the key schedule, two SHA-256 blocks), so each advert signed
/// or verified clones that state instead of hashing the key again.
#[derive(Clone)]
pub struct AuthKey {
    bytes: Vec<u8>,
    keyed: HmacSha256,
}

impl PartialEq for AuthKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for AuthKey {}

impl AuthKey {
    /// The shortest key accepted, in bytes (128 bits).
    pub const MIN_LEN: usize = 16;

    /// Wraps `bytes` as a key; fails with [`WireError::KeyTooShort`] below 16 bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, WireError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(WireError::KeyTooShort { len: bytes.len() });
        }
        // HMAC accepts keys of any length (long ones are hashed), so this never
        // fails; map the error anyway rather than panic.
        let keyed = HmacSha256::new_from_slice(&bytes).map_err(|e| WireError::InvalidField {
            field: "auth key",
            reason: e.to_string(),
        })?;
        Ok(Self { bytes, keyed })
    }

    /// The key length in bytes (the key itself is not exposed).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a key has at least 16 bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A fresh HMAC under this key: a copy of the keyed state.
    fn hmac(&self) -> HmacSha256 {
        self.keyed.clone()
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthKey(<redacted>)")
    }
}

/// How adverts of a group are authenticated. Every peer of a group must agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No authentication: the MAC field holds an unkeyed SHA-256 checksum (auth type 0).
    None,
    /// HMAC-SHA256 under a shared key (auth type 1).
    HmacSha256(AuthKey),
}

impl Auth {
    /// The auth type byte this mode puts on the wire.
    pub fn wire_type(&self) -> u8 {
        match self {
            Self::None => AUTH_TYPE_NONE,
            Self::HmacSha256(_) => AUTH_TYPE_HMAC_SHA256,
        }
    }

    /// A short name for logs and errors: `"none"` or `"hmac-sha256"`.
    pub fn name(&self) -> &'static str {
        auth_type_name(self.wire_type())
    }

    /// The MAC (or checksum) over `signed`.
    fn mac(&self, signed: &[u8]) -> Result<[u8; MAC_LEN], WireError> {
        match self {
            Self::None => Ok(Sha256::digest(signed).into()),
            Self::HmacSha256(key) => {
                let mut mac = key.hmac();
                mac.update(signed);
                Ok(mac.finalize().into_bytes().into())
            }
        }
    }

    /// Checks `tag` against `signed` under this key and every key of `also_accept`
    /// (ignored without HMAC); constant-time for HMAC.
    fn verify(&self, signed: &[u8], tag: &[u8], also_accept: &[AuthKey]) -> Result<(), WireError> {
        match self {
            // The checksum is not a secret (anyone can compute it), so a plain
            // comparison leaks nothing worth a timing attack.
            Self::None => {
                if Sha256::digest(signed).as_slice() == tag {
                    Ok(())
                } else {
                    Err(WireError::BadMac)
                }
            }
            Self::HmacSha256(key) => {
                // Every key is checked (each in constant time, by `verify_slice`) and
                // the results are OR-ed without a branch, so neither a mismatch nor
                // which key matched shows in the timing.
                let mut matched = 0u8;
                for key in std::iter::once(key).chain(also_accept) {
                    let mut mac = key.hmac();
                    mac.update(signed);
                    matched |= u8::from(mac.verify_slice(tag).is_ok());
                }
                if matched == 1 {
                    Ok(())
                } else {
                    Err(WireError::BadMac)
                }
            }
        }
    }
}

fn auth_type_name(wire_type: u8) -> &'static str {
    match wire_type {
        AUTH_TYPE_NONE => "none",
        AUTH_TYPE_HMAC_SHA256 => "hmac-sha256",
        _ => "unknown",
    }
}

/// Why an advert could not be encoded, decoded or accepted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the layout requires.
    #[error("advert truncated: {len} bytes, need at least {need}")]
    Truncated {
        /// Bytes received.
        len: usize,
        /// Bytes needed: 84 before the name length is known, else `52 + N + 32`.
        need: usize,
    },
    /// Longer than any valid advert.
    #[error("advert oversized: {len} bytes, at most {max} allowed")]
    Oversized {
        /// Bytes received.
        len: usize,
        /// [`MAX_PACKET_LEN`].
        max: usize,
    },
    /// Longer than its name length allows: more than [`MAX_EXTENSIONS_LEN`] bytes
    /// between the name and the MAC.
    #[error(
        "advert length mismatch: {len} bytes, but name length {name_len} means at most {expected}"
    )]
    LengthMismatch {
        /// Bytes received.
        len: usize,
        /// `52 + name_len + 256 + 32`.
        expected: usize,
        /// The name length byte.
        name_len: usize,
    },
    /// The first four bytes are not `"VIPD"`: not an advert at all.
    #[error("bad magic: not a vipd advert (first 4 bytes are not \"VIPD\")")]
    BadMagic,
    /// A version this build does not speak.
    #[error("unsupported advert version {0} (this build speaks version 1)")]
    UnsupportedVersion(u8),
    /// An advert for another group.
    #[error("advert for group {got}, expected group {expected}")]
    WrongGroup {
        /// The group the receiver serves.
        expected: u8,
        /// The group in the advert.
        got: u8,
    },
    /// The advert's auth type differs from the receiver's configuration.
    #[error(
        "auth type mismatch: configured {expected}, advert has auth type {got} ({})",
        auth_type_name(*got)
    )]
    AuthTypeMismatch {
        /// The receiver's [`Auth::name`].
        expected: &'static str,
        /// The advert's auth type byte.
        got: u8,
    },
    /// The MAC (or checksum) does not match: forged, corrupted, or a different key.
    #[error("bad MAC: advert forged, corrupted, or signed with a different key")]
    BadMac,
    /// A VRRP datagram that does not decode or check out (VRRP mode).
    #[error("VRRP: {0}")]
    Vrrp(#[from] crate::vrrp::VrrpError),
    /// A VRRPv2 advert with another interval than ours (RFC 3768 §7.1:
    /// dropped, as keepalived drops ours).
    #[error("VRRPv2 advert interval {}s differs from ours ({}s); VRRPv2 peers must use the same advert_interval", theirs_cs / 100, ours_cs / 100)]
    VrrpIntervalMismatch { theirs_cs: u16, ours_cs: u16 },
    /// A VRRP advert whose address list is not our VIP set (keepalived
    /// drops ours in that case too).
    #[error("VRRP advert lists {theirs} addresses that are not our {ours} VIPs; every node of a VRID must list the same VIPs")]
    VrrpAddressSetMismatch { theirs: usize, ours: usize },
    /// A field holds a value the protocol does not allow.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Not newer than the last advert accepted from the same node.
    #[error(
        "replayed or stale advert from node {node_id}: boot {boot_id} sequence {sequence}, \
         but already accepted boot {last_boot_id} sequence {last_sequence}"
    )]
    Replay {
        /// The sender.
        node_id: u64,
        /// The advert's boot id.
        boot_id: u64,
        /// The advert's sequence.
        sequence: u64,
        /// The boot id last accepted from this sender.
        last_boot_id: u64,
        /// The sequence last accepted from this sender.
        last_sequence: u64,
    },
    /// An HMAC key shorter than [`AuthKey::MIN_LEN`].
    #[error("auth key too short: {len} bytes, need at least 16")]
    KeyTooShort {
        /// The key's length in bytes.
        len: usize,
    },
}

fn invalid(field: &'static str, reason: String) -> WireError {
    WireError::InvalidField { field, reason }
}

/// Checks the fields whose ranges the byte layout does not enforce by itself.
fn validate_body(body: &AdvertBody) -> Result<(), WireError> {
    if body.group == 0 {
        return Err(invalid(
            FIELD_GROUP,
            "0 is reserved; groups are 1..=255".into(),
        ));
    }
    validate_interval(body.interval_cs)?;
    validate_flags(body.flags)?;
    validate_name_len(body.node_name.len())
}

fn validate_interval(cs: u16) -> Result<(), WireError> {
    if !(MIN_INTERVAL_CS..=MAX_INTERVAL_CS).contains(&cs) {
        return Err(invalid(
            FIELD_INTERVAL,
            format!("{cs} centiseconds, must be {MIN_INTERVAL_CS}..={MAX_INTERVAL_CS}"),
        ));
    }
    Ok(())
}

fn validate_flags(flags: Flags) -> Result<(), WireError> {
    let unknown = flags.unknown_bits();
    if unknown != 0 {
        return Err(invalid(
            FIELD_FLAGS,
            format!(
                "unknown bits {unknown:#04x} set (known bits are {:#04x})",
                Flags::ALL
            ),
        ));
    }
    Ok(())
}

fn validate_name_len(len: usize) -> Result<(), WireError> {
    if len == 0 || len > MAX_NAME_LEN {
        return Err(invalid(
            FIELD_NAME,
            format!("{len} bytes long, must be 1..={MAX_NAME_LEN}"),
        ));
    }
    Ok(())
}

/// Encodes `advert` and appends its MAC (or checksum) under `auth`.
///
/// Rejects what [`decode`] would reject: group 0, interval 0 or above 4095, an empty name
/// or one longer than 64 bytes, and flag bits outside [`Flags::ALL`].
pub fn encode(advert: &Advert, auth: &Auth) -> Result<Vec<u8>, WireError> {
    encode_with_extensions(advert, &[], auth)
}

/// [`encode`] with `extensions` in the extension area, in the order given.
///
/// Fails if a value is longer than 255 bytes or the area longer than
/// [`MAX_EXTENSIONS_LEN`]. Mind the compatibility rule (module doc): builds before the
/// extension area reject adverts that carry one.
pub fn encode_with_extensions(
    advert: &Advert,
    extensions: &[Extension],
    auth: &Auth,
) -> Result<Vec<u8>, WireError> {
    let body = &advert.body;
    validate_body(body)?;
    let name = body.node_name.as_bytes();
    let name_len = u8::try_from(name.len())
        .map_err(|_| invalid(FIELD_NAME, format!("{} bytes long", name.len())))?;

    let mut buf = Vec::with_capacity(HEADER_LEN + name.len() + MAC_LEN);
    buf.extend_from_slice(&MAGIC);
    buf.push(VERSION);
    buf.push(auth.wire_type());
    buf.push(body.group);
    buf.push(body.priority);
    buf.extend_from_slice(&body.interval_cs.to_be_bytes());
    buf.push(body.flags.0);
    buf.push(name_len);
    buf.extend_from_slice(&body.node_id.to_be_bytes());
    buf.extend_from_slice(&advert.boot_id.to_be_bytes());
    buf.extend_from_slice(&advert.sequence.to_be_bytes());
    buf.extend_from_slice(&body.promote_epoch.to_be_bytes());
    buf.extend_from_slice(&body.vip_digest);
    debug_assert_eq!(buf.len(), HEADER_LEN);
    buf.extend_from_slice(name);
    let mut area_len = 0;
    for extension in extensions {
        let len = u8::try_from(extension.value.len()).map_err(|_| {
            invalid(
                FIELD_EXTENSIONS,
                format!(
                    "type {} has {} value bytes, at most 255",
                    extension.kind,
                    extension.value.len()
                ),
            )
        })?;
        area_len += TLV_HEADER_LEN + extension.value.len();
        if area_len > MAX_EXTENSIONS_LEN {
            return Err(invalid(
                FIELD_EXTENSIONS,
                format!("{area_len} bytes or more, at most {MAX_EXTENSIONS_LEN}"),
            ));
        }
        buf.push(extension.kind);
        buf.push(len);
        buf.extend_from_slice(&extension.value);
    }
    let mac = auth.mac(&buf)?;
    buf.extend_from_slice(&mac);
    Ok(buf)
}

/// Reads the group id after checking length bounds, magic and version, without checking
/// the MAC, so that a socket shared by several groups can pick the group's key (and
/// [`decode`] call) before verifying. The result is unauthenticated: use it only to route.
pub fn peek_group(buf: &[u8]) -> Result<u8, WireError> {
    if buf.len() > MAX_PACKET_LEN {
        return Err(WireError::Oversized {
            len: buf.len(),
            max: MAX_PACKET_LEN,
        });
    }
    if buf.len() < FIXED_LEN {
        return Err(WireError::Truncated {
            len: buf.len(),
            need: FIXED_LEN,
        });
    }
    if read_array::<4>(buf, OFF_MAGIC)? != MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = read_u8(buf, OFF_VERSION)?;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let group = read_u8(buf, OFF_GROUP)?;
    if group == 0 {
        return Err(invalid(
            FIELD_GROUP,
            "0 is reserved; groups are 1..=255".into(),
        ));
    }
    Ok(group)
}

/// Parses and authenticates one advert for `expected_group` under `auth`.
///
/// On success every field is within the ranges [`encode`] accepts, and re-encoding gives
/// back `buf` exactly. Never panics, whatever `buf` holds. The result is not yet checked
/// for replay: pass it to [`ReplayGuard::check`].
pub fn decode(buf: &[u8], expected_group: u8, auth: &Auth) -> Result<Advert, WireError> {
    decode_with_keys(buf, expected_group, auth, &[])
}

/// [`decode`], also accepting a MAC made with any key of `also_accept` (verify-only
/// keys during a key rotation; ignored unless `auth` is HMAC). Replies with
/// [`WireError::BadMac`] only if no key matches; every key is checked whatever the
/// outcome (constant time).
pub fn decode_with_keys(
    buf: &[u8],
    expected_group: u8,
    auth: &Auth,
    also_accept: &[AuthKey],
) -> Result<Advert, WireError> {
    // The defined types only inform (the software version, the link address,
    // the master replaced): the election needs none of them to elect.
    decode_extended(buf, expected_group, auth, also_accept).map(|(advert, _)| advert)
}

/// Extension type 1: the sender's software version (UTF-8).
pub const EXT_SOFTWARE_VERSION: u8 = 1;

/// The longest software version sent or kept, in bytes.
pub const MAX_SOFTWARE_VERSION_LEN: usize = 32;

/// The extension field carrying this build's version (`CARGO_PKG_VERSION`).
pub fn software_version_extension() -> Extension {
    let mut value = env!("CARGO_PKG_VERSION").as_bytes().to_vec();
    value.truncate(MAX_SOFTWARE_VERSION_LEN);
    Extension {
        kind: EXT_SOFTWARE_VERSION,
        value,
    }
}

/// The software version a peer sent in `extensions` (the first type-1 field),
/// made printable and at most [`MAX_SOFTWARE_VERSION_LEN`] bytes; `None` when it
/// sent none (a release before the field, or sending suppressed).
pub fn software_version(extensions: &[Extension]) -> Option<String> {
    let field = extensions.iter().find(|e| e.kind == EXT_SOFTWARE_VERSION)?;
    let value = field
        .value
        .get(..MAX_SOFTWARE_VERSION_LEN)
        .unwrap_or(&field.value);
    Some(printable_name(&String::from_utf8_lossy(value)))
}

/// Extension type 2: the sender's Ethernet address on the advert's interface.
pub const EXT_LINK_ADDRESS: u8 = 2;

/// The extension field carrying `mac`.
pub fn link_address_extension(mac: [u8; 6]) -> Extension {
    Extension {
        kind: EXT_LINK_ADDRESS,
        value: mac.to_vec(),
    }
}

/// The Ethernet address a peer sent in `extensions` (the first type-2 field
/// of exactly 6 bytes).
pub fn link_address(extensions: &[Extension]) -> Option<[u8; 6]> {
    extensions
        .iter()
        .find(|e| e.kind == EXT_LINK_ADDRESS)
        .and_then(|e| <[u8; 6]>::try_from(e.value.as_slice()).ok())
}

/// Extension type 3: the node name of the master the sender replaced on purpose.
pub const EXT_REPLACED_MASTER: u8 = 3;

/// The extension field naming `node_name` as the master replaced on purpose.
pub fn replaced_master_extension(node_name: &str) -> Extension {
    Extension {
        kind: EXT_REPLACED_MASTER,
        value: node_name.as_bytes().to_vec(),
    }
}

/// The node name a peer sent in `extensions` as the master it replaced on
/// purpose (the first type-3 field), if it is one: 1..=[`MAX_NAME_LEN`]
/// bytes of UTF-8.
pub fn replaced_master(extensions: &[Extension]) -> Option<&str> {
    let field = extensions.iter().find(|e| e.kind == EXT_REPLACED_MASTER)?;
    if field.value.is_empty() || field.value.len() > MAX_NAME_LEN {
        return None;
    }
    std::str::from_utf8(&field.value).ok()
}

/// Extension type 4: the sender is master and has not claimed the VIPs yet.
pub const EXT_CLAIM_PENDING: u8 = 4;

/// The extension field saying the sender's claim is pending.
pub fn claim_pending_extension() -> Extension {
    Extension {
        kind: EXT_CLAIM_PENDING,
        value: Vec::new(),
    }
}

/// Whether a peer said in `extensions` that its claim is pending (an empty
/// type-4 field).
pub fn claim_pending(extensions: &[Extension]) -> bool {
    extensions
        .iter()
        .any(|e| e.kind == EXT_CLAIM_PENDING && e.value.is_empty())
}

/// [`decode_with_keys`], also returning the extension area's fields as received,
/// known or not, in order.
pub fn decode_extended(
    buf: &[u8],
    expected_group: u8,
    auth: &Auth,
    also_accept: &[AuthKey],
) -> Result<(Advert, Vec<Extension>), WireError> {
    let group = peek_group(buf)?;
    if group != expected_group {
        return Err(WireError::WrongGroup {
            expected: expected_group,
            got: group,
        });
    }
    let auth_type = read_u8(buf, OFF_AUTH)?;
    if auth_type != auth.wire_type() {
        return Err(WireError::AuthTypeMismatch {
            expected: auth.name(),
            got: auth_type,
        });
    }
    let name_len = usize::from(read_u8(buf, OFF_NAME_LEN)?);
    validate_name_len(name_len)?;
    let expected = HEADER_LEN + name_len + MAC_LEN;
    if buf.len() < expected {
        return Err(WireError::Truncated {
            len: buf.len(),
            need: expected,
        });
    }
    if buf.len() > expected + MAX_EXTENSIONS_LEN {
        return Err(WireError::LengthMismatch {
            len: buf.len(),
            expected: expected + MAX_EXTENSIONS_LEN,
            name_len,
        });
    }
    let (signed, tag) = buf
        .split_at_checked(buf.len() - MAC_LEN)
        .ok_or(WireError::Truncated {
            len: buf.len(),
            need: expected,
        })?;
    auth.verify(signed, tag, also_accept)?;

    // Authenticated from here on: interpret the fields.
    let interval_cs = u16::from_be_bytes(read_array(buf, OFF_INTERVAL)?);
    validate_interval(interval_cs)?;
    let flags = Flags(read_u8(buf, OFF_FLAGS)?);
    validate_flags(flags)?;
    let name_bytes = signed
        .get(OFF_NAME..OFF_NAME + name_len)
        .ok_or(WireError::Truncated {
            len: buf.len(),
            need: expected,
        })?;
    let node_name = std::str::from_utf8(name_bytes)
        .map_err(|e| invalid(FIELD_NAME, format!("not valid UTF-8: {e}")))?
        .to_owned();
    let extensions = parse_extensions(signed.get(OFF_NAME + name_len..).unwrap_or(&[]))?;

    let advert = Advert {
        body: AdvertBody {
            group,
            priority: read_u8(buf, OFF_PRIORITY)?,
            interval_cs,
            flags,
            node_id: read_u64(buf, OFF_NODE_ID)?,
            promote_epoch: read_u64(buf, OFF_PROMOTE_EPOCH)?,
            vip_digest: read_array(buf, OFF_VIP_DIGEST)?,
            node_name,
        },
        boot_id: read_u64(buf, OFF_BOOT_ID)?,
        sequence: read_u64(buf, OFF_SEQUENCE)?,
    };
    Ok((advert, extensions))
}

/// The extension area's fields; every byte must belong to one.
fn parse_extensions(mut area: &[u8]) -> Result<Vec<Extension>, WireError> {
    let mut extensions = Vec::new();
    let mut offset = 0;
    while !area.is_empty() {
        let (kind, len) = match area {
            [kind, len, ..] => (*kind, usize::from(*len)),
            _ => {
                return Err(invalid(
                    FIELD_EXTENSIONS,
                    format!(
                        "truncated field header at offset {offset}: {} byte left, a field needs {TLV_HEADER_LEN}",
                        area.len()
                    ),
                ))
            }
        };
        let value = area
            .get(TLV_HEADER_LEN..TLV_HEADER_LEN + len)
            .ok_or_else(|| {
                invalid(
                    FIELD_EXTENSIONS,
                    format!(
                        "truncated field: type {kind} at offset {offset} says {len} value bytes, only {} follow",
                        area.len() - TLV_HEADER_LEN
                    ),
                )
            })?;
        extensions.push(Extension {
            kind,
            value: value.to_vec(),
        });
        area = &area[TLV_HEADER_LEN + len..];
        offset += TLV_HEADER_LEN + len;
    }
    Ok(extensions)
}

/// `buf[at..at + N]` as an array, or `Truncated` if `buf` is too short.
fn read_array<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], WireError> {
    let need = at.saturating_add(N);
    buf.get(at..need)
        .and_then(|s| s.try_into().ok())
        .ok_or(WireError::Truncated {
            len: buf.len(),
            need,
        })
}

fn read_u8(buf: &[u8], at: usize) -> Result<u8, WireError> {
    read_array::<1>(buf, at).map(|[b]| b)
}

fn read_u64(buf: &[u8], at: usize) -> Result<u64, WireError> {
    read_array(buf, at).map(u64::from_be_bytes)
}

/// A peer's node name made safe for logs, hook environments and terminals:
/// every character that does not print as itself becomes `?`.
///
/// [`decode`] accepts any UTF-8 name (re-encoding must give back the bytes
/// received); a peer's name is to be passed through this before it is shown
/// anywhere. Replaced: control characters (C0, DEL, C1: terminal escapes, line
/// breaks), Unicode format and separator characters that reorder or hide text
/// (bidirectional overrides and isolates, zero-width characters, the byte order
/// mark, line and paragraph separators, soft hyphen, interlinear annotation),
/// and whitespace other than the plain space. The result is never longer than
/// `name`.
pub fn printable_name(name: &str) -> String {
    name.chars()
        .map(|c| if is_printable(c) { c } else { '?' })
        .collect()
}

/// Whether `c` prints as itself (see [`printable_name`]).
fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c,
            '\u{00AD}'                 // soft hyphen
            | '\u{061C}'               // Arabic letter mark
            | '\u{180E}'               // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
            | '\u{202A}'..='\u{202E}' // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, isolates
            | '\u{FEFF}'               // byte order mark
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
        ))
}

/// The 8-byte digest of a VIP set, as carried in [`AdvertBody::vip_digest`].
///
/// Each VIP becomes the string `"addr/prefix"` (addresses in Rust's canonical text form,
/// RFC 5952 for IPv6); the strings are sorted bytewise and deduplicated, each is followed
/// by `"\n"`, and the result is the first 8 bytes of SHA-256 over the concatenation. So
/// order and duplicates do not matter, and two peers agree iff their sets agree.
pub fn vip_digest<I: IntoIterator<Item = (IpAddr, u8)>>(vips: I) -> [u8; 8] {
    let mut lines: Vec<String> = vips
        .into_iter()
        .map(|(addr, prefix)| format!("{addr}/{prefix}"))
        .collect();
    lines.sort_unstable();
    lines.dedup();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    let full = hasher.finalize();
    let mut out = [0u8; 8];
    for (o, b) in out.iter_mut().zip(full.iter()) {
        *o = *b;
    }
    out
}

/// The advert interval field for `d`: `Some` only if `d` is an exact multiple of 10 ms
/// within 10 ms..=40.95 s.
pub fn interval_to_cs(d: Duration) -> Option<u16> {
    const NANOS_PER_CS: u128 = 10_000_000;
    let nanos = d.as_nanos();
    if nanos % NANOS_PER_CS != 0 {
        return None;
    }
    let cs = u16::try_from(nanos / NANOS_PER_CS).ok()?;
    (MIN_INTERVAL_CS..=MAX_INTERVAL_CS)
        .contains(&cs)
        .then_some(cs)
}

/// The duration of `cs` centiseconds.
pub const fn cs_to_duration(cs: u16) -> Duration {
    // `as` because `u64::from` is not const; widening a u16 is lossless.
    Duration::from_millis(cs as u64 * 10)
}

/// Rejects replays: per sender node id remembers (boot_id, sequence); accepts only
/// boot_id > seen, or same boot and sequence > seen. Bounded memory (at most 1024
/// senders; evict the least recently accepted).
///
/// Call [`check`](Self::check) only on adverts that [`decode`] accepted, so that with HMAC
/// only key holders can occupy (or evict) entries. Without a key anyone can, and replay
/// protection is then best-effort, like everything else in auth "none". An evicted or
/// [`forget`](Self::forget)-ten sender's next advert is accepted whatever its numbers.
///
/// # Across restarts
///
/// The guard itself lives in memory. The daemon checkpoints its
/// [`high_water_marks`](Self::high_water_marks) to the state directory and
/// [`seed`](Self::seed)s a new guard from them at start (see `daemon::state`), so a
/// restarted node does not accept adverts older than those it accepted before — an old
/// capture cannot make it follow a dead master. A checkpoint is written at once when a
/// sender is first seen or its boot id changes ([`new_boots`](Self::new_boots) moved),
/// otherwise at most every checkpoint interval, and at clean shutdown.
///
/// What remains after a crash: the adverts accepted after the last checkpoint. A
/// capture of those is accepted again by the restarted node, each at most once and only
/// in increasing order, and only until the real sender is heard again. That window is
/// bounded by the checkpoint interval (plus one advert interval and the write itself):
/// at most `checkpoint / advert_interval + 1` adverts of the sender's current boot.
/// Adverts of any earlier boot of the sender are never accepted again once the new boot
/// was checkpointed, which happens as soon as it is heard.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    senders: HashMap<u64, Seen>,
    /// Accept stamp -> node id, oldest first: the eviction order.
    by_age: BTreeMap<u64, u64>,
    /// Stamp for the next accepted advert. A u64 bumped once per accepted advert
    /// does not overflow in practice (centuries at a billion adverts a second).
    next_stamp: u64,
    /// Adverts accepted (seeds not counted).
    accepted: u64,
    /// Accepted adverts that were a sender's first or started a new boot.
    new_boots: u64,
}

/// What a [`ReplayGuard`] remembers about one sender: the newest (boot id, sequence)
/// it accepted. The unit of the state directory's replay checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HighWater {
    /// The sender.
    pub node_id: u64,
    /// The newest boot id accepted from it.
    pub boot_id: u64,
    /// The newest sequence accepted within that boot.
    pub sequence: u64,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    boot_id: u64,
    sequence: u64,
    stamp: u64,
}

impl ReplayGuard {
    /// How many senders are remembered at most.
    pub const CAPACITY: usize = 1024;

    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `advert` and remembers its (boot id, sequence) if it is newer than the last
    /// one accepted from the same node id; otherwise returns [`WireError::Replay`] and
    /// changes nothing.
    pub fn check(&mut self, advert: &Advert) -> Result<(), WireError> {
        let node_id = advert.body.node_id;
        let now = (advert.boot_id, advert.sequence);
        let stamp = self.next_stamp;
        if let Some(seen) = self.senders.get_mut(&node_id) {
            if now <= (seen.boot_id, seen.sequence) {
                return Err(WireError::Replay {
                    node_id,
                    boot_id: advert.boot_id,
                    sequence: advert.sequence,
                    last_boot_id: seen.boot_id,
                    last_sequence: seen.sequence,
                });
            }
            self.by_age.remove(&seen.stamp);
            if advert.boot_id != seen.boot_id {
                self.new_boots += 1;
            }
            *seen = Seen {
                boot_id: advert.boot_id,
                sequence: advert.sequence,
                stamp,
            };
        } else {
            self.new_boots += 1;
            self.insert_new(node_id, advert.boot_id, advert.sequence, stamp);
        }
        self.by_age.insert(stamp, node_id);
        self.next_stamp += 1;
        self.accepted += 1;
        Ok(())
    }

    /// Inserts a sender not yet remembered, evicting the least recently accepted one
    /// when full; the caller records `stamp` in `by_age`.
    fn insert_new(&mut self, node_id: u64, boot_id: u64, sequence: u64, stamp: u64) {
        if self.senders.len() >= Self::CAPACITY {
            if let Some((_, oldest)) = self.by_age.pop_first() {
                self.senders.remove(&oldest);
            }
        }
        self.senders.insert(
            node_id,
            Seen {
                boot_id,
                sequence,
                stamp,
            },
        );
    }

    /// Remembers `mark` as if an advert with its numbers had been accepted, unless a
    /// newer one from the same sender is remembered already: for a guard started from
    /// a checkpoint. Seed oldest first (the order of
    /// [`high_water_marks`](Self::high_water_marks)) to keep the eviction order.
    pub fn seed(&mut self, mark: HighWater) {
        let stamp = self.next_stamp;
        let numbers = (mark.boot_id, mark.sequence);
        if let Some(seen) = self.senders.get_mut(&mark.node_id) {
            if numbers <= (seen.boot_id, seen.sequence) {
                return;
            }
            self.by_age.remove(&seen.stamp);
            seen.boot_id = mark.boot_id;
            seen.sequence = mark.sequence;
            seen.stamp = stamp;
        } else {
            self.insert_new(mark.node_id, mark.boot_id, mark.sequence, stamp);
        }
        self.by_age.insert(stamp, mark.node_id);
        self.next_stamp += 1;
    }

    /// What is remembered, per sender, least recently accepted first: what a
    /// checkpoint saves and [`seed`](Self::seed) takes back.
    pub fn high_water_marks(&self) -> impl Iterator<Item = HighWater> + '_ {
        self.by_age.values().filter_map(|node_id| {
            self.senders.get(node_id).map(|seen| HighWater {
                node_id: *node_id,
                boot_id: seen.boot_id,
                sequence: seen.sequence,
            })
        })
    }

    /// How many adverts were accepted so far (seeds not counted): a checkpoint is
    /// out of date while this moved since it was taken.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// How many accepted adverts were the first from their sender or started a new
    /// boot of it: a checkpoint should be written at once when this moved, because
    /// until then every advert of the sender's earlier boot would pass again after a
    /// restart.
    pub fn new_boots(&self) -> u64 {
        self.new_boots
    }

    /// Drops what is remembered about `node_id` (e.g. a peer removed from the config).
    pub fn forget(&mut self, node_id: u64) {
        if let Some(seen) = self.senders.remove(&node_id) {
            self.by_age.remove(&seen.stamp);
        }
    }

    /// How many senders are remembered (at most [`Self::CAPACITY`]).
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Whether no sender is remembered.
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }
}

/// An advert of `node_id` with these numbers and nothing else of note, for unit tests.
#[cfg(test)]
pub(crate) fn test_advert(node_id: u64, boot_id: u64, sequence: u64) -> Advert {
    Advert {
        body: AdvertBody {
            group: 1,
            priority: 100,
            interval_cs: 100,
            flags: Flags::default(),
            node_id,
            promote_epoch: 0,
            vip_digest: [0; 8],
            node_name: "n".into(),
        },
        boot_id,
        sequence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_software_version_field_reads_back_printable_and_bounded() {
        let own = software_version_extension();
        assert_eq!(own.kind, EXT_SOFTWARE_VERSION);
        assert_eq!(
            software_version(&[own]).as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(software_version(&[]), None);
        let unknown = Extension {
            kind: 42,
            value: b"x".to_vec(),
        };
        assert_eq!(software_version(&[unknown]), None);
        let hostile = Extension {
            kind: EXT_SOFTWARE_VERSION,
            value: [b"1.0\x1b[2J".as_slice(), &[b'9'; 100]].concat(),
        };
        let shown = software_version(&[hostile]).expect("a version");
        assert!(!shown.contains('\x1b'), "{shown:?}");
        assert!(shown.len() <= 4 * MAX_SOFTWARE_VERSION_LEN, "{shown:?}");
    }

    #[test]
    fn the_link_address_field_reads_back_and_other_lengths_are_ignored() {
        let mac = [2, 0, 0, 0, 0, 7];
        let field = link_address_extension(mac);
        assert_eq!(field.kind, EXT_LINK_ADDRESS);
        assert_eq!(
            link_address(&[software_version_extension(), field]),
            Some(mac)
        );
        let short = Extension {
            kind: EXT_LINK_ADDRESS,
            value: vec![1, 2, 3],
        };
        assert_eq!(link_address(&[short]), None);
        assert_eq!(link_address(&[]), None);
        // Decoded by this build's own decoder from a signed advert.
        let advert = Advert {
            body: AdvertBody {
                group: 3,
                priority: 100,
                interval_cs: 100,
                flags: Flags::default(),
                node_id: 9,
                promote_epoch: 0,
                vip_digest: [0; 8],
                node_name: "n".into(),
            },
            boot_id: 1,
            sequence: 1,
        };
        let auth = Auth::None;
        let bytes = encode_with_extensions(&advert, &[link_address_extension(mac)], &auth)
            .expect("encodes");
        let (_, extensions) =
            decode_extended(&bytes, advert.body.group, &auth, &[]).expect("decodes");
        assert_eq!(link_address(&extensions), Some(mac));
    }

    /// A master's advert from a node with the longest name allowed.
    fn longest_named_master_advert() -> Advert {
        Advert {
            body: AdvertBody {
                group: 3,
                priority: 100,
                interval_cs: 100,
                flags: Flags(Flags::MASTER),
                node_id: 9,
                promote_epoch: 0,
                vip_digest: [0; 8],
                node_name: "n".repeat(MAX_NAME_LEN),
            },
            boot_id: 1,
            sequence: 1,
        }
    }

    #[test]
    fn the_replaced_master_field_reads_back_and_odd_values_are_ignored() {
        let longest = "n".repeat(MAX_NAME_LEN);
        let field = replaced_master_extension(&longest);
        assert_eq!(field.kind, EXT_REPLACED_MASTER);
        // Every field this build sends fits the area beside a longest name.
        let all = [
            software_version_extension(),
            link_address_extension([2, 0, 0, 0, 0, 7]),
            field,
        ];
        let advert = longest_named_master_advert();
        let auth = Auth::None;
        let bytes = encode_with_extensions(&advert, &all, &auth).expect("encodes");
        let (_, extensions) =
            decode_extended(&bytes, advert.body.group, &auth, &[]).expect("decodes");
        assert_eq!(replaced_master(&extensions), Some(longest.as_str()));
        assert_eq!(replaced_master(&[]), None);
        for value in [Vec::new(), vec![b'n'; MAX_NAME_LEN + 1], vec![0xff, 0xfe]] {
            let odd = Extension {
                kind: EXT_REPLACED_MASTER,
                value,
            };
            assert_eq!(replaced_master(&[odd]), None);
        }
    }

    #[test]
    fn the_claim_pending_field_reads_back_and_a_valued_one_is_ignored() {
        let advert = longest_named_master_advert();
        // Beside every other field this build sends and a longest name.
        let all = [
            software_version_extension(),
            link_address_extension([2, 0, 0, 0, 0, 7]),
            replaced_master_extension(&"n".repeat(MAX_NAME_LEN)),
            claim_pending_extension(),
        ];
        let auth = Auth::None;
        let bytes = encode_with_extensions(&advert, &all, &auth).expect("encodes");
        let (_, extensions) =
            decode_extended(&bytes, advert.body.group, &auth, &[]).expect("decodes");
        assert!(claim_pending(&extensions));
        assert!(!claim_pending(&extensions[..3]));
        let valued = Extension {
            kind: EXT_CLAIM_PENDING,
            value: vec![1],
        };
        assert!(!claim_pending(&[valued]));
    }

    #[test]
    fn layout_constants_agree() {
        assert_eq!(OFF_VIP_DIGEST + 8, HEADER_LEN);
        assert_eq!(FIXED_LEN, 84);
        assert_eq!(MAX_PACKET_LEN, 404);
        let offsets = [
            (OFF_MAGIC, 4),
            (OFF_VERSION, 1),
            (OFF_AUTH, 1),
            (OFF_GROUP, 1),
            (OFF_PRIORITY, 1),
            (OFF_INTERVAL, 2),
            (OFF_FLAGS, 1),
            (OFF_NAME_LEN, 1),
            (OFF_NODE_ID, 8),
            (OFF_BOOT_ID, 8),
            (OFF_SEQUENCE, 8),
            (OFF_PROMOTE_EPOCH, 8),
            (OFF_VIP_DIGEST, 8),
        ];
        let mut next = 0;
        for (off, size) in offsets {
            assert_eq!(off, next, "fields are contiguous");
            next = off + size;
        }
        assert_eq!(next, OFF_NAME);
    }

    #[test]
    fn printable_name_replaces_what_does_not_print() {
        assert_eq!(printable_name("lb-a.example"), "lb-a.example");
        assert_eq!(
            printable_name("n\u{e9}ud 1"),
            "n\u{e9}ud 1",
            "letters and a space stay"
        );
        assert_eq!(printable_name("a\x1b[2Jb"), "a?[2Jb", "terminal escape");
        assert_eq!(
            printable_name("a\nb\rc\td"),
            "a?b?c?d",
            "line breaks and tabs"
        );
        assert_eq!(printable_name("a\u{7f}\u{85}b"), "a??b", "DEL and C1");
        assert_eq!(
            printable_name("evil\u{202e}txt.exe"),
            "evil?txt.exe",
            "bidi override"
        );
        assert_eq!(
            printable_name("a\u{200b}\u{2066}\u{feff}b"),
            "a???b",
            "invisible"
        );
        assert_eq!(
            printable_name("a\u{2028}\u{a0}b"),
            "a??b",
            "separators, odd spaces"
        );
        let nasty = "\u{202e}".repeat(MAX_NAME_LEN / 3);
        assert!(printable_name(&nasty).len() <= nasty.len());
    }

    #[test]
    fn guard_keeps_age_index_in_step() {
        let mut guard = ReplayGuard::new();
        let mut advert = Advert {
            body: AdvertBody {
                group: 1,
                priority: 100,
                interval_cs: 100,
                flags: Flags::default(),
                node_id: 0,
                promote_epoch: 0,
                vip_digest: [0; 8],
                node_name: "n".into(),
            },
            boot_id: 1,
            sequence: 1,
        };
        for round in 0..3u64 {
            for node in 0..(ReplayGuard::CAPACITY as u64 + 10) {
                advert.body.node_id = node;
                advert.sequence = round + 1;
                let _ = guard.check(&advert);
                assert_eq!(guard.senders.len(), guard.by_age.len());
            }
        }
        guard.forget(5);
        guard.forget(ReplayGuard::CAPACITY as u64 + 9);
        assert_eq!(guard.senders.len(), guard.by_age.len());
        assert_eq!(guard.len(), ReplayGuard::CAPACITY - 1);
    }

    #[test]
    fn a_seeded_guard_rejects_what_the_checkpoint_covers() {
        let mut before = ReplayGuard::new();
        before.check(&test_advert(7, 10, 5)).unwrap();
        before.check(&test_advert(7, 10, 9)).unwrap();
        before.check(&test_advert(8, 3, 1)).unwrap();
        let marks: Vec<HighWater> = before.high_water_marks().collect();
        assert_eq!(
            marks,
            [
                HighWater {
                    node_id: 7,
                    boot_id: 10,
                    sequence: 9
                },
                HighWater {
                    node_id: 8,
                    boot_id: 3,
                    sequence: 1
                },
            ]
        );
        let mut after = ReplayGuard::new();
        for mark in marks {
            after.seed(mark);
        }
        assert_eq!(after.accepted(), 0, "seeds are not accepted adverts");
        assert!(matches!(
            after.check(&test_advert(7, 10, 9)),
            Err(WireError::Replay { .. })
        ));
        assert!(
            after.check(&test_advert(7, 9, 1_000)).is_err(),
            "an older boot"
        );
        assert!(after.check(&test_advert(7, 10, 10)).is_ok());
        // A seed never moves a sender back.
        after.seed(HighWater {
            node_id: 7,
            boot_id: 1,
            sequence: 1,
        });
        assert!(after.check(&test_advert(7, 10, 10)).is_err());
    }

    #[test]
    fn new_boots_count_first_adverts_and_boot_changes_only() {
        let mut guard = ReplayGuard::new();
        guard.check(&test_advert(7, 10, 1)).unwrap();
        assert_eq!((guard.accepted(), guard.new_boots()), (1, 1));
        guard.check(&test_advert(7, 10, 2)).unwrap();
        assert_eq!((guard.accepted(), guard.new_boots()), (2, 1));
        guard.check(&test_advert(7, 11, 1)).unwrap();
        assert_eq!((guard.accepted(), guard.new_boots()), (3, 2));
        let _ = guard.check(&test_advert(7, 11, 1));
        assert_eq!(
            (guard.accepted(), guard.new_boots()),
            (3, 2),
            "a replay changes nothing"
        );
    }

    #[test]
    fn an_accepted_key_verifies_but_never_signs() {
        let old = AuthKey::new(b"old-key-0123456789abcdef".to_vec()).unwrap();
        let new = AuthKey::new(b"new-key-0123456789abcdef".to_vec()).unwrap();
        let other = AuthKey::new(b"bad-key-0123456789abcdef".to_vec()).unwrap();
        let advert = test_advert(7, 1, 1);
        let signed_old = encode(&advert, &Auth::HmacSha256(old.clone())).unwrap();
        let signed_new = encode(&advert, &Auth::HmacSha256(new.clone())).unwrap();
        // Signs with the new key, still accepts the old one.
        let rotating = Auth::HmacSha256(new.clone());
        let accept = [old.clone()];
        assert_eq!(
            decode_with_keys(&signed_old, 1, &rotating, &accept),
            Ok(advert.clone())
        );
        assert_eq!(
            decode_with_keys(&signed_new, 1, &rotating, &accept),
            Ok(advert.clone())
        );
        assert_eq!(decode(&signed_old, 1, &rotating), Err(WireError::BadMac));
        let wrong = Auth::HmacSha256(other);
        assert_eq!(
            decode_with_keys(&signed_old, 1, &wrong, &[new]),
            Err(WireError::BadMac)
        );
        // Accepted keys do not open the door to unauthenticated adverts.
        let plain = encode(&advert, &Auth::None).unwrap();
        assert!(matches!(
            decode_with_keys(&plain, 1, &rotating, &accept),
            Err(WireError::AuthTypeMismatch { .. })
        ));
    }
}
