//! The Prometheus endpoint (`--metrics ADDR:PORT`): the network's counters in the text
//! exposition format, rendered with `prometheus-client` at each scrape.
//!
//! Requests are parsed with `httparse`; any GET is answered with the metrics, anything
//! else with 405. Connections are served by the same non-blocking loop as control
//! connections, so a slow scraper cannot stall the switch.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use crate::{NetInfo, PortInfo};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Metrics connections served at once; more are refused.
const MAX_CONNS: usize = 64;
/// A metrics connection that has not sent its request within this is closed.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest request read.
const MAX_REQUEST: usize = 8192;

#[derive(Debug)]
struct HttpConn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    since: Instant,
}

/// The metrics endpoint: its listener and the scrapers' connections (each answered
/// once, then closed).
#[derive(Debug)]
pub struct Endpoint {
    listener: TcpListener,
    registry: mio::Registry,
    /// The token of the `n`th connection (the caller's token space).
    token: fn(usize) -> Token,
    conns: HashMap<Token, HttpConn>,
    next: usize,
}

impl Endpoint {
    /// Serves `listener`; its connections are registered with `registry`, the `n`th
    /// under `token(n)`.
    pub fn new(listener: TcpListener, registry: mio::Registry, token: fn(usize) -> Token) -> Self {
        Self {
            listener,
            registry,
            token,
            conns: HashMap::new(),
            next: 0,
        }
    }

    /// The listening socket (to register it).
    pub fn listener(&mut self) -> &mut TcpListener {
        &mut self.listener
    }

    /// Whether any connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Accepts the waiting connections (past [`MAX_CONNS`] they are closed at once).
    pub fn accept(&mut self, now: Instant) {
        if self.conns.len() >= MAX_CONNS {
            self.expire(now);
        }
        while let Ok((mut stream, _)) = self.listener.accept() {
            if self.conns.len() >= MAX_CONNS {
                continue; // dropped: closes it
            }
            let token = (self.token)(self.next);
            self.next = (self.next + 1) % (1 << 20);
            if self
                .registry
                .register(&mut stream, token, Interest::READABLE)
                .is_ok()
            {
                let (inbuf, outbuf) = (Vec::new(), Vec::new());
                let c = HttpConn {
                    stream,
                    inbuf,
                    outbuf,
                    since: now,
                };
                self.conns.insert(token, c);
            }
        }
    }

    /// Closes the connections older than [`TIMEOUT`].
    pub fn expire(&mut self, now: Instant) {
        let registry = &self.registry;
        self.conns.retain(|_, c| {
            let keep = now.saturating_duration_since(c.since) < TIMEOUT;
            if !keep {
                let _ = registry.deregister(&mut c.stream);
            }
            keep
        });
    }

    /// Serves connection `token`: reads its request and, once it is whole, answers
    /// with what `metrics` returns (the network and its ports), then closes.
    pub fn serve(&mut self, token: Token, metrics: impl FnOnce() -> (NetInfo, Vec<PortInfo>)) {
        let Some(mut c) = self.conns.remove(&token) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let mut eof = false;
        loop {
            match c.stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => c.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
            if c.inbuf.len() > MAX_REQUEST {
                eof = true;
                break;
            }
        }
        if c.outbuf.is_empty() {
            let (net, ports) = metrics();
            match http_response(&c.inbuf, &net, &ports) {
                Some(r) => c.outbuf = r,
                None if eof => {
                    let _ = self.registry.deregister(&mut c.stream);
                    return;
                }
                None => {
                    self.conns.insert(token, c);
                    return;
                }
            }
        }
        while !c.outbuf.is_empty() {
            match c.stream.write(&c.outbuf) {
                Ok(0) => break,
                Ok(n) => {
                    c.outbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let rw = Interest::READABLE | Interest::WRITABLE;
                    let _ = self.registry.reregister(&mut c.stream, token, rw);
                    self.conns.insert(token, c);
                    return;
                }
                Err(_) => break,
            }
        }
        // answered (or broken): close
        let _ = self.registry.deregister(&mut c.stream);
    }
}

/// What a scrape answers with: status line, headers and body.
pub fn http_response(request: &[u8], net: &NetInfo, ports: &[PortInfo]) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(request) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some(reply("400 Bad Request", "text/plain", "bad request\n")),
    }
    if req.method != Some("GET") {
        return Some(reply("405 Method Not Allowed", "text/plain", "GET only\n"));
    }
    Some(reply(
        "200 OK",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        &render(net, ports),
    ))
}

fn reply(status: &str, ctype: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn counter_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    reg.register(name, help, f.clone());
    f
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The metrics of a network and its ports.
pub fn render(net: &NetInfo, ports: &[PortInfo]) -> String {
    let mut reg = Registry::default();
    let n = net.name.as_str();
    let rx_frames = counter_family(
        &mut reg,
        "vnet_port_rx_frames",
        "Frames received from the port",
    );
    let rx_bytes = counter_family(
        &mut reg,
        "vnet_port_rx_bytes",
        "Bytes received from the port",
    );
    let tx_frames = counter_family(&mut reg, "vnet_port_tx_frames", "Frames sent to the port");
    let tx_bytes = counter_family(&mut reg, "vnet_port_tx_bytes", "Bytes sent to the port");
    let flooded = counter_family(
        &mut reg,
        "vnet_port_flooded_frames",
        "Frames from the port that were flooded",
    );
    let drops = counter_family(
        &mut reg,
        "vnet_port_dropped_frames",
        "Frames from the port dropped, by reason",
    );
    let syscalls = counter_family(
        &mut reg,
        "vnet_port_syscalls",
        "System calls on the port's device, by op (read, write)",
    );
    let gso = counter_family(
        &mut reg,
        "vnet_port_gso_frames",
        "GSO super-frames received (dir=in) or sent whole (dir=out)",
    );
    let segmented = counter_family(
        &mut reg,
        "vnet_port_soft_segmented_frames",
        "Super-frames cut in software for the port",
    );
    let segments = counter_family(
        &mut reg,
        "vnet_port_soft_segments",
        "Frames made by software segmentation for the port",
    );
    let csums = counter_family(
        &mut reg,
        "vnet_port_soft_checksums",
        "Checksums completed in software for the port",
    );
    for p in ports {
        let l = labels(&[("network", n), ("port", &p.name)]);
        let io = &p.io;
        let with = |k: &str, v: &str| labels(&[("network", n), ("port", &p.name), (k, v)]);
        syscalls.get_or_create(&with("op", "read")).inc_by(io.reads);
        syscalls
            .get_or_create(&with("op", "write"))
            .inc_by(io.writes);
        gso.get_or_create(&with("dir", "in")).inc_by(io.gso_in);
        gso.get_or_create(&with("dir", "out")).inc_by(io.gso_out);
        segmented.get_or_create(&l).inc_by(io.segmented);
        segments.get_or_create(&l).inc_by(io.segments);
        csums.get_or_create(&l).inc_by(io.csums);
        let c = &p.counters;
        rx_frames.get_or_create(&l).inc_by(c.rx_frames);
        rx_bytes.get_or_create(&l).inc_by(c.rx_bytes);
        tx_frames.get_or_create(&l).inc_by(c.tx_frames);
        tx_bytes.get_or_create(&l).inc_by(c.tx_bytes);
        flooded.get_or_create(&l).inc_by(c.flooded);
        for (reason, v) in &c.drops {
            drops
                .get_or_create(&labels(&[
                    ("network", n),
                    ("port", &p.name),
                    ("reason", reason),
                ]))
                .inc_by(*v);
        }
    }
    let l = labels(&[("network", n)]);
    gauge_family(&mut reg, "vnet_ports", "Ports of the network")
        .get_or_create(&l)
        .set(gauge_value(net.ports as u64));
    gauge_family(&mut reg, "vnet_fdb_entries", "Learned MAC addresses")
        .get_or_create(&l)
        .set(gauge_value(net.fdb_entries as u64));
    gauge_family(
        &mut reg,
        "vnet_fdb_max_entries",
        "Bound on learned MAC addresses",
    )
    .get_or_create(&l)
    .set(gauge_value(net.fdb_max_entries as u64));
    counter_family(
        &mut reg,
        "vnet_fdb_evictions",
        "MAC addresses evicted because the table was full",
    )
    .get_or_create(&l)
    .inc_by(net.fdb_evictions);
    if let Some(r) = &net.router {
        let c = counter_family(&mut reg, "vnet_router_events", "Router counters, by kind");
        for (kind, v) in r {
            c.get_or_create(&labels(&[("network", n), ("kind", kind)]))
                .inc_by(*v);
        }
    }
    if let Some(g) = &net.gateway {
        let dhcp = counter_family(
            &mut reg,
            "vnet_dhcp_messages",
            "DHCP messages, by direction and type, and drops by reason",
        );
        for (kind, v) in &g.dhcp_stats {
            dhcp.get_or_create(&labels(&[("network", n), ("kind", kind)]))
                .inc_by(*v);
        }
        let gw = counter_family(&mut reg, "vnet_gateway_events", "Gateway counters, by kind");
        for (kind, v) in [
            ("arp_replies", g.arp_replies),
            ("echo_replies", g.echo_replies),
            ("dhcp_in", g.dhcp_in),
            ("dhcp_out", g.dhcp_out),
            ("dhcp_dropped", g.dhcp_dropped),
            ("malformed", g.malformed),
        ] {
            gw.get_or_create(&labels(&[("network", n), ("kind", kind)]))
                .inc_by(v);
        }
        if !g.ipv6.is_empty() {
            let v6 = counter_family(
                &mut reg,
                "vnet_ipv6_events",
                "The gateway's IPv6 counters (neighbor discovery, router advertisements), by kind",
            );
            for (kind, v) in &g.ipv6 {
                v6.get_or_create(&labels(&[("network", n), ("kind", kind)]))
                    .inc_by(*v);
            }
        }
        gauge_family(&mut reg, "vnet_dhcp_leases", "Active DHCP leases")
            .get_or_create(&l)
            .set(gauge_value(g.leases as u64));
        let dns = counter_family(&mut reg, "vnet_dns_events", "DNS server counters, by kind");
        let dns_now = gauge_family(&mut reg, "vnet_dns_now", "DNS server gauges, by kind");
        for (kind, v) in &g.dns_stats {
            let l = labels(&[("network", n), ("kind", kind)]);
            if matches!(
                kind.as_str(),
                "in_flight" | "cache_entries" | "lease_names" | "tcp_connections"
            ) {
                dns_now.get_or_create(&l).set(gauge_value(*v));
            } else {
                dns.get_or_create(&l).inc_by(*v);
            }
        }
        if let Some(nat) = &g.nat {
            let c = counter_family(&mut reg, "vnet_nat_events", "NAT counters, by kind");
            let now = gauge_family(&mut reg, "vnet_nat_now", "NAT gauges, by kind");
            for (kind, v) in nat {
                let l = labels(&[("network", n), ("kind", kind)]);
                if matches!(kind.as_str(), "flows" | "host_sockets") {
                    now.get_or_create(&l).set(gauge_value(*v));
                } else {
                    c.get_or_create(&l).inc_by(*v);
                }
            }
        }
    }
    let mut out = String::new();
    if encode(&mut out, &reg).is_err() {
        out.clear();
    }
    out
}
