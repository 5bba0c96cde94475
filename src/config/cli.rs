//! The command line as clap sees it (SPEC §2). Nothing here leaves the
//! `config` module, which turns these raw arguments into a validated `Config`.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{OsStringValueParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// One convergence pass over a DECNET host's state file, its fleet_deckies table
/// and its Docker containers.
#[derive(Debug, Parser)]
#[command(name = "decnet-reconcile", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub pass: PassArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make one convergence pass (the default).
    Once,
    /// Show every setting with where it came from, and check the state file, the
    /// database, Docker, the bus and DECNET's own reconciler; writes nothing. Exit 0
    /// when all is well, 1 otherwise, with one line per problem saying what to do.
    Doctor,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Every option read from the environment hides its value in `--help`: a URL
/// there may carry a password, and a help text is no place for configuration.
#[derive(Debug, Args)]
pub struct PassArgs {
    /// The state file written by `decnet deploy` [default: decnet-state.json in
    /// DECNET's root, found under --decnet-dir].
    #[arg(
        long,
        env = "DECNET_STATE_FILE",
        value_name = "PATH",
        global = true,
        hide_env_values = true
    )]
    pub state_file: Option<PathBuf>,

    /// DECNET's SQLite database, or a mysql:// URL [default: as DECNET chooses it:
    /// DECNET_DB_TYPE and the other DECNET_DB_* variables, DECNET's ini, else
    /// decnet.db in DECNET's root, found under --decnet-dir].
    #[arg(
        long,
        env = "DECNET_DB_PATH",
        value_name = "PATH",
        global = true,
        hide_env_values = true
    )]
    pub db: Option<PathBuf>,

    /// This host's id; rows of other hosts are never touched [default: DECNET's
    /// ini ([agent] host-uuid), else local].
    #[arg(
        long,
        env = "DECNET_HOST_UUID",
        value_name = "ID",
        global = true,
        hide_env_values = true
    )]
    pub host_uuid: Option<String>,

    /// Docker Engine API endpoint.
    #[arg(
        long,
        env = "DOCKER_HOST",
        value_name = "URL",
        default_value = "unix:///var/run/docker.sock",
        global = true,
        hide_env_values = true
    )]
    pub docker_host: String,

    /// Redis URL of the event bus, used only when given (see --bus for the order of precedence).
    #[arg(
        long,
        env = "DECNET_REDIS_URL",
        value_name = "URL",
        global = true,
        hide_env_values = true
    )]
    pub redis_url: Option<String>,

    /// The event bus: redis://… or DECNET's own bus, unix:///run/decnet/bus.sock.
    /// Outranks --redis-url; without either, DECNET's bus as DECNET's workers
    /// choose it: DECNET_BUS_ENABLED, DECNET_BUS_TYPE and DECNET_BUS_SOCKET from
    /// the environment or DECNET's ini, else DECNET's default socket.
    #[arg(
        long,
        env = "DECNET_BUS_URL",
        value_name = "URL",
        global = true,
        hide_env_values = true
    )]
    pub bus: Option<String>,

    /// Publish a heartbeat on system.reconciler.health after every pass (not dry runs).
    #[arg(
        long,
        env = "DECNET_RECONCILE_HEARTBEAT",
        value_parser = parse_switch,
        global = true,
        hide_env_values = true
    )]
    pub heartbeat: bool,

    /// Do not publish events.
    #[arg(long, global = true)]
    pub no_publish: bool,

    /// Compute and print the plan; change nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// Format of standard output.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, value_name = "FORMAT", global = true)]
    pub output: OutputFormat,

    /// Exit 2 when the pass changed (or, dry, would change) anything.
    #[arg(long, global = true)]
    pub detailed_exitcode: bool,

    /// Longest wait for Docker before its state counts as unknown.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_seconds, global = true)]
    pub docker_timeout: Duration,

    /// Longest wait for the event bus before events count as lost.
    #[arg(
        long,
        visible_alias = "redis-timeout",
        value_name = "SECS",
        default_value = "2",
        value_parser = parse_seconds,
        global = true
    )]
    pub bus_timeout: Duration,

    /// Longest wait for another writer's lock on the database.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_seconds, global = true)]
    pub db_busy_timeout: Duration,

    /// Quieter: nothing at all on a converged pass; warnings and errors still show.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More verbose logs on stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Prometheus metrics of every pass that is not dry, written to this file
    /// for node_exporter's textfile collector; empty: none.
    #[arg(
        long,
        env = "DECNET_RECONCILE_METRICS_FILE",
        value_name = "PATH",
        // Any path, the empty one too (no metrics), as the variable may be.
        value_parser = OsStringValueParser::new().map(PathBuf::from),
        global = true,
        hide_env_values = true
    )]
    pub metrics_file: Option<PathBuf>,

    /// DECNET's install dir, under which DECNET's root (its state file and SQLite
    /// database) is found as DECNET finds it [default: /opt/decnet].
    #[arg(
        long,
        env = "DECNET_INSTALL_DIR",
        value_name = "PATH",
        global = true,
        hide_env_values = true
    )]
    pub decnet_dir: Option<PathBuf>,

    /// Create the database and its fleet_deckies table when absent. Only for a
    /// database DECNET never manages: DECNET creates its own schema with its
    /// migrations on its first start, and cannot start on a table made by anyone else.
    #[arg(
        long,
        env = "DECNET_RECONCILE_CREATE_TABLE",
        value_parser = parse_switch,
        global = true,
        hide_env_values = true
    )]
    pub create_table: bool,

    /// The CA certificate (PEM) that signs a rediss:// bus's certificate; without it,
    /// the system's CAs. (MySQL's TLS is set in its URL: ssl-mode, ssl-ca, …)
    #[arg(
        long,
        env = "DECNET_REDIS_CA",
        value_name = "PATH",
        global = true,
        hide_env_values = true
    )]
    pub redis_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Seconds, fractions allowed (`0.5`), from a millisecond to a day: a bound
/// below a millisecond (`1e-300`) is no bound anyone meant, and would time
/// every request out before it was sent.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.001..=86_400.0).contains(&secs) {
        return Err(format!(
            "{text} must be at least 0.001 and at most 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// An on/off setting from the environment: `1`, `true`, `yes`, `on` or, off,
/// `0`, `false`, `no`, `off` and the empty value a blank line in an environment
/// file leaves.
fn parse_switch(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "{text:?} is not one of 1, true, yes, on, 0, false, no, off"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_never_shows_an_environment_value() {
        for arg in Cli::command().get_arguments() {
            if arg.get_env().is_some() {
                assert!(arg.is_hide_env_values_set(), "--{:?}", arg.get_long());
            }
        }
    }

    #[test]
    fn global_options_work_after_once() {
        let cli =
            Cli::try_parse_from(["decnet-reconcile", "once", "--dry-run", "--host-uuid", "h1"])
                .expect("parses");
        assert!(cli.pass.dry_run);
        assert_eq!(cli.pass.host_uuid.as_deref(), Some("h1"));
        assert!(matches!(cli.command, Some(Command::Once)));
    }

    #[test]
    fn the_old_redis_timeout_name_still_sets_the_bus_timeout() {
        let cli = Cli::try_parse_from(["decnet-reconcile", "once", "--redis-timeout", "0.5"])
            .expect("parses");
        assert_eq!(cli.pass.bus_timeout, Duration::from_millis(500));
    }

    #[test]
    fn switches_take_the_usual_spellings() {
        for on in ["1", "true", "YES", "on"] {
            assert_eq!(parse_switch(on), Ok(true), "{on}");
        }
        for off in ["", "0", "false", "No", "off"] {
            assert_eq!(parse_switch(off), Ok(false), "{off}");
        }
        assert_eq!(
            parse_switch("2"),
            Err("\"2\" is not one of 1, true, yes, on, 0, false, no, off".to_owned())
        );
        let cli = Cli::try_parse_from(["decnet-reconcile", "--heartbeat"]).expect("parses");
        assert!(cli.pass.heartbeat);
    }

    #[test]
    fn seconds_must_be_positive_numbers() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("0.001"), Ok(Duration::from_millis(1)));
        for bad in [
            "0", "-1", "abc", "NaN", "inf", "1e-300", "0.0009", "86400.5",
        ] {
            let err = parse_seconds(bad).expect_err(bad);
            assert!(
                err.ends_with("is not a number of seconds")
                    || err.ends_with("must be at least 0.001 and at most 86400 seconds"),
                "{bad}: {err}"
            );
        }
    }
}
