//! The first deploy on a host without its certificate yet: the site goes
//! live over HTTP (answering ACME challenges from outside the releases),
//! nothing is quarantined, and the run after the certificate appears
//! enables TLS (HTTP/2, HSTS, the redirect), on IPv4 and IPv6.

use super::Host;

/// `curl` over plain HTTP to ADDRESS with the site's name: status and body.
fn http(host: &Host, address: &str, path: &str) -> (String, String) {
    let out = host.c.ok(&format!(
        "curl -s --max-time 5 -o /tmp/body -w '%{{http_code}}' -H 'Host: blog.example.com' \
         'http://{address}{path}'; echo; cat /tmp/body"
    ));
    let (status, body) = out.split_once('\n').unwrap_or((&out, ""));
    (status.to_string(), body.to_string())
}

/// The answer once nginx's reload has settled: `systemctl reload nginx`
/// returns while the old workers may still answer for a moment.
fn settled(host: &Host, path: &str, done: impl Fn(&(String, String)) -> bool) -> (String, String) {
    let started = std::time::Instant::now();
    loop {
        let answer = http(host, "127.0.0.1", path);
        if done(&answer) || started.elapsed() > std::time::Duration::from_secs(5) {
            return answer;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_first_deploy_goes_live_over_http_and_tls_follows_the_certificate() {
    let host = Host::without_certificate("");
    let run = host.reconcile().ok();
    assert!(
        run.stderr
            .contains("no certificate at /etc/letsencrypt/live/blog.example.com/fullchain.pem yet"),
        "{}",
        run.stderr
    );
    // Live over HTTP, on IPv4 and IPv6, and the challenge directory served.
    let (status, page) = settled(&host, "/", |(_, page)| page.contains("MicroBlog"));
    assert_eq!(status, "200", "{page}");
    assert!(page.contains("MicroBlog"), "{page}");
    assert_eq!(http(&host, "[::1]", "/").0, "200");
    host.c.ok(
        "mkdir -p /var/lib/plumb/acme/.well-known/acme-challenge && \
         echo token-1 > /var/lib/plumb/acme/.well-known/acme-challenge/t1",
    );
    assert_eq!(
        http(&host, "127.0.0.1", "/.well-known/acme-challenge/t1"),
        ("200".to_string(), "token-1\n".to_string())
    );
    let status = host.c.ok("plumb status");
    assert!(
        status.contains("tls: microblog is served over HTTP until"),
        "{status}"
    );
    assert!(status.contains("quarantine: none"), "{status}");
    // Nothing changes while the certificate is missing.
    let run = host.reconcile().ok();
    assert!(run.stdout.contains("up to date"), "{}", run.stdout);

    // certbot did its work: the next run turns TLS on.
    host.issue_certificate();
    let release = host.current();
    let run = host.reconcile().ok();
    assert!(run.stdout.contains("reload nginx"), "{}", run.stdout);
    assert_ne!(host.current(), release, "a new release for the same commit");
    let (status, _) = settled(&host, "/", |(status, _)| status == "301");
    assert_eq!(status, "301");
    // Renewals keep working over HTTP.
    assert_eq!(
        http(&host, "127.0.0.1", "/.well-known/acme-challenge/t1").0,
        "200"
    );
    let (status, page) = host.https("/", "");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("strict-transport-security"),
        "{page}"
    );
    let version = host
        .c
        .ok("curl -sk --http2 -o /dev/null -w '%{http_version}' \
         --resolve blog.example.com:443:127.0.0.1 https://blog.example.com/");
    assert_eq!(version.trim(), "2");
    let v6 = host.c.ok("curl -sk -o /dev/null -w '%{http_code}' -g \
         --resolve 'blog.example.com:443:[::1]' https://blog.example.com/");
    assert_eq!(v6.trim(), "200");
    let status = host.c.ok("plumb status");
    assert!(!status.contains("tls:"), "{status}");
    assert!(host.reconcile().ok().stdout.contains("up to date"));
}
