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
        self.devs.by_name(name)
    }

    pub(super) fn add_port(&mut self, req: &PortAdd) -> Result<PortInfo, ControlError> {
        // the portgroup named, else the network's default one
        let pg = match &req.portgroup {
            Some(n) => Some(self.network.portgroup(n).ok_or_else(|| {
                format!("network {:?} has no portgroup {n:?}", self.network.name())
            })?),
            None => self.network.default_portgroup(),
        };
        let secure = req.secure || (!req.trusted && self.network.port_security_in(pg));
        let portgroup = pg.map(|g| g.name.clone());
        if let Some(n) = req
            .name
            .as_ref()
            .filter(|n| self.port_id_by_name(n).is_some())
        {
            return Err(ControlError::PortNameInUse(n.clone()));
        }
        let Opened {
            dev,
            mac,
            name: default_name,
        } = vnet_host::open_port(req).map_err(|e| match e {
            PortAddError::Open(e) => ControlError::from(e),
            e => ControlError::Invalid(e.to_string()),
        })?;
        let isolated = req.isolated || self.network.ports_isolated();
        let persistent = req.persistent && dev.as_tap().is_some();
        // a vhost-user port's socket is listened on (or dialled) again after a restart
        let vhost_user = dev.port_type() == vnet_ports::PortType::VhostUser;
        let security = secure.then(|| vnet_switch::PortSecurity::new(mac));
        let name = req.name.clone().or(default_name);
        let info = self.add_dev_with(name, dev, isolated, true, security, portgroup)?;
        if security.is_some() {
            self.refresh_port_security();
        }
        if persistent || vhost_user {
            let mut again = req.clone();
            again.name = Some(info.name.clone());
            if persistent {
                again.ifname = Some(info.ifname.clone());
                again.attach = true;
            }
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
        dev: Box<dyn vnet_ports::Port>,
        isolated: bool,
        learning: bool,
    ) -> Result<PortInfo, ControlError> {
        self.add_dev_with(name, dev, isolated, learning, None, None)
    }

    /// [`Daemon::add_dev`] with port security, in a portgroup.
    pub(super) fn add_dev_with(
        &mut self,
        name: Option<String>,
        dev: Box<dyn vnet_ports::Port>,
        isolated: bool,
        learning: bool,
        security: Option<vnet_switch::PortSecurity>,
        portgroup: Option<String>,
    ) -> Result<PortInfo, ControlError> {
        let name = name.unwrap_or_else(|| match dev.netns() {
            Some(ns) => format!("{}:{}", ns.name(), dev.name()),
            None => dev.name().to_owned(),
        });
        if self.port_id_by_name(&name).is_some() {
            return Err(ControlError::PortNameInUse(name));
        }
        let config = vnet_network::PortConfig::default()
            .with_isolated(isolated)
            .with_learning(learning)
            .with_security(security);
        let id = self.net.add_port(config).map_err(|e| e.to_string())?;
        let dev = Device::new(name, dev, isolated, portgroup);
        let detail = format!(
            "{} ({:?} {}{})",
            dev.name,
            dev.kind(),
            dev.dev.name(),
            dev.dev
                .netns()
                .map(|n| format!(" in netns {}", n.name()))
                .unwrap_or_default()
        );
        if let Err(e) = self.devs.insert(self.poll.registry(), id, dev) {
            self.net.remove_port(id);
            return Err(format!("cannot poll the new port: {e}").into());
        }
        log!("port {detail} added");
        self.emit("port-added", detail);
        self.port_info(id)
            .ok_or_else(|| ControlError::from("port vanished"))
    }

    /// Adds a QEMU socket peer as a port, in the default portgroup (the guest names
    /// none).
    fn add_socket_port(
        &mut self,
        name: String,
        dev: Box<dyn vnet_ports::Port>,
    ) -> Result<PortInfo, ControlError> {
        let isolated = self.network.ports_isolated();
        let (security, portgroup) = self.socket_port_security();
        self.add_dev_with(Some(name), dev, isolated, true, security, portgroup)
    }

    pub(super) fn accept_vhost_users(&mut self) {
        while let Some((name, port)) = self.qemu.accept_vhost_user() {
            if let Err(e) = self.add_socket_port(name, Box::new(port)) {
                log!("vhost-user connection refused: {e}");
            }
        }
    }

    pub(super) fn accept_streams(&mut self) {
        while let Some((name, port)) = self.qemu.accept() {
            if let Err(e) = self.add_socket_port(name, Box::new(port)) {
                log!("stream connection refused: {e}");
            }
        }
    }

    /// Reads the datagram socket: each frame enters from its sender's port, made on the
    /// first frame of a new sender.
    pub(super) fn on_dgram(&mut self) {
        let now = self.clock;
        for _ in 0..4096 {
            let (id, len) = match self.qemu.recv() {
                None => return,
                Some(Datagram::Known(id, len)) => (id, len),
                Some(Datagram::New {
                    name,
                    port,
                    path,
                    len,
                }) => match self.add_socket_port(name, port) {
                    Ok(p) => {
                        self.qemu.add_peer(path, PortId(p.id));
                        (PortId(p.id), len)
                    }
                    Err(e) => {
                        log!("dgram peer {} refused: {e}", path.display());
                        continue;
                    }
                },
            };
            self.buf.set_frame(self.qemu.frame(len));
            let (net, buf, mut io) = self.split();
            net.handle_frame(now, id, buf, &mut io);
        }
        self.dgram_more = true;
    }

    pub(super) fn save_ports(&self) {
        if let Err(e) = self.store.save_ports(&self.name, &self.saved_ports) {
            let path = self.store.ports_path(&self.name);
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
    /// after the privilege drop ([`Store::load_ports`] takes only re-attach requests).
    pub(crate) fn restore_ports(&mut self) {
        if !self.store.ports_path(&self.name).exists() {
            return;
        }
        for req in self.store.load_ports(&self.name) {
            let name = req.name.clone().unwrap_or_default();
            let (done, failed) = match req.kind {
                Some(vnet_control::PortKind::VhostUser) => (
                    "vhost-user socket taken back",
                    "vhost-user socket not taken back",
                ),
                _ => (
                    "persistent TAP re-attached",
                    "persistent TAP not re-attached",
                ),
            };
            match self.add_port(&req) {
                Ok(_) => log!("port {name}: {done}"),
                Err(e) => warn!("port {name}: {failed}: {e}"),
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
        let tap = match vnet_host::open_host_port(bridge, &cfg) {
            Ok(t) => t,
            Err(e) => {
                log!("no host port: {e}; the host reaches guests only through NAT port forwards");
                return;
            }
        };
        // not learning: the gateway's MAC stays on the gateway port
        match self.add_dev(None, Box::new(tap), false, false) {
            Ok(p) => {
                log!("host port {} ({})", p.ifname, cfg.addresses());
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
        let Some(mut port) = self.devs.remove(self.poll.registry(), id) else {
            return Err(format!("no port named {name:?}").into());
        };
        self.qemu.remove_peer(id);
        self.net.remove_port(id);
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
        let p = self.devs.get(id)?;
        let c = self.net.switch().port_counters(id)?;
        let security = self.net.switch().port_config(id).and_then(|c| c.security);
        Some(PortInfo {
            name: p.name.clone(),
            id: id.0,
            kind: p.kind(),
            ifname: p.dev.name().to_owned(),
            netns: p.dev.netns().map(|n| n.name().to_owned()),
            persistent: p.dev.is_persistent(),
            peer: p.dev.peer_state().map(str::to_owned),
            isolated: p.isolated,
            portgroup: p.portgroup.clone(),
            security: security.map(|sec| vnet_control::PortSecurityInfo {
                mac: sec.mac.map(|m| m.to_string()),
                addrs: sec
                    .addrs()
                    .map(|a| a.to_string())
                    .chain(sec.addrs6().map(|a| a.to_string()))
                    .collect(),
            }),
            macs: self.net.switch().fdb().port_len(id),
            io: p.io(),
            counters: Counters {
                rx_frames: c.rx_frames,
                rx_bytes: c.rx_bytes,
                tx_frames: c.tx_frames,
                tx_bytes: c.tx_bytes,
                flooded: c.flooded,
                drops: c
                    .drops
                    .iter()
                    .map(|(r, n)| (r.as_str(), n))
                    .chain(p.drops())
                    .filter(|(_, n)| *n > 0)
                    .map(|(k, n)| (k.to_owned(), n))
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
