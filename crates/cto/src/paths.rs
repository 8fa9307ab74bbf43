//! Checks of the paths a user gives, made before anything is ordered: `--kubeconfig-out` must
//! be writable and outside the state directory. Step 21 writes it long after the servers are
//! billed; a path that cannot work is a usage error (exit 2) at the start instead.

use std::path::{Component, Path, PathBuf};

use crate::exit::{self, Failure};

/// `path` made absolute, with every existing part resolved as the filesystem resolves it
/// (symbolic links followed) and the parts that do not exist yet appended as written (`.`
/// dropped, `..` removing the previous part — exact there, since a part that does not exist is
/// no symbolic link).
pub fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut out = PathBuf::new();
    let mut exists = true;
    for component in absolute.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => out.push(component.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => {
                out.push(part);
                if exists {
                    match std::fs::canonicalize(&out) {
                        Ok(real) => out = real,
                        Err(_) => exists = std::fs::symlink_metadata(&out).is_ok(),
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Checks `--kubeconfig-out` before anything is ordered: outside `state_dir` (which holds the
/// checkpoint and the cluster's secrets: a kubeconfig written there could replace
/// `secrets.yaml`), not a directory, and writable — its nearest existing directory accepts a
/// new file (the kubeconfig is written to a temporary file beside it and renamed over it),
/// and an existing file can be opened for writing. Nothing is created or changed. An existing
/// file is backed up by step 21 before it is replaced.
pub fn check_kubeconfig_out(out: &Path, state_dir: &Path) -> Result<(), Failure> {
    let refuse = |reason: String| {
        Failure::new(
            exit::USAGE,
            format!("invalid --kubeconfig-out '{}': {reason}", out.display()),
        )
    };
    let resolved = resolve(out).map_err(|e| refuse(format!("cannot resolve it: {e}")))?;
    let state = resolve(state_dir).map_err(|e| {
        refuse(format!(
            "cannot resolve the state directory {}: {e}",
            state_dir.display()
        ))
    })?;
    if resolved.starts_with(&state) {
        return Err(refuse(format!(
            "it is inside the state directory {}, which holds the checkpoint and the cluster's \
             secrets; choose a path outside it",
            state_dir.display()
        )));
    }
    check_writable(&resolved).map_err(refuse)
}

/// Checks a file step 21 merges into (the kubeconfig at `$KUBECONFIG`'s first path or
/// `~/.kube/config`, the talosconfig at `~/.talos/config`) the way [`check_kubeconfig_out`]
/// checks `--kubeconfig-out`, but without the state-directory rule (`KUBECONFIG` may point at
/// the state directory's own kubeconfig). `what` names the file in the message.
pub fn check_merge_target(what: &str, path: &Path, hint: &str) -> Result<(), Failure> {
    let refuse = |reason: String| {
        Failure::new(
            exit::USAGE,
            format!("cannot write {what} {}: {reason}; {hint}", path.display()),
        )
    };
    let resolved = resolve(path).map_err(|e| refuse(format!("cannot resolve it: {e}")))?;
    check_writable(&resolved).map_err(refuse)
}

/// Not a directory, writable if it exists, and its nearest existing directory accepts a new
/// file. Creates nothing that outlives the check.
fn check_writable(resolved: &Path) -> Result<(), String> {
    match std::fs::metadata(resolved) {
        Ok(meta) if meta.is_dir() => {
            return Err("it is a directory; give the path of the file to write".to_owned());
        }
        Ok(_) => {
            std::fs::OpenOptions::new()
                .write(true)
                .open(resolved)
                .map_err(|e| format!("the file cannot be written: {e}"))?;
        }
        // Missing, or under something that is not a directory (reported below).
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) => {}
        Err(e) => return Err(format!("cannot inspect it: {e}")),
    }
    // The nearest directory that exists: the rest is created by step 21.
    let mut dir = resolved.parent().map(Path::to_owned);
    while let Some(d) = &dir {
        match std::fs::metadata(d) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(format!(
                    "{} is not a directory, so nothing can be created under it",
                    d.display()
                ));
            }
            Err(_) => dir = d.parent().map(Path::to_owned),
        }
    }
    let Some(dir) = dir else {
        return Err("it has no directory to write into".to_owned());
    };
    tempfile::Builder::new()
        .prefix(".cto-write-check-")
        .tempfile_in(&dir)
        .map_err(|e| format!("nothing can be written in {}: {e}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_links_and_normalises_the_missing_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir(real.join("state")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(real.join("state"), real.join("link")).unwrap();
        assert_eq!(
            resolve(&real.join("new/../state/./x")).unwrap(),
            real.join("state/x")
        );
        #[cfg(unix)]
        assert_eq!(
            resolve(&real.join("link/secrets.yaml")).unwrap(),
            real.join("state/secrets.yaml")
        );
    }

    #[test]
    fn kubeconfig_out_inside_the_state_dir_or_unwritable_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        std::fs::create_dir(&state).unwrap();
        for inside in [
            state.join("secrets.yaml"),
            state.join("sub/kc"),
            tmp.path().join("x/../state/kc"),
        ] {
            let e = check_kubeconfig_out(&inside, &state).unwrap_err();
            assert_eq!(e.code, exit::USAGE);
            assert!(
                e.message.contains("inside the state directory"),
                "{}",
                e.message
            );
        }
        // A state directory that does not exist yet is still protected.
        let e = check_kubeconfig_out(&tmp.path().join("later/kc"), &tmp.path().join("later"))
            .unwrap_err();
        assert!(e.message.contains("inside"), "{}", e.message);

        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let e = check_kubeconfig_out(&file.join("kc"), &state).unwrap_err();
        assert!(e.message.contains("not a directory"), "{}", e.message);
        let e = check_kubeconfig_out(tmp.path(), &state).unwrap_err();
        assert!(e.message.contains("is a directory"), "{}", e.message);
        #[cfg(target_os = "linux")]
        {
            let e = check_kubeconfig_out(Path::new("/proc/cto-kc/config"), &state).unwrap_err();
            assert!(
                e.message.contains("nothing can be written"),
                "{}",
                e.message
            );
        }

        // A merge target may be the state directory's own kubeconfig (KUBECONFIG pointing at
        // it); only writability counts there.
        check_merge_target("the kubeconfig", &state.join("kubeconfig"), "").unwrap();
        let e = check_merge_target("the kubeconfig", &file.join("config"), "pass X").unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(
            e.message.contains("not a directory") && e.message.ends_with("pass X"),
            "{}",
            e.message
        );

        check_kubeconfig_out(&tmp.path().join("out/new/kc"), &state).unwrap();
        check_kubeconfig_out(&file, &state).unwrap();
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"x",
            "the check changes nothing"
        );
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "no probe file is left behind: {left:?}");
    }
}
