#!/usr/bin/env bash
# Builds the svit-edge Debian package with cargo-deb (edge/Cargo.toml's [package.metadata.deb]):
# /usr/bin/svit-edge, the demo bundle under /usr/share/svit-edge/models, the systemd unit, the
# config /etc/svit-edge/edge.toml and a postinst that makes the service user. Prints the .deb.
#
#   scripts/package.sh [--target aarch64-unknown-linux-gnu] [--out DIR] [CARGO-DEB ARGS...]
#
# Default: this machine's architecture, release build. For a Pi or a Jetson:
# --target aarch64-unknown-linux-gnu (rustup target add and gcc-aarch64-linux-gnu first).
# `--no-build` packages the binary already built (`--profile dev` takes the debug one, as the
# tests do). cargo-deb is installed on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0
out=target/deb
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION (once)" >&2
  cargo install --quiet --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi
mkdir -p "$out"
# cargo-deb warns that the dev profile is not for releases; the tests package the debug build
# on purpose (a release build of tract takes minutes).
cargo deb -p svit-edge --fast --output "$out" "${args[@]}" 2> >(grep -v "dev profile is not supported\|To enable debug symbols set" >&2)
