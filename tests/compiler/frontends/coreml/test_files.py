"""Reading Core ML files: every bad input ends in one clear nnxc error, and nothing outside an
``.mlpackage`` is read."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from coremlutil import ct, nn_builder, save_nn, save_program

import compiler
from compiler.errors import ModelLoadError, NnxcError, ResourceLimitError, UnsupportedOpsError
from compiler.frontends.base import frontend_for
from compiler.frontends.coreml.files import contained, open_model


@pytest.fixture(scope="module")
def relu_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    b = nn_builder([("x", (2, 3))], [("y", None)])
    b.add_activation("relu", "RELU", "x", "y")
    return save_nn(b, tmp_path_factory.mktemp("nn"))


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ML Program whose weight lives in weight.bin (64 x 32 floats)."""
    from coremltools.converters.mil import Builder as mb

    w = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 64))])
    def prog(x):
        return mb.relu(x=mb.add(x=mb.matmul(x=x, y=w.T), y=np.float32(1)))

    return save_program(prog, tmp_path_factory.mktemp("pkg"))


def _copy(package: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy.mlpackage"
    shutil.copytree(package, dst)
    return dst


def _weight_bin(pkg: Path) -> Path:
    return pkg / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"


def test_formats_are_recognised(relu_model: Path, package: Path) -> None:
    assert frontend_for(relu_model).name == "coreml"
    assert frontend_for(package).name == "coreml"
    assert frontend_for(ct.models.MLModel(str(relu_model), skip_model_load=True)).name == "coreml"
    files = open_model(package)
    assert files.kind == "mlProgram" and files.weights_dir is not None


def test_truncated_mlmodel(relu_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "cut.mlmodel"
    bad.write_bytes(relu_model.read_bytes()[:25])
    with pytest.raises(ModelLoadError, match="cut.mlmodel: not a Core ML model"):
        compiler.compile(bad)


def test_not_a_core_ml_file(tmp_path: Path) -> None:
    bad = tmp_path / "text.mlmodel"
    bad.write_text("certainly not a protobuf\n")
    with pytest.raises(ModelLoadError, match="not a Core ML model"):
        compiler.compile(bad)


def test_model_that_is_not_a_network(tmp_path: Path) -> None:
    from coremltools.models.tree_ensemble import TreeEnsembleRegressor

    tree = TreeEnsembleRegressor(["a", "b"], "y")
    tree.set_default_prediction_value(0.5)
    path = save_nn(tree.spec, tmp_path, "tree")
    with pytest.raises(UnsupportedOpsError, match="a treeEnsembleRegressor model; nnxc compiles"):
        compiler.compile(path)


def test_missing_weight_file(package: Path, tmp_path: Path) -> None:
    pkg = _copy(package, tmp_path)
    _weight_bin(pkg).unlink()
    with pytest.raises(ModelLoadError, match="weight file 'weight.bin' is missing"):
        compiler.compile(pkg)


def test_truncated_weight_file(package: Path, tmp_path: Path) -> None:
    pkg = _copy(package, tmp_path)
    with open(_weight_bin(pkg), "r+b") as f:
        f.truncate(100)
    with pytest.raises(ModelLoadError, match="past the end of weight.bin"):
        compiler.compile(pkg)
    with open(_weight_bin(pkg), "r+b") as f:  # the blob's header stays, its data is cut
        f.truncate(64 + 64 + 1000)
    with pytest.raises(ModelLoadError, match="past the end of its weight file"):
        compiler.compile(pkg)


def _blob_values(spec: Any) -> Iterator[Any]:
    """The ML Program's attribute values that point into weight.bin."""
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                for value in op.attributes.values():
                    if value.WhichOneof("value") == "blobFileValue":
                        yield value


def test_blob_offset_past_the_end(package: Path, tmp_path: Path) -> None:
    pkg = _copy(package, tmp_path)
    spec = ct.utils.load_spec(str(pkg))
    for value in _blob_values(spec):
        value.blobFileValue.offset = 1 << 40
    root = pkg / "Data" / "com.apple.CoreML" / "model.mlmodel"
    root.write_bytes(spec.SerializeToString())
    with pytest.raises(ModelLoadError, match=r"blob offset 1099511627776 is past the end"):
        compiler.compile(pkg)


@pytest.mark.parametrize(
    "path", ["../../outside.mlmodel", "/etc/passwd", "com.apple.CoreML/../../x"]
)
def test_manifest_paths_stay_inside(package: Path, tmp_path: Path, path: str) -> None:
    pkg = _copy(package, tmp_path)
    outside = tmp_path / "outside.mlmodel"
    outside.write_bytes(b"")  # would be read if the path were followed
    manifest = json.loads((pkg / "Manifest.json").read_text())
    for entry in manifest["itemInfoEntries"].values():
        if entry["name"] == "model.mlmodel":
            entry["path"] = path
    (pkg / "Manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="leaves the package; refused"):
        compiler.compile(pkg)


def test_symlink_out_of_the_package(package: Path, tmp_path: Path) -> None:
    pkg = _copy(package, tmp_path)
    weights = _weight_bin(pkg)
    real = tmp_path / "elsewhere.bin"
    weights.rename(real)
    weights.symlink_to(real)
    with pytest.raises(ModelLoadError, match="resolves outside the package"):
        compiler.compile(pkg)


def test_contained_refuses_escapes(tmp_path: Path) -> None:
    assert contained(tmp_path, "a/b", "x") == (tmp_path / "a" / "b").resolve()
    for rel in ["", "..", "a/../../b", "/abs", "a\\..\\b"]:
        with pytest.raises(ModelLoadError):
            contained(tmp_path, rel, "x")


def test_unreadable_manifest(package: Path, tmp_path: Path) -> None:
    pkg = _copy(package, tmp_path)
    (pkg / "Manifest.json").write_text("{ not json")
    with pytest.raises(ModelLoadError, match="Manifest.json is unreadable"):
        compiler.compile(pkg)
    (pkg / "Manifest.json").unlink()
    with pytest.raises(NnxcError, match="not an .mlpackage"):
        compiler.compile(pkg)


def test_unsupported_layers_listed_together(tmp_path: Path) -> None:
    b = nn_builder([("x", (2, 3))], [("y", None)])
    b.add_custom("c1", ["x"], ["t"], custom_proto_spec=None)
    b.add_custom("c2", ["t"], ["y"], custom_proto_spec=None)
    with pytest.raises(UnsupportedOpsError, match=r"custom x2 \(e\.g\. c1, c2\): a custom layer"):
        compiler.compile(save_nn(b, tmp_path))


def _declare_blob_dims(pkg: Path, dims: list[int]) -> None:
    spec = ct.utils.load_spec(str(pkg))
    for value in _blob_values(spec):
        t = value.type.tensorType
        del t.dimensions[:]
        for d in dims:
            t.dimensions.add().constant.size = d
        t.rank = len(dims)
    (pkg / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(spec.SerializeToString())


def test_weight_declaring_a_trillion_elements_is_refused_before_reading(
    package: Path, tmp_path: Path
) -> None:
    pkg = _copy(package, tmp_path)
    _declare_blob_dims(pkg, [10**6, 10**6])
    with pytest.raises(ResourceLimitError, match=r"of shape \[1000000, 1000000\] needs 3.6 TiB"):
        compiler.compile(pkg)


def test_max_memory_refuses_a_weight(package: Path) -> None:
    with pytest.raises(ResourceLimitError, match=r"constant .* of shape \[64, 32\] needs 8.0 KiB"):
        compiler.compile(package, max_memory="4K")
