//! Real Linux guests under QEMU for the end-to-end tests: a Debian kernel and a busybox
//! initramfs, built once from Debian packages and cached between runs, and a QEMU process
//! behind an RAII guard.
//!
//! The image ([`guest_image`]):
//! - the kernel of the `linux-image-<ver>-amd64` package that `linux-image-amd64` depends
//!   on, fetched with `apt-get download` and unpacked with `dpkg-deb -x`. Its `vmlinuz` is
//!   a bzImage; the xz payload inside it is the ELF `vmlinux`, which QEMU boots through
//!   PVH (straight into the kernel's 32-bit entry point, no real-mode setup, no
//!   decompression): about 1.5–2 s from QEMU start to a shell script's end under TCG,
//!   against 4–8 s for the bzImage. Should the extraction fail, the bzImage is used and a
//!   note printed.
//! - an initramfs (newc cpio, written here) holding busybox from `busybox-static`, the
//!   modules virtio-net over PCI needs ([`GUEST_MODULES`] and what their `depends=`
//!   name, decompressed if the package ships them compressed), a default `udhcpc`
//!   script, and `/init`: it mounts proc, sys and devtmpfs, installs the busybox applets,
//!   loads the modules in dependency order, brings `lo` up, runs `/test.sh` if present and
//!   powers off. It prints [`MARK_START`] and `VNET-GUEST: test done rc=N` on the console.
//!
//! The cache is `<repo>/target/vnet-guest/guest-<recipe hash>/` (`VNET_GUEST_CACHE`
//! overrides `<repo>/target/vnet-guest`). It is built under a lock file, into a temporary
//! directory renamed into place at the end, so parallel tests build it once and a crash
//! leaves no half-built image. Changing the recipe (init script, module list) changes the
//! hash and so builds a new image; delete the directory to pick up a newer kernel.
//!
//! A test adds its own `/test.sh` with [`GuestImage::with_script`] (a second cpio archive
//! appended to the base one: the kernel unpacks concatenated archives) and boots it with
//! [`QemuGuest::boot`], giving QEMU the network devices it wants ([`virtio_net`]).
//!
//! QEMU runs with `-nodefaults`: no NIC but the ones a test asks for (never the default
//! `user` network, so nothing leaves the machine unless a test says so). The accelerator
//! is TCG: the `/dev/kvm` of these machines is a nested software KVM under which stock
//! kernels do not boot, and telling a working KVM from it would take a boot, so there is
//! no detection; set `VNET_GUEST_ACCEL=kvm` on a machine with a real one.

#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use vnet_testkit::unique;

/// The modules `/init` loads (with their dependencies, found in each module's
/// `depends=`): the virtio PCI transport and the virtio-net driver. Modules the kernel has
/// built in (`modules.builtin`) are skipped.
pub const GUEST_MODULES: &[&str] = &["virtio_pci", "virtio_net"];

/// Printed by `/init` once proc, sys and dev are mounted.
pub const MARK_START: &str = "VNET-GUEST: init start";
/// Printed by `/init` once the modules are loaded and `lo` is up, before `/test.sh`.
pub const MARK_READY: &str = "VNET-GUEST: ready";
/// Printed by `/init` after `/test.sh`, followed by the script's exit status: `rc=N`.
pub const MARK_DONE: &str = "VNET-GUEST: test done rc=";

/// The Debian package busybox comes from (statically linked: the initramfs has no libc).
const BUSYBOX_PKG: &str = "busybox-static";

/// Bump when the build changes in a way the hashed inputs below do not show.
const RECIPE_VERSION: &str = "2";

/// The guest's `/init`: a busybox shell script. `/lib/modules/order` lists the modules to
/// load, dependencies first.
const INIT: &str = r#"#!/bin/busybox sh
# vnet test guest: mount, load the NIC modules, run /test.sh, power off.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s /bin
export PATH=/bin HOME=/root
echo "VNET-GUEST: init start"
while read -r m; do
  insmod "/lib/modules/$m.ko" || echo "VNET-GUEST: insmod $m failed"
done < /lib/modules/order
hostname vnet-guest
ip link set lo up
echo "VNET-GUEST: ready"
rc=0
if [ -f /test.sh ]; then
  sh /test.sh
  rc=$?
fi
echo "VNET-GUEST: test done rc=$rc"
poweroff -f
"#;

/// `udhcpc`'s default script, `/etc/udhcpc/default.script` (where Debian's busybox looks):
/// `udhcpc -i eth0` configures the lease with it and prints `VNET-GUEST: lease …`.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# udhcpc event script: apply the lease to $interface.
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "VNET-GUEST: lease $ip/${mask:-24} router=$router dns=$dns"
    ;;
esac
exit 0
"#;

/// QEMU's kernel command line. `quiet` keeps the console to what `/init` prints (and
/// errors); the rest skips checks that cost time under TCG (about 0.4 s of 2).
const CMDLINE: &str = "console=ttyS0 panic=-1 quiet mitigations=off no_timer_check \
                       tsc=reliable noreplace-smp cryptomgr.notests 8250.nr_uarts=1";

/// A bootable guest: the kernel QEMU is given with `-kernel` (the ELF `vmlinux`, or the
/// bzImage if extraction failed) and the base initramfs.
#[derive(Debug, Clone)]
pub struct GuestImage {
    /// The kernel: `vmlinux` (PVH boot) or `vmlinuz` (bzImage, the fallback).
    pub kernel: PathBuf,
    /// The base initramfs (newc cpio): busybox, the modules, `/init`.
    pub initrd: PathBuf,
}

/// The guest image, built on first use (needs the Debian mirrors, `apt-get`, `dpkg-deb`
/// and `xz`) and then taken from the cache. Panics with the failing step if it cannot be
/// built.
pub fn guest_image() -> GuestImage {
    static IMAGE: OnceLock<GuestImage> = OnceLock::new();
    IMAGE.get_or_init(load_or_build).clone()
}

impl GuestImage {
    /// Writes an initramfs that is the base one plus `/test.sh` (mode 0755, run by `/init`
    /// with `sh` after the modules are loaded) into `dir`; returns its path (a new file for
    /// every call).
    pub fn with_script(&self, dir: &Path, script: &str) -> PathBuf {
        let mut bytes = read(&self.initrd);
        let mut overlay = Cpio::default();
        overlay.file("test.sh", 0o755, script.as_bytes());
        bytes.extend_from_slice(&overlay.finish());
        let path = dir.join(format!("initrd-{}.img", unique()));
        write(&path, &bytes);
        path
    }
}

/// The QEMU arguments of a virtio-net PCI NIC on the backend `netdev`, a full `-netdev`
/// value with an `id=` (see [`netdev_stream`], [`netdev_dgram`], [`netdev_tap`]), with MAC
/// `mac`. No option ROM (iPXE): the guest boots its kernel directly.
pub fn virtio_net(netdev: &str, mac: &str) -> Vec<String> {
    let id = netdev
        .split(',')
        .find_map(|kv| kv.strip_prefix("id="))
        .unwrap_or_else(|| panic!("netdev {netdev:?} has no id="));
    vec![
        "-netdev".to_owned(),
        netdev.to_owned(),
        "-device".to_owned(),
        format!("virtio-net-pci,netdev={id},mac={mac},romfile="),
    ]
}

/// A `-netdev` value: a QEMU `stream` client connecting to the unix socket `path`
/// (frames with a 4-byte big-endian length prefix).
pub fn netdev_stream(id: &str, path: &Path) -> String {
    format!(
        "stream,id={id},server=off,addr.type=unix,addr.path={}",
        path.display()
    )
}

/// A `-netdev` value: QEMU `dgram` on the unix datagram socket `local` (QEMU binds it),
/// sending to `remote` (one frame per datagram).
pub fn netdev_dgram(id: &str, local: &Path, remote: &Path) -> String {
    format!(
        "dgram,id={id},local.type=unix,local.path={},remote.type=unix,remote.path={}",
        local.display(),
        remote.display()
    )
}

/// The QEMU arguments of a virtio-net PCI NIC with MAC `mac` on a vhost-user backend
/// that listens on `socket` (vnet's `port-add NET vhost-user --socket`): the guest's
/// memory in a shared memfd (the backend maps it), a socket chardev, the netdev.
///
/// `vectors=0` (no MSI-X: the guest's driver uses legacy interrupts): Debian 12's QEMU
/// 7.2 under TCG segfaults in `vhost_net_start` (`msix_set_vector_notifiers`) when a
/// guest starts a vhost-user NIC with MSI-X, whatever the backend (DPDK's too; see
/// the peers notes in `../shared/peers.md`).
pub fn vhost_user_nic(socket: &Path, mac: &str) -> Vec<String> {
    [
        "-object",
        "memory-backend-memfd,id=mem,size=256M,share=on",
        "-numa",
        "node,memdev=mem",
        "-chardev",
        &format!("socket,id=vu0,path={}", socket.display()),
        "-netdev",
        "vhost-user,id=n0,chardev=vu0",
        "-device",
        &format!("virtio-net-pci,netdev=n0,mac={mac},romfile=,vectors=0"),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// A `-netdev` value: the existing TAP device `ifname` (QEMU runs no scripts).
pub fn netdev_tap(id: &str, ifname: &str) -> String {
    format!("tap,id={id},ifname={ifname},script=no,downscript=no")
}

/// A QEMU process running a guest; killed (SIGKILL) and reaped when dropped. The serial
/// console and QEMU's own messages go to the log file given to [`QemuGuest::boot`].
#[derive(Debug)]
pub struct QemuGuest {
    /// Behind a lock so the waits can take `&self` (`try_wait` needs `&mut`).
    child: Mutex<Child>,
    pid: u32,
    log: PathBuf,
    started: Instant,
}

impl QemuGuest {
    /// Boots `image.kernel` with `initrd` (the base initramfs or one from
    /// [`GuestImage::with_script`]) on a 1-CPU, 256 MiB q35 machine. `net_args` are extra
    /// QEMU arguments (the NICs: [`virtio_net`]); with none the guest has no network at
    /// all. `log` is truncated and receives the console.
    pub fn boot(image: &GuestImage, initrd: &Path, net_args: &[String], log: &Path) -> Self {
        Self::spawn(None, image, initrd, net_args, log)
    }

    /// [`QemuGuest::boot`], but a reset (the monitor's `system_reset`, the guest's
    /// `reboot`) reboots the guest instead of ending QEMU.
    pub fn boot_rebootable(
        image: &GuestImage,
        initrd: &Path,
        net_args: &[String],
        log: &Path,
    ) -> Self {
        let args: Vec<String> = [String::from("-action"), String::from("reboot=reset")]
            .into_iter()
            .chain(net_args.iter().cloned())
            .collect();
        Self::spawn(None, image, initrd, &args, log)
    }

    /// [`QemuGuest::boot`] with QEMU inside network namespace `netns` (`ip netns exec`,
    /// which execs QEMU: the pid is QEMU's), for `tap` netdevs of that namespace.
    pub fn boot_in_netns(
        netns: &str,
        image: &GuestImage,
        initrd: &Path,
        net_args: &[String],
        log: &Path,
    ) -> Self {
        Self::spawn(Some(netns), image, initrd, net_args, log)
    }

    fn spawn(
        netns: Option<&str>,
        image: &GuestImage,
        initrd: &Path,
        net_args: &[String],
        log: &Path,
    ) -> Self {
        File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let out = || {
            fs::OpenOptions::new()
                .append(true)
                .open(log)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()))
        };
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "qemu-system-x86_64"]);
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        cmd.args(qemu_args(image, initrd, log))
            .args(net_args)
            .stdin(Stdio::null())
            .stdout(out())
            .stderr(out());
        let started = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Self {
            pid: child.id(),
            child: Mutex::new(child),
            log: log.to_owned(),
            started,
        }
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The log file (console and QEMU's messages).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the guest has printed so far (and QEMU's own messages).
    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// How long since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether QEMU still runs.
    pub fn is_running(&self) -> bool {
        self.status().is_none()
    }

    /// QEMU's exit status if it has exited (also after [`QemuGuest::kill`]: `Child`
    /// keeps the status once reaped).
    fn status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        // an error means it cannot be waited for: count it as gone
        child
            .try_wait()
            .unwrap_or_else(|_| Some(ExitStatus::default()))
    }

    /// Waits until the log holds `needle` (true), QEMU exits without printing it, or
    /// `timeout` passes (false).
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_text().contains(needle) {
                return true;
            }
            if !self.is_running() {
                // it may have printed the line just before exiting
                return self.log_text().contains(needle);
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `/init`'s `test done rc=N` line; returns `N`, or `None` if it did not
    /// come within `timeout`.
    pub fn wait_test_done(&self, timeout: Duration) -> Option<i32> {
        if !self.wait_for_line(MARK_DONE, timeout) {
            return None;
        }
        let log = self.log_text();
        let (_, rest) = log.split_once(MARK_DONE)?;
        let rc: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        rc.parse().ok()
    }

    /// Waits up to `timeout` for QEMU to exit by itself (the guest powers off after
    /// `/test.sh`); returns its status, or `None` if it still runs.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills QEMU (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        // a no-op if it has exited and been reaped already
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for QemuGuest {
    fn drop(&mut self) {
        self.kill();
    }
}

/// QEMU's arguments, without the NICs.
fn qemu_args(image: &GuestImage, initrd: &Path, log: &Path) -> Vec<String> {
    let accel = std::env::var("VNET_GUEST_ACCEL").unwrap_or_else(|_| "tcg".to_owned());
    let mut args: Vec<String> = [
        "-M",
        "q35",
        "-accel",
        &accel,
        "-m",
        "256",
        "-smp",
        "1",
        // no default devices: no NIC (so no `user` network), no monitor, no display
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if accel == "kvm" {
        args.extend(["-cpu".to_owned(), "host".to_owned()]);
    }
    // qboot: a minimal firmware that reaches the kernel ~0.2 s sooner than SeaBIOS
    let qboot = Path::new("/usr/share/qemu/qboot.rom");
    if qboot.exists() {
        args.extend(["-bios".to_owned(), qboot.display().to_string()]);
    }
    args.extend([
        "-chardev".to_owned(),
        format!("file,id=console,path={},append=on", log.display()),
        "-serial".to_owned(),
        "chardev:console".to_owned(),
        "-kernel".to_owned(),
        image.kernel.display().to_string(),
        "-initrd".to_owned(),
        initrd.display().to_string(),
        "-append".to_owned(),
        CMDLINE.to_owned(),
    ]);
    args
}

// ---- the image cache ----

/// `VNET_GUEST_CACHE`, or `<repo>/target/vnet-guest`.
fn cache_root() -> PathBuf {
    std::env::var_os("VNET_GUEST_CACHE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vnet-guest"),
        PathBuf::from,
    )
}

/// A stable hash (FNV-1a) of what goes into the image, naming its cache directory.
fn recipe_key() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = [
        RECIPE_VERSION,
        INIT,
        UDHCPC_SCRIPT,
        BUSYBOX_PKG,
        &GUEST_MODULES.join(","),
    ];
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The image in `dir`, if it is complete (the directory appears only by a rename at the
/// end of a build).
fn load(dir: &Path) -> Option<GuestImage> {
    let initrd = dir.join("initrd.img");
    let kernel = ["vmlinux", "vmlinuz"]
        .iter()
        .map(|k| dir.join(k))
        .find(|p| p.is_file())?;
    initrd.is_file().then_some(GuestImage { kernel, initrd })
}

fn load_or_build() -> GuestImage {
    let root = cache_root();
    let dir = root.join(format!("guest-{}", recipe_key()));
    if let Some(image) = load(&dir) {
        return image;
    }
    mkdir(&root);
    let lock_path = root.join(".lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", lock_path.display()));
    // flock: another test binary building the image makes this wait
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    if let Some(image) = load(&dir) {
        return image;
    }
    // under the lock, any build directory is the leftover of a crashed build
    if let Ok(entries) = fs::read_dir(&root) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".build-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let tmp = RemoveOnDrop(root.join(format!(".build-{}", unique())));
    mkdir(&tmp.0);
    let started = Instant::now();
    eprintln!("vnet guest: building the image in {}", dir.display());
    build(&tmp.0);
    fs::rename(&tmp.0, &dir).unwrap_or_else(|e| {
        panic!(
            "cannot rename {} to {}: {e}",
            tmp.0.display(),
            dir.display()
        )
    });
    eprintln!("vnet guest: built in {:.1?}", started.elapsed());
    load(&dir).unwrap_or_else(|| panic!("{} incomplete after the build", dir.display()))
}

/// A directory removed (if it still exists) when dropped: a failed build leaves nothing.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Builds the image into `out`: `vmlinux` (or `vmlinuz`), `initrd.img`, `info.txt`.
fn build(out: &Path) {
    let work = RemoveOnDrop(out.join("work"));
    mkdir(&work.0);
    let kernel_pkg = kernel_package();
    apt_download(&work.0, &[&kernel_pkg, BUSYBOX_PKG]);
    let kroot = work.0.join("kernel");
    let broot = work.0.join("busybox");
    unpack(&find_deb(&work.0, &kernel_pkg), &kroot);
    unpack(&find_deb(&work.0, BUSYBOX_PKG), &broot);

    // the kernel: the ELF inside the bzImage, else the bzImage
    let mods = modules_dir(&kroot);
    let ver = mods
        .file_name()
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    let vmlinuz = kroot.join("boot").join(format!("vmlinuz-{ver}"));
    let bz = read(&vmlinuz);
    let boot = match extract_vmlinux(&bz, &work.0) {
        Ok(elf) => {
            write(&out.join("vmlinux"), &elf);
            "pvh (ELF vmlinux extracted from the bzImage)".to_owned()
        }
        Err(why) => {
            eprintln!("vnet guest: cannot extract vmlinux ({why}): booting the bzImage (slower)");
            write(&out.join("vmlinuz"), &bz);
            format!("bzImage ({why})")
        }
    };

    // the initramfs
    let busybox = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| broot.join(p))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no busybox in {BUSYBOX_PKG}"));
    let busybox = read(&busybox);
    let modules = ModuleIndex::new(&mods).resolve(GUEST_MODULES);
    let mut cpio = Cpio::default();
    for d in "bin dev etc etc/udhcpc lib lib/modules proc root run sys tmp".split(' ') {
        cpio.dir(d);
    }
    cpio.node("dev/console", 0o020_600, 5, 1);
    cpio.file("init", 0o755, INIT.as_bytes());
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.file("etc/udhcpc/default.script", 0o755, UDHCPC_SCRIPT.as_bytes());
    cpio.file("etc/resolv.conf", 0o644, b"");
    let mut order = String::new();
    for (name, bytes) in &modules {
        cpio.file(&format!("lib/modules/{name}.ko"), 0o644, bytes);
        order.push_str(name);
        order.push('\n');
    }
    cpio.file("lib/modules/order", 0o644, order.as_bytes());
    write(&out.join("initrd.img"), &cpio.finish());
    let info = format!(
        "kernel package: {kernel_pkg}\nkernel: {ver}\nboot: {boot}\nbusybox: {BUSYBOX_PKG}\nmodules: {}\n",
        order.trim_end().replace('\n', " ")
    );
    write(&out.join("info.txt"), info.as_bytes());
}

fn mkdir(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Runs `cmd` (apt) and returns its stdout; on failure runs `apt-get update` once and
/// retries (the package lists may be missing or stale).
fn apt(mut make: impl FnMut() -> Command) -> String {
    let out = make()
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", make()));
    if out.status.success() {
        return String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let _ = Command::new("apt-get")
        .args(["update", "-qq"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    let out = make()
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", make()));
    assert!(
        out.status.success(),
        "{:?} failed ({}) even after apt-get update:\n{}{}",
        make(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The versioned kernel package `linux-image-amd64` depends on, e.g.
/// `linux-image-6.1.0-57-amd64`.
fn kernel_package() -> String {
    let out = apt(|| {
        let mut c = Command::new("apt-cache");
        c.args(["depends", "linux-image-amd64"]);
        c
    });
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .unwrap_or_else(|| panic!("apt-cache depends linux-image-amd64 names no kernel:\n{out}"))
        .to_owned()
}

/// `apt-get download PKGS…` into `dir`.
fn apt_download(dir: &Path, pkgs: &[&str]) {
    apt(|| {
        let mut c = Command::new("apt-get");
        c.arg("download").args(pkgs).current_dir(dir);
        c
    });
}

/// The `.deb` of `pkg` that `apt-get download` left in `dir`.
fn find_deb(dir: &Path, pkg: &str) -> PathBuf {
    let prefix = format!("{pkg}_");
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&prefix) && n.ends_with(".deb")
            })
        })
        .unwrap_or_else(|| panic!("apt-get download left no {pkg}_*.deb in {}", dir.display()))
}

/// `dpkg-deb -x DEB DIR`.
fn unpack(deb: &Path, dir: &Path) {
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run dpkg-deb: {e}"));
    assert!(
        out.status.success(),
        "dpkg-deb -x {} failed: {}",
        deb.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `lib/modules/<ver>` (or `usr/lib/modules/<ver>`) of the unpacked kernel package.
fn modules_dir(root: &Path) -> PathBuf {
    ["lib/modules", "usr/lib/modules"]
        .iter()
        .filter_map(|d| fs::read_dir(root.join(d)).ok())
        .flat_map(|rd| rd.flatten().map(|e| e.path()))
        .find(|p| p.join("kernel").is_dir())
        .unwrap_or_else(|| panic!("no lib/modules/<version>/kernel in {}", root.display()))
}

/// The ELF `vmlinux` of a bzImage whose payload is xz-compressed (Debian's), found as
/// the kernel's `scripts/extract-vmlinux` does: the first xz magic, decompressed with
/// `xz -dc`. xz complains about the bytes after the stream, so its status is ignored and
/// the result checked instead: an ELF whose program headers' contents are all there.
fn extract_vmlinux(bz: &[u8], work: &Path) -> Result<Vec<u8>, String> {
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";
    let at = bz
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .ok_or("no xz payload in the bzImage")?;
    let payload = work.join("payload.xz");
    fs::write(&payload, &bz[at..]).map_err(|e| format!("write {}: {e}", payload.display()))?;
    let out = Command::new("xz")
        .arg("-dc")
        .arg(&payload)
        .output()
        .map_err(|e| format!("cannot run xz: {e}"))?;
    let elf = out.stdout;
    if !elf_is_complete(&elf) {
        return Err(format!(
            "xz output is not a complete ELF ({} bytes): {}",
            elf.len(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(elf)
}

/// Whether `elf` is a 64-bit little-endian ELF whose segments all lie inside it.
fn elf_is_complete(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    let len = u64::try_from(elf.len()).unwrap_or(u64::MAX);
    phnum > 0
        && (0..usize::from(phnum)).all(|i| {
            let ph = phoff + i * usize::from(phentsize);
            matches!(
                (u64_at(ph + 8), u64_at(ph + 0x20)),
                (Some(off), Some(size)) if off.checked_add(size).is_some_and(|end| end <= len)
            )
        })
}

/// The modules of an unpacked kernel package, by name (`-` read as `_`, as kmod does).
struct ModuleIndex {
    paths: HashMap<String, PathBuf>,
    builtin: HashSet<String>,
}

impl ModuleIndex {
    fn new(dir: &Path) -> Self {
        let mut paths = HashMap::new();
        let mut stack = vec![dir.join("kernel")];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Some(name) = module_name(&p) {
                    paths.insert(name, p);
                }
            }
        }
        let builtin = fs::read_to_string(dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| module_name(Path::new(l)))
            .collect();
        Self { paths, builtin }
    }

    /// `roots` and their dependencies (not built in), dependencies first, each with its
    /// uncompressed contents.
    fn resolve(&self, roots: &[&str]) -> Vec<(String, Vec<u8>)> {
        let mut done = Vec::new();
        let mut seen = HashSet::new();
        for root in roots {
            self.visit(root, &mut seen, &mut done);
        }
        done
    }

    fn visit(&self, name: &str, seen: &mut HashSet<String>, done: &mut Vec<(String, Vec<u8>)>) {
        let name = name.replace('-', "_");
        if self.builtin.contains(&name) || !seen.insert(name.clone()) {
            return;
        }
        let path = self
            .paths
            .get(&name)
            .unwrap_or_else(|| panic!("module {name} is neither in the package nor built in"));
        let bytes = read_module(path);
        for dep in modinfo_depends(&bytes) {
            self.visit(&dep, seen, done);
        }
        done.push((name, bytes));
    }
}

/// The module name of `x.ko`, `x.ko.xz`, `x.ko.gz` or `x.ko.zst`.
fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    [".ko", ".ko.xz", ".ko.gz", ".ko.zst"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .map(|n| n.replace('-', "_"))
}

/// A module file's ELF, decompressed if it is compressed (`insmod` in busybox takes only
/// plain ones).
fn read_module(path: &Path) -> Vec<u8> {
    let name = path.to_string_lossy();
    let tool = [(".xz", "xz"), (".gz", "gzip"), (".zst", "zstd")]
        .iter()
        .find(|(ext, _)| name.ends_with(ext))
        .map(|(_, tool)| *tool);
    let Some(tool) = tool else {
        return read(path);
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} for {name}: {e}"));
    assert!(
        out.status.success(),
        "{tool} -dc {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The `depends=` of a module's `.modinfo` (NUL-separated `key=value` strings).
fn modinfo_depends(module: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = module.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let value = &module[at + KEY.len()..];
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A newc ("070701") cpio archive, the format of the kernel's initramfs. Owner root,
/// mtime 0.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn dir(&mut self, path: &str) {
        self.entry(path, 0o040_755, &[], (0, 0));
    }

    fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.entry(path, 0o100_000 | perm, data, (0, 0));
    }

    /// A device node; `mode` includes the type bits.
    fn node(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(path, mode, &[], (major, minor));
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let size = u32::try_from(data.len()).expect("cpio member under 4 GiB");
        let namesize = u32::try_from(path.len() + 1).expect("short cpio name");
        let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
        let fields = [
            self.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(path.as_bytes());
        self.buf.push(0);
        self.pad(4);
        self.buf.extend_from_slice(data);
        self.pad(4);
    }

    fn pad(&mut self, to: usize) {
        while !self.buf.len().is_multiple_of(to) {
            self.buf.push(0);
        }
    }

    /// The archive with its trailer, padded to 512 bytes (as `cpio` does), so another
    /// archive can be appended.
    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.pad(512);
        self.buf
    }
}
