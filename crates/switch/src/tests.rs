//! Scenario tests of the switch with real frames and a fake clock.

use super::*;
use proptest::prelude::*;

/// A real frame: an ICMP echo request between two stations (as captured, 98 bytes).
fn icmp_frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; 98];
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    // IPv4 header 10.0.0.1 -> 10.0.0.2, ICMP echo
    f[14..34].copy_from_slice(&[
        0x45, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 10, 0, 0, 1, 10, 0,
        0, 2,
    ]);
    f[34] = 8;
    f
}

fn mac(n: u64) -> MacAddr {
    MacAddr::from_u64(0x5254_0000_0000 | n)
}

struct Harness {
    sw: Switch,
    now: Instant,
    ports: Vec<PortId>,
}

impl Harness {
    fn new(config: Config, n: usize) -> Self {
        let mut sw = Switch::new(config);
        let ports = (0..n)
            .map(|_| sw.add_port(PortConfig::default()).unwrap())
            .collect();
        Self {
            sw,
            now: Instant::from_secs(1),
            ports,
        }
    }

    /// Sends a frame from station `src` on port index `from` to `dst`; returns the egress ports.
    fn send(&mut self, from: usize, src: MacAddr, dst: MacAddr) -> Vec<PortId> {
        let ingress = self.ports[from];
        match self
            .sw
            .handle_frame(self.now, ingress, &icmp_frame(dst, src))
        {
            Verdict::Forward(p) => vec![p],
            Verdict::Flood => self.sw.flood_targets(ingress).collect(),
            Verdict::Drop(_) => vec![],
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        if self.sw.poll_timeout().is_some_and(|t| t <= self.now) {
            self.sw.handle_timeout(self.now);
        }
    }
}

#[test]
fn learning_turns_flood_into_unicast() {
    let mut h = Harness::new(Config::default(), 3);
    let p = h.ports.clone();
    assert_eq!(
        h.send(0, mac(1), mac(2)),
        vec![p[1], p[2]],
        "unknown: flood but ingress"
    );
    assert_eq!(
        h.send(1, mac(2), mac(1)),
        vec![p[0]],
        "mac(1) learned on port 0"
    );
    assert_eq!(
        h.send(0, mac(1), mac(2)),
        vec![p[1]],
        "mac(2) learned on port 1"
    );
    assert_eq!(h.sw.fdb().len(), 2);
}

#[test]
fn broadcast_and_multicast_flood_excluding_ingress() {
    let mut h = Harness::new(Config::default(), 4);
    let p = h.ports.clone();
    assert_eq!(
        h.send(2, mac(3), MacAddr::BROADCAST),
        vec![p[0], p[1], p[3]]
    );
    let mcast = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
    assert_eq!(h.send(0, mac(1), mcast), vec![p[1], p[2], p[3]]);
    assert_eq!(h.sw.port_counters(p[2]).unwrap().flooded, 1);
    assert_eq!(h.sw.port_counters(p[0]).unwrap().tx_frames, 1);
}

#[test]
fn entries_age_out_after_the_configured_time() {
    let cfg = Config::default().with_aging_time(Duration::from_secs(60));
    let mut h = Harness::new(cfg, 3);
    let p = h.ports.clone();
    h.send(1, mac(2), MacAddr::BROADCAST);
    h.advance(Duration::from_secs(59));
    assert_eq!(h.send(0, mac(1), mac(2)), vec![p[1]], "still known at 59 s");
    h.advance(Duration::from_secs(2)); // 61 s since mac(2) was last seen
    assert_eq!(
        h.send(0, mac(1), mac(2)),
        vec![p[1], p[2]],
        "aged: flooded again"
    );
    // and the sweep frees the memory (mac(1) was refreshed by the last frame)
    h.advance(Duration::from_secs(61));
    assert_eq!(h.sw.fdb().entries(h.now).count(), 0);
    assert_eq!(h.sw.fdb().len(), 0);
    assert!(h.sw.fdb().stats().aged >= 2);
}

#[test]
fn default_aging_is_300_seconds() {
    let mut h = Harness::new(Config::default(), 2);
    h.send(1, mac(2), MacAddr::BROADCAST);
    h.advance(Duration::from_secs(300));
    assert_eq!(
        h.sw.fdb().lookup(h.now, VlanId::UNTAGGED, mac(2)),
        Some(h.ports[1])
    );
    h.advance(Duration::from_secs(1));
    assert_eq!(h.sw.fdb().lookup(h.now, VlanId::UNTAGGED, mac(2)), None);
}

#[test]
fn station_move() {
    let mut h = Harness::new(Config::default(), 3);
    let p = h.ports.clone();
    h.send(1, mac(2), MacAddr::BROADCAST);
    assert_eq!(h.send(0, mac(1), mac(2)), vec![p[1]]);
    h.send(2, mac(2), MacAddr::BROADCAST); // the station moved to port 2
    assert_eq!(h.send(0, mac(1), mac(2)), vec![p[2]]);
    assert_eq!(h.sw.fdb().stats().moves, 1);
    let m = h.sw.fdb().last_move().expect("the move");
    assert_eq!((m.mac, m.from, m.to), (mac(2), p[1], p[2]));
}

#[test]
fn frame_to_station_on_ingress_port_is_filtered() {
    let mut h = Harness::new(Config::default(), 2);
    h.send(0, mac(2), MacAddr::BROADCAST);
    assert_eq!(h.send(0, mac(1), mac(2)), Vec::<PortId>::new());
    let c = h.sw.port_counters(h.ports[0]).unwrap();
    assert_eq!(c.drops.get(DropReason::LocalDestination), 1);
}

#[test]
fn isolated_ports_reach_only_non_isolated_ports() {
    let mut h = Harness::new(Config::default(), 3);
    let p = h.ports.clone();
    for &i in &p[..2] {
        h.sw.set_port_config(i, PortConfig::default().with_isolated(true))
            .unwrap();
    }
    // isolated port 0 floods only to the non-isolated port 2
    assert_eq!(h.send(0, mac(1), MacAddr::BROADCAST), vec![p[2]]);
    assert_eq!(h.send(1, mac(2), MacAddr::BROADCAST), vec![p[2]]);
    // unicast between the two isolated ports is dropped and counted
    assert_eq!(h.send(0, mac(1), mac(2)), Vec::<PortId>::new());
    assert_eq!(
        h.sw.port_counters(p[0])
            .unwrap()
            .drops
            .get(DropReason::Isolated),
        1
    );
    // the non-isolated port reaches both, and both reach it
    assert_eq!(h.send(2, mac(3), mac(1)), vec![p[0]]);
    assert_eq!(h.send(1, mac(2), mac(3)), vec![p[2]]);
    assert_eq!(h.send(2, mac(3), MacAddr::BROADCAST), vec![p[0], p[1]]);
}

#[test]
fn learning_off_does_not_learn() {
    let mut h = Harness::new(Config::default(), 2);
    let p = h.ports.clone();
    h.sw.set_port_config(p[1], PortConfig::default().with_learning(false))
        .unwrap();
    h.send(1, mac(2), MacAddr::BROADCAST);
    assert_eq!(
        h.send(0, mac(1), mac(2)),
        vec![p[1]],
        "flooded (to the only other port)"
    );
    assert_eq!(h.sw.fdb().lookup(h.now, VlanId::UNTAGGED, mac(2)), None);
}

#[test]
fn bound_with_fair_eviction() {
    let cfg = Config::default().with_fdb_max_entries(1024);
    let mut h = Harness::new(cfg, 3);
    let p = h.ports.clone();
    // ports 1 and 2 hold a few real stations each
    for i in 0..10 {
        h.send(1, mac(0x1000 + i), MacAddr::BROADCAST);
        h.send(2, mac(0x2000 + i), MacAddr::BROADCAST);
    }
    // port 0 floods 100 000 random source MACs
    for i in 0..100_000u64 {
        let m = MacAddr::from_u64(0x0200_0000_0000 | i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 24);
        h.send(0, m, MacAddr::BROADCAST);
    }
    assert!(h.sw.fdb().len() <= 1024, "bounded: {}", h.sw.fdb().len());
    for i in 0..10 {
        assert_eq!(
            h.sw.fdb().lookup(h.now, VlanId::UNTAGGED, mac(0x1000 + i)),
            Some(p[1])
        );
        assert_eq!(
            h.sw.fdb().lookup(h.now, VlanId::UNTAGGED, mac(0x2000 + i)),
            Some(p[2])
        );
    }
    assert_eq!(h.sw.fdb().port_len(p[0]), 1024 - 20);
    assert!(h.sw.fdb().stats().evictions > 90_000);
    // new stations on the quiet ports still get learned (evicting from port 0)
    h.send(1, mac(0x1fff), MacAddr::BROADCAST);
    assert_eq!(
        h.sw.fdb().lookup(h.now, VlanId::UNTAGGED, mac(0x1fff)),
        Some(p[1])
    );
}

#[test]
fn bad_frames_are_counted_and_dropped() {
    let mut h = Harness::new(Config::default(), 2);
    let p0 = h.ports[0];
    let now = h.now;
    assert_eq!(
        h.sw.handle_frame(now, p0, &[0u8; 13]),
        Verdict::Drop(DropReason::Runt)
    );
    assert_eq!(
        h.sw.handle_frame(now, p0, &[]),
        Verdict::Drop(DropReason::Runt)
    );
    let zero = icmp_frame(mac(2), MacAddr::ZERO);
    assert_eq!(
        h.sw.handle_frame(now, p0, &zero),
        Verdict::Drop(DropReason::ZeroSource)
    );
    let mcast = icmp_frame(mac(2), MacAddr::BROADCAST);
    assert_eq!(
        h.sw.handle_frame(now, p0, &mcast),
        Verdict::Drop(DropReason::MulticastSource)
    );
    let mut short_tag = icmp_frame(mac(2), mac(1));
    short_tag.truncate(16);
    short_tag[12..14].copy_from_slice(&[0x81, 0x00]);
    assert_eq!(
        h.sw.handle_frame(now, p0, &short_tag),
        Verdict::Drop(DropReason::Runt)
    );
    assert_eq!(
        h.sw.handle_frame(now, PortId(99), &icmp_frame(mac(2), mac(1))),
        Verdict::Drop(DropReason::UnknownPort)
    );
    let c = h.sw.port_counters(p0).unwrap();
    assert_eq!(c.drops.get(DropReason::Runt), 3);
    assert_eq!(c.drops.get(DropReason::ZeroSource), 1);
    assert_eq!(c.drops.get(DropReason::MulticastSource), 1);
    assert_eq!(c.drops.total(), 5);
    assert_eq!(c.rx_frames, 5);
    assert_eq!(h.sw.unknown_port_drops(), 1);
    assert!(h.sw.fdb().is_empty(), "nothing learned from bad frames");
}

#[test]
fn counters_count_bytes() {
    let mut h = Harness::new(Config::default(), 2);
    let p = h.ports.clone();
    h.send(0, mac(1), mac(2));
    h.send(1, mac(2), mac(1));
    let c0 = h.sw.port_counters(p[0]).unwrap();
    assert_eq!(
        (c0.rx_frames, c0.rx_bytes, c0.tx_frames, c0.tx_bytes),
        (1, 98, 1, 98)
    );
    h.sw.count_tx_failure(p[0], 98);
    let c0 = h.sw.port_counters(p[0]).unwrap();
    assert_eq!((c0.tx_frames, c0.drops.get(DropReason::TxFailed)), (0, 1));
}

#[test]
fn removing_a_port_forgets_its_stations_and_reuses_the_id() {
    let mut h = Harness::new(Config::default().with_max_ports(3), 3);
    let p = h.ports.clone();
    h.send(1, mac(2), MacAddr::BROADCAST);
    assert_eq!(
        h.sw.add_port(PortConfig::default()),
        Err(Error::TooManyPorts { max: 3 })
    );
    h.sw.remove_port(p[1]).unwrap();
    assert_eq!(h.sw.remove_port(p[1]), Err(Error::NoSuchPort(p[1])));
    assert_eq!(h.sw.fdb().lookup(h.now, VlanId::UNTAGGED, mac(2)), None);
    assert_eq!(h.sw.ports(), &[p[0], p[2]]);
    assert_eq!(h.sw.add_port(PortConfig::default()), Ok(p[1]));
    assert_eq!(h.sw.port_counters(p[1]).unwrap(), PortCounters::default());
}

#[derive(Debug, Clone)]
enum Step {
    Frame { port: u8, dst: u8, src: u8, len: u8 },
    Advance(u16),
    Isolate(u8, bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u8..5, 0u8..12, 0u8..12, 0u8..80).prop_map(|(port, dst, src, len)| Step::Frame { port, dst, src, len }),
        1 => (0u16..400).prop_map(Step::Advance),
        1 => (0u8..5, any::<bool>()).prop_map(|(p, on)| Step::Isolate(p, on)),
    ]
}

/// Station `n` of a small population; 0 is broadcast, 1 multicast, 2 zero.
fn station(n: u8) -> MacAddr {
    match n {
        0 => MacAddr::BROADCAST,
        1 => MacAddr([0x33, 0x33, 0, 0, 0, 1]),
        2 => MacAddr::ZERO,
        n => mac(u64::from(n)),
    }
}

proptest! {
    /// For any frame sequence, no frame is ever sent to its ingress port, isolated
    /// ports never reach each other, and the table stays within its bound.
    #[test]
    fn never_back_out_the_ingress_port(steps in proptest::collection::vec(step(), 1..300)) {
        let cfg = Config::default().with_fdb_max_entries(6).with_aging_time(Duration::from_secs(60));
        let mut h = Harness::new(cfg, 5);
        for s in steps {
            match s {
                Step::Frame { port, dst, src, len } => {
                    let ingress = h.ports[usize::from(port)];
                    let mut f = icmp_frame(station(dst), station(src));
                    f.truncate(usize::from(len));
                    let iso = h.sw.port_config(ingress).unwrap().isolated;
                    let targets: Vec<PortId> = match h.sw.handle_frame(h.now, ingress, &f) {
                        Verdict::Forward(p) => vec![p],
                        Verdict::Flood => h.sw.flood_targets(ingress).collect(),
                        Verdict::Drop(_) => vec![],
                    };
                    prop_assert!(!targets.contains(&ingress));
                    if iso {
                        for t in &targets {
                            prop_assert!(!h.sw.port_config(*t).unwrap().isolated);
                        }
                    }
                    prop_assert!(h.sw.fdb().len() <= 6);
                }
                Step::Advance(s) => h.advance(Duration::from_secs(u64::from(s))),
                Step::Isolate(p, on) => {
                    let id = h.ports[usize::from(p)];
                    h.sw.set_port_config(id, PortConfig::default().with_isolated(on)).unwrap();
                }
            }
        }
    }
}

/// An Ethernet frame with `body` after the header.
fn frame(dst: MacAddr, src: MacAddr, ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + body.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// An IPv4/UDP frame from `src` (MAC) / `ip`, ports `sport` → `dport`.
fn udp(src: MacAddr, ip: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut f = frame(MacAddr::BROADCAST, src, 0x0800, &[]);
    let mut ip_hdr = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
    ip_hdr.extend_from_slice(&ip);
    ip_hdr.extend_from_slice(&[255, 255, 255, 255]);
    f.extend_from_slice(&ip_hdr);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 8, 0, 0]);
    f
}

/// An ARP request from `src` claiming `ip`.
fn arp(src: MacAddr, sender_mac: MacAddr, ip: [u8; 4]) -> Vec<u8> {
    let mut body = vec![0, 1, 8, 0, 6, 4, 0, 1];
    body.extend_from_slice(&sender_mac.0);
    body.extend_from_slice(&ip);
    body.extend_from_slice(&[0; 6]);
    body.extend_from_slice(&[10, 0, 0, 99]);
    frame(MacAddr::BROADCAST, src, 0x0806, &body)
}

#[test]
fn a_protected_port_sends_only_as_itself() {
    let mut sw = Switch::new(Config::default());
    let t0 = Instant::ZERO;
    let open = sw.add_port(PortConfig::default()).unwrap();
    let guest = sw
        .add_port(PortConfig::default().with_security(Some(PortSecurity::new(Some(mac(1))))))
        .unwrap();
    assert!(sw.set_port_addrs(guest, [std::net::Ipv4Addr::new(10, 0, 0, 5)]));
    assert!(!sw.set_port_addrs(open, []));
    let dropped = |sw: &mut Switch, f: &[u8]| match sw.handle_frame(t0, guest, f) {
        Verdict::Drop(r) => Some(r),
        _ => None,
    };
    // its own MAC and address pass; a DHCP request from 0.0.0.0 passes
    assert_eq!(
        dropped(&mut sw, &udp(mac(1), [10, 0, 0, 5], 1000, 53)),
        None
    );
    assert_eq!(dropped(&mut sw, &udp(mac(1), [0, 0, 0, 0], 68, 67)), None);
    assert_eq!(dropped(&mut sw, &arp(mac(1), mac(1), [10, 0, 0, 5])), None);
    assert_eq!(dropped(&mut sw, &arp(mac(1), mac(1), [0, 0, 0, 0])), None);
    // everything else is spoofing
    assert_eq!(
        dropped(&mut sw, &udp(mac(2), [10, 0, 0, 5], 1000, 53)),
        Some(DropReason::SpoofedMac)
    );
    assert_eq!(
        dropped(&mut sw, &udp(mac(1), [10, 0, 0, 6], 1000, 53)),
        Some(DropReason::SpoofedIp)
    );
    assert_eq!(
        dropped(&mut sw, &udp(mac(1), [0, 0, 0, 0], 1000, 53)),
        Some(DropReason::SpoofedIp)
    );
    assert_eq!(
        dropped(&mut sw, &arp(mac(1), mac(1), [10, 0, 0, 1])),
        Some(DropReason::SpoofedArp)
    );
    assert_eq!(
        dropped(&mut sw, &arp(mac(1), mac(3), [10, 0, 0, 5])),
        Some(DropReason::SpoofedArp)
    );
    assert_eq!(
        dropped(&mut sw, &udp(mac(1), [10, 0, 0, 5], 67, 68)),
        Some(DropReason::RogueDhcp)
    );
    let c = sw.port_counters(guest).unwrap();
    assert_eq!(c.drops.get(DropReason::SpoofedIp), 2);
    // the same traffic passes on an unprotected port
    for f in [
        udp(mac(2), [10, 0, 0, 6], 67, 68),
        arp(mac(2), mac(3), [10, 0, 0, 1]),
    ] {
        assert!(!matches!(sw.handle_frame(t0, open, &f), Verdict::Drop(_)));
    }
    // sticky: without a MAC the first one sent binds the port
    let sticky = sw
        .add_port(PortConfig::default().with_security(Some(PortSecurity::new(None))))
        .unwrap();
    sw.set_port_addrs(sticky, [std::net::Ipv4Addr::new(10, 0, 0, 7)]);
    assert!(!matches!(
        sw.handle_frame(t0, sticky, &udp(mac(7), [10, 0, 0, 7], 1, 2)),
        Verdict::Drop(_)
    ));
    assert_eq!(
        sw.handle_frame(t0, sticky, &udp(mac(8), [10, 0, 0, 7], 1, 2)),
        Verdict::Drop(DropReason::SpoofedMac)
    );
}

#[test]
fn floods_are_rate_limited_per_port() {
    let mut sw = Switch::new(Config::default().with_flood_limit(1000));
    let a = sw.add_port(PortConfig::default()).unwrap();
    let b = sw.add_port(PortConfig::default()).unwrap();
    let t = Instant::from_secs(10);
    let flooded = |sw: &mut Switch, port, t, n: u64| {
        (0..n)
            .filter(|_| {
                sw.handle_frame(
                    t,
                    port,
                    &icmp_frame(MacAddr::BROADCAST, mac(1 + port.index() as u64)),
                ) == Verdict::Flood
            })
            .count()
    };
    // a burst of a tenth of a second's worth, then nothing until time passes
    assert_eq!(flooded(&mut sw, a, t, 10_000), 100);
    assert_eq!(
        sw.port_counters(a)
            .unwrap()
            .drops
            .get(DropReason::FloodLimited),
        9_900
    );
    // the other port has its own bucket
    assert_eq!(flooded(&mut sw, b, t, 50), 50);
    // 50 ms later: 50 more
    assert_eq!(
        flooded(&mut sw, a, t + Duration::from_millis(50), 1_000),
        50
    );
    // unicast to a known station is not limited
    sw.handle_frame(t, b, &icmp_frame(mac(9), mac(2)));
    let known = (0..1_000)
        .filter(|_| {
            matches!(
                sw.handle_frame(t, a, &icmp_frame(mac(2), mac(1))),
                Verdict::Forward(_)
            )
        })
        .count();
    assert_eq!(known, 1_000);
    // 0: no limit
    let mut free = Switch::new(Config::default().with_flood_limit(0));
    let p = free.add_port(PortConfig::default()).unwrap();
    free.add_port(PortConfig::default()).unwrap();
    assert_eq!(flooded(&mut free, p, t, 10_000), 10_000);
}

/// An IPv6 packet from `src` (MAC) / `ip` to all-nodes, `next` header, `upper` after the
/// fixed header (checksums are not the switch's business).
fn ip6(src: MacAddr, ip: [u8; 16], next: u8, upper: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&u16::try_from(upper.len()).unwrap().to_be_bytes());
    p.extend_from_slice(&[next, 255]);
    p.extend_from_slice(&ip);
    p.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(upper);
    frame(MacAddr([0x33, 0x33, 0, 0, 0, 1]), src, 0x86dd, &p)
}

/// An ICMPv6 message of `kind` whose body starts with `target` (NS, NA).
fn nd(kind: u8, target: [u8; 16]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target);
    m
}

#[test]
fn a_protected_port_sends_ipv6_only_from_what_it_claimed() {
    let mut sw = Switch::new(Config::default());
    let t0 = Instant::ZERO;
    let sec = |m| PortConfig::default().with_security(Some(PortSecurity::new(Some(m))));
    let guest = sw.add_port(sec(mac(1))).unwrap();
    let other = sw.add_port(sec(mac(2))).unwrap();
    let open = sw.add_port(PortConfig::default()).unwrap();
    let dropped = |sw: &mut Switch, port, f: &[u8]| match sw.handle_frame(t0, port, f) {
        Verdict::Drop(r) => Some(r),
        _ => None,
    };
    let ll1 = link_local(mac(1));
    let slaac: [u8; 16] = "fd00::5054:ff:fe00:1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let stable: [u8; 16] = "fd00::1234:5678"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let unspecified = [0u8; 16];
    // its MAC's link-local passes at once; another address only once probed for
    assert_eq!(
        dropped(&mut sw, guest, &ip6(mac(1), ll1, 17, &[0; 8])),
        None
    );
    assert_eq!(
        dropped(&mut sw, guest, &ip6(mac(1), stable, 17, &[0; 8])),
        Some(DropReason::SpoofedIp)
    );
    let dad = |t| ip6(mac(1), unspecified, 58, &nd(135, t));
    assert_eq!(dropped(&mut sw, guest, &dad(stable)), None);
    assert_eq!(dropped(&mut sw, guest, &dad(slaac)), None);
    assert_eq!(
        dropped(&mut sw, guest, &ip6(mac(1), stable, 17, &[0; 8])),
        None
    );
    assert_eq!(
        dropped(&mut sw, guest, &ip6(mac(1), slaac, 58, &nd(136, slaac))),
        None
    );
    let claimed: Vec<_> = sw
        .port_config(guest)
        .unwrap()
        .security
        .unwrap()
        .addrs6()
        .collect();
    assert_eq!(claimed.len(), 2);
    // RA guard, redirects, DHCPv6 server messages, advertisements for others' addresses
    for (f, why) in [
        (
            ip6(mac(1), ll1, 58, &nd(134, [0; 16])),
            DropReason::RogueRouter,
        ),
        (
            ip6(mac(1), ll1, 58, &nd(137, [0; 16])),
            DropReason::RogueRouter,
        ),
        (
            ip6(mac(1), ll1, 17, &[0x02, 0x23, 0x02, 0x22, 0, 8, 0, 0]),
            DropReason::RogueDhcp,
        ),
        (
            ip6(mac(1), ll1, 58, &nd(136, link_local(mac(2)))),
            DropReason::SpoofedNd,
        ),
        (ip6(mac(1), unspecified, 17, &[0; 8]), DropReason::SpoofedIp),
    ] {
        assert_eq!(dropped(&mut sw, guest, &f), Some(why));
    }
    // the other port cannot probe for (so cannot take) the guest's addresses
    let grab = ip6(mac(2), unspecified, 58, &nd(135, slaac));
    assert_eq!(dropped(&mut sw, other, &grab), Some(DropReason::SpoofedNd));
    assert_eq!(
        dropped(&mut sw, other, &ip6(mac(2), slaac, 17, &[0; 8])),
        Some(DropReason::SpoofedIp)
    );
    // an MLD report (hop-by-hop header first) from :: passes
    let mut hbh = vec![58, 0, 5, 2, 0, 0, 1, 0];
    hbh.extend_from_slice(&[143, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        dropped(&mut sw, guest, &ip6(mac(1), unspecified, 0, &hbh)),
        None
    );
    // all of it passes on an unprotected port
    for f in [
        ip6(mac(3), ll1, 58, &nd(134, [0; 16])),
        ip6(mac(3), slaac, 17, &[0x02, 0x23, 0x02, 0x22, 0, 8, 0, 0]),
        ip6(mac(3), unspecified, 58, &nd(135, slaac)),
    ] {
        assert_eq!(dropped(&mut sw, open, &f), None);
    }
    // the claimed list is bounded; the oldest claims go first
    for i in 0..20u8 {
        let mut a = stable;
        a[15] = i;
        assert_eq!(dropped(&mut sw, guest, &dad(a)), None);
    }
    let sec = sw.port_config(guest).unwrap().security.unwrap();
    assert_eq!(sec.addrs6().count(), MAX_PORT_ADDRS6);
    assert!(!sec.holds6(&slaac));
}
