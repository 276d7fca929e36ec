// mimalloc, asked as C asks malloc: see `unimirror::allocator`.
#[global_allocator]
static ALLOCATOR: unimirror::allocator::Allocator = unimirror::allocator::Allocator;

fn main() -> std::process::ExitCode {
    unimirror::cli::daemon::main()
}
