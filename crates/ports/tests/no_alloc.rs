//! Sending to QEMU socket ports allocates nothing per frame in steady state, also when
//! a TCP super-frame is segmented in software and when frames have to wait for a peer
//! that reads late: a counting global allocator watches a thousand rounds after a
//! warm-up.

use std::alloc::System;
use std::io::{ErrorKind, Read};
use std::os::unix::net::{UnixDatagram, UnixStream};

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use vnet_ports::{DgramPort, FrameBuf, StreamPort};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A 28-byte frame and a TCP/IPv4 super-frame of 9 000 payload bytes (7 segments at a
/// 1500-byte MTU), marked as a guest with TSO sends it.
fn frames() -> (FrameBuf, FrameBuf) {
    let small =
        FrameBuf::from_frame(&[[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0xb5], [7; 14]].concat());
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(1234, 80, 1000, 64000)
        .write(&mut f, &[5u8; 9000])
        .unwrap();
    let mut tso = FrameBuf::from_frame(&f);
    assert!(tso.offload_tcp(1500));
    assert!(tso.vnet_hdr().is_gso());
    (small, tso)
}

#[test]
fn dgram_and_stream_sends_allocate_nothing_per_frame() {
    let (small, tso) = frames();
    let dir = std::env::temp_dir().join(format!("vnet-noalloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("peer.sock");
    let _ = std::fs::remove_file(&path);
    let peer = UnixDatagram::bind(&path).unwrap();
    peer.set_nonblocking(true).unwrap();
    let mut dgram = DgramPort::new(path.clone()).unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let mut stream = StreamPort::new(a).unwrap();
    let mut rx = vec![0u8; 70_000];
    let mut round = |late: bool| {
        // `late`: the peer reads only after both frames went, so segments have to wait
        for f in [&small, &tso] {
            dgram.send(f).unwrap();
            stream.send(f).unwrap();
            if !late {
                while peer.recv(&mut rx).is_ok() {}
            }
        }
        loop {
            let mut got = 0;
            while peer.recv(&mut rx).is_ok() {
                got += 1;
            }
            dgram.flush().unwrap();
            if got == 0 && dgram.queued() == 0 {
                break;
            }
        }
        loop {
            match b.read(&mut rx) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    stream.flush().unwrap();
                    match b.read(&mut rx) {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    for i in 0..100 {
        round(i % 2 == 0);
    }
    let region = Region::new(GLOBAL);
    for i in 0..1000 {
        round(i % 2 == 0);
    }
    let s = region.change();
    assert_eq!(
        (s.allocations, s.reallocations),
        (0, 0),
        "allocations in 1000 rounds: {s:?}"
    );
    assert_eq!(dgram.tx_dropped(), 0);
    let st = dgram.stats();
    assert!(st.segments >= 1100 * 7, "{st:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
