//! The virsh-style lifecycle through `switchctl`: define, list, start, attach, live
//! update, destroy, undefine, autostart; and bad definitions refused without harm.
//! switchd is started by `switchctl net-start` inside a namespace the test made.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use vnet_testkit::{require_root, unique, Netns, TempDir};

/// A state dir, a run dir and a namespace where `switchctl` (and the switchd it starts) run.
struct Cli {
    host: Netns,
    dir: TempDir,
    started: std::cell::RefCell<Vec<String>>,
}

impl Cli {
    fn new() -> Self {
        require_root();
        Self {
            host: Netns::new("vlh"),
            dir: TempDir::new("vnet-life"),
            started: Default::default(),
        }
    }

    /// `switchctl ARGS…` in the namespace, on the test's dirs.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.host.name(), common::SWITCHCTL])
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .arg("--run-dir")
            .arg(self.dir.path().join("run"))
            .args(args)
            .env("VNET_SWITCHD", common::SWITCHD);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("run switchctl");
        if out.status.success() && matches!(args.first(), Some(&"net-start") | Some(&"net-create"))
        {
            self.started
                .borrow_mut()
                .push(args.last().copied().unwrap_or_default().to_owned());
        }
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "switchctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The command must fail with one line on stderr; returns that line.
    fn err(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "switchctl {args:?} should have failed"
        );
        let lines: Vec<&str> = err.lines().filter(|l| !l.contains("warning")).collect();
        assert_eq!(lines.len(), 1, "one error line expected: {err}");
        assert!(lines[0].starts_with("switchctl: error: "), "{err}");
        lines[0].to_owned()
    }

    fn write(&self, name: &str, xml: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, xml).expect("write xml");
        p
    }

    fn definition(&self, net: &str) -> PathBuf {
        self.dir
            .path()
            .join("state/networks")
            .join(format!("{net}.xml"))
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        for net in self.started.borrow().iter() {
            let _ = self.run(&["net-destroy", net]);
        }
        // the namespace guard kills whatever is left in the namespace
    }
}

fn nat_net(name: &str, third_octet: u8) -> String {
    format!(
        "<network>\n  <name>{name}</name>\n  <forward mode='nat'/>\n  \
         <ip address='10.77.{third_octet}.254' netmask='255.255.255.0'>\n    <dhcp>\n      \
         <range start='10.77.{third_octet}.100' end='10.77.{third_octet}.200'/>\n    </dhcp>\n  </ip>\n</network>\n"
    )
}

fn list_json(cli: &Cli) -> Vec<serde_json::Value> {
    let out = cli.ok(&["--json", "net-list", "--all"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .expect("json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn define_start_attach_update_destroy_undefine() {
    let cli = Cli::new();
    let name = format!("lc{}", unique());
    let file = cli.write("net.xml", &nat_net(&name, 1));
    let out = cli.ok(&["net-define", file.to_str().unwrap()]);
    assert!(
        out.contains(&format!("Network {name} defined from")),
        "{out}"
    );

    // defined, inactive, with libvirt's generated values
    let list = cli.ok(&["net-list", "--all"]);
    let row = list
        .lines()
        .find(|l| l.contains(&name))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains("inactive") && row.trim_end().ends_with("yes"),
        "{row}"
    );
    assert!(
        !cli.ok(&["net-list"]).contains(&name),
        "inactive networks hidden by default"
    );
    let xml = cli.ok(&["net-dumpxml", &name]);
    assert!(
        xml.contains("<uuid>") && xml.contains("<mac address='52:54:00:"),
        "{xml}"
    );
    assert!(xml.contains("<bridge name='virbr0'"), "{xml}");
    let uuid = cli.ok(&["net-uuid", &name]).trim().to_owned();
    assert_eq!(cli.ok(&["net-name", &uuid]).trim(), name);

    // start: active, a guest attaches and talks to another
    assert!(cli.ok(&["net-start", &name]).contains("started"));
    let active = cli.ok(&["net-list"]);
    assert!(
        active
            .lines()
            .any(|l| l.contains(&name) && l.contains(" active")),
        "{active}"
    );
    let err = cli.err(&["net-start", &name]);
    assert!(err.contains("already active"), "{err}");
    let g1 = Netns::new("vlg");
    let g2 = Netns::new("vlg");
    for (i, g) in [&g1, &g2].into_iter().enumerate() {
        cli.ok(&[
            "port-add",
            &name,
            "tap",
            "--netns",
            g.name(),
            "--ifname",
            "eth0",
        ]);
        g.run_ok(
            "ip",
            &[
                "addr",
                "add",
                &format!("10.77.1.{}/24", i + 1),
                "dev",
                "eth0",
            ],
        );
    }
    assert!(g1
        .run("ping", &["-c", "1", "-W", "2", "10.77.1.2"])
        .status
        .success());
    let info = cli.ok(&["net-info", &name]);
    assert!(
        // two guests and the host port (virbr0)
        info.contains("Active:         yes") && info.contains("Ports:          3"),
        "{info}"
    );

    // a live update is visible at once, without a restart; the definition is unchanged
    let host = "<host ip='10.77.1.50'><hostname>web</hostname></host>";
    let out = cli.ok(&["net-update", &name, "add", "dns-host", host, "--live"]);
    assert!(out.contains("live state"), "{out}");
    let live = cli.ok(&["net-dumpxml", &name]);
    assert!(live.contains("<hostname>web</hostname>"), "{live}");
    assert!(!cli
        .ok(&["net-dumpxml", "--inactive", &name])
        .contains("web"));
    // --config changes the definition too; a bad fragment changes nothing
    cli.ok(&[
        "net-update",
        &name,
        "add",
        "dns-host",
        "<host ip='10.77.1.51'><hostname>db</hostname></host>",
        "--live",
        "--config",
    ]);
    assert!(cli
        .ok(&["net-dumpxml", "--inactive", &name])
        .contains("<hostname>db</hostname>"));
    let before = std::fs::read(cli.definition(&name)).unwrap();
    cli.err(&[
        "net-update",
        &name,
        "add",
        "dns-host",
        "<host ip='10.77.1.52'>",
        "--live",
        "--config",
    ]);
    assert_eq!(std::fs::read(cli.definition(&name)).unwrap(), before);

    // destroy: inactive again, the guests' interfaces are gone; undefine: gone
    assert!(cli.ok(&["net-destroy", &name]).contains("destroyed"));
    assert!(!g1.run("ip", &["link", "show", "eth0"]).status.success());
    let row = list_json(&cli)
        .into_iter()
        .find(|r| r["name"] == name.as_str())
        .expect("listed");
    assert_eq!(row["active"], false);
    assert!(cli.ok(&["net-undefine", &name]).contains("undefined"));
    assert!(list_json(&cli).iter().all(|r| r["name"] != name.as_str()));
    let err = cli.err(&["net-start", &name]);
    assert!(err.contains("no network with matching name"), "{err}");
}

#[test]
fn autostart_mark_survives_and_starts_the_network() {
    let cli = Cli::new();
    let name = format!("la{}", unique());
    let file = cli.write("net.xml", &nat_net(&name, 2));
    cli.ok(&["net-define", file.to_str().unwrap()]);
    assert!(cli
        .ok(&["net-autostart", &name])
        .contains("marked as autostarted"));
    // a new switchctl process (the tooling restarted) still sees the mark
    let row = list_json(&cli)
        .into_iter()
        .find(|r| r["name"] == name.as_str())
        .expect("listed");
    assert_eq!(row["autostart"], true);
    assert!(cli
        .ok(&["net-list", "--all", "--autostart", "--name"])
        .contains(&name));
    assert!(!cli
        .ok(&["net-list", "--all", "--no-autostart", "--name"])
        .contains(&name));
    // what runs at boot
    let out = cli.ok(&["net-autostart-all"]);
    cli.started.borrow_mut().push(name.clone());
    assert!(out.contains(&format!("Network {name} started")), "{out}");
    assert!(cli.ok(&["net-list", "--name"]).contains(&name));
    cli.ok(&["net-destroy", &name]);
    cli.ok(&["net-autostart", "--disable", &name]);
    let row = list_json(&cli)
        .into_iter()
        .find(|r| r["name"] == name.as_str())
        .expect("listed");
    assert_eq!(row["autostart"], false);
}

#[test]
fn transient_network_from_net_create() {
    let cli = Cli::new();
    let name = format!("lt{}", unique());
    let file = cli.write("net.xml", &nat_net(&name, 3));
    assert!(cli
        .ok(&["net-create", file.to_str().unwrap()])
        .contains("created from"));
    let row = list_json(&cli)
        .into_iter()
        .find(|r| r["name"] == name.as_str())
        .expect("listed");
    assert_eq!(
        (row["active"].clone(), row["persistent"].clone()),
        (true.into(), false.into())
    );
    let err = cli.err(&["net-autostart", &name]);
    assert!(err.contains("transient"), "{err}");
    cli.ok(&["net-destroy", &name]);
    assert!(
        list_json(&cli).iter().all(|r| r["name"] != name.as_str()),
        "a destroyed transient network is gone"
    );
}

#[test]
fn bad_definitions_are_refused_and_change_nothing() {
    let cli = Cli::new();
    let name = format!("lb{}", unique());
    let good = cli.write("good.xml", &nat_net(&name, 4));
    cli.ok(&["net-define", good.to_str().unwrap()]);
    let def = cli.definition(&name);
    let before = std::fs::read(&def).unwrap();

    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed.xml", "<network><name>x</name>".into(), "malformed.xml"),
        (
            "mode.xml",
            "<network><name>m1</name><forward mode='teleport'/></network>".into(),
            "teleport",
        ),
        (
            "vepa.xml",
            "<network><name>m2</name><forward mode='vepa'><interface dev='eth0'/></forward></network>".into(),
            "vepa",
        ),
        (
            "range.xml",
            "<network><name>m3</name><ip address='10.1.0.1' netmask='255.255.255.0'><dhcp>\
             <range start='10.2.0.10' end='10.2.0.20'/></dhcp></ip></network>"
                .into(),
            "range",
        ),
        ("dup.xml", nat_net(&name, 9).replace("<forward", "<uuid>4a1c7b8e-2f55-4f4e-9a53-0d0c7f1e2a11</uuid><forward"), "already exists"),
    ];
    for (file, xml, needle) in &cases {
        let p = cli.write(file, xml);
        let err = cli.err(&["net-define", p.to_str().unwrap()]);
        assert!(err.contains(needle), "{file}: {err}");
    }
    assert_eq!(
        std::fs::read(&def).unwrap(),
        before,
        "existing definition altered"
    );

    // a second network on an overlapping subnet is refused at start, naming the other
    cli.ok(&["net-start", &name]);
    let other = format!("lo{}", unique());
    let overlap = cli.write(
        "overlap.xml",
        &nat_net(&other, 4).replace("255.255.255.0", "255.255.0.0"),
    );
    cli.ok(&["net-define", overlap.to_str().unwrap()]);
    let err = cli.err(&["net-start", &other]);
    assert!(err.contains(&name) && err.contains("overlap"), "{err}");
    assert!(
        cli.ok(&["net-list", "--name"]).contains(&name),
        "the running network is untouched"
    );

    // a definition truncated by a crash: a clear error naming the file; the rest still listed
    let broken = cli.definition(&other);
    let full = std::fs::read(&broken).unwrap();
    std::fs::write(&broken, &full[..full.len() / 2]).unwrap();
    let err = cli.err(&["net-start", &other]);
    assert!(err.contains(&format!("{other}.xml")), "{err}");
    let out = cli.run(&["net-list", "--all"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&name));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&other),
        "the broken one is reported"
    );
    assert_eq!(std::fs::read(&def).unwrap(), before);
    let _ = Duration::ZERO;
}

#[test]
fn net_edit_validates_and_saves() {
    let cli = Cli::new();
    let name = format!("le{}", unique());
    let file = cli.write("net.xml", &nat_net(&name, 5));
    cli.ok(&["net-define", file.to_str().unwrap()]);
    let run_with_editor = |editor: &str| {
        let mut c = Command::new(common::SWITCHCTL);
        c.arg("--state-dir")
            .arg(cli.dir.path().join("state"))
            .arg("--run-dir")
            .arg(cli.dir.path().join("run"))
            .args(["net-edit", &name])
            .env("EDITOR", editor)
            .env_remove("VISUAL");
        c.output().expect("run switchctl")
    };
    // an edit that keeps the XML valid is saved
    let out = run_with_editor("sed -i s/10.77.5.200/10.77.5.150/");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("XML configuration edited"));
    assert!(cli
        .ok(&["net-dumpxml", &name])
        .contains("end='10.77.5.150'"));
    // an edit that breaks it is refused (the answer to "Try again?" is no) and changes nothing
    let before = std::fs::read(cli.definition(&name)).unwrap();
    let out = run_with_editor("sed -i s/10.77.5.150/10.99.0.1/");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Try again?") && err.contains("range"), "{err}");
    assert_eq!(std::fs::read(cli.definition(&name)).unwrap(), before);
    // no change at all
    let out = run_with_editor("true");
    assert!(String::from_utf8_lossy(&out.stdout).contains("not changed"));
}

#[test]
fn net_event_prints_port_and_lease_events() {
    let net = common::Net::start();
    let mut cmd = Command::new(common::SWITCHCTL);
    cmd.arg("--run-dir")
        .arg(net.dir.path())
        .args(["net-event", &net.name, "--loop", "--timeout", "5"])
        .stdout(Stdio::piped());
    let watcher = cmd.spawn().expect("net-event");
    std::thread::sleep(Duration::from_millis(300));
    let g = net.add_bare_guest("vev", "52:54:00:90:00:01");
    let lease = common::clients::udhcpc(&net, &g, "ev", &["-x", "hostname:evvm"]);
    let ip = lease.get("ip").cloned().unwrap_or_default();
    let out = watcher.wait_with_output().expect("net-event output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "event 'port-added' for network {}: {}:eth0",
            net.name,
            g.name()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "event 'lease-granted' for network {}: {ip} 52:54:00:90:00:01 evvm",
            net.name
        )),
        "{text}"
    );
}

#[test]
fn net_event_reports_a_moved_mac_and_a_full_fdb() {
    let mut net = common::Net::start_with_args(None, &["--fdb-max-entries", "8"]);
    let mut cmd = Command::new(common::SWITCHCTL);
    cmd.arg("--run-dir")
        .arg(net.dir.path())
        .args(["net-event", &net.name, "--loop", "--timeout", "6"])
        .stdout(Stdio::piped());
    let watcher = cmd.spawn().expect("net-event");
    std::thread::sleep(Duration::from_millis(300));
    net.add_guest();
    net.add_guest();
    // guest 2 sends with guest 1's MAC: the station moves to guest 2's port
    let g1_mac = net.guests[0].mac.clone();
    assert!(net.guests[0].ping(&net.guests[1].ip));
    let g2 = &net.guests[1];
    g2.ns
        .run_ok("ip", &["link", "set", "eth0", "address", &g1_mac]);
    let _ = g2.ping(&net.guests[0].ip);
    // twenty more source MACs than the FDB holds
    let flood = "import socket,os\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
                 s.bind(('eth0',0))\nfor i in range(20):\n  \
                 s.send(b'\\xff'*6+bytes([2,0,0,0,1,i])+b'\\x88\\xb5'+b'x'*46)";
    let out = g2.ns.run("python3", &["-c", flood]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = watcher.wait_with_output().expect("net-event output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("'mac-moved'") && text.contains(&format!("{g1_mac} moved from")),
        "{text}"
    );
    assert!(
        text.contains("'bound-hit'") && text.contains("FDB full (8 entries)"),
        "{text}"
    );
    assert!(net.log().contains("warning: FDB full"), "{}", net.log());
}

/// Runs `switchctl net-define` of each file at once; returns how many said "defined".
fn define_all_at_once(cli: &Cli, files: &[PathBuf]) -> usize {
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            cli.command(&["net-define", &f.to_string_lossy()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("switchctl")
        })
        .collect();
    children
        .into_iter()
        .map(|mut c| c.wait().expect("wait"))
        .filter(std::process::ExitStatus::success)
        .count()
}

#[test]
fn parallel_defines_leave_one_definition_per_name_and_uuid() {
    let cli = Cli::new();
    // twenty names, one UUID: one of them is defined
    let uuid = "5b0e9a52-7c1d-4f3e-8a9b-1c2d3e4f5a6b";
    let files: Vec<PathBuf> = (0..20)
        .map(|i| {
            let name = format!("pu{i}{}", unique());
            let xml =
                nat_net(&name, 10 + i).replace("<forward", &format!("<uuid>{uuid}</uuid><forward"));
            cli.write(&format!("pu{i}.xml"), &xml)
        })
        .collect();
    assert_eq!(define_all_at_once(&cli, &files), 1);
    let with_uuid: Vec<_> = list_json(&cli)
        .into_iter()
        .filter(|n| n["uuid"] == uuid)
        .collect();
    assert_eq!(with_uuid.len(), 1, "{with_uuid:?}");

    // one name, twenty UUIDs: one of them is defined
    let name = format!("pn{}", unique());
    let files: Vec<PathBuf> = (0..20u8)
        .map(|i| {
            let xml = nat_net(&name, 40).replace(
                "<forward",
                &format!("<uuid>6c1f0b63-8d2e-4a4f-9bac-2d3e4f5a6b{i:02x}</uuid><forward"),
            );
            cli.write(&format!("pn{i}.xml"), &xml)
        })
        .collect();
    assert_eq!(define_all_at_once(&cli, &files), 1);
    let named: Vec<_> = list_json(&cli)
        .into_iter()
        .filter(|n| n["name"] == name.as_str())
        .collect();
    assert_eq!(named.len(), 1, "{named:?}");

    // definitions are no one else's: the directory 0700, each file (and the lock) 0600
    use std::os::unix::fs::MetadataExt;
    let state = cli.dir.path().join("state");
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("metadata").mode() & 0o777;
    assert_eq!(mode(&state.join("networks")), 0o700);
    assert_eq!(mode(&state.join(".define.lock")), 0o600);
    for f in std::fs::read_dir(state.join("networks"))
        .expect("networks")
        .flatten()
    {
        assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
    }
}
