//! The installer's errors. Each says what happened, where (step, node, server id) and what to
//! do; [`InstallError::class`] tells the CLI which exit code it deserves.

use metal::provider::{ProviderError, ProviderErrorKind};

use crate::checkpoint::CheckpointError;
use crate::step::Step;

/// How an error should end the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A step failed; `--resume` continues (exit 1).
    StepFailed,
    /// The invocation is wrong (exit 2).
    Usage,
    /// The world does not allow the install; nothing was ordered (exit 3).
    Prerequisites,
    /// Another run holds the lock (exit 4).
    Locked,
}

/// Why an install stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The state directory or checkpoint.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A prerequisite is not met; nothing was ordered.
    #[error("{message}")]
    Prerequisite {
        /// One line: what is wrong and what to do.
        message: String,
    },
    /// Ordering needs confirmation and nobody can give it.
    #[error(
        "ordering {servers} server(s) costs ${hourly:.2}/hour; no terminal to confirm on: re-run with --yes to approve"
    )]
    NeedsConfirmation {
        /// Servers to order.
        servers: usize,
        /// Their hourly cost.
        hourly: f64,
    },
    /// The user declined the order.
    #[error("ordering declined; nothing was ordered")]
    Declined,
    /// A step failed.
    #[error("step {number}/22 {step} failed: {source}")]
    Step {
        /// The step.
        step: Step,
        /// Its number.
        number: usize,
        /// What went wrong.
        #[source]
        source: StepError,
    },
    /// The step exists in the plan but this version does not implement it yet.
    #[error(
        "step {number}/22 {step} is not implemented yet in cto v{version}; the steps before it are done and the checkpoint is saved. The servers are running and billed: release them with `cto destroy`"
    )]
    NotImplemented {
        /// The step.
        step: Step,
        /// Its number.
        number: usize,
        /// This build.
        version: &'static str,
    },
}

impl InstallError {
    /// The exit-code class.
    pub fn class(&self) -> ErrorClass {
        match self {
            InstallError::Checkpoint(CheckpointError::Locked { .. }) => ErrorClass::Locked,
            InstallError::Checkpoint(CheckpointError::Io { .. }) => ErrorClass::StepFailed,
            InstallError::Checkpoint(_) => ErrorClass::Usage,
            InstallError::Prerequisite { .. } => ErrorClass::Prerequisites,
            InstallError::NeedsConfirmation { .. } | InstallError::Declined => ErrorClass::Usage,
            InstallError::Step { .. } | InstallError::NotImplemented { .. } => {
                ErrorClass::StepFailed
            }
        }
    }

    /// The step the error belongs to, if any.
    pub fn step(&self) -> Option<Step> {
        match self {
            InstallError::Step { step, .. } | InstallError::NotImplemented { step, .. } => {
                Some(*step)
            }
            _ => None,
        }
    }
}

/// What went wrong inside a step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A provider call failed.
    #[error("{context}: {source}")]
    Provider {
        /// What was being done (`ordering prod-cp-1 in MIA2`).
        context: String,
        /// The provider's error.
        #[source]
        source: ProviderError,
    },
    /// A server reached a failed state.
    #[error(
        "server {hostname} ({id}) reports {status}: delete it with `cto destroy` or in the Latitude dashboard, then re-run the install"
    )]
    ServerFailed {
        /// Hostname.
        hostname: String,
        /// Provider id.
        id: String,
        /// The provider's status.
        status: String,
    },
    /// A server kept failing its deployment although it was replaced.
    #[error(
        "server {hostname} ({id}) reports {status}, after {replaced} replacement(s) that failed the same way, the most this install orders for one node over its life; the site may have a hardware or stock problem. `cto destroy` and install with another --region (see `cto regions`), or delete {id} yourself and ask Latitude why it failed"
    )]
    ServerFailedRepeatedly {
        /// Hostname.
        hostname: String,
        /// Provider id of the last failed server.
        id: String,
        /// The provider's status.
        status: String,
        /// Replacements ordered over the install's life.
        replaced: usize,
    },
    /// The chosen site ran out of stock between validation and the order.
    #[error(
        "the provider refused to order {hostname}: no stock of {plan} in {site} any more ({detail}). Stock changed after the site was chosen, and cto does not move an approved install to another site. Resume later with `cto install --resume` once `cto regions --plan {plan}` lists {site} again, or `cto destroy` and install with another --region"
    )]
    OutOfStock {
        /// Hostname being ordered.
        hostname: String,
        /// Plan.
        plan: String,
        /// Site.
        site: String,
        /// The provider's answer.
        detail: String,
    },
    /// A server the checkpoint knows vanished from the provider.
    #[error(
        "server {hostname} ({id}) no longer exists at the provider; it was deleted outside this install. Run `cto destroy` and install again"
    )]
    ServerGone {
        /// Hostname.
        hostname: String,
        /// Provider id.
        id: String,
    },
    /// Several servers share a hostname the install needs.
    #[error(
        "{count} servers are named {hostname} ({ids}); cto cannot tell which belongs to this cluster. Delete the extra ones, then resume"
    )]
    DuplicateHostname {
        /// Hostname.
        hostname: String,
        /// How many.
        count: usize,
        /// Their ids, comma-separated.
        ids: String,
    },
    /// A wait ran out of time.
    #[error(
        "gave up after {waited_s}s waiting for {what}; still pending: {pending}. Resume with --resume once they are up"
    )]
    Timeout {
        /// What was awaited.
        what: String,
        /// Seconds waited.
        waited_s: u64,
        /// The nodes still pending, with their status.
        pending: String,
    },
    /// A node answered in a way that rules out continuing.
    #[error("node {hostname} ({address}): {message}")]
    Node {
        /// Hostname.
        hostname: String,
        /// Address.
        address: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The checkpoint could not be written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A Kubernetes API call failed or an object reached a state that stops the step.
    #[error("{context}: {message}")]
    Kubernetes {
        /// What was being done (`installing the cilium chart`).
        context: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// The run lacks an input the step needs and that is never stored (a token).
    #[error("{message}")]
    MissingInput {
        /// What is missing and how to give it.
        message: String,
    },
    /// Reading or writing a file failed: one cto writes for the user (the kubeconfig, the
    /// talosconfig, their backups) or one in the state directory. Nothing about the cluster or
    /// the checkpoint is wrong, so the advice is to fix the path and resume — never to destroy.
    #[error("{action} {path} failed: {message}. {advice}")]
    Io {
        /// What was being done (`writing`, `creating the directory`, `backing up`).
        action: String,
        /// The file or directory.
        path: String,
        /// The operating system's error.
        message: String,
        /// What to do, ending with resuming the install.
        advice: String,
    },
    /// Something the step needs is missing from the checkpoint (a damaged or edited file).
    #[error(
        "the checkpoint lacks {what}; it may have been edited. Re-run the install with a new --state-dir after `cto destroy`"
    )]
    Inconsistent {
        /// What is missing.
        what: String,
    },
}

impl StepError {
    /// Wraps a provider error with context.
    pub fn provider(context: impl Into<String>, source: ProviderError) -> Self {
        StepError::Provider {
            context: context.into(),
            source,
        }
    }

    /// An I/O error on `path` while `action`, with the usual advice: fix the path or its
    /// permissions (free some space), then resume.
    pub fn io(action: &str, path: &std::path::Path, error: impl std::fmt::Display) -> Self {
        StepError::Io {
            action: action.to_owned(),
            path: path.display().to_string(),
            message: error.to_string(),
            advice: "Fix the path or its permissions (or free some space), then resume with `cto install --resume`; the cluster itself is unaffected".to_owned(),
        }
    }

    /// True when the error is a provider answer about the user's setup (key, project, plan)
    /// rather than a transient failure.
    pub fn is_provider_kind(&self, kind: ProviderErrorKind) -> bool {
        matches!(self, StepError::Provider { source, .. } if source.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_error_names_the_path_and_says_to_resume_never_to_destroy() {
        let e = StepError::io(
            "writing",
            std::path::Path::new("/home/me/kc"),
            "Permission denied (os error 13)",
        );
        let text = e.to_string();
        assert!(
            text.contains("writing /home/me/kc failed: Permission denied"),
            "{text}"
        );
        assert!(text.contains("cto install --resume"), "{text}");
        assert!(!text.contains("destroy"), "{text}");
        let step = InstallError::Step {
            step: Step::ConfiguringKubeconfig,
            number: Step::ConfiguringKubeconfig.number(),
            source: e,
        };
        assert_eq!(step.class(), ErrorClass::StepFailed);
    }
}
