//! The state directory on disk: the checkpoint file, written atomically, and the lock that keeps
//! two runs from writing it at once.
//!
//! * `checkpoint.json` — versioned JSON, mode 0600, replaced atomically (write a temp file in
//!   the same directory, fsync it, rename it over the old one, fsync the directory). A reader
//!   sees the old or the new checkpoint, never a torn one, even after SIGKILL or power loss.
//! * `cto.lock` — held with an OS file lock (`flock`) for as long as a run owns the directory.
//!   The kernel releases it when the process dies, so a lock left by a killed run is taken over
//!   without any guessing; the file's content (pid, start time) only feeds the error message.
//!
//! The API key is never written here: the checkpoint type has no field that could hold it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::checkpoint::model::{CHECKPOINT_VERSION, Checkpoint, now_rfc3339};
use crate::spec::ClusterSpec;

/// File name of the checkpoint inside the state directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// File name of the lock inside the state directory.
pub const LOCK_FILE: &str = "cto.lock";
/// File name of the debug log inside the state directory.
pub const LOG_FILE: &str = "cto.log";

/// Files and folders `cto` itself puts in a state directory. A directory holding anything else
/// and no checkpoint is not ours, and a new install refuses to use it.
const OWN_ENTRIES: [&str; 5] = [CHECKPOINT_FILE, LOCK_FILE, LOG_FILE, "lab", "destroyed"];

/// Problems with the state directory or the checkpoint in it.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A new install found a checkpoint already there.
    #[error(
        "a checkpoint already exists in {dir} (step {next}): continue it with --resume, or run `cto destroy --state-dir {dir}` first"
    )]
    AlreadyExists {
        /// The state directory.
        dir: PathBuf,
        /// The next step of that install.
        next: String,
    },
    /// `--resume` or `status` found no checkpoint.
    #[error(
        "no checkpoint in {dir}: there is nothing to resume (start an install without --resume)"
    )]
    Missing {
        /// The state directory.
        dir: PathBuf,
    },
    /// The directory holds files that are not `cto`'s.
    #[error(
        "{dir} is not a cto state directory (it contains {example} and no checkpoint); choose an empty or new --state-dir"
    )]
    Foreign {
        /// The directory.
        dir: PathBuf,
        /// One entry that is not ours.
        example: String,
    },
    /// Another process holds the lock.
    #[error("another cto run ({holder}) holds the lock {path}; wait for it to finish or stop it")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// The checkpoint does not parse.
    #[error(
        "the checkpoint {path} is corrupt ({reason}); it was left untouched for inspection; `cto destroy --cluster-name <name>` still finds the cluster's servers by hostname without it"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// The checkpoint was written by another format version.
    #[error(
        "the checkpoint {path} has format version {found}, and this cto (v{ours}) reads version {expected}; use the cto release that wrote it"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u64,
        /// Version this build reads.
        expected: u32,
        /// This build's version.
        ours: &'static str,
    },
    /// The state directory belongs to another user: its files (secrets, the checkpoint) could
    /// be read or replaced by them.
    #[error(
        "the state directory {dir} belongs to user id {owner}, not to you (user id {uid}); it holds the cluster's secrets, so cto refuses to use it: choose a directory of your own with --state-dir"
    )]
    NotOwned {
        /// The directory.
        dir: PathBuf,
        /// Its owner's user id.
        owner: u32,
        /// The user cto runs as (effective user id).
        uid: u32,
    },
    /// Filesystem error.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn io_err<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(io::Error) -> CheckpointError + 'p {
    move |source| CheckpointError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// An open state directory: the lock held and the checkpoint in memory, persisted on every
/// [`CheckpointStore::update`].
#[derive(Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    checkpoint: Checkpoint,
    /// What [`secure_state_dir`] had to fix when the store was opened.
    dir_warning: Option<String>,
    _lock: DirLock,
}

impl CheckpointStore {
    /// Starts a new install in `dir`: creates it (0700) if needed, takes the lock and writes the
    /// first checkpoint. Refuses when a checkpoint exists or the directory is not ours.
    pub fn create(dir: &Path, spec: ClusterSpec) -> Result<Self, CheckpointError> {
        let dir_warning = ensure_state_dir(dir)?;
        let lock = DirLock::acquire(dir)?;
        let path = dir.join(CHECKPOINT_FILE);
        if path.exists() {
            let next = match read_checkpoint(&path) {
                Ok(cp) => cp.next_step().map_or("Complete".into(), |s| s.to_string()),
                Err(_) => "unreadable".into(),
            };
            return Err(CheckpointError::AlreadyExists {
                dir: dir.to_owned(),
                next,
            });
        }
        let mut store = CheckpointStore {
            dir: dir.to_owned(),
            checkpoint: Checkpoint::new(spec),
            dir_warning,
            _lock: lock,
        };
        store.save()?;
        Ok(store)
    }

    /// Opens an existing install in `dir` for `--resume`: takes the lock and reads the
    /// checkpoint.
    pub fn resume(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join(CHECKPOINT_FILE);
        if !path.exists() {
            return Err(CheckpointError::Missing {
                dir: dir.to_owned(),
            });
        }
        let dir_warning = secure_state_dir(dir)?;
        let lock = DirLock::acquire(dir)?;
        let checkpoint = read_checkpoint(&path)?;
        Ok(CheckpointStore {
            dir: dir.to_owned(),
            checkpoint,
            dir_warning,
            _lock: lock,
        })
    }

    /// Reads the checkpoint in `dir` without taking the lock (for `cto status`).
    pub fn read(dir: &Path) -> Result<Checkpoint, CheckpointError> {
        let path = dir.join(CHECKPOINT_FILE);
        if !path.exists() {
            return Err(CheckpointError::Missing {
                dir: dir.to_owned(),
            });
        }
        read_checkpoint(&path)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What had to be fixed on the state directory when it was opened (a mode wider than 0700),
    /// for the caller to show the user as a warning.
    pub fn dir_warning(&self) -> Option<&str> {
        self.dir_warning.as_deref()
    }

    /// The checkpoint as last persisted.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Applies `change` and persists the result before returning. If the write fails, the
    /// in-memory checkpoint keeps the change but the error is returned: callers stop.
    pub fn update<R>(
        &mut self,
        change: impl FnOnce(&mut Checkpoint) -> R,
    ) -> Result<R, CheckpointError> {
        let out = change(&mut self.checkpoint);
        self.save()?;
        Ok(out)
    }

    /// Persists the checkpoint atomically.
    pub fn save(&mut self) -> Result<(), CheckpointError> {
        self.checkpoint.updated_at = now_rfc3339();
        self.checkpoint.written_by = env!("CARGO_PKG_VERSION").to_owned();
        let mut bytes =
            serde_json::to_vec_pretty(&self.checkpoint).map_err(|e| CheckpointError::Io {
                action: "serialising the checkpoint for",
                path: self.dir.join(CHECKPOINT_FILE),
                source: io::Error::other(e),
            })?;
        bytes.push(b'\n');
        write_atomic(&self.dir.join(CHECKPOINT_FILE), &bytes)
    }

    /// Moves the checkpoint aside after a destroy (`destroyed/checkpoint-<time>.json`), so the
    /// directory can host a new install and the history is kept.
    pub fn retire(self) -> Result<PathBuf, CheckpointError> {
        retire_checkpoint(&self.dir)
    }
}

/// Moves `dir/checkpoint.json` to `dir/destroyed/checkpoint-<time>.json`.
pub fn retire_checkpoint(dir: &Path) -> Result<PathBuf, CheckpointError> {
    let from = dir.join(CHECKPOINT_FILE);
    let archive = dir.join("destroyed");
    create_private_dir(&archive)?;
    let stamp = now_rfc3339().replace(':', "");
    let to = archive.join(format!("checkpoint-{stamp}.json"));
    fs::rename(&from, &to).map_err(io_err("moving", &from))?;
    sync_dir(dir)?;
    Ok(to)
}

/// Creates the state directory (0700) or checks an existing one is ours (see
/// [`secure_state_dir`]). Returns the warning about a mode that had to be narrowed.
pub fn ensure_state_dir(dir: &Path) -> Result<Option<String>, CheckpointError> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(CheckpointError::Io {
                action: "using as state directory",
                path: dir.to_owned(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        if !dir.join(CHECKPOINT_FILE).exists() {
            let entries = fs::read_dir(dir).map_err(io_err("reading", dir))?;
            for entry in entries {
                let entry = entry.map_err(io_err("reading", dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !OWN_ENTRIES.contains(&name.as_str()) {
                    return Err(CheckpointError::Foreign {
                        dir: dir.to_owned(),
                        example: name,
                    });
                }
            }
        }
        secure_state_dir(dir)
    } else {
        create_private_dir(dir)?;
        Ok(None)
    }
}

/// An existing state directory must belong to the user cto runs as (effective uid) and be
/// closed to everyone else (mode 0700), like `~/.ssh`: it holds the cluster's CA keys, the
/// talosconfig and the checkpoint. A directory of another user is refused
/// ([`CheckpointError::NotOwned`]); a mode wider than 0700 (group or other bits) is narrowed to
/// 0700 and described in the returned warning. Files created there are 0600 already
/// ([`write_atomic`]).
pub fn secure_state_dir(dir: &Path) -> Result<Option<String>, CheckpointError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = fs::metadata(dir).map_err(io_err("reading", dir))?;
        let uid = rustix::process::geteuid().as_raw();
        if meta.uid() != uid {
            return Err(CheckpointError::NotOwned {
                dir: dir.to_owned(),
                owner: meta.uid(),
                uid,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err("restricting the mode of", dir))?;
            return Ok(Some(format!(
                "the state directory {} had mode {mode:04o}, open to other users; cto set it to 0700 (it holds the cluster's secrets)",
                dir.display()
            )));
        }
        Ok(None)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(None)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), CheckpointError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io_err("creating", dir))?;
    #[cfg(unix)]
    {
        // Exactly 0700 whatever the umask.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("restricting the mode of", dir))?;
    }
    Ok(())
}

fn read_checkpoint(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let mut text = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(io_err("reading", path))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| CheckpointError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(CHECKPOINT_VERSION) => {}
        Some(found) => {
            return Err(CheckpointError::Version {
                path: path.to_owned(),
                found,
                expected: CHECKPOINT_VERSION,
                ours: env!("CARGO_PKG_VERSION"),
            });
        }
        None => {
            return Err(CheckpointError::Corrupt {
                path: path.to_owned(),
                reason: "no numeric \"version\" field".into(),
            });
        }
    }
    serde_json::from_value(value).map_err(|e| CheckpointError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Writes `bytes` to `path` atomically with mode 0600 (see [`write_atomic_mode`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    write_atomic_mode(path, bytes, 0o600)
}

/// Writes `bytes` to `path` atomically with exactly `mode` (on Unix):
///
/// 1. a temp file is created in `path`'s directory by the `tempfile` crate: a random name,
///    created exclusively (`O_CREAT|O_EXCL`), so a file planted at a predictable name (or a
///    symlink there) can neither be reused nor followed;
/// 2. its mode is set with `fchmod` on the open descriptor *before* any byte is written, so the
///    umask cannot widen it and the data is never readable by anyone else;
/// 3. the data is written and fsynced, the file is renamed over `path` (a file already at `path`,
///    whatever its mode, is replaced by a new inode, never written through), and the directory
///    is fsynced so the rename survives a power loss.
///
/// A temp file left by a crash between 1 and 3 is removed when the handle drops (the process
/// did not die) or stays as `.NAME.XXXXXX.tmp` with mode 0600.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CheckpointError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy().into_owned());
    let prefix = format!(".{name}.");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err("creating a temp file in", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // fchmod(2) on the open descriptor, before any data.
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err("setting the mode of", tmp.path()))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.write_all(bytes).map_err(io_err("writing", path))?;
    tmp.as_file().sync_all().map_err(io_err("syncing", path))?;
    tmp.persist(path)
        .map_err(|e| io_err("replacing", path)(e.error))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing", dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The exclusive lock on a state directory, released when dropped or when the process dies.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock on `dir`, or reports who holds it.
    pub fn acquire(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join(LOCK_FILE);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(io_err("opening", &path))?;
        #[cfg(unix)]
        {
            // The mode above applies only to a new file: narrow one left wider.
            use std::os::unix::fs::PermissionsExt;
            let _ = file.set_permissions(fs::Permissions::from_mode(0o600));
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(CheckpointError::Locked {
                    path,
                    holder: if holder.is_empty() {
                        "unknown process".into()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err("locking", &path)(e)),
        }
        file.set_len(0).map_err(io_err("writing", &path))?;
        let note = format!("pid {} since {}\n", std::process::id(), now_rfc3339());
        file.write_all(note.as_bytes())
            .map_err(io_err("writing", &path))?;
        file.sync_all().map_err(io_err("syncing", &path))?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::InstallRequest;

    fn spec() -> ClusterSpec {
        InstallRequest {
            cluster_name: "t".into(),
            nodes: 2,
            control_planes: 1,
            sync_timeout_minutes: 30,
            project: Some("proj_lab".into()),
            api_url: "http://127.0.0.1:1".into(),
            ..Default::default()
        }
        .validate()
        .unwrap()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// The old predictable temp name (`.NAME.tmp-<pid>`) and the target itself pre-planted
    /// world-writable: the checkpoint still ends 0600, and the planted temp is never written.
    #[cfg(unix)]
    #[test]
    fn planted_world_writable_files_cannot_widen_the_checkpoint() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let mut store = CheckpointStore::create(&dir, spec()).unwrap();
        let target = dir.join(CHECKPOINT_FILE);
        let planted = dir.join(format!(".{CHECKPOINT_FILE}.tmp-{}", std::process::id()));
        fs::write(&planted, "{}").unwrap();
        for path in [&target, &planted] {
            fs::set_permissions(path, fs::Permissions::from_mode(0o666)).unwrap();
        }
        store.save().unwrap();
        assert_eq!(mode(&target), 0o600);
        assert_eq!(fs::read(&planted).unwrap(), b"{}", "never written through");
        assert_eq!(mode(&planted), 0o666, "the planted file was not reused");
        // No temp file of ours is left behind.
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    /// A state directory left 0777 is narrowed to 0700, with a warning, by a new install and by
    /// a resume; a new one is created 0700 without one.
    #[cfg(unix)]
    #[test]
    fn a_wide_state_directory_is_narrowed_with_a_warning() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let store = CheckpointStore::create(&dir, spec()).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(store.dir_warning(), None);
        drop(store);

        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let store = CheckpointStore::resume(&dir).unwrap();
        let warning = store.dir_warning().expect("a warning");
        assert!(
            warning.contains("0777") && warning.contains("0700"),
            "{warning}"
        );
        assert_eq!(mode(&dir), 0o700);
        drop(store);

        let fresh = tmp.path().join("fresh");
        create_private_dir(&fresh).unwrap();
        fs::set_permissions(&fresh, fs::Permissions::from_mode(0o755)).unwrap();
        let store = CheckpointStore::create(&fresh, spec()).unwrap();
        assert!(store.dir_warning().unwrap().contains("0755"));
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&fresh.join(CHECKPOINT_FILE)), 0o600);
        assert_eq!(secure_state_dir(&fresh).unwrap(), None);
    }

    /// A directory of another user is refused (only testable as root, who can chown).
    #[cfg(unix)]
    #[test]
    fn a_state_directory_of_another_user_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("theirs");
        create_private_dir(&dir).unwrap();
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&dir, Some(4242), None).unwrap();
            let err = CheckpointStore::create(&dir, spec()).unwrap_err();
            assert!(
                matches!(err, CheckpointError::NotOwned { owner: 4242, .. }),
                "{err}"
            );
            assert!(!dir.join(CHECKPOINT_FILE).exists());
        } else {
            // Not root: the only directory of another user at hand is the root directory.
            let err = secure_state_dir(Path::new("/")).unwrap_err();
            assert!(
                matches!(err, CheckpointError::NotOwned { owner: 0, .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn create_writes_a_private_checkpoint_that_resume_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let mut store = CheckpointStore::create(&dir, spec()).unwrap();
        store
            .update(|cp| cp.resolved.site = Some("MIA2".into()))
            .unwrap();
        let written = store.checkpoint().clone();
        drop(store);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(CHECKPOINT_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let resumed = CheckpointStore::resume(&dir).unwrap();
        assert_eq!(resumed.checkpoint(), &written);
        // No temp files are left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    }

    #[test]
    fn a_second_install_over_a_checkpoint_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        drop(CheckpointStore::create(tmp.path(), spec()).unwrap());
        let err = CheckpointStore::create(tmp.path(), spec()).unwrap_err();
        assert!(
            matches!(err, CheckpointError::AlreadyExists { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("--resume"));
    }

    #[test]
    fn the_lock_excludes_a_second_holder_and_is_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::create(tmp.path(), spec()).unwrap();
        let err = CheckpointStore::resume(tmp.path()).unwrap_err();
        match &err {
            CheckpointError::Locked { holder, .. } => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                )
            }
            other => panic!("expected Locked, got {other}"),
        }
        drop(store);
        CheckpointStore::resume(tmp.path()).unwrap();
    }

    #[test]
    fn corrupt_truncated_and_future_checkpoints_get_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        drop(CheckpointStore::create(tmp.path(), spec()).unwrap());
        let path = tmp.path().join(CHECKPOINT_FILE);
        let good = fs::read_to_string(&path).unwrap();

        fs::write(&path, &good[..good.len() / 2]).unwrap();
        let err = CheckpointStore::resume(tmp.path()).unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");

        fs::write(&path, good.replace("\"version\": 1", "\"version\": 99")).unwrap();
        let err = CheckpointStore::resume(tmp.path()).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Version { found: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("version 99"));

        fs::write(&path, good.replace("\"completed\"", "\"finished\"")).unwrap();
        let err = CheckpointStore::resume(tmp.path()).unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn a_foreign_directory_is_refused_and_missing_checkpoint_reported() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
        let err = CheckpointStore::create(tmp.path(), spec()).unwrap_err();
        assert!(matches!(err, CheckpointError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("notes.txt"));
        let err = CheckpointStore::resume(tmp.path()).unwrap_err();
        assert!(matches!(err, CheckpointError::Missing { .. }), "{err}");
    }

    #[test]
    fn retire_moves_the_checkpoint_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::create(tmp.path(), spec()).unwrap();
        let moved = store.retire().unwrap();
        assert!(moved.exists());
        assert!(!tmp.path().join(CHECKPOINT_FILE).exists());
        drop(CheckpointStore::create(tmp.path(), spec()).unwrap());
    }
}
