//! How durations read in logs and in the status API: `15ms`, `1.5s`, `2m30s`, `2h15m`.
//! Short, unambiguous, and parseable again by humantime.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
