"""What a trial asks of Ray against what the machines offer, without Ray: the one-line refusal of a
spec that a machine cannot run at all, and the note a waiting sweep shows on a cluster.

A trial is one Ray bundle (``resources.cpu`` CPUs and ``resources.gpu`` GPUs on one node), so it
fits where a single node offers both, not where the cluster's totals add up to it.
"""

from __future__ import annotations

from typing import Any

# the spec's names for Ray's resources
SETTING = {"CPU": "resources.cpu", "GPU": "resources.gpu"}


def request(cpu: float, gpu: float) -> dict[str, float]:
    """A trial's bundle as Ray names it, without the resources it does not ask for."""
    return {k: v for k, v in (("CPU", cpu), ("GPU", gpu)) if v > 0}


def shortfall(asked: dict[str, float], nodes: list[dict[str, float]]) -> dict[str, float]:
    """{resource: the most any one node offers} for each resource of ``asked`` that no node offers
    enough of; {} when some node fits the whole request. ``nodes``: each alive node's totals."""
    if any(all(node.get(k, 0) >= v for k, v in asked.items()) for node in nodes):
        return {}
    most = {k: max((node.get(k, 0) for node in nodes), default=0) for k in asked}
    missing = {k: m for k, m in most.items() if m < asked[k]}
    return missing or most  # each resource exists somewhere, but never together on one node


def _amount(v: float) -> str:
    return f"{v:g}"


def local_refusal(asked: dict[str, float], offered: dict[str, float], verb: str = "run") -> str | None:
    """Why a local Ray with ``offered`` (this machine's totals) can never place a trial that asks
    ``asked``: one line naming the setting and the fix; None when it fits."""
    missing = shortfall(asked, [offered])
    if not missing:
        return None
    name = next(iter(missing))
    have = _amount(missing[name])
    if name == "GPU":
        fix = "--set resources.gpu=0 trains on the CPU" if verb == "run" else f"{verb} it where GPUs are"
        return (f"{SETTING[name]}={_amount(asked[name])} asks for a GPU per trial, but Ray sees {have} GPUs "
                f"on this machine, so no trial would ever start: {fix}, or run on a cluster with GPUs "
                "(--address)")
    fix = (f"--set {SETTING.get(name, name)}={have} or less" if verb == "run" and name in SETTING
           else "run it on a cluster whose nodes are larger (--address)")
    return (f"{SETTING.get(name, name)}={_amount(asked[name])} asks each trial for more than this machine "
            f"has ({have} {name}), so no trial would ever start: {fix}")


def waiting_note(asked: dict[str, float], nodes: list[dict[str, float]], autoscaler: dict[str, Any] | None,
                 ) -> str | None:
    """What a sweep whose trials all wait on a cluster waits for; None when some node could take a
    trial (it is busy, or the trial is being placed). ``nodes``: each alive node's totals;
    ``autoscaler``: None where none can add nodes, else {"pending": nodes it is starting,
    "node_types": {type: one node's resources}, or None where it does not say}."""
    missing = shortfall(asked, nodes)
    if not missing:
        return None
    what = ", ".join(f"{SETTING.get(k, k)}={_amount(asked[k])} per trial, at most {_amount(m)} {k} on a node"
                     for k, m in missing.items())
    count = f"{len(nodes)} node{'' if len(nodes) == 1 else 's'}"
    head = f"waiting: no node offers what a trial asks ({what}; {count})"
    if autoscaler is None:
        return (f"{head}; no autoscaler runs, so none will come: add a node that has it, or lower the "
                "request (--set)")
    types = autoscaler.get("node_types")
    fitting = sorted(name for name, res in (types or {}).items() if not shortfall(asked, [res]))
    if autoscaler.get("pending"):
        return f"{head}; the autoscaler is starting {autoscaler['pending']} node(s)"
    if fitting:
        return f"{head}; the autoscaler can add one ({', '.join(fitting)})"
    return (f"{head}; the autoscaler adds none: none of its node types offers it (add one to the "
            "cluster config, or lower the request)")
