//! A vhost-user port driven by a frontend written here with the `vhost` crate's
//! frontend side (what QEMU does, in a test): guest memory in a file both sides map,
//! rings laid out by hand, descriptors written as bytes. Frames cross both ways; and a
//! frontend that misbehaves — descriptors outside its memory, a chain that loops, a
//! disconnect with a frame posted, a guest that posts no receive buffers — costs its
//! own connection at most, never the port.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vhost::vhost_user::Frontend;
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemory, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use vnet_ports::vhost_user::VhostUserPort;
use vnet_ports::{ErrorClass, FrameBuf, Port, VNET_HDR_LEN};

const MEM: usize = 1 << 20;
const QSIZE: u16 = 16;
const F_VERSION_1: u64 = 1 << 32;
const F_MRG_RXBUF: u64 = 1 << 15;
const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;

/// Ring `q`'s descriptor table, available ring, used ring (guest addresses).
fn ring(q: usize) -> (u64, u64, u64) {
    let base = 0x1000 * (1 + 4 * q as u64);
    (base, base + 0x1000, base + 0x2000)
}

/// Where buffer `i` of ring `q` lives (4 KiB each).
fn buf_addr(q: usize, i: u16) -> u64 {
    0x20000 + 0x10000 * q as u64 + 0x1000 * u64::from(i)
}

/// A file of [`MEM`] bytes for guest memory, already unlinked (both sides map it).
fn memory_file() -> std::fs::File {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("vnet-vu-mem-{}-{n}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    file.set_len(MEM as u64).unwrap();
    file
}

/// A frontend and its guest's memory.
struct Guest {
    fe: Frontend,
    mem: GuestMemoryMmap,
    kicks: [EventFd; 2],
    _calls: [EventFd; 2],
    avail: [u16; 2],
    _file: std::fs::File,
}

impl Guest {
    fn connect(sock: &Path) -> Self {
        let deadline = Instant::now() + Duration::from_secs(5);
        let fe = loop {
            match Frontend::connect(sock, 2) {
                Ok(f) => break f,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot connect: {e}"),
            }
        };
        Self::attach(fe)
    }

    /// Sets up guest memory and both rings over `fe`.
    fn attach(fe: Frontend) -> Self {
        let file = memory_file();
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(0),
            MEM,
            Some(FileOffset::new(file.try_clone().unwrap(), 0)),
        )])
        .unwrap();
        let va = mem.get_host_address(GuestAddress(0)).unwrap() as u64;
        fe.set_owner().unwrap();
        let offered = fe.get_features().unwrap();
        assert_eq!(offered & F_VERSION_1, F_VERSION_1);
        // no protocol features: the rings start enabled with SET_FEATURES
        fe.set_features(F_VERSION_1 | F_MRG_RXBUF).unwrap();
        fe.set_mem_table(&[VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEM as u64,
            userspace_addr: va,
            mmap_offset: 0,
            mmap_handle: file.as_raw_fd(),
        }])
        .unwrap();
        let kicks = [EventFd::new(0).unwrap(), EventFd::new(0).unwrap()];
        let calls = [EventFd::new(0).unwrap(), EventFd::new(0).unwrap()];
        for q in 0..2 {
            let (d, a, u) = ring(q);
            fe.set_vring_num(q, QSIZE).unwrap();
            fe.set_vring_addr(
                q,
                &VringConfigData {
                    queue_max_size: QSIZE,
                    queue_size: QSIZE,
                    flags: 0,
                    desc_table_addr: va + d,
                    used_ring_addr: va + u,
                    avail_ring_addr: va + a,
                    log_addr: None,
                },
            )
            .unwrap();
            fe.set_vring_base(q, 0).unwrap();
            fe.set_vring_call(q, &calls[q]).unwrap();
            fe.set_vring_kick(q, &kicks[q]).unwrap();
        }
        // a round trip: everything above has been handled
        fe.get_features().unwrap();
        Self {
            fe,
            mem,
            kicks,
            _calls: calls,
            avail: [0; 2],
            _file: file,
        }
    }

    /// Writes descriptor `i` of ring `q`.
    fn desc(&self, q: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let (d, _, _) = ring(q);
        let at = GuestAddress(d + 16 * u64::from(i));
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..16].copy_from_slice(&next.to_le_bytes());
        self.mem.write_slice(&b, at).unwrap();
    }

    /// Offers the chain starting at descriptor `head` on ring `q` and kicks.
    fn offer(&mut self, q: usize, head: u16) {
        let (_, a, _) = ring(q);
        let slot = self.avail[q] % QSIZE;
        self.mem
            .write_obj(head, GuestAddress(a + 4 + 2 * u64::from(slot)))
            .unwrap();
        self.avail[q] = self.avail[q].wrapping_add(1);
        self.mem
            .write_obj(self.avail[q], GuestAddress(a + 2))
            .unwrap();
        self.kicks[q].write(1).unwrap();
    }

    /// The used ring's index and its entry `i` (head, length).
    fn used(&self, q: usize, i: u16) -> (u16, (u32, u32)) {
        let (_, _, u) = ring(q);
        let idx: u16 = self.mem.read_obj(GuestAddress(u + 2)).unwrap();
        let at = u + 4 + 8 * u64::from(i % QSIZE);
        let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
        (idx, (id, len))
    }

    /// Posts a TX frame (header + `frame`) as one descriptor `i`.
    fn transmit(&mut self, i: u16, frame: &[u8]) {
        let addr = buf_addr(1, i);
        let mut b = vec![0u8; VNET_HDR_LEN];
        b.extend_from_slice(frame);
        self.mem.write_slice(&b, GuestAddress(addr)).unwrap();
        self.desc(1, i, addr, u32::try_from(b.len()).unwrap(), 0, 0);
        self.offer(1, i);
    }

    /// Posts receive buffer `i` (2 KiB, device-writable).
    fn post_rx(&mut self, i: u16) {
        self.desc(0, i, buf_addr(0, i), 2048, DESC_WRITE, 0);
        self.offer(0, i);
    }
}

fn frame(n: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = n;
    f
}

/// `port.recv` until it gives something other than `WouldBlock` (2 s at most).
fn recv(port: &mut VhostUserPort, buf: &mut FrameBuf) -> std::io::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match port.recv(buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            r => return r,
        }
    }
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn socket(name: &str) -> (Dir, PathBuf) {
    let d = std::env::temp_dir().join(format!("vnet-vu-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let s = d.join("vu.sock");
    (Dir(d), s)
}

#[test]
fn frames_cross_both_ways_and_a_reconnect_is_served() {
    let (_d, sock) = socket("ok");
    let mut port = VhostUserPort::listen(&sock).unwrap();
    assert_eq!(port.peer_state(), Some("listening"));
    let mut g = Guest::connect(&sock);
    wait("the connection", || port.peer_state() == Some("connected"));
    let mut buf = FrameBuf::new();
    // guest -> switch
    g.transmit(0, &frame(7));
    assert_eq!(recv(&mut port, &mut buf).unwrap(), 60);
    assert_eq!(buf.frame(), frame(7).as_slice());
    assert_eq!(g.used(1, 0), (1, (0, 0)));
    // switch -> guest
    g.post_rx(0);
    port.send(&FrameBuf::from_frame(&frame(9))).unwrap();
    let (idx, (id, len)) = g.used(0, 0);
    assert_eq!((idx, id, len as usize), (1, 0, VNET_HDR_LEN + 60));
    let mut got = vec![0u8; VNET_HDR_LEN + 60];
    g.mem
        .read_slice(&mut got, GuestAddress(buf_addr(0, 0)))
        .unwrap();
    assert_eq!(&got[10..12], &1u16.to_le_bytes(), "num_buffers");
    assert_eq!(&got[VNET_HDR_LEN..], frame(9).as_slice());
    // the frontend goes; a new one is served by the same port
    drop(g);
    wait("the disconnect", || port.peer_state() == Some("listening"));
    port.send(&FrameBuf::from_frame(&frame(1))).unwrap();
    assert!(Port::drops(&port)
        .iter()
        .any(|(k, n)| *k == "rx-no-frontend" && *n == 1));
    let mut g = Guest::connect(&sock);
    wait("the reconnection", || {
        port.peer_state() == Some("connected")
    });
    g.transmit(0, &frame(8));
    assert_eq!(recv(&mut port, &mut buf).unwrap(), 60);
    assert_eq!(buf.frame()[14], 8);
}

/// A frontend whose TX chain is `setup`: the port ends that connection (the error is
/// transient: the port stays), counts it, and serves the next frontend.
fn bad_tx_closes_the_connection(name: &str, setup: impl Fn(&mut Guest)) {
    let (_d, sock) = socket(name);
    let mut port = VhostUserPort::listen(&sock).unwrap();
    let mut g = Guest::connect(&sock);
    wait("the connection", || port.peer_state() == Some("connected"));
    setup(&mut g);
    let mut buf = FrameBuf::new();
    let e = recv(&mut port, &mut buf).unwrap_err();
    assert_eq!(port.classify(&e), ErrorClass::Transient, "{e}");
    assert!(Port::drops(&port)
        .iter()
        .any(|(k, n)| *k == "bad-frontend" && *n == 1));
    // the frontend's socket was closed
    wait("the close", || g.fe.get_features().is_err());
    wait("listening again", || port.peer_state() == Some("listening"));
    assert!(matches!(port.recv(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock));
    let mut g = Guest::connect(&sock);
    wait("the next connection", || {
        port.peer_state() == Some("connected")
    });
    g.transmit(0, &frame(3));
    assert_eq!(recv(&mut port, &mut buf).unwrap(), 60);
}

#[test]
fn a_descriptor_outside_guest_memory_ends_the_connection_not_the_port() {
    bad_tx_closes_the_connection("oob", |g| {
        g.desc(1, 0, 0xdead_0000_0000, 72, 0, 0);
        g.offer(1, 0);
    });
}

#[test]
fn a_descriptor_chain_that_loops_ends_the_connection_not_the_port() {
    bad_tx_closes_the_connection("loop", |g| {
        let a = buf_addr(1, 0);
        g.desc(1, 0, a, 36, DESC_NEXT, 1);
        g.desc(1, 1, a, 36, DESC_NEXT, 0);
        g.offer(1, 0);
    });
}

#[test]
fn a_receive_chain_the_device_cannot_write_ends_the_connection() {
    let (_d, sock) = socket("rxro");
    let mut port = VhostUserPort::listen(&sock).unwrap();
    let mut g = Guest::connect(&sock);
    wait("the connection", || port.peer_state() == Some("connected"));
    // a receive buffer without the write flag
    g.desc(0, 0, buf_addr(0, 0), 2048, 0, 0);
    g.offer(0, 0);
    let e = port.send(&FrameBuf::from_frame(&frame(1))).unwrap_err();
    assert_eq!(port.classify(&e), ErrorClass::Transient, "{e}");
    wait("listening again", || port.peer_state() == Some("listening"));
}

#[test]
fn a_disconnect_with_a_frame_posted_leaves_the_port_waiting() {
    let (_d, sock) = socket("gone");
    let mut port = VhostUserPort::listen(&sock).unwrap();
    let mut g = Guest::connect(&sock);
    wait("the connection", || port.peer_state() == Some("connected"));
    // a two-descriptor frame, its rings torn down before the switch reads it
    let a = buf_addr(1, 0);
    g.mem.write_slice(&[0u8; 72], GuestAddress(a)).unwrap();
    g.desc(1, 0, a, 30, DESC_NEXT, 1);
    g.desc(1, 1, a + 30, 42, 0, 0);
    g.offer(1, 0);
    drop(g);
    wait("the disconnect", || port.peer_state() == Some("listening"));
    let mut buf = FrameBuf::new();
    assert!(matches!(port.recv(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock));
    port.send(&FrameBuf::from_frame(&frame(1))).unwrap();
    port.flush().unwrap();
}

#[test]
fn a_guest_that_posts_no_receive_buffers_fills_a_bounded_queue() {
    let (_d, sock) = socket("full");
    let mut port = VhostUserPort::listen(&sock).unwrap();
    let mut g = Guest::connect(&sock);
    wait("the connection", || port.peer_state() == Some("connected"));
    let n = vnet_ports::vhost_user::RX_PENDING_MAX + 10;
    for i in 0..n {
        port.send(&FrameBuf::from_frame(&frame(
            u8::try_from(i % 256).unwrap(),
        )))
        .unwrap();
    }
    let full = |p: &VhostUserPort| {
        Port::drops(p)
            .iter()
            .find(|(k, _)| *k == "rx-ring-full")
            .map(|(_, n)| *n)
    };
    assert_eq!(full(&port), Some(10));
    // buffers arrive: the queued frames go first, in order
    for i in 0..4 {
        g.post_rx(i);
    }
    port.flush().unwrap();
    let (idx, _) = g.used(0, 0);
    assert_eq!(idx, 4);
    let mut got = vec![0u8; VNET_HDR_LEN + 60];
    g.mem
        .read_slice(&mut got, GuestAddress(buf_addr(0, 3)))
        .unwrap();
    assert_eq!(got[VNET_HDR_LEN + 14], 3);
}

#[test]
fn a_memory_table_changed_at_run_time_is_followed() {
    let (_d, sock) = socket("mem");
    let mut port = VhostUserPort::listen(&sock).unwrap();
    let mut g = Guest::connect(&sock);
    wait("the connection", || port.peer_state() == Some("connected"));
    let mut buf = FrameBuf::new();
    g.transmit(0, &frame(1));
    assert_eq!(recv(&mut port, &mut buf).unwrap(), 60);
    // the guest grows: a second region above the first (memory hot-plug, as QEMU
    // sends it: a new table), mapped here again with both files
    let file2 = memory_file();
    let mem = GuestMemoryMmap::<()>::from_ranges_with_files([
        (
            GuestAddress(0),
            MEM,
            Some(FileOffset::new(g._file.try_clone().unwrap(), 0)),
        ),
        (
            GuestAddress(MEM as u64),
            MEM,
            Some(FileOffset::new(file2.try_clone().unwrap(), 0)),
        ),
    ])
    .unwrap();
    let va = |a: u64| mem.get_host_address(GuestAddress(a)).unwrap() as u64;
    g.fe.set_mem_table(&[
        VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEM as u64,
            userspace_addr: va(0),
            mmap_offset: 0,
            mmap_handle: g._file.as_raw_fd(),
        },
        VhostUserMemoryRegionInfo {
            guest_phys_addr: MEM as u64,
            memory_size: MEM as u64,
            userspace_addr: va(MEM as u64),
            mmap_offset: 0,
            mmap_handle: file2.as_raw_fd(),
        },
    ])
    .unwrap();
    g.fe.get_features().unwrap();
    g.mem = mem;
    // a frame in the new region
    let at = MEM as u64 + 0x8000;
    let mut b = vec![0u8; VNET_HDR_LEN];
    b.extend_from_slice(&frame(2));
    g.mem.write_slice(&b, GuestAddress(at)).unwrap();
    g.desc(1, 1, at, u32::try_from(b.len()).unwrap(), 0, 0);
    g.offer(1, 1);
    assert_eq!(recv(&mut port, &mut buf).unwrap(), 60);
    assert_eq!(buf.frame()[14], 2);
}

/// `--connect`: the port dials a frontend that listens (QEMU's `server=on`), and dials
/// again after the frontend goes.
#[test]
fn a_connecting_port_dials_the_frontend_and_redials() {
    let (_d, sock) = socket("dial");
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut port = VhostUserPort::connect(&sock).unwrap();
    assert_eq!(port.peer_state(), Some("connecting"));
    let mut buf = FrameBuf::new();
    for round in 0..2u8 {
        let (s, _) = l.accept().unwrap();
        let mut g = Guest::attach(Frontend::from_stream(s, 2));
        wait("the connection", || port.peer_state() == Some("connected"));
        g.transmit(0, &frame(round));
        assert_eq!(recv(&mut port, &mut buf).unwrap(), 60);
        assert_eq!(buf.frame()[14], round);
        // the port dials again at once: the next round's accept takes that call
        drop(g);
    }
}

#[test]
fn a_socket_another_port_listens_on_is_not_taken() {
    let (_d, sock) = socket("busy");
    let first = VhostUserPort::listen(&sock).unwrap();
    let e = VhostUserPort::listen(&sock).unwrap_err();
    assert!(format!("{e:?}").contains("in use"), "{e:?}");
    let mut g = Guest::connect(&sock);
    wait("the connection", || first.peer_state() == Some("connected"));
    let mut first = first;
    let mut buf = FrameBuf::new();
    g.transmit(0, &frame(5));
    assert_eq!(recv(&mut first, &mut buf).unwrap(), 60);
}

#[test]
fn a_path_that_is_not_a_socket_is_left_alone() {
    let (_d, sock) = socket("file");
    std::fs::write(&sock, b"keep me").unwrap();
    let e = VhostUserPort::listen(&sock).unwrap_err();
    assert!(format!("{e:?}").contains("not a socket"), "{e:?}");
    assert_eq!(std::fs::read(&sock).unwrap(), b"keep me");
}

/// `port-del` of a port with a frontend connected: the connection is closed, the threads
/// end, the socket goes, and none of it keeps the caller waiting.
#[test]
fn dropping_a_connected_port_closes_its_connection_at_once() {
    let (_d, sock) = socket("drop");
    let port = VhostUserPort::listen(&sock).unwrap();
    let g = Guest::connect(&sock);
    wait("the connection", || port.peer_state() == Some("connected"));
    let t = Instant::now();
    drop(port);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(!sock.exists());
    wait("the close", || g.fe.get_features().is_err());
}
