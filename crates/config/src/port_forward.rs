//! vnet's port forwards (`<vnet:port-forward>`): the type, its checks, and the
//! `PROTO:[ADDRESS:]PORT[-END]:GUEST[:GUEST_PORT]` form the CLI takes (IPv6 addresses in
//! brackets: `tcp:[::]:8080:[fd00::10]:80`).
//!
//! A forward is checked on its own ([`PortForward::problem`]: ports in range, the range
//! not running past 65535 on the guest side) and against the network
//! ([`network_problem`]: forward mode nat, the guest inside an `<ip>` subnet of its
//! family, IPv6 only with `<nat ipv6='yes'/>`, no overlap with another forward). The XML parser, [`Network::add_port_forward`] and
//! [`PortForward::parse_spec`] share them, so each rule has one message.
//!
//! [`Network::add_port_forward`]: crate::Network::add_port_forward

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::str::FromStr;

use crate::model::{ForwardMode, IpDef};
use crate::Error;

/// The element name of a port forward, as errors show it.
pub(crate) const ELEMENT: &str = "vnet:port-forward";

/// The transport protocol of a [`PortForward`].
///
/// Not `#[non_exhaustive]` on purpose: whoever opens the host sockets must handle every
/// protocol, so a new one should break their `match`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ForwardProto {
    /// `tcp`.
    Tcp,
    /// `udp`.
    Udp,
}

impl ForwardProto {
    /// The protocol as written in XML and in a spec: `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

impl fmt::Display for ForwardProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ForwardProto {
    type Err = Error;

    /// `tcp` or `udp` (lowercase, as in the XML).
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            _ => Err(Error::new(
                "",
                format!("unknown protocol '{s}' (expected tcp or udp)"),
            )),
        }
    }
}

/// `<vnet:port-forward proto address port end to to-port>`: host port(s) forwarded to a
/// guest of a NAT network.
///
/// Host port `p` in [`host_ports`](Self::host_ports) goes to guest port
/// [`guest_port_for(p)`](Self::guest_port_for) on `to`. `Display` writes the
/// [`parse_spec`](Self::parse_spec) form, so a forward printed by `port-forward-list`
/// can be pasted back.
///
/// Not `#[non_exhaustive]`, unlike the rest of the model: it is a complete value that
/// callers build and hand to [`Network::add_port_forward`](crate::Network::add_port_forward).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortForward {
    /// `proto`.
    pub proto: ForwardProto,
    /// `address`: the host address to listen on, of `to`'s family (`None`: all, as
    /// `0.0.0.0` or `::`).
    pub address: Option<IpAddr>,
    /// `port`: the (first) host port, 1–65535.
    pub port: u16,
    /// `end`: the last host port of a range `port..=end` (`None`: just `port`).
    pub end: Option<u16>,
    /// `to`: the guest's address, inside one of the network's `<ip>` subnets of its
    /// family (IPv6 needs `<nat ipv6='yes'/>`).
    pub to: IpAddr,
    /// `to-port`: the guest port of host port `port` (`None`: the same as `port`).
    pub to_port: Option<u16>,
}

/// What is wrong with a forward: the XML attribute at fault (`None`: the element as a
/// whole) and why.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) attr: Option<&'static str>,
    pub(crate) reason: String,
}

impl Problem {
    fn attr(attr: &'static str, reason: impl Into<String>) -> Self {
        Self {
            attr: Some(attr),
            reason: reason.into(),
        }
    }
}

impl PortForward {
    /// The host ports: `port..=end`, or just `port`.
    pub fn host_ports(&self) -> RangeInclusive<u16> {
        self.port..=self.end.unwrap_or(self.port)
    }

    /// The host address listened on: `address`, or all addresses of the guest's
    /// family (`0.0.0.0`, `::`).
    pub fn listen_address(&self) -> IpAddr {
        self.address.unwrap_or(match self.to {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        })
    }

    /// The guest port host port `host_port` goes to: `to-port + (host_port − port)`;
    /// `None` if `host_port` is not one of [`host_ports`](Self::host_ports) (or, for a
    /// forward that was never checked, the result would pass 65535).
    pub fn guest_port_for(&self, host_port: u16) -> Option<u16> {
        if !self.host_ports().contains(&host_port) {
            return None;
        }
        self.to_port
            .unwrap_or(self.port)
            .checked_add(host_port - self.port)
    }

    /// Whether `self` and `other` would listen on a common (protocol, address, port):
    /// same protocol and family, the same address or either on all addresses
    /// (`0.0.0.0`, `::`), and intersecting ranges. An IPv6 listener takes IPv6 only.
    pub fn overlaps(&self, other: &Self) -> bool {
        let (a, b) = (self.listen_address(), other.listen_address());
        let (x, y) = (self.host_ports(), other.host_ports());
        self.proto == other.proto
            && a.is_ipv4() == b.is_ipv4()
            && (a == b || a.is_unspecified() || b.is_unspecified())
            && x.start() <= y.end()
            && y.start() <= x.end()
    }

    /// Parses the CLI form `PROTO:[ADDRESS:]PORT[-END]:GUEST[:GUEST_PORT]`, for example
    /// `tcp:8080:192.168.122.10:80` or `udp:0.0.0.0:5000-5010:192.168.122.10`.
    ///
    /// IPv6 addresses are written in brackets (`tcp:[::]:8080:[fd00::10]:80`). With four
    /// fields, the second is `ADDRESS` if it holds a `.` (an IPv4 address) or is in
    /// brackets, and `PORT` otherwise. Checks what a forward can check alone (ports 1–65535, `END` ≥ `PORT`,
    /// guest ports up to 65535); the network checks the rest when it is added.
    /// Errors name the spec, the field and the reason.
    pub fn parse_spec(s: &str) -> Result<Self, Error> {
        let spec_err = |reason: String| Error::new("", format!("port forward '{s}': {reason}"));
        if !s.contains('[') && s.contains("::") {
            return Err(spec_err(format!(
                "an IPv6 address goes in brackets, as in tcp:[::]:8080:[fd00::10]:80 \
                 ({SPEC_FORM})"
            )));
        }
        let parts = fields(s);
        let (proto, address, ports, guest, guest_port) = match parts.as_slice() {
            [p, ports, g] => {
                if is_address(ports) {
                    return Err(spec_err(format!(
                        "missing the guest address after '{ports}:' ({SPEC_FORM})"
                    )));
                }
                (*p, None, *ports, *g, None)
            }
            [p, a, ports, g] if is_address(a) => (*p, Some(*a), *ports, *g, None),
            [p, ports, g, gp] => (*p, None, *ports, *g, Some(*gp)),
            [p, a, ports, g, gp] => (*p, Some(*a), *ports, *g, Some(*gp)),
            _ => {
                return Err(spec_err(format!(
                    "expected {SPEC_FORM}, for example tcp:8080:192.168.122.10:80"
                )))
            }
        };
        let proto: ForwardProto = proto.parse().map_err(|_| {
            spec_err(format!(
                "PROTO '{proto}' is not a protocol (expected tcp or udp)"
            ))
        })?;
        let address = address
            .map(|a| spec_ip(a, "ADDRESS", "the host address to listen on"))
            .transpose()
            .map_err(spec_err)?;
        let (port, end) = match ports.split_once('-') {
            Some((p, e)) => (p, Some(e)),
            None => (ports, None),
        };
        let port = spec_port(port, "PORT").map_err(spec_err)?;
        let end = end
            .map(|e| spec_port(e, "END"))
            .transpose()
            .map_err(spec_err)?;
        let to = spec_ip(guest, "GUEST", "the guest's address").map_err(spec_err)?;
        let to_port = guest_port
            .map(|p| spec_port(p, "GUEST_PORT"))
            .transpose()
            .map_err(spec_err)?;
        let f = Self {
            proto,
            address,
            port,
            end,
            to,
            to_port,
        };
        if let Some(p) = f.problem() {
            let field = match p.attr {
                Some("address") => "ADDRESS",
                Some("end") => "END",
                Some("to") => "GUEST",
                Some("to-port") => "GUEST_PORT",
                _ => "PORT",
            };
            return Err(spec_err(format!("{field}: {}", p.reason)));
        }
        Ok(f)
    }

    /// Parses what names a forward to remove: `PROTO:[ADDRESS:]PORT[-END]`, optionally
    /// followed by `:GUEST[:GUEST_PORT]` (a full spec), giving the arguments of
    /// [`Network::remove_port_forward`](crate::Network::remove_port_forward).
    pub fn parse_key(s: &str) -> Result<(ForwardProto, Option<IpAddr>, u16), Error> {
        let full = Self::parse_spec(s);
        if let Ok(f) = &full {
            return Ok((f.proto, f.address, f.port));
        }
        let spec_err = |reason: String| Error::new("", format!("port forward '{s}': {reason}"));
        let parts = fields(s);
        let (proto, address, ports) = match parts.as_slice() {
            [p, ports] => (*p, None, *ports),
            [p, a, ports] if is_address(a) && !is_address(ports) => (*p, Some(*a), *ports),
            // Meant as a full spec: its own error says what is wrong.
            _ => return full.map(|f| (f.proto, f.address, f.port)),
        };
        let proto: ForwardProto = proto.parse().map_err(|_| {
            spec_err(format!(
                "PROTO '{proto}' is not a protocol (expected tcp or udp)"
            ))
        })?;
        let address = address
            .map(|a| spec_ip(a, "ADDRESS", "the host address to listen on"))
            .transpose()
            .map_err(spec_err)?;
        let (port, end) = ports
            .split_once('-')
            .map_or((ports, None), |(p, e)| (p, Some(e)));
        let port = spec_port(port, "PORT").map_err(spec_err)?;
        if let Some(end) = end {
            spec_port(end, "END").map_err(spec_err)?;
        }
        Ok((proto, address, port))
    }

    /// What is wrong with the forward on its own, if anything.
    pub(crate) fn problem(&self) -> Option<Problem> {
        match self.address {
            Some(IpAddr::V4(a)) if a.is_multicast() || a.is_broadcast() => {
                return Some(Problem::attr(
                    "address",
                    "the listen address must be a unicast IPv4 address of the host, or \
                     0.0.0.0 for all",
                ));
            }
            Some(IpAddr::V6(a)) if a.is_multicast() => {
                return Some(Problem::attr(
                    "address",
                    "the listen address must be a unicast IPv6 address of the host, or :: \
                     for all",
                ));
            }
            Some(a) if a.is_ipv4() != self.to.is_ipv4() => {
                return Some(Problem::attr(
                    "address",
                    format!(
                        "the listen address {a} and the guest address {} are of different \
                         families (an IPv4 forward listens on IPv4, an IPv6 one on IPv6)",
                        self.to
                    ),
                ));
            }
            _ => {}
        }
        if self.port == 0 {
            return Some(Problem::attr("port", "a port is 1 to 65535, not 0"));
        }
        if let Some(end) = self.end {
            if end < self.port {
                return Some(Problem::attr(
                    "end",
                    format!(
                        "the port range ends before it starts (end {end} is below port {})",
                        self.port
                    ),
                ));
            }
        }
        if let Some(tp) = self.to_port {
            if tp == 0 {
                return Some(Problem::attr("to-port", "a port is 1 to 65535, not 0"));
            }
            let span = self.end.unwrap_or(self.port) - self.port;
            let last = u32::from(tp) + u32::from(span);
            if last > u32::from(u16::MAX) {
                return Some(Problem::attr(
                    "to-port",
                    format!(
                        "host ports {}-{} would go to guest ports {tp}-{last}, past 65535",
                        self.port,
                        self.end.unwrap_or(self.port)
                    ),
                ));
            }
        }
        None
    }

    /// The value of XML attribute `attr` as the writer writes it.
    pub(crate) fn attr_value(&self, attr: &str) -> Option<String> {
        match attr {
            "proto" => Some(self.proto.to_string()),
            "address" => self.address.map(|a| a.to_string()),
            "port" => Some(self.port.to_string()),
            "end" => self.end.map(|e| e.to_string()),
            "to" => Some(self.to.to_string()),
            "to-port" => self.to_port.map(|p| p.to_string()),
            _ => None,
        }
    }

    /// The host side as a short string for messages: `0.0.0.0:8080-8090`, `[::]:8080`.
    fn host_side(&self) -> String {
        let a = spec_addr(self.listen_address());
        match self.end {
            Some(end) => format!("{a}:{}-{end}", self.port),
            None => format!("{a}:{}", self.port),
        }
    }
}

/// The spec form, for messages.
const SPEC_FORM: &str = "PROTO:[ADDRESS:]PORT[-END]:GUEST[:GUEST_PORT]";

fn spec_port(s: &str, field: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{field} '{s}' is not a port number (1 to 65535)"));
    }
    s.parse()
        .map_err(|_| format!("{field} '{s}' is not a port number (1 to 65535)"))
}

/// An address of the spec form: IPv4, or IPv6 in brackets.
fn spec_ip(s: &str, field: &str, what: &str) -> Result<IpAddr, String> {
    match s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(v6) => v6
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| format!("{field} '{s}' is not an IPv6 address ({what})")),
        None => s
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| format!("{field} '{s}' is not an IPv4 address ({what})")),
    }
}

/// `a` as the spec form writes it: IPv6 in brackets.
fn spec_addr(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Whether a spec field is an address (IPv4 with its dots, or bracketed IPv6) rather
/// than a port.
fn is_address(s: &str) -> bool {
    s.contains('.') || s.starts_with('[')
}

/// The `:`-separated fields of a spec, a bracketed IPv6 address being one field.
fn fields(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut depth) = (0, 0u32);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

impl fmt::Display for PortForward {
    /// The [`PortForward::parse_spec`] form: `tcp:0.0.0.0:8080-8090:192.168.122.10:80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.proto)?;
        if let Some(a) = self.address {
            write!(f, "{}:", spec_addr(a))?;
        }
        write!(f, "{}", self.port)?;
        if let Some(e) = self.end {
            write!(f, "-{e}")?;
        }
        write!(f, ":{}", spec_addr(self.to))?;
        if let Some(p) = self.to_port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// What is wrong with `f` in a network of mode `mode` with `ips`, next to the forwards
/// `others` (which must not include `f` itself): the mode first, then `f` on its own
/// ([`PortForward::problem`]), then its guest address, then overlaps.
pub(crate) fn network_problem(
    f: &PortForward,
    mode: ForwardMode,
    nat_ipv6: bool,
    ips: &[IpDef],
    others: &[PortForward],
) -> Option<Problem> {
    if let Some(reason) = mode_problem(mode, "port forwards are") {
        return Some(Problem { attr: None, reason });
    }
    if let Some(p) = f.problem() {
        return Some(p);
    }
    let to = f.to;
    if to.is_ipv6() && !nat_ipv6 {
        return Some(Problem::attr(
            "to",
            format!(
                "{to} is an IPv6 guest: forwarding to it needs the network to masquerade IPv6 \
                 (<forward mode='nat'><nat ipv6='yes'/></forward>)"
            ),
        ));
    }
    let family = if to.is_ipv4() { "IPv4" } else { "IPv6" };
    let v4: Vec<&IpDef> = ips
        .iter()
        .filter(|ip| ip.address.is_ipv4() == to.is_ipv4())
        .collect();
    if v4.iter().any(|ip| ip.address == to) {
        return Some(Problem::attr(
            "to",
            format!(
                "{} is the gateway's own address (an <ip address> of the network), not a guest",
                f.to
            ),
        ));
    }
    let Some(ip) = v4.iter().find(|ip| ip.contains(to)) else {
        let subnets: Vec<String> = v4
            .iter()
            .map(|ip| format!("{}/{}", ip.network(), ip.prefix_len()))
            .collect();
        let reason = if subnets.is_empty() {
            format!(
                "the guest address {} cannot be reached: the network has no {family} <ip>",
                f.to
            )
        } else {
            format!(
                "the guest address {} is outside the network's {family} subnets ({})",
                f.to,
                subnets.join(", ")
            )
        };
        return Some(Problem::attr("to", reason));
    };
    let prefix = ip.prefix_len();
    // RFC 3021: a /31 has no network or broadcast address (and a /32 only the gateway).
    if let (IpAddr::V4(to4), true) = (to, prefix <= 30) {
        let subnet = format!("{}/{prefix}", ip.network());
        if to == ip.network() {
            return Some(Problem::attr(
                "to",
                format!("{} is the network address of {subnet}, not a guest", f.to),
            ));
        }
        let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        if u32::from(to4) & host_bits == host_bits {
            return Some(Problem::attr(
                "to",
                format!("{} is the broadcast address of {subnet}, not a guest", f.to),
            ));
        }
    }
    if let Some(other) = others.iter().find(|o| o.overlaps(f)) {
        let why = if other.listen_address() != f.listen_address() {
            if f.to.is_ipv4() {
                " (0.0.0.0 listens on every address)"
            } else {
                " (:: listens on every IPv6 address)"
            }
        } else {
            ""
        };
        return Some(Problem::attr(
            "port",
            format!(
                "{} {} overlaps the forward {other}, which already listens on {} {}{why}",
                f.proto,
                f.host_side(),
                other.proto,
                other.host_side()
            ),
        ));
    }
    None
}

/// Why `subject` ("port forwards are", "<vnet:host-access> is") cannot be used in
/// `mode`, if it cannot: both are served by the NAT engine of a nat network's gateway.
pub(crate) fn mode_problem(mode: ForwardMode, subject: &str) -> Option<String> {
    let this = match mode {
        ForwardMode::Nat => return None,
        ForwardMode::None => "this network is isolated (it has no <forward>)".to_owned(),
        other => format!("this network's forward mode is '{other}'"),
    };
    Some(format!(
        "{subject} only allowed in forward mode 'nat' (<forward mode='nat'/>); {this}"
    ))
}

/// An [`Error`] about `f` (not from a document: no line).
pub(crate) fn error(f: &PortForward, p: Problem) -> Error {
    let mut e = Error::new(ELEMENT, p.reason);
    if let Some(attr) = p.attr {
        e.attribute = Some(attr.to_owned());
        e.value = f.attr_value(attr).map(Box::from);
    }
    e
}
