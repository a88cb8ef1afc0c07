//! Rendering results: plain text for people, one JSON document for programs.

use serde::Serialize;

use crate::cli::Format;
use crate::exit::ExitCode;

/// Prints a command's result: `plain` text, or `value` as JSON.
pub fn print<T: Serialize>(format: Format, value: &T, plain: impl FnOnce() -> String) {
    match format {
        Format::Plain => {
            let text = plain();
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
    }
}

pub fn error(format: Format, error: &anyhow::Error, code: ExitCode) {
    match format {
        Format::Plain => eprintln!("cairn: error: {error:#}"),
        Format::Json => {
            let doc = serde_json::json!({"error": {"code": code.code, "message": format!("{error:#}")}});
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
