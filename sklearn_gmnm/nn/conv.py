"""GMNM in convolutional networks: a GMNM convolution and a small CNN built on it."""

import numbers

import torch
from torch import Tensor, nn

from . import functional as F
from .modules import GMNM, _check_positive_int

__all__ = ["GMNMConv2d", "GMNMConvNet"]


def _pair(value, name):
    """``value`` as a pair of Python ints (an int stands for both)."""
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    try:
        pair = tuple(pair)
    except TypeError:
        pair = ()
    if (
        len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in pair)
        or min(pair) < 0
    ):
        raise ValueError(
            f"{name} must be a non-negative int or a pair of them, got {value!r}."
        )
    return tuple(int(v) for v in pair)


class GMNMConv2d(GMNM):
    r"""A 2-D convolution whose channel nonlinearity is a GMNM.

    At every position the patch ``x`` (``in_channels * kh * kw`` values) goes through
    ``n_components`` Gaussians, mixed into ``out_channels`` outputs:

    .. math::

        y = \sum_{i=1}^{m} \pi_i \exp\left(-\tfrac12 \lVert A_i (x - \mu_i) \rVert^2\right)
            + b

    All ``m * k`` projections are one convolution (the fused augmented form of
    :class:`GMNM`, with the patch as the input vector) and the mixture is a 1x1
    convolution, so the layer costs two convolutions and an elementwise pass. It is a
    :class:`GMNM` whose ``in_features`` is the patch size: centres, widths and
    :meth:`gaussians` live in patch space, and :meth:`init_from_data` takes images.

    The layer is a convolution and its nonlinearity at once: use it in place of a
    ``Conv2d`` followed by an activation.

    Parameters
    ----------
    in_channels : int
        Channels of the input image.
    out_channels : int
        Channels produced by the layer.
    kernel_size : int or tuple of int
        Size of the patch.
    n_components : int, default=32
        m, the number of Gaussians (shared by all output channels).
    n_projections : int, default=2
        k, the number of projections per Gaussian.
    stride, padding, dilation : int or tuple of int, default=1, 0, 1
        As for :class:`torch.nn.Conv2d` (zero padding).
    bias : bool, default=True
        If False, the layer does not learn an output bias.
    explicit_centers : bool, default=True
        See :class:`GMNM`.
    device, dtype
        Factory arguments.

    Attributes
    ----------
    weight : Parameter of shape (n_projections * n_components, in_channels * kh * kw)
        The projections, projection-major as in :class:`GMNM`; viewed as a convolution
        kernel of shape (k * m, in_channels, kh, kw) in the forward pass.
    centers, offset, mixture_weight, bias
        As in :class:`GMNM`.

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn import GMNMConv2d
    >>> conv = GMNMConv2d(3, 8, kernel_size=3, padding=1, n_components=16)
    >>> conv(torch.randn(2, 3, 10, 10)).shape
    torch.Size([2, 8, 10, 10])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        n_components: int = 32,
        n_projections: int = 2,
        stride=1,
        padding=0,
        dilation=1,
        bias: bool = True,
        explicit_centers: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        in_channels = _check_positive_int(in_channels, "in_channels")
        self.in_channels = in_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        for value in (*self.kernel_size, *self.stride, *self.dilation):
            if value < 1:
                raise ValueError(
                    "kernel_size, stride and dilation must be positive, got "
                    f"{kernel_size!r}, {stride!r} and {dilation!r}."
                )
        super().__init__(
            in_channels * self.kernel_size[0] * self.kernel_size[1],
            out_channels,
            n_components=n_components,
            n_projections=n_projections,
            bias=bias,
            explicit_centers=explicit_centers,
            device=device,
            dtype=dtype,
        )

    @property
    def out_channels(self) -> int:
        return self.out_features

    def _check_input(self, input: Tensor) -> None:
        if input.dim() != 4 or (
            F._checking_shapes() and input.shape[1] != self.in_channels
        ):
            raise ValueError(
                "Expected input of shape (N, in_channels, H, W) with "
                f"in_channels={self.in_channels}, got shape {tuple(input.shape)}."
            )

    def _projection_args(self) -> dict:
        """The projection kernel, offsets and geometry, as the functional forms take
        them."""
        projections = self.projections()
        return {
            "weight": projections.view(-1, self.in_channels, *self.kernel_size),
            "offset": self.offsets(projections),
            "n_projections": self.n_projections,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
        }

    def forward(self, input: Tensor) -> Tensor:
        self._check_input(input)
        return F.gmnm_conv2d(
            input,
            mixture_weight=self.mixture_weight,
            bias=self.bias,
            **self._projection_args(),
        )

    def basis(self, input: Tensor) -> Tensor:
        """Gaussian responses of shape (N, n_components, H_out, W_out)."""
        self._check_input(input)
        return F.gmnm_conv2d_basis(input, **self._projection_args())

    def patches(self, input: Tensor) -> Tensor:
        """The patches the layer sees, as rows: shape (N * H_out * W_out, in_features)."""
        self._check_input(input)
        cols = torch.nn.functional.unfold(
            input, self.kernel_size, self.dilation, self.padding, self.stride
        )  # (N, in_features, L)
        return cols.transpose(1, 2).reshape(-1, self.in_features)

    @torch.no_grad()
    def init_from_data(self, X, **kwargs):
        """Data-aware initialisation on the patches of images ``X`` (N, C, H, W).

        Keyword arguments go to :meth:`GMNM.init_from_data` (``max_samples`` patches are
        used at most). Returns ``self``.
        """
        X = torch.as_tensor(X, dtype=self.weight.dtype)
        return super().init_from_data(self.patches(X), **kwargs)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"n_components={self.n_components}, n_projections={self.n_projections}, "
            f"bias={self.bias is not None}, explicit_centers={self.explicit_centers}"
        )


class GMNMConvNet(nn.Module):
    """A small image classifier with GMNM in its convolutions, its head, both or neither.

    ``input -> [conv block] x len(channels) -> flatten -> head -> logits``, where a conv
    block is ``Conv2d(3x3) -> BatchNorm2d -> ReLU -> MaxPool2d(2)`` and the head is an
    MLP ``Linear(flat, head_hidden) -> ReLU -> Linear(head_hidden, n_classes)``.
    ``placement`` says where GMNM replaces them:

    - ``'conv'``: each ``Conv2d -> ReLU`` becomes a :class:`GMNMConv2d` (a convolution
      with a Gaussian-mixture nonlinearity), followed by the same BatchNorm2d and pooling;
    - ``'head'``: the MLP head becomes one :class:`GMNM` layer on the flattened features,
      after a BatchNorm1d that keeps them on the standardised scale the Gaussians'
      default initialisation expects;
    - ``'both'``; or ``None``: the plain CNN, the baseline in
      ``benchmarks/paper/digits_cnn.py``.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    n_classes : int
        Number of outputs (logits).
    image_size : int or tuple of int, default=(8, 8)
        Height and width of the input images (they fix the width of the head).
    channels : tuple of int, default=(16, 32)
        Output channels of the conv blocks; each block halves the image size.
    head_hidden : int, default=64
        Hidden width of the MLP head (used unless GMNM is the head).
    placement : {'conv', 'head', 'both'} or None, default='conv'
        Where the GMNM layers go. ``'conv'`` was the most accurate GMNM placement in
        ``benchmarks/paper/digits_cnn.py`` (though below the plain CNN there).
    n_components : int, default=32
        Gaussians per GMNM layer.
    n_projections : int, default=2
        Projections per Gaussian.
    explicit_centers : bool, default=True
        Passed to every GMNM layer (False saves ``m * (d - k)`` parameters per layer
        of input width d; see :class:`GMNM`).
    dropout : float, default=0.0
        Dropout before the head.
    device, dtype
        Factory arguments.

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn import GMNMConvNet
    >>> net = GMNMConvNet(1, 10, placement="both", n_components=8)
    >>> net(torch.randn(4, 1, 8, 8)).shape
    torch.Size([4, 10])
    """

    placements = ("conv", "head", "both", None)

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        image_size=(8, 8),
        channels: tuple = (16, 32),
        head_hidden: int = 64,
        placement: str | None = "conv",
        n_components: int = 32,
        n_projections: int = 2,
        explicit_centers: bool = True,
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if placement not in self.placements:
            raise ValueError(
                f"placement must be one of {self.placements}, got {placement!r}."
            )
        n_classes = _check_positive_int(n_classes, "n_classes")
        factory_kwargs = {"device": device, "dtype": dtype}
        gmnm_kwargs = {
            "n_components": n_components,
            "n_projections": n_projections,
            "explicit_centers": explicit_centers,
        }
        self.placement = placement
        blocks = []
        width = in_channels
        for out_width in channels:
            out_width = _check_positive_int(out_width, "each of channels")
            if placement in ("conv", "both"):
                conv = [
                    GMNMConv2d(
                        width, out_width, 3, padding=1, **gmnm_kwargs, **factory_kwargs
                    )
                ]
                norm = [nn.BatchNorm2d(out_width, **factory_kwargs)]
            else:
                conv = [nn.Conv2d(width, out_width, 3, padding=1, **factory_kwargs)]
                norm = [nn.BatchNorm2d(out_width, **factory_kwargs), nn.ReLU()]
            blocks += [*conv, *norm, nn.MaxPool2d(2, ceil_mode=True)]
            width = out_width
        self.features = nn.Sequential(*blocks, nn.Flatten(), nn.Dropout(dropout))
        height, width_px = _pair(image_size, "image_size")
        self.image_size = (height, width_px)
        for _ in channels:  # each block halves the image (rounding up)
            height, width_px = -(-height // 2), -(-width_px // 2)
        flat = width * height * width_px
        if placement in ("head", "both"):
            self.head = nn.Sequential(
                nn.BatchNorm1d(flat, **factory_kwargs),
                GMNM(flat, n_classes, **gmnm_kwargs, **factory_kwargs),
            )
        else:
            head_hidden = _check_positive_int(head_hidden, "head_hidden")
            self.head = nn.Sequential(
                nn.Linear(flat, head_hidden, **factory_kwargs),
                nn.ReLU(),
                nn.Linear(head_hidden, n_classes, **factory_kwargs),
            )

    def forward(self, input: Tensor) -> Tensor:
        # the head's width follows from image_size: say so rather than fail in a GEMM
        if input.dim() != 4 or (
            F._checking_shapes() and tuple(input.shape[-2:]) != self.image_size
        ):
            raise ValueError(
                f"Expected images of shape (N, C, H, W) with (H, W) = image_size="
                f"{self.image_size}, got shape {tuple(input.shape)}."
            )
        return self.head(self.features(input))
