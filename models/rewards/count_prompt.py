"""Object counts from a counting prompt such as ``"seven balloons, four bears"`` or ``"3 cats and a dog"``.

RBF's quantity-aware task configures names and counts separately (``class_names: "airplanes, camels"``,
``class_gt_counts: "6, 7"``, ``rbf/corrector/reward_model/counting.py``); a node has one prompt, so both are read
from it. Items are separated by commas, semicolons or "and" (before a count); each is a count (digits, or a number
word up to ninety-nine, "a"/"an" for one) followed by the object name. The name is kept as written, plural included,
because the official code sends its class names to GroundingDINO as they are (``"airplanes. camels."``).
"""

from __future__ import annotations

import re

UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
NUMBER_WORDS = {word: value for value, word in enumerate(UNITS)} | TENS | {"a": 1, "an": 1, "a single": 1}
NUMBER_WORDS |= {f"{tens}{sep}{unit}": TENS[tens] + i for tens in TENS for i, unit in enumerate(UNITS[1:10], 1)
                 for sep in ("-", " ")}
EXAMPLE = '"seven balloons, four bears"'
_NUMBER = "|".join(sorted(map(re.escape, NUMBER_WORDS), key=len, reverse=True))  # longest first: "twenty one"
# "and" separates items only before a count, so "two salt and pepper shakers" stays one item
_SEPARATORS = re.compile(rf"\s*(?:[,;]|\band\b(?=\s+(?:\d+|{_NUMBER})\s))\s*", re.IGNORECASE)
_ITEM = re.compile(rf"^(?P<count>\d+|{_NUMBER})\s+(?P<name>.+?)[.\s]*$", re.IGNORECASE)


def parse_count_prompt(prompt: str) -> list[tuple[str, int]]:
    """``[(name, count), ...]`` in prompt order; a ``ValueError`` naming the expected form otherwise."""
    items = [item for item in _SEPARATORS.split(prompt.strip()) if item]
    if not items:
        raise ValueError(f"the counting prompt is empty; list how many of what should appear, e.g. {EXAMPLE}")
    counts: dict[str, int] = {}
    for item in items:
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(
                f"cannot read {item!r} in the counting prompt {prompt!r}: write a count and an object name per item, "
                f"separated by commas, e.g. {EXAMPLE} (counts as digits or words up to ninety-nine)"
            )
        name, text = match.group("name").strip(), match.group("count").lower()
        if "." in name:
            raise ValueError(f"the object name {name!r} contains '.', which separates the names for the detector")
        if name.lower() in map(str.lower, counts):
            raise ValueError(f"{name!r} is listed twice in the counting prompt {prompt!r}; give each object once")
        counts[name] = int(text) if text.isdigit() else NUMBER_WORDS[" ".join(text.split())]
    return list(counts.items())
