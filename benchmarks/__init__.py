"""Benchmarks of minicnn against torch. minicnn is imported first so that its BLAS settings apply."""
import minicnn  # noqa: F401
