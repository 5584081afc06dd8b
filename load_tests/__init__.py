"""Load tests and throughput benchmarks (see load_tests/README.md)."""
