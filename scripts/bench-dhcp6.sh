#!/usr/bin/env bash
# Side-by-side DHCPv6: leases per second and the SOLICIT->ADVERTISE and REQUEST->REPLY
# times, vnet vs dnsmasq, in one run, both driven by ISC's perfdhcp -6 (Debian package
# kea-admin) as a directly attached client (SOLICIT to ff02::1:2 from its link-local
# address, a new DUID per client).
#
#   vnet      switchd's DHCPv6 server (the gateway's, from its link-local address), switchd
#             in its own namespace, the client's TAP made by `switchctl port-add ... tap
#             --netns`; leases written to the crash-safe lease database before each REPLY
#   dnsmasq   dnsmasq on a veth end in a server namespace, its lease file in the same temp
#             dir, DHCP transactions logged to a file (vnet logs each REPLY too)
#
# Range fd00:79::1:0-fd00:79::1:ffff (65536 addresses), lease 1 h. For each server, ROUNDS
# runs of perfdhcp at RATE 4-way exchanges/s for DURATION s with CLIENTS distinct DUIDs, each
# on a fresh server (empty lease database); the servers take turns (vnet, dnsmasq, ...).
# leases/s = REPLYs to REQUESTs received / DURATION; the delays are perfdhcp's averages.
#
# RS->RA: before perfdhcp, on the fresh server, rdisc6 (Debian ndisc6) sends SOLICITS router
# solicitations one after the other (-1: each waits for its advertisement); tcpdump in the
# client namespace timestamps both (kernel timestamps, microseconds), and each solicitation
# is paired with the first advertisement to the client's link-local address after it (the
# answers; unsolicited advertisements go to ff02::1). dnsmasq runs with --enable-ra, as
# libvirt starts it for an IPv6 network.
#
# Environment: DURATION (default 10), RATE (default 2000), CLIENTS (default 20000), ROUNDS
# (default 3), SOLICITS (default 50), SWITCHD, SWITCHCTL (default target/release/*, rebuilt
# first).
#
# Runs as root. Installs kea-admin, ndisc6, tcpdump and dnsmasq-base with apt-get if they
# are missing.
# Everything it creates (namespaces, veth, TAP, processes, temp dir) is removed on exit,
# also on failure or Ctrl-C. Addresses fd00:79::/64 live only inside its own namespaces.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

DURATION=${DURATION:-10}
RATE=${RATE:-2000}
CLIENTS=${CLIENTS:-20000}
ROUNDS=${ROUNDS:-3}
SOLICITS=${SOLICITS:-50}
SWITCHD_GIVEN=${SWITCHD:-}
SWITCHD=${SWITCHD:-$root/target/release/switchd}
SWITCHCTL=${SWITCHCTL:-$root/target/release/switchctl}

die() { echo "bench-dhcp6: $*" >&2; exit 1; }
# shellcheck source=scripts/lib/common.sh
source "$root/scripts/lib/common.sh"

[ "$(id -u)" -eq 0 ] || die "creates namespaces and TAPs: run as root"
for v in DURATION RATE CLIENTS ROUNDS SOLICITS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
missing=()
command -v perfdhcp >/dev/null 2>&1 || missing+=(kea-admin)
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq-base)
command -v rdisc6 >/dev/null 2>&1 || missing+=(ndisc6)
command -v tcpdump >/dev/null 2>&1 || missing+=(tcpdump)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; } ||
    die "cannot install ${missing[*]}"
fi
if [ -z "$SWITCHD_GIVEN" ]; then
  echo "== building switchd/switchctl (cargo build --release)" >&2
  cargo build --release --bin switchd --bin switchctl >&2
fi
[ -x "$SWITCHD" ] || die "no switchd at $SWITCHD"

t=b6$$
tmp=$(mktemp -d "/tmp/bench-dhcp6.$t.XXXXXX")
namespaces=()
server_pid=""
cleanup() {
  local rc=$? ns
  set +e
  [ -n "$server_pid" ] && stop_child "$server_pid"
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$tmp/net.xml" <<'EOF'
<network><name>b6</name>
  <ip address='10.79.0.1' netmask='255.255.255.0'/>
  <ip family='ipv6' address='fd00:79::1' prefix='64'>
    <dhcp><range start='fd00:79::1:0' end='fd00:79::1:ffff'/></dhcp>
  </ip>
</network>
EOF

# a client namespace whose eth0 has IPv6 on and a usable link-local address
v6_ready() { ip -n "$1" -6 addr show dev eth0 scope link | grep -v tentative | grep -q inet6; }

# starts a fresh server of kind $1 (vnet|dnsmasq); sets $client to its client namespace
start_server() {
  local kind=$1 n=$2
  if [ "$kind" = vnet ]; then
    local sw=${t}v$n cl=${t}c$n
    addns "$sw"
    addns "$cl"
    mkdir -p "$tmp/run$n"
    # perfdhcp's clients all come from one port: no per-port client bound (the default
    # of 32 would be what is measured)
    ip netns exec "$sw" "$SWITCHD" --config "$tmp/net.xml" --name "b6n$n" --run-dir "$tmp/run$n" \
      --state-dir "$tmp/state$n" --dhcp-max-clients-per-port 0 >"$tmp/switchd$n.log" 2>&1 &
    server_pid=$!
    wait_for "switchd" test -S "$tmp/run$n/b6n$n.ctl"
    "$SWITCHCTL" --run-dir "$tmp/run$n" port-add "b6n$n" tap --netns "$cl" --ifname eth0 >/dev/null
    ip -n "$cl" link set eth0 up
    client=$cl
  else
    local sv=${t}s$n cl=${t}d$n
    addns "$sv"
    addns "$cl"
    ip link add "${t}x$n" netns "$sv" type veth peer name eth0 netns "$cl"
    ip -n "$sv" addr add fd00:79::1/64 dev "${t}x$n" nodad
    ip -n "$sv" link set "${t}x$n" up
    ip -n "$cl" link set eth0 up
    ip netns exec "$sv" dnsmasq --no-daemon --conf-file=/dev/null --port=0 \
      --interface="${t}x$n" --bind-interfaces --dhcp-range=fd00:79::1:0,fd00:79::1:ffff,64,1h \
      --enable-ra \
      --dhcp-leasefile="$tmp/dnsmasq$n.leases" --dhcp-lease-max=70000 \
      --log-facility="$tmp/dnsmasq$n.log" --log-dhcp >"$tmp/dnsmasq$n.out" 2>&1 &
    server_pid=$!
    client=$cl
  fi
  wait_for "the client's link-local address" v6_ready "$client"
  sleep 0.5
}

# RS->RA against the running server; prints "median_us max_us answered"
measure_ra() {
  local pcap=$tmp/ra.pcap tpid i
  ip netns exec "$client" tcpdump -i eth0 -n -U --immediate-mode -w "$pcap" --time-stamp-precision=micro \
    'icmp6 and (ip6[40] == 133 or ip6[40] == 134)' >"$tmp/tcpdump.out" 2>&1 &
  tpid=$!
  wait_for "tcpdump" grep -q listening "$tmp/tcpdump.out"
  for ((i = 0; i < SOLICITS; i++)); do
    ip netns exec "$client" rdisc6 -1 -q -w 1000 eth0 >/dev/null 2>&1 || true
  done
  sleep 1
  stop_child "$tpid"
  tcpdump -r "$pcap" -n -tt --time-stamp-precision=micro 2>/dev/null >"$tmp/ra.txt" || true
  python3 - "$tmp/ra.txt" <<'PY'
import re, statistics, sys
lat, rs = [], None
for line in open(sys.argv[1]):
    m = re.match(r"([0-9.]+) IP6 (\S+) > (\S+): ICMP6, router (solicitation|advertisement)", line)
    if not m:
        continue
    t, dst, kind = float(m.group(1)), m.group(3).rstrip(":"), m.group(4)
    if kind == "solicitation":
        rs = t
    elif rs is not None and not dst.startswith("ff02"):
        lat.append((t - rs) * 1e6)
        rs = None
if lat:
    print(f"{statistics.median(lat):.0f} {max(lat):.0f} {len(lat)}")
else:
    print("nan nan 0")
PY
}

# perfdhcp -6 against the running server; prints "leases/s solicit_ms request_ms"
measure() {
  ip netns exec "$client" timeout $((DURATION + 20)) perfdhcp -6 -l eth0 -r "$RATE" \
    -p "$DURATION" -R "$CLIENTS" >"$tmp/perf.out" 2>&1 || true
  python3 - "$tmp/perf.out" "$DURATION" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
dur = float(sys.argv[2])
def section(name):
    m = re.search(r"Statistics for: " + name + r"\*+\n(.*?)(?:\n\n\*|\Z)", text, re.S)
    return m.group(1) if m else ""
def field(sec, key):
    m = re.search(key + r": ([0-9.]+)", sec)
    return float(m.group(1)) if m else 0.0
sa, rr = section("SOLICIT-ADVERTISE"), section("REQUEST-REPLY")
print(f"{field(rr, 'received packets') / dur:.0f} {field(sa, 'avg delay'):.3f} {field(rr, 'avg delay'):.3f}")
PY
}

echo "== DHCPv6 side by side: perfdhcp -6 -r $RATE -p $DURATION -R $CLIENTS, $ROUNDS rounds, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "perfdhcp: $(perfdhcp -v 2>&1 | head -1)"
echo "dnsmasq:  $(dnsmasq --version | head -1)"
echo "switchd:  $("$SWITCHD" --version 2>&1 | head -1), git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
declare -A lps=() sol=() req=() ra=()
n=0
for ((r = 1; r <= ROUNDS; r++)); do
  for kind in vnet dnsmasq; do
    n=$((n + 1))
    start_server "$kind" "$n"
    read -r rm rx ran < <(measure_ra)
    ra[$kind]="${ra[$kind]:-} $rm"
    printf 'round %d/%d  %-8s RS->RA median %s us, max %s us (%s of %d answered)\n' \
      "$r" "$ROUNDS" "$kind" "$rm" "$rx" "$ran" "$SOLICITS"
    read -r l s q < <(measure)
    stop_child "$server_pid"
    server_pid=""
    lps[$kind]="${lps[$kind]:-} $l"
    sol[$kind]="${sol[$kind]:-} $s"
    req[$kind]="${req[$kind]:-} $q"
    printf 'round %d/%d  %-8s %7s leases/s  SOLICIT->ADVERTISE %6s ms  REQUEST->REPLY %6s ms\n' \
      "$r" "$ROUNDS" "$kind" "$l" "$s" "$q"
  done
done
python3 - "${lps[vnet]}" "${lps[dnsmasq]}" "${sol[vnet]}" "${sol[dnsmasq]}" "${req[vnet]}" "${req[dnsmasq]}" "${ra[vnet]}" "${ra[dnsmasq]}" <<'PY'
import statistics, sys
m = lambda v: statistics.median(float(x) for x in v.split())
vl, dl, vs, ds, vr, dr, va, da = (m(x) for x in sys.argv[1:])
print(f"RS->RA median of the rounds' medians: vnet {va:.0f} us, dnsmasq {da:.0f} us")
print(f"vnet     {vl:7.0f} leases/s  SOLICIT->ADVERTISE {vs:.3f} ms  REQUEST->REPLY {vr:.3f} ms (medians)")
print(f"dnsmasq  {dl:7.0f} leases/s  SOLICIT->ADVERTISE {ds:.3f} ms  REQUEST->REPLY {dr:.3f} ms")
print(f"vnet/dnsmasq leases/s {vl / dl if dl else float('nan'):.2f}")
PY
