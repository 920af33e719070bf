//! `GET /internal/metrics` (SPEC 7.2): the fleet in Prometheus's text exposition format
//! (version 0.0.4), rendered at scrape time from the registry's snapshot, the HTTP workers'
//! attempt counts and `/proc/self`.
//!
//! Nothing is kept here: every number already lives where it is counted (the endpoint
//! machine's check tally, the endpoint counters, `stats`), so a scrape is a snapshot turned
//! into text. Label values are bounded: endpoint names come from the config, model names
//! from the catalog (`stats::model_label`), everything else from fixed lists. Names carry
//! the `corral_` prefix and base units (seconds, bytes).
//!
//! The wait queue's figures come from the queue's own tally (SPEC 10.3); the backends' load
//! reports (10.1) from each endpoint's load board, through the snapshot.

use std::fmt::{Display, Write};
use std::time::Duration;

use corral_actors::health::Status;
use corral_actors::view::{
    BreakerView, CheckResult, EndpointStatus, FleetSnapshot, CHECK_LATENCY_BUCKETS,
};

use crate::proxy::queue::QueueView;
use crate::stats::AttemptCount;

/// The media type of the text format Prometheus scrapes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The breaker states a `corral_circuit_breaker_state` gauge is written for.
const BREAKER_STATES: [&str; 3] = ["closed", "open", "half-open"];

/// Everything one scrape shows, gathered by the handler.
pub struct Scrape<'a> {
    pub fleet: &'a FleetSnapshot,
    /// Sorted by endpoint, model and code.
    pub attempts: &'a [AttemptCount],
    pub uptime: Duration,
    pub process: Option<ProcessStats>,
    pub queue: &'a QueueView,
}

/// The process's own resources, from `/proc/self` (Linux only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStats {
    pub resident_bytes: u64,
    pub open_fds: u64,
    /// The soft limit on open files.
    pub max_fds: Option<u64>,
}

impl ProcessStats {
    /// `None` where there is no `/proc/self` (not Linux): the process families are left out.
    pub fn read() -> Option<ProcessStats> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let limits = std::fs::read_to_string("/proc/self/limits").ok();
        Some(ProcessStats {
            resident_bytes: resident_bytes(&status)?,
            // `read_dir` holds a descriptor of its own while it lists them.
            open_fds: open_fds.saturating_sub(1),
            max_fds: limits.as_deref().and_then(max_open_files),
        })
    }
}

/// `VmRSS:    12345 kB` in `/proc/self/status`, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The soft limit of `Max open files  1024  524288  files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The whole exposition.
pub fn render(scrape: &Scrape) -> String {
    let mut out = Exposition::default();
    let endpoints = &scrape.fleet.endpoints;

    out.family(
        "corral_build_info",
        "gauge",
        "Always 1; the version of Corral running.",
    );
    out.sample(
        "corral_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.family(
        "corral_uptime_seconds",
        "gauge",
        "Seconds since Corral started.",
    );
    out.sample("corral_uptime_seconds", &[], scrape.uptime.as_secs_f64());

    out.family(
        "corral_endpoint_status",
        "gauge",
        "1 for the endpoint's current status, 0 for the others.",
    );
    for e in endpoints {
        for status in Status::ALL {
            let labels = [("endpoint", e.name.as_ref()), ("status", status.as_str())];
            out.sample(
                "corral_endpoint_status",
                &labels,
                u8::from(e.view.status == status),
            );
        }
    }

    out.family(
        "corral_checks_total",
        "counter",
        "Health checks by result (pass, fail, busy: timed out while serving, warming: loading a model); counts from zero again after an endpoint actor restart.",
    );
    for e in endpoints {
        for result in CheckResult::ALL {
            let labels = [("endpoint", e.name.as_ref()), ("result", result.as_str())];
            let n = e.view.check_tally.count(result);
            out.sample("corral_checks_total", &labels, n);
        }
    }

    out.family(
        "corral_check_duration_seconds",
        "histogram",
        "Latency of health checks, every result included.",
    );
    for e in endpoints {
        check_histogram(&mut out, e);
    }

    out.family(
        "corral_circuit_breaker_state",
        "gauge",
        "1 for the breaker's current state (closed, open, half-open), 0 for the others.",
    );
    for e in endpoints {
        for (breaker, view) in breakers(e) {
            for state in BREAKER_STATES {
                let labels = [
                    ("endpoint", e.name.as_ref()),
                    ("breaker", breaker),
                    ("state", state),
                ];
                let on = u8::from(view.state == state);
                out.sample("corral_circuit_breaker_state", &labels, on);
            }
        }
    }
    out.family(
        "corral_circuit_breaker_failures",
        "gauge",
        "Consecutive failures the breaker has counted.",
    );
    for e in endpoints {
        for (breaker, view) in breakers(e) {
            let labels = [("endpoint", e.name.as_ref()), ("breaker", breaker)];
            out.sample("corral_circuit_breaker_failures", &labels, view.failures);
        }
    }

    out.family(
        "corral_requests_total",
        "counter",
        "Proxied attempts by endpoint, model and the backend's status code (code=\"none\": no response head came). A model no endpoint lists is counted as model=\"(other)\", a request naming none as model=\"(none)\".",
    );
    for a in scrape.attempts {
        let code = a.code.map(|c| c.to_string());
        let labels = [
            ("endpoint", a.endpoint.as_ref()),
            ("model", a.model.as_str()),
            ("code", code.as_deref().unwrap_or("none")),
        ];
        out.sample("corral_requests_total", &labels, a.count);
    }
    per_endpoint(
        &mut out,
        endpoints,
        ("corral_request_failures_total", "counter"),
        "Proxied attempts that failed through the backend's doing (connection, timeout, a retry_on_status answer).",
        |e| e.traffic.failures,
    );
    per_endpoint(
        &mut out,
        endpoints,
        ("corral_retries_total", "counter"),
        "Failed attempts after which the request failed over to another endpoint.",
        |e| e.traffic.retries,
    );
    per_endpoint(
        &mut out,
        endpoints,
        ("corral_in_flight_requests", "gauge"),
        "Proxied requests to the endpoint under way now.",
        |e| e.traffic.in_flight,
    );
    per_endpoint(
        &mut out,
        endpoints,
        ("corral_endpoint_models", "gauge"),
        "Models in the endpoint's last discovered list.",
        |e| e.view.model_count as u64,
    );
    per_endpoint(
        &mut out,
        endpoints,
        ("corral_endpoint_restarts_total", "counter"),
        "Times the supervisor restarted the endpoint's actor.",
        |e| u64::from(e.view.restarts),
    );

    load_families(&mut out, endpoints);
    queue_families(&mut out, scrape.queue);

    if let Some(p) = scrape.process {
        out.family(
            "corral_process_resident_memory_bytes",
            "gauge",
            "Resident set size of the Corral process.",
        );
        out.sample(
            "corral_process_resident_memory_bytes",
            &[],
            p.resident_bytes,
        );
        out.family(
            "corral_process_open_fds",
            "gauge",
            "File descriptors the Corral process has open.",
        );
        out.sample("corral_process_open_fds", &[], p.open_fds);
        if let Some(max) = p.max_fds {
            out.family(
                "corral_process_max_fds",
                "gauge",
                "The process's soft limit on open file descriptors.",
            );
            out.sample("corral_process_max_fds", &[], max);
        }
    }
    out.text
}

/// A load-report gauge: its name, its help and the report field it shows.
type LoadGauge = (
    &'static str,
    &'static str,
    fn(&corral_actors::load::LoadReport) -> Option<f64>,
);

/// The backends' own load reports (SPEC 10.1): only fresh reports, only the fields a
/// source has.
fn load_families(out: &mut Exposition, endpoints: &[EndpointStatus]) {
    let fresh = || {
        endpoints
            .iter()
            .filter_map(|e| Some((e.name.as_ref(), e.load.as_ref().filter(|l| !l.stale)?)))
    };
    let gauges: [LoadGauge; 4] = [
        (
            "corral_backend_requests_running",
            "Requests the backend itself reports running (all its clients, not only Corral's).",
            |r| r.running.map(|n| n as f64),
        ),
        (
            "corral_backend_requests_waiting",
            "Requests the backend itself reports waiting in its own queue.",
            |r| r.waiting.map(|n| n as f64),
        ),
        (
            "corral_backend_slots",
            "Requests the backend serves at once, as it reports (llama.cpp slots).",
            |r| r.capacity.map(|n| n as f64),
        ),
        (
            "corral_backend_kv_cache_usage_ratio",
            "KV-cache use the backend reports, 0 to 1.",
            |r| r.kv_cache,
        ),
    ];
    for (name, help, value) in gauges {
        if fresh().all(|(_, l)| value(&l.report).is_none()) {
            continue;
        }
        out.family(name, "gauge", help);
        for (endpoint, l) in fresh() {
            if let Some(v) = value(&l.report) {
                out.sample(name, &[("endpoint", endpoint)], v);
            }
        }
    }
    if fresh().any(|(_, l)| l.report.loaded_models.is_some()) {
        out.family(
            "corral_backend_loaded_models",
            "gauge",
            "Models the backend reports in memory now (Ollama /api/ps, LM Studio).",
        );
        for (endpoint, l) in fresh() {
            if let Some(models) = &l.report.loaded_models {
                out.sample(
                    "corral_backend_loaded_models",
                    &[("endpoint", endpoint)],
                    models.len(),
                );
            }
        }
    }
    out.family(
        "corral_load_report_age_seconds",
        "gauge",
        "Age of the endpoint's latest load report (stale after 3 x load_interval).",
    );
    for e in endpoints {
        if let Some(l) = &e.load {
            let labels = [("endpoint", e.name.as_ref())];
            out.sample(
                "corral_load_report_age_seconds",
                &labels,
                l.age.as_secs_f64(),
            );
        }
    }
}

/// The wait queue (SPEC 10.3).
fn queue_families(out: &mut Exposition, q: &QueueView) {
    out.family(
        "corral_queue_waiting",
        "gauge",
        "Requests waiting for an endpoint under its max_concurrency.",
    );
    out.sample("corral_queue_waiting", &[], q.waiting);
    out.family(
        "corral_queue_size",
        "gauge",
        "How many requests may wait at once (proxy.queue.size).",
    );
    out.sample("corral_queue_size", &[], q.size);
    out.family(
        "corral_queue_wait_seconds",
        "histogram",
        "How long requests admitted from the queue waited.",
    );
    for (bound, count) in &q.wait_buckets {
        let le = bound.to_string();
        out.sample(
            "corral_queue_wait_seconds_bucket",
            &[("le", le.as_str())],
            count,
        );
    }
    out.sample(
        "corral_queue_wait_seconds_bucket",
        &[("le", "+Inf")],
        q.admitted,
    );
    out.sample(
        "corral_queue_wait_seconds_sum",
        &[],
        q.wait_sum.as_secs_f64(),
    );
    out.sample("corral_queue_wait_seconds_count", &[], q.admitted);
    out.family(
        "corral_queue_rejected_total",
        "counter",
        "Requests that left the queue unserved, by reason: full (429), timeout (503), client_gone, no_endpoint (every endpoint they could use left rotation).",
    );
    for (reason, n) in [
        ("full", q.rejected_full),
        ("timeout", q.timed_out),
        ("client_gone", q.client_gone),
        ("no_endpoint", q.failed),
    ] {
        out.sample("corral_queue_rejected_total", &[("reason", reason)], n);
    }
}

fn breakers(e: &EndpointStatus) -> [(&'static str, &BreakerView); 2] {
    let b = &e.view.circuit_breaker;
    [("health", &b.health), ("proxy", &b.proxy)]
}

fn check_histogram(out: &mut Exposition, e: &EndpointStatus) {
    let tally = &e.view.check_tally;
    let name = e.name.as_ref();
    for (bound, count) in CHECK_LATENCY_BUCKETS.iter().zip(tally.buckets) {
        let le = bound.to_string();
        let labels = [("endpoint", name), ("le", le.as_str())];
        out.sample("corral_check_duration_seconds_bucket", &labels, count);
    }
    let total = tally.total();
    let labels = [("endpoint", name), ("le", "+Inf")];
    out.sample("corral_check_duration_seconds_bucket", &labels, total);
    let labels = [("endpoint", name)];
    let sum = tally.latency_sum.as_secs_f64();
    out.sample("corral_check_duration_seconds_sum", &labels, sum);
    out.sample("corral_check_duration_seconds_count", &labels, total);
}

/// A family with one sample per endpoint, labelled by its name.
fn per_endpoint(
    out: &mut Exposition,
    endpoints: &[EndpointStatus],
    (name, kind): (&str, &str),
    help: &str,
    value: impl Fn(&EndpointStatus) -> u64,
) {
    out.family(name, kind, help);
    for e in endpoints {
        out.sample(name, &[("endpoint", e.name.as_ref())], value(e));
    }
}

/// The text being written.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// The `HELP` and `TYPE` lines that open a family.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        // Writing to a `String` cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                escape_label_value(&mut self.text, v);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value as the text format quotes it: backslash, double quote and line feed escaped.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("m", &[("a", "x\"y\\z\nw"), ("b", "ok")], 2);
        assert_eq!(out.text, "m{a=\"x\\\"y\\\\z\\nw\",b=\"ok\"} 2\n");
    }

    #[test]
    fn families_open_with_help_and_type() {
        let mut out = Exposition::default();
        out.family("corral_x_total", "counter", "Line one\nand a \\ backslash.");
        out.sample("corral_x_total", &[], 0.5);
        assert_eq!(
            out.text,
            "# HELP corral_x_total Line one\\nand a \\\\ backslash.\n\
             # TYPE corral_x_total counter\ncorral_x_total 0.5\n"
        );
    }

    #[test]
    fn proc_files_are_read_in_bytes_and_soft_limits() {
        let status = "Name:\tcorral\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(resident_bytes(status), Some(12345 * 1024));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            max_open_files("Max open files  unlimited  unlimited  files"),
            None
        );
    }

    #[test]
    fn an_empty_fleet_still_has_every_family_header() {
        let fleet = FleetSnapshot::default();
        let text = render(&Scrape {
            fleet: &fleet,
            attempts: &[],
            uptime: Duration::from_secs(3),
            process: None,
            queue: &crate::proxy::queue::WaitQueue::new(&Default::default()).view(),
        });
        assert!(text.contains("corral_uptime_seconds 3\n"), "{text}");
        assert!(text.contains("# TYPE corral_check_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE corral_requests_total counter\n"));
        assert!(
            !text.contains("corral_process_"),
            "no /proc, no process families"
        );
    }
}
