//! Scenario tests of the sans-IO server: real DNS message bytes in (built with
//! hickory-proto, and one written out byte by byte), bytes out, a fake clock (a base
//! `Instant` plus `Duration`s).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use proptest::prelude::*;

use crate::*;

const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 122, last)
}

fn guest(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip(last)), 40_000 + u16::from(last))
}

fn up(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, last)), 53)
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// A query as a stub resolver sends it: RD set, one question.
fn query(id: u16, qname: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    m
}

fn with_edns(mut m: Message, size: u16) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(size);
    m.set_edns(e);
    m
}

fn decode(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap()
}

fn a(owner: &str, ttl: u32, addr: Ipv4Addr) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A(addr)))
}

fn soa(zone: &str, ttl: u32, minimum: u32) -> Record {
    let data = SOA::new(
        name("ns.example.net."),
        name("hostmaster.example.net."),
        1,
        3600,
        600,
        86_400,
        minimum,
    );
    Record::from_rdata(name(zone), ttl, RData::SOA(data))
}

/// The upstream's answer to `q`: same id and question, RA, `rcode`, `answers`.
fn reply_to(q: &UpstreamQuery, rcode: ResponseCode, answers: Vec<Record>) -> Vec<u8> {
    reply_with(q, rcode, answers, Vec::new())
}

fn reply_with(
    q: &UpstreamQuery,
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
) -> Vec<u8> {
    let req = decode(&q.payload);
    let mut m = Message::response(req.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.metadata.response_code = rcode;
    m.add_queries(req.queries.clone());
    m.insert_answers(answers);
    m.insert_authorities(authorities);
    m.to_vec().unwrap()
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn ptr_targets(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
        .collect()
}

/// A network with a domain, names of every kind, and a host resolver.
fn lab_config() -> DnsConfig {
    let mut c = DnsConfig::new(GW, 24);
    c.domain = Some("example.com".into());
    c.hosts.push(HostRecord {
        ip: IpAddr::V4(GW),
        names: vec!["host".into(), "gateway".into()],
    });
    c.hosts.push(HostRecord {
        ip: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x10)),
        names: vec!["v6only".into()],
    });
    c.reservations.push(NamedAddress {
        ip: IpAddr::V4(ip(10)),
        name: "a.example.com".into(),
    });
    c.txt.push(TxtRecord {
        name: "example".into(),
        value: "example value".into(),
    });
    c.srv.push(SrvRecord {
        service: "name".into(),
        protocol: "tcp".into(),
        domain: Some("test-domain-name.com".into()),
        target: Some("test.example.com".into()),
        port: 1111,
        priority: 11,
        weight: 111,
    });
    c.srv.push(SrvRecord {
        service: "name2".into(),
        protocol: "udp".into(),
        domain: None,
        target: Some("test2.example.com".into()),
        port: 2222,
        priority: 22,
        weight: 222,
    });
    c
}

struct Harness {
    server: Server,
    now: Instant,
}

impl Harness {
    fn new(config: DnsConfig) -> Self {
        Self {
            server: Server::with_seed(config, 7),
            now: Instant::now(),
        }
    }

    /// With `upstreams` as the host's resolvers, their loop probes drained.
    fn with_upstreams(config: DnsConfig, upstreams: &[SocketAddr]) -> Self {
        let mut h = Self::new(config);
        h.server.set_system_upstreams(upstreams.to_vec());
        let probes = h.upstream();
        assert_eq!(probes.len(), upstreams.len(), "one loop probe per upstream");
        h
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
            self.server.handle_timeout(self.now);
        }
        self.check();
    }

    fn check(&self) {
        self.server.check_invariants().unwrap();
    }

    fn send(&mut self, client: SocketAddr, transport: Transport, bytes: &[u8]) -> Option<Vec<u8>> {
        let r = self.server.handle_query(self.now, client, transport, bytes);
        self.check();
        r
    }

    /// Asks over UDP from `client`; the decoded answer if one came back at once.
    fn ask_from(&mut self, client: SocketAddr, qname: &str, qtype: RecordType) -> Option<Message> {
        let q = query(0x4242, qname, qtype).to_vec().unwrap();
        self.send(client, Transport::Udp, &q).map(|b| decode(&b))
    }

    fn ask(&mut self, qname: &str, qtype: RecordType) -> Option<Message> {
        self.ask_from(guest(50), qname, qtype)
    }

    fn ask_local(&mut self, qname: &str, qtype: RecordType) -> Message {
        let m = self.ask(qname, qtype).expect("an answer at once");
        assert!(self.upstream().is_empty(), "{qname} must not be forwarded");
        m
    }

    fn upstream(&mut self) -> Vec<UpstreamQuery> {
        std::iter::from_fn(|| self.server.poll_upstream()).collect()
    }

    fn answers(&mut self) -> Vec<Answer> {
        std::iter::from_fn(|| self.server.poll_answer()).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.server.poll_event()).collect()
    }

    fn upstream_says(&mut self, from: SocketAddr, bytes: &[u8]) {
        self.server.handle_upstream(self.now, from, bytes);
        self.check();
    }
}

fn assert_local(m: &Message, rcode: ResponseCode) {
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.response_code, rcode);
    assert!(m.metadata.authoritative, "local answers are authoritative");
    assert!(m.metadata.recursion_available);
}

// ----- configuration -----

#[test]
fn config_from_libvirt_default() {
    let c = DnsConfig::from_network(&vnet_config::Network::libvirt_default()).unwrap();
    assert_eq!(c.server_ip, GW);
    assert_eq!(c.prefix, 24);
    assert_eq!(c.domain, None);
    assert!(c.forward_plain_names);
    assert!(!c.isolated, "the default network is NAT");
    assert!(c.forwarders.is_empty());
    assert!(c.is_guest(IpAddr::V4(ip(77))));
    assert!(!c.is_guest(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    assert_eq!(c.limits, Limits::default());
}

#[test]
fn config_from_network_with_everything() {
    let net = vnet_config::Network::from_xml(
        "<network>
           <name>lab</name>
           <domain name='lab.example' localOnly='yes' register='yes'/>
           <dns forwardPlainNames='no'>
             <forwarder domain='corp.example' addr='198.18.0.7' port='5353'/>
             <forwarder domain='blocked.example'/>
             <forwarder addr='198.18.0.8'/>
             <txt name='example' value='example value'/>
             <host ip='10.0.5.1'><hostname>gw</hostname></host>
             <srv service='ldap' protocol='tcp' target='dc.lab.example' port='389'/>
           </dns>
           <ip address='10.0.5.1' prefix='24' localPtr='yes'>
             <dhcp>
               <range start='10.0.5.10' end='10.0.5.99'/>
               <host mac='52:54:00:aa:bb:cc' name='web' ip='10.0.5.5'/>
               <host mac='52:54:00:aa:bb:cd' ip='10.0.5.6'/>
             </dhcp>
           </ip>
         </network>",
    )
    .unwrap();
    let c = DnsConfig::from_network(&net).unwrap();
    assert_eq!(c.server_ip, Ipv4Addr::new(10, 0, 5, 1));
    assert_eq!(c.domain.as_deref(), Some("lab.example"));
    assert!(c.local_only && c.register && !c.forward_plain_names);
    assert!(c.isolated, "no <forward>: isolated");
    assert_eq!(
        c.forwarders,
        vec![
            Forwarder {
                addr: Some("198.18.0.7:5353".parse().unwrap()),
                domain: Some("corp.example".into()),
            },
            Forwarder {
                addr: None,
                domain: Some("blocked.example".into()),
            },
            Forwarder {
                addr: Some(up(8)),
                domain: None,
            },
        ]
    );
    assert_eq!(
        c.reservations,
        vec![NamedAddress {
            ip: "10.0.5.5".parse().unwrap(),
            name: "web".into(),
        }]
    );
    assert_eq!(c.local_ptr.len(), 1);
    assert_eq!(c.srv[0].port, 389);
    assert_eq!(
        c.srv[0].owner(c.domain.as_deref()),
        "_ldap._tcp.lab.example"
    );
    assert_eq!(c.txt[0].value, "example value");
    assert_eq!(c.hosts[0].names, vec!["gw".to_string()]);
}

#[test]
fn no_config_without_dns_or_address_or_own_bridge() {
    for xml in [
        "<network><name>n</name><dns enable='no'/><ip address='10.1.0.1' prefix='16'/></network>",
        "<network><name>n</name></network>",
        "<network><name>n</name><forward mode='bridge'/><bridge name='br0'/></network>",
    ] {
        let net = vnet_config::Network::from_xml(xml).unwrap();
        assert_eq!(DnsConfig::from_network(&net), None, "{xml}");
    }
}

#[test]
fn an_ipv6_only_network_is_served_on_its_first_address() {
    let xml = "<network><name>n</name><ip family='ipv6' address='fd00::1' prefix='64'/>\
               <ip family='ipv6' address='fd01::1' prefix='64'/></network>";
    let net = vnet_config::Network::from_xml(xml).unwrap();
    let c = DnsConfig::from_network(&net).unwrap();
    assert_eq!(c.server_ip, "fd00::1".parse::<IpAddr>().unwrap());
    assert_eq!(c.prefix, 64);
    assert!(c.is_guest("fd01::99".parse().unwrap()));
    assert!(!c.is_guest("fd02::99".parse().unwrap()));
    assert!(c.is_own_address("fd01::1".parse().unwrap()));
}

// ----- local data -----

/// A query written out byte by byte in the shape dig 9.18 sends (`dig
/// vm1.example.com`): id 0x8d5e, RD and AD set, one question, an OPT record with
/// a 1232-byte UDP size and an 8-byte client cookie (option 10).
const DIG_QUERY: &[u8] = &[
    0x8d, 0x5e, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // header
    0x03, b'v', b'm', b'1', 0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0x03, b'c', b'o', b'm',
    0x00, 0x00, 0x01, 0x00, 0x01, // vm1.example.com A IN
    0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, // OPT, 1232, len 12
    0x00, 0x0a, 0x00, 0x08, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // cookie
];

#[test]
fn lease_name_a_and_ptr_from_dig_bytes() {
    let mut h = Harness::new(lab_config());
    h.server.set_lease_name(ip(23), "vm1");
    let bytes = h.send(guest(23), Transport::Udp, DIG_QUERY).expect("local");
    // Header: same id, QR AA RD RA, NOERROR, 1 question, 1 answer, 0, 1 (OPT).
    assert_eq!(
        &bytes[..12],
        &[0x8d, 0x5e, 0x85, 0x80, 0, 1, 0, 1, 0, 0, 0, 1]
    );
    let m = decode(&bytes);
    assert_local(&m, ResponseCode::NoError);
    assert_eq!(addrs(&m), vec![IpAddr::V4(ip(23))]);
    assert_eq!(m.answers[0].ttl, 0, "dnsmasq's local-ttl default");
    assert_eq!(m.edns.as_ref().unwrap().max_payload(), EDNS_UDP_SIZE);

    // The plain name, and the reverse name.
    let m = h.ask_local("vm1.", RecordType::A);
    assert_eq!(addrs(&m), vec![IpAddr::V4(ip(23))]);
    let m = h.ask_local("23.122.168.192.in-addr.arpa.", RecordType::PTR);
    assert_local(&m, ResponseCode::NoError);
    assert_eq!(ptr_targets(&m), vec!["vm1.example.com."]);
}

#[test]
fn reservations_dns_hosts_txt_srv() {
    let mut h = Harness::new(lab_config());
    // <dhcp><host name='a.example.com'>: the domain is stripped, both names served.
    for n in ["a.", "a.example.com.", "A.Example.COM."] {
        let m = h.ask_local(n, RecordType::A);
        assert_local(&m, ResponseCode::NoError);
        assert_eq!(addrs(&m), vec![IpAddr::V4(ip(10))], "{n}");
    }
    let m = h.ask_local("10.122.168.192.in-addr.arpa.", RecordType::PTR);
    assert_eq!(ptr_targets(&m), vec!["a.example.com."]);

    // <dns><host>: plain names, expanded under the domain, PTR to the first name.
    let m = h.ask_local("gateway.example.com.", RecordType::A);
    assert_eq!(addrs(&m), vec![IpAddr::V4(GW)]);
    let m = h.ask_local("1.122.168.192.in-addr.arpa.", RecordType::PTR);
    assert_eq!(ptr_targets(&m), vec!["host.example.com."]);
    let m = h.ask_local("v6only.", RecordType::AAAA);
    assert_eq!(addrs(&m), vec!["fd00::10".parse::<IpAddr>().unwrap()]);
    let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x10));
    let m = h.ask_local(&format!("{}.", local::reverse_name(v6)), RecordType::PTR);
    assert_eq!(ptr_targets(&m), vec!["v6only.example.com."]);

    // TXT.
    let m = h.ask_local("example.", RecordType::TXT);
    assert_local(&m, ResponseCode::NoError);
    let RData::TXT(t) = &m.answers[0].data else {
        panic!("not a TXT: {m}")
    };
    assert_eq!(t, &TXT::new(vec!["example value".into()]));

    // SRV, named as libvirt's srv-host lines: _service._proto.domain, and without a
    // domain of its own under the network's domain.
    let m = h.ask_local("_name._tcp.test-domain-name.com.", RecordType::SRV);
    let RData::SRV(s) = &m.answers[0].data else {
        panic!("not an SRV: {m}")
    };
    assert_eq!((s.priority, s.weight, s.port), (11, 111, 1111));
    assert_eq!(s.target.to_ascii(), "test.example.com.");
    let m = h.ask_local("_name2._udp.example.com.", RecordType::SRV);
    assert_eq!(m.answers.len(), 1);

    // ANY gets all of a name's records.
    let m = h.ask_local("host.example.com.", RecordType::ANY);
    assert_eq!(addrs(&m), vec![IpAddr::V4(GW)]);
}

#[test]
fn nodata_for_a_missing_type_nxdomain_only_for_local_zones() {
    let mut c = lab_config();
    c.local_only = true;
    let mut h = Harness::with_upstreams(c, &[up(1)]);
    // Known name, other type: NODATA (NOERROR, empty, authoritative).
    let m = h.ask_local("a.example.com.", RecordType::AAAA);
    assert_local(&m, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let m = h.ask_local("v6only.", RecordType::A);
    assert_local(&m, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    // Unknown name in the localOnly domain: NXDOMAIN, not forwarded.
    let m = h.ask_local("nobody.example.com.", RecordType::A);
    assert_local(&m, ResponseCode::NXDomain);
    assert!(m.answers.is_empty());
    // Outside the domain: forwarded.
    assert!(h.ask("www.example.org.", RecordType::A).is_none());
    assert_eq!(h.upstream().len(), 1);
}

#[test]
fn domain_names_are_forwarded_unless_local_only() {
    let mut h = Harness::with_upstreams(lab_config(), &[up(1)]);
    // dnsmasq forwards names under `domain=` without `local=/domain/`.
    assert!(h.ask("nobody.example.com.", RecordType::A).is_none());
    let sent = h.upstream();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, up(1));
}

#[test]
fn lease_names_come_move_and_go() {
    let mut h = Harness::with_upstreams(lab_config(), &[up(1)]);
    h.server.set_lease_name(ip(30), "web");
    assert_eq!(
        addrs(&h.ask_local("WEB.", RecordType::A)),
        vec![IpAddr::V4(ip(30))]
    );
    // The same name on a new lease moves; the old address's PTR goes.
    h.server.set_lease_name(ip(31), "web.example.com");
    assert_eq!(
        addrs(&h.ask_local("web.example.com.", RecordType::A)),
        vec![IpAddr::V4(ip(31))]
    );
    assert!(h
        .ask("30.122.168.192.in-addr.arpa.", RecordType::PTR)
        .is_none());
    assert_eq!(h.upstream().len(), 1, "no record any more: forwarded");
    h.server.remove_lease_name(ip(31));
    assert!(h.ask("web.example.com.", RecordType::A).is_none());
    assert_eq!(h.upstream().len(), 1);

    // Invalid names and names outside the network are not served, and logged.
    h.server.set_lease_name(ip(32), "bad name");
    h.server.set_lease_name(ip(33), "vm.other.domain");
    h.server
        .set_lease_name(Ipv4Addr::new(10, 0, 0, 1), "outside");
    let lines: Vec<String> = h.events().iter().map(|e| e.log_line("default")).collect();
    assert_eq!(
        lines,
        [
            "DNS(default) not serving name \"bad name\" for 192.168.122.32: not a valid host name",
            "DNS(default) not serving name \"vm.other.domain\" for 192.168.122.33: not a valid host name",
            "DNS(default) not serving name \"outside\" for 10.0.0.1: the address is not on the network",
        ]
    );
    assert_eq!(h.server.stats().lease_names_rejected, 3);
    // A reservation's name wins over a lease with the same name.
    h.server.set_lease_name(ip(40), "a");
    assert_eq!(
        addrs(&h.ask_local("a.", RecordType::A)),
        vec![IpAddr::V4(ip(10))]
    );
}

#[test]
fn lease_name_table_is_bounded() {
    let mut c = lab_config();
    c.limits.lease_names = 3;
    let mut h = Harness::new(c);
    for i in 0..10u8 {
        h.server.set_lease_name(ip(100 + i), &format!("vm{i}"));
    }
    let st = h.server.stats();
    assert_eq!(st.lease_names, 3);
    assert_eq!(st.lease_names_rejected, 7);
    // Renewing an existing one still works when full.
    h.server.set_lease_name(ip(100), "renamed");
    assert_eq!(
        addrs(&h.ask_local("renamed.", RecordType::A)),
        vec![IpAddr::V4(ip(100))]
    );
}

#[test]
fn plain_names_with_forward_plain_names_no() {
    let mut c = lab_config();
    c.forward_plain_names = false;
    let mut h = Harness::with_upstreams(c.clone(), &[up(1)]);
    let m = h.ask_local("printer.", RecordType::A);
    assert_local(&m, ResponseCode::NXDomain);
    // Known plain names are still answered; dotted names still forwarded.
    assert_eq!(
        addrs(&h.ask_local("host.", RecordType::A)),
        vec![IpAddr::V4(GW)]
    );
    assert!(h.ask("printer.lan.", RecordType::A).is_none());
    assert_eq!(h.upstream().len(), 1);

    // forwardPlainNames='yes' (the default): forwarded.
    c.forward_plain_names = true;
    h.server.set_config(c);
    assert!(h.ask("printer.", RecordType::A).is_none());
    assert_eq!(h.upstream().len(), 1);
}

#[test]
fn local_ptr_answers_reverse_names_of_the_subnet() {
    let mut c = lab_config();
    c.local_ptr.push(Subnet {
        addr: IpAddr::V4(GW),
        prefix: 24,
    });
    let mut h = Harness::with_upstreams(c, &[up(1)]);
    let m = h.ask_local("99.122.168.192.in-addr.arpa.", RecordType::PTR);
    assert_local(&m, ResponseCode::NXDomain);
    // The zone itself too (libvirt: local=/122.168.192.in-addr.arpa/).
    let m = h.ask_local("122.168.192.in-addr.arpa.", RecordType::SOA);
    assert_local(&m, ResponseCode::NXDomain);
    // Known addresses still resolve; other subnets are forwarded.
    assert_eq!(
        ptr_targets(&h.ask_local("10.122.168.192.in-addr.arpa.", RecordType::PTR)),
        vec!["a.example.com."]
    );
    assert!(h.ask("8.8.8.8.in-addr.arpa.", RecordType::PTR).is_none());
    assert_eq!(h.upstream().len(), 1);

    // Without localPtr, an unknown address of the subnet is forwarded.
    let mut h = Harness::with_upstreams(lab_config(), &[up(1)]);
    assert!(h
        .ask("99.122.168.192.in-addr.arpa.", RecordType::PTR)
        .is_none());
    assert_eq!(h.upstream().len(), 1);
}

#[test]
fn local_ptr_on_a_prefix_off_the_octet_boundary() {
    let mut c = DnsConfig::new(Ipv4Addr::new(10, 0, 4, 1), 22);
    c.local_ptr.push(c.subnets[0]);
    let mut h = Harness::with_upstreams(c, &[up(1)]);
    let client = SocketAddr::from(([10, 0, 6, 9], 5000));
    let m = h
        .ask_from(client, "9.6.0.10.in-addr.arpa.", RecordType::PTR)
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(h
        .ask_from(client, "9.8.0.10.in-addr.arpa.", RecordType::PTR)
        .is_none());
    assert_eq!(h.upstream().len(), 1, "outside the /22: forwarded");
}

#[test]
fn per_domain_forwarders_and_local_only_domains() {
    let mut c = lab_config();
    c.forwarders = vec![
        Forwarder {
            addr: Some(up(7)),
            domain: Some("corp.example".into()),
        },
        Forwarder {
            addr: Some(up(8)),
            domain: Some("eng.corp.example".into()),
        },
        Forwarder {
            addr: None,
            domain: Some("blocked.example".into()),
        },
        Forwarder {
            addr: Some(up(1)),
            domain: None,
        },
    ];
    let mut h = Harness::new(c);
    let probes = h.upstream();
    let mut probed: Vec<_> = probes.iter().map(|p| p.to).collect();
    probed.sort();
    assert_eq!(probed, vec![up(1), up(7), up(8)]);

    for (qname, to) in [
        ("wiki.corp.example.", up(7)),
        ("CORP.example.", up(7)),
        ("build.eng.corp.example.", up(8)),
        ("www.example.org.", up(1)),
    ] {
        assert!(h.ask(qname, RecordType::A).is_none());
        let sent = h.upstream();
        assert_eq!(sent.len(), 1, "{qname}");
        assert_eq!(sent[0].to, to, "{qname}");
    }
    let m = h.ask_local("ads.blocked.example.", RecordType::A);
    assert_local(&m, ResponseCode::NXDomain);
    // System upstreams are not used while a general forwarder exists.
    h.server.set_system_upstreams(vec![up(2)]);
    assert!(h.upstream().is_empty(), "nothing new to probe");
}

// ----- forwarding -----

#[test]
fn forwarded_answer_goes_back_with_the_clients_id() {
    let mut h = Harness::with_upstreams(lab_config(), &[up(1)]);
    let q = query(0x1111, "www.Example.org.", RecordType::A)
        .to_vec()
        .unwrap();
    assert_eq!(h.send(guest(20), Transport::Tcp, &q), None);
    let sent = h.upstream();
    assert_eq!(sent.len(), 1);
    let upq = decode(&sent[0].payload);
    assert_ne!(upq.metadata.id, 0x1111, "a fresh id upstream");
    assert!(upq.metadata.recursion_desired);
    assert_eq!(upq.edns.as_ref().unwrap().max_payload(), EDNS_UDP_SIZE);
    h.advance(Duration::from_millis(30));
    let reply = reply_to(
        &sent[0],
        ResponseCode::NoError,
        vec![a("www.example.org.", 300, Ipv4Addr::new(198, 51, 100, 7))],
    );
    h.upstream_says(up(1), &reply);
    let answers = h.answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].client, guest(20));
    assert_eq!(answers[0].transport, Transport::Tcp);
    let m = decode(&answers[0].payload);
    assert_eq!(m.metadata.id, 0x1111);
    assert!(!m.metadata.authoritative);
    assert_eq!(
        m.queries[0].name().to_ascii(),
        "www.Example.org.",
        "the client's spelling"
    );
    assert_eq!(addrs(&m), vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))]);
    assert!(m.edns.is_none(), "the client sent no OPT");
    let st = h.server.stats();
    assert_eq!((st.forwarded, st.upstream_answers, st.in_flight), (1, 1, 0));
}

#[test]
fn strict_order_failover_then_servfail() {
    let mut c = lab_config();
    c.forwarders = vec![
        Forwarder {
            addr: Some(up(1)),
            domain: None,
        },
        Forwarder {
            addr: Some(up(2)),
            domain: None,
        },
    ];
    let mut h = Harness::new(c);
    assert_eq!(h.upstream().len(), 2, "probes");
    assert!(h.ask("slow.example.org.", RecordType::A).is_none());
    let first = h.upstream();
    assert_eq!(first[0].to, up(1));
    assert_eq!(
        h.server.poll_timeout(),
        Some(h.now + Duration::from_secs(2))
    );

    h.advance(Duration::from_millis(1999));
    assert!(h.upstream().is_empty());
    h.advance(Duration::from_millis(1));
    let second = h.upstream();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].to, up(2), "the next upstream after a timeout");
    assert_ne!(
        decode(&second[0].payload).metadata.id,
        decode(&first[0].payload).metadata.id
    );
    assert!(h.answers().is_empty());

    h.advance(Duration::from_secs(2));
    assert!(h.upstream().is_empty(), "no third upstream");
    let answers = h.answers();
    assert_eq!(answers.len(), 1);
    let m = decode(&answers[0].payload);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(m.metadata.id, 0x4242);
    let lines: Vec<String> = h.events().iter().map(|e| e.log_line("default")).collect();
    assert_eq!(
        lines,
        [
            "DNS(default) upstream 198.18.0.1#53 did not answer slow.example.org A",
            "DNS(default) upstream 198.18.0.2#53 did not answer slow.example.org A",
            "DNS(default) no upstream answered slow.example.org A: SERVFAIL",
        ]
    );
    let st = h.server.stats();
    assert_eq!((st.upstream_timeouts, st.servfail, st.in_flight), (2, 1, 0));
    assert_eq!(h.server.poll_timeout(), None);

    // A late answer from the first upstream, after all that: dropped.
    let late = reply_to(&first[0], ResponseCode::NoError, vec![]);
    h.upstream_says(up(1), &late);
    assert!(h.answers().is_empty());
    assert_eq!(h.server.stats().dropped(DropReason::UpstreamUnexpected), 1);
}

#[test]
fn servfail_moves_on_and_a_late_answer_from_the_first_is_taken() {
    let mut h = Harness::with_upstreams(lab_config(), &[up(1), up(2)]);
    assert!(h.ask("x.example.org.", RecordType::A).is_none());
    let first = h.upstream();
    // SERVFAIL from the first: the second is asked at once.
    h.upstream_says(up(1), &reply_to(&first[0], ResponseCode::ServFail, vec![]));
    let second = h.upstream();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].to, up(2));
    assert!(h.answers().is_empty());
    // The second answers.
    let ok = reply_to(
        &second[0],
        ResponseCode::NoError,
        vec![a("x.example.org.", 60, Ipv4Addr::new(198, 51, 100, 1))],
    );
    h.upstream_says(up(2), &ok);
    assert_eq!(
        addrs(&decode(&h.answers()[0].payload)),
        vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))]
    );

    // A slow first upstream: its answer, after the switch to the second, still counts.
    assert!(h.ask("y.example.org.", RecordType::A).is_none());
    let first = h.upstream();
    h.advance(Duration::from_secs(2));
    assert_eq!(h.upstream().len(), 1);
    let late = reply_to(
        &first[0],
        ResponseCode::NoError,
        vec![a("y.example.org.", 60, Ipv4Addr::new(198, 51, 100, 2))],
    );
    h.upstream_says(up(1), &late);
    assert_eq!(h.answers().len(), 1);
    assert_eq!(h.server.stats().in_flight, 0);
}

#[test]
fn cache_one_upstream_query_ttls_decrease_and_expire() {
    let mut h = Harness::with_upstreams(lab_config(), &[up(1)]);
    assert!(h.ask("cached.example.org.", RecordType::A).is_none());
    let sent = h.upstream();
    let rec = a("cached.example.org.", 300, Ipv4Addr::new(198, 51, 100, 9));
    h.upstream_says(up(1), &reply_to(&sent[0], ResponseCode::NoError, vec![rec]));
    assert_eq!(decode(&h.answers()[0].payload).answers[0].ttl, 300);

    // 100 s later, another client (other case): from the cache, TTL 200.
    h.advance(Duration::from_secs(100));
    let m = h
        .ask_from(guest(60), "CACHED.example.org.", RecordType::A)
        .expect("from the cache");
    assert!(h.upstream().is_empty(), "the upstream sees one query");
    assert_eq!(m.metadata.id, 0x4242);
    assert_eq!(m.answers[0].ttl, 200);
    assert_eq!(h.server.stats().cache_hits, 1);
    assert_eq!(h.server.stats().cache_entries, 1);

    // Other types are other entries.
    assert!(h.ask("cached.example.org.", RecordType::AAAA).is_none());
    assert_eq!(h.upstream().len(), 1);

    // Expired after 300 s: asked again.
    h.advance(Duration::from_secs(200));
    assert!(h.ask("cached.example.org.", RecordType::A).is_none());
    assert_eq!(h.upstream().len(), 1);
}

#[test]
fn negative_answers_cached_by_soa_minimum_servfail_not_cached() {
    let mut h = Harness::with_upstreams(lab_config(), &[up(1)]);
    assert!(h.ask("nx.example.org.", RecordType::A).is_none());
    let sent = h.upstream();
    let nx = reply_with(
        &sent[0],
        ResponseCode::NXDomain,
        vec![],
        vec![soa("example.org.", 3600, 60)],
    );
    h.upstream_says(up(1), &nx);
    assert_eq!(h.answers().len(), 1);
    h.advance(Duration::from_secs(59));
    let m = h
        .ask("nx.example.org.", RecordType::A)
        .expect("cached NXDOMAIN");
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].ttl, 1, "min(SOA TTL, minimum) - 59 s");
    h.advance(Duration::from_secs(1));
    assert!(
        h.ask("nx.example.org.", RecordType::A).is_none(),
        "expired after 60 s"
    );
    let sent = h.upstream();
    // A final SERVFAIL (only upstream) is relayed, not cached.
    h.upstream_says(up(1), &reply_to(&sent[0], ResponseCode::ServFail, vec![]));
    assert_eq!(
        decode(&h.answers()[0].payload).metadata.response_code,
        ResponseCode::ServFail
    );
    assert!(h.ask("nx.example.org.", RecordType::A).is_none());
    assert_eq!(h.upstream().len(), 1);
}

#[test]
fn cache_is_bounded_lru() {
    let mut c = lab_config();
    c.limits.cache_entries = 2;
    let mut h = Harness::with_upstreams(c, &[up(1)]);
    for n in ["one.test.", "two.test.", "one.test.", "three.test."] {
        if let Some(m) = h.ask(n, RecordType::A) {
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NoError,
                "{n} cached"
            );
            continue;
        }
        let sent = h.upstream();
        h.upstream_says(
            up(1),
            &reply_to(
                &sent[0],
                ResponseCode::NoError,
                vec![a(n, 600, Ipv4Addr::new(198, 51, 100, 1))],
            ),
        );
        h.answers();
    }
    assert_eq!(h.server.stats().cache_entries, 2);
    // "two" was least recently used: evicted. "one" is still there.
    assert!(h.ask("one.test.", RecordType::A).is_some());
    assert!(h.ask("two.test.", RecordType::A).is_none());
}

#[test]
fn identical_questions_in_flight_share_one_upstream_query() {
    let mut h = Harness::with_upstreams(lab_config(), &[up(1)]);
    assert!(h
        .ask_from(guest(20), "same.example.org.", RecordType::A)
        .is_none());
    let q2 = query(0x2222, "SAME.example.org.", RecordType::A)
        .to_vec()
        .unwrap();
    assert!(h.send(guest(21), Transport::Udp, &q2).is_none());
    let sent = h.upstream();
    assert_eq!(sent.len(), 1, "one upstream query for two clients");
    h.upstream_says(
        up(1),
        &reply_to(
            &sent[0],
            ResponseCode::NoError,
            vec![a("same.example.org.", 60, Ipv4Addr::new(198, 51, 100, 3))],
        ),
    );
    let answers = h.answers();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].client, guest(20));
    assert_eq!(decode(&answers[0].payload).metadata.id, 0x4242);
    assert_eq!(answers[1].client, guest(21));
    assert_eq!(decode(&answers[1].payload).metadata.id, 0x2222);
    assert_eq!(h.server.stats().coalesced, 1);
}

#[test]
fn answers_must_match_address_id_and_question() {
    let mut h = Harness::with_upstreams(lab_config(), &[up(1)]);
    assert!(h.ask("m.example.org.", RecordType::A).is_none());
    let sent = h.upstream();
    let good = reply_to(
        &sent[0],
        ResponseCode::NoError,
        vec![a("m.example.org.", 60, Ipv4Addr::new(198, 51, 100, 4))],
    );

    // From another address.
    h.upstream_says(up(9), &good);
    // Another id.
    let mut wrong_id = good.clone();
    wrong_id[0] ^= 0xff;
    h.upstream_says(up(1), &wrong_id);
    // The right id, another question (a spoofing attempt).
    let mut other = decode(&sent[0].payload);
    other.queries[0].set_name(name("evil.example.org."));
    let spoof = reply_to(
        &UpstreamQuery {
            to: up(1),
            payload: other.to_vec().unwrap(),
        },
        ResponseCode::NoError,
        vec![a("evil.example.org.", 60, Ipv4Addr::new(203, 0, 113, 66))],
    );
    h.upstream_says(up(1), &spoof);
    // A query, not a response, with the right id.
    h.upstream_says(up(1), &sent[0].payload);
    // Garbage.
    h.upstream_says(up(1), &[0x01]);
    assert!(h.answers().is_empty());
    let st = h.server.stats();
    assert_eq!(st.dropped(DropReason::UpstreamUnexpected), 2);
    assert_eq!(st.dropped(DropReason::UpstreamMismatch), 1);
    assert_eq!(st.dropped(DropReason::UpstreamMalformed), 2);
    assert_eq!(st.in_flight, 1, "still waiting for the real answer");

    h.upstream_says(up(1), &good);
    assert_eq!(h.answers().len(), 1);
    // The same answer again: its id is spent.
    h.upstream_says(up(1), &good);
    assert!(h.answers().is_empty());
}

#[test]
fn a_flooding_client_is_bounded_and_others_still_answered() {
    let mut c = lab_config();
    c.limits.max_in_flight_per_client = 4;
    c.limits.max_in_flight = 6;
    let mut h = Harness::with_upstreams(c, &[up(1)]);
    for i in 0..10 {
        assert!(h
            .ask_from(guest(66), &format!("flood{i}.example.org."), RecordType::A)
            .is_none());
    }
    assert_eq!(h.upstream().len(), 4);
    let st = h.server.stats();
    assert_eq!(st.in_flight, 4);
    assert_eq!(st.dropped(DropReason::ClientLimit), 6);
    // Another guest is still served, locally and by the upstream.
    assert_eq!(
        addrs(&h.ask_from(guest(67), "host.", RecordType::A).unwrap()),
        vec![IpAddr::V4(GW)]
    );
    assert!(h
        .ask_from(guest(67), "other.example.org.", RecordType::A)
        .is_none());
    assert!(h
        .ask_from(guest(68), "third.example.org.", RecordType::A)
        .is_none());
    assert_eq!(h.upstream().len(), 2);
    // The whole server's bound.
    assert!(h
        .ask_from(guest(69), "fourth.example.org.", RecordType::A)
        .is_none());
    assert!(h.upstream().is_empty());
    assert_eq!(h.server.stats().dropped(DropReason::InFlightLimit), 1);
    let events = h.events();
    assert_eq!(
        events,
        [
            Event::ClientLimit {
                client: IpAddr::V4(ip(66)),
                limit: 4
            },
            Event::InFlightLimit { limit: 6 },
        ],
        "each reported once"
    );
    // Timeouts free the slots.
    h.advance(Duration::from_secs(2));
    assert_eq!(h.server.stats().in_flight, 0);
    assert!(h
        .ask_from(guest(66), "again.example.org.", RecordType::A)
        .is_none());
    assert_eq!(h.upstream().len(), 1);
}

// ----- loops -----

#[test]
fn loop_probe_coming_back_drops_the_upstream() {
    let mut h = Harness::new(lab_config());
    h.server.set_system_upstreams(vec![up(1), up(2)]);
    let probes = h.upstream();
    assert_eq!(probes.len(), 2);
    let p1 = decode(&probes[0].payload);
    assert_eq!(probes[0].to, up(1));
    assert_eq!(p1.queries[0].query_type(), RecordType::TXT);
    let probe_name = p1.queries[0].name().to_ascii();
    assert!(probe_name.ends_with(".loop-check.vnet."), "{probe_name}");

    // up(2) answers its probe normally: consumed, nothing else happens.
    h.upstream_says(up(2), &reply_to(&probes[1], ResponseCode::NXDomain, vec![]));
    assert!(h.answers().is_empty());
    assert_eq!(h.server.stats().dropped_total(), 0);

    // up(1) forwards its probe back to us (say, via the guest's resolver it uses).
    assert_eq!(h.send(guest(5), Transport::Udp, &probes[0].payload), None);
    assert_eq!(h.server.stats().dropped(DropReason::LoopProbe), 1);
    assert_eq!(h.server.looping_upstreams(), vec![up(1)]);
    assert_eq!(h.events(), [Event::UpstreamLoop { upstream: up(1) }],);
    // Queries now go to up(2) only.
    assert!(h.ask("www.example.org.", RecordType::A).is_none());
    let sent = h.upstream();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, up(2));

    // Other names under the probe zone are never forwarded.
    let m = h.ask_local("0123456789abcdef.loop-check.vnet.", RecordType::TXT);
    assert_local(&m, ResponseCode::NXDomain);

    // Setting the upstreams again forgets the mark and probes again.
    h.server.set_system_upstreams(vec![up(1)]);
    assert!(h.server.looping_upstreams().is_empty());
    assert_eq!(h.upstream().len(), 1);
}

#[test]
fn all_upstreams_looping_means_servfail() {
    let mut h = Harness::new(lab_config());
    h.server.set_system_upstreams(vec![up(1)]);
    let probe = h.upstream().remove(0);
    assert!(h.send(guest(5), Transport::Udp, &probe.payload).is_none());
    let m = h.ask("www.example.org.", RecordType::A).expect("at once");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(h.upstream().is_empty());
    let events = h.events();
    assert!(
        matches!(events.last(), Some(Event::NoUpstream { .. })),
        "{events:?}"
    );
}

#[test]
fn own_address_upstream_is_dropped_at_once() {
    let mut c = lab_config();
    c.forwarders.push(Forwarder {
        addr: Some(SocketAddr::new(IpAddr::V4(GW), 53)),
        domain: None,
    });
    let mut h = Harness::new(c);
    assert!(h.upstream().is_empty(), "no probe to ourselves");
    assert_eq!(
        h.events()
            .iter()
            .map(|e| e.log_line("default"))
            .collect::<Vec<_>>(),
        ["DNS(default) ignoring upstream 192.168.122.1#53: it is this server's own address"]
    );
    let m = h.ask("www.example.org.", RecordType::A).expect("at once");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

// ----- isolated networks, clients -----

#[test]
fn isolated_network_refuses_unless_forwarders_given() {
    let mut c = lab_config();
    c.isolated = true;
    let mut h = Harness::new(c.clone());
    h.server.set_system_upstreams(vec![up(1)]);
    assert!(
        h.upstream().is_empty(),
        "system upstreams unused, not probed"
    );
    let m = h.ask("www.example.org.", RecordType::A).expect("at once");
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    assert_eq!(
        addrs(&h.ask_local("host.", RecordType::A)),
        vec![IpAddr::V4(GW)]
    );
    assert_eq!(h.server.stats().refused, 1);

    c.forwarders.push(Forwarder {
        addr: Some(up(3)),
        domain: None,
    });
    h.server.set_config(c);
    assert_eq!(h.upstream().len(), 1, "the forwarder's probe");
    assert!(h.ask("www.example.org.", RecordType::A).is_none());
    assert_eq!(h.upstream()[0].to, up(3));
}

#[test]
fn only_guests_are_answered() {
    let mut h = Harness::with_upstreams(lab_config(), &[up(1)]);
    let outsider = SocketAddr::from(([203, 0, 113, 5], 53));
    assert!(h.ask_from(outsider, "host.", RecordType::A).is_none());
    assert!(h
        .ask_from(outsider, "www.example.org.", RecordType::A)
        .is_none());
    assert!(h.upstream().is_empty());
    assert_eq!(h.server.stats().dropped(DropReason::NotGuest), 2);
    assert_eq!(h.server.stats().queries, 0);
}

// ----- sizes and errors -----

#[test]
fn udp_truncation_and_edns() {
    let mut c = lab_config();
    c.txt.push(TxtRecord {
        name: "big".into(),
        value: "x".repeat(700),
    });
    let mut h = Harness::new(c);
    let q = query(9, "big.", RecordType::TXT);

    // UDP without EDNS: over 512 bytes, so header + question with TC.
    let b = h
        .send(guest(5), Transport::Udp, &q.to_vec().unwrap())
        .unwrap();
    assert!(b.len() <= 512);
    let m = decode(&b);
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());
    assert_eq!(m.queries.len(), 1);
    assert_eq!(h.server.stats().truncated, 1);

    // EDNS 1232: fits; our OPT comes back.
    let b = h
        .send(
            guest(5),
            Transport::Udp,
            &with_edns(q.clone(), 1232).to_vec().unwrap(),
        )
        .unwrap();
    let m = decode(&b);
    assert!(!m.metadata.truncation);
    let RData::TXT(t) = &m.answers[0].data else {
        panic!("{m}")
    };
    assert_eq!(t.txt_data.len(), 3, "split into 255-byte strings");
    assert_eq!(m.edns.as_ref().unwrap().max_payload(), EDNS_UDP_SIZE);

    // An EDNS size under 512 counts as 512.
    let b = h
        .send(
            guest(5),
            Transport::Udp,
            &with_edns(q.clone(), 100).to_vec().unwrap(),
        )
        .unwrap();
    assert!(decode(&b).metadata.truncation);

    // TCP: no truncation.
    let b = h
        .send(guest(5), Transport::Tcp, &q.to_vec().unwrap())
        .unwrap();
    assert!(b.len() > 700);
    assert!(!decode(&b).metadata.truncation);
}

#[test]
fn malformed_input_is_counted() {
    let mut h = Harness::with_upstreams(lab_config(), &[up(1)]);
    // Shorter than a header: dropped.
    assert_eq!(h.send(guest(5), Transport::Udp, &[0x12, 0x34, 0x01]), None);
    assert_eq!(h.server.stats().dropped(DropReason::Malformed), 1);
    // A response (QR=1): dropped.
    let mut resp = query(1, "host.", RecordType::A);
    resp.metadata.message_type = MessageType::Response;
    assert_eq!(
        h.send(guest(5), Transport::Udp, &resp.to_vec().unwrap()),
        None
    );
    assert_eq!(h.server.stats().dropped(DropReason::NotQuery), 1);

    // A header, then garbage: FORMERR with the id.
    let garbage = [0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f, 0xff];
    let m = decode(&h.send(guest(5), Transport::Udp, &garbage).unwrap());
    assert_eq!(m.metadata.id, 0xbeef);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert!(m.queries.is_empty());
    // Two questions: FORMERR.
    let mut two = query(2, "host.", RecordType::A);
    two.add_query(Query::query(name("gateway."), RecordType::A));
    let m = decode(
        &h.send(guest(5), Transport::Udp, &two.to_vec().unwrap())
            .unwrap(),
    );
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // A header claiming 65535 questions: FORMERR without decoding them.
    let many = [0, 3, 0x01, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0];
    let m = decode(&h.send(guest(5), Transport::Udp, &many).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Opcode STATUS: NOTIMP.
    let mut status = query(4, "host.", RecordType::A).to_vec().unwrap();
    status[2] |= 2 << 3;
    let m = decode(&h.send(guest(5), Transport::Udp, &status).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    // EDNS version 1: BADVERS, with our OPT.
    let mut q = query(5, "host.", RecordType::A);
    let mut e = Edns::new();
    e.set_version(1);
    q.set_edns(e);
    let m = decode(
        &h.send(guest(5), Transport::Udp, &q.to_vec().unwrap())
            .unwrap(),
    );
    // BADVERS and BADSIG share code 16 (RFC 6891, RFC 8945); hickory names it BADSIG.
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert_eq!(m.edns.as_ref().unwrap().version(), 0);
    // Class CHAOS and AXFR: REFUSED.
    let mut chaos = query(6, "version.bind.", RecordType::TXT);
    chaos.queries[0].set_query_class(DNSClass::CH);
    let m = decode(
        &h.send(guest(5), Transport::Udp, &chaos.to_vec().unwrap())
            .unwrap(),
    );
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let m = h.ask("example.com.", RecordType::AXFR).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    assert!(h.upstream().is_empty());
    let st = h.server.stats();
    assert_eq!((st.formerr, st.notimp, st.refused), (4, 1, 2));
    assert_eq!(st.queries, 7);
}

// ----- records, live updates -----

#[test]
fn records_list_every_served_record_with_its_source() {
    let mut h = Harness::new(lab_config());
    h.server.set_lease_name(ip(23), "vm1");
    let rows = h.server.records();
    let find = |n: &str, t: &str| {
        rows.iter()
            .find(|r| r.name == n && r.rtype == t)
            .unwrap_or_else(|| panic!("no {n} {t} in {rows:#?}"))
    };
    assert_eq!(find("vm1.example.com", "A").value, "192.168.122.23");
    assert_eq!(find("vm1", "A").source, RecordSource::Lease);
    assert_eq!(
        find("23.122.168.192.in-addr.arpa", "PTR").value,
        "vm1.example.com"
    );
    assert_eq!(find("a.example.com", "A").source, RecordSource::Reservation);
    assert_eq!(find("gateway", "A").source, RecordSource::DnsHost);
    assert_eq!(find("v6only.example.com", "AAAA").value, "fd00::10");
    assert_eq!(find("example", "TXT").value, "example value");
    let srv = find("_name._tcp.test-domain-name.com", "SRV");
    assert_eq!(srv.value, "11 111 1111 test.example.com");
    assert_eq!(srv.source, RecordSource::Srv);
    let mut sorted = rows.clone();
    sorted.sort();
    assert_eq!(rows, sorted);
    let json = serde_json::to_value(find("vm1", "A")).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"name": "vm1", "type": "A", "value": "192.168.122.23", "source": "lease"})
    );
    assert_eq!(
        serde_json::to_value(RecordSource::DnsHost).unwrap(),
        serde_json::json!("dns-host")
    );
}

#[test]
fn set_config_keeps_leases_and_applies_the_new_domain() {
    let mut h = Harness::new(lab_config());
    h.server.set_lease_name(ip(23), "vm1");
    let mut c = lab_config();
    c.domain = Some("lab.test".into());
    h.server.set_config(c);
    assert_eq!(
        addrs(&h.ask_local("vm1.lab.test.", RecordType::A)),
        vec![IpAddr::V4(ip(23))]
    );
    assert_eq!(
        ptr_targets(&h.ask_local("23.122.168.192.in-addr.arpa.", RecordType::PTR)),
        vec!["vm1.lab.test."]
    );
    // A smaller subnet drops the leases outside it.
    let mut c = lab_config();
    c.prefix = 28;
    c.subnets[0].prefix = 28;
    h.server.set_config(c);
    assert_eq!(h.server.stats().lease_names, 0);
}

#[test]
fn upstream_query_copies_do_and_cd_and_strips_dnssec_for_others() {
    let mut h = Harness::with_upstreams(lab_config(), &[up(1)]);
    let mut q = with_edns(query(3, "signed.example.org.", RecordType::A), 1232);
    q.edns.as_mut().unwrap().set_dnssec_ok(true);
    q.metadata.checking_disabled = true;
    assert!(h
        .send(guest(5), Transport::Udp, &q.to_vec().unwrap())
        .is_none());
    let sent = h.upstream();
    let upq = decode(&sent[0].payload);
    assert!(upq.edns.as_ref().unwrap().flags().dnssec_ok);
    assert!(upq.metadata.checking_disabled);
    h.upstream_says(
        up(1),
        &reply_to(
            &sent[0],
            ResponseCode::NoError,
            vec![a("signed.example.org.", 60, Ipv4Addr::new(198, 51, 100, 5))],
        ),
    );
    let m = decode(&h.answers()[0].payload);
    assert!(m.edns.as_ref().unwrap().flags().dnssec_ok);
    assert!(m.metadata.checking_disabled);
}

// ----- property tests -----

#[derive(Debug, Clone)]
enum Op {
    /// Any bytes as a query from guest `client` (0..4) or an outsider (4).
    RawQuery {
        client: u8,
        tcp: bool,
        bytes: Vec<u8>,
    },
    /// A well-formed query for one of a few names, its bytes then edited.
    Query {
        client: u8,
        name: u8,
        qtype: u16,
        edits: Vec<(u16, u8)>,
    },
    /// Any bytes from an upstream (or a stranger).
    RawUpstream {
        from: u8,
        bytes: Vec<u8>,
    },
    /// A well-formed answer to the oldest query sent upstream, maybe edited.
    Answer {
        rcode: u8,
        ttl: u32,
        edits: Vec<(u16, u8)>,
    },
    Advance {
        millis: u32,
    },
    Lease {
        last: u8,
        name: u8,
    },
    Unlease {
        last: u8,
    },
}

const NAMES: [&str; 6] = [
    "host.",
    "www.example.org.",
    "x.corp.example.",
    "vm1.example.com.",
    "5.122.168.192.in-addr.arpa.",
    "nobody.example.com.",
];

fn op() -> impl Strategy<Value = Op> {
    let edits = proptest::collection::vec((any::<u16>(), any::<u8>()), 0..4);
    prop_oneof![
        (
            0u8..5,
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(client, tcp, bytes)| Op::RawQuery { client, tcp, bytes }),
        (
            0u8..5,
            0u8..6,
            prop_oneof![
                Just(1u16),
                Just(28),
                Just(12),
                Just(16),
                Just(255),
                any::<u16>()
            ],
            edits.clone()
        )
            .prop_map(|(client, name, qtype, edits)| Op::Query {
                client,
                name,
                qtype,
                edits
            }),
        (0u8..4, proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(from, bytes)| Op::RawUpstream { from, bytes }),
        (0u8..6, 0u32..1000, edits).prop_map(|(rcode, ttl, edits)| Op::Answer {
            rcode,
            ttl,
            edits
        }),
        (0u32..5000).prop_map(|millis| Op::Advance { millis }),
        (0u8..8, 0u8..4).prop_map(|(last, name)| Op::Lease { last, name }),
        (0u8..8).prop_map(|last| Op::Unlease { last }),
    ]
}

fn client_addr(c: u8) -> SocketAddr {
    if c >= 4 {
        SocketAddr::from(([203, 0, 113, 1], 53))
    } else {
        guest(2 + c)
    }
}

fn edit(bytes: &mut [u8], edits: &[(u16, u8)]) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    for &(at, b) in edits {
        if let Some(x) = bytes.get_mut(usize::from(at) % len) {
            *x = b;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any sequence of queries, upstream messages, clock steps and lease changes never
    /// panics, keeps every table within its bound, and every answer is a response.
    #[test]
    fn arbitrary_input_never_panics_and_stays_bounded(ops in proptest::collection::vec(op(), 1..60)) {
        let mut c = lab_config();
        c.limits.max_in_flight = 6;
        c.limits.max_in_flight_per_client = 3;
        c.limits.cache_entries = 3;
        c.limits.lease_names = 4;
        c.forwarders.push(Forwarder { addr: Some(up(7)), domain: Some("corp.example".into()) });
        let mut server = Server::with_seed(c, 1);
        server.set_system_upstreams(vec![up(1), up(2)]);
        let mut now = Instant::now();
        let mut sent: std::collections::VecDeque<UpstreamQuery> = std::collections::VecDeque::new();
        for op in ops {
            match op {
                Op::RawQuery { client, tcp, bytes } => {
                    let t = if tcp { Transport::Tcp } else { Transport::Udp };
                    if let Some(r) = server.handle_query(now, client_addr(client), t, &bytes) {
                        prop_assert!(r.len() >= 12 && r[2] & 0x80 != 0, "a response");
                        prop_assert!(tcp || r.len() <= 4096);
                    }
                }
                Op::Query { client, name, qtype, edits } => {
                    let mut m = query(7, NAMES[usize::from(name) % NAMES.len()], RecordType::from(qtype));
                    if qtype % 2 == 0 {
                        m = with_edns(m, 1232);
                    }
                    let mut b = m.to_vec().unwrap();
                    edit(&mut b, &edits);
                    if let Some(r) = server.handle_query(now, client_addr(client), Transport::Udp, &b) {
                        prop_assert!(r.len() >= 12 && r[2] & 0x80 != 0);
                        prop_assert!(r.len() <= 4096);
                    }
                }
                Op::RawUpstream { from, bytes } => server.handle_upstream(now, up(from), &bytes),
                Op::Answer { rcode, ttl, edits } => {
                    if let Some(q) = sent.pop_front() {
                        let rcode = [ResponseCode::NoError, ResponseCode::NXDomain, ResponseCode::ServFail, ResponseCode::Refused, ResponseCode::FormErr, ResponseCode::NoError][usize::from(rcode) % 6];
                        let qname = decode(&q.payload).queries[0].name().clone();
                        let rec = Record::from_rdata(qname.clone(), ttl, RData::A(A(Ipv4Addr::new(198, 51, 100, 1))));
                        let mut b = reply_with(&q, rcode, vec![rec], vec![soa("org.", ttl, ttl / 2)]);
                        edit(&mut b, &edits);
                        server.handle_upstream(now, q.to, &b);
                    }
                }
                Op::Advance { millis } => {
                    now += Duration::from_millis(u64::from(millis));
                    if server.poll_timeout().is_some_and(|t| t <= now) {
                        server.handle_timeout(now);
                    }
                    prop_assert!(server.poll_timeout().is_none_or(|t| t > now));
                }
                Op::Lease { last, name } => {
                    let n = ["vm1", "web", "bad name", "db.example.com"][usize::from(name) % 4];
                    server.set_lease_name(ip(100 + last), n);
                }
                Op::Unlease { last } => server.remove_lease_name(ip(100 + last)),
            }
            while let Some(q) = server.poll_upstream() {
                prop_assert!([up(1), up(2), up(7)].contains(&q.to));
                sent.push_back(q);
                if sent.len() > 32 {
                    sent.pop_front();
                }
            }
            while let Some(a) = server.poll_answer() {
                prop_assert!(a.payload.len() >= 12 && a.payload[2] & 0x80 != 0);
            }
            while server.poll_event().is_some() {}
            if let Err(e) = server.check_invariants() {
                return Err(TestCaseError::fail(e));
            }
            let st = server.stats();
            prop_assert!(st.in_flight <= 6 && st.cache_entries <= 3 && st.lease_names <= 4);
        }
    }

    /// Any bytes at all as a query never panic, and never get an answer unless they
    /// hold a header.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut server = Server::with_seed(lab_config(), 3);
        let now = Instant::now();
        let r = server.handle_query(now, guest(9), Transport::Udp, &bytes);
        if bytes.len() < 12 {
            prop_assert!(r.is_none());
        }
        server.handle_upstream(now, up(1), &bytes);
        prop_assert!(server.check_invariants().is_ok());
    }
}

#[test]
fn counters_name_every_field_once() {
    let names: Vec<String> = Stats::default()
        .counters()
        .map(|(k, _)| k.into_owned())
        .collect();
    let unique: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for want in [
        "queries",
        "encode_errors",
        "events_dropped",
        "lease_names_rejected",
        "dropped_not_guest",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    assert_eq!(names.len(), 19 + DropReason::ALL.len());
}
