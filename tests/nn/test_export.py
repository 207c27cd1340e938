"""Networks of GMNM layers leave Python: :func:`torch.export.export`,
:func:`torch.jit.trace` (saved, loaded and trained), and ONNX through both of torch's
exporters, run by onnxruntime. Each exported program is checked on a batch of another
size than it was exported with."""

import io
import warnings

import numpy as np
import pytest
import torch

from sklearn_gmnm.nn import (
    GMNM,
    GMNMLSTM,
    GMNMMLP,
    GaussianKernelAttention,
    GMNMConv2d,
    GMNMConvNet,
    GMNMFeedForward,
    GMNMTransformerBlock,
)

# name -> (the module, the shape of each input, batch first)
CASES = {
    "layer_centres_k2": (lambda: GMNM(4, 3, n_components=8, n_projections=2), [(4,)]),
    "layer_offsets_k1": (
        lambda: GMNM(4, 3, n_components=8, explicit_centers=False),
        [(4,)],
    ),
    "layer_sequence": (lambda: GMNM(4, 3, n_components=8), [(5, 4)]),
    "mlp_embedding": (
        lambda: GMNMMLP(6, 2, hidden_layer_sizes=(8,), n_components=8, embedding_dim=3),
        [(6,)],
    ),
    "conv2d": (lambda: GMNMConv2d(2, 3, 3, n_components=4, padding=1), [(2, 8, 8)]),
    "convnet": (
        lambda: GMNMConvNet(
            1, 3, image_size=(8, 8), channels=(4, 4), head_hidden=8, n_components=4
        ),
        [(1, 8, 8)],
    ),
    "lstm": (lambda: GMNMLSTM(3, 5, n_components=4), [(6, 3)]),
    "feedforward": (lambda: GMNMFeedForward(8, n_components=8), [(5, 8)]),
    "gaussian_attention": (
        lambda: GaussianKernelAttention(8, 2),
        [(5, 8), (7, 8), (7, 8)],
    ),
    "block_dot": (lambda: GMNMTransformerBlock(8, 2, n_components=8), [(5, 8)]),
    "block_gaussian": (
        lambda: GMNMTransformerBlock(8, 2, attention="gaussian", n_components=8),
        [(5, 8)],
    ),
}


def build(name, seed=0):
    """The module (eval mode) and a function giving inputs for a batch size."""
    torch.manual_seed(seed)
    factory, shapes = CASES[name]
    module = factory().eval()

    def inputs(batch):
        generator = torch.Generator().manual_seed(batch)
        return tuple(torch.randn(batch, *s, generator=generator) for s in shapes)

    return module, inputs


def first(output):
    """The output tensor (an LSTM also returns its state)."""
    return output[0] if isinstance(output, tuple) else output


@pytest.mark.parametrize("name", list(CASES))
def test_torch_export_matches_the_module(name):
    module, inputs = build(name)
    batch = torch.export.Dim("batch")
    args = inputs(3)
    program = torch.export.export(
        module, args, dynamic_shapes=tuple({0: batch} for _ in args)
    )
    new = inputs(5)
    with torch.no_grad():
        torch.testing.assert_close(first(program.module()(*new)), first(module(*new)))


@pytest.mark.parametrize("name", list(CASES))
def test_jit_trace_saves_loads_and_matches_the_module(name):
    """Traced with gradients on (the default): before, the layer's custom autograd
    node was recorded as a Python call, and the trace failed its own check and could
    not be saved. Tracing warns of nothing in this package's code."""
    module, inputs = build(name)
    if name == "block_dot":
        # torch.nn.MultiheadAttention's fast path in eval mode fails the trace's
        # check on its own; without dropout, training mode computes the same
        module.train()
    args = inputs(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # torch's own
        warnings.filterwarnings(
            "error", category=torch.jit.TracerWarning, module=r"sklearn_gmnm\."
        )
        traced = torch.jit.trace(module, args)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    # a traced loop over time steps keeps the traced length: the LSTM's new batch
    # differs in its size only
    new = inputs(5)
    torch.testing.assert_close(first(loaded(*new)), first(module(*new)))


@pytest.mark.parametrize("explicit_centers", [True, False])
@pytest.mark.parametrize("n_projections", [1, 2])
def test_a_traced_network_trains_as_the_module(explicit_centers, n_projections):
    """Gradients through a saved and loaded trace equal the module's."""
    torch.manual_seed(0)
    net = GMNMMLP(
        4,
        2,
        hidden_layer_sizes=(6,),
        n_components=8,
        n_projections=n_projections,
        explicit_centers=explicit_centers,
    )
    x = torch.randn(16, 4)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(net, (torch.randn(3, 4),)), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)

    loaded(x).square().sum().backward()
    net(x).square().sum().backward()
    got = dict(loaded.named_parameters())
    for name, parameter in net.named_parameters():
        assert got[name].grad is not None, name
        torch.testing.assert_close(got[name].grad, parameter.grad, msg=name)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("name", list(CASES))
def test_onnx_export_runs_in_onnxruntime(name, dynamo, tmp_path):
    """Both of torch's ONNX exporters: ``dynamo=True`` (torch.export, the default
    since torch 2.9) and the TorchScript-based one (the default before), which has no
    ``exp2``: a traced layer computes its responses through ``exp``."""
    onnxruntime = pytest.importorskip("onnxruntime")
    if dynamo:
        pytest.importorskip("onnxscript")
    module, inputs = build(name)
    args = inputs(3)
    names = [f"input_{i}" for i in range(len(args))]
    path = tmp_path / f"{name}.onnx"
    if dynamo:
        batch = torch.export.Dim("batch")
        options = {"dynamic_shapes": tuple({0: batch} for _ in args)}
    else:
        options = {"dynamic_axes": {n: {0: "batch"} for n in names}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' own notices
        torch.onnx.export(
            module, args, path, input_names=names, dynamo=dynamo, **options
        )
    session = onnxruntime.InferenceSession(str(path))
    new = inputs(5)
    got = session.run(None, {n: t.numpy() for n, t in zip(names, new, strict=True)})
    with torch.no_grad():
        expected = first(module(*new)).numpy()
    np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-6)


def test_traced_responses_agree_with_the_layer_in_float64():
    """Under tracing the responses go through ``exp`` instead of ``exp2``: the same
    values to float rounding."""
    torch.manual_seed(0)
    layer = GMNM(3, 2, n_components=16, n_projections=2).double()
    x = torch.randn(50, 3, dtype=torch.float64) * 2
    traced = torch.jit.trace(layer, (x,))
    assert "exp2" not in str(traced.graph)
    torch.testing.assert_close(traced(x), layer(x), rtol=1e-13, atol=1e-15)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("explicit_centers", [True, False])
def test_a_cuda_layer_exports_and_traces_past_its_triton_kernels(explicit_centers):
    """On a GPU a float32 layer trains through Triton kernels (where Triton is
    installed), which neither a trace nor an export can record: both take torch's
    operations, for any batch size, with the layer's values."""
    torch.manual_seed(0)
    layer = GMNM(
        4, 3, n_components=16, n_projections=2, explicit_centers=explicit_centers
    ).cuda()
    x = torch.randn(300, 4, device="cuda")
    program = torch.export.export(
        layer, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    traced = torch.jit.trace(layer, (x,))
    new = torch.randn(500, 4, device="cuda")
    expected = layer(new)  # with gradients on: the kernels, where installed
    torch.testing.assert_close(program.module()(new), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(traced(new), expected, atol=1e-5, rtol=1e-4)
