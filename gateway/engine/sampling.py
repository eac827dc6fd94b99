"""The daily rotation: which questions a worker is asked today (continuous monitoring).

A flow with ``sample: N`` asks N question groups a day. A group is a question without
``only_if`` together with the follow-ups that depend on it. Day by day each worker moves N groups
further round the circle, starting from a place set by their seed, so every group is asked every
ceil(groups / N) days and, on any one day, different workers answer different groups.
"""

from __future__ import annotations

from datetime import date

from .model import Flow


def groups(flow: Flow) -> list[list[str]]:
    """Question ids grouped: each independent question with the follow-ups that hang on it."""
    grouped: list[list[str]] = []
    home: dict[str, int] = {}
    for question in flow.questions:
        parents = [home[ref] for ref in question.only_if if ref in home]
        if parents:
            index = min(parents)
            grouped[index].append(question.id)
        else:
            index = len(grouped)
            grouped.append([question.id])
        home[question.id] = index
    return grouped


def todays_plan(flow: Flow, today: date, seed: int) -> list[str]:
    """The question ids to ask today, in file order."""
    units = groups(flow)
    if flow.sample is None or flow.sample >= len(units):
        return [q.id for q in flow.questions]
    start = (today.toordinal() * flow.sample + seed) % len(units)
    chosen = {(start + i) % len(units) for i in range(flow.sample)}
    return [qid for i, unit in enumerate(units) if i in chosen for qid in unit]
