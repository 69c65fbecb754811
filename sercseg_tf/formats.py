"""String keys of the data formats: TFRecord features, tf.data samples, SavedModel signature.

TFRecord feature keys are deeplab2's (``deeplab2/data/data_utils.py``:
``image/encoded``, ``image/segmentation/class/encoded``, ...) plus the video keys
``video/sequence_id`` (``b"case05"``) and ``video/frame_id`` used for per-case sharding.
"""

from __future__ import annotations

# deeplab2 TFRecord keys.
KEY_ENCODED_IMAGE = "image/encoded"
KEY_IMAGE_FILENAME = "image/filename"
KEY_IMAGE_FORMAT = "image/format"
KEY_IMAGE_HEIGHT = "image/height"
KEY_IMAGE_WIDTH = "image/width"
KEY_IMAGE_CHANNELS = "image/channels"
KEY_ENCODED_LABEL = "image/segmentation/class/encoded"
KEY_LABEL_FORMAT = "image/segmentation/class/format"
KEY_SEQUENCE_ID = "video/sequence_id"
KEY_FRAME_ID = "video/frame_id"

# Keys of the decoded-sample dictionaries that flow through tf.data and the model.
SAMPLE_IMAGE = "image"
SAMPLE_LABEL = "label"
SAMPLE_FILENAME = "filename"
SAMPLE_CASE_ID = "case_id"
SAMPLE_FRAME_ID = "frame_id"

# Exported SavedModel signature and its tensor names.
SERVING_SIGNATURE = "serving_default"
SERVING_INPUT = "images"
SERVING_PRED = "semantic_pred"
SERVING_PROBS = "semantic_probs"
