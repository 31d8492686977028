//! The `zombie-trace` command: one file per subcommand under `cli/`.
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
