//! Serving under load, for the tests that switch what nginx serves: an
//! nginx guard, one GET on a fresh connection, and clients in a loop that
//! count every request that did not answer 200.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// nginx master started from a private prefix; SIGTERM on drop.
pub struct Nginx(pub Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// One GET on a fresh connection: (status, body), or the error.
pub fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: e2e.test\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad response {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

pub struct Load {
    stop: Arc<AtomicBool>,
    total: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Two clients in a loop on loopback, bounded in count and time.
pub fn load(port: u16, paths: &[&'static str]) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let threads = paths
        .iter()
        .copied()
        .map(|path| {
            let (stop, total, failed) = (stop.clone(), total.clone(), failed.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(300);
                while !stop.load(Ordering::Relaxed)
                    && Instant::now() < deadline
                    && total.load(Ordering::Relaxed) < 200_000
                {
                    total.fetch_add(1, Ordering::Relaxed);
                    match get(port, path) {
                        Ok((200, _)) => {}
                        Ok((status, body)) => failed
                            .lock()
                            .unwrap()
                            .push(format!("{path}: {status} {body}")),
                        Err(e) => failed.lock().unwrap().push(format!("{path}: {e}")),
                    }
                }
            })
        })
        .collect();
    Load {
        stop,
        total,
        failed,
        threads,
    }
}

impl Load {
    /// Stop the clients; (requests made, the failures).
    pub fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.total.load(Ordering::Relaxed), failed)
    }
}
