//! The socket forwarded DNS queries leave from.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;

use mio::net::UdpSocket;
use mio::{Interest, Registry};

use crate::Source;

/// One UDP socket on an ephemeral port: queries the DNS server forwards go out of it,
/// and the upstream servers' answers come back on it.
#[derive(Debug)]
pub struct DnsUpstream {
    sock: UdpSocket,
}

impl DnsUpstream {
    /// Binds the socket (`0.0.0.0:0`).
    pub fn open() -> io::Result<Self> {
        let sock = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0)))?;
        Ok(Self { sock })
    }

    /// Registers it for reading, as [`Source::DnsUpstream`].
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(
            &mut self.sock,
            Source::DnsUpstream.token(),
            Interest::READABLE,
        )
    }

    /// Sends one query. A failed send (no route to the upstream) is not reported: the
    /// query times out and the server tries the next upstream.
    pub fn send(&self, to: SocketAddr, payload: &[u8]) {
        let _ = self.sock.send_to(payload, to);
    }

    /// Hands every answer waiting on the socket to `answer` (sender, payload), until
    /// the socket has no more.
    pub fn recv_all(&self, mut answer: impl FnMut(SocketAddr, &[u8])) {
        let mut buf = [0u8; 4096];
        loop {
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => answer(from, buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // ICMP errors (port unreachable) surface here; the query times out
                Err(_) => {}
            }
        }
    }
}
