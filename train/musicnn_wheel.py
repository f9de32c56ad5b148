"""The musicnn 0.1.0 wheel (or sdist) as a source: its MTT_musicnn TF1 checkpoint, its licence, and the original graph.

The wheel is read as an archive and never installed (it pins numpy<1.17). The original graph runs from the wheel's own
meta graph (import_meta_graph's inference part + the saver's restore op) in a private tf.Graph, so callers in eager
mode are not disturbed; it is the reference the converted Keras model is checked against.
"""

from __future__ import annotations

import ast
import hashlib
import tarfile
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

import numpy as np

from instrument_id.errors import InstrumentIdError

MODEL_NAME = "MTT_musicnn"
CHECKPOINT_SUFFIXES = (".index", ".data-00000-of-00001", ".meta")  # the checkpoint prefix is the folder itself
TRAINED_FRAMES = 187  # the meta graph's placeholder: 3 s patches

# output name -> tensors of the training meta graph (node names read from its GraphDef); several are concatenated
# on their last axis after dropping size-1 axes, as musicnn/models.py's build_musicnn does
GRAPH_OUTPUTS: dict[str, tuple[str, ...]] = {
    "taggram": ("model/Sigmoid:0",),
    "penultimate": ("model/batch_normalization_10/batchnorm/add_1:0",),
    "mean_pool": ("model/moments/Squeeze:0",),
    "max_pool": ("model/Max:0",),
    "timbral": ("model/Squeeze:0", "model/Squeeze_1:0"),
    "temporal": ("model/Squeeze_2:0", "model/Squeeze_3:0", "model/Squeeze_4:0"),
    "cnn1": ("model/transpose:0",),
    "cnn2": ("model/Add:0",),
    "cnn3": ("model/Add_1:0",),
}
FRAME_OUTPUTS = ("timbral", "temporal", "cnn1", "cnn2", "cnn3")  # per frame; the others are per window
GRAPH_INPUT = "model/Placeholder:0"  # (batch, 187, 96) log-mel
GRAPH_IS_TRAINING = "model/Placeholder_2:0"  # bool; False selects the batch norms' moving statistics


@dataclass(frozen=True)
class WheelInfo:
    """Where the converted model came from: the archive's name, version, sha256 and licence text."""

    path: Path
    name: str
    version: str
    sha256: str
    licence_text: str
    taggram_labels: tuple[str, ...]  # configuration.MTT_LABELS: the 50 MagnaTagATune tags, in output order

    def to_dict(self) -> dict[str, str]:
        """JSON-ready provenance (file name only: the path is this machine's)."""
        return {"file": self.path.name, "name": self.name, "version": self.version, "sha256": self.sha256}


def _members(path: Path) -> dict[str, bytes]:
    """{member name: bytes} of the archive's small text files and MTT_musicnn checkpoint files."""
    wanted = tuple(f"musicnn/{MODEL_NAME}/{suffix}" for suffix in CHECKPOINT_SUFFIXES)
    texts = ("METADATA", "PKG-INFO", "LICENSE.md", "LICENSE", "LICENSE.txt", "configuration.py")

    def keep(name: str) -> bool:
        return name.endswith(wanted) or name.rsplit("/", 1)[-1] in texts

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return {n: archive.read(n) for n in archive.namelist() if keep(n)}
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile() and keep(m.name)}
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise InstrumentIdError(f"{path}: cannot read the archive ({exc})") from None
    raise InstrumentIdError(f"{path}: not a wheel or sdist (neither zip nor tar)")


def _pick(members: dict[str, bytes], path: Path, *names: str) -> bytes:
    """The first member whose base name is one of names (the shortest path wins: the package's, not a vendored one)."""
    for name in names:
        found = sorted((m for m in members if m.rsplit("/", 1)[-1] == name), key=len)
        if found:
            return members[found[0]]
    raise InstrumentIdError(f"{path}: no {' or '.join(names)} in the archive; is it musicnn 0.1.0?")


def read_wheel(path: Path, checkpoint_dir: Path) -> tuple[WheelInfo, Path]:
    """Check the archive is musicnn, write its MTT_musicnn checkpoint into checkpoint_dir; (info, checkpoint prefix)."""
    path = Path(path)
    if not path.is_file():
        raise InstrumentIdError(
            f"{path}: no such file; fetch it with `pip download musicnn==0.1.0 --no-deps -d .cache/musicnn`"
        )
    members = _members(path)
    metadata = HeaderParser().parsestr(_pick(members, path, "METADATA", "PKG-INFO").decode("utf-8", "replace"))
    if (metadata.get("Name") or "").lower() != "musicnn":
        raise InstrumentIdError(f"{path}: the archive is {metadata.get('Name')!r}, not musicnn")
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for suffix in CHECKPOINT_SUFFIXES:
        found = sorted((m for m in members if m.endswith(f"musicnn/{MODEL_NAME}/{suffix}")), key=len)
        if not found:
            raise InstrumentIdError(f"{path}: musicnn/{MODEL_NAME}/{suffix} is missing from the archive")
        (checkpoint_dir / suffix).write_bytes(members[found[0]])
    info = WheelInfo(
        path=path, name=metadata["Name"], version=metadata.get("Version") or "unknown",
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        licence_text=_pick(members, path, "LICENSE.md", "LICENSE", "LICENSE.txt").decode("utf-8"),
        taggram_labels=_mtt_labels(_pick(members, path, "configuration.py"), path),
    )
    return info, checkpoint_dir


def _mtt_labels(source: bytes, path: Path) -> tuple[str, ...]:
    """MTT_LABELS from musicnn/configuration.py, read as a literal (the file is never executed)."""
    for node in ast.parse(source.decode("utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MTT_LABELS" for t in node.targets):
            labels = tuple(ast.literal_eval(node.value))
            if len(labels) == 50:
                return labels
    raise InstrumentIdError(f"{path}: musicnn/configuration.py has no 50-entry MTT_LABELS")


def read_checkpoint(prefix: Path) -> dict[str, np.ndarray]:
    """{variable name: value} of the checkpoint (Adam slots and step counters left out)."""
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(str(prefix) + "/")
    names = [n for n in reader.get_variable_to_shape_map() if "Adam" not in n and not n.startswith("beta")]
    return {name: reader.get_tensor(name) for name in names}


def _inference_part(graph_def: "GraphDef", wanted: list[str]) -> "GraphDef":  # noqa: F821
    """The nodes `wanted` depend on, without _output_shapes or devices (tf's extract_sub_graph, which is deprecated)."""
    from tensorflow.core.framework import graph_pb2

    by_name = {node.name: node for node in graph_def.node}
    keep, stack = set(), list(wanted)
    while stack:
        name = stack.pop()
        if name not in keep:
            keep.add(name)
            stack.extend(i.lstrip("^").split(":")[0] for i in by_name[name].input)
    part = graph_pb2.GraphDef(versions=graph_def.versions, library=graph_def.library)
    for node in graph_def.node:
        if node.name in keep:
            copy = part.node.add()
            copy.CopyFrom(node)
            copy.attr.pop("_output_shapes", None)
            copy.device = ""
    return part


class OriginalGraph:
    """musicnn's own TF1 graph restored from the checkpoint, any frame count; run() gives every GRAPH_OUTPUTS entry."""

    def __init__(self, prefix: Path) -> None:
        import tensorflow as tf
        from tensorflow.core.protobuf import meta_graph_pb2

        meta = meta_graph_pb2.MetaGraphDef()
        meta.ParseFromString((prefix / ".meta").read_bytes())
        saver = meta.saver_def
        wanted = sorted({t.split(":")[0] for ts in GRAPH_OUTPUTS.values() for t in ts} | {saver.restore_op_name})
        # the training graph's gradients carry stale _output_shapes that TF 2.x refuses; keep inference + restore only
        graph_def = _inference_part(meta.graph_def, wanted)
        for node in graph_def.node:  # dropout's unseeded random ops fail to build where TF op determinism is on
            if "seed2" in node.attr and node.attr["seed"].i == 0 and node.attr["seed2"].i == 0:
                node.attr["seed2"].i = 1  # (Keras training enables it); at inference (is_training False) they never run
        self._graph = tf.Graph()
        with self._graph.as_default():
            # a placeholder with free frames replaces the 187-frame one, so 2 s windows run through the same nodes
            self._input = tf.compat.v1.placeholder(tf.float32, [None, None, 96], name="logmel")
            tf.graph_util.import_graph_def(graph_def, input_map={GRAPH_INPUT: self._input}, name="")
            self._session = tf.compat.v1.Session(graph=self._graph)
            self._session.run(saver.restore_op_name, {saver.filename_tensor_name: str(prefix) + "/"})
        self._fetches = {name: [self._graph.get_tensor_by_name(t) for t in ts] for name, ts in GRAPH_OUTPUTS.items()}

    def run(self, logmel: np.ndarray) -> dict[str, np.ndarray]:
        """(n, frames, 96) log-mel -> {name: (n, width) or (n, frames, width)} from the original graph."""
        feed = {self._input: np.asarray(logmel, np.float32), GRAPH_IS_TRAINING: False}
        raw = self._session.run(self._fetches, feed)
        out = {}
        for name, parts in raw.items():
            keep = 2 if name in FRAME_OUTPUTS else 1  # (n, frames, width) or (n, width) once size-1 axes are gone
            squeezed = [p.reshape(p.shape[:keep] + (-1,)) for p in parts]
            out[name] = np.concatenate(squeezed, axis=-1)
        return out

    def close(self) -> None:
        """Release the session."""
        self._session.close()
