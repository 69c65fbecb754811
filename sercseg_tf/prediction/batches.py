"""The exported model on batches of frames, at the training scale (`scale`).

Consecutive frames of the same size go through the SavedModel's ``serving_default``
together (at most ``batch_size``); each frame comes back with its label map and its
class probabilities at the frame's own size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import cv2
import numpy as np

from sercseg_tf import formats
from sercseg_tf.prediction.inputs import Frame
from sercseg_tf.prediction.scale import ScalePolicy, resize_image, resize_probs


def _run_batch(serving_fn: Callable, batch: list[Frame], scale: float
               ) -> list[tuple[Frame, np.ndarray, np.ndarray | None]]:
    """One model call; labels and probabilities brought back to the frames' size."""
    h, w = batch[0].image.shape[:2]
    if scale == 1.0:
        images = np.stack([f.image for f in batch])
    else:
        images = np.stack([resize_image(f.image, 1.0 / scale) for f in batch])
    out = serving_fn(images)
    pred = np.asarray(out[formats.SERVING_PRED]).astype(np.uint8)
    probs = out.get(formats.SERVING_PROBS)
    probs = None if probs is None else np.asarray(probs, np.float32)
    results = []
    for i, frame in enumerate(batch):
        p, q = pred[i], None if probs is None else probs[i]
        if scale != 1.0:
            if q is not None:
                q = resize_probs(q, (h, w))
                p = np.argmax(q, axis=-1).astype(np.uint8)
            else:
                p = cv2.resize(p, (w, h), interpolation=cv2.INTER_NEAREST)
        results.append((frame, p, q))
    return results


def batched_outputs(serving_fn: Callable, frames: Iterable[Frame], batch_size: int,
                    policy: ScalePolicy | None = None
                    ) -> Iterator[tuple[Frame, np.ndarray, np.ndarray | None]]:
    """Runs ``serving_fn`` on batches of consecutive same-size frames.

    Args:
      serving_fn: ``images uint8 [B,H,W,3] -> {semantic_pred, semantic_probs}``
        (`sercseg_tf.model.inference.load_serving_fn`).
      frames: the frames, in order.
      batch_size: frames per call.
      policy: the input scale per frame size; None = frames as they are.

    Yields:
      ``(frame, label map uint8 [H, W], probabilities float32 [H, W, K] or None when
      the function returns none)`` in input order.
    """
    batch: list[Frame] = []
    for frame in frames:
        if batch and (len(batch) >= batch_size or frame.image.shape != batch[0].image.shape):
            hw = batch[0].image.shape[:2]
            yield from _run_batch(serving_fn, batch, policy.input_scale(hw) if policy else 1.0)
            batch = []
        batch.append(frame)
    if batch:
        hw = batch[0].image.shape[:2]
        yield from _run_batch(serving_fn, batch, policy.input_scale(hw) if policy else 1.0)


def batched_predictions(serving_fn: Callable, frames: Iterable[Frame],
                        batch_size: int) -> Iterator[tuple[Frame, np.ndarray]]:
    """`batched_outputs` without probabilities or rescaling: ``(frame, label map)``."""
    for frame, pred, _ in batched_outputs(serving_fn, frames, batch_size):
        yield frame, pred
