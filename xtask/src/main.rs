//! Project automation, run as `cargo xtask <task>`.
//!
//! * `ci` — what CI runs: `cargo fmt --check`, `cargo clippy -D warnings` over every target, and
//!   every test in the workspace (unit tests, each crate's integration binary, and the
//!   end-to-end tests that drive the real `cto` binary against the lab).
//! * `e2e` — only the end-to-end tests (`cto`'s integration binary).
//! * `chaos --kills N --seed S [--nodes K] [--stop-after STEP] [--faults SPEC]` — kills the real
//!   `cto install` at N points drawn from the seed and resumes it each time, then checks it
//!   converged (see `chaos`); `ci` runs a small one (`--kills 5 --seed 1 --nodes 2`) last.
//! * `gitops-check` — validates the `gitops/` tree (see `gitops_check`); `ci` runs it before
//!   the tests.
//!
//! * `bench --nodes N [--control-planes 3] [--seed S] [--baseline sequential]` — runs the real
//!   `cto install` against a lab at Latitude's rate limits and prints one JSON object: wall
//!   time against the lab's critical path, request counts, peak RSS, CPU, resume overhead
//!   (see `bench` and docs/performance.md).

use std::process::{Command, ExitCode};

mod bench;
mod chaos;
mod gitops_check;
mod labproc;

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

/// Makes sure a command-line tool the tests use is there: `probe` runs it; when it fails and
/// this runs as root with apt-get (as on this project's machines and CI), Debian's `package` is
/// installed; otherwise the message says what to install.
fn ensure_tool(name: &str, probe: &[&str], package: &str) -> bool {
    if runs(name, probe) {
        return true;
    }
    eprintln!("xtask: {name} is missing; the tests need it");
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if is_root && runs("apt-get", &["--version"]) {
        let mut update = Command::new("apt-get");
        update.args(["update", "-qq"]);
        let mut install = Command::new("apt-get");
        install
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive");
        if run("apt-get update", update) && run(&format!("install {package}"), install) {
            return runs(name, probe);
        }
    }
    eprintln!("xtask: install {name} (Debian: `apt-get install {package}`) and run again");
    false
}

/// Tools the test suite drives: the real kubectl against the lab's Kubernetes API, openssl
/// to cross-check generated keys and certificates, and git (its `git http-backend` serves the
/// GitOps repositories of the preflight tests; Debian's `git` package ships it).
fn ensure_test_tools() -> bool {
    ensure_tool("kubectl", &["version", "--client"], "kubernetes-client")
        && ensure_tool("openssl", &["version"], "openssl")
        && ensure_tool("git", &["version"], "git")
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
    run("format check", fmt)
        && run("clippy", clippy)
        && gitops_check::run()
        && ensure_test_tools()
        && run("tests", test)
        && chaos_smoke()
}

/// The small chaos run CI makes after the tests: a 2-node install killed 5 times.
fn chaos_smoke() -> bool {
    eprintln!("xtask: chaos: --kills 5 --seed 1 --nodes 2");
    let args: Vec<String> = ["--kills", "5", "--seed", "1", "--nodes", "2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    chaos::run(&args)
}

fn e2e() -> bool {
    if !ensure_test_tools() {
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
        "gitops-check" => gitops_check::run(),
        "chaos" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            chaos::run(&args)
        }
        "bench" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            bench::run(&args)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|e2e|chaos|bench|gitops-check>\n  ci   fmt check + clippy -D warnings + every test\n  e2e  end-to-end tests of the real cto binary against the lab\n  gitops-check  validate the gitops/ tree\n  chaos --kills N --seed S [--nodes K] [--stop-after STEP] [--faults SPEC]  kill-anywhere convergence\n  bench --nodes N [--control-planes 3] [--seed S] [--baseline sequential]  installer vs the lab's critical path (JSON)"
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
