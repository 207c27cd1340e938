"""The saved form of a fitted estimator's network: numpy arrays and built-in types only.

A fitted estimator pickles (and saves with :func:`skops.io.dump`) without any torch or
skorch object: its configuration (``_net_config``), and here the module's weights, the
optimizer's state, the training history and the stopping rule's counters. Loading
rebuilds the skorch net from them, on the CPU when the model was trained on a GPU that the
loading machine does not have.
"""

import json
import warnings

import numpy as np
import torch
from skorch.history import History

#: Bump when the saved layout changes; loading refuses layouts it does not know.
STATE_FORMAT = 1


class PersistenceVersionWarning(UserWarning):
    """A model saved by another version of sklearn_gmnm is being loaded."""


def _to_numpy(value):
    """Tensors in nested dicts, lists and tuples as numpy arrays."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {key: _to_numpy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(item) for item in value)
    return value


def _to_tensor(value):
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value)
    if isinstance(value, dict):
        return {key: _to_tensor(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_tensor(item) for item in value)
    return value


def _plain(history):
    """skorch's history as built-in lists, dicts, numbers and strings."""
    return json.loads(json.dumps(list(history), default=float))


def _package_version():
    from . import __version__

    return __version__


def export_network(net):
    convergence = dict(net.callbacks_)["convergence"]
    optimizer = net.optimizer_.state_dict()
    return {
        "format": STATE_FORMAT,
        "package_version": _package_version(),
        "device": str(net.device),
        "module": {
            key: value.detach().cpu().numpy()
            for key, value in net.module_.state_dict().items()
        },
        # Optimizer parameters are keyed by position: state {int: {name: array}}.
        "optimizer": {
            "state": [
                [int(index), _to_numpy(values)]
                for index, values in optimizer["state"].items()
            ],
            "param_groups": _to_numpy(optimizer["param_groups"]),
        },
        "history": _plain(net.history),
        "convergence": {
            "best": float(convergence.best_),
            "misses": int(convergence.misses_),
            "converged": bool(convergence.converged_),
            # early stopping: the weights of the best epoch, restored when training ends
            "best_state": _to_numpy(convergence.best_state_),
        },
        "alpha": float(net.alpha),
        "mean_weight": float(net.mean_weight),
    }


def import_network(estimator, state):
    """Rebuild the skorch net of ``estimator`` from :func:`export_network`'s output."""
    saved_by = state.get("package_version", "unknown")
    if state.get("format") != STATE_FORMAT:
        raise ValueError(
            f"This {type(estimator).__name__} was saved by sklearn_gmnm {saved_by} in "
            f"storage format {state.get('format')!r}, which sklearn_gmnm "
            f"{_package_version()} cannot read (it reads format {STATE_FORMAT}). Load it "
            f"with sklearn_gmnm {saved_by}, or refit the model."
        )
    if saved_by != _package_version():
        warnings.warn(
            f"This {type(estimator).__name__} was saved by sklearn_gmnm {saved_by} and is "
            f"loaded by {_package_version()}; the storage format is the same, but check "
            "its predictions, or refit it.",
            PersistenceVersionWarning,
            stacklevel=3,
        )
    device = state["device"]
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        warnings.warn(
            f"This model was trained on {device!r}, but no CUDA devices are available "
            "here: it is loaded on the CPU. A refit needs device='cpu' or 'auto'.",
            UserWarning,
            stacklevel=3,
        )
        device = "cpu"
    with torch.random.fork_rng(devices=[]):  # building draws random weights
        net = estimator._make_net(estimator._net_config, device)
    load_network_state(net, state)
    return net


def load_network_state(net, state, convergence=True):
    """Load :func:`export_network`'s output into ``net``, a freshly built net of the
    same shape: weights, Adam's state, history, L2 settings and, with
    ``convergence``, the stopping rule's counters."""
    module_state = {key: torch.as_tensor(v) for key, v in state["module"].items()}
    net.module_.load_state_dict(module_state)
    optimizer = state["optimizer"]
    # The Adam implementation (fused kernel or not) is this machine's choice, not the
    # saving machine's: a model saved where fused Adam exists loads where it does not.
    fused = [group.get("fused") for group in net.optimizer_.param_groups]
    net.optimizer_.load_state_dict(
        {
            "state": {
                index: _to_tensor(values) for index, values in optimizer["state"]
            },
            "param_groups": _to_tensor(optimizer["param_groups"]),
        }
    )
    for group, value in zip(net.optimizer_.param_groups, fused, strict=True):
        group["fused"] = value
    net.history = History(state["history"])
    net.alpha = state["alpha"]
    net.mean_weight = state["mean_weight"]
    if not convergence:
        return
    rule = dict(net.callbacks_)["convergence"]
    rule.best_ = state["convergence"]["best"]
    rule.misses_ = state["convergence"]["misses"]
    rule.converged_ = state["convergence"]["converged"]
    best_state = state["convergence"]["best_state"]
    rule.best_state_ = (
        None
        if best_state is None
        else {
            key: torch.as_tensor(value, device=net.module_.x_mean.device)
            for key, value in best_state.items()
        }
    )
