"""One-screen summaries that stages print when they finish."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from ferdata.ingest import IngestResult
from ferdata.manifest import Reject


def _by_reason(counts: dict[str, int]) -> str:
    return "\n".join(f"{n} {reason}" for reason, n in sorted(counts.items())) or "0"


def ingest_table(result: IngestResult) -> Table:
    """Per source: seen, accepted, and rejected / dropped by reason."""
    table = Table(title="ingest: seen = accepted + rejected + dropped")
    for col in ("source", "seen", "accepted", "rejected", "dropped"):
        table.add_column(col, justify="left" if col in ("source", "rejected", "dropped") else "right")
    for name, acc in result.accounts.items():
        table.add_row(name, str(acc.seen), str(acc.accepted), _by_reason(acc.rejected),
                      _by_reason(acc.dropped))
    return table


def class_table(result: IngestResult, classes: tuple[str, ...]) -> Table:
    """Accepted samples per class (rows) and source (columns)."""
    table = Table(title="ingest: accepted samples per class")
    table.add_column("class")
    for name in (*result.accounts, "total"):
        table.add_column(name, justify="right")
    for c in classes:
        counts = [acc.classes.get(c, 0) for acc in result.accounts.values()]
        table.add_row(c, *map(str, counts), str(sum(counts)))
    return table


def reject_lines(rejects: list[Reject], raw_dir: Path, limit: int = 20) -> list[str]:
    """The first ``limit`` rejects as ``raw/<source>/<file>:<line>: message`` lines."""
    lines = [f"{raw_dir / r.source / r.location}: {r.message} [{r.reason}]" for r in rejects[:limit]]
    if len(rejects) > limit:
        lines.append(f"... and {len(rejects) - limit} more (all listed in rejects.parquet)")
    return lines
