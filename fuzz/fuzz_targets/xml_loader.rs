//! Arbitrary text through `vnet_config::Network::from_xml`: no input may panic, and
//! whatever loads must round-trip the way the crate's own corpus test
//! (`crates/config/tests/corpus.rs`) asserts for libvirt's files: the written form
//! parses again to the same `Network` (warnings included), and writing that again gives
//! the same text (the written form is a fixpoint). The same holds after
//! `fill_defaults` (UUID, bridge MAC and name filled in), as
//! `crates/config/src/tests.rs` asserts for one definition.
//!
//! Seeds: libvirt's own network XML (copies from `tests/data/libvirt`) in
//! `corpus/xml_loader`; `dict/xml_loader.dict` has the element and attribute names.
//!
//! `cargo +nightly fuzz run xml_loader -- -dict=dict/xml_loader.dict` (from `fuzz/`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vnet_config::Network;

fn round_trip(net: &Network, what: &str) {
    let out = net.to_xml();
    let again = match Network::from_xml(&out) {
        Ok(n) => n,
        Err(e) => panic!("{what}: the written form does not load: {e}\n{out}"),
    };
    assert!(
        again == *net,
        "{what}: the round trip changed the network\nwritten:\n{out}\nbefore: {net:?}\nafter:  {again:?}"
    );
    let out2 = again.to_xml();
    assert!(
        out2 == out,
        "{what}: the written form is not a fixpoint\nfirst:\n{out}\nsecond:\n{out2}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut net) = Network::from_xml(xml) else {
        return;
    };
    // The accessors the daemon reads right after loading.
    let _ = (
        net.ipv4_subnets(),
        net.warnings(),
        net.host_port(),
        net.mac_addr(),
    );
    let _ = vnet_config::ipv4_overlap(&net, &net);
    round_trip(&net, "loaded");
    net.fill_defaults(&["virbr0".to_owned(), "virbr1".to_owned()]);
    round_trip(&net, "after fill_defaults");
});
