"""SQLite storage: schema migrations and the visit log.

The schema version lives in ``PRAGMA user_version``. Migration N (1-based)
is ``MIGRATIONS[N - 1]``; each runs in its own transaction together with
the version bump, so an interrupted upgrade never leaves a half-applied step.
"""

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

MIGRATIONS = (
    "CREATE TABLE visits (id INTEGER PRIMARY KEY, at TEXT, path TEXT)",
    "CREATE TABLE posts_meta (slug TEXT PRIMARY KEY, views INTEGER NOT NULL DEFAULT 0)",
)


def connect(path, create=False):
    """Open the database; unless ``create`` is set, a missing file is an error."""
    mode = "rwc" if create else "rw"
    uri = f"{Path(path).absolute().as_uri()}?mode={mode}"
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5)


def schema_version(conn):
    return conn.execute("PRAGMA user_version").fetchone()[0]


def upgrade(path):
    """Apply pending migrations to the database at ``path``; return its version."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path, create=True)
    try:
        for version, statement in enumerate(MIGRATIONS, start=1):
            # BEGIN IMMEDIATE takes the write lock before reading the version,
            # so concurrent upgrades cannot both apply the same migration.
            conn.execute("BEGIN IMMEDIATE")
            try:
                if schema_version(conn) < version:
                    conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {version}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return schema_version(conn)
    finally:
        conn.close()


def ping(path):
    """Return True if the database can be opened and queried."""
    try:
        conn = connect(path)
        try:
            conn.execute("SELECT 1").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return True


def record_visit(conn, path):
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    conn.execute("INSERT INTO visits (at, path) VALUES (?, ?)", (at, path))


def recent_visits(conn, limit=10):
    """Return the newest ``limit`` visits as ``(id, at, path)`` tuples."""
    return conn.execute(
        "SELECT id, at, path FROM visits ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()
