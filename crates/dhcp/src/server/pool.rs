//! Address selection: reservations, the pool, held offers and the indexes that map
//! clients to addresses.

use super::*;

impl Server {
    /// The reservation of a client: by client identifier first, then by MAC.
    pub(super) fn reservation_for(
        &self,
        mac: [u8; 6],
        client_id: Option<&[u8]>,
    ) -> Option<&Reservation> {
        let hosts = &self.config.hosts;
        client_id
            .and_then(|id| hosts.iter().find(|h| h.client_id.as_deref() == Some(id)))
            .or_else(|| hosts.iter().find(|h| h.mac == Some(mac)))
    }

    /// The lease time for `ip` given to a client with `reservation`.
    pub(super) fn lease_time(
        &self,
        reservation: Option<&Reservation>,
        ip: Ipv4Addr,
    ) -> LeaseDuration {
        reservation
            .map_or_else(|| self.config.range_lease(ip), |r| r.lease)
            .effective()
    }

    /// Whether the client may be given `ip` now; the NAK reason if not.
    /// `steal_offers`: whether an address held for another client's offer counts as free.
    pub(super) fn available_for(
        &self,
        now: SystemTime,
        ip: Ipv4Addr,
        req: &Request,
        key: &ClientKey,
        steal_offers: bool,
    ) -> Result<(), &'static str> {
        let c = &self.config;
        if !c.in_subnet(ip) {
            return Err("wrong network");
        }
        if ip == c.server_ip || (c.prefix < 31 && (ip == c.network() || ip == c.broadcast())) {
            return Err("address not available");
        }
        if self.leases.get(&ip).is_some_and(|l| l.key() != *key) {
            return Err("address in use");
        }
        let mut own_reservation = false;
        let hosts = self.reserved.get(&ip).into_iter().flatten();
        for h in hosts.filter_map(|&i| c.hosts.get(i)) {
            if h.matches(req.mac, req.client_id.as_deref()) {
                own_reservation = true;
            } else {
                return Err("address reserved");
            }
        }
        if self.quarantine.get(&ip).is_some_and(|t| *t > now) {
            return Err("address not available");
        }
        if !own_reservation
            && !self.leases.contains_key(&ip)
            && self
                .seen
                .get(ip)
                .is_some_and(|c| c.mac != req.mac && c.until > now)
        {
            return Err("address in use");
        }
        if !own_reservation && !c.in_ranges(ip) {
            return Err("address not available");
        }
        if !steal_offers
            && self
                .offers
                .get(&ip)
                .is_some_and(|o| o.key != *key && o.until > now)
        {
            return Err("address offered");
        }
        Ok(())
    }

    /// The address to offer a client, in dnsmasq's order of preference: its reserved
    /// address, its current lease, the address it was just offered, the address it had
    /// last (sticky), the one it asks for, then the first free address of the ranges.
    pub(super) fn pick_address(
        &self,
        now: SystemTime,
        req: &Request,
        key: &ClientKey,
    ) -> Option<Ipv4Addr> {
        let free = |ip: Ipv4Addr| self.available_for(now, ip, req, key, false).is_ok();
        let reservation = self.reservation_for(req.mac, req.client_id.as_deref());
        if let Some(fixed) = reservation.and_then(|r| r.ip) {
            if self.available_for(now, fixed, req, key, true).is_ok() {
                return Some(fixed);
            }
            // Leased to someone else (dnsmasq: "not using configured address"): fall back
            // to the pool.
        }
        let has_lease = self.by_key.get(key).copied();
        let pending = self
            .offers
            .iter()
            .find(|(_, o)| o.key == *key && o.until > now)
            .map(|(ip, _)| *ip);
        let remembered = self.previous_by_key.get(key).copied();
        for ip in [has_lease, pending, remembered, req.requested]
            .into_iter()
            .flatten()
        {
            if free(ip) {
                return Some(ip);
            }
        }
        if has_lease.is_none() && self.leases.len() >= self.config.lease_limit() {
            return None;
        }
        // First an address nobody had last (so returning clients find theirs free),
        // then any not held for another offer, then any at all.
        let someone_elses = |ip: Ipv4Addr| self.previous.get(&ip).is_some_and(|k| k != key);
        self.first_free(|ip| free(ip) && !someone_elses(ip))
            .or_else(|| self.first_free(free))
            .or_else(|| self.first_free(|ip| self.available_for(now, ip, req, key, true).is_ok()))
    }

    /// The first address of the ranges that `ok` accepts. Visits at most one address
    /// more per range than there are taken addresses in it; the run of leased
    /// addresses at the start of a range is skipped by walking the lease table, which
    /// is far cheaper than asking `ok` about each (a full /16 pool: see performance.md).
    pub(super) fn first_free(&self, ok: impl Fn(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
        for r in &self.config.ranges {
            let (start, end) = (u32::from(r.start), u32::from(r.end));
            let mut n = start;
            for ip in self
                .leases
                .range(r.start..=r.end)
                .map(|(ip, _)| u32::from(*ip))
            {
                if ip != n {
                    break;
                }
                match n.checked_add(1) {
                    Some(next) => n = next,
                    None => break,
                }
            }
            while n <= end {
                let ip = Ipv4Addr::from(n);
                if ok(ip) {
                    return Some(ip);
                }
                let Some(next) = n.checked_add(1) else { break };
                n = next;
            }
        }
        None
    }

    // --- Tables -----------------------------------------------------------------------

    pub(super) fn insert_lease(&mut self, lease: Lease) {
        if let Some(old) = self.remove_lease(lease.ip) {
            // Same address: a renewal (callers made sure it is the same client).
            drop(old);
        }
        if let Some(t) = lease.expires {
            self.expiries.insert((t, lease.ip));
        }
        self.by_key.insert(lease.key(), lease.ip);
        self.leases.insert(lease.ip, lease);
    }

    pub(super) fn remove_lease(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        let lease = self.leases.remove(&ip)?;
        if let Some(t) = lease.expires {
            self.expiries.remove(&(t, ip));
        }
        let key = lease.key();
        if self.by_key.get(&key) == Some(&ip) {
            self.by_key.remove(&key);
        }
        Some(lease)
    }

    /// Remembers that `key` last had `ip` (for sticky addresses).
    pub(super) fn remember(&mut self, ip: Ipv4Addr, key: ClientKey) {
        if let Some(old_ip) = self.previous_by_key.remove(&key) {
            self.previous.remove(&old_ip);
        }
        if let Some(old_key) = self.previous.insert(ip, key.clone()) {
            self.previous_by_key.remove(&old_key);
        }
        self.previous_by_key.insert(key, ip);
    }

    /// Forgets the memory of `ip` and of `key`'s last address.
    pub(super) fn forget(&mut self, ip: Ipv4Addr, key: &ClientKey) {
        if let Some(old_key) = self.previous.remove(&ip) {
            self.previous_by_key.remove(&old_key);
        }
        if let Some(old_ip) = self.previous_by_key.remove(key) {
            self.previous.remove(&old_ip);
        }
    }
}
