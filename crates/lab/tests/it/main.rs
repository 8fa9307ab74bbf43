//! Integration tests of the lab: the Latitude API over real HTTP and the Talos nodes over real
//! TLS + HTTP/2. Each test uses its own state directory, and each lab claims a free address block
//! of its own, so tests can run in parallel.

mod api;
mod harness;
mod kube;
mod kube_platform;
mod kube_write;
mod lifecycle;
mod postinstall;
mod talos;
mod timeline;
