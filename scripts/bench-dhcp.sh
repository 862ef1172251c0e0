#!/usr/bin/env bash
# Side-by-side DHCP: leases per second and the time of one DORA exchange, vnet vs dnsmasq, in
# one run, both driven by ISC's perfdhcp (Debian package kea-admin).
#
#   vnet              switchd's built-in DHCP server, switchd in its own namespace, the client's
#                     TAP made by `switchctl port-add ... tap --netns` in the client namespace
#   dnsmasq           dnsmasq on a veth end in a server namespace, run as libvirt runs it (ping
#                     check before each new offer, DHCP transactions logged, lease file)
#   dnsmasq --no-ping the same without the ping check (NOPING=0 leaves it out)
#
# Pool 10.77.0.10-10.77.255.250 (65521 addresses), lease 1 h, server 10.77.0.1/16, perfdhcp in
# the client namespace on eth0 = 10.77.0.2/16. Every measurement starts a fresh server with an
# empty lease database (both servers write their lease file into this run's temp dir, so on
# the same file system, and log one line per DHCP message to a file there), and runs the
# servers one after the other (vnet, dnsmasq, dnsmasq --no-ping):
#
#   new clients    offered RATE DORA/s for DURATION s, every DISCOVER from a new MAC: the lease
#                  table grows from 0 to whatever is served (RATE*DURATION at most)
#   250 clients    offered KNOWN_RATE DORA/s for DURATION s from 250 MACs cycling (a libvirt /24
#                  network's worth): after the first round every DORA renews a known lease
#   latency        LAT_RATE DORA/s for DURATION s, new clients: the time of each completed DORA
#                  (DISCOVER sent -> ACK received, from perfdhcp's per-exchange timestamps,
#                  -x t): median, min, max
#   one DORA       SINGLES single DORAs one after the other (a perfdhcp process each, new
#                  clients) on a fresh, idle server: what one booting VM sees
#
# leases/s = DHCPACKs received within perfdhcp's drop time (-d, 1 s) / DURATION.
#
# perfdhcp always acts as a relay agent (giaddr = its own address, hops 1, it listens on port
# 67), which vnet does not serve (relayed requests are out of its scope) and libvirt's VMs never
# are. So the script hands perfdhcp templates (-T) of a directly attached client: giaddr 0,
# hops 0, broadcast flag set, no client identifier (the lease is keyed by chaddr, which perfdhcp
# varies). The servers then broadcast their replies to 255.255.255.255:68, and one nft DNAT rule
# in the client namespace hands them to perfdhcp's socket (10.77.0.2:67). Both servers get the
# same templates and rule. (Without the broadcast flag the replies would be unicast to
# perfdhcp's made-up MACs, which the client's kernel drops, and dnsmasq would add one kernel ARP
# entry per client.)
#
# Environment:
#   DURATION      seconds per throughput/latency measurement (default 10)
#   RATE          offered DORA/s of 'new clients' (default 2000)
#   KNOWN_RATE    offered DORA/s of '250 clients' (default 4000)
#   LAT_RATE      offered DORA/s of 'latency' (default 20)
#   SINGLES       DORAs of 'one DORA' (default 5)
#   MEASUREMENTS  which of: new known lat one (default all four, in this order)
#   NOPING        1 (default): also measure dnsmasq --no-ping; 0: leave it out
#   SWITCHD       switchd binary   (default target/release/switchd, rebuilt first)
#   SWITCHCTL     switchctl binary (default target/release/switchctl)
#
# Runs as root. Installs kea-admin, dnsmasq-base and nftables with apt-get if they are missing.
# Everything it creates (namespaces, veth, TAP, nft tables, processes, temp dir) is removed on
# exit, also on failure or Ctrl-C. Addresses 10.77.0.0/16 live only inside its own namespaces.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

DURATION=${DURATION:-10}
RATE=${RATE:-2000}
KNOWN_RATE=${KNOWN_RATE:-4000}
LAT_RATE=${LAT_RATE:-20}
SINGLES=${SINGLES:-5}
NOPING=${NOPING:-1}
read -r -a measurements <<<"${MEASUREMENTS:-new known lat one}"
SWITCHD_GIVEN=${SWITCHD:-}
SWITCHD=${SWITCHD:-$root/target/release/switchd}
SWITCHCTL=${SWITCHCTL:-$root/target/release/switchctl}

die() { echo "bench-dhcp: $*" >&2; exit 1; }
# shellcheck source=scripts/lib/common.sh
source "$root/scripts/lib/common.sh"

[ "$(id -u)" -eq 0 ] || die "creates namespaces and TAPs: run as root"
for v in DURATION RATE KNOWN_RATE LAT_RATE SINGLES; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
[ "$SINGLES" -le 255 ] || die "SINGLES must be at most 255"
[[ $NOPING =~ ^[01]$ ]] || die "NOPING must be 0 or 1"
[ ${#measurements[@]} -gt 0 ] || die "MEASUREMENTS is empty"
for m in "${measurements[@]}"; do
  [[ $m =~ ^(new|known|lat|one)$ ]] || die "MEASUREMENTS: unknown measurement '$m'"
done
POOL=65521
[ $((RATE * DURATION)) -le "$POOL" ] ||
  echo "bench-dhcp: warning: RATE*DURATION > $POOL: the pool may run out during 'new clients'" >&2

# the peer and the tools, from Debian's packages when missing
missing=()
command -v perfdhcp >/dev/null 2>&1 || missing+=(kea-admin)
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq-base)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; } ||
    die "cannot install ${missing[*]}"
fi
for cmd in ip ss perfdhcp dnsmasq nft python3 timeout; do
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

t=bd$$
tmp=$(mktemp -d "/tmp/bench-dhcp.$t.XXXXXX")
export VNET_RUN_DIR=$tmp/run
mkdir -p "$VNET_RUN_DIR"

net=$t                  # the vnet network's name (control socket $VNET_RUN_DIR/$net.ctl)
ns_sw=${t}v-sw          # switchd
ns_vc=${t}v-cli         # perfdhcp, on switchd's TAP
ns_ds=${t}d-srv         # dnsmasq
ns_dc=${t}d-cli         # perfdhcp, on the veth peer
veth=${t}s              # dnsmasq's end of the veth pair (the client's end is eth0)

namespaces=()     # created namespaces, deleted last
server_pid=""     # the running switchd or dnsmasq
client_pid=""     # the running perfdhcp

cleanup() {
  local rc=$? ns
  set +e
  trap - ERR INT TERM
  [ -n "$client_pid" ] && stop_child "$client_pid"
  # switchd removes its TAP on SIGTERM; the namespaces take the veth and nft tables with them
  [ -n "$server_pid" ] && stop_child "$server_pid"
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
nl=$'\n'
# the failed command's first line (a heredoc command would print its whole text)
trap 'echo "bench-dhcp: failed at line $LINENO: ${BASH_COMMAND%%"$nl"*}" >&2' ERR

# perfdhcp's side in namespace $1: eth0 up with 10.77.0.2/16 (outside the pool), and the DNAT
# rule that hands the servers' broadcast replies (-> 255.255.255.255:68) to perfdhcp's socket
client_side() {
  local ns=$1
  ip -n "$ns" addr replace 10.77.0.2/16 dev eth0
  ip -n "$ns" link set eth0 up
  # (re)created whole: the vnet client namespace gets here once per switchd start
  ip netns exec "$ns" nft -f - <<'EOF'
table ip bench_dhcp
delete table ip bench_dhcp
table ip bench_dhcp {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 255.255.255.255 udp sport 67 udp dport 68 dnat to 10.77.0.2:67
  }
}
EOF
}

# perfdhcp templates of a directly attached client (RFC 2131 header, 300 bytes): giaddr 0,
# hops 0, flags 0x8000 (broadcast), chaddr at 28..33 (perfdhcp writes the MAC there: -O 33 is
# its last octet), xid at 4 (-X 4), secs at 8 (-E 8); the REQUEST carries option 50 at 243
# (-I 243) and option 54 at 249 (-S 249), which perfdhcp fills in from the OFFER
python3 - "$tmp" <<'EOF'
import sys
def template(msg_type, opts):
    b = bytearray(240)
    b[0:4] = bytes([1, 1, 6, 0])           # BOOTREQUEST, Ethernet, hlen 6, hops 0
    b[10] = 0x80                           # broadcast flag
    b[28:34] = bytes([2, 0, 0, 0, 0, 0])   # chaddr, overwritten by perfdhcp
    b[236:240] = bytes([99, 130, 83, 99])  # magic cookie
    b += bytes([53, 1, msg_type]) + opts + bytes([55, 4, 1, 3, 6, 15, 255])
    b += bytes(300 - len(b))
    return b.hex()
open(sys.argv[1] + "/discover.hex", "w").write(template(1, b""))
open(sys.argv[1] + "/request.hex", "w").write(
    template(3, bytes([50, 4, 0, 0, 0, 0, 54, 4, 0, 0, 0, 0])))
EOF
template_args=(-T "$tmp/discover.hex" -T "$tmp/request.hex" -X 4 -X 4 -O 33 -O 33 -E 8
  -I 243 -S 249)

# --- vnet: switchd in ns_sw, its TAP as eth0 in ns_vc ------------------------------------------
# DNS off (no DNS service, no option 6), as dnsmasq with --port=0 below
cat >"$tmp/net.xml" <<EOF
<network>
  <name>$net</name>
  <forward mode='nat'/>
  <dns enable='no'/>
  <ip address='10.77.0.1' prefix='16'>
    <dhcp><range start='10.77.0.10' end='10.77.255.250'/></dhcp>
  </ip>
</network>
EOF

start_vnet() {
  rm -rf "$tmp/vnet-state"
  mkdir -p "$tmp/vnet-state"
  # every client of the benchmark comes from one port: no per-port client bound (the
  # default of 32 would be what is measured)
  ip netns exec "$ns_sw" "$SWITCHD" --name "$net" --config "$tmp/net.xml" \
    --state-dir "$tmp/vnet-state" --dhcp-max-clients-per-port 0 2>"$tmp/switchd.log" &
  server_pid=$!
  wait_for "switchd control socket" test -S "$VNET_RUN_DIR/$net.ctl"
  kill -0 "$server_pid" || die "switchd exited: $(cat "$tmp/switchd.log")"
  "$SWITCHCTL" port-add "$net" tap --name "$t" --netns "$ns_vc" --ifname eth0 >/dev/null
  client_side "$ns_vc"
  wait_for "gateway 10.77.0.1 from $ns_vc" ip netns exec "$ns_vc" ping -c1 -W1 10.77.0.1
}

# --- dnsmasq: on $veth in ns_ds, the peer eth0 in ns_dc --------------------------------------
# libvirt's generated configuration (networkxml2confdata/*.conf in libvirt's tests):
# strict-order, except-interface=lo, bind-dynamic, interface=, dhcp-range, dhcp-no-override,
# dhcp-authoritative, dhcp-lease-max = the range's size. libvirt also passes --leasefile-ro
# --dhcp-script=libvirt_leaseshelper; here dnsmasq keeps its own lease file instead. --port=0:
# no DNS (not measured). DHCP transactions are logged (dnsmasq's default), to a file.
start_dnsmasq() {
  rm -f "$tmp/dnsmasq.leases"
  ip netns exec "$ns_ds" dnsmasq --conf-file=/dev/null --keep-in-foreground --port=0 \
    --strict-order --except-interface=lo --bind-dynamic --interface="$veth" \
    --dhcp-range=10.77.0.10,10.77.255.250,255.255.0.0,1h --dhcp-no-override \
    --dhcp-authoritative --dhcp-lease-max=$POOL --dhcp-leasefile="$tmp/dnsmasq.leases" \
    --log-facility="$tmp/dnsmasq.log" --pid-file="$tmp/dnsmasq.pid" "$@" \
    2>>"$tmp/dnsmasq.err" &
  server_pid=$!
  wait_for "dnsmasq on port 67" \
    sh -c "ip netns exec '$ns_ds' ss -Hlun 'sport = :67' | grep -q ."
  kill -0 "$server_pid" || die "dnsmasq exited: $(cat "$tmp/dnsmasq.err")"
}

start_server() {
  case $1 in
    vnet) start_vnet ;;
    dnsmasq) start_dnsmasq ;;
    noping) start_dnsmasq --no-ping ;;
  esac
}

stop_server() {
  [ -n "$server_pid" ] && stop_child "$server_pid"
  server_pid=""
}

addns "$ns_sw"; addns "$ns_vc"; addns "$ns_ds"; addns "$ns_dc"
ip -n "$ns_ds" link add "$veth" type veth peer name eth0 netns "$ns_dc"
ip -n "$ns_ds" addr add 10.77.0.1/16 dev "$veth"
ip -n "$ns_ds" link set "$veth" up
client_side "$ns_dc"

# one perfdhcp run from namespace $1 into $2 (output file); the rest are perfdhcp options
run_perfdhcp() {
  local ns=$1 out=$2 rc=0
  shift 2
  ip netns exec "$ns" timeout -k 5 $((DURATION + 30)) perfdhcp -4 -l eth0 \
    "${template_args[@]}" "$@" >"$out" 2>&1 &
  client_pid=$!
  wait "$client_pid" || rc=$?
  client_pid=""
  # 0: all exchanges completed, 3: some did not (drops): both are results
  [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || { tail -n 5 "$out" >&2; die "perfdhcp failed ($rc)"; }
}

# perfdhcp's reports (one or more files) -> "key=value" lines: do_*/ra_* counters summed,
# leases_s = ACKs received / DURATION, dora_* = times of the completed DORAs in ms
parse_perfdhcp() {
  python3 - "$DURATION" "$@" <<'EOF'
import re, statistics, sys
duration = float(sys.argv[1])
out, dora, legs_do, legs_ra = {}, [], [], []
def section(text, head):
    m = re.search(re.escape(head) + r"\*\*\*(.*?)(?=\*\*\*|\Z)", text, re.S)
    return m.group(1) if m else ""
def stamps(text, name):
    return [tuple(map(float, p)) for p in re.findall(
        r"sent / received: ([0-9.]+) / ([0-9.]+)", section(text, "Timestamps for packets: " + name))]
for path in sys.argv[2:]:
    text = open(path).read()
    for key, name in (("do", "DISCOVER-OFFER"), ("ra", "REQUEST-ACK")):
        body = section(text, "***Statistics for: " + name)
        for field, pat in (("sent", r"sent packets: (\d+)"), ("recv", r"received packets: (\d+)"),
                           ("drops", r"drops: (\d+)"), ("orphans", r"orphans: (\d+)")):
            v = re.search(pat, body)
            out[f"{key}_{field}"] = out.get(f"{key}_{field}", 0) + (int(v.group(1)) if v else 0)
    # pair each REQUEST-ACK with the DISCOVER-OFFER whose OFFER arrived last before the REQUEST
    # left (at the latency runs' low rates the exchanges do not overlap)
    do = sorted(stamps(text, "DISCOVER-OFFER"), key=lambda p: p[1])
    i = 0
    for req_sent, ack_recv in sorted(stamps(text, "REQUEST-ACK")):
        while i + 1 < len(do) and do[i + 1][1] <= req_sent:
            i += 1
        if do and do[i][1] <= req_sent:
            dora.append((ack_recv - do[i][0]) * 1000)
            legs_do.append((do[i][1] - do[i][0]) * 1000)
            legs_ra.append((ack_recv - req_sent) * 1000)
out["leases_s"] = f"{out['ra_recv'] / duration:.1f}"
if dora:
    out["dora_n"] = len(dora)
    out["dora_med"] = f"{statistics.median(dora):.3f}"
    out["dora_min"] = f"{min(dora):.3f}"
    out["dora_max"] = f"{max(dora):.3f}"
    # the two legs of the completed DORAs: DISCOVER -> OFFER, and REQUEST -> ACK (which
    # includes making the lease durable)
    out["do_med"] = f"{statistics.median(legs_do):.3f}"
    out["do_max"] = f"{max(legs_do):.3f}"
    out["ra_med"] = f"{statistics.median(legs_ra):.3f}"
    out["ra_max"] = f"{max(legs_ra):.3f}"
for k, v in out.items():
    print(f"{k}={v}")
EOF
}

# counters outside perfdhcp, read before and after each run (the differences are reported):
# frames the client's link dropped on transmit (vnet: TAP frames switchd did not read in
# time), and UDP datagrams that found no room in a socket buffer in the server namespace
link_tx_dropped() {
  ip -n "$1" -s -j link show eth0 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["dropped"])'
}
udp_rcvbuf_errors() {
  ip netns exec "$1" awk '/^Udp:/ {n++; if (n == 2) print $6}' /proc/net/snmp
}

# the server's own view after a run: "key=value" lines; cpu_s = CPU seconds (user + system)
# the server used since it started (just before the run)
server_counters() {
  echo "cpu_s=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' \
    "/proc/$server_pid/stat")"
  if [ "$1" = vnet ]; then
    "$SWITCHCTL" --json net-info "$net" | python3 -c '
import json, sys
g = json.load(sys.stdin)["live"]["gateway"]
for k in ("dhcp_in", "dhcp_out", "dhcp_dropped", "leases"):
    print(f"{k}={g.get(k, 0)}")'
    echo "log_lines=$(grep -c DHCP "$tmp/switchd.log" || true)"
  else
    echo "leases=$(cat "$tmp/dnsmasq.leases" 2>/dev/null | grep -c . || true)"
    echo "log_lines=$(cat "$tmp/dnsmasq.log" 2>/dev/null | grep -c DHCP || true)"
  fi
}

# --- machine info ---------------------------------------------------------------------------------
git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain 2>/dev/null)" ] && git_rev="$git_rev (dirty)"
echo "== side-by-side DHCP ($(date -u +%Y-%m-%dT%H:%MZ)): ${measurements[*]}"
echo "   perfdhcp -p $DURATION; offered DORA/s: new $RATE, 250 clients $KNOWN_RATE, latency $LAT_RATE; one DORA x $SINGLES"
echo "kernel:   $(uname -r)"
echo "cpus:     $(nproc) ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo))"
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg)$(pgrep -x -d, 'cargo|rustc' >/dev/null &&
  echo "  (warning: cargo/rustc running)")"
# both servers make each lease durable with fsync/fdatasync: its latency on this file system
# bounds them, and it varies between runs on a shared disk
fsync_probe() {
  python3 - "$tmp" <<'EOF'
import os, statistics, sys, time
path = os.path.join(sys.argv[1], "fsync.probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
t = []
for _ in range(200):
    t0 = time.perf_counter()
    os.write(fd, b"grant 1767225600 52:54:00:12:34:56 10.77.0.10 - -\n")
    os.fdatasync(fd)
    t.append((time.perf_counter() - t0) * 1e6)
os.close(fd)
os.unlink(path)
t.sort()
print(f"append+fdatasync median {statistics.median(t):.0f} us, p90 {t[179]:.0f} us")
EOF
}
echo "lease fs: $(df -T "$tmp" | awk 'NR == 2 {print $2, $1}') ($tmp): $(fsync_probe)"
echo "perfdhcp: $(perfdhcp -v 2>&1 | head -1)"
echo "dnsmasq:  $(dnsmasq --version | head -1)"
echo "switchd:  $("$SWITCHD" --version 2>&1 | head -1) ($SWITCHD), checkout at git $git_rev"

servers=(vnet dnsmasq)
[ "$NOPING" = 1 ] && servers+=(noping)
declare -A label=(
  [vnet]="vnet switchd"
  [dnsmasq]="dnsmasq (libvirt-like, ping)"
  [noping]="dnsmasq --no-ping"
)
declare -A client_ns=([vnet]=$ns_vc [dnsmasq]=$ns_dc [noping]=$ns_dc)

# measurement -> its perfdhcp options ('one' runs these SINGLES times, a new MAC each time)
declare -A mopts=(
  [new]="-p $DURATION -W 1000000 -r $RATE -R 1000000 -b mac=02:77:00:00:00:00"
  [known]="-p $DURATION -W 1000000 -r $KNOWN_RATE -R 250 -b mac=02:78:00:00:00:00"
  [lat]="-p $DURATION -W 1000000 -r $LAT_RATE -R 1000000 -b mac=02:79:00:00:00:00 -x t -d 5"
  [one]="-r 1 -n 1 -n 1 -W 5000000 -d 5 -x t"
)
declare -A mlabel=([new]="new clients" [known]="250 clients" [lat]="latency" [one]="one DORA")

kv() { sed -n "s/^$2=//p" "$1"; }

declare -A res=()
for m in "${measurements[@]}"; do
  for s in "${servers[@]}"; do
    ns=${client_ns[$s]}
    out=$tmp/$s-$m
    rm -f "$tmp/switchd.log" "$tmp/dnsmasq.log"
    start_server "$s"
    tx0=$(link_tx_dropped "$ns")
    rb0=$(udp_rcvbuf_errors "$ns_ds")
    if [ "$m" = one ]; then
      files=()
      for ((k = 1; k <= SINGLES; k++)); do
        # shellcheck disable=SC2086  # mopts holds several options
        run_perfdhcp "$ns" "$out.$k.out" ${mopts[$m]} -b "mac=02:7a:00:00:00:$(printf %02x "$k")"
        files+=("$out.$k.out")
      done
      parse_perfdhcp "${files[@]}" >"$out.kv"
    else
      # shellcheck disable=SC2086
      run_perfdhcp "$ns" "$out.out" ${mopts[$m]}
      parse_perfdhcp "$out.out" >"$out.kv"
    fi
    server_counters "$s" >>"$out.kv"
    echo "link_tx_dropped=$(($(link_tx_dropped "$ns") - tx0))" >>"$out.kv"
    [ "$s" = vnet ] || echo "rcvbuf_errors=$(($(udp_rcvbuf_errors "$ns_ds") - rb0))" >>"$out.kv"
    if [ "$s" = vnet ]; then
      kill -0 "$server_pid" 2>/dev/null ||
        die "switchd died during $m: $(tail -n 20 "$tmp/switchd.log")"
      # anything switchd said besides its per-message DHCP lines and its start-up lines
      grep -v -E 'switchd: DHCP(DISCOVER|OFFER|REQUEST|ACK|NAK)\(|gateway |DHCP on |running, control|port .* added' \
        "$tmp/switchd.log" | head -n 5 | sed "s/^/  [$m] /" >&2 || true
    fi
    stop_server
    res[$s,$m]=$(tr '\n' ' ' <"$out.kv")
    case $m in
      lat | one)
        printf '%-12s %-30s DORA median %9s ms  min %9s  max %9s  (%s of %s completed)\n' \
          "${mlabel[$m]}" "${label[$s]}" "$(kv "$out.kv" dora_med)" "$(kv "$out.kv" dora_min)" \
          "$(kv "$out.kv" dora_max)" "$(kv "$out.kv" dora_n)" "$(kv "$out.kv" do_sent)" ;;
      *)
        printf '%-12s %-30s %8s leases/s  DO %s/%s RA %s/%s (received/sent)  leases %s\n' \
          "${mlabel[$m]}" "${label[$s]}" "$(kv "$out.kv" leases_s)" "$(kv "$out.kv" do_recv)" \
          "$(kv "$out.kv" do_sent)" "$(kv "$out.kv" ra_recv)" "$(kv "$out.kv" ra_sent)" \
          "$(kv "$out.kv" leases)" ;;
    esac
    sleep 1
  done
done
echo

echo "lease fs after the runs: $(fsync_probe)"
echo

# --- summary table --------------------------------------------------------------------------------
summary_args=()
for s in "${servers[@]}"; do
  for m in "${measurements[@]}"; do
    summary_args+=("$s" "$m" "${res[$s,$m]}")
  done
done
python3 - "${label[vnet]}" "${label[dnsmasq]}" "${label[noping]}" "${summary_args[@]}" <<'EOF'
import sys
labels = {"vnet": sys.argv[1], "dnsmasq": sys.argv[2], "noping": sys.argv[3]}
r = {}
a = sys.argv[4:]
for s, m, kv in zip(a[0::3], a[1::3], a[2::3]):
    r[(s, m)] = dict(x.split("=", 1) for x in kv.split())
servers = [s for s in ("vnet", "dnsmasq", "noping") if any(k[0] == s for k in r)]
measured = [m for m in ("new", "known", "lat", "one") if (servers[0], m) in r]
def f(s, m, k):
    v = r.get((s, m), {}).get(k)
    return float(v) if v not in (None, "") else None
cols = {"new": "new clients", "known": "250 clients", "lat": "latency", "one": "one DORA"}
units = {"new": "leases/s", "known": "leases/s", "lat": "median ms", "one": "median ms"}
key = {"new": "leases_s", "known": "leases_s", "lat": "dora_med", "one": "dora_med"}
print(f"{'':<30}" + "".join(f"{cols[m]:>13}" for m in measured))
print(f"{'':<30}" + "".join(f"{units[m]:>13}" for m in measured))
def cell(v, m):
    if v is None:
        return f"{'none':>13}"
    return f"{v:13.1f}" if m in ("new", "known") else f"{v:13.3f}"
for s in servers:
    print(f"{labels[s]:<30}" + "".join(cell(f(s, m, key[m]), m) for m in measured))
for d in servers[1:]:
    cells = []
    for m in measured:
        a, b = f("vnet", m, key[m]), f(d, m, key[m])
        cells.append(f"{a / b:13.3g}" if a is not None and b else f"{'n/a':>13}")
    print(f"{'ratio vnet/' + ('dnsmasq' if d == 'dnsmasq' else 'no-ping'):<30}" + "".join(cells))
print("(leases/s: higher is better; DORA: lower is better; 'none': no exchange completed)")
print()
print("details (do_/ra_ = DISCOVER->OFFER / REQUEST->ACK; drops = not answered within perfdhcp's -d;")
print("  do_med.. ra_max: the legs of the completed DORAs, ms; link_tx_dropped: client frames its")
print("  link dropped; rcvbuf_errors: datagrams dnsmasq's socket had no room for; cpu_s: server CPU):")
for s in servers:
    for m in measured:
        kv = r[(s, m)]
        keys = [k for k in ("do_sent", "do_recv", "do_drops", "ra_sent", "ra_recv", "ra_drops",
                            "dora_min", "dora_max", "dora_n", "do_med", "do_max", "ra_med",
                            "ra_max", "dhcp_in", "dhcp_out",
                            "dhcp_dropped", "leases", "log_lines", "link_tx_dropped",
                            "rcvbuf_errors", "cpu_s") if k in kv]
        print(f"  {labels[s]:<28} {m:<5} " + " ".join(f"{k}={kv[k]}" for k in keys))
EOF
