//! [`Scenario`]: one builder for every end-to-end test's Corral config — endpoints (name,
//! url, type, any further keys), the `server`, `proxy`, `health`, `discovery` and `logging`
//! sections and `${VAR}` values — which turns it into YAML and starts Corral from it,
//! in-process ([`Scenario::start`]) or as the built binary ([`Scenario::spawn`]).
//!
//! Values are YAML as written (`200ms`, `"Bearer ${KEY}"`, `{ failure_threshold: 5 }`). A key
//! set twice keeps the last value. The defaults suit tests: `127.0.0.1`, port 0, checks every
//! 200 ms with a 150 ms deadline, a 1 s shutdown grace so a stopping Corral never holds a
//! test up for the production default of 10 s, and `server.rate_limits` off: every test talks
//! from 127.0.0.1, and Olla's default of 50 at once per address would refuse the bursts that
//! tests of other things send. Tests of the limits set `.server("rate_limits", "{ … }")`
//! (`"{}"` for the production defaults).

use std::path::Path;

use crate::in_process::Corral;
use crate::mock::MockBackend;
use crate::process::{write_config, CorralProcess};

type Section = Vec<(String, String)>;

/// `server.rate_limits` with every bucket off (the house default; see above).
pub const RATE_LIMITS_OFF: &str =
    "{ global_requests_per_minute: 0, per_ip_requests_per_minute: 0, health_requests_per_minute: 0 }";

fn set(section: &mut Section, key: &str, value: &str) {
    section.retain(|(k, _)| k != key);
    section.push((key.to_string(), value.to_string()));
}

/// A Corral configuration under construction.
#[derive(Clone, Debug)]
pub struct Scenario {
    server: Section,
    proxy: Section,
    health: Section,
    discovery: Section,
    logging: Section,
    /// Each endpoint's keys, in order (`name`, `url`, `type` first).
    endpoints: Vec<Section>,
    /// `${VAR}` values: the whole environment the config sees in-process, and extra
    /// variables of the spawned binary.
    env: Vec<(String, String)>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario::new()
    }
}

impl Scenario {
    pub fn new() -> Scenario {
        let mut s = Scenario {
            server: Vec::new(),
            proxy: Vec::new(),
            health: Vec::new(),
            discovery: Vec::new(),
            logging: Vec::new(),
            endpoints: Vec::new(),
            env: Vec::new(),
        };
        set(&mut s.server, "host", "127.0.0.1");
        set(&mut s.server, "port", "0");
        set(&mut s.server, "shutdown_timeout", "1s");
        set(&mut s.server, "rate_limits", RATE_LIMITS_OFF);
        set(&mut s.health, "check_interval", "200ms");
        set(&mut s.health, "check_timeout", "150ms");
        s
    }

    /// A key of `server:`.
    pub fn server(mut self, key: &str, value: &str) -> Self {
        set(&mut self.server, key, value);
        self
    }

    /// A key of `proxy:`.
    pub fn proxy(mut self, key: &str, value: &str) -> Self {
        set(&mut self.proxy, key, value);
        self
    }

    /// A key of `health:` (the defaults of every endpoint).
    pub fn health(mut self, key: &str, value: &str) -> Self {
        set(&mut self.health, key, value);
        self
    }

    /// A key of `discovery:` (beside `static`, which holds the endpoints).
    pub fn discovery(mut self, key: &str, value: &str) -> Self {
        set(&mut self.discovery, key, value);
        self
    }

    /// A key of `logging:`.
    pub fn logging(mut self, key: &str, value: &str) -> Self {
        set(&mut self.logging, key, value);
        self
    }

    /// A variable for `${NAME}` in config values.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// An endpoint with the health defaults.
    pub fn endpoint(self, name: &str, url: &str, kind: &str) -> Self {
        self.endpoint_with(name, url, kind, &[])
    }

    /// An endpoint with more keys (`("priority", "100")`, `("check_interval", "1s")`, ...).
    pub fn endpoint_with(
        mut self,
        name: &str,
        url: &str,
        kind: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let mut e = Vec::new();
        set(&mut e, "name", name);
        set(&mut e, "url", &format!("\"{url}\""));
        set(&mut e, "type", kind);
        for (k, v) in extra {
            set(&mut e, k, v);
        }
        self.endpoints.push(e);
        self
    }

    /// An endpoint for `mock`: its name, its URL, the type of its persona.
    pub fn mock(self, mock: &MockBackend) -> Self {
        self.mock_with(mock, &[])
    }

    /// As [`Scenario::mock`], with more keys.
    pub fn mock_with(self, mock: &MockBackend, extra: &[(&str, &str)]) -> Self {
        let (name, url, kind) = (mock.name(), mock.url(), mock.persona().corral_type());
        self.endpoint_with(name, &url, kind, extra)
    }

    /// The config file this scenario describes.
    pub fn yaml(&self) -> String {
        let mut out = String::new();
        let mut section = |name: &str, keys: &Section| {
            if !keys.is_empty() {
                out.push_str(&format!("{name}:\n"));
                for (k, v) in keys {
                    out.push_str(&format!("  {k}: {v}\n"));
                }
            }
        };
        section("server", &self.server);
        section("proxy", &self.proxy);
        section("health", &self.health);
        section("logging", &self.logging);
        out.push_str("discovery:\n");
        for (k, v) in &self.discovery {
            out.push_str(&format!("  {k}: {v}\n"));
        }
        out.push_str("  static:\n    endpoints:\n");
        if self.endpoints.is_empty() {
            out.truncate(out.len() - 1);
            out.push_str(" []\n");
        }
        for e in &self.endpoints {
            for (i, (k, v)) in e.iter().enumerate() {
                let lead = if i == 0 { "      - " } else { "        " };
                out.push_str(&format!("{lead}{k}: {v}\n"));
            }
        }
        out
    }

    /// The config, parsed and validated as the binary would; panics with the reason if not.
    pub fn config(&self) -> corral::config::Config {
        let lookup = |var: &str| {
            self.env
                .iter()
                .find(|(k, _)| k == var)
                .map(|(_, v)| v.clone())
        };
        corral::config::parse(&self.yaml(), "test scenario", &lookup)
            .unwrap_or_else(|e| panic!("{e}\n--- config ---\n{}", self.yaml()))
    }

    /// Corral in this process, serving once this returns.
    pub fn start(&self) -> Corral {
        Corral::start(self.config())
    }

    /// Corral in this process, started from a temp config file so that it can reload
    /// ([`Corral::rewrite_config`], then `POST /internal/reload`).
    pub fn start_from_file(&self) -> Corral {
        let file = write_config(&self.yaml());
        let config = corral::config::load(&file)
            .unwrap_or_else(|e| panic!("{e}\n--- config ---\n{}", self.yaml()));
        Corral::start_with_file(config, Some(file))
    }

    /// The built binary `bin` (`env!("CARGO_BIN_EXE_corral")`) with this config, once it
    /// logs that it listens. For tests of what only a process has: logs, signals, exit codes.
    pub fn spawn(&self, bin: impl AsRef<Path>) -> CorralProcess {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        CorralProcess::start(bin.as_ref(), &self.yaml(), &env)
    }
}
