"""The placement report: where each node runs, why it is not on a preferred provider, and copies."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class NodePlacement:
    name: str
    op_type: str
    domain: str
    provider: str
    refused: tuple  # ((provider, reason), ...) from the providers ahead of ``provider``
    group: str = ""  # the compiled group (of a compiling provider) the node runs in

    @property
    def fell_back(self) -> bool:
        return bool(self.refused)


class PlacementReport:
    """What ``InferenceSession.get_placement()`` returns.

    Iterating yields a ``NodePlacement`` per node of the main graph. ``copies`` lists the
    copy steps the plan holds (value, from, to, reader); ``last_run_copies`` and
    ``last_run_copy_bytes`` count the copies the last run made (graph outputs brought back to
    the host included).
    """

    def __init__(self, nodes, copies, providers, session, builds=()):
        self.nodes = list(nodes)
        self.copies = list(copies)
        self.providers = list(providers)
        self.engine_builds = list(builds)
        self._session = session

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self):
        return len(self.nodes)

    def __getitem__(self, i):
        return self.nodes[i]

    def node(self, name) -> NodePlacement:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def counts(self) -> dict:
        """provider -> number of nodes."""
        return dict(Counter(n.provider for n in self.nodes))

    def fallbacks(self) -> list:
        """Nodes not on the first provider, with the reasons each provider ahead refused them."""
        return [n for n in self.nodes if n.fell_back]

    @property
    def last_run_copies(self) -> int:
        return self._session._last_copies[0]

    @property
    def last_run_copy_bytes(self) -> int:
        return self._session._last_copies[1]

    def summary(self) -> str:
        lines = ["providers: " + ", ".join(self.providers)]
        lines.append("nodes: " + ", ".join(f"{p}: {c}" for p, c in self.counts().items()))
        fb = self.fallbacks()
        if fb:
            lines.append(f"{len(fb)} node(s) not on {self.providers[0]}:")
            for n in fb[:50]:
                why = "; ".join(f"{p}: {r}" for p, r in n.refused)
                lines.append(f"  {n.op_type} '{n.name}' -> {n.provider} ({why})")
        if self.engine_builds:
            lines.append(f"compiled groups: {len(self.engine_builds)}")
            for b in self.engine_builds:
                where = f", {b.path}" if b.path else ""
                lines.append(f"  {b.group}: {b.provider}, {b.nodes} node(s), {b.seconds:.2f} s, cache {b.cache}{where}")
        lines.append(f"copy steps per run: {len(self.copies)}")
        for c in self.copies[:50]:
            lines.append(f"  {c.value}: {c.src} -> {c.dst} (for '{c.reader}')")
        return "\n".join(lines)

    __str__ = summary
