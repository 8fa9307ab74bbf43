//! Steps 2–4: ordering the servers, waiting for them to deploy, and making sure each boots Talos
//! over iPXE.
//!
//! The rule that keeps the bill honest: before every order call the intent is persisted, and
//! before ordering anything the project's servers are listed and any server already carrying
//! one of the cluster's hostnames is adopted. A run killed between the order call and the
//! checkpoint write therefore finds its server on the next run instead of buying another.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use metal::provider::{Machine, MachineOrder, MachineState, Provider, ProviderErrorKind};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::checkpoint::{BootState, OrderState, ReplacedServer, now_rfc3339};
use crate::error::StepError;
use crate::events::{Approval, Event, OrderSummary};
use crate::orchestrator::Timings;
use crate::poll::{self, PendingServer, StatusClock};
use crate::steps::{StepContext, StepFailure, StepResult};

/// The Talos API port.
pub(crate) const TALOS_API_PORT: u16 = 50000;

/// How often an ambiguous order (the answer was lost) is looked up and retried.
const ORDER_ATTEMPTS: usize = 5;

/// Timeout of one TCP probe of a Talos API port (real time: loopback latency is not scaled).
const TCP_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How many times one node's failed deployment is replaced in one run before the step gives up.
pub(crate) const MAX_REPLACEMENTS: usize = 2;

/// How long a deleted failed server may take to disappear from the provider's listing before
/// the replacement is ordered (modelled time: scaled by the time scale).
const DELETE_CONFIRM_TIMEOUT: Duration = Duration::from_secs(10 * 60);

fn index_by_hostname(machines: &[Machine]) -> HashMap<&str, Vec<&Machine>> {
    let mut map: HashMap<&str, Vec<&Machine>> = HashMap::new();
    for m in machines {
        map.entry(m.hostname.as_str()).or_default().push(m);
    }
    map
}

fn single<'m>(hostname: &str, found: &[&'m Machine]) -> Result<&'m Machine, StepError> {
    match found {
        [one] => Ok(one),
        many => Err(StepError::DuplicateHostname {
            hostname: hostname.to_owned(),
            count: many.len(),
            ids: many
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

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

/// Step 2: order every server that is not ordered yet; adopt the ones that already exist.
pub(crate) async fn creating_servers<P: Provider>(ctx: &mut StepContext<'_, P>) -> StepResult {
    let existing = ctx
        .provider
        .list_machines()
        .await
        .map_err(|e| StepError::provider("listing the project's servers", e))?;
    let by_host = index_by_hostname(&existing);

    // Adopt servers that exist under our hostnames but have no id in the checkpoint: a previous
    // run ordered them and was cut off before it could record the answer.
    let pending: Vec<String> = ctx
        .checkpoint()
        .servers
        .iter()
        .filter(|s| s.id.is_none())
        .map(|s| s.hostname.clone())
        .collect();
    for hostname in &pending {
        if let Some(found) = by_host.get(hostname.as_str()) {
            let machine = single(hostname, found)?;
            adopt(ctx, hostname, machine)?;
        }
    }

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
            }
        }
    })?;

    if ctx.timings.sequential {
        return ordering_sequentially(ctx, to_order).await;
    }

    let limit = Arc::new(Semaphore::new(ctx.timings.max_parallel_orders.max(1)));
    let mut tasks = JoinSet::new();
    for order in to_order {
        let provider = Arc::clone(ctx.provider);
        let limit = Arc::clone(&limit);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let result = order_one(provider.as_ref(), &order).await;
            (order, result)
        });
    }

    let mut first_error: Option<StepError> = None;
    while let Some(joined) = tasks.join_next().await {
        let (order, result) = match joined {
            Ok(pair) => pair,
            Err(e) => {
                first_error.get_or_insert(StepError::Inconsistent {
                    what: format!("an order task that finished ({e})"),
                });
                continue;
            }
        };
        match result {
            Ok((machine, adopted)) => record_answer(ctx, &order, &machine, adopted)?,
            Err(e) => {
                // The intent stays recorded: the next run looks the hostname up first.
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(StepFailure::Failed(e)),
        None => Ok(()),
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
) -> StepResult {
    for order in to_order {
        let (machine, adopted) = order_one(ctx.provider.as_ref(), &order).await?;
        record_answer(ctx, &order, &machine, adopted)?;
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

/// Orders one server. When the answer is lost (the provider may have created it), looks the
/// hostname up before trying again, so a lost answer never becomes a second server.
async fn order_one<P: Provider>(
    provider: &P,
    order: &MachineOrder,
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
                let machines = provider.list_machines().await.map_err(|e| {
                    StepError::provider(
                        format!("{} (looking it up after a lost answer)", context()),
                        e,
                    )
                })?;
                let found: Vec<&Machine> = machines
                    .iter()
                    .filter(|m| m.hostname == order.hostname)
                    .collect();
                if !found.is_empty() {
                    return Ok((single(&order.hostname, &found)?.clone(), true));
                }
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

fn adopt<P: Provider>(
    ctx: &mut StepContext<'_, P>,
    hostname: &str,
    machine: &Machine,
) -> StepResult {
    let expected = ctx
        .checkpoint()
        .servers
        .iter()
        .find(|s| s.hostname == hostname)
        .map(|s| (s.plan.clone(), s.site.clone()));
    if let Some((plan, site)) = expected {
        if machine.plan.as_deref().is_some_and(|p| p != plan) {
            ctx.warn(format!(
                "adopting {hostname} ({}) although its plan is {} and the install asks for {plan}",
                machine.id,
                machine.plan.as_deref().unwrap_or("?")
            ));
        }
        if let (Some(have), Some(want)) = (machine.site.as_deref(), site.as_deref())
            && !have.eq_ignore_ascii_case(want)
        {
            ctx.warn(format!(
                "adopting {hostname} ({}) in {have} although the install chose {want}",
                machine.id
            ));
        }
    }
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
    ctx.update(|cp| {
        if let Some(s) = cp.server_mut(hostname) {
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
    let mut replacements: HashMap<String, usize> = HashMap::new();
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
                let done = replacements.entry(record.hostname.clone()).or_default();
                if *done >= MAX_REPLACEMENTS {
                    return Err(StepError::ServerFailedRepeatedly {
                        hostname: record.hostname.clone(),
                        id,
                        status: machine.raw_status.clone(),
                        replaced: *done,
                    }
                    .into());
                }
                *done += 1;
                ctx.warn(format!(
                    "server {} ({id}) reports {}; deleting it and ordering a replacement ({} of at most {MAX_REPLACEMENTS})",
                    record.hostname, machine.raw_status, *done
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
    // An earlier run may have ordered the replacement and been cut off before recording it.
    let existing = ctx
        .provider
        .list_machines()
        .await
        .map_err(|e| StepError::provider("listing servers before ordering a replacement", e))?;
    let found: Vec<&Machine> = existing
        .iter()
        .filter(|m| m.hostname == hostname && !record.replaced.iter().any(|r| r.id == m.id))
        .collect();
    if !found.is_empty() {
        let machine = single(hostname, &found)?.clone();
        adopt(ctx, hostname, &machine)?;
        return Ok(());
    }
    let (machine, adopted) = order_one(ctx.provider.as_ref(), &order).await?;
    record_machine(ctx, hostname, &machine, adopted)?;
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
