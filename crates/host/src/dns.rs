//! The sockets forwarded DNS queries leave from.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;

use mio::net::UdpSocket;
use mio::{Interest, Registry};

use crate::Source;

/// UDP sockets on ephemeral ports, one per family: queries the DNS server forwards go
/// out of the one of the upstream's family, and the upstream servers' answers come back
/// on it.
#[derive(Debug)]
pub struct DnsUpstream {
    sock: UdpSocket,
    /// The IPv6 socket (`None` where the host has IPv6 off): upstreams at IPv6
    /// addresses (a `nameserver` line of an IPv6 address, a `<forwarder addr>`).
    sock6: Option<UdpSocket>,
}

impl DnsUpstream {
    /// Binds the sockets (`0.0.0.0:0`, and `[::]:0` where the host has IPv6).
    pub fn open() -> io::Result<Self> {
        let sock = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0)))?;
        let sock6 = UdpSocket::bind(SocketAddr::from(([0u16; 8], 0))).ok();
        Ok(Self { sock, sock6 })
    }

    /// Registers them for reading, as [`Source::DnsUpstream`].
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(
            &mut self.sock,
            Source::DnsUpstream.token(),
            Interest::READABLE,
        )?;
        if let Some(s) = self.sock6.as_mut() {
            registry.register(s, Source::DnsUpstream.token(), Interest::READABLE)?;
        }
        Ok(())
    }

    /// Sends one query. A failed send (no route to the upstream, no IPv6 socket) is
    /// not reported: the query times out and the server tries the next upstream.
    pub fn send(&self, to: SocketAddr, payload: &[u8]) {
        let sock = match to {
            SocketAddr::V4(_) => Some(&self.sock),
            SocketAddr::V6(_) => self.sock6.as_ref(),
        };
        if let Some(s) = sock {
            let _ = s.send_to(payload, to);
        }
    }

    /// Hands every answer waiting on the sockets to `answer` (sender, payload), until
    /// they have no more.
    pub fn recv_all(&self, mut answer: impl FnMut(SocketAddr, &[u8])) {
        let mut buf = [0u8; 4096];
        for sock in std::iter::once(&self.sock).chain(self.sock6.as_ref()) {
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => answer(from, buf.get(..n).unwrap_or_default()),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // ICMP errors (port unreachable) surface here; the query times out
                    Err(_) => {}
                }
            }
        }
    }
}
