//! Floods of junk adverts, and what the peer sees meanwhile (issue 11): [`Flood`]
//! sends, from one thread in a lab namespace (the client's), as many datagrams
//! as it can for a bounded time, each one a well-framed advert with a bad MAC
//! (vipd: magic, version 1, the right group and auth type, so that every packet
//! goes through decode and the MAC check; keepalived: VRRPv3 with the right VRID
//! and a bad checksum). [`AdvertWatch`] records, with the kernel's arrival
//! timestamps, every advert one node sends, as another namespace receives them,
//! for the longest gap between a master's adverts during a flood. [`cpu_ticks`]
//! reads a process's CPU time. It sends only inside lab namespaces and reads
//! only what they receive; it never touches a daemon except through the link.
//!
//! Two kinds of source ([`Sources`]): one (an ordinary socket: UDP for vipd, a
//! raw IP socket of protocol 112 for VRRP, so the kernel builds the IP header,
//! TTL 255), or spoofed (AF_PACKET frames with a random source IPv4 per packet
//! inside the lab's subnet, correct IPv4 and UDP checksums). Both send with
//! `sendmmsg`, [`BATCH`] packets per call, round-robin over the targets.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::libc;

use super::{spawn_when_ready, Host, Netns};

/// vipd's advert port.
pub(crate) const VIPD_PORT: u16 = 5880;
/// The VRRP multicast group (RFC 5798 §5.1.1.2).
pub(crate) const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// VRRP's IP protocol number.
const IPPROTO_VRRP: u8 = 112;
/// Packets per `sendmmsg` call.
pub(crate) const BATCH: usize = 64;
/// The MAC carried by every junk vipd advert: never a valid HMAC.
const BAD_MAC_BYTE: u8 = 0xa5;

/// vipd's default multicast group of advert group `group`: 239.255.80.<group>.
pub(crate) fn vipd_group(group: u8) -> Ipv4Addr {
    Ipv4Addr::new(239, 255, 80, group)
}

/// What each junk packet carries.
#[derive(Clone, Debug)]
pub(crate) enum Junk {
    /// A vipd advert (auth type HMAC) for `group`, priority 255, MASTER flag
    /// set, with a MAC that never verifies.
    Vipd { group: u8 },
    /// A VRRPv3 advert for `vrid`, priority 255, naming `vip`, with a checksum
    /// that never verifies.
    Vrrp { vrid: u8, vip: Ipv4Addr },
}

/// Where the packets seem to come from.
#[derive(Clone, Debug)]
pub(crate) enum Sources {
    /// The sending host's own address, through an ordinary socket.
    One,
    /// A random address per packet inside `net/prefix_len` (network and
    /// broadcast addresses, and `exclude`, left out), over AF_PACKET.
    Spoofed {
        net: Ipv4Addr,
        prefix_len: u8,
        exclude: Vec<Ipv4Addr>,
    },
}

impl Sources {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::One => "one source",
            Self::Spoofed { .. } => "spoofed sources",
        }
    }
}

/// A destination: an address and the MAC its frames go to (for a multicast
/// group, the group's MAC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) ip: Ipv4Addr,
    pub(crate) mac: [u8; 6],
}

impl Target {
    /// A multicast group (RFC 1112 §6.4: 01:00:5e and the group's low 23 bits).
    pub(crate) fn multicast(ip: Ipv4Addr) -> Self {
        let o = ip.octets();
        Self {
            ip,
            mac: [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]],
        }
    }

    /// A lab host's own address on `eth0`.
    pub(crate) fn host(host: &Host) -> Self {
        Self {
            ip: host.v4.parse().expect("a lab host has an IPv4 address"),
            mac: host.mac_bytes(),
        }
    }
}

/// One flood: from which host, to whom, what, for how long.
#[derive(Clone, Debug)]
pub(crate) struct FloodSpec {
    pub(crate) netns: String,
    pub(crate) src_mac: [u8; 6],
    pub(crate) src_ip: Ipv4Addr,
    pub(crate) targets: Vec<Target>,
    pub(crate) junk: Junk,
    pub(crate) sources: Sources,
    pub(crate) duration: Duration,
}

impl FloodSpec {
    /// A flood sent from `host`'s `eth0`.
    pub(crate) fn from_host(
        host: &Host,
        targets: Vec<Target>,
        junk: Junk,
        sources: Sources,
        duration: Duration,
    ) -> Self {
        Self {
            netns: host.ns.name.clone(),
            src_mac: host.mac_bytes(),
            src_ip: host.v4.parse().expect("a lab host has an IPv4 address"),
            targets,
            junk,
            sources,
            duration,
        }
    }
}

/// What a flood sent.
#[derive(Clone, Debug)]
pub(crate) struct FloodReport {
    /// Packets the kernel accepted, all targets.
    pub(crate) sent: u64,
    /// Packets accepted per target, in the order of [`FloodSpec::targets`].
    pub(crate) per_target: Vec<(Ipv4Addr, u64)>,
    pub(crate) elapsed: Duration,
    /// Failed `sendmmsg` calls, and the first error.
    pub(crate) send_errors: u64,
    pub(crate) first_error: Option<String>,
}

impl FloodReport {
    /// Packets offered per second.
    pub(crate) fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One line for the test's or bench's output.
    pub(crate) fn describe(&self) -> String {
        let per: Vec<String> = self
            .per_target
            .iter()
            .map(|(ip, n)| format!("{n} to {ip}"))
            .collect();
        format!(
            "{} packets in {:.2} s = {:.0}/s ({}){}",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.rate(),
            per.join(", "),
            match &self.first_error {
                Some(e) => format!("; {} failed sends, first: {e}", self.send_errors),
                None => String::new(),
            }
        )
    }
}

/// A flood running on its own thread; stopped and joined on drop.
pub(crate) struct Flood {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<Option<FloodReport>>>,
    handle: Option<thread::JoinHandle<Result<()>>>,
}

impl Flood {
    /// Opens the socket in `spec.netns` and starts sending; returns once the
    /// socket is ready.
    pub(crate) fn start(spec: FloodSpec) -> Result<Self> {
        if spec.targets.is_empty() {
            bail!("a flood needs a target");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(None));
        let (thread_stop, thread_report) = (stop.clone(), report.clone());
        let handle = spawn_when_ready("flooder", move |ready| {
            let r = flood_loop(&spec, &thread_stop, ready)?;
            *thread_report.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
            Ok(())
        })?;
        Ok(Self {
            stop,
            report,
            handle: Some(handle),
        })
    }

    /// Whether the flood has finished (its duration is over, or it failed).
    pub(crate) fn is_finished(&self) -> bool {
        self.handle
            .as_ref()
            .is_none_or(thread::JoinHandle::is_finished)
    }

    /// Waits for the end of the flood and returns what it sent.
    pub(crate) fn join(mut self) -> Result<FloodReport> {
        match self.handle.take().map(thread::JoinHandle::join) {
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(_)) => bail!("the flooder thread panicked"),
            None => bail!("the flood was already joined"),
        }
        let report = self
            .report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        report.context("the flooder ended without a report")
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------

/// The junk payload above IP: a UDP payload for vipd, the VRRP message for VRRP
/// (its checksum is filled in per source and destination, see [`vrrp_checksum`]).
fn junk_payload(junk: &Junk) -> Vec<u8> {
    match junk {
        Junk::Vipd { group } => {
            // src/wire.rs: header (52 bytes), name, 32-byte MAC.
            let name = b"flood";
            let mut p = Vec::with_capacity(52 + name.len() + 32);
            p.extend_from_slice(b"VIPD");
            p.push(1); // version
            p.push(1); // auth type: HMAC-SHA256, as the lab's instances use
            p.push(*group);
            p.push(255); // priority
            p.extend_from_slice(&1u16.to_be_bytes()); // 10 ms
            p.push(0x01); // MASTER
            p.push(name.len() as u8);
            p.extend_from_slice(&0xf100_d000_0000_0001u64.to_be_bytes()); // node id
            p.extend_from_slice(&1u64.to_be_bytes()); // boot id
            p.extend_from_slice(&u64::MAX.to_be_bytes()); // sequence
            p.extend_from_slice(&0u64.to_be_bytes()); // promote epoch
            p.extend_from_slice(&[0; 8]); // VIP set digest
            p.extend_from_slice(name);
            p.extend_from_slice(&[BAD_MAC_BYTE; 32]);
            p
        }
        Junk::Vrrp { vrid, vip } => {
            let mut p = vec![0x31, *vrid, 255, 1];
            p.extend_from_slice(&1u16.to_be_bytes()); // max advert interval: 10 ms
            p.extend_from_slice(&[0, 0]); // checksum, filled per packet
            p.extend_from_slice(&vip.octets());
            p
        }
    }
}

/// The one's-complement sum of `data` added to `sum`, not yet folded.
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo-header sum (RFC 768, RFC 5798 §5.2.8) for `proto` and `len`.
fn pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut s = sum16(0, &src.octets());
    s = sum16(s, &dst.octets());
    s + u32::from(proto) + len as u32
}

/// A VRRP checksum that never verifies: the right one with its low byte flipped
/// (never the right one, nor its other one's-complement form).
fn vrrp_checksum(src: Ipv4Addr, dst: Ipv4Addr, msg: &[u8]) -> u16 {
    let good = fold(sum16(pseudo_sum(src, dst, IPPROTO_VRRP, msg.len()), msg));
    good ^ 0x00ff
}

/// Writes `vrrp`'s checksum field (bytes 6..8) for `src` and `dst`.
fn set_vrrp_checksum(vrrp: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
    vrrp[6..8].copy_from_slice(&[0, 0]);
    let c = vrrp_checksum(src, dst, vrrp);
    vrrp[6..8].copy_from_slice(&c.to_be_bytes());
}

/// Ethernet + IPv4 (+ UDP for vipd) + payload, checksums correct (but VRRP's).
fn frame(
    src_mac: [u8; 6],
    target: &Target,
    src: Ipv4Addr,
    junk: &Junk,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let (proto, l4_len) = match junk {
        Junk::Vipd { .. } => (17u8, 8 + payload.len()),
        Junk::Vrrp { .. } => (IPPROTO_VRRP, payload.len()),
    };
    let total = 20 + l4_len;
    out.clear();
    out.extend_from_slice(&target.mac);
    out.extend_from_slice(&src_mac);
    out.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_at = out.len();
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&(total as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x40, 0, 255, proto, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&target.ip.octets());
    let ip_sum = fold(sum16(0, &out[ip_at..ip_at + 20]));
    out[ip_at + 10..ip_at + 12].copy_from_slice(&ip_sum.to_be_bytes());
    match junk {
        Junk::Vipd { .. } => {
            let udp_at = out.len();
            out.extend_from_slice(&VIPD_PORT.to_be_bytes());
            out.extend_from_slice(&VIPD_PORT.to_be_bytes());
            out.extend_from_slice(&(l4_len as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(payload);
            let s = sum16(pseudo_sum(src, target.ip, 17, l4_len), &out[udp_at..]);
            // 0 means "no checksum" over IPv4; the same sum is sent as 0xffff.
            let c = match fold(s) {
                0 => 0xffff,
                c => c,
            };
            out[udp_at + 6..udp_at + 8].copy_from_slice(&c.to_be_bytes());
        }
        Junk::Vrrp { .. } => {
            let vrrp_at = out.len();
            out.extend_from_slice(payload);
            set_vrrp_checksum(&mut out[vrrp_at..], src, target.ip);
        }
    }
}

/// xorshift64*: fast, and good enough to spread source addresses.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
        Self(t | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A random host address of `net/prefix_len`, none of `exclude`.
fn random_source(rng: &mut Rng, net: Ipv4Addr, prefix_len: u8, exclude: &[Ipv4Addr]) -> Ipv4Addr {
    let host_bits = 32 - u32::from(prefix_len.clamp(8, 30));
    let mask = (1u32 << host_bits) - 1;
    let base = u32::from(net) & !mask;
    loop {
        let host = (rng.next() >> 32) as u32 & mask;
        if host == 0 || host == mask {
            continue;
        }
        let ip = Ipv4Addr::from(base | host);
        if !exclude.contains(&ip) {
            return ip;
        }
    }
}

// ---------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------

fn check(rc: libc::c_int, what: &str) -> Result<()> {
    if rc < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// socket(2), close-on-exec, owned.
pub(crate) fn new_socket(
    domain: libc::c_int,
    ty: libc::c_int,
    proto: libc::c_int,
) -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned by the OwnedFd below.
    let raw = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    check(raw, "socket")?;
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// setsockopt(2) with `value` as the option, by its size.
fn set_opt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    what: &str,
) -> Result<()> {
    // SAFETY: `value` is a live, initialised option value of the size given;
    // the kernel only reads it during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    check(rc, what)
}

fn set_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
    what: &str,
) -> Result<()> {
    set_opt(fd, level, name, &value, what)
}

/// An AF_PACKET socket on `eth0` of the current namespace for `protocol`
/// (host order), bound; returns it and the interface index.
pub(crate) fn packet_socket(protocol: u16) -> Result<(OwnedFd, i32)> {
    let proto = protocol.to_be();
    let fd = new_socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto))?;
    let ifindex = nix::net::if_::if_nametoindex("eth0")? as i32;
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex;
    // SAFETY: a valid sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    check(rc, "bind AF_PACKET")?;
    Ok((fd, ifindex))
}

/// An ordinary socket from the host's own address: UDP for vipd, raw IP
/// (protocol 112) for VRRP; bound to `eth0`, TTL 255, no multicast loop.
fn one_source_socket(junk: &Junk) -> Result<OwnedFd> {
    let fd = match junk {
        Junk::Vipd { .. } => new_socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDP)?,
        Junk::Vrrp { .. } => new_socket(libc::AF_INET, libc::SOCK_RAW, i32::from(IPPROTO_VRRP))?,
    };
    set_opt(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_BINDTODEVICE,
        b"eth0\0",
        "SO_BINDTODEVICE eth0",
    )?;
    set_int(&fd, libc::IPPROTO_IP, libc::IP_TTL, 255, "IP_TTL")?;
    set_int(
        &fd,
        libc::IPPROTO_IP,
        libc::IP_MULTICAST_TTL,
        255,
        "IP_MULTICAST_TTL",
    )?;
    set_int(
        &fd,
        libc::IPPROTO_IP,
        libc::IP_MULTICAST_LOOP,
        0,
        "IP_MULTICAST_LOOP",
    )?;
    let ifindex = nix::net::if_::if_nametoindex("eth0")? as i32;
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex,
    };
    set_opt(
        &fd,
        libc::IPPROTO_IP,
        libc::IP_MULTICAST_IF,
        &mreqn,
        "IP_MULTICAST_IF",
    )?;
    Ok(fd)
}

fn sockaddr_in(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Sends `bufs` (one packet each) with `sendmmsg`, to `addrs[i]` when given;
/// returns how many the kernel took (a partial batch is not retried: the next
/// batch goes).
fn send_batch(
    fd: &OwnedFd,
    bufs: &mut [Vec<u8>],
    addrs: Option<&mut [libc::sockaddr_in]>,
) -> std::io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; zeroed is a valid value.
    let mut msgs: Vec<libc::mmsghdr> = (0..iovs.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    let addr_ptrs: Vec<*mut libc::sockaddr_in> = match addrs {
        Some(a) => a.iter_mut().map(std::ptr::from_mut).collect(),
        None => Vec::new(),
    };
    for (i, m) in msgs.iter_mut().enumerate() {
        m.msg_hdr.msg_iov = &mut iovs[i];
        m.msg_hdr.msg_iovlen = 1;
        if let Some(&a) = addr_ptrs.get(i) {
            m.msg_hdr.msg_name = a.cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        }
    }
    // SAFETY: every mmsghdr points at a live iovec (and address) of this frame.
    let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as u32, 0) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn flood_loop(spec: &FloodSpec, stop: &AtomicBool, ready: &super::Ready) -> Result<FloodReport> {
    Netns::enter(&spec.netns).with_context(|| format!("enter {}", spec.netns))?;
    let payload = junk_payload(&spec.junk);
    let n_targets = spec.targets.len();
    let mut per_target = vec![0u64; n_targets];
    let mut send_errors = 0u64;
    let mut first_error = None;
    let mut rng = Rng::seeded();
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(256)).collect();
    let (fd, mut addrs) = match &spec.sources {
        Sources::One => {
            let fd = one_source_socket(&spec.junk)?;
            // The same payload every time, but VRRP's checksum depends on the
            // destination: one buffer per packet, filled once.
            for (i, b) in bufs.iter_mut().enumerate() {
                let t = &spec.targets[i % n_targets];
                b.clone_from(&payload);
                if matches!(spec.junk, Junk::Vrrp { .. }) {
                    set_vrrp_checksum(b, spec.src_ip, t.ip);
                }
            }
            let port = match spec.junk {
                Junk::Vipd { .. } => VIPD_PORT,
                Junk::Vrrp { .. } => 0,
            };
            let addrs: Vec<libc::sockaddr_in> = (0..BATCH)
                .map(|i| sockaddr_in(spec.targets[i % n_targets].ip, port))
                .collect();
            (fd, Some(addrs))
        }
        Sources::Spoofed { .. } => {
            let (fd, _) = packet_socket(0x0800)?;
            // Outgoing only: nothing is read, so receive nothing either.
            set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 0, "SO_RCVBUF")?;
            // veth has no qdisc worth queueing in; go straight to the driver.
            let _ = set_int(
                &fd,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                1,
                "PACKET_QDISC_BYPASS",
            );
            (fd, None)
        }
    };
    ready.send(Ok(())).ok();
    let start = Instant::now();
    let end = start + spec.duration;
    // BATCH is a multiple of every target count the lab uses (1, 2); the
    // counts below follow the round-robin either way.
    let mut next_target = 0usize;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        if let Sources::Spoofed {
            net,
            prefix_len,
            exclude,
        } = &spec.sources
        {
            for (i, b) in bufs.iter_mut().enumerate() {
                let src = random_source(&mut rng, *net, *prefix_len, exclude);
                let t = &spec.targets[(next_target + i) % n_targets];
                frame(spec.src_mac, t, src, &spec.junk, &payload, b);
            }
        }
        let result = send_batch(&fd, &mut bufs, addrs.as_deref_mut());
        match result {
            Ok(n) => {
                for i in 0..n {
                    per_target[(next_target + i) % n_targets] += 1;
                }
                if matches!(spec.sources, Sources::Spoofed { .. }) {
                    next_target = (next_target + n) % n_targets;
                }
            }
            Err(e) => {
                send_errors += 1;
                if first_error.is_none() {
                    first_error = Some(e.to_string());
                }
                if e.raw_os_error() == Some(libc::ENOBUFS)
                    || e.kind() == std::io::ErrorKind::WouldBlock
                {
                    thread::yield_now();
                }
            }
        }
    }
    let elapsed = start.elapsed();
    Ok(FloodReport {
        sent: per_target.iter().sum(),
        per_target: spec.targets.iter().map(|t| t.ip).zip(per_target).collect(),
        elapsed,
        send_errors,
        first_error,
    })
}

// ---------------------------------------------------------------------------
// The adverts one node sends, as another receives them
// ---------------------------------------------------------------------------

/// A thread in one namespace recording the kernel's arrival time (Unix seconds)
/// of every IPv4 multicast UDP or VRRP packet from one MAC: a node's adverts as
/// a peer receives them. A classic BPF filter keeps everything else (a flood
/// included) out of its socket, and the kernel's timestamps keep a starved
/// thread from inventing gaps. Stopped on drop.
pub(crate) struct AdvertWatch {
    times: Arc<Mutex<Vec<f64>>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Result<()>>>,
}

impl AdvertWatch {
    /// Watches `eth0` of namespace `netns` for adverts from `from_mac`.
    pub(crate) fn start(netns: &str, from_mac: [u8; 6]) -> Result<Self> {
        let times = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s, ns) = (times.clone(), stop.clone(), netns.to_owned());
        let handle = spawn_when_ready("advert watch", move |ready| {
            watch_loop(&ns, from_mac, &t, &s, ready)
        })?;
        Ok(Self {
            times,
            stop,
            handle: Some(handle),
        })
    }

    /// Arrival times so far (Unix seconds).
    pub(crate) fn times(&self) -> Vec<f64> {
        self.times
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The longest time without an advert over `[from, to]` (Unix seconds), in
    /// ms, counting from the last advert before `from` and up to `to`; and the
    /// adverts that arrived in the window.
    pub(crate) fn longest_gap_ms(&self, from: f64, to: f64) -> (f64, usize) {
        let times = self.times();
        let first = times.partition_point(|&t| t < from);
        let last = times.partition_point(|&t| t <= to);
        let mut points: Vec<f64> = Vec::new();
        points.push(if first > 0 { times[first - 1] } else { from });
        points.extend_from_slice(&times[first..last]);
        points.push(to);
        let gap = points
            .windows(2)
            .map(|w| (w[1] - w[0]) * 1e3)
            .fold(0.0, f64::max);
        (gap, last - first)
    }
}

impl Drop for AdvertWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// cBPF: IPv4 from `mac`, to a multicast address, UDP or VRRP.
fn advert_filter(mac: [u8; 6]) -> Vec<libc::sock_filter> {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let (ld_h, ld_w, ld_b) = (
        libc::BPF_LD | libc::BPF_H | libc::BPF_ABS,
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        libc::BPF_LD | libc::BPF_B | libc::BPF_ABS,
    );
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let and = libc::BPF_ALU | libc::BPF_AND | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let mac_hi = u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
    let mac_lo = u32::from(u16::from_be_bytes([mac[4], mac[5]]));
    // Each jf jumps to the final "drop" (index 12).
    vec![
        op(ld_h, 0, 0, 12),                     // 0: ethertype
        op(jeq, 0, 10, 0x0800),                 // 1
        op(ld_w, 0, 0, 6),                      // 2: source MAC, high 4
        op(jeq, 0, 8, mac_hi),                  // 3
        op(ld_h, 0, 0, 10),                     // 4: source MAC, low 2
        op(jeq, 0, 6, mac_lo),                  // 5
        op(ld_b, 0, 0, 30),                     // 6: first octet of the destination
        op(and, 0, 0, 0xf0),                    // 7
        op(jeq, 0, 3, 0xe0),                    // 8: 224.0.0.0/4
        op(ld_b, 0, 0, 23),                     // 9: IP protocol
        op(jeq, 2, 0, 17),                      // 10: UDP -> accept
        op(jeq, 1, 0, u32::from(IPPROTO_VRRP)), // 11: VRRP -> accept
        op(ret, 0, 0, 0),                       // 12: drop
        op(ret, 0, 0, 0xffff),                  // 13: accept
    ]
}

fn watch_loop(
    netns: &str,
    mac: [u8; 6],
    times: &Mutex<Vec<f64>>,
    stop: &AtomicBool,
    ready: &super::Ready,
) -> Result<()> {
    Netns::enter(netns).with_context(|| format!("enter {netns}"))?;
    let (fd, _) = packet_socket(0x0800)?;
    let mut filter = advert_filter(mac);
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // `prog` points at `filter`, alive for the call.
    set_opt(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &prog,
        "SO_ATTACH_FILTER",
    )?;
    set_int(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_TIMESTAMPNS,
        1,
        "SO_TIMESTAMPNS",
    )?;
    set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 1 << 20, "SO_RCVBUF")?;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    set_opt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv, "SO_RCVTIMEO")?;
    // Frames queued between bind and the filter: anything, so forget them.
    let mut buf = [0u8; 2048];
    // SAFETY: our buffer and its length.
    while unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    } > 0
    {}
    ready.send(Ok(())).ok();
    let mut control = [0u64; 16];
    while !stop.load(Ordering::Relaxed) {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; zeroed is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: `msg` points at live buffers of the sizes given.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
        if n <= 0 {
            continue;
        }
        let mut at = None;
        // SAFETY: the CMSG macros walk the control buffer the kernel filled,
        // within msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    at = Some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let at = at.unwrap_or_else(super::unix_now);
        times
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(at);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// CPU and logs
// ---------------------------------------------------------------------------

/// utime + stime of `pid`, in clock ticks (`/proc/PID/stat` fields 14 and 15).
pub(crate) fn cpu_ticks(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second.
pub(crate) fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// CPU seconds used by `pids` together, as far as they still run.
pub(crate) fn cpu_seconds(pids: &[i32]) -> f64 {
    pids.iter().filter_map(|&p| cpu_ticks(p)).sum::<u64>() as f64 / clk_tck()
}

/// Lines of `log` after byte `from` that contain `needle`.
pub(crate) fn lines_after(log: &str, from: usize, needle: &str) -> usize {
    log.get(from..)
        .unwrap_or("")
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}
