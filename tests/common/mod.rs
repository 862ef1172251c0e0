//! A running network for the end-to-end tests: switchd in its own namespace, guest
//! namespaces on TAP ports, all removed when the value is dropped.

#![allow(dead_code, unreachable_pub)]

pub mod clients;
pub mod qemu;
pub mod wan;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use vnet_testkit::{require_root, unique, wait_for, ChildGuard, Netns, TempDir, Veth};

pub const SWITCHD: &str = env!("CARGO_BIN_EXE_switchd");
pub const SWITCHCTL: &str = env!("CARGO_BIN_EXE_switchctl");

/// A guest: a namespace with `eth0` on a TAP port of the network.
pub struct Guest {
    pub ns: Netns,
    pub mac: String,
    pub ip: String,
    pub port: String,
}

impl Guest {
    pub fn ping(&self, ip: &str) -> bool {
        self.ns
            .run("ping", &["-c", "1", "-W", "2", "-q", ip])
            .status
            .success()
    }
}

/// Fields drop in order: the daemon stops first, then the namespaces go.
pub struct Net {
    pub daemon: Option<ChildGuard>,
    pub name: String,
    pub guests: Vec<Guest>,
    pub host: Netns,
    pub dir: TempDir,
    /// Extra switchd arguments (`--nat-max-flows-per-guest 20`, ...).
    pub args: Vec<String>,
    /// A command switchd runs under (`prlimit --nofile=…`), empty for none.
    pub wrapper: Vec<String>,
}

impl Net {
    /// Starts switchd (network `t<unique>`, libvirt's default network renamed) inside a
    /// fresh namespace.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts switchd with `xml` as its definition (its name replaced by `t<unique>`).
    pub fn start_with(xml: Option<&str>) -> Self {
        Self::start_with_args(xml, &[])
    }

    /// [`Net::start_with`], with extra switchd arguments.
    pub fn start_with_args(xml: Option<&str>, args: &[&str]) -> Self {
        let mut net = Self::prepare(xml, args);
        net.launch();
        net
    }

    /// Makes the namespace, dirs and config of a network without starting switchd (a
    /// test adds interfaces the definition names first), then [`Net::launch`].
    pub fn prepare(xml: Option<&str>, args: &[&str]) -> Self {
        require_root();
        let dir = TempDir::new("vnet-test");
        let host = Netns::new("vth");
        let name = format!("t{}", unique());
        if let Some(xml) = xml {
            std::fs::write(dir.path().join("net.xml"), xml).expect("write config");
        }
        Self {
            daemon: None,
            name,
            guests: Vec::new(),
            host,
            dir,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            wrapper: Vec::new(),
        }
    }

    /// Starts (again) the switchd of this network, with the same dirs and config.
    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("switchd.log"))
            .expect("log file");
        let mut cmd = match self.wrapper.split_first() {
            None => self.host.cmd(SWITCHD, &["--name", &self.name]),
            Some((prog, args)) => {
                let mut c = self.host.cmd(prog, &[]);
                c.args(args).args([SWITCHD, "--name", &self.name]);
                c
            }
        };
        cmd.args(&self.args);
        let config = self.dir.path().join("net.xml");
        if config.exists() {
            cmd.arg("--config").arg(config);
        }
        cmd.arg("--run-dir")
            .arg(self.dir.path())
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .stdout(Stdio::null())
            .stderr(log);
        self.daemon = Some(ChildGuard::spawn(cmd));
        let net = self;
        let sock = net.socket();
        let up = wait_for(Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        assert!(up, "switchd did not open {}: {}", sock.display(), net.log());
        assert!(net.daemon_mut().is_running());
    }

    /// Stops switchd with SIGTERM (clean) or SIGKILL (a crash).
    pub fn stop(&mut self, crash: bool) {
        let d = self.daemon.take().expect("running");
        if crash {
            d.signal("KILL");
            let _ = d.stop(Duration::from_secs(5));
        } else {
            let status = d.stop(Duration::from_secs(5));
            assert!(
                status.is_some_and(|s| s.success()),
                "unclean exit: {}",
                self.log()
            );
        }
    }

    pub fn socket(&self) -> PathBuf {
        vnet_control::control_socket_path(self.dir.path(), &self.name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("switchd.log")).unwrap_or_default()
    }

    pub fn daemon_mut(&mut self) -> &mut ChildGuard {
        self.daemon.as_mut().expect("daemon running")
    }

    /// Runs `switchctl ARGS…` against this network's run dir.
    pub fn switchctl(&self, args: &[&str]) -> Output {
        Command::new(SWITCHCTL)
            .arg("--run-dir")
            .arg(self.dir.path())
            .args(args)
            .output()
            .expect("run switchctl")
    }

    /// `switchctl --json ARGS…`, which must succeed; returns the parsed result.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.switchctl(&a);
        assert!(
            out.status.success(),
            "switchctl {args:?} failed: {}\nswitchd log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).expect("switchctl --json prints JSON")
    }

    /// `switchctl ARGS…`, which must fail; returns its stderr.
    pub fn ctl_err(&self, args: &[&str]) -> String {
        let out = self.switchctl(args);
        assert!(
            !out.status.success(),
            "switchctl {args:?} should have failed"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Adds guest number `i` (1-based): a namespace, a TAP port with `eth0` inside it,
    /// MAC 52:54:00:00:00:0i and address 10.77.0.i/24.
    pub fn add_guest(&mut self) -> &Guest {
        let i = self.guests.len() + 1;
        let ns = Netns::new(&format!("vtg{i}"));
        let mac = format!("52:54:00:00:00:{i:02x}");
        let ip = format!("10.77.0.{i}");
        let info = self.ctl_json(&[
            "port-add",
            &self.name,
            "tap",
            "--netns",
            ns.name(),
            "--ifname",
            "eth0",
            "--mac",
            &mac,
        ]);
        let port = info["name"].as_str().expect("port name").to_owned();
        ns.run_ok("ip", &["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        ns.run_ok("ip", &["link", "set", "eth0", "up"]);
        self.guests.push(Guest { ns, mac, ip, port });
        self.guests.last().expect("just pushed")
    }

    /// Adds a guest namespace on a TAP port with `eth0` up and no address (for DHCP).
    pub fn add_bare_guest(&self, prefix: &str, mac: &str) -> Netns {
        let ns = Netns::new(prefix);
        self.ctl_json(&[
            "port-add",
            &self.name,
            "tap",
            "--netns",
            ns.name(),
            "--ifname",
            "eth0",
            "--mac",
            mac,
        ]);
        ns.run_ok("ip", &["link", "set", "eth0", "up"]);
        ns
    }

    /// Adds a guest namespace whose `eth0` is a TAP that switchd made in its own
    /// namespace and root then moved in: how a guest joins a switchd that cannot enter
    /// namespaces (`--user`, no CAP_SYS_ADMIN). `eth0` is up, without an address.
    pub fn add_moved_guest(&self, prefix: &str, mac: Option<&str>) -> Netns {
        let ns = Netns::new(prefix);
        let tap = format!("{prefix}{}", unique());
        let mut args = vec!["port-add", &self.name, "tap", "--name", &tap];
        if let Some(m) = mac {
            args.extend(["--mac", m]);
        }
        self.ctl_json(&args);
        self.host
            .run_ok("ip", &["link", "set", &tap, "netns", ns.name()]);
        ns.run_ok("ip", &["link", "set", &tap, "name", "eth0"]);
        ns.run_ok("ip", &["link", "set", "eth0", "up"]);
        ns
    }

    /// A "wan" namespace joined to switchd's by a veth: `uplink`/24 on switchd's end,
    /// `wan`/24 on the other, both up. Bind the pair as `let (ns, veth) = …` so the
    /// veth goes before the namespace.
    pub fn wan(&self, prefix: &str, uplink: &str, wan: &str) -> (Netns, Veth) {
        let ns = Netns::new(prefix);
        let veth = Veth::new(prefix, Some(&self.host), Some(&ns));
        self.host.run_ok(
            "ip",
            &["addr", "add", &format!("{uplink}/24"), "dev", veth.a()],
        );
        self.host.run_ok("ip", &["link", "set", veth.a(), "up"]);
        ns.run_ok(
            "ip",
            &["addr", "add", &format!("{wan}/24"), "dev", veth.b()],
        );
        ns.run_ok("ip", &["link", "set", veth.b(), "up"]);
        (ns, veth)
    }

    pub fn port_list(&self) -> Vec<serde_json::Value> {
        self.ctl_json(&["port-list", &self.name])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The ports other than the host port (`virbr0`, which switchd adds to networks
    /// with a gateway).
    pub fn guest_ports(&self) -> Vec<serde_json::Value> {
        let mut p = self.port_list();
        p.retain(|p| p["ifname"] != "virbr0");
        p
    }

    pub fn fdb(&self) -> Vec<serde_json::Value> {
        self.ctl_json(&["fdb-show", &self.name])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// switchd running as `nobody` (`setpriv`, no capabilities, no groups) in `host`, for
/// network `name`, with `<dir>/run` and `<dir>/state` made and given to nobody first;
/// its stderr goes to `<dir>/switchd.log` (returned).
pub fn unprivileged_switchd(
    host: &Netns,
    dir: &std::path::Path,
    name: &str,
) -> (ChildGuard, PathBuf) {
    require_root();
    for sub in ["run", "state"] {
        std::fs::create_dir_all(dir.join(sub)).expect("dir");
        let st = Command::new("chown")
            .args(["nobody:nogroup"])
            .arg(dir.join(sub))
            .status()
            .expect("chown");
        assert!(st.success());
    }
    let log = dir.join("switchd.log");
    let mut cmd = host.cmd(
        "setpriv",
        &[
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            SWITCHD,
            "--name",
            name,
        ],
    );
    cmd.arg("--run-dir")
        .arg(dir.join("run"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stderr(std::fs::File::create(&log).expect("log"));
    (ChildGuard::spawn(cmd), log)
}
