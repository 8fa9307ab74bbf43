//! The two bounds, computed from a [`WorldShape`] and the world's durations alone (sans IO).
//!
//! Both are schedules of events ([`Schedule`]): each event happens at the latest of the
//! events it needs, plus a modelled duration, and remembers which of them it waited for, so
//! that the chain of causes behind the last event is the critical chain.

use std::collections::BTreeMap;

use super::shape::{AppContent, AppShape, Child, WorldShape};
use crate::durations::{Durations, Phase};

/// Where modelled durations come from: the lab's [`Durations`], or a test's.
pub(crate) trait Timing {
    /// Modelled seconds `phase` lasts for `subject` (see `durations`).
    fn modelled_s(&self, phase: Phase, subject: &str) -> f64;
}

impl Timing for Durations {
    fn modelled_s(&self, phase: Phase, subject: &str) -> f64 {
        Durations::modelled_s(self, phase, subject)
    }
}

/// The jitter subjects, as the lab's simulations name them.
pub(crate) mod subject {
    /// An Argo CD Application synced without manifests (a chart, an unreadable repository, an
    /// empty directory, manifests that cannot be loaded).
    pub fn app(app: &str) -> String {
        app.to_string()
    }

    /// The wait before a directory Application applies its `index`-th sync wave (0-based), or,
    /// with `index` = the number of waves, before it reports Synced.
    pub fn app_wave(app: &str, index: usize) -> String {
        format!("{app}/wave-{index}")
    }

    /// A DiskPool (its name).
    pub fn pool(name: &str) -> String {
        name.to_string()
    }

    /// A claim (`<namespace>/<name>`).
    pub fn claim(claim: &str) -> String {
        claim.to_string()
    }
}

/// An event of a [`Schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ev(usize);

#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub what: String,
    pub at: f64,
    /// The event this one waited for last (its critical predecessor).
    pub cause: Option<usize>,
}

/// Events in modelled seconds from the installer's start.
#[derive(Debug, Clone, Default)]
pub(crate) struct Schedule {
    events: Vec<Event>,
}

impl Schedule {
    /// A schedule with the start event (t = 0).
    fn new() -> (Schedule, Ev) {
        let mut s = Schedule::default();
        s.events.push(Event {
            what: "installer starts".into(),
            at: 0.0,
            cause: None,
        });
        (s, Ev(0))
    }

    /// An event `plus` modelled seconds after the latest of `deps`.
    fn after(&mut self, what: impl Into<String>, deps: &[Ev], plus: f64) -> Ev {
        let cause = deps
            .iter()
            .copied()
            .max_by(|a, b| self.at(*a).total_cmp(&self.at(*b)));
        let at = cause.map_or(0.0, |c| self.at(c)) + plus;
        self.events.push(Event {
            what: what.into(),
            at,
            cause: cause.map(|c| c.0),
        });
        Ev(self.events.len() - 1)
    }

    pub fn at(&self, e: Ev) -> f64 {
        self.events[e.0].at
    }

    /// The chain of causes that ends with `e`, first event first.
    pub fn chain(&self, e: Ev) -> Vec<&Event> {
        let mut chain = Vec::new();
        let mut next = Some(e.0);
        while let Some(i) = next {
            chain.push(&self.events[i]);
            next = self.events[i].cause;
        }
        chain.reverse();
        chain
    }

    /// The latest of `events` (the start when empty).
    fn latest(&mut self, what: &str, events: &[Ev]) -> Ev {
        if events.is_empty() {
            return Ev(0);
        }
        self.after(what, events, 0.0)
    }

    /// The `n`-th earliest (1-based) of `events`.
    fn nth_earliest(&self, events: &[Ev], n: usize) -> Option<Ev> {
        let mut sorted = events.to_vec();
        sorted.sort_by(|a, b| self.at(*a).total_cmp(&self.at(*b)));
        n.checked_sub(1).and_then(|i| sorted.get(i).copied())
    }
}

/// The milestones both bounds report, in order.
pub(crate) const MILESTONES: [&str; 16] = [
    "last_order",
    "all_talos_maintenance",
    "all_configs_applied",
    "all_installed",
    "bootstrapped",
    "kubernetes_api_up",
    "all_nodes_registered",
    "cilium_installed",
    "all_nodes_ready",
    "local_path_ready",
    "argocd_ready",
    "gitops_synced",
    "openebs_healthy",
    "storage_ready",
    "vault_ready",
    "complete",
];

/// One bound: its schedule, its milestones, the event that ends the install.
#[derive(Debug, Clone)]
pub(crate) struct Bound {
    pub schedule: Schedule,
    pub milestones: BTreeMap<&'static str, Ev>,
    pub complete: Ev,
    /// The 22 steps' completion events (step-ordered bound only).
    pub steps: Vec<(&'static str, Ev)>,
}

impl Bound {
    pub fn complete_s(&self) -> f64 {
        self.schedule.at(self.complete)
    }

    pub fn milestone_s(&self, name: &str) -> Option<f64> {
        self.milestones.get(name).map(|e| self.schedule.at(*e))
    }

    /// The critical chain: what the install's end waited for, back to the start.
    pub fn critical_chain(&self) -> Vec<(String, f64)> {
        self.schedule
            .chain(self.complete)
            .into_iter()
            .map(|e| (e.what.clone(), e.at))
            .collect()
    }
}

/// Both bounds.
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    pub dag: Bound,
    pub step_ordered: Bound,
}

/// Computes both bounds for `shape` with `timing`.
pub(crate) fn compute(shape: &WorldShape, timing: &dyn Timing) -> Bounds {
    let installer_order: Vec<usize> = (0..shape.servers.len()).collect();
    // Orders wait for write slots only beyond the first window; which server gets which slot
    // then matters, and the ideal installer may pick: the installer's own order, or the
    // servers with the longest way to an installed node first (control planes first or not).
    let mut candidates = vec![installer_order.clone()];
    if shape.writes_before_orders + shape.servers.len() > shape.writes_per_window as usize {
        let boot = |i: usize| {
            let h = &shape.servers[i].hostname;
            [
                Phase::StartingDeploy,
                Phase::Deploying,
                Phase::TalosBoot,
                Phase::TalosInstall,
                Phase::KubeletStart,
            ]
            .iter()
            .map(|p| timing.modelled_s(*p, h))
            .sum::<f64>()
        };
        let mut longest = installer_order.clone();
        longest.sort_by(|a, b| boot(*b).total_cmp(&boot(*a)));
        let mut cps_first = longest.clone();
        cps_first.sort_by_key(|i| !shape.servers[*i].control_plane);
        candidates.push(longest);
        candidates.push(cps_first);
    }
    let dag = candidates
        .iter()
        .map(|order| dag(shape, timing, order))
        .min_by(|a, b| a.complete_s().total_cmp(&b.complete_s()))
        .unwrap_or_else(|| dag(shape, timing, &installer_order));
    Bounds {
        dag,
        step_ordered: step_ordered(shape, timing),
    }
}

/// When the `k`-th write (0-based) of an installer that writes as fast as the limit allows
/// goes out: `limit` writes in any `window` seconds, so write k waits for write k − limit to
/// leave the window.
pub(crate) fn write_slot(k: usize, limit: u32, window_s: f64) -> f64 {
    (k / limit.max(1) as usize) as f64 * window_s
}

/// The servers' Latitude and maintenance-mode events, shared by both bounds.
struct Machines {
    orders: Vec<Ev>,
    maintenance: Vec<Ev>,
}

fn order_and_boot(
    s: &mut Schedule,
    start: Ev,
    shape: &WorldShape,
    timing: &dyn Timing,
    order: &[usize],
) -> Machines {
    let n = shape.servers.len();
    let mut orders = vec![start; n];
    let mut maintenance = vec![start; n];
    for (k, &i) in order.iter().enumerate() {
        let host = &shape.servers[i].hostname;
        let slot = write_slot(
            shape.writes_before_orders + k,
            shape.writes_per_window,
            shape.window_s,
        );
        orders[i] = s.after(format!("{host}: ordered"), &[start], slot);
        let boot = timing.modelled_s(Phase::StartingDeploy, host)
            + timing.modelled_s(Phase::Deploying, host)
            + timing.modelled_s(Phase::TalosBoot, host);
        maintenance[i] = s.after(
            format!("{host}: Talos answers in maintenance mode"),
            &[orders[i]],
            boot,
        );
    }
    Machines {
        orders,
        maintenance,
    }
}

/// How a DaemonSet's pods and the Nodes' readiness follow the Nodes' registrations.
struct DaemonSetReady {
    /// When it first has ready pods.
    first: Ev,
    /// When each Node (same order as the registrations) turns Ready.
    nodes: Vec<Ev>,
}

/// The lab's rule (`controllers::workloads`): a DaemonSet created at `created` rolls out
/// `rollout` after its generation can schedule *for the current number of Nodes*; a Node
/// registering resets it (its desired count changes), and a Node registering while the CNI
/// DaemonSet has ready pods is Ready at once. So with registrations R1 ≤ … ≤ Rn, it is ready at
/// Dk = max(created, Rk) + rollout if Dk ≤ Rk+1; the Nodes waiting then turn Ready.
fn daemonset(
    s: &mut Schedule,
    name: &str,
    created: Ev,
    registrations: &[Ev],
    rollout: f64,
) -> DaemonSetReady {
    let mut sorted: Vec<usize> = (0..registrations.len()).collect();
    sorted.sort_by(|a, b| s.at(registrations[*a]).total_cmp(&s.at(registrations[*b])));
    let mut nodes = vec![created; registrations.len()];
    let mut first = None;
    let mut ready_now = false;
    let mut waiting = Vec::new();
    for (k, &i) in sorted.iter().enumerate() {
        let registered = registrations[i];
        if ready_now {
            nodes[i] = registered;
        } else {
            waiting.push(i);
        }
        let ready = s.after(
            format!("{name} rolled out on {} Node(s)", k + 1),
            &[created, registered],
            rollout,
        );
        let next = sorted.get(k + 1).map(|j| s.at(registrations[*j]));
        ready_now = next.is_none_or(|next| s.at(ready) <= next);
        if ready_now {
            first.get_or_insert(ready);
            for w in waiting.drain(..) {
                nodes[w] = ready;
            }
        }
    }
    DaemonSetReady {
        first: first.unwrap_or(created),
        nodes,
    }
}

/// The Argo CD simulation's inputs and what it found out.
struct Argo<'a> {
    timing: &'a dyn Timing,
    /// The application controller is ready (its StatefulSet rolled out).
    controller: Ev,
    /// Some Node is Ready (pods that are not host-network can schedule).
    schedulable: Ev,
    registrations: &'a [Ev],
    /// Healthy events by Application name, and by chart.
    healthy: BTreeMap<String, Ev>,
    charts: BTreeMap<String, Ev>,
}

impl Argo<'_> {
    /// Syncs `app`, created at `created` (and free to start once `blockers` are Healthy: its
    /// siblings of lower waves); returns when it is Healthy (`controllers::argocd::process`).
    fn sync(&mut self, s: &mut Schedule, app: &AppShape, created: Ev, blockers: &[Ev]) -> Ev {
        let name = &app.name;
        let mut deps = vec![created, self.controller];
        deps.extend_from_slice(blockers);
        let start = s.after(format!("Application {name}: sync starts"), &deps, 0.0);
        let healthy = match &app.content {
            // Without manifests (or with none in its directory) one wait, named after the app.
            AppContent::Trivial | AppContent::Unloadable(_) => s.after(
                format!("Application {name}: Healthy"),
                &[start],
                self.timing
                    .modelled_s(Phase::ArgocdSync, &subject::app(name)),
            ),
            AppContent::Waves(waves) if waves.is_empty() => s.after(
                format!("Application {name}: Healthy"),
                &[start],
                self.timing
                    .modelled_s(Phase::ArgocdSync, &subject::app(name)),
            ),
            AppContent::Waves(waves) => {
                // Wave i is applied `argocd_sync` after wave i − 1 is healthy; the Application
                // is Synced `argocd_sync` after its last wave is.
                let mut previous = start;
                for (index, wave) in waves.iter().enumerate() {
                    let applied = s.after(
                        format!("Application {name}: wave {} applied", wave.wave),
                        &[previous],
                        self.timing
                            .modelled_s(Phase::ArgocdSync, &subject::app_wave(name, index)),
                    );
                    let mut healths = vec![applied];
                    let mut siblings: Vec<(i64, Ev)> = Vec::new();
                    for child in &wave.objects {
                        let health = match child {
                            Child::App(child) => {
                                let blockers: Vec<Ev> = siblings
                                    .iter()
                                    .filter(|(w, _)| *w < child.wave)
                                    .map(|(_, e)| *e)
                                    .collect();
                                let h = self.sync(s, child, applied, &blockers);
                                siblings.push((child.wave, h));
                                h
                            }
                            Child::Rollout(subject) => s.after(
                                format!("{subject} rolled out"),
                                &[applied, self.schedulable],
                                self.timing.modelled_s(Phase::WorkloadRollout, subject),
                            ),
                            Child::DaemonSet(subject) => {
                                let registrations = self.registrations.to_vec();
                                daemonset(
                                    s,
                                    subject,
                                    applied,
                                    &registrations,
                                    self.timing.modelled_s(Phase::WorkloadRollout, subject),
                                )
                                .first
                            }
                            Child::Job(subject) => s.after(
                                format!("Job {subject} complete"),
                                &[applied, self.schedulable],
                                self.timing.modelled_s(Phase::JobRun, subject),
                            ),
                            Child::Instant => applied,
                        };
                        healths.push(health);
                    }
                    previous = s.after(
                        format!("Application {name}: wave {} healthy", wave.wave),
                        &healths,
                        0.0,
                    );
                }
                s.after(
                    format!("Application {name}: Healthy"),
                    &[previous],
                    self.timing
                        .modelled_s(Phase::ArgocdSync, &subject::app_wave(name, waves.len())),
                )
            }
        };
        self.healthy.insert(name.clone(), healthy);
        match &app.chart {
            Some(chart) => self.charts.entry(chart.clone()).or_insert(healthy),
            None => self.charts.entry(name.clone()).or_insert(healthy),
        };
        healthy
    }
}

/// The Helm-installed objects the installer waits for, and when they are ready.
struct Platform {
    cilium_job: Ev,
    all_ready: Ev,
    local_path_job: Ev,
    local_path: Ev,
    argocd_job: Ev,
    argocd_ready: Ev,
    controller: Ev,
    first_ready: Ev,
}

/// When the install Jobs of steps 15 and 16 are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gating {
    /// As soon as the API answers (the DAG bound).
    ApiUp,
    /// When the previous step is done (the step-ordered bound): local-path once every Node is
    /// Ready (steps 13–14), Argo CD once local-path's Job completed (step 15; its rollout is
    /// waited for at the start of step 19).
    Steps,
}

/// Everything from the Cilium Job's creation at `cilium_at` to Argo CD being ready.
fn platform(
    s: &mut Schedule,
    shape: &WorldShape,
    timing: &dyn Timing,
    registrations: &[Ev],
    cilium_at: Ev,
    gating: Gating,
) -> Platform {
    // The Cilium Job is host-network: it schedules once any Node exists.
    let first_registered = s.nth_earliest(registrations, 1).unwrap_or(cilium_at);
    let cilium_job = s.after(
        format!("Job {} complete (Cilium installed)", shape.cilium_job),
        &[cilium_at, first_registered],
        timing.modelled_s(Phase::JobRun, &shape.cilium_job),
    );
    let cilium = "kube-system/cilium";
    let ds = daemonset(
        s,
        cilium,
        cilium_job,
        registrations,
        timing.modelled_s(Phase::WorkloadRollout, cilium),
    );
    let all_ready = s.latest("every Node Ready", &ds.nodes);
    // Other pods need a Ready Node.
    let lp_at = match gating {
        Gating::ApiUp => cilium_at,
        Gating::Steps => all_ready,
    };
    let lp_job = s.after(
        format!("Job {} complete", shape.local_path_job),
        &[lp_at, ds.first],
        timing.modelled_s(Phase::JobRun, &shape.local_path_job),
    );
    let lp_subject = "local-path-storage/local-path-provisioner";
    let local_path = s.after(
        format!("{lp_subject} available (StorageClass local-path exists)"),
        &[lp_job, ds.first],
        timing.modelled_s(Phase::WorkloadRollout, lp_subject),
    );
    let argo_at = match gating {
        Gating::ApiUp => cilium_at,
        Gating::Steps => lp_job,
    };
    let argocd_job = s.after(
        format!(
            "Job {} complete (Argo CD CRDs established)",
            shape.argocd_job
        ),
        &[argo_at, ds.first],
        timing.modelled_s(Phase::JobRun, &shape.argocd_job),
    );
    let rollout = |s: &mut Schedule, name: &str| {
        let subject = format!("argocd/{name}");
        let d = timing.modelled_s(Phase::WorkloadRollout, &subject);
        s.after(format!("{subject} rolled out"), &[argocd_job, ds.first], d)
    };
    let server = rollout(s, "argocd-server");
    let repo = rollout(s, "argocd-repo-server");
    let controller = rollout(s, "argocd-application-controller");
    let argocd_ready = s.after(
        "Argo CD ready (CRDs, server, repo server, application controller)",
        &[argocd_job, server, repo, controller],
        0.0,
    );
    Platform {
        cilium_job,
        all_ready,
        local_path_job: lp_job,
        local_path,
        argocd_job,
        argocd_ready,
        controller,
        first_ready: ds.first,
    }
}

/// The Kubernetes and Talos events of a node, shared by both bounds.
struct Nodes {
    applied: Vec<Ev>,
    installed: Vec<Ev>,
    registered: Vec<Ev>,
    bootstrapped: Ev,
}

/// The zero-latency, fully parallel installer with the servers ordered in `order`.
fn dag(shape: &WorldShape, timing: &dyn Timing, order: &[usize]) -> Bound {
    let (mut s, start) = Schedule::new();
    let n = shape.servers.len();
    let m = order_and_boot(&mut s, start, shape, timing, order);
    let mut milestones = BTreeMap::new();
    let last_order = s.latest("last order answered", &m.orders);
    milestones.insert("last_order", last_order);
    milestones.insert(
        "all_talos_maintenance",
        s.latest("every node in maintenance mode", &m.maintenance),
    );
    // The machine configs carry every node's address (certSANs), known once every order has
    // been answered; each is applied the moment its node answers in maintenance mode.
    let configs = s.after(
        "machine configs generated (every address known)",
        &[last_order],
        0.0,
    );
    let mut applied = Vec::with_capacity(n);
    let mut installed = Vec::with_capacity(n);
    for (i, server) in shape.servers.iter().enumerate() {
        let host = &server.hostname;
        let a = s.after(
            format!("{host}: config applied"),
            &[m.maintenance[i], configs],
            0.0,
        );
        applied.push(a);
        installed.push(talos_installed(&mut s, shape, timing, i, a));
    }
    let first = &shape.servers[shape.bootstrap].hostname;
    let bootstrapped = s.after(
        format!("etcd bootstrapped on {first}"),
        &[installed[shape.bootstrap]],
        timing.modelled_s(Phase::BootstrapReady, first),
    );
    let nodes = register(&mut s, shape, timing, applied, installed, bootstrapped);
    finish(&mut s, shape, timing, nodes, milestones)
}

/// Kubelets register `kubelet_start` after both their node and the cluster are up.
fn register(
    s: &mut Schedule,
    shape: &WorldShape,
    timing: &dyn Timing,
    applied: Vec<Ev>,
    installed: Vec<Ev>,
    bootstrapped: Ev,
) -> Nodes {
    let registered = shape
        .servers
        .iter()
        .enumerate()
        .map(|(i, server)| {
            let host = &server.hostname;
            s.after(
                format!("{host}: Node registered"),
                &[installed[i], bootstrapped],
                timing.modelled_s(Phase::KubeletStart, host),
            )
        })
        .collect();
    Nodes {
        applied,
        installed,
        registered,
        bootstrapped,
    }
}

/// The Kubernetes part of the DAG bound — objects created as soon as the API answers — with the milestones of the Talos part already in `milestones`.
fn finish(
    s: &mut Schedule,
    shape: &WorldShape,
    timing: &dyn Timing,
    nodes: Nodes,
    mut milestones: BTreeMap<&'static str, Ev>,
) -> Bound {
    let api = nodes.bootstrapped;
    milestones.insert(
        "all_configs_applied",
        s.latest("every config applied", &nodes.applied),
    );
    // A worker answers over mutual TLS once a control plane's config is known (trustd).
    let first_cp_applied = shape
        .servers
        .iter()
        .enumerate()
        .filter(|(_, sv)| sv.control_plane)
        .map(|(i, _)| nodes.applied[i])
        .min_by(|a, b| s.at(*a).total_cmp(&s.at(*b)))
        .unwrap_or(api);
    let observable: Vec<Ev> = nodes
        .installed
        .iter()
        .zip(&shape.servers)
        .map(|(e, sv)| {
            if sv.control_plane {
                *e
            } else {
                s.after(
                    format!("{}: answers over mutual TLS", sv.hostname),
                    &[*e, first_cp_applied],
                    0.0,
                )
            }
        })
        .collect();
    let all_installed = s.latest("every node installed", &observable);
    milestones.insert("all_installed", all_installed);
    milestones.insert("bootstrapped", nodes.bootstrapped);
    milestones.insert("kubernetes_api_up", api);
    let all_registered = s.latest("every Node registered", &nodes.registered);
    milestones.insert("all_nodes_registered", all_registered);

    let p = platform(s, shape, timing, &nodes.registered, api, Gating::ApiUp);
    milestones.insert("cilium_installed", p.cilium_job);
    milestones.insert("all_nodes_ready", p.all_ready);
    milestones.insert("local_path_ready", p.local_path);
    milestones.insert("argocd_ready", p.argocd_ready);

    // The root Application can be applied once its CRD exists.
    let mut argo = Argo {
        timing,
        controller: p.controller,
        schedulable: p.first_ready,
        registrations: &nodes.registered,
        healthy: BTreeMap::new(),
        charts: BTreeMap::new(),
    };
    let root = argo.sync(s, &shape.root, p.argocd_job, &[]);
    milestones.insert("gitops_synced", root);

    let mut ends = vec![
        all_installed,
        all_registered,
        p.all_ready,
        p.local_path,
        p.argocd_ready,
        root,
    ];
    if let Some(openebs) = argo.charts.get("openebs").copied() {
        milestones.insert("openebs_healthy", openebs);
        // DiskPools can be created once their CRD is served (openebs Healthy) and their Node
        // exists; the test claim binds once `replicas` pools are Online.
        let pools = pools_online(s, shape, timing, &nodes, openebs, None);
        let pvc_ready = s.nth_earliest(&pools, shape.replicas).unwrap_or(openebs);
        let bound = s.after(
            format!("PVC {} Bound", super::shape::TEST_CLAIM),
            &[openebs, pvc_ready],
            timing.modelled_s(Phase::PvcBind, &subject::claim(super::shape::TEST_CLAIM)),
        );
        let mut all = pools.clone();
        all.push(bound);
        let storage = s.latest("storage ready (pools Online, test claim Bound)", &all);
        milestones.insert("storage_ready", storage);
        ends.push(storage);
    }
    if let Some(vault) = argo.charts.get("vault").copied() {
        milestones.insert("vault_ready", vault);
        if shape.init_vault {
            ends.push(vault);
        }
    }
    let complete = s.after("install complete", &ends, 0.0);
    milestones.insert("complete", complete);
    Bound {
        schedule: std::mem::take(s),
        milestones,
        complete,
        steps: Vec::new(),
    }
}

/// Each DiskPool Online: created at the latest of `created` (if any), openebs Healthy and its
/// Node registered, then `diskpool_create`.
fn pools_online(
    s: &mut Schedule,
    shape: &WorldShape,
    timing: &dyn Timing,
    nodes: &Nodes,
    openebs: Ev,
    created: Option<Ev>,
) -> Vec<Ev> {
    shape
        .pools
        .iter()
        .map(|(pool, node)| {
            let mut deps = vec![openebs];
            deps.extend(created);
            if let Some(i) = shape.servers.iter().position(|sv| &sv.hostname == node) {
                deps.push(nodes.registered[i]);
            }
            s.after(
                format!("DiskPool {pool} Online"),
                &deps,
                timing.modelled_s(Phase::DiskPoolCreate, &subject::pool(pool)),
            )
        })
        .collect()
}

/// The zero-latency installer that runs the 22 steps one after the other, each doing its
/// per-node or per-object work in parallel and ending when its completion condition holds.
/// Server `i` installed (normal mode) `talos_install` after its config was applied.
fn talos_installed(
    s: &mut Schedule,
    shape: &WorldShape,
    timing: &dyn Timing,
    i: usize,
    applied: Ev,
) -> Ev {
    let host = &shape.servers[i].hostname;
    s.after(
        format!("{host}: Talos installed (normal mode)"),
        &[applied],
        timing.modelled_s(Phase::TalosInstall, host),
    )
}

fn step_ordered(shape: &WorldShape, timing: &dyn Timing) -> Bound {
    let (mut s, start) = Schedule::new();
    let s = &mut s;
    let n = shape.servers.len();
    let order: Vec<usize> = (0..n).collect();
    let mut steps: Vec<(&'static str, Ev)> = Vec::new();
    let mut milestones = BTreeMap::new();
    let mut step = |s: &mut Schedule, name: &'static str, deps: &[Ev]| {
        let e = s.after(format!("step {name} done"), deps, 0.0);
        steps.push((name, e));
        e
    };

    let t1 = step(s, "ValidatingPrerequisites", &[start]);
    let m = order_and_boot(s, t1, shape, timing, &order);
    let mut d = m.orders.clone();
    d.push(t1);
    let t2 = step(s, "CreatingServers", &d);
    milestones.insert("last_order", t2);
    // A server is ready when Latitude says `on`, or says `deploying` while Talos already
    // answers on :50000 (the installer checks the port): the moment Talos is up.
    let mut d = m.maintenance.clone();
    d.push(t2);
    let t3 = step(s, "WaitingServersReady", &d);
    let t4 = step(s, "BootingTalos", &[t3]);
    let mut d = m.maintenance.clone();
    d.push(t4);
    let t5 = step(s, "WaitingTalosMaintenance", &d);
    milestones.insert("all_talos_maintenance", t5);
    let t6 = step(s, "GeneratingConfigs", &[t5]);

    let mut applied = vec![t6; n];
    let mut installed = vec![t6; n];
    let cps: Vec<usize> = (0..n).filter(|i| shape.servers[*i].control_plane).collect();
    let workers: Vec<usize> = (0..n)
        .filter(|i| !shape.servers[*i].control_plane)
        .collect();
    for &i in &cps {
        let host = &shape.servers[i].hostname;
        applied[i] = s.after(format!("{host}: config applied"), &[t6], 0.0);
    }
    let d: Vec<Ev> = cps.iter().map(|i| applied[*i]).chain([t6]).collect();
    let t7 = step(s, "ApplyingCPConfig", &d);
    for &i in &cps {
        installed[i] = talos_installed(s, shape, timing, i, applied[i]);
    }
    let d: Vec<Ev> = cps.iter().map(|i| installed[*i]).chain([t7]).collect();
    let t8 = step(s, "WaitingCPInstall", &d);
    let first = &shape.servers[shape.bootstrap].hostname;
    let bootstrap_ready = s.after(
        format!("{first}: accepts Bootstrap"),
        &[installed[shape.bootstrap]],
        timing.modelled_s(Phase::BootstrapReady, first),
    );
    let t9 = step(s, "Bootstrapping", &[t8, bootstrap_ready]);
    milestones.insert("bootstrapped", t9);
    // Every control plane is an etcd member (all installed by step 8); the API is up at once.
    let t10 = step(s, "WaitingKubernetes", &[t9]);
    milestones.insert("kubernetes_api_up", t10);
    // The installer applies the workers' configs in the background once step 7 is done
    // (docs/state-machine.md, "Overlap"); step 11 then only confirms them.
    for &i in &workers {
        let host = &shape.servers[i].hostname;
        applied[i] = s.after(format!("{host}: config applied (early)"), &[t7], 0.0);
    }
    let d: Vec<Ev> = workers.iter().map(|i| applied[*i]).chain([t10]).collect();
    let t11 = step(s, "ApplyingWorkerConfig", &d);
    for &i in &workers {
        installed[i] = talos_installed(s, shape, timing, i, applied[i]);
    }
    milestones.insert(
        "all_configs_applied",
        s.latest("every config applied", &applied),
    );
    let nodes = register(s, shape, timing, applied, installed, t9);
    let all_installed = s.latest("every node installed", &nodes.installed);
    milestones.insert("all_installed", all_installed);
    let mut d = nodes.registered.clone();
    d.extend([all_installed, t11]);
    let t12 = step(s, "WaitingWorkerJoin", &d);
    milestones.insert("all_nodes_registered", t12);

    // Steps 13–16: each install Job is created when the previous step is done.
    let p = platform(s, shape, timing, &nodes.registered, t12, Gating::Steps);
    let t13 = step(s, "DeployingCilium", &[p.all_ready, p.cilium_job]);
    let t14 = step(s, "DeployingBootstrapResources", &[t13]);
    let t15 = step(s, "DeployingLocalPathProvisioner", &[p.local_path_job, t14]);
    let t16 = step(s, "DeployingArgoCD", &[p.argocd_job, t15]);
    milestones.insert("cilium_installed", p.cilium_job);
    milestones.insert("all_nodes_ready", p.all_ready);
    milestones.insert("local_path_ready", p.local_path);
    let t17 = step(s, "WaitingArgoCDReady", &[p.argocd_ready, t16]);
    milestones.insert("argocd_ready", t17);
    let t18 = step(s, "ApplyingAppOfApps", &[t17]);
    let mut argo = Argo {
        timing,
        controller: p.controller,
        schedulable: p.first_ready,
        registrations: &nodes.registered,
        healthy: BTreeMap::new(),
        charts: BTreeMap::new(),
    };
    let root = argo.sync(s, &shape.root, t18, &[]);
    let t19 = step(s, "WaitingGitOpsSync", &[root, t18, p.local_path]);
    milestones.insert("gitops_synced", t19);

    let mut t20 = t19;
    if let Some(openebs) = argo.charts.get("openebs").copied() {
        milestones.insert("openebs_healthy", openebs);
        // Pools are applied, then waited for; the test claim is created after.
        let pools = pools_online(s, shape, timing, &nodes, openebs, Some(t19));
        let online = s.latest("every DiskPool Online", &pools);
        let mut d = vec![online, openebs, t19];
        if let Some(e) = s.nth_earliest(&pools, shape.replicas) {
            d.push(e);
        }
        let bound = s.after(
            format!("PVC {} Bound", super::shape::TEST_CLAIM),
            &d,
            timing.modelled_s(Phase::PvcBind, &subject::claim(super::shape::TEST_CLAIM)),
        );
        t20 = step(s, "ConfiguringStorage", &[bound, t19]);
        milestones.insert("storage_ready", t20);
    } else {
        t20 = step(s, "ConfiguringStorage", &[t20]);
    }
    let t21 = step(s, "ConfiguringKubeconfig", &[t20]);
    let mut d = vec![t21];
    if let Some(vault) = argo.charts.get("vault").copied() {
        milestones.insert("vault_ready", vault);
        if shape.init_vault {
            d.push(vault);
        }
    }
    let t22 = step(s, "Complete", &d);
    milestones.insert("complete", t22);
    Bound {
        schedule: std::mem::take(s),
        milestones,
        complete: t22,
        steps,
    }
}
