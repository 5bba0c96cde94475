//! The binary: the process's arguments and environment in, an exit code out.

fn main() -> std::process::ExitCode {
    let args = std::env::args_os().collect();
    decnet_reconcile::app::run(args, decnet_reconcile::config::Environment::of_process()).into()
}
