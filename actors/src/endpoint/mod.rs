//! One endpoint: the pure [`machine`] that owns its verdict (health, breakers, backoff,
//! schedules) and the [`actor`] shell that feeds it events and carries out its effects.

pub mod actor;
pub mod machine;
mod notes;

pub use actor::EndpointActor;
pub use machine::{Effects, EndpointMachine, Note};
