//! Model listings answered from the registry's catalog, not proxied (SPEC 5.1, 12): Olla's
//! catalogue `/olla/models` (its `format` and filters), one model's summary
//! `/olla/models/{id}`, and the platform listings of the routes (`/v1/models`,
//! `/olla/<provider>/v1/models`, `/api/tags`, LM Studio's `/api/v0/models`).
//!
//! Every listing reads the latest published catalog and sends no message to the registry:
//! listings are cheap, unauthenticated and may come in floods (SPEC 11). Which models and
//! sources a listing shows is decided here ([`select`]); `formats` renders them.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpRequest, HttpResponse};
use corral_actors::catalog::{model_matches, ModelCatalog, ModelSource};
use corral_actors::model_facts::ModelKind;
use corral_actors::profiles::{EndpointType, RouteClass};
use corral_actors::routing::RoutingTable;

use super::formats::{self, Context, Format, Listed};
use crate::errors::ApiError;
use crate::state::AppState;
use serde_json::{json, Value};

/// What `/olla/models` was asked for. Empty parameters count as absent (as in Olla), and
/// unknown parameters are ignored; a known one with a value outside its set is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogQuery {
    pub format: Format,
    /// An endpoint's name (or its configured URL, as Olla also takes).
    pub endpoint: Option<String>,
    /// Compared without regard to case.
    pub family: Option<String>,
    pub kind: Option<ModelKind>,
    /// `true`: only models some endpoint in rotation serves; `false`: only the others.
    pub available: Option<bool>,
    /// Also list models whose every endpoint is out of rotation.
    pub include_unavailable: bool,
}

impl Default for CatalogQuery {
    fn default() -> Self {
        CatalogQuery {
            format: Format::Unified,
            endpoint: None,
            family: None,
            kind: None,
            available: None,
            include_unavailable: false,
        }
    }
}

impl CatalogQuery {
    /// Reads the decoded query pairs; the first of a repeated parameter counts.
    pub fn parse(pairs: &[(String, String)]) -> Result<CatalogQuery, ApiError> {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let invalid = |parameter: &str, value: &str, expected: String| ApiError::InvalidQuery {
            parameter: parameter.to_string(),
            value: value.to_string(),
            expected,
        };
        let boolean = |name: &str| -> Result<Option<bool>, ApiError> {
            match get(name) {
                None => Ok(None),
                Some("true") => Ok(Some(true)),
                Some("false") => Ok(Some(false)),
                Some(v) => Err(invalid(name, v, "true or false".into())),
            }
        };
        let format = match get("format") {
            None => Format::Unified,
            Some(v) => Format::parse(v).ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
                invalid("format", v, format!("one of: {}", names.join(", ")))
            })?,
        };
        let mut kind = match get("type") {
            None => None,
            Some(v) => Some(ModelKind::parse(v).ok_or_else(|| {
                invalid(
                    "type",
                    v,
                    format!("one of: {}", ModelKind::NAMES.join(", ")),
                )
            })?),
        };
        // Olla's older spelling of `type`.
        if let Some(v) = get("capability") {
            kind = Some(match v.to_ascii_lowercase().as_str() {
                "vision" | "multimodal" => ModelKind::Vlm,
                "embedding" | "embeddings" | "vector_search" => ModelKind::Embeddings,
                "chat" | "text_generation" | "completion" => ModelKind::Llm,
                _ => {
                    return Err(invalid(
                        "capability",
                        v,
                        "one of: vision, multimodal, embedding, embeddings, vector_search, chat, text_generation, completion".into(),
                    ))
                }
            });
        }
        Ok(CatalogQuery {
            format,
            endpoint: get("endpoint").map(str::to_string),
            family: get("family").map(str::to_string),
            kind,
            available: boolean("available")?,
            include_unavailable: boolean("include_unavailable")?.unwrap_or(false),
        })
    }
}

/// The models a listing shows, in catalog order, each with the sources `admits` lets
/// through (routable first). A model is shown when it has such a source in rotation (or
/// `include_unavailable` is set) and it passes the query's filters.
pub fn select<'a>(
    catalog: &'a ModelCatalog,
    query: &CatalogQuery,
    admits: impl Fn(&ModelSource) -> bool,
) -> Vec<Listed<'a>> {
    catalog
        .models
        .iter()
        .filter_map(|m| {
            let mut sources: Vec<&ModelSource> = m.sources.iter().filter(|s| admits(s)).collect();
            let available = sources.iter().any(|s| s.status.is_routable());
            let keep = !sources.is_empty()
                && (available || query.include_unavailable)
                && query.available.is_none_or(|want| want == available)
                && query
                    .family
                    .as_deref()
                    .is_none_or(|f| m.facts.family.eq_ignore_ascii_case(f))
                && query.kind.is_none_or(|k| k == m.facts.kind);
            if !keep {
                return None;
            }
            // Stable: endpoint order stays within each group.
            sources.sort_by_key(|s| !s.status.is_routable());
            Some(Listed { model: m, sources })
        })
        .collect()
}

/// The name of the endpoint a filter value means: its name, or its configured URL.
fn endpoint_named(table: &RoutingTable, wanted: &str) -> Option<String> {
    let wanted_url = wanted.trim_end_matches('/');
    table
        .entries()
        .iter()
        .map(|e| &e.candidate.settings)
        .find(|s| s.name.as_ref() == wanted || s.url == wanted_url)
        .map(|s| s.name.to_string())
}

fn context(state: &AppState) -> Context {
    Context {
        created: state
            .started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        fallback_time: state.started_at,
    }
}

/// `GET /olla/models`: Olla's catalogue in the asked format.
pub async fn catalogue(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ApiError::InvalidQuery {
            parameter: "query".into(),
            value: req.query_string().to_string(),
            expected: e.to_string(),
        })?
        .into_inner();
    let query = CatalogQuery::parse(&pairs)?;
    let table = state.published();
    let endpoint = match &query.endpoint {
        None => None,
        Some(v) => Some(
            endpoint_named(&table, v).ok_or_else(|| ApiError::InvalidQuery {
                parameter: "endpoint".into(),
                value: v.clone(),
                expected: "the name of a configured endpoint".into(),
            })?,
        ),
    };
    let listed = select(table.catalog(), &query, |s| {
        query.format.admits(s.kind) && endpoint.as_deref().is_none_or(|e| s.endpoint.as_ref() == e)
    });
    let mut body = formats::render(query.format, &listed, context(&state));
    if query.format == Format::Unified {
        let aliases = &state.running().model_aliases;
        if let Some(data) = body.get_mut("data").and_then(Value::as_array_mut) {
            for entry in data {
                let id = entry["id"].as_str().unwrap_or_default().to_string();
                entry["olla"]["aliases"] = json!(aliases_of(aliases, &id));
            }
        }
    }
    Ok(HttpResponse::Ok().json(body))
}

/// The `model_aliases` that name `model` among their native names (SPEC 12: listings show
/// the alias).
fn aliases_of<'a>(aliases: &'a crate::config::ModelAliases, model: &str) -> Vec<&'a str> {
    aliases
        .iter()
        .filter(|(_, names)| names.iter().any(|n| model_matches(model, n)))
        .map(|(alias, _)| alias.as_str())
        .collect()
}

/// `GET /olla/models/{id}`: Olla's summary of one model, by its name (or Ollama's other
/// spelling of it, `llama3` for `llama3:latest`), whatever the state of its endpoints.
pub async fn model(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let wanted = req.match_info().get("id").unwrap_or_default();
    let table = state.published();
    let config = state.running();
    // A model's own name first (Olla's rule: a real model wins over an alias of its name),
    // then an alias, as the first of its native names that some endpoint lists.
    let model = table
        .catalog()
        .find(wanted)
        .or_else(|| {
            let names = config.model_aliases.get(wanted)?;
            names.iter().find_map(|n| table.catalog().find(n))
        })
        .ok_or_else(|| ApiError::ModelNotFound {
            model: wanted.to_string(),
        })?;
    // When it was last seen is the status read model's (best effort: `never` while the
    // registry restarts).
    let last_seen = state.fleet().await.ok().and_then(|fleet| {
        fleet
            .endpoints
            .iter()
            .filter(|e| model.endpoints().any(|m| m == &e.name))
            .filter_map(|e| e.view.last_model_sync_at)
            .max()
    });
    let mut body = formats::summary(model, last_seen, SystemTime::now());
    body["aliases"] = json!(aliases_of(&config.model_aliases, &model.name));
    Ok(HttpResponse::Ok().json(body))
}

/// A route's own listing: `format`'s shape, models on routable endpoints the route may use.
fn route_listing(state: &AppState, route: RouteClass, format: Format) -> HttpResponse {
    let table = state.published();
    let query = CatalogQuery::default();
    let listed = select(table.catalog(), &query, |s| route.accepts(s.kind));
    HttpResponse::Ok().json(formats::render(format, &listed, context(state)))
}

/// `/v1/models`, `/olla/<provider>/v1/models`: OpenAI's list shape.
pub async fn openai(state: &AppState, route: RouteClass) -> Result<HttpResponse, ApiError> {
    let table = state.published();
    let query = CatalogQuery::default();
    let listed = select(table.catalog(), &query, |s| route.accepts(s.kind));
    let mut body = formats::render(Format::OpenAi, &listed, context(state));
    // The `model_aliases` a request on this route could use now are listed too (SPEC 12).
    if let Some(data) = body
        .get_mut("data")
        .and_then(serde_json::Value::as_array_mut)
    {
        let created = data.first().and_then(|m| m.get("created").cloned());
        for alias in served_aliases(&state.running().model_aliases, table.catalog(), route) {
            if !data.iter().any(|m| m["id"] == alias) {
                data.push(serde_json::json!({
                    "id": alias,
                    "object": "model",
                    "created": created.clone().unwrap_or(serde_json::json!(0)),
                    "owned_by": "olla",
                }));
            }
        }
    }
    Ok(HttpResponse::Ok().json(body))
}

/// `/api/tags`, `/olla/ollama/api/tags`: Ollama's shape, Ollama endpoints' models.
pub async fn ollama_tags(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(route_listing(
        &state,
        RouteClass::Provider(EndpointType::Ollama),
        Format::Ollama,
    ))
}

/// `/olla/lmstudio/api/v1/tags`: LM Studio endpoints' models in Ollama's shape (a route of
/// Olla's provider scripts, `test-provider-routing.sh`).
pub async fn lm_studio_tags(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(route_listing(
        &state,
        RouteClass::Provider(EndpointType::LmStudio),
        Format::Ollama,
    ))
}

/// `/olla/lmstudio/api/v0/models`: LM Studio's richer shape, LM Studio endpoints' models.
pub async fn lm_studio(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(route_listing(
        &state,
        RouteClass::Provider(EndpointType::LmStudio),
        Format::LmStudio,
    ))
}

/// The aliases that a request on `route` could use now: those with a native name listed on
/// a routable endpoint of the route (what the alias would route to).
fn served_aliases<'a>(
    aliases: &'a crate::config::ModelAliases,
    catalog: &ModelCatalog,
    route: RouteClass,
) -> Vec<&'a str> {
    aliases
        .iter()
        .filter(|(_, targets)| {
            catalog.models.iter().any(|m| {
                targets.iter().any(|t| model_matches(&m.name, t))
                    && m.available(route).next().is_some()
            })
        })
        .map(|(alias, _)| alias.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use corral_actors::catalog::Listing;
    use corral_actors::health::Status;
    use corral_actors::profiles::ModelInfo;

    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        web::Query::<Vec<(String, String)>>::from_query(q)
            .unwrap()
            .into_inner()
    }

    fn parse(q: &str) -> Result<CatalogQuery, ApiError> {
        CatalogQuery::parse(&pairs(q))
    }

    #[test]
    fn queries_parse_and_refuse_unknown_values() {
        assert_eq!(parse("").unwrap(), CatalogQuery::default());
        assert_eq!(parse("format=").unwrap(), CatalogQuery::default());
        let q = parse(
            "format=ollama&endpoint=gpu&family=Llama&type=vlm&available=false&include_unavailable=true&x=y",
        )
        .unwrap();
        assert_eq!(q.format, Format::Ollama);
        assert_eq!(q.endpoint.as_deref(), Some("gpu"));
        assert_eq!(q.family.as_deref(), Some("Llama"));
        assert_eq!(q.kind, Some(ModelKind::Vlm));
        assert_eq!(q.available, Some(false));
        assert!(q.include_unavailable);
        assert_eq!(
            parse("capability=vision").unwrap().kind,
            Some(ModelKind::Vlm)
        );
        assert_eq!(
            parse("format=docker-model-runner").unwrap().format,
            Format::DockerModelRunner
        );
        for bad in [
            "format=xml",
            "type=tts",
            "available=yes",
            "include_unavailable=1",
            "capability=fly",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, ApiError::InvalidQuery { .. }), "{bad}");
        }
        let err = parse("format=xml").unwrap_err().to_string();
        assert!(err.contains("vllm-mlx"), "{err}");
    }

    fn catalog() -> ModelCatalog {
        let (up, down, lms): (Arc<str>, Arc<str>, Arc<str>) =
            ("up".into(), "down".into(), "lms".into());
        let up_models: Vec<ModelInfo> = ["llama3:8b", "nomic-embed-text"]
            .into_iter()
            .map(ModelInfo::named)
            .collect();
        let down_models: Vec<ModelInfo> = ["llama3:8b", "qwen2.5:7b"]
            .into_iter()
            .map(ModelInfo::named)
            .collect();
        let lms_models = vec![ModelInfo::named("phi-3-mini")];
        ModelCatalog::build([
            Listing {
                endpoint: &up,
                kind: EndpointType::Ollama,
                status: Status::Healthy,
                models: Some(&up_models),
            },
            Listing {
                endpoint: &down,
                kind: EndpointType::Ollama,
                status: Status::Unhealthy,
                models: Some(&down_models),
            },
            Listing {
                endpoint: &lms,
                kind: EndpointType::LmStudio,
                status: Status::Healthy,
                models: Some(&lms_models),
            },
        ])
    }

    fn names(listed: &[Listed<'_>]) -> Vec<String> {
        listed.iter().map(|l| l.model.name.clone()).collect()
    }

    #[test]
    fn selection_follows_the_filters() {
        let c = catalog();
        let all = |_: &ModelSource| true;
        let q = |s: &str| parse(s).unwrap();
        assert_eq!(
            names(&select(&c, &q(""), all)),
            ["llama3:8b", "nomic-embed-text", "phi-3-mini"]
        );
        assert_eq!(
            names(&select(&c, &q("include_unavailable=true"), all)),
            ["llama3:8b", "nomic-embed-text", "phi-3-mini", "qwen2.5:7b"]
        );
        assert_eq!(
            names(&select(
                &c,
                &q("include_unavailable=true&available=false"),
                all
            )),
            ["qwen2.5:7b"]
        );
        assert_eq!(names(&select(&c, &q("family=LLAMA"), all)), ["llama3:8b"]);
        assert_eq!(
            names(&select(&c, &q("type=embeddings"), all)),
            ["nomic-embed-text"]
        );
        let lm = |s: &ModelSource| Format::LmStudio.admits(s.kind);
        assert_eq!(names(&select(&c, &q(""), lm)), ["phi-3-mini"]);
        let down_only = |s: &ModelSource| s.endpoint.as_ref() == "down";
        assert!(select(&c, &q(""), down_only).is_empty());
    }

    #[test]
    fn routable_sources_come_first_and_offline_ones_stay_visible() {
        let c = catalog();
        let listed = select(&c, &CatalogQuery::default(), |_| true);
        let llama = &listed[0];
        let order: Vec<(&str, &str)> = llama
            .sources
            .iter()
            .map(|s| (s.endpoint.as_ref(), formats::source_state(s)))
            .collect();
        assert_eq!(order, [("up", "available"), ("down", "offline")]);
    }
}
