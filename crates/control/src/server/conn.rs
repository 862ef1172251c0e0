//! Control connections: what one client may make switchd hold, and when it is let go.
//!
//! - Input: a connection is read only while it holds no complete request, so at most one
//!   request of [`MAX_REQUEST_LEN`] (and one read's worth) is buffered; the rest waits in
//!   the kernel's socket buffer, which is the client's problem.
//! - Output: requests are served only while less than [`OUT_HIGH`] of answers waits to
//!   be sent; a client that pipelines requests without reading its answers stalls itself
//!   (backpressure), switchd's memory does not grow.
//! - Time: a connection that sent no complete request for [`IDLE_TIMEOUT`] is closed,
//!   except one that streams events or a capture.
//! - Count: at most [`MAX_CONNS`]; a new connection past it closes the one idle longest,
//!   so a client holding connections open cannot lock the operator out.

use std::io::{self, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use crate::MAX_REQUEST_LEN;
use mio::net::UnixStream;

/// Control connections served at once.
pub(crate) const MAX_CONNS: usize = 256;
/// Answers waiting to be sent past which a connection's further requests wait.
pub(crate) const OUT_HIGH: usize = 1 << 20;
/// A connection that sent no complete request for this long is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests served from one connection in one loop turn before the others' turn.
pub(crate) const REQUESTS_PER_TURN: usize = 32;

/// One control connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: UnixStream,
    inbuf: Vec<u8>,
    pub(crate) outbuf: Vec<u8>,
    /// Close once `outbuf` is flushed.
    pub(crate) closing: bool,
    /// The peer closed its side (or the socket failed).
    eof: bool,
    /// The last read stopped at `EAGAIN` (nothing more is waiting in the kernel).
    drained: bool,
    /// When it connected or last sent a complete request.
    pub(crate) last_request: Instant,
    /// It streams events or a capture: it sends nothing more and is never idle.
    pub(crate) streaming: bool,
}

impl Conn {
    pub(crate) fn new(stream: UnixStream, now: Instant) -> Self {
        Self {
            stream,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            closing: false,
            eof: false,
            drained: false,
            last_request: now,
            streaming: false,
        }
    }

    /// Its socket was reported ready (or may be): bytes may be waiting that the last
    /// read did not see, even while answers held reading back.
    pub(crate) fn note_ready(&mut self) {
        self.drained = false;
    }

    fn has_line(&self) -> bool {
        self.inbuf.contains(&b'\n')
    }

    /// Reads until the input holds a complete request, the socket has nothing more, or
    /// the input is over [`MAX_REQUEST_LEN`].
    fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        while !self.eof && !self.has_line() && self.inbuf.len() <= MAX_REQUEST_LEN {
            match self.stream.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.drained = false;
                    self.inbuf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.drained = true;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.eof = true,
            }
        }
    }

    /// The next complete request, without its newline, once answers have room: reads
    /// the socket as needed. `Err` carries the answer to an over-long request (the
    /// connection is then closing).
    pub(crate) fn next_request(&mut self) -> Option<Result<Vec<u8>, String>> {
        if self.closing || self.outbuf.len() >= OUT_HIGH {
            return None;
        }
        if !self.has_line() {
            self.fill();
        }
        if let Some(nl) = self.inbuf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.inbuf.drain(..=nl).collect();
            line.pop();
            return Some(Ok(line));
        }
        if self.inbuf.len() > MAX_REQUEST_LEN {
            self.inbuf = Vec::new();
            self.closing = true;
            return Some(Err(format!("request longer than {MAX_REQUEST_LEN} bytes")));
        }
        if self.eof {
            self.closing = true;
        }
        None
    }

    /// Whether a request may be waiting that no readiness event will announce: a
    /// complete one buffered, or unread bytes left in the kernel, with room to answer.
    pub(crate) fn more(&self) -> bool {
        !self.closing
            && self.outbuf.len() < OUT_HIGH
            && (self.has_line() || (!self.drained && !self.eof))
    }

    /// Whether it has been idle past [`IDLE_TIMEOUT`] at `now`.
    pub(crate) fn idle(&self, now: Instant) -> bool {
        !self.streaming && now.saturating_duration_since(self.last_request) >= IDLE_TIMEOUT
    }

    /// Writes what it can of the output; true when all was written.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        let mut sent = 0;
        let result = loop {
            if sent == self.outbuf.len() {
                break Ok(true);
            }
            match self.stream.write(&self.outbuf[sent..]) {
                Ok(0) => break Err(io::Error::from(ErrorKind::WriteZero)),
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.outbuf.drain(..sent);
        if self.outbuf.is_empty() && self.outbuf.capacity() > OUT_HIGH {
            // a burst's buffer is not kept for the connection's whole life
            self.outbuf = Vec::new();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Conn, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        a.set_nonblocking(true).expect("nonblocking");
        (Conn::new(UnixStream::from_std(a), Instant::now()), b)
    }

    #[test]
    fn requests_wait_while_answers_are_unread_and_are_served_once_they_go() {
        let (mut c, mut peer) = pair();
        peer.write_all(b"a\n").expect("write");
        assert_eq!(c.next_request(), Some(Ok(b"a".to_vec())));
        assert_eq!(c.next_request(), None);
        assert!(!c.more());
        // a megabyte of answers waits: a new request is not read
        c.outbuf = vec![0; OUT_HIGH];
        peer.write_all(b"b\n").expect("write");
        c.note_ready();
        assert_eq!(c.next_request(), None);
        assert!(!c.more());
        // the answers went: the request that waited in the socket is served now,
        // without another readiness event
        c.outbuf.clear();
        assert!(c.more());
        assert_eq!(c.next_request(), Some(Ok(b"b".to_vec())));
    }

    #[test]
    fn an_over_long_request_is_refused_and_closes_the_connection() {
        let (mut c, mut peer) = pair();
        let long = vec![b'x'; MAX_REQUEST_LEN + 10];
        let writer = std::thread::spawn(move || {
            let _ = peer.write_all(&long);
            peer
        });
        let mut answer = None;
        for _ in 0..1000 {
            c.note_ready();
            if let Some(r) = c.next_request() {
                answer = Some(r);
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(matches!(answer, Some(Err(e)) if e.contains("longer than")));
        assert!(c.closing);
        drop(writer.join());
    }

    #[test]
    fn idle_is_measured_from_the_last_request_and_streams_never_idle() {
        let (mut c, _peer) = pair();
        let later = c.last_request + IDLE_TIMEOUT;
        assert!(c.idle(later));
        c.streaming = true;
        assert!(!c.idle(later));
    }
}
