//! Who holds a VIP, sampled every millisecond: [`HolderSampler`] asks the
//! kernel of each node (a netlink address dump, no process per sample) whether
//! the VIP is on the node's `eth0` and whether `eth0` is up, and records each
//! round with its time; [`HolderReport`] reads a window of rounds: how many,
//! those in which two or more nodes held the VIP (and when), the longest
//! stretch in which none did, and when each node gained or lost it.
//!
//! One thread samples every node: it opens a netlink socket and an ioctl
//! socket in each node's namespace (a socket stays in the namespace it was
//! opened in), so one round reads every node within a fraction of a
//! millisecond and "two holders in one round" means two at once. A node whose
//! `eth0` is down does not hold the VIP, whatever its addresses: nobody on the
//! link can reach it (a node taken down with its addresses left in place).
//! Several VIPs (vipd's and vip-manager's) are sampled in the same rounds.

use std::net::IpAddr;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::libc;

use super::{
    new_socket, parse_addr_messages, spawn_when_ready, strip_prefix_len, wait_until, Host, Netns,
};

/// How often the sampler reads every node.
pub(crate) const HOLDER_SAMPLE_PERIOD: Duration = Duration::from_millis(1);

/// One round: when it was read and, per VIP, a bit per node (bit 0 = the
/// first node) holding it.
#[derive(Clone, Debug)]
struct Round {
    at: Instant,
    held: Vec<u32>,
}

/// A thread reading, every [`HOLDER_SAMPLE_PERIOD`], which nodes hold each
/// VIP. Nodes are numbered from 1 in the order given, like the lab's.
/// Stopped on drop.
pub(crate) struct HolderSampler {
    rounds: Arc<Mutex<Vec<Round>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<()>>>,
    vips: Vec<IpAddr>,
}

/// One node's sockets, opened in its namespace.
struct NodeSockets {
    netlink: OwnedFd,
    ioctl: OwnedFd,
    ifindex: u32,
}

impl HolderSampler {
    /// Starts sampling `vips` (with or without `/prefix`) on `nodes`' `eth0`;
    /// returns once the first round is recorded.
    pub(crate) fn start(nodes: &[&Host], vips: &[&str]) -> Result<Self> {
        let vips: Vec<IpAddr> = vips
            .iter()
            .map(|v| strip_prefix_len(v).parse().context("a VIP"))
            .collect::<Result<_>>()?;
        let names: Vec<String> = nodes.iter().map(|h| h.ns.name.clone()).collect();
        let rounds = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, v) = (Arc::clone(&rounds), Arc::clone(&stop), vips.clone());
        let handle = spawn_when_ready("holder sampler", move |ready| {
            let sockets = names
                .iter()
                .map(|ns| {
                    Netns::enter(ns).with_context(|| format!("enter {ns}"))?;
                    open_node_sockets().with_context(|| format!("sockets in {ns}"))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut buf = vec![0u8; 65536];
            let mut seq = 0u32;
            let mut next = Instant::now();
            let mut first = true;
            while !s.load(Ordering::Relaxed) {
                let at = Instant::now();
                let mut held = vec![0u32; v.len()];
                for (bit, node) in sockets.iter().enumerate() {
                    seq = seq.wrapping_add(1);
                    if !is_up(node)? {
                        continue;
                    }
                    let on_eth0 = addresses_on(node, seq, &mut buf)?;
                    for (k, vip) in v.iter().enumerate() {
                        if on_eth0.contains(vip) {
                            held[k] |= 1 << bit;
                        }
                    }
                }
                r.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Round { at, held });
                if first {
                    ready.send(Ok(())).ok();
                    first = false;
                }
                next += HOLDER_SAMPLE_PERIOD;
                let now = Instant::now();
                if next > now {
                    thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            Ok(())
        })?;
        Ok(Self {
            rounds,
            stop,
            handle: Some(handle),
            vips,
        })
    }

    fn rounds(&self) -> Vec<Round> {
        self.rounds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn vip_index(&self, vip: &str) -> usize {
        let want: IpAddr = strip_prefix_len(vip).parse().expect("an IP address");
        self.vips
            .iter()
            .position(|v| *v == want)
            .unwrap_or_else(|| panic!("{vip} is not sampled"))
    }

    /// The nodes (from 1) holding `vip` in the latest round.
    pub(crate) fn holders_now(&self, vip: &str) -> Vec<usize> {
        let k = self.vip_index(vip);
        let rounds = self.rounds.lock().unwrap_or_else(PoisonError::into_inner);
        rounds.last().map_or_else(Vec::new, |r| nodes_of(r.held[k]))
    }

    /// The first round at or after `after` in which `node` holds `vip`.
    pub(crate) fn first_held(&self, vip: &str, node: usize, after: Instant) -> Option<Instant> {
        let k = self.vip_index(vip);
        self.rounds()
            .into_iter()
            .find(|r| r.at >= after && r.held[k] & (1 << (node - 1)) != 0)
            .map(|r| r.at)
    }

    /// The first round at or after `after` in which nobody holds `vip`.
    pub(crate) fn first_unheld(&self, vip: &str, after: Instant) -> Option<Instant> {
        let k = self.vip_index(vip);
        self.rounds()
            .into_iter()
            .find(|r| r.at >= after && r.held[k] == 0)
            .map(|r| r.at)
    }

    /// Waits up to `timeout` until a round at or after `after` shows `node`
    /// alone holding `vip`, and returns that round's time.
    pub(crate) fn wait_sole(
        &self,
        vip: &str,
        node: usize,
        after: Instant,
        timeout: Duration,
    ) -> Instant {
        let k = self.vip_index(vip);
        let mut found = None;
        wait_until(
            &format!("n{node} alone holds {vip} (sampled)"),
            timeout,
            || {
                found = self
                    .rounds
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .rev()
                    .take_while(|r| r.at >= after)
                    .filter(|r| r.held[k] == 1 << (node - 1))
                    .last()
                    .map(|r| r.at);
                found.is_some()
            },
        );
        found.expect("found above")
    }

    /// What the rounds from `from` up to `to` saw of `vip`.
    pub(crate) fn report(&self, vip: &str, from: Instant, to: Instant) -> HolderReport {
        let k = self.vip_index(vip);
        let rounds: Vec<Round> = self
            .rounds()
            .into_iter()
            .filter(|r| r.at >= from && r.at < to)
            .collect();
        let mut report = HolderReport {
            from,
            samples: rounds.len(),
            two_holders: Vec::new(),
            longest_without_holder: Duration::ZERO,
            longest_without_holder_from: None,
            changes: Vec::new(),
        };
        let mut previous = rounds.first().map_or(0, |r| r.held[k]);
        // The last round with a holder; the window's start if it begins with none.
        let mut last_held = from;
        let mut in_gap = previous == 0;
        for r in &rounds {
            let held = r.held[k];
            if held.count_ones() >= 2 {
                report.two_holders.push((r.at, nodes_of(held)));
            }
            for node in nodes_of(held & !previous) {
                report.changes.push((r.at, node, true));
            }
            for node in nodes_of(previous & !held) {
                report.changes.push((r.at, node, false));
            }
            if held == 0 {
                in_gap = true;
            } else {
                if in_gap {
                    report.note_gap(last_held, r.at);
                    in_gap = false;
                }
                last_held = r.at;
            }
            previous = held;
        }
        if in_gap {
            let end = rounds.last().map_or(from, |r| r.at);
            report.note_gap(last_held, end);
        }
        report
    }
}

impl Drop for HolderSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What a window of a [`HolderSampler`]'s rounds saw of one VIP.
#[derive(Clone, Debug)]
pub(crate) struct HolderReport {
    /// The window's start, which the times printed count from.
    pub(crate) from: Instant,
    pub(crate) samples: usize,
    /// Rounds in which two or more nodes held the VIP: when, and which.
    pub(crate) two_holders: Vec<(Instant, Vec<usize>)>,
    /// The longest time between a round with a holder and the next one (or
    /// the window's bounds): how long nobody held it, within a millisecond.
    pub(crate) longest_without_holder: Duration,
    /// When that stretch began.
    pub(crate) longest_without_holder_from: Option<Instant>,
    /// Every gain (`true`) or loss of the VIP by a node (from 1), in order.
    pub(crate) changes: Vec<(Instant, usize, bool)>,
}

impl HolderReport {
    fn note_gap(&mut self, start: Instant, end: Instant) {
        let gap = end.saturating_duration_since(start);
        if gap > self.longest_without_holder {
            self.longest_without_holder = gap;
            self.longest_without_holder_from = Some(start);
        }
    }

    /// Milliseconds from the window's start to `t`.
    pub(crate) fn offset_ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.from).as_secs_f64() * 1e3
    }

    /// When `node` first gained the VIP in the window.
    pub(crate) fn gained(&self, node: usize) -> Option<Instant> {
        self.changes
            .iter()
            .find(|c| c.1 == node && c.2)
            .map(|c| c.0)
    }

    /// When `node` last lost the VIP in the window.
    pub(crate) fn lost(&self, node: usize) -> Option<Instant> {
        self.changes
            .iter()
            .rev()
            .find(|c| c.1 == node && !c.2)
            .map(|c| c.0)
    }

    /// One line: samples, two-holder samples (the first few, as offsets),
    /// the longest stretch without a holder, each gain and loss.
    pub(crate) fn describe(&self) -> String {
        let two: Vec<String> = self
            .two_holders
            .iter()
            .take(5)
            .map(|(t, n)| format!("+{:.1} ms {n:?}", self.offset_ms(*t)))
            .collect();
        let changes: Vec<String> = self
            .changes
            .iter()
            .map(|(t, n, gained)| {
                format!(
                    "n{n} {} +{:.1} ms",
                    if *gained { "gained" } else { "lost" },
                    self.offset_ms(*t)
                )
            })
            .collect();
        format!(
            "{} samples, {} with two holders{}; longest without a holder {:.1} ms{}; {}",
            self.samples,
            self.two_holders.len(),
            if two.is_empty() {
                String::new()
            } else {
                format!(" (first: {})", two.join(", "))
            },
            self.longest_without_holder.as_secs_f64() * 1e3,
            self.longest_without_holder_from
                .map(|t| format!(" from +{:.1} ms", self.offset_ms(t)))
                .unwrap_or_default(),
            if changes.is_empty() {
                "no change".to_owned()
            } else {
                changes.join(", ")
            }
        )
    }
}

/// The nodes (from 1) whose bits are set.
fn nodes_of(bits: u32) -> Vec<usize> {
    (0..32)
        .filter(|b| bits & (1 << b) != 0)
        .map(|b| b + 1)
        .collect()
}

/// A netlink socket, an ioctl socket and `eth0`'s index in the calling
/// thread's namespace.
fn open_node_sockets() -> Result<NodeSockets> {
    let netlink = new_socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: a valid timeval of the size given; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            netlink.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        )
    };
    if rc < 0 {
        bail!("SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    }
    let ioctl = new_socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let ifindex = nix::net::if_::if_nametoindex("eth0").context("eth0")?;
    Ok(NodeSockets {
        netlink,
        ioctl,
        ifindex,
    })
}

/// Whether the node's `eth0` is up (SIOCGIFFLAGS).
fn is_up(node: &NodeSockets) -> Result<bool> {
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"eth0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: a valid ifreq for SIOCGIFFLAGS, which fills its flags.
    let rc = unsafe { libc::ioctl(node.ioctl.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) };
    if rc < 0 {
        // eth0 gone (a test deleted it): down.
        return Ok(false);
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    Ok(flags & libc::IFF_UP as libc::c_short != 0)
}

/// The addresses on the node's `eth0`: an RTM_GETADDR dump.
fn addresses_on(node: &NodeSockets, seq: u32, buf: &mut [u8]) -> Result<Vec<IpAddr>> {
    const HEADER: usize = 16;
    const LEN: usize = HEADER + 8;
    let mut request = [0u8; LEN];
    request[0..4].copy_from_slice(&(LEN as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&libc::RTM_GETADDR.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    request[6..8].copy_from_slice(&flags.to_ne_bytes());
    request[8..12].copy_from_slice(&seq.to_ne_bytes());
    // ifaddrmsg: family AF_UNSPEC (every family), the rest zero.
    // SAFETY: the request buffer is ours and sized.
    let sent = unsafe {
        libc::send(
            node.netlink.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
        )
    };
    if sent < 0 {
        bail!("netlink send: {}", std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    loop {
        // SAFETY: the buffer is ours and sized.
        let n = unsafe {
            libc::recv(
                node.netlink.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
            )
        };
        if n < 0 {
            bail!("netlink recv: {}", std::io::Error::last_os_error());
        }
        let part = &buf[..n as usize];
        out.extend(
            parse_addr_messages(part, 0)
                .into_iter()
                .filter(|e| e.added && e.ifindex == node.ifindex)
                .map(|e| e.addr),
        );
        if dump_ends_in(part, seq) {
            return Ok(out);
        }
    }
}

/// Whether this part of a dump answering `seq` holds its end (NLMSG_DONE,
/// or an error). Parts of earlier dumps (a reply that timed out) are skipped.
fn dump_ends_in(mut part: &[u8], seq: u32) -> bool {
    const HEADER: usize = 16;
    while part.len() >= HEADER {
        let len = u32::from_ne_bytes([part[0], part[1], part[2], part[3]]) as usize;
        let kind = u16::from_ne_bytes([part[4], part[5]]);
        let msg_seq = u32::from_ne_bytes([part[8], part[9], part[10], part[11]]);
        if len < HEADER || len > part.len() {
            return false;
        }
        if msg_seq == seq && (kind == libc::NLMSG_DONE as u16 || kind == libc::NLMSG_ERROR as u16) {
            return true;
        }
        let next = (len + 3) & !3;
        if next >= part.len() {
            return false;
        }
        part = &part[next..];
    }
    false
}
