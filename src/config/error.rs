//! [`ConfigError`] and the translation of YAML/serde errors into Corral's one-line form,
//! `<origin>: <field.path>: <reason> at line L column C`, including "did you mean" for
//! misspelt keys and values.

use std::fmt;

/// Why a config could not be located, read or accepted: one line, naming the file and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError(one_line(message.into()))
    }

    /// `<origin>: <path>: <reason>`.
    pub(crate) fn at(origin: &str, invalid: Invalid) -> Self {
        ConfigError::new(format!("{origin}: {invalid}"))
    }

    /// The message, as displayed.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// The message with control characters escaped: a value echoed back from the file (say
/// `level: "verbose\nsecond line"`) must not break the one-line error into two.
fn one_line(message: String) -> String {
    if !message.chars().any(char::is_control) {
        return message;
    }
    message
        .chars()
        .flat_map(|c| match c {
            '\n' => "\\n".chars().collect::<Vec<_>>(),
            '\r' => "\\r".chars().collect(),
            '\t' => "\\t".chars().collect(),
            c if c.is_control() => c.escape_unicode().collect(),
            c => vec![c],
        })
        .collect()
}

/// A semantic violation found by `resolve.rs`, before the origin is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub path: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Rewrites a YAML syntax or type error. yaml_serde writes `path: message at line L column C`
/// (the path left out at the document root); the path is kept, the message made plainer.
pub(crate) fn from_yaml(origin: &str, err: &serde_yaml::Error) -> ConfigError {
    let text = err.to_string();
    let location = err
        .location()
        .map(|l| format!("line {} column {}", l.line(), l.column()));
    let suffix = location.as_ref().map(|l| format!(" at {l}"));
    let (body, append_location) = match (&suffix, &location) {
        (Some(s), _) if text.ends_with(s.as_str()) => (&text[..text.len() - s.len()], true),
        // libyaml writes its own marks mid-message ("..., while parsing a block mapping at ...").
        (Some(_), Some(l)) if text.contains(l.as_str()) => (text.as_str(), false),
        (Some(_), _) => (text.as_str(), true),
        (None, _) => (text.as_str(), false),
    };
    let (path, message) = match body.split_once(": ") {
        Some((p, m)) if is_path(p) => (Some(p.to_string()), m),
        _ => (None, body),
    };
    let (path, reason) = rewrite(path, message);
    let mut out = String::from(origin);
    out.push_str(": ");
    if let Some(p) = path {
        out.push_str(&p);
        out.push_str(": ");
    }
    out.push_str(&reason);
    if let (true, Some(l)) = (append_location, location) {
        out.push_str(" at ");
        out.push_str(&l);
    }
    ConfigError::new(out)
}

fn is_path(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.[]?".contains(c))
}

fn join(path: Option<&str>, key: &str) -> String {
    match path {
        Some(p) => format!("{p}.{key}"),
        None => key.to_string(),
    }
}

/// The backticked words of a serde message, in order.
fn quoted(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

fn rewrite(path: Option<String>, message: &str) -> (Option<String>, String) {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let names = quoted(rest);
        if let Some((key, allowed)) = names.split_first() {
            let reason = match did_you_mean(key, allowed) {
                Some(close) => format!("unknown key (did you mean `{close}`?)"),
                None if allowed.is_empty() => "unknown key (this section takes no keys)".into(),
                None => format!("unknown key (expected one of: {})", allowed.join(", ")),
            };
            return (Some(join(path.as_deref(), key)), reason);
        }
    }
    if let Some(rest) = message.strip_prefix("duplicate field ") {
        if let Some(key) = quoted(rest).first() {
            let mut reason = String::from("given twice");
            if *key == "health_check_url" {
                reason.push_str(" (`check_path` is another name for `health_check_url`)");
            }
            return (Some(join(path.as_deref(), key)), reason);
        }
    }
    (path, plain_types(message))
}

/// serde names Rust types ("expected struct ServerFile", "expected u16"); users wrote YAML.
fn plain_types(message: &str) -> String {
    let mut out = message.to_string();
    if let Some(at) = out.find("expected struct ") {
        let start = at + "expected ".len();
        let end = out[start + "struct ".len()..]
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .map_or(out.len(), |e| start + "struct ".len() + e);
        out.replace_range(start..end, "a mapping");
    }
    for (rust, yaml) in [
        ("expected i64", "expected an integer"),
        ("expected u64", "expected an integer"),
        ("expected u32", "expected an integer"),
        ("expected u16", "expected an integer"),
        ("expected f64", "expected a number"),
    ] {
        out = out.replace(rust, yaml);
    }
    out
}

/// The closest candidate within edit distance 2, if any (first on ties).
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2 && *d < c.len().max(word.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, case-insensitive.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// `must be one of a, b, c`, plus a suggestion when the value is close to one of them.
pub(crate) fn one_of(value: &str, choices: &[&str]) -> String {
    let mut reason = format!("`{value}` is not one of {}", choices.join(", "));
    if let Some(close) = did_you_mean(value, choices) {
        reason.push_str(&format!(" (did you mean `{close}`?)"));
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("chek_interval", "check_interval"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("URL", "url"), 0);
    }

    #[test]
    fn suggestions_only_when_close() {
        let keys = ["url", "name", "check_interval", "check_timeout"];
        assert_eq!(did_you_mean("chek_interval", &keys), Some("check_interval"));
        assert_eq!(did_you_mean("nmae", &keys), Some("name"));
        assert_eq!(did_you_mean("colour", &keys), None);
        // Two letters that share nothing with `url` are not "close" to it.
        assert_eq!(did_you_mean("ab", &["url"]), None);
    }

    #[test]
    fn one_of_lists_choices_and_suggests() {
        let r = one_of("round-robbin", &["priority", "round-robin"]);
        assert_eq!(
            r,
            "`round-robbin` is not one of priority, round-robin (did you mean `round-robin`?)"
        );
    }

    #[test]
    fn rust_type_names_become_yaml_words() {
        assert_eq!(
            plain_types("invalid type: integer `5`, expected struct ServerFile"),
            "invalid type: integer `5`, expected a mapping"
        );
        assert_eq!(
            plain_types("invalid type: string \"x\", expected i64"),
            "invalid type: string \"x\", expected an integer"
        );
    }

    #[test]
    fn paths_are_recognised() {
        assert!(is_path("discovery.static.endpoints[0]"));
        assert!(is_path("server"));
        assert!(!is_path("invalid type"));
    }
}
