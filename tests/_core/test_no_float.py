"""Money, prices and units never touch binary floating point in the core.

The check is textual on purpose: any ``float``/``double`` token in a core
source (C type, cast, Python builtin, or ``1e9``-style literal) fails it, so a
float cannot slip in through a conversion nobody noticed. Comments and
docstrings are held to the same rule; there is no exception list.
"""
import pathlib
import re

import fastexec._core

CORE = pathlib.Path(fastexec._core.__file__).parent
SOURCES = sorted(p for p in CORE.iterdir() if p.suffix in (".pyx", ".pxd", ".py"))

FLOAT_WORD = re.compile(r"\b(float|double|long\s+double|cdouble|cfloat)\b")
# 1.5, 1e9, 2.0 as numeric literals outside strings would be floats in Python
FLOAT_LITERAL = re.compile(r"(?<![\w.\"'])\d+\.\d*(?:[eE][+-]?\d+)?(?![\w\"'])|(?<![\w.])\d+[eE][+-]?\d+\b")


def test_core_sources_exist():
    names = {p.name for p in SOURCES}
    for mod in ("fixedpoint", "instruments", "orders", "risk", "positions"):
        assert f"{mod}.pyx" in names and f"{mod}.pxd" in names


def test_no_float_or_double_in_core_sources():
    hits = []
    for path in SOURCES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if FLOAT_WORD.search(line):
                hits.append(f"{path.name}:{n}: {line.strip()}")
    assert hits == []


def test_no_float_literals_in_core_code():
    hits = []
    for path in SOURCES:
        text = path.read_text()
        # drop string literals and comments, keep code
        code = re.sub(r'("""|\'\'\')[\s\S]*?\1', "", text)
        code = re.sub(r"(\"[^\"\n]*\"|'[^'\n]*')", "", code)
        code = re.sub(r"#.*", "", code)
        for n, line in enumerate(code.splitlines(), 1):
            if FLOAT_LITERAL.search(line):
                hits.append(f"{path.name}: {line.strip()}")
    assert hits == []


def test_the_check_would_catch_a_float():
    assert FLOAT_WORD.search("cdef double x = 0")
    assert FLOAT_WORD.search("return float(v)")
    assert FLOAT_LITERAL.search("x = 1e9")
    assert FLOAT_LITERAL.search("x = 2.5 * y")
    assert not FLOAT_LITERAL.search("x = 10 ** 9")
