"""Command line interface: ``microblog serve | build | upgrade-db``."""

import argparse
import sqlite3
import sys

from . import build, config, db, server


def cmd_serve(args):
    settings = config.load(args.config)
    address = config.parse_listen(args.listen or settings["listen"])
    return server.serve(settings, address)


def cmd_build(args):
    posts = build.build(args.content, args.out, args.static)
    print(f"built {len(posts)} post(s) into {args.out}")
    return 0


def cmd_upgrade_db(args):
    path = args.database or config.load(args.config)["database"]
    print(f"database at schema version {db.upgrade(path)}")
    return 0


def make_parser():
    parser = argparse.ArgumentParser(prog="microblog", description="A tiny blog: build, serve, migrate.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP server (/health, /dashboard)")
    serve.add_argument("--config", required=True, metavar="FILE", help="config file")
    serve.add_argument("--listen", metavar="HOST:PORT", help="override the config's listen address")
    serve.set_defaults(func=cmd_serve)

    site = commands.add_parser("build", help="render the static site")
    site.add_argument("--content", default="content", metavar="DIR", help="content directory (default: %(default)s)")
    site.add_argument("--out", default="build", metavar="DIR", help="output directory (default: %(default)s)")
    site.add_argument("--static", default="static", metavar="DIR", help="static assets (default: %(default)s)")
    site.set_defaults(func=cmd_build)

    upgrade = commands.add_parser("upgrade-db", help="create or migrate the SQLite database")
    target = upgrade.add_mutually_exclusive_group(required=True)
    target.add_argument("--database", metavar="FILE", help="database file")
    target.add_argument("--config", metavar="FILE", help="config file naming the database")
    upgrade.set_defaults(func=cmd_upgrade_db)
    return parser


def main(argv=None):
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except (config.ConfigError, build.BuildError, sqlite3.Error, OSError) as exc:
        print(f"microblog {args.command}: error: {exc}", file=sys.stderr)
        return 1
