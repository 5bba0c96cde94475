//! The committed shell completions (`completions/`) and man page
//! (`packaging/decnet-reconcile.1`) are what the clap definition generates now.
//!
//! The test fails when a committed copy is stale. After changing the command
//! line, regenerate them and commit the result:
//!
//! ```sh
//! UPDATE_GENERATED=1 cargo test --test it generated::
//! ```
//!
//! With `UPDATE_GENERATED=1` set, each test rewrites its file instead of
//! comparing it.

use std::path::Path;

use crate::fixture::{command_line, resolved_default, run, tool};

#[test]
fn bash_completion_is_current() {
    check_generated(
        "completions/decnet-reconcile.bash",
        &completions_from_binary("bash"),
    );
}

#[test]
fn zsh_completion_is_current() {
    check_generated(
        "completions/_decnet-reconcile",
        &completions_from_binary("zsh"),
    );
}

#[test]
fn fish_completion_is_current() {
    check_generated(
        "completions/decnet-reconcile.fish",
        &completions_from_binary("fish"),
    );
}

#[test]
fn man_page_is_current() {
    check_generated("packaging/decnet-reconcile.1", &man_page());
}

#[test]
fn man_page_documents_every_option_and_its_environment_variable() {
    let page = man_page();
    for arg in command_line().get_arguments() {
        if let Some(long) = arg.get_long() {
            let flag = format!("\\fB\\-\\-{}\\fR", long.replace('-', "\\-"));
            assert!(page.contains(&flag), "the man page lacks --{long}");
        }
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy();
            assert!(page.contains(&*env), "the man page lacks {env}");
        }
    }
    for section in ["SUBCOMMANDS", "\"EXIT STATUS\"", "FILES", "EXAMPLES"] {
        assert!(
            page.contains(&format!(".SH {section}\n")),
            "the man page lacks {section}"
        );
    }
    assert!(
        !page.contains("decnet\\-reconcile\\-once(1)"),
        "the man page points at per-subcommand pages that are not shipped"
    );
}

/// The variables the packaged unit sets itself (`Environment=`), which the
/// defaults file shows commented with the unit's value: the heartbeat keeps
/// DECNET's Workers panel green only when every pass sends it.
fn unit_settings() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/decnet-reconcile.service");
    let unit = std::fs::read_to_string(&path).expect("read the service unit");
    unit.lines()
        .filter_map(|line| line.strip_prefix("Environment="))
        .filter_map(|assignment| assignment.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// packaging/decnet-reconcile.default (installed as /etc/default/decnet-reconcile)
/// shows every variable of the command line, commented out with its default
/// (the unit's value for those the unit sets), and explained on the line
/// above. It is written by hand, so it is checked rather than generated.
#[test]
fn defaults_file_lists_every_environment_variable_with_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/decnet-reconcile.default");
    let text = std::fs::read_to_string(&path).expect("read packaging/decnet-reconcile.default");
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines {
        assert!(
            line.is_empty() || line.starts_with('#'),
            "everything stays commented out, so the defaults are the binary's and the unit's: {line:?}"
        );
    }
    let in_unit = unit_settings();
    assert!(
        in_unit
            .iter()
            .any(|(name, value)| name == "DECNET_RECONCILE_HEARTBEAT" && value == "1"),
        "the unit turns the heartbeat on: {in_unit:?}"
    );
    let command = command_line();
    let mut listed = 0;
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let env = env.to_string_lossy();
        let default = arg
            .get_default_values()
            .first()
            .map(|value| value.to_string_lossy().into_owned())
            .or_else(|| resolved_default(&env).map(str::to_owned))
            .unwrap_or_default();
        let default = in_unit
            .iter()
            .find(|(name, _)| *name == env)
            .map_or(default, |(_, value)| value.clone());
        let expected = format!("#{env}={default}");
        let at = lines
            .iter()
            .position(|line| *line == expected)
            .unwrap_or_else(|| panic!("the defaults file lacks the line {expected:?}"));
        let explanation = at
            .checked_sub(1)
            .map(|before| lines[before])
            .unwrap_or_default();
        assert!(
            explanation.starts_with("# ") && explanation.len() > 10,
            "{env} has no explanation on the line above it"
        );
        listed += 1;
    }
    assert!(
        listed >= 5,
        "SPEC §2 has five variables, the definition {listed}"
    );
}

/// What `decnet-reconcile completions <shell>` prints, as the packages ship it
/// (none of the test's environment, which must not leak into the script).
fn completions_from_binary(shell: &str) -> String {
    let out = run(tool().args(["completions", shell])).expect_status(0);
    assert_eq!(out.stderr, "", "decnet-reconcile completions {shell}");
    assert!(
        out.stdout.contains("decnet-reconcile"),
        "the {shell} completions do not name the command:\n{}",
        out.stdout
    );
    out.stdout
}

/// decnet-reconcile(1): clap_mangen's title, name, synopsis, description and
/// options (with their environment variables), then sections clap knows
/// nothing of. clap_mangen's own SUBCOMMANDS section would point at
/// decnet-reconcile-once(1) and the like, pages nobody ships.
fn man_page() -> String {
    let command = command_line();
    let man = clap_mangen::Man::new(command.clone()).manual("DECNET");
    let mut page = Vec::new();
    man.render_title(&mut page).expect("render");
    man.render_name_section(&mut page).expect("render");
    man.render_synopsis_section(&mut page).expect("render");
    man.render_description_section(&mut page).expect("render");
    man.render_options_section(&mut page).expect("render");
    let mut page = String::from_utf8(page).expect("the man page is UTF-8");
    page.push_str(&subcommands_section(&command));
    page.push_str(EXIT_STATUS_SECTION);
    page.push_str(&files_section());
    page.push_str(TLS_AND_PASSWORDS_SECTION);
    page.push_str(EXAMPLES_SECTION);
    page.push_str(SEE_ALSO_SECTION);
    page
}

/// Each subcommand with its arguments and their possible values.
fn subcommands_section(command: &clap::Command) -> String {
    let mut roff = String::from(".SH SUBCOMMANDS\n");
    for sub in command.get_subcommands() {
        let mut heading = format!("\\fB{}\\fR", escape(sub.get_name()));
        let mut text = escape(&sub.get_about().map(ToString::to_string).unwrap_or_default());
        for arg in sub.get_positionals() {
            let name = escape(&arg.get_id().as_str().to_uppercase());
            heading.push_str(&format!(" \\fI{name}\\fR"));
            let possible = arg.get_possible_values();
            let values: Vec<&str> = possible.iter().map(|value| value.get_name()).collect();
            if !values.is_empty() {
                let values = escape(&values.join(", "));
                text.push_str(&format!("\n.br\n\\fI{name}\\fR is one of: {values}."));
            }
        }
        roff.push_str(&format!(".TP\n{heading}\n{text}\n"));
    }
    roff
}

const EXIT_STATUS_SECTION: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
The pass succeeded: the host was converged, or the changes were applied.
Docker or Redis being unreachable is not an error.
.TP
\fB1\fR
An error, and nothing was changed in the database. Usage errors exit 1 too.
.TP
\fB2\fR
Only with \fB\-\-detailed\-exitcode\fR: changes were applied or, with
\fB\-\-dry\-run\fR, planned.
"#;

/// DECNET's files as the tool finds them (the install dir's default comes
/// from the library, so the page cannot drift).
fn files_section() -> String {
    let install_dir = escape(resolved_default("DECNET_INSTALL_DIR").expect("a default"));
    format!(
        r#".SH FILES
.TP
\fI{install_dir}\fR
DECNET's install dir (\fB\-\-decnet\-dir\fR). DECNET's root, which holds its state file
and SQLite database, is found under it as DECNET finds it: the
\fIvenv/lib/python3.X/site\-packages\fR of a pip install, or the checkout of an editable one.
.TP
\fIDECNET's root\fR\fB/decnet\-state.json\fR
The state file, written by \fBdecnet deploy\fR.
.TP
\fIDECNET's root\fR\fB/decnet.db\fR
DECNET's SQLite database, with its table \fBfleet_deckies\fR. DECNET creates it on its
first start; the tool never does, unless \fB\-\-create\-table\fR is given.
.TP
\fI/etc/decnet/decnet.ini\fR
DECNET's configuration (or \fBDECNET_CONFIG\fR), read as DECNET reads it: its
\fB[database]\fR, \fB[bus]\fR and, in agent mode, \fB[agent] host\-uuid\fR, below the environment.
.TP
\fI{install_dir}/.env.local\fR
DECNET's secrets, read by \fBdecnet\-reconcile.service\fR as by every DECNET unit.
.TP
\fI/run/decnet/bus.sock\fR, \fI~/.decnet/bus.sock\fR
DECNET's bus, where \fBdecnet bus\fR serves it: the first when \fI/run/decnet\fR is a
directory the user may write, as DECNET's workers choose.
.TP
\fI/etc/default/decnet\-reconcile\fR
The environment of \fBdecnet\-reconcile.service\fR: the variables above; it outranks
DECNET's \fI.env.local\fR and ini.
.TP
\fI/usr/lib/systemd/system/decnet\-reconcile.timer\fR
Starts \fBdecnet\-reconcile.service\fR, one quiet pass as user \fBdecnet\fR, every 30 seconds.
"#
    )
}

const TLS_AND_PASSWORDS_SECTION: &str = r#".SH "TLS AND PASSWORDS"
MySQL's TLS is set in its URL (\fB\-\-db\fR or \fBDECNET_DB_URL\fR):
\fBssl\-mode\fR (DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY),
\fBssl\-ca\fR, \fBssl\-cert\fR and \fBssl\-key\fR, or SQLAlchemy's \fBssl_ca\fR,
\fBssl_cert\fR, \fBssl_key\fR and \fBssl_check_hostname\fR. Without any, TLS is
used when the server offers it, its certificate unchecked (PREFERRED); \fBssl\-ca\fR
alone means VERIFY_IDENTITY. Redis over TLS is a \fBrediss://\fR URL, its CA
\fB\-\-redis\-ca\fR.
.TP
\fBDECNET_DB_PASSWORD_FILE\fR, \fBDECNET_REDIS_PASSWORD_FILE\fR
A file holding the password alone (one trailing line end is dropped).
.TP
\fI$CREDENTIALS_DIRECTORY/db\-password\fR, \fI$CREDENTIALS_DIRECTORY/redis\-password\fR
The same, as systemd's \fBLoadCredential=\fR hands them over. A file and a
credential for one connection are an error. A password in the URL comes first,
then the file or credential, then DECNET's \fBDECNET_DB_PASSWORD\fR.
.TP
\fBSSL_CERT_FILE\fR, \fBSSL_CERT_DIR\fR
Where the system's CAs are read from, when no CA file is named.
"#;

const EXAMPLES_SECTION: &str = r#".SH EXAMPLES
See every setting, where it came from, and what is wrong, as the timer's user:
.PP
.RS 4
.nf
sudo \-u decnet decnet\-reconcile doctor
.fi
.RE
.PP
Preview what a pass would change, writing nothing:
.PP
.RS 4
.nf
decnet\-reconcile \-\-dry\-run
.fi
.RE
.PP
Repair by hand, as the user the timer runs as:
.PP
.RS 4
.nf
sudo \-u decnet decnet\-reconcile once
.fi
.RE
.PP
Keep a database DECNET never manages, creating it and its table on the first pass:
.PP
.RS 4
.nf
decnet\-reconcile \-\-state\-file fleet.json \-\-db fleet.db \-\-create\-table
.fi
.RE
.PP
Run a pass every 30 seconds and read what the passes changed:
.PP
.RS 4
.nf
systemctl enable \-\-now decnet\-reconcile.timer
journalctl \-u decnet\-reconcile
.fi
.RE
"#;

const SEE_ALSO_SECTION: &str = r#".SH "SEE ALSO"
\fBsystemd.timer\fR(5), \fBsystemd.exec\fR(5), \fBjournalctl\fR(1)
"#;

/// Text for a roff line: backslashes and hyphens escaped, and no line
/// starting with a control character.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Compares `generated` with the committed file `relative` (to the crate
/// root), or rewrites the file when `UPDATE_GENERATED=1`.
fn check_generated(relative: &str, generated: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    if updating() {
        write(&path, generated);
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}; {}", path.display(), HOW_TO_UPDATE));
    if let Some(diff) = first_difference(&committed, generated) {
        panic!("{relative} is stale: {diff}; {HOW_TO_UPDATE}");
    }
}

const HOW_TO_UPDATE: &str =
    "regenerate with `UPDATE_GENERATED=1 cargo test --test it generated::` and commit the result";

fn updating() -> bool {
    std::env::var_os("UPDATE_GENERATED").is_some_and(|value| value == "1")
}

fn write(path: &Path, text: &str) {
    let dir = path.parent().expect("a file in the crate");
    std::fs::create_dir_all(dir)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
    std::fs::write(path, text)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

/// The first line where the two texts differ, shown from both sides: whole
/// files would bury the change under hundreds of identical lines.
fn first_difference(committed: &str, generated: &str) -> Option<String> {
    if committed == generated {
        return None;
    }
    let mut committed_lines = committed.lines();
    let mut generated_lines = generated.lines();
    for number in 1.. {
        match (committed_lines.next(), generated_lines.next()) {
            (Some(old), Some(new)) if old == new => continue,
            (None, None) => break,
            (old, new) => {
                return Some(format!(
                    "line {number} is {:?} in the committed file but {:?} when generated",
                    old.unwrap_or("<end of file>"),
                    new.unwrap_or("<end of file>")
                ))
            }
        }
    }
    // Same lines, different line endings or final newline.
    Some("the files differ only in line endings or the final newline".to_owned())
}

#[test]
fn first_difference_names_the_line() {
    assert_eq!(first_difference("a\nb\n", "a\nb\n"), None);
    let diff = first_difference("a\nb\n", "a\nc\n").expect("a difference");
    assert!(
        diff.contains("line 2") && diff.contains("\"b\"") && diff.contains("\"c\""),
        "{diff}"
    );
    let diff = first_difference("a\n", "a\nb\n").expect("a difference");
    assert!(diff.contains("<end of file>"), "{diff}");
    assert!(first_difference("a\n", "a").is_some());
}
