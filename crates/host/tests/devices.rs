//! The port table and the QEMU sockets over real unix sockets (no root needed): what a
//! driver's loop does with a stream guest and a dgram guest.

use std::io::{Read as _, Write as _};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

use mio::Poll;
use vnet_host::qemu::{Datagram, QemuSockets};
use vnet_host::{Device, Devices, Read};
use vnet_ports::{Drain, FrameBuf, StreamPort};
use vnet_switch::PortId;

/// An Ethernet frame from 52:54:00:00:00:`tag` to the broadcast address.
fn frame(tag: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, tag]);
    f.extend_from_slice(&[0x08, 0x06]);
    f.resize(60, tag);
    f
}

#[test]
fn a_stream_guest_is_read_written_counted_and_gone_when_it_leaves() {
    let poll = Poll::new().expect("poll");
    let (ours, mut guest) = UnixStream::pair().expect("socketpair");
    guest
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = StreamPort::new(ours).expect("stream port");
    let mut devs = Devices::new();
    let id = PortId(3);
    let dev = Device::new("vm1".into(), Box::new(port), false, None);
    devs.insert(poll.registry(), id, dev).expect("insert");
    assert_eq!(devs.by_name("vm1"), Some(id));
    assert_eq!(devs.name(PortId(9)), PortId(9).to_string());
    assert!(
        devs.has_ready(),
        "a new port is read at once: frames may wait already"
    );

    // QEMU's stream framing: a 4-byte big-endian length, then the frame
    let f = frame(1);
    let len = u32::try_from(f.len()).expect("len").to_be_bytes();
    guest.write_all(&len).expect("write");
    guest.write_all(&f).expect("write");
    let mut buf = FrameBuf::new();
    let mut drain = Drain::new(64);
    assert_eq!(devs.pop_ready(), Some(id));
    assert!(matches!(devs.read(id, &mut drain, &mut buf), Read::Frame));
    assert_eq!(buf.frame(), &f[..]);
    assert!(matches!(
        devs.read(id, &mut drain, &mut buf),
        Read::Done(true)
    ));
    devs.finish(id, true);
    assert!(!devs.has_ready());

    let back = frame(2);
    buf.set_frame(&back);
    assert!(devs.transmit(id, &mut buf, false));
    let mut got = vec![0; 4 + back.len()];
    guest
        .read_exact(&mut got)
        .expect("the guest gets the frame");
    assert_eq!(&got[4..], &back[..]);
    let io = devs.get(id).expect("device").io();
    assert!(io.reads >= 1, "{io:?}");
    assert_eq!(io.writes, 1, "{io:?}");

    drop(guest);
    let mut drain = Drain::new(64);
    assert!(matches!(devs.read(id, &mut drain, &mut buf), Read::Gone(_)));
    let d = devs.remove(poll.registry(), id).expect("removed");
    assert_eq!(d.name, "vm1");
    assert!(devs.is_empty());
}

#[test]
fn a_dgram_guest_gets_a_port_on_its_first_frame_and_keeps_it() {
    let dir = std::env::temp_dir().join(format!("vnet-qemu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let poll = Poll::new().expect("poll");
    let (stream, dgram) = (dir.join("n.stream"), dir.join("n.dgram"));
    let vhost = dir.join("n.vhost-user");
    let mut q = QemuSockets::open(&stream, &dgram, &vhost, poll.registry()).expect("open");
    let guest = UnixDatagram::bind(dir.join("guest")).expect("bind");
    let f = frame(7);
    guest.send_to(&f, &dgram).expect("send");
    guest.send_to(&[0; 10], &dgram).expect("send a runt");
    guest.send_to(&f, &dgram).expect("send");
    let Some(Datagram::New {
        name, path, len, ..
    }) = q.recv()
    else {
        panic!("a new peer's first frame makes a port");
    };
    assert_eq!((name.as_str(), len), ("dgram-1", f.len()));
    assert_eq!(q.frame(len), &f[..]);
    q.add_peer(path, PortId(5));
    // the runt is skipped
    assert!(matches!(q.recv(), Some(Datagram::Known(PortId(5), 60))));
    assert!(q.recv().is_none());

    let _c = UnixStream::connect(&stream).expect("connect");
    let (name, _port) = q.accept().expect("a stream connection makes a port");
    assert_eq!(name, "stream-2");
    assert!(q.accept().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
