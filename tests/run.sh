#!/usr/bin/env bash
# The test command: the whole suite, on a fresh Debian machine, as root:
#
#     sudo -E env PATH="$PATH" tests/run.sh            # everything (~8-10 min)
#     sudo -E env PATH="$PATH" tests/run.sh --test failover   # extra args go to cargo test
#
# 1. as root, installs what the tests run and are missing (apt-get update first,
#    then apt-get install --no-install-recommends): iproute2 (ip, bridges,
#    namespaces), iputils-ping (ping), arping, nftables (nft, tests/guard.rs),
#    procps (sysctl), util-linux (setpriv, tests/control.rs), python3-minimal
#    (a unit test of src/control.rs talks to the socket as another user) and frr
#    (zebra, bgpd, bfdd, vtysh: tests/routed.rs);
# 2. checks that cargo is there;
# 3. runs `cargo test --release "$@"`.
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
    [/usr/bin/python3]=python3-minimal
    [/usr/lib/frr/bgpd]=frr
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
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
        say "test tools present: ${!package_of[*]}"
    fi
else
    say "not root: installing nothing; the tests that need root and network namespaces"
    say "(every test that starts vipd in a lab) will print 'skipping ...: needs root' and pass"
    say "without running${CI:+, except that CI is set, so they will fail}. For the whole suite: sudo -E env PATH=\"\$PATH\" $0"
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
exit "$status"
