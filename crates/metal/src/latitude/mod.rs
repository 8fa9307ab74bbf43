//! Latitude.sh: a typed client for the real REST API and its [`crate::provider::Provider`]
//! implementation.
//!
//! * [`model`] — the wire format (JSON:API envelopes, plans, sites, projects, servers, operating
//!   systems, SSH keys, the error envelope), lenient and with open enums.
//! * [`client`] — [`LatitudeClient`]: headers, paging, retries with backon, 429 handling.
//! * [`ratelimit`] — the shared sliding-window limiter (60 reads / 20 writes a minute).
//! * [`error`] — [`LatitudeError`] and its mapping to [`crate::provider::ProviderErrorKind`].
//! * [`provider`] — [`LatitudeProvider`], the provider-neutral view.

pub mod client;
pub mod error;
pub mod model;
pub mod provider;
pub mod ratelimit;

pub use client::{API_VERSION, ClientConfig, DEFAULT_BASE_URL, LatitudeClient, is_loopback_url};
pub use error::{ApiError, LatitudeError};
pub use model::{
    CreateServer, OperatingSystem, Plan, Project, Region, Reinstall, Server, ServerFilter,
    ServerStatus, ServerTag, SshKey, Tag, TagAttributes,
};
pub use provider::LatitudeProvider;
pub use ratelimit::{RateLimiter, RateStats, RequestClass};
