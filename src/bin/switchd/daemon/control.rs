//! The control plane of the loop: control connections (accept, bounds, requests) and
//! the metrics endpoint's, and the requests that change the live definition.

use super::*;

impl Daemon {
    /// Serves a ready control connection (`None`: the ones with requests left over
    /// from the last turn).
    pub(super) fn on_conn(&mut self, token: Option<Token>) {
        let tokens = token.map_or_else(|| self.control.pending(), |t| vec![t]);
        for t in tokens {
            let Some(mut s) = self.control.open(t) else {
                continue;
            };
            while let Some(req) = self.control.next(&mut s, self.clock.mono) {
                let a = self.handle_request(t, req);
                s.answer(a);
            }
            self.control.finish(s);
        }
    }

    /// Serves a metrics connection.
    pub(super) fn on_http(&mut self, token: Token) {
        if let Some(mut m) = self.metrics.take() {
            m.serve(token, || (self.net_info(), self.port_infos()));
            self.metrics = Some(m);
        }
    }

    /// Answers a request of connection `token`.
    pub(super) fn handle_request(&mut self, token: Token, req: Request) -> Answer {
        let done = |r: Result<(), ControlError>| match r {
            Ok(()) => Response::ok(&serde_json::Value::Null),
            Err(e) => Response::err(e.to_string()),
        };
        Answer::Reply(match req {
            Request::Capture { port, count } => {
                match self.start_capture(token, port.as_deref(), count) {
                    Ok(a) => return a,
                    Err(e) => Response::err(e.to_string()),
                }
            }
            Request::PortAdd(a) => match self.add_port(&a) {
                Ok(info) => Response::ok(&info),
                Err(e) => Response::err(e.to_string()),
            },
            Request::PortDel { port } => done(self.remove_port(&port, true)),
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
                        port: if self.net.gateway_port() == Some(e.port) {
                            "gateway".to_owned()
                        } else {
                            self.devs.name(e.port)
                        },
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
            Request::PortForwardAdd { spec } => done(self.forward_add(&spec)),
            Request::PortForwardDel { spec } => done(self.forward_del(&spec)),
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
            Request::NetUpdate(u) => done(self.update(&u)),
            Request::Shutdown => {
                log!("shutdown requested");
                self.stop = true;
                Response::ok(&serde_json::Value::Null)
            }
            _ => Response::err("unsupported request"),
        })
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
}
