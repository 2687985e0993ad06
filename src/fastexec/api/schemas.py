"""One definition per request and response shape, used twice.

Each type below both *validates* a decoded JSON value (raising
``ValidationError`` with a stable code and the dotted ``field`` path) and
*describes* itself as the JSON Schema that goes into ``/openapi.json``. Having
one object do both is what keeps the served spec honest: the schemathesis test
generates requests from the spec and checks that everything the spec calls
invalid is refused, so the validator may never accept more than the schema
says.

Validation here is hand-written rather than done by a generic JSON Schema
engine because it sits on the order hot path (a few microseconds per request
instead of tens) and because it must produce our error codes, not a schema
engine's prose.

Numbers: JSON numbers are never turned into floats on their way to a price.
``decode_body`` re-reads any body containing a non-integer number with the
number's literal text preserved (``JsonNumber``); prices and units are then
parsed from that exact text by the fixed-point core, which refuses excess
precision instead of rounding.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Optional

import orjson

from fastexec.errors import ValidationError

# Limits of the wire format (also published in the spec).
MAX_UNITS = 10**12
MAX_BODY_BYTES = 64 * 1024
MAX_DECIMAL_TEXT = 40

# ---------------------------------------------------------------- JSON decoding


class JsonNumber:
    """A JSON number that is not a plain integer, kept as its literal text.

    Prices arrive as ``1.0950`` as often as ``"1.0950"``. A float would turn
    ``1.100000000000000001`` into ``1.1`` without a word; keeping the literal
    lets the fixed-point parser see exactly what the client wrote.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"JsonNumber({self.text})"

    def plain(self, path: Optional[str] = None) -> str:
        """The literal in plain ``digits[.digits]`` form (exponents expanded).

        Expansion is bounded: an exponent that would produce more than
        ``MAX_DECIMAL_TEXT`` characters cannot be a valid price or unit count,
        so it is refused here before any large string is built.
        """
        text = self.text
        if "e" not in text and "E" not in text:
            return text
        try:
            d = Decimal(text)
        except InvalidOperation:  # pragma: no cover - json already checked the grammar
            raise ValidationError(f"{text!r} is not a number", code="INVALID_NUMBER", field=path) from None
        sign, digits, exp = d.as_tuple()
        if not isinstance(exp, int):  # pragma: no cover - NaN/Infinity are not JSON
            raise ValidationError(f"{text!r} is not a finite number", code="INVALID_NUMBER", field=path)
        # strip trailing zeros exactly (no context rounding)
        ds = "".join(map(str, digits)).lstrip("0") or "0"
        if ds == "0":
            return "0"
        while exp < 0 and ds.endswith("0"):
            ds = ds[:-1]
            exp += 1
        if exp >= 0:
            if len(ds) + exp > MAX_DECIMAL_TEXT:
                raise ValidationError(f"{path or 'number'} {text} is out of range", code="OUT_OF_RANGE", field=path)
            body = ds + "0" * exp
        else:
            if -exp > MAX_DECIMAL_TEXT:
                raise ValidationError(f"{path or 'number'} {text} has too many decimal places", code="PRECISION_EXCEEDED", field=path)
            if len(ds) > -exp:
                body = ds[: len(ds) + exp] + "." + ds[len(ds) + exp :]
            else:
                body = "0." + "0" * (-exp - len(ds)) + ds
        return ("-" if sign else "") + body


def _has_float(value: Any) -> bool:
    t = type(value)
    if t is dict:
        items = value.values()
    elif t is list:
        items = value
    else:
        return t is float
    for v in items:
        tv = type(v)
        if tv is float:
            return True
        if (tv is dict or tv is list) and _has_float(v):
            return True
    return False


def decode_body(raw: bytes) -> Any:
    """Strict JSON decoding that never loses a number's text.

    orjson validates first (UTF-8, surrogates, NaN and friends are refused) and
    is fast for the usual body of strings and integers. Only a body holding a
    float (or an integer too big for 64 bits, which orjson reports as a float)
    is decoded a second time with the standard library, keeping each number's
    literal text.
    """
    if not raw:
        raise ValidationError("request body is empty; send a JSON object", code="INVALID_JSON")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"request body is not valid JSON: {exc}", code="INVALID_JSON") from None
    if _has_float(value):
        try:
            value = json.loads(raw, parse_float=JsonNumber, parse_int=_parse_int)
        except (ValueError, RecursionError) as exc:
            raise ValidationError(f"request body is not valid JSON: {exc}", code="INVALID_JSON") from None
    return value


def _parse_int(text: str) -> Any:
    # Integers beyond 64 bits stay literal too: they are out of every range,
    # and keeping the text avoids Python's int-from-huge-string limit.
    if len(text) > 19:
        return JsonNumber(text)
    return int(text)


# ---------------------------------------------------------------- types


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    t = type(value)
    if t is bool:
        return "boolean"
    if t is int or t is JsonNumber:
        return "number"
    if t is str:
        return "string"
    if t is list:
        return "array"
    if t is dict:
        return "object"
    return t.__name__


class T:
    """Base of every schema type: ``parse`` validates, ``schema`` describes."""

    description: Optional[str] = None
    example: Any = None
    nullable: bool = False

    def __init__(self, *, description: Optional[str] = None, example: Any = None, nullable: bool = False) -> None:
        self.description = description
        self.example = example
        self.nullable = nullable

    def parse(self, value: Any, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def base_schema(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def schema(self) -> dict:
        s = self.base_schema()
        if self.description:
            s["description"] = self.description
        if self.example is not None:
            s["example"] = self.example
        if self.nullable:
            s["nullable"] = True
        return s

    def _wrong_type(self, value: Any, path: str, expected: str) -> ValidationError:
        return ValidationError(f"{path} must be {expected}, got {_type_name(value)}", code="INVALID_TYPE", field=path)


class String(T):
    """Patterns must be anchored (``^...$``): they are applied with
    ``fullmatch``, so a trailing newline cannot slip past ``$`` as it would
    with Python's ``search``."""

    def __init__(
        self,
        *,
        min_length: int = 1,
        max_length: int = 64,
        pattern: Optional[str] = None,
        enum: Optional[tuple[str, ...]] = None,
        description: Optional[str] = None,
        example: Any = None,
        nullable: bool = False,
        fmt: Optional[str] = None,
    ) -> None:
        self.min_length = min_length
        self.max_length = max_length
        self.pattern = pattern
        self._re = re.compile(pattern) if pattern else None
        self.enum = enum
        self._enum_set = frozenset(enum) if enum else None
        super().__init__(description=description, example=example, nullable=nullable)
        self.fmt = fmt
        self._ok: set = set()

    def parse(self, value: Any, path: str) -> Any:
        if value is None and self.nullable:
            return None
        if type(value) is not str:
            raise self._wrong_type(value, path, "a string")
        if self._enum_set is not None:
            if value not in self._enum_set:
                raise ValidationError(
                    f"{path} must be one of {', '.join(self.enum)}; got {value[:40]!r}", code="INVALID_VALUE", field=path
                )
            return value
        n = len(value)
        if n < self.min_length or n > self.max_length:
            raise ValidationError(
                f"{path} must be {self.min_length}..{self.max_length} characters long, got {n}",
                code="INVALID_VALUE",
                field=path,
            )
        if self._re is not None and self._re.fullmatch(value) is None:
            raise ValidationError(f"{path} {value[:40]!r} does not match {self.pattern}", code="INVALID_VALUE", field=path)
        return value

    _MEMO_MAX = 4096

    def accepts(self, value: str) -> bool:
        """For a ``str``: True when ``parse`` would return it unchanged
        (False: not sure, call ``parse``). Accepted strings are remembered (a
        bounded set): whether a string passes is a pure function of the
        string, and the same account ids and instruments arrive on every order."""
        ok = self._ok
        if value in ok:
            return True
        try:
            self.parse(value, "")
        except ValidationError:
            return False
        if len(ok) >= self._MEMO_MAX:
            ok.clear()
        ok.add(value)
        return True

    def base_schema(self) -> dict:
        s: dict = {"type": "string"}
        if self.enum:
            s["enum"] = list(self.enum)
            return s
        s["minLength"] = self.min_length
        s["maxLength"] = self.max_length
        if self.pattern:
            s["pattern"] = self.pattern
        if self.fmt:
            s["format"] = self.fmt
        return s


class Boolean(T):
    def __init__(self, *, description: Optional[str] = None, example: Any = None) -> None:
        self.description = description
        self.example = example

    def parse(self, value: Any, path: str) -> Any:
        if type(value) is not bool:
            raise self._wrong_type(value, path, "true or false")
        return value

    def base_schema(self) -> dict:
        return {"type": "boolean"}


# Decimal text as the API accepts it: no sign, no exponent, no spaces.
DECIMAL_PATTERN = r"^[0-9]{1,19}(\.[0-9]{1,20})?$"
_DECIMAL_RE = re.compile(DECIMAL_PATTERN)
UNITS_PATTERN = r"^([1-9][0-9]{0,11}|1000000000000)$"
_UNITS_RE = re.compile(UNITS_PATTERN)


def _price_text_ok(text: str) -> bool:
    """A decimal string ``Price.parse`` accepts (and so returns unchanged)."""
    return len(text) <= MAX_DECIMAL_TEXT and _DECIMAL_RE.fullmatch(text) is not None and text.strip("0.") != ""


class Price(T):
    """A positive price: a decimal string or a JSON number, returned as exact
    text. The instrument's precision is applied later by the fixed-point core
    (the instrument is another field), so this type checks only the grammar.
    """

    def parse(self, value: Any, path: str) -> Any:
        t = type(value)
        if t is str:
            if len(value) > MAX_DECIMAL_TEXT or _DECIMAL_RE.fullmatch(value) is None:
                raise ValidationError(
                    f"{path} {value[:MAX_DECIMAL_TEXT]!r} is not a decimal number like \"1.0950\"",
                    code="INVALID_NUMBER",
                    field=path,
                )
            text = value
        elif t is JsonNumber:
            if value.text.startswith("-"):
                raise ValidationError(f"{path} must be greater than 0", code="INVALID_VALUE", field=path)
            text = value.plain(path)
        elif t is int:
            text = str(value)
        elif value is None and self.nullable:
            return None
        else:
            raise self._wrong_type(value, path, 'a decimal string or a number (e.g. "1.0950")')
        if text.startswith("-"):
            raise ValidationError(f"{path} must be greater than 0", code="INVALID_VALUE", field=path)
        if text.strip("0.") == "":
            raise ValidationError(f"{path} must be greater than 0", code="INVALID_VALUE", field=path)
        return text

    def base_schema(self) -> dict:
        return {
            "anyOf": [
                {"type": "string", "pattern": DECIMAL_PATTERN, "maxLength": MAX_DECIMAL_TEXT},
                {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            ]
        }


class Units(T):
    """A positive whole number of units: JSON integer or digit string."""

    def parse(self, value: Any, path: str) -> Any:
        t = type(value)
        if t is int:
            n = value
        elif t is str:
            if _UNITS_RE.fullmatch(value) is None:
                raise ValidationError(
                    f"{path} {value[:20]!r} is not a whole number of units", code="INVALID_NUMBER", field=path
                )
            n = int(value)
        elif t is JsonNumber:
            text = value.plain(path) if value.text[:1] != "-" else value.text
            if text.startswith("-"):
                raise ValidationError(f"{path} must be at least 1", code="INVALID_VALUE", field=path)
            whole, _, frac = text.partition(".")
            if frac.strip("0"):
                raise ValidationError(
                    f"{path} {value.text[:20]} is not a whole number of units", code="PRECISION_EXCEEDED", field=path
                )
            if len(whole) > 13:
                raise ValidationError(f"{path} must be at most {MAX_UNITS}", code="OUT_OF_RANGE", field=path)
            n = int(whole)
        elif value is None and self.nullable:
            return None
        else:
            raise self._wrong_type(value, path, "a whole number of units")
        if n < 1:
            raise ValidationError(f"{path} must be at least 1, got {n}", code="INVALID_VALUE", field=path)
        if n > MAX_UNITS:
            raise ValidationError(f"{path} {n} exceeds the maximum {MAX_UNITS}", code="OUT_OF_RANGE", field=path)
        return n

    def base_schema(self) -> dict:
        return {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_UNITS},
                {"type": "string", "pattern": UNITS_PATTERN},
            ]
        }


class Timestamp(T):
    """RFC 3339 date-time with an explicit offset (``Z`` or ``+hh:mm``)."""

    _RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")

    def parse(self, value: Any, path: str) -> Any:
        if value is None and self.nullable:
            return None
        if type(value) is not str:
            raise self._wrong_type(value, path, "an RFC 3339 date-time string")
        if len(value) > 40 or self._RE.fullmatch(value) is None:
            raise ValidationError(
                f"{path} {value[:40]!r} is not an RFC 3339 date-time like 2026-01-02T15:04:05Z",
                code="INVALID_VALUE",
                field=path,
            )
        m = self._RE.fullmatch(value)
        frac = (m.group(1) or ".")[1:]
        if len(frac) > 6 and frac[6:].strip("0"):
            raise ValidationError(f"{path} has sub-microsecond precision", code="PRECISION_EXCEEDED", field=path)
        base = value[:19] + "." + frac[:6].ljust(6, "0")
        tz = m.group(2)
        text = base + ("+00:00" if tz == "Z" else tz)
        try:
            return datetime.fromisoformat(text).astimezone(timezone.utc)
        except (ValueError, OverflowError):  # OverflowError: the offset moves it out of datetime's range
            raise ValidationError(f"{path} {value!r} is not a valid date-time", code="INVALID_VALUE", field=path) from None

    def base_schema(self) -> dict:
        return {"type": "string", "format": "date-time", "pattern": self._RE.pattern, "maxLength": 40}


_ENUM, _TEXT, _UNITS, _PRICE = "enum", "text", "units", "price"  # kinds of Object.accepts' per-field checks


class Field:
    __slots__ = ("type", "required")

    def __init__(self, type_: T, required: bool = False) -> None:
        self.type = type_
        self.required = required


class Object(T):
    """A JSON object with known fields; unknown fields are refused.

    Refusing unknown fields matters for a trading API: a misspelt
    ``stop_los`` silently ignored is an order without its stop loss.
    """

    def __init__(
        self,
        name: str,
        fields: dict[str, Field],
        *,
        description: Optional[str] = None,
        example: Any = None,
        min_properties: int = 0,
        check: Optional[Callable[[dict, str], None]] = None,
    ) -> None:
        self.name = name
        self.fields = fields
        self.description = description
        self.example = example
        self.min_properties = min_properties
        self.check = check
        self._required = tuple(k for k, f in fields.items() if f.required)
        self._fast: Optional[dict] = None
        self._required_set = frozenset(self._required)
        self._int_fields = tuple(k for k, f in fields.items() if type(f.type) is Units)
        self._ok_pairs: set = set()

    # ------------------------------------------------------------ fast path
    #
    # Most request bodies are flat objects of strings and integers that are
    # valid. For those, ``parse`` would return a dict equal to the input
    # (strings, digit-free prices and integer units come back unchanged), so a
    # check that only *accepts* can hand the decoded dict straight on. It is
    # deliberately one-sided: anything it is not sure of (an unknown or
    # missing field, a float, a nested object, null, a value failing a check)
    # goes to ``parse``, which then produces the error, so error codes and
    # messages come from one place only.

    def _fast_fields(self) -> dict:
        fast: dict = {}
        for key, f in self.fields.items():
            t = f.type
            if type(t) is String and not t.nullable:
                if t._enum_set is not None:
                    fast[key] = (_ENUM, t._enum_set, None)
                else:
                    fast[key] = (_TEXT, t._ok, t)
            elif type(t) is Units and not t.nullable:
                fast[key] = (_UNITS, None, None)
            elif type(t) is Price and not t.nullable:
                fast[key] = (_PRICE, None, None)
            # other types (timestamps, nested objects, booleans) take the full path
        return fast

    _MEMO_MAX = 8192

    def accepts(self, value: Any) -> bool:
        """True when ``value`` (as decoded by orjson) is valid and ``parse``
        would return it unchanged; False means "not sure": call ``parse``.

        Every (field, value) pair that passed once is remembered in a bounded
        set, so a client sending the same account, instrument and side each
        time costs one C-level ``issuperset`` over the body. Only string and
        integer values are ever remembered. No other JSON value equals a
        string; the only ones that equal an integer are ``true``/``false``
        and floats (``1.0``), so the integer fields are checked to hold exact
        ints before the lookup.
        """
        if type(value) is not dict or self.check is not None:
            return False
        for key in self._int_fields:
            v = value.get(key)
            if v is not None and type(v) is not int:
                return False
        try:
            known = self._ok_pairs.issuperset(value.items())
        except TypeError:  # an unhashable value (array, object): not for this path
            return False
        if not known:
            accepts_pair = self._accepts_pair
            for item in value.items():
                if not accepts_pair(item):
                    return False
        return self._required_set <= value.keys() and len(value) >= self.min_properties

    def _accepts_pair(self, item: tuple) -> bool:
        """A (field, str-or-int value) pair not seen before: checked, then remembered."""
        fast = self._fast
        if fast is None:
            fast = self._fast = self._fast_fields()
        key, v = item
        spec = fast.get(key)
        if spec is None:
            return False
        kind, data, string = spec
        t = type(v)
        if kind is _ENUM:
            if t is not str or v not in data:
                return False
        elif kind is _TEXT:
            if t is not str or (v not in data and not string.accepts(v)):
                return False
        elif kind is _UNITS:
            if t is not int or v < 1 or v > MAX_UNITS:
                return False
        elif t is not str or not _price_text_ok(v):
            return False
        ok = self._ok_pairs
        if item not in ok:
            if len(ok) >= self._MEMO_MAX:
                ok.clear()
            ok.add(item)
        return True

    def parse_json(self, raw: bytes) -> dict:
        """``parse(decode_body(raw))``, with the common case in one orjson
        call and ``accepts``: a body ``accepts`` takes holds only strings and
        integers, so ``decode_body`` would have returned orjson's dict as is."""
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = None
        else:
            if self.accepts(value):
                return value
        return self.parse(decode_body(raw))

    def parse(self, value: Any, path: str = "") -> dict:
        if type(value) is not dict:
            where = path or "request body"
            raise ValidationError(f"{where} must be a JSON object, got {_type_name(value)}", code="INVALID_TYPE", field=path or None)
        fields = self.fields
        out: dict = {}
        prefix = path + "." if path else ""
        for key, raw in value.items():
            f = fields.get(key)
            if f is None:
                raise ValidationError(
                    f"unknown field {prefix}{key[:40]}; allowed: {', '.join(fields)}", code="UNKNOWN_FIELD", field=prefix + key[:64]
                )
            out[key] = f.type.parse(raw, prefix + key)
        for key in self._required:
            if key not in out:
                raise ValidationError(f"{prefix}{key} is required", code="MISSING_FIELD", field=prefix + key)
        if len(out) < self.min_properties:
            raise ValidationError(
                f"{path or 'request body'} needs at least {self.min_properties} of: {', '.join(fields)}",
                code="MISSING_FIELD",
                field=path or None,
            )
        if self.check is not None:
            self.check(out, path)
        return out

    def base_schema(self) -> dict:
        s: dict = {
            "type": "object",
            "properties": {k: f.type.schema() for k, f in self.fields.items()},
            "additionalProperties": False,
        }
        if self._required:
            s["required"] = list(self._required)
        if self.min_properties:
            s["minProperties"] = self.min_properties
        return s


# ---------------------------------------------------------------- query / path parameters


class Param:
    """A path or query parameter: its text is parsed by ``parse``."""

    def __init__(
        self,
        name: str,
        where: str,
        schema: dict,
        parse: Callable[[str], Any],
        *,
        required: bool = False,
        description: str = "",
        default: Any = None,
    ) -> None:
        self.name = name
        self.where = where
        self.schema = schema
        self.parse_text = parse
        self.required = required or where == "path"
        self.description = description
        self.default = default

    def openapi(self) -> dict:
        return {
            "name": self.name,
            "in": self.where,
            "required": self.required,
            "description": self.description,
            "schema": self.schema,
        }


def text_param(name: str, where: str, type_: String, *, required: bool = False, description: str = "") -> Param:
    def parse(text: str) -> Any:
        return type_.parse(text, name)

    return Param(name, where, type_.base_schema(), parse, required=required, description=description)


def int_param(name: str, *, minimum: int, maximum: int, default: int, description: str = "") -> Param:
    def parse(text: str) -> int:
        if not text.isascii() or not text.isdigit() or len(text) > 7:
            raise ValidationError(f"{name} must be a whole number {minimum}..{maximum}", code="INVALID_VALUE", field=name)
        v = int(text)
        if v < minimum or v > maximum:
            raise ValidationError(f"{name} must be {minimum}..{maximum}, got {v}", code="INVALID_VALUE", field=name)
        return v

    return Param(
        name,
        "query",
        {"type": "integer", "minimum": minimum, "maximum": maximum, "default": default},
        parse,
        description=description,
        default=default,
    )


def bool_param(name: str, *, default: bool, description: str = "") -> Param:
    def parse(text: str) -> bool:
        if text == "true":
            return True
        if text == "false":
            return False
        raise ValidationError(f"{name} must be true or false", code="INVALID_VALUE", field=name)

    return Param(name, "query", {"type": "boolean", "default": default}, parse, description=description, default=default)
