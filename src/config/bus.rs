//! Which bus a pass announces on (README, "Choosing the bus"): this tool's own
//! options and variables, then DECNET's bus variables, then the default.

use anyhow::{bail, Context, Result};

use super::{Environment, Origin, Setting};
use crate::bus::{self, Bus};
use crate::config::cli::DEFAULT_REDIS_URL;

/// `--bus` and `--redis-url` as clap settled them, each with where it came from.
#[derive(Debug, Clone)]
pub struct BusOptions {
    pub no_publish: bool,
    pub bus: Setting<Option<String>>,
    pub redis_url: Setting<String>,
}

/// Chooses the bus: this tool's own options, typed then from the environment,
/// outrank DECNET's bus variables, which outrank the default Redis.
pub fn choose(options: BusOptions, env: &Environment) -> Result<Option<Bus>> {
    let BusOptions {
        no_publish,
        bus,
        redis_url,
    } = options;
    // A typed value counts even when empty (and is then refused); an empty
    // variable counts as unset, which is what a blank line in an environment file means.
    let typed = |origin: Origin| origin == Origin::CommandLine;
    let from_env = |origin: Origin, value: &str| origin == Origin::Environment && !value.is_empty();
    match bus.value {
        _ if no_publish => Ok(None),
        Some(url) if typed(bus.origin) => Bus::from_url(&url).map(Some).context("--bus"),
        _ if typed(redis_url.origin) => Ok(Some(Bus::Redis(redis_url.value))),
        Some(url) if from_env(bus.origin, &url) => {
            Bus::from_url(&url).map(Some).context("DECNET_BUS_URL")
        }
        _ if from_env(redis_url.origin, &redis_url.value) => Ok(Some(Bus::Redis(redis_url.value))),
        _ => decnet_bus_variables(env),
    }
}

/// DECNET's own bus variables, read as `decnet/bus/factory.py` reads them;
/// with none of them set, the default Redis.
fn decnet_bus_variables(env: &Environment) -> Result<Option<Bus>> {
    let env = |name: &str| env.var(name).map(str::to_owned);
    if env("DECNET_BUS_ENABLED").is_some_and(|enabled| enabled.eq_ignore_ascii_case("false")) {
        return Ok(None);
    }
    let socket = env("DECNET_BUS_SOCKET");
    let unix = || {
        let path = socket.as_deref().unwrap_or(bus::DECNET_BUS_SOCKET);
        Bus::decnet_socket(path.into())
            .map(Some)
            .context("DECNET_BUS_SOCKET")
    };
    match env("DECNET_BUS_TYPE")
        .map(|kind| kind.to_ascii_lowercase())
        .as_deref()
    {
        Some("unix") => unix(),
        // DECNET's in-process bus: nothing outside a DECNET process can hear it.
        Some("fake") => Ok(None),
        Some(other) => bail!("DECNET_BUS_TYPE {other:?} is not one of unix, fake"),
        None if socket.is_some() => unix(),
        None => Ok(Some(Bus::Redis(DEFAULT_REDIS_URL.to_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    /// The bus a pass would use: `bus` and `redis` as clap would hand them
    /// over (a value and where it came from), `vars` as the environment.
    fn bus_of(
        no_publish: bool,
        bus: Option<(&str, Origin)>,
        redis: Option<(&str, Origin)>,
        vars: &[(&str, &str)],
    ) -> Result<Option<Bus>> {
        let options = BusOptions {
            no_publish,
            bus: Setting {
                value: bus.map(|(url, _)| url.to_owned()),
                origin: bus.map_or(Origin::Default, |(_, origin)| origin),
            },
            redis_url: Setting {
                value: redis.map_or(DEFAULT_REDIS_URL, |(url, _)| url).to_owned(),
                origin: redis.map_or(Origin::Default, |(_, origin)| origin),
            },
        };
        choose(options, &Environment::from_pairs(vars.iter().copied()))
    }

    fn redis(url: &str) -> Option<Bus> {
        Some(Bus::Redis(url.to_owned()))
    }

    fn unix(path: &str) -> Option<Bus> {
        Some(Bus::DecnetUnix(PathBuf::from(path)))
    }

    const TYPED: Origin = Origin::CommandLine;
    const ENV: Origin = Origin::Environment;
    /// DECNET's bus variables all set, so that each line shows it outranks them.
    const DECNET_VARS: [(&str, &str); 3] = [
        ("DECNET_BUS_ENABLED", "true"),
        ("DECNET_BUS_TYPE", "unix"),
        ("DECNET_BUS_SOCKET", "/run/other/bus.sock"),
    ];

    #[test]
    fn bus_line_1_no_publish_outranks_everything() {
        let bus = bus_of(
            true,
            Some(("unix:///b.sock", TYPED)),
            Some(("redis://r:1/0", TYPED)),
            &DECNET_VARS,
        );
        assert_eq!(bus.expect("ok"), None);
    }

    #[test]
    fn bus_line_2_a_typed_bus_outranks_a_typed_redis_url() {
        let bus = bus_of(
            false,
            Some(("unix:///b.sock", TYPED)),
            Some(("redis://r:1/0", TYPED)),
            &DECNET_VARS,
        );
        assert_eq!(bus.expect("ok"), unix("/b.sock"));
    }

    #[test]
    fn bus_line_3_a_typed_redis_url_outranks_decnet_bus_url() {
        let bus = bus_of(
            false,
            Some(("unix:///b.sock", ENV)),
            Some(("redis://r:1/0", TYPED)),
            &DECNET_VARS,
        );
        assert_eq!(bus.expect("ok"), redis("redis://r:1/0"));
    }

    #[test]
    fn bus_line_4_decnet_bus_url_outranks_decnet_redis_url() {
        let bus = bus_of(
            false,
            Some(("unix:///b.sock", ENV)),
            Some(("redis://r:1/0", ENV)),
            &DECNET_VARS,
        );
        assert_eq!(bus.expect("ok"), unix("/b.sock"));
    }

    #[test]
    fn bus_line_5_decnet_redis_url_outranks_decnets_bus_variables() {
        let bus = bus_of(false, None, Some(("redis://r:1/0", ENV)), &DECNET_VARS);
        assert_eq!(bus.expect("ok"), redis("redis://r:1/0"));
    }

    #[test]
    fn bus_line_6_decnet_bus_enabled_false_publishes_nothing() {
        let vars = [
            ("DECNET_BUS_ENABLED", "False"),
            ("DECNET_BUS_TYPE", "unix"),
            ("DECNET_BUS_SOCKET", "/b.sock"),
        ];
        assert_eq!(bus_of(false, None, None, &vars).expect("ok"), None);
        // As in DECNET's factory, only `false` turns the bus off.
        let vars = [("DECNET_BUS_ENABLED", "0")];
        assert_eq!(
            bus_of(false, None, None, &vars).expect("ok"),
            redis(DEFAULT_REDIS_URL)
        );
    }

    #[test]
    fn bus_line_7_decnet_bus_type_unix_is_decnets_socket() {
        let vars = [("DECNET_BUS_TYPE", "UNIX")];
        assert_eq!(
            bus_of(false, None, None, &vars).expect("ok"),
            unix("/run/decnet/bus.sock")
        );
        let vars = [
            ("DECNET_BUS_TYPE", "unix"),
            ("DECNET_BUS_SOCKET", "/srv/b.sock"),
        ];
        assert_eq!(
            bus_of(false, None, None, &vars).expect("ok"),
            unix("/srv/b.sock")
        );
    }

    #[test]
    fn bus_line_8_decnet_bus_socket_alone_is_decnets_socket() {
        let vars = [("DECNET_BUS_SOCKET", "/srv/b.sock")];
        assert_eq!(
            bus_of(false, None, None, &vars).expect("ok"),
            unix("/srv/b.sock")
        );
    }

    #[test]
    fn bus_line_9_decnet_bus_type_fake_publishes_nothing() {
        let vars = [
            ("DECNET_BUS_TYPE", "fake"),
            ("DECNET_BUS_SOCKET", "/b.sock"),
        ];
        assert_eq!(bus_of(false, None, None, &vars).expect("ok"), None);
    }

    #[test]
    fn bus_line_10_another_decnet_bus_type_is_refused() {
        let err = bus_of(false, None, None, &[("DECNET_BUS_TYPE", "nats")]).expect_err("refused");
        assert!(err.to_string().contains("DECNET_BUS_TYPE"), "{err}");
    }

    #[test]
    fn bus_line_11_nothing_set_is_the_default_redis() {
        assert_eq!(
            bus_of(false, None, None, &[]).expect("ok"),
            redis(DEFAULT_REDIS_URL)
        );
        // Empty variables count as unset.
        let vars = [
            ("DECNET_BUS_TYPE", ""),
            ("DECNET_BUS_SOCKET", ""),
            ("DECNET_BUS_ENABLED", ""),
        ];
        let bus = bus_of(false, Some(("", ENV)), Some(("", ENV)), &vars);
        assert_eq!(bus.expect("ok"), redis(DEFAULT_REDIS_URL));
    }

    #[test]
    fn a_bad_bus_names_where_it_came_from() {
        let typed = bus_of(false, Some(("nats://x", TYPED)), None, &[]).expect_err("refused");
        assert!(format!("{typed:#}").starts_with("--bus: "), "{typed:#}");
        let typed_empty = bus_of(false, Some(("", TYPED)), None, &[]).expect_err("refused");
        assert!(format!("{typed_empty:#}").starts_with("--bus: "));
        let from_env = bus_of(false, Some(("unix:rel", ENV)), None, &[]).expect_err("refused");
        assert!(
            format!("{from_env:#}").starts_with("DECNET_BUS_URL: "),
            "{from_env:#}"
        );
        let long_socket = "/".repeat(200);
        let socket = [("DECNET_BUS_SOCKET", long_socket.as_str())];
        let from_decnet = bus_of(false, None, None, &socket).expect_err("refused");
        assert!(format!("{from_decnet:#}").starts_with("DECNET_BUS_SOCKET: "));
    }
}
