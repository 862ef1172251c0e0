//! Ports of the loop: adding (TAP, netdev, QEMU stream and dgram peers, the host port),
//! removing, listing, and the persistent ports a restart takes back.

use super::*;

impl Daemon {
    /// Port security and portgroup of a QEMU socket port: the default portgroup's,
    /// else the network's (the guest names no group).
    pub(super) fn socket_port_security(
        &self,
    ) -> (Option<vnet_switch::PortSecurity>, Option<String>) {
        let pg = self.network.default_portgroup();
        let security = self
            .network
            .port_security_in(pg)
            .then(|| vnet_switch::PortSecurity::new(None));
        (security, pg.map(|g| g.name.clone()))
    }

    pub(super) fn port_id_by_name(&self, name: &str) -> Option<PortId> {
        self.ports.iter().enumerate().find_map(|(i, p)| {
            let p = p.as_ref()?;
            (p.name == name).then(|| PortId(u16::try_from(i).unwrap_or(u16::MAX)))
        })
    }

    pub(super) fn add_port(&mut self, req: &PortAdd) -> Result<PortInfo, ControlError> {
        let kind = req.kind.unwrap_or(PortKind::Tap);
        if req.secure && req.trusted {
            return Err("a port is either --secure or --trusted".into());
        }
        // the portgroup named, else the network's default one
        let pg = match &req.portgroup {
            Some(n) => Some(self.network.portgroup(n).ok_or_else(|| {
                format!("network {:?} has no portgroup {n:?}", self.network.name())
            })?),
            None => self.network.default_portgroup(),
        };
        let secure = req.secure || (!req.trusted && self.network.port_security_in(pg));
        let portgroup = pg.map(|g| g.name.clone());
        if let Some(n) = &req.name {
            if n.is_empty()
                || n.len() > 64
                || n.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(format!(
                    "port name {n:?} must be 1 to 64 characters without white space"
                )
                .into());
            }
            if self.port_id_by_name(n).is_some() {
                return Err(ControlError::PortNameInUse(n.clone()));
            }
        }
        if req.ifname.is_some()
            && req.netns.is_none()
            && req.name.is_some()
            && req.ifname != req.name
        {
            return Err("--ifname without --netns: give only --name (the interface name)".into());
        }
        let mac = match &req.mac {
            None => None,
            Some(m) => {
                let mac: MacAddr = m.parse().map_err(|e| format!("{e}"))?;
                if !mac.is_unicast() {
                    return Err(
                        format!("MAC address {mac} is not a unicast station address").into(),
                    );
                }
                Some(mac.octets())
            }
        };
        let ifname = req.ifname.clone().or_else(|| req.name.clone());
        if let Some(i) = &ifname {
            vnet_ports::validate_ifname(i).map_err(|e| e.to_string())?;
        }
        let dev: Dev = match kind {
            PortKind::Netdev => {
                if req.attach || req.persistent || mac.is_some() {
                    return Err(
                        "a netdev port takes no --attach, --persistent or --mac: the interface exists"
                            .into(),
                    );
                }
                let Some(ifname) = ifname else {
                    return Err("a netdev port needs the interface to attach to".into());
                };
                let mut opts = PacketOptions::new(&ifname);
                opts.netns = req.netns.as_deref().map(NetnsRef::new);
                opts.promiscuous = true;
                Box::new(PacketPort::open(&opts)?)
            }
            _ => {
                let mut opts = TapOptions::default();
                opts.name = ifname;
                opts.netns = req.netns.as_deref().map(NetnsRef::new);
                opts.persistent = req.persistent;
                // an existing TAP keeps the MAC it has (its guest may be using it)
                opts.mac = if req.attach { None } else { mac };
                if req.attach {
                    // a TAP made beforehand (possibly for an unprivileged switchd): use it as it is
                    opts.attach_existing = true;
                    opts.up = false;
                }
                opts.offloads = !req.no_offloads;
                Box::new(Tap::create(&opts)?)
            }
        };
        let isolated = req.isolated || self.network.ports_isolated();
        let persistent = req.persistent && dev.as_tap().is_some();
        let security = secure.then(|| vnet_switch::PortSecurity::new(mac.map(MacAddr)));
        let info = self.add_dev_with(req.name.clone(), dev, isolated, true, security, portgroup)?;
        if security.is_some() {
            self.refresh_port_security();
        }
        if persistent {
            let mut again = req.clone();
            again.name = Some(info.name.clone());
            again.ifname = Some(info.ifname.clone());
            again.attach = true;
            self.saved_ports.retain(|p| p.name != again.name);
            self.saved_ports.push(again);
            self.save_ports();
        }
        self.port_info(PortId(info.id))
            .ok_or_else(|| ControlError::from("port vanished"))
    }

    /// Adds an opened device as a port named `name` (default: its interface name, or
    /// `NETNS:IFNAME`).
    pub(super) fn add_dev(
        &mut self,
        name: Option<String>,
        dev: Dev,
        isolated: bool,
        learning: bool,
    ) -> Result<PortInfo, ControlError> {
        self.add_dev_with(name, dev, isolated, learning, None, None)
    }

    /// [`Daemon::add_dev`] with port security, in a portgroup.
    pub(super) fn add_dev_with(
        &mut self,
        name: Option<String>,
        dev: Dev,
        isolated: bool,
        learning: bool,
        security: Option<vnet_switch::PortSecurity>,
        portgroup: Option<String>,
    ) -> Result<PortInfo, ControlError> {
        let kind = crate::dev::kind(dev.as_ref());
        let name = name.unwrap_or_else(|| match dev.netns() {
            Some(ns) => format!("{}:{}", ns.name(), dev.name()),
            None => dev.name().to_owned(),
        });
        if self.port_id_by_name(&name).is_some() {
            return Err(ControlError::PortNameInUse(name));
        }
        let id = self
            .net
            .add_port(
                vnet_network::PortConfig::default()
                    .with_isolated(isolated)
                    .with_learning(learning)
                    .with_security(security),
            )
            .map_err(|e| e.to_string())?;
        let r = dev.readiness();
        let interest = match (r.readable, r.writable) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (false, true) => Interest::WRITABLE,
            _ => Interest::READABLE,
        };
        {
            if let Err(e) = self.poll.registry().register(
                &mut SourceFd(&dev.as_raw_fd()),
                Source::Port(id.index()).token(),
                interest,
            ) {
                self.net.remove_port(id);
                return Err(format!("cannot poll the new port: {e}").into());
            }
        }
        if self.ports.len() <= id.index() {
            self.ports.resize_with(id.index() + 1, || None);
        }
        let detail = format!(
            "{name} ({kind:?} {}{})",
            dev.name(),
            dev.netns()
                .map(|n| format!(" in netns {}", n.name()))
                .unwrap_or_default()
        );
        log!("port {detail} added");
        self.emit("port-added", detail);
        let writer = match (dev.as_tap(), self.writers.as_mut()) {
            (Some(tap), Some(w)) if !tap.takes_offloads() => match w.add(tap) {
                Ok(wp) => Some(wp),
                Err(e) => {
                    warn!("port {name}: no writer thread ({e}); written from the loop");
                    None
                }
            },
            _ => None,
        };
        self.ports[id.index()] = Some(Port {
            name,
            dev,
            isolated,
            ready: false,
            down_logged: false,
            writer,
            portgroup,
        });
        // Frames may already be queued: the edge was before registration.
        self.mark_ready(id.index());
        self.port_info(id)
            .ok_or_else(|| ControlError::from("port vanished"))
    }

    /// Opens the sockets QEMU guests attach to: `<run-dir>/<network>.stream`
    /// (`-netdev stream`, a port per connection) and `<run-dir>/<network>.dgram`
    /// (`-netdev dgram`, a port per peer socket path). Owner-only, like the control
    /// socket.
    pub(super) fn open_qemu_sockets(&mut self) -> Result<()> {
        let stream_path = self.socket_path.with_extension("stream");
        let dgram_path = self.socket_path.with_extension("dgram");
        for p in [&stream_path, &dgram_path] {
            // stale from a crashed run (the control socket's lock shows none runs)
            let _ = std::fs::remove_file(p);
        }
        let l = std::os::unix::net::UnixListener::bind(&stream_path)
            .with_context(|| format!("binding {}", stream_path.display()))?;
        l.set_nonblocking(true)?;
        std::fs::set_permissions(&stream_path, std::fs::Permissions::from_mode(0o600))?;
        self.poll.registry().register(
            &mut SourceFd(&l.as_raw_fd()),
            Source::StreamListener.token(),
            Interest::READABLE,
        )?;
        self.stream_listener = Some(l);
        let d = std::os::unix::net::UnixDatagram::bind(&dgram_path)
            .with_context(|| format!("binding {}", dgram_path.display()))?;
        d.set_nonblocking(true)?;
        std::fs::set_permissions(&dgram_path, std::fs::Permissions::from_mode(0o600))?;
        self.poll.registry().register(
            &mut SourceFd(&d.as_raw_fd()),
            Source::Dgram.token(),
            Interest::READABLE,
        )?;
        self.dgram = Some(std::rc::Rc::new(d));
        Ok(())
    }

    pub(super) fn accept_streams(&mut self) {
        loop {
            let Some(l) = self.stream_listener.as_ref() else {
                return;
            };
            let sock = match l.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("stream socket: accept failed: {e}");
                    return;
                }
            };
            let port = match vnet_ports::StreamPort::new(sock) {
                Ok(p) => p,
                Err(e) => {
                    log!("stream socket: {e}");
                    continue;
                }
            };
            self.next_sock_port += 1;
            let name = format!("stream-{}", self.next_sock_port);
            let isolated = self.network.ports_isolated();
            let (security, portgroup) = self.socket_port_security();
            if let Err(e) = self.add_dev_with(
                Some(name.clone()),
                Box::new(port),
                isolated,
                true,
                security,
                portgroup,
            ) {
                log!("stream connection refused: {e}");
            }
        }
    }

    /// Reads the datagram socket: each frame enters from its sender's port, made on the
    /// first frame of a new sender.
    pub(super) fn on_dgram(&mut self) {
        let now = self.clock;
        for _ in 0..4096 {
            let Some(sock) = self.dgram.clone() else {
                return;
            };
            let (n, from) = match sock.recv_from(&mut self.dgram_buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => continue,
            };
            let Some(path) = from.as_pathname() else {
                continue; // an unbound sender cannot be answered
            };
            if n < 14 {
                continue;
            }
            let id = match self.dgram_peers.get(path) {
                Some(id) => *id,
                None => {
                    self.next_sock_port += 1;
                    let name = format!("dgram-{}", self.next_sock_port);
                    let port = match vnet_ports::DgramPort::new(path.to_owned()) {
                        Ok(p) => p,
                        Err(e) => {
                            log!("dgram peer {}: cannot reach it: {e}", path.display());
                            continue;
                        }
                    };
                    let isolated = self.network.ports_isolated();
                    let (security, portgroup) = self.socket_port_security();
                    match self.add_dev_with(
                        Some(name),
                        Box::new(port),
                        isolated,
                        true,
                        security,
                        portgroup,
                    ) {
                        Ok(p) => {
                            self.dgram_peers.insert(path.to_owned(), PortId(p.id));
                            PortId(p.id)
                        }
                        Err(e) => {
                            log!("dgram peer {} refused: {e}", path.display());
                            continue;
                        }
                    }
                }
            };
            let frame = self.dgram_buf.get(..n).unwrap_or_default();
            self.buf.set_frame(frame);
            let (net, buf, mut io) = self.split();
            net.handle_frame(now, id, buf, &mut io);
        }
        self.dgram_more = true;
    }

    pub(super) fn ports_path(&self) -> PathBuf {
        self.socket_path.with_extension("ports.json")
    }

    pub(super) fn save_ports(&self) {
        let path = self.ports_path();
        let data = serde_json::to_vec_pretty(&self.saved_ports).unwrap_or_default();
        if let Err(e) = vnet_control::store::write_atomic(&path, &data) {
            warn!(
                "cannot save the persistent ports to {}: {e}",
                path.display()
            );
        }
    }

    /// Re-attaches the persistent TAPs an earlier run of this network had (after a
    /// crash, the guests' interfaces never went away: traffic resumes as soon as the
    /// ports are back). TAPs that are gone are forgotten, with a log line.
    ///
    /// The file is rewritten by the running network, so by the user it runs as: call this
    /// after the privilege drop. Only what [`Self::add_port`] itself records is taken:
    /// re-attaching a persistent TAP; any other entry is refused with a warning.
    pub(crate) fn restore_ports(&mut self) {
        let path = self.ports_path();
        let Ok(data) = std::fs::read(&path) else {
            return;
        };
        let saved: Vec<PortAdd> = match serde_json::from_slice(&data) {
            Ok(v) => v,
            Err(e) => {
                warn!("ignoring {}: {e}", path.display());
                return;
            }
        };
        for req in saved {
            let name = req.name.clone().unwrap_or_default();
            if !(req.persistent && req.attach && matches!(req.kind, None | Some(PortKind::Tap))) {
                warn!(
                    "port {name}: not restored: {} records only persistent TAPs to re-attach",
                    path.display()
                );
                continue;
            }
            match self.add_port(&req) {
                Ok(_) => log!("port {name}: persistent TAP re-attached"),
                Err(e) => warn!("port {name}: persistent TAP not re-attached: {e}"),
            }
        }
        self.save_ports();
    }

    /// Gives the host a port on the segment: a TAP named after `<bridge name>` with the
    /// gateway's MAC and address (the host and the gateway are one identity to guests;
    /// [`vnet_gateway::Gateway::host_claim`] splits what each answers). Skipped, with a
    /// note, without the privilege or when the name is taken (libvirt's own `virbr0`).
    pub(super) fn add_host_port(&mut self) {
        let (Some(g), Some(bridge)) = (self.net.gateway(), self.network.bridge_name()) else {
            return;
        };
        if !self.network.host_port() {
            return;
        }
        let cfg = g.config().clone();
        let mut opts = TapOptions::default();
        opts.name = Some(bridge.to_owned());
        opts.mac = Some(cfg.mac.0);
        let tap = match Tap::create(&opts) {
            Ok(t) => t,
            Err(e) => {
                log!(
                    "no host port: cannot create {bridge} ({e}{}); the host reaches guests only through NAT port forwards",
                    std::error::Error::source(&e)
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default()
                );
                return;
            }
        };
        if let Err(e) = tap.set_ipv4(cfg.ip, cfg.prefix) {
            log!(
                "no host port: cannot give {bridge} the address {}/{}: {e}",
                cfg.ip,
                cfg.prefix
            );
            return;
        }
        // not learning: the gateway's MAC stays on the gateway port
        match self.add_dev(None, Box::new(tap), false, false) {
            Ok(p) => {
                log!("host port {} ({}/{})", p.ifname, cfg.ip, cfg.prefix);
                self.net.set_host_port(Some(PortId(p.id)));
            }
            Err(e) => log!("no host port: {e}"),
        }
    }

    /// Removes a port; `destroy` also removes a persistent device.
    pub(super) fn remove_port(&mut self, name: &str, destroy: bool) -> Result<(), ControlError> {
        let id = self
            .port_id_by_name(name)
            .ok_or_else(|| ControlError::NoSuchPort {
                name: name.to_owned(),
                network: self.name.clone(),
            })?;
        let Some(mut port) = self.ports.get_mut(id.index()).and_then(Option::take) else {
            return Err(format!("no port named {name:?}").into());
        };
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&port.dev.as_raw_fd()));
        self.dgram_peers.retain(|_, p| *p != id);
        self.net.remove_port(id);
        self.ready.retain(|p| *p != id);
        if let (Some(wp), Some(w)) = (port.writer.take(), self.writers.as_mut()) {
            w.remove(&wp);
        }
        if destroy
            && self
                .saved_ports
                .iter()
                .any(|p| p.name.as_deref() == Some(name))
        {
            self.saved_ports.retain(|p| p.name.as_deref() != Some(name));
            self.save_ports();
        }
        if let (true, Some(tap)) = (destroy && port.dev.is_persistent(), port.dev.as_tap_mut()) {
            if let Err(e) = tap.set_persistent(false) {
                warn!("port {name}: cannot clear persistence: {e}");
            }
        }
        log!("port {name} removed");
        self.emit("port-removed", name.to_owned());
        Ok(())
    }

    pub(super) fn port_info(&self, id: PortId) -> Option<PortInfo> {
        let p = self.ports.get(id.index())?.as_ref()?;
        let c = self.net.switch().port_counters(id)?;
        Some(PortInfo {
            name: p.name.clone(),
            id: id.0,
            kind: crate::dev::kind(p.dev.as_ref()),
            ifname: p.dev.name().to_owned(),
            netns: p.dev.netns().map(|n| n.name().to_owned()),
            persistent: p.dev.is_persistent(),
            isolated: p.isolated,
            portgroup: p.portgroup.clone(),
            security: self
                .net
                .switch()
                .port_config(id)
                .and_then(|c| c.security)
                .map(|sec| vnet_control::PortSecurityInfo {
                    mac: sec.mac.map(|m| m.to_string()),
                    addrs: sec.addrs().map(|a| a.to_string()).collect(),
                }),
            macs: self.net.switch().fdb().port_len(id),
            io: {
                let mut s = p.dev.stats();
                if let Some(w) = &p.writer {
                    w.stats.add_to(&mut s);
                }
                vnet_control::IoCounters {
                    reads: s.reads,
                    writes: s.writes,
                    gso_in: s.gso_in,
                    gso_out: s.gso_out,
                    segmented: s.segmented,
                    segments: s.segments,
                    csums: s.csums,
                }
            },
            counters: Counters {
                rx_frames: c.rx_frames,
                rx_bytes: c.rx_bytes,
                tx_frames: c.tx_frames,
                tx_bytes: c.tx_bytes,
                flooded: c.flooded,
                drops: c
                    .drops
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(r, n)| (r.as_str().to_owned(), n))
                    .chain(
                        [
                            ("rx-overflow", p.dev.rx_overflows()),
                            (
                                "tx-writer-failed",
                                p.writer
                                    .as_ref()
                                    .map_or(0, |w| w.stats.failed.load(Relaxed)),
                            ),
                            (
                                "tx-queue-full",
                                p.writer
                                    .as_ref()
                                    .map_or(0, |w| w.stats.queue_full.load(Relaxed)),
                            ),
                        ]
                        .into_iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(k, n)| (k.to_owned(), n)),
                    )
                    .collect(),
            },
        })
    }

    pub(super) fn port_infos(&self) -> Vec<PortInfo> {
        self.net
            .switch()
            .ports()
            .iter()
            .filter_map(|id| self.port_info(*id))
            .collect()
    }
}
