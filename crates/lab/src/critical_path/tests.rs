//! Hand-computed bounds (jitter 0, the default timeline), rate-limit pacing, DAG ≤ step-ordered
//! on jittered worlds, and a late worker becoming the critical chain.

use std::collections::HashMap;

use super::model::{self, Bounds, Timing, write_slot};
use super::shape::{self, AppContent, AppShape, Child, LiveServer, Wave, WorldShape};
use crate::config::LabConfig;
use crate::durations::{Durations, Phase};

fn config(seed: u64, jitter: f64) -> LabConfig {
    LabConfig {
        seed,
        jitter,
        ..LabConfig::default()
    }
}

fn trivial(name: &str, wave: i64, chart: Option<&str>) -> Child {
    Child::App(AppShape {
        name: name.into(),
        wave,
        chart: chart.map(str::to_string),
        content: AppContent::Trivial,
    })
}

/// A small world: `cps` control planes, `workers` workers, a root whose first wave is the
/// openebs chart and second the vault chart.
fn small(cps: usize, workers: usize) -> WorldShape {
    let mut servers = Vec::new();
    for i in 1..=cps {
        servers.push(shape::ServerShape {
            hostname: format!("a-cp-{i}"),
            control_plane: true,
        });
    }
    for i in 1..=workers {
        servers.push(shape::ServerShape {
            hostname: format!("a-worker-{i}"),
            control_plane: false,
        });
    }
    let pools: Vec<(String, String)> = servers
        .iter()
        .filter(|s| s.control_plane == (workers == 0))
        .map(|s| (format!("pool-{}", s.hostname), s.hostname.clone()))
        .collect();
    WorldShape {
        cluster: "a".into(),
        servers,
        bootstrap: 0,
        writes_per_window: 20,
        window_s: 60.0,
        writes_before_orders: 0,
        cilium_job: "kube-system/helm-install-cilium-0".into(),
        local_path_job: "kube-system/helm-install-local-path-provisioner-0".into(),
        argocd_job: "kube-system/helm-install-argocd-0".into(),
        root: AppShape {
            name: "cto-platform".into(),
            wave: 0,
            chart: None,
            content: AppContent::Waves(vec![
                Wave {
                    wave: -10,
                    objects: vec![trivial("openebs", -10, Some("openebs"))],
                },
                Wave {
                    wave: -5,
                    objects: vec![trivial("vault", -5, Some("vault")), Child::Instant],
                },
            ]),
        },
        replicas: 2.min(pools.len()),
        pools,
        init_vault: false,
        degraded: Vec::new(),
    }
}

fn milestone(bounds: &Bounds, name: &str) -> (f64, f64) {
    (
        bounds.dag.milestone_s(name).unwrap(),
        bounds.step_ordered.milestone_s(name).unwrap(),
    )
}

#[test]
fn one_control_plane_and_one_worker_without_jitter() {
    let durations = Durations::new(&config(0, 0.0));
    let bounds = model::compute(&small(1, 1), &durations);
    // DAG: both ordered at 0; Talos at 20 + 280 + 90 = 390, configs applied then, installed
    // at 510; bootstrap 520 (API up); both kubelets register at max(510, 520) + 30 = 550. The
    // Cilium Job runs 550 → 580, its DaemonSet rolls out 580 → 600 (Nodes Ready). local-path
    // and Argo CD Jobs 600 → 630, their workloads 630 → 650. The root syncs from 650: wave
    // -10 applied 660, openebs Healthy 670; wave -5 applied 680, vault Healthy 690; root
    // Healthy 700. The pool: 670 + 5 = 675, the claim 675 + 3 = 678.
    let expect = [
        ("last_order", 0.0, 0.0),
        ("all_talos_maintenance", 390.0, 390.0),
        ("all_configs_applied", 390.0, 390.0),
        ("all_installed", 510.0, 510.0),
        ("bootstrapped", 520.0, 520.0),
        ("kubernetes_api_up", 520.0, 520.0),
        ("all_nodes_registered", 550.0, 550.0),
        ("cilium_installed", 580.0, 580.0),
        ("all_nodes_ready", 600.0, 600.0),
        ("local_path_ready", 650.0, 650.0),
        ("argocd_ready", 650.0, 680.0),
        ("openebs_healthy", 670.0, 700.0),
        ("vault_ready", 690.0, 720.0),
        ("gitops_synced", 700.0, 730.0),
        ("storage_ready", 678.0, 738.0),
        ("complete", 700.0, 738.0),
    ];
    // Step-ordered: the worker's config is applied right after step 7 (the early task, 390):
    // installed 510, both registered 550 (after the bootstrap, 520); Cilium is created after
    // step 12, 550 → 580 → 600; local-path 600 → 630 (step 15 ends with its Job) → 650; Argo
    // CD 630 → 660 → 680; root 680: 690, openebs 700, 710, vault 720, root 730; pools applied
    // at 730 → 735, claim 738.
    for (name, dag, ordered) in expect {
        assert_eq!(milestone(&bounds, name), (dag, ordered), "{name}");
    }
    assert_eq!(bounds.dag.complete_s(), 700.0);
    assert_eq!(bounds.step_ordered.complete_s(), 738.0);
    let steps: Vec<(&str, f64)> = bounds
        .step_ordered
        .steps
        .iter()
        .map(|(n, e)| (*n, bounds.step_ordered.schedule.at(*e)))
        .collect();
    assert_eq!(steps.len(), 22);
    assert_eq!(steps[7], ("WaitingCPInstall", 510.0));
    assert_eq!(steps[11], ("WaitingWorkerJoin", 550.0));
    assert_eq!(steps[14], ("DeployingLocalPathProvisioner", 630.0));
    assert_eq!(steps[21], ("Complete", 738.0));
    // The DAG's end waits for the GitOps sync, back to the control plane's order.
    let chain = bounds.dag.critical_chain();
    assert_eq!(chain.first().map(|(_, t)| *t), Some(0.0));
    assert!(
        chain
            .iter()
            .any(|(e, _)| e == "Application cto-platform: Healthy"),
        "{chain:?}"
    );
    assert!(
        chain
            .iter()
            .any(|(e, _)| e == "a-cp-1: Talos installed (normal mode)"),
        "{chain:?}"
    );
}

#[test]
fn vault_counts_when_the_run_initialises_it() {
    let durations = Durations::new(&config(0, 0.0));
    let mut world = small(1, 0);
    // The root's last wave is slower than Vault: nothing changes.
    world.init_vault = true;
    let bounds = model::compute(&world, &durations);
    assert_eq!(
        bounds.dag.complete_s(),
        bounds.dag.milestone_s("gitops_synced").unwrap()
    );
}

#[test]
fn orders_are_paced_by_the_write_budget() {
    assert_eq!(write_slot(0, 20, 60.0), 0.0);
    assert_eq!(write_slot(19, 20, 60.0), 0.0);
    assert_eq!(write_slot(20, 20, 60.0), 60.0);
    let durations = Durations::new(&config(0, 0.0));
    for (n, last) in [(20, 0.0), (21, 60.0), (50, 120.0), (200, 540.0)] {
        let bounds = model::compute(&small(3, n - 3), &durations);
        assert_eq!(milestone(&bounds, "last_order"), (last, last), "N = {n}");
        // The last node in maintenance mode: ordered at the last slot, up 390 s later.
        assert_eq!(
            milestone(&bounds, "all_talos_maintenance"),
            (last + 390.0, last + 390.0),
            "N = {n}"
        );
    }
    // Another write before the orders (an SSH key) pushes the 20th order into the next window.
    let mut world = small(1, 19);
    world.writes_before_orders = 1;
    let bounds = model::compute(&world, &durations);
    assert_eq!(milestone(&bounds, "last_order"), (60.0, 60.0));
}

/// A server not configured yet: its role comes from its hostname.
fn live(hostname: &str) -> LiveServer {
    LiveServer {
        hostname: hostname.into(),
        ip: String::new(),
        config: None,
        bootstrapped: false,
    }
}

/// A world as the lab sees it before the cluster exists: the installer's hostnames and the
/// embedded GitOps tree (standard profile).
fn from_hostnames(cps: usize, workers: usize, config: &LabConfig) -> WorldShape {
    let mut servers = Vec::new();
    // Listed out of order: the installer's order is rebuilt from roles and indices.
    for i in (1..=workers).rev() {
        servers.push(live(&format!("b-worker-{i}")));
    }
    for i in 1..=cps {
        servers.push(live(&format!("b-cp-{i}")));
    }
    shape::build(config, "b".into(), servers, &[]).unwrap()
}

#[test]
fn the_shape_follows_the_installer_and_the_gitops_tree() {
    let world = from_hostnames(3, 2, &LabConfig::default());
    let names: Vec<&str> = world.servers.iter().map(|s| s.hostname.as_str()).collect();
    assert_eq!(
        names,
        ["b-cp-1", "b-cp-2", "b-cp-3", "b-worker-1", "b-worker-2"]
    );
    assert_eq!(world.bootstrap, 0);
    assert_eq!(world.control_planes(), 3);
    assert_eq!(
        world.pools,
        [
            ("pool-b-worker-1".to_string(), "b-worker-1".to_string()),
            ("pool-b-worker-2".to_string(), "b-worker-2".to_string())
        ]
    );
    assert_eq!(world.replicas, 2);
    assert_eq!(world.root.name, "cto-platform");
    assert!(world.root.contains("openebs") && world.root.contains("vault"));
    assert!(world.root.contains("platform-storage"));
    // Root waves: the AppProject, then one per category wave; each category its own waves.
    assert!(world.root.waves() > 4, "{}", world.root.waves());
    assert!(world.root.count() > 10, "{}", world.root.count());
    let summary = world.summary();
    assert_eq!(summary["control_planes"], 3);
    assert_eq!(summary["workers"], 2);
    // No control plane at all is no cluster.
    let err = shape::build(
        &LabConfig::default(),
        "c".into(),
        vec![live("c-worker-1")],
        &[],
    )
    .unwrap_err();
    assert!(err.contains("control plane"), "{err}");
}

#[test]
fn the_dag_bound_never_exceeds_the_step_ordered_bound() {
    for seed in 0..12u64 {
        for (cps, workers) in [(1, 0), (1, 1), (1, 3), (3, 0), (3, 2), (3, 30)] {
            let config = config(seed, [0.0, 0.2, 0.5, 0.9][seed as usize % 4]);
            let durations = Durations::new(&config);
            let world = from_hostnames(cps, workers, &config);
            let bounds = model::compute(&world, &durations);
            let (dag, ordered) = (bounds.dag.complete_s(), bounds.step_ordered.complete_s());
            assert!(
                dag <= ordered && dag > 0.0,
                "seed {seed}, {cps}+{workers}: dag {dag} > step-ordered {ordered}"
            );
            if cps + workers <= 20 {
                // One write window: the same order, so every milestone comes no later.
                for name in model::MILESTONES {
                    if let (Some(d), Some(o)) = (
                        bounds.dag.milestone_s(name),
                        bounds.step_ordered.milestone_s(name),
                    ) {
                        assert!(d <= o, "seed {seed}, {cps}+{workers}, {name}: {d} > {o}");
                    }
                }
            }
        }
    }
}

/// Durations with some (phase, subject) pairs overridden.
struct Override {
    base: Durations,
    set: HashMap<(Phase, String), f64>,
}

impl Timing for Override {
    fn modelled_s(&self, phase: Phase, subject: &str) -> f64 {
        match self.set.get(&(phase, subject.to_string())) {
            Some(v) => *v,
            None => self.base.modelled_s(phase, subject),
        }
    }
}

#[test]
fn a_worker_that_boots_late_is_the_critical_chain() {
    let timing = Override {
        base: Durations::new(&config(0, 0.0)),
        set: HashMap::from([((Phase::TalosBoot, "a-worker-2".to_string()), 2000.0)]),
    };
    let bounds = model::compute(&small(1, 2), &timing);
    // a-worker-2: maintenance at 20 + 280 + 2000 = 2300, installed 2420, registered 2450
    // (Ready at once: the CNI runs since 600), its pool Online at 2455, and the claim (2
    // replicas) Bound at 2458. Everything else is done by 700.
    assert_eq!(bounds.dag.milestone_s("all_nodes_ready"), Some(2450.0));
    assert_eq!(bounds.dag.milestone_s("gitops_synced"), Some(700.0));
    assert_eq!(bounds.dag.milestone_s("storage_ready"), Some(2458.0));
    assert_eq!(bounds.dag.complete_s(), 2458.0);
    let chain: Vec<String> = bounds
        .dag
        .critical_chain()
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    for wanted in [
        "a-worker-2: ordered",
        "a-worker-2: Talos answers in maintenance mode",
        "a-worker-2: Node registered",
        "DiskPool pool-a-worker-2 Online",
        "install complete",
    ] {
        assert!(chain.iter().any(|e| e == wanted), "{wanted} in {chain:?}");
    }
    assert!(!chain.iter().any(|e| e.contains("a-cp-1")), "{chain:?}");
    // Step-ordered, the late worker holds up every step from WaitingServersReady on: the
    // rest of the install takes what it took after 390 in the first test (738 − 390).
    assert_eq!(bounds.step_ordered.complete_s(), 2300.0 + 348.0);
}
