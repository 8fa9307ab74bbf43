//! Integration tests of `metal`, one module per area.

mod latitude;
mod talos_probe;
