"""Benchmarks of minicnn against torch. Import order does not matter: minicnn sets no thread policy at import
(see minicnn.runtime)."""
