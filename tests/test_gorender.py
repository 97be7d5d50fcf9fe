"""Go templates as Prometheus renders them: vmrules' renderer against promtool, template by template."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from vmrules import gorender

# (value, labels) of the series the templates render for; promtool reads the values as written
SERIES = [
    ("1234567.5", {"instance": "host-1.example.com:9100", "job": "node"}),
    ("0", {"instance": "[::1]:9090", "job": "prom"}),
    ("-0.5", {"instance": "10.0.0.1:80", "job": "a b"}),
    ("0.000123", {"instance": "db", "job": "Ärger"}),
    ("1e21", {"instance": "x:1", "job": "NODE"}),
    ("NaN", {"instance": "y", "job": "j"}),
    ("+Inf", {"instance": "z", "job": "j2"}),
    ("42", {"instance": "w", "job": "it's ok-go_now 9am"}),
    ("99999.5", {"instance": "v", "job": "quote\"d a.b c-d e'f g’h i:j k/l 3d ñu"}),
    ("0.95", {"instance": "u", "job": "tab"}),
    ("86461.25", {"instance": "t", "job": "long"}),
    ("1e-7", {"instance": "s", "job": "tiny"}),
]
TEMPLATES = [
    "{{ $value }}",
    "{{ $labels.instance }}",
    "{{ $labels.missing }}",
    "{{ $labels }}",
    "{{ .Value }}",
    "{{ .Labels.job }}",
    "{{ $value | humanize }}",
    "{{ humanize1024 $value }}",
    "{{ humanizePercentage $value }}",
    "{{ humanizeDuration $value }}",
    "{{ $value | printf \"%.2f\" }}",
    "{{ printf \"%.3g|%e|%g|%v\" $value $value $value $value }}",
    "{{ printf \"%d\" $value }}",
    "{{ printf \"%5.1f|%-8s|%08.2f|%+d\" $value $labels.job $value 3 }}",
    "{{ printf \"%s=%q\" \"job\" $labels.job }}",
    "{{ printf \"%x %X %o\" 255 \"hi\" 8 }}",
    "{{ printf \"%d %s\" 1 }}",
    "{{ printf \"%d\" 1 2 }}",
    "{{ toUpper $labels.job }}",
    "{{ $labels.job | toLower }}",
    "{{ title $labels.job }}",
    "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}",
    "{{ reReplaceAll \"([a-z]+)-([0-9])\" \"${2}_$1x$$\" $labels.instance }}",
    "{{ stripPort $labels.instance }}",
    "{{ stripDomain $labels.instance }}",
    "{{ if gt $value 100.0 }}big{{ else if lt $value 0.0 }}negative{{ else }}small{{ end }}",
    "{{ if eq $labels.job \"node\" }}N{{ end }}",
    "{{ if and $labels.instance (ne $labels.job \"prom\") }}y{{ else }}n{{ end }}",
    "{{ or $labels.missing \"fallback\" }}",
    "{{ not $value }}",
    "{{ len $labels.job }}",
    "{{ index $labels \"job\" }}",
    "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
    "{{ with $labels.instance }}[{{ . }}]{{ else }}none{{ end }}",
    "{{- $x := humanize $value -}} x={{ $x }} ",
    "a {{- \" b \" -}} c",
    "{{ $value | humanize | toUpper }}",
    "{{ print 1 2 \"a\" 3 $value }}",
    "{{ println $value \"s\" }}",
    "{{ html \"<a href='x'>&\" }}",
    "{{ html $value 1.5 \"a\" false }}",
    "{{ urlquery $labels.job \"&=\" }}",
    "{{ match \"^host\" $labels.instance }}",
    "{{ gt $value 5 }}",
    "{{ humanize \"1234\" }}",
    "{{ humanizeTimestamp 1700000000.5 }}",
    "{{ parseDuration \"1h30m\" }}",
    "{{ .5 }} {{ -.5e1 }} {{ 0x1p4 }} {{ 0x1.8p1 }} {{ 0x_1F }} {{ 1_0.5 }} {{ printf \"%d\" -9223372036854775808 }}",
    "{{ 1e6 }} {{ 123456789.0 }} {{ 0.0001 }} {{ 0.00001 }} {{ 100000.0 }} {{ 0x1F }} {{ 1_000 }} {{ 'a' }}",
    "{{/* a comment */}}x{{- /* trimmed */ -}} y",
    "{{ $externalLabels.cluster }}|{{ $externalURL }}",
    "{{ `raw \\n` }}{{ \"esc\\t\\u00e9\" }}",
    "{{ (printf \"%s-%s\" $labels.job $labels.instance) | toUpper }}",
    "{{ $v := 1 }}{{ if true }}{{ $v = 2 }}{{ end }}{{ $v }}",
    "{{ toUpper $value }}",
    "{{ eq $value 42 }}",
    "{{ humanizeDuration 0.0005 }} {{ humanizeDuration -3700.0 }} {{ humanizeDuration 59.5 }}",
    "{{ humanize 0.001234 }} {{ humanize -1500 }} {{ humanize1024 -2048 }} {{ humanizePercentage \"0.5\" }}",
    "{{ 1i }} {{ 1+2i }} {{ -1.5e3i }} {{ 0i }} {{ 08i }} {{ printf \"%v|%.1f|%d\" 2i 2.5i 3i }} {{ eq 1i 1i }}"
    "{{ if 0i }}t{{ else }}f{{ end }}",
]


def _go_strings(text: str) -> dict[str, str]:
    return {m.group(1): gorender._unquote(m.group(2), 0)
            for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*")', text)}


@pytest.fixture(scope="module")
def promtool_renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """Per series (its job), each template as promtool renders it (annotation tNN), from one failing test."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (Debian package prometheus)"
    d = tmp_path_factory.mktemp("promtool")
    rule = {"alert": "A", "expr": "m", "annotations": {f"t{i:02d}": t for i, t in enumerate(TEMPLATES)}}
    (d / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
    series = [{"series": "m{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}", "values": value}
              for value, labels in SERIES]
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series, "external_labels": {"cluster": "c1"},
        "external_url": "http://am.example:9093/x",
        "alert_rule_test": [{"eval_time": "0m", "alertname": "A", "exp_alerts": []}]}]}
    (d / "test.yml").write_text(yaml.safe_dump(test))
    run = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=d, capture_output=True, text=True)
    out = run.stdout + run.stderr
    got = out[out.index("got:"):]
    renders = {}
    for block in re.findall(r"Labels:\{(.*)\}\n\s*Annotations:\{(.*)\}", got):
        renders[_go_strings(block[0])["job"]] = _go_strings(block[1])
    assert len(renders) == len(SERIES), out
    return renders


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


def _render(text: str, value: str, labels: dict[str, str]) -> str:
    """As Prometheus: the template's error as the text."""
    try:
        data = gorender.alert_data({"__name__": "m", **labels}, float(value), {"cluster": "c1"},
                                   "http://am.example:9093/x")
        return gorender.parse(text).render(data)
    except gorender.GoTemplateError as exc:
        return f"<error expanding template: {exc.message}>"


@pytest.mark.parametrize("index", range(len(TEMPLATES)), ids=[t[:40] for t in TEMPLATES])
def test_renders_as_promtool(promtool_renders: dict[str, dict[str, str]], index: int) -> None:
    text = TEMPLATES[index]
    for value, labels in SERIES:
        want = promtool_renders[labels["job"]][f"t{index:02d}"]
        got = _render(text, value, labels)
        if want.startswith("<error expanding template"):
            assert got.startswith("<error expanding template"), (text, value, got, want)
        else:
            assert got == want, (text, value, labels)


@pytest.mark.parametrize("text, offset, message", [
    ("{{ query \"up\" | first | value }}", 3, "'query' is not rendered"),
    ("{{ template \"x\" }}", 3, "named templates"),
    ("{{ $foo }}", 3, "undefined variable: $foo"),
    ("{{ if $value }}x", 0, "no {{end}}"),
    ("{{ end }}", 3, "unexpected {{end}}"),
    ("{{ nosuch 1 }}", 3, "function 'nosuch' not defined"),
    ("{{ $labels.job", 0, "unclosed action"),
    ("{{ \"a\\q\" }}", 3, "invalid syntax"),
    ("{{ 1 2 }}", 5, "can't give argument to non-function"),
    ("{{ $labels | $value }}", 13, "non executable command"),
    ("a{{ range $labels }}{{ if . }}x{{ end }}", 1, "no {{end}}"),
    ("{{ 1__0 }}", 3, "bad number syntax"),
    ("{{ 08 }}", 3, "bad number syntax"),
    ("{{ 1e400 }}", 3, "out of range"),
    ("{{ 18446744073709551616 }}", 3, "out of range"),
    ("{{ '\\777' }}", 3, "invalid syntax"),
    ("{{ /* a space before the comment */ }}", 3, "unexpected '/'"),
    ("{{/* a space after the comment */ }}", 31, "comment ends before closing delimiter"),
    ("{{ if gt $value 80 }}hot{{ end }}", 16, "write 80.0"),
    ("{{ $value | toUpper }}", 12, "toUpper takes a string"),
    ("{{ .Nope }}", -1, ""),
])
def test_refused_at_their_position(text: str, offset: int, message: str) -> None:
    if offset < 0:
        with pytest.raises(gorender.GoTemplateError):
            gorender.parse(text).render(gorender.alert_data({}, 1.0))
        return
    with pytest.raises(gorender.GoTemplateError) as info:
        gorender.parse(text)
    assert info.value.offset == offset and message in info.value.message


def test_value_use_is_known() -> None:
    assert gorender.parse("{{ $value | humanize }}").uses_value
    assert gorender.parse("{{ .Value }}").uses_value
    assert not gorender.parse("{{ $labels.instance | toUpper }}-{{ $externalLabels.x }}").uses_value


def test_go_float_printing() -> None:
    cases = {1e6: "1e+06", 123456.0: "123456", 0.0001: "0.0001", 0.00001: "1e-05", -2.5: "-2.5", 0.0: "0",
             math.inf: "+Inf", 1e21: "1e+21", 3.0: "3"}
    for v, want in cases.items():
        assert gorender.go_print(v) == want
    assert Path(gorender.__file__).exists()


@pytest.mark.parametrize("text", [
    "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
    "{{ if 1 }}" * 3000 + "{{ end }}" * 3000,
    "{{ range $labels }}" * 8 + "x" + "{{ end }}" * 8,
    "{{ printf \"%999999d\" 1 }}",
    "{{ range 1000000000 }}x{{ end }}",
    "{{ $x := \"ab\" }}{{ range $labels }}{{ $x = print $x $x }}{{ end }}{{ len $x }}",   # 2^20 characters
    "{{ $x := \"ab\" }}" + "{{ $x = printf \"%s%s\" $x $x }}" * 40 + "{{ len $x }}",
    "{{ reReplaceAll \"\" \"" + "x" * 50_000 + "\" \"" + "y" * 5000 + "\" | len }}",
    "{{ match \"" + "(" * 2000 + ")" * 2000 + "\" \"x\" }}",
])
def test_hostile_templates_are_refused_in_bounded_time(text: str) -> None:
    """A rule file comes from a pull request: deep nesting, endless loops and huge output are refused."""
    labels = {f"l{i}": str(i) for i in range(20)}
    with pytest.raises(gorender.GoTemplateError):
        gorender.parse(text).render(gorender.alert_data(labels, 1.0))
