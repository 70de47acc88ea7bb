"""Run an exported model on images: the :class:`Predictor` an application uses, and ``edgekd predict``.

Everything the model needs comes from the bundle: the input size and channel count (manifest
``preprocessing``, else the model file's input tensor), the resize filter, and for int8 files the
input quantization (the tensor's own scale and zero point, applied by the runner). Normalization
is folded into every exported model, so the Predictor feeds raw pixel values, exactly as
``edgekd bench`` does: on an image already at the model's size and channel count both call the
same runner on the same uint8 array, so their outputs are identical.

Imports numpy and the standard library only; Pillow is imported when an image has to be read from
a file or resized, and the model's runtime inside its runner. On a Raspberry Pi ``edgekd[rpi]``
(numpy, ai-edge-litert, Pillow) is all it needs.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bundle import bundle_file, read_manifest, require_verified
from edgekd.data.images import as_8bit, image_files, read_image
from edgekd.errors import EdgekdError
from edgekd.limits import MAX_IMAGE_SIDE, check_number, check_threads
from edgekd.paths import as_path, input_file, is_under
from edgekd.tasks import get_task

DEFAULT_FORMAT = "tflite_int8"  # what a device runs; --format chooses another file of the bundle
DEFAULT_TOP_K = 5  # classes per image when top_k is not given (classification only)


class PredictError(EdgekdError):
    """A bundle, model choice or image that the predictor cannot use."""


@dataclass(frozen=True)
class Prediction:
    """One image's result. Classification: ``top`` = [(label, probability), …] best first
    (softmax of the logits). Segmentation: ``mask`` = uint8 H×W at the model's input size,
    1 = foreground (logit > 0), and ``foreground`` = its share of pixels."""

    source: str
    logits: np.ndarray = field(repr=False)
    top: list[tuple[str, float]] = field(default_factory=list)
    mask: np.ndarray | None = field(default=None, repr=False)
    foreground: float | None = None
    size: tuple[int, int] | None = None  # (W, H) of the image as given, for masks mapped back to it

    @property
    def label(self) -> str | None:
        return self.top[0][0] if self.top else None

    @property
    def score(self) -> float | None:
        return self.top[0][1] if self.top else None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        if self.top:
            out["label"] = self.label
            out["top"] = [{"label": name, "score": round(p, 6)} for name, p in self.top]
        if self.mask is not None:
            out["foreground"] = round(float(self.foreground or 0.0), 6)
        return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max()
    e = np.exp(z)
    return e / e.sum()


class Predictor:
    """A bundle's model, ready to run on images (numpy arrays, PIL images or file paths).

    >>> p = Predictor("artifacts/digits")                       # doctest: +SKIP
    >>> p.predict("digit.png").top[:2]                          # doctest: +SKIP
    [('7', 0.97), ('1', 0.02)]

    ``format``: which file (``tflite_int8`` by default; any format of the bundle whose runtime is
    installed). ``model``: ``student`` (default), ``teacher`` or ``baseline``. The bundle is
    checked against its manifest's sha256 first unless ``verify=False``.
    """

    def __init__(
        self,
        artifacts: str | Path,
        format: str = DEFAULT_FORMAT,
        model: str = "student",
        threads: int | None = None,
        verify: bool = True,
    ) -> None:  # noqa: A002
        from edgekd.runtimes import open_runner

        self.bundle = as_path(artifacts, "artifacts")
        manifest = require_verified(self.bundle) if verify else read_manifest(self.bundle)
        self.manifest = manifest
        self.task = get_task(manifest.get("task"))
        self.labels: list[str] = [str(v) for v in manifest.get("labels", [])]
        self.file = _pick_file(manifest, model, format)
        entry = manifest["models"][self.file]
        self.format, self.model = entry["format"], model
        check_threads("--threads", threads, error=PredictError)
        self.runner = open_runner(
            bundle_file(self.bundle, manifest, self.file), threads=threads
        )  # a name that stays inside the bundle
        self.height, self.width, self.channels = _input_hwc(manifest, entry)
        _check_against_file(self.bundle, self.file, (self.height, self.width, self.channels), self.runner)
        _check_outputs(self.bundle, self.file, entry, self.task.name, self.labels, self.height * self.width)
        self.resize_filter = str(
            manifest.get("preprocessing", {}).get("resize", "bilinear")
        )  # read_manifest checked it

    def __repr__(self) -> str:
        return (
            f"Predictor({str(self.bundle)!r}, file={self.file!r}, input={self.height}x{self.width}x{self.channels}, "
            f"task={self.task.name})"
        )

    # -- preprocessing ------------------------------------------------------------------------

    def preprocess(self, image: Any) -> np.ndarray:
        """One image → the uint8 H×W×C array the model takes (raw pixels: normalization and int8
        quantization happen in the runner and the model). Accepts a path, a PIL image, or a uint8
        array H×W (grayscale) or H×W×C (C = 1, 3 or 4, RGB order)."""
        if isinstance(image, (str, Path)):
            return self.preprocess(_open_image(Path(image)))
        if isinstance(image, np.ndarray):
            arr = _as_hwc(image)
            if arr.shape == (self.height, self.width, self.channels):
                return np.ascontiguousarray(arr)  # already what the model takes: no Pillow, no change
            image = _to_pil(arr)
        if not hasattr(image, "convert") or not hasattr(image, "resize"):
            raise PredictError(
                f"cannot use a {type(image).__name__} as an image: give a path, a PIL image or a uint8 numpy array"
            )
        return self._from_pil(image)

    def _from_pil(self, img: Any) -> np.ndarray:
        """As the training data was decoded (edgekd.data.imagefolder): to RGB, resized to the model's
        size with the bundle's filter, then to one channel for a grayscale model."""
        from PIL import Image

        img = as_8bit(img, getattr(img, "filename", "") or "(a PIL image)", PredictError)  # mode L or RGB
        img = img.convert("L" if img.mode == "L" and self.channels == 1 else "RGB")
        if img.size != (self.width, self.height):
            resample = {
                "bilinear": Image.Resampling.BILINEAR,
                "nearest": Image.Resampling.NEAREST,
                "bicubic": Image.Resampling.BICUBIC,
            }.get(self.resize_filter, Image.Resampling.BILINEAR)
            img = img.resize((self.width, self.height), resample)
        if self.channels == 1 and img.mode != "L":
            img = img.convert("L")
        arr = np.asarray(img, dtype=np.uint8)
        return arr[..., None] if arr.ndim == 2 else arr

    # -- inference ----------------------------------------------------------------------------

    def logits(self, images: Iterable[Any]) -> np.ndarray:
        """Float model outputs (int8 dequantized) for images of any accepted kind: (N, …)."""
        batch = [self.preprocess(img) for img in _image_list(images)]
        if not batch:
            raise PredictError("logits() needs at least one image")
        batch = np.stack(batch)
        return self.runner.predict(batch)

    def predict(self, image: Any, top_k: int | None = None, source: str | None = None) -> Prediction:
        """One image → a :class:`Prediction` (top-k classes, or a mask for segmentation). ``top_k``:
        classes kept (default :data:`DEFAULT_TOP_K`); a segmentation bundle refuses it."""
        top_k = self._top_k(top_k, "top_k")
        name = source if source is not None else (str(image) if isinstance(image, (str, Path)) else "<array>")
        if isinstance(image, (str, Path)):
            image = _open_image(Path(image))
        size = _size_of(image)
        x = self.preprocess(image)
        out = self.runner.predict(x[None])[0]
        return self._result(name, out, top_k, size)

    def predict_many(self, images: Sequence[Any], top_k: int | None = None) -> list[Prediction]:
        return [self.predict(img, top_k) for img in _image_list(images)]

    def _top_k(self, top_k: int | None, flag: str) -> int:
        """``top_k`` checked (None: the default); given for a bundle without classes, it is refused,
        not silently ignored (a mask has no top-k)."""
        check_number(flag, top_k, integer=True, low=1, high=1000, optional=True, error=PredictError)
        if top_k is not None and self.task.name != "classification":
            raise PredictError(
                f"{flag} applies to classification bundles only; {self.bundle} is a {self.task.name} bundle"
            )
        return DEFAULT_TOP_K if top_k is None else top_k

    def _result(self, source: str, out: np.ndarray, top_k: int, size: tuple[int, int] | None) -> Prediction:
        if self.task.name == "segmentation":
            if out.size != self.height * self.width:  # a manifest without output shapes: checked here
                raise _malformed(self.bundle, f"a mask of {self.height}x{self.width} from {out.size} outputs")
            mask = (out.reshape(self.height, self.width) > 0).astype(np.uint8)  # one logit per pixel, either layout
            return Prediction(source, out, mask=mask, foreground=float(mask.mean()), size=size)
        probs = softmax(out.reshape(-1))
        order = np.argsort(-probs, kind="stable")[: min(top_k, len(probs))]
        names = self.labels if len(self.labels) == len(probs) else [str(i) for i in range(len(probs))]
        return Prediction(source, out, top=[(names[i], float(probs[i])) for i in order], size=size)


def _pick_file(manifest: dict[str, Any], model: str, fmt: str) -> str:
    models = manifest.get("models", {})
    matches = [n for n, e in models.items() if e.get("role") == model and e.get("format") == fmt]
    if matches:
        return sorted(matches)[0]
    roles = sorted({e.get("role") for e in models.values()})
    if model not in roles:
        raise PredictError(f"this bundle has no {model!r} model; it has: {', '.join(roles) or 'none'}")
    formats = sorted(e.get("format") for e in models.values() if e.get("role") == model)
    raise PredictError(
        f"this bundle has no {fmt} file for the {model}; its formats: {', '.join(formats)} (choose one with --format)"
    )


def _input_hwc(manifest: dict[str, Any], entry: dict[str, Any]) -> tuple[int, int, int]:
    """(H, W, C) the model takes: the manifest's preprocessing, else its input tensor."""
    prep = manifest.get("preprocessing", {})
    if isinstance(prep.get("image_size"), list) and isinstance(prep.get("channels"), int):
        h, w = prep["image_size"]
        return int(h), int(w), int(prep["channels"])
    inp = entry.get("input", {})
    shape = inp.get("shape")
    if not isinstance(shape, list) or len(shape) != 4:
        raise PredictError(f"the manifest does not say what input {entry.get('format')} takes (re-export the bundle)")
    hwc = _hwc(shape, inp.get("layout"))
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIDE for v in hwc):
        raise PredictError(f"the manifest's input shape of {entry.get('format')} is not an image size: {shape!r:.60}")
    return hwc


def _hwc(shape: list[Any], layout: str | None) -> tuple[Any, Any, Any]:
    """(H, W, C) of a 4-d input shape in ``layout`` (NCHW, else NHWC)."""
    return (shape[2], shape[3], shape[1]) if layout == "NCHW" else (shape[1], shape[2], shape[3])


def _malformed(bundle: Path, why: str) -> PredictError:
    return PredictError(f"bundle {bundle} is malformed: {why} (export it again with `edgekd export`)")


def _check_against_file(bundle: Path, file: str, hwc: tuple[int, int, int], runner: Any) -> None:
    """The manifest's input size is the model file's own: a bundle edited by hand (its checksums
    redone) must not feed the runtime images of another shape."""
    details = runner.input_details
    shape, layout = details.get("shape"), details.get("layout", "NHWC")
    if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(v, int) and v > 0 for v in shape[1:])):
        return  # a runner that does not say (PyTorch), or symbolic sizes: the runtime checks the input
    takes = _hwc(shape, layout)
    if takes != tuple(hwc):
        raise _malformed(
            bundle, f"its manifest says {'x'.join(map(str, hwc))} (HxWxC) but {file} takes {'x'.join(map(str, takes))}"
        )


def _check_outputs(bundle: Path, file: str, entry: dict[str, Any], task: str, labels: list[str], pixels: int) -> None:
    """The outputs per image the manifest records for the file (when it does), checked against the
    task: one logit per pixel for a mask, one per label for classes."""
    shape = entry.get("output", {}).get("shape")
    if not (isinstance(shape, list) and shape and all(isinstance(v, int) and v > 0 for v in shape)):
        return
    count = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if task == "segmentation" and count != pixels:
        raise _malformed(bundle, f"a segmentation model has one output per pixel ({pixels}); {file} has {count}")
    if task != "segmentation" and labels and len(labels) != count:
        raise _malformed(bundle, f"{len(labels)} labels for the {count} outputs of {file}")


def _image_list(images: Any) -> list[Any]:
    """The images of a batch call: any iterable, or an N×H×W(×C) array (a lone path or image is one
    item, named as such, not iterated pixel row by pixel row or character by character)."""
    if isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim < 3):
        raise PredictError(f"give a list of images (or an N×H×W[×C] array), got one {type(images).__name__}")
    try:
        return list(images)
    except TypeError:
        raise PredictError(f"give a list of images (or an N×H×W[×C] array), got {type(images).__name__}") from None


def _as_hwc(arr: np.ndarray) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise PredictError(
            f"images must be uint8 pixel values 0-255, got {arr.dtype} (convert with .astype(np.uint8) after scaling)"
        )
    if arr.ndim in (2, 3) and 0 in arr.shape[:2]:
        raise PredictError(f"an image array must have pixels, got shape {list(arr.shape)}")
    if arr.ndim == 2:
        return arr[..., None]
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        return arr
    raise PredictError(
        f"an image array must be H×W or H×W×C with C = 1, 3 or 4 (RGB order), got shape {list(arr.shape)}"
    )


def _to_pil(arr: np.ndarray) -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise PredictError(
            "resizing or converting an image needs Pillow (pip install 'edgekd[rpi]' or pillow)"
        ) from None
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)


def _open_image(path: Path) -> Any:
    try:
        import PIL  # noqa: F401 - read_image imports it; here only to say how to install it
    except ImportError:
        raise PredictError("reading image files needs Pillow (pip install 'edgekd[rpi]' or pillow)") from None
    return read_image(input_file(path, "image", PredictError), PredictError)  # a FIFO would block the read


def _size_of(image: Any) -> tuple[int, int] | None:
    if isinstance(image, np.ndarray) and image.ndim >= 2:
        return int(image.shape[1]), int(image.shape[0])
    size = getattr(image, "size", None)
    return (int(size[0]), int(size[1])) if isinstance(size, tuple) and len(size) == 2 else None


def expand_images(items: Sequence[str]) -> list[Path]:
    """Files, folders (their image files, recursively, sorted) and glob patterns → image paths.
    A name that is none of these is bad input."""
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = image_files(path.rglob("*"), PredictError)
            if not found:
                raise PredictError(f"no image files in folder {path}")
            paths += found
        elif glob.has_magic(item) and not path.exists():
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not found:
                raise PredictError(f"no file matches {item!r}")
            paths += found
        else:  # a file; or a name that is missing, a device or a FIFO: one line saying which
            paths.append(input_file(path, "image", PredictError))
    return list(dict.fromkeys(paths))


@dataclass(frozen=True)
class PredictReport:
    file: str  # the bundle file that ran
    task: str
    predictions: list[Prediction]
    failed: list[str]  # "path: why" of images that could not be read
    masks: list[str]  # mask PNGs written (segmentation)

    @property
    def passed(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        preds = [p.as_dict() for p in self.predictions]
        if self.masks:
            for d, m in zip(preds, self.masks):
                d["mask"] = m
        return {"file": self.file, "task": self.task, "predictions": preds, "failed": self.failed}


def _image_names(images: Any) -> list[str]:
    """``images`` of :func:`predict`, the CLI's IMAGE arguments: a list of paths (files, folders,
    glob patterns). A lone path is refused as ``predict_many`` refuses it (iterated, "photo.png"
    was the images "p", "h", …); arrays and PIL images go to a :class:`Predictor`, which names
    no files and writes none."""
    if isinstance(images, (str, bytes, os.PathLike)) or not isinstance(images, Iterable):
        what = f"one {type(images).__name__}" if isinstance(images, (str, os.PathLike)) else _shown(images)
        raise PredictError(f"images: give a list of image paths (files, folders or glob patterns), got {what}")
    names = []
    for item in images:
        if isinstance(item, (str, os.PathLike)) and not isinstance(item, bytes) and os.fspath(item) != "":
            names.append(os.fspath(item))  # a str for glob too
            continue
        hint = "" if isinstance(item, (str, bytes)) else "; for arrays or PIL images use Predictor(...).predict_many"
        raise PredictError(f"images: give image paths (files, folders or glob patterns), got {_shown(item)}{hint}")
    return names


def _shown(value: Any) -> str:
    """``type value`` for an error line, at most about 60 characters (an array by its shape)."""
    text = f"shape {list(value.shape)}" if isinstance(value, np.ndarray) else repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}" if value is not None else "None"


def _check_masks_dir(folder: Path, bundle: Path) -> None:
    """Masks go into a new or empty folder, or one an earlier ``edgekd predict`` filled with masks;
    never into the bundle being read (a file added there breaks its manifest). The folder is made
    when missing, not the folder above it too: that is most likely a typo (as for ``--json``)."""
    if folder.exists() and not folder.is_dir():
        raise PredictError(f"--masks {folder} is a file, not a folder")
    if is_under(os.path.realpath(folder), os.path.realpath(bundle)):
        raise PredictError(
            f"--masks {folder} is inside the bundle {bundle}, which is being read (a file added there breaks its "
            "manifest): choose a folder outside it"
        )
    if not folder.exists() and not folder.parent.exists():
        raise PredictError(
            f"--masks {folder}: folder {folder.parent} does not exist (edgekd makes the masks folder only)"
        )
    if folder.is_dir():
        strangers = [p.name for p in folder.iterdir() if not p.name.endswith("_mask.png")]
        if strangers:
            raise PredictError(f"--masks {folder} holds other files ({strangers[0]}, …): give a new or empty folder")


def predict(
    artifacts: str | Path | None,
    images: Sequence[str],
    format: str = DEFAULT_FORMAT,  # noqa: A002 - same name as the CLI's --format
    model: str = "student",
    top_k: int | None = None,
    threads: int | None = None,
    json: str | Path | None = None,  # noqa: A002 - same name as the CLI's --json
    masks: str | Path | None = None,
) -> PredictReport:
    """``edgekd predict``: run a bundle's model (``artifacts``; None: the newest under ``artifacts/``)
    on image files; print a table, optionally write JSON, and for segmentation one ``<stem>_mask.png``
    per image (0/255, at the image's own size)
    in ``masks`` (default ``masks/``). ``top_k``: classes per image (default 5), refused for a
    segmentation bundle. Unreadable images are reported in ``failed``; the others run."""
    from edgekd.atomic import write_json
    from edgekd.ui import print_table

    names = _image_names(images)
    # the number first, as every flag is checked before the files it names (the bundle then says
    # whether top_k applies at all)
    check_number("--top-k", top_k, integer=True, low=1, high=1000, optional=True, error=PredictError)
    json_path = as_path(json, "json", optional=True)
    mask_path = as_path(masks, "masks", optional=True)
    paths = expand_images(names)
    if not paths:
        raise PredictError("no images given")
    if artifacts is None:  # as bench: the newest bundle under artifacts/
        from edgekd.benchmark.run import latest_bundle

        artifacts = latest_bundle()
    predictor = Predictor(artifacts, format=format, model=model, threads=threads)
    seg = predictor.task.name == "segmentation"
    if mask_path is not None and not seg:  # as bench refuses a flag of another device: not silently ignored
        raise PredictError(
            f"--masks applies to segmentation bundles only; {predictor.bundle} is a {predictor.task.name} bundle"
        )
    predictor._top_k(top_k, "--top-k")  # a --top-k for a segmentation bundle: refused before any image runs
    mask_dir = (mask_path or Path("masks")) if seg else None
    if mask_dir is not None:
        _check_masks_dir(mask_dir, predictor.bundle)
    if json_path is not None:  # never an image, the bundle's manifest or a user's file
        from edgekd.outputs import check_output_file, holds_json_keys

        own = holds_json_keys("file", "task", "predictions")
        check_output_file(json_path, "--json", "predictions JSON", own=own, inside=artifacts)
    results, failed, written, first_error = [], [], [], ""
    for path in paths:
        try:
            results.append(predictor.predict(path, top_k=top_k))
        except PredictError as exc:
            failed.append(f"{path}: {exc}")
            first_error = first_error or str(exc)
    if not results:  # nothing ran: bad input, like a missing image, not a run with some rows failed
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise PredictError(f"no image could be read: {first_error}{more}")
    if mask_dir is not None:
        written = _write_masks(results, mask_dir)
    report = PredictReport(predictor.file, predictor.task.name, results, failed, written)
    if seg:
        rows = [[p.source, f"{100 * (p.foreground or 0):.1f}", m] for p, m in zip(results, written)]
        print_table(f"{predictor.file}: masks", ["image", "foreground %", "mask"], rows)
    else:
        k = max(len(p.top) for p in results)
        rows = [[p.source, *[f"{name} {100 * s:.1f}%" for name, s in p.top], *[""] * (k - len(p.top))] for p in results]
        print_table(f"{predictor.file}: top-{k}", ["image", *[f"#{i + 1}" for i in range(k)]], rows)
    if json_path is not None:
        write_json(json_path, report.as_dict())
    return report


def _write_masks(results: list[Prediction], folder: Path) -> list[str]:
    from PIL import Image

    from edgekd.atomic import write_with

    folder.mkdir(parents=True, exist_ok=True)
    used: dict[str, int] = {}
    out = []
    for p in results:
        stem = Path(p.source).stem
        n = used.get(stem, 0)
        used[stem] = n + 1
        name = f"{stem}_mask.png" if n == 0 else f"{stem}-{n}_mask.png"  # two folders' a.png: both kept
        img = Image.fromarray((p.mask * 255).astype(np.uint8), "L")
        if p.size is not None and img.size != p.size:
            img = img.resize(p.size, Image.Resampling.NEAREST)  # back to the image's own size, still 0/255
        write_with(folder / name, lambda fh, img=img: img.save(fh, format="PNG"))
        out.append(str(folder / name))
    return out
