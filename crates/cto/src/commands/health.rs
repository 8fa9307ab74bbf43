//! `cto health`: runs [`installer::health`]'s checks against the cluster of a state directory
//! and prints them as a table or one JSON object. Exit 0 only when every check passes.
//!
//! For a `--lab` install the lab must serve the cluster: when its Kubernetes API does not
//! answer, the lab is started in-process on `<state-dir>/lab` for the duration of the checks
//! (as `cto install --resume` does). Never run it while another process serves that world.

use std::time::Duration;

use serde_json::json;

use crate::cli::{HealthArgs, Output, ProviderArgs};
use crate::context;
use crate::exit::{self, Failure};
use crate::output;

/// Runs `cto health`.
pub async fn run(args: HealthArgs) -> Result<(), Failure> {
    let dir = context::state_dir(args.state_dir.as_deref(), args.cluster_name.as_deref())?;
    let cp = installer::health::checkpoint(&dir)
        .map_err(|e| Failure::new(exit::USAGE, format!("no install to check: {e}")))?;
    let timeout = Duration::from_secs(args.timeout.max(1));

    let mut lab = None;
    if cp.spec.lab {
        let answers = match installer::health::cluster_of(&dir).await {
            Ok(api) => tokio::time::timeout(Duration::from_secs(3), api.readyz())
                .await
                .is_ok_and(|r| r.is_ok()),
            Err(_) => false,
        };
        if !answers {
            let provider = ProviderArgs {
                project: None,
                api_url: None,
                lab: true,
            };
            lab = Some(context::connect(&provider, &dir, None).await?);
        }
    }
    let result = installer::health::run(&dir, timeout).await;
    if let Some(lab) = lab {
        lab.close().await;
    }
    let checks = result.map_err(|e| Failure::new(exit::STEP_FAILED, e.to_string()))?;
    let failed = checks.iter().filter(|c| !c.ok).count();
    match args.output {
        Output::Json => output::emit_json(&json!({
            "event": "health",
            "cluster": cp.spec.cluster_name,
            "ok": failed == 0,
            "checks": checks,
        })),
        Output::Text => {
            let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
            for c in &checks {
                println!(
                    "{}  {:<width$}  {}",
                    if c.ok { "ok  " } else { "FAIL" },
                    c.name,
                    c.detail
                );
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::new(
            exit::STEP_FAILED,
            format!("{failed} of {} health check(s) failed", checks.len()),
        ))
    }
}
