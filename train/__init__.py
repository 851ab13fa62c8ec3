"""Training-side code of the built-in tiny models: the procedural shapes world and the training scripts. Never
imported by the nodes (run-time code lives in ``models/``, ``samplers/`` and ``nodes/``)."""
