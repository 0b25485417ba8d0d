#!/usr/bin/env bash
# Build svit-edge for a 64-bit ARM board, copy it and a bundle over ssh, install a systemd unit.
#
#   scripts/deploy.sh --host pi@raspberrypi.local --connect LAPTOP:7878 [options]
#
# Options:
#   --host USER@BOARD      ssh destination (required)
#   --bundle DIR           bundle to install (default models/demo)
#   --camera SPEC          svit-edge --camera (default arducam: SPI /dev/spidev0.0 and the
#                          board's header I2C bus, /dev/i2c-1 on a Pi, /dev/i2c-7 on a Jetson Orin)
#   --connect HOST:PORT    host to stream to, or
#   --listen ADDR:PORT     let the host dial the board (svit-host listen --board BOARD:PORT)
#   --key FILE             pre-shared key file, copied to /etc/svit-edge/key (recommended)
#   --trust FILE.pub       a bundle signing key (svit-export keygen), copied to
#                          /etc/svit-edge/trust.pub: the board then runs only bundles it signed
#   --glibc 2.31           link against an older glibc with cargo-zigbuild (JetPack 5 ships 2.31;
#                          JetPack 6, Ubuntu 22.04, ships 2.35 and needs it too)
#   --dry-run              print what would run, touch nothing (the unit file is printed too)
set -euo pipefail
cd "$(dirname "$0")/.."

host="" bundle="models/demo" camera="arducam" link="" key="" trust="" glibc="" dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --host) host="$2"; shift 2 ;;
    --bundle) bundle="$2"; shift 2 ;;
    --camera) camera="$2"; shift 2 ;;
    --connect) link="--connect $2"; shift 2 ;;
    --listen) link="--listen $2"; shift 2 ;;
    --key) key="$2"; shift 2 ;;
    --trust) trust="$2"; shift 2 ;;
    --glibc) glibc="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "deploy: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$host" ] || { echo "deploy: --host USER@BOARD is required" >&2; exit 2; }
[ -n "$link" ] || { echo "deploy: give --connect HOST:PORT or --listen ADDR:PORT" >&2; exit 2; }
[ -f "$bundle/manifest.json" ] || { echo "deploy: $bundle/manifest.json not found: not a bundle" >&2; exit 2; }
[ -z "$key" ] || [ -f "$key" ] || { echo "deploy: key file $key not found" >&2; exit 2; }
[ -z "$trust" ] || [ -f "$trust" ] || { echo "deploy: public key file $trust not found" >&2; exit 2; }
# Refuse here rather than on the board: the bundle must carry a signature by that key.
if [ -n "$trust" ] && [ ! -f "$bundle/signature.json" ]; then
  echo "deploy: $bundle is not signed; sign it first: svit-export sign --key KEY.key $bundle" >&2; exit 2
fi

run() { if [ "$dry" = 1 ]; then echo "+ $*"; else "$@"; fi; }

target=aarch64-unknown-linux-gnu
if [ -n "$glibc" ]; then
  command -v cargo-zigbuild >/dev/null || [ "$dry" = 1 ] || {
    echo "deploy: --glibc needs cargo-zigbuild (pip install ziglang cargo-zigbuild)" >&2; exit 2; }
  run cargo zigbuild --release --target "$target.$glibc" -p svit-edge
else
  run rustup target add "$target"
  run cargo build --release --target "$target" -p svit-edge
fi
bin="target/$target/release/svit-edge"

user="${host%%@*}"; [ "$user" != "$host" ] || user="$(whoami)"
name="$(basename "$bundle")"
# Only the groups that exist on the board: a Jetson has no spi group, for instance.
groups="spi i2c gpio video"
if [ "$dry" = 0 ]; then
  groups="$(ssh "$host" "for g in $groups; do getent group \$g >/dev/null && printf '%s ' \$g; done; true")"
fi
keyarg=""; [ -z "$key" ] || keyarg="--key /etc/svit-edge/key"
[ -z "$trust" ] || keyarg="$keyarg --trust /etc/svit-edge/trust.pub"
unit="$(sed -e "s|@USER@|$user|" -e "s|@GROUPS@|$groups|" -e "s|@BUNDLE@|$name|" \
  -e "s|@CAMERA@|$camera|" -e "s|@LINK@|$link|" -e "s|@KEY@|$keyarg|" deploy/svit-edge.service.in)"

if [ "$dry" = 1 ]; then
  echo "+ scp $bin $bundle -> $host (binary, bundle, unit)"
  echo "--- svit-edge.service"
  echo "$unit"
  exit 0
fi
tmp="/tmp/svit-edge-deploy.$$"
ssh "$host" "mkdir -p $tmp"
scp -q "$bin" "$host:$tmp/svit-edge"
scp -qr "$bundle" "$host:$tmp/$name"
printf '%s\n' "$unit" | ssh "$host" "cat > $tmp/svit-edge.service"
[ -z "$key" ] || scp -q "$key" "$host:$tmp/key"
[ -z "$trust" ] || scp -q "$trust" "$host:$tmp/trust.pub"
ssh -t "$host" "set -e
  sudo install -m 755 $tmp/svit-edge /usr/local/bin/svit-edge
  sudo mkdir -p /opt/svit-edge/models /etc/svit-edge
  sudo rm -rf /opt/svit-edge/models/$name && sudo cp -r $tmp/$name /opt/svit-edge/models/$name
  if [ -f $tmp/key ]; then sudo install -m 640 -g $user $tmp/key /etc/svit-edge/key; fi
  if [ -f $tmp/trust.pub ]; then sudo install -m 644 $tmp/trust.pub /etc/svit-edge/trust.pub; fi
  sudo install -m 644 $tmp/svit-edge.service /etc/systemd/system/svit-edge.service
  sudo systemctl daemon-reload
  sudo systemctl enable --now svit-edge
  sudo systemctl restart svit-edge
  rm -rf $tmp
  systemctl --no-pager status svit-edge | head -5"
echo "deployed: journalctl -u svit-edge -f on $host shows its log"
