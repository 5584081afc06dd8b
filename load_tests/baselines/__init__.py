"""Baseline servers the benchmark compares this service with."""
