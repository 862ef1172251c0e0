//! A NAT flow in steady state allocates nothing per frame: a guest's TCP connection
//! moving data both ways (its segments in, the engine's ACKs and data segments out,
//! the guest's ACKs in) and a UDP flow's datagrams both ways, with every frame and
//! datagram given back to the engine ([`Nat::recycle`]) as switchd does. A counting
//! global allocator watches two thousand rounds after a warm-up.

use std::alloc::System;
use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use vnet_nat::{Action, HostStream, Nat, NatConfig};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const GW_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x05];
const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);
const GUEST: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 5);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 2);
/// Where the TCP sequence and acknowledgment numbers sit in a frame without options.
const SEQ: usize = 14 + 20 + 4;
const ACK: usize = SEQ + 4;

fn tcp(syn: bool, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv4(GUEST.octets(), REMOTE.octets(), 64)
        .tcp(40000, 80, 1000, 64240);
    b = if syn { b.syn() } else { b.ack(0) };
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn udp(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv4(GUEST.octets(), REMOTE.octets(), 64)
        .udp(5000, 53)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn set(frame: &mut [u8], at: usize, v: u32) {
    frame[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// The remote end: takes everything, gives `budget` bytes per round.
struct Host {
    budget: usize,
}

impl HostStream for Host {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.budget);
        buf[..n].fill(7);
        self.budget -= n;
        Ok(n)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Frames to the guest, given back; returns the end of the TCP data seen (seq + len)
/// and the SYN-ACK's sequence number, if any.
fn drain(nat: &mut Nat, data_end: &mut u32) -> Option<u32> {
    let mut isn = None;
    while let Some(f) = nat.poll_transmit() {
        if let Ok(p) = SlicedPacket::from_ethernet(&f) {
            if let Some(TransportSlice::Tcp(t)) = p.transport {
                if t.syn() {
                    isn = Some(t.sequence_number());
                }
                let len = u32::try_from(t.payload().len()).unwrap();
                if len > 0 {
                    let end = t.sequence_number().wrapping_add(len);
                    if end.wrapping_sub(*data_end) < 1 << 31 {
                        *data_end = end;
                    }
                }
            }
        }
        nat.recycle(f);
    }
    isn
}

#[test]
fn a_flow_in_steady_state_allocates_nothing_per_frame() {
    let t0 = Instant::now();
    let mut nat = Nat::new(NatConfig::new(GW_MAC, GW, 24), t0, 7);
    // open the TCP flow
    nat.handle_frame(t0, &tcp(true, &[]));
    let Some(Action::Open { flow, .. }) = nat.poll_action() else {
        panic!("no open");
    };
    nat.opened(t0, flow, Ok(()));
    let mut host_end = 0;
    let isn = drain(&mut nat, &mut host_end).expect("a SYN-ACK");
    host_end = isn.wrapping_add(1);
    // and the UDP flow
    let udp_frame = udp(&[1; 100]);
    nat.handle_frame(t0, &udp_frame);
    let Some(Action::Open { flow: uflow, .. }) = nat.poll_action() else {
        panic!("no UDP open");
    };
    while let Some(a) = nat.poll_action() {
        if let Action::Datagram { data, .. } = a {
            nat.recycle(data);
        }
    }
    let mut data = tcp(false, &[9; 1000]);
    let mut ack = tcp(false, &[]);
    let mut guest_seq: u32 = 1001;
    let mut host = Host { budget: 0 };
    let mut round = |nat: &mut Nat, i: u32| {
        let now = t0 + Duration::from_micros(u64::from(i) * 200);
        // guest → remote: a segment, then the engine's ACK
        set(&mut data, SEQ, guest_seq);
        set(&mut data, ACK, host_end);
        nat.handle_frame(now, &data);
        guest_seq = guest_seq.wrapping_add(1000);
        // remote → guest: data the guest acknowledges
        host.budget = 3000;
        nat.pump(now, flow, &mut host);
        while let Some(id) = nat.poll_dirty() {
            nat.pump(now, id, &mut host);
        }
        drain(nat, &mut host_end);
        set(&mut ack, SEQ, guest_seq);
        set(&mut ack, ACK, host_end);
        nat.handle_frame(now, &ack);
        drain(nat, &mut host_end);
        // UDP both ways
        nat.handle_frame(now, &udp_frame);
        while let Some(a) = nat.poll_action() {
            if let Action::Datagram { data, .. } = a {
                nat.recycle(data);
            }
        }
        nat.datagram(now, uflow, &[2; 100]);
        drain(nat, &mut host_end);
        if nat.poll_timeout(now).is_some_and(|t| t <= now) {
            nat.handle_timeout(now);
            drain(nat, &mut host_end);
        }
    };
    for i in 0..500 {
        round(&mut nat, i);
    }
    let before = nat.flows(t0 + Duration::from_millis(100));
    assert_eq!(before.len(), 2, "{before:?}");
    let moved = before.iter().map(|f| f.bytes_in).sum::<u64>();
    let region = Region::new(GLOBAL);
    for i in 500..2500 {
        round(&mut nat, i);
    }
    let s = region.change();
    let after = nat.flows(t0 + Duration::from_millis(600));
    assert_eq!(
        (s.allocations, s.reallocations),
        (0, 0),
        "allocations in 2000 rounds: {s:?}"
    );
    // and traffic did flow both ways meanwhile
    assert_eq!(after.len(), 2, "{after:?}");
    let moved_after = after.iter().map(|f| f.bytes_in).sum::<u64>();
    assert!(moved_after >= moved + 2000 * 3000, "{before:?} {after:?}");
    let out: u64 = after.iter().map(|f| f.bytes_out).sum();
    assert!(out >= 2500 * 1000, "{after:?}");
}
