"""GMNMRegressor and GMNMClassifier: scikit-learn estimators with a GMNM network inside."""

import functools
import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    is_classifier,
    is_regressor,
)
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer, LabelEncoder, StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import column_or_1d
from skorch.callbacks import EpochScoring, ProgressBar

from . import _net, _persistence
from ._sklearn_compat import (
    Interval,
    StrOptions,
    _check_sample_weight,
    _fit_context,
    check_is_fitted,
    validate_data,
)

__all__ = ["GMNMClassifier", "GMNMRegressor"]

# Rows per forward pass in predict. On the CPU, blocks whose activations stay in cache are
# faster than large passes: at the default 128 Gaussians, 100,000 rows predicted in 37 ms
# with blocks of 2048 rows, 41 ms with 4096, 52 ms with 8192 (median of 25, 2 cores; the
# (rows, 128) float64 activations of a 2048-row block fit the 2 MB of L2 cache). A GPU
# wants large blocks. Either way the blocks bound the memory predict needs.
PREDICT_BATCH_SIZE = {"cpu": 2048, "other": 65536}

# A fit whose loss stays finite can still diverge: too large a learning rate throws the
# weights about and leaves a model worse than where it started, or one that spikes and
# collapses to a constant. Each call of fit scores up to DIVERGENCE_CHECK_ROWS of its
# training rows (without the L2 penalty) before and after training; its yardstick is the
# largest of the loss at the start, the loss of the best constant prediction (the
# targets' mean, the classes' frequencies) and DIVERGENCE_MIN_LOSS (so that targets a
# constant fits exactly give no warning). The fit warns with a DivergenceWarning when
# its loss ends above DIVERGENCE_FACTOR times the yardstick, or when an epoch's mean
# training loss rose above DIVERGENCE_PEAK_FACTOR times it (plus the penalty at the
# start) and the loss ended above DIVERGENCE_NO_BETTER times it (a spike from which
# training recovered is no divergence). Thresholds from
# benchmarks/results/divergence_check.md: learning rates up to 0.01 ended at 0.00-0.86x
# the yardstick with epochs peaking at 0.03-1.28x; a learning rate of 10 or more warned
# on every dataset and setting. The check costs 2 ms per fit at the default network (2
# cores; 19 ms with 10,000 rows): 0.2% of a 20-epoch fit on 10,000 rows. partial_fit
# skips it: one epoch per call, on 200 or 2,000 rows, took 1.34x and 1.21x as long with
# it.
DIVERGENCE_CHECK_ROWS = 2048
DIVERGENCE_FACTOR = 1.25
DIVERGENCE_PEAK_FACTOR = 10.0
DIVERGENCE_NO_BETTER = 0.9
DIVERGENCE_MIN_LOSS = 1e-2


#: The dtype a network computes in, by the name its configuration keeps.
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _valid_batch_size(batch_size):
    """Rows per batch when scoring the validation split: no gradients, so more."""
    return max(batch_size, 4096)


def _resolve_device(device):
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device_type = torch.device(device).type
    except RuntimeError as error:  # torch's message doesn't name the parameter
        raise ValueError(
            f"device={device!r} is not a torch device: use 'cpu', 'cuda', 'cuda:1' "
            f"or 'auto'. ({error})"
        ) from None
    if device_type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested, but CUDA is not available on this "
            "machine. Use device='cpu' or device='auto'."
        )
    return device


def _weighted_mean(values, sample_weight, dtype):
    """The mean of ``values``' rows (n, k) as a (k,) tensor of ``dtype``, weighted by
    ``sample_weight`` (a tensor, or None for equal weights)."""
    values = values.to(dtype)
    if sample_weight is None:
        return values.mean(0)
    weight = sample_weight.to(dtype)
    return (weight[:, None] * values).sum(0) / weight.sum()


@functools.cache
def _fused_adam(device_type, dtype):
    """Whether this torch has a fused Adam kernel for parameters on ``device_type``.

    The fused kernel updates every parameter in one call instead of a chain of
    ``_foreach`` ops: in an A/B test on the CPU (20,000 rows, 5 epochs, 2 cores) a fit
    took 17% (float32) to 27% (float64) less time. Torch before 2.4 has it on CUDA only;
    elsewhere the estimators use the ``foreach`` implementation.
    """
    param = torch.zeros(1, device=device_type, dtype=dtype, requires_grad=True)
    try:
        torch.optim.Adam([param], fused=True)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


class BaseGMNM(BaseEstimator):
    """Parameters and training shared by GMNMRegressor and GMNMClassifier.

    The network is :class:`~sklearn_gmnm.nn.GMNMMLP` behind a standardisation of the
    inputs, trained by a skorch net (:attr:`net_`) with Adam.
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like"],
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "n_projections": [Interval(Integral, 1, None, closed="left")],
        "embedding_dim": [Interval(Integral, 1, None, closed="left"), None],
        "init": [StrOptions({"data", "random"})],
        "standardize": ["boolean"],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "device": [str],
    }

    def __init__(
        self,
        hidden_layer_sizes=(),
        *,
        n_components=128,
        n_projections=1,
        embedding_dim=None,
        init="data",
        standardize=True,
        alpha=1e-3,
        batch_size="auto",
        learning_rate_init=3e-4,
        max_iter=200,
        tol=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        warm_start=False,
        random_state=None,
        verbose=0,
        device="cpu",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.n_components = n_components
        self.n_projections = n_projections
        self.embedding_dim = embedding_dim
        self.init = init
        self.standardize = standardize
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.device = device

    # --- hooks the two estimators fill in -------------------------------------------

    def _encode_targets(self, y, sample_weight, dtype, *, first_call, classes=None):
        """Targets as the tensor the loss takes; on the first call, set y attributes."""
        raise NotImplementedError

    def _criterion(self):
        raise NotImplementedError

    def _validation_score(self, y_true, output):
        raise NotImplementedError

    def _constant_output(self, y, sample_weight, dtype):
        """The network output (len(y), n_outputs) of ``dtype`` of the constant
        prediction with the lowest loss on targets ``y`` (from :meth:`_encode_targets`)
        weighted by ``sample_weight`` (a tensor, or None for equal weights)."""
        raise NotImplementedError

    # --- checks -----------------------------------------------------------------------

    def _check_hidden_layer_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
        if not all(isinstance(s, Integral) and s >= 1 for s in sizes):
            raise ValueError(
                "hidden_layer_sizes must be a sequence of positive integers, got "
                f"{self.hidden_layer_sizes!r}."
            )
        return tuple(int(s) for s in sizes)

    def _validate_input(self, X, y, *, reset):
        return validate_data(
            self,
            X,
            y,
            reset=reset,
            dtype=(np.float64, np.float32),
            multi_output=True,
            y_numeric=not is_classifier(self),
        )

    # --- training ---------------------------------------------------------------------

    def _fit(self, X, y, sample_weight, *, incremental, classes=None):
        first_call = not ((self.warm_start or incremental) and hasattr(self, "net_"))
        hidden_layer_sizes = self._check_hidden_layer_sizes()
        device = _resolve_device(self.device)
        X, y = self._validate_input(X, y, reset=first_call)
        if not X.flags.writeable:  # torch cannot wrap read-only arrays (memmaps)
            X = X.copy()
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=X.dtype, ensure_non_negative=True
        )
        if not sample_weight.sum() > 0:
            raise ValueError("sample_weight sums to zero: there is nothing to fit.")
        # Computations use X's dtype, as scikit-learn's MLP does: float32 stays float32.
        # A network trained further keeps the dtype of its first fit.
        if first_call:
            dtype = torch.float64 if X.dtype == np.float64 else torch.float32
        else:
            dtype = _DTYPES[self._net_config["dtype"]]
        y_train = self._encode_targets(
            y, sample_weight, dtype, first_call=first_call, classes=classes
        )
        sample_weight = self._extra_sample_weight(y, sample_weight)
        if not sample_weight.sum() > 0:
            raise ValueError(
                "class_weight and sample_weight leave no weight to fit on."
            )
        # An int random_state gives the same seed at every fit, None a new one.
        seed = check_random_state(self.random_state).randint(2**31 - 1)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if first_call:
                net, config = self._build_net(
                    X,
                    sample_weight,
                    hidden_layer_sizes,
                    dtype,
                    device,
                    seed,
                    incremental,
                )
            else:
                net, config = self._continued_net(
                    len(X), hidden_layer_sizes, device, incremental
                )
            if net.device != device:
                net.set_params(device=device)
            net.alpha = self.alpha
            net.mean_weight = float(sample_weight.mean())
            inputs = {"X": torch.as_tensor(X, dtype=dtype)}
            if np.any(sample_weight != sample_weight[0]):  # else: a plain mean loss
                inputs["sample_weight"] = torch.as_tensor(sample_weight, dtype=dtype)
            epochs = 1 if incremental else self.max_iter
            n_iter_before = len(net.history)
            # partial_fit skips the divergence check (see DIVERGENCE_CHECK_ROWS)
            start = None
            if not incremental:
                probe = self._divergence_probe(inputs, y_train, seed)
                with torch.no_grad():
                    penalty = float(net.penalty(config["batch_size"]))
                start = (probe, self._probe_loss(net, probe), penalty)
            # An interrupt or error here leaves a first fit without net_: not fitted.
            net.partial_fit(inputs, y_train, epochs=epochs)

        self.net_ = net
        self._net_config = config
        self._record_history(incremental, n_iter_before)
        if start is not None:
            self._warn_if_diverged(net, *start, n_iter_before)
        return self

    def _divergence_probe(self, inputs, y_train, seed):
        """The training rows the divergence check scores, as (inputs, targets): all of
        them, or DIVERGENCE_CHECK_ROWS drawn at random."""
        n_samples = len(y_train)
        if n_samples <= DIVERGENCE_CHECK_ROWS:
            return inputs, y_train
        rng = np.random.default_rng(seed)
        rows = torch.as_tensor(
            rng.choice(n_samples, DIVERGENCE_CHECK_ROWS, replace=False)
        )
        return {key: value[rows] for key, value in inputs.items()}, y_train[rows]

    @staticmethod
    def _probe_loss(net, probe, output=None):
        """The training loss without the penalty on the probe's rows, of the network
        or of ``output``, as a float."""
        inputs, y = probe
        with torch.no_grad():
            if output is None:
                module = net.module_
                module.eval()
                output = module(inputs["X"].to(module.x_mean.device))
            return float(net.get_loss(output, y, X=inputs, training=False))

    def _warn_if_diverged(self, net, probe, start_loss, start_penalty, n_iter_before):
        """Warn if this fit diverged (see DIVERGENCE_FACTOR); keep the losses it
        compared in ``_divergence_check``."""
        end_loss = self._probe_loss(net, probe)
        inputs, y = probe
        dtype = net.module_.x_mean.dtype
        constant = self._constant_output(y, inputs.get("sample_weight"), dtype)
        constant_loss = self._probe_loss(net, probe, constant)
        reference = max(start_loss, constant_loss, DIVERGENCE_MIN_LOSS)
        # an epoch's training loss includes the L2 penalty, so its yardstick does too
        epoch_losses = [epoch["train_loss"] for epoch in net.history[n_iter_before:]]
        peak = max(epoch_losses, default=-math.inf)
        self._divergence_check = {
            "end": end_loss / reference,
            "peak": peak / (reference + start_penalty),
        }
        start = (
            f"the larger of its loss at the start ({start_loss:.3g}) and the loss of "
            f"the best constant prediction ({constant_loss:.3g})"
        )
        if end_loss > DIVERGENCE_FACTOR * reference:
            what = (
                f"training left the loss on the training data at {end_loss:.3g}, "
                f"{end_loss / reference:.3g} times {start}"
            )
        elif (
            peak > DIVERGENCE_PEAK_FACTOR * (reference + start_penalty)
            and end_loss > DIVERGENCE_NO_BETTER * reference
        ):
            epoch = n_iter_before + 1 + epoch_losses.index(peak)
            penalty = (
                f" plus the L2 penalty ({start_penalty:.3g})" if start_penalty else ""
            )
            what = (
                f"the training loss rose to {peak:.3g} in epoch {epoch}, "
                f"{peak / (reference + start_penalty):.3g} times {start}{penalty}, "
                f"and ended at {end_loss:.3g}, no better than that"
            )
        else:
            return
        warnings.warn(
            f"The fit diverged: {what}. Lower learning_rate_init "
            f"(now {self.learning_rate_init:g}).",
            _net.DivergenceWarning,
            stacklevel=3,
        )

    def _extra_sample_weight(self, y, sample_weight):
        return sample_weight

    def _build_net(
        self, X, sample_weight, hidden_layer_sizes, dtype, device, seed, incremental
    ):
        """A new, initialised net for X, and the configuration that rebuilds it."""
        if self.standardize:
            scaler = StandardScaler().fit(X, sample_weight=sample_weight)
            x_mean, x_scale = scaler.mean_, scaler.scale_
        else:
            x_mean, x_scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
        # Plain values only: this is what a saved model keeps (see __getstate__).
        config = {
            "x_mean": np.asarray(x_mean, dtype=np.float64),
            "x_scale": np.asarray(x_scale, dtype=np.float64),
            "dtype": "float64" if dtype == torch.float64 else "float32",
            "n_outputs": int(self.n_outputs_),
            **self._network_shape(hidden_layer_sizes),
            **self._training_config(X.shape[0], incremental),
            "seed": int(seed),
        }
        net = self._make_net(config, device)
        if self.init == "data":  # on the CPU: the same initialisation on every device
            net.module_.init_from_data(
                X, sample_weight=sample_weight, random_state=seed
            )
        return net, config

    def _network_shape(self, hidden_layer_sizes):
        """The parameters that shape the network: fixed once it is built."""
        return {
            "hidden_layer_sizes": tuple(hidden_layer_sizes),
            "n_components": int(self.n_components),
            "n_projections": int(self.n_projections),
            "embedding_dim": self.embedding_dim,
            "standardize": bool(self.standardize),
        }

    def _training_config(self, n_samples, incremental):
        """The parameters of training, which every fit and partial_fit applies anew."""
        batch_size = 200 if self.batch_size == "auto" else self.batch_size
        return {
            "learning_rate_init": float(self.learning_rate_init),
            "max_iter": int(self.max_iter),
            "batch_size": int(min(batch_size, n_samples)),
            "early_stopping": bool(self.early_stopping and not incremental),
            "validation_fraction": float(self.validation_fraction),
            "tol": float(self.tol),
            "n_iter_no_change": int(self.n_iter_no_change),
            "verbose": int(self.verbose),
        }

    def _continued_net(self, n_samples, hidden_layer_sizes, device, incremental):
        """The fitted net and its configuration, to train further (``warm_start=True``
        or ``partial_fit``) with this call's training parameters.

        The parameters that shape the network can't change: a change is an error, not
        a fit of the old network under new names. Training parameters
        (``learning_rate_init``, ``batch_size``, ``early_stopping``, ``tol``, ...) take
        their current values, as in scikit-learn's MLP; the weights, Adam's state and
        the history carry over.
        """
        config = self._net_config
        shape = self._network_shape(hidden_layer_sizes)
        changed = [
            f"{name}={config[name]!r} (now {value!r})"
            for name, value in shape.items()
            if name in config  # models saved before "standardize" was recorded
            and config[name] != value
        ]
        if changed:
            how = "partial_fit" if incremental else "fit with warm_start=True"
            raise ValueError(
                f"{how} trains the fitted network further, which was built with "
                f"{', '.join(changed)}. Set these back, or fit a new network (a fit "
                "with warm_start=False)."
            )
        training = self._training_config(n_samples, incremental)
        new_config = {**config, **training}
        net = self.net_
        if (
            training["early_stopping"] != config["early_stopping"]
            or training["validation_fraction"] != config["validation_fraction"]
            or (training["verbose"] >= 2) != (config["verbose"] >= 2)
        ):
            # other callbacks or another validation split: a new net, the same state
            state = _persistence.export_network(net)
            with torch.random.fork_rng(devices=[]):  # building draws random weights
                net = self._make_net(new_config, device)
            _persistence.load_network_state(
                net,
                state,
                # the stopping rule's counters track another score now
                convergence=training["early_stopping"] == config["early_stopping"],
            )
        net.set_params(  # lr: into Adam's parameter groups, keeping its state
            lr=training["learning_rate_init"],
            batch_size=training["batch_size"],
            max_epochs=training["max_iter"],
            verbose=training["verbose"],
        )
        # set as set_params would, which refuses it on an initialised net (it
        # re-initialises a component for such parameters, and this one has none)
        net.iterator_valid__batch_size = _valid_batch_size(training["batch_size"])
        convergence = dict(net.callbacks_)["convergence"]
        convergence.tol = training["tol"]
        convergence.n_iter_no_change = training["n_iter_no_change"]
        convergence.learning_rate = training["learning_rate_init"]
        return net, new_config

    def _make_net(self, config, device):
        """The initialised skorch net that ``config`` (from :meth:`_build_net`) describes."""
        dtype = _DTYPES[config["dtype"]]
        early_stopping = config["early_stopping"]
        callbacks = [
            (
                "convergence",
                _net.Convergence(
                    early_stopping=early_stopping,
                    tol=config["tol"],
                    n_iter_no_change=config["n_iter_no_change"],
                    learning_rate=config["learning_rate_init"],
                ),
            )
        ]
        if early_stopping:
            callbacks.insert(
                0,
                (
                    "valid_score",
                    EpochScoring(
                        _net.epoch_scorer(self._validation_score),
                        lower_is_better=False,
                        name="valid_score",
                    ),
                ),
            )
        if config["verbose"] >= 2:
            callbacks.append(("progress_bar", ProgressBar()))
        train_split = (
            _net.ValidationSplit(
                config["validation_fraction"],
                stratified=is_classifier(self) and not self._multilabel,
                random_state=config["seed"],
            )
            if early_stopping
            else None
        )
        batch_size = config["batch_size"]
        # skorch builds the module from its class and keyword arguments: a module
        # instance would be pickled as a plain attribute, with its GPU tensors, and fail
        # to load on a machine without a GPU (skorch maps only ``module_`` to the CPU).
        return _net.GMNMNet(
            _net.StandardizedGMNMNetwork,
            module__x_mean=torch.as_tensor(config["x_mean"], dtype=dtype),
            module__x_scale=torch.as_tensor(config["x_scale"], dtype=dtype),
            module__n_outputs=config["n_outputs"],
            module__hidden_layer_sizes=config["hidden_layer_sizes"],
            module__n_components=config["n_components"],
            module__n_projections=config["n_projections"],
            module__embedding_dim=config["embedding_dim"],
            criterion=self._criterion(),
            optimizer=torch.optim.Adam,
            optimizer__fused=_fused_adam(torch.device(device).type, dtype),
            lr=config["learning_rate_init"],
            max_epochs=config["max_iter"],
            batch_size=batch_size,
            iterator_train=_net.BatchIterator,
            iterator_train__shuffle=True,
            iterator_valid=_net.BatchIterator,
            iterator_valid__batch_size=_valid_batch_size(batch_size),
            train_split=train_split,
            callbacks=callbacks,
            predict_nonlinearity=None,
            device=device,
            verbose=config["verbose"],
        ).initialize()

    # --- persistence ------------------------------------------------------------------

    def __getstate__(self):
        """Plain state: parameters, fitted attributes, and the trained network as numpy
        arrays and built-in types (no torch objects), so that pickle, joblib and
        :func:`skops.io.dump` can all save it and a GPU-trained model loads anywhere."""
        state = dict(super().__getstate__())  # a copy: never change the live object
        net = state.pop("net_", None)
        if net is not None:
            state["_network_state"] = _persistence.export_network(net)
        return state

    def __setstate__(self, state):
        network = state.pop("_network_state", None)
        super().__setstate__(state)
        if network is not None:
            self.net_ = _persistence.import_network(self, network)

    def _record_history(self, incremental, n_iter_before):
        history = self.net_.history
        self.loss_curve_ = [float(epoch["train_loss"]) for epoch in history]
        self.n_iter_ = len(history)
        self.t_ = int(
            sum(
                b.get("train_batch_size", 0)
                for epoch in history
                for b in epoch["batches"]
            )
        )
        self.best_loss_ = None if self.early_stopping else float(min(self.loss_curve_))
        if self.early_stopping and not incremental:
            # a warm start may follow a fit without early stopping
            self.validation_scores_ = [
                float(epoch["valid_score"])
                for epoch in history
                if "valid_score" in epoch
            ]
            self.best_validation_score_ = float(max(self.validation_scores_))
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
        convergence = dict(self.net_.callbacks_)["convergence"]
        ran = self.n_iter_ - n_iter_before
        if not incremental and ran == self.max_iter and not convergence.converged_:
            _net.warn_not_converged(self.max_iter)

    def gaussians(self):
        """The first GMNM layer's Gaussians in the units of the input features.

        The estimator standardises X and may pass it through a learnt linear embedding
        before the Gaussians; both are undone here, so that Gaussian i responds to an input
        row x as ``exp(-0.5 * (x - centers[i]) @ precisions[i] @ (x - centers[i]))``.

        Returns
        -------
        gaussians : dict of numpy arrays
            ``'centers'`` (m, n_features_in_): the centres, in input units. Through an
            embedding, or with fewer projections than features, a Gaussian is a ridge
            whose centre is defined only up to the directions it ignores; the centre
            nearest the training mean is given.
            ``'projections'`` (m, k, n_features_in_): the rows of ``B_i`` with
            ``precisions[i] = B_i.T @ B_i``.
            ``'precisions'`` (m, n_features_in_, n_features_in_): positive
            semi-definite, of rank at most k.
            ``'widths'`` (m, k): the width (one standard deviation) along each
            projection direction, in input units: ``1 / norm(B_i[j])``.
            ``'mixture_weights'`` (n_outputs, m): the weights of the Gaussians in the
            output. For a regressor with one GMNM layer they are in target units (the
            internal target scaling undone); for a classifier they weigh the logits;
            with hidden layers they feed the next layer. ``'bias'`` likewise.
            ``'space'``: a sentence that says what is shown.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_gmnm import GMNMRegressor
        >>> X = np.random.default_rng(0).uniform(0, 100, size=(200, 2))
        >>> y = np.exp(-((X[:, 0] - 30) ** 2) / 200)
        >>> est = GMNMRegressor(n_components=4, max_iter=5, random_state=0).fit(X, y)
        >>> est.gaussians()["centers"].shape
        (4, 2)
        """
        check_is_fitted(self, "net_")
        module = self.net_.module_
        body = module.body
        layer = body.layers[0]
        with torch.no_grad():
            g = layer.gaussians()
            A = g["projections"].cpu().double()  # (m, k, e): in the layer's input space
            mu = g["centers"].cpu().double()  # (m, e)
            scale = module.x_scale.cpu().double()  # (d,)
            mean = module.x_mean.cpu().double()  # (d,)
            if body.embedding is not None:
                E = body.embedding.weight.cpu().double()  # (e, d)
                e = body.embedding.bias.cpu().double()  # (e,)
            else:
                E = torch.eye(len(mean), dtype=torch.float64)
                e = torch.zeros(len(mean), dtype=torch.float64)
            # A (E (x - mean) / scale + e - mu) = B (x - c) with B = A E / scale:
            B = A @ E / scale  # (m, k, d)
            offset = A @ (e - E @ (mean / scale) - mu).unsqueeze(-1)  # (m, k, 1)
            # c: the solution of B c = -offset nearest the training mean
            residual = -offset - B @ mean.unsqueeze(-1)  # (m, k, 1)
            centers = mean + (torch.linalg.pinv(B) @ residual).squeeze(-1)  # (m, d)
            precisions = B.transpose(1, 2) @ B
            widths = 1.0 / B.norm(dim=-1).clamp_min(1e-300)  # (m, k)
            weights = g["mixture_weights"].cpu().double()
            bias = (
                layer.bias.detach().cpu().double()
                if layer.bias is not None
                else torch.zeros(weights.shape[0], dtype=torch.float64)
            )
        space = "input features, in their own units"
        if body.embedding is not None:
            space += (
                f"; the Gaussians live in a learnt {body.embedding.out_features}-"
                "dimensional embedding and are shown pulled back to the inputs (ridges: "
                "centres nearest the training mean)"
            )
        weights, bias = weights.numpy(), bias.numpy()
        if is_regressor(self) and len(body.layers) == 1:
            weights = weights * self._y_scale.reshape(-1, 1)
            bias = bias * self._y_scale + self._y_mean
            space += "; mixture weights and bias in target units"
        return {
            "centers": centers.numpy(),
            "projections": B.numpy(),
            "precisions": precisions.numpy(),
            "widths": widths.numpy(),
            "mixture_weights": weights,
            "bias": bias,
            "space": space,
        }

    def __sklearn_is_fitted__(self):
        return hasattr(self, "net_")

    @property
    def module_(self):
        """The trained torch module (``net_.module_``)."""
        check_is_fitted(self, "net_")
        return self.net_.module_

    def _forward(self, X):
        """Raw network outputs for X, in batches, as a float64 numpy array."""
        check_is_fitted(self, "net_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        if not X.flags.writeable:
            X = X.copy()
        module = self.net_.module_
        dtype = module.x_mean.dtype
        device = module.x_mean.device
        module.eval()
        step = PREDICT_BATCH_SIZE["cpu" if device.type == "cpu" else "other"]
        output = None
        with torch.no_grad():
            for start in range(0, len(X), step):
                batch = torch.as_tensor(X[start : start + step], dtype=dtype)
                block = module(batch.to(device)).cpu().numpy()
                if output is None:
                    # One array for all rows, filled block by block. Keeping each
                    # block's small output alive between the blocks' large temporaries
                    # fragments the heap: memory then grew with the rows (1 GB at 1M).
                    output = np.empty((len(X), block.shape[1]), dtype=np.float64)
                output[start : start + len(block)] = block
        return output

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags


class GMNMRegressor(RegressorMixin, BaseGMNM):
    """Regression with a Gaussian Mixture-Inspired Nonlinear Module network.

    A network of GMNM layers (arXiv 2510.06660): each maps its input through
    ``n_components`` Gaussian basis functions with learnt centres and low-rank precision
    matrices, mixed by unconstrained weights. Inputs and targets are standardised inside
    the estimator; training is Adam through skorch, with scikit-learn MLP's stopping
    rules. Parameter names follow :class:`~sklearn.neural_network.MLPRegressor`.

    The defaults (one layer of 128 rank-one Gaussians on the standardised inputs, Adam
    at 3e-4, alpha=1e-3) were chosen on the whole table of development datasets by
    ``benchmarks/tune_defaults.py``, never per dataset: a successive-halving search,
    then one knob at a time around its choice; see
    ``benchmarks/results/tune_defaults.md`` and ``tune_defaults_refine.md``.

    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default=()
        Widths of hidden GMNM layers; ``()`` is one GMNM layer from inputs to outputs.
    n_components : int, default=128
        Gaussians per GMNM layer.
    n_projections : int, default=1
        Projections per Gaussian (rank of its precision matrix).
    embedding_dim : int or None, default=None
        If set, a learnt linear map to this many dimensions (orthogonal at the start)
        comes before the Gaussians; None feeds the inputs to them directly. Each
        Gaussian then costs ``2 * n_features`` parameters: on tables with hundreds of
        features, an embedding (16 or 32) makes fitting faster.
    init : {'data', 'random'}, default='data'
        ``'data'`` places the first layer's Gaussians on the (standardised) training
        data by weighted k-means; ``'random'`` draws them as for standard normal data.
    standardize : bool, default=True
        Standardise the inputs (weighted by ``sample_weight``) inside the network.
        Targets are always standardised internally. Turn this off only if X is already
        scaled, for instance by a ``StandardScaler`` earlier in a pipeline.
    alpha : float, default=1e-3
        Strength of the L2 penalty on weight matrices, as in ``MLPRegressor``.
    batch_size : int or 'auto', default='auto'
        Mini-batch size; ``'auto'`` is ``min(200, n_samples)``.
    learning_rate_init : float, default=3e-4
        Adam's learning rate. Too large a rate makes the fit diverge: a NaN or
        infinite training loss raises :class:`~sklearn_gmnm.DivergenceError`; a call
        of ``fit`` that ends worse than it started, or whose loss spikes and ends no
        better than a constant prediction, warns with
        :class:`~sklearn_gmnm.DivergenceWarning`.
    max_iter : int, default=200
        Maximum number of epochs.
    tol : float, default=1e-4
        Minimum improvement of the loss (or validation score) that counts.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data and stop when the validation R^2
        stops improving; the best epoch's weights are kept.
    validation_fraction : float, default=0.1
        Fraction of the training data held out for early stopping.
    n_iter_no_change : int, default=10
        Epochs without an improvement of ``tol`` before training stops.
    warm_start : bool, default=False
        Continue from the previous fit's weights (and Adam's state) instead of
        starting afresh. The parameters that shape the network (``hidden_layer_sizes``,
        ``n_components``, ``n_projections``, ``embedding_dim``, ``standardize``) must
        stay as they were, or fit raises a ValueError; training parameters
        (``learning_rate_init``, ``batch_size``, ``max_iter``, ``early_stopping``,
        ``tol``, ...) take their current values.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and the validation split. An int gives
        identical predictions on the CPU fit after fit.
    verbose : int, default=0
        0 prints nothing; 1 prints an epoch log; 2 adds a progress bar per epoch.
    device : str, default='cpu'
        Torch device: ``'cpu'``, ``'cuda'``, ``'cuda:1'``, or ``'auto'`` (CUDA when
        available). Computations use the dtype of X: float64, or float32 when X is
        float32 (faster, especially on GPUs).

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained skorch net.
    module_ : torch.nn.Module
        The trained network (``net_.module_``).
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen.
    loss_curve_ : list of float
        Training loss per epoch (mean squared error on standardised targets, plus the
        L2 penalty).
    best_loss_ : float or None
        Lowest training loss; None with ``early_stopping=True``.
    validation_scores_ : list of float or None
        Validation R^2 per epoch with ``early_stopping=True``; else None.
    best_validation_score_ : float or None
        Best validation R^2 with ``early_stopping=True``; else None.
    n_outputs_ : int
        Number of targets.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    GMNMClassifier : The classifier.
    sklearn.neural_network.MLPRegressor : The multi-layer perceptron it mirrors.
    sklearn_gmnm.nn.GMNM : The torch layer.

    References
    ----------
    W. Lu, G. Yuan, H.-k. Zhang, S. Li. "Rethinking Nonlinearity: Trainable Gaussian
    Mixture Modules for Modern Neural Architectures." arXiv:2510.06660, 2025.

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sklearn_gmnm import GMNMRegressor
    >>> X, y = make_friedman1(n_samples=300, random_state=0)
    >>> reg = GMNMRegressor(random_state=0).fit(X[:200], y[:200])
    >>> reg.predict(X[200:]).shape
    (100,)
    >>> round(reg.score(X[200:], y[200:]), 1) > 0.5
    True
    """

    def _encode_targets(self, y, sample_weight, dtype, *, first_call, classes=None):
        y = np.asarray(y)
        y2d = y.reshape(-1, 1) if y.ndim == 1 else y
        if first_call:  # standardise with the same weights the loss uses
            self._y_ndim = y.ndim
            self.n_outputs_ = y2d.shape[1]
            self._y_mean = np.average(y2d, axis=0, weights=sample_weight)
            variance = np.average(
                (y2d - self._y_mean) ** 2, axis=0, weights=sample_weight
            )
            self._y_scale = np.where(variance > 0, np.sqrt(variance), 1.0)
        elif y2d.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y2d.shape[1]} outputs, but the estimator was fitted with "
                f"{self.n_outputs_}."
            )
        return torch.as_tensor((y2d - self._y_mean) / self._y_scale, dtype=dtype)

    def _criterion(self):
        return torch.nn.MSELoss(reduction="none")

    def _constant_output(self, y, sample_weight, dtype):
        return _weighted_mean(y, sample_weight, dtype).expand(len(y), -1)

    def _validation_score(self, y_true, output):
        return r2_score(y_true, output)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data X and targets y.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Numeric inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights; an integer weight acts as repeated rows.

        Returns
        -------
        self : GMNMRegressor
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch on (X, y), continuing from the current weights.

        The first call sets the input and target standardisation from its data. Later
        calls take the current training parameters (``learning_rate_init``,
        ``batch_size``, ...); the network's shape must stay as it was (see
        ``warm_start``).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : GMNMRegressor
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predict targets for X.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        output = self._forward(X) * self._y_scale + self._y_mean
        return output.ravel() if self._y_ndim == 1 else output

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class GMNMClassifier(ClassifierMixin, BaseGMNM):
    """Classification with a Gaussian Mixture-Inspired Nonlinear Module network.

    A network of GMNM layers (arXiv 2510.06660) that outputs one logit per class
    (softmax and cross-entropy), or one per label for multilabel targets (sigmoid and
    binary cross-entropy). Inputs are standardised inside the estimator; training is
    Adam through skorch, with scikit-learn MLP's stopping rules. Parameter names follow
    :class:`~sklearn.neural_network.MLPClassifier`.

    The defaults were chosen on the development datasets by
    ``benchmarks/tune_defaults.py`` (see :class:`GMNMRegressor`).

    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default=()
        Widths of hidden GMNM layers; ``()`` is one GMNM layer from inputs to logits.
    n_components : int, default=128
        Gaussians per GMNM layer.
    n_projections : int, default=1
        Projections per Gaussian (rank of its precision matrix).
    embedding_dim : int or None, default=None
        If set, a learnt linear map to this many dimensions (orthogonal at the start)
        comes before the Gaussians; None feeds the inputs to them directly. Each
        Gaussian then costs ``2 * n_features`` parameters: on tables with hundreds of
        features, an embedding (16 or 32) makes fitting faster.
    init : {'data', 'random'}, default='data'
        ``'data'`` places the first layer's Gaussians on the (standardised) training
        data by weighted k-means; ``'random'`` draws them as for standard normal data.
    standardize : bool, default=True
        Standardise the inputs (weighted by ``sample_weight``) inside the network.
    alpha : float, default=1e-3
        Strength of the L2 penalty on weight matrices, as in ``MLPClassifier``.
    batch_size : int or 'auto', default='auto'
        Mini-batch size; ``'auto'`` is ``min(200, n_samples)``.
    learning_rate_init : float, default=3e-4
        Adam's learning rate. Too large a rate makes the fit diverge: a NaN or
        infinite training loss raises :class:`~sklearn_gmnm.DivergenceError`; a call
        of ``fit`` that ends worse than it started, or whose loss spikes and ends no
        better than a constant prediction, warns with
        :class:`~sklearn_gmnm.DivergenceWarning`.
    max_iter : int, default=200
        Maximum number of epochs.
    tol : float, default=1e-4
        Minimum improvement of the loss (or validation score) that counts.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified) and stop when the
        validation accuracy stops improving; the best epoch's weights are kept.
    validation_fraction : float, default=0.1
        Fraction of the training data held out for early stopping.
    n_iter_no_change : int, default=10
        Epochs without an improvement of ``tol`` before training stops.
    warm_start : bool, default=False
        Continue from the previous fit's weights (and Adam's state) instead of
        starting afresh. The parameters that shape the network (``hidden_layer_sizes``,
        ``n_components``, ``n_projections``, ``embedding_dim``, ``standardize``) must
        stay as they were, or fit raises a ValueError; training parameters
        (``learning_rate_init``, ``batch_size``, ``max_iter``, ``early_stopping``,
        ``tol``, ...) take their current values.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and the validation split.
    verbose : int, default=0
        0 prints nothing; 1 prints an epoch log; 2 adds a progress bar per epoch.
    device : str, default='cpu'
        Torch device: ``'cpu'``, ``'cuda'``, ``'cuda:1'``, or ``'auto'``.
    class_weight : dict, 'balanced' or None, default=None
        Weights per class, multiplied into ``sample_weight``; ``'balanced'`` weights
        classes inversely to their frequency in the data that ``fit`` is given (not
        available to ``partial_fit``, which sees one chunk at a time: pass a dict).
        Not available for multilabel targets.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels; for a multilabel indicator y, the label indices
        ``0 .. n_labels - 1``, as in ``MLPClassifier``.
    net_ : skorch.NeuralNet
        The trained skorch net.
    module_ : torch.nn.Module
        The trained network.
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen.
    loss_curve_ : list of float
        Training loss (cross-entropy plus L2 penalty) per epoch.
    best_loss_ : float or None
        Lowest training loss; None with ``early_stopping=True``.
    validation_scores_ : list of float or None
        Validation accuracy per epoch with ``early_stopping=True``; else None.
    best_validation_score_ : float or None
        Best validation accuracy with ``early_stopping=True``; else None.
    n_outputs_ : int
        Number of network outputs (classes, or labels).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    GMNMRegressor : The regressor.
    sklearn.neural_network.MLPClassifier : The multi-layer perceptron it mirrors.

    References
    ----------
    W. Lu, G. Yuan, H.-k. Zhang, S. Li. "Rethinking Nonlinearity: Trainable Gaussian
    Mixture Modules for Modern Neural Architectures." arXiv:2510.06660, 2025.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_gmnm import GMNMClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = GMNMClassifier(random_state=0).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    >>> clf.predict_proba(X[:1]).shape
    (1, 3)
    >>> clf.score(X, y) > 0.9
    True
    """

    _parameter_constraints: dict = {
        **BaseGMNM._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        hidden_layer_sizes=(),
        *,
        n_components=128,
        n_projections=1,
        embedding_dim=None,
        init="data",
        standardize=True,
        alpha=1e-3,
        batch_size="auto",
        learning_rate_init=3e-4,
        max_iter=200,
        tol=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        warm_start=False,
        random_state=None,
        verbose=0,
        device="cpu",
        class_weight=None,
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            n_components=n_components,
            n_projections=n_projections,
            embedding_dim=embedding_dim,
            init=init,
            standardize=standardize,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate_init=learning_rate_init,
            max_iter=max_iter,
            tol=tol,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            warm_start=warm_start,
            random_state=random_state,
            verbose=verbose,
            device=device,
        )
        self.class_weight = class_weight

    def _encode_targets(self, y, sample_weight, dtype, *, first_call, classes=None):
        check_classification_targets(y)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:  # a column vector: warn, as MLPClassifier
            y = column_or_1d(y, warn=True)
        kind = type_of_target(y)
        multilabel = kind == "multilabel-indicator"
        if first_call:
            self._multilabel = multilabel
            if multilabel:
                self._label_binarizer = LabelBinarizer().fit(y)
                self.classes_ = self._label_binarizer.classes_
                self.n_outputs_ = y.shape[1]
            else:
                if np.asarray(y).ndim > 1:
                    y = np.asarray(y).ravel()
                encoder = LabelEncoder().fit(y if classes is None else classes)
                if (
                    classes is not None
                    and not np.isin(np.unique(y), encoder.classes_).all()
                ):
                    raise ValueError(
                        f"y has labels {np.setdiff1d(np.unique(y), encoder.classes_)} "
                        f"that are not in classes={list(encoder.classes_)}."
                    )
                if len(encoder.classes_) < 2:
                    raise ValueError(
                        "The classifier needs samples of at least 2 classes in the data, "
                        f"but the data contain only one class: {encoder.classes_[0]!r}."
                    )
                self._label_encoder = encoder
                self.classes_ = encoder.classes_
                self.n_outputs_ = len(self.classes_)
        elif multilabel != self._multilabel:
            raise ValueError(
                "y is multilabel, but the estimator was fitted on single-label y, or the "
                "other way round."
            )
        if multilabel:
            return torch.as_tensor(np.asarray(y), dtype=dtype)
        y = np.asarray(y).ravel() if np.asarray(y).ndim > 1 else y
        unseen = np.setdiff1d(np.unique(y), self.classes_)
        if len(unseen):
            raise ValueError(
                f"y contains labels {list(unseen)} that the estimator was not fitted "
                f"with (classes_={list(self.classes_)}). Pass every class to the first "
                "partial_fit call with classes=."
            )
        return torch.as_tensor(self._label_encoder.transform(y), dtype=torch.long)

    def _extra_sample_weight(self, y, sample_weight):
        if self.class_weight is None:
            return sample_weight
        if self._multilabel:
            raise ValueError("class_weight is not supported for multilabel targets.")
        y = np.asarray(y).ravel() if np.asarray(y).ndim > 1 else y
        return sample_weight * compute_sample_weight(self.class_weight, y)

    def _criterion(self):
        if self._multilabel:
            return torch.nn.BCEWithLogitsLoss(reduction="none")
        return torch.nn.CrossEntropyLoss(reduction="none")

    def _constant_output(self, y, sample_weight, dtype):
        # the labels' or classes' weighted frequencies, as logits
        if not self._multilabel:
            y = torch.nn.functional.one_hot(y, len(self.classes_))
        frequency = _weighted_mean(y, sample_weight, dtype)
        frequency = frequency.clamp(torch.finfo(dtype).tiny, 1 - torch.finfo(dtype).eps)
        logits = torch.logit(frequency) if self._multilabel else frequency.log()
        return logits.expand(len(y), -1)

    def _validation_score(self, y_true, output):
        if self._multilabel:
            return accuracy_score(y_true, (output > 0).astype(int))
        return accuracy_score(y_true, output.argmax(axis=1))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data X and labels y.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Numeric inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels of any type, or a multilabel indicator matrix.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights; an integer weight acts as repeated rows.

        Returns
        -------
        self : GMNMClassifier
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch on (X, y), continuing from the current weights.

        Later calls take the current training parameters (``learning_rate_init``,
        ``batch_size``, ...); the network's shape must stay as it was (see
        ``warm_start``).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        classes : array-like of shape (n_classes,), default=None
            Every class that can occur; required on the first call (unless y is a
            multilabel indicator matrix), ignored afterwards.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : GMNMClassifier
        """
        if (
            not hasattr(self, "net_")
            and classes is None
            and type_of_target(y) != ("multilabel-indicator")
        ):
            raise ValueError(
                "classes must be passed on the first call to partial_fit: every label "
                "that y can take, e.g. classes=np.unique(y_all)."
            )
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            # each call sees one chunk: its class frequencies are not the data's
            raise ValueError(
                "class_weight='balanced' is not supported by partial_fit: each call "
                "sees one chunk, whose class frequencies are not the data's. Pass "
                "class_weight=dict(zip(classes, compute_class_weight('balanced', "
                "classes=classes, y=y))) computed on enough of the data's labels "
                "(sklearn.utils.class_weight.compute_class_weight), as for "
                "SGDClassifier."
            )
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities for X.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes) or (n_samples, n_labels)
            Softmax of the logits; for multilabel targets, each label's sigmoid.
        """
        logits = torch.as_tensor(self._forward(X))
        if self._multilabel:
            return torch.sigmoid(logits).numpy()
        return torch.softmax(logits, dim=1).numpy()

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably from the logits."""
        logits = torch.as_tensor(self._forward(X))
        if self._multilabel:
            return torch.nn.functional.logsigmoid(logits).numpy()
        return torch.log_softmax(logits, dim=1).numpy()

    def predict(self, X):
        """Predict class labels for X.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_labels)
        """
        logits = self._forward(X)
        if self._multilabel:
            return (logits > 0).astype(int)
        return self.classes_[logits.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
