//! The control plane of the loop: control connections (accept, bounds, requests) and
//! the metrics endpoint's, and the requests that change the live definition.

use super::*;

impl Daemon {
    pub(super) fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let now = self.clock.mono;
                    if self.conns.len() >= MAX_CONNS {
                        self.expire_conns(now);
                    }
                    if self.conns.len() >= MAX_CONNS && !self.evict_idlest_conn() {
                        self.conns_refused += 1;
                        if self.conns_refused.is_power_of_two() {
                            warn!(
                                "{} control connections held, all busy: refused one ({} so far)",
                                self.conns.len(),
                                self.conns_refused
                            );
                        }
                        continue;
                    }
                    let token = Source::Control(self.next_conn).token();
                    self.next_conn = (self.next_conn + 1) % (1 << 20);
                    if self
                        .poll
                        .registry()
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
                    warn!("accept failed: {e}; closing idle control connections");
                    let before = self.conns.len();
                    self.expire_conns(self.clock.mono);
                    if self.conns.len() == before && !self.evict_idlest_conn() {
                        return;
                    }
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Closes the control connections idle past [`crate::conn::IDLE_TIMEOUT`].
    pub(super) fn expire_conns(&mut self, now: std::time::Instant) {
        let idle: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.idle(now))
            .map(|(t, _)| *t)
            .collect();
        for t in idle {
            self.close_conn(t);
        }
    }

    /// Closes the connection that sent its last request longest ago (never one that
    /// streams events or a capture); false if there is none.
    pub(super) fn evict_idlest_conn(&mut self) -> bool {
        let Some(token) = self
            .conns
            .iter()
            .filter(|(_, c)| !c.streaming)
            .min_by_key(|(_, c)| c.last_request)
            .map(|(t, _)| *t)
        else {
            return false;
        };
        self.close_conn(token);
        true
    }

    pub(super) fn close_conn(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }

    /// Serves a control connection: its requests while their answers have room (at most
    /// [`crate::conn::REQUESTS_PER_TURN`] a turn), then what of the answers the socket takes.
    pub(super) fn on_conn(&mut self, token: Token) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        conn.note_ready();
        let mut served = 0;
        while served < crate::conn::REQUESTS_PER_TURN {
            let line = match conn.next_request() {
                None => break,
                Some(Err(e)) => {
                    queue_response(&mut conn.outbuf, &Response::err(e));
                    break;
                }
                Some(Ok(line)) => line,
            };
            served += 1;
            conn.last_request = self.clock.mono;
            let req = match Request::parse(&line) {
                Ok(r) => r,
                Err(e) => {
                    queue_response(
                        &mut conn.outbuf,
                        &Response::err(format!("malformed request: {e}")),
                    );
                    continue;
                }
            };
            if let Request::Events = req {
                if self.event_subs.len() < MAX_EVENT_SUBS {
                    queue_response(&mut conn.outbuf, &Response::ok(&serde_json::Value::Null));
                    self.event_subs.push(token);
                    conn.streaming = true;
                } else {
                    queue_response(
                        &mut conn.outbuf,
                        &Response::err(format!("too many event subscribers ({MAX_EVENT_SUBS})")),
                    );
                }
                continue;
            }
            if let Request::Capture { port, count } = req {
                match self.start_capture(token, port.as_deref(), count) {
                    Ok(mut c) => {
                        queue_response(&mut conn.outbuf, &Response::ok(&serde_json::Value::Null));
                        c.take(&mut conn.outbuf);
                        self.captures.push(c);
                        conn.streaming = true;
                    }
                    Err(e) => queue_response(&mut conn.outbuf, &Response::err(e.to_string())),
                }
                continue;
            }
            let resp = self.handle_request(req);
            queue_response(&mut conn.outbuf, &resp);
        }
        match conn.flush() {
            Ok(true) if conn.closing => {
                let _ = self.poll.registry().deregister(&mut conn.stream);
            }
            Ok(done) => {
                let interest = if done {
                    Interest::READABLE
                } else {
                    Interest::READABLE | Interest::WRITABLE
                };
                let _ = self
                    .poll
                    .registry()
                    .reregister(&mut conn.stream, token, interest);
                if conn.more() && !self.conns_more.contains(&token) {
                    self.conns_more.push(token);
                }
                self.conns.insert(token, conn);
            }
            Err(_) => {
                let _ = self.poll.registry().deregister(&mut conn.stream);
            }
        }
    }

    pub(super) fn handle_request(&mut self, req: Request) -> Response {
        match req {
            Request::PortAdd(a) => match self.add_port(&a) {
                Ok(info) => Response::ok(&info),
                Err(e) => Response::err(e.to_string()),
            },
            Request::PortDel { port } => match self.remove_port(&port, true) {
                Ok(()) => Response::ok(&serde_json::Value::Null),
                Err(e) => Response::err(e.to_string()),
            },
            Request::PortList => Response::ok(&self.port_infos()),
            Request::FdbShow => {
                let now = self.net.switch_time(self.clock);
                let mut rows: Vec<FdbRow> = self
                    .net
                    .switch()
                    .fdb()
                    .entries(now)
                    .map(|e| FdbRow {
                        mac: e.mac.to_string(),
                        vlan: e.vlan.get(),
                        port: self
                            .ports
                            .get(e.port.index())
                            .and_then(Option::as_ref)
                            .map_or_else(
                                || {
                                    if self.net.gateway_port() == Some(e.port) {
                                        "gateway".to_owned()
                                    } else {
                                        e.port.to_string()
                                    }
                                },
                                |p| p.name.clone(),
                            ),
                        age: e.age.as_secs_f64(),
                    })
                    .collect();
                rows.sort_by(|a, b| (&a.port, &a.mac).cmp(&(&b.port, &b.mac)));
                Response::ok(&rows)
            }
            Request::NetInfo => Response::ok(&self.net_info()),
            Request::DhcpLeases => Response::ok(
                &self
                    .net
                    .gateway()
                    .map(GatewayHost::lease_rows)
                    .unwrap_or_default(),
            ),
            Request::PortForwardAdd { spec } => match self.forward_add(&spec) {
                Ok(()) => Response::ok(&serde_json::Value::Null),
                Err(e) => Response::err(e.to_string()),
            },
            Request::PortForwardDel { spec } => match self.forward_del(&spec) {
                Ok(()) => Response::ok(&serde_json::Value::Null),
                Err(e) => Response::err(e.to_string()),
            },
            Request::PortForwardList => Response::ok(
                &self
                    .network
                    .port_forwards()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            ),
            Request::NatFlows => Response::ok(
                &self
                    .net
                    .gateway()
                    .map(GatewayHost::nat_flows)
                    .unwrap_or_default(),
            ),
            Request::DnsRecords => Response::ok(
                &self
                    .net
                    .gateway()
                    .map(GatewayHost::dns_records)
                    .unwrap_or_default(),
            ),
            Request::DumpXml => Response::ok(&self.network.to_xml()),
            Request::NetUpdate(u) => match self.update(&u) {
                Ok(()) => Response::ok(&serde_json::Value::Null),
                Err(e) => Response::err(e.to_string()),
            },
            Request::Shutdown => {
                log!("shutdown requested");
                self.stop = true;
                Response::ok(&serde_json::Value::Null)
            }
            _ => Response::err("unsupported request"),
        }
    }

    /// Applies a `net-update` to the live definition: all or nothing.
    /// `port-forward-add`: opens the host ports, then records the forward in the live
    /// definition.
    pub(super) fn forward_add(&mut self, spec: &str) -> Result<(), ControlError> {
        let f = vnet_config::PortForward::parse_spec(spec)?;
        let mut net = self.network.clone();
        net.add_port_forward(f.clone())?;
        let h = self.host.as_mut().ok_or(ControlError::NoGateway)?;
        h.add_forward(&f).map_err(|e| e.to_string())?;
        self.network = net;
        log!("port forward {f} added");
        self.store
            .save_live(&self.name, &self.network.to_xml())
            .map_err(ControlError::SaveLive)
    }

    /// `port-forward-del`: closes the host ports of the forward `spec` names.
    pub(super) fn forward_del(&mut self, spec: &str) -> Result<(), ControlError> {
        let (proto, address, port) = vnet_config::PortForward::parse_key(spec)?;
        let removed = self.network.remove_port_forward(proto, address, port)?;
        if let Some(h) = self.host.as_mut() {
            h.remove_forward(&removed);
        }
        log!("port forward {removed} removed");
        self.store
            .save_live(&self.name, &self.network.to_xml())
            .map_err(ControlError::SaveLive)
    }

    pub(super) fn update(&mut self, u: &NetUpdate) -> Result<(), ControlError> {
        let command = u.command.parse().map_err(|e| format!("{e}"))?;
        let section = u.section.parse().map_err(|e| format!("{e}"))?;
        let mut next = self.network.clone();
        next.update(command, section, u.parent_index, &u.xml)?;
        self.store
            .save_live(&self.name, &next.to_xml())
            .map_err(ControlError::SaveLive)?;
        if let Some(g) = self.net.gateway_mut() {
            GatewayHost::reconfigure(g, &next);
        }
        self.network = next;
        log!("live definition updated: {} {}", u.command, u.section);
        Ok(())
    }

    pub(super) fn accept_http(&mut self) {
        if self.http.len() >= MAX_HTTP_CONNS {
            self.expire_http();
        }
        let Some(l) = self.metrics.as_ref() else {
            return;
        };
        while let Ok((mut stream, _)) = l.accept() {
            if self.http.len() >= MAX_HTTP_CONNS {
                continue; // dropped: closes it
            }
            let token = Source::Http(self.next_http).token();
            self.next_http = (self.next_http + 1) % (1 << 20);
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)
                .is_ok()
            {
                self.http.insert(
                    token,
                    HttpConn {
                        stream,
                        inbuf: Vec::new(),
                        outbuf: Vec::new(),
                        since: self.clock.mono,
                    },
                );
            }
        }
    }

    /// Closes the metrics connections older than [`HTTP_TIMEOUT`].
    pub(super) fn expire_http(&mut self) {
        let now = self.clock.mono;
        let registry = self.poll.registry();
        self.http.retain(|_, c| {
            let keep = now.saturating_duration_since(c.since) < HTTP_TIMEOUT;
            if !keep {
                let _ = registry.deregister(&mut c.stream);
            }
            keep
        });
    }

    pub(super) fn on_http(&mut self, token: Token) {
        let Some(mut c) = self.http.remove(&token) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let mut eof = false;
        loop {
            match c.stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => c.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
            if c.inbuf.len() > 8192 {
                eof = true;
                break;
            }
        }
        if c.outbuf.is_empty() {
            let resp =
                crate::metrics::http_response(&c.inbuf, &self.net_info(), &self.port_infos());
            match resp {
                Some(r) => c.outbuf = r,
                None if eof => {
                    let _ = self.poll.registry().deregister(&mut c.stream);
                    return;
                }
                None => {
                    self.http.insert(token, c);
                    return;
                }
            }
        }
        while !c.outbuf.is_empty() {
            match c.stream.write(&c.outbuf) {
                Ok(0) => break,
                Ok(n) => {
                    c.outbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let _ = self.poll.registry().reregister(
                        &mut c.stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    self.http.insert(token, c);
                    return;
                }
                Err(_) => break,
            }
        }
        // answered (or broken): close
        let _ = self.poll.registry().deregister(&mut c.stream);
    }
}
