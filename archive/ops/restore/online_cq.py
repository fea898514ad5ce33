"""InfluxQL text for an online restore: identifiers quoted as influxd quotes them, and a
continuous query's text with its database renamed (``--newdb``).

influxd stores a CQ as the canonical text of its ``CREATE CONTINUOUS QUERY`` statement
(docs/formats.md#snapshotter-protocol-restore). The database appears there in the ``ON`` clause
and as the first part of fully qualified measurements (``db.rp.m``, ``db..m``) after ``INTO`` and
in ``FROM`` lists, subqueries included. Only those places are rewritten, and only where the part
equals the old name: string literals, regular expressions, field names and other databases are
left alone. The text is tokenised (strings, quoted and bare identifiers, regexes, numbers,
punctuation), never searched and replaced.
"""

from __future__ import annotations

import re

_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Words after which ``/`` starts a regular expression rather than a division.
_REGEX_AFTER = {"FROM", "SELECT", "WHERE", "AND", "OR", "NOT", "BY", "ON", "INTO", "HAVING"}
#: Words that end a FROM list.
_FROM_ENDS = {"WHERE", "GROUP", "ORDER", "LIMIT", "OFFSET", "SLIMIT", "SOFFSET", "FILL", "END", "TZ", "INTO"}
#: influxql keywords that a bare identifier may not be (influxql/token.go); quoted when used.
_KEYWORDS = {
    "ALL", "ALTER", "ANALYZE", "ANY", "AS", "ASC", "BEGIN", "BY", "CARDINALITY", "CREATE", "CONTINUOUS",
    "DATABASE", "DATABASES", "DEFAULT", "DELETE", "DESC", "DESTINATIONS", "DIAGNOSTICS", "DISTINCT", "DROP",
    "DURATION", "END", "EVERY", "EXACT", "EXPLAIN", "FIELD", "FOR", "FROM", "GRANT", "GRANTS", "GROUP", "GROUPS",
    "IN", "INF", "INSERT", "INTO", "KEY", "KEYS", "KILL", "LIMIT", "MEASUREMENT", "MEASUREMENTS", "NAME",
    "OFFSET", "ON", "ORDER", "PASSWORD", "POLICY", "POLICIES", "PRIVILEGES", "QUERIES", "QUERY", "READ",
    "REPLICATION", "RESAMPLE", "RETENTION", "REVOKE", "SELECT", "SERIES", "SET", "SHARD", "SHARDS", "SLIMIT",
    "SOFFSET", "STATS", "SUBSCRIPTION", "SUBSCRIPTIONS", "TAG", "TO", "USER", "USERS", "VALUES", "WHERE", "WITH",
    "WRITE", "AND", "OR", "NOT", "TRUE", "FALSE",
}


def quote_ident(name: str) -> str:
    """``name`` as an InfluxQL identifier: bare when influxql allows it, else double-quoted with
    ``\\`` and ``"`` escaped and newlines written as ``\\n`` (influxql ``QuoteIdent``)."""
    if _BARE.match(name) and name.upper() not in _KEYWORDS:
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


class _Tok:
    __slots__ = ("kind", "text", "value")

    def __init__(self, kind: str, text: str, value: str = "") -> None:
        self.kind = kind  # ws, str, qident, ident, regex, num, punct
        self.text = text
        self.value = value


def _unescape(body: str) -> str:
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append("\n" if nxt == "n" else nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _quoted_end(text: str, i: int, quote: str) -> int:
    """Index just past the closing ``quote`` of the literal starting at ``text[i]``."""
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == quote:
            return j + 1
        j += 1
    raise ValueError(f"unterminated {quote} at offset {i}")


def _tokens(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    prev: _Tok | None = None
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            j = i
            while j < len(text) and text[j].isspace():
                j += 1
            toks.append(_Tok("ws", text[i:j]))
            i = j
            continue
        if c in "'\"":
            j = _quoted_end(text, i, c)
            tok = _Tok("str" if c == "'" else "qident", text[i:j], _unescape(text[i + 1:j - 1]))
        elif c == "/" and (
            prev is None or (prev.kind == "punct" and prev.text not in (")",))
            or (prev.kind == "ident" and prev.value.upper() in _REGEX_AFTER)
        ):
            j = _quoted_end(text, i, "/")
            tok = _Tok("regex", text[i:j])
        elif c.isalpha() or c == "_":
            j = i
            while j < len(text) and (text[j].isalnum() or text[j] == "_"):
                j += 1
            tok = _Tok("ident", text[i:j], text[i:j])
        elif c.isdigit():
            j = i
            while j < len(text) and (text[j].isalnum() or text[j] in "._"):
                j += 1
            tok = _Tok("num", text[i:j])
        else:
            two = text[i:i + 2]
            j = i + (2 if two in ("=~", "!~", "!=", "<>", "<=", ">=", "::") else 1)
            tok = _Tok("punct", text[i:j])
        toks.append(tok)
        prev = tok
        i = j
    return toks


def _is_name(t: _Tok) -> bool:
    return t.kind in ("ident", "qident")


def rewrite_cq_database(query: str, old: str, new: str) -> str:
    """``query`` (a stored ``CREATE CONTINUOUS QUERY``) with database ``old`` renamed ``new`` in
    its ``ON`` clause and in every fully qualified measurement after ``INTO`` and in ``FROM``.
    Raises ValueError when the text cannot be tokenised (an unterminated literal)."""
    if old == new:
        return query
    toks = _tokens(query)
    sig = [i for i, t in enumerate(toks) if t.kind != "ws"]
    out = [t.text for t in toks]
    replacement = quote_ident(new)

    def word(k: int) -> str:
        t = toks[sig[k]]
        return t.value.upper() if t.kind == "ident" else ""

    # ON <db>: the first ON after CREATE CONTINUOUS QUERY <name>
    if len(sig) > 5 and [word(0), word(1), word(2)] == ["CREATE", "CONTINUOUS", "QUERY"] and word(4) == "ON":
        t = toks[sig[5]]
        if _is_name(t) and t.value == old:
            out[sig[5]] = replacement
    in_from = 0  # depth-aware: a FROM list is open at these paren depths
    from_depths: set[int] = set()
    depth = 0
    for k in range(len(sig)):
        t = toks[sig[k]]
        w = word(k)
        if t.kind == "punct" and t.text == "(":
            depth += 1
            continue
        if t.kind == "punct" and t.text == ")":
            from_depths.discard(depth)
            depth -= 1
            continue
        if w == "FROM":
            from_depths.add(depth)
        elif w in _FROM_ENDS:
            from_depths.discard(depth)
        in_from = depth in from_depths
        starts_name = w in ("INTO", "FROM") or (in_from and t.kind == "punct" and t.text == ",")
        if not starts_name or k + 3 >= len(sig):
            continue
        # <db> . [<rp>] . <measurement>: three parts, the first one the database
        a = toks[sig[k + 1]]
        if not (_is_name(a) and a.value == old):
            continue
        b = toks[sig[k + 2]]
        if not (b.kind == "punct" and b.text == "."):
            continue
        c = toks[sig[k + 3]]
        if (c.kind == "punct" and c.text == ".") or (
            _is_name(c) and k + 4 < len(sig) and toks[sig[k + 4]].kind == "punct" and toks[sig[k + 4]].text == "."
        ):
            out[sig[k + 1]] = replacement
    return "".join(out)
