#!/bin/bash
# Where a vipd pair's CPU goes: two nodes in network namespaces (a bridge in
# a third), N instances each, `perf stat` of both daemons side by side and,
# with PROFILE=master|backup, `perf record` of one of them. As root.
#
#   benches/profile.sh [VIPD_BINARY [SECONDS]]
#   NGROUPS=255 INTERVAL=1s SETTLE=8 PROFILE=backup benches/profile.sh
#
# Namespaces are named after this script's pid and removed on exit, with
# everything running in them.
set -u
VIPD=${1:-target/release/vipd}
SECS=${2:-15}
[[ $(id -u) == 0 ]] || { echo "profile.sh: needs root (network namespaces, perf)" >&2; exit 1; }
command -v perf >/dev/null || { echo "profile.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
id=vipdprof$$
sw=$id-sw
work=$(mktemp -d)
cleanup() {
    for ns in $sw $id-a $id-b; do
        for p in $(ip netns pids $ns 2>/dev/null); do kill -9 $p 2>/dev/null; done
        ip netns del $ns 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add $sw
ip -n $sw link add br0 type bridge mcast_snooping 0 forward_delay 0
ip -n $sw link set br0 up
i=1
for n in a b; do
    ns=$id-$n
    ip netns add $ns
    ip -n $sw link add p$i type veth peer name eth0 netns $ns
    ip -n $sw link set p$i master br0 up
    ip -n $ns addr add 10.98.0.$i/16 dev eth0
    ip -n $ns link set lo up
    ip -n $ns link set eth0 up
    i=$((i + 1))
done
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >$work/k
chmod 600 $work/k
for n in a b; do
    p=150
    [ $n = b ] && p=100
    mkdir -p $work/$n-state
    cat >$work/$n.toml <<EOT
[node]
name = "$n"
control_socket = "$work/$n.sock"
state_dir = "$work/$n-state"
EOT
    for g in $(seq 1 ${NGROUPS:-1}); do
        cat >>$work/$n.toml <<EOT
[[instance]]
name = "lab$g"
interface = "eth0"
group = $g
priority = $p
advert_interval = "${INTERVAL:-10ms}"
vips = ["10.98.$((g / 250 + 1)).$((g % 250 + 1))/16"]
auth_key_file = "$work/k"
EOT
    done
    ip netns exec $id-$n $VIPD run --config $work/$n.toml >$work/$n.log 2>&1 &
    eval pid_$n=$!
done
sleep ${SETTLE:-3}
perf stat -e task-clock,context-switches -p $pid_a -- sleep $SECS 2>$work/stat-a &
stat_a=$!
perf stat -e task-clock,context-switches -p $pid_b -- sleep $SECS 2>$work/stat-b &
stat_b=$!
wait $stat_a $stat_b
echo "== master (a, priority 150)"
grep -E "task-clock|context" $work/stat-a
echo "== backup (b, priority 100)"
grep -E "task-clock|context" $work/stat-b
if [ "${PROFILE:-}" ]; then
    pid=$pid_b
    [ "$PROFILE" = master ] && pid=$pid_a
    perf record -F 2000 -g -p $pid -o $work/perf.data -- sleep $SECS >/dev/null 2>&1
    perf report -i $work/perf.data --no-children --stdio --percent-limit 1.5 2>/dev/null |
        grep -E "^ +[0-9]" | head -40
fi
