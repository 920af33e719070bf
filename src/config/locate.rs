//! Which config file to load (SPEC 2): `--config PATH`, then `$CORRAL_CONFIG`, then
//! `config/corral.yaml`, then `corral.yaml`, relative to the working directory.
//!
//! An explicitly named file that is missing is an error rather than a reason to fall back:
//! silently loading a different file than the operator asked for is worse than not starting.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::error::ConfigError;

/// The environment variable that names the config file.
pub const CONFIG_ENV: &str = "CORRAL_CONFIG";

/// Places looked at when neither `--config` nor `$CORRAL_CONFIG` names a file, in order.
pub const DEFAULT_PATHS: &[&str] = &["config/corral.yaml", "corral.yaml"];

/// Finds the config file, from the process's working directory and environment.
pub fn locate(cli: Option<&Path>) -> Result<PathBuf, ConfigError> {
    locate_in(Path::new(""), cli, std::env::var_os(CONFIG_ENV))
}

/// [`locate`] with the working directory and `$CORRAL_CONFIG` passed in, so tests need
/// neither `chdir` nor `setenv`. Relative paths are taken relative to `base`; an empty `base`
/// returns them as given.
pub(crate) fn locate_in(
    base: &Path,
    cli: Option<&Path>,
    env_value: Option<OsString>,
) -> Result<PathBuf, ConfigError> {
    if let Some(path) = cli {
        return explicit(base, path, "--config");
    }
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        return explicit(base, Path::new(&value), "$CORRAL_CONFIG");
    }
    DEFAULT_PATHS
        .iter()
        .map(|p| base.join(p))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            ConfigError::new(format!(
                "no config file found (looked for {}); pass --config PATH or set {CONFIG_ENV}",
                DEFAULT_PATHS.join(", ")
            ))
        })
}

fn explicit(base: &Path, path: &Path, from: &str) -> Result<PathBuf, ConfigError> {
    let full = base.join(path);
    if full.is_file() {
        Ok(full)
    } else if full.exists() {
        Err(ConfigError::new(format!(
            "{}: not a file (from {from})",
            full.display()
        )))
    } else {
        Err(ConfigError::new(format!(
            "{}: config file not found (from {from})",
            full.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(dir: &Path, rel: &str) -> PathBuf {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "{}").unwrap();
        p
    }

    #[test]
    fn cli_path_wins_over_everything() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        touch(base, "config/corral.yaml");
        touch(base, "env.yaml");
        let cli = touch(base, "cli.yaml");
        let got = locate_in(base, Some(Path::new("cli.yaml")), Some("env.yaml".into())).unwrap();
        assert_eq!(got, cli);
    }

    #[test]
    fn env_var_wins_over_default_paths() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        touch(base, "config/corral.yaml");
        let env = touch(base, "env.yaml");
        assert_eq!(locate_in(base, None, Some("env.yaml".into())).unwrap(), env);
    }

    #[test]
    fn config_dir_before_working_dir() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let top = touch(base, "corral.yaml");
        assert_eq!(locate_in(base, None, None).unwrap(), top);
        let nested = touch(base, "config/corral.yaml");
        assert_eq!(locate_in(base, None, None).unwrap(), nested);
        // An empty $CORRAL_CONFIG counts as unset.
        assert_eq!(locate_in(base, None, Some("".into())).unwrap(), nested);
    }

    #[test]
    fn absolute_paths_ignore_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let file = touch(dir.path(), "abs.yaml");
        let got = locate_in(Path::new("/nonexistent"), Some(&file), None).unwrap();
        assert_eq!(got, file);
    }

    #[test]
    fn missing_cli_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "config/corral.yaml");
        let e = locate_in(dir.path(), Some(Path::new("nope.yaml")), None).unwrap_err();
        assert!(
            e.message()
                .contains("nope.yaml: config file not found (from --config)"),
            "{e}"
        );
    }

    #[test]
    fn missing_env_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "config/corral.yaml");
        let e = locate_in(dir.path(), None, Some("gone.yaml".into())).unwrap_err();
        assert!(
            e.message()
                .contains("gone.yaml: config file not found (from $CORRAL_CONFIG)"),
            "{e}"
        );
    }

    #[test]
    fn a_directory_is_not_a_config_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        let e = locate_in(dir.path(), Some(Path::new("d")), None).unwrap_err();
        assert!(
            e.message().ends_with("d: not a file (from --config)"),
            "{e}"
        );
    }

    #[test]
    fn nothing_found_lists_the_places_looked() {
        let dir = tempfile::tempdir().unwrap();
        let e = locate_in(dir.path(), None, None).unwrap_err();
        assert_eq!(
            e.message(),
            "no config file found (looked for config/corral.yaml, corral.yaml); \
             pass --config PATH or set CORRAL_CONFIG"
        );
    }
}
