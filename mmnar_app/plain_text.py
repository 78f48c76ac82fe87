"""User-supplied strings (save notes, user names, file names, messages quoting an uploaded file) shown as
text, never as markdown or HTML.

Why: Streamlit renders markdown in st.markdown, st.caption, st.error and the like; a save note holding
`![x](https://outside/pixel.png)` made the reviewer's browser fetch an outside image, and a FHIR file's
content came back as links in an error message. `plain(value)` escapes every character that can start
markup (CommonMark backslash escapes), so the text shows exactly as typed; app wording around it stays
markdown. Every place that shows such a string goes through this one helper.
"""

from __future__ import annotations

import re

# inline markup: emphasis, code, links and images, HTML tags and entities, strikethrough, math, tables;
# an underscore between two letters or digits (snake_case feature names) cannot start emphasis: kept
_INLINE = re.compile(r"([\\`*\[\]<>!~$|&]|(?<![^\W_])_|_(?![^\W_]))")
# block markup at a line's start: headings, quotes (already escaped), lists, rules, setext underlines
_LINE_START = re.compile(r"^(\s*)([#+\-=]|\d+(?=[.)]))", re.MULTILINE)
# GFM autolinks: https://..., www....
_AUTOLINK = re.compile(r"(?i)(?<=[a-z])(:)(//)|\b(www)(\.)")


def plain(value: object) -> str:
    """`value` as a markdown fragment that displays exactly its characters, line breaks kept."""
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    text = _INLINE.sub(r"\\\1", text)
    text = _AUTOLINK.sub(lambda m: f"{m.group(1)}\\/\\/" if m.group(1) else f"{m.group(3)}\\.", text)
    text = _LINE_START.sub(lambda m: f"{m.group(1)}{_escape_start(m.group(2))}", text)
    return text.replace("\n", "  \n")


def _escape_start(token: str) -> str:
    return f"{token}\\" if token.isdigit() else f"\\{token}"  # "1." -> "1\." ; "#" -> "\#"
