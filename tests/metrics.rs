//! `GET /internal/metrics` (SPEC 7.2) from outside, Corral in-process: every family is there
//! with its type, the text is valid (parsed by `openmetrics-parser` always, and checked by
//! `promtool check metrics` when promtool is on PATH), the numbers move with what happens
//! (checks, a backend dying, an actor restart, requests by status code), the route needs the
//! internal token, and a model nobody lists never becomes a label value of its own.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use house::*;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricFamily, PrometheusType, PrometheusValue};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "metrics-s3cret";

/// Every family, with its type.
const FAMILIES: [(&str, PrometheusType); 16] = [
    ("corral_build_info", PrometheusType::Gauge),
    ("corral_uptime_seconds", PrometheusType::Gauge),
    ("corral_endpoint_status", PrometheusType::Gauge),
    ("corral_checks_total", PrometheusType::Counter),
    ("corral_check_duration_seconds", PrometheusType::Histogram),
    ("corral_circuit_breaker_state", PrometheusType::Gauge),
    ("corral_circuit_breaker_failures", PrometheusType::Gauge),
    ("corral_requests_total", PrometheusType::Counter),
    ("corral_request_failures_total", PrometheusType::Counter),
    ("corral_retries_total", PrometheusType::Counter),
    ("corral_in_flight_requests", PrometheusType::Gauge),
    ("corral_endpoint_models", PrometheusType::Gauge),
    ("corral_endpoint_restarts_total", PrometheusType::Counter),
    (
        "corral_process_resident_memory_bytes",
        PrometheusType::Gauge,
    ),
    ("corral_process_open_fds", PrometheusType::Gauge),
    ("corral_process_max_fds", PrometheusType::Gauge),
];

fn chat(model: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": "hi" }] })
}

/// Fast checks, so that counters move within a test's patience.
fn fast() -> Scenario {
    Scenario::new()
        .health("check_interval", "200ms")
        .health("check_timeout", "150ms")
}

/// One scrape, parsed.
struct Scrape {
    text: String,
    families: HashMap<String, MetricFamily<PrometheusType, PrometheusValue>>,
}

/// `GET /internal/metrics`, which must be 200 with the text format's media type and parse.
fn scrape(api: &Api) -> Scrape {
    let resp = api.get("/internal/metrics");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = resp.text();
    let parsed = parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("not valid Prometheus text: {e:?}\n{text}"));
    Scrape {
        text,
        families: parsed.families,
    }
}

impl Scrape {
    fn family(&self, name: &str) -> &MetricFamily<PrometheusType, PrometheusValue> {
        self.families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name} in\n{}", self.text))
    }

    /// The value of the one sample of `family` with these labels (a histogram's: its count).
    fn value(&self, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .family(family)
            .iter_samples()
            .filter(|s| {
                let set = s.get_labelset().expect("a label set");
                labels
                    .iter()
                    .all(|(k, v)| set.get_label_value(k) == Some(*v))
            })
            .map(|s| number(&s.value))
            .collect();
        assert!(found.len() <= 1, "{family} {labels:?} is ambiguous");
        found.first().copied()
    }

    fn get(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(family, labels)
            .unwrap_or_else(|| panic!("no {family} {labels:?} in\n{}", self.text))
    }

    /// Every value `label` takes in `family`.
    fn label_values(&self, family: &str, label: &str) -> BTreeSet<String> {
        self.family(family)
            .iter_samples()
            .filter_map(|s| {
                let set = s.get_labelset().ok()?;
                set.get_label_value(label).map(str::to_string)
            })
            .collect()
    }
}

fn number(v: &PrometheusValue) -> f64 {
    match v {
        PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
        PrometheusValue::Counter(c) => c.value.as_f64(),
        PrometheusValue::Histogram(h) => h.count.unwrap_or_default() as f64,
        PrometheusValue::Summary(s) => s.count.unwrap_or_default() as f64,
    }
}

/// `promtool check metrics` (Prometheus's own linter) on `text`, when promtool is on PATH;
/// otherwise says so and passes (`.ci/run` installs it).
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!(
            "SKIP promtool check: promtool is not on PATH (Debian package `prometheus`); \
             the text was checked by openmetrics-parser only"
        );
        return;
    };
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("promtool's status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("promtool check metrics did not finish within 30s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("promtool's output");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n--- metrics ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

#[test]
fn every_family_is_there_valid_behind_the_token_and_checks_are_counted() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    a.set_models(&["m1"]);
    let b = MockBackend::start_named(Persona::Ollama, "b");
    b.set_models(&["m2"]);
    let corral = fast()
        .server("internal_token", TOKEN)
        .mock(&a)
        .mock(&b)
        .start();
    assert_eq!(corral.get("/internal/metrics").status, 401, "token needed");
    let api = Api::new(corral.url()).with_token(TOKEN);
    api.wait_all_healthy(2, WAIT);
    wait_until(WAIT, "models known", || api.model_names().len() == 2);
    assert_eq!(
        api.post_json("/v1/chat/completions", &chat("m1")).status,
        200
    );

    let first = scrape(&api);
    promtool_check(&first.text);
    for (name, kind) in FAMILIES {
        let family = first.family(name);
        assert_eq!(family.family_type, kind, "{name}");
        assert!(!family.help.is_empty(), "{name} has HELP");
        assert!(family.iter_samples().next().is_some(), "{name} has samples");
    }
    assert!(
        first.families.keys().all(|n| n.starts_with("corral_")),
        "{:?}",
        first.families.keys()
    );
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(first.get("corral_build_info", &version), 1.0);
    for e in ["a", "b"] {
        let status = first.label_values("corral_endpoint_status", "status");
        assert_eq!(status.len(), 6, "{status:?}");
        let on = |s| first.get("corral_endpoint_status", &[("endpoint", e), ("status", s)]);
        assert_eq!(on("healthy"), 1.0);
        assert_eq!(on("unhealthy") + on("unknown") + on("degraded"), 0.0);
        let breaker = |br, s| {
            let labels = [("endpoint", e), ("breaker", br), ("state", s)];
            first.get("corral_circuit_breaker_state", &labels)
        };
        assert_eq!(
            (breaker("health", "closed"), breaker("proxy", "open")),
            (1.0, 0.0)
        );
        // The histogram counts every check the counters count.
        let checks: f64 = ["pass", "fail", "busy", "warming"]
            .iter()
            .map(|r| first.get("corral_checks_total", &[("endpoint", e), ("result", r)]))
            .sum();
        let observed = first.get("corral_check_duration_seconds", &[("endpoint", e)]);
        assert!(checks >= 1.0 && observed == checks, "{checks} {observed}");
        assert_eq!(first.get("corral_endpoint_models", &[("endpoint", e)]), 1.0);
    }
    let served = [("endpoint", "a"), ("model", "m1"), ("code", "200")];
    assert_eq!(first.get("corral_requests_total", &served), 1.0);
    assert!(first.get("corral_process_resident_memory_bytes", &[]) > 1e6);
    assert!(first.get("corral_process_open_fds", &[]) >= 3.0);

    let passes = |s: &Scrape| {
        s.get(
            "corral_checks_total",
            &[("endpoint", "a"), ("result", "pass")],
        )
    };
    let before = passes(&first);
    wait_until(WAIT, "a's pass count goes up between scrapes", || {
        passes(&scrape(&api)) > before
    });
}

#[test]
fn a_dead_backend_flips_its_status_gauge_and_opens_its_health_breaker() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    let corral = fast().mock_with(&a, &[("max_backoff", "400ms")]).start();
    corral.wait_status("a", "healthy", WAIT);
    let status = |s: &Scrape, st| {
        s.get(
            "corral_endpoint_status",
            &[("endpoint", "a"), ("status", st)],
        )
    };
    let now = scrape(&corral);
    assert_eq!(
        (status(&now, "healthy"), status(&now, "unhealthy")),
        (1.0, 0.0)
    );
    assert_eq!(
        now.get(
            "corral_checks_total",
            &[("endpoint", "a"), ("result", "fail")]
        ),
        0.0
    );

    a.refuse();
    wait_until(WAIT, "status gauge flips to unhealthy", || {
        let s = scrape(&corral);
        status(&s, "unhealthy") == 1.0 && status(&s, "healthy") == 0.0
    });
    wait_until(WAIT, "health breaker open, failures counted", || {
        let s = scrape(&corral);
        let open = [("endpoint", "a"), ("breaker", "health"), ("state", "open")];
        let closed = [
            ("endpoint", "a"),
            ("breaker", "health"),
            ("state", "closed"),
        ];
        let failures = [("endpoint", "a"), ("breaker", "health")];
        s.get("corral_circuit_breaker_state", &open) == 1.0
            && s.get("corral_circuit_breaker_state", &closed) == 0.0
            && s.get("corral_circuit_breaker_failures", &failures) >= 3.0
            && s.get(
                "corral_checks_total",
                &[("endpoint", "a"), ("result", "fail")],
            ) >= 3.0
    });
}

#[cfg(feature = "fault-injection")]
#[test]
fn an_actor_restart_is_counted() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    let corral = fast().mock(&a).start();
    corral.wait_status("a", "healthy", WAIT);
    let restarts = |s: &Scrape| s.get("corral_endpoint_restarts_total", &[("endpoint", "a")]);
    assert_eq!(restarts(&scrape(&corral)), 0.0);
    let resp = corral.request("POST", "/internal/debug/crash/a", &[], b"");
    assert_eq!(resp.status, 202, "{}", resp.text());
    wait_until(WAIT, "restart counted", || {
        restarts(&scrape(&corral)) == 1.0
    });
}

#[test]
fn requests_are_counted_by_code_and_unlisted_models_share_one_label() {
    let c = MockBackend::start_named(Persona::Vllm, "c");
    c.set_models(&["gamma"]);
    let corral = fast()
        .proxy("routing_strategy", "optimistic")
        .mock(&c)
        .start();
    corral.wait_status("c", "healthy", WAIT);
    wait_until(WAIT, "gamma known", || corral.model_names() == ["gamma"]);

    for model in ["gamma", "gamma", "unlisted-1", "unlisted-2", "unlisted-3"] {
        let resp = corral.post_json("/v1/chat/completions", &chat(model));
        assert_eq!(resp.status, 200, "optimistic routing forwards {model}");
    }
    c.set_behaviour_for("/v1/chat", Behaviour::Status(400));
    assert_eq!(
        corral
            .post_json("/v1/chat/completions", &chat("gamma"))
            .status,
        400
    );
    // 503 is a retry_on_status code; with no other endpoint the answer is passed on.
    c.set_behaviour_for("/v1/chat", Behaviour::Status(503));
    assert_eq!(
        corral
            .post_json("/v1/chat/completions", &chat("gamma"))
            .status,
        503
    );

    let s = scrape(&corral);
    promtool_check(&s.text);
    let count = |model, code| {
        let labels = [("endpoint", "c"), ("model", model), ("code", code)];
        s.value("corral_requests_total", &labels).unwrap_or(0.0)
    };
    assert_eq!(count("gamma", "200"), 2.0);
    assert_eq!(count("(other)", "200"), 3.0, "{}", s.text);
    assert_eq!(count("gamma", "400"), 1.0);
    assert_eq!(count("gamma", "503"), 1.0);
    assert_eq!(
        s.label_values("corral_requests_total", "model"),
        BTreeSet::from(["(other)".to_string(), "gamma".to_string()]),
        "label values stay bounded: {}",
        s.text
    );
    assert!(!s.text.contains("unlisted"), "{}", s.text);
    assert_eq!(
        s.get("corral_request_failures_total", &[("endpoint", "c")]),
        1.0
    );
    assert_eq!(s.get("corral_retries_total", &[("endpoint", "c")]), 0.0);
    assert_eq!(
        s.get("corral_in_flight_requests", &[("endpoint", "c")]),
        0.0
    );
}

/// The parser is the check that always runs, so it must bite: each of these is a mistake a
/// hand-written exposition could make.
#[test]
fn the_parser_rejects_what_promtool_would() {
    let broken = [
        ("unescaped quote", "# TYPE a_total counter\na_total{e=\"q\"\"} 1\n"),
        ("no +Inf bucket", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"),
        ("buckets not cumulative", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"),
        ("family split in two", "# TYPE g gauge\ng{a=\"1\"} 1\n# TYPE k gauge\nk 1\ng{a=\"2\"} 1\n"),
        ("two types", "# TYPE g gauge\n# TYPE g counter\ng 1\n"),
    ];
    for (what, text) in broken {
        assert!(parse_prometheus(text).is_err(), "{what} accepted:\n{text}");
    }
    let fine = "# HELP a_total x\n# TYPE a_total counter\na_total{e=\"q\\\"\\\\\\n\"} 1\n";
    parse_prometheus(fine).expect("escaped quote, backslash and line feed");
}

/// SPEC 10: the backends' load reports and the wait queue are in the scrape, with the
/// numbers the backends reported and the refusals that happened, and promtool accepts it.
#[test]
fn load_and_queue_families_show_what_happened() {
    let ollama = MockBackend::start_named(Persona::Ollama, "ollama");
    ollama.set_behaviour_for(
        "/api/ps",
        Behaviour::Canned {
            status: 200,
            content_type: "application/json",
            body: r#"{"models":[{"name":"a:latest","model":"a:latest"},{"name":"b","model":"b"}]}"#
                .to_string(),
        },
    );
    let vllm = MockBackend::start_named(Persona::Vllm, "vllm");
    vllm.set_behaviour_for(
        "/metrics",
        Behaviour::Canned {
            status: 200,
            content_type: "text/plain",
            body: "vllm:num_requests_running 1\nvllm:num_requests_waiting 2\nvllm:kv_cache_usage_perc 0.5\n"
                .to_string(),
        },
    );
    vllm.set_chunks(40);
    vllm.set_chunk_delay(Duration::from_millis(50));
    // A model only vllm lists, so requests for it can only wait for vllm.
    vllm.set_models(&["only-vllm"]);
    let corral = fast()
        .health("load_interval", "100ms")
        .proxy("queue", "{ size: 1, max_wait: 300ms }")
        .mock(&ollama)
        .mock_with(&vllm, &[("max_concurrency", "1"), ("priority", "200")])
        .start();
    corral.wait_all_healthy(2, WAIT);
    wait_until(WAIT, "both load reports", || {
        ["ollama", "vllm"]
            .iter()
            .all(|n| corral.endpoint(n)["load"]["stale"] == false)
    });

    // Hold vllm's one slot, then one request waits (and times out) and one finds the
    // queue full.
    let api: Api = (*corral).clone();
    let holder = std::thread::spawn(move || {
        let mut s = api.stream_json(
            "/v1/chat/completions",
            &json!({"model": "only-vllm", "stream": true, "messages": []}),
        );
        s.chunks().len()
    });
    wait_until(WAIT, "the slot taken", || vllm.in_flight() >= 1);
    let api: Api = (*corral).clone();
    let waiter =
        std::thread::spawn(move || api.post_json("/v1/chat/completions", &chat("only-vllm")));
    wait_until(WAIT, "one waiting", || {
        corral.get_json("/internal/status").1["queue"]["waiting"] == 1
    });
    let full = corral.post_json("/v1/chat/completions", &chat("only-vllm"));
    assert_eq!(full.status, 429, "{}", full.text());
    assert_eq!(waiter.join().unwrap().status, 503);
    holder.join().unwrap();

    let s = scrape(&corral);
    promtool_check(&s.text);
    assert_eq!(
        s.get("corral_backend_requests_running", &[("endpoint", "vllm")]),
        1.0
    );
    assert_eq!(
        s.get("corral_backend_requests_waiting", &[("endpoint", "vllm")]),
        2.0
    );
    assert_eq!(
        s.get(
            "corral_backend_kv_cache_usage_ratio",
            &[("endpoint", "vllm")]
        ),
        0.5
    );
    assert_eq!(
        s.get("corral_backend_loaded_models", &[("endpoint", "ollama")]),
        2.0
    );
    assert_eq!(
        s.value("corral_backend_loaded_models", &[("endpoint", "vllm")]),
        None
    );
    assert_eq!(
        s.family("corral_queue_wait_seconds").family_type,
        PrometheusType::Histogram
    );
    assert_eq!(
        s.get("corral_queue_rejected_total", &[("reason", "full")]),
        1.0
    );
    assert_eq!(
        s.get("corral_queue_rejected_total", &[("reason", "timeout")]),
        1.0
    );
    assert_eq!(s.get("corral_queue_waiting", &[]), 0.0);
    assert_eq!(s.get("corral_queue_size", &[]), 1.0);
}
