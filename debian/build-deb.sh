#!/usr/bin/env bash
# Builds the Debian package: target/debian/vipd_VERSION-1_ARCH.deb (under
# $CARGO_TARGET_DIR when set).
#
#     cargo install cargo-deb   # once
#     debian/build-deb.sh
#
# 1. cargo build --release;
# 2. `vipd generate-assets debian/generated` writes the man pages (vipd(8),
#    vipd-COMMAND(8), vipd.toml(5)) and the bash, zsh and fish completions, which
#    [package.metadata.deb] in Cargo.toml lists as assets;
# 3. cargo deb --no-build packs them with the binary, the unit
#    (systemd/vipd.service), the example configuration and debian/{postinst,
#    prerm,postrm}. It prints the path of the .deb last.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --bin vipd
rm -rf debian/generated
"$target/release/vipd" generate-assets debian/generated >/dev/null
cargo deb --no-build --locked "$@"
