//! Claim, release, list and watch VIPs through rtnetlink.
//!
//! Addresses are plain `(IpAddr, prefix_len)` pairs and interfaces are kernel
//! interface indexes, so this module depends on no other vipd module.
//!
//! Every address vipd adds carries [`VIPD_ADDRESS_PROTO`] in its `IFA_PROTO`
//! attribute, so that [`Netlink::marked_addresses`] can find — and the daemon
//! can remove — VIPs left behind by a previous vipd that crashed or was killed.
//!
//! Routed mode adds routes instead of addresses: a `local` route that makes the
//! host accept a VIP's traffic and a host route in a table of the user's choice
//! that a routing daemon announces. Both carry [`VIPD_ROUTE_PROTO`], so that
//! [`Netlink::marked_routes`] finds them after a crash as it finds addresses.
//!
//! [`watch`] opens a second, multicast-only netlink socket and turns link and
//! address notifications into [`NetEvent`]s.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{Stream, StreamExt, TryStreamExt};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, LinkAttribute, LinkFlags, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use rtnetlink::{Handle, MulticastGroup, RouteMessageBuilder};
use thiserror::Error;

/// The `IFA_PROTO` value on every address vipd adds (`ip -d addr` shows
/// "proto 118").
///
/// Why: a VIP left configured after `kill -9`, a crash or a power-cut reboot
/// of the daemon alone gives a duplicate address on the network (FIELD-NOTES
/// 3 and 18). The kernel keeps this marker with the address, so at start-up
/// (and on any exit it sees) the daemon lists the marked addresses and removes
/// those it does not currently hold as master — without ever touching addresses
/// an administrator or another tool configured. 0x76 ('v') is outside the
/// values the kernel uses itself (1..=3, `IFAPROT_KERNEL_*`).
///
/// `IFA_PROTO` needs Linux 6.1 or later; older kernels silently ignore it, and
/// then nothing is ever listed as marked.
pub const VIPD_ADDRESS_PROTO: u8 = 0x76;

/// The route protocol number on every route vipd adds (`ip route` shows
/// "proto vipd" once `config/rt_protos.d/vipd.conf` is installed in
/// /etc/iproute2/rt_protos.d/), the address marker's number.
///
/// Why 118: routing daemons treat some numbers as their own and flush routes
/// carrying them (FRR: 11, 42, 186..=198), and others are taken (12 BIRD,
/// 18 keepalived, 99, 248 kube-vip); a route with a number of its own is one
/// vipd can find and remove after a crash without touching anyone else's.
pub const VIPD_ROUTE_PROTO: u8 = VIPD_ADDRESS_PROTO;

/// The kernel's `local` table (`RT_TABLE_LOCAL`).
pub const LOCAL_TABLE: u32 = 255;

/// The header's table for tables above 255, which only `RTA_TABLE` can name.
const RT_TABLE_COMPAT: u8 = 252;

// The kernel's answers this module tells apart: ENODEV for an unknown interface
// name or index, EADDRNOTAVAIL for deleting an absent address, EEXIST for adding
// one that is already there, ESRCH for deleting an absent route.
use libc::{EADDRNOTAVAIL, EEXIST, ENODEV, ESRCH};

/// Receive buffer for the watch socket; a burst of link or address changes
/// (hundreds of interfaces going down at once) must not overflow it.
const WATCH_RCVBUF: usize = 1 << 20;

/// What went wrong, naming the operation, interface and address.
#[derive(Debug, Error)]
pub enum NetlinkError {
    /// Creating or binding a netlink socket failed.
    #[error("opening the rtnetlink socket for {purpose}")]
    Socket {
        purpose: &'static str,
        #[source]
        source: io::Error,
    },
    /// [`Netlink::connect`] or [`watch`] was called outside a tokio runtime.
    #[error("{purpose}: not called from inside a tokio runtime")]
    NoRuntime { purpose: &'static str },
    /// No interface has this name.
    #[error("interface {name:?} not found")]
    LinkNotFound { name: String },
    /// Looking up an interface failed for another reason.
    #[error("looking up interface {name:?}")]
    LinkQuery {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// The prefix length is too long for the address family.
    #[error("{op} {addr}/{prefix_len} on interface index {ifindex}: prefix length out of range")]
    InvalidPrefix {
        op: &'static str,
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
    },
    /// Adding the address failed.
    #[error("claiming {addr}/{prefix_len} on interface index {ifindex}")]
    Claim {
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
        #[source]
        source: rtnetlink::Error,
    },
    /// Deleting the address failed (other than it being absent).
    #[error("releasing {addr}/{prefix_len} on interface index {ifindex}")]
    Release {
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
        #[source]
        source: rtnetlink::Error,
    },
    /// Listing the addresses of an interface failed.
    #[error("checking for {addr} on interface index {ifindex}")]
    Holds {
        ifindex: u32,
        addr: IpAddr,
        #[source]
        source: rtnetlink::Error,
    },
    /// Listing all addresses failed.
    #[error("listing vipd-marked addresses")]
    ListMarked {
        #[source]
        source: rtnetlink::Error,
    },
    /// Listing an interface's addresses failed.
    #[error("listing the addresses of interface index {ifindex}")]
    ListAddresses {
        ifindex: u32,
        #[source]
        source: rtnetlink::Error,
    },
    /// Listing the IPv4 routes failed.
    #[error("listing the IPv4 routes (looking for the default gateway)")]
    Routes {
        #[source]
        source: rtnetlink::Error,
    },
    /// Adding one of vipd's routes failed.
    #[error("adding the {kind} route for {addr} to table {table}")]
    AddRoute {
        kind: &'static str,
        addr: IpAddr,
        table: u32,
        #[source]
        source: rtnetlink::Error,
    },
    /// Deleting one of vipd's routes failed (other than it being absent).
    #[error("deleting the {kind} route for {addr} from table {table}")]
    DeleteRoute {
        kind: &'static str,
        addr: IpAddr,
        table: u32,
        #[source]
        source: rtnetlink::Error,
    },
    /// Listing the routes (looking for vipd's) failed.
    #[error("listing vipd's routes (proto {VIPD_ROUTE_PROTO})")]
    ListRoutes {
        #[source]
        source: rtnetlink::Error,
    },
}

impl NetlinkError {
    /// The errno the kernel answered with, when the kernel refused a request
    /// (`ENODEV` when the interface is gone, `EPERM` without CAP_NET_ADMIN...).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Socket { source, .. } => source.raw_os_error(),
            Self::LinkQuery { source, .. }
            | Self::Claim { source, .. }
            | Self::Release { source, .. }
            | Self::Holds { source, .. }
            | Self::ListMarked { source }
            | Self::ListAddresses { source, .. }
            | Self::Routes { source }
            | Self::AddRoute { source, .. }
            | Self::DeleteRoute { source, .. }
            | Self::ListRoutes { source } => errno(source),
            Self::LinkNotFound { .. } => Some(ENODEV),
            Self::NoRuntime { .. } | Self::InvalidPrefix { .. } => None,
        }
    }
}

/// The positive errno of a netlink NACK.
fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().saturating_abs()),
        _ => None,
    }
}

/// An interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Kernel interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Administratively up (`IFF_UP`) and operationally up: carrier present
    /// (`IFF_LOWER_UP`) and operstate UP or UNKNOWN (`IFF_RUNNING`).
    pub up: bool,
    /// The Ethernet address, when the link has a 6-byte hardware address.
    pub mac: Option<[u8; 6]>,
    /// `net.ipv6.conf.IF.forwarding`, from the link's IPv6 device
    /// configuration (`IFLA_AF_SPEC`); `None` when IPv6 is off on the link.
    ///
    /// Read here rather than from /proc/sys: the unit's `ProcSubset=pid`
    /// hides /proc/sys (FIELD-NOTES 23).
    pub ipv6_forwarding: Option<bool>,
}

/// Whether an address on an interface is vipd's, as far as the kernel can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The interface does not have the address.
    Absent,
    /// The interface has it, carrying [`VIPD_ADDRESS_PROTO`].
    Marked,
    /// The interface has it without the marker: an administrator or another
    /// tool configured it.
    Unmarked,
}

/// What [`Netlink::claim`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// The address is on the interface, marked as vipd's.
    Marked,
    /// The address was already there without the marker: it is someone
    /// else's, so it was left exactly as it was (and will never be deleted
    /// by [`Netlink::release`]).
    LeftAlone,
}

/// What [`Netlink::release`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The address is gone (or was never there).
    Removed,
    /// The address is there without the marker: someone else's, left alone.
    LeftAlone,
}

/// An address carrying the vipd marker, as listed by
/// [`Netlink::marked_addresses`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MarkedAddress {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// A route carrying [`VIPD_ROUTE_PROTO`], as listed by [`Netlink::marked_routes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MarkedRoute {
    /// The routing table (the kernel's local table for [`RouteKind::Accept`]).
    pub table: u32,
    /// The destination (a VIP).
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub kind: RouteKind,
    /// The route's metric (`RTA_PRIORITY`).
    pub metric: u32,
}

/// Which of vipd's two routes per VIP in routed mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// A `local` route in the local table: the host accepts the VIP's traffic.
    Accept,
    /// A unicast host route in the announce table, for a routing daemon.
    Announce,
}

impl RouteKind {
    fn name(self) -> &'static str {
        match self {
            Self::Accept => "local",
            Self::Announce => "announce",
        }
    }
}

impl std::fmt::Display for RouteKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A request connection to the kernel's routing netlink.
///
/// Cheap to clone; all clones share one socket and one connection task, which
/// ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
    /// Held for the whole of every dump request. The kernel runs one dump at
    /// a time per socket and answers a second with EBUSY, and every clone
    /// shares the socket: 255 VIP workers claiming at once (each claim looks
    /// at the interface's addresses first) would otherwise fail most claims.
    dumps: Arc<tokio::sync::Mutex<()>>,
}

impl Netlink {
    /// Opens an rtnetlink socket and spawns its connection task on the current
    /// tokio runtime (the socket each `ip addr`/`ip link` command opens).
    pub fn connect() -> Result<Self, NetlinkError> {
        const PURPOSE: &str = "requests";
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| NetlinkError::NoRuntime { purpose: PURPOSE })?;
        let (connection, handle, _unsolicited) =
            rtnetlink::new_connection().map_err(|source| NetlinkError::Socket {
                purpose: PURPOSE,
                source,
            })?;
        // The task ends by itself once every `Handle` clone is dropped (the
        // unsolicited-message receiver is already gone).
        runtime.spawn(connection);
        Ok(Self {
            handle,
            dumps: Arc::default(),
        })
    }

    /// Looks an interface up by name; equivalent to `ip link show dev NAME`.
    pub async fn link_by_name(&self, name: &str) -> Result<Link, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let found = links.try_next().await.map_err(|source| {
            if errno(&source) == Some(ENODEV) {
                NetlinkError::LinkNotFound {
                    name: name.to_owned(),
                }
            } else {
                NetlinkError::LinkQuery {
                    name: name.to_owned(),
                    source,
                }
            }
        })?;
        found
            .as_ref()
            .and_then(parse_link)
            .ok_or_else(|| NetlinkError::LinkNotFound {
                name: name.to_owned(),
            })
    }

    /// Adds `addr/prefix_len` to the interface, marked with
    /// [`VIPD_ADDRESS_PROTO`]; equivalent to
    /// `ip addr add ADDR/PLEN dev IF proto 118` (plus `nodad` for IPv6).
    ///
    /// Idempotent: claiming an address vipd already marked succeeds. An
    /// address already there *without* the marker belongs to an administrator
    /// or another tool: it is left untouched ([`Claimed::LeftAlone`]), so that
    /// a later release cannot delete what vipd never added. (IPv4 with another
    /// prefix length is another kernel entry: vipd adds its own beside the
    /// administrator's and later removes only its own.) IPv6 addresses skip duplicate address detection
    /// (`IFA_F_NODAD`): during an overlapping handover the old master still
    /// answers for the VIP, and DAD would leave it `dadfailed` (FIELD-NOTES
    /// 15). The kernel's prefix route is kept, as with `ip addr add`.
    pub async fn claim(
        &self,
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<Claimed, NetlinkError> {
        check_prefix("claiming", ifindex, addr, prefix_len)?;
        // Exclusive create (not replace): a takeover is one request, and only
        // an address already there (ours from before, or an administrator's)
        // costs the dump that tells which. Replace would have stamped our
        // marker onto an administrator's address.
        let mut request = self.handle.address().add(ifindex, addr, prefix_len);
        let message = request.message_mut();
        message
            .attributes
            .push(AddressAttribute::Protocol(AddressProtocol::from(
                VIPD_ADDRESS_PROTO,
            )));
        if addr.is_ipv6() {
            // The header byte is what older kernels read; IFA_FLAGS wins
            // when present.
            message.header.flags |= AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Ok(()) => Ok(Claimed::Marked),
            Err(source) if errno(&source) == Some(EEXIST) => {
                if markers_supported() && self.presence(ifindex, addr).await? == Presence::Unmarked
                {
                    Ok(Claimed::LeftAlone)
                } else {
                    Ok(Claimed::Marked)
                }
            }
            Err(source) => Err(NetlinkError::Claim {
                ifindex,
                addr,
                prefix_len,
                source,
            }),
        }
    }

    /// Removes `addr/prefix_len` from the interface; equivalent to
    /// `ip addr del ADDR/PLEN dev IF`.
    ///
    /// Idempotent: an absent address is not an error. Only the exact
    /// address and prefix length are removed, and only when it carries the
    /// marker: an address an administrator configured is never deleted
    /// ([`Released::LeftAlone`]), even when it equals a VIP. Note that deleting an IPv4
    /// *primary* address also deletes the secondaries of its subnet unless
    /// `net.ipv4.conf.IF.promote_secondaries` is set.
    pub async fn release(
        &self,
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<Released, NetlinkError> {
        check_prefix("releasing", ifindex, addr, prefix_len)?;
        if markers_supported() && self.presence(ifindex, addr).await? == Presence::Unmarked {
            return Ok(Released::LeftAlone);
        }
        let mut message = AddressMessage::default();
        message.header.family = family(addr);
        message.header.prefix_len = prefix_len;
        message.header.index = ifindex;
        // Both, as iproute2 sends them: IPv4 matches IFA_LOCAL and, through
        // IFA_ADDRESS, the prefix length (without it any prefix would match);
        // IPv6 matches the address and prefix length.
        message.attributes.push(AddressAttribute::Local(addr));
        message.attributes.push(AddressAttribute::Address(addr));
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(Released::Removed),
            Err(source) if errno(&source) == Some(EADDRNOTAVAIL) => Ok(Released::Removed),
            Err(source) => Err(NetlinkError::Release {
                ifindex,
                addr,
                prefix_len,
                source,
            }),
        }
    }

    /// Whether the interface has `addr` (any prefix length, marked or not);
    /// equivalent to `ip addr show dev IF to ADDR`.
    pub async fn holds(&self, ifindex: u32, addr: IpAddr) -> Result<bool, NetlinkError> {
        Ok(self.presence(ifindex, addr).await? != Presence::Absent)
    }

    /// Whether the interface has `addr` (any prefix length), and whether vipd
    /// marked it; equivalent to `ip -d addr show dev IF to ADDR`.
    pub async fn presence(&self, ifindex: u32, addr: IpAddr) -> Result<Presence, NetlinkError> {
        let _one_dump = self.dumps.lock().await;
        let mut request = self.handle.address().get().set_link_index_filter(ifindex);
        request.message_mut().header.family = family(addr);
        request.message_mut().header.index = ifindex;
        let mut addresses = request.execute();
        let mut presence = Presence::Absent;
        // Read the dump to its end: a request left half-read would leave the
        // rest of the answer queued on the shared socket.
        loop {
            match addresses.try_next().await {
                Ok(Some(message)) => {
                    if message.header.index == ifindex && address_of(&message) == Some(addr) {
                        // IPv4 keeps one entry per prefix length: an
                        // administrator's 10.0.0.5/24 beside vipd's
                        // 10.0.0.5/32. Ours wins, so that a release removes
                        // ours (the kernel matches the prefix length, leaving
                        // theirs) rather than taking both for theirs.
                        if marked_address(&message).is_some() {
                            presence = Presence::Marked;
                        } else if presence == Presence::Absent {
                            presence = Presence::Unmarked;
                        }
                    }
                }
                Ok(None) => return Ok(presence),
                Err(source) => {
                    return Err(NetlinkError::Holds {
                        ifindex,
                        addr,
                        source,
                    })
                }
            }
        }
    }

    /// The IPv4 default gateway of the main routing table, if there is one;
    /// equivalent to `ip -4 route show default table main`.
    ///
    /// Read through netlink rather than /proc/net/route, which the unit's
    /// `ProcSubset=pid` hides (FIELD-NOTES 23). With several default routes
    /// the one with the lowest metric wins, as in the kernel's choice.
    pub async fn default_gateway_v4(&self) -> Result<Option<Ipv4Addr>, NetlinkError> {
        let _one_dump = self.dumps.lock().await;
        let request = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build());
        let routes: Vec<RouteMessage> = request
            .execute()
            .try_collect()
            .await
            .map_err(|source| NetlinkError::Routes { source })?;
        Ok(routes
            .iter()
            .filter_map(default_gateway_of)
            .min_by_key(|(metric, _)| *metric)
            .map(|(_, gateway)| gateway))
    }

    /// The address a VRRP instance's adverts go out from when `vrrp_source`
    /// is not set, as keepalived picks it: IPv4, the interface's first
    /// primary address; IPv6, its first link-local address that has passed
    /// duplicate address detection. Never one of `except` (the VIPs) nor an
    /// address vipd added. `None`: the interface has none yet.
    pub async fn vrrp_source(
        &self,
        ifindex: u32,
        ipv6: bool,
        except: &[IpAddr],
    ) -> Result<Option<IpAddr>, NetlinkError> {
        let _one_dump = self.dumps.lock().await;
        let mut request = self.handle.address().get().set_link_index_filter(ifindex);
        request.message_mut().header.family = if ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        request.message_mut().header.index = ifindex;
        let addresses: Vec<AddressMessage> = request
            .execute()
            .try_collect()
            .await
            .map_err(|source| NetlinkError::ListAddresses { ifindex, source })?;
        Ok(addresses
            .iter()
            .filter(|m| m.header.index == ifindex && marked_address(m).is_none())
            .filter(|m| {
                let flags = address_flags(m);
                !flags.contains(AddressFlags::Secondary) && !flags.contains(AddressFlags::Tentative)
            })
            .filter_map(ip_address_of)
            .filter(|a| a.is_ipv6() == ipv6 && !except.contains(a))
            .find(|a| match a {
                IpAddr::V4(_) => true,
                IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
            }))
    }

    /// Every address on every interface that carries [`VIPD_ADDRESS_PROTO`];
    /// equivalent to `ip -d addr show proto 118`.
    pub async fn marked_addresses(&self) -> Result<Vec<MarkedAddress>, NetlinkError> {
        let _one_dump = self.dumps.lock().await;
        let addresses: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| NetlinkError::ListMarked { source })?;
        Ok(addresses.iter().filter_map(marked_address).collect())
    }
}

/// Routed mode's routes (see the module doc).
impl Netlink {
    /// Makes the host accept traffic for `addr` without an address on any
    /// interface; equivalent to
    /// `ip route add local ADDR/32 dev lo table local proto 118` (`/128` for IPv6).
    ///
    /// Not an address on `lo`: FRR's zebra would then see a connected route
    /// for the VIP that shadows the imported table route, and BGP would
    /// announce nothing (issue 16). Idempotent: a local route already there is
    /// left as it is — also one that is not vipd's (an address of the host's
    /// own), which [`Netlink::remove_accept_route`] then never deletes.
    pub async fn add_accept_route(&self, addr: IpAddr) -> Result<(), NetlinkError> {
        let lo = self.loopback_index().await?;
        let message = vipd_route(addr, RouteKind::Accept, LOCAL_TABLE, lo, 0);
        match self.handle.route().add(message).execute().await {
            Ok(()) => Ok(()),
            Err(source) if errno(&source) == Some(EEXIST) => Ok(()),
            Err(source) => Err(NetlinkError::AddRoute {
                kind: RouteKind::Accept.name(),
                addr,
                table: LOCAL_TABLE,
                source,
            }),
        }
    }

    /// Removes vipd's local route for `addr`; equivalent to
    /// `ip route del local ADDR/32 dev lo table local proto 118`. Absent is
    /// fine; a local route with another protocol (the host's own address) is
    /// never matched.
    pub async fn remove_accept_route(&self, addr: IpAddr) -> Result<(), NetlinkError> {
        self.remove_route(&MarkedRoute {
            table: LOCAL_TABLE,
            addr,
            prefix_len: host_prefix(addr),
            kind: RouteKind::Accept,
            metric: 0,
        })
        .await
    }

    /// Adds or updates the host route a routing daemon announces; equivalent to
    /// `ip route replace ADDR/32 dev lo table TABLE proto 118 metric METRIC`.
    /// Idempotent.
    pub async fn add_announce_route(
        &self,
        addr: IpAddr,
        table: u32,
        metric: u32,
    ) -> Result<(), NetlinkError> {
        let lo = self.loopback_index().await?;
        let message = vipd_route(addr, RouteKind::Announce, table, lo, metric);
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|source| NetlinkError::AddRoute {
                kind: RouteKind::Announce.name(),
                addr,
                table,
                source,
            })
    }

    /// Removes the announced host route; equivalent to
    /// `ip route del ADDR/32 dev lo table TABLE proto 118 metric METRIC`.
    /// Absent is fine.
    pub async fn remove_announce_route(
        &self,
        addr: IpAddr,
        table: u32,
        metric: u32,
    ) -> Result<(), NetlinkError> {
        self.remove_route(&MarkedRoute {
            table,
            addr,
            prefix_len: host_prefix(addr),
            kind: RouteKind::Announce,
            metric,
        })
        .await
    }

    /// Deletes one of vipd's routes (only one carrying [`VIPD_ROUTE_PROTO`]);
    /// absent is fine.
    pub async fn remove_route(&self, route: &MarkedRoute) -> Result<(), NetlinkError> {
        let mut message = vipd_route(route.addr, route.kind, route.table, 0, route.metric);
        message.header.destination_prefix_length = route.prefix_len;
        // Match any device: the route is vipd's by its protocol number.
        message
            .attributes
            .retain(|a| !matches!(a, RouteAttribute::Oif(_)));
        match self.handle.route().del(message).execute().await {
            Ok(()) => Ok(()),
            Err(source) if errno(&source) == Some(ESRCH) => Ok(()),
            Err(source) => Err(NetlinkError::DeleteRoute {
                kind: route.kind.name(),
                addr: route.addr,
                table: route.table,
                source,
            }),
        }
    }

    /// Every IPv4 and IPv6 route, in any table, carrying [`VIPD_ROUTE_PROTO`];
    /// equivalent to `ip route show table all proto 118` (and `ip -6 ...`).
    pub async fn marked_routes(&self) -> Result<Vec<MarkedRoute>, NetlinkError> {
        let _one_dump = self.dumps.lock().await;
        let mut found = Vec::new();
        for request in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let routes: Vec<RouteMessage> = self
                .handle
                .route()
                .get(request)
                .execute()
                .try_collect()
                .await
                .map_err(|source| NetlinkError::ListRoutes { source })?;
            found.extend(routes.iter().filter_map(marked_route));
        }
        Ok(found)
    }

    async fn loopback_index(&self) -> Result<u32, NetlinkError> {
        Ok(self.link_by_name("lo").await?.index)
    }
}

/// `/32` or `/128`.
fn host_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// One of vipd's routes for `addr`, as `ip route` would build it (`oif` 0:
/// none).
fn vipd_route(addr: IpAddr, kind: RouteKind, table: u32, oif: u32, metric: u32) -> RouteMessage {
    let mut message = RouteMessage::default();
    let header = &mut message.header;
    header.address_family = family(addr);
    header.destination_prefix_length = host_prefix(addr);
    header.protocol = RouteProtocol::from(VIPD_ROUTE_PROTO);
    header.table = u8::try_from(table).unwrap_or(RT_TABLE_COMPAT);
    match kind {
        RouteKind::Accept => {
            header.kind = RouteType::Local;
            header.scope = RouteScope::Host;
        }
        RouteKind::Announce => {
            header.kind = RouteType::Unicast;
            // As iproute2 does for a route with a device and no gateway.
            header.scope = if addr.is_ipv4() {
                RouteScope::Link
            } else {
                RouteScope::Universe
            };
        }
    }
    message.attributes.push(RouteAttribute::Table(table));
    message
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::from(addr)));
    if oif != 0 {
        message.attributes.push(RouteAttribute::Oif(oif));
    }
    if metric != 0 {
        message.attributes.push(RouteAttribute::Priority(metric));
    }
    message
}

/// The route, if it carries [`VIPD_ROUTE_PROTO`].
fn marked_route(route: &RouteMessage) -> Option<MarkedRoute> {
    let header = &route.header;
    if u8::from(header.protocol) != VIPD_ROUTE_PROTO {
        return None;
    }
    let kind = match header.kind {
        RouteType::Local => RouteKind::Accept,
        RouteType::Unicast => RouteKind::Announce,
        _ => return None,
    };
    let mut table = u32::from(header.table);
    let mut metric = 0;
    let mut addr = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => addr = Some(IpAddr::V4(*a)),
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => addr = Some(IpAddr::V6(*a)),
            _ => {}
        }
    }
    Some(MarkedRoute {
        table,
        addr: addr?,
        prefix_len: header.destination_prefix_length,
        kind,
        metric,
    })
}

fn family(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn check_prefix(
    op: &'static str,
    ifindex: u32,
    addr: IpAddr,
    prefix_len: u8,
) -> Result<(), NetlinkError> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(NetlinkError::InvalidPrefix {
            op,
            ifindex,
            addr,
            prefix_len,
        });
    }
    Ok(())
}

/// The interface's own address in an address message: `IFA_LOCAL` when
/// present (IPv4, and IPv6 with a peer), else `IFA_ADDRESS`.
fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(local) => return Some(*local),
            AddressAttribute::Address(addr) => address = Some(*addr),
            _ => {}
        }
    }
    address
}

fn marked_address(message: &AddressMessage) -> Option<MarkedAddress> {
    let marked = message.attributes.iter().any(|attribute| {
        matches!(attribute, AddressAttribute::Protocol(p) if u8::from(*p) == VIPD_ADDRESS_PROTO)
    });
    if !marked {
        return None;
    }
    Some(MarkedAddress {
        ifindex: message.header.index,
        addr: address_of(message)?,
        prefix_len: message.header.prefix_len,
    })
}

fn parse_link(message: &LinkMessage) -> Option<Link> {
    let mut name = None;
    let mut mac = None;
    let mut ipv6_forwarding = None;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(bytes) => mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            LinkAttribute::AfSpecUnspec(families) => {
                ipv6_forwarding = families.iter().find_map(|family| match family {
                    AfSpecUnspec::Inet6(attributes) => {
                        attributes.iter().find_map(|attribute| match attribute {
                            AfSpecInet6::DevConf(conf) => Some(conf.forwarding != 0),
                            _ => None,
                        })
                    }
                    _ => None,
                });
            }
            _ => {}
        }
    }
    let flags = message.header.flags;
    Some(Link {
        index: message.header.index,
        name: name?,
        up: flags.contains(LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Running),
        mac,
        ipv6_forwarding,
    })
}

/// `(metric, gateway)` of an IPv4 default route in the main table.
fn default_gateway_of(route: &RouteMessage) -> Option<(u32, Ipv4Addr)> {
    let header = &route.header;
    if header.destination_prefix_length != 0
        || header.kind != RouteType::Unicast
        // Tables above 255 say 252 (RT_TABLE_COMPAT) here; main is 254.
        || header.table != RouteHeader::RT_TABLE_MAIN
    {
        return None;
    }
    let mut metric = 0;
    let mut gateway = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(*g),
            _ => {}
        }
    }
    Some((metric, gateway?))
}

/// Whether this kernel keeps `IFA_PROTO` on addresses (Linux 6.1 and later).
///
/// Without it nothing is ever marked, and "unmarked" would mean every address,
/// vipd's own included: then vipd cannot tell its addresses from an
/// administrator's and falls back to deleting the exact VIP it was told to.
fn markers_supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        nix::sys::utsname::uname()
            .ok()
            .and_then(|u| u.release().to_str().map(kernel_at_least_6_1))
            .unwrap_or(false)
    })
}

/// `release` is a `uname -r` string such as "6.1.0-18-amd64".
fn kernel_at_least_6_1(release: &str) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    (major, minor) >= (6, 1)
}

/// A change the kernel announced on the watch socket.
///
/// Notifications are not deduplicated: the kernel sends `RTM_NEWLINK` for
/// many changes that leave `up` unchanged, and `RTM_NEWADDR` again when an
/// address's flags or lifetimes change, so consumers compare with what they
/// knew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// An address was removed (`RTM_DELADDR`) — by an administrator, by
    /// another tool, or by the kernel (IPv6 addresses go when their link is
    /// set down, unless `keep_addr_on_down` is set).
    AddressRemoved { ifindex: u32, addr: IpAddr },
    /// An address was added or changed (`RTM_NEWADDR`).
    AddressAdded { ifindex: u32, addr: IpAddr },
    /// A link changed (`RTM_NEWLINK`) or disappeared (`RTM_DELLINK`, reported
    /// with `up: false`). `up` has the meaning of [`Link::up`].
    Link {
        ifindex: u32,
        name: String,
        up: bool,
    },
    /// The socket's receive buffer overflowed and notifications were lost:
    /// re-read whatever state matters (e.g. [`Netlink::holds`] for each VIP).
    Overrun,
}

/// Subscribes to link and IPv4/IPv6 address notifications
/// (`RTNLGRP_LINK`, `RTNLGRP_IPV4_IFADDR`, `RTNLGRP_IPV6_IFADDR`); equivalent
/// to `ip monitor link address`.
///
/// The subscription is live when this returns, so call it before reading the
/// initial state to miss nothing. Must be called inside a tokio runtime: the
/// socket's connection task is spawned on it and aborted when the returned
/// [`Watch`] is dropped. Messages that fail to parse, or that are not link or
/// address notifications from the kernel, are skipped.
pub fn watch() -> Result<Watch, NetlinkError> {
    const PURPOSE: &str = "watching links and addresses";
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| NetlinkError::NoRuntime { purpose: PURPOSE })?;
    let (mut connection, _handle, messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ])
    .map_err(|source| NetlinkError::Socket {
        purpose: PURPOSE,
        source,
    })?;
    // Best effort: without CAP_NET_ADMIN the buffer stays at rmem_max, and an
    // overflow is still reported as `NetEvent::Overrun`.
    let _ = connection
        .socket_mut()
        .socket_mut()
        .set_rx_buf_sz(WATCH_RCVBUF);
    let task = runtime.spawn(connection);
    Ok(Watch { messages, task })
}

/// The stream of [`NetEvent`]s returned by [`watch`].
///
/// It ends only if the netlink socket fails, which the daemon should treat as
/// fatal or answer by calling [`watch`] again and re-reading state.
#[derive(Debug)]
pub struct Watch {
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream for Watch {
    type Item = NetEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<NetEvent>> {
        loop {
            match self.messages.poll_next_unpin(cx) {
                Poll::Ready(Some((message, source))) => {
                    // Only the kernel (port 0) sends rtnetlink notifications.
                    if source.port_number() != 0 {
                        continue;
                    }
                    if let Some(event) = net_event(message) {
                        return Poll::Ready(Some(event));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Turns one notification into an event; `None` for anything else.
fn net_event(message: NetlinkMessage<RouteNetlinkMessage>) -> Option<NetEvent> {
    match message.payload {
        NetlinkPayload::Overrun(_) => Some(NetEvent::Overrun),
        NetlinkPayload::InnerMessage(inner) => match inner {
            RouteNetlinkMessage::NewAddress(m) => Some(NetEvent::AddressAdded {
                ifindex: m.header.index,
                addr: ip_address_of(&m)?,
            }),
            RouteNetlinkMessage::DelAddress(m) => Some(NetEvent::AddressRemoved {
                ifindex: m.header.index,
                addr: ip_address_of(&m)?,
            }),
            RouteNetlinkMessage::NewLink(m) => link_event(&m, false),
            RouteNetlinkMessage::DelLink(m) => link_event(&m, true),
            _ => None,
        },
        _ => None,
    }
}

/// An address message's flags: `IFA_FLAGS` when present (it holds all of
/// them), else the header's 8 bits.
fn address_flags(message: &AddressMessage) -> AddressFlags {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(flags) => Some(*flags),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_truncate(u32::from(message.header.flags.bits())))
}

/// The address of an IPv4 or IPv6 address message (other families skipped).
fn ip_address_of(message: &AddressMessage) -> Option<IpAddr> {
    match message.header.family {
        AddressFamily::Inet | AddressFamily::Inet6 => address_of(message),
        _ => None,
    }
}

fn link_event(message: &LinkMessage, removed: bool) -> Option<NetEvent> {
    // RTNLGRP_LINK also carries AF_BRIDGE messages about bridge ports; an
    // AF_BRIDGE RTM_DELLINK means "no longer a bridge port", not "gone".
    if message.header.interface_family != AddressFamily::Unspec {
        return None;
    }
    let link = parse_link(message)?;
    Some(NetEvent::Link {
        ifindex: link.index,
        name: link.name,
        up: link.up && !removed,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::future::Future;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use netlink_packet_route::link::LinkHeader;
    use rtnetlink::{LinkUnspec, LinkVeth};

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));

    /// Runs `test` on a current-thread runtime in a thread of its own that
    /// has unshared into a fresh network namespace (gone with the thread).
    pub(crate) fn in_netns<F, Fut>(test: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN) for a private netns");
            return;
        }
        std::thread::spawn(move || {
            // nix's safe `sched::unshare` needs nix's "sched" feature, which
            // vipd does not enable.
            // SAFETY: unshare(2) touches no memory of ours; it only moves this
            // thread into a new network namespace.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET): {}",
                io::Error::last_os_error()
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(30), test()).await })
                .expect("test timed out");
        })
        .join()
        .unwrap();
    }

    /// Creates the veth pair `a`/`b`, sets both up and waits until `a` has
    /// carrier (veth links come up asynchronously, through linkwatch).
    pub(crate) async fn veth_pair(nl: &Netlink, a: &str, b: &str) -> (Link, Link) {
        nl.handle
            .link()
            .add(LinkVeth::new(a, b).build())
            .execute()
            .await
            .unwrap();
        for name in [a, b] {
            let index = nl.link_by_name(name).await.unwrap().index;
            nl.handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .unwrap();
        }
        for _ in 0..300 {
            let (la, lb) = (
                nl.link_by_name(a).await.unwrap(),
                nl.link_by_name(b).await.unwrap(),
            );
            if la.up && lb.up {
                return (la, lb);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("veth pair {a}/{b} never came up");
    }

    /// The rtnetlink handle under `nl`, for what vipd itself never does.
    pub(crate) fn raw_handle(nl: &Netlink) -> Handle {
        nl.handle.clone()
    }

    /// `ip link set dev IF down`.
    pub(crate) async fn set_down(nl: &Netlink, ifindex: u32) {
        nl.handle
            .link()
            .set(LinkUnspec::new_with_index(ifindex).down().build())
            .execute()
            .await
            .unwrap();
    }

    async fn address_message(nl: &Netlink, ifindex: u32, addr: IpAddr) -> Option<AddressMessage> {
        let all: Vec<AddressMessage> = nl
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute()
            .try_collect()
            .await
            .unwrap();
        all.into_iter().find(|m| address_of(m) == Some(addr))
    }

    #[test]
    fn link_by_name_reports_index_state_and_mac() {
        in_netns(|| async {
            let nl = Netlink::connect().unwrap();
            let (a, b) = veth_pair(&nl, "vipd-a", "vipd-b").await;
            assert_eq!(a.name, "vipd-a");
            assert_ne!(a.index, b.index);
            assert!(a.up && b.up);
            assert!(a.mac.is_some() && a.mac != b.mac);

            let err = nl.link_by_name("vipd-nope").await.unwrap_err();
            assert!(matches!(err, NetlinkError::LinkNotFound { .. }), "{err:?}");
            assert_eq!(err.raw_os_error(), Some(ENODEV));

            // Setting the peer down drops carrier on `a`: up must follow.
            set_down(&nl, b.index).await;
            let mut a_up = true;
            for _ in 0..300 {
                a_up = nl.link_by_name("vipd-a").await.unwrap().up;
                if !a_up {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(!a_up, "vipd-a still up without carrier");
        });
    }

    #[test]
    fn claim_and_release_are_idempotent_and_marked() {
        in_netns(|| async {
            let nl = Netlink::connect().unwrap();
            let (a, _) = veth_pair(&nl, "vipd-a", "vipd-b").await;
            for (addr, plen) in [(V4, 24), (V6, 64)] {
                assert!(!nl.holds(a.index, addr).await.unwrap());
                nl.claim(a.index, addr, plen).await.unwrap();
                nl.claim(a.index, addr, plen).await.unwrap();
                assert!(nl.holds(a.index, addr).await.unwrap(), "{addr}");
            }
            let mut marked = nl.marked_addresses().await.unwrap();
            marked.sort_by_key(|m| m.addr);
            assert_eq!(
                marked,
                vec![
                    MarkedAddress {
                        ifindex: a.index,
                        addr: V4,
                        prefix_len: 24
                    },
                    MarkedAddress {
                        ifindex: a.index,
                        addr: V6,
                        prefix_len: 64
                    },
                ]
            );

            // IPv6: no DAD, so the VIP is usable at once (never tentative).
            let m6 = address_message(&nl, a.index, V6).await.unwrap();
            let flags = m6
                .attributes
                .iter()
                .find_map(|a| match a {
                    AddressAttribute::Flags(f) => Some(*f),
                    _ => None,
                })
                .unwrap();
            assert!(flags.contains(AddressFlags::Nodad), "{flags:?}");
            assert!(!flags.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed));
            // IPv4: the kernel's prefix route is kept.
            let m4 = address_message(&nl, a.index, V4).await.unwrap();
            assert!(!m4.attributes.iter().any(
                |a| matches!(a, AddressAttribute::Flags(f) if f.contains(AddressFlags::Noprefixroute))
            ));

            for (addr, plen) in [(V4, 24), (V6, 64)] {
                // Only the exact prefix length is released.
                nl.release(a.index, addr, plen + 1).await.unwrap();
                assert!(nl.holds(a.index, addr).await.unwrap(), "{addr}");
                nl.release(a.index, addr, plen).await.unwrap();
                nl.release(a.index, addr, plen).await.unwrap();
                assert!(!nl.holds(a.index, addr).await.unwrap(), "{addr}");
            }
            assert_eq!(nl.marked_addresses().await.unwrap(), vec![]);

            // Errors name the operation, interface and address.
            let err = nl.claim(9999, V4, 24).await.unwrap_err();
            assert_eq!(err.raw_os_error(), Some(ENODEV));
            assert_eq!(
                err.to_string(),
                "claiming 192.0.2.10/24 on interface index 9999"
            );
            assert!(matches!(
                nl.claim(a.index, V4, 33).await,
                Err(NetlinkError::InvalidPrefix { .. })
            ));
        });
    }

    #[test]
    fn unmarked_addresses_are_not_listed() {
        in_netns(|| async {
            let nl = Netlink::connect().unwrap();
            let (a, b) = veth_pair(&nl, "vipd-a", "vipd-b").await;
            let admin4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
            let admin6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
            nl.handle
                .address()
                .add(a.index, admin4, 24)
                .execute()
                .await
                .unwrap();
            nl.handle
                .address()
                .add(b.index, admin6, 64)
                .execute()
                .await
                .unwrap();
            nl.claim(b.index, V4, 32).await.unwrap();

            assert!(nl.holds(a.index, admin4).await.unwrap());
            assert!(!nl.holds(b.index, admin4).await.unwrap());
            assert_eq!(
                nl.marked_addresses().await.unwrap(),
                vec![MarkedAddress {
                    ifindex: b.index,
                    addr: V4,
                    prefix_len: 32
                }]
            );
        });
    }

    #[test]
    fn watch_reports_address_removal_and_link_down() {
        in_netns(|| async {
            let nl = Netlink::connect().unwrap();
            let (a, b) = veth_pair(&nl, "vipd-a", "vipd-b").await;
            let mut events = watch().unwrap();
            nl.claim(a.index, V4, 24).await.unwrap();
            nl.claim(a.index, V6, 64).await.unwrap();

            // Someone else deletes the VIPs.
            for (addr, plen) in [(V4, 24u8), (V6, 64)] {
                let mut m = AddressMessage::default();
                m.header.family = family(addr);
                m.header.prefix_len = plen;
                m.header.index = a.index;
                m.attributes.push(AddressAttribute::Address(addr));
                m.attributes.push(AddressAttribute::Local(addr));
                nl.handle.address().del(m).execute().await.unwrap();
            }
            let mut seen = Vec::new();
            while seen.len() < 2 {
                match events.next().await.unwrap() {
                    NetEvent::AddressRemoved { ifindex, addr } if ifindex == a.index => {
                        seen.push(addr)
                    }
                    NetEvent::AddressRemoved { ifindex, addr } => {
                        panic!("removal of {addr} on unexpected interface {ifindex}")
                    }
                    _ => {}
                }
            }
            assert_eq!(seen, vec![V4, V6]);

            set_down(&nl, a.index).await;
            loop {
                if let NetEvent::Link {
                    ifindex,
                    name,
                    up: false,
                } = events.next().await.unwrap()
                {
                    assert_eq!((ifindex, name.as_str()), (a.index, "vipd-a"));
                    break;
                }
            }
            // The peer loses carrier, which is reported as down too.
            loop {
                if let NetEvent::Link {
                    ifindex, up: false, ..
                } = events.next().await.unwrap()
                {
                    if ifindex == b.index {
                        break;
                    }
                }
            }
        });
    }

    #[test]
    fn ipv6_vip_vanishes_when_its_link_is_set_down() {
        // A kernel behaviour the daemon must live with: without
        // `keep_addr_on_down`, setting a link down removes its IPv6
        // addresses, VIPs included (IPv4 addresses stay).
        in_netns(|| async {
            let nl = Netlink::connect().unwrap();
            let (a, _) = veth_pair(&nl, "vipd-a", "vipd-b").await;
            nl.claim(a.index, V4, 24).await.unwrap();
            nl.claim(a.index, V6, 64).await.unwrap();
            set_down(&nl, a.index).await;
            assert!(nl.holds(a.index, V4).await.unwrap());
            assert!(!nl.holds(a.index, V6).await.unwrap());
            // Claiming on a down link works; the VIP is there once it is up.
            nl.claim(a.index, V6, 64).await.unwrap();
            assert!(nl.holds(a.index, V6).await.unwrap());
        });
    }

    #[test]
    fn an_administrators_address_equal_to_a_vip_is_never_marked_or_removed() {
        in_netns(|| async {
            let nl = Netlink::connect().unwrap();
            let (a, _) = veth_pair(&nl, "vipd-a", "vipd-b").await;
            for (addr, plen) in [(V4, 24), (V6, 64)] {
                nl.handle
                    .address()
                    .add(a.index, addr, plen)
                    .execute()
                    .await
                    .unwrap();
                assert_eq!(
                    nl.presence(a.index, addr).await.unwrap(),
                    Presence::Unmarked
                );
                assert_eq!(
                    nl.claim(a.index, addr, plen).await.unwrap(),
                    Claimed::LeftAlone
                );
                assert_eq!(
                    nl.release(a.index, addr, plen).await.unwrap(),
                    Released::LeftAlone
                );
                assert_eq!(
                    nl.presence(a.index, addr).await.unwrap(),
                    Presence::Unmarked
                );
            }
            assert_eq!(nl.marked_addresses().await.unwrap(), vec![]);
            // IPv4, the VIP as /32 beside the administrator's /24: vipd's own
            // entry is added and later removed; theirs stays.
            assert_eq!(nl.claim(a.index, V4, 32).await.unwrap(), Claimed::Marked);
            assert_eq!(nl.presence(a.index, V4).await.unwrap(), Presence::Marked);
            assert_eq!(
                nl.release(a.index, V4, 32).await.unwrap(),
                Released::Removed
            );
            assert_eq!(nl.presence(a.index, V4).await.unwrap(), Presence::Unmarked);
            assert_eq!(nl.marked_addresses().await.unwrap(), vec![]);
        });
    }

    #[test]
    fn default_gateway_comes_from_the_main_table_lowest_metric_first() {
        in_netns(|| async {
            let nl = Netlink::connect().unwrap();
            let (a, _) = veth_pair(&nl, "vipd-a", "vipd-b").await;
            assert_eq!(nl.default_gateway_v4().await.unwrap(), None);
            let own = Ipv4Addr::new(10, 0, 2, 15);
            nl.handle
                .address()
                .add(a.index, IpAddr::V4(own), 24)
                .execute()
                .await
                .unwrap();
            for (gateway, metric) in [([10, 0, 2, 2], 200), ([10, 0, 2, 1], 100)] {
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(Ipv4Addr::from(gateway))
                    .output_interface(a.index)
                    .priority(metric)
                    .build();
                nl.handle.route().add(route).execute().await.unwrap();
            }
            // A default route in another table is not the host's gateway.
            let other = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(Ipv4Addr::new(10, 0, 2, 9))
                .output_interface(a.index)
                .table_id(100)
                .build();
            nl.handle.route().add(other).execute().await.unwrap();
            assert_eq!(
                nl.default_gateway_v4().await.unwrap(),
                Some(Ipv4Addr::new(10, 0, 2, 1))
            );
        });
    }

    #[test]
    fn ipv6_forwarding_is_read_from_the_link() {
        in_netns(|| async {
            let nl = Netlink::connect().unwrap();
            let (a, _) = veth_pair(&nl, "vipd-a", "vipd-b").await;
            assert_eq!(a.ipv6_forwarding, Some(false));
            // This thread is in the test's namespace, so /proc/sys/net is its.
            std::fs::write("/proc/sys/net/ipv6/conf/vipd-a/forwarding", "1").unwrap();
            let a = nl.link_by_name("vipd-a").await.unwrap();
            assert_eq!(a.ipv6_forwarding, Some(true));
        });
    }

    #[test]
    fn routed_mode_routes_are_idempotent_marked_and_leave_others_alone() {
        in_netns(|| async {
            let nl = Netlink::connect().unwrap();
            let lo = nl.link_by_name("lo").await.unwrap().index;
            nl.handle
                .link()
                .set(LinkUnspec::new_with_index(lo).up().build())
                .execute()
                .await
                .unwrap();
            let (a, _) = veth_pair(&nl, "vipd-a", "vipd-b").await;
            for addr in [V4, V6] {
                for _ in 0..2 {
                    nl.add_accept_route(addr).await.unwrap();
                    nl.add_announce_route(addr, 118, 100).await.unwrap();
                }
            }
            let mut marked = nl.marked_routes().await.unwrap();
            marked.sort_by_key(|r| (r.addr, r.table));
            let route = |addr, kind, table, metric| MarkedRoute {
                table,
                addr,
                prefix_len: host_prefix(addr),
                kind,
                metric,
            };
            assert_eq!(
                marked,
                vec![
                    route(V4, RouteKind::Announce, 118, 100),
                    route(V4, RouteKind::Accept, LOCAL_TABLE, 0),
                    route(V6, RouteKind::Announce, 118, 100),
                    // The kernel gives IPv6 routes without a metric 1024; local
                    // routes keep 0.
                    route(V6, RouteKind::Accept, LOCAL_TABLE, marked[3].metric),
                ]
            );

            // The host's own address: its local route is the kernel's, and
            // vipd's add and remove leave it alone.
            let own = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77));
            nl.handle
                .address()
                .add(a.index, own, 24)
                .execute()
                .await
                .unwrap();
            nl.add_accept_route(own).await.unwrap();
            nl.remove_accept_route(own).await.unwrap();
            assert!(!nl
                .marked_routes()
                .await
                .unwrap()
                .iter()
                .any(|r| r.addr == own));
            let locals: Vec<RouteMessage> = nl
                .handle
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute()
                .try_collect()
                .await
                .unwrap();
            assert!(locals.iter().any(|r| r.header.kind == RouteType::Local
                && r.attributes
                    .contains(&RouteAttribute::Destination(RouteAddress::from(own)))));

            // Each removal twice: absent is fine.
            for addr in [V4, V6] {
                for _ in 0..2 {
                    nl.remove_announce_route(addr, 118, 100).await.unwrap();
                    nl.remove_accept_route(addr).await.unwrap();
                }
            }
            assert_eq!(nl.marked_routes().await.unwrap(), vec![]);

            // remove_route takes what marked_routes listed.
            nl.add_announce_route(V4, 7, 5).await.unwrap();
            for r in nl.marked_routes().await.unwrap() {
                nl.remove_route(&r).await.unwrap();
            }
            assert_eq!(nl.marked_routes().await.unwrap(), vec![]);
        });
    }

    #[test]
    fn kernel_versions_with_address_markers() {
        assert!(kernel_at_least_6_1("6.1.0-18-amd64"));
        assert!(kernel_at_least_6_1("6.18.44-fc-v1045"));
        assert!(!kernel_at_least_6_1("5.10.0-28-amd64"));
        assert!(!kernel_at_least_6_1("6.0.12"));
        assert!(!kernel_at_least_6_1("garbage"));
    }

    #[test]
    fn notifications_parse_and_foreign_messages_are_skipped() {
        let mut link = LinkMessage::default();
        link.header = LinkHeader {
            index: 7,
            flags: LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Running,
            ..LinkHeader::default()
        };
        link.attributes.push(LinkAttribute::IfName("eth7".into()));
        link.attributes
            .push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 7]));
        let msg = |m| NetlinkMessage::from(m);
        assert_eq!(
            net_event(msg(RouteNetlinkMessage::NewLink(link.clone()))),
            Some(NetEvent::Link {
                ifindex: 7,
                name: "eth7".into(),
                up: true
            })
        );
        assert_eq!(
            net_event(msg(RouteNetlinkMessage::DelLink(link.clone()))),
            Some(NetEvent::Link {
                ifindex: 7,
                name: "eth7".into(),
                up: false
            })
        );
        assert_eq!(parse_link(&link).unwrap().mac, Some([2, 0, 0, 0, 0, 7]));
        // Up but no carrier is down.
        let mut no_carrier = link.clone();
        no_carrier.header.flags = LinkFlags::Up;
        assert!(!parse_link(&no_carrier).unwrap().up);
        // Bridge-port notifications are not about the link itself.
        let mut bridge = link.clone();
        bridge.header.interface_family = AddressFamily::Bridge;
        assert_eq!(net_event(msg(RouteNetlinkMessage::DelLink(bridge))), None);
        // A link message without a name is skipped.
        let mut nameless = link;
        nameless
            .attributes
            .retain(|a| !matches!(a, LinkAttribute::IfName(_)));
        assert_eq!(net_event(msg(RouteNetlinkMessage::NewLink(nameless))), None);

        let mut addr = AddressMessage::default();
        addr.header.family = AddressFamily::Inet6;
        addr.header.index = 3;
        addr.attributes.push(AddressAttribute::Address(V6));
        assert_eq!(
            net_event(msg(RouteNetlinkMessage::DelAddress(addr.clone()))),
            Some(NetEvent::AddressRemoved {
                ifindex: 3,
                addr: V6
            })
        );
        // IPv4 reports IFA_LOCAL (IFA_ADDRESS is the peer on point-to-point).
        let mut ptp = AddressMessage::default();
        ptp.header.family = AddressFamily::Inet;
        ptp.header.index = 4;
        ptp.attributes
            .push(AddressAttribute::Address("198.51.100.1".parse().unwrap()));
        ptp.attributes.push(AddressAttribute::Local(V4));
        assert_eq!(
            net_event(msg(RouteNetlinkMessage::NewAddress(ptp))),
            Some(NetEvent::AddressAdded {
                ifindex: 4,
                addr: V4
            })
        );
        let mut empty = addr;
        empty.attributes.clear();
        assert_eq!(net_event(msg(RouteNetlinkMessage::NewAddress(empty))), None);
        assert_eq!(
            net_event(NetlinkMessage::from(RouteNetlinkMessage::NewRoute(
                Default::default()
            ))),
            None
        );
        let overrun = NetlinkMessage::<RouteNetlinkMessage>::new(
            Default::default(),
            NetlinkPayload::Overrun(Vec::new()),
        );
        assert_eq!(net_event(overrun), Some(NetEvent::Overrun));
    }
}
