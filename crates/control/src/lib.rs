//! The control protocol between `switchctl` (or any client) and `switchd`.
//!
//! One unix stream socket per network, `<run-dir>/<network>.ctl`, owner-only. The client
//! writes one JSON [`Request`] per line; the daemon answers each with one JSON
//! [`Response`] line. Requests are bounded ([`MAX_REQUEST_LEN`]); an unknown or malformed
//! request gets an error response and changes nothing.
//!
//! ```
//! use vnet_control::{Request, PortAdd};
//! let r: Request = serde_json::from_str(r#"{"cmd":"port-del","port":"vnet0"}"#).unwrap();
//! assert_eq!(r, Request::PortDel { port: "vnet0".into() });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod capture;
mod error;
pub mod metrics;
pub mod server;
pub mod start;

pub use error::ControlError;
pub mod store;

/// The longest request line the daemon reads.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

/// A request to the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Request {
    /// Add a port.
    PortAdd(PortAdd),
    /// Remove a port by name.
    PortDel {
        /// The port's name.
        port: String,
    },
    /// List the ports with their counters.
    PortList,
    /// Dump the forwarding database.
    FdbShow,
    /// The network's name, uptime and table sizes.
    NetInfo,
    /// The live definition, as libvirt-style XML.
    DumpXml,
    /// Apply a `net-update` to the live definition.
    NetUpdate(NetUpdate),
    /// Stop the network (as SIGTERM does), after answering.
    Shutdown,
    /// The DHCP leases (virsh `net-dhcp-leases`).
    DhcpLeases,
    /// The DNS records the network serves.
    DnsRecords,
    /// The NAT flows.
    NatFlows,
    /// Add a port forward (`PROTO:[ADDRESS:]PORT[-END]:GUEST[:GUEST_PORT]`).
    PortForwardAdd {
        /// The forward, as `switchctl port-forward-add` takes it.
        spec: String,
    },
    /// Remove the port forward of that protocol, address and first port.
    PortForwardDel {
        /// The forward (its guest part may be left out).
        spec: String,
    },
    /// The port forwards.
    PortForwardList,
    /// Stream the network's events (ports, leases, stop) as JSON lines on this
    /// connection, after the response line.
    Events,
    /// Stream the frames of one port (both directions) or of every port (as they
    /// arrive) as pcap on this connection, after the response line.
    Capture {
        /// A port name; `None`: every port.
        #[serde(default)]
        port: Option<String>,
        /// Stop after this many frames.
        #[serde(default)]
        count: Option<u64>,
    },
}

impl Request {
    /// Parses one request line. Unlike plain `serde_json::from_slice`, a field the
    /// request does not have is an error for every request (serde ignores extra fields
    /// beside the tag of a request that has none).
    pub fn parse(line: &[u8]) -> Result<Self, serde_json::Error> {
        use serde::de::Error as _;
        let value: serde_json::Value = serde_json::from_slice(line)?;
        let req: Self = serde_json::from_value(value.clone())?;
        if let (Some(given), Ok(serde_json::Value::Object(known))) =
            (value.as_object(), serde_json::to_value(&req))
        {
            if let Some(k) = given.keys().find(|k| !known.contains_key(*k)) {
                return Err(serde_json::Error::custom(format!("unknown field `{k}`")));
            }
        }
        Ok(req)
    }
}

/// One NAT flow, as `nat-flows` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatFlowRow {
    /// Flow id.
    pub id: u64,
    /// `tcp`, `udp` or `icmp`.
    pub proto: String,
    /// The guest's address and port (ICMP: echo id).
    pub guest: String,
    /// The remote address and port, as the guest sees it.
    pub remote: String,
    /// Where the host side goes (the host's loopback for the gateway address).
    pub target: String,
    /// Opened from outside (a port forward).
    pub inbound: bool,
    /// State (`connecting`, `established`, `replied`, ...).
    pub state: String,
    /// Bytes from the guest.
    pub bytes_out: u64,
    /// Bytes to the guest.
    pub bytes_in: u64,
    /// Seconds since the flow began.
    pub age_secs: u64,
}

/// One DNS record the network serves, as `net-dns-records` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecordRow {
    /// Owner name, fully qualified, without the final dot.
    pub name: String,
    /// Record type: `A`, `AAAA`, `PTR`, `TXT`, `SRV`.
    #[serde(rename = "type")]
    pub rtype: String,
    /// The record's data, in presentation format.
    pub value: String,
    /// Where it comes from: `lease`, `reservation`, `dns-host`, `txt`, `srv`.
    pub source: String,
}

/// One DHCP lease, as `net-dhcp-leases` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRow {
    /// Expiry, seconds since the Unix epoch; `None` for an infinite lease.
    pub expiry: Option<u64>,
    /// Client MAC address.
    pub mac: String,
    /// `ipv4`.
    pub protocol: String,
    /// Address with prefix, like `192.168.122.91/24`.
    pub ip: String,
    /// Hostname the client gave or its reservation's name.
    pub hostname: Option<String>,
    /// Client identifier (option 61), hex with colons.
    pub client_id: Option<String>,
}

/// The gateway's identity and counters, in [`NetInfo`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// Gateway address.
    pub ip: String,
    /// Gateway MAC.
    pub mac: String,
    /// Whether it serves DHCP.
    pub dhcp: bool,
    /// Active leases.
    pub leases: usize,
    /// ARP replies sent.
    pub arp_replies: u64,
    /// ICMP echo replies sent.
    pub echo_replies: u64,
    /// DHCP messages received.
    pub dhcp_in: u64,
    /// DHCP replies sent.
    pub dhcp_out: u64,
    /// DHCP messages dropped as malformed, truncated or not requests.
    pub dhcp_dropped: u64,
    /// Frames to the gateway that could not be parsed.
    pub malformed: u64,
    /// NAT counters by name (NAT mode only).
    #[serde(default)]
    pub nat: Option<BTreeMap<String, u64>>,
    /// Whether it serves DNS.
    #[serde(default)]
    pub dns: bool,
    /// DNS counters by name (queries, answered locally, forwarded, cache hits, ...).
    #[serde(default)]
    pub dns_stats: BTreeMap<String, u64>,
    /// DHCP counters by name: `received_<type>` and `sent_<type>` per message type,
    /// `dropped_<reason>`, `pool_exhausted`, `other_server`.
    #[serde(default)]
    pub dhcp_stats: BTreeMap<String, u64>,
    /// IPv6 counters by name (router solicitations and advertisements, neighbor
    /// solicitations, echo replies, no-route errors, drops); empty without IPv6.
    #[serde(default)]
    pub ipv6: BTreeMap<String, u64>,
}

/// Arguments of [`Request::NetUpdate`] (virsh `net-update`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetUpdate {
    /// `add`, `add-first`, `add-last`, `delete` or `modify`.
    pub command: String,
    /// `ip-dhcp-host`, `ip-dhcp-range`, `dns-host`, `dns-txt`, `dns-srv`, `portgroup`, ...
    pub section: String,
    /// Which `<ip>` (for `ip-dhcp-*`); `None`: the first that fits.
    #[serde(default)]
    pub parent_index: Option<usize>,
    /// The XML fragment.
    pub xml: String,
}

/// What kind of port to add.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PortKind {
    /// A TAP device created by the daemon.
    Tap,
    /// An existing interface attached through an `AF_PACKET` socket (promiscuous).
    Netdev,
    /// A QEMU `-netdev stream` connection to the network's stream socket.
    Stream,
    /// A QEMU `-netdev dgram` peer of the network's datagram socket.
    Dgram,
    /// A vhost-user frontend (QEMU `-netdev vhost-user`, DPDK `virtio_user`) on a unix
    /// socket the port listens on (`socket`) or connects to (`connect`).
    VhostUser,
}

/// What a protected port may send as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSecurityInfo {
    /// Its MAC (none until it sent a frame, when none was given).
    pub mac: Option<String>,
    /// The addresses it may send from: IPv4 (leased or reserved), then the IPv6 ones it
    /// claimed by duplicate address detection.
    pub addrs: Vec<String>,
}

/// Arguments of [`Request::PortAdd`].
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortAdd {
    /// The kind of port.
    pub kind: Option<PortKind>,
    /// Port name (unique in the network). Default: the interface name, or
    /// `NETNS:IFNAME` for a port in another namespace.
    #[serde(default)]
    pub name: Option<String>,
    /// Create the interface in this network namespace (name or path).
    #[serde(default)]
    pub netns: Option<String>,
    /// Interface name (default: the port name, else chosen by the kernel, `vnetN`); for
    /// a netdev port, the existing interface (required).
    #[serde(default)]
    pub ifname: Option<String>,
    /// MAC address of the interface.
    #[serde(default)]
    pub mac: Option<String>,
    /// Keep the device when the daemon exits.
    #[serde(default)]
    pub persistent: bool,
    /// Isolated port: reaches only non-isolated ports.
    #[serde(default)]
    pub isolated: bool,
    /// Attach to an existing persistent TAP instead of creating one (no privileges
    /// needed when the TAP belongs to the daemon's user).
    #[serde(default)]
    pub attach: bool,
    /// Port security: the port may send only from its MAC (`mac`, else the first it
    /// uses) and its leased or reserved IPv4 addresses; no DHCP server replies.
    #[serde(default)]
    pub secure: bool,
    /// A TAP without checksum and segmentation offloads (the guest's stack does that
    /// work; switchd segments super-frames from other ports in software for it).
    #[serde(default)]
    pub no_offloads: bool,
    /// Exempt the port from the network's port security (`<vnet:port-security>`).
    #[serde(default)]
    pub trusted: bool,
    /// The network's `<portgroup>` to join (default: the one with `default='yes'`, if
    /// any); its `<vnet:port-security>` decides unless `secure` or `trusted` is given.
    #[serde(default)]
    pub portgroup: Option<String>,
    /// A vhost-user port: the socket it listens on (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// A vhost-user port: the frontend's socket it connects to (QEMU `server=on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
}

impl PortAdd {
    /// A TAP port with default settings.
    pub fn tap() -> Self {
        Self {
            kind: Some(PortKind::Tap),
            ..Self::default()
        }
    }
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    /// Success, with a verb-specific result.
    Ok {
        /// Always `true`.
        ok: bool,
        /// The result ([`PortInfo`], a list of them, [`FdbRow`]s, [`NetInfo`], or null).
        result: serde_json::Value,
    },
    /// Failure: one line saying what went wrong.
    Err {
        /// Always `false`.
        ok: bool,
        /// The reason.
        error: String,
    },
}

impl Response {
    /// A success carrying `result`.
    pub fn ok<T: Serialize>(result: &T) -> Self {
        match serde_json::to_value(result) {
            Ok(result) => Self::Ok { ok: true, result },
            Err(e) => Self::err(format!("cannot encode the result: {e}")),
        }
    }

    /// A failure with `msg`.
    pub fn err(msg: impl Into<String>) -> Self {
        Self::Err {
            ok: false,
            error: msg.into(),
        }
    }
}

/// Counters of one port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Frames received from the port.
    pub rx_frames: u64,
    /// Bytes received from the port.
    pub rx_bytes: u64,
    /// Frames sent to the port.
    pub tx_frames: u64,
    /// Bytes sent to the port.
    pub tx_bytes: u64,
    /// Frames received on the port that were flooded.
    pub flooded: u64,
    /// Dropped frames by reason (only non-zero reasons).
    pub drops: BTreeMap<String, u64>,
}

/// One port, as `port-list` and `port-add` report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// Port name.
    pub name: String,
    /// Port id in the switch.
    pub id: u16,
    /// Kind of port.
    pub kind: PortKind,
    /// Interface name.
    pub ifname: String,
    /// Network namespace of the interface, if not the daemon's.
    pub netns: Option<String>,
    /// Persistent device.
    pub persistent: bool,
    /// Isolated port.
    pub isolated: bool,
    /// The `<portgroup>` the port joined, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portgroup: Option<String>,
    /// Port security: the MAC and IPv4 addresses the port may send from (absent for an
    /// unprotected port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<PortSecurityInfo>,
    /// MAC addresses learned on the port.
    pub macs: usize,
    /// The state of the port's peer, for a port whose peer comes and goes (vhost-user:
    /// `connected`, `listening`, `connecting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Counters.
    pub counters: Counters,
    /// What the port's device did: system calls and offload work.
    #[serde(default)]
    pub io: IoCounters,
}

/// What a port's device did: system calls, and the offload work that crossed it or
/// was done in software for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoCounters {
    /// Read system calls (including those that found nothing).
    pub reads: u64,
    /// Write system calls.
    pub writes: u64,
    /// GSO super-frames received.
    pub gso_in: u64,
    /// GSO super-frames sent whole.
    pub gso_out: u64,
    /// Super-frames cut in software (the port takes plain frames only).
    pub segmented: u64,
    /// Frames those cuts produced.
    pub segments: u64,
    /// Checksums completed in software.
    pub csums: u64,
}

/// One forwarding-database entry, as `fdb-show` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FdbRow {
    /// Station address.
    pub mac: String,
    /// VLAN (0: untagged).
    pub vlan: u16,
    /// Port name.
    pub port: String,
    /// Seconds since last seen.
    pub age: f64,
}

/// What `net-info` reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetInfo {
    /// Network name.
    pub name: String,
    /// Daemon process id.
    pub pid: u32,
    /// Seconds since start.
    pub uptime: f64,
    /// Number of ports.
    pub ports: usize,
    /// Entries in the forwarding database.
    pub fdb_entries: usize,
    /// Bound on the forwarding database.
    pub fdb_max_entries: usize,
    /// FDB entries evicted because the table was full.
    #[serde(default)]
    pub fdb_evictions: u64,
    /// Aging time in seconds.
    pub aging_time: u64,
    /// UUID of the network definition.
    #[serde(default)]
    pub uuid: Option<String>,
    /// Bridge name of the definition.
    #[serde(default)]
    pub bridge: Option<String>,
    /// Forward mode (`nat`, `route`, `open`, `bridge`, or `isolated`).
    #[serde(default)]
    pub mode: String,
    /// The gateway, when the network has one.
    #[serde(default)]
    pub gateway: Option<GatewayInfo>,
    /// The router's counters (route and open modes): `out`, `in`, `ttl_expired`,
    /// `no_route`, `unresolved`, `waiting_full`, `malformed`, `uplink_tx_errors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<BTreeMap<String, u64>>,
}

/// Errors of the client side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No daemon listens on the socket.
    #[error("cannot connect to {path} (is the network running?)")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("control socket i/o failed")]
    Io(#[from] std::io::Error),
    /// The daemon's answer was not a response.
    #[error("malformed response from the daemon")]
    Malformed(#[from] serde_json::Error),
    /// The daemon closed the connection without answering.
    #[error("the daemon closed the connection without answering")]
    NoAnswer,
}

/// Path of a network's control socket.
pub fn control_socket_path(run_dir: &Path, network: &str) -> PathBuf {
    run_dir.join(format!("{network}.ctl"))
}

/// Checks a network name: 1 to 64 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
pub fn validate_network_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("network name {name:?} must be 1 to 64 characters"));
    }
    if name.starts_with(['.', '-']) {
        return Err(format!(
            "network name {name:?} must not start with '.' or '-'"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(format!(
            "network name {name:?} may hold only letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

/// A connection to one network's daemon.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the control socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, Error> {
        let stream = UnixStream::connect(path).map_err(|source| Error::Connect {
            path: path.to_owned(),
            source,
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    /// Sends one request and waits for its response.
    pub fn call(&mut self, req: &Request) -> Result<Response, Error> {
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        self.call_raw(&line)
    }

    /// What the daemon sends after the response (a capture's pcap stream, events),
    /// buffered bytes included; reads wait at most `timeout` (`None`: for ever).
    pub fn into_stream(self, timeout: Option<Duration>) -> std::io::Result<BufReader<UnixStream>> {
        self.reader.get_ref().set_read_timeout(timeout)?;
        Ok(self.reader)
    }

    /// Sends raw bytes as a request line and waits for the response (for tests of
    /// malformed input).
    pub fn call_raw(&mut self, line: &[u8]) -> Result<Response, Error> {
        self.reader.get_mut().write_all(line)?;
        let mut resp = String::new();
        if self.reader.read_line(&mut resp)? == 0 {
            return Err(Error::NoAnswer);
        }
        Ok(serde_json::from_str(&resp)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        let r: Request = serde_json::from_str(
            r#"{"cmd":"port-add","kind":"tap","netns":"vm1","ifname":"eth0","mac":"52:54:00:00:00:01"}"#,
        )
        .unwrap();
        let Request::PortAdd(a) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(
            (a.netns.as_deref(), a.ifname.as_deref()),
            (Some("vm1"), Some("eth0"))
        );
        let back: Request = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"port-add","bogus":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"nope"}"#).is_err());
        // an unknown field is refused in every kind of request, not ignored
        for bad in [
            r#"{"cmd":"port-list","bogus":1}"#,
            r#"{"cmd":"port-del","port":"a","bogus":1}"#,
            r#"{"cmd":"capture","bogus":1}"#,
            r#"{"cmd":"net-update","command":"add","section":"ip-dhcp-host","xml":"<host/>","bogus":1}"#,
        ] {
            let e = Request::parse(bad.as_bytes()).expect_err(bad);
            assert!(e.to_string().contains("bogus"), "{bad}: {e}");
        }
        assert_eq!(
            Request::parse(br#"{"cmd":"port-list"}"#).unwrap(),
            Request::PortList
        );
        assert_eq!(Request::parse(&serde_json::to_vec(&r).unwrap()).unwrap(), r);
    }

    #[test]
    fn response_wire_format() {
        let ok = serde_json::to_string(&Response::ok(&42)).unwrap();
        assert_eq!(ok, r#"{"ok":true,"result":42}"#);
        let err = serde_json::to_string(&Response::err("no such port x")).unwrap();
        assert_eq!(err, r#"{"ok":false,"error":"no such port x"}"#);
        assert_eq!(
            serde_json::from_str::<Response>(&err).unwrap(),
            Response::err("no such port x")
        );
    }

    #[test]
    fn network_names() {
        assert!(validate_network_name("default").is_ok());
        assert!(validate_network_name("t-1.net_2").is_ok());
        for bad in ["", ".x", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_network_name(bad).is_err(), "{bad:?}");
        }
    }
}

/// Default locations of the run directory (sockets) and state directory (definitions,
/// leases): `/run/vnet` and `/var/lib/vnet` for root; `$XDG_RUNTIME_DIR/vnet` and
/// `$XDG_STATE_HOME/vnet` (or `~/.local/state/vnet`) for other users.
pub mod dirs {
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    /// Environment variable that overrides the run directory.
    pub const RUN_DIR_ENV: &str = "VNET_RUN_DIR";
    /// Environment variable that overrides the state directory.
    pub const STATE_DIR_ENV: &str = "VNET_STATE_DIR";

    fn is_root() -> bool {
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }

    fn env_dir(var: &str) -> Option<PathBuf> {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }

    /// The default run directory.
    pub fn default_run_dir() -> PathBuf {
        if is_root() {
            return PathBuf::from("/run/vnet");
        }
        match env_dir("XDG_RUNTIME_DIR") {
            Some(d) => d.join("vnet"),
            None => std::env::temp_dir().join(format!(
                "vnet-{}",
                std::fs::metadata("/proc/self")
                    .map(|m| m.uid())
                    .unwrap_or(0)
            )),
        }
    }

    /// The default state directory.
    pub fn default_state_dir() -> PathBuf {
        if is_root() {
            return PathBuf::from("/var/lib/vnet");
        }
        env_dir("XDG_STATE_HOME")
            .or_else(|| env_dir("HOME").map(|h| h.join(".local/state")))
            .unwrap_or_else(std::env::temp_dir)
            .join("vnet")
    }
}
