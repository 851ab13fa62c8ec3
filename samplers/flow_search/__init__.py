"""Inference-time search for flow models (Kim et al., "Inference-Time Scaling for Flow Models via Stochastic Generation
and Rollover Budget Forcing", 2025): SDE conversion, interpolants, time grids and the search methods.
"""
