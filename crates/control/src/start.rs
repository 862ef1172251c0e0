//! A network's start and stop as they touch the [`Store`]: the definition a crashed run
//! left, the gateway MAC kept across runs, the checks and the control socket taken
//! under the start lock, the files handed to the user switchd drops to, the
//! persistent ports a restart takes back, and what a stop removes.
//!
//! ```text
//! STATE_DIR/macs/NAME            the gateway MAC generated for a network without <mac>
//! RUN_DIR/NAME.stream            QEMU -netdev stream socket
//! RUN_DIR/NAME.dgram             QEMU -netdev dgram socket
//! RUN_DIR/NAME.ports.json        persistent TAPs to re-attach after a crash
//! ```

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use vnet_config::Network;

use crate::store::{create_private_dir, write_atomic, Store, DIR_MODE};
use crate::PortAdd;

/// Why a network may not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A switchd answers on its control socket already.
    #[error("network {name:?} is already running (control socket {})", socket.display())]
    Running {
        /// The network.
        name: String,
        /// Its control socket.
        socket: PathBuf,
    },
    /// Its IPv4 addresses overlap a running network's.
    #[error("network {name:?} overlaps running network {other:?}: {why}")]
    Overlap {
        /// The network.
        name: String,
        /// The running one.
        other: String,
        /// Which addresses.
        why: String,
    },
    /// A file or socket of the run dir could not be used.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: String) -> impl FnOnce(io::Error) -> StartError {
    move |source| StartError::Io { what, source }
}

impl Store {
    /// The QEMU `-netdev stream` socket of network `name`.
    pub fn stream_socket_path(&self, name: &str) -> PathBuf {
        self.socket_path(name).with_extension("stream")
    }

    /// The QEMU `-netdev vhost-user` socket of network `name` (a port per connection).
    pub fn vhost_user_socket_path(&self, name: &str) -> PathBuf {
        self.socket_path(name).with_extension("vhost-user")
    }

    /// The QEMU `-netdev dgram` socket of network `name`.
    pub fn dgram_socket_path(&self, name: &str) -> PathBuf {
        self.socket_path(name).with_extension("dgram")
    }

    /// Where network `name`'s persistent ports are listed.
    pub fn ports_path(&self, name: &str) -> PathBuf {
        self.socket_path(name).with_extension("ports.json")
    }

    /// Where the gateway MAC generated for network `name` is kept.
    pub fn mac_path(&self, name: &str) -> PathBuf {
        self.state_dir().join("macs").join(name)
    }

    /// Checks `network` against the running ones, runs `prepare` (opening what must
    /// open before the network is announced), takes its control socket (owner-only) and
    /// publishes its live definition; all under the run dir's start lock, so two
    /// networks starting at once cannot both pass the checks.
    pub fn claim<T, E: From<StartError>>(
        &self,
        network: &Network,
        prepare: impl FnOnce() -> Result<T, E>,
    ) -> Result<(T, mio::net::UnixListener), E> {
        let name = network.name();
        let socket = self.socket_path(name);
        let lock_path = self.start_lock_path();
        let lock = std::fs::File::create(&lock_path)
            .map_err(io_err(format!("opening {}", lock_path.display())))?;
        lock.lock()
            .map_err(io_err(format!("locking {}", lock_path.display())))?;
        if self.is_running(name) {
            return Err(StartError::Running {
                name: name.to_owned(),
                socket,
            }
            .into());
        }
        let running = self
            .running_names()
            .map_err(io_err("listing running networks".into()))?;
        for other in running {
            let Some(other_net) = self
                .read_live(&other)
                .ok()
                .flatten()
                .and_then(|xml| Network::from_xml(&xml).ok())
            else {
                continue;
            };
            if let Some(why) = vnet_config::ipv4_overlap(network, &other_net) {
                let name = name.to_owned();
                return Err(StartError::Overlap { name, other, why }.into());
            }
        }
        let prepared = prepare()?;
        match std::fs::remove_file(&socket) {
            Ok(()) => tracing::info!("removed stale control socket {}", socket.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("removing {}", socket.display()))(e).into()),
        }
        let listener = mio::net::UnixListener::bind(&socket).map_err(io_err(format!(
            "binding control socket {}",
            socket.display()
        )))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(format!("restricting {}", socket.display())))?;
        self.save_live(name, &network.to_xml())
            .map_err(io_err("writing the live definition".into()))?;
        drop(lock);
        Ok((prepared, listener))
    }

    /// Lets the members of group `gid` use network `name`'s sockets (control, QEMU
    /// stream and dgram): group-owned, mode 0660; the run dir group-searchable.
    pub fn grant_group(&self, name: &str, gid: u32) -> io::Result<()> {
        let ctx = |p: &Path, what: &str| {
            let p = p.display().to_string();
            let what = what.to_owned();
            move |e: io::Error| io::Error::new(e.kind(), format!("{what} {p}: {e}"))
        };
        // the group must reach the sockets in the (owner-only) run dir: search, no read
        let run_dir = self.run_dir();
        std::os::unix::fs::chown(run_dir, None, Some(gid)).map_err(ctx(run_dir, "chown"))?;
        std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o710))
            .map_err(ctx(run_dir, "chmod"))?;
        for p in [
            self.socket_path(name),
            self.stream_socket_path(name),
            self.dgram_socket_path(name),
            self.vhost_user_socket_path(name),
        ] {
            std::os::unix::fs::chown(&p, None, Some(gid)).map_err(ctx(&p, "chown"))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o660))
                .map_err(ctx(&p, "chmod"))?;
        }
        Ok(())
    }

    /// Removes what a running network `name` publishes in the run dir: its sockets and
    /// its live definition (the persistent ports' list stays, for the next run).
    pub fn release(&self, name: &str) {
        for p in [
            self.socket_path(name),
            self.stream_socket_path(name),
            self.dgram_socket_path(name),
            self.vhost_user_socket_path(name),
            self.live_path(name),
        ] {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Takes, instead of `network`, the live definition a run of this network that did
    /// not stop (a crash, `kill -9`) left in the run dir: it holds the live changes
    /// (`--live` port forwards, DHCP hosts, DNS records) the definition does not. Only
    /// when it is the same network (name, and uuid when both have one), and when it was
    /// written by another user than `euid` (a run that dropped to `--user`) only if it
    /// asks for nothing a privileged start does on its behalf beyond what the
    /// definition asks: see [`privileged_change`].
    pub fn recover_live(&self, network: &mut Network, euid: u32) {
        let name = network.name().to_owned();
        if self.is_running(&name) {
            return; // the start refuses a second one
        }
        let Ok(Some(xml)) = self.read_live(&name) else {
            return;
        };
        let path = self.live_path(&name);
        let foreign =
            std::fs::metadata(&path).is_ok_and(|m| m.uid() != euid || m.mode() & 0o022 != 0);
        match Network::from_xml(&xml) {
            Ok(live)
                if live.name() == name
                    && (live.uuid().is_none()
                        || network.uuid().is_none()
                        || live.uuid() == network.uuid()) =>
            {
                if foreign {
                    if let Some(what) = privileged_change(network, &live) {
                        tracing::warn!(
                            "ignoring the live definition {}: written by another user, it changes {what}, which only the definition may",
                            path.display()
                        );
                        return;
                    }
                }
                tracing::info!("network {name:?}: taking the live definition its last run left (it did not stop cleanly)");
                *network = live;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("ignoring the live definition a crashed run left: {e}"),
        }
    }

    /// Gives a network without `<mac>` the gateway MAC it had the first time it ran
    /// (generated then and kept under `macs/`): its guests' ARP caches stay right across
    /// restarts. `net-define` persists its own.
    pub fn keep_mac(&self, network: &mut Network) -> io::Result<()> {
        if network.mac().is_some() {
            return Ok(());
        }
        let path = self.mac_path(network.name());
        if let Some(mac) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<vnet_config::MacAddr>().ok())
        {
            network.set_mac(mac);
            return Ok(());
        }
        network.fill_defaults(&[]);
        match network.mac() {
            Some(mac) => write_atomic(&path, format!("{mac}\n").as_bytes()).map_err(|e| {
                let what = format!("saving the generated MAC to {}: {e}", path.display());
                io::Error::new(e.kind(), what)
            }),
            None => Ok(()),
        }
    }

    /// Makes the state subdirectories an older vnet made 0755 owner-only (0700), when
    /// they are `euid`'s.
    pub fn tighten_state_dirs(&self, euid: u32) {
        for sub in ["networks", "autostart", "leases", "macs"] {
            let p = self.state_dir().join(sub);
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() && m.uid() == euid && m.mode() & 0o077 != 0 {
                match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(DIR_MODE)) {
                    Ok(()) => tracing::info!("{}: made owner-only", p.display()),
                    Err(e) => tracing::warn!("{}: cannot make it owner-only: {e}", p.display()),
                }
            }
        }
    }

    /// Hands the state subdirectories a privileged start made (and the files in them
    /// that a running network rewrites) to `uid`:`gid`, so network `name` can still
    /// compact its lease database and save its MAC once it runs as that user.
    pub fn hand_over_state(&self, name: &str, uid: u32, gid: u32) -> io::Result<()> {
        let state = self.state_dir();
        for p in [
            state.join("leases"),
            state.join("leases").join(format!("{name}.leases")),
            state.join("macs"),
            self.mac_path(name),
        ] {
            match std::os::unix::fs::chown(&p, Some(uid), Some(gid)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    let what = format!("giving {} to uid {uid}: {e}", p.display());
                    return Err(io::Error::new(e.kind(), what));
                }
            }
        }
        Ok(())
    }

    /// Saves network `name`'s persistent ports, as the requests that re-attach them.
    pub fn save_ports(&self, name: &str, ports: &[PortAdd]) -> io::Result<()> {
        let data = serde_json::to_vec_pretty(ports).map_err(io::Error::other)?;
        write_atomic(&self.ports_path(name), &data)
    }

    /// The persistent ports network `name` saved (none without the file). Only
    /// re-attaching a persistent TAP, or a vhost-user port's socket, is taken: any other
    /// entry (the file is written by the running network, so by the user it runs as) is
    /// left out with a warning.
    pub fn load_ports(&self, name: &str) -> Vec<PortAdd> {
        let path = self.ports_path(name);
        let Ok(data) = std::fs::read(&path) else {
            return Vec::new();
        };
        let saved: Vec<PortAdd> = match serde_json::from_slice(&data) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("ignoring {}: {e}", path.display());
                return Vec::new();
            }
        };
        saved
            .into_iter()
            .filter(|req| {
                let tap = req.persistent
                    && req.attach
                    && matches!(req.kind, None | Some(crate::PortKind::Tap));
                // a vhost-user port: a socket to listen on (or dial) again
                let vhost = req.kind == Some(crate::PortKind::VhostUser)
                    && req.netns.is_none()
                    && req.ifname.is_none();
                let ok = tap || vhost;
                if !ok {
                    tracing::warn!(
                        "port {}: not restored: {} records only persistent TAPs to re-attach and vhost-user sockets",
                        req.name.as_deref().unwrap_or_default(),
                        path.display()
                    );
                }
                ok
            })
            .collect()
    }
}

/// Makes each of `dirs` (the state and run dirs) a private directory (0700), with
/// what failed in the error.
pub fn create_dirs(dirs: &[&Path]) -> io::Result<()> {
    for d in dirs {
        create_private_dir(d)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", d.display())))?;
    }
    Ok(())
}

/// What of `live` a privileged start would act on with its privileges and `def` does
/// not ask for: the forward mode and interfaces (uplinks opened with AF_PACKET), the
/// bridge name (the host TAP), the addresses and MTU, TFTP roots, and port forwards to
/// host ports below 1024. `None` when they agree.
pub fn privileged_change(def: &Network, live: &Network) -> Option<&'static str> {
    if def.forward_mode() != live.forward_mode()
        || def.forward().interfaces != live.forward().interfaces
    {
        return Some("<forward>");
    }
    if def.bridge_name() != live.bridge_name() {
        return Some("<bridge name>");
    }
    if def.mtu() != live.mtu() {
        return Some("<mtu>");
    }
    let addrs = |n: &Network| -> Vec<_> {
        n.ips()
            .iter()
            .map(|ip| (ip.address, ip.prefix_len(), ip.tftp_root.clone()))
            .collect()
    };
    if addrs(def) != addrs(live) {
        return Some("<ip>");
    }
    let low = |n: &Network| -> Vec<_> {
        n.port_forwards()
            .iter()
            .filter(|f| f.port < 1024)
            .cloned()
            .collect()
    };
    let def_low = low(def);
    if low(live).iter().any(|f| !def_low.contains(f)) {
        return Some("<vnet:port-forward> below port 1024");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(xml: &str) -> Network {
        Network::from_xml(xml).expect("valid network")
    }

    const DEF: &str = "<network><name>n</name><forward mode='nat'/>\
        <ip address='10.9.0.1' netmask='255.255.255.0'/></network>";

    #[test]
    fn a_live_definition_that_widens_privilege_is_named() {
        let def = net(DEF);
        assert_eq!(privileged_change(&def, &def), None);
        let routed = net("<network><name>n</name><forward mode='route' dev='eth0'/>\
            <ip address='10.9.0.1' netmask='255.255.255.0'/></network>");
        assert_eq!(privileged_change(&def, &routed), Some("<forward>"));
        let moved = net("<network><name>n</name><forward mode='nat'/>\
            <ip address='10.8.0.1' netmask='255.255.255.0'/></network>");
        assert_eq!(privileged_change(&def, &moved), Some("<ip>"));
    }

    #[test]
    fn saved_ports_keep_only_persistent_taps() {
        let dir = std::env::temp_dir().join(format!("vnet-start-{}", std::process::id()));
        let store = Store::new(&dir.join("state"), &dir.join("run"));
        create_dirs(&[store.run_dir(), store.state_dir()]).expect("dirs");
        let tap = PortAdd {
            name: Some("vm1".into()),
            persistent: true,
            attach: true,
            ..PortAdd::default()
        };
        let netdev = PortAdd {
            name: Some("eth9".into()),
            kind: Some(crate::PortKind::Netdev),
            persistent: true,
            attach: true,
            ..PortAdd::default()
        };
        store.save_ports("n", &[tap, netdev]).expect("save");
        let back = store.load_ports("n");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].name.as_deref(), Some("vm1"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
