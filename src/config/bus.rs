//! Which bus a pass announces on (README, "Choosing the bus"): this tool's own
//! options, then its own variables, then DECNET's bus as DECNET's workers
//! choose it (`decnet/bus/factory.py`: DECNET's bus variables from the
//! environment or DECNET's ini, else its default socket).

use anyhow::{Context, Result};

use super::decnet_bus::{self, DecnetBus, SocketChoice};
use super::sources::Sources;
use super::{Origin, Setting};
use crate::bus::Bus;

/// `--no-publish`, `--bus` and `--redis-url` as clap settled them, each with
/// where it came from (`None`: neither typed nor in the environment).
#[derive(Debug, Clone)]
pub struct BusOptions {
    pub no_publish: bool,
    pub bus: Option<Setting<String>>,
    pub redis_url: Option<Setting<String>>,
}

/// Chooses the bus; `None` publishes nothing.
pub fn choose(options: BusOptions, sources: &Sources) -> Result<Setting<Option<Bus>>> {
    let BusOptions {
        no_publish,
        bus,
        redis_url,
    } = options;
    let typed = |setting: &Option<Setting<String>>| {
        setting
            .as_ref()
            .is_some_and(|s| matches!(s.origin, Origin::CommandLine(_)))
    };
    let (bus_typed, redis_typed) = (typed(&bus), typed(&redis_url));
    // A typed value counts even when empty (and is then refused); clap drops an
    // empty variable, which is what a blank line in an environment file means.
    let url = |setting: Setting<String>| -> Result<Setting<Option<Bus>>> {
        let bus = Bus::from_url(&setting.value).context(setting.origin.place_or("--bus"))?;
        Ok(Setting {
            value: Some(bus),
            origin: setting.origin,
        })
    };
    let redis = |setting: Setting<String>| Setting {
        value: Some(Bus::Redis(setting.value)),
        origin: setting.origin,
    };
    if no_publish {
        return Ok(Setting {
            value: None,
            origin: Origin::CommandLine("--no-publish".to_owned()),
        });
    }
    match (bus, redis_url) {
        (Some(bus), _) if bus_typed => url(bus),
        (_, Some(redis_url)) if redis_typed => Ok(redis(redis_url)),
        (Some(bus), _) => url(bus),
        (_, Some(redis_url)) => Ok(redis(redis_url)),
        (None, None) => decnets_bus(sources),
    }
}

/// DECNET's own bus, as `get_bus()` chooses it for every DECNET worker.
fn decnets_bus(sources: &Sources) -> Result<Setting<Option<Bus>>> {
    let enabled = sources.decnet_var("DECNET_BUS_ENABLED")?;
    let kind = sources.decnet_var("DECNET_BUS_TYPE")?;
    let socket = sources.decnet_var("DECNET_BUS_SOCKET")?;
    let value = |setting: &Option<Setting<String>>| setting.as_ref().map(|s| s.value.clone());
    let chosen = decnet_bus::choose(
        |name| match name {
            "DECNET_BUS_ENABLED" => value(&enabled),
            "DECNET_BUS_TYPE" => value(&kind),
            "DECNET_BUS_SOCKET" => value(&socket),
            _ => None,
        },
        sources.host(),
    );
    let origin_of = |setting: Option<Setting<String>>| setting.map(|s| s.origin);
    match chosen {
        // The variable names itself; a value of the ini is named by its line.
        Err(unknown) => match origin_of(kind) {
            Some(origin @ Origin::DecnetIni(_)) => {
                Err(anyhow::Error::new(unknown).context(origin.place_or("")))
            }
            _ => Err(unknown.into()),
        },
        Ok(DecnetBus::Disabled) => Ok(Setting {
            value: None,
            origin: origin_of(enabled).unwrap_or(Origin::Default),
        }),
        Ok(DecnetBus::InProcess) => Ok(Setting {
            value: None,
            origin: origin_of(kind).unwrap_or(Origin::Default),
        }),
        Ok(DecnetBus::Unix {
            socket: path,
            choice,
        }) => {
            let origin = match choice {
                SocketChoice::Variable => origin_of(socket).unwrap_or(Origin::Default),
                SocketChoice::RuntimeDir => Origin::Discovered(format!(
                    "{} is a directory this user may write, as DECNET's bus factory asks",
                    decnet_bus::RUNTIME_DIR
                )),
                SocketChoice::Home => Origin::Default,
            };
            let bus =
                Bus::decnet_socket(path).with_context(|| origin.place_or("DECNET_BUS_SOCKET"))?;
            Ok(Setting {
                value: Some(bus),
                origin,
            })
        }
    }
}

/// One test per line of the README's table (*Choosing the bus*); the lines
/// DECNET's variables decide are each tested from the environment and from
/// DECNET's ini. `tests/it/decnet_host.rs` runs them through the binary.
#[cfg(test)]
mod tests {
    use super::super::sources::testing::TestHost;
    use super::*;
    use std::path::PathBuf;

    const TYPED_BUS: Option<(&str, &str)> = Some(("unix:///typed.sock", "--bus"));
    const TYPED_REDIS: Option<(&str, &str)> = Some(("redis://typed:1/0", "--redis-url"));
    const ENV_BUS: Option<(&str, &str)> = Some(("unix:///env.sock", "DECNET_BUS_URL"));
    const ENV_REDIS: Option<(&str, &str)> = Some(("redis://env:1/0", "DECNET_REDIS_URL"));

    /// DECNET's bus variables, all set in the environment, so that each line
    /// above them shows it outranks them.
    const DECNET_VARS: [(&str, &str); 3] = [
        ("DECNET_BUS_ENABLED", "true"),
        ("DECNET_BUS_TYPE", "unix"),
        ("DECNET_BUS_SOCKET", "/run/other/bus.sock"),
    ];
    /// The same in DECNET's ini.
    const DECNET_INI: &str = "[bus]\nenabled = true\ntype = unix\nsocket = /ini/bus.sock\n";

    /// `(value, option or variable)`: typed when the second starts with `--`.
    fn given(value: Option<(&str, &str)>) -> Option<Setting<String>> {
        value.map(|(value, place)| Setting {
            value: value.to_owned(),
            origin: match place.starts_with("--") {
                true => Origin::CommandLine(place.to_owned()),
                false => Origin::Environment(place.to_owned()),
            },
        })
    }

    fn bus_on(
        host: &TestHost,
        no_publish: bool,
        bus: Option<(&str, &str)>,
        redis: Option<(&str, &str)>,
    ) -> Result<Setting<Option<Bus>>> {
        let options = BusOptions {
            no_publish,
            bus: given(bus),
            redis_url: given(redis),
        };
        choose(options, &host.sources())
    }

    fn bus_of(
        bus: Option<(&str, &str)>,
        redis: Option<(&str, &str)>,
        vars: &[(&str, &str)],
        ini: Option<&str>,
    ) -> Setting<Option<Bus>> {
        bus_on(&TestHost::new(vars, ini), false, bus, redis).expect("a bus")
    }

    fn redis(url: &str) -> Option<Bus> {
        Some(Bus::Redis(url.to_owned()))
    }

    fn unix(path: impl Into<PathBuf>) -> Option<Bus> {
        Some(Bus::DecnetUnix(path.into()))
    }

    fn env(name: &str) -> Origin {
        Origin::Environment(name.to_owned())
    }

    /// The origin of a value the test ini holds: its `[bus]` key.
    fn ini_key(origin: &Origin) -> String {
        match origin {
            Origin::DecnetIni(at) => format!("[{}] {} line {}", at.section, at.key, at.line),
            other => panic!("not the ini: {other:?}"),
        }
    }

    #[test]
    fn bus_line_1_no_publish_outranks_everything() {
        let host = TestHost::new(&DECNET_VARS, Some(DECNET_INI));
        let bus = bus_on(&host, true, TYPED_BUS, TYPED_REDIS).expect("ok");
        assert_eq!(bus.value, None);
        assert_eq!(bus.origin, Origin::CommandLine("--no-publish".to_owned()));
    }

    #[test]
    fn bus_line_2_a_typed_bus_outranks_a_typed_redis_url() {
        let bus = bus_of(TYPED_BUS, TYPED_REDIS, &DECNET_VARS, Some(DECNET_INI));
        assert_eq!(bus.value, unix("/typed.sock"));
        assert_eq!(bus.origin, Origin::CommandLine("--bus".to_owned()));
    }

    #[test]
    fn bus_line_3_a_typed_redis_url_outranks_decnet_bus_url() {
        let bus = bus_of(ENV_BUS, TYPED_REDIS, &DECNET_VARS, Some(DECNET_INI));
        assert_eq!(bus.value, redis("redis://typed:1/0"));
    }

    #[test]
    fn bus_line_4_decnet_bus_url_outranks_decnet_redis_url() {
        let bus = bus_of(ENV_BUS, ENV_REDIS, &DECNET_VARS, Some(DECNET_INI));
        assert_eq!(bus.value, unix("/env.sock"));
        assert_eq!(bus.origin, env("DECNET_BUS_URL"));
    }

    #[test]
    fn bus_line_5_decnet_redis_url_outranks_decnets_bus_variables() {
        let bus = bus_of(None, ENV_REDIS, &DECNET_VARS, Some(DECNET_INI));
        assert_eq!(bus.value, redis("redis://env:1/0"));
        assert_eq!(bus.origin, env("DECNET_REDIS_URL"));
    }

    #[test]
    fn bus_line_6_decnet_bus_enabled_false_publishes_nothing() {
        let vars = [
            ("DECNET_BUS_ENABLED", "False"),
            ("DECNET_BUS_TYPE", "nonsense"),
            ("DECNET_BUS_SOCKET", "/b.sock"),
        ];
        let bus = bus_of(None, None, &vars, None);
        assert_eq!((bus.value, bus.origin), (None, env("DECNET_BUS_ENABLED")));
        let bus = bus_of(None, None, &[], Some("[bus]\nenabled = false\n"));
        assert_eq!(bus.value, None);
        assert_eq!(ini_key(&bus.origin), "[bus] enabled line 2");
        // As in DECNET's factory, only `false` turns the bus off; and the
        // environment, even set to something else, hides the ini's value.
        let host = TestHost::new(
            &[("DECNET_BUS_ENABLED", "0")],
            Some("[bus]\nenabled = false\n"),
        );
        let bus = bus_on(&host, false, None, None).expect("ok");
        assert_eq!(bus.value, unix(host.home().join(".decnet/bus.sock")));
    }

    #[test]
    fn bus_line_7_decnet_bus_type_fake_publishes_nothing() {
        let vars = [
            ("DECNET_BUS_TYPE", "Fake"),
            ("DECNET_BUS_SOCKET", "/b.sock"),
        ];
        let bus = bus_of(None, None, &vars, None);
        assert_eq!((bus.value, bus.origin), (None, env("DECNET_BUS_TYPE")));
        let bus = bus_of(None, None, &[], Some("[bus]\ntype = fake   ; in-process\n"));
        assert_eq!(bus.value, None);
        assert_eq!(ini_key(&bus.origin), "[bus] type line 2");
    }

    #[test]
    fn bus_line_8_another_decnet_bus_type_is_refused_naming_where_it_came_from() {
        let host = TestHost::new(&[("DECNET_BUS_TYPE", "nats")], None);
        let err = bus_on(&host, false, None, None).expect_err("refused");
        assert_eq!(
            format!("{err:#}"),
            "DECNET_BUS_TYPE \"nats\" is not one of unix, fake (DECNET's workers refuse it too)"
        );
        let host = TestHost::new(&[], Some("[bus]\ntype = redis\n"));
        let err = bus_on(&host, false, None, None).expect_err("refused");
        assert_eq!(
            format!("{err:#}"),
            format!(
                "{}:2 [bus] type: DECNET_BUS_TYPE \"redis\" is not one of unix, fake (DECNET's workers refuse it too)",
                host.ini_path().display()
            )
        );
    }

    #[test]
    fn bus_line_9_decnet_bus_socket_is_decnets_bus_there() {
        let bus = bus_of(
            None,
            None,
            &[("DECNET_BUS_SOCKET", "/srv/b.sock")],
            Some(DECNET_INI),
        );
        assert_eq!(
            (bus.value, bus.origin),
            (unix("/srv/b.sock"), env("DECNET_BUS_SOCKET"))
        );
        let bus = bus_of(None, None, &[("DECNET_BUS_TYPE", "UNIX")], Some(DECNET_INI));
        assert_eq!(bus.value, unix("/ini/bus.sock"));
        assert_eq!(ini_key(&bus.origin), "[bus] socket line 4");
    }

    #[test]
    fn bus_line_10_a_writable_run_decnet_is_decnets_default_socket() {
        let mut host = TestHost::new(&[], None);
        host.runtime_dir_writable = true;
        let bus = bus_on(&host, false, None, None).expect("ok");
        assert_eq!(bus.value, unix("/run/decnet/bus.sock"));
        assert_eq!(bus.origin.kind(), "discovered");
    }

    #[test]
    fn bus_line_11_otherwise_the_socket_in_the_home_directory() {
        let host = TestHost::new(&[], None);
        let bus = bus_on(&host, false, None, None).expect("ok");
        assert_eq!(bus.value, unix(host.home().join(".decnet/bus.sock")));
        assert_eq!(bus.origin, Origin::Default);
        // An empty variable counts as unset, and hides the ini's value, as in DECNET.
        let vars = [
            ("DECNET_BUS_TYPE", ""),
            ("DECNET_BUS_SOCKET", ""),
            ("DECNET_BUS_ENABLED", ""),
        ];
        let host = TestHost::new(&vars, Some(DECNET_INI));
        let bus = bus_on(&host, false, None, None).expect("ok");
        assert_eq!(bus.value, unix(host.home().join(".decnet/bus.sock")));
    }

    #[test]
    fn a_bad_bus_names_where_it_came_from() {
        let host = TestHost::new(&[], None);
        let bad = |bus| {
            format!(
                "{:#}",
                bus_on(&host, false, bus, None).expect_err("refused")
            )
        };
        assert!(bad(Some(("nats://x", "--bus"))).starts_with("--bus: "));
        assert!(bad(Some(("", "--bus"))).starts_with("--bus: "));
        assert!(bad(Some(("unix:rel", "DECNET_BUS_URL"))).starts_with("DECNET_BUS_URL: "));
        let long_socket = "/".repeat(200);
        let host = TestHost::new(&[("DECNET_BUS_SOCKET", long_socket.as_str())], None);
        let err = bus_on(&host, false, None, None).expect_err("refused");
        assert!(
            format!("{err:#}").starts_with("DECNET_BUS_SOCKET: "),
            "{err:#}"
        );
        let host = TestHost::new(&[], Some(&format!("[bus]\nsocket = {long_socket}\n")));
        let err = bus_on(&host, false, None, None).expect_err("refused");
        assert!(
            format!("{err:#}")
                .starts_with(&format!("{}:2 [bus] socket: ", host.ini_path().display())),
            "{err:#}"
        );
    }
}
