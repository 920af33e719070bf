//! Command-line arguments: `corral [--config PATH]`, `--check-config [PATH]`,
//! `demo [--port N]`, `--help`, `--version`. Small enough not to need a parser crate.

use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run {
        config: Option<PathBuf>,
    },
    CheckConfig {
        config: Option<PathBuf>,
    },
    /// `corral demo`: Corral with simulated backends (SPEC 7.5); port 0 picks a free one.
    Demo {
        port: u16,
    },
    Help,
    Version,
}

pub const USAGE: &str = "\
corral — LLM-endpoint supervisor and health-aware proxy

USAGE:
    corral [--config PATH]          run the daemon
    corral --check-config [PATH]    validate a config file and exit (0 valid, 1 invalid)
    corral demo [--port N]          try Corral with three simulated LLM servers, no setup
                                    (on 127.0.0.1:40114 unless --port; commands on stdin)
    corral --help | --version

The config file is the first of: --config PATH, $CORRAL_CONFIG, config/corral.yaml,
corral.yaml. Logging level can be overridden with RUST_LOG.";

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .peekable();
    if args.peek().map(String::as_str) == Some("demo") {
        args.next();
        return parse_demo(args);
    }
    let mut config = None;
    let mut check = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--config" => {
                let path = args.next().ok_or("--config needs a path")?;
                config = Some(PathBuf::from(path));
            }
            "--check-config" => {
                check = true;
                if let Some(next) = args.peek() {
                    if !next.starts_with('-') {
                        config = Some(PathBuf::from(args.next().unwrap_or_default()));
                    }
                }
            }
            other => {
                if let Some(path) = other.strip_prefix("--config=") {
                    config = Some(PathBuf::from(path));
                } else {
                    return Err(format!("unknown argument `{other}` (see --help)"));
                }
            }
        }
    }
    Ok(if check {
        Command::CheckConfig { config }
    } else {
        Command::Run { config }
    })
}

/// The arguments after `demo`.
fn parse_demo(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut port = crate::demo::DEFAULT_PORT;
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-p" | "--port" => args.next().ok_or("--port needs a number")?,
            other => match other.strip_prefix("--port=") {
                Some(value) => value.to_string(),
                None => return Err(format!("unknown argument `{other}` for demo (see --help)")),
            },
        };
        port = value
            .parse()
            .map_err(|_| format!("--port needs a number from 0 to 65535, not `{value}`"))?;
    }
    Ok(Command::Demo { port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn parses_each_form() {
        assert_eq!(p(&[]), Ok(Command::Run { config: None }));
        assert_eq!(
            p(&["--config", "a.yaml"]),
            Ok(Command::Run {
                config: Some("a.yaml".into())
            })
        );
        assert_eq!(
            p(&["--config=a.yaml"]),
            Ok(Command::Run {
                config: Some("a.yaml".into())
            })
        );
        assert_eq!(
            p(&["--check-config", "a.yaml"]),
            Ok(Command::CheckConfig {
                config: Some("a.yaml".into())
            })
        );
        assert_eq!(
            p(&["--check-config"]),
            Ok(Command::CheckConfig { config: None })
        );
        assert_eq!(
            p(&["--config", "b.yaml", "--check-config"]),
            Ok(Command::CheckConfig {
                config: Some("b.yaml".into())
            })
        );
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert_eq!(p(&["-V"]), Ok(Command::Version));
    }

    #[test]
    fn parses_demo() {
        assert_eq!(p(&["demo"]), Ok(Command::Demo { port: 40114 }));
        assert_eq!(
            p(&["demo", "--port", "8080"]),
            Ok(Command::Demo { port: 8080 })
        );
        assert_eq!(p(&["demo", "--port=0"]), Ok(Command::Demo { port: 0 }));
        assert_eq!(p(&["demo", "--help"]), Ok(Command::Help));
    }

    #[test]
    fn rejects_bad_demo_arguments() {
        assert_eq!(p(&["demo", "--port"]), Err("--port needs a number".into()));
        assert!(p(&["demo", "--port", "70000"])
            .unwrap_err()
            .contains("from 0 to 65535, not `70000`"));
        assert!(p(&["demo", "--config", "a.yaml"])
            .unwrap_err()
            .contains("unknown argument `--config` for demo"));
        assert!(p(&["--config", "a.yaml", "demo"]).is_err());
    }

    #[test]
    fn rejects_unknown_and_incomplete() {
        assert!(p(&["--bogus"])
            .unwrap_err()
            .contains("unknown argument `--bogus`"));
        assert!(p(&["--config"]).is_err());
    }
}
