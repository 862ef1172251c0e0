//! Offloads done in software, for ports that cannot take them (QEMU stream and dgram
//! sockets carry plain Ethernet frames): completing a partial checksum and cutting a
//! TCP super-frame (`GSO_TCPV4`, `GSO_TCPV6`) or a USO frame (`GSO_UDP_L4`) into
//! wire-sized frames.
//!
//! Frames that need neither pass through as they are. Frames that cannot be handled
//! (unknown GSO types, inconsistent headers) are reported as errors; the caller drops
//! and counts them.

use crate::buf::FrameBuf;
use crate::vnet_hdr::VirtioNetHdr;

/// Why a frame could not be made plain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftError {
    /// A GSO type this code does not segment.
    UnsupportedGso(u8),
    /// Header fields that do not fit the frame.
    Malformed,
}

/// The one's-complement sum of `data`, not yet folded or complemented.
fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    u16::try_from(acc).unwrap_or(u16::MAX)
}

/// Calls `out` with the frame in `buf` as one or more plain frames (no offload left to
/// do). Returns how many frames were produced.
///
/// Each frame is built in `scratch` (reused across calls); [`for_each_plain_parts`]
/// avoids that copy.
pub fn for_each_plain(
    buf: &FrameBuf,
    scratch: &mut Vec<u8>,
    mut out: impl FnMut(&[u8]),
) -> Result<usize, SoftError> {
    let mut joined = std::mem::take(scratch);
    let mut head = Vec::new();
    let r = for_each_plain_parts(buf, &mut head, |h, t| {
        joined.clear();
        joined.extend_from_slice(h);
        joined.extend_from_slice(t);
        out(&joined);
    });
    *scratch = joined;
    r
}

/// Like [`for_each_plain`], but each plain frame comes in two parts, `head` then
/// `tail`, to be sent back to back (one `writev`): the headers, rewritten in
/// `scratch`, and the payload, borrowed from `buf` unchanged. A frame that needs
/// nothing comes whole as `head` with an empty `tail`. Returns how many frames were
/// produced.
pub fn for_each_plain_parts(
    buf: &FrameBuf,
    scratch: &mut Vec<u8>,
    mut out: impl FnMut(&[u8], &[u8]),
) -> Result<usize, SoftError> {
    let h = buf.vnet_hdr();
    let frame = buf.frame();
    if !h.is_gso() {
        if h.flags & VirtioNetHdr::F_NEEDS_CSUM == 0 {
            out(frame, &[]);
            return Ok(1);
        }
        // the checksum covers start..; the field is rewritten in a copy of the bytes
        // up to it, the rest goes as it is
        let (start, at) = (
            usize::from(h.csum_start),
            usize::from(h.csum_start) + usize::from(h.csum_offset),
        );
        if at + 2 > frame.len() || start > at {
            return Err(SoftError::Malformed);
        }
        let c = !fold(sum(&frame[start..], 0));
        // UDP sends an all-zero checksum as 0xffff; TCP's 0 is as good as 0xffff
        let c = if c == 0 { 0xffff } else { c };
        scratch.clear();
        scratch.extend_from_slice(&frame[..at]);
        scratch.extend_from_slice(&c.to_be_bytes());
        out(scratch, &frame[at + 2..]);
        return Ok(1);
    }
    match h.gso_type & !VirtioNetHdr::GSO_ECN {
        VirtioNetHdr::GSO_TCPV4 | VirtioNetHdr::GSO_TCPV6 | VirtioNetHdr::GSO_UDP_L4 => {
            segment(frame, &h, scratch, out)
        }
        t => Err(SoftError::UnsupportedGso(t)),
    }
}

/// Cuts a TCP or UDP (USO) super-frame into frames of `gso_size` payload bytes each,
/// fixing lengths, IPv4 ids and checksums, TCP sequence numbers and flags, and the L4
/// checksums. Each frame goes out as its rewritten headers (in `seg`) and its payload.
fn segment(
    frame: &[u8],
    h: &VirtioNetHdr,
    seg: &mut Vec<u8>,
    mut out: impl FnMut(&[u8], &[u8]),
) -> Result<usize, SoftError> {
    let l3 = match frame.get(12..14) {
        Some([0x81, 0x00]) => 18,
        Some(_) => 14,
        None => return Err(SoftError::Malformed),
    };
    let l4 = usize::from(h.csum_start);
    let v4 = match frame.get(l3).map(|b| b >> 4) {
        Some(4) => true,
        Some(6) => false,
        _ => return Err(SoftError::Malformed),
    };
    if l4 <= l3 || l4 + 8 > frame.len() {
        return Err(SoftError::Malformed);
    }
    let udp = h.gso_type & !VirtioNetHdr::GSO_ECN == VirtioNetHdr::GSO_UDP_L4;
    let l4_len = if udp {
        8
    } else {
        usize::from(frame.get(l4 + 12).ok_or(SoftError::Malformed)? >> 4) * 4
    };
    let hdrs = l4 + l4_len;
    let mss = usize::from(h.gso_size);
    if mss == 0 || hdrs > frame.len() || l4_len < 8 {
        return Err(SoftError::Malformed);
    }
    let payload = &frame[hdrs..];
    let n = payload.len().div_ceil(mss).max(1);
    let seq0 = if udp {
        0
    } else {
        u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]])
    };
    let id0 = if v4 {
        u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]])
    } else {
        0
    };
    let flags0 = if udp { 0 } else { frame[l4 + 13] };
    // an empty payload still makes one frame
    let chunks = payload
        .chunks(mss)
        .chain((n == 1 && payload.is_empty()).then_some(&[][..]));
    for (i, chunk) in chunks.enumerate() {
        seg.clear();
        seg.extend_from_slice(&frame[..hdrs]);
        let l4_total = l4_len + chunk.len();
        if v4 {
            let ihl = l4 - l3;
            let total = u16::try_from(ihl + l4_total).map_err(|_| SoftError::Malformed)?;
            seg[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            let id = id0.wrapping_add(u16::try_from(i).unwrap_or(0));
            seg[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
            seg[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let c = !fold(sum(&seg[l3..l4], 0));
            seg[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        } else {
            // payload length: everything after the fixed 40-byte header
            let plen = u16::try_from(l4 - l3 - 40 + l4_total).map_err(|_| SoftError::Malformed)?;
            seg[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        }
        let l4_len16 = u16::try_from(l4_total).map_err(|_| SoftError::Malformed)?;
        if udp {
            seg[l4 + 4..l4 + 6].copy_from_slice(&l4_len16.to_be_bytes());
        } else {
            let seq = seq0.wrapping_add(u32::try_from(i * mss).unwrap_or(0));
            seg[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            let last = i + 1 == n;
            // FIN and PSH only on the last segment; CWR only on the first
            let mut f = flags0;
            if !last {
                f &= !(0x01 | 0x08);
            }
            if i > 0 {
                f &= !0x80;
            }
            seg[l4 + 13] = f;
        }
        // the L4 checksum: pseudo-header + headers + payload (the L4 header's length
        // is even, so the payload's sum continues the headers' one)
        let mut acc = if v4 {
            sum(&seg[l3 + 12..l3 + 20], 0)
        } else {
            sum(&seg[l3 + 8..l3 + 40], 0)
        };
        acc += u32::from(if udp { 17u16 } else { 6 }) + u32::from(l4_len16);
        let co = l4 + if udp { 6 } else { 16 };
        seg[co..co + 2].copy_from_slice(&[0, 0]);
        let mut c = !fold(sum(chunk, sum(&seg[l4..], acc)));
        if udp && c == 0 {
            c = 0xffff;
        }
        seg[co..co + 2].copy_from_slice(&c.to_be_bytes());
        out(seg, chunk);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    /// A TCP/IPv4 super-frame as a guest kernel with TSO sends it: 10 000 bytes of
    /// payload, partial checksum, gso_size 1448.
    fn tso_frame(payload: &[u8], fin: bool) -> FrameBuf {
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1234, 80, 1000, 64000)
            .psh();
        if fin {
            b = b.fin();
        }
        let mut f = Vec::new();
        b.write(&mut f, payload).unwrap();
        // turn the computed checksum into the partial one the kernel leaves: the
        // pseudo-header sum
        let l4 = 34;
        let len = u16::try_from(f.len() - l4).unwrap();
        let acc = sum(&f[26..34], 0) + 6 + u32::from(len);
        f[l4 + 16..l4 + 18].copy_from_slice(&fold(acc).to_be_bytes());
        let mut buf = FrameBuf::from_frame(&f);
        buf.set_vnet_hdr(&VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: VirtioNetHdr::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 0,
        });
        buf
    }

    #[test]
    fn a_tso_frame_becomes_valid_wire_segments() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let buf = tso_frame(&payload, true);
        let mut segs = Vec::new();
        let n = for_each_plain(&buf, &mut Vec::new(), |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(n, 7);
        let mut got = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(s.len() <= 14 + 1500);
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
                panic!()
            };
            let iph = ip.header().to_header();
            assert_eq!(
                iph.calc_header_checksum(),
                iph.header_checksum,
                "IP checksum"
            );
            let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
                panic!()
            };
            let want = tcp
                .to_header()
                .calc_checksum_ipv4(&iph, tcp.payload())
                .unwrap();
            assert_eq!(tcp.checksum(), want, "TCP checksum of segment {i}");
            assert_eq!(
                tcp.sequence_number(),
                1000 + u32::try_from(i * 1448).unwrap()
            );
            let last = i + 1 == segs.len();
            assert_eq!(tcp.fin(), last);
            assert_eq!(tcp.psh(), last);
            got.extend_from_slice(tcp.payload());
        }
        assert_eq!(got, payload);
    }

    /// Pseudo-header sum of a super-frame, as the kernel leaves it in a partial
    /// checksum field (`len`: the L4 length of the whole super-frame).
    fn partial(f: &mut [u8], src_dst: std::ops::Range<usize>, proto: u8, l4: usize, at: usize) {
        let len = u32::try_from(f.len() - l4).unwrap();
        let acc = sum(&f[src_dst], 0) + u32::from(proto) + len;
        f[at..at + 2].copy_from_slice(&fold(acc).to_be_bytes());
    }

    #[test]
    fn a_tcp_ipv6_super_frame_becomes_valid_segments() {
        let payload: Vec<u8> = (0..9_000u32).map(|i| (i % 253) as u8).collect();
        let src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(src, dst, 64)
            .tcp(4000, 443, 77, 64000)
            .ack(5)
            .psh();
        let mut f = Vec::new();
        b.write(&mut f, &payload).unwrap();
        let l4 = 14 + 40;
        partial(&mut f, 22..54, 6, l4, l4 + 16);
        let mut buf = FrameBuf::from_frame(&f);
        buf.set_vnet_hdr(&VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: VirtioNetHdr::GSO_TCPV6,
            hdr_len: 74,
            gso_size: 1428,
            csum_start: 54,
            csum_offset: 16,
            num_buffers: 0,
        });
        let mut got = Vec::new();
        let mut n = 0;
        for_each_plain(&buf, &mut Vec::new(), |s| {
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
                panic!()
            };
            let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
                panic!()
            };
            assert_eq!(
                usize::from(ip.header().payload_length()),
                20 + tcp.payload().len()
            );
            let want = tcp
                .to_header()
                .calc_checksum_ipv6(&ip.header().to_header(), tcp.payload())
                .unwrap();
            assert_eq!(tcp.checksum(), want, "segment {n}");
            assert_eq!(tcp.sequence_number(), 77 + u32::try_from(n * 1428).unwrap());
            got.extend_from_slice(tcp.payload());
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 7);
        assert_eq!(got, payload);
    }

    #[test]
    fn a_uso_frame_becomes_datagrams_with_their_own_lengths_and_checksums() {
        let payload: Vec<u8> = (0..4_000u32).map(|i| (i % 7) as u8).collect();
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5000, 5001);
        let mut f = Vec::new();
        b.write(&mut f, &payload).unwrap();
        partial(&mut f, 26..34, 17, 34, 34 + 6);
        let mut buf = FrameBuf::from_frame(&f);
        buf.set_vnet_hdr(&VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: VirtioNetHdr::GSO_UDP_L4,
            hdr_len: 42,
            gso_size: 1000,
            csum_start: 34,
            csum_offset: 6,
            num_buffers: 0,
        });
        let mut lens = Vec::new();
        for_each_plain(&buf, &mut Vec::new(), |s| {
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
                panic!()
            };
            let iph = ip.header().to_header();
            assert_eq!(iph.calc_header_checksum(), iph.header_checksum);
            let Some(TransportSlice::Udp(udp)) = &p.transport else {
                panic!()
            };
            assert_eq!(usize::from(udp.length()), 8 + udp.payload().len());
            let want = udp
                .to_header()
                .calc_checksum_ipv4(&iph, udp.payload())
                .unwrap();
            assert_eq!(udp.checksum(), want);
            lens.push(udp.payload().len());
        })
        .unwrap();
        assert_eq!(lens, [1000, 1000, 1000, 1000]);
    }

    #[test]
    fn a_partial_checksum_is_completed_and_plain_frames_pass() {
        let buf = tso_frame(b"small", false);
        let mut h = buf.vnet_hdr();
        h.gso_type = VirtioNetHdr::GSO_NONE;
        let mut b2 = buf.clone();
        b2.set_vnet_hdr(&h);
        let mut out = Vec::new();
        assert_eq!(
            for_each_plain(&b2, &mut Vec::new(), |s| out = s.to_vec()),
            Ok(1)
        );
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
            panic!()
        };
        let want = tcp
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), tcp.payload())
            .unwrap();
        assert_eq!(tcp.checksum(), want);
        let plain = FrameBuf::from_frame(b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02\x88\xb5abc");
        let mut seen = 0;
        assert_eq!(
            for_each_plain(&plain, &mut Vec::new(), |_| seen += 1),
            Ok(1)
        );
        assert_eq!(seen, 1);
    }
}
