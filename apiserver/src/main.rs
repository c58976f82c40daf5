//! Placeholder: the Berth apiserver is not built yet (see README "Status").
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!("berth apiserver: not implemented yet");
    std::process::ExitCode::FAILURE
}
