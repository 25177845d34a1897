//! Watching who answers for the VIPs: ARP packets and IPv6 neighbour
//! advertisements on the instance's interface, as [`Sighting`]s for the
//! conflict watch ([`crate::conflict`]).
//!
//! The threat: any host on the segment can claim a VIP with a gratuitous ARP
//! or an unsolicited NA, and clients follow the last claim they heard.
//! Nothing in ARP says who may claim, so the only defence is to notice and
//! answer (the conflict watch's rules).
//!
//! The choice: one `AF_PACKET` socket per instance, opened only while the
//! instance holds or probes its VIPs, with a classic BPF filter attached
//! before it is bound, so the kernel passes nothing but ARP packets whose
//! sender address is one of the instance's IPv4 VIPs and ICMPv6 neighbour
//! advertisements. Everything else on the link (adverts, floods of junk,
//! client traffic) is dropped in the kernel without waking the daemon. Our own
//! frames are never delivered (`PACKET_IGNORE_OUTGOING`).
//!
//! [`parse_sighting`] is a pure function of the frame and checks every field
//! it reads; a frame it does not understand is `None`, never an error.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use socket2::{Domain, Socket, Type};
use thiserror::Error;
use tokio::io::unix::AsyncFd;

use super::announce::packet_sockaddr;
use crate::conflict::{Mac, Sighting};

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_ICMPV6: u8 = 58;
const ICMPV6_NEIGHBOUR_ADVERT: u8 = 136;
const NDP_OPTION_TARGET_LLADDR: u8 = 2;

/// Ethernet header, then the ARP fields at these offsets.
const ARP_SENDER_MAC: usize = 22;
const ARP_SENDER_IP: usize = 28;
const ARP_FRAME_LEN: usize = 42;
/// Ethernet header, IPv6 header (40), then the NA (type, code, checksum,
/// flags, target) and its options.
const IPV6_NEXT_HEADER: usize = 20;
const IPV6_HOP_LIMIT: usize = 21;
const ICMPV6_TYPE: usize = 54;
const NA_TARGET: usize = 62;
const NA_OPTIONS: usize = 78;
/// `SOL_PACKET`'s option that stops a socket receiving the host's own frames.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// The most IPv4 VIPs one filter compares (each is one instruction; the
/// jumps are 8-bit).
pub const MAX_FILTERED_VIPS: usize = 200;
/// The socket's receive buffer: a few frames (the kernel doubles it and
/// counts its own overhead per frame).
const RECEIVE_BUFFER: usize = 4096;
/// Bytes of each frame the filter keeps: the longest frame parsed (an NA with
/// its link-layer option).
const SNAP_LEN: u32 = 128;

/// What went wrong opening the watch, naming the interface.
#[derive(Debug, Error)]
pub enum WatchError {
    /// Opening, filtering or binding the packet socket failed.
    #[error("opening an ARP/NA watch on {ifname} (index {ifindex}): {step}")]
    Socket {
        ifname: String,
        ifindex: u32,
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The open watch: yields the sightings the filter passes.
#[derive(Debug)]
pub struct NeighbourWatch {
    socket: AsyncFd<Socket>,
    vips: Vec<IpAddr>,
}

impl NeighbourWatch {
    /// Opens a packet socket on `ifindex` passing only ARP for `vips`' IPv4
    /// addresses and neighbour advertisements. Needs a tokio runtime.
    pub fn open(ifindex: u32, ifname: &str, vips: &[IpAddr]) -> Result<Self, WatchError> {
        let fail = |step: &'static str| {
            let ifname = ifname.to_owned();
            move |source| WatchError::Socket {
                ifname,
                ifindex,
                step,
                source,
            }
        };
        // Protocol 0: the socket receives nothing until it is bound below,
        // after the filter is in place.
        let socket =
            Socket::new(Domain::PACKET, Type::RAW.nonblocking(), None).map_err(fail("socket"))?;
        let program = filter_program(vips);
        attach_filter(&socket, &program).map_err(fail("attaching the filter"))?;
        set_ignore_outgoing(&socket).map_err(fail("PACKET_IGNORE_OUTGOING"))?;
        // A small queue: the reader takes a sighting now and then, and under a
        // flood of claims the kernel drops the rest instead of queueing them.
        socket
            .set_recv_buffer_size(RECEIVE_BUFFER)
            .map_err(fail("SO_RCVBUF"))?;
        let addr = packet_sockaddr(ifindex, tap_protocol(vips)).map_err(fail("address"))?;
        socket.bind(&addr).map_err(fail("bind"))?;
        // SAFETY: the socket owns its descriptor and `as_raw_fd` returns that
        // one until the AsyncFd (which owns the socket) is dropped.
        let socket =
            unsafe { AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE) }
                .map_err(|e| e.into_parts().1)
                .map_err(fail("registering with the runtime"))?;
        Ok(Self {
            socket,
            vips: vips.to_vec(),
        })
    }

    /// The next sighting of one of the VIPs. Frames that are not (a filter
    /// race before bind, an NA for another address) are skipped.
    pub async fn next(&self) -> io::Result<Sighting> {
        let mut buf = [0u8; SNAP_LEN as usize];
        loop {
            let mut ready = self.socket.readable().await?;
            match ready.try_io(|socket| socket.get_ref().read(&mut buf)) {
                Ok(Ok(len)) => {
                    let frame = buf.get(..len).unwrap_or(&buf);
                    if let Some(sighting) = parse_sighting(frame) {
                        if self.vips.contains(&sighting.addr) {
                            return Ok(sighting);
                        }
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// The address an ARP packet or neighbour advertisement claims, and the MAC
/// it claims it for: an ARP request or reply's sender (a gratuitous ARP, a
/// reply to a client, a reply to our probe), or an NA's target with its
/// Target Link-Layer Address option (the frame's source when it has none).
/// An ARP probe (sender address 0.0.0.0) claims nothing.
pub fn parse_sighting(frame: &[u8]) -> Option<Sighting> {
    let ethertype = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    match ethertype {
        ETHERTYPE_ARP => {
            if frame.len() < ARP_FRAME_LEN {
                return None;
            }
            let header = frame.get(14..22)?;
            // Ethernet, IPv4, 6 and 4 bytes, request or reply.
            if header[0..2] != [0, 1]
                || u16::from_be_bytes([header[2], header[3]]) != ETHERTYPE_IPV4
                || header[4] != 6
                || header[5] != 4
                || !matches!(u16::from_be_bytes([header[6], header[7]]), 1 | 2)
            {
                return None;
            }
            let mac: [u8; 6] = frame
                .get(ARP_SENDER_MAC..ARP_SENDER_MAC + 6)?
                .try_into()
                .ok()?;
            let ip: [u8; 4] = frame
                .get(ARP_SENDER_IP..ARP_SENDER_IP + 4)?
                .try_into()
                .ok()?;
            let ip = Ipv4Addr::from(ip);
            (!ip.is_unspecified()).then_some(Sighting {
                addr: IpAddr::V4(ip),
                mac: Mac(mac),
            })
        }
        ETHERTYPE_IPV6 => {
            // RFC 4861 §7.1.2: a valid NA has hop limit 255 and code 0.
            if *frame.get(IPV6_NEXT_HEADER)? != IPPROTO_ICMPV6
                || *frame.get(IPV6_HOP_LIMIT)? != 255
                || *frame.get(ICMPV6_TYPE)? != ICMPV6_NEIGHBOUR_ADVERT
                || *frame.get(ICMPV6_TYPE + 1)? != 0
            {
                return None;
            }
            let target: [u8; 16] = frame.get(NA_TARGET..NA_TARGET + 16)?.try_into().ok()?;
            let mut mac: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
            let mut options = frame.get(NA_OPTIONS..).unwrap_or(&[]);
            while options.len() >= 8 {
                let len = usize::from(options[1]) * 8;
                if len == 0 || len > options.len() {
                    break;
                }
                if options[0] == NDP_OPTION_TARGET_LLADDR && len == 8 {
                    mac.copy_from_slice(&options[2..8]);
                    break;
                }
                options = &options[len..];
            }
            Some(Sighting {
                addr: IpAddr::V6(Ipv6Addr::from(target)),
                mac: Mac(mac),
            })
        }
        _ => None,
    }
}

/// The classic BPF program: accept ARP whose sender address is one of the
/// IPv4 `vips` (at most [`MAX_FILTERED_VIPS`]; more are accepted unfiltered
/// by address and checked by [`NeighbourWatch::next`]), and ICMPv6 neighbour
/// advertisements without extension headers; drop the rest.
pub fn filter_program(vips: &[IpAddr]) -> Vec<libc::sock_filter> {
    const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let v4: Vec<u32> = vips
        .iter()
        .filter_map(|v| match v {
            IpAddr::V4(ip) => Some(u32::from(*ip)),
            IpAddr::V6(_) => None,
        })
        .collect();
    let filtered = v4.len() <= MAX_FILTERED_VIPS;
    // Layout: 0 ldh [12]; 1 jeq ARP; 2 jeq IPv6; 3 ret 0;
    // ARP: ld [28]; one jeq per VIP (to accept), ret 0;
    // IPv6: ldb [20]; jeq 58; ldb [54]; jeq 136; ret 0; accept: ret SNAP.
    let arp_len = if filtered { 1 + v4.len() + 1 } else { 1 };
    let ipv6_len = 5;
    let mut p = Vec::with_capacity(4 + arp_len + ipv6_len + 1);
    p.push(op(LD_H_ABS, 0, 0, 12));
    // Jumps are relative to the next instruction.
    p.push(op(JEQ_K, 2, 0, u32::from(ETHERTYPE_ARP)));
    p.push(op(JEQ_K, (arp_len + 1) as u8, 0, u32::from(ETHERTYPE_IPV6)));
    // Index 3: drop. ARP starts at 4.
    p.push(op(RET_K, 0, 0, 0));
    if filtered {
        p.push(op(LD_W_ABS, 0, 0, ARP_SENDER_IP as u32));
        let n = v4.len();
        for (i, ip) in v4.iter().enumerate() {
            // To accept: skip the rest of the compares, the drop and IPv6's 5.
            let to_accept = (n - 1 - i) + 1 + ipv6_len;
            p.push(op(JEQ_K, to_accept as u8, 0, *ip));
        }
        p.push(op(RET_K, 0, 0, 0));
    } else {
        p.push(op(RET_K, 0, 0, SNAP_LEN));
    }
    p.push(op(LD_B_ABS, 0, 0, IPV6_NEXT_HEADER as u32));
    p.push(op(JEQ_K, 0, 2, u32::from(IPPROTO_ICMPV6)));
    p.push(op(LD_B_ABS, 0, 0, ICMPV6_TYPE as u32));
    p.push(op(JEQ_K, 1, 0, u32::from(ICMPV6_NEIGHBOUR_ADVERT)));
    p.push(op(RET_K, 0, 0, 0));
    p.push(op(RET_K, 0, 0, SNAP_LEN));
    p
}

/// The EtherType the socket is bound to: only ARP when every VIP is IPv4,
/// only IPv6 when every VIP is IPv6, every frame otherwise. Why not always
/// every frame: the kernel runs each bound packet socket's filter for every
/// frame of its type on the link, in the softirq of whoever sent or received
/// it — with 255 instances holding IPv4 VIPs, each advert on the link ran 255
/// filters (a fifth of both nodes' CPU); bound to ARP, adverts never reach
/// them.
fn tap_protocol(vips: &[IpAddr]) -> u16 {
    let v4 = vips.iter().any(IpAddr::is_ipv4);
    let v6 = vips.iter().any(IpAddr::is_ipv6);
    match (v4, v6) {
        (true, false) => libc::ETH_P_ARP as u16,
        (false, true) => libc::ETH_P_IPV6 as u16,
        _ => libc::ETH_P_ALL as u16,
    }
}

fn attach_filter(socket: &Socket, program: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter too long"))?,
        // The kernel copies the instructions during the call and never writes them.
        filter: program.as_ptr().cast_mut(),
    };
    super::set_socket_option(socket, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

fn set_ignore_outgoing(socket: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    super::set_socket_option(socket, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &on)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::announce::{arp_probe_frame, garp_frame, unsolicited_na_frame};

    const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

    /// A classic BPF interpreter for the instructions [`filter_program`] uses,
    /// so the program's jumps are checked without a kernel. A load past the
    /// frame's end ends the program with 0, as in the kernel.
    fn run(program: &[libc::sock_filter], frame: &[u8]) -> u32 {
        let load = |off: u32, n: usize| -> Option<u32> {
            let b = frame.get(off as usize..off as usize + n)?;
            Some(b.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x)))
        };
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        loop {
            let i = program[pc];
            pc += 1;
            let loaded = match i.code {
                0x28 => load(i.k, 2),
                0x20 => load(i.k, 4),
                0x30 => load(i.k, 1),
                0x15 => {
                    pc += usize::from(if acc == i.k { i.jt } else { i.jf });
                    continue;
                }
                0x06 => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            };
            match loaded {
                Some(value) => acc = value,
                None => return 0,
            }
        }
    }

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_tap_takes_only_the_frames_the_vips_can_be_claimed_in() {
        let v4: IpAddr = "10.0.0.1".parse().expect("v4");
        let v6: IpAddr = "fd00::1".parse().expect("v6");
        assert_eq!(tap_protocol(&[v4]), libc::ETH_P_ARP as u16);
        assert_eq!(tap_protocol(&[v6]), libc::ETH_P_IPV6 as u16);
        assert_eq!(tap_protocol(&[v4, v6]), libc::ETH_P_ALL as u16);
    }

    #[test]
    fn filter_passes_arp_for_our_vips_and_neighbour_adverts_only() {
        let vips = [v4("10.0.0.200"), v4("10.0.0.201"), v4("2001:db8::10")];
        let program = filter_program(&vips);
        let ours = garp_frame(MAC, "10.0.0.201".parse().unwrap());
        let other = garp_frame(MAC, "10.0.0.9".parse().unwrap());
        let probe = arp_probe_frame(MAC, "10.0.0.200".parse().unwrap());
        let na = unsolicited_na_frame(MAC, "2001:db8::10".parse().unwrap());
        assert_eq!(run(&program, &ours), SNAP_LEN);
        assert_eq!(run(&program, &other), 0);
        assert_eq!(run(&program, &probe), 0, "a probe's sender is 0.0.0.0");
        assert_eq!(run(&program, &na), SNAP_LEN);
        let mut udp = na.clone();
        udp[IPV6_NEXT_HEADER] = 17;
        assert_eq!(run(&program, &udp), 0);
        assert_eq!(run(&program, &[0u8; 10]), 0, "a runt frame");
    }

    #[test]
    fn filter_without_ipv4_vips_still_passes_neighbour_adverts() {
        let program = filter_program(&[v4("2001:db8::10")]);
        let na = unsolicited_na_frame(MAC, "2001:db8::10".parse().unwrap());
        assert_eq!(run(&program, &na), SNAP_LEN);
        assert_eq!(
            run(&program, &garp_frame(MAC, "10.0.0.1".parse().unwrap())),
            0
        );
    }

    #[test]
    fn sightings_of_a_garp_a_reply_and_an_na() {
        let garp = garp_frame(MAC, "10.0.0.200".parse().unwrap());
        assert_eq!(
            parse_sighting(&garp),
            Some(Sighting {
                addr: v4("10.0.0.200"),
                mac: Mac(MAC)
            })
        );
        let mut reply = garp.clone();
        reply[21] = 2;
        assert!(parse_sighting(&reply).is_some());
        let na = unsolicited_na_frame(MAC, "2001:db8::10".parse().unwrap());
        assert_eq!(
            parse_sighting(&na),
            Some(Sighting {
                addr: v4("2001:db8::10"),
                mac: Mac(MAC)
            })
        );
    }

    #[test]
    fn frames_that_claim_nothing_are_none() {
        let probe = arp_probe_frame(MAC, "10.0.0.200".parse().unwrap());
        assert_eq!(parse_sighting(&probe), None);
        let garp = garp_frame(MAC, "10.0.0.200".parse().unwrap());
        for cut in 0..ARP_FRAME_LEN {
            assert_eq!(parse_sighting(&garp[..cut]), None, "cut at {cut}");
        }
        let mut bad_op = garp.clone();
        bad_op[21] = 9;
        assert_eq!(parse_sighting(&bad_op), None);
        let na = unsolicited_na_frame(MAC, "2001:db8::10".parse().unwrap());
        let mut hop = na.clone();
        hop[IPV6_HOP_LIMIT] = 64;
        assert_eq!(parse_sighting(&hop), None);
        for cut in 0..NA_TARGET + 16 {
            assert_eq!(parse_sighting(&na[..cut]), None, "cut at {cut}");
        }
        // A zero-length option ends the walk; the frame's source MAC is used.
        let mut zero = na.clone();
        zero[NA_OPTIONS + 1] = 0;
        assert_eq!(parse_sighting(&zero).map(|s| s.mac), Some(Mac(MAC)));
    }
}
