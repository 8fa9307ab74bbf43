//! Rendering: installer events as progress lines (text) or one JSON object per line (json),
//! failures with the command that continues, and the order confirmation prompt.
//!
//! Text progress goes to stderr, so stdout stays clean for results; JSON events go to stdout.
//! Spinners are drawn only when stderr is a terminal and `CI` is unset; otherwise each event is
//! one plain line.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use installer::events::{
    Approval, ApprovalFuture, Approver, Event, OrderSummary, Reporter, Summary,
};
use serde_json::json;

use crate::cli::Output;
use crate::exit::Failure;

/// True when spinners may be drawn.
pub fn fancy_terminal() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// Builds the reporter for `output`, and the spinner area a prompt must suspend (text mode).
pub fn reporter(output: Output) -> (std::sync::Arc<dyn Reporter>, Option<MultiProgress>) {
    match output {
        Output::Json => (std::sync::Arc::new(JsonReporter), None),
        Output::Text => {
            let text = TextReporter::new(fancy_terminal());
            let multi = text.multi.clone();
            (std::sync::Arc::new(text), multi)
        }
    }
}

/// Prints one JSON object on its own line to stdout.
pub fn emit_json(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Events as JSON lines on stdout.
pub struct JsonReporter;

impl Reporter for JsonReporter {
    fn report(&self, event: Event) {
        if let Ok(value) = serde_json::to_value(&event) {
            emit_json(&value);
        }
    }
}

/// Events as progress lines on stderr.
pub struct TextReporter {
    multi: Option<MultiProgress>,
    current: Mutex<Option<ProgressBar>>,
}

impl TextReporter {
    /// `fancy`: draw spinners.
    pub fn new(fancy: bool) -> Self {
        TextReporter {
            multi: fancy.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            current: Mutex::new(None),
        }
    }

    fn line(&self, text: String) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

fn money(v: f64) -> String {
    format!("${v:.2}")
}

impl Reporter for TextReporter {
    fn report(&self, event: Event) {
        match event {
            Event::RunStarted {
                cluster,
                state_dir,
                resumed,
                next_step,
            } => {
                let verb = if resumed { "Resuming" } else { "Installing" };
                let next = next_step.map_or("nothing left to do".to_owned(), |s| {
                    format!("from [{}/22] {s}", s.number())
                });
                self.line(format!(
                    "{verb} cluster {cluster} ({next}); state in {state_dir}"
                ));
            }
            Event::StepStarted {
                step,
                number,
                total,
            } => {
                if let Some(multi) = &self.multi {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} [{prefix}] {msg} ({elapsed})")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(format!("{number}/{total}"));
                    bar.set_message(step.to_string());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    if let Ok(mut cur) = self.current.lock() {
                        *cur = Some(bar);
                    }
                } else {
                    eprintln!("[{number}/{total}] {step}");
                }
            }
            Event::StepFinished {
                step,
                number,
                elapsed_s,
            } => {
                let bar = self.current.lock().ok().and_then(|mut c| c.take());
                match bar {
                    // Finished steps become permanent lines, in order, above the spinner.
                    Some(bar) => {
                        bar.finish_and_clear();
                        self.line(format!("✓ [{number}/22] {step} ({elapsed_s:.1}s)"));
                    }
                    None => eprintln!("[{number}/22] {step} done in {elapsed_s:.1}s"),
                }
            }
            Event::Progress { message, .. } => self.line(format!("      {message}")),
            Event::NodeStatus {
                hostname,
                status,
                detail,
                ..
            } => self.line(match detail {
                Some(d) => format!("      {hostname:<24} {status}  {d}"),
                None => format!("      {hostname:<24} {status}"),
            }),
            Event::RegionSelected {
                site,
                reason,
                verdicts,
            } => {
                self.line(format!("      site {site}: {reason}"));
                for v in verdicts.iter().filter(|v| !v.accepted) {
                    self.line(format!("        not {}: {}", v.site, v.reasons.join("; ")));
                }
            }
            Event::Cost {
                servers,
                hourly_usd,
                monthly_usd,
            } => self.line(format!(
                "      cost: {servers} server(s), {} per hour, {} per month",
                hourly_usd.map_or("unknown".into(), money),
                monthly_usd.map_or("unknown".into(), money)
            )),
            Event::ServerOrdered {
                hostname,
                id,
                site,
                plan,
            } => self.line(format!("      ordered {hostname} ({id}, {plan} in {site})")),
            Event::ServerAdopted {
                hostname,
                id,
                status,
            } => self.line(format!(
                "      adopted existing {hostname} ({id}, {status})"
            )),
            Event::Warning { message } => self.line(format!("warning: {message}")),
            // The command prints the outcome and the resume command itself.
            Event::StoppedAfter { .. } => {}
            Event::Complete(summary) => print_summary(&summary),
        }
    }
}

impl Drop for TextReporter {
    fn drop(&mut self) {
        if let Ok(mut cur) = self.current.lock()
            && let Some(bar) = cur.take()
        {
            bar.abandon();
        }
    }
}

/// The install summary as text lines (a result, so on stdout). Never holds a secret.
pub fn summary_text(s: &Summary) -> String {
    let mut out = vec![format!("Cluster {} is ready.", s.cluster)];
    out.push(format!(
        "  API endpoint:    {}",
        s.endpoint.as_deref().unwrap_or("unknown")
    ));
    out.push("  Nodes:".to_owned());
    for n in &s.nodes {
        out.push(format!(
            "    {:<24} {:<14} {}",
            n.hostname,
            n.role,
            n.ipv4.as_deref().unwrap_or("?")
        ));
    }
    out.push(format!("  Storage class:   {} (default)", s.storage_class));
    for p in &s.storage_pools {
        out.push(format!("    DiskPool {p}"));
    }
    if let Some(note) = &s.storage {
        out.push(format!(
            "  Storage:         {}",
            note.trim_start_matches("storage: ")
        ));
    }
    if let Some(k) = &s.kubeconfig {
        out.push(format!("  kubeconfig:      {k}"));
    }
    if let Some(t) = &s.talosconfig {
        out.push(format!("  talosconfig:     {t}"));
    }
    out.push(format!(
        "  Argo CD admin:   user admin, password: {}",
        s.argocd_password
    ));
    if let Some(v) = &s.vault_init {
        out.push(format!(
            "  Vault:           unseal keys and root token in {v} — back this file up"
        ));
    }
    out.push(format!(
        "  Cost:            {} per hour, {} per month",
        s.hourly_usd.map_or("unknown".into(), money),
        s.monthly_usd.map_or("unknown".into(), money)
    ));
    out.push("  Next:".to_owned());
    for n in &s.next {
        out.push(format!("    {n}"));
    }
    out.join("\n")
}

/// Prints the summary on stdout.
pub fn print_summary(s: &Summary) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", summary_text(s));
    let _ = out.flush();
}

/// Prints a failure: text on stderr, or a `failed` JSON event on stdout.
pub fn report_failure(output: Output, failure: &Failure) {
    match output {
        Output::Json => emit_json(&json!({
            "event": "failed",
            "exit_code": failure.code,
            "message": failure.message,
            "next": failure.next,
        })),
        Output::Text => {
            eprintln!("error: {}", failure.message);
            if let Some(next) = &failure.next {
                eprintln!("  next: {next}");
            }
        }
    }
}

/// Asks on the terminal before ordering; refuses when there is no terminal.
pub struct PromptApprover {
    /// Spinners to pause while asking.
    pub multi: Option<MultiProgress>,
}

impl Approver for PromptApprover {
    fn approve(&self, order: &OrderSummary) -> ApprovalFuture {
        if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            return Box::pin(std::future::ready(Approval::Unattended));
        }
        let multi = self.multi.clone();
        let order = order.clone();
        // The terminal read blocks; it runs on a blocking thread so Ctrl-C is still handled
        // (the install future is dropped and the process exits 130 while the read is pending).
        Box::pin(async move {
            // Spinners are hidden (not suspended: suspending holds a lock for the whole read,
            // which would deadlock an interrupted run's cleanup) while the question is open.
            tokio::task::spawn_blocking(move || {
                if let Some(multi) = &multi {
                    multi.set_draw_target(ProgressDrawTarget::hidden());
                }
                let answer = ask_order(&order);
                if let Some(multi) = &multi {
                    multi.set_draw_target(ProgressDrawTarget::stderr());
                }
                answer
            })
            .await
            .unwrap_or(Approval::Declined)
        })
    }
}

fn ask_order(order: &OrderSummary) -> Approval {
    {
        eprintln!(
            "\nAbout to order {} server(s) from {} in {}, billed hourly:",
            order.servers.len(),
            order.provider,
            order.site
        );
        for (hostname, plan) in &order.servers {
            eprintln!("  {hostname:<24} {plan}");
        }
        eprint!(
            "Cost: {} per hour ({} per month). Order them? [y/N] ",
            money(order.hourly_usd),
            money(order.monthly_usd)
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).is_err() {
            return Approval::Declined;
        }
        match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Approval::Approved,
            _ => Approval::Declined,
        }
    }
}

/// Asks a yes/no question on the terminal. `None` when there is no terminal.
pub fn confirm(question: &str) -> Option<bool> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).ok()?;
    Some(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
