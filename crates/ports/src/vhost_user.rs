//! vhost-user ports: a QEMU guest (or any vhost-user frontend, DPDK's `virtio_user`)
//! shares its memory with the switch, and frames move between the guest's virtio rings
//! and the switch with one copy and no system call per frame.
//!
//! The protocol side is rust-vmm's `vhost-user-backend`: a thread per connection reads
//! the frontend's requests (memory table, ring addresses, kick and call eventfds), a
//! worker thread waits on the rings' kick eventfds. The data path is not on those
//! threads: the worker only wakes the port's own eventfd (the descriptor the driver
//! polls), and the driver's thread, on [`Port::recv`] and [`Port::send`], takes
//! descriptor chains from the guest's TX ring and fills its RX ring itself, under the
//! ring's lock. So a frame costs the driver what a TAP read costs it, minus the system
//! call.
//!
//! What the port offers the guest: `VERSION_1`, `MRG_RXBUF`, `CSUM`/`GUEST_CSUM`,
//! `HOST_TSO4/6`, `GUEST_TSO4/6`, `EVENT_IDX`, `INDIRECT_DESC`; protocol features
//! `REPLY_ACK` and `CONFIGURE_MEM_SLOTS`. One queue pair (no `MQ`).
//!
//! Between the frontend and `vhost-user-backend` sits a relay ([`relay`]) that passes
//! the frontend's messages (and their descriptors) on, with one change: QEMU's
//! virtio-net enables its rings (`SET_VRING_ENABLE`) as soon as the guest's driver
//! picks its features, before it sends `SET_FEATURES` to the backend, and
//! `vhost-user-backend` 0.22 answers an enable before `SET_FEATURES` with an error that
//! ends the connection. The relay acknowledges such an enable itself and hands it on
//! right after `SET_FEATURES`. It also holds the frontend's socket, so the port can end
//! a connection (the backend has no way to).
//!
//! A 64 KiB TSO frame from the guest enters the switch whole, with its virtio-net
//! header; a frame for the guest goes whole when the guest negotiated the offload it
//! needs, and is checksummed or segmented in software ([`crate::soft`]) when not.
//!
//! The port outlives its connections: it listens on its socket (or, with
//! [`VhostUserPort::connect`], dials QEMU's `server=on` socket and redials), and a
//! frontend that goes away (QEMU killed, restarted) leaves the port waiting for the next
//! one, as Open vSwitch's vhost-user ports do. While no frontend is connected, frames for
//! the guest are dropped and counted.
//!
//! Robustness against the frontend: the rings are touched only while the frontend has
//! them started and enabled; descriptors outside guest memory, chains that loop or run
//! off the table, readable descriptors where the device writes, and rings that do not
//! fit guest memory end the connection with a log line (the port stays, for the next
//! connection); a guest that stops taking frames fills a bounded queue
//! ([`RX_PENDING_MAX`] frames) and then loses frames, counted.

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::Shutdown;
use std::ops::Deref;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon, VringRwLock, VringT};
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap,
};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::buf::FrameBuf;
use crate::soft;
use crate::stats::IoStats;
use crate::vnet_hdr::{VirtioNetHdr, VNET_HDR_LEN};

mod relay;

type Mem = GuestMemoryAtomic<GuestMemoryMmap<()>>;
type Vring = VringRwLock<Mem>;

/// The guest's receive queue (frames to the guest) and transmit queue.
const RX: usize = 0;
const TX: usize = 1;
const NUM_QUEUES: usize = 2;
/// The worker's event number for the port's own "hand over the rings" eventfd (the
/// numbers up to `NUM_QUEUES` (2) are the rings' and the exit event's).
const HANDOVER_EVENT: u16 = 3;

/// The largest ring a frontend may configure (QEMU's default is 256, its maximum 1024).
pub const MAX_QUEUE_SIZE: u16 = 1024;
/// Frames held for a guest that has no receive buffers posted; past it, frames are
/// dropped (`rx-ring-full`).
pub const RX_PENDING_MAX: usize = 256;
/// Buffers kept for frames waiting for receive buffers.
const FREE_MAX: usize = 32;
/// Used TX descriptors returned before the guest is told (at the latest: when the ring
/// is drained).
const TX_SIGNAL_BATCH: u32 = 64;
/// Numbers for the private backend sockets of the relays.
static BACKEND_SOCKETS: AtomicU64 = AtomicU64::new(0);
/// Smallest frame taken from a guest: the header and an Ethernet header.
const MIN_TX: usize = VNET_HDR_LEN + 14;

// virtio feature bits (virtio 1.2, §5.1.3 and §6)
const F_CSUM: u64 = 1 << 0;
const F_GUEST_CSUM: u64 = 1 << 1;
const F_GUEST_TSO4: u64 = 1 << 7;
const F_GUEST_TSO6: u64 = 1 << 8;
const F_HOST_TSO4: u64 = 1 << 11;
const F_HOST_TSO6: u64 = 1 << 12;
const F_MRG_RXBUF: u64 = 1 << 15;
const F_INDIRECT_DESC: u64 = 1 << 28;
const F_EVENT_IDX: u64 = 1 << 29;
const F_VERSION_1: u64 = 1 << 32;

/// The virtio features the port offers.
pub const FEATURES: u64 = F_VERSION_1
    | F_MRG_RXBUF
    | F_CSUM
    | F_GUEST_CSUM
    | F_HOST_TSO4
    | F_HOST_TSO6
    | F_GUEST_TSO4
    | F_GUEST_TSO6
    | F_EVENT_IDX
    | F_INDIRECT_DESC;

/// Where the port's frontend comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VhostUserMode {
    /// The port listens on the socket; QEMU connects (`-chardev socket,path=PATH`).
    Listen(PathBuf),
    /// The port connects to QEMU's socket (`-chardev socket,path=PATH,server=on`), and
    /// again after each disconnect.
    Connect(PathBuf),
    /// One connection accepted elsewhere (the network's shared vhost-user socket): the
    /// port lives as long as it does.
    Once(String),
}

impl VhostUserMode {
    /// The socket's path (for [`VhostUserMode::Once`]: its label).
    pub fn path(&self) -> &Path {
        match self {
            Self::Listen(p) | Self::Connect(p) => p,
            Self::Once(l) => Path::new(l),
        }
    }
}

/// Frames the port lost, by reason ([`crate::Port::drops`] lists them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct VhostUserDrops {
    /// Frames for the guest while no frontend was connected or its RX ring was stopped.
    rx_no_frontend: u64,
    /// Frames for the guest past [`RX_PENDING_MAX`] while it posted no buffers.
    rx_ring_full: u64,
    /// Frames for the guest larger than the buffers it posts (without `MRG_RXBUF`).
    rx_too_big: u64,
    /// Frames from the guest shorter than a header or longer than the largest frame.
    tx_malformed: u64,
    /// Connections closed because the frontend broke the rules (bad addresses, loops).
    bad_frontend: u64,
}

/// What the connection thread and the protocol's threads share with the port.
struct Shared {
    /// The port's descriptor: written on each kick of the guest and each change of
    /// the connection.
    notify: EventFd,
    /// Wakes the connection thread to stop.
    stop: EventFd,
    stopping: AtomicBool,
    /// Bumped on each connect, disconnect and feature negotiation.
    generation: AtomicU64,
    /// The virtio features the frontend acked (zero between connections).
    features: AtomicU64,
    /// Kicks the guest sent (both rings).
    kicks: AtomicU64,
    /// Connections so far.
    connections: AtomicU64,
    /// The frontend's connection, while there is one.
    conn: Mutex<Option<Conn>>,
    /// A [`VhostUserMode::Once`] port's connection has ended: the port is gone.
    finished: AtomicBool,
}

impl Shared {
    fn wake(&self) {
        let _ = self.notify.write(1);
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.wake();
    }
}

/// One frontend's rings and memory.
#[derive(Clone)]
struct Conn {
    /// Which connection of the port (counted from 1).
    id: u64,
    vrings: Vec<Vring>,
    mem: Mem,
    /// The frontend's socket (shut down to end the connection).
    front: Arc<UnixStream>,
}

impl Conn {
    /// Ring `q` (`RX` or `TX`).
    fn ring(&self, q: usize) -> Result<&Vring, Bad> {
        self.vrings
            .get(q)
            .ok_or_else(|| Bad(format!("no ring {q}")))
    }
}

/// Whether the frontend has the ring started and enabled: only then is it touched.
fn started(st: &vhost_user_backend::VringState<Mem>) -> bool {
    st.get_queue().ready() && st.is_enabled()
}

/// The `vhost-user-backend` side: answers the protocol's questions and turns kicks into
/// wake-ups of the port.
#[derive(Clone)]
struct NetBackend {
    shared: Arc<Shared>,
    handover: Arc<EventFd>,
    rings: Arc<Mutex<Option<Vec<Vring>>>>,
}

impl VhostUserBackend for NetBackend {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        usize::from(MAX_QUEUE_SIZE)
    }

    fn features(&self) -> u64 {
        FEATURES | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn acked_features(&self, features: u64) {
        self.shared.features.store(features, Ordering::Release);
        self.shared.changed();
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::REPLY_ACK | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
    }

    fn reset_device(&self) {
        self.shared.features.store(0, Ordering::Release);
        self.shared.changed();
    }

    fn set_event_idx(&self, _enabled: bool) {}

    fn update_memory(&self, _mem: Mem) -> io::Result<()> {
        // the rings read memory through the same atomic: nothing to redo but to look
        // again
        self.shared.changed();
        Ok(())
    }

    fn exit_event(&self, _thread: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn handle_event(
        &self,
        event: u16,
        _evset: EventSet,
        vrings: &[Vring],
        _thread: usize,
    ) -> io::Result<()> {
        if event == HANDOVER_EVENT {
            let _ = self.handover.read();
            if let Ok(mut r) = self.rings.lock() {
                *r = Some(vrings.to_vec());
            }
        } else {
            self.shared.kicks.fetch_add(1, Ordering::Relaxed);
            self.shared.wake();
        }
        Ok(())
    }
}

/// A port whose frames travel through a vhost-user frontend's virtio rings.
pub struct VhostUserPort {
    shared: Arc<Shared>,
    mode: VhostUserMode,
    label: String,
    thread: Option<JoinHandle<()>>,
    /// The connection as the driver's thread last looked at it.
    conn: Option<Conn>,
    /// A connection whose frontend broke the rules: not served until it ends.
    abandoned: Option<u64>,
    seen: u64,
    features: u64,
    /// The port's eventfd was read since it last reported `WouldBlock`.
    awake: bool,
    /// Used TX descriptors not yet signalled to the guest.
    tx_unsignaled: u32,
    /// Used RX descriptors not yet signalled (until [`Port::end_batch`]).
    rx_unsignaled: u32,
    /// The guest's TX kicks are off (the port is draining its ring).
    tx_quiet: bool,
    /// The guest's RX kicks are on (frames wait for buffers).
    rx_asked: bool,
    rx: RxState,
    scratch: Vec<u8>,
    stats: IoStats,
    drops: VhostUserDrops,
}

impl std::fmt::Debug for VhostUserPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostUserPort")
            .field("mode", &self.mode)
            .field("connected", &self.conn.is_some())
            .field("features", &format_args!("{:#x}", self.features))
            .finish()
    }
}

/// Why the frontend's connection is closed.
#[derive(Debug)]
struct Bad(String);

impl<E: std::fmt::Display> From<E> for Bad {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

/// What became of a frame for the guest.
enum Delivery {
    Done,
    /// No (or not enough) receive buffers posted.
    NoRoom,
    /// Larger than the buffers the guest posts.
    TooBig,
    /// No frontend, or the ring is stopped.
    NotReady,
}

/// The receive side's reusable state.
#[derive(Default)]
struct RxState {
    /// The writable descriptors of the chains taken for one frame.
    segs: Vec<(GuestAddress, usize)>,
    /// Those chains: head index and the end of their descriptors in `segs`.
    heads: Vec<(u16, usize)>,
    /// Frames (header included) waiting for receive buffers.
    pending: VecDeque<Vec<u8>>,
    /// Buffers of delivered pending frames, for the next ones (at most [`FREE_MAX`]):
    /// a guest that is slow to post buffers costs no allocation per frame.
    free: Vec<Vec<u8>>,
}

impl RxState {
    /// Keeps `f`'s storage for a later pending frame.
    fn recycle(&mut self, f: Vec<u8>) {
        if self.free.len() < FREE_MAX {
            self.free.push(f);
        }
    }
}

impl VhostUserPort {
    /// A port listening on `path` (a stale socket there is replaced; the socket is
    /// owner-only, as switchd's other sockets).
    pub fn listen(path: &Path) -> Result<Self, crate::Error> {
        Self::start(VhostUserMode::Listen(path.to_owned()))
    }

    /// A port that connects to the frontend's socket at `path` (QEMU `server=on`),
    /// retrying each second until it answers, and again after each disconnect.
    pub fn connect(path: &Path) -> Result<Self, crate::Error> {
        Self::start(VhostUserMode::Connect(path.to_owned()))
    }

    /// A port for one connection accepted by the caller (`label` names it in listings);
    /// once the frontend goes, the port reports itself gone ([`crate::ErrorClass::Gone`]).
    pub fn accepted(stream: UnixStream, label: &str) -> Result<Self, crate::Error> {
        Self::start_with(VhostUserMode::Once(label.to_owned()), Some(stream))
    }

    /// A port for `mode` ([`VhostUserMode::Once`] has no connection to serve: use
    /// [`VhostUserPort::accepted`]).
    pub fn start(mode: VhostUserMode) -> Result<Self, crate::Error> {
        Self::start_with(mode, None)
    }

    fn start_with(mode: VhostUserMode, once: Option<UnixStream>) -> Result<Self, crate::Error> {
        let err = |e: io::Error| crate::Error::VhostUser {
            path: mode.path().display().to_string(),
            source: e,
        };
        let shared = Arc::new(Shared {
            notify: EventFd::new(EFD_NONBLOCK).map_err(err)?,
            stop: EventFd::new(EFD_NONBLOCK).map_err(err)?,
            stopping: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            features: AtomicU64::new(0),
            kicks: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            conn: Mutex::new(None),
            finished: AtomicBool::new(false),
        });
        let endpoint = match &mode {
            VhostUserMode::Listen(p) => {
                // a socket left by an earlier run is replaced; one something listens on
                // (another port), and anything that is not a socket, stay
                match std::fs::symlink_metadata(p) {
                    Ok(m) if m.file_type().is_socket() => {
                        if UnixStream::connect(p).is_ok() {
                            let e = io::Error::new(ErrorKind::AddrInUse, "a socket in use");
                            return Err(err(e));
                        }
                        let _ = std::fs::remove_file(p);
                    }
                    Ok(_) => {
                        let e =
                            io::Error::new(ErrorKind::AlreadyExists, "exists and is not a socket");
                        return Err(err(e));
                    }
                    Err(_) => {}
                }
                let l = UnixListener::bind(p).map_err(err)?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
                Endpoint::Listen(l)
            }
            VhostUserMode::Connect(p) => Endpoint::Connect(p.clone()),
            VhostUserMode::Once(_) => Endpoint::Once(once),
        };
        let label = mode.path().display().to_string();
        let name = match &mode {
            VhostUserMode::Once(l) => format!("vhost-user {l}"),
            _ => format!(
                "vhost-user {}",
                mode.path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
        };
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("vhost-user".to_owned())
            .spawn(move || serve(&s, endpoint, &name))
            .map_err(err)?;
        Ok(Self {
            shared,
            mode,
            label,
            thread: Some(thread),
            conn: None,
            abandoned: None,
            seen: u64::MAX,
            features: 0,
            awake: false,
            tx_unsignaled: 0,
            rx_unsignaled: 0,
            tx_quiet: false,
            rx_asked: false,
            rx: RxState::default(),
            scratch: Vec::new(),
            stats: IoStats::default(),
            drops: VhostUserDrops::default(),
        })
    }

    /// The socket and whether the port listens or connects.
    pub fn mode(&self) -> &VhostUserMode {
        &self.mode
    }

    /// Whether a frontend is connected now.
    pub fn is_connected(&self) -> bool {
        self.shared.conn.lock().is_ok_and(|c| c.is_some())
    }

    /// The virtio features the current frontend acked (zero without one).
    pub fn acked_features(&self) -> u64 {
        self.shared.features.load(Ordering::Acquire)
    }

    /// Kicks received from the guest (both rings): how often it had to wake the switch.
    pub fn kicks(&self) -> u64 {
        self.shared.kicks.load(Ordering::Relaxed)
    }

    /// Takes in what changed since the last look (a connection came or went, features
    /// were negotiated, the memory table changed).
    fn refresh(&mut self) {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g == self.seen {
            return;
        }
        self.seen = g;
        let was = self.conn.as_ref().map(|c| c.id);
        self.conn = self.shared.conn.lock().ok().and_then(|c| c.clone());
        if self.conn.as_ref().map(|c| c.id) == self.abandoned {
            self.conn = None;
        } else {
            self.abandoned = None;
        }
        self.features = self.shared.features.load(Ordering::Acquire);
        // what was owed to the guest is told on the next batch, unless it is another
        // guest (a new connection); the kick settings are made again either way
        if self.conn.as_ref().map(|c| c.id) != was {
            self.tx_unsignaled = 0;
            self.rx_unsignaled = 0;
        }
        self.tx_quiet = false;
        self.rx_asked = false;
        if self.conn.is_none() || self.features == 0 {
            let n = self.rx.pending.len();
            self.drops.rx_no_frontend += u64::try_from(n).unwrap_or(u64::MAX);
            self.rx.pending.clear();
        }
    }

    /// Ends the current connection because the frontend broke the rules: its rings are
    /// not touched again, and the port waits for the next connection.
    fn close(&mut self, why: &Bad) -> io::Error {
        self.drops.bad_frontend += 1;
        tracing::warn!(
            "vhost-user {}: closing the frontend's connection: {}",
            self.label,
            why.0
        );
        if let Some(c) = self.conn.take() {
            let _ = c.front.shutdown(Shutdown::Both);
            self.abandoned = Some(c.id);
        }
        self.rx.pending.clear();
        io::Error::new(
            ErrorKind::ConnectionAborted,
            format!("frontend closed: {}", why.0),
        )
    }

    /// The next frame of the guest's TX ring into `buf`.
    fn pop_tx(&mut self, buf: &mut FrameBuf) -> Result<Option<usize>, Bad> {
        let Some(conn) = self.conn.as_ref() else {
            return Ok(None);
        };
        let mem = conn.mem.memory();
        let mut st = conn.ring(TX)?.get_mut();
        if !started(&st) || self.features == 0 {
            return Ok(None);
        }
        if !self.tx_quiet {
            // no kicks while the ring is being drained (without EVENT_IDX: the used
            // ring's NO_NOTIFY flag; with it, the kick index is simply not moved on)
            st.get_queue_mut().disable_notification(mem.deref())?;
            self.tx_quiet = true;
        }
        loop {
            let q = st.get_queue_mut();
            let Some(chain) = q.pop_descriptor_chain(mem.deref()) else {
                self.tx_quiet = false;
                if q.enable_notification(mem.deref())? {
                    self.tx_quiet = true;
                    st.get_queue_mut().disable_notification(mem.deref())?;
                    continue;
                }
                signal(&mut st, &mem, &mut self.tx_unsignaled, &mut self.stats)?;
                return Ok(None);
            };
            let head = chain.head_index();
            let raw = buf.raw_mut();
            let (mut n, mut more, mut long, mut count) = (0usize, false, false, 0);
            for d in chain {
                more = d.has_next();
                count += 1;
                if d.is_write_only() {
                    continue;
                }
                let len = usize::try_from(d.len()).unwrap_or(usize::MAX);
                let Some(dst) = n.checked_add(len).and_then(|end| raw.get_mut(n..end)) else {
                    long = true;
                    break;
                };
                mem.read_slice(dst, d.addr())
                    .map_err(|e| Bad(format!("TX descriptor at {:#x}: {e}", d.addr().0)))?;
                n += len;
            }
            if (more || count == 0) && !long {
                return Err(Bad(format!(
                    "TX descriptor chain {head} loops or leaves its table"
                )));
            }
            st.get_queue_mut().add_used(mem.deref(), head, 0)?;
            self.tx_unsignaled += 1;
            if self.tx_unsignaled >= TX_SIGNAL_BATCH {
                signal(&mut st, &mem, &mut self.tx_unsignaled, &mut self.stats)?;
            }
            if long || n < MIN_TX {
                self.drops.tx_malformed += 1;
                continue;
            }
            let len = n - VNET_HDR_LEN;
            buf.set_len(len);
            let mut h = buf.vnet_hdr();
            h.num_buffers = 0;
            if h.is_gso() {
                self.stats.gso_in += 1;
            }
            buf.set_vnet_hdr(&h);
            return Ok(Some(len));
        }
    }

    /// Whether a frame with header `h` can go to the guest as it is (it negotiated the
    /// offloads the header asks of it).
    fn takes_whole(&self, h: &VirtioNetHdr) -> bool {
        let f = self.features;
        let csum = h.flags & VirtioNetHdr::F_NEEDS_CSUM == 0 || f & F_GUEST_CSUM != 0;
        match h.gso_type {
            VirtioNetHdr::GSO_NONE => csum,
            VirtioNetHdr::GSO_TCPV4 => csum && f & F_GUEST_TSO4 != 0,
            VirtioNetHdr::GSO_TCPV6 => csum && f & F_GUEST_TSO6 != 0,
            _ => false,
        }
    }

    /// Sends what waits for receive buffers, in order; stops at the first that does not
    /// fit yet.
    fn flush_pending(&mut self) -> Result<(), Bad> {
        if self.rx.pending.is_empty() {
            return self.rx_quiet();
        }
        while let Some(f) = self.rx.pending.pop_front() {
            let (hdr, frame) = f.split_at(VNET_HDR_LEN.min(f.len()));
            match self.deliver(hdr, frame, &[])? {
                Delivery::NoRoom => {
                    self.rx.pending.push_front(f);
                    return Ok(());
                }
                Delivery::TooBig => self.drops.rx_too_big += 1,
                Delivery::NotReady => self.drops.rx_no_frontend += 1,
                Delivery::Done => {}
            }
            self.rx.recycle(f);
        }
        self.rx_quiet()
    }

    /// Turns the guest's RX kicks off again once nothing waits for its buffers.
    fn rx_quiet(&mut self) -> Result<(), Bad> {
        if !self.rx_asked {
            return Ok(());
        }
        self.rx_asked = false;
        let Some(conn) = self.conn.as_ref() else {
            return Ok(());
        };
        let mem = conn.mem.memory();
        conn.ring(RX)?
            .get_mut()
            .get_queue_mut()
            .disable_notification(mem.deref())?;
        Ok(())
    }

    /// One frame (`hdr`, then `head` and `tail` back to back) into the guest's RX ring,
    /// across several chains with `MRG_RXBUF`.
    fn deliver(&mut self, hdr: &[u8], head: &[u8], tail: &[u8]) -> Result<Delivery, Bad> {
        let Some(conn) = self.conn.as_ref() else {
            return Ok(Delivery::NotReady);
        };
        let mem = conn.mem.memory();
        let mut st = conn.ring(RX)?.get_mut();
        if !started(&st) || self.features == 0 {
            return Ok(Delivery::NotReady);
        }
        let mrg = self.features & F_MRG_RXBUF != 0;
        let total = VNET_HDR_LEN + head.len() + tail.len();
        let rx = &mut self.rx;
        rx.segs.clear();
        rx.heads.clear();
        let mut room = 0usize;
        let q = st.get_queue_mut();
        while room < total {
            let Some(chain) = q.pop_descriptor_chain(mem.deref()) else {
                break;
            };
            let id = chain.head_index();
            let (mut more, mut count) = (false, 0);
            for d in chain {
                more = d.has_next();
                count += 1;
                if !d.is_write_only() {
                    return Err(Bad(format!(
                        "RX chain {id} has a device-readable descriptor"
                    )));
                }
                let len = usize::try_from(d.len()).unwrap_or(0);
                rx.segs.push((d.addr(), len));
                room = room.saturating_add(len);
            }
            if more || count == 0 {
                return Err(Bad(format!(
                    "RX descriptor chain {id} loops or leaves its table"
                )));
            }
            rx.heads.push((id, rx.segs.len()));
            if !mrg {
                break;
            }
        }
        if room < total {
            let taken = rx.heads.len();
            for _ in 0..taken {
                q.go_to_previous_position();
            }
            if !mrg && taken > 0 {
                // one chain is all a frame gets: this one never fits
                return Ok(Delivery::TooBig);
            }
            // tell us when the guest posts buffers
            self.rx_asked = true;
            if q.enable_notification(mem.deref())? {
                // it did meanwhile: the caller tries again on the next wake-up
                self.shared.wake();
            }
            return Ok(Delivery::NoRoom);
        }
        let mut h = [0u8; VNET_HDR_LEN];
        let n = hdr.len().min(VNET_HDR_LEN);
        h[..n].copy_from_slice(&hdr[..n]);
        let bufs = u16::try_from(rx.heads.len()).unwrap_or(u16::MAX);
        h[10..12].copy_from_slice(&bufs.to_le_bytes());
        // scatter header, head, tail over the segments
        let mut parts = [&h[..], head, tail].into_iter().filter(|p| !p.is_empty());
        let mut cur: &[u8] = parts.next().unwrap_or_default();
        let mut start = 0;
        for &(id, end) in &rx.heads {
            let mut used = 0usize;
            for &(addr, len) in &rx.segs[start..end] {
                let mut off = 0usize;
                while off < len && !cur.is_empty() {
                    let k = (len - off).min(cur.len());
                    let at = addr
                        .checked_add(u64::try_from(off).unwrap_or(u64::MAX))
                        .ok_or_else(|| Bad(format!("RX descriptor at {:#x} overflows", addr.0)))?;
                    mem.write_slice(&cur[..k], at)
                        .map_err(|e| Bad(format!("RX descriptor at {:#x}: {e}", addr.0)))?;
                    off += k;
                    used += k;
                    cur = &cur[k..];
                    if cur.is_empty() {
                        cur = parts.next().unwrap_or_default();
                    }
                }
            }
            start = end;
            let used = u32::try_from(used).unwrap_or(u32::MAX);
            st.get_queue_mut().add_used(mem.deref(), id, used)?;
        }
        self.rx_unsignaled += 1;
        Ok(Delivery::Done)
    }

    /// Sends one frame made plain or whole; counts what was lost.
    fn send_parts(&mut self, hdr: &[u8], head: &[u8], tail: &[u8]) -> Result<(), Bad> {
        if !self.rx.pending.is_empty() {
            self.flush_pending()?;
        }
        let outcome = if self.rx.pending.is_empty() {
            self.deliver(hdr, head, tail)?
        } else {
            Delivery::NoRoom
        };
        match outcome {
            Delivery::Done => {}
            Delivery::NotReady => self.drops.rx_no_frontend += 1,
            Delivery::TooBig => self.drops.rx_too_big += 1,
            Delivery::NoRoom if self.rx.pending.len() >= RX_PENDING_MAX => {
                self.drops.rx_ring_full += 1;
            }
            Delivery::NoRoom => {
                let mut f = self.rx.free.pop().unwrap_or_default();
                f.clear();
                f.extend_from_slice(hdr);
                f.resize(VNET_HDR_LEN, 0);
                f.extend_from_slice(head);
                f.extend_from_slice(tail);
                self.rx.pending.push_back(f);
            }
        }
        Ok(())
    }

    fn send_frame(&mut self, buf: &FrameBuf) -> Result<(), Bad> {
        self.refresh();
        let h = buf.vnet_hdr();
        if self.takes_whole(&h) {
            let (hdr, frame) = buf.split();
            self.stats.count_whole(&h);
            return self.send_parts(hdr, frame, &[]);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let zero = [0u8; VNET_HDR_LEN];
        let mut failed = None;
        let made = soft::for_each_plain_parts(buf, &mut scratch, |head, tail| {
            if failed.is_none() {
                if let Err(e) = self.send_parts(&zero, head, tail) {
                    failed = Some(e);
                }
            }
        });
        self.scratch = scratch;
        if let Some(e) = failed {
            return Err(e);
        }
        match made {
            Ok(n) => self.stats.count_plain(&h, n),
            Err(_) => self.drops.tx_malformed += 1,
        }
        Ok(())
    }
}

/// Tells the guest about used descriptors, if it asked to be told (`EVENT_IDX`).
fn signal(
    st: &mut vhost_user_backend::VringState<Mem>,
    mem: &<Mem as GuestAddressSpace>::T,
    unsignaled: &mut u32,
    stats: &mut IoStats,
) -> Result<(), Bad> {
    if *unsignaled == 0 {
        return Ok(());
    }
    *unsignaled = 0;
    if st.get_queue_mut().needs_notification(mem.deref())? {
        st.signal_used_queue()?;
        stats.writes += 1;
    }
    Ok(())
}

impl AsRawFd for VhostUserPort {
    fn as_raw_fd(&self) -> RawFd {
        self.shared.notify.as_raw_fd()
    }
}

impl crate::Port for VhostUserPort {
    fn port_type(&self) -> crate::PortType {
        crate::PortType::VhostUser
    }

    fn name(&self) -> &str {
        &self.label
    }

    fn recv(&mut self, buf: &mut FrameBuf) -> io::Result<usize> {
        if self.shared.finished.load(Ordering::Acquire) {
            return Err(ErrorKind::NotConnected.into());
        }
        if !self.awake {
            // cleared before the ring is looked at: a kick after this wakes us again
            let _ = self.shared.notify.read();
            self.stats.reads += 1;
            self.awake = true;
        }
        self.refresh();
        match self.pop_tx(buf) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => {
                if let Err(e) = self.flush_pending() {
                    return Err(self.close(&e));
                }
                self.awake = false;
                Err(ErrorKind::WouldBlock.into())
            }
            Err(e) => Err(self.close(&e)),
        }
    }

    fn send(&mut self, buf: &FrameBuf) -> io::Result<()> {
        self.send_frame(buf).map_err(|e| self.close(&e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.refresh();
        if self.rx.pending.is_empty() {
            return Ok(());
        }
        // a failure closed the connection; the port itself is fine
        if let Err(e) = self.flush_pending() {
            let _ = self.close(&e);
        }
        Ok(())
    }

    fn stats(&self) -> IoStats {
        self.stats
    }

    fn batches(&self) -> bool {
        true
    }

    /// Tells the guest about the frames put in its RX ring since the last batch (if it
    /// asked to be told: `EVENT_IDX`).
    fn end_batch(&mut self) {
        if self.rx_unsignaled == 0 {
            return;
        }
        let Some(conn) = self.conn.as_ref() else {
            self.rx_unsignaled = 0;
            return;
        };
        let mem = conn.mem.memory();
        let signalled = conn.ring(RX).and_then(|r| {
            signal(
                &mut r.get_mut(),
                &mem,
                &mut self.rx_unsignaled,
                &mut self.stats,
            )
        });
        if let Err(e) = signalled {
            let _ = self.close(&e);
        }
    }

    /// A frontend that broke the rules was disconnected: the port waits for the next.
    fn classify(&self, e: &io::Error) -> crate::ErrorClass {
        match e.kind() {
            ErrorKind::NotConnected => crate::ErrorClass::Gone,
            ErrorKind::ConnectionAborted if matches!(self.mode, VhostUserMode::Once(_)) => {
                crate::ErrorClass::Gone
            }
            ErrorKind::ConnectionAborted => crate::ErrorClass::Transient,
            _ => crate::port::common_class(e),
        }
    }

    fn drops(&self) -> Vec<(&'static str, u64)> {
        let d = self.drops;
        vec![
            ("rx-no-frontend", d.rx_no_frontend),
            ("rx-ring-full", d.rx_ring_full),
            ("rx-too-big", d.rx_too_big),
            ("tx-malformed", d.tx_malformed),
            ("bad-frontend", d.bad_frontend),
        ]
    }

    fn peer_state(&self) -> Option<&'static str> {
        Some(if self.is_connected() {
            "connected"
        } else {
            match self.mode {
                VhostUserMode::Listen(_) => "listening",
                VhostUserMode::Connect(_) => "connecting",
                VhostUserMode::Once(_) => "gone",
            }
        })
    }
}

/// Ends the connection (if any) and the connection thread, and removes the socket.
impl Drop for VhostUserPort {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.shared.stop.write(1);
        let front = self
            .shared
            .conn
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.front.clone()));
        if let Some(f) = front {
            let _ = f.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let VhostUserMode::Listen(p) = &self.mode {
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// How the connection thread gets its frontends.
enum Endpoint {
    Listen(UnixListener),
    Connect(PathBuf),
    /// One connection, then the port is finished.
    Once(Option<UnixStream>),
}

/// The connection thread: one frontend after the other until the port is dropped.
fn serve(shared: &Arc<Shared>, mut endpoint: Endpoint, name: &str) {
    let mut logged_refusal = false;
    while !shared.stopping.load(Ordering::SeqCst) {
        if matches!(endpoint, Endpoint::Once(None)) {
            shared.finished.store(true, Ordering::Release);
            shared.wake();
            return;
        }
        match connection(shared, &mut endpoint, name) {
            Ok(()) => logged_refusal = false,
            Err(e) => {
                if !logged_refusal {
                    tracing::info!("{name}: {e}; trying again every second");
                    logged_refusal = true;
                }
                wait_stop(shared, Duration::from_secs(1));
            }
        }
    }
}

/// Sleeps up to `d`, less if the port is being dropped.
fn wait_stop(shared: &Shared, d: Duration) {
    let Ok(ep) = Epoll::new() else {
        std::thread::sleep(d);
        return;
    };
    let fd = shared.stop.as_raw_fd();
    let _ = ep.ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, 0));
    let mut ev = [EpollEvent::default()];
    let ms = i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
    let _ = ep.wait(ms, &mut ev);
}

/// Waits for a connection on `l`; false if the port is being dropped first.
fn wait_accept(shared: &Shared, l: &UnixListener) -> io::Result<bool> {
    let ep = Epoll::new()?;
    ep.ctl(
        ControlOperation::Add,
        shared.stop.as_raw_fd(),
        EpollEvent::new(EventSet::IN, 0),
    )?;
    ep.ctl(
        ControlOperation::Add,
        l.as_raw_fd(),
        EpollEvent::new(EventSet::IN, 1),
    )?;
    let mut ev = [EpollEvent::default(); 2];
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return Ok(false);
        }
        match ep.wait(-1, &mut ev) {
            Ok(n) => {
                if ev[..n].iter().any(|e| e.data() == 1) {
                    return Ok(!shared.stopping.load(Ordering::SeqCst));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Serves one frontend, from its connection to its end.
fn connection(shared: &Arc<Shared>, endpoint: &mut Endpoint, name: &str) -> Result<(), String> {
    let handover = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|e| e.to_string())?);
    let rings = Arc::new(Mutex::new(None));
    let backend = NetBackend {
        shared: shared.clone(),
        handover: handover.clone(),
        rings: rings.clone(),
    };
    let mem: Mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
    let mut daemon = VhostUserDaemon::new(name.to_owned(), backend, mem.clone())
        .map_err(|e| format!("cannot start the backend: {e}"))?;
    // the rings live as long as the daemon: its worker hands them over at once
    for h in daemon.get_epoll_handlers() {
        h.register_listener(
            handover.as_raw_fd(),
            EventSet::IN,
            u64::from(HANDOVER_EVENT),
        )
        .map_err(|e| format!("cannot reach the backend's worker: {e}"))?;
    }
    handover.write(1).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let vrings = loop {
        if let Some(v) = rings.lock().ok().and_then(|mut r| r.take()) {
            break v;
        }
        if Instant::now() > deadline {
            return Err("the backend's worker did not start".to_owned());
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let front = match endpoint {
        Endpoint::Listen(l) => {
            if !wait_accept(shared, l).map_err(|e| format!("accept: {e}"))? {
                return Ok(());
            }
            l.accept().map_err(|e| format!("accept: {e}"))?.0
        }
        Endpoint::Connect(p) => UnixStream::connect(&*p)
            .map_err(|e| format!("cannot connect to {}: {e}", p.display()))?,
        Endpoint::Once(s) => s.take().ok_or("no connection")?,
    };
    // the backend's end of the relay: a socket pair would do, but the daemon only
    // accepts on a listener, so a private one (a 0700 directory of its own)
    let back = {
        let seq = BACKEND_SOCKETS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vnet-vhost-{}-{seq}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let path = dir.join("backend.sock");
        let made = (|| -> Result<UnixStream, String> {
            let mut l = Listener::from(UnixListener::bind(&path).map_err(|e| e.to_string())?);
            let back = UnixStream::connect(&path).map_err(|e| e.to_string())?;
            daemon.start(&mut l).map_err(|e| e.to_string())?;
            Ok(back)
        })();
        let _ = std::fs::remove_dir_all(&dir);
        made.map_err(|e| format!("starting the backend: {e}"))?
    };
    let front = Arc::new(front);
    let relays = match relay::start(front.clone(), back) {
        Ok(r) => r,
        Err(e) => {
            let _ = front.shutdown(Shutdown::Both);
            let _ = daemon.wait();
            return Err(format!("starting the relay: {e}"));
        }
    };
    let id = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
    if let Ok(mut c) = shared.conn.lock() {
        *c = Some(Conn {
            id,
            vrings,
            mem,
            front: front.clone(),
        });
    }
    shared.changed();
    tracing::info!("{name}: frontend connected");
    if shared.stopping.load(Ordering::SeqCst) {
        let _ = front.shutdown(Shutdown::Both);
    }
    let relayed = relays.join();
    let end = match (relayed, daemon.wait()) {
        (Err(e), _) => format!("frontend disconnected ({e})"),
        (Ok(()), Err(e)) => format!("frontend disconnected (backend: {e})"),
        (Ok(()), Ok(())) => "frontend disconnected".to_owned(),
    };
    if let Ok(mut c) = shared.conn.lock() {
        *c = None;
    }
    shared.features.store(0, Ordering::Release);
    shared.changed();
    tracing::info!("{name}: {end}");
    Ok(())
}
