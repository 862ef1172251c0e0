//! QEMU's socket transports at the protocol level: `<run-dir>/<net>.stream` (4-byte
//! big-endian length + frame) and `<run-dir>/<net>.dgram` (a frame per datagram),
//! driven by a small Python peer that writes what QEMU writes — and what QEMU never
//! writes (bad lengths, half frames, floods), which a real QEMU cannot be made to send.
//! Booted QEMU guests on these sockets are in `qemu_e2e.rs`.

mod common;

use std::time::Duration;

use common::Net;
use vnet_testkit::wait_for;

/// Python: an ARP request for the gateway 192.168.122.1 from `mac`.
const ARP_FN: &str = "
import socket,struct,os,sys,time
def arp(mac):
    m=bytes.fromhex(mac.replace(':',''))
    return b'\\xff'*6+m+b'\\x08\\x06'+struct.pack('>HHBBH',1,0x0800,6,4,1)+m+bytes([192,168,122,77])+b'\\x00'*6+bytes([192,168,122,1])
def is_reply(f,mac):
    m=bytes.fromhex(mac.replace(':',''))
    return len(f)>=42 and f[0:6]==m and f[12:14]==b'\\x08\\x06' and f[20:22]==b'\\x00\\x02'
";

fn py(net: &Net, code: &str) -> (bool, String) {
    let out = net
        .host
        .run("python3", &["-c", &format!("{ARP_FN}\n{code}")]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn kinds(net: &Net) -> Vec<String> {
    net.port_list()
        .iter()
        .map(|p| p["kind"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn a_stream_peer_is_a_port_and_bad_peers_lose_only_their_connection() {
    let mut net = Net::start();
    net.add_guest();
    let g2 = net.add_guest().ip.clone();
    let stream = net.dir.path().join(format!("{}.stream", net.name));
    assert!(stream.exists());
    // a well-behaved peer: ARP for the gateway, answered over the stream
    let (ok, out) = py(
        &net,
        &format!(
            "s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM); s.connect('{}')
f=arp('52:54:00:aa:00:01'); s.sendall(struct.pack('>I',len(f))+f); s.settimeout(3)
buf=b''
while True:
    buf+=s.recv(65536)
    while len(buf)>=4 and len(buf)>=4+struct.unpack('>I',buf[:4])[0]:
        n=struct.unpack('>I',buf[:4])[0]; fr=buf[4:4+n]; buf=buf[4+n:]
        if is_reply(fr,'52:54:00:aa:00:01'):
            print('arp reply'); sys.exit(0)",
            stream.display()
        ),
    );
    assert!(ok && out.contains("arp reply"), "{out}\n{}", net.log());
    // it closed: its port is gone
    assert!(
        wait_for(Duration::from_secs(3), || !kinds(&net)
            .contains(&"stream".to_owned())),
        "{:?}",
        kinds(&net)
    );

    // a length beyond the bound: the connection is closed, with a log line
    let (ok, out) = py(
        &net,
        &format!(
            "s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM); s.connect('{}')
s.sendall(struct.pack('>I',1<<24)+b'x'*100); s.settimeout(3)
print('closed' if s.recv(10)==b'' else 'open')",
            stream.display()
        ),
    );
    assert!(ok && out.contains("closed"), "{out}");
    assert!(net.log().contains("outside 14..="), "{}", net.log());

    // half a frame, then gone; and a flood of frames from another peer
    let (ok, out) = py(
        &net,
        &format!(
            "s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM); s.connect('{p}')
s.sendall(struct.pack('>I',100)+b'y'*30); s.close()
t=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM); t.connect('{p}')
f=arp('52:54:00:aa:00:02'); rec=struct.pack('>I',len(f))+f
t.sendall(rec*50000); t.close(); print('sent')",
            p = stream.display()
        ),
    );
    assert!(ok, "{out}");
    // the switch stays up, the TAP guest keeps its network
    assert!(net.daemon_mut().is_running());
    assert!(net.guests[0].ping(&g2));
    assert!(
        wait_for(Duration::from_secs(5), || !kinds(&net)
            .contains(&"stream".to_owned())),
        "{:?}",
        kinds(&net)
    );
}

#[test]
fn a_dgram_peer_is_a_port_until_its_socket_goes() {
    let mut net = Net::start();
    net.add_guest();
    let dgram = net.dir.path().join(format!("{}.dgram", net.name));
    let me = net.dir.path().join("peer.sock");
    // the peer stays up (its socket bound) until the test has looked at its port
    let code = format!(
        "{ARP_FN}\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.bind('{me}')
s.sendto(arp('52:54:00:bb:00:01'),'{d}'); s.settimeout(3)
while True:
    f=s.recv(65536)
    if is_reply(f,'52:54:00:bb:00:01'):
        print('arp reply', file=sys.stderr, flush=True); break
time.sleep(30)",
        me = me.display(),
        d = dgram.display()
    );
    let mut cmd = net.host.cmd("python3", &["-c", &code]);
    cmd.stderr(std::process::Stdio::piped());
    let mut peer = vnet_testkit::ChildGuard::spawn(cmd);
    assert!(peer.wait_stderr("arp reply"), "no ARP reply: {}", net.log());
    let port = net
        .port_list()
        .into_iter()
        .find(|p| p["kind"] == "dgram")
        .expect("a dgram port");
    assert_eq!(port["ifname"], me.display().to_string());
    // the peer's socket goes (the process ends, the file is removed): the next frame
    // for it (a broadcast from the guest) finds it gone and the port goes
    let _ = peer.stop(Duration::from_secs(2));
    let _ = std::fs::remove_file(&me);
    assert!(
        wait_for(Duration::from_secs(5), || {
            // an ARP request for an address nobody has: broadcast, flooded to the peer
            let _ = net.guests[0].ping("10.77.0.99");
            !kinds(&net).contains(&"dgram".to_owned())
        }),
        "{:?}\n{}",
        kinds(&net),
        net.log()
    );
    assert!(net.daemon_mut().is_running());
}
