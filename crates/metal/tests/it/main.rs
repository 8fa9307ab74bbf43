//! Integration tests of `metal`, one module per area.

mod latitude;
mod talos_client;
mod talos_probe;
