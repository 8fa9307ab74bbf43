//! The Git repositories the simulated Argo CD reads: this repository's `gitops/` tree, compiled
//! into the lab by `build.rs`, and local directories named in
//! [`LabConfig::git_repos`](crate::LabConfig::git_repos). Owns resolving a `repoURL` to one of
//! them, listing the manifests under an Application's `path` and parsing multi-document YAML.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::LabConfig;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/gitops_files.rs"));
}

/// The source an Application deploys: `spec.source`, or of `spec.sources` the one with a
/// `path` (else the first); `null` when it has none.
pub(crate) fn application_source(app: &Value) -> Value {
    app.pointer("/spec/source")
        .cloned()
        .or_else(|| {
            app.pointer("/spec/sources")
                .and_then(Value::as_array)
                .and_then(|s| {
                    s.iter()
                        .find(|s| s.get("path").is_some())
                        .or(s.first())
                        .cloned()
                })
        })
        .unwrap_or_default()
}

/// What a directory Application's `source` deploys from `repo`: the revision of its files, their
/// objects (`directory.recurse` honoured) and the source type Argo CD reports. A directory
/// holding a `kustomization.yaml` is rendered with Kustomize ([`crate::kustomize`], with the
/// source's `kustomize.patches`), as Argo CD's repo server detects it.
pub(crate) fn directory(
    repo: &Repo,
    source: &Value,
) -> Result<(String, Vec<Value>, &'static str), String> {
    let path = source
        .pointer("/path")
        .and_then(Value::as_str)
        .unwrap_or("");
    let recurse = source.pointer("/directory/recurse") == Some(&Value::Bool(true));
    let fetched;
    let repo = match repo {
        Repo::Remote(url) => {
            let revision = match source.pointer("/targetRevision").and_then(Value::as_str) {
                None | Some("") => "HEAD",
                Some(r) => r,
            };
            fetched = fetch(url, revision)?;
            &fetched
        }
        other => other,
    };
    let files = manifests(repo, path, recurse)?;
    let dir = clean(path);
    let kustomization = files.iter().find(|(f, _)| {
        in_dir(f, &dir, false)
            && (f.ends_with("/kustomization.yaml") || f.ends_with("/kustomization.yml"))
    });
    if let Some((file, text)) = kustomization {
        let k: Value =
            serde_saphyr::from_str(text).map_err(|e| format!("failed to unmarshal {file}: {e}"))?;
        let patches: Vec<Value> = source
            .pointer("/kustomize/patches")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let objects = crate::kustomize::render(&dir, &files, &k, &patches)?;
        return Ok((commit_of(repo, &files), objects, "Kustomize"));
    }
    let mut objects = Vec::new();
    for (file, text) in &files {
        objects.extend(parse(file, text)?);
    }
    Ok((commit_of(repo, &files), objects, "Directory"))
}

/// The revision Argo CD reports: the commit of a fetched repository, else a content hash.
fn commit_of(repo: &Repo, files: &[(String, String)]) -> String {
    match repo {
        Repo::Fetched(commit, _) => commit.clone(),
        _ => revision(files),
    }
}

/// The URL of this repository.
pub(crate) const CTO_REPO_URL: &str = "https://github.com/5dlabs/cto";

/// A repository the lab can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Repo {
    /// This repository's `gitops/` tree, as compiled into the lab.
    Embedded,
    /// A local directory (the repository root).
    Dir(PathBuf),
    /// A Git repository served over HTTP on loopback, cloned at the Application's
    /// `targetRevision` with gitoxide (the smart HTTP protocol, as Argo CD's repo server
    /// fetches).
    Remote(String),
    /// The YAML files of a fetched commit: (commit id, files).
    Fetched(String, Vec<(String, String)>),
}

fn normalize(url: &str) -> String {
    url.trim()
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .to_ascii_lowercase()
}

/// The repository behind `url`: a configured `git_repos` entry, else this repository for
/// URLs ending in `/cto` or `/cto.git`; `None` for any other repository.
pub(crate) fn resolve(config: &LabConfig, url: &str) -> Option<Repo> {
    let wanted = normalize(url);
    if let Some((_, dir)) = config
        .git_repos
        .iter()
        .find(|(u, _)| normalize(u) == wanted)
    {
        return Some(Repo::Dir(dir.clone()));
    }
    if url.trim().starts_with("http://") && metal::latitude::client::is_loopback_url(url.trim()) {
        return Some(Repo::Remote(url.trim().to_string()));
    }
    (wanted == normalize(CTO_REPO_URL) || wanted.ends_with("/cto")).then_some(Repo::Embedded)
}

/// Fetches `url` at `revision` (a branch or tag: shallow; a commit id: the default refs) into
/// a temporary bare repository and reads every YAML file of that commit. The fetch runs on
/// its own thread: gitoxide's blocking HTTP client must not run on the lab's async workers.
/// Errors carry Argo CD's wording where it has one (`unable to resolve '<rev>' to a commit
/// SHA`).
pub(crate) fn fetch(url: &str, revision: &str) -> Result<Repo, String> {
    let (url, revision) = (url.to_string(), revision.to_string());
    std::thread::spawn(move || fetch_blocking(&url, &revision))
        .join()
        .unwrap_or_else(|_| Err("the Git fetch panicked".into()))
}

fn fetch_blocking(url: &str, revision: &str) -> Result<Repo, String> {
    use std::sync::atomic::AtomicBool;
    let scratch = tempfile::Builder::new()
        .prefix("lab-git-")
        .tempdir()
        .map_err(|e| format!("cannot create a scratch directory: {e}"))?;
    let commit_id = revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit());
    let mut prepare =
        gix::prepare_clone_bare(url, scratch.path()).map_err(|e| format!("{url}: {e}"))?;
    if !commit_id {
        prepare = prepare
            .with_ref_name(Some(revision))
            .map_err(|e| format!("{url}: {e}"))?
            .with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(
                std::num::NonZeroU32::MIN,
            ));
    }
    let unresolved = || format!("unable to resolve '{revision}' to a commit SHA");
    let (repo, _) = prepare
        .fetch_only(gix::progress::Discard, &AtomicBool::new(false))
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("didn't have any ref that matched") {
                unresolved()
            } else {
                format!("failed to list refs: {url}: {text}")
            }
        })?;
    let commit = if commit_id {
        let id = gix::ObjectId::from_hex(revision.as_bytes()).map_err(|_| unresolved())?;
        repo.find_commit(id).map_err(|_| unresolved())?
    } else {
        [
            format!("refs/heads/{revision}"),
            format!("refs/tags/{revision}"),
        ]
        .iter()
        .find_map(|name| {
            repo.try_find_reference(name.as_str())
                .ok()
                .flatten()
                .and_then(|mut r| r.peel_to_commit().ok())
        })
        .ok_or_else(unresolved)?
    };
    let id = commit.id.to_string();
    let tree = commit.tree().map_err(|e| format!("{url} {id}: {e}"))?;
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse()
        .breadthfirst(&mut recorder)
        .map_err(|e| format!("{url} {id}: {e}"))?;
    let mut files = Vec::new();
    for entry in recorder.records {
        let path = entry.filepath.to_string();
        if !entry.mode.is_blob() || !is_manifest(&path) {
            continue;
        }
        let object = repo
            .find_object(entry.oid)
            .map_err(|e| format!("{url} {id} {path}: {e}"))?;
        files.push((path, String::from_utf8_lossy(&object.data).into_owned()));
    }
    files.sort();
    Ok(Repo::Fetched(id, files))
}

fn clean(path: &str) -> String {
    path.trim()
        .trim_start_matches("./")
        .trim_matches('/')
        .trim_start_matches('.')
        .to_string()
}

/// Whether `file` (relative to the repository root) is a manifest of the directory `dir`.
fn in_dir(file: &str, dir: &str, recurse: bool) -> bool {
    let rest = if dir.is_empty() {
        Some(file)
    } else {
        file.strip_prefix(dir).and_then(|r| r.strip_prefix('/'))
    };
    rest.is_some_and(|r| recurse || !r.contains('/'))
}

fn is_manifest(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if is_manifest(&path.to_string_lossy()) {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            out.push((relative, text));
        }
    }
    Ok(())
}

/// The manifests (path from the repository root, contents) in directory `path` of `repo`,
/// sorted by path; with `recurse`, also those in its subdirectories. Fails like Argo CD's repo
/// server when the path does not exist.
pub(crate) fn manifests(
    repo: &Repo,
    path: &str,
    recurse: bool,
) -> Result<Vec<(String, String)>, String> {
    let dir = clean(path);
    let missing = || format!("{path}: app path does not exist");
    let files: Vec<(String, String)> = match repo {
        Repo::Embedded => {
            let exists = embedded::FILES
                .iter()
                .any(|(f, _)| dir.is_empty() || f.starts_with(&format!("{dir}/")));
            if !exists {
                return Err(missing());
            }
            embedded::FILES
                .iter()
                .map(|(f, t)| (f.to_string(), t.to_string()))
                .collect()
        }
        Repo::Fetched(_, all) => {
            let exists = all
                .iter()
                .any(|(f, _)| dir.is_empty() || f.starts_with(&format!("{dir}/")));
            if !exists {
                return Err(missing());
            }
            all.clone()
        }
        Repo::Remote(url) => return Err(format!("{url}: not fetched")),
        Repo::Dir(root) => {
            let target = root.join(&dir);
            if !target.is_dir() {
                return Err(missing());
            }
            let mut out = Vec::new();
            walk(root, &target, &mut out)?;
            out
        }
    };
    let mut files: Vec<(String, String)> = files
        .into_iter()
        .filter(|(f, _)| in_dir(f, &dir, recurse))
        .collect();
    files.sort();
    Ok(files)
}

/// The objects of a (multi-document) YAML file; empty documents are skipped.
pub(crate) fn parse(file: &str, text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| format!("failed to unmarshal {file}: {e}"))?;
    let mut objects = Vec::new();
    for doc in docs {
        match doc {
            Value::Null => {}
            Value::Object(_) => {
                if doc
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                    || doc
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                {
                    return Err(format!("{file}: Object 'Kind' is missing in '{doc}'"));
                }
                objects.push(doc);
            }
            other => return Err(format!("{file}: not a Kubernetes object: {other}")),
        }
    }
    Ok(objects)
}

/// A stable 40-hex "commit" for the content of `files` (the lab has no Git history).
pub(crate) fn revision(files: &[(String, String)]) -> String {
    // Two FNV-1a variants, enough to tell contents apart.
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for (path, text) in files {
        for byte in path.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            a = (a ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            b = (b ^ u64::from(byte))
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(5);
        }
    }
    format!("{a:016x}{b:016x}{:08x}", (a ^ b) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_to_this_repository_or_configured_directories() {
        let mut config = LabConfig::default();
        assert_eq!(
            resolve(&config, "https://github.com/5dlabs/cto"),
            Some(Repo::Embedded)
        );
        assert_eq!(
            resolve(&config, "https://github.com/someone/cto.git"),
            Some(Repo::Embedded)
        );
        assert_eq!(resolve(&config, "https://github.com/someone/other"), None);
        config
            .git_repos
            .insert("https://git.example/x.git".into(), "/tmp/x".into());
        assert_eq!(
            resolve(&config, "https://git.example/x"),
            Some(Repo::Dir("/tmp/x".into()))
        );
    }

    #[test]
    fn directories_and_documents() {
        assert!(in_dir("gitops/apps/a.yaml", "gitops/apps", false));
        assert!(!in_dir("gitops/apps/x/a.yaml", "gitops/apps", false));
        assert!(in_dir("gitops/apps/x/a.yaml", "gitops/apps", true));
        assert!(!in_dir("gitops/appsx/a.yaml", "gitops/apps", true));
        let objects = parse(
            "a.yaml",
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n# nothing\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n",
        )
        .unwrap();
        assert_eq!(objects.len(), 2);
        assert!(parse("b.yaml", "a: [").is_err());
        assert_eq!(revision(&[]).len(), 40);
    }
}
