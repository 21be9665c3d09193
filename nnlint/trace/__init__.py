"""Tracing: one instrumented training step and one eval forward, reduced to plain data (Trace)."""
