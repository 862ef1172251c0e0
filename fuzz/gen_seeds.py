#!/usr/bin/env python3
"""Writes the seed inputs of the structured fuzz targets into corpus/<target>/.

The targets take `arbitrary` (1.x) values, whose byte layout is simple: integers are
little-endian, a bool is one byte (odd: true), an Option is a bool then the value, a
Vec is each element behind a 1 byte (the last one followed by a 0 byte, or the end of
the input), an enum is a u32 that picks variant v of n when (x * n) >> 32 == v, and a
struct is its fields in order. The Op enums below must list their variants in the
order of the targets' source; after changing one, rerun this (from fuzz/) and check
with `cargo +nightly fuzz fmt <target> corpus/<target>/<seed>`.

The frames are real ones: a DNS query as dig sends it, an ICMP echo request as ping
sends it, a TCP SYN with Linux's options, an ARP request, DHCP as busybox udhcpc
sends it (the dhcp_handle target's captured DISCOVER).
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def u8(v):
    return struct.pack("<B", v & 0xFF)


def i8(v):
    return struct.pack("<b", v)


def u16(v):
    return struct.pack("<H", v)


def u32(v):
    return struct.pack("<I", v)


def boolean(v):
    return b"\x01" if v else b"\x00"


def option(v, enc):
    return b"\x00" if v is None else b"\x01" + enc(v)


def vec(items, enc=u8):
    return b"".join(b"\x01" + enc(i) for i in items) + b"\x00"


def variant(v, n):
    return u32(-(-(v << 32) // n))


class Enum:
    def __init__(self, *names):
        self.names = names

    def __call__(self, name, *fields):
        return variant(self.names.index(name), len(self.names)) + b"".join(fields)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def dns_name(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"


# dig 9.18: vm1.example.com A, RD+AD, EDNS 1232 with a cookie (dns_handle's DIG_QUERY)
DIG_QUERY = (
    bytes.fromhex("8d5e01200001000000000001")
    + dns_name("vm1.example.com")
    + bytes.fromhex("00010001")
    + bytes.fromhex("00" "0029" "04d0" "00000000" "000c" "000a" "0008")
    + bytes(range(1, 9))
)
# the answer to a query for example.com A (id 0x8d5e, one A record by compression pointer)
DNS_ANSWER = (
    bytes.fromhex("8d5e81800001000100000000")
    + dns_name("example.com")
    + bytes.fromhex("00010001" "c00c00010001 0000012c 0004 5db8d822".replace(" ", ""))
)
# ping (iputils): 8 timestamp bytes then 0x10..0x37
PING_DATA = bytes(8) + bytes(range(0x10, 0x38))


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f">{len(b) // 2}H", b))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


GW_MAC = bytes.fromhex("525400aabbcc")
GUEST_MAC = bytes.fromhex("525400000000")


def ipv4(src, dst, proto, payload):
    h = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1C46, 0x4000, 64, proto, 0,
                    bytes(src), bytes(dst))
    h = h[:10] + struct.pack(">H", csum(h)) + h[12:]
    return GW_MAC + GUEST_MAC + b"\x08\x00" + h + payload


# Linux's SYN options: MSS 1460, SACK permitted, timestamps, window scale 7
LINUX_SYN_OPTIONS = bytes.fromhex("020405b40402080a0000000000000000" "01030307")


def ethernet_arp_request():
    return (
        b"\xff" * 6 + GUEST_MAC + b"\x08\x06"
        + bytes.fromhex("0001080006040001") + GUEST_MAC + bytes([192, 168, 122, 10])
        + bytes(6) + bytes([192, 168, 122, 1]) + bytes(18)
    )


def stream_frame(frame):
    return struct.pack(">I", len(frame)) + frame


# ---- stream_deframer ----
Chunk = Enum("Raw", "Frame", "Close")
arp = ethernet_arp_request()
syn = ipv4(
    [192, 168, 122, 10], [10, 98, 0, 2], 6,
    struct.pack(">HHIIBBHHH", 40000, 80, 1000, 0, (20 + len(LINUX_SYN_OPTIONS)) // 4 << 4, 0x02, 64240, 0, 0)
    + LINUX_SYN_OPTIONS,
)
two = stream_frame(arp) + stream_frame(syn)
write("stream_deframer", "seed-two-frames", vec([two], enc=lambda b: Chunk("Raw", vec(b))))
write(
    "stream_deframer",
    "seed-split-then-close",
    vec([two[:7], two[7:70], two[70:], None], enc=lambda b: Chunk("Close") if b is None else Chunk("Raw", vec(b))),
)
write(
    "stream_deframer",
    "seed-bad-length",
    vec([stream_frame(arp) + struct.pack(">I", 0x10_0000)], enc=lambda b: Chunk("Raw", vec(b))),
)
write(
    "stream_deframer",
    "seed-largest-frame",
    vec([(65536 + 18, 0xAB, 0), (65536 + 19, 0, 0)], enc=lambda t: Chunk("Frame", u32(t[0]), u8(t[1]), u16(t[2]))),
)

# ---- nat_translator ----
Op = Enum(
    "Raw", "Ip", "Tcp", "Reply", "Udp", "Echo", "Opened", "Datagram", "HostData",
    "HostRoom", "Pump", "Advance", "Accept", "Inbound", "Arp", "HostAccess",
)


def setup(max_flows=7, per_guest=3, tso=True, host_access=True, mtu=2):
    return u8(max_flows) + u8(per_guest) + boolean(tso) + boolean(host_access) + u8(mtu)


def tcp(guest, sport, remote, dport, seq, ack, flags, window=64240, mss=1460, options=b"", payload=b""):
    return Op("Tcp", u8(guest), u8(sport), u8(remote), u8(dport), u32(seq), u32(ack), u8(flags),
              u16(window), option(mss, u16), vec(options), vec(payload))


def reply(pick, flags, payload=b"", window=64240, seq_off=0, ack_off=0):
    return Op("Reply", u8(pick), u8(flags), u16(window), i8(seq_off), i8(ack_off), vec(payload))


def ops(*items):
    return b"".join(b"\x01" + i for i in items) + b"\x00"


write("nat_translator", "seed-tcp-http", setup() + ops(
    tcp(0, 0, 0, 0, 1000, 0, 0x02, mss=None, options=LINUX_SYN_OPTIONS),
    Op("Opened", u8(0), u8(0)),
    reply(0, 0x10),
    reply(0, 0x18, b"GET / HTTP/1.0\r\nHost: example\r\n\r\n"),
    Op("HostData", u8(0), vec(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"), boolean(True)),
    reply(1, 0x11),
    Op("Advance", u16(500), u8(0)),
))
write("nat_translator", "seed-tcp-refused-unreachable", setup(tso=False) + ops(
    tcp(0, 1, 0, 3, 77, 0, 0x02),
    tcp(1, 2, 1, 1, 99, 0, 0x02),
    Op("Opened", u8(0), u8(1)),
    Op("Opened", u8(0), u8(2)),
    tcp(0, 1, 0, 3, 78, 5, 0x10),
))
write("nat_translator", "seed-udp-dns", setup() + ops(
    Op("Udp", u8(1), u8(0), u8(1), u8(2), vec(DIG_QUERY)),
    Op("Datagram", u8(0), vec(DNS_ANSWER)),
    Op("Udp", u8(1), u8(0), u8(1), u8(2), vec(DIG_QUERY)),
    Op("Advance", u16(0), u8(200)),
))
echo_reply = bytes([0, 0, 0, 0, 0x99, 0x99, 0, 1]) + PING_DATA
write("nat_translator", "seed-ping", setup() + ops(
    Op("Echo", u8(0), u8(1), u8(0), u16(1), vec(PING_DATA)),
    Op("Datagram", u8(0), vec(echo_reply)),
    Op("Echo", u8(0), u8(1), u8(0), u16(2), vec(PING_DATA)),
    Op("Advance", u16(0), u8(31)),
))
write("nat_translator", "seed-host-access", setup(host_access=True) + ops(
    tcp(2, 3, 2, 3, 5, 0, 0x02),
    Op("HostAccess", boolean(False)),
    tcp(2, 4, 2, 3, 5, 0, 0x02),
    Op("Opened", u8(0), u8(0)),
))
write("nat_translator", "seed-port-forward", setup() + ops(
    Op("Udp", u8(0), u8(0), u8(0), u8(2), vec(b"x")),
    Op("Arp", u8(0), option(None, vec)),
    Op("Accept", u8(8), u8(0), u8(0)),
    reply(0, 0x12),
    Op("HostData", u8(0), vec(b"hello guest"), boolean(False)),
    Op("Inbound", u8(8), u8(0), u8(2), vec(DIG_QUERY)),
))
write("nat_translator", "seed-raw-syn", setup() + ops(Op("Raw", vec(syn)), Op("Opened", u8(0), u8(0))))

# ---- dhcp_handle ----
Dhcp = Enum("Raw", "Built", "Captured", "Advance", "Reserve")


def built(meta, kind, client, flags=0, ciaddr=255, requested=None, server_id=None, client_id=False, extra=b""):
    return Dhcp("Built", u8(meta), u8(kind), u8(client), u16(flags), u8(ciaddr), option(requested, u8),
                option(server_id, u8), boolean(client_id), vec(extra))


write("dhcp_handle", "seed-captured-discover", ops(Dhcp("Captured", vec([], enc=lambda t: u16(t[0]) + u8(t[1])))))
write("dhcp_handle", "seed-dora-renew-release", ops(
    built(0, 1, 1),
    built(0, 3, 1, requested=10, server_id=1),
    Dhcp("Advance", u16(400)),
    built(1, 3, 1, ciaddr=10),
    built(1, 7, 1, ciaddr=10, server_id=1),
))
write("dhcp_handle", "seed-reservation", ops(
    Dhcp("Reserve", u8(3), u8(6)),
    built(0, 1, 3, flags=0x8000),
    built(0, 3, 3, requested=6, server_id=1),
))

# ---- dns_handle ----
Dns = Enum("Raw", "Built", "Captured", "RawUpstream", "Answer", "Loop", "Advance", "Lease", "Unlease",
           "Reconfigure", "SystemUpstreams")


def query(client, name, qtype=1, tcp=False, ident=0x1234, flags=0x0100, edns=(1232, 0)):
    return Dns("Built", u8(client), boolean(tcp), u16(ident), u16(flags), u8(name), u16(qtype), boolean(True),
               option(edns, lambda e: u16(e[0]) + u8(e[1])))


write("dns_handle", "seed-dig", ops(Dns("Captured", u8(1), vec([], enc=lambda t: u8(t[0]) + u8(t[1])))))
write("dns_handle", "seed-forward-and-cache", ops(
    query(1, 2),
    Dns("Answer", u8(0), u8(0), u32(300), u8(1), boolean(False), boolean(False), vec([], enc=lambda t: t)),
    query(2, 2, ident=0x4321),
    Dns("Advance", u16(5000)),
))
write("dns_handle", "seed-local-names", ops(
    Dns("Lease", u8(0), u8(0)),
    query(1, 0),
    query(1, 1, qtype=28, tcp=True),
    query(3, 5, qtype=12),
    query(4, 6, qtype=33),
))
# ---- xml_depth ----
# Not `arbitrary`: u16 repetition count, entry point (0 definition, 1 net-update fragment,
# 2 bare), fragment index | 0x10 unclosed | 0x20 count x 16, then the innermost text
# (see fuzz_targets/xml_depth.rs).


def depth(count, entry, fragment, unclosed=False, times16=False, middle=b""):
    return u16(count) + u8(entry) + u8(fragment | (0x10 if unclosed else 0) | (0x20 if times16 else 0)) + middle


write("xml_depth", "seed-issue-17-host-15000", depth(15000, 1, 0))
write("xml_depth", "seed-metadata-at-the-limit", depth(62, 0, 1))
write("xml_depth", "seed-metadata-one-too-deep", depth(63, 0, 1))
write("xml_depth", "seed-values-and-comments", depth(30, 0, 8, middle=b"<!--<a><a>--><x:b v='<'/>"))
write("xml_depth", "seed-cdata-pi", depth(200, 2, 5, middle=b"<?p <a>?>"))
write("xml_depth", "seed-just-under-a-megabyte-unclosed", depth(21800, 2, 0, unclosed=True, times16=True))
write("xml_depth", "seed-over-a-megabyte", depth(65535, 0, 7, times16=True))

print("seeds written")
