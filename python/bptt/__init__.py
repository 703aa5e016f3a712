"""bptt: recurrent networks trained by exact backpropagation through time, on NumPy arrays.

The C++ engine of the `bptt` command (Elman, LSTM and GRU; stacked, bidirectional, projected,
bias-free, learned initial states) called directly: exact gradients by five methods, streaming
inference, the diagnostics and the trainer. Arrays are time-major, [T, B, ...], as everywhere in
bptt; float32 and float64 C-contiguous arrays are used as they are, others are converted once;
results are NumPy arrays in the model's dtype. Every bad argument raises bptt.Error (a
ValueError) with the command's one-line message and a .kind. docs/python.md has the details.

    import bptt
    m = bptt.Model(cell="lstm", input_size=8, hidden_size=32, output_size=2, dtype="f64")
    y_hat, h_n, c_n = m.predict(x)               # x [T, B, 8]
    loss, grads = m.grad(x, y, loss="mse")       # grads["rnn.weight_hh_l0"], grads["x"], ...
"""

import json as _json
import numbers as _numbers
import os as _os

from . import _bptt
from ._bptt import Error, Stream, __version__

__all__ = ["Model", "Stream", "Error", "load", "train", "explain", "__version__"]


def _fail(kind, where, what, hint=""):
    _bptt._raise(kind, where, what, hint)


def _no_unknown(where, unknown, allowed):
    if unknown:
        name = sorted(unknown)[0]
        _fail("usage", where, "unknown keyword '%s'" % name,
              "the keywords are " + ", ".join(allowed))


def _str(where, name, value):
    if not isinstance(value, str):
        _fail("usage", "%s: %s" % (where, name),
              "must be a string, not %s" % type(value).__name__)
    return value


def _int(where, name, value):
    if isinstance(value, bool) or not isinstance(value, _numbers.Integral):
        _fail("usage", "%s: %s" % (where, name),
              "must be an integer, not %s" % type(value).__name__)
    value = int(value)
    if not -2**31 < value < 2**31:
        _fail("value", "%s: %s" % (where, name), "%d is out of range" % value)
    return value


def _seed(where, value):
    if isinstance(value, bool) or not isinstance(value, _numbers.Integral) or not 0 <= value < 2**64:
        _fail("value", "%s: seed" % where, "must be an integer in [0, 2^64), not %r" % (value,))
    return int(value)


def _bool(where, name, value):
    if not isinstance(value, (bool, _numbers.Integral)) or value not in (0, 1):
        _fail("usage", "%s: %s" % (where, name), "must be True or False, not %r" % (value,))
    return bool(value)


def _float(where, name, value):
    if isinstance(value, bool) or not isinstance(value, _numbers.Real):
        _fail("usage", "%s: %s" % (where, name),
              "must be a number, not %s" % type(value).__name__)
    return float(value)


def _path(where, name, value):
    if not isinstance(value, (str, _os.PathLike)):
        _fail("usage", "%s: %s" % (where, name),
              "must be a path (str or os.PathLike), not %s" % type(value).__name__)
    path = _os.fspath(value)
    if not isinstance(path, str) or not path:
        _fail("usage", "%s: %s" % (where, name), "must be a non-empty path")
    return _os.fsencode(path)  # the file system's bytes, whatever their encoding


def _array(value):
    """An array argument: torch tensors are detached first; the engine takes the rest."""
    if value is not None and hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    return value


def _masks(where, value):
    """masks={name: array} with the arrays taken as _array takes them."""
    if value is None:
        return None
    if not isinstance(value, dict):
        _fail("usage", "%s: masks" % where, "is a %s, not a dict" % type(value).__name__,
              "pass {name: array} with a data file's names (mask_input, ...)")
    return {str(k): _array(v) for k, v in value.items()}


class Model:
    """A recurrent network: torch.nn.RNN/LSTM/GRU with a Linear head, in float32 or float64.

    dtype: "f32", "f64", or "bf16" (float32 parameters and arrays, and every matrix product
    with bfloat16 operands and float accumulation, docs/conventions.md).

    Construct one (initialised as PyTorch does, from `seed`), or bptt.load() a file. The
    keywords mirror torch.nn (input_size, hidden_size, num_layers, nonlinearity, bias,
    bidirectional, proj_size) and bptt's model file (docs/file_format.md); layer_norm=True
    gives layer-normalized cells (docs/math.md, section 8d; tools/fixtures/regularized_rnn.py
    is their PyTorch twin); zoneout_h, zoneout_c are zoneout's probabilities, which a pass
    without flags uses as their expectation (evaluation).
    """

    _KEYWORDS = ("cell", "input_size", "hidden_size", "num_layers", "output_size",
                 "output_activation", "nonlinearity", "bidirectional", "proj_size", "bias",
                 "initial_state", "dtype", "seed", "readout", "head", "forget_bias",
                 "layer_norm", "zoneout_h", "zoneout_c")

    def __init__(self, cell="lstm", input_size=None, hidden_size=None, num_layers=1,
                 output_size=None, output_activation="identity", nonlinearity="tanh",
                 bidirectional=False, proj_size=0, bias=True, initial_state="zero",
                 dtype="f32", seed=1, *, readout="steps", head=True, forget_bias=0.0,
                 layer_norm=False, zoneout_h=0.0, zoneout_c=0.0, **unknown):
        w = "Model"
        _no_unknown(w, unknown, self._KEYWORDS)
        if input_size is None or hidden_size is None:
            _fail("usage", "%s: %s" % (w, "input_size" if input_size is None else "hidden_size"),
                  "is required")
        head = _bool(w, "head", head)
        bidirectional = _bool(w, "bidirectional", bidirectional)
        hidden_size = _int(w, "hidden_size", hidden_size)
        proj_size = _int(w, "proj_size", proj_size)
        if output_size is None:
            if head:
                _fail("usage", "%s: output_size" % w, "is required",
                      "or pass head=False for the top layer's output itself")
            output_size = (2 if bidirectional else 1) * (proj_size or hidden_size)
        self._m = _bptt._new_model(
            _str(w, "cell", cell), _int(w, "input_size", input_size), hidden_size,
            _int(w, "num_layers", num_layers), _int(w, "output_size", output_size),
            _str(w, "output_activation", output_activation),
            _str(w, "nonlinearity", nonlinearity), bidirectional, proj_size,
            _bool(w, "bias", bias), _str(w, "initial_state", initial_state),
            _str(w, "readout", readout), head, _str(w, "dtype", dtype), _seed(w, seed),
            _float(w, "forget_bias", forget_bias), _bool(w, "layer_norm", layer_norm),
            _float(w, "zoneout_h", zoneout_h), _float(w, "zoneout_c", zoneout_c))

    @classmethod
    def _wrap(cls, core):
        model = cls.__new__(cls)
        model._m = core
        return model

    # -- the model ------------------------------------------------------------------------

    @property
    def config(self):
        """The model file's metadata keys, typed: the configuration's ints, bools and strs,
        and the training task's keys (task, vocab, ...) as strs."""
        return self._m.config

    @property
    def metadata(self):
        """What the training task stored beside the network (vocabulary, normalisation, ...)."""
        return self._m.metadata

    @property
    def dtype(self):
        """'f32' or 'f64': the precision of the parameters, the computations and the results."""
        return self._m.dtype

    @property
    def param_count(self):
        return self._m.param_count

    def __repr__(self):
        c = self.config
        return ("bptt.Model(cell=%r, input_size=%d, hidden_size=%d, num_layers=%d, "
                "output_size=%d, bidirectional=%r, proj_size=%d, bias=%r, dtype=%r)" %
                (c["cell"], c["input_size"], c["hidden_size"], c["num_layers"],
                 c["output_size"], c["bidirectional"], c["proj_size"], c["bias"], self.dtype))

    def save(self, path):
        """Writes the model file (safetensors; PyTorch's load_state_dict takes its tensors)."""
        self._m.save(_path("save", "path", path))

    def state_dict(self):
        """{PyTorch name: numpy array}: copies of the parameters, torch.nn's names and shapes."""
        return self._m.state_dict()

    def load_state_dict(self, state_dict):
        """Sets every parameter from {name: array} (numpy arrays, torch tensors, lists).

        Strict, as torch's strict=True: every tensor of state_dict() must be there with its
        shape, and nothing else. Values must be finite.
        """
        if not hasattr(state_dict, "items"):
            _fail("usage", "load_state_dict", "needs a mapping of names to arrays, not %s" %
                  type(state_dict).__name__)
        self._m.load_state_dict({str(k): _array(v) for k, v in state_dict.items()})

    # -- computations ----------------------------------------------------------------------

    def predict(self, x, lengths=None, h0=None, c0=None, *, masks=None, threads=1, **unknown):
        """The forward pass: (y_hat [T, B, O], h_n [L·D, B, H_out], c_n [L·D, B, H] or None).

        lengths [B] (integers): each sequence's valid steps (h_n is the state at the last
        one); h0, c0: initial states (default: the model's, zeros or learned).
        masks: {name: array}, the training-mode dropout masks and zoneout flags of a data file
        (mask_input, mask_recurrent, mask_output, mask_weight_hh_l{k}, zoneout_h, zoneout_c;
        docs/file_format.md): the pass then runs under exactly these (default: evaluation).
        """
        _no_unknown("predict", unknown, ("x", "lengths", "h0", "c0", "masks", "threads"))
        return self._m.predict(_array(x), _array(lengths), _array(h0), _array(c0),
                               _masks("predict", masks), _int("predict", "threads", threads))

    def grad(self, x, y, loss="mse", mask=None, lengths=None, h0=None, c0=None,
             method="bptt", *, masks=None, threads=1, seed=1, **unknown):
        """The loss and its gradient: (loss, {name: dL/d(name)}).

        The names are every parameter's (state_dict()'s), "x" [T, B, I], "h0" [L·D, B, H_out]
        and, for LSTM, "c0" [L·D, B, H]: the tensors of `bptt grad`'s file.
        loss: "mse", "bce" (from logits) or "xent" (from logits; y [T, B] integer classes).
        method: "bptt", "recompute", "recompute:K", "truncated:K", "rtrl", "numeric", or one of
        the online approximations "uoro", "kf-rtrl", "snap1", "eprop" (docs/math.md 8e), which
        give the parameters' gradient only (no "x", "h0", "c0"); seed: their random signs'.
        masks: as predict's; mask is the loss's step weights [T, B], a different thing.
        """
        _no_unknown("grad", unknown, ("x", "y", "loss", "mask", "lengths", "h0", "c0",
                                      "method", "masks", "threads", "seed"))
        return self._m.grad(_array(x), _array(y), _str("grad", "loss", loss), _array(mask),
                            _array(lengths), _array(h0), _array(c0), _masks("grad", masks),
                            _str("grad", "method", method), _int("grad", "threads", threads),
                            _seed("grad", seed))

    def stream(self, n=1, *, threads=1, **unknown):
        """n sequences advanced one step per Stream.step call (bptt::Stream).

        The stream is a snapshot of the parameters: later changes to the model do not reach it.
        """
        _no_unknown("stream", unknown, ("n", "threads"))
        return _bptt._stream(self._m, _int("stream", "n", n), _int("stream", "threads", threads))

    def diagnose(self, x, y, loss="mse", mask=None, lengths=None, h0=None, c0=None, *,
                 probes=16, max_k=0, threads=1, methods=None, samples=8, seed=1, **unknown):
        """The numbers of `bptt diagnose --json`, as a dict (docs/diagnostics.md).

        methods: a list of gradient methods ("uoro", "kf-rtrl", "snap1", "eprop",
        "truncated:K", ...) gives instead `bptt diagnose --methods`'s document: each one's
        gradient against BPTT's (cosine, norm ratio, and over `samples` seeds from `seed` the
        bias and variance), per layer and tensor.
        """
        _no_unknown("diagnose", unknown, ("x", "y", "loss", "mask", "lengths", "h0", "c0",
                                          "probes", "max_k", "threads", "methods", "samples",
                                          "seed"))
        if methods is None:
            methods = []
        elif isinstance(methods, str):
            methods = [m for m in methods.split(",") if m]
        methods = [_str("diagnose", "methods", m) for m in methods]
        text = self._m.diagnose(_array(x), _array(y), _str("diagnose", "loss", loss),
                                _array(mask), _array(lengths), _array(h0), _array(c0),
                                _int("diagnose", "probes", probes),
                                _int("diagnose", "max_k", max_k),
                                _int("diagnose", "threads", threads), methods,
                                _int("diagnose", "samples", samples), _seed("diagnose", seed))
        return _json.loads(text)


def load(path, *, dtype=None, **unknown):
    """A model from a file: bptt's own, or a plain PyTorch state_dict saved with safetensors.

    dtype: "f32", "f64" or "bf16" (default: as the file stores it; a BF16 file reads as f32).
    """
    _no_unknown("load", unknown, ("path", "dtype"))
    return Model._wrap(_bptt._load(_path("load", "path", path),
                                   "" if dtype is None else _str("load", "dtype", dtype)))


def _verb_args(verb, options):
    """`bptt VERB` arguments from keywords: dashes for underscores; True gives a flag, False
    and None leave the option out; lists are comma-separated."""
    known = [n.replace("-", "_") for n in _bptt._verb_options(verb)]
    for key in options:
        if key not in known:
            import difflib
            close = difflib.get_close_matches(key, known, n=1)
            _fail("usage", verb, "unknown keyword '%s'" % key,
                  ("did you mean '%s'? " % close[0] if close else "") +
                  "the keywords are the options of `bptt %s --help`, dashes as underscores: %s"
                  % (verb, ", ".join(sorted(known))))
    args = [verb]
    for key in options:
        value = options[key]
        if value is None or value is False:
            continue
        option = "--" + key.replace("_", "-")
        if value is True:
            args.append(option)
            continue
        if isinstance(value, _os.PathLike):
            value = _os.fspath(value)
        if isinstance(value, (list, tuple)):
            value = ",".join(repr(float(v)) if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, float):
            value = repr(value)
        elif isinstance(value, _numbers.Number) or isinstance(value, str):
            value = str(value)
        else:
            _fail("usage", "%s: %s" % (verb, key),
                  "must be a string, number, bool or list, not %s" % type(value).__name__)
        if value == "":
            _fail("usage", "%s: %s" % (verb, key), "has an empty value")
        args.append(option + "=" + value)
    return [_os.fsencode(a) for a in args]  # paths among them reach the file system as given


def train(*, on_progress=None, **options):
    """Runs `bptt train` with every option as a keyword (dashes become underscores).

        history = bptt.train(out="m.safetensors", text="input.txt", hidden=256, layers=2,
                             time_budget=60, on_progress=print)

    Returns the metrics rows (dicts with step, elapsed_s, train_loss, val_loss, lr, grad_norm,
    throughput; val_loss None where the row was not evaluated), the rows of --metrics;
    on_progress is called with each as it is written (log_every=N for one every N steps).
    Ctrl-C stops after the current step: the snapshot is written if asked, the model evaluated
    and saved, then KeyboardInterrupt is raised. The engine runs without the GIL.
    """
    if on_progress is not None and not callable(on_progress):
        _fail("usage", "train: on_progress", "must be callable")
    return _bptt._train(_verb_args("train", options), on_progress)


def explain(**options):
    """The dict of `bptt explain --json`: BPTT in one scalar network, step by step.

    Keywords as the verb's options: w, v, h0, phi, theta, x, y (lists of numbers).
    """
    return _json.loads(_bptt._run_verb_output(_verb_args("explain", dict(options, json=True))))
