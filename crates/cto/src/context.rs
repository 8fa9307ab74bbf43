//! Where things are and how to reach the provider: the state directory, the API key (from the
//! environment only), and the provider itself — Latitude, or the built-in lab started
//! in-process with its world under the state directory.

use std::path::{Path, PathBuf};

use metal::latitude::{ClientConfig, LatitudeClient, LatitudeProvider};
use metal::secret::ApiKey;

use crate::cli::ProviderArgs;
use crate::exit::{self, Failure};

/// The Latitude API when nothing else is configured.
pub const DEFAULT_API_URL: &str = "https://api.latitude.sh";
/// The environment variable holding the API key. There is deliberately no flag: a key on the
/// command line ends up in shell history and `ps`.
pub const API_KEY_ENV: &str = "LATITUDE_API_KEY";
/// The key the in-process lab accepts.
const LAB_API_KEY: &str = "lab";

/// `$XDG_STATE_HOME/cto/<cluster>`, falling back to `~/.local/state/cto/<cluster>`.
pub fn default_state_dir(cluster: &str) -> Result<PathBuf, Failure> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local").join("state"),
            None => {
                return Err(Failure::new(
                    exit::USAGE,
                    "neither XDG_STATE_HOME nor HOME is set: pass --state-dir",
                ));
            }
        },
    };
    Ok(base.join("cto").join(cluster))
}

/// The state directory from `--state-dir` or the cluster name.
pub fn state_dir(explicit: Option<&Path>, cluster: Option<&str>) -> Result<PathBuf, Failure> {
    match (explicit, cluster) {
        (Some(dir), _) => Ok(dir.to_owned()),
        (None, Some(cluster)) => default_state_dir(cluster),
        (None, None) => Err(Failure::new(
            exit::USAGE,
            "give --state-dir or --cluster-name so cto knows which install you mean",
        )),
    }
}

/// A provider and, in lab mode, the lab that serves it (kept alive as long as this lives).
pub struct Connection {
    /// The provider.
    pub provider: LatitudeProvider,
    lab: Option<lab::LabHandle>,
}

impl Connection {
    /// Stops the in-process lab, if any.
    pub async fn close(self) {
        if let Some(lab) = self.lab {
            lab.shutdown().await;
        }
    }
}

/// Connects to Latitude (key from `LATITUDE_API_KEY`) or starts the lab under
/// `<state_dir>/lab`.
pub async fn connect(
    args: &ProviderArgs,
    state_dir: &Path,
    project_hint: Option<&str>,
) -> Result<Connection, Failure> {
    if args.lab {
        let world = state_dir.join("lab");
        let handle = lab::start(
            lab::LabConfig::default(),
            &world,
            ([127, 0, 0, 1], 0).into(),
        )
        .await
        .map_err(|e| Failure::new(exit::STEP_FAILED, format!("cannot start the lab: {e}")))?;
        let api_url = handle.url();
        let project = lab::LAB_PROJECT_ID.to_owned();
        let provider = build(&api_url, ApiKey::new(LAB_API_KEY), &project)?;
        tracing::info!(%api_url, world = %world.display(), "lab started in-process");
        return Ok(Connection {
            provider,
            lab: Some(handle),
        });
    }
    let key = ApiKey::new(std::env::var(API_KEY_ENV).unwrap_or_default());
    if key.is_empty() {
        return Err(Failure::new(
            exit::PREREQUISITES,
            format!(
                "{API_KEY_ENV} is not set: export your Latitude API key (Settings → API keys) or use --lab"
            ),
        ));
    }
    let project = args
        .project
        .clone()
        .or_else(|| project_hint.map(str::to_owned))
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| {
            Failure::new(
                exit::USAGE,
                "no project: pass --project or set LATITUDE_PROJECT_ID (proj_... or the project slug)",
            )
        })?;
    let api_url = args
        .api_url
        .clone()
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    let provider = build(&api_url, key, &project)?;
    tracing::info!(%api_url, %project, "using the Latitude API");
    Ok(Connection {
        provider,
        lab: None,
    })
}

fn build(api_url: &str, key: ApiKey, project: &str) -> Result<LatitudeProvider, Failure> {
    let client = LatitudeClient::new(ClientConfig::new(api_url, key, project))
        .map_err(|e| Failure::new(exit::USAGE, format!("cannot use API URL {api_url}: {e}")))?;
    Ok(LatitudeProvider::new(client))
}

/// Environment variable scaling every wait's time limit (`0.01` turns 45 minutes into 27
/// seconds). For tests and lab experiments only; see docs/operations.md.
pub const TIMEOUT_SCALE_ENV: &str = "CTO_TIMEOUT_SCALE";

/// The installer's waits: the defaults, with their time limits multiplied by
/// `CTO_TIMEOUT_SCALE` when it is set to a positive number (an invalid value is ignored with a
/// warning in the log).
pub fn timings() -> installer::Timings {
    let mut t = installer::Timings::default();
    let Ok(raw) = std::env::var(TIMEOUT_SCALE_ENV) else {
        return t;
    };
    match raw.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 100.0 => {
            for limit in [
                &mut t.servers_ready_timeout,
                &mut t.maintenance_timeout,
                &mut t.install_timeout,
                &mut t.kubernetes_timeout,
            ] {
                *limit = limit.mul_f64(f);
            }
        }
        _ => {
            tracing::warn!(value = %raw, "{TIMEOUT_SCALE_ENV} is not a number in (0, 100]; ignored")
        }
    }
    t
}
