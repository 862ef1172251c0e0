//! Criterion benches of the switch core: known-unicast forwarding decisions per second.
//!
//! `cargo bench --bench switch_core`. Each iteration rewrites the destination MAC of one
//! frame buffer in place (6 bytes) and asks the switch for a verdict; the source is a
//! station already learned, so every iteration is a refresh plus a lookup, as in steady
//! state. Destinations cycle through every learned MAC in a scrambled order so the table
//! is touched the way real traffic touches it, not one hot cache line.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vnet_switch::{Config, Instant, MacAddr, PortConfig, PortId, Switch, Verdict};

const PORTS: usize = 16;

fn station(i: u64) -> MacAddr {
    // locally administered unicast, sequential: the pattern real VM MACs follow
    MacAddr::from_u64(0x5254_0000_0000 | i)
}

/// A switch with `n` stations learned, spread across the ports.
fn populated(n: u64) -> (Switch, Vec<PortId>) {
    let cfg = Config::default()
        .with_fdb_max_entries(usize::try_from(n).unwrap_or(usize::MAX) + 16)
        .with_aging_time(Duration::from_secs(3600));
    let mut sw = Switch::new(cfg);
    let ports: Vec<PortId> = (0..PORTS)
        .map(|_| sw.add_port(PortConfig::default()).unwrap())
        .collect();
    let mut f = [0u8; 64];
    f[..6].copy_from_slice(&MacAddr::BROADCAST.0);
    for i in 0..n {
        f[6..12].copy_from_slice(&station(i).0);
        let p = ports[usize::try_from(i).unwrap_or(0) % PORTS];
        sw.handle_frame(Instant::from_secs(1), p, &f);
    }
    assert_eq!(sw.fdb().len() as u64, n);
    (sw, ports)
}

fn known_unicast(c: &mut Criterion) {
    let mut g = c.benchmark_group("known_unicast");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    for (entries, frame_len) in [
        (1_000u64, 64usize),
        (1_000, 65_536),
        (65_536, 64),
        (65_536, 65_536),
        (1 << 20, 64),
    ] {
        let (mut sw, ports) = populated(entries);
        let mut frame = vec![0u8; frame_len];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        // the sender: station 0, on port 0
        frame[6..12].copy_from_slice(&station(0).0);
        // destinations in a scrambled order covering the table (odd multiplier mod 2^k)
        let dsts: Vec<[u8; 6]> = (0..entries.min(1 << 16))
            .map(|i| station(i.wrapping_mul(0x9E37_79B9) % entries).0)
            .filter(|d| *d != station(0).0)
            .collect();
        let now = Instant::from_secs(2);
        let id = BenchmarkId::new(format!("{entries}_entries"), format!("{frame_len}B"));
        g.bench_function(id, |b| {
            let mut k = 0usize;
            b.iter(|| {
                frame[..6].copy_from_slice(&dsts[k]);
                k = if k + 1 == dsts.len() { 0 } else { k + 1 };
                let v = sw.handle_frame(now, ports[0], black_box(&frame));
                debug_assert!(matches!(v, Verdict::Forward(_)));
                black_box(v)
            });
        });
    }
    g.finish();
}

criterion_group!(benches, known_unicast);
criterion_main!(benches);
