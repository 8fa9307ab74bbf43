//! Project automation, run as `cargo xtask <task>`.
//!
//! * `ci` — what CI runs: `cargo fmt --check`, `cargo clippy -D warnings` over every target, and
//!   every test in the workspace (unit tests, each crate's integration binary, and the
//!   end-to-end tests that drive the real `cto` binary against the lab).
//! * `e2e` — only the end-to-end tests (`cto`'s integration binary).
//!
//! Tasks named in the design that later work adds (`chaos`, `bench`, `gitops-check`) are not
//! here yet and are reported as such rather than faked.

use std::process::{Command, ExitCode};

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(name: &str, mut cmd: Command) -> bool {
    eprintln!("xtask: {name}: {cmd:?}");
    match cmd.status() {
        Ok(status) if status.success() => true,
        Ok(status) => {
            eprintln!("xtask: {name} failed ({status})");
            false
        }
        Err(e) => {
            eprintln!("xtask: cannot run {name}: {e}");
            false
        }
    }
}

/// True when `program --version`-like `args` runs successfully.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The end-to-end tests drive the lab's Kubernetes API with a real `kubectl`. Machines of this
/// project's kind ship one; if it is missing, install Debian's (as root) or say how.
fn ensure_kubectl() -> bool {
    if runs("kubectl", &["version", "--client"]) {
        return true;
    }
    eprintln!("xtask: kubectl is missing; the end-to-end tests need it");
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if is_root && runs("apt-get", &["--version"]) {
        let mut update = Command::new("apt-get");
        update.args(["update", "-qq"]);
        let mut install = Command::new("apt-get");
        install
            .args(["install", "-y", "-qq", "kubernetes-client"])
            .env("DEBIAN_FRONTEND", "noninteractive");
        if run("apt-get update", update) && run("install kubectl", install) {
            return runs("kubectl", &["version", "--client"]);
        }
    }
    eprintln!("xtask: install kubectl (Debian: `apt-get install kubernetes-client`) and run again");
    false
}

fn ci() -> bool {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    let mut test = cargo();
    test.args(["test", "--workspace"]);
    run("format check", fmt) && run("clippy", clippy) && ensure_kubectl() && run("tests", test)
}

fn e2e() -> bool {
    if !ensure_kubectl() {
        return false;
    }
    let mut test = cargo();
    test.args(["test", "-p", "cto", "--test", "it"]);
    run("end-to-end tests", test)
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let ok = match task.as_str() {
        "ci" => ci(),
        "e2e" => e2e(),
        "chaos" | "bench" | "gitops-check" => {
            eprintln!(
                "xtask: `{task}` is part of the design but not implemented yet in this version"
            );
            return ExitCode::from(2);
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|e2e>\n  ci   fmt check + clippy -D warnings + every test\n  e2e  end-to-end tests of the real cto binary against the lab"
            );
            return ExitCode::from(2);
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
