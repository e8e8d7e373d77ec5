"""Sequence LPIPS, FID and VMAF (gfix_sdk.metrics.lpips / fid / inception / vmaf).

None of these tests needs downloaded weights: LPIPS runs on seeded random
weights written to a file; the Fréchet distance is checked against
closed-form answers; the FID network is checked for pytorch-fid's key layout
and, on portable random weights, against feature values pytorch-fid 0.3.0
(torchvision 0.28's Inception3 patched into the FID Inception) printed for
the same weights and input (our features matched it with a max abs
difference of 0.0). VMAF runs the static ffmpeg of imageio-ffmpeg; measured
on the bundled clip at 160x90, 8 frames: identical 98.90 (frame 0: 97.43),
Gaussian noise sigma 12: 89.66, 3x3 box blur: 69.12.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gfix_sdk.io import load_bundled_clip
from gfix_sdk.metrics import (
    MetricResult,
    MetricUnavailable,
    SequenceFID,
    SequenceLPIPS,
    SequenceVMAF,
    frechet_distance,
    sequence_fid,
    sequence_lpips,
    sequence_vmaf,
)
from gfix_sdk.metrics.fid import feature_stats, fid_from_stats
from gfix_sdk.metrics.inception import FEATURE_DIM, FID_WEIGHTS_URL, FIDInceptionV3, load_fid_inception
from gfix_sdk.metrics.vmaf import find_ffmpeg


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    frames, _ = load_bundled_clip(max_frames=6, size=(160, 90))
    return frames


def _noisy(frames: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(frames + rng.normal(0, sigma, frames.shape), 0, 255).astype(np.uint8)


@pytest.fixture(autouse=True)
def _no_weight_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own $GFIX_LPIPS / $GFIX_FID_WEIGHTS must not change what these tests see.
    monkeypatch.delenv("GFIX_LPIPS", raising=False)
    monkeypatch.delenv("GFIX_FID_WEIGHTS", raising=False)
    monkeypatch.setenv("GFIX_LPIPS_ALEX", "/nonexistent/lpips_alex.pt")  # nor the installed weights


# --------------------------------------------------------------------------- LPIPS


def test_lpips_without_weights_is_omitted_with_instructions(clip: np.ndarray) -> None:
    result = sequence_lpips(clip, clip)
    assert result.value is None and not result.available
    assert "GFIX_LPIPS" in result.reason and "gfix_sdk.perceptual.convert" in result.reason


def test_lpips_missing_file_is_omitted(clip: np.ndarray, tmp_path: Path) -> None:
    result = sequence_lpips(clip, clip, weights=tmp_path / "nope.pt")
    assert result.value is None and "nope.pt" in result.reason and "not found" in result.reason
    with pytest.raises(MetricUnavailable, match="not found"):
        SequenceLPIPS.load(tmp_path / "nope.pt")


def test_lpips_identical_is_zero_and_noise_is_positive(
    clip: np.ndarray, lpips_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GFIX_LPIPS", str(lpips_file))  # the environment variable route
    same = sequence_lpips(clip, clip)
    assert same.value == 0.0 and len(same.per_frame) == len(clip)
    scorer = SequenceLPIPS.load(lpips_file, net="alex", batch_size=4)  # two batches for 6 frames
    light, heavy = scorer(clip, _noisy(clip, 4)), scorer(clip, _noisy(clip, 30))
    assert 0 < light.value < heavy.value
    assert light.value == pytest.approx(sum(light.per_frame) / len(clip))
    # Frames as an iterable score the same as the stacked array.
    assert scorer(iter(clip), iter(_noisy(clip, 4))).value == pytest.approx(light.value)


def test_lpips_rejects_bad_input(clip: np.ndarray, lpips_file: Path) -> None:
    scorer = SequenceLPIPS.load(lpips_file)
    with pytest.raises(ValueError, match="differ in length"):
        scorer(clip, clip[:-1])
    with pytest.raises(ValueError, match="uint8"):
        scorer(clip.astype(np.float32), clip.astype(np.float32))
    with pytest.raises(ValueError, match="no frames"):
        scorer(clip[:0], clip[:0])
    with pytest.raises(ValueError, match="holds LPIPS-alex"):
        SequenceLPIPS.load(lpips_file, net="vgg")


def test_sequence_metrics_take_torch_frames_rounded_to_8_bits(clip: np.ndarray, lpips_file: Path) -> None:
    # A renderer's float output in [0, 1] scores exactly like the 8-bit frames it rounds to.
    scorer = SequenceLPIPS.load(lpips_file)
    darker = (clip * 0.9).round().astype(np.uint8)
    as_float = torch.from_numpy(clip).float() / 255
    darker_float = torch.from_numpy(darker).float() / 255
    expected = scorer(clip, darker).value
    assert scorer(as_float, darker_float).value == expected
    assert scorer(list(as_float), torch.from_numpy(darker)).value == expected  # iterable of tensors, uint8 tensor
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scorer(as_float, as_float * 2)
    with pytest.raises(ValueError, match="int16"):
        scorer(torch.from_numpy(clip).to(torch.int16), darker)


def test_metric_result_has_value_or_reason() -> None:
    with pytest.raises(ValueError):
        MetricResult(name="x", value=None)
    with pytest.raises(ValueError):
        MetricResult(name="x", value=1.0, reason="both")
    assert MetricResult.omitted("x", "why").reason == "why"


# --------------------------------------------------------------------------- Fréchet distance


def test_frechet_distance_one_dimensional_closed_form() -> None:
    # N(m1, s1^2) vs N(m2, s2^2): (m1 - m2)^2 + (s1 - s2)^2.
    value = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.5]), np.array([[0.25]]))
    assert value == pytest.approx((1.0 - 3.5) ** 2 + (2.0 - 0.5) ** 2, rel=1e-12)


def test_frechet_distance_diagonal_closed_form() -> None:
    a, b = np.array([1.0, 9.0, 0.04]), np.array([4.0, 1.0, 0.01])
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_non_commuting_2x2_closed_form() -> None:
    # For 2x2 M = C1 C2 (positive eigenvalues): Tr(M^1/2) = sqrt(Tr M + 2 sqrt(det M)).
    c1 = np.array([[2.0, 0.8], [0.8, 1.0]])
    c2 = np.array([[1.0, -0.3], [-0.3, 0.5]])
    assert not np.allclose(c1 @ c2, c2 @ c1)
    product = c1 @ c2
    tr_root = math.sqrt(np.trace(product) + 2 * math.sqrt(np.linalg.det(product)))
    m1, m2 = np.array([0.5, -1.0]), np.array([0.0, 1.0])
    expected = np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * tr_root
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(m2, c2, m1, c1) == pytest.approx(expected, rel=1e-12)  # symmetric


def test_frechet_distance_identical_rank_deficient_is_zero() -> None:
    # Fewer samples than dimensions (as with 96 frames and 2048 features): singular covariances.
    feats = np.random.default_rng(0).normal(size=(10, 64))
    stats = feature_stats(feats)
    assert np.linalg.matrix_rank(stats.cov) < 64
    assert frechet_distance(stats.mean, stats.cov, stats.mean, stats.cov) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("samples", [12, 80])  # fewer and more samples than the 32 dimensions
def test_low_rank_route_equals_full_square_root(samples: int) -> None:
    rng = np.random.default_rng(samples)
    first = feature_stats(rng.normal(size=(samples, 32)))
    second = feature_stats(rng.normal(0.3, 2.0, size=(samples + 3, 32)) @ rng.normal(size=(32, 32)))
    assert (first.centered is not None) == (samples <= 32)
    full = frechet_distance(first.mean, first.cov, second.mean, second.cov)
    assert fid_from_stats(first, second) == pytest.approx(full, rel=1e-7)
    assert fid_from_stats(second, first) == pytest.approx(full, rel=1e-7)


def test_feature_stats_and_bad_inputs() -> None:
    stats = feature_stats(np.array([[0.0, 1.0], [2.0, 1.0]]))
    np.testing.assert_allclose(stats.mean, [1.0, 1.0])
    np.testing.assert_allclose(stats.cov, [[2.0, 0.0], [0.0, 0.0]])  # unbiased (N - 1)
    with pytest.raises(ValueError, match="at least 2"):
        feature_stats(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="means must be"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(np.array([np.nan]), np.eye(1), np.zeros(1), np.eye(1))


# --------------------------------------------------------------------------- FID network

# pytorch-fid 0.3.0 features at indices 0, 128, ..., 1920 for _portable_weights() and _golden_input().
GOLDEN_FEATURES = [
    [0.0, 0.0, 0.00020519, 0.08326674, 0.0, 0.02924619, 0.00332955, 0.04962561,
     0.02778277, 0.0201464, 0.10731703, 0.08748328, 0.00015472, 0.04167413, 0.0, 0.07090648],
    [0.0, 0.0, 0.00020202, 0.08327229, 0.0, 0.02925003, 0.00332274, 0.04960764,
     0.02777878, 0.02018054, 0.10732506, 0.08749183, 0.00015521, 0.0416816, 0.0, 0.07090062],
]


def _portable_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Random weights from numpy's PCG64 (identical on every machine), keys in sorted order."""
    rng = np.random.default_rng(2024)
    state = {}
    for key, value in sorted(model.state_dict().items()):
        if not value.is_floating_point():
            state[key] = value.clone()
            continue
        if key.endswith("running_var"):
            array = rng.uniform(0.5, 1.5, value.shape)
        elif key.endswith("bn.weight"):
            array = rng.uniform(0.8, 1.2, value.shape)
        elif value.ndim > 1:
            array = rng.normal(0, 1.0 / np.sqrt(np.prod(value.shape[1:])), value.shape)
        else:
            array = rng.normal(0, 0.05, value.shape)
        state[key] = torch.from_numpy(array.astype(np.float32))
    return state


def _golden_input() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (2, 90, 160, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def fid_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = FIDInceptionV3()
    path = tmp_path_factory.mktemp("fid") / "pt_inception-random.pth"
    torch.save(_portable_weights(model), path)
    return path


def test_fid_network_has_pytorch_fid_layout() -> None:
    model = FIDInceptionV3()
    state = model.state_dict()
    # torchvision Inception3 without the auxiliary head and with 1008 classes.
    assert sum(p.numel() for p in model.parameters()) == 23_850_960
    assert len(state) == 566  # including the batch-norm counters
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_6b.branch7x7dbl_3.conv.weight"].shape == (128, 128, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.bn.running_var"].shape == (384,)
    assert state["fc.weight"].shape == (1008, FEATURE_DIM)
    with torch.no_grad():
        features = model(torch.rand(2, 3, 90, 160))
    assert features.shape == (2, FEATURE_DIM) and torch.isfinite(features).all()
    with pytest.raises(ValueError, match="N, 3, H, W"):
        model(torch.rand(3, 90, 160))


def test_fid_network_matches_pytorch_fid_values(fid_file: Path) -> None:
    model = load_fid_inception(fid_file)
    images = torch.from_numpy(_golden_input()).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        features = model(images).double().numpy()
    # Sensitive to each FID-specific patch: count_include_pad or the last max pool
    # changed, or [-1, 1] inputs, move these values by more than 2e-3.
    np.testing.assert_allclose(features[:, ::128], GOLDEN_FEATURES, atol=2e-5)


def test_fid_loader_accepts_subsets_and_rejects_other_files(fid_file: Path, tmp_path: Path) -> None:
    state = torch.load(fid_file, weights_only=True)
    lean = {k: v for k, v in state.items() if not k.startswith("fc.") and "num_batches" not in k}
    torch.save(lean, tmp_path / "lean.pth")
    load_fid_inception(tmp_path / "lean.pth")  # no classifier, no counters: still fine
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="key layout"):
        load_fid_inception(tmp_path / "other.pth")
    bad = dict(state)
    bad["Conv2d_1a_3x3.conv.weight"] = torch.zeros(1, 3, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="has shape"):
        load_fid_inception(tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable"):
        load_fid_inception(tmp_path / "junk.pth")


def test_fid_without_weights_is_omitted_with_instructions(clip: np.ndarray) -> None:
    result = sequence_fid(clip, clip)
    assert result.value is None
    assert FID_WEIGHTS_URL in result.reason and "GFIX_FID_WEIGHTS" in result.reason


def test_sequence_fid_on_random_weights(clip: np.ndarray, fid_file: Path) -> None:
    scorer = SequenceFID.load(fid_file, batch_size=4)
    assert scorer.sha256 and len(scorer.sha256) == 64
    same = scorer(clip, clip)
    assert same.value == pytest.approx(0.0, abs=1e-6)
    noisy = _noisy(clip, 40)
    direct = scorer(clip, noisy)
    assert direct.value > same.value
    # Reference statistics computed once give the same value.
    assert scorer(scorer.stats(clip), noisy).value == pytest.approx(direct.value, rel=1e-9)
    assert scorer(clip[:1], clip[:1]).value is None  # no covariance from one frame
    with pytest.raises(ValueError, match="frames"):
        scorer(scorer.stats(clip), noisy[:-1])


# --------------------------------------------------------------------------- VMAF


@pytest.fixture(scope="module")
def vmaf() -> SequenceVMAF:
    # No skip: imageio-ffmpeg (whose static ffmpeg has libvmaf) is a declared
    # test dependency, so a missing libvmaf is a broken install, not a reason to pass.
    return SequenceVMAF.load()


def test_vmaf_identical_is_high_and_degraded_lower(clip: np.ndarray, vmaf: SequenceVMAF) -> None:
    same = vmaf(clip, clip)
    assert same.value >= 95.0  # libvmaf gives ~99 here, not 100 (see the module doc)
    assert len(same.per_frame) == len(clip) and same.value == pytest.approx(np.mean(same.per_frame), abs=1e-3)
    light, heavy = vmaf(clip, _noisy(clip, 8)), vmaf(clip, _noisy(clip, 30))
    assert same.value - 3 > light.value > heavy.value
    with vmaf.reference(clip) as ref:  # one reference file for several scores
        assert vmaf(ref, _noisy(clip, 8)).value == pytest.approx(light.value, abs=1e-6)
        with pytest.raises(ValueError, match="frames"):
            vmaf(ref, clip[:-1])


def test_vmaf_without_libvmaf_is_omitted(clip: np.ndarray, tmp_path: Path) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho ' .. null V->V Pass the source.'\n")
    fake.chmod(0o755)
    result = sequence_vmaf(clip, clip, ffmpeg=fake)
    assert result.value is None and "libvmaf" in result.reason
    with pytest.raises(MetricUnavailable, match="cannot run|libvmaf"):
        find_ffmpeg(tmp_path / "missing")


def test_vmaf_rejects_mismatched_sequences(clip: np.ndarray, vmaf: SequenceVMAF) -> None:
    with pytest.raises(ValueError, match="frames"):
        vmaf(clip, clip[:-1])
    with pytest.raises(ValueError, match="reference is"):
        vmaf(clip, clip[:, :80])
    with pytest.raises(ValueError, match="model"):
        SequenceVMAF(vmaf.ffmpeg, model="vmaf:v0.6.1")
