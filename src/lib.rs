//! vipd: virtual-IP failover for bare-metal Linux clusters.
//!
//! # Layout
//!
//! Each folder owns one concern; its module doc says what it owns and what it
//! may not touch.
//!
//! - [`wire`]: the advert packet: byte layout, HMAC authentication, replay guard.
//! - [`vrrp`]: VRRPv2/v3 message bytes as keepalived sends and checks them:
//!   encode, decode, checksums and the IPv4 header of a raw socket; no sockets,
//!   no clock.
//! - [`instance`]: the instance core: every rule that decides whether this
//!   node holds an instance's VIPs (the election, health, the name-clash rule,
//!   the replay guard, quorum, sync groups, the conflict watch), one sans-IO
//!   state machine fed bytes and `now`, with its rules doc.
//! - [`election`]: every election rule, a sans-IO state machine (no sockets, no
//!   clock reads): the rules doc, the peer table and liveness, the timers.
//! - [`store`]: a VIP held by a key in etcd (`election = "etcd"` or
//!   `"patroni"`): when etcd vouches for this node, the holder key, campaigns
//!   and handovers, Patroni's leader key; a sans-IO state machine the
//!   instance core owns, with its rules doc.
//! - [`conflict`]: another host answering for a VIP: the foreign-MAC alarm's
//!   and the cold-claim probe's rules, a sans-IO state machine like the election.
//! - [`config`]: the TOML schema, validation split by table with file:line:column
//!   diagnostics, and the checks against this host.
//! - [`net`]: the host's network stack: advert sockets (`transport`), addresses,
//!   links and routed mode's routes (`netlink`), gratuitous ARP / unsolicited NA
//!   (`announce`), a failing listener's back-off (`accept`).
//! - [`health`]: track scripts, interfaces and files, the split-brain guard and
//!   sync groups, folded into the election's `Health`; the fault of a node that
//!   cannot claim or announce its VIPs (`claim`); notify hooks (`notify`).
//! - [`control`]: the control socket behind `vipd status`, `drain`, ...: the
//!   protocol, the server, the client and the status rendering.
//! - [`daemon`]: the tokio driver: `run`, the supervisor of instances, each
//!   instance's driver around its core (one `now` per wake-up), the VIP
//!   worker, the reload plan, the state directory and the open-files budget.
//!   Tasks and clock reads live here and at the other IO edges (`net`'s
//!   socket readers, `health`'s checks, the control and metrics servers),
//!   never in `instance`, `election`, `conflict`, `store` or `health::Tracker`.
//! - [`keygen`]: `vipd keygen`, a fresh advert key written with mode 0600.
//! - [`manual`]: the man pages, from the clap definitions and the example config.
//! - [`import`]: `vipd import-keepalived`, keepalived.conf's VRRP parts as vipd's
//!   TOML and a report of what was left out.
//! - [`etcd`]: an etcd client over the v3 JSON gateway and the v2 keys API
//!   (HTTP/1.1 with hyper, TLS with rustls): leases, compare-and-write on a
//!   key, watches, and following a v2 key by long polls.
//! - [`metrics`]: the Prometheus families, the counters the daemon bumps, and
//!   the `GET /metrics` endpoint.
//!
//! The binary (`src/main.rs`, `src/cli.rs`) is the edge: clap, tracing set-up,
//! `anyhow` for errors, and the control commands' output.
//!
//! # The drive-loop contract
//!
//! For each state machine ([`instance::InstanceCore`], [`election::Election`],
//! [`conflict::ConflictWatch`]): after `handle_*` calls, the caller takes every
//! output (`poll_output`, `poll_action`, `poll_event`) until `None` and carries
//! them out in order before it waits; then it sleeps until `poll_timeout()` or
//! the next input. Outputs queue in the order they were decided, so several
//! `handle_*` calls of one wake-up may come before one drain. The core drains
//! the election and the watch inside each of its own `handle_*` calls.

pub mod config;
pub mod conflict;
pub mod control;
pub mod daemon;
pub mod election;
pub mod etcd;
pub mod health;
pub mod import;
pub mod instance;
pub mod keygen;
pub mod manual;
pub mod metrics;
pub mod net;
pub mod store;
pub mod vrrp;
pub mod wire;
