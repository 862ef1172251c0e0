//! Forwarding to upstream servers: the route of a name, the queries in flight and
//! their retries, the answers, and the loop probes that keep the gateway from
//! forwarding to itself.

use super::*;

impl Server {
    /// Forgets loop marks and old probes; reports own-address upstreams; probes the
    /// others.
    pub(super) fn restart_probes(&mut self, upstreams: &[SocketAddr]) {
        self.looping.clear();
        self.no_upstream_reported = false;
        for (_, p) in self.probes.drain() {
            self.by_upstream.remove(&(p.upstream, p.id));
        }
        self.probe_names.clear();
        for &u in upstreams {
            if self.config.is_own_address(u.ip()) {
                self.push_event(Event::UpstreamIsSelf { upstream: u });
                continue;
            }
            let id = fresh_id(&mut self.rng, &self.by_upstream, u);
            let label = format!("{:016x}", self.rng.next_u64());
            let Some(name) = fqdn(&format!("{label}.{LOOP_CHECK_ZONE}")) else {
                continue;
            };
            let Ok(payload) = wire::probe_query(id, &name) else {
                inc(&mut self.stats.encode_errors);
                continue;
            };
            let token = self.token();
            let k = key(&name);
            self.by_upstream.insert((u, id), Pending::Probe(token));
            self.probe_names.insert(k.clone(), token);
            self.probes.insert(
                token,
                Probe {
                    key: k,
                    upstream: u,
                    id,
                },
            );
            self.send_upstream(u, payload);
        }
    }

    pub(super) fn loop_detected(&mut self, token: u64) {
        let Some(p) = self.probes.remove(&token) else {
            return;
        };
        self.probe_names.remove(&p.key);
        self.by_upstream.remove(&(p.upstream, p.id));
        if self.looping.insert(p.upstream) {
            self.push_event(Event::UpstreamLoop {
                upstream: p.upstream,
            });
        }
    }

    pub(super) fn probe_answer(&mut self, token: u64, payload: &[u8]) {
        let Some(p) = self.probes.get(&token) else {
            return;
        };
        let expected = (
            p.key.clone(),
            u16::from(RecordType::TXT),
            u16::from(DNSClass::IN),
        );
        match parse_upstream(payload, &expected) {
            UpstreamReply::Malformed => self.stats.drop(DropReason::UpstreamMalformed),
            UpstreamReply::Mismatch => self.stats.drop(DropReason::UpstreamMismatch),
            UpstreamReply::Answer(_) => {
                // The upstream answered: no loop through it (so far). Consumed.
                inc(&mut self.stats.upstream_answers);
                if let Some(p) = self.probes.remove(&token) {
                    self.probe_names.remove(&p.key);
                    self.by_upstream.remove(&(p.upstream, p.id));
                }
            }
        }
    }

    pub(super) fn usable(&self, list: &[SocketAddr]) -> Vec<SocketAddr> {
        list.iter()
            .filter(|u| !self.looping.contains(u))
            .copied()
            .collect()
    }

    /// Where a name not in the local data goes: the most specific zone rule (on a tie,
    /// forwarding wins over local), then `localPtr`, then plain names, then the general
    /// upstreams.
    pub(super) fn route(&self, qname: &Name) -> Route {
        let mut best: Option<(usize, &Rule)> = None;
        for (zone, rule) in &self.rules {
            if !zone.zone_of(qname) {
                continue;
            }
            let n = zone.iter().count();
            let better = match best {
                None => true,
                Some((bn, br)) => {
                    n > bn
                        || (n == bn
                            && matches!(br, Rule::Local)
                            && matches!(rule, Rule::Servers(_)))
                }
            };
            if better {
                best = Some((n, rule));
            }
        }
        if let Some((_, rule)) = best {
            return match rule {
                Rule::Local => Route::Local,
                Rule::Servers(list) => Route::Forward(self.usable(list)),
            };
        }
        if let Some(ip) = parse_reverse(&key(qname)) {
            if self.config.local_ptr.iter().any(|s| s.contains(ip)) {
                return Route::Local;
            }
        }
        // dnsmasq `domain-needed`: plain names are not forwarded.
        if qname.iter().count() == 1 && !self.config.forward_plain_names {
            return Route::Local;
        }
        if self.has_general {
            return Route::Forward(self.usable(&self.general));
        }
        if self.config.isolated {
            return Route::Refused;
        }
        Route::Forward(self.usable(&self.system))
    }

    // ----- forwarding -----

    pub(super) fn forward(
        &mut self,
        now: Instant,
        client: SocketAddr,
        asker: Asker,
        upstreams: Vec<SocketAddr>,
    ) -> Option<Vec<u8>> {
        let k = question_key(&asker.question);
        if let Some(msg) = self.cache.get(&k, now) {
            inc(&mut self.stats.cache_hits);
            return self.relay(&msg, &asker);
        }
        let Some(&first) = upstreams.first() else {
            if !self.no_upstream_reported {
                self.no_upstream_reported = true;
                self.push_event(Event::NoUpstream {
                    name: display_name(asker.question.name()),
                    qtype: wire::qtype_name(&asker.question),
                });
            }
            inc(&mut self.stats.servfail);
            return self.reply(&asker, ResponseCode::ServFail, false, Vec::new());
        };
        let max_total = self.config.limits.max_in_flight;
        let max_client = self.config.limits.max_in_flight_per_client;
        if self.waiting >= max_total {
            if !self.flood_reported {
                self.flood_reported = true;
                self.push_event(Event::InFlightLimit { limit: max_total });
            }
            self.stats.drop(DropReason::InFlightLimit);
            return None;
        }
        let ip = client.ip();
        if self.per_client.get(&ip).copied().unwrap_or(0) >= max_client {
            let limit = max_client;
            // Tracked only for clients with queries in flight (a limit of 0 would
            // otherwise let every address of the subnet into the set).
            if self.per_client.contains_key(&ip) && self.limited_clients.insert(ip) {
                self.push_event(Event::ClientLimit { client: ip, limit });
            }
            self.stats.drop(DropReason::ClientLimit);
            return None;
        }
        if let Some(f) = self.by_key.get(&k).and_then(|t| self.inflight.get_mut(t)) {
            f.waiters.push(Waiter { client, asker });
            self.add_waiter(ip);
            inc(&mut self.stats.coalesced);
            return None;
        }
        let id = fresh_id(&mut self.rng, &self.by_upstream, first);
        let dnssec_ok = asker.edns.is_some_and(|e| e.dnssec_ok);
        let Ok(payload) = wire::upstream_query(id, &asker.question, asker.cd, dnssec_ok) else {
            inc(&mut self.stats.encode_errors);
            return None;
        };
        let token = self.token();
        let deadline = after(now, self.config.limits.upstream_timeout);
        self.inflight.insert(
            token,
            InFlight {
                key: k.clone(),
                question: asker.question.clone(),
                upstreams,
                current: 0,
                sent: vec![(first, id)],
                deadline,
                cd: asker.cd,
                dnssec_ok,
                waiters: vec![Waiter { client, asker }],
            },
        );
        self.by_key.insert(k, token);
        self.by_upstream.insert((first, id), Pending::Query(token));
        self.deadlines.insert((deadline, token));
        self.add_waiter(ip);
        inc(&mut self.stats.forwarded);
        self.send_upstream(first, payload);
        None
    }

    /// Asks the next upstream of `token`, or gives its clients SERVFAIL after the last.
    pub(super) fn advance(&mut self, token: u64, now: Instant) {
        let timeout = self.config.limits.upstream_timeout;
        let Some(f) = self.inflight.get_mut(&token) else {
            return;
        };
        self.deadlines.remove(&(f.deadline, token));
        f.current = f.current.saturating_add(1);
        let Some(&next) = f.upstreams.get(f.current) else {
            let event = Event::UpstreamsFailed {
                name: display_name(f.question.name()),
                qtype: wire::qtype_name(&f.question),
            };
            self.push_event(event);
            self.finish(token, None);
            return;
        };
        let id = fresh_id(&mut self.rng, &self.by_upstream, next);
        let Ok(payload) = wire::upstream_query(id, &f.question, f.cd, f.dnssec_ok) else {
            inc(&mut self.stats.encode_errors);
            self.finish(token, None);
            return;
        };
        f.deadline = after(now, timeout);
        f.sent.push((next, id));
        self.deadlines.insert((f.deadline, token));
        self.by_upstream.insert((next, id), Pending::Query(token));
        self.send_upstream(next, payload);
    }

    pub(super) fn upstream_answer(
        &mut self,
        now: Instant,
        token: u64,
        from: SocketAddr,
        payload: &[u8],
    ) {
        let Some(f) = self.inflight.get(&token) else {
            self.stats.drop(DropReason::UpstreamUnexpected);
            return;
        };
        let msg = match parse_upstream(payload, &f.key) {
            UpstreamReply::Malformed => {
                self.stats.drop(DropReason::UpstreamMalformed);
                return;
            }
            UpstreamReply::Mismatch => {
                self.stats.drop(DropReason::UpstreamMismatch);
                return;
            }
            UpstreamReply::Answer(m) => m,
        };
        inc(&mut self.stats.upstream_answers);
        if is_failure(&msg) {
            let is_current = f.upstreams.get(f.current) == Some(&from);
            let has_next = f.current.saturating_add(1) < f.upstreams.len();
            if !is_current {
                // A late failure from an upstream already given up on: keep waiting.
                return;
            }
            if has_next {
                self.advance(token, now);
                return;
            }
        }
        let limits = &self.config.limits;
        if payload.len() <= limits.max_cached_message {
            if let Some(ttl) = cache_ttl(&msg, limits.max_ttl, limits.max_negative_ttl) {
                let mut cached = (*msg).clone();
                wire::clamp_ttls(&mut cached, ttl);
                self.cache.insert(f.key.clone(), cached, ttl, now);
            }
        }
        self.finish(token, Some(&msg));
    }

    /// Ends `token`: its clients get `answer`, or SERVFAIL if `None`.
    pub(super) fn finish(&mut self, token: u64, answer: Option<&Message>) {
        let Some(f) = self.inflight.remove(&token) else {
            return;
        };
        if self.by_key.get(&f.key) == Some(&token) {
            self.by_key.remove(&f.key);
        }
        for pair in &f.sent {
            self.by_upstream.remove(pair);
        }
        self.deadlines.remove(&(f.deadline, token));
        for w in f.waiters {
            self.remove_waiter(w.client.ip());
            let payload = match answer {
                Some(m) => self.relay(m, &w.asker),
                None => {
                    inc(&mut self.stats.servfail);
                    self.reply(&w.asker, ResponseCode::ServFail, false, Vec::new())
                }
            };
            if let Some(payload) = payload {
                if self.answers.len() >= self.queue_cap() {
                    self.answers.pop_front();
                    self.stats.drop(DropReason::QueueFull);
                }
                self.answers.push_back(Answer {
                    client: w.client,
                    transport: w.asker.transport,
                    payload,
                });
            }
        }
    }

    pub(super) fn add_waiter(&mut self, ip: IpAddr) {
        self.waiting = self.waiting.saturating_add(1);
        let c = self.per_client.entry(ip).or_insert(0);
        *c = c.saturating_add(1);
    }

    pub(super) fn remove_waiter(&mut self, ip: IpAddr) {
        self.waiting = self.waiting.saturating_sub(1);
        if self.waiting < self.config.limits.max_in_flight {
            self.flood_reported = false;
        }
        if let Some(c) = self.per_client.get_mut(&ip) {
            *c = c.saturating_sub(1);
            if *c < self.config.limits.max_in_flight_per_client {
                self.limited_clients.remove(&ip);
            }
            if *c == 0 {
                self.per_client.remove(&ip);
            }
        }
    }

    // ----- output -----

    pub(super) fn queue_cap(&self) -> usize {
        self.config.limits.max_in_flight.saturating_mul(2).max(64)
    }

    pub(super) fn send_upstream(&mut self, to: SocketAddr, payload: Vec<u8>) {
        if self.upstream_out.len() >= self.queue_cap() {
            self.upstream_out.pop_front();
            self.stats.drop(DropReason::QueueFull);
        }
        inc(&mut self.stats.upstream_queries);
        self.upstream_out.push_back(UpstreamQuery { to, payload });
    }
}
