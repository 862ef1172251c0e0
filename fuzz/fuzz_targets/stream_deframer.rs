//! Byte chunks written into one end of a `UnixStream::pair()` whose other end is a
//! `vnet_ports::StreamPort` (the QEMU `-netdev stream` deframer: 4-byte big-endian
//! length, then the frame), with `recv` called until `WouldBlock` after every chunk.
//!
//! Checked against a model deframer over everything written so far: every frame
//! returned has a length in 14..=`MAX_FRAME_LEN` and is exactly the next frame of the
//! model; `WouldBlock` comes only when the model has no whole frame left; a length out
//! of bounds is `InvalidInput` exactly when the model reaches it, and ends the case (the
//! caller drops the connection). When the writer closes, the port hands over the whole
//! frames left and then reports end of file, never `WouldBlock`.
//!
//! The writer is non-blocking: a chunk larger than the socket buffer is written in
//! pieces with the port drained in between.
//!
//! `cargo +nightly fuzz run stream_deframer` (from `fuzz/`).

#![no_main]

use std::io::{ErrorKind, Write};
use std::os::unix::net::UnixStream;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vnet_ports::{FrameBuf, StreamPort, MAX_FRAME_LEN};

const MIN_FRAME_LEN: usize = 14;

#[derive(Debug, Arbitrary)]
enum Chunk {
    /// Any bytes at all.
    Raw(Vec<u8>),
    /// A length prefix and that many bytes (up to a little past the bound), so long
    /// frames are reached without a long input; `cut` leaves the frame short.
    Frame { len: u32, fill: u8, cut: u16 },
    /// The writer shuts down: what is left is read and the port reports end of file.
    Close,
}

/// What the port must do with the bytes written so far.
#[derive(Default)]
struct Model {
    wire: Vec<u8>,
    at: usize,
}

enum Next {
    Frame(usize),
    Partial,
    Invalid,
}

impl Model {
    fn next(&self) -> Next {
        let have = &self.wire[self.at..];
        let Some(l) = have.get(..4) else {
            return Next::Partial;
        };
        let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
        if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&len) {
            return Next::Invalid;
        }
        if have.len() < 4 + len {
            return Next::Partial;
        }
        Next::Frame(len)
    }
}

struct Case {
    port: StreamPort,
    buf: FrameBuf,
    model: Model,
}

impl Case {
    /// Calls `recv` until it stops handing frames out. Returns whether the case is over
    /// (`InvalidInput`, or end of file after `closed`).
    fn drain(&mut self, closed: bool) -> bool {
        loop {
            match self.port.recv(&mut self.buf) {
                Ok(n) => {
                    assert!(
                        (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&n),
                        "frame of {n} bytes"
                    );
                    assert_eq!(self.buf.frame().len(), n);
                    let Next::Frame(len) = self.model.next() else {
                        panic!("a frame of {n} bytes where the model has none");
                    };
                    assert_eq!(n, len, "frame length");
                    let start = self.model.at + 4;
                    assert!(
                        self.buf.frame() == &self.model.wire[start..start + len],
                        "frame contents"
                    );
                    self.model.at = start + len;
                    if self.model.at == self.model.wire.len() {
                        self.model.wire.clear();
                        self.model.at = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(!closed, "WouldBlock after the peer closed");
                    assert!(
                        !matches!(self.model.next(), Next::Frame(_)),
                        "WouldBlock with a whole frame written"
                    );
                    assert!(
                        !matches!(self.model.next(), Next::Invalid),
                        "WouldBlock with a bad length written"
                    );
                    return false;
                }
                Err(e) if e.kind() == ErrorKind::InvalidInput => {
                    assert!(
                        matches!(self.model.next(), Next::Invalid),
                        "InvalidInput without a bad length: {e}"
                    );
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                    assert!(closed, "end of file while the peer is open");
                    assert!(
                        matches!(self.model.next(), Next::Partial),
                        "end of file before the frames written were read"
                    );
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
    }
}

fuzz_target!(|chunks: Vec<Chunk>| {
    let (port_end, mut writer) = UnixStream::pair().expect("socketpair");
    writer.set_nonblocking(true).expect("non-blocking");
    let mut case = Case {
        port: StreamPort::new(port_end).expect("port"),
        buf: FrameBuf::new(),
        model: Model::default(),
    };
    for chunk in chunks.into_iter().take(64) {
        let bytes = match chunk {
            Chunk::Raw(b) => b,
            Chunk::Frame { len, fill, cut } => {
                let mut b = len.to_be_bytes().to_vec();
                let body = (len as usize).min(MAX_FRAME_LEN + 16);
                b.resize(4 + body.saturating_sub(usize::from(cut % 64)), fill);
                b
            }
            Chunk::Close => {
                drop(writer);
                case.drain(true);
                return;
            }
        };
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            match writer.write(rest) {
                Ok(n) => {
                    case.model.wire.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                }
                // The socket buffer is full: the port reads it empty below.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("write: {e}"),
            }
            if case.drain(false) {
                return;
            }
        }
        if case.drain(false) {
            return;
        }
    }
});
