//! The lab's network: [`Lab`], a bridge in a switch namespace with nodes and a
//! client, each a [`Host`] (a namespace with `eth0` on the bridge), and what a test
//! asks of a host (its addresses, MAC, neighbour entries, one-shot ARP and ping).
//! It builds and reads the lab's namespaces only; daemons are [`super::Daemon`]'s.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use super::{parse_mac, strip_prefix_len, sweep_stale_namespaces, Netns, NETNS_PREFIX};

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// One host of a lab: its namespace, with `eth0` on the lab's bridge.
pub(crate) struct Host {
    /// Short role name: `n1`, `n2`, ... or `client`.
    pub(crate) role: String,
    pub(crate) ns: Netns,
    /// Its own IPv4 address on `eth0` (no prefix).
    pub(crate) v4: String,
    /// Its own IPv6 address on `eth0` (no prefix).
    pub(crate) v6: String,
}

/// A neighbour-table entry as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Neigh {
    pub(crate) mac: Option<String>,
    pub(crate) state: Vec<String>,
}

impl Host {
    /// The MAC address of `eth0`.
    pub(crate) fn mac(&self) -> String {
        let json = self.ns.ip(&["-j", "link", "show", "dev", "eth0"]);
        let value: serde_json::Value = serde_json::from_str(&json).expect("ip -j link");
        value[0]["address"]
            .as_str()
            .expect("eth0 has a MAC address")
            .to_owned()
    }

    /// The MAC address of `eth0` as bytes.
    pub(crate) fn mac_bytes(&self) -> [u8; 6] {
        let mac = self.mac();
        parse_mac(&mac).unwrap_or_else(|| panic!("ip printed a MAC we cannot read: {mac}"))
    }

    /// The addresses on `eth0` (without prefix length).
    pub(crate) fn addresses(&self) -> Vec<String> {
        let out = self.ns.ip_output(&["-j", "addr", "show", "dev", "eth0"]);
        let value: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        value[0]["addr_info"]
            .as_array()
            .map(|addrs| {
                addrs
                    .iter()
                    .filter_map(|a| a["local"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `eth0` carries `vip` (an address, with or without `/prefix`).
    pub(crate) fn holds(&self, vip: &str) -> bool {
        let want: IpAddr = strip_prefix_len(vip).parse().expect("an IP address");
        self.addresses()
            .iter()
            .any(|a| a.parse::<IpAddr>().ok() == Some(want))
    }

    /// `ip addr show dev eth0` as text, for messages.
    pub(crate) fn addr_text(&self) -> String {
        String::from_utf8_lossy(&self.ns.ip_output(&["addr", "show", "dev", "eth0"]).stdout)
            .into_owned()
    }

    /// Sets `eth0` up or down (`ip link set eth0 up|down`).
    pub(crate) fn link(&self, up: bool) {
        self.ns
            .ip(&["link", "set", "eth0", if up { "up" } else { "down" }]);
    }

    /// Asks who has `vip` with one ARP request (`arping -c 1 -w 1 -i eth0`), and
    /// returns the MAC that answered, if any. The first answer is taken.
    pub(crate) fn mac_for(&self, vip: &str) -> Option<String> {
        let addr = strip_prefix_len(vip);
        let out = self
            .ns
            .exec_output(&["arping", "-r", "-c", "1", "-w", "1", "-i", "eth0", addr]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_lowercase)
    }

    /// Asks who has `vip` with `count` ARP requests and returns every distinct MAC
    /// that answered: more than one means two nodes hold the VIP.
    pub(crate) fn macs_answering(&self, vip: &str, count: u32) -> Vec<String> {
        let addr = strip_prefix_len(vip);
        let (count, wait) = (count.to_string(), (count + 1).to_string());
        let out = self.ns.exec_output(&[
            "arping", "-r", "-c", &count, "-w", &wait, "-i", "eth0", addr,
        ]);
        let mut macs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_lowercase())
            .filter(|l| !l.is_empty())
            .collect();
        macs.sort();
        macs.dedup();
        macs
    }

    /// Sends one ping to `addr` (IPv4 or IPv6), which resolves its neighbour entry.
    pub(crate) fn ping(&self, addr: &str) -> bool {
        let addr = strip_prefix_len(addr);
        let family = if addr.contains(':') { "-6" } else { "-4" };
        self.ns
            .exec_output(&["ping", family, "-c", "1", "-W", "1", addr])
            .status
            .success()
    }

    /// The neighbour entry for `addr` on `eth0` (`ip neigh show ADDR dev eth0`):
    /// its MAC and NUD state, or `None` if there is no entry.
    pub(crate) fn neigh_entry(&self, addr: &str) -> Option<Neigh> {
        let addr = strip_prefix_len(addr);
        let out = self
            .ns
            .ip_output(&["-j", "neigh", "show", addr, "dev", "eth0"]);
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let entry = value.as_array()?.first()?;
        Some(Neigh {
            mac: entry["lladdr"].as_str().map(str::to_lowercase),
            state: entry["state"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The MAC in the neighbour entry for `addr`, if there is one with a MAC.
    pub(crate) fn neigh_mac(&self, addr: &str) -> Option<String> {
        self.neigh_entry(addr).and_then(|n| n.mac)
    }
}

/// A switch namespace with a bridge, N node namespaces and one client namespace,
/// each on the bridge through a veth pair (`eth0` inside the host).
///
/// Addresses: IPv4 `10.P.L.0/24` and IPv6 `fd00:P:L+1::/64`, where P comes from the
/// process id and L counts labs in this process: node i (1-based) is `.i` / `::i`,
/// the client is `.100` / `::100`, and [`Lab::vip4`] / [`Lab::vip6`] hand out
/// `.200+` / `::200+`. IPv6 DAD is off on the lab links, so addresses are usable at
/// once. The client never expires a neighbour entry on its own (`base_reachable_time`
/// is an hour), so a change in its entry shows the GARP / NA, not a new lookup.
pub(crate) struct Lab {
    // Field order is drop order: hosts first, then the switch.
    pub(crate) nodes: Vec<Host>,
    pub(crate) client: Host,
    pub(crate) switch: Netns,
    pub(crate) tag: String,
    v4_net: String,
    v4_prefix_len: u8,
    v6_net: String,
}

impl Lab {
    /// Builds a lab of `nodes` nodes and a client. `tag` names the test in the
    /// namespace names (keep it short, e.g. `kill9`).
    pub(crate) fn new(tag: &str, nodes: usize) -> Self {
        Self::build(tag, nodes, None)
    }

    /// A lab whose hosts take their IPv4 addresses from `net` (three octets, e.g.
    /// `10.251.0`) with prefix length `prefix_len`: node i is `net.i`, the client
    /// `net.100`. The bench uses `10.251.0` with `/16`, for VIPs beyond one /24.
    pub(crate) fn with_ipv4(tag: &str, nodes: usize, net: &str, prefix_len: u8) -> Self {
        Self::build(tag, nodes, Some((net.to_owned(), prefix_len)))
    }

    fn build(tag: &str, nodes: usize, ipv4: Option<(String, u8)>) -> Self {
        assert!(
            !tag.contains('-'),
            "a lab tag may not contain '-' (the sweep splits names on it): {tag}"
        );
        SWEEP.call_once(sweep_stale_namespaces);
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{NETNS_PREFIX}-{tag}-{pid}-{n}");
        let p = pid % 200 + 20;
        let l = n % 250;
        let (v4_net, v4_prefix_len) = ipv4.unwrap_or_else(|| (format!("10.{p}.{l}"), 24));
        // Written the way `ip` prints it (`fd00:1f:0::` would print as `fd00:1f::`).
        let v6_net = format!("fd00:{p:x}:{:x}", l + 1);

        let switch = Netns::new(format!("{prefix}-sw"));
        switch.ip_batch(
            "link add br0 type bridge mcast_snooping 0 forward_delay 0\nlink set br0 up\nlink set lo up\n",
        );
        let make_host = |role: &str, index: usize, host_part: u32| -> Host {
            let ns = Netns::new(format!("{prefix}-{role}"));
            ns.sysctl(&[
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ]);
            let host = Host {
                role: role.to_owned(),
                ns,
                v4: format!("{v4_net}.{host_part}"),
                v6: format!("{v6_net}::{host_part:x}"),
            };
            plug_eth0(&switch, &format!("p{index}"), &host, v4_prefix_len);
            host
        };
        let hosts: Vec<Host> = (1..=nodes)
            .map(|i| make_host(&format!("n{i}"), i, i as u32))
            .collect();
        let client = make_host("client", 0, 100);
        client.ns.sysctl(&[
            "net.ipv4.neigh.eth0.base_reachable_time_ms=3600000",
            "net.ipv6.neigh.eth0.base_reachable_time_ms=3600000",
            "net.ipv4.neigh.eth0.gc_stale_time=3600",
            "net.ipv6.neigh.eth0.gc_stale_time=3600",
        ]);
        Self {
            nodes: hosts,
            client,
            switch,
            tag: tag.to_owned(),
            v4_net,
            v4_prefix_len,
            v6_net,
        }
    }

    /// Node `i`, 1-based like the node names (`n1`, `n2`, ...).
    pub(crate) fn node(&self, i: usize) -> &Host {
        &self.nodes[i - 1]
    }

    /// The `k`-th IPv4 VIP of this lab (k from 0), as `ADDRESS/24` (the hosts'
    /// prefix length).
    pub(crate) fn vip4(&self, k: u32) -> String {
        format!("{}.{}/{}", self.v4_net, 200 + k, self.v4_prefix_len)
    }

    /// The `k`-th IPv6 VIP of this lab (k from 0), as `ADDRESS/64`.
    pub(crate) fn vip6(&self, k: u32) -> String {
        format!("{}::{:x}/64", self.v6_net, 0x200 + k)
    }

    /// Node `i`'s `eth0` made again the way the lab first made it, after a
    /// test deleted it: a new veth pair on switch port `p{i}` (so a new
    /// ifindex), the same addresses.
    pub(crate) fn replug_node(&self, i: usize) {
        plug_eth0(
            &self.switch,
            &format!("p{i}"),
            self.node(i),
            self.v4_prefix_len,
        );
    }

    /// Which nodes (1-based) hold `vip` right now.
    pub(crate) fn holders(&self, vip: &str) -> Vec<usize> {
        (1..=self.nodes.len())
            .filter(|&i| self.node(i).holds(vip))
            .collect()
    }

    /// One line per node with its addresses, for failure messages.
    pub(crate) fn describe(&self) -> String {
        let mut s = String::new();
        for h in self.nodes.iter().chain(std::iter::once(&self.client)) {
            let _ = writeln!(s, "{} ({}): {:?}", h.role, h.ns.name, h.addresses());
        }
        s
    }
}

/// Puts namespace `ns` on `bridge` in the `switch` namespace through a veth
/// pair, `port` on the switch side and `interface` inside `ns`: `ip link add
/// PORT type veth peer name INTERFACE netns NS`, then `ip link set PORT master
/// BRIDGE up`.
pub(crate) fn plug_veth(switch: &Netns, bridge: &str, port: &str, ns: &Netns, interface: &str) {
    switch.ip(&[
        "link", "add", port, "type", "veth", "peer", "name", interface, "netns", &ns.name,
    ]);
    switch.ip(&["link", "set", port, "master", bridge, "up"]);
}

/// Puts `host` on the lab's bridge `br0` as `eth0` (switch port `port`) with
/// its addresses (IPv4 with `v4_prefix_len`, IPv6 with /64 and no DAD), and
/// sets it up.
fn plug_eth0(switch: &Netns, port: &str, host: &Host, v4_prefix_len: u8) {
    let (ns, v4, v6) = (&host.ns, &host.v4, &host.v6);
    plug_veth(switch, "br0", port, ns, "eth0");
    ns.sysctl(&["net.ipv6.conf.eth0.accept_dad=0"]);
    ns.ip_batch(&format!(
        "addr add {v4}/{v4_prefix_len} dev eth0\naddr add {v6}/64 dev eth0 nodad\nlink set lo up\nlink set eth0 up\n"
    ));
}
