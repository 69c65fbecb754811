"""The published study's numbers (Shimotsu et al., Tables 1-3), transcribed.

Source: S. Shimotsu, K. Mori, K. Kobayashi, S. Mizuta, T. Takeuchi, T. Ishikawa, Y. Hata,
N. Yagi, "An automated segmentation system for oocytes with smooth endoplasmic reticulum
clusters based on DeepLab":

- Table 1 ("Number of images for each case"), §2.1: frames per case, one per second.
- Table 2 ("Average IoU"), §3.1: mean IoU per case and class on the held-out case of each
  leave-one-case-out fold; the text states the overall mean IoU is 0.93.
- Table 3 ("Average and standard deviation of relative errors"), §3.2: per case, the mean
  (AVG) and standard deviation (SD) over frames of the relative error of eq. (5),
  ``|A - M| / M * 100`` [%], for the features f1..f4 of eqs. (1)-(4).

The paper's numbers come from 11 clinical ICSI videos; this project reproduces the
pipeline on synthetic data, so the values are a reference, not a target to match.
The AVG rows of Tables 2 and 3 are the paper's own (they equal the means of the per-case
rows to the printed precision; see ``tests/test_report.py``).
"""

from __future__ import annotations

from sercseg_tf.features import FEATURES

PAPER_CITATION = (
    "Shimotsu et al., \"An automated segmentation system for oocytes with smooth "
    "endoplasmic reticulum clusters based on DeepLab\""
)
PAPER_DATA_NOTE = "paper = clinical data (11 ICSI videos)"
OURS_DATA_NOTE = "ours = synthetic data (this run)"

# Table 1 (§2.1): number of images per case, cases 1..11.
FRAMES_PER_CASE: tuple[int, ...] = (49, 50, 65, 45, 43, 49, 89, 38, 48, 50, 53)
TABLE1_FRAMES: dict[int, int] = dict(enumerate(FRAMES_PER_CASE, start=1))

# Table 2 (§3.1): average IoU per case; columns oocyte, sERC, needle, average.
TABLE2_COLUMNS: tuple[str, ...] = ("oocyte", "serc", "needle", "average")
_TABLE2_ROWS: dict[int, tuple[float, float, float, float]] = {
    1: (0.99, 0.94, 0.95, 0.96),
    2: (0.99, 0.97, 0.80, 0.92),
    3: (0.96, 0.77, 0.93, 0.89),
    4: (0.99, 0.93, 0.94, 0.95),
    5: (0.99, 0.92, 0.86, 0.92),
    6: (0.99, 0.94, 0.90, 0.94),
    7: (0.99, 0.86, 0.92, 0.92),
    8: (0.95, 0.88, 0.91, 0.91),
    9: (0.99, 0.95, 0.94, 0.94),
    10: (0.99, 0.78, 0.96, 0.91),
    11: (0.96, 0.95, 0.92, 0.94),
}
_TABLE2_AVG_ROW: tuple[float, float, float, float] = (0.98, 0.90, 0.91, 0.93)
# {case: {"oocyte": .., "serc": .., "needle": .., "average": ..}}
TABLE2_IOU: dict[int, dict[str, float]] = {
    case: dict(zip(TABLE2_COLUMNS, row, strict=True)) for case, row in _TABLE2_ROWS.items()
}
TABLE2_AVERAGE: dict[str, float] = dict(zip(TABLE2_COLUMNS, _TABLE2_AVG_ROW, strict=True))
# §3.1 / §5: "The average IoU for the entire validation data was 0.93."
PAPER_MEAN_IOU = 0.93

# Table 3 (§3.2): relative error [%] per case, (AVG, SD) for f1, f2, f3, f4.
TABLE3_COLUMNS: tuple[str, ...] = tuple(f"{f}_{s}" for f in FEATURES for s in ("avg", "sd"))
_TABLE3_ROWS: dict[int, tuple[float, ...]] = {
    # case: (f1 AVG, f1 SD, f2 AVG, f2 SD, f3 AVG, f3 SD, f4 AVG, f4 SD)
    1: (4.56, 4.38, 5.95, 5.09, 16.53, 46.79, 18.46, 9.14),
    2: (4.29, 5.48, 7.42, 5.20, 3.17, 4.58, 10.82, 3.76),
    3: (3.00, 4.44, 16.81, 22.31, 4.30, 7.46, 59.86, 82.96),
    4: (7.18, 9.00, 29.22, 39.43, 4.87, 13.08, 15.60, 8.60),
    5: (2.62, 4.03, 4.60, 4.06, 2.57, 2.04, 12.11, 8.57),
    6: (3.63, 7.04, 4.13, 2.88, 5.29, 9.59, 19.17, 16.43),
    7: (10.36, 5.15, 10.36, 11.96, 4.03, 4.24, 22.61, 11.09),
    8: (8.21, 8.30, 10.36, 6.66, 12.17, 19.12, 71.59, 49.97),
    9: (7.63, 9.51, 15.99, 9.80, 5.33, 9.02, 27.18, 15.78),
    10: (5.14, 6.10, 10.28, 14.58, 5.33, 7.72, 26.73, 23.55),
    11: (4.20, 4.08, 10.24, 8.22, 1.63, 1.92, 19.86, 13.66),
}
_TABLE3_AVG_ROW: tuple[float, ...] = (5.53, 6.14, 11.40, 11.84, 5.93, 11.41, 27.64, 22.14)
# {case: {"f1_avg": .., "f1_sd": .., ..., "f4_sd": ..}}
TABLE3_RELATIVE_ERROR: dict[int, dict[str, float]] = {
    case: dict(zip(TABLE3_COLUMNS, row, strict=True)) for case, row in _TABLE3_ROWS.items()
}
TABLE3_AVERAGE: dict[str, float] = dict(zip(TABLE3_COLUMNS, _TABLE3_AVG_ROW, strict=True))

# §4: the value ranges the paper reports for its clinical cases.
PAPER_F1_RANGE: tuple[float, float] = (0.6, 0.8)
PAPER_F2_RANGE: tuple[float, float] = (0.025, 0.2)

