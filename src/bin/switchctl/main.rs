//! `switchctl`: manages vnet networks with virsh's verbs, options and columns.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use vnet_control::store::Store;
use vnet_control::{Client, FdbRow, NetInfo, PortAdd, PortInfo, PortKind, Request, Response};

mod net;

/// Manage vnet networks run by switchd (virsh-like verbs).
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Args {
    /// Directory of the networks' sockets (as given to switchd).
    #[arg(long, global = true, env = vnet_control::dirs::RUN_DIR_ENV)]
    run_dir: Option<PathBuf>,
    /// Directory of the network definitions and autostart marks.
    #[arg(long, global = true, env = vnet_control::dirs::STATE_DIR_ENV)]
    state_dir: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    /// A TAP device created by switchd.
    Tap,
    /// An existing interface (veth, NIC, someone else's TAP), attached with an
    /// AF_PACKET socket in promiscuous mode: `port-add NET netdev IFNAME`.
    Netdev,
    /// A vhost-user socket for a QEMU guest (`-chardev socket,path=PATH -netdev
    /// vhost-user,chardev=...`) or DPDK's virtio_user: `--socket PATH` listens,
    /// `--connect PATH` dials a frontend that listens (QEMU's `server=on`).
    VhostUser,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Define a persistent network from an XML file (not started).
    NetDefine {
        /// libvirt <network> XML file.
        file: PathBuf,
    },
    /// Remove a persistent network's definition (a running one stays, transient).
    NetUndefine {
        /// Network name.
        network: String,
    },
    /// Create and start a transient network from an XML file.
    NetCreate {
        /// libvirt <network> XML file.
        file: PathBuf,
    },
    /// Start a defined network.
    NetStart {
        /// Network name.
        network: String,
    },
    /// Stop a running network.
    NetDestroy {
        /// Network name.
        network: String,
    },
    /// Mark a network to start at boot (or unmark it).
    NetAutostart {
        /// Network name.
        network: String,
        /// Unmark it.
        #[arg(long)]
        disable: bool,
    },
    /// Start every network marked autostart that is not running (vnet extension, for boot).
    NetAutostartAll,
    /// List networks (active ones by default).
    NetList(net::ListArgs),
    /// Show a network's basic information.
    NetInfo {
        /// Network name.
        network: String,
    },
    /// Print a network's XML (the live one while running).
    NetDumpxml {
        /// Network name.
        network: String,
        /// The persistent definition instead of the live one.
        #[arg(long)]
        inactive: bool,
    },
    /// Edit a network's persistent definition in $EDITOR.
    NetEdit {
        /// Network name.
        network: String,
    },
    /// Print a network's UUID.
    NetUuid {
        /// Network name.
        network: String,
    },
    /// Print the name of the network with this UUID.
    NetName {
        /// Network UUID.
        uuid: String,
    },
    /// Update part of a network's definition, live and/or persistent.
    NetUpdate(net::UpdateArgs),
    /// Show the DHCP leases of a running network.
    NetDhcpLeases {
        /// Network name.
        network: String,
        /// Only the leases of this MAC address.
        mac: Option<String>,
    },
    /// Show the DNS records a running network serves (leases, reservations, <dns>).
    NetDnsRecords {
        /// Network name.
        network: String,
    },
    /// Forward a host port to a guest (NAT mode):
    /// PROTO:[ADDRESS:]PORT[-END]:GUEST[:GUEST_PORT], e.g. tcp:8080:192.168.122.10:80.
    PortForwardAdd(net::ForwardArgs),
    /// Remove a port forward: PROTO:[ADDRESS:]PORT (as it was added).
    PortForwardDel(net::ForwardArgs),
    /// List the port forwards of a network (live if running, else its definition).
    PortForwardList {
        /// Network name.
        network: String,
    },
    /// Print a running network's events (ports added/removed, leases granted,
    /// released and expired, network stopped), like `virsh net-event`.
    NetEvent {
        /// Network name.
        network: String,
        /// Keep printing events (default: print one and exit).
        #[arg(long = "loop")]
        repeat: bool,
        /// Give up after this many seconds without an event.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Capture frames as pcap (read with `tcpdump -r`): one port in both directions, or
    /// every port as frames arrive.
    Capture {
        /// Network name.
        network: String,
        /// Port name (`gateway` for the network's own address); omit with --all.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        port: Option<String>,
        /// Every port (each frame once, as it arrives).
        #[arg(long)]
        all: bool,
        /// Where to write the pcap: a file, or `-` for standard output.
        #[arg(short = 'w', default_value = "-")]
        write: String,
        /// Stop after this many frames.
        #[arg(long, short = 'c')]
        count: Option<u64>,
    },
    /// Show the NAT flows of a running network (guest, remote, protocol, state, bytes, age).
    NatFlows {
        /// Network name.
        network: String,
    },
    /// Add a port to a running network.
    PortAdd {
        /// Network name.
        net: String,
        /// Kind of port.
        kind: Kind,
        /// The existing interface, for a netdev port.
        dev: Option<String>,
        /// Port name (and interface name when no --netns is given).
        #[arg(long)]
        name: Option<String>,
        /// Create the interface inside this network namespace.
        #[arg(long)]
        netns: Option<String>,
        /// Interface name inside the namespace.
        #[arg(long, requires = "netns")]
        ifname: Option<String>,
        /// MAC address of the interface.
        #[arg(long)]
        mac: Option<String>,
        /// Keep the device when switchd exits.
        #[arg(long)]
        persistent: bool,
        /// Isolated port: reaches only non-isolated ports.
        #[arg(long)]
        isolated: bool,
        /// Attach to an existing persistent TAP named --name (made beforehand, e.g. by
        /// `ip tuntap add mode tap vnet_hdr user USER name NAME`), so an unprivileged
        /// switchd can use it; its link state and MAC are left as they are.
        #[arg(long, requires = "name", conflicts_with_all = ["netns", "mac", "persistent"])]
        attach: bool,
        /// Port security (libvirt's clean-traffic): the port may send only from its MAC
        /// (--mac, else the first it uses) and the IPv4 addresses leased or reserved for
        /// it; spoofed MAC, IP and ARP and DHCP server replies are dropped and counted.
        #[arg(long)]
        secure: bool,
        /// A TAP without checksum/segmentation offloads: the guest's stack does that
        /// work, and switchd segments super-frames from other ports in software for it.
        #[arg(long)]
        no_offloads: bool,
        /// Exempt the port from the network's port security (<vnet:port-security>).
        #[arg(long, conflicts_with = "secure")]
        trusted: bool,
        /// Join this <portgroup> of the network (default: its default='yes' one); the
        /// group's <vnet:port-security> applies unless --secure or --trusted is given.
        #[arg(long, value_name = "NAME")]
        portgroup: Option<String>,
        /// A vhost-user port: the socket switchd listens on (QEMU connects to it); it
        /// stays for reconnects and across switchd restarts.
        #[arg(long, value_name = "PATH", conflicts_with = "connect")]
        socket: Option<PathBuf>,
        /// A vhost-user port: the frontend's listening socket switchd connects to
        /// (again after each disconnect).
        #[arg(long, value_name = "PATH")]
        connect: Option<PathBuf>,
    },
    /// Remove a port from a running network.
    PortDel {
        /// Network name.
        net: String,
        /// Port name.
        port: String,
    },
    /// Counters of a running network: ports (rx/tx, drops by reason, flooded), FDB
    /// (size, bound, evictions), DHCP by message type, DNS by result, NAT flows, router.
    Stats {
        /// Network name.
        network: String,
        /// Only this port.
        port: Option<String>,
    },
    /// List a running network's ports with their counters.
    PortList {
        /// Network name.
        net: String,
    },
    /// Show the learned MAC addresses (like `brctl showmacs`).
    FdbShow {
        /// Network name.
        net: String,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("switchctl: error: {e:#}");
        std::process::exit(1);
    }
}

impl Args {
    pub(crate) fn store(&self) -> Store {
        let run_dir = self
            .run_dir
            .clone()
            .unwrap_or_else(vnet_control::dirs::default_run_dir);
        let state_dir = self
            .state_dir
            .clone()
            .unwrap_or_else(vnet_control::dirs::default_state_dir);
        Store::new(&state_dir, &run_dir)
    }
}

/// Sends one request to a running network and returns its result.
pub(crate) fn call(store: &Store, net: &str, req: &Request) -> Result<serde_json::Value> {
    vnet_control::validate_network_name(net).map_err(anyhow::Error::msg)?;
    let path = store.socket_path(net);
    if !path.exists() && store.is_defined(net) {
        bail!("network {net:?} is not active");
    }
    let mut client = Client::connect(&path).with_context(|| format!("network {net:?}"))?;
    match client.call(req)? {
        Response::Ok { result, .. } => Ok(result),
        Response::Err { error, .. } => bail!(error),
    }
}

/// `switchctl net-event`: prints the network's events as they come.
fn net_event(
    args: &Args,
    store: &Store,
    net: &str,
    repeat: bool,
    timeout: Option<u64>,
) -> Result<()> {
    use std::io::BufRead as _;
    vnet_control::validate_network_name(net).map_err(anyhow::Error::msg)?;
    let path = store.socket_path(net);
    let mut client = Client::connect(&path).with_context(|| format!("network {net:?}"))?;
    match client.call(&Request::Events)? {
        Response::Ok { .. } => {}
        Response::Err { error, .. } => bail!(error),
    }
    let stream = client.into_stream(timeout.map(std::time::Duration::from_secs))?;
    let mut seen = 0u64;
    for line in stream.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => return Err(e).context("reading events"),
        };
        let v: serde_json::Value = serde_json::from_str(&line).context("a malformed event")?;
        seen += 1;
        if args.json {
            println!("{line}");
        } else {
            let kind = v["event"].as_str().unwrap_or("?");
            let detail = v["detail"].as_str().unwrap_or("");
            println!("event '{kind}' for network {net}: {detail}");
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        if !repeat {
            break;
        }
    }
    if !args.json {
        println!("events received: {seen}");
    }
    Ok(())
}

/// `switchctl capture`: asks for the stream, then copies it out until the daemon ends
/// it (`--count`) or the user stops us.
fn capture(
    store: &Store,
    net: &str,
    port: Option<String>,
    write: &str,
    count: Option<u64>,
) -> Result<()> {
    vnet_control::validate_network_name(net).map_err(anyhow::Error::msg)?;
    let path = store.socket_path(net);
    let mut client = Client::connect(&path).with_context(|| format!("network {net:?}"))?;
    match client.call(&Request::Capture { port, count })? {
        Response::Ok { .. } => {}
        Response::Err { error, .. } => bail!(error),
    }
    let mut stream = client.into_stream(None)?;
    let mut out: Box<dyn std::io::Write> = if write == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(write).with_context(|| format!("creating {write}"))?)
    };
    // flush per chunk so `| tcpdump -r -` sees frames as they come
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match std::io::Read::read(&mut stream, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the capture"),
        };
        if let Err(e) = out.write_all(&buf[..n]).and_then(|()| out.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e).context("writing the capture");
        }
    }
    Ok(())
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn run() -> Result<()> {
    let args = Args::parse();
    let store = args.store();
    match &args.verb {
        Verb::NetDefine { file } => net::define(&args, &store, file),
        Verb::NetUndefine { network } => net::undefine(&args, &store, network),
        Verb::NetCreate { file } => net::create(&args, &store, file),
        Verb::NetStart { network } => net::start(&args, &store, network),
        Verb::NetDestroy { network } => net::destroy(&args, &store, network),
        Verb::NetAutostart { network, disable } => net::autostart(&args, &store, network, !disable),
        Verb::NetAutostartAll => net::autostart_all(&args, &store),
        Verb::NetList(l) => net::list(&args, &store, l),
        Verb::NetInfo { network } => net::info(&args, &store, network),
        Verb::NetDumpxml { network, inactive } => net::dumpxml(&store, network, *inactive),
        Verb::NetEdit { network } => net::edit(&store, network),
        Verb::NetUuid { network } => net::uuid(&store, network),
        Verb::NetName { uuid } => net::name(&store, uuid),
        Verb::NetUpdate(u) => net::update(&args, &store, u),
        Verb::NetDhcpLeases { network, mac } => {
            net::dhcp_leases(&args, &store, network, mac.as_deref())
        }
        Verb::NetDnsRecords { network } => net::dns_records(&args, &store, network),
        Verb::NatFlows { network } => net::nat_flows(&args, &store, network),
        Verb::NetEvent {
            network,
            repeat,
            timeout,
        } => net_event(&args, &store, network, *repeat, *timeout),
        Verb::Capture {
            network,
            port,
            all: _,
            write,
            count,
        } => capture(&store, network, port.clone(), write, *count),
        Verb::PortForwardAdd(f) => net::port_forward(&args, &store, f, true),
        Verb::PortForwardDel(f) => net::port_forward(&args, &store, f, false),
        Verb::PortForwardList { network } => net::port_forward_list(&args, &store, network),
        Verb::PortAdd {
            net,
            kind,
            dev,
            name,
            netns,
            ifname,
            mac,
            persistent,
            isolated,
            attach,
            secure,
            no_offloads,
            trusted,
            portgroup,
            socket,
            connect,
        } => {
            if !matches!(kind, Kind::VhostUser) && (socket.is_some() || connect.is_some()) {
                bail!("--socket and --connect are for vhost-user ports");
            }
            // switchd runs elsewhere: the path as this shell means it
            let abs = |p: &Option<PathBuf>| -> Result<Option<String>> {
                p.as_ref()
                    .map(|p| {
                        std::path::absolute(p)
                            .map(|p| p.display().to_string())
                            .with_context(|| format!("{}", p.display()))
                    })
                    .transpose()
            };
            let (socket, connect) = (abs(socket)?, abs(connect)?);
            let (kind, ifname) = match kind {
                Kind::VhostUser if dev.is_some() => {
                    bail!(
                        "a vhost-user port takes --socket PATH or --connect PATH, not an interface"
                    )
                }
                Kind::VhostUser if socket.is_none() && connect.is_none() => {
                    bail!("port-add NET vhost-user --socket PATH (or --connect PATH)")
                }
                Kind::VhostUser => (PortKind::VhostUser, ifname.clone()),
                Kind::Tap if dev.is_some() => {
                    bail!("a tap port takes no interface argument (use --name / --ifname)")
                }
                Kind::Tap => (PortKind::Tap, ifname.clone()),
                Kind::Netdev => match (dev, ifname) {
                    (Some(_), Some(_)) => bail!("give the interface once"),
                    (Some(d), None) | (None, Some(d)) => (PortKind::Netdev, Some(d.clone())),
                    (None, None) => bail!("port-add NET netdev IFNAME: the interface is missing"),
                },
            };
            let req = Request::PortAdd(PortAdd {
                portgroup: portgroup.clone(),
                trusted: *trusted,
                no_offloads: *no_offloads,
                secure: *secure,
                attach: *attach,
                kind: Some(kind),
                name: name.clone(),
                netns: netns.clone(),
                ifname,
                mac: mac.clone(),
                persistent: *persistent,
                isolated: *isolated,
                socket,
                connect,
            });
            let v = call(&store, net, &req)?;
            if args.json {
                return print_json(&v);
            }
            let p: PortInfo = serde_json::from_value(v)?;
            println!(
                "Port {} added to network {net} (interface {})",
                p.name, p.ifname
            );
            Ok(())
        }
        Verb::PortDel { net, port } => {
            let v = call(&store, net, &Request::PortDel { port: port.clone() })?;
            if args.json {
                return print_json(&v);
            }
            println!("Port {port} removed from network {net}");
            Ok(())
        }
        Verb::Stats { network, port } => stats(&args, &store, network, port.as_deref()),
        Verb::PortList { net } => {
            let v = call(&store, net, &Request::PortList)?;
            if args.json {
                return print_json(&v);
            }
            let ports: Vec<PortInfo> = serde_json::from_value(v)?;
            print_ports(&ports);
            Ok(())
        }
        Verb::FdbShow { net } => {
            let v = call(&store, net, &Request::FdbShow)?;
            if args.json {
                return print_json(&v);
            }
            let rows: Vec<FdbRow> = serde_json::from_value(v)?;
            println!(
                "{:<16} {:<18} {:>5} {:>12}",
                "port", "mac addr", "vlan", "ageing timer"
            );
            for r in rows {
                println!("{:<16} {:<18} {:>5} {:>12.2}", r.port, r.mac, r.vlan, r.age);
            }
            Ok(())
        }
    }
}

/// What `net-info` adds for a running network.
pub(crate) fn live_info(store: &Store, net: &str) -> Option<NetInfo> {
    let v = call(store, net, &Request::NetInfo).ok()?;
    serde_json::from_value(v).ok()
}

/// `switchctl stats NET [PORT]`.
fn stats(args: &Args, store: &Store, net: &str, port: Option<&str>) -> Result<()> {
    let info: NetInfo = serde_json::from_value(call(store, net, &Request::NetInfo)?)?;
    let mut ports: Vec<PortInfo> = serde_json::from_value(call(store, net, &Request::PortList)?)?;
    if let Some(p) = port {
        ports.retain(|x| x.name == p);
        if ports.is_empty() {
            bail!("no port named {p:?} in network {net:?}");
        }
    }
    let gw = info.gateway.as_ref();
    if args.json {
        return print_json(&serde_json::json!({
            "network": {
                "name": info.name,
                "mode": info.mode,
                "ports": info.ports,
                "fdb_entries": info.fdb_entries,
                "fdb_max_entries": info.fdb_max_entries,
                "fdb_evictions": info.fdb_evictions,
            },
            "ports": ports,
            "dhcp": gw.map(|g| &g.dhcp_stats),
            "dns": gw.map(|g| &g.dns_stats),
            "ipv6": gw.map(|g| &g.ipv6),
            "nat": gw.and_then(|g| g.nat.as_ref()),
            "router": info.router,
        }));
    }
    println!(
        "Network {} ({}): {} ports, FDB {} / {} entries, {} evicted",
        info.name,
        info.mode,
        info.ports,
        info.fdb_entries,
        info.fdb_max_entries,
        info.fdb_evictions
    );
    println!();
    print_ports(&ports);
    println!();
    println!(
        "{:<16} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "Port I/O", "Reads", "Writes", "GSO in", "GSO out", "Segmented", "Segments", "Checksums"
    );
    for p in &ports {
        let io = &p.io;
        println!(
            "{:<16} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10} {:>10}",
            p.name, io.reads, io.writes, io.gso_in, io.gso_out, io.segmented, io.segments, io.csums
        );
    }
    let section = |title: &str, m: Option<&std::collections::BTreeMap<String, u64>>| {
        let Some(m) = m.filter(|m| m.values().any(|v| *v > 0)) else {
            return;
        };
        println!();
        println!("{title}:");
        for (k, v) in m.iter().filter(|(_, v)| **v > 0) {
            println!("  {k:<28} {v}");
        }
    };
    if port.is_none() {
        section("DHCP", gw.map(|g| &g.dhcp_stats));
        section("DNS", gw.map(|g| &g.dns_stats));
        section("IPv6", gw.map(|g| &g.ipv6));
        section("NAT", gw.and_then(|g| g.nat.as_ref()));
        section("Router", info.router.as_ref());
    }
    Ok(())
}

fn print_ports(ports: &[PortInfo]) {
    println!(
        "{:<16} {:>4} {:<10} {:<16} {:<12} {:<10} {:<18} {:>5} {:>10} {:>12} {:>10} {:>12} {:>7}",
        "Name",
        "Id",
        "Kind",
        "Interface",
        "Netns",
        "Group",
        "Flags",
        "MACs",
        "RX frames",
        "RX bytes",
        "TX frames",
        "TX bytes",
        "Drops"
    );
    for p in ports {
        let kind = match p.kind {
            PortKind::Tap => "tap",
            PortKind::Netdev => "netdev",
            PortKind::Stream => "stream",
            PortKind::Dgram => "dgram",
            PortKind::VhostUser => "vhost-user",
            _ => "?",
        };
        let flags: Vec<&str> = [
            (p.security.is_some(), "secure"),
            (p.isolated, "isolated"),
            (p.persistent, "persistent"),
        ]
        .into_iter()
        .filter_map(|(on, f)| on.then_some(f))
        .chain(p.peer.as_deref())
        .collect();
        let drops: u64 = p.counters.drops.values().sum();
        println!(
            "{:<16} {:>4} {:<10} {:<16} {:<12} {:<10} {:<18} {:>5} {:>10} {:>12} {:>10} {:>12} {:>7}",
            p.name,
            p.id,
            kind,
            p.ifname,
            p.netns.as_deref().unwrap_or("-"),
            p.portgroup.as_deref().unwrap_or("-"),
            if flags.is_empty() { "-".to_owned() } else { flags.join(",") },
            p.macs,
            p.counters.rx_frames,
            p.counters.rx_bytes,
            p.counters.tx_frames,
            p.counters.tx_bytes,
            drops
        );
    }
}
