//! The network lifecycle verbs: define, start, list, dumpxml, autostart, update, ...
//! Names, options, messages and columns follow virsh.

use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args as ClapArgs;
use serde::Serialize;
use vnet_config::Network;
use vnet_control::store::Store;
use vnet_control::{NetUpdate, Request};

use crate::{call, live_info, print_json, Args};

/// How long `net-start` waits for the new switchd to answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Options of `net-list`.
#[derive(Debug, ClapArgs)]
pub(crate) struct ListArgs {
    /// Active and inactive networks.
    #[arg(long, conflicts_with = "inactive")]
    all: bool,
    /// Inactive networks only.
    #[arg(long)]
    inactive: bool,
    /// Print only the names.
    #[arg(long, conflicts_with = "uuid")]
    name: bool,
    /// Print only the UUIDs.
    #[arg(long)]
    uuid: bool,
    /// Persistent networks only.
    #[arg(long, conflicts_with = "transient")]
    persistent: bool,
    /// Transient networks only.
    #[arg(long)]
    transient: bool,
    /// Networks marked autostart only.
    #[arg(long, conflicts_with = "no_autostart")]
    autostart: bool,
    /// Networks not marked autostart only.
    #[arg(long)]
    no_autostart: bool,
}

/// Options of `net-update`.
#[derive(Debug, ClapArgs)]
pub(crate) struct UpdateArgs {
    /// Network name.
    network: String,
    /// add, add-first, add-last, delete or modify.
    command: String,
    /// ip-dhcp-host, ip-dhcp-range, dns-host, dns-txt, dns-srv, portgroup, forward-interface.
    section: String,
    /// The XML element, or a file holding it.
    xml: String,
    /// Which <ip> element (for ip-dhcp-host/range), counting from 0.
    #[arg(long)]
    parent_index: Option<usize>,
    /// Change the running network.
    #[arg(long)]
    live: bool,
    /// Change the persistent definition.
    #[arg(long)]
    config: bool,
    /// Change the running network if active, else the definition (the default).
    #[arg(long, conflicts_with_all = ["live", "config"])]
    current: bool,
}

/// One row of `net-list`.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    uuid: Option<String>,
    active: bool,
    autostart: bool,
    persistent: bool,
    bridge: Option<String>,
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn check_name(name: &str) -> Result<()> {
    vnet_control::validate_network_name(name).map_err(anyhow::Error::msg)
}

/// The persistent definition of `name`, parsed; an error naming the file if it is broken.
fn definition(store: &Store, name: &str) -> Result<Network> {
    check_name(name)?;
    let path = store.definition_path(name);
    if !path.exists() {
        bail!("network not found: no network with matching name '{name}'");
    }
    Ok(Network::from_file(&path)?)
}

/// The live definition of a running network.
fn live(store: &Store, name: &str) -> Result<Network> {
    let xml = call(store, name, &Request::DumpXml)?;
    let xml = xml
        .as_str()
        .ok_or_else(|| anyhow!("malformed dumpxml answer"))?;
    Ok(Network::from_xml(xml)?)
}

/// Every known network, running or defined: (name, its definition if readable).
fn all_networks(store: &Store) -> Result<Vec<(String, Result<Network>)>> {
    let mut names = store.defined_names().context("listing definitions")?;
    for n in store.running_names().context("listing running networks")? {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names.sort();
    Ok(names
        .into_iter()
        .map(|n| {
            let net = if store.is_running(&n) {
                live(store, &n)
            } else {
                definition(store, &n)
            };
            (n, net)
        })
        .collect())
}

/// Checks that `net` may be defined or created beside the existing networks: a name
/// already used with another UUID, a UUID used under another name, or a bridge name in
/// use are refused, as libvirt refuses them. Returns the bridge names taken by others.
fn check_conflicts(store: &Store, net: &Network) -> Result<Vec<String>> {
    let mut taken = Vec::new();
    for (other_name, other) in all_networks(store)? {
        let Ok(other) = other else { continue };
        if other_name == net.name() {
            if let (Some(a), Some(b)) = (net.uuid(), other.uuid()) {
                if a != b {
                    bail!("operation failed: network '{other_name}' already exists with uuid {b}");
                }
            } else if net.uuid().is_none() {
                bail!(
                    "operation failed: network '{other_name}' already exists with uuid {}",
                    other.uuid().unwrap_or("?")
                );
            }
            continue;
        }
        if let (Some(a), Some(b)) = (net.uuid(), other.uuid()) {
            if a == b {
                bail!("operation failed: network '{other_name}' already exists with uuid {b}");
            }
        }
        if let Some(b) = other.bridge_name() {
            if net.bridge_name() == Some(b) {
                bail!("bridge name '{b}' already in use by network '{other_name}'");
            }
            taken.push(b.to_owned());
        }
    }
    Ok(taken)
}

/// Takes the definitions' lock (held until dropped): checks against the other
/// networks and the save that follows them are one step for every other switchctl.
fn lock_definitions(store: &Store) -> Result<std::fs::File> {
    store
        .lock_definitions()
        .with_context(|| format!("locking {}", store.define_lock_path().display()))
}

pub(crate) fn define(args: &Args, store: &Store, file: &Path) -> Result<()> {
    let mut net = Network::from_file(file)?;
    check_name(net.name())?;
    let _lock = lock_definitions(store)?;
    let taken = check_conflicts(store, &net)?;
    net.fill_defaults(&taken);
    store
        .save_definition(net.name(), &net.to_xml())
        .with_context(|| format!("saving {}", store.definition_path(net.name()).display()))?;
    for w in net.warnings() {
        eprintln!("switchctl: warning: {w}");
    }
    if args.json {
        return print_json(&serde_json::json!({ "name": net.name(), "uuid": net.uuid() }));
    }
    println!("Network {} defined from {}", net.name(), file.display());
    Ok(())
}

pub(crate) fn undefine(args: &Args, store: &Store, name: &str) -> Result<()> {
    check_name(name)?;
    let _lock = lock_definitions(store)?;
    if !store.is_defined(name) {
        bail!("network not found: no network with matching name '{name}'");
    }
    store
        .remove_definition(name)
        .context("removing the definition")?;
    if args.json {
        return print_json(&serde_json::Value::Null);
    }
    println!("Network {name} has been undefined");
    Ok(())
}

/// The switchd binary: `$VNET_SWITCHD`, else beside this switchctl, else from `PATH`.
fn switchd_path() -> PathBuf {
    if let Some(p) = std::env::var_os("VNET_SWITCHD") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("switchd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("switchd"))
}

/// Starts a detached switchd with `how` (`--network NAME` or `--config FILE`) and waits
/// until it answers on its control socket.
fn spawn_switchd(store: &Store, name: &str, how: &[&std::ffi::OsStr]) -> Result<()> {
    vnet_control::store::create_private_dir(store.run_dir())
        .with_context(|| format!("creating {}", store.run_dir().display()))?;
    let log_path = store.log_path(name);
    let log = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(vnet_control::store::FILE_MODE)
        .open(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = Command::new(switchd_path());
    cmd.args(how)
        .arg("--run-dir")
        .arg(store.run_dir())
        .arg("--state-dir")
        .arg(store.state_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", switchd_path().display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if store.is_running(name) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let why = log
                .lines()
                .rev()
                .find(|l| l.contains("error"))
                .map(|l| l.trim_start_matches("switchd: error: ").to_owned())
                .unwrap_or_else(|| format!("switchd exited with {status}"));
            bail!("failed to start network '{name}': {why}");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            bail!(
                "failed to start network '{name}': switchd did not answer within {} s (log: {})",
                START_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn create(args: &Args, store: &Store, file: &Path) -> Result<()> {
    let mut net = Network::from_file(file)?;
    check_name(net.name())?;
    if store.is_running(net.name()) {
        bail!(
            "operation failed: network '{}' is already active",
            net.name()
        );
    }
    let lock = lock_definitions(store)?;
    let taken = check_conflicts(store, &net)?;
    net.fill_defaults(&taken);
    let tmp = store.run_dir().join(format!(".{}.create.xml", net.name()));
    vnet_control::store::write_atomic(&tmp, net.to_xml().as_bytes())
        .with_context(|| format!("writing {}", tmp.display()))?;
    let r = spawn_switchd(store, net.name(), &["--config".as_ref(), tmp.as_os_str()]);
    drop(lock);
    let _ = std::fs::remove_file(&tmp);
    r?;
    if args.json {
        return print_json(&serde_json::json!({ "name": net.name(), "uuid": net.uuid() }));
    }
    println!("Network {} created from {}", net.name(), file.display());
    Ok(())
}

pub(crate) fn start(args: &Args, store: &Store, name: &str) -> Result<()> {
    definition(store, name)?;
    if store.is_running(name) {
        bail!("operation failed: network '{name}' is already active");
    }
    spawn_switchd(store, name, &["--network".as_ref(), name.as_ref()])?;
    if args.json {
        return print_json(&serde_json::Value::Null);
    }
    println!("Network {name} started");
    Ok(())
}

pub(crate) fn destroy(args: &Args, store: &Store, name: &str) -> Result<()> {
    check_name(name)?;
    if !store.is_running(name) {
        if store.is_defined(name) {
            bail!("operation failed: network '{name}' is not active");
        }
        bail!("network not found: no network with matching name '{name}'");
    }
    call(store, name, &Request::Shutdown)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.socket_path(name).exists() {
        if Instant::now() >= deadline {
            bail!("network '{name}' did not stop within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if args.json {
        return print_json(&serde_json::Value::Null);
    }
    println!("Network {name} destroyed");
    Ok(())
}

pub(crate) fn autostart(args: &Args, store: &Store, name: &str, on: bool) -> Result<()> {
    check_name(name)?;
    if !store.is_defined(name) {
        if store.is_running(name) {
            bail!("Requested operation is not valid: cannot set autostart for transient network");
        }
        bail!("network not found: no network with matching name '{name}'");
    }
    store
        .set_autostart(name, on)
        .context("writing the autostart mark")?;
    if args.json {
        return print_json(&serde_json::Value::Null);
    }
    if on {
        println!("Network {name} marked as autostarted");
    } else {
        println!("Network {name} unmarked as autostarted");
    }
    Ok(())
}

pub(crate) fn autostart_all(args: &Args, store: &Store) -> Result<()> {
    let mut failed = 0;
    for name in store.defined_names()? {
        if !store.is_autostart(&name) || store.is_running(&name) {
            continue;
        }
        match spawn_switchd(store, &name, &["--network".as_ref(), name.as_ref()]) {
            Ok(()) if !args.json => println!("Network {name} started"),
            Ok(()) => {}
            Err(e) => {
                eprintln!("switchctl: error: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} autostart network(s) failed to start");
    }
    Ok(())
}

pub(crate) fn list(args: &Args, store: &Store, l: &ListArgs) -> Result<()> {
    let mut rows = Vec::new();
    for (name, net) in all_networks(store)? {
        let net = match net {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("switchctl: warning: network '{name}': {e:#}");
                None
            }
        };
        let row = Row {
            uuid: net.as_ref().and_then(|n| n.uuid().map(str::to_owned)),
            bridge: net
                .as_ref()
                .and_then(|n| n.bridge_name().map(str::to_owned)),
            active: store.is_running(&name),
            autostart: store.is_autostart(&name),
            persistent: store.is_defined(&name),
            name,
        };
        let state_ok = if l.all {
            true
        } else if l.inactive {
            !row.active
        } else {
            row.active
        };
        let keep = state_ok
            && (!l.persistent || row.persistent)
            && (!l.transient || !row.persistent)
            && (!l.autostart || row.autostart)
            && (!l.no_autostart || !row.autostart);
        if keep {
            rows.push(row);
        }
    }
    if args.json {
        return print_json(&rows);
    }
    if l.name || l.uuid {
        for r in &rows {
            if l.name {
                println!("{}", r.name);
            } else {
                println!("{}", r.uuid.as_deref().unwrap_or(""));
            }
        }
        return Ok(());
    }
    println!(
        " {:<20} {:<10} {:<12} Persistent",
        "Name", "State", "Autostart"
    );
    println!("{}", "-".repeat(56));
    for r in &rows {
        let state = if r.active { "active" } else { "inactive" };
        println!(
            " {:<20} {:<10} {:<12} {}",
            r.name,
            state,
            yes_no(r.autostart),
            yes_no(r.persistent)
        );
    }
    println!();
    Ok(())
}

pub(crate) fn info(args: &Args, store: &Store, name: &str) -> Result<()> {
    check_name(name)?;
    let active = store.is_running(name);
    let net = if active {
        live(store, name)?
    } else {
        definition(store, name)?
    };
    let li = if active { live_info(store, name) } else { None };
    if args.json {
        return print_json(&serde_json::json!({
            "name": name,
            "uuid": net.uuid(),
            "active": active,
            "persistent": store.is_defined(name),
            "autostart": store.is_autostart(name),
            "bridge": net.bridge_name(),
            "live": li,
        }));
    }
    println!("{:<16}{}", "Name:", name);
    println!("{:<16}{}", "UUID:", net.uuid().unwrap_or(""));
    println!("{:<16}{}", "Active:", yes_no(active));
    println!("{:<16}{}", "Persistent:", yes_no(store.is_defined(name)));
    println!("{:<16}{}", "Autostart:", yes_no(store.is_autostart(name)));
    println!("{:<16}{}", "Bridge:", net.bridge_name().unwrap_or(""));
    if let Some(i) = li {
        println!("{:<16}{}", "Mode:", i.mode);
        println!("{:<16}{}", "PID:", i.pid);
        println!("{:<16}{}", "Ports:", i.ports);
        println!(
            "{:<16}{} / {}",
            "FDB entries:", i.fdb_entries, i.fdb_max_entries
        );
    }
    Ok(())
}

pub(crate) fn dumpxml(store: &Store, name: &str, inactive: bool) -> Result<()> {
    check_name(name)?;
    let net = if !inactive && store.is_running(name) {
        live(store, name)?
    } else {
        definition(store, name)?
    };
    print!("{}", net.to_xml());
    Ok(())
}

pub(crate) fn uuid(store: &Store, name: &str) -> Result<()> {
    check_name(name)?;
    let net = if store.is_running(name) {
        live(store, name)?
    } else {
        definition(store, name)?
    };
    println!("{}", net.uuid().unwrap_or(""));
    Ok(())
}

pub(crate) fn name(store: &Store, uuid: &str) -> Result<()> {
    let want = uuid.to_ascii_lowercase();
    for (name, net) in all_networks(store)? {
        if net
            .ok()
            .and_then(|n| n.uuid().map(str::to_owned))
            .as_deref()
            == Some(&want)
        {
            println!("{name}");
            return Ok(());
        }
    }
    bail!("network not found: no network with matching uuid '{uuid}'")
}

pub(crate) fn edit(store: &Store, name: &str) -> Result<()> {
    let net = definition(store, name)?;
    let original = net.to_xml();
    let tmp = std::env::temp_dir().join(format!("vnet-edit-{name}-{}.xml", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(vnet_control::store::FILE_MODE)
        .open(&tmp)
        .and_then(|mut f| f.write_all(original.as_bytes()))
        .with_context(|| format!("writing {}", tmp.display()))?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_owned());
    let result = loop {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(&tmp)
            .status()
            .with_context(|| format!("running editor {editor}"));
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => break Err(anyhow!("editor {editor} exited with {s}")),
            Err(e) => break Err(e),
        }
        let edited = std::fs::read_to_string(&tmp).unwrap_or_default();
        if edited == original {
            println!("Network {name} XML configuration not changed.");
            break Ok(());
        }
        let parsed = Network::from_xml(&edited)
            .map_err(anyhow::Error::from)
            .and_then(|n| {
                if n.name() != name {
                    bail!("editing cannot rename network '{name}' to '{}'", n.name());
                }
                if n.uuid().is_some() && n.uuid() != net.uuid() {
                    bail!("editing cannot change the uuid of network '{name}'");
                }
                Ok(n)
            });
        match parsed {
            Ok(mut n) => {
                n.fill_defaults(&[]);
                let saved = lock_definitions(store).and_then(|_lock| {
                    store
                        .save_definition(name, &n.to_xml())
                        .map_err(anyhow::Error::from)
                });
                if let Err(e) = saved {
                    break Err(anyhow!("saving the definition: {e}"));
                }
                println!("Network {name} XML configuration edited.");
                break Ok(());
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                eprint!("Failed. Try again? [y,n]: ");
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                let _ = std::io::stdin().lock().read_line(&mut answer);
                if !answer.trim().eq_ignore_ascii_case("y") {
                    break Err(anyhow!("network '{name}' not changed"));
                }
            }
        }
    };
    let _ = std::fs::remove_file(&tmp);
    result
}

pub(crate) fn update(args: &Args, store: &Store, u: &UpdateArgs) -> Result<()> {
    check_name(&u.network)?;
    let xml = if u.xml.trim_start().starts_with('<') {
        u.xml.clone()
    } else {
        std::fs::read_to_string(&u.xml).with_context(|| format!("reading {}", u.xml))?
    };
    let command: vnet_config::UpdateCommand = u.command.parse().map_err(|e| anyhow!("{e}"))?;
    let section: vnet_config::UpdateSection = u.section.parse().map_err(|e| anyhow!("{e}"))?;
    let running = store.is_running(&u.network);
    let defined = store.is_defined(&u.network);
    let (do_live, do_config) = if u.live || u.config {
        (u.live, u.config)
    } else if running {
        (true, false)
    } else {
        (false, true)
    };
    if do_live && !running {
        bail!(
            "Requested operation is not valid: network '{}' is not active",
            u.network
        );
    }
    if do_config && !defined {
        bail!(
            "Requested operation is not valid: network '{}' is transient",
            u.network
        );
    }
    // validate against the persistent definition first, so a failure changes nothing
    let _lock = do_config.then(|| lock_definitions(store)).transpose()?;
    let new_def = if do_config {
        let mut d = definition(store, &u.network)?;
        d.update(command, section, u.parent_index, &xml)?;
        Some(d)
    } else {
        None
    };
    if do_live {
        call(
            store,
            &u.network,
            &Request::NetUpdate(NetUpdate {
                command: u.command.clone(),
                section: u.section.clone(),
                parent_index: u.parent_index,
                xml: xml.clone(),
            }),
        )?;
    }
    if let Some(d) = new_def {
        store
            .save_definition(&u.network, &d.to_xml())
            .context("saving the definition")?;
    }
    if args.json {
        return print_json(&serde_json::json!({ "live": do_live, "config": do_config }));
    }
    match (do_live, do_config) {
        (true, true) => println!(
            "Updated network {} persistent config and live state",
            u.network
        ),
        (true, false) => println!("Updated network {} live state", u.network),
        _ => println!("Updated network {} persistent config", u.network),
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for seconds since the Unix epoch.
fn format_time(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // civil-from-days (H. Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn require_running(store: &Store, name: &str) -> Result<()> {
    check_name(name)?;
    if !store.is_running(name) {
        if store.is_defined(name) {
            bail!("Requested operation is not valid: network '{name}' is not active");
        }
        bail!("network not found: no network with matching name '{name}'");
    }
    Ok(())
}

/// Arguments of `port-forward-add` and `port-forward-del`.
#[derive(Debug, clap::Args)]
pub(crate) struct ForwardArgs {
    /// Network name.
    network: String,
    /// The forward: PROTO:[ADDRESS:]PORT[-END]:GUEST[:GUEST_PORT] (del: PROTO:[ADDRESS:]PORT).
    spec: String,
    /// Change the running network.
    #[arg(long)]
    live: bool,
    /// Change the persistent definition.
    #[arg(long)]
    config: bool,
    /// The running network if active, else the definition (the default).
    #[arg(long)]
    current: bool,
}

/// `PROTO:[ADDRESS:]PORT[...]` → (proto, address, port): what names a forward to remove.
fn forward_key(spec: &str) -> Result<(vnet_config::ForwardProto, Option<std::net::IpAddr>, u16)> {
    vnet_config::PortForward::parse_key(spec).map_err(|e| anyhow!("{e}"))
}

pub(crate) fn port_forward(args: &Args, store: &Store, f: &ForwardArgs, add: bool) -> Result<()> {
    check_name(&f.network)?;
    let running = store.is_running(&f.network);
    let defined = store.is_defined(&f.network);
    let (do_live, do_config) = if f.live || f.config {
        (f.live, f.config)
    } else if running {
        (true, defined)
    } else {
        (false, true)
    };
    if do_live && !running {
        bail!(
            "Requested operation is not valid: network '{}' is not active",
            f.network
        );
    }
    if do_config && !defined {
        bail!(
            "Requested operation is not valid: network '{}' is transient",
            f.network
        );
    }
    // validate against the persistent definition first, so a failure changes nothing
    let _lock = do_config.then(|| lock_definitions(store)).transpose()?;
    let new_def = if do_config {
        let mut d = definition(store, &f.network)?;
        if add {
            let fwd = vnet_config::PortForward::parse_spec(&f.spec).map_err(|e| anyhow!("{e}"))?;
            d.add_port_forward(fwd).map_err(|e| anyhow!("{e}"))?;
        } else {
            let (proto, address, port) = forward_key(&f.spec)?;
            d.remove_port_forward(proto, address, port)
                .map_err(|e| anyhow!("{e}"))?;
        }
        Some(d)
    } else {
        None
    };
    if do_live {
        let spec = f.spec.clone();
        let req = if add {
            Request::PortForwardAdd { spec }
        } else {
            let (proto, address, port) = forward_key(&f.spec)?;
            let proto = proto.as_str();
            let spec = match address {
                Some(std::net::IpAddr::V6(a)) => format!("{proto}:[{a}]:{port}"),
                Some(a) => format!("{proto}:{a}:{port}"),
                None => format!("{proto}:{port}"),
            };
            Request::PortForwardDel { spec }
        };
        call(store, &f.network, &req)?;
    }
    if let Some(d) = new_def {
        store
            .save_definition(&f.network, &d.to_xml())
            .context("saving the definition")?;
    }
    if args.json {
        return print_json(&serde_json::json!({ "live": do_live, "config": do_config }));
    }
    println!(
        "Port forward {} {} network {}{}",
        f.spec,
        if add { "added to" } else { "removed from" },
        f.network,
        match (do_live, do_config) {
            (true, true) => " (live and persistent)",
            (true, false) => " (live)",
            _ => " (persistent)",
        }
    );
    Ok(())
}

pub(crate) fn port_forward_list(args: &Args, store: &Store, name: &str) -> Result<()> {
    check_name(name)?;
    let rows: Vec<String> = if store.is_running(name) {
        serde_json::from_value(call(store, name, &Request::PortForwardList)?)?
    } else {
        definition(store, name)?
            .port_forwards()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    if args.json {
        return print_json(&rows);
    }
    for r in &rows {
        println!("{r}");
    }
    Ok(())
}

pub(crate) fn nat_flows(args: &Args, store: &Store, name: &str) -> Result<()> {
    require_running(store, name)?;
    let v = call(store, name, &Request::NatFlows)?;
    let rows: Vec<vnet_control::NatFlowRow> = serde_json::from_value(v)?;
    if args.json {
        return print_json(&rows);
    }
    println!(
        " {:<5} {:<21} {:<21} {:<21} {:<12} {:>12} {:>12} {:>6}",
        "Proto", "Guest", "Remote", "Host side", "State", "Bytes out", "Bytes in", "Age"
    );
    println!("{}", "-".repeat(118));
    for r in &rows {
        println!(
            " {:<5} {:<21} {:<21} {:<21} {:<12} {:>12} {:>12} {:>5}s{}",
            r.proto,
            r.guest,
            r.remote,
            r.target,
            r.state,
            r.bytes_out,
            r.bytes_in,
            r.age_secs,
            if r.inbound { " (inbound)" } else { "" }
        );
    }
    println!();
    Ok(())
}

pub(crate) fn dns_records(args: &Args, store: &Store, name: &str) -> Result<()> {
    require_running(store, name)?;
    let v = call(store, name, &Request::DnsRecords)?;
    let rows: Vec<vnet_control::DnsRecordRow> = serde_json::from_value(v)?;
    if args.json {
        return print_json(&rows);
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    println!(
        " {:<width$}  {:<5}  {:<12}  Value",
        "Name", "Type", "Source"
    );
    println!("{}", "-".repeat(width + 40));
    for r in &rows {
        println!(
            " {:<width$}  {:<5}  {:<12}  {}",
            r.name, r.rtype, r.source, r.value
        );
    }
    println!();
    Ok(())
}

pub(crate) fn dhcp_leases(args: &Args, store: &Store, name: &str, mac: Option<&str>) -> Result<()> {
    require_running(store, name)?;
    let v = call(store, name, &Request::DhcpLeases)?;
    let mut rows: Vec<vnet_control::LeaseRow> = serde_json::from_value(v)?;
    if let Some(m) = mac {
        let m = m.to_ascii_lowercase();
        rows.retain(|r| r.mac == m);
    }
    if args.json {
        return print_json(&rows);
    }
    println!(
        " {:<21} {:<19} {:<10} {:<20} {:<16} Client ID or DUID",
        "Expiry Time", "MAC address", "Protocol", "IP address", "Hostname"
    );
    println!("{}", "-".repeat(110));
    for r in &rows {
        println!(
            " {:<21} {:<19} {:<10} {:<20} {:<16} {}",
            r.expiry.map_or_else(|| "never".to_owned(), format_time),
            r.mac,
            r.protocol,
            r.ip,
            r.hostname.as_deref().unwrap_or("-"),
            r.client_id.as_deref().unwrap_or("-")
        );
    }
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_time(1_795_398_791), "2026-11-23 01:53:11");
    }
}
