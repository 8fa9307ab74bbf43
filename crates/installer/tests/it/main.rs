//! The installer against an in-memory provider: every step run twice changes nothing the second
//! time, intent is on disk before each billable call, lost answers never become second servers,
//! a server that merely has one of the cluster's hostnames is never taken over, and the
//! replacement cap holds over the install's life.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use installer::checkpoint::{CheckpointStore, OrderState};
use installer::events::{
    AlwaysApprove, Approval, ApprovalFuture, Approver, Event, OrderSummary, RecordingReporter,
};
use installer::spec::InstallRequest;
use installer::{InstallError, Orchestrator, RunOptions, RunOutcome, Step, StepError};
use metal::provider::{
    Deleted, Machine, MachineOrder, MachineState, PlanOffer, ProjectInfo, Provider, ProviderError,
    ProviderErrorKind, ProviderResult, SiteOffer, StockLevel, Tag,
};

/// What the fake provider holds and counts.
#[derive(Debug, Default, Clone, PartialEq)]
struct World {
    machines: BTreeMap<String, Machine>,
    creates: usize,
    reinstalls: usize,
    deletes: usize,
    tags: Vec<Tag>,
}

#[derive(Default)]
struct FakeProvider {
    world: Mutex<World>,
    next_id: Mutex<u32>,
    /// Create the server but answer as if the answer was lost, this many times.
    lose_create_answers: Mutex<usize>,
    /// Where the checkpoint lives, to check the intent is on disk at order time.
    checkpoint_path: Mutex<Option<PathBuf>>,
    /// Hostnames whose intent was not on disk when they were ordered.
    ordered_without_intent: Mutex<Vec<String>>,
    /// Orders that create a server which then fails its deployment.
    fail_next_orders: Mutex<usize>,
    /// The most servers sharing one hostname ever seen at once.
    max_same_hostname: Mutex<usize>,
}

impl FakeProvider {
    fn snapshot(&self) -> World {
        self.world.lock().unwrap().clone()
    }

    fn add(&self, hostname: &str, os: &str, state: MachineState) -> String {
        let mut n = self.next_id.lock().unwrap();
        *n += 1;
        let id = format!("sv_fake{n}");
        let machine = Machine {
            id: id.clone(),
            hostname: hostname.to_owned(),
            state,
            raw_status: match state {
                MachineState::Ready => "on".into(),
                MachineState::Failed => "failed_deployment".into(),
                _ => "deploying".into(),
            },
            primary_ipv4: Some(Ipv4Addr::new(192, 0, 2, *n as u8)),
            site: Some("MIA2".into()),
            plan: Some("c2-small-x86".into()),
            operating_system: Some(os.to_owned()),
            hourly_usd: Some(0.21),
            tags: Vec::new(),
            created_at: Some(installer::checkpoint::now_rfc3339()),
        };
        self.world
            .lock()
            .unwrap()
            .machines
            .insert(id.clone(), machine);
        id
    }
}

fn offer(slug: &str) -> PlanOffer {
    let site = |site: &str, in_stock: bool| SiteOffer {
        site: site.into(),
        country: "United States".into(),
        in_stock,
        stock_level: StockLevel::High,
        hourly_usd: Some(0.21),
        monthly_usd: Some(146.0),
    };
    PlanOffer {
        slug: slug.into(),
        name: slug.replace('-', "."),
        sites: vec![site("MIA2", true), site("DAL", true), site("ASH", false)],
        drives: Vec::new(),
        ipxe: None,
    }
}

impl Provider for FakeProvider {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn check_project(&self) -> ProviderResult<ProjectInfo> {
        Ok(ProjectInfo {
            id: "proj_fake".into(),
            slug: "fake".into(),
            name: "Fake".into(),
        })
    }

    async fn plan_offers(&self) -> ProviderResult<Vec<PlanOffer>> {
        Ok(vec![offer("c2-small-x86")])
    }

    async fn list_machines(&self) -> ProviderResult<Vec<Machine>> {
        Ok(self
            .world
            .lock()
            .unwrap()
            .machines
            .values()
            .cloned()
            .collect())
    }

    async fn get_machine(&self, id: &str) -> ProviderResult<Option<Machine>> {
        Ok(self.world.lock().unwrap().machines.get(id).cloned())
    }

    async fn create_machine(&self, order: &MachineOrder) -> ProviderResult<Machine> {
        if let Some(path) = self.checkpoint_path.lock().unwrap().clone() {
            let cp: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let record = cp["servers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["hostname"] == order.hostname.as_str())
                .unwrap();
            if record["order"]["state"] != "intended" {
                self.ordered_without_intent
                    .lock()
                    .unwrap()
                    .push(order.hostname.clone());
            }
        }
        assert_eq!(order.site, "MIA2");
        assert!(order.ipxe_url.ends_with("/metal-amd64"));
        let state = {
            let mut fail = self.fail_next_orders.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                MachineState::Failed
            } else {
                MachineState::Ready
            }
        };
        let id = self.add(&order.hostname, "ipxe", state);
        {
            let world = self.world.lock().unwrap();
            let same = world
                .machines
                .values()
                .filter(|m| m.hostname == order.hostname)
                .count();
            let mut max = self.max_same_hostname.lock().unwrap();
            *max = (*max).max(same);
        }
        self.world.lock().unwrap().creates += 1;
        let mut lose = self.lose_create_answers.lock().unwrap();
        if *lose > 0 {
            *lose -= 1;
            return Err(ProviderError::new(
                ProviderErrorKind::Ambiguous,
                "POST /servers answered 502: the order may exist",
            ));
        }
        Ok(self.world.lock().unwrap().machines[&id].clone())
    }

    async fn reinstall_ipxe(
        &self,
        id: &str,
        _hostname: &str,
        _ipxe_url: &str,
    ) -> ProviderResult<()> {
        let mut world = self.world.lock().unwrap();
        world.reinstalls += 1;
        let m = world.machines.get_mut(id).unwrap();
        m.operating_system = Some("ipxe".into());
        m.state = MachineState::Provisioning;
        m.raw_status = "disk_erasing".into();
        Ok(())
    }

    async fn delete_machine(&self, id: &str) -> ProviderResult<Deleted> {
        let mut world = self.world.lock().unwrap();
        world.deletes += 1;
        Ok(match world.machines.remove(id) {
            Some(_) => Deleted::Deleted,
            None => Deleted::AlreadyGone,
        })
    }

    async fn find_tag(&self, name: &str) -> ProviderResult<Option<Tag>> {
        let world = self.world.lock().unwrap();
        Ok(world.tags.iter().find(|t| t.name == name).cloned())
    }

    async fn ensure_tag(&self, name: &str, _description: &str) -> ProviderResult<Tag> {
        let mut world = self.world.lock().unwrap();
        if let Some(t) = world.tags.iter().find(|t| t.name == name) {
            return Ok(t.clone());
        }
        let tag = Tag {
            id: format!("tag_{}", world.tags.len() + 1),
            name: name.to_owned(),
        };
        world.tags.push(tag.clone());
        Ok(tag)
    }

    async fn tag_machine(&self, machine: &Machine, tag_ids: &[String]) -> ProviderResult<()> {
        let id = machine.id.as_str();
        let mut world = self.world.lock().unwrap();
        let known = world.tags.clone();
        let Some(m) = world.machines.get_mut(id) else {
            return Err(ProviderError::new(ProviderErrorKind::NotFound, "no server"));
        };
        for t in tag_ids {
            let tag = known.iter().find(|k| k.id == *t).expect("unknown tag id");
            if !m.has_tag(t) {
                m.tags.push(tag.clone());
            }
        }
        Ok(())
    }

    async fn list_machines_tagged(&self, tag_id: &str) -> ProviderResult<Vec<Machine>> {
        let world = self.world.lock().unwrap();
        Ok(world
            .machines
            .values()
            .filter(|m| m.has_tag(tag_id))
            .cloned()
            .collect())
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: PathBuf,
    provider: Arc<FakeProvider>,
    reporter: Arc<RecordingReporter>,
}

impl Fixture {
    fn new(cluster: &str, nodes: u32) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let spec = InstallRequest {
            cluster_name: cluster.into(),
            nodes,
            control_planes: 1,
            sync_timeout_minutes: 30,
            project: Some("proj_fake".into()),
            // A loopback API URL, as a lab's: step 1 then leaves the GitOps repository to the
            // lab instead of fetching it (these tests have no network).
            api_url: "http://127.0.0.1:9".into(),
            ..Default::default()
        }
        .validate()
        .unwrap();
        drop(CheckpointStore::create(&state, spec).unwrap());
        let provider = Arc::new(FakeProvider::default());
        *provider.checkpoint_path.lock().unwrap() = Some(state.join("checkpoint.json"));
        Fixture {
            _dir: dir,
            state,
            provider,
            reporter: Arc::new(RecordingReporter::default()),
        }
    }

    async fn run_to(&self, step: Step) -> Result<RunOutcome, InstallError> {
        self.run_to_with(step, Arc::new(AlwaysApprove)).await
    }

    async fn run_to_with(
        &self,
        step: Step,
        approver: Arc<dyn Approver>,
    ) -> Result<RunOutcome, InstallError> {
        let store = CheckpointStore::resume(&self.state).unwrap();
        let mut orchestrator = Orchestrator::new(
            Arc::clone(&self.provider),
            store,
            self.reporter.clone(),
            approver,
            RunOptions {
                stop_after: Some(step),
                // A modelled world 100× faster: a `failed_*` status must persist for the
                // modelled replacement window before a server is replaced.
                timings: installer::orchestrator::Timings::default().scaled(0.01),
                ..Default::default()
            },
        );
        orchestrator.run(true).await
    }

    fn forget(&self, step: Step) {
        let mut store = CheckpointStore::resume(&self.state).unwrap();
        store
            .update(|cp| cp.completed.retain(|s| *s != step))
            .unwrap();
    }

    fn checkpoint(&self) -> installer::checkpoint::Checkpoint {
        CheckpointStore::read(&self.state).unwrap()
    }
}

const PHASE_ONE_WITHOUT_TALOS: [Step; 4] = [
    Step::ValidatingPrerequisites,
    Step::CreatingServers,
    Step::WaitingServersReady,
    Step::BootingTalos,
];

#[tokio::test]
async fn every_step_run_twice_changes_nothing_the_second_time() {
    let f = Fixture::new("twice", 3);
    for step in PHASE_ONE_WITHOUT_TALOS {
        assert_eq!(
            f.run_to(step).await.unwrap(),
            RunOutcome::StoppedAfter(step)
        );
        let world = f.provider.snapshot();
        let servers = f.checkpoint().servers;

        f.forget(step);
        assert_eq!(
            f.run_to(step).await.unwrap(),
            RunOutcome::StoppedAfter(step)
        );
        assert_eq!(
            f.provider.snapshot(),
            world,
            "{step} changed the world when run again"
        );
        assert_eq!(
            f.checkpoint().servers,
            servers,
            "{step} changed the records when run again"
        );
    }
    let world = f.provider.snapshot();
    assert_eq!(world.creates, 3);
    assert_eq!(world.reinstalls, 0);
    let hostnames: Vec<_> = world
        .machines
        .values()
        .map(|m| m.hostname.clone())
        .collect();
    assert_eq!(
        hostnames,
        ["twice-cp-1", "twice-worker-1", "twice-worker-2"]
    );
}

#[tokio::test]
async fn the_intent_is_on_disk_before_every_order() {
    let f = Fixture::new("intent", 3);
    f.run_to(Step::CreatingServers).await.unwrap();
    assert!(f.provider.ordered_without_intent.lock().unwrap().is_empty());
    for s in f.checkpoint().servers {
        assert!(
            matches!(s.order, OrderState::Ordered { adopted: false, .. }),
            "{s:?}"
        );
        assert!(s.id.is_some());
    }
}

#[tokio::test]
async fn a_lost_order_answer_is_looked_up_not_ordered_again() {
    let f = Fixture::new("lost", 2);
    *f.provider.lose_create_answers.lock().unwrap() = 2;
    f.run_to(Step::CreatingServers).await.unwrap();
    let world = f.provider.snapshot();
    assert_eq!(world.creates, 2, "exactly one order per server");
    assert_eq!(world.machines.len(), 2);
    let adopted = f
        .reporter
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::ServerAdopted { .. }))
        .count();
    assert_eq!(adopted, 2);
    // Adopted answers are tagged like ordered ones.
    let cp = f.checkpoint();
    let tag = cp.ownership.install_tag.clone().unwrap();
    assert!(world.machines.values().all(|m| m.has_tag(&tag.id)));
    assert!(cp.servers.iter().all(|s| s.tagged));
}

#[tokio::test]
async fn every_ordered_server_carries_the_install_and_cluster_tags() {
    let f = Fixture::new("tags", 2);
    f.run_to(Step::CreatingServers).await.unwrap();
    let cp = f.checkpoint();
    let id = cp.ownership.install_id.clone().unwrap();
    let install = cp.ownership.install_tag.clone().unwrap();
    let cluster = cp.ownership.cluster_tag.clone().unwrap();
    assert_eq!(install.name, format!("cto-install-{id}"));
    assert_eq!(cluster.name, "cto-cluster-tags");
    for m in f.provider.snapshot().machines.values() {
        assert!(m.has_tag(&install.id) && m.has_tag(&cluster.id), "{m:?}");
    }
}

#[tokio::test]
async fn a_hand_made_server_with_one_of_our_hostnames_stops_the_install_untouched() {
    let f = Fixture::new("adopt", 2);
    let id = f
        .provider
        .add("adopt-cp-1", "ubuntu_24_04_x64_lts", MachineState::Ready);
    let before = f.provider.snapshot();
    let err = f.run_to(Step::BootingTalos).await.unwrap_err();
    assert_eq!(err.class(), installer::ErrorClass::Prerequisites, "{err}");
    assert!(err.to_string().contains(&id), "{err}");
    assert!(err.to_string().contains("adopt-cp-1"), "{err}");
    let world = f.provider.snapshot();
    assert_eq!(world.creates, 0, "nothing ordered");
    assert_eq!((world.reinstalls, world.deletes), (0, 0));
    assert_eq!(world.machines, before.machines, "the server is untouched");
    assert!(f.checkpoint().servers.iter().all(|s| s.id.is_none()));
}

#[tokio::test]
async fn a_failed_hand_made_server_is_neither_deleted_nor_replaced() {
    let f = Fixture::new("victim", 1);
    let id = f.provider.add("victim-cp-1", "ipxe", MachineState::Failed);
    let err = f.run_to(Step::WaitingServersReady).await.unwrap_err();
    assert_eq!(err.class(), installer::ErrorClass::Prerequisites, "{err}");
    let world = f.provider.snapshot();
    assert_eq!((world.creates, world.deletes), (0, 0));
    assert!(world.machines.contains_key(&id));
}

#[tokio::test]
async fn our_own_server_on_another_os_is_reinstalled_once() {
    let f = Fixture::new("adopt", 1);
    f.run_to(Step::WaitingServersReady).await.unwrap();
    let id = f.checkpoint().servers[0].id.clone().unwrap();
    f.provider
        .world
        .lock()
        .unwrap()
        .machines
        .get_mut(&id)
        .unwrap()
        .operating_system = Some("ubuntu_24_04_x64_lts".into());
    f.run_to(Step::BootingTalos).await.unwrap();
    let world = f.provider.snapshot();
    assert_eq!(world.creates, 1);
    assert_eq!(world.reinstalls, 1);
    assert_eq!(
        world.machines[&id].operating_system.as_deref(),
        Some("ipxe")
    );
    f.forget(Step::BootingTalos);
    f.run_to(Step::BootingTalos).await.unwrap();
    assert_eq!(f.provider.snapshot().reinstalls, 1, "not reinstalled twice");
}

#[tokio::test]
async fn a_failed_deployment_is_deleted_then_replaced_under_the_same_hostname() {
    let f = Fixture::new("fail", 1);
    *f.provider.fail_next_orders.lock().unwrap() = 1;
    f.run_to(Step::CreatingServers).await.unwrap();
    let id = f.checkpoint().servers[0].id.clone().unwrap();
    f.run_to(Step::WaitingServersReady).await.unwrap();
    let world = f.provider.snapshot();
    assert_eq!(world.deletes, 1, "the failed server was deleted");
    assert_eq!(world.creates, 2, "one replacement was ordered");
    assert!(!world.machines.contains_key(&id));
    assert_eq!(
        *f.provider.max_same_hostname.lock().unwrap(),
        1,
        "the replacement was ordered only once the failed server was gone"
    );
    assert!(f.provider.ordered_without_intent.lock().unwrap().is_empty());
    let cp = f.checkpoint();
    let record = &cp.servers[0];
    assert_eq!(record.replaced.len(), 1);
    assert_eq!(record.replaced[0].id, id);
    assert_eq!(record.replaced[0].status, "failed_deployment");
    assert!(record.replaced[0].gone);
    assert!(record.id.as_deref().is_some_and(|new| new != id));
    assert_eq!(record.status.as_deref(), Some("on"));
    assert!(record.tagged, "the replacement carries the install's tags");
}

#[tokio::test]
async fn the_replacement_cap_holds_over_the_install_s_life() {
    let f = Fixture::new("fail", 1);
    *f.provider.fail_next_orders.lock().unwrap() = 10;
    for run in 0..3 {
        let err = f.run_to(Step::WaitingServersReady).await.unwrap_err();
        match &err {
            InstallError::Step {
                step: Step::WaitingServersReady,
                source:
                    StepError::ServerFailedRepeatedly {
                        hostname,
                        status,
                        replaced,
                        ..
                    },
                ..
            } => {
                assert_eq!(hostname, "fail-cp-1");
                assert_eq!(status, "failed_deployment");
                assert_eq!(*replaced, 2);
            }
            other => panic!("run {run}: unexpected: {other}"),
        }
        assert!(
            err.to_string().contains("3/22 WaitingServersReady"),
            "{err}"
        );
        let world = f.provider.snapshot();
        assert_eq!(
            (world.deletes, world.creates),
            (2, 3),
            "run {run}: one order and two replacements over the install's life, resumes add none"
        );
        assert_eq!(world.machines.len(), 1, "never two servers of one node");
    }
    assert_eq!(*f.provider.max_same_hostname.lock().unwrap(), 1);
    let cp = f.checkpoint();
    assert_eq!(cp.last_error.unwrap().step, Step::WaitingServersReady);
    assert_eq!(
        cp.completed,
        [Step::ValidatingPrerequisites, Step::CreatingServers]
    );
    assert_eq!(cp.servers[0].replaced.len(), 2);
}

#[tokio::test]
async fn two_hand_made_servers_with_one_of_our_hostnames_stop_the_install() {
    let f = Fixture::new("dup", 1);
    let a = f.provider.add("dup-cp-1", "ipxe", MachineState::Ready);
    let b = f.provider.add("dup-cp-1", "ipxe", MachineState::Ready);
    let err = f.run_to(Step::CreatingServers).await.unwrap_err();
    assert_eq!(err.class(), installer::ErrorClass::Prerequisites, "{err}");
    assert!(
        err.to_string().contains(&a) && err.to_string().contains(&b),
        "{err}"
    );
    assert_eq!(f.provider.snapshot().creates, 0);
}

#[tokio::test]
async fn a_checkpoint_of_the_previous_release_resumes_and_gets_an_install_id() {
    let f = Fixture::new("old", 1);
    let path = f.state.join("checkpoint.json");
    let mut cp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cp.as_object_mut().unwrap().remove("ownership");
    for s in cp["servers"].as_array_mut().unwrap() {
        let s = s.as_object_mut().unwrap();
        s.remove("intended_at");
        s.remove("tagged");
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&cp).unwrap()).unwrap();
    assert!(f.checkpoint().ownership.install_id.is_none());

    f.run_to(Step::CreatingServers).await.unwrap();
    let id = f.checkpoint().ownership.install_id.unwrap();
    assert!(f.reporter.events().iter().any(|e| matches!(
        e,
        Event::Warning { message } if message.contains(&id) && message.contains("earlier cto")
    )));
    let tag = f.checkpoint().ownership.install_tag.unwrap();
    assert!(
        f.provider
            .snapshot()
            .machines
            .values()
            .all(|m| m.has_tag(&tag.id))
    );
}

#[tokio::test]
async fn a_pinned_site_without_stock_is_a_prerequisite_failure() {
    let f = Fixture::new("pin", 1);
    let mut store = CheckpointStore::resume(&f.state).unwrap();
    store
        .update(|cp| cp.spec.region = installer::spec::RegionChoice::Fixed { site: "ASH".into() })
        .unwrap();
    drop(store);
    let err = f.run_to(Step::CreatingServers).await.unwrap_err();
    assert_eq!(err.class(), installer::ErrorClass::Prerequisites, "{err}");
    assert!(err.to_string().contains("ASH"), "{err}");
    assert_eq!(f.provider.snapshot().creates, 0);
}

/// Nobody can answer (no terminal, no `--yes`).
struct Unattended;

impl Approver for Unattended {
    fn approve(&self, _order: &OrderSummary) -> ApprovalFuture {
        Box::pin(std::future::ready(Approval::Unattended))
    }
}

#[tokio::test]
async fn a_replacement_or_a_reinstall_without_approval_does_nothing() {
    let f = Fixture::new("ask", 1);
    *f.provider.fail_next_orders.lock().unwrap() = 1;
    f.run_to(Step::CreatingServers).await.unwrap();
    // As if the order had never been approved (nobody answered for this install).
    let mut store = CheckpointStore::resume(&f.state).unwrap();
    store
        .update(|cp| cp.resolved.order_approved = false)
        .unwrap();
    drop(store);
    let err = f
        .run_to_with(Step::WaitingServersReady, Arc::new(Unattended))
        .await
        .unwrap_err();
    assert_eq!(err.class(), installer::ErrorClass::Usage, "{err}");
    let world = f.provider.snapshot();
    assert_eq!(
        (world.deletes, world.creates),
        (0, 1),
        "nothing deleted or ordered"
    );

    // The same for a reinstall of one of the install's servers.
    let g = Fixture::new("ask2", 1);
    g.run_to(Step::WaitingServersReady).await.unwrap();
    let id = g.checkpoint().servers[0].id.clone().unwrap();
    g.provider
        .world
        .lock()
        .unwrap()
        .machines
        .get_mut(&id)
        .unwrap()
        .operating_system = Some("ubuntu_24_04_x64_lts".into());
    let mut store = CheckpointStore::resume(&g.state).unwrap();
    store
        .update(|cp| cp.resolved.order_approved = false)
        .unwrap();
    drop(store);
    let err = g
        .run_to_with(Step::BootingTalos, Arc::new(Unattended))
        .await
        .unwrap_err();
    assert_eq!(err.class(), installer::ErrorClass::Usage, "{err}");
    assert_eq!(g.provider.snapshot().reinstalls, 0);
}
