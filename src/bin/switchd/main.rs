//! `switchd`: runs one vnet network (one L2 segment) until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use vnet_config::Network;
use vnet_control::store::Store;

/// One log line on stderr (journald adds the time under systemd).
macro_rules! log {
    ($($t:tt)*) => { $crate::log_line(format_args!($($t)*)) };
}

/// Writes one log line to stderr with a single `write` (stderr is unbuffered, and
/// `eprintln!` would write prefix, message and newline separately).
fn log_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let line = format!("switchd: {args}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

mod capture;
mod daemon;
mod dev;
mod gateway;
mod metrics;
mod nat;
mod uplink;

/// Runs one vnet virtual network: a user-space learning switch whose ports are TAP
/// devices, managed with `switchctl`. Without --config or --network it runs libvirt's
/// stock `default` network.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// A libvirt <network> definition to run.
    #[arg(long, value_name = "FILE.xml", conflicts_with = "network")]
    config: Option<PathBuf>,
    /// Run the network defined (net-define) under NAME in the state dir.
    #[arg(long, value_name = "NAME")]
    network: Option<String>,
    /// Validate the definition, print it normalized and exit (0 if valid).
    #[arg(long)]
    check: bool,
    /// Override the network's name (the control socket is RUN_DIR/NAME.ctl).
    #[arg(long)]
    name: Option<String>,
    /// Directory for sockets [default: /run/vnet as root, else $XDG_RUNTIME_DIR/vnet].
    #[arg(long, env = vnet_control::dirs::RUN_DIR_ENV)]
    run_dir: Option<PathBuf>,
    /// Directory for persistent state [default: /var/lib/vnet as root, else ~/.local/state/vnet].
    #[arg(long, env = vnet_control::dirs::STATE_DIR_ENV)]
    state_dir: Option<PathBuf>,
    /// Bound on forwarding-database entries.
    #[arg(long, default_value_t = 8192)]
    fdb_max_entries: usize,
    /// Seconds after which an unrefreshed MAC is forgotten.
    #[arg(long, default_value_t = 300)]
    aging_time: u64,
    /// Bound on the number of ports.
    #[arg(long, default_value_t = 1024)]
    max_ports: usize,
    /// NAT: bound on flows (TCP connections, UDP and ping flows) in the network.
    #[arg(long, default_value_t = 4096)]
    nat_max_flows: usize,
    /// NAT: bound on flows per guest address.
    #[arg(long, default_value_t = 1024)]
    nat_max_flows_per_guest: usize,
    /// Serve Prometheus metrics on ADDR:PORT (off by default; keep it on loopback).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("switchd: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let run_dir = args
        .run_dir
        .unwrap_or_else(vnet_control::dirs::default_run_dir);
    let state_dir = args
        .state_dir
        .unwrap_or_else(vnet_control::dirs::default_state_dir);
    let store = Store::new(&state_dir, &run_dir);

    let mut network = if let Some(path) = &args.config {
        Network::from_file(path)?
    } else if let Some(name) = &args.network {
        vnet_control::validate_network_name(name).map_err(anyhow::Error::msg)?;
        let path = store.definition_path(name);
        if !path.exists() {
            bail!("network {name:?} is not defined (no {})", path.display());
        }
        Network::from_file(&path)?
    } else {
        Network::libvirt_default()
    };
    if let Some(name) = &args.name {
        network.set_name(name)?;
    }
    vnet_control::validate_network_name(network.name()).map_err(anyhow::Error::msg)?;
    if args.check {
        print!("{}", network.to_xml());
        return Ok(());
    }
    for w in network.warnings() {
        eprintln!("switchd: warning: {w}");
    }
    if network.mac().is_none() {
        // the gateway's MAC must not change across restarts: reuse the one generated the
        // first time this network ran without a <mac> (net-define persists its own)
        let path = state_dir.join("macs").join(network.name());
        if let Some(mac) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<vnet_config::MacAddr>().ok())
        {
            network.set_mac(mac);
        } else {
            network.fill_defaults(&[]);
            if let Some(mac) = network.mac() {
                vnet_control::store::write_atomic(&path, format!("{mac}\n").as_bytes())
                    .with_context(|| format!("saving the generated MAC to {}", path.display()))?;
            }
        }
    }
    if network.uuid().is_none() {
        network.fill_defaults(&[]);
    }
    if args.aging_time == 0 {
        bail!("--aging-time must be at least 1 second");
    }
    for d in [&run_dir, &state_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let config = vnet_switch::Config::default()
        .with_fdb_max_entries(args.fdb_max_entries)
        .with_aging_time(Duration::from_secs(args.aging_time))
        .with_max_ports(args.max_ports);
    let mut nat_limits = vnet_nat::Limits::default();
    nat_limits.max_flows = args.nat_max_flows;
    nat_limits.max_flows_per_guest = args.nat_max_flows_per_guest;
    let mut d = daemon::Daemon::new(network, store, config, nat_limits, args.metrics)?;
    d.run()
}
