#!/usr/bin/env bash
# The Debian package, end to end, as root on a Debian machine:
#
#     tests/package.sh
#
# (as a user with sudo: sudo -E env PATH="$PATH" tests/package.sh)
#
# 1. builds it (debian/build-deb.sh: cargo build, vipd generate-assets, cargo deb);
# 2. lintian: no errors (warnings are printed);
# 3. installs it with dpkg and checks what landed: /usr/sbin/vipd runs, the unit
#    in /lib/systemd/system equals systemd/vipd.service, /etc/vipd is mode 0700
#    with no vipd.toml, the example is in /usr/share/doc/vipd/examples, `man -w`
#    finds vipd(8) and vipd.toml(5), the bash, zsh and fish completions exist;
# 4. upgrades it on the master of a two-node lab: builds version B (the same
#    tree, Debian revision 2) and runs tests/package_upgrade.rs, which runs the
#    installed /usr/sbin/vipd as master and `dpkg -i`s B while a client probes
#    the VIP every millisecond (no restart, no lost probe);
# 5. purges it (also on failure, from a trap) and checks nothing is left behind.
#
# It refuses to run where vipd is already installed or has state (it would
# replace and then purge a live node's vipd). Needs cargo-deb (`cargo install
# cargo-deb`), lintian, man-db and dpkg; tests/run.sh (and so CI) runs it after
# the test suite when root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || fail "needs root (dpkg -i): run it as root, or with sudo: sudo -E env PATH=\"\$PATH\" $0"
for tool in cargo-deb lintian man dpkg; do
    command -v "$tool" >/dev/null || fail "missing $tool (cargo install cargo-deb; apt-get install lintian man-db)"
done
if dpkg-query -W -f='${Status}' vipd 2>/dev/null | grep -q installed; then
    fail "the vipd package is installed on this machine; not replacing it"
fi
for path in /usr/sbin/vipd /lib/systemd/system/vipd.service /etc/vipd /var/lib/vipd; do
    [[ ! -e $path ]] || fail "$path exists; this test installs and purges vipd, so it runs only where vipd is not"
done

say "building the package"
start=$SECONDS
deb=$(debian/build-deb.sh | tail -n 1)
[[ -f $deb ]] || fail "debian/build-deb.sh printed no .deb path (got: $deb)"
say "built $deb in $((SECONDS - start)) s"

say "lintian $deb"
lintian_out=$(lintian "$deb" 2>&1) || true
printf '%s\n' "$lintian_out"
if grep -q '^E:' <<<"$lintian_out"; then
    fail "lintian reports errors"
fi

cleanup() {
    if dpkg-query -W -f='${Status}' vipd 2>/dev/null | grep -q installed; then
        say "dpkg --purge vipd"
        dpkg --purge vipd >/dev/null
    fi
}
trap cleanup EXIT

say "dpkg -i"
dpkg -i "$deb"

checks=0
check() { # description, command...
    local what=$1
    shift
    "$@" || fail "$what"
    checks=$((checks + 1))
    say "ok: $what"
}
check "/usr/sbin/vipd runs" /usr/sbin/vipd --version
check "the unit equals systemd/vipd.service" cmp /lib/systemd/system/vipd.service systemd/vipd.service
check "the unit starts the packaged binary" grep -q '^ExecStart=/usr/sbin/vipd ' /lib/systemd/system/vipd.service
check "/etc/vipd is a directory" test -d /etc/vipd
check "/etc/vipd has mode 0700" test "$(stat -c %a /etc/vipd)" = 700
check "no live configuration is installed" test ! -e /etc/vipd/vipd.toml
check "the example is installed" cmp /usr/share/doc/vipd/examples/vipd.toml config/vipd.toml
check "man -w vipd" man -w vipd
check "man -w 5 vipd.toml" man -w 5 vipd.toml
check "man -w vipd-import-keepalived" man -w vipd-import-keepalived
check "bash completion" test -s /usr/share/bash-completion/completions/vipd
check "zsh completion" test -s /usr/share/zsh/vendor-completions/_vipd
check "fish completion" test -s /usr/share/fish/vendor_completions.d/vipd.fish
check "the installed binary makes a key" bash -c '/usr/sbin/vipd keygen | grep -Eq "^[0-9a-f]{64}$"'

say "building the next version (Debian revision 2) for the upgrade test"
next_deb=$(debian/build-deb.sh --deb-revision 2 | tail -n 1)
[[ -f $next_deb && $next_deb != "$deb" ]] || fail "no second .deb for the upgrade (got: $next_deb)"
say "upgrade on the master of a pair: dpkg -i $next_deb while a client probes"
VIPD_UPGRADE_DEB=$next_deb cargo test --release --locked --test package_upgrade -- --ignored --nocapture ||
    fail "a package upgrade on the master dropped probes or restarted it (tests/package_upgrade.rs)"
checks=$((checks + 1))
check "the upgrade installed revision 2" bash -c 'dpkg-query -W -f="\${Version}" vipd | grep -q -- "-2$"'

say "dpkg --purge vipd"
dpkg --purge vipd
trap - EXIT
for path in /usr/sbin/vipd /lib/systemd/system/vipd.service /etc/vipd /var/lib/vipd /usr/share/doc/vipd \
    /etc/systemd/system/multi-user.target.wants/vipd.service; do
    check "$path is gone after purge" test ! -e "$path"
done
say "package test passed: $checks checks"
