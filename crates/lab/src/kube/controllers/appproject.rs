//! Argo CD AppProject rules, as Argo CD v3.2 applies them, for the lab's Argo CD:
//!
//! * `sourceRepos`: `IsSourcePermitted` (`pkg/apis/application/v1alpha1/app_project_types.go`):
//!   URLs normalised, glob patterns with `/` as separator, `!` patterns deny;
//! * `destinations`: `isDestinationMatched` (server or name, and namespace, globs; `!` denies);
//! * `clusterResourceWhitelist`/`Blacklist`, `namespaceResourceWhitelist`/`Blacklist`:
//!   `IsGroupKindPermitted` — a cluster-scoped kind needs a non-empty whitelist that lists it;
//!   a namespaced kind is allowed when the whitelist is absent or lists it; a blacklist entry
//!   always denies (`isResourceInList`, `types.go`: `filepath.Match` on kind and group).
//!
//! The messages are Argo CD's: `util/argo/argo.go` `ValidatePermissions` for the spec,
//! `controller/sync.go` (the permission validator given to gitops-engine) for each resource,
//! including the Namespace that `CreateNamespace=true` adds (gitops-engine
//! `pkg/sync/sync_context.go` `autoCreateNamespace`; `controller/sync_namespace.go`).

use serde_json::Value;

/// The in-cluster destination as Argo CD names it.
pub(super) const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";
const IN_CLUSTER_NAME: &str = "in-cluster";

/// One AppProject.
pub(super) struct Project<'a> {
    pub name: &'a str,
    pub spec: &'a Value,
}

/// Argo CD's `git.NormalizeGitURL`, as far as the lab's URLs need it: trimmed, no trailing
/// `/` or `.git`, lower case.
fn normalize(url: &str) -> String {
    url.trim()
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .to_ascii_lowercase()
}

/// A glob: `*` any run of characters except `separator`, `?` one character; the rest literal.
fn glob(pattern: &str, value: &str, separator: Option<char>) -> bool {
    fn go(p: &[char], v: &[char], sep: Option<char>) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('*', rest)) => {
                for i in 0..=v.len() {
                    if go(rest, &v[i..], sep) {
                        return true;
                    }
                    if i < v.len() && Some(v[i]) == sep {
                        return false;
                    }
                }
                false
            }
            Some(('?', rest)) => !v.is_empty() && Some(v[0]) != sep && go(rest, &v[1..], sep),
            Some((c, rest)) => v.first() == Some(c) && go(rest, &v[1..], sep),
        }
    }
    if pattern == "*" {
        return true;
    }
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    go(&p, &v, separator)
}

/// `globMatch` with negation: a `!pattern` matches what the pattern does not.
fn glob_match(pattern: &str, value: &str, separator: Option<char>) -> bool {
    match pattern.strip_prefix('!') {
        Some(p) => !glob(p, value, separator),
        None => glob(pattern, value, separator),
    }
}

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

impl Project<'_> {
    /// `IsSourcePermitted`.
    pub fn source_permitted(&self, repo_url: &str) -> bool {
        let src = normalize(repo_url);
        let mut any = false;
        for pattern in strings(&self.spec["sourceRepos"]) {
            let normalized = match pattern.strip_prefix('!') {
                Some(p) => format!("!{}", normalize(p)),
                None => normalize(pattern),
            };
            if glob_match(&normalized, &src, Some('/')) {
                any = true;
            } else if normalized.starts_with('!') {
                return false;
            }
        }
        any
    }

    /// `IsDestinationPermitted` for the in-cluster server (the only cluster the lab has).
    pub fn destination_permitted(&self, server: &str, namespace: &str) -> bool {
        let name = if server == IN_CLUSTER_SERVER {
            IN_CLUSTER_NAME
        } else {
            ""
        };
        let mut any = false;
        for item in self.spec["destinations"].as_array().into_iter().flatten() {
            let item_server = item["server"].as_str().unwrap_or("");
            let item_name = item["name"].as_str().unwrap_or("");
            let item_ns = item["namespace"].as_str().unwrap_or("");
            let name_ok = !name.is_empty() && glob_match(item_name, name, None);
            let server_ok = !server.is_empty() && glob_match(item_server, server, None);
            let ns_ok = glob_match(item_ns, namespace, None);
            if (server_ok || name_ok) && ns_ok {
                any = true;
            } else if (!name_ok && item_name.starts_with('!'))
                || (!server_ok && item_server.starts_with('!')) && ns_ok
                || (!ns_ok && item_ns.starts_with('!') && server_ok)
            {
                return false;
            }
        }
        any
    }

    /// `IsGroupKindPermitted`.
    pub fn group_kind_permitted(&self, group: &str, kind: &str, namespaced: bool) -> bool {
        let in_list = |list: &Value| {
            list.as_array().into_iter().flatten().any(|item| {
                glob(item["kind"].as_str().unwrap_or(""), kind, Some('/'))
                    && glob(item["group"].as_str().unwrap_or(""), group, Some('/'))
            })
        };
        let non_empty = |list: &Value| list.as_array().is_some_and(|a| !a.is_empty());
        let (white, black) = if namespaced {
            (
                &self.spec["namespaceResourceWhitelist"],
                &self.spec["namespaceResourceBlacklist"],
            )
        } else {
            (
                &self.spec["clusterResourceWhitelist"],
                &self.spec["clusterResourceBlacklist"],
            )
        };
        let whitelisted = if namespaced {
            white.is_null() || (non_empty(white) && in_list(white))
        } else {
            non_empty(white) && in_list(white)
        };
        let blacklisted = non_empty(black) && in_list(black);
        whitelisted && !blacklisted
    }

    /// The InvalidSpecError messages of an Application's source and destination
    /// (`ValidatePermissions`).
    pub fn spec_problems(&self, repo_url: &str, server: &str, namespace: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.source_permitted(repo_url) {
            problems.push(format!(
                "application repo {repo_url} is not permitted in project '{}'",
                self.name
            ));
        }
        if !self.destination_permitted(server, namespace) {
            problems.push(format!(
                "application destination server '{server}' and namespace '{namespace}' do not match any of the allowed destinations in project '{}'",
                self.name
            ));
        }
        problems
    }

    /// The permission validator of `controller/sync.go`: `None` when the resource may be
    /// synced, else Argo CD's message.
    pub fn resource_problem(
        &self,
        group: &str,
        kind: &str,
        namespaced: bool,
        server: &str,
        namespace: &str,
    ) -> Option<String> {
        if !self.group_kind_permitted(group, kind, namespaced) {
            return Some(format!(
                "resource {group}:{kind} is not permitted in project {}",
                self.name
            ));
        }
        if namespaced && !self.destination_permitted(server, namespace) {
            return Some(format!(
                "namespace {namespace} is not permitted in project '{}'",
                self.name
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cluster_kinds_need_the_whitelist_namespaced_kinds_do_not() {
        let spec = json!({
            "sourceRepos": ["https://charts.example.com", "https://github.com/org/*"],
            "destinations": [{"server": IN_CLUSTER_SERVER, "namespace": "cert-manager"}],
            "clusterResourceWhitelist": [{"group": "apiextensions.k8s.io", "kind": "CustomResourceDefinition"}],
            "namespaceResourceBlacklist": [{"group": "", "kind": "ResourceQuota"}],
        });
        let p = Project {
            name: "platform",
            spec: &spec,
        };
        assert!(p.group_kind_permitted("apiextensions.k8s.io", "CustomResourceDefinition", false));
        assert_eq!(
            p.resource_problem("", "Namespace", false, IN_CLUSTER_SERVER, ""),
            Some("resource :Namespace is not permitted in project platform".into())
        );
        assert!(p.group_kind_permitted("apps", "Deployment", true));
        assert!(!p.group_kind_permitted("", "ResourceQuota", true));
        assert_eq!(
            p.resource_problem("apps", "Deployment", true, IN_CLUSTER_SERVER, "vault"),
            Some("namespace vault is not permitted in project 'platform'".into())
        );
        assert!(p.source_permitted("https://charts.example.com/"));
        assert!(p.source_permitted("https://github.com/org/repo.git"));
        assert!(!p.source_permitted("https://github.com/org/repo/sub"));
        assert!(!p.source_permitted("https://github.com/other/repo"));
        assert!(p.destination_permitted(IN_CLUSTER_SERVER, "cert-manager"));
        assert!(!p.destination_permitted(IN_CLUSTER_SERVER, "vault"));
        let empty = json!({"clusterResourceWhitelist": []});
        let e = Project {
            name: "e",
            spec: &empty,
        };
        assert!(!e.group_kind_permitted("", "Namespace", false));
        let star = json!({"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}], "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]});
        let s = Project {
            name: "default",
            spec: &star,
        };
        assert!(s.group_kind_permitted("", "Namespace", false));
        assert!(
            s.spec_problems("https://x/y", IN_CLUSTER_SERVER, "z")
                .is_empty()
        );
    }
}
