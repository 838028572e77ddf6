"""Migration statements as objects: the shapes svcpulse's migrations use, parsed from their SQL.

Every statement of pipeline/migrations/*.sql is one of CreateTable, CreateView (a materialized view
with TO, or a plain view), AlterTable or DropTable, always naming tables with their database
(`$db.table`). A single server runs the SQL as written; pipeline/cluster.py builds the cluster forms
from these objects and the per-table facts it declares. The parser is a scanner that knows quotes
and parentheses, not a pattern over the whole text; a statement of any other shape is refused with
its first words, so a new kind of migration statement fails loudly instead of slipping through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COLUMN_ACTIONS = ("ADD COLUMN", "DROP COLUMN", "MODIFY COLUMN", "RENAME COLUMN", "CLEAR COLUMN", "COMMENT COLUMN")


class DdlError(ValueError):
    """A migration statement this module cannot turn into an object; the message quotes it."""


@dataclass(frozen=True)
class Name:
    database: str
    table: str

    def __str__(self) -> str:
        return f"{self.database}.{self.table}"


@dataclass(frozen=True)
class CreateTable:
    name: Name
    columns: str  # the column list without its parentheses
    engine: str  # MergeTree, AggregatingMergeTree, ReplacingMergeTree, ...
    engine_args: str  # inside the engine's parentheses ("" when it has none)
    clauses: str  # PARTITION BY ... ORDER BY ... [SETTINGS ...]


@dataclass(frozen=True)
class CreateView:
    name: Name
    materialized: bool
    target: Name | None  # TO <table>: every materialized view has one, a plain view none
    select: str  # the SELECT after AS
    sources: tuple[tuple[int, int, Name], ...]  # (start, end, name) of each table the SELECT reads


@dataclass(frozen=True)
class AlterTable:
    name: Name
    actions: str

    @property
    def changes_columns(self) -> bool:
        """True when the table's columns change (a Distributed table over it must follow)."""
        words = " ".join(self.actions.upper().split())
        return any(action in words for action in _COLUMN_ACTIONS)


@dataclass(frozen=True)
class DropTable:
    name: Name
    kind: str  # TABLE or VIEW


Statement = CreateTable | CreateView | AlterTable | DropTable


class _Scanner:
    """Reads a statement left to right: keywords, qualified names, balanced parentheses."""

    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0

    def skip_space(self) -> None:
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1

    def keywords(self, *words: str) -> bool:
        """Consume the words if they come next (case-insensitive), else leave the position alone."""
        start = self.at
        for word in words:
            self.skip_space()
            found = _IDENTIFIER.match(self.text, self.at)
            if not found or found[0].upper() != word:
                self.at = start
                return False
            self.at = found.end()
        return True

    def name(self) -> Name:
        self.skip_space()
        found = re.compile(r"([A-Za-z_]\w*)\.([A-Za-z_]\w*)").match(self.text, self.at)
        if not found:
            raise DdlError(f"expected database.table at {self.text[self.at:self.at + 40]!r} "
                           "(migrations name tables as $db.table)")
        self.at = found.end()
        return Name(found[1], found[2])

    def parenthesized(self) -> str:
        """The text inside the parentheses that open here."""
        self.skip_space()
        if not self.text.startswith("(", self.at):
            raise DdlError(f"expected ( at {self.text[self.at:self.at + 40]!r}")
        end = closing_parenthesis(self.text, self.at)
        inside, self.at = self.text[self.at + 1:end], end + 1
        return inside

    def rest(self) -> str:
        return self.text[self.at:].strip()


def closing_parenthesis(text: str, opening: int) -> int:
    """Index of the parenthesis closing the one at `opening`; quotes and backticks are skipped."""
    depth, at, quote = 0, opening, ""
    while at < len(text):
        char = text[at]
        if quote:
            if char == "\\":
                at += 1
            elif char == quote:
                quote = ""
        elif char in "'`\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return at
        at += 1
    raise DdlError(f"unbalanced parentheses in {text[opening:opening + 60]!r}")


def table_references(select: str) -> tuple[tuple[int, int, Name], ...]:
    """Qualified tables a SELECT reads: the db.table right after FROM or JOIN, outside quotes."""
    found, at, quote = [], 0, ""
    keyword = re.compile(r"\b(FROM|JOIN)\s+([A-Za-z_]\w*)\.([A-Za-z_]\w*)\b", re.IGNORECASE)
    while at < len(select):
        char = select[at]
        if quote:
            at += 2 if char == "\\" else 1
            quote = "" if char == quote else quote
            continue
        if char in "'`\"":
            quote, at = char, at + 1
            continue
        match = keyword.match(select, at)
        if match and (at == 0 or not (select[at - 1].isalnum() or select[at - 1] == "_")):
            found.append((match.start(2), match.end(3), Name(match[2], match[3])))
            at = match.end()
        else:
            at += 1
    return tuple(found)


def _create_table(scan: _Scanner) -> CreateTable:
    scan.keywords("IF", "NOT", "EXISTS")
    name = scan.name()
    columns = scan.parenthesized()
    if not scan.keywords("ENGINE"):
        raise DdlError(f"CREATE TABLE {name}: expected (columns) ENGINE = ...")
    scan.skip_space()
    scan.at += scan.text.startswith("=", scan.at)
    scan.skip_space()
    engine = _IDENTIFIER.match(scan.text, scan.at)
    if not engine:
        raise DdlError(f"CREATE TABLE {name}: no engine name")
    scan.at = engine.end()
    scan.skip_space()
    args = scan.parenthesized() if scan.text.startswith("(", scan.at) else ""
    return CreateTable(name, columns.strip(), engine[0], args.strip(), scan.rest())


def _create_view(scan: _Scanner, materialized: bool) -> CreateView:
    scan.keywords("IF", "NOT", "EXISTS")
    name = scan.name()
    target = scan.name() if scan.keywords("TO") else None
    if materialized and target is None:
        raise DdlError(f"materialized view {name}: give it TO <table> (a table of its own is created by a migration "
                       "statement; an inner ENGINE has no cluster form)")
    if not scan.keywords("AS"):
        raise DdlError(f"CREATE VIEW {name}: expected [TO db.table] AS SELECT ...")
    select = scan.rest()
    return CreateView(name, materialized, target, select, table_references(select))


def parse(statement: str) -> Statement:
    """The object one migration statement describes."""
    scan = _Scanner(statement.strip())
    if scan.keywords("CREATE", "TABLE"):
        return _create_table(scan)
    if scan.keywords("CREATE", "MATERIALIZED", "VIEW"):
        return _create_view(scan, materialized=True)
    if scan.keywords("CREATE", "VIEW"):
        return _create_view(scan, materialized=False)
    if scan.keywords("ALTER", "TABLE"):
        name = scan.name()
        return AlterTable(name, scan.rest())
    for kind in ("TABLE", "VIEW"):
        if scan.keywords("DROP", kind):
            scan.keywords("IF", "EXISTS")
            return DropTable(scan.name(), kind)
    raise DdlError(f"no object form for statement {statement.strip()[:80]!r}: migrations may CREATE TABLE, "
                   "CREATE [MATERIALIZED] VIEW, ALTER TABLE or DROP TABLE/VIEW (see pipeline/ddl.py)")
