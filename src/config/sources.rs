//! What a setting falls back to when the command line (and the variable clap
//! reads for it) leaves it unset, in DECNET's own order: the process
//! environment, then DECNET's ini, then what this host shows (DECNET's root
//! under its install dir, the directory DECNET's bus chooses its socket by),
//! then DECNET's defaults. The ini is read, and the root looked for, once and
//! only when a setting reaches them: a run that names every file itself never
//! depends on either.

use std::cell::OnceCell;
use std::path::PathBuf;

use anyhow::{anyhow, Result};

use super::decnet_bus::HostFacts;
use super::decnet_ini::{self, DecnetIni, IniError, IniValue};
use super::decnet_root::{self, DecnetRoot, InstallDirOrigin, NotFound};
use super::{Environment, Origin, Setting};

/// The run's fallbacks below the command line.
pub struct Sources<'e> {
    env: &'e Environment,
    /// DECNET's ini: `DECNET_CONFIG`, else `/etc/decnet/decnet.ini`.
    pub ini_file: Setting<PathBuf>,
    ini: OnceCell<Result<Option<DecnetIni>, IniError>>,
    /// DECNET's install dir: `--decnet-dir`, `DECNET_INSTALL_DIR`, else `/opt/decnet`.
    pub install_dir: Setting<PathBuf>,
    root: OnceCell<Result<DecnetRoot, NotFound>>,
    host: OnceCell<HostFacts>,
}

impl<'e> Sources<'e> {
    /// `decnet_dir` is `--decnet-dir` as clap settled it (typed, or from `DECNET_INSTALL_DIR`).
    pub fn new(env: &'e Environment, decnet_dir: Option<Setting<PathBuf>>) -> Self {
        let (option, variable) = match &decnet_dir {
            Some(Setting {
                value,
                origin: Origin::CommandLine(_),
            }) => (Some(value.as_path()), None),
            Some(Setting { value, .. }) => (None, Some(value.as_os_str())),
            None => (None, None),
        };
        let (dir, from) = decnet_root::install_dir(option, variable);
        let install_dir = Setting {
            value: dir,
            origin: match from {
                InstallDirOrigin::Option => Origin::CommandLine("--decnet-dir".to_owned()),
                InstallDirOrigin::Environment => Origin::Environment("DECNET_INSTALL_DIR".into()),
                InstallDirOrigin::Default => Origin::Default,
            },
        };
        let config = env.raw("DECNET_CONFIG");
        let ini_file = Setting {
            value: decnet_ini::path_from_env(config),
            origin: match config {
                Some(path) if !path.is_empty() => Origin::Environment("DECNET_CONFIG".into()),
                _ => Origin::Default,
            },
        };
        Sources {
            env,
            ini_file,
            ini: OnceCell::new(),
            install_dir,
            root: OnceCell::new(),
            host: OnceCell::new(),
        }
    }

    /// Sources whose host facts are given rather than looked up: for tests.
    #[cfg(test)]
    pub fn with_host(mut self, host: HostFacts) -> Self {
        self.host = OnceCell::from(host);
        self
    }

    /// DECNET's ini as DECNET reads it (`None` when there is no file), read now
    /// if no setting has needed it yet.
    pub fn ini(&self) -> Result<Option<&DecnetIni>> {
        let loaded = self.ini.get_or_init(|| {
            let mode = self.env.raw("DECNET_MODE").and_then(|mode| mode.to_str());
            decnet_ini::load(&self.ini_file.value, mode)
        });
        match loaded {
            Ok(ini) => Ok(ini.as_ref()),
            Err(err) => Err(anyhow!("{err}")),
        }
    }

    /// Why DECNET's ini cannot be used, reading it now if nothing has yet.
    pub fn into_ini_problem(self) -> Option<IniError> {
        let _ = self.ini();
        self.ini.into_inner().and_then(Result::err)
    }

    /// The value the ini gives DECNET's variable `name`, unless the
    /// environment has that variable at all: as in DECNET (`setdefault`), a
    /// variable of the environment, even an empty one, hides the ini's.
    pub fn ini_value(&self, name: &str) -> Result<Option<&IniValue>> {
        if self.env.raw(name).is_some() {
            return Ok(None);
        }
        Ok(self.ini()?.and_then(|ini| ini.get(name)))
    }

    /// DECNET's variable `name` as DECNET's processes see it: the
    /// environment's, else the ini's. An empty value counts as unset (as
    /// DECNET's own readers take it), and an empty variable still hides the ini's.
    pub fn decnet_var(&self, name: &str) -> Result<Option<Setting<String>>> {
        if self.env.raw(name).is_some() {
            return Ok(self.env.var(name).map(|value| Setting {
                value: value.to_owned(),
                origin: Origin::Environment(name.to_owned()),
            }));
        }
        Ok(self
            .ini_value(name)?
            .filter(|value| !value.value.is_empty())
            .map(|value| Setting {
                value: value.value.clone(),
                origin: Origin::DecnetIni(value.origin.clone()),
            }))
    }

    /// DECNET's root under the install dir, looked for now if no setting has needed it yet.
    pub fn root(&self) -> Result<&DecnetRoot> {
        self.root
            .get_or_init(|| decnet_root::find(&self.install_dir.value))
            .as_ref()
            .map_err(|not_found| anyhow!("{not_found}"))
    }

    /// The root, when a setting looked for it and found it.
    pub fn root_if_found(&self) -> Option<&DecnetRoot> {
        self.root.get().and_then(|root| root.as_ref().ok())
    }

    /// How a file found in DECNET's root came to be chosen, for `doctor`
    /// (which shows the root and how it was found as a setting of its own).
    pub fn discovered_in_root(&self, root: &DecnetRoot) -> Origin {
        Origin::Discovered(format!("in DECNET's root {}", root.root.display()))
    }

    /// What DECNET's bus choice needs to know of this host, looked up once.
    pub fn host(&self) -> &HostFacts {
        self.host
            .get_or_init(|| HostFacts::of_this_process(self.env.raw("HOME")))
    }
}

/// A host for the unit tests of the settings: a temporary directory holding
/// DECNET's ini (when the test gives one, else an absent path, so that the
/// machine's `/etc/decnet/decnet.ini` never leaks in), an optional DECNET
/// install laid out as pip lays it out, and the environment the test states.
#[cfg(test)]
pub mod testing {
    use std::path::{Path, PathBuf};

    use super::*;

    pub struct TestHost {
        pub dir: tempfile::TempDir,
        pub env: Environment,
        /// `/run/decnet` is writable, for DECNET's bus choice.
        pub runtime_dir_writable: bool,
    }

    impl TestHost {
        /// `vars` as the environment, `ini` (if any) as DECNET's ini.
        pub fn new(vars: &[(&str, &str)], ini: Option<&str>) -> TestHost {
            let dir = tempfile::tempdir().expect("temp dir");
            let ini_path = dir.path().join("decnet.ini");
            if let Some(text) = ini {
                std::fs::write(&ini_path, text).expect("write the ini");
            }
            let mut pairs: Vec<(String, String)> =
                vec![("DECNET_CONFIG".to_owned(), ini_path.display().to_string())];
            for (name, value) in vars {
                pairs.retain(|(n, _)| n != name);
                pairs.push(((*name).to_owned(), (*value).to_owned()));
            }
            TestHost {
                dir,
                env: Environment::from_pairs(pairs),
                runtime_dir_writable: false,
            }
        }

        /// DECNET installed under the install dir by `pip install decnet`; its root.
        pub fn with_decnet(self) -> TestHost {
            let venv = self.dir.path().join("opt/decnet/venv");
            for (file, text) in [
                ("pyvenv.cfg", "home = /usr/bin\nversion = 3.11.2\n"),
                ("bin/decnet", "#!/usr/bin/python3\n"),
                ("lib/python3.11/site-packages/decnet/__init__.py", ""),
            ] {
                let path = venv.join(file);
                std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
                std::fs::write(path, text).expect("write");
            }
            self
        }

        pub fn root(&self) -> PathBuf {
            self.dir
                .path()
                .join("opt/decnet/venv/lib/python3.11/site-packages")
        }

        pub fn ini_path(&self) -> PathBuf {
            self.dir.path().join("decnet.ini")
        }

        pub fn home(&self) -> &Path {
            self.dir.path()
        }

        /// The sources of a run on this host, its install dir from `DECNET_INSTALL_DIR`.
        pub fn sources(&self) -> Sources<'_> {
            let install_dir = Setting {
                value: self.dir.path().join("opt/decnet"),
                origin: Origin::Environment("DECNET_INSTALL_DIR".to_owned()),
            };
            Sources::new(&self.env, Some(install_dir)).with_host(HostFacts {
                runtime_dir_writable: self.runtime_dir_writable,
                home: Some(self.home().to_owned()),
            })
        }
    }
}
