//! A stdout that fails after the commit (`>/dev/full`, a pipe whose reader is
//! gone, `| head -c10`) is not an error of the pass: the exit code still says
//! what the pass did, and a warning says the report was lost. A dry run, whose
//! report is its only product, fails: exit 1, and it changed nothing.

mod support;

use std::fs::File;
use std::process::{Command, Stdio};

use support::{Run, TestEnv};

/// Where a report cannot go.
#[derive(Debug, Clone, Copy)]
enum BrokenStdout {
    /// Every write fails with ENOSPC.
    DevFull,
    /// A pipe whose reading end is closed: EPIPE (Rust ignores SIGPIPE).
    ClosedPipe,
}

const BOTH: [BrokenStdout; 2] = [BrokenStdout::DevFull, BrokenStdout::ClosedPipe];

fn run_with(command: &mut Command, stdout: BrokenStdout) -> Run {
    command.stderr(Stdio::piped());
    let output = match stdout {
        BrokenStdout::DevFull => command
            .stdout(
                File::options()
                    .write(true)
                    .open("/dev/full")
                    .expect("/dev/full"),
            )
            .output()
            .expect("run"),
        BrokenStdout::ClosedPipe => command.stdout(pipe_without_reader()).output().expect("run"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    Run {
        code: output.status.code().unwrap_or_else(|| {
            panic!(
                "{stdout:?}: killed by a signal: {}; {stderr}",
                output.status
            )
        }),
        stdout: String::new(),
        stderr,
        elapsed: Default::default(),
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

fn env_with_two_new_deckies(test: &str) -> TestEnv {
    let env = TestEnv::new(test);
    env.write_state(&[
        env.decky(&env.name("a"), &["ssh"]),
        env.decky(&env.name("b"), &["ssh"]),
    ]);
    env
}

#[test]
fn a_committed_pass_keeps_its_exit_code_when_stdout_fails() {
    for stdout in BOTH {
        for (args, code) in [
            (&[][..], 0),
            (&["--detailed-exitcode"][..], 2),
            (&["--output", "json", "--detailed-exitcode"][..], 2),
        ] {
            let env = env_with_two_new_deckies("commit-stdout");
            let run = run_with(env.command().args(args), stdout);
            assert_eq!(run.code, code, "{stdout:?} {args:?}: {}", run.stderr);
            assert!(
                run.stderr.contains("cannot write the report to stdout")
                    && run.stderr.contains("the pass is complete"),
                "{stdout:?} {args:?}: {}",
                run.stderr
            );
            assert_eq!(
                env.rows().len(),
                2,
                "{stdout:?} {args:?}: the rows were committed"
            );
            let again = env.run(&["--output", "json"]).expect_code(0);
            assert_eq!(again.json()["changes"], serde_json::json!([]), "{stdout:?}");
        }
    }
}

#[test]
fn a_converged_pass_is_a_success_when_stdout_fails() {
    for stdout in BOTH {
        let env = env_with_two_new_deckies("converged-stdout");
        env.run(&[]).expect_code(0);
        let run = run_with(&mut env.command(), stdout);
        assert_eq!(run.code, 0, "{stdout:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("cannot write the report to stdout"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn a_dry_run_whose_plan_cannot_be_printed_fails_and_changes_nothing() {
    for stdout in BOTH {
        let env = env_with_two_new_deckies("dry-stdout");
        env.seed_row("local", &env.name("gone"), "running");
        let before = env.rows();
        let run = run_with(
            env.command().args(["--dry-run", "--detailed-exitcode"]),
            stdout,
        );
        assert_eq!(run.code, 1, "{stdout:?}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("error: cannot write the dry run's plan to stdout; nothing was changed"),
            "{stdout:?}: {}",
            run.stderr
        );
        assert_eq!(env.rows(), before, "{stdout:?}");
    }
}

#[test]
fn completions_to_a_broken_stdout_fail_without_aborting() {
    for stdout in BOTH {
        let mut command = Command::new(env!("CARGO_BIN_EXE_decnet-reconcile"));
        command.args(["completions", "bash"]);
        let run = run_with(&mut command, stdout);
        assert_eq!(run.code, 1, "{stdout:?}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("cannot write the completions to stdout"),
            "{stdout:?}: {}",
            run.stderr
        );
    }
}
