"""Reading OATH TOTP hardware tokens from CSV or PSKC (RFC 6030) files, every problem reported."""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pskc
from pskc.exceptions import PSKCError

from gateway import oath
from gateway.schemas import USER_ID

# Header names an export may use for each column (compared lower-case, without spaces, _ or -).
COLUMNS = {
    "serial": {"serial", "serialnumber", "serialno", "sn", "tokenserial", "token"},
    "secret": {"secret", "secretkey", "key", "seed", "base32", "base32secret", "base32secretkey"},
    "step": {"step", "timestep", "period", "interval", "timeinterval"},
    "digits": {"digits", "length", "otplength", "codelength"},
    "user": {"user", "userid", "username", "upn", "login", "owner"},
    "algorithm": {"algorithm", "hash", "digest"},
}
POSITIONAL = ("serial", "secret", "step", "digits", "user")
TOTP_ALGORITHM = re.compile(r"[:#]totp\Z", re.IGNORECASE)  # \Z: $ also matches before a final newline
MAX_DRIFT = 1000


class FileFormat(str, Enum):
    CSV = "csv"
    PSKC = "pskc"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an import file, and where."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class TokenFileError(Exception):
    """The file cannot be imported; every problem found is listed."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Decryption:
    """How to open an encrypted PSKC file: a password (PBKDF2) or a pre-shared key."""

    password: str | None = None
    key: bytes | None = None


def detect_format(path: Path, data: bytes) -> FileFormat:
    """PSKC for .pskc/.xml files or XML content, else CSV."""
    if path.suffix.lower() in (".pskc", ".xml"):
        return FileFormat.PSKC
    if path.suffix.lower() in (".csv", ".txt"):
        return FileFormat.CSV
    return FileFormat.PSKC if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") else FileFormat.CSV


def read_tokens(
    path: Path, user_id: str | None = None, decryption: Decryption = Decryption(),
    file_format: FileFormat | None = None,
) -> list[oath.Token]:
    """Every token of a CSV or PSKC file, or TokenFileError listing every problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenFileError([Problem(str(path), f"cannot read the file: {exc.strerror}")]) from None
    if (file_format or detect_format(path, data)) is FileFormat.PSKC:
        tokens, problems = _read_pskc(data, decryption)
    else:
        tokens, problems = _read_csv(data)
    problems += _check_set(tokens, user_id)
    if not tokens and not problems:
        problems.append(Problem("file", "no tokens found"))
    if problems:
        raise TokenFileError(problems)
    if user_id is not None:
        tokens = [oath.Token(t.serial, t.secret, t.params, user_id, t.source) for t in tokens]
    return tokens


def _check_set(tokens: list[oath.Token], user_id: str | None) -> list[Problem]:
    """Problems of the file as a whole: repeated serials, a --user that does not fit."""
    problems, seen = [], {}
    for token in tokens:
        if token.serial in seen:
            problems.append(Problem(token.source, f"serial {token.serial} repeats {seen[token.serial]}"))
        seen.setdefault(token.serial, token.source)
    if user_id is not None:
        if not USER_ID.match(user_id):
            problems.append(Problem("--user", "a user id is 1 to 128 letters, digits and . _ @ + - characters"))
        if len(tokens) > 1:
            problems.append(Problem(
                "--user", f"assigns a single token, but the file has {len(tokens)}; "
                "use a user column or `tokens assign SERIAL USER`",
            ))
        problems += [
            Problem(t.source, f"assigned to {t.user_id} in the file but to {user_id} by --user")
            for t in tokens if t.user_id and t.user_id != user_id
        ]
    return problems


def _serial(raw: str) -> str:
    serial = raw.strip()
    if not oath.SERIAL.match(serial):
        raise ValueError(f"serial {serial!r} must be 1 to 64 letters, digits and . _ : - characters")
    return serial


def _whole(raw: str | int | None, what: str, low: int, high: int) -> int:
    text = str(raw).strip() if raw is not None else ""
    if not re.fullmatch(r"[+-]?\d+", text) or not low <= int(text) <= high:
        raise ValueError(f"{what} must be a whole number from {low} to {high}, got {text or 'nothing'!r}")
    return int(text)


def _digits(raw: str | int | None) -> int:
    if raw is None or str(raw).strip() == "":
        return oath.APP_DIGITS
    digits = _whole(raw, "digits", 1, 99)
    if digits not in oath.DIGITS:
        raise ValueError(f"digits must be 6, 7 or 8, got {digits}")
    return digits


def _algorithm(raw: str | None) -> oath.Algorithm:
    name = re.sub(r"^(hmac)?[-_ ]?", "", (raw or "").strip().lower()).replace("-", "")
    try:
        return oath.Algorithm(name or "sha1")
    except ValueError:
        raise ValueError(f"algorithm {raw!r} is not one of HMAC-SHA1, HMAC-SHA256, HMAC-SHA512") from None


def _user(raw: str | None) -> str | None:
    user = (raw or "").strip()
    if user and not USER_ID.match(user):
        raise ValueError(f"user {user!r} may use the ASCII letters, digits and . _ @ + - only (up to 128)")
    return user or None


# -- CSV -----------------------------------------------------------------------------
def _normal(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


def _header(row: list[str]) -> dict[str, int] | None:
    """Column positions when the row is a header row, else None."""
    names = [_normal(cell) for cell in row]
    if not names or not any(names[0] in aliases for aliases in COLUMNS.values()):
        return None
    return {column: i for i, name in enumerate(names) for column, aliases in COLUMNS.items() if name in aliases}


def _read_csv(data: bytes) -> tuple[list[oath.Token], list[Problem]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [Problem("file", f"not UTF-8 text (byte {exc.start})")]
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    sample = lines[0] if lines else ""
    delimiter = ";" if ";" in sample and "," not in sample else "\t" if "\t" in sample and "," not in sample else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
    tokens, problems = [], []
    columns: dict[str, int] | None = None
    width = len(POSITIONAL)
    try:
        for row in reader:
            where = f"line {reader.line_num}"
            if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                continue
            if columns is None:
                columns = _header(row)
                if columns is not None:
                    problems += _header_problems(row, columns, where)
                    width = len(row)
                    continue
                columns = dict(zip(POSITIONAL, range(len(POSITIONAL))))
            if len(row) > width and any(cell.strip() for cell in row[width:]):
                problems.append(Problem(where, f"{len(row)} columns, more than the {width} expected"))
                continue
            try:
                tokens.append(_csv_token(row, columns, where))
            except ValueError as exc:
                problems.append(Problem(where, str(exc)))
    except csv.Error as exc:
        problems.append(Problem(f"line {reader.line_num}", f"malformed CSV: {exc}"))
    return tokens, problems


def _header_problems(row: list[str], columns: dict[str, int], where: str) -> list[Problem]:
    problems = [Problem(where, f"no {name} column") for name in ("serial", "secret", "step") if name not in columns]
    known = set(columns.values())
    problems += [Problem(where, f"unknown column {cell!r}") for i, cell in enumerate(row) if i not in known]
    return problems


def _csv_token(row: list[str], columns: dict[str, int], where: str) -> oath.Token:
    def cell(name: str) -> str | None:
        i = columns.get(name)
        return row[i].strip() if i is not None and i < len(row) else None

    errors = []
    values: dict[str, object] = {}
    for name, parse in (
        ("serial", lambda v: _serial(v or "")),
        ("secret", lambda v: oath.normalise_secret(v or "")),
        ("step", lambda v: _whole(v, "time step (seconds)", 1, oath.MAX_PERIOD)),
        ("digits", _digits),
        ("algorithm", _algorithm),
        ("user", _user),
    ):
        try:
            values[name] = parse(cell(name))
        except ValueError as exc:  # SecretError is a ValueError
            errors.append(str(exc))
    if errors:
        raise ValueError("; ".join(errors))
    params = oath.Params(values["digits"], values["step"], values["algorithm"])  # type: ignore[arg-type]
    return oath.Token(values["serial"], values["secret"], params, values["user"], where)  # type: ignore[arg-type]


# -- PSKC ----------------------------------------------------------------------------
def _read_pskc(data: bytes, decryption: Decryption) -> tuple[list[oath.Token], list[Problem]]:
    try:
        container = pskc.PSKC(io.BytesIO(data))
    except PSKCError as exc:
        position = getattr(exc.__context__, "position", None)  # the XML parser's (line, column)
        if position:
            why = str(exc.__context__).split(":")[0]
            return [], [Problem(f"line {position[0]}, column {position[1] + 1}", f"malformed XML ({why})")]
        return [], [Problem("file", f"not a PSKC file: {exc}")]
    if container.encryption.is_encrypted:
        if decryption.key is not None:
            container.encryption.key = decryption.key
        elif decryption.password is not None:
            try:
                container.encryption.derive_key(decryption.password)
            except PSKCError as exc:
                return [], [Problem("file", f"cannot derive the key from the password: {exc}")]
        else:
            return [], [Problem("file", "the keys are encrypted; give --password or --key")]
    tokens, problems = [], []
    for number, key in enumerate(container.keys, 1):
        where = f"key {key.id or number}"
        try:
            tokens.append(_pskc_token(key, where))
        except PSKCError as exc:
            problems.append(Problem(where, f"cannot decrypt the key: wrong password or key? ({exc})"))
        except ValueError as exc:
            problems.append(Problem(where, str(exc)))
    return tokens, problems


def _pskc_token(key: pskc.key.Key, where: str) -> oath.Token:
    if not key.algorithm or not TOTP_ALGORITHM.search(key.algorithm):
        raise ValueError(f"algorithm {key.algorithm!r} is not TOTP; only TOTP tokens can be imported")
    if key.response_encoding and key.response_encoding.upper() != "DECIMAL":
        raise ValueError(f"response encoding {key.response_encoding} is not DECIMAL")
    secret = key.secret
    if not secret:
        raise ValueError("the key has no secret")
    # <Time> (a start offset) is left aside: RFC 6238 tokens count steps from the Unix epoch.
    params = oath.Params(
        digits=_digits(key.response_length),
        period=_whole(key.time_interval if key.time_interval is not None else oath.APP_PERIOD,
                      "time interval (seconds)", 1, oath.MAX_PERIOD),
        algorithm=_algorithm(key.algorithm_suite),
        drift=_whole(key.time_drift or 0, "time drift (steps)", -MAX_DRIFT, MAX_DRIFT),
    )
    serial = _serial(key.serial or key.id or "")
    return oath.Token(serial, oath.secret_from_bytes(secret), params, None, f"{where} (serial {serial})")
