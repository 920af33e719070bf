//! The load parsers on real payloads (`fixtures/`, origins in `fixtures/README.md`), each with
//! the exact values it holds, and on hostile bodies.

use super::*;
use LoadSource::*;

const LLAMACPP_SLOTS_IDLE: &str = include_str!("fixtures/llamacpp_slots_idle.json");
const LLAMACPP_SLOTS_BUSY: &str = include_str!("fixtures/llamacpp_slots_busy.json");
const LLAMACPP_SLOTS_STATE: &str = include_str!("fixtures/llamacpp_slots_state_docs.json");
const LLAMACPP_METRICS_IDLE: &str = include_str!("fixtures/llamacpp_metrics_idle.txt");
const LLAMACPP_METRICS_BUSY: &str = include_str!("fixtures/llamacpp_metrics_busy.txt");
const VLLM_V1: &str = include_str!("fixtures/vllm_metrics_v1.txt");
const VLLM_V0: &str = include_str!("fixtures/vllm_metrics_v0_excerpt.txt");
const VLLM_NO_SAMPLES: &str = include_str!("fixtures/vllm_metrics_no_samples.txt");
const SGLANG: &str = include_str!("fixtures/sglang_metrics_docs.txt");
const OLLAMA_DOCS: &str = include_str!("fixtures/ollama_ps_docs.json");
const OLLAMA_GEMMA3: &str = include_str!("fixtures/ollama_ps_gemma3.json");
const LMSTUDIO_DOCS: &str = include_str!("fixtures/lmstudio_models_docs.json");
const LMSTUDIO_GEMMA3: &str = include_str!("fixtures/lmstudio_models_gemma3.json");
const LMSTUDIO_NONE: &str = include_str!("fixtures/lmstudio_models_none.json");
const LMSTUDIO_MLX: &str = include_str!("fixtures/lmstudio_models_mlx.json");

/// Every fixture with the one source that serves it.
const FIXTURES: &[(&str, LoadSource, &str)] = &[
    ("llamacpp_slots_idle", LlamaCppSlots, LLAMACPP_SLOTS_IDLE),
    ("llamacpp_slots_busy", LlamaCppSlots, LLAMACPP_SLOTS_BUSY),
    ("llamacpp_slots_state", LlamaCppSlots, LLAMACPP_SLOTS_STATE),
    (
        "llamacpp_metrics_idle",
        LlamaCppMetrics,
        LLAMACPP_METRICS_IDLE,
    ),
    (
        "llamacpp_metrics_busy",
        LlamaCppMetrics,
        LLAMACPP_METRICS_BUSY,
    ),
    ("vllm_v1", VllmMetrics, VLLM_V1),
    ("vllm_v0", VllmMetrics, VLLM_V0),
    ("vllm_no_samples", VllmMetrics, VLLM_NO_SAMPLES),
    ("sglang", SglangMetrics, SGLANG),
    ("ollama_docs", OllamaPs, OLLAMA_DOCS),
    ("ollama_gemma3", OllamaPs, OLLAMA_GEMMA3),
    ("lmstudio_docs", LmStudioModels, LMSTUDIO_DOCS),
    ("lmstudio_gemma3", LmStudioModels, LMSTUDIO_GEMMA3),
    ("lmstudio_none", LmStudioModels, LMSTUDIO_NONE),
    ("lmstudio_mlx", LmStudioModels, LMSTUDIO_MLX),
];

fn parse(src: LoadSource, body: &str) -> Result<LoadReport, LoadParseError> {
    src.parse(body.as_bytes())
}

fn counts(running: u64, waiting: u64) -> LoadReport {
    LoadReport {
        running: Some(running),
        waiting: Some(waiting),
        ..LoadReport::default()
    }
}

fn slots(running: u64, capacity: u64) -> LoadReport {
    LoadReport {
        running: Some(running),
        capacity: Some(capacity),
        ..LoadReport::default()
    }
}

fn loaded(names: &[&str]) -> LoadReport {
    LoadReport {
        loaded_models: Some(names.iter().map(|n| n.to_string()).collect()),
        ..LoadReport::default()
    }
}

/// The error, after checking that it reads as one line naming its source.
fn error(src: LoadSource, body: &[u8]) -> LoadParseError {
    let e = src.parse(body).expect_err("a hostile body must be refused");
    let m = e.to_string();
    assert!(m.starts_with(src.name()), "{m}");
    assert!(!m.contains(['\n', '\r']), "{m:?}");
    assert_eq!(e.source_of(), src);
    e
}

// ## Real payloads, exact values

#[test]
fn llamacpp_slots_count_the_slots_and_the_busy_ones() {
    // llama-server with `--parallel 2`, idle, then with 3 concurrent requests (one waits).
    assert_eq!(parse(LlamaCppSlots, LLAMACPP_SLOTS_IDLE), Ok(slots(0, 2)));
    assert_eq!(parse(LlamaCppSlots, LLAMACPP_SLOTS_BUSY), Ok(slots(2, 2)));
}

#[test]
fn older_llamacpp_slots_say_state_instead_of_is_processing() {
    assert_eq!(parse(LlamaCppSlots, LLAMACPP_SLOTS_STATE), Ok(slots(1, 1)));
    // 0 is idle; 1 (processing; later prompt), 2 (prompt done) and 3 (generating) are busy.
    let body = r#"[{"state":0},{"state":1},{"state":2},{"state":3},{"is_processing":false}]"#;
    assert_eq!(parse(LlamaCppSlots, body), Ok(slots(3, 5)));
}

#[test]
fn llamacpp_metrics_give_processing_and_deferred() {
    assert_eq!(
        parse(LlamaCppMetrics, LLAMACPP_METRICS_IDLE),
        Ok(counts(0, 0))
    );
    // The same 3 requests on 2 slots: 2 processing, 1 deferred.
    assert_eq!(
        parse(LlamaCppMetrics, LLAMACPP_METRICS_BUSY),
        Ok(counts(2, 1))
    );
}

#[test]
fn older_llamacpp_metrics_also_give_the_kv_cache() {
    let body = "llamacpp:kv_cache_usage_ratio 0.25\nllamacpp:requests_processing 1\n";
    assert_eq!(
        parse(LlamaCppMetrics, body),
        Ok(LoadReport {
            running: Some(1),
            kv_cache: Some(0.25),
            ..LoadReport::default()
        })
    );
}

#[test]
fn vllm_metrics_give_running_waiting_and_kv_cache() {
    // vLLM V1 (Feb 2026): `engine` and `model_name` labels, both KV gauge names.
    assert_eq!(
        parse(VllmMetrics, VLLM_V1),
        Ok(LoadReport {
            kv_cache: Some(0.0011764705882353343),
            ..counts(0, 0)
        })
    );
    // An older vLLM: only `gpu_cache_usage_perc`.
    assert_eq!(
        parse(VllmMetrics, VLLM_V0),
        Ok(LoadReport {
            kv_cache: Some(0.0),
            ..counts(0, 0)
        })
    );
}

#[test]
fn vllm_metrics_named_without_samples_are_there_without_values() {
    // vLLM 0.5 before its first stats: HELP and TYPE lines only. The server is the right one,
    // it just has nothing to say yet: not an error (that would drop the source).
    assert_eq!(
        parse(VllmMetrics, VLLM_NO_SAMPLES),
        Ok(LoadReport::default())
    );
}

#[test]
fn sglang_metrics_give_running_queued_and_token_usage() {
    assert_eq!(
        parse(SglangMetrics, SGLANG),
        Ok(LoadReport {
            kv_cache: Some(0.28),
            ..counts(162, 2826)
        })
    );
}

#[test]
fn ollama_ps_gives_the_models_in_memory() {
    assert_eq!(
        parse(OllamaPs, OLLAMA_DOCS),
        Ok(loaded(&["mistral:latest"]))
    );
    assert_eq!(
        parse(OllamaPs, OLLAMA_GEMMA3),
        Ok(loaded(&["gemma3:latest"]))
    );
    assert_eq!(parse(OllamaPs, r#"{"models":[]}"#), Ok(loaded(&[])));
}

#[test]
fn ollama_ps_names_fall_back_to_model() {
    let body = r#"{"models":[{"model":"a:1"},{"name":"","model":"b:2"},{"name":"c:3"},{}]}"#;
    assert_eq!(parse(OllamaPs, body), Ok(loaded(&["a:1", "b:2", "c:3"])));
}

#[test]
fn lm_studio_gives_the_models_whose_state_is_loaded() {
    // The documented example: three models on disk, none loaded.
    assert_eq!(parse(LmStudioModels, LMSTUDIO_DOCS), Ok(loaded(&[])));
    assert_eq!(
        parse(LmStudioModels, LMSTUDIO_GEMMA3),
        Ok(loaded(&["google/gemma-3-4b"]))
    );
    // With just-in-time loading off, LM Studio lists only what is loaded, and so nothing.
    assert_eq!(parse(LmStudioModels, LMSTUDIO_NONE), Ok(loaded(&[])));
    assert_eq!(
        parse(LmStudioModels, LMSTUDIO_MLX),
        Ok(loaded(&["gemma-3n-e4b-it-mlx"]))
    );
    let body = r#"{"data":[{"id":"a","state":"loaded"},{"id":"b"},{"id":"c","state":"Loaded"},{"state":"loaded"}]}"#;
    assert_eq!(parse(LmStudioModels, body), Ok(loaded(&["a"])));
}

#[test]
fn every_fixture_is_refused_by_every_other_source() {
    for (fixture, own, body) in FIXTURES {
        for &src in LoadSource::ALL {
            let result = parse(src, body);
            if src == *own {
                assert!(result.is_ok(), "{fixture} by {src}: {result:?}");
            } else {
                assert!(result.is_err(), "{fixture} by {src}: {result:?}");
                error(src, body.as_bytes());
            }
        }
    }
}

#[test]
fn reports_serialize_without_the_missing_fields() {
    let report = parse(LlamaCppSlots, LLAMACPP_SLOTS_BUSY).unwrap();
    assert_eq!(
        serde_json::to_string(&report).unwrap(),
        r#"{"running":2,"capacity":2}"#
    );
    let report = parse(OllamaPs, OLLAMA_DOCS).unwrap();
    assert_eq!(
        serde_json::to_string(&report).unwrap(),
        r#"{"loaded_models":["mistral:latest"]}"#
    );
}

// ## The table of SPEC 10.1

#[test]
fn sources_per_type_match_the_table() {
    use EndpointType::*;
    assert_eq!(
        LoadSource::for_type(LlamaCpp),
        &[LlamaCppSlots, LlamaCppMetrics]
    );
    assert_eq!(LoadSource::for_type(Vllm), &[VllmMetrics]);
    assert_eq!(LoadSource::for_type(Sglang), &[SglangMetrics]);
    assert_eq!(LoadSource::for_type(Ollama), &[OllamaPs]);
    assert_eq!(LoadSource::for_type(LmStudio), &[LmStudioModels]);
    assert!(LoadSource::for_type(OpenAiCompatible).is_empty());
    assert!(LoadSource::for_type(Auto).is_empty());
    let paths: Vec<_> = LoadSource::ALL.iter().map(|s| s.path()).collect();
    assert_eq!(
        paths,
        [
            "/slots",
            "/metrics",
            "/metrics",
            "/metrics",
            "/api/ps",
            "/api/v0/models"
        ]
    );
    assert_eq!(LlamaCppSlots.name(), "llamacpp /slots");
    assert_eq!(LmStudioModels.to_string(), "lm-studio /api/v0/models");
}

// ## Aggregation over label sets

#[test]
fn counts_add_up_over_engines_and_the_kv_cache_is_the_fullest() {
    let body = "\
vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 2.0
vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 3.0
vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 4
vllm:num_requests_waiting_by_reason{engine=\"0\",reason=\"capacity\"} 9
vllm:num_requests_running_bucket{le=\"+Inf\"} 100
vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.9
vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"m\"} 0.5
";
    assert_eq!(
        parse(VllmMetrics, body),
        Ok(LoadReport {
            kv_cache: Some(0.9),
            ..counts(5, 4)
        })
    );
}

#[test]
fn the_newer_kv_gauge_wins_over_the_older_name() {
    let both = "vllm:gpu_cache_usage_perc 0.7\nvllm:kv_cache_usage_perc 0.2\n";
    assert_eq!(parse(VllmMetrics, both).unwrap().kv_cache, Some(0.2));
    let old = "vllm:gpu_cache_usage_perc 0.7\n";
    assert_eq!(parse(VllmMetrics, old).unwrap().kv_cache, Some(0.7));
}

#[test]
fn a_metric_only_named_leaves_its_field_empty() {
    let body = "# TYPE sglang:num_queue_reqs gauge\nsglang:num_running_reqs 1\n";
    assert_eq!(
        parse(SglangMetrics, body),
        Ok(LoadReport {
            running: Some(1),
            ..LoadReport::default()
        })
    );
}

// ## Hostile bodies

#[test]
fn empty_bodies_are_refused() {
    for &src in LoadSource::ALL {
        error(src, b"");
    }
    assert!(matches!(
        error(VllmMetrics, b""),
        LoadParseError::NoMetrics { .. }
    ));
    assert!(matches!(
        error(OllamaPs, b""),
        LoadParseError::NotJson { .. }
    ));
}

#[test]
fn another_servers_metrics_are_refused() {
    let other = "# HELP process_open_fds Number of open file descriptors.\nprocess_open_fds 45.0\n";
    for src in [LlamaCppMetrics, VllmMetrics, SglangMetrics] {
        assert_eq!(
            error(src, other.as_bytes()),
            LoadParseError::NoMetrics { src }
        );
    }
}

#[test]
fn json_of_the_wrong_shape_is_refused() {
    // What llama-server answers (with 501) when /slots is off, as if it came with a 200.
    let off = br#"{"error":{"code":501,"message":"This server does not support slots endpoint.","type":"not_supported_error"}}"#;
    assert!(matches!(
        error(LlamaCppSlots, off),
        LoadParseError::Shape { .. }
    ));
    assert_eq!(
        error(LlamaCppSlots, br#"[{"state":0},{"id":1}]"#),
        LoadParseError::UnknownSlot {
            src: LlamaCppSlots,
            index: 1
        }
    );
    for body in [
        &br#"[{"is_processing":"yes"}]"#[..],
        br#"[{"state":-1}]"#,
        br#"[1,2]"#,
    ] {
        assert!(matches!(
            error(LlamaCppSlots, body),
            LoadParseError::Shape { .. }
        ));
    }
    assert_eq!(
        error(LlamaCppSlots, b"[]"),
        LoadParseError::NoSlots { src: LlamaCppSlots }
    );
    for body in [
        &br#"{"models":null}"#[..],
        br#"{"data":[]}"#,
        br#"{"models":[{"name":5}]}"#,
        br#"[]"#,
    ] {
        assert!(matches!(
            error(OllamaPs, body),
            LoadParseError::Shape { .. }
        ));
    }
    for body in [
        &br#"{"models":[]}"#[..],
        br#"{"data":[{"id":"a","state":true}]}"#,
        br#"{"data":{}}"#,
    ] {
        assert!(matches!(
            error(LmStudioModels, body),
            LoadParseError::Shape { .. }
        ));
    }
}

#[test]
fn truncated_bodies_are_refused() {
    for (src, body) in [
        (LlamaCppSlots, LLAMACPP_SLOTS_BUSY),
        (OllamaPs, OLLAMA_DOCS),
        (LmStudioModels, LMSTUDIO_GEMMA3),
    ] {
        assert!(matches!(
            error(src, &body.as_bytes()[..body.len() / 2]),
            LoadParseError::NotJson { .. }
        ));
    }
    // A metrics body cut in the middle of a line: the line is malformed, wherever it is.
    let cut = &VLLM_V1[..VLLM_V1.find("0.0011764705882353343").unwrap() - 2];
    assert!(matches!(
        error(VllmMetrics, cut.as_bytes()),
        LoadParseError::Metrics { .. }
    ));
    assert_eq!(
        error(SglangMetrics, b"sglang:num_running_reqs{model_name=\"m"),
        LoadParseError::Metrics {
            src: SglangMetrics,
            error: prometheus::PromError {
                line: 1,
                kind: prometheus::PromErrorKind::UnterminatedValue
            }
        }
    );
}

#[test]
fn a_malformed_line_anywhere_refuses_the_whole_text() {
    let body = format!("{LLAMACPP_METRICS_BUSY}llamacpp:requests_deferred one\n");
    let lines = LLAMACPP_METRICS_BUSY.lines().count();
    assert_eq!(
        error(LlamaCppMetrics, body.as_bytes()).to_string(),
        format!(
            "llamacpp /metrics: line {}: value is not a float",
            lines + 1
        )
    );
}

#[test]
fn counts_must_be_whole_non_negative_and_finite() {
    for value in ["-1", "2.5", "NaN", "+Inf", "-Inf", "-0.5"] {
        let body = format!("vllm:num_requests_waiting {value}\n");
        let e = error(VllmMetrics, body.as_bytes());
        assert!(
            matches!(
                e,
                LoadParseError::NotACount {
                    line: 1,
                    metric: "vllm:num_requests_waiting",
                    ..
                }
            ),
            "{value}: {e:?}"
        );
    }
    // Prometheus writes integers as floats, and -0 is 0.
    let body = "vllm:num_requests_waiting 7.0\nvllm:num_requests_running -0\n";
    assert_eq!(parse(VllmMetrics, body), Ok(counts(0, 7)));
}

#[test]
fn huge_counts_are_refused_not_wrapped() {
    for value in ["1e300", "18446744073709551616", "4294967297"] {
        let body = format!("sglang:num_queue_reqs {value}\n");
        assert_eq!(
            error(SglangMetrics, body.as_bytes()),
            LoadParseError::CountTooLarge {
                src: SglangMetrics,
                metric: "sglang:num_queue_reqs"
            },
            "{value}"
        );
    }
    let at_limit = format!("sglang:num_queue_reqs {MAX_COUNT}\n");
    assert_eq!(
        parse(SglangMetrics, &at_limit).unwrap().waiting,
        Some(MAX_COUNT)
    );
    // Each set under the limit, their sum over it.
    let half = MAX_COUNT / 2 + 1;
    let body = format!(
        "sglang:num_queue_reqs{{dp=\"0\"}} {half}\nsglang:num_queue_reqs{{dp=\"1\"}} {half}\n"
    );
    assert!(matches!(
        error(SglangMetrics, body.as_bytes()),
        LoadParseError::CountTooLarge { .. }
    ));
}

#[test]
fn kv_cache_above_one_is_full_and_below_zero_or_nan_is_refused() {
    let over = "sglang:token_usage 1.02\n";
    assert_eq!(parse(SglangMetrics, over).unwrap().kv_cache, Some(1.0));
    for value in ["-0.1", "NaN", "+Inf", "-Inf"] {
        let body = format!("sglang:token_usage {value}\n");
        assert!(matches!(
            error(SglangMetrics, body.as_bytes()),
            LoadParseError::NotAFraction { line: 1, .. }
        ));
    }
}

#[test]
fn non_utf8_is_an_error_not_a_panic() {
    for &src in LoadSource::ALL {
        assert_eq!(error(src, b"\xff\xfe"), LoadParseError::NotUtf8 { src });
    }
    // Even where serde_json would skip the bad string unread.
    let body = b"{\"models\":[{\"name\":\"a\",\"x\":\"\xff\"}]}";
    assert_eq!(
        error(OllamaPs, body),
        LoadParseError::NotUtf8 { src: OllamaPs }
    );
}

#[test]
fn bodies_over_the_limit_are_refused() {
    let body = vec![b' '; MAX_LOAD_BODY + 1];
    for &src in LoadSource::ALL {
        assert!(matches!(
            error(src, &body),
            LoadParseError::TooLarge { len, .. } if len == MAX_LOAD_BODY + 1
        ));
    }
}

#[test]
fn a_hundred_thousand_models_keep_the_bound() {
    let entries: Vec<String> = (0..100_000)
        .map(|i| format!(r#"{{"name":"m{i}"}}"#))
        .collect();
    let body = format!(r#"{{"models":[{}]}}"#, entries.join(","));
    // Over the read limit as a body; the parser bounds it all the same.
    assert!(body.len() > MAX_LOAD_BODY);
    let report = parse_ollama_ps(&body).unwrap();
    let names = report.loaded_models.unwrap();
    assert_eq!(names.len(), MAX_MODELS);
    assert_eq!(names[0], "m0");
    // As many as fit in a body are bounded too.
    let entries: Vec<String> = (0..30_000)
        .map(|i| format!(r#"{{"id":"{i}","state":"loaded"}}"#))
        .collect();
    let body = format!(r#"{{"data":[{}]}}"#, entries.join(","));
    assert!(body.len() <= MAX_LOAD_BODY);
    let names = parse(LmStudioModels, &body).unwrap().loaded_models.unwrap();
    assert_eq!(names.len(), MAX_MODELS);
}

#[test]
fn long_and_empty_names_are_dropped() {
    let longest = "x".repeat(MAX_MODEL_NAME);
    let too_long = "y".repeat(MAX_MODEL_NAME + 1);
    let body = format!(
        r#"{{"data":[{{"id":"{longest}","state":"loaded"}},{{"id":"{too_long}","state":"loaded"}},{{"id":"","state":"loaded"}}]}}"#
    );
    assert_eq!(
        parse(LmStudioModels, &body),
        Ok(LoadReport {
            loaded_models: Some(vec![longest]),
            ..LoadReport::default()
        })
    );
}

#[test]
fn deep_json_is_refused_not_a_stack_overflow() {
    let body = "[".repeat(100_000);
    for src in [LlamaCppSlots, OllamaPs, LmStudioModels] {
        error(src, body.as_bytes());
    }
    let body = format!(
        r#"{{"models":[{{"name":"a","x":{}}}]}}"#,
        "[".repeat(10_000)
    );
    error(OllamaPs, body.as_bytes());
}
