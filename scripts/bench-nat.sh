#!/usr/bin/env bash
# Side-by-side NAT: one guest's TCP upload (guest -> wan), download (wan -> guest, iperf3 -R)
# and ping RTT to a wan host, through four NATs in one run:
#
#   vnet         switchd (NAT mode, libvirt's default network 192.168.122.0/24) in the host
#                namespace; the guest's eth0 is a TAP (vnet_hdr + TSO offloads) made by
#                `switchctl port-add NET tap --netns`; guest flows leave through host sockets
#   slirp4netns  in the host namespace, tap0 in its guest namespace (--configure, MTU 65520)
#   pasta        Debian's passt package, in the host namespace, its tap in its guest namespace
#                (--config-net: the guest gets the host's address and routes; MTU 65520)
#   kernel       a router namespace: veth to the guest, ip_forward and an nftables masquerade
#                rule (the ceiling: no user-space copy at all)
#
# Topology (t = nb<pid>; all namespaces made here, nothing is added to the caller's one):
#
#   t-w    the wan host: 10.200.1.1/32 on its lo (the remote every guest talks to), one
#          iperf3 -s per path; veth wh<pid> 10.98.0.2/24 to t-h, veth wk<pid> 10.98.1.2/24 to t-k
#   t-h    the host of the user-space NATs: hw<pid> 10.98.0.1/24, default route via 10.98.0.2;
#          switchd, slirp4netns and pasta all run here and open their sockets here
#   t-gv   vnet guest:  eth0 (TAP) 192.168.122.50/24, default via 192.168.122.1
#   t-gs   slirp guest: tap0 10.0.2.100/24, default via 10.0.2.2 (slirp4netns --configure)
#   t-gp   pasta guest: the host's 10.98.0.1/24, default via 10.98.0.2 (pasta --config-net)
#   t-k    kernel router: kw<pid> 10.98.1.1/24 (default via 10.98.1.2), kg<pid> 10.0.3.1/24,
#          ip_forward=1, nft table `ip t` masquerading what leaves kw<pid>
#   t-gk   kernel guest: eth0 (veth, offloads on) 10.0.3.50/24, default via 10.0.3.1
#
# The remote sits on the wan host's lo, one hop behind the host's gateway (10.98.0.2), not on
# the gateway address itself: pasta maps its guest's gateway address to the host's loopback
# (../shared/peers.md), so a server on 10.98.0.2 would be unreachable from its guest. All
# four paths use the same remote. The kernel NAT gets a router namespace of its own so that
# its nftables/conntrack hooks do not sit in the path of the user-space NATs' host sockets.
# The host namespace allows ping sockets (net.ipv4.ping_group_range, for that namespace only),
# which vnet, slirp4netns and pasta use for ICMP echo.
#
# Runs are interleaved (run i: vnet, slirp4netns, pasta, kernel; each upload, download, ping),
# so noise on this shared machine spreads evenly. Reported: the median of RUNS runs and min/max;
# ping: each run sends PINGS echo requests 10 ms apart; the table gives the median over the runs
# of each run's average RTT and of each run's median RTT (min/max over the runs). The forwarding process's CPU time during each iperf3 run is shown
# (% of one core; not for the kernel, whose work is softirq time).
#
# Environment:
#   DURATION   iperf3 -t seconds (default 5)
#   RUNS       runs per path (default 3)
#   PINGS      echo requests per ping run (default 100)
#   PATHS      which paths to measure (default "vnet slirp pasta kernel vnet6 pasta6 kernel6";
#              any subset). The IPv6 paths (iperf3 and ping to $REMOTE6 on the wan host's lo):
#              vnet6, the vnet guest's fd00:88::50 through the same switchd's NAT66
#              (<nat ipv6='yes'/>, prefix fd00:88::/64); pasta6, pasta -6 in a guest of its
#              own (the host's 2001:db8:98::1); kernel6, the router namespace forwarding
#              IPv6 with an nftables ip6 masquerade rule (guest fd00:77::50)
#   SWITCHD    switchd binary   (default target/release/switchd, rebuilt first)
#   SWITCHCTL  switchctl binary (default target/release/switchctl)
#   SWITCHD_BASE  a second switchd binary (say, one built from before a change): path "base",
#              a second network (192.168.124.0/24, guest .50) in the same host namespace, is
#              measured in the same runs, interleaved with the others, and the vnet/base ratios
#              are printed (a change's "no regression", side by side); PATHS then defaults to
#              "vnet base"
#   PASTA      pasta binary (default: pasta from PATH, Debian's passt package)
#   The binaries are copied to this run's temp dir before anything is measured, so a rebuild
#   of the checkout meanwhile cannot change them.
#
# Runs as root. Installs iperf3, slirp4netns, passt, nftables, ping and ethtool with apt-get if missing.
# Everything it creates (namespaces, veths, TAPs, the nft table, processes, temp dir) is
# removed on exit, also on failure or Ctrl-C. Addresses live only inside its own namespaces.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
SWITCHD_BASE=${SWITCHD_BASE:-}
if [ -n "$SWITCHD_BASE" ]; then
  PATHS=${PATHS:-vnet base}
  ALL="vnet base slirp pasta kernel"
else
  PATHS=${PATHS:-vnet slirp pasta kernel vnet6 pasta6 kernel6}
  ALL="vnet slirp pasta kernel"
fi
# the IPv6 paths are set up only when measured
V6=""
for s in $PATHS; do case $s in *6) V6=1 ;; esac; done
[ -n "$V6" ] && ALL="$ALL vnet6 pasta6 kernel6"
PINGS=${PINGS:-100}
SWITCHD_GIVEN=${SWITCHD:-}
SWITCHD=${SWITCHD:-$root/target/release/switchd}
SWITCHCTL=${SWITCHCTL:-$root/target/release/switchctl}

die() { echo "bench-nat: $*" >&2; exit 1; }
# shellcheck source=scripts/lib/common.sh
source "$root/scripts/lib/common.sh"
warn() { echo "bench-nat: warning: $*" >&2; }

[ "$(id -u)" -eq 0 ] || die "creates namespaces and TAPs: run as root"
for v in DURATION RUNS PINGS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done

# the peers and the tools, from Debian's packages when missing
missing=()
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
command -v slirp4netns >/dev/null 2>&1 || missing+=(slirp4netns)
[ -n "${PASTA:-}" ] || command -v pasta >/dev/null 2>&1 || missing+=(passt)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
command -v ethtool >/dev/null 2>&1 || missing+=(ethtool)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; } ||
    die "cannot install ${missing[*]}"
fi
PASTA=${PASTA:-$(command -v pasta || true)}
for cmd in ip ss iperf3 slirp4netns nft ping ethtool python3 timeout sysctl; do
  command -v "$cmd" >/dev/null 2>&1 || die "needs $cmd"
done
[ -x "$PASTA" ] || die "no pasta at '$PASTA'"
[ -e /dev/net/tun ] || die "needs /dev/net/tun"

if [ -z "$SWITCHD_GIVEN" ]; then
  # always rebuild (a no-op when up to date), so the figures match the sources
  echo "== cargo build --release --bin switchd --bin switchctl" >&2
  cargo build --release --bin switchd --bin switchctl >&2
fi
[ -x "$SWITCHD" ] || die "no switchd at $SWITCHD"
[ -x "$SWITCHCTL" ] || die "no switchctl at $SWITCHCTL"

t=nb$$
tmp=""
net=$t
REMOTE=10.200.1.1
REMOTE6=2001:db8:200::1

ns_w=$t-w ns_h=$t-h ns_k=$t-k
declare -A gns=([vnet]=$t-gv [base]=$t-gb [slirp]=$t-gs [pasta]=$t-gp [kernel]=$t-gk
  [vnet6]=$t-gv [pasta6]=$t-gp6 [kernel6]=$t-gk6)
declare -A port=([vnet]=5201 [slirp]=5202 [pasta]=5203 [kernel]=5204 [base]=5205
  [vnet6]=5206 [pasta6]=5207 [kernel6]=5208)
# where each path's iperf3 and ping go
declare -A remote_of=([vnet]=10.200.1.1 [base]=10.200.1.1 [slirp]=10.200.1.1 [pasta]=10.200.1.1
  [kernel]=10.200.1.1 [vnet6]=2001:db8:200::1 [pasta6]=2001:db8:200::1 [kernel6]=2001:db8:200::1)
declare -A pid_of=()   # forwarding process of each user-space path
namespaces=()          # created namespaces, deleted last
children=()            # every background process started here
nft_made=""
nft6_made=""

cleanup() {
  local rc=$? i ns
  set +e
  trap - ERR INT TERM
  # newest first: iperf3 clients/servers, pasta, slirp4netns, switchd (removes its TAP)
  for ((i = ${#children[@]} - 1; i >= 0; i--)); do stop_child "${children[$i]}"; done
  [ -n "$nft_made" ] && ip netns exec "$ns_k" nft delete table ip "$t" 2>/dev/null
  [ -n "$nft6_made" ] && ip netns exec "$ns_k" nft delete table ip6 "$t" 2>/dev/null
  # deleting a namespace deletes its veth ends and TAPs
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  [ -n "$tmp" ] && rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'echo "bench-nat: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

tmp=$(mktemp -d "/tmp/bench-nat.$t.XXXXXX")
# private copies: a rebuild in the checkout during the run cannot swap the binaries
mkdir -p "$tmp/bin" "$tmp/run" "$tmp/state"
cp "$SWITCHD" "$tmp/bin/switchd"
cp "$SWITCHCTL" "$tmp/bin/switchctl"
switchd_src=$SWITCHD
SWITCHD=$tmp/bin/switchd
SWITCHCTL=$tmp/bin/switchctl
switchd_sum=$(sha256sum "$SWITCHD" | cut -c1-12)
if [ -n "$SWITCHD_BASE" ]; then
  [ -x "$SWITCHD_BASE" ] || die "no switchd at SWITCHD_BASE=$SWITCHD_BASE"
  cp "$SWITCHD_BASE" "$tmp/bin/switchd-base"
  base_src=$SWITCHD_BASE
  SWITCHD_BASE=$tmp/bin/switchd-base
  mkdir -p "$tmp/run-base" "$tmp/state-base"
fi

# CPU ticks (user + system, all threads) of a process so far
cpu_ticks() {
  sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0
}
hz=$(getconf CLK_TCK)

# --- wan and host --------------------------------------------------------------------------------
addns "$ns_w"; addns "$ns_h"; addns "$ns_k"
for s in $ALL; do
  [ "$s" = vnet6 ] || addns "${gns[$s]}"
done
if [ -n "$V6" ]; then
  # IPv6 on in every namespace before anything listens (iperf3 -s binds [::] then)
  for ns in "$ns_w" "$ns_h" "$ns_k" "${gns[vnet]}" "${gns[pasta6]}" "${gns[kernel6]}"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 \
      net.ipv6.conf.default.disable_ipv6=0
  done
fi

ip -n "$ns_w" addr add $REMOTE/32 dev lo
ip -n "$ns_w" link add "wh$$" type veth peer name "hw$$" netns "$ns_h"
ip -n "$ns_w" addr add 10.98.0.2/24 dev "wh$$"
ip -n "$ns_w" link set "wh$$" up
ip -n "$ns_h" addr add 10.98.0.1/24 dev "hw$$"
ip -n "$ns_h" link set "hw$$" up
ip -n "$ns_h" route add default via 10.98.0.2
ip netns exec "$ns_h" sysctl -qw net.ipv4.ping_group_range="0 2147483647"

for s in $ALL; do
  ip netns exec "$ns_w" iperf3 -s -p "${port[$s]}" >"$tmp/server-$s.log" 2>&1 &
  children+=($!)
done
for s in $ALL; do
  wait_for "iperf3 server on ${port[$s]}" \
    sh -c "ip netns exec '$ns_w' ss -Hltn 'sport = :${port[$s]}' | grep -q ."
done
WAIT_TENTHS=50 wait_for "the wan host from the host namespace" ip netns exec "$ns_h" ping -c1 -W1 $REMOTE

# --- vnet ------------------------------------------------------------------------------------------
# libvirt's default network; with the IPv6 paths, plus an IPv6 prefix it masquerades
vnet_config=()
if [ -n "$V6" ]; then
  cat >"$tmp/vnet.xml" <<EOF
<network><name>$net</name><forward mode='nat'><nat ipv6='yes'/></forward><bridge name='virbr0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'/>
  <ip family='ipv6' address='fd00:88::1' prefix='64'/></network>
EOF
  vnet_config=(--config "$tmp/vnet.xml")
fi
ip netns exec "$ns_h" "$SWITCHD" --name "$net" "${vnet_config[@]}" --run-dir "$tmp/run" \
  --state-dir "$tmp/state" >"$tmp/switchd.log" 2>&1 &
pid_of[vnet]=$!
children+=($!)
wait_for "switchd control socket" test -S "$tmp/run/$net.ctl"
kill -0 "${pid_of[vnet]}" 2>/dev/null || die "switchd exited: $(cat "$tmp/switchd.log")"
"$SWITCHCTL" --run-dir "$tmp/run" port-add "$net" tap --netns "${gns[vnet]}" --ifname eth0 \
  >/dev/null
ip -n "${gns[vnet]}" link set eth0 up
ip -n "${gns[vnet]}" addr add 192.168.122.50/24 dev eth0
ip -n "${gns[vnet]}" route add default via 192.168.122.1

# --- vnet base: the other binary, a network of its own ---------------------------------------------
if [ -n "$SWITCHD_BASE" ]; then
  cat >"$tmp/base.xml" <<EOF
<network><name>${net}b</name><forward mode='nat'/><bridge name='vbb$$'/>
  <ip address='192.168.124.1' netmask='255.255.255.0'/></network>
EOF
  ip netns exec "$ns_h" "$SWITCHD_BASE" --name "${net}b" --config "$tmp/base.xml" \
    --run-dir "$tmp/run-base" --state-dir "$tmp/state-base" >"$tmp/switchd-base.log" 2>&1 &
  pid_of[base]=$!
  children+=($!)
  wait_for "base switchd control socket" test -S "$tmp/run-base/${net}b.ctl"
  "$SWITCHCTL" --run-dir "$tmp/run-base" port-add "${net}b" tap --netns "${gns[base]}" \
    --ifname eth0 >/dev/null
  ip -n "${gns[base]}" link set eth0 up
  ip -n "${gns[base]}" addr add 192.168.124.50/24 dev eth0
  ip -n "${gns[base]}" route add default via 192.168.124.1
fi

# --- slirp4netns -----------------------------------------------------------------------------------
ip netns exec "$ns_h" slirp4netns --configure --mtu=65520 --disable-host-loopback \
  --netns-type=path "/run/netns/${gns[slirp]}" tap0 >"$tmp/slirp4netns.log" 2>&1 &
pid_of[slirp]=$!
children+=($!)
wait_for "slirp4netns to configure tap0" \
  sh -c "ip -n '${gns[slirp]}' -4 addr show tap0 | grep -q 10.0.2.100"

# --- pasta -----------------------------------------------------------------------------------------
# as root pasta must keep uid 0 (--runas 0) or it cannot join the namespace; -f: stay in the
# foreground (our child); no automatic port forwarding in either direction; IPv4 only
ip netns exec "$ns_h" "$PASTA" -f --runas 0 --config-net -4 --mtu 65520 \
  -t none -u none -T none -U none --netns "/run/netns/${gns[pasta]}" \
  >"$tmp/pasta.log" 2>&1 &
pid_of[pasta]=$!
children+=($!)
wait_for "pasta to configure its guest" \
  sh -c "ip -n '${gns[pasta]}' -4 route show default | grep -q 10.98.0.2"
kill -0 "${pid_of[pasta]}" 2>/dev/null || die "pasta exited: $(cat "$tmp/pasta.log")"

# --- kernel: veth + forwarding + nft masquerade in a router namespace ---------------------------
ip -n "$ns_w" link add "wk$$" type veth peer name "kw$$" netns "$ns_k"
ip -n "$ns_w" addr add 10.98.1.2/24 dev "wk$$"
ip -n "$ns_w" link set "wk$$" up
ip -n "$ns_k" addr add 10.98.1.1/24 dev "kw$$"
ip -n "$ns_k" link set "kw$$" up
ip -n "$ns_k" route add default via 10.98.1.2
ip -n "$ns_k" link add "kg$$" type veth peer name eth0 netns "${gns[kernel]}"
ip -n "$ns_k" addr add 10.0.3.1/24 dev "kg$$"
ip -n "$ns_k" link set "kg$$" up
ip -n "${gns[kernel]}" addr add 10.0.3.50/24 dev eth0
ip -n "${gns[kernel]}" link set eth0 up
ip -n "${gns[kernel]}" route add default via 10.0.3.1
ip netns exec "$ns_k" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$ns_k" nft -f - <<EOF
table ip $t {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "kw$$" ip saddr 10.0.3.0/24 masquerade
  }
}
EOF
nft_made=1

# --- IPv6 paths: vnet NAT66, pasta -6, the kernel's ip6 masquerade ------------------------------
if [ -n "$V6" ]; then
  ip -n "$ns_w" -6 addr add $REMOTE6/128 dev lo
  for ifc in "wh$$:$ns_w" "hw$$:$ns_h"; do
    ip netns exec "${ifc#*:}" sysctl -qw "net.ipv6.conf.${ifc%%:*}.disable_ipv6=0"
  done
  ip -n "$ns_w" -6 addr add 2001:db8:98::2/64 dev "wh$$" nodad
  ip -n "$ns_h" -6 addr add 2001:db8:98::1/64 dev "hw$$" nodad
  ip -n "$ns_h" -6 route add default via 2001:db8:98::2
  # vnet: the same network and guest as the IPv4 path, its IPv6 prefix masqueraded
  ip netns exec "${gns[vnet]}" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=0 net.ipv6.conf.eth0.accept_ra=0
  ip -n "${gns[vnet]}" -6 addr add fd00:88::50/64 dev eth0 nodad
  ip -n "${gns[vnet]}" -6 route add default via fd00:88::1
  # pasta, IPv6 only: its guest gets the host's address and routes
  ip netns exec "$ns_h" "$PASTA" -f --runas 0 --config-net -6 --mtu 65520 \
    -t none -u none -T none -U none --netns "/run/netns/${gns[pasta6]}" \
    >"$tmp/pasta6.log" 2>&1 &
  pid_of[pasta6]=$!
  children+=($!)
  wait_for "pasta -6 to configure its guest" \
    sh -c "ip -n '${gns[pasta6]}' -6 route show default | grep -q 2001:db8:98::2"
  # the kernel: the router namespace forwards IPv6 and masquerades it
  ip netns exec "$ns_w" sysctl -qw "net.ipv6.conf.wk$$.disable_ipv6=0"
  ip netns exec "$ns_k" sysctl -qw "net.ipv6.conf.kw$$.disable_ipv6=0"
  ip -n "$ns_w" -6 addr add 2001:db8:99::2/64 dev "wk$$" nodad
  ip -n "$ns_k" -6 addr add 2001:db8:99::1/64 dev "kw$$" nodad
  ip -n "$ns_k" -6 route add default via 2001:db8:99::2
  ip -n "$ns_k" link add "kg6$$" type veth peer name eth0 netns "${gns[kernel6]}"
  ip netns exec "$ns_k" sysctl -qw "net.ipv6.conf.kg6$$.disable_ipv6=0"
  ip netns exec "${gns[kernel6]}" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=0
  ip -n "$ns_k" -6 addr add fd00:77::1/64 dev "kg6$$" nodad
  ip -n "$ns_k" link set "kg6$$" up
  ip -n "${gns[kernel6]}" -6 addr add fd00:77::50/64 dev eth0 nodad
  ip -n "${gns[kernel6]}" link set eth0 up
  ip -n "${gns[kernel6]}" -6 route add default via fd00:77::1
  ip netns exec "$ns_k" sysctl -qw net.ipv6.conf.all.forwarding=1
  ip netns exec "$ns_k" nft -f - <<EOF
table ip6 $t {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "kw$$" ip6 saddr fd00:77::/64 masquerade
  }
}
EOF
  nft6_made=1
  pid_of[vnet6]=${pid_of[vnet]}
fi

# every guest reaches the remote (ICMP; a path without it still gets its TCP measured)
for s in $ALL; do
  ok=""
  for ((i = 0; i < 50; i++)); do
    if ip netns exec "${gns[$s]}" ping -c1 -W1 "${remote_of[$s]}" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || warn "no ping reply from ${remote_of[$s]} through $s"
done

# --- machine info ---------------------------------------------------------------------------------
git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain 2>/dev/null)" ] && git_rev="$git_rev (dirty)"
pasta_pkg=$(dpkg-query -W -f '${Version}' passt 2>/dev/null || echo "not from a package")
pasta_ver=$("$PASTA" --version 2>&1 | head -1 || true)
echo "== NAT side by side: iperf3 TCP upload / download (-R) -t $DURATION, ping x $PINGS;" \
  "$RUNS runs each (interleaved), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "kernel:      $(uname -r)"
echo "cpus:        $(nproc) ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo))"
echo "tcp cc:      $(ip netns exec "$ns_h" sysctl -n net.ipv4.tcp_congestion_control 2>/dev/null)"
echo "load:        $(cut -d' ' -f1-3 /proc/loadavg)$(pgrep -x -d, 'cargo|rustc' >/dev/null &&
  echo "  (warning: cargo/rustc running)")"
echo "iperf3:      $(iperf3 --version 2>&1 | head -1)"
echo "slirp4netns: $(slirp4netns --version 2>&1 | tr '\n' ' ')"
echo "pasta:       $PASTA: package passt $pasta_pkg; --version: $pasta_ver"
echo "nft:         $(nft --version 2>&1 | head -1)"
echo "switchd:     $("$SWITCHD" --version 2>&1 | head -1) ($switchd_src, sha256 $switchd_sum...), checkout at git $git_rev"
[ -n "$SWITCHD_BASE" ] &&
  echo "base:        $("$SWITCHD_BASE" --version 2>&1 | head -1) ($base_src, sha256 $(sha256sum "$SWITCHD_BASE" | cut -c1-12)...)"
echo "remote:      $REMOTE, $REMOTE6 (iperf3 -s in $ns_w)"
declare -A label=(
  [vnet]="vnet switchd NAT"
  [base]="vnet base switchd NAT"
  [vnet6]="vnet switchd NAT66"
  [pasta6]="pasta -6 (MTU 65520)"
  [kernel6]="kernel veth + nft ip6 masq"
  [slirp]="slirp4netns (MTU 65520)"
  [pasta]="pasta (MTU 65520)"
  [kernel]="kernel veth + nft masq"
)
for s in $ALL; do
  dev=$(ip -n "${gns[$s]}" -o route show default | awk '{print $5}')
  printf '%-24s guest %-6s mtu %-6s %s\n' "${label[$s]}" "$dev" \
    "$(ip -n "${gns[$s]}" -o link show "$dev" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')" \
    "$(ip netns exec "${gns[$s]}" ethtool -k "$dev" 2>/dev/null |
      awk -F': ' '/^tx-checksumming|^tcp-segmentation-offload/ {printf "%s %s  ", $1, $2}')"
done
echo

# --- measurements ----------------------------------------------------------------------------------

# vnet's own view: NAT counters (and flows on request) on stderr, after a failure
vnet_state() {
  echo "  switchd: $(kill -0 "${pid_of[vnet]}" 2>/dev/null && echo running || echo EXITED)" >&2
  "$SWITCHCTL" --run-dir "$tmp/run" --json net-info "$net" 2>&1 | python3 -c '
import json, sys
try:
    print("  nat:", json.load(sys.stdin)["live"]["gateway"].get("nat"))
except Exception as e:
    print("  net-info failed:", e)' >&2 || true
  "$SWITCHCTL" --run-dir "$tmp/run" nat-flows "$net" 2>&1 | head -n 10 | sed 's/^/  /' >&2 || true
  tail -n 10 "$tmp/switchd.log" | sed 's/^/  switchd.log: /' >&2 || true
}

# one iperf3 run of path $1, direction $2 (up/down): prints "<bits/s received> <retransmits>"
run_iperf() {
  local s=$1 dir=$2 out=$tmp/$1-$2.json rev=()
  [ "$dir" = down ] && rev=(-R)
  if ! timeout -k 5 $((DURATION + 20)) ip netns exec "${gns[$s]}" \
      iperf3 -c "${remote_of[$s]}" -p "${port[$s]}" -t "$DURATION" "${rev[@]}" -J >"$out" 2>&1; then
    # iperf3 -J reports its error inside the JSON; show that, or the raw output if not JSON
    warn "iperf3 $dir through $s failed: $(python3 -c \
      'import json, sys; print(json.load(open(sys.argv[1])).get("error", "no error field"))' \
      "$out" 2>/dev/null || tail -n 5 "$out")"
    return 1
  fi
  python3 - "$out" <<'EOF'
import json, sys
end = json.load(open(sys.argv[1]))["end"]
print(end["sum_received"]["bits_per_second"], end["sum_sent"].get("retransmits", "-"))
EOF
}

# one ping run of path $1: prints "<avg us> <median us> <min us> <max us> <loss %>"
run_ping() {
  local s=$1 out=$tmp/$1-ping.txt
  timeout -k 5 $((PINGS / 50 + 15)) ip netns exec "${gns[$s]}" \
    ping -n -c "$PINGS" -i 0.01 -W 1 "${remote_of[$s]}" >"$out" 2>&1 || true
  python3 - "$out" <<'EOF'
import re, statistics, sys
text = open(sys.argv[1]).read()
loss = re.search(r"([0-9.]+)% packet loss", text)
t = [float(x) * 1000 for x in re.findall(r"time=([0-9.]+) ms", text)]
if not t:
    sys.exit(1)
print(f"{statistics.mean(t):.0f} {statistics.median(t):.0f} {min(t):.0f} {max(t):.0f} "
      f"{loss.group(1) if loss else '?'}")
EOF
}

# " [also running: ...]" when busy() found something now or in $1 (a check before the measurement)
busy_tag() {
  local b
  b=$(printf '%s %s' "$1" "$(busy)" | tr ' ' '\n' | grep . | sort -u | tr '\n' ' ' || true)
  [ -n "$b" ] && printf '  [also running: %s]' "${b% }"
  return 0
}
# other work on this machine that skews the figures: builds and the project's other benchmarks
busy() {
  {
    ps -eo comm= | grep -x -E 'cargo|rustc|dnsperf|perfdhcp' || true
    pgrep -af 'bench-(dns|dhcp|side-by-side)\.sh' | grep -o -E 'bench-[a-z-]+\.sh' || true
  } | sort -u | tr '\n' ' '
}
busy_n=0

: >"$tmp/samples"
for ((r = 1; r <= RUNS; r++)); do
  for s in $PATHS; do
    for dir in up down; do
      b0=$(busy)
      pid=${pid_of[$s]:-}
      c0=0
      [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
      t0=$(date +%s.%N)
      if run_iperf "$s" "$dir" >"$tmp/result"; then
        read -r bps retr <"$tmp/result"
        cpu=-
        if [ -n "$pid" ]; then
          cpu=$(python3 -c "print(f'{($(cpu_ticks "$pid") - $c0) / $hz / ($(date +%s.%N) - $t0) * 100:.0f}%')")
        fi
        echo "$s $dir $bps $retr $cpu" >>"$tmp/samples"
        tag=$(busy_tag "$b0")
        [ -n "$tag" ] && busy_n=$((busy_n + 1))
        printf '%s run %d/%d  %-24s %-4s %8.3f Gbit/s  retr %-6s cpu %s%s\n' "$(date +%T)" \
          "$r" "$RUNS" "${label[$s]}" "$dir" "$(python3 -c "print($bps / 1e9)")" "$retr" "$cpu" \
          "$tag"
      else
        echo "$s $dir fail - -" >>"$tmp/samples"
        printf '%s run %d/%d  %-24s %-4s   FAILED\n' "$(date +%T)" "$r" "$RUNS" "${label[$s]}" \
          "$dir"
        case $s in vnet | vnet6) vnet_state ;; esac
      fi
      sleep 1
    done
    b0=$(busy)
    if run_ping "$s" >"$tmp/result"; then
      read -r avg p50 mn mx loss <"$tmp/result"
      echo "$s ping $avg $mn $mx $loss" >>"$tmp/samples"
      echo "$s p50 $p50 - - -" >>"$tmp/samples"
      tag=$(busy_tag "$b0")
      [ -n "$tag" ] && busy_n=$((busy_n + 1))
      printf '%s run %d/%d  %-24s ping avg %5d us  median %5d  min %5d  max %6d  loss %s%%%s\n' \
        "$(date +%T)" "$r" "$RUNS" "${label[$s]}" "$avg" "$p50" "$mn" "$mx" "$loss" "$tag"
    else
      echo "$s ping fail - - -" >>"$tmp/samples"
      echo "$s p50 fail - - -" >>"$tmp/samples"
      printf '%s run %d/%d  %-24s ping FAILED: %s\n' "$(date +%T)" "$r" "$RUNS" "${label[$s]}" \
        "$(tail -n 2 "$tmp/$s-ping.txt" | tr '\n' ' ')"
    fi
  done
  if [ -n "${pid_of[vnet]}" ] && ! kill -0 "${pid_of[vnet]}" 2>/dev/null; then
    warn "switchd exited during run $r"
    vnet_state
  fi
done
[ "$busy_n" -gt 0 ] &&
  warn "$busy_n of $((RUNS * 3 * $(wc -w <<<"$PATHS"))) measurements overlapped a build or another benchmark ([also running])"
echo

# vnet's NAT counters after the runs, and anything switchd logged besides its start-up lines
echo "vnet NAT counters after the runs: $("$SWITCHCTL" --run-dir "$tmp/run" --json net-info "$net" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["live"]["gateway"].get("nat"))')"
echo "vnet NAT flows left (nat-flows):"
"$SWITCHCTL" --run-dir "$tmp/run" nat-flows "$net" | head -n 10 | sed 's/^/  /' || true
grep -v -E 'gateway |DHCP on |DNS on |host resolvers|running, control|port .* added|NAT ' \
  "$tmp/switchd.log" |
  head -n 10 | sed 's/^/switchd.log: /' || true
for s in slirp pasta pasta6; do
  [ -n "${pid_of[$s]:-}" ] || continue
  kill -0 "${pid_of[$s]}" 2>/dev/null || warn "$s exited during the runs"
done
# anything the peers said besides their start-up lines
for f in slirp4netns pasta; do
  grep -v -i -E 'syslog|interface: |tapfd|starting slirp|^\*|^ *$' "$tmp/$f.log" |
    head -n 5 | sed "s/^/$f.log: /" || true
done
echo

# --- summary ---------------------------------------------------------------------------------------
python3 - "$tmp/samples" "${label[vnet]}" "${label[slirp]}" "${label[pasta]}" "${label[kernel]}" \
  "$PATHS" "${label[base]}" "${label[vnet6]}" "${label[pasta6]}" "${label[kernel6]}" <<'EOF'
import statistics, sys
lines = [l.split() for l in open(sys.argv[1]) if l.strip()]
names = ["vnet", "slirp", "pasta", "kernel", "base", "vnet6", "pasta6", "kernel6"]
measured = sys.argv[6].split()
labels = dict(zip(names, sys.argv[2:6] + sys.argv[7:11]))
vals, cpus, fails = {}, {}, {}
for f in lines:
    s, m = f[0], f[1]
    if f[2] == "fail":
        fails[(s, m)] = fails.get((s, m), 0) + 1
        continue
    v = float(f[2]) / 1e9 if m in ("up", "down") else float(f[2])
    vals.setdefault((s, m), []).append(v)
    if m in ("up", "down") and f[4] != "-":
        cpus.setdefault((s, m), []).append(float(f[4].rstrip("%")))
def med(s, m):
    v = vals.get((s, m))
    return statistics.median(v) if v else None
def cell(s, m):
    v = vals.get((s, m))
    if not v:
        return "failed"
    fmt = "{:.2f}" if m in ("up", "down") else "{:.0f}"
    txt = f"{fmt.format(statistics.median(v))} ({fmt.format(min(v))}-{fmt.format(max(v))})"
    if fails.get((s, m)):
        txt += f" {fails[(s, m)]} failed"
    return txt
metrics = [("up", "upload Gbit/s"), ("down", "download Gbit/s"), ("ping", "ping avg us"),
           ("p50", "ping median us")]
print("| path | " + " | ".join(h for _, h in metrics) + " |")
print("|---|" + "---|" * len(metrics))
for s in (n for n in names if n in measured):
    print(f"| {labels[s]} | " + " | ".join(cell(s, m) for m, _ in metrics) + " |")
def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "n/a"
row_peer, row_kernel = [], []
for m, _ in metrics:
    peers = [(med(p, m), p) for p in ("slirp", "pasta") if med(p, m) is not None]
    if peers:
        # best: highest throughput, lowest RTT
        best = max(peers) if m in ("up", "down") else min(peers)
        row_peer.append(f"{ratio(med('vnet', m), best[0])} (vs {best[1]})")
    else:
        row_peer.append("n/a")
    row_kernel.append(ratio(med("vnet", m), med("kernel", m)))
print("| vnet / best user-space peer | " + " | ".join(row_peer) + " |")
print("| vnet / kernel | " + " | ".join(row_kernel) + " |")
if "vnet6" in measured:
    print("| IPv6: vnet NAT66 / pasta -6 | " + " | ".join(ratio(med("vnet6", m), med("pasta6", m)) for m, _ in metrics) + " |")
    print("| IPv6: vnet NAT66 / kernel | " + " | ".join(ratio(med("vnet6", m), med("kernel6", m)) for m, _ in metrics) + " |")
if "base" in measured:
    print("| vnet / base | " + " | ".join(ratio(med("vnet", m), med("base", m)) for m, _ in metrics) + " |")
print("(median of the runs, (min-max); ping: median over the runs of each run's average / median RTT; "
      "throughput ratios > 1 and RTT ratios < 1 favour vnet)")
def cpu(s, m):
    v = cpus.get((s, m))
    return f"{statistics.median(v):.0f}" if v else "-"
print("forwarder CPU during iperf3, median % of one core (up / down): " + ", ".join(
    f"{labels[s]} {cpu(s, 'up')} / {cpu(s, 'down')}"
    for s in ("vnet", "base", "slirp", "pasta", "vnet6", "pasta6") if s in measured))
EOF
