"""Credentials and secrets visible on the wire, and encryption that was offered but not used
or is too weak. Sans-I/O: reads connection and application records.

Findings: ``{"type": "finding", "severity": "high"|"medium"|"low"|"info", "kind", "conn",
"frames", "protocol", "detail", "secret"}``. ``secret`` is masked (:func:`mask`) unless the
caller asks for the clear value (``show_secrets=True``); ``detail`` never contains a secret.

What is looked for
------------------

==============================  ========  ==================================================
kind                            severity  evidence
==============================  ========  ==================================================
cleartext-password              high      FTP USER/PASS, POP3 USER/PASS, IMAP LOGIN, IMAP
                                          AUTHENTICATE PLAIN/LOGIN, SMTP AUTH PLAIN/LOGIN
                                          (base64 decoded), HTTP Basic (decoded)
anonymous-login                 info      FTP USER anonymous/ftp (the "password" is an e-mail)
challenge-response-login        medium    POP3 APOP, SMTP/IMAP AUTH CRAM-MD5 (digest open to
                                          offline guessing)
cleartext-token                 high      HTTP ``Authorization: Bearer`` (and other token
                                          schemes; NTLM/Negotiate/Digest are
                                          challenge-response-login, medium)
cleartext-cookie                medium    ``Cookie``/``Set-Cookie`` over plain HTTP
cleartext-file-transfer         medium    an FTP data connection (file content in the clear)
starttls-not-used               medium    server offered STARTTLS (SMTP EHLO 250-STARTTLS,
                                          IMAP CAPABILITY STARTTLS, POP3 CAPA STLS) and the
                                          client went on in cleartext
weak-tls-version                high/med  SSL 2/3 (high), TLS 1.0/1.1 (medium)
weak-cipher-suite               high/med  see WEAK_CIPHER_RULES
==============================  ========  ==================================================

Weak cipher suites (current practice: RFC 9325 / BCP 195, RFC 7465 for RC4, RFC 8996 for
TLS 1.0/1.1), matched on the IANA name the TLS parser reports:

* high: ``NULL`` encryption, ``EXPORT`` grades, ``anon`` (no authentication: DH_anon,
  ECDH_anon), ``RC4``, single ``DES``, ``RC2``, ``IDEA``, MD5 MACs (``_MD5``);
* medium: ``3DES``/``DES_EDE`` (Sweet32), CBC mode with TLS <= 1.0 (BEAST/Lucky13 family),
  static RSA key exchange (``TLS_RSA_WITH_*``: no forward secrecy).

Numeric suites (when the parser gives only the code) are looked up in a small table of
the historically common weak ones (:data:`WEAK_SUITE_CODES`).
"""

from __future__ import annotations

import base64
import binascii
import re
import sys

from dissect.analysis.observe import Observer, run

# --- masking ----------------------------------------------------------------------------

def mask(value) -> str:
    """``p****d``-style mask: first and last character of values of 8+ characters, else
    ``****``; the number of stars is fixed, so the length is never revealed."""
    if value is None:
        return None
    s = str(value)
    if len(s) >= 8:
        return f"{s[0]}****{s[-1]}"
    return "****"


def _finding(severity, kind, conn, frames, protocol, detail, secret=None, show=False) -> dict:
    return {"type": "finding", "severity": severity, "kind": kind, "conn": conn,
            "frames": sorted({f for f in frames or () if isinstance(f, int)}),
            "protocol": protocol, "detail": detail,
            "secret": None if secret is None else (secret if show else mask(secret))}


# --- decoding helpers -------------------------------------------------------------------

def _b64(s: str) -> bytes | None:
    s = (s or "").strip()
    if not s or s == "=" or s == "*":
        return None
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _text(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", "replace")


def sasl_plain(token: str) -> tuple[str | None, str | None]:
    """RFC 4616: base64(authzid NUL authcid NUL passwd) -> (user, password)."""
    raw = _b64(token)
    if raw is None or raw.count(b"\x00") != 2:
        return None, None
    _authz, user, pw = raw.split(b"\x00")
    return _text(user), _text(pw)


def _imap_args(arg: str) -> list[str]:
    """IMAP astrings: quoted (with \\ escapes) or atoms."""
    out = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|(\S+)', arg or ""):
        out.append(re.sub(r"\\(.)", r"\1", m.group(1)) if m.group(1) is not None
                   else m.group(2))
    return out


# --- TLS --------------------------------------------------------------------------------

WEAK_VERSIONS = {"SSL2.0": "high", "SSL3.0": "high", "TLS1.0": "medium", "TLS1.1": "medium"}
_VERSION_CODES = {0x0002: "SSL2.0", 0x0300: "SSL3.0", 0x0301: "TLS1.0", 0x0302: "TLS1.1",
                  0x0303: "TLS1.2", 0x0304: "TLS1.3"}

# (substring of the IANA name, severity, reason), first match wins
WEAK_CIPHER_RULES = (
    ("_NULL_", "high", "no encryption (NULL)"),
    ("WITH_NULL", "high", "no encryption (NULL)"),
    ("EXPORT", "high", "export-grade key sizes"),
    ("_anon_", "high", "anonymous key exchange (no server authentication)"),
    ("RC4", "high", "RC4 (prohibited, RFC 7465)"),
    ("RC2", "high", "RC2"),
    ("IDEA", "high", "IDEA (64-bit block)"),
    ("WITH_DES_", "high", "single DES"),
    ("DES40", "high", "export DES"),
    ("_MD5", "high", "MD5 MAC"),
    ("3DES", "medium", "3DES (64-bit block, Sweet32)"),
    ("DES_EDE", "medium", "3DES (64-bit block, Sweet32)"),
)
# well-known weak suites by code (IANA TLS Cipher Suites registry)
WEAK_SUITE_CODES = {
    0x0000: "TLS_NULL_WITH_NULL_NULL", 0x0001: "TLS_RSA_WITH_NULL_MD5",
    0x0002: "TLS_RSA_WITH_NULL_SHA", 0x0003: "TLS_RSA_EXPORT_WITH_RC4_40_MD5",
    0x0004: "TLS_RSA_WITH_RC4_128_MD5", 0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x0006: "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5", 0x0007: "TLS_RSA_WITH_IDEA_CBC_SHA",
    0x0008: "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA", 0x0009: "TLS_RSA_WITH_DES_CBC_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA", 0x0016: "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0x0018: "TLS_DH_anon_WITH_RC4_128_MD5", 0x001B: "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA", 0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256", 0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256", 0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0xC007: "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", 0xC011: "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    0xC012: "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", 0xC008: "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA",
}


def normalise_version(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, int):
        return _VERSION_CODES.get(v)
    s = str(v).upper().replace(" ", "").replace("V", "")
    if s.startswith("0X"):
        try:
            return _VERSION_CODES.get(int(s, 16))
        except ValueError:
            return None
    return s if s in _VERSION_CODES.values() else None


def classify_suite(suite, version: str | None) -> tuple[str, str] | None:
    """(severity, reason) when ``suite`` (IANA name or code) is below current practice."""
    name = WEAK_SUITE_CODES.get(suite) if isinstance(suite, int) else str(suite or "")
    if not name:
        return None
    u = name.upper()
    for needle, sev, why in WEAK_CIPHER_RULES:
        if needle.upper() in u:
            return sev, why
    if "_CBC_" in u and version in ("SSL3.0", "TLS1.0"):
        return "medium", f"CBC mode with {version}"
    if u.startswith("TLS_RSA_WITH_"):
        return "medium", "static RSA key exchange (no forward secrecy)"
    return None


# --- per protocol: one record at a time -------------------------------------------------

def _login_user(r) -> tuple:
    """What a USER command leaves for the PASS after it: (name, frames)."""
    return r.get("arg"), tuple(r.get("frames") or ())


def _ftp(r, user, show) -> dict:
    """The finding of FTP PASS ``r``; ``user``: the USER before it (:func:`_login_user`)."""
    name = user[0] if user is not None else None
    frames = (list(user[1]) if user is not None else []) + r.get("frames", [])
    ok = r.get("reply_code")
    outcome = "accepted" if ok == 230 else f"reply {ok}" if ok else "no reply"
    if name and name.lower() in ("anonymous", "ftp"):
        return _finding("info", "anonymous-login", r["conn"], frames, "ftp",
                        f"FTP anonymous login ({outcome})", r.get("arg"), show)
    return _finding("high", "cleartext-password", r["conn"], frames, "ftp",
                    f"FTP USER {name!s} / PASS sent in cleartext ({outcome})",
                    r.get("arg"), show)


def _pop3(r, cmd, user, show) -> list:
    """Findings of POP3 command ``cmd`` (PASS, APOP or AUTH) in ``r``; ``user``: the USER
    before a PASS (:func:`_login_user`)."""
    if cmd == "PASS":
        name = user[0] if user is not None else None
        frames = (list(user[1]) if user is not None else []) + r.get("frames", [])
        return [_finding("high", "cleartext-password", r["conn"], frames, "pop3",
                         f"POP3 USER {name!s} / PASS sent in cleartext "
                         f"({r.get('status') or 'no reply'})", r.get("arg"), show)]
    if cmd == "APOP":
        parts = (r.get("arg") or "").split()
        name = parts[0] if parts else None
        return [_finding("medium", "challenge-response-login", r["conn"], r.get("frames"),
                         "pop3", f"POP3 APOP {name!s}: MD5 digest of the greeting "
                         "challenge and password, open to offline guessing",
                         parts[1] if len(parts) > 1 else None, show)]
    if cmd == "AUTH":
        return _sasl(r, "pop3", (r.get("arg") or "").split(" ")[0],
                     [a for a in (r.get("arg") or "").split(" ")[1:2] if a]
                     + list(r.get("auth_data") or []), show)
    return []


def _sasl(r, proto, mech, data, show) -> list:
    mech = (mech or "").upper()
    data = [d for d in data if d is not None]
    frames = r.get("frames")
    label = proto.upper()
    if mech == "PLAIN":
        for tok in data:
            user, pw = sasl_plain(tok)
            if pw is not None:
                return [_finding("high", "cleartext-password", r["conn"], frames, proto,
                                 f"{label} AUTH PLAIN as {user!s}: base64 only, password "
                                 "readable", pw, show)]
        return []
    if mech == "LOGIN":
        vals = [_text(_b64(t)) for t in data]
        vals = [v for v in vals if v is not None]
        if len(vals) >= 2:
            return [_finding("high", "cleartext-password", r["conn"], frames, proto,
                             f"{label} AUTH LOGIN as {vals[-2]!s}: base64 only, password "
                             "readable", vals[-1], show)]
        return []
    if mech in ("CRAM-MD5", "DIGEST-MD5"):
        user = None
        if data:
            dec = _text(_b64(data[-1])) or ""
            user = dec.split(" ")[0] if dec else None
        return [_finding("medium", "challenge-response-login", r["conn"], frames, proto,
                         f"{label} AUTH {mech} as {user!s}: MD5 challenge-response, open to "
                         "offline guessing", None, show)]
    return []


def _smtp(r, show) -> list:
    """Findings of SMTP record ``r`` (an AUTH command)."""
    if (r.get("command") or "").upper() != "AUTH":
        return []
    mech = r.get("auth_mechanism") or (r.get("arg") or "").split(" ")[0]
    return _sasl(r, "smtp", mech, list(r.get("auth_data") or []), show)


def _imap(r, show) -> list:
    """Findings of IMAP record ``r`` (LOGIN or AUTHENTICATE)."""
    cmd = (r.get("command") or "").upper()
    if cmd == "LOGIN":
        args = _imap_args(r.get("arg"))
        user = args[0] if args else None
        pw = args[1] if len(args) > 1 else None
        return [_finding("high", "cleartext-password", r["conn"], r.get("frames"), "imap",
                         f"IMAP LOGIN {user!s} sent in cleartext "
                         f"({r.get('status') or 'no reply'})", pw, show)]
    if cmd == "AUTHENTICATE":
        parts = (r.get("arg") or "").split()
        mech = parts[0] if parts else ""
        return _sasl(r, "imap", mech, parts[1:2] + list(r.get("auth_data") or []), show)
    return []


def _headers(r) -> list[tuple[str, str]]:
    """HTTP headers from a record, as (lower-case name, value) pairs (dict or list shape)."""
    out = []
    for key in ("request_headers", "headers", "response_headers"):
        h = r.get(key)
        if isinstance(h, dict):
            out += [(str(k).lower(), v) for k, vs in h.items()
                    for v in (vs if isinstance(vs, list) else [vs])]
        elif isinstance(h, list):
            out += [(str(p[0]).lower(), p[1]) for p in h if isinstance(p, (list, tuple))
                    and len(p) == 2]
    return out


# HTTP authentication schemes that send a challenge response, not a reusable secret
CHALLENGE_SCHEMES = frozenset({"ntlm", "negotiate", "digest"})
# the HTTP headers that carry credentials or session secrets
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


def _http(r, show) -> list:
    """Findings of HTTP record ``r``: credentials and cookies in its headers."""
    out = []
    for name, value in _headers(r):
        if name not in SECRET_HEADERS:
            continue
        value = str(value)
        if name in ("authorization", "proxy-authorization"):
            scheme, _, cred = value.partition(" ")
            if scheme.lower() == "basic":
                raw = _text(_b64(cred)) or ""
                user, _, pw = raw.partition(":")
                out.append(_finding("high", "cleartext-password", r["conn"], r.get("frames"),
                                    "http", f"HTTP Basic {name} for {user!s}: base64 only, "
                                    "password readable", pw or cred, show))
            elif scheme.lower() in CHALLENGE_SCHEMES:
                out.append(_finding("medium", "challenge-response-login", r["conn"],
                                    r.get("frames"), "http",
                                    f"HTTP {name} {scheme}: challenge-response over plain "
                                    "HTTP (open to relay/offline guessing)",
                                    cred.strip() or None, show))
            else:
                out.append(_finding("high", "cleartext-token", r["conn"], r.get("frames"),
                                    "http", f"HTTP {name} {scheme} token over plain HTTP",
                                    cred.strip() or value, show))
        else:
            cname, _, cval = value.partition("=")
            out.append(_finding("medium", "cleartext-cookie", r["conn"], r.get("frames"),
                                "http", f"HTTP {name} {cname.strip()!s} over plain HTTP",
                                cval.split(";")[0].strip(), show))
    return out


TLS_TYPES = ("tls", "tls-handshake", "tls-session")


def _tls(r) -> list:
    """Findings of TLS record ``r``: a weak version or cipher suite."""
    out = []
    ver = normalise_version(r.get("version") or r.get("negotiated_version"))
    frames = r.get("frames")
    if ver in WEAK_VERSIONS:
        out.append(_finding(WEAK_VERSIONS[ver], "weak-tls-version", r["conn"], frames, "tls",
                            f"{ver} negotiated (TLS 1.2 or later is current practice, "
                            "RFC 8996)"))
    suite = r.get("cipher_suite") if r.get("cipher_suite") is not None else r.get("cipher")
    got = classify_suite(suite, ver)
    if got is not None:
        name = WEAK_SUITE_CODES.get(suite, suite) if isinstance(suite, int) else suite
        out.append(_finding(got[0], "weak-cipher-suite", r["conn"], frames, "tls",
                            f"cipher suite {name}: {got[1]}"))
    return out


def _ftp_data(r) -> dict:
    dc = r.get("data_conn", r.get("conn"))
    what = " ".join(str(x) for x in (r.get("command"), r.get("arg")) if x) or "a transfer"
    return _finding("medium", "cleartext-file-transfer", dc, r.get("frames"), "ftp-data",
                    f"FTP data connection for {what} carries the content in cleartext "
                    f"(control connection {r.get('control_conn')})")


# --- STARTTLS offered, not used ----------------------------------------------------------

_STARTTLS_WORD = re.compile(r"\bSTARTTLS\b")


def _offers_starttls(r) -> bool:
    """An SMTP record whose EHLO reply lists the STARTTLS extension."""
    return any(str(e).upper().split(" ")[0] == "STARTTLS" for e in r.get("extensions") or [])


def _offers_stls(r) -> bool:
    """A POP3 CAPA record whose reply lists STLS."""
    return any(str(x).upper().strip() == "STLS"
               for x in r.get("capabilities") or r.get("data_lines") or [])


def _starttls(cid, c) -> list:
    """Servers that offered STARTTLS to a client that then went on in cleartext, from the
    facts kept for connection ``cid`` (a :class:`_Conn`)."""
    out = []
    if c.smtp_offer is not None and not c.smtp_used and c.smtp_commands:
        frames, offer_frame = c.smtp_offer
        later = sorted(cmd for cmd, f in c.smtp_commands.items() if f > offer_frame)
        if later:
            out.append(_finding("medium", "starttls-not-used", cid, frames, "smtp",
                                "server offered STARTTLS in its EHLO reply; the client went "
                                f"on in cleartext ({', '.join(later)})"))
    if c.imap_caps and not c.starttls and c.imap_command:
        out.append(_finding("medium", "starttls-not-used", cid, c.imap_frame, "imap",
                            "server advertised STARTTLS; the client went on in cleartext"))
    if c.pop3 and c.pop3_capa is not None and not c.stls:
        out.append(_finding("medium", "starttls-not-used", cid, c.pop3_capa, "pop3",
                            "server offered STLS in CAPA; the client went on in cleartext"))
    return out


# --- the pass ---------------------------------------------------------------------------

# a connection's findings are listed protocol by protocol, in this order
_FTP, _POP3, _IMAP, _SMTP, _HTTP, _TLS = range(6)


class _Conn:
    """What is kept of one connection that has a finding or a STARTTLS fact: its findings
    (with their protocol's place, see ``_FTP``...), the USER waiting for its PASS, and the
    STARTTLS facts (``smtp_offer``: frames and request frame of the first EHLO reply
    offering it; ``smtp_commands``: each SMTP command's last request frame; the first
    IMAP session frame, the frames of the first CAPA offering STLS...)."""

    __slots__ = ("found", "ftp_user", "pop3_user", "pop3", "smtp_offer", "smtp_used",
                 "smtp_commands", "imap_caps", "imap_command", "imap_frame", "starttls",
                 "pop3_capa", "stls")

    def __init__(self):
        self.found = self.ftp_user = self.pop3_user = self.smtp_offer = None
        self.smtp_commands = self.imap_frame = self.pop3_capa = None
        self.pop3 = self.smtp_used = self.imap_caps = self.imap_command = False
        self.starttls = self.stls = False


def _place(f: tuple) -> int:
    return f[0]


_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2, "info": 3}


def _severity_first_frame(f: dict) -> tuple:
    return _SEVERITY_ORDER[f["severity"]], f["frames"][0] if f["frames"] else 0


class CleartextObserver(Observer):
    """The findings of :func:`cleartext_findings` from one pass.

    Each record is read as it comes: its findings are made at once (secrets masked unless
    ``show_secrets``), and only connections that get a finding or a fact the STARTTLS check
    needs (an offer, a command, a capability) keep anything. Findings of one connection are
    listed together, connections in the order they got their first finding or fact (the
    order the whole-result version listed connections in: by first record; the two differ
    only in the order of two findings of equal severity and first frame on different
    connections), then the STARTTLS findings, then the FTP data connections."""

    def __init__(self, show_secrets: bool = False):
        self.show = show_secrets
        self._conns: dict = {}      # conn id -> _Conn, in the order they got one
        self._data: list = []       # cleartext-file-transfer findings, in record order

    def _conn(self, cid) -> _Conn:
        c = self._conns.get(cid)
        if c is None:
            c = self._conns[cid] = _Conn()
        return c

    def _add(self, cid, place: int, found: list) -> None:
        c = self._conn(cid)
        if c.found is None:
            c.found = []
        c.found += [(place, f) for f in found]

    def record(self, r: dict) -> None:
        t = r.get("type")
        cid = r.get("conn")
        show = self.show
        cmd = r.get("command")
        if t == "http":
            found = _http(r, show)
            if found:
                self._add(cid, _HTTP, found)
        elif t in TLS_TYPES:
            found = _tls(r)
            if found:
                self._add(cid, _TLS, found)
        elif t == "ftp":
            up = (cmd or "").upper()
            if up == "USER":
                self._conn(cid).ftp_user = _login_user(r)
            elif up == "PASS":
                c = self._conn(cid)
                self._add(cid, _FTP, [_ftp(r, c.ftp_user, show)])
                c.ftp_user = None
        elif t == "pop3":
            c = self._conn(cid)
            c.pop3 = True
            up = (cmd or "").upper()
            if up == "USER":
                c.pop3_user = _login_user(r)
            elif up in ("PASS", "APOP", "AUTH"):
                found = _pop3(r, up, c.pop3_user, show)
                if found:
                    self._add(cid, _POP3, found)
                if up == "PASS":
                    c.pop3_user = None
        elif t == "imap":
            found = _imap(r, show)
            if found:
                self._add(cid, _IMAP, found)
            if cmd:
                self._conn(cid).imap_command = True
        elif t == "smtp":
            self._smtp(r, cid, cmd)
        elif t == "smtp-starttls":
            self._conn(cid).smtp_used = True
        elif t == "imap-session":
            fr = r.get("frames")
            if fr:
                c = self._conn(cid)
                if c.imap_frame is None:
                    c.imap_frame = [fr[0]]
        elif t == "ftp-data":
            self._data.append(_ftp_data(r))
        # what any record of a connection tells the STARTTLS checks
        if cmd:
            up = cmd.upper()
            if up == "STARTTLS":
                self._conn(cid).starttls = True
            elif up == "STLS":
                self._conn(cid).stls = True
            elif up == "CAPA" and _offers_stls(r):
                c = self._conn(cid)
                if c.pop3_capa is None:
                    c.pop3_capa = tuple(r.get("frames") or ())
        g, caps, st = r.get("greeting"), r.get("capabilities"), r.get("status_text")
        if g or caps or st:
            if any(x and _STARTTLS_WORD.search(str(x).upper()) for x in (g, caps, st)):
                self._conn(cid).imap_caps = True

    def _smtp(self, r, cid, cmd) -> None:
        found = _smtp(r, self.show)
        if found:
            self._add(cid, _SMTP, found)
        if not cmd and not r.get("extensions"):
            return
        c = self._conn(cid)
        if c.smtp_offer is None and _offers_starttls(r):
            c.smtp_offer = (tuple(r.get("frames") or ()), r.get("request_frame", 0))
        if cmd:
            if cmd.upper() == "STARTTLS":
                c.smtp_used = True
            f = r.get("request_frame", 0)
            if f is not None:
                if c.smtp_commands is None:
                    c.smtp_commands = {}
                cmd = sys.intern(cmd) if type(cmd) is str else cmd
                last = c.smtp_commands.get(cmd)
                if last is None or f > last:
                    c.smtp_commands[cmd] = f

    def finish(self, res) -> list[dict]:
        out: list[dict] = []
        for c in self._conns.values():
            if c.found:
                out += [f for _p, f in sorted(c.found, key=_place)]
        for cid, c in self._conns.items():
            out += _starttls(cid, c)
        out += self._data
        out.sort(key=_severity_first_frame)
        return out


def cleartext_findings(result, show_secrets: bool = False) -> list[dict]:
    """Findings for ``result`` (``.connections`` and ``.records``), most severe first."""
    return run(result, CleartextObserver(show_secrets))
