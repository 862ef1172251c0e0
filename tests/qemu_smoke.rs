//! The QEMU guest helper on its own: the cached Debian-kernel + busybox image boots
//! under TCG, runs its `/test.sh`, powers off, and loads virtio-net. No guest here has a
//! network that leaves the machine: the first has no NIC at all, the second's NIC is a
//! unix datagram socket pair inside a temporary directory.
//!
//! They build the image on first use (`apt-get download`, so root and the Debian mirrors)
//! and are skipped, with a message, when not run as root.

#[path = "common/qemu.rs"]
mod qemu;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use qemu::{guest_image, netdev_dgram, virtio_net, QemuGuest, MARK_START};
use vnet_testkit::TempDir;

/// Generous: a boot takes about 2 s under TCG, but the machine may be busy compiling.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

fn is_root() -> bool {
    let uid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    if uid != 0 {
        eprintln!(
            "skipped: building the QEMU guest image needs root (apt-get download); uid {uid}"
        );
    }
    uid == 0
}

#[test]
fn guest_boots_runs_its_script_and_powers_off() {
    if !is_root() {
        return;
    }
    let image = guest_image();
    let dir = TempDir::new("vnet-qemu");
    let initrd = image.with_script(
        dir.path(),
        "echo hello from the guest\necho \"kernel $(uname -r)\"\nip link\n",
    );
    let guest = QemuGuest::boot(&image, &initrd, &[], &dir.path().join("console.log"));
    let rc = guest.wait_test_done(BOOT_TIMEOUT);
    let took = guest.elapsed();
    let log = guest.log_text();
    eprintln!("guest: QEMU start to `test done`: {took:.2?}\n{log}");
    assert_eq!(
        rc,
        Some(0),
        "the guest script did not finish with 0:\n{log}"
    );
    assert!(log.contains(MARK_START), "{log}");
    assert!(log.contains("hello from the guest"), "{log}");
    assert!(log.contains("kernel 6."), "no uname -r:\n{log}");
    assert!(log.contains("lo: <LOOPBACK,UP"), "lo is not up:\n{log}");
    assert!(!log.contains("eth0"), "a NIC without -netdev:\n{log}");
    let status = guest.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "QEMU did not exit cleanly after poweroff ({status:?}):\n{log}"
    );
}

#[test]
fn virtio_net_appears_as_eth0_and_sends_frames() {
    if !is_root() {
        return;
    }
    let image = guest_image();
    let dir = TempDir::new("vnet-qemu");
    let (qemu_end, our_end) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    // our end of the dgram pair: QEMU sends each guest frame here as one datagram
    let sock = UnixDatagram::bind(&our_end).expect("bind the host end");
    sock.set_read_timeout(Some(BOOT_TIMEOUT))
        .expect("read timeout");
    let mac = "52:54:00:12:34:56";
    let net = virtio_net(&netdev_dgram("n0", &qemu_end, &our_end), mac);
    // up, an address, and a ping whose ARP request is a broadcast frame out of eth0
    let script = "ip link show eth0 || exit 1\n\
                  cat /sys/class/net/eth0/address\n\
                  ip link set eth0 up\n\
                  ip addr add 10.99.0.2/24 dev eth0\n\
                  ping -c 1 -W 1 10.99.0.1\n\
                  exit 0\n";
    let initrd = image.with_script(dir.path(), script);
    let guest = QemuGuest::boot(&image, &initrd, &net, &dir.path().join("console.log"));
    let mut frame = [0u8; 2048];
    let got = sock.recv(&mut frame);
    let rc = guest.wait_test_done(BOOT_TIMEOUT);
    let log = guest.log_text();
    eprintln!(
        "guest: QEMU start to `test done`: {:.2?}\n{log}",
        guest.elapsed()
    );
    assert_eq!(rc, Some(0), "no eth0 in the guest:\n{log}");
    assert!(log.contains("eth0:"), "{log}");
    assert!(log.contains(mac), "{log}");
    assert!(!log.contains("insmod"), "a module failed to load:\n{log}");
    let n = got.unwrap_or_else(|e| panic!("no frame from the guest: {e}\n{log}"));
    let frame = &frame[..n];
    assert!(n >= 42, "short frame: {frame:02x?}");
    assert_eq!(&frame[0..6], &[0xff; 6], "not a broadcast: {frame:02x?}");
    assert_eq!(&frame[6..12], &[0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    assert_eq!(&frame[12..14], &[0x08, 0x06], "not ARP: {frame:02x?}");
}

#[test]
fn virtio_net_args_name_the_netdev() {
    let a = virtio_net(&qemu::netdev_tap("n1", "vnet0"), "52:54:00:00:00:01");
    assert_eq!(a[0], "-netdev");
    assert_eq!(a[1], "tap,id=n1,ifname=vnet0,script=no,downscript=no");
    assert_eq!(
        a[3],
        "virtio-net-pci,netdev=n1,mac=52:54:00:00:00:01,romfile="
    );
}
