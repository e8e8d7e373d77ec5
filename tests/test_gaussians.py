"""Gaussian frames: fitting, quantisation, frame coding, sequence encoding."""

import numpy as np
import pytest
import torch

from gfix_sdk.errors import GFixFormatError
from gfix_sdk.gaussians import FitConfig, GaussianFrame, fit_frame, init_from_image, psnr
from gfix_sdk.gaussians.code import decode_frame, encode_intra, encode_predicted
from gfix_sdk.gaussians.quantize import (
    QuantizedFrame,
    QuantSpec,
    canonical_chol,
    dequantize,
    fake_quantize,
    quantize,
    rgb_to_ycc,
    ycc_to_rgb,
)
from gfix_sdk.gaussians.reconstruct import reconstruct, to_uint8
from gfix_sdk.gaussians.sequence import SequenceConfig, SequenceEncoder
from gfix_sdk.io import load_bundled_clip
from gfix_sdk.raster.synthetic import random_gaussians


@pytest.fixture(scope="module")
def clip():
    frames, _ = load_bundled_clip(max_frames=4, size=(160, 90))
    return frames


@pytest.fixture(scope="module")
def fitted(clip):
    target = torch.from_numpy(clip[0]).float() / 255
    return target, fit_frame(target, init_from_image(target, 600), FitConfig(iterations=150), progress=False)


def random_frame(n=300, h=40, w=64, seed=0):
    means, chol, colors = random_gaussians(n, h, w, seed=seed)
    chol = chol * torch.where(torch.rand(n, 3, generator=torch.Generator().manual_seed(seed)) < 0.3, -1.0, 1.0)
    return GaussianFrame(means, chol, colors * 3 - 0.5, h, w)


def test_init_and_fit_improve_psnr(fitted):
    target, result = fitted
    start = psnr(init_from_image(target, 600).render(), target)
    assert result.psnr > start + 5
    assert result.psnr > 24  # real content, 600 Gaussians at 160x90
    assert result.history == sorted(result.history) or result.history[-1] > result.history[0]


def test_canonical_chol_keeps_covariance():
    chol = random_frame().chol
    def cov(c):
        a, b, d = c.unbind(1)
        return torch.stack([a * a, a * b, b * b + d * d], 1)
    canon = canonical_chol(chol)
    assert (canon[:, 0] >= 0).all() and (canon[:, 2] >= 0).all()
    torch.testing.assert_close(cov(canon), cov(chol))


def test_ycc_round_trip():
    rgb = torch.rand(100, 3) * 2 - 0.5
    torch.testing.assert_close(ycc_to_rgb(rgb_to_ycc(rgb)), rgb, atol=1e-6, rtol=0)


def test_quantize_error_within_half_step():
    frame, spec = random_frame(), QuantSpec()
    back = dequantize(quantize(frame, spec), spec, frame.height, frame.width)
    assert (back.means - frame.means).abs().max() <= spec.pos_step / 2 + 1e-6
    assert (back.chol - canonical_chol(frame.chol)).abs().max() <= spec.chol_step / 2 + 1e-6
    ycc_err = (rgb_to_ycc(back.colors) - rgb_to_ycc(frame.colors)).abs().max(0).values
    assert ycc_err[0] <= spec.luma_step / 2 + 1e-5 and ycc_err[1:].max() <= spec.chroma_step / 2 + 1e-5


def test_fake_quantize_matches_grid_and_passes_gradients():
    frame, spec = random_frame(), QuantSpec()
    params = [t.clone().requires_grad_(True) for t in (frame.means, frame.chol, frame.colors)]
    fq = fake_quantize(*params, spec)
    grid = dequantize(quantize(frame, spec), spec, frame.height, frame.width)
    for a, b in zip(fq, (grid.means, grid.chol, grid.colors)):
        torch.testing.assert_close(a.detach(), b, atol=1e-6, rtol=0)
    sum(t.sum() for t in fq).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_quant_spec_validation():
    with pytest.raises(ValueError, match="pos_step"):
        QuantSpec(pos_step=0)


def test_intra_round_trip_is_exact_and_sorted():
    q = quantize(random_frame(), QuantSpec())
    payload, ordered = encode_intra(q)
    decoded = decode_frame(payload, None)
    assert decoded.equal(ordered)
    key = ordered.means[:, 1] * 10**6 + ordered.means[:, 0]
    assert (torch.diff(key) >= 0).all()
    # Same Gaussians, reordered: the render is the same up to float summation order.
    spec = QuantSpec()
    torch.testing.assert_close(reconstruct(decoded, spec, 40, 64), reconstruct(q, spec, 40, 64), atol=1e-5, rtol=0)


def test_predicted_round_trip_is_exact():
    spec = QuantSpec()
    _, ref = encode_intra(quantize(random_frame(seed=1), spec))
    keep = torch.rand(ref.num_gaussians, generator=torch.Generator().manual_seed(2)) < 0.8
    kept = ref.select(keep)
    kept = QuantizedFrame(kept.means + (torch.arange(kept.num_gaussians)[:, None] % 3 - 1), kept.chol, kept.colors)
    new = quantize(random_frame(n=40, seed=3), spec)
    payload, ordered = encode_predicted(ref, keep, kept, new)
    assert decode_frame(payload, ref).equal(ordered)
    assert ordered.num_gaussians == int(keep.sum()) + 40


def test_format_1_frames_coded_with_constriction_still_decode(monkeypatch):
    """Files written before the native rANS coder (stream info version 1,
    every channel coded by constriction's ANS) decode to the same frames."""
    from gfix_sdk.coding import Coder
    from gfix_sdk.gaussians import code

    spec = QuantSpec()
    intra = quantize(random_frame(n=5000, seed=4), spec)  # long enough for several rANS lanes
    new = quantize(random_frame(n=40, seed=5), spec)
    frames = {}
    for coder in (Coder.ANS, Coder.RANS):
        monkeypatch.setattr(code, "_CODER", coder)
        i_payload, ref = encode_intra(intra)
        keep = torch.arange(ref.num_gaussians) % 5 != 0
        p_payload, ordered = encode_predicted(ref, keep, ref.select(keep), new)
        frames[coder] = (i_payload, p_payload, ref, ordered)
    monkeypatch.undo()
    (i_old, p_old, ref, ordered), (i_new, p_new, *_) = frames[Coder.ANS], frames[Coder.RANS]
    assert i_old != i_new and abs(len(i_new) - len(i_old)) <= 0.005 * len(i_old) + 64
    for i_payload, p_payload in ((i_old, p_old), (i_new, p_new)):
        assert decode_frame(i_payload, None).equal(ref)
        assert decode_frame(p_payload, ref).equal(ordered)
    info_v1 = bytes([1]) + code.encode_stream_info(spec, gaussians=100, gop=8, encoder="test")[1:]
    assert code.decode_stream_info(info_v1)[0] == code.decode_stream_info(
        code.encode_stream_info(spec, gaussians=100, gop=8, encoder="test"))[0]


def test_empty_frames_round_trip():
    empty = QuantizedFrame(torch.zeros(0, 2, dtype=torch.int64), torch.zeros(0, 3, dtype=torch.int64),
                           torch.zeros(0, 3, dtype=torch.int64))
    payload, ordered = encode_intra(empty)
    assert decode_frame(payload, None).num_gaussians == 0
    payload, _ = encode_predicted(ordered, torch.zeros(0, dtype=torch.bool), empty, empty)
    assert decode_frame(payload, ordered).num_gaussians == 0


def test_bad_frame_payloads_raise_format_error():
    spec = QuantSpec()
    payload, ref = encode_intra(quantize(random_frame(), spec))
    for cut in range(0, len(payload), max(1, len(payload) // 40)):
        with pytest.raises(GFixFormatError):
            decode_frame(payload[:cut], None)
    with pytest.raises(GFixFormatError, match="unknown frame type"):
        decode_frame(b"\x07" + payload[1:], None)
    with pytest.raises(GFixFormatError, match="trailing"):
        decode_frame(payload + b"\x00", None)
    p_payload, _ = encode_predicted(ref, torch.ones(ref.num_gaussians, dtype=torch.bool), ref, ref.select(slice(0, 0)))
    with pytest.raises(GFixFormatError, match="without a reference"):
        decode_frame(p_payload, None)
    with pytest.raises(GFixFormatError, match="reference has"):
        decode_frame(p_payload, ref.select(slice(0, 10)))


def small_config(**overrides):
    base = dict(gaussians=500, key_iterations=150, p_iterations=30, qat_iterations=20, gop=3)
    base.update(overrides)
    return SequenceConfig(**base)


def test_sequence_encoder_closed_loop(clip):
    enc = SequenceEncoder(small_config(), 90, 160)
    ref = None
    for i, frame in enumerate(clip):
        coded = enc.encode(frame)
        assert coded.key == (i % 3 == 0)
        decoded = decode_frame(coded.payload, ref)
        assert decoded.equal(coded.quantized)
        image = to_uint8(reconstruct(decoded, enc.config.quant, 90, 160))
        assert torch.equal(image, coded.reconstruction)  # decoder == encoder, bit for bit
        assert coded.psnr > 25.5  # measured 26.4 .. 27.2 dB
        ref = decoded


def test_predicted_frames_cost_less_than_key_frames(clip):
    enc = SequenceEncoder(small_config(gop=16), 90, 160)
    sizes = [len(enc.encode(f).payload) for f in clip]
    assert max(sizes[1:]) < 0.5 * sizes[0]


def test_scene_cut_forces_key_frame(clip):
    enc = SequenceEncoder(small_config(gop=16), 90, 160)
    assert enc.encode(clip[0]).key
    assert not enc.encode(clip[1]).key
    assert enc.encode(255 - clip[2]).key  # a different picture: scene cut


def test_scene_cut_drop_is_measured_from_at_most_30_db():
    from gfix_sdk.gaussians.sequence import SCENE_CUT_BASELINE_DB, is_scene_cut

    assert SCENE_CUT_BASELINE_DB == 30.0
    # A low-quality reference: the drop counts from its own PSNR.
    assert is_scene_cut(16.9, 27.0, 10.0) and not is_scene_cut(17.1, 27.0, 10.0)
    # A 38 dB reference on ordinary motion (measured at 720p: ~27 dB) is no cut ...
    assert not is_scene_cut(27.0, 38.0, 10.0)
    # ... while a different picture still is.
    assert is_scene_cut(12.0, 38.0, 10.0) and is_scene_cut(19.9, 45.0, 10.0)


def test_quality_floor_controller_steps():
    from gfix_sdk.gaussians.sequence import FLOOR_DB_PER_OCTAVE, MIN_RESIDUAL_SCALE, next_residual_scale

    step = FLOOR_DB_PER_OCTAVE
    assert next_residual_scale(1.0, 30.0 - step, 30.0) == pytest.approx(0.5)  # one step below: halved
    assert next_residual_scale(0.5, 30.0 - 2 * step, 30.0) == pytest.approx(0.125)
    assert next_residual_scale(0.125, 30.0 + step, 30.0) == pytest.approx(0.25)  # recovering: raised again
    assert next_residual_scale(1.0, 40.0, 30.0) == 1.0  # never above the fixed penalty
    assert next_residual_scale(1.0, 0.0, 30.0) == MIN_RESIDUAL_SCALE  # and bounded below
    with pytest.raises(ValueError, match="max_drift_db"):
        SequenceConfig(max_drift_db=0.0)


def test_quality_floor_holds_predicted_frames_closer_to_the_key_frame():
    frames, _ = load_bundled_clip(max_frames=8, size=(160, 90))
    results = {}
    for floor in (None, 0.05):
        # A 5x residual penalty, so that the fixed one drifts at this small size.
        enc = SequenceEncoder(small_config(gop=16, max_drift_db=floor, residual_weight=1e-3), 90, 160)
        ref, coded = None, []
        for frame in frames:
            c = enc.encode(frame)
            decoded = decode_frame(c.payload, ref)
            assert decoded.equal(c.quantized)  # closed loop holds with the floor too
            ref = decoded
            coded.append(c)
        results[floor] = coded
    drift = {f: c[0].psnr - np.mean([x.psnr for x in c[-4:]]) for f, c in results.items()}
    size = {f: sum(len(x.payload) for x in c[1:]) for f, c in results.items()}
    assert results[None][0].payload == results[0.05][0].payload  # same key frame
    assert drift[0.05] < drift[None] - 0.3  # measured: 0.14 vs 0.77 dB
    assert size[0.05] > size[None]  # bought with residual bits (measured: 3,711 vs 2,344 B)


def test_sequence_encoder_rejects_wrong_frames():
    enc = SequenceEncoder(small_config(), 90, 160)
    with pytest.raises(ValueError, match="uint8"):
        enc.encode(np.zeros((90, 160, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="gaussians"):
        SequenceConfig(gaussians=0)


def test_native_to_uint8_equals_the_torch_operations():
    """The decoder's fused uint8 conversion gives torch's bytes: ties (k + 0.5)
    round to even, out-of-range values clamp, infinities saturate."""
    from gfix_sdk.gaussians.reconstruct import to_uint8_reference

    ties = (torch.arange(256, dtype=torch.float32) + 0.5) / 255
    values = torch.cat([ties, torch.rand(90 * 160 * 3, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.2,
                        torch.tensor([-1e30, 1e30, float("inf"), float("-inf"), 0.0, 1.0, -0.0])])
    for image in (values, values[: len(values) // 3 * 3].reshape(-1, 3)):
        assert torch.equal(to_uint8(image), to_uint8_reference(image))
    strided = values[::2]  # not contiguous: the torch path
    assert torch.equal(to_uint8(strided), to_uint8_reference(strided))
