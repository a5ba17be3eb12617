"""A tiny Markdown subset rendered to HTML.

Blocks: ``#``/``##``/``###`` headings, ``- `` unordered lists and paragraphs
(separated by blank lines). Inline: ``*em*``, ``**strong**``, ```code```
and ``[text](url)``. All text is HTML-escaped; link URLs are limited to
http(s), mailto and relative targets.
"""

import re
from html import escape

_HEADING = re.compile(r"(#{1,3})\s+(.*)")
_LIST_ITEM = re.compile(r"-\s+(.*)")
_INLINE = re.compile(
    r"`([^`]+)`"                    # `code`
    r"|\[([^\]]+)\]\(([^)\s]+)\)"   # [label](url)
    r"|\*\*(\S(?:.*?\S)?)\*\*"      # **strong**, no space just inside the stars
    r"|\*(\S(?:.*?\S)?)\*"          # *em*, likewise
)
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
_SAFE_SCHEMES = ("http:", "https:", "mailto:")


def render(text):
    """Render Markdown ``text`` to an HTML fragment (one block per line)."""
    blocks = []
    paragraph = []
    items = []

    def flush():
        if paragraph:
            blocks.append(f"<p>{render_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            lis = "".join(f"<li>{render_inline(item)}</li>" for item in items)
            blocks.append(f"<ul>{lis}</ul>")
            items.clear()

    for raw in text.splitlines():
        line = raw.strip()
        heading = _HEADING.fullmatch(line)
        item = _LIST_ITEM.fullmatch(line)
        if heading:
            flush()
            level = len(heading.group(1))
            blocks.append(f"<h{level}>{render_inline(heading.group(2))}</h{level}>")
        elif item:
            if paragraph:
                flush()
            items.append(item.group(1))
        elif line:
            if items:
                flush()
            paragraph.append(line)
        else:
            flush()
    flush()
    return "\n".join(blocks) + "\n" if blocks else ""


def render_inline(text):
    """Render inline markup in ``text``, escaping everything else."""
    out = []
    pos = 0
    for match in _INLINE.finditer(text):
        out.append(escape(text[pos:match.start()]))
        code, label, url, strong, em = match.groups()
        if code is not None:
            out.append(f"<code>{escape(code)}</code>")
        elif label is not None:
            out.append(_link(label, url))
        elif strong is not None:
            out.append(f"<strong>{render_inline(strong)}</strong>")
        else:
            out.append(f"<em>{render_inline(em)}</em>")
        pos = match.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def _link(label, url):
    scheme = _SCHEME.match(url)
    if scheme and scheme.group(0).lower() not in _SAFE_SCHEMES:
        return render_inline(label)
    return f'<a href="{escape(url)}">{render_inline(label)}</a>'
