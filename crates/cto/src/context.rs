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

/// Checks `--cluster-name` the same way in every command (a DNS label:
/// [`installer::spec::validate_cluster_name`]), before it names a directory or a server: a name
/// such as `../../x` is a usage error (exit 2), never a path.
pub fn check_cluster_name(cluster: &str) -> Result<(), Failure> {
    installer::spec::validate_cluster_name(cluster)
        .map_err(|e| Failure::new(exit::USAGE, e.to_string()))
}

/// `$XDG_STATE_HOME/cto/<cluster>`, falling back to `~/.local/state/cto/<cluster>`. The name is
/// checked first ([`check_cluster_name`]).
pub fn default_state_dir(cluster: &str) -> Result<PathBuf, Failure> {
    check_cluster_name(cluster)?;
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

/// The state directory from `--state-dir` or the cluster name. A cluster name, when given, is
/// checked even beside `--state-dir` ([`check_cluster_name`]).
pub fn state_dir(explicit: Option<&Path>, cluster: Option<&str>) -> Result<PathBuf, Failure> {
    if let Some(cluster) = cluster {
        check_cluster_name(cluster)?;
    }
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
    let scale = time_scale(args)?;
    if args.lab {
        let world = state_dir.join("lab");
        let handle = lab::start(lab_config(), &world, ([127, 0, 0, 1], 0).into())
            .await
            .map_err(|e| Failure::new(exit::STEP_FAILED, format!("cannot start the lab: {e}")))?;
        let api_url = handle.url();
        let project = lab::LAB_PROJECT_ID.to_owned();
        let provider = build(&api_url, ApiKey::new(LAB_API_KEY), &project, scale)?;
        tracing::info!(%api_url, world = %world.display(), time_scale = scale, "lab started in-process");
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
    let api_url = api_url(args);
    let provider = build(&api_url, key, &project, scale)?;
    tracing::info!(%api_url, %project, time_scale = scale, "using the Latitude API");
    Ok(Connection {
        provider,
        lab: None,
    })
}

fn build(
    api_url: &str,
    key: ApiKey,
    project: &str,
    time_scale: f64,
) -> Result<LatitudeProvider, Failure> {
    let config = ClientConfig::new(api_url, key, project).scaled(time_scale);
    let client = LatitudeClient::new(config).map_err(|e| {
        // The client's own message already shows the URL without userinfo.
        let shown = metal::urls::redact_userinfo(api_url);
        Failure::new(exit::USAGE, format!("cannot use API URL {shown}: {e}"))
    })?;
    Ok(LatitudeProvider::new(client))
}

/// The configuration of the in-process lab (`--lab`).
fn lab_config() -> lab::LabConfig {
    lab::LabConfig::default()
}

/// The Latitude API URL `connect` uses: the in-process lab's loopback address with `--lab`,
/// else `--api-url` / `LATITUDE_API_URL`, else the real API.
pub fn api_url(args: &ProviderArgs) -> String {
    if args.lab {
        return "http://127.0.0.1".to_owned();
    }
    args.api_url
        .clone()
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned())
}

/// Environment variable running the installer in a lab's scaled time: `CTO_TIME_SCALE=F`
/// (`0 < F <= 1`) multiplies every clock of the installer by `F` — poll intervals, wait time
/// limits, the Latitude client's rate-limit window, backoff delays and `retry_after` pauses —
/// to match a lab whose `time_scale` is `F`. Only against a loopback API URL (a lab); see
/// docs/operations.md.
pub const TIME_SCALE_ENV: &str = "CTO_TIME_SCALE";

/// `CTO_TIME_SCALE` as set: `None` when unset or blank, a usage error (exit 2) when it is not a
/// number in `(0, 1]`.
pub fn time_scale_env() -> Result<Option<f64>, Failure> {
    let Some(raw) = std::env::var_os(TIME_SCALE_ENV) else {
        return Ok(None);
    };
    let raw = raw.to_string_lossy();
    if raw.trim().is_empty() {
        return Ok(None);
    }
    parse_time_scale(&raw).map(Some)
}

fn parse_time_scale(raw: &str) -> Result<f64, Failure> {
    match raw.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(Failure::new(
            exit::USAGE,
            format!(
                "{TIME_SCALE_ENV}={raw} is not a time scale: give real seconds per modelled second, a number in (0, 1] such as 0.01"
            ),
        )),
    }
}

/// The time scale of a run against the provider `args` select: `CTO_TIME_SCALE` when set, which
/// is refused (exit 2) unless the API URL is loopback; else the in-process lab's own
/// `time_scale` with `--lab`; else 1 (real time).
pub fn time_scale(args: &ProviderArgs) -> Result<f64, Failure> {
    let url = metal::urls::redact_userinfo(&api_url(args));
    match time_scale_env()? {
        Some(f) if args.lab || metal::latitude::is_loopback_url(&url) => Ok(f),
        Some(f) => Err(Failure::new(
            exit::USAGE,
            format!(
                "{TIME_SCALE_ENV}={f} is only for a lab on a loopback address, and the Latitude API URL {url} is not one: unset {TIME_SCALE_ENV}"
            ),
        )),
        None if args.lab => Ok(lab_config().time_scale.clamp(f64::MIN_POSITIVE, 1.0)),
        None => Ok(1.0),
    }
}

/// Environment variable scaling every wait's time limit (`0.01` turns 45 minutes into 27
/// seconds), on top of [`TIME_SCALE_ENV`]. For tests and lab experiments only; see
/// docs/operations.md.
pub const TIMEOUT_SCALE_ENV: &str = "CTO_TIMEOUT_SCALE";

/// The installer's waits in a world running at `time_scale` (1 for Latitude; see
/// [`installer::Timings::scaled`]), then with their time limits multiplied by
/// `CTO_TIMEOUT_SCALE` when it is set to a positive number (an invalid value is ignored with a
/// warning in the log). That one applies last, below the scaled limits' real-time floor.
pub fn timings(time_scale: f64) -> installer::Timings {
    let mut t = installer::Timings::default().scaled(time_scale);
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

/// Hidden environment variable selecting a benchmark baseline: `CTO_BASELINE=sequential` runs
/// the same install one node at a time with fixed 5-second polling (see docs/state-machine.md,
/// "Sequential baseline"). Used by `cargo xtask bench --baseline sequential`; lab only.
pub const BASELINE_ENV: &str = "CTO_BASELINE";

/// The poll interval of the sequential baseline, in modelled seconds.
const BASELINE_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// Applies `CTO_BASELINE` (when set and not blank) to `t`, which must already be scaled to the world's time
/// (`t.time_scale`): `sequential` sets `sequential` and a fixed poll of 5 s × that scale. Only
/// against a loopback API URL (the lab: `--lab` or a `LATITUDE_API_URL` on 127.0.0.0/8 or ::1,
/// literally); elsewhere, or with any other value, a usage error (exit 2).
pub fn apply_baseline(t: &mut installer::Timings, api_url: &str) -> Result<(), Failure> {
    let Some(raw) = std::env::var_os(BASELINE_ENV) else {
        return Ok(());
    };
    let value = raw.to_string_lossy();
    if value.trim().is_empty() {
        return Ok(());
    }
    if value.trim() != "sequential" {
        return Err(Failure::new(
            exit::USAGE,
            format!("{BASELINE_ENV}={value} is not a baseline cto knows (only `sequential`)"),
        ));
    }
    if !metal::latitude::is_loopback_url(api_url) {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "{BASELINE_ENV} is for benchmarks against the lab only, and the API URL {} is not a loopback address; unset it",
                metal::urls::redact_userinfo(api_url)
            ),
        ));
    }
    t.sequential = true;
    t.fixed_poll = Some(BASELINE_POLL.mul_f64(t.time_scale));
    Ok(())
}
