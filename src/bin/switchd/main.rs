//! `switchd`: runs one vnet network (one L2 segment) until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

mod daemon;

/// Runs one vnet virtual network: a user-space learning switch whose ports are TAP
/// devices, managed with `switchctl`.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Network name (the control socket is RUN_DIR/NAME.ctl).
    #[arg(long, default_value = "default")]
    name: String,
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
}

fn main() {
    if let Err(e) = run() {
        eprintln!("switchd: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    if let Err(e) = vnet_control::validate_network_name(&args.name) {
        bail!(e);
    }
    if args.aging_time == 0 {
        bail!("--aging-time must be at least 1 second");
    }
    let run_dir = args
        .run_dir
        .unwrap_or_else(vnet_control::dirs::default_run_dir);
    let state_dir = args
        .state_dir
        .unwrap_or_else(vnet_control::dirs::default_state_dir);
    for d in [&run_dir, &state_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let config = vnet_switch::Config::default()
        .with_fdb_max_entries(args.fdb_max_entries)
        .with_aging_time(Duration::from_secs(args.aging_time))
        .with_max_ports(args.max_ports);
    let mut d = daemon::Daemon::new(&args.name, &run_dir, config)?;
    d.run()
}
