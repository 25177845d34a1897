//! Everything that touches the network stack of this host: the advert sockets,
//! the kernel's addresses and links, and the frames that announce a VIP.
//!
//! - [`transport`]: UDP sockets (multicast or unicast) that carry adverts, with
//!   the TTL-255 check; hands raw datagrams to instance tasks.
//! - [`netlink`]: claim, release, list and watch VIPs and links through rtnetlink
//!   (each address marked with `IFA_PROTO` 118 so crashes leave nothing behind).
//! - [`announce`]: gratuitous ARP (RFC 5227) and unsolicited NA (RFC 4861) frames
//!   over `AF_PACKET`.
//! - [`accept`]: the back-off and bounded logging of a listener whose `accept`
//!   fails (out of file descriptors), for the control socket and metrics.
//!
//! What it owns: sockets and kernel objects, each behind a small typed API.
//! What it may not touch: election decisions (when to claim, what to send) are
//! the daemon's and the election's; nothing here reads the configuration file or
//! the clock to decide anything.

pub mod accept;
pub mod announce;
pub mod netlink;
pub mod transport;
