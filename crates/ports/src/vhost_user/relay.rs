//! The relay between a vhost-user frontend and `vhost-user-backend`'s request handler:
//! messages from the frontend, with the descriptors they carry, are passed on whole;
//! replies go back as bytes. One thread each way.
//!
//! One change is made: an enable (`SET_VRING_ENABLE`) that arrives before the
//! frontend's `SET_FEATURES` (QEMU's virtio-net sends it when the guest's driver picks
//! its features, before it tells the backend) is acknowledged here and passed on right
//! after `SET_FEATURES`, because the handler refuses it before and ends the connection.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// A message header: request, flags, payload size (all little-endian `u32`).
const HDR: usize = 12;
/// The largest payload passed on (the protocol's largest is a few hundred bytes).
const MAX_PAYLOAD: usize = 64 * 1024;
/// The most descriptors one message may carry (a memory table has at most 8; the
/// handler takes up to 32 with `CONFIGURE_MEM_SLOTS`).
const MAX_FDS: usize = 32;

/// Rings whose early enable is held (the handler has 2; QEMU's most is 2 per queue
/// pair plus the control queue).
const MAX_HELD: usize = 64;

const SET_FEATURES: u32 = 2;
const RESET_OWNER: u32 = 4;
const SET_VRING_ENABLE: u32 = 18;
const RESET_DEVICE: u32 = 34;
const FLAG_VERSION: u32 = 0x1;
const FLAG_REPLY: u32 = 0x4;
const FLAG_NEED_REPLY: u32 = 0x8;

/// The relay's two threads.
pub(super) struct Relays {
    requests: JoinHandle<Result<(), String>>,
    replies: JoinHandle<()>,
}

impl Relays {
    /// Waits for both directions to end; the frontend side's error, if any.
    pub(super) fn join(self) -> Result<(), String> {
        let r = self
            .requests
            .join()
            .unwrap_or_else(|_| Err("relay thread panicked".to_owned()));
        let _ = self.replies.join();
        r
    }
}

/// Relays between `front` (the frontend's connection) and `back` (the handler's); ends
/// when either side closes (and then closes the other).
pub(super) fn start(front: Arc<UnixStream>, back: UnixStream) -> io::Result<Relays> {
    let back = Arc::new(back);
    let write_lock = Arc::new(Mutex::new(()));
    let (f, b, w) = (front.clone(), back.clone(), write_lock.clone());
    let requests = std::thread::Builder::new()
        .name("vhost-user-rq".to_owned())
        .spawn(move || {
            let r = requests(&f, &b, &w);
            let _ = b.shutdown(Shutdown::Both);
            let _ = f.shutdown(Shutdown::Both);
            r
        })?;
    let replies = std::thread::Builder::new()
        .name("vhost-user-rp".to_owned())
        .spawn(move || {
            let mut buf = vec![0u8; 4096];
            loop {
                let n = match (&*back).read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let _g = write_lock.lock();
                if (&*front).write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = front.shutdown(Shutdown::Both);
            let _ = back.shutdown(Shutdown::Both);
        })?;
    Ok(Relays { requests, replies })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// Closes descriptors received (they were passed on, or are not wanted).
fn close_all(fds: &mut Vec<RawFd>) {
    for fd in fds.drain(..) {
        let _ = nix::unistd::close(fd);
    }
}

/// Reads into `buf` (the start of a message), with the descriptors that come with it.
fn recv_fds(sock: &UnixStream, buf: &mut [u8], fds: &mut Vec<RawFd>) -> io::Result<usize> {
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => break m,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    };
    let n = msg.bytes;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(got) = c {
                fds.extend(got);
            }
        }
    }
    Ok(n)
}

fn send_fds(sock: &UnixStream, msg: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    let mut sent = sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(msg)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    // the rest (if the socket took only part) without the descriptors again
    while sent < msg.len() {
        sent += sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&msg[sent..])],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
    }
    Ok(())
}

/// The frontend → handler direction.
fn requests(front: &UnixStream, back: &UnixStream, write_lock: &Mutex<()>) -> Result<(), String> {
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut features_set = false;
    let mut fds = Vec::new();
    loop {
        let mut msg = vec![0u8; HDR];
        let n = recv_fds(front, &mut msg, &mut fds).map_err(|e| e.to_string())?;
        if n == 0 {
            close_all(&mut fds);
            return Ok(());
        }
        if n < HDR {
            (&*front)
                .read_exact(&mut msg[n..])
                .map_err(|e| format!("short message header: {e}"))?;
        }
        let (req, flags) = (u32_at(&msg, 0), u32_at(&msg, 4));
        let size = usize::try_from(u32_at(&msg, 8)).unwrap_or(usize::MAX);
        if size > MAX_PAYLOAD {
            close_all(&mut fds);
            return Err(format!("message {req} of {size} bytes"));
        }
        msg.resize(HDR + size, 0);
        (&*front)
            .read_exact(&mut msg[HDR..])
            .map_err(|e| format!("short message {req}: {e}"))?;
        match req {
            SET_VRING_ENABLE if !features_set => {
                close_all(&mut fds);
                if flags & FLAG_NEED_REPLY != 0 {
                    let mut ack = Vec::with_capacity(HDR + 8);
                    ack.extend_from_slice(&req.to_le_bytes());
                    ack.extend_from_slice(&(FLAG_VERSION | FLAG_REPLY).to_le_bytes());
                    ack.extend_from_slice(&8u32.to_le_bytes());
                    ack.extend_from_slice(&0u64.to_le_bytes());
                    let _g = write_lock.lock();
                    (&*front).write_all(&ack).map_err(|e| e.to_string())?;
                }
                // passed on later without asking for a reply (it was answered); the
                // last one per ring counts, and a frontend has only so many rings
                msg[4..8].copy_from_slice(&(flags & !FLAG_NEED_REPLY).to_le_bytes());
                let ring = msg.get(HDR..HDR + 4).map(|b| u32_at(b, 0));
                held.retain(|m| m.get(HDR..HDR + 4).map(|b| u32_at(b, 0)) != ring);
                if held.len() >= MAX_HELD {
                    return Err(format!(
                        "more than {MAX_HELD} rings enabled before SET_FEATURES"
                    ));
                }
                held.push(msg);
                continue;
            }
            SET_FEATURES => {
                send_fds(back, &msg, &fds).map_err(|e| e.to_string())?;
                close_all(&mut fds);
                features_set = true;
                for m in held.drain(..) {
                    send_fds(back, &m, &[]).map_err(|e| e.to_string())?;
                }
                continue;
            }
            RESET_OWNER | RESET_DEVICE => features_set = false,
            _ => {}
        }
        let sent = send_fds(back, &msg, &fds);
        close_all(&mut fds);
        sent.map_err(|e| e.to_string())?;
    }
}
