//! What the switch core's tables cost: heap bytes per forwarding-database entry and per
//! port, counted by a counting global allocator (its own test binary, so no other test
//! allocates meanwhile). `cargo test -p vnet-switch --release --test memory -- --nocapture`
//! prints the figures (docs/performance.md quotes them); the bounds asserted are loose
//! ceilings that catch a table that stops being compact.

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use vnet_switch::{Config, Instant, MacAddr, PortConfig, Switch};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live_bytes(region: &Region<'_, System>) -> isize {
    let s = region.change();
    isize::try_from(s.bytes_allocated + s.bytes_reallocated.max(0) as usize).unwrap()
        - isize::try_from(s.bytes_deallocated).unwrap()
}

#[test]
fn bytes_per_fdb_entry_and_per_port() {
    const ENTRIES: usize = 65_536;
    let mut frame = vec![0u8; 64];
    frame[..6].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);

    let region = Region::new(GLOBAL);
    let mut sw = Switch::new(
        Config::default()
            .with_fdb_max_entries(ENTRIES)
            .with_flood_limit(0),
    );
    let a = sw.add_port(PortConfig::default()).unwrap();
    let _b = sw.add_port(PortConfig::default()).unwrap();
    let empty = live_bytes(&region);
    let now = Instant::from_secs(1);
    for i in 0..ENTRIES as u64 {
        frame[6..12].copy_from_slice(&MacAddr::from_u64(0x0200_0000_0000 | i).0);
        let _ = sw.handle_frame(now, a, &frame);
    }
    assert_eq!(sw.fdb().len(), ENTRIES);
    let full = live_bytes(&region);
    // the table is sized for its bound up front; entries add their own part
    let per_entry = full as f64 / ENTRIES as f64;
    let learned = (full - empty) as f64 / ENTRIES as f64;

    let before = live_bytes(&region);
    const PORTS: usize = 1000;
    for _ in 0..PORTS {
        sw.add_port(PortConfig::default()).unwrap();
    }
    let per_port = (live_bytes(&region) - before) as f64 / PORTS as f64;
    println!(
        "switch core: {empty} bytes with 2 ports and an empty FDB bounded at {ENTRIES}, \
         {full} bytes full: {per_entry:.1} bytes per FDB entry ({learned:.1} of them \
         when learned); {per_port:.1} bytes per port"
    );
    assert!(per_entry <= 160.0, "{per_entry} bytes per FDB entry");
    assert!(per_port <= 1024.0, "{per_port} bytes per port");
}
