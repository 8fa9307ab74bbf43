//! Exit codes: the contract scripts rely on (documented in docs/operations.md).

use installer::ErrorClass;

/// A step failed; `cto install --resume` continues.
pub const STEP_FAILED: u8 = 1;
/// Invalid usage: a bad flag, a contradicting `--resume`, a confirmation nobody can give.
pub const USAGE: u8 = 2;
/// Prerequisites unmet (key, project, plan, stock); nothing was ordered.
pub const PREREQUISITES: u8 = 3;
/// Another run holds the state directory's lock.
pub const LOCKED: u8 = 4;
/// Interrupted by Ctrl-C (or SIGTERM); the checkpoint is saved.
pub const INTERRUPTED: u8 = 130;

/// The exit code for an installer error class.
pub fn for_class(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::StepFailed => STEP_FAILED,
        ErrorClass::Usage => USAGE,
        ErrorClass::Prerequisites => PREREQUISITES,
        ErrorClass::Locked => LOCKED,
    }
}

/// An error that ends the process with a specific code and a message for the user.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// One line (or a few) for the user.
    pub message: String,
    /// The command that continues, when there is one.
    pub next: Option<String>,
}

impl Failure {
    /// A failure with no follow-up command.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            next: None,
        }
    }

    /// Adds the command to run next.
    pub fn with_next(mut self, next: impl Into<String>) -> Self {
        self.next = Some(next.into());
        self
    }
}
