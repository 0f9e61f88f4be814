"""Escaping for every text format a report is rendered to, in one place.

Report text carries names that come from the user's files: speaker, emotion and session
labels of a manifest, layer names of a model graph, gate names of a policy, paths. Any of
them may hold markup (``<script>``), table syntax (``|``), spreadsheet formulas (``=cmd|``),
control characters or code points that XML 1.0 forbids. Renderers pass every piece of text
through the function for their format, so a label is shown as text and never read as markup:

- Markdown (:func:`markdown`): no raw HTML (CI pages render Markdown's inline HTML), no
  broken table cells, no links or images built from data, one line per cell.
- XML (:func:`xml`): only characters XML 1.0 allows (others are replaced by U+FFFD, so a
  reader still sees that something was there); ElementTree escapes ``<``, ``&`` and quotes.
- HTML (:func:`html`): entities for ``<``, ``>``, ``&`` and both quotes, no control characters.

Example:
    >>> markdown("<script>alert(1)</script> | =cmd|")
    '&lt;script>alert(1)&lt;/script> \\\\| =cmd\\\\|'
    >>> xml("gate\\x00\\x1b[31m") == "gate\\ufffd\\ufffd[31m"
    True
    >>> html('<b title="x">')
    '&lt;b title=&quot;x&quot;&gt;'
"""

from __future__ import annotations

import html as _html
import re

REPLACEMENT = "\ufffd"
# Outside XML 1.0's Char production: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
# Lone surrogates (a JSON report may carry "\ud800") fall outside too.
_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# C0 controls, DEL and C1 controls: in a one-line context they only move the cursor or hide text.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_SPACE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# CommonMark's raw HTML and autolinks start with "<" then a letter, "/", "!" or "?"; "<= 0.5" stays as it is.
_MARKUP = re.compile(r"<(?=[A-Za-z/!?])")
# Inline links and images, and full reference links: "](" and "][" ("[0.31, 0.52]" stays as it is).
_LINK = re.compile(r"\](?=[(\[])")


def xml(text: str) -> str:
    """``text`` with every code point XML 1.0 forbids replaced by U+FFFD (escaping is ElementTree's)."""
    return _XML_FORBIDDEN.sub(REPLACEMENT, text)


def one_line(text: str) -> str:
    """Line breaks and tabs as spaces; other control characters and XML-forbidden code points as U+FFFD."""
    return _CONTROL.sub(REPLACEMENT, re.sub(r"[\r\n\t]+", " ", xml(text)))


def markdown(text: str) -> str:
    """One line of Markdown (a table cell, a bullet, a heading or a paragraph) that shows ``text`` as text."""
    text = one_line(text).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    return _LINK.sub("\\]", _MARKUP.sub("&lt;", text))


def html(text: str) -> str:
    """``text`` as HTML text or attribute value: markup escaped, control characters replaced."""
    return _html.escape(_CONTROL_BUT_SPACE.sub(REPLACEMENT, xml(text)), quote=True)
