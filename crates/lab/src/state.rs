//! The shared state of a running lab: configuration, the world behind a lock, the rate limiter,
//! and the one place where mutations are persisted.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::LabError;
use crate::config::LabConfig;
use crate::durations::Durations;
use crate::faults::Faults;
use crate::observe::Observer;
use crate::ratelimit::RateLimiter;
use crate::world::World;

/// What every request handler and the node reconciler share.
pub(crate) struct Lab {
    pub config: LabConfig,
    /// How long everything lasts in this world (from `config`).
    pub durations: Durations,
    /// Request arrivals and conditions, for `/_lab/stats` and `/_lab/conditions`.
    pub observer: Arc<Observer>,
    pub state_dir: PathBuf,
    world: Mutex<World>,
    pub limiter: Mutex<RateLimiter>,
    /// Source of `X-Request-Id` values.
    pub request_seq: AtomicU64,
    /// Injected faults (`config.faults`) and their random source.
    pub faults: Arc<Faults>,
    /// The address blocks this lab holds (see `blocks`).
    pub blocks: Arc<crate::blocks::BlockClaims>,
}

impl Lab {
    pub fn new(
        config: LabConfig,
        state_dir: PathBuf,
        world: World,
        blocks: Arc<crate::blocks::BlockClaims>,
    ) -> Lab {
        let faults = Arc::new(Faults::new(config.faults.clone()));
        let durations = Durations::new(&config);
        Lab {
            limiter: Mutex::new(RateLimiter::new(config.time_scale)),
            durations,
            observer: Arc::new(Observer::default()),
            config,
            faults,
            state_dir,
            world: Mutex::new(world),
            request_seq: AtomicU64::new(0),
            blocks,
        }
    }

    /// Locks the world for reading or for changes that need not be persisted right away.
    pub fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock cannot leave the world half-written in a way that
        // matters more than stopping the whole lab would, so keep going.
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` and, if it succeeds, saves the world before the lock is released, so
    /// that saves happen in the same order as the changes.
    pub fn mutate<R, E>(&self, change: impl FnOnce(&mut World) -> Result<R, E>) -> Result<R, E>
    where
        E: From<LabError>,
    {
        let mut world = self.world();
        let result = change(&mut world)?;
        world.save(&self.state_dir)?;
        Ok(result)
    }

    /// Saves the world as it is (used at shutdown to keep the counters).
    pub fn save(&self) -> Result<(), LabError> {
        self.world().save(&self.state_dir)
    }
}
