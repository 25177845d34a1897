#!/usr/bin/env bash
# What a flood of ARP claims costs a master, vipd beside keepalived. ONE command,
# as root (run `cargo build --release` first, or set VIPD):
#
#     benches/arp_flood.sh
#
# For each daemon in turn: a master alone on a bridge in network namespaces of
# its own (prefix vaf-, removed on exit), VIP 10.99.0.200, 100 ms adverts; a
# second host floods gratuitous ARPs from its own MAC for 5 s (a Python
# AF_PACKET loop, as fast as it goes) claiming (a) another address, (b) the
# VIP. Prints the daemon's CPU (utime+stime from /proc over the window, % of
# one core) idle and under each flood, and the flood's rate at the master.
# vipd's watch passes only ARP for its VIPs through its socket filter, and its
# reader takes at most one claim per 10 ms (src/daemon/instance/conflicts.rs);
# keepalived reads no ARP at all, so its figures are the floor.
set -euo pipefail
[[ $EUID -eq 0 ]] || { echo "arp_flood.sh: needs root (network namespaces)" >&2; exit 1; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VIPD=${VIPD:-$repo/target/release/vipd}
[[ -x $VIPD ]] || { echo "arp_flood.sh: $VIPD not built: cargo build --release" >&2; exit 1; }
command -v keepalived >/dev/null || { echo "arp_flood.sh: keepalived not installed (apt-get install keepalived)" >&2; exit 1; }
P=vaf-$$
work=$(mktemp -d /tmp/vipd-arp-flood.XXXXXX)
chmod 700 "$work"
cleanup() {
    for n in sw n1 rg; do
        ip netns pids "$P-$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$P-$n" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

cat > "$work/flood.py" <<'PY'
import socket, struct, sys, time
ip = bytes(int(x) for x in sys.argv[1].split("."))
end = time.time() + float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
mac = s.getsockname()[4]
frame = b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\x00" * 6 + ip
while time.time() < end:
    for _ in range(1000):
        s.send(frame)
PY

lab() {
    for n in sw n1 rg; do ip netns add "$P-$n"; done
    ip -n "$P-sw" link add br0 type bridge
    ip -n "$P-sw" link set br0 up
    local i=1
    for n in n1 rg; do
        ip link add "$P-$n" type veth peer name eth0 netns "$P-$n"
        ip link set "$P-$n" netns "$P-sw"
        ip -n "$P-sw" link set "$P-$n" master br0 up
        ip -n "$P-$n" addr add "10.99.0.$i/24" dev eth0
        ip -n "$P-$n" link set eth0 up
        ip -n "$P-$n" link set lo up
        i=$((i + 1))
    done
}

rx_packets() {
    ip -n "$P-n1" -s -j link show eth0 |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["packets"])'
}

# CPU of every process in the master's namespace over one window, % of a core.
measure() {
    local label=$1
    shift
    local pids ticks=0 t0 t1 r0 r1
    pids=$(ip netns pids "$P-n1")
    local before=0 after=0 p
    for p in $pids; do before=$((before + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    r0=$(rx_packets)
    t0=$(date +%s.%N)
    if (($#)); then ip netns exec "$P-rg" "$@"; else sleep 5; fi
    t1=$(date +%s.%N)
    r1=$(rx_packets)
    for p in $pids; do after=$((after + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    ticks=$(getconf CLK_TCK)
    printf '  %-36s CPU %6.2f %% of a core   (%s frames/s at the master)\n' "$label" \
        "$(echo "($after - $before) * 100 / $ticks / ($t1 - $t0)" | bc -l)" \
        "$(echo "($r1 - $r0) / ($t1 - $t0)" | bc)"
}

run_case() {
    local name=$1
    lab
    if [[ $name == vipd ]]; then
        mkdir -m 700 "$work/state"
        cat > "$work/vipd.toml" <<T
[node]
name = "n1"
control_socket = "$work/vipd.sock"
state_dir = "$work/state"
[[instance]]
name = "db"
interface = "eth0"
group = 51
priority = 150
advert_interval = "100ms"
vips = ["10.99.0.200/24"]
auth = "none"
T
        (ip netns exec "$P-n1" "$VIPD" run --config "$work/vipd.toml" > "$work/vipd.log" 2>&1 &)
    else
        cat > "$work/keepalived.conf" <<T
global_defs {
    router_id n1
    vrrp_version 3
}
vrrp_instance db {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.1
    virtual_ipaddress {
        10.99.0.200/24 dev eth0
    }
}
T
        (ip netns exec "$P-n1" keepalived --dont-fork --log-console --vrrp --use-file "$work/keepalived.conf" \
            --pid "$work/ka.pid" --vrrp_pid "$work/vrrp.pid" > "$work/keepalived.log" 2>&1 &)
    fi
    for _ in $(seq 100); do
        ip -n "$P-n1" addr show dev eth0 | grep -q 10.99.0.200 && break
        sleep 0.1
    done
    sleep 1
    echo "$name (master holding 10.99.0.200):"
    measure "idle"
    measure "ARP flood claiming another address" python3 "$work/flood.py" 10.99.0.77 5
    measure "ARP flood claiming the VIP" python3 "$work/flood.py" 10.99.0.200 5
    if [[ $name == vipd ]]; then
        "$VIPD" status --socket "$work/vipd.sock" | grep -E "FOREIGN|counters" | sed 's/^/  /' || true
    fi
    cleanup_lab
}

cleanup_lab() {
    for n in sw n1 rg; do
        ip netns pids "$P-$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$P-$n" 2>/dev/null || true
    done
    rm -rf "${work:?}"/state
}

run_case vipd
run_case keepalived
