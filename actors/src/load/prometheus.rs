//! A small, strict reader of the Prometheus text exposition format (0.0.4), enough to pick a few
//! gauges out of an LLM server's `/metrics` ([`super`]). It reads `# HELP` and `# TYPE` lines,
//! other comments, blank lines and samples `name{label="value",...} value [timestamp]`, and
//! refuses anything else with the number of the offending line.
//!
//! Strict where the format is: metric and label names by their grammar, label values only with
//! the escapes `\\`, `\"` and `\n`, a value that Go's `ParseFloat` would take (`NaN`, `+Inf`,
//! `-Inf` included; hexadecimal floats are not), an integer timestamp and nothing after it.
//! Lenient only where real servers are: a trailing comma in a label set, blanks or tabs around
//! tokens, and `\r\n` line ends.
//!
//! Nothing is allocated per line: a [`Sample`] borrows its name and its raw label set from the
//! text, and [`Sample::labels`] unescapes a value only when it holds an escape.

use std::borrow::Cow;
use std::fmt;

/// One line that carries data: a sample, or the metadata that names a metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    Sample(Sample<'a>),
    /// `# HELP name docstring`.
    Help {
        name: &'a str,
        line: usize,
    },
    /// `# TYPE name type`.
    Type {
        name: &'a str,
        kind: &'a str,
        line: usize,
    },
}

/// One sample line, as written: nothing is summed or renamed here.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    /// The text between the braces (already checked), `""` without a label set.
    raw_labels: &'a str,
    pub value: f64,
    /// Milliseconds since the epoch, when the line has one.
    pub timestamp: Option<i64>,
    /// 1-based.
    pub line: usize,
}

impl<'a> Sample<'a> {
    /// The label pairs in the order written, values unescaped.
    pub fn labels(&self) -> Labels<'a> {
        Labels {
            rest: self.raw_labels,
        }
    }
}

/// Writes the sample back in the canonical form, which [`samples`] reads as the same sample.
impl fmt::Display for Sample<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        let mut labels = self.labels().peekable();
        if labels.peek().is_some() {
            f.write_str("{")?;
            for (i, (name, value)) in labels.enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{name}=\"")?;
                for c in value.chars() {
                    match c {
                        '\\' => f.write_str("\\\\")?,
                        '"' => f.write_str("\\\"")?,
                        '\n' => f.write_str("\\n")?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")?;
            }
            f.write_str("}")?;
        }
        match self.value {
            v if v.is_nan() => f.write_str(" NaN")?,
            v if v == f64::INFINITY => f.write_str(" +Inf")?,
            v if v == f64::NEG_INFINITY => f.write_str(" -Inf")?,
            // Rust prints the shortest text that reads back as the same f64.
            v => write!(f, " {v}")?,
        }
        if let Some(t) = self.timestamp {
            write!(f, " {t}")?;
        }
        Ok(())
    }
}

/// The label pairs of a [`Sample`].
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Labels<'a> {
    type Item = (&'a str, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        // The label set was checked when the line was read, so this cannot fail; should it
        // anyway, the iterator ends rather than panics.
        let mut c = Cursor::new(self.rest);
        c.blanks();
        if c.done() {
            return None;
        }
        let name = c.label_name().ok()?;
        c.blanks();
        c.equals().ok()?;
        c.blanks();
        let value = c.label_value().ok()?;
        c.blanks();
        if c.peek() == Some(b',') {
            c.bump();
        }
        self.rest = c.rest();
        Some((name, value))
    }
}

/// Why a line is not in the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PromErrorKind {
    #[error("no valid metric name")]
    MetricName,
    #[error("no valid label name")]
    LabelName,
    #[error("expected `=` after a label name")]
    Equals,
    #[error("expected `\"` to open a label value")]
    OpenQuote,
    #[error("unterminated label value")]
    UnterminatedValue,
    #[error("invalid escape in a label value (only \\\\, \\\" and \\n)")]
    Escape,
    #[error("expected `,` or `}}` after a label value")]
    LabelSeparator,
    #[error("no value")]
    MissingValue,
    #[error("value is not a float")]
    Value,
    #[error("timestamp is not an integer")]
    Timestamp,
    #[error("unexpected text after the sample")]
    Trailing,
    #[error("`# HELP` without a metric name")]
    Help,
    #[error("`# TYPE` without a metric name and a known type")]
    Type,
}

/// A line that is not in the format: its number and why. Never quotes the line itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct PromError {
    /// 1-based.
    pub line: usize,
    pub kind: PromErrorKind,
}

/// Every sample and metadata line of `text`, in order, with an error for each line that is
/// not in the format (reading goes on after it). Blank lines and other comments are skipped.
pub fn lines(text: &str) -> Lines<'_> {
    Lines {
        rest: Some(text),
        line: 0,
    }
}

/// Only the samples of [`lines`], and its errors.
pub fn samples(text: &str) -> impl Iterator<Item = Result<Sample<'_>, PromError>> {
    lines(text).filter_map(|l| match l {
        Ok(Line::Sample(s)) => Some(Ok(s)),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    })
}

/// The iterator of [`lines`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: Option<&'a str>,
    line: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Line<'a>, PromError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let text = self.rest?;
            let (this, rest) = match text.split_once('\n') {
                Some((this, rest)) => (this, Some(rest)),
                None => (text, None),
            };
            self.rest = rest;
            self.line += 1;
            let line = self.line;
            let this = this.strip_suffix('\r').unwrap_or(this);
            match parse_line(this, line) {
                Ok(None) => continue,
                Ok(Some(l)) => return Some(Ok(l)),
                Err(kind) => return Some(Err(PromError { line, kind })),
            }
        }
    }
}

/// The text types, and OpenMetrics' own, which some exporters already write.
const TYPES: &[&str] = &[
    "counter",
    "gauge",
    "histogram",
    "summary",
    "untyped",
    "unknown",
    "info",
    "stateset",
    "gaugehistogram",
];

fn parse_line(text: &str, line: usize) -> Result<Option<Line<'_>>, PromErrorKind> {
    let mut c = Cursor::new(text);
    c.blanks();
    match c.peek() {
        None => Ok(None),
        Some(b'#') => {
            c.bump();
            // `#HELP` (no blank) is an ordinary comment, as in Prometheus' own parser.
            if !c.blanks() {
                return Ok(None);
            }
            match c.word() {
                "HELP" => {
                    if !c.blanks() {
                        return Err(PromErrorKind::Help);
                    }
                    let name = c.metric_name().map_err(|_| PromErrorKind::Help)?;
                    // The docstring is free text; it only has to be apart from the name.
                    if !c.done() && !c.blanks() {
                        return Err(PromErrorKind::Help);
                    }
                    Ok(Some(Line::Help { name, line }))
                }
                "TYPE" => {
                    if !c.blanks() {
                        return Err(PromErrorKind::Type);
                    }
                    let name = c.metric_name().map_err(|_| PromErrorKind::Type)?;
                    if !c.blanks() {
                        return Err(PromErrorKind::Type);
                    }
                    let kind = c.word();
                    c.blanks();
                    if !TYPES.contains(&kind) || !c.done() {
                        return Err(PromErrorKind::Type);
                    }
                    Ok(Some(Line::Type { name, kind, line }))
                }
                _ => Ok(None),
            }
        }
        Some(_) => parse_sample(c, line).map(|s| Some(Line::Sample(s))),
    }
}

fn parse_sample<'a>(mut c: Cursor<'a>, line: usize) -> Result<Sample<'a>, PromErrorKind> {
    let name = c.metric_name()?;
    let mut apart = c.blanks();
    let mut raw_labels = "";
    if c.peek() == Some(b'{') {
        c.bump();
        let start = c.pos;
        c.label_set()?;
        // `label_set` stops on the closing brace.
        raw_labels = &c.text[start..c.pos];
        c.bump();
        apart = c.blanks();
    }
    if c.done() {
        return Err(PromErrorKind::MissingValue);
    }
    if !apart {
        return Err(PromErrorKind::Value);
    }
    let value = parse_float(c.word()).ok_or(PromErrorKind::Value)?;
    let mut timestamp = None;
    if c.blanks() && !c.done() {
        let t = c.word();
        timestamp = Some(t.parse::<i64>().map_err(|_| PromErrorKind::Timestamp)?);
        c.blanks();
    }
    if !c.done() {
        return Err(PromErrorKind::Trailing);
    }
    Ok(Sample {
        name,
        raw_labels,
        value,
        timestamp,
        line,
    })
}

/// A float as Go's `strconv.ParseFloat` reads it, less hexadecimal and `_` separators
/// (which it takes only with a base prefix): Rust's parser takes the same decimal forms and,
/// like Go, `NaN`, `Inf`, `+Inf`, `-Inf` and `Infinity` in any case.
fn parse_float(token: &str) -> Option<f64> {
    if token.is_empty() {
        return None;
    }
    token.parse::<f64>().ok()
}

/// A position in one line.
#[derive(Debug, Clone, Copy)]
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

fn is_metric_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_metric_char(b: u8) -> bool {
    is_metric_start(b) || b.is_ascii_digit()
}

fn is_label_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_label_char(b: u8) -> bool {
    is_label_start(b) || b.is_ascii_digit()
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn bump(&mut self) {
        self.pos += 1;
    }

    fn done(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    /// Skips blanks and tabs; whether there were any.
    fn blanks(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.bump();
        }
        self.pos > start
    }

    /// Everything up to the next blank, tab or the end.
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while !matches!(self.peek(), None | Some(b' ' | b'\t')) {
            self.bump();
        }
        &self.text[start..self.pos]
    }

    fn equals(&mut self) -> Result<(), PromErrorKind> {
        if self.peek() == Some(b'=') {
            self.bump();
            Ok(())
        } else {
            Err(PromErrorKind::Equals)
        }
    }

    fn take(&mut self, start: fn(u8) -> bool, rest: fn(u8) -> bool) -> Option<&'a str> {
        let from = self.pos;
        if !self.peek().is_some_and(start) {
            return None;
        }
        while self.peek().is_some_and(rest) {
            self.bump();
        }
        Some(&self.text[from..self.pos])
    }

    fn metric_name(&mut self) -> Result<&'a str, PromErrorKind> {
        self.take(is_metric_start, is_metric_char)
            .ok_or(PromErrorKind::MetricName)
    }

    fn label_name(&mut self) -> Result<&'a str, PromErrorKind> {
        self.take(is_label_start, is_label_char)
            .ok_or(PromErrorKind::LabelName)
    }

    /// Checks a label set after its `{`, stopping on the closing `}`.
    fn label_set(&mut self) -> Result<(), PromErrorKind> {
        loop {
            self.blanks();
            if self.peek() == Some(b'}') {
                return Ok(());
            }
            self.label_name()?;
            self.blanks();
            self.equals()?;
            self.blanks();
            self.label_value()?;
            self.blanks();
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b'}') => return Ok(()),
                _ => return Err(PromErrorKind::LabelSeparator),
            }
        }
    }

    /// A quoted label value, unescaped; borrowed when it has no escape.
    fn label_value(&mut self) -> Result<Cow<'a, str>, PromErrorKind> {
        if self.peek() != Some(b'"') {
            return Err(PromErrorKind::OpenQuote);
        }
        self.bump();
        let start = self.pos;
        loop {
            match self.peek() {
                None => return Err(PromErrorKind::UnterminatedValue),
                Some(b'"') => {
                    let value = &self.text[start..self.pos];
                    self.bump();
                    return Ok(Cow::Borrowed(value));
                }
                Some(b'\\') => {
                    let before = self.text[start..self.pos].to_string();
                    return self.escaped(before).map(Cow::Owned);
                }
                // Label values may hold any UTF-8; only `"` and `\` are special.
                Some(_) => self.bump(),
            }
        }
    }

    /// The rest of a label value from its first escape on.
    fn escaped(&mut self, mut value: String) -> Result<String, PromErrorKind> {
        let mut run = self.pos;
        loop {
            match self.peek() {
                None => return Err(PromErrorKind::UnterminatedValue),
                Some(b'"') => {
                    value.push_str(&self.text[run..self.pos]);
                    self.bump();
                    return Ok(value);
                }
                Some(b'\\') => {
                    value.push_str(&self.text[run..self.pos]);
                    value.push(match self.text.as_bytes().get(self.pos + 1) {
                        Some(b'\\') => '\\',
                        Some(b'"') => '"',
                        Some(b'n') => '\n',
                        _ => return Err(PromErrorKind::Escape),
                    });
                    self.pos += 2;
                    run = self.pos;
                }
                Some(_) => self.bump(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Sample<'_>, PromError> {
        let mut all: Vec<_> = samples(text).collect();
        assert_eq!(all.len(), 1, "{text:?}: {all:?}");
        all.remove(0)
    }

    fn kind(text: &str) -> PromErrorKind {
        one(text).expect_err(text).kind
    }

    fn labels<'a>(s: &Sample<'a>) -> Vec<(&'a str, String)> {
        s.labels().map(|(n, v)| (n, v.into_owned())).collect()
    }

    #[test]
    fn real_exposition_texts_read_without_an_error() {
        for (name, text, samples_in_it) in [
            (
                "llamacpp",
                include_str!("fixtures/llamacpp_metrics_busy.txt"),
                15,
            ),
            ("vllm v1", include_str!("fixtures/vllm_metrics_v1.txt"), 360),
            (
                "vllm v0",
                include_str!("fixtures/vllm_metrics_v0_excerpt.txt"),
                7,
            ),
            (
                "sglang",
                include_str!("fixtures/sglang_metrics_docs.txt"),
                91,
            ),
        ] {
            let read: Vec<_> = samples(text).collect();
            assert!(read.iter().all(Result::is_ok), "{name}: {read:?}");
            assert_eq!(read.len(), samples_in_it, "{name}");
        }
    }

    #[test]
    fn a_sample_has_its_name_labels_value_and_timestamp() {
        let s =
            one("vllm:num_requests_running{engine=\"0\",model_name=\"Qwen/Qwen3\"} 2.0").unwrap();
        assert_eq!(s.name, "vllm:num_requests_running");
        assert_eq!(
            labels(&s),
            [("engine", "0".into()), ("model_name", "Qwen/Qwen3".into())]
        );
        assert_eq!((s.value, s.timestamp, s.line), (2.0, None, 1));
        let s =
            one("http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000").unwrap();
        assert_eq!(s.timestamp, Some(1395066363000));
        let s = one("metric_without_timestamp_and_labels 12.47").unwrap();
        assert_eq!((s.value, labels(&s)), (12.47, vec![]));
    }

    #[test]
    fn label_values_unescape_backslash_quote_and_newline() {
        let s = one(r#"msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9"#).unwrap();
        assert_eq!(
            labels(&s),
            [
                ("path", r"C:\DIR\FILE.TXT".into()),
                ("error", "Cannot find file:\n\"FILE.TXT\"".into())
            ]
        );
        assert_eq!(s.value, 1.458255915e9);
        // Without an escape the value is borrowed from the text.
        let s = one(r#"a{b="plain"} 1"#).unwrap();
        assert!(matches!(
            s.labels().next(),
            Some((_, Cow::Borrowed("plain")))
        ));
    }

    #[test]
    fn label_sets_may_be_empty_spaced_or_end_with_a_comma() {
        for text in [
            "a{} 1",
            "a{b=\"c\",} 1",
            "a { b = \"c\" , d=\"e\" } 1",
            "\ta{b=\"c\"}\t1\t5",
            "a{b=\"c\"} 1\r",
        ] {
            let s = one(text).unwrap();
            assert_eq!(s.name, "a", "{text:?}");
            assert_eq!(s.value, 1.0, "{text:?}");
        }
    }

    #[test]
    fn values_are_go_floats() {
        for (text, value) in [
            ("a 2.0", 2.0),
            ("a -0", 0.0),
            ("a 1e+06", 1e6),
            ("a 8.128902e+06", 8128902.0),
            ("a .5", 0.5),
            ("a +Inf", f64::INFINITY),
            ("a -Inf", f64::NEG_INFINITY),
        ] {
            assert_eq!(one(text).unwrap().value, value, "{text}");
        }
        assert!(one("a NaN").unwrap().value.is_nan());
        for text in ["a 0x1p3", "a 1_000", "a one", "a 1,5", "a{b=\"c\"}1"] {
            assert_eq!(kind(text), PromErrorKind::Value, "{text}");
        }
    }

    #[test]
    fn malformed_lines_say_why_and_where() {
        for (text, why) in [
            ("1a 1", PromErrorKind::MetricName),
            ("{b=\"c\"} 1", PromErrorKind::MetricName),
            ("a{1b=\"c\"} 1", PromErrorKind::LabelName),
            ("a{b:c=\"d\"} 1", PromErrorKind::Equals),
            ("a{b c} 1", PromErrorKind::Equals),
            ("a{b=c} 1", PromErrorKind::OpenQuote),
            ("a{b=\"c} 1", PromErrorKind::UnterminatedValue),
            ("a{b=\"c\\t\"} 1", PromErrorKind::Escape),
            ("a{b=\"c\" d=\"e\"} 1", PromErrorKind::LabelSeparator),
            ("a{b=\"c\"", PromErrorKind::LabelSeparator),
            ("a", PromErrorKind::MissingValue),
            ("a{b=\"c\"}  ", PromErrorKind::MissingValue),
            ("a 1 1.5", PromErrorKind::Timestamp),
            ("a 1 2 3", PromErrorKind::Trailing),
        ] {
            assert_eq!(kind(text), why, "{text:?}");
        }
        let text = "a 1\n\n# comment\nb{ 2\nc 3\n";
        let read: Vec<_> = lines(text).collect();
        assert_eq!(read.len(), 3);
        assert_eq!(
            read[1],
            Err(PromError {
                line: 4,
                kind: PromErrorKind::LabelName
            })
        );
        assert_eq!(
            read[1].clone().unwrap_err().to_string(),
            "line 4: no valid label name"
        );
        assert!(matches!(&read[2], Ok(Line::Sample(s)) if s.name == "c" && s.line == 5));
    }

    #[test]
    fn help_and_type_name_a_metric_and_other_comments_are_skipped() {
        let text =
            "# HELP a The a.\n# TYPE a gauge\n# HELP b\n#HELP nothing\n# EOF\n# just words\n";
        let read: Vec<_> = lines(text).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            read,
            [
                Line::Help { name: "a", line: 1 },
                Line::Type {
                    name: "a",
                    kind: "gauge",
                    line: 2
                },
                Line::Help { name: "b", line: 3 },
            ]
        );
        for (text, why) in [
            ("# HELP", PromErrorKind::Help),
            ("# HELP 9a doc", PromErrorKind::Help),
            ("# TYPE a", PromErrorKind::Type),
            ("# TYPE a bogus", PromErrorKind::Type),
            ("# TYPE a gauge extra", PromErrorKind::Type),
        ] {
            let read: Vec<_> = lines(text).collect();
            assert_eq!(read, [Err(PromError { line: 1, kind: why })], "{text:?}");
        }
    }

    #[test]
    fn a_sample_written_back_reads_as_the_same_sample() {
        for text in [
            "a 1",
            "vllm:x{engine=\"0\",model_name=\"m \\\"q\\\" \\n \\\\\"} 0.0011764705882353343 -5",
            "b{} NaN",
            "c{d=\"\"} -Inf 0",
            "e 1e300",
            "f 5e-324",
        ] {
            let s = one(text).unwrap();
            let written = s.to_string();
            let again = one(&written).unwrap();
            assert_eq!(again.name, s.name, "{text} -> {written}");
            assert_eq!(labels(&again), labels(&s), "{text} -> {written}");
            assert_eq!(
                again.value.to_bits(),
                s.value.to_bits(),
                "{text} -> {written}"
            );
            assert_eq!(again.timestamp, s.timestamp, "{text} -> {written}");
        }
    }
}
