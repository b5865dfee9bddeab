"""The torch twins of minicnn's layers: ``to_torch`` / ``from_torch`` live in the library
(``minicnn.testing.interop``); this name is kept so that ``from reference.interop import to_torch`` works."""
from minicnn.testing.interop import from_torch, to_torch

__all__ = ["from_torch", "to_torch"]
