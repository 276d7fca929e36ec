fn main() -> std::process::ExitCode {
    unimirror::cli::update::main()
}
