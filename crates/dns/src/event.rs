//! What the server reports for logging.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Formats an upstream as dnsmasq does: `192.0.2.1#53`.
#[derive(Clone, Copy, Debug)]
pub struct Upstream(pub SocketAddr);

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.0.ip(), self.0.port())
    }
}

/// Something log-worthy the server did; drained with
/// [`Server::poll_event`](crate::Server::poll_event).
///
/// Flood-type events ([`Event::ClientLimit`], [`Event::InFlightLimit`],
/// [`Event::NoUpstream`]) are reported once, then again only after the condition
/// cleared.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An upstream is one of the server's own addresses: it is never used.
    UpstreamIsSelf {
        /// The upstream.
        upstream: SocketAddr,
    },
    /// A loop probe sent to this upstream came back as a query: the upstream forwards
    /// to this server. It is not used until the upstreams are set again.
    UpstreamLoop {
        /// The upstream.
        upstream: SocketAddr,
    },
    /// An upstream did not answer in time; the next one (if any) is asked.
    UpstreamTimeout {
        /// The upstream.
        upstream: SocketAddr,
        /// The name asked.
        name: String,
        /// The type asked (`A`, `AAAA`, …).
        qtype: String,
    },
    /// No upstream answered: the clients got SERVFAIL.
    UpstreamsFailed {
        /// The name asked.
        name: String,
        /// The type asked.
        qtype: String,
    },
    /// A query had to be forwarded but no upstream is usable (none configured, none
    /// from the host, or all dropped as loops): SERVFAIL.
    NoUpstream {
        /// The name asked.
        name: String,
        /// The type asked.
        qtype: String,
    },
    /// A client reached its in-flight limit: its further queries are dropped until
    /// some are answered.
    ClientLimit {
        /// The client's address.
        client: IpAddr,
        /// The limit.
        limit: usize,
    },
    /// The in-flight limit of the whole server was reached.
    InFlightLimit {
        /// The limit.
        limit: usize,
    },
    /// A lease's host name is not served.
    LeaseNameIgnored {
        /// The lease's address.
        ip: IpAddr,
        /// The name the client sent.
        hostname: String,
        /// Why.
        reason: &'static str,
    },
}

impl Event {
    /// The line to log for this event on `network`, e.g.
    /// `DNS(default) upstream 192.0.2.1#53 did not answer example.com A`.
    pub fn log_line(&self, network: &str) -> String {
        match self {
            Self::UpstreamIsSelf { upstream } => format!(
                "DNS({network}) ignoring upstream {}: it is this server's own address",
                Upstream(*upstream)
            ),
            Self::UpstreamLoop { upstream } => format!(
                "DNS({network}) loop detected for upstream {}: not using it",
                Upstream(*upstream)
            ),
            Self::UpstreamTimeout {
                upstream,
                name,
                qtype,
            } => format!(
                "DNS({network}) upstream {} did not answer {name} {qtype}",
                Upstream(*upstream)
            ),
            Self::UpstreamsFailed { name, qtype } => {
                format!("DNS({network}) no upstream answered {name} {qtype}: SERVFAIL")
            }
            Self::NoUpstream { name, qtype } => {
                format!("DNS({network}) no upstream servers to ask for {name} {qtype}: SERVFAIL")
            }
            Self::ClientLimit { client, limit } => format!(
                "DNS({network}) {client} has {limit} queries in flight: dropping its queries"
            ),
            Self::InFlightLimit { limit } => format!(
                "DNS({network}) maximum number of concurrent DNS queries reached (max: {limit})"
            ),
            Self::LeaseNameIgnored {
                ip,
                hostname,
                reason,
            } => format!("DNS({network}) not serving name {hostname:?} for {ip}: {reason}"),
        }
    }
}
