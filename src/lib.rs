//! Corral: the data plane and the daemon around the `corral-actors` control plane.
//!
//! `config` loads and validates the YAML file, `app` starts the control plane and the
//! actix-web server, `state` is what every handler shares, `proxy` forwards requests,
//! `status` serves the JSON status API, `telemetry` sets up logging, `demo` runs
//! `corral demo`.
//! `main.rs` is a thin shell over [`run`]; the end-to-end tests drive the built binary.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod debug;
pub mod demo;
pub mod errors;
pub mod events;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod state;
pub mod stats;
pub mod status;
pub mod telemetry;
pub mod ui;

pub use app::{run, run_with_reloads};
