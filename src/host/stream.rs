//! A process plumb talks to while it runs (git's ssh transport): its stdin
//! and stdout are the conversation, the end of its stderr is kept for the
//! error, and a silence longer than its deadline, either way, ends it.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::mpsc;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use wait_timeout::ChildExt;

use super::process::{OUTPUT_CAP, ProcessError, collect};

/// How long a process that closed its stdout may take to exit.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// A running process with pipes to its stdin and stdout ([`super::process::Proc::stream`]).
/// Dropping it kills what is left of its process group.
pub struct Stream {
    command: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    stderr: mpsc::Receiver<(Vec<u8>, u64)>,
    /// What stderr held once the process ended, and whether it was cut.
    ended: Option<(String, bool)>,
    silence: Duration,
}

/// `text` with control characters other than newlines and tabs escaped
/// (`\u{1b}`), and `\r\n` as `\n`: safe for a terminal, a log, and the C
/// strings of libgit2's errors.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

impl Stream {
    pub(super) fn new(
        command: String,
        mut child: Child,
        stderr: mpsc::Receiver<(Vec<u8>, u64)>,
        silence: Duration,
    ) -> Stream {
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        Stream {
            command,
            child,
            stdin,
            stdout,
            stderr,
            ended: None,
            silence,
        }
    }

    /// Wait for the process to exit after its stdout closed, and say how
    /// it ended; the error holds what it printed on stderr.
    pub fn finish(&mut self) -> Result<(), ProcessError> {
        self.stdin = None;
        let status = match self.child.wait_timeout(EXIT_GRACE) {
            Ok(Some(status)) => status,
            Ok(None) => {
                self.kill();
                return Err(ProcessError::Timeout {
                    command: self.command.clone(),
                    seconds: EXIT_GRACE.as_secs(),
                    output: self.stderr_text(true),
                });
            }
            Err(source) => {
                return Err(ProcessError::Spawn {
                    command: self.command.clone(),
                    source,
                });
            }
        };
        match (status.code(), status.signal()) {
            (Some(0), _) => Ok(()),
            (Some(code), _) => Err(ProcessError::Exit {
                command: self.command.clone(),
                code,
                output: self.stderr_text(false),
            }),
            (None, signal) => Err(ProcessError::Signal {
                command: self.command.clone(),
                signal: signal.unwrap_or(0),
                output: self.stderr_text(false),
            }),
        }
    }

    /// The end of what it printed on stderr, once it exited (or was
    /// killed), with control characters escaped.
    fn stderr_text(&mut self, killed: bool) -> String {
        let stderr = &self.stderr;
        let (text, _) = self.ended.get_or_insert_with(|| {
            let output = collect(stderr, killed);
            let cut = output.total > OUTPUT_CAP as u64;
            (escape_controls(&output.text), cut)
        });
        text.clone()
    }

    /// Whether stderr was longer than what was kept of it (its start is gone).
    pub fn stderr_cut(&self) -> bool {
        self.ended.as_ref().is_some_and(|(_, cut)| *cut)
    }

    /// Wait until `fd` is ready for `flags`; an error after the silence limit.
    fn ready(&self, fd: BorrowedFd<'_>, flags: PollFlags) -> io::Result<()> {
        let timeout = PollTimeout::try_from(self.silence).unwrap_or(PollTimeout::MAX);
        loop {
            match poll(&mut [PollFd::new(fd, flags)], timeout) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "`{}` was silent for {}s",
                            self.command,
                            self.silence.as_secs()
                        ),
                    ));
                }
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn kill(&mut self) {
        // setsid made it the leader of its own process group.
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ready(self.stdout.as_fd(), PollFlags::POLLIN)?;
        self.stdout.read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(stdin) = &self.stdin else {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "stdin is closed"));
        };
        self.ready(stdin.as_fd(), PollFlags::POLLOUT)?;
        // A pipe ready for writing takes PIPE_BUF bytes without blocking;
        // more could wait without end on a reader that stopped reading.
        let some = &buf[..buf.len().min(nix::libc::PIPE_BUF)];
        self.stdin.as_mut().expect("checked above").write(some)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stdin {
            Some(stdin) => stdin.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // A process that is done exits once its stdin closes; give it a
        // moment, then stop whatever is left.
        self.stdin = None;
        if !matches!(
            self.child.wait_timeout(Duration::from_millis(200)),
            Ok(Some(_))
        ) {
            self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::process::Proc;

    fn sh(script: &str) -> Proc {
        Proc::new(&["/bin/sh".into(), "-c".into(), script.into()])
    }

    #[test]
    fn talks_to_a_process_and_reports_how_it_ended_with_its_stderr() {
        let mut stream = sh(r"read line; echo got $line; printf 'oops\033[2J\000\r\n' >&2; exit 3")
            .stream()
            .unwrap();
        stream.write_all(b"hello\n").unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        assert_eq!(out, "got hello\n");
        match stream.finish() {
            Err(ProcessError::Exit {
                code: 3, output, ..
            }) => {
                // What a server prints reaches no terminal (nor git2's C strings) raw.
                assert_eq!(output, "oops\\u{1b}[2J\\u{0}\n")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_silent_process_times_out_instead_of_hanging() {
        let mut stream = sh("sleep 30")
            .timeout(Duration::from_millis(200))
            .stream()
            .unwrap();
        let started = std::time::Instant::now();
        let error = stream.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(error.to_string().contains("was silent for"), "{error}");
        drop(stream);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
