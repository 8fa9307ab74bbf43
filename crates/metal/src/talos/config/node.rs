//! The in-memory form of a machine configuration: ordered mappings, sequences and scalars, and
//! the block-style YAML writer that turns it into the text `talosctl gen config` would write
//! (4-space indentation, sequences indented under their key, `yaml.v3` scalar styles).

use crate::talos::goyaml;

/// One node of a configuration tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// A string. Written plain when that reads back as the same string, quoted otherwise; with
    /// line breaks, as a literal block when YAML allows it.
    Str(String),
    /// A scalar written verbatim, without quotes: booleans and integers that we generate, and the
    /// plain scalars of a patch, kept exactly as written so that Talos resolves them as it would
    /// have resolved the patch itself (`0o644`, `1024`, `true`).
    Plain(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in insertion order.
    Map(Map),
}

impl Node {
    /// A string node.
    pub(crate) fn str(value: impl Into<String>) -> Self {
        Self::Str(value.into())
    }

    /// A boolean node.
    pub(crate) fn bool(value: bool) -> Self {
        Self::Plain(value.to_string())
    }

    /// An integer node.
    pub(crate) fn int(value: i64) -> Self {
        Self::Plain(value.to_string())
    }

    /// A sequence of strings.
    pub(crate) fn strs<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Seq(values.into_iter().map(|v| Self::Str(v.into())).collect())
    }

    /// The text of a scalar node (`None` for collections).
    pub(crate) fn scalar_text(&self) -> Option<&str> {
        match self {
            Self::Str(s) | Self::Plain(s) => Some(s),
            Self::Seq(_) | Self::Map(_) => None,
        }
    }

    /// The mapping, if this node is one.
    pub(crate) fn as_map(&self) -> Option<&Map> {
        match self {
            Self::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The mapping, mutably, if this node is one.
    pub(crate) fn as_map_mut(&mut self) -> Option<&mut Map> {
        match self {
            Self::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The node at `path` (mapping keys only).
    pub(crate) fn get_path(&self, path: &[&str]) -> Option<&Node> {
        let mut node = self;
        for key in path {
            node = node.as_map()?.get(key)?;
        }
        Some(node)
    }

    /// What kind of node this is, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Str(_) | Self::Plain(_) => "a scalar",
            Self::Seq(_) => "a sequence",
            Self::Map(_) => "a mapping",
        }
    }
}

/// An ordered mapping with string keys.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Map {
    entries: Vec<(String, Node)>,
}

impl Map {
    /// An empty mapping.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// This mapping with `key` set to `value` (builder style).
    pub(crate) fn with(mut self, key: &str, value: Node) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets `key` to `value`: in place when the key exists, appended otherwise.
    pub(crate) fn insert(&mut self, key: &str, value: Node) {
        match self.get_mut(key) {
            Some(slot) => *slot = value,
            None => self.entries.push((key.to_owned(), value)),
        }
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key`, mutably.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Removes `key`, returning its value.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Node> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(index).1)
    }

    /// The node at `path` (mapping keys only).
    pub(crate) fn get_path(&self, path: &[&str]) -> Option<&Node> {
        let (first, rest) = path.split_first()?;
        let node = self.get(first)?;
        if rest.is_empty() {
            Some(node)
        } else {
            node.get_path(rest)
        }
    }

    /// The keys, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// The entries, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The entries, mutably, in order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Node)> {
        self.entries.iter_mut().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether the mapping is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reorders the entries with a stable sort on their keys.
    pub(crate) fn sort_keys_by(&mut self, mut cmp: impl FnMut(&str, &str) -> std::cmp::Ordering) {
        self.entries.sort_by(|(a, _), (b, _)| cmp(a, b));
    }
}

/// The YAML text of a configuration document: a top-level mapping in block style.
pub(crate) fn to_yaml(root: &Map) -> String {
    let mut out = String::new();
    write_map(&mut out, root, 0, 4, false);
    out
}

/// Writes the entries of `map` with keys at column `key_col` and nested collections at
/// `child_col`. With `inline_first`, the first key continues the current line (after `- `).
fn write_map(out: &mut String, map: &Map, key_col: usize, child_col: usize, inline_first: bool) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !inline_first {
            indent(out, key_col);
        }
        out.push_str(&goyaml::scalar(key));
        out.push(':');
        write_value(out, value, child_col);
    }
}

/// Writes the items of `seq` with their dashes at column `dash_col`. With `inline_first`, the
/// first dash continues the current line.
fn write_seq(out: &mut String, seq: &[Node], dash_col: usize, inline_first: bool) {
    for (i, item) in seq.iter().enumerate() {
        if i > 0 || !inline_first {
            indent(out, dash_col);
        }
        out.push('-');
        match item {
            Node::Map(m) if !m.is_empty() => {
                out.push(' ');
                write_map(out, m, dash_col + 2, dash_col + 4, true);
            }
            Node::Seq(s) if !s.is_empty() => {
                out.push(' ');
                write_seq(out, s, dash_col + 2, true);
            }
            scalar => write_value(out, scalar, dash_col + 4),
        }
    }
}

/// Writes what follows `key:` or `-`: a scalar or empty collection on the same line, or a
/// nested collection on the next lines at `child_col`.
fn write_value(out: &mut String, value: &Node, child_col: usize) {
    match value {
        Node::Map(m) if m.is_empty() => out.push_str(" {}\n"),
        Node::Map(m) => {
            out.push('\n');
            write_map(out, m, child_col, child_col + 4, false);
        }
        Node::Seq(s) if s.is_empty() => out.push_str(" []\n"),
        Node::Seq(s) => {
            out.push('\n');
            write_seq(out, s, child_col, false);
        }
        Node::Plain(text) if !text.contains('\n') => {
            out.push(' ');
            out.push_str(text);
            out.push('\n');
        }
        Node::Plain(text) | Node::Str(text) => {
            if literal_allowed(text) {
                write_literal(out, text, child_col);
            } else {
                out.push(' ');
                out.push_str(&goyaml::scalar(text));
                out.push('\n');
            }
        }
    }
}

/// Whether a multi-line string can be written as a literal block (`|`) that reads back exactly:
/// printable characters only (besides line breaks), no space before a line break, and no leading
/// space or line break (which would need an indentation indicator).
fn literal_allowed(text: &str) -> bool {
    if !text.contains('\n') || text.starts_with([' ', '\n']) || text.contains(" \n") {
        return false;
    }
    text.chars().all(|c| {
        c == '\n'
            || matches!(c, '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{d7ff}' | '\u{10000}'..)
            || (('\u{e000}'..='\u{fffd}').contains(&c) && c != '\u{feff}')
    })
}

/// Writes a literal block scalar whose lines are indented at `col`.
fn write_literal(out: &mut String, text: &str, col: usize) {
    let body = text.trim_end_matches('\n');
    let trailing = text.len() - body.len();
    out.push_str(match trailing {
        0 => " |-\n",
        1 => " |\n",
        _ => " |+\n",
    });
    for line in body.split('\n') {
        if !line.is_empty() {
            indent(out, col);
            out.push_str(line);
        }
        out.push('\n');
    }
    for _ in 1..trailing {
        out.push('\n');
    }
}

fn indent(out: &mut String, col: usize) {
    out.extend(std::iter::repeat_n(' ', col));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(map: Map) -> String {
        to_yaml(&map)
    }

    #[test]
    fn config_yaml_layout_matches_yaml_v3_block_style() {
        let map = Map::new()
            .with("version", Node::str("v1alpha1"))
            .with("debug", Node::bool(false))
            .with(
                "machine",
                Node::Map(
                    Map::new()
                        .with("certSANs", Node::Seq(vec![]))
                        .with("network", Node::Map(Map::new()))
                        .with(
                            "nodeLabels",
                            Node::Map(Map::new().with("a/b", Node::str(""))),
                        ),
                ),
            )
            .with(
                "list",
                Node::Seq(vec![Node::Map(
                    Map::new().with("name", Node::str("x")).with(
                        "configuration",
                        Node::Map(Map::new().with("ns", Node::strs(["kube-system"]))),
                    ),
                )]),
            );
        assert_eq!(
            doc(map),
            "version: v1alpha1\ndebug: false\nmachine:\n    certSANs: []\n    network: {}\n    \
             nodeLabels:\n        a/b: \"\"\nlist:\n    - name: x\n      configuration:\n        \
             ns:\n            - kube-system\n"
        );
    }

    #[test]
    fn config_yaml_multiline_strings_use_literal_blocks_that_read_back() {
        for text in [
            "a\nb\n",
            "a\nb",
            "a\n\nb\n\n\n",
            "kind: Namespace\nmetadata:\n  name: x\n",
            " leading\nspace",
            "trailing \nspace",
            "tab\there\n",
        ] {
            let map = Map::new().with(
                "items",
                Node::Seq(vec![Node::Map(
                    Map::new()
                        .with("name", Node::str("n"))
                        .with("contents", Node::str(text)),
                )]),
            );
            let yaml = doc(map);
            let parsed: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
            assert_eq!(parsed["items"][0]["contents"], text, "{yaml}");
        }
    }

    #[test]
    fn config_yaml_nested_sequences_read_back() {
        let map = Map::new().with(
            "a",
            Node::Seq(vec![
                Node::Seq(vec![Node::str("x"), Node::str("y")]),
                Node::Seq(vec![]),
                Node::Map(Map::new()),
                Node::str("1024"),
                Node::Plain("1024".into()),
            ]),
        );
        let yaml = doc(map);
        let parsed: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"a": [["x", "y"], [], {}, "1024", 1024]}),
            "{yaml}"
        );
    }
}
