#!/usr/bin/env bash
# A throwaway three-node vipd cluster in network namespaces, to see failover with
# your own eyes, as root:   tests/lab.sh
# (as a user with sudo:      sudo -E env PATH="$PATH" tests/lab.sh)
#
# Builds a bridge and four hosts (node1..node3 and a client), each in its own
# network namespace, so nothing touches this machine's real network. Starts three
# vipd nodes (priorities 150/100/50, 100 ms adverts, a generated key), shows the
# master's `vipd status`, resolves the VIP from the client, kills the master with
# kill -9 (and takes its link down, as a dead machine's) and prints how long the
# client took to get an answer from the new master's MAC, beside the protocol
# bound. The client asks who has the VIP every 2 ms (arping) all along, so the
# figure is what a client sees, within a few ms. Then drains the new master with
# `vipd drain` and prints where the VIP went. Everything is removed on exit, also
# on Ctrl-C or an error.
#
# Uses $VIPD if set, else target/release/vipd (built with `cargo build --release`
# if missing). Needs root, iproute2 and arping (installed with apt-get if missing).
# KEEP=1 keeps the work directory (configs and logs) for inspection.
set -euo pipefail

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'lab.sh: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "needs root (network namespaces): run it as root, or with sudo: sudo -E env PATH=\"\$PATH\" $0"

# ---------------------------------------------------------------------------
# Tools and the binary
# ---------------------------------------------------------------------------
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v arping >/dev/null || missing+=(arping)
command -v ping >/dev/null || missing+=(iputils-ping)
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "please install: ${missing[*]}"
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${VIPD:-} ]]; then
    VIPD=$repo/target/release/vipd
    if [[ ! -x $VIPD ]] || [[ -n $(find "$repo/src" "$repo/Cargo.toml" -newer "$VIPD" -print -quit) ]]; then
        log "building vipd (cargo build --release)"
        if command -v cargo >/dev/null; then
            (cd "$repo" && cargo build --release --quiet)
        elif [[ -n ${SUDO_USER:-} ]]; then
            # Started by sudo, whose PATH usually lacks ~/.cargo/bin: build as the
            # invoking user, in a login shell that sets up its PATH (runuser is
            # util-linux's, on every Debian; this script never calls sudo).
            runuser -l "$SUDO_USER" -c "cd '$repo' && cargo build --release --quiet"
        else
            die "cargo not found; build vipd first or set VIPD=/path/to/vipd"
        fi
    fi
fi
[[ -x $VIPD ]] || die "$VIPD is not an executable"

# ---------------------------------------------------------------------------
# Clean-up first, so that any failure below leaves nothing behind
# ---------------------------------------------------------------------------
id=vl$$
sw=$id-switch
client=$id-client
nodes=(node1 node2 node3)
prios=(150 100 50)
work=$(mktemp -d /tmp/vipd-lab.XXXXXX)
declare -A pid=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for n in "${!pid[@]}"; do kill -9 "${pid[$n]}" 2>/dev/null || true; done
    for ns in "$sw" "$client" "${nodes[@]/#/$id-}"; do
        if [[ -e /run/netns/$ns ]]; then
            for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    if ((rc != 0)); then
        for n in "${nodes[@]}"; do
            [[ -f $work/$n.log ]] && { echo "----- $n.log (last 30 lines)"; tail -n 30 "$work/$n.log"; }
        done
    fi
    if [[ -n ${KEEP:-} ]]; then echo "kept $work"; else rm -rf "$work"; fi
    log "cleaned up"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { echo $(($(date +%s%N) / 1000000)); }
mac_of() { ip -n "$id-$1" -j link show dev eth0 | sed -n 's/.*"address":"\([^"]*\)".*/\1/p'; }
# (Not `ip | grep -q`: with pipefail, grep leaving early can fail the pipe with SIGPIPE.)
holds() { [[ $(ip -n "$id-$1" -o addr show dev eth0) == *" ${vip%/*}/"* ]]; }
# The MAC that answers an ARP request for the VIP from the client, or nothing.
arp_vip() { ip netns exec "$client" arping -r -c 1 -w "${1:-0.3}" -i eth0 "${vip%/*}" 2>/dev/null | head -n 1 || true; }
name_of_mac() {
    local n
    for n in "${nodes[@]}"; do [[ $(mac_of "$n") == "$1" ]] && { echo "$n"; return; }; done
    echo "unknown"
}
vipctl() { local n=$1; shift; "$VIPD" "$@" --socket "$work/$n.sock"; }

# ---------------------------------------------------------------------------
# The network: one bridge, four hosts
# ---------------------------------------------------------------------------
net=10.99.0
vip=$net.200/24
log "network: bridge in $sw; hosts node1-3 ($net.11-13) and client ($net.100); VIP $vip"
ip netns add "$sw"
ip -n "$sw" link add br0 type bridge mcast_snooping 0 forward_delay 0
ip -n "$sw" link set br0 up
add_host() { # ns address index
    ip netns add "$1"
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    ip -n "$sw" link add "p$3" type veth peer name eth0 netns "$1"
    ip -n "$sw" link set "p$3" master br0 up
    ip -n "$1" addr add "$2/24" dev eth0
    ip -n "$1" link set lo up
    ip -n "$1" link set eth0 up
}
for i in 0 1 2; do add_host "$id-${nodes[$i]}" "$net.$((11 + i))" "$((i + 1))"; done
add_host "$client" "$net.100" 9
# The client keeps what it learnt: an entry that changes was changed by a GARP.
ip netns exec "$client" sysctl -qw net.ipv4.neigh.eth0.base_reachable_time_ms=3600000

# ---------------------------------------------------------------------------
# Three vipd nodes
# ---------------------------------------------------------------------------
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/lab.key"
chmod 600 "$work/lab.key"
for i in 0 1 2; do
    n=${nodes[$i]}
    mkdir -p "$work/$n-state"
    cat >"$work/$n.toml" <<EOF
[node]
name = "$n"
control_socket = "$work/$n.sock"
state_dir = "$work/$n-state"

[[instance]]
name = "lab"
interface = "eth0"
group = 51
priority = ${prios[$i]}
advert_interval = "100ms"
vips = ["$vip"]
auth_key_file = "$work/lab.key"
EOF
    # Checked inside the node's namespace: that is where its eth0 is.
    ip netns exec "$id-$n" "$VIPD" check --config "$work/$n.toml" >/dev/null || die "vipd check rejected $work/$n.toml"
    ip netns exec "$id-$n" "$VIPD" run --config "$work/$n.toml" >"$work/$n.log" 2>&1 &
    pid[$n]=$!
    disown "${pid[$n]}" # no "Killed" job messages from bash
done
started_at=$(now_ms)
log "started vipd on node1 (priority 150), node2 (100), node3 (50): 100 ms adverts"

deadline=$(($(now_ms) + 15000))
until holds node1 && ! holds node2 && ! holds node3; do
    (($(now_ms) < deadline)) || die "node1 did not become the only holder of $vip within 15 s"
    sleep 0.05
done
log "node1 holds $vip"
echo
log "vipd status (node1)"
vipctl node1 status || echo "(vipd status failed: is the CLI built yet?)"
echo

mac=$(arp_vip 1)
[[ -n $mac ]] || die "nobody answered ARP for $vip"
log "client: $vip is at $mac ($(name_of_mac "$mac"))"
# One ping gives the client a neighbour entry for the VIP, which only a gratuitous
# ARP can change from now on.
ip netns exec "$client" ping -c 1 -W 1 "${vip%/*}" >/dev/null || die "the client cannot ping $vip"
echo "    client's neighbour entry: $(ip -n "$client" neigh show "${vip%/*}" dev eth0)"

# ---------------------------------------------------------------------------
# kill -9 the master and time the move as the client sees it
# ---------------------------------------------------------------------------
advert_ms=100 # the advert_interval above
margin_ms=2   # vipd's default takeover_margin
old_mac=$(mac_of node1)
new_mac=$(mac_of node2)
# The prober: the client asks who has the VIP every 2 ms; each reply is logged as
# "<unix time> <MAC>" (bash's $EPOCHREALTIME, no fork per line; stdbuf so arping's
# lines are not held in a pipe buffer).
probes=$work/probes.txt
: >"$probes"
(ip netns exec "$client" stdbuf -oL arping -r -W 0.002 -i eth0 "${vip%/*}" 2>/dev/null |
    while read -r mac; do printf '%s %s\n' "$EPOCHREALTIME" "${mac,,}"; done >"$probes") 2>/dev/null &
disown $! # no "Terminated" message when arping is stopped below
# First reply from MAC after unix time T, as "time mac", or nothing.
first_reply_from() { awk -v mac="$1" -v t="$2" '$1 >= t && $2 == mac { print; exit }' "$probes"; }
deadline=$(($(now_ms) + 5000))
until [[ -n $(first_reply_from "$old_mac" 0) ]]; do
    (($(now_ms) < deadline)) || die "the client's arping got no answer from node1 within 5 s"
    sleep 0.01
done

# Backups advertise every second and rank themselves once up 3 x 1 s + margin
# (until then they wait the RFC's skew): wait for that, so that node2 knows it is
# the best backup and takes over 3 x interval + margin after the last advert.
while (($(now_ms) < started_at + 3500)); do sleep 0.05; done
node2_down=$(vipctl node2 status 2>/dev/null | sed -n 's/^ *master down: *//p' | head -n 1)
log "kill -9 node1 (pid ${pid[node1]}), then take its link down"
start=$EPOCHREALTIME
kill -9 "${pid[node1]}"
unset 'pid[node1]'
# node1's VIP stays configured (nobody cleans up after kill -9) and its kernel
# would go on answering ARP for it: take its link down, as a dead machine's. The
# clock runs from the kill, and only a reply from node2's MAC counts.
ip -n "$id-node1" link set eth0 down
deadline=$(($(now_ms) + 15000))
until reply=$(first_reply_from "$new_mac" "$start") && [[ -n $reply ]]; do
    (($(now_ms) < deadline)) || die "the client got no answer from node2's MAC within 15 s"
    sleep 0.01
done
sleep 0.2 # a few more probes, to show that node2 alone answers now
for p in $(ip netns pids "$client"); do kill "$p" 2>/dev/null || true; done
took=$(awk -v a="$start" -v b="${reply%% *}" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
last_old=$(awk -v t="$start" '$1 < t { last = $1 } END { print last }' "$probes")
silent=$(awk -v a="$last_old" -v b="${reply%% *}" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
probes_after=$(awk -v t="${reply%% *}" '$1 >= t' "$probes" | awk '{ print $2 }' | sort | uniq -c | tr -s ' ' | sed 's/^ //' | paste -sd ',')
bound=$((3 * advert_ms + margin_ms))
echo
echo "    the client saw the VIP move from node1 to node2 $took ms after the kill"
echo "      (first ARP reply from node2's MAC $new_mac; the client asks every 2 ms;"
echo "      no answer at all for $silent ms, from node1's last reply to node2's first)"
echo "    protocol bound: node2 takes over 3 x $advert_ms ms + $margin_ms ms = $bound ms after node1's last"
echo "      advert; node1 last advertised 0-$advert_ms ms before the kill, so $((2 * advert_ms + margin_ms))-$bound ms after the kill"
echo "      (the RFC's Master_Down_Interval, which vipd never exceeds, is ${node2_down:-unknown} for node2:"
echo "      3 x interval + skew, what a backup waits until it knows its rank)"
echo "    replies since then (count, MAC): $probes_after"
echo "    client's neighbour entry: $(ip -n "$client" neigh show "${vip%/*}" dev eth0)"
echo

# ---------------------------------------------------------------------------
# Drain the new master: make-before-break to node3
# ---------------------------------------------------------------------------
log "vipd drain on node2"
if vipctl node2 drain; then
    start=$(now_ms)
    until holds node3 && ! holds node2; do
        (($(now_ms) - start < 10000)) || die "node3 did not take $vip within 10 s of draining node2"
        sleep 0.01
    done
    echo "    drained node2: node3 holds $vip after $(($(now_ms) - start)) ms; client sees $(name_of_mac "$(arp_vip 1)")"
    echo
    log "vipd status (node2, drained)"
    vipctl node2 status || true
    log "vipd undrain on node2"
    vipctl node2 undrain || true
    start=$(now_ms)
    until holds node2 && ! holds node3; do
        (($(now_ms) - start < 10000)) || { echo "    (node2 did not take the VIP back within 10 s)"; break; }
        sleep 0.01
    done
    holds node2 && echo "    undrained node2 holds $vip again after $(($(now_ms) - start)) ms"
else
    echo "    (vipd drain failed: is the CLI built yet? skipping the drain demo)"
fi
echo
log "done"
