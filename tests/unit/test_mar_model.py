"""MAR transformer, diffusion MLP, diffusion schedules/steps and KL-16 VAE against the fixtures; release key lists.

Names, shapes and cases come from each fixture case's ``config.json`` and tensor names.
"""

from __future__ import annotations

import re

import pytest
import torch
from support.fixtures import REPO_ROOT, case_params
from support.mar_fixtures import fixture_mar, within

from flowar.models.checkpoint import load_checkpoint
from flowar.models.kl16 import AutoencoderKL, KL16Config
from flowar.models.mar import MAR, MARConfig
from flowar.models.mar_release import RELEASED_HEADS, load_kl16
from flowar.samplers.mar.diffusion import cosine_betas, diffusion_schedule, guided_output, p_sample

KEY_FILE = REPO_ROOT.parent / "shared" / "research" / "keys" / "mar_released.md"


def cases_with(key: str) -> list:
    params = case_params("mar")
    return [p for p in params if p.values[0] is None or key in p.values[0].config]


def mar_cases() -> list:
    return [p for p in cases_with("constructor") if p.values[0] is None or "use_key" in p.values[0].config["checkpoint"]]


def vae_cases() -> list:
    return cases_with("latent_scale")


# ------------------------------------------------------------------------------------------------ release keys

def released_sections() -> list[tuple[str, dict, dict[str, tuple[int, ...]], int, int]]:
    """(name, header numbers, block-0 key shapes, entries, params) for every MAR release in the key list."""
    sections = re.split(r"^## ", KEY_FILE.read_text(), flags=re.M)[1:]
    found = []
    for section in sections:
        title = section.splitlines()[0]
        if not title.startswith("mar_"):
            continue
        header = {k: int(v) for k, v in re.findall(r"(diffloss_[dw])=(\d+)", title)}
        shapes = {m.group(1): tuple(int(x) for x in m.group(2).split(",") if x.strip())
                  for m in re.finditer(r"^(\S+) \(([\d, ]*)\)$", section, flags=re.M)}
        entries = int(re.search(r"state_dict entries (\d+)", section).group(1))
        params = int(re.search(r"params total (\d+)", section).group(1))
        found.append((title.split()[0], header, shapes, entries, params))
    return found


@pytest.mark.parametrize("release", released_sections(), ids=lambda r: r[0])
def test_mar_release_keys_fit_the_model_built_from_their_shapes(release) -> None:
    """Build the model from the listed shapes (as the loader does from a file) and compare every key and count."""
    name, header, shapes, entries, params = release
    width = shapes["class_emb.weight"][1]
    depth = {"mar_base": 12, "mar_large": 16, "mar_huge": 20}[name]
    config = MARConfig(width, depth, RELEASED_HEADS[width], width, depth, RELEASED_HEADS[width],
                       diffloss_d=header["diffloss_d"], diffloss_w=header["diffloss_w"])
    with torch.device("meta"):
        model = MAR(config)
    ours = model.state_dict()
    collapsed = {re.sub(r"(blocks\.)\d+\.", r"\g<1>0.", key) for key in ours}
    assert collapsed == set(shapes)
    for key, value in ours.items():
        assert tuple(value.shape) == shapes[re.sub(r"(blocks\.)\d+\.", r"\g<1>0.", key)], key
    assert len(ours) == entries and sum(v.numel() for v in ours.values()) == params


def test_kl16_release_keys_load_strictly() -> None:
    section = KEY_FILE.read_text().split("## KL-16 VAE")[1]
    shapes = {m.group(1): tuple(int(x) for x in m.group(2).split(",") if x.strip())
              for m in re.finditer(r"^(\S+) \(([\d, ]*)\)$", section, flags=re.M)}
    with torch.device("meta"):
        vae = AutoencoderKL(KL16Config())
    assert {k: tuple(v.shape) for k, v in vae.state_dict().items()} == shapes
    assert sum(v.numel() for v in vae.state_dict().values()) == int(re.search(r"params (\d+)", section).group(1))


# ------------------------------------------------------------------------------------------------ forward parity

@pytest.mark.parametrize("case", mar_cases())
def test_mar_transformer_forward_matches_fixture(case) -> None:
    tensors, tol = case.tensors, case.config["tolerances"]
    if "fwd.tokens" not in tensors:
        pytest.skip(f"{case.name} records no forward")
    model = fixture_mar(case)
    groups = sorted({name.split(".")[1] for name in tensors if name.startswith("fwd.") and name.count(".") >= 2})
    assert groups
    with torch.no_grad():
        for group in groups:
            labels = None if group == "uncond" else tensors["fwd.labels"]  # uncond: the learned null class
            batch = tensors["fwd.labels"].shape[0]
            masked = group == "allmasked"
            mask = torch.ones_like(tensors["fwd.mask"]) if masked else tensors["fwd.mask"]
            tokens = torch.zeros_like(tensors["fwd.tokens"]) if masked else tensors["fwd.tokens"]
            class_rows = model.class_embedding(labels, batch)
            encoded = model.encode(tokens, mask, class_rows)
            ours = {"class_embedding": class_rows, "encoder_out": encoded, "z": model.decode(encoded, mask)}
            for name, value in ours.items():
                key = f"fwd.{group}.{name}"
                if key in tensors:
                    torch.testing.assert_close(value, tensors[key], atol=tol["fwd_atol"], rtol=tol["fwd_rtol"],
                                               msg=key)


@pytest.mark.parametrize("case", mar_cases())
def test_diffusion_mlp_and_its_guided_form_match_fixture(case) -> None:
    tensors, tol = case.tensors, case.config["tolerances"]
    if "net.out" not in tensors:
        pytest.skip(f"{case.name} records no MLP call")
    model = fixture_mar(case)
    with torch.no_grad():
        out = model.denoise(tensors["net.x"], tensors["net.t"], tensors["net.c"])
        torch.testing.assert_close(out, tensors["net.out"], atol=tol["net_atol"], rtol=tol["net_rtol"])
        if "cfg.out" in tensors:
            half = tensors["cfg.x"].shape[0] // 2
            x = tensors["cfg.x"][:half]
            raw = model.denoise(torch.cat([x, x]), tensors["cfg.t"], tensors["cfg.c"])
            guided = guided_output(raw, x.shape[1], tensors["cfg.scale"].item())
            torch.testing.assert_close(guided, tensors["cfg.out"][:half], atol=tol["net_atol"], rtol=tol["net_rtol"])
            # the official second half: guided eps again, the unconditional model's variance values
            torch.testing.assert_close(raw[half:, x.shape[1]:], tensors["cfg.out"][half:, x.shape[1]:],
                                       atol=tol["net_atol"], rtol=tol["net_rtol"])


# ------------------------------------------------------------------------------------------------ diffusion

@pytest.mark.parametrize("case", mar_cases())
def test_diffusion_schedules_match_fixture(case) -> None:
    tensors = case.tensors
    prefixes = sorted({name.split(".")[0] for name in tensors if name.startswith("sched")})
    if not prefixes:
        pytest.skip(f"{case.name} records no schedules")
    rtol = case.config["tolerances"]["schedule_rtol"]
    for prefix in prefixes:
        steps = int(prefix[len("sched"):])
        if steps == 1000 and f"{prefix}.timestep_map" not in tensors:
            torch.testing.assert_close(cosine_betas(), tensors[f"{prefix}.betas"], rtol=rtol, atol=0)
            torch.testing.assert_close(torch.cumprod(1 - cosine_betas(), 0), tensors[f"{prefix}.alphas_cumprod"],
                                       rtol=rtol, atol=0)
            continue
        schedule = diffusion_schedule(steps)
        for name in [n for n in tensors if n.startswith(prefix + ".")]:
            ours = getattr(schedule, name.split(".", 1)[1])
            if ours.dtype == torch.int64:
                assert torch.equal(ours, tensors[name]), name
            else:
                torch.testing.assert_close(ours, tensors[name], rtol=rtol, atol=1e-300, msg=name)


@pytest.mark.parametrize("case", mar_cases())
def test_single_diffusion_steps_match_fixture(case) -> None:
    tensors = case.tensors
    rel = 1e-5  # CASES.md: max|a-b| <= 1e-5 * max(1, max|expected|)
    steps = case.config.get("step_cases", [])
    if not steps:
        pytest.skip(f"{case.name} records no single steps")
    model = fixture_mar(case)
    for prefix in steps:
        get = lambda name: tensors[f"{prefix}.{name}"]  # noqa: E731
        schedule = diffusion_schedule(int(re.match(r"step\.s(\d+)\.", prefix).group(1)))
        index = int(get("t_index")[0])
        assert torch.equal(schedule.timestep_map[get("t_index")], get("t_orig"))
        x = get("x_t")
        with torch.no_grad():
            if prefix.endswith(".cfg"):
                half = x.shape[0] // 2
                raw = model.denoise(torch.cat([x[:half], x[:half]]), get("t_orig"), get("c"))
                output = guided_output(raw, x.shape[1], get("cfg_scale").item())
                x, rows = x[:half], slice(0, half)
            else:
                output = model.denoise(x, get("t_orig"), get("c"))
                rows = slice(None)
            step = p_sample(output, x, index, schedule, get("noise")[rows], get("temperature").item())
        within(output, get("model_output")[rows], rel, f"{prefix}.model_output")
        for name in ("pred_xstart", "mean", "log_variance", "sample"):
            within(getattr(step, name), get(name)[rows], rel, f"{prefix}.{name}")


# ------------------------------------------------------------------------------------------------ VAE

@pytest.mark.parametrize("case", vae_cases())
def test_kl16_vae_matches_fixture(case) -> None:
    tensors, tol = case.tensors, case.config["tolerances"]
    path = case.path / case.config["checkpoint"]["file"]
    state_dict = load_checkpoint(path, "kl16")
    vae = AutoencoderKL(KL16Config.from_params(case.config["constructor"])).eval()
    vae.load_state_dict(state_dict, strict=True)
    check = lambda a, name: torch.testing.assert_close(a, tensors[name], atol=tol["atol"], rtol=tol["rtol"])  # noqa
    with torch.no_grad():
        mean, logvar = vae.encode_moments(tensors["image"])
        check(vae.encoder(tensors["image"]), "encoder_out")
        check(mean, "posterior_mean")
        check(logvar, "posterior_logvar")
        check(vae.decode_tokens(tensors["mar_tokens"]), "decoded")
    assert case.config["latent_scale"] == pytest.approx(0.2325)


def test_kl16_loader_needs_a_config_for_non_release_shapes(tmp_path) -> None:
    from support.checkpoints import write_model_container

    from flowar.models.checkpoint import CheckpointError

    config = KL16Config(embed_dim=4, ch_mult=(1, 1), ch=32, num_res_blocks=1, resolution=32)
    state_dict = AutoencoderKL(config).state_dict()
    path = write_model_container(tmp_path / "kl.ckpt", state_dict)
    with pytest.raises(CheckpointError, match="matches no known release configuration"):
        load_kl16(path)
    write_model_container(path, state_dict, {"embed_dim": 4, "ch_mult": [1, 1], "ch": 32, "num_res_blocks": 1,
                                             "resolution": 32})
    vae, source = load_kl16(path)
    assert source.endswith("kl.json") and vae.config.embed_dim == 4
