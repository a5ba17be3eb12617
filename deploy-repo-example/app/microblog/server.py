"""HTTP service: a health check and a small dashboard backed by SQLite.

Routes::

    GET /health      200 "ok <version>", or 503 if the database is unusable
    GET /dashboard   HTML status page; every request is logged in ``visits``

Each request runs in its own thread with its own database connection.
SIGTERM and SIGINT stop the server after in-flight requests finish.
"""

import signal
import sqlite3
import sys
import threading
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from . import db
from .build import post_files


class MicroBlogServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer carrying the application config."""

    daemon_threads = False  # let server_close() wait for in-flight requests

    def __init__(self, address, config):
        self.config = config
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    server_version = "MicroBlog"
    timeout = 10  # seconds; keeps stalled clients from blocking shutdown

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/health":
            self.health()
        elif path in ("/dashboard", "/dashboard/"):
            self.dashboard(path)
        else:
            self.send_text(404, "not found\n")

    def health(self):
        config = self.server.config
        if db.ping(config["database"]):
            self.send_text(200, f"ok {config['version']}\n")
        else:
            self.send_text(503, "db unavailable\n")

    def dashboard(self, path):
        config = self.server.config
        try:
            conn = db.connect(config["database"])
            try:
                db.record_visit(conn, path)
                version = db.schema_version(conn)
                visits = db.recent_visits(conn)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            self.log_error("dashboard: database error: %s", exc)
            self.send_text(503, "db unavailable\n")
            return
        html = render_dashboard(config, len(post_files(config["content_dir"])), version, visits)
        self.send_body(200, "text/html; charset=utf-8", html)

    def send_text(self, status, text):
        self.send_body(status, "text/plain; charset=utf-8", text)

    def send_body(self, status, content_type, text):
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


def render_dashboard(config, post_count, schema_version, visits):
    site = escape(config["site_name"])
    rows = "".join(
        f"<tr><td>{visit_id}</td><td>{escape(at)}</td><td>{escape(path)}</td></tr>\n"
        for visit_id, at, path in visits
    )
    return (
        "<!doctype html>\n"
        '<html lang="en">\n'
        f'<head><meta charset="utf-8"><title>{site} dashboard</title></head>\n'
        "<body>\n"
        f"<h1>{site} dashboard</h1>\n"
        "<dl>\n"
        f"<dt>Posts</dt><dd id=\"posts\">{post_count}</dd>\n"
        f"<dt>Schema version</dt><dd id=\"schema\">{schema_version}</dd>\n"
        f"<dt>App version</dt><dd id=\"version\">{escape(config['version'])}</dd>\n"
        "</dl>\n"
        "<h2>Last visits</h2>\n"
        "<table>\n<tr><th>#</th><th>At (UTC)</th><th>Path</th></tr>\n"
        f"{rows}</table>\n"
        "</body>\n"
        "</html>\n"
    )


def serve(config, address):
    """Serve until SIGTERM or SIGINT; return the process exit status."""
    server = MicroBlogServer(address, config)

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return, and that runs in
        # this (the main) thread, so it has to be called from another one.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print(f"microblog {config['version']} listening on http://{host}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print("microblog stopped", file=sys.stderr, flush=True)
    return 0
