"""Training-side code of the built-in tiny models: the procedural shapes world and the training scripts. Never
imported by the nodes (run-time code lives in ``models/``, ``samplers/`` and ``nodes/``)."""

from __future__ import annotations

import runpy


def run_in_pack(module: str) -> None:
    """Run ``train.<module>`` as ``__main__`` inside the pack, loaded as ``flowar`` by ``bench/common.py``.

    Why: ``python -m train.<module>`` from the repository root makes ``train`` a top-level package, where the
    relative imports of the training code cannot reach ``models/`` and ``samplers/``; the pack uses relative
    imports only, so loading it under one alias and running the module from there makes them resolve.
    """
    from bench.common import load_pack  # the repository root is on sys.path under ``python -m``

    load_pack()
    runpy.run_module(f"flowar.train.{module}", run_name="__main__", alter_sys=True)
