//! Placeholder: the Berth operator is not built yet (see README "Status").
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!("berth operator: not implemented yet");
    std::process::ExitCode::FAILURE
}
