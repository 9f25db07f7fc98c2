"""SIP messages (RFC 3261 section 7): a defensive parser, a serializer and typed header values.

The parser is the first thing a hostile datagram meets, so it enforces limits (``Limits``) before
doing any work and never raises anything but :class:`MalformedMessageError` (a
:class:`~ivr.errors.RemoteProtocolError` carrying status 400). A malformed *request* whose
transaction-identifying headers still parse keeps them in ``MalformedMessageError.headers`` so the user
agent can answer 400 (RFC 3261 section 21.4.1); a malformed *response* is simply dropped by the
caller (section 18.1.2 / 18.3).

Header names are stored in canonical form; compact forms (section 7.3.3, e.g. ``v`` for ``Via``) are
expanded on input. Comma-separated multi-value headers (section 7.3.1) are split on demand by
:meth:`Headers.get_all`, respecting quotes and angle brackets.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeVar

from ivr.errors import LocalProtocolError, RemoteProtocolError

SIP_VERSION = "SIP/2.0"
MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 section 8.1.1.7: branch prefix of RFC 3261 compliant elements


@dataclass(frozen=True, slots=True)
class Limits:
    """Parser limits. Defaults fit UDP (RFC 3261 section 18.1.1: a datagram is < 65,535 bytes)."""

    max_message_bytes: int = 65_535
    max_headers: int = 128
    max_line_bytes: int = 8_192


DEFAULT_LIMITS = Limits()


class MalformedMessageError(RemoteProtocolError):
    """The peer sent something that is not a valid SIP message.

    ``is_request`` tells the caller whether a 400 may be answered (never for responses);
    ``headers`` holds the headers parsed so far, when the header section itself was readable.
    """

    def __init__(
        self,
        message: str,
        *,
        is_request: bool = False,
        headers: Headers | None = None,
        status: int = 400,
        reason: str = "Bad Request",
    ) -> None:
        super().__init__(message, status=status, reason=reason)
        self.is_request = is_request
        self.headers = headers


# RFC 3261 section 7.3.3 compact forms, plus the later ones registered at IANA.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL: dict[str, str] = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "MIME-Version",
        "Organization",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Subject",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
        "Authentication-Info",
        "Session-Expires",
        "Min-SE",
    )
}

# Headers whose values may be comma-separated lists (RFC 3261 section 7.3.1). The authentication
# headers are *not* here: their single value contains commas (section 20.7, 20.27, 20.44).
LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Content-Encoding",
        "Content-Language",
        "Allow-Events",
        "In-Reply-To",
        "Alert-Info",
        "Call-Info",
        "Error-Info",
        "Warning",
        "Reason",
    )
)

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
# Section 7.2: Status-Code is 3DIGIT then SP Reason-Phrase (possibly empty, RFC 4475 3.1.1.13 noreason);
# a longer code is no status line at all (RFC 4475 bigcode), not "429" and a reason.
_STATUS_LINE_RE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9])(?: (.*))?$")
_VERSION_RE = re.compile(r"^SIP/[0-9]+\.[0-9]+$")
# Section 25.1: sent-protocol = protocol-name SLASH protocol-version SLASH transport, SLASH = SWS "/" SWS,
# then LWS sent-by (RFC 4475 3.1.1.1 wsinv: "SIP  /   2.0 /UDP" and the like).
_VIA_RE = re.compile(r"^([^\s/]+)\s*/\s*([^\s/]+)\s*/\s*([^\s/;]+)\s+(.*)$", re.DOTALL)
# Section 25.1 quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F): a NUL is legal only escaped in a
# quoted string (RFC 4475 3.1.1.2 intmeth); anywhere else it is an attack or garbage.
_BARE_NUL_RE = re.compile(r"(?<!\\)\x00")
# Section 7.3.1/20: headers that appear at most once in a message (RFC 4475 multi01, mcl01).
SINGLE_HEADERS = frozenset(("call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type"))


_NAME_CACHE: dict[str, str] = {}


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name (compact forms expanded, known names re-cased)."""
    cached = _NAME_CACHE.get(name)
    if cached is not None:
        return cached
    low = name.lower()
    canon = COMPACT_FORMS[low] if len(low) == 1 and low in COMPACT_FORMS else _CANONICAL.get(low, name)
    if len(_NAME_CACHE) < 4096:  # bounded: hostile peers invent names
        _NAME_CACHE[name] = canon
    return canon


def is_token(text: str) -> bool:
    """RFC 3261 section 25.1 ``token``."""
    return bool(_TOKEN_RE.match(text))


def split_list(value: str, sep: str = ",") -> list[str]:
    """Split a header value on ``sep`` outside quoted strings and ``<...>`` (section 7.3.1)."""
    if '"' not in value and "<" not in value:  # fast path: nothing to protect
        return [p for p in (x.strip() for x in value.split(sep)) if p]
    parts: list[str] = []
    buf: list[str] = []
    in_quotes = False
    in_angle = False
    escaped = False
    for ch in value:
        if escaped:
            buf.append(ch)
            escaped = False
            continue
        if in_quotes and ch == "\\":
            buf.append(ch)
            escaped = True
            continue
        if ch == '"' and not in_angle:
            in_quotes = not in_quotes
        elif ch == "<" and not in_quotes:
            in_angle = True
        elif ch == ">" and not in_quotes:
            in_angle = False
        if ch == sep and not in_quotes and not in_angle:
            parts.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf).strip())
    return [p for p in parts if p]


class Headers:
    """An ordered, case-insensitive multimap of header fields (order matters for Via and Route).

    Names are kept in canonical form; a parallel list of lower-cased names makes lookups cheap
    (this is the parser's and the user agent's hottest path)."""

    __slots__ = ("_items", "_lows")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in items]
        self._lows: list[str] = [n.lower() for n, _ in self._items]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        h._lows = list(self._lows)
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field named ``name`` (as received, not split)."""
        low = canonical_name(name).lower()
        try:
            return self._items[self._lows.index(low)][1]
        except ValueError:
            return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, list headers split into their elements, in order."""
        low = canonical_name(name).lower()
        out: list[str] = []
        split = low in LIST_HEADERS
        for i, n in enumerate(self._lows):
            if n == low:
                v = self._items[i][1]
                out.extend(split_list(v) if split else [v])
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def add(self, name: str, value: str) -> None:
        canon = canonical_name(name)
        self._items.append((canon, value))
        self._lows.append(canon.lower())

    def prepend(self, name: str, value: str) -> None:
        canon = canonical_name(name)
        self._items.insert(0, (canon, value))
        self._lows.insert(0, canon.lower())

    def remove(self, name: str) -> None:
        low = canonical_name(name).lower()
        keep = [i for i, n in enumerate(self._lows) if n != low]
        self._items = [self._items[i] for i in keep]
        self._lows = [self._lows[i] for i in keep]

    def set(self, name: str, value: str) -> None:
        """Replace every field named ``name`` by one, at the position of the first."""
        canon = canonical_name(name)
        low = canon.lower()
        if low not in self._lows:
            self.add(canon, value)
            return
        first = self._lows.index(low)
        self.remove(canon)
        self._items.insert(first, (canon, value))
        self._lows.insert(first, low)


# ---------------------------------------------------------------------------------------------
# Typed header values
# ---------------------------------------------------------------------------------------------

Params = tuple[tuple[str, str | None], ...]
_T = TypeVar("_T", "SipUri", "NameAddr", "Via", "CSeq")


def _parse_params(text: str) -> Params:
    """``;a=b;c`` -> ((a, b), (c, None)); names are lower-cased (section 7.3.1: case-insensitive)."""
    out: list[tuple[str, str | None]] = []
    for part in split_list(text, ";"):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not name or not is_token(name):
            raise ValueError(f"bad parameter {part!r}")
        out.append((name.lower(), value.strip() if eq else None))
    return tuple(out)


def _format_params(params: Params) -> str:
    return "".join(f";{k}={v}" if v is not None else f";{k}" for k, v in params)


def param(params: Params, name: str) -> str | None:
    """Value of parameter ``name`` ('' for a flag without value), None when absent."""
    for k, v in params:
        if k == name:
            return "" if v is None else v
    return None


def with_param(params: Params, name: str, value: str | None) -> Params:
    """``params`` with ``name`` set to ``value`` (replaced if present, else appended)."""
    out = [(k, v) for k, v in params if k != name]
    out.append((name, value))
    return tuple(out)


def _split_hostport(text: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):  # IPv6 reference (RFC 3261 section 25.1)
        end = text.find("]")
        if end < 0:
            raise ValueError("unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("junk after IPv6 reference")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
    if not host or any(c in host for c in ' \t<>"@;?,'):
        raise ValueError(f"bad host {text!r}")
    if port_text == "":
        if text.endswith(":"):
            raise ValueError("empty port")
        return host, None
    if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port {port_text!r}")
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class SipUri:
    """A SIP/SIPS URI (RFC 3261 section 19.1); other schemes (tel:) keep ``opaque``."""

    scheme: str
    host: str = ""
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = ()
    headers: str = ""
    opaque: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse ``text`` (cached: the value is immutable and the same headers recur)."""
        return _cached(cls, text)

    @classmethod
    def _parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        if not colon or not scheme or not scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"bad URI {text!r}")
        if not rest or any(c in rest for c in " \t\r\n<>"):
            raise ValueError(f"bad URI {text!r}")
        scheme = scheme.lower()
        if scheme not in ("sip", "sips"):
            return cls(scheme=scheme, opaque=rest)
        # Only the userinfo ends in '@' ('@' is legal unescaped in no other part, section 25.1), and
        # the user part may hold '?', ';' and '/' (RFC 4475 3.1.1.2 intmeth, 3.1.1.9 semiuri):
        # the user is split off first, then the headers and parameters of the host part.
        userinfo, at, hostpart = rest.partition("@")
        if not at:
            userinfo, hostpart = "", rest
        hostpart, _, hdrs = hostpart.partition("?")
        user: str | None = None
        password: str | None = None
        if at:
            user, pcolon, pw = userinfo.partition(":")
            password = pw if pcolon else None
            if not user:
                raise ValueError("empty user part")
        hostport, semi, ptext = hostpart.partition(";")
        host, port = _split_hostport(hostport)
        params = _parse_params(ptext) if semi else ()
        return cls(scheme, host.lower(), user, password, port, params, hdrs)

    def __str__(self) -> str:
        if self.scheme not in ("sip", "sips"):
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(_format_params(self.params))
        if self.headers:
            out.append("?" + self.headers)
        return "".join(out)

    def param(self, name: str) -> str | None:
        return param(self.params, name)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """``"Display" <uri>;params`` as in From, To, Contact, Route (RFC 3261 section 20.10, 20.20)."""

    uri: SipUri
    display: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse ``text`` (cached: the value is immutable and the same headers recur)."""
        return _cached(cls, text)

    @classmethod
    def _parse(cls, text: str) -> NameAddr:
        text = text.strip()
        lt = _find_unquoted(text, "<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise ValueError("unterminated <")
            display_text = text[:lt].strip()
            display: str | None = None
            if display_text:
                if display_text.startswith('"'):
                    if len(display_text) < 2 or not display_text.endswith('"'):
                        raise ValueError("bad quoted display name")
                    display = _unquote(display_text)
                else:
                    display = display_text
            uri = SipUri.parse(text[lt + 1 : gt])
            rest = text[gt + 1 :].strip()
        else:
            # addr-spec form: the parameters after the URI belong to the header (section 20.10)
            uri_text, _, rest = text.partition(";")
            rest = ";" + rest if rest else ""
            uri = SipUri.parse(uri_text)
            display = None
        if rest and not rest.startswith(";"):
            raise ValueError(f"junk after address {rest!r}")
        return cls(uri, display, _parse_params(rest[1:]) if rest else ())

    def __str__(self) -> str:
        disp = f"{_quote(self.display)} " if self.display else ""
        return f"{disp}<{self.uri}>{_format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return param(self.params, "tag") or None

    def with_tag(self, tag: str) -> NameAddr:
        return replace(self, params=with_param(self.params, "tag", tag))


@functools.lru_cache(maxsize=8192)
def _cached_parse(cls: type[SipUri | NameAddr | Via | CSeq], text: str) -> SipUri | NameAddr | Via | CSeq:
    return cls._parse(text)


def _cached(cls: type[_T], text: str) -> _T:
    return _cached_parse(cls, text)  # type: ignore[arg-type,return-value]


def _find_unquoted(text: str, ch: str) -> int:
    in_q = False
    esc = False
    for i, c in enumerate(text):
        if esc:
            esc = False
        elif in_q and c == "\\":
            esc = True
        elif c == '"':
            in_q = not in_q
        elif c == ch and not in_q:
            return i
    return -1


def _unquote(text: str) -> str:
    inner = text[1:-1]
    return re.sub(r"\\(.)", r"\1", inner)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class Via:
    """One Via element (RFC 3261 section 20.42): ``SIP/2.0/UDP host:port;branch=...``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse ``text`` (cached: the value is immutable and the same headers recur)."""
        return _cached(cls, text)

    @classmethod
    def _parse(cls, text: str) -> Via:
        text = text.strip()
        m = _VIA_RE.match(text)
        if m is None:
            raise ValueError(f"bad Via {text[:40]!r}")
        parts = [m.group(1), m.group(2), m.group(3)]
        if parts[0].upper() != "SIP" or parts[1] != "2.0" or not is_token(parts[2]):
            raise ValueError(f"bad Via protocol {'/'.join(parts)!r}")
        rest = m.group(4).strip()
        sent_by, semi, ptext = rest.partition(";")
        host, port = _split_hostport(sent_by)
        return cls(parts[2].upper(), host.lower(), port, _parse_params(ptext) if semi else ())

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{_format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return param(self.params, "branch") or None

    @property
    def sent_by(self) -> tuple[str, int]:
        return self.host, self.port or 5060


@dataclass(frozen=True, slots=True)
class CSeq:
    """``CSeq: 314159 INVITE`` (RFC 3261 section 20.16): sequence number < 2**31 and method."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse ``text`` (cached: the value is immutable and the same headers recur)."""
        return _cached(cls, text)

    @classmethod
    def _parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10 or not is_token(parts[1]):
            raise ValueError(f"bad CSeq {text!r}")
        seq = int(parts[0])
        if seq >= 2**31:
            raise ValueError("CSeq out of range")
        return cls(seq, parts[1])

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Message:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    # Typed accessors: these raise ValueError on a bad value; the parser has validated the
    # mandatory ones for every message it returns.
    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self.headers.get("CSeq") or "")

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("From") or "")

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("To") or "")

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.get_all("Via")
        if not values:
            raise ValueError("no Via")
        return Via.parse(values[0])

    @property
    def contacts(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.headers.get_all("Contact") if v.strip() != "*"]

    @property
    def content_type(self) -> str:
        """Media type without parameters, lower case ('' when absent)."""
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def _serialize(self, start_line: str) -> bytes:
        lines = [start_line]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            if "\r" in value or "\n" in value or not is_token(name):
                # a value from the engine must not smuggle extra header lines into the message
                raise LocalProtocolError(f"header {name!r} would break the message framing")
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass(slots=True)
class Request(_Message):
    method: str = "OPTIONS"
    uri: SipUri = field(default_factory=lambda: SipUri("sip", "invalid"))

    def to_bytes(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} {SIP_VERSION}")


@dataclass(slots=True)
class Response(_Message):
    status: int = 200
    reason: str = "OK"

    def to_bytes(self) -> bytes:
        return self._serialize(f"{SIP_VERSION} {self.status} {self.reason}")


Message = Request | Response


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    idx = data.find(b"\r\n\r\n")
    if idx >= 0:
        return data[:idx], data[idx + 4 :]
    idx = data.find(b"\n\n")  # tolerate bare LF (robustness, section 7.5 spirit)
    if idx >= 0:
        return data[:idx], data[idx + 2 :]
    return data.rstrip(b"\r\n"), b""


def parse_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Parse one datagram into a :class:`Request` or :class:`Response`.

    Raises :class:`MalformedMessageError` (and nothing else) on any violation; the caller answers
    400 to a malformed request whose ``headers`` allow a response, and drops the rest.
    """
    try:
        return _parse(data, limits)
    except MalformedMessageError:
        raise
    except (ValueError, UnicodeError, IndexError) as exc:  # defensive: never leak another type
        raise MalformedMessageError(f"unparseable message: {exc}") from exc


def _parse(data: bytes, limits: Limits) -> Message:
    if len(data) > limits.max_message_bytes:
        # Section 18.1.1 / 21.5.14: too large for UDP. Nothing more is read from it.
        raise MalformedMessageError("message too large", status=513, reason="Message Too Large")
    data = data.lstrip(b"\r\n")  # section 7.5: CRLFs before the start line are ignored
    head_bytes, body = _split_head(data)
    head = head_bytes.decode("utf-8")
    raw_lines = head.replace("\r\n", "\n").split("\n")
    if not raw_lines or not raw_lines[0]:
        raise MalformedMessageError("empty message")
    for line in raw_lines:
        if len(line) > limits.max_line_bytes:
            raise MalformedMessageError("header line too long")
        if "\r" in line or ("\x00" in line and _BARE_NUL_RE.search(line)):  # section 7.3.1: CR only in CRLF
            raise MalformedMessageError("bare CR or NUL in the header section")
    start = raw_lines[0]
    is_request = not start.startswith("SIP/")
    # header folding (section 7.3.1): a line starting with SP or HTAB continues the previous one
    fields: list[tuple[str, str]] = []
    for line in raw_lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise MalformedMessageError("continuation line before any header", is_request=is_request)
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
            if len(fields[-1][1]) > limits.max_line_bytes:
                raise MalformedMessageError("folded header too long", is_request=is_request)
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or not is_token(name):
            raise MalformedMessageError(f"bad header line {line[:40]!r}", is_request=is_request)
        fields.append((name, value.strip()))
        if len(fields) > limits.max_headers:
            raise MalformedMessageError("too many headers", is_request=is_request)
    headers = Headers(fields)

    msg: Message
    if is_request:
        parts = start.split(" ")
        if len(parts) == 3 and parts[2] != SIP_VERSION and _VERSION_RE.match(parts[2]) and is_token(parts[0]):
            # Section 21.5.21 (505) / RFC 4475 badvers: a request of another SIP version.
            raise MalformedMessageError(
                f"SIP version {parts[2]} not supported",
                is_request=True,
                headers=headers,
                status=505,
                reason="Version Not Supported",
            )
        if len(parts) != 3 or parts[2] != SIP_VERSION or not is_token(parts[0]):
            raise MalformedMessageError("bad request line", is_request=True, headers=headers)
        try:
            uri = SipUri.parse(parts[1])
        except ValueError as exc:
            raise MalformedMessageError(f"bad Request-URI: {exc}", is_request=True, headers=headers) from exc
        msg = Request(headers=headers, method=parts[0], uri=uri)
    else:
        m = _STATUS_LINE_RE.match(start)
        if not m:
            raise MalformedMessageError("bad status line")
        msg = Response(headers=headers, status=int(m.group(1)), reason=m.group(2) or "")

    try:
        _validate(msg)
    except ValueError as exc:
        raise MalformedMessageError(str(exc), is_request=is_request, headers=headers) from exc

    cl_text = headers.get("Content-Length")
    if cl_text is not None:
        cl_text = cl_text.strip()
        if not cl_text.isdigit() or len(cl_text) > 6:
            raise MalformedMessageError("bad Content-Length", is_request=is_request, headers=headers)
        length = int(cl_text)
        if length > len(body):
            # section 18.3: on UDP a body shorter than Content-Length is an error
            raise MalformedMessageError("body shorter than Content-Length", is_request=is_request, headers=headers)
        body = body[:length]  # extra bytes after the body are discarded (section 18.3)
    msg.body = body
    return msg


def _validate(msg: Message) -> None:
    """Section 8.1.1: the mandatory headers must be present and parse."""
    h = msg.headers
    seen: set[str] = set()
    for name, _ in h:
        low = name.lower()
        if low in SINGLE_HEADERS:
            if low in seen:
                raise ValueError(f"more than one {name} header")
            seen.add(low)
    for name in ("Call-ID", "CSeq", "From", "To"):
        if not (h.get(name) or "").strip():
            raise ValueError(f"missing {name}")
    if not h.get_all("Via"):
        raise ValueError("missing Via")
    for v in h.get_all("Via"):
        Via.parse(v)
    cseq = CSeq.parse(h.get("CSeq") or "")
    NameAddr.parse(h.get("From") or "")
    NameAddr.parse(h.get("To") or "")
    if isinstance(msg, Request):
        if cseq.method != msg.method:  # section 8.2.2? CSeq method must match (section 20.16)
            raise ValueError("CSeq method does not match the request method")
        mf = h.get("Max-Forwards")
        if mf is not None and (not mf.strip().isdigit() or int(mf) > 255):
            raise ValueError("bad Max-Forwards")
        for c in h.get_all("Contact"):
            if c.strip() != "*":
                NameAddr.parse(c)


def can_reply(headers: Headers | None) -> bool:
    """Whether a response can be built from ``headers`` (Via, From, To, Call-ID, CSeq parse)."""
    if headers is None:
        return False
    try:
        vias = headers.get_all("Via")
        if not vias:
            return False
        for via in vias:  # all of them are copied into the response (section 8.2.6.2)
            Via.parse(via)
        NameAddr.parse(headers.get("From") or "")
        NameAddr.parse(headers.get("To") or "")
        CSeq.parse(headers.get("CSeq") or "")
        return bool((headers.get("Call-ID") or "").strip())
    except ValueError:
        return False


def reply_method(headers: Headers | None) -> str | None:
    """The method a reply to a malformed request would answer, or None when no reply can be made.

    A reply needs the five headers it copies (section 8.2.6.2), present even when their values do
    not parse (RFC 4475 3.1.2: scalarlg, quotbal, badinv01, badvers get 400 or 505, not silence):
    it goes back to the source address (section 18.2.2 with rport, RFC 3581) and copies them as
    they came. An ACK is never answered (section 17).
    """
    if headers is None:
        return None
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if not (headers.get(name) or "").strip():
            return None
    words = (headers.get("CSeq") or "").split()
    method = words[-1] if words else ""
    return None if method == "ACK" else method


def build_response(
    headers: Headers, status: int, reason: str, *, to_tag: str | None = None, body: bytes = b""
) -> Response:
    """A response to the request with ``headers`` (RFC 3261 section 8.2.6.2).

    Copies Via (all, in order), From, Call-ID, CSeq and To, adding ``to_tag`` to To if it has none.
    Record-Route is not copied: we are a UA that does not stay in a proxy path (no 12.1.1 needed
    for non-dialog-creating replies; dialog-creating ones copy it in the user agent).
    """
    out = Headers()
    for name, value in headers:
        if name == "Via":
            out.add(name, value)
    out.add("From", headers.get("From") or "")
    to_value = headers.get("To") or ""
    if to_tag is not None and status != 100:
        try:
            to = NameAddr.parse(to_value)
        except ValueError:
            to = None  # the 400 to a request whose To does not parse copies it as it came
        if to is not None and to.tag is None:
            to_value = str(to.with_tag(to_tag))
    out.add("To", to_value)
    out.add("Call-ID", headers.get("Call-ID") or "")
    out.add("CSeq", headers.get("CSeq") or "")
    return Response(headers=out, status=status, reason=reason, body=body)


REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
    603: "Decline",
    604: "Does Not Exist Anywhere",
}


def reason_phrase(status: int) -> str:
    return REASON_PHRASES.get(status, "Unknown")
