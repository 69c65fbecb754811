"""Keras Conv2D and BatchNormalization on faster TensorFlow kernels, same weights and maths.

Both classes subclass the Keras layer they replace: the same constructor, the same
variables (names, shapes, float32 master copies), so ImageNet weights and checkpoints
load unchanged, and every output equals Keras' up to float rounding (tested).

- `Conv2D`: Keras 3 runs a *dilated* convolution through ``tf.nn.convolution``, which
  on TensorFlow takes the space-to-batch route (``SpaceToBatchND`` -> dense conv ->
  ``BatchToSpaceND``): the input is padded to a multiple of the rate and split into
  rate² small images, each padded again for the kernel. For the ASPP branches (rate 18
  on a 31x41 map at output stride 16) that is ~6x the work; measured here a 3x3 rate-18
  conv on 2048 channels took 0.53 CPU-s through Keras and 0.087 CPU-s as one ``Conv2D``
  op with a ``dilations`` attribute, which oneDNN runs directly. Rate 2 (the backbone's
  last stage at OS16) goes to that op. Rates >= 3 (the ASPP) go to `atrous_conv_gemm`:
  oneDNN's dilated kernels at large rates are slow in bfloat16 (no AMX path; the
  weight gradient of the rate-12 branch took longer than in float32), while a sum of
  per-tap matrix products runs at the matmul rate and skips taps that fall entirely in
  the padding.
  Two more cases compute their *gradients* as matrix products and leave the forward
  op alone (so inference is unchanged): 1x1 convs on >= 128 channels (`pointwise_conv`)
  and bfloat16 3x3 convs on >= 256 channels (`conv_tap_grad`, kernel gradient per tap),
  on one replica as the per-tap path.
  oneDNN's ``Conv2DBackpropFilter`` ran at a third of the matmul rate on the small,
  many-channel maps of ResNet's later stages (bfloat16, the demo's stride-32 stage: 9.0
  ms for the kernel gradient of a 1024->2048 1x1 conv, 3.4 ms as one matmul).
- `BatchNormalization`: Keras 3 normalises with separate moments / multiply / add ops and
  casts bfloat16 inputs to float32 and back around them. `BatchNormalization` calls the
  fused kernel (``FusedBatchNormV3``: statistics, scale and shift accumulate in float32
  whatever the input dtype), which oneDNN also fuses with the preceding convolution at
  inference. Training-mode statistics and the moving-average update follow Keras:
  biased batch variance, ``moving = m * moving + (1 - m) * batch``. With synchronized
  statistics over more than one replica it defers to Keras (cross-replica all-reduce).
"""

from __future__ import annotations

import keras
import tensorflow as tf

_FUSED_DTYPES = (tf.float32, tf.bfloat16, tf.float16)
# Smallest dilation rate computed by `atrous_conv_gemm` (measured: faster from rate 3 in
# float32 and bfloat16, fwd + bwd; rate 2 is faster as one dilated Conv2D op).
GEMM_MIN_RATE = 3
# Smallest input and output channel count for which `pointwise_conv` computes a 1x1
# convolution's gradients as matrix products (measured: 1.4-2x faster fwd + bwd in
# bfloat16 from 128 channels on; at 64 channels oneDNN's own kernels are as fast or faster).
GEMM_MIN_POINTWISE_CHANNELS = 128
# Smallest channel count for which a bfloat16 3x3 conv computes its kernel gradient per
# tap (`conv_tap_grad`; measured fwd + bwd: 1.5x faster at 512 channels on the demo's
# 7x9 maps, 1.2x at 256; no gain in float32, whose kernel is not the slow one).
TAP_GRAD_MIN_CHANNELS = 256


def _taps(shape, kernel_size: tuple[int, int], rate: int):
    """``(i, j, dy, dx)`` of every kernel tap; taps that only see padding are skipped.

    Tap ``(i, j)`` reads the input at offset ``(dy, dx) = ((i - kh//2) r, (j - kw//2) r)``;
    with a static height ``H`` a tap with ``|dy| >= H`` multiplies zeros only.
    """
    kh, kw = kernel_size
    height, width = shape[1], shape[2]
    for i in range(kh):
        for j in range(kw):
            dy, dx = (i - kh // 2) * rate, (j - kw // 2) * rate
            if (height is not None and abs(dy) >= height) or (
                    width is not None and abs(dx) >= width):
                continue
            yield i, j, dy, dx


def _overlap(x, dy: int, dx: int):
    """Where tap ``(dy, dx)`` meets the input: ``(out_begin, in_begin, rows, cols)``.

    Output pixels ``out_begin + [0, rows) x [0, cols)`` read input pixels
    ``in_begin + [0, rows) x [0, cols)``, all inside ``x``; ``rows`` or ``cols`` is 0 when
    the tap sees padding only (begins are clamped so the empty slices stay in range).
    """
    shape = tf.shape(x)
    height, width = shape[1], shape[2]
    rows = tf.maximum(height - abs(dy), 0)
    cols = tf.maximum(width - abs(dx), 0)
    out_begin = (tf.minimum(max(0, -dy), height), tf.minimum(max(0, -dx), width))
    in_begin = (tf.minimum(max(0, dy), height), tf.minimum(max(0, dx), width))
    return out_begin, in_begin, rows, cols


def atrous_conv_gemm(x, kernel, rate: int):
    """'same'-padded stride-1 atrous convolution as a sum of per-tap matrix products.

    Implements ``y[b, p] = sum_{i,j} x[b, p + (i - kh//2, j - kw//2) * rate] @ k[i, j]``
    with zero padding, restricted for each tap to the output pixels whose input pixel
    lies inside ``x`` (the rest multiplies zeros). Partial sums accumulate in float32.
    Gradients: ``dx`` by TensorFlow's dilated ``Conv2DBackpropInput``; ``dk[i, j] =
    x_region^T @ dy_region`` per tap, again one matrix product each.

    Args:
      x: ``[B, H, W, C]`` (dynamic H, W allowed).
      kernel: ``[kh, kw, C, F]`` of x's dtype, odd kh and kw.
      rate: the dilation rate.

    Returns:
      ``[B, H, W, F]`` of x's dtype.
    """
    kh, kw, channels, filters = kernel.shape
    taps = list(_taps(x.shape, (kh, kw), rate))

    @tf.custom_gradient
    def conv(x, kernel):
        batch, shape = tf.shape(x)[0], tf.shape(x)
        y = None
        for i, j, dy, dx in taps:
            (y0, x0), (iy, ix), rows, cols = _overlap(x, dy, dx)
            xs = tf.slice(x, [0, iy, ix, 0], [batch, rows, cols, channels])
            part = tf.matmul(tf.reshape(xs, [-1, channels]), kernel[i, j])
            part = tf.cast(tf.reshape(part, [batch, rows, cols, filters]), tf.float32)
            part = tf.pad(part, [[0, 0], [y0, shape[1] - rows - y0],
                                 [x0, shape[2] - cols - x0], [0, 0]])
            y = part if y is None else y + part

        def grad(dy_out):
            dx_in = tf.nn.conv2d_transpose(dy_out, kernel, shape, strides=1, padding="SAME",
                                           dilations=rate)
            return dx_in, _kernel_grad_per_tap(x, dy_out, kernel.shape, taps)

        return tf.cast(y, x.dtype), grad

    return conv(x, tf.convert_to_tensor(kernel))


def _kernel_grad_per_tap(x, dy_out, kernel_shape, taps):
    """Kernel gradient of a 'same' stride-1 conv: ``dk[i, j] = x_region^T @ dy_region``.

    For each tap of `_taps`, the input pixels it reads and the output pixels it writes
    (`_overlap`) form one matrix product; taps that see padding only get zeros.
    """
    kh, kw, channels, filters = kernel_shape
    batch = tf.shape(x)[0]
    per_tap = {}
    for i, j, dy, dx in taps:
        (y0, x0), (iy, ix), rows, cols = _overlap(x, dy, dx)
        xs = tf.slice(x, [0, iy, ix, 0], [batch, rows, cols, channels])
        gs = tf.slice(dy_out, [0, y0, x0, 0], [batch, rows, cols, filters])
        per_tap[(i, j)] = tf.matmul(tf.reshape(xs, [-1, channels]),
                                    tf.reshape(gs, [-1, filters]), transpose_a=True)
    zeros = tf.zeros([channels, filters], x.dtype)
    dk = tf.stack([per_tap.get((i, j), zeros) for i in range(kh) for j in range(kw)])
    return tf.reshape(dk, [kh, kw, channels, filters])


def conv_tap_grad(x, kernel):
    """'same'-padded stride-1 undilated convolution whose kernel gradient is per-tap GEMMs.

    Forward: TensorFlow's ``Conv2D`` op; ``dx``: its ``Conv2DBackpropInput``; ``dk``:
    `_kernel_grad_per_tap` (on the last stage's small maps oneDNN's
    ``Conv2DBackpropFilter`` ran at a third of the matmul rate in bfloat16).
    """
    taps = list(_taps(x.shape, kernel.shape[:2], 1))

    @tf.custom_gradient
    def conv(x, kernel):
        y = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")

        def grad(dy_out):
            dx_in = tf.nn.conv2d_transpose(dy_out, kernel, tf.shape(x), strides=1,
                                           padding="SAME")
            return dx_in, _kernel_grad_per_tap(x, dy_out, kernel.shape, taps)

        return y, grad

    return conv(x, tf.convert_to_tensor(kernel))


def pointwise_conv(x, kernel, stride: int):
    """1x1 convolution whose gradients are matrix products.

    Implements ``y[b, p] = x[b, s p] @ k[0, 0]`` (stride ``s``; for a 1x1 kernel 'same'
    and 'valid' padding agree). The forward pass is TensorFlow's ``Conv2D`` op (oneDNN
    fuses it with the bias add); the gradients are ``dk = x_s^T @ dy`` and ``dx_s = dy @
    k^T`` with ``x_s = x[:, ::s, ::s]`` flattened to ``[B H' W', C]``: oneDNN's
    ``Conv2DBackpropFilter`` on small maps with many channels ran at a third of the
    matmul rate in bfloat16. A strided conv's ``dx`` (zero off the sampled pixels) is
    TensorFlow's ``Conv2DBackpropInput``.

    Args:
      x: ``[B, H, W, C]``.
      kernel: ``[1, 1, C, F]`` of x's dtype.
      stride: the stride in both directions.

    Returns:
      ``[B, ceil(H / s), ceil(W / s), F]`` of x's dtype.
    """
    channels, filters = kernel.shape[2], kernel.shape[3]

    @tf.custom_gradient
    def conv(x, kernel):
        y = tf.nn.conv2d(x, kernel, strides=stride, padding="VALID")

        def grad(dy):
            sampled = x[:, ::stride, ::stride, :] if stride > 1 else x
            dy_2d = tf.reshape(dy, [-1, filters])
            dk = tf.matmul(tf.reshape(sampled, [-1, channels]), dy_2d, transpose_a=True)
            if stride > 1:
                dx = tf.nn.conv2d_transpose(dy, kernel, tf.shape(x), strides=stride,
                                            padding="VALID")
            else:
                dx = tf.matmul(dy_2d, tf.reshape(kernel, [channels, filters]),
                               transpose_b=True)
                dx = tf.reshape(dx, tf.shape(x))
            return dx, tf.reshape(dk, [1, 1, channels, filters])

        return y, grad

    return conv(x, tf.convert_to_tensor(kernel))


@keras.saving.register_keras_serializable(package="sercseg_tf")
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D`: no space-to-batch, GEMM gradients where they pay (module doc)."""

    def convolution_op(self, inputs, kernel):
        """Runs the convolution; the dilated case without space-to-batch.

        1x1 on many channels: `pointwise_conv`; bfloat16 3x3 on many channels:
        `conv_tap_grad`; rate >= `GEMM_MIN_RATE` with 'same' padding and an odd kernel:
        `atrous_conv_gemm` (these three on one replica); other dilated cases: one
        ``Conv2D`` op with ``dilations``; otherwise Keras. (With several replicas in sync
        the per-tap path's training steps differed between a two-worker cluster and one
        process over two replicas, 1e-4 in the second step's loss, cause not found; the
        dilated op agrees exactly.)
        """
        rates = tuple(self.dilation_rate)
        if self._pointwise_gemm(inputs, kernel):
            return pointwise_conv(inputs, kernel, self.strides[0])
        if self._tap_grad(inputs, kernel):
            return conv_tap_grad(inputs, kernel)
        if (max(rates) == 1 or self.groups != 1 or self.data_format != "channels_last"
                or any(s > 1 for s in self.strides)):
            return super().convolution_op(inputs, kernel)
        kh, kw = self.kernel_size
        if (rates[0] == rates[1] >= GEMM_MIN_RATE and self.padding == "same"
                and kh % 2 == 1 and kw % 2 == 1 and _replicas_in_sync() == 1):
            return atrous_conv_gemm(inputs, kernel, rates[0])
        return tf.nn.conv2d(inputs, kernel, strides=1, padding=self.padding.upper(),
                            dilations=list(rates))

    def _pointwise_gemm(self, inputs, kernel) -> bool:
        """Whether `pointwise_conv` runs this layer: a plain 1x1 conv on many channels.

        One replica only: with two replicas in sync a two-worker cluster and one process
        disagreed by 1e-4 in the second step's loss, as with `atrous_conv_gemm`.
        """
        kh, kw, channels, filters = kernel.shape
        return (kh == kw == 1 and max(self.dilation_rate) == 1 and self.groups == 1
                and self.data_format == "channels_last"
                and self.strides[0] == self.strides[1]
                and min(channels, filters) >= GEMM_MIN_POINTWISE_CHANNELS
                and _replicas_in_sync() == 1)

    def _tap_grad(self, inputs, kernel) -> bool:
        """Whether `conv_tap_grad` runs this layer: a bfloat16 'same' conv, many channels.

        Undilated, stride 1, odd kernel larger than 1x1, one replica (as `atrous_conv_gemm`).
        """
        kh, kw, channels, filters = kernel.shape
        return (kh % 2 == 1 and kw % 2 == 1 and kh * kw > 1 and max(self.dilation_rate) == 1
                and max(self.strides) == 1 and self.groups == 1 and self.padding == "same"
                and self.data_format == "channels_last" and inputs.dtype == tf.bfloat16
                and min(channels, filters) >= TAP_GRAD_MIN_CHANNELS
                and _replicas_in_sync() == 1)


def _replicas_in_sync() -> int:
    context = tf.distribute.get_replica_context()
    return context.num_replicas_in_sync if context is not None else 1


@keras.saving.register_keras_serializable(package="sercseg_tf")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` on the fused kernel (see the module docstring).

    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` over the last axis of a 4-D
    input; in training mode ``mean``/``var`` are the batch's (biased variance) and the
    moving statistics are updated as Keras does.
    """

    def _can_fuse(self, inputs, mask) -> bool:
        return (mask is None and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and self.scale and self.center and not self.renorm
                and inputs.dtype in _FUSED_DTYPES
                and not (self.synchronized and _replicas_in_sync() > 1))

    def call(self, inputs, training=None, mask=None):
        """Normalises ``inputs``; falls back to Keras where the fused kernel does not apply."""
        inputs = tf.convert_to_tensor(inputs)
        if not self._can_fuse(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        gamma = tf.cast(self.gamma, tf.float32)
        beta = tf.cast(self.beta, tf.float32)
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=self.epsilon, is_training=True)
            # The kernel returns the Bessel-corrected variance n/(n-1)·var; Keras updates
            # the moving variance with the biased one.
            n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
            variance = variance * (n - 1.0) / tf.maximum(n, 1.0)
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(
                self.moving_variance * momentum + variance * (1.0 - momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon,
                is_training=False)
        return tf.cast(y, self.compute_dtype)
