#!/usr/bin/env bash
# Does a second datapath thread pay off on this machine? One TCP stream vm1 -> vm2
# (iperf3) through:
#
#   relay-1      examples/tap_relay --threads 1: one thread polls both TAPs, switches each
#                frame (vnet_switch::Switch behind a mutex) and writes it
#   relay-2      examples/tap_relay --threads 2: one thread per TAP, each reading its TAP and
#                writing the other (each carries its direction's receiving stack)
#   switchd-w0   switchd --writer-threads 0: the event loop writes every port
#   switchd-w2   switchd --writer-threads 2 (the default): TAPs without offloads are written
#                by writer threads (TAPs with offloads by the loop either way)
#
# each with TAP offloads on and off (--no-offloads on both TAPs), runs interleaved, median
# of RUNS; with the process's CPU use (user + system, % of one CPU).
#
#   DURATION  iperf3 -t seconds (default 5)     RUNS  runs per case (default 3)
#
# Runs as root; builds release binaries first. Everything it creates (namespaces, TAPs,
# processes, temp dir) is removed on exit. Addresses 10.77.0.0/24 exist only in its own
# namespaces.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
die() { echo "bench-threads: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "creates namespaces and TAPs: run as root"
[[ $DURATION =~ ^[1-9][0-9]*$ && $RUNS =~ ^[1-9][0-9]*$ ]] || die "DURATION and RUNS: positive integers"
for cmd in ip iperf3 python3; do command -v "$cmd" >/dev/null || die "needs $cmd"; done

echo "== building (cargo build --release --bins --example tap_relay)" >&2
cargo build --release --bins --example tap_relay >&2
R=$root/target/release

t=bt$$
tmp=$(mktemp -d "/tmp/bench-threads.$t.XXXXXX")
export VNET_RUN_DIR=$tmp/run VNET_STATE_DIR=$tmp/state
mkdir -p "$VNET_RUN_DIR" "$VNET_STATE_DIR"
pids=()
namespaces=()
cleanup() {
  local rc=$? p
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for p in "${namespaces[@]}"; do ip netns del "$p" 2>/dev/null; done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for() {
  local i
  for ((i = 0; i < 100; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# one case: $1 = name, $2 = relay-1|relay-2|switchd-w0|switchd-w2, $3 = "" or --no-offloads
# prints "<bits/s> <retransmits> <cpu %>"
run_case() {
  local kind=$2 flags=$3 p=$t$RANDOM pid n
  for n in host vm1 vm2; do ip netns add "$p-$n"; namespaces+=("$p-$n"); ip -n "$p-$n" link set lo up; done
  case $kind in
    relay-*)
      # shellcheck disable=SC2086
      "$R/examples/tap_relay" --threads "${kind#relay-}" $flags "$p-vm1" "$p-vm2" 2>"$tmp/relay.log" &
      pid=$!
      wait_for ip -n "$p-vm2" link show eth0 || die "tap_relay: $(cat "$tmp/relay.log")"
      ;;
    switchd-w*)
      echo "<network xmlns:vnet='https://vnet.dev/xmlns/network/1'><name>$p</name><vnet:host-port enabled='no'/></network>" >"$tmp/$p.xml"
      ip netns exec "$p-host" "$R/switchd" --config "$tmp/$p.xml" --writer-threads "${kind#switchd-w}" \
        >"$tmp/switchd.log" 2>&1 &
      pid=$!
      wait_for test -S "$VNET_RUN_DIR/$p.ctl" || die "switchd: $(cat "$tmp/switchd.log")"
      for n in 1 2; do
        # shellcheck disable=SC2086
        "$R/switchctl" port-add "$p" tap --name "vm$n" --netns "$p-vm$n" --ifname eth0 $flags >/dev/null
      done
      ;;
  esac
  pids+=("$pid")
  for n in 1 2; do
    ip -n "$p-vm$n" addr add "10.77.0.$n/24" dev eth0
    ip -n "$p-vm$n" link set eth0 up
  done
  ip netns exec "$p-vm2" iperf3 -s -1 -B 10.77.0.2 >/dev/null 2>&1 &
  local server=$!
  wait_for sh -c "ip netns exec '$p-vm2' ss -Hltn 'sport = :5201' | grep -q ." || die "iperf3 server"
  wait_for ip netns exec "$p-vm1" ping -c1 -W1 10.77.0.2 || die "no path through $kind"
  local c0 c1 hz
  hz=$(getconf CLK_TCK)
  c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  ip netns exec "$p-vm1" iperf3 -c 10.77.0.2 -t "$DURATION" -J >"$tmp/out.json" || die "iperf3 through $kind"
  c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  wait "$server" 2>/dev/null || true
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  for n in host vm1 vm2; do ip netns del "$p-$n"; done
  python3 - "$tmp/out.json" "$((c1 - c0))" "$hz" "$DURATION" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["end"]
print(e["sum_received"]["bits_per_second"], e["sum_sent"].get("retransmits", 0),
      round(100 * int(sys.argv[2]) / int(sys.argv[3]) / int(sys.argv[4])))
PY
}

echo "== one TCP stream vm1 -> vm2, iperf3 -t $DURATION, $RUNS runs each, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "kernel $(uname -r), $(nproc) CPUs, git $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
kinds=(relay-1 relay-2 switchd-w0 switchd-w2)
declare -A res=()
for ((r = 1; r <= RUNS; r++)); do
  for off in on off; do
    flags=""
    [ "$off" = off ] && flags=--no-offloads
    for k in "${kinds[@]}"; do
      read -r bps retr cpu < <(run_case x "$k" "$flags")
      res[$k/$off]="${res[$k/$off]:-} $bps:$cpu"
      printf 'run %d/%d  offloads %-3s  %-11s %6.2f Gbit/s  retr %6s  CPU %3s%%\n' "$r" "$RUNS" "$off" "$k" \
        "$(python3 -c "print($bps / 1e9)")" "$retr" "$cpu"
    done
  done
done
echo
args=()
for off in on off; do for k in "${kinds[@]}"; do args+=("$k/$off" "${res[$k/$off]}"); done; done
python3 - "${args[@]}" <<'PY'
import statistics, sys
a = sys.argv[1:]
med = {}
for name, vals in zip(a[0::2], a[1::2]):
    pairs = [v.split(":") for v in vals.split()]
    g = statistics.median(float(b) / 1e9 for b, _ in pairs)
    c = statistics.median(float(c) for _, c in pairs)
    med[name] = g
    print(f"{name:<16} {g:6.2f} Gbit/s  CPU {c:4.0f}%")
for off in ("on", "off"):
    print(f"offloads {off}: relay 2 threads / 1 thread {med['relay-2/' + off] / med['relay-1/' + off]:.2f}   "
          f"switchd writers / none {med['switchd-w2/' + off] / med['switchd-w0/' + off]:.2f}")
PY
