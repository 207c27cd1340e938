"""Smoke test of an installed sklearn_gmnm (CI runs it against the built wheel).

Run from outside the source tree: ``python tests/smoke.py``.
"""

import importlib.resources


def main():
    import torch

    import sklearn_gmnm
    from sklearn_gmnm.nn import GMNM, GMNMMLP

    assert sklearn_gmnm.__version__ != "0.0.0", "package metadata is missing"
    package = importlib.resources.files("sklearn_gmnm")
    assert package.joinpath("py.typed").is_file()
    # the opt-in CPU kernel's source, compiled on first use
    assert package.joinpath("nn", "_cpu_kernel.cpp").is_file()
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    layer = GMNM(3, 2, n_components=8).init_from_data(x, random_state=0)
    layer(x).sum().backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
    assert GMNMMLP(3, 1, hidden_layer_sizes=(4,))(x).shape == (64, 1)
    print(
        f"smoke test passed: sklearn_gmnm {sklearn_gmnm.__version__} from {sklearn_gmnm.__file__}"
    )


if __name__ == "__main__":
    main()
