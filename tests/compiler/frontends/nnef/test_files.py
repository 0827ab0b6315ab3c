"""NNEF model files: folders, ``.tgz`` archives and bare graph texts, read safely. Every bad
input is one clear line of an nnxc error, and no temporary folder is left behind."""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from nnefutil import write_model

from backends.reference import run_graph
from compiler.errors import ModelLoadError, NnxcError, ResourceLimitError, UnsupportedOpsError
from compiler.frontends.nnef import files as nnef_files
from compiler.frontends.nnef import import_nnef
from compiler.frontends.nnef.files import read_dat
from compiler.frontends.nnef.registry import CONVERTERS
from compiler.limits import memory_limit

RNG = np.random.default_rng(0)
W = RNG.standard_normal((2, 3)).astype(np.float32)
X = RNG.standard_normal((2, 3)).astype(np.float32)

ADD_W = (
    "graph G( x ) -> ( y )\n{\n"
    "  x = external<scalar>(shape = [2, 3]);\n"
    "  w = variable<scalar>(shape = [2, 3], label = '{label}');\n"
    "  y = x + w;\n}"
)


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Temporary folders go to a folder of the test's own, which must hold no unpacked model
    afterwards (removed on success and on error alike)."""
    tmp = tmp_path / "systmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp
    assert not list(tmp.glob("nnxc-nnef-*")), "an unpacked model was left behind"


def _model(folder: Path, label: str = "w", data: np.ndarray = W) -> Path:
    return write_model(folder, ADD_W.replace("{label}", label), {label.lstrip("/"): data})


def _run(path: Path) -> np.ndarray:
    graph, _, _ = import_nnef(path)
    return run_graph(graph, {"x": X})["y"]


def _tgz(folder: Path, out: Path, prefix: str = "") -> Path:
    """``folder``'s files in a gzipped tar, under ``prefix`` (as nnef-tools writes them when
    the prefix is empty)."""
    with tarfile.open(out, "w:gz") as tar:
        for f in sorted(folder.rglob("*")):
            tar.add(f, prefix + f.relative_to(folder).as_posix(), recursive=False)
    return out


def _tar_with(out: Path, *members: tuple[tarfile.TarInfo, bytes | None], model: Path | None = None):
    """A gzipped tar of ``model``'s files (if given) and then hand-made members."""
    with tarfile.open(out, "w:gz") as tar:
        if model is not None:
            for f in sorted(model.iterdir()):
                tar.add(f, f.name)
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = link
    return info, data if kind == tarfile.REGTYPE else None


def _error(path: Path, kind: type[NnxcError] = ModelLoadError) -> str:
    """The one-line message of the error importing ``path`` raises."""
    with pytest.raises(NnxcError) as info:
        import_nnef(path)
    assert isinstance(info.value, kind), repr(info.value)
    msg = str(info.value)
    assert msg and "\n" not in msg.strip(), msg
    return msg


# -- good paths ---------------------------------------------------------------------------------
def test_folder(tmp_path: Path) -> None:
    np.testing.assert_allclose(_run(_model(tmp_path / "m")), X + W, rtol=1e-6)


@pytest.mark.parametrize("name", ["m.tgz", "m.nnef.tgz", "m.tar.gz"])
def test_archive(tmp_path: Path, name: str, private_tmp: Path) -> None:
    """nnef-tools' layout (files at the top); the weights outlive the unpacked folder."""
    archive = _tgz(_model(tmp_path / "m"), tmp_path / name)
    graph, shown, _ = import_nnef(archive)
    assert shown == name
    assert not list(private_tmp.glob("nnxc-nnef-*"))
    np.testing.assert_allclose(run_graph(graph, {"x": X})["y"], X + W, rtol=1e-6)


def test_archive_with_the_model_in_a_subfolder(tmp_path: Path) -> None:
    archive = _tgz(_model(tmp_path / "m"), tmp_path / "m.tgz", prefix="deep/model.nnef/")
    np.testing.assert_allclose(_run(archive), X + W, rtol=1e-6)


def test_archive_named_nnef(tmp_path: Path) -> None:
    """A ``.nnef`` file that is really a ``.tgz`` is unpacked, not parsed as text."""
    archive = _tgz(_model(tmp_path / "m"), tmp_path / "m.nnef")
    np.testing.assert_allclose(_run(archive), X + W, rtol=1e-6)


def test_bare_graph_text(tmp_path: Path) -> None:
    folder = write_model(
        tmp_path / "m",
        "graph G( x ) -> ( y )\n{\n  x = external<scalar>(shape = [2, 3]);\n"
        "  c = constant<scalar>(shape = [1, 3], value = [1.0, 2.0, 3.0]);\n  y = x * c;\n}",
    )
    graph, name, sha = import_nnef(folder / "graph.nnef")
    assert name == "graph.nnef"
    assert sha == hashlib.sha256((folder / "graph.nnef").read_bytes()).hexdigest()
    np.testing.assert_allclose(run_graph(graph, {"x": X})["y"], X * [1, 2, 3], rtol=1e-6)


def test_bare_graph_text_with_variables_asks_for_the_folder(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m")
    assert "give the model folder or .tgz" in _error(folder / "graph.nnef")


def test_folder_named_dot_nnef(tmp_path: Path) -> None:
    np.testing.assert_allclose(_run(_model(tmp_path / "x.nnef")), X + W, rtol=1e-6)


def test_label_with_one_leading_slash_is_in_the_folder(tmp_path: Path) -> None:
    """As the Khronos loader reads it: ``'/w'`` is ``w.dat`` in the model's folder."""
    np.testing.assert_allclose(_run(_model(tmp_path / "m", label="/w")), X + W, rtol=1e-6)


def test_label_in_a_subfolder(tmp_path: Path) -> None:
    np.testing.assert_allclose(_run(_model(tmp_path / "m", label="sub/w")), X + W, rtol=1e-6)


def test_relative_model_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _model(tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    np.testing.assert_allclose(_run(Path("m")), X + W, rtol=1e-6)


def test_bool_1_bit_dat(tmp_path: Path) -> None:
    mask = RNG.random((2, 3)) < 0.5  # 6 bits: one byte, packed MSB first
    folder = write_model(
        tmp_path / "m",
        "graph G( x ) -> ( y )\n{\n  x = external<scalar>(shape = [2, 3]);\n"
        "  m = variable<logical>(shape = [2, 3], label = 'm');\n  y = select(m, x, 0.0);\n}",
        {"m": mask},
    )
    raw = (folder / "m.dat").read_bytes()
    assert len(raw) == 128 + 1 and raw[128] == int("".join("01"[int(b)] for b in mask.flat), 2) << 2
    np.testing.assert_array_equal(_run(folder), np.where(mask, X, 0))


def test_float16_dat(tmp_path: Path) -> None:
    half = W.astype(np.float16)
    np.testing.assert_array_equal(_run(_model(tmp_path / "m", data=half)), X + half.astype("f4"))


def _dat_file(path: Path, item_type: int, bits: int, shape: list[int], payload: bytes) -> Path:
    header = np.zeros((), nnef_files._HEADER)
    header["magic"] = [0x4E, 0xEF]
    header["version"] = [1, 0]
    header["data_length"] = len(payload)
    header["rank"] = len(shape)
    header["extents"][: len(shape)] = shape
    header["bits"] = bits
    header["item_type"] = item_type
    path.write_bytes(header.tobytes() + payload)
    return path


@pytest.mark.parametrize("bits", [1, 3, 4, 7, 12])
@pytest.mark.parametrize("signed", [True, False])
def test_sub_byte_integers(tmp_path: Path, bits: int, signed: bool) -> None:
    """Items of any width, packed one after another MSB first (as nnef/common/binary.h)."""
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    values = RNG.integers(lo, hi, size=(3, 5))
    stream = "".join(format(int(v) & ((1 << bits) - 1), f"0{bits}b") for v in values.flat)
    stream += "0" * (-len(stream) % 8)
    payload = bytes(int(stream[i : i + 8], 2) for i in range(0, len(stream), 8))
    kind = nnef_files.QINT if signed else nnef_files.QUINT
    dat = read_dat(_dat_file(tmp_path / "q.dat", kind, bits, [3, 5], payload), [3, 5], "q")
    assert dat.quantized and dat.bits == bits
    np.testing.assert_array_equal(dat.data, values)


def test_sub_byte_integers_in_several_chunks(tmp_path: Path) -> None:
    values = RNG.integers(-4, 4, size=(3, 70001))  # more than one decoding chunk of items
    stream = "".join(format(int(v) & 7, "03b") for v in values.flat)
    stream += "0" * (-len(stream) % 8)
    payload = np.packbits(np.frombuffer(stream.encode(), np.uint8) - ord("0")).tobytes()
    dat = read_dat(
        _dat_file(tmp_path / "q.dat", nnef_files.INT, 3, [3, 70001], payload), [3, 70001], "q"
    )
    np.testing.assert_array_equal(dat.data, values)


def test_folder_hash_covers_every_dat(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m")
    _, _, before = import_nnef(folder)
    _, _, again = import_nnef(folder)
    assert before == again
    _model(folder, data=W + 1)
    _, _, after = import_nnef(folder)
    assert after != before


def test_archive_hash_is_of_its_bytes(tmp_path: Path) -> None:
    archive = _tgz(_model(tmp_path / "m"), tmp_path / "m.tgz")
    _, _, sha = import_nnef(archive)
    assert sha == hashlib.sha256(archive.read_bytes()).hexdigest()


# -- bad graph texts and tensor files -----------------------------------------------------------
def test_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    folder = write_model(
        tmp_path / "m",
        "graph G( x ) -> ( y )\n{\n  x = external<scalar>(shape = [2, 3]);\n  y = relu(x) +;\n}",
    )
    msg = _error(folder)
    # line 1 version, 2 extension, 3 fragments (none), 4 graph, 5 {, 6 external, 7 the error
    assert "m: Parse error in graph.nnef line 7, column 16:" in msg, msg
    assert str(tmp_path) not in msg


def test_syntax_error_in_an_archive_does_not_name_the_temporary_folder(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", "graph G( x ) -> ( y )\n{\n  x = external(;\n}")
    msg = _error(_tgz(folder, tmp_path / "m.tgz"))
    assert msg.startswith("m.tgz: Parse error in graph.nnef line 6") and "nnxc-nnef" not in msg


def test_binary_graph_file(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "graph.nnef").write_bytes(bytes(range(256)) * 4)
    assert "not text" in _error(tmp_path / "m")


def test_missing_dat(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m")
    (folder / "w.dat").unlink()
    assert "variable 'w' (label 'w'): tensor file w.dat is missing" in _error(folder)


def test_missing_dat_in_an_archive(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m")
    (folder / "w.dat").unlink()
    assert "is missing" in _error(_tgz(folder, tmp_path / "m.tgz"))


@pytest.mark.parametrize("keep", [10, 128, 128 + 23])
def test_truncated_dat(tmp_path: Path, keep: int) -> None:
    folder = _model(tmp_path / "m")
    path = folder / "w.dat"
    path.write_bytes(path.read_bytes()[:keep])
    assert "truncated" in _error(folder)


def test_dat_shape_disagrees_with_the_declaration(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m", data=W.T.copy())
    assert "holds a tensor of shape [3, 2], the graph declares [2, 3]" in _error(folder)


def test_dat_bad_magic(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m")
    path = folder / "w.dat"
    path.write_bytes(b"PK" + path.read_bytes()[2:])
    assert "not an NNEF tensor file (bad magic)" in _error(folder)


def test_dat_floats_for_an_integer_variable(tmp_path: Path) -> None:
    folder = write_model(
        tmp_path / "m",
        "graph G( x ) -> ( y )\n{\n  x = external<integer>(shape = [2, 3]);\n"
        "  w = variable<integer>(shape = [2, 3], label = 'w');\n  y = copy(w);\n}",
        {"w": W},
    )
    assert "32-bit floats; a integer variable needs integers" in _error(folder)


@pytest.mark.parametrize("label", ["../w", "sub/../../w", "//abs/w", "\\w"])
def test_label_leaving_the_folder_is_refused_before_reading(tmp_path: Path, label: str) -> None:
    """Even where the file it names exists (next to the model folder)."""
    write_model(tmp_path, "graph G( x ) -> ( x )\n{\n  x = external(shape = [1]);\n}", {"w": W})
    folder = write_model(tmp_path / "m", ADD_W.replace("{label}", label))
    msg = _error(folder)
    assert f"m: variable 'w': variable label {label!r}" in msg and "refused" in msg


def test_label_through_a_symlink_out_of_the_folder(tmp_path: Path) -> None:
    outside = write_model(tmp_path / "elsewhere", "graph G( x ) -> ( x )\n{}", {"w": W})
    folder = write_model(tmp_path / "m", ADD_W.replace("{label}", "link/w"))
    (folder / "link").symlink_to(outside, target_is_directory=True)
    assert "resolves outside the model's folder" in _error(folder)


# -- bad archives --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("member", "needle"),
    [
        (_member("../evil.dat", data=b"x"), "leaves the archive's folder"),
        (_member("sub/../../evil.dat", data=b"x"), "leaves the archive's folder"),
        (_member("/tmp/evil.dat", data=b"x"), "absolute path"),
        (_member("link.dat", tarfile.SYMTYPE, link="/etc/passwd"), "is a link"),
        (_member("inside.dat", tarfile.SYMTYPE, link="w.dat"), "is a link"),
        (_member("hard.dat", tarfile.LNKTYPE, link="w.dat"), "is a link"),
        (_member("dev", tarfile.CHRTYPE), "not a regular file or folder"),
        (_member("blk", tarfile.BLKTYPE), "not a regular file or folder"),
        (_member("fifo", tarfile.FIFOTYPE), "not a regular file or folder"),
    ],
)
def test_archive_with_a_bad_member(tmp_path: Path, member, needle: str) -> None:
    archive = _tar_with(tmp_path / "m.tgz", member, model=_model(tmp_path / "m"))
    msg = _error(archive)
    assert needle in msg and msg.startswith(str(archive)), msg
    assert not (tmp_path / "evil.dat").exists() and not Path("/tmp/evil.dat").exists()


def test_archive_past_the_size_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _tgz(_model(tmp_path / "m"), tmp_path / "m.tgz")
    monkeypatch.setenv("NNXC_MAX_ARCHIVE_BYTES", "1000")
    assert "unpacks to more than NNXC_MAX_ARCHIVE_BYTES=1000 bytes; refused" in _error(archive)
    monkeypatch.setenv("NNXC_MAX_ARCHIVE_BYTES", "1 GB")
    assert "NNXC_MAX_ARCHIVE_BYTES='1 GB': give a number of bytes" in _error(archive)


def test_gzip_bomb_by_ratio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """8 MiB of zeros pack into about 8 KiB: refused before they are decompressed."""
    monkeypatch.setattr(nnef_files, "MIN_EXPANSION_BOUND", 1 << 20)
    zeros = _member("zeros.dat", data=bytes(8 << 20))
    archive = _tar_with(tmp_path / "m.tgz", zeros, model=_model(tmp_path / "m"))
    assert archive.stat().st_size < 64 << 10
    msg = _error(archive)
    assert f"{nnef_files.MAX_EXPANSION} times its size" in msg and "compression bomb" in msg


def test_archive_without_graph(tmp_path: Path) -> None:
    archive = _tar_with(tmp_path / "m.tgz", _member("w.dat", data=b"x"))
    assert "the archive holds no graph.nnef" in _error(archive)


def test_archive_with_two_models(tmp_path: Path) -> None:
    model = _model(tmp_path / "m")
    graph = (model / "graph.nnef").read_bytes()
    archive = _tar_with(
        tmp_path / "m.tgz", _member("a/graph.nnef", data=graph), _member("b/graph.nnef", data=graph)
    )
    assert "the archive holds several models (a/graph.nnef, b/graph.nnef)" in _error(archive)


@pytest.mark.parametrize("data", [b"", b"not an archive at all\n" * 50, b"\x1f\x8b\x08garbage"])
def test_not_an_archive(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "m.tgz").write_bytes(data)
    assert "not a readable .tgz archive" in _error(tmp_path / "m.tgz")


def test_truncated_archive(tmp_path: Path) -> None:
    archive = _tgz(_model(tmp_path / "m", data=RNG.standard_normal((2, 3))), tmp_path / "m.tgz")
    archive.write_bytes(archive.read_bytes()[:-40])
    assert "not a readable .tgz archive" in _error(archive)


def test_missing_model(tmp_path: Path) -> None:
    assert "no such file or folder" in _error(tmp_path / "none.tgz")


def test_folder_without_graph(tmp_path: Path) -> None:
    (tmp_path / "x.nnef").mkdir()
    assert "a folder without graph.nnef" in _error(tmp_path / "x.nnef")


# -- unsupported ops -----------------------------------------------------------------------------
FRAGMENTS = """
fragment forever( x: tensor<scalar> ) -> ( y: tensor<scalar> )
{
  y = forever(x);
}
fragment deep( x: tensor<scalar> ) -> ( y: tensor<scalar> ) { y = forever(-x); }
fragment frob( x: tensor<scalar> ) -> ( y: tensor<scalar> );
fragment twice( x: tensor<scalar>, n: integer ) -> ( y: tensor<scalar> )
{
  y = twice(2.0 * x, n = n - 1) if n > 0 else x;  # recursive, but it ends: expanded
}
"""


def test_unsupported_ops_listed_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fragments the parser cannot expand (recursive without end: it would crash the parser,
    so nnxc tries in a child process; declared without a body) and an op nnxc has no
    converter for, in one error."""
    monkeypatch.delitem(CONVERTERS._versions, ("", "exp"))
    folder = write_model(
        tmp_path / "m",
        "graph G( x ) -> ( a, b, c, d, e )\n{\n  x = external<scalar>(shape = [2, 3]);\n"
        "  a = forever(x);\n  b = deep(x);\n  c = frob(x);\n  d = exp(x);\n"
        "  e = twice(x, n = 3);\n}",
        fragments=FRAGMENTS,
    )
    msg = _error(folder, UnsupportedOpsError)
    assert msg.startswith("3 unsupported op type(s) in m: "), msg
    assert ": a recursive fragment the NNEF parser cannot expand" in msg
    assert "deep" not in msg  # expanded into neg and forever
    assert "forever x2 (e.g. a, " in msg
    assert "frob x1 (e.g. c): a fragment declared without a body" in msg
    assert "exp x1 (e.g. d)" in msg
    assert "twice" not in msg


def test_recursive_fragment_that_ends_is_expanded(tmp_path: Path) -> None:
    folder = write_model(
        tmp_path / "m",
        "graph G( x ) -> ( y )\n{\n  x = external<scalar>(shape = [2, 3]);\n"
        "  y = twice(x, n = 3);\n}",
        fragments=FRAGMENTS,
    )
    graph, _, _ = import_nnef(folder)
    np.testing.assert_allclose(run_graph(graph, {"x": X})["y"], 8 * X, rtol=1e-6)


def test_fragment_scan() -> None:
    calls = nnef_files.fragment_calls(
        FRAGMENTS + "# fragment ghost( x: tensor<scalar> ) -> ( y: tensor<scalar> ) { }\n"
    )
    assert calls == {
        "forever": {"forever"},
        "deep": {"forever"},
        "frob": None,
        "twice": {"twice"},
    }
    assert nnef_files.recursive_fragments(calls) == {"forever", "twice"}


def test_constant_of_a_trillion_elements_is_refused_before_allocating(tmp_path: Path) -> None:
    folder = write_model(
        tmp_path / "m",
        "graph G( x ) -> ( y )\n{\n  x = external<scalar>(shape = [1]);\n"
        "  c = constant<scalar>(shape = [1000000, 1000000], value = [0.0]);\n  y = x + c;\n}",
    )
    msg = _error(folder, ResourceLimitError)
    assert "constant 'c' of shape [1000000, 1000000] needs 3.6 TiB" in msg


def test_dat_over_the_memory_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m")
    with memory_limit(16):  # w is 2x3 float32: 24 bytes
        assert "variable 'w' (label 'w') of shape [2, 3] needs 24 B" in _error(
            folder, ResourceLimitError
        )


def test_member_declaring_a_terabyte_is_refused_by_its_header(tmp_path: Path) -> None:
    """A tar header may declare any size: the bound holds before any data is read."""
    info, _ = _member("huge.dat")
    info.size = 1 << 40
    archive = tmp_path / "m.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(info)  # the header only: the archive stays a few hundred bytes
    assert archive.stat().st_size < 1 << 10
    assert "unpacks to more than" in _error(archive)
