//! The network in memory: DHCP, DNS, NAT (TCP, UDP, ICMP), a port forward, port
//! security, the host-port split, IPv6 router discovery with RA guard and a DHCPv6
//! lease (persisted before its REPLY leaves), with smoltcp guests and virtual time. No
//! privilege, no device, no socket.

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use common::{default_network, echo_request, Entry, Harness, Mem};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::{dns, icmp, tcp, udp};
use smoltcp::wire::{DnsQueryType, IpAddress, IpEndpoint};
use vnet_network::{Event, PortConfig};
use vnet_switch::{DropReason, MacAddr, PortId, PortSecurity};

const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const SECS: Duration = Duration::from_secs(10);

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 8192]),
        tcp::SocketBuffer::new(vec![0; 8192]),
    )
}

fn udp_socket() -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]),
    )
}

fn icmp_socket() -> icmp::Socket<'static> {
    icmp::Socket::new(
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 2048]),
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 2048]),
    )
}

/// Guest `g` opens a TCP connection from `local` to `to:port`; its socket.
fn connect(h: &mut Harness, g: usize, to: Ipv4Addr, port: u16, local: u16) -> SocketHandle {
    let guest = &mut h.guests[g];
    let handle = guest.sockets.add(tcp_socket());
    let cx = guest.iface.context();
    guest
        .sockets
        .get_mut::<tcp::Socket>(handle)
        .connect(cx, (IpAddress::Ipv4(to), port), local)
        .unwrap();
    handle
}

/// Guest `g` pings `to` once (ident `id`); true if the reply came back.
fn ping(h: &mut Harness, g: usize, to: Ipv4Addr, id: u16) -> bool {
    let mut s = icmp_socket();
    s.bind(icmp::Endpoint::Ident(id)).unwrap();
    let handle = h.guests[g].sockets.add(s);
    let msg = echo_request(id, 1, b"vnet harness");
    let mut sent = false;
    let got = h.run_until(SECS, |h| {
        let s = h.guests[g].sockets.get_mut::<icmp::Socket>(handle);
        if !sent && s.can_send() {
            sent = s.send_slice(&msg, IpAddress::Ipv4(to)).is_ok();
        }
        let mut b = [0u8; 256];
        matches!(s.recv_slice(&mut b), Ok((n, from)) if n >= 8 && b[0] == 0 && from == IpAddress::Ipv4(to))
    });
    h.guests[g].sockets.remove(handle);
    got
}

#[test]
fn dhcp_lease_is_handed_over_before_the_ack_leaves() {
    let mut h = Harness::new(&default_network());
    let g = h.add_guest(0x10, PortConfig::default());
    h.start_dhcp(g, Some(b"alpha"));
    let ip = h.lease(g);
    assert!(
        (Ipv4Addr::new(192, 168, 122, 2)..=Ipv4Addr::new(192, 168, 122, 254)).contains(&ip),
        "{ip} is outside the pool"
    );
    let port = h.guests[g].port;
    let persisted = h.host.log.iter().position(|e| *e == Entry::Persisted(ip));
    let acked = h.host.log.iter().position(|e| *e == Entry::DhcpAck(port));
    assert!(
        matches!((persisted, acked), (Some(p), Some(a)) if p < a),
        "the lease must be handed over before its ACK: {:?}",
        h.host.log
    );
    let lease = h
        .net
        .gateway()
        .unwrap()
        .dhcp()
        .unwrap()
        .leases()
        .next()
        .cloned();
    assert_eq!(
        lease.as_ref().map(|l| (l.ip, l.mac)),
        Some((ip, h.guests[g].mac))
    );
    assert_eq!(lease.and_then(|l| l.hostname).as_deref(), Some("alpha"));
    let events: Vec<Event> = std::iter::from_fn(|| h.net.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::LeaseGranted(l) if l.ip == ip)),
        "no lease-granted event: {events:?}"
    );
    let granted = events
        .iter()
        .find(|e| e.kind() == "lease-granted")
        .map(|e| e.describe(|id| format!("port {id}")));
    let mac = MacAddr(h.guests[g].mac);
    assert_eq!(granted, Some(format!("{ip} {mac} alpha")));
    let moved = Event::MacMoved {
        mac,
        from: PortId(1),
        to: PortId(2),
        moves: 3,
    };
    assert_eq!(
        moved.describe(|id| format!("vm{id}")),
        format!("{mac} moved from vm1 to vm2 (3 moves)")
    );
}

/// Guest `g` resolves `name` (A) through the gateway.
fn resolve(h: &mut Harness, g: usize, name: &str, answer: impl Fn(&mut Harness)) -> Vec<IpAddress> {
    let s = dns::Socket::new(&[IpAddress::Ipv4(GW)], vec![None, None]);
    let handle = h.guests[g].sockets.add(s);
    let q = {
        let guest = &mut h.guests[g];
        let cx = guest.iface.context();
        guest
            .sockets
            .get_mut::<dns::Socket>(handle)
            .start_query(cx, name, DnsQueryType::A)
            .unwrap()
    };
    let mut out = Vec::new();
    h.run_until(SECS, |h| {
        answer(h);
        match h.guests[g]
            .sockets
            .get_mut::<dns::Socket>(handle)
            .get_query_result(q)
        {
            Ok(addrs) => {
                out = addrs.to_vec();
                true
            }
            Err(dns::GetQueryResultError::Pending) => false,
            Err(e) => panic!("resolving {name}: {e:?}"),
        }
    });
    // smoltcp hands every answer from the server to the first DNS socket: one at a time
    h.guests[g].sockets.remove(handle);
    out
}

#[test]
fn dns_serves_lease_names_and_forwards_the_rest() {
    let mut h = Harness::new(&default_network());
    let a = h.add_guest(0x11, PortConfig::default());
    let b = h.add_guest(0x12, PortConfig::default());
    h.start_dhcp(a, Some(b"alpha"));
    h.start_dhcp(b, None);
    let ip_a = h.lease(a);
    h.lease(b);
    assert_eq!(
        resolve(&mut h, b, "alpha", |_| {}),
        vec![IpAddress::Ipv4(ip_a)]
    );

    // a name the network does not hold goes to the host's resolver (here in memory)
    let upstream: SocketAddr = "10.255.0.53:53".parse().unwrap();
    h.net
        .gateway_mut()
        .unwrap()
        .dns_mut()
        .unwrap()
        .set_system_upstreams(vec![upstream]);
    let got = resolve(&mut h, b, "www.example.test", |h| {
        for (to, q) in std::mem::take(&mut h.host.queries) {
            assert_eq!(to, upstream);
            // the answer: the query's header and question with QR and RA set, one A
            // record (its name points at the question), no additional section
            let mut end = 12;
            while q[end] != 0 {
                end += 1 + usize::from(q[end]);
            }
            let mut r = q[..end + 5].to_vec();
            r[2] |= 0x80;
            r[3] |= 0x80;
            r[6..8].copy_from_slice(&1u16.to_be_bytes());
            r[10..12].copy_from_slice(&[0, 0]);
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
            r.extend_from_slice(&[203, 0, 113, 7]);
            let now = h.now();
            h.net.handle_dns_upstream(now, to, &r);
        }
    });
    assert_eq!(
        got,
        vec![IpAddress::Ipv4(Ipv4Addr::new(203, 0, 113, 7))],
        "{:?}",
        h.net.gateway().unwrap().dns().unwrap().stats()
    );
}

#[test]
fn nat_carries_tcp_udp_and_icmp() {
    let mut h = Harness::new(&default_network());
    let g = h.add_guest(0x13, PortConfig::default());
    h.start_dhcp(g, None);
    h.lease(g);

    // TCP to an echo service beyond the NAT
    let handle = connect(&mut h, g, REMOTE, 7, 40_000);
    let mut sent = false;
    let mut echoed = Vec::new();
    assert!(
        h.run_until(SECS, |h| {
            let s = h.guests[g].sockets.get_mut::<tcp::Socket>(handle);
            if !sent && s.may_send() {
                sent = s.send_slice(b"hello through the NAT").unwrap() > 0;
            }
            if s.can_recv() {
                let mut b = [0u8; 64];
                let n = s.recv_slice(&mut b).unwrap();
                echoed.extend_from_slice(&b[..n]);
            }
            echoed == b"hello through the NAT"
        }),
        "TCP echo through the NAT: got {echoed:?}, state {:?}, opened {:?}, streams {:?}, nat {:?}",
        h.guests[g].sockets.get::<tcp::Socket>(handle).state(),
        h.host.opened,
        h.host
            .streams
            .values()
            .map(|m| (m.written.len(), m.to_read.len()))
            .collect::<Vec<_>>(),
        h.net.gateway().unwrap().nat().unwrap().stats()
    );
    assert!(h
        .host
        .opened
        .contains(&(vnet_nat::Proto::Tcp, SocketAddrV4::new(REMOTE, 7).into())));

    // a refused connect resets the guest's connection
    let refused = connect(&mut h, g, REMOTE, 9, 40_001);
    assert!(
        h.run_until(SECS, |h| h.guests[g]
            .sockets
            .get::<tcp::Socket>(refused)
            .state()
            == tcp::State::Closed),
        "a refused connect must reset the guest"
    );

    // UDP
    let mut s = udp_socket();
    s.bind(5353).unwrap();
    let handle = h.guests[g].sockets.add(s);
    let mut sent = false;
    assert!(
        h.run_until(SECS, |h| {
            let s = h.guests[g].sockets.get_mut::<udp::Socket>(handle);
            if !sent && s.can_send() {
                sent = s
                    .send_slice(b"datagram", IpEndpoint::new(IpAddress::Ipv4(REMOTE), 5000))
                    .is_ok();
            }
            let mut b = [0u8; 64];
            matches!(s.recv_slice(&mut b), Ok((8, _)) if &b[..8] == b"datagram")
        }),
        "UDP echo through the NAT"
    );

    // ICMP echo
    assert!(ping(&mut h, g, REMOTE, 0x4242), "ping through the NAT");
    let st = h.net.gateway().unwrap().nat().unwrap().stats();
    assert!(
        st.tcp_flows >= 2 && st.udp_flows >= 1 && st.icmp_flows >= 1,
        "{st:?}"
    );
}

#[test]
fn a_port_forward_reaches_the_guest() {
    let mut h = Harness::new(&default_network());
    let g = h.add_guest(0x14, PortConfig::default());
    h.start_dhcp(g, None);
    let ip = h.lease(g);
    let mut listener = tcp_socket();
    listener.listen(8080).unwrap();
    let handle = h.guests[g].sockets.add(listener);

    // a client of the forwarded host port, as the host side accepted it
    let client = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 50), 41_000);
    let now = h.now();
    let nat = h.net.gateway_mut().unwrap().nat_mut().unwrap();
    let flow = nat
        .accept_inbound(now.mono, client.into(), SocketAddrV4::new(ip, 8080).into())
        .expect("admitted");
    h.host.protos.insert(flow, vnet_nat::Proto::Tcp);
    h.host.streams.insert(
        flow,
        Mem {
            to_read: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            ..Mem::default()
        },
    );
    let mut request = Vec::new();
    let mut answered = false;
    assert!(
        h.run_until(SECS, |h| {
            let s = h.guests[g].sockets.get_mut::<tcp::Socket>(handle);
            if s.can_recv() {
                let mut b = [0u8; 128];
                let n = s.recv_slice(&mut b).unwrap();
                request.extend_from_slice(&b[..n]);
            }
            if !answered && request.ends_with(b"\r\n\r\n") && s.may_send() {
                answered = s.send_slice(b"HTTP/1.0 200 OK\r\n\r\n").unwrap() > 0;
            }
            h.host
                .streams
                .get(&flow)
                .is_some_and(|m| m.written == b"HTTP/1.0 200 OK\r\n\r\n")
        }),
        "the forwarded connection: the guest read {request:?}"
    );
    assert_eq!(
        h.guests[g]
            .sockets
            .get::<tcp::Socket>(handle)
            .remote_endpoint(),
        Some(IpEndpoint::new(
            IpAddress::Ipv4(*client.ip()),
            client.port()
        )),
        "the guest sees the client's own address"
    );
}

/// Frames guest `g`'s port dropped as spoofed (IPv4 or ARP from an address it does
/// not hold).
fn spoofed(h: &Harness, g: usize) -> u64 {
    h.net
        .switch()
        .port_counters(h.guests[g].port)
        .unwrap()
        .drops
        .iter()
        .filter(|(r, _)| matches!(r, DropReason::SpoofedIp | DropReason::SpoofedArp))
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn port_security_follows_the_lease() {
    let mut h = Harness::new(&default_network());
    let mac = MacAddr([0x52, 0x54, 0, 0, 0, 0x15]);
    let g = h.add_guest(
        0x15,
        PortConfig::default().with_security(Some(PortSecurity::new(Some(mac)))),
    );
    h.start_dhcp(g, None);
    let ip = h.lease(g);
    let port = h.guests[g].port;
    let sec = h.net.switch().port_config(port).unwrap().security.unwrap();
    assert_eq!(sec.addrs().collect::<Vec<_>>(), vec![ip]);
    assert!(
        ping(&mut h, g, GW, 1),
        "the leased address reaches the gateway"
    );
    assert_eq!(spoofed(&h, g), 0);

    // the same guest from an address it does not hold: dropped at its port
    h.guests[g].dhcp = None;
    let other = if ip == Ipv4Addr::new(192, 168, 122, 77) {
        Ipv4Addr::new(192, 168, 122, 78)
    } else {
        Ipv4Addr::new(192, 168, 122, 77)
    };
    h.set_static(g, other);
    assert!(
        !ping(&mut h, g, GW, 2),
        "a spoofed source must not reach the gateway"
    );
    assert!(spoofed(&h, g) > 0);
}

#[test]
fn the_host_port_takes_what_the_gateway_does_not_serve() {
    let mut h = Harness::new(&default_network());
    let host_port = h
        .net
        .add_port(PortConfig::default().with_learning(false))
        .unwrap();
    h.net.set_host_port(Some(host_port));
    let g = h.add_guest(0x16, PortConfig::default());
    h.set_static(g, Ipv4Addr::new(192, 168, 122, 10));

    // ICMP echo to the gateway's address: the gateway answers, the host never sees it
    assert!(ping(&mut h, g, GW, 3));
    let to_host = |h: &Harness, proto: u8| {
        h.host.out.get(&host_port).map_or(0, |fs| {
            fs.iter()
                .filter(|f| {
                    f.len() > 34
                        && f[12..14] == [8, 0]
                        && f[23] == proto
                        && f[30..34] == GW.octets()
                })
                .count()
        })
    };
    assert_eq!(to_host(&h, 1), 0, "ICMP echo is the gateway's");

    // TCP to the gateway's address (the host's ssh): the host port takes it
    let handle = connect(&mut h, g, GW, 22, 40_100);
    assert!(
        h.run_until(SECS, |h| to_host(h, 6) > 0),
        "the SYN to the gateway's port 22 must reach the host port"
    );
    // and the gateway did not answer it (no RST): the guest still waits
    assert_eq!(
        h.guests[g].sockets.get::<tcp::Socket>(handle).state(),
        tcp::State::SynSent
    );
}

/// An ICMPv6 router solicitation (`ra: false`) or advertisement (`ra: true`, with a
/// prefix) from `mac`'s link-local address to the all-routers or all-nodes group.
fn ndp_frame(mac: [u8; 6], ra: bool) -> Vec<u8> {
    use etherparse::icmpv6::RouterAdvertisementHeader;
    use etherparse::{Icmpv6Type, PacketBuilder};
    let ll = MacAddr(mac).ipv6_link_local().octets();
    let group = if ra { 1 } else { 2 };
    let dst = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, group];
    let (kind, payload) = if ra {
        let mut p = vec![0u8; 8];
        p.extend_from_slice(&[3, 4, 64, 0xc0, 0, 0, 14, 16, 0, 0, 14, 16, 0, 0, 0, 0]);
        p.extend_from_slice(&[
            0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        let h = RouterAdvertisementHeader {
            cur_hop_limit: 64,
            managed_address_config: false,
            other_config: false,
            router_lifetime: 1800,
        };
        (Icmpv6Type::RouterAdvertisement(h), p)
    } else {
        (Icmpv6Type::RouterSolicitation, Vec::new())
    };
    let b = PacketBuilder::ethernet2(mac, [0x33, 0x33, 0, 0, 0, group])
        .ipv6(ll, dst, 255)
        .icmpv6(kind);
    let mut f = Vec::new();
    b.write(&mut f, &payload).unwrap();
    f
}

/// Whether `f` is an ICMPv6 router advertisement.
fn is_ra(f: &[u8]) -> bool {
    f.len() > 54 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == 134
}

#[test]
fn router_discovery_and_ra_guard_through_the_network() {
    let def = vnet_config::Network::from_xml(
        "<network><name>v6</name><forward mode='nat'/><mac address='52:54:00:0a:0b:0c'/>
         <ip address='192.168.122.1' netmask='255.255.255.0'/>
         <ip family='ipv6' address='fd00:1::1' prefix='64'/></network>",
    )
    .unwrap();
    let mut h = Harness::new(&def);
    let open = h.add_guest(0x21, PortConfig::default());
    let mac = MacAddr([0x52, 0x54, 0, 0, 0, 0x22]);
    let secure = h.add_guest(
        0x22,
        PortConfig::default().with_security(Some(PortSecurity::new(Some(mac)))),
    );
    // the unsolicited advertisements at start reach every guest; drain them
    h.step(Duration::from_millis(10));
    for g in [open, secure] {
        assert!(
            h.guests[g].wire.rx.drain(..).any(|f| is_ra(&f)),
            "guest {g}: no RA at start"
        );
    }
    // a solicitation is answered on the soliciting guest's port only
    h.guests[open]
        .wire
        .tx
        .push_back(ndp_frame([0x52, 0x54, 0, 0, 0, 0x21], false));
    h.step(Duration::from_millis(10));
    let answer: Vec<Vec<u8>> = h.guests[open]
        .wire
        .rx
        .drain(..)
        .filter(|f| is_ra(f))
        .collect();
    assert_eq!(answer.len(), 1);
    assert_eq!(
        &answer[0][..6],
        &[0x52, 0x54, 0, 0, 0, 0x21],
        "unicast to the guest"
    );
    assert!(!h.guests[secure].wire.rx.iter().any(|f| is_ra(f)));
    // RA guard: the protected guest's advertisement goes nowhere; the open one's passes
    h.guests[secure].wire.tx.push_back(ndp_frame(mac.0, true));
    h.step(Duration::from_millis(10));
    assert!(!h.guests[open].wire.rx.drain(..).any(|f| is_ra(&f)));
    let port = h.guests[secure].port;
    let drops = h.net.switch().port_counters(port).unwrap().drops;
    assert_eq!(drops.get(DropReason::RogueRouter), 1);
    h.guests[open]
        .wire
        .tx
        .push_back(ndp_frame([0x52, 0x54, 0, 0, 0, 0x21], true));
    h.step(Duration::from_millis(10));
    assert!(h.guests[secure].wire.rx.drain(..).any(|f| is_ra(&f)));
    let v6 = h.net.gateway().unwrap().ndp().unwrap().stats();
    assert_eq!(v6.router_solicitations, 1);
}

#[test]
fn a_dhcpv6_lease_is_handed_over_and_reported() {
    let def = vnet_config::Network::from_xml(
        "<network><name>v6d</name><forward mode='nat'/><mac address='52:54:00:0a:0b:0c'/>
         <ip address='192.168.122.1' netmask='255.255.255.0'/>
         <ip family='ipv6' address='fd00:1::1' prefix='64'>
           <dhcp><range start='fd00:1::1:10' end='fd00:1::1:20'/></dhcp>
         </ip></network>",
    )
    .unwrap();
    let mut h = Harness::new(&def);
    let g = h.add_guest(0x31, PortConfig::default());
    let mac = [0x52, 0x54, 0, 0, 0, 0x31];
    // a SOLICIT with rapid commit: client id DUID-LL, IA_NA 1
    let mut sol = vec![1, 0x12, 0x34, 0x56, 0, 1, 0, 10, 0, 3, 0, 1];
    sol.extend_from_slice(&mac);
    sol.extend_from_slice(&[0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    sol.extend_from_slice(&[0, 14, 0, 0]);
    let ll = MacAddr(mac).ipv6_link_local().octets();
    let servers = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2];
    let b = etherparse::PacketBuilder::ethernet2(mac, [0x33, 0x33, 0, 1, 0, 2])
        .ipv6(ll, servers, 1)
        .udp(546, 547);
    let mut f = Vec::new();
    b.write(&mut f, &sol).unwrap();
    h.step(Duration::from_millis(10));
    h.guests[g].wire.rx.clear();
    h.guests[g].wire.tx.push_back(f);
    h.step(Duration::from_millis(10));
    // the lease was handed over to be persisted before the REPLY left for the guest
    let persisted = h
        .host
        .log
        .iter()
        .position(|e| matches!(e, Entry::Persisted6(_)));
    let replied = h
        .host
        .log
        .iter()
        .position(|e| *e == Entry::Dhcp6Reply(h.guests[g].port));
    assert!(
        matches!((persisted, replied), (Some(p), Some(r)) if p < r),
        "{persisted:?} {replied:?}"
    );
    let events: Vec<Event> = std::iter::from_fn(|| h.net.poll_event()).collect();
    let granted = events
        .iter()
        .find(|e| e.kind() == "lease-granted")
        .expect("an event");
    assert!(
        granted
            .describe(|p| p.to_string())
            .starts_with("fd00:1::1:1"),
        "{granted:?}"
    );
}
