//! The devices behind a network's ports, as a driver's loop holds them: each port's
//! [`Port`] (a TAP, an interface through AF_PACKET, a QEMU stream or dgram peer), its
//! registration in the loop, its writer thread, and the queue of ports with frames
//! waiting.
//!
//! The network (`vnet_network::Network`) numbers ports; this table keeps, under the same
//! [`PortId`], what the network does not know: the descriptor, the name, the counters of
//! the I/O. A driver reads a ready port with [`Devices::read`], hands each frame to the
//! network, and sends the network's output with [`Devices::transmit`].

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering::Relaxed;

use mio::unix::SourceFd;
use mio::{Interest, Registry};
use vnet_control::{IoCounters, PortKind};
use vnet_ports::writers::{WriterPort, Writers};
use vnet_ports::{Drain, ErrorClass, FrameBuf, Port, PortType, Step};
use vnet_switch::PortId;

use crate::Source;

/// One port's device and what the driver keeps about it.
#[derive(Debug)]
pub struct Device {
    /// The port's name (`port-list`).
    pub name: String,
    /// The device.
    pub dev: Box<dyn Port>,
    /// Kept from the other isolated ports (`<port isolated>`).
    pub isolated: bool,
    /// The `<portgroup>` it joined.
    pub portgroup: Option<String>,
    /// In the ready queue (readable, not yet drained to `EAGAIN`).
    ready: bool,
    /// Its interface was reported down (logged once until a frame arrives again).
    down_logged: bool,
    /// The writer thread that writes its frames (a TAP, with writer threads on).
    writer: Option<WriterPort>,
    /// Its device batches ([`Port::batches`], asked once: it is a kind's property).
    batches: bool,
    /// Sent to in this turn, and its device batches ([`Port::end_batch`] is due).
    in_batch: bool,
}

impl Device {
    /// A device not yet in a table.
    pub fn new(
        name: String,
        dev: Box<dyn Port>,
        isolated: bool,
        portgroup: Option<String>,
    ) -> Self {
        Self {
            batches: dev.batches(),
            name,
            dev,
            isolated,
            portgroup,
            ready: false,
            down_logged: false,
            writer: None,
            in_batch: false,
        }
    }

    /// What `port-list` calls its kind.
    pub fn kind(&self) -> PortKind {
        match self.dev.port_type() {
            PortType::Packet => PortKind::Netdev,
            PortType::Stream => PortKind::Stream,
            PortType::Dgram => PortKind::Dgram,
            PortType::VhostUser => PortKind::VhostUser,
            _ => PortKind::Tap,
        }
    }

    /// Its I/O counters, its writer thread's included.
    pub fn io(&self) -> IoCounters {
        let mut s = self.dev.stats();
        if let Some(w) = &self.writer {
            w.stats.add_to(&mut s);
        }
        IoCounters {
            reads: s.reads,
            writes: s.writes,
            gso_in: s.gso_in,
            gso_out: s.gso_out,
            segmented: s.segmented,
            segments: s.segments,
            csums: s.csums,
        }
    }

    /// Frames lost in its I/O, by reason (`port-list` shows them beside the switch's
    /// drops): `rx-overflow`, `tx-writer-failed`, `tx-queue-full`, and the device's own
    /// ([`Port::drops`]).
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        let w = |f: fn(&vnet_ports::writers::WriterStats) -> u64| {
            self.writer.as_ref().map_or(0, |w| f(&w.stats))
        };
        let mut v = vec![
            ("rx-overflow", self.dev.rx_overflows()),
            ("tx-writer-failed", w(|s| s.failed.load(Relaxed))),
            ("tx-queue-full", w(|s| s.queue_full.load(Relaxed))),
        ];
        v.extend(self.dev.drops());
        v
    }
}

/// What [`Devices::read`] did.
#[derive(Debug)]
pub enum Read {
    /// A frame is in the buffer: hand it to the network.
    Frame,
    /// Nothing more this turn: `true` once the port is drained (`EAGAIN`), `false`
    /// when the budget ran out first (it stays in the ready queue).
    Done(bool),
    /// The device failed for good (its peer left, its interface was deleted): remove
    /// the port.
    Gone(io::Error),
}

/// The devices of a network's ports, by [`PortId`].
#[derive(Debug, Default)]
pub struct Devices {
    slots: Vec<Option<Device>>,
    ready: VecDeque<PortId>,
    writers: Option<Writers>,
    /// Ports whose peer went away on a send (dgram), to remove at the end of the turn.
    gone: Vec<String>,
    /// Ports sent to this turn whose devices batch ([`Devices::end_batch`]).
    batch: Vec<PortId>,
}

impl Devices {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many ports have a device.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// No port has a device.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The devices, by port.
    pub fn iter(&self) -> impl Iterator<Item = (PortId, &Device)> {
        self.slots.iter().enumerate().filter_map(|(i, d)| {
            let id = PortId(u16::try_from(i).ok()?);
            Some((id, d.as_ref()?))
        })
    }

    /// The device of port `id`.
    pub fn get(&self, id: PortId) -> Option<&Device> {
        self.slots.get(id.index())?.as_ref()
    }

    /// The device of port `id`, to change.
    pub fn get_mut(&mut self, id: PortId) -> Option<&mut Device> {
        self.slots.get_mut(id.index())?.as_mut()
    }

    /// The port named `name`.
    pub fn by_name(&self, name: &str) -> Option<PortId> {
        self.iter()
            .find_map(|(id, d)| (d.name == name).then_some(id))
    }

    /// The name of port `id`, else its number.
    pub fn name(&self, id: PortId) -> String {
        self.get(id)
            .map_or_else(|| id.to_string(), |d| d.name.clone())
    }

    /// Registers `dev` in the loop (as [`Source::Port`]) under port `id`, hands it to a
    /// writer thread when it is a TAP without offloads and writer threads run, and
    /// queues it as ready: frames may already wait (their edge came before the
    /// registration).
    pub fn insert(&mut self, registry: &Registry, id: PortId, mut dev: Device) -> io::Result<()> {
        let r = dev.dev.readiness();
        let interest = match (r.readable, r.writable) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (false, true) => Interest::WRITABLE,
            _ => Interest::READABLE,
        };
        registry.register(
            &mut SourceFd(&dev.dev.as_raw_fd()),
            Source::Port(id.index()).token(),
            interest,
        )?;
        if let (Some(tap), Some(w)) = (dev.dev.as_tap(), self.writers.as_mut()) {
            if !tap.takes_offloads() {
                match w.add(tap) {
                    Ok(wp) => dev.writer = Some(wp),
                    Err(e) => tracing::warn!(
                        "port {}: no writer thread ({e}); written from the loop",
                        dev.name
                    ),
                }
            }
        }
        if self.slots.len() <= id.index() {
            self.slots.resize_with(id.index() + 1, || None);
        }
        if let Some(slot) = self.slots.get_mut(id.index()) {
            *slot = Some(dev);
        }
        self.mark_ready(id.index());
        Ok(())
    }

    /// Takes port `id`'s device out of the table and the loop.
    pub fn remove(&mut self, registry: &Registry, id: PortId) -> Option<Device> {
        let mut d = self.slots.get_mut(id.index())?.take()?;
        let _ = registry.deregister(&mut SourceFd(&d.dev.as_raw_fd()));
        self.ready.retain(|p| *p != id);
        if let (Some(wp), Some(w)) = (d.writer.take(), self.writers.as_mut()) {
            w.remove(&wp);
        }
        Some(d)
    }

    /// Starts `n` writer threads and hands them the TAPs without offloads, those
    /// inserted later too: each frame written to such a TAP is one segment of the
    /// guest's traffic, so their writes cost the most per byte. A TAP with offloads
    /// takes 64 KiB frames, and handing each to a thread costs more than it saves
    /// (docs/performance.md), so the loop writes those itself.
    pub fn start_writers(&mut self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let mut w = Writers::new(n)?;
        for d in self.slots.iter_mut().flatten() {
            if let Some(tap) = d.dev.as_tap() {
                if !tap.takes_offloads() {
                    d.writer = Some(w.add(tap)?);
                }
            }
        }
        self.writers = Some(w);
        Ok(())
    }

    /// Queues the port of loop token index `index` as ready (its readiness event came).
    pub fn mark_ready(&mut self, index: usize) {
        let Ok(id) = u16::try_from(index) else { return };
        if let Some(Some(d)) = self.slots.get_mut(index) {
            if !d.ready {
                d.ready = true;
                self.ready.push_back(PortId(id));
            }
        }
    }

    /// Some port waits to be read.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The ports ready now, in order (each is read once in a round; see
    /// [`Devices::finish`]). The count is taken before the round: a port put back by
    /// `finish` is read in the next one.
    pub fn ready_round(&self) -> usize {
        self.ready.len()
    }

    /// The next ready port.
    pub fn pop_ready(&mut self) -> Option<PortId> {
        self.ready.pop_front()
    }

    /// After reading port `id`: out of the ready queue once `drained`, else back at its
    /// end.
    pub fn finish(&mut self, id: PortId, drained: bool) {
        if let Some(Some(d)) = self.slots.get_mut(id.index()) {
            if drained {
                d.ready = false;
            } else {
                self.ready.push_back(id);
            }
        }
    }

    /// Sends what port `id` still holds back (a stream's partial frame). An error means
    /// the port is unusable.
    pub fn flush(&mut self, id: PortId) -> io::Result<()> {
        let Some(Some(d)) = self.slots.get_mut(id.index()) else {
            return Ok(());
        };
        if d.batches && !d.in_batch {
            d.in_batch = true;
            self.batch.push(id);
        }
        d.dev.flush()
    }

    /// Ends the turn's batch on each port sent to that batches ([`Port::end_batch`]: a
    /// vhost-user guest is told once about everything the turn gave it). Called by the
    /// driver at the end of each turn of its loop.
    pub fn end_batch(&mut self) {
        for id in std::mem::take(&mut self.batch) {
            if let Some(Some(d)) = self.slots.get_mut(id.index()) {
                d.in_batch = false;
                d.dev.end_batch();
            }
        }
    }

    /// Reads the next frame of port `id` into `buf`, within `drain`'s budget. A port
    /// whose interface went down is logged once, and once more when frames flow again.
    pub fn read(&mut self, id: PortId, drain: &mut Drain, buf: &mut FrameBuf) -> Read {
        loop {
            let Some(d) = self.get_mut(id) else {
                return Read::Done(true);
            };
            match drain.next(d.dev.as_mut(), buf) {
                None => return Read::Done(drain.drained()),
                Some(Step::Frame) => {
                    if d.down_logged {
                        d.down_logged = false;
                        tracing::info!("port {}: frames flow again", d.name);
                    }
                    return Read::Frame;
                }
                Some(Step::Transient(e)) => {
                    if !d.down_logged {
                        d.down_logged = true;
                        tracing::info!("port {}: {e}; waiting for it to come back", d.name);
                    }
                }
                Some(Step::Gone(e)) => return Read::Gone(e),
                Some(_) => {}
            }
        }
    }

    /// Sends the frame in `buf` out of port `egress` (through its writer thread, which
    /// drops and counts it when its queue is full; `take` lets it have the buffer).
    /// Returns false when the send failed; a dgram peer that is gone is noted for
    /// [`Devices::take_gone`].
    pub fn transmit(&mut self, egress: PortId, buf: &mut FrameBuf, take: bool) -> bool {
        let Some(Some(d)) = self.slots.get_mut(egress.index()) else {
            return true;
        };
        if let (Some(wp), Some(w)) = (&d.writer, self.writers.as_mut()) {
            w.submit(wp, buf, take);
            return true;
        }
        if d.batches && !d.in_batch {
            d.in_batch = true;
            self.batch.push(egress);
        }
        match d.dev.send(buf) {
            Ok(_) => true,
            Err(e) => {
                if d.dev.port_type() == PortType::Dgram
                    && d.dev.classify(&e) == ErrorClass::Gone
                    && !self.gone.contains(&d.name)
                {
                    self.gone.push(d.name.clone());
                }
                false
            }
        }
    }

    /// The ports whose peer went away since the last call (to remove).
    pub fn take_gone(&mut self) -> Vec<String> {
        std::mem::take(&mut self.gone)
    }
}
