"""Prompt templates: ``{text}`` is the query text, ``{name}`` any string field of the query's
annotation (FashionIQ's ``{c1}``/``{c2}``, COCO's ``{query_class}``/``{others}``). Values are
inserted as data: a brace or a ``*`` inside a caption is never read as part of the template.

A pseudo-word template (Pic2Word's ``*``, SEARLE's ``$``) holds its pseudo-word exactly once as a word
of its own; the slot is that word, wherever the filled-in text puts other ``*`` characters.
"""

from __future__ import annotations

import re
from typing import Mapping

from cirbench.errors import UsageError, short

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill(template: str, text: str, fields: Mapping | None = None) -> str:
    """Put a query's text and string fields into a template (one pass: inserted values are not re-read)."""
    fields = fields or {}

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name == "text":
            return text
        found = fields.get(name)
        if isinstance(found, str):
            return found
        raise UsageError(f"prompt template {short(template)} names {{{name}}}, which this query does not have "
                         f"(it has: text{''.join(', ' + k for k, v in fields.items() if isinstance(v, str))})")

    return PLACEHOLDER.sub(value, template)


def standalone(token: str) -> re.Pattern:
    return re.compile(rf"(?<!\S){re.escape(token)}(?!\S)")


def split_pseudo(template: str, token: str) -> tuple[str, str]:
    """(text before, text after) the template's own pseudo-word; a UsageError unless it holds the word
    exactly once, standing alone ("a photo of * , {text}", not "a photo of *, {text}")."""
    found = list(standalone(token).finditer(template))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise UsageError(f"prompt template {short(template)} holds {what} standalone pseudo-word {token!r}: it must hold "
                         f"it exactly once as its own word (write 'a photo of {token} , {{text}}', not "
                         f"'a photo of {token}, {{text}}')")
    match = found[0]
    return template[:match.start()], template[match.end():]


def fill_pseudo(template: str, token: str, text: str, fields: Mapping | None = None) -> tuple[str, str]:
    """(prompt, prefix): the filled prompt and the filled text before its pseudo-word slot."""
    before, after = split_pseudo(template, token)
    prefix = fill(before, text, fields)
    return prefix + token + fill(after, text, fields), prefix


def with_token(template: str, old: str, new: str) -> str:
    """The template with its standalone pseudo-word ``old`` written as ``new`` (Pic2Word's * as SEARLE's $)."""
    return standalone(old).sub(new, template)
