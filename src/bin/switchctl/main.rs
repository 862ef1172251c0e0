//! `switchctl`: manages running vnet networks (virsh-like verbs).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use vnet_control::{Client, FdbRow, NetInfo, PortAdd, PortInfo, PortKind, Request, Response};

/// Manage vnet networks run by switchd.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Directory of the networks' sockets (as given to switchd).
    #[arg(long, global = true, env = vnet_control::dirs::RUN_DIR_ENV)]
    run_dir: Option<PathBuf>,
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
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Add a port to a network.
    PortAdd {
        /// Network name.
        net: String,
        /// Kind of port.
        kind: Kind,
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
    },
    /// Remove a port from a network.
    PortDel {
        /// Network name.
        net: String,
        /// Port name.
        port: String,
    },
    /// List a network's ports with their counters.
    PortList {
        /// Network name.
        net: String,
    },
    /// Show the learned MAC addresses (like `brctl showmacs`).
    FdbShow {
        /// Network name.
        net: String,
    },
    /// Show a running network's state.
    NetInfo {
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

fn call(args: &Args, net: &str, req: &Request) -> Result<serde_json::Value> {
    if let Err(e) = vnet_control::validate_network_name(net) {
        bail!(e);
    }
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(vnet_control::dirs::default_run_dir);
    let path = vnet_control::control_socket_path(&run_dir, net);
    let mut client = Client::connect(&path).with_context(|| format!("network {net:?}"))?;
    match client.call(req)? {
        Response::Ok { result, .. } => Ok(result),
        Response::Err { error, .. } => bail!(error),
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    match &args.verb {
        Verb::PortAdd {
            net,
            kind: Kind::Tap,
            name,
            netns,
            ifname,
            mac,
            persistent,
            isolated,
        } => {
            let req = Request::PortAdd(PortAdd {
                kind: Some(PortKind::Tap),
                name: name.clone(),
                netns: netns.clone(),
                ifname: ifname.clone(),
                mac: mac.clone(),
                persistent: *persistent,
                isolated: *isolated,
            });
            let v = call(&args, net, &req)?;
            if args.json {
                return print_json(&v);
            }
            let p: PortInfo = serde_json::from_value(v)?;
            println!(
                "Port {} added to network {net} (interface {})",
                p.name, p.ifname
            );
        }
        Verb::PortDel { net, port } => {
            let v = call(&args, net, &Request::PortDel { port: port.clone() })?;
            if args.json {
                return print_json(&v);
            }
            println!("Port {port} removed from network {net}");
        }
        Verb::PortList { net } => {
            let v = call(&args, net, &Request::PortList)?;
            if args.json {
                return print_json(&v);
            }
            let ports: Vec<PortInfo> = serde_json::from_value(v)?;
            print_ports(&ports);
        }
        Verb::FdbShow { net } => {
            let v = call(&args, net, &Request::FdbShow)?;
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
        }
        Verb::NetInfo { net } => {
            let v = call(&args, net, &Request::NetInfo)?;
            if args.json {
                return print_json(&v);
            }
            let i: NetInfo = serde_json::from_value(v)?;
            println!("Name:           {}", i.name);
            println!("Active:         yes");
            println!("PID:            {}", i.pid);
            println!("Uptime:         {:.0} s", i.uptime);
            println!("Ports:          {}", i.ports);
            println!("FDB entries:    {} / {}", i.fdb_entries, i.fdb_max_entries);
            println!("Aging time:     {} s", i.aging_time);
        }
    }
    Ok(())
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_ports(ports: &[PortInfo]) {
    println!(
        "{:<16} {:>4} {:<5} {:<16} {:<12} {:>5} {:>10} {:>12} {:>10} {:>12} {:>7}",
        "Name",
        "Id",
        "Kind",
        "Interface",
        "Netns",
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
            _ => "?",
        };
        let drops: u64 = p.counters.drops.values().sum();
        println!(
            "{:<16} {:>4} {:<5} {:<16} {:<12} {:>5} {:>10} {:>12} {:>10} {:>12} {:>7}",
            p.name,
            p.id,
            kind,
            p.ifname,
            p.netns.as_deref().unwrap_or("-"),
            p.macs,
            p.counters.rx_frames,
            p.counters.rx_bytes,
            p.counters.tx_frames,
            p.counters.tx_bytes,
            drops
        );
    }
}
