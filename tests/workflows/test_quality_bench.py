"""The quality benchmark (``bench/quality.py``) on micro models trained here for two steps: the manifest's exact
format, NFE spent equal to the intended budgets, 32x32 PNGs that hold what was judged, determinism whatever the
worker count, a failing worker's error, and the search settings chosen per budget."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from flowar.models.flan_t5 import load_t5_encoder
from flowar.models.rewards.shapes_count import ShapesCountReward
from flowar.models.shapes import CAPTIONS, CLASS_NAMES
from flowar.nodes.arpg import FlowARARPGLoader, FlowARARPGSampler, FlowARVQTokenizerLoader
from flowar.nodes.mar import FlowARMARLoader, FlowARMARSampler, FlowARMARVAELoader
from flowar.nodes.masks import FlowARRegionMask
from flowar.nodes.pixelflow import FlowARPixelFlowLoader, FlowARPixelFlowSampler
from flowar.tooling import pixelflow_sampling
from flowar.tooling.arpg_eval import PARALLEL, RASTER, edit_cases
from flowar.tooling.mar_eval import inpaint_cases
from flowar.tooling.pixelflow_eval import text_condition
from flowar.samplers.pixelflow.search import CascadeSearchSettings
from flowar.tooling.report import proportion, quantise, wilson, write_png
from support.arpg import sampler_inputs
from support.bench import run_quality
from support.micro_arpg import micro_arpg_models
from support.micro_mar import micro_mar_models
from support.micro_pixelflow import SCHEDULE, micro_models

METHODS = ("bon", "smc", "sop", "rbf")
MULTIPLIERS = (2,)
TINY = ["--per-class", "1", "--per-caption", "1", "--count-seeds", "1", "--captions", "2", "--multipliers", "2",
        "--methods", ",".join(METHODS), "--workers", "1"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return micro_models(tmp_path_factory.mktemp("micro"))


@pytest.fixture(scope="module")
def first_run(models: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("quality")
    return out, run_quality(["--family", "pixelflow", "--out", str(out), *models, *TINY])


@pytest.mark.slow
def test_manifest_lists_every_sample_with_the_nfe_it_was_given(first_run: tuple[Path, str]) -> None:
    out, _ = first_run
    manifest = json.loads((out / "manifest.json").read_text())
    c2i = [entry for entry in manifest if entry["mode"] == "c2i"]
    t2i = [entry for entry in manifest if entry["mode"] == "t2i"]
    count = [entry for entry in manifest if entry["mode"] == "count"]
    rows = 1 + len(METHODS) * len(MULTIPLIERS)
    assert len(c2i) + len(t2i) + len(count) == len(manifest) == 12 + 2 * rows + 2 * rows
    for entry in c2i:
        assert list(entry) == ["file", "family", "mode", "class_index", "method", "nfe", "seed"]
        assert (entry["family"], entry["method"], entry["nfe"]) == ("pixelflow", "plain", 20)  # 2 stages x 10
    assert [(e["class_index"], e["seed"]) for e in c2i] == [(k, k) for k in range(len(CLASS_NAMES))]
    captions = {CAPTIONS[0], CAPTIONS[24]}  # 2 of the 48, evenly spread
    budgets = {("plain", 20)} | {(method, 20 * k) for method in METHODS for k in MULTIPLIERS}
    assert {(e["method"], e["nfe"]) for e in t2i} == {(e["method"], e["nfe"]) for e in count} == budgets
    for entry in t2i:
        assert list(entry) == ["file", "family", "mode", "caption", "method", "nfe", "seed"]
        assert entry["caption"] in captions and entry["seed"] == CAPTIONS.index(entry["caption"])  # paired seeds
    for entry in count:
        assert list(entry) == ["file", "family", "mode", "class_index", "caption", "method", "nfe", "seed"]
        assert entry["caption"] in captions and entry["seed"] == CAPTIONS.index(entry["caption"])
        assert all(word in entry["caption"] for word in CLASS_NAMES[entry["class_index"]].split())
    for entry in manifest:
        with Image.open(out / entry["file"]) as image:
            assert (image.size, image.mode, image.format) == ((32, 32), "RGB", "PNG")
    assert len({entry["file"] for entry in manifest}) == len(manifest)


@pytest.mark.slow
def test_summary_names_the_machine_and_every_row(first_run: tuple[Path, str]) -> None:
    out, summary = first_run
    assert (out / "summary.md").read_text() == summary
    assert "machine: " in summary and f"torch {torch.__version__}" in summary
    assert "| 12 | 20 | " in summary  # the c2i row: samples, NFE
    for method in METHODS:
        for k in MULTIPLIERS:
            assert f"| {method} | {k}x | {20 * k} | " in summary
    assert "| plain | 1x | 20 | Euler |" in summary
    assert summary.count("/12) |") == 1  # the c2i accuracy over 12 samples
    assert summary.count("/2) |") == 2 * (1 + len(METHODS) * len(MULTIPLIERS))  # each t2i and count row's
    assert "## PixelFlow counting experiment" in summary


@pytest.mark.slow
def test_two_workers_give_the_same_manifest_and_images(first_run: tuple[Path, str], models: list[str],
                                                       tmp_path: Path) -> None:
    """The same command again, its samples drawn by 2 worker processes: byte for byte what 1 process wrote."""
    out, _ = first_run
    summary = run_quality(["--family", "pixelflow", "--out", str(tmp_path), *models, *TINY, "--workers", "2"])
    manifest = (out / "manifest.json").read_text()
    assert (tmp_path / "manifest.json").read_text() == manifest
    for entry in json.loads(manifest):
        assert (tmp_path / entry["file"]).read_bytes() == (out / entry["file"]).read_bytes(), entry["file"]
    assert "2 worker process(es) of 1 thread" in summary and "1 worker process(es)" in first_run[1]
    assert tables_but_timings(summary) == tables_but_timings(first_run[1])
    assert not list(tmp_path.glob(".shard-*"))  # the workers' records and logs are merged and removed


def tables_but_timings(summary: str) -> list[str]:
    """The summary's table rows without their last cell, s/image."""
    return [line.rsplit("|", 2)[0] for line in summary.splitlines() if line.startswith("|")]


@pytest.mark.slow
def test_a_failing_worker_stops_the_run_with_its_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.safetensors"
    with pytest.raises(SystemExit, match=rf"(?s)worker [12]/2 failed \(exit status 1\):.*no PixelFlow model at "
                                         rf"{re.escape(str(missing))}"):
        run_quality(["--family", "pixelflow", "--out", str(tmp_path), "--c2i", str(missing), "--modes", "c2i",
                      "--workers", "2"])
    assert not list(tmp_path.glob(".shard-*"))


@pytest.mark.slow
def test_the_seed_reproduces_a_sample_through_the_sampler_node(first_run: tuple[Path, str], models: list[str],
                                                               models_dir: Path) -> None:
    """The manifest's seed, given to the PixelFlow Sampler node with batch 1 (and, for a search whose settings the
    node can express, its reward and budget), gives the very image in the PNG."""
    out, _ = first_run
    manifest = json.loads((out / "manifest.json").read_text())
    for name, weights in (("micro-c2i", models[1]), ("micro-t2i", models[3])):
        shutil.copytree(Path(weights).parent, models_dir / "pixelflow" / name)
    c2i = FlowARPixelFlowLoader().load("micro-c2i/model.safetensors", "fp32")[0]
    t2i = FlowARPixelFlowLoader().load("micro-t2i/model.safetensors", "fp32")[0]
    defaults = dict(steps=10, cfg=4.0, shift=1.0, solver="euler", size=32, batch_size=1)
    entry = next(e for e in manifest if e["mode"] == "c2i" and e["class_index"] == 5)
    image = FlowARPixelFlowSampler().sample(c2i, seed=entry["seed"], cfg_schedule="linear", class_index=5,
                                            **defaults)[0]
    assert_png_holds(out / entry["file"], image[0])
    entry = next(e for e in manifest if (e["mode"], e["method"], e["nfe"]) == ("t2i", "rbf", 40))
    caption = entry["caption"]
    reward = SimpleNamespace(score=lambda images: ShapesCountReward().score(images, caption), patchers=[])
    image = FlowARPixelFlowSampler().sample(
        t2i, seed=entry["seed"], cfg_schedule="official", class_index=0,
        conditioning=text_condition(load_t5_encoder(Path(models[5])), [caption]), reward=reward,
        search_method="rbf", search_max_nfe=40, search_steps=10, **defaults)[0]
    assert_png_holds(out / entry["file"], image[0])
    entry = next(e for e in manifest if (e["mode"], e["method"], e["nfe"]) == ("count", "sop", 40))
    caption = entry["caption"]
    reward = SimpleNamespace(score=lambda images: ShapesCountReward().score(images, caption), patchers=[])
    image = FlowARPixelFlowSampler().sample(c2i, seed=entry["seed"], cfg_schedule="linear",
                                            class_index=entry["class_index"], reward=reward,
                                            search_method="search_over_paths", search_max_nfe=40, **defaults)[0]
    assert_png_holds(out / entry["file"], image[0])


def assert_png_holds(path: Path, image: torch.Tensor) -> None:
    with Image.open(path) as png:
        assert torch.equal(torch.from_numpy(np.array(png)).float() / 255, quantise(image[None])[0]), path


@pytest.mark.parametrize("method", METHODS)
def test_search_settings_are_the_nodes_at_k_times_the_plain_nfe(method: str) -> None:
    settings = pixelflow_sampling.search_settings(method, 4, SCHEDULE)
    assert (settings.method, settings.max_nfe) == (pixelflow_sampling.SEARCH_METHODS[method], 80)
    assert settings == CascadeSearchSettings(method=settings.method, max_nfe=80)  # everything else the node's default
    assert "particles" in pixelflow_sampling.describe(settings, SCHEDULE) or "chains" in \
        pixelflow_sampling.describe(settings, SCHEDULE) or "paths" in pixelflow_sampling.describe(settings, SCHEDULE)


def test_counting_velocity_attributes_rows_to_their_items() -> None:
    class Rows:
        def __call__(self, x: torch.Tensor, timestep: float, stage: int) -> torch.Tensor:
            return x

        def rows(self, rows: list[int]) -> Rows:
            return self

    counts = [0, 0]
    velocity = pixelflow_sampling.CountingVelocity(Rows(), counts, range(2))
    velocity(torch.zeros(2, 3, 4, 4), 0.0, 0)
    velocity.rows([1, 1, 1])(torch.zeros(3, 3, 4, 4), 0.0, 0)
    assert counts == [1, 4]
    with pytest.raises(ValueError, match="batch of 3"):
        velocity(torch.zeros(3, 3, 4, 4), 0.0, 0)


def test_png_holds_exactly_the_judged_image_and_intervals_are_wilson(tmp_path: Path) -> None:
    image = quantise(torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(0)))[0]
    write_png(tmp_path / "a.png", image)
    assert_png_holds(tmp_path / "a.png", image)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert proportion(5, 10) == "50.0% [23.7%, 76.3%] (5/10)"


@pytest.mark.slow
def test_unknown_method_is_refused(models: list[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown method or mode beam"):
        run_quality(["--family", "pixelflow", "--out", str(tmp_path), *models, "--methods", "beam"])


# ---------------------------------------------------------------------------------------------------- MAR


@pytest.mark.slow
def test_mar_family_writes_c2i_and_inpainting_samples_the_node_reproduces(tmp_path: Path, models_dir: Path,
                                                                           request: pytest.FixtureRequest) -> None:
    options = micro_mar_models(models_dir)
    out = tmp_path / "quality"
    summary = run_quality(["--family", "mar", "--out", str(out), *options, "--per-class", "1", "--inpaint-cases",
                            "2", "--workers", "1"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(e["mode"], e["class_index"], e["seed"]) for e in manifest] == \
        [("c2i", k, k) for k in range(12)] + [("inpaint", 0, 0), ("inpaint", 1, 1)]
    for entry in manifest:
        assert list(entry) == ["file", "family", "mode", "class_index", "method", "nfe", "seed"]
        assert (entry["family"], entry["method"], entry["nfe"]) == ("mar", "plain", 64)
        with Image.open(out / entry["file"]) as image:
            assert (image.size, image.mode) == ((32, 32), "RGB")
    assert "## MAR: " in summary and "| c2i | 12 | 64 | " in summary and "| inpaint | 2 | 64 | " in summary
    model = FlowARMARLoader().load("micro-c2i.pth", "model_ema", "fp32")[0]
    vae = FlowARMARVAELoader().load("micro-kl.ckpt", "fp32")[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the benchmark draws: the VAE's convolutions round differently on more threads
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    image = FlowARMARSampler().sample(model, vae, seed=7, num_iter=64, cfg=4.0, cfg_schedule="constant",
                                      temperature=1.0, diffusion_steps=100, batch_size=1, class_index=7)[0]
    assert_png_holds(out / manifest[7]["file"], image[0])
    case = inpaint_cases(2)[1]  # case 1: its left half kept, the right half masked, seed 1, its class
    source = case.image[None].float() / 255
    image = FlowARMARSampler().sample(model, vae, seed=1, num_iter=64, cfg=4.0, cfg_schedule="constant",
                                      temperature=1.0, diffusion_steps=100, batch_size=1, class_index=1, image=source,
                                      mask=FlowARRegionMask().make(source, "right", 0.5)[0])[0]
    assert_png_holds(out / manifest[13]["file"], image[0])


@pytest.mark.slow
def test_mar_family_refuses_an_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown MAR mode outpaint"):
        run_quality(["--family", "mar", "--out", str(tmp_path), "--modes", "outpaint"])


# ---------------------------------------------------------------------------------------------------- ARPG


@pytest.mark.slow
def test_arpg_family_writes_parallel_raster_and_editing_samples_the_node_reproduces(
        tmp_path: Path, models_dir: Path, request: pytest.FixtureRequest) -> None:
    options = micro_arpg_models(models_dir)
    out = tmp_path / "quality"
    summary = run_quality(["--family", "arpg", "--out", str(out), *options, "--per-class", "1", "--edit-cases", "2",
                            "--workers", "1"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(e["mode"], e["method"], e["class_index"], e["seed"], e["nfe"]) for e in manifest] == \
        [("c2i", "parallel", k, k, 16) for k in range(12)] + [("c2i", "raster", k, k, 64) for k in range(12)] + \
        [(edit, "parallel", j, j, 16) for edit in ("inpaint", "outpaint") for j in range(2)]
    for entry in manifest:
        assert list(entry) == ["file", "family", "mode", "class_index", "method", "nfe", "seed"]
        with Image.open(out / entry["file"]) as image:
            assert (image.size, image.mode) == ((32, 32), "RGB")
    for row in ("| c2i | parallel | 12 | 16 | ", "| c2i | raster | 12 | 64 | ", "| inpaint | parallel | 2 | 16 | ",
                "| outpaint | parallel | 2 | 16 | "):
        assert row in summary
    model = FlowARARPGLoader().load("micro-c2i.pt", "fp32")[0]
    vq = FlowARVQTokenizerLoader().load("micro-vq.pt", "fp32")[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the benchmark draws
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    for index, settings in ((7, PARALLEL), (19, RASTER)):
        image = FlowARARPGSampler().sample(model, vq, seed=7, batch_size=1, class_index=7,
                                           **sampler_inputs(settings))[0]
        assert_png_holds(out / manifest[index]["file"], image[0])
    source = edit_cases(2)[1].image[None].float() / 255  # case 1: seed 1, class 1
    for index, region, amount in ((25, "centre", 0.5), (27, "border", 0.25)):
        mask = FlowARRegionMask().make(source, region, amount)[0]
        image = FlowARARPGSampler().sample(model, vq, seed=1, batch_size=1, class_index=1, image=source, mask=mask,
                                           **sampler_inputs(PARALLEL))[0]
        assert_png_holds(out / manifest[index]["file"], image[0])


@pytest.mark.slow
def test_arpg_family_refuses_an_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown ARPG mode t2i"):
        run_quality(["--family", "arpg", "--out", str(tmp_path), "--modes", "t2i"])
