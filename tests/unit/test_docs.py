"""The documentation holds together: README.md stays a one-screen entry that links every room of docs/,
every relative link in README.md and docs/*.md reaches an existing file (and, for ``#anchor``, an existing
heading, with GitHub's slugs), every ``make <target>`` the docs name is a Makefile target, and every pointer
the code gives to the docs (``docs/<room>.md#<anchor>``, ``README "<section>"``) still leads somewhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# "At most ~12 KB": what a newcomer reads on one screen; the rest belongs in a room.
README_MAX_BYTES = 12 * 1024
# Where the code and configuration point readers at the docs.
SOURCES = ("layers", "functions", "local", "bench", "tests", "migrations")
SOURCE_FILES = ("template.yaml", "Makefile", "pyproject.toml", ".ci/run")

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_INLINE_CODE = re.compile(r"`([^`]+)`")
_MAKE = re.compile(r"\bmake\s+([a-z][a-z0-9_-]*)")
_TARGET = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:(?!=)", re.MULTILINE)
_DOCS_POINTER = re.compile(r"\b(docs/[\w-]+\.md)(?:#([\w-]+))?")
_README_POINTER = re.compile(r"\bREADME\b(?:[,:]?\s*\"([^\"]+)\"|[,:]\s+([A-Z][A-Za-z ]*[a-z]))")


def _prose_and_code(text: str) -> Iterator[tuple[bool, str]]:
    """Each line with whether it is inside a fenced code block (where ``#`` is no heading, ``[x](y)`` no link)."""
    in_code = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_code = not in_code
            continue
        yield in_code, line


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: rendered text (no backticks, emphasis or link targets) lower-cased,
    punctuation dropped except ``-`` and ``_``, each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated heading gets ``-1``, ``-2``, … as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for in_code, line in _prose_and_code(text):
        match = None if in_code else _HEADING.match(line)
        if match is None:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    """The relative links of one Markdown file that reach no file, or no heading of it."""
    text = path.read_text()
    problems = []
    for in_code, line in _prose_and_code(text):
        if in_code:
            continue
        for target in _LINK.findall(_INLINE_CODE.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check offline
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                problems.append(f"{path.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
                problems.append(f"{path.name}: {target} (no such heading)")
    return problems


def make_targets_named(text: str) -> set[str]:
    """The targets of ``make <target>`` in the code of a Markdown text: inline code and fenced blocks (in
    prose, "make" is an English word)."""
    named = set()
    for in_code, line in _prose_and_code(text):
        for code in [line] if in_code else _INLINE_CODE.findall(line):
            named.update(_MAKE.findall(code))
    return named


def makefile_targets(makefile: str) -> set[str]:
    """The targets a Makefile defines (``target:`` at the start of a line; ``VAR := …`` is no target)."""
    return set(_TARGET.findall(makefile))


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _source_files() -> Iterator[Path]:
    for name in SOURCES:
        found = sorted((ROOT / name).rglob("*"))
        # This module names pointers as examples; what it checks is everyone else's.
        yield from (p for p in found if p.suffix in {".py", ".sql", ".yaml", ".json"} and p != Path(__file__).resolve())
    for name in SOURCE_FILES:
        if (ROOT / name).exists():
            yield ROOT / name


def test_the_readme_fits_one_screen_and_links_every_room() -> None:
    assert README.stat().st_size <= README_MAX_BYTES
    rooms = {p.name for p in DOCS.glob("*.md")}
    assert {"api.md", "architecture.md", "operations.md", "deploy.md", "configuration.md", "benchmarks.md"} <= rooms
    linked = {Path(target.partition("#")[0]).name for target in _LINK.findall(README.read_text())}
    assert rooms <= linked, f"rooms the README does not link: {sorted(rooms - linked)}"


def test_the_architecture_has_one_diagram_of_the_flows() -> None:
    text = (DOCS / "architecture.md").read_text()
    assert text.count("```mermaid") == 1
    for part in ("AdminAuthorizerFunction", "outbox", "EventBridge", "InvalidateCacheFunction", "DLQ"):
        assert part in text.split("```mermaid", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: p.name)
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_every_make_target_the_docs_name_exists() -> None:
    defined = makefile_targets((ROOT / "Makefile").read_text())
    for path in _markdown_files():
        assert make_targets_named(path.read_text()) - defined == set(), path.name


def test_every_pointer_from_the_code_to_the_docs_leads_somewhere() -> None:
    readme_anchors = anchors(README.read_text())
    problems = []
    for path in _source_files():
        text = path.read_text(errors="replace")
        for room, anchor in _DOCS_POINTER.findall(text):
            if not (ROOT / room).exists():
                problems.append(f"{path.relative_to(ROOT)}: {room}")
            elif anchor and anchor not in anchors((ROOT / room).read_text()):
                problems.append(f"{path.relative_to(ROOT)}: {room}#{anchor}")
        for quoted, unquoted in _README_POINTER.findall(text):
            section = quoted or unquoted
            if github_slug(section) not in readme_anchors:
                problems.append(f'{path.relative_to(ROOT)}: README "{section}" (moved to docs/?)')
    assert problems == []


# The checker itself, on documents made for it: it must catch what it exists to catch.


def test_slugs_are_githubs() -> None:
    assert github_slug("Invoking one function: `sam local invoke`") == "invoking-one-function-sam-local-invoke"
    assert (
        github_slug("Cold starts and memory sizes (group `coldstart`)")
        == "cold-starts-and-memory-sizes-group-coldstart"
    )
    assert github_slug("Alarms: what to do") == "alarms-what-to-do"
    assert anchors("# Deploy\n## Deploy\n```sh\n# not a heading\n```\n") == {"deploy", "deploy-1"}


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    (tmp_path / "room.md").write_text("# Room\n\n## The cache\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "[ok](room.md#the-cache) [ok](#top) [web](https://example.com/x) `[code](nowhere.md)`\n"
        "# Top\n[gone](missing.md) [bad anchor](room.md#the-cach) [self](#nope)\n"
        "```md\n[in a code block](missing-too.md)\n```\n"
    )
    assert broken_links(doc) == [
        "doc.md: missing.md (no such file)",
        "doc.md: room.md#the-cach (no such heading)",
        "doc.md: #nope (no such heading)",
    ]


def test_make_targets_are_read_from_code_only() -> None:
    text = "To make a token, run `make dev`; then\n```sh\nX=1 make migrate && make nope\n```\n"
    assert make_targets_named(text) == {"dev", "migrate", "nope"}
    assert makefile_targets("VENV := .venv\n$(STAMP): x\ndev: $(STAMP) ## run\n.PHONY: dev\n") == {"dev"}


def test_the_metrics_advice_on_the_eviction_policy_is_the_docs() -> None:
    """A cache on ``noeviction`` is told to use the policy the architecture prescribes (it said allkeys-lru,
    which would evict locks and entity indexes as readily as pages)."""
    from such_market.analytics.report import _health
    from such_market.analytics.store import ServerFigures

    server = ServerFigures(keys=1, memory_used_bytes=1, evictions=0, maxmemory_bytes=1, maxmemory_policy="noeviction")
    advice = " ".join(_health({"requests": 1}, [], server, [])["recommendations"])
    assert "maxmemory-policy to volatile-lru" in advice
    assert "`maxmemory-policy volatile-lru`" in (DOCS / "architecture.md").read_text()
    for room, anchor in _DOCS_POINTER.findall(advice):
        assert anchor in anchors((ROOT / room).read_text())
