//! End-to-end tests: the real `cto` binary against the lab, out of process, so that a killed
//! installer can be resumed against the same world.

mod bad_input;
mod blocks;
mod conformance;
mod destroy;
mod git_http;
mod gitops;
mod hardware;
mod harness;
mod hygiene;
mod install;
mod kubectl;
mod overlap;
mod ownership;
mod pinning;
mod platform;
mod post_install;
mod rate_limits;
mod regions;
mod reliability;
mod talos;
