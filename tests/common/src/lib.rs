//! The end-to-end test house: everything the tests in `tests/` share.
//!
//! - [`mock`]: controllable mock LLM backends (Ollama, vLLM, LM Studio, OpenAI without
//!   `/health`) on `127.0.0.1`, port 0, that fail on demand and log what they receive.
//! - [`scenario`]: one builder for a test's Corral config, started in-process
//!   ([`in_process::Corral`], the default) or as the built binary ([`process::CorralProcess`],
//!   for logs, signals and exit codes).
//! - [`client`]: the HTTP client (`ureq`) with Corral's status API and timed streams.
//! - [`raw`]: HTTP/1.1 by hand over a socket, for requests and clients no library imitates.
//! - [`oneshot`]: a backend by hand that closes every connection after one answer, and
//!   answers any bytes a test likes (garbage heads included).
//! - [`wait`]: bounded polling, the only way the tests wait.

pub mod client;
pub mod in_process;
pub mod mock;
pub mod oneshot;
pub mod process;
pub mod raw;
pub mod scenario;
pub mod wait;

pub use client::{chat, ndjson_lines, served_by, sse_events, Api, Resp};
pub use in_process::Corral;
pub use mock::{Behaviour, MockBackend, Persona};
pub use oneshot::{json_response, OneShotRequest, OneShotServer};
pub use process::{run_corral, write_config, CorralProcess, Output};
pub use raw::{status_in, RawConn};
pub use scenario::Scenario;
pub use wait::{wait_for, wait_until};
