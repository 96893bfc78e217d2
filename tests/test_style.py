"""The speaking-style encoder, its contrastive training (`pt train style`) and the StyleSim metric.

Synthetic speakers (:func:`speaker_sequence`): each speaker has its own syllable rate, blink rate and lip
rounding; loudness and smile vary per clip. The encoder must tell speakers apart from expression-only vertex
motion after a few dozen contrastive steps, also across clips.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from pt_bench.style_encoder import (StyleEncoderConfig, StyleEncoderError, build_style_encoder,
                                    farthest_point_sampling, load_style_encoder, save_style_encoder, window_starts)
from pt_bench.style_train import (CKPT_PATH, StyleClip, StyleDataError, StyleTrainConfig, StyleTrainConfigError,
                                  chance_accuracy, load_style_clips, nearest_neighbour_accuracy, read_csv_log,
                                  supervised_contrastive_loss, train_style, train_style_on_clips)
from pt_data.face_model import FaceModel
from pt_data.weights import MissingWeightsError

EXPRESSIONS = ("jawOpen", "mouthSmile_L", "mouthSmile_R", "mouthFunnel", "eyeBlink_L", "eyeBlink_R",
               "browInnerUp_L", "mouthClose")
TINY_ENCODER = StyleEncoderConfig(window=16, num_lower_vertices=24, num_upper_vertices=8, d_model=32, num_layers=1,
                                  num_heads=2, ff_mult=2, embed_dim=16, dropout=0.0)
TINY_TRAIN = StyleTrainConfig(encoder=TINY_ENCODER, speakers_per_batch=4, windows_per_speaker=4, lr=3e-3,
                              warmup_steps=5, log_every=5, val_every=0, ckpt_every=0, holdout_tail=0.25)


def tiny_face_model(num_vertices: int = 500, seed: int = 0) -> FaceModel:
    """A half-ellipsoid face: lower half moved by jaw/mouth blendshapes, upper half by eye/brow ones."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(-1, 1, (num_vertices, 2))
    x, y = 70 * u[:, 0], 95 * u[:, 1]
    z = 60 * np.sqrt(np.clip(1 - 0.8 * u[:, 0] ** 2 - 0.5 * u[:, 1] ** 2, 0.05, None))
    low = y < -10
    feats = np.stack([np.ones(num_vertices), u[:, 0], u[:, 1], u[:, 0] * u[:, 1], u[:, 0] ** 2], 1)
    basis = []
    for name in EXPRESSIONS:
        region = low if name.startswith(("jaw", "mouth")) else ~low
        field = feats @ rng.normal(size=(5, 3)) * 4.0
        basis.append(field * region[:, None])
    masks = {"face": np.ones(num_vertices, bool), "lower_face": low, "upper_face": ~low, "lip": low & (np.abs(x) < 20)}
    return FaceModel(name="tiny-style", mean=np.stack([x, y, z], 1), id_basis=rng.normal(size=(3, num_vertices, 3)),
                     exp_basis=np.stack(basis), triangles=np.array([[0, 1, 2]]), landmark68_ids=np.arange(68),
                     mediapipe_ids=np.arange(478), mediapipe_weights=np.ones(478), masks=masks,
                     exp_names=EXPRESSIONS, exp_lower=np.zeros(len(EXPRESSIONS)), exp_upper=np.ones(len(EXPRESSIONS)))


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return tiny_face_model()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny networks run several times faster on one thread on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SPEAKERS = {"amy": (5.0, 0.2), "bob": (3.0, 0.6), "cat": (4.0, 0.1), "dan": (2.5, 0.9)}  # syllables/s, blinks/s


def speaker_sequence(names: tuple[str, ...], speaker: str, num_frames: int, seed: int) -> np.ndarray:
    """(T, E) expressions of one clip of ``speaker``.

    The speaker's style is its syllable rate, its blink rate and lip rounding when it speaks slowly; the
    clip's loudness (jaw amplitude) and smile are drawn per clip (``seed``), so they identify a clip, not
    a speaker.
    """
    rate, blink_rate = SPEAKERS[speaker]
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / 25.0
    jaw = rng.uniform(0.3, 0.9) * 0.5 * (1 - np.cos(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    blink = np.zeros(num_frames)
    for s in np.flatnonzero(rng.random(num_frames) < blink_rate / 25.0):
        blink[s:s + 3] = 1.0
    values = {"jawOpen": jaw, "mouthSmile_L": rng.uniform(0, 0.4) + 0.03 * rng.normal(size=num_frames),
              "mouthSmile_R": rng.uniform(0, 0.4) + 0.03 * rng.normal(size=num_frames),
              "mouthFunnel": 0.2 * jaw * (rate < 3.5), "eyeBlink_L": blink, "eyeBlink_R": blink,
              "browInnerUp_L": 0.1 * rng.random(num_frames), "mouthClose": 0.05 * rng.random(num_frames)}
    out = np.zeros((num_frames, len(names)), np.float32)
    for j, n in enumerate(names):
        if n in values:
            out[:, j] = np.clip(values[n], 0, 1)
    return out


def synthetic_clips(model: FaceModel, clips_per_speaker: int = 2, num_frames: int = 80,
                    holdout_tail: float = 0.25) -> list[StyleClip]:
    out = []
    for si, spk in enumerate(SPEAKERS):
        for k in range(clips_per_speaker):
            e = speaker_sequence(model.exp_names, spk, num_frames, seed=100 * si + k)
            out.append(StyleClip(f"{spk}/{k}", spk, e, num_frames - int(round(holdout_tail * num_frames))))
    return out


# ------------------------------------------------------------------------------------------------ encoder
def test_encoder_shapes_unit_norm_and_vertex_subset(model):
    enc = build_style_encoder(TINY_ENCODER, model, seed=0)
    ids = enc.vertex_ids.numpy()
    assert len(ids) == len(set(ids)) == 32
    assert model.mask("lower_face")[ids[:24]].all() and model.mask("upper_face")[ids[24:]].all()
    x = torch.rand(3, 16, model.num_expression)
    z = enc(x)
    assert z.shape == (3, 16) and torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    same = build_style_encoder(TINY_ENCODER, model, seed=0)
    assert torch.equal(same(x), z)  # seeded initialisation
    assert not torch.equal(build_style_encoder(TINY_ENCODER, model, seed=1)(x), z)


def test_encoder_sees_expression_only_vertex_offsets_and_velocities(model):
    enc = build_style_encoder(TINY_ENCODER, model, seed=0)
    e = np.random.default_rng(0).random((2, 5, model.num_expression)).astype(np.float32)
    ids = enc.vertex_ids.numpy()
    offsets = (model.vertices(None, e) - model.mean)[:, :, ids].reshape(2, 5, -1)  # reference: the full model
    feats = enc.frame_features(torch.from_numpy(e)).numpy()
    k = offsets.shape[-1]
    np.testing.assert_allclose(feats[..., :k], offsets / TINY_ENCODER.vertex_scale_mm, atol=1e-4)
    vel = np.diff(offsets, axis=1, prepend=offsets[:, :1])
    np.testing.assert_allclose(feats[..., k:], vel / TINY_ENCODER.velocity_scale_mm, atol=1e-4)


def test_farthest_point_sampling_spreads_points():
    pts = np.stack([np.linspace(0, 10, 101), np.zeros(101), np.zeros(101)], 1)
    picks = farthest_point_sampling(pts, 3)
    assert picks[0] == 50 and set(picks[1:]) == {0, 100}
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(400, 3))
    fps = cloud[farthest_point_sampling(cloud, 20)]
    first = cloud[:20]

    def min_gap(p):
        d = np.linalg.norm(p[:, None] - p[None], axis=-1)
        return d[~np.eye(len(p), dtype=bool)].min()

    assert min_gap(fps) > 2 * min_gap(first)


def test_window_starts_cover_the_sequence():
    assert window_starts(10, 16) == [0]
    assert window_starts(50, 16) == [0, 8, 16, 24, 32, 34]
    for t in (16, 17, 40, 101):
        starts = window_starts(t, 16)
        covered = np.zeros(t, bool)
        for s in starts:
            covered[s:s + 16] = True
        assert covered.all() and starts[-1] + 16 == t


def test_embed_sequence_averages_window_embeddings(model):
    enc = build_style_encoder(replace(TINY_ENCODER, dropout=0.5), model, seed=0)
    enc.train()
    seq = speaker_sequence(model.exp_names, "amy", 50, seed=0)
    wins = enc.embed_windows(seq)
    assert enc.training  # restored
    assert wins.shape == (len(window_starts(50, 16)), 16)
    mean = wins.mean(0)
    np.testing.assert_allclose(enc.embed_sequence(seq), mean / np.linalg.norm(mean), atol=1e-5)
    np.testing.assert_allclose(enc.embed_sequence(seq), enc.embed_sequence(seq), atol=0)  # eval mode: no dropout
    enc.eval()
    with torch.no_grad():
        np.testing.assert_allclose(enc.embed_windows(seq)[1], enc(torch.from_numpy(seq[None, 8:24]))[0].numpy(),
                                   atol=1e-5)
        short = seq[:10]
        np.testing.assert_allclose(enc.embed_sequence(short), enc(torch.from_numpy(short[None]))[0].numpy(), atol=1e-5)


# ------------------------------------------------------------------------------------------------ loss, eval
def test_supervised_contrastive_loss_matches_a_reference_loop():
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(10, 6, generator=g), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 0, 4])  # 3 and 4 have no positive
    tau = 0.2
    total, anchors = 0.0, 0
    for i in range(10):
        pos = [p for p in range(10) if p != i and labels[p] == labels[i]]
        if not pos:
            continue
        denom = sum(np.exp(float(z[i] @ z[a]) / tau) for a in range(10) if a != i)
        total += -np.mean([np.log(np.exp(float(z[i] @ z[p]) / tau) / denom) for p in pos])
        anchors += 1
    assert float(supervised_contrastive_loss(z, labels, tau)) == pytest.approx(total / anchors, rel=1e-5)
    with pytest.raises(ValueError, match="positive"):
        supervised_contrastive_loss(z[:3], torch.tensor([0, 1, 2]))


def test_retrieval_accuracy_and_chance():
    g = np.array([[1, 0], [0, 1], [0.9, 0.1]], float)
    assert nearest_neighbour_accuracy(np.array([[1, 0.05], [0.1, 1]]), ["a", "b"], g, ["a", "b", "a"]) == 1.0
    assert nearest_neighbour_accuracy(np.array([[1, 0.05]]), ["b"], g, ["a", "b", "a"]) == 0.0
    assert chance_accuracy(["a", "b"], ["a", "b", "a"]) == pytest.approx((2 / 3 + 1 / 3) / 2)


# ------------------------------------------------------------------------------------------------ training
def test_training_lowers_the_loss_and_retrieves_speakers(model, tmp_path):
    clips = synthetic_clips(model, clips_per_speaker=3)
    res = train_style_on_clips(clips, model, tmp_path / "run", replace(TINY_TRAIN, log_every=1), max_steps=80,
                               seed=0, device="cpu", progress=False)
    rows = read_csv_log(tmp_path / "run" / "log.csv")
    assert [r["step"] for r in rows] == list(range(1, 81))
    # 4 windows per speaker: the loss is bounded below by log(3) (all 3 positives equally close, negatives far)
    floor = np.log(TINY_TRAIN.windows_per_speaker - 1)
    first, last = rows[0]["loss"] - floor, np.mean([r["loss"] for r in rows[-5:]]) - floor
    assert last < 0.3 * first
    assert rows[-1]["pos_cos"] > rows[-1]["neg_cos"] + 0.5
    chance = chance_accuracy([c.speaker for c in clips], [c.speaker for c in clips])
    assert res.retrieval_chance == pytest.approx(chance) and res.num_speakers == 4
    assert res.num_queries == 24  # 2 windows per 20-frame tail, 12 clips
    assert res.retrieval_accuracy >= 0.75 > chance + 0.4
    # across clips (the query's own clip left out) only speaking style helps: training must learn it
    retrieval = json.loads((tmp_path / "run" / "retrieval.json").read_text())
    assert retrieval["cross_clip_chance"] < 0.25 and retrieval["untrained_cross_clip_accuracy"] < 0.45
    assert res.cross_clip_accuracy == retrieval["cross_clip_accuracy"] >= 0.6
    with np.load(res.embeddings_path) as z:
        assert z["clip_embeddings"].shape == (12, 16) and list(z["clip_speakers"]) == [c.speaker for c in clips]
        assert set(z["window_kinds"]) == {"train window", "held-out window"}
        assert len(z["window_embeddings"]) == len(z["window_speakers"]) == len(z["window_clip_ids"])
    val = read_csv_log(tmp_path / "run" / "val.csv")
    assert [r["step"] for r in val] == [0, 80] and val[-1]["retrieval_accuracy"] == res.retrieval_accuracy
    loaded = load_style_encoder(res.encoder_path, face_model_id=model.model_id, config=TINY_ENCODER)
    assert loaded.meta["steps"] == 80
    clip0 = np.load(res.embeddings_path)["clip_embeddings"][0]
    np.testing.assert_allclose(loaded.model.embed_sequence(clips[0].expression), clip0, atol=1e-5)
    assert np.linalg.norm(clip0) == pytest.approx(1.0, abs=1e-5)


def test_training_is_deterministic_and_resumes_exactly(model, tmp_path):
    clips = synthetic_clips(model, clips_per_speaker=1, num_frames=48)
    cfg = replace(TINY_TRAIN, encoder=replace(TINY_ENCODER, dropout=0.2), log_every=1)  # dropout uses the RNG
    train_style_on_clips(clips, model, tmp_path / "a", cfg, max_steps=6, seed=3, device="cpu", progress=False)
    first = train_style_on_clips(clips, model, tmp_path / "b", cfg, max_steps=3, seed=3, device="cpu", progress=False)
    assert first.resumed_from is None and (tmp_path / "b" / CKPT_PATH).is_file()
    second = train_style_on_clips(clips, model, tmp_path / "b", cfg, max_steps=6, seed=3, device="cpu",
                                  progress=False)
    assert second.resumed_from == 3 and second.step == 6
    a = torch.load(tmp_path / "a" / "style_encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "style_encoder.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    la, lb = read_csv_log(tmp_path / "a" / "log.csv"), read_csv_log(tmp_path / "b" / "log.csv")
    assert [r["loss"] for r in la] == [r["loss"] for r in lb] and len(la) == 6
    with pytest.raises(StyleTrainConfigError, match="seed"):
        train_style_on_clips(clips, model, tmp_path / "b", cfg, max_steps=6, seed=4, device="cpu", progress=False)
    with pytest.raises(StyleTrainConfigError, match="train_config"):
        train_style_on_clips(clips, model, tmp_path / "b", replace(cfg, lr=1e-2), max_steps=6, seed=3,
                             device="cpu", progress=False)


# ------------------------------------------------------------------------------------------------ files
def test_checkpoint_round_trip_and_mismatch_errors(model, tmp_path):
    enc = build_style_encoder(TINY_ENCODER, model, seed=0).eval()
    path = save_style_encoder(tmp_path / "enc.pt", enc, TINY_ENCODER, model.model_id, meta={"steps": 7})
    got = load_style_encoder(path, face_model_id=model.model_id, config=TINY_ENCODER)
    seq = speaker_sequence(model.exp_names, "bob", 40, seed=1)
    np.testing.assert_allclose(got.model.embed_sequence(seq), enc.embed_sequence(seq), atol=1e-6)
    assert got.meta == {"steps": 7} and got.face_model_id == model.model_id and not got.model.training
    other = tiny_face_model(seed=1)
    with pytest.raises(StyleEncoderError, match="face model"):
        load_style_encoder(path, face_model_id=other.model_id)
    with pytest.raises(StyleEncoderError, match="window"):
        load_style_encoder(path, config=replace(TINY_ENCODER, window=32))
    with pytest.raises(FileNotFoundError, match="pt train style"):
        load_style_encoder(tmp_path / "none.pt")
    torch.save({"step": 3, "model": {}}, tmp_path / "ckpt.pt")
    with pytest.raises(StyleEncoderError, match="not a PersonaTalk style-encoder"):
        load_style_encoder(tmp_path / "ckpt.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(StyleEncoderError, match="not a readable"):
        load_style_encoder(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="another config"):
        save_style_encoder(tmp_path / "x.pt", enc, replace(TINY_ENCODER, embed_dim=8), model.model_id)


def _write_shards(root, model, clips, *, fitted=True):
    from pt_data.clip import Clip
    from pt_data.shards import write_shard

    rows = []
    for i, c in enumerate(clips):
        t = c.num_frames
        rows.append(Clip(clip_id=c.clip_id, dataset="synth", speaker_id=c.speaker.upper() + str(i % 2),
                         source_uri=f"mem://{i}", start_s=0.0, end_s=t / 25, frames=[b"\xff"] * t,
                         audio=np.zeros(t * 640, np.int16), crop_affine=np.zeros((t, 2, 3), np.float32),
                         landmarks=np.zeros((t, 478, 2), np.float32),
                         face_model_id=model.model_id if fitted else None,
                         expression=c.expression if fitted else None))
    root.mkdir(parents=True)
    write_shard(str(root / "part-00000.parquet"), rows)


def test_shards_cli_speaker_map_and_errors(model, tmp_path, capsys):
    from pt_cli import style_cmd

    clips = synthetic_clips(model, clips_per_speaker=2, num_frames=48)
    _write_shards(tmp_path / "shards", model, clips)
    got, model_id = load_style_clips(tmp_path / "shards", holdout_tail=0.25)
    assert model_id == model.model_id and len({c.speaker for c in got}) == 8  # AMY0, AMY1, ...
    mapping = {f"{s.upper()}{k}": s for s in SPEAKERS for k in (0, 1)}
    got, _ = load_style_clips(tmp_path / "shards", speaker_map=mapping)
    assert [c.speaker for c in got] == [c.speaker for c in clips]
    np.testing.assert_allclose(got[3].expression, clips[3].expression)
    assert got[0].split == 48 - 14

    (tmp_path / "map.json").write_text(json.dumps(mapping))
    model_path = model.save(tmp_path / "tiny_model.npz")
    argv = ["--shards", str(tmp_path / "shards"), "--out", str(tmp_path / "run"), "--preset", "tiny",
            "--max-steps", "4", "--window", "16", "--holdout-tail", "0.4", "--speaker-map", str(tmp_path / "map.json"),
            "--face-model", str(model_path), "--device", "cpu", "--no-progress"]
    assert style_cmd.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["step"] == 4 and out["num_speakers"] == 4 and out["num_queries"] == 16  # 2 windows per 19-frame tail
    assert (tmp_path / "run" / "style_tsne.png").is_file() and (tmp_path / "run" / "style_tsne.pdf").is_file()

    _write_shards(tmp_path / "unfitted", model, clips[:2], fitted=False)
    with pytest.raises(StyleDataError, match="no fitted expressions"):
        train_style(tmp_path / "unfitted", tmp_path / "r2", TINY_TRAIN, max_steps=1, face_model=model)
    with pytest.raises(StyleDataError, match="fitted with face model"):
        train_style(tmp_path / "shards", tmp_path / "r3", TINY_TRAIN, max_steps=1, face_model=tiny_face_model(seed=2))
    assert style_cmd.main(argv[:2] + ["--out", str(tmp_path / "r4"), "--preset", "tiny", "--window", "60",
                                      "--face-model", str(model_path), "--no-progress"]) == 1
    assert "at least 2" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ StyleSim
def test_stylesim_missing_weights_is_a_clear_error(tmp_path):
    from pt_bench.metrics import METRICS, create_metric

    assert METRICS["stylesim"].higher_is_better and METRICS["stylesim"].weights == ("style-encoder",)
    with pytest.raises(MissingWeightsError, match="pt train style"):
        create_metric("stylesim", weights_dir=tmp_path)


def test_resample_sequence_is_linear_in_time():
    from pt_bench.metrics.stylesim import resample_sequence

    x = np.arange(31, dtype=np.float32)[:, None] * np.array([[1.0, -2.0]], np.float32)  # 1 s at 30 fps
    y = resample_sequence(x, 30.0, 25.0)
    assert y.shape == (26, 2)
    np.testing.assert_allclose(y[:, 0], np.arange(26) * 30 / 25, atol=1e-5)
    assert resample_sequence(x, 25.0, 25.0) is x



def _landmark_video(landmarks: np.ndarray, name: str):
    from pt_bench.video import BenchVideo

    v = BenchVideo(name=name, path=None, frames=np.zeros((len(landmarks), 320, 320, 3), np.uint8), fps=25.0)
    v.set_landmarks(landmarks + 32.0)  # somewhere in a 320 frame: the metric re-crops
    return v


def test_stylesim_random_weights_self_similarity_and_fit(mediapipe_face_model):
    from pt_bench.metrics import create_metric
    from pt_bench.metrics.stylesim import fit_video_expressions
    from pt_data.fit_config import FitConfig
    from pt_data.synthetic_geometry import synthetic_clip

    fm = mediapipe_face_model
    m = create_metric("stylesim", random_weights=True, face_model=fm, fit=FitConfig(iterations=10),
                      random_config=TINY_ENCODER)
    assert not m.real_weights and "random(seed=0)" in m.cache_key() and fm.model_id in m.cache_key()
    a_clip, b_clip = synthetic_clip(fm, 60, seed=0, max_yaw_deg=10), synthetic_clip(fm, 60, seed=5, max_yaw_deg=10)
    a, b = _landmark_video(a_clip.landmarks, "a"), _landmark_video(b_clip.landmarks, "b")
    res = m.evaluate(a, a)
    assert res.value == pytest.approx(1.0, abs=1e-6) and res.extras == {"stylesim_frames": 60.0}
    fitted = fit_video_expressions(a, fm, FitConfig(iterations=10))
    jaw = fm.exp_names.index("jawOpen")
    assert np.corrcoef(fitted[:, jaw], a_clip.expression[:, jaw])[0, 1] > 0.8  # the expressions are recovered
    f = m.features(a)
    assert f.shape == (16,) and np.linalg.norm(f) == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= m.score_video(a, b) < 1.0 - 1e-4
    short = m.evaluate(a, _landmark_video(b_clip.landmarks[:40], "b40"))
    assert short.extras["stylesim_frames"] == 40.0


def test_stylesim_embeddings_file_feeds_the_tsne_figure(tmp_path):
    from pt_bench.figures import STYLE_EMBEDDINGS_FILE, load_style_embeddings
    from pt_bench.metrics.stylesim import save_style_embeddings

    emb = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    path = save_style_embeddings(tmp_path / STYLE_EMBEDDINGS_FILE, list(emb), ["s1", "s1", "s2", "s2"],
                                 ["original", "dubbed", "original", "dubbed"], names=list("abcd"), real_weights=False)
    e, s, k = load_style_embeddings(path)
    np.testing.assert_array_equal(e, emb)
    assert list(s) == ["s1", "s1", "s2", "s2"] and list(k) == ["original", "dubbed"] * 2
    assert not bool(np.load(path)["real_weights"])


@pytest.mark.realdata
def test_stylesim_real_video_with_itself(shared_data):
    from pt_bench.metrics import create_metric
    from pt_bench.video import load_bench_video
    from pt_data.fit_config import FitConfig

    video = load_bench_video(shared_data / "videos" / "vrt_face2.mp4", max_frames=20)
    m = create_metric("stylesim", random_weights=True, fit=FitConfig(iterations=5))
    expr = m.expressions(video)
    assert expr.shape == (20, 57) and np.isfinite(expr).all() and expr.std(0).max() > 0.01
    assert m.evaluate(video, video).value == pytest.approx(1.0, abs=1e-6)
