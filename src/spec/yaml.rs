//! The only YAML import. serde-saphyr parses straight into typed structs, so a
//! field typed `String` keeps `0644` or `no` exactly as written; errors carry
//! the file, line and column.

use serde::de::DeserializeOwned;
use thiserror::Error;

/// A YAML document that does not match the expected shape.
#[derive(Debug, Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct YamlError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Parse `text` (read from `file`, named in errors) into `T`.
///
/// Booleans are strict (`true`/`false` only), so `no`, `yes`, `on` and `off`
/// stay strings wherever a value is free-form; duplicate keys are errors.
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, YamlError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|error| {
        let (line, column) = error
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let message = error.without_snippet().to_string();
        let message = strip_position(&message);
        // Drop hints meant for programmers, not for the operator.
        let message = message
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(message);
        // Some messages repeat the position at the end.
        let message = match message.rfind(" at line ") {
            Some(i) => &message[..i],
            None => message,
        }
        .to_string();
        YamlError {
            file: file.to_string(),
            line,
            column,
            message,
        }
    })
}

/// serde-saphyr prefixes messages with "error: line L column C: "; we print our own.
fn strip_position(message: &str) -> &str {
    let message = message.strip_prefix("error: ").unwrap_or(message);
    match message.find(": ") {
        Some(i) if message.starts_with("line ") => &message[i + 2..],
        _ => message,
    }
}
