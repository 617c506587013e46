"""Label images as network inputs, and synthetic label images.

A label image holds integer ids: 0 is background. What the ids mean is the one choice a
user makes (``classes``, Pix2Pix's ``--label-classes``):

* ``classes=0`` (the default): *instance labels*, as segmentation tools write them: every
  nonzero id is one object, all objects of one class (foreground);
* ``classes=K``: *semantic labels*: the ids are class ids 1..K; the objects are the
  connected regions of each class.

:func:`encode_labels` turns a label image into what a generator can learn from, never the
raw ids (whose values are arbitrary): ``(C_enc, H, W)`` float32 in [0, 1], with

* ``K + 1`` one-hot class channels (background first; K = 1 for instance labels),
* one instance-boundary channel: 1 on the pixels of an object next to another id
  (background or another object: touching objects stay apart),
* optionally one distance channel: per object, the distance to its boundary divided by
  the object's largest distance (0 on the boundary, 1 at its centre), which tells the
  generator where an object's inside is whatever its size.

:func:`synthetic_masks` makes new label images by placing the objects of given ones,
randomly rotated, flipped and elastically deformed, on an empty canvas.

numpy and scipy only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import NapariGanError

#: most objects a uint16 label image can hold
MAX_IDS = 65535


def encoded_channels(classes: int = 0, distance: bool = True) -> int:
    """Channels of :func:`encode_labels`: one-hot classes with background, boundary, distance."""
    return max(1, int(classes)) + 1 + 1 + int(bool(distance))


def channel_names(classes: int = 0, distance: bool = True) -> list[str]:
    """What each channel of :func:`encode_labels` holds, in order."""
    names = ["background"] + (["objects"] if classes == 0 else [f"class {k}" for k in range(1, classes + 1)])
    return names + ["boundaries"] + (["distance"] if distance else [])


def identity_normalizer(channels: int):
    """The normaliser of encoded labels: none (they are in [0, 1] already)."""
    from .normalization import Normalizer

    return Normalizer([0.0] * channels, [1.0] * channels)


# ---------------------------------------------------------------------------- checks
def as_label_image(labels, name: str = "the label image") -> np.ndarray:
    """``labels`` as a 2-D int64 array (a ``(1, H, W)`` plane is accepted), refusing what is
    not a label image: other shapes, negative or fractional values, NaN."""
    array = np.asarray(labels)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise NapariGanError(f"{name} has shape {array.shape}; a label image is 2-D (Y, X), one plane at a time.")
    if array.dtype == bool:
        return array.astype(np.int64)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise NapariGanError(f"{name} contains NaN or infinite values; a label image holds whole-number ids.")
        if not np.array_equal(array, np.round(array)):
            raise NapariGanError(f"{name} holds fractional values (it is {array.dtype}); a label image holds "
                                 "whole-number ids (0 = background), e.g. the masks of a segmentation tool.")
    elif array.dtype.kind not in "ui":
        raise NapariGanError(f"{name} has data type {array.dtype}; a label image holds whole-number ids.")
    if array.dtype.kind in "if" and array.size and array.min() < 0:
        raise NapariGanError(f"{name} holds negative ids (down to {array.min():g}); label ids are 0 "
                             "(background) or more.")
    return array.astype(np.int64)


def check_objects(labels: np.ndarray, name: str = "the label image") -> None:
    if not labels.any():
        raise NapariGanError(f"{name} has no objects (every pixel is 0, background); a label image needs "
                             "at least one labelled object.")


def check_mask_size(mask, image, name: str = "the mask", scale: int = 1) -> None:
    """A mask must cover its image pixel for pixel."""
    (h, w), (ht, wt) = np.shape(mask)[-2:], np.shape(image)[-2:]
    if (ht, wt) != (h * scale, w * scale):
        raise NapariGanError(f"{name} is {h}x{w} pixels but its image is {ht}x{wt}; a label image must have "
                             "the size of the image it labels.")


# -------------------------------------------------------------------------- encoding
def instances_of(labels: np.ndarray, classes: int = 0, name: str = "the label image") -> tuple[np.ndarray, np.ndarray]:
    """``(class_map, instances)`` of a checked 2-D label image: the class of every pixel
    (0..K) and an id per object (instance labels: the ids themselves; semantic labels:
    connected regions of each class, 8-connected)."""
    if classes == 0:
        return (labels > 0).astype(np.int64), labels
    top = int(labels.max())
    if top > classes:
        raise NapariGanError(f"{name} holds id {top} but the model knows the classes 1..{classes} "
                             f"(--label-classes {classes}); for instance labels (one id per object) "
                             "use --label-classes 0.")
    instances = np.zeros(labels.shape, np.int64)
    offset = 0
    for k in range(1, classes + 1):
        comp, n = ndimage.label(labels == k, structure=np.ones((3, 3), bool))
        instances[comp > 0] = comp[comp > 0] + offset
        offset += n
    return labels, instances


def instance_boundaries(instances: np.ndarray) -> np.ndarray:
    """Pixels of an object with a 4-neighbour of another id (background or another object);
    the image border is no boundary."""
    p = np.pad(instances, 1, mode="edge")
    c = p[1:-1, 1:-1]
    edge = (p[:-2, 1:-1] != c) | (p[2:, 1:-1] != c) | (p[1:-1, :-2] != c) | (p[1:-1, 2:] != c)
    return edge & (c != 0)


def boundary_distance(instances: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """Per object, the distance to its boundary over the object's largest one (0..1)."""
    inside = (instances != 0) & ~boundaries
    dist = ndimage.distance_transform_edt(inside).astype(np.float32)
    ids, index = np.unique(instances, return_inverse=True)
    index = index.reshape(instances.shape)
    top = np.asarray(ndimage.maximum(dist, index, np.arange(len(ids))), np.float32).reshape(-1)
    top[top == 0] = 1.0
    return dist / top[index]


def encode_labels(label_image, classes: int = 0, distance: bool = True,
                  name: str = "the label image") -> np.ndarray:
    """A label image -> ``(C_enc, H, W)`` float32 network input (see the module docstring):
    one-hot classes (background first), instance boundaries, and the normalised distance to
    the boundary (``distance``). Refuses images that are not label images and label images
    without objects."""
    labels = as_label_image(label_image, name)
    check_objects(labels, name)
    class_map, instances = instances_of(labels, classes, name)
    n_classes = max(1, classes) + 1
    out = np.zeros((encoded_channels(classes, distance),) + labels.shape, np.float32)
    for k in range(n_classes):
        out[k] = class_map == k
    edges = instance_boundaries(instances)
    out[n_classes] = edges
    if distance:
        out[n_classes + 1] = boundary_distance(instances, edges)
    return out


# -------------------------------------------------------------------- synthetic masks
def _objects(labels: np.ndarray, classes: int) -> tuple[list[tuple[np.ndarray, int]], list[tuple[np.ndarray, int]]]:
    """The objects of a label image as (binary crop, class), those away from the image border
    and those cut by it."""
    class_map, instances = instances_of(labels, classes)
    ids, index = np.unique(instances, return_inverse=True)
    index = index.reshape(instances.shape) + int(ids[0] != 0)   # 0 stays the background
    inner, cut = [], []
    h, w = labels.shape
    for i, box in enumerate(ndimage.find_objects(index), start=1):
        if box is None:
            continue
        crop = index[box] == i
        k = int(class_map[box][crop][0])
        at_border = box[0].start == 0 or box[1].start == 0 or box[0].stop == h or box[1].stop == w
        (cut if at_border else inner).append((crop, k))
    return inner, cut


def _transform(obj: np.ndarray, rng: np.random.Generator, elastic: float) -> np.ndarray:
    """``obj`` (binary) rotated by a random angle, maybe flipped, elastically deformed; the
    largest connected piece of the result, cropped to it."""
    h, w = obj.shape
    size = max(h, w)
    side = int(np.ceil(np.hypot(h, w) * (1 + elastic))) + 4
    angle = rng.uniform(0, 2 * np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    yy, xx = np.mgrid[:side, :side].astype(np.float64) - (side - 1) / 2
    ys = cos * yy - sin * xx
    xs = flip * (sin * yy + cos * xx)
    if elastic > 0:   # a smooth random displacement field, about elastic * size pixels
        sigma = max(1.0, size / 4)
        for coords in (ys, xs):
            field = ndimage.gaussian_filter(rng.normal(0, 1, (side, side)), sigma)
            field /= np.abs(field).max() + 1e-12
            coords += field * elastic * size
    warped = ndimage.map_coordinates(obj.astype(np.float32), [ys + (h - 1) / 2, xs + (w - 1) / 2],
                                     order=1, cval=0.0) > 0.5
    pieces, n = ndimage.label(warped)
    if n == 0:
        return obj
    if n > 1:
        sizes = ndimage.sum_labels(np.ones_like(pieces), pieces, np.arange(1, n + 1))
        warped = pieces == 1 + int(np.argmax(sizes))
    box = ndimage.find_objects(warped.astype(np.int8))[0]
    return warped[box]


def synthetic_masks(label_images, n: int, shape: tuple[int, int] | None = None,
                    rng: np.random.Generator | None = None, classes: int = 0,
                    elastic: float = 0.15, max_overlap: float = 0.05) -> list[np.ndarray]:
    """``n`` new label images (uint16) made from the objects of ``label_images`` (2-D label
    images, or ``(1, H, W)`` planes): each object is drawn at random, rotated by any angle,
    maybe flipped and elastically deformed (a smooth displacement of about ``elastic`` times
    its size), and placed at a random position on an empty canvas of ``shape`` (default: the
    first label image's), overlapping the objects already there by at most ``max_overlap`` of
    its area (it is tried elsewhere, else left out; where it overlaps, the earlier object
    stays on top). The number of objects follows the training masks' objects per pixel
    (Poisson, at least one). Objects cut by the border of their label image are used only
    when there are no others.

    The result uses the convention of the input: instance labels (``classes=0``) get ids
    1..m, one per object; semantic labels (``classes=K``) the objects' class ids.
    """
    rng = rng or np.random.default_rng()
    if n < 1:
        raise NapariGanError("The number of synthetic masks must be at least 1.")
    images = [as_label_image(img, f"label image {i + 1}") for i, img in enumerate(label_images)]
    if not images:
        raise NapariGanError("No label images were given to take objects from.")
    inner, cut, area = [], [], 0
    for i, labels in enumerate(images):
        if classes:
            instances_of(labels, classes, f"label image {i + 1}")   # ids above K: a clear error
        a, b = _objects(labels, classes) if labels.any() else ([], [])
        inner += a
        cut += b
        area += labels.size
    pool = inner or cut
    if not pool:
        raise NapariGanError("The label images have no objects (every pixel is 0, background); "
                             "synthetic masks need objects to place.")
    shape = tuple(int(s) for s in (shape or images[0].shape))
    if len(shape) != 2 or min(shape) < 4:
        raise NapariGanError(f"Synthetic masks need a shape of at least 4x4 pixels, not {shape}.")
    density = (len(inner) + len(cut)) / area
    out = []
    for _ in range(n):
        canvas = np.zeros(shape, np.int64)
        count = max(1, int(rng.poisson(density * shape[0] * shape[1])))
        placed = 0
        for _ in range(count):
            crop, k = pool[int(rng.integers(len(pool)))]
            obj = _transform(crop, rng, elastic)
            h, w = obj.shape
            for _ in range(10):
                # anywhere its centre falls on the canvas (objects may be cut by the border)
                r = int(rng.integers(-(h // 2), shape[0] - h // 2))
                c = int(rng.integers(-(w // 2), shape[1] - w // 2))
                r0, c0, r1, c1 = max(r, 0), max(c, 0), min(r + h, shape[0]), min(c + w, shape[1])
                part = obj[r0 - r:r1 - r, c0 - c:c1 - c]
                if part.sum() < 0.5 * obj.sum():
                    continue
                window = canvas[r0:r1, c0:c1]
                if np.count_nonzero(part & (window != 0)) > max_overlap * part.sum():
                    continue
                placed += 1
                if placed > MAX_IDS:
                    raise NapariGanError(f"More than {MAX_IDS} objects in one synthetic mask; choose a "
                                         "smaller shape.")
                window[part & (window == 0)] = k if classes else placed
                break
        if not canvas.any():   # nothing fitted: one object in the middle
            obj = _transform(pool[0][0], rng, 0.0)[: shape[0], : shape[1]]
            r, c = (shape[0] - obj.shape[0]) // 2, (shape[1] - obj.shape[1]) // 2
            canvas[r:r + obj.shape[0], c:c + obj.shape[1]][obj] = pool[0][1] if classes else 1
        out.append(canvas.astype(np.uint16))
    return out
