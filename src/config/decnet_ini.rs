//! DECNET's host configuration file (`/etc/decnet/decnet.ini`, or `$DECNET_CONFIG`),
//! read as DECNET 1.0.0 reads it (`decnet/config_ini.py`, run at `import decnet`):
//! which file, which sections and keys become which `DECNET_*` variables, and
//! where each value came from.
//!
//! DECNET parses the file with Python's `configparser.ConfigParser(inline_comment_prefixes=("#", ";"))`.
//! No Rust crate reproduces that parser, so two readers look at every file:
//! - the `configparser` crate (case kept, `#`/`;` comments, indented
//!   continuation lines on) parses the values;
//! - [`python_read`], a port of the line rules of Python 3.11's
//!   `RawConfigParser._read`, rejects exactly what DECNET's parser rejects (a
//!   key before any section, a line without `=`/`:`, a repeated section or key),
//!   gives each key its line number, and says what value Python reads.
//!
//! A value the two read differently is refused with its line, so this module
//! never hands on a value that DECNET itself would not use. Then DECNET's
//! mapping is applied: `[decnet]` (every key), the role section of
//! `DECNET_MODE` (`[master]` or `[agent]`, every key), then the domain sections
//! with their fixed key maps; the first occurrence of a variable wins
//! (`os.environ.setdefault`), and values pass through configparser's
//! `BasicInterpolation` (`%%`, `%(key)s`).
//!
//! The only I/O is reading the one file; the environment comes in as arguments.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The file DECNET reads when `DECNET_CONFIG` is unset or empty (`config_ini.py`, `DEFAULT_CONFIG_PATH`).
pub const DEFAULT_PATH: &str = "/etc/decnet/decnet.ini";

/// configparser's name for the section whose keys every other section inherits.
const DEFAULT_SECTION: &str = "DEFAULT";

/// `configparser`'s `MAX_INTERPOLATION_DEPTH`.
const MAX_INTERPOLATION_DEPTH: usize = 10;

/// `config_ini.py`'s `_DOMAIN_MAP`, in its order (which is the order of `setdefault`).
const DOMAIN_MAP: &[(&str, &[(&str, &str)])] = &[
    (
        "api",
        &[("host", "DECNET_API_HOST"), ("port", "DECNET_API_PORT")],
    ),
    (
        "web",
        &[
            ("host", "DECNET_WEB_HOST"),
            ("port", "DECNET_WEB_PORT"),
            ("admin-user", "DECNET_ADMIN_USER"),
            ("cors-origins", "DECNET_CORS_ORIGINS"),
        ],
    ),
    (
        "database",
        &[
            ("type", "DECNET_DB_TYPE"),
            ("url", "DECNET_DB_URL"),
            ("host", "DECNET_DB_HOST"),
            ("port", "DECNET_DB_PORT"),
            ("name", "DECNET_DB_NAME"),
            ("user", "DECNET_DB_USER"),
        ],
    ),
    (
        "bus",
        &[
            ("enabled", "DECNET_BUS_ENABLED"),
            ("type", "DECNET_BUS_TYPE"),
            ("socket", "DECNET_BUS_SOCKET"),
            ("group", "DECNET_BUS_GROUP"),
        ],
    ),
    (
        "swarm",
        &[
            ("master-host", "DECNET_SWARM_MASTER_HOST"),
            ("syslog-port", "DECNET_SWARM_SYSLOG_PORT"),
            ("swarmctl-port", "DECNET_SWARMCTL_PORT"),
            ("swarmctl-host", "DECNET_SWARMCTL_HOST"),
        ],
    ),
    (
        "logging",
        &[
            ("system-log", "DECNET_SYSTEM_LOGS"),
            ("ingest-log", "DECNET_INGEST_LOG_FILE"),
            ("agent-log", "DECNET_AGENT_LOG_FILE"),
        ],
    ),
    (
        "ingester",
        &[
            ("batch-size", "DECNET_BATCH_SIZE"),
            ("batch-max-wait-ms", "DECNET_BATCH_MAX_WAIT_MS"),
        ],
    ),
    (
        "tracing",
        &[
            ("enabled", "DECNET_DEVELOPER_TRACING"),
            ("otel-endpoint", "DECNET_OTEL_ENDPOINT"),
        ],
    ),
];

/// The file DECNET reads, given the value of `DECNET_CONFIG` in the environment:
/// that path when it is set and not empty (a relative one is taken from the
/// working directory, as Python's `open` takes it), else [`DEFAULT_PATH`].
pub fn path_from_env(decnet_config: Option<&OsStr>) -> PathBuf {
    match decnet_config {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// Where one value of the ini came from, for `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniOrigin {
    pub file: PathBuf,
    /// The section DECNET read the key through.
    pub section: String,
    /// The key as DECNET sees it (lower-cased).
    pub key: String,
    /// The line of the key (1-based).
    pub line: usize,
    /// The key is written under `[DEFAULT]` and inherited by `section`.
    pub inherited_from_default: bool,
}

impl fmt::Display for IniOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inherited_from_default {
            write!(
                f,
                "{}:{} [{DEFAULT_SECTION}] {} (read through [{}])",
                self.file.display(),
                self.line,
                self.key,
                self.section
            )
        } else {
            write!(
                f,
                "{}:{} [{}] {}",
                self.file.display(),
                self.line,
                self.section,
                self.key
            )
        }
    }
}

/// One `DECNET_*` variable that the ini sets, as DECNET would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniValue {
    pub var: String,
    /// After interpolation; may be empty (`url =` sets `DECNET_DB_URL` to ""
    /// in DECNET too, and DECNET's readers then treat it as unset).
    pub value: String,
    pub origin: IniOrigin,
}

/// What DECNET takes from one ini file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecnetIni {
    file: PathBuf,
    values: Vec<IniValue>,
    warnings: Vec<String>,
}

impl DecnetIni {
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The value the ini gives `var`, or `None` when the ini does not set it.
    /// The caller applies DECNET's precedence: a variable of the real
    /// environment, even an empty one, wins over this.
    pub fn get(&self, var: &str) -> Option<&IniValue> {
        self.values.iter().find(|value| value.var == var)
    }

    /// Every variable the ini sets, in the order DECNET sets them.
    pub fn values(&self) -> &[IniValue] {
        &self.values
    }

    /// What DECNET logs as a warning: keys it ignores in a known section.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// Why the ini cannot be used. Each message names the file, and the line where there is one.
#[derive(Debug, thiserror::Error)]
pub enum IniError {
    #[error("cannot read DECNET's configuration {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "{}:{line}: {message}; DECNET's own services cannot start with this file either",
        path.display()
    )]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{}:{line}: [{section}] {key}: {message}; DECNET's own services cannot start with this file either",
        path.display()
    )]
    Interpolation {
        path: PathBuf,
        line: usize,
        section: String,
        key: String,
        message: String,
    },
    #[error(
        "{}: [decnet] mode must be 'agent' or 'master', got '{mode}' (from {source_of_mode}); DECNET's own services cannot start with it either",
        path.display()
    )]
    Mode {
        path: PathBuf,
        mode: String,
        source_of_mode: String,
    },
    #[error(
        "{}:{line}: the ini parser reads {what}, while DECNET (Python's configparser) reads {python}; write that line more plainly, or set the variable in the environment (DECNET's .env.local), which wins over the ini",
        path.display()
    )]
    Disagreement {
        path: PathBuf,
        line: usize,
        what: String,
        python: String,
    },
}

/// Reads the ini at `path` as DECNET does, with `env_mode` the value of
/// `DECNET_MODE` in the real environment (`None` when unset).
///
/// `Ok(None)` when there is no regular file there (absent, a directory, …):
/// DECNET then runs without an ini, and so do we. A file that exists but
/// cannot be read is an error here, although DECNET skips it silently: the
/// tool would otherwise run on defaults (SQLite, the default socket) while
/// DECNET's services, which read the file as group `decnet`, use what it says.
pub fn load(path: &Path, env_mode: Option<&str>) -> Result<Option<DecnetIni>, IniError> {
    let read_error = |source| IniError::Read {
        path: path.to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        // What pathlib's is_file() turns into False.
        Err(err) if is_absent(&err) => return Ok(None),
        Err(err) => return Err(read_error(err)),
        Ok(meta) if !meta.is_file() => return Ok(None),
        Ok(_) => {}
    }
    let bytes = std::fs::read(path).map_err(read_error)?;
    let text = String::from_utf8(bytes).map_err(|err| {
        let line = 1 + err.as_bytes()[..err.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        IniError::Syntax {
            path: path.to_owned(),
            line,
            message: "not UTF-8 text".to_owned(),
        }
    })?;
    parse(&text, path, env_mode).map(Some)
}

fn is_absent(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound
        || matches!(
            err.raw_os_error(),
            Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EBADF)
        )
}

/// [`load`] on text already read; `path` only names the file in origins and errors.
pub fn parse(text: &str, path: &Path, env_mode: Option<&str>) -> Result<DecnetIni, IniError> {
    // Python reads text files with universal newlines.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let doc = python_read(&text).map_err(|(line, message)| IniError::Syntax {
        path: path.to_owned(),
        line,
        message,
    })?;
    check_crate_agrees(&text, &doc, path)?;
    map_to_variables(&doc, path, env_mode)
}

/// One key as Python's configparser reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PyOption {
    key: String,
    value: String,
    line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PySection {
    name: String,
    options: Vec<PyOption>,
}

/// The file as configparser holds it after `read()`: `[DEFAULT]` apart, the
/// other sections in the order they first appear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PyDocument {
    defaults: Vec<PyOption>,
    sections: Vec<PySection>,
}

impl PyDocument {
    fn section(&self, name: &str) -> Option<&PySection> {
        self.sections.iter().find(|section| section.name == name)
    }

    /// `ConfigParser.items(section)` before interpolation: the defaults, then
    /// the section's own keys (which override a default of the same name, in its place).
    fn items(&self, section: &PySection) -> Vec<(PyOption, bool)> {
        let mut items: Vec<(PyOption, bool)> = self
            .defaults
            .iter()
            .map(|option| (option.clone(), true))
            .collect();
        for option in &section.options {
            match items.iter_mut().find(|(item, _)| item.key == option.key) {
                Some(item) => *item = (option.clone(), false),
                None => items.push((option.clone(), false)),
            }
        }
        items
    }
}

/// Where an option is being written while reading.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Defaults,
    Section(usize),
}

/// Python 3.11's `RawConfigParser._read` with `ConfigParser`'s defaults and
/// `inline_comment_prefixes=("#", ";")`: strict, delimiters `=` and `:`,
/// empty lines allowed in values, keys lower-cased. Errors are
/// `(line, message)`, raised where configparser raises them (the ones it
/// collects, lines it cannot parse, come after the whole file).
fn python_read(text: &str) -> Result<PyDocument, (usize, String)> {
    let mut doc = PyDocument::default();
    // Value lines of each option, joined at the end as configparser does.
    let mut pending: HashMap<(Target, usize), Vec<String>> = HashMap::new();
    let mut cursect: Option<Target> = None;
    let mut optname: Option<(Target, usize)> = None;
    let mut indent_level = 0usize;
    let mut sections_added: HashSet<String> = HashSet::new();
    let mut options_added: HashSet<(String, String)> = HashSet::new();
    let mut unparsable: Vec<(usize, String)> = Vec::new();

    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let lineno = index + 1;
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        let mut comment_start = inline_comment_start(line);
        if line.trim().starts_with(['#', ';']) {
            comment_start = Some(0);
        }
        let value = line[..comment_start.unwrap_or(line.len())].trim();
        if value.is_empty() {
            // A blank line (not a comment) belongs to the value being read.
            if comment_start.is_none() && cursect.is_some() {
                if let Some(option) = optname {
                    pending.entry(option).or_default().push(String::new());
                }
            }
            continue;
        }
        let cur_indent = line.chars().take_while(|c| c.is_whitespace()).count();
        if let (Some(_), Some(option)) = (cursect, optname) {
            if cur_indent > indent_level {
                pending.entry(option).or_default().push(value.to_owned());
                continue;
            }
        }
        indent_level = cur_indent;
        if let Some(name) = section_header(value) {
            if name == DEFAULT_SECTION {
                cursect = Some(Target::Defaults);
            } else if !sections_added.insert(name.to_owned()) {
                return Err((lineno, format!("section [{name}] already exists")));
            } else {
                doc.sections.push(PySection {
                    name: name.to_owned(),
                    options: Vec::new(),
                });
                cursect = Some(Target::Section(doc.sections.len() - 1));
            }
            optname = None;
            continue;
        }
        let Some(target) = cursect else {
            return Err((
                lineno,
                "a key before any [section] header (configparser's MissingSectionHeaderError)"
                    .to_owned(),
            ));
        };
        let Some((key, first)) = option_line(value) else {
            unparsable.push((lineno, line.trim_end().to_owned()));
            continue;
        };
        let key = key.to_lowercase();
        let section_name = match target {
            Target::Defaults => DEFAULT_SECTION.to_owned(),
            Target::Section(i) => doc.sections[i].name.clone(),
        };
        if !options_added.insert((section_name.clone(), key.clone())) {
            return Err((
                lineno,
                format!("key {key:?} in section [{section_name}] already exists"),
            ));
        }
        let options = match target {
            Target::Defaults => &mut doc.defaults,
            Target::Section(i) => &mut doc.sections[i].options,
        };
        options.push(PyOption {
            key,
            value: String::new(),
            line: lineno,
        });
        let slot = (target, options.len() - 1);
        pending.insert(slot, vec![first.to_owned()]);
        optname = Some(slot);
    }
    if let Some((line, _)) = unparsable.first() {
        let lines: Vec<String> = unparsable
            .iter()
            .map(|(line, text)| format!("line {line}: {text:?}"))
            .collect();
        return Err((
            *line,
            format!(
                "a line that is neither a [section], a key = value, a comment nor a blank ({})",
                lines.join(", ")
            ),
        ));
    }
    for ((target, index), lines) in pending {
        let options = match target {
            Target::Defaults => &mut doc.defaults,
            Target::Section(i) => &mut doc.sections[i].options,
        };
        options[index].value = lines.join("\n").trim_end().to_owned();
    }
    Ok(doc)
}

/// Where an inline comment starts, found the way configparser 3.11 finds it:
/// round by round, the next occurrence of each prefix, stopping at the first
/// round where one is at the line's start or after whitespace. (So in
/// `a#1 b;2 c;3 d ;4 e #5` the comment is ` #5`, not ` ;4`: Python's quirk, kept.)
fn inline_comment_start(line: &str) -> Option<usize> {
    let mut candidates: Vec<(char, Option<usize>)> = vec![('#', None), (';', None)];
    loop {
        let mut found: Option<usize> = None;
        let mut next = Vec::new();
        for (prefix, previous) in candidates {
            let from = previous.map_or(0, |at| at + 1);
            let Some(offset) = line[from..].find(prefix) else {
                continue;
            };
            let at = from + offset;
            next.push((prefix, Some(at)));
            let after_space = line[..at]
                .chars()
                .next_back()
                .is_some_and(char::is_whitespace);
            if at == 0 || after_space {
                found = Some(found.map_or(at, |f| f.min(at)));
            }
        }
        if found.is_some() || next.is_empty() {
            return found;
        }
        candidates = next;
    }
}

/// configparser's `SECTCRE`, `\[(?P<header>.+)\]`, matched at the start: the
/// name runs to the last `]`.
fn section_header(value: &str) -> Option<&str> {
    let rest = value.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    (end > 0).then(|| &rest[..end])
}

/// configparser's `OPTCRE`, `(?P<option>.*?)\s*(?P<vi>=|:)\s*(?P<value>.*)$`:
/// the first `=` or `:` splits; an empty key is no option.
fn option_line(value: &str) -> Option<(&str, &str)> {
    let at = value.find(['=', ':'])?;
    let key = value[..at].trim_end();
    if key.is_empty() {
        return None;
    }
    Some((key, value[at + 1..].trim()))
}

/// The `configparser` crate's reading of the same text must give every key
/// the value Python gives it. Its own rules differ in corners (an inline
/// comment needs no whitespace before it, `[ name ]` is trimmed), and such a
/// file is refused here rather than read otherwise than DECNET reads it.
fn check_crate_agrees(text: &str, doc: &PyDocument, path: &Path) -> Result<(), IniError> {
    let mut parser = configparser::ini::Ini::new_cs();
    parser.set_comment_symbols(&['#', ';']);
    parser.set_multiline(true);
    let parsed = parser
        .read(text.to_owned())
        .map_err(|err| IniError::Disagreement {
            path: path.to_owned(),
            line: err
                .strip_prefix("line ")
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|line| line.parse().ok())
                .unwrap_or(0),
            what: format!("an error ({err})"),
            python: "no error".to_owned(),
        })?;
    let mut sections: Vec<(&str, &[PyOption])> = vec![(DEFAULT_SECTION, &doc.defaults)];
    sections.extend(
        doc.sections
            .iter()
            .map(|section| (section.name.as_str(), section.options.as_slice())),
    );
    for (name, options) in sections {
        for option in options {
            let values: Vec<&str> = parsed
                .get(name)
                .into_iter()
                .flat_map(|keys| keys.iter())
                .filter(|(key, _)| key.to_lowercase() == option.key)
                .map(|(_, value)| value.as_deref().unwrap_or_default())
                .collect();
            if values != [option.value.as_str()] {
                return Err(IniError::Disagreement {
                    path: path.to_owned(),
                    line: option.line,
                    what: format!("[{name}] {} as {values:?}", option.key),
                    python: format!("{:?}", option.value),
                });
            }
        }
    }
    Ok(())
}

/// `load_ini_config`'s walk over the sections, minus the environment: every
/// variable the ini would `setdefault`, first occurrence winning.
fn map_to_variables(
    doc: &PyDocument,
    path: &Path,
    env_mode: Option<&str>,
) -> Result<DecnetIni, IniError> {
    let mut out = DecnetIni {
        file: path.to_owned(),
        values: Vec::new(),
        warnings: Vec::new(),
    };
    let add = |out: &mut DecnetIni, var: String, value: String, origin: IniOrigin| {
        if out.get(&var).is_none() {
            out.values.push(IniValue { var, value, origin });
        }
    };

    if let Some(section) = doc.section("decnet") {
        for (option, value, origin) in interpolated_items(doc, section, path)? {
            add(&mut out, key_to_env(&option), value, origin);
        }
    }

    let (mode, source_of_mode) = match (env_mode, out.get("DECNET_MODE")) {
        (Some(mode), _) => (mode.to_owned(), "the environment's DECNET_MODE".to_owned()),
        (None, Some(value)) => (value.value.clone(), value.origin.to_string()),
        (None, None) => ("master".to_owned(), "DECNET's default".to_owned()),
    };
    let mode = mode.to_lowercase();
    if mode != "agent" && mode != "master" {
        return Err(IniError::Mode {
            path: path.to_owned(),
            mode,
            source_of_mode,
        });
    }
    if let Some(section) = doc.section(&mode) {
        for (option, value, origin) in interpolated_items(doc, section, path)? {
            add(&mut out, key_to_env(&option), value, origin);
        }
    }

    for (name, key_map) in DOMAIN_MAP {
        let Some(section) = doc.section(name) else {
            continue;
        };
        for (option, value, origin) in interpolated_items(doc, section, path)? {
            match key_map.iter().find(|(key, _)| *key == option) {
                Some((_, var)) => add(&mut out, (*var).to_owned(), value, origin),
                None => out.warnings.push(format!(
                    "{origin}: unknown key [{name}] {option}, ignored (by DECNET too)"
                )),
            }
        }
    }
    Ok(out)
}

/// `_key_to_env`: `DECNET_` + the key with `-` turned to `_`, upper-cased.
fn key_to_env(key: &str) -> String {
    format!("DECNET_{}", key.replace('-', "_").to_uppercase())
}

/// `parser.items(section)`: every key of the section and of `[DEFAULT]`,
/// interpolated; like Python, one bad value fails the whole section.
fn interpolated_items(
    doc: &PyDocument,
    section: &PySection,
    path: &Path,
) -> Result<Vec<(String, String, IniOrigin)>, IniError> {
    let items = doc.items(section);
    let lookup: HashMap<&str, &str> = items
        .iter()
        .map(|(option, _)| (option.key.as_str(), option.value.as_str()))
        .collect();
    items
        .iter()
        .map(|(option, inherited)| {
            let origin = IniOrigin {
                file: path.to_owned(),
                section: section.name.clone(),
                key: option.key.clone(),
                line: option.line,
                inherited_from_default: *inherited,
            };
            let mut value = String::new();
            interpolate(&option.value, &lookup, 1, &mut value).map_err(|message| {
                IniError::Interpolation {
                    path: path.to_owned(),
                    line: option.line,
                    section: section.name.clone(),
                    key: option.key.clone(),
                    message,
                }
            })?;
            Ok((option.key.clone(), value, origin))
        })
        .collect()
}

/// configparser's `BasicInterpolation._interpolate_some`.
fn interpolate(
    rest: &str,
    lookup: &HashMap<&str, &str>,
    depth: usize,
    out: &mut String,
) -> Result<(), String> {
    if depth > MAX_INTERPOLATION_DEPTH {
        return Err(format!(
            "interpolation deeper than {MAX_INTERPOLATION_DEPTH} levels (a %(key)s that refers to itself?)"
        ));
    }
    let mut rest = rest;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("%%") {
            out.push('%');
            rest = after;
        } else if let Some(reference) = rest.strip_prefix("%(") {
            let name_end = reference
                .find(')')
                .filter(|&end| end > 0 && reference[end + 1..].starts_with('s'))
                .ok_or_else(|| {
                    format!(
                        "bad interpolation variable reference {rest:?} (write a literal % as %%)"
                    )
                })?;
            let name = reference[..name_end].to_lowercase();
            let value = lookup.get(name.as_str()).ok_or_else(|| {
                format!(
                    "%({name})s refers to a key that is neither in this section nor in [DEFAULT]"
                )
            })?;
            if value.contains('%') {
                interpolate(value, lookup, depth + 1, out)?;
            } else {
                out.push_str(value);
            }
            rest = &reference[name_end + 2..];
        } else {
            return Err(format!(
                "'%' must be followed by '%' or '(', found {rest:?} (write a literal % as %%)"
            ));
        }
    }
    out.push_str(rest);
    Ok(())
}

#[cfg(test)]
mod tests;
