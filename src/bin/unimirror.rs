fn main() -> std::process::ExitCode {
    unimirror::cli::daemon::main()
}
