//! Steps 2–4: ordering the servers, waiting for them to deploy, and making sure each boots Talos
//! over iPXE.
//!
//! The rules that keep the bill honest (see [`crate::ownership`]): before every order call the
//! intent is persisted; before ordering anything the project's servers are listed, servers
//! proven to answer this install's own orders (its tag, or made around its recorded intent and
//! claimed by no install) are adopted, and a server that merely has one of the hostnames stops
//! the install. Every server ordered is tagged with the install's tags right after the order.
//! A run killed between the order call and the checkpoint write therefore finds its server on
//! the next run instead of buying another, and never takes over someone else's. Reinstalls,
//! deletes and replacements need the same approval as an order.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use metal::provider::{Machine, MachineOrder, MachineState, Provider, ProviderErrorKind};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::checkpoint::{
    BootState, Checkpoint, DuplicateServer, OrderState, ReplacedServer, now_rfc3339,
};
use crate::error::StepError;
use crate::events::{Approval, Event, OrderSummary};
use crate::orchestrator::Timings;
use crate::ownership::{self, Proof};
use crate::poll::{self, PendingServer, StatusClock};
use crate::steps::{StepContext, StepFailure, StepResult};

/// The Talos API port.
pub(crate) const TALOS_API_PORT: u16 = 50000;

/// How often an ambiguous order (the answer was lost) is looked up and retried.
const ORDER_ATTEMPTS: usize = 5;

/// How long (modelled time) a lost order answer is settled by listing before the order is
/// posted again: a listing that lags behind the order must show the server within it.
const LOST_ORDER_WINDOW: Duration = Duration::from_secs(90);

/// How many listings settle a lost order answer: one at once, the last at the window's end.
const LOST_ORDER_LISTINGS: u32 = 3;

/// Timeout of one TCP probe of a Talos API port (real time: loopback latency is not scaled).
const TCP_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How many times one node's failed deployment is replaced over the install's life (counted
/// in the checkpoint's `replaced` list, so resuming does not reset it) before the step gives
/// up.
pub(crate) const MAX_REPLACEMENTS: usize = 2;

/// How long a deleted failed server may take to disappear from the provider's listing before
/// the replacement is ordered (modelled time: scaled by the time scale).
const DELETE_CONFIRM_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The iPXE URL step 1 resolved.
fn resolved_ipxe_url<P: Provider>(ctx: &StepContext<'_, P>) -> Result<String, StepError> {
    ctx.checkpoint()
        .resolved
        .ipxe_url
        .clone()
        .ok_or_else(|| StepError::Inconsistent {
            what: "the iPXE URL".into(),
        })
}

/// The servers in `machines` named `hostname` that answer this install's order of it (tagged
/// with the install tag, or made around its recorded intent and claimed by no install; see
/// [`ownership`]), oldest first. Servers recorded as replaced are not among them.
fn answers_to<'m>(cp: &Checkpoint, machines: &'m [Machine], hostname: &str) -> Vec<&'m Machine> {
    let replaced: Vec<&str> = cp
        .servers
        .iter()
        .filter(|s| s.hostname == hostname)
        .flat_map(|s| s.replaced.iter().map(|r| r.id.as_str()))
        .collect();
    let mut found: Vec<&Machine> = machines
        .iter()
        .filter(|m| m.hostname == hostname && !replaced.contains(&m.id.as_str()))
        .filter(|m| {
            matches!(
                ownership::proof(cp, m),
                Some(Proof::Tagged | Proof::FreshIntent)
            )
        })
        .collect();
    found.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    found
}

/// Stops (exit 3, nothing ordered) when a server that is not this install's already has one of
/// the hostnames it is about to order: made by hand, or another install of the same cluster
/// name (from another state directory).
fn refuse_namesakes<P: Provider>(
    ctx: &StepContext<'_, P>,
    machines: &[Machine],
    hostnames: &[String],
) -> StepResult {
    let taken = ownership::namesakes(ctx.checkpoint(), machines, hostnames);
    if taken.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = taken.iter().map(|m| ownership::describe(m)).collect();
    let cluster = &ctx.checkpoint().spec.cluster_name;
    Err(StepFailure::Prerequisite(format!(
        "{} server(s) in the project already use hostnames this install needs, and nothing proves they belong to it (no id in its checkpoint, no tag {}): {}. cto never adopts, reinstalls or deletes a server by hostname alone, and ordering another would give two servers one name; nothing was ordered. If they are another install of cluster {cluster}, use that install's state directory; otherwise pick another --cluster-name, or delete or rename those servers yourself",
        taken.len(),
        ctx.checkpoint()
            .ownership
            .install_id
            .as_deref()
            .map_or_else(|| "cto-install-…".to_owned(), ownership::install_tag_name),
        list.join("; ")
    )))
}

/// The install and cluster tags, created at the provider the first time (tags are the
/// team's, found by name before one is created) and recorded in the checkpoint.
async fn ensure_tags<P: Provider>(ctx: &mut StepContext<'_, P>) -> Result<Vec<String>, StepError> {
    let install_id = match ctx.checkpoint().ownership.install_id.clone() {
        Some(id) => id,
        None => {
            let id = ownership::new_install_id();
            ctx.update(|cp| cp.ownership.install_id = Some(id.clone()))?;
            id
        }
    };
    let cluster = ctx.checkpoint().spec.cluster_name.clone();
    if ctx.checkpoint().ownership.install_tag.is_none() {
        let name = ownership::install_tag_name(&install_id);
        let tag = ctx
            .provider
            .ensure_tag(
                &name,
                &format!("servers of one cto install of cluster {cluster}"),
            )
            .await
            .map_err(|e| StepError::provider(format!("creating the install tag {name}"), e))?;
        ctx.update(|cp| cp.ownership.install_tag = Some(tag))?;
    }
    if ctx.checkpoint().ownership.cluster_tag.is_none() {
        let name = ownership::cluster_tag_name(&cluster);
        let tag = ctx
            .provider
            .ensure_tag(&name, &format!("servers of cto cluster {cluster}"))
            .await
            .map_err(|e| StepError::provider(format!("creating the cluster tag {name}"), e))?;
        ctx.update(|cp| cp.ownership.cluster_tag = Some(tag))?;
    }
    let o = &ctx.checkpoint().ownership;
    Ok(o.install_tag
        .iter()
        .chain(&o.cluster_tag)
        .map(|t| t.id.clone())
        .collect())
}

/// Attaches the install's tags to every recorded server that does not carry them yet (a run
/// cut off between an order and its tagging, or a checkpoint of an earlier release).
async fn tag_recorded<P: Provider>(
    ctx: &mut StepContext<'_, P>,
    tags: &[String],
    machines: &[Machine],
) -> StepResult {
    let untagged: Vec<(String, Machine)> = ctx
        .checkpoint()
        .servers
        .iter()
        .filter(|s| !s.tagged)
        .filter_map(|s| {
            let id = s.id.as_deref()?;
            // Not in the listing: gone (step 3 reports it) or not listed yet (the next look).
            let machine = machines.iter().find(|m| m.id == id)?;
            Some((s.hostname.clone(), machine.clone()))
        })
        .collect();
    for (hostname, machine) in untagged {
        let id = machine.id.clone();
        match ctx.provider.tag_machine(&machine, tags).await {
            Ok(()) => mark_tagged(ctx, &hostname, &id)?,
            // Gone: step 3 reports it.
            Err(e) if e.kind == ProviderErrorKind::NotFound => {}
            Err(e) => {
                return Err(StepError::provider(
                    format!("attaching the install's tags to {hostname} ({id})"),
                    e,
                )
                .into());
            }
        }
    }
    Ok(())
}

fn mark_tagged<P: Provider>(ctx: &mut StepContext<'_, P>, hostname: &str, id: &str) -> StepResult {
    ctx.update(|cp| {
        if let Some(s) = cp.server_mut(hostname)
            && s.id.as_deref() == Some(id)
        {
            s.tagged = true;
        }
    })?;
    Ok(())
}

/// Finds servers this install ordered twice for one node (a lost order answer that a lagging
/// listing hid, so the order was posted again), records them, tags them with the install's
/// tags so that `cto destroy` finds them even without the checkpoint, and reports them with
/// their ids. They are never adopted in place of the recorded server.
async fn detect_duplicates<P: Provider>(
    ctx: &mut StepContext<'_, P>,
    machines: &[Machine],
) -> StepResult {
    let cp = ctx.checkpoint().clone();
    let mut found: Vec<(String, Machine)> = Vec::new();
    for record in &cp.servers {
        let Some(id) = &record.id else { continue };
        for m in answers_to(&cp, machines, &record.hostname) {
            if m.id != *id && !cp.ownership.duplicates.iter().any(|d| d.id == m.id) {
                found.push((record.hostname.clone(), m.clone()));
            }
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    let at = now_rfc3339();
    ctx.update(|cp| {
        for (hostname, m) in &found {
            cp.ownership.duplicates.push(DuplicateServer {
                hostname: hostname.clone(),
                id: m.id.clone(),
                found_at: at.clone(),
            });
        }
    })?;
    let tags: Vec<String> = {
        let o = &ctx.checkpoint().ownership;
        o.install_tag
            .iter()
            .chain(&o.cluster_tag)
            .map(|t| t.id.clone())
            .collect()
    };
    for (hostname, m) in &found {
        let kept = cp
            .servers
            .iter()
            .find(|s| s.hostname == *hostname)
            .and_then(|s| s.id.clone())
            .unwrap_or_default();
        ctx.warn(format!(
            "duplicate server: {hostname} was ordered twice (a lost order answer); this install uses {kept} and {} ({}) is a second, billed server. `cto destroy` deletes it with the cluster, or delete {} in the Latitude dashboard now",
            m.id, m.raw_status, m.id
        ));
        tracing::warn!(%hostname, kept = %kept, duplicate = %m.id, "duplicate server");
        if !tags.is_empty()
            && let Err(e) = ctx.provider.tag_machine(m, &tags).await
        {
            tracing::warn!(id = %m.id, error = %e, "could not tag a duplicate server");
        }
    }
    Ok(())
}

/// What an order task needs to settle a lost answer: the checkpoint as it was when the
/// intents were recorded, and the clock.
#[derive(Clone)]
struct Settle {
    checkpoint: Arc<Checkpoint>,
    timings: Timings,
    tags: Vec<String>,
}

/// Step 2: order every server that is not ordered yet; adopt only servers proven to answer this
/// install's own orders (see [`ownership`]); stop before ordering when a server that is not
/// this install's has one of its hostnames.
pub(crate) async fn creating_servers<P: Provider>(ctx: &mut StepContext<'_, P>) -> StepResult {
    let existing = ctx
        .provider
        .list_machines()
        .await
        .map_err(|e| StepError::provider("listing the project's servers", e))?;

    // Adopt what answers this install's earlier orders: a previous run ordered them and was
    // cut off before it could record the answer.
    let cp = ctx.checkpoint().clone();
    for record in cp.servers.iter().filter(|s| s.id.is_none()) {
        if let Some(machine) = answers_to(&cp, &existing, &record.hostname).first() {
            adopt(ctx, &record.hostname, machine)?;
        }
    }
    let pending: Vec<String> = ctx
        .checkpoint()
        .servers
        .iter()
        .filter(|s| s.id.is_none())
        .map(|s| s.hostname.clone())
        .collect();
    refuse_namesakes(ctx, &existing, &pending)?;

    let tags = ensure_tags(ctx).await?;
    tag_recorded(ctx, &tags, &existing).await?;

    let site = ctx
        .checkpoint()
        .resolved
        .site
        .clone()
        .ok_or_else(|| StepError::Inconsistent {
            what: "the chosen site".into(),
        })?;
    let ipxe_url = resolved_ipxe_url(ctx)?;
    let to_order: Vec<MachineOrder> = ctx
        .checkpoint()
        .servers
        .iter()
        .filter(|s| s.id.is_none())
        .map(|s| MachineOrder {
            hostname: s.hostname.clone(),
            plan: s.plan.clone(),
            site: s.site.clone().unwrap_or_else(|| site.clone()),
            ipxe_url: ipxe_url.clone(),
        })
        .collect();
    if to_order.is_empty() {
        detect_duplicates(ctx, &existing).await?;
        ctx.progress("every server is already ordered");
        return Ok(());
    }

    approve(ctx, &to_order, &site).await?;

    // Record the intent for every order before the first billable call.
    let at = now_rfc3339();
    ctx.update(|cp| {
        for order in &to_order {
            if let Some(s) = cp.server_mut(&order.hostname) {
                s.order = OrderState::Intended { at: at.clone() };
                s.intended_at = Some(at.clone());
            }
        }
    })?;
    let settle = Settle {
        checkpoint: Arc::new(ctx.checkpoint().clone()),
        timings: ctx.timings.clone(),
        tags: tags.clone(),
    };

    if ctx.timings.sequential {
        ordering_sequentially(ctx, to_order, &settle).await?;
    } else {
        let limit = Arc::new(Semaphore::new(ctx.timings.max_parallel_orders.max(1)));
        let mut tasks = JoinSet::new();
        for order in to_order {
            let provider = Arc::clone(ctx.provider);
            let limit = Arc::clone(&limit);
            let settle = settle.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = order_one(provider.as_ref(), &order, &settle).await;
                let tagged = match &result {
                    Ok((machine, _)) => tag_new(provider.as_ref(), machine, &settle.tags).await,
                    Err(_) => false,
                };
                (order, result, tagged)
            });
        }

        let mut first_error: Option<StepError> = None;
        while let Some(joined) = tasks.join_next().await {
            let (order, result, tagged) = match joined {
                Ok(triple) => triple,
                Err(e) => {
                    first_error.get_or_insert(StepError::Inconsistent {
                        what: format!("an order task that finished ({e})"),
                    });
                    continue;
                }
            };
            match result {
                Ok((machine, adopted)) => {
                    record_answer(ctx, &order, &machine, adopted)?;
                    if tagged {
                        mark_tagged(ctx, &order.hostname, &machine.id)?;
                    }
                }
                Err(e) => {
                    // The intent stays recorded: the next run looks the hostname up first.
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(StepFailure::Failed(e));
        }
    }
    // Tags a failed attach left off, then one look for duplicates.
    let machines = ctx
        .provider
        .list_machines()
        .await
        .map_err(|e| StepError::provider("listing the project's servers after ordering", e))?;
    tag_recorded(ctx, &tags, &machines).await?;
    detect_duplicates(ctx, &machines).await
}

/// Attaches the install's tags to a server just ordered or adopted; false (and logged) when
/// that failed, so that the next look tries again.
async fn tag_new<P: Provider>(provider: &P, machine: &Machine, tags: &[String]) -> bool {
    match provider.tag_machine(machine, tags).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(id = %machine.id, hostname = %machine.hostname, error = %e, "could not tag the server yet");
            false
        }
    }
}

/// Records the server an order (or an adoption) answered with and tells the user.
fn record_answer<P: Provider>(
    ctx: &mut StepContext<'_, P>,
    order: &MachineOrder,
    machine: &Machine,
    adopted: bool,
) -> Result<(), StepFailure> {
    record_machine(ctx, &order.hostname, machine, adopted)?;
    let event = if adopted {
        Event::ServerAdopted {
            hostname: order.hostname.clone(),
            id: machine.id.clone(),
            status: machine.raw_status.clone(),
        }
    } else {
        Event::ServerOrdered {
            hostname: order.hostname.clone(),
            id: machine.id.clone(),
            site: order.site.clone(),
            plan: order.plan.clone(),
        }
    };
    ctx.reporter.report(event);
    Ok(())
}

/// The sequential baseline of step 2 (benchmark only): order one server, wait until it is
/// deployed, then order the next. The intents were recorded for all of them before the first
/// order, as in the concurrent path, and each answer is recorded as it arrives.
async fn ordering_sequentially<P: Provider>(
    ctx: &mut StepContext<'_, P>,
    to_order: Vec<MachineOrder>,
    settle: &Settle,
) -> StepResult {
    for order in to_order {
        let (machine, adopted) = order_one(ctx.provider.as_ref(), &order, settle).await?;
        record_answer(ctx, &order, &machine, adopted)?;
        if tag_new(ctx.provider.as_ref(), &machine, &settle.tags).await {
            mark_tagged(ctx, &order.hostname, &machine.id)?;
        }
        wait_deployed(ctx, &order.hostname, &machine.id).await?;
    }
    Ok(())
}

/// Lists servers every `fixed_poll` (`poll_min` without one) until `id` is deployed by the
/// measure of step 3, or failed or gone — both are step 3's to handle, so the wait ends there
/// too. Gives up after `servers_ready_timeout`.
async fn wait_deployed<P: Provider>(
    ctx: &mut StepContext<'_, P>,
    hostname: &str,
    id: &str,
) -> StepResult {
    let started = Instant::now();
    let interval = ctx.timings.fixed_poll.unwrap_or(ctx.timings.poll_min);
    loop {
        let machines = ctx.provider.list_machines().await.map_err(|e| {
            StepError::provider(format!("listing servers until {hostname} is deployed"), e)
        })?;
        let Some(machine) = machines.iter().find(|m| m.id == id) else {
            return Ok(());
        };
        let ready = match (machine.state, machine.primary_ipv4) {
            _ if machine.state.is_failed() => true,
            (MachineState::Ready, Some(_)) => true,
            (MachineState::Provisioning, Some(ip)) if machine.raw_status != "starting_deploy" => {
                talos_port_open(ip, Duration::from_millis(500)).await
            }
            _ => false,
        };
        if ready {
            ctx.node_status(
                hostname,
                format!("deployed ({})", machine.raw_status),
                machine.primary_ipv4.map(|ip| ip.to_string()),
            );
            return Ok(());
        }
        if started.elapsed() >= ctx.timings.servers_ready_timeout {
            return Err(StepError::Timeout {
                what: format!("{hostname} to deploy before the next server is ordered"),
                waited_s: started.elapsed().as_secs(),
                pending: format!("{hostname} ({})", machine.raw_status),
            }
            .into());
        }
        tokio::time::sleep(interval).await;
    }
}

async fn approve<P: Provider>(
    ctx: &mut StepContext<'_, P>,
    to_order: &[MachineOrder],
    site: &str,
) -> StepResult {
    if ctx.checkpoint().resolved.order_approved {
        return Ok(());
    }
    let per_server = ctx.checkpoint().resolved.hourly_usd.unwrap_or(0.0)
        / f64::from(ctx.checkpoint().spec.nodes.max(1));
    let monthly_per = ctx.checkpoint().resolved.monthly_usd.unwrap_or(0.0)
        / f64::from(ctx.checkpoint().spec.nodes.max(1));
    let summary = OrderSummary {
        provider: ctx.provider.name().to_owned(),
        site: site.to_owned(),
        servers: to_order
            .iter()
            .map(|o| (o.hostname.clone(), o.plan.clone()))
            .collect(),
        hourly_usd: per_server * to_order.len() as f64,
        monthly_usd: monthly_per * to_order.len() as f64,
    };
    match ctx.approver.approve(&summary).await {
        Approval::Approved => {
            ctx.update(|cp| cp.resolved.order_approved = true)?;
            Ok(())
        }
        Approval::Declined => Err(StepFailure::Declined),
        Approval::Unattended => Err(StepFailure::NeedsConfirmation {
            servers: summary.servers.len(),
            hourly: summary.hourly_usd,
        }),
    }
}

/// Orders one server. When the answer is lost (the provider may have created it), the project
/// is listed [`LOST_ORDER_LISTINGS`] times over [`LOST_ORDER_WINDOW`] (modelled time) looking
/// for a server that answers the order ([`answers_to`]) before the order is posted again, so a
/// lost answer becomes a second server only when the provider's listing hides the first one
/// for the whole window; [`detect_duplicates`] finds and reports it later.
async fn order_one<P: Provider>(
    provider: &P,
    order: &MachineOrder,
    settle: &Settle,
) -> Result<(Machine, bool), StepError> {
    let context = || {
        format!(
            "ordering {} ({} in {})",
            order.hostname, order.plan, order.site
        )
    };
    let mut last = None;
    for _ in 0..ORDER_ATTEMPTS {
        match provider.create_machine(order).await {
            Ok(machine) => return Ok((machine, false)),
            Err(e)
                if e.kind == ProviderErrorKind::Ambiguous
                    || e.kind == ProviderErrorKind::Transient =>
            {
                tracing::warn!(hostname = %order.hostname, error = %e, "order outcome unknown; looking the server up");
                let pause = settle.timings.scale(LOST_ORDER_WINDOW) / (LOST_ORDER_LISTINGS - 1);
                for listing in 0..LOST_ORDER_LISTINGS {
                    if listing > 0 {
                        tokio::time::sleep(pause).await;
                    }
                    let machines = provider.list_machines().await.map_err(|e| {
                        StepError::provider(
                            format!("{} (looking it up after a lost answer)", context()),
                            e,
                        )
                    })?;
                    if let Some(found) =
                        answers_to(&settle.checkpoint, &machines, &order.hostname).first()
                    {
                        return Ok(((*found).clone(), true));
                    }
                }
                tracing::warn!(hostname = %order.hostname, "no server answers the lost order after the settling window; ordering again");
                last = Some(e);
            }
            Err(e) if e.is_out_of_stock() => {
                return Err(StepError::OutOfStock {
                    hostname: order.hostname.clone(),
                    plan: order.plan.clone(),
                    site: order.site.clone(),
                    detail: e.message,
                });
            }
            Err(e) => return Err(StepError::provider(context(), e)),
        }
    }
    Err(StepError::provider(
        context(),
        last.unwrap_or_else(|| {
            metal::provider::ProviderError::new(ProviderErrorKind::Transient, "no answer")
        }),
    ))
}

/// Adopts a server that answers one of this install's orders (never one that merely has the
/// hostname: see [`answers_to`]).
fn adopt<P: Provider>(
    ctx: &mut StepContext<'_, P>,
    hostname: &str,
    machine: &Machine,
) -> StepResult {
    record_machine(ctx, hostname, machine, true)?;
    ctx.reporter.report(Event::ServerAdopted {
        hostname: hostname.to_owned(),
        id: machine.id.clone(),
        status: machine.raw_status.clone(),
    });
    Ok(())
}

fn record_machine<P: Provider>(
    ctx: &mut StepContext<'_, P>,
    hostname: &str,
    machine: &Machine,
    adopted: bool,
) -> StepResult {
    let tagged = ownership::carries_install_tag(ctx.checkpoint(), machine);
    ctx.update(|cp| {
        if let Some(s) = cp.server_mut(hostname) {
            if s.id.as_deref() != Some(machine.id.as_str()) {
                s.tagged = tagged;
            }
            s.id = Some(machine.id.clone());
            s.order = OrderState::Ordered {
                at: now_rfc3339(),
                adopted,
            };
            s.status = Some(machine.raw_status.clone());
            s.primary_ipv4 = machine.primary_ipv4.or(s.primary_ipv4);
            s.hourly_usd = machine.hourly_usd.or(s.hourly_usd);
            if let Some(site) = &machine.site {
                s.site = Some(site.clone());
            }
        }
    })?;
    Ok(())
}

/// How long a `failed_*` status must persist before the server is replaced, when Talos does not
/// answer on its address: as long as the server had been deploying when the status was first
/// read (the provider's own pace), at most this (modelled time, scaled in the lab).
pub(crate) const FAILED_STATUS_WINDOW: Duration = Duration::from_secs(180);
/// How many listings must read a `failed_*` status before the server is replaced.
pub(crate) const FAILED_STATUS_READS: u32 = 2;

/// A quick TCP check of the Talos API port, used to see through a provider status that lags
/// behind the machine (Latitude can say `deploying` while Talos is already up).
async fn talos_port_open(ip: Ipv4Addr, timeout: Duration) -> bool {
    let addr = SocketAddr::from((ip, TALOS_API_PORT));
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Step 3: wait until every server is deployed and has its primary IPv4. One list call per poll
/// covers all servers; its cadence adapts to what can change ([`poll::next_list_interval`]).
/// Latitude can still say `deploying` after an iPXE-booted Talos is up, so between listings the
/// Talos port of every server that says `deploying` (with an address) is probed, concurrently:
/// after each listing, and every `poll_min` once its deployment is due to end. A server whose
/// Talos answers is ready.
pub(crate) async fn waiting_servers_ready<P: Provider>(ctx: &mut StepContext<'_, P>) -> StepResult {
    let started = Instant::now();
    let timings = ctx.timings;
    let mut reported: HashMap<String, String> = HashMap::new();
    // A replacement cut off by an earlier run is finished before anything else.
    let unfinished: Vec<String> = ctx
        .checkpoint()
        .servers
        .iter()
        .filter(|s| s.id.is_none() || s.replaced.iter().any(|r| !r.gone))
        .map(|s| s.hostname.clone())
        .collect();
    for hostname in unfinished {
        finish_replacement(ctx, &hostname).await?;
    }
    // A checkpoint of an earlier release (or a run cut off before tagging) has untagged
    // servers: tag them now, so that every server of the install carries its tags.
    if ctx.checkpoint().servers.iter().any(|s| !s.tagged) {
        let tags = ensure_tags(ctx).await?;
        let machines = ctx
            .provider
            .list_machines()
            .await
            .map_err(|e| StepError::provider("listing servers to tag the install's own", e))?;
        tag_recorded(ctx, &tags, &machines).await?;
    }
    let mut clock = StatusClock::default();
    // Servers (by id) whose Talos answered while the provider still said `deploying`.
    let mut talos_up: HashSet<String> = HashSet::new();
    // Servers (by id) reading `failed_*`: since when (listing time), in how many listings, and
    // how long it must persist (see FAILED_STATUS_WINDOW).
    let mut failing: HashMap<String, (Instant, u32, Duration)> = HashMap::new();
    loop {
        let machines = ctx.provider.list_machines().await.map_err(|e| {
            StepError::provider("listing servers while waiting for them to deploy", e)
        })?;
        let listed_at = Instant::now();
        detect_duplicates(ctx, &machines).await?;
        let by_id: HashMap<&str, &Machine> = machines.iter().map(|m| (m.id.as_str(), m)).collect();

        let records = ctx.checkpoint().servers.clone();
        // Not ready yet: hostname and what is shown for it.
        let mut pending: Vec<(String, String)> = Vec::new();
        let mut plan: Vec<(String, Duration, bool)> = Vec::new();
        // Servers saying `deploying` with an address: hostname, id, address, time in status.
        let mut to_probe: Vec<(String, String, Ipv4Addr, Duration)> = Vec::new();
        let mut changed = false;
        let mut replaced = false;
        for record in &records {
            let id = record.id.clone().ok_or_else(|| StepError::Inconsistent {
                what: format!("the server id of {}", record.hostname),
            })?;
            let Some(machine) = by_id.get(id.as_str()) else {
                return Err(StepError::ServerGone {
                    hostname: record.hostname.clone(),
                    id,
                }
                .into());
            };
            // A `failed_*` read is not trusted at once: terraform-provider-latitudesh PR #183
            // describes an iPXE reinstall reading `failed_deployment` while the machine was
            // still erasing its disk. It leads to a replacement only when it persists for
            // FAILED_STATUS_WINDOW (modelled time) over at least FAILED_STATUS_READS listings
            // and Talos does not answer on the server's address.
            if !machine.state.is_failed() {
                failing.remove(&id);
            }
            let failed_for_good = machine.state.is_failed() && !talos_up.contains(&id) && {
                let (since, reads, window) = failing.entry(id.clone()).or_insert_with(|| {
                    let full = timings.scale(FAILED_STATUS_WINDOW);
                    let window = ordered_ago(&record.order).map_or(full, |age| age.min(full));
                    (listed_at, 0, window)
                });
                *reads += 1;
                *reads >= FAILED_STATUS_READS
                    && listed_at.saturating_duration_since(*since) >= *window
            };
            if failed_for_good {
                failing.remove(&id);
                // The cap is over the install's life: every replacement is in the checkpoint.
                let done = record.replaced.len();
                if done >= MAX_REPLACEMENTS {
                    return Err(StepError::ServerFailedRepeatedly {
                        hostname: record.hostname.clone(),
                        id,
                        status: machine.raw_status.clone(),
                        replaced: done,
                    }
                    .into());
                }
                ctx.warn(format!(
                    "server {} ({id}) reports {}; deleting it and ordering a replacement ({} of at most {MAX_REPLACEMENTS} over this install's life)",
                    record.hostname,
                    machine.raw_status,
                    done + 1
                ));
                ctx.node_status(
                    &record.hostname,
                    machine.raw_status.clone(),
                    Some(id.clone()),
                );
                let at = now_rfc3339();
                let status = machine.raw_status.clone();
                ctx.update(|cp| {
                    if let Some(s) = cp.server_mut(&record.hostname)
                        && !s.replaced.iter().any(|r| r.id == id)
                    {
                        s.replaced.push(ReplacedServer {
                            id: id.clone(),
                            status,
                            at,
                            gone: false,
                        });
                    }
                })?;
                finish_replacement(ctx, &record.hostname).await?;
                clock.forget(&id);
                talos_up.remove(&id);
                reported.remove(&record.hostname);
                pending.push((record.hostname.clone(), "replaced".into()));
                changed = false;
                replaced = true;
                break;
            }
            let in_status = clock.observe_ordered(
                &id,
                &machine.raw_status,
                listed_at,
                ordered_ago(&record.order),
                timings,
            );
            let ready = match (machine.state, machine.primary_ipv4) {
                (MachineState::Ready, Some(_)) => true,
                (_, Some(_)) => talos_up.contains(&id),
                _ => false,
            };
            let shown = match (ready, machine.state) {
                (true, MachineState::Ready) => format!("ready ({})", machine.raw_status),
                (true, _) => format!("ready ({}; Talos answers)", machine.raw_status),
                (false, _) => machine.raw_status.clone(),
            };
            if reported.get(&record.hostname) != Some(&shown) {
                ctx.node_status(
                    &record.hostname,
                    shown.clone(),
                    machine.primary_ipv4.map(|ip| ip.to_string()),
                );
                reported.insert(record.hostname.clone(), shown);
            }
            if record.status.as_deref() != Some(machine.raw_status.as_str())
                || record.primary_ipv4 != machine.primary_ipv4
            {
                changed = true;
            }
            if !ready {
                pending.push((record.hostname.clone(), machine.raw_status.clone()));
                plan.push((
                    machine.raw_status.clone(),
                    in_status,
                    machine.primary_ipv4.is_some(),
                ));
                // Every server with an address that is not in a terminal state is probed:
                // Latitude has been seen saying `deploying` or `disk_erasing` (and, briefly,
                // `failed_deployment`) while Talos was already up.
                if !matches!(machine.state, MachineState::Ready | MachineState::Off)
                    && let Some(ip) = machine.primary_ipv4
                {
                    to_probe.push((record.hostname.clone(), id.clone(), ip, in_status));
                }
            }
        }
        if changed {
            ctx.update(|cp| {
                for m in &machines {
                    if let Some(s) = cp
                        .servers
                        .iter_mut()
                        .find(|s| s.id.as_deref() == Some(m.id.as_str()))
                    {
                        s.status = Some(m.raw_status.clone());
                        s.primary_ipv4 = m.primary_ipv4.or(s.primary_ipv4);
                    }
                }
            })?;
        }
        if pending.is_empty() {
            return Ok(());
        }
        let interval = if replaced {
            poll::soon(timings, machines.len())
        } else {
            let plan: Vec<PendingServer<'_>> = plan
                .iter()
                .map(|(status, in_status, has_ip)| PendingServer {
                    status,
                    in_status: *in_status,
                    has_ip: *has_ip,
                })
                .collect();
            poll::next_list_interval(timings, &plan, machines.len())
        };
        let next_list = listed_at + interval;

        // Until the next listing: probe Talos on the `deploying` servers (no provider reads):
        // all of them right after the listing, then every `poll_min` those whose deployment is
        // due to end ([`poll::talos_probe_wait`]).
        let mut first_round = true;
        while !to_probe.is_empty() {
            let probe_started = Instant::now();
            let since_listing = probe_started.saturating_duration_since(listed_at);
            let targets: Vec<(String, String, Ipv4Addr)> = to_probe
                .iter()
                .filter(|(_, _, _, in_status)| {
                    first_round
                        || poll::talos_probe_wait(timings, *in_status + since_listing).is_zero()
                })
                .map(|(hostname, id, ip, _)| (hostname.clone(), id.clone(), *ip))
                .collect();
            first_round = false;
            for (hostname, id) in talos_answering(&targets, timings).await {
                to_probe.retain(|(_, i, _, _)| *i != id);
                pending.retain(|(h, _)| *h != hostname);
                let ip = by_id.get(id.as_str()).and_then(|m| m.primary_ipv4);
                let status = by_id
                    .get(id.as_str())
                    .map_or("deploying", |m| m.raw_status.as_str());
                let shown = format!("ready ({status}; Talos answers)");
                ctx.node_status(&hostname, shown.clone(), ip.map(|ip| ip.to_string()));
                reported.insert(hostname, shown);
                talos_up.insert(id);
            }
            if pending.is_empty() {
                return Ok(());
            }
            // The next round: `poll_min` after this one for a server that is due, else when the
            // first one becomes due.
            let Some(next_probe) = to_probe
                .iter()
                .map(|(_, _, _, in_status)| {
                    match poll::talos_probe_wait(timings, *in_status + since_listing) {
                        left if left.is_zero() => {
                            probe_started + poll::talos_probe_interval(timings)
                        }
                        left => probe_started + left,
                    }
                })
                .min()
            else {
                break;
            };
            if next_probe >= next_list {
                break;
            }
            tokio::time::sleep_until(next_probe.into()).await;
        }
        if started.elapsed() >= timings.servers_ready_timeout {
            let pending: Vec<String> = pending
                .iter()
                .map(|(hostname, status)| format!("{hostname} ({status})"))
                .collect();
            return Err(StepError::Timeout {
                what: "servers to deploy".into(),
                waited_s: started.elapsed().as_secs(),
                pending: pending.join(", "),
            }
            .into());
        }
        tokio::time::sleep_until(next_list.into()).await;
    }
}

/// How long ago this install ordered a server, from the checkpoint (`None` for an adopted
/// server, whose order time is unknown, or an unreadable time).
fn ordered_ago(order: &OrderState) -> Option<Duration> {
    let OrderState::Ordered { at, adopted: false } = order else {
        return None;
    };
    let at =
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    Duration::try_from(time::OffsetDateTime::now_utc() - at).ok()
}

/// The servers among `targets` (hostname, id, address) whose Talos API port accepts a TCP
/// connection, probed concurrently (at most `max_parallel_nodes` at once): `(hostname, id)`.
async fn talos_answering(
    targets: &[(String, String, Ipv4Addr)],
    timings: &Timings,
) -> Vec<(String, String)> {
    let timeout = timings.probe_timeout.min(TCP_PROBE_TIMEOUT);
    futures::stream::iter(targets.iter().cloned())
        .map(|(hostname, id, ip)| async move {
            // A port that accepts TCP, then a Talos answer (maintenance mode or installed):
            // anything else on :50000 is not Talos.
            if !talos_port_open(ip, timeout).await {
                return None;
            }
            matches!(
                metal::talos::probe(
                    SocketAddr::from((ip, TALOS_API_PORT)),
                    timings.probe_timeout
                )
                .await,
                metal::talos::ProbeOutcome::Maintenance { .. }
                    | metal::talos::ProbeOutcome::Installed { .. }
            )
            .then_some((hostname, id))
        })
        .buffer_unordered(timings.max_parallel_nodes.max(1))
        .filter_map(std::future::ready)
        .collect()
        .await
}

/// Step 4: every server must boot the cluster's iPXE URL. A server the provider reports with
/// another operating system (adopted from elsewhere, or reinstalled by hand) is reinstalled
/// onto iPXE; the request is recorded first so a resumed run does not reinstall it twice.
pub(crate) async fn booting_talos<P: Provider>(ctx: &mut StepContext<'_, P>) -> StepResult {
    let ipxe_url = resolved_ipxe_url(ctx)?;
    let machines = ctx
        .provider
        .list_machines()
        .await
        .map_err(|e| StepError::provider("listing servers to check their boot image", e))?;
    let by_id: HashMap<&str, &Machine> = machines.iter().map(|m| (m.id.as_str(), m)).collect();
    let records = ctx.checkpoint().servers.clone();
    for record in records {
        let id = record.id.clone().ok_or_else(|| StepError::Inconsistent {
            what: format!("the server id of {}", record.hostname),
        })?;
        let machine = by_id
            .get(id.as_str())
            .ok_or_else(|| StepError::ServerGone {
                hostname: record.hostname.clone(),
                id: id.clone(),
            })?;
        // What answers decides, not what the provider reports: what an iPXE-deployed server
        // shows in `operating_system` is not documented (the spec's example is `{}`), and a
        // reinstall costs a disk erase. A server whose Talos answers in maintenance mode boots
        // Talos already.
        let mut on_ipxe = machine.operating_system.as_deref() == Some("ipxe");
        if !on_ipxe
            && let Some(ip) = machine.primary_ipv4.or(record.primary_ipv4)
            && matches!(
                metal::talos::probe(
                    SocketAddr::from((ip, TALOS_API_PORT)),
                    ctx.timings.probe_timeout
                )
                .await,
                metal::talos::ProbeOutcome::Maintenance { .. }
            )
        {
            on_ipxe = true;
        }
        match (&record.boot, on_ipxe) {
            (_, true) => {
                if record.boot != BootState::Ipxe {
                    ctx.update(|cp| {
                        if let Some(s) = cp.server_mut(&record.hostname) {
                            s.boot = BootState::Ipxe;
                        }
                    })?;
                }
                ctx.node_status(&record.hostname, "booting Talos over iPXE", None);
            }
            (BootState::ReinstallRequested { at }, false) => {
                ctx.node_status(
                    &record.hostname,
                    "reinstall pending",
                    Some(format!("requested at {at}; status {}", machine.raw_status)),
                );
            }
            (_, false) => {
                // Only the install's own servers get here (see `crate::ownership`), and a
                // reinstall erases the disk: it needs the approval an order needs.
                let site = record.site.clone().unwrap_or_default();
                let reinstall = MachineOrder {
                    hostname: record.hostname.clone(),
                    plan: record.plan.clone(),
                    site: site.clone(),
                    ipxe_url: ipxe_url.clone(),
                };
                approve(ctx, std::slice::from_ref(&reinstall), &site).await?;
                ctx.warn(format!(
                    "{} ({id}) runs {}; reinstalling it to boot Talos over iPXE",
                    record.hostname,
                    machine
                        .operating_system
                        .as_deref()
                        .unwrap_or("an unknown OS")
                ));
                ctx.update(|cp| {
                    if let Some(s) = cp.server_mut(&record.hostname) {
                        s.boot = BootState::ReinstallRequested { at: now_rfc3339() };
                    }
                })?;
                ctx.provider
                    .reinstall_ipxe(&id, &record.hostname, &ipxe_url)
                    .await
                    .map_err(|e| {
                        StepError::provider(
                            format!("reinstalling {} ({id}) with iPXE", record.hostname),
                            e,
                        )
                    })?;
                ctx.node_status(&record.hostname, "reinstalling with iPXE", None);
            }
        }
    }
    Ok(())
}

/// Replaces a failed server of `hostname` whose replacement is recorded in the checkpoint:
/// deletes it, lists until the provider no longer reports it (bounded), then records the intent
/// and orders a server with the same hostname — adopting one instead when an earlier run's
/// order went through. Idempotent: a run cut off anywhere in here finishes the job.
async fn finish_replacement<P: Provider>(
    ctx: &mut StepContext<'_, P>,
    hostname: &str,
) -> StepResult {
    let Some(record) = ctx
        .checkpoint()
        .servers
        .iter()
        .find(|s| s.hostname == hostname)
        .cloned()
    else {
        return Ok(());
    };
    if let Some(old) = record.replaced.iter().find(|r| !r.gone).cloned() {
        // Deleting and ordering again needs the approval an order needs.
        let site = record
            .site
            .clone()
            .or_else(|| ctx.checkpoint().resolved.site.clone())
            .unwrap_or_default();
        let replacement = MachineOrder {
            hostname: hostname.to_owned(),
            plan: record.plan.clone(),
            site: site.clone(),
            ipxe_url: resolved_ipxe_url(ctx)?,
        };
        approve(ctx, std::slice::from_ref(&replacement), &site).await?;
        ctx.node_status(hostname, "deleting the failed server", Some(old.id.clone()));
        ctx.provider.delete_machine(&old.id).await.map_err(|e| {
            StepError::provider(
                format!(
                    "deleting {hostname} ({}) after it reported {}",
                    old.id, old.status
                ),
                e,
            )
        })?;
        let started = Instant::now();
        let limit = ctx.timings.scale(DELETE_CONFIRM_TIMEOUT);
        loop {
            let machines = ctx.provider.list_machines().await.map_err(|e| {
                StepError::provider(format!("listing servers until {} is gone", old.id), e)
            })?;
            if !machines.iter().any(|m| m.id == old.id) {
                break;
            }
            if started.elapsed() >= limit {
                return Err(StepError::Timeout {
                    what: format!(
                        "the failed server {hostname} ({}) to disappear after its deletion; no replacement was ordered",
                        old.id
                    ),
                    waited_s: started.elapsed().as_secs(),
                    pending: format!("{hostname} ({})", old.id),
                }
                .into());
            }
            // A deleted server is due to disappear at any moment: poll_min, within the read
            // budget.
            tokio::time::sleep(poll::soon(ctx.timings, machines.len())).await;
        }
        // Gone: only now may a replacement be ordered. The intent is recorded first.
        let at = now_rfc3339();
        ctx.update(|cp| {
            if let Some(s) = cp.server_mut(hostname) {
                for r in s.replaced.iter_mut().filter(|r| r.id == old.id) {
                    r.gone = true;
                }
                if s.id.as_deref() == Some(old.id.as_str()) || s.id.is_none() {
                    s.id = None;
                    s.tagged = false;
                    s.intended_at = Some(at.clone());
                    s.order = OrderState::Intended { at };
                    s.status = None;
                    s.primary_ipv4 = None;
                    s.boot = BootState::Unknown;
                    s.maintenance_spki = None;
                }
            }
        })?;
    }
    let Some(record) = ctx
        .checkpoint()
        .servers
        .iter()
        .find(|s| s.hostname == hostname)
        .cloned()
    else {
        return Ok(());
    };
    if record.id.is_some() {
        return Ok(());
    }
    if !matches!(record.order, OrderState::Intended { .. }) {
        let at = now_rfc3339();
        ctx.update(|cp| {
            if let Some(s) = cp.server_mut(hostname) {
                s.intended_at = Some(at.clone());
                s.order = OrderState::Intended { at };
            }
        })?;
    }
    let site = record
        .site
        .clone()
        .or_else(|| ctx.checkpoint().resolved.site.clone())
        .ok_or_else(|| StepError::Inconsistent {
            what: "the chosen site".into(),
        })?;
    let ipxe_url = resolved_ipxe_url(ctx)?;
    let order = MachineOrder {
        hostname: hostname.to_owned(),
        plan: record.plan.clone(),
        site,
        ipxe_url,
    };
    // An earlier run may have ordered the replacement and been cut off before recording it:
    // adopt only what answers this install's order; a namesake that is not ours stops it.
    let existing = ctx
        .provider
        .list_machines()
        .await
        .map_err(|e| StepError::provider("listing servers before ordering a replacement", e))?;
    let tags = ensure_tags(ctx).await?;
    let cp = ctx.checkpoint().clone();
    if let Some(machine) = answers_to(&cp, &existing, hostname).first() {
        adopt(ctx, hostname, machine)?;
        return tag_recorded(ctx, &tags, &existing).await;
    }
    refuse_namesakes(ctx, &existing, &[hostname.to_owned()])?;
    let settle = Settle {
        checkpoint: Arc::new(cp),
        timings: ctx.timings.clone(),
        tags: tags.clone(),
    };
    let (machine, adopted) = order_one(ctx.provider.as_ref(), &order, &settle).await?;
    record_machine(ctx, hostname, &machine, adopted)?;
    if tag_new(ctx.provider.as_ref(), &machine, &tags).await {
        mark_tagged(ctx, hostname, &machine.id)?;
    }
    if adopted {
        ctx.reporter.report(Event::ServerAdopted {
            hostname: hostname.to_owned(),
            id: machine.id.clone(),
            status: machine.raw_status.clone(),
        });
    } else {
        ctx.reporter.report(Event::ServerOrdered {
            hostname: hostname.to_owned(),
            id: machine.id.clone(),
            site: order.site.clone(),
            plan: order.plan.clone(),
        });
    }
    ctx.node_status(hostname, "replacement ordered", Some(machine.id));
    Ok(())
}
