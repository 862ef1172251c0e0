//! The switch allocates nothing per frame in steady state: a counting global allocator
//! watches two million decisions (known unicast, floods, learning refreshes, drops,
//! aging runs) after a warm-up of a million.

use std::alloc::System;
use std::time::Duration;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use vnet_switch::{Config, Instant, MacAddr, PortConfig, Switch, Verdict};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

#[test]
fn two_million_decisions_allocate_nothing() {
    let mut sw = Switch::new(Config::default().with_flood_limit(0));
    let ports: Vec<_> = (0..8)
        .map(|_| sw.add_port(PortConfig::default()).unwrap())
        .collect();
    let macs: Vec<MacAddr> = (1..=1000u64)
        .map(|i| MacAddr::from_u64(0x5254_0000_0000 | i))
        .collect();
    let frames: Vec<Vec<u8>> = (0..1000)
        .map(|i| frame(macs[(i * 7 + 3) % 1000], macs[i]))
        .collect();
    let bcast: Vec<u8> = frame(MacAddr::BROADCAST, macs[0]);
    let runt = vec![0u8; 10];
    let mut targets = Vec::with_capacity(16);
    let mut now = Instant::from_secs(1);
    let mut run = |sw: &mut Switch, rounds: usize, now: &mut Instant| {
        for r in 0..rounds {
            let i = r % 1000;
            let port = ports[i % 8];
            match sw.handle_frame(*now, port, &frames[i]) {
                Verdict::Flood => {
                    targets.clear();
                    targets.extend(sw.flood_targets(port));
                }
                Verdict::Forward(_) | Verdict::Drop(_) => {}
            }
            if r % 100 == 0 {
                let _ = sw.handle_frame(*now, port, &bcast);
                let _ = sw.handle_frame(*now, port, &runt);
            }
            if r % 10_000 == 0 {
                *now = *now + Duration::from_millis(10);
                if sw.poll_timeout().is_some_and(|t| t <= *now) {
                    sw.handle_timeout(*now);
                }
            }
        }
    };
    // warm-up: every station learned, the aging timer run a few times, the tables and
    // queues grown to their working size (a couple of allocations happen here)
    run(&mut sw, 1_000_000, &mut now);
    let region = Region::new(GLOBAL);
    run(&mut sw, 2_000_000, &mut now);
    let stats = region.change();
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "allocations in steady state: {stats:?}"
    );
}
