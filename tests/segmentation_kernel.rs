//! Software segmentation (`vnet_ports::soft`) against the kernel's own: the same
//! super-frame is written into a TAP (with its virtio-net header, as a guest with TSO
//! or USO sends it), forwarded by a kernel bridge to a veth with every offload off —
//! so the kernel segments it and completes the checksums in software — and the
//! segments arriving at the veth's peer are compared byte for byte with what
//! `soft::for_each_plain` makes of the same frame. IPv4 TCP (with FIN, PSH and CWR,
//! which only some segments keep), IPv6 TCP and IPv4 UDP (USO).
//!
//! Needs root (namespace, TAP, bridge); see the README's test command.

use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use vnet_ports::VirtioNetHdr;
use vnet_ports::{soft, FrameBuf, NetnsRef, PacketOptions, PacketPort, Tap, TapOptions};
use vnet_testkit::{require_root, Netns};

const SRC_MAC: [u8; 6] = [0x02, 0x5e, 0x67, 0, 0, 1];
const DST_MAC: [u8; 6] = [0x02, 0x5e, 0x67, 0, 0, 2];

/// A namespace with a kernel bridge between a TAP (offloads on) and a veth whose
/// offloads are all off, and a packet socket on the veth's peer.
struct Rig {
    tap: Tap,
    capture: PacketPort,
    _ns: Netns,
}

impl Rig {
    fn new() -> Self {
        let ns = Netns::new("vseg");
        let mut topts = TapOptions::default();
        topts.name = Some("t0".into());
        topts.netns = Some(NetnsRef::new(ns.name()));
        let tap = Tap::create(&topts).expect("TAP in the namespace");
        for args in [
            &[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
            ][..],
            &["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            &["link", "set", "t0", "master", "br0"],
            &["link", "set", "v0", "master", "br0"],
            &["link", "set", "br0", "up"],
            &["link", "set", "v0", "up"],
            &["link", "set", "v1", "up"],
        ] {
            ns.run_ok("ip", args);
        }
        // no checksum offload, no segmentation offload of any kind on the egress veth:
        // the kernel segments and checksums forwarded super-frames itself
        for feature in [
            "tx",
            "tso",
            "gso",
            "tx-udp-segmentation",
            "tx-gso-partial",
            "sg",
        ] {
            // some features are fixed on some kernels; those that can be turned off are
            let _ = ns.run("ethtool", &["-K", "v0", feature, "off"]);
        }
        let mut opts = PacketOptions::new("v1");
        opts.netns = Some(NetnsRef::new(ns.name()));
        let capture = PacketPort::open(&opts).expect("packet socket on v1");
        Self {
            tap,
            capture,
            _ns: ns,
        }
    }

    /// Writes `buf` into the TAP and returns the frames from `SRC_MAC` that reach v1,
    /// waiting until `want` have arrived (or 5 s).
    fn kernel_segments(&mut self, buf: &FrameBuf, want: usize) -> Vec<Vec<u8>> {
        // drain what the links said on their own
        let mut rx = FrameBuf::new();
        while self.capture.recv(&mut rx).is_ok() {}
        self.tap
            .send(buf)
            .expect("write the super-frame into the TAP");
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < want && Instant::now() < deadline {
            match self.capture.recv(&mut rx) {
                Ok(_) if rx.frame().get(6..12) == Some(&SRC_MAC[..]) => {
                    got.push(rx.frame().to_vec());
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("reading v1: {e}"),
            }
        }
        got
    }
}

fn ours(buf: &FrameBuf) -> Vec<Vec<u8>> {
    let mut segs = Vec::new();
    soft::for_each_plain(buf, &mut Vec::new(), |s| segs.push(s.to_vec()))
        .expect("soft segmentation");
    segs
}

/// The one's-complement sum (unfolded) of `data`.
fn sum(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// Turns the full L4 checksum etherparse wrote into the partial one a guest kernel
/// leaves with `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the pseudo-header sum, not complemented.
fn make_partial(f: &mut [u8], addrs: std::ops::Range<usize>, proto: u8, l4: usize, at: usize) {
    let len = u32::try_from(f.len() - l4).unwrap();
    let mut acc = sum(&f[addrs]) + u32::from(proto) + len;
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    f[at..at + 2].copy_from_slice(&u16::try_from(acc).unwrap().to_be_bytes());
}

fn super_frame(
    f: &[u8],
    gso_type: u8,
    gso_size: u16,
    l4: u16,
    l4_hdr: u16,
    csum_off: u16,
) -> FrameBuf {
    let mut buf = FrameBuf::from_frame(f);
    buf.set_vnet_hdr(&VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        gso_type,
        hdr_len: l4 + l4_hdr,
        gso_size,
        csum_start: l4,
        csum_offset: csum_off,
        num_buffers: 0,
    });
    buf
}

fn compare(what: &str, kernel: &[Vec<u8>], ours: &[Vec<u8>]) {
    assert!(!ours.is_empty());
    assert_eq!(
        kernel.len(),
        ours.len(),
        "{what}: the kernel made {} segments, soft {}",
        kernel.len(),
        ours.len()
    );
    for (i, (k, o)) in kernel.iter().zip(ours).enumerate() {
        if k != o {
            let at = k
                .iter()
                .zip(o)
                .position(|(a, b)| a != b)
                .unwrap_or(k.len().min(o.len()));
            panic!(
                "{what}: segment {i} differs at byte {at} (lengths {} / {})\nkernel: {:02x?}\nsoft:   {:02x?}",
                k.len(),
                o.len(),
                &k[at.saturating_sub(8)..(at + 8).min(k.len())],
                &o[at.saturating_sub(8)..(at + 8).min(o.len())],
            );
        }
    }
}

#[test]
fn soft_segmentation_matches_the_kernels() {
    require_root();
    let mut rig = Rig::new();

    // IPv4 TCP: 10 000 bytes at MSS 1448 (7 segments, the last short), FIN + PSH +
    // CWR on the super-frame, ECN-marked GSO as a guest sends it after congestion
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut f = Vec::new();
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv4([10, 78, 0, 1], [10, 78, 0, 2], 64)
        .tcp(40000, 5201, 0x1234_5678, 64000)
        .ack(99)
        .psh()
        .fin()
        .cwr()
        .write(&mut f, &payload)
        .unwrap();
    f[18..20].copy_from_slice(&0x4242u16.to_be_bytes()); // the first IPv4 id
    f[24..26].copy_from_slice(&[0, 0]);
    let c = !fold(sum(&f[14..34]));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    make_partial(&mut f, 26..34, 6, 34, 34 + 16);
    let buf = super_frame(
        &f,
        VirtioNetHdr::GSO_TCPV4 | VirtioNetHdr::GSO_ECN,
        1448,
        34,
        20,
        16,
    );
    let soft = ours(&buf);
    assert_eq!(soft.len(), 7);
    compare("TCP/IPv4", &rig.kernel_segments(&buf, soft.len()), &soft);

    // IPv6 TCP: 9 000 bytes at MSS 1428
    let payload: Vec<u8> = (0..9_000u32).map(|i| (i % 253) as u8).collect();
    let mut f = Vec::new();
    let a6 = [0xfd, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let b6 = [0xfd, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv6(a6, b6, 64)
        .tcp(40001, 5201, 77, 64000)
        .ack(5)
        .psh()
        .write(&mut f, &payload)
        .unwrap();
    make_partial(&mut f, 22..54, 6, 54, 54 + 16);
    let buf = super_frame(&f, VirtioNetHdr::GSO_TCPV6, 1428, 54, 20, 16);
    let soft = ours(&buf);
    assert_eq!(soft.len(), 7);
    compare("TCP/IPv6", &rig.kernel_segments(&buf, soft.len()), &soft);

    // IPv4 UDP (USO): 4 000 bytes in datagrams of 1400
    if !rig.tap.has_uso() {
        eprintln!("this kernel's TAP takes no USO: UDP segmentation not compared");
        return;
    }
    let payload: Vec<u8> = (0..4_000u32).map(|i| (i % 13) as u8).collect();
    let mut f = Vec::new();
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv4([10, 78, 0, 1], [10, 78, 0, 2], 64)
        .udp(5000, 5001)
        .write(&mut f, &payload)
        .unwrap();
    make_partial(&mut f, 26..34, 17, 34, 34 + 6);
    let buf = super_frame(&f, VirtioNetHdr::GSO_UDP_L4, 1400, 34, 8, 6);
    let soft = ours(&buf);
    assert_eq!(soft.len(), 3);
    compare(
        "UDP/IPv4 (USO)",
        &rig.kernel_segments(&buf, soft.len()),
        &soft,
    );
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    u16::try_from(acc).unwrap()
}
