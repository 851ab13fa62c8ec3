"""Training of the built-in tiny models on the procedural shapes world (``python -m flowar.train.<script>``).

Never imported by the nodes: run-time code lives in ``models/``, ``samplers/`` and ``nodes/``; what training shares
with the benchmarks and the demo (the world, scoring, evaluation) lives in ``tooling/``.
"""
