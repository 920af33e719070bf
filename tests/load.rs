//! SPEC 10.1 and 10.2 end to end: endpoint actors read their backends' own load reports
//! (served here by mock backends with canned `/api/ps`, `/slots` and `/metrics` bodies in
//! the real servers' formats), the status API shows them, and picking follows them —
//! residency first, then load — while health never hears of them.

use std::collections::BTreeMap;
use std::time::Duration;

use house::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
const CHAT: &str = "/v1/chat/completions";

fn canned(content_type: &'static str, body: &str) -> Behaviour {
    Behaviour::Canned {
        status: 200,
        content_type,
        body: body.to_string(),
    }
}

fn ollama_ps(models: &[&str]) -> Behaviour {
    let list: Vec<Value> = models
        .iter()
        .map(|m| serde_json::json!({"name": m, "model": m, "size": 1000, "expires_at": "2099-01-01T00:00:00Z"}))
        .collect();
    canned(
        "application/json",
        &serde_json::json!({ "models": list }).to_string(),
    )
}

fn vllm_metrics(running: u64, waiting: u64) -> Behaviour {
    canned(
        "text/plain; version=0.0.4",
        &format!(
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
             # TYPE vllm:num_requests_running gauge\n\
             vllm:num_requests_running{{engine=\"0\",model_name=\"mock-model\"}} {running}.0\n\
             # HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
             # TYPE vllm:num_requests_waiting gauge\n\
             vllm:num_requests_waiting{{engine=\"0\",model_name=\"mock-model\"}} {waiting}.0\n"
        ),
    )
}

fn llamacpp_slots(slots: usize, processing: usize) -> Behaviour {
    let list: Vec<Value> = (0..slots)
        .map(|id| serde_json::json!({"id": id, "n_ctx": 2048, "speculative": false, "is_processing": id < processing}))
        .collect();
    canned("application/json", &Value::Array(list).to_string())
}

/// Waits until the status API shows a fresh load report for `name`; returns it.
fn wait_load(corral: &Corral, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(WAIT, &format!("{name}: load {what}"), || {
        let load = corral.endpoint(name)["load"].clone();
        (load.is_object() && load["stale"] == false && pred(&load)).then_some(load)
    })
}

/// Who served each of `n` requests sent one after another.
fn spread(corral: &Corral, model: &str, n: usize) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for _ in 0..n {
        let r = corral.post_json(CHAT, &chat(model, false));
        assert_eq!(r.status, 200, "{}", r.text());
        *by.entry(served_by(&r)).or_default() += 1;
    }
    by
}

#[test]
fn the_endpoint_with_the_model_loaded_wins_over_one_that_would_have_to_load_it() {
    let a = MockBackend::start_named(Persona::Ollama, "warm-x");
    let b = MockBackend::start_named(Persona::Ollama, "warm-y");
    for m in [&a, &b] {
        m.set_models(&["x:latest", "y:latest", "z"]);
    }
    a.set_behaviour_for("/api/ps", ollama_ps(&["x:latest"]));
    b.set_behaviour_for("/api/ps", ollama_ps(&["y:latest"]));
    let corral = Scenario::new()
        .health("load_interval", "100ms")
        .mock(&a)
        .mock(&b)
        .start();
    corral.wait_all_healthy(2, WAIT);
    let load = wait_load(&corral, "warm-x", "lists x", |l| {
        l["loaded_models"] == serde_json::json!(["x:latest"])
    });
    assert!(
        load.get("running").is_none(),
        "Ollama says nothing of running: {load}"
    );
    wait_load(&corral, "warm-y", "lists y", |l| {
        l["loaded_models"].is_array()
    });

    let x = spread(&corral, "x", 8);
    assert_eq!(x.get("warm-x"), Some(&8), "x goes where x is loaded: {x:?}");
    let y = spread(&corral, "y:latest", 8);
    assert_eq!(y.get("warm-y"), Some(&8), "y goes where y is loaded: {y:?}");

    // Neither has z loaded: no one is penalised, the two take turns.
    let z = spread(&corral, "z", 8);
    assert_eq!(
        (z.get("warm-x"), z.get("warm-y")),
        (Some(&4), Some(&4)),
        "{z:?}"
    );
}

#[test]
fn a_backend_reporting_waiting_requests_gets_less_traffic_than_an_idle_one() {
    let busy = MockBackend::start_named(Persona::Vllm, "busy");
    let idle = MockBackend::start_named(Persona::Vllm, "idle");
    busy.set_behaviour_for("/metrics", vllm_metrics(1, 3));
    idle.set_behaviour_for("/metrics", vllm_metrics(0, 0));
    let corral = Scenario::new()
        .health("load_interval", "100ms")
        .mock(&busy)
        .mock(&idle)
        .start();
    corral.wait_all_healthy(2, WAIT);
    wait_load(&corral, "busy", "waiting 3", |l| {
        l["waiting"] == 3 && l["running"] == 1
    });
    wait_load(&corral, "idle", "idle", |l| l["waiting"] == 0);

    let by = spread(&corral, "mock-model", 12);
    assert_eq!(by.get("idle"), Some(&12), "{by:?}");
    // Health never heard of it.
    assert_eq!(corral.status_of("busy"), "healthy");

    // The report goes stale when the source stops answering: then no signal, no penalty.
    busy.set_behaviour_for("/metrics", Behaviour::Status(500));
    wait_for(WAIT, "busy's report stale", || {
        (corral.endpoint("busy")["load"]["stale"] == true).then_some(())
    });
    let by = spread(&corral, "mock-model", 12);
    assert_eq!(
        (by.get("busy"), by.get("idle")),
        (Some(&6), Some(&6)),
        "{by:?}"
    );
    assert_eq!(
        corral.status_of("busy"),
        "healthy",
        "a failing load read is not a failed check"
    );
}

#[test]
fn max_concurrency_auto_reads_llamacpp_slots_and_limits_admission() {
    let m = MockBackend::start_named(Persona::Vllm, "llama");
    m.set_behaviour_for("/slots", llamacpp_slots(2, 0));
    m.set_chunks(6);
    m.set_chunk_delay(Duration::from_millis(100));
    let corral = Scenario::new()
        .health("load_interval", "100ms")
        .mock_with(&m, &[("type", "llamacpp"), ("max_concurrency", "auto")])
        .start();
    corral.wait_all_healthy(1, WAIT);
    let load = wait_load(&corral, "llama", "2 slots", |l| l["capacity"] == 2);
    assert_eq!(load["running"], 0);
    assert_eq!(corral.endpoint("llama")["max_concurrency"], 2);

    let clients: Vec<_> = (0..5)
        .map(|_| {
            let api: Api = (*corral).clone();
            std::thread::spawn(move || {
                let mut s = api.stream_json(CHAT, &chat("mock-model", true));
                let _ = s.chunks();
                s.status
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    assert_eq!(
        m.peak_streams(),
        2,
        "never more than the backend's slots at once"
    );
}

#[test]
fn a_missing_source_is_dropped_once_and_the_next_one_read() {
    let m = MockBackend::start_named(Persona::Vllm, "metrics-only");
    // llama-server with --no-slots answers 501 at /slots.
    m.set_behaviour_for("/slots", Behaviour::Status(501));
    m.set_behaviour_for(
        "/metrics",
        canned(
            "text/plain",
            "# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 1\n\
             # TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 2\n",
        ),
    );
    let corral = Scenario::new()
        .health("load_interval", "100ms")
        .mock_with(&m, &[("type", "llamacpp")])
        .start();
    corral.wait_all_healthy(1, WAIT);
    let load = wait_load(&corral, "metrics-only", "from /metrics", |l| {
        l["waiting"] == 2
    });
    assert_eq!(load["running"], 1);
    assert!(
        load.get("capacity").is_none(),
        "/metrics has no slot count: {load}"
    );
    let metrics_reads = m.count("/metrics");
    wait_until(WAIT, "more /metrics reads", || {
        m.count("/metrics") >= metrics_reads + 3
    });
    assert_eq!(m.count("/slots"), 1, "a dropped source is not read again");
    assert_eq!(corral.status_of("metrics-only"), "healthy");
}

#[test]
fn garbage_load_reports_never_touch_health_or_routing() {
    let m = MockBackend::start_named(Persona::Ollama, "garbage");
    m.set_behaviour_for("/api/ps", canned("application/json", "{\"models\": 17}"));
    let corral = Scenario::new()
        .health("load_interval", "100ms")
        .mock(&m)
        .start();
    corral.wait_all_healthy(1, WAIT);
    wait_until(WAIT, "/api/ps read", || m.count("/api/ps") >= 1);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(m.count("/api/ps"), 1, "unparseable: dropped after one read");
    let e = corral.endpoint("garbage");
    assert_eq!(e["status"], "healthy");
    assert!(e.get("load").is_none(), "{e}");
    let r = corral.post_json(CHAT, &chat("mock-model", false));
    assert_eq!(r.status, 200);
    corral.all_untouched().unwrap();
}

#[test]
fn load_reads_off_means_todays_order() {
    let busy = MockBackend::start_named(Persona::Vllm, "busy");
    let idle = MockBackend::start_named(Persona::Vllm, "idle");
    busy.set_behaviour_for("/metrics", vllm_metrics(5, 5));
    let corral = Scenario::new()
        .health("load_interval", "0s")
        .mock(&busy)
        .mock(&idle)
        .start();
    corral.wait_all_healthy(2, WAIT);
    let by = spread(&corral, "mock-model", 10);
    assert_eq!(
        (by.get("busy"), by.get("idle")),
        (Some(&5), Some(&5)),
        "{by:?}"
    );
    assert_eq!(busy.count("/metrics"), 0, "load_interval 0s reads nothing");
}
