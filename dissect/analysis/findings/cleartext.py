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


# --- per protocol ------------------------------------------------------------------------

def _ftp(recs, show):
    out = []
    user = None
    for r in recs:
        cmd = (r.get("command") or "").upper()
        if cmd == "USER":
            user = r
        if cmd != "PASS":
            continue
        name = (user or {}).get("arg")
        frames = (user or {}).get("frames", []) + r.get("frames", [])
        ok = r.get("reply_code")
        outcome = "accepted" if ok == 230 else f"reply {ok}" if ok else "no reply"
        if name and name.lower() in ("anonymous", "ftp"):
            out.append(_finding("info", "anonymous-login", r["conn"], frames, "ftp",
                                f"FTP anonymous login ({outcome})", r.get("arg"), show))
        else:
            out.append(_finding("high", "cleartext-password", r["conn"], frames, "ftp",
                                f"FTP USER {name!s} / PASS sent in cleartext ({outcome})",
                                r.get("arg"), show))
        user = None
    return out


def _pop3(recs, show):
    out = []
    user = None
    for r in recs:
        cmd = (r.get("command") or "").upper()
        if cmd == "USER":
            user = r
        elif cmd == "PASS":
            name = (user or {}).get("arg")
            frames = (user or {}).get("frames", []) + r.get("frames", [])
            out.append(_finding("high", "cleartext-password", r["conn"], frames, "pop3",
                                f"POP3 USER {name!s} / PASS sent in cleartext "
                                f"({r.get('status') or 'no reply'})", r.get("arg"), show))
            user = None
        elif cmd == "APOP":
            parts = (r.get("arg") or "").split()
            name = parts[0] if parts else None
            out.append(_finding("medium", "challenge-response-login", r["conn"], r.get("frames"),
                                "pop3", f"POP3 APOP {name!s}: MD5 digest of the greeting "
                                "challenge and password, open to offline guessing",
                                parts[1] if len(parts) > 1 else None, show))
        elif cmd == "AUTH":
            out += _sasl(r, "pop3", (r.get("arg") or "").split(" ")[0],
                         [a for a in (r.get("arg") or "").split(" ")[1:2] if a]
                         + list(r.get("auth_data") or []), show)
    return out


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


def _smtp(recs, show):
    out = []
    for r in recs:
        if r.get("type") != "smtp" or (r.get("command") or "").upper() != "AUTH":
            continue
        mech = r.get("auth_mechanism") or (r.get("arg") or "").split(" ")[0]
        out += _sasl(r, "smtp", mech, list(r.get("auth_data") or []), show)
    return out


def _imap(recs, show):
    out = []
    for r in recs:
        cmd = (r.get("command") or "").upper()
        if cmd == "LOGIN":
            args = _imap_args(r.get("arg"))
            user = args[0] if args else None
            pw = args[1] if len(args) > 1 else None
            out.append(_finding("high", "cleartext-password", r["conn"], r.get("frames"), "imap",
                                f"IMAP LOGIN {user!s} sent in cleartext "
                                f"({r.get('status') or 'no reply'})", pw, show))
        elif cmd == "AUTHENTICATE":
            parts = (r.get("arg") or "").split()
            mech = parts[0] if parts else ""
            out += _sasl(r, "imap", mech, parts[1:2] + list(r.get("auth_data") or []), show)
    return out


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


def _http(recs, show):
    out = []
    for r in recs:
        if r.get("type") != "http":
            continue
        for name, value in _headers(r):
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
            elif name in ("cookie", "set-cookie"):
                cname, _, cval = value.partition("=")
                out.append(_finding("medium", "cleartext-cookie", r["conn"], r.get("frames"),
                                    "http", f"HTTP {name} {cname.strip()!s} over plain HTTP",
                                    cval.split(";")[0].strip(), show))
    return out


def _starttls(conns_recs, types_of: dict | None = None) -> list:
    """Servers that offered STARTTLS to a client that then went on in cleartext
    (``types_of``: each connection's record types, when known)."""
    out = []
    for cid, recs in conns_recs.items():
        types = types_of[cid] if types_of is not None else {r.get("type") for r in recs}
        if "smtp" in types:
            offered = [r for r in recs if r.get("type") == "smtp"
                       and any(str(e).upper().split(" ")[0] == "STARTTLS"
                               for e in r.get("extensions") or [])]
            used = any(r.get("type") == "smtp-starttls" or
                       (r.get("type") == "smtp" and (r.get("command") or "").upper() == "STARTTLS")
                       for r in recs)
            later = [r for r in recs if r.get("type") == "smtp" and r.get("command")
                     and offered and r.get("request_frame", 0) > offered[0].get("request_frame", 0)]
            if offered and not used and later:
                cmds = ", ".join(sorted({r["command"] for r in later}))
                out.append(_finding("medium", "starttls-not-used", cid,
                                    offered[0].get("frames"), "smtp",
                                    "server offered STARTTLS in its EHLO reply; the client went "
                                    f"on in cleartext ({cmds})"))
        if "imap" in types or "imap-session" in types:
            caps = " ".join(str(x) for r in recs for x in (
                r.get("greeting"), r.get("capabilities"), r.get("status_text")) if x).upper()
            used = any((r.get("command") or "").upper() == "STARTTLS" for r in recs)
            if re.search(r"\bSTARTTLS\b", caps) and not used and \
                    any(r.get("type") == "imap" and r.get("command") for r in recs):
                fr = [f for r in recs if r.get("type") == "imap-session"
                      for f in r.get("frames") or []]
                out.append(_finding("medium", "starttls-not-used", cid, fr[:1], "imap",
                                    "server advertised STARTTLS; the client went on in cleartext"))
        if "pop3" in types:
            caps = [r for r in recs if (r.get("command") or "").upper() == "CAPA"
                    and any(str(x).upper().strip() == "STLS" for x in r.get("capabilities") or
                            r.get("data_lines") or [])]
            used = any((r.get("command") or "").upper() == "STLS" for r in recs)
            if caps and not used:
                out.append(_finding("medium", "starttls-not-used", cid, caps[0].get("frames"),
                                    "pop3", "server offered STLS in CAPA; the client went on "
                                    "in cleartext"))
    return out


TLS_TYPES = ("tls", "tls-handshake", "tls-session")


def _tls(recs) -> list:
    out = []
    for r in recs:
        if r.get("type") not in TLS_TYPES:
            continue
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


def cleartext_findings(result, show_secrets: bool = False) -> list[dict]:
    """Findings for ``result`` (``.connections`` and ``.records``), most severe first."""
    by_conn: dict = {}
    for r in result.records:
        by_conn.setdefault(r.get("conn"), []).append(r)
    out: list[dict] = []
    types_of: dict = {}
    for cid, recs in by_conn.items():
        # each look below finds nothing in a connection without its record type (most
        # connections have one type: asking every look cost most of this function)
        types = types_of[cid] = {r.get("type") for r in recs}
        if "ftp" in types:
            out += _ftp([r for r in recs if r.get("type") == "ftp"], show_secrets)
        if "pop3" in types:
            out += _pop3([r for r in recs if r.get("type") == "pop3"], show_secrets)
        if "imap" in types:
            out += _imap([r for r in recs if r.get("type") == "imap"], show_secrets)
        if "smtp" in types:
            out += _smtp(recs, show_secrets)
        if "http" in types:
            out += _http(recs, show_secrets)
        if not types.isdisjoint(TLS_TYPES):
            out += _tls(recs)
    out += _starttls(by_conn, types_of)
    for r in result.records:
        if r.get("type") == "ftp-data":
            dc = r.get("data_conn", r.get("conn"))
            what = " ".join(str(x) for x in (r.get("command"), r.get("arg")) if x) or "a transfer"
            out.append(_finding("medium", "cleartext-file-transfer", dc,
                                r.get("frames"), "ftp-data",
                                f"FTP data connection for {what} carries the content in "
                                f"cleartext (control connection {r.get('control_conn')})"))
    order = {"high": 0, "medium": 1, "low": 2, "info": 3}
    out.sort(key=lambda f: (order[f["severity"]], f["frames"][0] if f["frames"] else 0))
    return out
