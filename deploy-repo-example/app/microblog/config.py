"""Configuration files: a flat YAML subset of ``key: value`` lines.

Blank lines and lines starting with ``#`` are ignored, a value wrapped in
matching single or double quotes is unquoted, and in an unquoted value a
`` #`` starts a trailing comment. Nothing else of YAML is supported.
"""

from pathlib import Path

DEFAULTS = {
    "listen": "127.0.0.1:8000",
    "database": "microblog.db",
    "content_dir": "content",
    "site_name": "MicroBlog",
    "version": "dev",
}

# Keys holding paths; relative values are resolved against the config file.
PATH_KEYS = ("database", "content_dir")


class ConfigError(ValueError):
    """A configuration file (or front matter block) could not be parsed."""


def parse_pairs(lines, source):
    """Parse ``key: value`` lines into a dict; ``source`` names them in errors."""
    pairs = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not key or " " in key:
            raise ConfigError(f"{source}:{number}: expected 'key: value', got {raw.strip()!r}")
        if key in pairs:
            raise ConfigError(f"{source}:{number}: duplicate key {key!r}")
        pairs[key] = _unquote(value.strip())
    return pairs


def _unquote(value):
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value.split(" #", 1)[0].rstrip()


def load(path):
    """Read a config file and return it merged over DEFAULTS."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    values = parse_pairs(text.splitlines(), str(path))
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s): {', '.join(unknown)}")
    config = {**DEFAULTS, **values}
    for key in PATH_KEYS:
        config[key] = str(path.parent / config[key])
    return config


def parse_listen(value):
    """Split ``HOST:PORT`` into ``(host, port)``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"invalid listen address {value!r}, expected HOST:PORT")
    return host, int(port)
