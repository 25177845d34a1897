//! Everything that touches the network stack of this host: the advert sockets,
//! the kernel's addresses and links, and the frames that announce a VIP.
//!
//! - [`transport`]: UDP sockets (multicast or unicast) that carry adverts, and
//!   raw IP-protocol-112 sockets for VRRP instances, with the TTL-255 check;
//!   hands raw datagrams to each instance's sink.
//! - [`netlink`]: claim, release, list and watch VIPs and links through rtnetlink
//!   (each address marked with `IFA_PROTO` 118 so crashes leave nothing behind).
//! - [`announce`]: gratuitous ARP (RFC 5227) and unsolicited NA (RFC 4861) frames
//!   over `AF_PACKET`, and the ARP probes / DAD solicitations of a cold claim.
//! - [`neighbour_watch`]: who answers for the VIPs: ARP and neighbour
//!   advertisements for them, through a kernel-filtered `AF_PACKET` socket.
//! - [`accept`]: the back-off and bounded logging of a listener whose `accept`
//!   fails (out of file descriptors), for the control socket and metrics.
//!
//! What it owns: sockets and kernel objects, each behind a small typed API.
//! What it may not touch: election decisions (when to claim, what to send) are
//! the daemon's and the election's; nothing here reads the configuration file or
//! the clock to decide anything.

pub mod accept;
pub mod announce;
pub mod neighbour_watch;
pub mod netlink;
pub mod transport;

use std::io;
use std::os::fd::AsRawFd as _;

/// `setsockopt(2)` with `value` passed as it is laid out in memory: for the
/// kernel's plain option structs and ints.
fn set_socket_option<T>(
    socket: &socket2::Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a valid, initialised `T` and we pass its exact size;
    // the kernel only reads it during the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
