#!/usr/bin/env bash
# Runs every test of vnet: formatting, lints, unit, property, doc and end-to-end tests,
# and a short run of each fuzz target.
# The end-to-end tests create network namespaces and TAP devices, so this runs as root.
# It installs the Debian packages the tests drive (ip, ping, tcpdump, iperf3, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: the end-to-end tests create namespaces and TAPs: run as root (sudo $0)" >&2
  exit 1
fi

# command -> Debian package
declare -A need=(
  [ip]=iproute2 [ping]=iputils-ping [tcpdump]=tcpdump [iperf3]=iperf3
  [ethtool]=ethtool [vde_switch]=vde2 [sysctl]=procps [ss]=iproute2
  [busybox]=busybox [dhclient]=isc-dhcp-client [dhcpcd]=dhcpcd-base [python3]=python3-minimal
  [dig]=bind9-dnsutils [dnsmasq]=dnsmasq-base [curl]=curl [setpriv]=util-linux
  [qemu-system-x86_64]=qemu-system-x86 [xz]=xz-utils [prlimit]=util-linux [rdisc6]=ndisc6
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# the metrics test reads the endpoint with the Prometheus client library's own parser
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null || missing+=(python3-prometheus-client)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -e /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200; }
# Debian's mode (udev rule): any user may open it; creating a device still needs
# CAP_NET_ADMIN, attaching to one's own persistent TAP does not (the unprivileged NAT test)
chmod 0666 /dev/net/tun

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
# one closing line over every test binary (cargo prints one "test result" per binary)
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
# the embeddable network needs no privilege: its test binaries (the in-memory harness,
# the counting-allocator run) again, as nobody with no capabilities
echo "== vnet-network's tests, unprivileged"
cargo test -p vnet-network --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] != "embed":
        print(m["executable"])' |
  while read -r t; do
    (cd /tmp && setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all "$t" -q)
  done
# a short run of every cargo-fuzz target against its seed corpus (FUZZ_SECONDS each, 20 by
# default; 0 skips); long runs: see fuzz/README.md
if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
  echo "== fuzz"
  scripts/fuzz.sh
fi
