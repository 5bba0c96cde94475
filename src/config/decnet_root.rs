//! DECNET's root, found from DECNET's install dir without running Python.
//!
//! DECNET keeps its state file and SQLite DB in `_ROOT`, the parent of the
//! `decnet` package directory its services import (`decnet/config.py`:
//! `_ROOT = Path(__file__).parent.parent.absolute()`). Its services run
//! `<venv>/bin/decnet`, where `<venv>` is the first of `<install-dir>/venv`,
//! `.venv`, `.311`, `.312`, `.313` holding `bin/decnet` (`decnet init`'s
//! `_resolve_venv_dir`, which renders the units). From that venv, Python
//! imports `decnet` from, in this order:
//! 1. `lib/python3.X/site-packages/decnet/` itself: a regular `pip install`
//!    (DECNET's updater); the root is that `site-packages`;
//! 2. a directory named by a line of a `.pth` file in `site-packages` (files
//!    in name order): setuptools' "compat" editable installs and
//!    `setup.py develop`; the root is that directory;
//! 3. the `MAPPING` of a `__editable___*_finder.py` (PEP 660 editable
//!    installs by setuptools ≥ 64, what `pip install -e <checkout>` writes,
//!    the finder being appended to `sys.meta_path`); the root is the parent
//!    of the mapped package directory, i.e. the checkout.
//!
//! `3.X` is the venv's Python, read from its `pyvenv.cfg`.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// DECNET's install dir when neither `--decnet-dir` nor `DECNET_INSTALL_DIR` names one
/// (`decnet init --install-dir`'s default, `updater/executor.py`'s `DEFAULT_INSTALL_DIR`).
pub const DEFAULT_INSTALL_DIR: &str = "/opt/decnet";

/// `decnet/config.py`'s `STATE_FILE` name, in the root.
pub const STATE_FILE_NAME: &str = "decnet-state.json";

/// The SQLite repository's default `db_path` name, in the root.
pub const SQLITE_DB_NAME: &str = "decnet.db";

/// The venvs `decnet init` looks for under the install dir, in its order.
const VENV_NAMES: [&str; 5] = ["venv", ".venv", ".311", ".312", ".313"];

/// Where the install dir came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallDirOrigin {
    Option,
    Environment,
    Default,
}

/// DECNET's install dir: `--decnet-dir`, else `DECNET_INSTALL_DIR` (when not
/// empty), else [`DEFAULT_INSTALL_DIR`]. Relative paths are made absolute
/// from the working directory, without resolving symbolic links (as
/// `Path.absolute()` does for `_ROOT`).
pub fn install_dir(
    option: Option<&Path>,
    environment: Option<&OsStr>,
) -> (PathBuf, InstallDirOrigin) {
    let (dir, origin) = match (option, environment) {
        (Some(dir), _) => (dir.to_owned(), InstallDirOrigin::Option),
        (None, Some(dir)) if !dir.is_empty() => (PathBuf::from(dir), InstallDirOrigin::Environment),
        _ => (
            PathBuf::from(DEFAULT_INSTALL_DIR),
            InstallDirOrigin::Default,
        ),
    };
    (std::path::absolute(&dir).unwrap_or(dir), origin)
}

/// How the `decnet` package is installed in the venv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallKind {
    /// `site-packages/decnet/`.
    Regular,
    /// An editable install; `evidence` is the `.pth` or finder file that names the package's place.
    Editable { evidence: PathBuf },
}

/// DECNET's root and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecnetRoot {
    pub root: PathBuf,
    /// The venv DECNET's services run.
    pub venv: PathBuf,
    /// Its `site-packages`.
    pub site_packages: PathBuf,
    pub kind: InstallKind,
}

impl DecnetRoot {
    /// `decnet-state.json`, which `decnet deploy` writes.
    pub fn state_file(&self) -> PathBuf {
        self.root.join(STATE_FILE_NAME)
    }

    /// The SQLite DB of DECNET's API and workers.
    pub fn sqlite_db(&self) -> PathBuf {
        self.root.join(SQLITE_DB_NAME)
    }
}

impl fmt::Display for DecnetRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            InstallKind::Regular => write!(
                f,
                "{} (decnet installed in the venv {})",
                self.root.display(),
                self.venv.display()
            ),
            InstallKind::Editable { evidence } => write!(
                f,
                "{} (editable install into the venv {}, per {})",
                self.root.display(),
                self.venv.display(),
                evidence.display()
            ),
        }
    }
}

/// One place looked at, and what was there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Look {
    pub place: PathBuf,
    pub finding: String,
}

/// No DECNET under the install dir.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NotFound {
    pub install_dir: PathBuf,
    pub looked: Vec<Look>,
}

impl fmt::Display for NotFound {
    /// One line, so that the journal keeps it whole: the places looked at, `; `-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "found no DECNET installed under {} (name DECNET's install dir with --decnet-dir or \
             DECNET_INSTALL_DIR, or give the state file and DB themselves); looked at",
            self.install_dir.display()
        )?;
        for (i, look) in self.looked.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{}: {}", look.place.display(), look.finding)?;
        }
        Ok(())
    }
}

/// Finds DECNET's root under `install_dir` (see the module's documentation).
pub fn find(install_dir: &Path) -> Result<DecnetRoot, NotFound> {
    let mut looked = Looked::default();
    if !install_dir.is_dir() {
        looked.add(install_dir.to_owned(), not_a_directory(install_dir));
    } else {
        for name in VENV_NAMES {
            let venv = install_dir.join(name);
            let script = venv.join("bin").join("decnet");
            if !script.is_file() {
                looked.add(script.clone(), not_a_file(&script));
                continue;
            }
            // decnet init renders the units with the first venv that has bin/decnet:
            // DECNET runs that one, so the answer is there or nowhere.
            return in_venv(&venv, &mut looked).ok_or_else(|| NotFound {
                install_dir: install_dir.to_owned(),
                looked: looked.0,
            });
        }
    }
    Err(NotFound {
        install_dir: install_dir.to_owned(),
        looked: looked.0,
    })
}

#[derive(Default)]
struct Looked(Vec<Look>);

impl Looked {
    fn add(&mut self, place: PathBuf, finding: String) {
        self.0.push(Look { place, finding });
    }
}

fn not_a_directory(path: &Path) -> String {
    match fs::metadata(path) {
        Ok(_) => "not a directory".to_owned(),
        Err(err) => unseen(&err),
    }
}

fn not_a_file(path: &Path) -> String {
    match fs::metadata(path) {
        Ok(_) => "not a file".to_owned(),
        Err(err) => unseen(&err),
    }
}

fn unseen(err: &std::io::Error) -> String {
    if err.kind() == std::io::ErrorKind::NotFound {
        "absent".to_owned()
    } else {
        format!("cannot see it ({err})")
    }
}

fn in_venv(venv: &Path, looked: &mut Looked) -> Option<DecnetRoot> {
    let site_packages = site_packages(venv, looked)?;
    let found = |root: PathBuf, kind: InstallKind| DecnetRoot {
        root,
        venv: venv.to_owned(),
        site_packages: site_packages.clone(),
        kind,
    };
    let package = site_packages.join("decnet").join("__init__.py");
    if package.is_file() {
        return Some(found(site_packages.clone(), InstallKind::Regular));
    }
    looked.add(package.clone(), not_a_file(&package));

    let mut entries: Vec<PathBuf> = match fs::read_dir(&site_packages) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect(),
        Err(err) => {
            looked.add(site_packages, format!("cannot list it ({err})"));
            return None;
        }
    };
    // site.py reads .pth files in name order.
    entries.sort();
    for pth in entries
        .iter()
        .filter(|p| p.extension() == Some(OsStr::new("pth")))
    {
        if let Some(dir) = pth_directory_with_decnet(&site_packages, pth) {
            return Some(found(
                dir,
                InstallKind::Editable {
                    evidence: pth.clone(),
                },
            ));
        }
    }
    looked.add(
        site_packages.join("*.pth"),
        "no line names a directory holding decnet/__init__.py".to_owned(),
    );
    let finders = entries.iter().filter(|p| {
        p.file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|name| name.starts_with("__editable__") && name.ends_with("_finder.py"))
    });
    for finder in finders {
        let Some(package_dir) = fs::read_to_string(finder)
            .ok()
            .and_then(|text| finder_mapping(&text, "decnet"))
        else {
            continue;
        };
        let package_dir = PathBuf::from(package_dir);
        if package_dir.join("__init__.py").is_file() {
            let root = package_dir
                .parent()
                .map_or_else(|| package_dir.clone(), Path::to_owned);
            return Some(found(
                root,
                InstallKind::Editable {
                    evidence: finder.clone(),
                },
            ));
        }
        looked.add(
            finder.clone(),
            format!(
                "maps decnet to {}, which holds no __init__.py",
                package_dir.display()
            ),
        );
    }
    looked.add(
        site_packages.join("__editable___*_finder.py"),
        "no editable finder maps decnet".to_owned(),
    );
    None
}

/// `lib/python3.X/site-packages` of the venv's own Python (`version` or
/// `version_info` in `pyvenv.cfg`); without a readable version, the only
/// `python3.*` directory there, or the only one that holds DECNET.
fn site_packages(venv: &Path, looked: &mut Looked) -> Option<PathBuf> {
    let cfg = venv.join("pyvenv.cfg");
    let lib = venv.join("lib");
    match fs::read_to_string(&cfg)
        .ok()
        .and_then(|text| venv_python(&text))
    {
        Some(python) => {
            let dir = lib.join(format!("python{python}")).join("site-packages");
            if dir.is_dir() {
                return Some(dir);
            }
            looked.add(dir.clone(), not_a_directory(&dir));
            None
        }
        None => {
            looked.add(cfg, "no Python version in it".to_owned());
            let mut dirs: Vec<PathBuf> = fs::read_dir(&lib)
                .into_iter()
                .flatten()
                .filter_map(|entry| entry.ok())
                .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3."))
                .map(|entry| entry.path().join("site-packages"))
                .filter(|dir| dir.is_dir())
                .collect();
            dirs.sort();
            if dirs.len() > 1 {
                dirs.retain(|dir| holds_decnet(dir));
            }
            match dirs.as_slice() {
                [one] => Some(one.clone()),
                [] => {
                    looked.add(lib.join("python3.*/site-packages"), "none".to_owned());
                    None
                }
                several => {
                    let names: Vec<String> =
                        several.iter().map(|d| d.display().to_string()).collect();
                    looked.add(
                        lib,
                        format!(
                            "several site-packages hold decnet and pyvenv.cfg does not say which Python the venv runs: {}",
                            names.join(", ")
                        ),
                    );
                    None
                }
            }
        }
    }
}

/// Whether a `site-packages` has decnet by any of the three ways (used only to
/// choose between several Python versions).
fn holds_decnet(site_packages: &Path) -> bool {
    site_packages.join("decnet").join("__init__.py").is_file()
        || fs::read_dir(site_packages)
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.starts_with("decnet-") && name.ends_with(".dist-info")
            })
}

/// `3.11` from a `pyvenv.cfg` line `version = 3.11.7` (stdlib venv) or
/// `version_info = 3.11.7.final.0` (virtualenv).
fn venv_python(cfg: &str) -> Option<String> {
    cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if !matches!(key.trim(), "version" | "version_info") {
            return None;
        }
        let mut parts = value.trim().split('.');
        let major = parts.next().filter(|p| p.parse::<u32>().is_ok())?;
        let minor = parts.next().filter(|p| p.parse::<u32>().is_ok())?;
        Some(format!("{major}.{minor}"))
    })
}

/// A `.pth` line that names a directory (not an `import` line, not a
/// comment; relative to `site-packages`) holding `decnet/__init__.py`.
fn pth_directory_with_decnet(site_packages: &Path, pth: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(pth).ok()?;
    text.lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter(|line| !line.starts_with("import ") && !line.starts_with("import\t"))
        .map(|line| site_packages.join(line))
        .find(|dir| dir.join("decnet").join("__init__.py").is_file())
}

/// The path that the `MAPPING: dict[str, str] = {...}` line of a setuptools
/// editable finder gives `package`: a Python dict literal of string reprs.
fn finder_mapping(text: &str, package: &str) -> Option<String> {
    let line = text.lines().find(|line| line.starts_with("MAPPING"))?;
    let mut rest = &line[line.find('{')? + 1..];
    loop {
        let (key, after_key) = python_string(rest.trim_start())?;
        let after_colon = after_key.trim_start().strip_prefix(':')?;
        let (value, after_value) = python_string(after_colon.trim_start())?;
        if key == package {
            return Some(value);
        }
        rest = after_value.trim_start().strip_prefix(',')?;
    }
}

/// A Python `repr()` of a str at the start of `text`: the value and what follows.
fn python_string(text: &str) -> Option<(String, &str)> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let mut value = String::new();
    let mut chars = text[1..].char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, escaped) = chars.next()?;
                match escaped {
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    'r' => value.push('\r'),
                    '\\' | '\'' | '"' => value.push(escaped),
                    // \x.., \u...: not in a path pip writes; refuse rather than misread.
                    _ => return None,
                }
            }
            c if c == quote => return Some((value, &text[1 + at + 1..])),
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests;
