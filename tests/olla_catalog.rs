//! What Olla's tools read (SPEC 12), end to end with mock backends: the catalogue
//! `/olla/models` in each format and with its filters, `/olla/models/{id}`, the status extras
//! (`model_count`, `success_rate`, `recent_models`, `/internal/process`,
//! `/internal/stats/sticky`, `/internal/stats/translators`), `/internal/health` on every
//! method, and `X-Olla-Response-Time`.

use std::time::{Duration, Instant};

use house::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

/// What a real Ollama says of its models in `/api/tags`.
const OLLAMA_TAGS: &str = r#"{"models":[
  {"name":"llama3.1:8b","model":"llama3.1:8b","modified_at":"2024-08-01T10:00:00.5+10:00",
   "size":4920753328,"digest":"sha256:46e0c10c039e019119339687c3c1757cc81b9da49709a3b3924863ba87ca666e",
   "details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],
              "parameter_size":"8.0B","quantization_level":"Q4_K_M"}},
  {"name":"nomic-embed-text:latest","model":"nomic-embed-text:latest","size":274302450,
   "details":{"format":"gguf","family":"nomic-bert","parameter_size":"137M","quantization_level":"F16"}}
]}"#;

/// An Ollama mock whose `/api/tags` is [`OLLAMA_TAGS`].
fn detailed_ollama(name: &str) -> MockBackend {
    let m = MockBackend::start_named(Persona::Ollama, name);
    m.set_behaviour_for(
        "/api/tags",
        Behaviour::Canned {
            status: 200,
            content_type: "application/json",
            body: OLLAMA_TAGS.to_string(),
        },
    );
    m
}

fn data(v: &Value) -> &Vec<Value> {
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {v}"))
}

fn ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = data(v)
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// An Ollama, a vLLM and an LM Studio endpoint, all healthy with their models known.
fn fleet() -> (MockBackend, MockBackend, MockBackend, Corral) {
    let ollama = detailed_ollama("ollama-1");
    let vllm = MockBackend::start_named(Persona::Vllm, "vllm-1");
    vllm.set_models(&["Qwen/Qwen2.5-7B-Instruct"]);
    let lms = MockBackend::start_named(Persona::LmStudio, "lms-1");
    lms.set_models(&["phi-3-mini-4k-instruct"]);
    let corral = Scenario::new().mock(&ollama).mock(&vllm).mock(&lms).start();
    corral.wait_all_healthy(3, WAIT);
    wait_until(WAIT, "every model known", || {
        data(&corral.get_json("/olla/models").1).len() == 4
    });
    (ollama, vllm, lms, corral)
}

#[test]
fn the_catalogue_is_olla_s_unified_shape() {
    let (_o, _v, _l, corral) = fleet();
    let (code, v) = corral.get_json("/olla/models");
    assert_eq!(code, 200);
    assert_eq!(v["object"], "list");
    assert_eq!(
        ids(&v),
        [
            "Qwen/Qwen2.5-7B-Instruct",
            "llama3.1:8b",
            "nomic-embed-text:latest",
            "phi-3-mini-4k-instruct"
        ]
    );
    assert_eq!(corral.get_json("/olla/models?format=unified").1, v);
    let llama = data(&v).iter().find(|m| m["id"] == "llama3.1:8b").unwrap();
    assert_eq!(llama["object"], "model");
    assert_eq!(llama["owned_by"], "olla");
    assert!(llama["created"].as_u64().is_some());
    let olla = &llama["olla"];
    assert_eq!(olla["family"], "llama", "from Ollama's details");
    assert_eq!(olla["variant"], "3.1", "from the name");
    assert_eq!(olla["parameter_size"], "8b");
    assert_eq!(olla["quantization"], "q4km");
    assert_eq!(olla["aliases"], json!([]));
    assert_eq!(
        olla["availability"],
        json!([{ "endpoint": "ollama-1", "state": "available" }])
    );
    assert!(olla["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("chat")));
    let embed = data(&v)
        .iter()
        .find(|m| m["id"] == "nomic-embed-text:latest")
        .unwrap();
    assert_eq!(embed["olla"]["family"], "nomic-bert");
    assert_eq!(embed["olla"]["parameter_size"], "137m");
    assert_eq!(embed["olla"]["quantization"], "f16");
    let phi = data(&v)
        .iter()
        .find(|m| m["id"] == "phi-3-mini-4k-instruct")
        .unwrap();
    assert_eq!(
        phi["olla"]["availability"],
        json!([{ "endpoint": "lms-1", "state": "loaded" }]),
        "LM Studio's own state"
    );
    assert_eq!(phi["olla"]["family"], "phi");

    // An id from the catalogue is a name requests route by.
    let r = corral.post_json(
        "/olla/proxy/v1/chat/completions",
        &chat("Qwen/Qwen2.5-7B-Instruct", false),
    );
    assert_eq!((r.status, served_by(&r)), (200, "vllm-1".to_string()));
}

#[test]
fn each_format_lists_its_platform_s_models_in_its_shape() {
    let (_o, vllm, _l, corral) = fleet();
    let openai = corral.get_json("/olla/models?format=openai").1;
    assert_eq!(ids(&openai).len(), 4, "every type speaks OpenAI's API");
    assert_eq!(
        data(&openai)[0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["created", "id", "object", "owned_by"]
    );

    let (code, ollama) = corral.get_json("/olla/models?format=ollama");
    assert_eq!(code, 200);
    let models = ollama["models"].as_array().unwrap();
    assert_eq!(models.len(), 2, "Ollama's models only: {ollama}");
    let llama = models.iter().find(|m| m["name"] == "llama3.1:8b").unwrap();
    assert_eq!(llama["model"], "llama3.1:8b");
    assert_eq!(llama["size"], 4920753328u64);
    assert_eq!(llama["modified_at"], "2024-08-01T10:00:00.5+10:00");
    assert!(llama["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(
        llama["details"],
        json!({ "family": "llama", "parameter_size": "8.0B", "quantization_level": "Q4_K_M" })
    );
    // Ollama's own listing is the same shape and list.
    assert_eq!(corral.get_json("/api/tags").1, ollama);
    assert_eq!(corral.get_json("/olla/ollama/api/tags").1, ollama);

    let lmstudio = corral.get_json("/olla/models?format=lmstudio").1;
    assert_eq!(lmstudio["object"], "list");
    assert_eq!(
        data(&lmstudio)[0],
        json!({ "id": "phi-3-mini-4k-instruct", "object": "model", "type": "llm",
                "arch": "phi", "state": "loaded" })
    );
    assert_eq!(corral.get_json("/olla/lmstudio/api/v0/models").1, lmstudio);
    assert_eq!(
        ids(&corral.get_json("/olla/lm-studio/api/v1/models").1),
        ["phi-3-mini-4k-instruct"]
    );

    let v = corral.get_json("/olla/models?format=vllm").1;
    let qwen = &data(&v)[0];
    assert_eq!(ids(&v), ["Qwen/Qwen2.5-7B-Instruct"]);
    assert_eq!(qwen["owned_by"], "Qwen");
    assert_eq!(qwen["root"], "Qwen/Qwen2.5-7B-Instruct");
    assert_eq!(qwen["permission"][0]["object"], "model_permission");

    for format in [
        "sglang",
        "llamacpp",
        "lemonade",
        "lmdeploy",
        "docker-model-runner",
        "vllm-mlx",
    ] {
        let (code, v) = corral.get_json(&format!("/olla/models?format={format}"));
        assert_eq!(
            (code, v),
            (200, json!({ "object": "list", "data": [] })),
            "{format}: no endpoint of that type"
        );
    }

    // A format lists models on routable endpoints only, unless asked for the others.
    vllm.refuse();
    corral.wait_status("vllm-1", "unhealthy", WAIT);
    assert!(data(&corral.get_json("/olla/models?format=vllm").1).is_empty());
    let v = corral
        .get_json("/olla/models?format=unified&include_unavailable=true")
        .1;
    let qwen = data(&v)
        .iter()
        .find(|m| m["id"] == "Qwen/Qwen2.5-7B-Instruct")
        .unwrap();
    assert_eq!(
        qwen["olla"]["availability"],
        json!([{ "endpoint": "vllm-1", "state": "offline" }])
    );
    let v = corral
        .get_json("/olla/models?include_unavailable=true&available=false")
        .1;
    assert_eq!(ids(&v), ["Qwen/Qwen2.5-7B-Instruct"]);
    assert_eq!(ids(&corral.get_json("/olla/models").1).len(), 3);
}

#[test]
fn filters_narrow_the_catalogue_and_unknown_values_are_400() {
    let (_o, _v, _l, corral) = fleet();
    let get = |q: &str| ids(&corral.get_json(&format!("/olla/models?{q}")).1);
    assert_eq!(
        get("endpoint=ollama-1"),
        ["llama3.1:8b", "nomic-embed-text:latest"]
    );
    let lms_url = corral.endpoint("lms-1")["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        get(&format!("endpoint={lms_url}")),
        ["phi-3-mini-4k-instruct"],
        "an endpoint's URL names it too"
    );
    assert_eq!(get("family=LLAMA"), ["llama3.1:8b"]);
    assert_eq!(get("family=qwen"), ["Qwen/Qwen2.5-7B-Instruct"]);
    assert_eq!(get("type=embeddings"), ["nomic-embed-text:latest"]);
    assert_eq!(get("capability=embedding"), ["nomic-embed-text:latest"]);
    assert_eq!(get("type=llm").len(), 3);
    assert_eq!(get("available=true").len(), 4);
    assert!(get("available=false").is_empty());
    assert_eq!(
        get("format=openai&endpoint=vllm-1&unknown_parameter=x"),
        ["Qwen/Qwen2.5-7B-Instruct"]
    );

    for (query, parameter) in [
        ("format=xml", "format"),
        ("type=tts", "type"),
        ("endpoint=nowhere", "endpoint"),
        ("available=maybe", "available"),
        ("include_unavailable=yes", "include_unavailable"),
        ("capability=flying", "capability"),
    ] {
        let r = corral.get(&format!("/olla/models?{query}"));
        assert_eq!(r.status, 400, "{query}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body = r.json();
        assert_eq!(body["error"], "invalid_query", "{query}: {body}");
        assert_eq!(body["parameter"], parameter, "{query}");
    }
}

#[test]
fn one_model_by_its_id() {
    let (_o, _v, _l, corral) = fleet();
    let (code, m) = corral.get_json("/olla/models/llama3.1:8b");
    assert_eq!(code, 200, "{m}");
    assert_eq!(m["id"], "llama3.1:8b");
    assert_eq!(m["family"], "llama");
    assert_eq!(m["variant"], "3.1");
    assert_eq!(m["parameter_size"], "8b");
    assert_eq!(m["parameter_count"], 8_000_000_000u64);
    assert_eq!(m["quantization"], "q4km");
    assert_eq!(m["format"], "gguf");
    assert_eq!(m["total_disk_size"], "4.58 GB");
    assert_eq!(m["endpoints"], json!(["ollama-1"]));
    assert_eq!(m["aliases"], json!([]));
    assert!(
        m["last_seen"].as_str().unwrap().ends_with("ago") || m["last_seen"] == "just now",
        "{m}"
    );
    // Ids with a slash, and Ollama's other spelling of `:latest`.
    let (code, m) = corral.get_json("/olla/models/Qwen/Qwen2.5-7B-Instruct");
    assert_eq!(
        (code, m["id"].as_str()),
        (200, Some("Qwen/Qwen2.5-7B-Instruct"))
    );
    let (code, m) = corral.get_json("/olla/models/nomic-embed-text");
    assert_eq!(
        (code, m["id"].as_str()),
        (200, Some("nomic-embed-text:latest"))
    );
    let (code, m) = corral.get_json("/olla/models/phi-3-mini-4k-instruct");
    assert_eq!(
        (code, m["loaded_endpoints"].clone()),
        (200, json!(["lms-1"]))
    );

    let r = corral.get("/olla/models/no-such-model");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "model_not_found");
}

#[test]
fn endpoints_show_model_count_and_success_rate() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu");
    mock.set_models(&["a", "b", "c"]);
    let corral = Scenario::new().mock(&mock).start();
    corral.wait_all_healthy(1, WAIT);
    wait_until(WAIT, "models known", || {
        corral.endpoint("gpu")["model_count"] == 3
    });
    let e = corral.endpoint("gpu");
    assert_eq!(e["models"], 3, "Corral's own name stays");
    assert_eq!(e["success_rate"], "N/A", "no traffic yet");

    assert_eq!(
        corral
            .post_json("/v1/chat/completions", &chat("a", false))
            .status,
        200
    );
    wait_until(WAIT, "one success counted", || {
        corral.endpoint("gpu")["success_rate"] == "100%"
    });
    mock.set_behaviour_for("/v1/chat", Behaviour::Status(503));
    assert_eq!(
        corral
            .post_json("/v1/chat/completions", &chat("a", false))
            .status,
        503
    );
    wait_until(WAIT, "one failure counted", || {
        corral.endpoint("gpu")["success_rate"] == "50.0%"
    });
    // The status page's and `/internal/status`'s endpoint objects are the same.
    let status = corral.get_json("/internal/status").1;
    assert_eq!(status["endpoint_details"][0]["success_rate"], "50.0%");
    assert_eq!(status["endpoint_details"][0]["model_count"], 3);
}

#[test]
fn status_models_has_olla_s_recent_models() {
    let ollama = detailed_ollama("ollama-1");
    let vllm = MockBackend::start_named(Persona::Vllm, "vllm-1");
    let many: Vec<String> = (0..12).map(|i| format!("model-{i:02}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    vllm.set_models(&many);
    let corral = Scenario::new()
        .mock(&ollama)
        .mock(&vllm)
        .discovery("model_discovery", "{ interval: 300ms, timeout: 200ms }")
        .start();
    corral.wait_all_healthy(2, WAIT);
    wait_until(WAIT, "models known", || corral.model_names().len() == 14);
    let (code, v) = corral.get_json("/internal/status/models");
    assert_eq!(code, 200);
    assert_eq!(
        v["models"].as_array().unwrap().len(),
        14,
        "Corral's list stays"
    );
    assert_eq!(v["total_models"], 14);
    assert_eq!(v["total_endpoints"], 2);
    assert_eq!(v["models_by_family"]["llama"], json!(["llama3.1:8b"]));
    assert_eq!(
        v["models_by_family"]["unknown"].as_array().unwrap().len(),
        12
    );
    let recent = v["recent_models"].as_array().unwrap();
    assert_eq!(recent.len(), 10, "at most ten");
    let times: Vec<&str> = recent
        .iter()
        .map(|m| m["last_seen_at"].as_str().expect("last_seen_at"))
        .collect();
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first, "newest first");
    for m in recent {
        assert!(m["last_seen"].as_str().is_some());
        assert_eq!(m["endpoints"].as_array().unwrap().len(), 1);
    }

    // Wait until the Ollama models are among the ten, to read their fields.
    let llama = wait_for(WAIT, "llama3.1 among the recent models", || {
        corral.get_json("/internal/status/models").1["recent_models"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == "llama3.1:8b")
            .cloned()
    });
    assert_eq!(llama["type"], "ollama");
    assert_eq!(llama["family"], "llama");
    assert_eq!(llama["params"], "8.0B");
    assert_eq!(llama["quant"], "Q4_K_M");
    assert_eq!(llama["size"], "4.58 GB");
    assert_eq!(llama["endpoints"], json!(["ollama-1"]));
    assert!(llama["capabilities"].as_array().is_some());
}

#[test]
fn process_sticky_translators_and_health_on_every_method() {
    const TOKEN: &str = "s3cret";
    let mock = MockBackend::start_named(Persona::Vllm, "gpu");
    let corral = Scenario::new()
        .server("internal_token", TOKEN)
        .mock(&mock)
        .start();
    let api = Api::new(corral.url()).with_token(TOKEN);
    api.wait_all_healthy(1, WAIT);

    for path in [
        "/internal/process",
        "/internal/stats/sticky",
        "/internal/stats/translators",
    ] {
        assert_eq!(corral.get(path).status, 401, "{path} needs the token");
    }
    let (code, p) = api.get_json("/internal/process");
    assert_eq!(code, 200);
    assert!(p["memory"]["resident_bytes"].as_u64().unwrap() > 0, "{p}");
    assert!(p["memory"]["resident"].as_str().unwrap().ends_with('B'));
    assert!(p["threads"]["count"].as_u64().unwrap() >= 2, "{p}");
    assert!(p["open_files"]["count"].as_u64().unwrap() > 0, "{p}");
    assert!(humantime::parse_duration(p["runtime"]["uptime"].as_str().unwrap()).is_ok());
    assert!(p["timestamp"].as_str().is_some());
    assert_eq!(
        api.get_json("/internal/stats/sticky"),
        (200, json!({ "enabled": false }))
    );
    assert_eq!(
        api.get_json("/internal/stats/translators"),
        (200, json!({ "enabled": false }))
    );

    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = corral.request(method, "/internal/health", &[], b"");
        assert_eq!(r.status, 200, "{method} without a token");
        assert_eq!(r.json()["status"], "healthy", "{method}");
    }
    let head = corral.request("HEAD", "/internal/health", &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");
}

#[test]
fn response_time_runs_to_the_first_byte_in_whole_milliseconds() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu");
    mock.set_first_chunk_delay(Duration::from_millis(300));
    mock.set_chunk_delay(Duration::from_millis(200));
    mock.set_chunks(4);
    let corral = Scenario::new().mock(&mock).start();
    corral.wait_all_healthy(1, WAIT);

    let started = Instant::now();
    let mut stream = corral.stream_json("/v1/chat/completions", &chat("mock-model", true));
    assert_eq!(stream.status, 200);
    let header = stream
        .header("x-olla-response-time")
        .expect("X-Olla-Response-Time")
        .to_string();
    let chunks = stream.chunks();
    let total = started.elapsed();
    assert!(!chunks.is_empty());
    let ms: u64 = header
        .strip_suffix("ms")
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("not whole milliseconds: {header:?}"))
        .parse()
        .unwrap();
    assert!(ms >= 300, "waits for the first token: {ms}ms");
    // Four more chunks 200 ms apart come after the first byte.
    assert!(
        ms + 600 <= total.as_millis() as u64,
        "not the whole stream: {ms}ms of {total:?}"
    );

    // A fast answer: a small whole number.
    mock.set_first_chunk_delay(Duration::ZERO);
    let r = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
    let t = r.header("x-olla-response-time").unwrap();
    let n: u64 = t.strip_suffix("ms").unwrap().parse().unwrap();
    assert!(n < 300, "{t}");
}

/// Olla's provider scripts read LM Studio endpoints' models in Ollama's shape at
/// `/olla/lmstudio/api/v1/tags`: only LM Studio endpoints, each model with a `name`.
#[test]
fn lm_studio_models_in_ollama_shape() {
    let lms = MockBackend::start_named(Persona::LmStudio, "lms");
    lms.set_models(&["qwen2.5-7b-instruct"]);
    let ollama = MockBackend::start_named(Persona::Ollama, "ollama");
    ollama.set_models(&["llama3:latest"]);
    let corral = Scenario::new().mock(&lms).mock(&ollama).start();
    corral.wait_all_healthy(2, Duration::from_secs(10));
    wait_until(Duration::from_secs(10), "models discovered", || {
        corral.model_names().len() == 2
    });
    for path in ["/olla/lmstudio/api/v1/tags", "/olla/lm-studio/api/v1/tags"] {
        let (status, body) = corral.get_json(path);
        assert_eq!(status, 200, "{path}: {body}");
        let names: Vec<&str> = body["models"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: {body}"))
            .iter()
            .filter_map(|m| m["name"].as_str())
            .collect();
        assert_eq!(names, ["qwen2.5-7b-instruct"], "{path}: {body}");
    }
}
