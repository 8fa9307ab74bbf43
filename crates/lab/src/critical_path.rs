//! The critical path: the lab's lower bound on how long an install of *this* world takes.
//!
//! `cargo xtask bench` runs the real `cto` against the lab and reports `wall / critical path`.
//! The bound is what a zero-latency installer that does all independent work in parallel,
//! within the rate limits, would take on the same world: the same servers, the same seeded
//! durations ([`crate::durations`]), the same simulated controllers' rules. Two bounds, in
//! modelled seconds from the installer's start (see `docs/performance.md`, "The critical
//! path"):
//!
//! * **dag** — only physical and data dependencies and the rate limits;
//! * **step_ordered** — the same zero-latency work, but each of the 22 steps starts only when
//!   the previous one's completion condition holds, so `step_ordered − dag` is what the step
//!   order itself costs.
//!
//! The core ([`model`]) is sans IO: a [`shape::WorldShape`] and a [`model::Timing`] in, two
//! schedules out. [`shape::from_lab`] reads the shape of a running lab (servers, applied
//! machine configurations, the cluster's persisted objects, the GitOps tree), so the bound can
//! be asked for after a run. `GET /_lab/critical-path` serves it.

mod model;
mod shape;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::durations::Durations;
use crate::state::Lab;
use model::{Bounds, MILESTONES};
use shape::WorldShape;

/// `GET /_lab/critical-path` (no authentication, not counted): both bounds for the world as
/// it is now; `409` when it has no servers.
pub(crate) async fn handler(State(lab): State<Arc<Lab>>) -> Response {
    let computed = tokio::task::spawn_blocking(move || {
        let shape = shape::from_lab(&lab)?;
        let durations = Durations::new(&lab.config);
        let bounds = model::compute(&shape, &durations);
        Ok::<Value, String>(report(
            &shape,
            &bounds,
            lab.config.time_scale,
            lab.config.seed,
        ))
    })
    .await;
    match computed {
        Ok(Ok(body)) => Json(body).into_response(),
        Ok(Err(message)) => (
            StatusCode::CONFLICT,
            Json(json!({"error": "no critical path", "message": message})),
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(
                json!({"error": "critical path computation failed", "message": error.to_string()}),
            ),
        )
            .into_response(),
    }
}

/// The JSON document of `GET /_lab/critical-path`.
fn report(shape: &WorldShape, bounds: &Bounds, time_scale: f64, seed: u64) -> Value {
    let dag = bounds.dag.complete_s();
    let ordered = bounds.step_ordered.complete_s();
    let milestones: Vec<Value> = MILESTONES
        .iter()
        .filter_map(|name| {
            let d = bounds.dag.milestone_s(name);
            let o = bounds.step_ordered.milestone_s(name);
            (d.is_some() || o.is_some()).then(|| {
                json!({
                    "name": name,
                    "dag_modelled_s": d.map(round),
                    "step_ordered_modelled_s": o.map(round),
                })
            })
        })
        .collect();
    let steps: Vec<Value> = bounds
        .step_ordered
        .steps
        .iter()
        .map(|(name, e)| {
            json!({"step": name, "step_ordered_modelled_s": round(bounds.step_ordered.schedule.at(*e))})
        })
        .collect();
    let chain: Vec<Value> = bounds
        .dag
        .critical_chain()
        .into_iter()
        .map(|(event, at)| json!({"event": event, "dag_modelled_s": round(at)}))
        .collect();
    json!({
        "time_scale": time_scale,
        "seed": seed,
        "dag_modelled_s": round(dag),
        "step_ordered_modelled_s": round(ordered),
        "dag_real_s": dag * time_scale,
        "step_ordered_real_s": ordered * time_scale,
        "milestones": milestones,
        "steps": steps,
        "critical_chain": chain,
        "shape": shape.summary(),
    })
}

/// Milliseconds are plenty for modelled seconds.
fn round(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}
