"""Measurements: the user's metric on onnxruntime, FLOPs, latency and energy."""
