"""Go text/template, rendered as Prometheus renders alert labels and annotations.

`parse(text)` gives a `Template` or raises `GoTemplateError` (0-based offset, message) for anything
outside the subset rendered here: actions with pipelines and variables, `if`/`else if`/`else`,
`with`, `range` over labels, Go's functions (`printf`, `print`, `eq`... `and`, `or`, `not`, `len`,
`index`, `html`, `urlquery`) and Prometheus' and vmalert's that need no server (`humanize`,
`humanize1024`, `humanizePercentage`, `humanizeDuration`, `humanizeTimestamp`, `title`,
`toUpper`, `toLower`, `reReplaceAll`, `match`, `stripPort`, `stripDomain`, `parseDuration`,
`queryEscape`...). `query` and the functions reading its answer, `define`/`template`, `tmpl` are
refused: a template is rendered or it is a problem, never copied out as it is.

`Template.render(data)` runs it on the data Prometheus gives an alert (`Labels`, `Value`,
`ExternalLabels`, `ExternalURL`, with `$labels`, `$value`, `$externalLabels`, `$externalURL`), the
missing map keys read as "" (Prometheus' missingkey=zero); values print as Go's fmt prints them. A
failure at run time raises `GoTemplateError` (Prometheus would put "<error expanding template: ...>"
into the label).
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any


class GoTemplateError(Exception):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


VARIABLES = ("$labels", "$value", "$externalLabels", "$externalURL", "$expr")
_FIELDS = {"Labels": "$labels", "Value": "$value", "ExternalLabels": "$externalLabels",
           "ExternalURL": "$externalURL", "Expr": "$expr"}
_VMALERT_ONLY = ("$alertID", "$groupID", "$activeAt", "$for", "$isPartial")
_NOT_RENDERED = {
    "query": "it queries the server at each evaluation", "first": "it reads a query's answer",
    "label": "it reads a query's answer", "value": "it reads a query's answer",
    "strvalue": "it reads a query's answer", "sortByLabel": "it reads a query's answer",
    "tmpl": "templates by name are not rendered", "graphLink": "it needs the server's external URL",
    "tableLink": "it needs the server's external URL", "pathPrefix": "it needs the server's external URL",
    "externalURL": "it needs the server's external URL", "js": "JavaScript escaping is not rendered",
    "call": "there are no functions to call", "slice": "there are no lists", "toTime": "it makes a Go time",
    "toDuration": "it makes a Go duration", "args": "templates by name are not rendered",
    "safeHtml": "it is for HTML pages", "now": "it depends on when the alert is evaluated",
    "parseDurationTime": "it makes a Go duration",
}


# -- values as Go's fmt prints them --------------------------------------------------------------------------------
def go_float(v: float) -> str:
    """A float that is not finite as Go prints it."""
    return "NaN" if math.isnan(v) else "+Inf" if v > 0 else "-Inf"


def _shortest(v: float) -> tuple[str, int]:
    """The shortest digits that read back as v, and the decimal exponent of the first digit."""
    t = Decimal(repr(abs(v))).normalize().as_tuple()
    digits = "".join(map(str, t.digits)) or "0"
    return digits, len(t.digits) + int(t.exponent) - 1


def _shortest_g(v: float, verb: str = "g") -> str:
    if v == 0:
        return "-0" if math.copysign(1, v) < 0 else "0"
    digits, exp = _shortest(v)
    sign = "-" if v < 0 else ""
    if exp < -4 or exp >= 6:                  # strconv's 'g' with the shortest digits
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        e = "e" if verb == "g" else "E"
        return f"{sign}{mant}{e}{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    if exp + 1 >= len(digits):
        return sign + digits + "0" * (exp + 1 - len(digits))
    return f"{sign}{digits[:exp + 1]}.{digits[exp + 1:]}"


def go_print(v: Any) -> str:
    """A value as {{ v }} (fmt.Sprint of one operand) prints it."""
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _shortest_g(v) if math.isfinite(v) else go_float(v)
    if isinstance(v, complex):
        return _complex(v, "g", "", None)
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{go_print(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def _complex(v: complex, verb: str, flags: str, prec: int | None) -> str:
    """fmt's complex: (real+imagi), each part a float with this verb, the imaginary part always signed."""
    return f"({_verb(verb, flags, prec, v.real)}{_verb(verb, flags.replace(' ', '') + '+', prec, v.imag)}i)"


def _type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, complex):
        return "complex128"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        return "map[string]string"
    return "<nil>"


def go_quote(s: str) -> str:
    """strconv.Quote."""
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif c.isprintable() or c == " ":
            out.append(c)
        elif ord(c) < 0x80:
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v"}.get(c, f"\\x{ord(c):02x}"))
        elif ord(c) < 0x10000:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    return "".join(out) + '"'


_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d*))?([a-zA-Z%])")


def sprintf(fmt: str, args: list[Any]) -> str:
    """fmt.Sprintf for the verbs templates use."""
    out: list[str] = []
    pos = 0
    used = 0
    size = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if prec and int(prec) > MAX_CHARS:
            raise ValueError(f"error calling printf: a precision over {MAX_CHARS:,} (refused)")
        if verb == "%":
            out.append("%")
            continue
        if used >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[used]
        used += 1
        out.append(_pad(_verb(verb, flags, None if prec is None else int(prec or 0), arg),
                        flags, int(width) if width else 0, verb, arg))
        size += len(out[-1])
        if size > MAX_CHARS:
            raise ValueError(f"error calling printf: more than {MAX_CHARS:,} characters (refused)")
    out.append(fmt[pos:])
    if used < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{_type(a)}={go_print(a)}" for a in args[used:]) + ")")
    return "".join(out)


def _bad(verb: str, arg: Any) -> str:
    return f"%!{verb}({_type(arg)}={go_print(arg)})"


def _verb(verb: str, flags: str, prec: int | None, arg: Any) -> str:
    sign = "+" if "+" in flags else " " if " " in flags else ""
    if verb == "v":
        return _sign(go_print(arg), sign, arg) if isinstance(arg, (int, float)) and not isinstance(arg, bool) \
            else go_print(arg)
    if isinstance(arg, bool):
        return go_print(arg) if verb == "t" else _bad(verb, arg)
    if isinstance(arg, complex):
        return _complex(arg, verb, flags, prec) if verb in "eEfFgG" else _bad(verb, arg)
    if isinstance(arg, float):
        if verb in "eEfFgG":
            if not math.isfinite(arg):
                return _sign(go_float(arg), sign, arg)
            if verb in "gG":
                text = _shortest_g(arg, verb.lower()) if prec is None else f"%{sign}.{prec or 1}{verb}" % arg
                return text if prec is not None else _sign(text if verb == "g" else text.upper(), sign, arg)
            return f"%{sign}.{6 if prec is None else prec}{verb}" % arg
        return _bad(verb, arg)
    if isinstance(arg, int):
        table = {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}
        if verb in table:
            return format(arg, sign + table[verb])
        if verb == "c":
            return chr(arg)
        if verb == "q":
            return "'" + go_quote(chr(arg))[1:-1].replace("'", "\\'") + "'"
        return _bad(verb, arg)
    if isinstance(arg, str):
        if verb == "s":
            return arg if prec is None else arg[:prec]
        if verb == "q":
            return go_quote(arg)
        if verb in "xX":
            return arg.encode().hex() if verb == "x" else arg.encode().hex().upper()
        return _bad(verb, arg)
    if isinstance(arg, Mapping) and verb in "sq":
        return "map[" + " ".join(f"{_verb(verb, flags, prec, k)}:{_verb(verb, flags, prec, arg[k])}"
                                 for k in sorted(arg)) + "]"
    return _bad(verb, arg)


def _sign(text: str, sign: str, v: float) -> str:
    return sign + text if sign and not text.startswith(("-", "+")) else text


def _pad(text: str, flags: str, width: int, verb: str, arg: Any) -> str:
    if width > MAX_CHARS:
        raise ValueError(f"error calling printf: a width over {MAX_CHARS:,} (refused)")
    if len(text) >= width:
        return text
    if "-" in flags:
        return text.ljust(width)
    if "0" in flags and isinstance(arg, (int, float)) and not isinstance(arg, bool) and verb not in "sqv" \
            and math.isfinite(arg):
        head = text[0] if text[:1] in "+- " else ""
        return head + text[len(head):].rjust(width - len(head), "0")
    return text.rjust(width)


# -- the functions ------------------------------------------------------------------------------------------------
def _float(v: Any, name: str) -> float:
    """prometheus/common's ConvertToFloat."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"error calling {name}: can't convert {_type(v)} to float")
    if isinstance(v, str):
        try:
            return _parse_float(v)
        except ValueError:
            raise ValueError(f'error calling {name}: strconv.ParseFloat: parsing "{v}": invalid syntax') from None
    return float(v)


_DECIMAL = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_HEX_FLOAT = re.compile(r"[-+]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][-+]?\d+")


def _parse_float(s: str) -> float:
    """strconv.ParseFloat(s, 64), for the forms templates meet: decimal, hex with p exponent, Inf, NaN."""
    if s.lower().lstrip("+-") in ("inf", "infinity", "nan") or _DECIMAL.fullmatch(s):
        return float(s)
    if _HEX_FLOAT.fullmatch(s):
        return float.fromhex(s)
    raise ValueError(s)


def _g4(x: float) -> str:
    """fmt's %.4g."""
    return format(x, ".4g") if math.isfinite(x) else go_float(x)


def humanize(v: Any) -> str:
    x = _float(v, "humanize")
    if x == 0 or not math.isfinite(x):
        return _g4(x)
    prefix = ""
    if abs(x) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(x) < 1000:
                break
            prefix, x = p, x / 1000
    else:
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(x) >= 1:
                break
            prefix, x = p, x * 1000
    return _g4(x) + prefix


def humanize1024(v: Any) -> str:
    x = _float(v, "humanize1024")
    if abs(x) <= 1 or not math.isfinite(x):
        return _g4(x)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(x) < 1024:
            break
        prefix, x = p, x / 1024
    return _g4(x) + prefix


def humanize_percentage(v: Any) -> str:
    x = _float(v, "humanizePercentage") * 100
    return _g4(x) + "%"


def humanize_duration(v: Any) -> str:
    x = _float(v, "humanizeDuration")
    if not math.isfinite(x):
        return go_float(x)
    if x == 0:
        return "0s"
    if abs(x) >= 1:
        sign = "-" if x < 0 else ""
        whole = int(abs(x)) if abs(x) < 2 ** 63 else -2 ** 63      # Go's int64() of a float out of range
        secs, mins, hours, days = _rem(whole, 60), _rem(_quo(whole, 60), 60), _rem(_quo(whole, 3600), 24), \
            _quo(whole, 86400)
        if days:
            return f"{sign}{days}d {hours}h {mins}m {secs}s"
        if hours:
            return f"{sign}{hours}h {mins}m {secs}s"
        if mins:
            return f"{sign}{mins}m {secs}s"
        return sign + _g4(abs(x)) + "s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(x) >= 1:
            break
        prefix, x = p, x * 1000
    return _g4(x) + prefix + "s"


def _quo(a: int, b: int) -> int:
    """Go's integer division (toward zero)."""
    return -(-a // b) if a < 0 else a // b


def _rem(a: int, b: int) -> int:
    return a - b * _quo(a, b)


def humanize_timestamp(v: Any) -> str:
    import datetime as dt

    x = _float(v, "humanizeTimestamp")
    if not math.isfinite(x):
        return go_float(x)
    t = dt.datetime.fromtimestamp(0, dt.UTC) + dt.timedelta(microseconds=round(x * 1e6))
    frac = f"{t.microsecond:06d}".rstrip("0")
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac}" if frac else "") + " +0000 UTC"


def _string(v: Any, name: str, i: int = 0) -> str:
    if not isinstance(v, str):
        raise ValueError(f"wrong type for value; expected string; got {_type(v)}" if name == "" else
                         f"error calling {name}: wrong type for value; expected string; got {_type(v)}")
    return v


def title(s: Any) -> str:
    text = _string(s, "title")
    return re.sub(r"(?<![\w’])([^\W\d_])", lambda m: m.group(1).upper(), text)


@lru_cache(maxsize=256)
def _groups(pattern: str) -> tuple[dict[str, int], int]:
    """The pattern's group names and count; it must compile in RE2, the engine that runs it (as `where`)."""
    from vmrules.expr import _regex_problem

    try:
        problem = _regex_problem(pattern)
        if problem:
            raise ValueError(f"regexp: {problem}")
        compiled = re.compile(pattern)
    except re.error:
        return {}, 9
    except RecursionError:
        raise ValueError("regexp: the expression nests too deeply (refused)") from None
    return dict(compiled.groupindex), compiled.groups


def _re2(values: list[str], pattern: str, replacement: str | None = None) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(values, pa.string())
    if replacement is None:
        return pc.match_substring_regex(array, pattern=pattern).to_pylist()[0]
    return pc.replace_substring_regex(array, pattern=pattern, replacement=replacement).to_pylist()[0]


def re_replace_all(pattern: Any, repl: Any, text: Any) -> str:
    """Go's regexp.ReplaceAllString: $1, ${1}, ${name} in repl; a group that does not exist is ""."""
    names, groups = _groups(_string(pattern, "reReplaceAll"))
    template = _string(repl, "reReplaceAll")
    rewrite = []
    i = 0
    while i < len(template):
        c = template[i]
        g = re.compile(r"\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+)").match(template, i + 1) if c == "$" else None
        if c == "$" and template[i + 1:i + 2] == "$":
            rewrite.append("$")
            i += 2
        elif g is not None:
            name = g.group(1) or g.group(2)
            index = int(name) if name.isdigit() else names.get(name, -1)
            if index > 9:
                raise ValueError(f"error calling reReplaceAll: ${name}: vmrules renders groups 0 to 9")
            if 0 <= index <= groups:
                rewrite.append(f"\\{index}")
            i = g.end()
        else:
            rewrite.append("\\\\" if c == "\\" else c)
            i += 1
    value = _string(text, "reReplaceAll")
    literal = len(template) - 2 * template.count("$")
    if len(value) + (len(value) + 1) * max(literal, 0) + len(value) * template.count("$") > MAX_CHARS:
        raise ValueError(f"error calling reReplaceAll: it may give more than {MAX_CHARS:,} characters (refused)")
    return str(_re2([value], pattern, "".join(rewrite)))


def match(pattern: Any, text: Any) -> bool:
    _groups(_string(pattern, "match"))
    return bool(_re2([_string(text, "match")], pattern))


def _split_host_port(s: str) -> tuple[str, str] | None:
    if s.startswith("["):
        m = re.fullmatch(r"\[([^\]]*)\]:([^:]*)", s)
        return (m.group(1), m.group(2)) if m else None
    if s.count(":") != 1:
        return None
    host, port = s.split(":")
    return host, port


def strip_port(s: Any) -> str:
    text = _string(s, "stripPort")
    parts = _split_host_port(text)
    return text if parts is None else parts[0]


def strip_domain(s: Any) -> str:
    import ipaddress

    text = _string(s, "stripDomain")
    parts = _split_host_port(text)
    host, port = parts if parts is not None else (text, "")
    try:
        ipaddress.ip_address(host)
        return text
    except ValueError:
        pass
    host = host.split(".")[0]
    if port:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host


_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_DURATION_MS = (31_536_000_000, 604_800_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


def parse_duration(s: Any) -> float:
    """Prometheus' model.ParseDurationAllowNegative, in seconds."""
    text = _string(s, "parseDuration")
    body = text[1:] if text.startswith("-") else text
    m = _DURATION.fullmatch(body)
    if body == "0":
        return 0.0
    if not body or m is None:
        raise ValueError(f'error calling parseDuration: not a valid duration string: "{text}"')
    ms = sum(int(n) * unit for n, unit in zip(m.groups(), _DURATION_MS, strict=True) if n)
    return (-ms if text.startswith("-") else ms) / 1000


def html_escape(*args: Any) -> str:
    text = _sprint(*args)
    return (text.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("\x00", "\ufffd"))


def _truth(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, (bool, int, float, complex, str, Mapping, list)):
        return bool(v)
    return True


def _kinds(name: str, a: Any, b: Any) -> str:
    """Go's basic kinds for eq and lt: bool and complex compare only for equality, different kinds never."""
    ka, kb = _type(a), _type(b)
    if not {ka, kb} <= {"bool", "int", "float64", "complex128", "string"} \
            or ka in ("bool", "complex128") and name not in ("eq", "ne"):
        raise ValueError(f"error calling {name}: invalid type for comparison")
    if ka != kb:
        raise ValueError(f"error calling {name}: incompatible types for comparison")
    return ka


def _lt(name: str, a: Any, b: Any) -> bool:
    """Go's lt; le, gt and ge are made of it and eq as Go makes them (so gt NaN 1.0 is true)."""
    _kinds(name, a, b)
    return bool(a < b)


def _eq(a: Any, *rest: Any) -> bool:
    if not rest:
        raise ValueError("error calling eq: missing argument for comparison")
    return any(_kinds("eq", a, b) and a == b for b in rest)


def _sprint(*args: Any) -> str:
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_print(a))
    return "".join(out)


def _index(m: Any, *keys: Any) -> Any:
    for k in keys:
        if not isinstance(m, Mapping):
            raise ValueError(f"error calling index: can't index item of type {_type(m)}")
        if not isinstance(k, str):
            raise ValueError(f"error calling index: value has type {_type(k)}; should be string")
        m = m.get(k, "")
    return m


def _len(v: Any) -> int:
    if isinstance(v, (str, Mapping)):
        return len(v.encode()) if isinstance(v, str) else len(v)
    raise ValueError(f"error calling len: len of type {_type(v)}")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "eq": _eq, "ne": lambda a, b: not _eq(a, b), "lt": lambda a, b: _lt("lt", a, b),
    "le": lambda a, b: _lt("le", a, b) or _eq(a, b), "gt": lambda a, b: not (_lt("gt", a, b) or _eq(a, b)),
    "ge": lambda a, b: not _lt("ge", a, b), "not": lambda a: not _truth(a),
    "len": _len, "index": _index, "print": _sprint,
    "println": lambda *a: " ".join(go_print(x) for x in a) + "\n",
    "printf": lambda f, *a: sprintf(_string(f, "printf"), list(a)),
    "html": html_escape, "urlquery": lambda *a: urllib.parse.quote_plus(_sprint(*a), safe=""),
    "humanize": humanize, "humanize1024": humanize1024, "humanizePercentage": humanize_percentage,
    "humanizeDuration": humanize_duration, "humanizeTimestamp": humanize_timestamp,
    "title": title, "toUpper": lambda s: _string(s, "toUpper").upper(),
    "toLower": lambda s: _string(s, "toLower").lower(), "reReplaceAll": re_replace_all, "match": match,
    "stripPort": strip_port, "stripDomain": strip_domain, "parseDuration": parse_duration,
    "urlQueryEscape": lambda s: urllib.parse.quote_plus(_string(s, "urlQueryEscape"), safe=""),
    "queryEscape": lambda s: urllib.parse.quote_plus(_string(s, "queryEscape"), safe=""),
    "pathEscape": lambda s: urllib.parse.quote(_string(s, "pathEscape"), safe=""),
    "quotesEscape": lambda s: go_quote(_string(s, "quotesEscape"))[1:-1],
    "jsonEscape": lambda s: go_quote(_string(s, "jsonEscape")),
    "htmlEscape": lambda s: html_escape(_string(s, "htmlEscape")),
    "crlfEscape": lambda s: _string(s, "crlfEscape").replace("\r", "\\r").replace("\n", "\\n"),
}
_SHORT_CIRCUIT = ("and", "or")


# -- parsing ------------------------------------------------------------------------------------------------------
_UNSIGNED = (r"(?:0[xX][0-9a-fA-F_]*\.?[0-9a-fA-F_]*[pP][-+]?[0-9_]+|0[xX][0-9a-fA-F_]+|0[oObB][0-7_]+"
             r"|[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?)")
_TOKEN = re.compile(r'''(?P<space>\s+)|(?P<str>"(?:[^"\\\n]|\\.)*")|(?P<raw>`[^`]*`)|(?P<char>'(?:[^'\\\n]|\\.)+')'''
                    r"|(?P<decl>:=)|(?P<assign>=)|(?P<pipe>\|)|(?P<open>\()|(?P<close>\))|(?P<comma>,)"
                    r"|(?P<var>\$[A-Za-z0-9_]*)(?P<vfields>(?:\.[A-Za-z0-9_]+)*)"
                    r"|(?P<fields>\.[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)"
                    rf"|(?P<num>[-+]?{_UNSIGNED}(?:[-+]{_UNSIGNED})?i?)|(?P<dot>\.)"
                    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class _Tok:
    kind: str
    text: str
    at: int
    fields: tuple[str, ...] = ()


@dataclass
class _Arg:
    kind: str                     # lit | var | field | dot | func | pipe
    at: int
    value: Any = None             # the literal, the variable's name, the function's name, or a _Pipe
    fields: tuple[str, ...] = ()


@dataclass
class _Pipe:
    at: int
    cmds: list[list[_Arg]]
    decl: tuple[str, ...] = ()
    assign: bool = False


@dataclass
class _Node:
    kind: str                     # text | action | if | with | range | break | continue
    at: int
    text: str = ""
    pipe: _Pipe | None = None
    body: list[_Node] = field(default_factory=list)
    other: list[_Node] = field(default_factory=list)


@dataclass
class Template:
    """A parsed template; `uses_value`: it reads the sample's value (so renders per sample, not per series)."""

    text: str
    nodes: list[_Node]
    uses_value: bool

    def render(self, data: Mapping[str, Any]) -> str:
        out = _Out()
        scope = {"$": data, **{v: data.get(f) for f, v in _FIELDS.items()}}
        _run(self.nodes, data, [scope], out)
        return "".join(out)


def parse(text: str) -> Template:
    """The template, or GoTemplateError at the first problem (Go's parse errors and what is not rendered)."""
    return _parse_cached(text)


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Template:
    items = _split(text)
    parser = _Parser(items)
    nodes = parser.block(top=True)
    return Template(text, nodes, parser.uses_value)


def _split(text: str) -> list[tuple[str, int, Any]]:
    """Text pieces and action token lists, with Go's {{- and -}} trimming."""
    items: list[tuple[str, int, Any]] = []
    pos = 0
    trim_next = False
    while True:
        start = text.find("{{", pos)
        chunk = text[pos:start if start >= 0 else len(text)]
        if trim_next:
            chunk = chunk.lstrip(" \t\r\n")
        if start < 0:
            if chunk:
                items.append(("text", pos, chunk))
            return items
        inner = start + 2
        left = text.startswith("- ", inner) or text.startswith("-\t", inner) or text.startswith("-\n", inner)
        if left:
            chunk = chunk.rstrip(" \t\r\n")
            inner += 1
        if chunk:
            items.append(("text", pos, chunk))
        body_start = inner
        if left:
            inner += 1                      # {{- /* ... */ -}}; without the dash the comment follows {{ at once
        if text.startswith("/*", inner):
            close = text.find("*/", inner + 2)
            if close < 0:
                raise GoTemplateError(start, "unclosed comment")
            rest = re.match(r"(?:[ \t\r\n](-))?}}", text[close + 2:])
            if rest is None:
                raise GoTemplateError(close, "comment ends before closing delimiter")
            trim_next = bool(rest.group(1))
            pos = close + 2 + rest.end()
            continue
        tokens, end, trim_next = _lex(text, body_start, start)
        items.append(("action", start, tokens))
        pos = end


def _lex(text: str, i: int, start: int) -> tuple[list[_Tok], int, bool]:
    tokens: list[_Tok] = []
    while True:
        if i >= len(text):
            raise GoTemplateError(start, "unclosed action")
        m = re.compile(r"[ \t\r\n]+-}}").match(text, i)
        if m or text.startswith("}}", i):
            return tokens, (m.end() if m else i + 2), bool(m)
        m = _TOKEN.match(text, i)
        if m is None:
            raise GoTemplateError(i, f"unexpected {text[i]!r} in a template action")
        kind = m.lastgroup or ""
        if kind == "vfields":
            kind = "var"
        if kind == "space":
            pass
        elif kind == "var":
            tokens.append(_Tok("var", m.group("var"), i, tuple(f for f in m.group("vfields").split(".") if f)))
        elif kind == "fields":
            tokens.append(_Tok("fields", m.group(), i, tuple(f for f in m.group().split(".") if f)))
        else:
            tokens.append(_Tok(kind, m.group(), i))
        i = m.end()
        if kind == "close":                   # (pipeline).Field
            f = re.compile(r"(?:\.[A-Za-z0-9_]+)+").match(text, i)
            if f:
                tokens[-1].fields = tuple(x for x in f.group().split(".") if x)
                i = f.end()


class _Parser:
    def __init__(self, items: list[tuple[str, int, Any]]) -> None:
        self.items = items
        self.i = 0
        self.uses_value = False
        self.scopes: list[set[str]] = [set(VARIABLES) | {"$"}]
        self.loops = 0
        self.opened: list[int] = []

    def block(self, top: bool = False) -> list[_Node]:
        nodes: list[_Node] = []
        while self.i < len(self.items):
            kind, at, payload = self.items[self.i]
            if kind == "text":
                nodes.append(_Node("text", at, text=payload))
                self.i += 1
                continue
            tokens: list[_Tok] = payload
            if not tokens:
                raise GoTemplateError(at, "missing value for command")
            word = tokens[0].text if tokens[0].kind == "ident" else ""
            if word in ("end", "else"):
                if top:
                    raise GoTemplateError(tokens[0].at, f"unexpected {{{{{word}}}}}")
                return nodes
            self.i += 1
            if word in ("if", "with", "range"):
                nodes.append(self.control(word, at, tokens))
            elif word in ("break", "continue"):
                if not self.loops:
                    raise GoTemplateError(tokens[0].at, f"{{{{{word}}}}} outside {{{{range}}}}")
                nodes.append(_Node(word, at))
            elif word in ("define", "template", "block"):
                raise GoTemplateError(tokens[0].at, f"{{{{ {word} }}}} is not rendered by vmrules (named templates)")
            else:
                nodes.append(_Node("action", at, pipe=self.pipeline(tokens, at, decl_ok=True)))
        if not top:
            raise GoTemplateError(self.opened[-1], "unexpected EOF: this action has no {{end}}")
        return nodes

    def control(self, word: str, at: int, tokens: list[_Tok]) -> _Node:
        """if/with/range up to its {{end}} (an `else if` chain shares it); variables live until the end."""
        if len(tokens) < 2:
            raise GoTemplateError(tokens[0].at, f"missing value for {word}")
        self.scopes.append(set())
        self.opened.append(at)
        if len(self.opened) > MAX_DEPTH:
            raise GoTemplateError(at, f"actions nested more than {MAX_DEPTH} deep (refused)")
        try:
            pipe = self.pipeline(tokens[1:], tokens[0].at, decl_ok=True, range_decl=word == "range")
            self.loops += word == "range"
            node = _Node(word, at, pipe=pipe, body=self.block())
            self.loops -= word == "range"
            _, eat, etokens = self.items[self.i]
            self.i += 1
            if etokens[0].text == "else" and len(etokens) > 1:
                if etokens[1].text != word or word == "range":
                    raise GoTemplateError(etokens[1].at, f"unexpected {etokens[1].text!r} after else")
                node.other = [self.control(word, eat, etokens[1:])]
                return node
            if etokens[0].text == "else":
                node.other = self.block()
                _, eat, etokens = self.items[self.i]
                self.i += 1
                if etokens[0].text != "end":
                    raise GoTemplateError(etokens[0].at, "expected {{end}}")
            if len(etokens) > 1:
                raise GoTemplateError(etokens[1].at, "unexpected token after end")
            return node
        finally:
            self.scopes.pop()
            self.opened.pop()

    def pipeline(self, tokens: list[_Tok], at: int, decl_ok: bool = False, range_decl: bool = False) -> _Pipe:
        decl: tuple[str, ...] = ()
        assign = False
        if decl_ok and len(tokens) > 1 and tokens[0].kind == "var" and not tokens[0].fields:
            if tokens[1].kind in ("decl", "assign"):
                decl, assign, tokens = (tokens[0].text,), tokens[1].kind == "assign", tokens[2:]
            elif range_decl and tokens[1].kind == "comma" and len(tokens) > 3 and tokens[2].kind == "var" \
                    and tokens[3].kind == "decl":
                decl, tokens = (tokens[0].text, tokens[2].text), tokens[4:]
        if assign and not any(decl[0] in s for s in self.scopes):
            raise GoTemplateError(at, f"undefined variable: {decl[0]}")
        if decl and not tokens:
            raise GoTemplateError(at, "missing value for command")
        pipe = _Pipe(at, self.commands(tokens, at), decl, assign)
        if decl and not assign:
            self.scopes[-1].update(decl)
        return pipe

    def commands(self, tokens: list[_Tok], at: int) -> list[list[_Arg]]:
        depth = 0
        groups: list[list[_Tok]] = [[]]
        for t in tokens:
            if t.kind == "pipe" and depth == 0:
                groups.append([])
                continue
            depth += t.kind == "open"
            depth -= t.kind == "close"
            if depth < 0:
                raise GoTemplateError(t.at, "unexpected right paren")
            if depth > MAX_DEPTH:
                raise GoTemplateError(t.at, f"parentheses nested more than {MAX_DEPTH} deep (refused)")
            groups[-1].append(t)
        if depth:
            raise GoTemplateError(tokens[-1].at if tokens else at, "unclosed left paren")
        cmds: list[list[_Arg]] = []
        for n, g in enumerate(groups):
            if not g:
                raise GoTemplateError(at, "missing command in a pipeline")
            cmd = self.operands(g)
            if n and cmd[0].kind != "func":
                raise GoTemplateError(cmd[0].at, "non executable command in pipeline stage")
            if len(cmd) > 1 and cmd[0].kind not in ("func",):
                raise GoTemplateError(cmd[1].at, f"can't give argument to non-function {cmd[0].kind}")
            _types(cmd, piped_value=bool(n) and _is_value(cmds[-1][-1]) and len(cmds[-1]) == 1)
            cmds.append(cmd)
        return cmds

    def operands(self, tokens: list[_Tok]) -> list[_Arg]:
        args: list[_Arg] = []
        i = 0
        while i < len(tokens):
            t = tokens[i]
            if t.kind == "open":
                depth, j = 1, i + 1
                while depth:
                    depth += tokens[j].kind == "open"
                    depth -= tokens[j].kind == "close"
                    j += 1
                inner = tokens[i + 1:j - 1]
                if not inner:
                    raise GoTemplateError(t.at, "missing value for parenthesized pipeline")
                args.append(_Arg("pipe", t.at, _Pipe(t.at, self.commands(inner, t.at)), tokens[j - 1].fields))
                i = j
                continue
            args.append(self.operand(t, first=not args))
            i += 1
        return args

    def operand(self, t: _Tok, first: bool) -> _Arg:
        if t.kind == "var":
            if t.text in _VMALERT_ONLY and not any(t.text in s for s in self.scopes):
                raise GoTemplateError(t.at, f"{t.text} is not rendered by vmrules (vmalert's, of its running alerts)")
            if not any(t.text in s for s in self.scopes):
                raise GoTemplateError(t.at, f"undefined variable: {t.text}")
            if t.text in ("$value", "$") and (t.text == "$value" or t.fields[:1] == ("Value",)):
                self.uses_value = True
            if t.text == "$" and t.fields and t.fields[0] not in _FIELDS:
                raise GoTemplateError(t.at, f"can't evaluate field {t.fields[0]} (fields: {', '.join(_FIELDS)})")
            return _Arg("var", t.at, t.text, t.fields)
        if t.kind == "fields":
            self.uses_value = True                        # the dot may be the data or anything with/range set
            return _Arg("field", t.at, None, t.fields)
        if t.kind == "dot":
            self.uses_value = True
            return _Arg("dot", t.at)
        if t.kind == "ident":
            if t.text in ("true", "false"):
                return _Arg("lit", t.at, t.text == "true")
            if t.text == "nil":
                raise GoTemplateError(t.at, "nil is not a command")
            if t.text in FUNCTIONS or t.text in _SHORT_CIRCUIT:
                return _Arg("func", t.at, t.text)
            if t.text in _NOT_RENDERED:
                raise GoTemplateError(t.at, f"function {t.text!r} is not rendered by vmrules ({_NOT_RENDERED[t.text]})")
            if t.text in ("if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"):
                raise GoTemplateError(t.at, f"unexpected keyword {t.text!r} in a pipeline")
            raise GoTemplateError(t.at, f"function {t.text!r} not defined")
        if t.kind == "str":
            return _Arg("lit", t.at, _unquote(t.text, t.at))
        if t.kind == "raw":
            return _Arg("lit", t.at, t.text[1:-1])
        if t.kind == "char":
            s = _unquote('"' + t.text[1:-1].replace('"', '\\"') + '"', t.at)
            if len(s) != 1:
                raise GoTemplateError(t.at, f"malformed character constant: {t.text}")
            return _Arg("lit", t.at, ord(s))
        if t.kind == "num":
            return _Arg("lit", t.at, _number(t.text, t.at))
        raise GoTemplateError(t.at, f"unexpected {t.text!r} in operand")


_COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")
_STRING_ONLY = ("toUpper", "toLower", "title", "reReplaceAll", "match", "stripPort", "stripDomain",
                "parseDuration", "urlQueryEscape", "queryEscape", "pathEscape", "quotesEscape", "jsonEscape",
                "htmlEscape", "crlfEscape")


def _is_value(a: _Arg) -> bool:
    return a.kind == "var" and (a.value == "$value" and not a.fields or a.value == "$" and a.fields == ("Value",))


def _types(cmd: list[_Arg], piped_value: bool) -> None:
    """The calls that fail on every sample, found before any is rendered: $value (a float) compared with an
    integer, or given where a string must be."""
    if cmd[0].kind != "func":
        return
    name, args = str(cmd[0].value), cmd[1:]
    has_value = piped_value or any(_is_value(a) for a in args)
    if name in _COMPARISONS and has_value:
        for a in args:
            if a.kind == "lit" and isinstance(a.value, int) and not isinstance(a.value, bool):
                raise GoTemplateError(a.at, f"{name} compares $value (a float) with the integer {a.value}: Go "
                                      f"refuses it at every evaluation; write {a.value}.0")
    if name in _STRING_ONLY and has_value:
        at = next((a.at for a in args if _is_value(a)), cmd[0].at)
        raise GoTemplateError(at, f"{name} takes a string; $value is a float (Go refuses it at every evaluation)")


def _number(text: str, at: int) -> int | float | complex:
    """A number as Go's parser reads it: an int (within int64: Go refuses a larger one where it is used), a
    float64 (finite) or, ending in i, a complex128 (1i, 1+2i: its parts decimal floats); underscores only between
    digits, after a base prefix."""
    if text.endswith("i"):
        body = text[:-1]
        try:
            if re.search(r"[_xXoObB]", body):
                raise ValueError(text)
            try:
                number = complex(0, float(body))
            except ValueError:
                number = complex(body + "j")
        except ValueError:
            raise GoTemplateError(at, f"bad number syntax: {text!r}") from None
        if not (math.isfinite(number.real) and math.isfinite(number.imag)):
            raise GoTemplateError(at, f"number out of range: {text!r}")
        return number
    clean = text.replace("_", "")
    try:
        if re.search(r"_(?![0-9a-fA-F])|(?<![0-9a-fA-FxXoObB])_", text):
            raise ValueError(text)
        body = clean.lstrip("+-")
        sign = -1 if clean.startswith("-") else 1
        if body[:2].lower() == "0x" and "p" in body.lower():
            value: int | float = float.fromhex(clean)
        elif body[:2].lower() in ("0x", "0o", "0b"):
            value = sign * int(body, 0)
        elif re.fullmatch(r"0[0-9]+", body):
            value = sign * int(body, 8)
        elif re.search(r"[.eE]", body):
            value = float(clean)
        else:
            value = int(clean)
    except ValueError:
        raise GoTemplateError(at, f"bad number syntax: {text!r}") from None
    if not math.isfinite(value) if isinstance(value, float) else not -2 ** 63 <= value < 2 ** 63:
        raise GoTemplateError(at, f"number out of range: {text!r}")
    return value


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"',
            "'": "'"}


def _unquote(s: str, at: int) -> str:
    out = []
    i = 1
    body = s[:-1]
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in _ESCAPES and e != "'":
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 2:i + 2 + n]
            if len(digits) != n or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                raise GoTemplateError(at, f"invalid syntax in string {s}")
            out.append(chr(int(digits, 16)))
            i += 2 + n
        elif e in "01234567":
            digits = body[i + 1:i + 4]
            if not re.fullmatch(r"[0-3][0-7]{2}", digits):
                raise GoTemplateError(at, f"invalid syntax in string {s}")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise GoTemplateError(at, f"invalid syntax in string {s}")
    return "".join(out)


# -- running ------------------------------------------------------------------------------------------------------
MAX_STEPS = 100_000          # actions run by one rendering (a range in a range of labels...)
MAX_CHARS = 65_536           # characters one rendering writes
MAX_DEPTH = 100              # nested actions and parentheses


class _Out(list[str]):
    """The rendered pieces, and the budget a template from a pull request renders within."""

    steps = 0
    size = 0

    def tick(self, at: int) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise GoTemplateError(at, f"the template runs more than {MAX_STEPS:,} actions (refused)")

    def append(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_CHARS:
            raise GoTemplateError(0, f"the template renders more than {MAX_CHARS:,} characters (refused)")
        super().append(text)


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def _run(nodes: list[_Node], dot: Any, scopes: list[dict[str, Any]], out: _Out) -> None:
    for node in nodes:
        out.tick(node.at)
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "action":
            assert node.pipe is not None
            value = _pipe(node.pipe, dot, scopes)
            if not node.pipe.decl:
                out.append(go_print(value))
        elif node.kind in ("if", "with"):
            assert node.pipe is not None
            scopes.append({})
            value = _pipe(node.pipe, dot, scopes)
            if _truth(value):
                _run(node.body, value if node.kind == "with" else dot, scopes, out)
                scopes.pop()
            else:
                scopes.pop()
                scopes.append({})
                _run(node.other, dot, scopes, out)
                scopes.pop()
        elif node.kind == "range":
            assert node.pipe is not None
            _range(node, dot, scopes, out)
        elif node.kind == "break":
            raise _Break
        elif node.kind == "continue":
            raise _Continue


def _range(node: _Node, dot: Any, scopes: list[dict[str, Any]], out: _Out) -> None:
    assert node.pipe is not None
    pipe = _Pipe(node.pipe.at, node.pipe.cmds)
    scopes.append({})
    value = _pipe(pipe, dot, scopes)
    if isinstance(value, Mapping):
        items: list[tuple[Any, Any]] = [(k, value[k]) for k in sorted(value)]
    elif value is None:
        items = []
    else:
        raise GoTemplateError(node.at, f"range can't iterate over {go_print(value)}")
    for k, v in items:
        scope = scopes[-1]
        if len(node.pipe.decl) == 2:
            scope[node.pipe.decl[0]], scope[node.pipe.decl[1]] = k, v
        elif node.pipe.decl:
            scope[node.pipe.decl[0]] = v
        try:
            _run(node.body, v, scopes, out)
        except _Break:
            break
        except _Continue:
            continue
    scopes.pop()
    if not items:
        scopes.append({})
        _run(node.other, dot, scopes, out)
        scopes.pop()


def _pipe(pipe: _Pipe, dot: Any, scopes: list[dict[str, Any]]) -> Any:
    value: Any = _NOTHING
    for cmd in pipe.cmds:
        value = _command(cmd, dot, scopes, value)
    if pipe.decl:
        if pipe.assign:
            for scope in reversed(scopes):
                if pipe.decl[0] in scope:
                    scope[pipe.decl[0]] = value
                    break
        else:
            scopes[-1][pipe.decl[0]] = value
    return value


_NOTHING = object()


def _command(cmd: list[_Arg], dot: Any, scopes: list[dict[str, Any]], piped: Any) -> Any:
    head = cmd[0]
    if head.kind != "func":
        return _operand(head, dot, scopes)
    name = str(head.value)
    if name in _SHORT_CIRCUIT:
        args = cmd[1:]
        if not args and piped is _NOTHING:
            raise GoTemplateError(head.at, f"wrong number of args for {name}: want at least 1 got 0")
        value: Any = None
        for a in args:
            value = _operand(a, dot, scopes)
            if _truth(value) != (name == "and"):
                return value
        if piped is not _NOTHING:
            value = piped
        return value
    values = [_operand(a, dot, scopes) for a in cmd[1:]]
    if piped is not _NOTHING:
        values.append(piped)
    if sum(len(v) for v in values if isinstance(v, str)) > MAX_CHARS:
        raise GoTemplateError(head.at, f"{name} is given more than {MAX_CHARS:,} characters (refused)")
    try:
        value = FUNCTIONS[name](*values)
    except TypeError:
        raise GoTemplateError(head.at, f"wrong number of args for {name}: got {len(values)}") from None
    except (ValueError, OverflowError) as exc:
        raise GoTemplateError(head.at, str(exc)) from None
    if isinstance(value, str) and len(value) > MAX_CHARS:
        raise GoTemplateError(head.at, f"{name} gives more than {MAX_CHARS:,} characters (refused)")
    return value


def _operand(a: _Arg, dot: Any, scopes: list[dict[str, Any]]) -> Any:
    if a.kind == "lit":
        return a.value
    if a.kind == "var":
        for scope in reversed(scopes):
            if a.value in scope:
                return _fields(scope[a.value], a.fields, a.at)
        raise GoTemplateError(a.at, f"undefined variable: {a.value}")
    if a.kind == "field":
        return _fields(dot, a.fields, a.at)
    if a.kind == "dot":
        return dot
    if a.kind == "pipe":
        return _fields(_pipe(a.value, dot, scopes), a.fields, a.at)
    raise GoTemplateError(a.at, f"can't use {a.value} as a value")


def _fields(value: Any, fields: tuple[str, ...], at: int) -> Any:
    for f in fields:
        if isinstance(value, _Data):
            if f not in _FIELDS:
                raise GoTemplateError(at, f"can't evaluate field {f} in the alert's data")
            value = value.get(f)
        elif isinstance(value, Mapping):
            value = value.get(f, "")
        else:
            raise GoTemplateError(at, f"can't evaluate field {f} in type {_type(value)}")
    return value


class _Data(dict[str, Any]):
    """The alert's data (`.`): Labels, Value, ExternalLabels, ExternalURL."""


def alert_data(labels: Mapping[str, str], value: float, external: Mapping[str, str] | None = None,
               external_url: str = "", query: str = "") -> _Data:
    return _Data(Labels=dict(labels), Value=float(value), ExternalLabels=dict(external or {}),
                 ExternalURL=external_url, Expr=query)
