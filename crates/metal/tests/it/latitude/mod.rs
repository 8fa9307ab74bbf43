//! `metal::latitude` against a Latitude-shaped HTTP server on 127.0.0.1.

mod client;
mod fake_api;
mod provider;
