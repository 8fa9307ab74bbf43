//! `cto regions`: which sites can host N servers of a plan right now, ranked the way
//! `--auto-region` ranks them, with the reason every other site was passed over. Meant for
//! scheduled jobs (`--output json`) as much as for people.

use metal::inventory::{InventoryError, InventoryManager, NodeDemand, RegionRequest};
use metal::provider::Provider;
use serde_json::json;

use crate::cli::{Output, RegionsArgs};
use crate::context;
use crate::exit::{self, Failure};
use crate::output;

/// Runs `cto regions`.
pub async fn run(args: RegionsArgs) -> Result<(), Failure> {
    if args.nodes == 0 {
        return Err(Failure::new(
            exit::USAGE,
            "invalid --nodes '0': ask for at least one server",
        ));
    }
    let fallback_order: Vec<String> = args
        .fallback_regions
        .split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    let scratch = tempfile::tempdir().map_err(|e| {
        Failure::new(
            exit::STEP_FAILED,
            format!("cannot create a scratch directory: {e}"),
        )
    })?;
    let connection = context::connect(&args.provider, scratch.path(), None).await?;
    let offers = connection.provider.plan_offers().await;
    connection.close().await;
    let offers = offers.map_err(|e| {
        let code = match e.kind {
            metal::provider::ProviderErrorKind::Unauthorized => exit::PREREQUISITES,
            _ => exit::STEP_FAILED,
        };
        Failure::new(code, format!("listing plans and stock: {e}"))
    })?;
    let inventory = InventoryManager::new(offers.clone());
    let request = RegionRequest {
        demands: vec![NodeDemand {
            plan: args.plan.clone(),
            count: args.nodes,
        }],
        fallback_order,
        pinned_site: None,
    };
    match inventory.select_region(&request) {
        Ok(selection) => {
            // What `--storage auto` would decide for this plan at the chosen site.
            let storage = installer::storage_plan::decide_for_offers(
                installer::storage_plan::StorageChoice::Auto,
                &args.plan,
                &offers,
                &selection.chosen.site,
            )
            .ok();
            match args.output {
                Output::Json => output::emit_json(&json!({
                    "plan": args.plan,
                    "nodes": args.nodes,
                    "chosen": selection.chosen,
                    "sites": selection.verdicts,
                    "storage": storage.as_ref().map(|s| json!({"mode": s.mode, "note": s.note})),
                })),
                Output::Text => {
                    println!(
                        "{:<5} {:<6} {:<16} {:<12} {:>10}  WHY",
                        "RANK", "SITE", "COUNTRY", "STOCK", "$/HOUR"
                    );
                    let mut verdicts = selection.verdicts.clone();
                    verdicts.sort_by_key(|v| (v.rank.is_none(), v.rank, v.site.clone()));
                    for v in &verdicts {
                        println!(
                            "{:<5} {:<6} {:<16} {:<12} {:>10}  {}",
                            v.rank.map_or("-".into(), |r| r.to_string()),
                            v.site,
                            v.country.as_deref().unwrap_or("-"),
                            v.stock_level.to_string(),
                            v.hourly_usd_total.map_or("-".into(), |p| format!("{p:.2}")),
                            v.reasons.join("; "),
                        );
                    }
                    println!(
                        "\n--auto-region would pick {} for {} x {}.",
                        selection.chosen.site, args.nodes, args.plan
                    );
                    if let Some(storage) = &storage {
                        println!("{}", storage.note);
                    }
                }
            }
            Ok(())
        }
        Err(InventoryError::NoSite { verdicts }) => {
            if args.output == Output::Json {
                output::emit_json(
                    &json!({"plan": args.plan, "nodes": args.nodes, "chosen": null, "sites": verdicts}),
                );
            } else {
                for v in &verdicts {
                    println!("{:<6} {}", v.site, v.reasons.join("; "));
                }
            }
            Err(Failure::new(
                exit::PREREQUISITES,
                format!(
                    "no site has {} x {} in stock right now",
                    args.nodes, args.plan
                ),
            ))
        }
        Err(other) => Err(Failure::new(exit::PREREQUISITES, other.to_string())),
    }
}
