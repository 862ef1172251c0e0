//! Pool addresses seen in use on the segment ([`crate::Server::note_in_use`]), bounded
//! per MAC and per port so that no station can hold the pool with ARP alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::SystemTime;

/// How many seen addresses one MAC keeps out of offers at most; older ones are
/// forgotten first. A station uses one address per interface: the second is room for
/// a change of address.
pub const SEEN_PER_MAC: usize = 2;

/// How many seen addresses one port keeps out of offers at most, in all of its MACs,
/// when [`crate::Server::set_port_cap`] sets no cap (with a cap, the cap is the
/// bound); older ones are forgotten first. 32 is switchd's default
/// `--dhcp-max-clients-per-port`.
pub const SEEN_PER_PORT: usize = 32;

/// Why a seen address was forgotten before [`crate::SEEN_HOLD`] ran out (counted in
/// [`crate::Stats::claims_evicted`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimEviction {
    /// Its MAC was seen using more than [`SEEN_PER_MAC`] addresses.
    #[error("more addresses than a MAC may hold")]
    PerMac,
    /// Its port was seen using more addresses than its bound ([`SEEN_PER_PORT`] or the
    /// port cap).
    #[error("more addresses than a port may hold")]
    PerPort,
}

impl ClaimEviction {
    /// Every reason.
    pub const ALL: [Self; 2] = [Self::PerMac, Self::PerPort];

    /// A short name for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerMac => "per-mac",
            Self::PerPort => "per-port",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Self::PerMac => 0,
            Self::PerPort => 1,
        }
    }
}

/// One address seen in use: by which station, on which port, kept until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) mac: [u8; 6],
    pub(crate) port: Option<u32>,
    pub(crate) until: SystemTime,
}

/// The seen addresses, by address, with the indices that bound them.
///
/// Bounds: one claim per address (the server gives it only addresses of its ranges),
/// at most [`SEEN_PER_MAC`] per MAC and at most the caller's bound per port. "Oldest"
/// is the claim whose hold ends first (the one last seen longest ago).
#[derive(Debug, Default)]
pub(crate) struct SeenTable {
    claims: BTreeMap<Ipv4Addr, Claim>,
    /// Every claim, by the end of its hold.
    ends: BTreeSet<(SystemTime, Ipv4Addr)>,
    /// The claims of each port (`None`: the driver did not say), oldest first.
    by_port: HashMap<Option<u32>, BTreeSet<(SystemTime, Ipv4Addr)>>,
    /// The claims of each MAC, oldest first (at most [`SEEN_PER_MAC`]).
    by_mac: HashMap<[u8; 6], Vec<(SystemTime, Ipv4Addr)>>,
}

impl SeenTable {
    /// The claim on `ip`, if any.
    pub(crate) fn get(&self, ip: Ipv4Addr) -> Option<&Claim> {
        self.claims.get(&ip)
    }

    /// Every claim, by address.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, &Claim)> {
        self.claims.iter().map(|(ip, c)| (*ip, c))
    }

    /// Records that `claim.mac` on `claim.port` uses `ip` (replacing whatever claim
    /// `ip` had), then forgets the oldest claims of that MAC past [`SEEN_PER_MAC`] and
    /// of that port past `port_bound`. Returns what was forgotten, and why.
    pub(crate) fn note(
        &mut self,
        ip: Ipv4Addr,
        claim: Claim,
        port_bound: usize,
    ) -> Vec<(Ipv4Addr, ClaimEviction)> {
        if self.refresh(ip, claim) {
            return Vec::new();
        }
        self.remove(ip);
        self.claims.insert(ip, claim);
        let key = (claim.until, ip);
        self.ends.insert(key);
        self.by_port.entry(claim.port).or_default().insert(key);
        let of_mac = self.by_mac.entry(claim.mac).or_default();
        let at = of_mac.partition_point(|k| *k < key);
        of_mac.insert(at, key);

        let mut evicted = Vec::new();
        while let Some(&(_, old)) = self
            .by_mac
            .get(&claim.mac)
            .filter(|v| v.len() > SEEN_PER_MAC)
            .and_then(|v| v.first())
        {
            self.remove(old);
            evicted.push((old, ClaimEviction::PerMac));
        }
        while let Some(&(_, old)) = self
            .by_port
            .get(&claim.port)
            .filter(|s| s.len() > port_bound)
            .and_then(BTreeSet::first)
        {
            self.remove(old);
            evicted.push((old, ClaimEviction::PerPort));
        }
        evicted
    }

    /// Extends the hold of `ip`'s claim when the same station on the same port claims it
    /// again (every ARP request of a guest does), in place: no index entry is dropped
    /// and made again, so a refresh allocates nothing and no bound changes. False when
    /// the claim is new or changes hands.
    fn refresh(&mut self, ip: Ipv4Addr, claim: Claim) -> bool {
        let Some(c) = self
            .claims
            .get_mut(&ip)
            .filter(|c| c.mac == claim.mac && c.port == claim.port)
        else {
            return false;
        };
        let (old, key) = ((c.until, ip), (claim.until, ip));
        c.until = claim.until;
        self.ends.remove(&old);
        self.ends.insert(key);
        if let Some(s) = self.by_port.get_mut(&claim.port) {
            s.remove(&old);
            s.insert(key);
        }
        if let Some(v) = self.by_mac.get_mut(&claim.mac) {
            v.retain(|k| *k != old);
            let at = v.partition_point(|k| *k < key);
            v.insert(at, key);
        }
        true
    }

    /// Forgets the claims whose hold ended at or before `now`.
    pub(crate) fn expire(&mut self, now: SystemTime) {
        while let Some(&(until, ip)) = self.ends.first() {
            if until > now {
                break;
            }
            self.remove(ip);
        }
    }

    /// Forgets the claim on `ip` (from every index).
    fn remove(&mut self, ip: Ipv4Addr) {
        let Some(c) = self.claims.remove(&ip) else {
            return;
        };
        let key = (c.until, ip);
        self.ends.remove(&key);
        if let Some(s) = self.by_port.get_mut(&c.port) {
            s.remove(&key);
            if s.is_empty() {
                self.by_port.remove(&c.port);
            }
        }
        if let Some(v) = self.by_mac.get_mut(&c.mac) {
            v.retain(|k| *k != key);
            if v.is_empty() {
                self.by_mac.remove(&c.mac);
            }
        }
    }

    /// Checks that the indices agree with the claims (tests).
    #[cfg(test)]
    pub(crate) fn check(&self, port_bound: usize) {
        assert_eq!(self.ends.len(), self.claims.len());
        let in_ports: usize = self.by_port.values().map(BTreeSet::len).sum();
        let in_macs: usize = self.by_mac.values().map(Vec::len).sum();
        assert_eq!((in_ports, in_macs), (self.claims.len(), self.claims.len()));
        for (ip, c) in &self.claims {
            assert!(self.ends.contains(&(c.until, *ip)));
            assert!(self.by_port[&c.port].contains(&(c.until, *ip)));
            assert!(self.by_mac[&c.mac].contains(&(c.until, *ip)));
        }
        assert!(self
            .by_mac
            .values()
            .all(|v| !v.is_empty() && v.len() <= SEEN_PER_MAC));
        assert!(self
            .by_port
            .values()
            .all(|s| !s.is_empty() && s.len() <= port_bound.max(1)));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn claim(mac: u8, port: u32, until: u64) -> Claim {
        Claim {
            mac: [2, 0, 0, 0, 0, mac],
            port: Some(port),
            until: at(until),
        }
    }

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }

    #[test]
    fn a_mac_keeps_its_newest_addresses() {
        let mut t = SeenTable::default();
        assert!(t.note(ip(1), claim(1, 1, 10), 32).is_empty());
        assert!(t.note(ip(2), claim(1, 1, 11), 32).is_empty());
        assert_eq!(
            t.note(ip(3), claim(1, 1, 12), 32),
            [(ip(1), ClaimEviction::PerMac)]
        );
        // seen again: .2 is now the newest, so .3 goes next
        assert!(t.note(ip(2), claim(1, 1, 13), 32).is_empty());
        assert_eq!(
            t.note(ip(4), claim(1, 1, 14), 32),
            [(ip(3), ClaimEviction::PerMac)]
        );
        t.check(32);
        assert_eq!(t.iter().map(|(a, _)| a).collect::<Vec<_>>(), [ip(2), ip(4)]);
    }

    #[test]
    fn a_port_keeps_its_newest_addresses_over_all_its_macs() {
        let mut t = SeenTable::default();
        t.note(ip(100), claim(100, 2, 5), 3); // another port: untouched
        for n in 1..=10 {
            let evicted = t.note(ip(n), claim(n, 1, u64::from(n)), 3);
            if n > 3 {
                assert_eq!(evicted, [(ip(n - 3), ClaimEviction::PerPort)]);
            }
        }
        t.check(3);
        assert_eq!(
            t.iter().map(|(a, _)| a).collect::<Vec<_>>(),
            [ip(8), ip(9), ip(10), ip(100)]
        );
        // a bound of 0 keeps nothing of that port
        assert_eq!(
            t.note(ip(50), claim(50, 9, 20), 0),
            [(ip(50), ClaimEviction::PerPort)]
        );
        assert!(t.get(ip(50)).is_none());
    }

    #[test]
    fn an_address_claimed_again_moves_to_its_new_owner() {
        let mut t = SeenTable::default();
        t.note(ip(1), claim(1, 1, 10), 32);
        t.note(ip(1), claim(2, 2, 11), 32);
        t.check(32);
        assert_eq!(t.get(ip(1)), Some(&claim(2, 2, 11)));
        t.expire(at(10));
        assert!(t.get(ip(1)).is_some());
        t.expire(at(11));
        assert!(t.get(ip(1)).is_none());
        t.check(32);
        assert!(t.by_mac.is_empty() && t.by_port.is_empty() && t.ends.is_empty());
    }
}
