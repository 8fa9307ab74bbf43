//! Strategic-merge config patches (`cto install --config-patch @file`): parsing with the
//! position of every node, and merging the way talosctl merges (`configpatcher.StrategicMerge`,
//! `config/merge.Merge` at v1.11). The rules are documented on [`ConfigPatch`].

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span};

use super::MachineType;
use super::node::{Map, Node};
use crate::talos::TalosError;

/// The keys of Talos' `v1alpha1.Config` (the top level of a patch).
const TOP_LEVEL_KEYS: &[&str] = &["version", "debug", "persist", "machine", "cluster"];

/// The keys of Talos' `v1alpha1.MachineConfig` at v1.11, in Go struct order (deprecated ones
/// included: Talos still accepts them).
pub(crate) const MACHINE_KEYS: &[&str] = &[
    "type",
    "token",
    "ca",
    "acceptedCAs",
    "certSANs",
    "controlPlane",
    "kubelet",
    "pods",
    "network",
    "disks",
    "install",
    "files",
    "env",
    "time",
    "sysctls",
    "sysfs",
    "registries",
    "systemDiskEncryption",
    "features",
    "udev",
    "logging",
    "kernel",
    "seccompProfiles",
    "baseRuntimeSpecOverrides",
    "nodeLabels",
    "nodeAnnotations",
    "nodeTaints",
];

/// The keys of Talos' `v1alpha1.ClusterConfig` at v1.11, in Go struct order.
pub(crate) const CLUSTER_KEYS: &[&str] = &[
    "id",
    "secret",
    "controlPlane",
    "clusterName",
    "network",
    "token",
    "aescbcEncryptionSecret",
    "secretboxEncryptionSecret",
    "ca",
    "acceptedCAs",
    "aggregatorCA",
    "serviceAccount",
    "apiServer",
    "controllerManager",
    "proxy",
    "scheduler",
    "discovery",
    "etcd",
    "coreDNS",
    "externalCloudProvider",
    "extraManifests",
    "extraManifestHeaders",
    "inlineManifests",
    "adminKubeconfig",
    "allowSchedulingOnMasters",
    "allowSchedulingOnControlPlanes",
];

/// Sequences and mappings a patch replaces instead of merging into.
const REPLACED: &[&[&str]] = &[
    &["cluster", "network", "podSubnets"],
    &["cluster", "network", "serviceSubnets"],
    &["cluster", "apiServer", "auditPolicy"],
];

/// The largest patch accepted, in bytes (a file given as `@file`, or inline text): 1 MiB. A
/// Talos machine configuration is a few kilobytes; even `cluster.inlineManifests` rarely
/// approaches this.
pub const MAX_PATCH_BYTES: u64 = 1 << 20;

/// The most nodes (mappings, sequences and scalars) a patch may hold once its YAML aliases are
/// expanded. Each alias is expanded into a copy of its anchor's node, so a few hundred bytes of
/// nested aliases ("billion laughs") can stand for billions of nodes; a patch whose expansion
/// would pass this bound (or [`MAX_EXPANDED_SCALAR_BYTES`]) is refused while it is parsed, before
/// the copy is made. Memory is therefore bounded by construction.
pub const MAX_EXPANDED_NODES: usize = 100_000;

/// The most bytes of scalar text a patch may hold once its YAML aliases are expanded: 4 MiB.
pub const MAX_EXPANDED_SCALAR_BYTES: usize = 4 << 20;

/// The deepest nesting of mappings and sequences in a patch (the parser recurses once per
/// level; a Talos configuration is less than ten levels deep).
pub const MAX_PATCH_DEPTH: usize = 64;

/// Reads a patch file given as `--config-patch @path`: it must be a regular file (not a
/// device, FIFO or directory: `@/dev/zero` is refused at once rather than read forever) of at
/// most [`MAX_PATCH_BYTES`], in UTF-8. At most `MAX_PATCH_BYTES + 1` bytes are ever read,
/// whatever the file claims its size is. Returns the reason when it is refused.
pub fn read_patch_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let not_regular = |m: &std::fs::Metadata| {
        format!(
            "{} is not a regular file ({}); give a YAML file",
            path.display(),
            if m.is_dir() {
                "a directory"
            } else {
                "a device, FIFO or socket"
            }
        )
    };
    // Checked before opening: opening a FIFO for reading would wait for a writer.
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let too_big = || {
        format!(
            "{} is larger than {} bytes (1 MiB), the most a config patch may be",
            path.display(),
            MAX_PATCH_BYTES
        )
    };
    if meta.len() > MAX_PATCH_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(MAX_PATCH_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_PATCH_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// A position in a patch: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    line: u64,
    column: u64,
}

impl Pos {
    fn of(span: &Span) -> Self {
        Self {
            line: span.start.line() as u64,
            column: span.start.col() as u64 + 1,
        }
    }
}

/// A node of a parsed patch, with where it starts.
#[derive(Debug, Clone, PartialEq)]
struct PNode {
    at: Pos,
    value: PValue,
}

#[derive(Debug, Clone, PartialEq)]
enum PValue {
    /// `null`, `~` or nothing at all.
    Null,
    /// A scalar: [`Node::Str`] for quoted and block scalars, [`Node::Plain`] for plain ones.
    Scalar(Node),
    Seq(Vec<PNode>),
    Map(Vec<PEntry>),
}

#[derive(Debug, Clone, PartialEq)]
struct PEntry {
    key: String,
    value: PNode,
}

impl PNode {
    fn kind(&self) -> &'static str {
        match self.value {
            PValue::Null => "null",
            PValue::Scalar(_) => "a scalar",
            PValue::Seq(_) => "a sequence",
            PValue::Map(_) => "a mapping",
        }
    }

    fn entries(&self) -> Option<&[PEntry]> {
        match &self.value {
            PValue::Map(entries) => Some(entries),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Option<&PNode> {
        self.entries()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    fn scalar_text(&self) -> Option<&str> {
        match &self.value {
            PValue::Scalar(node) => node.scalar_text(),
            _ => None,
        }
    }

    /// The configuration node this patch node becomes when it is added where nothing was.
    fn to_node(&self) -> Node {
        match &self.value {
            PValue::Null => Node::Plain("null".to_owned()),
            PValue::Scalar(node) => node.clone(),
            PValue::Seq(items) => Node::Seq(items.iter().map(PNode::to_node).collect()),
            PValue::Map(entries) => {
                let mut map = Map::new();
                for e in entries {
                    if e.value.value != PValue::Null {
                        map.insert(&e.key, e.value.to_node());
                    }
                }
                Node::Map(map)
            }
        }
    }
}

/// One `$patch: delete` of a patch.
#[derive(Debug, Clone, PartialEq)]
struct Delete {
    /// Mapping keys from the root to the deleted key, or to the list an item is deleted from.
    path: Vec<String>,
    /// For a list item: the key and value that select it.
    item: Option<(String, String)>,
    at: Pos,
}

/// A parsed strategic-merge patch for the `v1alpha1` machine configuration, as given to
/// `cto install --config-patch @file`. Build it with [`ConfigPatch::parse`]; apply it with
/// [`BootstrapConfig::with_patches`](super::BootstrapConfig::with_patches).
///
/// A patch is one YAML mapping shaped like the configuration (`machine: {...}`,
/// `cluster: {...}`). It is merged as talosctl merges it (`config/merge.Merge`, v1.11):
///
/// * mappings merge key by key, recursively; a key the configuration lacks is added;
/// * a scalar replaces the configuration's scalar, except an empty string, which Talos treats as
///   "not set" and skips (booleans, `false` included, always replace); `null` changes nothing;
/// * sequences are appended to, except the fields Talos replaces as a whole:
///   `cluster.network.podSubnets`, `cluster.network.serviceSubnets` (`merge:"replace"`) and
///   `cluster.apiServer.auditPolicy`;
/// * the lists Talos merges item by item: `machine.network.interfaces` (by `interface`, else by
///   an equal `deviceSelector`), their `vlans` (by `vlanId`) and
///   `cluster.apiServer.admissionControl` (by `name`): a matching item is merged recursively,
///   another one is appended;
/// * `$patch: delete` in a mapping deletes that key; in a list item it deletes the first item
///   whose value for the item's first other key matches (`- name: PodSecurity` with
///   `$patch: delete`). Deletions run before the merge. Deleting what is not there is a no-op
///   (Talos fails for absent map keys but not for absent struct fields; without Go's types we
///   cannot tell them apart, so we never fail).
///
/// Plain scalars are kept exactly as written (`0o644`, `1024`, `yes`), so Talos resolves them
/// as it would have resolved the patch. Keys are then written in Talos' order.
///
/// Beyond talosctl's own checks, a patch is refused ([`TalosError::InvalidConfigPatch`], with
/// line and column) when it is not valid YAML or not a single mapping; when it has a top-level
/// key other than `version`, `debug`, `persist`, `machine` and `cluster`, or an unknown key
/// directly under `machine` or `cluster`; when it changes `machine.type` (the patch may only
/// repeat the role it is applied to); when it deletes `version`, `machine`, `cluster` or
/// `machine.type`; and when its shape conflicts with the configuration (a mapping where the
/// configuration has a list, …). JSON patches (RFC 6902 operation lists) and multi-document
/// patches are not supported. A configuration that a patch makes invalid for Talos (a worker
/// given an etcd section or CA keys, `persist: false`, an unknown CNI, no install disk) is
/// refused when rendering, naming the patch.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigPatch {
    source: String,
    text: String,
    deletes: Vec<Delete>,
    /// The patch without its `$patch: delete` nodes; `None` when nothing is left to merge.
    merge: Option<PNode>,
    root: Pos,
}

impl ConfigPatch {
    /// Parses a patch. `source` names it in messages (the file path, or `<inline>`); `text` is
    /// its content.
    ///
    /// Errors are [`TalosError::InvalidConfigPatch`] with the 1-based line and column of the
    /// problem: invalid YAML, more than one document, something other than a mapping at the top,
    /// an unknown top-level key (or unknown key directly under `machine` or `cluster`), a
    /// `machine.type` other than `controlplane` or `worker`, a `version` other than `v1alpha1`,
    /// a `$patch` other than `delete` or a deletion Talos refuses, YAML anchors merged with `<<`,
    /// complex or duplicate keys, and tags other than the core ones.
    pub fn parse(source: &str, text: &str) -> Result<Self, TalosError> {
        let root = parse_document(source, text)?;
        let fail = |at: Pos, reason: String| patch_error(source, at, reason);

        let Some(entries) = root.entries() else {
            return Err(fail(
                root.at,
                format!(
                    "a config patch must be a YAML mapping such as `machine: {{...}}` (a \
                     strategic merge patch), but this one is {}; JSON patches (lists of RFC 6902 \
                     operations) are not supported",
                    root.kind()
                ),
            ));
        };
        for e in entries {
            check_top_level(source, e)?;
        }

        let mut deletes = Vec::new();
        let mut path = Vec::new();
        let merge = strip_deletes(source, &root, &mut path, false, &mut deletes)?;
        for delete in &deletes {
            let keys: Vec<&str> = delete.path.iter().map(String::as_str).collect();
            if delete.item.is_none()
                && matches!(
                    keys.as_slice(),
                    [] | ["version"] | ["machine"] | ["cluster"] | ["machine", "type"]
                )
            {
                return Err(fail(
                    delete.at,
                    format!(
                        "`{}` cannot be deleted: cto generates it and Talos needs it",
                        display_path(&keys)
                    ),
                ));
            }
        }

        Ok(Self {
            source: source.to_owned(),
            text: text.to_owned(),
            deletes,
            merge,
            root: root.at,
        })
    }

    /// What the patch was called when it was parsed (its file path, usually).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The patch text as it was given, so that it can be stored and parsed again on resume.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Checks, without a configuration at hand, that the patch may be applied to a machine of
    /// `role`: it must not change `machine.type`. Lets a patch aimed at the wrong role be
    /// refused before anything is ordered.
    pub fn check_role(&self, role: MachineType) -> Result<(), TalosError> {
        if let Some(ty) = self
            .merge
            .as_ref()
            .and_then(|m| m.get("machine"))
            .and_then(|m| m.get("type"))
            && let Some(text) = ty.scalar_text()
            && text != role.as_str()
        {
            return Err(self.error(
                ty.at,
                format!(
                    "the patch changes machine.type from {} to {text}; a patch cannot change \
                     the role of a machine (use a control-plane or worker patch target to patch \
                     one role)",
                    role.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// Applies the patch to the configuration of a machine of type `role`: deletions first, then
    /// the merge.
    pub(crate) fn apply(&self, config: &mut Map, role: MachineType) -> Result<(), TalosError> {
        self.check_role(role)?;

        for delete in &self.deletes {
            apply_delete(config, delete);
        }

        if let Some(PNode {
            value: PValue::Map(entries),
            ..
        }) = &self.merge
        {
            let mut path = Vec::new();
            merge_map(self, config, entries, &mut path)?;
        }
        Ok(())
    }

    /// An error about this patch, at `at`.
    fn error(&self, at: Pos, reason: String) -> TalosError {
        patch_error(&self.source, at, reason)
    }

    /// An error about this patch as a whole.
    pub(crate) fn error_at_root(&self, reason: String) -> TalosError {
        self.error(self.root, reason)
    }
}

fn patch_error(source: &str, at: Pos, reason: String) -> TalosError {
    TalosError::InvalidConfigPatch {
        origin: source.to_owned(),
        line: at.line,
        column: at.column,
        reason,
    }
}

fn display_path(keys: &[&str]) -> String {
    if keys.is_empty() {
        "the document".to_owned()
    } else {
        keys.join(".").replace(".[]", "[]")
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Parses the single YAML document of a patch into a tree with positions.
fn parse_document(source: &str, text: &str) -> Result<PNode, TalosError> {
    let at_start = Pos { line: 1, column: 1 };
    if text.len() as u64 > MAX_PATCH_BYTES {
        return Err(patch_error(
            source,
            at_start,
            format!(
                "the patch is {} bytes, more than {MAX_PATCH_BYTES} (1 MiB), the most a config \
                 patch may be",
                text.len()
            ),
        ));
    }
    // A streaming pass with serde-saphyr's budget first (no tree is built): it bounds nesting
    // (the parser below recurses once per level), node and alias counts. Its budget counts
    // aliases but not what they expand to; `Expansion` below bounds that. Invalid YAML is left to
    // the parser below, which reports it with its position.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_PATCH_DEPTH;
    budget.max_nodes = MAX_EXPANDED_NODES;
    budget.max_aliases = MAX_EXPANDED_NODES;
    budget.max_total_scalar_bytes = MAX_EXPANDED_SCALAR_BYTES;
    if let Ok(report) = serde_saphyr::budget::check_yaml_budget(
        text,
        budget,
        serde_saphyr::budget::EnforcingPolicy::AllContent,
    ) && let Some(breach) = report.breached
    {
        return Err(patch_error(
            source,
            at_start,
            format!(
                "the patch exceeds cto's YAML limits ({breach:?}; at most {MAX_PATCH_DEPTH} \
                 levels of nesting and {MAX_EXPANDED_NODES} nodes)"
            ),
        ));
    }
    let mut parser = Parser::new_from_str(text);
    let mut anchors = Anchors {
        nodes: HashMap::new(),
        expansion: Expansion::default(),
    };
    let mut root = None;
    loop {
        let (event, span) = next_event(source, &mut parser)?;
        match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::DocumentEnd => {}
            Event::DocumentStart(..) => {
                if root.is_some() {
                    return Err(patch_error(
                        source,
                        Pos::of(&span),
                        "the patch holds more than one YAML document; give each document as a \
                         separate patch"
                            .to_owned(),
                    ));
                }
                let (event, span) = next_event(source, &mut parser)?;
                root = Some(parse_node(source, &mut parser, event, span, &mut anchors)?);
            }
            _ => {}
        }
    }
    match root {
        Some(PNode {
            value: PValue::Null,
            ..
        })
        | None => Err(patch_error(
            source,
            Pos { line: 1, column: 1 },
            "the patch is empty".to_owned(),
        )),
        Some(root) => Ok(root),
    }
}

/// The anchors seen so far (each with the size of its node) and the size of the document
/// parsed so far, aliases expanded.
struct Anchors {
    nodes: HashMap<usize, (PNode, Expansion)>,
    expansion: Expansion,
}

/// The size of (part of) a document with its aliases expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Expansion {
    nodes: usize,
    scalar_bytes: usize,
}

impl Expansion {
    /// Adds `more`, or says why the document would grow beyond the bounds.
    fn add(&mut self, more: Expansion) -> Result<(), String> {
        let nodes = self.nodes.saturating_add(more.nodes);
        let scalar_bytes = self.scalar_bytes.saturating_add(more.scalar_bytes);
        if nodes > MAX_EXPANDED_NODES || scalar_bytes > MAX_EXPANDED_SCALAR_BYTES {
            return Err(format!(
                "the patch's YAML aliases expand beyond cto's bound of {MAX_EXPANDED_NODES} nodes \
                 and {MAX_EXPANDED_SCALAR_BYTES} bytes of text (an alias bomb?); write the \
                 values out instead of aliasing them"
            ));
        }
        *self = Expansion {
            nodes,
            scalar_bytes,
        };
        Ok(())
    }

    fn since(self, before: Expansion) -> Expansion {
        Expansion {
            nodes: self.nodes - before.nodes,
            scalar_bytes: self.scalar_bytes - before.scalar_bytes,
        }
    }
}

/// The next event that is part of the document's data (comments and anchor names skipped).
fn next_event<'a>(
    source: &str,
    parser: &mut Parser<'a, serde_saphyr::granit_parser::StrInput<'a>>,
) -> Result<(Event<'a>, Span), TalosError> {
    loop {
        match parser.next_event() {
            None => {
                return Ok((
                    Event::StreamEnd,
                    Span::empty(serde_saphyr::granit_parser::Marker::new(0, 1, 0)),
                ));
            }
            Some(Err(e)) => {
                return Err(TalosError::InvalidConfigPatch {
                    origin: source.to_owned(),
                    line: e.marker().line() as u64,
                    column: e.marker().col() as u64 + 1,
                    reason: format!("invalid YAML: {}", e.info()),
                });
            }
            Some(Ok((event, span))) => match event {
                Event::StreamStart
                | Event::StreamEnd
                | Event::DocumentStart(..)
                | Event::DocumentEnd
                | Event::Alias(..)
                | Event::UnresolvedAlias(..)
                | Event::Scalar(..)
                | Event::SequenceStart(..)
                | Event::SequenceEnd
                | Event::MappingStart(..)
                | Event::MappingEnd => return Ok((event, span)),
                // Comments and anchor names: presentation only.
                _ => continue,
            },
        }
    }
}

fn parse_node<'a>(
    source: &str,
    parser: &mut Parser<'a, serde_saphyr::granit_parser::StrInput<'a>>,
    event: Event<'a>,
    span: Span,
    anchors: &mut Anchors,
) -> Result<PNode, TalosError> {
    let at = Pos::of(&span);
    let fail = |at: Pos, reason: String| patch_error(source, at, reason);
    let check_tag = |tag: Option<&serde_saphyr::granit_parser::Tag>, expected: &[&str]| match tag {
        None => Ok(None),
        Some(tag) => match tag.core_suffix() {
            Some(suffix) if expected.contains(&suffix) => Ok(Some(suffix.to_owned())),
            _ if tag.handle() == "!" && tag.suffix().is_empty() => Ok(Some("str".to_owned())),
            _ => Err(fail(
                at,
                format!(
                    "the YAML tag {}{} is not supported here",
                    tag.handle(),
                    tag.suffix()
                ),
            )),
        },
    };

    let before = anchors.expansion;
    let (anchor, node) = match event {
        Event::Scalar(text, style, anchor, tag) => {
            anchors
                .expansion
                .add(Expansion {
                    nodes: 1,
                    scalar_bytes: text.len(),
                })
                .map_err(|reason| fail(at, reason))?;
            let tag = check_tag(
                tag.as_deref(),
                &["str", "null", "bool", "int", "float", "timestamp"],
            )?;
            let value = match (tag.as_deref(), style) {
                (Some("str"), _) => PValue::Scalar(Node::Str(text.into_owned())),
                (Some("null"), _) => PValue::Null,
                (None, ScalarStyle::Plain) if is_null(&text) => PValue::Null,
                (_, ScalarStyle::Plain) => PValue::Scalar(Node::Plain(text.into_owned())),
                (Some(_), _) => PValue::Scalar(Node::Plain(text.into_owned())),
                (None, _) => PValue::Scalar(Node::Str(text.into_owned())),
            };
            (anchor, PNode { at, value })
        }
        Event::SequenceStart(_, anchor, tag) => {
            check_tag(tag.as_deref(), &["seq"])?;
            anchors
                .expansion
                .add(Expansion {
                    nodes: 1,
                    scalar_bytes: 0,
                })
                .map_err(|reason| fail(at, reason))?;
            let mut items = Vec::new();
            loop {
                let (event, span) = next_event(source, parser)?;
                if matches!(event, Event::SequenceEnd) {
                    break;
                }
                items.push(parse_node(source, parser, event, span, anchors)?);
            }
            (
                anchor,
                PNode {
                    at,
                    value: PValue::Seq(items),
                },
            )
        }
        Event::MappingStart(_, anchor, tag) => {
            check_tag(tag.as_deref(), &["map"])?;
            anchors
                .expansion
                .add(Expansion {
                    nodes: 1,
                    scalar_bytes: 0,
                })
                .map_err(|reason| fail(at, reason))?;
            let mut entries: Vec<PEntry> = Vec::new();
            loop {
                let (event, span) = next_event(source, parser)?;
                if matches!(event, Event::MappingEnd) {
                    break;
                }
                let key = parse_node(source, parser, event, span, anchors)?;
                let key_text = match &key.value {
                    PValue::Scalar(node) => node.scalar_text().unwrap_or_default().to_owned(),
                    PValue::Null => String::new(),
                    _ => {
                        return Err(fail(
                            key.at,
                            "complex mapping keys are not supported".to_owned(),
                        ));
                    }
                };
                if key_text == "<<" && matches!(key.value, PValue::Scalar(Node::Plain(_))) {
                    return Err(fail(
                        key.at,
                        "YAML merge keys (`<<`) are not supported in config patches".to_owned(),
                    ));
                }
                if entries.iter().any(|e| e.key == key_text) {
                    return Err(fail(
                        key.at,
                        format!("mapping key {key_text:?} is defined twice"),
                    ));
                }
                let (event, span) = next_event(source, parser)?;
                let value = parse_node(source, parser, event, span, anchors)?;
                entries.push(PEntry {
                    key: key_text,
                    value,
                });
            }
            (
                anchor,
                PNode {
                    at,
                    value: PValue::Map(entries),
                },
            )
        }
        Event::Alias(id) => {
            let (target, size) = anchors
                .nodes
                .get(&id)
                .ok_or_else(|| fail(at, "alias to an unknown anchor".to_owned()))?;
            // Counted before the copy is made, so an alias bomb never allocates.
            anchors
                .expansion
                .add(*size)
                .map_err(|reason| fail(at, reason))?;
            return Ok(PNode {
                at,
                value: target.value.clone(),
            });
        }
        Event::UnresolvedAlias(name) => {
            return Err(fail(at, format!("alias *{name} has no anchor")));
        }
        _ => {
            return Err(fail(at, "unexpected YAML event".to_owned()));
        }
    };
    if anchor != 0 {
        let size = anchors.expansion.since(before);
        anchors.nodes.insert(anchor, (node.clone(), size));
    }
    Ok(node)
}

/// The plain scalars YAML resolves to null.
fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Checks one top-level entry of a patch.
fn check_top_level(source: &str, entry: &PEntry) -> Result<(), TalosError> {
    let fail = |at: Pos, reason: String| patch_error(source, at, reason);
    let value = &entry.value;
    match entry.key.as_str() {
        "version" => match value.scalar_text() {
            Some("v1alpha1") => Ok(()),
            _ => Err(fail(
                value.at,
                "`version` must be v1alpha1 (the only machine configuration version)".to_owned(),
            )),
        },
        "debug" | "persist" => Ok(()),
        "machine" | "cluster" => {
            let known = if entry.key == "machine" {
                MACHINE_KEYS
            } else {
                CLUSTER_KEYS
            };
            let entries = match &value.value {
                PValue::Null => return Ok(()),
                PValue::Map(entries) => entries,
                _ => {
                    return Err(fail(
                        value.at,
                        format!("`{}` must be a mapping, not {}", entry.key, value.kind()),
                    ));
                }
            };
            for e in entries {
                if e.key == "$patch" {
                    continue;
                }
                if !known.contains(&e.key.as_str()) {
                    return Err(fail(
                        e.value.at,
                        format!(
                            "unknown key `{}.{}`: Talos v1alpha1 `{}` has no such field",
                            entry.key, e.key, entry.key
                        ),
                    ));
                }
            }
            if entry.key == "machine"
                && let Some(ty) = value.get("type")
                && ty.get("$patch").is_none()
            {
                match ty.scalar_text() {
                    Some("controlplane" | "worker") => {}
                    _ => {
                        return Err(fail(
                            ty.at,
                            "`machine.type` can only be controlplane or worker, and it must be \
                             the role the patch is applied to"
                                .to_owned(),
                        ));
                    }
                }
            }
            Ok(())
        }
        "apiVersion" | "kind" => Err(fail(
            value.at,
            format!(
                "unknown top-level key `{}`: only the v1alpha1 machine configuration can be \
                 patched, not other configuration documents",
                entry.key
            ),
        )),
        other => Err(fail(
            value.at,
            format!(
                "unknown top-level key `{other}`: a machine configuration patch has only {}",
                TOP_LEVEL_KEYS.join(", ")
            ),
        )),
    }
}

/// Collects the `$patch: delete` nodes of `node` (at `path`; `in_item` when some ancestor is a
/// list item) into `deletes`, and returns `node` without them (`None` when nothing is left).
fn strip_deletes(
    source: &str,
    node: &PNode,
    path: &mut Vec<String>,
    in_item: bool,
    deletes: &mut Vec<Delete>,
) -> Result<Option<PNode>, TalosError> {
    match &node.value {
        PValue::Map(entries) => {
            if let Some(marker) = entries.iter().find(|e| e.key == "$patch") {
                if marker.value.scalar_text() != Some("delete") {
                    return Err(patch_error(
                        source,
                        marker.value.at,
                        "`$patch` only supports `delete`".to_owned(),
                    ));
                }
                if in_item {
                    return Err(patch_error(
                        source,
                        marker.value.at,
                        format!(
                            "cannot delete `{}` inside a list item",
                            display_path(&path.iter().map(String::as_str).collect::<Vec<_>>())
                        ),
                    ));
                }
                deletes.push(Delete {
                    path: path.clone(),
                    item: None,
                    at: marker.value.at,
                });
                return Ok(None);
            }
            let mut kept = Vec::new();
            for e in entries {
                path.push(e.key.clone());
                let stripped = strip_deletes(source, &e.value, path, in_item, deletes)?;
                path.pop();
                // A mapping emptied by deletions disappears, as in Talos.
                if let Some(value) = stripped {
                    kept.push(PEntry {
                        key: e.key.clone(),
                        value,
                    });
                }
            }
            if kept.is_empty() && !entries.is_empty() {
                return Ok(None);
            }
            Ok(Some(PNode {
                at: node.at,
                value: PValue::Map(kept),
            }))
        }
        PValue::Seq(items) => {
            let mut kept = Vec::new();
            for item in items {
                if let Some(entries) = item.entries()
                    && let Some(marker) = entries.iter().find(|e| e.key == "$patch")
                {
                    if marker.value.scalar_text() != Some("delete") {
                        return Err(patch_error(
                            source,
                            marker.value.at,
                            "`$patch` only supports `delete`".to_owned(),
                        ));
                    }
                    let selector = entries
                        .iter()
                        .find(|e| e.key != "$patch")
                        .and_then(|e| Some((e.key.clone(), e.value.scalar_text()?.to_owned())));
                    let (Some(selector), false) = (selector, in_item) else {
                        return Err(patch_error(
                            source,
                            marker.value.at,
                            "a list item with `$patch: delete` must be selected by a key and \
                             scalar value (such as `- name: PodSecurity`), in a list that is not \
                             itself inside a list"
                                .to_owned(),
                        ));
                    };
                    deletes.push(Delete {
                        path: path.clone(),
                        item: Some(selector),
                        at: marker.value.at,
                    });
                    continue;
                }
                path.push("[]".to_owned());
                let stripped = strip_deletes(source, item, path, true, deletes)?;
                path.pop();
                if let Some(item) = stripped {
                    kept.push(item);
                }
            }
            if kept.is_empty() && !items.is_empty() {
                return Ok(None);
            }
            Ok(Some(PNode {
                at: node.at,
                value: PValue::Seq(kept),
            }))
        }
        _ => Ok(Some(node.clone())),
    }
}

// ---------------------------------------------------------------------------------------------
// Applying
// ---------------------------------------------------------------------------------------------

fn apply_delete(config: &mut Map, delete: &Delete) {
    let Some((last, parents)) = delete.path.split_last() else {
        return;
    };
    let mut map = config;
    for key in parents {
        match map.get_mut(key).and_then(Node::as_map_mut) {
            Some(next) => map = next,
            None => return,
        }
    }
    match &delete.item {
        None => {
            map.remove(last);
        }
        Some((key, value)) => {
            if let Some(Node::Seq(items)) = map.get_mut(last)
                && let Some(index) = items.iter().position(|item| {
                    item.as_map()
                        .and_then(|m| m.get(key))
                        .and_then(Node::scalar_text)
                        == Some(value.as_str())
                })
            {
                items.remove(index);
            }
        }
    }
}

fn path_is(path: &[String], pattern: &[&str]) -> bool {
    path.len() == pattern.len() && path.iter().zip(pattern).all(|(a, b)| a == b)
}

fn merge_map(
    patch: &ConfigPatch,
    left: &mut Map,
    right: &[PEntry],
    path: &mut Vec<String>,
) -> Result<(), TalosError> {
    for entry in right {
        if entry.value.value == PValue::Null {
            continue;
        }
        path.push(entry.key.clone());
        match left.get_mut(&entry.key) {
            None => left.insert(&entry.key, entry.value.to_node()),
            Some(existing) => merge_value(patch, existing, &entry.value, path)?,
        }
        path.pop();
    }
    Ok(())
}

fn merge_value(
    patch: &ConfigPatch,
    left: &mut Node,
    right: &PNode,
    path: &mut Vec<String>,
) -> Result<(), TalosError> {
    let mismatch = |left: &Node| {
        patch.error(
            right.at,
            format!(
                "`{}` is {} in the configuration, but the patch gives {}",
                display_path(&path.iter().map(String::as_str).collect::<Vec<_>>()),
                left.kind(),
                right.kind()
            ),
        )
    };
    let replaced = REPLACED.iter().any(|p| path_is(path, p));
    match (&right.value, &mut *left) {
        (PValue::Null, _) => {}
        (PValue::Scalar(node), Node::Str(_) | Node::Plain(_)) => {
            // Talos skips zero values; an empty string is the one zero we can tell apart without
            // knowing the field's Go type.
            if *node != Node::Str(String::new()) {
                *left = node.clone();
            }
        }
        (PValue::Map(_), Node::Map(_)) if replaced => *left = right.to_node(),
        (PValue::Map(entries), Node::Map(map)) => merge_map(patch, map, entries, path)?,
        (PValue::Seq(_), Node::Seq(_)) if replaced => *left = right.to_node(),
        (PValue::Seq(items), Node::Seq(existing)) => {
            let identity = list_identity(path);
            for item in items {
                let matched = identity.and_then(|identity| {
                    existing
                        .iter()
                        .position(|candidate| same_item(identity, candidate, item))
                });
                match matched {
                    Some(index) => {
                        path.push("[]".to_owned());
                        merge_value(patch, &mut existing[index], item, path)?;
                        path.pop();
                    }
                    None => existing.push(item.to_node()),
                }
            }
        }
        (_, left) => return Err(mismatch(left)),
    }
    Ok(())
}

/// How items of the list at `path` are identified, for the lists Talos merges item by item.
#[derive(Debug, Clone, Copy)]
enum Identity {
    /// `machine.network.interfaces`: by `interface`, else by an equal `deviceSelector`.
    Device,
    /// By the scalar value of this key.
    Key(&'static str),
}

fn list_identity(path: &[String]) -> Option<Identity> {
    if path_is(path, &["machine", "network", "interfaces"]) {
        Some(Identity::Device)
    } else if path_is(path, &["machine", "network", "interfaces", "[]", "vlans"]) {
        Some(Identity::Key("vlanId"))
    } else if path_is(path, &["cluster", "apiServer", "admissionControl"]) {
        Some(Identity::Key("name"))
    } else {
        None
    }
}

fn same_item(identity: Identity, candidate: &Node, item: &PNode) -> bool {
    let Some(candidate) = candidate.as_map() else {
        return false;
    };
    let scalar = |key: &str| {
        candidate
            .get(key)
            .and_then(Node::scalar_text)
            .zip(item.get(key).and_then(PNode::scalar_text))
    };
    match identity {
        Identity::Key(key) => scalar(key).is_some_and(|(a, b)| a == b),
        Identity::Device => match scalar("interface") {
            Some((a, b)) if !b.is_empty() => a == b,
            _ => match (candidate.get("deviceSelector"), item.get("deviceSelector")) {
                (Some(a), Some(b)) if item.get("interface").is_none() => {
                    same_content(a, &b.to_node())
                }
                _ => false,
            },
        },
    }
}

/// Deep equality that ignores the order of mapping keys.
fn same_content(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Map(a), Node::Map(b)) => {
            a.keys().count() == b.keys().count()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| same_content(v, w)))
        }
        (Node::Seq(a), Node::Seq(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(v, w)| same_content(v, w))
        }
        _ => a.scalar_text().is_some() && a.scalar_text() == b.scalar_text(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::talos::config::node::to_yaml;

    fn config() -> Map {
        let text = "\
version: v1alpha1
machine:
  type: controlplane
  certSANs: [a]
  sysctls: {x: '1'}
  network:
    interfaces:
      - interface: eth0
        mtu: 1500
        vlans: [{vlanId: 10, mtu: 1400}]
      - deviceSelector: {driver: virtio, physical: true}
        dhcp: false
  nodeLabels:
    node.kubernetes.io/exclude-from-external-load-balancers: ''
  install: {disk: /dev/sda, wipe: false}
cluster:
  network:
    podSubnets: [10.244.0.0/16]
  apiServer:
    admissionControl:
      - name: PodSecurity
        configuration:
          exemptions: {namespaces: [kube-system]}
    auditPolicy: {rules: [{level: Metadata}]}
";
        let patch = ConfigPatch::parse("base", text).unwrap();
        match patch.merge.unwrap().to_node() {
            Node::Map(m) => m,
            _ => unreachable!(),
        }
    }

    fn patched(patch: &str) -> Result<Map, TalosError> {
        let mut config = config();
        ConfigPatch::parse("p.yaml", patch)?.apply(&mut config, MachineType::ControlPlane)?;
        Ok(config)
    }

    fn at<'a>(map: &'a Map, path: &[&str]) -> &'a Node {
        let root = Node::Map(map.clone());
        let node = root.get_path(path).cloned();
        Box::leak(Box::new(node.unwrap_or_else(|| panic!("no {path:?}"))))
    }

    fn texts(node: &Node) -> Vec<&str> {
        match node {
            Node::Seq(items) => items.iter().filter_map(Node::scalar_text).collect(),
            _ => panic!("not a sequence: {node:?}"),
        }
    }

    #[test]
    fn config_patch_maps_merge_scalars_replace_lists_append() {
        let c = patched(
            "machine:\n  certSANs: [b]\n  sysctls: {y: '2', x: '3'}\n  install: {disk: ''}\n  \
             kubelet: {extraArgs: {a: b}}\n",
        )
        .unwrap();
        assert_eq!(texts(at(&c, &["machine", "certSANs"])), ["a", "b"]);
        let sysctls = at(&c, &["machine", "sysctls"]).as_map().unwrap();
        assert_eq!(sysctls.get("x"), Some(&Node::str("3")));
        assert_eq!(sysctls.get("y"), Some(&Node::str("2")));
        // An empty string is "not set" for Talos: the disk stays.
        assert_eq!(
            at(&c, &["machine", "install", "disk"]),
            &Node::Plain("/dev/sda".into())
        );
        assert_eq!(
            at(&c, &["machine", "kubelet", "extraArgs", "a"]),
            &Node::Plain("b".into())
        );
        // `false` always replaces.
        let c = patched("machine: {install: {wipe: true}}").unwrap();
        assert_eq!(at(&c, &["machine", "install", "wipe"]), &Node::bool(true));
    }

    #[test]
    fn config_patch_replace_fields_and_identity_lists() {
        let c = patched(
            "cluster:\n  network: {podSubnets: [10.0.0.0/8]}\n  apiServer:\n    auditPolicy: \
             {rules: [{level: None}]}\n    admissionControl:\n      - name: PodSecurity\n        \
             configuration: {exemptions: {namespaces: [openebs]}}\n      - name: Other\n",
        )
        .unwrap();
        assert_eq!(
            at(&c, &["cluster", "network", "podSubnets"]),
            &Node::Seq(vec![Node::Plain("10.0.0.0/8".into())])
        );
        let text = to_yaml(&c);
        assert!(
            text.contains("rules:\n                - level: None\n"),
            "{text}"
        );
        assert!(!text.contains("Metadata"), "{text}");
        let Node::Seq(plugins) = at(&c, &["cluster", "apiServer", "admissionControl"]) else {
            panic!()
        };
        assert_eq!(plugins.len(), 2);
        assert_eq!(
            plugins[0].get_path(&["configuration", "exemptions", "namespaces"]),
            Some(&Node::Seq(vec![
                Node::Plain("kube-system".into()),
                Node::Plain("openebs".into())
            ]))
        );
    }

    #[test]
    fn config_patch_network_interfaces_merge_by_name_selector_and_vlan() {
        let c = patched(
            "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        mtu: 9000\n        \
             vlans: [{vlanId: 10, mtu: 1300}, {vlanId: 20}]\n      - deviceSelector: {physical: \
             true, driver: virtio}\n        dhcp: true\n      - interface: eth1\n",
        )
        .unwrap();
        let Node::Seq(ifaces) = at(&c, &["machine", "network", "interfaces"]) else {
            panic!()
        };
        assert_eq!(ifaces.len(), 3);
        assert_eq!(
            ifaces[0].get_path(&["mtu"]),
            Some(&Node::Plain("9000".into()))
        );
        let Some(Node::Seq(vlans)) = ifaces[0].get_path(&["vlans"]) else {
            panic!()
        };
        assert_eq!(vlans.len(), 2);
        assert_eq!(
            vlans[0].get_path(&["mtu"]),
            Some(&Node::Plain("1300".into()))
        );
        assert_eq!(
            ifaces[1].get_path(&["dhcp"]),
            Some(&Node::Plain("true".into()))
        );
    }

    #[test]
    fn config_patch_deletes_keys_and_list_items() {
        let c = patched(
            "machine:\n  nodeLabels:\n    node.kubernetes.io/exclude-from-external-load-balancers:\n      \
             $patch: delete\n  sysctls: {$patch: delete}\n  network: {hostname: {$patch: delete}}\n\
             cluster:\n  apiServer:\n    admissionControl:\n      - name: PodSecurity\n        \
             $patch: delete\n",
        )
        .unwrap();
        assert_eq!(
            at(&c, &["machine", "nodeLabels"]),
            &Node::Map(Map::new()),
            "the label is gone, the mapping stays"
        );
        assert!(at(&c, &["machine"]).get_path(&["sysctls"]).is_none());
        assert_eq!(
            at(&c, &["cluster", "apiServer", "admissionControl"]),
            &Node::Seq(vec![])
        );
    }

    #[test]
    fn config_patch_plain_scalars_are_kept_as_written() {
        let c = patched("machine:\n  sysctls: {a: 0o644, b: yes, c: '0o644'}\n").unwrap();
        let text = to_yaml(&c);
        assert!(text.contains("a: 0o644\n"), "{text}");
        assert!(text.contains("b: yes\n"), "{text}");
        assert!(text.contains("c: \"0o644\"\n"), "{text}");
    }

    fn error_of(patch: &str) -> (u64, u64, String) {
        match ConfigPatch::parse("p.yaml", patch).and_then(|p| {
            let mut config = config();
            p.apply(&mut config, MachineType::ControlPlane)
        }) {
            Err(TalosError::InvalidConfigPatch {
                origin,
                line,
                column,
                reason,
            }) => {
                assert_eq!(origin, "p.yaml");
                (line, column, reason)
            }
            other => panic!("expected a patch error, got {other:?}"),
        }
    }

    #[test]
    fn config_patch_invalid_yaml_reports_line_and_column() {
        // The unclosed bracket is reported where it opens.
        let (line, column, reason) = error_of("machine:\n  kubelet:\n    image: [a, b\n");
        assert_eq!((line, column), (3, 12), "{reason}");
        assert!(reason.starts_with("invalid YAML"), "{reason}");

        let (line, column, reason) = error_of("machine:\n  sysctls: {a: 1}\n   bad: 2\n");
        assert_eq!((line, column), (3, 4), "{reason}");

        let (line, column, reason) = error_of("machine:\n  a: b\n  a: c\n");
        assert!(reason.contains("defined twice"), "{reason}");
        assert_eq!((line, column), (3, 3));
    }

    #[test]
    fn config_patch_must_be_a_single_known_mapping() {
        let (line, column, reason) =
            error_of("- op: add\n  path: /machine/sysctls\n  value: {a: b}\n");
        assert_eq!((line, column), (1, 1));
        assert!(reason.contains("must be a YAML mapping"), "{reason}");
        assert!(reason.contains("RFC 6902"), "{reason}");

        let (line, column, reason) = error_of("# nothing\n");
        assert_eq!((line, column), (1, 1));
        assert!(reason.contains("empty"), "{reason}");

        let (line, _, reason) = error_of("machine: {}\n---\ncluster: {}\n");
        assert_eq!(line, 2, "{reason}");
        assert!(reason.contains("more than one YAML document"), "{reason}");

        let (line, column, reason) = error_of("machine: {}\nmachin: {}\n");
        assert_eq!((line, column), (2, 9));
        assert!(
            reason.contains("unknown top-level key `machin`"),
            "{reason}"
        );

        let (_, _, reason) = error_of("apiVersion: v1alpha1\nkind: UserVolumeConfig\n");
        assert!(reason.contains("other configuration documents"), "{reason}");

        let (line, column, reason) = error_of("machine:\n  kubelett: {}\n");
        assert_eq!((line, column), (2, 13));
        assert!(reason.contains("machine.kubelett"), "{reason}");

        let (_, _, reason) = error_of("version: v1alpha2\n");
        assert!(reason.contains("v1alpha1"), "{reason}");
    }

    #[test]
    fn config_patch_cannot_change_machine_type() {
        let (line, column, reason) = error_of("machine:\n  type: worker\n");
        assert_eq!((line, column), (2, 9));
        assert!(
            reason.contains("changes machine.type from controlplane to worker"),
            "{reason}"
        );
        let (_, _, reason) = error_of("machine:\n  type: init\n");
        assert!(reason.contains("controlplane or worker"), "{reason}");
        let (_, _, reason) = error_of("machine:\n  type:\n    $patch: delete\n");
        assert!(reason.contains("cannot be deleted"), "{reason}");
        // Stating the role the patch is applied to is allowed.
        patched("machine:\n  type: controlplane\n").unwrap();
    }

    #[test]
    fn config_patch_shape_conflicts_are_refused() {
        let (line, column, reason) = error_of("machine:\n  certSANs: {a: b}\n");
        assert_eq!((line, column), (2, 13));
        assert!(
            reason.contains("`machine.certSANs` is a sequence in the configuration"),
            "{reason}"
        );
        let (_, _, reason) = error_of("machine:\n  certSANs: [{$patch: replace, a: b}]\n");
        assert!(reason.contains("only supports `delete`"), "{reason}");
        let (_, _, reason) = error_of("machine: {a: &x {b: c}, <<: *x}\n");
        assert!(reason.contains("merge keys"), "{reason}");
    }

    #[test]
    fn config_patch_keeps_source_and_text() {
        let p = ConfigPatch::parse("@cilium.yaml", "cluster: {proxy: {disabled: true}}").unwrap();
        assert_eq!(p.source(), "@cilium.yaml");
        assert_eq!(p.text(), "cluster: {proxy: {disabled: true}}");
    }

    /// A "billion laughs" patch: nine levels of nine aliases each, about 500 bytes standing for
    /// 9^9 (387 million) scalars.
    fn alias_bomb() -> String {
        let mut text = String::from(
            "machine:\n  nodeLabels:\n    x: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
        );
        for level in 1..9 {
            let prev = format!("*a{}", level - 1);
            let items = [prev.as_str(); 9].join(", ");
            text.push_str(&format!("    l{level}: &a{level} [{items}]\n"));
        }
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_while_parsing() {
        let bomb = alias_bomb();
        assert!(bomb.len() < 600, "{}", bomb.len());
        let err = ConfigPatch::parse("bomb.yaml", &bomb).unwrap_err();
        assert!(err.to_string().contains("aliases expand beyond"), "{err}");
        // A few aliases within the bound are still YAML as Talos reads it.
        let ok = "machine:\n  certSANs: &s [a, b]\n  nodeLabels: {x: &v one, y: *v}\n";
        ConfigPatch::parse("ok.yaml", ok).unwrap();
    }

    #[test]
    fn deep_nesting_and_oversized_patches_are_refused() {
        let deep = format!(
            "machine:\n  nodeLabels: {}{}\n",
            "[".repeat(200),
            "]".repeat(200)
        );
        let err = ConfigPatch::parse("deep.yaml", &deep).unwrap_err();
        assert!(err.to_string().contains("limits"), "{err}");
        let big = format!(
            "machine:\n  nodeLabels:\n    x: \"{}\"\n",
            "a".repeat(1 << 20)
        );
        let err = ConfigPatch::parse("big.yaml", &big).unwrap_err();
        assert!(err.to_string().contains("1 MiB"), "{err}");
    }

    #[test]
    fn patch_files_must_be_small_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.yaml");
        std::fs::write(&ok, "machine: {}\n").unwrap();
        assert_eq!(read_patch_file(&ok).unwrap(), "machine: {}\n");

        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'#'; (MAX_PATCH_BYTES + 1) as usize]).unwrap();
        assert!(read_patch_file(&big).unwrap_err().contains("1 MiB"));

        let e = read_patch_file(dir.path()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        #[cfg(unix)]
        {
            let e = read_patch_file(std::path::Path::new("/dev/zero")).unwrap_err();
            assert!(e.contains("not a regular file"), "{e}");
        }
        let e = read_patch_file(&dir.path().join("missing.yaml")).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }
}
