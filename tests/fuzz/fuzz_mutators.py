"""Mutators: hypothesis draws that turn a seed model into a damaged copy, at the level its
format is built from.

- protobuf (ONNX ``.onnx``, Core ML ``.mlmodel`` and the spec inside an ``.mlpackage``): any
  set field, found by walking the descriptors, is replaced by an interesting value of its
  type (dims, dtypes, attributes, opset versions, blob offsets...), strings by other names of
  the model or op names (wiring nodes to the wrong values, changing op types), bytes
  truncated or extended (initializer ``raw_data``), repeated fields shortened or duplicated;
  then, sometimes, the serialized bytes themselves are flipped or truncated;
- text (NNEF ``graph.nnef``): tokens replaced by interesting numbers, other names or
  operation names, deleted, duplicated; ``.dat`` tensor headers overwritten;
- archive (NNEF ``.tgz``): truncated or bit-flipped archives, members with huge declared sizes,
  links, devices, ``..`` paths, missing or doubled files;
- JSON (``.mlpackage`` ``Manifest.json``): keys removed, values replaced by other types, paths
  leaving the package; ``weight.bin`` truncated or flipped.

Every mutator takes ``draw`` (``data.draw`` of ``st.data()``), so the same code serves the
seeded test and the campaign, and hypothesis can shrink a failing case to fewer, simpler
mutations.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fuzz_seeds import Seed, plain_member, tar_folder
from google.protobuf.message import DecodeError
from hypothesis import strategies as st

Draw = Callable[[st.SearchStrategy], Any]

INTS = (0, 1, -1, 2, 3, 4, 7, 8, 16, 255, 256, 65535, 2**31 - 1, -(2**31), 2**32 - 1)
INTS += (2**63 - 1, -(2**63), 10**6, 10**9, 10**12)
FLOATS = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-30, 1e30, 3.4e38, float("nan"), float("inf"))
FLOATS += (float("-inf"),)
STRINGS = ("", "x", "../../../etc/passwd", "/abs/path", "a" * 300, "\u00e9\u4e2d", "0")
MAX_MUTATIONS = 4
_INT_RANGES = {
    "TYPE_INT32": (-(2**31), 2**31 - 1),
    "TYPE_SINT32": (-(2**31), 2**31 - 1),
    "TYPE_SFIXED32": (-(2**31), 2**31 - 1),
    "TYPE_UINT32": (0, 2**32 - 1),
    "TYPE_FIXED32": (0, 2**32 - 1),
    "TYPE_INT64": (-(2**63), 2**63 - 1),
    "TYPE_SINT64": (-(2**63), 2**63 - 1),
    "TYPE_SFIXED64": (-(2**63), 2**63 - 1),
    "TYPE_UINT64": (0, 2**64 - 1),
    "TYPE_FIXED64": (0, 2**64 - 1),
}


# -- raw bytes -----------------------------------------------------------------------------------
def mutate_bytes(draw: Draw, data: bytes) -> bytes:
    """Flip, overwrite, insert or cut bytes."""
    if not data:
        return draw(st.binary(max_size=16))
    how = draw(st.sampled_from(("flip", "truncate", "insert", "overwrite")))
    pos = draw(st.integers(0, len(data) - 1))
    if how == "truncate":
        return data[:pos]
    if how == "insert":
        return data[:pos] + draw(st.binary(min_size=1, max_size=8)) + data[pos:]
    if how == "overwrite":
        chunk = draw(st.binary(min_size=1, max_size=8))
        return data[:pos] + chunk + data[pos + len(chunk) :]
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(out) - 1))
        out[i] ^= 1 << draw(st.integers(0, 7))
    return bytes(out)


# -- protobuf ------------------------------------------------------------------------------------
def _is_map(fd: Any) -> bool:
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


def proto_sites(msg: Any) -> Iterator[tuple[Any, Any, Any]]:
    """Every place a mutation can go: (message, field, index or key or None for the field)."""
    for fd, value in msg.ListFields():
        yield msg, fd, None
        if _is_map(fd):
            value_fd = fd.message_type.fields_by_name["value"]
            for key in list(value)[:32]:
                if value_fd.message_type is not None:
                    yield from proto_sites(value[key])
            continue
        if fd.is_repeated:
            indices = range(len(value))
            if fd.message_type is None and len(value) > 8:
                indices = (0, 1, len(value) - 1)  # long weight lists: ends only
            for i in indices:
                if fd.message_type is None:
                    yield msg, fd, i
                else:
                    yield from proto_sites(value[i])
        elif fd.message_type is not None:
            yield from proto_sites(value)


def proto_strings(msg: Any) -> list[str]:
    """The short strings a model holds (value names, op types, keys), to rewire with."""
    found: set[str] = set()
    for m, fd, i in proto_sites(msg):
        if fd.type == fd.TYPE_STRING and not _is_map(fd):
            value = getattr(m, fd.name)
            if fd.is_repeated:
                found.update(value if i is None else [value[i]])
            else:
                found.add(value)
    return sorted(s for s in found if len(s) < 100)


def _scalar(draw: Draw, fd: Any, old: Any, strings: list[str]) -> Any:
    kind = fd.type
    name = _type_name(fd)
    if name in _INT_RANGES:
        lo, hi = _INT_RANGES[name]
        return draw(
            st.sampled_from(INTS) | st.integers(-3, 3).map(lambda d: old + d) | st.integers(lo, hi)
        )
    if kind in (fd.TYPE_FLOAT, fd.TYPE_DOUBLE):
        return draw(st.sampled_from(FLOATS) | st.floats(allow_nan=True))
    if kind == fd.TYPE_BOOL:
        return not old
    if kind == fd.TYPE_ENUM:
        numbers = [v.number for v in fd.enum_type.values]
        return draw(st.sampled_from(numbers) | st.integers(-1, 300))
    if kind == fd.TYPE_STRING:
        pool = list(strings) + list(STRINGS)
        return draw(st.sampled_from(pool) | st.text(max_size=12))
    if kind == fd.TYPE_BYTES:
        return mutate_bytes(draw, old)
    raise ValueError(f"no scalar mutation for field type {kind}")


def _type_name(fd: Any) -> str:
    """The field's type as the descriptor constant's name (``TYPE_INT64``...)."""
    return next((a for a in _INT_RANGES if getattr(fd, a) == fd.type), "")


def mutate_proto(draw: Draw, msg: Any, names: list[str] = ()) -> None:
    """One to ``MAX_MUTATIONS`` field mutations, in place; ``names`` are extra strings (op
    names) to write into string fields."""
    strings = proto_strings(msg) + list(names)
    for _ in range(draw(st.integers(1, MAX_MUTATIONS))):
        sites = list(proto_sites(msg))
        if not sites:
            return
        m, fd, where = sites[draw(st.integers(0, len(sites) - 1))]
        value = getattr(m, fd.name)
        try:
            if _is_map(fd):
                keys = list(value)
                if keys:
                    del value[keys[draw(st.integers(0, len(keys) - 1))]]
            elif fd.is_repeated and where is None:
                _mutate_repeated(draw, value, fd, strings)
            elif fd.is_repeated:
                value[where] = _scalar(draw, fd, value[where], strings)
            elif fd.message_type is not None:
                m.ClearField(fd.name)
            else:
                setattr(m, fd.name, _scalar(draw, fd, value, strings))
        except (ValueError, TypeError, OverflowError):
            pass  # a value the field's type refuses (proto2 enums): no mutation


def _mutate_repeated(draw: Draw, value: Any, fd: Any, strings: list[str]) -> None:
    n = len(value)
    how = draw(st.sampled_from(("delete", "duplicate", "clear", "append")))
    if how == "clear" or n == 0:
        del value[:]
        return
    i = draw(st.integers(0, n - 1))
    if how == "delete":
        del value[i]
    elif fd.message_type is not None:
        value.add().CopyFrom(value[i])
    elif how == "duplicate":
        value.append(value[i])
    else:
        value.append(_scalar(draw, fd, value[i], strings))


def onnx_op_names() -> list[str]:
    import onnx

    return sorted({s.name for s in onnx.defs.get_all_schemas()})


_ONNX_OPS: list[str] = []


def mutate_onnx(draw: Draw, seed: Seed, dest: Path) -> Path:
    """A damaged copy of an ONNX seed at ``dest`` (.onnx)."""
    import onnx

    if not _ONNX_OPS:
        _ONNX_OPS.extend(onnx_op_names())
    data = seed.path.read_bytes()
    if draw(st.integers(0, 4)) > 0:
        model = onnx.ModelProto.FromString(data)
        ops = draw(st.lists(st.sampled_from(_ONNX_OPS), max_size=3))
        mutate_proto(draw, model, ops)
        data = model.SerializeToString()
    if draw(st.integers(0, 3)) == 0:
        data = mutate_bytes(draw, data)
    dest = dest.with_suffix(".onnx")
    dest.write_bytes(data)
    return dest


def _mutate_coreml_spec(draw: Draw, data: bytes) -> bytes:
    from coremltools.proto import Model_pb2

    if draw(st.integers(0, 4)) > 0:
        try:
            spec = Model_pb2.Model.FromString(data)
        except DecodeError:  # damaged by an earlier mutation: damage it further
            return mutate_bytes(draw, data)
        mutate_proto(draw, spec)
        data = spec.SerializeToString()
    if draw(st.integers(0, 3)) == 0:
        data = mutate_bytes(draw, data)
    return data


def mutate_mlmodel(draw: Draw, seed: Seed, dest: Path) -> Path:
    dest = dest.with_suffix(".mlmodel")
    dest.write_bytes(_mutate_coreml_spec(draw, seed.path.read_bytes()))
    return dest


# -- JSON (.mlpackage manifests) -----------------------------------------------------------------
JSON_VALUES = (None, 0, -1, 10**20, True, "", "x", "../../../etc", "/etc/passwd", [], {})


def _json_sites(doc: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _json_sites(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _json_sites(v, (*path, i))


def mutate_json(draw: Draw, text: str) -> str:
    """Delete a key, replace a value (another type, a path leaving the package, another
    string of the document), or damage the text itself."""
    if draw(st.integers(0, 5)) == 0:
        return mutate_bytes(draw, text.encode()).decode(errors="replace")
    try:
        doc = json.loads(text)
    except ValueError:  # damaged by an earlier mutation: damage it further
        return mutate_bytes(draw, text.encode()).decode(errors="replace")
    strings = sorted({str(p[-1]) for p in _json_sites(doc) if p})
    for _ in range(draw(st.integers(1, 3))):
        sites = [p for p in _json_sites(doc) if p]
        if not sites:
            break
        path = sites[draw(st.integers(0, len(sites) - 1))]
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(st.sampled_from(JSON_VALUES + tuple(strings)))
    return json.dumps(doc)


def mutate_mlpackage(draw: Draw, seed: Seed, dest: Path) -> Path:
    """A damaged copy of an .mlpackage: its manifest, its spec, or its weights."""
    dest = dest.with_suffix(".mlpackage")
    shutil.copytree(seed.path, dest)
    manifest = dest / "Manifest.json"
    spec = next(dest.rglob("model.mlmodel"))
    weights = sorted(p for p in dest.rglob("*.bin"))
    for _ in range(draw(st.integers(1, 2))):
        what = draw(st.sampled_from(("spec", "spec", "manifest", "weights", "remove")))
        if what == "spec" and spec.exists():
            spec.write_bytes(_mutate_coreml_spec(draw, spec.read_bytes()))
        elif what == "manifest" and manifest.exists():
            manifest.write_text(mutate_json(draw, manifest.read_text()))
        elif what == "weights" and weights and weights[0].exists():
            weights[0].write_bytes(mutate_bytes(draw, weights[0].read_bytes()))
        elif what == "remove":
            files = sorted(p for p in dest.rglob("*") if p.is_file())
            if files:
                files[draw(st.integers(0, len(files) - 1))].unlink()
    return dest


# -- NNEF text and tensors -----------------------------------------------------------------------
_TOKEN = re.compile(
    r"\d+\.\d*(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?|[A-Za-z_]\w*|'[^']*'|\"[^\"]*\"|->|[^\s\w]"
)
NNEF_OPS = (
    "conv", "deconv", "relu", "sigmoid", "max_pool", "avg_pool", "reshape", "transpose",
    "squeeze", "unsqueeze", "concat", "split", "slice", "matmul", "linear", "softmax",
    "sum_reduce", "mean_reduce", "argmax_reduce", "add", "mul", "div", "select", "clamp",
    "pad", "tile", "gather", "box", "batch_normalization", "local_response_normalization",
    "multilinear_upsample", "nearest_downsample", "copy", "external", "variable", "constant",
    "stack", "unstack", "max_pool_with_index", "argmax_pool", "sub", "pow", "exp", "log",
)  # fmt: skip
NNEF_NUMBERS = ("0", "-1", "1", "2", "3", "7", "1000000", "4294967296", "1e30", "0.5", "-0.0")


def mutate_nnef_text(draw: Draw, text: str) -> str:
    """Token-level changes: numbers (shapes, attributes), names, op names, punctuation."""
    if draw(st.integers(0, 7)) == 0:
        return mutate_bytes(draw, text.encode()).decode("latin-1")
    for _ in range(draw(st.integers(1, MAX_MUTATIONS))):
        tokens = list(_TOKEN.finditer(text))
        if not tokens:
            break
        tok = tokens[draw(st.integers(0, len(tokens) - 1))]
        word = tok.group()
        names = sorted({t.group() for t in tokens if t.group()[:1].isalpha()})
        how = draw(st.sampled_from(("replace", "replace", "delete", "duplicate", "punct")))
        if how == "delete":
            new = ""
        elif how == "duplicate":
            new = word + " " + word
        elif how == "punct":
            new = draw(st.sampled_from(list("()[]{},;:=<>-+*/'\"#")))
        elif word[:1].isdigit():
            new = draw(st.sampled_from(NNEF_NUMBERS) | st.integers(-5, 2**40).map(str))
        elif word[:1].isalpha() or word[:1] == "_":
            new = draw(st.sampled_from(names + list(NNEF_OPS)))
        elif word[:1] in "'\"":
            new = "'" + draw(st.sampled_from(STRINGS[:5] + ("conv/w", "fc/w"))) + "'"
        else:
            new = draw(st.sampled_from(list("()[]{},;:=<>")))
        text = text[: tok.start()] + new + text[tok.end() :]
    return text


def mutate_dat(draw: Draw, data: bytes) -> bytes:
    """A ``.dat`` tensor with a header field overwritten (lengths, rank, extents, bits, item
    type: little-endian u32 at 4-byte offsets) or damaged bytes."""
    if len(data) >= 128 and draw(st.booleans()):
        field = draw(st.integers(0, 15)) * 4  # magic/version .. item_type
        value = draw(st.sampled_from(INTS[:15]) | st.integers(0, 2**32 - 1)) & 0xFFFFFFFF
        return data[:field] + value.to_bytes(4, "little") + data[field + 4 :]
    return mutate_bytes(draw, data)


def _mutate_nnef_files(draw: Draw, folder: Path) -> None:
    graph = folder / "graph.nnef"
    dats = sorted(folder.rglob("*.dat"))
    for _ in range(draw(st.integers(1, 2))):
        what = draw(st.sampled_from(("text", "text", "text", "dat")))
        if what == "dat" and dats:
            dat = dats[draw(st.integers(0, len(dats) - 1))]
            dat.write_bytes(mutate_dat(draw, dat.read_bytes()))
        elif graph.exists():
            graph.write_text(mutate_nnef_text(draw, graph.read_text("latin-1")), "latin-1")


def mutate_nnef_folder(draw: Draw, seed: Seed, dest: Path) -> Path:
    dest = dest.with_suffix(".nnef")
    shutil.copytree(seed.path, dest)
    _mutate_nnef_files(draw, dest)
    return dest


def mutate_nnef_text_file(draw: Draw, seed: Seed, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "graph.nnef"
    path.write_text(mutate_nnef_text(draw, seed.path.read_text()), "latin-1")
    return path


# -- archives ------------------------------------------------------------------------------------
def _tar_header_size(header: bytes, size: int) -> bytes:
    """A 512-byte tar header with its size field set to ``size`` (base-256 when large) and the
    checksum recomputed."""
    h = bytearray(header)
    if size < 8**11:
        h[124:136] = f"{size:011o}".encode() + b"\0"
    else:
        h[124:136] = bytes([0x80]) + size.to_bytes(11, "big")
    h[148:156] = b" " * 8
    h[148:156] = f"{sum(h):06o}".encode() + b"\0 "
    return bytes(h)


def _odd_member(draw: Draw, tar: tarfile.TarFile, names: list[str]) -> None:
    kind = draw(st.sampled_from(("symlink", "hardlink", "device", "fifo", "dotdot", "abs")))
    target = draw(st.sampled_from(["/etc/passwd", "../outside", *names]))
    info = tarfile.TarInfo(draw(st.sampled_from(["graph.nnef", "x.dat", *names])))
    if kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, target
    elif kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, target
    elif kind == "device":
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    elif kind == "fifo":
        info.type = tarfile.FIFOTYPE
    elif kind == "dotdot":
        info.name = "../" + info.name
    else:
        info.name = "/tmp/" + info.name
    tar.addfile(info, io.BytesIO(b"") if info.isreg() else None)


def mutate_archive(draw: Draw, folder: Path) -> bytes:
    """The folder as a .tgz, damaged at the archive level (or not: then the files inside are
    what was mutated)."""
    how = draw(
        st.sampled_from(
            ("plain", "truncate", "flip", "huge", "odd", "drop", "double", "tar", "nested")
        )
    )
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    names = [p.relative_to(folder).as_posix() for p in files]
    if how in ("plain", "truncate", "flip"):
        data = tar_folder(folder)
        return data if how == "plain" else mutate_bytes(draw, data)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        skip = draw(st.integers(0, len(files) - 1)) if how == "drop" and files else -1
        for i, (path, name) in enumerate(zip(files, names)):
            if i == skip:
                continue
            arcname = f"model/{name}" if how == "nested" else name
            tar.add(path, arcname=arcname, recursive=False, filter=plain_member)
        if how == "odd":
            _odd_member(draw, tar, names)
        if how == "double" and (folder / "graph.nnef").exists():
            tar.add(folder / "graph.nnef", arcname="other/graph.nnef", filter=plain_member)
    raw = buf.getvalue()
    if how == "huge" and len(raw) >= 512:
        size = draw(st.sampled_from((2**33, 2**40, 10**12, 2**62)) | st.integers(0, 2**34))
        raw = _tar_header_size(raw[:512], size) + raw[512:]
    return raw if how == "tar" else gzip.compress(raw, mtime=0)


def mutate_nnef_tgz(draw: Draw, seed: Seed, dest: Path) -> Path:
    """A damaged .tgz: the files inside, the archive, or both."""
    work = dest.with_suffix(".src")
    shutil.rmtree(work, ignore_errors=True)
    with tarfile.open(seed.path) as tar:
        tar.extractall(work, filter="data")
    if draw(st.booleans()):
        _mutate_nnef_files(draw, work)
    data = mutate_archive(draw, work)
    shutil.rmtree(work, ignore_errors=True)
    dest = dest.with_suffix(".tgz")
    dest.write_bytes(data)
    return dest


MUTATORS: dict[str, Callable[[Draw, Seed, Path], Path]] = {
    "onnx": mutate_onnx,
    "mlmodel": mutate_mlmodel,
    "mlpackage": mutate_mlpackage,
    "nnef-folder": mutate_nnef_folder,
    "nnef-tgz": mutate_nnef_tgz,
    "nnef-text": mutate_nnef_text_file,
}


def mutate(draw: Draw, seed: Seed, dest: Path) -> Path:
    """A mutated copy of ``seed`` written at (or under) ``dest``, which must not exist; the
    path to give the compiler."""
    return MUTATORS[seed.kind](draw, seed, dest)
