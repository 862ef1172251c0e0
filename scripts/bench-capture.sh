#!/usr/bin/env bash
# Does a capture whose reader stopped reading slow the switch? iperf3 TCP vm1 -> vm2 through
# one switchd, runs interleaved: without a capture, and with `switchctl capture NET --all -w -`
# piped into a reader that never reads (the pipe fills, switchctl blocks, switchd's buffer for
# the capture fills to its bound and it drops and counts frames). Prints the medians, the ratio
# and the capture's drop count.
#
# Environment: DURATION (iperf3 -t, default 5), RUNS (default 3), SWITCHD / SWITCHCTL
# (default target/release/*, rebuilt first).
#
# Runs as root. Namespaces <t>-host, <t>-vm1, <t>-vm2 (t = vc<pid>), processes and the temp dir
# are removed on exit, also on failure. Addresses 10.77.0.0/24 live only in its namespaces.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
SWITCHD_GIVEN=${SWITCHD:-}
SWITCHD=${SWITCHD:-$root/target/release/switchd}
SWITCHCTL=${SWITCHCTL:-$root/target/release/switchctl}
die() { echo "bench-capture: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "creates namespaces and TAPs: run as root"
for cmd in ip iperf3 python3; do command -v "$cmd" >/dev/null || die "needs $cmd"; done
if [ -z "$SWITCHD_GIVEN" ]; then
  echo "== cargo build --release --bins" >&2
  cargo build --release --bins >&2
fi

t=vc$$
tmp=$(mktemp -d "/tmp/bench-capture.$t.XXXXXX")
export VNET_RUN_DIR=$tmp/run VNET_STATE_DIR=$tmp/state
mkdir -p "$VNET_RUN_DIR" "$VNET_STATE_DIR"
pids=()
cleanup() {
  local rc=$? p
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for ns in "$t-vm1" "$t-vm2" "$t-host"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for ns in "$t-host" "$t-vm1" "$t-vm2"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
net=cap
xml=$tmp/net.xml
echo "<network><name>$net</name><bridge name='vcbr0'/></network>" >"$xml"
ip netns exec "$t-host" "$SWITCHD" --config "$xml" 2>"$tmp/switchd.log" &
pids+=($!)
for ((i = 0; i < 100; i++)); do [ -S "$VNET_RUN_DIR/$net.ctl" ] && break; sleep 0.1; done
for v in 1 2; do
  "$SWITCHCTL" port-add "$net" tap --netns "$t-vm$v" --ifname eth0 >/dev/null
  ip -n "$t-vm$v" addr add "10.77.0.$v/24" dev eth0
  ip -n "$t-vm$v" link set eth0 up
done
ip netns exec "$t-vm2" iperf3 -s -p 5201 >/dev/null 2>&1 &
pids+=($!)
for ((i = 0; i < 50; i++)); do
  ip netns exec "$t-vm1" ping -c 1 -W 1 10.77.0.2 >/dev/null 2>&1 && break
done

run_iperf() {
  ip netns exec "$t-vm1" iperf3 -c 10.77.0.2 -p 5201 -t "$DURATION" -J |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])'
}

echo "== capture with a stalled reader vs none: iperf3 -t $DURATION, $RUNS runs each, $(date -u +%FT%TZ)"
echo "switchd: $("$SWITCHD" --version) ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
: >"$tmp/none"
: >"$tmp/stalled"
for ((r = 1; r <= RUNS; r++)); do
  bps=$(run_iperf)
  echo "$bps" >>"$tmp/none"
  printf 'run %d  no capture       %7.2f Gbit/s\n' "$r" "$(python3 -c "print($bps/1e9)")"
  # a capture whose reader never reads: `sleep` holds the pipe's read end
  ( "$SWITCHCTL" capture "$net" --all -w - 2>>"$tmp/capture.err" | sleep $((DURATION + 30)) ) \
    2>/dev/null &
  cap=$!
  sleep 1
  bps=$(run_iperf)
  echo "$bps" >>"$tmp/stalled"
  printf 'run %d  stalled capture  %7.2f Gbit/s\n' "$r" "$(python3 -c "print($bps/1e9)")"
  pkill -TERM -P "$cap" 2>/dev/null || true
  kill -TERM "$cap" 2>/dev/null || true
  wait "$cap" 2>/dev/null || true
  sleep 1
done
python3 - "$tmp/none" "$tmp/stalled" <<'EOF'
import statistics, sys
a = [float(x) for x in open(sys.argv[1])]
b = [float(x) for x in open(sys.argv[2])]
ma, mb = statistics.median(a), statistics.median(b)
print(f"median: no capture {ma/1e9:.2f} Gbit/s (min {min(a)/1e9:.2f}, max {max(a)/1e9:.2f}); "
      f"stalled capture {mb/1e9:.2f} Gbit/s (min {min(b)/1e9:.2f}, max {max(b)/1e9:.2f}); "
      f"ratio {mb/ma:.2f}")
EOF
echo "switchd's capture log lines:"
grep -h "capture" "$tmp/switchd.log" | sed 's/^/  /' || true
