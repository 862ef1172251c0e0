#!/usr/bin/env bash
# Counts switchd's heap allocations (libc malloc calls, through a perf uprobe) while
# frames flow: two guests in namespaces on two TAPs, 2 s of iperf3 64-byte UDP, then 2 s
# of TCP, with switchd's counters for scale. The datapath allocates nothing per frame in
# steady state, so both counts stay near 0 (a few while buffer pools fill up at start).
#
#   scripts/count-mallocs.sh                  # TAPs with offloads
#   PA=--no-offloads scripts/count-mallocs.sh # TAPs without (writer threads, software segmentation)
#
# Environment: SWITCHD, SWITCHCTL (default target/release/*, built first), PA (port-add
# flags), SWFLAGS (switchd flags). Runs as root; needs perf, iperf3. Everything it makes
# (namespaces, the uprobe if it added it, processes) is removed on exit. Addresses
# 10.77.0.0/24 exist only inside its namespaces.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
die() { echo "count-mallocs: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "creates namespaces and TAPs: run as root"
for c in perf iperf3 ip python3; do command -v $c >/dev/null || die "needs $c"; done
if [ -z "${SWITCHD:-}" ]; then cargo build --release --bins >&2; fi
SW=${SWITCHD:-$root/target/release/switchd}
CTL=${SWITCHCTL:-$root/target/release/switchctl}
libc=$(ldd "$SW" | awk '/libc\.so/ {print $3}')
[ -n "$libc" ] || die "switchd does not link libc dynamically"

p=cm$$
tmp=$(mktemp -d "/tmp/count-mallocs.$p.XXXXXX")
export VNET_RUN_DIR=$tmp/run VNET_STATE_DIR=$tmp/state
mkdir -p "$VNET_RUN_DIR" "$VNET_STATE_DIR"
pid="" server="" added_probe=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  [ -n "$added_probe" ] && perf probe -q -d probe_libc:malloc 2>/dev/null || true
  sleep 0.3
  for x in host vm1 vm2; do ip netns del "$p-$x" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
have=$(perf probe -l 2>/dev/null || true)
if [[ $have != *probe_libc:malloc* ]]; then
  perf probe -q -x "$libc" malloc || die "cannot add a uprobe on malloc in $libc"
  added_probe=1
fi
for x in host vm1 vm2; do ip netns add "$p-$x"; ip -n "$p-$x" link set lo up; done
echo "<network xmlns:vnet='https://vnet.dev/xmlns/network/1'><name>$p</name><vnet:host-port enabled='no'/></network>" >"$tmp/$p.xml"
# shellcheck disable=SC2086
ip netns exec "$p-host" "$SW" --config "$tmp/$p.xml" ${SWFLAGS:-} >"$tmp/switchd.log" 2>&1 &
pid=$!
for _ in $(seq 50); do [ -S "$VNET_RUN_DIR/$p.ctl" ] && break; sleep 0.1; done
[ -S "$VNET_RUN_DIR/$p.ctl" ] || die "switchd did not start: $(cat "$tmp/switchd.log")"
for i in 1 2; do
  # shellcheck disable=SC2086
  "$CTL" port-add "$p" tap --name "vm$i" --netns "$p-vm$i" --ifname eth0 ${PA:-} >/dev/null
  ip -n "$p-vm$i" addr add "10.77.0.$i/24" dev eth0
  ip -n "$p-vm$i" link set eth0 up
done
ip netns exec "$p-vm2" iperf3 -s -p 5299 >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do ip netns exec "$p-vm1" ping -c1 -W1 10.77.0.2 >/dev/null && break; sleep 0.2; done
sleep 0.5
frames() {
  "$CTL" port-list "$p" --json | python3 -c 'import json,sys; print(sum(x["counters"]["rx_frames"] for x in json.load(sys.stdin)))'
}
echo "switchd $("$SW" --version 2>/dev/null || true), port-add flags: ${PA:-(none)}, switchd flags: ${SWFLAGS:-(none)}"
for mode in udp tcp; do
  a=()
  [ "$mode" = udp ] && a=(-u -l 64 -b 0)
  before=$(frames)
  perf stat -e probe_libc:malloc -p "$pid" -x, -o "$tmp/perf.$mode" -- sleep 3 &
  ps=$!
  sleep 0.2
  ip netns exec "$p-vm1" iperf3 -c 10.77.0.2 -p 5299 -t 2 "${a[@]}" >/dev/null
  wait "$ps"
  after=$(frames)
  n=$(awk -F, '/malloc/ {print $1}' "$tmp/perf.$mode")
  printf '%s: %s malloc calls in switchd while it switched %d frames\n' "$mode" "$n" $((after - before))
done
