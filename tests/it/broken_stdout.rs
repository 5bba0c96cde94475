//! A stdout that fails after the commit (`>/dev/full`, a pipe whose reader is
//! gone, `| head -c10`) is not an error of the pass: the exit code still says
//! what the pass did, and a warning says the report was lost. A dry run, whose
//! report is its only product, fails: exit 1, and it changed nothing.

use std::fs::File;
use std::process::{Command, Stdio};

use crate::fixture::{decky, Env, Test};

/// Where a report cannot go.
#[derive(Debug, Clone, Copy)]
enum BrokenStdout {
    /// Every write fails with ENOSPC.
    DevFull,
    /// A pipe whose reading end is closed: EPIPE (Rust ignores SIGPIPE).
    ClosedPipe,
}

const BOTH: [BrokenStdout; 2] = [BrokenStdout::DevFull, BrokenStdout::ClosedPipe];

impl BrokenStdout {
    fn stdio(self) -> Stdio {
        match self {
            BrokenStdout::DevFull => File::options()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full")
                .into(),
            BrokenStdout::ClosedPipe => pipe_without_reader(),
        }
    }

    /// What the failing write says.
    fn error(self) -> &'static str {
        match self {
            BrokenStdout::DevFull => "No space left on device (os error 28)",
            BrokenStdout::ClosedPipe => "Broken pipe (os error 32)",
        }
    }
}

/// The writing end of a pipe whose reader has exited: the stdin of a finished `true`.
fn pipe_without_reader() -> Stdio {
    let mut reader = Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn true");
    let writer = reader.stdin.take().expect("its stdin");
    reader.wait().expect("true exits");
    Stdio::from(writer)
}

fn env_with_two_new_deckies() -> Env {
    let env = Env::new();
    env.write_state(&[
        decky(&env.name("a"), &["ssh"]),
        decky(&env.name("b"), &["ssh"]),
    ]);
    env
}

/// A pass whose report goes to `stdout`, and the warning it must print.
fn pass_into(env: &Env, stdout: BrokenStdout) -> Test<'_> {
    env.test()
        .context(format!("{stdout:?}"))
        .stdout_to(stdout.stdio())
        .stderr(format!(
            " WARN cannot write the report to stdout ({}); the pass is complete all the same\n",
            stdout.error()
        ))
}

#[test]
fn a_committed_pass_keeps_its_exit_code_when_stdout_fails() {
    for stdout in BOTH {
        for (args, code) in [
            (&[][..], 0),
            (&["--detailed-exitcode"][..], 2),
            (&["--output", "json", "--detailed-exitcode"][..], 2),
        ] {
            let env = env_with_two_new_deckies();
            pass_into(&env, stdout).args(args).status(code).run();
            assert_eq!(
                env.rows().len(),
                2,
                "{stdout:?} {args:?}: the rows were committed"
            );
            let again = env.test().args(["--output", "json"]).run();
            assert_eq!(again.json()["changes"], serde_json::json!([]), "{stdout:?}");
        }
    }
}

#[test]
fn a_converged_pass_is_a_success_when_stdout_fails() {
    for stdout in BOTH {
        let env = env_with_two_new_deckies();
        env.test().run();
        pass_into(&env, stdout).run();
    }
}

#[test]
fn a_dry_run_whose_plan_cannot_be_printed_fails_and_changes_nothing() {
    for stdout in BOTH {
        let env = env_with_two_new_deckies();
        env.seed_row(&env.host, &env.name("gone"), "running");
        let before = env.rows();
        env.test()
            .context(format!("{stdout:?}"))
            .stdout_to(stdout.stdio())
            .args(["--dry-run", "--detailed-exitcode"])
            .status(1)
            .stderr(format!(
                "decnet-reconcile: error: cannot write the dry run's plan to stdout; \
                 nothing was changed: {}\n",
                stdout.error()
            ))
            .run();
        assert_eq!(env.rows(), before, "{stdout:?}");
    }
}

#[test]
fn completions_to_a_broken_stdout_fail_without_aborting() {
    for stdout in BOTH {
        Test::new()
            .context(format!("{stdout:?}"))
            .stdout_to(stdout.stdio())
            .args(["completions", "bash"])
            .status(1)
            .stderr(format!(
                "decnet-reconcile: error: cannot write the completions to stdout: {}\n",
                stdout.error()
            ))
            .run();
    }
}
