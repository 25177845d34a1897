//! What a client sees of the VIP: [`Prober`], a `ping` flood counting the probes a
//! handover loses, and [`ArpProber`], a thread in the client's namespace that asks
//! who has the VIP every millisecond (ARP over AF_PACKET) and records, with
//! timestamps, every probe, every reply and the MAC that sent it, every advert and
//! every gratuitous ARP on the link. The tests use the first; the bench times
//! failover with the second, and `tests/clients.rs` reads the second's log as a
//! client that follows gratuitous ARPs would ([`ProbeLog::following`]). Both only
//! send from and read in the client's namespace.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::libc;

use super::{
    check_interrupted, fmt_mac, sleep_checked, strip_prefix_len, utc_time_of_day, Host, Netns,
};

// ---------------------------------------------------------------------------
// ping
// ---------------------------------------------------------------------------

/// A `ping` flood from a host at a fixed interval, for counting the probes a
/// handover loses. Started with [`Prober::start`], read with [`Prober::finish`].
pub(crate) struct Prober {
    child: Child,
    count: u32,
    interval: Duration,
    started: Instant,
}

/// What a [`Prober`] saw.
#[derive(Clone, Debug)]
pub(crate) struct ProbeResult {
    pub(crate) sent: u32,
    pub(crate) received: u32,
    /// Sequence numbers (1-based) without any reply.
    pub(crate) lost: Vec<u32>,
    /// The summary line ping printed, for the log.
    pub(crate) summary: String,
    /// Reply time (Unix seconds, from `ping -D`) of each sequence number answered.
    pub(crate) replies: BTreeMap<u32, f64>,
}

impl ProbeResult {
    /// The lost sequence numbers as ranges with their offset from the start,
    /// e.g. `seq 512-513 (~1022 ms)`.
    pub(crate) fn describe_lost(&self, interval: Duration) -> String {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.lost.len() {
            let first = self.lost[i];
            let mut last = first;
            while i + 1 < self.lost.len() && self.lost[i + 1] == last + 1 {
                i += 1;
                last = self.lost[i];
            }
            let at = interval * (first - 1);
            // The last reply before the gap, as a UTC time of day to set beside
            // the daemons' logs.
            let before = self
                .replies
                .range(..first)
                .next_back()
                .map_or_else(|| "-".to_owned(), |(_, t)| utc_time_of_day(*t));
            let seqs = if first == last {
                format!("seq {first}")
            } else {
                format!("seq {first}-{last}")
            };
            out.push(format!(
                "{seqs} (~{} ms in; last reply before it at {before} UTC)",
                at.as_millis()
            ));
            i += 1;
        }
        if out.is_empty() {
            "none".to_owned()
        } else {
            out.join(", ")
        }
    }
}

impl Prober {
    /// Starts `ping -c COUNT -i INTERVAL -W 1 ADDR` in `host`'s namespace (root may
    /// use intervals down to 2 ms and below). It runs `count × interval` and ends
    /// on its own.
    pub(crate) fn start(host: &Host, addr: &str, interval: Duration, count: u32) -> Self {
        let addr = strip_prefix_len(addr);
        let family = if addr.contains(':') { "-6" } else { "-4" };
        let interval_s = format!("{:.3}", interval.as_secs_f64());
        let count_s = count.to_string();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &host.ns.name,
                "ping",
                family,
                "-n",
                "-D",
                "-i",
                &interval_s,
                "-W",
                "1",
                "-c",
                &count_s,
                addr,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ping");
        Self {
            child,
            count,
            interval,
            started: Instant::now(),
        }
    }

    /// Time since the prober started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for ping to end and counts the probes without a reply.
    pub(crate) fn finish(self) -> ProbeResult {
        let out = self.child.wait_with_output().expect("wait for ping");
        let text = String::from_utf8_lossy(&out.stdout);
        // `[1700000000.123456] 64 bytes from 10.0.0.200: icmp_seq=7 ttl=64 time=0.05 ms`
        let mut seen = BTreeMap::new();
        for line in text.lines() {
            if !line.contains("bytes from") {
                continue;
            }
            let Some(rest) = line.split("icmp_seq=").nth(1) else {
                continue;
            };
            let Ok(seq) = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or("")
                .parse::<u32>()
            else {
                continue;
            };
            let at = line
                .strip_prefix('[')
                .and_then(|l| l.split(']').next())
                .and_then(|t| t.parse::<f64>().ok())
                .unwrap_or(0.0);
            seen.entry(seq).or_insert(at);
        }
        let summary = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or("")
            .to_owned();
        let sent = summary
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(self.count);
        assert!(
            !summary.is_empty(),
            "ping printed no summary ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        let lost: Vec<u32> = (1..=sent).filter(|s| !seen.contains_key(s)).collect();
        ProbeResult {
            sent,
            received: seen.len() as u32,
            lost,
            summary,
            replies: seen,
        }
    }
}

// ---------------------------------------------------------------------------
// ARP every millisecond
// ---------------------------------------------------------------------------

/// How often [`ArpProber`] asks.
pub(crate) const ARP_PROBE_PERIOD: Duration = Duration::from_millis(1);

/// The UDP port of vipd's adverts, to recognise them on the link.
const VIPD_ADVERT_PORT: u16 = 5880;

/// How late an ARP reply may arrive and still answer an earlier probe than the
/// last one sent (see [`ProbeLog::answered_by`]): a few probe periods, far below
/// any loss a handover could cause.
const REPLY_LATE_BY: Duration = Duration::from_millis(5);

/// Everything an [`ArpProber`] recorded, in arrival order.
#[derive(Clone, Default)]
pub(crate) struct ProbeLog {
    /// Send time of each ARP request.
    pub(crate) probes: Vec<Instant>,
    /// ARP replies to the client for the VIP: arrival, sender MAC.
    pub(crate) replies: Vec<(Instant, [u8; 6])>,
    /// Adverts (VRRP, or UDP to vipd's port, to a multicast group): arrival,
    /// source MAC.
    pub(crate) adverts: Vec<(Instant, [u8; 6])>,
    /// Gratuitous ARPs: arrival, sender MAC, address.
    pub(crate) garps: Vec<(Instant, [u8; 6], Ipv4Addr)>,
}

/// What the probes sent in a window saw: see [`ProbeLog::window`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ProbeWindow {
    /// Probes without a reply before the next probe was sent.
    pub(crate) lost: usize,
    /// The longest time between two replies (from 5 ms before the window), in ms.
    pub(crate) longest_gap_ms: f64,
    /// Probes answered by two different MACs.
    pub(crate) answered_by_two: usize,
}

impl ProbeLog {
    /// The MACs that answered each probe, in the order of `probes`. ARP replies
    /// carry no sequence number: a reply answers the last probe sent before it
    /// arrived, or, when that MAC already answered that one, the latest probe
    /// sent at most [`REPLY_LATE_BY`] earlier that it has not answered. So a
    /// reply overtaken by the next probe (a busy responder, or the client's
    /// thread woken late) still answers its own probe, as it would for a client
    /// waiting on it, and a MAC that starts answering is not credited with
    /// probes sent before it did.
    pub(crate) fn answered_by(&self) -> Vec<Vec<[u8; 6]>> {
        let mut macs: Vec<Vec<[u8; 6]>> = vec![Vec::new(); self.probes.len()];
        for &(t, mac) in &self.replies {
            let idx = self.probes.partition_point(|&s| s <= t);
            if idx == 0 {
                continue;
            }
            let oldest_in_time = self.probes.partition_point(|&s| s + REPLY_LATE_BY < t);
            let probe = (oldest_in_time..idx)
                .rev()
                .find(|&p| !macs[p].contains(&mac))
                .unwrap_or(idx - 1);
            if !macs[probe].contains(&mac) {
                macs[probe].push(mac);
            }
        }
        macs
    }

    /// Probes lost, the longest gap between answers, and probes answered by two
    /// MACs, over the probes sent in `[from, to)`, with replies matched to probes
    /// as [`ProbeLog::answered_by`] does.
    pub(crate) fn window(&self, from: Instant, to: Instant) -> ProbeWindow {
        let first = self.probes.partition_point(|&s| s < from);
        let last = self.probes.partition_point(|&s| s < to);
        let answered = self.answered_by();
        let macs = &answered[first..last.max(first)];
        let lookback = from.checked_sub(Duration::from_millis(5)).unwrap_or(from);
        let times: Vec<Instant> = self
            .replies
            .iter()
            .map(|r| r.0)
            .filter(|&t| t >= lookback && t < to)
            .collect();
        let longest_gap_ms = if times.is_empty() {
            (to - from).as_secs_f64() * 1e3
        } else {
            times
                .windows(2)
                .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
                .fold(0.0, f64::max)
        };
        ProbeWindow {
            lost: macs.iter().filter(|m| m.is_empty()).count(),
            longest_gap_ms,
            answered_by_two: macs.iter().filter(|m| m.len() > 1).count(),
        }
    }
}

/// What a client that follows gratuitous ARPs saw over a window: see
/// [`ProbeLog::following`].
#[derive(Clone, Debug)]
pub(crate) struct FollowWindow {
    /// Probes sent in the window that the MAC the client followed did not answer.
    pub(crate) lost: usize,
    /// The longest time without an answer from the followed MAC, in ms; the
    /// window's bounds count as answers, so an outage running to the end shows.
    pub(crate) longest_gap_ms: f64,
    /// When that longest gap began.
    pub(crate) longest_gap_from: Instant,
    /// The MAC followed at the end of the window.
    pub(crate) followed_at_end: [u8; 6],
}

impl ProbeLog {
    /// The gratuitous ARPs for `vip`, in arrival order: (arrival, sender MAC).
    pub(crate) fn garps_for(&self, vip: Ipv4Addr) -> Vec<(Instant, [u8; 6])> {
        self.garps
            .iter()
            .filter(|g| g.2 == vip)
            .map(|g| (g.0, g.1))
            .collect()
    }

    /// The MAC a client following gratuitous ARPs for `vip` sends to at `t`:
    /// the sender of the last one that arrived before `t`, else `initial`.
    pub(crate) fn followed_mac(&self, vip: Ipv4Addr, initial: [u8; 6], t: Instant) -> [u8; 6] {
        self.garps
            .iter()
            .rfind(|g| g.2 == vip && g.0 < t)
            .map_or(initial, |g| g.1)
    }

    /// The probes sent in `[from, to)` as a client on the link would see them if,
    /// like a host's neighbour cache, it sent to the MAC of the last gratuitous
    /// ARP it saw for `vip` (`initial` before any) and asked nobody while it had
    /// that entry: a probe counts as answered only if that MAC answered it. The
    /// client never re-resolves on its own (the lab's client keeps entries for an
    /// hour; a real one would need seconds to notice), so a client left on a MAC
    /// that no longer holds the VIP stays lost until the next gratuitous ARP:
    /// what the rule "Clients follow the master" is there to prevent.
    pub(crate) fn following(
        &self,
        vip: Ipv4Addr,
        initial: [u8; 6],
        from: Instant,
        to: Instant,
    ) -> FollowWindow {
        let garps = self.garps_for(vip);
        let followed_at = |t: Instant| {
            let n = garps.partition_point(|g| g.0 < t);
            if n == 0 {
                initial
            } else {
                garps[n - 1].1
            }
        };
        let first = self.probes.partition_point(|&s| s < from);
        let last = self.probes.partition_point(|&s| s < to);
        let answered: Vec<bool> = self.answered_by()[first..last.max(first)]
            .iter()
            .zip(&self.probes[first..last.max(first)])
            .map(|(macs, &sent)| macs.contains(&followed_at(sent)))
            .collect();
        let mut answers = vec![from];
        for &(t, mac) in &self.replies {
            if t >= from && t < to && mac == followed_at(t) {
                answers.push(t);
            }
        }
        answers.push(to);
        let (longest_gap_ms, longest_gap_from) = answers
            .windows(2)
            .map(|w| ((w[1] - w[0]).as_secs_f64() * 1e3, w[0]))
            .fold(
                (0.0, from),
                |best, gap| if gap.0 > best.0 { gap } else { best },
            );
        FollowWindow {
            lost: answered.iter().filter(|a| !**a).count(),
            longest_gap_ms,
            longest_gap_from,
            followed_at_end: followed_at(to),
        }
    }

    /// The periods within `[from, to)` when a client following gratuitous ARPs
    /// for `vip` (see [`ProbeLog::following`]) was not on `home`: when it left,
    /// and when it came back (`None`: still away at `to`).
    pub(crate) fn away_from(
        &self,
        vip: Ipv4Addr,
        initial: [u8; 6],
        home: [u8; 6],
        from: Instant,
        to: Instant,
    ) -> Vec<(Instant, Option<Instant>)> {
        let mut away = Vec::new();
        let mut left = (self.followed_mac(vip, initial, from) != home).then_some(from);
        for (t, mac) in self.garps_for(vip) {
            if t < from || t >= to {
                continue;
            }
            match (left, mac == home) {
                (None, false) => left = Some(t),
                (Some(l), true) => {
                    away.push((l, Some(t)));
                    left = None;
                }
                _ => {}
            }
        }
        if let Some(l) = left {
            away.push((l, None));
        }
        away
    }

    /// The distinct MACs that answered probes arriving in `[from, to)`.
    pub(crate) fn macs_answering(&self, from: Instant, to: Instant) -> Vec<[u8; 6]> {
        let mut macs: Vec<[u8; 6]> = self
            .replies
            .iter()
            .filter(|r| r.0 >= from && r.0 < to)
            .map(|r| r.1)
            .collect();
        macs.sort_unstable();
        macs.dedup();
        macs
    }
}

/// A thread in the client's namespace that sends an ARP request for the VIP every
/// [`ARP_PROBE_PERIOD`] over AF_PACKET and records what comes back in a
/// [`ProbeLog`]. Stopped (and joined) on drop.
pub(crate) struct ArpProber {
    log: Arc<Mutex<ProbeLog>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Result<()>>>,
}

impl ArpProber {
    /// Starts probing for `vip` from `client`'s `eth0`; returns once the socket is
    /// bound.
    pub(crate) fn start(client: &Host, vip: Ipv4Addr) -> Result<Self> {
        let me = Asker {
            netns: client.ns.name.clone(),
            mac: client.mac_bytes(),
            ip: client
                .v4
                .parse()
                .with_context(|| format!("client address {}", client.v4))?,
            vip,
        };
        let log = Arc::new(Mutex::new(ProbeLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_log, thread_stop) = (log.clone(), stop.clone());
        let handle = spawn_when_ready("ARP prober", move |ready| {
            probe_loop(&me, &thread_log, &thread_stop, ready)
        })?;
        Ok(Self {
            log,
            stop,
            handle: Some(handle),
        })
    }

    /// The log, also if a thread panicked holding it (it holds plain data).
    fn lock(&self) -> MutexGuard<'_, ProbeLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets everything recorded so far.
    pub(crate) fn clear(&self) {
        *self.lock() = ProbeLog::default();
    }

    /// A copy of everything recorded so far.
    pub(crate) fn snapshot(&self) -> ProbeLog {
        self.lock().clone()
    }

    /// The first reply from `mac` at or after `after`, waiting until `timeout`.
    pub(crate) fn wait_reply(
        &self,
        mac: [u8; 6],
        after: Instant,
        timeout: Duration,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        let mut from = 0;
        loop {
            check_interrupted();
            {
                let log = self.lock();
                if let Some(&(t, _)) = log.replies[from.min(log.replies.len())..]
                    .iter()
                    .find(|(t, m)| *t >= after && *m == mac)
                {
                    return Ok(t);
                }
                from = log.replies.len();
            }
            if Instant::now() > deadline {
                bail!("no ARP reply from {} within {timeout:?}", fmt_mac(&mac));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Starts probing for `vip` (`ADDRESS/PLEN` as configured) from `client`
    /// and waits until the client steadily sees `mac` (300 ms of it alone;
    /// 10 s at most): the start of every test that watches a handover.
    pub(crate) fn start_seeing(client: &Host, vip: &str, mac: [u8; 6]) -> Self {
        let vip: Ipv4Addr = strip_prefix_len(vip).parse().expect("an IPv4 VIP");
        let prober = Self::start(client, vip).expect("start the ARP prober");
        prober
            .wait_stable(mac, Duration::from_millis(300), Duration::from_secs(10))
            .expect("the client sees the master");
        prober
    }

    /// Waits until, for the last `quiet`, `mac` alone answered and it answered
    /// at least half the probes.
    pub(crate) fn wait_stable(
        &self,
        mac: [u8; 6],
        quiet: Duration,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let half_the_probes = quiet.as_secs_f64() / ARP_PROBE_PERIOD.as_secs_f64() / 2.0;
        loop {
            sleep_checked(Duration::from_millis(20));
            let now = Instant::now();
            {
                let log = self.lock();
                let recent: Vec<_> = log
                    .replies
                    .iter()
                    .rev()
                    .take_while(|(t, _)| now.duration_since(*t) < quiet)
                    .collect();
                let since_start = log
                    .probes
                    .first()
                    .is_some_and(|t| now.duration_since(*t) >= quiet);
                if since_start
                    && recent.len() as f64 > half_the_probes
                    && recent.iter().all(|(_, m)| *m == mac)
                {
                    return Ok(());
                }
            }
            if now > deadline {
                bail!(
                    "{} did not answer alone for {quiet:?} within {timeout:?}",
                    fmt_mac(&mac)
                );
            }
        }
    }
}

impl Drop for ArpProber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What a watcher thread calls once its sockets are open: see [`spawn_when_ready`].
pub(crate) type Ready = std::sync::mpsc::Sender<std::result::Result<(), String>>;

/// Runs `body` (a prober or monitor loop) on a new thread and returns once it
/// has called `ready.send(Ok(()))`, or its error if it returned one first, or an
/// error after 5 s. `what` names it in errors.
pub(crate) fn spawn_when_ready(
    what: &str,
    body: impl FnOnce(&Ready) -> Result<()> + Send + 'static,
) -> Result<thread::JoinHandle<Result<()>>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = thread::spawn(move || {
        let r = body(&ready_tx);
        // Only read if it failed before it was ready: then it is the reason.
        let _ = ready_tx.send(r.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
        r
    });
    match ready_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => bail!("{what}: {e}"),
        Err(_) => bail!("{what} did not start within 5 s"),
    }
}

/// Who asks, and for what.
struct Asker {
    netns: String,
    mac: [u8; 6],
    ip: Ipv4Addr,
    vip: Ipv4Addr,
}

fn probe_loop(me: &Asker, log: &Mutex<ProbeLog>, stop: &AtomicBool, ready: &Ready) -> Result<()> {
    let lock = || log.lock().unwrap_or_else(PoisonError::into_inner);
    Netns::enter(&me.netns).with_context(|| format!("enter {}", me.netns))?;
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the descriptor is owned by `fd` below.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    if raw < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let ifindex = nix::net::if_::if_nametoindex("eth0")?;
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: a valid sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc < 0 {
        bail!("bind AF_PACKET: {}", std::io::Error::last_os_error());
    }
    ready.send(Ok(())).ok();

    // Who has VIP? Tell CLIENT_IP (broadcast).
    let mut frame = [0u8; 60];
    frame[0..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&me.mac);
    frame[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame[22..28].copy_from_slice(&me.mac);
    frame[28..32].copy_from_slice(&me.ip.octets());
    frame[38..42].copy_from_slice(&me.vip.octets());
    let client_ip = me.ip.octets();
    let vip = me.vip.octets();
    let mut buf = [0u8; 2048];
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = next.saturating_duration_since(now);
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a valid timespec, no signal mask.
        unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        // Read everything first, so a late wake-up does not credit a reply to the
        // next probe.
        loop {
            // SAFETY: zeroed sockaddr_ll is valid; buffers are ours and sized.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as u32;
            let n = unsafe {
                libc::recvfrom(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n <= 0 {
                break;
            }
            let t = Instant::now();
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let p = &buf[..n as usize];
            if p.len() < 42 {
                continue;
            }
            let src = mac_at(p, 6);
            match u16::from_be_bytes([p[12], p[13]]) {
                0x0806 => {
                    let op = u16::from_be_bytes([p[20], p[21]]);
                    let sha = mac_at(p, 22);
                    let spa = [p[28], p[29], p[30], p[31]];
                    let tpa = [p[38], p[39], p[40], p[41]];
                    if op == 2 && tpa == client_ip && spa == vip {
                        lock().replies.push((t, sha));
                    } else if spa == tpa && sha != me.mac {
                        lock().garps.push((t, sha, Ipv4Addr::from(spa)));
                    }
                }
                0x0800 => {
                    let ihl = usize::from(p[14] & 0x0f) * 4;
                    let proto = p[23];
                    let is_mcast = (224..=239).contains(&p[30]);
                    let to_vipd_port = proto == 17
                        && p.len() >= 14 + ihl + 4
                        && u16::from_be_bytes([p[14 + ihl + 2], p[14 + ihl + 3]])
                            == VIPD_ADVERT_PORT;
                    if is_mcast && (proto == 112 || to_vipd_port) {
                        lock().adverts.push((t, src));
                    }
                }
                _ => {}
            }
        }
        let now = Instant::now();
        if now >= next {
            // SAFETY: the frame buffer is valid for its length.
            let sent = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if sent == frame.len() as isize {
                lock().probes.push(Instant::now());
            }
            next += ARP_PROBE_PERIOD;
            if next < now {
                // Late (descheduled): carry on from now rather than send a burst.
                next = now + ARP_PROBE_PERIOD;
            }
        }
    }
    Ok(())
}

/// The six bytes at `at` as a MAC; the caller has checked `p.len() >= at + 6`.
fn mac_at(p: &[u8], at: usize) -> [u8; 6] {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&p[at..at + 6]);
    mac
}
