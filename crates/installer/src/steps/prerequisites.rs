//! Step 1, ValidatingPrerequisites: everything that can be checked before money is spent.
//!
//! The API key and project, the plans, stock for every node in the chosen or auto-selected site,
//! the iPXE URL, and the cost. It orders nothing, so its failures are "prerequisites unmet"
//! (exit 3) unless the provider itself was unreachable (exit 1, resumable).

use metal::inventory::{InventoryError, InventoryManager, NodeDemand, RegionRequest};
use metal::provider::{Provider, ProviderErrorKind};
use metal::talos::{ImageFactory, Schematic};

use crate::error::StepError;
use crate::events::Event;
use crate::spec::{RegionChoice, is_valid_hostname};
use crate::steps::{StepContext, StepFailure, StepResult};

pub(crate) async fn validating_prerequisites<P: Provider>(
    ctx: &mut StepContext<'_, P>,
) -> StepResult {
    let spec = ctx.checkpoint().spec.clone();

    for slot in spec.node_slots() {
        if !is_valid_hostname(&slot.hostname) {
            return Err(StepFailure::Prerequisite(format!(
                "hostname {} is not valid at the provider (at most 32 letters, digits, '.' or '-')",
                slot.hostname
            )));
        }
    }

    gitops_preflight(ctx, &spec).await?;

    let project = ctx.provider.check_project().await.map_err(|e| match e.kind {
        ProviderErrorKind::Unauthorized => StepFailure::Prerequisite(format!(
            "the {} API rejected the API key: {}. Set LATITUDE_API_KEY to a valid key with write access",
            ctx.provider.name(),
            e.message
        )),
        ProviderErrorKind::NotFound | ProviderErrorKind::Rejected => {
            StepFailure::Prerequisite(e.message.clone())
        }
        _ => StepFailure::Failed(StepError::provider("checking the API key and project", e)),
    })?;
    ctx.progress(format!("project {} ({})", project.slug, project.id));

    let offers = ctx
        .provider
        .plan_offers()
        .await
        .map_err(|e| StepFailure::Failed(StepError::provider("listing plans and stock", e)))?;
    // A plan Latitude cannot deploy with a custom iPXE boot never boots Talos.
    for plan in [&spec.cp_plan, &spec.worker_plan] {
        if offers
            .iter()
            .any(|o| o.slug == *plan && o.ipxe == Some(false))
        {
            let able: Vec<&str> = offers
                .iter()
                .filter(|o| o.ipxe == Some(true))
                .map(|o| o.slug.as_str())
                .collect();
            return Err(StepFailure::Prerequisite(format!(
                "plan {plan} cannot be deployed with iPXE at {} (the ipxe operating system's provisionable_on does not list it), so it cannot boot Talos; plans that can: {}",
                ctx.provider.name(),
                able.join(", ")
            )));
        }
    }
    let inventory = InventoryManager::new(offers.clone());

    let mut demands = vec![NodeDemand {
        plan: spec.cp_plan.clone(),
        count: spec.control_planes,
    }];
    if spec.workers() > 0 {
        if spec.worker_plan == spec.cp_plan {
            demands[0].count += spec.workers();
        } else {
            demands.push(NodeDemand {
                plan: spec.worker_plan.clone(),
                count: spec.workers(),
            });
        }
    }
    let request = match &spec.region {
        RegionChoice::Auto { fallback_order } => RegionRequest {
            demands,
            fallback_order: fallback_order.clone(),
            pinned_site: None,
        },
        RegionChoice::Fixed { site } => RegionRequest {
            demands,
            fallback_order: Vec::new(),
            pinned_site: Some(site.clone()),
        },
    };
    let selection = inventory.select_region(&request).map_err(|e| match e {
        InventoryError::UnknownPlan { plan, known } => StepFailure::Prerequisite(format!(
            "plan {plan} does not exist at {}; known plans: {}",
            ctx.provider.name(),
            known.join(", ")
        )),
        other => StepFailure::Prerequisite(format!(
            "{other}; plans in stock now: {}",
            in_stock_plans(&offers)
        )),
    })?;

    let site = selection.chosen.site.clone();
    let reason = match &spec.region {
        RegionChoice::Fixed { .. } => format!("{site} was requested with --region and has stock"),
        RegionChoice::Auto { .. } => selection
            .verdicts
            .iter()
            .find(|v| v.site == site)
            .and_then(|v| v.reasons.first().cloned())
            .unwrap_or_else(|| format!("{site} is the best in-stock site")),
    };
    ctx.reporter.report(Event::RegionSelected {
        site: site.clone(),
        reason: reason.clone(),
        verdicts: selection.verdicts.clone(),
    });

    // Storage is decided from the plans before anything is ordered.
    let storage = crate::steps::disks::storage_decision(&spec, &offers, &site)
        .map_err(StepFailure::Prerequisite)?;
    ctx.progress(storage.note.clone());

    let hourly = selection.chosen.hourly_usd_total;
    let monthly = selection.chosen.monthly_usd_total;
    ctx.reporter.report(Event::Cost {
        servers: spec.nodes as usize,
        hourly_usd: hourly,
        monthly_usd: monthly,
    });

    let schematic = Schematic::default();
    let schematic_id = schematic.id().map_err(|e| {
        StepFailure::Prerequisite(format!("cannot compute the Image Factory schematic: {e}"))
    })?;
    let factory = ImageFactory::new(spec.image_factory_url.as_deref());
    check_talos_release(ctx, &spec.talos_version, &factory).await?;
    let ipxe_url = factory.ipxe_url(&schematic_id, &spec.talos_version);
    let installer_image = factory.installer_image(&schematic_id, &spec.talos_version);
    ctx.progress(format!("nodes boot {ipxe_url}"));

    ctx.update(|cp| {
        cp.resolved.project_id = Some(project.id.clone());
        cp.resolved.site = Some(site.clone());
        cp.resolved.site_reason = Some(reason);
        cp.resolved.site_verdicts = selection.verdicts;
        cp.resolved.schematic_id = Some(schematic_id);
        cp.resolved.ipxe_url = Some(ipxe_url);
        cp.resolved.installer_image = Some(installer_image);
        cp.resolved.storage_mode = Some(storage.mode);
        cp.resolved.storage_note = Some(storage.note);
        cp.resolved.hourly_usd = hourly;
        cp.resolved.monthly_usd = monthly;
        for server in cp.servers.iter_mut().filter(|s| s.id.is_none()) {
            server.site = Some(site.clone());
        }
    })?;
    Ok(())
}

/// How long step 1 waits for the Image Factory's version list.
const FACTORY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The Talos release must exist: the Image Factory lists the versions it builds (`GET
/// /versions`), and a server told to boot any other would never come up. A factory that cannot
/// be reached is warned about and not held against the install (the servers' own iPXE boot is
/// the real test then); a list without the version stops the install here, nothing ordered.
async fn check_talos_release<P: Provider>(
    ctx: &mut StepContext<'_, P>,
    version: &str,
    factory: &ImageFactory,
) -> StepResult {
    let asked = match &ctx.options.factory_url {
        Some(url) => ImageFactory::new(Some(url)),
        None => factory.clone(),
    };
    match asked.versions(FACTORY_TIMEOUT).await {
        Ok(versions) if versions.iter().any(|v| v == version) => {
            ctx.progress(format!(
                "Talos {version} is a release the Image Factory builds"
            ));
            Ok(())
        }
        Ok(versions) => {
            let minor = version.rsplit_once('.').map_or(version, |(m, _)| m);
            let same_line: Vec<&str> = versions
                .iter()
                .map(String::as_str)
                .filter(|v| v.starts_with(&format!("{minor}.")))
                .collect();
            let latest: Vec<&str> = versions.iter().rev().take(5).map(String::as_str).collect();
            Err(StepFailure::Prerequisite(format!(
                "Talos {version} is not a release the Image Factory ({}) builds; {}",
                asked.versions_url(),
                if same_line.is_empty() {
                    format!("its newest: {}", latest.join(", "))
                } else {
                    format!("{minor} releases: {}", same_line.join(", "))
                }
            )))
        }
        Err(reason) => {
            ctx.warn(format!(
                "cannot check that Talos {version} exists ({reason}); continuing"
            ));
            Ok(())
        }
    }
}

/// `c2-small-x86 (CHI, DAL), …`: the plans that can be ordered now and boot iPXE.
fn in_stock_plans(offers: &[metal::provider::PlanOffer]) -> String {
    let plans: Vec<String> = offers
        .iter()
        .filter(|o| o.ipxe != Some(false))
        .filter_map(|o| {
            let sites = o.in_stock_sites();
            (!sites.is_empty()).then(|| format!("{} ({})", o.slug, sites.join(", ")))
        })
        .collect();
    if plans.is_empty() {
        "none".into()
    } else {
        plans.join(", ")
    }
}

/// How long the GitOps preflight may take (a shallow fetch of one ref).
const GITOPS_PREFLIGHT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// The GitOps source, read before anything is billed ([`crate::gitops_source`]): anything
/// missing is a prerequisite (exit 3) naming the repository, revision and path. An install
/// against a lab (`--lab`, or a loopback API URL) whose repository is not on loopback is not
/// read: the lab's Argo CD serves such a repository itself (docs/lab.md).
async fn gitops_preflight<P: Provider>(
    ctx: &mut StepContext<'_, P>,
    spec: &crate::spec::ClusterSpec,
) -> Result<(), StepFailure> {
    let source = spec.gitops.clone();
    let lab = spec.lab || metal::latitude::client::is_loopback_url(&spec.api_url);
    if lab && !metal::latitude::client::is_loopback_url(&source.repo) {
        ctx.progress(format!(
            "GitOps source {} at {}: not read from here (the lab's Argo CD serves it)",
            source.repo, source.revision
        ));
        return Ok(());
    }
    let token = ctx.gitops_token.map(|t| t.expose().to_owned());
    let profile = spec.profile.to_string();
    let (repo, revision, path) = (
        source.repo.clone(),
        source.revision.clone(),
        source.path.clone(),
    );
    let task = tokio::task::spawn_blocking(move || {
        crate::gitops_source::check(&repo, &revision, &path, &profile, token.as_deref())
    });
    let report = match tokio::time::timeout(GITOPS_PREFLIGHT_TIMEOUT, task).await {
        Ok(Ok(Ok(report))) => report,
        Ok(Ok(Err(message))) => return Err(StepFailure::Prerequisite(message)),
        Ok(Err(e)) => {
            return Err(StepFailure::Prerequisite(format!(
                "reading the GitOps repository {} failed: {e}",
                source.repo
            )));
        }
        Err(_) => {
            return Err(StepFailure::Prerequisite(format!(
                "the GitOps repository {} did not answer within {}s",
                source.repo,
                GITOPS_PREFLIGHT_TIMEOUT.as_secs()
            )));
        }
    };
    ctx.progress(format!(
        "GitOps source {} at {} (commit {}): {} and the {} paths its Applications use exist",
        source.repo,
        source.revision,
        &report.commit[..12.min(report.commit.len())],
        source.profile_path(spec.profile),
        report.paths.len()
    ));
    Ok(())
}
