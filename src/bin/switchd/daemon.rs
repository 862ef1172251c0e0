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

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use mio::net::{UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use vnet_config::{ForwardMode, Network};
use vnet_control::store::Store;
use vnet_control::{
    Counters, FdbRow, NetInfo, NetUpdate, PortAdd, PortInfo, PortKind, Request, Response,
};
use vnet_host::Source;
use vnet_ports::{
    ErrorClass, FrameBuf, NetnsRef, PacketOptions, PacketPort, PortType, Step, Tap, TapOptions,
};

use crate::conn::{Conn, MAX_CONNS};

mod control;
mod ports;
use crate::dev::Dev;
use crate::error::ControlError;
use crate::uplink::Uplink;
use crate::writers::{WriterPort, Writers};
use std::sync::atomic::Ordering::Relaxed;
use vnet_gateway::route::Verdict as RouteVerdict;
use vnet_ports::{VirtioNetHdr, VNET_HDR_LEN};

use crate::capture::Capture;
use crate::gateway::{gateway_config, GatewayPort};
use vnet_gateway::{Claim, Now};
use vnet_switch::{Instant, MacAddr, PortConfig, PortId, Switch, Verdict};

/// Frames read from one port before the loop turns to the next ready port.
const BUDGET: usize = 64;
/// Metrics (HTTP) connections served at once; more are refused.
const MAX_HTTP_CONNS: usize = 64;
/// A metrics connection that has not sent its request within this is closed.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Event subscribers at once.
const MAX_EVENT_SUBS: usize = 64;

struct Port {
    name: String,
    dev: Dev,
    isolated: bool,
    /// In the ready queue (readable, not yet drained to `EAGAIN`).
    ready: bool,
    /// Its interface was reported down (logged once until a frame arrives again).
    down_logged: bool,
    /// The writer thread that writes its frames (a TAP, with writer threads on).
    writer: Option<WriterPort>,
    /// The `<portgroup>` it joined.
    portgroup: Option<String>,
}

struct HttpConn {
    stream: mio::net::TcpStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    since: std::time::Instant,
}

pub(crate) struct Daemon {
    name: String,
    /// The live definition (net-update changes it; net-dumpxml shows it).
    network: Network,
    store: Store,
    socket_path: PathBuf,
    sw: Switch,
    /// Indexed by `PortId`.
    ports: Vec<Option<Port>>,
    ready: VecDeque<PortId>,
    poll: Poll,
    listener: UnixListener,
    signals: UnixStream,
    conns: HashMap<Token, Conn>,
    /// Connections with requests waiting that no readiness event will announce.
    conns_more: Vec<Token>,
    /// Connections refused because every slot was busy.
    conns_refused: u64,
    next_conn: usize,
    buf: FrameBuf,
    /// The frame in `buf` may be handed to a writer thread rather than copied (set
    /// for a unicast forward, consumed by the next `transmit`).
    take_buf: bool,
    /// Writer threads for TAP ports (none: TAPs are written from the loop).
    writers: Option<Writers>,
    /// Keep polling without sleeping this long after the last frame read (zero: sleep
    /// as soon as nothing is ready).
    busy_poll: Duration,
    /// When the loop last read a frame (kept only with `busy_poll`).
    last_frame: std::time::Instant,
    /// A frame was read since the loop last looked (the clock is read once per turn,
    /// not per frame).
    frames_read: bool,
    /// Reused list of flood targets (no allocation per frame).
    targets: Vec<PortId>,
    /// The network's gateway (ARP, ping, DHCP), a port of the switch; none in bridge mode.
    gateway: Option<GatewayPort>,
    epoch: std::time::Instant,
    /// The clocks as read once at the start of this loop turn: everything the turn
    /// does (frames, timers, NAT, DHCP) is at this time.
    clock: Now,
    stop: bool,
    /// Running captures (`switchctl capture`).
    captures: Vec<Capture>,
    /// Connections that asked for the event stream (`switchctl net-event`).
    event_subs: Vec<Token>,
    /// The metrics endpoint (`--metrics`) and its connections.
    metrics: Option<mio::net::TcpListener>,
    http: HashMap<Token, HttpConn>,
    next_http: usize,
    /// The host port (a TAP named after `<bridge name>` with the gateway's MAC and
    /// address), when there is one.
    host_port: Option<PortId>,
    /// The uplink and router of route/open modes.
    uplink: Option<Uplink>,
    uplink_tx_errors: u64,
    /// The uplink had more frames than one turn takes.
    uplink_more: bool,
    /// QEMU `-netdev stream` listener (`<run-dir>/<network>.stream`).
    stream_listener: Option<std::os::unix::net::UnixListener>,
    /// QEMU `-netdev dgram` socket (`<run-dir>/<network>.dgram`), its peers' ports, and
    /// a receive buffer.
    dgram: Option<std::rc::Rc<std::os::unix::net::UnixDatagram>>,
    dgram_peers: HashMap<PathBuf, PortId>,
    dgram_buf: Vec<u8>,
    dgram_more: bool,
    /// Numbers for the names of socket ports (`stream-N`, `dgram-N`).
    next_sock_port: u64,
    /// Ports to remove at the end of the turn (dgram peers that went away).
    doomed: Vec<String>,
    /// Counters as of the last check for bound and move events (once a second).
    watch: Watch,
    /// The ingress port of the frame being forwarded (the gateway bounds DHCP clients
    /// per port with it).
    ingress: PortId,
    /// Persistent TAP ports, as re-attach requests, saved in `<run-dir>/<net>.ports.json`
    /// so a switchd that crashed (or stopped) takes them back when it starts again.
    saved_ports: Vec<PortAdd>,
}

/// Counters watched for `net-event` (MAC moved, bounds hit) and for rate-limited log
/// lines: compared once a second, so a flood yields one event per kind per second.
#[derive(Default)]
struct Watch {
    at: Option<std::time::Instant>,
    moves: u64,
    evictions: u64,
    nat_refused: u64,
    pool_exhausted: u64,
    router_waiting_full: u64,
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
        let socket_path = store.socket_path(&name);
        let lock_path = store.start_lock_path();
        let lock = std::fs::File::create(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        if store.is_running(&name) {
            anyhow::bail!(
                "network {name:?} is already running (control socket {})",
                socket_path.display()
            );
        }
        for other in store.running_names().context("listing running networks")? {
            let Ok(Some(xml)) = store.read_live(&other) else {
                continue;
            };
            let Ok(other_net) = Network::from_xml(&xml) else {
                continue;
            };
            if let Some(why) = vnet_config::ipv4_overlap(&network, &other_net) {
                anyhow::bail!("network {name:?} overlaps running network {other:?}: {why}");
            }
        }
        let uplink = open_uplink(&network)?;
        let mut routed = crate::uplink::open(&network, gateway_config(&network).as_ref())?;
        match std::fs::remove_file(&socket_path) {
            Ok(()) => log!("removed stale control socket {}", socket_path.display()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).context(format!("removing {}", socket_path.display())),
        }
        let mut listener = UnixListener::bind(&socket_path)
            .with_context(|| format!("binding control socket {}", socket_path.display()))?;
        std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", socket_path.display()))?;
        store
            .save_live(&name, &network.to_xml())
            .context("writing the live definition")?;
        drop(lock);

        let poll = Poll::new().context("creating the poller")?;
        let mut sw = Switch::new(config);
        let mut gateway = match gateway_config(&network) {
            Some(cfg) => {
                let id = sw
                    .add_port(PortConfig::default())
                    .map_err(|e| anyhow::anyhow!("adding the gateway port: {e}"))?;
                log!("gateway {} ({}) on port {id}", cfg.ip, cfg.mac);
                let registry = poll
                    .registry()
                    .try_clone()
                    .context("cloning the poller's registry")?;
                Some(GatewayPort::new(
                    id,
                    cfg,
                    &network,
                    store.state_dir(),
                    registry,
                    &nat_limits,
                )?)
            }
            None => None,
        };
        if let Some(d) = gateway.as_mut().and_then(|g| g.gw.dhcp_mut()) {
            d.set_port_cap(dhcp_port_cap);
        }

        let (mut sig_rx, sig_tx) = UnixStream::pair().context("creating the signal pipe")?;
        let sig_tx = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(sig_tx));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            let tx = sig_tx.try_clone().context("cloning the signal pipe")?;
            signal_hook::low_level::pipe::register(sig, tx)
                .context("installing signal handlers")?;
        }

        poll.registry().register(
            &mut listener,
            Source::ControlListener.token(),
            Interest::READABLE,
        )?;
        let metrics = match metrics_addr {
            Some(a) => {
                let mut l = mio::net::TcpListener::bind(a)
                    .with_context(|| format!("binding the metrics endpoint {a}"))?;
                poll.registry().register(
                    &mut l,
                    Source::MetricsListener.token(),
                    Interest::READABLE,
                )?;
                log!("metrics on http://{a}/metrics");
                Some(l)
            }
            None => None,
        };
        if let Some(sock) = gateway.as_mut().and_then(|g| g.upstream.as_mut()) {
            sock.register(poll.registry())?;
        }
        poll.registry()
            .register(&mut sig_rx, Source::Signals.token(), Interest::READABLE)?;
        log!(
            "network {name:?} running, control socket {}",
            socket_path.display()
        );
        let mut d = Self {
            name,
            network,
            store,
            socket_path,
            sw,
            gateway,
            ports: Vec::new(),
            ready: VecDeque::new(),
            poll,
            listener,
            signals: sig_rx,
            conns: HashMap::new(),
            conns_more: Vec::new(),
            conns_refused: 0,
            next_conn: 0,
            buf: FrameBuf::new(),
            take_buf: false,
            writers: None,
            busy_poll: Duration::ZERO,
            last_frame: std::time::Instant::now(),
            frames_read: false,
            targets: Vec::new(),
            epoch: std::time::Instant::now(),
            clock: Now::system(),
            stop: false,
            captures: Vec::new(),
            event_subs: Vec::new(),
            metrics,
            http: HashMap::new(),
            next_http: 0,
            host_port: None,
            uplink: None,
            uplink_tx_errors: 0,
            uplink_more: false,
            stream_listener: None,
            dgram: None,
            dgram_peers: HashMap::new(),
            dgram_buf: vec![0; vnet_ports::MAX_FRAME_LEN],
            dgram_more: false,
            next_sock_port: 0,
            doomed: Vec::new(),
            watch: Watch::default(),
            saved_ports: Vec::new(),
            ingress: PortId(0),
        };
        d.open_qemu_sockets()?;
        if let Some(u) = routed.as_mut() {
            d.poll.registry().register(
                &mut SourceFd(&u.port.as_raw_fd()),
                Source::Uplink.token(),
                Interest::READABLE,
            )?;
        }
        d.uplink = routed;
        if let Some(dev) = uplink {
            // never isolated: `<port isolated>` keeps guests apart, not from the LAN
            d.add_dev(None, dev, false, true)
                .map_err(|e| anyhow::anyhow!("adding the uplink port: {e}"))?;
        }
        d.add_host_port();
        Ok(d)
    }

    /// The network's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Lets the members of group `gid` use the network's sockets (control, QEMU stream
    /// and dgram): group-owned, mode 0660.
    pub(crate) fn grant_group(&self, gid: nix::unistd::Gid) -> Result<()> {
        // the group must reach the sockets in the (owner-only) run dir: search, no read
        let run_dir = self.store.run_dir();
        std::os::unix::fs::chown(run_dir, None, Some(gid.as_raw()))
            .with_context(|| format!("giving {} to group {gid}", run_dir.display()))?;
        std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o710))
            .with_context(|| format!("opening {} to its group", run_dir.display()))?;
        for p in [
            self.socket_path.clone(),
            self.socket_path.with_extension("stream"),
            self.socket_path.with_extension("dgram"),
        ] {
            std::os::unix::fs::chown(&p, None, Some(gid.as_raw()))
                .with_context(|| format!("giving {} to group {gid}", p.display()))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o660))
                .with_context(|| format!("opening {} to its group", p.display()))?;
        }
        Ok(())
    }

    /// The switch's time of this loop turn (the clocks are read once a turn, when the
    /// poll returns: [`Self::clock`]).
    fn now(&self) -> Instant {
        Instant::from_micros(
            u64::try_from(
                self.clock
                    .mono
                    .saturating_duration_since(self.epoch)
                    .as_micros(),
            )
            .unwrap_or(u64::MAX),
        )
    }

    pub(crate) fn run(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        while !self.stop {
            let busy = !self.busy_poll.is_zero()
                && self.clock.mono.saturating_duration_since(self.last_frame) < self.busy_poll;
            let timeout = if self.ready.is_empty()
                && !self.uplink_more
                && !self.dgram_more
                && self.conns_more.is_empty()
                && !busy
            {
                let now = self.now();
                let sw = self
                    .sw
                    .poll_timeout()
                    .map(|t| t.saturating_duration_since(now).min(Duration::from_secs(1)));
                let clock = self.clock;
                let gw = self.gateway.as_mut().and_then(|g| g.poll_timeout(clock));
                let rt = self
                    .uplink
                    .as_ref()
                    .and_then(|u| u.router.poll_at())
                    .map(|t| t.saturating_duration_since(clock.mono));
                // idle connections are looked at once a second
                let conns = (!self.conns.is_empty() || !self.http.is_empty())
                    .then_some(Duration::from_secs(1));
                [sw, gw, rt, conns].into_iter().flatten().min()
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
                    Source::Port(i) => self.mark_ready(i),
                    Source::ControlListener => self.accept(),
                    Source::Control(_) => self.on_conn(ev.token()),
                    Source::Signals => self.on_signal(),
                    Source::MetricsListener => self.accept_http(),
                    Source::Http(_) => self.on_http(ev.token()),
                    Source::Uplink => self.on_uplink(),
                    Source::StreamListener => self.accept_streams(),
                    Source::Dgram => self.on_dgram(),
                    Source::DnsUpstream => {
                        if let Some(g) = self.gateway.as_mut() {
                            g.on_upstream_readable(clock);
                        }
                    }
                    nat => {
                        if let Some(g) = self.gateway.as_mut() {
                            g.on_nat_event(nat, clock);
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
            for token in std::mem::take(&mut self.conns_more) {
                self.on_conn(token);
            }
            for name in std::mem::take(&mut self.doomed) {
                log!("port {name}: its peer is gone; removing it");
                let _ = self.remove_port(&name, true);
            }
            let now = self.now();
            if self.sw.poll_timeout().is_some_and(|t| t <= now) {
                self.sw.handle_timeout(now);
            }
            if let Some(g) = self.gateway.as_mut() {
                g.handle_timeout(clock);
            }
            if let Some(u) = self.uplink.as_mut() {
                u.router.poll(clock.mono);
            }
            self.watch_counters();
            self.drain_router(now);
            if !self.captures.is_empty() {
                self.flush_captures();
            }
            self.drain_gateway(now);
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
        let names: Vec<String> = self
            .ports
            .iter()
            .flatten()
            .map(|p| p.name.clone())
            .collect();
        for name in names {
            // persistent devices stay; the others vanish with their descriptor
            let _ = self.remove_port(&name, false);
        }
        let _ = std::fs::remove_file(&self.socket_path);
        let _ = std::fs::remove_file(self.socket_path.with_extension("stream"));
        let _ = std::fs::remove_file(self.socket_path.with_extension("dgram"));
        let _ = std::fs::remove_file(self.store.live_path(&self.name));
        log!("network {:?} stopped", self.name);
    }

    /// Starts `n` writer threads and hands them the TAP ports without offloads (those
    /// added later go to them too): each frame written to such a port is one segment
    /// of the guest's traffic (a super-frame from another port is cut into segments
    /// there), so their writes cost the most per byte. A TAP with offloads takes 64 KiB
    /// frames, and handing each to a thread costs more than it saves (measured: see
    /// docs/performance.md), so the loop writes those itself. Called once the daemon
    /// has dropped its privileges, so the threads run with what is left.
    pub(crate) fn start_writers(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let mut w = Writers::new(n).context("starting writer threads")?;
        for p in self.ports.iter_mut().flatten() {
            if let Some(tap) = p.dev.as_tap() {
                if tap.takes_offloads() {
                    continue;
                }
                p.writer = Some(
                    w.add(tap)
                        .with_context(|| format!("port {}: writer thread", p.name))?,
                );
            }
        }
        self.writers = Some(w);
        log!("{n} writer thread(s) for TAP ports");
        Ok(())
    }

    /// Keeps the loop polling, without sleeping, for `d` after each frame read: a frame
    /// that arrives meanwhile does not have to wake switchd (a wake-up across CPUs costs
    /// tens of microseconds in a VM), at the price of a CPU spinning that long.
    pub(crate) fn set_busy_poll(&mut self, d: Duration) {
        self.busy_poll = d;
    }

    // ---- datapath ----

    fn mark_ready(&mut self, t: usize) {
        let Ok(id) = u16::try_from(t) else { return };
        if let Some(Some(p)) = self.ports.get_mut(t) {
            if !p.ready {
                p.ready = true;
                self.ready.push_back(PortId(id));
            }
        }
    }

    /// One round over the ready ports, each up to [`BUDGET`] frames.
    fn service_ready(&mut self) {
        for _ in 0..self.ready.len() {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let drained = self.service_port(id);
            if let Some(Some(p)) = self.ports.get_mut(id.index()) {
                if drained {
                    p.ready = false;
                } else {
                    self.ready.push_back(id);
                }
            }
        }
    }

    /// Reads and forwards frames from one port. Returns true once the port is drained
    /// (`EAGAIN`) or gone.
    fn service_port(&mut self, id: PortId) -> bool {
        let now = self.now();
        if let Some(Some(port)) = self.ports.get_mut(id.index()) {
            if let Err(e) = port.dev.flush() {
                let name = port.name.clone();
                warn!("port {name}: write failed ({e}); removing it");
                let _ = self.remove_port(&name, true);
                return true;
            }
        }
        let mut drain = vnet_ports::Drain::new(BUDGET);
        loop {
            let Some(Some(port)) = self.ports.get_mut(id.index()) else {
                return true;
            };
            match drain.next(port.dev.as_mut(), &mut self.buf) {
                None => return drain.drained(),
                Some(Step::Frame) if port.down_logged => {
                    port.down_logged = false;
                    log!("port {}: frames flow again", port.name);
                }
                Some(Step::Frame) => self.frames_read = true,
                Some(Step::Transient(e)) => {
                    if !port.down_logged {
                        port.down_logged = true;
                        log!("port {}: {e}; waiting for it to come back", port.name);
                    }
                    continue;
                }
                Some(Step::Gone(e)) => {
                    let name = port.name.clone();
                    warn!("port {name}: read failed ({e}); removing it");
                    let _ = self.remove_port(&name, true);
                    return true;
                }
                Some(_) => continue,
            }
            self.forward(now, id);
            self.drain_gateway(now);
        }
    }

    /// Sends what the gateway queued (replies to ARP, ping, DHCP) into the switch, as
    /// frames arriving on the gateway port; DHCP events are logged and persisted first.
    fn drain_gateway(&mut self, now: Instant) {
        loop {
            let Some(g) = self.gateway.as_mut() else {
                return;
            };
            g.drain_events(&self.name, self.clock);
            let has_events = !g.events.is_empty();
            let Some(frame) = g.gw.poll_transmit() else {
                if has_events {
                    self.emit_gateway_events();
                    self.refresh_port_security();
                }
                return;
            };
            if has_events {
                self.emit_gateway_events();
                self.refresh_port_security();
            }
            let Some(g) = self.gateway.as_mut() else {
                return;
            };
            let id = g.id;
            let mtu = usize::from(g.gw.config().mtu);
            self.buf.set_frame(&frame);
            g.gw.recycle(frame);
            // NAT's TCP super-frames go to guests as TSO frames
            self.buf.offload_tcp(mtu);
            self.forward(now, id);
        }
    }

    /// Reads the uplink of a routed network: packets for the segment enter it from the
    /// gateway port; ARP answers feed the router; the host's own traffic is left alone.
    fn on_uplink(&mut self) {
        let Some(gw_id) = self.gateway.as_ref().map(|g| g.id) else {
            return;
        };
        for _ in 0..4096 {
            let Some(u) = self.uplink.as_mut() else {
                return;
            };
            match u.port.recv(&mut self.buf) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => continue,
            }
            let mut hdr = [0u8; VNET_HDR_LEN];
            let _ = self.buf.vnet_hdr().emit(&mut hdr);
            let v = u
                .router
                .from_uplink(self.clock.mono, &hdr, self.buf.frame_mut());
            if v == RouteVerdict::Segment {
                self.forward(self.now(), gw_id);
            }
        }
        // more queued: come back on the next turn without waiting for an edge
        self.uplink_more = true;
    }

    /// Sends what the router made or released: ARP questions, ICMP errors, packets that
    /// waited for their next hop.
    fn drain_router(&mut self, now: Instant) {
        let Some(gw_id) = self.gateway.as_ref().map(|g| g.id) else {
            return;
        };
        loop {
            let Some(u) = self.uplink.as_mut() else {
                return;
            };
            if let Some((hdr, frame)) = u.router.poll_uplink() {
                self.buf.set_frame(&frame);
                if let Some(h) = VirtioNetHdr::parse(&hdr) {
                    self.buf.set_vnet_hdr(&h);
                }
                if u.port.send(&self.buf).is_err() {
                    self.uplink_tx_errors += 1;
                }
                continue;
            }
            let Some((hdr, frame)) = u.router.poll_segment() else {
                return;
            };
            self.buf.set_frame(&frame);
            if let Some(h) = VirtioNetHdr::parse(&hdr) {
                self.buf.set_vnet_hdr(&h);
            }
            self.forward(now, gw_id);
        }
    }

    fn forward(&mut self, now: Instant, ingress: PortId) {
        self.ingress = ingress;
        if !self.captures.is_empty() {
            self.capture_frame(ingress, true);
        }
        match self.sw.handle_frame(now, ingress, self.buf.frame()) {
            Verdict::Forward(egress) => {
                // nothing reads the frame after this one transmit
                self.take_buf = true;
                self.transmit(egress);
            }
            Verdict::Flood => {
                let mut targets = std::mem::take(&mut self.targets);
                targets.clear();
                targets.extend(self.sw.flood_targets(ingress));
                for &egress in &targets {
                    self.transmit(egress);
                }
                self.targets = targets;
            }
            Verdict::Drop(_) => {}
        }
    }

    fn transmit(&mut self, egress: PortId) {
        let take = std::mem::take(&mut self.take_buf);
        if !self.captures.is_empty() {
            self.capture_frame(egress, false);
        }
        if let Some(g) = self.gateway.as_ref().filter(|g| g.id == egress) {
            let gw_id = g.id;
            if let Some(u) = self.uplink.as_mut() {
                let mut hdr = [0u8; VNET_HDR_LEN];
                let _ = self.buf.vnet_hdr().emit(&mut hdr);
                match u
                    .router
                    .from_segment(self.clock.mono, &hdr, self.buf.frame_mut())
                {
                    RouteVerdict::Uplink => {
                        if u.port.send(&self.buf).is_err() {
                            self.uplink_tx_errors += 1;
                        }
                        return;
                    }
                    RouteVerdict::Segment => {
                        // to a prefix behind another guest: back into the segment
                        self.forward(self.now(), gw_id);
                        return;
                    }
                    RouteVerdict::Waiting | RouteVerdict::Dropped => return,
                    RouteVerdict::Host => {
                        if let Some(h) = self.host_port {
                            self.transmit(h);
                        }
                        return;
                    }
                    _ => {}
                }
            }
            let Some(g) = self.gateway.as_ref() else {
                return;
            };
            let claim = match self.host_port {
                Some(_) => g.gw.host_claim(self.buf.frame()),
                None => Claim::Gateway,
            };
            if let (Some(h), Claim::Host | Claim::Both) = (self.host_port, claim) {
                self.transmit(h);
            }
            if claim != Claim::Host {
                let ingress = u32::from(self.ingress.0);
                if let Some(g) = self.gateway.as_mut() {
                    g.gw.set_ingress(Some(ingress));
                    g.gw.handle_frame(self.clock, self.buf.frame());
                }
            }
            return;
        }
        let Some(Some(port)) = self.ports.get_mut(egress.index()) else {
            return;
        };
        if let (Some(wp), Some(w)) = (&port.writer, self.writers.as_mut()) {
            // dropped and counted there when its queue is full
            w.submit(wp, &mut self.buf, take);
            return;
        }
        if let Err(e) = port.dev.send(&self.buf) {
            if port.dev.port_type() == PortType::Dgram
                && port.dev.classify(&e) == ErrorClass::Gone
                && !self.doomed.contains(&port.name)
            {
                self.doomed.push(port.name.clone());
            }
            self.sw.count_tx_failure(egress, self.buf.len());
        }
    }

    fn net_info(&self) -> NetInfo {
        NetInfo {
            name: self.name.clone(),
            pid: std::process::id(),
            uptime: self.epoch.elapsed().as_secs_f64(),
            ports: self.ports.iter().flatten().count(),
            fdb_entries: self.sw.fdb().len(),
            fdb_max_entries: self.sw.fdb().max_entries(),
            fdb_evictions: self.sw.fdb().stats().evictions,
            aging_time: self.sw.fdb().aging().as_secs(),
            uuid: self.network.uuid().map(str::to_owned),
            bridge: self.network.bridge_name().map(str::to_owned),
            mode: mode_name(self.network.forward_mode()).to_owned(),
            gateway: self.gateway.as_ref().map(GatewayPort::info),
            router: self.uplink.as_ref().map(|u| {
                let st = u.router.stats();
                [
                    ("out", st.out),
                    ("in", st.r#in),
                    ("ttl_expired", st.ttl_expired),
                    ("no_route", st.no_route),
                    ("unresolved", st.unresolved),
                    ("waiting_full", st.waiting_full),
                    ("malformed", st.malformed),
                    ("uplink_tx_errors", self.uplink_tx_errors),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect()
            }),
        }
    }

    // ---- events ----

    /// Gives every protected port the IPv4 addresses its MAC holds: active leases and
    /// fixed reservations. Called when a port is added and after lease events.
    fn refresh_port_security(&mut self) {
        let Some(server) = self.gateway.as_ref().and_then(|g| g.gw.dhcp()) else {
            return;
        };
        let ids: Vec<PortId> = self.sw.ports().to_vec();
        for id in ids {
            let Some(sec) = self.sw.port_config(id).and_then(|c| c.security) else {
                continue;
            };
            let Some(mac) = sec.mac else { continue };
            let leased = server.leases().filter(|l| l.mac == mac.0).map(|l| l.ip);
            let reserved = server
                .config()
                .hosts
                .iter()
                .filter(|h| h.mac == Some(mac.0))
                .filter_map(|h| h.ip);
            let addrs: Vec<std::net::Ipv4Addr> = leased.chain(reserved).collect();
            self.sw.set_port_addrs(id, addrs);
        }
    }

    /// Once a second: a station move and bounds that were hit since the last check
    /// become events (and warnings for the bounds), one per kind.
    fn watch_counters(&mut self) {
        let now = self.clock.mono;
        if self
            .watch
            .at
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.watch.at = Some(now);
        self.expire_conns(now);
        self.expire_http();
        let fdb = self.sw.fdb().stats();
        if fdb.moves > self.watch.moves {
            let n = fdb.moves - self.watch.moves;
            if let Some(m) = self.sw.fdb().last_move() {
                let name = |id: PortId| {
                    self.ports
                        .get(id.index())
                        .and_then(Option::as_ref)
                        .map_or_else(|| id.to_string(), |p| p.name.clone())
                };
                let detail = format!(
                    "{} moved from {} to {}{}",
                    m.mac,
                    name(m.from),
                    name(m.to),
                    if n > 1 {
                        format!(" ({n} moves)")
                    } else {
                        String::new()
                    }
                );
                log!("{detail}");
                self.emit("mac-moved", detail);
            }
        }
        if fdb.evictions > self.watch.evictions {
            let detail = format!(
                "FDB full ({} entries): {} evicted",
                self.sw.fdb().max_entries(),
                fdb.evictions - self.watch.evictions
            );
            warn!("{detail}");
            self.emit("bound-hit", detail);
        }
        let (nat_refused, pool_exhausted) = self.gateway.as_ref().map_or((0, 0), |g| {
            (
                g.gw.nat().map_or(0, |n| n.stats().refused_limit),
                g.gw.dhcp().map_or(0, |d| d.stats().pool_exhausted),
            )
        });
        if nat_refused > self.watch.nat_refused {
            let detail = format!(
                "NAT flow bound: {} new flows refused",
                nat_refused - self.watch.nat_refused
            );
            warn!("{detail}");
            self.emit("bound-hit", detail);
        }
        if pool_exhausted > self.watch.pool_exhausted {
            let detail = format!(
                "DHCP pool exhausted: {} requests unanswered",
                pool_exhausted - self.watch.pool_exhausted
            );
            warn!("{detail}");
            self.emit("bound-hit", detail);
        }
        let waiting_full = self
            .uplink
            .as_ref()
            .map_or(0, |u| u.router.stats().waiting_full);
        if waiting_full > self.watch.router_waiting_full {
            let detail = format!(
                "router: {} packets dropped, too many waiting for ARP",
                waiting_full - self.watch.router_waiting_full
            );
            warn!("{detail}");
            self.emit("bound-hit", detail);
        }
        self.watch.moves = fdb.moves;
        self.watch.evictions = fdb.evictions;
        self.watch.nat_refused = nat_refused;
        self.watch.pool_exhausted = pool_exhausted;
        self.watch.router_waiting_full = waiting_full;
    }

    /// Sends an event to the `net-event` subscribers (a slow one misses events rather
    /// than making switchd buffer without bound).
    fn emit(&mut self, event: &str, detail: String) {
        if self.event_subs.is_empty() {
            return;
        }
        let t = self
            .clock
            .wall
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut line = serde_json::to_vec(&serde_json::json!({
            "event": event,
            "network": self.name,
            "time": t,
            "detail": detail,
        }))
        .unwrap_or_default();
        line.push(b'\n');
        self.event_subs.retain(|t| self.conns.contains_key(t));
        for t in &self.event_subs {
            if let Some(conn) = self.conns.get_mut(t) {
                if conn.outbuf.len() < 1 << 20 {
                    conn.outbuf.extend_from_slice(&line);
                }
                if let Ok(false) = conn.flush() {
                    let _ = self.poll.registry().reregister(
                        &mut conn.stream,
                        *t,
                        Interest::READABLE | Interest::WRITABLE,
                    );
                }
            }
        }
    }

    /// Events the gateway queued (leases).
    fn emit_gateway_events(&mut self) {
        let events = match self.gateway.as_mut() {
            Some(g) if !g.events.is_empty() => std::mem::take(&mut g.events),
            _ => return,
        };
        for (kind, detail) in events {
            self.emit(kind, detail);
        }
    }

    // ---- capture ----

    /// Hands the frame in the datapath buffer to the captures that want it.
    fn capture_frame(&mut self, port: PortId, ingress: bool) {
        for c in &mut self.captures {
            if !c.wants(port, ingress) {
                continue;
            }
            let Some(conn) = self.conns.get_mut(&c.token) else {
                continue;
            };
            c.record(self.buf.frame(), conn.outbuf.len());
            c.take(&mut conn.outbuf);
        }
    }

    /// Starts a capture on control connection `token`: the response line, then pcap.
    fn start_capture(
        &mut self,
        token: Token,
        port: Option<&str>,
        count: Option<u64>,
    ) -> Result<Capture, ControlError> {
        let id = match port {
            Some("gateway") => self.gateway.as_ref().map(|g| g.id),
            Some(name) => self.port_id_by_name(name),
            None => None,
        };
        if port.is_some() && id.is_none() {
            return Err(ControlError::NoSuchPort {
                name: port.unwrap_or_default().to_owned(),
                network: self.name.clone(),
            });
        }
        if self.captures.len() >= 8 {
            return Err("too many captures running (8)".into());
        }
        let c = Capture::new(token, id, count).map_err(|e| e.to_string())?;
        log!(
            "capture started on {} ({})",
            port.unwrap_or("every port"),
            count.map_or_else(|| "until stopped".to_owned(), |n| format!("{n} frames"))
        );
        Ok(c)
    }

    /// Flushes the captures' output once per loop turn; ends the ones whose reader left
    /// or whose `--count` is reached.
    fn flush_captures(&mut self) {
        let mut i = 0;
        while i < self.captures.len() {
            let c = &self.captures[i];
            let token = c.token;
            let ended = match self.conns.get_mut(&token) {
                None => true,
                Some(conn) => match conn.flush() {
                    Ok(true) => c.done(),
                    Ok(false) => {
                        let _ = self.poll.registry().reregister(
                            &mut conn.stream,
                            token,
                            Interest::READABLE | Interest::WRITABLE,
                        );
                        false
                    }
                    Err(_) => true,
                },
            };
            if ended {
                let c = self.captures.swap_remove(i);
                if let Some(mut conn) = self.conns.remove(&token) {
                    let _ = self.poll.registry().deregister(&mut conn.stream);
                }
                log!(
                    "capture ended: {} frames, {} dropped (slow reader)",
                    c.captured,
                    c.dropped
                );
            } else {
                i += 1;
            }
        }
    }
}

/// libvirt's name of a forward mode (`isolated` for a network without `<forward>`).
/// The uplink of a bridge-mode network, opened (promiscuous): the first `<forward>`
/// `<interface dev>` (or `<forward dev>`), else `<bridge name>`, which in this mode names
/// an existing interface, not one switchd makes.
fn open_uplink(network: &Network) -> Result<Option<Dev>> {
    if network.forward_mode() != ForwardMode::Bridge {
        return Ok(None);
    }
    let (dev, element) = match (network.forward().dev(), network.bridge_name()) {
        (Some(d), _) => (d, "<forward><interface dev>"),
        (None, Some(b)) => (b, "<bridge name>"),
        (None, None) => anyhow::bail!(
            "network {:?}: <forward mode='bridge'> needs <bridge name> or <interface dev> naming the uplink",
            network.name()
        ),
    };
    if network.forward().interfaces.len() > 1 {
        log!(
            "<forward mode='bridge'> lists {} interfaces; only {dev} is attached (several uplinks to one segment would loop)",
            network.forward().interfaces.len()
        );
    }
    let mut opts = PacketOptions::new(dev);
    opts.promiscuous = true;
    let port = PacketPort::open(&opts).map_err(|e| {
        let mut s = e.to_string();
        if let Some(src) = std::error::Error::source(&e) {
            s.push_str(&format!(": {src}"));
        }
        anyhow::anyhow!(
            "network {:?}: uplink {element}={dev:?}: {s}",
            network.name()
        )
    })?;
    log!("bridge mode: uplink {dev} attached (promiscuous)");
    Ok(Some(Box::new(port)))
}

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

fn queue_response(out: &mut Vec<u8>, resp: &Response) {
    if serde_json::to_writer(&mut *out, resp).is_err() {
        out.extend_from_slice(br#"{"ok":false,"error":"cannot encode the response"}"#);
    }
    out.push(b'\n');
}
