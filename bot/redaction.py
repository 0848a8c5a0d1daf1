"""Removing secrets and personal data from text, and spotting prompt leaks and injection attempts.

Users paste credentials into support chats all the time (an API key in a stack trace, a password
"so you can check my account"). Whatever we store or send to a model is copied into logs,
backups and a third party's systems, so secrets are replaced before either happens, and the user
is told why. Model answers get the same treatment on the way out, because retrieved documents and
memory can carry secrets and personal data the user never typed.

Everything here is pure (no I/O, no configuration) and deterministic, so it is cheap to call on
every message and easy to test. The detectors favour precision: each has a narrow pattern plus a
validity check where one exists (Luhn for card numbers, mod-97 for IBANs, a decodable header for
JWTs), because redacting ordinary text (order numbers, commit SHAs, "sk-8 skates") makes the bot
look broken and hides the question.

Every regular expression is written to run in linear time on hostile input: no nested
quantifiers over overlapping characters, token patterns anchored on a literal prefix behind a
one-character look-behind (so a long run of token characters is tried once, not at every
position), and variable parts bounded where they cannot be anchored.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    """One kind of secret that was removed; `kind` is for code and metrics, `label` for people."""

    kind: str  # stable machine name, e.g. "openai_key", "card_number"
    label: str  # what the user is told, e.g. "an OpenAI API key"


@dataclass(frozen=True, slots=True)
class Redacted:
    """The text with every secret replaced by "[redacted <label>]", and what was removed."""

    text: str
    findings: tuple[Finding, ...]  # one per kind, in order of first appearance

    @property
    def changed(self) -> bool:
        """Whether anything was removed (the caller then tells the user, see `user_notice`)."""
        return bool(self.findings)


# --- Kinds -------------------------------------------------------------------------------------

_OPENAI_KEY = Finding("openai_key", "an OpenAI API key")
_ANTHROPIC_KEY = Finding("anthropic_key", "an Anthropic API key")
_AWS_ACCESS_KEY_ID = Finding("aws_access_key_id", "an AWS access key ID")
_AWS_SECRET_KEY = Finding("aws_secret_key", "an AWS secret access key")
_GITHUB_TOKEN = Finding("github_token", "a GitHub token")
_SLACK_TOKEN = Finding("slack_token", "a Slack token")
_STRIPE_KEY = Finding("stripe_key", "a Stripe secret key")
_GOOGLE_API_KEY = Finding("google_api_key", "a Google API key")
_AZURE_KEY = Finding("azure_key", "an Azure access key")
_JWT = Finding("jwt", "a JSON Web Token")
_BEARER_TOKEN = Finding("bearer_token", "a bearer token")
_BASIC_AUTH = Finding("basic_auth", "HTTP basic-auth credentials")
_PRIVATE_KEY = Finding("private_key", "a private key")
_URL_CREDENTIALS = Finding("url_credentials", "a password in a link")
_LABELLED_SECRET = Finding("secret", "an API key or token")
_PASSWORD = Finding("password", "a password")
_CARD_NUMBER = Finding("card_number", "a payment card number")
_US_SSN = Finding("us_ssn", "a US Social Security number")
_UK_NINO = Finding("uk_nino", "a UK National Insurance number")
_IBAN = Finding("iban", "a bank account number (IBAN)")

# Personal data rather than credentials: nothing to rotate, so the notice says something else.
_PERSONAL_KINDS = frozenset({_CARD_NUMBER.kind, _US_SSN.kind, _UK_NINO.kind, _IBAN.kind})

_Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class _Detector:
    finding: Finding
    find: Callable[[str], Iterator[_Span]]


def _placeholder(finding: Finding) -> str:
    return f"[redacted {finding.label}]"


_REDACTED_PREFIX = "[redacted"  # a bare value stops at the space after it


# --- Validity checks ---------------------------------------------------------------------------

_TEMPLATE = re.compile(
    r"<[^<>]*>|\$\{[^}]*\}|\$[A-Z_][A-Z0-9_]*|\{\{[^}]*\}\}|%\(?\w*\)?s|\[[^\[\]]*\]")
_PLACEHOLDER_WORD = re.compile(r"your|example|placeholder|redacted|dummy|sample",
                               re.IGNORECASE)
_FILLER = frozenset("*xX.•·-_#?=")


def _is_placeholder(value: str) -> bool:
    """Whether a value is a documentation stand-in rather than a secret.

    "YOUR_API_KEY", "<token>", "****" and "${DB_PASSWORD}" appear in help articles; redacting
    them would garble the answer and protect nothing.
    """
    if not value or value.startswith(_REDACTED_PREFIX) or set(value) <= _FILLER:
        return True
    if _TEMPLATE.fullmatch(value) or "EXAMPLE" in value:  # AWS's documented keys end in EXAMPLE
        return True
    return not any(ch.isdigit() for ch in value) and bool(_PLACEHOLDER_WORD.search(value))


def _char_classes(value: str) -> int:
    return (any(ch.isupper() for ch in value) + any(ch.islower() for ch in value)
            + any(ch.isdigit() for ch in value))


def _random_looking(value: str, *, classes: int = 2, distinct: int = 8,
                    upper: bool = False) -> bool:
    """Generated tokens mix character classes; prose, slugs and "xxxxxxxx" stand-ins do not."""
    return (not _is_placeholder(value) and len(set(value)) >= distinct
            and _char_classes(value) >= classes
            and (not upper or any(ch.isupper() for ch in value)))


# Words that follow "Password:" in documentation and forms rather than an actual password.
_NOT_A_VALUE = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "below", "blank", "can", "change", "changed",
    "empty", "enter", "false", "field", "for", "hidden", "if", "is", "least", "leave", "masked",
    "max", "maximum", "min", "minimum", "must", "n/a", "na", "nil", "no", "none", "not", "null",
    "of", "optional", "or", "required", "reset", "same", "see", "set", "should", "the", "to",
    "true", "type", "use", "used", "was", "will", "with", "yes", "your",
})
_WORD_PUNCTUATION = frozenset("-'’.")


def _secretish(value: str, *, min_len: int) -> bool:
    """Whether a word after "my password is" looks like a password rather than prose.

    Prose is common there ("my password is not working", "the password is case-sensitive"), so
    this asks for what passwords have and words lack: digits with letters, symbols, inner
    capitals, or six or more digits.
    """
    if len(value) < min_len or _is_placeholder(value) or value.casefold() in _NOT_A_VALUE:
        return False
    if value.isdigit():
        return len(value) >= 6
    letters = any(ch.isalpha() for ch in value)
    digits = any(ch.isdigit() for ch in value)
    symbols = any(not ch.isalnum() and ch not in _WORD_PUNCTUATION for ch in value)
    if letters + digits + symbols >= 2:
        return True
    return any(ch.isupper() for ch in value[1:]) and any(ch.islower() for ch in value)


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_brand_length_ok(digits: str) -> bool:
    """Whether the number starts with an issuer prefix (IIN) that issues cards of this length."""
    n = len(digits)
    p2, p3, p4, p6 = int(digits[:2]), int(digits[:3]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return n == 16
    if p2 in (34, 37):  # American Express
        return n == 15
    if p4 == 6011 or p2 == 65 or 644 <= p3 <= 649 or 622126 <= p6 <= 622925:  # Discover
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:  # JCB
        return 16 <= n <= 19
    if 300 <= p3 <= 305 or p4 == 3095 or p2 in (36, 38, 39):  # Diners Club
        return 14 <= n <= 19
    if p2 == 62 or 2200 <= p4 <= 2204:  # UnionPay, Mir
        return 16 <= n <= 19
    if p4 in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763):  # Maestro
        return 13 <= n <= 19
    return False


def _is_card_number(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and _card_brand_length_ok(digits) and _luhn(digits)


def _b64decode(value: str, *, urlsafe: bool) -> bytes | None:
    padded = value + "=" * (-len(value) % 4)
    try:
        if urlsafe:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _jwt_header_ok(header: str) -> bool:
    """A _JWT's first part is base64url JSON naming its algorithm; random "eyJ..." text is not."""
    raw = _b64decode(header, urlsafe=True)
    if raw is None:
        return False
    try:
        decoded = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


def _basic_auth_ok(value: str) -> bool:
    raw = _b64decode(value.rstrip("="), urlsafe=False)
    if raw is None:
        return False
    try:
        return ":" in raw.decode("utf-8")
    except UnicodeDecodeError:
        return False


# ISO 13616 lengths: a wrong length is the cheapest way to reject look-alikes.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def _iban_ok(compact: str) -> bool:
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# --- Detectors ---------------------------------------------------------------------------------

def _token(pattern: str, check: Callable[[str], bool], *,
           group: int = 0) -> Callable[[str], Iterator[_Span]]:
    """A detector that redacts `group` of each match of `pattern` that passes `check`."""
    compiled = re.compile(pattern)

    def find(text: str) -> Iterator[_Span]:
        for match in compiled.finditer(text):
            if check(match.group(group)):
                yield match.span(group)

    return find


# A value after "password:" or "api_key=": double-quoted, single-quoted or a bare word.
_VALUE = r"""(?:"(?P<dq>[^"\n]{1,512})"|'(?P<sq>[^'\n]{1,512})'|(?P<bare>[^\s;,]{1,512}))"""
_TRAILING = frozenset(".,;:)]}\"'")
_NEXT_QUERY_PARAMETER = re.compile(r"&[A-Za-z_][\w.-]{0,40}=")


def _value_span(match: re.Match[str]) -> tuple[int, int, bool] | None:
    """The span of the value in a `_VALUE` match, without quotes or sentence punctuation."""
    quoted = match.group("dq") is not None or match.group("sq") is not None
    start, end = match.span("dq" if match.group("dq") is not None
                            else "sq" if match.group("sq") is not None else "bare")
    text = match.string
    if not quoted:
        while start < end and text[start] in "\"'":
            start += 1
        parameter = _NEXT_QUERY_PARAMETER.search(text, start, end)  # ?pw=x&next=/home
        if parameter is not None:
            end = parameter.start()
        while end > start and text[end - 1] in _TRAILING:
            end -= 1
    cut = text.find(_REDACTED_PREFIX, start, end)  # never swallow an earlier placeholder
    if cut != -1:
        end = cut
    return (start, end, quoted) if end > start else None


def _labelled(pattern: str, accept: Callable[[str, re.Match[str], bool], bool],
              ) -> Callable[[str], Iterator[_Span]]:
    """A detector for "<keyword> <separator> <value>" forms that keeps the keyword visible."""
    compiled = re.compile(pattern + _VALUE)

    def find(text: str) -> Iterator[_Span]:
        for match in compiled.finditer(text):
            span = _value_span(match)
            if span is None:
                continue
            start, end, quoted = span
            value = text[start:end]
            raw = (match.group("dq") or match.group("sq") or match.group("bare")).split(
                _REDACTED_PREFIX, 1)[0]  # the value before trimming: "${DB_PASSWORD}"
            if not (_is_placeholder(value) or _is_placeholder(raw)) and accept(value, match,
                                                                               quoted):
                yield start, end

    return find


_PRIVATE_KEY_HEADER = (r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP |SSH2 ENCRYPTED )?"
                       r"PRIVATE KEY(?: BLOCK)?-----")
# The body cannot contain "-----" (an unrolled loop, linear), so a BEGIN without an END fails at
# the next BEGIN instead of scanning to the end of the text again for every header.
_PRIVATE_KEY_BLOCK = re.compile(
    _PRIVATE_KEY_HEADER + r"[^-]*(?:-(?!----)[^-]*)*"
    r"-----END (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP |SSH2 ENCRYPTED )?"
    r"PRIVATE KEY(?: BLOCK)?-----")
# A key pasted without its END line: the header and the base64 (and PEM header) lines after it.
_PRIVATE_KEY_TRUNCATED = re.compile(
    _PRIVATE_KEY_HEADER
    + r"(?:\s+(?:[A-Za-z0-9+/=]{16,}|(?:Proc-Type|DEK-Info|Comment):[^\n]*))*")


def _find_regex(compiled: re.Pattern[str]) -> Callable[[str], Iterator[_Span]]:
    def find(text: str) -> Iterator[_Span]:
        for match in compiled.finditer(text):
            yield match.span()

    return find


_URL_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,15}://(?P<info>[^\s/?#@:]*:[^\s/?#@]+)@")
_DOC_PASSWORDS = frozenset({"password", "pass", "passwd", "pwd", "pw", "secret"})


def _find_url_credentials(text: str) -> Iterator[_Span]:
    """`scheme://user:password@host`: the scheme and host stay, the userinfo goes."""
    for match in _URL_USERINFO.finditer(text):
        password = match.group("info").split(":", 1)[1]
        if not _is_placeholder(password) and password.casefold() not in _DOC_PASSWORDS:
            yield match.span("info")


def _openai_ok(key: str) -> bool:
    if key.startswith("sk-ant-"):  # an Anthropic placeholder the Anthropic detector rejected
        return False
    body = key.split("-", 1)[1]
    for prefix in ("proj-", "svcacct-", "admin-"):
        body = body.removeprefix(prefix)
    # Upper case is required: lowercase "sk-2024-release-notes-v2" slugs are prose.
    return len(body) >= 20 and _random_looking(body, upper=True)


_CARD_RUN = re.compile(r"(?<![\w+-])[0-9]+(?:[ -][0-9]+)*")
_DIGITS = re.compile(r"[0-9]+")


def _find_cards(text: str) -> Iterator[_Span]:
    """Runs of digit groups; any 13-19 digit window of whole groups that is a valid card number.

    Groups are split by single spaces or dashes, used consistently, in groups of 3-6 digits (as
    printed on cards: 4-4-4-4, 4-6-5, ...). Each window is at most 19 digits, so the work is
    linear in the length of the run.
    """
    for run in _CARD_RUN.finditer(text):
        base = run.start()
        groups = [(base + g.start(), base + g.end()) for g in _DIGITS.finditer(run.group())]
        if run.end() < len(text) and (text[run.end()].isalnum() or text[run.end()] == "_"):
            groups.pop()  # "4111...1111abc": glued to a word, not a number on its own
        i = 0
        while i < len(groups):
            best = None
            digits = ""
            for j in range(i, len(groups)):
                start, end = groups[j]
                if j > i:
                    if not (3 <= end - start <= 6 and 3 <= groups[i][1] - groups[i][0] <= 6):
                        break
                    if text[groups[j - 1][1]] != text[groups[i][1]]:
                        break  # mixed separators: "4111 1111-1111 1111" is two things
                digits += text[start:end]
                if len(digits) > 19:
                    break
                if _is_card_number(digits):
                    best = j
            if best is None:
                i += 1
            else:
                yield groups[i][0], groups[best][1]
                i = best + 1


_SSN = re.compile(r"(?<![\w-])(?P<area>[0-9]{3})-(?P<group>[0-9]{2})-(?P<serial>[0-9]{4})(?![\w-])")


def _find_ssns(text: str) -> Iterator[_Span]:
    """US SSNs, without the numbers the SSA never issues (area 000, 666, 9xx; group 00; 0000)."""
    for match in _SSN.finditer(text):
        area = match.group("area")
        if (area in ("000", "666") or area[0] == "9" or match.group("group") == "00"
                or match.group("serial") == "0000"):
            continue
        yield match.span()


_NINO = re.compile(
    r"(?<![A-Za-z0-9])(?P<prefix>[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])(?P<sep> ?)[0-9]{2}"
    r"(?P=sep)[0-9]{2}(?P=sep)[0-9]{2}(?P=sep)[A-D](?![A-Za-z0-9])", re.IGNORECASE)
_NINO_UNALLOCATED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def _find_ninos(text: str) -> Iterator[_Span]:
    """UK National Insurance numbers: HMRC's letter rules, six digits, suffix A-D."""
    for match in _NINO.finditer(text):
        if match.group("prefix").upper() not in _NINO_UNALLOCATED:
            yield match.span()


_IBAN_CANDIDATE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30}")


def _find_ibans(text: str) -> Iterator[_Span]:
    """IBANs with or without spaces: the country's exact length, then the mod-97 check."""
    for match in _IBAN_CANDIDATE.finditer(text):
        length = _IBAN_LENGTHS.get(match.group()[:2].upper())
        if length is None:
            continue
        end = None
        count = 0
        for position in range(match.start(), match.end()):
            if text[position] != " ":
                count += 1
                if count == length:
                    end = position + 1
                    break
        if end is None or (end < len(text) and text[end].isalnum()):
            continue
        if _iban_ok(text[match.start():end].replace(" ", "").upper()):
            yield match.start(), end


_PASSWORD_WORDS = (r"passwor[dt]|passwd|passphrase|passcode|pwd|pw|kennwort"
                   r"|mot[ \t]+de[ \t]+passe|contrase(?:ñ|n)a|senha")


def _password_after_separator(value: str, match: re.Match[str], quoted: bool) -> bool:
    return quoted or value.casefold() not in _NOT_A_VALUE


def _password_in_sentence(value: str, match: re.Match[str], quoted: bool) -> bool:
    if quoted or match.group("colon"):
        return _password_after_separator(value, match, quoted)
    return _secretish(value, min_len=4)


def _password_after_space(value: str, match: re.Match[str], quoted: bool) -> bool:
    return _secretish(value, min_len=6)


def _labelled_secret(value: str, match: re.Match[str], quoted: bool) -> bool:
    return len(value) >= 12 and _random_looking(value, distinct=6)


# Order matters: specific kinds first (so "password: sk-..." is reported as an OpenAI key and a
# PEM body is not picked apart by token patterns), generic keyword forms last. Later detectors see
# earlier placeholders and never redact across them.
_DETECTORS: tuple[_Detector, ...] = (
    _Detector(_PRIVATE_KEY, _find_regex(_PRIVATE_KEY_BLOCK)),
    _Detector(_PRIVATE_KEY, _find_regex(_PRIVATE_KEY_TRUNCATED)),
    _Detector(_URL_CREDENTIALS, _find_url_credentials),
    _Detector(_ANTHROPIC_KEY, _token(
        r"(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{20,}",
        lambda key: _random_looking(key[7:], upper=True))),
    _Detector(_OPENAI_KEY, _token(
        r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}", _openai_ok)),
    _Detector(_STRIPE_KEY, _token(
        r"(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
        lambda key: _random_looking(key[8:]))),
    _Detector(_AWS_ACCESS_KEY_ID, _token(
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])",
        lambda key: _random_looking(key[4:], classes=1, distinct=6))),
    _Detector(_AWS_SECRET_KEY, _token(
        r"(?i:aws[_ ]?secret[_ ]?(?:access[_ ]?)?key|secret[_ ]?access[_ ]?key)[\"']?[ \t]*[:=]"
        r"[ \t]*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        _random_looking, group=1)),
    _Detector(_GITHUB_TOKEN, _token(
        r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}"
        r"|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59,})(?![A-Za-z0-9_])",
        lambda token: _random_looking(token.split("_", 1)[1]))),
    _Detector(_SLACK_TOKEN, _token(
        r"(?<![A-Za-z0-9_-])(?:xox[abposr]|xapp)-[A-Za-z0-9-]{10,}",
        lambda token: _random_looking(token[5:]) and any(ch.isdigit() for ch in token[5:]))),
    _Detector(_GOOGLE_API_KEY, _token(
        r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])",
        lambda key: _random_looking(key[4:]))),
    _Detector(_AZURE_KEY, _token(
        r"(?i:(?<![A-Za-z])(?:AccountKey|SharedAccessKey))[ \t]*=[ \t]*([A-Za-z0-9+/]{20,}={0,2})",
        lambda key: _random_looking(key.rstrip("=")), group=1)),
    _Detector(_JWT, _token(
        r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        lambda token: _jwt_header_ok(token.split(".", 1)[0]))),
    _Detector(_BASIC_AUTH, _token(
        r"(?i:authorization)[\"']?[ \t]*[:=][ \t]*[\"']?(?i:basic)[ \t]+([A-Za-z0-9+/]{6,}={0,2})",
        _basic_auth_ok, group=1)),
    _Detector(_IBAN, _find_ibans),  # before cards: an IBAN's digit groups can pass Luhn
    _Detector(_CARD_NUMBER, _find_cards),
    _Detector(_US_SSN, _find_ssns),
    _Detector(_UK_NINO, _find_ninos),
    _Detector(_BEARER_TOKEN, _token(  # after an Authorization header any opaque token counts
        r"(?i:authorization)[\"']?[ \t]*[:=][ \t]*[\"']?(?i:bearer)[ \t]+([A-Za-z0-9._~+/=-]{8,})",
        lambda token: _random_looking(token, distinct=5), group=1)),
    _Detector(_BEARER_TOKEN, _token(  # on its own, "Bearer" must precede a long random token
        r"(?<![A-Za-z])(?i:bearer)[ \t]+([A-Za-z0-9._~+/=-]{20,})",
        lambda token: _random_looking(token, distinct=10), group=1)),
    _Detector(_LABELLED_SECRET, _labelled(
        r"(?i:(?<![A-Za-z])(?:api[_-]?key|apikey|api[_-]?secret|api[_-]?token|secret[_-]?key"
        r"|client[_-]?secret|access[_-]?token|auth[_-]?token|refresh[_-]?token|private[_-]?token"
        r"|x-api-key))(?![A-Za-z])[\"']?[ \t]*[:=]{1,2}[ \t]*", _labelled_secret)),
    _Detector(_PASSWORD, _labelled(  # password: x, pwd=x, "password": "x", Passwort: x
        rf"(?i:(?<![A-Za-z])(?:{_PASSWORD_WORDS}))(?![A-Za-z])[\"']?[ \t]*[:=]{{1,2}}[ \t]*",
        _password_after_separator)),
    _Detector(_PASSWORD, _labelled(  # my password is x; the password for the VPN is x
        rf"(?i:(?<![A-Za-z])(?:{_PASSWORD_WORDS}))(?![A-Za-z])"
        r"(?i:[ \t]+(?:for|of|to|für|pour|para|de|del|da|do)[ \t]+[^\n]{1,60}?)?"
        r"[ \t]+(?i:is|was|ist|war|est|es|era|é)(?![A-Za-z])[ \t]*(?P<colon>:)?[ \t]*",
        _password_in_sentence)),
    _Detector(_PASSWORD, _labelled(  # passwd s3cret!, user bob password Hunter2
        rf"(?i:(?<![A-Za-z])(?:{_PASSWORD_WORDS}))(?![A-Za-z])[ \t]+",
        _password_after_space)),
)


# --- Redaction ---------------------------------------------------------------------------------

_Mark = tuple[int, int, Finding]


def _outside_marks(spans: list[_Span], marks: list[_Mark], text: str) -> list[_Span]:
    """Drop spans that start inside an earlier placeholder; cut spans short before one."""
    if not marks:
        return spans
    starts = [mark[0] for mark in marks]
    kept: list[_Span] = []
    for start, end in spans:
        index = bisect_right(starts, start) - 1
        if index >= 0 and marks[index][1] > start:
            continue
        if index + 1 < len(marks) and marks[index + 1][0] < end:
            end = marks[index + 1][0]
            while end > start and text[end - 1].isspace():
                end -= 1
        if end > start:
            kept.append((start, end))
    return kept


def _replace(text: str, marks: list[_Mark], spans: list[_Span],
             finding: Finding) -> tuple[str, list[_Mark]]:
    """Put placeholders over `spans`, moving the earlier placeholders' marks along with the text."""
    placeholder = _placeholder(finding)
    parts: list[str] = []
    new_marks: list[_Mark] = []
    position = 0  # in `text`
    length = 0  # of the output so far
    mark_index = 0
    for start, end in spans:
        shift = length - position
        while mark_index < len(marks) and marks[mark_index][0] < start:
            old_start, old_end, old_finding = marks[mark_index]
            new_marks.append((old_start + shift, old_end + shift, old_finding))
            mark_index += 1
        parts.append(text[position:start])
        length += start - position
        new_marks.append((length, length + len(placeholder), finding))
        parts.append(placeholder)
        length += len(placeholder)
        position = end
    shift = length - position
    new_marks.extend((s + shift, e + shift, f) for s, e, f in marks[mark_index:])
    parts.append(text[position:])
    return "".join(parts), new_marks


def _redact(text: str, detectors: Sequence[_Detector]) -> Redacted:
    marks: list[_Mark] = []
    for detector in detectors:
        spans = _outside_marks(list(detector.find(text)), marks, text)
        if spans:
            text, marks = _replace(text, marks, spans, detector.finding)
    findings: dict[str, Finding] = {}
    for _start, _end, finding in marks:  # marks are in text order: order of first appearance
        findings.setdefault(finding.kind, finding)
    return Redacted(text=text, findings=tuple(findings.values()))


def redact_secrets(text: str) -> Redacted:
    """Redact a user's message before it is stored or shown to a model.

    Covers credentials (provider API keys and tokens, private keys, JWTs, bearer and basic-auth
    headers, passwords in links and in obvious phrasings) and personal numbers that are never
    needed to answer a support question (payment cards, US SSNs, UK NI numbers, IBANs). Only the
    secret is replaced, so "my password is hunter2" keeps its meaning for the model. Running it
    again on its own output changes nothing.
    """
    return _redact(text, _DETECTORS)


def redact_output(text: str) -> Redacted:
    """Redact a model's answer before it is sent or stored.

    The same kinds as `redact_secrets`: an answer can repeat a secret or a card number from a
    retrieved document or from memory. E-mail addresses and phone numbers are deliberately left
    alone, because support documents legitimately contain them ("write to help@example.com").
    """
    return _redact(text, _DETECTORS)


def _join(labels: Sequence[str]) -> str:
    if len(labels) == 1:
        return labels[0]
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def user_notice(findings: Sequence[Finding]) -> str:
    """What to tell the user after `redact_secrets` changed their message ("" if it did not).

    Saying what was removed explains why the assistant cannot see it; asking to rotate
    credentials matters because the chat platform itself has already stored the original.
    """
    labels = list(dict.fromkeys(finding.label for finding in findings))
    if not labels:
        return ""
    notice = (f"I removed {_join(labels)} from your message before saving it or showing it to "
              "the assistant.")
    if any(finding.kind not in _PERSONAL_KINDS for finding in findings):
        return notice + " Please rotate any credential you've shared in a chat."
    return notice + " There's no need to share card, bank or ID numbers here."


# --- Prompt leaks ------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_SHINGLE = 6
_SHINGLE_SHARE = 0.4


def _words(text: str) -> list[str]:
    """Casefolded words: punctuation, markdown and spacing cannot hide a copied passage."""
    return _WORD.findall(text.casefold())


def _shingles(words: list[str], size: int) -> set[int]:
    return {hash(tuple(words[i:i + size])) for i in range(len(words) - size + 1)}


def leaks_prompt(answer: str, system_prompt: str, *, min_words: int = 12) -> bool:
    """Whether an answer repeats the system prompt, so the caller can withhold it.

    True when the answer contains `min_words` consecutive words of the prompt, or more than 40%
    of the prompt's distinct 6-word shingles (a dump with some lines dropped or reordered).
    Comparing sets of shingle hashes keeps this linear in the lengths of both texts.
    """
    if min_words < 1:
        raise ValueError("min_words must be at least 1")
    prompt_words = _words(system_prompt)
    answer_words = _words(answer)
    if (len(prompt_words) >= min_words and len(answer_words) >= min_words
            and not _shingles(prompt_words, min_words).isdisjoint(
                _shingles(answer_words, min_words))):
        return True
    prompt_shingles = _shingles(prompt_words, _SHINGLE)
    if not prompt_shingles or len(answer_words) < _SHINGLE:
        return False
    shared = len(prompt_shingles & _shingles(answer_words, _SHINGLE))
    return shared > _SHINGLE_SHARE * len(prompt_shingles)


# --- Prompt injection --------------------------------------------------------------------------

_INJECTION = re.compile("|".join((
    # ignore all previous instructions; disregard the system prompt; forget your rules
    r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any|every|the|your|of|these"
    r"|those)\s+){0,3}(?:(?:previous|prior|above|earlier|preceding|foregoing|original|initial"
    r"|system|developer|safety|existing|old)\s+){0,2}(?:instructions?|prompts?|rules|directions"
    r"|directives|guidelines|guardrails|constraints|context)\b",
    # ignore the above; forget everything before this
    r"\b(?:ignore|disregard|forget)\s+(?:(?:all|everything|anything|the\s+text)\s+)?"
    r"(?:above|before\s+this|previously\s+said)\b",
    r"\b(?:ignore|disregard|forget)\s+the\s+above\b",
    r"\bforget\s+everything\s+you\s+(?:know|were\s+told)\b",
    # you are now DAN / an unrestricted AI / in developer mode
    r"\byou\s+are\s+now\s+(?:DAN\b|(?:a|an|my|the)\s+(?:\w+\s+){0,3}?(?:AI|assistant|bot"
    r"|chatbot|model|LLM|persona|character|hacker|jailbroken|unfiltered|uncensored|unrestricted"
    r"|evil)\b|(?:free|unfiltered|uncensored|unrestricted|jailbroken|evil|no\s+longer\s+bound)\b"
    r"|in\s+(?:developer|god|DAN|jailbreak)\s+mode\b)",
    r"\bfrom\s+now\s+on,?\s+you\s+(?:are|will\s+be)\s+(?:DAN|an?\s+unrestricted|no\s+longer)\b",
    # reveal your system prompt; what are your instructions
    r"\b(?:reveal|show|print|display|output|repeat|recite|dump|leak|tell\s+me|give\s+me"
    r"|what\s+(?:is|are|was|were))\s+(?:me\s+)?(?:your|the)\s+(?:(?:full|entire|exact|complete"
    r"|original|initial|hidden|secret|internal|verbatim)\s+){0,2}(?:system\s+(?:prompt|message"
    r"|instructions?)|(?:initial|hidden|secret|internal|original|developer)\s+(?:prompt"
    r"|instructions?))\b",
    r"\b(?:reveal|show|print|display|output|repeat|recite|dump|leak|tell\s+me|give\s+me"
    r"|what\s+(?:is|are))\s+(?:me\s+)?your\s+(?:(?:full|entire|exact|complete|original|initial"
    r"|hidden|secret)\s+){0,2}(?:prompt|instructions|directives|guidelines)\b",
    # print the text above; repeat everything above verbatim
    r"\b(?:print|repeat|output|echo|show|display|copy|recite)\s+(?:me\s+)?(?:(?:all|everything"
    r"|the|of)\s+){0,3}(?:(?:text|words|content|lines?|prompt|instructions)\s+)?(?:above"
    r"|before\s+this|verbatim)\b",
    # chat-template and role-play markers
    r"<\|\s*(?:im_start|im_end|system|assistant|user|endoftext|start_header_id|end_header_id"
    r"|eot_id)\s*\|>",
    r"\[/?(?:INST|SYS)\]|<</?SYS>>|</?(?:system|sys|instructions?)>",
    r"^[ \t]*#{2,}[ \t]*(?:system|instructions?|new\s+instructions?|assistant)[ \t]*:",
    r"\b(?:BEGIN|END)\s+(?:OF\s+)?(?:SYSTEM\s+(?:PROMPT|MESSAGE)|NEW\s+INSTRUCTIONS)\b",
    r"\bnew\s+(?:system\s+)?(?:instructions|prompt)\s*:",
    r"\b(?:enable|enter|activate|switch\s+to)\s+(?:DAN|jailbreak|god)\s+mode\b",
    r"\bdo\s+anything\s+now\b",
    r"\bpretend\s+(?:that\s+)?you\s+(?:are|have)\s+no\s+(?:rules|restrictions|guidelines"
    r"|filters|limits)\b",
)), re.IGNORECASE | re.MULTILINE)


def looks_like_injection(text: str) -> bool:
    """Whether text reads like an attempt to override the assistant's instructions.

    A heuristic for logging and metrics only: it is neither complete nor a gate. Messages and
    retrieved documents are always passed to the model as data, flagged or not. Invisible
    characters are dropped and compatibility forms folded first, so a zero-width space inside
    "ignore" or full-width letters do not slip past.
    """
    folded = unicodedata.normalize("NFKC", text)
    folded = "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")
    return _INJECTION.search(folded) is not None
