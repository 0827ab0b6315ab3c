"""NeuralNetwork models (and pipelines of them) -> nnxc IR.

Layers are converted in the order the spec lists them, each reading and writing named blobs.
Inputs pass through the model's image preprocessing and, under the rank-5 mapping, are
brought to ``[Seq, Batch, C, H, W]``; outputs are given back in the shapes the model
declares. A pipeline's stages convert one after another into one graph, each stage's inputs
taken from the blobs of the stages before it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from compiler.errors import ConversionError, ModelLoadError, UnsupportedOpsError
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph, Value

from ...converters import report_unsupported, run_converter
from ..features import ARRAY_DTYPES, Feature, classifier_labels, declare_inputs, preprocess
from ..files import CoreMLFiles
from . import (  # noqa: F401  (registers the converters)
    control,
    elementwise,
    nd_math,
    nd_tensor,
    normalize,
    random,
    recurrent,
    tensor,
    window,
)
from .registry import LAYERS, REFUSED, NnContext, nested_layers

NEURAL_NETWORKS = ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor")
RANK5 = 0
DOUBLE = 65600
"""``ArrayFeatureType.DOUBLE``."""
"""``arrayInputShapeMapping``/``imageInputShapeMapping`` value of the rank-5 mappings."""
Scope = tuple[dict[str, Value], list[Any], int, frozenset[str]]
"""Where a layer converts (``_Network.scope``)."""


def import_network(
    files: CoreMLFiles,
    input_shapes: Mapping[str, Any] | None,
    input_values: Mapping[str, np.ndarray] | None,
) -> Graph:
    spec = files.spec
    stages = _stages(spec, files.name)
    _check_layers(stages, files.name)
    graph = Graph(re.sub(r"\W", "_", files.name.split(".")[0]) or "main")
    builder = Builder(graph)
    features = declare_inputs(spec.description.input, files.name, graph, input_shapes, input_values)
    blobs: dict[str, Value] = {name: f.value for name, f in features.items()}
    labels = None
    probabilities = None
    for stage in stages:
        net = _Network(stage, builder, files.name)
        probabilities = net.run(blobs, features) or probabilities
        labels = net.labels or labels
    outputs, names = [], []
    for desc in spec.description.output:
        kind = desc.type.WhichOneof("Type")
        if kind == "dictionaryType" and probabilities is not None:
            outputs.append(_flat(builder, probabilities, files.name))
        elif kind == "multiArrayType":
            if desc.name not in blobs:
                raise ConversionError(f"{files.name}: no layer computes output {desc.name!r}")
            outputs.append(blobs[desc.name])
        elif desc.name == spec.description.predictedFeatureName:
            continue  # the class label: the artifact keeps the labels, `run` prints them
        else:
            raise UnsupportedOpsError(
                f"{files.name}: output {desc.name!r} is of type {kind}; nnxc gives multi-array "
                "outputs and classifiers' probabilities"
            )
        names.append(desc.name)
    graph.set_outputs(outputs, names)
    if labels is not None:
        graph.metadata["labels"] = json.dumps(labels)
    return graph


def _flat(builder: Builder, v: Value, where: str) -> Value:
    """The classifier's probabilities as a vector (one score per class)."""
    if len(v.shape) == 1:
        return v
    if not all(isinstance(d, int) for d in v.shape):
        raise ConversionError(f"{where}: the probability blob {list(v.shape)} needs static dims")
    return builder.emit("reshape", v, shape=[int(np.prod(v.shape))])


def _stages(spec: Any, where: str) -> list[Any]:
    """The models to convert, in order: the model itself, or every stage of a pipeline
    (nested pipelines flattened); a stage that is not a neural network is refused."""
    kind = spec.WhichOneof("Type")
    if kind in NEURAL_NETWORKS:
        return [spec]
    stages = []
    container = getattr(spec, kind)  # pipelineClassifier/Regressor wrap a Pipeline
    models = container.models if kind == "pipeline" else container.pipeline.models
    for i, stage in enumerate(models):
        stage_kind = stage.WhichOneof("Type")
        if stage_kind in NEURAL_NETWORKS or stage_kind in (
            "pipeline",
            "pipelineClassifier",
            "pipelineRegressor",
        ):
            stages.extend(_stages(stage, where))
        else:
            raise UnsupportedOpsError(
                f"{where}: pipeline stage {i} is a {stage_kind}; nnxc compiles pipelines whose "
                "stages are all neural networks"
            )
    return stages


def _check_layers(stages: list[Any], where: str) -> None:
    """Every layer kind without a converter, nested networks included, in one error."""
    missing = []
    for stage in stages:
        pending = list(getattr(stage, stage.WhichOneof("Type")).layers)
        while pending:
            lyr = pending.pop(0)
            kind = lyr.WhichOneof("layer")
            if kind is None:
                raise ModelLoadError(f"{where}: layer {lyr.name!r} has no type")
            if kind in REFUSED or LAYERS.find("", kind, 1) is None:
                missing.append((kind, lyr.name))
            pending.extend(nested_layers(lyr))
    report_unsupported(missing, f"in {where}", reasons=REFUSED)


class _Network:
    """One neural network (a model or a pipeline stage) being converted."""

    def __init__(self, spec: Any, builder: Builder, where: str) -> None:
        self.spec = spec
        self.nn = getattr(spec, spec.WhichOneof("Type"))
        self.builder = builder
        self.where = where
        self.rank5 = self.nn.arrayInputShapeMapping == RANK5
        self.image_rank5 = self.nn.imageInputShapeMapping == RANK5
        classifier = spec.WhichOneof("Type") == "neuralNetworkClassifier"
        self.labels = classifier_labels(self.nn) if classifier else None
        self.scope: Scope = ({}, [], 0, frozenset())
        """While a layer converts: the blobs so far, the layers of its network and the index
        of the next one, and the blobs read after that network (branch and loop convert
        nested networks in it and find the blobs they must hand on)."""

    def run(self, blobs: dict[str, Value], features: dict[str, Feature]) -> Value | None:
        """Convert the layers, reading the stage's inputs from ``blobs`` and adding its
        outputs to them; the classifier's probability blob when it is one."""
        env: dict[str, Value] = {}
        for desc in self.spec.description.input:
            if desc.name not in blobs:
                raise ConversionError(f"{self.where}: no earlier stage computes {desc.name!r}")
            env[desc.name] = self._enter(desc, blobs[desc.name], features.get(desc.name))
        name = ""
        if self.labels is not None:
            last = self.nn.layers[-1].output if self.nn.layers else []
            name = self.nn.labelProbabilityLayerName or (last[0] if last else "")
        read = {desc.name for desc in self.spec.description.output} | {name}
        self.convert_layers(self.nn.layers, env, self.builder, frozenset(read))
        for desc in self.spec.description.output:
            if desc.name in env:
                blobs[desc.name] = self._leave(desc, env[desc.name])
        if self.labels is None:
            return None
        if name not in env:
            raise ConversionError(
                f"{self.where}: the classifier's probability blob {name!r} is computed by no layer"
            )
        return env[name]

    def convert_layers(
        self, layers: Any, env: dict[str, Value], builder: Builder, after: frozenset[str]
    ) -> None:
        """Convert ``layers`` in order into ``builder``'s block, reading and writing ``env``
        (branch and loop converters call this for their nested networks); ``after`` names
        the blobs read after these layers."""
        layers = list(layers)
        for k, lyr in enumerate(layers):
            kind = lyr.WhichOneof("layer")
            missing = [n for n in lyr.input if n not in env]
            if missing:
                raise ConversionError(
                    f"{kind} layer {lyr.name!r}: input blob {missing[0]!r} is computed by no "
                    "earlier layer"
                )
            ctx = NnContext(
                lyr,
                [env[n] for n in lyr.input],
                builder,
                self.rank5,
                int(self.spec.specificationVersion),
                self,
            )
            fn = LAYERS.find("", kind, 1)
            assert fn is not None  # _check_layers ran first
            self.scope = (env, layers, k + 1, after)
            results = run_converter(ctx, fn)
            if len(results) < len(lyr.output):
                raise ctx.error(f"the converter gives {len(results)} of {len(lyr.output)} outputs")
            for name, value in zip(lyr.output, results):
                if value is not None:
                    env[name] = value

    # -- the rank-5 mapping at the model's edges ---------------------------------------------
    def _enter(self, desc: Any, v: Value, feature: Feature | None) -> Value:
        if desc.type.WhichOneof("Type") == "imageType":
            if feature is not None and feature.is_image:
                v = self._preprocess(desc.name, feature, v)
            if self.image_rank5:
                v = self.builder.emit("reshape", v, shape=[1, *v.shape])
            return v
        if not self.rank5 or len(v.shape) == 5:
            return v
        if len(v.shape) == 1:
            return self.builder.emit("reshape", v, shape=[1, 1, v.shape[0], 1, 1])
        if len(v.shape) == 3:
            return self.builder.emit("reshape", v, shape=[1, 1, *v.shape])
        raise ModelLoadError(
            f"{self.where}: input {desc.name!r} has rank {len(v.shape)}; the rank-5 mapping "
            "takes arrays of rank 1 ([C]), 3 ([C, H, W]) or 5"
        )

    def _preprocess(self, name: str, feature: Feature, v: Value) -> Value:
        pres = list(self.nn.preprocessing)
        for pre in pres:
            if pre.featureName == name or (not pre.featureName and len(pres) == 1):
                return preprocess(self.builder, Feature(name, v, feature.channels), pre)
        return v

    def _leave(self, desc: Any, v: Value) -> Value:
        """A blob as the declared output (or next stage's input): the declared shape when
        one is given, else, under the rank-5 mapping, ``[C, H, W]``; in the declared data type
        (an output may be declared INT32; DOUBLE, coremltools' default, keeps the network's
        float type)."""
        if desc.type.WhichOneof("Type") != "multiArrayType":
            return v
        data_type = desc.type.multiArrayType.dataType
        want = None if data_type == DOUBLE else ARRAY_DTYPES.get(data_type)
        if want is not None and want != v.dtype:
            v = self.builder.emit("cast", v, to=want)
        declared = [int(d) for d in desc.type.multiArrayType.shape]
        static = all(isinstance(d, int) for d in v.shape)
        if declared and static and int(np.prod(declared)) == int(np.prod(v.shape)):
            if list(v.shape) != declared:
                return self.builder.emit("reshape", v, shape=declared)
            return v
        if self.rank5 and len(v.shape) == 5 and v.shape[0] == 1 and v.shape[1] == 1:
            return self.builder.emit("reshape", v, shape=list(v.shape[2:]))
        return v
