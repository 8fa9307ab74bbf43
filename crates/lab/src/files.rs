//! How the lab writes its state: directories 0700, files 0600, whatever the umask. The world
//! holds the API keys and tokens the installer gave it (machine configurations with every CA
//! key, Kubernetes Secrets), so nothing of it may be readable by other users.
//!
//! Whole-file replacements go through a temp file made by the `tempfile` crate (random name,
//! created exclusively in the target's directory), `fchmod`ed to 0600 before any data is written,
//! then renamed over the target: a file planted at a predictable temp name, or a target left
//! with a wider mode, cannot widen the result. They are not fsynced (see [`crate::world`]: the
//! lab survives its own death, not the machine's).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Mode of every file the lab writes.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Mode of every directory the lab creates.
pub(crate) const DIR_MODE: u32 = 0o700;

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &File, _: u32) -> io::Result<()> {
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700. A directory that already exists is left
/// as it is, except that one wider than 0700 is logged: it may not be the lab's to change.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir)?.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                tracing::warn!(dir = %dir.display(), mode = format!("{mode:04o}"), "the lab's state directory is open to other users; it holds tokens and keys: chmod 700 it");
            }
        }
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(DIR_MODE);
        builder.create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Replaces `path` with `bytes`, mode 0600 (see the module documentation).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy().into_owned());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    set_mode(tmp.as_file(), FILE_MODE)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Creates (or truncates) `path` for writing with mode 0600, also when it existed with a wider
/// mode (`fchmod` before anything is written).
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    let file = options.open(path)?;
    set_mode(&file, FILE_MODE)?;
    Ok(file)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn writes_are_private_whatever_was_there() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);

        // A target left world-writable, and a planted file at the old predictable temp name.
        let target = dir.join("world.json");
        fs::write(&target, "old").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o666)).unwrap();
        let planted = dir.join("world.json.tmp");
        fs::write(&planted, "planted").unwrap();
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o666)).unwrap();
        write_private(&target, b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(mode(&target), 0o600);
        assert_eq!(
            fs::read(&planted).unwrap(),
            b"planted",
            "never written through"
        );

        let journal = dir.join("kube.log");
        fs::write(&journal, "old").unwrap();
        fs::set_permissions(&journal, fs::Permissions::from_mode(0o644)).unwrap();
        drop(create_private(&journal).unwrap());
        assert_eq!(mode(&journal), 0o600);
        assert_eq!(fs::read(&journal).unwrap(), b"");
    }
}
