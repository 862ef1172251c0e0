//! The sans-IO DNS server: queries, upstream answers and time in; answers, upstream
//! queries and events out.
//!
//! # No-panic contract
//!
//! [`Server::handle_query`] and [`Server::handle_upstream`] take any bytes. The header
//! is read with checked slicing, the message is decoded by hickory (which reports
//! errors, not panics), every counter saturates, and time arithmetic is checked. What
//! does not make sense is a [`DropReason`], counted in [`Stats`].

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

use crate::cache::Cache;
use crate::config::DnsConfig;
use crate::event::Event;
use crate::local::{
    display_name, fqdn, key, parse_reverse, reverse_zone, LeaseNameError, LocalData, RecordRow,
};
use crate::wire::{
    self, cache_ttl, header_error, is_failure, parse_query, parse_upstream, question_key,
    raw_header, relay, respond, Asker, QuestionKey, RawHeader, Rejected, UpstreamReply,
};

mod upstream;

/// The zone of the loop probes' names. Names under it are never forwarded.
pub const LOOP_CHECK_ZONE: &str = "loop-check.vnet";

/// How a query reached the server.
///
/// A closed set, so not `#[non_exhaustive]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A UDP datagram to port 53: answers over 512 bytes (or the client's EDNS size)
    /// are truncated.
    Udp,
    /// A TCP connection to port 53 (the payload without its 2-byte length prefix).
    Tcp,
}

/// A query for the driver to send over UDP from the host to an upstream server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamQuery {
    /// The upstream server.
    pub to: SocketAddr,
    /// The DNS message.
    pub payload: Vec<u8>,
}

/// An answer to a forwarded query (or its SERVFAIL), to send to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The client, as given to [`Server::handle_query`].
    pub client: SocketAddr,
    /// How the query came (a TCP answer gets its length prefix from the driver).
    pub transport: Transport,
    /// The DNS message.
    pub payload: Vec<u8>,
}

/// Why a message was dropped without an answer. Counted in [`Stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// A query shorter than the DNS header.
    #[error("malformed query")]
    Malformed,
    /// A message with QR=1 sent to the server as a query (answering it could loop).
    #[error("not a query")]
    NotQuery,
    /// A query from an address outside the network: not an open resolver.
    #[error("client not on the network")]
    NotGuest,
    /// The client has [`Limits::max_in_flight_per_client`](crate::Limits) queries
    /// waiting for upstreams already.
    #[error("client in-flight limit reached")]
    ClientLimit,
    /// The server has [`Limits::max_in_flight`](crate::Limits) queries waiting already.
    #[error("in-flight limit reached")]
    InFlightLimit,
    /// One of the server's own loop probes, come back through a looping upstream.
    #[error("own loop probe")]
    LoopProbe,
    /// An upstream message that is not a decodable response with one question.
    #[error("malformed upstream answer")]
    UpstreamMalformed,
    /// An upstream message from an address, or with an id, no query was sent with.
    #[error("unexpected upstream answer")]
    UpstreamUnexpected,
    /// An upstream answer to another question than the one sent with its id.
    #[error("upstream answer to another question")]
    UpstreamMismatch,
    /// An answer or upstream query pushed out of its queue because the driver did not
    /// drain it.
    #[error("queue full")]
    QueueFull,
}

impl DropReason {
    /// Every reason.
    pub const ALL: [Self; 10] = [
        Self::Malformed,
        Self::NotQuery,
        Self::NotGuest,
        Self::ClientLimit,
        Self::InFlightLimit,
        Self::LoopProbe,
        Self::UpstreamMalformed,
        Self::UpstreamUnexpected,
        Self::UpstreamMismatch,
        Self::QueueFull,
    ];

    /// A short name for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::NotQuery => "not-query",
            Self::NotGuest => "not-guest",
            Self::ClientLimit => "client-limit",
            Self::InFlightLimit => "in-flight-limit",
            Self::LoopProbe => "loop-probe",
            Self::UpstreamMalformed => "upstream-malformed",
            Self::UpstreamUnexpected => "upstream-unexpected",
            Self::UpstreamMismatch => "upstream-mismatch",
            Self::QueueFull => "queue-full",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Malformed => 0,
            Self::NotQuery => 1,
            Self::NotGuest => 2,
            Self::ClientLimit => 3,
            Self::InFlightLimit => 4,
            Self::LoopProbe => 5,
            Self::UpstreamMalformed => 6,
            Self::UpstreamUnexpected => 7,
            Self::UpstreamMismatch => 8,
            Self::QueueFull => 9,
        }
    }
}

/// The server's counters and table sizes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Queries from guests (a header that parsed, QR=0).
    pub queries: u64,
    /// Queries answered from the network's own data (records, NODATA, NXDOMAIN).
    pub answered_locally: u64,
    /// Queries that started an upstream query.
    pub forwarded: u64,
    /// Queries that joined an upstream query already in flight for the same question.
    pub coalesced: u64,
    /// Queries answered from the cache.
    pub cache_hits: u64,
    /// Messages handed to the driver for upstreams (retries and loop probes included).
    pub upstream_queries: u64,
    /// Upstream answers accepted.
    pub upstream_answers: u64,
    /// Upstream queries that timed out.
    pub upstream_timeouts: u64,
    /// SERVFAIL answers sent (no upstream, or none answered).
    pub servfail: u64,
    /// REFUSED answers sent (isolated network, class other than IN, zone transfers).
    pub refused: u64,
    /// FORMERR and BADVERS answers sent.
    pub formerr: u64,
    /// NOTIMP answers sent (opcodes other than QUERY).
    pub notimp: u64,
    /// Answers truncated (TC=1) to fit the client's UDP size.
    pub truncated: u64,
    /// Answers that could not be encoded (a bug or hostile upstream data: nothing sent).
    pub encode_errors: u64,
    /// Events not queued because the driver did not drain them.
    pub events_dropped: u64,
    /// Lease host names not served (invalid, outside the network, or the table full).
    pub lease_names_rejected: u64,
    /// Client queries waiting for an upstream now.
    pub in_flight: usize,
    /// Answers in the cache now.
    pub cache_entries: usize,
    /// Lease names served now.
    pub lease_names: usize,
    /// Messages dropped, by reason: read with [`Stats::dropped`].
    dropped: [u64; DropReason::ALL.len()],
}

impl Stats {
    /// Messages dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason.index()).copied().unwrap_or(0)
    }

    /// Messages dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().fold(0, |a, b| a.saturating_add(*b))
    }

    /// Every counter and gauge by name (`dropped_<reason>` for each [`DropReason`],
    /// dashes as underscores): what listings and metrics show, so none is left out.
    pub fn counters(&self) -> impl Iterator<Item = (std::borrow::Cow<'static, str>, u64)> + '_ {
        let gauge = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        [
            ("queries", self.queries),
            ("answered_locally", self.answered_locally),
            ("forwarded", self.forwarded),
            ("coalesced", self.coalesced),
            ("cache_hits", self.cache_hits),
            ("upstream_queries", self.upstream_queries),
            ("upstream_answers", self.upstream_answers),
            ("upstream_timeouts", self.upstream_timeouts),
            ("servfail", self.servfail),
            ("refused", self.refused),
            ("formerr", self.formerr),
            ("notimp", self.notimp),
            ("truncated", self.truncated),
            ("encode_errors", self.encode_errors),
            ("events_dropped", self.events_dropped),
            ("lease_names_rejected", self.lease_names_rejected),
            ("in_flight", gauge(self.in_flight)),
            ("cache_entries", gauge(self.cache_entries)),
            ("lease_names", gauge(self.lease_names)),
        ]
        .into_iter()
        .map(|(k, v)| (std::borrow::Cow::Borrowed(k), v))
        .chain(DropReason::ALL.into_iter().map(|r| {
            (
                std::borrow::Cow::Owned(format!("dropped_{}", r.as_str().replace('-', "_"))),
                self.dropped(r),
            )
        }))
    }

    fn drop(&mut self, reason: DropReason) {
        if let Some(c) = self.dropped.get_mut(reason.index()) {
            *c = c.saturating_add(1);
        }
    }
}

fn inc(c: &mut u64) {
    *c = c.saturating_add(1);
}

/// A small PRNG (SplitMix64) for upstream query ids and probe names. Seeded by the
/// caller ([`Server::with_seed`]) and stirred with the arrival times and bytes of
/// every message, so ids are not predictable from the configuration alone.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_u16(&mut self) -> u16 {
        let [a, b, ..] = self.next_u64().to_le_bytes();
        u16::from_le_bytes([a, b])
    }

    fn stir(&mut self, x: u64) {
        self.0 ^= x.rotate_left(17);
        self.next_u64();
    }
}

/// FNV-1a, to stir the PRNG and to derive a default seed.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `now + d`, or a day later if that overflows (never panics).
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// Where the names under a zone go.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// Answered here only (NXDOMAIN when unknown).
    Local,
    /// Forwarded to these, in order.
    Servers(Vec<SocketAddr>),
}

/// What to do with a query the local data does not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    Local,
    Refused,
    Forward(Vec<SocketAddr>),
}

/// A client waiting for an upstream answer.
#[derive(Clone, Debug)]
struct Waiter {
    client: SocketAddr,
    asker: Asker,
}

/// One question asked upstream, and the clients waiting for it.
#[derive(Debug)]
struct InFlight {
    key: QuestionKey,
    question: Query,
    upstreams: Vec<SocketAddr>,
    /// Index into `upstreams` of the one asked now.
    current: usize,
    /// Every (upstream, id) the question was sent with: a late answer from an earlier
    /// upstream is still accepted.
    sent: Vec<(SocketAddr, u16)>,
    deadline: Instant,
    cd: bool,
    dnssec_ok: bool,
    waiters: Vec<Waiter>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Query(u64),
    Probe(u64),
}

#[derive(Clone, Debug)]
struct Probe {
    key: String,
    upstream: SocketAddr,
    id: u16,
}

/// A DNS server for one network. Owns no socket and reads no clock.
///
/// Bounds: client queries waiting for upstreams are at most
/// [`Limits::max_in_flight`](crate::Limits) (and
/// [`Limits::max_in_flight_per_client`](crate::Limits) per client address); the cache
/// holds at most [`Limits::cache_entries`](crate::Limits) answers; lease names are at
/// most [`Limits::lease_names`](crate::Limits); loop probes are one per upstream; the
/// answer and upstream queues hold at most twice the in-flight limit (at least 64);
/// the event queue at most 1024 events.
#[derive(Debug)]
pub struct Server {
    config: DnsConfig,
    local: LocalData,
    /// Zones with their own routing, from `<forwarder domain>`, `<domain localOnly>`,
    /// `localPtr` and the loop-check zone.
    rules: Vec<(Name, Rule)>,
    /// `<forwarder addr>` without a domain, usable ones only.
    general: Vec<SocketAddr>,
    /// Whether the configuration has any `<forwarder addr>` without a domain (then
    /// the system upstreams are not used, as libvirt writes `no-resolv`).
    has_general: bool,
    /// The host's resolvers, as given.
    system_raw: Vec<SocketAddr>,
    /// The host's resolvers, usable ones only.
    system: Vec<SocketAddr>,
    /// Every upstream in use, as last probed.
    probed: Vec<SocketAddr>,
    looping: HashSet<SocketAddr>,
    cache: Cache,
    inflight: HashMap<u64, InFlight>,
    by_key: HashMap<QuestionKey, u64>,
    by_upstream: HashMap<(SocketAddr, u16), Pending>,
    deadlines: BTreeSet<(Instant, u64)>,
    per_client: HashMap<IpAddr, usize>,
    limited_clients: HashSet<IpAddr>,
    flood_reported: bool,
    no_upstream_reported: bool,
    waiting: usize,
    next_token: u64,
    probes: HashMap<u64, Probe>,
    probe_names: HashMap<String, u64>,
    upstream_out: VecDeque<UpstreamQuery>,
    answers: VecDeque<Answer>,
    events: VecDeque<Event>,
    rng: Rng,
    epoch: Option<Instant>,
    stats: Stats,
}

/// The most events kept for [`Server::poll_event`].
const MAX_EVENTS: usize = 1024;

impl Server {
    /// A server for `config`, its PRNG seeded from the configuration. Loop probes for
    /// the configured upstreams are queued at once ([`Server::poll_upstream`]).
    ///
    /// The seed only needs to be unpredictable to guests, who could otherwise guess
    /// upstream query ids: a driver with a random source uses [`Server::with_seed`].
    pub fn new(config: DnsConfig) -> Self {
        let seed = fnv(format!("{config:?}").as_bytes());
        Self::with_seed(config, seed)
    }

    /// A server for `config` with its PRNG seeded by `seed`.
    ///
    /// The PRNG (SplitMix64, stirred with every message's arrival time and bytes) is
    /// not cryptographic: the ids it draws are only seen on the path to the upstreams,
    /// and an off-path spoofer must also guess the source port, which the driver
    /// should randomize (RFC 5452 §9). Seed it from the host's random source.
    pub fn with_seed(config: DnsConfig, seed: u64) -> Self {
        let mut s = Self {
            local: LocalData::new(&config),
            cache: Cache::new(config.limits.cache_entries),
            config,
            rules: Vec::new(),
            general: Vec::new(),
            has_general: false,
            system_raw: Vec::new(),
            system: Vec::new(),
            probed: Vec::new(),
            looping: HashSet::new(),
            inflight: HashMap::new(),
            by_key: HashMap::new(),
            by_upstream: HashMap::new(),
            deadlines: BTreeSet::new(),
            per_client: HashMap::new(),
            limited_clients: HashSet::new(),
            flood_reported: false,
            no_upstream_reported: false,
            waiting: 0,
            next_token: 0,
            probes: HashMap::new(),
            probe_names: HashMap::new(),
            upstream_out: VecDeque::new(),
            answers: VecDeque::new(),
            events: VecDeque::new(),
            rng: Rng(seed),
            epoch: None,
            stats: Stats::default(),
        };
        s.rebuild();
        s
    }

    /// Replaces the configuration (live `net-update`). Local records change at once
    /// (lease names are kept while inside the network); the cache is emptied; queries
    /// in flight finish with the upstreams they had. If the set of upstreams changed,
    /// loop marks are forgotten and every upstream is probed again.
    pub fn set_config(&mut self, config: DnsConfig) {
        self.local.reconfigure(&config);
        self.cache.clear();
        self.cache.set_capacity(config.limits.cache_entries);
        self.config = config;
        self.rebuild();
    }

    /// The configuration in force.
    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// Sets the host's resolvers (from its `/etc/resolv.conf`), used when the network
    /// has no `<forwarder addr>` without a domain, and not on isolated networks. The
    /// server's own addresses are dropped (with [`Event::UpstreamIsSelf`]); new
    /// upstreams are probed for loops.
    pub fn set_system_upstreams(&mut self, upstreams: Vec<SocketAddr>) {
        self.system_raw = upstreams;
        self.rebuild();
    }

    /// Forgets the loop marks and probes every upstream again (e.g. on a timer, as
    /// dnsmasq re-checks, or when the host's network changed).
    pub fn reprobe(&mut self) {
        self.probed.clear();
        self.rebuild();
    }

    /// A DHCP or DHCPv6 lease with host name `hostname` was granted or renewed for
    /// `ip`: serve `hostname` and `hostname.<domain>` (A or AAAA) and the PTR record of
    /// `ip`. The name must be a host name label (letters, digits, `-`, `_`), or
    /// `label.<domain>`; a name held by another address of the same family moves here.
    /// Names of `<dns><host>` and reservations win over lease names.
    pub fn set_lease_name(&mut self, ip: impl Into<IpAddr>, hostname: &str) {
        let ip = ip.into();
        let reason = if !self.config.is_guest(ip) {
            "the address is not on the network"
        } else {
            match self.local.set_lease(ip, hostname) {
                Ok(()) => return,
                Err(LeaseNameError::Invalid) => "not a valid host name",
                Err(LeaseNameError::TableFull) => "too many lease names",
            }
        };
        inc(&mut self.stats.lease_names_rejected);
        self.push_event(Event::LeaseNameIgnored {
            ip,
            hostname: hostname.chars().take(64).collect(),
            reason,
        });
    }

    /// The lease of `ip` was released or expired: its name is no longer served.
    pub fn remove_lease_name(&mut self, ip: impl Into<IpAddr>) {
        self.local.remove_lease(ip.into());
    }

    /// Handles a query from a guest: `client` is its address and port, `payload` the
    /// DNS message (for TCP without the 2-byte length prefix).
    ///
    /// Returns the answer to send now: local data, a cached answer, or an error
    /// (FORMERR, NOTIMP, REFUSED, SERVFAIL). `None`: the query was forwarded (its
    /// answer comes from [`Server::poll_answer`]) or dropped (counted in [`Stats`]).
    /// Upstream queries due to time out at `now` time out first.
    pub fn handle_query(
        &mut self,
        now: Instant,
        client: SocketAddr,
        transport: Transport,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        self.handle_timeout(now);
        self.stir(now, payload);
        let Some(h) = raw_header(payload) else {
            self.stats.drop(DropReason::Malformed);
            return None;
        };
        if h.qr {
            self.stats.drop(DropReason::NotQuery);
            return None;
        }
        let parsed = parse_query(payload, &h, transport);
        if let Ok(asker) = &parsed {
            if let Some(&token) = self.probe_names.get(&key(asker.question.name())) {
                self.loop_detected(token);
                self.stats.drop(DropReason::LoopProbe);
                return None;
            }
        }
        if !self.config.is_guest(client.ip()) {
            self.stats.drop(DropReason::NotGuest);
            return None;
        }
        inc(&mut self.stats.queries);
        let asker = match parsed {
            Ok(a) => a,
            Err(Rejected::FormErr) => {
                inc(&mut self.stats.formerr);
                return self.header_reply(&h, ResponseCode::FormErr);
            }
            Err(Rejected::NotImp) => {
                inc(&mut self.stats.notimp);
                return self.header_reply(&h, ResponseCode::NotImp);
            }
            Err(Rejected::BadVers(a)) => {
                inc(&mut self.stats.formerr);
                return self.reply(&a, ResponseCode::BADVERS, false, Vec::new());
            }
        };
        let q = asker.question.clone();
        // Zone transfers and classes other than IN are not served (nor forwarded).
        if q.query_class() != DNSClass::IN
            || matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR)
        {
            inc(&mut self.stats.refused);
            return self.reply(&asker, ResponseCode::Refused, false, Vec::new());
        }
        let ttl = self.config.limits.local_ttl;
        if let Some(records) = self.local.lookup(q.name(), q.query_type(), ttl) {
            inc(&mut self.stats.answered_locally);
            return self.reply(&asker, ResponseCode::NoError, true, records);
        }
        match self.route(q.name()) {
            Route::Local => {
                inc(&mut self.stats.answered_locally);
                self.reply(&asker, ResponseCode::NXDomain, true, Vec::new())
            }
            Route::Refused => {
                inc(&mut self.stats.refused);
                self.reply(&asker, ResponseCode::Refused, false, Vec::new())
            }
            Route::Forward(upstreams) => self.forward(now, client, asker, upstreams),
        }
    }

    /// The next query for the driver to send to an upstream over UDP, if any. Drain
    /// after every call that takes input.
    #[must_use]
    pub fn poll_upstream(&mut self) -> Option<UpstreamQuery> {
        self.upstream_out.pop_front()
    }

    /// Handles a UDP message from an upstream. It is accepted only from the address a
    /// query was sent to, with that query's id and question; anything else is dropped
    /// and counted. Answers for clients come out of [`Server::poll_answer`].
    pub fn handle_upstream(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        self.handle_timeout(now);
        self.stir(now, payload);
        let Some(h) = raw_header(payload) else {
            self.stats.drop(DropReason::UpstreamMalformed);
            return;
        };
        match self.by_upstream.get(&(from, h.id)).copied() {
            None => self.stats.drop(DropReason::UpstreamUnexpected),
            Some(Pending::Probe(token)) => self.probe_answer(token, payload),
            Some(Pending::Query(token)) => self.upstream_answer(now, token, from, payload),
        }
    }

    /// The next answer to a forwarded query, if any. Drain after every call that takes
    /// input.
    #[must_use]
    pub fn poll_answer(&mut self) -> Option<Answer> {
        self.answers.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work next: the earliest
    /// upstream deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Times out the upstream queries due at `now`: each goes to the next upstream in
    /// order, or, after the last, the clients get SERVFAIL.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(t, token)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(f) = self.inflight.get(&token) else {
                continue;
            };
            // The last (upstream, id) sent is the one that timed out.
            let event = f.sent.last().map(|&(upstream, _)| Event::UpstreamTimeout {
                upstream,
                name: display_name(f.question.name()),
                qtype: wire::qtype_name(&f.question),
            });
            inc(&mut self.stats.upstream_timeouts);
            if let Some(e) = event {
                self.push_event(e);
            }
            self.advance(token, now);
        }
    }

    /// The next log-worthy event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Every record the network serves, sorted by name, type and value.
    pub fn records(&self) -> Vec<RecordRow> {
        self.local.rows()
    }

    /// The counters, with the current table sizes.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.in_flight = self.waiting;
        s.cache_entries = self.cache.len();
        s.lease_names = self.local.lease_count();
        s
    }

    /// The upstreams that a loop probe showed to forward back to this server.
    pub fn looping_upstreams(&self) -> Vec<SocketAddr> {
        let mut v: Vec<_> = self.looping.iter().copied().collect();
        v.sort();
        v
    }

    /// Checks the server's internal consistency and bounds: in-flight counts match
    /// the waiting clients and stay within the limits, every index points at a live
    /// entry, and every table and queue is within its bound. For tests and fuzzing.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let l = &self.config.limits;
        let waiters: usize = self.inflight.values().map(|f| f.waiters.len()).sum();
        let per_client: usize = self.per_client.values().sum();
        let checks = [
            (waiters == self.waiting, "waiting count"),
            (per_client == self.waiting, "per-client counts"),
            (self.waiting <= l.max_in_flight, "in-flight bound"),
            (
                self.per_client
                    .values()
                    .all(|c| *c > 0 && *c <= l.max_in_flight_per_client),
                "per-client bound",
            ),
            (self.by_key.len() == self.inflight.len(), "key index"),
            (
                self.by_key.iter().all(|(k, t)| {
                    self.inflight
                        .get(t)
                        .is_some_and(|f| f.key == *k && !f.waiters.is_empty())
                }),
                "key index entries",
            ),
            (self.deadlines.len() == self.inflight.len(), "deadlines"),
            (
                self.inflight
                    .iter()
                    .all(|(t, f)| self.deadlines.contains(&(f.deadline, *t))),
                "deadline entries",
            ),
            (
                self.by_upstream.len()
                    == self.inflight.values().map(|f| f.sent.len()).sum::<usize>()
                        + self.probes.len(),
                "upstream index",
            ),
            (
                self.inflight.values().all(|f| {
                    f.sent.len() <= f.upstreams.len() && f.upstreams.len() <= l.max_upstreams.max(1)
                }),
                "upstreams per query",
            ),
            (self.cache.len() <= l.cache_entries, "cache bound"),
            (
                self.local.lease_count() <= l.lease_names,
                "lease name bound",
            ),
            (self.answers.len() <= self.queue_cap(), "answer queue bound"),
            (
                self.upstream_out.len() <= self.queue_cap(),
                "upstream queue bound",
            ),
            (self.events.len() <= MAX_EVENTS, "event queue bound"),
            (
                self.probes.len() == self.probe_names.len()
                    && self.probes.len() <= self.probed.len(),
                "probes",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, what)) => Err(format!("invariant violated: {what}")),
            None => Ok(()),
        }
    }

    // ----- routing -----

    /// Rebuilds the zone rules and upstream lists from the configuration and the
    /// system upstreams; probes the upstreams if their set changed.
    fn rebuild(&mut self) {
        let max = self.config.limits.max_upstreams;
        let own = |c: &DnsConfig, u: &SocketAddr| c.is_own_address(u.ip());
        let mut rules: Vec<(Name, Rule)> = Vec::new();
        let mut general = Vec::new();
        for f in &self.config.forwarders {
            match (&f.domain, f.addr) {
                (None, Some(addr)) => general.push(addr),
                (None, None) => {}
                (Some(d), addr) => {
                    let Some(zone) = fqdn(d) else { continue };
                    let Some(a) = addr else {
                        rules.push((zone, Rule::Local));
                        continue;
                    };
                    // Several forwarders for one domain: tried in order.
                    match rules
                        .iter_mut()
                        .find(|(z, r)| *z == zone && matches!(r, Rule::Servers(_)))
                    {
                        Some((_, Rule::Servers(list))) => list.push(a),
                        _ => rules.push((zone, Rule::Servers(vec![a]))),
                    }
                }
            }
        }
        if self.config.local_only {
            if let Some(zone) = self.config.domain.as_deref().and_then(fqdn) {
                rules.push((zone, Rule::Local));
            }
        }
        for s in &self.config.local_ptr {
            if let Some(zone) = reverse_zone(s) {
                rules.push((zone, Rule::Local));
            }
        }
        if let Some(zone) = fqdn(LOOP_CHECK_ZONE) {
            rules.push((zone, Rule::Local));
        }
        dedup(&mut general);
        general.truncate(max);
        let mut system = self.system_raw.clone();
        dedup(&mut system);
        system.truncate(max);
        // Every upstream that may be asked, own addresses included (reported once).
        let mut used: Vec<SocketAddr> = general.clone();
        if general.is_empty() && !self.config.isolated {
            used.extend(system.iter().copied());
        }
        for (_, r) in &mut rules {
            if let Rule::Servers(list) = r {
                dedup(list);
                list.truncate(max);
                used.extend(list.iter().copied());
                list.retain(|u| !own(&self.config, u));
            }
        }
        self.has_general = !general.is_empty();
        general.retain(|u| !own(&self.config, u));
        system.retain(|u| !own(&self.config, u));
        self.rules = rules;
        self.general = general;
        self.system = system;
        dedup(&mut used);
        used.sort();
        if used != self.probed {
            self.probed = used.clone();
            self.restart_probes(&used);
        }
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= MAX_EVENTS {
            inc(&mut self.stats.events_dropped);
            return;
        }
        self.events.push_back(e);
    }

    fn reply(
        &mut self,
        asker: &Asker,
        rcode: ResponseCode,
        authoritative: bool,
        answers: Vec<Record>,
    ) -> Option<Vec<u8>> {
        self.encoded(respond(asker, rcode, authoritative, answers))
    }

    fn relay(&mut self, msg: &Message, asker: &Asker) -> Option<Vec<u8>> {
        self.encoded(relay(msg, asker))
    }

    fn encoded(&mut self, r: Result<(Vec<u8>, bool), ()>) -> Option<Vec<u8>> {
        match r {
            Ok((bytes, truncated)) => {
                if truncated {
                    inc(&mut self.stats.truncated);
                }
                Some(bytes)
            }
            Err(()) => {
                inc(&mut self.stats.encode_errors);
                None
            }
        }
    }

    fn header_reply(&mut self, h: &RawHeader, rcode: ResponseCode) -> Option<Vec<u8>> {
        match header_error(h, rcode) {
            Ok(b) => Some(b),
            Err(()) => {
                inc(&mut self.stats.encode_errors);
                None
            }
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token = self.next_token.wrapping_add(1);
        self.next_token
    }

    /// Stirs the PRNG with the time since the first message and the message's bytes.
    fn stir(&mut self, now: Instant, payload: &[u8]) {
        let epoch = *self.epoch.get_or_insert(now);
        let d = now.saturating_duration_since(epoch);
        let t = d.as_secs().rotate_left(32) ^ u64::from(d.subsec_nanos());
        let n = payload.len().min(64);
        self.rng.stir(t ^ fnv(payload.get(..n).unwrap_or_default()));
    }
}

/// An id for a query to `to` that no pending query to `to` uses (RFC 5452 §9.2: ids
/// random per query).
fn fresh_id(rng: &mut Rng, pending: &HashMap<(SocketAddr, u16), Pending>, to: SocketAddr) -> u16 {
    for _ in 0..32 {
        let id = rng.next_u16();
        if !pending.contains_key(&(to, id)) {
            return id;
        }
    }
    rng.next_u16()
}

fn dedup(list: &mut Vec<SocketAddr>) {
    let mut seen = HashSet::new();
    list.retain(|u| seen.insert(*u));
}
