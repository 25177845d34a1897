#!/usr/bin/env bash
# Captures real keepalived adverts as test fixtures for src/vrrp, as root:
#   tests/vrrp/capture.sh
#
# Builds two network namespaces joined by a veth pair (vcap-<pid>-a and -b, so
# nothing touches this machine's network), runs keepalived in the first with
# --vrrp only, its own pid files and a config per fixture, captures its first
# advert with tcpdump in the second, and writes the raw IP packet as hex into
# tests/vrrp/<name>.hex, under comment lines that say how it was made. The
# namespaces, keepalived and tcpdump are removed on exit, also on an error.
#
# Uses `keepalived` from PATH (Debian bookworm's 2.2.7: apt-get install -y
# keepalived tcpdump). keepalived 2.2.7 has no v3_checksum_as_v2 (added in
# 2.2.8); KEEPALIVED_2_2_8=/path/to/keepalived (a build of tag v2.2.8 or later)
# also captures v3_ipv4_checksum_as_v2.hex, which is otherwise left as it is.
set -euo pipefail

die() { printf 'capture.sh: %s\n' "$*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "needs root (network namespaces)"
command -v keepalived >/dev/null || die "keepalived not found (apt-get install -y keepalived)"
command -v tcpdump >/dev/null || die "tcpdump not found (apt-get install -y tcpdump)"

out_dir=$(cd "$(dirname "$0")" && pwd)
ns_a=vcap-$$-a
ns_b=vcap-$$-b
work=$(mktemp -d /tmp/vcap-$$.XXXXXX)
keepalived_pid=
tcpdump_pid=

cleanup() {
    set +e
    [[ -n $keepalived_pid ]] && kill "$keepalived_pid" 2>/dev/null && wait "$keepalived_pid" 2>/dev/null
    [[ -n $tcpdump_pid ]] && kill "$tcpdump_pid" 2>/dev/null && wait "$tcpdump_pid" 2>/dev/null
    ip netns del "$ns_a" 2>/dev/null
    ip netns del "$ns_b" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two hosts on one link. Fixed MACs give fixed IPv6 link-local sources
# (fe80::ff:fe00:1 and fe80::ff:fe00:2), and without duplicate address
# detection keepalived can send from its link-local address at once.
ip netns add "$ns_a"
ip netns add "$ns_b"
for ns in "$ns_a" "$ns_b"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
done
ip -n "$ns_a" link add veth0 address 02:00:00:00:00:01 type veth \
    peer name veth0 address 02:00:00:00:00:02 netns "$ns_b"
ip -n "$ns_a" addr add 192.0.2.1/24 dev veth0
ip -n "$ns_b" addr add 192.0.2.2/24 dev veth0
for ns in "$ns_a" "$ns_b"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set veth0 up
done

# capture NAME KEEPALIVED DESCRIPTION INSTANCE_LINES...: runs KEEPALIVED with one
# MASTER instance on veth0 made of INSTANCE_LINES and writes its first advert.
capture() {
    local name=$1 binary=$2 description=$3
    shift 3
    local conf=$work/$name.conf pcap=$work/$name.pcap log=$work/$name.log
    {
        echo "global_defs {"
        echo "    router_id vcap"
        echo "}"
        echo "vrrp_instance VI_$name {"
        echo "    state MASTER"
        echo "    interface veth0"
        printf '    %s\n' "$@"
        echo "}"
    } >"$conf"

    ip netns exec "$ns_b" tcpdump -i veth0 -n -U -c 1 -w "$pcap" 'ip proto 112 or ip6 proto 112' \
        2>"$work/$name.tcpdump" &
    tcpdump_pid=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$work/$name.tcpdump" && break
        sleep 0.1
    done

    # --vrrp exists only in a build with the checker (LVS) too; without it
    # keepalived rejects the option and runs VRRP alone anyway.
    local vrrp_only=()
    "$binary" --help 2>&1 | grep -q -- '--vrrp ' && vrrp_only=(--vrrp)
    ip netns exec "$ns_a" "$binary" -n -l -D "${vrrp_only[@]}" -f "$conf" \
        -p "$work/$name.keepalived.pid" -r "$work/$name.vrrp.pid" >"$log" 2>&1 &
    keepalived_pid=$!

    local waited=0
    while kill -0 "$tcpdump_pid" 2>/dev/null; do
        ((waited++ < 200)) || { cat "$log" >&2; die "$name: no advert within 20 s"; }
        sleep 0.1
    done
    wait "$tcpdump_pid" || true
    tcpdump_pid=
    kill "$keepalived_pid"
    wait "$keepalived_pid" || true
    keepalived_pid=

    # tcpdump -x prints the packet without its link-layer header, 16 bytes a
    # line behind an offset; the IP length fields cut off any link padding.
    local summary hex length
    summary=$(tcpdump -r "$pcap" -n -t -v 2>/dev/null | tr -s ' \t\n' ' ')
    hex=$(tcpdump -r "$pcap" -n -x 2>/dev/null | awk '/^[ \t]+0x[0-9a-f]+:/ { $1 = ""; print }' | tr -d ' \n')
    case ${hex:0:1} in
        4) length=$((16#${hex:4:4})) ;;
        6) length=$((40 + 16#${hex:8:4})) ;;
        *) die "$name: not an IP packet: $hex" ;;
    esac
    ((${#hex} >= 2 * length)) || die "$name: captured ${#hex} hex digits, IP length says $length bytes"
    {
        echo "# $("$binary" --version 2>&1 | head -n 1), captured by tests/vrrp/capture.sh: $description"
        echo "# tcpdump -v: $summary"
        echo "${hex:0:2*length}"
    } >"$out_dir/$name.hex"
    printf '%-24s %s\n' "$name" "$summary"
}

capture v2_pass_ipv4 keepalived \
    "version 2, VRID 51, priority 150, advert_int 1, auth PASS \"s3cret\", multicast from 192.0.2.1" \
    "version 2" "virtual_router_id 51" "priority 150" "advert_int 1" \
    "authentication {" "    auth_type PASS" "    auth_pass s3cret" "}" \
    "virtual_ipaddress {" "    192.0.2.10/24" "    192.0.2.11/24" "}"

capture v3_ipv4 keepalived \
    "version 3, VRID 52, priority 200, advert_int 1.5, multicast from 192.0.2.1" \
    "version 3" "virtual_router_id 52" "priority 200" "advert_int 1.5" \
    "virtual_ipaddress {" "    192.0.2.20/24" "    192.0.2.21/24" "}"

capture v3_ipv4_unicast keepalived \
    "version 3, VRID 54, priority 120, advert_int 1, unicast from 192.0.2.1 to 192.0.2.2" \
    "version 3" "virtual_router_id 54" "priority 120" "advert_int 1" \
    "unicast_src_ip 192.0.2.1" "unicast_peer {" "    192.0.2.2" "}" \
    "virtual_ipaddress {" "    192.0.2.40/24" "    192.0.2.41/24" "}"

capture v3_ipv6 keepalived \
    "version 3, VRID 53, priority 100, advert_int 0.5, multicast from fe80::ff:fe00:1" \
    "version 3" "virtual_router_id 53" "priority 100" "advert_int 0.5" \
    "virtual_ipaddress {" "    2001:db8::30/64" "    2001:db8::31/64" "}"

if [[ -n ${KEEPALIVED_2_2_8:-} ]]; then
    capture v3_ipv4_checksum_as_v2 "$KEEPALIVED_2_2_8" \
        "version 3, VRID 55, priority 180, advert_int 2, v3_checksum_as_v2, multicast from 192.0.2.1" \
        "version 3" "virtual_router_id 55" "priority 180" "advert_int 2" "v3_checksum_as_v2" \
        "virtual_ipaddress {" "    192.0.2.50/24" "    192.0.2.51/24" "}"
else
    echo "v3_ipv4_checksum_as_v2: left as it is (set KEEPALIVED_2_2_8 to a keepalived >= 2.2.8 to capture it)"
fi
