"""Training code of the built-in tiny ARPG and its VQ tokenizer (issue "Built-in models III"): the objective against
incremental decoding, the codebook restarts, determinism and learning, the saved files through the pack's loaders and
sampler node, the evaluation's cases and settings, and the scripts from the repository root."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from flowar.models.arpg_release import load_arpg, load_vq
from flowar.models.shapes import CLASS_NAMES
from flowar.models.vq16 import VQModel
from flowar.nodes.arpg import FlowARARPGLoader, FlowARARPGSampler, FlowARVQTokenizerLoader
from flowar.nodes.masks import FlowARRegionMask
from flowar.tooling import arpg_eval
from flowar.train.arpg_c2i import SHAPES_ARPG, build_arpg, c2i_loss
from flowar.train.arpg_objective import condition_ids, random_orders, teacher_forced_logits
from flowar.train.arpg_vq import DEAD_AFTER, SHAPES_VQ, CodeUsage, build_vq, conditional_entropy, save_vq, vq_loss
from flowar.train.loop import train_modules
from support.arpg import sampler_inputs
from support.fixtures import REPO_ROOT
from support.micro_arpg import MICRO_ARPG, MICRO_VQ, QUICK, micro_vq, micro_vq_modules, write_micro_arpg

WORKFLOWS = REPO_ROOT / "workflows"


def test_orders_are_permutations_and_a_tenth_of_the_classes_drop_to_the_null_class() -> None:
    generator = torch.Generator().manual_seed(0)
    orders = random_orders(5, 64, generator)
    assert torch.equal(orders.sort(dim=1).values, torch.arange(64).expand(5, -1))
    assert len({tuple(row.tolist()) for row in orders}) == 5
    model = build_arpg(MICRO_ARPG)["arpg"]
    ids = condition_ids(model, torch.arange(5000) % 12, generator)
    dropped = ids == MICRO_ARPG.null_class_id
    assert 0.08 < dropped.float().mean() < 0.12
    assert torch.equal(ids[~dropped], MICRO_ARPG.class_token_id(torch.arange(5000) % 12)[~dropped])


def test_each_teacher_forced_query_sees_the_class_and_the_tokens_before_it_in_the_order() -> None:
    """The causal training forward equals decoding one position per step along the same order with the KV cache,
    as the sampler decodes: query ``i`` after the class and the first ``i`` tokens of the order were fed."""
    torch.manual_seed(0)
    model = build_arpg(MICRO_ARPG)["arpg"]
    torch.nn.init.normal_(model.head.weight, std=0.02)  # the zero start would make every logit equal
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, MICRO_ARPG.vocab_size, (2, 64), generator=generator)
    orders = random_orders(2, 64, generator)
    condition = MICRO_ARPG.class_token_id(torch.tensor([3, 7]))
    with torch.no_grad():
        logits = teacher_forced_logits(model, condition, tokens, orders)  # (2, 64, V)
        rope = model.rope_table(8, 8)
        shuffled = tokens.gather(1, orders)
        content = torch.cat([condition[:, None], shuffled[:, :-1]], dim=1)  # (2, 64): what step i feeds
        rows = torch.cat([torch.zeros(2, 1, dtype=torch.long), orders[:, :-1] + 1], dim=1)
        cache = model.new_kv_cache(2, 64, device=torch.device("cpu"), dtype=torch.float32)
        for i in range(64):
            step = model(content[:, i:i + 1], rope[rows[:, i:i + 1]], rope[orders[:, i:i + 1] + 1], cache=cache)
            torch.testing.assert_close(logits[:, i], step[:, 0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(logits[:, 0], logits[:, 1])


def test_codes_idle_too_long_move_onto_latents_of_the_batch_on_the_next_step() -> None:
    usage = CodeUsage(4)
    latents = torch.nn.functional.normalize(torch.randn(1, 3, 2, 2), dim=1)  # (B, C, h, w)
    codebook = torch.zeros(4, 3)
    for _ in range(DEAD_AFTER - 1):
        usage.plan_restarts(torch.tensor([0, 1]), latents, torch.Generator().manual_seed(0))
    assert usage.planned is None
    usage.plan_restarts(torch.tensor([0, 1]), latents, torch.Generator().manual_seed(0))
    usage.restart(codebook)
    moved = codebook[2:]  # codes 2 and 3 were never chosen
    vectors = latents.permute(0, 2, 3, 1).reshape(-1, 3)
    assert all(any(torch.equal(row, vector) for vector in vectors) for row in moved)
    assert codebook[:2].abs().sum() == 0 and usage.idle.tolist() == [0, 0, 0, 0] and usage.planned is None


def test_code_entropy_given_the_patch_is_0_for_a_function_of_it_and_log_k_for_a_fair_k_way_split() -> None:
    patches = torch.arange(6).repeat(200)[:, None].expand(-1, 3)  # (1200, 3): 6 contents
    assert conditional_entropy(patches[:, 0] % 4, patches) == pytest.approx(0.0, abs=1e-12)
    split = torch.arange(1200) // 6 % 4  # each content spread evenly over 4 codes
    assert conditional_entropy(split, patches) == pytest.approx(math.log(4), abs=1e-9)


@pytest.mark.slow
def test_tokenizer_and_arpg_losses_are_seeded_and_fall() -> None:
    first = train_modules(build_vq, vq_loss, seed=0, steps=1, settings=QUICK, log=lambda _: None).losses
    assert first == train_modules(build_vq, vq_loss, seed=0, steps=1, settings=QUICK, log=lambda _: None).losses
    vq_losses = train_modules(micro_vq_modules, vq_loss, seed=0, steps=30, settings=QUICK, log=lambda _: None).losses
    assert sum(vq_losses[-5:]) < 0.6 * sum(vq_losses[:5])
    vq = micro_vq()
    losses = train_modules(lambda: build_arpg(MICRO_ARPG), c2i_loss(vq), seed=0, steps=30, settings=QUICK,
                           log=lambda _: None).losses
    again = train_modules(lambda: build_arpg(MICRO_ARPG), c2i_loss(vq), seed=0, steps=2, settings=QUICK,
                          log=lambda _: None).losses
    assert again == losses[:2]
    assert sum(losses[-5:]) < 0.9 * sum(losses[:5])


def test_saved_models_load_through_the_nodes_and_edits_keep_the_known_tokens(models_dir: Path) -> None:
    arpg_path, vq_path = write_micro_arpg(models_dir)
    checkpoint = torch.load(arpg_path, weights_only=True)
    assert {"state_dict", "training"} <= set(checkpoint)
    assert set(torch.load(vq_path, weights_only=True)) == {"model", "training"}
    assert load_arpg(arpg_path)[0].config == MICRO_ARPG and load_vq(vq_path)[0].config == MICRO_VQ
    assert "micro-c2i.pt" in FlowARARPGLoader.INPUT_TYPES()["required"]["ckpt_name"][0]
    model = FlowARARPGLoader().load("micro-c2i.pt", "fp32")[0]
    vq = FlowARVQTokenizerLoader().load("micro-vq.pt", "fp32")[0]
    options = dict(seed=3, steps=4, schedule="arccos", cfg=4.0, cfg_schedule="linear", temperature=1.0, top_k=0,
                   top_p=1.0, batch_size=1, class_index=2)
    image, tokens = FlowARARPGSampler().sample(model, vq, **options)
    assert image.shape == (1, 32, 32, 3) and torch.equal(image, FlowARARPGSampler().sample(model, vq, **options)[0])
    mask = FlowARRegionMask().make(image, "right", 0.5)[0]
    _, completed = FlowARARPGSampler().sample(model, vq, **options, image=image, mask=mask)
    source = vq.patcher.model.encode_indices(image.permute(0, 3, 1, 2) * 2 - 1)  # (1, 8, 8) the node's encoding
    assert torch.equal(completed.tokens[..., :4], source[..., :4])


def test_editing_cases_take_classes_in_turn_with_an_object_in_the_centre() -> None:
    cases = arpg_eval.edit_cases(30)
    assert [case.class_index for case in cases] == [k % len(CLASS_NAMES) for k in range(30)]
    assert all(any(x0 < 24 and x1 > 8 and y0 < 24 and y1 > 8 for x0, y0, x1, y1 in (o.bbox for o in case.objects))
               for case in cases)
    assert min(case.seed for case in cases) >= arpg_eval.EDIT_SEED
    inpaint, outpaint = (arpg_eval.known_positions(edit, 8) for edit in arpg_eval.EDITS)
    assert int((~inpaint).sum()) == 16 and not inpaint[2:6, 2:6].any()  # the centre 4x4 regenerated
    assert int(outpaint.sum()) == 36 and outpaint[1:7, 1:7].all()  # the centre 6x6 kept, the ring of 28 regenerated


def test_evaluation_settings_are_those_of_the_built_in_workflows() -> None:
    """What is measured is what the shipped ARPG workflows run (the node's own defaults stay the official ones)."""
    parallel = arpg_eval.PARALLEL
    names = ["seed", "control", "steps", "schedule", "cfg", "cfg_schedule", "temperature", "top_k", "top_p"]
    expected = sampler_inputs(parallel)  # steps, schedule, cfg, cfg_schedule, temperature, top_k, top_p
    samplers = [node for path in sorted(WORKFLOWS.glob("arpg_*.json"))
                for node in json.loads(path.read_text())["nodes"] if node["type"] == "FlowARARPGSampler"]
    assert len(samplers) == 6  # class-to-image, reward ranking; source and editor in inpainting and outpainting
    for node in samplers:
        widgets = dict(zip(names, node["widgets_values"]))
        assert {name: widgets[name] for name in expected} == expected
    assert parallel.steps == arpg_eval.BUILTIN_STEPS == SHAPES_ARPG.block_size // 4  # 4 tokens per step
    assert arpg_eval.RASTER == replace(parallel, schedule="raster", temperature=1.0)


@pytest.mark.slow
@pytest.mark.parametrize("script", ["arpg_vq", "arpg_c2i"])
def test_training_scripts_run_from_the_repository_root(script: str, tmp_path: Path) -> None:
    extra = []
    if script == "arpg_c2i":  # an untrained tokenizer of the shipped shape: the script checks nothing of its quality
        extra = ["--vq", str(save_vq(VQModel(SHAPES_VQ).eval(), tmp_path / "vq.pt", {}))]
    out = tmp_path / "out" / "model.pt"
    result = subprocess.run([sys.executable, "-m", f"flowar.train.{script}", "--out", str(out), "--steps", "2",
                             "--batch-size", "4", *extra], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and out.with_suffix(".json").is_file()
