"""Quality metrics (PSNR, MS-SSIM, sequence averages) and BD-rate.

Real content is the bundled Big Buck Bunny excerpt. Numbers measured on it
that the bounds below rely on:

* MS-SSIM of frame 0 (320x180, standard 11-tap window) against copies
  blurred by 1 / 2 / 4 passes of a [1, 2, 1] / 4 binomial filter:
  0.9867 / 0.9720 / 0.9475. Bound: in (0.8, 1), strictly decreasing.
* At 160x90 (5-tap window) the same blurs give 0.9850 / 0.9692 / 0.9414.
* BD-rate of a curve against itself with rates scaled by 0.8 / 1.25 is
  -20 % / +25 % to about 1e-12 for both pchip and cubic: scaling every
  rate shifts log-rate by a constant, and both interpolations are linear
  in the interpolated values, so the answer is exact up to rounding.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pytest
import pytorch_msssim
import torch

from gfix_sdk.io import load_bundled_clip
from gfix_sdk.metrics import (
    bd_rate,
    ms_ssim,
    ms_ssim_win_size,
    mse,
    psnr,
    psnr_from_mse,
    sequence_metrics,
)

# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """The first 6 frames of the bundled clip, (6, 180, 320, 3) uint8."""
    frames, _ = load_bundled_clip(max_frames=6)
    return frames


@pytest.fixture(scope="module")
def small_clip() -> np.ndarray:
    """The first 4 frames downscaled to 160x90: the small-frame MS-SSIM path."""
    frames, _ = load_bundled_clip(max_frames=4, size=(160, 90))
    return frames


def blur(image: np.ndarray, passes: int) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur applied ``passes`` times, edges replicated."""
    out = image.astype(np.float64)
    for _ in range(passes):
        for axis in (0, 1):
            pad = [(1, 1) if a == axis else (0, 0) for a in range(3)]
            p = np.pad(out, pad, mode="edge")
            n = out.shape[axis]
            out = (
                p.take(range(0, n), axis=axis)
                + 2 * p.take(range(1, n + 1), axis=axis)
                + p.take(range(2, n + 2), axis=axis)
            ) / 4.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def as_tensor(image: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.from_numpy(image).to(dtype) / 255.0


def reference_ms_ssim(x: np.ndarray, y: np.ndarray, win_size: int = 11) -> float:
    """pytorch_msssim called directly, the way its documentation shows."""
    tx = torch.from_numpy(x).permute(2, 0, 1)[None].float()
    ty = torch.from_numpy(y).permute(2, 0, 1)[None].float()
    return float(pytorch_msssim.ms_ssim(tx, ty, data_range=255, win_size=win_size))


# --------------------------------------------------------------------------- PSNR


def test_identical_frames_give_inf_psnr_and_unit_ms_ssim(clip: np.ndarray) -> None:
    frame = clip[0]
    assert psnr(frame, frame.copy()) == math.inf
    assert mse(frame, frame.copy()) == 0.0
    assert ms_ssim(frame, frame.copy()) == pytest.approx(1.0, abs=1e-6)
    tensor = as_tensor(frame, torch.float32)
    assert psnr(tensor, tensor.clone()) == math.inf
    assert ms_ssim(tensor, tensor.clone()) == pytest.approx(1.0, abs=1e-6)


def test_psnr_of_known_noise_level() -> None:
    rng = np.random.default_rng(1234)
    noise = rng.integers(-6, 7, size=(64, 96, 3))
    flat = np.full((64, 96, 3), 128, dtype=np.uint8)
    noisy = (flat + noise).astype(np.uint8)  # 122..134: no clipping
    known_mse = float(np.mean(noise.astype(np.float64) ** 2))
    expected = 10.0 * math.log10(255.0**2 / known_mse)

    assert mse(flat, noisy) == pytest.approx(known_mse, rel=1e-12)
    assert psnr(flat, noisy) == pytest.approx(expected, abs=1e-6)
    # The same pictures as [0, 1] tensors: range 1 instead of 255, same dB.
    assert psnr(as_tensor(flat), as_tensor(noisy)) == pytest.approx(expected, abs=1e-6)
    # An explicit data_range overrides the inferred one.
    assert psnr(flat, noisy, data_range=1023) == pytest.approx(
        10.0 * math.log10(1023.0**2 / known_mse), abs=1e-6
    )


def test_psnr_matches_hand_formula_on_real_frames(clip: np.ndarray) -> None:
    for a, b in ((clip[0], clip[3]), (clip[1], blur(clip[1], 1))):
        diff = a.astype(np.float64) - b.astype(np.float64)
        by_hand = 10.0 * np.log10(255.0**2 / np.mean(diff**2))
        assert psnr(a, b) == pytest.approx(by_hand, abs=1e-9)
        assert psnr(as_tensor(a), as_tensor(b)) == pytest.approx(by_hand, abs=1e-9)


def test_psnr_from_mse() -> None:
    assert psnr_from_mse(0.0, 255) == math.inf
    assert psnr_from_mse(255.0**2, 255) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        psnr_from_mse(-1.0, 255)
    with pytest.raises(ValueError):
        psnr_from_mse(1.0, 0)


# --------------------------------------------------------------------------- MS-SSIM


def test_ms_ssim_falls_with_more_blur(clip: np.ndarray) -> None:
    frame = clip[0]
    scores = [ms_ssim(frame, blur(frame, passes)) for passes in (1, 2, 4)]
    assert all(0.8 < s < 1.0 for s in scores), scores
    assert scores[0] > scores[1] > scores[2], scores


def test_ms_ssim_equals_pytorch_msssim_on_a_256_crop(clip: np.ndarray) -> None:
    # The clip is 180 rows high: mirror its rows to make a 256x256 picture
    # of real content (> 160, so the standard 11-tap window applies).
    crop = np.pad(clip[2][:, 32:288], ((0, 76), (0, 0), (0, 0)), mode="reflect")
    other = np.pad(clip[4][:, 32:288], ((0, 76), (0, 0), (0, 0)), mode="reflect")
    assert crop.shape == (256, 256, 3)
    assert ms_ssim_win_size(256, 256) == 11

    expected = reference_ms_ssim(crop, other)
    assert 0.5 < expected < 1.0
    assert ms_ssim(crop, other) == pytest.approx(expected, abs=1e-7)
    # Float tensors: data_range 1 on [0, 1] values is the same quantity.
    assert ms_ssim(as_tensor(crop), as_tensor(other)) == pytest.approx(expected, abs=1e-5)


def test_ms_ssim_small_frames_use_a_narrower_window(small_clip: np.ndarray) -> None:
    frame = small_clip[0]
    assert frame.shape == (90, 160, 3)
    assert ms_ssim_win_size(90, 160) == 5
    scores = [ms_ssim(frame, blur(frame, passes)) for passes in (1, 2, 4)]
    assert all(0.8 < s < 1.0 for s in scores), scores
    assert scores[0] > scores[1] > scores[2], scores
    assert scores[0] == pytest.approx(reference_ms_ssim(frame, blur(frame, 1), 5), abs=1e-7)
    assert ms_ssim(frame, frame) == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_window_table() -> None:
    # Largest odd window <= 11 with smaller side > (window - 1) * 16.
    expected = {1080: 11, 161: 11, 160: 9, 129: 9, 128: 7, 97: 7, 96: 5, 65: 5}
    for side, win in expected.items():
        assert ms_ssim_win_size(side, 4 * side) == win, side
        assert ms_ssim_win_size(4 * side, side) == win, side
    for side in (64, 32, 1):
        with pytest.raises(ValueError, match="too small"):
            ms_ssim_win_size(side, 1000)


def test_ms_ssim_rejects_frames_too_small() -> None:
    tiny = np.zeros((64, 200, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="too small"):
        ms_ssim(tiny, tiny)


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8), "one shape"),
        (np.zeros((8, 8, 3), np.uint8), torch.zeros(8, 8, 3), "one kind"),
        (torch.zeros(8, 8, 3, dtype=torch.uint8), torch.zeros(8, 8, 3), "floating"),
        (torch.full((8, 8, 3), 2.0), torch.zeros(8, 8, 3), r"\[0, 1\]"),
        (torch.full((8, 8, 3), float("nan")), torch.zeros(8, 8, 3), r"\[0, 1\]"),
        ([[0]], [[0]], "numpy uint8 array or a float torch tensor"),
    ],
)
def test_bad_inputs_raise(x: object, y: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        psnr(x, y)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- sequences


def test_sequence_metrics_streams_and_averages(clip: np.ndarray) -> None:
    decoded = [blur(frame, 1 + i % 2) for i, frame in enumerate(clip)]
    result = sequence_metrics(iter(clip), (frame for frame in decoded))

    assert result["num_frames"] == len(clip)
    expected_psnr = [psnr(a, b) for a, b in zip(clip, decoded, strict=True)]
    expected_mse = [mse(a, b) for a, b in zip(clip, decoded, strict=True)]
    assert result["psnr"] == pytest.approx(expected_psnr, abs=1e-12)
    assert result["mse"] == pytest.approx(expected_mse, rel=1e-12)
    assert result["ms_ssim"] == pytest.approx(
        [ms_ssim(a, b) for a, b in zip(clip, decoded, strict=True)]
    )
    assert result["mean_psnr"] == pytest.approx(np.mean(expected_psnr), abs=1e-9)
    assert result["mean_mse"] == pytest.approx(np.mean(expected_mse), rel=1e-12)
    assert result["psnr_of_mean_mse"] == pytest.approx(
        10 * math.log10(255**2 / np.mean(expected_mse)), abs=1e-9
    )
    # Jensen: the PSNR of the mean MSE never exceeds the mean PSNR.
    assert result["psnr_of_mean_mse"] <= result["mean_psnr"]
    assert result["mean_ms_ssim"] == pytest.approx(np.mean(result["ms_ssim"]), abs=1e-12)
    assert result["ms_ssim_win_size"] == 11


def test_sequence_metrics_on_tensors_matches_uint8(small_clip: np.ndarray) -> None:
    decoded = [blur(frame, 1) for frame in small_clip]
    from_arrays = sequence_metrics(small_clip, decoded)
    from_tensors = sequence_metrics(
        [as_tensor(f) for f in small_clip], [as_tensor(f) for f in decoded]
    )
    assert from_tensors["mean_psnr"] == pytest.approx(from_arrays["mean_psnr"], abs=1e-9)
    assert from_tensors["mean_ms_ssim"] == pytest.approx(from_arrays["mean_ms_ssim"], abs=1e-5)
    assert from_arrays["ms_ssim_win_size"] == 5


def test_sequence_metrics_identical_frames(small_clip: np.ndarray) -> None:
    result = sequence_metrics(small_clip, small_clip.copy())
    assert result["mean_psnr"] == math.inf
    assert result["psnr_of_mean_mse"] == math.inf
    assert result["mean_ms_ssim"] == pytest.approx(1.0, abs=1e-6)


def test_sequence_metrics_rejects_mismatches(small_clip: np.ndarray) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        sequence_metrics(small_clip, small_clip[:-1])
    with pytest.raises(ValueError, match="differ in length"):
        sequence_metrics(small_clip[:2], iter(small_clip))
    with pytest.raises(ValueError, match=r"frame 1: .*one shape"):
        sequence_metrics(small_clip[:2], [small_clip[0], small_clip[1][:, :-2]])
    mixed_sizes = [small_clip[0], np.zeros((100, 160, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 1 is 160x100 but frame 0 is 160x90"):
        sequence_metrics(mixed_sizes, [f.copy() for f in mixed_sizes])
    with pytest.raises(ValueError, match="empty"):
        sequence_metrics([], [])


# --------------------------------------------------------------------------- BD-rate

Method = Literal["pchip", "cubic"]
ANCHOR_RATES = [120.0, 260.0, 540.0, 1100.0, 2300.0]
ANCHOR_PSNR = [29.1, 31.9, 34.4, 36.8, 38.9]  # concave, as real curves are


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize(("scale", "expected"), [(0.8, -20.0), (1.25, 25.0)])
def test_bd_rate_of_a_rate_scaled_curve(method: Method, scale: float, expected: float) -> None:
    test_rates = [r * scale for r in ANCHOR_RATES]
    result = bd_rate(ANCHOR_RATES, ANCHOR_PSNR, test_rates, ANCHOR_PSNR, method=method)
    # Scaling every rate shifts log-rate by a constant: exact up to rounding (measured 5e-12).
    assert result == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_lower_is_better_metric(method: Method) -> None:
    # A distortion that falls as rate rises (an LPIPS-like stand-in).
    distortion = [-q for q in ANCHOR_PSNR]
    test_rates = [r * 0.8 for r in ANCHOR_RATES]
    result = bd_rate(
        ANCHOR_RATES,
        distortion,
        test_rates,
        distortion,
        higher_is_better=False,
        method=method,
    )
    assert result == pytest.approx(-20.0, abs=1e-9)
    # Forgetting the flag is caught, not answered with garbage.
    with pytest.raises(ValueError, match="higher_is_better=False"):
        bd_rate(ANCHOR_RATES, distortion, test_rates, distortion)


def test_bd_rate_accepts_points_in_any_order() -> None:
    order = [3, 0, 4, 1, 2]
    result = bd_rate(
        [ANCHOR_RATES[i] for i in order],
        [ANCHOR_PSNR[i] for i in order],
        [ANCHOR_RATES[i] * 0.8 for i in reversed(order)],
        [ANCHOR_PSNR[i] for i in reversed(order)],
    )
    assert result == pytest.approx(-20.0, abs=1e-6)


def test_bd_rate_with_different_point_counts_matches_the_package() -> None:
    import bjontegaard

    test_rates = [r * 0.8 for r in ANCHOR_RATES[:4]]
    result = bd_rate(ANCHOR_RATES, ANCHOR_PSNR, test_rates, ANCHOR_PSNR[:4])
    direct = bjontegaard.bd_rate(
        ANCHOR_RATES,
        ANCHOR_PSNR,
        test_rates,
        ANCHOR_PSNR[:4],
        method="pchip",
        require_matching_points=False,
    )
    assert result == pytest.approx(direct, abs=1e-9)
    # Four points interpolate a little differently from five, hence not exactly -20.
    assert result == pytest.approx(-19.881869356, abs=1e-8)


def test_bd_rate_rejects_bad_curves() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(ANCHOR_RATES[:3], ANCHOR_PSNR[:3], ANCHOR_RATES, ANCHOR_PSNR)
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(ANCHOR_RATES, ANCHOR_PSNR, ANCHOR_RATES[:3], ANCHOR_PSNR[:3])
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate(ANCHOR_RATES, ANCHOR_PSNR, ANCHOR_RATES, [q + 20.0 for q in ANCHOR_PSNR])
    with pytest.raises(ValueError, match="> 0"):
        bd_rate([0.0, *ANCHOR_RATES[1:]], ANCHOR_PSNR, ANCHOR_RATES, ANCHOR_PSNR)
    with pytest.raises(ValueError, match="repeated quality"):
        bd_rate(ANCHOR_RATES, [30.0, 30.0, 31.0, 32.0, 33.0], ANCHOR_RATES, ANCHOR_PSNR)
    with pytest.raises(ValueError, match="5 rates but 4"):
        bd_rate(ANCHOR_RATES, ANCHOR_PSNR[:4], ANCHOR_RATES, ANCHOR_PSNR)
    with pytest.raises(ValueError, match="finite"):
        bd_rate(ANCHOR_RATES, [math.nan, *ANCHOR_PSNR[1:]], ANCHOR_RATES, ANCHOR_PSNR)
    with pytest.raises(ValueError, match="method"):
        bd_rate(ANCHOR_RATES, ANCHOR_PSNR, ANCHOR_RATES, ANCHOR_PSNR, method="akima")  # type: ignore[arg-type]
