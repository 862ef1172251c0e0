//! Writer threads: TAP writes off the main loop.
//!
//! A TAP write runs the receiving guest's network stack inside the system call (the
//! kernel hands the frame to the guest's sockets, wakes its readers and sends its ACKs
//! before returning), so on the main loop one guest pair's two directions take turns
//! on one CPU. With writer threads the loop still reads every port, decides and runs
//! the gateway; a frame for a TAP port is handed to the thread that owns that port
//! (ports are spread over the threads), which writes it through its own descriptor of
//! the device. One queue per thread and one thread per port keep each port's frames
//! in order.
//!
//! Buffers move, they are not copied: a unicast frame's buffer goes to the writer and
//! the loop takes a free one back (copied only for a flood's extra copies). Each
//! queue holds [`QUEUE`] frames; when it is full the loop waits for room (up to
//! [`STALL`], then the frame is dropped and counted), so a guest that sends faster
//! than its peer takes frames is slowed, not dropped. Buffers exist only as frames are in flight
//! (at most [`QUEUE`] per thread plus a few free), so an idle switch holds none.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{FrameBuf, IoStats, Tap};
use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender};

/// Frames queued per writer thread.
pub const QUEUE: usize = 128;
/// How long the loop waits for room in a writer's queue before it drops the frame (a
/// writer stuck that long is not keeping up at all).
const STALL: Duration = Duration::from_millis(50);

/// What a port's writer did, read by the loop for `port-list` and `stats`.
#[derive(Debug, Default)]
pub struct WriterStats {
    writes: AtomicU64,
    gso_out: AtomicU64,
    segmented: AtomicU64,
    segments: AtomicU64,
    csums: AtomicU64,
    /// Writes that failed.
    pub failed: AtomicU64,
    /// Frames dropped because the thread's queue was full (or no buffer was free).
    pub queue_full: AtomicU64,
}

impl WriterStats {
    fn publish(&self, s: &IoStats) {
        self.writes.store(s.writes, Relaxed);
        self.gso_out.store(s.gso_out, Relaxed);
        self.segmented.store(s.segmented, Relaxed);
        self.segments.store(s.segments, Relaxed);
        self.csums.store(s.csums, Relaxed);
    }

    /// Adds the writer's counters to `s` (the loop's own handle counts the reads).
    pub fn add_to(&self, s: &mut IoStats) {
        s.writes += self.writes.load(Relaxed);
        s.gso_out += self.gso_out.load(Relaxed);
        s.segmented += self.segmented.load(Relaxed);
        s.segments += self.segments.load(Relaxed);
        s.csums += self.csums.load(Relaxed);
    }
}

#[derive(Debug)]
enum Msg {
    Add(u64, Tap, Arc<WriterStats>),
    /// Close the port's descriptor, then say so.
    Remove(u64, Sender<()>),
    Frame(u64, FrameBuf),
}

/// A port served by a writer thread.
#[derive(Debug)]
pub struct WriterPort {
    thread: usize,
    slot: u64,
    /// What its writer did (shared with the thread).
    pub stats: Arc<WriterStats>,
}

/// The writer threads of one network.
#[derive(Debug)]
pub struct Writers {
    queues: Vec<Sender<Msg>>,
    /// Ports per thread, to place a new port on the least loaded one.
    load: Vec<usize>,
    free: Receiver<FrameBuf>,
    free_tx: Sender<FrameBuf>,
    allocated: usize,
    max_buffers: usize,
    next_slot: u64,
    threads: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Starts `n` writer threads.
    pub fn new(n: usize) -> io::Result<Self> {
        let max_buffers = n * QUEUE + 16;
        let (free_tx, free) = bounded(max_buffers);
        let mut queues = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = bounded(QUEUE);
            let back = free_tx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("writer-{i}"))
                    .spawn(move || run(&rx, &back))?,
            );
            queues.push(tx);
        }
        Ok(Self {
            queues,
            load: vec![0; n],
            free,
            free_tx,
            allocated: 0,
            max_buffers,
            next_slot: 0,
            threads,
        })
    }

    /// Hands a TAP to a writer thread (through a second descriptor of the device).
    pub fn add(&mut self, tap: &Tap) -> io::Result<WriterPort> {
        let thread = (0..self.load.len())
            .min_by_key(|&i| self.load[i])
            .unwrap_or(0);
        let slot = self.next_slot;
        self.next_slot += 1;
        let stats = Arc::new(WriterStats::default());
        let q = self
            .queues
            .get(thread)
            .ok_or_else(|| io::Error::other("no writer thread"))?;
        q.send(Msg::Add(slot, tap.try_clone()?, stats.clone()))
            .map_err(|_| io::Error::other("writer thread gone"))?;
        if let Some(l) = self.load.get_mut(thread) {
            *l += 1;
        }
        Ok(WriterPort {
            thread,
            slot,
            stats,
        })
    }

    /// Takes a port from its writer: its queued frames are written, then its
    /// descriptor closed, before this returns (so a device that goes with its last
    /// descriptor is gone).
    pub fn remove(&mut self, p: &WriterPort) {
        let (tx, rx) = bounded(1);
        if let Some(q) = self.queues.get(p.thread) {
            if q.send(Msg::Remove(p.slot, tx)).is_ok() {
                let _ = rx.recv_timeout(Duration::from_secs(5));
            }
        }
        if let Some(l) = self.load.get_mut(p.thread) {
            *l = l.saturating_sub(1);
        }
    }

    /// Queues the frame in `buf` for port `p`. With `take`, the buffer itself goes and
    /// `buf` gets a free one (its content is then undefined); else the frame is copied.
    /// Returns false when the frame was dropped (queue full).
    pub fn submit(&mut self, p: &WriterPort, buf: &mut FrameBuf, take: bool) -> bool {
        let Some(q) = self.queues.get(p.thread) else {
            return false;
        };
        let spare = self.free.try_recv().ok().or_else(|| {
            (self.allocated < self.max_buffers).then(|| {
                self.allocated += 1;
                FrameBuf::new()
            })
        });
        // every buffer is queued or being written: wait for one to come back
        let Some(mut spare) = spare.or_else(|| self.free.recv_timeout(STALL).ok()) else {
            p.stats.queue_full.fetch_add(1, Relaxed);
            return false;
        };
        if take {
            std::mem::swap(buf, &mut spare);
        } else {
            spare.copy_from(buf);
        }
        // a full queue holds the loop back (as a write on the loop would) rather than
        // dropping: the reading port waits, and its guest's stack sees backpressure
        match q.send_timeout(Msg::Frame(p.slot, spare), STALL) {
            Ok(()) => true,
            Err(SendTimeoutError::Timeout(Msg::Frame(_, b)))
            | Err(SendTimeoutError::Disconnected(Msg::Frame(_, b))) => {
                let _ = self.free_tx.try_send(b);
                p.stats.queue_full.fetch_add(1, Relaxed);
                false
            }
            Err(_) => false,
        }
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.queues.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run(rx: &Receiver<Msg>, free: &Sender<FrameBuf>) {
    let mut ports: HashMap<u64, (Tap, Arc<WriterStats>)> = HashMap::new();
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Frame(slot, buf) => {
                if let Some((tap, stats)) = ports.get_mut(&slot) {
                    if tap.send(&buf).is_err() {
                        stats.failed.fetch_add(1, Relaxed);
                    }
                    stats.publish(&tap.stats());
                }
                let _ = free.try_send(buf);
            }
            Msg::Add(slot, tap, stats) => {
                ports.insert(slot, (tap, stats));
            }
            Msg::Remove(slot, done) => {
                ports.remove(&slot);
                let _ = done.send(());
            }
        }
    }
}
