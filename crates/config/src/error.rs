//! The one error type of the crate.

use std::fmt;
use std::path::PathBuf;

/// Values longer than this are shortened in [`Error`]'s one-line message.
const MAX_SHOWN_VALUE: usize = 64;

/// One error in a network definition (or in a `net-update` fragment): which file (if
/// known), which line, which element and attribute, and why.
///
/// `Display` prints a single line, `FILE:LINE: <element attribute='value'>: reason`,
/// leaving out the parts that are not known, for example
/// `net.xml:4: <forward mode='passthrough'>: forward mode 'passthrough' is not supported…`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.one_line())]
pub struct Error {
    /// The file the definition was read from, if it came from a file.
    pub file: Option<PathBuf>,
    /// 1-based line of the offending element in the document (or fragment).
    pub line: Option<u32>,
    /// The offending element, as written (`forward`, `dnsmasq:option`); empty when the
    /// error is about the document as a whole (malformed XML, unreadable file).
    pub element: String,
    /// The offending attribute, if the error is about one.
    pub attribute: Option<String>,
    /// The attribute's value as written, if there was one (boxed to keep `Error` small).
    pub value: Option<Box<str>>,
    /// Why the input was rejected (lowercase, no trailing period).
    pub reason: String,
}

impl Error {
    /// An error with only a reason; the other parts are filled by the caller.
    pub(crate) fn new(element: &str, reason: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            element: element.to_owned(),
            attribute: None,
            value: None,
            reason: reason.into(),
        }
    }

    /// Sets the file the error was found in.
    #[must_use]
    pub(crate) fn in_file(mut self, path: &std::path::Path) -> Self {
        self.file = Some(path.to_path_buf());
        self
    }

    fn one_line(&self) -> String {
        let mut out = String::new();
        match (&self.file, self.line) {
            (Some(f), Some(l)) => out.push_str(&format!("{}:{l}: ", f.display())),
            (Some(f), None) => out.push_str(&format!("{}: ", f.display())),
            (None, Some(l)) => out.push_str(&format!("line {l}: ")),
            (None, None) => {}
        }
        if !self.element.is_empty() {
            out.push('<');
            out.push_str(&self.element);
            if let Some(attr) = &self.attribute {
                out.push(' ');
                out.push_str(attr);
                if let Some(value) = &self.value {
                    out.push_str("='");
                    out.push_str(&shorten(value));
                    out.push('\'');
                }
            }
            out.push_str(">: ");
        }
        out.push_str(&self.reason);
        // The message is one line whatever the input held.
        out.replace(['\n', '\r'], " ")
    }
}

/// Shortens long values and makes control characters visible.
fn shorten(value: &str) -> String {
    let mut s: String = value.chars().take(MAX_SHOWN_VALUE).collect();
    if value.chars().count() > MAX_SHOWN_VALUE {
        s.push('…');
    }
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

impl fmt::Display for crate::ForwardMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parts() {
        let mut e = Error::new("forward", "bad mode");
        assert_eq!(e.to_string(), "<forward>: bad mode");
        e.attribute = Some("mode".into());
        assert_eq!(e.to_string(), "<forward mode>: bad mode");
        e.value = Some("vepa".into());
        e.line = Some(4);
        assert_eq!(e.to_string(), "line 4: <forward mode='vepa'>: bad mode");
        e.file = Some("net.xml".into());
        assert_eq!(e.to_string(), "net.xml:4: <forward mode='vepa'>: bad mode");
        e.element.clear();
        assert_eq!(e.to_string(), "net.xml:4: bad mode");
    }

    #[test]
    fn display_is_one_line() {
        let mut e = Error::new("name", "two\nlines");
        e.attribute = Some("x".into());
        e.value = Some("a\nb".repeat(100).into());
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(s.contains('…'), "{s}");
    }
}
