"""The "paper vs lab" table each chapter ends with; the course runner collects them into build/summary.md."""

from __future__ import annotations

from dataclasses import dataclass

MIME_KEY = "labcore_paper_vs_lab"  # display metadata key the course runner looks for


@dataclass(frozen=True)
class Claim:
    claim: str  # what the paper says, in a few words
    paper: str  # the paper's number or trend
    lab: str  # what we measured in this run
    holds: bool | None  # does the trend hold here? None = not comparable at this scale


def markdown_table(rows: list[Claim], profile: str) -> str:
    mark = {True: "yes", False: "no", None: "n/a"}
    lines = [f"Measured with profile `{profile}`.", "",
             "| claim | paper | lab | trend holds |", "|---|---|---|---|"]
    lines += [f"| {r.claim} | {r.paper} | {r.lab} | {mark[r.holds]} |" for r in rows]
    return "\n".join(lines)


class Table(str):
    """The markdown of a table that is already displayed: as a cell's last expression it shows nothing
    more (a plain str would be echoed a second time, escaped)."""

    def _ipython_display_(self) -> None:
        pass


def paper_vs_lab(rows: list[Claim], profile: str, chapter: str) -> Table:
    """Display the table in the notebook (tagged so the course runner can find it) and return it."""
    md = Table(markdown_table(rows, profile))
    try:
        from IPython.display import Markdown, display

        display(Markdown(md), metadata={MIME_KEY: {"chapter": chapter, "profile": profile}})
    except ImportError:  # plain python: just print
        print(md)
    return md
