"""Training code of the built-in class-to-image PixelFlow (issue 8): the objective against the cascade's training
state and the official collate formula, determinism, learning, and the saved folder through the pack's loaders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from flowar.models.pixelflow import PixelFlowConfig
from flowar.models.pixelflow_release import load_pixelflow
from flowar.nodes.pixelflow import FlowARPixelFlowLoader, FlowARPixelFlowSampler
from flowar.samplers.pixelflow.cascade import noised_entry
from flowar.samplers.pixelflow.schedule import cascade_schedule
from flowar.tooling.accuracy import score
from flowar.tooling.pixelflow_eval import class_accuracy, snapshot_curve
from flowar.tooling.world import generate_many, image_batch
from flowar.train import loop
from flowar.train.loop import TrainSettings, learning_rate_factor, training_autocast, world_batch
from flowar.train.pixelflow_c2i import c2i_task
from flowar.train.pixelflow_objective import drop_labels, stage_batch, training_batches
from flowar.train.pixelflow_training import save_release, train
from support.fixtures import REPO_ROOT

MICRO = PixelFlowConfig(num_attention_heads=2, attention_head_dim=8, depth=1, patch_size=2, num_classes=12)
SCHEDULE = cascade_schedule(1000, 2)  # 16 -> 32 px
QUICK = TrainSettings(batch_size=8, lr=3e-3, warmup_steps=5, log_every=1)
C2I = c2i_task(MICRO)


def test_stage_batch_is_the_cascade_training_state_and_the_official_target() -> None:
    images, samples = world_batch(seed=0, step=0, batch_size=4)
    labels = torch.tensor([sample.class_index for sample in samples])
    stage, n = 0, SCHEDULE.num_train_timesteps
    batch = stage_batch(images, labels, SCHEDULE, stage, torch.Generator().manual_seed(5))
    replay = torch.Generator().manual_seed(5)  # the draws in stage_batch's order: table indices, then noise
    index = torch.randint(0, n, (4,), generator=replay)
    noise = torch.randn(4, 3, 16, 16, generator=replay)
    assert torch.equal(batch.timesteps, SCHEDULE.stage_timesteps(stage)[index].float())
    assert torch.equal(batch.local_t, index.double() / n)
    for row in range(4):
        state = noised_entry(images[row:row + 1], SCHEDULE, stage, batch.local_t[row].item(), noise[row:row + 1])
        torch.testing.assert_close(batch.x_t[row:row + 1], state, atol=1e-6, rtol=0)
    # collate_fn's target, written out: end_t down(img) + (1 - end_t) n - (start_t up(down(down(img))) + (1 - start_t) n)
    end_image = F.interpolate(images, size=(16, 16), mode="bilinear")
    start_image = F.interpolate(F.interpolate(end_image, size=(8, 8), mode="bilinear"), size=(16, 16), mode="nearest")
    start_t, end_t = SCHEDULE.start_t[stage], SCHEDULE.end_t[stage]
    target = end_t * end_image + (1 - end_t) * noise - (start_t * start_image + (1 - start_t) * noise)
    torch.testing.assert_close(batch.target, target, atol=1e-6, rtol=0)


def test_batches_split_evenly_over_stages_and_drop_a_tenth_of_the_labels() -> None:
    images, samples = world_batch(seed=1, step=0, batch_size=10)
    labels = torch.tensor([sample.class_index for sample in samples])
    batches = training_batches(images, labels, SCHEDULE, 12, torch.Generator().manual_seed(0))
    assert [b.stage for b in batches] == [0, 1] and [len(b.labels) for b in batches] == [5, 5]
    assert [b.x_t.shape[-1] for b in batches] == [16, 32]
    dropped = drop_labels(torch.zeros(2000, dtype=torch.long), 12, torch.Generator().manual_seed(0))
    assert set(dropped.tolist()) == {0, 12} and 150 < (dropped == 12).sum() < 250


def test_same_seed_same_first_loss_and_the_loss_falls() -> None:
    first = train(C2I, SCHEDULE, seed=0, steps=1, settings=QUICK, log=lambda _: None).losses[0]
    assert first == train(C2I, SCHEDULE, seed=0, steps=1, settings=QUICK, log=lambda _: None).losses[0]
    assert first != train(C2I, SCHEDULE, seed=1, steps=1, settings=QUICK, log=lambda _: None).losses[0]
    lines: list[str] = []
    losses = train(C2I, SCHEDULE, seed=0, steps=50, settings=QUICK, log=lines.append).losses
    assert len(losses) == 50 and len(lines) == 50 and lines[-1].startswith("step 50  loss ")
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10


def test_learning_rate_warms_up_then_falls_to_zero_along_a_half_cosine() -> None:
    settings = TrainSettings(warmup_steps=10)
    factors = [learning_rate_factor(step, settings, 110) for step in range(110)]
    assert factors[0] == 0.1 and factors[9] == 1.0 and factors[10] == 1.0
    assert factors[60] == pytest.approx(0.5) and factors[-1] < 1e-3
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert learning_rate_factor(500, settings, None) == 1.0  # a run bounded by minutes keeps a constant rate
    assert learning_rate_factor(50, TrainSettings(warmup_steps=10, cosine_decay=False), 110) == 1.0


@pytest.mark.parametrize("native", [True, False])
def test_training_autocast_is_bf16_only_where_the_cpu_has_native_bf16(native: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "BF16_NATIVE", native)
    layer = torch.nn.Linear(4, 4)
    with training_autocast():
        output = layer(torch.ones(2, 4))
    assert output.dtype == (torch.bfloat16 if native else torch.float32)


def test_saved_folder_loads_through_the_loaders_and_samples(models_dir: Path) -> None:
    result = train(C2I, SCHEDULE, seed=0, steps=2, settings=QUICK, log=lambda _: None)
    folder = models_dir / "pixelflow" / "shapes-micro"
    weights = save_release(result.ema["pixelflow"], SCHEDULE, folder, resolution=32, provenance={"seed": 0})
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "model.safetensors"]
    model, release, source = load_pixelflow(weights)
    assert source.endswith("config.yaml") and release.model == MICRO
    assert (release.num_stages, release.resolution, release.null_label) == (2, 32, 12)
    for name, value in result.ema["pixelflow"].state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    name = "shapes-micro/model.safetensors"
    assert name in FlowARPixelFlowLoader.INPUT_TYPES()["required"]["ckpt_name"][0]
    handle = FlowARPixelFlowLoader().load(name, "fp32")[0]
    image = FlowARPixelFlowSampler().sample(handle, seed=0, steps=2, cfg=4.0, cfg_schedule="linear", shift=1.0,
                                            solver="euler", size=32, batch_size=1, class_index=3)[0]
    assert image.shape == (1, 32, 32, 3) and torch.isfinite(image).all()
    accuracy = class_accuracy(model, SCHEDULE, samples=5, batch=2)  # classes 0..4: four circles, one square
    assert accuracy.total == 5 and [t for _, t in accuracy.per_shape.values()] == [4, 1, 0]


def test_accuracy_counts_true_world_images_and_rejects_wrong_classes() -> None:
    samples = generate_many(range(24))
    images, labels = image_batch(samples), torch.tensor([s.class_index for s in samples])
    assert score(images, labels).correct >= 23
    assert score(images, (labels + 1) % 12).correct == 0
    assert score(torch.zeros(2, 32, 32, 3), labels[:2]).correct == 0  # no object is no correct sample


@pytest.mark.slow
def test_training_script_runs_from_the_repository_root(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "flowar.train.pixelflow_c2i", "--out", str(tmp_path), "--steps", "2",
                             "--batch-size", "4"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "2 steps in" in result.stdout and "MB)" in result.stdout
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.yaml").is_file()


def test_learning_curve_evaluates_every_snapshot_of_a_run(tmp_path: Path) -> None:
    snapshots: list[int] = []

    def snapshot(step: int, ema, _raw) -> None:
        snapshots.append(step)
        save_release(ema["pixelflow"], SCHEDULE, tmp_path / f"step{step:06d}", resolution=32,
                     provenance={"steps": step, "minutes": 0.1 * step})

    train(C2I, SCHEDULE, seed=0, steps=4, settings=QUICK, log=lambda _: None, snapshot=snapshot, snapshot_every=2)
    assert snapshots == [2, 4]
    table = snapshot_curve(tmp_path, samples=3, seed=0).splitlines()
    assert len(table) == 4 and table[2].startswith("| 2 | 0.2 | ") and table[3].startswith("| 4 | 0.4 | ")
    assert all("(" in row and "/3)" in row for row in table[2:])
