//! `switchd`: runs one vnet network (one L2 segment) until SIGTERM or SIGINT.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use vnet_config::Network;
use vnet_control::store::Store;

/// An event worth a log line (a port's life, leases, refused flows, ...), at level
/// info; `warn!` for what an operator should act on. See [`init_logging`].
macro_rules! log {
    ($($t:tt)*) => { tracing::info!($($t)*) };
}

/// A warning log line.
macro_rules! warn {
    ($($t:tt)*) => { tracing::warn!($($t)*) };
}

/// One line per event on stderr, written with a single `write`: `switchd: message`
/// (`switchd: warning: message` above info), preceded by the uptime unless journald
/// reads the stream (`JOURNAL_STREAM`), which stamps lines itself.
struct Line {
    start: std::time::Instant,
    stamp: bool,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Line
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut w: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if self.stamp {
            write!(w, "[{:>10.3}] ", self.start.elapsed().as_secs_f64())?;
        }
        w.write_str("switchd: ")?;
        match *event.metadata().level() {
            tracing::Level::INFO => {}
            tracing::Level::WARN => w.write_str("warning: ")?,
            l => write!(w, "{}: ", l.as_str().to_ascii_lowercase())?,
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Logs to stderr at `level` (`RUST_LOG`, when set, decides instead).
fn init_logging(level: &str) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => EnvFilter::try_new(level)
            .with_context(|| format!("--log-level {level:?}: not a level or filter"))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(Line {
            start: std::time::Instant::now(),
            stamp: std::env::var_os("JOURNAL_STREAM").is_none(),
        })
        .try_init()
        .map_err(|e| anyhow::anyhow!("starting the logger: {e}"))
}

mod daemon;

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
    /// Frames per second each port may have flooded (broadcast, multicast, unknown
    /// unicast); past it they are dropped and counted (flood-limited). 0: no limit.
    #[arg(long, value_name = "PPS", default_value_t = 20_000)]
    flood_limit: u32,
    /// NAT: bound on flows (TCP connections, UDP and ping flows) in the network.
    #[arg(long, default_value_t = 4096)]
    nat_max_flows: usize,
    /// DHCP and DHCPv6: bound on the clients (MACs, DUIDs) one port may have leases or
    /// offers for, so a guest sending with made-up client ids cannot take the pool. 0:
    /// no bound.
    #[arg(long, value_name = "N", default_value_t = 32)]
    dhcp_max_clients_per_port: usize,
    /// Threads that write frames to TAP ports without offloads, off the main loop (a
    /// TAP write runs the receiving guest's network stack, once per segment on such a
    /// port). 0: the loop writes them itself.
    #[arg(long, value_name = "N", default_value_t = 2)]
    writer_threads: usize,
    /// Keep polling for frames, without sleeping, this many microseconds after the
    /// last one (lower latency for a CPU spent spinning meanwhile). 0: off.
    #[arg(long, value_name = "MICROS", default_value_t = 0)]
    busy_poll: u64,
    /// NAT: bound on flows per guest address.
    #[arg(long, default_value_t = 1024)]
    nat_max_flows_per_guest: usize,
    /// Serve Prometheus metrics on ADDR:PORT (off by default; keep it on loopback).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Let this group use the network's sockets (control, QEMU stream and dgram: mode
    /// 0660, group-owned); by default they are owner-only.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// Once the network is up (its devices and sockets open), run as this user, keeping
    /// only the capabilities of --caps. The state and run dirs must be writable by it.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Capabilities kept with --user, comma-separated (`none` for none). The default
    /// lets `port-add` make TAPs (net_admin), attach interfaces (net_raw) and port
    /// forwards bind ports below 1024 (net_bind_service); `port-add --netns` also needs
    /// sys_admin.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "net_admin,net_raw,net_bind_service",
        requires = "user"
    )]
    caps: String,
    /// Log level: error, warn, info (default), debug, trace; or a filter such as
    /// `info,switchd=debug`. RUST_LOG, when set, takes precedence.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
}

/// Raises the soft limit on open descriptors to the hard limit: every NAT flow holds a
/// host socket, every port and control connection a descriptor, and the default soft
/// limit (1024) is below what the NAT bound allows. Returns the limit now in force.
fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// Descriptors kept back from NAT flows for ports, control connections, the lease
/// database and the other sockets switchd opens.
const FD_RESERVE: u64 = 256;

fn main() {
    if let Err(e) = run() {
        eprintln!("switchd: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    init_logging(&args.log_level)?;
    // owner-only state: every file and directory switchd makes (sockets are given their
    // modes explicitly)
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
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
    let euid = nix::unistd::geteuid().as_raw();
    if !args.check {
        store.recover_live(&mut network, euid);
    }
    if args.check {
        print!("{}", network.to_xml());
        return Ok(());
    }
    for w in network.warnings() {
        warn!("{w}");
    }
    store.keep_mac(&mut network)?;
    if network.uuid().is_none() {
        network.fill_defaults(&[]);
    }
    if args.aging_time == 0 {
        bail!("--aging-time must be at least 1 second");
    }
    vnet_control::start::create_dirs(&[&run_dir, &state_dir])?;
    store.tighten_state_dirs(euid);
    let nofile = raise_nofile_limit();
    let config = vnet_switch::Config::default()
        .with_fdb_max_entries(args.fdb_max_entries)
        .with_aging_time(Duration::from_secs(args.aging_time))
        .with_max_ports(args.max_ports)
        .with_flood_limit(args.flood_limit);
    let mut nat_limits = vnet_nat::Limits::default();
    nat_limits.max_flows = args.nat_max_flows;
    let fd_budget = usize::try_from(nofile.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    if nat_limits.max_flows > fd_budget {
        warn!(
            "open-file limit {nofile}: NAT flows bounded to {fd_budget} (not {}); raise LimitNOFILE",
            nat_limits.max_flows
        );
        nat_limits.max_flows = fd_budget;
    }
    nat_limits.max_flows_per_guest = args.nat_max_flows_per_guest;
    let dhcp_port_cap =
        (args.dhcp_max_clients_per_port > 0).then_some(args.dhcp_max_clients_per_port);
    let mut d = daemon::Daemon::new(
        network,
        store,
        config,
        nat_limits,
        args.metrics,
        dhcp_port_cap,
    )?;
    if let Some(group) = &args.socket_group {
        let g = nix::unistd::Group::from_name(group)
            .with_context(|| format!("looking up group {group:?}"))?
            .with_context(|| format!("no group {group:?}"))?;
        d.store()
            .grant_group(d.name(), g.gid.as_raw())
            .context("opening the sockets to --socket-group")?;
        log!("sockets open to group {group}");
    }
    if let Some(user) = &args.user {
        let u = nix::unistd::User::from_name(user)
            .with_context(|| format!("looking up user {user:?}"))?
            .with_context(|| format!("no user {user:?}"))?;
        d.store()
            .hand_over_state(d.name(), u.uid.as_raw(), u.gid.as_raw())?;
        drop_privileges(&u, &args.caps)?;
    }
    // after the drop: what the ports file (rewritten by the running network, so by the
    // user it runs as) asks for is done with no more privilege than that user has
    d.restore_ports();
    d.start_writers(args.writer_threads)?;
    d.set_busy_poll(Duration::from_micros(args.busy_poll));
    d.run()
}

/// Becomes `user` (its uid, gid, no supplementary groups) keeping only the capabilities
/// in `keep` (comma-separated names such as `net_admin`, or `none`), once the network's
/// devices and sockets are open. Also sets no-new-privs.
fn drop_privileges(u: &nix::unistd::User, keep: &str) -> Result<()> {
    use caps::{CapSet, Capability, CapsHashSet};
    use nix::unistd::{setgid, setgroups, setuid};
    let mut wanted = CapsHashSet::new();
    for name in keep
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != "none")
    {
        let full = format!("CAP_{}", name.to_ascii_uppercase());
        let cap: Capability = full
            .parse()
            .map_err(|_| anyhow::anyhow!("--caps: unknown capability {name:?}"))?;
        wanted.insert(cap);
    }
    nix::sys::prctl::set_keepcaps(true).context("prctl(PR_SET_KEEPCAPS)")?;
    setgroups(&[]).context("dropping supplementary groups")?;
    setgid(u.gid).with_context(|| format!("setgid({})", u.gid))?;
    setuid(u.uid).with_context(|| format!("setuid({})", u.uid))?;
    // after setuid the permitted set is kept (KEEPCAPS) and the effective one cleared:
    // keep only what was asked for, in both
    caps::set(None, CapSet::Permitted, &wanted).context("setting the permitted capabilities")?;
    caps::set(None, CapSet::Effective, &wanted).context("setting the effective capabilities")?;
    caps::clear(None, CapSet::Inheritable).context("clearing inheritable capabilities")?;
    nix::sys::prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS)")?;
    let mut names: Vec<String> = wanted.iter().map(ToString::to_string).collect();
    names.sort();
    log!(
        "running as {} (uid {}, gid {}), capabilities: {}",
        u.name,
        u.uid,
        u.gid,
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    );
    Ok(())
}
