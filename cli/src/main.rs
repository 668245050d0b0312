//! The `keyleash` binary: [`keyleash_cli::run`] on the process's arguments.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(keyleash_cli::run(std::env::args_os()))
}
