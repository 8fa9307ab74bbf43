//! `metal` owns the machines: everything the installer needs to know about the servers it rents.
//!
//! * [`latitude`] — a typed client for the real Latitude.sh REST API (JSON:API bodies, paging,
//!   open enums, rate limiting and retries).
//! * [`provider`] — the provider-neutral [`provider::Provider`] trait the installer talks to, and
//!   its Latitude implementation. A second provider plugs in here without touching the installer.
//! * [`inventory`] — stock snapshots and region selection (`--auto-region`).
//! * [`talos`] — the Talos side of a machine: Image Factory schematics and iPXE URLs, and the
//!   maintenance-mode probe on port 50000.
//! * [`secret`] — the redacting wrapper that holds the API key.
//! * [`urls`] — the rules for URLs the user gives (no userinfo; plain HTTP only to a literal
//!   loopback address).
//!
//! `metal` never knows about install steps or checkpoints.

pub mod inventory;
pub mod latitude;
pub mod provider;
pub mod secret;
pub mod talos;
pub mod urls;
