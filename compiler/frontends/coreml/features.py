"""A Core ML model's inputs and outputs ("features"): multi-arrays with their flexible shapes,
images as float32 NCHW pixel arrays with the NeuralNetwork preprocessing applied inside the
model, and classifiers' labels.

Flexible shapes become symbolic dims. Their bounds (``shapeRange``, ``imageSizeRange``) and
lists (``enumeratedShapes``, ``enumeratedSizes``) go into the graph's metadata, which the
artifact keeps and ``Runtime.run`` checks; ``--input-shape`` may bind a flexible input to
one allowed size instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler.errors import ModelLoadError
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType

ARRAY_DTYPES = {
    65568: "float32",  # FLOAT32 = 0x10020
    65600: "float32",  # DOUBLE = 0x10040: Core ML computes neural networks in float32
    65552: "float16",  # FLOAT16 = 0x10010
    131104: "int32",  # INT32 = 0x20020
    131080: "int8",  # INT8 = 0x20008
}
"""IR dtypes of ``ArrayFeatureType.ArrayDataType``."""

_CHANNELS = {
    10: ("gray",),
    20: ("red", "green", "blue"),
    30: ("blue", "green", "red"),
    40: ("gray",),
}
"""Channel order of each image colour space (GRAYSCALE, RGB, BGR, GRAYSCALE_FLOAT16)."""


@dataclass
class Feature:
    """One declared input: its IR value and, for an image, its channel names in order."""

    name: str
    value: Value
    channels: tuple[str, ...] = ()

    @property
    def is_image(self) -> bool:
        return bool(self.channels)


def declare_inputs(
    descriptions: Any,
    where: str,
    graph: Graph,
    input_shapes: Mapping[str, Any] | None,
    input_values: Mapping[str, np.ndarray] | None,
) -> dict[str, Feature]:
    """The inputs ``descriptions`` (``FeatureDescription``s) declare, as graph inputs (or
    constants, for ``input_values``) in declared order, flexible dims symbolic unless bound;
    ``where`` names the model in errors."""
    shapes = dict(input_shapes or {})
    values = dict(input_values or {})
    declared = [d.name for d in descriptions]
    for name in list(shapes) + list(values):
        if name not in declared:
            raise ModelLoadError(
                f"--input-shape/input_values name unknown input {name!r}; the model's inputs "
                f"are {', '.join(declared)}"
            )
    bounds: dict[str, list[int | None]] = {}
    choices: dict[str, list[list[int]]] = {}
    features = {}
    model = where
    for desc in descriptions:
        kind = desc.type.WhichOneof("Type")
        where = f"{model}: input {desc.name!r}"
        if kind == "multiArrayType":
            dtype = ARRAY_DTYPES.get(desc.type.multiArrayType.dataType)
            if dtype is None:
                raise ModelLoadError(
                    f"{where}: unknown array data type {desc.type.multiArrayType.dataType}"
                )
            dims, ranges, listed = _array_dims(desc.name, desc.type.multiArrayType, where)
            channels: tuple[str, ...] = ()
        elif kind == "imageType":
            image = desc.type.imageType
            channels = _CHANNELS.get(image.colorSpace, ())
            if not channels:
                raise ModelLoadError(f"{where}: unknown image colour space {image.colorSpace}")
            dtype = "float32"
            dims, ranges, listed = _image_dims(desc.name, image, len(channels), where)
        else:
            raise ModelLoadError(
                f"{where} is of type {kind}; nnxc compiles models whose inputs are "
                "multi-arrays or images"
            )
        negative = [d for d in dims if isinstance(d, int) and d < 0]
        if negative:
            raise ModelLoadError(f"{where}: negative size {negative[0]} in its shape {dims}")
        if desc.name in values:
            data = np.asarray(values[desc.name])
            _check_bound(where, list(data.shape), dims, ranges, listed)
            v = graph.constant(data.astype(dtype, copy=False), desc.name)
        else:
            if desc.name in shapes:
                bound = list(shapes[desc.name])
                _check_bound(where, bound, dims, ranges, listed)
                dims = bound
            else:
                for dim, rng in ranges.items():
                    bounds[dim] = rng
                if listed:
                    choices[desc.name] = listed
            v = graph.add_input(desc.name, TensorType(dtype, tuple(dims)))
        features[desc.name] = Feature(desc.name, v, channels)
    if bounds:
        graph.metadata["dim_bounds"] = json.dumps(bounds)
    if choices:
        graph.metadata["input_shape_choices"] = json.dumps(choices)
    return features


def _array_dims(
    name: str, array: Any, where: str
) -> tuple[list[int | str], dict[str, list[int | None]], list[list[int]]]:
    """Dims of a multi-array (symbolic where flexible), the bounds of each symbolic dim, and
    the enumerated shapes (empty unless enumerated)."""
    default = [int(d) for d in array.shape]
    flex = array.WhichOneof("ShapeFlexibility")
    if flex == "shapeRange":
        ranges = [(int(r.lowerBound), int(r.upperBound)) for r in array.shapeRange.sizeRanges]
        _check_ranges(ranges, where)
        if default and len(default) != len(ranges):
            raise ModelLoadError(f"{where}: shape {default} and {len(ranges)} size ranges")
        dims: list[int | str] = []
        bounds: dict[str, list[int | None]] = {}
        for i, (lo, hi) in enumerate(ranges):
            if lo == hi:
                dims.append(lo)
            else:
                dim = _dim_name(name, str(i))
                dims.append(dim)
                bounds[dim] = [lo, hi if hi >= 0 else None]
        return dims, bounds, []
    if flex == "enumeratedShapes":
        listed = [[int(d) for d in s.shape] for s in array.enumeratedShapes.shapes]
        return _enumerated(name, listed, [str(i) for i in range(len(listed[0]))], where)
    if not default:
        raise ModelLoadError(f"{where}: the multi-array declares no shape")
    return list(default), {}, []


def _check_ranges(ranges: list[tuple[int, int]], where: str) -> None:
    """A size range is ``lo <= hi`` with ``lo >= 0``; ``hi`` -1 means unbounded."""
    for lo, hi in ranges:
        if lo < 0 or (hi >= 0 and hi < lo) or hi < -1:
            raise ModelLoadError(f"{where}: invalid size range [{lo}, {hi}]")


def _image_dims(
    name: str, image: Any, channels: int, where: str
) -> tuple[list[int | str], dict[str, list[int | None]], list[list[int]]]:
    flex = image.WhichOneof("SizeFlexibility")
    if flex == "imageSizeRange":
        dims: list[int | str] = [1, channels]
        bounds: dict[str, list[int | None]] = {}
        for axis, rng in (
            ("height", image.imageSizeRange.heightRange),
            ("width", image.imageSizeRange.widthRange),
        ):
            lo, hi = int(rng.lowerBound), int(rng.upperBound)
            _check_ranges([(lo, hi)], f"{where} {axis}")
            if lo == hi:
                dims.append(lo)
            else:
                dim = _dim_name(name, axis)
                dims.append(dim)
                bounds[dim] = [lo, hi if hi >= 0 else None]
        return dims, bounds, []
    if flex == "enumeratedSizes":
        listed = [[1, channels, int(s.height), int(s.width)] for s in image.enumeratedSizes.sizes]
        return _enumerated(name, listed, ["batch", "channels", "height", "width"], where)
    if image.width <= 0 or image.height <= 0:
        raise ModelLoadError(f"{where}: the image declares no size")
    return [1, channels, int(image.height), int(image.width)], {}, []


def _enumerated(
    name: str, listed: list[list[int]], axes: list[str], where: str
) -> tuple[list[int | str], dict[str, list[int | None]], list[list[int]]]:
    if not listed or any(len(s) != len(listed[0]) for s in listed):
        raise ModelLoadError(f"{where}: enumerated shapes of different ranks (or none)")
    if len(listed) == 1:
        return list(listed[0]), {}, []
    dims: list[int | str] = []
    bounds: dict[str, list[int | None]] = {}
    for i, sizes in enumerate(zip(*listed)):
        if len(set(sizes)) == 1:
            dims.append(sizes[0])
        else:
            dim = _dim_name(name, axes[i])
            dims.append(dim)
            bounds[dim] = [min(sizes), max(sizes)]
    return dims, bounds, listed


def _dim_name(name: str, axis: str) -> str:
    return re.sub(r"\W", "_", f"{name}_{axis}")


def _check_bound(
    where: str,
    bound: list[Any],
    dims: list[int | str],
    ranges: dict[str, list[int | None]],
    listed: list[list[int]],
) -> None:
    """A binding (``--input-shape`` or ``input_values``) must be a shape the model allows."""
    if len(bound) != len(dims):
        raise ModelLoadError(f"{where} bound to shape {bound}, another rank than {dims}")
    if listed and all(isinstance(d, int) for d in bound) and list(bound) not in listed:
        raise ModelLoadError(f"{where} bound to shape {bound}; the model allows {listed}")
    for b, d in zip(bound, dims):
        if isinstance(d, int) and b != d:
            raise ModelLoadError(f"{where} bound to shape {bound}; the model fixes {dims}")
        if isinstance(d, str) and isinstance(b, int):
            lo, hi = ranges[d]
            if b < (lo or 0) or (hi is not None and b > hi):
                raise ModelLoadError(
                    f"{where} bound to shape {bound}; dim {d} must lie in [{lo}, "
                    f"{'inf' if hi is None else hi}]"
                )


def preprocess(builder: Builder, feature: Feature, pre: Any) -> Value:
    """An image input after its ``NeuralNetworkPreprocessing``: ``channelScale * x + bias``
    with the bias of each channel named by colour (scale first, the bias unscaled), or the
    mean image subtracted. ``channelScale`` 0 is proto3's "unset", i.e. 1."""
    x = feature.value
    kind = pre.WhichOneof("preprocessor")
    if kind == "scaler":
        s = pre.scaler
        scale = s.channelScale or 1.0
        by_colour = {"red": s.redBias, "green": s.greenBias, "blue": s.blueBias, "gray": s.grayBias}
        bias = np.array([by_colour[c] for c in feature.channels], np.float32)
        if scale != 1.0:
            x = builder.emit("mul", x, builder.const(np.float32(scale)))
        if bias.any():
            x = builder.emit("add", x, builder.const(bias.reshape(1, -1, 1, 1)))
        return x
    if kind == "meanImage":
        mean = np.asarray(pre.meanImage.meanImage, np.float32)
        c, h, w = x.shape[1:]
        if not all(isinstance(d, int) for d in (h, w)) or mean.size != c * h * w:
            raise ModelLoadError(
                f"input {feature.name!r}: a mean image of {mean.size} values for images of "
                f"{c}x{h}x{w}"
            )
        return builder.emit("sub", x, builder.const(mean.reshape(1, c, h, w)))
    return x


def classifier_labels(nn: Any) -> list[str | int] | None:
    """A classifier's class labels (strings or int64s), in score order."""
    kind = nn.WhichOneof("ClassLabels")
    if kind == "stringClassLabels":
        return list(nn.stringClassLabels.vector)
    if kind == "int64ClassLabels":
        return [int(v) for v in nn.int64ClassLabels.vector]
    return None
