//! Placeholder: the `berth` CLI is not built yet (see README "Status").
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!("berth: not implemented yet");
    std::process::ExitCode::FAILURE
}
