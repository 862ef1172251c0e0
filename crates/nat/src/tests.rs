//! Engine tests with real frames (built with etherparse) and a fake clock.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use crate::*;

const GW_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x05];
const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);
const GUEST: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 5);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 2);

fn nat_with(f: impl FnOnce(&mut NatConfig)) -> (Nat, Instant) {
    let mut cfg = NatConfig::new(GW_MAC, GW, 24);
    f(&mut cfg);
    let t0 = Instant::now();
    (Nat::new(cfg, t0, 7), t0)
}

fn syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, dport, 1000, 64240)
        .syn()
        .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
        .expect("options");
    let mut v = Vec::new();
    b.write(&mut v, &[]).expect("write");
    v
}

fn udp(sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv4(GUEST.octets(), dst.octets(), 64)
        .udp(sport, dport);
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("write");
    v
}

/// A guest SYN from `sport` to `dst:dport`; the flow it opens (its `Action::Open`).
fn syn_open(nat: &mut Nat, t: Instant, sport: u16, dst: Ipv4Addr, dport: u16) -> FlowId {
    nat.handle_frame(t, &syn(GUEST, sport, dst, dport));
    let Some(Action::Open { flow, .. }) = nat.poll_action() else {
        panic!("no Action::Open for the SYN")
    };
    flow
}

fn actions(nat: &mut Nat) -> Vec<Action> {
    std::iter::from_fn(|| nat.poll_action()).collect()
}

fn frames(nat: &mut Nat) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| nat.poll_transmit()).collect()
}

/// A host socket in memory: what the engine writes, what it may read.
#[derive(Default)]
struct Mem {
    written: Vec<u8>,
    to_read: Vec<u8>,
    eof: bool,
    shut: bool,
}

impl HostStream for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.to_read.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.to_read.len());
        buf[..n].copy_from_slice(&self.to_read[..n]);
        self.to_read.drain(..n);
        Ok(n)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shut = true;
        Ok(())
    }
}

#[test]
fn a_syn_opens_a_host_connection_and_is_answered_once_it_succeeds() {
    let (mut nat, t0) = nat_with(|_| {});
    nat.handle_frame(t0, &syn(GUEST, 40000, REMOTE, 80));
    let a = actions(&mut nat);
    let [Action::Open {
        flow,
        proto: Proto::Tcp,
        target,
    }] = a.as_slice()
    else {
        panic!("{a:?}");
    };
    assert_eq!(*target, SocketAddr::V4(SocketAddrV4::new(REMOTE, 80)));
    assert!(
        frames(&mut nat).is_empty(),
        "nothing for the guest before the connect"
    );
    // a retransmitted SYN while connecting changes nothing
    nat.handle_frame(t0, &syn(GUEST, 40000, REMOTE, 80));
    assert!(actions(&mut nat).is_empty());

    nat.opened(t0, *flow, Ok(()));
    let out = frames(&mut nat);
    let synack = out
        .iter()
        .find_map(|f| {
            let p = SlicedPacket::from_ethernet(f).ok()?;
            match p.transport? {
                TransportSlice::Tcp(t) if t.syn() && t.ack() => {
                    Some((p.net, t.acknowledgment_number(), t.source_port()))
                }
                _ => None,
            }
        })
        .expect("a SYN-ACK to the guest");
    let Some(NetSlice::Ipv4(ip)) = synack.0 else {
        panic!()
    };
    assert_eq!(
        ip.header().source_addr(),
        REMOTE,
        "from the address the guest asked for"
    );
    assert_eq!(synack.1, 1001);
    assert_eq!(synack.2, 80);
    assert_eq!(nat.flows(t0)[0].state, "syn-received");
}

#[test]
fn a_second_open_report_changes_nothing() {
    let (mut nat, t0) = nat_with(|_| {});
    let flow = syn_open(&mut nat, t0, 40000, REMOTE, 80);
    nat.opened(t0, flow, Ok(()));
    assert_eq!(frames(&mut nat).len(), 1, "the SYN-ACK");
    // a driver reporting twice (or late, with an error) leaves the flow as it is
    nat.opened(t0, flow, Ok(()));
    nat.opened(t0, flow, Err(OpenError::Refused));
    assert!(frames(&mut nat).is_empty());
    assert!(actions(&mut nat).is_empty());
    let f = nat.flows(t0);
    assert_eq!(
        (f.len(), f[0].proto, f[0].state),
        (1, Proto::Tcp, "syn-received")
    );
}

#[test]
fn refused_gives_a_rst_and_unreachable_an_icmp_error() {
    let (mut nat, t0) = nat_with(|_| {});
    let flow = syn_open(&mut nat, t0, 40001, REMOTE, 9);
    nat.opened(t0, flow, Err(OpenError::Refused));
    let f = frames(&mut nat);
    let p = SlicedPacket::from_ethernet(&f[0]).expect("frame");
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!()
    };
    assert!(t.rst() && t.ack());
    assert_eq!(t.acknowledgment_number(), 1001);
    assert_eq!(actions(&mut nat), vec![Action::Close { flow }]);
    assert_eq!(nat.stats().flows, 0);

    let flow = syn_open(&mut nat, t0, 40002, REMOTE, 80);
    nat.opened(t0, flow, Err(OpenError::Unreachable));
    let f = frames(&mut nat);
    let p = SlicedPacket::from_ethernet(&f[0]).expect("frame");
    let Some(TransportSlice::Icmpv4(icmp)) = p.transport else {
        panic!()
    };
    assert!(matches!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(_)
    ));
    assert_eq!(nat.stats().unreachable, 1);
}

#[test]
fn a_connect_that_never_finishes_times_out_as_unreachable() {
    let (mut nat, t0) = nat_with(|_| {});
    let flow = syn_open(&mut nat, t0, 40003, REMOTE, 80);
    nat.handle_timeout(t0 + Duration::from_secs(21));
    assert_eq!(actions(&mut nat), vec![Action::Close { flow }]);
    assert_eq!(frames(&mut nat).len(), 1, "an ICMP error");
}

#[test]
fn tcp_data_is_pumped_both_ways() {
    let (mut nat, t0) = nat_with(|_| {});
    let flow = syn_open(&mut nat, t0, 40004, REMOTE, 80);
    nat.opened(t0, flow, Ok(()));
    let out = frames(&mut nat);
    let p = SlicedPacket::from_ethernet(&out[0]).expect("synack");
    let Some(TransportSlice::Tcp(sa)) = p.transport else {
        panic!()
    };
    let server_seq = sa.sequence_number();
    // the guest ACKs and sends "hello"
    let b = PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv4(GUEST.octets(), REMOTE.octets(), 64)
        .tcp(40004, 80, 1001, 64240)
        .ack(server_seq.wrapping_add(1))
        .psh();
    let mut data = Vec::new();
    b.write(&mut data, b"hello").expect("write");
    nat.handle_frame(t0, &data);
    assert_eq!(nat.poll_dirty(), Some(flow));
    let mut host = Mem {
        to_read: b"world".to_vec(),
        ..Mem::default()
    };
    nat.pump(t0, flow, &mut host);
    assert_eq!(host.written, b"hello");
    let sent: Vec<u8> = frames(&mut nat)
        .iter()
        .filter_map(|f| {
            let p = SlicedPacket::from_ethernet(f).ok()?;
            match p.transport? {
                TransportSlice::Tcp(t) => Some(t.payload().to_vec()),
                _ => None,
            }
        })
        .flatten()
        .collect();
    assert_eq!(sent, b"world");
    let info = &nat.flows(t0)[0];
    assert_eq!((info.bytes_out, info.bytes_in), (5, 5));
}

#[test]
fn udp_flows_open_a_socket_carry_replies_and_expire() {
    let (mut nat, t0) = nat_with(|_| {});
    nat.handle_frame(t0, &udp(5353, REMOTE, 53, b"query"));
    let a = actions(&mut nat);
    let [Action::Open {
        flow,
        proto: Proto::Udp,
        ..
    }, Action::Datagram { data, .. }] = a.as_slice()
    else {
        panic!("{a:?}");
    };
    assert_eq!(data, b"query");
    nat.datagram(t0, *flow, b"answer");
    let f = frames(&mut nat);
    let p = SlicedPacket::from_ethernet(&f[0]).expect("frame");
    let Some(TransportSlice::Udp(u)) = p.transport else {
        panic!()
    };
    assert_eq!(
        (u.source_port(), u.destination_port(), u.payload()),
        (53, 5353, &b"answer"[..])
    );
    // replied: kept for 180 s of silence, then closed
    nat.handle_timeout(t0 + Duration::from_secs(100));
    assert!(actions(&mut nat).is_empty());
    nat.handle_timeout(t0 + Duration::from_secs(181));
    assert_eq!(actions(&mut nat), vec![Action::Close { flow: *flow }]);
}

#[test]
fn icmp_echo_goes_out_and_the_reply_gets_the_guests_id_back() {
    let (mut nat, t0) = nat_with(|_| {});
    let b = PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv4(GUEST.octets(), REMOTE.octets(), 64)
        .icmpv4_echo_request(0x1234, 7);
    let mut f = Vec::new();
    b.write(&mut f, b"ping!").expect("write");
    nat.handle_frame(t0, &f);
    let a = actions(&mut nat);
    let [Action::Open {
        flow,
        proto: Proto::Icmp,
        target,
    }, Action::Datagram { data, .. }] = a.as_slice()
    else {
        panic!("{a:?}");
    };
    assert_eq!(*target, SocketAddr::V4(SocketAddrV4::new(REMOTE, 0)));
    assert_eq!(&data[..2], &[8, 0]);
    // the kernel's reply carries its own id; the guest gets 0x1234 back
    let reply = [0u8, 0, 0, 0, 0x99, 0x99, 0, 7, b'p', b'i', b'n', b'g', b'!'];
    nat.datagram(t0, *flow, &reply);
    let f = frames(&mut nat);
    let p = SlicedPacket::from_ethernet(&f[0]).expect("frame");
    let Some(TransportSlice::Icmpv4(icmp)) = p.transport else {
        panic!()
    };
    let Icmpv4Type::EchoReply(echo) = icmp.icmp_type() else {
        panic!()
    };
    assert_eq!((echo.id, echo.seq), (0x1234, 7));
}

#[test]
fn host_access_maps_the_gateway_to_loopback_or_is_refused() {
    let (mut nat, t0) = nat_with(|_| {});
    nat.handle_frame(t0, &syn(GUEST, 40005, GW, 22));
    let Some(Action::Open { target, .. }) = nat.poll_action() else {
        panic!()
    };
    assert_eq!(
        target,
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 22))
    );

    let (mut nat, t0) = nat_with(|c| c.host_access = false);
    nat.handle_frame(t0, &syn(GUEST, 40006, GW, 22));
    assert!(actions(&mut nat).is_empty());
    let f = frames(&mut nat);
    let p = SlicedPacket::from_ethernet(&f[0]).expect("frame");
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!()
    };
    assert!(t.rst());
}

/// A guest addressing the host's loopback itself (not the gateway) gets nowhere, with
/// host access on or off: loopback is reached only through the gateway address (found
/// by the nat_translator fuzz target).
#[test]
fn a_guest_packet_to_loopback_itself_opens_nothing() {
    for host_access in [true, false] {
        let (mut nat, t0) = nat_with(|c| c.host_access = host_access);
        nat.handle_frame(t0, &syn(GUEST, 40007, Ipv4Addr::LOCALHOST, 22));
        nat.handle_frame(t0, &syn(GUEST, 40008, Ipv4Addr::new(127, 9, 9, 9), 80));
        assert!(actions(&mut nat).is_empty(), "host access {host_access}");
    }
}

#[test]
fn flow_bounds_refuse_new_flows_per_guest() {
    let (mut nat, t0) = nat_with(|c| c.limits.max_flows_per_guest = 2);
    for port in [1, 2, 3] {
        nat.handle_frame(t0, &syn(GUEST, 41000 + port, REMOTE, 80));
    }
    let opens = actions(&mut nat)
        .iter()
        .filter(|a| matches!(a, Action::Open { .. }))
        .count();
    assert_eq!(opens, 2);
    assert_eq!(nat.stats().refused_limit, 1);
    let f = frames(&mut nat);
    assert_eq!(f.len(), 1, "a RST for the third");
    // another guest is not affected
    nat.handle_frame(t0, &syn(Ipv4Addr::new(192, 168, 122, 6), 41000, REMOTE, 80));
    assert_eq!(actions(&mut nat).len(), 1);
}

#[test]
fn frames_from_outside_the_segment_or_garbage_are_dropped() {
    let (mut nat, t0) = nat_with(|_| {});
    nat.handle_frame(t0, &syn(Ipv4Addr::new(10, 1, 1, 1), 40000, REMOTE, 80));
    nat.handle_frame(t0, &[0u8; 10]);
    nat.handle_frame(t0, &syn(GUEST, 40000, REMOTE, 80)[..30]);
    assert!(actions(&mut nat).is_empty());
    assert!(frames(&mut nat).is_empty());
    assert_eq!(nat.stats().dropped, 3);
    // by reason: one from outside the subnet, two that do not parse
    assert_eq!(nat.stats().dropped_for(DropReason::ForeignSource), 1);
    assert_eq!(nat.stats().dropped_for(DropReason::Malformed), 2);
}

#[test]
fn inbound_connections_are_opened_from_the_clients_address() {
    let (mut nat, t0) = nat_with(|_| {});
    // the engine learns the guest's MAC from any frame it sent
    nat.handle_frame(t0, &udp(1, REMOTE, 9, b"x"));
    let _ = actions(&mut nat);
    let client = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 55000);
    let flow = nat
        .accept_inbound(t0, client.into(), SocketAddrV4::new(GUEST, 80).into())
        .expect("a flow");
    let f = frames(&mut nat);
    let synf = f
        .iter()
        .find_map(|f| {
            let p = SlicedPacket::from_ethernet(f).ok()?;
            let Some(NetSlice::Ipv4(ip)) = p.net else {
                return None;
            };
            match p.transport? {
                TransportSlice::Tcp(t) if t.syn() => {
                    Some((ip.header().source_addr(), t.source_port(), f[..6].to_vec()))
                }
                _ => None,
            }
        })
        .expect("a SYN to the guest");
    assert_eq!((synf.0, synf.1), (*client.ip(), client.port()));
    assert_eq!(synf.2, GUEST_MAC);
    assert!(nat.flows(t0).iter().any(|f| f.id == flow && f.inbound));
}

// ---- half-open flows (issue #17) ----

const GUEST_B: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 6);
const GUEST_B_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x06];

/// A TCP segment from a guest: `flags` from `S`yn, `A`ck, `R`st, `F`in, `P`sh.
fn seg(from: (Ipv4Addr, u16), to: (Ipv4Addr, u16), seq: u32, ack: u32, flags: &str) -> Vec<u8> {
    let mac = if from.0 == GUEST_B {
        GUEST_B_MAC
    } else {
        GUEST_MAC
    };
    let mut b = PacketBuilder::ethernet2(mac, GW_MAC)
        .ipv4(from.0.octets(), to.0.octets(), 64)
        .tcp(from.1, to.1, seq, 64240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(ack),
            'R' => b.rst(),
            'F' => b.fin(),
            'P' => b.psh(),
            _ => panic!("flag {f}"),
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).expect("write");
    v
}

/// The TCP segments among `frames`: (destination, seq, ack, SYN, ACK, RST).
fn tcp_segs(frames: &[Vec<u8>]) -> Vec<(SocketAddrV4, u32, u32, bool, bool, bool)> {
    frames
        .iter()
        .filter_map(|f| {
            let p = SlicedPacket::from_ethernet(f).ok()?;
            let Some(NetSlice::Ipv4(ip)) = p.net else {
                return None;
            };
            let TransportSlice::Tcp(t) = p.transport? else {
                return None;
            };
            Some((
                SocketAddrV4::new(ip.header().destination_addr(), t.destination_port()),
                t.sequence_number(),
                t.acknowledgment_number(),
                t.syn(),
                t.ack(),
                t.rst(),
            ))
        })
        .collect()
}

/// The SYN-ACK to `guest` among `frames`: its sequence number.
fn synack_to(frames: &[Vec<u8>], guest: SocketAddrV4) -> Option<u32> {
    tcp_segs(frames)
        .into_iter()
        .find(|s| s.0 == guest && s.3 && s.4 && s.2 == 1001)
        .map(|s| s.1)
}

fn state_of(nat: &Nat, t: Instant, flow: FlowId) -> Option<&'static str> {
    nat.flows(t).iter().find(|f| f.id == flow).map(|f| f.state)
}

/// A raw SYN scan from guest A (its kernel, holding no socket, resets the SYN-ACK)
/// leaves no listener behind: guest B's connection to the same remote is B's own.
#[test]
fn a_guest_resetting_the_syn_ack_ends_its_flow_and_another_guest_connects() {
    let (mut nat, t0) = nat_with(|_| {});
    let remote = (REMOTE, 81);
    let b = SocketAddrV4::new(GUEST_B, 50000);
    for sport in [40000, 40001, 40002] {
        let flow = syn_open(&mut nat, t0, sport, REMOTE, 81);
        nat.opened(t0, flow, Ok(()));
        let guest = SocketAddrV4::new(GUEST, sport);
        assert!(synack_to(&frames(&mut nat), guest).is_some(), "{sport}");
        // RFC 9293 §3.10.7.1: a SYN-ACK to a port with no socket (CLOSED) is answered
        // <SEQ=SEG.ACK><CTL=RST>
        nat.handle_frame(t0, &seg((GUEST, sport), remote, 1001, 0, "R"));
        assert_eq!(
            actions(&mut nat),
            vec![Action::Close { flow }],
            "the reset flow ends at once"
        );
        assert!(nat.flows(t0).is_empty(), "{:?}", nat.flows(t0));
    }
    assert_eq!(nat.stats().handshake_aborts, 3);

    // B's SYN to the same remote is answered by B's flow, which carries B's bytes
    nat.handle_frame(t0, &seg((GUEST_B, 50000), remote, 1000, 0, "S"));
    let Some(Action::Open { flow, .. }) = nat.poll_action() else {
        panic!("no Action::Open for B")
    };
    nat.opened(t0, flow, Ok(()));
    let out = frames(&mut nat);
    let isn = synack_to(&out, b).expect("a SYN-ACK to B");
    assert_eq!(state_of(&nat, t0, flow), Some("syn-received"));
    let data = PacketBuilder::ethernet2(GUEST_B_MAC, GW_MAC)
        .ipv4(GUEST_B.octets(), REMOTE.octets(), 64)
        .tcp(50000, 81, 1001, 64240)
        .ack(isn.wrapping_add(1))
        .psh();
    let mut f = Vec::new();
    data.write(&mut f, b"from B").expect("write");
    nat.handle_frame(t0, &f);
    assert_eq!(state_of(&nat, t0, flow), Some("established"));
    let mut host = Mem::default();
    nat.pump(t0, flow, &mut host);
    assert_eq!(host.written, b"from B");
    assert_eq!(nat.flows(t0).len(), 1);
}

/// A SYN the guest-facing TCP does not take (smoltcp refuses SYN|FIN) leaves no
/// listener either: the guest gets a RST and the flow ends once the host connect is in.
#[test]
fn a_syn_the_guest_facing_tcp_refuses_ends_its_flow_with_a_rst() {
    let (mut nat, t0) = nat_with(|_| {});
    let remote = (REMOTE, 81);
    nat.handle_frame(t0, &seg((GUEST, 40000), remote, 1000, 0, "SF"));
    let Some(Action::Open { flow, .. }) = nat.poll_action() else {
        panic!("no Action::Open")
    };
    nat.opened(t0, flow, Ok(()));
    let segs = tcp_segs(&frames(&mut nat));
    assert!(
        segs.iter()
            .any(|s| s.0 == SocketAddrV4::new(GUEST, 40000) && s.5 && s.2 == 1001),
        "{segs:?}"
    );
    assert_eq!(actions(&mut nat), vec![Action::Close { flow }]);
    assert!(nat.flows(t0).is_empty());
    // and B connects to the same remote as itself
    let b = SocketAddrV4::new(GUEST_B, 50000);
    nat.handle_frame(t0, &seg((GUEST_B, 50000), remote, 1000, 0, "S"));
    let Some(Action::Open { flow, .. }) = nat.poll_action() else {
        panic!("no Action::Open for B")
    };
    nat.opened(t0, flow, Ok(()));
    let isn = synack_to(&frames(&mut nat), b).expect("a SYN-ACK to B");
    nat.handle_frame(
        t0,
        &seg((GUEST_B, 50000), remote, 1001, isn.wrapping_add(1), "A"),
    );
    assert_eq!(state_of(&nat, t0, flow), Some("established"));
}

#[test]
fn an_unanswered_syn_ack_expires_after_the_handshake_timeout() {
    let (mut nat, t0) = nat_with(|_| {});
    assert_eq!(
        nat.config().limits.tcp_handshake_timeout,
        Duration::from_secs(10)
    );
    let guest = SocketAddrV4::new(GUEST, 40000);
    let open = t0 + Duration::from_secs(2);
    let flow = syn_open(&mut nat, t0, 40000, REMOTE, 80);
    nat.opened(open, flow, Ok(()));
    assert!(synack_to(&frames(&mut nat), guest).is_some());
    // an established flow next to it is not touched
    let done = syn_open(&mut nat, t0, 40001, REMOTE, 80);
    nat.opened(open, done, Ok(()));
    let isn = synack_to(&frames(&mut nat), SocketAddrV4::new(GUEST, 40001)).expect("SYN-ACK");
    nat.handle_frame(
        open,
        &seg((GUEST, 40001), (REMOTE, 80), 1001, isn.wrapping_add(1), "A"),
    );
    assert_eq!(state_of(&nat, open, done), Some("established"));
    let _ = actions(&mut nat);
    // smoltcp retransmits the SYN-ACK meanwhile; the flow stays until 10 s after it
    for s in 1..10 {
        nat.handle_timeout(open + Duration::from_secs(s));
        assert!(actions(&mut nat).is_empty(), "at {s} s");
    }
    let _ = frames(&mut nat);
    nat.handle_timeout(open + Duration::from_millis(10_001));
    assert_eq!(actions(&mut nat), vec![Action::Close { flow }]);
    let segs = tcp_segs(&frames(&mut nat));
    assert!(segs.iter().any(|s| s.0 == guest && s.5), "a RST: {segs:?}");
    let st = nat.stats();
    assert_eq!((st.handshake_timeouts, st.timeouts, st.flows), (1, 1, 1));
    assert_eq!(
        state_of(&nat, open + Duration::from_secs(11), done),
        Some("established")
    );
}

#[test]
fn half_open_flows_are_bounded_per_guest() {
    let (mut nat, t0) = nat_with(|c| c.limits.max_half_open_per_guest = 2);
    let first = syn_open(&mut nat, t0, 40000, REMOTE, 80);
    let second = syn_open(&mut nat, t0, 40001, REMOTE, 80);
    // the third SYN while two connects are in progress: a RST
    nat.handle_frame(t0, &syn(GUEST, 40002, REMOTE, 80));
    assert!(actions(&mut nat).is_empty());
    let segs = tcp_segs(&frames(&mut nat));
    assert_eq!(
        segs,
        vec![(SocketAddrV4::new(GUEST, 40002), 0, 1001, false, true, true)]
    );
    let st = nat.stats();
    assert_eq!((st.refused_half_open, st.refused_limit), (1, 1));
    // the connect done and the SYN-ACK sent, the flow is still half-open
    nat.opened(t0, first, Ok(()));
    let isn = synack_to(&frames(&mut nat), SocketAddrV4::new(GUEST, 40000)).expect("SYN-ACK");
    nat.handle_frame(t0, &syn(GUEST, 40003, REMOTE, 80));
    assert!(actions(&mut nat).is_empty());
    assert_eq!(nat.stats().refused_half_open, 2);
    // once the guest acknowledges it, it counts no more
    nat.handle_frame(
        t0,
        &seg((GUEST, 40000), (REMOTE, 80), 1001, isn.wrapping_add(1), "A"),
    );
    assert_eq!(state_of(&nat, t0, first), Some("established"));
    let _ = frames(&mut nat);
    let _fourth = syn_open(&mut nat, t0, 40004, REMOTE, 80);
    nat.handle_frame(t0, &syn(GUEST, 40005, REMOTE, 80));
    assert!(actions(&mut nat).is_empty());
    assert_eq!(nat.stats().refused_half_open, 3);
    // another guest has its own bound
    nat.handle_frame(t0, &seg((GUEST_B, 50000), (REMOTE, 80), 1000, 0, "S"));
    assert!(matches!(nat.poll_action(), Some(Action::Open { .. })));
    // a refused or timed-out connect frees its slot
    nat.opened(t0, second, Err(OpenError::Refused));
    let _ = actions(&mut nat);
    let _ = syn_open(&mut nat, t0, 40006, REMOTE, 80);
}

#[test]
fn counters_name_every_field_once() {
    let names: Vec<String> = Stats::default()
        .counters()
        .map(|(k, _)| k.into_owned())
        .collect();
    let unique: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for want in [
        "handshake_aborts",
        "flows",
        "dropped_foreign_source",
        "dropped_no_target",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
}

// ---- IPv6 (NAT66 through host sockets) ----

const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x66, 0, 0, 0, 0, 0, 1);
const GUEST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x66, 0, 0, 0, 0, 0, 5);
const REMOTE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);

fn nat6() -> (Nat, Instant) {
    nat_with(|c| c.ipv6 = vec![(GW6, 64)])
}

/// A guest IPv6 frame: TCP with `flags` ("S", "A", "PA"), or none for UDP / echo.
fn v6_tcp(
    sport: u16,
    dst: Ipv6Addr,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: &str,
    data: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv6(GUEST6.octets(), dst.octets(), 64)
        .tcp(sport, dport, seq, 64240);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(ack);
    }
    if flags.contains('P') {
        b = b.psh();
    }
    let mut v = Vec::new();
    b.write(&mut v, data).expect("write");
    v
}

#[test]
fn ipv6_tcp_goes_out_through_a_host_socket_and_data_flows_both_ways() {
    let (mut nat, t0) = nat6();
    nat.handle_frame(t0, &v6_tcp(40000, REMOTE6, 80, 1000, 0, "S", &[]));
    let a = actions(&mut nat);
    let [Action::Open {
        flow,
        proto: Proto::Tcp,
        target,
    }] = a.as_slice()
    else {
        panic!("{a:?}");
    };
    assert_eq!(*target, SocketAddr::new(REMOTE6.into(), 80));
    let flow = *flow;
    nat.opened(t0, flow, Ok(()));
    let out = frames(&mut nat);
    let (server_seq, dst) = out
        .iter()
        .find_map(|f| {
            let p = SlicedPacket::from_ethernet(f).ok()?;
            let Some(NetSlice::Ipv6(ip)) = &p.net else {
                return None;
            };
            match p.transport? {
                TransportSlice::Tcp(t) if t.syn() && t.ack() => {
                    assert_eq!(t.acknowledgment_number(), 1001);
                    assert_eq!(ip.header().source_addr(), REMOTE6);
                    Some((t.sequence_number(), ip.header().destination_addr()))
                }
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("a SYN-ACK over IPv6 from the remote's address: {out:?}"));
    assert_eq!(dst, GUEST6);
    nat.handle_frame(
        t0,
        &v6_tcp(40000, REMOTE6, 80, 1001, server_seq + 1, "PA", b"hello"),
    );
    let mut host = Mem {
        to_read: b"world".to_vec(),
        ..Mem::default()
    };
    nat.pump(t0, flow, &mut host);
    assert_eq!(host.written, b"hello");
    let sent: Vec<u8> = frames(&mut nat)
        .iter()
        .filter_map(|f| match SlicedPacket::from_ethernet(f).ok()?.transport? {
            TransportSlice::Tcp(t) => Some(t.payload().to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(sent, b"world");
    let info = &nat.flows(t0)[0];
    assert_eq!(info.guest, SocketAddr::new(GUEST6.into(), 40000));
}

#[test]
fn ipv6_refused_resets_and_unreachable_is_icmpv6_address_unreachable() {
    let (mut nat, t0) = nat6();
    nat.handle_frame(t0, &v6_tcp(40001, REMOTE6, 81, 1000, 0, "S", &[]));
    let Some(Action::Open { flow, .. }) = nat.poll_action() else {
        panic!()
    };
    nat.opened(t0, flow, Err(OpenError::Refused));
    let rst = frames(&mut nat).iter().any(|f| {
        matches!(SlicedPacket::from_ethernet(f).ok().and_then(|p| p.transport),
            Some(TransportSlice::Tcp(t)) if t.rst())
    });
    assert!(rst, "a RST over IPv6");
    nat.handle_frame(t0, &v6_tcp(40002, REMOTE6, 82, 1000, 0, "S", &[]));
    let flow = actions(&mut nat)
        .into_iter()
        .find_map(|a| match a {
            Action::Open { flow, .. } => Some(flow),
            _ => None,
        })
        .unwrap();
    nat.opened(t0, flow, Err(OpenError::Unreachable));
    let out = frames(&mut nat);
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!("{out:?}")
    };
    assert_eq!(ip.header().source_addr(), GW6);
    let Some(TransportSlice::Icmpv6(icmp)) = p.transport else {
        panic!()
    };
    assert_eq!(
        icmp.icmp_type(),
        etherparse::Icmpv6Type::DestinationUnreachable(
            etherparse::icmpv6::DestUnreachableCode::Address
        )
    );
}

#[test]
fn ipv6_udp_and_echo_flows_carry_replies_and_host_access_maps_to_the_v6_loopback() {
    let (mut nat, t0) = nat6();
    let b = PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv6(GUEST6.octets(), REMOTE6.octets(), 64)
        .udp(5000, 53);
    let mut f = Vec::new();
    b.write(&mut f, b"query").unwrap();
    nat.handle_frame(t0, &f);
    let a = actions(&mut nat);
    let Some(Action::Open {
        flow,
        proto: Proto::Udp,
        target,
    }) = a.first()
    else {
        panic!("{a:?}")
    };
    assert_eq!(*target, SocketAddr::new(REMOTE6.into(), 53));
    nat.datagram(t0, *flow, b"answer");
    let out = frames(&mut nat);
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Udp(u)) = p.transport else {
        panic!()
    };
    assert_eq!(
        (u.source_port(), u.destination_port(), u.payload()),
        (53, 5000, &b"answer"[..])
    );

    // ICMPv6 echo: the request goes out as type 128, the reply gets the guest's id back
    let b = PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv6(GUEST6.octets(), REMOTE6.octets(), 64)
        .icmpv6_echo_request(0x4242, 3);
    let mut f = Vec::new();
    b.write(&mut f, b"ping").unwrap();
    nat.handle_frame(t0, &f);
    let a = actions(&mut nat);
    let (
        Some(Action::Open {
            flow,
            proto: Proto::Icmp,
            ..
        }),
        Some(Action::Datagram { data, .. }),
    ) = (a.first(), a.get(1))
    else {
        panic!("{a:?}")
    };
    assert_eq!(data[0], 128);
    // the host's reply, as an ICMPv6 ping socket reads it (its own id, checksum)
    let mut reply = vec![129, 0, 0, 0, 0x00, 0x07, 0, 3];
    reply.extend_from_slice(b"ping");
    nat.datagram(t0, *flow, &reply);
    let out = frames(&mut nat);
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Icmpv6(icmp)) = p.transport else {
        panic!("{out:?}")
    };
    let etherparse::Icmpv6Type::EchoReply(echo) = icmp.icmp_type() else {
        panic!()
    };
    assert_eq!((echo.id, echo.seq), (0x4242, 3));

    // the gateway's own IPv6 address: the host's ::1 (host access)
    nat.handle_frame(t0, &v6_tcp(40003, GW6, 22, 1000, 0, "S", &[]));
    let a = actions(&mut nat);
    let Some(Action::Open { target, .. }) = a.first() else {
        panic!("{a:?}")
    };
    assert_eq!(*target, SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 22));
}

#[test]
fn ipv6_host_access_follows_the_same_rule_as_ipv4() {
    let (mut nat, t0) = nat_with(|c| {
        c.ipv6 = vec![(GW6, 64)];
        c.host_access = false;
    });
    nat.handle_frame(t0, &v6_tcp(40003, GW6, 22, 1000, 0, "S", &[]));
    assert!(
        !actions(&mut nat)
            .iter()
            .any(|a| matches!(a, Action::Open { .. })),
        "host access is off"
    );
    let rst = frames(&mut nat).iter().any(|f| {
        matches!(SlicedPacket::from_ethernet(f).ok().and_then(|p| p.transport),
            Some(TransportSlice::Tcp(t)) if t.rst())
    });
    assert!(rst, "refused with a RST");
    nat.set_host_access(true);
    nat.handle_frame(t0, &v6_tcp(40004, GW6, 22, 1000, 0, "S", &[]));
    let a = actions(&mut nat);
    let Some(Action::Open { target, .. }) = a.first() else {
        panic!("{a:?}")
    };
    assert_eq!(*target, SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 22));
}

#[test]
fn ipv6_is_not_translated_without_prefixes_or_from_outside_them() {
    let (mut nat, t0) = nat_with(|_| {});
    nat.handle_frame(t0, &v6_tcp(40000, REMOTE6, 80, 1000, 0, "S", &[]));
    assert!(actions(&mut nat).is_empty());
    assert_eq!(nat.stats().dropped_for(DropReason::NotIpv4), 1);
    let (mut nat, t0) = nat6();
    let b = PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv6(
            [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5],
            REMOTE6.octets(),
            64,
        )
        .udp(5000, 53);
    let mut f = Vec::new();
    b.write(&mut f, b"x").unwrap();
    nat.handle_frame(t0, &f);
    assert!(actions(&mut nat).is_empty());
    assert_eq!(nat.stats().dropped_for(DropReason::ForeignSource), 1);
    // link-local, segment, multicast and loopback destinations go nowhere
    for dst in ["fe80::1", "fd00:66::9", "ff02::1", "::1", "::"] {
        let dst: Ipv6Addr = dst.parse().unwrap();
        nat.handle_frame(t0, &v6_tcp(40000, dst, 80, 1000, 0, "S", &[]));
        assert!(
            !actions(&mut nat)
                .iter()
                .any(|a| matches!(a, Action::Open { .. })),
            "{dst}"
        );
    }
}
