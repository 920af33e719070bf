//! The binary's command line and its handling of bad configuration (SPEC 2, 3): every bad
//! config exits 1 before serving, with one line naming the field and why.

use std::time::Duration;

use house::{run_corral, write_config, Output};

const CORRAL: &str = env!("CARGO_BIN_EXE_corral");
const T: Duration = Duration::from_secs(20);

fn corral(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_corral(CORRAL, args, env, T)
}

#[test]
fn help_and_version() {
    let out = corral(&["--help"], &[]);
    assert_eq!(out.code, Some(0));
    assert!(out.stdout.contains("--check-config"), "{}", out.stdout);
    let out = corral(&["--version"], &[]);
    assert_eq!(out.code, Some(0));
    assert_eq!(
        out.stdout.trim(),
        format!("corral {}", env!("CARGO_PKG_VERSION"))
    );
    let out = corral(&["--frobnicate"], &[]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("unknown argument `--frobnicate`"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_config_accepts_the_bundled_configs() {
    let dir = env!("CARGO_MANIFEST_DIR");
    for file in [
        "config/corral.yaml",
        "config/example.yaml",
        "config/olla-example.yaml",
    ] {
        let path = format!("{dir}/{file}");
        let out = corral(&["--check-config", &path], &[("OPENAI_API_KEY", "sk-test")]);
        assert_eq!(out.code, Some(0), "{file}: {}", out.stderr);
        assert!(out.stdout.contains("ok"), "{}", out.stdout);
    }
    let out = corral(
        &["--check-config", &format!("{dir}/config/olla-example.yaml")],
        &[],
    );
    assert!(
        out.stderr.contains("ignored Olla setting"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_configs_exit_1_with_the_field_and_reason() {
    let cases = [
        (
            "endpoints:\n  - url: http://127.0.0.1:1\n    check_interval: 5s\n    check_timeout: 10s\n",
            "endpoints[0].check_timeout: must be shorter than check_interval (5s)",
        ),
        ("endpoints:\n  - url: http://127.0.0.1:1\n    chek_interval: 5s\n", "did you mean `check_interval`"),
        ("endpoints:\n  - url: ftp://127.0.0.1:1\n", "endpoints[0].url"),
        ("endpoints:\n  - url: http://127.0.0.1:1\n    check_interval: soon\n", "check_interval"),
        ("server:\n  port: [1\n", "line"),
    ];
    for (yaml, needle) in cases {
        let f = write_config(yaml);
        let path = f.to_str().unwrap();
        // Both the validator and a real start must refuse it, without serving.
        for args in [vec!["--check-config", path], vec!["--config", path]] {
            let out = corral(&args, &[]);
            assert_eq!(out.code, Some(1), "{args:?} {yaml}: {}", out.stderr);
            assert!(
                out.stderr.contains(needle),
                "want `{needle}` in: {}",
                out.stderr
            );
            assert_eq!(
                out.stderr.trim().lines().count(),
                1,
                "one line: {}",
                out.stderr
            );
            assert!(
                !out.stdout.contains("listening"),
                "never served: {}",
                out.stdout
            );
        }
    }
}

#[test]
fn missing_config_and_busy_port_exit_1() {
    let out = corral(&["--config", "/nonexistent/corral.yaml"], &[]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("/nonexistent/corral.yaml"),
        "{}",
        out.stderr
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let f = write_config(&format!("server: {{ host: 127.0.0.1, port: {port} }}\n"));
    let out = corral(&["--config", f.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
}

#[test]
fn config_is_found_through_the_environment() {
    let f = write_config("server: { host: 127.0.0.1, port: 0 }\n");
    let out = corral(
        &["--check-config"],
        &[("CORRAL_CONFIG", f.to_str().unwrap())],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains(f.to_str().unwrap()));
}
