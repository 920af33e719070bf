//! SPEC 12's routing features end to end, as an Olla user's tools see them: `model_aliases`
//! (the body's `model` rewritten per endpoint, listings, statistics), the
//! `X-Olla-Routing-*` headers on answers and rejections, and `proxy.sticky_sessions` with its
//! `X-Olla-Sticky-*` headers. Corral runs in-process against mock backends; what a backend
//! received is read from its log.

use std::time::Duration;

use house::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);
const CHAT: &str = "/v1/chat/completions";

/// Corral from `s` with `top` (top-level YAML, such as a `model_aliases:` block) appended.
fn start_with(s: &Scenario, top: &str) -> Corral {
    let yaml = format!("{}{top}", s.yaml());
    let config = corral::config::parse(&yaml, "test scenario", &|_| None)
        .unwrap_or_else(|e| panic!("{e}\n--- config ---\n{yaml}"));
    Corral::start(config)
}

/// Waits until `n` endpoints are healthy and every one's model list is known.
fn ready(corral: &Corral, n: usize) {
    corral.wait_all_healthy(n, WAIT);
    wait_until(WAIT, "models discovered", || {
        corral
            .endpoints()
            .iter()
            .all(|e| e["models"].as_u64() > Some(0))
    });
}

/// The `model` of every chat request `m` received, in order.
fn models_sent_to(m: &MockBackend) -> Vec<String> {
    m.requests()
        .iter()
        .filter(|s| s.path == CHAT)
        .map(|s| s.json()["model"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn routing(resp: &Resp) -> [Option<&str>; 3] {
    [
        resp.header("x-olla-routing-strategy"),
        resp.header("x-olla-routing-decision"),
        resp.header("x-olla-routing-reason"),
    ]
}

const LLAMA_ALIAS: &str = "model_aliases:\n  my-llama:\n    - \"llama3.1:8b\"\n    \
                           - llama-3.1-8b-instruct\n";

#[test]
fn an_alias_reaches_only_its_endpoints_each_under_its_own_name() {
    let ollama = MockBackend::start_named(Persona::Ollama, "ollama");
    ollama.set_models(&["llama3.1:8b"]);
    let lms = MockBackend::start_named(Persona::Vllm, "vllm");
    lms.set_models(&["llama-3.1-8b-instruct"]);
    let other = MockBackend::start_named(Persona::Vllm, "other");
    other.set_models(&["phi3"]);
    let s = Scenario::new()
        .proxy("load_balancer", "round-robin")
        .mock(&ollama)
        .mock(&lms)
        .mock(&other);
    let corral = start_with(&s, LLAMA_ALIAS);
    ready(&corral, 3);

    let body = json!({
        "messages": [{ "role": "user", "content": "the model is my-llama" }],
        "model": "my-llama",
        "stream": false,
    });
    for _ in 0..4 {
        let resp = corral.post_json(CHAT, &body);
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(
            routing(&resp),
            [
                Some("alias"),
                Some("routed"),
                Some(r#"alias "my-llama" resolved to 2 endpoint(s)"#)
            ]
        );
        assert_eq!(resp.header("x-olla-model"), Some("my-llama"));
        assert_ne!(served_by(&resp), "other");
    }
    assert_eq!(other.count(CHAT), 0);
    let to_ollama = models_sent_to(&ollama);
    let to_vllm = models_sent_to(&lms);
    assert_eq!(to_ollama.len() + to_vllm.len(), 4);
    assert!(
        to_ollama.iter().all(|m| m == "llama3.1:8b"),
        "{to_ollama:?}"
    );
    assert!(
        to_vllm.iter().all(|m| m == "llama-3.1-8b-instruct"),
        "{to_vllm:?}"
    );
    // Only `model` changed: the rest of the body is as the client sent it.
    let seen = ollama
        .requests()
        .into_iter()
        .chain(lms.requests())
        .find(|r| r.path == CHAT)
        .unwrap();
    assert_eq!(
        seen.json()["messages"][0]["content"],
        "the model is my-llama"
    );

    // Listed beside the native names; statistics are kept under the native names.
    let (_, list) = corral.get_json("/v1/models");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"my-llama"), "{list}");
    assert!(ids.contains(&"llama3.1:8b"), "{list}");
    let (_, vllm_list) = corral.get_json("/olla/vllm/v1/models");
    assert!(
        vllm_list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "my-llama"),
        "{vllm_list}"
    );
    let stats = wait_for(WAIT, "statistics recorded", || {
        let (_, s) = corral.get_json("/internal/stats/models");
        let requests = |name: &str| {
            s["models"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["name"] == name))
                .map(|m| m["requests"].clone())
        };
        let seen = |name: &str, n: usize| requests(name).unwrap_or(json!(0)) == json!(n);
        (seen("llama3.1:8b", to_ollama.len()) && seen("llama-3.1-8b-instruct", to_vllm.len()))
            .then_some(s)
    });
    assert!(
        !stats["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "my-llama"),
        "{stats}"
    );
}

#[test]
fn failover_rewrites_the_model_for_each_endpoint_tried() {
    let primary = MockBackend::start_named(Persona::Ollama, "primary");
    primary.set_models(&["llama3.1:8b"]);
    primary.set_behaviour_for(CHAT, Behaviour::Status(503));
    let backup = MockBackend::start_named(Persona::Vllm, "backup");
    backup.set_models(&["llama-3.1-8b-instruct"]);
    let s = Scenario::new()
        .mock_with(&primary, &[("priority", "100")])
        .mock_with(&backup, &[("priority", "50")]);
    let corral = start_with(&s, LLAMA_ALIAS);
    ready(&corral, 2);

    let resp = corral.post_json(CHAT, &chat("my-llama", false));
    assert_eq!((resp.status, served_by(&resp)), (200, "backup".to_string()));
    assert_eq!(models_sent_to(&primary), ["llama3.1:8b"]);
    assert_eq!(models_sent_to(&backup), ["llama-3.1-8b-instruct"]);
}

#[test]
fn an_alias_without_a_routable_target_is_rejected_with_its_reason() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    a.set_models(&["real"]);
    let s = Scenario::new().mock(&a);
    let aliases = "model_aliases:\n  nonexistent-alias-target: [some-model-served-nowhere]\n  \
                   nick: [real]\n";
    let corral = start_with(&s, aliases);
    ready(&corral, 1);

    // Olla's test-model-routing-strategy.sh, test 4.
    let generate =
        json!({ "model": "nonexistent-alias-target", "prompt": "test", "stream": false });
    let resp = corral.post_json("/olla/proxy/api/generate", &generate);
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["error"], "model_not_found");
    assert_eq!(
        routing(&resp),
        [Some("strict"), Some("rejected"), Some("model_not_found")]
    );
    assert_eq!(
        a.count("/api/generate"),
        0,
        "not proxied to a wrong backend"
    );

    // Its one endpoint gone: 503, with the alias named.
    a.refuse();
    corral.wait_status("a", "unhealthy", WAIT);
    let resp = corral.post_json(CHAT, &chat("nick", false));
    assert_eq!(resp.status, 503);
    assert_eq!(resp.json()["error"], "model_unavailable");
    assert_eq!(resp.json()["model"], "nick");
    assert_eq!(
        routing(&resp),
        [Some("strict"), Some("rejected"), Some("model_unavailable")]
    );
}

#[test]
fn aliases_change_on_reload() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    a.set_models(&["native-a"]);
    let s = Scenario::new().mock(&a);
    let yaml = |alias: &str| format!("{}model_aliases:\n  {alias}: [native-a]\n", s.yaml());
    let file = write_config(&yaml("old-name"));
    let config = corral::config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let corral = Corral::start_with_file(config, Some(file));
    ready(&corral, 1);
    assert_eq!(corral.post_json(CHAT, &chat("old-name", false)).status, 200);

    corral.rewrite_config(&yaml("new-name"));
    let reloaded = corral.request("POST", "/internal/reload", &[], b"");
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    assert_eq!(reloaded.json()["not_applied_until_restart"], json!([]));
    assert_eq!(corral.post_json(CHAT, &chat("new-name", false)).status, 200);
    assert_eq!(corral.post_json(CHAT, &chat("old-name", false)).status, 404);
    assert_eq!(models_sent_to(&a), ["native-a", "native-a"]);
}

#[test]
fn routing_headers_say_how_each_request_was_routed() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    a.set_models(&["alpha"]);
    let corral = Scenario::new().mock(&a).start();
    ready(&corral, 1);

    let resp = corral.post_json(CHAT, &chat("alpha", false));
    assert_eq!(resp.status, 200);
    assert_eq!(
        routing(&resp),
        [Some("strict"), Some("routed"), Some("model_found")]
    );
    let resp = corral.post_json(CHAT, &chat("unknown-model:latest", false));
    assert_eq!(resp.status, 404);
    assert_eq!(
        routing(&resp),
        [Some("strict"), Some("rejected"), Some("model_not_found")]
    );
    // No model named: no strategy was at play (Olla's test 3).
    let resp = corral.post_json(CHAT, &json!({ "messages": [] }));
    assert_eq!(resp.status, 200);
    assert_eq!(routing(&resp), [None, None, None]);

    let b = MockBackend::start_named(Persona::Vllm, "b");
    b.set_models(&["beta"]);
    let optimistic = Scenario::new()
        .proxy("routing_strategy", "optimistic")
        .mock(&b)
        .start();
    ready(&optimistic, 1);
    let resp = optimistic.post_json(CHAT, &chat("unlisted", false));
    assert_eq!((resp.status, served_by(&resp)), (200, "b".to_string()));
    assert_eq!(
        routing(&resp),
        [
            Some("optimistic"),
            Some("fallback"),
            Some("model_not_found_fallback")
        ]
    );
    b.refuse();
    optimistic.wait_status("b", "unhealthy", WAIT);
    let resp = optimistic.post_json(CHAT, &chat("beta", false));
    assert_eq!(resp.status, 503);
    assert_eq!(resp.json()["error"], "no_healthy_endpoints");
    assert_eq!(
        routing(&resp),
        [
            Some("optimistic"),
            Some("rejected"),
            Some("no_healthy_endpoints")
        ]
    );
}

#[test]
fn a_request_refused_by_admission_control_says_so() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    a.set_models(&["alpha"]);
    let corral = Scenario::new()
        .health("load_interval", "0s")
        .proxy("queue", "{ size: 0 }")
        .mock_with(&a, &[("max_concurrency", "1")])
        .start();
    ready(&corral, 1);
    a.set_chunks(200);
    a.set_chunk_delay(Duration::from_millis(50));
    let holder = corral.stream_json(CHAT, &chat("alpha", true));
    assert_eq!(holder.status, 200);
    assert_eq!(
        holder.header("x-olla-routing-decision"),
        Some("routed"),
        "a stream says it too"
    );

    let resp = corral.post_json(CHAT, &chat("alpha", false));
    assert_eq!(resp.status, 429);
    assert_eq!(resp.json()["error"], "queue_full");
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(
        routing(&resp),
        [Some("strict"), Some("rejected"), Some("queue_full")]
    );
    holder.disconnect();
}

// ---------------------------------------------------------------------------------------
// Sticky sessions

fn sticky(s: Scenario, extra: &str) -> Scenario {
    s.proxy(
        "sticky_sessions",
        &format!("{{ enabled: true, idle_ttl_seconds: 600, max_sessions: 100{extra} }}"),
    )
}

fn in_session(corral: &Corral, session: &str, model: &str) -> Resp {
    let body = serde_json::to_vec(&chat(model, false)).unwrap();
    corral.request(
        "POST",
        "/olla/proxy/v1/chat/completions",
        &[
            ("Content-Type", "application/json"),
            ("X-Olla-Session-ID", session),
        ],
        &body,
    )
}

fn outcome(resp: &Resp) -> (&str, &str) {
    (
        resp.header("x-olla-sticky-session").unwrap_or(""),
        resp.header("x-olla-sticky-key-source").unwrap_or(""),
    )
}

fn twins() -> (MockBackend, MockBackend) {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    let b = MockBackend::start_named(Persona::Vllm, "b");
    a.set_models(&["m"]);
    b.set_models(&["m"]);
    (a, b)
}

#[test]
fn a_session_stays_on_its_endpoint_where_round_robin_would_move_it() {
    let (a, b) = twins();
    let s = Scenario::new()
        .proxy("load_balancer", "round-robin")
        .mock(&a)
        .mock(&b);
    let corral = sticky(s, "").start();
    ready(&corral, 2);

    let first = in_session(&corral, "conv-1", "m");
    assert_eq!(first.status, 200);
    assert_eq!(outcome(&first), ("miss", "session_header"));
    assert_eq!(first.header("x-olla-session-id"), Some("conv-1"));
    let home = served_by(&first);
    for _ in 0..4 {
        let next = in_session(&corral, "conv-1", "m");
        assert_eq!(outcome(&next), ("hit", "session_header"));
        assert_eq!(served_by(&next), home);
    }

    // No session header: the start of the conversation is the key (Olla's prefix_hash).
    let body = json!({
        "model": "m",
        "messages": [{ "role": "system", "content": "You are a careful assistant. ".repeat(30) }],
    });
    let one = corral.post_json("/olla/proxy/v1/chat/completions", &body);
    assert_eq!(outcome(&one), ("miss", "prefix_hash"));
    assert_eq!(one.header("x-olla-session-id"), None);
    for _ in 0..3 {
        let again = corral.post_json("/olla/proxy/v1/chat/completions", &body);
        assert_eq!(outcome(&again), ("hit", "prefix_hash"));
        assert_eq!(served_by(&again), served_by(&one));
    }
}

#[test]
fn sticky_headers_say_disabled_when_there_is_no_session() {
    let (a, _b) = twins();
    let off = Scenario::new().mock(&a).start();
    ready(&off, 1);
    let resp = in_session(&off, "conv-1", "m");
    assert_eq!(resp.status, 200);
    assert_eq!(outcome(&resp), ("disabled", ""));
    assert_eq!(resp.header("x-olla-session-id"), None);

    // On, but the only source configured gives no key for this request.
    let on = sticky(Scenario::new().mock(&a), ", key_sources: [session_header]").start();
    ready(&on, 1);
    let resp = on.post_json(CHAT, &chat("m", false));
    assert_eq!(resp.status, 200);
    assert_eq!(outcome(&resp), ("disabled", ""));
}

#[test]
fn a_pin_never_admits_past_max_concurrency_and_moves_with_the_request() {
    let (a, b) = twins();
    let s = Scenario::new()
        .health("load_interval", "0s")
        .mock_with(&a, &[("priority", "100"), ("max_concurrency", "1")])
        .mock_with(&b, &[("priority", "50")]);
    let corral = sticky(s, ", key_sources: [session_header]").start();
    ready(&corral, 2);

    let first = in_session(&corral, "conv-1", "m");
    assert_eq!(
        (outcome(&first), served_by(&first).as_str()),
        (("miss", "session_header"), "a")
    );

    // `a` busy with its one request: the session goes to `b` rather than wait, and stays.
    a.set_chunks(200);
    a.set_chunk_delay(Duration::from_millis(50));
    let holder = corral.stream_json(CHAT, &chat("m", true));
    assert_eq!(holder.header("x-olla-endpoint"), Some("a"));
    let moved = in_session(&corral, "conv-1", "m");
    assert_eq!(
        (outcome(&moved), served_by(&moved).as_str()),
        (("repin", "session_header"), "b")
    );
    holder.disconnect();
    wait_until(WAIT, "a free again", || {
        corral.endpoint("a")["in_flight"] == 0
    });

    // The pin wins over priority while its endpoint can serve.
    let back = in_session(&corral, "conv-1", "m");
    assert_eq!(
        (outcome(&back), served_by(&back).as_str()),
        (("hit", "session_header"), "b")
    );
    // A new session still follows priority.
    let other = in_session(&corral, "conv-2", "m");
    assert_eq!(
        (outcome(&other), served_by(&other).as_str()),
        (("miss", "session_header"), "a")
    );
}

#[test]
fn a_pin_to_an_endpoint_that_leaves_rotation_is_dropped() {
    let (a, b) = twins();
    let s = Scenario::new()
        .mock_with(&a, &[("priority", "100")])
        .mock_with(&b, &[("priority", "50")]);
    let corral = sticky(s, "").start();
    ready(&corral, 2);
    let first = in_session(&corral, "conv-1", "m");
    assert_eq!(served_by(&first), "a");

    a.refuse();
    corral.wait_status("a", "unhealthy", WAIT);
    let moved = in_session(&corral, "conv-1", "m");
    assert_eq!(served_by(&moved), "b");
    assert!(
        matches!(outcome(&moved).0, "miss" | "repin"),
        "{:?}",
        outcome(&moved)
    );
    // Back in rotation, `a` does not take the session back: it lives on `b` now.
    a.restore();
    corral.wait_status("a", "healthy", WAIT);
    let stays = in_session(&corral, "conv-1", "m");
    assert_eq!(
        (outcome(&stays).0, served_by(&stays).as_str()),
        ("hit", "b")
    );
}

#[test]
fn an_alias_session_keeps_its_endpoint_and_its_native_name() {
    let ollama = MockBackend::start_named(Persona::Ollama, "ollama");
    ollama.set_models(&["llama3.1:8b"]);
    let vllm = MockBackend::start_named(Persona::Vllm, "vllm");
    vllm.set_models(&["llama-3.1-8b-instruct"]);
    let s = Scenario::new()
        .proxy("load_balancer", "round-robin")
        .mock(&ollama)
        .mock(&vllm);
    let corral = start_with(&sticky(s, ""), LLAMA_ALIAS);
    ready(&corral, 2);
    let first = in_session(&corral, "conv-1", "my-llama");
    let home = served_by(&first);
    for _ in 0..3 {
        let next = in_session(&corral, "conv-1", "my-llama");
        assert_eq!((outcome(&next).0, served_by(&next)), ("hit", home.clone()));
    }
    let (pinned, native) = if home == "ollama" {
        (&ollama, "llama3.1:8b")
    } else {
        (&vllm, "llama-3.1-8b-instruct")
    };
    assert_eq!(models_sent_to(pinned), vec![native.to_string(); 4]);
}

/// SPEC 12: "listings show the alias" — Olla's catalogue lists each model's aliases, and
/// `/olla/models/{alias}` is the summary of the model the alias stands for.
#[test]
fn the_catalogue_shows_aliases_and_resolves_them() {
    let ollama = MockBackend::start_named(Persona::Ollama, "ollama");
    ollama.set_models(&["llama3.1:8b", "qwen2:7b"]);
    let corral = start_with(&Scenario::new().mock(&ollama), LLAMA_ALIAS);
    ready(&corral, 1);
    let (status, body) = corral.get_json("/olla/models");
    assert_eq!(status, 200, "{body}");
    let aliases = |id: &str| {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {body}"))["olla"]["aliases"]
            .clone()
    };
    assert_eq!(aliases("llama3.1:8b"), serde_json::json!(["my-llama"]));
    assert_eq!(aliases("qwen2:7b"), serde_json::json!([]));
    let (status, summary) = corral.get_json("/olla/models/my-llama");
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["id"], "llama3.1:8b");
    assert_eq!(summary["aliases"], serde_json::json!(["my-llama"]));
    assert_eq!(corral.get_json("/olla/models/no-such-alias").0, 404);
}
