"""Pair names as people type them (NFC, everyday punctuation) and the ASCII keys derived from them.

macOS hands folder names over in NFD ('É' as 'E' + U+0301), Linux and most manifests in NFC: the
same name must give the same pair id, so ids are NFC-normalised before they are checked or used.
Prefect artifact keys allow only [a-z0-9-]: they keep the letters of accented names ('café' ->
'cafe') and end in a short hash of the exact name and its output, so no two clips share one.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Optional

# Besides letters, digits and marks of any script: what photo folders are really called (curly
# quotes and dashes come from word processors and macOS autocorrect), and still a plain relative name.
PUNCTUATION = frozenset(" ._-(),+'&!" "\u2013\u2014\u2018\u2019\u201c\u201d\u00ab\u00bb")
_SHOWN = "letters, digits, spaces, . _ - – — ( ) , + ' ’ “ ” « » & !"


def normalize_name(name: str) -> str:
    """The NFC form of a name: one spelling for what a user sees as one name."""
    return unicodedata.normalize("NFC", name)


def _allowed(char: str) -> bool:
    return char in PUNCTUATION or unicodedata.category(char)[0] in "LNM"


def describe(char: str) -> str:
    """A character as it can be told apart in a message: U+200B ZERO WIDTH SPACE."""
    return f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')}"


def check_pair_id(pair_id: str) -> Optional[str]:
    """Why `pair_id` (already NFC) is not a safe relative name, or None. Odd characters are named by
    code point, since the name printed as it is may look identical to an accepted one."""
    odd = sorted({c for c in pair_id if c != "/" and not _allowed(c)})
    parts = pair_id.split("/")
    if not odd and all(p.strip(" .") and p == p.strip() for p in parts):
        return None
    detail = f"; it contains {', '.join(describe(c) for c in odd)}" if odd else ""
    return (f"pair id {pair_id!r} is not a safe relative name ({_SHOWN} and / between non-empty parts; "
            f"no '..', no leading or trailing spaces){detail}")


def slug(name: str, limit: int = 60) -> str:
    """Lowercase ASCII letters, digits and dashes, accents folded into their base letters ('Été' -> 'ete')."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")[:limit].strip("-")


def artifact_key(prefix: str, name: str, *salt: str) -> str:
    """A Prefect artifact key for `name`: readable slug + a short hash of the exact name and `salt`
    (e.g. the output URI), so 'café' and 'cafe', or one pair id in two archives, never share a key."""
    h = hashlib.sha256("\0".join((normalize_name(name), *salt)).encode()).hexdigest()[:10]
    return "-".join(p for p in (prefix, slug(name), h) if p)
