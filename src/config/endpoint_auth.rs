//! An endpoint's `auth:` block (Olla's, SPEC 12) turned into the one header it stands for:
//! `bearer` → `Authorization: Bearer <token>`, `api_key` → `<header>: <key>` (`X-Api-Key`
//! unless `header` names another), `basic` → `Authorization: Basic <base64(user:pass)>`.
//!
//! `resolve.rs` calls [`header`] once per endpoint at load time and puts the result last in
//! the endpoint's header list, so checks, discovery, load reads and proxied requests all
//! send it, and it wins over a same-named `headers:` entry. Each credential comes from its
//! inline key (`${VAR}` expanded) or from its `_file` sibling (read now, whitespace
//! trimmed). Credentials are never echoed: errors name the field, the variable or the file.

use std::io::Read;

use awc::http::header::{HeaderName, HeaderValue};
use base64::Engine;

use super::error::{one_of, Invalid};
use super::file::{AuthFile, Scalar};
use super::units::expand_env;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Olla's auth types.
const TYPES: &[&str] = &["bearer", "api_key", "basic"];

/// Olla's header for `api_key` when `header` is not given.
const DEFAULT_API_KEY_HEADER: &str = "X-Api-Key";

/// A secret file holds one value; anything bigger is the wrong file (and a device such as
/// `/dev/zero` must not be read for ever).
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The header `auth` (at `path`, e.g. `endpoints[0].auth`) stands for, as (name, value).
/// `warnings` gets a line for a key Olla accepts but that does nothing with this type.
pub(crate) fn header(
    auth: &AuthFile,
    path: &str,
    env: Env,
    warnings: &mut Vec<String>,
) -> Result<(String, String), Invalid> {
    let at = |key: &str| format!("{path}.{key}");
    let kind = given(&auth.kind)
        .ok_or_else(|| Invalid::new(at("type"), "required: bearer, api_key or basic"))?
        .to_ascii_lowercase();
    // Which (inline, file) pairs the type takes; the others must be absent.
    let pairs: &[&str] = match kind.as_str() {
        "bearer" => &["token"],
        "api_key" => &["key"],
        "basic" => &["username", "password"],
        _ => {
            let written = given(&auth.kind).unwrap_or_default();
            return Err(Invalid::new(at("type"), one_of(written, TYPES)));
        }
    };
    for (key, value) in [
        ("token", &auth.token),
        ("token_file", &auth.token_file),
        ("key", &auth.key),
        ("key_file", &auth.key_file),
        ("username", &auth.username),
        ("username_file", &auth.username_file),
        ("password", &auth.password),
        ("password_file", &auth.password_file),
    ] {
        if given(value).is_some() && !pairs.contains(&key.trim_end_matches("_file")) {
            return Err(Invalid::new(
                at(key),
                format!("not used by type {kind} (it takes {})", takes(pairs)),
            ));
        }
    }
    if given(&auth.header).is_some() && kind != "api_key" {
        warnings.push(format!(
            "{}: used only with type api_key; ignored",
            at("header")
        ));
    }
    let secret = |key: &str| {
        let (inline, file) = match key {
            "token" => (&auth.token, &auth.token_file),
            "key" => (&auth.key, &auth.key_file),
            "username" => (&auth.username, &auth.username_file),
            _ => (&auth.password, &auth.password_file),
        };
        credential(key, given(inline), given(file), path, env)
    };

    let (name, value, blame) = match kind.as_str() {
        "bearer" => (
            "Authorization".to_string(),
            format!("Bearer {}", secret("token")?),
            "token",
        ),
        "api_key" => {
            let name = given(&auth.header).map_or(DEFAULT_API_KEY_HEADER, str::trim);
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(Invalid::new(
                    at("header"),
                    format!("`{name}` is not a valid HTTP header name"),
                ));
            }
            (name.to_string(), secret("key")?, "key")
        }
        _ => {
            let pair = format!("{}:{}", secret("username")?, secret("password")?);
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            (
                "Authorization".to_string(),
                format!("Basic {encoded}"),
                "username",
            )
        }
    };
    if HeaderValue::from_str(&value).is_err() {
        return Err(Invalid::new(
            at(blame),
            "not a valid HTTP header value (control characters or non-ASCII text)",
        ));
    }
    Ok((name, value))
}

/// A value that is written and not empty (Olla treats `""` as not set).
fn given(v: &Option<Scalar>) -> Option<&str> {
    v.as_ref().map(|s| s.0.as_str()).filter(|s| !s.is_empty())
}

fn takes(pairs: &[&str]) -> String {
    pairs
        .iter()
        .map(|p| format!("{p} or {p}_file"))
        .collect::<Vec<_>>()
        .join(", and ")
}

/// One credential from `key` or `key_file`: exactly one of them, not empty once resolved.
fn credential(
    key: &str,
    inline: Option<&str>,
    file: Option<&str>,
    path: &str,
    env: Env,
) -> Result<String, Invalid> {
    let file_key = format!("{key}_file");
    let value = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(Invalid::new(
                format!("{path}.{file_key}"),
                format!("conflicts with `{key}`; set only one of them"),
            ))
        }
        (None, None) => {
            return Err(Invalid::new(
                format!("{path}.{key}"),
                format!("required (or `{file_key}`, a file that holds it)"),
            ))
        }
        (Some(v), None) => {
            expand_env(v, env).map_err(|e| Invalid::new(format!("{path}.{key}"), e.to_string()))?
        }
        (None, Some(f)) => {
            let at = format!("{path}.{file_key}");
            let file = expand_env(f, env).map_err(|e| Invalid::new(&at, e.to_string()))?;
            read_secret(&file).map_err(|reason| Invalid::new(&at, reason))?
        }
    };
    if value.is_empty() {
        let from = if file.is_some() {
            file_key
        } else {
            key.to_string()
        };
        return Err(Invalid::new(
            format!("{path}.{from}"),
            "is empty once resolved",
        ));
    }
    Ok(value)
}

/// The contents of a secret file (a Docker or Kubernetes secret), whitespace trimmed.
fn read_secret(file: &str) -> Result<String, String> {
    let cannot = |e: std::io::Error| format!("cannot read `{file}`: {e}");
    // A FIFO or a device could block or never end: only regular files (symlinks followed,
    // as Kubernetes mounts secrets) are read.
    let meta = std::fs::metadata(file).map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!("`{file}` is not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "`{file}` is larger than 64 KiB; a secret file holds one value"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("`{file}` is not UTF-8 text"))?;
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("sk-env".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn s(v: &str) -> Option<Scalar> {
        Some(Scalar(v.to_string()))
    }

    fn resolve(auth: &AuthFile) -> Result<(String, String), String> {
        let mut warnings = Vec::new();
        header(auth, "endpoints[0].auth", &env, &mut warnings).map_err(|e| e.to_string())
    }

    fn secret_file(contents: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, contents).unwrap();
        let path = path.to_str().unwrap().to_string();
        (dir, path)
    }

    #[test]
    fn bearer_is_an_authorization_header() {
        let a = AuthFile {
            kind: s("bearer"),
            token: s("${TOKEN}"),
            ..AuthFile::default()
        };
        assert_eq!(
            resolve(&a),
            Ok(("Authorization".into(), "Bearer sk-env".into()))
        );
    }

    #[test]
    fn api_key_goes_in_x_api_key_unless_a_header_is_named() {
        let a = AuthFile {
            kind: s("api_key"),
            key: s("k-1"),
            ..AuthFile::default()
        };
        assert_eq!(resolve(&a), Ok(("X-Api-Key".into(), "k-1".into())));
        let a = AuthFile {
            header: s("x-goog-api-key"),
            ..a
        };
        assert_eq!(resolve(&a), Ok(("x-goog-api-key".into(), "k-1".into())));
    }

    #[test]
    fn basic_encodes_user_and_password() {
        let a = AuthFile {
            kind: s("basic"),
            username: s("admin"),
            password: s("s3cr3t"),
            ..AuthFile::default()
        };
        // base64("admin:s3cr3t")
        assert_eq!(
            resolve(&a),
            Ok(("Authorization".into(), "Basic YWRtaW46czNjcjN0".into()))
        );
    }

    #[test]
    fn files_are_read_and_trimmed() {
        let (_dir, path) = secret_file("  sk-from-file\n");
        let a = AuthFile {
            kind: s("bearer"),
            token_file: s(&path),
            ..AuthFile::default()
        };
        assert_eq!(
            resolve(&a),
            Ok(("Authorization".into(), "Bearer sk-from-file".into()))
        );
    }

    #[test]
    fn a_missing_file_names_the_field_and_the_file() {
        let a = AuthFile {
            kind: s("basic"),
            username: s("u"),
            password_file: s("/nonexistent/corral-secret"),
            ..AuthFile::default()
        };
        let e = resolve(&a).unwrap_err();
        assert!(
            e.starts_with(
                "endpoints[0].auth.password_file: cannot read `/nonexistent/corral-secret`:"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_directory_or_an_oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuthFile {
            kind: s("bearer"),
            token_file: s(dir.path().to_str().unwrap()),
            ..AuthFile::default()
        };
        assert!(resolve(&a).unwrap_err().contains("is not a regular file"));
        let (_d, big) = secret_file(&"x".repeat(70_000));
        let a = AuthFile {
            kind: s("bearer"),
            token_file: s(&big),
            ..AuthFile::default()
        };
        assert!(resolve(&a).unwrap_err().contains("larger than 64 KiB"));
    }

    #[test]
    fn shape_errors_name_the_field() {
        let cases = [
            (AuthFile::default(), "endpoints[0].auth.type: required"),
            (
                AuthFile {
                    kind: s("oauth"),
                    ..AuthFile::default()
                },
                "endpoints[0].auth.type: `oauth` is not one of bearer, api_key, basic",
            ),
            (
                AuthFile {
                    kind: s("bearer"),
                    ..AuthFile::default()
                },
                "endpoints[0].auth.token: required (or `token_file`",
            ),
            (
                AuthFile {
                    kind: s("bearer"),
                    token: s("a"),
                    token_file: s("/x"),
                    ..AuthFile::default()
                },
                "endpoints[0].auth.token_file: conflicts with `token`",
            ),
            (
                AuthFile {
                    kind: s("bearer"),
                    token: s("a"),
                    password: s("p"),
                    ..AuthFile::default()
                },
                "endpoints[0].auth.password: not used by type bearer (it takes token or token_file)",
            ),
            (
                AuthFile {
                    kind: s("basic"),
                    username: s("u"),
                    ..AuthFile::default()
                },
                "endpoints[0].auth.password: required",
            ),
            (
                AuthFile {
                    kind: s("api_key"),
                    key: s("k"),
                    header: s("bad header"),
                    ..AuthFile::default()
                },
                "endpoints[0].auth.header: `bad header` is not a valid HTTP header name",
            ),
            (
                AuthFile {
                    kind: s("bearer"),
                    token: s("${NOPE}"),
                    ..AuthFile::default()
                },
                "endpoints[0].auth.token: environment variable `NOPE` is not set",
            ),
            (
                AuthFile {
                    kind: s("bearer"),
                    token: s("${EMPTY}"),
                    ..AuthFile::default()
                },
                "endpoints[0].auth.token: is empty once resolved",
            ),
        ];
        for (auth, want) in cases {
            let e = resolve(&auth).unwrap_err();
            assert!(e.starts_with(want), "\n got: {e}\nwant: {want}");
        }
    }

    #[test]
    fn a_bad_value_is_refused_without_being_echoed() {
        let a = AuthFile {
            kind: s("bearer"),
            token: s("secret\u{7f}value"),
            ..AuthFile::default()
        };
        let e = resolve(&a).unwrap_err();
        assert!(e.contains("not a valid HTTP header value"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn a_header_key_with_bearer_is_a_warning() {
        let a = AuthFile {
            kind: s("bearer"),
            token: s("t"),
            header: s("X-Token"),
            ..AuthFile::default()
        };
        let mut warnings = Vec::new();
        header(&a, "endpoints[0].auth", &env, &mut warnings).unwrap();
        assert_eq!(
            warnings,
            ["endpoints[0].auth.header: used only with type api_key; ignored"]
        );
    }
}
