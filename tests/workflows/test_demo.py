"""``demo.py`` on micro models: the grid's size and contents, the printed accuracies, and a clear error for a missing
model."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from support.fixtures import REPO_ROOT
from support.micro_arpg import micro_arpg_models
from support.micro_mar import micro_mar_models
from support.micro_pixelflow import micro_models

spec = importlib.util.spec_from_file_location("flowar_demo", REPO_ROOT / "demo.py")
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("micro")
    return micro_models(folder) + micro_mar_models(folder) + micro_arpg_models(folder)


@pytest.mark.slow
def test_demo_writes_the_grid_and_prints_accuracies(models: list[str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = demo.main(["--out", str(tmp_path), *models, "--seeds", "2", "--multiplier", "2"])
    printed = capsys.readouterr().out
    assert path == tmp_path / "demo.png"
    with Image.open(path) as grid:
        assert grid.size == demo.grid_size(rows=16, sections=5)  # 2 class rows; counting and text: plain, Best-of-N,
        # RBF each; MAR 3; ARPG 5
        pixels = torch.from_numpy(np.array(grid.convert("RGB"))).float()  # (H, W, 3)
    model, schedule = demo.pixelflow.load_model(Path(models[1]))
    image, nfe = demo.pixelflow.sample_class(model, schedule, 0, 0)  # first class, first seed
    tile = pixels[demo.HEADER_HEIGHT:demo.HEADER_HEIGHT + demo.CELL, demo.LABEL_WIDTH:demo.LABEL_WIDTH + demo.CELL]
    upscaled = image.repeat_interleave(demo.SCALE, 0).repeat_interleave(demo.SCALE, 1)  # (128, 128, 3)
    assert nfe == 20 and torch.equal(tile / 255, upscaled)
    assert re.search(r"class accuracy of the 24 images shown: \d+\.\d% \[", printed)
    for plain in ("class -> image", "text -> image"):  # the counting search, then text-to-image
        accuracies = re.search(rf"count accuracy, 8 captions x 2 seeds .*: {plain} \(20 NFE\): .*\(\d+/16\); "
                               r"Best-of-N \(40 NFE\): .*\(\d+/16\); RBF \(40 NFE\): .*\(\d+/16\)", printed)
        assert accuracies, printed
    assert ("rows: class -> image seeds 0-11; class -> image seeds 12-23; class -> image 20 NFE; Best-of-N 40 NFE; "
            "RBF 40 NFE; text -> image 20 NFE") in printed
    assert re.search(r"MAR class accuracy of the 12 images shown: .*\(\d+/12\)", printed)
    assert re.search(r"MAR inpainting class accuracy of the 12 images shown: .*\(\d+/12\)", printed)
    assert "; MAR class -> image 64 iterations; inpainting: world image (left kept); MAR inpainting right half new" \
        in printed
    mar_top = demo.HEADER_HEIGHT * 4 + 8 * (demo.CELL + demo.GAP)  # fourth section, after 8 image rows
    world = pixels[mar_top + demo.CELL + demo.GAP:mar_top + 2 * demo.CELL + demo.GAP,
                   demo.LABEL_WIDTH:demo.LABEL_WIDTH + demo.CELL]  # inpainting row, first class
    case = demo.inpaint_cases(1)[0]
    assert torch.equal(world, case.image.float().repeat_interleave(demo.SCALE, 0).repeat_interleave(demo.SCALE, 1))
    for what in ("ARPG parallel", "ARPG raster", "ARPG inpaint", "ARPG outpaint"):
        assert re.search(rf"{what} class accuracy of the 12 images shown: .*\(\d+/12\)", printed), what
    assert ("; ARPG parallel 16 steps; ARPG raster 64 steps; editing: world image; ARPG inpaint centre new; ARPG "
            "outpaint border new") in printed
    arpg_top = demo.HEADER_HEIGHT * 5 + 11 * (demo.CELL + demo.GAP)  # fifth section, after 11 image rows
    world = pixels[arpg_top + 2 * (demo.CELL + demo.GAP):arpg_top + 2 * (demo.CELL + demo.GAP) + demo.CELL,
                   demo.LABEL_WIDTH:demo.LABEL_WIDTH + demo.CELL]  # editing row, first class
    case = demo.edit_cases(1)[0]
    assert torch.equal(world, case.image.float().repeat_interleave(demo.SCALE, 0).repeat_interleave(demo.SCALE, 1))
    assert re.search(rf"wrote {re.escape(str(path))} in \d+ s in total", printed)


def test_a_built_in_model_not_shipped_is_skipped_but_a_given_path_must_exist(tmp_path: Path) -> None:
    parser = demo.argparse.ArgumentParser()
    parser.add_argument("--t2i", type=Path, default=tmp_path / "not-shipped.safetensors")
    assert demo.is_missing_default(parser, parser.parse_args([]), ["t2i"])
    assert not demo.is_missing_default(parser, parser.parse_args(["--t2i", str(tmp_path / "given")]), ["t2i"])


def test_missing_model_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.safetensors"
    with pytest.raises(SystemExit, match=f"no PixelFlow model at {re.escape(str(missing))}"):
        demo.main(["--out", str(tmp_path), "--c2i", str(missing)])
