"""The links of the README and of docs/*.md lead to files that exist and to their headings."""

import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


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


@cache
def _anchors(page: Path) -> set[str]:
    """The anchors of ``page``'s headings, read once per page."""
    return {_anchor(h) for h in _headings(page.read_text())}


def _broken_links(page: Path) -> list[str]:
    """Links of ``page`` (markdown and ``src=``) whose file or heading does not exist."""
    text = page.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'src="([^"]+)"', text)
    broken = []
    for target in targets:
        if re.match(r"[a-z]+://", target):
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page.resolve()
        if not linked.exists() or (fragment and fragment not in _anchors(linked)):
            broken.append(target)
    return broken


def test_every_readme_link_has_its_file_and_heading():
    text = README.read_text()
    assert len(set(re.findall(r"\]\(#([^)]+)\)", text))) >= 10
    assert _broken_links(README) == []
    assert _anchor("2. Align — every face the same way, 48×48") == "2-align--every-face-the-same-way-4848"


def test_every_docs_page_link_has_its_file_and_heading():
    assert DOCS, "docs/ holds no markdown page"
    for page in DOCS:
        assert _broken_links(page) == [], page.name


def test_the_readme_links_every_docs_page():
    text = README.read_text()
    assert [page.name for page in DOCS if f"docs/{page.name}" not in text] == []
