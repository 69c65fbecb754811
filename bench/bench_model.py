"""Speed of DeepLabV3+ per precision, against the machine's matmul rate and keras-hub's model.

Usage:
  python bench/bench_model.py [--precisions float32,mixed_bfloat16] [--output_json FILE]
      [--output_stride 16] [--batch_size 4] [--crop 481x641] [--infer_size 480x640]
      [--steps 3] [--warmup 1] [--infer_frames 5] [--peer] [--demo]
      [--inter_op_threads 0] [--intra_op_threads 0] [--jit_compile]

Everything is timed in one process, interleaved (one call of each subject in turn, then
the next round), so load from other jobs hits every subject alike; each figure is the
median over the timed calls, with min/max and process CPU seconds beside it:

- ``matmul_gflops``: a 4096x4096 matmul in float32 and bfloat16 (the machine's rate),
  timed in the same rounds as the inferences; ``goals`` holds the fp32 inference rate as
  a fraction of it, by wall time and by CPU time (steadier when other jobs share cores).
- ``model_gflop_per_frame``: floating-point operations of the model on one 481x641
  frame (what a 480x640 frame is padded to) at OS16 and OS32, counted by TensorFlow's
  profiler (``float_operation`` on the traced inference graph: convolutions, bias and
  residual adds, pooling) and by `analytic_flops` from the architecture; both are
  printed. Nominal counts (see `model_flops`); the FLOP rates use the profiler's.
- ``train_s_per_step``: our training step (`sercseg_tf.training.loop.make_train_step`:
  forward, masked cross-entropy, backward, our fused Adam at 1e-5) at the paper setting,
  batch 4, random preprocessed crops, per precision.
- ``inference_s_per_frame``: whole-frame inference of a uint8 480x640 frame
  (`inference.predict_logits` + argmax, as exported), per precision.
- ``peer`` (``--peer``): keras-hub's ``DeepLabV3ImageSegmenter`` (DeepLabV3+ on a
  ResNet-50 built from its config, random weights, ASPP rates 6/12/18 on the stride-32
  features, 4 classes) against ours at output stride 32, same input, batch, train step
  (loss, optimizer) and precision. It takes 480x640 frames and crops (its upsampling
  needs multiples of 32); ours takes 481x641 crops and pads the frame to 481x641.
- ``demo`` (``--demo``): the train step of configs/demo.yaml (its output stride, crop and
  batch).
- ``gemm_grads_speedup`` (``--gemm_grads_baseline``): each of our train steps again with
  `fast_layers.pointwise_conv` and `fast_layers.conv_tap_grad` off (keys ending in
  ``/onednn_grads``), and the ratio of the two medians per subject.

Random initialisation; weights do not change the cost. The first ``--warmup`` calls
(tracing) are not timed. CPU flags from /proc/cpuinfo are printed and stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import statistics
import time
from collections.abc import Callable

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"], "Precisions to time.")
flags.DEFINE_integer("output_stride", 16, "Our output stride at the paper setting.")
flags.DEFINE_integer("batch_size", 4, "Training batch size.")
flags.DEFINE_string("crop", "481x641", "Our training crop HxW (paper setting).")
flags.DEFINE_string("infer_size", "480x640", "Inference frame size HxW.")
flags.DEFINE_integer("steps", 3, "Timed training steps per subject.")
flags.DEFINE_integer("warmup", 1, "Untimed training steps / inference calls (tracing).")
flags.DEFINE_integer("infer_frames", 5, "Timed inference calls per subject.")
flags.DEFINE_integer("matmul_size", 4096, "Square matmul size for the machine's rate.")
flags.DEFINE_boolean("peer", True, "Time keras-hub's DeepLabV3ImageSegmenter and ours at OS32.")
flags.DEFINE_boolean("demo", False, "Also time the train step of configs/demo.yaml.")
flags.DEFINE_boolean("train", True, "Time training steps (else inference only).")
flags.DEFINE_integer("inter_op_threads", 0, "tf.config inter-op threads (0 = TF default).")
flags.DEFINE_integer("intra_op_threads", 0, "tf.config intra-op threads (0 = TF default).")
flags.DEFINE_boolean("jit_compile", False, "XLA-compile our train step and inference.")
flags.DEFINE_string("output_json", None, "Write the results here as JSON.")
flags.DEFINE_boolean("gemm_grads_baseline", False,
                     "Also time our train steps with the GEMM gradients of the 1x1 and "
                     "bfloat16 3x3 convs off (oneDNN's own kernels), keys '.../onednn_grads'.")

PEER_NAME = "keras_hub.models.DeepLabV3ImageSegmenter (ResNet-50, ASPP on P5, rates 6/12/18)"
PEER_OUTPUT_STRIDE = 32
DEMO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "demo.yaml")


def _hw(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def analytic_flops(height: int, width: int, output_stride: int, num_classes: int = 4
                   ) -> dict[str, float]:
    """FLOPs of our model on one ``height x width`` input, counted from the architecture.

    ``conv``: ``2 * MACs`` of every convolution (a dilated kxk conv counts all k² taps,
    padding included, as TensorFlow's profiler does; depthwise convs included).
    ``adds``: one add per output of a biased conv (the backbone's and the classifier)
    and per output of a residual add. Feature sizes follow the layers' padding: ``conv1``
    7x7/2 on 3-padded input, 3x3/2 max-pool on 1-padded, stride-2 1x1 convs.

    Returns:
      GFLOP: ``backbone``, ``aspp``, ``decoder`` (convolutions), ``conv`` (their sum),
      ``adds`` and ``total``.
    """
    from sercseg_tf.model.resnet import RESNET50_STAGES, stage_strides_and_rates

    def out(n: int, k: int, s: int, pad: int) -> int:
        return (n + 2 * pad - k) // s + 1

    h, w = out(height, 7, 2, 3), out(width, 7, 2, 3)
    backbone, adds = h * w * 64 * 2 * 7 * 7 * 3, h * w * 64
    h, w = out(h, 3, 2, 1), out(w, 3, 2, 1)
    cin, low = 64, None
    plan = stage_strides_and_rates(output_stride)
    for stage, f, blocks, _ in RESNET50_STAGES:
        for block in range(blocks):
            s = plan[stage][0] if block == 0 else 1
            h, w = out(h, 1, s, 0), out(w, 1, s, 0)
            macs = cin * f + 9 * f * f + f * 4 * f + (cin * 4 * f if block == 0 else 0)
            backbone += 2 * h * w * macs
            adds += h * w * (f + f + 4 * f + (4 * f if block == 0 else 0) + 4 * f)
            cin = 4 * f
        if stage == "conv2":
            low = (h, w)
    aspp = 2 * (h * w * (2048 * 256 * 28 + 5 * 256 * 256) + 2048 * 256)
    h4, w4 = low
    decoder = 2 * h4 * w4 * (256 * 48 + 9 * 304 + 304 * 256 + 9 * 256 + 256 * 256
                             + 256 * num_classes)
    adds += h4 * w4 * num_classes
    parts = {"backbone": backbone, "aspp": aspp, "decoder": decoder}
    parts["conv"] = backbone + aspp + decoder
    parts["adds"] = adds
    parts["total"] = parts["conv"] + adds
    return {k: v / 1e9 for k, v in parts.items()}


def profiler_flops(model, height: int, width: int) -> dict[str, float]:
    """GFLOP of ``model`` on one ``[1, height, width, 3]`` input by TF's profiler, by op type.

    ``tf.compat.v1.profiler`` ``float_operation`` on the traced inference graph; the
    ``total`` and one entry per op type that has a FLOP count (Conv2D, BiasAdd, ...).
    """
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    fn = tf.function(lambda x: model(x, training=False))
    graph = fn.get_concrete_function(tf.TensorSpec([1, height, width, 3], tf.float32)).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    op_types = {op.name: op.type for op in graph.get_operations()}
    by_type: dict[str, float] = {}

    def walk(node) -> None:
        if node.float_ops:
            kind = op_types.get(node.name, "other")
            by_type[kind] = by_type.get(kind, 0.0) + node.float_ops / 1e9
        for child in node.children:
            walk(child)

    walk(model_analyzer.profile(graph, cmd="graph", options=options))
    by_type["total"] = sum(by_type.values())
    return by_type


@dataclasses.dataclass
class Timing:
    """Wall and process-CPU seconds of the timed calls of one subject."""

    wall: list[float] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)

    def add(self, fn: Callable[[], object]) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)

    def summary(self) -> dict:
        return {"median_s": statistics.median(self.wall), "min_s": min(self.wall),
                "max_s": max(self.wall), "cpu_median_s": statistics.median(self.cpu),
                "wall_s": self.wall, "cpu_s": self.cpu}


def interleaved(subjects: dict[str, Callable[[], object]], rounds: int, warmup: int
                ) -> dict[str, Timing]:
    """Calls each subject once per round, in turn; rounds after ``warmup`` are timed."""
    timings = {name: Timing() for name in subjects}
    for round_index in range(warmup + rounds):
        for name, fn in subjects.items():
            if round_index < warmup:
                fn()
            else:
                timings[name].add(fn)
                logging.info("%s: %.3f s (%.2f CPU s)", name, timings[name].wall[-1],
                             timings[name].cpu[-1])
    return timings


def matmul_subjects(size: int) -> dict[str, Callable[[], object]]:
    """One ``size x size`` matmul per dtype (float32, bfloat16), timed with the models."""
    import tensorflow as tf

    subjects = {}
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.cast(tf.random.normal([size, size]), dtype)
        b = tf.cast(tf.random.normal([size, size]), dtype)
        fn = tf.function(lambda a=a, b=b: tf.matmul(a, b))
        subjects[f"matmul/{dtype.name}"] = lambda fn=fn: fn().numpy()
    return subjects


def _batch(batch: int, size: tuple[int, int], seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.normal(0, 50, (batch, *size, 3)).astype("float32")
    labels = rng.integers(0, 4, (batch, *size)).astype("int32")
    return images, labels


@contextlib.contextmanager
def _onednn_grads():
    """Turns the GEMM-gradient convolutions off while a step is traced (and run)."""
    from sercseg_tf.model import fast_layers

    saved = fast_layers.GEMM_MIN_POINTWISE_CHANNELS, fast_layers.TAP_GRAD_MIN_CHANNELS
    fast_layers.GEMM_MIN_POINTWISE_CHANNELS = fast_layers.TAP_GRAD_MIN_CHANNELS = 2**31
    try:
        yield
    finally:
        fast_layers.GEMM_MIN_POINTWISE_CHANNELS, fast_layers.TAP_GRAD_MIN_CHANNELS = saved


def _with_baseline(train: dict, key: str, model, build_model: Callable[[], object],
                   batch: int, crop: tuple[int, int]) -> None:
    """Adds ``train[key]``, the train step of ``model``, and with --gemm_grads_baseline a
    twin on ``build_model()``'s model, its step traced with the GEMM-gradient convs off."""
    train[key] = train_subject(model, batch, crop, FLAGS.jit_compile)
    if FLAGS.gemm_grads_baseline:
        twin = train_subject(build_model(), batch, crop, FLAGS.jit_compile)

        def run_twin():
            with _onednn_grads():  # the first (warm-up) call traces the step
                return twin()

        train[f"{key}/onednn_grads"] = run_twin


def train_subject(model, batch: int, size: tuple[int, int], jit: bool = False):
    """A no-arg callable running one train step of ``model``: our loop's step and Adam."""
    import tensorflow as tf

    from sercseg_tf.training import loop
    from sercseg_tf.training.optimizer import Adam

    strategy = tf.distribute.get_strategy()
    optimizer = Adam(learning_rate=1e-5)
    optimizer.build(model.trainable_variables)
    dataset = tf.data.Dataset.from_tensors(_batch(batch, size)).repeat()
    iterator = iter(dataset)
    step = loop.make_train_step(strategy, model, optimizer)
    if jit:
        step = tf.function(step.python_function, jit_compile=True)
    return lambda: float(step(iterator))


def infer_subject(fn, size: tuple[int, int]):
    """A no-arg callable predicting one uint8 frame with ``fn(images) -> classes``."""
    import numpy as np
    import tensorflow as tf

    frame = tf.constant(np.random.default_rng(1).integers(0, 256, (1, *size, 3), np.uint8))
    return lambda: fn(frame).numpy()


def build_ours(output_stride: int, policy: str):
    from sercseg_tf.model.deeplab import build_deeplab
    from sercseg_tf.training import precision

    with precision.policy_scope(policy):
        return build_deeplab(output_stride=output_stride)


def build_peer(policy: str):
    """keras-hub DeepLabV3+ with a ResNet-50 (v1) encoder from config, random weights."""
    import keras_hub

    from sercseg_tf.training import precision

    with precision.policy_scope(policy):
        encoder = keras_hub.models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[3, 4, 6, 3],
            stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
            use_pre_activation=False)
        backbone = keras_hub.models.DeepLabV3Backbone(
            image_encoder=encoder, low_level_feature_key="P2", spatial_pyramid_pooling_key="P5",
            upsampling_size=8, dilation_rates=[6, 12, 18], projection_filters=48)
        return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=4)


def our_infer_fn(model, output_stride: int, jit: bool = False):
    import tensorflow as tf

    from sercseg_tf.model.inference import predict_logits

    return tf.function(lambda x: tf.argmax(predict_logits(model, x, 1.0, output_stride), -1),
                       jit_compile=jit or None)


def peer_infer_fn(model):
    import tensorflow as tf

    return tf.function(lambda x: tf.argmax(
        tf.cast(model(tf.cast(x, tf.float32), training=False), tf.float32), -1))


def build_subjects(policies: list[str]) -> tuple[dict, dict]:
    """Train and inference callables of every (model, precision) timed in this run."""
    crop, frame = _hw(FLAGS.crop), _hw(FLAGS.infer_size)
    peer_crop = (crop[0] - crop[0] % 32, crop[1] - crop[1] % 32)
    train, infer = {}, {}
    for policy in policies:
        ours = build_ours(FLAGS.output_stride, policy)
        key = f"ours_os{FLAGS.output_stride}/{policy}"
        _with_baseline(train, key, ours,
                       functools.partial(build_ours, FLAGS.output_stride, policy),
                       FLAGS.batch_size, crop)
        infer[key] = infer_subject(our_infer_fn(ours, FLAGS.output_stride, FLAGS.jit_compile),
                                   frame)
        if FLAGS.peer:
            if FLAGS.output_stride != PEER_OUTPUT_STRIDE:
                ours32 = build_ours(PEER_OUTPUT_STRIDE, policy)
                key = f"ours_os{PEER_OUTPUT_STRIDE}/{policy}"
                train[key] = train_subject(ours32, FLAGS.batch_size, crop, FLAGS.jit_compile)
                infer[key] = infer_subject(our_infer_fn(ours32, PEER_OUTPUT_STRIDE), frame)
            peer = build_peer(policy)
            train[f"peer/{policy}"] = train_subject(peer, FLAGS.batch_size, peer_crop)
            infer[f"peer/{policy}"] = infer_subject(peer_infer_fn(peer), frame)
        if FLAGS.demo:
            from sercseg_tf.config import load_config

            cfg = load_config(DEMO_CONFIG)
            build_demo = functools.partial(build_ours, cfg.output_stride, policy)
            _with_baseline(train, f"demo/{policy}", build_demo(), build_demo, cfg.batch_size,
                           (cfg.crop_height, cfg.crop_width))
    return train, infer


def _configure_threads() -> None:
    import tensorflow as tf

    if FLAGS.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
    if FLAGS.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)


def model_flops() -> dict:
    """Tool and analytic GFLOP per 481x641 frame at OS16 and OS32 (nominal).

    Nominal: every atrous conv as one dense ``Conv2D`` op (all k² taps, padding
    included), the convention of the profiler and of the usual FLOP counts. The model
    runs its rate >= 3 convs as per-tap matmuls that skip taps lying in the padding
    (`fast_layers.atrous_conv_gemm`), i.e. fewer FLOPs than this; for the count, that
    path is switched off so the profiler sees the architecture's convolutions.
    """
    from sercseg_tf.model import fast_layers

    crop = (481, 641)
    out = {}
    for output_stride in (16, 32):
        gemm_min_rate = fast_layers.GEMM_MIN_RATE
        fast_layers.GEMM_MIN_RATE = 10**9
        try:
            tool = profiler_flops(build_ours(output_stride, "float32"), *crop)
        finally:
            fast_layers.GEMM_MIN_RATE = gemm_min_rate
        analytic = analytic_flops(*crop, output_stride)
        out[f"os{output_stride}"] = {
            "profiler": tool["total"], "profiler_by_op": tool,
            "profiler_conv": tool.get("Conv2D", 0.0) + tool.get("DepthwiseConv2dNative", 0.0),
            "analytic": analytic["total"], "analytic_conv": analytic["conv"],
            "analytic_parts": analytic}
    return out


def collect(policies: list[str]) -> dict:
    """Runs every measurement; returns the JSON-ready results (see the module docstring)."""
    import tensorflow as tf

    from sercseg_tf.training import precision

    flags_found = sorted(precision.cpu_flags() & {"amx_bf16", "amx_tile", "avx512_bf16",
                                                  "avx512f", "avx512_fp16", "avx2"})
    logging.info("CPU flags: %s", ", ".join(flags_found))
    results = {
        "cpu_flags": flags_found,
        "cpu_model": precision.cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_avg_1min_start": os.getloadavg()[0],
        "tensorflow": tf.__version__,
        "settings": {"precisions": policies, "output_stride": FLAGS.output_stride,
                     "batch_size": FLAGS.batch_size, "crop": FLAGS.crop,
                     "infer_size": FLAGS.infer_size, "steps": FLAGS.steps,
                     "warmup": FLAGS.warmup, "infer_frames": FLAGS.infer_frames,
                     "matmul_size": FLAGS.matmul_size, "peer": FLAGS.peer,
                     "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
                     "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                     "jit_compile": FLAGS.jit_compile,
                     "gemm_grads_baseline": FLAGS.gemm_grads_baseline},
    }
    results["model_gflop_per_frame_detail"] = model_flops()
    results["model_gflop_per_frame"] = {k: v["profiler"] for k, v in
                                        results["model_gflop_per_frame_detail"].items()}
    train, infer = build_subjects(policies)
    # The matmuls run in the same rounds as the inferences: same load, comparable rates.
    infer.update(matmul_subjects(FLAGS.matmul_size))
    timings = {"inference": interleaved(infer, FLAGS.infer_frames, FLAGS.warmup)}
    flop = 2 * FLAGS.matmul_size ** 3 / 1e9
    results["matmul_gflops"] = {
        dtype: flop / statistics.median(timings["inference"][f"matmul/{dtype}"].wall)
        for dtype in ("float32", "bfloat16")}
    results["matmul_cpu_gflops_per_cpu_s"] = {
        dtype: flop / statistics.median(timings["inference"][f"matmul/{dtype}"].cpu)
        for dtype in ("float32", "bfloat16")}
    if FLAGS.train:
        timings["train"] = interleaved(train, FLAGS.steps, FLAGS.warmup)
    results["timings"] = {kind: {k: t.summary() for k, t in v.items()}
                          for kind, v in timings.items()}
    results["load_avg_1min_end"] = os.getloadavg()[0]
    results.update(summarize(results["timings"], policies, results))
    return results


def _median(timings: dict, kind: str, key: str) -> float | None:
    entry = timings.get(kind, {}).get(key)
    return entry["median_s"] if entry else None


def summarize(timings: dict, policies: list[str], results: dict) -> dict:
    """The issue's keys (per precision) and the goal ratios from the medians."""
    os_key = f"ours_os{FLAGS.output_stride}"
    out = {"inference_s_per_frame": {p: _median(timings, "inference", f"{os_key}/{p}")
                                     for p in policies},
           "train_s_per_step": {p: _median(timings, "train", f"{os_key}/{p}")
                                for p in policies}}
    if FLAGS.peer:
        out["peer"] = {p: {
            "name": PEER_NAME, "output_stride_compared": PEER_OUTPUT_STRIDE,
            "ours_inference_s_per_frame": _median(timings, "inference",
                                                  f"ours_os{PEER_OUTPUT_STRIDE}/{p}"),
            "peer_inference_s_per_frame": _median(timings, "inference", f"peer/{p}"),
            "ours_train_s_per_step": _median(timings, "train", f"ours_os{PEER_OUTPUT_STRIDE}/{p}"),
            "peer_train_s_per_step": _median(timings, "train", f"peer/{p}"),
        } for p in policies}
    if FLAGS.demo:
        out["demo_train_s_per_step"] = {p: _median(timings, "train", f"demo/{p}")
                                        for p in policies}
    if FLAGS.gemm_grads_baseline:
        out["gemm_grads_speedup"] = {
            key: _median(timings, "train", f"{key}/onednn_grads") / t["median_s"]
            for key, t in timings.get("train", {}).items()
            if not key.endswith("/onednn_grads") and f"{key}/onednn_grads" in timings["train"]}
    out["goals"] = goal_ratios(out, results)
    return out


def goal_ratios(out: dict, results: dict) -> dict:
    """The issue's goal ratios, from the same run's medians (None where not measured)."""
    def ratio(a, b):
        return a / b if a and b else None

    inf, train = out["inference_s_per_frame"], out["train_s_per_step"]
    gflop = results["model_gflop_per_frame"][f"os{FLAGS.output_stride}"]
    fp32 = inf.get("float32")
    key = f"ours_os{FLAGS.output_stride}/float32"
    fp32_cpu = results["timings"]["inference"].get(key, {}).get("cpu_median_s")
    goals = {
        "fp32_inference_gflops": ratio(gflop, fp32),
        "fp32_inference_fraction_of_fp32_matmul": ratio(ratio(gflop, fp32),
                                                        results["matmul_gflops"]["float32"]),
        "fp32_inference_fraction_of_fp32_matmul_cpu_time": ratio(
            ratio(gflop, fp32_cpu), results["matmul_cpu_gflops_per_cpu_s"]["float32"]),
        "bf16_inference_speedup": ratio(fp32, inf.get("mixed_bfloat16")),
        "bf16_train_speedup": ratio(train.get("float32"), train.get("mixed_bfloat16")),
    }
    for p, peer in out.get("peer", {}).items():
        goals[f"ours_over_peer_inference/{p}"] = ratio(peer["ours_inference_s_per_frame"],
                                                       peer["peer_inference_s_per_frame"])
        goals[f"ours_over_peer_train/{p}"] = ratio(peer["ours_train_s_per_step"],
                                                   peer["peer_train_s_per_step"])
    return goals


def report(results: dict) -> None:
    """Prints the flags, the rates and the goal ratios."""
    print(f"CPU: {results['cpu_model']}, {results['cpu_count']} cores, flags "
          f"{' '.join(results['cpu_flags'])}; load {results['load_avg_1min_start']:.1f} -> "
          f"{results['load_avg_1min_end']:.1f}; TF {results['tensorflow']}")
    mm = results["matmul_gflops"]
    print(f"matmul {FLAGS.matmul_size}^2: float32 {mm['float32']:.0f} GFLOP/s, "
          f"bfloat16 {mm['bfloat16']:.0f} GFLOP/s")
    for key, v in results["model_gflop_per_frame_detail"].items():
        print(f"model FLOPs per 481x641 frame {key}: profiler {v['profiler']:.3f} GFLOP "
              f"(convolutions {v['profiler_conv']:.3f}), analytic {v['analytic']:.3f} GFLOP "
              f"(convolutions {v['analytic_conv']:.3f})")
    for kind, entries in results["timings"].items():
        for key, t in entries.items():
            print(f"{kind:9s} {key:28s} median {t['median_s']:.3f} s "
                  f"[{t['min_s']:.3f}-{t['max_s']:.3f}], CPU {t['cpu_median_s']:.2f} s")
    for key, value in results.get("gemm_grads_speedup", {}).items():
        print(f"GEMM gradients vs oneDNN's, train step {key}: {value:.2f}x")
    for key, value in results["goals"].items():
        print(f"goal {key}: {'n/a' if value is None else f'{value:.3f}'}")


def main(argv: list[str]) -> None:
    del argv
    _configure_threads()
    results = collect(FLAGS.precisions)
    report(results)
    if FLAGS.output_json:
        from sercseg_tf import atomic_io

        atomic_io.atomic_write_text(FLAGS.output_json, json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
