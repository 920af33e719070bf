//! How durations and times read in logs and in the status API: durations as `15ms`, `1.5s`,
//! `2m30s`, `2h15m` (short, unambiguous, parseable again by humantime), times as RFC 3339
//! UTC. The `serialize_*` functions are serde's `serialize_with` helpers for the read model.

use std::fmt::Display;
use std::time::{Duration, SystemTime};

use serde::Serializer;

/// RFC 3339 UTC with milliseconds: `2024-01-15T10:30:45.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn serialize_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&duration(*d))
}

pub fn serialize_opt_duration<S: Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&duration(*d)),
        None => s.serialize_none(),
    }
}

pub fn serialize_opt_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// A typed value written by its `Display` (reasons stay typed until this edge).
pub fn serialize_opt_display<T: Display, S: Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if d.is_zero() {
        return "0s".to_string();
    }
    if d < Duration::from_millis(1) {
        return format!("{}µs", d.as_micros());
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs < 60 {
        let tenths = (ms % 1_000) / 100;
        return if tenths == 0 {
            format!("{secs}s")
        } else {
            format!("{secs}.{tenths}s")
        };
    }
    if secs < 3_600 {
        let (m, s) = (secs / 60, secs % 60);
        return if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s}s")
        };
    }
    let (h, m) = (secs / 3_600, (secs % 3_600) / 60);
    if m == 0 {
        format!("{h}h")
    } else {
        format!("{h}h{m}m")
    }
}

/// A size as Olla writes one (`512 B`, `4.58 GB`: powers of 1024, two decimals), for the
/// fields of its status and catalogue that Olla's tools read.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// How long ago `then` was at `now`, in whole seconds (`15s ago`, `2m30s ago`); `just now`
/// for a time not before `now`.
pub fn ago(then: SystemTime, now: SystemTime) -> String {
    match now.duration_since(then) {
        Ok(d) if d.as_secs() > 0 => format!("{} ago", duration(Duration::from_secs(d.as_secs()))),
        _ => "just now".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_olla_writes_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.00 KB");
        assert_eq!(bytes(4_920_753_328), "4.58 GB");
        assert_eq!(bytes(u64::MAX), "16.00 EB");
    }

    #[test]
    fn ages_are_whole_seconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(ago(t, t + Duration::from_millis(150_700)), "2m30s ago");
        assert_eq!(ago(t, t), "just now");
        assert_eq!(ago(t + Duration::from_secs(5), t), "just now");
    }

    #[test]
    fn formats_each_scale() {
        assert_eq!(duration(Duration::ZERO), "0s");
        assert_eq!(duration(Duration::from_micros(420)), "420µs");
        assert_eq!(duration(Duration::from_millis(15)), "15ms");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration(Duration::from_secs(5)), "5s");
        assert_eq!(duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(duration(Duration::from_secs(300)), "5m");
        assert_eq!(
            duration(Duration::from_secs(2 * 3600 + 15 * 60 + 9)),
            "2h15m"
        );
        assert_eq!(duration(Duration::from_secs(3600)), "1h");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_705_314_645_123);
        assert_eq!(rfc3339(t), "2024-01-15T10:30:45.123Z");
    }

    #[test]
    fn output_parses_back() {
        for d in [
            Duration::from_millis(15),
            Duration::from_secs(150),
            Duration::from_secs(8100),
        ] {
            assert_eq!(humantime::parse_duration(&duration(d)).unwrap(), d);
        }
    }
}
