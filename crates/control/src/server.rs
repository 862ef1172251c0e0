//! The daemon's side of the control socket: accepting connections within bounds,
//! reading their requests, queueing the answers, the event stream, and closing the
//! connections that idle or misbehave. What a request does is the caller's: it opens a
//! [`Session`] on a ready connection and answers the requests [`Server::next`] hands it.
//!
//! The bounds are `conn`'s: input, output, idle time and the number of connections.
//! The server polls nothing itself: the caller registers the listener (under the
//! token it gave), calls [`Server::accept`] and [`Server::open`] when mio says so,
//! and [`Server::expire`] about once a second.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::time::Instant;

use mio::net::UnixListener;
use mio::{Interest, Registry, Token};

use crate::{Request, Response};

mod conn;

use conn::{Conn, MAX_CONNS, REQUESTS_PER_TURN};

/// Event subscribers (`switchctl net-event`) at once.
pub const MAX_EVENT_SUBS: usize = 64;
/// Bytes of events a subscriber may have unread before it misses events.
const MAX_EVENT_BACKLOG: usize = 1 << 20;

/// What the daemon makes of a request.
#[derive(Debug)]
pub enum Answer {
    /// One response line.
    Reply(Response),
    /// A response line, then these bytes and what the caller appends later with
    /// [`Server::outbuf`] (a capture's pcap); the connection sends no more requests.
    Stream(Response, Vec<u8>),
}

/// A connection being served: taken from the server until [`Server::finish`].
#[derive(Debug)]
pub struct Session {
    token: Token,
    conn: Conn,
    served: usize,
}

impl Session {
    /// Queues the answer to the request [`Server::next`] returned last.
    pub fn answer(&mut self, answer: Answer) {
        match answer {
            Answer::Reply(r) => queue_response(&mut self.conn.outbuf, &r),
            Answer::Stream(r, mut bytes) => {
                queue_response(&mut self.conn.outbuf, &r);
                self.conn.outbuf.append(&mut bytes);
                self.conn.streaming = true;
            }
        }
    }
}

/// The control connections of one daemon.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    registry: Registry,
    /// The token of the `n`th connection (the caller's token space).
    token: fn(usize) -> Token,
    conns: HashMap<Token, Conn>,
    /// Connections with requests waiting that no readiness event will announce.
    more: Vec<Token>,
    /// Connections refused because every slot was busy.
    refused: u64,
    next: usize,
    /// Connections that asked for the event stream.
    subs: Vec<Token>,
}

impl Server {
    /// Serves `listener`; its connections are registered with `registry`, the `n`th
    /// under `token(n)`.
    pub fn new(listener: UnixListener, registry: Registry, token: fn(usize) -> Token) -> Self {
        Self {
            listener,
            registry,
            token,
            conns: HashMap::new(),
            more: Vec::new(),
            refused: 0,
            next: 0,
            subs: Vec::new(),
        }
    }

    /// The listening socket (to register it).
    pub fn listener(&mut self) -> &mut UnixListener {
        &mut self.listener
    }

    /// Whether any connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Whether `token` is one of the open connections.
    pub fn contains(&self, token: Token) -> bool {
        self.conns.contains_key(&token)
    }

    /// Accepts the waiting connections. Past [`MAX_CONNS`] the one idle longest is
    /// closed to make room; when all stream, the new one is refused.
    pub fn accept(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.conns.len() >= MAX_CONNS {
                        self.expire(now);
                    }
                    if self.conns.len() >= MAX_CONNS && !self.evict_idlest() {
                        self.refused += 1;
                        if self.refused.is_power_of_two() {
                            tracing::warn!(
                                "{} control connections held, all busy: refused one ({} so far)",
                                self.conns.len(),
                                self.refused
                            );
                        }
                        continue;
                    }
                    let token = (self.token)(self.next);
                    self.next = (self.next + 1) % (1 << 20);
                    if self
                        .registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        self.conns.insert(token, Conn::new(stream, now));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // out of descriptors: close idle connections to make room, else
                    // wait for the next turn (the backlog keeps the client waiting)
                    tracing::warn!("accept failed: {e}; closing idle control connections");
                    let before = self.conns.len();
                    self.expire(now);
                    if self.conns.len() == before && !self.evict_idlest() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Closes the connections idle past [`conn::IDLE_TIMEOUT`] (once a second is
    /// enough).
    pub fn expire(&mut self, now: Instant) {
        let idle: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.idle(now))
            .map(|(t, _)| *t)
            .collect();
        for t in idle {
            self.close(t);
        }
    }

    /// Closes the connection that sent its last request longest ago (never one that
    /// streams); false if there is none.
    fn evict_idlest(&mut self) -> bool {
        let Some(token) = self
            .conns
            .iter()
            .filter(|(_, c)| !c.streaming)
            .min_by_key(|(_, c)| c.last_request)
            .map(|(t, _)| *t)
        else {
            return false;
        };
        self.close(token);
        true
    }

    /// Closes a connection.
    pub fn close(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = self.registry.deregister(&mut conn.stream);
        }
    }

    /// The connections that have requests buffered, or unread with no readiness
    /// event to come: open each again this turn.
    pub fn pending(&mut self) -> Vec<Token> {
        std::mem::take(&mut self.more)
    }

    /// Whether [`Server::pending`] has connections.
    pub fn has_pending(&self) -> bool {
        !self.more.is_empty()
    }

    /// Takes connection `token` (reported ready) to serve its requests.
    pub fn open(&mut self, token: Token) -> Option<Session> {
        let mut conn = self.conns.remove(&token)?;
        conn.note_ready();
        Some(Session {
            token,
            conn,
            served: 0,
        })
    }

    /// The session's next request, while its answers have room (at most
    /// [`REQUESTS_PER_TURN`] a turn). Malformed and over-long requests are answered
    /// here, and so is `events` (the server keeps the subscribers).
    pub fn next(&mut self, s: &mut Session, now: Instant) -> Option<Request> {
        while s.served < REQUESTS_PER_TURN {
            let line = match s.conn.next_request()? {
                Err(e) => {
                    queue_response(&mut s.conn.outbuf, &Response::err(e));
                    return None;
                }
                Ok(line) => line,
            };
            s.served += 1;
            s.conn.last_request = now;
            let resp = match Request::parse(&line) {
                Err(e) => Response::err(format!("malformed request: {e}")),
                Ok(Request::Events) if self.subs.len() >= MAX_EVENT_SUBS => {
                    Response::err(format!("too many event subscribers ({MAX_EVENT_SUBS})"))
                }
                Ok(Request::Events) => {
                    self.subs.push(s.token);
                    s.conn.streaming = true;
                    Response::ok(&serde_json::Value::Null)
                }
                Ok(req) => return Some(req),
            };
            queue_response(&mut s.conn.outbuf, &resp);
        }
        None
    }

    /// Sends what the socket takes of the session's answers and gives the connection
    /// back (or closes it, when it is done or broken).
    pub fn finish(&mut self, s: Session) {
        let Session {
            token, mut conn, ..
        } = s;
        match conn.flush() {
            Ok(true) if conn.closing => {
                let _ = self.registry.deregister(&mut conn.stream);
            }
            Ok(done) => {
                let interest = if done {
                    Interest::READABLE
                } else {
                    Interest::READABLE | Interest::WRITABLE
                };
                let _ = self.registry.reregister(&mut conn.stream, token, interest);
                if conn.more() && !self.more.contains(&token) {
                    self.more.push(token);
                }
                self.conns.insert(token, conn);
            }
            Err(_) => {
                let _ = self.registry.deregister(&mut conn.stream);
            }
        }
    }

    /// The output of a streaming connection (its answers and what follows them).
    pub fn outbuf(&mut self, token: Token) -> Option<&mut Vec<u8>> {
        self.conns.get_mut(&token).map(|c| &mut c.outbuf)
    }

    /// Writes what the socket of `token` takes of its output: `Ok(true)` when all went,
    /// `Ok(false)` when some waits (the connection is polled for writability), `Err`
    /// when the connection is gone or broken.
    pub fn flush(&mut self, token: Token) -> std::io::Result<bool> {
        let conn = self
            .conns
            .get_mut(&token)
            .ok_or_else(|| std::io::Error::from(ErrorKind::NotConnected))?;
        let done = conn.flush()?;
        if !done {
            let _ = self.registry.reregister(
                &mut conn.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            );
        }
        Ok(done)
    }

    /// Sends an event line (a JSON object) to the subscribers; a slow one misses events
    /// rather than making the daemon buffer without bound.
    pub fn broadcast(&mut self, event: &serde_json::Value) {
        if self.subs.is_empty() {
            return;
        }
        let mut line = serde_json::to_vec(event).unwrap_or_default();
        line.push(b'\n');
        self.subs.retain(|t| self.conns.contains_key(t));
        for t in self.subs.clone() {
            if let Some(conn) = self.conns.get_mut(&t) {
                if conn.outbuf.len() < MAX_EVENT_BACKLOG {
                    conn.outbuf.extend_from_slice(&line);
                }
            }
            let _ = self.flush(t);
        }
    }

    /// Whether anyone listens to [`Server::broadcast`].
    pub fn has_subscribers(&self) -> bool {
        !self.subs.is_empty()
    }
}

/// Appends a response line to `out`.
fn queue_response(out: &mut Vec<u8>, resp: &Response) {
    if serde_json::to_writer(&mut *out, resp).is_err() {
        out.extend_from_slice(br#"{"ok":false,"error":"cannot encode the response"}"#);
    }
    out.push(b'\n');
}
