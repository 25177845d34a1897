#!/usr/bin/env bash
# The test command: the whole suite, on a fresh Debian machine, as root:
#
#     tests/run.sh                    # everything (~11 min on 2 cores)
#     tests/run.sh --test failover    # extra args go to cargo test
#
# As a user with sudo rather than root: sudo -E env PATH="$PATH" tests/run.sh
# (sudo's own PATH usually lacks ~/.cargo/bin).
#
# 1. as root, installs what the tests run and are missing (apt-get update first,
#    then apt-get install --no-install-recommends): iproute2 (ip, bridges,
#    namespaces), iputils-ping (ping), arping, nftables (nft, tests/guard.rs),
#    procps (sysctl), util-linux (setpriv, tests/control.rs; unshare and
#    nsenter, tests/systemd.rs), python3-minimal (a unit test of src/control.rs
#    talks to the socket as another user), systemd (tests/systemd.rs boots it
#    in namespaces of its own to run systemd/vipd.service; it need not be PID 1),
#    prometheus (prometheus and promtool, tests/metrics.rs), curl (its HTTP
#    requests inside the lab's namespaces), keepalived (tests/migrate.rs switches
#    a keepalived pair to vipd), lintian and man-db (tests/package.sh), frr
#    (zebra, bgpd, bfdd, vtysh: tests/routed.rs), haproxy, nginx and
#    postgresql-15 (tests/services.rs puts them behind vipd, each in a node's
#    namespace), etcd-server and etcd-client (etcd and etcdctl: three members
#    in namespaces for tests/etcd_lease.rs and tests/patroni.rs), patroni
#    and vip-manager (tests/patroni.rs); the install starts no service: a
#    policy-rc.d refuses while it runs);
# 2. checks that cargo is there;
# 3. runs `cargo test --release "$@"`;
# 4. as root and without extra arguments, the package test (tests/package.sh:
#    builds the .deb, lintian, dpkg -i, checks, dpkg --purge), first installing
#    cargo-deb if it is missing (`cargo install cargo-deb --locked`: about 2-3
#    minutes of compiling on 2 cores; the test itself takes well under a minute
#    after the test build). VIPD_PACKAGE_TEST=0 skips it.
#
# Without root nothing is installed and the tests that need network namespaces
# skip themselves, each saying so; with CI set they fail instead (a skipped test
# would hide a regression). .ci/run calls this script for its test step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '==> %s\n' "$*"; }

# program -> the Debian package that provides it.
declare -A package_of=(
    [ip]=iproute2
    [ping]=iputils-ping
    [arping]=arping
    [nft]=nftables
    [sysctl]=procps
    [setpriv]=util-linux
    [prlimit]=util-linux
    [/usr/bin/python3]=python3-minimal
    [unshare]=util-linux
    [nsenter]=util-linux
    [/lib/systemd/systemd]=systemd
    [systemd-analyze]=systemd
    [prometheus]=prometheus
    [promtool]=prometheus
    [curl]=curl
    [lintian]=lintian
    [keepalived]=keepalived
    [man]=man-db
    [/usr/lib/frr/bgpd]=frr
    [haproxy]=haproxy
    [nginx]=nginx
    [/usr/lib/postgresql/15/bin/postgres]=postgresql-15
    [psql]=postgresql-client-15
    [/usr/bin/etcd]=etcd-server
    [etcdctl]=etcd-client
    [patroni]=patroni
    [vip-manager]=vip-manager
)
missing=()
has() { # a user's PATH on Debian lacks the sbin directories, where ip and nft live
    command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]
}
for program in "${!package_of[@]}"; do
    has "$program" || missing+=("${package_of[$program]}")
done

if [[ $EUID -eq 0 ]]; then
    if ((${#missing[@]})); then
        command -v apt-get >/dev/null || { echo "tests/run.sh: please install: ${missing[*]}" >&2; exit 1; }
        say "installing ${missing[*]}"
        apt-get update
        # The tests run their own HAProxy, nginx, PostgreSQL, etcd and Patroni in namespaces:
        # the packages' services must not start on this host (Debian's
        # policy-rc.d convention: exit 101 = "not allowed").
        policy=/usr/sbin/policy-rc.d
        own_policy=0
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" ||
            { ((own_policy)) && rm -f "$policy"; exit 1; }
        ((own_policy)) && rm -f "$policy"
    else
        say "test tools present: ${!package_of[*]}"
    fi
else
    say "not root: installing nothing; the tests that need root and network namespaces"
    say "(every test that starts vipd in a lab) will print 'skipping ...: needs root' and pass"
    say "without running${CI:+, except that CI is set, so they will fail}. For the whole suite run it as root (with sudo: sudo -E env PATH=\"\$PATH\" $0)"
    if ((${#missing[@]})); then
        say "missing tools (needed as root): ${missing[*]}"
    fi
fi

if ! command -v cargo >/dev/null; then
    echo "tests/run.sh: cargo not found on PATH." >&2
    [[ $EUID -eq 0 && -n ${SUDO_USER:-} ]] &&
        echo "  sudo drops ~/.cargo/bin from PATH: run  sudo -E env PATH=\"\$PATH\" $0" >&2
    exit 1
fi
cargo --version

say "cargo test --release $*"
start=$SECONDS
status=0
cargo test --release "$@" || status=$?
say "cargo test --release took $((SECONDS - start)) s (exit status $status)"

if [[ $EUID -eq 0 && $# -eq 0 && ${VIPD_PACKAGE_TEST:-1} != 0 ]]; then
    start=$SECONDS
    if ! command -v cargo-deb >/dev/null; then
        say "installing cargo-deb (cargo install cargo-deb --locked)"
        cargo install cargo-deb --locked
    fi
    package_status=0
    tests/package.sh || package_status=$?
    say "tests/package.sh took $((SECONDS - start)) s (exit status $package_status)"
    ((status)) || status=$package_status
fi
exit "$status"
