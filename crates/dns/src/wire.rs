//! The adapter to hickory-proto: DNS messages in and out. Nothing here is public, so
//! the rest of vnet never names a hickory type.
//!
//! # No-panic contract
//!
//! Every function takes any bytes. The 12-byte header (RFC 1035 §4.1.1) is read by
//! hand with checked slicing before hickory sees the message, so that a message
//! claiming thousands of questions is refused before anything is allocated for them;
//! hickory's decoder reports every other problem as an error. Encoding errors are
//! returned, never unwrapped.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

use crate::config::{EDNS_UDP_SIZE, MAX_CLIENT_UDP_SIZE};
use crate::local::key;
use crate::Transport;

/// The DNS header length.
pub(crate) const HEADER_LEN: usize = 12;

/// The classic UDP payload limit without EDNS (RFC 1035 §4.2.1).
const CLASSIC_UDP_SIZE: usize = 512;

/// The header fields read before a message is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawHeader {
    pub(crate) id: u16,
    pub(crate) qr: bool,
    pub(crate) opcode: u8,
    pub(crate) rd: bool,
    pub(crate) cd: bool,
    pub(crate) qdcount: u16,
}

/// Reads the header; `None` if there are fewer than 12 bytes.
pub(crate) fn raw_header(bytes: &[u8]) -> Option<RawHeader> {
    let h: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
    Some(RawHeader {
        id: u16::from_be_bytes([h[0], h[1]]),
        qr: h[2] & 0x80 != 0,
        opcode: (h[2] >> 3) & 0x0f,
        rd: h[2] & 0x01 != 0,
        cd: h[3] & 0x10 != 0,
        qdcount: u16::from_be_bytes([h[4], h[5]]),
    })
}

/// A question's identity: lowercase name key, type and class.
pub(crate) type QuestionKey = (String, u16, u16);

pub(crate) fn question_key(q: &Query) -> QuestionKey {
    (
        key(q.name()),
        u16::from(q.query_type()),
        u16::from(q.query_class()),
    )
}

/// The client's EDNS (RFC 6891) parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClientEdns {
    pub(crate) udp_size: u16,
    pub(crate) dnssec_ok: bool,
}

/// What the server keeps of a query to answer it: the header bits copied into the
/// response (RFC 6895 §2), the question as the client wrote it, its EDNS and how it
/// came.
#[derive(Clone, Debug)]
pub(crate) struct Asker {
    pub(crate) id: u16,
    pub(crate) rd: bool,
    pub(crate) cd: bool,
    pub(crate) question: Query,
    pub(crate) edns: Option<ClientEdns>,
    pub(crate) transport: Transport,
}

impl Asker {
    /// The largest response this client takes: 64 KiB over TCP; over UDP 512 bytes, or
    /// its EDNS size (at most [`MAX_CLIENT_UDP_SIZE`]).
    fn limit(&self) -> usize {
        match self.transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => self.edns.map_or(CLASSIC_UDP_SIZE, |e| {
                usize::from(e.udp_size.clamp(512, MAX_CLIENT_UDP_SIZE))
            }),
        }
    }

    fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|e| e.dnssec_ok)
    }
}

/// Why a query cannot be served, for the error response.
#[derive(Clone, Debug)]
pub(crate) enum Rejected {
    /// The message does not decode, or has not exactly one question: FORMERR.
    FormErr,
    /// An opcode other than QUERY: NOTIMP.
    NotImp,
    /// An EDNS version other than 0 (RFC 6891 §6.1.3): BADVERS.
    BadVers(Box<Asker>),
}

/// Decodes a query whose header was read as `h`.
pub(crate) fn parse_query(
    bytes: &[u8],
    h: &RawHeader,
    transport: Transport,
) -> Result<Asker, Rejected> {
    if h.opcode != 0 {
        return Err(Rejected::NotImp);
    }
    if h.qdcount != 1 {
        return Err(Rejected::FormErr);
    }
    let msg = Message::from_vec(bytes).map_err(|_| Rejected::FormErr)?;
    let Some(question) = msg.queries.first().cloned() else {
        return Err(Rejected::FormErr);
    };
    let edns = msg.edns.as_ref().map(|e| ClientEdns {
        udp_size: e.max_payload(),
        dnssec_ok: e.flags().dnssec_ok,
    });
    let asker = Asker {
        id: h.id,
        rd: h.rd,
        cd: h.cd,
        question,
        edns,
        transport,
    };
    if msg.edns.as_ref().is_some_and(|e| e.version() != 0) {
        return Err(Rejected::BadVers(Box::new(asker)));
    }
    Ok(asker)
}

/// Our OPT record for a client that sent one.
fn our_edns(dnssec_ok: bool) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(EDNS_UDP_SIZE);
    e.set_version(0);
    e.set_dnssec_ok(dnssec_ok);
    e
}

/// Encodes `msg`; if it is larger than `limit`, the header and question only with
/// TC=1 (RFC 1035 §4.2.1, RFC 2181 §9). `Ok((bytes, truncated))`.
fn encode_limited(msg: &Message, limit: usize) -> Result<(Vec<u8>, bool), ()> {
    let full = msg.to_vec().map_err(|_| ())?;
    if full.len() <= limit {
        return Ok((full, false));
    }
    let short = msg.truncate().to_vec().map_err(|_| ())?;
    Ok((short, true))
}

/// A response to `asker` with the given code and records, RA set.
pub(crate) fn respond(
    asker: &Asker,
    rcode: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
) -> Result<(Vec<u8>, bool), ()> {
    let mut m = Message::response(asker.id, OpCode::Query);
    m.metadata.authoritative = authoritative;
    m.metadata.recursion_desired = asker.rd;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = asker.cd;
    m.metadata.response_code = rcode;
    m.add_query(asker.question.clone());
    m.insert_answers(answers);
    if asker.edns.is_some() {
        m.set_edns(our_edns(asker.dnssec_ok()));
    }
    encode_limited(&m, asker.limit())
}

/// A header-only error response (no question) to a message whose header was read.
pub(crate) fn header_error(h: &RawHeader, rcode: ResponseCode) -> Result<Vec<u8>, ()> {
    let mut m = Message::error_msg(h.id, OpCode::from_u8(h.opcode), rcode);
    m.metadata.recursion_desired = h.rd;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = h.cd;
    m.to_vec().map_err(|_| ())
}

/// The query sent upstream for `question`: RD set, CD and DO copied from the client,
/// our EDNS size, nothing else of the client's message.
pub(crate) fn upstream_query(
    id: u16,
    question: &Query,
    cd: bool,
    dnssec_ok: bool,
) -> Result<Vec<u8>, ()> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.checking_disabled = cd;
    m.add_query(question.clone());
    m.set_edns(our_edns(dnssec_ok));
    m.to_vec().map_err(|_| ())
}

/// A loop probe: a TXT query for `name` (dnsmasq's `--dns-loop-detect` idea).
pub(crate) fn probe_query(id: u16, name: &Name) -> Result<Vec<u8>, ()> {
    let mut q = Query::query(name.clone(), RecordType::TXT);
    q.set_query_class(DNSClass::IN);
    upstream_query(id, &q, false, false)
}

/// An upstream's answer, decoded and checked against the question it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UpstreamReply {
    /// Not a response, not one question, or does not decode.
    Malformed,
    /// A response to another question.
    Mismatch,
    /// The answer (its EDNS and signature removed).
    Answer(Box<Message>),
}

pub(crate) fn parse_upstream(bytes: &[u8], expected: &QuestionKey) -> UpstreamReply {
    let Some(h) = raw_header(bytes) else {
        return UpstreamReply::Malformed;
    };
    if !h.qr || h.opcode != 0 || h.qdcount != 1 {
        return UpstreamReply::Malformed;
    }
    let Ok(mut msg) = Message::from_vec(bytes) else {
        return UpstreamReply::Malformed;
    };
    match msg.queries.first() {
        Some(q) if question_key(q) == *expected => {}
        _ => return UpstreamReply::Mismatch,
    }
    // RFC 6891 §6.1.1: OPT records are hop-by-hop; never cached or forwarded.
    msg.edns = None;
    msg.signature = None;
    UpstreamReply::Answer(Box::new(msg))
}

/// Whether an upstream's code means "ask the next upstream" (dnsmasq moves on after
/// SERVFAIL and REFUSED too).
pub(crate) fn is_failure(msg: &Message) -> bool {
    matches!(
        msg.metadata.response_code,
        ResponseCode::ServFail | ResponseCode::Refused | ResponseCode::NotImp
    )
}

/// An upstream's (or the cache's) answer, re-addressed to `asker`: its id, flags,
/// question spelling and EDNS; DNSSEC records stripped unless it set DO.
pub(crate) fn relay(msg: &Message, asker: &Asker) -> Result<(Vec<u8>, bool), ()> {
    let mut m = msg.clone();
    m.metadata.id = asker.id;
    m.metadata.message_type = MessageType::Response;
    m.metadata.recursion_desired = asker.rd;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = asker.cd;
    m.queries = vec![asker.question.clone()];
    m.edns = asker.edns.map(|e| our_edns(e.dnssec_ok));
    let m = m.maybe_strip_dnssec_records(asker.dnssec_ok());
    encode_limited(&m, asker.limit())
}

/// How long an answer may be cached (RFC 2308 §5 for negative answers), in seconds;
/// `None`: not cacheable (errors other than NXDOMAIN, truncated, TTL 0, or a negative
/// answer without an SOA).
pub(crate) fn cache_ttl(msg: &Message, max_ttl: u32, max_negative_ttl: u32) -> Option<u32> {
    if msg.metadata.truncation {
        return None;
    }
    let negative = match msg.metadata.response_code {
        ResponseCode::NoError => msg.answers.is_empty(),
        ResponseCode::NXDomain => true,
        _ => return None,
    };
    let ttl = if negative {
        msg.authorities
            .iter()
            .filter_map(|r| match &r.data {
                hickory_proto::rr::RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
            .min()?
            .min(max_negative_ttl)
    } else {
        msg.answers.iter().map(|r| r.ttl).min()?.min(max_ttl)
    };
    (ttl > 0).then_some(ttl)
}

/// Lowers every TTL of `msg` above `ttl` to `ttl`, for an answer going into the cache:
/// it never claims to live longer than the cache keeps it (RFC 2308 §5: a negative
/// answer's SOA gets the negative TTL).
pub(crate) fn clamp_ttls(msg: &mut Message, ttl: u32) {
    for r in msg
        .answers
        .iter_mut()
        .chain(msg.authorities.iter_mut())
        .chain(msg.additionals.iter_mut())
    {
        r.ttl = r.ttl.min(ttl);
    }
}

/// Lowers every TTL of `msg` by `secs` (not below 0), for an answer from the cache.
pub(crate) fn age(msg: &mut Message, secs: u32) {
    for r in msg
        .answers
        .iter_mut()
        .chain(msg.authorities.iter_mut())
        .chain(msg.additionals.iter_mut())
    {
        r.decrement_ttl(secs);
    }
}

/// The question's type as text (`A`, `AAAA`, `TYPE65280`, …), for events.
pub(crate) fn qtype_name(q: &Query) -> String {
    q.query_type().to_string()
}
