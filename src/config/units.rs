//! The small value languages of the config file: durations (`1m30s`), sizes (`100MiB`), shares
//! (`"10%"` or `0.1`), networks (`10.0.0.0/8`), keys that are accepted only to be ignored, and
//! `${VAR}` expansion.
//!
//! Each value type parses itself during deserialization, so a malformed value is reported by
//! the YAML layer with its field path, line and column. Range rules that depend on the field
//! (say, `check_interval` ≥ 100ms) belong to `resolve.rs`, not here.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, Visitor};

/// The longest duration any setting takes: beyond a year nothing is scheduled, and time
/// arithmetic on absurd values (`300000000000y`) would overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration in humantime form (`500ms`, `5s`, `2m`, `1m30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like `500ms`, `5s`, `2m` or `1m30s`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                let d = humantime::parse_duration(s.trim()).map_err(|_| {
                    E::custom(format!(
                        "invalid duration `{s}` (expected a number with a unit, like `500ms`, `5s`, `2m` or `1m30s`)"
                    ))
                })?;
                if d > MAX_DURATION {
                    return Err(E::custom(format!(
                        "invalid duration `{s}`: at most 365d (a longer wait is no schedule)"
                    )));
                }
                Ok(Dur(d))
            }
            // A bare number is ambiguous (seconds? milliseconds?) except for zero.
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                if n == 0 {
                    return Ok(Dur(Duration::ZERO));
                }
                Err(E::custom(format!(
                    "invalid duration `{n}`: a duration needs a unit, like `{n}s` or `{n}ms`"
                )))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                if n < 0 {
                    return Err(E::custom(format!(
                        "invalid duration `{n}`: must not be negative"
                    )));
                }
                self.visit_u64(n as u64)
            }
        }
        d.deserialize_any(V)
    }
}

/// A circuit breaker's open time: a duration, or `auto` (for the health breaker: follows
/// the check interval, SPEC 9.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenDuration {
    Auto,
    Fixed(Dur),
}

impl<'de> Deserialize<'de> for OpenDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = OpenDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`auto` or a duration like `500ms`, `5s`, `2m` or `1m30s`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OpenDuration, E> {
                if s.trim().eq_ignore_ascii_case("auto") {
                    return Ok(OpenDuration::Auto);
                }
                Dur::deserialize(de::value::StrDeserializer::<E>::new(s)).map(OpenDuration::Fixed)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<OpenDuration, E> {
                Dur::deserialize(de::value::U64Deserializer::<E>::new(n)).map(OpenDuration::Fixed)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<OpenDuration, E> {
                Dur::deserialize(de::value::I64Deserializer::<E>::new(n)).map(OpenDuration::Fixed)
            }
        }
        d.deserialize_any(V)
    }
}

/// An admission limit as written: a count (`0` = none) or `auto` (SPEC 10.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Concurrency {
    Auto,
    /// Signed so that `-1` gets a range message naming the field.
    Count(i64),
}

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Concurrency;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number (0: no limit) or `auto`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Concurrency, E> {
                if s.trim().eq_ignore_ascii_case("auto") {
                    return Ok(Concurrency::Auto);
                }
                Err(E::custom(format!(
                    "invalid limit `{s}` (expected a whole number, 0 for no limit, or `auto`)"
                )))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Concurrency, E> {
                Ok(Concurrency::Count(i64::try_from(n).unwrap_or(i64::MAX)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Concurrency, E> {
                Ok(Concurrency::Count(n))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte count: an integer, or an integer with B, KB, MB, GB (×1000) or KiB, MiB, GiB (×1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size(pub u64);

const SIZE_HELP: &str =
    "expected bytes, or a whole number with B, KB, MB, GB, KiB, MiB or GiB, like `64KiB`";

/// Parses `100MiB`, `64 KiB`, `512` (bytes). Unit names are case-insensitive.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    if number.is_empty() {
        return Err(format!("invalid size `{text}` ({SIZE_HELP})"));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1024,
        "mib" => 1024 * 1024,
        "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("invalid size `{text}` ({SIZE_HELP})")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("invalid size `{text}`: too large"))
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(SIZE_HELP)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                u64::try_from(n)
                    .map(Size)
                    .map_err(|_| E::custom(format!("invalid size `{n}`: must not be negative")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                parse_size(s).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A share between 0 and 1, written `"10%"` or `0.1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Share(pub f64);

const SHARE_HELP: &str =
    "expected a percentage from 0% to 100%, like \"10%\", or a number from 0.0 to 1.0";

/// Parses `"10%"`, `"12.5 %"` or `"0.1"`; the result is within 0.0–1.0.
pub(crate) fn parse_share(text: &str) -> Result<f64, String> {
    let s = text.trim();
    let (number, percent) = match s.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (s, false),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid value `{text}` ({SHARE_HELP})"))?;
    check_share(if percent { value / 100.0 } else { value }, text)
}

fn check_share(value: f64, shown: &str) -> Result<f64, String> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("`{shown}` is out of range ({SHARE_HELP})"))
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Share;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(SHARE_HELP)
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Share, E> {
                check_share(n, &n.to_string()).map(Share).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Share, E> {
                self.visit_f64(n as f64)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Share, E> {
                self.visit_f64(n as f64)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Share, E> {
                parse_share(s).map(Share).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// An Olla key Corral accepts but has no use for: any value, remembered only as "present", so
/// that the startup warning can name it. (An `Option<Value>` would forget a key set to null.)
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ignored(pub bool);

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Ignored(true))
    }
}

/// A network in CIDR form (`10.0.0.0/8`, `fd00::/8`), or one address (a network of one host),
/// for `trusted_proxy_cidrs`. Host bits are dropped (`10.1.2.3/8` is `10.0.0.0/8`), as Go's
/// `net.ParseCIDR`, which Olla uses, drops them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr(pub ipnet::IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Cidr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a network like `10.0.0.0/8` or `fd00::/8`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Cidr, E> {
                let t = s.trim();
                let net = t
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        E::custom(format!(
                            "invalid CIDR `{s}` (expected an address and prefix length, like `10.0.0.0/8` or `fd00::/8`)"
                        ))
                    })?;
                Ok(Cidr(net.trunc()))
            }
        }
        d.deserialize_str(V)
    }
}

/// Why `${VAR}` expansion failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpandError {
    Unset(String),
    Malformed(&'static str),
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ExpandError::Unset(var) => write!(f, "environment variable `{var}` is not set"),
            ExpandError::Malformed(why) => f.write_str(why),
        }
    }
}

/// Replaces each `${VAR}` with the variable's value, and `${VAR:-default}` with it or, when
/// it is unset or empty, with `default` as written (Olla's two forms). A `$` not followed by
/// `{` is literal, so values such as `pa$$word` need no escaping; `$${` writes a literal `${`.
pub(crate) fn expand_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').ok_or(ExpandError::Malformed(
                "unterminated `${` (expected `${VAR}`)",
            ))?;
            let (name, default) = match inner[..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&inner[..end], None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(ExpandError::Malformed(
                    "`${...}` must hold a variable name (letters, digits, `_`)",
                ));
            }
            let value = match (env(name), default) {
                (Some(v), Some(d)) if v.is_empty() => d.to_string(),
                (Some(v), _) => v,
                (None, Some(d)) => d.to_string(),
                (None, None) => return Err(ExpandError::Unset(name.to_string())),
            };
            out.push_str(&value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `5s`, `1m 30s`: a duration as humans write it in this file.
pub(crate) fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dur(yaml: &str) -> Result<Duration, String> {
        serde_yaml::from_str::<Dur>(yaml)
            .map(|d| d.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn durations_in_humantime_form() {
        assert_eq!(dur("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(dur("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(dur("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(dur("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(dur("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(dur("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_without_unit_or_garbage_are_rejected() {
        let e = dur("5").unwrap_err();
        assert!(e.contains("needs a unit, like `5s`"), "{e}");
        let e = dur("5x").unwrap_err();
        assert!(e.contains("invalid duration `5x`"), "{e}");
        let e = dur("-1").unwrap_err();
        assert!(e.contains("must not be negative"), "{e}");
    }

    #[test]
    fn sizes_decimal_and_binary_units() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("100MiB"), Ok(104_857_600));
        assert_eq!(parse_size("1GiB"), Ok(1_073_741_824));
        assert_eq!(parse_size("64 kib"), Ok(65_536));
    }

    #[test]
    fn sizes_bad_unit_fraction_or_overflow_are_rejected() {
        assert!(parse_size("10XB")
            .unwrap_err()
            .contains("invalid size `10XB`"));
        assert!(parse_size("1.5MB").is_err());
        assert!(parse_size("MB").is_err());
        assert!(parse_size("99999999999999999999GiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn sizes_from_yaml_integers_and_strings() {
        assert_eq!(
            serde_yaml::from_str::<Size>("52428800").unwrap(),
            Size(52_428_800)
        );
        assert_eq!(serde_yaml::from_str::<Size>("64KiB").unwrap(), Size(65_536));
        let e = serde_yaml::from_str::<Size>("-5").unwrap_err().to_string();
        assert!(e.contains("must not be negative"), "{e}");
    }

    #[test]
    fn shares_as_percent_or_fraction() {
        assert_eq!(parse_share("10%"), Ok(0.1));
        assert_eq!(parse_share("0%"), Ok(0.0));
        assert_eq!(parse_share("100%"), Ok(1.0));
        assert_eq!(parse_share("12.5 %"), Ok(0.125));
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert_eq!(serde_yaml::from_str::<Share>("0.2").unwrap(), Share(0.2));
        assert_eq!(serde_yaml::from_str::<Share>("1").unwrap(), Share(1.0));
        assert_eq!(
            serde_yaml::from_str::<Share>("\"15%\"").unwrap(),
            Share(0.15)
        );
    }

    #[test]
    fn shares_out_of_range_are_rejected() {
        assert!(parse_share("150%").unwrap_err().contains("out of range"));
        assert!(parse_share("-1%").unwrap_err().contains("out of range"));
        assert!(parse_share("ten%").unwrap_err().contains("invalid value"));
        let e = serde_yaml::from_str::<Share>("10").unwrap_err().to_string();
        assert!(e.contains("`10` is out of range"), "{e}");
    }

    #[test]
    fn ignored_keys_remember_presence_even_when_null() {
        assert_eq!(serde_yaml::from_str::<Ignored>("~").unwrap(), Ignored(true));
        assert_eq!(
            serde_yaml::from_str::<Ignored>("{a: [1, 2]}").unwrap(),
            Ignored(true)
        );
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-123".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_expansion() {
        assert_eq!(
            expand_env("Bearer ${KEY}", &env),
            Ok("Bearer sk-123".into())
        );
        assert_eq!(expand_env("${KEY}${KEY}", &env), Ok("sk-123sk-123".into()));
        assert_eq!(expand_env("x${EMPTY}y", &env), Ok("xy".into()));
        assert_eq!(expand_env("pa$$word $5", &env), Ok("pa$$word $5".into()));
        assert_eq!(expand_env("$${KEY}", &env), Ok("${KEY}".into()));
        assert_eq!(expand_env("plain", &env), Ok("plain".into()));
    }

    #[test]
    fn env_expansion_with_a_default() {
        assert_eq!(expand_env("${KEY:-x}", &env), Ok("sk-123".into()));
        assert_eq!(expand_env("${NOPE:-changeme}", &env), Ok("changeme".into()));
        // Olla's rule: an empty variable takes the default too.
        assert_eq!(expand_env("${EMPTY:-d}", &env), Ok("d".into()));
        assert_eq!(expand_env("${NOPE:-}", &env), Ok("".into()));
        assert_eq!(expand_env("a${NOPE:-b:-c}d", &env), Ok("ab:-cd".into()));
        assert!(matches!(
            expand_env("${:-x}", &env),
            Err(ExpandError::Malformed(_))
        ));
    }

    #[test]
    fn env_expansion_errors() {
        assert_eq!(
            expand_env("Bearer ${NOPE}", &env),
            Err(ExpandError::Unset("NOPE".into()))
        );
        assert!(matches!(
            expand_env("${KEY", &env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand_env("${}", &env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand_env("${A-B}", &env),
            Err(ExpandError::Malformed(_))
        ));
    }
}
