//! The committed shell completions (`completions/`) and man page
//! (`man/decnet-reconcile.1`) are what the clap definition generates now.
//!
//! The test fails when a committed copy is stale. After changing the command
//! line, regenerate them and commit the result:
//!
//! ```sh
//! UPDATE_GENERATED=1 cargo test --test generated
//! ```
//!
//! With `UPDATE_GENERATED=1` set, each test rewrites its file instead of
//! comparing it.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use clap::CommandFactory;
use decnet_reconcile::cli::Cli;

/// The variables of SPEC §2: a value in the test's environment must not leak
/// into what is generated.
const SPEC_ENV: [&str; 5] = [
    "DECNET_STATE_FILE",
    "DECNET_DB_PATH",
    "DECNET_HOST_UUID",
    "DOCKER_HOST",
    "DECNET_REDIS_URL",
];

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
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .expect("render the man page");
    check_generated(
        "man/decnet-reconcile.1",
        &String::from_utf8(page).expect("the man page is UTF-8"),
    );
}

/// What `decnet-reconcile completions <shell>` prints, as the packages ship it.
fn completions_from_binary(shell: &str) -> String {
    let mut cmd = Command::cargo_bin("decnet-reconcile").expect("the binary is built");
    for var in SPEC_ENV {
        cmd.env_remove(var);
    }
    let output = cmd
        .args(["completions", shell])
        .output()
        .expect("run decnet-reconcile completions");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "decnet-reconcile completions {shell} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let script = String::from_utf8(output.stdout).expect("completions are UTF-8");
    assert!(
        script.contains("decnet-reconcile"),
        "the {shell} completions do not name the command:\n{script}"
    );
    script
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
    "regenerate with `UPDATE_GENERATED=1 cargo test --test generated` and commit the result";

fn updating() -> bool {
    std::env::var_os("UPDATE_GENERATED").is_some_and(|value| value == "1")
}

fn write(path: &PathBuf, text: &str) {
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
