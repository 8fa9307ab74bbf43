//! Merging the cluster's admin kubeconfig into the user's kubeconfig file, the way
//! `kubectl config` users expect: the old file is backed up first, the cluster's cluster, user
//! and context entries are added (or replaced, by name), its context becomes current, every
//! other entry is left exactly as it was, and the result is written atomically with mode 0600.
//! Merging the same kubeconfig twice changes nothing (and makes no second backup).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::checkpoint::now_rfc3339;
use crate::checkpoint::store::write_atomic;

/// A merge problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The existing file is not a kubeconfig we can merge into.
    #[error(
        "{path} is not a kubeconfig cto can merge into ({reason}); fix it, or write a separate file with --kubeconfig-out"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The cluster's kubeconfig is malformed.
    #[error("the cluster's kubeconfig is malformed: {0}")]
    Source(String),
    /// Reading, backing up or writing failed.
    #[error("{action} {path}: {reason}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    /// The file written (or left as it was).
    pub path: PathBuf,
    /// Where the previous content was saved, when there was any and it changed.
    pub backup: Option<PathBuf>,
    /// The context now current.
    pub context: String,
    /// False when the file already held exactly this cluster (nothing written).
    pub changed: bool,
}

/// The kubeconfig file to merge into: the first path of `$KUBECONFIG`, else `~/.kube/config`.
pub fn default_kubeconfig_path(kubeconfig_env: Option<&str>, home: &Path) -> PathBuf {
    match kubeconfig_env
        .and_then(|v| v.split(':').find(|p| !p.is_empty()))
        .map(PathBuf::from)
    {
        Some(path) => path,
        None => home.join(".kube").join("config"),
    }
}

fn parse(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    // YAML 1.2 booleans only: a cluster named `n` or `yes` stays a string, not a YAML 1.1 bool.
    let options = serde_saphyr::options! { strict_booleans: true };
    let value: Value =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| e.to_string())?;
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err("the document is not a mapping".into()),
    }
}

fn named_list<'a>(doc: &'a Value, key: &str) -> Result<Vec<&'a Value>, String> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            for item in items {
                if item.get("name").and_then(Value::as_str).is_none() {
                    return Err(format!("an entry of `{key}` has no name"));
                }
            }
            Ok(items.iter().collect())
        }
        Some(_) => Err(format!("`{key}` is not a list")),
    }
}

/// Replaces or appends `entry` in `doc[key]` by name, keeping the order of the others.
fn upsert(doc: &mut Map<String, Value>, key: &str, entry: &Value) {
    let name = entry.get("name").cloned();
    let list = doc
        .entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    if let Value::Array(items) = list {
        match items.iter_mut().find(|i| i.get("name") == name.as_ref()) {
            Some(existing) => *existing = entry.clone(),
            None => items.push(entry.clone()),
        }
    }
}

/// Merges `cluster_kubeconfig` (the text Talos returned) into the file at `path`.
pub fn merge_into_file(cluster_kubeconfig: &str, path: &Path) -> Result<MergeOutcome, MergeError> {
    let source = parse(cluster_kubeconfig).map_err(MergeError::Source)?;
    let context = source
        .get("current-context")
        .and_then(Value::as_str)
        .ok_or_else(|| MergeError::Source("no current-context".into()))?
        .to_owned();
    let existing_text = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(MergeError::Io {
                action: "reading",
                path: path.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let mut target =
        parse(existing_text.as_deref().unwrap_or("")).map_err(|reason| MergeError::Invalid {
            path: path.to_owned(),
            reason,
        })?;
    for key in ["clusters", "users", "contexts"] {
        named_list(&target, key).map_err(|reason| MergeError::Invalid {
            path: path.to_owned(),
            reason,
        })?;
    }
    let before = target.clone();
    let Value::Object(doc) = &mut target else {
        unreachable!("parse returns a mapping")
    };
    doc.entry("apiVersion").or_insert_with(|| Value::from("v1"));
    doc.entry("kind").or_insert_with(|| Value::from("Config"));
    for key in ["clusters", "users", "contexts"] {
        for entry in named_list(&source, key).map_err(MergeError::Source)? {
            upsert(doc, key, entry);
        }
    }
    doc.insert("current-context".into(), Value::from(context.clone()));
    if before == target {
        return Ok(MergeOutcome {
            path: path.to_owned(),
            backup: None,
            context,
            changed: false,
        });
    }

    let mut backup = None;
    if let Some(old) = &existing_text {
        let stamp = now_rfc3339().replace(':', "");
        let name = path
            .file_name()
            .map_or_else(|| "config".into(), |n| n.to_string_lossy().into_owned());
        let backup_path = path.with_file_name(format!("{name}.cto-backup-{stamp}"));
        write_atomic(&backup_path, old.as_bytes()).map_err(|e| MergeError::Io {
            action: "backing up",
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        backup = Some(backup_path);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| MergeError::Io {
            action: "creating",
            path: parent.to_owned(),
            reason: e.to_string(),
        })?;
    }
    let text = serde_saphyr::to_string(&target).map_err(|e| MergeError::Io {
        action: "encoding",
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    write_atomic(path, text.as_bytes()).map_err(|e| MergeError::Io {
        action: "writing",
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(MergeOutcome {
        path: path.to_owned(),
        backup,
        context,
        changed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, server: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n    certificate-authority-data: Q0E=\nusers:\n- name: admin@{name}\n  user:\n    client-certificate-data: Q1JU\n    client-key-data: S0VZ\ncontexts:\n- name: admin@{name}\n  context:\n    cluster: {name}\n    user: admin@{name}\n    namespace: default\ncurrent-context: admin@{name}\n"
        )
    }

    fn read(path: &Path) -> Value {
        parse(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn names(doc: &Value, key: &str) -> Vec<String> {
        doc[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_new_file_gets_the_cluster_as_current_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".kube").join("config");
        let out = merge_into_file(&cluster("d", "https://10.0.0.1:6443"), &path).unwrap();
        assert!(out.changed);
        assert_eq!(out.backup, None);
        assert_eq!(out.context, "admin@d");
        let doc = read(&path);
        assert_eq!(doc["current-context"], "admin@d");
        assert_eq!(names(&doc, "contexts"), ["admin@d"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// Issue 13: a world-writable kubeconfig, and world-writable files planted at the temp
    /// names an earlier cto used (`.NAME.tmp-<pid>`), leave neither the kubeconfig nor its
    /// backup wider than 0600, and the planted files are never written through.
    #[cfg(unix)]
    #[test]
    fn planted_world_writable_files_cannot_widen_the_kubeconfig() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, cluster("work", "https://work.example:6443")).unwrap();
        let pid = std::process::id();
        let planted: Vec<PathBuf> = [format!(".config.tmp-{pid}"), format!(".kc.tmp-{pid}")]
            .iter()
            .map(|n| dir.path().join(n))
            .collect();
        for p in planted.iter().chain([&path]) {
            if !p.exists() {
                std::fs::write(p, "planted").unwrap();
            }
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        let out = merge_into_file(&cluster("d", "https://10.0.0.1:6443"), &path).unwrap();
        assert!(out.changed);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&out.backup.unwrap()), 0o600);
        for p in &planted {
            assert_eq!(std::fs::read_to_string(p).unwrap(), "planted");
        }
        assert_eq!(names(&read(&path), "clusters"), ["work", "d"]);
    }

    #[test]
    fn a_cluster_named_like_a_yaml_1_1_boolean_stays_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        for name in ["n", "y", "no", "on"] {
            let out = merge_into_file(&cluster(name, "https://10.0.0.1:6443"), &path).unwrap();
            assert_eq!(out.context, format!("admin@{name}"));
            assert!(names(&read(&path), "clusters").contains(&name.to_owned()));
            // Idempotent, so the name was written back as the same string.
            assert!(
                !merge_into_file(&cluster(name, "https://10.0.0.1:6443"), &path)
                    .unwrap()
                    .changed
            );
        }
    }

    #[test]
    fn existing_entries_are_kept_backed_up_and_the_merge_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let mine = cluster("work", "https://work.example:6443");
        std::fs::write(&path, &mine).unwrap();

        let out = merge_into_file(&cluster("d", "https://10.0.0.1:6443"), &path).unwrap();
        let backup = out.backup.expect("a backup of the old file");
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), mine);
        let doc = read(&path);
        assert_eq!(names(&doc, "clusters"), ["work", "d"]);
        assert_eq!(names(&doc, "users"), ["admin@work", "admin@d"]);
        assert_eq!(names(&doc, "contexts"), ["admin@work", "admin@d"]);
        assert_eq!(doc["current-context"], "admin@d");
        assert_eq!(doc["clusters"][0], parse(&mine).unwrap()["clusters"][0]);

        // The same merge again writes nothing and makes no backup.
        let again = merge_into_file(&cluster("d", "https://10.0.0.1:6443"), &path).unwrap();
        assert!(!again.changed);
        assert_eq!(again.backup, None);

        // A reinstalled cluster replaces its own entries in place.
        merge_into_file(&cluster("d", "https://10.0.0.9:6443"), &path).unwrap();
        let doc = read(&path);
        assert_eq!(names(&doc, "clusters"), ["work", "d"]);
        assert_eq!(
            doc["clusters"][1]["cluster"]["server"],
            "https://10.0.0.9:6443"
        );
    }

    #[test]
    fn a_file_that_is_not_a_kubeconfig_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "clusters: 7\n").unwrap();
        let err = merge_into_file(&cluster("d", "https://10.0.0.1:6443"), &path).unwrap_err();
        assert!(
            err.to_string().contains("`clusters` is not a list"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "clusters: 7\n");
    }

    #[test]
    fn the_target_is_the_first_kubeconfig_path_or_the_home_default() {
        let home = Path::new("/home/u");
        assert_eq!(
            default_kubeconfig_path(None, home),
            home.join(".kube/config")
        );
        assert_eq!(
            default_kubeconfig_path(Some(""), home),
            home.join(".kube/config")
        );
        assert_eq!(
            default_kubeconfig_path(Some("/a/one:/b/two"), home),
            PathBuf::from("/a/one")
        );
    }
}
