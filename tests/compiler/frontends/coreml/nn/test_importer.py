"""NeuralNetwork models as a whole: the rank-5 mapping at the model's edges, regressors, and
pipelines compiled as one graph (or refused, naming the stage that is not a network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from coremlutil import check, ct, nn_builder, save_nn

from compiler.errors import UnsupportedOpsError
from compiler.frontends.coreml.importer import import_coreml


def _stage(name_in: str, name_out: str, kind: str, params: list | None = None) -> object:
    b = nn_builder([(name_in, (3,))], [(name_out, (3,))], exact=False)
    b.add_activation(f"{name_out}_layer", kind, name_in, name_out, params=params)
    return b.spec


def test_rank5_edges_give_declared_shapes(tmp_path: Path) -> None:
    b = nn_builder([("x", (2, 3, 4))], [("y", None)], exact=False)
    b.add_activation("tanh", "TANH", "x", "y")
    path = save_nn(b, tmp_path)
    graph, _ = import_coreml(path)
    assert graph.inputs[0].shape == (2, 3, 4)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    check(path, {"x": x}, [np.tanh(x)], rtol=1e-5, atol=1e-6)


def test_pipeline_of_networks_is_one_graph(tmp_path: Path) -> None:
    from coremltools.models.datatypes import Array
    from coremltools.models.pipeline import Pipeline

    pipe = Pipeline([("x", Array(3))], [("z", Array(3))])
    pipe.add_model(_stage("x", "t", "LINEAR", [2.0, 1.0]))
    pipe.add_model(_stage("t", "z", "RELU"))
    path = save_nn(pipe.spec, tmp_path, "pipe")
    x = np.array([-2.0, 0.25, 3.0], np.float32)
    check(path, {"x": x}, [np.maximum(2 * x + 1, 0)])


def test_pipeline_with_another_stage_is_refused(tmp_path: Path) -> None:
    from coremltools.models.datatypes import Array
    from coremltools.models.pipeline import Pipeline
    from coremltools.models.tree_ensemble import TreeEnsembleRegressor

    tree = TreeEnsembleRegressor(["t"], "z")
    tree.set_default_prediction_value(0.5)
    pipe = Pipeline([("x", Array(3))], [("z", ct.models.datatypes.Double())])
    pipe.add_model(_stage("x", "t", "RELU"))
    pipe.add_model(tree.spec)
    with pytest.raises(UnsupportedOpsError, match="pipeline stage 1 is a treeEnsembleRegressor"):
        import_coreml(save_nn(pipe.spec, tmp_path, "pipe"))


def test_outputs_take_their_declared_data_type(tmp_path: Path) -> None:
    """Blobs are float32 inside a network; an output declared INT32 (e.g. an argmax from
    coremltools' NeuralNetwork backend) is given as int32."""
    from coremltools.proto import FeatureTypes_pb2

    b = nn_builder([("x", (2, 5))], [("y", None)])
    b.add_argmax("argmax", "x", "y", axis=-1, keepdims=False)
    b.spec.description.output[
        0
    ].type.multiArrayType.dataType = FeatureTypes_pb2.ArrayFeatureType.INT32
    x = np.random.default_rng(2).standard_normal((2, 5)).astype(np.float32)
    (got,) = check(save_nn(b, tmp_path), {"x": x}, [x.argmax(-1).astype(np.int32)])
    assert got.dtype == np.int32
