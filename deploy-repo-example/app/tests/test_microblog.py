"""Tests for MicroBlog; run from the repository root with
``python3 -m unittest discover -s deploy-repo-example/app/tests``."""

import contextlib
import hashlib
import io
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.error
import urllib.request
from pathlib import Path

APP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(APP))

from microblog import build, cli, config, db, markdown, server  # noqa: E402

CONTENT = APP / "content"
STATIC = APP / "static"


def run_cli(*argv):
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(list(argv))
    return status, out.getvalue(), err.getvalue()


def tree(root):
    """Map every file under ``root`` (relative posix path) to its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class MarkdownTest(unittest.TestCase):
    def test_blocks(self):
        html = markdown.render("# One\n## Two\n### Three\n#### Four\n\nfirst line\nsecond line\n\n- a\n- b\n")
        self.assertEqual(
            html,
            "<h1>One</h1>\n<h2>Two</h2>\n<h3>Three</h3>\n<p>#### Four</p>\n"
            "<p>first line second line</p>\n<ul><li>a</li><li>b</li></ul>\n",
        )

    def test_inline(self):
        self.assertEqual(
            markdown.render_inline("*em* **strong** `x` [site](https://example.com/?a=1&b=2)"),
            '<em>em</em> <strong>strong</strong> <code>x</code> '
            '<a href="https://example.com/?a=1&amp;b=2">site</a>',
        )
        self.assertEqual(markdown.render_inline("**a *b* c**"), "<strong>a <em>b</em> c</strong>")
        self.assertEqual(markdown.render_inline("2 * 3 * 4 ** 2"), "2 * 3 * 4 ** 2")

    def test_code_is_literal(self):
        self.assertEqual(markdown.render_inline("`*a* <b>`"), "<code>*a* &lt;b&gt;</code>")

    def test_escaping(self):
        html = markdown.render('<script>alert("x")</script> & [x](/a"onclick=1)')
        self.assertNotIn("<script>", html)
        self.assertIn("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp;", html)
        self.assertIn('href="/a&quot;onclick=1"', html)

    def test_unsafe_link_scheme_dropped(self):
        self.assertEqual(markdown.render_inline("[click](javascript:alert(1))"), "click)")
        self.assertEqual(markdown.render_inline("[click](JavaScript:x)"), "click")
        self.assertEqual(markdown.render_inline("[mail](mailto:a@b.c)"), '<a href="mailto:a@b.c">mail</a>')

    def test_empty(self):
        self.assertEqual(markdown.render(""), "")


class ConfigTest(unittest.TestCase):
    def test_load(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "app.yaml")
            path.write_text(
                "# comment\n\nlisten: 127.0.0.1:9000\ndatabase: 'data/mb.db'\n"
                'site_name: "My # blog"\nversion: 1.2.3  # trailing comment\n'
            )
            settings = config.load(path)
        self.assertEqual(settings["listen"], "127.0.0.1:9000")
        self.assertEqual(settings["database"], str(Path(tmp, "data/mb.db")))
        self.assertEqual(settings["content_dir"], str(Path(tmp, "content")))
        self.assertEqual(settings["site_name"], "My # blog")
        self.assertEqual(settings["version"], "1.2.3")

    def test_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "app.yaml")
            path.write_text("no colon here\n")
            with self.assertRaisesRegex(config.ConfigError, r"app\.yaml:1"):
                config.load(path)
            path.write_text("lisen: 1\n")
            with self.assertRaisesRegex(config.ConfigError, "unknown key"):
                config.load(path)

    def test_parse_listen(self):
        self.assertEqual(config.parse_listen("0.0.0.0:80"), ("0.0.0.0", 80))
        for bad in ("8000", "host:", "host:http", "host:70000"):
            with self.assertRaises(config.ConfigError):
                config.parse_listen(bad)


class BuildTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.out = self.tmp / "site"

    def test_output(self):
        status, stdout, _ = run_cli("build", "--content", str(CONTENT), "--out", str(self.out), "--static", str(STATIC))
        self.assertEqual(status, 0)
        self.assertIn("built 2 post(s)", stdout)
        digest = hashlib.sha256((STATIC / "style.css").read_bytes()).hexdigest()[:8]
        asset = f"style.{digest}.css"
        self.assertEqual(
            sorted(tree(self.out)),
            [f"assets/{asset}", "index.html", "posts/hello-plumb.html", "posts/zero-downtime.html"],
        )
        index = (self.out / "index.html").read_text()
        self.assertIn(f'href="assets/{asset}"', index)
        self.assertLess(index.index("zero-downtime.html"), index.index("hello-plumb.html"))  # newest first
        post = (self.out / "posts/hello-plumb.html").read_text()
        self.assertIn(f'href="../assets/{asset}"', post)
        self.assertIn("<title>Hello, plumb</title>", post)
        self.assertIn("<strong>first</strong>", post)
        self.assertEqual(os.stat(self.out).st_mode & 0o777, 0o755)

    def test_deterministic_and_replaces_old_output(self):
        build.build(CONTENT, self.out, STATIC)
        first = tree(self.out)
        (self.out / "stale.html").write_text("old")
        build.build(CONTENT, self.out, STATIC)
        self.assertEqual(tree(self.out), first)
        self.assertEqual(sorted(p.name for p in self.tmp.iterdir()), ["site"])  # no temp dirs left

    def test_malformed_front_matter(self):
        content = self.tmp / "content"
        (content / "posts").mkdir(parents=True)
        (content / "posts" / "good.md").write_text("---\ntitle: Good\ndate: 2026-01-01\n---\nhi\n")
        build.build(content, self.out, STATIC)
        before = tree(self.out)
        cases = {
            "no-fence.md": "title: x\n",
            "unclosed.md": "---\ntitle: x\ndate: 2026-01-01\n",
            "bad-line.md": "---\njust words\n---\n",
            "no-date.md": "---\ntitle: x\n---\n",
            "bad-date.md": "---\ntitle: x\ndate: yesterday\n---\n",
        }
        for name, text in cases.items():
            with self.subTest(name):
                bad = content / "posts" / name
                bad.write_text(text)
                status, _, stderr = run_cli(
                    "build", "--content", str(content), "--out", str(self.out), "--static", str(STATIC)
                )
                bad.unlink()
                self.assertEqual(status, 1)
                self.assertIn(str(bad), stderr)
                self.assertIn("malformed front matter", stderr)
                self.assertEqual(tree(self.out), before)  # old output untouched
        self.assertEqual(sorted(p.name for p in self.tmp.iterdir()), ["content", "site"])

    def test_refuses_to_replace_input(self):
        with self.assertRaisesRegex(build.BuildError, "refusing"):
            build.build(CONTENT, APP, STATIC)


class UpgradeDbTest(unittest.TestCase):
    def test_idempotent(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "nested", "dir", "mb.db")
            for _ in range(2):
                status, stdout, _ = run_cli("upgrade-db", "--database", str(path))
                self.assertEqual(status, 0)
                self.assertEqual(stdout, f"database at schema version {len(db.MIGRATIONS)}\n")
            with contextlib.closing(sqlite3.connect(path)) as conn:
                tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                self.assertEqual(tables, {"visits", "posts_meta"})
                self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], 2)

    def test_partial_upgrade_and_config(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "mb.db")
            with contextlib.closing(sqlite3.connect(path)) as conn:  # a database at version 1
                conn.execute(db.MIGRATIONS[0])
                conn.execute("PRAGMA user_version = 1")
                conn.commit()
            Path(tmp, "app.yaml").write_text("database: mb.db\n")
            status, stdout, _ = run_cli("upgrade-db", "--config", str(Path(tmp, "app.yaml")))
            self.assertEqual((status, stdout), (0, "database at schema version 2\n"))


class ServeTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.database = Path(tmp.name, "mb.db")
        self.settings = {
            **config.DEFAULTS,
            "database": str(self.database),
            "content_dir": str(CONTENT),
            "site_name": "Test <blog>",
            "version": "1.0-test",
        }
        self.httpd = server.MicroBlogServer(("127.0.0.1", 0), self.settings)
        self.base = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        quiet = contextlib.redirect_stderr(io.StringIO())  # request logs
        quiet.__enter__()
        self.addCleanup(quiet.__exit__, None, None, None)
        thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(self.httpd.server_close)
        self.addCleanup(self.httpd.shutdown)

    def get(self, path):
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as response:
                return response.status, response.headers["Content-Type"], response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()

    def test_health(self):
        self.assertEqual(self.get("/health"), (503, "text/plain; charset=utf-8", "db unavailable\n"))
        db.upgrade(self.database)
        self.assertEqual(self.get("/health"), (200, "text/plain; charset=utf-8", "ok 1.0-test\n"))

    def test_dashboard(self):
        self.assertEqual(self.get("/dashboard")[0], 503)  # no database yet
        db.upgrade(self.database)
        self.assertEqual(self.get("/dashboard")[0], 200)
        status, content_type, body = self.get("/dashboard/")
        self.assertEqual((status, content_type), (200, "text/html; charset=utf-8"))
        self.assertIn("Test &lt;blog&gt; dashboard", body)
        self.assertIn('<dd id="posts">2</dd>', body)
        self.assertIn('<dd id="schema">2</dd>', body)
        self.assertIn('<dd id="version">1.0-test</dd>', body)
        self.assertEqual(re.findall(r"<td>(/dashboard/?)</td>", body), ["/dashboard/", "/dashboard"])

    def test_not_found(self):
        self.assertEqual(self.get("/nope")[0], 404)
        self.assertEqual(self.get("/")[0], 404)


class ServeProcessTest(unittest.TestCase):
    def test_sigterm_exits_cleanly(self):
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp, "app.yaml")
            conf.write_text(f"database: mb.db\ncontent_dir: {CONTENT}\nversion: proc\n")
            self.assertEqual(run_cli("upgrade-db", "--config", str(conf))[0], 0)
            proc = subprocess.Popen(
                [sys.executable, str(APP / "bin" / "microblog"), "serve", "--config", str(conf),
                 "--listen", "127.0.0.1:0"],
                stderr=subprocess.PIPE, text=True,
            )
            try:
                banner = proc.stderr.readline()
                port = int(re.search(r":(\d+)$", banner.strip()).group(1))
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    self.assertEqual(response.read(), b"ok proc\n")
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=10), 0)
                rest = proc.stderr.read()
                self.assertIn('"GET /health HTTP/1.1" 200', rest)
                self.assertIn("microblog stopped", rest)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stderr.close()


if __name__ == "__main__":
    unittest.main()
