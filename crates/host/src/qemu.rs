//! The sockets QEMU guests attach to without a TAP: a stream socket (`-netdev stream`,
//! a port per connection), a datagram socket (`-netdev dgram`, a port per peer socket
//! path) and a vhost-user socket (`-netdev vhost-user`, a port per connection);
//! switchd's are `<run-dir>/<network>.stream`, `.dgram` and `.vhost-user`. All three are
//! owner-only, like the control socket; a driver opens them to a group
//! with its control socket.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};

use mio::unix::SourceFd;
use mio::{Interest, Registry};
use vnet_ports::{DgramPort, StreamPort, VhostUserPort};
use vnet_switch::PortId;

use crate::{Error, Source};

/// A datagram read by [`QemuSockets::recv`]; its frame is [`QemuSockets::frame`].
#[derive(Debug)]
pub enum Datagram {
    /// From the peer of port `PortId`, `usize` bytes.
    Known(PortId, usize),
    /// From a peer with no port yet: add `port` named `name`, then
    /// [`QemuSockets::add_peer`] its id for `path`.
    New {
        /// `dgram-N`.
        name: String,
        /// The port that sends to the peer.
        port: Box<DgramPort>,
        /// The peer's socket path.
        path: PathBuf,
        /// The frame's length.
        len: usize,
    },
}

/// The stream listener and the datagram socket of a network.
#[derive(Debug)]
pub struct QemuSockets {
    stream: UnixListener,
    vhost_user: UnixListener,
    dgram: UnixDatagram,
    peers: HashMap<PathBuf, PortId>,
    buf: Vec<u8>,
    /// Numbers for the names of socket ports (`stream-N`, `dgram-N`).
    next: u64,
}

/// Binds `path` (a stale socket from a crashed run removed first), non-blocking and
/// owner-only.
fn bind<S: AsRawFd>(
    path: &Path,
    registry: &Registry,
    source: Source,
    bind: impl FnOnce(&Path) -> io::Result<S>,
) -> Result<S, Error> {
    let what = || format!("binding {}", path.display());
    let _ = std::fs::remove_file(path);
    let s = bind(path).map_err(|e| Error::io(what(), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| {
            registry.register(
                &mut SourceFd(&s.as_raw_fd()),
                source.token(),
                Interest::READABLE,
            )
        })
        .map_err(|e| Error::io(what(), e))?;
    Ok(s)
}

/// The next connection waiting on `l` (`what` names the socket in the log); `None`
/// once none waits, or if accepting fails.
fn accept(l: &UnixListener, what: &str) -> Option<std::os::unix::net::UnixStream> {
    loop {
        match l.accept() {
            Ok((s, _)) => return Some(s),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("{what} socket: accept failed: {e}");
                return None;
            }
        }
    }
}

impl QemuSockets {
    /// Binds the stream socket at `stream`, the datagram socket at `dgram` and the
    /// vhost-user socket at `vhost_user`, and registers them ([`Source::StreamListener`],
    /// [`Source::Dgram`], [`Source::VhostUserListener`]).
    pub fn open(
        stream: &Path,
        dgram: &Path,
        vhost_user: &Path,
        registry: &Registry,
    ) -> Result<Self, Error> {
        let listen = |p: &Path| {
            let l = UnixListener::bind(p)?;
            l.set_nonblocking(true)?;
            Ok(l)
        };
        let stream = bind(stream, registry, Source::StreamListener, listen)?;
        let vhost_user = bind(vhost_user, registry, Source::VhostUserListener, listen)?;
        let dgram = bind(dgram, registry, Source::Dgram, |p| {
            let d = UnixDatagram::bind(p)?;
            d.set_nonblocking(true)?;
            Ok(d)
        })?;
        Ok(Self {
            stream,
            vhost_user,
            dgram,
            peers: HashMap::new(),
            buf: vec![0; vnet_ports::MAX_FRAME_LEN],
            next: 0,
        })
    }

    /// The next connection on the stream socket, as a port to add and its name
    /// (`stream-N`); `None` once none waits.
    pub fn accept(&mut self) -> Option<(String, StreamPort)> {
        loop {
            let sock = accept(&self.stream, "stream")?;
            match StreamPort::new(sock) {
                Ok(p) => {
                    self.next += 1;
                    return Some((format!("stream-{}", self.next), p));
                }
                Err(e) => tracing::info!("stream socket: {e}"),
            }
        }
    }

    /// The next connection on the vhost-user socket, as a port to add and its name
    /// (`vhost-user-N`); the port goes when its frontend does. `None` once none waits.
    pub fn accept_vhost_user(&mut self) -> Option<(String, VhostUserPort)> {
        loop {
            let sock = accept(&self.vhost_user, "vhost-user")?;
            self.next += 1;
            let name = format!("vhost-user-{}", self.next);
            let made = sock
                .set_nonblocking(false)
                .map_err(|e| e.to_string())
                .and_then(|()| VhostUserPort::accepted(sock, &name).map_err(|e| e.to_string()));
            match made {
                Ok(p) => return Some((name, p)),
                Err(e) => tracing::info!("vhost-user socket: {e}"),
            }
        }
    }

    /// The next datagram with a frame from a bound sender; `None` once none waits.
    /// Runts and unbound senders (they cannot be answered) are skipped.
    pub fn recv(&mut self) -> Option<Datagram> {
        loop {
            let (n, from) = match self.dgram.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(_) => continue,
            };
            let Some(path) = from.as_pathname() else {
                continue;
            };
            if n < 14 {
                continue;
            }
            if let Some(id) = self.peers.get(path) {
                return Some(Datagram::Known(*id, n));
            }
            match DgramPort::new(path.to_owned()) {
                Ok(port) => {
                    self.next += 1;
                    return Some(Datagram::New {
                        name: format!("dgram-{}", self.next),
                        port: Box::new(port),
                        path: path.to_owned(),
                        len: n,
                    });
                }
                Err(e) => tracing::info!("dgram peer {}: cannot reach it: {e}", path.display()),
            }
        }
    }

    /// The first `len` bytes of the last datagram.
    pub fn frame(&self, len: usize) -> &[u8] {
        self.buf.get(..len).unwrap_or_default()
    }

    /// Frames from `path` enter port `id` from now on.
    pub fn add_peer(&mut self, path: PathBuf, id: PortId) {
        self.peers.insert(path, id);
    }

    /// Port `id` is gone: a new datagram from its peer makes a new port.
    pub fn remove_peer(&mut self, id: PortId) {
        self.peers.retain(|_, p| *p != id);
    }
}
