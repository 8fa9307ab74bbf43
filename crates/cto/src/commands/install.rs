//! `cto install`: resolve flags into a spec (or check them against the checkpoint on
//! `--resume`), open the state directory, run the orchestrator, and turn the outcome into an
//! exit code and the command that continues.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use installer::checkpoint::CheckpointStore;
use installer::events::{AlwaysApprove, Approver};
use installer::spec::{InstallRequest, PatchScope, PatchSource};
use installer::{ClusterSpec, InstallError, Orchestrator, RunOptions, RunOutcome, Step};
use serde_json::json;

use crate::cli::{InstallArgs, Output};
use crate::context;
use crate::exit::{self, Failure};
use crate::output;

/// Default total nodes.
const DEFAULT_NODES: u32 = 3;
/// Default control planes.
const DEFAULT_CONTROL_PLANES: u32 = 1;
/// Default `--sync-timeout`, minutes.
const DEFAULT_SYNC_TIMEOUT: u32 = 30;
/// Cluster name used by `--lab` when none is given.
const LAB_CLUSTER_NAME: &str = "lab";

/// Reads the `--config-patch*` flags: `@path` is a file, anything else inline YAML.
fn read_patches(args: &InstallArgs) -> Result<Vec<PatchSource>, Failure> {
    let mut out = Vec::new();
    for (scope, values) in [
        (PatchScope::All, &args.config_patch),
        (PatchScope::ControlPlane, &args.config_patch_control_plane),
        (PatchScope::Worker, &args.config_patch_worker),
    ] {
        for value in values {
            let (source, content) = match value.strip_prefix('@') {
                Some(path) => {
                    // A regular file of at most 1 MiB; `@/dev/zero` is refused without reading.
                    let content = metal::talos::config::read_patch_file(Path::new(path))
                        .map_err(|e| usage(format!("invalid {} '{value}': {e}", scope.flag())))?;
                    (path.to_owned(), content)
                }
                None => ("inline".to_owned(), value.clone()),
            };
            out.push(PatchSource {
                scope,
                source,
                content,
            });
        }
    }
    Ok(out)
}

/// Overlays the flags the user typed onto `base`.
fn overlay(base: &mut InstallRequest, args: &InstallArgs, patches: Vec<PatchSource>) {
    if !patches.is_empty() {
        base.config_patches = patches;
    }
    if let Some(v) = &args.cluster_name {
        base.cluster_name = v.clone();
    }
    if let Some(v) = &args.region {
        base.region = Some(v.clone());
        base.auto_region = false;
        base.fallback_regions = None;
    }
    if args.auto_region {
        base.auto_region = true;
        if args.region.is_none() {
            base.region = None;
        }
    }
    if let Some(v) = &args.fallback_regions {
        base.fallback_regions = Some(v.clone());
    }
    if let Some(v) = args.nodes {
        base.nodes = v;
    }
    if let Some(v) = args.control_planes {
        base.control_planes = v;
    }
    if let Some(v) = &args.cp_plan {
        base.cp_plan = Some(v.clone());
    }
    if let Some(v) = &args.worker_plan {
        base.worker_plan = Some(v.clone());
    }
    if let Some(v) = &args.storage_disk {
        base.storage_disk = Some(v.clone());
    }
    if let Some(v) = args.storage_replicas {
        base.storage_replicas = Some(v);
    }
    if let Some(v) = &args.storage {
        base.storage = Some(v.clone());
    }
    if let Some(v) = &args.install_disk {
        base.install_disk = Some(v.clone());
    }
    if let Some(v) = &args.talos_version {
        base.talos_version = Some(v.clone());
    }
    if let Some(v) = args.sync_timeout {
        base.sync_timeout_minutes = v;
    }
    if let Some(v) = &args.profile {
        base.profile = Some(v.clone());
    }
    if let Some(v) = &args.provider.project {
        base.project = Some(v.clone());
    }
    if let Some(v) = &args.provider.api_url {
        base.api_url = v.clone();
    }
    if let Some(v) = &args.image_factory_url {
        base.image_factory_url = Some(v.clone());
    }
    if args.provider.lab {
        base.lab = true;
    }
    if let Some(v) = &args.gitops_repo {
        base.gitops_repo = Some(v.clone());
    }
    if let Some(v) = &args.gitops_revision {
        base.gitops_revision = Some(v.clone());
    }
    if let Some(v) = &args.gitops_path {
        base.gitops_path = Some(v.clone());
    }
    if gitops_token(args).is_some() {
        base.gitops_credentials = true;
    }
    if args.gateway_api {
        base.gateway_api = true;
    }
    if args.init_vault {
        base.init_vault = true;
    }
}

/// A real install needs `--gitops-repo`: no public repository is known to hold this release's
/// tree (the project's own repository keeps another tree under `infra/gitops/`), and step 1
/// would stop on the default anyway. An install against a lab (`--lab`, or a loopback API URL)
/// keeps the default, which the lab's Argo CD serves from the tree compiled into it.
fn require_gitops_repo(args: &InstallArgs, spec: &ClusterSpec) -> Result<(), Failure> {
    let lab = spec.lab || metal::latitude::client::is_loopback_url(&spec.api_url);
    if args.gitops_repo.is_some() || lab {
        return Ok(());
    }
    Err(usage(format!(
        "--gitops-repo is required: no public repository is known to hold this release's gitops/ tree ({} has no gitops/ directory). Put this release's gitops/ into a repository of yours (a fork or a copy) and pass --gitops-repo <url> (with --gitops-revision/--gitops-path where it differs); `cto install --dry-run --gitops-repo <url>` checks it before anything is ordered",
        installer::spec::DEFAULT_GITOPS_REPO
    )))
}

/// `--gitops-token` / `CTO_GITOPS_TOKEN`, when given and not blank.
fn gitops_token(args: &InstallArgs) -> Option<installer::spec::GitopsToken> {
    args.gitops_token
        .as_deref()
        .map(installer::spec::GitopsToken::new)
        .filter(|t| !t.expose().is_empty())
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::new(exit::USAGE, e.to_string())
}

/// The spec of a new install from flags and defaults.
fn fresh_spec(args: &InstallArgs) -> Result<ClusterSpec, Failure> {
    let lab = args.provider.lab;
    let mut request = InstallRequest {
        cluster_name: if lab {
            LAB_CLUSTER_NAME.to_owned()
        } else {
            String::new()
        },
        nodes: DEFAULT_NODES,
        control_planes: DEFAULT_CONTROL_PLANES,
        sync_timeout_minutes: DEFAULT_SYNC_TIMEOUT,
        api_url: context::DEFAULT_API_URL.to_owned(),
        ..Default::default()
    };
    overlay(&mut request, args, read_patches(args)?);
    if request.cluster_name.is_empty() {
        return Err(usage(
            "--cluster-name is required (it names every server: <name>-cp-1, <name>-worker-1)",
        ));
    }
    if lab {
        // The lab's project and URL are its own; they are not the user's to choose.
        request.project = Some(lab::LAB_PROJECT_ID.to_owned());
        request.api_url = "http://127.0.0.1".to_owned();
    }
    request.validate().map_err(usage)
}

/// The spec of a resumed install: the checkpoint's, with the typed flags checked against it.
fn resumed_spec(args: &InstallArgs, stored: &ClusterSpec) -> Result<ClusterSpec, Failure> {
    let mut request = InstallRequest::from_spec(stored);
    overlay(&mut request, args, read_patches(args)?);
    if stored.lab {
        request.project = Some(stored.project.clone());
        request.api_url = stored.api_url.clone();
    }
    let requested = request.validate().map_err(usage)?;
    let diff = stored.diff(&requested);
    if diff.is_empty() {
        return Ok(requested);
    }
    let lines: Vec<String> = diff.iter().map(|d| format!("  {d}")).collect();
    Err(Failure::new(
        exit::USAGE,
        format!(
            "--resume was given flags that contradict the checkpoint:\n{}\nDrop those flags to continue the install as it was started, or `cto destroy` and install anew.",
            lines.join("\n")
        ),
    ))
}

/// `--trust-maintenance-key HOSTNAME=SPKI`: replaces the maintenance-mode key recorded for a
/// node that has no config yet (the user compared the new key with the node's console).
fn trust_maintenance_keys(store: &mut CheckpointStore, entries: &[String]) -> Result<(), Failure> {
    for entry in entries {
        let bad = |why: &str| {
            usage(format!(
                "invalid --trust-maintenance-key {entry:?}: {why}; expected HOSTNAME=SPKI, the SPKI SHA-256 (base64, 44 characters) that the error printed"
            ))
        };
        let Some((hostname, spki)) = entry.split_once('=') else {
            return Err(bad("no '='"));
        };
        // base64 of a SHA-256: 43 characters and one '=' of padding.
        let spki_ok = spki.len() == 44
            && spki.ends_with('=')
            && spki[..43]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
        if !spki_ok {
            return Err(bad("not a base64 SHA-256"));
        }
        let Some(record) = store
            .checkpoint()
            .servers
            .iter()
            .find(|s| s.hostname == hostname)
        else {
            return Err(bad("no node of this install has that hostname"));
        };
        if matches!(
            record.config,
            installer::checkpoint::ConfigState::Applied { .. }
        ) || record.installed
        {
            return Err(bad("that node already has its config"));
        }
        let old = record.maintenance_spki.clone().unwrap_or_default();
        store
            .update(|cp| {
                if let Some(s) = cp.server_mut(hostname) {
                    s.maintenance_spki = Some(spki.to_owned());
                }
            })
            .map_err(|e| Failure::new(exit::STEP_FAILED, e.to_string()))?;
        eprintln!("{hostname}: trusting maintenance-mode key {spki} (was {old})");
        tracing::warn!(%hostname, new = %spki, %old, "maintenance-mode key replaced by --trust-maintenance-key");
    }
    Ok(())
}

/// The provider flags of a run of `spec`: the lab when the install is a lab install, whatever
/// was typed on a resume.
/// The run's waits: every clock in the provider's time (scaled for a lab), then the sequential
/// baseline when `CTO_BASELINE` asks for it. Either knob refused for this API URL is a usage
/// error.
fn run_timings(provider_args: &crate::cli::ProviderArgs) -> Result<installer::Timings, Failure> {
    let mut timings = context::timings(context::time_scale(provider_args)?);
    context::apply_baseline(&mut timings, &context::api_url(provider_args))?;
    Ok(timings)
}

fn provider_args(args: &InstallArgs, spec: &ClusterSpec) -> crate::cli::ProviderArgs {
    let mut provider = args.provider.clone();
    provider.lab = spec.lab;
    provider
}

fn resume_command(state_dir: &Path) -> String {
    format!(
        "cto install --resume --state-dir {}",
        shell_quote(state_dir)
    )
}

fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@".contains(&b))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn parse_stop_after(args: &InstallArgs) -> Result<Option<Step>, Failure> {
    args.stop_after
        .as_deref()
        .map(|s| {
            s.parse::<Step>()
                .map_err(|e| usage(format!("invalid --stop-after: {e}")))
        })
        .transpose()
}

/// The paths the install writes for the user, checked before anything is created or ordered
/// (a usage error, exit 2): `--kubeconfig-out` writable and outside the state directory.
fn check_paths(args: &InstallArgs, state_dir: &Path) -> Result<(), Failure> {
    let home = home_dir();
    match &args.kubeconfig_out {
        Some(out) => crate::paths::check_kubeconfig_out(out, state_dir)?,
        None => {
            let env = kubeconfig_env();
            if env.is_some() || home.is_some() {
                let path = installer::kubeconfig_merge::default_kubeconfig_path(
                    env.as_deref(),
                    home.as_deref().unwrap_or(Path::new("")),
                );
                crate::paths::check_merge_target(
                    "the kubeconfig (step 21 merges it into $KUBECONFIG's first path or ~/.kube/config)",
                    &path,
                    "fix it, or pass --kubeconfig-out PATH to write the kubeconfig elsewhere",
                )?;
            }
        }
    }
    if let Some(home) = &home {
        crate::paths::check_merge_target(
            "the talosconfig (step 21 merges it into ~/.talos/config)",
            &home.join(".talos").join("config"),
            "fix it (or set HOME to a writable directory)",
        )?;
    }
    Ok(())
}

/// The user's home directory: `HOME`, or `USERPROFILE` on Windows.
fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var_os("USERPROFILE").filter(|h| !h.is_empty()))
        .map(PathBuf::from)
}

/// `KUBECONFIG`, when set and not empty.
fn kubeconfig_env() -> Option<String> {
    std::env::var("KUBECONFIG").ok().filter(|k| !k.is_empty())
}

/// Runs `cto install`.
pub async fn run(args: InstallArgs) -> Result<(), Failure> {
    let stop_after = parse_stop_after(&args)?;
    // The environment's clock and baseline knobs are checked before anything is written: a
    // time scale or baseline the API URL does not allow is a usage error.
    let (state_dir, store, resumed, timings) = if args.resume {
        let dir = match (&args.state_dir, &args.cluster_name) {
            (Some(d), _) => d.clone(),
            (None, Some(name)) => context::default_state_dir(name)?,
            (None, None) if args.provider.lab => context::default_state_dir(LAB_CLUSTER_NAME)?,
            (None, None) => {
                return Err(usage(
                    "--resume needs --state-dir or --cluster-name to find the checkpoint",
                ));
            }
        };
        check_paths(&args, &dir)?;
        let mut store = CheckpointStore::resume(&dir)
            .map_err(|e| install_failure(InstallError::from(e), &dir))?;
        resumed_spec(&args, &store.checkpoint().spec)?;
        trust_maintenance_keys(&mut store, &args.trust_maintenance_key)?;
        let timings = run_timings(&provider_args(&args, &store.checkpoint().spec))?;
        (dir, store, true, timings)
    } else {
        let spec = fresh_spec(&args)?;
        let timings = run_timings(&provider_args(&args, &spec))?;
        require_gitops_repo(&args, &spec)?;
        let dir: PathBuf = match &args.state_dir {
            Some(d) => d.clone(),
            None => context::default_state_dir(&spec.cluster_name)?,
        };
        check_paths(&args, &dir)?;
        if args.dry_run {
            return dry_run(&args, &spec, &dir).await;
        }
        let store = CheckpointStore::create(&dir, spec).map_err(|e| match e {
            // Nothing has happened yet: a state directory that cannot be created or written
            // is a usage error, not a step to resume.
            installer::checkpoint::CheckpointError::Io { .. } => usage(format!(
                "cannot use --state-dir {}: {e}; choose a writable directory",
                dir.display()
            )),
            other => install_failure(InstallError::from(other), &dir),
        })?;
        (dir, store, false, timings)
    };
    crate::logging::to_state_dir(&state_dir);
    if let Some(warning) = store.dir_warning() {
        eprintln!("warning: {warning}");
        tracing::warn!("{warning}");
    }

    let spec = store.checkpoint().spec.clone();
    if store.checkpoint().next_step().is_none() {
        // Nothing left to do: show the summary again and change nothing.
        let summary = installer::summary_of(store.checkpoint(), &state_dir);
        match args.output {
            Output::Json => {
                if let Ok(value) =
                    serde_json::to_value(installer::events::Event::Complete(Box::new(summary)))
                {
                    output::emit_json(&value);
                }
            }
            Output::Text => output::print_summary(&summary),
        }
        finished(args.output, &state_dir, RunOutcome::Completed);
        return Ok(());
    }

    let provider_args = provider_args(&args, &spec);
    let connection = context::connect(&provider_args, &state_dir, Some(&spec.project)).await?;
    let (reporter, multi) = output::reporter(args.output);
    let approver: Arc<dyn Approver> = if args.yes || spec.lab {
        Arc::new(AlwaysApprove)
    } else {
        Arc::new(output::PromptApprover { multi })
    };
    let mut orchestrator = Orchestrator::new(
        Arc::new(connection.provider.clone()),
        store,
        reporter,
        approver,
        RunOptions {
            stop_after,
            timings,
            gitops_token: gitops_token(&args),
            home: home_dir(),
            kubeconfig_env: kubeconfig_env(),
            kubeconfig_out: args.kubeconfig_out.clone(),
            install_lens: args.install_lens,
            factory_url: connection.factory_url(),
        },
    );

    let outcome = tokio::select! {
        result = orchestrator.run(resumed) => Some(result),
        () = interrupted() => None,
    };
    let result = match outcome {
        Some(Ok(done)) => {
            finished(args.output, &state_dir, done);
            Ok(())
        }
        Some(Err(err)) => Err(install_failure(err, &state_dir)),
        None => {
            // A second Ctrl-C (or SIGTERM) ends the process at once. The checkpoint is written
            // atomically (temp file, rename), so exiting at any instant leaves it whole.
            tokio::spawn(async {
                interrupted().await;
                eprintln!("error: interrupted again; exiting at once (the checkpoint is intact)");
                std::process::exit(i32::from(exit::INTERRUPTED));
            });
            let step = orchestrator.record_interruption().ok().flatten();
            let during = step.map_or(String::new(), |s| {
                format!(" during [{}/22] {s}", s.number())
            });
            tracing::warn!(?step, "interrupted");
            Err(Failure::new(
                exit::INTERRUPTED,
                format!("interrupted{during}; the checkpoint is saved"),
            )
            .with_next(resume_command(&state_dir)))
        }
    };
    drop(orchestrator);
    connection.close().await;
    result
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn install_failure(err: InstallError, state_dir: &Path) -> Failure {
    tracing::error!(error = %err, "install stopped");
    let code = exit::for_class(err.class());
    let failure = Failure::new(code, err.to_string());
    match code {
        exit::STEP_FAILED => failure.with_next(resume_command(state_dir)),
        _ => failure,
    }
}

fn finished(output: Output, state_dir: &Path, outcome: RunOutcome) {
    let (kind, step) = match outcome {
        RunOutcome::Completed => ("completed", Step::Complete),
        RunOutcome::StoppedAfter(step) => ("stopped_after", step),
    };
    match output {
        Output::Json => output::emit_json(&json!({
            "event": "finished",
            "outcome": kind,
            "step": step,
            "state_dir": state_dir.display().to_string(),
            "next": (kind == "stopped_after").then(|| resume_command(state_dir)),
        })),
        Output::Text => match outcome {
            RunOutcome::Completed => println!("Install complete. State in {}", state_dir.display()),
            RunOutcome::StoppedAfter(step) => println!(
                "Stopped after [{}/22] {step}. Continue with: {}",
                step.number(),
                resume_command(state_dir)
            ),
        },
    }
}

/// `--dry-run`: step 1 against the provider, without a checkpoint, printing the plan.
async fn dry_run(args: &InstallArgs, spec: &ClusterSpec, state_dir: &Path) -> Result<(), Failure> {
    let scratch = tempdir_for_dry_run(state_dir)?;
    let store = CheckpointStore::create(scratch.path(), spec.clone())
        .map_err(|e| install_failure(InstallError::from(e), scratch.path()))?;
    let lab_dir = if spec.lab {
        scratch.path().to_owned()
    } else {
        state_dir.to_owned()
    };
    let connection = context::connect(&args.provider, &lab_dir, Some(&spec.project)).await?;
    let (reporter, _) = output::reporter(args.output);
    let mut orchestrator = Orchestrator::new(
        Arc::new(connection.provider.clone()),
        store,
        reporter,
        Arc::new(AlwaysApprove),
        RunOptions {
            stop_after: Some(Step::ValidatingPrerequisites),
            timings: Default::default(),
            factory_url: connection.factory_url(),
            // The GitOps preflight of step 1 reads the repository with the token.
            gitops_token: gitops_token(args),
            ..Default::default()
        },
    );
    let result = orchestrator.run(false).await;
    let plan = orchestrator.store().checkpoint().clone();
    drop(orchestrator);
    connection.close().await;
    result.map_err(|e| install_failure(e, state_dir))?;
    let servers: Vec<_> = plan
        .servers
        .iter()
        .map(|s| json!({"hostname": s.hostname, "role": s.role, "plan": s.plan, "site": s.site}))
        .collect();
    match args.output {
        Output::Json => output::emit_json(&json!({
            "event": "plan",
            "site": plan.resolved.site,
            "site_reason": plan.resolved.site_reason,
            "servers": servers,
            "hourly_usd": plan.resolved.hourly_usd,
            "monthly_usd": plan.resolved.monthly_usd,
            "ipxe_url": plan.resolved.ipxe_url,
        })),
        Output::Text => {
            println!("Dry run: nothing was ordered. The install would order:");
            for s in &plan.servers {
                println!(
                    "  {:<24} {:<14} {:<14} {}",
                    s.hostname,
                    s.role.to_string(),
                    s.plan,
                    s.site.as_deref().unwrap_or("?")
                );
            }
            println!(
                "in {} ({}), for ${:.2}/hour (${:.2}/month), booting {}",
                plan.resolved.site.as_deref().unwrap_or("?"),
                plan.resolved.site_reason.as_deref().unwrap_or(""),
                plan.resolved.hourly_usd.unwrap_or(0.0),
                plan.resolved.monthly_usd.unwrap_or(0.0),
                plan.resolved.ipxe_url.as_deref().unwrap_or("?"),
            );
        }
    }
    Ok(())
}

/// A scratch directory for a dry run's throwaway checkpoint (removed when dropped).
fn tempdir_for_dry_run(state_dir: &Path) -> Result<tempfile::TempDir, Failure> {
    tempfile::Builder::new()
        .prefix("cto-dry-run-")
        .tempdir()
        .map_err(|e| {
            Failure::new(
                exit::STEP_FAILED,
                format!(
                    "cannot create a scratch directory for the dry run of {}: {e}",
                    state_dir.display()
                ),
            )
        })
}
