//! The `tally` binary: everything lives in the library; this only runs it.

fn main() -> std::process::ExitCode {
    tally_agent::cli::main()
}
