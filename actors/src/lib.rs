//! Corral's control plane: one actor per LLM endpoint that owns its health, a registry actor
//! that holds the fleet's latest view, and a supervisor that restarts whatever dies.
//!
//! The pure mechanisms (health state machine, backoff, circuit breaker, candidate selection,
//! platform profiles, the model catalog, the sticky-session table, the readers of backends' own load reports, the status
//! read model, and the endpoint machine that combines them) have no actor, socket or clock
//! inside; the actors feed them events and time. This crate knows actix and awc but nothing of actix-web: the HTTP layer lives in the
//! `corral` crate and talks to the actors only through the messages in [`messages`].
//!
//! ```text
//!   FleetSupervisor ──starts/restarts──▶ EndpointActor × N ──EndpointUpdated──▶ RegistryActor
//!         └──────────starts/restarts──────────────────────────────────────────────────┘
//! ```

// Pure: no actor, socket or clock.
pub mod backoff;
pub mod balance;
pub mod breaker;
pub mod catalog;
pub mod counters;
pub mod display;
pub mod events;
pub mod health;
pub mod load;
pub mod load_board;
pub mod load_reads;
pub mod model_facts;
pub mod outcome;
pub mod profiles;
pub mod reload;
pub mod select;
pub mod sessions;
pub mod settings;
pub mod view;
pub mod waitlist;

// The contract between the actors, and the shells around the pure logic.
pub mod endpoint;
pub mod lifeline;
pub mod messages;
pub mod probe;
pub mod registry;
pub mod routing;
pub mod supervisor;
pub mod transport;

pub use endpoint::EndpointActor;
pub use events::EventHub;
pub use registry::{RegistryActor, RegistryHandle};
pub use routing::Candidate;
pub use supervisor::FleetSupervisor;
