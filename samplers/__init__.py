"""Sampling algorithms in pure torch (no ComfyUI, no file I/O); each takes an explicit generator and callback."""
