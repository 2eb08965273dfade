//! docker-compose.yml, the configuration files it mounts and the Dockerfile
//! hang together. Uses `docker compose config` where the plugin exists and
//! the standalone `docker-compose config` where that exists;
//! always checks the YAML itself (services, images, health checks, ports,
//! volumes, mounted paths, dependencies, Comet's options) and the mounted
//! configurations with the tools that read them: `promtool check config
//! --agent` and `check rules`, `amtool check-config`, `comet rules check`,
//! and the collector's and Grafana's files as YAML.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_norway::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

fn compose() -> Value {
    yaml("docker-compose.yml")
}

fn services(doc: &Value) -> Vec<(String, &Value)> {
    doc["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().expect("service name").to_string(), v))
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// A service's bind mounts as (host path, container path).
fn bind_mounts(svc: &Value) -> Vec<(String, String)> {
    strings(&svc["volumes"])
        .into_iter()
        .filter_map(|v| {
            let mut parts = v.split(':');
            let source = parts.next()?.to_string();
            let target = parts.next()?.to_string();
            (source.starts_with('.') || source.starts_with('/')).then_some((source, target))
        })
        .collect()
}

/// The host file mounted at `target` in `service`.
fn mounted_at(doc: &Value, service: &str, target: &str) -> String {
    bind_mounts(&doc["services"][service])
        .into_iter()
        .find(|(_, t)| t == target)
        .map(|(s, _)| s.trim_start_matches("./").to_string())
        .unwrap_or_else(|| panic!("{service} mounts nothing at {target}"))
}

/// Runs a checker if it is installed; `None` when it is not.
fn run_tool(program: &str, args: &[&str]) -> Option<std::process::Output> {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out)
}

#[test]
fn the_full_stack_is_there_with_pinned_images() {
    let doc = compose();
    let names: BTreeSet<String> = services(&doc).into_iter().map(|(n, _)| n).collect();
    for wanted in [
        "clickhouse",
        "kafka",
        "comet",
        "grafana",
        "alertmanager",
        "otel-collector",
        "node-exporter",
        "prometheus",
    ] {
        assert!(names.contains(wanted), "no {wanted} service in {names:?}");
    }
    let image = |name: &str| {
        doc["services"][name]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(image("clickhouse").starts_with("clickhouse/clickhouse-server:25.8"));
    assert!(image("kafka").starts_with("apache/kafka:"));
    assert!(image("grafana").starts_with("grafana/grafana:"));
    assert!(image("alertmanager").starts_with("prom/alertmanager:"));
    assert!(image("otel-collector").starts_with("otel/opentelemetry-collector-contrib:"));
    assert!(image("node-exporter").starts_with("prom/node-exporter:"));
    assert!(image("prometheus").starts_with("prom/prometheus:v2."));
    for (name, svc) in services(&doc) {
        if name == "comet" {
            assert_eq!(svc["build"].as_str(), Some("."));
            continue;
        }
        let image = svc["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no image"));
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest",
            "{name}: pin the image version ({image})"
        );
    }
    assert!(root().join("Dockerfile").exists());
}

#[test]
fn services_are_health_checked_and_wired() {
    let doc = compose();
    let names: BTreeSet<String> = services(&doc).into_iter().map(|(n, _)| n).collect();
    let mut awaited_to_complete = BTreeSet::new();
    for (name, svc) in services(&doc) {
        if let Some(deps) = svc["depends_on"].as_mapping() {
            for (dep, how) in deps {
                let dep = dep.as_str().unwrap();
                assert!(names.contains(dep), "{name} depends on unknown {dep}");
                let condition = how["condition"].as_str().unwrap_or_default();
                match condition {
                    "service_healthy" => assert!(
                        doc["services"][dep].get("healthcheck").is_some(),
                        "{name} waits for {dep} to be healthy, which has no healthcheck"
                    ),
                    "service_completed_successfully" => {
                        awaited_to_complete.insert(dep.to_string());
                    }
                    other => panic!("{name} -> {dep}: condition {other:?}"),
                }
            }
        }
    }
    for (name, svc) in services(&doc) {
        if svc["restart"].as_str() == Some("no") {
            // A one-shot job: someone must wait for it to finish.
            assert!(
                awaited_to_complete.contains(&name),
                "one-shot {name} is not awaited"
            );
            continue;
        }
        let test = strings(&svc["healthcheck"]["test"]);
        assert!(
            test.first().is_some_and(|t| t == "CMD" || t == "CMD-SHELL"),
            "{name} has no healthcheck test: {test:?}"
        );
        assert_eq!(
            svc["restart"].as_str(),
            Some("unless-stopped"),
            "{name} should restart"
        );
    }
    let comet = &doc["services"]["comet"];
    assert_eq!(
        comet["depends_on"]["clickhouse"]["condition"].as_str(),
        Some("service_healthy")
    );
    // Grafana, the agent and the collector need Comet up.
    for client in ["grafana", "prometheus", "otel-collector"] {
        assert_eq!(
            doc["services"][client]["depends_on"]["comet"]["condition"].as_str(),
            Some("service_healthy"),
            "{client} does not wait for comet"
        );
    }
}

#[test]
fn comet_is_configured_with_real_options() {
    let doc = compose();
    let env = doc["services"]["comet"]["environment"]
        .as_mapping()
        .expect("comet environment");
    let get = |k: &str| {
        env.get(Value::from(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    assert_eq!(
        get("COMET_CLICKHOUSE_URL").as_deref(),
        Some("http://clickhouse:8123")
    );
    assert_eq!(get("COMET_KAFKA_BROKERS").as_deref(), Some("kafka:9092"));
    assert_eq!(get("COMET_KAFKA_TOPICS").as_deref(), Some("metrics"));
    assert_eq!(get("COMET_KAFKA_GROUP_ID").as_deref(), Some("comet"));
    assert_eq!(
        get("COMET_RULES_ALERTMANAGERS").as_deref(),
        Some("http://alertmanager:9093")
    );
    // ClickHouse credentials match the server's.
    let ch = &doc["services"]["clickhouse"]["environment"];
    assert_eq!(
        get("COMET_CLICKHOUSE_USER").as_deref(),
        ch["CLICKHOUSE_USER"].as_str()
    );
    assert_eq!(
        get("COMET_CLICKHOUSE_PASSWORD").as_deref(),
        ch["CLICKHOUSE_PASSWORD"].as_str()
    );
    // Every variable is one comet reads (src/cli.rs), but for the Kafka
    // options, which the Kafka source brings.
    let cli = std::fs::read_to_string(root().join("src/cli.rs")).unwrap();
    for (key, _) in env {
        let key = key.as_str().unwrap();
        if key.starts_with("COMET_KAFKA_") && !cli.contains("COMET_KAFKA_") {
            continue;
        }
        assert!(
            cli.contains(&format!("env = \"{key}\"")),
            "comet has no option read from {key}"
        );
    }
    // The rule files it is given exist and are valid.
    let rules_dir = mounted_at(&doc, "comet", "/etc/comet/rules");
    let files: Vec<String> = std::fs::read_dir(root().join(&rules_dir))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yml"))
        .collect();
    assert!(!files.is_empty(), "no rule files in {rules_dir}");
    assert_eq!(
        get("COMET_RULES_FILES").as_deref(),
        Some("/etc/comet/rules/*.yml")
    );
    let args: Vec<&str> = ["rules", "check"]
        .into_iter()
        .chain(files.iter().map(String::as_str))
        .collect();
    run_tool(env!("CARGO_BIN_EXE_comet"), &args).expect("comet runs");
    let mut promtool_args = vec!["check", "rules"];
    promtool_args.extend(files.iter().map(String::as_str));
    let _ = run_tool("promtool", &promtool_args);
    // Kafka runs in KRaft mode: no ZooKeeper.
    let kafka = &doc["services"]["kafka"]["environment"];
    assert!(
        kafka["KAFKA_PROCESS_ROLES"]
            .as_str()
            .is_some_and(|r| r.contains("broker") && r.contains("controller"))
    );
    assert!(kafka.get("KAFKA_ZOOKEEPER_CONNECT").is_none());
    assert_eq!(
        kafka["KAFKA_ADVERTISED_LISTENERS"].as_str(),
        Some("PLAINTEXT://kafka:9092")
    );
}

#[test]
fn only_comet_and_grafana_are_published_and_volumes_are_named() {
    let doc = compose();
    let declared = doc["volumes"].as_mapping().unwrap();
    let mut used = BTreeSet::new();
    for (name, svc) in services(&doc) {
        let ports = strings(&svc["ports"]);
        match name.as_str() {
            "comet" => assert_eq!(ports, ["9090:9090", "4317:4317", "4318:4318"]),
            "grafana" => assert_eq!(ports, ["3000:3000"]),
            _ => assert!(ports.is_empty(), "{name} publishes {ports:?}"),
        }
        for volume in strings(&svc["volumes"]) {
            let source = volume.split(':').next().unwrap();
            if source.starts_with('.') || source.starts_with('/') {
                assert!(
                    root().join(source).exists(),
                    "{name} mounts missing {source}"
                );
                if source.starts_with('.') {
                    assert!(volume.ends_with(":ro"), "{name}: mount {source} read-only");
                }
            } else {
                assert!(
                    declared.contains_key(Value::from(source)),
                    "{name} uses undeclared volume {source}"
                );
                used.insert(source.to_string());
            }
        }
    }
    for (volume, _) in declared {
        let volume = volume.as_str().unwrap();
        assert!(used.contains(volume), "volume {volume} is not used");
    }
}

#[test]
fn prometheus_agent_config_is_valid_and_writes_to_comet() {
    let doc = compose();
    let svc = &doc["services"]["prometheus"];
    let command = strings(&svc["command"]);
    assert!(
        command.contains(&"--enable-feature=agent".to_string()),
        "{command:?}"
    );
    let config = mounted_at(&doc, "prometheus", "/etc/prometheus/prometheus.yml");
    assert!(command.contains(&"--config.file=/etc/prometheus/prometheus.yml".to_string()));
    if let Some(out) = run_tool("promtool", &["check", "config", "--agent", &config]) {
        assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
    }
    let prom = yaml(&config);
    let writes: Vec<&str> = prom["remote_write"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|w| w["url"].as_str())
        .collect();
    assert_eq!(writes, ["http://comet:9090/api/v1/write"]);
    let targets: BTreeSet<String> = prom["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|job| job["static_configs"].as_sequence().into_iter().flatten())
        .flat_map(|sc| strings(&sc["targets"]))
        .collect();
    assert!(targets.contains("node-exporter:9100"), "{targets:?}");
    assert!(targets.contains("comet:9090"), "{targets:?}");
    // The data source's timeInterval is the agent's scrape interval.
    let ds = yaml("grafana/provisioning/datasources/comet.yaml");
    assert_eq!(
        ds["datasources"][0]["jsonData"]["timeInterval"].as_str(),
        prom["global"]["scrape_interval"].as_str()
    );
}

#[test]
fn alertmanager_config_is_valid() {
    let doc = compose();
    let config = mounted_at(&doc, "alertmanager", "/etc/alertmanager/alertmanager.yml");
    let parsed = yaml(&config);
    assert!(parsed["route"]["receiver"].is_string());
    if let Some(out) = run_tool("amtool", &["check-config", &config]) {
        assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
    }
}

#[test]
fn otel_collector_sends_host_metrics_to_comet() {
    let doc = compose();
    let svc = &doc["services"]["otel-collector"];
    let config_path = mounted_at(&doc, "otel-collector", "/etc/otelcol-contrib/config.yaml");
    assert!(
        strings(&svc["command"]).contains(&"--config=/etc/otelcol-contrib/config.yaml".to_string())
    );
    let config = yaml(&config_path);
    assert!(config["receivers"]["hostmetrics"]["scrapers"].is_mapping());
    let root_path = config["receivers"]["hostmetrics"]["root_path"].as_str();
    let host_mount = bind_mounts(svc)
        .into_iter()
        .find(|(s, _)| s == "/")
        .map(|(_, t)| t);
    assert_eq!(
        root_path,
        host_mount.as_deref(),
        "root_path is the host mount"
    );
    let pipeline = &config["service"]["pipelines"]["metrics"];
    assert!(strings(&pipeline["receivers"]).contains(&"hostmetrics".to_string()));
    let exporters = strings(&pipeline["exporters"]);
    let to_comet: Vec<&String> = exporters
        .iter()
        .filter(|e| e.split('/').next() == Some("otlp"))
        .filter(|e| config["exporters"][e.as_str()]["endpoint"].as_str() == Some("comet:4317"))
        .collect();
    assert_eq!(
        to_comet.len(),
        1,
        "no otlp exporter to comet:4317 in {exporters:?}"
    );
    for name in strings(&pipeline["processors"]) {
        assert!(
            config["processors"].get(name.as_str()).is_some(),
            "processor {name} undefined"
        );
    }
    for name in strings(&config["service"]["extensions"]) {
        assert!(
            config["extensions"].get(name.as_str()).is_some(),
            "extension {name} undefined"
        );
    }
    // Comet listens for OTLP/gRPC on 4317 in the stack.
    assert_eq!(
        doc["services"]["comet"]["environment"]["COMET_OTLP_GRPC_LISTEN_ADDRESS"].as_str(),
        Some("0.0.0.0:4317")
    );
}

#[test]
fn grafana_is_provisioned_from_the_repository() {
    let doc = compose();
    let provisioning = mounted_at(&doc, "grafana", "/etc/grafana/provisioning");
    assert_eq!(provisioning, "grafana/provisioning");
    let dashboards = mounted_at(&doc, "grafana", "/etc/grafana/dashboards");
    assert_eq!(dashboards, "grafana/dashboards");

    let ds = yaml("grafana/provisioning/datasources/comet.yaml");
    let comet = &ds["datasources"][0];
    assert_eq!(comet["type"].as_str(), Some("prometheus"));
    assert_eq!(comet["uid"].as_str(), Some("comet"));
    assert_eq!(comet["url"].as_str(), Some("http://comet:9090"));
    assert_eq!(comet["jsonData"]["httpMethod"].as_str(), Some("POST"));
    assert_eq!(
        comet["jsonData"]["prometheusType"].as_str(),
        Some("Prometheus")
    );
    // The version Comet's buildinfo reports.
    let status = std::fs::read_to_string(root().join("query/src/api/status.rs")).unwrap();
    let version = comet["jsonData"]["prometheusVersion"].as_str().unwrap();
    assert!(
        status.contains(&format!("PROMETHEUS_API_VERSION: &str = \"{version}\"")),
        "prometheusVersion {version} is not what /api/v1/status/buildinfo reports"
    );

    let providers = yaml("grafana/provisioning/dashboards/comet.yaml");
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    assert_eq!(
        provider["options"]["path"].as_str(),
        Some("/etc/grafana/dashboards")
    );
    // The home dashboard is one of the mounted ones, and every dashboard
    // uses the provisioned data source (directly or by the variable).
    let home =
        doc["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
            .as_str()
            .unwrap();
    let home_file = home.strip_prefix("/etc/grafana/dashboards/").unwrap();
    assert!(root().join(&dashboards).join(home_file).exists(), "{home}");
    for entry in std::fs::read_dir(root().join(&dashboards)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let uses_var = json["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus");
        assert!(
            uses_var || text.contains("\"uid\": \"comet\""),
            "{} does not use the Comet data source",
            path.display()
        );
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_builds_librdkafka() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "not multi-stage");
    assert!(text.contains("\nUSER comet"));
    // rdkafka builds librdkafka from source: a C/C++ toolchain, perl,
    // python3 and zlib in the build stage.
    for package in [
        "build-essential",
        "python3",
        "zlib1g-dev",
        "libssl-dev",
        "libsasl2-dev",
    ] {
        assert!(text.contains(package), "the build stage lacks {package}");
    }
    let runtime = text.rsplit("\nFROM ").next().unwrap();
    assert!(
        runtime.starts_with("debian:") && runtime.contains("-slim"),
        "small runtime image"
    );
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
        assert!(text.contains(&format!("COPY {copied}")) || text.contains(&format!(" {copied} ")));
    }
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target"));
}

/// The standalone `docker-compose` (Debian's 1.29, or a v2 binary)
/// validates the file against the Compose schema without a Docker engine.
/// Version 1 predates the top-level `name`, so it checks a copy without it.
#[test]
fn standalone_docker_compose_accepts_it_where_available() {
    let Ok(probe) = Command::new("docker-compose").arg("version").output() else {
        return;
    };
    if !probe.status.success() {
        return;
    }
    let version = String::from_utf8_lossy(&probe.stdout).into_owned();
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let text = if version.contains("version 1.") {
        text.lines()
            .filter(|l| !l.starts_with("name:"))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        text
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .arg("--project-directory")
        .arg(root())
        .args(["config", "-q"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker-compose ({}) rejects docker-compose.yml:\n{}",
        version.trim(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn docker_compose_config_accepts_it_where_available() {
    let probe = Command::new("docker").args(["compose", "version"]).output();
    let Ok(probe) = probe else { return };
    if !probe.status.success() {
        // No compose plugin on this machine: the YAML checks above stand.
        return;
    }
    docker_compose_config(&["docker-compose.yml"]);
}

/// `docker compose -f FILE... config -q` must accept the files.
fn docker_compose_config(files: &[&str]) {
    let mut args = vec!["compose"];
    for file in files {
        args.extend(["-f", file]);
    }
    args.extend(["config", "-q"]);
    let out = Command::new("docker")
        .args(&args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// docker-compose.cluster.yml layers a 2 x 2 cluster on the stack: every
/// node in the cluster configuration is a service that mounts it, each
/// with its own (shard, replica) macros, all users alike, Keeper wired and
/// checked, and Comet in cluster mode under the cluster's name.
#[test]
fn the_cluster_overlay_is_a_replicated_sharded_cluster() {
    let base = compose();
    let mut overlay = yaml("docker-compose.cluster.yml");
    // The nodes share a template through a YAML merge key, as Compose reads it.
    overlay.apply_merge().expect("YAML merge keys");
    let cluster_xml = std::fs::read_to_string(root().join("deploy/cluster/clickhouse-cluster.xml"))
        .expect("deploy/cluster/clickhouse-cluster.xml");
    // The replicas named in remote_servers, shard by shard.
    let shards: Vec<Vec<String>> = cluster_xml
        .split("<shard>")
        .skip(1)
        .map(|shard| {
            shard
                .split("<host>")
                .skip(1)
                .filter_map(|h| h.split("</host>").next().map(str::to_string))
                .collect()
        })
        .collect();
    assert_eq!(shards.len(), 2, "{shards:?}");
    assert!(shards.iter().all(|s| s.len() == 2), "{shards:?}");
    assert!(cluster_xml.contains("<comet>") && cluster_xml.contains("<host>keeper</host>"));
    assert!(cluster_xml.contains(r#"<shard from_env="COMET_SHARD"/>"#));
    assert!(cluster_xml.contains(r#"<replica from_env="COMET_REPLICA"/>"#));

    let env = |svc: &Value, key: &str| -> Option<String> {
        svc["environment"][key].as_str().map(str::to_string)
    };
    let mut macros = BTreeSet::new();
    for (shard, hosts) in shards.iter().enumerate() {
        for host in hosts {
            let svc = &overlay["services"][host.as_str()];
            assert!(svc.is_mapping(), "{host} is not a service of the overlay");
            assert_eq!(
                mounted_at(
                    &overlay,
                    host,
                    "/etc/clickhouse-server/config.d/cluster.xml"
                ),
                "deploy/cluster/clickhouse-cluster.xml"
            );
            assert_eq!(
                env(svc, "COMET_SHARD"),
                Some((shard + 1).to_string()),
                "{host}"
            );
            assert_eq!(env(svc, "COMET_REPLICA").as_deref(), Some(host.as_str()));
            assert!(macros.insert(host.clone()));
            // The first node is the stack's own `clickhouse`, with its user.
            let user_from = if host == "clickhouse" {
                &base["services"]["clickhouse"]
            } else {
                svc
            };
            assert_eq!(env(user_from, "CLICKHOUSE_USER").as_deref(), Some("comet"));
            assert_eq!(
                env(user_from, "CLICKHOUSE_PASSWORD").as_deref(),
                Some("comet")
            );
            assert_eq!(
                svc["depends_on"]["keeper"]["condition"].as_str(),
                Some("service_healthy"),
                "{host}"
            );
        }
    }
    assert!(
        cluster_xml
            .matches("<user>comet</user><password>comet</password>")
            .count()
            == 4
    );
    assert_eq!(
        mounted_at(
            &overlay,
            "keeper",
            "/etc/clickhouse-keeper/keeper_config.xml"
        ),
        "deploy/cluster/keeper.xml"
    );
    let keeper = std::fs::read_to_string(root().join("deploy/cluster/keeper.xml")).unwrap();
    assert!(keeper.contains("<tcp_port>9181</tcp_port>") && keeper.contains("<port>9182</port>"));
    let comet = &overlay["services"]["comet"];
    assert_eq!(
        env(comet, "COMET_CLICKHOUSE_CLUSTER").as_deref(),
        Some("comet")
    );
    // Comet keeps the base stack's URL: the first node.
    assert_eq!(
        env(&base["services"]["comet"], "COMET_CLICKHOUSE_URL").as_deref(),
        Some("http://clickhouse:8123")
    );

    let probe = Command::new("docker").args(["compose", "version"]).output();
    if probe.is_ok_and(|p| p.status.success()) {
        docker_compose_config(&["docker-compose.yml", "docker-compose.cluster.yml"]);
    }
}
