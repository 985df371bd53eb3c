"""Draw a workflow's DAG: in the terminal (levels of boxes coloured by state), as Mermaid or as dot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from colonies.cli.common import STATE_COLORS, STATES

_MERMAID_FILL = {0: "#fff3b0", 1: "#b0d4ff", 2: "#b7f0b1", 3: "#ffb3b3", 4: "#e0c3f0"}
_DOT_FILL = {0: "lightyellow", 1: "lightblue", 2: "palegreen", 3: "lightpink", 4: "plum"}


def levels(processes: Sequence[Any]) -> list[list[Any]]:
    """Processes by depth: roots first, each node one level below its deepest parent (the server's
    layout, which needs no recursion: a chain of any length draws)."""
    from colonies.workflows import layers

    depth = layers(processes)
    out: list[list[Any]] = []
    for p in processes:
        n = depth[p.processid]
        while len(out) <= n:
            out.append([])
        out[n].append(p)
    return out


def edges(processes: Sequence[Any]) -> list[tuple[str, str]]:
    ids = {p.processid for p in processes}
    return [(parent, p.processid) for p in processes for parent in p.parents if parent in ids]


def name(p: Any) -> str:
    return str(p.spec.nodename or p.spec.funcname or p.processid[:8])


def render(graph: Any, processes: Sequence[Any]) -> Any:
    """A rich renderable: one row of boxes per level, each box coloured by its process' state."""
    from rich.columns import Columns
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    names = {p.processid: name(p) for p in processes}
    rows: list[Any] = [
        Text.from_markup(
            f"Workflow [bold]{graph.processgraphid}[/] "
            f"[{STATE_COLORS.get(graph.state, 'white')}]{STATES.get(graph.state, '?')}[/]"
        )
    ]
    for i, level in enumerate(levels(processes)):
        if i:
            rows.append(Text("   ↓"))
        boxes = []
        for p in level:
            color = STATE_COLORS.get(p.state, "white")
            state = STATES.get(p.state, p.state)
            body = f"[bold]{names[p.processid]}[/]\n{p.spec.funcname}\n[{color}]{state}[/]"
            after = [names.get(q, q[:8]) for q in p.parents]
            if after:
                body += f"\n[dim]after {', '.join(after)}[/]"
            boxes.append(Panel(body, border_style=color, expand=False))
        rows.append(Columns(boxes))
    return Group(*rows)


def mermaid(processes: Sequence[Any]) -> str:
    lines = ["flowchart TD"]
    for p in processes:
        lines.append(f'  {_nid(p.processid)}["{name(p)}<br/>{STATES.get(p.state, p.state)}"]:::s{p.state}')
    for a, b in edges(processes):
        lines.append(f"  {_nid(a)} --> {_nid(b)}")
    for state, fill in _MERMAID_FILL.items():
        lines.append(f"  classDef s{state} fill:{fill},stroke:#333")
    return "\n".join(lines) + "\n"


def dot(processes: Sequence[Any]) -> str:
    lines = ["digraph workflow {", "  rankdir=TB;", '  node [shape=box, style="rounded,filled"];']
    for p in processes:
        label = f"{name(p)}\\n{STATES.get(p.state, p.state)}"
        lines.append(f'  "{p.processid}" [label="{label}", fillcolor="{_DOT_FILL.get(p.state, "white")}"];')
    for a, b in edges(processes):
        lines.append(f'  "{a}" -> "{b}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _nid(process_id: str) -> str:
    return "p" + process_id[:16]
