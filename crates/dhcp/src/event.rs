//! Leases and the events the server reports for logging and persistence.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::SystemTime;

/// An address bound to a client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The client's MAC address (`chaddr`).
    pub mac: [u8; 6],
    /// The client identifier (option 61), if the client sent one.
    pub client_id: Option<Vec<u8>>,
    /// The leased address.
    pub ip: Ipv4Addr,
    /// The host name: the reservation's name, else the client's own (option 12).
    pub hostname: Option<String>,
    /// When the lease ends; `None`: never.
    pub expires: Option<SystemTime>,
}

impl Lease {
    /// Whether the lease is still valid at `now`.
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|e| e > now)
    }

    /// The key that identifies the lease's client.
    pub(crate) fn key(&self) -> ClientKey {
        ClientKey::new(self.mac, self.client_id.as_deref())
    }
}

/// What identifies a client: its client identifier (option 61) if it sends one, else
/// its MAC address (RFC 2131 §4.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ClientKey {
    /// Option 61.
    Id(Vec<u8>),
    /// `chaddr`.
    Mac([u8; 6]),
}

impl ClientKey {
    pub(crate) fn new(mac: [u8; 6], client_id: Option<&[u8]>) -> Self {
        match client_id {
            Some(id) => Self::Id(id.to_vec()),
            None => Self::Mac(mac),
        }
    }
}

/// Formats a MAC address as `52:54:00:12:34:56`.
#[derive(Clone, Copy, Debug)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Something the server did, for logging and persistence; drained with
/// [`Server::poll_event`](crate::Server::poll_event).
///
/// The `Lease*` events are for the lease database: the driver records them before it
/// sends the reply of the call that produced them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A DHCPDISCOVER arrived.
    Discover {
        /// `chaddr`.
        mac: [u8; 6],
        /// The client's host name (option 12), if it sent one.
        hostname: Option<String>,
    },
    /// A DHCPOFFER was sent.
    Offer {
        /// The offered address.
        ip: Ipv4Addr,
        /// `chaddr`.
        mac: [u8; 6],
    },
    /// A DHCPREQUEST arrived.
    Request {
        /// The requested address (option 50, else `ciaddr`).
        ip: Ipv4Addr,
        /// `chaddr`.
        mac: [u8; 6],
    },
    /// A DHCPACK for a lease was sent.
    Ack {
        /// The lease granted or renewed.
        lease: Lease,
    },
    /// A DHCPNAK was sent.
    Nak {
        /// The address refused.
        ip: Ipv4Addr,
        /// `chaddr`.
        mac: [u8; 6],
        /// Why, in dnsmasq's words (also sent in option 56).
        reason: &'static str,
    },
    /// A DHCPDECLINE arrived (the address is in use by someone else).
    Decline {
        /// The declined address.
        ip: Ipv4Addr,
        /// `chaddr`.
        mac: [u8; 6],
    },
    /// A DHCPRELEASE arrived.
    Release {
        /// The released address.
        ip: Ipv4Addr,
        /// `chaddr`.
        mac: [u8; 6],
    },
    /// A DHCPINFORM arrived (and was answered).
    Inform {
        /// The client's address (`ciaddr`).
        ip: Ipv4Addr,
        /// `chaddr`.
        mac: [u8; 6],
    },
    /// A DHCPDISCOVER went unanswered: no address was free.
    PoolExhausted {
        /// `chaddr`.
        mac: [u8; 6],
    },
    /// A lease was granted or renewed: persist it.
    LeaseGranted(Lease),
    /// A lease ended early (RELEASE, DECLINE, or replaced by another lease of the same
    /// client): persist its removal.
    LeaseReleased(Lease),
    /// A lease expired: persist its removal.
    LeaseExpired(Lease),
}

impl Event {
    /// The line dnsmasq would log for this event on `network`, e.g.
    /// `DHCPACK(default) 192.168.122.91 52:54:00:12:34:56 vm1`; `None` for the
    /// `Lease*` events, which dnsmasq does not log.
    pub fn log_line(&self, network: &str) -> Option<String> {
        Some(match self {
            Self::Discover { mac, .. } => format!("DHCPDISCOVER({network}) {}", Mac(*mac)),
            Self::Offer { ip, mac } => format!("DHCPOFFER({network}) {ip} {}", Mac(*mac)),
            Self::Request { ip, mac } => format!("DHCPREQUEST({network}) {ip} {}", Mac(*mac)),
            Self::Ack { lease } => match &lease.hostname {
                Some(h) => format!("DHCPACK({network}) {} {} {h}", lease.ip, Mac(lease.mac)),
                None => format!("DHCPACK({network}) {} {}", lease.ip, Mac(lease.mac)),
            },
            Self::Nak { ip, mac, reason } => {
                format!("DHCPNAK({network}) {ip} {} {reason}", Mac(*mac))
            }
            Self::Decline { ip, mac } => format!("DHCPDECLINE({network}) {ip} {}", Mac(*mac)),
            Self::Release { ip, mac } => format!("DHCPRELEASE({network}) {ip} {}", Mac(*mac)),
            Self::Inform { ip, mac } => format!("DHCPINFORM({network}) {ip} {}", Mac(*mac)),
            Self::PoolExhausted { mac } => {
                format!("DHCP({network}) no address available for {}", Mac(*mac))
            }
            Self::LeaseGranted(_) | Self::LeaseReleased(_) | Self::LeaseExpired(_) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    #[test]
    fn log_lines() {
        let ip = Ipv4Addr::new(192, 168, 122, 91);
        let lease = Lease {
            mac: MAC,
            client_id: None,
            ip,
            hostname: Some("vm1".into()),
            expires: None,
        };
        let cases = [
            (
                Event::Ack {
                    lease: lease.clone(),
                },
                "DHCPACK(default) 192.168.122.91 52:54:00:12:34:56 vm1",
            ),
            (
                Event::Ack {
                    lease: Lease {
                        hostname: None,
                        ..lease.clone()
                    },
                },
                "DHCPACK(default) 192.168.122.91 52:54:00:12:34:56",
            ),
            (
                Event::Discover {
                    mac: MAC,
                    hostname: Some("vm1".into()),
                },
                "DHCPDISCOVER(default) 52:54:00:12:34:56",
            ),
            (
                Event::Offer { ip, mac: MAC },
                "DHCPOFFER(default) 192.168.122.91 52:54:00:12:34:56",
            ),
            (
                Event::Request { ip, mac: MAC },
                "DHCPREQUEST(default) 192.168.122.91 52:54:00:12:34:56",
            ),
            (
                Event::Nak {
                    ip: Ipv4Addr::new(10, 0, 0, 5),
                    mac: MAC,
                    reason: "wrong address",
                },
                "DHCPNAK(default) 10.0.0.5 52:54:00:12:34:56 wrong address",
            ),
            (
                Event::Decline { ip, mac: MAC },
                "DHCPDECLINE(default) 192.168.122.91 52:54:00:12:34:56",
            ),
            (
                Event::Release { ip, mac: MAC },
                "DHCPRELEASE(default) 192.168.122.91 52:54:00:12:34:56",
            ),
            (
                Event::Inform { ip, mac: MAC },
                "DHCPINFORM(default) 192.168.122.91 52:54:00:12:34:56",
            ),
            (
                Event::PoolExhausted { mac: MAC },
                "DHCP(default) no address available for 52:54:00:12:34:56",
            ),
        ];
        for (event, line) in cases {
            assert_eq!(event.log_line("default").as_deref(), Some(line));
        }
        assert_eq!(Event::LeaseGranted(lease.clone()).log_line("default"), None);
        assert_eq!(
            Event::LeaseReleased(lease.clone()).log_line("default"),
            None
        );
        assert_eq!(Event::LeaseExpired(lease).log_line("default"), None);
    }
}
