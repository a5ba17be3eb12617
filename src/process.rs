//! Child processes become errors in one place: could not start, exited with
//! a code (with the tail of its output), killed by a signal, timed out.

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use thiserror::Error;

/// A child process that did not succeed.
#[derive(Debug, Error)]
pub enum CommandError {
    #[error("could not start `{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` exited with code {code}{}", tail(stderr))]
    Exit {
        command: String,
        code: i32,
        stderr: String,
    },
    #[error("`{command}` was killed by signal {signal}{}", tail(stderr))]
    Signal {
        command: String,
        signal: i32,
        stderr: String,
    },
    #[error(
        "health check of {app} failed after {attempts} attempt(s) in {seconds}s: {check}; last: {last}"
    )]
    Unhealthy {
        app: String,
        check: String,
        attempts: u32,
        seconds: f64,
        last: String,
    },
    #[error("`{command}` did not finish within {seconds}s and was killed")]
    Timeout { command: String, seconds: u64 },
    #[error("user {user} {problem}")]
    User { user: String, problem: String },
    #[error("cannot record `{command}` in {log}: {source}")]
    Record {
        command: String,
        log: PathBuf,
        source: io::Error,
    },
}

fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    let start = lines.len().saturating_sub(40);
    if lines.is_empty() {
        String::new()
    } else {
        format!(":\n{}", lines[start..].join("\n"))
    }
}

/// How long any one host command may run before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// Run `argv`, turning every way it can fail into one `CommandError`.
pub fn execute(argv: &[String]) -> Result<(), CommandError> {
    execute_with_timeout(argv, COMMAND_TIMEOUT)
}

/// `execute` with a deadline: a command still running then is killed.
pub fn execute_with_timeout(argv: &[String], timeout: Duration) -> Result<(), CommandError> {
    let (program, args) = argv.split_first().expect("commands are never empty");
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_command(cmd, &argv.join(" "), timeout)
}

/// Run a prepared command with a deadline, turning every way it can fail
/// into one `CommandError` (with the tail of its output).
pub fn run_command(mut cmd: Command, label: &str, timeout: Duration) -> Result<(), CommandError> {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    use wait_timeout::ChildExt;

    let command = label.to_string();
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .process_group(0)
        // Set only so libgit2 skips the CA bundle; children must not inherit it.
        .env_remove("SSL_CERT_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn {
            command: command.clone(),
            source,
        })?;
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let (sender, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = sender.send(text);
    });
    // The child leads its own process group: a timeout kills everything it
    // started (`a && b`, pipelines, background jobs), not just the shell.
    let group = rustix::process::Pid::from_raw(child.id() as i32);
    let kill_group = || {
        if let Some(group) = group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    };
    let status = match child.wait_timeout(timeout) {
        Ok(Some(status)) => status,
        Ok(None) => {
            kill_group();
            let _ = child.wait();
            return Err(CommandError::Timeout {
                command,
                seconds: timeout.as_secs(),
            });
        }
        Err(source) => return Err(CommandError::Spawn { command, source }),
    };
    // Something it left in the background may still hold the pipe: wait a
    // little for the output, then stop those leftovers.
    let stderr = output
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or_else(|_| {
            kill_group();
            output
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_default()
        });
    if !stderr.trim().is_empty() {
        tracing::info!("`{command}` output:\n{}", stderr.trim_end());
    }
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(CommandError::Exit {
            command,
            code,
            stderr,
        }),
        (None, signal) => Err(CommandError::Signal {
            command,
            signal: signal.unwrap_or(0),
            stderr,
        }),
    }
}
