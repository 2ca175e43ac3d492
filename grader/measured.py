"""The measured models, run by the grader's own code.

After training, a model that is measured (REINFORCE's policy, the VAE's encoder and decoder)
leaves the submission's process as an architecture and weights only: the Keras config of a
model of built-in layers (`model.to_json()`) and `model.get_weights()`, both validated here
(`take`: size caps, finite float arrays). A measurement sandbox, the same bubblewrap sandbox as a
submission's but whose module is THIS file (it never imports the submission), rebuilds the model
with Keras' safe deserialization (a config is untrusted input: a Lambda or a custom layer is
refused with a message naming the layer) and answers the grader's questions with it:
`predict(handle, inputs)` runs the model on each row on its own (`tf.vectorized_map`), so an
answer cannot depend on the rest of the batch, on earlier calls or on anything but the
architecture and the weights.

    with Measurement(ctx, "the policy (Agent.policy)") as measure:
        handle = measure.rebuild(config, weights)
        measure.matches(handle, probes, expected)       # the trained model's answers
        probs = measure.predict(handle, states)

The functions at the end (`rebuild`, `predict`) are the child's side: this file is also the
module the measurement sandbox imports by name, with nothing of the repository around it.
"""

import json

import numpy as np

MAX_CONFIG_CHARS = 256 << 10  # a model's Keras config (JSON)
MAX_WEIGHTS_MB = 128  # its weights, all arrays together
MAX_ARRAYS = 10_000
MODEL_CLASSES = ("Functional", "Sequential")
TOLERANCE = 1e-3  # the rebuilt model's answers vs the trained model's, relative to their scale

if __package__:  # the grader's side (in the measurement sandbox this file is a plain module)
    import re
    from pathlib import Path

    from .answers import expect_array, expect_handle
    from .sandbox import Sandbox, SubmissionError

    SOURCE = Path(__file__).read_bytes()

    def take(sandbox, model, name, max_mb=MAX_WEIGHTS_MB):
        """(config, weights) of the keras.Model behind the handle `model` in the submission's
        sandbox, validated: a JSON string of at most MAX_CONFIG_CHARS, a list of finite float
        arrays of at most `max_mb` MiB in all."""
        model = expect_handle(model, name)
        config = sandbox.call(model.method("to_json"), phase=f"{name}.to_json()")
        if not isinstance(config, str) or not config or len(config) > MAX_CONFIG_CHARS:
            what = f"{len(config):,} characters" if isinstance(config, str) else type(config).__name__
            raise SubmissionError(
                "invalid",
                f"{name}.to_json() gave {what}, expected the JSON of a keras.Model of "
                f"built-in layers (at most {MAX_CONFIG_CHARS:,} characters)",
            )
        weights = sandbox.call(model.method("get_weights"), phase=f"{name}.get_weights()")
        return config, expect_weights(weights, f"{name}.get_weights()", max_mb)

    def expect_weights(answer, name, max_mb=MAX_WEIGHTS_MB):
        """A list of finite float arrays, at most `max_mb` MiB in all."""
        if not isinstance(answer, (list, tuple)) or len(answer) > MAX_ARRAYS:
            raise SubmissionError(
                "invalid",
                f"{name} returned {type(answer).__name__}, expected a list of numpy arrays (keras.Model's get_weights)",
            )
        for i, array in enumerate(answer):
            if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
                what = f"an array of dtype {array.dtype}" if isinstance(array, np.ndarray) else type(array).__name__
                raise SubmissionError("invalid", f"{name}[{i}] is {what}, expected a float array")
        total = sum(array.nbytes for array in answer)
        if total > max_mb << 20:
            raise SubmissionError(
                "invalid", f"{name} holds {total / 2**20:.0f} MiB, more than the {max_mb} MiB a model may have"
            )
        for i, array in enumerate(answer):
            if not np.all(np.isfinite(array)):
                raise SubmissionError(
                    "invalid", f"{name}[{i}] has non-finite values (NaN or infinity)", cause="the training diverged"
                )
        return list(answer)

    class Measurement:
        """A sandbox that runs this module (never the submission) to rebuild and run models."""

        def __init__(self, ctx, name):
            self.name, self.ctx = name, ctx
            self.sandbox = Sandbox(
                SOURCE,
                "measured",
                ctx.limits,
                ctx.device_requested,
                tensorflow=True,
                isolation=ctx.isolation,
                display_name="the grader's measurement",
            )

        def __enter__(self):
            self._running = self.ctx.measuring(self.sandbox)
            self._running.__enter__()
            return self

        def __exit__(self, *exc):
            return self._running.__exit__(*exc)

        def rebuild(self, config, weights):
            """A handle of the model rebuilt from `config` and `weights` (see `take`)."""
            try:
                return expect_handle(
                    self.sandbox.call("rebuild", config, weights, phase=f"rebuilding {self.name}"), "rebuild"
                )
            except SubmissionError as failure:
                if failure.kind != "exception":
                    raise
                reason = failure.message.removeprefix("raised ").split(" during rebuilding")[0]
                reason = re.sub(r" \(line \d+, in \w+\)$", "", reason.removeprefix("ValueError: "))
                raise SubmissionError(
                    "invalid",
                    f"{self.name} cannot be rebuilt from its Keras config and "
                    f"weights by the grader: {reason}. The measured model must be a "
                    "keras.Model of built-in layers and activations (no Lambda, no "
                    "custom layer or model class)",
                ) from None

        def predict(self, handle, inputs, outputs=1):
            """The rebuilt model's answers for `inputs`, each row on its own: an array, or a
            list of `outputs` arrays for a model with several outputs."""
            answer = self.sandbox.call("predict", handle, inputs, phase=f"{self.name}, rebuilt by the grader")
            answers = answer if isinstance(answer, (list, tuple)) else [answer]
            if len(answers) != outputs:
                raise SubmissionError("invalid", f"{self.name} has {len(answers)} output(s), expected {outputs}")
            answers = [
                expect_array(a, f"{self.name} (rebuilt)", shape=(len(inputs),) + (None,) * (np.ndim(a) - 1))
                for a in answers
            ]
            return answers if outputs > 1 else answers[0]

        def matches(self, handle, probes, expected, what):
            """Fails unless the rebuilt model answers the probes as the trained one did."""
            got = self.predict(handle, probes, outputs=len(expected))
            got = got if len(expected) > 1 else [got]
            error = max(
                (float(np.max(np.abs(g - e))) / (1 + float(np.max(np.abs(e)))) if g.shape == e.shape else np.inf)
                for g, e in zip(got, expected)
            )
            if error > TOLERANCE:
                raise SubmissionError(
                    "invalid",
                    f"{self.name}, rebuilt by the grader from its Keras config and "
                    f"weights, does not reproduce the trained model: {what} for "
                    f"{len(probes)} secret probes differ by up to {error:.3g} (relative; "
                    f"allowed {TOLERANCE:g}). The grader measures the rebuilt model, so "
                    "everything it computes must be in its layers and weights",
                )
            return error


# ---------------------------------------------------------------- the measurement sandbox's side
def refusal(config):
    """Why a model's config is not one of built-in Keras layers (None when it is)."""
    if not isinstance(config, dict) or config.get("class_name") not in MODEL_CLASSES:
        name = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        return (
            f"the model is a {str(name)[:60]!r}, not a keras.Model built from layers (Functional or "
            "Sequential); a subclassed model's code stays in your file"
        )

    def walk(value, layer):
        if isinstance(value, list):
            return next((r for r in (walk(v, layer) for v in value) if r), None)
        if not isinstance(value, dict):
            return None
        if "class_name" in value and value.get("class_name") != "__keras_tensor__":
            name, module = str(value.get("class_name"))[:60], value.get("module")
            inner = value.get("config")
            if isinstance(inner, dict) and isinstance(inner.get("name"), str) and "layers" not in inner:
                layer = f"{inner['name'][:60]!r} ({name})"
            if name == "Lambda":
                return f"layer {layer} is a Lambda layer: its Python code is not part of a config"
            if not isinstance(module, str) or not (module == "keras" or module.startswith("keras.")):
                return f"{name!r} in layer {layer} is not a built-in Keras class (a custom class or function)"
            if isinstance(inner, dict) and inner.get("stateful"):
                return f"layer {layer} is stateful: its answers would depend on earlier calls"
        return next((r for r in (walk(v, layer) for k, v in value.items() if k != "build_config") if r), None)

    return walk(config.get("config"), "(the model)")


def rebuild(config, weights):
    """The model of `config` (JSON), deserialized safely, with `weights`."""
    import keras

    try:
        data = json.loads(config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"its config is not JSON ({error})") from None
    reason = refusal(data)
    if reason:
        raise ValueError(reason)
    try:
        model = keras.saving.deserialize_keras_object(data, safe_mode=True)
    except Exception as error:
        raise ValueError(f"Keras could not rebuild it: {type(error).__name__}: {str(error)[:200]}") from None
    try:
        model.set_weights(weights)
    except Exception as error:
        raise ValueError(f"its weights do not fit its layers: {str(error)[:200]}") from None
    return model


def predict(model, inputs):
    """model(row) for each row of `inputs` on its own (a batch of one), as numpy arrays."""
    import tensorflow as tf

    graphs = model.__dict__.setdefault("_grader_graphs", {})
    key = (inputs.dtype.name, inputs.shape[1:])
    if key not in graphs:

        def each(rows):
            return tf.vectorized_map(
                lambda row: tf.nest.map_structure(lambda t: t[0], model(row[None], training=False)),
                rows,
                fallback_to_while_loop=True,
            )

        graphs[key] = tf.function(
            each, input_signature=[tf.TensorSpec([None, *inputs.shape[1:]], inputs.dtype)], autograph=False
        )
    result = graphs[key](inputs)
    return tf.nest.map_structure(lambda t: np.asarray(t), result)
