//! The GitOps preflight of step 1: before anything is ordered, the GitOps repository is read
//! from the user's machine, in-process, with gitoxide (`gix`, its blocking HTTP client over
//! the workspace's reqwest with rustls and ring): the repository answers (with the
//! `--gitops-token` as HTTP credentials when given), the revision resolves, and
//! `<path>/apps/<profile>` and every path its Applications point at inside the tree exist at
//! that commit. What Argo CD would find missing later (a `ComparisonError` "app path does not
//! exist", argo-cd `util/app/path/path.go`) stops the install here instead, naming the
//! repository, revision and path.
//!
//! A branch or tag is fetched shallowly (depth 1, that ref only) into a temporary bare
//! repository; a commit id falls back to a full fetch. Nothing is written outside the
//! temporary directory.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use serde_json::Value;

/// What the preflight saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    /// The commit the revision resolved to.
    pub commit: String,
    /// The paths checked (relative to the repository root).
    pub paths: Vec<String>,
}

/// The username sent with a token (Argo CD's repository credential uses the same).
const TOKEN_USER: &str = "git";

/// Reads `repo` at `revision` and checks the tree at `path` for `profile`. Blocking (network
/// and disk): call it from a blocking thread.
pub fn check(
    repo: &str,
    revision: &str,
    path: &str,
    profile: &str,
    token: Option<&str>,
) -> Result<SourceReport, String> {
    let scratch = tempfile::Builder::new()
        .prefix("cto-gitops-")
        .tempdir()
        .map_err(|e| format!("cannot create a scratch directory to read {repo}: {e}"))?;
    let fetched = fetch(repo, revision, token, scratch.path())?;
    let commit = resolve(&fetched, revision)
        .ok_or_else(|| {
            format!("the GitOps repository {repo} has no revision {revision} (no such branch, tag or commit)")
        })?;
    let id = commit.id.to_string();
    let tree = commit
        .tree()
        .map_err(|e| format!("{repo} at {revision} (commit {id}): cannot read its tree: {e}"))?;
    let at = format!(
        "the GitOps repository {repo} at {revision} (commit {})",
        &id[..12.min(id.len())]
    );
    let lookup = |p: &str| -> Option<(bool, Vec<u8>)> {
        let entry = tree.lookup_entry_by_path(p).ok()??;
        let is_tree = entry.mode().is_tree();
        let data = if is_tree {
            Vec::new()
        } else {
            entry.object().ok()?.data.clone()
        };
        Some((is_tree, data))
    };
    let root = join(path, "");
    let profile_dir = join(path, &format!("apps/{profile}"));
    let mut checked = Vec::new();
    match lookup(&profile_dir) {
        Some((true, _)) => checked.push(profile_dir.clone()),
        _ => {
            return Err(format!(
                "{at} has no {profile_dir}: Argo CD would report \"{profile_dir}: app path does not exist\". Put this release's gitops/ tree at {} in that repository (a fork or a copy of it), or pass --gitops-repo/--gitops-revision/--gitops-path where it is",
                if root.is_empty() {
                    "its root"
                } else {
                    root.as_str()
                }
            ));
        }
    }
    // The profile directory as Argo CD renders it: a kustomization's resources, or every
    // manifest; each category Application's path, relative to the tree (the kustomization's
    // replacements put the tree's path in front of it).
    let kustomization = format!("{profile_dir}/kustomization.yaml");
    let mut files: Vec<String> = Vec::new();
    if let Some((false, data)) = lookup(&kustomization) {
        checked.push(kustomization.clone());
        let k: Value = serde_saphyr::from_slice(&data)
            .map_err(|e| format!("{at}: {kustomization} does not parse: {e}"))?;
        for r in k["resources"].as_array().into_iter().flatten() {
            let file = format!("{profile_dir}/{}", r.as_str().unwrap_or_default());
            match lookup(&file) {
                Some((false, _)) => files.push(file),
                _ => {
                    return Err(format!("{at} has no {file}, a resource of {kustomization}"));
                }
            }
        }
    }
    for file in &files {
        let Some((_, data)) = lookup(file) else {
            continue;
        };
        checked.push(file.clone());
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(std::str::from_utf8(&data).unwrap_or(""))
                .map_err(|e| format!("{at}: {file} does not parse: {e}"))?;
        for doc in docs.iter().filter(|d| d["kind"] == "Application") {
            let source = &doc["spec"]["source"];
            // Only Applications that point into this tree (no repoURL of their own).
            if source.get("repoURL").is_some() || source.get("chart").is_some() {
                continue;
            }
            let Some(app_path) = source["path"].as_str() else {
                continue;
            };
            let inside = match app_path.split_once('/') {
                Some((_, rest)) => join(path, rest),
                None => join(path, ""),
            };
            match lookup(&inside) {
                Some((true, _)) => checked.push(inside),
                _ => {
                    return Err(format!(
                        "{at} has no {inside}, the path of Application {} ({file}): Argo CD would report \"{inside}: app path does not exist\"",
                        doc["metadata"]["name"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
    }
    Ok(SourceReport {
        commit: id,
        paths: checked,
    })
}

/// An error and its sources, `: `-separated.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

fn join(base: &str, rest: &str) -> String {
    let base = base.trim_matches('/');
    let base = if base == "." { "" } else { base };
    match (base.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (false, true) => base.to_string(),
        (false, false) => format!("{base}/{rest}"),
    }
}

/// The commit `revision` names in the fetched repository: a branch, a tag (peeled), or a
/// commit id.
fn resolve<'r>(repo: &'r gix::Repository, revision: &str) -> Option<gix::Commit<'r>> {
    if is_commit_id(revision) && revision.len() == 40 {
        let id = gix::ObjectId::from_hex(revision.as_bytes()).ok()?;
        return repo.find_commit(id).ok();
    }
    for name in [
        format!("refs/heads/{revision}"),
        format!("refs/tags/{revision}"),
        revision.to_string(),
    ] {
        if let Ok(Some(mut reference)) = repo.try_find_reference(name.as_str())
            && let Ok(commit) = reference.peel_to_commit()
        {
            return Some(commit);
        }
    }
    None
}

fn is_commit_id(revision: &str) -> bool {
    (7..=40).contains(&revision.len()) && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A bare clone of `repo` in `dir`: shallow, of `revision` only, when it names a branch or tag.
fn fetch(
    repo: &str,
    revision: &str,
    token: Option<&str>,
    dir: &Path,
) -> Result<gix::Repository, String> {
    let unreadable = |e: &dyn std::fmt::Display| {
        let mut message = format!("cannot read the GitOps repository {repo} at {revision}: {e}");
        if token.is_none() {
            message.push_str(" (a private repository needs --gitops-token or CTO_GITOPS_TOKEN)");
        }
        message
    };
    let mut prepare = gix::prepare_clone_bare(repo, dir).map_err(|e| unreadable(&e))?;
    if !is_commit_id(revision) {
        prepare = prepare
            .with_ref_name(Some(revision))
            .map_err(|e| unreadable(&e))?
            .with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(
                std::num::NonZeroU32::MIN,
            ));
    }
    if let Some(token) = token {
        let token = token.to_string();
        prepare = prepare.configure_connection(move |connection| {
            let token = token.clone();
            connection.set_credentials(move |action| match action {
                gix::credentials::helper::Action::Get(context) => {
                    Ok(Some(gix::credentials::protocol::Outcome {
                        credentials: gix::sec::identity::Credentials::UsernamePassword {
                            username: TOKEN_USER.to_string(),
                            password: token.clone(),
                            oauth_refresh_token: None,
                        },
                        next: context.into(),
                    }))
                }
                _ => Ok(None),
            });
            Ok(())
        });
    }
    let (repository, _) = prepare
        .fetch_only(gix::progress::Discard, &AtomicBool::new(false))
        .map_err(|e| {
            let text = chain(&e);
            if text.contains("didn't have any ref that matched")
                || text.contains("Could not find remote ref")
                || text.contains("couldn't find remote ref")
                || text.contains("not found in remote")
                || text.contains("did not match any")
            {
                format!(
                    "the GitOps repository {repo} has no revision {revision} (no such branch or tag): {text}"
                )
            } else {
                unreadable(&text)
            }
        })?;
    Ok(repository)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_the_tree_directory() {
        assert_eq!(join("gitops", "apps/standard"), "gitops/apps/standard");
        assert_eq!(join("", "apps/standard"), "apps/standard");
        assert_eq!(join(".", "platform/core"), "platform/core");
        assert_eq!(join("deploy/gitops/", ""), "deploy/gitops");
        assert!(is_commit_id("0123abcd") && !is_commit_id("main") && !is_commit_id("v1.2.3"));
    }
}
