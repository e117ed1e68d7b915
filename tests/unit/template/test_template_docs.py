"""The README tells a user how to try every sample event."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_every_event_file_is_referenced_in_the_readme() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    events = sorted(path.relative_to(REPO_ROOT).as_posix() for path in (REPO_ROOT / "events").glob("*.json"))
    assert events, "events/ holds no sample events"
    missing = [event for event in events if event not in readme]
    assert missing == []
