"""Find rule files and load them as plain data, keeping the position of every node.

YAML is read with safe-loader semantics (libyaml when present) and then walked
by hand, so that duplicate keys, unknown tags, alias bombs and deep nesting are
refused with the line and column where they occur.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from vmrules.errors import ConfigError, Location, Problem, cut

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_ALIAS_NODES = 100_000    # nodes reached again through aliases; an alias bomb stops here (plain nodes
#                              are bounded by MAX_FILE_BYTES: 40,000 rules in 1.8 MB load in about 2 s)
MAX_DEPTH = 64
RULE_SUFFIXES = (".yaml", ".yml")
PROMETHEUS_SUFFIX = ".rules"           # found in a folder only when it holds `groups:`
_GROUPS_LINE = re.compile(rb"^groups:", re.MULTILINE)

_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """The safe loader with a faster tag resolver (same YAML 1.1 implicit rules, no path resolvers)."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode:
            if implicit[0]:
                for tag, regexp in self.yaml_implicit_resolvers.get(value[:1], ()):   # '': the empty value, null
                    if regexp.match(value):
                        return str(tag)
            return _STR_TAG
        return _MAP_TAG if kind is yaml.MappingNode else _SEQ_TAG


Path = tuple[Any, ...]


@dataclass
class LoadedFile:
    """One rule file: its data and where each value (and each mapping key) sits."""

    path: str
    data: Any
    source: str = ""
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)       # 1-based (line, col)
    key_marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    empty: set[Path] = field(default_factory=set)           # values written as nothing (`key:`): null in YAML
    written: dict[Path, str] = field(default_factory=dict)  # plain values that are no string, as written (`no`, `01`)
    problems: list[Problem] = field(default_factory=list)    # found while loading, the rest still checked

    def where(self, path: Iterable[Any]) -> Location:
        """The location of the value at `path`, or of its nearest ancestor."""
        p = tuple(path)
        while p and p not in self.marks:
            p = p[:-1]
        line, col = self.marks.get(p, (1, 1))
        return Location(self.path, line, col)

    def where_in(self, path: Iterable[Any], offset: int) -> Location:
        """The location of the character `offset` characters into the string value at `path`, in any YAML
        style: quoted (escapes included), plain over several lines, or a block scalar (`|`, `>`)."""
        p = tuple(path)
        loc = self.where(p)
        value: Any = self.data
        for key in p:
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                return loc
        if not isinstance(value, str) or p not in self.marks:
            return loc
        return Location(self.path, *_position_in(self.source, loc.line, loc.col, value, offset))

    def where_key(self, path: Iterable[Any]) -> Location:
        """The location of the key that holds `path` (falls back to the value)."""
        p = tuple(path)
        if p in self.key_marks:
            return Location(self.path, *self.key_marks[p])
        return self.where(p)


def discover(paths: Iterable[str]) -> tuple[list[str], list[Problem]]:
    """Rule files under each path (recursively, sorted); a missing path raises FileNotFoundError.

    A file found in a folder that resolves outside that folder (a symlink to `~/.git-credentials`,
    say) is refused with a problem and never read.
    """
    found: list[str] = []
    refused: list[Problem] = []
    for root in paths:
        if os.path.isfile(root):
            found.append(root)
            continue
        if not os.path.isdir(root):
            raise FileNotFoundError(f"no such file or directory: {root}")
        top = os.path.realpath(root)
        batch = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for f in filenames:
                if f.endswith(RULE_SUFFIXES) or f.endswith(PROMETHEUS_SUFFIX):
                    path = os.path.join(dirpath, f)
                    if os.path.commonpath([top, os.path.realpath(path)]) != top:
                        refused.append(Problem(Location(path), f"refused: a symbolic link to a file outside {root} "
                                                                "(rule files are read only inside the paths given)"))
                    elif f.endswith(RULE_SUFFIXES) or _holds_groups(path):
                        batch.append(path)
        found += sorted(batch)
    return list(dict.fromkeys(found)), refused


def _holds_groups(path: str) -> bool:
    """A `.rules` file found in a folder is read only when a line starts with `groups:` (a Prometheus rule file,
    as Prometheus repositories often name them); other `.rules` files are someone else's."""
    try:
        with open(path, "rb") as f:
            return _GROUPS_LINE.search(f.read(MAX_FILE_BYTES + 1)) is not None
    except OSError:
        return True                    # said when it is read


def load_file(path: str) -> LoadedFile:
    """Read and parse one rule file; raises ConfigError with the first problem."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _error(Location(path), f"cannot read file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _error(Location(path), f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _error(Location(path, line, col), "file is not valid UTF-8") from None
    return load_text(text, path)


def is_prometheus_data(data: Any) -> bool:
    """A Prometheus or vmalert rule file: its top level has `groups:` and no `version:`."""
    return isinstance(data, dict) and "groups" in data and "version" not in data


def load_text(text: str, path: str = "<string>") -> LoadedFile:
    """Parse YAML text into a LoadedFile; raises ConfigError with the first problem.

    A file is its first YAML document. Another one after it is an error in a vmrules file, and a warning in a
    Prometheus rule file, where Prometheus and vmalert read the first and ignore the rest; an empty one (a
    trailing `---`) is nothing."""
    loader = _Loader(text)
    try:
        node = loader.get_node() if loader.check_node() else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        loader.dispose()
        raise _error(loc, f"YAML syntax: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        loader.dispose()
        raise _error(Location(path), f"YAML syntax: {exc}") from None
    except RecursionError:
        loader.dispose()
        raise _error(Location(path), "YAML is nested too deeply") from None
    more = _more_documents(loader, text, node)
    out = LoadedFile(path, None, text)
    if node is not None:
        out.data = _Walker(loader, out).value(node, (), 0)
    if more is not None:
        if is_prometheus_data(out.data):
            out.problems.append(Problem(Location(path, *more), "another YAML document starts here: Prometheus and "
                                        "vmalert read only the first one of a file, and so does vmrules (move its "
                                        "groups into the first, or into a file of their own)", "warning"))
        else:
            out.problems.append(Problem(Location(path, *more), "another YAML document starts here: a rule file is "
                                        "one document (move it into a file of its own)"))
    return out


def _more_documents(loader: Any, text: str, first: yaml.Node | None) -> tuple[int, int] | None:
    """Where a second, non-empty document starts (its `---` line), or None; the loader is disposed of."""
    try:
        while loader.check_node():
            node = loader.get_node()
            if not (isinstance(node, yaml.ScalarNode) and node.tag != _STR_TAG and node.value == ""):
                break
        else:
            return None
    except (yaml.YAMLError, RecursionError):
        pass                                   # a broken second document is a second document all the same
    finally:
        loader.dispose()
    after = first.end_mark.line if first is not None else 0
    lines = text.splitlines()
    line = next((i for i in range(after, len(lines)) if re.match(r"---(\s|$)", lines[i])), after)
    return line + 1, 1


class _Walker:
    """Build plain Python values from composed nodes, recording positions."""

    def __init__(self, loader: Any, out: LoadedFile):
        self.loader = loader
        self.out = out
        self.seen: set[int] = set()      # nodes walked once; meeting one again is an alias expanding it
        self.aliased = 0

    def loc(self, node: yaml.Node) -> Location:
        return Location(self.out.path, node.start_mark.line + 1, node.start_mark.column + 1)

    def value(self, node: yaml.Node, path: Path, depth: int, alias: bool = False) -> Any:
        if alias or id(node) in self.seen:
            alias = True
            self.aliased += 1
            if self.aliased > MAX_ALIAS_NODES:
                raise _error(self.loc(node), f"aliases expand to more than {MAX_ALIAS_NODES} nodes (alias bomb?)")
        else:
            self.seen.add(id(node))
        if depth > MAX_DEPTH:
            raise _error(self.loc(node), f"nesting deeper than {MAX_DEPTH} levels")
        mark = node.start_mark
        self.out.marks[path] = (mark.line + 1, mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR_TAG:
                return node.value
            self.out.written[path] = node.value
            if node.value == "" and node.tag == _NULL_TAG:
                self.out.empty.add(path)
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth, alias)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise _error(self.loc(node), f"unsupported YAML tag {cut(node.tag, 100)}")
            return [self.value(item, path + (i,), depth + 1, alias) for i, item in enumerate(node.value)]
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise _error(self.loc(node), f"unsupported YAML value: {exc.problem}") from None

    def mapping(self, node: yaml.MappingNode, path: Path, depth: int, alias: bool) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            raise _error(self.loc(node), f"unsupported YAML tag {cut(node.tag, 100)}")
        out: dict[str, Any] = {}
        for key_node, value_node, written in self.pairs(node, depth):
            key = key_node.value
            if key in out or key == "<<" and path + (key,) in self.out.key_marks:
                if written:          # said, and the first one kept, so that the rest of the file is checked
                    first = self.out.key_marks[path + (key,)]
                    self.out.problems.append(Problem(self.loc(key_node), f"duplicate key {key!r} (first at line "
                                                                         f"{first[0]})"))
                continue             # a merged key the mapping writes itself, or an earlier merged mapping gave
            mark = key_node.start_mark
            self.out.key_marks[path + (key,)] = (mark.line + 1, mark.column + 1)
            if value_node is not None:
                out[key] = self.value(value_node, path + (key,), depth + 1, alias)
        return out

    def pairs(self, node: yaml.MappingNode, depth: int) -> list[tuple[yaml.Node, yaml.Node | None, bool]]:
        """(key, value, written here) of a mapping, merge keys (`<<: *base`, `<<: [*a, *b]`) expanded as YAML
        does: the keys it writes first, then those of each merged mapping in order (the first one wins). A merge
        key itself comes with no value, so that a second one is a duplicate."""
        own: list[tuple[yaml.Node, yaml.Node | None, bool]] = []
        merged: list[tuple[yaml.Node, yaml.Node | None, bool]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _error(self.loc(key_node), "mapping keys must be plain strings")
            if key_node.value != "<<" or key_node.tag != _MERGE_TAG:
                own.append((key_node, value_node, True))
                continue
            own.append((key_node, None, True))
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode) or source.tag != _MAP_TAG:
                    raise _error(self.loc(source), "a merge key (<<) takes a mapping or a list of mappings")
                if depth > MAX_DEPTH:
                    raise _error(self.loc(source), f"nesting deeper than {MAX_DEPTH} levels")
                found = [(k, v, False) for k, v, _ in self.pairs(source, depth + 1) if v is not None]
                self.aliased += len(found)
                if self.aliased > MAX_ALIAS_NODES:
                    raise _error(self.loc(source), f"aliases expand to more than {MAX_ALIAS_NODES} nodes (alias bomb?)")
                merged += found
        return own + merged


def _position_in(source: str, line: int, col: int, value: str, offset: int) -> tuple[int, int]:
    """(line, col) in `source` of `value[offset]`, the value of the scalar that starts at (line, col).

    The value's non-blank characters appear in the source in order (folding, indentation and escapes
    only change blanks, quotes and backslashes), so each is found after the one before it; an offset on a
    blank or past the end is placed after the last character found before it."""
    starts = [0] + [i + 1 for i, c in enumerate(source) if c == "\n"]
    if line > len(starts):
        return line, col
    i = starts[line - 1] + col - 1
    head = source[i:i + 1]
    if head == '"' and (exact := _double_quoted(source, i + 1, value)) is not None:
        index = exact[offset] if offset < len(exact) else (exact[-1] + 1 if exact else i + 1)
        row = bisect.bisect_right(starts, index) - 1
        return row + 1, index - starts[row] + 1
    if head in ("|", ">"):
        i = source.find("\n", i) + 1 or len(source)
    elif head in ("'", '"'):
        i += 1
    found, found_at, pos = i, -1, i
    for k in range(min(offset, len(value) - 1) + 1):
        c = value[k]
        if c.isspace():
            continue
        j = source.find(c, pos)
        if j < 0:
            break
        found, found_at, pos = j, k, j + 1
    index = found if found_at == offset else found + (offset - found_at if found_at >= 0 else 0)
    row = bisect.bisect_right(starts, index) - 1
    return row + 1, index - starts[row] + 1


_YAML_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
                 "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0",
                 "L": "\u2028", "P": "\u2029"}
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}


def _double_quoted(source: str, i: int, value: str) -> list[int] | None:
    """The source index of each character of a double-quoted scalar whose text starts at `i` (escapes and
    line folding undone as YAML does); None when the result is not `value` (then the caller estimates)."""
    out: list[int] = []
    chars: list[str] = []
    n = len(source)
    while i < n and source[i] != '"' and len(chars) <= len(value):
        c = source[i]
        if c == "\\" and i + 1 < n:
            code = source[i + 1]
            if code == "\n":                       # an escaped line break joins the lines
                i += 2
                while i < n and source[i] in " \t":
                    i += 1
                continue
            if code in _HEX_DIGITS:
                digits = source[i + 2:i + 2 + _HEX_DIGITS[code]]
                try:
                    chars.append(chr(int(digits, 16)))
                except (ValueError, OverflowError):
                    return None
                out.append(i)
                i += 2 + len(digits)
                continue
            chars.append(_YAML_ESCAPES.get(code, code))
            out.append(i)
            i += 2
            continue
        if c in " \t\n":
            j = i
            while j < n and source[j] in " \t":
                j += 1
            if j < n and source[j] == "\n":         # folding: trailing blanks go, a break is a space or newlines
                k, breaks = j, 0
                while k < n and source[k] in " \t\n":
                    breaks += source[k] == "\n"
                    k += 1
                fill = " " if breaks == 1 else "\n" * (breaks - 1)
                chars += fill
                out += [j] * len(fill)
                i = k
                continue
            chars += source[i:j]
            out += range(i, j)
            i = j
            continue
        chars.append(c)
        out.append(i)
        i += 1
    return out if "".join(chars) == value else None


def _error(loc: Location, message: str) -> ConfigError:
    return ConfigError([Problem(loc, message)])
