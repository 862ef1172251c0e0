//! libvirt `<network>` definitions for vnet: parse, validate, normalize, update and write.
//!
//! [`Network::from_xml`] reads the XML that `virsh net-define` takes, checks it the way
//! libvirt does (plus vnet's own limits: forward modes a user-space switch cannot serve
//! are rejected) and fills the defaults libvirt's parser fills. [`Network::to_xml`]
//! writes it back in libvirt's normalized layout. [`Network::update`] is `virsh
//! net-update`, and [`Network::fill_defaults`] does what `net-define` generates (UUID,
//! bridge MAC, bridge name).
//!
//! vnet's own settings, for which libvirt has no element, live in vnet's namespace
//! ([`VNET_NS`], prefix `vnet`) directly under `<network>`: `<vnet:port-forward>`
//! ([`Network::port_forwards`], [`PortForward`]), `<vnet:host-access>`
//! ([`Network::host_access`]) and `<vnet:host-port>` ([`Network::host_port`]). They are parsed and checked like libvirt's elements and
//! written after them.
//!
//! This crate does no I/O except [`Network::from_file`], starts nothing and reads no
//! clock. Things vnet accepts but does not act on yet (dnsmasq options, bandwidth,
//! VLANs, Open vSwitch port profiles) are kept, written back, and listed by
//! [`Network::warnings`].
//!
//! Every error is one [`Error`] naming the line, element, attribute and reason.
//!
//! Input is bounded: XML (a definition or a `net-update` fragment) larger than
//! [`MAX_XML_BYTES`] or nested deeper than [`MAX_XML_DEPTH`] is refused by a
//! non-recursive scan before it is parsed, since the XML parser recurses once per level.
//!
//! ```
//! use vnet_config::{ForwardMode, Network, UpdateCommand, UpdateSection};
//!
//! let mut net = Network::from_xml(
//!     "<network>
//!        <name>lab</name>
//!        <forward mode='nat'/>
//!        <ip address='10.0.5.1' prefix='24'>
//!          <dhcp><range start='10.0.5.10' end='10.0.5.99'/></dhcp>
//!        </ip>
//!      </network>",
//! )?;
//! assert_eq!(net.forward_mode(), ForwardMode::Nat);
//! assert_eq!(net.ipv4_subnets(), vec![("10.0.5.0".parse().unwrap(), 24)]);
//!
//! net.fill_defaults(&["virbr0".to_owned()]);
//! assert_eq!(net.bridge_name(), Some("virbr1"));
//! assert!(net.mac().is_some_and(|m| m.starts_with("52:54:00:")));
//!
//! net.update(
//!     UpdateCommand::AddLast,
//!     UpdateSection::IpDhcpHost,
//!     None,
//!     "<host mac='52:54:00:aa:bb:cc' name='web' ip='10.0.5.5'/>",
//! )?;
//! assert!(net.to_xml().contains("<host mac='52:54:00:aa:bb:cc' name='web' ip='10.0.5.5'/>"));
//!
//! let err = Network::from_xml("<network>\n<name>x</name>\n<forward mode='vepa'/>\n</network>")
//!     .unwrap_err();
//! assert!(err.to_string().starts_with("line 3: <forward mode='vepa'>: forward mode 'vepa' is not supported"));
//! # Ok::<(), vnet_config::Error>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod limits;
mod model;
mod parse;
mod port_forward;
mod update;
mod write;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

pub use error::Error;
pub use limits::{MAX_XML_BYTES, MAX_XML_DEPTH};
pub use model::{
    Bandwidth, BandwidthRate, Bootp, Bridge, Dhcp, DhcpHost, DhcpRange, Dns, DnsForwarder, DnsHost,
    DnsSrv, DnsTxt, Domain, Forward, ForwardMode, IpDef, IpFamily, Lease, LeaseTime, LeaseUnit,
    MacAddr, MacTableManager, Nat, NativeMode, PortGroup, RawAttribute, RawElement, RawNode, Route,
    VirtualPort, Vlan, VlanTag, DEFAULT_LEASE_SECS,
};
pub use port_forward::{ForwardProto, PortForward};
pub use update::{UpdateCommand, UpdateSection};

/// The XML namespace of vnet's own elements (`<vnet:port-forward>`,
/// `<vnet:host-access>`), written with the prefix `vnet`.
pub const VNET_NS: &str = "https://vnet.dev/xmlns/network/1";

/// libvirt's stock `default` network (`src/network/default.xml.in`), as installed in
/// `/usr/share/libvirt/networks/default.xml`.
pub const LIBVIRT_DEFAULT_XML: &str = "<network>
  <name>default</name>
  <bridge name='virbr0'/>
  <forward/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
";

/// The bridge name template used when a network names none (libvirt's).
const BRIDGE_TEMPLATE: &str = "virbr%d";

/// A libvirt virtual network definition, checked.
///
/// Built by [`Network::from_xml`]/[`Network::from_file`]; written by
/// [`Network::to_xml`]. Equality compares the whole definition (and the warnings, which
/// follow from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub(crate) name: String,
    pub(crate) uuid: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) metadata: Option<Vec<RawNode>>,
    pub(crate) ipv6_no_gateway: bool,
    pub(crate) trust_guest_rx_filters: Option<bool>,
    pub(crate) forward: Forward,
    pub(crate) bridge: Bridge,
    pub(crate) mtu: Option<u32>,
    pub(crate) mac: Option<String>,
    pub(crate) domain: Option<Domain>,
    pub(crate) dns: Dns,
    pub(crate) vlan: Option<Vlan>,
    pub(crate) bandwidth: Option<Bandwidth>,
    pub(crate) port_isolated: Option<bool>,
    pub(crate) ips: Vec<IpDef>,
    pub(crate) routes: Vec<Route>,
    pub(crate) virtualport: Option<VirtualPort>,
    pub(crate) portgroups: Vec<PortGroup>,
    pub(crate) dnsmasq_options: Vec<String>,
    pub(crate) port_forwards: Vec<PortForward>,
    pub(crate) host_access: Option<bool>,
    pub(crate) host_port: Option<bool>,
    pub(crate) port_security: Option<bool>,
    pub(crate) extensions: Vec<RawElement>,
    pub(crate) warnings: Vec<String>,
}

impl Network {
    /// Parses and checks a `<network>` definition.
    ///
    /// Fills what libvirt's parser fills (`stp='on' delay='0'` on the bridge of an
    /// isolated/nat/route/open network, the `<interface>` of a `<forward dev>`, mode nat
    /// for a `<forward>` without a mode) but not what libvirt generates at define time:
    /// see [`Network::fill_defaults`].
    pub fn from_xml(xml: &str) -> Result<Self, Error> {
        parse::network(xml)
    }

    /// [`Network::from_xml`] on a file's contents; errors name the file. At most
    /// [`MAX_XML_BYTES`] + 1 bytes are read, so a huge file (or `/dev/zero`) is refused
    /// as too large without being read whole.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        use std::io::Read;
        let read_err =
            |e: std::io::Error| Error::new("", format!("cannot read the file: {e}")).in_file(path);
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut bytes = Vec::new();
        // One byte over the limit is enough to know the file is too large.
        file.take(
            u64::try_from(MAX_XML_BYTES)
                .unwrap_or(u64::MAX)
                .saturating_add(1),
        )
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
        if bytes.len() > MAX_XML_BYTES {
            return Err(limits::too_large(None).in_file(path));
        }
        let xml = String::from_utf8(bytes).map_err(|_| {
            read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            ))
        })?;
        Self::from_xml(&xml).map_err(|e| e.in_file(path))
    }

    /// libvirt's stock `default` network ([`LIBVIRT_DEFAULT_XML`]), parsed: NAT,
    /// bridge `virbr0`, 192.168.122.1/24, DHCP .2–.254; no UUID or MAC yet.
    #[allow(clippy::expect_used)] // A constant, parsed by the tests.
    pub fn libvirt_default() -> Self {
        Self::from_xml(LIBVIRT_DEFAULT_XML).expect("the built-in default network is valid")
    }

    /// The definition in libvirt's normalized layout (element order, single quotes,
    /// two-space indentation), as `virsh net-dumpxml --inactive` prints it.
    pub fn to_xml(&self) -> String {
        write::network(self)
    }

    /// `<name>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the network (1–64 characters of `[A-Za-z0-9_.-]`, not starting with `.`
    /// or `-`).
    pub fn set_name(&mut self, name: &str) -> Result<(), Error> {
        if let Some(problem) = parse::name_problem(name) {
            let mut e = Error::new("name", format!("invalid network name '{name}': {problem}"));
            e.value = Some(name.into());
            return Err(e);
        }
        name.clone_into(&mut self.name);
        Ok(())
    }

    /// `<uuid>`, in canonical lowercase form.
    pub fn uuid(&self) -> Option<&str> {
        self.uuid.as_deref()
    }

    /// `<title>`.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// `<description>`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The children of `<metadata>`, kept verbatim (`None`: no `<metadata>`).
    pub fn metadata(&self) -> Option<&[RawNode]> {
        self.metadata.as_deref()
    }

    /// `<forward mode='nat'><nat ipv6='yes'/>`: the network masquerades IPv6 too.
    pub fn nat_ipv6(&self) -> bool {
        self.forward.mode == ForwardMode::Nat
            && self.forward.nat.as_ref().and_then(|n| n.ipv6) == Some(true)
    }

    /// `<network ipv6='yes'>`: guests may talk IPv6 to each other without an IPv6 `<ip>`.
    pub fn ipv6_without_gateway(&self) -> bool {
        self.ipv6_no_gateway
    }

    /// `<bridge name>`.
    pub fn bridge_name(&self) -> Option<&str> {
        self.bridge.name.as_deref()
    }

    /// `<bridge>`'s attributes.
    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    /// The bridge's `<mac address>`, lowercase (`52:54:00:…` when generated).
    pub fn mac(&self) -> Option<&str> {
        self.mac.as_deref()
    }

    /// Sets the bridge's MAC address (e.g. one generated earlier and persisted, so the
    /// gateway keeps its MAC across restarts of a network run from a file).
    pub fn set_mac(&mut self, mac: MacAddr) {
        self.mac = Some(mac.to_string());
    }

    /// The bridge's MAC address, typed.
    pub fn mac_addr(&self) -> Option<MacAddr> {
        self.mac.as_deref().and_then(|m| m.parse().ok())
    }

    /// `<forward mode>` ([`ForwardMode::None`] for an isolated network).
    pub fn forward_mode(&self) -> ForwardMode {
        self.forward.mode
    }

    /// `<forward>`: mode, interfaces (`dev` is the first), NAT ranges.
    pub fn forward(&self) -> &Forward {
        &self.forward
    }

    /// `<port isolated='yes'/>`: guests may not talk to each other, only to the outside.
    pub fn ports_isolated(&self) -> bool {
        self.port_isolated == Some(true)
    }

    /// `<mtu size>`.
    pub fn mtu(&self) -> Option<u32> {
        self.mtu
    }

    /// `<domain>`.
    pub fn domain(&self) -> Option<&Domain> {
        self.domain.as_ref()
    }

    /// `<dns>` (empty when absent: DNS enabled, no records).
    pub fn dns(&self) -> &Dns {
        &self.dns
    }

    /// The `<ip>` elements, in order.
    pub fn ips(&self) -> &[IpDef] {
        &self.ips
    }

    /// The `<route>` elements, in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// `<vlan>` of the network.
    pub fn vlan(&self) -> Option<&Vlan> {
        self.vlan.as_ref()
    }

    /// `<bandwidth>` of the network.
    pub fn bandwidth(&self) -> Option<&Bandwidth> {
        self.bandwidth.as_ref()
    }

    /// `<virtualport>` of the network.
    pub fn virtualport(&self) -> Option<&VirtualPort> {
        self.virtualport.as_ref()
    }

    /// The `<portgroup>`s, in order.
    pub fn portgroups(&self) -> &[PortGroup] {
        &self.portgroups
    }

    /// The values of `<dnsmasq:options><dnsmasq:option value=…/>` (kept, not honoured).
    pub fn dnsmasq_options(&self) -> &[String] {
        &self.dnsmasq_options
    }

    /// `<vnet:port-forward>`s, in order.
    pub fn port_forwards(&self) -> &[PortForward] {
        &self.port_forwards
    }

    /// `<vnet:host-access enabled>`: whether guests reach the host's loopback through
    /// the gateway's address (NAT mode only). Yes when absent.
    pub fn host_access(&self) -> bool {
        self.host_access != Some(false)
    }

    /// `<vnet:host-port enabled>`: whether switchd gives the host a TAP named after
    /// `<bridge name>` that carries the gateway's address and MAC, so the host reaches
    /// guests directly (as through libvirt's `virbr0`). When absent, as
    /// [`host_access`](Self::host_access): a network that keeps guests away from the
    /// host gets no door from the host either. (switchd skips the port when it lacks the
    /// privilege or the name is taken.)
    pub fn host_port(&self) -> bool {
        self.host_port.unwrap_or(self.host_access())
    }

    /// `<vnet:port-security enabled>`: every guest port of the network is protected
    /// against spoofing (as `port-add --secure`), socket-attached QEMU guests included.
    /// No when absent.
    pub fn port_security(&self) -> bool {
        self.port_security == Some(true)
    }

    /// The portgroup named `name`.
    pub fn portgroup(&self, name: &str) -> Option<&PortGroup> {
        self.portgroups.iter().find(|pg| pg.name == name)
    }

    /// The portgroup with `default='yes'`, which ports that name none join.
    pub fn default_portgroup(&self) -> Option<&PortGroup> {
        self.portgroups.iter().find(|pg| pg.default)
    }

    /// Whether a port in portgroup `pg` (none: the network's own setting) is protected
    /// against spoofing: the group's `<vnet:port-security>` if it has one, else the
    /// network's [`Network::port_security`].
    pub fn port_security_in(&self, pg: Option<&PortGroup>) -> bool {
        pg.and_then(|g| g.port_security)
            .unwrap_or_else(|| self.port_security())
    }

    /// Adds a port forward after the others, checked as `<vnet:port-forward>` is
    /// checked when parsed: forward mode nat, ports 1–65535, `end` ≥ `port`, guest
    /// ports up to 65535, `to` a guest address inside one of the `<ip>` subnets of its
    /// family (not the gateway's address, nor an IPv4 subnet's network or broadcast
    /// address; IPv6 only with `<nat ipv6='yes'/>`), the listen address of the same
    /// family, and no overlap with a forward of the same protocol and family (`0.0.0.0`
    /// and `::` overlap every address of theirs). On error
    /// the network is unchanged; the error names `vnet:port-forward` and the attribute.
    pub fn add_port_forward(&mut self, f: PortForward) -> Result<(), Error> {
        let problem = port_forward::network_problem(
            &f,
            self.forward.mode,
            self.nat_ipv6(),
            &self.ips,
            &self.port_forwards,
        );
        if let Some(p) = problem {
            return Err(port_forward::error(&f, p));
        }
        self.port_forwards.push(f);
        Ok(())
    }

    /// Removes and returns the port forward of `proto` on `address` whose host range
    /// **starts** at `port` (a port inside a range does not name it: removing a whole
    /// range should not follow from naming one of its ports). `address` `None` names a forward
    /// on all addresses of either family (`0.0.0.0` or `::`); `Some(0.0.0.0)` and
    /// `Some(::)` one of that family. The error names the forward that
    /// contains `port`, if one does.
    pub fn remove_port_forward(
        &mut self,
        proto: ForwardProto,
        address: Option<IpAddr>,
        port: u16,
    ) -> Result<PortForward, Error> {
        // `None`: all addresses, of either family
        let on = |f: &PortForward| match address {
            Some(a) => f.listen_address() == a,
            None => f.listen_address().is_unspecified(),
        };
        if let Some(i) = self
            .port_forwards
            .iter()
            .position(|f| f.proto == proto && on(f) && f.port == port)
        {
            return Ok(self.port_forwards.remove(i));
        }
        let hint = self
            .port_forwards
            .iter()
            .find(|f| f.proto == proto && f.host_ports().contains(&port))
            .map(|f| {
                format!(
                    " (the forward {f} covers that port; name a forward by its address and \
                     first port)"
                )
            })
            .unwrap_or_default();
        let addr = address.map_or_else(|| "0.0.0.0".to_owned(), |a| a.to_string());
        let mut e = Error::new(
            port_forward::ELEMENT,
            format!("no {proto} port forward on {addr} starts at port {port}{hint}"),
        );
        e.attribute = Some("port".to_owned());
        e.value = Some(port.to_string().into());
        Err(e)
    }

    /// Foreign-namespace elements directly under `<network>` (kept, not honoured).
    pub fn extensions(&self) -> &[RawElement] {
        &self.extensions
    }

    /// (network address, prefix) of each IPv4 `<ip>`, in order.
    pub fn ipv4_subnets(&self) -> Vec<(Ipv4Addr, u8)> {
        self.ips
            .iter()
            .filter_map(|ip| match ip.network() {
                IpAddr::V4(n) => Some((n, ip.prefix_len())),
                IpAddr::V6(_) => None,
            })
            .collect()
    }

    /// Things the definition asks for that vnet accepts but does not honour (yet).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Fills what libvirt generates at define time: a v4 UUID if there is none; for a
    /// network with a bridge of its own (isolated, nat, route, open) a random
    /// `52:54:00:xx:xx:xx` bridge MAC if there is none, and a bridge name if there is
    /// none (or it is a `%d` template): `virbrN` with the lowest N not in
    /// `taken_bridges`.
    pub fn fill_defaults(&mut self, taken_bridges: &[String]) {
        if self.uuid.is_none() {
            self.uuid = Some(uuid::Uuid::new_v4().hyphenated().to_string());
        }
        if !self.forward.mode.has_own_bridge() {
            return;
        }
        if self.mac.is_none() {
            // The random bytes of a v4 UUID; 52:54:00 is QEMU/KVM's OUI, as in libvirt.
            let r = uuid::Uuid::new_v4().into_bytes();
            self.mac = Some(MacAddr([0x52, 0x54, 0x00, r[0], r[1], r[2]]).to_string());
        }
        let template = match &self.bridge.name {
            None => BRIDGE_TEMPLATE.to_owned(),
            Some(n) if n.contains("%d") => n.clone(),
            Some(_) => return,
        };
        let name = (0u32..)
            .map(|n| template.replacen("%d", &n.to_string(), 1))
            .find(|candidate| !taken_bridges.contains(candidate));
        self.bridge.name = name;
    }

    /// `virsh net-update`: applies `command` to `section` with the XML `fragment`
    /// (`<host>`, `<range>`, `<txt>`, `<srv>`, `<portgroup>`, `<interface>`).
    ///
    /// `parent_index` picks the `<ip>` for `ip-dhcp-*` sections (`None`: the `<ip>` that
    /// has DHCP, else the first IPv4 one). On error the network is unchanged; error
    /// lines are lines of the fragment.
    pub fn update(
        &mut self,
        command: UpdateCommand,
        section: UpdateSection,
        parent_index: Option<usize>,
        fragment: &str,
    ) -> Result<(), Error> {
        update::apply(self, command, section, parent_index, fragment)
    }

    /// The `<dhcp>` of `<ip>` number `idx`, created if missing.
    pub(crate) fn dhcp_mut(&mut self, idx: usize) -> Option<&mut Dhcp> {
        self.ips
            .get_mut(idx)
            .map(|ip| ip.dhcp.get_or_insert_with(Dhcp::default))
    }

    /// Drops the `<dhcp>` of `<ip>` number `idx` if nothing is left in it.
    pub(crate) fn drop_empty_dhcp(&mut self, idx: usize) {
        if let Some(ip) = self.ips.get_mut(idx) {
            if ip
                .dhcp
                .as_ref()
                .is_some_and(|d| d.ranges.is_empty() && d.hosts.is_empty() && d.bootp.is_none())
            {
                ip.dhcp = None;
            }
        }
    }

    /// Recomputes [`Network::warnings`] from the definition.
    pub(crate) fn refresh_warnings(&mut self) {
        let mut w = Vec::new();
        if self.trust_guest_rx_filters.is_some() {
            w.push(
                "<network trustGuestRxFilters> is kept but not honoured: it applies to macvtap \
                 interfaces, which vnet does not create"
                    .to_owned(),
            );
        }
        if self.bridge.zone.is_some() {
            w.push(
                "<bridge zone> is kept but not honoured: vnet does not use firewalld".to_owned(),
            );
        }
        if self.bridge.mac_table_manager.is_some() {
            w.push(
                "<bridge macTableManager> is kept but not honoured: vnet's switch always learns \
                 MAC addresses itself"
                    .to_owned(),
            );
        }
        if self.forward.mode == ForwardMode::Bridge && !self.forward.interfaces.is_empty() {
            w.push(
                "forward mode='bridge' with forward interfaces (macvtap) is kept but not \
                 honoured yet"
                    .to_owned(),
            );
        }
        if self.vlan.is_some() {
            w.push("<vlan> is kept but not honoured yet: vnet does not tag frames".to_owned());
        }
        if self.bandwidth.is_some() {
            w.push(
                "<bandwidth> is kept but not honoured yet: vnet does not shape traffic".to_owned(),
            );
        }
        if let Some(vp) = &self.virtualport {
            let kind = vp.kind.as_deref().unwrap_or_default();
            if kind == "openvswitch" {
                w.push(
                    "<virtualport type='openvswitch'> is kept but not honoured: vnet is the \
                     switch, there is no Open vSwitch bridge"
                        .to_owned(),
                );
            } else {
                w.push(format!(
                    "<virtualport type='{kind}'> is kept but not honoured"
                ));
            }
        }
        for pg in &self.portgroups {
            let kept: Vec<&str> = [
                pg.vlan.as_ref().map(|_| "vlan"),
                pg.virtualport.as_ref().map(|_| "virtualport"),
                pg.bandwidth.as_ref().map(|_| "bandwidth"),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !kept.is_empty() {
                w.push(format!(
                    "portgroup '{}': {} kept but not honoured yet",
                    pg.name,
                    kept.join(", ")
                ));
            }
        }
        let v6: Vec<&IpDef> = self
            .ips
            .iter()
            .filter(|ip| ip.family() == IpFamily::V6)
            .collect();
        if !v6.is_empty()
            && self.ips.iter().all(|ip| ip.family() == IpFamily::V6)
            && matches!(self.forward.mode, ForwardMode::Route | ForwardMode::Open)
        {
            w.push(format!(
                "<forward mode='{}'> routes IPv4 only: an IPv6-only network of this mode \
                 does not start (its uplink needs an IPv4 <ip>)",
                self.forward.mode.as_str()
            ));
        }
        if !v6.is_empty() && self.forward.mode == ForwardMode::Nat && !self.nat_ipv6() {
            let hint = " (<nat ipv6='yes'/> masquerades it; libvirt routes it instead)";
            w.push(format!(
                "<forward mode='{}'> does not carry IPv6 off the network yet{hint}: guests \
                 get addresses and a default route, and \"no route\" for what is off the \
                 segment",
                self.forward.mode.as_str()
            ));
        }
        for opt in &self.dnsmasq_options {
            w.push(format!(
                "<dnsmasq:option value='{opt}'> is kept but not honoured: vnet does not run dnsmasq"
            ));
        }
        for ext in &self.extensions {
            w.push(format!(
                "<{}> (namespace {}) is kept but not honoured",
                ext.qualified_name(),
                ext.namespace.as_deref().unwrap_or_default()
            ));
        }
        self.warnings = w;
    }
}

/// If the IPv4 subnets of two networks overlap, a message naming the overlapping pair.
pub fn ipv4_overlap(a: &Network, b: &Network) -> Option<String> {
    for (an, ap) in a.ipv4_subnets() {
        for (bn, bp) in b.ipv4_subnets() {
            let p = ap.min(bp);
            if model::mask(IpAddr::V4(an), p) == model::mask(IpAddr::V4(bn), p) {
                return Some(format!(
                    "subnet {an}/{ap} of network '{}' overlaps subnet {bn}/{bp} of network '{}'",
                    a.name, b.name
                ));
            }
        }
    }
    None
}
