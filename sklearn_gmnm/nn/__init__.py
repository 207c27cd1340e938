"""Torch building blocks: the GMNM layer and networks made of it."""

from . import functional
from .modules import GMNM, GMNMMLP, CompiledOrEager

__all__ = ["GMNM", "GMNMMLP", "CompiledOrEager", "functional"]
