//! Which endpoints a proxy path may reach and what path goes upstream (SPEC 5.1), the
//! path-traversal check (SPEC 5.2), and the one normalised spelling of a path that the
//! `internal_token` guard checks (SPEC 11). Pure functions over the raw request path.

use corral_actors::profiles::EndpointType;
use corral_actors::select::RouteClass;

/// The provider class named by `/olla/<provider>/…`: Olla's routing prefixes (its profiles'
/// `routing.prefixes`), plus each type's own name.
pub fn provider_class(name: &str) -> Option<RouteClass> {
    Some(match name {
        "ollama" => RouteClass::Provider(EndpointType::Ollama),
        "lmstudio" | "lm-studio" | "lm_studio" => RouteClass::Provider(EndpointType::LmStudio),
        "vllm" => RouteClass::Provider(EndpointType::Vllm),
        "llamacpp" | "llama-cpp" => RouteClass::Provider(EndpointType::LlamaCpp),
        "sglang" => RouteClass::Provider(EndpointType::Sglang),
        "lemonade" => RouteClass::Provider(EndpointType::Lemonade),
        "litellm" => RouteClass::Provider(EndpointType::LiteLlm),
        "lmdeploy" => RouteClass::Provider(EndpointType::LmDeploy),
        "dmr" | "docker-model-runner" => RouteClass::Provider(EndpointType::DockerModelRunner),
        "omlx" => RouteClass::Provider(EndpointType::Omlx),
        "vllm-mlx" => RouteClass::Provider(EndpointType::VllmMlx),
        "openai" | "openai-compatible" => RouteClass::OpenAi,
        "proxy" => RouteClass::Any,
        _ => return None,
    })
}

/// The upstream path for a raw request path: `/olla/<p>/<rest>` → `/<rest>`; the root
/// aliases `/v1/…` and `/api/…` go upstream unchanged. The client's encoding is kept.
pub fn upstream_path(raw_path: &str) -> &str {
    if let Some(rest) = raw_path.strip_prefix("/olla/") {
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    } else {
        raw_path
    }
}

/// The one normalised spelling of a path that every path check uses (SPEC 11): percent-escapes
/// decoded (repeatedly, so `%252e` is a dot), backslashes read as slashes, runs of slashes
/// merged, `.` segments dropped, `..` segments applied, and no trailing slash (but the root).
pub fn normalise(raw_path: &str) -> String {
    let decoded = percent_decode(raw_path).replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment.trim_end_matches('\0') {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

/// True when any segment of the path is `..`, however it is encoded.
pub fn is_traversal(raw_path: &str) -> bool {
    percent_decode(raw_path)
        .split(['/', '\\'])
        .any(|segment| segment.trim_end_matches('\0') == "..")
}

/// Decodes `%XX` escapes (repeatedly, so `%252e` cannot smuggle a dot through).
fn percent_decode(s: &str) -> String {
    let mut current = s.to_string();
    for _ in 0..3 {
        let bytes = current.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        let next = String::from_utf8_lossy(&out).into_owned();
        if next == current {
            break;
        }
        current = next;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_map_to_classes() {
        assert_eq!(
            provider_class("ollama"),
            Some(RouteClass::Provider(EndpointType::Ollama))
        );
        assert_eq!(provider_class("lmstudio"), provider_class("lm-studio"));
        assert_eq!(provider_class("lm_studio"), provider_class("lm-studio"));
        for (prefix, kind) in [
            ("lemonade", EndpointType::Lemonade),
            ("litellm", EndpointType::LiteLlm),
            ("lmdeploy", EndpointType::LmDeploy),
            ("dmr", EndpointType::DockerModelRunner),
            ("docker-model-runner", EndpointType::DockerModelRunner),
            ("omlx", EndpointType::Omlx),
            ("vllm-mlx", EndpointType::VllmMlx),
        ] {
            assert_eq!(
                provider_class(prefix),
                Some(RouteClass::Provider(kind)),
                "{prefix}"
            );
        }
        assert_eq!(
            provider_class("vllm"),
            Some(RouteClass::Provider(EndpointType::Vllm))
        );
        assert_eq!(
            provider_class("llamacpp"),
            Some(RouteClass::Provider(EndpointType::LlamaCpp))
        );
        assert_eq!(
            provider_class("sglang"),
            Some(RouteClass::Provider(EndpointType::Sglang))
        );
        assert_eq!(provider_class("openai"), Some(RouteClass::OpenAi));
        assert_eq!(
            provider_class("openai-compatible"),
            Some(RouteClass::OpenAi)
        );
        assert_eq!(provider_class("proxy"), Some(RouteClass::Any));
        assert_eq!(provider_class("bogus"), None);
    }

    #[test]
    fn upstream_paths() {
        assert_eq!(upstream_path("/olla/ollama/api/chat"), "/api/chat");
        assert_eq!(
            upstream_path("/olla/openai/v1/chat/completions"),
            "/v1/chat/completions"
        );
        assert_eq!(upstream_path("/olla/proxy"), "/");
        assert_eq!(upstream_path("/olla/vllm/"), "/");
        assert_eq!(
            upstream_path("/v1/chat/completions"),
            "/v1/chat/completions"
        );
        assert_eq!(upstream_path("/api/tags"), "/api/tags");
        assert_eq!(upstream_path("/olla/vllm/v1/a%20b"), "/v1/a%20b");
    }

    #[test]
    fn paths_normalise_to_one_spelling() {
        for (raw, plain) in [
            ("/internal/status", "/internal/status"),
            ("//internal//status/", "/internal/status"),
            ("/%69nternal/%2573tatus", "/internal/status"),
            ("/a/./b/../c", "/a/c"),
            ("/a\\b", "/a/b"),
            ("/", "/"),
            ("", "/"),
            ("/../..", "/"),
        ] {
            assert_eq!(normalise(raw), plain, "{raw}");
        }
    }

    #[test]
    fn traversal_is_caught_however_encoded() {
        for bad in [
            "/olla/vllm/../etc/passwd",
            "/olla/vllm/%2e%2e/secret",
            "/olla/vllm/%2E%2E/secret",
            "/olla/vllm/.%2e/secret",
            "/olla/vllm/a%2f..%2fb",
            "/olla/vllm/%252e%252e/x",
            "/v1/..",
            "/api/..\\x",
        ] {
            assert!(is_traversal(bad), "{bad}");
        }
        for good in [
            "/olla/vllm/v1/models",
            "/v1/chat/completions",
            "/api/a..b",
            "/v1/...",
            "/v1/%zz",
        ] {
            assert!(!is_traversal(good), "{good}");
        }
    }
}
