#!/usr/bin/env bash
# Side-by-side DNS: queries per second and latency, vnet vs dnsmasq, in one run, both driven by
# dnsperf (Debian package dnsperf) from a client namespace.
#
#   vnet     switchd's built-in DNS server, switchd in its own namespace, the client's TAP made
#            by `switchctl port-add ... tap --netns` in the client namespace. The client's
#            queries cross switchd's user-space switch to its gateway (192.168.122.1).
#   dnsmasq  dnsmasq on a veth end (192.168.122.1) in a server namespace, the client on the
#            peer end, with the options libvirt generates for the same network (see below).
#
# The path differs: vnet's includes its user-space switch and a TAP (every query and answer is
# read from and written to the TAP by switchd), dnsmasq's a kernel veth pair.
#
# Network (the same for both): domain vnet.test (localOnly), a <dns><host> record
# printer -> 192.168.122.200, one general forwarder 10.99.0.2. The forwarder is another dnsmasq
# in a "wan" namespace the script creates, answering every name under example.test with
# 10.1.2.3, TTL 3600 (`--address=/example.test/10.1.2.3 --local-ttl=3600`; longer than a
# whole run, so no cached answer expires during a measurement). It sits on a bridge in the
# wan namespace: switchd's namespace reaches it from 10.99.0.1, dnsmasq's from 10.99.0.3.
#
# Workloads (dnsperf data files):
#   local    `printer.vnet.test A`, answered from the network's own records (TTL 0 in both)
#   cached   `wwwNN.example.test A`, NAMES names (default 20; dnsmasq's cache holds 150),
#            forwarded once each before the measurements (warm-up with dig) and then answered
#            from the cache; the wan dnsmasq's query log proves no query reaches it during a
#            measurement (column "upstream")
#
# Measurements, each DURATION s (default 10), RUNS rounds (default 3); in every round each
# workload and mode runs on both servers back to back (vnet first in odd rounds, dnsmasq first
# in even ones), so noise on this shared machine spreads evenly:
#   qps      dnsperf -c 4 -q 100: loaded throughput (queries per second) and the average
#            latency under that load (mostly queueing inside dnsperf's 100 outstanding)
#   lat      dnsperf -c 1 -q 1: one query outstanding; average latency (min, max, stddev).
#            dnsperf 2.10 does not send the next query at once: in its source the receiver
#            thread wakes the sender before it counts the answer, so the sender can go back to
#            sleep until the receiver's next wake-up (a 100 ms poll timeout). It manages
#            20-1000 q/s instead of ~1/latency, a different number of queries in each run,
#            each query on idle CPUs.
#   pace     dnsperf -c 1 -q 10 -Q PACE: the same single queries at a steady PACE per second
#            (default 500: one every 2 ms, far apart from each other), PACE*DURATION samples
#
# Also recorded per measurement: queries lost (dnsperf -t TIMEOUT, default 5 s), the server's
# CPU time, UDP receive-buffer overflows in the client's and dnsmasq's namespace, frames the
# client's eth0 dropped on transmit (vnet: TAP frames switchd did not read in time), vnet's
# dns_stats counters (cache_hits, forwarded, dropped_*) and dnsmasq's hits.bind/misses.bind.
#
# Environment:
#   DURATION   dnsperf -l seconds per measurement (default 10)
#   RUNS       rounds (default 3)
#   NAMES      names of the cached workload (default 20, at most 150)
#   TIMEOUT    dnsperf -t seconds (default 5)
#   PACE       queries per second of the paced latency measurement (default 500)
#   NOISE      a second summary leaves out measurements during which other processes used
#              more than NOISE % of a CPU (default 15; other_cpu_pct in the per-run lines)
#   SWITCHD    switchd binary   (default target/release/switchd, rebuilt first)
#   SWITCHCTL  switchctl binary (default target/release/switchctl)
#
# Runs as root. Installs dnsperf, dnsmasq-base and bind9-dnsutils with apt-get if they are
# missing. Everything it creates (namespaces, veths, bridge, TAP, /etc/netns/<ns> files,
# processes, temp dir) carries this run's pid in its name and is removed on exit, also on
# failure or Ctrl-C. Addresses 192.168.122.0/24 and 10.99.0.0/24 live only inside its own
# namespaces; no query goes to the host's interfaces or resolvers.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
NAMES=${NAMES:-20}
TIMEOUT=${TIMEOUT:-5}
PACE=${PACE:-500}
NOISE=${NOISE:-15}
SWITCHD_GIVEN=${SWITCHD:-}
SWITCHD=${SWITCHD:-$root/target/release/switchd}
SWITCHCTL=${SWITCHCTL:-$root/target/release/switchctl}

die() { echo "bench-dns: $*" >&2; exit 1; }
# shellcheck source=scripts/lib/common.sh
source "$root/scripts/lib/common.sh"

[ "$(id -u)" -eq 0 ] || die "creates namespaces and TAPs: run as root"
for v in DURATION RUNS NAMES TIMEOUT PACE NOISE; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
[ "$NAMES" -le 150 ] || die "NAMES must be at most 150 (dnsmasq's default cache size)"

# the peer and the tools, from Debian's packages when missing
missing=()
command -v dnsperf >/dev/null 2>&1 || missing+=(dnsperf)
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq-base)
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; } ||
    die "cannot install ${missing[*]}"
fi
for cmd in ip ss dnsperf dnsmasq dig python3 timeout; do
  command -v "$cmd" >/dev/null 2>&1 || die "needs $cmd"
done
[ -e /dev/net/tun ] || die "needs /dev/net/tun"

if [ -z "${SWITCHD_GIVEN:-}" ]; then
  # always rebuild (a no-op when up to date), so the figures match the sources
  echo "== building switchd/switchctl (cargo build --release)" >&2
  cargo build --release --bin switchd --bin switchctl >&2
fi
[ -x "$SWITCHD" ] || die "no switchd at $SWITCHD"
[ -x "$SWITCHCTL" ] || die "no switchctl at $SWITCHCTL"

t=bn$$
tmp=$(mktemp -d "/tmp/bench-dns.$t.XXXXXX")
export VNET_RUN_DIR=$tmp/run
mkdir -p "$VNET_RUN_DIR" "$tmp/state"

net=$t                  # the vnet network's name (control socket $VNET_RUN_DIR/$net.ctl)
ns_wan=${t}-wan         # the upstream dnsmasq, 10.99.0.2 on a bridge
ns_sw=${t}v-sw          # switchd, 10.99.0.1 towards wan
ns_vc=${t}v-cli         # dnsperf on switchd's TAP eth0, 192.168.122.50
ns_ds=${t}d-srv         # dnsmasq, 192.168.122.1 on ${t}ds, 10.99.0.3 towards wan
ns_dc=${t}d-cli         # dnsperf on the veth peer eth0, 192.168.122.50
GW=192.168.122.1
UPSTREAM=10.99.0.2

namespaces=()     # created namespaces, deleted last
etc_netns=()      # /etc/netns/<ns> directories created
etc_netns_made="" # /etc/netns itself, when this run created it
[ -d /etc/netns ] || etc_netns_made=1
pids=()           # servers: upstream dnsmasq, switchd, dnsmasq
client_pid=""     # the running dnsperf
switchd_pid=""
dnsmasq_pid=""

cleanup() {
  local rc=$? ns pid d
  set +e
  trap - ERR INT TERM
  [ -n "$client_pid" ] && stop_child "$client_pid"
  # switchd removes its TAP on SIGTERM; the namespaces take the veths and the bridge with them
  for pid in "${pids[@]}"; do stop_child "$pid"; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  for d in "${etc_netns[@]}"; do rm -rf "$d"; done
  [ -n "$etc_netns_made" ] && rmdir /etc/netns 2>/dev/null
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'echo "bench-dns: failed at line $LINENO: ${BASH_COMMAND%%$'\n'*}" >&2' ERR

# addns (lib/common.sh), plus the namespace's own resolv.conf (which `ip netns exec`
# bind-mounts over /etc/resolv.conf): the wan upstream, never the host's resolvers
addns_resolv() {
  addns "$1"
  mkdir -p "/etc/netns/$1"
  etc_netns+=("/etc/netns/$1")
  echo "nameserver $UPSTREAM" >"/etc/netns/$1/resolv.conf"
}

for ns in "$ns_wan" "$ns_sw" "$ns_vc" "$ns_ds" "$ns_dc"; do addns_resolv "$ns"; done

# --- wan: bridge br0 with the upstream's address, a veth to each server namespace ----------------
ip -n "$ns_wan" link add br0 type bridge
ip -n "$ns_wan" addr add "$UPSTREAM/24" dev br0
ip -n "$ns_wan" link set br0 up
ip -n "$ns_sw" link add "${t}vw" type veth peer name "${t}wv" netns "$ns_wan"
ip -n "$ns_ds" link add "${t}dw" type veth peer name "${t}wd" netns "$ns_wan"
for p in "${t}wv" "${t}wd"; do
  ip -n "$ns_wan" link set "$p" master br0
  ip -n "$ns_wan" link set "$p" up
done
ip -n "$ns_sw" addr add 10.99.0.1/24 dev "${t}vw"
ip -n "$ns_sw" link set "${t}vw" up
ip -n "$ns_ds" addr add 10.99.0.3/24 dev "${t}dw"
ip -n "$ns_ds" link set "${t}dw" up

ip netns exec "$ns_wan" dnsmasq --conf-file=/dev/null --keep-in-foreground --no-hosts \
  --no-resolv --bind-interfaces --listen-address="$UPSTREAM" --except-interface=lo \
  --address=/example.test/10.1.2.3 --local-ttl=3600 --log-queries \
  --log-facility="$tmp/upstream.log" --pid-file="$tmp/upstream.pid" --user=root \
  2>>"$tmp/upstream.err" &
pids+=($!)
wait_for "upstream dnsmasq on $UPSTREAM:53" \
  sh -c "ip netns exec '$ns_wan' ss -Hlun 'sport = :53' | grep -q ."

# --- vnet: switchd in ns_sw, its TAP as eth0 in ns_vc ---------------------------------------------
cat >"$tmp/net.xml" <<EOF
<network>
  <name>$net</name>
  <forward mode='nat'/>
  <domain name='vnet.test' localOnly='yes'/>
  <dns>
    <forwarder addr='$UPSTREAM'/>
    <host ip='192.168.122.200'><hostname>printer</hostname></host>
  </dns>
  <ip address='$GW' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
  </ip>
</network>
EOF
ip netns exec "$ns_sw" "$SWITCHD" --name "$net" --run-dir "$VNET_RUN_DIR" \
  --state-dir "$tmp/state" --config "$tmp/net.xml" 2>"$tmp/switchd.log" &
switchd_pid=$!
pids+=("$switchd_pid")
wait_for "switchd control socket" test -S "$VNET_RUN_DIR/$net.ctl"
kill -0 "$switchd_pid" || die "switchd exited: $(cat "$tmp/switchd.log")"
"$SWITCHCTL" --run-dir "$VNET_RUN_DIR" port-add "$net" tap --name cli --netns "$ns_vc" \
  --ifname eth0 >/dev/null
ip -n "$ns_vc" addr add 192.168.122.50/24 dev eth0
ip -n "$ns_vc" link set eth0 up

# --- dnsmasq: on ${t}ds in ns_ds, the peer eth0 in ns_dc --------------------------------------------
# What libvirt generates for this network (networkxml2confdata/*.conf in libvirt's tests, and
# libvirt's network driver): strict-order; domain= + expand-hosts for <domain>; local=/vnet.test/
# for localOnly='yes'; no-resolv + server= for a general <forwarder addr>; except-interface=lo,
# bind-dynamic, interface=<bridge>; the <dns><host> records in an addn-hosts file (one
# "IP<TAB>name" line each). libvirt leaves cache-size at dnsmasq's default, 150. No DHCP here
# (not measured; switchd's idle DHCP server does not take part either).
ip -n "$ns_ds" link add "${t}ds" type veth peer name eth0 netns "$ns_dc"
ip -n "$ns_ds" addr add "$GW/24" dev "${t}ds"
ip -n "$ns_ds" link set "${t}ds" up
ip -n "$ns_dc" addr add 192.168.122.50/24 dev eth0
ip -n "$ns_dc" link set eth0 up
printf '192.168.122.200\tprinter\n' >"$tmp/addnhosts"
ip netns exec "$ns_ds" dnsmasq --conf-file=/dev/null --keep-in-foreground \
  --strict-order --domain=vnet.test --expand-hosts --local=/vnet.test/ \
  --no-resolv --server="$UPSTREAM" \
  --except-interface=lo --bind-dynamic --interface="${t}ds" \
  --addn-hosts="$tmp/addnhosts" --user=root --pid-file="$tmp/dnsmasq.pid" \
  --log-facility="$tmp/dnsmasq.log" 2>>"$tmp/dnsmasq.err" &
dnsmasq_pid=$!
pids+=("$dnsmasq_pid")
wait_for "dnsmasq on $GW:53" sh -c "ip netns exec '$ns_ds' ss -Hlun 'sport = :53' | grep -q '$GW'"
kill -0 "$dnsmasq_pid" || die "dnsmasq exited: $(cat "$tmp/dnsmasq.err")"

servers=(vnet dnsmasq)
declare -A client_ns=([vnet]=$ns_vc [dnsmasq]=$ns_dc)
declare -A server_pid=([vnet]=$switchd_pid [dnsmasq]=$dnsmasq_pid)
declare -A label=([vnet]="vnet switchd (TAP+switch)" [dnsmasq]="dnsmasq (libvirt-like, veth)")

# --- data files and checks ------------------------------------------------------------------------
echo "printer.vnet.test A" >"$tmp/local.txt"
: >"$tmp/cached.txt"
for ((i = 1; i <= NAMES; i++)); do
  printf 'www%03d.example.test A\n' "$i" >>"$tmp/cached.txt"
done

# dig from the client namespace of $1: the A answers of name $2, one per line
dig_a() {
  ip netns exec "${client_ns[$1]}" dig +tries=1 +time=2 +short "@$GW" "$2" A
}

upstream_count() {  # A queries for example.test names the wan dnsmasq has logged from $1
  grep -c "query\[A\] www[0-9]*\.example\.test from $1\$" "$tmp/upstream.log" || true
}
declare -A src_ip=([vnet]=10.99.0.1 [dnsmasq]=10.99.0.3)

for s in "${servers[@]}"; do
  wait_for "$s answering printer.vnet.test" sh -c \
    "ip netns exec '${client_ns[$s]}' dig +tries=1 +time=1 +short @$GW printer.vnet.test A |
       grep -qx 192.168.122.200"
  # the cache warm-up: every cached name forwarded once, then answered from the cache
  while read -r name _; do
    a=$(dig_a "$s" "$name")
    [ "$a" = 10.1.2.3 ] || die "$s: $name gave '$a', not 10.1.2.3"
  done <"$tmp/cached.txt"
  while read -r name _; do
    a=$(dig_a "$s" "$name")
    [ "$a" = 10.1.2.3 ] || die "$s: $name (second time) gave '$a'"
  done <"$tmp/cached.txt"
  n=$(upstream_count "${src_ip[$s]}")
  [ "$n" -eq "$NAMES" ] ||
    echo "bench-dns: warning: $s sent $n upstream queries for $NAMES names in the warm-up" >&2
done

# --- counters -------------------------------------------------------------------------------------
link_tx_dropped() {
  ip -n "$1" -s -j link show eth0 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["dropped"])'
}
udp_rcvbuf_errors() {
  ip netns exec "$1" awk '/^Udp:/ {n++; if (n == 2) print $6}' /proc/net/snmp
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# a server's own counters as "key=value" lines (totals since it started)
server_counters() {
  if [ "$1" = vnet ]; then
    "$SWITCHCTL" --run-dir "$VNET_RUN_DIR" --json net-info "$net" | python3 -c '
import json, sys
d = json.load(sys.stdin)["live"]["gateway"]["dns_stats"]
for k, v in sorted(d.items()):
    print(f"{k}={v}")'
  else
    # dnsmasq answers its statistics as CHAOS TXT records (each query adds one to hits)
    ip netns exec "$ns_dc" dig +tries=1 +time=2 +short "@$GW" hits.bind CH TXT \
      misses.bind CH TXT evictions.bind CH TXT | tr -d '"' |
      paste -sd' ' | awk '{print "hits=" $1; print "misses=" $2; print "evictions=" $3}'
  fi
}

# before/after snapshot of everything outside dnsperf, as "key=value" lines
snapshot() {
  local s=$1 ns=${client_ns[$1]}
  echo "cpu_ticks=$(cpu_ticks "${server_pid[$s]}")"
  echo "tx_dropped=$(link_tx_dropped "$ns")"
  echo "cli_rcvbuf=$(udp_rcvbuf_errors "$ns")"
  [ "$s" = dnsmasq ] && echo "srv_rcvbuf=$(udp_rcvbuf_errors "$ns_ds")"
  echo "upstream=$(upstream_count "${src_ip[$s]}")"
  server_counters "$s"
}

# one dnsperf run from the client namespace of $1 with data file $2 into $3; then dnsperf opts
run_dnsperf() {
  local s=$1 data=$2 out=$3 rc=0
  shift 3
  ip netns exec "${client_ns[$s]}" timeout -k 5 $((DURATION + TIMEOUT + 30)) \
    dnsperf -s "$GW" -d "$data" -l "$DURATION" -t "$TIMEOUT" "$@" >"$out" 2>&1 &
  client_pid=$!
  wait "$client_pid" || rc=$?
  client_pid=""
  [ "$rc" -eq 0 ] || { tail -n 5 "$out" >&2; die "dnsperf against $s failed ($rc)"; }
}

# the machine's CPU time so far: the shell's `times` (its second line: CPU of the reaped
# children, here dnsperf) and /proc/stat's cpu line. Runs in this shell (no subshell).
cpu_mark() {
  times
  head -n 1 /proc/stat
}

# dnsperf's report + the two snapshots + the two CPU marks -> "key=value" lines
parse_run() {
  python3 - "$@" "$(getconf CLK_TCK)" <<'EOF'
import re, sys
out, before, after, t0, t1 = sys.argv[1:6]
hz = float(sys.argv[6])
text = open(out).read()
def num(pat):
    m = re.search(pat, text)
    if not m:
        sys.exit(f"bench-dns: no '{pat}' in dnsperf's output {out}:\n{text[-800:]}")
    return float(m.group(1))
r = {}
r["sent"] = int(num(r"Queries sent:\s+(\d+)"))
r["completed"] = int(num(r"Queries completed:\s+(\d+)"))
r["lost"] = int(num(r"Queries lost:\s+(\d+)"))
qps = num(r"Queries per second:\s+([0-9.]+)")
r["qps"] = f"{qps:.0f}"
lat = {
    "avg": r"Average Latency \(s\):\s+([0-9.]+)",
    "min": r"Average Latency \(s\):.*min ([0-9.]+)",
    "max": r"Average Latency \(s\):.*max ([0-9.]+)",
    "sd": r"Latency StdDev \(s\):\s+([0-9.]+)",
}
for k, pat in lat.items():
    r[f"lat_{k}_us"] = f"{num(pat) * 1e6:.1f}"
m = re.search(r"Response codes:\s+(.*)", text)
r["rcodes"] = m.group(1).replace(" ", "_") if m else "-"
def kv(path):
    return dict(l.strip().split("=", 1) for l in open(path) if "=" in l)
b, a = kv(before), kv(after)
server = 0.0   # the server's CPU seconds over the run
for k in a:
    if k in b:
        try:
            d = float(a[k]) - float(b[k])
        except ValueError:
            continue
        if k == "cpu_ticks":
            server = d / hz
            run_s = max(num(r"Run time \(s\):\s+([0-9.]+)"), 1e-9)
            r["srv_cpu_pct"] = f"{server / run_s * 100:.0f}"
        elif k in ("in_flight", "cache_entries", "lease_names"):
            continue
        elif d or k in ("upstream", "tx_dropped", "cli_rcvbuf", "srv_rcvbuf"):
            r[k] = int(d)
# CPU over the run, in % of one CPU: dnsperf (the shell's reaped children), the server
# (cpu_ticks above), other processes on the machine (user+nice+system time minus those
# two: a noise indicator), interrupts/softirqs (the packets' kernel path, when the kernel
# accounts it apart from the processes), and the time the hypervisor took (steal)
def mark(path):
    lines = open(path).read().split("\n")
    u, sy = (float(m) * 60 + float(x) for m, x in re.findall(r"(\d+)m([0-9.]+)s", lines[1]))
    f = [float(x) / hz for x in lines[2].split()[1:]]
    return u + sy, f[0] + f[1] + f[2], f[5] + f[6], f[7]
run_s = max(num(r"Run time \(s\):\s+([0-9.]+)"), 1e-9)
c0, p0, i0, st0 = mark(t0)
c1, p1, i1, st1 = mark(t1)
client = c1 - c0
pct = lambda x: f"{x / run_s * 100:.0f}"
r["cli_cpu_pct"] = pct(client)
r["other_cpu_pct"] = pct(max(p1 - p0 - client - server, 0))
r["irq_pct"] = pct(i1 - i0)
r["steal_pct"] = pct(st1 - st0)
# CPU per answered query: the server's, and the machine's (server + dnsperf + irq/softirq)
if r["completed"]:
    r["srv_us_q"] = f"{server / r['completed'] * 1e6:.2f}"
    r["all_us_q"] = f"{(server + client + i1 - i0) / r['completed'] * 1e6:.2f}"
for k, v in r.items():
    print(f"{k}={v}")
EOF
}

# --- machine info ---------------------------------------------------------------------------------
git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git --no-optional-locks status --porcelain 2>/dev/null)" ] && git_rev="$git_rev (dirty)"
echo "== side-by-side DNS ($(date -u +%Y-%m-%dT%H:%MZ)): dnsperf -l $DURATION, $RUNS rounds"
echo "kernel:   $(uname -r)"
echo "cpus:     $(nproc) ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo))"
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg)$(pgrep -x -d, 'cargo|rustc' >/dev/null &&
  echo "  (warning: cargo/rustc running)")"
echo "dnsperf:  $(dnsperf -h 2>&1 | sed -n 's/^Version //p') ($(dpkg-query -W -f='${Version}' dnsperf 2>/dev/null || echo '?'))"
echo "dnsmasq:  $(dnsmasq --version | head -1)"
echo "dig:      $(dig -v 2>&1 | head -1)"
echo "switchd:  $("$SWITCHD" --version 2>&1 | head -1) ($SWITCHD, built $(date -u -r "$SWITCHD" +%Y-%m-%dT%H:%MZ), sha256 $(sha256sum "$SWITCHD" | cut -c1-12)); checkout now at git $git_rev"
echo "rustc:    $(rustc --version 2>/dev/null || echo unknown)"
echo "workloads: local = printer.vnet.test A; cached = $NAMES names www001..www$(printf %03d "$NAMES").example.test A (TTL 3600, warmed up)"
echo "dnsperf:  qps: dnsperf -s $GW -d <workload> -l $DURATION -t $TIMEOUT -c 4 -q 100"
echo "          lat: dnsperf -s $GW -d <workload> -l $DURATION -t $TIMEOUT -c 1 -q 1"
echo "          pace: dnsperf -s $GW -d <workload> -l $DURATION -t $TIMEOUT -c 1 -q 10 -Q $PACE"
echo

declare -A wlabel=([local]="local name" [cached]="cached forwarded")
declare -A mopts=([qps]="-c 4 -q 100" [lat]="-c 1 -q 1" [pace]="-c 1 -q 10 -Q $PACE")
declare -A mlabel=([qps]="-c4 -q100" [lat]="-c1 -q1" [pace]="-Q$PACE")
results=()   # "server workload mode run key=value..." lines

for ((r = 1; r <= RUNS; r++)); do
  if ((r % 2)); then order=(vnet dnsmasq); else order=(dnsmasq vnet); fi
  for w in local cached; do
    for m in qps lat pace; do
      for s in "${order[@]}"; do
        base=$tmp/$s-$w-$m-$r
        snapshot "$s" >"$base.before"
        cpu_mark >"$base.t0"
        # shellcheck disable=SC2086  # mopts holds several options
        run_dnsperf "$s" "$tmp/$w.txt" "$base.out" ${mopts[$m]}
        cpu_mark >"$base.t1"
        snapshot "$s" >"$base.after"
        kill -0 "${server_pid[$s]}" 2>/dev/null ||
          die "$s died during $w $m: $(tail -n 20 "$tmp/switchd.log" "$tmp/dnsmasq.err" 2>/dev/null)"
        parse_run "$base.out" "$base.before" "$base.after" "$base.t0" "$base.t1" >"$base.kv"
        line=$(tr '\n' ' ' <"$base.kv")
        results+=("$s $w $m $r $line")
        printf 'run %d/%d  %-16s %-9s %-29s %s\n' "$r" "$RUNS" "${wlabel[$w]}" "${mlabel[$m]}" \
          "${label[$s]}" "$line"
        sleep 1
      done
    done
  done
done
echo

# anything switchd said besides its start-up lines
grep -v -E 'gateway |DHCP on |DNS on |running, control|port .* added' "$tmp/switchd.log" |
  head -n 10 | sed 's/^/  switchd: /' || true

# --- summary table --------------------------------------------------------------------------------
printf '%s\n' "${results[@]}" >"$tmp/results"
python3 - "$tmp/results" "${label[vnet]}" "${label[dnsmasq]}" "$PACE" "$NOISE" <<'EOF'
import statistics, sys
labels = {"vnet": sys.argv[2], "dnsmasq": sys.argv[3]}
pace, noise = sys.argv[4], float(sys.argv[5])
res = {}
for line in open(sys.argv[1]):
    s, w, m, r, *kv = line.split()
    res.setdefault((s, w, m), []).append(dict(x.split("=", 1) for x in kv))
clean = lambda d: float(d.get("other_cpu_pct", 0)) <= noise
rows = [
    ("QPS, dnsperf -c4 -q100", "qps", "qps", "q/s", ".0f"),
    ("avg latency under that load", "qps", "lat_avg_us", "us", ".0f"),
    ("server CPU per query under load", "qps", "srv_us_q", "us", ".1f"),
    ("machine CPU per query (+dnsperf,irq)", "qps", "all_us_q", "us", ".1f"),
    ("avg latency, 1 outstanding (-c1 -q1)", "lat", "lat_avg_us", "us", ".0f"),
    ("  queries answered per s at -c1 -q1", "lat", "qps", "q/s", ".0f"),
    (f"avg latency, paced (-c1 -q10 -Q{pace})", "pace", "lat_avg_us", "us", ".0f"),
]
def table(title, keep):
    def vals(s, w, m, k):
        return [float(d[k]) for d in res.get((s, w, m), []) if k in d and keep(d)]
    print(f"#### {title}")
    for w, wl in (("local", "local name (printer.vnet.test)"), ("cached", "cached forwarded names")):
        print(f"== {wl}: median (min / max) [samples]")
        print(f"{'':<38}{labels['vnet']:>34}{labels['dnsmasq']:>34}{'vnet/dnsmasq':>14}")
        for t, m, k, unit, fmt in rows:
            cells, meds = [], []
            for s in ("vnet", "dnsmasq"):
                v = vals(s, w, m, k)
                meds.append(statistics.median(v) if v else None)
                cells.append(f"{statistics.median(v):{fmt}} ({min(v):{fmt}} / {max(v):{fmt}}) "
                             f"{unit} [{len(v)}]" if v else "n/a")
            a, b = meds
            ratio = f"{a / b:.2f}" if a is not None and b else "n/a"
            print(f"{t:<38}{cells[0]:>34}{cells[1]:>34}{ratio:>14}")
        for s in ("vnet", "dnsmasq"):
            mn, mx = vals(s, w, "lat", "lat_min_us"), vals(s, w, "lat", "lat_max_us")
            lost = sum(sum(vals(s, w, m, "lost")) for m in ("qps", "lat", "pace"))
            if mn:
                print(f"  {labels[s]:<34} -q1 single query min {min(mn):.0f} us, max {max(mx):.0f} "
                      f"us; queries lost: {lost:.0f}")
        print()
table("all measurements", lambda d: True)
noisy = sum(1 for ds in res.values() for d in ds if not clean(d))
if noisy:
    table(f"only measurements while other processes used <= {noise:g} % of a CPU "
          f"({noisy} left out)", clean)
print("(QPS: higher is better; latency: lower is better. Per-run lines above: lost = dnsperf")
print(" timeouts; srv_/cli_cpu_pct = server / dnsperf CPU over the run (% of one CPU); other_cpu_pct =")
print(" other processes' CPU (noise); irq_pct, steal_pct; tx_dropped = client frames its eth0 dropped;")
print(" cli_rcvbuf/srv_rcvbuf = UDP receive-buffer overflows; upstream = queries the wan dnsmasq got;")
print(" other keys: the server's counters that changed (vnet dns_stats; dnsmasq hits/misses.bind))")
EOF
