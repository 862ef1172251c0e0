//! Sequences of guest frames, upstream DNS answers and clock steps through a whole
//! network (the libvirt default: switch, gateway, DHCP, DNS, NAT) by its public API,
//! with the host side answered in memory. Checks the bounds after every step.
//!
//! `cargo +nightly fuzz run network_frames` (from `fuzz/`).

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vnet_network::{FrameBuf, Io, Network, Now, Options, PortConfig, PortId, MAX_EVENTS};

#[derive(Debug, Arbitrary)]
enum Op {
    Frame { port: u8, bytes: Vec<u8> },
    Upstream { bytes: Vec<u8> },
    Advance { millis: u16 },
}

/// Counts what leaves; opens every NAT flow, drops its datagrams.
#[derive(Default)]
struct Host {
    out: usize,
}

impl Io for Host {
    fn transmit(&mut self, _port: PortId, buf: &mut FrameBuf, _take: bool) -> bool {
        assert!(buf.len() <= vnet_ports::MAX_FRAME_LEN);
        self.out += 1;
        true
    }

    fn nat(&mut self, nat: &mut vnet_nat::Nat, now: std::time::Instant) {
        while let Some(a) = nat.poll_action() {
            match a {
                vnet_nat::Action::Open {
                    flow,
                    proto: vnet_nat::Proto::Tcp,
                    ..
                } => nat.opened(now, flow, Ok(())),
                vnet_nat::Action::Datagram { data, .. } => nat.recycle(data),
                _ => {}
            }
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut def = vnet_config::Network::libvirt_default();
    def.fill_defaults(&[]);
    let mut now = Now::system();
    let Ok(mut net) = Network::from_config(&def, Options::new(Vec::new(), 1), now) else {
        return;
    };
    let mac = vnet_switch::MacAddr([0x52, 0x54, 0, 0, 0, 3]);
    let ports = [
        net.add_port(PortConfig::default()).unwrap(),
        net.add_port(PortConfig::default()).unwrap(),
        net.add_port(
            PortConfig::default().with_security(Some(vnet_switch::PortSecurity::new(Some(mac)))),
        )
        .unwrap(),
    ];
    let mut host = Host::default();
    let mut buf = FrameBuf::new();
    for op in ops.into_iter().take(256) {
        match op {
            Op::Frame { port, bytes } => {
                buf.set_frame(&bytes[..bytes.len().min(vnet_ports::MAX_FRAME_LEN)]);
                let p = ports[usize::from(port) % ports.len()];
                net.handle_frame(now, p, &mut buf, &mut host);
            }
            Op::Upstream { bytes } => {
                net.handle_dns_upstream(now, "10.255.0.53:53".parse().unwrap(), &bytes);
            }
            Op::Advance { millis } => {
                let d = Duration::from_millis(u64::from(millis));
                now = Now {
                    wall: now.wall + d,
                    mono: now.mono + d,
                };
            }
        }
        net.poll(now, &mut buf, &mut host);
        let mut events = 0;
        while net.poll_event().is_some() {
            events += 1;
        }
        assert!(events <= MAX_EVENTS);
        assert!(net.switch().fdb().len() <= net.switch().fdb().max_entries());
    }
});
