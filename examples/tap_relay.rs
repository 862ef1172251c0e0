//! An experiment for the packet path: does a second datapath thread pay off?
//!
//! Two TAPs (`eth0` in each of two namespaces, offloads on unless `--no-offloads`),
//! frames switched between them by a `vnet_switch::Switch` behind a mutex (the shared
//! forwarding database a multi-threaded switchd would have), moved by one thread
//! polling both TAPs (as switchd does) or by two threads, each reading one TAP and
//! writing the other (each carries the receiving guest's stack work of its direction,
//! which runs inside the TAP write). `scripts/bench-threads.sh` runs iperf3 through
//! both, and through switchd, in one run.
//!
//! ```text
//! tap_relay --threads 1|2 [--no-offloads] NS1 NS2     (runs until SIGTERM/SIGINT)
//! ```

use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use vnet_ports::{Drain, FrameBuf, NetnsRef, Step, Tap, TapOptions};
use vnet_switch::{Config, Instant, PortConfig, PortId, Switch, Verdict};

struct Shared {
    sw: Mutex<Switch>,
    epoch: std::time::Instant,
    stop: AtomicBool,
}

/// Reads the `rx` TAPs until `EAGAIN` (64 frames per turn at most, with the same
/// [`Drain`] switchd uses), switches each frame and writes it to its egress among `tx`.
fn worker(rx: Vec<(PortId, Tap)>, mut tx: Vec<(PortId, Tap)>, shared: &Shared) -> Result<()> {
    let mut poll = Poll::new()?;
    let mut rx = rx;
    for (i, (_, t)) in rx.iter().enumerate() {
        use std::os::fd::AsRawFd;
        poll.registry()
            .register(&mut SourceFd(&t.as_raw_fd()), Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(16);
    let mut buf = FrameBuf::new();
    let mut ready = vec![false; rx.len()];
    while !shared.stop.load(Ordering::Relaxed) {
        let timeout = if ready.iter().any(|r| *r) {
            Some(Duration::ZERO)
        } else {
            Some(Duration::from_millis(100))
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for e in &events {
            if let Some(r) = ready.get_mut(e.token().0) {
                *r = true;
            }
        }
        for (i, (ingress, tap)) in rx.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            let mut drain = Drain::new(64);
            while let Some(step) = drain.next(tap, &mut buf) {
                match step {
                    Step::Frame => {}
                    Step::Gone(e) => return Err(e.into()),
                    _ => continue,
                }
                let now = Instant::from_micros(
                    u64::try_from(shared.epoch.elapsed().as_micros()).unwrap_or(u64::MAX),
                );
                let verdict = match shared.sw.lock() {
                    Ok(mut sw) => sw.handle_frame(now, *ingress, buf.frame()),
                    Err(_) => bail!("switch lock poisoned"),
                };
                match verdict {
                    Verdict::Forward(egress) => {
                        if let Some((_, t)) = tx.iter_mut().find(|(id, _)| *id == egress) {
                            let _ = t.send(&buf);
                        }
                    }
                    Verdict::Flood => {
                        for (_, t) in tx.iter_mut().filter(|(id, _)| id != ingress) {
                            let _ = t.send(&buf);
                        }
                    }
                    Verdict::Drop(_) => {}
                }
            }
            if drain.drained() {
                ready[i] = false;
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let mut threads = 1;
    let mut offloads = true;
    let mut ns = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => {
                threads = args.next().context("--threads N")?.parse()?;
            }
            "--no-offloads" => offloads = false,
            _ => ns.push(a),
        }
    }
    let [ns1, ns2] = ns.as_slice() else {
        bail!("usage: tap_relay --threads 1|2 [--no-offloads] NS1 NS2");
    };
    if !(1..=2).contains(&threads) {
        bail!("--threads is 1 or 2");
    }
    let mut sw = Switch::new(Config::default());
    let mut taps = Vec::new();
    for n in [ns1, ns2] {
        let mut o = TapOptions::default();
        o.name = Some("eth0".into());
        o.netns = Some(NetnsRef::new(n));
        o.offloads = offloads;
        let id = sw.add_port(PortConfig::default())?;
        taps.push((id, Tap::create(&o).with_context(|| format!("TAP in {n}"))?));
    }
    let shared = Arc::new(Shared {
        sw: Mutex::new(sw),
        epoch: std::time::Instant::now(),
        stop: AtomicBool::new(false),
    });
    let term = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, term.clone())?;
    let tx = |taps: &[(PortId, Tap)]| -> Result<Vec<(PortId, Tap)>> {
        taps.iter()
            .map(|(id, t)| Ok((*id, t.try_clone()?)))
            .collect()
    };
    let mut handles = Vec::new();
    if threads == 1 {
        let txs = tx(&taps)?;
        let s = shared.clone();
        handles.push(std::thread::spawn(move || worker(taps, txs, &s)));
    } else {
        let txs = tx(&taps)?;
        for (id, t) in taps {
            let mine: Vec<(PortId, Tap)> = txs
                .iter()
                .filter(|(o, _)| *o != id)
                .map(|(o, t)| Ok((*o, t.try_clone()?)))
                .collect::<Result<_>>()?;
            let s = shared.clone();
            handles.push(std::thread::spawn(move || worker(vec![(id, t)], mine, &s)));
        }
    }
    eprintln!("tap_relay: {threads} thread(s), offloads {offloads}: {ns1}/eth0 <-> {ns2}/eth0");
    while !term.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    shared.stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
    }
    Ok(())
}
