#!/usr/bin/env bash
# vipd against keepalived, side by side. ONE command, as root:
#
#     benches/run.sh                      # full: 20 runs per case (~25 min)
#     VIPD_BENCH_QUICK=1 benches/run.sh   # quick: 5 runs, 10 s CPU windows
#
# (as a user with sudo: sudo -E env PATH="$PATH" benches/run.sh)
#
# 1. installs keepalived, iproute2 if missing (apt-get), and for the services
#    bench haproxy and curl;
# 2. runs the 255-node election simulation
#    (cargo test --release --test simulation full_group_of_255 -- --nocapture)
#    and keeps its output in target/bench/simulation.txt (VIPD_BENCH_SIM=0 skips it);
# 3. runs `cargo bench --bench failover`, which builds the release vipd, builds the
#    namespace labs, runs every case for vipd and keepalived, prints the table and
#    writes target/bench/results.json.
# Every option of the bench (VIPD_BENCH_RUNS, VIPD_BENCH_RUNS_1S, VIPD_BENCH_INTERVALS,
# VIPD_BENCH_CPU_SECS, VIPD_BENCH_ONLY, VIPD_BENCH_LOSS_SECS) is read from the environment;
# `VIPD_BENCH_ONLY=clients` runs just what a client sees. See the top of
# benches/failover.rs. The bench deletes its namespaces and daemons on exit, also on
# Ctrl-C; namespaces left by a SIGKILLed bench are swept by the next run.
#
# `services` in VIPD_BENCH_ONLY (alone, or beside the failover bench's sections)
# runs `cargo bench --bench services`: a client in front of an HAProxy pair while
# the master's daemon is killed or stopped, its HAProxy killed, or it is drained,
# vipd and keepalived each under its own systemd unit; the table goes to stdout
# and target/bench/services.json (VIPD_BENCH_SERVICES_RUNS, default 5, quick 2;
# see the top of benches/services.rs). It is not part of the default run.
set -euo pipefail

[[ $EUID -eq 0 ]] || { echo "run.sh: needs root (network namespaces): run it as root, or with sudo: sudo -E env PATH=\"\$PATH\" $0" >&2; exit 1; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# `services` is a bench of its own; the rest of the list is the failover bench's.
run_failover=1
run_services=0
failover_only=${VIPD_BENCH_ONLY:-}
if [[ -n $failover_only ]]; then
    IFS=, read -ra sections <<<"$failover_only"
    rest=()
    for section in "${sections[@]}"; do
        section=${section// /}
        if [[ $section == services ]]; then
            run_services=1
        elif [[ -n $section ]]; then
            rest+=("$section")
        fi
    done
    failover_only=$(IFS=,; echo "${rest[*]}")
    ((${#rest[@]})) || run_failover=0
fi

missing=()
command -v keepalived >/dev/null || missing+=(keepalived)
command -v ip >/dev/null || missing+=(iproute2)
if ((run_services)); then
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v curl >/dev/null || missing+=(curl)
fi
if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    # The packages enable their services; the benches run their own instances only.
    systemctl disable --now keepalived 2>/dev/null || true
    systemctl disable --now haproxy 2>/dev/null || true
fi
if ! command -v cargo >/dev/null; then
    echo "run.sh: cargo not found (sudo may drop ~/.cargo/bin from PATH: use sudo -E env PATH=\$PATH $0)" >&2
    exit 1
fi

mkdir -p target/bench
if ((run_failover)) && [[ ${VIPD_BENCH_SIM:-1} != 0 ]]; then
    echo "==> simulation: cargo test --release --test simulation full_group_of_255 -- --nocapture"
    cargo test --release --test simulation full_group_of_255 -- --nocapture 2>&1 | tee target/bench/simulation.txt
    export VIPD_BENCH_SIM_OUTPUT=$repo/target/bench/simulation.txt
fi

if ((run_failover)); then
    echo "==> cargo bench --bench failover"
    VIPD_BENCH_ONLY=$failover_only cargo bench --bench failover
fi
if ((run_services)); then
    echo "==> cargo bench --bench services"
    cargo bench --bench services
fi
