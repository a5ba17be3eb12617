"""Static site build: Markdown posts to HTML with fingerprinted assets.

Output layout::

    index.html                 posts, newest first
    posts/<slug>.html          one page per <content>/posts/<slug>.md
    assets/<name>.<hash><ext>  static files, hash = sha256[:8] of the content

Asset names change whenever their content does, so ``/assets/`` may be
cached as immutable while HTML is revalidated. The build is written to a
temporary directory next to the output and renamed into place at the end;
the output depends only on the input files, never on the time of the build.
"""

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from html import escape
from pathlib import Path
from urllib.parse import quote

from . import markdown
from .config import ConfigError, parse_pairs

SITE_NAME = "MicroBlog"
FRONT_MATTER_FENCE = "---"


class BuildError(Exception):
    """The site could not be built; the message says why."""


@dataclass(frozen=True)
class Post:
    slug: str
    title: str
    published: date
    body_html: str


def split_front_matter(path, lines):
    """Return ``(front matter lines, body lines)`` of a post."""
    if lines and lines[0].rstrip() == FRONT_MATTER_FENCE:
        for index in range(1, len(lines)):
            if lines[index].rstrip() == FRONT_MATTER_FENCE:
                return lines[1:index], lines[index + 1:]
    raise BuildError(f"{path}: malformed front matter: expected a block delimited by '---' lines")


def parse_post(path):
    """Read a Markdown file with a front matter block into a Post."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BuildError(f"{path}: not valid UTF-8: {exc.reason}") from None
    header, body = split_front_matter(path, text.splitlines())
    try:
        meta = parse_pairs(header, str(path))
    except ConfigError as exc:
        raise BuildError(f"malformed front matter: {exc}") from None
    missing = [key for key in ("title", "date") if not meta.get(key)]
    if missing:
        raise BuildError(f"{path}: malformed front matter: missing {', '.join(missing)}")
    try:
        published = date.fromisoformat(meta["date"])
    except ValueError:
        raise BuildError(f"{path}: malformed front matter: date {meta['date']!r} is not YYYY-MM-DD") from None
    return Post(path.stem, meta["title"], published, markdown.render("\n".join(body)))


def post_files(content_dir):
    """Return the sorted ``*.md`` files of ``content_dir``/posts, or of ``content_dir`` itself."""
    content_dir = Path(content_dir)
    posts_dir = content_dir / "posts"
    return sorted((posts_dir if posts_dir.is_dir() else content_dir).glob("*.md"))


def load_posts(content_dir):
    """Parse every post file, newest first (ties broken by slug)."""
    posts = sorted((parse_post(path) for path in post_files(content_dir)), key=lambda post: post.slug)
    posts.sort(key=lambda post: post.published, reverse=True)
    return posts


def fingerprint(path):
    """Return ``path``'s file name with the first 8 hex chars of its sha256 inserted."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    return f"{path.stem}.{digest}{path.suffix}"


def copy_assets(static_dir, assets_dir):
    """Copy static files under fingerprinted names; return {original: fingerprinted}."""
    manifest = {}
    for source in sorted(p for p in static_dir.rglob("*") if p.is_file()):
        relative = source.relative_to(static_dir)
        target = relative.with_name(fingerprint(source))
        (assets_dir / target.parent).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, assets_dir / target)
        manifest[relative.as_posix()] = target.as_posix()
    return manifest


def page(title, body, root, stylesheets):
    """Wrap ``body`` in an HTML document; ``root`` is the relative path to the site root."""
    links = "".join(
        f'  <link rel="stylesheet" href="{escape(root)}assets/{escape(name)}">\n' for name in stylesheets
    )
    return (
        "<!doctype html>\n"
        '<html lang="en">\n'
        "<head>\n"
        '  <meta charset="utf-8">\n'
        f"  <title>{escape(title)}</title>\n"
        f"{links}"
        "</head>\n"
        "<body>\n"
        f'<header><a href="{escape(root)}index.html">{escape(SITE_NAME)}</a></header>\n'
        f"<main>\n{body}</main>\n"
        "</body>\n"
        "</html>\n"
    )


def render_site(posts, out_dir, stylesheets):
    (out_dir / "posts").mkdir()
    for post in posts:
        body = (
            f"<article>\n<h1>{escape(post.title)}</h1>\n"
            f'<p class="date"><time datetime="{post.published}">{post.published}</time></p>\n'
            f"{post.body_html}</article>\n"
        )
        _write(out_dir / "posts" / f"{post.slug}.html", page(post.title, body, "../", stylesheets))
    items = "".join(
        f'<li><time datetime="{post.published}">{post.published}</time> '
        f'<a href="posts/{escape(quote(post.slug))}.html">{escape(post.title)}</a></li>\n'
        for post in posts
    )
    _write(out_dir / "index.html", page(SITE_NAME, f'<ul class="posts">\n{items}</ul>\n', "", stylesheets))


def _write(path, text):
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def build(content_dir, out_dir, static_dir):
    """Build the site from ``content_dir`` and ``static_dir`` into ``out_dir``.

    Return the list of posts built. Raises BuildError on bad input.
    """
    content_dir, out_dir, static_dir = (Path(p).resolve() for p in (content_dir, out_dir, static_dir))
    for label, directory in (("content", content_dir), ("static", static_dir)):
        if not directory.is_dir():
            raise BuildError(f"{label} directory not found: {directory}")
        if directory == out_dir or out_dir in directory.parents:
            raise BuildError(f"refusing to replace {out_dir}: it contains the {label} directory")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp creates it 0700; the output must be servable.
        posts = load_posts(content_dir)
        manifest = copy_assets(static_dir, staging / "assets")
        stylesheets = [manifest[name] for name in manifest if name.endswith(".css")]
        render_site(posts, staging, stylesheets)
        _replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return posts


def _replace_dir(new, target):
    """Move ``new`` to ``target``, removing any previous ``target``."""
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        target.rename(old / target.name)
        new.rename(target)
        shutil.rmtree(old)
    else:
        new.rename(target)
