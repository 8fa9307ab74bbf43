//! `cto lab serve`: the built-in lab as a standalone process, for running the real `cto`
//! against it from another shell (and for the out-of-process end-to-end tests).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::exit::{self, Failure};

/// Serves the lab until Ctrl-C or SIGTERM.
pub async fn serve(
    listen: SocketAddr,
    state: PathBuf,
    config: Option<PathBuf>,
    faults: Option<String>,
    time_scale: Option<f64>,
    seed: Option<u64>,
) -> Result<(), Failure> {
    let mut config = match &config {
        Some(path) => {
            lab::LabConfig::load(path).map_err(|e| Failure::new(exit::USAGE, e.to_string()))?
        }
        None => lab::LabConfig::default(),
    };
    if let Some(spec) = faults {
        // The flag's entries come after the file's: rates given twice take the flag's value,
        // lists (server.fail, node.noboot, …) add up.
        let merged = format!("{},{spec}", config.faults);
        config.faults = merged
            .parse::<lab::FaultSpec>()
            .map_err(|e| Failure::new(exit::USAGE, format!("invalid --faults {spec:?}: {e}")))?;
    }
    // The flags override the file (clap already refused a non-positive --time-scale).
    if let Some(time_scale) = time_scale {
        config.time_scale = time_scale;
    }
    if let Some(seed) = seed {
        config.seed = seed;
    }
    let (time_scale, seed) = (config.time_scale, config.seed);
    let handle = lab::start(config, &state, listen)
        .await
        .map_err(|e| Failure::new(exit::STEP_FAILED, format!("cannot start the lab: {e}")))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "LATITUDE_API_URL={}", handle.url());
        let _ = writeln!(out, "LATITUDE_PROJECT_ID={}", lab::LAB_PROJECT_ID);
        let _ = out.flush();
    }
    eprintln!(
        "cto lab: Latitude-compatible API at {} (world in {}, servers in 127.0.{}.0/24, held by this lab alone while it runs; time scale {time_scale}, seed {seed}); any non-empty LATITUDE_API_KEY works. Ctrl-C stops it.",
        handle.url(),
        state.display(),
        handle.ip_block()
    );
    wait_for_stop().await;
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
