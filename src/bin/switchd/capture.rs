//! Packet capture: frames as the switch sees them, streamed as pcap to a `switchctl
//! capture` connection.
//!
//! A capture costs nothing while none runs (one `is_empty` check per frame). Records
//! are appended to the connection's output buffer and flushed once per loop turn; when
//! the reader is slow and the buffer holds [`MAX_PENDING`] bytes, frames are dropped
//! and counted, never waited for.

use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use mio::Token;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use vnet_switch::PortId;

/// Bytes a capture may have waiting for its reader before frames are dropped.
pub(crate) const MAX_PENDING: usize = 8 << 20;
/// Snap length: whole GSO super-frames (64 KiB plus headers).
const SNAPLEN: u32 = 262_144;

/// The pcap bytes written so far and not yet moved to the connection.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One running capture.
pub(crate) struct Capture {
    /// The control connection it streams to.
    pub(crate) token: Token,
    /// One port (both directions), or every port (frames as they arrive).
    pub(crate) port: Option<PortId>,
    /// Frames still to capture (`--count`).
    pub(crate) remaining: Option<u64>,
    pub(crate) captured: u64,
    pub(crate) dropped: u64,
    writer: PcapWriter<Shared>,
    out: Shared,
}

impl Capture {
    /// A capture; the pcap file header is ready in [`take`](Self::take).
    pub(crate) fn new(token: Token, port: Option<PortId>, count: Option<u64>) -> io::Result<Self> {
        let out = Shared::default();
        let header = PcapHeader {
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(out.clone(), header).map_err(io::Error::other)?;
        Ok(Self {
            token,
            port,
            remaining: count,
            captured: 0,
            dropped: 0,
            writer,
            out,
        })
    }

    /// Whether a frame on `port` (`ingress`: arriving, else leaving) belongs here.
    pub(crate) fn wants(&self, port: PortId, ingress: bool) -> bool {
        self.remaining != Some(0)
            && match self.port {
                Some(p) => p == port,
                None => ingress,
            }
    }

    /// Records `frame`, unless `pending` bytes already wait for the reader.
    pub(crate) fn record(&mut self, frame: &[u8], pending: usize) {
        if pending >= MAX_PENDING {
            self.dropped += 1;
            return;
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if self
            .writer
            .write_packet(&PcapPacket::new(ts, len, frame))
            .is_ok()
        {
            self.captured += 1;
            if let Some(r) = self.remaining.as_mut() {
                *r = r.saturating_sub(1);
            }
        }
    }

    /// Moves what was written into `out` (the connection's output buffer).
    pub(crate) fn take(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.out.0.borrow_mut());
    }

    /// Whether `--count` frames were captured.
    pub(crate) fn done(&self) -> bool {
        self.remaining == Some(0)
    }
}
