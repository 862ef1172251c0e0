//! The token space of the driver's event loop: what each `mio::Token` stands for.

use mio::Token;
use vnet_nat::FlowId;

use crate::MAX_LISTENERS;

/// Numbers of the kinds with many members (ports, connections) wrap within this.
const SPAN: usize = 1 << 20;
const SINGLES: usize = SPAN;
const CONTROL: usize = 2 * SPAN;
const HTTP: usize = 3 * SPAN;
const NAT_LISTENER: usize = 4 * SPAN;
const NAT_RAW_ICMP: usize = NAT_LISTENER + MAX_LISTENERS;
const NAT_FLOW: usize = 1 << 40;

/// What a readiness event is for: one value per token the driver registers. Each kind
/// has a range of its own, so [`Source::of`] decodes any token without guards whose
/// order matters, and `Source::of(s.token()) == Some(s)` for every source in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// A port of the switch, by index (below 2^20).
    Port(usize),
    /// The control socket's listener.
    ControlListener,
    /// The signal pipe.
    Signals,
    /// The DNS forwarding socket ([`crate::DnsUpstream`]).
    DnsUpstream,
    /// The metrics endpoint's listener.
    MetricsListener,
    /// The uplink of route and open modes.
    Uplink,
    /// The QEMU `-netdev stream` listener.
    StreamListener,
    /// The QEMU `-netdev dgram` socket.
    Dgram,
    /// The network's shared vhost-user socket (a port per connection).
    VhostUserListener,
    /// A control connection, by number (taken modulo 2^20).
    Control(usize),
    /// A metrics (HTTP) connection, by number (taken modulo 2^20).
    Http(usize),
    /// A forwarded host port's listener, by index (below [`MAX_LISTENERS`]).
    NatListener(usize),
    /// The raw ICMP socket echo flows share when ping sockets are not permitted.
    NatRawIcmp,
    /// A NAT flow's host socket.
    NatFlow(FlowId),
}

impl Source {
    /// The token to register this source under.
    pub fn token(self) -> Token {
        Token(match self {
            Self::Port(i) => i % SPAN,
            Self::ControlListener => SINGLES,
            Self::Signals => SINGLES + 1,
            Self::DnsUpstream => SINGLES + 2,
            Self::MetricsListener => SINGLES + 3,
            Self::Uplink => SINGLES + 4,
            Self::StreamListener => SINGLES + 5,
            Self::Dgram => SINGLES + 6,
            Self::VhostUserListener => SINGLES + 7,
            Self::Control(n) => CONTROL + n % SPAN,
            Self::Http(n) => HTTP + n % SPAN,
            Self::NatListener(i) => NAT_LISTENER + i % MAX_LISTENERS,
            Self::NatRawIcmp => NAT_RAW_ICMP,
            Self::NatFlow(f) => {
                NAT_FLOW.saturating_add(usize::try_from(f.0).unwrap_or(usize::MAX - NAT_FLOW))
            }
        })
    }

    /// The source a token was registered for; `None` for a token no source has.
    pub fn of(t: Token) -> Option<Self> {
        let t = t.0;
        Some(match t {
            _ if t < SINGLES => Self::Port(t),
            _ if t < CONTROL => match t - SINGLES {
                0 => Self::ControlListener,
                1 => Self::Signals,
                2 => Self::DnsUpstream,
                3 => Self::MetricsListener,
                4 => Self::Uplink,
                5 => Self::StreamListener,
                6 => Self::Dgram,
                7 => Self::VhostUserListener,
                _ => return None,
            },
            _ if t < HTTP => Self::Control(t - CONTROL),
            _ if t < NAT_LISTENER => Self::Http(t - HTTP),
            _ if t < NAT_RAW_ICMP => Self::NatListener(t - NAT_LISTENER),
            _ if t == NAT_RAW_ICMP => Self::NatRawIcmp,
            _ if t >= NAT_FLOW => Self::NatFlow(FlowId(u64::try_from(t - NAT_FLOW).ok()?)),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_decodes_to_itself() {
        let all = [
            Source::Port(0),
            Source::Port(SPAN - 1),
            Source::ControlListener,
            Source::Signals,
            Source::DnsUpstream,
            Source::MetricsListener,
            Source::Uplink,
            Source::StreamListener,
            Source::Dgram,
            Source::VhostUserListener,
            Source::Control(0),
            Source::Control(SPAN - 1),
            Source::Http(0),
            Source::Http(SPAN - 1),
            Source::NatListener(0),
            Source::NatListener(MAX_LISTENERS - 1),
            Source::NatRawIcmp,
            Source::NatFlow(FlowId(0)),
            Source::NatFlow(FlowId(1 << 30)),
        ];
        let mut tokens = std::collections::HashSet::new();
        for s in all {
            assert_eq!(Source::of(s.token()), Some(s), "{s:?}");
            assert!(tokens.insert(s.token()), "{s:?} shares a token");
        }
        // numbers past their span wrap inside it instead of reaching another kind
        assert_eq!(
            Source::of(Source::Control(SPAN + 3).token()),
            Some(Source::Control(3))
        );
        assert_eq!(Source::of(Token(SINGLES + 8)), None);
        assert_eq!(Source::of(Token(NAT_RAW_ICMP + 1)), None);
    }
}
