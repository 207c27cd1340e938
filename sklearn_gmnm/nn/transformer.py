"""GMNM in attention models: a GMNM feed-forward block, Gaussian-kernel attention and a
Transformer encoder block that takes either, both or neither."""

import math

import torch
from torch import Tensor, nn

from . import functional as F
from .modules import GMNMMLP, _check_positive_int

__all__ = ["GMNMFeedForward", "GMNMTransformerBlock", "GaussianKernelAttention"]


class GMNMFeedForward(nn.Module):
    """The feed-forward block of a Transformer, as one GMNM layer.

    Replaces ``Linear(d, 4d) -> ReLU -> Linear(4d, d)`` by ``GMNM(d, d)``: every token
    goes through ``n_components`` Gaussians (after the block's LayerNorm, tokens are on
    the standardised scale the default initialisation expects). With ``embedding_dim``
    the Gaussians live in a learnt ``embedding_dim``-dimensional projection of the token
    (see :class:`GMNMMLP`), which keeps their cost down for wide models.

    Parameters
    ----------
    d_model : int
        Width of the tokens.
    n_components : int, default=64
        Gaussians.
    n_projections : int, default=2
        Projections per Gaussian.
    embedding_dim : int or None, default=None
        Width of a linear map before the Gaussians, if any.
    explicit_centers : bool, default=True
        Passed to the GMNM layer (False saves parameters; see :class:`GMNM`).
    dropout : float, default=0.0
        Dropout on the output.
    device, dtype
        Factory arguments.

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn import GMNMFeedForward
    >>> GMNMFeedForward(16, n_components=32)(torch.randn(2, 7, 16)).shape
    torch.Size([2, 7, 16])
    """

    def __init__(
        self,
        d_model: int,
        n_components: int = 64,
        n_projections: int = 2,
        embedding_dim: int | None = None,
        explicit_centers: bool = True,
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.gmnm = GMNMMLP(
            d_model,
            d_model,
            n_components=n_components,
            n_projections=n_projections,
            embedding_dim=embedding_dim,
            explicit_centers=explicit_centers,
            device=device,
            dtype=dtype,
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, input: Tensor) -> Tensor:
        return self.dropout(self.gmnm(input))


class GaussianKernelAttention(nn.Module):
    r"""Multi-head attention with Gaussian-kernel scores.

    Each head projects queries and keys (as :class:`torch.nn.MultiheadAttention` does)
    and weighs key ``j`` for query ``i`` by
    ``softmax_j(-||q_i - k_j||^2 / (2 tau_h))``: a Gaussian of the distance between
    query and key under the learnt projection, with a learnt variance ``tau_h`` per head
    (started at ``sqrt(head_dim)``, the scale of dot-product attention). See
    :func:`~sklearn_gmnm.nn.functional.gaussian_kernel_attention`.

    Parameters
    ----------
    embed_dim : int
        Width of the tokens.
    num_heads : int
        Number of heads; must divide ``embed_dim``.
    dropout : float, default=0.0
        Dropout on the attention weights (in training).
    bias : bool, default=True
        Biases in the input and output projections.
    device, dtype
        Factory arguments.

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn import GaussianKernelAttention
    >>> attention = GaussianKernelAttention(16, num_heads=4)
    >>> x = torch.randn(2, 7, 16)  # (batch, length, embed_dim)
    >>> attention(x).shape
    torch.Size([2, 7, 16])
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        embed_dim = _check_positive_int(embed_dim, "embed_dim")
        num_heads = _check_positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(
                f"num_heads={num_heads} does not divide embed_dim={embed_dim}."
            )
        factory_kwargs = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias, **factory_kwargs)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory_kwargs)
        self.log_temperature = nn.Parameter(torch.empty(num_heads, **factory_kwargs))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform projections and zero biases (as MultiheadAttention), and
        ``tau = sqrt(head_dim)`` for every head."""
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.xavier_uniform_(self.out_proj.weight)
        for layer in (self.in_proj, self.out_proj):
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        nn.init.constant_(self.log_temperature, 0.5 * math.log(self.head_dim))

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend from ``query`` (N, L, E) to ``key`` and ``value`` (N, S, E).

        ``key`` and ``value`` default to ``query`` (self-attention). ``attn_mask``:
        boolean (True = attend) or additive float, broadcastable to (N, H, L, S).
        Returns a tensor of shape (N, L, E).
        """
        key = query if key is None else key
        value = key if value is None else value
        if F._checking_shapes():
            self._check_inputs(query, key, value)
        w_q, w_k, w_v = self.in_proj.weight.chunk(3)
        b_q, b_k, b_v = (
            (None, None, None)
            if self.in_proj.bias is None
            else self.in_proj.bias.chunk(3)
        )

        def heads(x, w, b):  # (N, L, E) -> (N, H, L, E/H)
            x = torch.nn.functional.linear(x, w, b)
            return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(-3, -2)

        q, k, v = heads(query, w_q, b_q), heads(key, w_k, b_k), heads(value, w_v, b_v)
        temperature = self.log_temperature.exp().view(-1, 1, 1)  # (H, 1, 1)
        out = F.gaussian_kernel_attention(
            q,
            k,
            v,
            temperature,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (N, H, L, E/H)
        if F._exporting():
            # torch.export (and the ONNX exporter after it) records the flatten below
            # as a view, which holds for the layout of the attention's output in eager
            # mode but not for the ONNX exporter's decomposition of it: out_proj's
            # weight is viewed per head instead. (Eagerly this took 1.04-1.07x the
            # time of a training step at 8 tokens of width 32.)
            weight = self.out_proj.weight.unflatten(1, (self.num_heads, self.head_dim))
            out = torch.einsum("...hld,ehd->...le", out, weight)  # (N, L, E)
            return out if self.out_proj.bias is None else out + self.out_proj.bias
        return self.out_proj(out.transpose(-3, -2).flatten(-2))  # (N, L, E)

    def _check_inputs(self, query, key, value):
        for name, x in (("query", query), ("key", key), ("value", value)):
            if x.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"Expected {name} with last dimension embed_dim={self.embed_dim}, "
                    f"got shape {tuple(x.shape)}."
                )
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(
                "Expected key and value of the same batch and length (N, S), got "
                f"shapes {tuple(key.shape)} and {tuple(value.shape)}."
            )

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"


class GMNMTransformerBlock(nn.Module):
    """A pre-norm Transformer encoder block with GMNM where you choose.

    ``x = x + attention(LayerNorm(x)); x = x + feedforward(LayerNorm(x))``, with

    - ``feedforward='gmnm'``: :class:`GMNMFeedForward`; ``'mlp'``: ``Linear -> ReLU ->
      Linear`` of width ``dim_feedforward``;
    - ``attention='dot'``: :class:`torch.nn.MultiheadAttention` (softmax of scaled dot
      products); ``'gaussian'``: :class:`GaussianKernelAttention`.

    With ``feedforward='mlp', attention='dot'`` it is the standard block (the baseline
    in ``benchmarks/paper/attention.py``).

    Parameters
    ----------
    d_model : int
        Width of the tokens.
    nhead : int
        Attention heads.
    feedforward : {'gmnm', 'mlp'}, default='gmnm'
        The feed-forward block.
    attention : {'dot', 'gaussian'}, default='dot'
        The attention scores.
    dim_feedforward : int, default=None
        Hidden width of the MLP feed-forward block (``4 * d_model`` if None).
    n_components : int, default=64
        Gaussians in the GMNM feed-forward block.
    n_projections : int, default=2
        Projections per Gaussian.
    explicit_centers : bool, default=True
        Passed to the GMNM layer (False saves parameters; see :class:`GMNM`).
    dropout : float, default=0.0
        Dropout on the attention weights and on both residual branches.
    device, dtype
        Factory arguments.

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn import GMNMTransformerBlock
    >>> block = GMNMTransformerBlock(16, nhead=2, attention="gaussian")
    >>> block(torch.randn(3, 8, 16)).shape
    torch.Size([3, 8, 16])
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        feedforward: str = "gmnm",
        attention: str = "dot",
        dim_feedforward: int | None = None,
        n_components: int = 64,
        n_projections: int = 2,
        explicit_centers: bool = True,
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if feedforward not in ("gmnm", "mlp"):
            raise ValueError(
                f"feedforward must be 'gmnm' or 'mlp', got {feedforward!r}."
            )
        if attention not in ("dot", "gaussian"):
            raise ValueError(
                f"attention must be 'dot' or 'gaussian', got {attention!r}."
            )
        nhead = _check_positive_int(nhead, "nhead")
        if d_model % nhead:  # nn.MultiheadAttention would fail an assert
            raise ValueError(f"nhead={nhead} does not divide d_model={d_model}.")
        factory_kwargs = {"device": device, "dtype": dtype}
        self.feedforward_kind = feedforward
        self.attention_kind = attention
        self.norm1 = nn.LayerNorm(d_model, **factory_kwargs)
        self.norm2 = nn.LayerNorm(d_model, **factory_kwargs)
        if attention == "dot":
            self.attention = nn.MultiheadAttention(
                d_model, nhead, dropout=dropout, batch_first=True, **factory_kwargs
            )
        else:
            self.attention = GaussianKernelAttention(
                d_model, nhead, dropout=dropout, **factory_kwargs
            )
        if feedforward == "gmnm":
            self.feedforward = GMNMFeedForward(
                d_model,
                n_components=n_components,
                n_projections=n_projections,
                explicit_centers=explicit_centers,
                **factory_kwargs,
            )
        else:
            hidden = 4 * d_model if dim_feedforward is None else dim_feedforward
            hidden = _check_positive_int(hidden, "dim_feedforward")
            self.feedforward = nn.Sequential(
                nn.Linear(d_model, hidden, **factory_kwargs),
                nn.ReLU(),
                nn.Linear(hidden, d_model, **factory_kwargs),
            )
        self.dropout = nn.Dropout(dropout)

    def forward(self, input: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """``input`` (N, L, d_model) -> (N, L, d_model). ``attn_mask``: boolean with
        True where attention is allowed, or additive float (``-inf`` blocks), broadcastable
        to (L, L), as :class:`GaussianKernelAttention` takes it."""
        x = self.norm1(input)
        if self.attention_kind == "dot":
            # MultiheadAttention's boolean masks mean the opposite: True = blocked;
            # additive float masks mean the same
            mask = attn_mask
            if attn_mask is not None and attn_mask.dtype == torch.bool:
                mask = ~attn_mask
            x = self.attention(x, x, x, attn_mask=mask, need_weights=False)[0]
        else:
            x = self.attention(x, attn_mask=attn_mask)
        x = input + self.dropout(x)
        return x + self.dropout(self.feedforward(self.norm2(x)))
