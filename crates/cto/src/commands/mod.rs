//! One module per subcommand.

pub mod destroy;
pub mod health;
pub mod install;
pub mod lab;
pub mod regions;
pub mod status;
