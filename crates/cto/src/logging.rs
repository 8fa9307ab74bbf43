//! The debug log: every run that owns a state directory writes `cto.log` there at debug level
//! (appending, mode 0600), so a failure can be diagnosed after the fact. Secrets never reach it:
//! the API key is only ever held in a redacting wrapper, and the command line is logged through
//! [`redact_args`] (the values of secret-bearing flags and any userinfo in URLs replaced).

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
    tracing::info!(version = env!("CARGO_PKG_VERSION"), args = ?redact_args(std::env::args_os().map(|a| a.to_string_lossy().into_owned())), "cto started");
}

/// What replaces a secret in the logged command line.
const REDACTED: &str = "[redacted]";

/// True for a long flag whose value is a secret: `--gitops-token`, and, so that a flag added
/// later is covered too, any flag whose name mentions a token, password, secret, credential or
/// key.
fn is_secret_flag(flag: &str) -> bool {
    let Some(name) = flag.strip_prefix("--") else {
        return false;
    };
    let name = name.to_ascii_lowercase();
    ["token", "password", "passwd", "secret", "credential", "key"]
        .iter()
        .any(|word| name.split('-').any(|part| part == *word))
}

/// The command line as it may be logged: the value of every secret-bearing flag
/// ([`is_secret_flag`]; both `--flag value` and `--flag=value`) is replaced by `[redacted]`, and
/// any userinfo in a URL (`https://user:token@host`) by `***`.
pub fn redact_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    let mut after_separator = false;
    for arg in args {
        if hide_next {
            hide_next = false;
            out.push(REDACTED.to_owned());
            continue;
        }
        if !after_separator && arg == "--" {
            after_separator = true;
            out.push(arg);
            continue;
        }
        if !after_separator {
            if let Some((flag, _)) = arg.split_once('=')
                && is_secret_flag(flag)
            {
                out.push(format!("{flag}={REDACTED}"));
                continue;
            }
            if is_secret_flag(&arg) {
                hide_next = true;
                out.push(arg);
                continue;
            }
        }
        out.push(metal::urls::redact_userinfo(&arg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(args: &[&str]) -> Vec<String> {
        redact_args(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn secret_flag_values_never_appear() {
        let out = redact(&[
            "cto",
            "install",
            "--gitops-token",
            "ghp_one",
            "--gitops-token=ghp_two",
            "--cluster-name",
            "prod",
            "--api-password",
            "p4ss",
            "--state-dir",
            "/tmp/s",
        ]);
        let joined = out.join(" ");
        for secret in ["ghp_one", "ghp_two", "p4ss"] {
            assert!(!joined.contains(secret), "{joined}");
        }
        assert_eq!(
            out,
            [
                "cto",
                "install",
                "--gitops-token",
                "[redacted]",
                "--gitops-token=[redacted]",
                "--cluster-name",
                "prod",
                "--api-password",
                "[redacted]",
                "--state-dir",
                "/tmp/s",
            ]
        );
    }

    #[test]
    fn userinfo_in_urls_is_hidden_and_other_flags_are_kept() {
        let out = redact(&[
            "cto",
            "install",
            "--gitops-repo",
            "https://me:ghp_x@github.com/me/p",
            "--api-url=https://u:k@api.example.com",
            "--kubeconfig-out",
            "/home/me/kc",
            "--gitops-token",
        ]);
        assert_eq!(
            out,
            [
                "cto",
                "install",
                "--gitops-repo",
                "https://***@github.com/me/p",
                "--api-url=https://***@api.example.com",
                "--kubeconfig-out",
                "/home/me/kc",
                "--gitops-token",
            ]
        );
        assert!(!is_secret_flag("--keyboard"));
        assert!(!is_secret_flag("--kubeconfig-out"));
        assert!(is_secret_flag("--gitops-token"));
        assert!(is_secret_flag("--api-key"));
    }
}
