"""Which Vowpal Wabbit options Marquee accepts, in policy settings and inside uploaded models.

VW options are powerful: ``-p`` writes predictions over any file, ``--port`` starts a network server,
``--help`` exits the process, ``-t`` stops learning. A policy's ``vw_args`` therefore takes only the
learning options listed here, each with a checked value, and a model file is loaded only if the
options stored in its header are such options too (plus the reductions VW itself records for a
``--cb_adf`` model). Everything else is refused before VW sees it.
"""

from __future__ import annotations

import re
import shlex
import struct
from collections.abc import Callable, Sequence

from bandits.errors import Invalid

Check = Callable[[str], bool]


def _float(low: float, high: float) -> Check:
    def check(text: str) -> bool:
        try:
            value = float(text)
        except ValueError:
            return False
        return low <= value <= high

    return check


def _int(low: int, high: int) -> Check:
    def check(text: str) -> bool:
        return bool(re.fullmatch(r"\d{1,3}", text)) and low <= int(text) <= high

    return check


def _pattern(regex: str) -> Check:
    return lambda text: re.fullmatch(regex, text) is not None


# option -> (canonical name, value check or None for a flag)
USER_OPTIONS: dict[str, tuple[str, Check | None]] = {
    "-q": ("--quadratic", _pattern(r"[A-Za-z:]{2}")),
    "--quadratic": ("--quadratic", _pattern(r"[A-Za-z:]{2}")),
    "--cubic": ("--cubic", _pattern(r"[A-Za-z:]{3}")),
    "--interactions": ("--interactions", _pattern(r"[A-Za-z:]{2,4}")),
    "-l": ("--learning_rate", _float(1e-9, 10.0)),
    "--learning_rate": ("--learning_rate", _float(1e-9, 10.0)),
    "--power_t": ("--power_t", _float(0.0, 1.0)),
    "--initial_t": ("--initial_t", _float(0.0, 1e6)),
    "--l1": ("--l1", _float(0.0, 1.0)),
    "--l2": ("--l2", _float(0.0, 1.0)),
    "--lrq": ("--lrq", _pattern(r"[A-Za-z]{2}\d{1,3}")),
    "--lrqfa": ("--lrqfa", _pattern(r"[A-Za-z]{2}\d{1,3}")),
    "--lrqdropout": ("--lrqdropout", None),
    "--cb_type": ("--cb_type", _pattern(r"mtr|dr|ips|dm|sm")),
    "--clip_p": ("--clip_p", _float(0.0, 1.0)),
    "--coin": ("--coin", None),
    "--noconstant": ("--noconstant", None),
    "-b": ("--bit_precision", _int(10, 24)),
    "--bit_precision": ("--bit_precision", _int(10, 24)),
}
# What VW records in a --cb_adf model's header besides the user's options.
MODEL_OPTIONS: dict[str, tuple[str, Check | None]] = {
    **USER_OPTIONS,
    "--cb_adf": ("--cb_adf", None),
    "--csoaa_ldf": ("--csoaa_ldf", _pattern(r"multiline|m")),
    "--csoaa_rank": ("--csoaa_rank", None),
}
MAX_ARGS = 40


class OptionError(Invalid, ValueError):
    """A VW option Marquee does not accept, or a value out of range."""


def _check(tokens: list[str], allowed: dict[str, tuple[str, Check | None]], *, what: str) -> list[str]:
    if len(tokens) > MAX_ARGS:
        raise OptionError(f"{what}: at most {MAX_ARGS} options")
    expanded: list[str] = []
    for token in tokens:
        if token.startswith("--") and "=" in token:
            expanded.extend(token.split("=", 1))
        else:
            expanded.append(token)
    out: list[str] = []
    position = 0
    while position < len(expanded):
        option = expanded[position]
        if option not in allowed:
            names = sorted({name for name in USER_OPTIONS if name.startswith("--")})
            raise OptionError(f"{what}: option {option!r} is not accepted (accepted: {', '.join(names)}, -q, -l, -b)")
        _canonical, check = allowed[option]
        if check is None:
            out.append(option)
            position += 1
            continue
        if position + 1 >= len(expanded):
            raise OptionError(f"{what}: option {option} needs a value")
        value = expanded[position + 1]
        if not check(value):
            raise OptionError(f"{what}: {value!r} is not a valid value for {option}")
        out.extend([option, value])
        position += 2
    return out


def check_user_args(value: object) -> list[str]:
    """Return ``vw_args`` (a list of strings, or one string) as a checked list; raise ``OptionError``."""
    if isinstance(value, str):
        try:
            tokens = shlex.split(value)
        except ValueError as exc:
            raise OptionError(f"vw_args: {exc}") from None
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        tokens = list(value)
    else:
        raise OptionError("vw_args: must be a list of strings or one string of VW options")
    return _check(tokens, USER_OPTIONS, what="vw_args")


def model_options(blob: bytes) -> list[str]:
    """Return the options recorded in a VW model file's header; raise ``OptionError`` if unreadable."""
    try:
        offset = 0
        for _ in range(2):  # version string, model id
            (length,) = struct.unpack_from("<I", blob, offset)
            offset += 4 + length
        if blob[offset : offset + 1] != b"m":
            raise OptionError("model: not a Vowpal Wabbit model file Marquee can read")
        offset += 1 + 4 * 4 + 4 + 4  # marker, four numbers, ngram and skip counts
        (length,) = struct.unpack_from("<I", blob, offset)
        if length > 4096 or offset + 4 + length > len(blob):
            raise OptionError("model: the options recorded in the model header are unreadable")
        text = blob[offset + 4 : offset + 4 + length].rstrip(b"\0").decode("ascii")
    except (struct.error, UnicodeDecodeError):
        raise OptionError("model: not a Vowpal Wabbit model file Marquee can read") from None
    return text.split()


def learns_chosen_alone(options: Sequence[str]) -> bool:
    """Whether VW learns a labelled example through its chosen action alone under these options (``--cb_type mtr``).

    ``options``: a policy's ``vw_args`` or the options a model's header records (``model_options``).
    The other ``--cb_type``s read every action of a labelled example.
    """
    cb_types = [options[i + 1] for i in range(len(options) - 1) if options[i] == "--cb_type"]
    return (cb_types[-1] if cb_types else "mtr") == "mtr"


def check_model(blob: bytes) -> list[str]:
    """Refuse a model whose header records options Marquee does not accept; return those options."""
    return _check(model_options(blob), MODEL_OPTIONS, what="model")
