//! The debug log: every run that owns a state directory writes `cto.log` there at debug level
//! (appending, mode 0600), so a failure can be diagnosed after the fact. Secrets never reach it:
//! the API key is only ever held in a redacting wrapper.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Starts logging to `<state_dir>/cto.log`. Failing to open the log is reported and ignored:
/// a missing log must not stop an install.
pub fn to_state_dir(state_dir: &Path) {
    let path = state_dir.join(installer::checkpoint::LOG_FILE);
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = match options.open(&path) {
        Ok(f) => {
            // A log left wider by someone else is narrowed (mode applies only on creation).
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
            }
            f
        }
        Err(e) => {
            eprintln!(
                "warning: cannot write the debug log {}: {e}",
                path.display()
            );
            return;
        }
    };
    let filter = EnvFilter::try_from_env("CTO_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,cto=debug,installer=debug,metal=debug,lab=debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), args = ?std::env::args().collect::<Vec<_>>(), "cto started");
}
