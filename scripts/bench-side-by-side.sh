#!/usr/bin/env bash
# Side-by-side TCP throughput: the same iperf3 test vm1 -> vm2 through three switches, in one run
# (and without offloads); then 64-byte UDP packets per second and ping RTT percentiles; then
# four guests with two clients of two streams each (aggregate, switchd CPU); then memory
# (switchd RSS with two idle ports, per TAP port, and the switch core per FDB entry and port);
# then the core microbench (criterion, known-unicast decisions per second by FDB size).
#
#   vnet          switchd in its own namespace, two TAPs (vnet_hdr + TSO offloads) created by
#                 `switchctl port-add ... tap --netns` directly in the guest namespaces
#   kernel bridge br0 in a host namespace, veth pairs (offloads on, the default)
#   vde_switch    vde_switch -t A -t B in a host namespace, each TAP moved into a guest namespace
#
# Every scenario gets its own three namespaces (<t>-host, <t>-vm1, <t>-vm2, t = vb<pid><n|k|d>),
# all three are set up first and the runs are interleaved (run i: vnet, bridge, vde), so noise on
# this shared machine spreads evenly. The median of RUNS runs is reported for each.
#
# Environment:
#   DURATION   iperf3 -t seconds (default 5)
#   RUNS       runs per scenario (default 3)
#   SWITCHD    switchd binary   (default target/release/switchd, rebuilt first)
#   SWITCHCTL  switchctl binary (default target/release/switchctl)
#   SWITCHD_BASE  a second switchd binary (say, one built from before a refactor): its TCP, UDP
#              and ping runs are interleaved with SWITCHD's in the same invocation, and the ratio
#              of the two is printed (a refactor's "no regression", measured side by side). The
#              two take turns going first (odd runs SWITCHD, even runs the base), so neither
#              always runs in the other's wake; use an even RUNS
#   PARTS      what to run besides the TCP, UDP and ping runs (default "four memory core": the
#              4-guest aggregate, memory, the core microbench); "" for an A/B of binaries
#
# Runs as root. Everything it creates (namespaces, interfaces, processes, temp dir) is removed on
# exit, also on failure or Ctrl-C. Addresses 10.77.0.0/24 live only inside its own namespaces.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
SWITCHD_GIVEN=${SWITCHD:-}
SWITCHD=${SWITCHD:-$root/target/release/switchd}
SWITCHD_BASE=${SWITCHD_BASE:-}
SWITCHCTL=${SWITCHCTL:-$root/target/release/switchctl}

die() { echo "bench-side-by-side: $*" >&2; exit 1; }
# shellcheck source=scripts/lib/common.sh
source "$root/scripts/lib/common.sh"

[ "$(id -u)" -eq 0 ] || die "creates namespaces and TAPs: run as root"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
for cmd in ip iperf3 vde_switch python3 ethtool timeout; do
  command -v "$cmd" >/dev/null 2>&1 || die "needs $cmd"
done
[ -e /dev/net/tun ] || die "needs /dev/net/tun"

if [ -z "${SWITCHD_GIVEN:-}" ]; then
  # always rebuild (a no-op when up to date), so the figures match the sources
  echo "== building switchd/switchctl (cargo build --release --bins)" >&2
  cargo build --release --bins >&2
fi
[ -x "$SWITCHD" ] || die "no switchd at $SWITCHD"
[ -z "$SWITCHD_BASE" ] || [ -x "$SWITCHD_BASE" ] || die "no switchd at SWITCHD_BASE=$SWITCHD_BASE"
[ -x "$SWITCHCTL" ] || die "no switchctl at $SWITCHCTL"

t=vb$$
tmp=$(mktemp -d "/tmp/bench-side-by-side.$t.XXXXXX")
export VNET_RUN_DIR=$tmp/run VNET_STATE_DIR=$tmp/state
mkdir -p "$VNET_RUN_DIR" "$VNET_STATE_DIR"

namespaces=()     # created namespaces, deleted last
servers=()        # iperf3 server pids
switchd_pids=()
vde_pid=""
vde_fd=""

cleanup() {
  local rc=$? pid ns
  set +e
  trap - ERR INT TERM
  for pid in "${servers[@]}"; do stop_child "$pid"; done
  # switchd removes its TAPs on SIGTERM; vde_switch's TAPs go when it closes them
  for pid in "${switchd_pids[@]}"; do stop_child "$pid"; done
  [ -n "$vde_pid" ] && stop_child "$vde_pid"
  [ -n "$vde_fd" ] && exec {vde_fd}>&-
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'echo "bench-side-by-side: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

# address the guests' eth0 (10.77.0.1 / .2) and bring them up
guests_up() {
  local p=$1
  ip -n "$p-vm1" addr add 10.77.0.1/24 dev eth0
  ip -n "$p-vm2" addr add 10.77.0.2/24 dev eth0
  ip -n "$p-vm1" link set eth0 up
  ip -n "$p-vm2" link set eth0 up
}

# iperf3 server in vm2, then a ping vm1 -> vm2 proves the path
start_server() {
  local p=$1
  ip netns exec "$p-vm2" iperf3 -s -B 10.77.0.2 -p 5201 >"$tmp/$p-server.log" 2>&1 &
  servers+=($!)
  wait_for "iperf3 server in $p-vm2" \
    sh -c "ip netns exec '$p-vm2' ss -Hltn 'sport = :5201' | grep -q ."
  wait_for "ping $p-vm1 -> $p-vm2" ip netns exec "$p-vm1" ping -c1 -W1 10.77.0.2
}

offloads() {
  ip netns exec "$1-vm1" ethtool -k eth0 |
    awk -F': ' '/^tx-checksumming|^tcp-segmentation-offload/ {printf "%s %s  ", $1, $2}'
}

# --- vnet: switchd + two TAPs made in the guest namespaces -------------------------------------
# $2, $3: extra port-add flags for vm1 and vm2 (--no-offloads: a TAP without offloads);
# $4: extra switchd flags; $5: the switchd binary (default $SWITCHD)
setup_vnet() {
  local p=$1 net=$1 pid bin=${5:-$SWITCHD}
  addns "$p-host"; addns "$p-vm1"; addns "$p-vm2"
  # a network of its own per scenario (no host port: it would need a distinct name)
  echo "<network xmlns:vnet='https://vnet.dev/xmlns/network/1'><name>$net</name><vnet:host-port enabled='no'/></network>" \
    >"$tmp/$net.xml"
  # shellcheck disable=SC2086
  ip netns exec "$p-host" "$bin" --config "$tmp/$net.xml" ${4:-} >"$tmp/switchd-$net.log" 2>&1 &
  pid=$!
  switchd_pids+=("$pid")
  wait_for "switchd control socket" test -S "$VNET_RUN_DIR/$net.ctl"
  kill -0 "$pid" || die "switchd exited: $(cat "$tmp/switchd-$net.log")"
  # shellcheck disable=SC2086
  "$SWITCHCTL" port-add "$net" tap --name vm1 --netns "$p-vm1" --ifname eth0 ${2:-} >/dev/null
  # shellcheck disable=SC2086
  "$SWITCHCTL" port-add "$net" tap --name vm2 --netns "$p-vm2" --ifname eth0 ${3:-} >/dev/null
  guests_up "$p"
}

# --- kernel bridge: br0 + veth pairs ---------------------------------------------------------
# $2 = plain: offloads off on every veth (the no-offload comparison)
setup_bridge() {
  local p=$1
  addns "$p-host"; addns "$p-vm1"; addns "$p-vm2"
  ip -n "$p-host" link add br0 type bridge
  ip -n "$p-host" link set br0 up
  local i
  for i in 1 2; do
    ip -n "$p-host" link add "v$i" type veth peer name eth0 netns "$p-vm$i"
    ip -n "$p-host" link set "v$i" master br0
    ip -n "$p-host" link set "v$i" up
  done
  guests_up "$p"
  if [ "${2:-}" = plain ]; then
    local ns dev
    for ns in "$p-host" "$p-vm1" "$p-vm2"; do
      for dev in $(ip -n "$ns" -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1); do
        ip netns exec "$ns" ethtool -K "$dev" tx off tso off gso off gro off >/dev/null 2>&1 || true
      done
    done
  fi
}

# --- vde_switch: two TAPs made in the host namespace, then moved into the guests -----------------
setup_vde() {
  local p=$1 a=${1}a b=${1}b
  addns "$p-host"; addns "$p-vm1"; addns "$p-vm2"
  # foreground vde_switch reads its console from stdin and quits on EOF: give it a FIFO
  # that this script keeps open (no extra process, and its pid is our child)
  mkfifo "$tmp/vde.in"
  exec {vde_fd}<>"$tmp/vde.in"
  ip netns exec "$p-host" vde_switch -s "$tmp/vde.sock" -M "$tmp/vde.mgmt" -t "$a" -t "$b" \
    <&"$vde_fd" >"$tmp/vde.log" 2>&1 &
  vde_pid=$!
  wait_for "vde_switch TAPs" ip -n "$p-host" link show "$b"
  wait_for "vde_switch TAPs" ip -n "$p-host" link show "$a"
  kill -0 "$vde_pid" || die "vde_switch exited: $(cat "$tmp/vde.log")"
  ip -n "$p-host" link set "$a" netns "$p-vm1"
  ip -n "$p-host" link set "$b" netns "$p-vm2"
  ip -n "$p-vm1" link set "$a" name eth0
  ip -n "$p-vm2" link set "$b" name eth0
  guests_up "$p"
}

# --- four guests: vm1 -> vm2 and vm3 -> vm4 at once (10.77.0.1-4) ----------------------------------
guests4_up() {
  local p=$1 i
  for i in 1 2 3 4; do
    ip -n "$p-vm$i" addr add "10.77.0.$i/24" dev eth0
    ip -n "$p-vm$i" link set eth0 up
  done
}
setup_vnet4() {
  local p=$1 net=$1 pid i
  addns "$p-host"
  for i in 1 2 3 4; do addns "$p-vm$i"; done
  echo "<network xmlns:vnet='https://vnet.dev/xmlns/network/1'><name>$net</name><vnet:host-port enabled='no'/></network>" \
    >"$tmp/$net.xml"
  ip netns exec "$p-host" "$SWITCHD" --config "$tmp/$net.xml" >"$tmp/switchd-$net.log" 2>&1 &
  pid=$!
  switchd_pids+=("$pid")
  wait_for "switchd control socket" test -S "$VNET_RUN_DIR/$net.ctl"
  for i in 1 2 3 4; do
    "$SWITCHCTL" port-add "$net" tap --name "vm$i" --netns "$p-vm$i" --ifname eth0 >/dev/null
  done
  guests4_up "$p"
}
setup_bridge4() {
  local p=$1 i
  addns "$p-host"
  ip -n "$p-host" link add br0 type bridge
  ip -n "$p-host" link set br0 up
  for i in 1 2 3 4; do
    addns "$p-vm$i"
    ip -n "$p-host" link add "v$i" type veth peer name eth0 netns "$p-vm$i"
    ip -n "$p-host" link set "v$i" master br0
    ip -n "$p-host" link set "v$i" up
  done
  guests4_up "$p"
}
start_servers4() {
  local p=$1 i
  for i in 2 4; do
    ip netns exec "$p-vm$i" iperf3 -s -B "10.77.0.$i" -p 5201 >"$tmp/$p-server$i.log" 2>&1 &
    servers+=($!)
    wait_for "iperf3 server in $p-vm$i" \
      sh -c "ip netns exec '$p-vm$i' ss -Hltn 'sport = :5201' | grep -q ."
  done
  wait_for "ping $p-vm1 -> $p-vm2" ip netns exec "$p-vm1" ping -c1 -W1 10.77.0.2
  wait_for "ping $p-vm3 -> $p-vm4" ip netns exec "$p-vm3" ping -c1 -W1 10.77.0.4
}
# CPU seconds (user + system) a process has used so far
cpu_secs() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}
# busy and total jiffies of the whole machine
machine_jiffies() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}
# two clients at once, 2 streams each; prints "<aggregate bits/s> <switchd CPU %> <machine busy %>"
# ($2: switchd pid, or - for none)
run_iperf4() {
  local p=$1 sw=$2 c0 c1 b0 t0 b1 t1 pids=() i
  [ "$sw" != - ] && c0=$(cpu_secs "$sw")
  read -r b0 t0 < <(machine_jiffies)
  for i in 1 3; do
    timeout --foreground -k 5 $((DURATION + 30)) ip netns exec "$p-vm$i" \
      iperf3 -c "10.77.0.$((i + 1))" -p 5201 -P 2 -t "$DURATION" -J >"$tmp/$p-c$i.json" 2>&1 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || return 1; done
  read -r b1 t1 < <(machine_jiffies)
  [ "$sw" != - ] && c1=$(cpu_secs "$sw")
  python3 - "$tmp/$p-c1.json" "$tmp/$p-c3.json" "${c0:-0}" "${c1:-0}" "$DURATION" \
    "$((b1 - b0))" "$((t1 - t0))" <<'PY'
import json, sys
a, b, c0, c1, d, busy, total = sys.argv[1:]
bps = sum(json.load(open(f))["end"]["sum_received"]["bits_per_second"] for f in (a, b))
print(bps, round(100 * (float(c1) - float(c0)) / float(d)), round(100 * int(busy) / max(int(total), 1)))
PY
}

# one iperf3 run: prints "<bits_per_second of sum_received> <retransmits>"
run_iperf() {
  local p=$1 out=$tmp/$1-client.json
  if ! timeout --foreground -k 5 $((DURATION + 30)) \
      ip netns exec "$p-vm1" iperf3 -c 10.77.0.2 -p 5201 -t "$DURATION" -J >"$out" 2>&1; then
    # iperf3 -J reports its error inside the JSON; show that, or the raw output if it is not JSON
    echo "bench-side-by-side: iperf3 through $p failed: $(python3 -c \
      'import json, sys; print(json.load(open(sys.argv[1])).get("error", "no error field"))' \
      "$out" 2>/dev/null || tail -n 5 "$out")" >&2
    return 1
  fi
  python3 - "$out" <<'EOF'
import json, sys
end = json.load(open(sys.argv[1]))["end"]
print(end["sum_received"]["bits_per_second"], end["sum_sent"].get("retransmits", "-"))
EOF
}

# --- machine info ---------------------------------------------------------------------------------
git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain 2>/dev/null)" ] && git_rev="$git_rev (dirty)"
echo "== side-by-side TCP vm1 -> vm2, iperf3 -t $DURATION, $RUNS runs each (interleaved), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "kernel:     $(uname -r)"
echo "cpus:       $(nproc) ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo))"
echo "tcp cc:     $(sysctl -n net.ipv4.tcp_congestion_control 2>/dev/null || echo unknown)"
echo "iperf3:     $(iperf3 --version 2>&1 | head -1)"
echo "vde_switch: $(vde_switch -v 2>&1 | head -1)"
echo "switchd:    $("$SWITCHD" --version 2>&1 | head -1), git $git_rev"
[ -n "$SWITCHD_BASE" ] && echo "base:       $SWITCHD_BASE"

names=(vnet bridge vde vnetplain bridgeplain vnetmixed)
declare -A prefix=([vnet]=${t}n [bridge]=${t}k [vde]=${t}d [vnetplain]=${t}p [bridgeplain]=${t}b
  [vnetmixed]=${t}m [vnetbusy]=${t}y [vnetbase]=${t}o)
declare -A label=(
  [vnet]="vnet (switchd, TAP+vnet_hdr)"
  [bridge]="kernel bridge (veth)"
  [vde]="vde_switch (TAP)"
  [vnetplain]="vnet, no offloads both"
  [bridgeplain]="kernel bridge, no offloads"
  [vnetmixed]="vnet, offloads -> none"
  [vnetbusy]="vnet, --busy-poll 20000"
  [vnetbase]="vnet, base binary"
)
# the switches of the UDP and ping runs
udp_names=(vnet bridge vde vnetbusy)
if [ -n "$SWITCHD_BASE" ]; then
  names=(vnet vnetbase "${names[@]:1}")
  udp_names=(vnet vnetbase bridge vde vnetbusy)
fi
PARTS=${PARTS-four memory core}
part() { [[ " $PARTS " == *" $1 "* ]]; }
# the order of run $1 over the names that follow: with a base binary, it goes first on even runs
in_order() {
  local r=$1
  shift
  local a=("$@")
  if [ -n "$SWITCHD_BASE" ] && ((r % 2 == 0)); then a[0]=vnetbase a[1]=vnet; fi
  echo "${a[@]}"
}

setup_vnet "${prefix[vnet]}"
vnet_pid=${switchd_pids[-1]}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
sleep 1
rss_idle=$(rss_kib "$vnet_pid")
setup_bridge "${prefix[bridge]}"
setup_vde "${prefix[vde]}"
setup_vnet "${prefix[vnetplain]}" --no-offloads --no-offloads
setup_bridge "${prefix[bridgeplain]}" plain
setup_vnet "${prefix[vnetmixed]}" "" --no-offloads
# the UDP and ping part only: switchd polling without sleeping for 20 ms after each frame
setup_vnet "${prefix[vnetbusy]}" "" "" "--busy-poll 20000"
start_server "${prefix[vnetbusy]}"
[ -n "$SWITCHD_BASE" ] && setup_vnet "${prefix[vnetbase]}" "" "" "" "$SWITCHD_BASE"
if part four; then
  setup_vnet4 "${t}q"
  vnet4_pid=${switchd_pids[-1]}
  setup_bridge4 "${t}r"
  start_servers4 "${t}q"
  start_servers4 "${t}r"
fi
for s in "${names[@]}"; do
  start_server "${prefix[$s]}"
  printf '%-30s vm1 eth0: %s\n' "${label[$s]}" "$(offloads "${prefix[$s]}")"
done
echo

declare -A samples=()
for ((r = 1; r <= RUNS; r++)); do
  for s in $(in_order "$r" "${names[@]}"); do
    run_iperf "${prefix[$s]}" >"$tmp/result" || die "run $r of $s failed"
    read -r bps retr <"$tmp/result" || die "run $r of $s gave no result"
    samples[$s]="${samples[$s]:-} $bps"
    printf 'run %d/%d  %-30s %6.2f Gbit/s  retr %s\n' "$r" "$RUNS" "${label[$s]}" \
      "$(python3 -c "print($bps / 1e9)")" "$retr"
    sleep 1
  done
done
echo

# 64-byte UDP packets per second (iperf3 -u -l 64 -b 0) and ping RTT, for the three
# switches with offloads as they come
run_udp() {
  local p=$1 out=$tmp/$1-udp.json
  timeout --foreground -k 5 $((DURATION + 30)) ip netns exec "$p-vm1" \
    iperf3 -c 10.77.0.2 -p 5201 -u -l 64 -b 0 -t "$DURATION" -J >"$out" 2>&1 || return 1
  python3 - "$out" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["end"]["sum"]
print(int((e["packets"] - e["lost_packets"]) / e["seconds"]))
PY
}
run_ping() {
  ip netns exec "$1-vm1" ping -c 300 -i 0.01 -W 1 10.77.0.2 |
    python3 -c '
import re, statistics, sys
t = sorted(float(m.group(1)) * 1000 for m in re.finditer(r"time=([0-9.]+) ms", sys.stdin.read()))
print(int(t[len(t) // 2]), int(t[int(len(t) * 0.99) - 1]))'
}
declare -A udp=() p50=() p99=()
for ((r = 1; r <= RUNS; r++)); do
  for s in $(in_order "$r" "${udp_names[@]}"); do
    pps=$(run_udp "${prefix[$s]}") || die "UDP run $r of $s failed"
    udp[$s]="${udp[$s]:-} $pps"
    read -r a b < <(run_ping "${prefix[$s]}")
    p50[$s]="${p50[$s]:-} $a"
    p99[$s]="${p99[$s]:-} $b"
    printf 'run %d/%d  %-30s UDP 64 B %8d pkt/s  ping p50 %4d us  p99 %5d us\n' "$r" "$RUNS" \
      "${label[$s]}" "$pps" "$a" "$b"
    sleep 1
  done
done
echo
for s in "${udp_names[@]}"; do
  python3 - "${label[$s]}" "${udp[$s]}" "${p50[$s]}" "${p99[$s]}" <<'PY'
import statistics, sys
label, u, a, b = sys.argv[1:]
m = lambda v: statistics.median(float(x) for x in v.split())
print(f"{label:<30} UDP 64 B {m(u):9.0f} pkt/s   ping p50 {m(a):5.0f} us  p99 {m(b):6.0f} us")
PY
done
python3 - "${udp[vnet]}" "${udp[bridge]}" "${udp[vde]}" "${p50[vnet]}" "${p50[bridge]}" \
  "${udp[vnetbusy]}" "${p50[vnetbusy]}" "${p99[vnet]}" "${p99[bridge]}" "${p99[vnetbusy]}" <<'PY'
import statistics, sys
m = lambda v: statistics.median(float(x) for x in v.split())
vu, bu, du, vp, bp, yu, yp, v99, b99, y99 = (m(x) for x in sys.argv[1:])
print(f"UDP pkt/s vnet/bridge {vu / bu:.2f}   vde/bridge {du / bu:.2f}   ping p50 vnet - bridge {vp - bp:+.0f} us"
      f"   p99 {v99 - b99:+.0f} us")
print(f"with --busy-poll 20000: UDP pkt/s vnet/bridge {yu / bu:.2f}   ping p50 vnet - bridge {yp - bp:+.0f} us"
      f"   p99 {y99 - b99:+.0f} us")
PY
if [ -n "$SWITCHD_BASE" ]; then
  python3 - "${samples[vnet]}" "${samples[vnetbase]}" "${udp[vnet]}" "${udp[vnetbase]}" \
    "${p50[vnet]}" "${p50[vnetbase]}" "${p99[vnet]}" "${p99[vnetbase]}" <<'PY'
import statistics, sys
m = lambda v: statistics.median(float(x) for x in v.split())
nt, bt, nu, bu, n50, b50, n99, b99 = (m(x) for x in sys.argv[1:])
print(f"SWITCHD vs SWITCHD_BASE: TCP {nt / 1e9:.2f} vs {bt / 1e9:.2f} Gbit/s ({nt / bt:.2f}x), "
      f"UDP {nu:.0f} vs {bu:.0f} pkt/s ({nu / bu:.2f}x), ping p50 {n50 - b50:+.0f} us, p99 {n99 - b99:+.0f} us")
PY
fi
echo

# several TCP streams at once through four guests: vm1 -> vm2 and vm3 -> vm4, 2 streams each
declare -A agg=() cpu=() busy=()
part four &&
for ((r = 1; r <= RUNS; r++)); do
  for s in vnet4 bridge4; do
    if [ "$s" = vnet4 ]; then
      res=$(run_iperf4 "${t}q" "$vnet4_pid") || die "4-guest run $r of $s failed"
    else
      res=$(run_iperf4 "${t}r" -) || die "4-guest run $r of $s failed"
    fi
    read -r bps c m <<<"$res"
    agg[$s]="${agg[$s]:-} $bps"
    cpu[$s]="${cpu[$s]:-} $c"
    busy[$s]="${busy[$s]:-} $m"
    printf 'run %d/%d  %-30s %6.2f Gbit/s in all  switchd CPU %4s%%  machine busy %3s%%\n' "$r" "$RUNS" \
      "$([ "$s" = vnet4 ] && echo "vnet, 4 guests, 4 streams" || echo "bridge, 4 guests, 4 streams")" \
      "$(python3 -c "print($bps / 1e9)")" "$([ "$s" = vnet4 ] && echo "$c" || echo -)" "$m"
    sleep 1
  done
done
part four &&
python3 - "${agg[vnet4]}" "${agg[bridge4]}" "${cpu[vnet4]}" "${busy[vnet4]}" "${busy[bridge4]}" <<'PY'
import statistics, sys
m = lambda v: statistics.median(float(x) for x in v.split())
v, b, c, mv, mb = (m(x) for x in sys.argv[1:])
print(f"4 streams, 4 guests: vnet {v / 1e9:.2f} Gbit/s (switchd {c:.0f}% of a CPU, machine {mv:.0f}% busy), "
      f"bridge {b / 1e9:.2f} (machine {mb:.0f}% busy): vnet/bridge {v / b:.2f}")
PY
echo

# memory: switchd with two idle ports (measured before the runs), then per extra port
if part memory; then
extra=32
rss_before=$(rss_kib "$vnet_pid")
for ((i = 0; i < extra; i++)); do
  "$SWITCHCTL" port-add "${prefix[vnet]}" tap --name "${t}x$i" >/dev/null
done
sleep 1
rss_after=$(rss_kib "$vnet_pid")
for ((i = 0; i < extra; i++)); do "$SWITCHCTL" port-del "${prefix[vnet]}" "${t}x$i" >/dev/null; done
echo "switchd RSS: $((rss_idle / 1024)).$(( (rss_idle % 1024) * 10 / 1024 )) MiB with 2 idle ports;" \
  "$(( (rss_after - rss_before) / extra )) KiB per TAP port ($extra TAPs added after the runs)"
if [ -z "${SWITCHD_GIVEN:-}" ]; then
  cargo test -q -p vnet-switch --release --test memory -- --nocapture 2>/dev/null | grep '^switch core' || true
fi
echo
fi

# the core microbench (criterion): known-unicast decisions per second by FDB size; after
# the runs, once every namespace is idle (skipped with SWITCHD given or BENCH_CORE=0)
if part core && [ -z "${SWITCHD_GIVEN:-}" ] && [ "${BENCH_CORE:-1}" != 0 ]; then
  cargo bench -q --bench switch_core -- --noplot 2>/dev/null >"$tmp/criterion" || true
  python3 - "$tmp/criterion" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
# "known_unicast/65536_entries/64B\n   time: [...]\n   thrpt: [a Melem/s b Melem/s c Melem/s]"
for name, unit_lo, mid, unit in re.findall(
        r"known_unicast/(\S+)\s+time:.*?\n\s*thrpt:\s*\[\S+ (\S+) (\S+) (\S+)", text, re.S):
    scale = {"elem/s": 1, "Kelem/s": 1e3, "Melem/s": 1e6, "Gelem/s": 1e9}.get(unit, 0)
    print(f"core (criterion) known unicast {name:<24} {float(mid) * scale / 1e6:6.1f} M decisions/s")
PY
  echo
fi

args=()
for s in "${names[@]}"; do args+=("$s" "${label[$s]}" "${samples[$s]}"); done
python3 - "${args[@]}" <<'EOF'
import statistics, sys
a = sys.argv[1:]
med = {}
for name, label, vals in zip(a[0::3], a[1::3], a[2::3]):
    v = [float(x) / 1e9 for x in vals.split()]
    med[name] = statistics.median(v)
    print(f"{label:<30} {med[name]:6.2f} Gbit/s  (min {min(v):.2f} max {max(v):.2f})")
vnet, bridge, vde = med["vnet"], med["bridge"], med["vde"]
plain, bridgeplain, mixed = med["vnetplain"], med["bridgeplain"], med["vnetmixed"]
print(f"ratio vnet/bridge {vnet / bridge:.2f}   vnet/vde {vnet / vde:.2f}")
print(f"no offloads: vnet/vde {plain / vde:.2f}   vnet/bridge {plain / bridgeplain:.2f}")
print(f"offloads -> none (software segmentation): {mixed / vnet:.2f} of the offload figure")
EOF
