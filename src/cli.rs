//! Command-line arguments: `corral [--config PATH]`, `--check-config [PATH]`, `--help`,
//! `--version`. Small enough not to need a parser crate.

use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run { config: Option<PathBuf> },
    CheckConfig { config: Option<PathBuf> },
    Help,
    Version,
}

pub const USAGE: &str = "\
corral — LLM-endpoint supervisor and health-aware proxy

USAGE:
    corral [--config PATH]          run the daemon
    corral --check-config [PATH]    validate a config file and exit (0 valid, 1 invalid)
    corral --help | --version

The config file is the first of: --config PATH, $CORRAL_CONFIG, config/corral.yaml,
corral.yaml. Logging level can be overridden with RUST_LOG.";

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .peekable();
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
    fn rejects_unknown_and_incomplete() {
        assert!(p(&["--bogus"])
            .unwrap_err()
            .contains("unknown argument `--bogus`"));
        assert!(p(&["--config"]).is_err());
    }
}
