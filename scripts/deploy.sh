#!/usr/bin/env bash
# Build the svit-edge Debian package for a 64-bit ARM board, install it over ssh, write its
# /etc/svit-edge/edge.toml and start the service.
#
#   scripts/deploy.sh --host pi@raspberrypi.local --connect LAPTOP:7878 [options]
#
# Options:
#   --host USER@BOARD      ssh destination (required; USER needs sudo)
#   --bundle DIR           bundle to run (default models/demo, which the package carries;
#                          another is copied to /opt/svit-edge/models/)
#   --camera SPEC          svit-edge --camera (default arducam: SPI /dev/spidev0.0 and the
#                          board's header I2C bus, /dev/i2c-1 on a Pi, /dev/i2c-7 on a Jetson Orin)
#   --connect HOST:PORT    host to stream to, or
#   --listen ADDR:PORT     let the host dial the board (svit-host listen --board BOARD:PORT)
#   --key FILE             pre-shared key file, copied to /etc/svit-edge/key (recommended)
#   --trust FILE.pub       a bundle signing key (svit-export keygen), copied to
#                          /etc/svit-edge/trust.pub: the board then runs only bundles it signed
#   --glibc 2.31           link against an older glibc with cargo-zigbuild (JetPack 5 ships 2.31;
#                          JetPack 6, Ubuntu 22.04, ships 2.35 and needs it too)
#   --dry-run              print what would run and the edge.toml, touch nothing
set -euo pipefail
cd "$(dirname "$0")/.."

host="" bundle="models/demo" camera="arducam" link="" key="" trust="" glibc="" dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --host) host="$2"; shift 2 ;;
    --bundle) bundle="$2"; shift 2 ;;
    --camera) camera="$2"; shift 2 ;;
    --connect) link="connect = \"$2\""; shift 2 ;;
    --listen) link="listen = \"$2\""; shift 2 ;;
    --key) key="$2"; shift 2 ;;
    --trust) trust="$2"; shift 2 ;;
    --glibc) glibc="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
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
run scripts/package.sh --target "$target" --no-build --out target/deb
deb="target/deb/svit-edge_$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)-1_arm64.deb"

name="$(basename "$bundle")"
if [ "$(realpath "$bundle")" = "$(realpath models/demo)" ]; then
  board_bundle=/usr/share/svit-edge/models/demo
else
  board_bundle="/opt/svit-edge/models/$name"
fi
config="# Written by scripts/deploy.sh; \`svit-edge run --help\` lists every setting.
bundle = \"$board_bundle\"
store = \"/var/lib/svit-edge\"
camera = \"$camera\"
$link"
[ -z "$key" ] || config="$config
key = \"/etc/svit-edge/key\""
[ -z "$trust" ] || config="$config
trust = [\"/etc/svit-edge/trust.pub\"]"

if [ "$dry" = 1 ]; then
  echo "+ scp $deb${key:+ key}${trust:+ trust.pub} edge.toml -> $host"
  [ "$board_bundle" = /usr/share/svit-edge/models/demo ] || echo "+ scp -r $bundle -> $host:$board_bundle"
  echo "+ ssh $host sudo apt-get install ./$(basename "$deb"); install edge.toml; systemctl enable --now svit-edge"
  echo "--- /etc/svit-edge/edge.toml"
  echo "$config"
  exit 0
fi
tmp="/tmp/svit-edge-deploy.$$"
ssh "$host" "mkdir -p $tmp"
scp -q "$deb" "$host:$tmp/svit-edge.deb"
printf '%s\n' "$config" | ssh "$host" "cat > $tmp/edge.toml"
[ "$board_bundle" = /usr/share/svit-edge/models/demo ] || scp -qr "$bundle" "$host:$tmp/$name"
[ -z "$key" ] || scp -q "$key" "$host:$tmp/key"
[ -z "$trust" ] || scp -q "$trust" "$host:$tmp/trust.pub"
ssh -t "$host" "set -e
  sudo apt-get install -y -q $tmp/svit-edge.deb
  if [ -d $tmp/$name ]; then sudo mkdir -p /opt/svit-edge/models && sudo rm -rf $board_bundle && sudo cp -r $tmp/$name $board_bundle; fi
  if [ -f $tmp/key ]; then sudo install -m 640 -g svit-edge $tmp/key /etc/svit-edge/key; fi
  if [ -f $tmp/trust.pub ]; then sudo install -m 644 $tmp/trust.pub /etc/svit-edge/trust.pub; fi
  sudo install -m 644 $tmp/edge.toml /etc/svit-edge/edge.toml
  sudo systemctl enable --now svit-edge
  sudo systemctl restart svit-edge
  rm -rf $tmp
  systemctl --no-pager status svit-edge | head -5"
echo "deployed: journalctl -u svit-edge -f on $host shows its log"
