"""Expressions on a person's own photos, with the evidence shown (``lkr predict``).

Beyond the paper: a trained run folder applied to ordinary photos, the same way its faces were
prepared for training.

1. **Faces.** facenet-pytorch's MTCNN (the detector of :mod:`lkr.landmarks`, default
   thresholds 0.6 / 0.7 / 0.7, smallest face 20 px) runs once on the whole photo in colour
   (RGB; a photo whose longer side exceeds ``max_side`` is searched at that size and the
   results scaled back). Every face with MTCNN probability >= ``min_prob`` is kept, ordered
   left to right.
2. **Crop.** Each face is cut out like a full CK+ frame in :func:`lkr.readers.crop_face` (the
   shared step :func:`lkr.readers.square_crop`): the square centred on MTCNN's box whose side is
   :data:`lkr.readers.CK_CROP_SCALE` (1.0) times the box's longer side, black outside the
   photo, converted to grayscale (PIL "L", ITU-R 601 luma) and resized to 48x48 (bilinear).
3. **Landmarks and mask.** MTCNN's five points from the photo are mapped into the 48x48 crop
   (no second detection): x48 = (x - X1) * 48 / (X2 - X1), likewise y, with (X1, Y1, X2, Y2)
   the crop square; the face box is mapped the same way. When the mapped points fail
   :func:`lkr.landmarks.plausible` the face gets the landmark template, as faces without a
   detection got in training, and ``landmarks_detected`` is False. The local key region mask is
   :func:`lkr.regions.run_masks` with the run's ``alpha``, ``mask_merge`` and ``mask_source``.
4. **Prediction.** All faces of all photos go through one ten-crop pass
   (:func:`lkr.evaluate.predict`, ten-crop): the
   class probabilities are the softmax averaged over the ten crops.
5. **Evidence** (``save``): Grad-CAM of the predicted class (:func:`lkr.gradcam.cam_arrays`, on
   the 44x44 centre crop) is laid over the part of the photo that crop came from, and each face
   gets its box and its label with the probability; one PNG per photo.

Coordinates are continuous pixel coordinates of the photo (x right, y down; pixel column j
spans [j, j+1)), the convention of :mod:`lkr.landmarks`: facenet-pytorch's one-based boxes are
shifted by -1 on their top-left corner.

Per-photo problems (a file that cannot be read, a photo without a face) do not stop the
others: they are returned as the photo's one-line ``error``; the CLI prints each as
``lkr: error: ...`` and exits 1. A folder that is not a trained run raises
:class:`~lkr.errors.RunError` before any photo is read (exit 2).

A run trained on the synthetic demo set (``kind == "demo"``) has never seen a real face: its
predictions on photos only show the pipeline at work. :attr:`Predictor.is_demo` says so and the
CLI prints a note.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from lkr.dataset import IMAGE_SIZE
from lkr.errors import BadImageError, LkrError, RunError
from lkr.runfolder import run_class_names  # noqa: F401 (here before; the Predictor uses it)
from lkr.readers import CK_CROP_SCALE, square_crop

MIN_PROB = 0.9
"""Smallest MTCNN face probability kept (MTCNN's own last threshold is 0.7)."""
MAX_SIDE = 1600
"""Photos with a longer side are searched for faces at this size (faces >= 20 px there)."""


@dataclass
class Face:
    """One face found on a photo, prepared as in training.

    Attributes:
        box: (4,) float32 x1, y1, x2, y2: MTCNN's face box in the photo.
        points: (5, 2) float32 x, y in the photo: left eye, right eye, nose, left and right
            mouth corner.
        score: MTCNN's face probability in [0, 1].
        region: (X1, Y1, X2, Y2) ints: the square cut out of the photo (may reach outside it).
        image: (48, 48) uint8 grayscale face.
        box48: (4,) float32 the face box in 48x48 crop coordinates.
        points48: (5, 2) float32 the landmarks in 48x48 crop coordinates (the template's when
            ``landmarks_detected`` is False).
        landmarks_detected: whether MTCNN's points are used for the mask (False: template).
    """

    box: np.ndarray
    points: np.ndarray
    score: float
    region: tuple[int, int, int, int]
    image: np.ndarray
    box48: np.ndarray
    points48: np.ndarray
    landmarks_detected: bool


@dataclass
class FacePrediction:
    """A face and what the run says about it.

    Attributes:
        face: the :class:`Face`.
        probabilities: {class name: probability}, in the run's class order, summing to 1.
        label: the most probable class.
        cam: (44, 44) float32 Grad-CAM heatmap in [0, 1] of ``label``, or None when not asked.
    """

    face: Face
    probabilities: dict[str, float]
    label: str
    cam: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        """{"box": [x1, y1, x2, y2], "label", "probabilities": {class: p}, "landmarks_detected"}."""
        return {"box": [round(float(v), 1) for v in self.face.box], "label": self.label,
                "probabilities": {k: round(float(v), 6) for k, v in self.probabilities.items()},
                "landmarks_detected": bool(self.face.landmarks_detected)}


@dataclass
class PhotoResult:
    """The faces of one photo, or why there are none.

    Attributes:
        photo: the path as given.
        faces: one :class:`FacePrediction` per face, left to right.
        error: None, or a one-line message naming the file ("<file>: no face found", "<file>:
            cannot read image (...)", "<file>: no such file").
        annotated: the PNG written by ``save``, or None.
    """

    photo: str
    faces: list[FacePrediction] = field(default_factory=list)
    error: str | None = None
    annotated: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """{"photo": path, "faces": [...], "error": None | str} (see :meth:`FacePrediction.to_json`)."""
        return {"photo": self.photo, "faces": [f.to_json() for f in self.faces], "error": self.error}


# --- photos and faces -----------------------------------------------------------------------
def save_folder(save: str | Path) -> bool:
    """Make sure ``save`` is a folder this process can write into, before any work (so a bad
    ``--save`` loses nothing): created when missing, then a file written and removed there.

    Returns:
        whether this call created the folder (:func:`drop_if_empty` removes it again when nothing
        was written into it).

    Raises:
        LkrError: one line naming the folder.
    """
    import tempfile

    out = Path(save)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".lkr-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        drop_if_empty(out, created)  # a folder made here for nothing is not left behind
        raise LkrError(f"{save}: cannot write into the --save folder ({e.strerror or e})") from None
    return created


def drop_if_empty(save: str | Path, created: bool) -> None:
    """Remove a ``--save`` folder this call created when nothing was written into it (a photo
    with no face leaves no empty folder behind)."""
    out = Path(save)
    if created and out.is_dir() and not any(out.iterdir()):
        try:
            out.rmdir()
        except OSError:
            pass


class OutputNames:
    """Output stems of one call, none taken twice: ``clip``, then ``clip-2``, ``clip-3`` ...
    skipping any stem a file of the same call already has (``x/clip.mp4``, ``clip-2.mp4`` and
    ``y/clip.mp4`` give ``clip``, ``clip-2`` and ``clip-3``)."""

    def __init__(self, stems: Sequence[str] = ()):
        self.taken: set[str] = set()
        self.wanted = set(stems)  # the inputs' own stems: a later "clip-2.mp4" keeps its name

    def take(self, stem: str) -> str:
        name, n = stem, 1
        while name in self.taken or (n > 1 and name in self.wanted):
            n += 1
            name = f"{stem}-{n}"
        self.taken.add(name)
        return name


def read_photo(path: str | Path) -> Image.Image:
    """A photo as an RGB PIL image, turned upright by its EXIF orientation.

    Raises:
        BadImageError: "<path>: no such file" or "<path>: cannot read image (<reason>)".
    """
    p = Path(path)
    if not p.is_file():
        raise BadImageError(f"{path}: no such file")
    try:
        with Image.open(p) as im:
            im.load()
            up = ImageOps.exif_transpose(im)
            return up.convert("RGB")
    except Exception as e:  # UnidentifiedImageError, OSError, DecompressionBombError, SyntaxError...
        reason = str(e).replace(str(p), "").strip(" :'\"") or type(e).__name__
        raise BadImageError(f"{path}: cannot read image ({reason})") from None


def to_crop(xy: np.ndarray, region: Sequence[int]) -> np.ndarray:
    """Photo coordinates (..., 2) -> coordinates in the 48x48 crop of ``region`` (X1, Y1, X2, Y2)."""
    x1, y1, x2, y2 = region
    scale = np.array([IMAGE_SIZE / (x2 - x1), IMAGE_SIZE / (y2 - y1)])
    return ((np.asarray(xy, np.float64) - [x1, y1]) * scale).astype(np.float32)


def find_faces(photo: Image.Image, *, device: str | torch.device = "cpu", min_prob: float = MIN_PROB,
               max_side: int = MAX_SIDE, scale: float = CK_CROP_SCALE) -> list[Face]:
    """Every face on a photo, cropped, converted and landmarked as in training.

    Args:
        photo: a PIL image of any size and mode.
        device: where MTCNN runs.
        min_prob: smallest MTCNN face probability kept, in [0, 1].
        max_side: photos with a longer side are searched at this size.
        scale: crop side as a multiple of the box's longer side (see :func:`lkr.readers.square_crop`).

    Returns:
        The faces, left to right (empty when there is none).
    """
    from lkr.landmarks import _mtcnn

    rgb = photo if photo.mode == "RGB" else photo.convert("RGB")
    gray = rgb.convert("L")
    w, h = rgb.size
    f = min(1.0, max_side / max(w, h))
    search = rgb if f == 1.0 else rgb.resize((max(1, round(w * f)), max(1, round(h * f))),
                                             Image.Resampling.BILINEAR)
    net = _mtcnn(str(device))
    if min(search.size) < net.min_face_size:  # MTCNN's image pyramid would be empty
        return []
    with torch.no_grad():
        boxes, probs, points = net.detect(search, landmarks=True)
    if boxes is None:
        return []
    return _faces_from(boxes, probs, points, f, gray, min_prob, scale)


def _faces_from(boxes: Any, probs: Any, points: Any, f: float, gray: Image.Image, min_prob: float,
                scale: float) -> list[Face]:
    """:class:`Face` of each MTCNN result (boxes one-based in the searched image, ``f`` its
    scale) with probability >= ``min_prob``, cut from ``gray`` (the full-size photo), left to right."""
    from lkr.landmarks import DEFAULT_TEMPLATE_BOX, DEFAULT_TEMPLATE_POINTS, plausible

    faces = []
    for b, pr, q in zip(boxes, probs, points):
        if pr is None or pr < min_prob:
            continue
        box = ((np.asarray(b, np.float64) - [1, 1, 0, 0]) / f).astype(np.float32)  # one-based -> continuous
        pts = (np.asarray(q, np.float64) / f).astype(np.float32)
        image, region = square_crop(gray, box, scale)
        box48 = to_crop(box.reshape(2, 2), region).reshape(4)
        pts48 = to_crop(pts, region)
        ok = bool(plausible(box48, pts48))
        if not ok:
            box48, pts48 = DEFAULT_TEMPLATE_BOX.copy(), DEFAULT_TEMPLATE_POINTS.copy()
        faces.append(Face(box=box, points=pts, score=float(pr), region=region, image=image, box48=box48,
                          points48=pts48, landmarks_detected=ok))
    faces.sort(key=lambda fc: (float(fc.box[0]), float(fc.box[1])))
    return faces


def refine_faces(photo: Image.Image, previous: Sequence[Face], *, device: str | torch.device = "cpu",
                 min_prob: float = MIN_PROB, max_side: int = MAX_SIDE, scale: float = CK_CROP_SCALE
                 ) -> list[Face] | None:
    """The faces of ``previous`` (found on an earlier frame) followed onto ``photo`` by MTCNN's
    last stage alone: each previous box, squared as MTCNN squares its candidates, goes through
    O-Net, which scores it, moves it onto the face and places the five landmarks (facenet-pytorch's
    own ``rerec``, ``pad``, ``imresample``, ``bbreg`` and its "Min" NMS at 0.7, as in its third
    stage). About 4 ms a frame with its resizing, against the whole search's 12-13 ms at 320 px
    (benchmarks/bench_video.py on 2 AMD EPYC cores, docs/performance.md).

    Returns:
        The followed faces, left to right; None when a face is lost (its O-Net probability below
        ``min_prob``): the caller searches the frame again.
    """
    from facenet_pytorch.models.utils.detect_face import bbreg, batched_nms_numpy, imresample, pad, rerec

    from lkr.landmarks import _mtcnn

    if not previous:
        return []
    rgb = photo if photo.mode == "RGB" else photo.convert("RGB")
    w, h = rgb.size
    f = min(1.0, max_side / max(w, h))
    search = rgb if f == 1.0 else rgb.resize((max(1, round(w * f)), max(1, round(h * f))),
                                             Image.Resampling.BILINEAR)
    net = _mtcnn(str(device))
    dev = next(net.onet.parameters()).device
    img = torch.as_tensor(np.array(search), device=dev).permute(2, 0, 1).unsqueeze(0).float()
    sw, sh = search.size
    boxes = torch.tensor(np.stack([fc.box.astype(np.float64) * f + [1, 1, 0, 0] for fc in previous]),
                         dtype=torch.float32, device=dev)  # back to MTCNN's one-based frame
    boxes = rerec(boxes)
    y, ey, x, ex = pad(boxes, sw, sh)
    if not all(ey[k] > y[k] - 1 and ex[k] > x[k] - 1 for k in range(len(y))):
        return None  # a box left the frame
    crops = torch.cat([imresample(img[:, :, y[k] - 1:ey[k], x[k] - 1:ex[k]], (48, 48)) for k in range(len(y))])
    with torch.no_grad():
        reg, pts, prob = net.onet((crops - 127.5) * 0.0078125)
    score = prob[:, 1]
    if bool((score < min_prob).any()):
        return None
    wi, hi = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    px = wi[:, None] * pts[:, :5] + boxes[:, :1] - 1
    py = hi[:, None] * pts[:, 5:10] + boxes[:, 1:2] - 1
    points = torch.stack((px, py), dim=2)
    moved = bbreg(torch.cat((boxes, score[:, None]), dim=1), reg)
    # as the third stage: of followed boxes that drifted onto one face, one is kept
    pick = batched_nms_numpy(moved[:, :4], moved[:, 4], torch.zeros(len(moved), dtype=torch.int64), 0.7, "Min")
    moved, points = moved[pick], points[pick]
    gray = rgb.convert("L")
    return _faces_from(moved[:, :4].cpu().numpy(), moved[:, 4].cpu().numpy(), points.cpu().numpy(), f, gray,
                       min_prob, scale)


# --- the run --------------------------------------------------------------------------------
class Predictor:
    """A trained run, loaded once, applied to photos.

    Example::

        p = Predictor("out/demo/runs/demo/fer2013/lkrnet")
        results = p.predict(["me.jpg"], save="out/photos")

    Attributes:
        run: the run folder.
        model, cfg, info: as :func:`lkr.runfolder.load_run_model` returns them.
        class_names: the K classes, in the model's label order.
        is_demo: True when the run was trained on the synthetic demo set.
        device: where the network (and MTCNN) run.
    """

    def __init__(self, run: str | Path | None = None, *, device: str | None = None):
        """Args: run: a trained run folder, or None for the model that ships with lkr
        (:mod:`lkr.shipped`); device: "cpu", "cuda" or None (CUDA when present).

        Raises:
            RunError: if ``run`` is not a trained run folder, or the shipped model's file is
                missing or damaged.
        """
        from lkr.device import resolve_device
        from lkr.runfolder import load_run_model
        from lkr.shipped import is_shipped, shipped_run

        self.run = shipped_run() if run is None or is_shipped(run) else Path(run)
        self.is_shipped = run is None or is_shipped(run)
        self.device = resolve_device(device)
        self.model, self.cfg, self.info = load_run_model(self.run, device=self.device)
        self.class_names = run_class_names(self.run, self.cfg.num_classes, self.info)
        self.is_demo = self.info.get("kind") == "demo"

    def describe(self) -> str:
        """One line about the run (variant, data, accuracy) and, for a demo run, the warning."""
        m: dict[str, Any] = {}
        try:
            m = json.loads((self.run / "metrics.json").read_text())
        except (OSError, ValueError):
            pass
        acc = (f", {100 * m['accuracy']:.1f}% ten-crop accuracy on {m.get('test_split', 'its test split')}"
               if "accuracy" in m else "")
        where = "lkr's shipped model" if self.is_shipped else str(self.run)
        line = f"{where}: {self.cfg.variant} trained on {self.info.get('dataset', '?')}{acc}"
        if self.is_demo:
            line += (". It was trained on the synthetic demo set and has never seen a real face: its "
                     "predictions on photos are meaningless and only show the pipeline at work")
        return line

    def masks(self, faces: Sequence[Face]) -> np.ndarray:
        """(N, 48, 48) float32 local key region masks in [0, 1] of the faces (zeros without the
        local branch)."""
        from lkr.regions import run_masks

        if not faces or not self.cfg.local_branch:
            return np.zeros((len(faces), IMAGE_SIZE, IMAGE_SIZE), np.float32)
        return run_masks(self.cfg, np.stack([f.box48 for f in faces]), np.stack([f.points48 for f in faces]),
                         size=IMAGE_SIZE)

    def probabilities(self, faces: Sequence[Face], masks: np.ndarray | None = None) -> np.ndarray:
        """(N, K) float32 ten-crop class probabilities of the faces, in one batched pass."""
        from lkr.device import run_bf16
        from lkr.evaluate import predict as predict_crops, test_crops

        if not faces:
            return np.zeros((0, len(self.class_names)), np.float32)
        masks = self.masks(faces) if masks is None else masks
        images = torch.from_numpy(np.stack([f.image for f in faces])).to(self.device)
        m = torch.from_numpy(masks).to(self.device) if self.cfg.local_branch else None
        probs, _ = predict_crops(self.model, images, m, crops=test_crops(self.cfg), crop=self.cfg.crop,
                                 channels_last=self.cfg.channels_last,
                                 amp=run_bf16(self.cfg, self.info, images.device))  # as the run trained
        return probs.float().cpu().numpy()

    def predict(self, photos: Sequence[str | Path], *, save: str | Path | None = None,
                min_prob: float = MIN_PROB, max_side: int = MAX_SIDE,
                names: OutputNames | None = None) -> list[PhotoResult]:
        """Faces and expressions of each photo.

        Args:
            photos: image files (anything PIL reads).
            save: a folder for the annotated PNGs (``<stem>.png``; ``<stem>-2.png`` ... when
                stems repeat, :class:`OutputNames`), or None. A PNG that cannot be written sets
                that photo's ``error``; the others are still written.
            min_prob: smallest MTCNN face probability kept.
            max_side: photos with a longer side are searched for faces at this size.

        Returns:
            One :class:`PhotoResult` per photo, in order; a photo that failed has ``error`` set.
        """
        created = save_folder(save) if save is not None else False  # before any work
        results: list[PhotoResult] = []
        images: list[Image.Image | None] = []
        faces: list[Face] = []
        owner: list[int] = []
        for i, path in enumerate(photos):
            res = PhotoResult(photo=str(path))
            results.append(res)
            try:
                im = read_photo(path)
            except BadImageError as e:
                res.error, im = str(e), None
            images.append(im)
            if im is None:
                continue
            found = find_faces(im, device=self.device, min_prob=min_prob, max_side=max_side)
            if not found:
                res.error = f"{path}: no face found"
            faces.extend(found)
            owner.extend([i] * len(found))

        masks = self.masks(faces)
        probs = self.probabilities(faces, masks)  # every face of every photo in one pass
        labels = probs.argmax(1) if len(faces) else np.zeros(0, np.int64)
        cams = self.cams(faces, masks, labels) if save is not None else [None] * len(faces)
        for face, p, k, cam, i in zip(faces, probs, labels, cams, owner):
            results[i].faces.append(FacePrediction(
                face=face, probabilities={c: float(v) for c, v in zip(self.class_names, p)},
                label=self.class_names[int(k)], cam=cam))
        if save is not None:
            out = Path(save)
            names = names or OutputNames([Path(r.photo).stem for r in results])
            for res, im in zip(results, images):
                if im is None or not res.faces:
                    continue
                target = out / f"{names.take(Path(res.photo).stem)}.png"
                try:
                    annotate(im, res.faces).save(target)
                    res.annotated = target
                except OSError as e:
                    res.error = f"{res.photo}: cannot write {target} ({e.strerror or e})"
            drop_if_empty(out, created)
        return results

    def cams(self, faces: Sequence[Face], masks: np.ndarray, labels: np.ndarray,
             layer: str | None = None) -> np.ndarray:
        """(N, 44, 44) float32 Grad-CAM heatmaps in [0, 1] of the given classes, at ``layer``
        (:func:`lkr.gradcam.resolve_layer`; None: :data:`lkr.gradcam.DEFAULT_LAYER`, the 11x11
        maps before max-pool 3)."""
        from lkr.gradcam import DEFAULT_LAYER, cam_arrays

        if not faces:
            return np.zeros((0, self.cfg.crop, self.cfg.crop), np.float32)
        return cam_arrays(self.model, np.stack([f.image for f in faces]),
                          masks if self.cfg.local_branch else None, labels, crop=self.cfg.crop,
                          device=self.device, layer=DEFAULT_LAYER if layer is None else layer)


def predict_photos(photos: Sequence[str | Path], run: str | Path, *, device: str | None = None,
                   save: str | Path | None = None, min_prob: float = MIN_PROB,
                   max_side: int = MAX_SIDE) -> list[PhotoResult]:
    """:meth:`Predictor.predict` with a run loaded for this call.

    Raises:
        RunError: if ``run`` is not a trained run folder.
    """
    return Predictor(run, device=device).predict(photos, save=save, min_prob=min_prob, max_side=max_side)


# --- the evidence ---------------------------------------------------------------------------
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def annotate(photo: Image.Image, faces: Sequence[FacePrediction], *, crop: int = 44,
             image_weight: float = 0.5, tags: Sequence[str] | None = None) -> Image.Image:
    """The photo with each face's Grad-CAM overlay, box and label.

    The heatmap (``crop`` x ``crop``, the centre of the 48x48 face) is resized onto the part of
    the photo that centre crop came from and blended with pytorch-grad-cam's
    ``show_cam_on_image`` (jet colour map); the box is MTCNN's face box, the label the most
    probable class and its probability.

    Args:
        photo: the photo (any mode; drawn in RGB).
        faces: the predictions (faces without ``cam`` get box and label only).
        crop: side of the heatmaps' centre crop in 48x48 face pixels.
        image_weight: weight of the photo in the blend, in [0, 1].
        tags: a text per face put before its label (a video's face ids), or None.

    Returns:
        A new RGB image of the photo's size.
    """
    from pytorch_grad_cam.utils.image import show_cam_on_image

    out = photo.convert("RGB")
    w, h = out.size
    for fp in faces:
        if fp.cam is None:
            continue
        x1, y1, x2, y2 = fp.face.region
        m = (IMAGE_SIZE - crop) / 2 / IMAGE_SIZE  # margin of the centre crop, as a fraction
        cx1, cy1 = round(x1 + m * (x2 - x1)), round(y1 + m * (y2 - y1))
        cx2, cy2 = round(x2 - m * (x2 - x1)), round(y2 - m * (y2 - y1))
        if cx2 - cx1 < 2 or cy2 - cy1 < 2:
            continue
        heat = np.asarray(Image.fromarray(fp.cam.astype(np.float32))
                          .resize((cx2 - cx1, cy2 - cy1), Image.Resampling.BILINEAR)).clip(0, 1)
        px1, py1, px2, py2 = max(cx1, 0), max(cy1, 0), min(cx2, w), min(cy2, h)  # inside the photo
        if px2 <= px1 or py2 <= py1:
            continue
        part = np.asarray(out.crop((px1, py1, px2, py2)), np.float32) / 255
        blend = show_cam_on_image(part, heat[py1 - cy1:py2 - cy1, px1 - cx1:px2 - cx1], use_rgb=True,
                                  image_weight=image_weight)
        out.paste(Image.fromarray(blend), (px1, py1))
    draw = ImageDraw.Draw(out)
    lw = max(2, round(min(w, h) / 250))
    font = _font(max(12, round(min(w, h) / 30)))
    for j, fp in enumerate(faces):
        x1, y1, x2, y2 = (float(v) for v in fp.face.box)
        draw.rectangle((x1, y1, x2, y2), outline=(0, 255, 0), width=lw)
        text = f"{fp.label} {fp.probabilities[fp.label]:.2f}"
        if tags is not None:
            text = f"{tags[j]} {text}"
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        ty = y1 - (b - t) - 2 * lw if y1 - (b - t) - 2 * lw >= 0 else y2 + lw
        draw.rectangle((x1, ty, x1 + (r - l) + 2 * lw, ty + (b - t) + 2 * lw), fill=(0, 0, 0))
        draw.text((x1 + lw - l, ty + lw - t), text, fill=(0, 255, 0), font=font)
    return out


# --- the notebook's helpers -----------------------------------------------------------------
def example_photo(dest: str | Path) -> Path:
    """scikit-image's ``astronaut`` (Eileen Collins, a public-domain NASA portrait that ships
    inside scikit-image) written to ``dest/astronaut.png``.

    Raises:
        LkrError: when scikit-image is not installed.
    """
    try:
        from skimage import data
    except ImportError:
        raise LkrError("the example photo comes with scikit-image: pip install scikit-image") from None
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def photo_run(run: str | Path | None, out: str | Path, *, scale: str = "full") -> Path:
    """The run to apply to photos.

    ``run`` when given; else ``<out>/runs/<scale>/fer2013/lkrnet`` when it holds a run trained on
    real faces (what notebook 02 trains on FER2013 under ``lkr reproduce``; see
    :mod:`lkr.results`); else the model that ships with lkr (:func:`lkr.shipped.shipped_run`:
    LKRNet trained on FER2013, checked by its sha256). A run trained on the synthetic demo set
    (``lkr demo``) is passed over: it has never seen a real face. :meth:`Predictor.describe` says
    which it is.
    """
    from lkr.shipped import shipped_run

    if run is not None:
        return Path(run)
    found = Path(out) / "runs" / scale / "fer2013" / "lkrnet"
    if (found / "best.pt").exists():
        try:
            kind = json.loads((found / "metrics.json").read_text()).get("kind")
        except (OSError, ValueError):
            kind = None
        if kind not in (None, "demo"):
            return found
    return shipped_run()


def results_table(results: Sequence[PhotoResult]) -> Any:
    """A pandas DataFrame: one row per face (photo, face number, box, label, the K
    probabilities, landmarks_detected) and one per failed photo (its error)."""
    import pandas as pd

    rows = []
    for r in results:
        if r.error and not r.faces:
            rows.append({"photo": r.photo, "error": r.error})
        for i, f in enumerate(r.faces, 1):
            rows.append({"photo": r.photo, "face": i, "box": tuple(round(float(v)) for v in f.face.box),
                         "label": f.label, **{k: round(v, 3) for k, v in f.probabilities.items()},
                         "landmarks_detected": f.face.landmarks_detected})
    return pd.DataFrame(rows)


# --- CLI ------------------------------------------------------------------------------------
def format_result(r: PhotoResult) -> str:
    """Human-readable lines for one photo (without its error, which goes to stderr)."""
    if not r.faces:
        return ""
    lines = [f"{r.photo}: {len(r.faces)} face{'s' if len(r.faces) != 1 else ''}"]
    for i, f in enumerate(r.faces, 1):
        box = ", ".join(f"{v:.0f}" for v in f.face.box)
        lm = "" if f.face.landmarks_detected else "  (landmark template)"
        lines.append(f"  face {i} at ({box}): {f.label} {100 * f.probabilities[f.label]:.1f}%{lm}")
        lines.append("    " + "  ".join(f"{k} {100 * v:.1f}%" for k, v in f.probabilities.items()))
    if r.annotated is not None:
        lines.append(f"  annotated: {r.annotated}")
    return "\n".join(lines)
