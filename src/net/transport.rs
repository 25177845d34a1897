//! The sockets that carry adverts, multicast or unicast, with TTL 255 enforced
//! (or the instance's explicit `max_hops`): UDP for vipd's protocol, raw IP
//! protocol 112 for VRRP instances (see "VRRP sockets" at the end).
//!
//! # The seam
//!
//! An instance sees its transport as two things only:
//!
//! - an [`AdvertSender`] (in its [`Channel`]): `send(&[u8])` hands one encoded
//!   advert to every destination of the instance. It never blocks: a full
//!   socket buffer drops the advert (and counts it); the next one goes a
//!   period later.
//! - a [`DatagramSink`] it subscribes with: the socket's receive task calls
//!   it with each raw datagram addressed to the instance's group, with its
//!   source address, already past the TTL check and (unicast) the peer
//!   filter — directly, without a queue or a hop to another task. Decoding
//!   and authentication are the sink's job.
//!
//! # Under a flood
//!
//! The receive task reads up to [`RECV_BATCH`] datagrams per system call
//! (`recvmmsg`) and hands over first those from the sources each instance
//! authenticated before ([`Subscription::set_known_sources`]), then the rest:
//! junk from other addresses cannot go before a peer's advert of the same
//! batch. After a full batch it yields to the runtime, so timers and other
//! tasks run between batches (bounded work per wake-up); the socket's 4 MiB
//! receive buffer holds what waits. It reads the clock once per batch and
//! hands that `now` to every sink. A forger who also spoofs a peer's address
//! only shares that peer's precedence.
//!
//! # Sockets
//!
//! One UDP socket per `(interface, multicast group, port)` for multicast instances,
//! and one per `(interface, address family, port)` for unicast ones. Several
//! instances (different group ids) share a socket: a receive task reads it and
//! dispatches each datagram by [`wire::peek_group`] to the subscribed instance.
//! A reload that changes an instance's transport moves its subscription
//! ([`Transports::retarget`]): in place when the socket stays the same (new
//! unicast peers), else make-before-break onto the new socket.
//!
//! Every socket is bound to its interface (`SO_BINDTODEVICE`), sends with TTL /
//! hop limit 255 and receives the TTL / hop limit of each datagram
//! (`IP_RECVTTL`, `IPV6_RECVHOPLIMIT`). A datagram that arrives with anything
//! but 255 was forwarded by a router, so it did not come from a peer on the link
//! (RFC 5082, GTSM): it is dropped and counted. The only relaxation is explicit:
//! an instance with `max_hops = N` (routed mode across subnets, which the
//! configuration allows only with unicast peers and HMAC authentication)
//! accepts a TTL of `256 - N` or more ([`Endpoint::min_ttl`]); the check is
//! then made per instance, after the datagram's group is known. Multicast sockets are bound to
//! the group address itself (so only group traffic arrives), join the group on
//! the interface's index, do not loop their own adverts back, and do not receive
//! groups joined by other sockets (`IP_MULTICAST_ALL` off). Unicast sockets are
//! bound to the wildcard address and accept only datagrams from the instance's
//! configured peers. No socket sets `SO_REUSEADDR` or `SO_REUSEPORT`, so no
//! other process, of any user, can bind the advert port on the interface and
//! share (or steal) the adverts; a port already taken is a start-up error.
//!
//! VRRP instances (`protocol = "vrrp2"`/`"vrrp3"`) share one raw socket per
//! interface and address family, in 224.0.0.18 / ff02::12, which dispatches
//! by VRID; it hands IPv4 datagrams over with their IP header (the core
//! checks the VRRPv3 pseudo-header checksum against it) and IPv6 ones
//! checksummed by the kernel. Multicast VRRP adverts must arrive with TTL
//! 255; unicast ones are accepted from the configured peers with any TTL,
//! as keepalived accepts them (it sends IPv6 unicast with the default hop
//! limit). Each instance sends from its own source address (`IP_PKTINFO`),
//! which VRRP's tie-break and the pseudo-header checksum depend on.

use std::collections::{HashMap, HashSet};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use nix::sys::socket::{self as nixsock, ControlMessageOwned, MsgFlags, SockaddrStorage};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use thiserror::Error;
use tokio::io::unix::AsyncFd;

use crate::config::{InstanceConfig, VrrpChecksum, VrrpVersion};
use crate::metrics::{RejectCounters, Rejection};
use crate::{vrrp, wire};

/// The TTL / hop limit adverts are sent with and, unless an instance's
/// `max_hops` relaxes it explicitly, must arrive with.
pub const REQUIRED_TTL: u8 = 255;

/// What went wrong opening or using a socket, naming the interface and address.
#[derive(Debug, Error)]
pub enum TransportError {
    /// A socket call failed while setting the socket up.
    #[error("advert socket on {interface} for {addr}: {step}")]
    Setup {
        interface: String,
        addr: SocketAddr,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    /// Two instances on one socket use the same group id.
    #[error("group {group} on {interface} port {port} is already used by another instance")]
    GroupInUse {
        interface: String,
        group: u8,
        port: u16,
    },
    /// The interface index does not fit the socket API.
    #[error("interface {interface}: index {ifindex} is invalid")]
    BadIndex { interface: String, ifindex: u32 },
}

/// Why an advert was not sent.
#[derive(Debug, Error)]
pub enum SendError {
    /// The socket buffer is full; the advert was dropped rather than wait.
    #[error("socket buffer full; advert dropped")]
    WouldBlock,
    /// IPv6 has no usable source address yet (link-local address still in DAD).
    #[error("no usable source address yet (IPv6 duplicate address detection?)")]
    AddressNotReady,
    /// Any other error of the send call, with the destination.
    #[error("sending advert to {dest}")]
    Io {
        dest: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Sends one encoded advert to every destination of an instance, without blocking.
pub trait AdvertSender: Send + Sync + std::fmt::Debug {
    fn send(&self, packet: &[u8]) -> Result<(), SendError>;
}

/// Where a socket's datagrams for one instance go.
pub trait DatagramSink: Send + Sync + std::fmt::Debug {
    /// One datagram for the instance's group from `source`, past the
    /// socket's checks, read at `now`. Called on the socket's receive task
    /// (or by [`PendingReader::read_pending`]'s caller): it must not wait.
    fn deliver(&self, now: Instant, source: IpAddr, bytes: &[u8]);
}

/// An instance's transport: where its adverts go, and its subscription to
/// the socket that delivers its datagrams to its sink.
#[derive(Debug)]
pub struct Channel {
    pub sender: Arc<dyn AdvertSender>,
    /// Keeps the instance subscribed; dropping it frees the group id on the socket.
    pub subscription: Option<Subscription>,
}

/// How many source addresses an instance may mark as known (its peers'
/// addresses; more only after renumbering, and then going first is an
/// optimisation the rest of the sources go without).
pub const KNOWN_SOURCES_MAX: usize = 16;

/// Counters of one socket, shared by the instances on it.
#[derive(Debug, Default)]
pub struct SocketCounters {
    /// Datagrams dropped because their TTL / hop limit was not 255.
    pub bad_ttl: AtomicU64,
    /// Unicast datagrams from an address that is not a configured peer.
    pub unknown_source: AtomicU64,
    /// Datagrams that are not adverts or are for a group nobody here subscribed.
    pub unknown_group: AtomicU64,
    /// Adverts dropped because the socket would have blocked.
    pub send_dropped: AtomicU64,
}

/// Which socket: multicast sockets are per group, unicast ones per family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SocketKey {
    Multicast {
        interface: String,
        /// An interface re-created under its name gets a socket of its own.
        ifindex: u32,
        group: IpAddr,
        port: u16,
    },
    Unicast {
        interface: String,
        ifindex: u32,
        ipv6: bool,
        port: u16,
    },
    /// Every VRRP instance of a family on an interface: a raw socket of
    /// IP protocol 112, multicast and unicast alike.
    Vrrp {
        interface: String,
        ifindex: u32,
        ipv6: bool,
    },
}

impl SocketKey {
    /// The socket `endpoint` is served by.
    fn of(endpoint: &Endpoint) -> Self {
        if let Some(v) = &endpoint.vrrp {
            Self::Vrrp {
                interface: endpoint.interface.clone(),
                ifindex: endpoint.ifindex,
                ipv6: v.ipv6,
            }
        } else if endpoint.peers.is_empty() {
            Self::Multicast {
                interface: endpoint.interface.clone(),
                ifindex: endpoint.ifindex,
                group: endpoint.multicast_group,
                port: endpoint.port,
            }
        } else {
            Self::Unicast {
                interface: endpoint.interface.clone(),
                ifindex: endpoint.ifindex,
                ipv6: endpoint.peers.iter().any(IpAddr::is_ipv6),
                port: endpoint.port,
            }
        }
    }
}

/// A subscriber of one socket: where its datagrams go and, for unicast, whom it hears.
#[derive(Debug)]
struct Subscriber {
    sink: Arc<dyn DatagramSink>,
    /// Sources the instance authenticated adverts from: their datagrams are
    /// handed over first.
    known_sources: HashSet<IpAddr>,
    /// `Some` for unicast: only these sources are accepted.
    peers: Option<HashSet<IpAddr>>,
    rejects: Arc<RejectCounters>,
    /// The lowest TTL / hop limit accepted ([`Endpoint::min_ttl`]).
    min_ttl: u8,
}

/// One bound socket with its receive task.
#[derive(Debug)]
struct Shared {
    socket: AsyncFd<Socket>,
    /// A raw VRRP socket (`Some(ipv6)`): datagrams are VRRP messages (IPv4:
    /// behind their IP header) whose VRID picks the subscriber.
    vrrp: Option<bool>,
    interface: String,
    subscribers: Mutex<HashMap<u8, Subscriber>>,
    counters: SocketCounters,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Keeps an instance's group id on a shared socket; dropping it unsubscribes, and the
/// last one dropped stops the socket's receive task (closing the socket).
#[derive(Debug)]
pub struct Subscription {
    shared: Arc<Shared>,
    group: u8,
    /// Which socket, so a retarget knows whether it may stay.
    key: SocketKey,
    /// The instance's sink, for the socket a retarget moves it to.
    sink: Arc<dyn DatagramSink>,
}

impl Subscription {
    /// Sets the addresses the instance authenticated adverts from (its
    /// peers'): their later datagrams are handed over first. The whole
    /// set is replaced, so a peer that left or moved stops being preferred;
    /// at most [`KNOWN_SOURCES_MAX`] are kept.
    pub fn set_known_sources(&self, sources: impl IntoIterator<Item = IpAddr>) {
        let known: HashSet<IpAddr> = sources
            .into_iter()
            .map(unmapped)
            .take(KNOWN_SOURCES_MAX)
            .collect();
        let mut subs = self
            .shared
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sub) = subs.get_mut(&self.group) {
            sub.known_sources = known;
        }
    }

    /// A handle that reads the socket now (see [`PendingReader`]).
    pub fn reader(&self) -> PendingReader {
        PendingReader {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Reads an instance's socket outside its receive task.
#[derive(Debug)]
pub struct PendingReader {
    shared: Arc<Shared>,
}

impl PendingReader {
    /// Reads and delivers, now, what waits in the socket (at most a few
    /// batches), to every instance on it: a backup whose takeover deadline
    /// came calls this first, so that adverts that arrived during a stall of
    /// the process count before the deadline. The caller must not hold what
    /// a sink's `deliver` takes (the sinks are called from here).
    pub fn read_pending(&self, now: Instant) {
        let mut bufs: Box<[PacketBuf; RECV_BATCH]> = Box::new([[0u8; RECV_LEN]; RECV_BATCH]);
        for _ in 0..PENDING_BATCHES {
            match read_and_deliver(&self.shared, &mut bufs, now) {
                Ok(n) if n == RECV_BATCH => {}
                _ => break,
            }
        }
    }
}

/// How many batches [`Subscription::read_pending`] reads at most.
const PENDING_BATCHES: usize = 4;

impl Drop for Subscription {
    fn drop(&mut self) {
        // Under the subscribers' lock, so a subscriber joining at this moment
        // (see `Transports::open`) sees the task either running or stopped.
        if let Ok(mut subs) = self.shared.subscribers.lock() {
            subs.remove(&self.group);
            if subs.is_empty() {
                if let Ok(mut task) = self.shared.task.lock() {
                    if let Some(task) = task.take() {
                        task.abort();
                    }
                }
            }
        }
    }
}

/// What an instance needs to get a [`Channel`].
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub interface: String,
    pub ifindex: u32,
    pub group: u8,
    pub port: u16,
    /// The multicast group; ignored when `peers` is non-empty.
    pub multicast_group: IpAddr,
    /// Unicast peers; empty for multicast.
    pub peers: Vec<IpAddr>,
    /// Where this instance's dropped datagrams are counted (bad TTL, unknown
    /// source), for its metrics.
    pub rejects: Arc<RejectCounters>,
    /// The lowest TTL / hop limit an advert for this instance may arrive with:
    /// [`REQUIRED_TTL`] unless the configuration relaxed it explicitly
    /// (`max_hops`, [`InstanceConfig::min_ttl`](crate::config::InstanceConfig::min_ttl)).
    pub min_ttl: u8,
    /// `Some` when the instance speaks VRRP: its adverts are IP protocol 112
    /// to 224.0.0.18 / ff02::12 (or the unicast `peers`), and `port` and
    /// `multicast_group` are not used.
    pub vrrp: Option<VrrpEndpoint>,
}

/// What a VRRP instance's socket needs beyond the common [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpEndpoint {
    /// The VIPs' family, which the adverts travel in.
    pub ipv6: bool,
    /// The address adverts go out from: `vrrp_source`, or the one the driver
    /// read from the interface ([`crate::net::netlink::Netlink::vrrp_source`]).
    pub source: IpAddr,
    /// `Some` for VRRPv3 over IPv4: how the checksum is formed, per
    /// destination. VRRPv2's checksum is in the encoded bytes; IPv6's is the
    /// kernel's (`IPV6_CHECKSUM`).
    pub ipv4_v3_checksum: Option<vrrp::ChecksumForm>,
}

impl Endpoint {
    /// The same endpoint sending VRRP adverts from `source` (the address the
    /// driver read from the interface); unchanged when it is `None` or the
    /// instance does not speak VRRP.
    pub fn with_vrrp_source(mut self, source: Option<IpAddr>) -> Self {
        if let (Some(v), Some(source)) = (&mut self.vrrp, source) {
            v.source = source;
        }
        self
    }

    /// The advert endpoint of instance `cfg` on the link with index `ifindex`,
    /// counting its dropped datagrams in `rejects`.
    pub fn of(cfg: &InstanceConfig, ifindex: u32, rejects: Arc<RejectCounters>) -> Self {
        Self {
            interface: cfg.interface.clone(),
            ifindex,
            group: cfg.group,
            port: cfg.port,
            multicast_group: cfg.multicast_group,
            peers: cfg.peers.clone(),
            rejects,
            // Unicast VRRP adverts may arrive with any TTL from a configured
            // peer: keepalived sends IPv6 unicast with the kernel's default
            // hop limit (64) and checks no TTL on unicast itself.
            min_ttl: match cfg.protocol.vrrp() {
                Some(_) if !cfg.peers.is_empty() => 1,
                _ => cfg.min_ttl(),
            },
            vrrp: cfg.protocol.vrrp().map(|v| {
                let ipv6 = cfg.vips.first().is_some_and(|vip| vip.addr.is_ipv6());
                VrrpEndpoint {
                    ipv6,
                    source: v.source.unwrap_or(if ipv6 {
                        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                    }),
                    ipv4_v3_checksum: (v.version == VrrpVersion::V3 && !ipv6).then_some(
                        match v.checksum {
                            VrrpChecksum::PseudoHeader => vrrp::ChecksumForm::PseudoHeader,
                            VrrpChecksum::MessageOnly => vrrp::ChecksumForm::MessageOnly,
                        },
                    ),
                }
            }),
        }
    }
}

/// Opens and shares the advert sockets of a daemon.
#[derive(Debug, Default)]
pub struct Transports {
    sockets: Mutex<HashMap<SocketKey, Weak<Shared>>>,
}

impl Transports {
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes an instance to its socket, opening the socket if no other
    /// instance has; its datagrams go to `sink`. Must be called inside a
    /// tokio runtime.
    pub fn open(
        &self,
        endpoint: &Endpoint,
        sink: Arc<dyn DatagramSink>,
    ) -> Result<Channel, TransportError> {
        let unicast = !endpoint.peers.is_empty();
        let key = SocketKey::of(endpoint);
        let shared = {
            let mut sockets = self
                .sockets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            sockets.retain(|_, weak| weak.strong_count() > 0);
            match sockets.get(&key).and_then(Weak::upgrade) {
                Some(shared) => shared,
                None => {
                    let socket = if let Some(v) = &endpoint.vrrp {
                        open_vrrp(endpoint, v.ipv6)?
                    } else if unicast {
                        open_unicast(endpoint)?
                    } else {
                        open_multicast(endpoint)?
                    };
                    let shared = Arc::new(Shared {
                        vrrp: endpoint.vrrp.as_ref().map(|v| v.ipv6),
                        socket: register(socket).map_err(|source| TransportError::Setup {
                            interface: endpoint.interface.clone(),
                            addr: bind_addr(endpoint),
                            step: "registering with the runtime",
                            source,
                        })?,
                        interface: endpoint.interface.clone(),
                        subscribers: Mutex::new(HashMap::new()),
                        counters: SocketCounters::default(),
                        task: Mutex::new(None),
                    });
                    let task = tokio::spawn(receive_loop(Arc::clone(&shared)));
                    if let Ok(mut slot) = shared.task.lock() {
                        *slot = Some(task);
                    }
                    sockets.insert(key.clone(), Arc::downgrade(&shared));
                    shared
                }
            }
        };
        {
            let mut subs = shared
                .subscribers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if subs.contains_key(&endpoint.group) {
                return Err(TransportError::GroupInUse {
                    interface: endpoint.interface.clone(),
                    group: endpoint.group,
                    port: endpoint.port,
                });
            }
            subs.insert(
                endpoint.group,
                Subscriber {
                    sink: Arc::clone(&sink),
                    known_sources: HashSet::new(),
                    peers: unicast.then(|| endpoint.peers.iter().copied().collect()),
                    rejects: Arc::clone(&endpoint.rejects),
                    min_ttl: endpoint.min_ttl,
                },
            );
            // The last subscriber may have just left (an instance restarted by a
            // reload) and stopped the receive task while the socket is still
            // open (the aborted task has not been dropped yet): receive again.
            if let Ok(mut slot) = shared.task.lock() {
                if slot.is_none() {
                    *slot = Some(tokio::spawn(receive_loop(Arc::clone(&shared))));
                }
            }
        }
        let sender = sender_for(&shared, endpoint);
        Ok(Channel {
            sender,
            subscription: Some(Subscription {
                shared,
                group: endpoint.group,
                key,
                sink,
            }),
        })
    }

    /// Points a subscribed `channel` at `endpoint` (a reload changed the
    /// instance's `peers`, `port` or `multicast_group`) without a gap:
    ///
    /// - the same socket (only the unicast peer list changed within one
    ///   address family): the subscription stays, its source filter and the
    ///   sender's destinations become the new peers, under the subscribers'
    ///   lock, so each datagram is judged by one list or the other;
    /// - another socket: subscribes there first, with the same sink, and only
    ///   then drops the old subscription (make-before-break).
    ///
    /// On an error (the new socket cannot be opened) the channel is left as
    /// it was.
    pub fn retarget(
        &self,
        channel: &mut Channel,
        endpoint: &Endpoint,
    ) -> Result<(), TransportError> {
        let key = SocketKey::of(endpoint);
        if let Some(sub) = channel.subscription.as_ref().filter(|s| s.key == key) {
            {
                let mut subs = sub
                    .shared
                    .subscribers
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(s) = subs.get_mut(&sub.group) {
                    // Same key: unicast before and after, or nothing changed.
                    s.peers = (!endpoint.peers.is_empty())
                        .then(|| endpoint.peers.iter().copied().collect());
                }
            }
            channel.sender = sender_for(&sub.shared, endpoint);
            return Ok(());
        }
        let Some(sink) = channel.subscription.as_ref().map(|s| Arc::clone(&s.sink)) else {
            // A channel without a subscription has nobody to deliver to.
            return Ok(());
        };
        let fresh = self.open(endpoint, sink)?;
        drop(std::mem::replace(channel, fresh));
        Ok(())
    }
}

/// The sender of `endpoint`'s adverts on `shared`.
fn sender_for(shared: &Arc<Shared>, endpoint: &Endpoint) -> Arc<dyn AdvertSender> {
    match &endpoint.vrrp {
        Some(v) => Arc::new(VrrpSender {
            shared: Arc::clone(shared),
            destinations: destinations(endpoint),
            source: v.source,
            ifindex: endpoint.ifindex,
            ipv4_v3_checksum: v.ipv4_v3_checksum,
        }),
        None => Arc::new(SocketSender {
            shared: Arc::clone(shared),
            destinations: destinations(endpoint),
        }),
    }
}

/// The [`AdvertSender`] of a real socket.
#[derive(Debug)]
struct SocketSender {
    shared: Arc<Shared>,
    destinations: Vec<SocketAddr>,
}

impl AdvertSender for SocketSender {
    fn send(&self, packet: &[u8]) -> Result<(), SendError> {
        let mut result = Ok(());
        for dest in &self.destinations {
            // The socket is non-blocking: a full buffer is an error, never a wait.
            let sent = self
                .shared
                .socket
                .get_ref()
                .send_to(packet, &(*dest).into());
            if let Err(e) = sent {
                result = Err(send_error(&self.shared, *dest, e));
            }
        }
        result
    }
}

/// What a failed non-blocking send to `dest` means; a full buffer is
/// counted as a dropped advert.
fn send_error(shared: &Shared, dest: SocketAddr, error: io::Error) -> SendError {
    if error.kind() == io::ErrorKind::WouldBlock {
        shared.counters.send_dropped.fetch_add(1, Ordering::Relaxed);
        SendError::WouldBlock
    } else if error.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
        SendError::AddressNotReady
    } else {
        SendError::Io {
            dest,
            source: error,
        }
    }
}

/// Where an instance's adverts go: each unicast peer, or the multicast group.
/// Sends `datagrams`, in order, to an endpoint's peers (or its multicast
/// group) from a socket opened and closed for it, with the daemon's socket
/// options (bound to the interface, TTL / hop limit 255, the advert port as
/// source). For `vipd cleanup`, which announces a dead master's release while
/// no daemon holds the port. Blocking; the first failure ends it.
pub fn send_without_daemon(
    endpoint: &Endpoint,
    datagrams: &[Vec<u8>],
) -> Result<(), TransportError> {
    if let Some(v) = &endpoint.vrrp {
        let socket = open_vrrp(endpoint, v.ipv6)?;
        for bytes in datagrams {
            for dest in destinations(endpoint) {
                let mut copy = bytes.clone();
                if let (Some(form), IpAddr::V4(src), IpAddr::V4(dst)) =
                    (v.ipv4_v3_checksum, v.source, dest.ip())
                {
                    vrrp::set_ipv4_checksum(&mut copy, form, src, dst);
                }
                send_from(&socket, &copy, dest, v.source, endpoint.ifindex).map_err(|source| {
                    TransportError::Setup {
                        interface: endpoint.interface.clone(),
                        addr: dest,
                        step: "sending the VRRP release",
                        source,
                    }
                })?;
            }
        }
        return Ok(());
    }
    let socket = if endpoint.peers.is_empty() {
        open_multicast(endpoint)?
    } else {
        open_unicast(endpoint)?
    };
    for bytes in datagrams {
        for dest in destinations(endpoint) {
            socket
                .send_to(bytes, &dest.into())
                .map_err(|source| TransportError::Setup {
                    interface: endpoint.interface.clone(),
                    addr: dest,
                    step: "sending the release",
                    source,
                })?;
        }
    }
    Ok(())
}

fn destinations(endpoint: &Endpoint) -> Vec<SocketAddr> {
    if let (Some(v), true) = (&endpoint.vrrp, endpoint.peers.is_empty()) {
        let group = if v.ipv6 {
            IpAddr::V6(vrrp::MULTICAST_V6)
        } else {
            IpAddr::V4(vrrp::MULTICAST_V4)
        };
        vec![socket_addr(group, 0, endpoint.ifindex)]
    } else if endpoint.peers.is_empty() {
        vec![socket_addr(
            endpoint.multicast_group,
            endpoint.port,
            endpoint.ifindex,
        )]
    } else {
        // A raw socket's port field is the protocol (IPv6 refuses any other
        // value): 0 for VRRP.
        let port = if endpoint.vrrp.is_some() {
            0
        } else {
            endpoint.port
        };
        endpoint
            .peers
            .iter()
            .map(|p| socket_addr(*p, port, endpoint.ifindex))
            .collect()
    }
}

fn socket_addr(ip: IpAddr, port: u16, ifindex: u32) -> SocketAddr {
    match ip {
        IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
        // Link-local (and interface-local multicast) destinations need the scope.
        IpAddr::V6(v6) => {
            let scope = if needs_scope(&v6) { ifindex } else { 0 };
            SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope))
        }
    }
}

fn needs_scope(v6: &Ipv6Addr) -> bool {
    let seg0 = v6.segments()[0];
    (seg0 & 0xffc0) == 0xfe80 || (v6.is_multicast() && (seg0 & 0x000f) <= 2)
}

fn bind_addr(endpoint: &Endpoint) -> SocketAddr {
    if endpoint.peers.is_empty() {
        socket_addr(endpoint.multicast_group, endpoint.port, endpoint.ifindex)
    } else if endpoint.peers.iter().any(IpAddr::is_ipv6) {
        SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::UNSPECIFIED,
            endpoint.port,
            0,
            0,
        ))
    } else {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, endpoint.port))
    }
}

/// A UDP socket with the options both kinds share.
fn base_socket(endpoint: &Endpoint, ipv6: bool) -> Result<Socket, TransportError> {
    let addr = bind_addr(endpoint);
    let fail = |step| setup_failed(endpoint, addr, step);
    let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(
        domain,
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )
    .map_err(fail("creating the socket"))?;
    if ipv6 {
        socket
            .set_only_v6(true)
            .map_err(fail("setting IPV6_V6ONLY"))?;
    }
    // No SO_REUSEADDR (nor SO_REUSEPORT): with it, any local user could bind
    // a more specific address on our port and take the adverts, and the node
    // would hear nobody and take over (FIELD-NOTES 22). Without it such a bind
    // fails with EADDRINUSE. Two vipd sockets on one port never clash: each is
    // bound to its own interface (SO_BINDTODEVICE, set before bind), and a
    // second daemon never gets this far (the single-instance lock).
    link_options(&socket, endpoint, ipv6, addr)?;
    Ok(socket)
}

/// What every advert socket sets, UDP and VRRP alike: the receive buffer,
/// bound to the interface, TTL / hop limit 255 on all it sends, its own
/// multicast not looped back, no group joined by other sockets (Linux
/// 4.20+; older kernels lack it, and the group filter still holds), and each
/// datagram's TTL / hop limit received for the check.
fn link_options(
    socket: &Socket,
    endpoint: &Endpoint,
    ipv6: bool,
    addr: SocketAddr,
) -> Result<(), TransportError> {
    let fail = |step| setup_failed(endpoint, addr, step);
    set_receive_buffer(socket);
    socket
        .bind_device(Some(endpoint.interface.as_bytes()))
        .map_err(fail("binding to the interface (SO_BINDTODEVICE)"))?;
    if ipv6 {
        socket
            .set_unicast_hops_v6(u32::from(REQUIRED_TTL))
            .map_err(fail("setting IPV6_UNICAST_HOPS"))?;
        socket
            .set_multicast_hops_v6(u32::from(REQUIRED_TTL))
            .map_err(fail("setting IPV6_MULTICAST_HOPS"))?;
        socket
            .set_multicast_loop_v6(false)
            .map_err(fail("setting IPV6_MULTICAST_LOOP"))?;
        socket
            .set_multicast_if_v6(endpoint.ifindex)
            .map_err(fail("setting IPV6_MULTICAST_IF"))?;
        let _ = socket.set_multicast_all_v6(false);
        nixsock::setsockopt(socket, nixsock::sockopt::Ipv6RecvHopLimit, &true)
            .map_err(|e| fail("setting IPV6_RECVHOPLIMIT")(io::Error::from(e)))?;
    } else {
        socket
            .set_ttl(u32::from(REQUIRED_TTL))
            .map_err(fail("setting IP_TTL"))?;
        socket
            .set_multicast_ttl_v4(u32::from(REQUIRED_TTL))
            .map_err(fail("setting IP_MULTICAST_TTL"))?;
        socket
            .set_multicast_loop_v4(false)
            .map_err(fail("setting IP_MULTICAST_LOOP"))?;
        let _ = socket.set_multicast_all_v4(false);
        nixsock::setsockopt(socket, nixsock::sockopt::Ipv4RecvTtl, &true)
            .map_err(|e| fail("setting IP_RECVTTL")(io::Error::from(e)))?;
    }
    Ok(())
}

/// The error of socket set-up step `step` for `endpoint`'s socket at `addr`.
fn setup_failed(
    endpoint: &Endpoint,
    addr: SocketAddr,
    step: &'static str,
) -> impl FnOnce(io::Error) -> TransportError {
    let interface = endpoint.interface.clone();
    move |source| TransportError::Setup {
        interface,
        addr,
        step,
        source,
    }
}

fn open_multicast(endpoint: &Endpoint) -> Result<Socket, TransportError> {
    let addr = bind_addr(endpoint);
    let fail = |step| setup_failed(endpoint, addr, step);
    let socket = base_socket(endpoint, endpoint.multicast_group.is_ipv6())?;
    match endpoint.multicast_group {
        IpAddr::V4(group) => {
            // IP_MULTICAST_IF by index (ip_mreqn), so no interface address is needed.
            set_multicast_if_v4_index(&socket, endpoint.ifindex)
                .map_err(fail("setting IP_MULTICAST_IF"))?;
            socket
                .join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(endpoint.ifindex))
                .map_err(fail("joining the multicast group"))?;
        }
        IpAddr::V6(group) => {
            socket
                .join_multicast_v6(&group, endpoint.ifindex)
                .map_err(fail("joining the multicast group"))?;
        }
    }
    socket
        .bind(&addr.into())
        .map_err(fail("binding to the group address"))?;
    Ok(socket)
}

fn open_unicast(endpoint: &Endpoint) -> Result<Socket, TransportError> {
    let addr = bind_addr(endpoint);
    let socket = base_socket(endpoint, addr.is_ipv6())?;
    socket
        .bind(&addr.into())
        .map_err(|source| TransportError::Setup {
            interface: endpoint.interface.clone(),
            addr,
            step: "binding to the port",
            source,
        })?;
    Ok(socket)
}

/// The receive buffer asked for each advert socket.
///
/// The kernel's default (`net.core.rmem_default`, ~208 KiB) holds about 200
/// small datagrams: under a flood of 300,000 junk datagrams a second that is
/// under a millisecond, so any moment the daemon is not scheduled drops
/// datagrams at random — the master's adverts among them, and three lost in
/// a row make the backup take over. 4 MiB holds several thousand, i.e. more
/// than ten milliseconds of such a flood. Kernel memory, used only while
/// datagrams wait; a quiet socket holds none.
pub const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// Sets [`RECEIVE_BUFFER_BYTES`]: `SO_RCVBUFFORCE` (CAP_NET_ADMIN, which the
/// daemon has) goes past `net.core.rmem_max`; without the capability,
/// `SO_RCVBUF` gets what `rmem_max` allows. Neither failing is an error: the
/// socket works with the default, only floods hurt it sooner.
fn set_receive_buffer(socket: &Socket) {
    if nixsock::setsockopt(socket, nixsock::sockopt::RcvBufForce, &RECEIVE_BUFFER_BYTES).is_err() {
        let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER_BYTES);
    }
}

/// Registers the socket with the runtime's reactor, for reading only (sends never wait).
fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: `socket2::Socket` owns its file descriptor: it stays open, and
    // `as_raw_fd` returns the same one, until the socket (here: the AsyncFd) is dropped.
    unsafe { AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// `IP_MULTICAST_IF` with an `ip_mreqn` naming the interface by index.
fn set_multicast_if_v4_index(socket: &Socket, ifindex: u32) -> io::Result<()> {
    let index = i32::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"))?;
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: index,
    };
    super::set_socket_option(socket, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn)
}

/// One datagram as read, with its TTL / hop limit when the kernel gave one.
struct Received {
    len: usize,
    source: SocketAddr,
    ttl: Option<i32>,
}

/// How many datagrams one receive call takes at most (`recvmmsg`). Adverts
/// come one at a time; a batch only fills under a flood, where it cuts the
/// system calls per datagram.
const RECV_BATCH: usize = 16;

/// Room for one datagram: an Ethernet MTU, which holds any vipd advert with
/// room to spare (so an oversized one shows as too long) and a VRRP advert
/// with its IPv4 header and up to 255 IPv4 or 90 IPv6 addresses.
const RECV_LEN: usize = 1500;
type PacketBuf = [u8; RECV_LEN];

/// Reads up to [`RECV_BATCH`] datagrams in one call into `bufs`; returns how
/// many were read and, for each, its length, source and TTL (`None` for a
/// datagram without a source address: it cannot be an advert).
fn recv_batch(
    socket: &Socket,
    bufs: &mut [PacketBuf; RECV_BATCH],
) -> io::Result<(usize, [Option<Received>; RECV_BATCH])> {
    // Built per call: the headers hold raw pointers (not `Send`), so they may
    // not live across the receive task's awaits.
    let mut headers = nixsock::MultiHeaders::<SockaddrStorage>::preallocate(
        RECV_BATCH,
        Some(nix::cmsg_space!(libc::c_int, libc::c_int)),
    );
    let mut received: [Option<Received>; RECV_BATCH] = Default::default();
    let mut slices: [[IoSliceMut<'_>; 1]; RECV_BATCH] =
        bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
    let results = nixsock::recvmmsg(
        socket.as_raw_fd(),
        &mut headers,
        slices.iter_mut(),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
        None,
    )
    .map_err(io::Error::from)?;
    let mut count = 0;
    for (msg, slot) in results.zip(received.iter_mut()) {
        count += 1;
        let mut ttl = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                        ttl = Some(t);
                    }
                    _ => {}
                }
            }
        }
        *slot = msg
            .address
            .as_ref()
            .and_then(socket_addr_of)
            .map(|source| Received {
                len: msg.bytes,
                source,
                ttl,
            });
    }
    Ok((count, received))
}

fn socket_addr_of(a: &SockaddrStorage) -> Option<SocketAddr> {
    a.as_sockaddr_in()
        .map(|v4| SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())))
        .or_else(|| {
            a.as_sockaddr_in6().map(|v6| {
                SocketAddr::V6(SocketAddrV6::new(
                    v6.ip(),
                    v6.port(),
                    v6.flowinfo(),
                    v6.scope_id(),
                ))
            })
        })
}

/// Reads the socket until the task is aborted (the last subscription dropped).
async fn receive_loop(shared: Arc<Shared>) {
    let mut bufs: Box<[PacketBuf; RECV_BATCH]> = Box::new([[0u8; RECV_LEN]; RECV_BATCH]);
    loop {
        let mut guard = match shared.socket.readable().await {
            Ok(guard) => guard,
            Err(e) => {
                tracing::error!(interface = %shared.interface, error = %e, "advert socket failed; no more adverts are received on it");
                return;
            }
        };
        // One clock read per wake-up, tokio's (so a test with paused time
        // drives it), for every datagram of the batch.
        let now = tokio::time::Instant::now().into_std();
        let read = guard.try_io(|_| read_and_deliver(&shared, &mut bufs, now));
        match read {
            // A short batch emptied the queue: no need for one more call that
            // only says EAGAIN. A datagram arriving after the call makes the
            // socket readable again (the reactor sees a new edge).
            Ok(Ok(n)) if n < RECV_BATCH => guard.clear_ready(),
            // A full batch: more may wait. Let timers and other tasks run
            // first, so the work per wake-up stays bounded under a flood.
            Ok(Ok(_)) => {
                drop(guard);
                tokio::task::yield_now().await;
            }
            Ok(Err(e)) => {
                tracing::debug!(interface = %shared.interface, error = %e, "receiving an advert");
            }
            Err(_would_block) => {}
        }
    }
}

/// One datagram of a batch, judged: which sink takes it, and whether its
/// source is one the instance knows.
struct Delivery {
    index: usize,
    len: usize,
    sink: Arc<dyn DatagramSink>,
    source: IpAddr,
    known: bool,
}

/// Reads one batch and hands each datagram to its instance's sink: first the
/// datagrams from sources the instance knows, then the rest, each group in
/// the order they arrived. Returns how many datagrams were read.
fn read_and_deliver(
    shared: &Shared,
    bufs: &mut [PacketBuf; RECV_BATCH],
    now: Instant,
) -> io::Result<usize> {
    let (count, received) = recv_batch(shared.socket.get_ref(), bufs)?;
    let mut deliveries: [Option<Delivery>; RECV_BATCH] = Default::default();
    {
        // Judged under the subscribers' lock, delivered after it: a sink may
        // change its known sources (which takes the lock) while it handles a
        // datagram.
        let subs = shared
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (index, (slot, r)) in deliveries.iter_mut().zip(received).enumerate() {
            if let Some(r) = r {
                *slot = judge(shared, &subs, &bufs[index], index, &r);
            }
        }
    }
    for known in [true, false] {
        for d in deliveries.iter().flatten().filter(|d| d.known == known) {
            d.sink.deliver(now, d.source, &bufs[d.index][..d.len]);
        }
    }
    Ok(count)
}
/// Applies the socket's checks to one datagram (TTL or hop limit, group,
/// unicast peers), counting what it drops; `Some` names the sink that takes it.
fn judge(
    shared: &Shared,
    subs: &HashMap<u8, Subscriber>,
    buf: &PacketBuf,
    index: usize,
    received: &Received,
) -> Option<Delivery> {
    let source_ip = unmapped(received.source.ip());
    let len = received.len.min(buf.len());
    let group = match shared.vrrp {
        None => wire::peek_group(&buf[..len]).ok(),
        Some(ipv6) => vrrp_group(&buf[..len], ipv6),
    };
    let sub = group.and_then(|g| subs.get(&g));
    // The subscribed instance's own limit (its max_hops); anything else must
    // come from the link itself.
    let min_ttl = sub.map_or(REQUIRED_TTL, |s| s.min_ttl);
    if received.ttl.is_none_or(|t| t < i32::from(min_ttl)) {
        let n = shared.counters.bad_ttl.fetch_add(1, Ordering::Relaxed) + 1;
        // Counted for the instance too when the datagram names its group.
        if let Some(sub) = sub {
            sub.rejects.count(Rejection::BadTtl);
        }
        // Every 1st, 2nd, 4th, 8th... drop, so a flood does not flood the log.
        if n.is_power_of_two() {
            tracing::warn!(interface = %shared.interface, source = %source_ip, ttl = %received.ttl.map_or_else(|| "unknown".to_owned(), |t| t.to_string()), min_ttl, dropped = n,
                "dropped advert whose TTL/hop limit is below the instance's minimum (sent from further than max_hops allows?)");
        }
        return None;
    }
    let Some(group) = group else {
        shared
            .counters
            .unknown_group
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(interface = %shared.interface, source = %source_ip, "ignored a datagram that is not an advert");
        return None;
    };
    let Some(sub) = sub else {
        shared
            .counters
            .unknown_group
            .fetch_add(1, Ordering::Relaxed);
        return None;
    };
    if let Some(peers) = &sub.peers {
        if !peers.contains(&source_ip) {
            let n = shared
                .counters
                .unknown_source
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            sub.rejects.count(Rejection::UnknownSource);
            if n.is_power_of_two() {
                tracing::warn!(interface = %shared.interface, source = %source_ip, group, dropped = n,
                    "dropped unicast advert from an address that is not a configured peer");
            }
            return None;
        }
    }
    Some(Delivery {
        index,
        len,
        sink: Arc::clone(&sub.sink),
        source: source_ip,
        known: sub.known_sources.contains(&source_ip),
    })
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

// ------------------------------------------------------------ VRRP sockets

/// The VRID of a datagram from a raw VRRP socket: IPv4 datagrams come with
/// their IP header, IPv6 ones without.
fn vrrp_group(datagram: &[u8], ipv6: bool) -> Option<u8> {
    if ipv6 {
        vrrp::peek_vrid(datagram)
    } else {
        let header_len = usize::from(datagram.first()? & 0x0f) * 4;
        vrrp::peek_vrid(datagram.get(header_len..)?)
    }
}

/// The raw IP-protocol-112 socket of one family on an interface, shared by
/// its VRRP instances: bound to the interface, in the VRRP multicast group,
/// TTL / hop limit 255 on everything it sends, multicast loop off (its own
/// adverts must not come back), and each datagram's TTL / hop limit
/// received for the check. Sends name their source address per datagram
/// (`IP_PKTINFO` / `IPV6_PKTINFO`), so the socket itself stays unbound and
/// receives the group's adverts and the unicast ones alike. IPv6: the kernel
/// computes and checks the checksum (`IPV6_CHECKSUM` at offset 6).
fn open_vrrp(endpoint: &Endpoint, ipv6: bool) -> Result<Socket, TransportError> {
    let addr = SocketAddr::new(
        if ipv6 {
            IpAddr::V6(vrrp::MULTICAST_V6)
        } else {
            IpAddr::V4(vrrp::MULTICAST_V4)
        },
        0,
    );
    let fail = |step| setup_failed(endpoint, addr, step);
    let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(
        domain,
        Type::RAW.nonblocking().cloexec(),
        Some(Protocol::from(i32::from(vrrp::IPPROTO_VRRP))),
    )
    .map_err(fail("creating the raw VRRP socket (IP protocol 112)"))?;
    link_options(&socket, endpoint, ipv6, addr)?;
    if ipv6 {
        // Offset of the checksum in the VRRP header: the kernel fills it on
        // send and drops datagrams whose checksum is wrong on receipt.
        super::set_socket_option(&socket, libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, &6i32)
            .map_err(fail("setting IPV6_CHECKSUM"))?;
        socket
            .join_multicast_v6(&vrrp::MULTICAST_V6, endpoint.ifindex)
            .map_err(fail("joining ff02::12"))?;
    } else {
        // Internetwork control, as keepalived sends it; a failure only
        // loses the precedence.
        let _ = socket.set_tos(0xc0);
        set_multicast_if_v4_index(&socket, endpoint.ifindex)
            .map_err(fail("setting IP_MULTICAST_IF"))?;
        socket
            .join_multicast_v4_n(
                &vrrp::MULTICAST_V4,
                &InterfaceIndexOrAddress::Index(endpoint.ifindex),
            )
            .map_err(fail("joining 224.0.0.18"))?;
    }
    Ok(socket)
}

/// The [`AdvertSender`] of a VRRP instance: one copy per destination from
/// its source address, with the VRRPv3 IPv4 checksum formed for that
/// destination.
#[derive(Debug)]
struct VrrpSender {
    shared: Arc<Shared>,
    destinations: Vec<SocketAddr>,
    source: IpAddr,
    ifindex: u32,
    ipv4_v3_checksum: Option<vrrp::ChecksumForm>,
}

impl AdvertSender for VrrpSender {
    fn send(&self, packet: &[u8]) -> Result<(), SendError> {
        let mut result = Ok(());
        let mut copy = packet.to_vec();
        for dest in &self.destinations {
            if let (Some(form), IpAddr::V4(src), IpAddr::V4(dst)) =
                (self.ipv4_v3_checksum, self.source, dest.ip())
            {
                vrrp::set_ipv4_checksum(&mut copy, form, src, dst);
            }
            let sent = send_from(
                self.shared.socket.get_ref(),
                &copy,
                *dest,
                self.source,
                self.ifindex,
            );
            if let Err(e) = sent {
                result = Err(send_error(&self.shared, *dest, e));
            }
        }
        result
    }
}

/// `sendmsg` of one datagram to `dest` from `source` on interface
/// `ifindex` (`IP_PKTINFO` / `IPV6_PKTINFO`), without blocking.
fn send_from(
    socket: &Socket,
    bytes: &[u8],
    dest: SocketAddr,
    source: IpAddr,
    ifindex: u32,
) -> io::Result<()> {
    let iov = [io::IoSlice::new(bytes)];
    let flags = MsgFlags::MSG_DONTWAIT;
    let sent = match (dest, source) {
        (SocketAddr::V4(d), IpAddr::V4(src)) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: i32::try_from(ifindex).unwrap_or(0),
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(src).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            let cmsg = [nixsock::ControlMessage::Ipv4PacketInfo(&info)];
            nixsock::sendmsg(
                socket.as_raw_fd(),
                &iov,
                &cmsg,
                flags,
                Some(&nixsock::SockaddrIn::from(d)),
            )
        }
        (SocketAddr::V6(d), IpAddr::V6(src)) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: src.octets(),
                },
                ipi6_ifindex: ifindex,
            };
            let cmsg = [nixsock::ControlMessage::Ipv6PacketInfo(&info)];
            nixsock::sendmsg(
                socket.as_raw_fd(),
                &iov,
                &cmsg,
                flags,
                Some(&nixsock::SockaddrIn6::from(d)),
            )
        }
        _ => return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
    };
    sent.map(|_| ()).map_err(io::Error::from)
}
