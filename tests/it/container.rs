//! The container files, read as a reviewer would (no Docker engine runs
//! here; CI also validates compose.yaml against the Compose schema with
//! dclint): a non-root image with a volume and a health check, one image for
//! every service, no fixed port on the scalable `web`, a proxy in front.

use std::path::Path;

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

#[test]
fn the_image_is_small_unprivileged_and_checked() {
    let docker = read("Dockerfile");
    let runtime = docker.split("AS runtime").nth(1).expect("a runtime stage");
    assert!(runtime.contains("USER the-eye"), "runs as a non-root user");
    assert!(runtime.contains("VOLUME [\"/var/lib/the-eye\"]"), "the data dir is a volume");
    assert!(runtime.contains("HEALTHCHECK") && runtime.contains("/healthz"));
    let cargo = read("Cargo.toml");
    let release = cargo.split("[profile.release]").nth(1).unwrap();
    assert!(release.contains("debug = false"), "no debug info in release");
    assert!(cargo.contains("[profile.profiling]"), "a profile keeps line tables for profiling");
    let ignore = read(".dockerignore");
    for path in ["target", ".git"] {
        assert!(ignore.lines().any(|l| l.trim() == path), ".dockerignore leaves out {path}");
    }
}

/// The lines of one service's block in compose.yaml: from `  NAME:` to the
/// next line indented two spaces or less.
fn service(compose: &str, name: &str) -> String {
    let mut lines = compose.lines().skip_while(|l| *l != format!("  {name}:"));
    let header = lines.next().unwrap_or_else(|| panic!("service {name}"));
    let body: Vec<&str> = lines.take_while(|l| l.is_empty() || l.starts_with("   ")).collect();
    format!("{header}\n{}", body.join("\n"))
}

#[test]
fn compose_scales_web_behind_a_proxy_with_one_image() {
    let compose = read("compose.yaml");
    let web = service(&compose, "web");
    assert!(!web.contains("ports:"), "web publishes no fixed port, so it can be scaled: {web}");
    let proxy = service(&compose, "proxy");
    assert!(proxy.contains("image: caddy:") && proxy.contains(":8000:8000"), "{proxy}");
    for name in ["migrate", "web", "worker"] {
        assert!(service(&compose, name).contains("image: the-eye:local"), "{name} runs the one image");
    }
    assert_eq!(compose.matches("build: .").count(), 1, "the image is built once");
    assert!(compose.contains("THE_EYE_DEMO: \"false\""), "no demo in a real deployment");
    assert!(compose.contains("THE_EYE_TRUST_PROXY: \"true\""), "the proxy's forwarded headers are trusted");
    let caddy = read("deploy/Caddyfile");
    assert!(caddy.contains("dynamic a web 8000") && caddy.contains("health_uri /readyz"), "{caddy}");
}
