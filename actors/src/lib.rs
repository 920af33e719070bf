//! Corral's control plane: one actor per LLM endpoint that owns its health, a registry actor
//! that holds the fleet's latest view, and a supervisor that restarts whatever dies.
//!
//! The pure mechanisms (health state machine, backoff, circuit breaker, candidate selection,
//! platform profiles) have no actor, socket or clock inside; the actors feed them events and
//! time. This crate knows actix and awc but nothing of actix-web: the HTTP layer lives in the
//! `corral` crate and talks to the actors only through the messages in [`messages`].
//!
//! ```text
//!   FleetSupervisor ──starts/restarts──▶ EndpointActor × N ──EndpointUpdated──▶ RegistryActor
//!         └──────────starts/restarts──────────────────────────────────────────────────┘
//! ```

pub mod backoff;
pub mod balance;
pub mod breaker;
pub mod counters;
pub mod display;
pub mod endpoint;
pub mod health;
pub mod lifeline;
pub mod messages;
pub mod probe;
pub mod profiles;
pub mod registry;
pub mod routing;
pub mod select;
pub mod settings;
pub mod supervisor;

pub use endpoint::EndpointActor;
pub use registry::{Candidate, RegistryActor, RegistryHandle};
pub use supervisor::FleetSupervisor;
