"""The paper's networks at their real size without their weights (``components.build_from_configs`` on
``params/sd14``, Stable Diffusion 1.4's published configurations): built on the meta device (no memory), their
parameter counts are the published ones, so a wrong configuration cannot pass; and what the builder returns is what
the paper profile's code path gets from a local Stable Diffusion folder (``build_components`` on the tiny
``stable_diffusion_dir``): the same component types, configuration keys and wiring, and at the tiny size the very
same networks, which the training module runs."""
import json

import pytest
import torch
from diffusers import DDPMScheduler, StableDiffusionControlNetPipeline

from lib.generator import components as cm
from lib.generator import sampling, training

# published sizes (parameters) of Stable Diffusion 1.4's networks and of the ControlNet the paper trains on it
PUBLISHED = {"unet": 859.5e6, "vae": 83.7e6, "text_encoder": 123.1e6, "controlnet": 361e6}
TOLERANCE = 0.005
NETWORKS = tuple(PUBLISHED)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _public(config) -> dict:
    """A configuration's own keys as its JSON file holds them (lists, not tuples)."""
    return json.loads(json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}))


@pytest.fixture(scope="module")
def paper_size():
    with torch.device("meta"):  # shapes only: ~1.4 G parameters, no memory
        return cm.build_from_configs()


@pytest.fixture(scope="module")
def loaded(stable_diffusion_dir):
    """What the paper profile's path builds from a local Stable Diffusion folder (here the tiny one)."""
    return cm.build_components({"pretrained": str(stable_diffusion_dir), "resolution": 32})


def test_the_networks_have_the_published_parameter_counts(paper_size):
    counts = {name: _count(getattr(paper_size, name)) for name in NETWORKS}
    print("parameters:", json.dumps(counts))
    for name, published in PUBLISHED.items():
        assert abs(counts[name] / published - 1) < TOLERANCE, f"{name}: {counts[name]:,} parameters, " \
                                                               f"published {published:,.0f}"
        assert all(p.is_meta for p in getattr(paper_size, name).parameters()), name
    # the ControlNet is diffusers' from_unet of that UNet on the RGB landmark image, as params/sd14 records it
    recorded = json.loads((cm.SD14_CONFIGS / "controlnet" / "config.json").read_text())
    assert _public(paper_size.controlnet.config) == _public(recorded)
    assert paper_size.controlnet.config.conditioning_channels == 3
    # the published scheduler configuration is the schedule the project trains on (noise_scheduler)
    published = json.loads((cm.SD14_CONFIGS / "scheduler" / "scheduler_config.json").read_text())
    for key in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "steps_offset", "clip_sample"):
        assert paper_size.scheduler.config[key] == published[key], key


def test_the_stand_in_tokenizer_has_clips_size(paper_size):
    tok, enc = paper_size.tokenizer, paper_size.text_encoder
    assert len(tok) == enc.config.vocab_size == 49408 and tok.model_max_length == 77
    assert (tok.bos_token_id, tok.eos_token_id) == (49406, 49407)  # CLIP's ids
    ids = tok(["a watercolour portrait, pencil sketch", ""], padding="max_length", max_length=tok.model_max_length,
              truncation=True).input_ids
    assert all(len(row) == 77 for row in ids) and max(max(row) for row in ids) < enc.config.vocab_size
    assert ids[0][1] == 320  # "a</w>": a single byte's token keeps CLIP's id
    long = tok(["face " * 200], padding="max_length", max_length=77, truncation=True).input_ids[0]
    assert len(long) == 77 and long[-1] == tok.eos_token_id


def test_the_builder_gives_what_the_paper_path_gives(paper_size, loaded):
    """The same kinds of parts, configured by the same keys and wired alike, as the paper profile's own path."""
    for field in ("vae", "unet", "controlnet", "text_encoder", "tokenizer", "scheduler"):
        assert type(getattr(paper_size, field)) is type(getattr(loaded, field)), field
    assert isinstance(paper_size.scheduler, DDPMScheduler)
    assert paper_size.conditioning == loaded.conditioning == "controlnet"
    assert paper_size.style_prompts is loaded.style_prompts is None
    for name in ("vae", "unet", "controlnet"):
        assert set(_public(getattr(paper_size, name).config)) == set(_public(getattr(loaded, name).config)), name
    assert type(paper_size.text_encoder.config) is type(loaded.text_encoder.config)
    assert _public(paper_size.scheduler.config) == _public(loaded.scheduler.config)
    for c in (paper_size, loaded):
        assert c.unet.config.cross_attention_dim == c.text_encoder.config.hidden_size
        assert c.controlnet.config.block_out_channels == c.unet.config.block_out_channels
        assert c.controlnet.config.cross_attention_dim == c.unet.config.cross_attention_dim
        assert len(c.controlnet.config.conditioning_embedding_out_channels) == \
            len(c.vae.config.block_out_channels)  # the landmark image is brought down to the latent grid
        assert c.vae.config.latent_channels == c.unet.config.in_channels == 4
        assert not c.text_encoder.training and not c.unet.training and not c.vae.training  # as from_pretrained
    assert paper_size.vae.config.scaling_factor == 0.18215
    assert cm.vae_scale_factor(paper_size.vae) == 8 and paper_size.unet.config.sample_size == 64


def test_from_the_configs_of_a_stable_diffusion_folder_the_networks_are_the_loaded_ones(stable_diffusion_dir, loaded):
    """On the tiny folder's configurations the builder makes networks with exactly the parameters (names, shapes)
    that the paper path loads, a tokenizer that gives the same ids, and parts the training module and the sampler
    run."""
    torch.manual_seed(0)
    built = cm.build_from_configs(stable_diffusion_dir, {"resolution": 32})
    for name in NETWORKS:
        a, b = getattr(built, name).state_dict(), getattr(loaded, name).state_dict()
        assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}, name
    prompts = ["a pencil sketch of a face", ""]
    assert built.tokenizer.model_max_length == loaded.tokenizer.model_max_length
    assert built.tokenizer(prompts, truncation=True).input_ids == loaded.tokenizer(prompts, truncation=True).input_ids
    # a forward pass of what stage 1 trains (training.LandmarkDiffusion: ControlNet into the frozen UNet)
    f = cm.vae_scale_factor(built.vae)
    text = cm.encode_prompts(built.tokenizer, built.text_encoder, prompts)
    assert text.shape == (2, built.tokenizer.model_max_length, built.unet.config.cross_attention_dim)
    rng = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 32 // f, 32 // f, generator=rng)
    cond = torch.rand(2, 3, 32, 32, generator=rng)
    net = training.LandmarkDiffusion(built.unet, built.controlnet, f)
    with torch.no_grad():
        pred = net(latents, torch.tensor([10, 500]), text, cond)
    assert pred.shape == latents.shape and torch.isfinite(pred).all()
    assert isinstance(sampling.make_pipeline(built), StableDiffusionControlNetPipeline)


def test_a_folder_without_the_configurations_is_named(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(FileNotFoundError, match="unet/config.json, vae/config.json, text_encoder/config.json"):
        cm.build_from_configs(tmp_path)
    with pytest.raises(ValueError, match="ControlNet"):
        cm.build_from_configs(cm.SD14_CONFIGS, {"conditioning": "concat"})
