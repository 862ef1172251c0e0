//! The pcap captures running on control connections (`switchctl capture`): each is a
//! [`vnet_ports::capture::Capture`] whose output is the connection's output buffer.

use mio::Token;
use vnet_ports::capture::Capture;

use crate::server::{Answer, Server};
use crate::Response;

/// How many captures may run at once.
pub const MAX_CAPTURES: usize = 8;

/// The running captures, each on its control connection, of ports named by `P`.
#[derive(Debug)]
pub struct Captures<P> {
    running: Vec<(Token, Capture<P>)>,
}

impl<P> Default for Captures<P> {
    fn default() -> Self {
        Self {
            running: Vec::new(),
        }
    }
}

impl<P: Copy + PartialEq> Captures<P> {
    /// None running.
    pub fn new() -> Self {
        Self::default()
    }

    /// No capture runs (the network need not show any frame).
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Starts a capture of `port` (every port: `None`), `count` frames or until the
    /// reader leaves, on connection `token`; the answer is the OK line, then the pcap
    /// header (the frames follow).
    pub fn start(
        &mut self,
        token: Token,
        port: Option<P>,
        count: Option<u64>,
    ) -> Result<Answer, String> {
        if self.running.len() >= MAX_CAPTURES {
            return Err(format!("too many captures running ({MAX_CAPTURES})"));
        }
        let mut c = Capture::new(port, count).map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        c.take(&mut head);
        self.running.push((token, c));
        Ok(Answer::Stream(Response::ok(&serde_json::Value::Null), head))
    }

    /// Hands a frame the network saw on `port` to the captures that want it.
    pub fn observe(&mut self, server: &mut Server, port: P, ingress: bool, frame: &[u8]) {
        for (token, c) in self.running.iter_mut() {
            if !c.wants(port, ingress) {
                continue;
            }
            let Some(out) = server.outbuf(*token) else {
                continue;
            };
            c.record(frame, out.len());
            c.take(out);
        }
    }

    /// Flushes the captures' output (once per loop turn); ends, and closes the
    /// connections of, the ones whose reader left or whose count is reached.
    pub fn flush(&mut self, server: &mut Server) {
        let mut i = 0;
        while let Some((token, c)) = self.running.get(i) {
            let token = *token;
            let ended = match server.flush(token) {
                Ok(true) => c.done(),
                Ok(false) => false,
                Err(_) => true,
            };
            if ended {
                let (_, c) = self.running.swap_remove(i);
                server.close(token);
                tracing::info!(
                    "capture ended: {} frames, {} dropped (slow reader)",
                    c.captured,
                    c.dropped
                );
            } else {
                i += 1;
            }
        }
    }
}
