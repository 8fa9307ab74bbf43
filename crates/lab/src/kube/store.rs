//! The object store behind the lab's Kubernetes API: etcd plus the API server's watch cache, in
//! memory.
//!
//! Objects are `serde_json::Value`s keyed by group/version/resource, namespace ("" for
//! cluster-scoped resources) and name. One global, monotonically increasing resource version
//! counts every change; the store stamps `metadata.resourceVersion`, `metadata.uid` and
//! `metadata.creationTimestamp`. Every change is an event (`ADDED`, `MODIFIED`, `DELETED`) kept
//! in a bounded history, so a watch can start from any recent resource version; older ones get
//! `410 Gone`, as from a compacted etcd. An update that changes nothing is not a change: no new
//! resource version, no event (the real API server skips no-op writes too).
//!
//! A store may be persisted (etcd's disk): a snapshot (`kube-<cluster>.json`, temp file and
//! rename) holding the objects and the resource version, plus a journal beside it
//! (`kube-<cluster>.log`, one JSON line per change, appended before the change becomes
//! visible), so a restarted lab serves the same objects at the same resource versions. A
//! change costs one line of its own size, not a rewrite of the whole store; the journal is
//! folded into a new snapshot when it outgrows it (and when the store is opened). A lab killed
//! mid-append leaves at most a torn last line, which is ignored. The event history is not
//! persisted: a watch from a version before the restart gets `410 Gone`, as after an etcd
//! compaction.
//!
//! Secrets are encrypted before they are persisted when the cluster has an encryption secret
//! ([`Store::persisted_encrypted`]): Talos configures kube-apiserver's EncryptionConfiguration
//! with the `secretbox` provider, key `key2` = `cluster.secretboxEncryptionSecret`, for
//! `secrets` (siderolabs/talos
//! `internal/app/machined/pkg/controllers/k8s/templates/kube-system-encryption-config-template.yaml`),
//! so etcd's disk never holds a Secret's data in clear, only
//! `k8s:enc:secretbox:v1:key2:<nonce><box>`. The lab writes the same envelope shape with the
//! same key, sealed with ChaCha20-Poly1305 from ring (the tree's one crypto provider) instead
//! of XSalsa20-Poly1305: nothing but the lab reads its files, and what matters is that a token
//! given to the cluster (the GitOps repository credential) is not in the lab's state in clear.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// How many events the history keeps (the watch cache's window).
const HISTORY: usize = 10_000;
/// How many events a slow watcher may fall behind before its watch is closed.
const BROADCAST_CAPACITY: usize = 4_096;
/// The journal is folded into a new snapshot once it is this many times the snapshot's size
/// (and at least [`JOURNAL_MIN`] bytes): saving stays linear in the bytes changed.
const JOURNAL_FACTOR: u64 = 4;
const JOURNAL_MIN: u64 = 1 << 20;

/// Group, version and resource (plural), e.g. `("", "v1", "nodes")` or `("apps", "v1",
/// "deployments")`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Gvr {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl Gvr {
    pub fn new(group: &str, version: &str, resource: &str) -> Gvr {
        Gvr {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
        }
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change. `object` is the object after the change (for `DELETED`, the last state with the
/// deletion's resource version); `previous` the object before it (for selector transitions).
#[derive(Debug)]
pub(crate) struct Event {
    pub kind: EventType,
    pub gvr: Gvr,
    pub namespace: String,
    pub resource_version: u64,
    pub object: Value,
    pub previous: Option<Value>,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreError {
    NotFound,
    AlreadyExists,
    /// The caller's `metadata.resourceVersion` is not the stored one.
    Conflict,
    /// The requested resource version is older than the history.
    Expired {
        requested: u64,
        oldest: u64,
    },
    /// The requested resource version is newer than the store.
    TooLarge {
        requested: u64,
        current: u64,
    },
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchFrom {
    /// Synthetic `ADDED` events for the current objects, then changes.
    CurrentState,
    /// Changes after the current resource version only.
    Now,
    /// Changes after this resource version.
    After(u64),
}

/// A watch: the events to send first, then the live feed (events with a resource version at or
/// below `replayed_through` must be skipped, as they were already in the backlog).
pub(crate) struct Subscription {
    pub backlog: Vec<Arc<Event>>,
    pub live: broadcast::Receiver<Arc<Event>>,
    pub replayed_through: u64,
    /// The store's resource version when the watch started.
    pub start_version: u64,
}

type Key = (String, String);

struct Inner {
    resource_version: u64,
    objects: BTreeMap<Gvr, BTreeMap<Key, Value>>,
    history: VecDeque<Arc<Event>>,
    /// Every event after this resource version is still in `history`.
    history_floor: u64,
    /// The open journal of a persisted store.
    journal: Option<Journal>,
}

/// Where a persisted store lives, which cluster incarnation it belongs to, and the key Secrets
/// are sealed with on disk.
struct Persistence {
    path: PathBuf,
    incarnation: String,
    at_rest: Option<ring::aead::LessSafeKey>,
}

/// The envelope of a Secret sealed at rest (Kubernetes' `k8s:enc:<provider>:v1:<key name>:`).
const SEALED_PREFIX: &str = "k8s:enc:lab-chacha20poly1305:v1:key2:";

impl Persistence {
    fn journal_path(&self) -> PathBuf {
        self.path.with_extension("log")
    }

    /// The object as it is written to disk: a Secret sealed when there is a key, anything else
    /// as it is.
    fn seal<'a>(&self, gvr: &Gvr, object: &'a Value) -> std::borrow::Cow<'a, Value> {
        use base64::Engine as _;
        use ring::aead::{Aad, NONCE_LEN, Nonce};
        use ring::rand::SecureRandom as _;
        let (Some(key), true) = (&self.at_rest, is_secret(gvr)) else {
            return std::borrow::Cow::Borrowed(object);
        };
        let mut nonce = [0_u8; NONCE_LEN];
        let Ok(mut bytes) = serde_json::to_vec(object) else {
            return std::borrow::Cow::Borrowed(object);
        };
        if ring::rand::SystemRandom::new().fill(&mut nonce).is_err()
            || key
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    &mut bytes,
                )
                .is_err()
        {
            // Never fall back to clear text: the object is left out of the file instead.
            tracing::warn!("cannot seal a Secret for the kube store; it is not persisted");
            return std::borrow::Cow::Owned(Value::Null);
        }
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&bytes);
        std::borrow::Cow::Owned(Value::String(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(sealed)
        )))
    }

    /// The object as read from disk: a sealed Secret opened; `None` when it cannot be (another
    /// key, a damaged file, or one the seal left out).
    fn open(&self, object: Value) -> Option<Value> {
        use base64::Engine as _;
        use ring::aead::{Aad, NONCE_LEN, Nonce};
        let sealed = match &object {
            Value::Null => return None,
            Value::String(text) => text.strip_prefix(SEALED_PREFIX)?,
            _ => return Some(object),
        };
        let key = self.at_rest.as_ref()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let mut rest = rest.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = key.open_in_place(nonce, Aad::empty(), &mut rest).ok()?;
        serde_json::from_slice(plain).ok()
    }
}

/// Core `secrets`: the resource Talos' EncryptionConfiguration encrypts.
fn is_secret(gvr: &Gvr) -> bool {
    gvr.group.is_empty() && gvr.resource == "secrets"
}

/// The key for sealing Secrets from a base64 `secretboxEncryptionSecret` (32 bytes); `None`
/// (Secrets persisted as they are, Kubernetes' `identity` provider) when there is none or it
/// is not 32 bytes.
fn at_rest_key(secret: Option<&str>) -> Option<ring::aead::LessSafeKey> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret?.trim())
        .ok()?;
    let key = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &bytes).ok()?;
    Some(ring::aead::LessSafeKey::new(key))
}

/// The journal being appended to, and how big it and the last snapshot are.
struct Journal {
    file: std::fs::File,
    bytes: u64,
    snapshot_bytes: u64,
}

/// The store. Cheap to share behind an `Arc`.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<Event>>,
    persistence: Option<Persistence>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        Store {
            inner: Mutex::new(Inner {
                resource_version: 0,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_floor: 0,
                journal: None,
            }),
            events,
            persistence: None,
        }
    }

    /// A store persisted in `path` (and its journal, `path` with the extension `log`). The
    /// snapshot's objects and resource version, then the journal's later changes, are loaded
    /// when the snapshot exists and belongs to `incarnation` (the same cluster: a reinstalled
    /// control plane is a new cluster with an empty store); otherwise the store starts empty. A
    /// snapshot that cannot be parsed is moved aside (`.corrupt`) rather than silently
    /// overwritten. The loaded state is written back as a fresh snapshot with an empty journal.
    #[cfg(test)]
    pub fn persisted(path: &Path, incarnation: &str) -> Store {
        Store::persisted_encrypted(path, incarnation, None)
    }

    /// [`Store::persisted`], with Secrets sealed on disk with the cluster's
    /// `secretboxEncryptionSecret` (base64 of 32 bytes) when it is given and valid; a sealed
    /// Secret that cannot be opened again (another key) is left out when loading.
    pub fn persisted_encrypted(
        path: &Path,
        incarnation: &str,
        encryption_secret: Option<&str>,
    ) -> Store {
        let mut store = Store::new();
        let at_rest = at_rest_key(encryption_secret);
        if encryption_secret.is_some() && at_rest.is_none() {
            tracing::warn!(
                "the cluster's secretbox encryption secret is not 32 bytes of base64; Secrets are persisted unencrypted"
            );
        }
        let persistence = Persistence {
            path: path.to_owned(),
            incarnation: incarnation.to_string(),
            at_rest,
        };
        {
            let mut inner = store.lock();
            if load_snapshot(&persistence, &mut inner) {
                replay_journal(&persistence, &mut inner);
            }
            inner.history_floor = inner.resource_version;
        }
        store.persistence = Some(persistence);
        {
            let mut inner = store.lock();
            store.compact(&mut inner);
        }
        store
    }

    /// Appends the change at `rv` to the journal (no-op for an in-memory store), folding the
    /// journal into a new snapshot when it has grown too big.
    fn save(&self, inner: &mut Inner, gvr: &Gvr, key: &Key, rv: u64, object: Option<&Value>) {
        let Some(persistence) = &self.persistence else {
            return;
        };
        let sealed = object.map(|o| persistence.seal(gvr, o));
        let object = sealed.as_ref().map(|o| o.as_ref());
        let entry = JournalEntry {
            rv: rv.to_string(),
            group: &gvr.group,
            version: &gvr.version,
            resource: &gvr.resource,
            namespace: &key.0,
            name: &key.1,
            object,
        };
        let appended = match (&mut inner.journal, serde_json::to_vec(&entry)) {
            (Some(journal), Ok(mut line)) => {
                line.push(b'\n');
                match journal.file.write_all(&line) {
                    Ok(()) => {
                        journal.bytes += line.len() as u64;
                        journal.bytes < JOURNAL_MIN.max(JOURNAL_FACTOR * journal.snapshot_bytes)
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot append to the kube store journal");
                        false
                    }
                }
            }
            _ => false,
        };
        if !appended {
            self.compact(inner);
        }
    }

    /// Writes the objects to a new snapshot and starts an empty journal (no-op for an
    /// in-memory store). A crash between the two leaves a journal whose changes the snapshot
    /// already holds; loading skips them by resource version.
    fn compact(&self, inner: &mut Inner) {
        let Some(persistence) = &self.persistence else {
            return;
        };
        inner.journal = None;
        let objects: Vec<SnapshotEntry<'_>> = inner
            .objects
            .iter()
            .flat_map(|(gvr, objects)| {
                objects.values().map(move |object| SnapshotEntry {
                    group: &gvr.group,
                    version: &gvr.version,
                    resource: &gvr.resource,
                    object: persistence.seal(gvr, object),
                })
            })
            .collect();
        let doc = Snapshot {
            incarnation: &persistence.incarnation,
            resource_version: inner.resource_version.to_string(),
            objects,
        };
        let mut snapshot_bytes = 0;
        let written = serde_json::to_vec(&doc)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                snapshot_bytes = bytes.len() as u64;
                crate::files::write_private(&persistence.path, &bytes)
            });
        if let Err(error) = written {
            tracing::warn!(path = %persistence.path.display(), %error, "cannot persist the kube store");
            return;
        }
        let header = serde_json::json!({"incarnation": persistence.incarnation}).to_string() + "\n";
        let journal_path = persistence.journal_path();
        let opened = crate::files::create_private(&journal_path).and_then(|mut file| {
            file.write_all(header.as_bytes())?;
            Ok(file)
        });
        match opened {
            Ok(file) => {
                inner.journal = Some(Journal {
                    file,
                    bytes: header.len() as u64,
                    snapshot_bytes,
                });
            }
            Err(error) => {
                tracing::warn!(path = %journal_path.display(), %error, "cannot start the kube store journal");
            }
        }
    }

    /// Every resource that has objects.
    pub fn resources(&self) -> Vec<Gvr> {
        self.lock()
            .objects
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(g, _)| g.clone())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current resource version.
    #[cfg(test)]
    pub fn resource_version(&self) -> u64 {
        self.lock().resource_version
    }

    /// One object.
    pub fn get(&self, gvr: &Gvr, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(gvr)
            .and_then(|m| m.get(&(namespace.to_string(), name.to_string())))
            .cloned()
    }

    /// Objects of a resource, in key order (namespace, then name), in one namespace or all
    /// (`None`), with the resource version they were read at.
    pub fn list(&self, gvr: &Gvr, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .get(gvr)
            .map(|m| {
                m.iter()
                    .filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        (items, inner.resource_version)
    }

    /// The objects of a resource (in one namespace or all) that `keep` selects, in key order.
    /// Only those are cloned: cheap on big lists that few objects pass.
    pub fn list_where(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        keep: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        self.scan(gvr, namespace, |objects| {
            objects.filter(|o| keep(o)).cloned().collect()
        })
    }

    /// Runs `f` over the objects of a resource (in one namespace or all), in key order, without
    /// cloning them. `f` runs under the store's lock: it must not call the store.
    pub fn scan<R>(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        f: impl FnOnce(&mut dyn Iterator<Item = &Value>) -> R,
    ) -> R {
        let inner = self.lock();
        let mut objects = inner
            .objects
            .get(gvr)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
            .map(|(_, v)| v);
        f(&mut objects)
    }

    /// Creates an object. `metadata.name` must be set; `metadata.namespace` is set from
    /// `namespace` for namespaced resources.
    pub fn create(&self, gvr: &Gvr, namespace: &str, object: Value) -> Result<Value, StoreError> {
        let mut inner = self.lock();
        let name = object_name(&object);
        let key = (namespace.to_string(), name);
        if inner.objects.get(gvr).is_some_and(|m| m.contains_key(&key)) {
            return Err(StoreError::AlreadyExists);
        }
        let mut object = object;
        let rv = inner.resource_version + 1;
        stamp_new(&mut object, namespace, rv);
        self.commit(&mut inner, gvr, key, EventType::Added, object.clone(), None);
        Ok(object)
    }

    /// Replaces an object, keeping its uid and creation time. When `object` carries a
    /// `metadata.resourceVersion`, it must be the stored one (optimistic concurrency). Returns
    /// the stored object; a no-op update returns the unchanged object.
    pub fn update(&self, gvr: &Gvr, namespace: &str, object: Value) -> Result<Value, StoreError> {
        let mut inner = self.lock();
        let key = (namespace.to_string(), object_name(&object));
        let Some(old) = inner.objects.get(gvr).and_then(|m| m.get(&key)).cloned() else {
            return Err(StoreError::NotFound);
        };
        if let Some(expected) = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            && Some(expected)
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(StoreError::Conflict);
        }
        Ok(self.replace(&mut inner, gvr, key, old, object))
    }

    /// Creates or replaces an object (no concurrency check).
    pub fn upsert(&self, gvr: &Gvr, namespace: &str, object: Value) -> Value {
        let mut inner = self.lock();
        let key = (namespace.to_string(), object_name(&object));
        match inner.objects.get(gvr).and_then(|m| m.get(&key)).cloned() {
            Some(old) => self.replace(&mut inner, gvr, key, old, object),
            None => {
                let mut object = object;
                let rv = inner.resource_version + 1;
                stamp_new(&mut object, namespace, rv);
                self.commit(&mut inner, gvr, key, EventType::Added, object.clone(), None);
                object
            }
        }
    }

    /// Deletes an object and returns its last state.
    pub fn delete(&self, gvr: &Gvr, namespace: &str, name: &str) -> Result<Value, StoreError> {
        let mut inner = self.lock();
        let key = (namespace.to_string(), name.to_string());
        let Some(old) = inner.objects.get_mut(gvr).and_then(|m| m.remove(&key)) else {
            return Err(StoreError::NotFound);
        };
        let mut last = old.clone();
        let rv = inner.resource_version + 1;
        set_resource_version(&mut last, rv);
        self.commit(
            &mut inner,
            gvr,
            key,
            EventType::Deleted,
            last.clone(),
            Some(old),
        );
        Ok(last)
    }

    /// Starts a watch of `gvr` (in `namespace`, or all). Filtering by namespace and selectors
    /// is the caller's job.
    pub fn watch(&self, gvr: &Gvr, from: WatchFrom) -> Result<Subscription, StoreError> {
        let inner = self.lock();
        let live = self.events.subscribe();
        let current = inner.resource_version;
        let backlog = match from {
            WatchFrom::Now => Vec::new(),
            WatchFrom::CurrentState => inner
                .objects
                .get(gvr)
                .map(|m| {
                    m.iter()
                        .map(|((ns, _), object)| {
                            Arc::new(Event {
                                kind: EventType::Added,
                                gvr: gvr.clone(),
                                namespace: ns.clone(),
                                resource_version: current,
                                object: object.clone(),
                                previous: None,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
            WatchFrom::After(rv) => {
                if rv > current {
                    return Err(StoreError::TooLarge {
                        requested: rv,
                        current,
                    });
                }
                if rv < inner.history_floor {
                    return Err(StoreError::Expired {
                        requested: rv,
                        oldest: inner.history_floor,
                    });
                }
                inner
                    .history
                    .iter()
                    .filter(|e| e.resource_version > rv && e.gvr == *gvr)
                    .cloned()
                    .collect()
            }
        };
        Ok(Subscription {
            backlog,
            live,
            replayed_through: current,
            start_version: current,
        })
    }

    /// Checks that a list may be served "not older than" / "exactly at" `rv`.
    pub fn check_version(&self, rv: u64) -> Result<u64, StoreError> {
        let inner = self.lock();
        if rv > inner.resource_version {
            return Err(StoreError::TooLarge {
                requested: rv,
                current: inner.resource_version,
            });
        }
        Ok(inner.resource_version)
    }

    /// Whether events after `rv` are all still in the history (a continue token from then is
    /// still good).
    pub fn is_retained(&self, rv: u64) -> bool {
        rv >= self.lock().history_floor
    }

    fn replace(
        &self,
        inner: &mut Inner,
        gvr: &Gvr,
        key: Key,
        old: Value,
        mut object: Value,
    ) -> Value {
        // Identity and creation are the store's, whatever the caller sent.
        for field in ["uid", "creationTimestamp", "resourceVersion"] {
            match old.pointer(&format!("/metadata/{field}")) {
                Some(v) => {
                    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.insert(field.to_string(), v.clone());
                    }
                }
                None => {
                    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove(field);
                    }
                }
            }
        }
        if !key.0.is_empty()
            && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.insert("namespace".into(), Value::String(key.0.clone()));
        }
        if object == old {
            return old;
        }
        let rv = inner.resource_version + 1;
        set_resource_version(&mut object, rv);
        self.commit(
            inner,
            gvr,
            key,
            EventType::Modified,
            object.clone(),
            Some(old),
        );
        object
    }

    fn commit(
        &self,
        inner: &mut Inner,
        gvr: &Gvr,
        key: Key,
        kind: EventType,
        object: Value,
        previous: Option<Value>,
    ) {
        inner.resource_version += 1;
        let rv = inner.resource_version;
        let namespace = key.0.clone();
        let saved_key = (self.persistence.is_some()).then(|| key.clone());
        if kind != EventType::Deleted {
            inner
                .objects
                .entry(gvr.clone())
                .or_default()
                .insert(key, object.clone());
        }
        let event = Arc::new(Event {
            kind,
            gvr: gvr.clone(),
            namespace,
            resource_version: rv,
            object,
            previous,
        });
        inner.history.push_back(event.clone());
        while inner.history.len() > HISTORY {
            if let Some(dropped) = inner.history.pop_front() {
                inner.history_floor = dropped.resource_version;
            }
        }
        if let Some(key) = saved_key {
            let saved = (kind != EventType::Deleted).then_some(&event.object);
            self.save(inner, gvr, &key, rv, saved);
        }
        // No receivers is fine.
        let _ = self.events.send(event);
    }
}

fn object_name(object: &Value) -> String {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A snapshot file: the objects at a resource version, for one cluster incarnation.
#[derive(serde::Serialize)]
struct Snapshot<'a> {
    incarnation: &'a str,
    #[serde(rename = "resourceVersion")]
    resource_version: String,
    objects: Vec<SnapshotEntry<'a>>,
}

#[derive(serde::Serialize)]
struct SnapshotEntry<'a> {
    group: &'a str,
    version: &'a str,
    resource: &'a str,
    object: std::borrow::Cow<'a, Value>,
}

/// One line of the journal: the object after the change at `rv`, or none when it was deleted.
#[derive(serde::Serialize)]
struct JournalEntry<'a> {
    rv: String,
    group: &'a str,
    version: &'a str,
    resource: &'a str,
    namespace: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<&'a Value>,
}

/// Loads the snapshot into `inner`; false when there is none for this incarnation (a corrupt
/// one is moved aside).
fn load_snapshot(persistence: &Persistence, inner: &mut Inner) -> bool {
    let path = &persistence.path;
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let Some(mut doc) = parsed.filter(|d| d["objects"].is_array()) else {
        let aside = path.with_extension("json.corrupt");
        tracing::warn!(path = %path.display(), aside = %aside.display(), "kube store file is corrupt; starting empty");
        let _ = std::fs::rename(path, aside);
        return false;
    };
    if doc["incarnation"] != persistence.incarnation.as_str() {
        tracing::info!(path = %path.display(), "kube store file is from another cluster incarnation; starting empty");
        return false;
    }
    inner.resource_version = doc["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let entries = match doc["objects"].take() {
        Value::Array(entries) => entries,
        _ => Vec::new(),
    };
    for mut entry in entries {
        let gvr = Gvr::new(
            entry["group"].as_str().unwrap_or_default(),
            entry["version"].as_str().unwrap_or_default(),
            entry["resource"].as_str().unwrap_or_default(),
        );
        let Some(object) = persistence.open(entry["object"].take()) else {
            tracing::warn!(path = %path.display(), "a sealed Secret in the kube store cannot be opened; leaving it out");
            continue;
        };
        let key = (
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            object_name(&object),
        );
        inner.objects.entry(gvr).or_default().insert(key, object);
    }
    true
}

/// Applies the journal's changes newer than the snapshot to `inner`, up to the first line that
/// cannot be parsed (a torn last append). A journal of another incarnation is ignored.
fn replay_journal(persistence: &Persistence, inner: &mut Inner) {
    let Ok(file) = std::fs::File::open(persistence.journal_path()) else {
        return;
    };
    let mut lines = std::io::BufReader::new(file).lines();
    let header: Option<Value> = lines
        .next()
        .and_then(Result::ok)
        .and_then(|l| serde_json::from_str(&l).ok());
    if header.as_ref().map(|h| &h["incarnation"])
        != Some(&Value::from(persistence.incarnation.as_str()))
    {
        return;
    }
    for line in lines {
        let Some(mut entry) = line
            .ok()
            .and_then(|l| serde_json::from_str::<Value>(&l).ok())
        else {
            tracing::warn!(path = %persistence.journal_path().display(), "kube store journal ends with a torn line; ignoring it");
            break;
        };
        let Some(rv) = entry["rv"].as_str().and_then(|v| v.parse::<u64>().ok()) else {
            break;
        };
        if rv <= inner.resource_version {
            continue;
        }
        let gvr = Gvr::new(
            entry["group"].as_str().unwrap_or_default(),
            entry["version"].as_str().unwrap_or_default(),
            entry["resource"].as_str().unwrap_or_default(),
        );
        let key = (
            entry["namespace"].as_str().unwrap_or_default().to_string(),
            entry["name"].as_str().unwrap_or_default().to_string(),
        );
        match entry.get_mut("object").map(Value::take) {
            Some(object) => match persistence.open(object) {
                Some(object) => {
                    inner.objects.entry(gvr).or_default().insert(key, object);
                }
                None => {
                    tracing::warn!(
                        "a sealed Secret in the kube store journal cannot be opened; leaving it out"
                    );
                    if let Some(objects) = inner.objects.get_mut(&gvr) {
                        objects.remove(&key);
                    }
                }
            },
            None => {
                if let Some(objects) = inner.objects.get_mut(&gvr) {
                    objects.remove(&key);
                }
            }
        }
        inner.resource_version = rv;
    }
}

fn set_resource_version(object: &mut Value, rv: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

/// Sets what the store owns on a new object.
fn stamp_new(object: &mut Value, namespace: &str, rv: u64) {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("uid".into(), Value::String(new_uid()));
        meta.insert(
            "creationTimestamp".into(),
            Value::String(super::objects::now_rfc3339()),
        );
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        if namespace.is_empty() {
            meta.remove("namespace");
        } else {
            meta.insert("namespace".into(), Value::String(namespace.into()));
        }
    }
}

/// A random version-4 UUID, as the API server assigns.
pub(crate) fn new_uid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Gvr {
        Gvr::new("", "v1", "nodes")
    }

    fn node(name: &str, ready: bool) -> Value {
        json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": name}, "status": {"ready": ready}})
    }

    #[test]
    fn versions_increase_and_no_op_updates_are_skipped() {
        let store = Store::new();
        let a = store.upsert(&nodes(), "", node("a", false));
        assert_eq!(a["metadata"]["resourceVersion"], "1");
        let uid = a["metadata"]["uid"].clone();
        let same = store.upsert(&nodes(), "", node("a", false));
        assert_eq!(same["metadata"]["resourceVersion"], "1");
        let b = store.upsert(&nodes(), "", node("a", true));
        assert_eq!(b["metadata"]["resourceVersion"], "2");
        assert_eq!(b["metadata"]["uid"], uid);
        assert_eq!(store.resource_version(), 2);
        assert_eq!(
            store.create(&nodes(), "", node("a", true)),
            Err(StoreError::AlreadyExists)
        );
        let mut stale = node("a", false);
        stale["metadata"]["resourceVersion"] = json!("1");
        assert_eq!(store.update(&nodes(), "", stale), Err(StoreError::Conflict));
        let gone = store.delete(&nodes(), "", "a").unwrap();
        assert_eq!(gone["metadata"]["resourceVersion"], "3");
        assert_eq!(store.delete(&nodes(), "", "a"), Err(StoreError::NotFound));
    }

    #[test]
    fn watches_replay_from_a_version() {
        let store = Store::new();
        store.upsert(&nodes(), "", node("a", false));
        store.upsert(&nodes(), "", node("a", true));
        store.upsert(&nodes(), "", node("b", true));
        let sub = store.watch(&nodes(), WatchFrom::After(1)).unwrap();
        let kinds: Vec<_> = sub
            .backlog
            .iter()
            .map(|e| (e.kind, e.resource_version))
            .collect();
        assert_eq!(kinds, vec![(EventType::Modified, 2), (EventType::Added, 3)]);
        let sub = store.watch(&nodes(), WatchFrom::CurrentState).unwrap();
        assert_eq!(sub.backlog.len(), 2);
        assert!(matches!(
            store.watch(&nodes(), WatchFrom::After(9)),
            Err(StoreError::TooLarge { .. })
        ));
    }

    #[test]
    fn versions_older_than_the_history_are_expired() {
        let store = Store::new();
        for i in 0..=HISTORY {
            store.upsert(&nodes(), "", node("a", i % 2 == 0));
        }
        assert!(matches!(
            store.watch(&nodes(), WatchFrom::After(0)),
            Err(StoreError::Expired { requested: 0, .. })
        ));
        assert!(!store.is_retained(0));
        let recent = store.resource_version() - 5;
        assert_eq!(
            store
                .watch(&nodes(), WatchFrom::After(recent))
                .unwrap()
                .backlog
                .len(),
            5
        );
    }

    #[test]
    fn persisted_secrets_are_sealed_with_the_cluster_key_and_nothing_else_is() {
        use base64::Engine as _;
        let secrets = Gvr::new("", "v1", "secrets");
        let token = "ghp_sealed_token_3f9a";
        let encoded = base64::engine::general_purpose::STANDARD.encode(token);
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "repo", "namespace": "argocd"},
            "type": "Opaque",
            "data": {"password": encoded},
        });
        let key = base64::engine::general_purpose::STANDARD.encode([7_u8; 32]);
        let other_key = base64::engine::general_purpose::STANDARD.encode([8_u8; 32]);
        let on_disk = |dir: &Path| -> String {
            let mut all = String::new();
            for entry in std::fs::read_dir(dir).unwrap() {
                all.push_str(&String::from_utf8_lossy(
                    &std::fs::read(entry.unwrap().path()).unwrap(),
                ));
            }
            all
        };

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kube-a.json");
        let store = Store::persisted_encrypted(&path, "one", Some(&key));
        let stored = store.upsert(&secrets, "argocd", secret.clone());
        store.upsert(&nodes(), "", node("a", false));
        // Journal first, then a snapshot: neither holds the data, in clear or in base64.
        for _ in 0..2 {
            let text = on_disk(dir.path());
            assert!(!text.contains(token) && !text.contains(&encoded), "{text}");
            assert!(text.contains(SEALED_PREFIX), "{text}");
            assert!(
                text.contains("\"a\""),
                "other objects stay readable: {text}"
            );
            drop(Store::persisted_encrypted(&path, "one", Some(&key)));
        }
        drop(store);
        let again = Store::persisted_encrypted(&path, "one", Some(&key));
        assert_eq!(again.get(&secrets, "argocd", "repo"), Some(stored));
        drop(again);
        // Another key cannot open it: the Secret is left out, the rest loads.
        let other = Store::persisted_encrypted(&path, "one", Some(&other_key));
        assert_eq!(other.get(&secrets, "argocd", "repo"), None);
        assert!(other.get(&nodes(), "", "a").is_some());

        // Without a key (Kubernetes' identity provider) Secrets are stored as they are.
        let plain = tempfile::tempdir().unwrap();
        let store = Store::persisted_encrypted(&plain.path().join("kube-a.json"), "one", None);
        store.upsert(&secrets, "argocd", secret);
        assert!(on_disk(plain.path()).contains(&encoded));
    }

    #[test]
    fn a_persisted_store_comes_back_with_its_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kube-a.json");
        let store = Store::persisted(&path, "one");
        store.upsert(&nodes(), "", node("a", false));
        let b = store.upsert(&nodes(), "", node("b", false));
        drop(store);
        let again = Store::persisted(&path, "one");
        assert_eq!(again.resource_version(), 2);
        assert_eq!(again.get(&nodes(), "", "b"), Some(b));
        // Watching from before the restart is expired; from now is fine.
        assert!(matches!(
            again.watch(&nodes(), WatchFrom::After(1)),
            Err(StoreError::Expired { .. })
        ));
        assert!(again.watch(&nodes(), WatchFrom::After(2)).is_ok());
        let other = Store::persisted(&path, "two");
        assert_eq!(other.resource_version(), 0);
    }

    #[test]
    fn the_journal_keeps_every_change_and_survives_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kube-a.json");
        let store = Store::persisted(&path, "one");
        // Enough changes to fold the journal into snapshots a few times.
        let big = "x".repeat(64 << 10);
        for i in 0..60 {
            let mut n = node(&format!("n{}", i % 7), i % 2 == 0);
            n["spec"] = json!({"blob": big, "i": i});
            store.upsert(&nodes(), "", n);
        }
        store.delete(&nodes(), "", "n3").unwrap();
        let last = store.upsert(&nodes(), "", node("z", true));
        let rv = store.resource_version();
        let expected = store.list(&nodes(), None).0;
        drop(store);
        // A lab killed in the middle of an append.
        let journal = path.with_extension("log");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        file.write_all(b"{\"rv\":\"999\",\"gro").unwrap();
        drop(file);
        let again = Store::persisted(&path, "one");
        assert_eq!(again.resource_version(), rv);
        assert_eq!(again.list(&nodes(), None).0, expected);
        assert_eq!(again.get(&nodes(), "", "z"), Some(last));
        assert_eq!(again.get(&nodes(), "", "n3"), None);
        // Opening folded the journal into the snapshot.
        let snapshot: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(snapshot["resourceVersion"], rv.to_string());
        assert_eq!(
            std::fs::read_to_string(&journal).unwrap().lines().count(),
            1
        );
        // A journal of another incarnation is not replayed.
        drop(again);
        let other = Store::persisted(&path, "two");
        other.upsert(&nodes(), "", node("other", true));
        drop(other);
        let back = Store::persisted(&path, "one");
        assert_eq!(back.resource_version(), 0);
    }

    #[test]
    fn uids_look_like_uuids() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
    }
}
