//! The pure parts of a pass, without I/O: the planner and the state-file parser.
//! `scripts/bench` runs this and prints the planner figures; docs/performance.md
//! has the targets.
//!
//! Inputs are built the way a pass builds them: a state file as DECNET writes it
//! (indent 2, every field present), parsed by `state_file::parse`; DB rows as a
//! previous pass wrote them; Docker's view with every expected container.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use decnet_reconcile::core::{
    self as plan, ContainerStates, Decky, DockerView, FleetRow, Snapshot, StoreRules,
};
use decnet_reconcile::state_file;

const HOST: &str = "local";
const SERVICES: [&str; 10] = [
    "ssh",
    "smtp_relay",
    "ftp",
    "http",
    "https",
    "telnet",
    "mysql",
    "redis",
    "rdp",
    "smb",
];
const SIZES: [(usize, usize); 4] = [(1_000, 4), (1_000, 10), (10_000, 4), (10_000, 10)];

/// A state file of `count` deckies with `services` services each, as DECNET writes it.
fn state_file(count: usize, services: usize) -> String {
    let mut deckies = Vec::with_capacity(count);
    for i in 0..count {
        let mut decky = String::new();
        let services: Vec<String> = SERVICES[..services]
            .iter()
            .map(|s| format!("          \"{s}\""))
            .collect();
        write!(
            decky,
            r#"      {{
        "name": "decky-{i:05}",
        "ip": "10.{}.{}.{}",
        "services": [
{}
        ],
        "distro": "debian",
        "base_image": "debian:bookworm-slim",
        "build_base": "debian:bookworm-slim",
        "hostname": "host-{i:05}",
        "archetype": "linux-server",
        "service_config": {{
          "ssh": {{
            "port": 22,
            "banner": "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
          }}
        }},
        "nmap_os": "linux",
        "mutate_interval": 30,
        "last_mutated": 1764193200.5,
        "last_login_attempt": 0.0,
        "host_uuid": null
      }}"#,
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff,
            services.join(",\n")
        )
        .expect("writing to a String");
        deckies.push(decky);
    }
    format!(
        r#"{{
  "config": {{
    "mode": "unihost",
    "interface": "eth0",
    "subnet": "10.0.0.0/8",
    "gateway": "10.0.0.1",
    "deckies": [
{}
    ],
    "log_file": null,
    "ipvlan": false,
    "mutate_interval": 30
  }},
  "compose_path": "/var/lib/decnet/docker-compose.yml"
}}"#,
        deckies.join(",\n")
    )
}

fn deckies(count: usize, services: usize) -> Vec<Decky> {
    state_file::parse(state_file(count, services).as_bytes())
        .expect("the generated state file is valid")
        .deckies
}

/// Every expected container exists and runs.
fn all_running(deckies: &[Decky]) -> DockerView {
    let mut states = ContainerStates::default();
    for decky in deckies {
        for service in &decky.services {
            states.insert(
                format!("{}-{}", decky.name, service.replace('_', "-")),
                "running",
            );
        }
    }
    DockerView::Known(states)
}

/// `rows` as a pass reads them from SQLite.
fn snapshot(rows: Vec<FleetRow>) -> Snapshot {
    Snapshot {
        rows,
        read_at: chrono::Utc::now().naive_utc(),
        store: StoreRules::default(),
    }
}

/// The rows a previous pass wrote: the plan on them is empty.
fn converged_rows(deckies: &[Decky]) -> Snapshot {
    snapshot(
        deckies
            .iter()
            .map(|d| {
                row(
                    d,
                    d.services_json.clone(),
                    d.config_json.clone(),
                    d.ip.clone(),
                    "running",
                )
            })
            .collect(),
    )
}

/// Every row drifted every way: another state, another IP, and a `decky_config`
/// that differs in meaning and is spaced differently, so that the planner has to
/// parse and compare both texts (its most expensive path).
fn drifted_rows(deckies: &[Decky]) -> Snapshot {
    snapshot(
        deckies
            .iter()
            .map(|d| {
                let config = d
                    .config_json
                    .replace(',', ", ")
                    .replace("\"nmap_os\":\"linux\"", "\"nmap_os\":\"windows\"");
                let services = d.services_json.replace(',', ", ");
                row(d, services, config, format!("{}0", d.ip), "failed")
            })
            .collect(),
    )
}

/// `decky`'s row in this host, holding these values.
fn row(decky: &Decky, services: String, config: String, ip: String, state: &str) -> FleetRow {
    FleetRow {
        host_uuid: HOST.to_owned(),
        name: decky.name.clone(),
        services,
        decky_config: Some(config),
        decky_ip: Some(ip),
        state: state.to_owned(),
        stored_key: None,
        updated_at: None,
    }
}

/// The plan, which must be possible.
fn plan_of(deckies: &[Decky], rows: &Snapshot, docker: &DockerView) -> plan::Plan {
    plan::plan(deckies, rows, docker, HOST).expect("a plan")
}

fn bench_planner(c: &mut Criterion) {
    let mut group = c.benchmark_group("planner");
    for (count, services) in SIZES {
        let deckies = deckies(count, services);
        let docker = all_running(&deckies);
        let size = format!("{count}x{services}");

        let rows = converged_rows(&deckies);
        assert!(plan_of(&deckies, &rows, &docker).is_empty());
        group.bench_with_input(BenchmarkId::new("converged", &size), &rows, |b, rows| {
            b.iter(|| plan_of(black_box(&deckies), black_box(rows), &docker))
        });

        let rows = drifted_rows(&deckies);
        assert_eq!(plan_of(&deckies, &rows, &docker).changes.len(), count);
        group.bench_with_input(BenchmarkId::new("drift", &size), &rows, |b, rows| {
            b.iter(|| plan_of(black_box(&deckies), black_box(rows), &docker))
        });
    }
    group.finish();
}

fn bench_state_file(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_file");
    let text = state_file(1_000, 4);
    group.bench_with_input(BenchmarkId::new("parse", "1000x4"), &text, |b, text| {
        b.iter(|| state_file::parse(black_box(text.as_bytes())))
    });
    group.finish();
}

fn config() -> Criterion {
    // The largest input runs for tens of milliseconds an iteration: fewer, longer samples.
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = pure;
    config = config();
    targets = bench_planner, bench_state_file
}
criterion_main!(pure);
