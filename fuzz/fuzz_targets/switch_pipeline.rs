//! Sequences of frames, port changes and clock steps through the switch core, checking
//! its invariants after every step (not just "no panic").
//!
//! `cargo +nightly fuzz run switch_pipeline` (from `fuzz/`).

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vnet_switch::{Config, Instant, PortConfig, PortId, Switch, Verdict};

#[derive(Debug, Arbitrary)]
enum Op {
    Frame { port: u8, bytes: Vec<u8> },
    Advance { millis: u32 },
    AddPort { isolated: bool, learning: bool },
    RemovePort { port: u8 },
}

const MAX_FDB: usize = 32;

fuzz_target!(|ops: Vec<Op>| {
    let cfg = Config::default()
        .with_fdb_max_entries(MAX_FDB)
        .with_aging_time(Duration::from_secs(5))
        .with_max_ports(8);
    let mut sw = Switch::new(cfg);
    let mut now = Instant::ZERO;
    for _ in 0..3 {
        let _ = sw.add_port(PortConfig::default());
    }
    for op in ops {
        match op {
            Op::Frame { port, bytes } => {
                let ingress = PortId(u16::from(port % 8));
                let iso = sw.port_config(ingress).is_some_and(|c| c.isolated);
                match sw.handle_frame(now, ingress, &bytes) {
                    Verdict::Forward(p) => {
                        assert_ne!(p, ingress, "forwarded back out the ingress port");
                        assert!(sw.ports().contains(&p), "forwarded to a removed port");
                        if iso {
                            assert!(!sw.port_config(p).is_some_and(|c| c.isolated));
                        }
                    }
                    Verdict::Flood => {
                        for t in sw.flood_targets(ingress) {
                            assert_ne!(t, ingress, "flooded back out the ingress port");
                            if iso {
                                assert!(!sw.port_config(t).is_some_and(|c| c.isolated));
                            }
                        }
                    }
                    Verdict::Drop(_) => {}
                }
            }
            Op::Advance { millis } => {
                now = now + Duration::from_millis(u64::from(millis));
                if sw.poll_timeout().is_some_and(|t| t <= now) {
                    sw.handle_timeout(now);
                }
            }
            Op::AddPort { isolated, learning } => {
                let _ = sw.add_port(
                    PortConfig::default()
                        .with_isolated(isolated)
                        .with_learning(learning),
                );
            }
            Op::RemovePort { port } => {
                let _ = sw.remove_port(PortId(u16::from(port % 8)));
            }
        }
        assert!(sw.fdb().len() <= MAX_FDB, "FDB over its bound");
        for e in sw.fdb().entries(now) {
            assert!(sw.ports().contains(&e.port), "FDB entry for a removed port");
        }
    }
});
