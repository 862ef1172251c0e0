//! IPv6 through a whole network in memory: the networks of libvirt's corpus that carry
//! IPv6 serve what the dnsmasq configuration libvirt writes for them says (router
//! advertisements, DHCPv6 ranges and reservations by DUID and by name), an IPv6-only
//! network works without any IPv4, and DHCPv6 names reach DNS (UDP and TCP).

mod common;

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::Duration;

use common::Harness;
use dhcproto::v6::{DhcpOption, DhcpOptions, Message, MessageType, OptionCode, IANA};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use hickory_proto::op::{Message as DnsMessage, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use vnet_network::PortConfig;
use vnet_switch::MacAddr;

const STEP: Duration = Duration::from_millis(10);

fn corpus(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/libvirt")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A corpus network, with a MAC (libvirt gives one when it defines a network).
fn network(rel: &str) -> vnet_config::Network {
    let mut def = vnet_config::Network::from_xml(&corpus(rel)).unwrap();
    if def.mac_addr().is_none() {
        def.set_mac("52:54:00:aa:bb:01".parse().unwrap());
    }
    def
}

/// A guest's frame from its link-local address: `udp` (source and destination port)
/// with `payload`, or ICMPv6 `icmp` (type and body).
fn frame6(mac: [u8; 6], dst: Ipv6Addr, udp: Option<(u16, u16)>, payload: &[u8]) -> Vec<u8> {
    frame6_from(mac, MacAddr(mac).ipv6_link_local(), dst, udp, payload)
}

fn frame6_from(
    mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    udp: Option<(u16, u16)>,
    payload: &[u8],
) -> Vec<u8> {
    let dst_mac = if dst.is_multicast() {
        let o = dst.octets();
        [0x33, 0x33, o[12], o[13], o[14], o[15]]
    } else {
        [0x52, 0x54, 0, 0xaa, 0xbb, 0x01]
    };
    let eth = etherparse::PacketBuilder::ethernet2(mac, dst_mac);
    let mut f = Vec::new();
    match udp {
        Some((sport, dport)) => eth
            .ipv6(src.octets(), dst.octets(), 64)
            .udp(sport, dport)
            .write(&mut f, payload)
            .unwrap(),
        None => eth
            .ipv6(src.octets(), dst.octets(), 255)
            .icmpv6(etherparse::Icmpv6Type::RouterSolicitation)
            .write(&mut f, payload)
            .unwrap(),
    }
    f
}

/// What one router advertisement says.
#[derive(Debug, Default)]
struct Ra {
    managed: bool,
    lifetime: u16,
    /// Prefix, length, autonomous flag.
    prefixes: Vec<(Ipv6Addr, u8, bool)>,
    rdnss: Vec<Ipv6Addr>,
}

fn parse_ra(f: &[u8]) -> Option<Ra> {
    let ip = etherparse::Ipv6Slice::from_slice(f.get(14..)?).ok()?;
    let icmp = ip.payload().payload;
    if ip.payload().ip_number != etherparse::IpNumber::IPV6_ICMP || icmp.first() != Some(&134) {
        return None;
    }
    let mut ra = Ra {
        managed: icmp.get(5)? & 0x80 != 0,
        lifetime: u16::from_be_bytes([*icmp.get(6)?, *icmp.get(7)?]),
        ..Ra::default()
    };
    let mut opts = icmp.get(16..)?;
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        let o = opts.get(..len).filter(|_| len > 0)?;
        match o[0] {
            3 => {
                let a: [u8; 16] = o.get(16..32)?.try_into().ok()?;
                ra.prefixes.push((a.into(), o[2], o[3] & 0x40 != 0));
            }
            25 => {
                for a in o.get(8..)?.chunks_exact(16) {
                    ra.rdnss.push(<[u8; 16]>::try_from(a).ok()?.into());
                }
            }
            _ => {}
        }
        opts = &opts[len..];
    }
    Some(ra)
}

/// Guest `g` solicits a router; the advertisement it gets.
fn solicit_router(h: &mut Harness, g: usize) -> Ra {
    let mac = h.guests[g].mac;
    h.step(STEP);
    h.guests[g].wire.rx.clear();
    let all_routers = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
    let rs = frame6(mac, all_routers, None, &[]);
    h.guests[g].wire.tx.push_back(rs);
    h.step(STEP);
    let ra = h.guests[g].wire.rx.iter().find_map(|f| parse_ra(f));
    ra.expect("an advertisement")
}

/// A DHCPv6 client message of `kind` from `duid`, with IA_NA 1 and rapid commit, and
/// a Client FQDN option with host name `name` (flags: S, the server updates AAAA).
fn client_message(kind: MessageType, duid: &[u8], name: Option<&str>) -> Vec<u8> {
    let mut m = Message::new_with_id(kind, [0x12, 0x34, 0x56]);
    let mut opts = DhcpOptions::new();
    opts.insert(DhcpOption::ClientId(duid.to_vec()));
    opts.insert(DhcpOption::ElapsedTime(0));
    opts.insert(DhcpOption::RapidCommit);
    opts.insert(DhcpOption::IANA(IANA {
        id: 1,
        t1: 0,
        t2: 0,
        opts: DhcpOptions::new(),
    }));
    if let Some(n) = name {
        let mut data = vec![0x01, u8::try_from(n.len()).unwrap()];
        data.extend_from_slice(n.as_bytes());
        opts.insert(DhcpOption::Unknown(dhcproto::v6::UnknownOption::new(
            OptionCode::ClientFqdn,
            data,
        )));
    }
    m.set_opts(opts);
    let mut out = Vec::new();
    m.encode(&mut Encoder::new(&mut out)).unwrap();
    out
}

/// Guest `g` sends `msg` to the DHCPv6 servers' group; the server's answer, if any.
fn dhcp6(h: &mut Harness, g: usize, msg: &[u8]) -> Option<Message> {
    let mac = h.guests[g].mac;
    let servers = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
    h.guests[g].wire.rx.clear();
    let f = frame6(mac, servers, Some((546, 547)), msg);
    h.guests[g].wire.tx.push_back(f);
    h.step(STEP);
    h.guests[g].wire.rx.iter().find_map(|f| {
        let ip = etherparse::Ipv6Slice::from_slice(f.get(14..)?).ok()?;
        let udp = etherparse::UdpSlice::from_slice(ip.payload().payload).ok()?;
        (udp.source_port() == 547)
            .then(|| Message::decode(&mut Decoder::new(udp.payload())).ok())
            .flatten()
    })
}

/// The address of the reply's IA_NA (`None`: no address, e.g. NoAddrsAvail).
fn address(reply: &Message) -> Option<Ipv6Addr> {
    reply.opts().iter().find_map(|o| match o {
        DhcpOption::IANA(ia) => ia.opts.iter().find_map(|o| match o {
            DhcpOption::IAAddr(a) if a.valid_life > 0 => Some(a.addr),
            _ => None,
        }),
        _ => None,
    })
}

/// libvirt's DUID notation (`0:4:7e:…`) as bytes.
fn duid(s: &str) -> Vec<u8> {
    s.split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// What the dnsmasq configuration libvirt generated says about IPv6.
#[derive(Debug, Default)]
struct Conf6 {
    /// `dhcp-range=start,end`.
    pools: Vec<(Ipv6Addr, Ipv6Addr)>,
    /// `dhcp-range=addr,static`: DHCPv6 for reservations only.
    statics: Vec<Ipv6Addr>,
    /// `dhcp-range=addr,ra-only`: advertisements (SLAAC), no DHCPv6.
    ra_only: Vec<Ipv6Addr>,
    /// `domain=`.
    domain: Option<String>,
}

fn conf6(conf: &str) -> Conf6 {
    let mut c = Conf6::default();
    for line in conf.lines() {
        if let Some(d) = line.strip_prefix("domain=") {
            c.domain = Some(d.to_owned());
        }
        let Some(range) = line.strip_prefix("dhcp-range=") else {
            continue;
        };
        let parts: Vec<&str> = range.split(',').collect();
        let Ok(first) = parts[0].parse::<Ipv6Addr>() else {
            continue;
        };
        match parts.get(1).copied() {
            Some("static") => c.statics.push(first),
            Some("ra-only") => c.ra_only.push(first),
            Some(end) => c.pools.push((first, end.parse().unwrap())),
            None => panic!("dhcp-range with one field: {line}"),
        }
    }
    c
}

/// A `dhcp-hostsfile` line: `id:DUID`, a name, `[address]`, in any of libvirt's shapes.
#[derive(Debug)]
struct HostLine {
    duid: Option<Vec<u8>>,
    name: Option<String>,
    ip: Ipv6Addr,
}

fn host_lines(text: &str) -> Vec<HostLine> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut h = HostLine {
                duid: None,
                name: None,
                ip: Ipv6Addr::UNSPECIFIED,
            };
            for field in l.split(',') {
                if let Some(id) = field.strip_prefix("id:") {
                    h.duid = Some(duid(id));
                } else if let Some(a) = field.strip_prefix('[') {
                    h.ip = a.trim_end_matches(']').parse().unwrap();
                } else {
                    h.name = Some(field.to_owned());
                }
            }
            h
        })
        .collect()
}

/// The hosts file libvirt writes for the IPv6 `<host>`s of `def` (the corpus has the
/// file itself for only one network): `id:DUID,name,[address]`.
fn hosts_file_of(def: &vnet_config::Network) -> String {
    let mut out = String::new();
    for ip in def.ips().iter().filter(|ip| ip.address.is_ipv6()) {
        for h in ip.dhcp.iter().flat_map(|d| d.hosts.iter()) {
            let fields: Vec<String> =
                h.id.iter()
                    .map(|id| format!("id:{id}"))
                    .chain(h.name.clone())
                    .chain([format!("[{}]", h.ip)])
                    .collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        }
    }
    out
}

/// Whether two addresses are in the same /64 (every corpus prefix is one).
fn same64(a: Ipv6Addr, b: Ipv6Addr) -> bool {
    u128::from(a) >> 64 == u128::from(b) >> 64
}

fn in_pool(c: &Conf6, a: Ipv6Addr) -> bool {
    c.pools.iter().any(|(s, e)| (*s..=*e).contains(&a))
}

/// Each network of the corpus with IPv6: the advertisements say what `enable-ra` and
/// the `dhcp-range` modes say, DHCPv6 hands out what the ranges and the hosts file say.
#[test]
fn the_corpus_ipv6_networks_serve_what_their_dnsmasq_configuration_says() {
    let files = [
        "dhcp6-network",
        "dhcp6host-routed-network",
        "nat-network",
        "nat-network-mtu",
        "ptr-domains-auto",
    ];
    for name in files {
        let def = network(&format!("networkxml2confdata/{name}.xml"));
        let conf = conf6(&corpus(&format!("networkxml2confdata/{name}.conf")));
        let hosts_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/data/libvirt/networkxml2confdata")
            .join(format!("{name}.hostsfile"));
        let hosts = host_lines(
            &std::fs::read_to_string(&hosts_path).unwrap_or_else(|_| hosts_file_of(&def)),
        );
        let mut h = Harness::new(&def);
        let g = h.add_guest(0x41, PortConfig::default());

        // router advertisements: every IPv6 prefix, SLAAC (A) for ra-only ranges and
        // managed (M, no A) where DHCPv6 hands out addresses
        let ra = solicit_router(&mut h, g);
        let stateful = !conf.pools.is_empty() || !conf.statics.is_empty();
        assert_eq!(ra.managed, stateful, "{name}: M flag");
        assert!(ra.lifetime > 0, "{name}: a default router (NAT/route mode)");
        for &(addr, len, autonomous) in &ra.prefixes {
            assert_eq!(len, 64, "{name}");
            let slaac = conf.ra_only.iter().any(|a| same64(*a, addr));
            assert_eq!(autonomous, slaac, "{name}: A flag of {addr}");
        }
        let pools = conf.pools.iter().map(|p| &p.0);
        for a in conf.ra_only.iter().chain(&conf.statics).chain(pools) {
            assert!(
                ra.prefixes.iter().any(|p| same64(p.0, *a)),
                "{name}: {a}'s prefix not advertised"
            );
        }
        assert!(!ra.rdnss.is_empty(), "{name}: RDNSS");

        if !stateful {
            // ra-only: no DHCPv6 server at all
            let sol = client_message(MessageType::Solicit, &duid("0:3:0:1:2:0:0:0:0:1"), None);
            assert!(dhcp6(&mut h, g, &sol).is_none(), "{name}: DHCPv6 answered");
            continue;
        }

        // every reservation, by DUID or by the client's host name
        for (i, host) in hosts.iter().enumerate() {
            let own;
            let id = match &host.duid {
                Some(d) => d.as_slice(),
                None => {
                    own = vec![0, 3, 0, 1, 2, 0, 0, 0, 0x10, u8::try_from(i).unwrap()];
                    &own
                }
            };
            let by_name = host
                .duid
                .is_none()
                .then_some(host.name.as_deref())
                .flatten();
            let reply = dhcp6(
                &mut h,
                g,
                &client_message(MessageType::Solicit, id, by_name),
            )
            .unwrap_or_else(|| panic!("{name}: no reply for {host:?}"));
            assert_eq!(reply.msg_type(), MessageType::Reply, "{name}: rapid commit");
            assert_eq!(address(&reply), Some(host.ip), "{name}: {host:?}");
            if let Some(d) = &conf.domain {
                let search = reply.opts().iter().find_map(|o| match o {
                    DhcpOption::DomainSearchList(l) => l.first().map(ToString::to_string),
                    _ => None,
                });
                assert_eq!(
                    search.as_deref().map(|s| s.trim_end_matches('.')),
                    Some(d.as_str())
                );
            }
            assert!(
                reply
                    .opts()
                    .iter()
                    .any(|o| matches!(o, DhcpOption::DomainNameServers(s) if !s.is_empty())),
                "{name}: DNS servers"
            );
        }
        let gw = h.net.gateway().unwrap().dhcp6().unwrap();
        for host in &hosts {
            let lease = gw.leases().find(|l| l.ip == host.ip).unwrap();
            assert_eq!(lease.hostname, host.name, "{name}: the lease's name");
        }

        // clients without a reservation: addresses from the pool, never a reserved
        // one; none where the range is static
        let reserved: Vec<Ipv6Addr> = hosts.iter().map(|h| h.ip).collect();
        for i in 0..24u8 {
            let id = [0, 3, 0, 1, 2, 0, 0, 0, 0x20, i];
            let reply = dhcp6(&mut h, g, &client_message(MessageType::Solicit, &id, None))
                .unwrap_or_else(|| panic!("{name}: no reply"));
            match address(&reply) {
                Some(a) => {
                    assert!(in_pool(&conf, a), "{name}: {a} outside the pools");
                    assert!(!reserved.contains(&a), "{name}: reserved {a} handed out");
                }
                None => assert!(conf.pools.is_empty(), "{name}: no address from the pool"),
            }
        }
    }
}

/// A DNS query for `name`/`qtype`, with id 7.
fn dns_query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = DnsMessage::new(
        7,
        hickory_proto::op::MessageType::Query,
        hickory_proto::op::OpCode::Query,
    );
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

/// Guest `g` sends DNS `query` over UDP from `from` to `server`; the answer's payload.
fn ask_dns(
    h: &mut Harness,
    g: usize,
    from: (Ipv6Addr, u16),
    server: Ipv6Addr,
    query: &[u8],
) -> Option<Vec<u8>> {
    let mac = h.guests[g].mac;
    h.guests[g].wire.rx.clear();
    let f = frame6_from(mac, from.0, server, Some((from.1, 53)), query);
    h.guests[g].wire.tx.push_back(f);
    h.step(STEP);
    h.guests[g].wire.rx.iter().find_map(|f| {
        let ip = etherparse::Ipv6Slice::from_slice(f.get(14..)?).ok()?;
        let udp = etherparse::UdpSlice::from_slice(ip.payload().payload).ok()?;
        (udp.source_port() == 53).then(|| udp.payload().to_vec())
    })
}

fn answers(payload: &[u8]) -> Vec<RData> {
    let m = DnsMessage::from_vec(payload).unwrap();
    m.answers.iter().map(|r| r.data.clone()).collect()
}

/// An IPv6-only network (libvirt's `dhcp6-network`, no IPv4 at all): the gateway
/// answers no ARP, advertises itself, leases by DHCPv6, and its DNS server answers on
/// the gateway's IPv6 address for a name a client sent in its Client FQDN option.
#[test]
fn an_ipv6_only_network_leases_and_names_its_clients() {
    let def = network("networkxml2confdata/dhcp6-network.xml");
    let mut h = Harness::new(&def);
    let g = h.add_guest(0x42, PortConfig::default());
    let mac = h.guests[g].mac;
    assert!(h.net.gateway().unwrap().config().ip.is_none());

    // an ARP request for anything: unanswered
    let arp = {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[192, 168, 122, 9, 0, 0, 0, 0, 0, 0, 192, 168, 122, 1]);
        f
    };
    h.step(STEP);
    h.guests[g].wire.rx.clear();
    h.guests[g].wire.tx.push_back(arp);
    h.step(STEP);
    assert!(h.guests[g]
        .wire
        .rx
        .iter()
        .all(|f| f[12..14] != [0x08, 0x06]));

    let ra = solicit_router(&mut h, g);
    let gw_addr: Ipv6Addr = "2001:db8:ac10:fd01::1".parse().unwrap();
    assert_eq!(ra.prefixes.len(), 1);
    let dns = ra.rdnss[0];

    // a client that names itself "gamma" gets a pool address, and the name in DNS
    let id = [0, 3, 0, 1, 0x52, 0x54, 0, 0, 0, 0x42];
    let reply = dhcp6(
        &mut h,
        g,
        &client_message(MessageType::Solicit, &id, Some("gamma")),
    )
    .unwrap();
    let leased = address(&reply).expect("an address");
    let fqdn = reply.opts().iter().find_map(|o| match o {
        DhcpOption::Unknown(u) if u.code() == OptionCode::ClientFqdn => Some(u.data().to_vec()),
        _ => None,
    });
    let mut want = vec![0x01, 5];
    want.extend_from_slice(b"gamma");
    want.push(5);
    want.extend_from_slice(b"mynet");
    want.push(0);
    assert_eq!(fqdn, Some(want), "the Client FQDN option of the reply");

    // DNS over UDP, from the leased address, to the address the RA named
    let q = dns_query("gamma.mynet.", RecordType::AAAA);
    let answer = ask_dns(&mut h, g, (leased, 40000), dns, &q).expect("a DNS answer over UDP");
    assert_eq!(
        answers(&answer),
        vec![RData::AAAA(hickory_proto::rr::rdata::AAAA(leased))]
    );
    // and its PTR
    let ptr_name = leased
        .octets()
        .iter()
        .rev()
        .map(|b| format!("{:x}.{:x}.", b & 0xf, b >> 4))
        .collect::<String>()
        + "ip6.arpa.";
    let q = dns_query(&ptr_name, RecordType::PTR);
    let answer = ask_dns(&mut h, g, (leased, 40001), gw_addr, &q).expect("a PTR answer");
    assert_eq!(
        answers(&answer),
        vec![RData::PTR(hickory_proto::rr::rdata::PTR(
            Name::from_ascii("gamma.mynet.").unwrap()
        ))]
    );
    // the release takes the name away
    let mut rel = Message::decode(&mut Decoder::new(&client_message(
        MessageType::Release,
        &id,
        None,
    )))
    .unwrap();
    let server_id = reply.opts().get(OptionCode::ServerId).cloned().unwrap();
    rel.opts_mut().insert(server_id);
    let mut bytes = Vec::new();
    rel.encode(&mut Encoder::new(&mut bytes)).unwrap();
    assert!(dhcp6(&mut h, g, &bytes).is_some());
    let rows = h.net.gateway().unwrap().dns().unwrap().records();
    assert!(
        !rows.iter().any(|r| r.name.starts_with("gamma")),
        "{rows:?}"
    );
}
