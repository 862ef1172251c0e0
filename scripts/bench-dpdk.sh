#!/usr/bin/env bash
# A frontend that is not a TCG guest, so the switch is the bottleneck: DPDK's testpmd with
# two virtio_user ports on two vnet vhost-user ports (one switchd, its datapath thread on
# one core), MAC forwarding between them: each frame testpmd receives on one port goes
# back out of the other, so frames circulate through vnet in both directions (a
# "loopback" PVP without a VM). switchd (all its threads) is pinned to core 0, testpmd's
# forwarding lcore to core 1. Reports packets per second through vnet and the
# corresponding Gbit/s (frame bytes, no preamble or FCS), for 64- and 1500-byte frames.
#
# With OVS=1, the same testpmd runs afterwards against Open vSwitch with DPDK
# (openvswitch-switch-dpdk, its own ovsdb-server and ovs-vswitchd in the temporary
# directory): two dpdkvhostuserclient ports in a netdev bridge (the NORMAL flow: a
# learning switch, as vnet), one PMD core, testpmd's virtio_user ports as the servers.
#
# Runs as root: it reserves 512 hugepages (2 MiB) and mounts hugetlbfs for testpmd,
# and undoes both; the switchd runs in a namespace of its own. Traffic only crosses unix
# sockets and shared memory.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (hugepages)" >&2; exit 1; }
command -v dpdk-testpmd >/dev/null || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dpdk-dev >/dev/null
}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
SIZES=${SIZES:-"64 1500"}
cargo build --release -q --bin switchd --bin switchctl
sw=target/release/switchd
ctl=target/release/switchctl

tmp=$(mktemp -d /tmp/vnet-dpdk.XXXXXX)
ns="vnetdpdk$$"
old_huge=$(cat /proc/sys/vm/nr_hugepages)
cleanup() {
  set +e
  [ -n "${sw_pid:-}" ] && kill "$sw_pid" 2>/dev/null && wait "$sw_pid" 2>/dev/null
  for p in "$tmp"/ovs/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
  sleep 0.5
  mountpoint -q "$tmp/huge" && umount "$tmp/huge"
  echo "$old_huge" > /proc/sys/vm/nr_hugepages
  ip netns del "$ns" 2>/dev/null
  [ -n "${KEEP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT
echo $(( ${OVS:-0} == 1 ? 1024 : 512 )) > /proc/sys/vm/nr_hugepages
mkdir -p "$tmp/huge"
mount -t hugetlbfs nodev "$tmp/huge"
ip netns add "$ns"

cat > "$tmp/net.xml" <<'XML'
<network>
  <name>dpdk</name>
  <bridge name='vdpdk0'/>
</network>
XML
ip netns exec "$ns" taskset -c 0 "$sw" --config "$tmp/net.xml" --run-dir "$tmp/run" --state-dir "$tmp/state" \
  > "$tmp/switchd.log" 2>&1 &
sw_pid=$!
for _ in $(seq 100); do [ -S "$tmp/run/dpdk.ctl" ] && break; sleep 0.05; done
for p in a b; do
  "$ctl" --run-dir "$tmp/run" port-add dpdk vhost-user --socket "$tmp/$p.sock" --name "$p" >/dev/null
done

# testpmd, MAC forwarding between its two ports; prints "PPS n" for the run
testpmd() {
  local size=$1 v0=$2 v1=$3
  {
    sleep 4
    echo "start tx_first 16"
    sleep 2
    echo "show port stats all"
    sleep "$SECONDS_PER_RUN"
    echo "show port stats all"
    echo "stop"
    sleep 1
    echo "quit"
  } | timeout $((SECONDS_PER_RUN + 40)) dpdk-testpmd -l 0-1 -n 1 --no-pci --file-prefix "vnetdpdk$$" \
      --huge-dir "$tmp/huge" -m 512 --single-file-segments --vdev "$v0" --vdev "$v1" -- -i --forward-mode=mac \
      --eth-peer=0,02:00:00:00:00:02 --eth-peer=1,02:00:00:00:00:01 --txpkts="$size" \
      --total-num-mbufs=16384 2>&1 | tee "$tmp/testpmd-$size.log" |
    # the second "show port stats" gives each port's rate since the first (testpmd's clock)
    awk '/NIC statistics for port 0/ { n0++ } /NIC statistics for port 1/ { n1++ }
         /Rx-pps:/ { if (n0 == 2 && !d0) { p += $2; d0 = 1 } else if (n1 == 2 && !d1) { p += $2; d1 = 1 } }
         END { printf "PPS %.0f\n", p }'
}

# a warm-up run (a first run after the switch starts is slower: caches, page faults in
# guest memory; not reported), then one run per size. $1: label; $2, $3: the sockets;
# $4: more virtio_user options
measure() {
  local v0="net_virtio_user0,path=$2,queues=1,mac=02:00:00:00:00:01$4"
  local v1="net_virtio_user1,path=$3,queues=1,mac=02:00:00:00:00:02$4"
  SECONDS_PER_RUN=3 testpmd 64 "$v0" "$v1" >/dev/null
  for size in $SIZES; do
    pps=$(testpmd "$size" "$v0" "$v1" | sed -n 's/^PPS //p')
    awk -v l="$1" -v s="$size" -v p="$pps" \
      'BEGIN { printf "%-5s %5d B: %10.0f packets/s  %6.2f Gbit/s\n", l, s, p, p * s * 8 / 1e9 }'
  done
}

echo "== DPDK testpmd through vnet vhost-user ports, $(date -u +%FT%TZ), $(dpdk-testpmd -v 2>&1 | grep -o 'DPDK [0-9.]*' | head -1), git $(git rev-parse --short HEAD)"
measure vnet "$tmp/a.sock" "$tmp/b.sock" ""
"$ctl" --run-dir "$tmp/run" --json port-list dpdk > "$tmp/ports.json"
python3 - "$tmp/ports.json" <<'PY'
import json, sys
for p in json.load(open(sys.argv[1])):
    if p["kind"] == "vhost-user":
        print(f'  port {p["name"]}: rx {p["counters"]["rx_frames"]} tx {p["counters"]["tx_frames"]} drops {p["counters"]["drops"]} reads {p["io"]["reads"]} writes {p["io"]["writes"]}')
PY

[ "${OVS:-0}" = 1 ] || exit 0
# ---- Open vSwitch with DPDK: the same testpmd, OVS's PMD thread on one core ----
kill "$sw_pid"; wait "$sw_pid" 2>/dev/null || true; sw_pid=
command -v ovsdb-server >/dev/null && [ -x /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk ] || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openvswitch-switch-dpdk >/dev/null
}
o="$tmp/ovs"; mkdir -p "$o"
export OVS_RUNDIR="$o" OVS_LOGDIR="$o" OVS_DBDIR="$o"
db="unix:$o/db.sock"
ovsdb-tool create "$o/conf.db" /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server "$o/conf.db" --remote="punix:$o/db.sock" --pidfile="$o/ovsdb.pid" --detach --log-file="$o/ovsdb.log"
vsctl() { ovs-vsctl --db="$db" --timeout=30 "$@"; }
vsctl --no-wait init
vsctl --no-wait set Open_vSwitch . other_config:dpdk-init=true other_config:dpdk-socket-mem=512 \
  other_config:pmd-cpu-mask=0x1 other_config:dpdk-lcore-mask=0x1 \
  "other_config:dpdk-extra=--no-pci --huge-dir=$tmp/huge --file-prefix=ovs$$ --single-file-segments"
/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk "$db" --pidfile="$o/vswitchd.pid" --detach \
  --log-file="$o/vswitchd.log"
vsctl add-br br0 -- set bridge br0 datapath_type=netdev
for p in a b; do
  vsctl add-port br0 "vu$p" -- set Interface "vu$p" type=dpdkvhostuserclient \
    "options:vhost-server-path=$tmp/ovs-$p.sock"
done
echo "== the same through Open vSwitch $(ovs-vswitchd --version | head -1 | awk '{print $NF}') with DPDK (dpdkvhostuserclient, NORMAL flow, 1 PMD core)"
measure OVS "$tmp/ovs-a.sock" "$tmp/ovs-b.sock" ",server=1"
