//! Bounds on the XML the crate parses, checked before the XML parser sees the text.
//!
//! roxmltree (0.20) parses an element by recursing once per nesting level and has no
//! depth limit of its own (its `ParsingOptions` offer only `allow_dtd` and
//! `nodes_limit`), so 45 KB of `<a>` overflow the stack of the thread that parses them.
//! [`check`] refuses text larger than [`MAX_XML_BYTES`] and elements nested deeper
//! than [`MAX_XML_DEPTH`] with one non-recursive pass over the bytes, before any
//! recursive parse (and before the crate's own recursive walks of verbatim elements,
//! [`crate::RawElement`]).
//!
//! # How the depth is counted
//!
//! The scan counts what roxmltree would recurse into: a start tag (`<name`) opens a
//! level, an end tag (`</`) or an empty-element tag (`/>`) closes one. Comments,
//! CDATA sections, processing instructions (and the XML declaration), `<!DOCTYPE>`
//! with its internal subset, and quoted attribute values are skipped, so markup
//! written inside them is not counted. Tags are not matched by name: for well-formed
//! XML the count is the nesting depth, and for the rest the count is never lower than
//! the depth roxmltree reaches before it reports the error. Where the scan skips text
//! roxmltree would not (a `<!DOCTYPE>`, which roxmltree refuses without parsing it
//! further, or a value that runs into a `<`), roxmltree stops with an error there.

use crate::Error;

/// The largest XML text (network definition or `net-update` fragment) the crate
/// parses, in bytes: 1 MiB. A network with thousands of DHCP hosts fits.
pub const MAX_XML_BYTES: usize = 1024 * 1024;

/// The deepest element nesting the crate parses (the root element is at depth 1).
/// libvirt's network XML nests fewer than 10 levels; the rest is room for
/// `<metadata>` and extension elements kept verbatim.
pub const MAX_XML_DEPTH: usize = 64;

/// Element names longer than this are left out of the depth error.
const MAX_NAME_SHOWN: usize = 64;

/// Refuses `xml` if it is larger than [`MAX_XML_BYTES`] or nests elements deeper than
/// [`MAX_XML_DEPTH`]. Reads each byte once; recursion-free, allocation-free (except
/// for the error).
pub(crate) fn check(xml: &str) -> Result<(), Error> {
    if xml.len() > MAX_XML_BYTES {
        return Err(too_large(Some(xml.len())));
    }
    let b = xml.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(lt) = find_byte(b, i, b'<') {
        let rest = b.get(lt..).unwrap_or_default();
        i = if rest.starts_with(b"<!--") {
            skip_past(b, lt + 4, b"-->")
        } else if rest.starts_with(b"<![CDATA[") {
            skip_past(b, lt + 9, b"]]>")
        } else if rest.starts_with(b"<?") {
            skip_past(b, lt + 2, b"?>")
        } else if rest.starts_with(b"<!") {
            skip_declaration(b, lt + 2)
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            find_byte(b, lt + 2, b'>').map_or(b.len(), |gt| gt + 1)
        } else {
            depth += 1;
            if depth > MAX_XML_DEPTH {
                return Err(too_deep(xml, lt));
            }
            let (end, empty) = skip_tag(b, lt + 1);
            if empty {
                depth -= 1;
            }
            end
        };
    }
    Ok(())
}

/// The error for a text over [`MAX_XML_BYTES`] (of `len` bytes, if known: a file is
/// read only up to the limit).
pub(crate) fn too_large(len: Option<usize>) -> Error {
    let reason = format!("XML document larger than {MAX_XML_BYTES} bytes");
    Error::new(
        "",
        match len {
            Some(n) => format!("{reason} ({n} bytes)"),
            None => reason,
        },
    )
}

/// The first `byte` at or after `from`.
fn find_byte(b: &[u8], from: usize, byte: u8) -> Option<usize> {
    b.get(from..)?
        .iter()
        .position(|&c| c == byte)
        .map(|p| from + p)
}

/// The index just past the first `end` at or after `from` (the end of the text if
/// there is none).
fn skip_past(b: &[u8], from: usize, end: &[u8]) -> usize {
    b.get(from..)
        .and_then(|rest| rest.windows(end.len()).position(|w| w == end))
        .map_or(b.len(), |p| from + p + end.len())
}

/// Skips a start tag from just after its `<`: the index past its `>`, and whether it
/// was an empty-element tag (`/>`). Quoted values may hold `>` and `/`.
fn skip_tag(b: &[u8], from: usize) -> (usize, bool) {
    let mut i = from;
    let mut prev = 0u8;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' | b'\'' => {
                i = find_byte(b, i + 1, c).map_or(b.len(), |q| q + 1);
                prev = c;
                continue;
            }
            b'>' => return (i + 1, prev == b'/'),
            _ => prev = c,
        }
        i += 1;
    }
    (b.len(), false)
}

/// Skips a `<!…>` declaration (`<!DOCTYPE`, with its internal subset) from just after
/// its `<!`: brackets nest, quoted literals and comments may hold `>`.
fn skip_declaration(b: &[u8], from: usize) -> usize {
    let mut i = from;
    let mut brackets = 0usize;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' | b'\'' => {
                i = find_byte(b, i + 1, c).map_or(b.len(), |q| q + 1);
                continue;
            }
            b'<' if b.get(i..).is_some_and(|r| r.starts_with(b"<!--")) => {
                i = skip_past(b, i + 4, b"-->");
                continue;
            }
            b'[' => brackets += 1,
            b']' => brackets = brackets.saturating_sub(1),
            b'>' if brackets == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// The error for the start tag at `lt`, one level too deep: its line and, if short,
/// its name.
fn too_deep(xml: &str, lt: usize) -> Error {
    let b = xml.as_bytes();
    let name_end = b
        .get(lt + 1..)
        .and_then(|r| {
            r.iter()
                .position(|c| c.is_ascii_whitespace() || matches!(c, b'/' | b'>' | b'<'))
        })
        .map_or(b.len(), |p| lt + 1 + p);
    let name = xml
        .get(lt + 1..name_end)
        .filter(|n| n.len() <= MAX_NAME_SHOWN)
        .unwrap_or_default();
    let mut e = Error::new(
        name,
        format!("XML nested deeper than {MAX_XML_DEPTH} elements"),
    );
    let newlines = b
        .get(..lt)
        .unwrap_or_default()
        .iter()
        .filter(|&&c| c == b'\n');
    e.line = Some(u32::try_from(newlines.count() + 1).unwrap_or(u32::MAX));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, n: usize) -> String {
        format!("{}{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn counts_nesting() {
        check(&nested("<a>", "</a>", MAX_XML_DEPTH)).unwrap();
        let e = check(&nested("<a>", "</a>", MAX_XML_DEPTH + 1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: <a>: XML nested deeper than 64 elements"
        );
        // siblings and empty elements do not add up
        check(&"<a/>".repeat(10_000)).unwrap();
        check(&format!("<r>{}</r>", "<a><b/></a>".repeat(10_000))).unwrap();
        // an empty element one level too deep is too deep (the parser recurses into it)
        let xml = format!("{}<b/>{}", "<a>".repeat(64), "</a>".repeat(64));
        assert!(check(&xml).is_err());
    }

    #[test]
    fn unclosed_elements_count() {
        // no end tags at all: the parser recurses before it finds the error
        let e = check(&format!("<x>\n{}", "<a>".repeat(100))).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.element, "a");
    }

    #[test]
    fn markup_inside_comments_cdata_pis_and_values_is_not_counted() {
        let deep = "<a>".repeat(1000);
        for inner in [
            format!("<!--{deep}-->"),
            format!("<![CDATA[{deep}]]>"),
            format!("<?pi {deep}?>"),
            format!("<b x='{}'/>", "&lt;a&gt;>/".repeat(1000)),
            format!("<b x=\"{}\" y='/>'></b>", "'>".repeat(1000)),
        ] {
            check(&format!("<?xml version='1.0'?><r>{inner}</r>")).unwrap();
        }
        let doctype =
            format!("<!DOCTYPE r [<!ENTITY e '{deep}'><!-- ]> {deep} --><!ELEMENT r ANY>]><r/>");
        check(&doctype).unwrap();
        // text holds no markup, but `>` in text is allowed
        check("<r>a > b</r>").unwrap();
    }

    #[test]
    fn the_line_and_name_are_those_of_the_element_too_deep() {
        let xml = format!(
            "<network>\n<metadata>\n{}<x:deep attr='1'>",
            "<x:a>\n".repeat(62)
        );
        let e = check(&xml).unwrap_err();
        assert_eq!(e.element, "x:deep");
        assert_eq!(e.line, Some(65));
        // a very long name is left out
        let xml = format!("{}<{}>", "<a>".repeat(64), "n".repeat(1000));
        let e = check(&xml).unwrap_err();
        assert_eq!(e.element, "");
        assert!(
            e.to_string().starts_with("line 1: XML nested deeper"),
            "{e}"
        );
    }

    #[test]
    fn size_is_bounded() {
        check(&" ".repeat(MAX_XML_BYTES)).unwrap();
        let e = check(&" ".repeat(MAX_XML_BYTES + 1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "XML document larger than 1048576 bytes (1048577 bytes)"
        );
    }

    #[test]
    fn truncated_markup_ends_the_scan() {
        for xml in [
            "<a",
            "<a b='",
            "<!--",
            "<![CDATA[",
            "<?",
            "<!DOCTYPE [",
            "</",
            "<",
        ] {
            check(xml).unwrap();
        }
    }
}
