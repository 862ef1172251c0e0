//! The forwarding database: (VLAN, MAC) → port, with aging and a hard bound.
//!
//! # Bound and fairness
//! The table never holds more than `max_entries` entries. When it is full and a new
//! station must be learned, one entry is evicted from the port that holds the most
//! entries (the oldest one that port learned). A port flooding random source MACs
//! therefore only ever evicts its own entries once it holds the largest share, and
//! cannot flush the stations behind the other ports.
//!
//! # Aging
//! An entry not refreshed for the aging time is ignored by [`Fdb::lookup`] at once
//! and freed by the next [`Fdb::sweep`]; aging is exact between sweeps.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::addr::{MacAddr, PortId, VlanId};
use crate::time::Instant;

/// (VLAN, MAC) packed into one integer: VLAN in bits 48..60, MAC in bits 0..48.
type Key = u64;

fn key(vlan: VlanId, mac: MacAddr) -> Key {
    (u64::from(vlan.get()) << 48) | mac.to_u64()
}

fn unkey(k: Key) -> (VlanId, MacAddr) {
    let vid = u16::try_from(k >> 48).unwrap_or(0);
    (
        VlanId::new(vid).unwrap_or(VlanId::UNTAGGED),
        MacAddr::from_u64(k),
    )
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    port: PortId,
    last_seen: Instant,
    /// Learn generation: tells a live entry from a stale one in a port's learn queue.
    seq: u64,
}

/// Per-port bookkeeping: how many entries the port holds and in which order it learned them.
#[derive(Debug, Default)]
struct PortEntries {
    count: usize,
    /// (key, seq) in learn order; may hold stale pairs, dropped lazily.
    order: VecDeque<(Key, u64)>,
}

/// What [`Fdb::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// The entry existed on this port and was refreshed.
    Refreshed,
    /// A new entry was added.
    New,
    /// The station moved here from another port.
    Moved {
        /// The port it was on.
        from: PortId,
    },
}

/// One entry as reported by [`Fdb::entries`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    /// The VLAN the station was seen on ([`VlanId::UNTAGGED`] for untagged frames).
    pub vlan: VlanId,
    /// The station's address.
    pub mac: MacAddr,
    /// The port it was last seen on.
    pub port: PortId,
    /// Time since it was last seen.
    pub age: Duration,
}

/// Counters of the table as a whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdbStats {
    /// Entries learned (new stations).
    pub learned: u64,
    /// Station moves from one port to another.
    pub moves: u64,
    /// Entries evicted because the table was full.
    pub evictions: u64,
    /// Entries freed because they aged out.
    pub aged: u64,
}

/// A station that moved from one port to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StationMove {
    /// Its VLAN.
    pub vlan: VlanId,
    /// Its MAC address.
    pub mac: MacAddr,
    /// Where it was.
    pub from: PortId,
    /// Where it is now.
    pub to: PortId,
}

/// The forwarding database. Holds at most `max_entries` entries (see the module doc).
#[derive(Debug)]
pub struct Fdb {
    last_move: Option<StationMove>,
    map: HashMap<Key, Entry, foldhash::fast::RandomState>,
    ports: Vec<PortEntries>,
    max_entries: usize,
    aging: Duration,
    next_seq: u64,
    stats: FdbStats,
}

impl Fdb {
    /// An empty table holding at most `max_entries` (at least 1) entries.
    pub fn new(max_entries: usize, aging: Duration) -> Self {
        let max_entries = max_entries.max(1);
        let mut map = HashMap::with_hasher(foldhash::fast::RandomState::default());
        // Reserve up to a modest size so steady-state learning does not allocate.
        map.reserve(max_entries.min(1 << 16));
        Self {
            last_move: None,
            map,
            ports: Vec::new(),
            max_entries,
            aging,
            next_seq: 0,
            stats: FdbStats::default(),
        }
    }

    /// Number of entries, aged-out ones not yet swept included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bound on the number of entries.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// The aging time.
    pub fn aging(&self) -> Duration {
        self.aging
    }

    /// Table-wide counters.
    pub fn stats(&self) -> FdbStats {
        self.stats
    }

    /// The latest station move, if any (with [`FdbStats::moves`], enough for a caller
    /// to report moves without a queue in the table).
    pub fn last_move(&self) -> Option<StationMove> {
        self.last_move
    }

    /// Number of entries that point at `port`.
    pub fn port_len(&self, port: PortId) -> usize {
        self.ports.get(port.index()).map_or(0, |p| p.count)
    }

    fn port_entries(&mut self, port: PortId) -> &mut PortEntries {
        let i = port.index();
        if self.ports.len() <= i {
            self.ports.resize_with(i + 1, PortEntries::default);
        }
        &mut self.ports[i]
    }

    fn is_expired(&self, now: Instant, e: &Entry) -> bool {
        now.saturating_duration_since(e.last_seen) > self.aging
    }

    /// Records that `mac` on `vlan` was seen arriving on `port` at `now`.
    #[inline]
    pub fn learn(&mut self, now: Instant, vlan: VlanId, mac: MacAddr, port: PortId) -> Learned {
        let k = key(vlan, mac);
        if let Some(e) = self.map.get_mut(&k) {
            if e.port == port {
                e.last_seen = now;
                return Learned::Refreshed;
            }
            let from = e.port;
            let seq = self.next_seq;
            self.next_seq += 1;
            *e = Entry {
                port,
                last_seen: now,
                seq,
            };
            if let Some(old) = self.ports.get_mut(from.index()) {
                old.count = old.count.saturating_sub(1);
            }
            self.push_order(port, k, seq);
            self.stats.moves += 1;
            self.last_move = Some(StationMove {
                vlan,
                mac,
                from,
                to: port,
            });
            return Learned::Moved { from };
        }
        if self.map.len() >= self.max_entries {
            self.evict_one();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(
            k,
            Entry {
                port,
                last_seen: now,
                seq,
            },
        );
        self.push_order(port, k, seq);
        self.stats.learned += 1;
        Learned::New
    }

    fn push_order(&mut self, port: PortId, k: Key, seq: u64) {
        let pe = self.port_entries(port);
        pe.count += 1;
        pe.order.push_back((k, seq));
        if pe.order.len() > 2 * pe.count + 64 {
            self.compact(port);
        }
    }

    /// Drops the stale pairs from a port's learn queue.
    fn compact(&mut self, port: PortId) {
        let Some(pe) = self.ports.get_mut(port.index()) else {
            return;
        };
        let map = &self.map;
        pe.order
            .retain(|(k, seq)| map.get(k).is_some_and(|e| e.port == port && e.seq == *seq));
    }

    /// Evicts the oldest-learned entry of the port holding the most entries.
    fn evict_one(&mut self) {
        let Some(victim) = self
            .ports
            .iter()
            .enumerate()
            .max_by_key(|(_, p)| p.count)
            .and_then(|(i, p)| (p.count > 0).then_some(i))
        else {
            return;
        };
        let port = PortId(u16::try_from(victim).unwrap_or(u16::MAX));
        let pe = &mut self.ports[victim];
        while let Some((k, seq)) = pe.order.pop_front() {
            if self
                .map
                .get(&k)
                .is_some_and(|e| e.port == port && e.seq == seq)
            {
                self.map.remove(&k);
                pe.count = pe.count.saturating_sub(1);
                self.stats.evictions += 1;
                return;
            }
        }
        // The queue held no live pair: counts and queue disagree. Repair by recounting.
        pe.count = self.map.values().filter(|e| e.port == port).count();
    }

    /// The port `mac` on `vlan` was last seen on, unless unknown or aged out.
    #[inline]
    pub fn lookup(&self, now: Instant, vlan: VlanId, mac: MacAddr) -> Option<PortId> {
        let e = self.map.get(&key(vlan, mac))?;
        (!self.is_expired(now, e)).then_some(e.port)
    }

    /// Frees every entry older than the aging time.
    pub fn sweep(&mut self, now: Instant) {
        let aging = self.aging;
        let ports = &mut self.ports;
        let mut aged = 0;
        self.map.retain(|_, e| {
            let keep = now.saturating_duration_since(e.last_seen) <= aging;
            if !keep {
                aged += 1;
                if let Some(p) = ports.get_mut(e.port.index()) {
                    p.count = p.count.saturating_sub(1);
                }
            }
            keep
        });
        self.stats.aged += aged;
        for i in 0..self.ports.len() {
            let p = &self.ports[i];
            if p.order.len() > 2 * p.count + 64 {
                self.compact(PortId(u16::try_from(i).unwrap_or(u16::MAX)));
            }
        }
    }

    /// Removes every entry that points at `port` (the port was removed).
    pub fn flush_port(&mut self, port: PortId) {
        self.map.retain(|_, e| e.port != port);
        if let Some(p) = self.ports.get_mut(port.index()) {
            *p = PortEntries::default();
        }
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.map.clear();
        self.ports.clear();
    }

    /// The live (not aged-out) entries, in no particular order.
    pub fn entries(&self, now: Instant) -> impl Iterator<Item = FdbEntry> + '_ {
        self.map
            .iter()
            .filter(move |(_, e)| !self.is_expired(now, e))
            .map(move |(k, e)| {
                let (vlan, mac) = unkey(*k);
                FdbEntry {
                    vlan,
                    mac,
                    port: e.port,
                    age: now.saturating_duration_since(e.last_seen),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u64) -> MacAddr {
        MacAddr::from_u64(0x0200_0000_0000 | n)
    }

    #[test]
    fn learn_lookup_move() {
        let mut f = Fdb::new(16, Duration::from_secs(300));
        let t = Instant::from_secs(1);
        assert_eq!(
            f.learn(t, VlanId::UNTAGGED, mac(1), PortId(0)),
            Learned::New
        );
        assert_eq!(
            f.learn(t, VlanId::UNTAGGED, mac(1), PortId(0)),
            Learned::Refreshed
        );
        assert_eq!(f.lookup(t, VlanId::UNTAGGED, mac(1)), Some(PortId(0)));
        assert_eq!(
            f.lookup(t, VlanId::new(7).unwrap(), mac(1)),
            None,
            "keyed by VLAN too"
        );
        assert_eq!(
            f.learn(t, VlanId::UNTAGGED, mac(1), PortId(3)),
            Learned::Moved { from: PortId(0) }
        );
        assert_eq!(f.lookup(t, VlanId::UNTAGGED, mac(1)), Some(PortId(3)));
        assert_eq!((f.port_len(PortId(0)), f.port_len(PortId(3))), (0, 1));
        assert_eq!(f.stats().moves, 1);
    }

    #[test]
    fn repeated_moves_keep_queues_bounded() {
        let mut f = Fdb::new(16, Duration::from_secs(300));
        for i in 0..10_000u64 {
            f.learn(
                Instant::from_micros(i),
                VlanId::UNTAGGED,
                mac(1),
                PortId((i % 2) as u16),
            );
        }
        assert!(f.ports.iter().all(|p| p.order.len() <= 2 * p.count + 65));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn entries_round_trip_key() {
        let mut f = Fdb::new(16, Duration::from_secs(300));
        let v = VlanId::new(4095).unwrap();
        f.learn(Instant::from_secs(1), v, mac(0xabcdef), PortId(2));
        let e: Vec<_> = f.entries(Instant::from_secs(3)).collect();
        assert_eq!(
            e,
            vec![FdbEntry {
                vlan: v,
                mac: mac(0xabcdef),
                port: PortId(2),
                age: Duration::from_secs(2)
            }]
        );
    }
}
