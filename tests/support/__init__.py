"""Helpers shared by the tests: fixture discovery, tiny official-layout checkpoints, node schemas, workflows."""
