//! QEMU socket ports: `-netdev stream` (a unix stream connection, each frame preceded
//! by its length as 4 big-endian bytes) and `-netdev dgram` (unix datagrams, one frame
//! each).
//!
//! Both carry plain Ethernet frames: no virtio-net header, no offloads. Frames read get
//! an all-zero header; frames sent are made plain first ([`crate::soft`]: checksums
//! completed, TSO/USO frames segmented). A stream port buffers what the peer has not
//! taken yet up to [`STREAM_TX_MAX`] bytes and drops (and counts) frames past that, so
//! a stalled QEMU never makes the switch buffer without bound; a length beyond
//! [`MAX_FRAME_LEN`] is a protocol error that ends the connection.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};

use crate::buf::{FrameBuf, MAX_FRAME_LEN};
use crate::soft;
use crate::stats::IoStats;
use crate::sys;

/// Bytes a stream port holds for a peer that is not reading.
pub const STREAM_TX_MAX: usize = 1 << 20;
/// Smallest frame a peer may send (an Ethernet header).
const MIN_FRAME_LEN: usize = 14;

/// A QEMU `-netdev stream` connection.
#[derive(Debug)]
pub struct StreamPort {
    sock: UnixStream,
    rx: Vec<u8>,
    rx_start: usize,
    tx: Vec<u8>,
    tx_start: usize,
    scratch: Vec<u8>,
    tx_dropped: u64,
    soft_errors: u64,
    stats: IoStats,
    label: String,
}

impl StreamPort {
    /// A port on an accepted connection (made non-blocking here).
    pub fn new(sock: UnixStream) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        Ok(Self {
            label: "stream".to_owned(),
            sock,
            rx: Vec::with_capacity(128 * 1024),
            rx_start: 0,
            tx: Vec::new(),
            tx_start: 0,
            scratch: Vec::new(),
            tx_dropped: 0,
            soft_errors: 0,
            stats: IoStats::default(),
        })
    }

    /// Names what the port is connected to (listings show it as the interface).
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// What the port is connected to (`stream` unless [`with_label`](Self::with_label)
    /// said otherwise).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The next frame from the peer into `buf`. `WouldBlock` when no whole frame is
    /// there yet; `UnexpectedEof` when the peer closed; `InvalidInput` for a length
    /// beyond the bound (the caller ends the connection).
    pub fn recv(&mut self, buf: &mut FrameBuf) -> io::Result<usize> {
        loop {
            let have = &self.rx[self.rx_start..];
            if let Some(l) = have.get(..4) {
                let len = usize::try_from(u32::from_be_bytes([l[0], l[1], l[2], l[3]]))
                    .unwrap_or(usize::MAX);
                if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&len) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("frame length {len} outside {MIN_FRAME_LEN}..={MAX_FRAME_LEN}"),
                    ));
                }
                if let Some(frame) = have.get(4..4 + len) {
                    buf.set_frame(frame);
                    self.rx_start += 4 + len;
                    if self.rx_start == self.rx.len() {
                        self.rx.clear();
                        self.rx_start = 0;
                    }
                    return Ok(len);
                }
            }
            if self.rx_start > 0 {
                self.rx.drain(..self.rx_start);
                self.rx_start = 0;
            }
            let old = self.rx.len();
            self.rx.resize(old + 64 * 1024, 0);
            self.stats.reads += 1;
            let r = self.sock.read(&mut self.rx[old..]);
            match r {
                Ok(0) => {
                    self.rx.truncate(old);
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => self.rx.truncate(old + n),
                Err(e) => {
                    self.rx.truncate(old);
                    return Err(e);
                }
            }
        }
    }

    /// Queues the frame in `buf` (made plain) and writes what the peer takes.
    /// Frames that do not fit [`STREAM_TX_MAX`] are dropped and counted.
    pub fn send(&mut self, buf: &FrameBuf) -> io::Result<()> {
        let Self {
            tx,
            tx_start,
            scratch,
            tx_dropped,
            ..
        } = self;
        let r = soft::for_each_plain_parts(buf, scratch, |head, tail| {
            let len = head.len() + tail.len();
            if tx.len() - *tx_start + 4 + len > STREAM_TX_MAX {
                *tx_dropped += 1;
                return;
            }
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            tx.extend_from_slice(&len.to_be_bytes());
            tx.extend_from_slice(head);
            tx.extend_from_slice(tail);
        });
        match r {
            Ok(made) => self.stats.count_plain(&buf.vnet_hdr(), made),
            Err(_) => self.soft_errors += 1,
        }
        self.flush()
    }

    /// Writes queued bytes until the peer stops taking them. Call when the socket
    /// becomes writable.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.tx_start < self.tx.len() {
            self.stats.writes += 1;
            match self.sock.write(&self.tx[self.tx_start..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.tx_start += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.tx_start == self.tx.len() {
            self.tx.clear();
            self.tx_start = 0;
        } else if self.tx_start > STREAM_TX_MAX / 2 {
            self.tx.drain(..self.tx_start);
            self.tx_start = 0;
        }
        Ok(())
    }

    /// Frames dropped because the peer did not read (its buffer was full).
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped
    }

    /// Frames that could not be made plain (unknown offload).
    pub fn soft_errors(&self) -> u64 {
        self.soft_errors
    }

    /// What the connection did so far.
    pub fn stats(&self) -> IoStats {
        self.stats
    }
}

impl AsRawFd for StreamPort {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// Frames a dgram port holds for a peer whose receive queue is full.
pub const DGRAM_TX_MAX: usize = 1024;
/// Sent frames' buffers a dgram port keeps for the next frames that have to wait.
const DGRAM_SPARE: usize = 64;

/// One QEMU `-netdev dgram` peer, by the path its socket is bound to. Frames from the
/// peer arrive on the network's shared datagram socket (the caller reads it and finds
/// the port by the sender's path); frames to the peer leave through a socket of the
/// port's own, connected to the peer, so that a full peer queue (unix datagram queues
/// are short: `net.unix.max_dgram_qlen`, 10 by default) shows as the socket not being
/// writable: frames wait in a bounded queue and go when the peer has read.
#[derive(Debug)]
pub struct DgramPort {
    sock: UnixDatagram,
    peer: PathBuf,
    queue: std::collections::VecDeque<Vec<u8>>,
    /// Buffers of frames that went, for frames that have to wait.
    spare: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    tx_dropped: u64,
    soft_errors: u64,
    stats: IoStats,
    label: String,
}

impl DgramPort {
    /// A port for the peer bound at `peer`. Fails when the peer's socket cannot be
    /// reached (gone, or not writable for this user).
    pub fn new(peer: PathBuf) -> io::Result<Self> {
        let sock = UnixDatagram::unbound()?;
        sock.connect(&peer)?;
        sock.set_nonblocking(true)?;
        Ok(Self {
            label: peer.display().to_string(),
            sock,
            peer,
            queue: std::collections::VecDeque::new(),
            spare: Vec::new(),
            scratch: Vec::new(),
            tx_dropped: 0,
            soft_errors: 0,
            stats: IoStats::default(),
        })
    }

    /// The peer's socket path.
    pub fn peer(&self) -> &Path {
        &self.peer
    }

    /// What listings show as the port's interface (the peer's path unless
    /// [`with_label`](Self::with_label) said otherwise).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Names the port for listings.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Sends the frame in `buf` (made plain), or queues it while the peer's queue is
    /// full. An error other than `WouldBlock` means the peer is gone (`ECONNREFUSED`,
    /// `ENOENT`): the caller removes the port.
    ///
    /// A frame goes straight from `buf` (headers and payload in one `writev`, no copy)
    /// unless frames already wait; only a frame that has to wait is copied, into a
    /// buffer reused once it has gone.
    pub fn send(&mut self, buf: &FrameBuf) -> io::Result<()> {
        let Self {
            sock,
            queue,
            spare,
            scratch,
            tx_dropped,
            stats,
            ..
        } = self;
        let mut gone = None;
        let r = soft::for_each_plain_parts(buf, scratch, |head, tail| {
            if gone.is_some() {
                return;
            }
            if queue.is_empty() {
                stats.writes += 1;
                match sys::writev2(sock.as_fd(), head, tail) {
                    Ok(_) => return,
                    // a full peer queue (or a signal): the frame waits
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => {
                        gone = Some(e);
                        return;
                    }
                }
            }
            if queue.len() >= DGRAM_TX_MAX {
                *tx_dropped += 1;
            } else {
                let mut f = spare.pop().unwrap_or_default();
                f.clear();
                f.extend_from_slice(head);
                f.extend_from_slice(tail);
                queue.push_back(f);
            }
        });
        match r {
            Ok(made) => self.stats.count_plain(&buf.vnet_hdr(), made),
            Err(_) => self.soft_errors += 1,
        }
        if let Some(e) = gone {
            self.queue.clear();
            return Err(e);
        }
        if self.queue.is_empty() {
            Ok(())
        } else {
            self.flush()
        }
    }

    /// Sends queued frames until the peer's queue is full. Call when the socket
    /// becomes writable.
    pub fn flush(&mut self) -> io::Result<()> {
        while let Some(f) = self.queue.front() {
            self.stats.writes += 1;
            match self.sock.send(f) {
                Ok(_) => {
                    if let Some(f) = self.queue.pop_front() {
                        if self.spare.len() < DGRAM_SPARE {
                            self.spare.push(f);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.queue.clear();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Frames waiting for the peer to read.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Frames dropped because the peer did not read (the queue was full).
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped
    }

    /// Frames that could not be made plain (unknown offload).
    pub fn soft_errors(&self) -> u64 {
        self.soft_errors
    }

    /// What the port's socket did so far (its peer's frames are read on the
    /// network's shared socket, not counted here).
    pub fn stats(&self) -> IoStats {
        self.stats
    }
}

impl AsRawFd for DgramPort {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, n, 0x02, 0, 0, 0, 0, 0xff, 0x88, 0xb5];
        f.extend_from_slice(&[n; 50]);
        f
    }

    #[test]
    fn stream_frames_in_pieces_and_out_with_lengths() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut port = StreamPort::new(a).unwrap();
        let mut buf = FrameBuf::new();
        assert_eq!(
            port.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // one frame in two writes, then two frames in one write
        let mut wire = Vec::new();
        for n in 1..=3 {
            let f = frame(n);
            wire.extend_from_slice(&u32::try_from(f.len()).unwrap().to_be_bytes());
            wire.extend_from_slice(&f);
        }
        b.write_all(&wire[..10]).unwrap();
        assert_eq!(
            port.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        b.write_all(&wire[10..]).unwrap();
        for n in 1..=3 {
            assert_eq!(port.recv(&mut buf).unwrap(), 64);
            assert_eq!(buf.frame(), frame(n));
        }
        // out: length-prefixed
        port.send(&FrameBuf::from_frame(&frame(9))).unwrap();
        let mut got = [0u8; 68];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got[..4], &64u32.to_be_bytes());
        assert_eq!(&got[4..], &frame(9)[..]);
        // a length beyond the bound is an error; the peer closing is end of file
        b.write_all(&0x0010_0000u32.to_be_bytes()).unwrap();
        assert_eq!(
            port.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        drop(b);
        let (a, b) = UnixStream::pair().unwrap();
        let mut port = StreamPort::new(a).unwrap();
        drop(b);
        assert_eq!(
            port.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn dgram_frames_wait_for_a_full_peer_and_arrive_in_order() {
        let dir = std::env::temp_dir().join(format!("vnet-dgram-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("peer.sock");
        let _ = std::fs::remove_file(&path);
        let peer = UnixDatagram::bind(&path).unwrap();
        let mut port = DgramPort::new(path.clone()).unwrap();
        for n in 0..100u8 {
            port.send(&FrameBuf::from_frame(&frame(n))).unwrap();
        }
        // the peer's queue took some; the rest wait
        assert!(!port.queue.is_empty());
        let mut got = Vec::new();
        let mut b = [0u8; 2048];
        peer.set_nonblocking(true).unwrap();
        while got.len() < 100 {
            while let Ok(n) = peer.recv(&mut b) {
                got.push(b[5]);
                assert_eq!(n, 64);
            }
            port.flush().unwrap();
        }
        assert_eq!(got, (0..100u8).collect::<Vec<_>>());
        // the peer goes: the next send reports it
        drop(peer);
        let _ = std::fs::remove_file(&path);
        assert!(port.send(&FrameBuf::from_frame(&frame(1))).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_peer_that_does_not_read_costs_a_bounded_buffer() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut port = StreamPort::new(a).unwrap();
        let big = FrameBuf::from_frame(&vec![0u8; 1500]);
        for _ in 0..10_000 {
            port.send(&big).unwrap();
        }
        assert!(port.tx.len() - port.tx_start <= STREAM_TX_MAX);
        assert!(port.tx_dropped() > 0);
    }
}
