//! vipd: virtual-IP failover for bare-metal Linux clusters.
//!
//! # Layout
//!
//! - [`wire`]: the advert packet: byte layout, HMAC authentication, replay guard.
//! - [`election`]: the election rules, a sans-IO state machine (no sockets, no clock reads).
//! - [`config`]: the TOML schema, parsing and validation with file:line:column errors.
//! - [`transport`]: multicast/unicast UDP sockets that carry adverts (TTL 255 enforced).
//! - [`health`]: track scripts, interfaces and files, the split-brain guard and
//!   sync groups, folded into the election's `Health`.
//! - [`notify`]: notify hooks run on each transition, in order, under a timeout.
//! - [`netlink`]: claim, release, list and watch VIPs through rtnetlink.
//! - [`announce`]: gratuitous ARP and unsolicited neighbour advertisements.
//! - [`control`]: the control-socket protocol (JSON lines) behind `vipd status`, `drain`, ...
//! - [`daemon`]: the tokio driver: sockets, timers and signals in; election actions out.
//!
//! # The drive-loop contract
//!
//! After every `handle_*` call on an [`election::Election`], the caller drains
//! `poll_action()` until it returns `None`, carries out each action in order, then
//! sleeps until `poll_timeout()` (or the next input) before feeding it again.

pub mod announce;
pub mod config;
pub mod control;
pub mod daemon;
pub mod election;
pub mod health;
pub mod netlink;
pub mod notify;
pub mod transport;
pub mod wire;
