//! The end-to-end test harness, shared by every test in `tests/` through `mod common;`.
//!
//! - [`mock`]: controllable mock LLM backends (Ollama, vLLM, LM Studio, OpenAI without
//!   `/health`) on `127.0.0.1`, port 0, that can fail on demand and log what they receive.
//! - [`corral`]: the built `corral` binary as a child process with captured logs.
//! - [`http`]: a blocking std-only HTTP/1.1 client that shows streams as they arrive.
//! - [`wait`]: bounded polling, the only way the tests wait.
//!
//! Every test binary uses only part of this, hence the crate-wide allows.
#![allow(dead_code, unused_imports)]

pub mod corral;
pub mod http;
pub mod mock;
pub mod wait;

pub use corral::{run_corral, run_corral_in, write_config, Corral, Output};
pub use http::{get, get_json, post_json, Client, Resp, StreamResp};
pub use mock::{Behaviour, MockBackend, Persona, Seen};
pub use wait::{holds_for, poll_until, wait_for, wait_until};
