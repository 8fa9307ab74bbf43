//! The checkpoint: the persisted record of an install ([`model`]) and the state directory that
//! holds it ([`store`]).

pub mod model;
pub mod store;

pub use model::ReplacedServer;
pub use model::{
    BootState, CHECKPOINT_VERSION, Checkpoint, ConfigState, DuplicateServer, FailureRecord,
    Interruption, OrderState, Ownership, Resolved, ServerRecord, now_rfc3339,
};
pub use store::{CHECKPOINT_FILE, CheckpointError, CheckpointStore, LOCK_FILE, LOG_FILE};
