//! The request body: buffered up to `max_body_size` so it can be replayed on failover
//! (SPEC 5.2), read for its top-level `"model"` (SPEC 5.3 step 2), given another `"model"`
//! for an alias's endpoint (SPEC 12), and read for the start of its conversation (sticky
//! sessions' `prefix_hash`).

use std::borrow::Cow;

use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::errors::ApiError;

/// The most buffer reserved before any byte of the body arrived.
const INITIAL_CAPACITY: u64 = 64 * 1024;

/// Reads the whole body, refusing more than `limit` bytes (early, from `Content-Length`,
/// when the client announces it).
pub async fn read_limited(
    mut payload: Payload,
    announced: Option<u64>,
    limit: u64,
) -> Result<Bytes, ApiError> {
    if announced.is_some_and(|n| n > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    // What the client announces is not yet what it sent: reserve a little, grow as bytes come.
    let mut body = BytesMut::with_capacity(announced.unwrap_or(0).min(INITIAL_CAPACITY) as usize);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequestBody(e.to_string()))?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[derive(Deserialize)]
struct ModelField<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

/// The model a request asks for. A body declared JSON is read strictly (malformed → 400).
/// A body that is not declared JSON but starts with `{` is read too — `curl -d` labels JSON
/// as a form, and routing it blind would send a model to endpoints that lack it — but if it
/// does not parse, it was not JSON after all and is forwarded untouched.
pub fn requested_model(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Option<String>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    let declared_json = content_type.is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    if declared_json {
        return model_of(body);
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(model_of(body).unwrap_or(None));
    }
    Ok(None)
}

/// The top-level `"model"` of a JSON body; malformed JSON is the client's error (400).
pub fn model_of(body: &[u8]) -> Result<Option<String>, ApiError> {
    // JSON is UTF-8; serde_json does not check the parts it skips.
    std::str::from_utf8(body).map_err(|e| ApiError::InvalidJson(format!("not UTF-8: {e}")))?;
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // Valid JSON that is not an object (or not JSON at all) cannot name a model.
        return serde_json::from_slice::<serde::de::IgnoredAny>(body)
            .map(|_| None)
            .map_err(|e| ApiError::InvalidJson(e.to_string()));
    }
    let parsed: ModelField =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    Ok(parsed.model.map(Cow::into_owned).filter(|m| !m.is_empty()))
}

/// The top-level fields that aliases and sticky sessions read, as the client wrote them.
#[derive(Deserialize)]
struct RawFields<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
}

fn raw_fields(body: &[u8]) -> Option<RawFields<'_>> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// Where `raw` (borrowed from `body`) lies in it; `None` if it does not (it always does:
/// serde_json lends a raw value out of the input, but a wrong guess must not panic).
fn span(body: &[u8], raw: &RawValue) -> Option<std::ops::Range<usize>> {
    let start = (raw.get().as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(raw.get().len())?;
    (body.get(start..end)? == raw.get().as_bytes()).then_some(start..end)
}

/// `body` with its top-level `"model"` string replaced by `native`, every other byte as the
/// client sent it (as Olla does); unchanged when it has no such string or already says so.
pub fn with_model(body: &Bytes, native: &str) -> Bytes {
    let Some(raw) = raw_fields(body).and_then(|f| f.model) else {
        return body.clone();
    };
    match serde_json::from_str::<Cow<'_, str>>(raw.get()) {
        Ok(current) if current != native => {}
        _ => return body.clone(),
    }
    let Some(at) = span(body, raw) else {
        return body.clone();
    };
    let encoded = serde_json::to_string(native).expect("a string always encodes");
    let mut out = BytesMut::with_capacity(body.len() - at.len() + encoded.len());
    out.extend_from_slice(&body[..at.start]);
    out.extend_from_slice(encoded.as_bytes());
    out.extend_from_slice(&body[at.end..]);
    out.freeze()
}

/// The start of the conversation, as written: the first `limit` bytes (0: all) of the
/// top-level `messages`, or of `prompt` when there are no messages (completions). Olla's
/// `prefix_hash` reads the same bytes.
pub fn conversation_prefix(body: &[u8], limit: usize) -> Option<&[u8]> {
    let fields = raw_fields(body)?;
    let empty = |raw: &RawValue| {
        raw.get()
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .eq(*b"[]")
    };
    let raw = match fields.messages {
        Some(m) if !empty(m) => m,
        _ => fields.prompt?,
    };
    let whole = &body[span(body, raw)?];
    Some(match limit {
        0 => whole,
        n => &whole[..n.min(whole.len())],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_model_field() {
        assert_eq!(
            model_of(br#"{"model":"llama3","messages":[]}"#)
                .unwrap()
                .as_deref(),
            Some("llama3")
        );
        assert_eq!(
            model_of(br#"{"messages":[{"model":"nested"}]}"#).unwrap(),
            None
        );
        assert_eq!(
            model_of(br#"{"model":"with \"escape\""}"#)
                .unwrap()
                .as_deref(),
            Some("with \"escape\"")
        );
        assert_eq!(model_of(b"[1,2]").unwrap(), None);
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(matches!(
            model_of(br#"{"model": "x""#),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(matches!(model_of(b"{nope}"), Err(ApiError::InvalidJson(_))));
        assert!(matches!(
            model_of(br#"{"model": 5}"#),
            Err(ApiError::InvalidJson(_))
        ));
    }

    #[test]
    fn reads_the_model_of_json_however_labelled() {
        let body = br#"{"model":"m"}"#;
        assert_eq!(
            requested_model(Some("application/json"), body)
                .unwrap()
                .as_deref(),
            Some("m")
        );
        assert_eq!(
            requested_model(Some("application/json; charset=utf-8"), body)
                .unwrap()
                .as_deref(),
            Some("m")
        );
        assert_eq!(
            requested_model(None, b"  {\"model\":\"m\"}")
                .unwrap()
                .as_deref(),
            Some("m")
        );
        // curl -d: JSON labelled as a form is still JSON.
        assert_eq!(
            requested_model(Some("application/x-www-form-urlencoded"), body)
                .unwrap()
                .as_deref(),
            Some("m")
        );
    }

    #[test]
    fn only_declared_json_must_parse() {
        assert!(matches!(
            requested_model(Some("application/json"), b"{oops"),
            Err(ApiError::InvalidJson(_))
        ));
        assert_eq!(requested_model(Some("text/plain"), b"{oops").unwrap(), None);
        assert_eq!(requested_model(None, b"hello").unwrap(), None);
        assert_eq!(
            requested_model(Some("application/json"), b"").unwrap(),
            None
        );
    }

    #[test]
    fn with_model_rewrites_only_the_top_level_model() {
        let body = Bytes::from_static(
            br#"{ "messages": [{"model":"alias"}],  "model" :  "alias" , "stream":true}"#,
        );
        assert_eq!(
            with_model(&body, "llama3.1:8b"),
            Bytes::from_static(
                br#"{ "messages": [{"model":"alias"}],  "model" :  "llama3.1:8b" , "stream":true}"#
            )
        );
        // Escapes are written as JSON needs them.
        let out = with_model(&Bytes::from_static(br#"{"model":"a"}"#), "q\"uote");
        assert_eq!(model_of(&out).unwrap().as_deref(), Some("q\"uote"));
    }

    #[test]
    fn with_model_leaves_alone_what_it_cannot_or_need_not_change() {
        for body in [
            &br#"{"model":"same"}"#[..],
            br#"{"prompt":"no model"}"#,
            br#"{"model":null}"#,
            br#"[{"model":"x"}]"#,
            b"not json",
            b"",
        ] {
            let body = Bytes::copy_from_slice(body);
            assert_eq!(with_model(&body, "same"), body);
        }
    }

    #[test]
    fn the_conversation_prefix_is_messages_else_prompt() {
        let chat = br#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#;
        assert_eq!(
            conversation_prefix(chat, 0),
            Some(&br#"[{"role":"user","content":"hello"}]"#[..])
        );
        assert_eq!(conversation_prefix(chat, 5), Some(&b"[{\"ro"[..]));
        assert_eq!(conversation_prefix(chat, 10_000).map(<[u8]>::len), Some(35));
        let completion = br#"{"model":"m","messages":[ ],"prompt":"once upon"}"#;
        assert_eq!(
            conversation_prefix(completion, 0),
            Some(&br#""once upon""#[..])
        );
        assert_eq!(conversation_prefix(br#"{"model":"m"}"#, 0), None);
        assert_eq!(conversation_prefix(b"{oops", 0), None);
    }

    #[test]
    fn odd_bodies_are_left_alone_without_a_panic() {
        let deep = format!(
            "{{\"model\":\"a\",\"x\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        for body in [
            br#"{"model":"a","model":"b"}"#.to_vec(),
            br#"{"model":"a\u00e9"}"#.to_vec(),
            b"{\"model\":\"\xff\"}".to_vec(),
            deep.into_bytes(),
        ] {
            let body = Bytes::from(body);
            let _ = with_model(&body, "b");
            let _ = conversation_prefix(&body, 3);
        }
        let escaped = Bytes::from_static(br#"{"model":"a\u00e9","n":1}"#);
        assert_eq!(
            with_model(&escaped, "z"),
            Bytes::from_static(br#"{"model":"z","n":1}"#)
        );
    }
}
