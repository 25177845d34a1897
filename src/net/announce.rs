//! Gratuitous ARP and unsolicited neighbour advertisements.
//!
//! When a node takes a VIP over, hosts and switches still map the VIP to the
//! old holder's MAC. An ARP announcement (RFC 5227 §2.3) for IPv4, or an
//! unsolicited Neighbor Advertisement with the Override flag (RFC 4861
//! §7.2.6) for IPv6, makes them update their caches at once.
//!
//! The frames are built by the pure functions [`garp_frame`] and
//! [`unsolicited_na_frame`]; an [`Announcer`] sends one of them through an
//! `AF_PACKET` socket bound to the interface. How many to send and how far
//! apart is the daemon's decision (FIELD-NOTES 2, 5 and 17).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};

use pnet_datalink::MacAddr;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{
    MutableNdpOptionPacket, MutableNeighborAdvertPacket, NdpOptionTypes, NeighborAdvertFlags,
};
use pnet_packet::icmpv6::{self, Icmpv6Code, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::MutableIpv6Packet;
use socket2::{Domain, SockAddr, Socket, Type};
use thiserror::Error;

const ETHERNET_HEADER_LEN: usize = 14;
const ARP_LEN: usize = 28;
const IPV6_HEADER_LEN: usize = 40;
/// Neighbor Advertisement without options (RFC 4861 §4.4).
const NA_LEN: usize = 24;
/// The Target Link-Layer Address option for Ethernet: 8 bytes.
const TLLA_OPTION_LEN: usize = 8;

/// Length of [`garp_frame`]'s frame (the driver pads it to 60 bytes).
pub const GARP_FRAME_LEN: usize = ETHERNET_HEADER_LEN + ARP_LEN;
/// Length of [`unsolicited_na_frame`]'s frame.
pub const NA_FRAME_LEN: usize = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + NA_LEN + TLLA_OPTION_LEN;

/// ff02::1, all nodes on the link.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The Ethernet multicast address of ff02::1 (RFC 2464 §7).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// `ARPHRD_ETHER`.
const ARPHRD_ETHER: u16 = 1;

/// What went wrong, naming the interface (and address).
#[derive(Debug, Error)]
pub enum AnnounceError {
    /// Listing the interfaces (getifaddrs) failed.
    #[error("listing interfaces to find {ifname} (index {ifindex})")]
    ListInterfaces {
        ifindex: u32,
        ifname: String,
        #[source]
        source: nix::Error,
    },
    /// No interface has this index.
    #[error("interface {ifname} (index {ifindex}) not found")]
    NoSuchInterface { ifindex: u32, ifname: String },
    /// The index belongs to an interface with another name.
    #[error("interface index {ifindex} is {actual:?}, not {ifname:?}")]
    NameMismatch {
        ifindex: u32,
        ifname: String,
        actual: String,
    },
    /// The interface has no Ethernet address (tun, WireGuard, loopback...).
    #[error("interface {ifname} (index {ifindex}) has no Ethernet address")]
    NotEthernet { ifindex: u32, ifname: String },
    /// Opening or binding the packet socket failed (needs CAP_NET_RAW).
    #[error("opening a packet socket on {ifname} (index {ifindex})")]
    Socket {
        ifindex: u32,
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// Sending failed (link down, queue full...).
    #[error("announcing {addr} on {ifname}")]
    Send {
        ifname: String,
        addr: IpAddr,
        #[source]
        source: io::Error,
    },
}

/// Sends gratuitous ARPs and unsolicited NAs from one interface.
///
/// The `AF_PACKET` socket is opened with protocol 0, so it never receives
/// (nothing queues up in it however busy the link), and is non-blocking: a
/// full device queue is an error, not a stall of the runtime.
#[derive(Debug)]
pub struct Announcer {
    ifindex: u32,
    ifname: String,
    mac: [u8; 6],
    socket: Socket,
    /// Whether the interface forwards IPv6 (the NA Router flag); set by the
    /// caller from netlink ([`Announcer::set_ipv6_router`]).
    ipv6_router: AtomicBool,
}

impl Announcer {
    /// Opens a packet socket bound to the interface and reads its MAC.
    ///
    /// `ifname` must be the current name of `ifindex` (a cross-check against
    /// an interface being replaced between lookup and open).
    pub fn open(ifindex: u32, ifname: &str) -> Result<Self, AnnounceError> {
        let mac = interface_mac(ifindex, ifname)?;
        let socket_error = |source| AnnounceError::Socket {
            ifindex,
            ifname: ifname.to_owned(),
            source,
        };
        let socket =
            Socket::new(Domain::PACKET, Type::RAW.nonblocking(), None).map_err(socket_error)?;
        socket
            .bind(&packet_sockaddr(ifindex, 0).map_err(socket_error)?)
            .map_err(socket_error)?;
        Ok(Self {
            ifindex,
            ifname: ifname.to_owned(),
            mac,
            socket,
            ipv6_router: AtomicBool::new(false),
        })
    }

    /// Sends one gratuitous ARP (IPv4) or one unsolicited NA (IPv6) for
    /// `addr`, from this interface's MAC.
    ///
    /// The NA's Router flag follows `net.ipv6.conf.IF.forwarding` as last
    /// passed to [`Announcer::set_ipv6_router`], as the kernel's own NAs do:
    /// clearing it for an address hosts know as a router would make them drop
    /// it from their default router list (RFC 4861 §7.2.5).
    pub fn announce(&self, addr: IpAddr) -> Result<(), AnnounceError> {
        let frame = match addr {
            IpAddr::V4(ip) => garp_frame(self.mac, ip),
            IpAddr::V6(ip) => na_frame(self.mac, ip, self.ipv6_router.load(Ordering::Relaxed)),
        };
        self.send_frame(&frame, addr)
    }

    fn send_frame(&self, frame: &[u8], addr: IpAddr) -> Result<(), AnnounceError> {
        let send_error = |source| AnnounceError::Send {
            ifname: self.ifname.clone(),
            addr,
            source,
        };
        let sent = self.socket.send(frame).map_err(send_error)?;
        if sent != frame.len() {
            return Err(send_error(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", frame.len()),
            )));
        }
        Ok(())
    }

    /// Sends one ARP probe (IPv4) or one duplicate-address-detection
    /// neighbour solicitation (IPv6) for `addr`: asks who has it without
    /// claiming it (RFC 5227 §2.1.1, RFC 4862 §5.4.2), so a host that holds
    /// it answers and no cache learns our MAC for it.
    pub fn probe(&self, addr: IpAddr) -> Result<(), AnnounceError> {
        let frame = match addr {
            IpAddr::V4(ip) => arp_probe_frame(self.mac, ip),
            IpAddr::V6(ip) => dad_solicitation_frame(self.mac, ip),
        };
        self.send_frame(&frame, addr)
    }

    /// The interface's MAC, as read when opened.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sets the NA Router flag: whether the interface forwards IPv6.
    ///
    /// The caller reads it through netlink ([`Link::ipv6_forwarding`]) before
    /// each round of announcements: /proc/sys, where the sysctl lives, is hidden
    /// by the unit's `ProcSubset=pid` (FIELD-NOTES 23, 24).
    ///
    /// [`Link::ipv6_forwarding`]: super::netlink::Link::ipv6_forwarding
    pub fn set_ipv6_router(&self, router: bool) {
        self.ipv6_router.store(router, Ordering::Relaxed);
    }
}

/// The interface's Ethernet address, found by index; checks the name.
pub fn interface_mac(ifindex: u32, ifname: &str) -> Result<[u8; 6], AnnounceError> {
    let interfaces =
        nix::ifaddrs::getifaddrs().map_err(|source| AnnounceError::ListInterfaces {
            ifindex,
            ifname: ifname.to_owned(),
            source,
        })?;
    for interface in interfaces {
        let Some(link) = interface.address.as_ref().and_then(|a| a.as_link_addr()) else {
            continue;
        };
        if u32::try_from(link.ifindex()) != Ok(ifindex) {
            continue;
        }
        if interface.interface_name != ifname {
            return Err(AnnounceError::NameMismatch {
                ifindex,
                ifname: ifname.to_owned(),
                actual: interface.interface_name,
            });
        }
        return match link.addr() {
            Some(mac) if link.hatype() == ARPHRD_ETHER && link.halen() == 6 && mac != [0; 6] => {
                Ok(mac)
            }
            _ => Err(AnnounceError::NotEthernet {
                ifindex,
                ifname: ifname.to_owned(),
            }),
        };
    }
    Err(AnnounceError::NoSuchInterface {
        ifindex,
        ifname: ifname.to_owned(),
    })
}

/// A `sockaddr_ll` for binding a packet socket to `ifindex`, receiving
/// `protocol` (host order; 0 receives nothing).
pub(super) fn packet_sockaddr(ifindex: u32, protocol: u16) -> io::Result<SockAddr> {
    let ifindex = i32::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"))?;
    // SAFETY: `try_init` hands us zeroed storage of `sockaddr_storage` size,
    // which is larger than and suitably aligned for `sockaddr_ll`; we write
    // only through that cast pointer and report the `sockaddr_ll` length.
    let ((), addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            let sll = storage.cast::<libc::sockaddr_ll>();
            (*sll).sll_family = libc::AF_PACKET as libc::sa_family_t;
            (*sll).sll_protocol = protocol.to_be();
            (*sll).sll_ifindex = ifindex;
            *len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            Ok(())
        })
    }?;
    Ok(addr)
}

/// An ARP announcement (RFC 5227 §2.3) for `ip` from `mac`: a broadcast ARP
/// request with sender and target IP both `ip` and a zero target MAC.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut frame = vec![0u8; GARP_FRAME_LEN];
    {
        // The buffer is sized for the header, so `new` cannot fail.
        let mut ethernet = MutableEthernetPacket::new(&mut frame)
            .expect("GARP_FRAME_LEN holds an Ethernet header");
        ethernet.set_destination(MacAddr::from(BROADCAST_MAC));
        ethernet.set_source(MacAddr::from(mac));
        ethernet.set_ethertype(EtherTypes::Arp);
    }
    let mut arp = MutableArpPacket::new(&mut frame[ETHERNET_HEADER_LEN..])
        .expect("GARP_FRAME_LEN holds an ARP packet");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Request);
    arp.set_sender_hw_addr(MacAddr::from(mac));
    arp.set_sender_proto_addr(ip);
    arp.set_target_hw_addr(MacAddr::zero());
    arp.set_target_proto_addr(ip);
    frame
}

/// An ARP probe (RFC 5227 §2.1.1) for `ip` from `mac`: a broadcast ARP
/// request with sender IP 0.0.0.0 and target IP `ip`, so it updates no cache.
pub fn arp_probe_frame(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut frame = garp_frame(mac, ip);
    // The sender protocol address: bytes 28..32 (Ethernet 14 + ARP 14).
    frame[ETHERNET_HEADER_LEN + 14..ETHERNET_HEADER_LEN + 18].fill(0);
    frame
}

/// Length of [`dad_solicitation_frame`]'s frame: Ethernet, IPv6 and a
/// Neighbor Solicitation without options (none may be sent from ::).
pub const NS_FRAME_LEN: usize = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + NA_LEN;

/// A duplicate-address-detection Neighbor Solicitation (RFC 4862 §5.4.2) for
/// `ip`: from :: to its solicited-node multicast address, hop limit 255, no
/// options. A host holding `ip` answers with an NA to ff02::1.
pub fn dad_solicitation_frame(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let o = ip.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    );
    let dst_mac = [0x33, 0x33, 0xff, o[13], o[14], o[15]];
    neighbour_discovery_frame(mac, dst_mac, Ipv6Addr::UNSPECIFIED, group, NA_LEN, |icmp| {
        // Type 135 (Neighbor Solicitation), code 0, checksum (filled in by
        // the caller), 4 reserved bytes, the target address.
        icmp[0] = 135;
        icmp[8..24].copy_from_slice(&o);
    })
}

/// An ICMPv6 neighbour-discovery frame of `icmp_len` bytes from `src_mac` /
/// `src` to `dst_mac` / `dst`, hop limit 255 (RFC 4861 §7.1: receivers drop
/// any other); `fill` writes the message, then its checksum is set.
fn neighbour_discovery_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    icmp_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let mut frame = vec![0u8; ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + icmp_len];
    {
        let mut ethernet =
            MutableEthernetPacket::new(&mut frame).expect("the frame holds an Ethernet header");
        ethernet.set_destination(MacAddr::from(dst_mac));
        ethernet.set_source(MacAddr::from(src_mac));
        ethernet.set_ethertype(EtherTypes::Ipv6);
    }
    {
        let mut ipv6 = MutableIpv6Packet::new(&mut frame[ETHERNET_HEADER_LEN..])
            .expect("the frame holds an IPv6 header");
        ipv6.set_version(6);
        ipv6.set_payload_length(icmp_len as u16);
        ipv6.set_next_header(IpNextHeaderProtocols::Icmpv6);
        ipv6.set_hop_limit(255);
        ipv6.set_source(src);
        ipv6.set_destination(dst);
    }
    let icmp = &mut frame[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN..];
    fill(icmp);
    let checksum = icmpv6::checksum(
        &Icmpv6Packet::new(icmp).expect("the frame holds an ICMPv6 message"),
        &src,
        &dst,
    );
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    frame
}

/// An unsolicited Neighbor Advertisement (RFC 4861 §7.2.6) for `ip` from
/// `mac`: from `ip` to ff02::1, hop limit 255, Override set, Solicited and
/// Router clear, with a Target Link-Layer Address option.
pub fn unsolicited_na_frame(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    na_frame(mac, ip, false)
}

/// [`unsolicited_na_frame`], with the Router flag set if `router`.
fn na_frame(mac: [u8; 6], ip: Ipv6Addr, router: bool) -> Vec<u8> {
    neighbour_discovery_frame(
        mac,
        ALL_NODES_MAC,
        ip,
        ALL_NODES,
        NA_LEN + TLLA_OPTION_LEN,
        |icmp| {
            {
                let mut na = MutableNeighborAdvertPacket::new(&mut icmp[..NA_LEN])
                    .expect("NA_FRAME_LEN holds a neighbour advertisement");
                na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
                na.set_icmpv6_code(Icmpv6Code::new(0));
                let mut flags = NeighborAdvertFlags::Override;
                if router {
                    flags |= NeighborAdvertFlags::Router;
                }
                na.set_flags(flags);
                na.set_target_addr(ip);
            }
            let mut option = MutableNdpOptionPacket::new(&mut icmp[NA_LEN..])
                .expect("NA_FRAME_LEN holds the link-layer address option");
            option.set_option_type(NdpOptionTypes::TargetLLAddr);
            // In units of 8 bytes.
            option.set_length((TLLA_OPTION_LEN / 8) as u8);
            option.set_data(&mac);
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, Instant};

    use futures::TryStreamExt;
    use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
    use pnet_packet::arp::ArpPacket;
    use pnet_packet::ethernet::EthernetPacket;
    use pnet_packet::icmpv6::ndp::{NdpOptionPacket, NeighborAdvertPacket};
    use pnet_packet::ipv6::Ipv6Packet;
    use pnet_packet::Packet;

    use crate::net::netlink::tests::{in_netns, raw_handle, veth_pair};
    use crate::net::netlink::Netlink;

    const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

    #[rustfmt::skip]
    const GARP: [u8; 42] = [
        // Ethernet: broadcast destination, our source, ARP.
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0x02, 0x11, 0x22, 0x33, 0x44, 0x55,
        0x08, 0x06,
        // ARP: Ethernet/IPv4, 6/4 bytes, request.
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
        0x02, 0x11, 0x22, 0x33, 0x44, 0x55, // sender MAC
        192, 0, 2, 10,                      // sender IP = VIP
        0, 0, 0, 0, 0, 0,                   // target MAC zero
        192, 0, 2, 10,                      // target IP = VIP
    ];

    /// The checksum, summed by hand in 16-bit words: the pseudo-header is
    /// 2001+0db8+0010 (source), ff02+0001 (destination), 0020 (length) and
    /// 003a (next header), 0x12d26 in all; the message is 8800, 2000,
    /// 2001+0db8+0010 (target), 0201 and 0211+2233+4455, 0x14063 in all;
    /// total 0x26d89, folded 0x6d8b, complement 0x9274.
    #[rustfmt::skip]
    const NA: [u8; 86] = [
        // Ethernet: 33:33:00:00:00:01, our source, IPv6.
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01,
        0x02, 0x11, 0x22, 0x33, 0x44, 0x55,
        0x86, 0xdd,
        // IPv6: version 6, payload 32 bytes, ICMPv6, hop limit 255.
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff,
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x10, // source = VIP
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x01,       // ff02::1
        // ICMPv6 NA: type 136, code 0, checksum, flags O only.
        0x88, 0x00, 0x92, 0x74,
        0x20, 0x00, 0x00, 0x00,
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x10, // target = VIP
        // Target link-layer address option: type 2, 1 × 8 bytes, MAC.
        0x02, 0x01, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55,
    ];

    /// RFC 1071 over the IPv6 pseudo-header and the ICMPv6 message, written
    /// independently of pnet; 0 when the embedded checksum is right.
    fn icmpv6_checksum_residue(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 58]);
        bytes.extend_from_slice(icmp);
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn garp_frame_is_byte_exact() {
        assert_eq!(garp_frame(MAC, VIP4), GARP);
    }

    #[test]
    fn unsolicited_na_frame_is_byte_exact_with_a_valid_checksum() {
        let frame = unsolicited_na_frame(MAC, VIP6);
        assert_eq!(frame, NA);
        assert_eq!(icmpv6_checksum_residue(VIP6, ALL_NODES, &frame[54..]), 0);
    }

    #[test]
    fn probes_claim_nothing_and_the_solicitation_checksums() {
        let probe = arp_probe_frame(MAC, VIP4);
        assert_eq!(probe[..28], GARP[..28]);
        assert_eq!(probe[28..32], [0, 0, 0, 0], "sender IP 0.0.0.0");
        assert_eq!(probe[32..], GARP[32..]);
        let ns = dad_solicitation_frame(MAC, VIP6);
        assert_eq!(ns.len(), NS_FRAME_LEN);
        assert_eq!(ns[..6], [0x33, 0x33, 0xff, 0x00, 0x00, 0x10]);
        let group: Ipv6Addr = "ff02::1:ff00:10".parse().unwrap();
        assert_eq!(ns[38..54], group.octets());
        assert_eq!(ns[54], 135);
        assert_eq!(
            icmpv6_checksum_residue(Ipv6Addr::UNSPECIFIED, group, &ns[54..]),
            0
        );
    }

    #[test]
    fn router_flag_is_set_only_for_routers() {
        let frame = na_frame(MAC, VIP6, true);
        assert_eq!(frame[58], 0xa0, "Router and Override");
        assert_eq!(icmpv6_checksum_residue(VIP6, ALL_NODES, &frame[54..]), 0);
        assert_eq!(frame[..56], NA[..56]);
        assert_eq!(frame[59..], NA[59..]);
    }

    #[test]
    fn open_rejects_unknown_and_misnamed_interfaces() {
        in_netns(|| async {
            let nl = Netlink::connect().unwrap();
            let (a, _) = veth_pair(&nl, "vipd-a", "vipd-b").await;
            assert!(matches!(
                Announcer::open(9999, "vipd-x"),
                Err(AnnounceError::NoSuchInterface { .. })
            ));
            assert!(matches!(
                Announcer::open(a.index, "vipd-b"),
                Err(AnnounceError::NameMismatch { .. })
            ));
            // Loopback has an all-zero address: nothing to announce.
            assert!(matches!(
                Announcer::open(1, "lo"),
                Err(AnnounceError::NotEthernet { .. })
            ));
        });
    }

    /// A packet socket capturing every frame on `ifindex`.
    fn capture(ifindex: u32) -> Socket {
        const ETH_P_ALL: u16 = libc::ETH_P_ALL as u16;
        let socket = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(i32::from(ETH_P_ALL.to_be()).into()),
        )
        .unwrap();
        socket
            .bind(&packet_sockaddr(ifindex, ETH_P_ALL).unwrap())
            .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        socket
    }

    /// Frames from `mac` captured until both an ARP and an IPv6 NA were seen.
    fn captured_announcements(socket: &Socket, mac: [u8; 6]) -> (Vec<u8>, Vec<u8>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut arp, mut na) = (None, None);
        let mut buf = [0u8; 2048];
        while arp.is_none() || na.is_none() {
            assert!(Instant::now() < deadline, "announcements not captured");
            let Ok(n) = (&*socket).read(&mut buf) else {
                continue;
            };
            let Some(eth) = EthernetPacket::new(&buf[..n]) else {
                continue;
            };
            if eth.get_source() != MacAddr::from(mac) {
                continue;
            }
            if eth.get_ethertype() == EtherTypes::Arp {
                arp = Some(buf[..n].to_vec());
            } else if eth.get_ethertype() == EtherTypes::Ipv6
                && Ipv6Packet::new(eth.payload()).is_some_and(|ip| {
                    ip.get_next_header() == IpNextHeaderProtocols::Icmpv6
                        && ip.payload().first() == Some(&136)
                })
            {
                na = Some(buf[..n].to_vec());
            }
        }
        (arp.unwrap(), na.unwrap())
    }

    /// The MAC the peer's neighbour table has for `ip` on `ifindex`.
    async fn neighbour_mac(nl: &Netlink, ifindex: u32, ip: IpAddr) -> Option<Vec<u8>> {
        let neighbours: Vec<_> = raw_handle(nl)
            .neighbours()
            .get()
            .execute()
            .try_collect()
            .await
            .unwrap();
        neighbours.into_iter().find_map(|n| {
            let dst = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                    Some(IpAddr::V4(*v4))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                    Some(IpAddr::V6(*v6))
                }
                _ => None,
            })?;
            if n.header.ifindex != ifindex || dst != ip {
                return None;
            }
            n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLocalAddress(mac) => Some(mac.clone()),
                _ => None,
            })
        })
    }

    #[test]
    fn announcements_reach_the_peer_and_override_its_neighbour_cache() {
        in_netns(|| async {
            let nl = Netlink::connect().unwrap();
            let (a, b) = veth_pair(&nl, "vipd-a", "vipd-b").await;
            // The receiving side: on the VIPs' subnets, with stale entries
            // mapping both VIPs to some previous holder's MAC.
            nl.claim(b.index, "192.0.2.2".parse().unwrap(), 24)
                .await
                .unwrap();
            nl.claim(b.index, "2001:db8::2".parse().unwrap(), 64)
                .await
                .unwrap();
            let old_holder = [0x02, 0, 0, 0, 0, 0x99];
            for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
                raw_handle(&nl)
                    .neighbours()
                    .add(b.index, vip)
                    .link_local_address(&old_holder)
                    .state(NeighbourState::Stale)
                    .execute()
                    .await
                    .unwrap();
                assert_eq!(
                    neighbour_mac(&nl, b.index, vip).await,
                    Some(old_holder.to_vec())
                );
            }

            let capture = capture(b.index);
            let announcer = Announcer::open(a.index, "vipd-a").unwrap();
            assert_eq!(Some(announcer.mac()), a.mac);
            assert_eq!(announcer.ifindex(), a.index);
            announcer.announce(IpAddr::V4(VIP4)).unwrap();
            announcer.announce(IpAddr::V6(VIP6)).unwrap();

            let (arp_frame, na_frame) = captured_announcements(&capture, announcer.mac());
            assert_eq!(arp_frame, garp_frame(announcer.mac(), VIP4));
            let eth = EthernetPacket::new(&arp_frame).unwrap();
            assert_eq!(eth.get_destination(), MacAddr::broadcast());
            let arp = ArpPacket::new(eth.payload()).unwrap();
            assert_eq!(arp.get_operation(), ArpOperations::Request);
            assert_eq!(arp.get_sender_hw_addr(), MacAddr::from(announcer.mac()));
            assert_eq!(arp.get_sender_proto_addr(), VIP4);
            assert_eq!(arp.get_target_proto_addr(), VIP4);
            assert_eq!(arp.get_target_hw_addr(), MacAddr::zero());

            let eth = EthernetPacket::new(&na_frame).unwrap();
            assert_eq!(eth.get_destination(), MacAddr::from(ALL_NODES_MAC));
            let ip = Ipv6Packet::new(eth.payload()).unwrap();
            assert_eq!(ip.get_hop_limit(), 255);
            assert_eq!(ip.get_source(), VIP6);
            assert_eq!(ip.get_destination(), ALL_NODES);
            let na = NeighborAdvertPacket::new(ip.payload()).unwrap();
            assert_eq!(na.get_flags(), NeighborAdvertFlags::Override);
            assert_eq!(na.get_target_addr(), VIP6);
            let option = NdpOptionPacket::new(&ip.payload()[NA_LEN..]).unwrap();
            assert_eq!(option.get_option_type(), NdpOptionTypes::TargetLLAddr);
            assert_eq!(option.payload(), &announcer.mac()[..]);
            assert_eq!(icmpv6_checksum_residue(VIP6, ALL_NODES, ip.payload()), 0);

            // The peer's kernel accepted both: its entries now point at us.
            let ours = Some(announcer.mac().to_vec());
            for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
                let mut mac = None;
                for _ in 0..100 {
                    mac = neighbour_mac(&nl, b.index, vip).await;
                    if mac == ours {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                assert_eq!(mac, ours, "neighbour entry for {vip} not updated");
            }
        });
    }

    #[test]
    fn announce_fails_cleanly_on_a_down_link() {
        in_netns(|| async {
            let nl = Netlink::connect().unwrap();
            let (a, _) = veth_pair(&nl, "vipd-a", "vipd-b").await;
            let announcer = Announcer::open(a.index, "vipd-a").unwrap();
            crate::net::netlink::tests::set_down(&nl, a.index).await;
            let err = announcer.announce(IpAddr::V4(VIP4)).unwrap_err();
            assert!(matches!(err, AnnounceError::Send { .. }), "{err:?}");
            assert_eq!(err.to_string(), "announcing 192.0.2.10 on vipd-a");
        });
    }
}
