"""Data stages: synthetic cases, video frames, LabelMe rasterisation, TFRecords, tf.data."""
