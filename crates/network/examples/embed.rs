//! Embeds the libvirt default network in this process, as a VMM would: two TAP devices
//! are the guests' ports; DHCP (192.168.122.2–254), DNS and NAT run here, with no
//! switchd, no kernel bridge and no firewall rules. Leases live in memory only (a real
//! embedder persists them in `Io::dhcp_event`, as switchd does).
//!
//! Run as root (TAPs): `cargo run -p vnet-network --example embed -- vnet-e0 vnet-e1`,
//! then give each TAP to a guest (`-netdev tap,ifname=vnet-e0,script=no,downscript=no`)
//! or move it into a namespace and run a DHCP client there. `--seconds N` stops after N
//! seconds.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use vnet_host::{DnsUpstream, NatHost, Source};
use vnet_network::{FrameBuf, Io, Network, Now, Options, PortConfig, PortId};
use vnet_ports::{Drain, Port, Step, Tap, TapOptions};

/// The network's outside: the TAPs, the DNS forwarding socket, the NAT's host sockets.
struct Outside {
    taps: Vec<(PortId, Tap)>,
    dns: DnsUpstream,
    nat: NatHost,
}

impl Io for Outside {
    fn transmit(&mut self, port: PortId, buf: &mut FrameBuf, _take: bool) -> bool {
        match self.taps.iter_mut().find(|(id, _)| *id == port) {
            Some((_, tap)) => Port::send(tap, buf).is_ok(),
            None => true,
        }
    }

    fn dhcp_event(&mut self, ev: &vnet_dhcp::Event) {
        if let Some(line) = ev.log_line("default") {
            println!("{line}");
        }
    }

    fn dns_query(&mut self, to: SocketAddr, payload: &[u8]) {
        self.dns.send(to, payload);
    }

    fn nat(&mut self, nat: &mut vnet_nat::Nat, now: Instant) {
        self.nat.run(nat, now);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let seconds = match args.iter().position(|a| a == "--seconds") {
        Some(i) => {
            let n: u64 = args.get(i + 1).ok_or("--seconds N")?.parse()?;
            args.drain(i..=i + 1);
            Some(Duration::from_secs(n))
        }
        None => None,
    };
    if args.is_empty() {
        args = vec!["vnet-e0".into(), "vnet-e1".into()];
    }

    let mut def = vnet_config::Network::libvirt_default();
    def.fill_defaults(&[]); // a MAC for the gateway
    let now = Now::system();
    let mut net = Network::from_config(
        &def,
        Options::new(Vec::new(), std::process::id().into()),
        now,
    )?;

    let mut poll = Poll::new()?;
    let mut dns = DnsUpstream::open()?;
    dns.register(poll.registry())?;
    if let Some(d) = net.gateway_mut().and_then(|g| g.dns_mut()) {
        // this example forwards to nothing: names the network holds are answered, the
        // rest get SERVFAIL (an embedder passes its resolvers here)
        d.set_system_upstreams(Vec::new());
    }
    let nat = NatHost::new(poll.registry().try_clone()?, None);
    let mut taps = Vec::new();
    for name in &args {
        let mut opts = TapOptions::default();
        opts.name = Some(name.clone());
        let tap = Tap::create(&opts)?;
        let id = net.add_port(PortConfig::default())?;
        poll.registry().register(
            &mut SourceFd(&tap.as_raw_fd()),
            Source::Port(id.index()).token(),
            Interest::READABLE,
        )?;
        println!("guest port {name} (port {id})");
        taps.push((id, tap));
    }
    let mut out = Outside { taps, dns, nat };
    let mut buf = FrameBuf::new();
    let mut events = Events::with_capacity(64);
    let start = Instant::now();
    println!("default network: gateway 192.168.122.1, DHCP, DNS and NAT in this process");
    loop {
        let now = Now::system();
        if seconds.is_some_and(|s| start.elapsed() >= s) {
            return Ok(());
        }
        let timeout = net.poll_timeout(now).map(|t| t.min(Duration::from_secs(1)));
        match poll.poll(&mut events, timeout.or(Some(Duration::from_secs(1)))) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        let now = Now::system();
        for ev in &events {
            match Source::of(ev.token()) {
                Some(Source::Port(i)) => {
                    let Some(k) = out.taps.iter().position(|(id, _)| id.index() == i) else {
                        continue;
                    };
                    // read until EAGAIN (edge-triggered), each frame into the network
                    let mut drain = Drain::new(usize::MAX);
                    loop {
                        let (id, tap) = &mut out.taps[k];
                        let id = *id;
                        match drain.next(tap, &mut buf) {
                            Some(Step::Frame) => net.handle_frame(now, id, &mut buf, &mut out),
                            Some(_) => continue,
                            None => break,
                        }
                    }
                }
                Some(Source::DnsUpstream) => {
                    out.dns
                        .recv_all(|from, payload| net.handle_dns_upstream(now, from, payload));
                }
                Some(source) => {
                    if let Some(nat) = net.gateway_mut().and_then(|g| g.nat_mut()) {
                        out.nat.handle(nat, now.mono, source);
                    }
                }
                None => {}
            }
        }
        net.poll(now, &mut buf, &mut out);
        while let Some(ev) = net.poll_event() {
            println!("event: {ev:?}");
        }
    }
}
