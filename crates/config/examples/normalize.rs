//! Prints a network definition the way libvirt normalizes it, then vnet's warnings.
//!
//! `cargo run -p vnet-config --example normalize -- tests/data/libvirt/default.xml`

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: normalize NETWORK.xml");
        return ExitCode::FAILURE;
    };
    match vnet_config::Network::from_file(&path) {
        Ok(net) => {
            print!("{}", net.to_xml());
            for w in net.warnings() {
                eprintln!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
