//! Helpers shared by the integration tests: the corpus location and a semantic XML
//! comparison.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The copy of libvirt's corpus in this repository.
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/libvirt")
}

/// Reads a corpus file by its path relative to the corpus root.
pub fn read(rel: &str) -> String {
    let path = corpus().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `.xml` files of a corpus folder, sorted, as paths relative to the corpus root.
pub fn xml_files(dir: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(corpus().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".xml"))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    out
}

/// An XML element reduced to what matters semantically: its expanded name, attributes
/// as a sorted map, its non-blank text and its child elements in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Tree {
    /// (namespace URI, local name).
    pub name: (String, String),
    /// ((namespace URI, local name), value).
    pub attrs: BTreeMap<(String, String), String>,
    /// Concatenated non-blank text, trimmed.
    pub text: String,
    /// Child elements.
    pub children: Vec<Self>,
}

impl Tree {
    /// Parses `xml` into a tree.
    pub fn parse(xml: &str) -> Self {
        let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        Self::from_node(doc.root_element())
    }

    fn from_node(node: roxmltree::Node<'_, '_>) -> Self {
        let name = (
            node.tag_name().namespace().unwrap_or_default().to_owned(),
            node.tag_name().name().to_owned(),
        );
        let attrs = node
            .attributes()
            .map(|a| {
                (
                    (
                        a.namespace().unwrap_or_default().to_owned(),
                        a.name().to_owned(),
                    ),
                    a.value().to_owned(),
                )
            })
            .collect();
        let text = node
            .children()
            .filter(|c| c.is_text())
            .filter_map(|c| c.text())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let children = node
            .children()
            .filter(|c| c.is_element())
            .map(Self::from_node)
            .collect();
        Self {
            name,
            attrs,
            text,
            children,
        }
    }

    /// Removes the top-level children with one of these local names.
    pub fn without(mut self, names: &[&str]) -> Self {
        self.children
            .retain(|c| !names.contains(&c.name.1.as_str()));
        self
    }

    /// Whether a top-level child with this local name exists.
    pub fn has(&self, name: &str) -> bool {
        self.children.iter().any(|c| c.name.1 == name)
    }
}

/// Compares two documents semantically; `<uuid>`/`<mac>` are ignored on both sides
/// when `input` lacks them (libvirt generates them; only their presence is libvirt's).
pub fn same(input: &str, actual: &str, expected: &str) -> Result<(), String> {
    let inp = Tree::parse(input);
    let ignore: Vec<&str> = ["uuid", "mac"]
        .into_iter()
        .filter(|n| !inp.has(n))
        .collect();
    let a = Tree::parse(actual).without(&ignore);
    let e = Tree::parse(expected).without(&ignore);
    if a == e {
        Ok(())
    } else {
        Err(format!("--- actual\n{actual}--- expected\n{expected}"))
    }
}
