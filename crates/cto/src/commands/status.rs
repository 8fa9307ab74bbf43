//! `cto status`: where an install stands, read from its checkpoint without taking the lock
//! (so it works while an install runs) and without calling the provider.

use installer::checkpoint::{CheckpointStore, OrderState};
use installer::events::TOTAL_STEPS;
use installer::{InstallError, Step};
use serde_json::json;

use crate::cli::{Output, StatusArgs};
use crate::context;
use crate::exit::{self, Failure};
use crate::output;

/// Runs `cto status`.
pub fn run(args: StatusArgs) -> Result<(), Failure> {
    let dir = context::state_dir(args.state_dir.as_deref(), args.cluster_name.as_deref())?;
    let cp = CheckpointStore::read(&dir).map_err(|e| {
        let err = InstallError::from(e);
        Failure::new(exit::for_class(err.class()), err.to_string())
    })?;
    let next = cp.next_step();
    match args.output {
        Output::Json => output::emit_json(&json!({
            "cluster": cp.spec.cluster_name,
            "state_dir": dir.display().to_string(),
            "completed_steps": cp.completed.len(),
            "total_steps": TOTAL_STEPS,
            "completed": cp.completed,
            "next_step": next,
            "current_step": cp.current,
            "complete": next.is_none(),
            "site": cp.resolved.site,
            "hourly_usd": cp.resolved.hourly_usd,
            "monthly_usd": cp.resolved.monthly_usd,
            "storage": cp.resolved.storage_mode,
            "storage_note": cp.resolved.storage_note,
            "storage_disks": cp.resolved.storage_disks,
            "last_error": cp.last_error,
            "interrupted": cp.interrupted,
            "servers": cp.servers,
            "spec": cp.spec,
        })),
        Output::Text => {
            println!("cluster     {}", cp.spec.cluster_name);
            println!("state dir   {}", dir.display());
            println!(
                "progress    {}/{TOTAL_STEPS} steps done{}",
                cp.completed.len(),
                match next {
                    Some(step) => format!(", next [{}/22] {step}", step.number()),
                    None => " (complete)".into(),
                }
            );
            if let Some(site) = &cp.resolved.site {
                println!(
                    "site        {site} ({})",
                    cp.resolved.site_reason.as_deref().unwrap_or("")
                );
            }
            if let (Some(h), Some(m)) = (cp.resolved.hourly_usd, cp.resolved.monthly_usd) {
                println!("cost        ${h:.2}/hour, ${m:.2}/month");
            }
            if let Some(note) = &cp.resolved.storage_note {
                println!("storage     {}", note.trim_start_matches("storage: "));
            }
            if let Some(err) = &cp.last_error {
                println!(
                    "last error  [{}/22] {}: {}",
                    err.step.number(),
                    err.step,
                    err.message
                );
            }
            if let Some(int) = &cp.interrupted {
                let during = int
                    .step
                    .map_or(String::new(), |s: Step| format!(" during {s}"));
                println!("interrupted at {}{during}", int.at);
            }
            println!();
            println!(
                "{:<24} {:<14} {:<18} {:<16} {:<18} INSTALL DISK",
                "HOSTNAME", "ROLE", "ID", "IPV4", "STATUS"
            );
            for s in &cp.servers {
                let id = match (&s.id, &s.order) {
                    (Some(id), _) => id.clone(),
                    (None, OrderState::Intended { .. }) => "(order pending)".into(),
                    (None, _) => "-".into(),
                };
                println!(
                    "{:<24} {:<14} {:<18} {:<16} {:<18} {}",
                    s.hostname,
                    s.role.to_string(),
                    id,
                    s.primary_ipv4.map_or("-".into(), |ip| ip.to_string()),
                    s.status.as_deref().unwrap_or("-"),
                    s.install_disk.as_deref().unwrap_or("-"),
                );
            }
        }
    }
    Ok(())
}
