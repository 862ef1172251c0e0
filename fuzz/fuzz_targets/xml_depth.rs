//! Deeply nested XML through every entry point of `vnet_config` (issue #17: 45 KB of
//! `<a>` overflowed switchd's stack): a whole definition (the nesting inside
//! `<metadata>`), a `net-update` fragment (inside `<host>`) and a bare document.
//!
//! The input picks the nesting; it does not spell it out, so the fuzzer reaches a
//! million levels with a few bytes:
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 0–1 | repetition count `n` (u16, little-endian) |
//! | 2 | entry point: `% 3` = definition, fragment, bare document |
//! | 3 | bits 0–3: the fragment repeated `n` times ([`FRAGMENTS`]); bit 4: leave the elements unclosed; bit 5: `n × 16` (past [`MAX_XML_BYTES`] for most fragments; `n` stops just past it; siblings, which do not nest, repeat `n % 4096` times) |
//! | 4… | text put at the innermost point (UTF-8, lossy) |
//!
//! Checked, besides "no crash" (a stack overflow is one):
//! - text over [`MAX_XML_BYTES`] is refused as too large;
//! - when the depth is known (the innermost text has no `<`), it is refused as too deep
//!   exactly when it exceeds [`MAX_XML_DEPTH`];
//! - up to [`REPARSED_BYTES`], roxmltree parses the text again: what passed the limits
//!   (parsed on this thread) really is at most [`MAX_XML_DEPTH`] deep, and a definition
//!   that loads round-trips; what was refused as too deep (parsed on a thread with a
//!   large stack) really is deeper, or is not well-formed at all.
//!
//! `cargo +nightly fuzz run xml_depth` (from `fuzz/`); seeds in `corpus/xml_depth`
//! (written by `gen_seeds.py`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vnet_config::{Network, UpdateCommand, UpdateSection, MAX_XML_BYTES, MAX_XML_DEPTH};

/// (opening part, closing part, levels each repetition adds, levels below the last
/// repetition's own): the nested fragments, with markup inside comments, CDATA,
/// processing instructions and attribute values that must not be counted.
const FRAGMENTS: [(&str, &str, usize, usize); 12] = [
    ("<a>", "</a>", 1, 0),
    ("<x:a>", "</x:a>", 1, 0),
    ("<a><b/>", "</a>", 1, 1),
    ("<a><!--<b><c>-->", "</a>", 1, 0),
    ("<a v='&lt;b&gt;/>'>", "</a>", 1, 0),
    ("<a><![CDATA[<b><c>]]>", "</a>", 1, 0),
    ("<a><?p <b>?>", "</a>", 1, 0),
    ("<a><b>", "</b></a>", 2, 0),
    ("<a w=\"'>\" z='\"/>'>", "</a>", 1, 0),
    ("<a\n>", "</a\n>", 1, 0),
    ("<a/>", "", 0, 1),
    ("<a>t", "t</a>", 1, 0),
];

const TOO_DEEP: &str = "XML nested deeper than 64 elements";
const TOO_LARGE: &str = "XML document larger than";
/// Inputs up to this size are parsed again by roxmltree (and round-tripped) to check
/// the limits' verdict.
const REPARSED_BYTES: usize = 16 * 1024;

/// Where the nesting goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    /// Inside `<metadata>` of a definition (two levels above it).
    Definition,
    /// Inside a `<host>` given to `net-update add ip-dhcp-host` (one level).
    Fragment,
    /// The document itself.
    Bare,
}

impl Entry {
    /// The levels above the nesting.
    fn base(self) -> usize {
        match self {
            Self::Definition => 2,
            Self::Fragment => 1,
            Self::Bare => 0,
        }
    }

    fn wrap(self, inner: &str) -> String {
        match self {
            Self::Definition => format!(
                "<network xmlns:x='urn:x'>\n<name>f</name>\n<metadata>{inner}</metadata>\n</network>"
            ),
            Self::Fragment => format!("<host mac='52:54:00:00:00:01' ip='192.168.122.9'>{inner}</host>"),
            Self::Bare => inner.to_owned(),
        }
    }
}

/// The deepest element nesting of well-formed `xml`, measured on roxmltree's tree
/// (the caller makes sure the parse itself cannot overflow), stopping once past
/// [`MAX_XML_DEPTH`].
fn measured_depth(xml: &str) -> Option<usize> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let mut deepest = 0;
    for n in doc.descendants().filter(roxmltree::Node::is_element) {
        let d = n.ancestors().filter(roxmltree::Node::is_element).count();
        deepest = deepest.max(d);
        if deepest > MAX_XML_DEPTH {
            break;
        }
    }
    Some(deepest)
}

fuzz_target!(|data: &[u8]| {
    let [lo, hi, entry, shape, rest @ ..] = data else {
        return;
    };
    let entry = match entry % 3 {
        0 => Entry::Definition,
        1 => Entry::Fragment,
        _ => Entry::Bare,
    };
    let (open, close, levels, below) = FRAGMENTS[usize::from(shape & 0x0f) % FRAGMENTS.len()];
    let unclosed = shape & 0x10 != 0;
    let mut n = usize::from(u16::from_le_bytes([*lo, *hi]));
    if levels == 0 {
        // Siblings: a few thousand show that they do not add up; hundreds of kilobytes
        // of them are only slow to load.
        n %= 4096;
    } else if shape & 0x20 != 0 {
        n *= 16;
    }
    // Past the size limit, more repetitions only cost time: stop just over it.
    let per_repetition = open.len() + if unclosed { 0 } else { close.len() };
    n = n.min(MAX_XML_BYTES / per_repetition + 1);
    let middle = String::from_utf8_lossy(rest);
    let mut inner = open.repeat(n);
    inner.push_str(&middle);
    if !unclosed {
        inner.push_str(&close.repeat(n));
    }
    let xml = entry.wrap(&inner);

    let result = match entry {
        Entry::Definition | Entry::Bare => Network::from_xml(&xml).map(Some),
        Entry::Fragment => {
            let mut net = Network::libvirt_default();
            net.update(UpdateCommand::Add, UpdateSection::IpDhcpHost, None, &xml)
                .map(|()| None)
        }
    };
    let reason = result.as_ref().err().map(|e| e.reason.as_str());
    let too_deep = reason.is_some_and(|r| r.contains(TOO_DEEP));
    let too_large = reason.is_some_and(|r| r.starts_with(TOO_LARGE));

    if xml.len() > MAX_XML_BYTES {
        assert!(
            too_large,
            "{} bytes not refused as too large: {reason:?}",
            xml.len()
        );
        return;
    }
    assert!(!too_large, "{} bytes refused as too large", xml.len());

    if !middle.contains('<') {
        let depth = entry.base() + n * levels + if n > 0 { below } else { 0 };
        // no markup in the middle: the depth is the wrapper's and the fragments'
        assert_eq!(
            too_deep,
            depth > MAX_XML_DEPTH,
            "depth {depth} (n {n}, fragment {open:?}, {entry:?}, unclosed {unclosed}): {reason:?}"
        );
    }

    // The checks below parse again (a refused input with recursion as deep as its
    // nesting); above 16 KiB that is slow and adds little: the depth assertion above
    // covers large inputs.
    if xml.len() > REPARSED_BYTES {
        return;
    }
    if !too_deep {
        // the limits let it through: it must be shallow enough to parse here
        if let Some(depth) = measured_depth(&xml) {
            assert!(depth <= MAX_XML_DEPTH, "passed the limit at depth {depth}");
        }
        if let Ok(Some(net)) = &result {
            let again = Network::from_xml(&net.to_xml()).expect("the written form loads");
            assert!(again == *net, "the round trip changed the network");
        }
    } else {
        // refused as too deep: it is deeper (or not well-formed at all)
        let text = xml.clone();
        let depth = std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || measured_depth(&text))
            .expect("a thread")
            .join()
            .expect("the reference parse");
        if let Some(depth) = depth {
            assert!(
                depth > MAX_XML_DEPTH,
                "refused as too deep at depth {depth}"
            );
        }
    }
});
