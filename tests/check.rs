//! `switchd --check`: validates a definition and prints it normalized (exit 0), or prints
//! one error line naming the file, element and reason (exit 1). Needs no privilege.

mod common;

use std::path::Path;
use std::process::Command;

use vnet_config::Network;

fn check(path: Option<&Path>) -> std::process::Output {
    let mut c = Command::new(common::SWITCHD);
    c.arg("--check");
    if let Some(p) = path {
        c.arg("--config").arg(p);
    }
    c.output().expect("run switchd --check")
}

#[test]
fn check_agrees_with_the_loader_on_every_corpus_input() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/libvirt/networkxml2xmlin");
    let (mut ok, mut rejected) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("entry").path();
        let out = check(Some(&path));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match Network::from_file(&path) {
            Ok(net) => {
                assert!(out.status.success(), "{}: {stderr}", path.display());
                assert_eq!(stdout, net.to_xml(), "{}", path.display());
                ok += 1;
            }
            Err(e) => {
                assert_eq!(out.status.code(), Some(1), "{}", path.display());
                assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
                assert_eq!(stderr.trim(), format!("switchd: error: {e}"));
                assert!(
                    stderr.contains(&*path.to_string_lossy()),
                    "names the file: {stderr}"
                );
                rejected += 1;
            }
        }
    }
    eprintln!("switchd --check over networkxml2xmlin: {ok} valid, {rejected} rejected");
    assert_eq!((ok, rejected), (20, 5));
}

#[test]
fn without_a_config_it_is_libvirts_default_network() {
    let out = check(None);
    assert!(out.status.success());
    let xml = String::from_utf8_lossy(&out.stdout);
    let net = Network::from_xml(&xml).expect("valid");
    assert_eq!(net.name(), "default");
    assert_eq!(net.bridge_name(), Some("virbr0"));
    assert_eq!(net.forward_mode(), vnet_config::ForwardMode::Nat);
    assert_eq!(
        net.ipv4_subnets(),
        vec![("192.168.122.0".parse().expect("ip"), 24)]
    );
    assert!(
        xml.contains("<range start='192.168.122.2' end='192.168.122.254'/>"),
        "{xml}"
    );
}

#[test]
fn broken_definitions_are_one_line_errors() {
    let dir = vnet_testkit::TempDir::new("vnet-check");
    for (name, xml, needle) in [
        ("truncated.xml", "<network><name>x</name><ip address='10.0.0.1'", "truncated.xml"),
        ("root.xml", "<domain><name>x</name></domain>", "<domain>"),
        ("range.xml", "<network><name>x</name><ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.0.9' end='10.0.0.2'/></dhcp></ip></network>", "range"),
        ("prefix.xml", "<network><name>x</name><ip address='10.0.0.1' prefix='33'/></network>", "prefix"),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, xml).expect("write");
        let out = check(Some(&p));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
    }
}
