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

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

/// Bytes a capture may have waiting for its reader before frames are dropped.
pub const MAX_PENDING: usize = 8 << 20;
/// Snap length: whole GSO super-frames (64 KiB plus headers).
const SNAPLEN: u32 = 262_144;

/// The pcap bytes written so far and not yet moved to the connection.
#[derive(Clone, Default, Debug)]
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

/// One running capture, of the frames of one port (`P` names ports, as the switch
/// does) or of every port.
#[derive(Debug)]
pub struct Capture<P> {
    /// One port (both directions), or every port (frames as they arrive).
    pub port: Option<P>,
    /// Frames still to capture (`--count`).
    pub remaining: Option<u64>,
    /// Frames recorded.
    pub captured: u64,
    /// Frames dropped because the reader was too slow.
    pub dropped: u64,
    writer: PcapWriter<Shared>,
    out: Shared,
}

impl<P: Copy + PartialEq> Capture<P> {
    /// A capture; the pcap file header is ready in [`take`](Self::take).
    pub fn new(port: Option<P>, count: Option<u64>) -> io::Result<Self> {
        let out = Shared::default();
        let header = PcapHeader {
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(out.clone(), header).map_err(io::Error::other)?;
        Ok(Self {
            port,
            remaining: count,
            captured: 0,
            dropped: 0,
            writer,
            out,
        })
    }

    /// Whether a frame on `port` (`ingress`: arriving, else leaving) belongs here.
    pub fn wants(&self, port: P, ingress: bool) -> bool {
        self.remaining != Some(0)
            && match self.port {
                Some(p) => p == port,
                None => ingress,
            }
    }

    /// Records `frame`, unless `pending` bytes already wait for the reader.
    pub fn record(&mut self, frame: &[u8], pending: usize) {
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
    pub fn take(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.out.0.borrow_mut());
    }

    /// Whether `--count` frames were captured.
    pub fn done(&self) -> bool {
        self.remaining == Some(0)
    }
}
