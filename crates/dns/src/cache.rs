//! The answer cache: upstream answers by question, least recently used out first.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use hickory_proto::op::Message;

use crate::wire::{age, QuestionKey};

#[derive(Debug)]
struct Entry {
    msg: Message,
    stored: Instant,
    ttl: u32,
    seq: u64,
}

/// Upstream answers keyed by (lowercase name, type, class).
///
/// Bound: at most `capacity` entries; inserting into a full cache evicts the least
/// recently used entry. Expired entries are dropped when looked up or evicted.
#[derive(Debug)]
pub(crate) struct Cache {
    map: HashMap<QuestionKey, Entry>,
    /// Recency: sequence number → key; the first is the least recently used.
    order: BTreeMap<u64, QuestionKey>,
    next_seq: u64,
    capacity: usize,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            capacity,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    /// Changes the bound, evicting the least recently used entries over it.
    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.map.len() > capacity {
            self.evict_one();
        }
    }

    fn bump(&mut self) -> u64 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    fn evict_one(&mut self) {
        if let Some((_, k)) = self.order.pop_first() {
            self.map.remove(&k);
        }
    }

    /// The answer for `key` with its TTLs lowered by the time it spent in the cache;
    /// `None` if absent or expired (an expired entry is removed).
    pub(crate) fn get(&mut self, key: &QuestionKey, now: Instant) -> Option<Message> {
        let seq = self.bump();
        let e = self.map.get_mut(key)?;
        let elapsed = now.saturating_duration_since(e.stored).as_secs();
        if elapsed >= u64::from(e.ttl) {
            let old = e.seq;
            self.map.remove(key);
            self.order.remove(&old);
            return None;
        }
        let old = std::mem::replace(&mut e.seq, seq);
        let mut msg = e.msg.clone();
        age(&mut msg, u32::try_from(elapsed).unwrap_or(u32::MAX));
        self.order.remove(&old);
        self.order.insert(seq, key.clone());
        Some(msg)
    }

    /// Stores `msg` for `ttl` seconds from `now`.
    pub(crate) fn insert(&mut self, key: QuestionKey, msg: Message, ttl: u32, now: Instant) {
        if self.capacity == 0 || ttl == 0 {
            return;
        }
        if let Some(old) = self.map.remove(&key) {
            self.order.remove(&old.seq);
        }
        while self.map.len() >= self.capacity {
            self.evict_one();
        }
        let seq = self.bump();
        self.order.insert(seq, key.clone());
        self.map.insert(
            key,
            Entry {
                msg,
                stored: now,
                ttl,
                seq,
            },
        );
    }
}
