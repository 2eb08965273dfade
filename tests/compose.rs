//! docker-compose.yml and the Dockerfile hang together. Uses
//! `docker compose config` where the plugin exists; always checks the YAML
//! itself (services, images, health checks, ports, volumes, mounted paths).

use std::path::Path;

use serde_norway::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    serde_norway::from_str(&text).expect("docker-compose.yml is valid YAML")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    &doc["services"][name]
}

#[test]
fn services_are_wired() {
    let doc = compose();
    let ch = service(&doc, "clickhouse");
    let image = ch["image"].as_str().unwrap();
    assert!(
        image.starts_with("clickhouse/clickhouse-server:25.8"),
        "{image}"
    );
    let comet = service(&doc, "comet");
    assert_eq!(comet["build"].as_str(), Some("."));
    assert!(root().join("Dockerfile").exists());
    assert_eq!(
        comet["depends_on"]["clickhouse"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert_eq!(
        comet["environment"]["COMET_CLICKHOUSE_URL"].as_str(),
        Some("http://clickhouse:8123")
    );
    // Every service is health-checked.
    for (name, svc) in doc["services"].as_mapping().unwrap() {
        assert!(
            svc.get("healthcheck").is_some(),
            "{name:?} has no healthcheck"
        );
    }
}

#[test]
fn only_comet_is_published_and_volumes_are_named() {
    let doc = compose();
    let declared = doc["volumes"].as_mapping().unwrap();
    for (name, svc) in doc["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let ports = svc.get("ports").and_then(Value::as_sequence);
        match name {
            "comet" => assert_eq!(ports.unwrap()[0].as_str(), Some("9090:9090")),
            _ => assert!(ports.is_none(), "{name} publishes ports"),
        }
        for volume in svc
            .get("volumes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with('.') || source.starts_with('/') {
                assert!(
                    root().join(source).exists(),
                    "{name} mounts missing {source}"
                );
            } else {
                assert!(
                    declared.contains_key(Value::from(source)),
                    "{name} uses undeclared volume {source}"
                );
            }
        }
    }
}

#[test]
fn dockerfile_is_multi_stage_and_non_root() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(text.matches("\nFROM ").count() + usize::from(text.starts_with("FROM ")) >= 2);
    assert!(text.contains("\nUSER comet"));
    for copied in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "schema",
        "ingest",
        "query",
        "src",
        "comet.example.yaml",
    ] {
        assert!(
            root().join(copied).exists(),
            "Dockerfile copies missing {copied}"
        );
    }
}

#[test]
fn docker_compose_config_accepts_it_where_available() {
    let probe = std::process::Command::new("docker")
        .args(["compose", "version"])
        .output();
    let Ok(probe) = probe else { return };
    if !probe.status.success() {
        // No compose plugin on this machine: the YAML checks above stand.
        return;
    }
    let out = std::process::Command::new("docker")
        .args(["compose", "-f", "docker-compose.yml", "config", "-q"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
