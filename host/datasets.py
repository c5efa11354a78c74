"""Your data as a :class:`~pgt.tasks.Task`: files (``.npz``, ``.csv``, IDX plain or ``.gz``) or arrays.

Every defect is refused with one :class:`~pgt.errors.UserError` line before any device is touched: a file that
is not what its extension says, a missing column, ragged rows, NaN/inf, x/y length mismatch, fewer than two
classes, labels that are not integers for classification, a split too small.

* **Loss.** Integer (or text) labels select classification (cross-entropy, accuracy); float targets select
  regression (mean-squared error, NMSE = MSE / var(y)); ``loss="ce"``/``"mse"`` overrides.
* **Split rule.** Ready-made ``x_val``/``x_test`` (``.npz``) or a second IDX pair (the test set) are used as
  given; what is missing is carved from the rest by one shuffle fixed by ``split_seed`` (default 0, not the run's
  seed): 20 % test, then 10 % validation (of all samples), the rest training.
* **Scaling** (statistics from the training split only, stored with the model): ``global`` (default) maps the
  training inputs' overall min..max to 0..1 (one map for all features: right for pixels and for windows of one
  signal); ``feature`` gives each feature zero mean and unit variance (tabular data in mixed units); ``none``.
  Regression targets are standardised the same way (from the training split) and predictions mapped back.
* **Shapes.** ``x`` of ``(n, d)`` is a vector task (the MLP), ``(n, T, d)`` a sequence task (the transformer);
  IDX images ``(n, rows, cols)`` are flattened to vectors.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

Array = np.ndarray
SCALINGS = ("global", "feature", "none")
LOSSES = ("ce", "mse")
LABEL_KEY = "_label"
"""In :func:`read_arrays`' result for a CSV: the label column's name."""
TEST, VAL = 0.2, 0.1
"""Fractions of all samples carved for test and validation when a file gives none."""
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Task:
    """A train/validation/test split of inputs and targets, and its description ``info`` (see :mod:`pgt.tasks`)."""

    name: str
    x_train: Array
    y_train: Array
    x_val: Array
    y_val: Array
    x_test: Array
    y_test: Array
    info: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_arrays(x: Any, y: Any, **options: Any) -> Task:
        """Your data as a task: checked, split and scaled (see :func:`from_arrays`)."""
        return from_arrays(x, y, **options)


# -- reading files ------------------------------------------------------------------------------------------
def _open_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix == ".gz":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise UserError(f"{path} is not a gzip file ({exc})") from None
    return raw


def read_idx(path: Path) -> Array:
    """One IDX file (as MNIST ships them, plain or ``.gz``) as an array of its stored shape."""
    raw = _open_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or not 1 <= raw[3] <= 4:
        raise UserError(f"{path} is not an IDX file (no IDX magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise UserError(f"{path}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    need = int(np.prod(shape)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != need:
        raise UserError(f"{path}: IDX header says {shape} ({need} bytes of data) but the file holds {len(body)}")
    return np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _read_npz(path: Path) -> dict[str, Array]:
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not an .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as exc:
        raise UserError(f"{path}: an array holds Python objects (ragged rows?), which pgt does not load ({exc})") \
            from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is not a readable .npz file ({exc})") from None
    if "x" not in arrays:
        raise UserError(f"{path} has no array 'x' (it holds {', '.join(arrays) or 'nothing'}); see `pgt train --help`")
    unknown = set(arrays) - {"x", "y", "x_val", "y_val", "x_test", "y_test"}
    if unknown:
        raise UserError(f"{path}: unknown arrays {', '.join(sorted(unknown))} (pgt reads x, y, x_val, y_val, x_test, "
                        "y_test)")
    return arrays


def _column(values: list[str], name: str, path: Path) -> Array:
    """A CSV column as int64 (every entry an integer literal), float64, or text (class names)."""
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        pass
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return np.array(values, dtype=str)


def _read_csv(path: Path, label: str | None, need_label: bool = True) -> dict[str, Array]:
    raw = _open_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a CSV text file (not UTF-8)") from None
    if "\x00" in text:
        raise UserError(f"{path} is not a CSV text file (binary content)")
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise UserError(f"{path}: a CSV needs a header line and at least one row")
    header = [h.strip() for h in rows[0]]
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise UserError(f"{path}: ragged rows: line {i} has {len(r)} fields, the header has {len(header)}")
    if label is not None and label not in header:
        raise UserError(f"{path}: no column {label!r} (columns: {', '.join(header)})")
    cols = list(zip(*rows[1:]))
    if not need_label and (label is None or label not in header):
        target = None
    else:
        target = header.index(label) if label is not None else len(header) - 1
    if target is not None and len(header) < 2:
        raise UserError(f"{path}: one column only: no inputs beside the label {header[0]!r}")
    xs = []
    for j, name in enumerate(header):
        if j == target:
            continue
        col = _column([c.strip() for c in cols[j]], name, path)
        if col.dtype.kind == "U":
            bad = next(v for v in col if not _is_number(v))
            raise UserError(f"{path}: column {name!r} is not numeric (value {str(bad)!r})")
        xs.append(col.astype(np.float64))
    out = {"x": np.stack(xs, axis=1)}
    if target is not None:
        out["y"] = _column([c.strip() for c in cols[target]], header[target], path)
        out[LABEL_KEY] = np.array(header[target])
    return out


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _read_idx_files(paths: list[Path]) -> dict[str, Array]:
    if len(paths) not in (2, 4):
        raise UserError("IDX data comes as images and labels together: --data IMAGES,LABELS "
                        "(and optionally TEST_IMAGES,TEST_LABELS)")
    out: dict[str, Array] = {}
    for suffix, pair in (("", paths[:2]), ("_test", paths[2:])):
        if not pair:
            continue
        a, b = (read_idx(p) for p in pair)
        images, labels = (a, b) if a.ndim >= b.ndim else (b, a)
        if labels.ndim != 1 or images.ndim < 2:
            raise UserError(f"{pair[0]}, {pair[1]}: expected one image file (2 or more dimensions) and one label "
                            f"file (1 dimension), got shapes {a.shape} and {b.shape}")
        out["x" + suffix] = images.reshape(len(images), -1)
        out["y" + suffix] = labels
    return out


def is_idx(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith(".idx") or "-idx" in name or name.endswith("ubyte")


def read_arrays(spec: str, label: str | None = None, need_label: bool = True) -> dict[str, Array]:
    """The arrays in a ``--data`` argument: one ``.npz`` or ``.csv`` (``.gz`` allowed), or IDX files joined by
    commas (images and labels; optionally test images and labels)."""
    paths = [Path(p) for p in spec.split(",") if p]
    if not paths:
        raise UserError("--data needs a file")
    for p in paths:
        if not p.is_file():
            raise UserError(f"no such file: {p}")
    if all(is_idx(p) for p in paths):
        if label is not None:
            raise UserError("--label names a CSV column; IDX data has its labels in their own file")
        if len(paths) == 1 and not need_label:  # images to predict on
            images = read_idx(paths[0])
            return {"x": images.reshape(len(images), -1) if images.ndim > 1 else images[:, None]}
        return _read_idx_files(paths)
    if len(paths) > 1:
        raise UserError(f"--data takes one .npz or .csv file (several files only for IDX data), got {spec!r}")
    path = paths[0]
    kind = path.name.lower().removesuffix(".gz").rsplit(".", 1)[-1]
    if kind == "npz" and path.suffix != ".gz":
        if label is not None:
            raise UserError("--label names a CSV column; an .npz file has its labels in 'y'")
        return _read_npz(path)
    if kind == "csv":
        return _read_csv(path, label, need_label)
    raise UserError(f"{path}: unknown data format (pgt reads .npz, .csv, .csv.gz and IDX files such as "
                    "train-images-idx3-ubyte.gz)")


# -- checks, split and scaling ----------------------------------------------------------------------------
def _numeric(name: str, a: Array, what: str) -> Array:
    if a.dtype.kind not in "biuf":
        raise UserError(f"{what}: {name} is not numeric (dtype {a.dtype})")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        bad = int(np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(axis=1))[0]) if a.ndim else 0
        raise UserError(f"{what}: {name} holds NaN or inf (first at sample {bad})")
    return a


def _loss_for(ys: list[Array], loss: str | None, what: str) -> str:
    kinds = {y.dtype.kind for y in ys}
    if loss is None:
        return "mse" if kinds <= set("f") and kinds else "ce"
    if loss not in LOSSES:
        raise UserError(f"unknown loss {loss!r} (choose ce for classification or mse for regression)")
    if loss == "ce":
        for y in ys:
            if y.dtype.kind == "f" and np.any(y != np.round(y)):
                raise UserError(f"{what}: labels are not integers (e.g. {y[y != np.round(y)][0]!r}); classification "
                                "needs integer labels (or use --loss mse for regression)")
    elif kinds & set("U"):
        raise UserError(f"{what}: targets are text; regression (--loss mse) needs numbers")
    return loss


def scaling(x: Array, rule: str) -> tuple[Array, Array]:
    """``(shift, scale)`` with ``x_model = (x - shift) * scale``, from training inputs ``x`` by ``rule``."""
    feat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    if rule == "none":
        return np.zeros(1), np.ones(1)
    if rule == "global":
        lo, hi = float(feat.min()), float(feat.max())
        return np.array([lo]), np.array([1.0 / (hi - lo) if hi > lo else 1.0])
    if rule == "feature":
        sd = feat.std(axis=0)
        return feat.mean(axis=0), np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 1.0)
    raise UserError(f"unknown scaling {rule!r} (choose {', '.join(SCALINGS)})")


def from_arrays(
    x: Any, y: Any, name: str = "data", loss: str | None = None, scale: str = "global", split_seed: int = 0,
    x_val: Any = None, y_val: Any = None, x_test: Any = None, y_test: Any = None, what: str = "data",
) -> Task:
    """A :class:`Task` from arrays: checked, split and scaled as the module docstring says (also
    ``pgt.Task.from_arrays``). ``x`` is ``(n, d)`` or ``(n, T, d)``; ``y`` is ``(n,)`` labels or ``(n,)``/
    ``(n, t)`` regression targets."""
    if scale not in SCALINGS:
        raise UserError(f"unknown scaling {scale!r} (choose {', '.join(SCALINGS)})")
    parts: dict[str, tuple[Array, Array]] = {}
    for part, xa, ya in (("", x, y), ("_val", x_val, y_val), ("_test", x_test, y_test)):
        if xa is None and ya is None:
            continue
        if xa is None or ya is None:
            raise UserError(f"{what}: x{part} and y{part} come together (one of them is missing)")
        try:
            xa, ya = np.asarray(xa), np.asarray(ya)
        except ValueError:
            raise UserError(f"{what}: ragged rows in x{part} or y{part}") from None
        if xa.dtype == object or ya.dtype == object:
            raise UserError(f"{what}: ragged rows in x{part} or y{part}")
        _numeric("x" + part, xa, what)
        if ya.dtype.kind != "U":
            _numeric("y" + part, ya, what)
        if xa.ndim not in (2, 3) or xa.shape[0] == 0 or 0 in xa.shape:
            raise UserError(f"{what}: x{part} must be (samples, features) or (samples, tokens, features), "
                            f"got shape {xa.shape}")
        if ya.ndim not in (1, 2):
            raise UserError(f"{what}: y{part} must be (samples,) or (samples, targets), got shape {ya.shape}")
        if len(xa) != len(ya):
            raise UserError(f"{what}: x{part} has {len(xa)} samples but y{part} has {len(ya)}")
        parts[part] = (xa, ya)
    if "" not in parts:
        raise UserError(f"{what}: no training data (x and y)")
    shapes = {p: xa.shape[1:] for p, (xa, _) in parts.items()}
    if len(set(shapes.values())) > 1:
        raise UserError(f"{what}: inputs of different shapes: " + ", ".join(f"x{p} {s}" for p, s in shapes.items()))
    loss = _loss_for([ya for _, ya in parts.values()], loss, what)
    x_all, y_all = parts[""]
    if loss == "ce" and y_all.ndim != 1:
        raise UserError(f"{what}: classification labels must be one per sample, got shape {y_all.shape}")
    # the split: what the file does not give is carved from x, y by one shuffle fixed by split_seed
    order = np.random.default_rng(split_seed).permutation(len(y_all))
    n_test = 0 if "_test" in parts else int(round(TEST * len(order)))
    n_val = 0 if "_val" in parts else int(round(VAL * len(order)))
    te, va, tr = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    split = {"train": (x_all[tr], y_all[tr]),
             "val": parts.get("_val", (x_all[va], y_all[va])), "test": parts.get("_test", (x_all[te], y_all[te]))}
    for part, (_, ya) in split.items():
        if len(ya) < 2:
            raise UserError(f"{what}: the {part} split has {len(ya)} sample{'s' * (len(ya) != 1)}: too few "
                            f"({len(y_all)} samples in all; the split rule keeps {int(100 * TEST)} % for test and "
                            f"{int(100 * VAL)} % for validation)")
    info: dict[str, Any] = {"kind": "vector" if x_all.ndim == 2 else "sequence", "loss": loss, "source": what}
    if x_all.ndim == 2:
        info["n_in"] = int(x_all.shape[1])
    else:
        info |= {"seq_len": int(x_all.shape[1]), "token_dim": int(x_all.shape[2])}
    if loss == "ce":
        classes = np.unique(split["train"][1])
        if len(classes) < 2:
            raise UserError(f"{what}: fewer than two classes in the training split (labels: "
                            f"{', '.join(map(str, classes))})")
        for part in ("val", "test"):
            extra = np.setdiff1d(split[part][1], classes)
            if extra.size:
                raise UserError(f"{what}: the {part} split has labels the training split lacks: "
                                f"{', '.join(map(str, extra[:5]))}")
        info |= {"n_classes": int(len(classes)), "classes": classes.tolist()}
        targets = {p: np.searchsorted(classes, ya) for p, (_, ya) in split.items()}
    else:
        y_tr = split["train"][1].astype(np.float64).reshape(len(split["train"][1]), -1)
        mean, sd = y_tr.mean(axis=0), y_tr.std(axis=0)
        if np.any(sd == 0):
            raise UserError(f"{what}: the training targets are constant (zero variance): nothing to regress")
        info |= {"n_targets": int(y_tr.shape[1]), "y_shift": mean.tolist(), "y_scale": (1.0 / sd).tolist(),
                 "y_shape": list(split["train"][1].shape[1:])}
        targets = {p: (ya.astype(np.float64).reshape(len(ya), -1) - mean) / sd for p, (_, ya) in split.items()}
    shift, factor = scaling(split["train"][0], scale)
    info |= {"scale": scale, "x_shift": shift.tolist(), "x_scale": factor.tolist()}
    xs = {p: (xa.astype(np.float64) - shift) * factor for p, (xa, _) in split.items()}
    return Task(name, xs["train"], targets["train"], xs["val"], targets["val"], xs["test"], targets["test"],
                info | {"name": name})


def load_data(spec: str, label: str | None = None, loss: str | None = None, scale: str = "global",
              split_seed: int = 0) -> Task:
    """A ``--data`` argument as a :class:`Task` named after the file (see :func:`read_arrays`); the last few
    are cached while their files are unchanged (a command checks its data, then trains on it)."""
    stats = []
    for p in spec.split(","):
        try:
            st = Path(p).stat()
            stats.append((p, st.st_mtime_ns, st.st_size))
        except OSError:
            stats.append((p, 0, -1))
    return _load_data(spec, label, loss, scale, split_seed, tuple(stats))


@lru_cache(maxsize=4)
def _load_data(spec: str, label: str | None, loss: str | None, scale: str, split_seed: int,
               stats: tuple[tuple[str, int, int], ...]) -> Task:
    arrays = read_arrays(spec, label)
    if "y" not in arrays:
        raise UserError(f"{spec} has no labels/targets ('y')")
    name = Path(spec.split(",")[0]).name
    column = arrays.pop(LABEL_KEY, None)
    task = from_arrays(name=name, loss=loss, scale=scale, split_seed=split_seed, what=spec, **arrays)
    if column is not None:
        task.info["label"] = str(column)
    return task
