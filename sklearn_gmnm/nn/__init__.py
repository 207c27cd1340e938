"""Torch building blocks: the GMNM layer and networks made of it."""

from . import functional, pinn
from .conv import GMNMConv2d, GMNMConvNet
from .modules import GMNM, GMNMMLP, CompiledOrEager
from .recurrent import GMNMLSTM, GMNMLSTMCell
from .transformer import GaussianKernelAttention, GMNMFeedForward, GMNMTransformerBlock

__all__ = [
    "GMNM",
    "GMNMLSTM",
    "GMNMMLP",
    "CompiledOrEager",
    "GMNMConv2d",
    "GMNMConvNet",
    "GMNMFeedForward",
    "GMNMLSTMCell",
    "GMNMTransformerBlock",
    "GaussianKernelAttention",
    "functional",
    "pinn",
]
