"""The parts of `sercseg_tf.predict`, in the order a frame goes through them.

``inputs`` (videos, images, folders -> frames), ``scale`` (frames to the training
frame scale and back), ``batches`` (the exported model on batches of frames),
``rows`` (features and calibrated columns of a frame), ``uncertainty`` (per-frame
confidence), ``to_labelme`` (a label map as editable LabelMe polygons), ``summary``
(per-input and combined tables), ``timeline`` (features over time plot), ``review``
(frames worth annotating next; protection of reviewed files), ``paths`` (the names
under predict's ``--output_dir``).
"""
