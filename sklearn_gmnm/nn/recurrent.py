"""GMNM in recurrent networks: an LSTM cell with GMNM in its candidate or its gates."""

import math

import torch
from torch import Tensor, nn

from . import functional as F
from .modules import GMNM, _check_positive_int

__all__ = ["GMNMLSTM", "GMNMLSTMCell"]


class GMNMLSTMCell(nn.Module):
    r"""An LSTM cell in which a GMNM computes the candidate or all four gates.

    An LSTM cell computes, from ``z = [x_t, h_{t-1}]``, the gates
    ``i, f, o = sigmoid(W_{i,f,o} z + b)`` and the candidate ``g = tanh(W_g z + b)``,
    then ``c_t = f c_{t-1} + i g`` and ``h_t = o tanh(c_t)``. ``placement`` says where
    GMNM goes:

    - ``'candidate'``: ``g = GMNM(z)``, a Gaussian mixture in place of ``tanh(W_g z)``
      (bounded, as the Gaussians are, so the cell state stays bounded);
    - ``'gates'``: the four pre-activations come from one ``GMNM(z)`` of width
      ``4 * hidden_size`` instead of one linear map; the sigmoids and tanh stay.

    A GMNM *readout* needs no special cell: put a :class:`GMNM` layer on the outputs of
    :class:`torch.nn.LSTM`. ``benchmarks/paper/forecasting.py`` measures all three.

    Parameters
    ----------
    input_size : int
        Features per time step.
    hidden_size : int
        Width of the hidden and cell states.
    n_components : int, default=32
        Gaussians in the GMNM layer.
    n_projections : int, default=2
        Projections per Gaussian.
    placement : {'candidate', 'gates'}, default='gates'
        What the GMNM computes. ``'gates'`` had the lowest and steadiest sunspot
        forecasting error in ``benchmarks/paper/forecasting.py``; on CO2 the two were
        equal (neither beat the plain LSTM clearly).
    explicit_centers : bool, default=True
        Passed to the GMNM layer (False saves parameters; see :class:`GMNM`).
    device, dtype
        Factory arguments.

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn import GMNMLSTMCell
    >>> cell = GMNMLSTMCell(3, 8, n_components=16)
    >>> h, c = cell(torch.randn(5, 3))
    >>> h.shape, c.shape
    (torch.Size([5, 8]), torch.Size([5, 8]))
    """

    placements = ("candidate", "gates")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        n_components: int = 32,
        n_projections: int = 2,
        placement: str = "gates",
        explicit_centers: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if placement not in self.placements:
            raise ValueError(
                f"placement must be one of {self.placements}, got {placement!r}."
            )
        input_size = _check_positive_int(input_size, "input_size")
        hidden_size = _check_positive_int(hidden_size, "hidden_size")
        factory_kwargs = {"device": device, "dtype": dtype}
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.placement = placement
        z_size = input_size + hidden_size
        n_gmnm = hidden_size if placement == "candidate" else 4 * hidden_size
        self.gmnm = GMNM(
            z_size,
            n_gmnm,
            n_components=n_components,
            n_projections=n_projections,
            explicit_centers=explicit_centers,
            **factory_kwargs,
        )
        if placement == "candidate":
            self.gates = nn.Linear(z_size, 3 * hidden_size, **factory_kwargs)
        else:
            self.register_module("gates", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GMNM as in :meth:`GMNM.reset_parameters`; linear gates uniform in
        ``(-1/sqrt(hidden_size), 1/sqrt(hidden_size))`` as :class:`torch.nn.LSTMCell`,
        with the forget gate's bias at 1 (a common choice that lets memory through at
        the start)."""
        self.gmnm.reset_parameters()
        if self.gates is not None:
            bound = 1.0 / math.sqrt(self.hidden_size)
            nn.init.uniform_(self.gates.weight, -bound, bound)
            nn.init.uniform_(self.gates.bias, -bound, bound)
            with torch.no_grad():
                self.gates.bias[self.hidden_size : 2 * self.hidden_size] = 1.0

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """One step: ``input`` (N, input_size), ``hx = (h, c)`` each (N, hidden_size)
        (zeros if None). Returns the new ``(h, c)``."""
        checking = F._checking_shapes()
        if checking and input.shape[-1] != self.input_size:
            raise ValueError(
                f"Expected input with last dimension input_size={self.input_size}, "
                f"got shape {tuple(input.shape)}."
            )
        if hx is None:
            zeros = input.new_zeros(*input.shape[:-1], self.hidden_size)
            hx = (zeros, zeros)
        h, c = hx
        expected = (*input.shape[:-1], self.hidden_size)
        if checking and (h.shape != expected or c.shape != expected):
            raise ValueError(
                f"Expected hx = (h, c), each of shape {expected}, got shapes "
                f"{tuple(h.shape)} and {tuple(c.shape)}."
            )
        z = torch.cat([input, h], dim=-1)  # (N, input_size + hidden_size)
        if self.placement == "candidate":
            i, f, o = torch.sigmoid(self.gates(z)).chunk(3, dim=-1)  # 3 x (N, H)
            g = self.gmnm(z)  # (N, H)
        else:
            i, f, g, o = self.gmnm(z).chunk(4, dim=-1)  # 4 x (N, H)
            i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
            g = torch.tanh(g)
        c = f * c + i * g
        return o * torch.tanh(c), c

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, placement={self.placement!r}, "
            f"n_components={self.gmnm.n_components}, "
            f"n_projections={self.gmnm.n_projections}"
        )


class GMNMLSTM(nn.Module):
    """A one-layer LSTM made of :class:`GMNMLSTMCell`, batch first.

    Same call and outputs as ``torch.nn.LSTM(input_size, hidden_size, batch_first=True)``:
    ``output, (h_n, c_n) = lstm(input, hx)``. The steps run in a Python loop (no fused
    kernel exists for this cell), which costs time on long sequences.

    Parameters
    ----------
    input_size, hidden_size, n_components, n_projections, placement, explicit_centers
        As for :class:`GMNMLSTMCell`.
    device, dtype
        Factory arguments.

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn import GMNMLSTM
    >>> lstm = GMNMLSTM(3, 8, n_components=16, placement="gates")
    >>> output, (h_n, c_n) = lstm(torch.randn(5, 10, 3))
    >>> output.shape, h_n.shape
    (torch.Size([5, 10, 8]), torch.Size([1, 5, 8]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        n_components: int = 32,
        n_projections: int = 2,
        placement: str = "gates",
        explicit_centers: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.cell = GMNMLSTMCell(
            input_size,
            hidden_size,
            n_components=n_components,
            n_projections=n_projections,
            placement=placement,
            explicit_centers=explicit_centers,
            device=device,
            dtype=dtype,
        )
        self.input_size = input_size
        self.hidden_size = hidden_size

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``input`` (N, T, input_size); ``hx = (h_0, c_0)`` each (1, N, hidden_size).

        Returns ``output`` (N, T, hidden_size) and ``(h_n, c_n)`` each
        (1, N, hidden_size), as :class:`torch.nn.LSTM` with ``batch_first=True``.
        """
        if input.dim() != 3:
            raise ValueError(
                "Expected input of shape (batch, time, input_size), got shape "
                f"{tuple(input.shape)}."
            )
        if hx is not None and F._checking_shapes():
            expected = (1, input.shape[0], self.hidden_size)
            shapes = [tuple(t.shape) for t in hx]
            if len(hx) != 2 or any(shape != expected for shape in shapes):
                raise ValueError(
                    f"Expected hx = (h_0, c_0), each of shape (1, batch, hidden_size) "
                    f"= {expected} (one layer, as nn.LSTM's), got shapes {shapes}."
                )
        state = None if hx is None else (hx[0][0], hx[1][0])
        outputs = []
        for x_t in input.unbind(1):  # T steps of (N, input_size)
            state = self.cell(x_t, state)
            outputs.append(state[0])
        if not outputs:
            raise ValueError("Expected at least one time step, got 0.")
        h, c = state
        return torch.stack(outputs, 1), (h.unsqueeze(0), c.unsqueeze(0))
