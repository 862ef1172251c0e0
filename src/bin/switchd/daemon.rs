//! The event loop: one thread polls every port, the control socket and the signal pipe.
//!
//! A frame's path: a TAP fd becomes readable → [`Daemon::service_port`] reads frames
//! into the one datapath buffer until `EAGAIN` (or the per-turn budget) → the switch core
//! decides ([`vnet_switch::Switch::handle_frame`]) → the buffer, virtio-net header
//! included, is written to the egress TAP(s) unchanged.
//!
//! Control requests are served on the same thread between datapath turns, so the core
//! needs no lock; they are short (a port-add that enters a namespace joins a thread that
//! lives for a few system calls).
//!
//! This file holds the loop and the datapath; `daemon/control.rs` the control and
//! metrics connections and the requests, `daemon/ports.rs` adding and removing ports.

use std::io::{ErrorKind, Read as _};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{Context, Result};
use mio::net::UnixStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use vnet_config::{ForwardMode, Network};
use vnet_control::store::Store;
use vnet_control::{Counters, FdbRow, NetInfo, NetUpdate, PortAdd, PortInfo, Request, Response};
use vnet_host::qemu::{Datagram, QemuSockets};
use vnet_host::{Device, Devices, Opened, PortAddError, Read, Source};
use vnet_ports::{FrameBuf, PacketPort};

use vnet_control::metrics::Endpoint;
use vnet_control::server::{Answer, Server};

mod control;
mod ports;
use vnet_control::capture::Captures;
use vnet_control::ControlError;

use vnet_gateway::Now;
use vnet_host::GatewayHost;
use vnet_network::{gateway_config, Event, Network as Net, Options};
use vnet_switch::PortId;

/// Frames read from one port before the loop turns to the next ready port.
const BUDGET: usize = 64;

pub(crate) struct Daemon {
    name: String,
    /// The live definition (net-update changes it; net-dumpxml shows it).
    network: Network,
    store: Store,
    /// The network itself: switch, gateway, router, host port (sans IO).
    net: Net,
    /// The gateway's host side (lease database, DNS socket, NAT sockets).
    host: Option<GatewayHost>,
    /// The ports' devices, by `PortId`, and the queue of ready ones.
    devs: Devices,
    poll: Poll,
    signals: UnixStream,
    /// The control socket's connections.
    control: Server,
    buf: FrameBuf,
    /// Keep polling without sleeping this long after the last frame read (zero: sleep
    /// as soon as nothing is ready).
    busy_poll: Duration,
    /// When the loop last read a frame (kept only with `busy_poll`).
    last_frame: std::time::Instant,
    /// A frame was read since the loop last looked (the clock is read once per turn,
    /// not per frame).
    frames_read: bool,
    epoch: std::time::Instant,
    /// The clocks as read once at the start of this loop turn: everything the turn
    /// does (frames, timers, NAT, DHCP) is at this time.
    clock: Now,
    stop: bool,
    /// Running captures (`switchctl capture`).
    captures: Captures<PortId>,
    /// The metrics endpoint (`--metrics`) and its connections.
    metrics: Option<Endpoint>,
    /// The uplink of route/open modes (its router is in `net`).
    uplink: Option<PacketPort>,
    uplink_tx_errors: u64,
    /// The uplink had more frames than one turn takes.
    uplink_more: bool,
    /// The sockets QEMU guests attach to (`-netdev stream`, `-netdev dgram`).
    qemu: QemuSockets,
    /// The dgram socket had more frames than one turn takes.
    dgram_more: bool,
    /// When idle connections were last looked at (once a second).
    conns_checked: Option<std::time::Instant>,
    /// Persistent TAP ports, as re-attach requests, saved in `<run-dir>/<net>.ports.json`
    /// so a switchd that crashed (or stopped) takes them back when it starts again.
    saved_ports: Vec<PortAdd>,
}

impl Daemon {
    /// Checks the network against the running ones, takes its control socket and
    /// publishes its live definition; all under the run dir's start lock, so two networks
    /// starting at once cannot both pass the checks.
    pub(crate) fn new(
        network: Network,
        store: Store,
        config: vnet_switch::Config,
        nat_limits: vnet_nat::Limits,
        metrics_addr: Option<std::net::SocketAddr>,
        dhcp_port_cap: Option<usize>,
    ) -> Result<Self> {
        let name = network.name().to_owned();
        let ((uplink, mut routed), listener) = store.claim(&network, || -> Result<_> {
            let bridged = vnet_host::uplink::open_bridge(&network)?;
            let routed = vnet_host::uplink::open(&network, gateway_config(&network).as_ref())?;
            Ok((bridged, routed))
        })?;

        let poll = Poll::new().context("creating the poller")?;
        let clock = Now::system();
        let (mut net, mut host) = match gateway_config(&network) {
            Some(cfg) => {
                let registry = poll
                    .registry()
                    .try_clone()
                    .context("cloning the poller's registry")?;
                let (mut host, leases) =
                    GatewayHost::open(&cfg, &network, store.state_dir(), registry)?;
                let mut opts = Options::new(leases, random_seed());
                opts.switch = config;
                opts.nat_limits = nat_limits;
                opts.dhcp_port_cap = dhcp_port_cap;
                opts.leases6 = host.take_leases6();
                let net = Net::from_config(&network, opts, clock)
                    .map_err(|e| anyhow::anyhow!("network {name:?}: {e}"))?;
                if let Some(id) = net.gateway_port() {
                    log!("gateway {} ({}) on port {id}", cfg.addresses(), cfg.mac);
                }
                (net, Some(host))
            }
            None => (Net::new(config, clock), None),
        };
        if let (Some(h), Some(g)) = (host.as_mut(), net.gateway_mut()) {
            h.start(g);
        }

        let (mut sig_rx, sig_tx) = UnixStream::pair().context("creating the signal pipe")?;
        let sig_tx = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(sig_tx));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            let tx = sig_tx.try_clone().context("cloning the signal pipe")?;
            signal_hook::low_level::pipe::register(sig, tx)
                .context("installing signal handlers")?;
        }

        let r = poll.registry();
        let mut control = Server::new(listener, r.try_clone()?, |n| Source::Control(n).token());
        r.register(
            control.listener(),
            Source::ControlListener.token(),
            Interest::READABLE,
        )?;
        let metrics = match metrics_addr {
            Some(a) => {
                let l = mio::net::TcpListener::bind(a)
                    .with_context(|| format!("binding the metrics endpoint {a}"))?;
                let mut m = Endpoint::new(l, r.try_clone()?, |n| Source::Http(n).token());
                let token = Source::MetricsListener.token();
                r.register(m.listener(), token, Interest::READABLE)?;
                log!("metrics on http://{a}/metrics");
                Some(m)
            }
            None => None,
        };
        if let Some(sock) = host.as_mut().and_then(|h| h.upstream.as_mut()) {
            sock.register(poll.registry())?;
        }
        poll.registry()
            .register(&mut sig_rx, Source::Signals.token(), Interest::READABLE)?;
        log!(
            "network {name:?} running, control socket {}",
            store.socket_path(&name).display()
        );
        let qemu = QemuSockets::open(
            &store.stream_socket_path(&name),
            &store.dgram_socket_path(&name),
            &store.vhost_user_socket_path(&name),
            poll.registry(),
        )?;
        let mut d = Self {
            name,
            network,
            store,
            net,
            host,
            devs: Devices::new(),
            poll,
            signals: sig_rx,
            control,
            buf: FrameBuf::new(),
            busy_poll: Duration::ZERO,
            last_frame: std::time::Instant::now(),
            frames_read: false,
            epoch: std::time::Instant::now(),
            clock,
            stop: false,
            captures: Captures::new(),
            metrics,
            uplink: None,
            uplink_tx_errors: 0,
            uplink_more: false,
            qemu,
            dgram_more: false,
            conns_checked: None,
            saved_ports: Vec::new(),
        };
        if let Some(u) = routed.take() {
            d.poll.registry().register(
                &mut SourceFd(&u.port.as_raw_fd()),
                Source::Uplink.token(),
                Interest::READABLE,
            )?;
            d.net.set_router(u.router);
            d.uplink = Some(u.port);
        }
        if let Some(dev) = uplink {
            // never isolated: `<port isolated>` keeps guests apart, not from the LAN
            d.add_dev(None, Box::new(dev), false, true)
                .map_err(|e| anyhow::anyhow!("adding the uplink port: {e}"))?;
        }
        d.add_host_port();
        Ok(d)
    }

    /// The network's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The store the network's files are in.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn run(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        while !self.stop {
            let busy = !self.busy_poll.is_zero()
                && self.clock.mono.saturating_duration_since(self.last_frame) < self.busy_poll;
            let timeout = if !self.devs.has_ready()
                && !self.uplink_more
                && !self.dgram_more
                && !self.control.has_pending()
                && !busy
            {
                let clock = self.clock;
                let net = self.net.poll_timeout(clock);
                let resolv = match (self.host.as_ref(), self.net.gateway()) {
                    (Some(h), Some(g)) => h.poll_timeout(g, clock),
                    _ => None,
                };
                // idle connections are looked at once a second
                let http = self.metrics.as_ref().is_some_and(|m| !m.is_empty());
                let conns = (!self.control.is_empty() || http).then_some(Duration::from_secs(1));
                [net, resolv, conns].into_iter().flatten().min()
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("polling");
            }
            // the one clock read of this turn
            self.clock = Now::system();
            let clock = self.clock;
            for ev in events.iter() {
                let Some(source) = Source::of(ev.token()) else {
                    continue;
                };
                match source {
                    Source::Port(i) => self.devs.mark_ready(i),
                    Source::ControlListener => self.control.accept(clock.mono),
                    Source::Control(_) => self.on_conn(Some(ev.token())),
                    Source::Signals => self.on_signal(),
                    Source::MetricsListener => {
                        if let Some(m) = self.metrics.as_mut() {
                            m.accept(clock.mono);
                        }
                    }
                    Source::Http(_) => self.on_http(ev.token()),
                    Source::Uplink => self.on_uplink(),
                    Source::StreamListener => self.accept_streams(),
                    Source::VhostUserListener => self.accept_vhost_users(),
                    Source::Dgram => self.on_dgram(),
                    Source::DnsUpstream => {
                        if let Some(h) = self.host.as_mut() {
                            let net = &mut self.net;
                            h.on_upstream_readable(|from, p| {
                                net.handle_dns_upstream(clock, from, p);
                            });
                        }
                    }
                    nat => {
                        if let (Some(h), Some(g)) = (self.host.as_mut(), self.net.gateway_mut()) {
                            h.on_nat_event(g, nat, clock);
                        }
                    }
                }
            }
            self.service_ready();
            if std::mem::take(&mut self.frames_read) && !self.busy_poll.is_zero() {
                self.last_frame = self.clock.mono;
            }
            if std::mem::take(&mut self.uplink_more) {
                self.on_uplink();
            }
            if std::mem::take(&mut self.dgram_more) {
                self.on_dgram();
            }
            if self.control.has_pending() {
                self.on_conn(None);
            }
            for name in self.devs.take_gone() {
                log!("port {name}: its peer is gone; removing it");
                let _ = self.remove_port(&name, true);
            }
            if let (Some(h), Some(g)) = (self.host.as_mut(), self.net.gateway_mut()) {
                h.handle_timeout(g, clock);
            }
            let (net, buf, mut io) = self.split();
            net.poll(clock, buf, &mut io);
            // what the turn sent to batching ports (vhost-user guests), told once
            self.devs.end_batch();
            self.emit_events();
            self.check_conns();
            if !self.captures.is_empty() {
                self.captures.flush(&mut self.control);
            }
        }
        self.shutdown();
        Ok(())
    }

    fn on_signal(&mut self) {
        let mut b = [0u8; 64];
        while let Ok(n) = self.signals.read(&mut b) {
            if n == 0 {
                break;
            }
        }
        log!("signal received, stopping");
        self.stop = true;
    }

    fn shutdown(&mut self) {
        self.emit("network-stopped", self.name.clone());
        let names: Vec<String> = self.devs.iter().map(|(_, d)| d.name.clone()).collect();
        for name in names {
            // persistent devices stay; the others vanish with their descriptor
            let _ = self.remove_port(&name, false);
        }
        self.store.release(&self.name);
        log!("network {:?} stopped", self.name);
    }

    /// Starts `n` writer threads for the TAP ports without offloads (see
    /// [`Devices::start_writers`]). Called once the daemon has dropped its privileges,
    /// so the threads run with what is left.
    pub(crate) fn start_writers(&mut self, n: usize) -> Result<()> {
        self.devs
            .start_writers(n)
            .context("starting writer threads")?;
        if n > 0 {
            log!("{n} writer thread(s) for TAP ports");
        }
        Ok(())
    }

    /// Keeps the loop polling, without sleeping, for `d` after each frame read: a frame
    /// that arrives meanwhile does not have to wake switchd (a wake-up across CPUs costs
    /// tens of microseconds in a VM), at the price of a CPU spinning that long.
    pub(crate) fn set_busy_poll(&mut self, d: Duration) {
        self.busy_poll = d;
    }

    // ---- datapath ----

    /// One round over the ready ports, each up to [`BUDGET`] frames.
    fn service_ready(&mut self) {
        for _ in 0..self.devs.ready_round() {
            let Some(id) = self.devs.pop_ready() else {
                break;
            };
            let drained = self.service_port(id);
            self.devs.finish(id, drained);
        }
    }

    /// Reads and forwards frames from one port. Returns true once the port is drained
    /// (`EAGAIN`) or gone.
    fn service_port(&mut self, id: PortId) -> bool {
        let now = self.clock;
        let why = match self.devs.flush(id) {
            Err(e) => format!("write failed ({e})"),
            Ok(()) => {
                let mut drain = vnet_ports::Drain::new(BUDGET);
                loop {
                    match self.devs.read(id, &mut drain, &mut self.buf) {
                        Read::Frame => self.frames_read = true,
                        Read::Done(drained) => return drained,
                        Read::Gone(e) => break format!("read failed ({e})"),
                    }
                    let (net, buf, mut io) = self.split();
                    net.handle_frame(now, id, buf, &mut io);
                }
            }
        };
        let name = self.devs.name(id);
        warn!("port {name}: {why}; removing it");
        let _ = self.remove_port(&name, true);
        true
    }

    /// Reads the uplink of a routed network into the network (4096 frames a turn).
    fn on_uplink(&mut self) {
        let clock = self.clock;
        for _ in 0..4096 {
            let Some(u) = self.uplink.as_mut() else {
                return;
            };
            match u.recv(&mut self.buf) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => continue,
            }
            let (net, buf, mut io) = self.split();
            net.handle_uplink(clock, buf, &mut io);
        }
        // more queued: come back on the next turn without waiting for an edge
        self.uplink_more = true;
    }

    /// The network, the datapath buffer, and the driver the network transmits through.
    fn split(&mut self) -> (&mut Net, &mut FrameBuf, Driver<'_>) {
        (
            &mut self.net,
            &mut self.buf,
            Driver {
                devs: &mut self.devs,
                uplink: self.uplink.as_mut(),
                uplink_tx_errors: &mut self.uplink_tx_errors,
                captures: &mut self.captures,
                control: &mut self.control,
                host: self.host.as_mut(),
            },
        )
    }

    fn net_info(&self) -> NetInfo {
        NetInfo {
            name: self.name.clone(),
            pid: std::process::id(),
            uptime: self.epoch.elapsed().as_secs_f64(),
            ports: self.devs.len(),
            fdb_entries: self.net.switch().fdb().len(),
            fdb_max_entries: self.net.switch().fdb().max_entries(),
            fdb_evictions: self.net.switch().fdb().stats().evictions,
            aging_time: self.net.switch().fdb().aging().as_secs(),
            uuid: self.network.uuid().map(str::to_owned),
            bridge: self.network.bridge_name().map(str::to_owned),
            mode: mode_name(self.network.forward_mode()).to_owned(),
            gateway: match (self.host.as_ref(), self.net.gateway()) {
                (Some(h), Some(g)) => Some(h.info(g)),
                _ => None,
            },
            router: self.net.router().map(|r| {
                let tx_errors = ("uplink_tx_errors", self.uplink_tx_errors);
                let c = r.stats().counters().chain([tx_errors]);
                c.map(|(k, v)| (k.to_owned(), v)).collect()
            }),
        }
    }

    // ---- events ----

    /// Gives every protected port the addresses its MAC holds (after a port is added).
    fn refresh_port_security(&mut self) {
        self.net.refresh_port_security();
    }

    /// Once a second: closes control and metrics connections that idled too long.
    fn check_conns(&mut self) {
        let now = self.clock.mono;
        if self
            .conns_checked
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.conns_checked = Some(now);
        self.control.expire(now);
        if let Some(m) = self.metrics.as_mut() {
            m.expire(now);
        }
    }

    /// Logs the network's events and sends them to the `net-event` subscribers (lease
    /// changes are logged by the DHCP server's own lines).
    fn emit_events(&mut self) {
        while let Some(ev) = self.net.poll_event() {
            let detail = ev.describe(|id| self.devs.name(id));
            match ev {
                Event::MacMoved { .. } => log!("{detail}"),
                Event::BoundHit(_) => warn!("{detail}"),
                _ => {}
            }
            self.emit(ev.kind(), detail);
        }
    }

    /// Sends an event to the `net-event` subscribers.
    fn emit(&mut self, event: &str, detail: String) {
        if !self.control.has_subscribers() {
            return;
        }
        let t = (self.clock.wall.duration_since(std::time::UNIX_EPOCH)).map_or(0, |d| d.as_secs());
        let ev =
            serde_json::json!({"event": event, "network": self.name, "time": t, "detail": detail});
        self.control.broadcast(&ev);
    }

    /// Starts a capture of `port` (a port's name, `gateway`, or every port) on control
    /// connection `token`: the response line, then pcap.
    fn start_capture(
        &mut self,
        token: Token,
        port: Option<&str>,
        count: Option<u64>,
    ) -> Result<Answer, ControlError> {
        let id = match port {
            Some("gateway") => self.net.gateway_port(),
            Some(name) => self.port_id_by_name(name),
            None => None,
        };
        if let (Some(name), None) = (port, id) {
            let (name, network) = (name.to_owned(), self.name.clone());
            return Err(ControlError::NoSuchPort { name, network });
        }
        let a = self.captures.start(token, id, count)?;
        log!(
            "capture started on {} ({})",
            port.unwrap_or("every port"),
            count.map_or_else(|| "until stopped".to_owned(), |n| format!("{n} frames"))
        );
        Ok(a)
    }
}

/// libvirt's name of a forward mode (`isolated` for a network without `<forward>`).
pub(crate) fn mode_name(m: ForwardMode) -> &'static str {
    match m {
        ForwardMode::None => "isolated",
        ForwardMode::Nat => "nat",
        ForwardMode::Route => "route",
        ForwardMode::Open => "open",
        ForwardMode::Bridge => "bridge",
        _ => "other",
    }
}

/// The network's outside, as switchd has it: the ports' devices and writer threads, the
/// uplink, the captures, the gateway's host side.
struct Driver<'a> {
    devs: &'a mut Devices,
    uplink: Option<&'a mut PacketPort>,
    uplink_tx_errors: &'a mut u64,
    captures: &'a mut Captures<PortId>,
    control: &'a mut Server,
    host: Option<&'a mut GatewayHost>,
}

impl vnet_network::Io for Driver<'_> {
    fn transmit(&mut self, egress: PortId, buf: &mut FrameBuf, take: bool) -> bool {
        self.devs.transmit(egress, buf, take)
    }

    fn uplink(&mut self, buf: &FrameBuf) {
        if let Some(u) = self.uplink.as_mut() {
            if u.send(buf).is_err() {
                *self.uplink_tx_errors += 1;
            }
        }
    }

    fn observing(&self) -> bool {
        !self.captures.is_empty()
    }

    /// Hands the frame to the captures that want it.
    fn observe(&mut self, port: PortId, ingress: bool, frame: &[u8]) {
        self.captures.observe(self.control, port, ingress, frame);
    }

    fn dhcp_event(&mut self, ev: &vnet_dhcp::Event) {
        if let Some(h) = self.host.as_mut() {
            h.dhcp_event(ev);
        }
    }

    fn dhcp6_event(&mut self, ev: &vnet_dhcp::v6::Event6) {
        if let Some(h) = self.host.as_mut() {
            h.dhcp6_event(ev);
        }
    }

    fn dns_event(&mut self, ev: &vnet_dns::Event) {
        if let Some(h) = self.host.as_ref() {
            log!("{}", ev.log_line(h.network()));
        }
    }

    fn dns_query(&mut self, to: std::net::SocketAddr, payload: &[u8]) {
        if let Some(h) = self.host.as_ref() {
            h.dns_query(to, payload);
        }
    }

    fn nat(&mut self, nat: &mut vnet_nat::Nat, now: std::time::Instant) {
        if let Some(h) = self.host.as_mut() {
            h.run_nat(nat, now);
        }
    }
}

/// A seed from the OS (std's per-process random hash keys), for DNS query ids and NAT
/// port choices.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
