"""Pull the final answer out of a model response, and canonicalize answers cheaply.

Extraction is pure string work (no sympy), so it is fast enough to run on every sample of a
sweep; the slow symbolic comparison lives in `equivalence` and runs only when strings differ.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Literal

AnswerKind = Literal["math", "number", "choice"]

_BOXED_CMD = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# One number: optional sign, thousands groups or plain digits, decimals, optional `/q`.
# The sign counts only when it cannot be a binary minus (`5-3` yields 5 and 3).
_NUMBER = re.compile(
    r"(?:(?<![\w)\]}])-)?(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+(?![\d.]))?"
    r"|(?:(?<![\w)\]}])-)?(?<![\w.])\.\d+"
)
_STRICT_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[+-]?\.\d+")
_LATEX_FRAC = re.compile(r"(-?)\\[dt]?frac\{\s*(-?\d+)\s*\}\{\s*(-?\d+)\s*\}")
# Longer digit strings are not answers, and would hit Python's int-to-str digit limit.
_MAX_NUMBER_CHARS = 100
_GSM8K_CALC = re.compile(r"<<[^<>]*>>")
_ANSWER_LINE = re.compile(
    r"\banswer[*_]*(?:\s+is\b[*_]*\s*:?|\s*[:：])[\s*_]*([^\n]+)", re.IGNORECASE
)
_HASHES = re.compile(r"####\s*([^\n]+)")
# A number followed only by unit words ("18 dollars", "$5 each").
_NUMBER_WITH_UNITS = re.compile(
    r"^\$?\s*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+)"
    r"\s*(?:[A-Za-z][A-Za-z ,.'-]*)?$"
)
_SENTENCE_END = re.compile(r"\.\s")

# "answer is", "Answer:", "answer is option"; the letter itself is matched case-sensitively.
_CHOICE_MARKER = re.compile(
    r"(?i:\banswer[*_]*(?:\s+is\b|\s*[:：])[\s*_:]*(?:option|choice)?)\s*"
    r"(?:\(\s*([A-Ja-j])\s*\)|\$?(?:\\text(?:bf)?\{)?\(?([A-J])\)?\}?\$?(?![\w]))"
)
_CHOICE_OPTION = re.compile(
    r"\(([A-J])\)|(?<![\w\\])([A-J])[.):](?!\w)|(?<![\w\\])([A-J])\s*$", re.MULTILINE
)
_CHOICE_BARE = re.compile(r"^\(?\s*([A-Ja-j])\s*\)?[.:]?$")

_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°")
_SPACING = re.compile(r"\\[!,;:]|\\left(?![A-Za-z])|\\right(?![A-Za-z])|\\displaystyle")
_FRAC_SHORT = re.compile(r"\\frac(\d)(\d)")
_SQRT_SHORT = re.compile(r"\\sqrt(\d)")
_PERCENT = re.compile(r"\\?%")


def _matching_brace(text: str, start: int) -> int | None:
    """Index of the `}` closing the `{` at `start`, skipping escaped braces like `\\{`."""
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _boxed_content(text: str, end_of_cmd: int) -> str | None:
    """The argument of a `\\boxed` whose name ends at `end_of_cmd`, or None if malformed."""
    i = end_of_cmd
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] == "{":
        close = _matching_brace(text, i)
        return None if close is None else text[i + 1 : close].strip()
    if i > end_of_cmd:  # `\boxed 5`: the argument is the next token
        token = re.match(r"[^\s$]+", text[i:])
        return None if token is None else token.group(0)
    return None


def _last_box(text: str) -> tuple[int, str | None] | None:
    """Start and content of the last `\\boxed` / `\\fbox` (content None when the box is
    truncated, empty or has no argument), or None when the text has no box at all.

    Only the last box counts, as in the MATH dataset's grader (`last_boxed_only_string`):
    a response cut off by the token cap while writing its final box has no final answer,
    even if an earlier box holds an intermediate value.
    """
    matches = list(_BOXED_CMD.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    return last.start(), _boxed_content(text, last.end()) or None


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{}` / `\\fbox{}` (nested braces kept); None when that box
    is truncated or empty."""
    box = _last_box(text)
    return None if box is None else box[1]


def parse_number(s: str) -> Fraction | None:
    """Exact value of a plain number string (`1,000`, `$-3.50`, `3/4`, `\\frac{3}{4}`), else None.

    Exact fractions rather than floats so that `0.1` and `1/10` are equal, and so that
    canonical strings are stable across runs.
    """
    t = s.strip().replace("\\$", "").replace("$", "").replace(" ", "").rstrip(".")
    t = t.replace("\\!", "").replace("\\,", "")
    if len(t) > _MAX_NUMBER_CHARS:
        return None
    frac = _LATEX_FRAC.fullmatch(t)
    if frac is not None:
        num, den = int(frac.group(2)), int(frac.group(3))
        if den == 0:
            return None
        value = Fraction(num, den)
        return -value if frac.group(1) else value
    if t.count("/") == 1:
        num_s, _, den_s = t.partition("/")
        num_v, den_v = parse_number(num_s), parse_number(den_s)
        if num_v is None or den_v is None or den_v == 0:
            return None
        return num_v / den_v
    if _STRICT_NUMBER.fullmatch(t) is None:
        return None
    return Fraction(Decimal(t.replace(",", "")))


def format_number(value: Fraction) -> str:
    """Canonical string: `25`, `0.75`, `-1.5`; `p/q` when the decimal would not terminate."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return format(exact.normalize(), "f")


def _numbers(text: str) -> list[str]:
    return _NUMBER.findall(_GSM8K_CALC.sub(" ", text))


def _last_number(text: str) -> str | None:
    """Canonical form of the last number in `text` (calculator `<<a*b=c>>` notes ignored)."""
    for token in reversed(_numbers(text)):
        value = parse_number(token)
        if value is not None:
            return format_number(value)
    return None


def clean_answer(s: str) -> str | None:
    """Trim a stated answer to its value: markdown, `$`, `\\(`, sentence tail, unit words.

    `**$18$.**` and `18 dollars` give `18`; LaTeX answers are left as written.
    """
    t = _SENTENCE_END.split(s.strip(), maxsplit=1)[0]
    previous = None
    while t != previous:
        previous = t
        t = t.strip().strip("*_").strip().rstrip(".")
        for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if t.startswith(left) and t.endswith(right) and len(t) >= len(left) + len(right):
                t = t[len(left) : len(t) - len(right)]
    with_units = _NUMBER_WITH_UNITS.match(t)
    if with_units is not None:
        value = parse_number(with_units.group(1))
        if value is not None:
            return format_number(value)
    return t or None


def _math_candidates(text: str) -> list[str]:
    """Answer candidates in priority order: boxed, answer line, `####`, last number.

    No candidates at all when the last box is truncated or empty.
    """
    out: list[str] = []
    box = _last_box(text)
    if box is not None and box[1] is None:
        return out  # a broken final box: no answer, and no number read out of it
    if box is not None and box[1] is not None:
        out.append(box[1])
    for pattern in (_ANSWER_LINE, _HASHES):
        matches = pattern.findall(text)
        if matches:
            cleaned = clean_answer(matches[-1])
            if cleaned is not None:
                out.append(cleaned)
    last = _last_number(text)
    if last is not None:
        out.append(last)
    return out


def _as_number(candidate: str) -> str | None:
    """Canonical number for a candidate: the whole string if numeric, else its last number."""
    value = parse_number(candidate)
    if value is not None:
        return format_number(value)
    return _last_number(_TEXT_WRAPPER.sub(r"\1", candidate))


def choice_letter(s: str) -> str | None:
    """The option letter of a bare choice answer (`C`, `(c)`, `\\text{(C)}`, `$B$`), upper-cased."""
    t = _TEXT_WRAPPER.sub(r"\1", s).replace("$", "").strip()
    match = _CHOICE_BARE.match(t)
    return match.group(1).upper() if match else None


def _extract_choice(text: str) -> str | None:
    """The last explicitly stated option (answer line or boxed), else the last option letter."""
    best: tuple[int, str] | None = None
    for match in _CHOICE_MARKER.finditer(text):
        letter = (match.group(1) or match.group(2)).upper()
        best = (match.start(), letter)
    for match in _BOXED_CMD.finditer(text):
        content = _boxed_content(text, match.end())
        letter = choice_letter(content) if content else None
        if letter is not None and (best is None or match.start() > best[0]):
            best = (match.start(), letter)
    last_box = _last_box(text)
    if last_box is not None and last_box[1] is None and (best is None or last_box[0] > best[0]):
        return None  # the final stated answer is a truncated or empty box
    if best is not None:
        return best[1]
    bare = choice_letter(text)
    if bare is not None:
        return bare
    options: list[tuple[str, str, str]] = _CHOICE_OPTION.findall(text)
    if options:
        return next(group for group in options[-1] if group)
    return None


def extract_answer(text: str, kind: AnswerKind = "math") -> str | None:
    """The final answer of a response, or None when nothing answer-like is found.

    "math" returns the answer as written (boxed content, answer-line tail), except that a plain
    number is canonicalized; "number" always returns a canonical number string; "choice" returns
    an upper-case option letter A–J.
    """
    if kind == "choice":
        return _extract_choice(text)
    candidates = _math_candidates(text)
    if kind == "math":
        return candidates[0] if candidates else None
    for candidate in candidates:
        number = _as_number(candidate)
        if number is not None:
            return number
    return None


def normalize_answer(s: str) -> str:
    """A canonical string so that equal answers written differently group together.

    Cheap and conservative: it only removes notation that never changes the value
    (spacing, `\\left`, `$`, degree signs, `\\text{}` wrappers, `%`) and canonicalizes numbers,
    so two different normalized strings may still be equal (math-verify decides those).
    """
    t = s.strip()
    t = t.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    t = _SPACING.sub("", t)
    t = _TEXT_WRAPPER.sub(r"\1", t)
    t = _DEGREES.sub("", t)
    t = _PERCENT.sub("", t)
    t = "".join(t.replace("\\$", "").replace("$", "").split())
    t = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", t)
    t = _SQRT_SHORT.sub(r"\\sqrt{\1}", t)
    t = t.rstrip(".")
    value = parse_number(t)
    return format_number(value) if value is not None else t
