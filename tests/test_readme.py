"""The README's in-page links lead to its headings."""

import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(text: str) -> list[str]:
    headings, in_code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (match := re.match(r"#{1,6} (.+)$", line)):
            headings.append(match.group(1))
    return headings


def test_every_in_page_link_has_its_heading():
    text = README.read_text()
    anchors = {_anchor(h) for h in _headings(text)}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert len(links) >= 10
    assert sorted(links - anchors) == []
    assert _anchor("2. Align — every face the same way, 48×48") == "2-align--every-face-the-same-way-4848"
