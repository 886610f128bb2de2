"""Reading a JSON file that a user may have handed over damaged or hostile.

Every JSON document visionperf reads (annotation files, cache manifests, accuracy logs, system
descriptions, run records) goes through `load`, so that each way a document can be unreadable
ends in the same one-line UserError naming the file. Python's parser has two traps that are not
ValueErrors: nesting a few thousand levels deep raises RecursionError, and a number too large
for a double (`1e400`) silently becomes inf, which then passes any `>= 0` check and breaks the
arithmetic far from the file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .errors import UserError


class JsonFileError(UserError):
    """The file is not JSON visionperf can read; the message names it and what is wrong."""


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is too large for a double")
    return value


def parse(text: str | bytes, origin: str | Path, fix: str) -> Any:
    """TEXT as JSON; ORIGIN names it and FIX says what to do in the error."""
    try:
        return json.loads(text, parse_float=_finite_float)
    except RecursionError:
        why = "arrays or objects nested too deeply to read"
    except ValueError as e:  # JSONDecodeError, bad UTF-8, an integer of thousands of digits
        why = str(e).splitlines()[0][:120]
    raise JsonFileError(f"{origin} is not valid JSON ({why}): {fix}")


def load(path: str | Path, fix: str) -> Any:
    """The JSON document in PATH. OSError is left to the caller (it knows what PATH is for);
    anything unreadable in the text is a JsonFileError naming PATH, ending with FIX."""
    return parse(Path(path).read_bytes(), path, fix)
