"""The skorch side of the estimators: the network module, the net and its callbacks."""

import copy
import math
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.dataset import ValidSplit
from skorch.utils import to_numpy
from torch import nn

from .nn import GMNMMLP
from .nn.modules import _draw_rows


class StandardizedGMNMNetwork(nn.Module):
    """A :class:`~sklearn_gmnm.nn.GMNMMLP` behind a fixed standardisation of its inputs.

    ``forward(X, sample_weight=None)``: skorch passes every key of the input dictionary
    as a keyword, so the sample weights reach the loss alongside ``X``; the network
    ignores them.
    """

    def __init__(self, x_mean, x_scale, n_outputs, **gmnm_params):
        super().__init__()
        self.register_buffer("x_mean", torch.as_tensor(x_mean).clone())
        self.register_buffer("x_scale", torch.as_tensor(x_scale).clone())
        self.body = GMNMMLP(
            len(x_mean), n_outputs, dtype=self.x_mean.dtype, **gmnm_params
        )

    def standardize(self, X):
        return (X - self.x_mean) / self.x_scale

    @torch.no_grad()
    def init_from_data(self, X, *, sample_weight=None, random_state=None):
        """Data-aware initialisation from raw (unstandardised) rows, on the CPU.

        At most ``max_samples`` (10,000) rows are drawn first, in proportion to their
        weights, and only those are standardised: the full X is never copied.
        """
        import numpy as np

        rng = np.random.default_rng(random_state)
        X = np.asarray(X)
        w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight)
        w = w.astype(np.float64)
        rows = _draw_rows(w, 10_000, rng)  # the draw GMNM.init_from_data would make
        if rows is not None:
            X, w = X[rows], np.ones(len(rows))
        rows_t = torch.as_tensor(X, dtype=self.x_mean.dtype)
        standardized = (rows_t - self.x_mean.cpu()) / self.x_scale.cpu()
        self.body.init_from_data(standardized, sample_weight=w, random_state=rng)
        return self

    def forward(self, X, sample_weight=None):
        return self.body(self.standardize(X))


class BatchIterator:
    """Mini-batches cut from whole tensors, in place of a per-row ``DataLoader``.

    A ``DataLoader`` with ``batch_size`` fetches and collates rows one by one, which
    costs more than the GMNM step itself on tabular data. This iterator indexes the
    tensors of a skorch ``Dataset`` (or of a ``Subset`` of one, as skorch's validation
    split makes) once per batch. Shuffling draws from torch's global generator, which
    the estimators seed from ``random_state``.
    """

    def __init__(self, dataset, batch_size, shuffle=False):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self):
        return math.ceil(len(self.dataset) / self.batch_size)

    def _tensors(self):
        """(X dict, y, row indices) of the underlying skorch Dataset."""
        dataset, rows = self.dataset, None
        if isinstance(dataset, torch.utils.data.Subset):
            dataset, rows = dataset.dataset, torch.as_tensor(dataset.indices)
        return dataset.X, dataset.y, rows

    def __iter__(self):
        X, y, rows = self._tensors()
        n = len(self.dataset)
        order = torch.randperm(n) if self.shuffle else torch.arange(n)
        if rows is not None:
            order = rows[order]
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            yield {key: value[index] for key, value in X.items()}, y[index]


class _StopTraining(Exception):
    """Raised by a callback to end training (not a KeyboardInterrupt: see GMNMNet)."""


class DivergenceError(ValueError):
    """Raised by ``fit`` and ``partial_fit`` when the training loss became NaN or
    infinite: the fit diverged. A smaller ``learning_rate_init`` is the usual remedy."""


class DivergenceWarning(UserWarning):
    """Warned by ``fit`` (not ``partial_fit``) when the fit diverged but its loss
    stayed finite: training left the loss on the training data well above both its
    loss at the start and the loss of the best constant prediction, or the loss of an
    epoch rose far above them and the fit ended no better. The model is kept, but it
    is worse than a constant; a smaller ``learning_rate_init`` is the usual remedy."""


class Convergence(Callback):
    """scikit-learn MLP's stopping rules, and an error on a non-finite training loss.

    Without early stopping, training stops once the training loss has not improved by
    ``tol`` for ``n_iter_no_change`` consecutive epochs. With early stopping, the same
    rule applies to the validation score (higher is better), and the weights of the best
    epoch are restored at the end. Reaching ``max_epochs`` without either warns with a
    :class:`~sklearn.exceptions.ConvergenceWarning`, as scikit-learn's MLP does.
    """

    def __init__(self, early_stopping, tol, n_iter_no_change, learning_rate):
        self.early_stopping = early_stopping
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.learning_rate = learning_rate

    def initialize(self):
        self.best_ = math.inf
        self.misses_ = 0
        self.best_state_ = None
        self.converged_ = False
        return self

    def on_epoch_end(self, net, **kwargs):
        # A NaN or infinite batch loss makes the epoch's mean loss NaN or infinite too:
        # checking once per epoch costs nothing per batch.
        loss = net.history[-1, "train_loss"]
        if not math.isfinite(loss):
            raise DivergenceError(
                f"The training loss became {loss} in epoch {len(net.history)}: the fit "
                f"diverged. Lower learning_rate_init (now {self.learning_rate}), or "
                "check X and y for extreme values (the estimator standardizes them "
                "unless told not to)."
            )
        if self.early_stopping:
            score = -net.history[-1, "valid_score"]
        else:
            score = net.history[-1, "train_loss"]
        if score < self.best_ - self.tol:
            self.misses_ = 0
        else:
            self.misses_ += 1
        if score < self.best_:
            self.best_ = score
            if self.early_stopping:
                self.best_state_ = copy.deepcopy(net.module_.state_dict())
        if self.misses_ >= self.n_iter_no_change:
            self.converged_ = True
            raise _StopTraining

    def on_train_end(self, net, **kwargs):
        if self.early_stopping and self.best_state_ is not None:
            net.module_.load_state_dict(self.best_state_)


def _overrides(obj, base, name):
    """Whether ``obj``'s class defines ``name`` differently from ``base``."""
    return getattr(type(obj), name, None) is not getattr(base, name, None)


class GMNMNet(NeuralNet):
    """skorch net with sample-weighted losses and scikit-learn MLP's L2 penalty.

    The loss of a batch is ``sum_i w_i * loss_i / (n_batch * mean_weight)``: with one
    batch per epoch this is the weighted mean, and integer weights train exactly as
    repeated rows do. When all weights are equal the estimator passes none (no
    ``sample_weight`` key in X) and the loss is the plain batch mean, the same value at
    less cost per batch. ``alpha`` adds ``0.5 * alpha * ||W||^2 / (n_batch * mean_weight)``
    over the network's weight matrices (not centres, offsets or biases), as
    :class:`~sklearn.neural_network.MLPRegressor` does.

    Unlike skorch's own ``partial_fit``, a KeyboardInterrupt (Ctrl-C) is not swallowed:
    it stops the fit and whatever search runs it.
    """

    def __init__(self, *args, alpha=0.0, mean_weight=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        self.mean_weight = mean_weight

    def penalized_parameters(self):
        """The module's weight matrices (projections, mixture, embedding), cached per
        module: walking the module tree at every batch costs as much as a small
        network's forward pass."""
        cache = self.__dict__.get("_penalized_cache")
        if cache is None or cache[0] is not self.module_:
            params = [
                param
                for name, param in self.module_.named_parameters()
                if name.endswith("weight")
            ]
            cache = self.__dict__["_penalized_cache"] = (self.module_, params)
        return cache[1]

    def _set_training(self, training=True):
        # skorch sets the mode before every batch, and ``Module.train`` walks the whole
        # module tree each time; switch only the modules whose mode differs.
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            if isinstance(module, nn.Module) and module.training != training:
                module.train(training)

    # Hooks that skorch calls at every batch; most callbacks inherit them as no-ops.
    _BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_grad_computed")

    def _listeners(self, method_name):
        """The net itself and the callbacks that define ``method_name``, cached."""
        key = tuple(id(cb) for _, cb in self.callbacks_)
        cache = self.__dict__.get("_batch_listeners")
        if cache is None or cache[0] != key:
            listeners = {
                # the net's own hooks always run (on_batch_begin opens the batch's
                # history entry)
                name: [self]
                + [cb for _, cb in self.callbacks_ if _overrides(cb, Callback, name)]
                for name in self._BATCH_HOOKS
            }
            cache = (key, listeners)
            self._batch_listeners = cache
        return cache[1][method_name]

    def notify(self, method_name, **cb_kwargs):
        # skorch calls every callback's batch hooks at every batch; most are the base
        # class's no-ops. Call the net's own hooks and only those callbacks that define
        # them (the progress bar, a user's callback).
        if method_name not in self._BATCH_HOOKS:
            return super().notify(method_name, **cb_kwargs)
        for obj in self._listeners(method_name):
            getattr(obj, method_name)(self, **cb_kwargs)

    def train_step(self, batch, **fit_params):
        # skorch passes a closure to ``optimizer.step`` (for LBFGS-like optimizers) and
        # announces the gradients to every callback. Adam needs no closure: when no
        # callback looks at the gradients, take the step directly, with the same maths
        # and fewer Python calls per batch.
        if len(self._listeners("on_grad_computed")) > 1:
            return super().train_step(batch, **fit_params)
        self._zero_grad_optimizer()
        step = self.train_step_single(batch, **fit_params)
        self._step_optimizer(None)
        return step

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_penalized_cache", None)  # parameters pickle with module_ only
        state.pop("_batch_listeners", None)
        return state

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = y_true.to(device=y_pred.device)
        per_sample = self.criterion_(y_pred, y_true)
        total_weight = len(per_sample) * self.mean_weight
        if "sample_weight" in X:
            weights = X["sample_weight"].to(device=y_pred.device)
            if per_sample.ndim > 1:  # several outputs or labels: average per sample
                per_sample = per_sample.mean(1)
            loss = (weights * per_sample).sum() / total_weight
        else:  # equal weights (the estimator leaves them out): a plain mean
            loss = per_sample.mean()
        if training and self.alpha:
            loss = loss + self.penalty(len(per_sample))
        return loss

    def penalty(self, n_rows):
        """The L2 penalty that :meth:`get_loss` adds to the loss of a batch of
        ``n_rows`` rows (a 0-d tensor; 0 without ``alpha``)."""
        if not self.alpha:
            return torch.zeros(())
        squares = sum(p.square().sum() for p in self.penalized_parameters())
        return 0.5 * self.alpha * squares / (n_rows * self.mean_weight)

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        if not self.initialized_:
            self.initialize()
        self.notify("on_train_begin", X=X, y=y)
        try:
            self.fit_loop(X, y, **fit_params)
        except _StopTraining:
            pass
        self.notify("on_train_end", X=X, y=y)
        return self


class ValidationSplit(ValidSplit):
    """skorch's ``ValidSplit`` holding out a fraction of the rows for early stopping,
    with scikit-learn MLP's check that the validation set has at least 2 rows.

    A stratified split (a classifier's) needs every class to have 2 members or more, and
    room for every class on both sides: where it can't have them, the rows are split
    at random instead, with a warning, rather than failing the fit (scikit-learn's
    MLPClassifier stratifies only binary targets).
    """

    def __call__(self, dataset, y=None, groups=None):
        n_rows = len(dataset)
        n_valid = math.ceil(self.cv * n_rows)  # as ShuffleSplit counts it
        if n_valid < 2:
            raise ValueError(
                f"The validation set is too small ({n_valid} of {n_rows} rows): "
                f"increase validation_fraction (now {self.cv}) or the size of your "
                "dataset, or set early_stopping=False."
            )
        stratified = self.stratified
        if stratified and y is not None:
            _, counts = np.unique(to_numpy(y), return_counts=True)
            if counts.min() < 2 or min(n_valid, n_rows - n_valid) < len(counts):
                warnings.warn(
                    f"early_stopping holds out validation_fraction={self.cv} of the "
                    f"rows ({n_valid} of {n_rows}); {len(counts)} classes, the "
                    f"smallest with {counts.min()} rows, can't be stratified into "
                    "that split, so the rows are split at random instead.",
                    UserWarning,
                    stacklevel=2,
                )
                stratified = False
        split = ValidSplit(
            self.cv, stratified=stratified, random_state=self.random_state
        )
        return split(dataset, y, groups)


def epoch_scorer(score):
    """An EpochScoring callable from ``score(y_true, raw_output)``."""

    def scoring(net, X, y):
        with torch.no_grad():
            output = net.forward(X).cpu().numpy()
        y_true = y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        return score(y_true, output)

    return scoring


def warn_not_converged(max_iter):
    warnings.warn(
        f"Stochastic optimizer: maximum iterations ({max_iter}) reached and the "
        "optimization hasn't converged yet. Increase max_iter, or use early_stopping.",
        ConvergenceWarning,
        stacklevel=3,
    )


__all__ = [
    "BatchIterator",
    "Convergence",
    "DivergenceError",
    "DivergenceWarning",
    "GMNMNet",
    "StandardizedGMNMNetwork",
    "ValidationSplit",
    "epoch_scorer",
    "warn_not_converged",
]
