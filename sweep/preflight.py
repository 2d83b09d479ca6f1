"""The storage checked against this machine before a launch: writable, and large enough for the
checkpoints."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .storage import URI_SCHEMES, credential_problem, scheme, write_problem

CHECKPOINTS_KEPT = 2  # the runner keeps two, so a damaged newest one leaves the one before


def storage_problems(storage, spec=None) -> list[str]:
    """Why results cannot go to ``storage``; with a valid ``spec``, also whether they fit."""
    if not isinstance(storage, str) or not storage:
        return [f"storage={storage!r} must be a path or a URI"]
    uri = scheme(storage)
    if uri is not None and uri not in URI_SCHEMES:
        return [f"storage={storage!r}: scheme {uri!r} is not one of {', '.join(URI_SCHEMES)}"]
    if uri is not None:
        problem = credential_problem(storage) or write_problem(storage)
        return [f"storage={storage!r}: {problem}"] if problem else []
    problem = writable_problem(Path(storage).expanduser().resolve())
    if problem:
        return [f"storage={storage!r}: {problem}"]
    return space_problems(spec) if spec is not None else []


def nearest_existing(path: Path) -> Path:
    """``path`` itself, or its closest ancestor that exists (where it would be created)."""
    while not path.exists():
        path = path.parent
    return path


def writable_problem(path: Path) -> str | None:
    """Why results cannot be written under ``path`` (created later if missing), or None.

    Probes by creating (and at once removing) a temporary file in the nearest existing
    folder: os.access says yes to root even where a write would fail.
    """
    probe = nearest_existing(path)
    if not probe.is_dir():
        return f"{probe} is a file, not a directory"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        return f"{probe} is not writable ({e.strerror})"
    return None


def checkpoint_bytes(cfg) -> int:
    """One trial's saved state: its parameters and Adam's two moments, float32, counted on a model
    built on the meta device (no memory, the engine's own shapes); torch imported here, at launch,
    not with this module."""
    import torch

    from trainables import families
    from trainables.data import DATA_DIM
    from trainables.model import BayesianDecoder

    with torch.device("meta"):
        decoder = BayesianDecoder(cfg.latent_dim, cfg.hidden_dim, DATA_DIM[cfg.dataset])
        family = families.build(cfg, cfg.n_train, DATA_DIM[cfg.dataset])
    n = sum(p.numel() for m in (decoder, family) for p in m.parameters())
    return 4 * 3 * n


def space_problems(spec) -> list[str]:
    """Refuse a launch whose checkpoints would not fit on the storage's disk."""
    need = CHECKPOINTS_KEPT * len(spec.seeds) * sum(
        checkpoint_bytes(spec.trial_config(c, spec.seeds[0])) for c in spec.cells()
    )
    probe = nearest_existing(Path(spec.storage))
    free = shutil.disk_usage(probe).free
    if free < need:
        return [f"storage={spec.storage!r}: {free / 1e6:.1f} MB free at {probe}, "
                f"the sweep's checkpoints need about {need / 1e6:.1f} MB"]
    return []
