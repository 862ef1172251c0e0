//! The network's own names: records from the configuration and names from DHCP leases.
//!
//! Names are looked up by a key: the name in lowercase ASCII (IDNA labels as
//! `xn--…`, dots inside a label escaped as hickory writes them) without the trailing dot.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde::Serialize;

use crate::config::{DnsConfig, Subnet};

/// Where a served record comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RecordSource {
    /// The host name of an active DHCP lease.
    Lease,
    /// A `<dhcp><host name ip>` reservation.
    Reservation,
    /// A `<dns><host>` record.
    DnsHost,
    /// A `<dns><txt>` record.
    Txt,
    /// A `<dns><srv>` record.
    Srv,
}

impl RecordSource {
    /// The name used in [`RecordRow::source`] and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lease => "lease",
            Self::Reservation => "reservation",
            Self::DnsHost => "dns-host",
            Self::Txt => "txt",
            Self::Srv => "srv",
        }
    }
}

impl fmt::Display for RecordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record the network serves, for `switchctl net-dns-records`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RecordRow {
    /// The owner name, without the trailing dot.
    pub name: String,
    /// `A`, `AAAA`, `PTR`, `TXT` or `SRV`.
    #[serde(rename = "type")]
    pub rtype: String,
    /// The address, target, text, or `priority weight port target` of an SRV record.
    pub value: String,
    /// Where it comes from.
    pub source: RecordSource,
}

/// The data of a local record.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Txt(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: Name,
    },
}

impl Value {
    fn rtype(&self) -> RecordType {
        match self {
            Self::A(_) => RecordType::A,
            Self::Aaaa(_) => RecordType::AAAA,
            Self::Txt(_) => RecordType::TXT,
            Self::Srv { .. } => RecordType::SRV,
        }
    }

    fn display(&self) -> String {
        match self {
            Self::A(ip) => ip.to_string(),
            Self::Aaaa(ip) => ip.to_string(),
            Self::Txt(t) => t.clone(),
            Self::Srv {
                priority,
                weight,
                port,
                target,
            } => format!("{priority} {weight} {port} {}", display_name(target)),
        }
    }

    fn rdata(&self) -> RData {
        match self {
            Self::A(ip) => RData::A(A(*ip)),
            Self::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
            // RFC 1035 §3.3: a <character-string> holds at most 255 bytes.
            Self::Txt(t) if t.is_empty() => RData::TXT(TXT::from_bytes(vec![&[][..]])),
            Self::Txt(t) => RData::TXT(TXT::from_bytes(t.as_bytes().chunks(255).collect())),
            Self::Srv {
                priority,
                weight,
                port,
                target,
            } => RData::SRV(SRV::new(*priority, *weight, *port, target.clone())),
        }
    }
}

/// The records of one owner name from the configuration.
#[derive(Clone, Debug)]
struct Owner {
    name: Name,
    records: Vec<(Value, RecordSource)>,
}

impl Owner {
    fn has_address(&self) -> bool {
        self.records
            .iter()
            .any(|(v, _)| matches!(v, Value::A(_) | Value::Aaaa(_)))
    }
}

/// Why a lease's host name is not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseNameError {
    Invalid,
    TableFull,
}

/// The local names.
///
/// Bounds: configuration records are the operator's; lease names are at most
/// `limits.lease_names`, one per address and one address per name.
#[derive(Debug)]
pub(crate) struct LocalData {
    domain: Option<Name>,
    domain_key: Option<String>,
    names: HashMap<String, Owner>,
    ptrs: HashMap<IpAddr, (Name, RecordSource)>,
    /// Lease address (DHCP or DHCPv6) → host name label, as the client sent it.
    leases: BTreeMap<IpAddr, String>,
    /// Lowercase label → its lease addresses: one per family (a dual-stack guest
    /// holds its name by DHCP and by DHCPv6).
    lease_by_name: HashMap<String, [Option<IpAddr>; 2]>,
    max_leases: usize,
}

impl LocalData {
    pub(crate) fn new(config: &DnsConfig) -> Self {
        let domain = config.domain.as_deref().and_then(fqdn);
        let mut d = Self {
            domain_key: domain.as_ref().map(key),
            domain,
            names: HashMap::new(),
            ptrs: HashMap::new(),
            leases: BTreeMap::new(),
            lease_by_name: HashMap::new(),
            max_leases: config.limits.lease_names,
        };
        for h in &config.hosts {
            let mut first = true;
            for n in &h.names {
                // dnsmasq `expand-hosts`: a plain name is also served under the domain.
                let (names, canonical) = d.expand(n, false);
                for name in names {
                    d.add(name, address(h.ip), RecordSource::DnsHost);
                }
                if first {
                    if let Some(c) = canonical {
                        d.ptrs.entry(h.ip).or_insert((c, RecordSource::DnsHost));
                    }
                    first = false;
                }
            }
        }
        for r in &config.reservations {
            let (names, canonical) = d.expand(&r.name, true);
            for name in names {
                d.add(name, address(r.ip), RecordSource::Reservation);
            }
            if let Some(c) = canonical {
                d.ptrs.entry(r.ip).or_insert((c, RecordSource::Reservation));
            }
        }
        for t in &config.txt {
            if let Some(name) = fqdn(&t.name) {
                d.add(name, Value::Txt(t.value.clone()), RecordSource::Txt);
            }
        }
        for s in &config.srv {
            let owner = s.owner(config.domain.as_deref());
            let target = match s.target.as_deref() {
                Some(t) if !t.trim_end_matches('.').is_empty() => fqdn(t),
                _ => Some(Name::root()),
            };
            if let (Some(name), Some(target)) = (fqdn(&owner), target) {
                let v = Value::Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target,
                };
                d.add(name, v, RecordSource::Srv);
            }
        }
        d
    }

    /// Replaces the configuration records, keeping the lease names that still fit.
    pub(crate) fn reconfigure(&mut self, config: &DnsConfig) {
        let old = std::mem::replace(self, Self::new(config));
        for (ip, name) in old.leases {
            if config.is_guest(ip) {
                let _ = self.set_lease(ip, &name);
            }
        }
    }

    /// The names under which a configured name is served, and the name its address's
    /// PTR record points to. `strip_domain`: `label.<domain>` counts as the plain
    /// `label` (dnsmasq does this for DHCP host names).
    fn expand(&self, name: &str, strip_domain: bool) -> (Vec<Name>, Option<Name>) {
        let trimmed = name.trim_end_matches('.');
        let label = match (&self.domain_key, strip_domain) {
            (Some(dk), true) => {
                let lower = trimmed.to_ascii_lowercase();
                lower
                    .strip_suffix(dk.as_str())
                    .and_then(|rest| rest.strip_suffix('.'))
                    .map(|rest| trimmed.get(..rest.len()).unwrap_or(rest).to_owned())
            }
            _ => None,
        }
        .unwrap_or_else(|| trimmed.to_owned());
        let Some(plain) = fqdn(&label) else {
            return (Vec::new(), None);
        };
        if plain.num_labels() != 1 {
            return (vec![plain.clone()], Some(plain));
        }
        match self.qualify(&plain) {
            Some(full) => (vec![plain, full.clone()], Some(full)),
            None => (vec![plain.clone()], Some(plain)),
        }
    }

    /// `label.<domain>`, if there is a domain.
    fn qualify(&self, label: &Name) -> Option<Name> {
        let d = self.domain.as_ref()?;
        label.clone().append_domain(d).ok()
    }

    fn add(&mut self, name: Name, value: Value, source: RecordSource) {
        let owner = self.names.entry(key(&name)).or_insert_with(|| Owner {
            name,
            records: Vec::new(),
        });
        if !owner.records.iter().any(|(v, _)| *v == value) {
            owner.records.push((value, source));
        }
    }

    /// Serves `hostname` for the lease of `ip`. The name must be a host name label
    /// (letters, digits, `-`, `_`; at most 63 bytes), or `label.<domain>`. A name
    /// held by another lease of the same family moves to this one (the newest lease
    /// wins, as in dnsmasq).
    pub(crate) fn set_lease(&mut self, ip: IpAddr, hostname: &str) -> Result<(), LeaseNameError> {
        let Some(label) = self.lease_label(hostname) else {
            self.remove_lease(ip);
            return Err(LeaseNameError::Invalid);
        };
        let lower = label.to_ascii_lowercase();
        if !self.leases.contains_key(&ip) && self.leases.len() >= self.max_leases {
            return Err(LeaseNameError::TableFull);
        }
        self.remove_lease(ip);
        let held = self.lease_by_name.entry(lower).or_default();
        if let Some(other) = held[family(ip)].replace(ip) {
            self.leases.remove(&other);
        }
        self.leases.insert(ip, label);
        Ok(())
    }

    pub(crate) fn remove_lease(&mut self, ip: IpAddr) {
        if let Some(old) = self.leases.remove(&ip) {
            let lower = old.to_ascii_lowercase();
            if let Some(held) = self.lease_by_name.get_mut(&lower) {
                if held[family(ip)] == Some(ip) {
                    held[family(ip)] = None;
                }
                if held == &[None, None] {
                    self.lease_by_name.remove(&lower);
                }
            }
        }
    }

    pub(crate) fn lease_count(&self) -> usize {
        self.leases.len()
    }

    fn lease_label(&self, hostname: &str) -> Option<String> {
        let h = hostname.trim().trim_end_matches('.');
        let label = match h.split_once('.') {
            None => h,
            Some((label, rest)) => {
                let dk = self.domain_key.as_deref()?;
                if !rest.eq_ignore_ascii_case(dk) {
                    return None;
                }
                label
            }
        };
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| label.to_owned())
    }

    /// The lease addresses of a name key: a plain label or `label.<domain>`.
    fn lease_for(&self, k: &str) -> Option<[Option<IpAddr>; 2]> {
        let label = if k.contains('.') {
            let dk = self.domain_key.as_deref()?;
            k.strip_suffix(dk)?.strip_suffix('.')?
        } else {
            k
        };
        if label.contains('.') {
            return None;
        }
        self.lease_by_name.get(label).copied()
    }

    /// The PTR target for `ip`: configuration first, then the lease.
    fn ptr_target(&self, ip: IpAddr) -> Option<(Name, RecordSource)> {
        if let Some(t) = self.ptrs.get(&ip) {
            return Some(t.clone());
        }
        let label = fqdn(self.leases.get(&ip)?)?;
        let name = self.qualify(&label).unwrap_or(label);
        Some((name, RecordSource::Lease))
    }

    /// The local answer for `qname`/`qtype`: `None` if the name is not local; an empty
    /// list for NODATA (the name exists with other types).
    pub(crate) fn lookup(&self, qname: &Name, qtype: RecordType, ttl: u32) -> Option<Vec<Record>> {
        let k = key(qname);
        let any = qtype == RecordType::ANY;
        if let Some(ip) = parse_reverse(&k) {
            if let Some((target, _)) = self.ptr_target(ip) {
                let mut out = Vec::new();
                if any || qtype == RecordType::PTR {
                    out.push(Record::from_rdata(
                        qname.clone(),
                        ttl,
                        RData::PTR(PTR(target)),
                    ));
                }
                return Some(out);
            }
        }
        let owner = self.names.get(&k);
        let lease = match owner {
            Some(o) if o.has_address() => None,
            _ => self.lease_for(&k),
        };
        if owner.is_none() && lease.is_none() {
            return None;
        }
        let mut out = Vec::new();
        let values = owner
            .into_iter()
            .flat_map(|o| o.records.iter().map(|(v, _)| v.clone()))
            .chain(lease.into_iter().flatten().flatten().map(address));
        for v in values {
            if any || v.rtype() == qtype {
                out.push(Record::from_rdata(qname.clone(), ttl, v.rdata()));
            }
        }
        Some(out)
    }

    /// Every record served, sorted by name, type and value.
    pub(crate) fn rows(&self) -> Vec<RecordRow> {
        let mut rows = Vec::new();
        for owner in self.names.values() {
            for (v, source) in &owner.records {
                rows.push(RecordRow {
                    name: display_name(&owner.name),
                    rtype: v.rtype().to_string(),
                    value: v.display(),
                    source: *source,
                });
            }
        }
        for (ip, (target, source)) in &self.ptrs {
            rows.push(ptr_row(*ip, target, *source));
        }
        for (ip, label) in &self.leases {
            let Some(plain) = fqdn(label) else { continue };
            let full = self.qualify(&plain);
            for name in std::iter::once(&plain).chain(full.as_ref()) {
                if self.names.get(&key(name)).is_some_and(Owner::has_address) {
                    continue;
                }
                rows.push(RecordRow {
                    name: display_name(name),
                    rtype: address(*ip).rtype().to_string(),
                    value: ip.to_string(),
                    source: RecordSource::Lease,
                });
            }
            if !self.ptrs.contains_key(ip) {
                rows.push(ptr_row(
                    *ip,
                    full.as_ref().unwrap_or(&plain),
                    RecordSource::Lease,
                ));
            }
        }
        rows.sort();
        rows.dedup();
        rows
    }
}

fn ptr_row(ip: IpAddr, target: &Name, source: RecordSource) -> RecordRow {
    RecordRow {
        name: reverse_name(ip),
        rtype: "PTR".into(),
        value: display_name(target),
        source,
    }
}

/// The slot of `ip`'s family in a name's lease addresses.
fn family(ip: IpAddr) -> usize {
    usize::from(ip.is_ipv6())
}

fn address(ip: IpAddr) -> Value {
    match ip {
        IpAddr::V4(a) => Value::A(a),
        IpAddr::V6(a) => Value::Aaaa(a),
    }
}

/// `name` as an absolute name; `None` if it is not a valid domain name.
pub(crate) fn fqdn(name: &str) -> Option<Name> {
    let trimmed = name.trim().trim_end_matches('.');
    if trimmed.is_empty() {
        return None;
    }
    let mut n = Name::from_utf8(trimmed).ok()?;
    n.set_fqdn(true);
    Some(n)
}

/// The lookup key of a name: lowercase, no trailing dot (the root is `""`).
pub(crate) fn key(name: &Name) -> String {
    if name.is_root() {
        return String::new();
    }
    let s = name.to_lowercase().to_ascii();
    match s.strip_suffix('.') {
        Some(k) if name.is_fqdn() => k.to_owned(),
        _ => s,
    }
}

/// A name for display: as written, without the trailing dot (the root is `.`).
pub(crate) fn display_name(name: &Name) -> String {
    if name.is_root() {
        return ".".into();
    }
    let s = name.to_utf8();
    s.strip_suffix('.').map_or_else(|| s.clone(), str::to_owned)
}

/// The reverse-lookup name of an address (`4.3.2.1.in-addr.arpa`, RFC 1035 §3.5;
/// nibbles under `ip6.arpa`, RFC 3596 §2.5), without the trailing dot.
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let [x, y, z, w] = a.octets();
            format!("{w}.{z}.{y}.{x}.in-addr.arpa")
        }
        IpAddr::V6(a) => {
            let mut s = String::with_capacity(72);
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// The address a full reverse-lookup key names, if it is one (canonical labels only).
pub(crate) fn parse_reverse(k: &str) -> Option<IpAddr> {
    if let Some(rest) = k.strip_suffix(".in-addr.arpa") {
        let mut octets = [0u8; 4];
        let mut labels = rest.split('.');
        for o in octets.iter_mut().rev() {
            let l = labels.next()?;
            let v: u8 = l.parse().ok()?;
            if v.to_string() != l {
                return None;
            }
            *o = v;
        }
        if labels.next().is_some() {
            return None;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    let rest = k.strip_suffix(".ip6.arpa")?;
    let mut bits: u128 = 0;
    let mut n = 0u32;
    for l in rest.split('.') {
        let [c] = l.as_bytes() else { return None };
        let digit = char::from(*c).to_digit(16)?;
        if c.is_ascii_uppercase() {
            return None;
        }
        bits |= u128::from(digit).checked_shl(4 * n)?;
        n += 1;
        if n > 32 {
            return None;
        }
    }
    (n == 32).then(|| IpAddr::V6(Ipv6Addr::from(bits)))
}

/// The reverse zone of a subnet whose prefix falls on a label boundary (octets for
/// IPv4, nibbles for IPv6), as libvirt writes `local=/…arpa/` for `localPtr='yes'`;
/// `None` for other prefixes (whose full reverse names are still matched address by
/// address).
pub(crate) fn reverse_zone(s: &Subnet) -> Option<Name> {
    let full = reverse_name(s.addr);
    let (labels, total) = match s.addr {
        IpAddr::V4(_) if s.prefix.is_multiple_of(8) && s.prefix <= 32 => {
            (usize::from(s.prefix / 8), 4)
        }
        IpAddr::V6(_) if s.prefix.is_multiple_of(4) && s.prefix <= 128 => {
            (usize::from(s.prefix / 4), 32)
        }
        _ => return None,
    };
    if labels == 0 {
        return None;
    }
    // Drop the host labels from the front of the full reverse name.
    let zone: Vec<&str> = full.split('.').skip(total - labels).collect();
    fqdn(&zone.join("."))
}
