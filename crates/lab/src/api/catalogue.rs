//! Read-only catalogue routes: `GET /plans` (not paginated), `GET /plans/{id_or_slug}`,
//! `GET /plans/operating_systems`, `GET /regions[/{id}]` and `GET /projects[/{id}]`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::pagination::Page;
use super::{RawQuery, data, params, resources};
use crate::state::Lab;
use crate::stock;

/// `GET /plans` with `filter[slug|name|location|in_stock|stock_level|gpu]`.
pub(crate) async fn list_plans(
    State(lab): State<Arc<Lab>>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    let q = params(query)?;
    let bool_filter = |key: &str| -> Result<Option<bool>, ApiError> {
        match q.get(key).map(|v| v.to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) if v == "true" => Ok(Some(true)),
            Some(v) if v == "false" => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid_parameter(
                key,
                format!("{key} must be true or false, got {v:?}"),
            )),
        }
    };
    let in_stock = bool_filter("filter[in_stock]")?;
    let gpu = bool_filter("filter[gpu]")?;
    let location = q.get("filter[location]").map(|l| l.to_ascii_uppercase());
    let world = lab.world();
    let plans: Vec<Value> = world
        .catalogue
        .plans
        .iter()
        .filter(|p| {
            q.get("filter[slug]")
                .is_none_or(|s| s.split(',').any(|s| s == p.slug))
        })
        .filter(|p| {
            q.get("filter[name]")
                .is_none_or(|n| n.split(',').any(|n| n == p.name))
        })
        .filter(|p| {
            location
                .as_ref()
                .is_none_or(|l| p.region_for_site(l).is_some())
        })
        .filter(|_| gpu.is_none_or(|g| !g))
        .filter(|p| {
            let regions = stock::regions(&world, &lab.config, p);
            let level_ok = q.get("filter[stock_level]").is_none_or(|level| {
                regions
                    .iter()
                    .any(|r| r.stock_level.eq_ignore_ascii_case(level))
            });
            let stocked = regions.iter().any(|r| {
                r.in_stock
                    .iter()
                    .any(|s| location.as_ref().is_none_or(|l| l == s))
            });
            level_ok && in_stock.is_none_or(|wanted| wanted == stocked)
        })
        .map(|p| resources::plan(&world, &lab.config, p))
        .collect();
    Ok(data(StatusCode::OK, Value::Array(plans), json!({})))
}

/// `GET /plans/{id_or_slug}`.
pub(crate) async fn get_plan(
    State(lab): State<Arc<Lab>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let world = lab.world();
    let plan = world
        .catalogue
        .plans
        .iter()
        .find(|p| p.id == id || p.slug == id)
        .ok_or_else(ApiError::not_found)?;
    Ok(data(
        StatusCode::OK,
        resources::plan(&world, &lab.config, plan),
        json!({}),
    ))
}

/// `GET /plans/operating_systems` (paginated).
pub(crate) async fn list_operating_systems(
    State(lab): State<Arc<Lab>>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    let page = Page::from_query(&params(query)?)?;
    let world = lab.world();
    let all: Vec<Value> = world
        .catalogue
        .operating_systems
        .iter()
        .map(resources::operating_system)
        .collect();
    let (items, meta) = page.apply(all);
    Ok(data(StatusCode::OK, Value::Array(items), meta))
}

/// `GET /regions` (paginated).
pub(crate) async fn list_regions(
    State(lab): State<Arc<Lab>>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    let page = Page::from_query(&params(query)?)?;
    let world = lab.world();
    let all: Vec<Value> = world
        .catalogue
        .sites
        .iter()
        .map(resources::region)
        .collect();
    let (items, meta) = page.apply(all);
    Ok(data(StatusCode::OK, Value::Array(items), meta))
}

/// `GET /regions/{id}` (the slug is accepted too).
pub(crate) async fn get_region(
    State(lab): State<Arc<Lab>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let world = lab.world();
    let site = world
        .catalogue
        .sites
        .iter()
        .find(|s| s.id == id || s.slug == id)
        .ok_or_else(ApiError::not_found)?;
    Ok(data(StatusCode::OK, resources::region(site), json!({})))
}

/// `GET /projects` (paginated).
pub(crate) async fn list_projects(
    State(lab): State<Arc<Lab>>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    let page = Page::from_query(&params(query)?)?;
    let world = lab.world();
    let (items, meta) = page.apply(vec![resources::project(&world, &world.project)]);
    Ok(data(StatusCode::OK, Value::Array(items), meta))
}

/// `GET /projects/{id_or_slug}`.
pub(crate) async fn get_project(
    State(lab): State<Arc<Lab>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let world = lab.world();
    let project = world.project(&id).ok_or_else(ApiError::not_found)?;
    Ok(data(
        StatusCode::OK,
        resources::project(&world, project),
        json!({}),
    ))
}
