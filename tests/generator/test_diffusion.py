"""The landmark-guided diffusion model on tiny components: the small-profile path
(autoencoder + UNet from config + the packaged sentence encoder) and the paper path
(a Stable Diffusion folder in diffusers layout, here a tiny random one)."""
import json

import numpy as np
import pytest
import torch
from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

from lib.generator import autoencoder as ae
from lib.generator import components, sampling, training
from lib.generator.condition import PARTS
from lib.generator.pairs import PairSet
from lib.generator.precision import autocast
from lib.data.procedural import render_face

RES = 32
MODEL = {"resolution": RES, "max_prompt_tokens": 8,
         "unet": {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8,
                  "attention_head_dim": 8, "attention_levels": [1]}}


@pytest.fixture(scope="module")
def pairs():
    faces = [render_face(i, "photo", RES) for i in range(8)]
    p = PairSet([], RES)
    p.images = np.array([f.image for f in faces])
    p.points = np.array([f.landmarks for f in faces])
    p.prompts = ["a portrait of cartoon style", ""] * 4
    return p


@pytest.fixture(scope="module")
def autoencoder_dir(tmp_path_factory, pairs):
    out = tmp_path_factory.mktemp("ae")
    ae.train(pairs.images, pairs.images[:2], {"block_out_channels": [8, 16, 16], "latent_channels": 4,
                                              "norm_num_groups": 8, "resolution": RES},
             ae.AutoencoderTrainConfig(steps=2, batch_size=4, checkpoint_every=2, threads=1), out, progress=False)
    return out


CFG = training.TrainConfig(steps=4, batch_size=4, lr=1e-3, train_unet=True, prompt_dropout=0.5, checkpoint_every=2,
                           sample_every=4, sample_steps=2, threads=1)


def test_controlnet_starts_with_zero_residuals(autoencoder_dir):
    c = components.build_components(MODEL, autoencoder_dir)
    x = torch.randn(2, 4, RES // 4, RES // 4)
    text = components.encode_prompts(c.tokenizer, c.text_encoder, ["", "a portrait of ink drawing style"])
    assert text.shape == (2, 8, 384)  # the packaged all-MiniLM-L6-v2 token states
    with torch.no_grad():
        down, mid = c.controlnet(x, torch.tensor([10, 500]), text,
                                 components.condition_tensor(np.zeros((2, 68, 2)) + 16, RES), return_dict=False)
    assert all(float(d.abs().max()) == 0 for d in down) and float(mid.abs().max()) == 0


def test_train_save_load_generate(tmp_path, autoencoder_dir, pairs):
    c = components.build_components(MODEL, autoencoder_dir)
    before = {k: v.clone() for k, v in c.controlnet.state_dict().items()}
    preview = (pairs.points[:2], ["", "a portrait of cartoon style"], [0, 1])
    h = training.train(pairs, c, CFG, tmp_path / "g", MODEL, preview=preview, progress=False)
    assert len(h.history) == 4 and np.isfinite(h.history["loss"]).all()
    assert any(not torch.equal(before[k], v) for k, v in c.controlnet.state_dict().items())
    assert (tmp_path / "g" / "samples" / "step_0000004.png").exists()
    # diffusers' own pipeline loads the folder
    pipe = StableDiffusionControlNetPipeline.from_pretrained(str(tmp_path / "g"), local_files_only=True)
    assert isinstance(pipe.controlnet, ControlNetModel)
    pipe = sampling.load_generator(tmp_path / "g")
    a = sampling.generate(pipe, pairs.points[:3], pairs.prompts[:3], [5, 6, 7], RES, steps=2)
    b = sampling.generate(pipe, pairs.points[1:3], pairs.prompts[1:3], [6, 7], RES, steps=2, batch_size=1)
    c2 = sampling.generate(pipe, pairs.points[:1], pairs.prompts[:1], [99], RES, steps=2)
    assert a.shape == (3, RES, RES, 3) and a.dtype == np.uint8
    assert np.abs(a[1:].astype(int) - b).max() <= 2  # same seed, other batch: the same face (up to rounding)
    assert np.abs(a[0].astype(int) - c2[0]).mean() > 1  # another seed: another face
    # under bf16 autocast: the same faces up to the precision's rounding
    half = sampling.generate(pipe, pairs.points[:3], pairs.prompts[:3], [5, 6, 7], RES, steps=2, mixed_precision="bf16")
    assert half.shape == a.shape and half.dtype == np.uint8
    assert 0 < np.abs(half.astype(int) - a).mean() < 8


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, autoencoder_dir, pairs):
    torch.manual_seed(0)
    full = components.build_components(MODEL, autoencoder_dir)
    training.train(pairs, full, CFG, tmp_path / "full", MODEL, progress=False)
    part = components.build_components(MODEL, autoencoder_dir)
    training.train(pairs, part, CFG, tmp_path / "part", MODEL, stop_at=2, progress=False)
    assert not (tmp_path / "part" / "generator.json").exists()
    # a fresh process: new random init, then the checkpoint
    resumed = components.build_components(MODEL, autoencoder_dir)
    training.train(pairs, resumed, CFG, tmp_path / "part", MODEL, progress=False)
    for (k, a), b in zip(full.controlnet.state_dict().items(), resumed.controlnet.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), k


def test_a_finished_generator_trained_again_is_left_as_it_is(tmp_path, autoencoder_dir, pairs):
    """A call that finds the model finished (0 steps: a notebook's single process after ``lib.launch`` on
    several) keeps the saved generator byte for byte: saving it again would rewrite generator.json's
    "processes" and the tokenizer files, and stage 2's resume settings hold a fingerprint of that folder."""
    out, preview = tmp_path / "g", (pairs.points[:2], ["", "a portrait of cartoon style"], [0, 1])
    training.train(pairs, components.build_components(CONCAT, autoencoder_dir), CFG, out, CONCAT, preview=preview,
                   progress=False)
    info = json.loads((out / "generator.json").read_text())
    (out / "generator.json").write_text(json.dumps({**info, "processes": 2}, indent=2))  # as a 2-process launch saves it

    def files():
        return {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}
    before = files()
    assert "generator.json" in before and "checkpoints/last.safetensors" in before and len(before) > 10
    again = training.train(pairs, components.build_components(CONCAT, autoencoder_dir), CFG, out, CONCAT,
                           preview=preview, progress=False)
    assert again.finished and again.steps_run == 0
    assert files() == before


def test_pairset_reads_prompts_from_a_synthetic_manifest(tmp_path):
    from lib.data import datasets as ds
    from lib.generator import synthesis
    f = render_face(1, "photo", 64)
    ds.save_image(tmp_path / "s" / "a.jpg", f.image)
    ds.write_pts(tmp_path / "s" / "a.pts", f.landmarks)
    synthesis.write_manifest(tmp_path, [{"image": "s/a.jpg", "style": "ink drawing", "prompt": "a portrait of ink drawing style",
                                         "edits": "", "seed": 1, "source": "x"}])
    p = PairSet(ds.read_dataset(tmp_path, "synthetic"), RES, prompt=None)
    assert p.prompts == ["a portrait of ink drawing style"] and p.images.shape == (1, RES, RES, 3)
    from lib.core import crop as cr
    _, _, expected = cr.crop(f.image, cr.Box(31.5, 31.5, 64.0), RES, ds.read_pts(tmp_path / "s" / "a.pts"))
    assert np.allclose(p.points, expected) and np.allclose(p.points * 2, f.landmarks, atol=1.0)


# ------------------------------------------------------------------ concat conditioning (the small profiles' choice)

CONCAT = {**MODEL, "conditioning": "concat", "unet": {**MODEL["unet"], "addition_embed_type": "text"}}


def test_concat_unet_takes_the_part_channels_folded_to_the_latent_grid(autoencoder_dir):
    c = components.build_components(CONCAT, autoencoder_dir)
    assert c.controlnet is None and c.conditioning == "concat"
    f = components.vae_scale_factor(c.vae)
    assert c.unet.config.in_channels == c.vae.config.latent_channels + len(PARTS) * f * f
    cond = components.condition_tensor(np.zeros((2, 68, 2)) + RES / 2, RES, "concat")
    assert cond.shape == (2, len(PARTS), RES, RES)
    x = components.concat_input(torch.zeros(2, 4, RES // f, RES // f), cond, f)
    # lossless: unfolding the extra channels gives back the part images
    assert torch.equal(torch.nn.functional.pixel_shuffle(x[:, 4:], f), cond)


def test_concat_generator_trains_saves_and_loads_with_diffusers(tmp_path, autoencoder_dir, pairs):
    c = components.build_components(CONCAT, autoencoder_dir)
    before = {k: v.clone() for k, v in c.unet.state_dict().items()}
    cfg = training.TrainConfig(**{**CFG.__dict__, "snr_gamma": 5.0, "ema_decay": 0.99})
    h = training.train(pairs, c, cfg, tmp_path / "g", CONCAT, progress=False)
    assert np.isfinite(h.history["loss"]).all()
    assert any(not torch.equal(before[k], v) for k, v in c.unet.state_dict().items())
    index = json.loads((tmp_path / "g" / "model_index.json").read_text())
    assert index["_class_name"] == "LandmarkPipeline" and "controlnet" not in index
    pipe = sampling.LandmarkPipeline.from_pretrained(str(tmp_path / "g"), local_files_only=True)  # diffusers' loader
    assert pipe.unet.config.addition_embed_type == "text"
    pipe = sampling.load_generator(tmp_path / "g")
    a = sampling.generate(pipe, pairs.points[:3], pairs.prompts[:3], [5, 6, 7], RES, steps=2)
    b = sampling.generate(pipe, pairs.points[1:3], pairs.prompts[1:3], [6, 7], RES, steps=2, batch_size=1)
    assert a.shape == (3, RES, RES, 3) and np.abs(a[1:].astype(int) - b).max() <= 2
    # the condition reaches the output: other landmarks, same seed and prompt, another face
    moved = sampling.generate(pipe, pairs.points[:1] * 0.6 + 4, pairs.prompts[:1], [5], RES, steps=2)
    assert np.abs(a[0].astype(int) - moved[0]).max() > 0
    assert sampling.load_components(tmp_path / "g").conditioning == "concat"


def test_guidance_rescale_and_interval_are_options_of_the_landmark_pipeline(autoencoder_dir, pairs):
    torch.manual_seed(0)
    c = components.build_components(CONCAT, autoencoder_dir)
    pipe = sampling.make_pipeline(c)
    args = (pipe, pairs.points[:2], ["a portrait of cartoon style"] * 2, [3, 4], RES)
    plain = sampling.generate(*args, steps=3, guidance=3.0)
    assert np.array_equal(plain, sampling.generate(*args, steps=3, guidance=3.0, guidance_rescale=0.0,
                                                   guidance_min_timestep=0))  # the defaults are plain guidance
    # guidance only at timesteps above every sampled one: the conditional prediction alone, as without guidance
    unguided = sampling.generate(*args, steps=3, guidance=1.0)
    interval = sampling.generate(*args, steps=3, guidance=3.0, guidance_min_timestep=1000)
    assert np.abs(interval.astype(int) - unguided).max() <= 2 and np.abs(interval.astype(int) - plain).max() > 2
    # rescaling toward the conditional prediction's spread changes the drawing
    assert np.abs(sampling.generate(*args, steps=3, guidance=3.0, guidance_rescale=1.0).astype(int) - plain).max() > 0
    with pytest.raises(ValueError, match="guidance_rescale"):
        sampling.generate(*args, steps=3, guidance=3.0, guidance_rescale=1.5)
    controlnet = sampling.make_pipeline(components.build_components(MODEL, autoencoder_dir))
    with pytest.raises(ValueError, match="concat generator"):
        sampling.generate(controlnet, *args[1:], steps=3, guidance=3.0, guidance_min_timestep=500)


def test_style_embeddings_learn_one_vector_per_style_save_load_and_resume(tmp_path, autoencoder_dir, pairs):
    c = components.build_components(CONCAT, autoencoder_dir)
    assert c.unet.class_embedding is None and components.style_labels(c.style_prompts, ["x"]) is None
    # plain training first (stage 1), then a stage with style embeddings from it (stage 2)
    training.train(pairs, c, CFG, tmp_path / "s1", CONCAT, progress=False)
    stage1 = sampling.generate(sampling.load_generator(tmp_path / "s1"), pairs.points[:2],
                               ["a portrait of cartoon style"] * 2, [1, 2], RES, steps=2)
    c = sampling.load_components(tmp_path / "s1")
    assert c.style_prompts is None
    cfg = training.TrainConfig(**{**CFG.__dict__, "style_embeddings": True, "ema_decay": 0.9})
    components.add_style_embeddings(c, pairs.prompts)  # zero-initialised: the generator draws what it drew before
    assert c.style_prompts == ["a portrait of cartoon style"] and c.unet.config.num_class_embeds == 2
    same = sampling.generate(sampling.make_pipeline(c), pairs.points[:2], ["a portrait of cartoon style"] * 2, [1, 2],
                             RES, steps=2)
    assert np.abs(same.astype(int) - stage1).max() <= 1
    c = sampling.load_components(tmp_path / "s1")
    training.train(pairs, c, training.TrainConfig(**{**cfg.__dict__}), tmp_path / "s2", CONCAT, init=tmp_path / "s1",
                   stop_at=2, progress=False)
    c = sampling.load_components(tmp_path / "s1")  # a fresh process resumes from the checkpoint
    training.train(pairs, c, cfg, tmp_path / "s2", CONCAT, init=tmp_path / "s1", progress=False)
    assert float(c.unet.class_embedding.weight[1].detach().abs().max()) > 0  # the style's vector learned
    assert float(c.unet.class_embedding.weight[0].detach().abs().max()) > 0  # and the empty prompt's (dropout 0.5)
    index = json.loads((tmp_path / "s2" / "model_index.json").read_text())
    assert index["style_prompts"] == ["a portrait of cartoon style"]
    pipe = sampling.LandmarkPipeline.from_pretrained(str(tmp_path / "s2"), local_files_only=True)  # diffusers' loader
    assert pipe.config.style_prompts == ["a portrait of cartoon style"] and pipe.unet.config.num_class_embeds == 2
    labels = components.style_labels(pipe.config.style_prompts, ["", "a portrait of cartoon style", "unseen"])
    assert labels.tolist() == [0, 1, 0]
    assert sampling.load_components(tmp_path / "s2").style_prompts == ["a portrait of cartoon style"]
    # the style's vector reaches the output: same landmarks, seed and words, with and without it
    pipe = sampling.load_generator(tmp_path / "s2")
    styled = sampling.generate(pipe, pairs.points[:1], ["a portrait of cartoon style"], [3], RES, steps=2)
    pipe.unet.class_embedding.weight.data[1] = pipe.unet.class_embedding.weight.data[0]
    plain = sampling.generate(pipe, pairs.points[:1], ["a portrait of cartoon style"], [3], RES, steps=2)
    assert np.abs(styled.astype(int) - plain).max() > 0
    # the stage that added them resumes to the same weights as a run that did not stop
    c = sampling.load_components(tmp_path / "s1")
    training.train(pairs, c, cfg, tmp_path / "full", CONCAT, init=tmp_path / "s1", progress=False)
    a, b = (sampling.load_components(tmp_path / n).unet.state_dict() for n in ("s2", "full"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_style_embeddings_need_a_concat_generator_and_prompts(autoencoder_dir, pairs):
    with pytest.raises(ValueError, match="concat"):
        components.add_style_embeddings(components.build_components(MODEL, autoencoder_dir), pairs.prompts)
    with pytest.raises(ValueError, match="no non-empty prompt"):
        components.add_style_embeddings(components.build_components(CONCAT, autoencoder_dir), ["", ""])


def test_zero_terminal_snr_schedule_starts_from_pure_noise():
    sched = components.zero_terminal_snr(components.noise_scheduler("v_prediction"))
    assert float(sched.alphas_cumprod[-1]) == 0
    assert float(components.noise_scheduler("v_prediction").alphas_cumprod[-1]) > 0
    sampler = components.ddim(sched.config)
    sampler.set_timesteps(4)
    assert int(sampler.timesteps[0]) == 999  # trailing: the first sampling step is the pure-noise one
    # the one-step estimate at zero SNR is the velocity's own reading of the clean latents
    g = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([999, 400])
    noisy = sched.add_noise(clean, noise, t)
    assert torch.allclose(noisy[0], noise[0])
    assert torch.allclose(training.denoised(sched.get_velocity(clean, noise, t), noisy, t, sched), clean, atol=1e-4)
    assert float(training.diffusion_loss(noisy, noise, t, sched, snr_gamma=5.0)) >= 0  # no division by zero SNR
    with pytest.raises(ValueError, match="v_prediction"):
        components.zero_terminal_snr(components.noise_scheduler("epsilon"))


def test_a_stage_on_the_zero_terminal_snr_schedule_saves_it_with_its_generator(tmp_path, autoencoder_dir, pairs):
    model = {**CONCAT, "prediction_type": "v_prediction"}
    training.train(pairs, components.build_components(model, autoencoder_dir), CFG, tmp_path / "s1", model,
                   progress=False)
    cfg = training.TrainConfig(**{**CFG.__dict__, "zero_terminal_snr": True})
    training.train(pairs, sampling.load_components(tmp_path / "s1"), cfg, tmp_path / "s2", model, init=tmp_path / "s1",
                   progress=False)
    assert not sampling.load_generator(tmp_path / "s1").scheduler.config.rescale_betas_zero_snr
    pipe = sampling.load_generator(tmp_path / "s2")
    assert pipe.scheduler.config.rescale_betas_zero_snr and pipe.scheduler.config.timestep_spacing == "trailing"
    assert float(sampling.load_components(tmp_path / "s2").scheduler.alphas_cumprod[-1]) == 0  # a later stage keeps it
    images = sampling.generate(pipe, pairs.points[:2], ["a portrait of cartoon style"] * 2, [1, 2], RES, steps=2)
    assert images.shape == (2, RES, RES, 3) and np.isfinite(images.astype(float)).all()


def test_ema_generator_is_the_average_and_resumes_exactly(tmp_path, autoencoder_dir, pairs):
    from diffusers import UNet2DConditionModel
    cfg = training.TrainConfig(**{**CFG.__dict__, "ema_decay": 0.9, "sample_every": 100})
    torch.manual_seed(0)
    full = components.build_components(CONCAT, autoencoder_dir)
    training.train(pairs, full, cfg, tmp_path / "full", CONCAT, progress=False)
    # the saved UNet is the average, not the last weights: a run without EMA ends elsewhere
    torch.manual_seed(0)
    plain = components.build_components(CONCAT, autoencoder_dir)
    training.train(pairs, plain, training.TrainConfig(**{**cfg.__dict__, "ema_decay": None}), tmp_path / "plain",
                   CONCAT, progress=False)
    saved = UNet2DConditionModel.from_pretrained(tmp_path / "full" / "unet").state_dict()
    last = UNet2DConditionModel.from_pretrained(tmp_path / "plain" / "unet").state_dict()
    assert any(not torch.allclose(saved[k], last[k]) for k in saved)
    torch.manual_seed(0)
    part = components.build_components(CONCAT, autoencoder_dir)
    training.train(pairs, part, cfg, tmp_path / "part", CONCAT, stop_at=2, progress=False)
    # a fresh process: new random init, then the checkpoint
    resumed = components.build_components(CONCAT, autoencoder_dir)
    training.train(pairs, resumed, cfg, tmp_path / "part", CONCAT, progress=False)
    again = UNet2DConditionModel.from_pretrained(tmp_path / "part" / "unet").state_dict()
    assert all(torch.allclose(saved[k], again[k], atol=1e-5) for k in saved)


def test_concat_needs_a_trainable_unet_and_no_pretrained_base(autoencoder_dir, pairs, tmp_path):
    c = components.build_components(CONCAT, autoencoder_dir)
    with pytest.raises(ValueError, match="train_unet"):
        training.train(pairs, c, training.TrainConfig(**{**CFG.__dict__, "train_unet": False}), tmp_path / "g", CONCAT,
                       progress=False)
    with pytest.raises(ValueError, match="ControlNet"):
        components.build_components({"pretrained": str(tmp_path), "resolution": RES, "conditioning": "concat"})
    with pytest.raises(ValueError, match="known"):
        components.build_components({**MODEL, "conditioning": "adapter"}, autoencoder_dir)


def test_min_snr_weighting_matches_its_definition():
    sched = components.noise_scheduler()
    t = torch.tensor([10, 500, 990])
    pred, target = torch.ones(3, 2, 2, 2), torch.zeros(3, 2, 2, 2)
    assert torch.isclose(training.diffusion_loss(pred, target, t, sched), torch.tensor(1.0))
    alphas = sched.alphas_cumprod[t]
    snr = alphas / (1 - alphas)
    expected = (torch.clamp(snr, max=5.0) / snr).mean()
    assert torch.isclose(training.diffusion_loss(pred, target, t, sched, 5.0), expected.float(), rtol=1e-4)
    v = components.noise_scheduler("v_prediction")
    assert torch.isclose(training.diffusion_loss(pred, target, t, v, 5.0),
                         (torch.clamp(snr, max=5.0) / (snr + 1)).mean().float(), rtol=1e-4)


# ------------------------------------------------------------------ the paper's code path
# (the tiny Stable Diffusion folder: the `stable_diffusion_dir` fixture of tests/conftest.py)

def test_paper_path_trains_only_the_controlnet_and_saves_it_over_the_base(tmp_path, stable_diffusion_dir, pairs):
    model = {"pretrained": str(stable_diffusion_dir), "resolution": RES}
    c = components.build_components(model)
    assert c.base == str(stable_diffusion_dir.resolve())
    frozen = {k: v.clone() for k, v in c.unet.state_dict().items()}
    cfg = training.TrainConfig(steps=2, batch_size=2, lr=1e-3, train_unet=False, prompt_dropout=0.5, checkpoint_every=2,
                               sample_every=2, sample_steps=2, threads=1)
    training.train(pairs, c, cfg, tmp_path / "g", model, progress=False)
    assert all(torch.equal(frozen[k], v) for k, v in c.unet.state_dict().items())
    assert sorted(p.name for p in (tmp_path / "g").iterdir() if p.is_dir()) == ["checkpoints", "controlnet"]
    assert json.loads((tmp_path / "g" / "generator.json").read_text())["base"] == c.base
    pipe = sampling.load_generator(tmp_path / "g")
    img = sampling.generate(pipe, pairs.points[:2], ["a portrait of oil painting style", ""], [1, 2], RES, steps=2)
    assert img.shape == (2, RES, RES, 3)


def test_missing_base_and_single_file_without_config_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Stable Diffusion"):
        components.build_components({"pretrained": str(tmp_path / "nope"), "resolution": 64})
    (tmp_path / "sd.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="pretrained_config"):
        components.build_components({"pretrained": str(tmp_path / "sd.safetensors"), "resolution": 64})
    with pytest.raises(FileNotFoundError, match="generator.json"):
        sampling.load_generator(tmp_path)


@pytest.mark.parametrize("model", ["controlnet", "concat"])
def test_image_to_image_keeps_the_init_image_at_low_strength(tmp_path, autoencoder_dir, pairs, model):
    """Warp-first synthesis: noised to a small strength, the output stays near the init
    image; at strength 1 it ignores it (drawn from noise, as text-to-image)."""
    c = components.build_components(MODEL if model == "controlnet" else CONCAT, autoencoder_dir)
    training.train(pairs, c, training.TrainConfig(**{**CFG.__dict__, "steps": 1, "sample_every": 10}), tmp_path / "g",
                   MODEL if model == "controlnet" else CONCAT, progress=False)
    pipe = sampling.load_generator(tmp_path / "g")
    with torch.no_grad():  # a trained autoencoder's posterior is narrow (diffusers' img2img samples from it)
        pipe.vae.quant_conv.bias[pipe.vae.config.latent_channels:] -= 20
    init = pairs.images[:2]
    rec = ae.reconstruct(pipe.vae, init)  # what the latent space keeps of them
    pts, prompts = pairs.points[:2], pairs.prompts[:2]
    low = sampling.generate(pipe, pts, prompts, [1, 2], RES, steps=10, init_images=init, strength=0.1)
    full = sampling.generate(pipe, pts, prompts, [1, 2], RES, steps=10, init_images=init, strength=1.0)
    noise = sampling.generate(pipe, pts, prompts, [1, 2], RES, steps=10)
    err = lambda a: float(np.abs(a.astype(int) - rec).mean())  # noqa: E731
    assert low.shape == init.shape and err(low) < err(full) / 2
    assert abs(err(full) - err(noise)) < 5  # strength 1: as far from the init image as a face drawn from noise
    with pytest.raises(ValueError, match="init images"):
        sampling.generate(pipe, pts, prompts, [1, 2], RES, steps=2, init_images=init[:1], strength=0.5)


def test_edit_augmentation_trains_on_faces_warped_onto_edited_landmarks(pairs):
    from lib.generator.styles import tps_warp

    idx = np.arange(4)
    plain = training._batch(pairs, idx, training.TrainConfig(flip=0.0, seed=3), 0, "concat")
    x, cond, _, points = training._batch(pairs, idx, training.TrainConfig(flip=0.0, seed=3, edit_share=1.0), 0,
                                         "concat")
    np.testing.assert_array_equal(plain[3], pairs.points[idx])  # no share: the real pairs as they are
    moved = np.abs(points - pairs.points[idx]).max(axis=(1, 2))
    assert (moved > 0.5).all()  # every face edited, by more than half a pixel somewhere
    # the condition is drawn from the edited landmarks and the image is the face warped onto them
    assert torch.equal(cond, components.condition_tensor(points, RES, "concat"))
    warped = np.stack([tps_warp(pairs.images[i], pairs.points[i], points[k]) for k, i in enumerate(idx)])
    assert torch.allclose(x, torch.from_numpy(warped).permute(0, 3, 1, 2).float().div(127.5).sub(1))
    assert not torch.allclose(x, plain[0])


# ------------------------------------------------------------------ the landmark-consistency loss

@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_one_step_estimate_recovers_the_clean_latents(prediction_type):
    sched = components.noise_scheduler(prediction_type)
    g = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([10, 500, 990])
    noisy = sched.add_noise(clean, noise, t)
    target = noise if prediction_type == "epsilon" else sched.get_velocity(clean, noise, t)
    assert torch.allclose(training.denoised(target, noisy, t, sched), clean, atol=1e-4)


@pytest.fixture(scope="module")
def critic(tmp_path_factory):
    from lib.detector.critic import Critic
    from tests.detector.test_critic import make_critic
    return Critic(make_critic(tmp_path_factory.mktemp("critic") / "critic", RES))


def test_generator_trains_with_the_consistency_loss(tmp_path, autoencoder_dir, pairs, critic):
    c = components.build_components(CONCAT, autoencoder_dir)
    cfg = training.TrainConfig(**{**CFG.__dict__, "consistency_weight": 1.0, "consistency_max_timestep": 1000,
                                  "sample_every": 100})
    with pytest.raises(ValueError, match="critic"):
        training.train(pairs, c, cfg, tmp_path / "none", CONCAT, progress=False)
    h = training.train(pairs, c, cfg, tmp_path / "g", CONCAT, progress=False, critic=critic)
    assert np.isfinite(h.history["consistency"]).all() and (h.history["consistency"] > 0).all()
    # the loss changes what the UNet learns: same seed and data without it ends elsewhere
    torch.manual_seed(0)
    c2 = components.build_components(CONCAT, autoencoder_dir)
    torch.manual_seed(0)
    c3 = components.build_components(CONCAT, autoencoder_dir)
    training.train(pairs, c2, cfg, tmp_path / "with", CONCAT, progress=False, critic=critic)
    training.train(pairs, c3, training.TrainConfig(**{**cfg.__dict__, "consistency_weight": 0.0}),
                   tmp_path / "without", CONCAT, progress=False)
    a, b = c2.unet.state_dict(), c3.unet.state_dict()
    assert any(not torch.allclose(a[k], b[k]) for k in a)


def test_a_finer_latent_grid_is_a_setting_of_the_same_path(tmp_path, pairs, critic):
    # one autoencoder downsampling (the cpu profile's 32x32 latents at 64 px): the UNet, the folded part channels,
    # the critic's decoded estimate and the sampler all follow the autoencoder's factor
    vae_dir = tmp_path / "ae2"
    ae.train(pairs.images, pairs.images[:2], {"block_out_channels": [8, 16], "latent_channels": 4,
                                              "norm_num_groups": 8, "resolution": RES},
             ae.AutoencoderTrainConfig(steps=2, batch_size=4, checkpoint_every=2, threads=1), vae_dir, progress=False)
    c = components.build_components(CONCAT, vae_dir)
    assert components.vae_scale_factor(c.vae) == 2 and c.unet.config.sample_size == RES // 2
    assert c.unet.config.in_channels == 4 + len(PARTS) * 4
    cfg = training.TrainConfig(**{**CFG.__dict__, "consistency_weight": 1.0, "sample_every": 100, "edit_share": 0.5})
    h = training.train(pairs, c, cfg, tmp_path / "g", CONCAT, progress=False, critic=critic)
    assert np.isfinite(h.history["loss"]).all() and (h.history["consistency"] > 0).all()
    images = sampling.generate(sampling.load_generator(tmp_path / "g"), pairs.points[:2], pairs.prompts[:2], [0, 1],
                               RES, steps=2)
    assert images.shape == (2, RES, RES, 3)


def test_consistency_reaches_the_controlnet_of_the_paper_path(tmp_path, stable_diffusion_dir, pairs, critic):
    model = {"pretrained": str(stable_diffusion_dir), "resolution": RES}
    c = components.build_components(model)
    cfg = training.TrainConfig(steps=2, batch_size=2, lr=1e-3, train_unet=False, checkpoint_every=2, sample_every=100,
                               threads=1, consistency_weight=1.0)
    h = training.train(pairs, c, cfg, tmp_path / "g", model, progress=False, critic=critic)
    assert np.isfinite(h.history["consistency"]).all()


def test_autocast_runs_products_in_the_named_precision():
    a = torch.randn(4, 4)
    with autocast("no"):
        assert (a @ a).dtype == torch.float32
    with autocast("bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="mixed_precision.*known: no, bf16, fp16"):
        autocast("fp8")


def test_a_bf16_stage_trains_float32_weights_beside_float32_stages(tmp_path, autoencoder_dir, pairs, critic):
    # the same process trains float32 and bf16 stages (accelerate's process-wide precision stays float32)
    cfg = training.TrainConfig(**{**CFG.__dict__, "steps": 2, "sample_every": 100, "consistency_weight": 1.0})
    runs, seen = {}, {}
    for precision in ("no", "bf16", "no"):
        torch.manual_seed(0)
        c = components.build_components(CONCAT, autoencoder_dir)
        hook = c.unet.conv_in.register_forward_hook(lambda m, i, o: seen.__setitem__(precision, o.dtype))
        h = training.train(pairs, c, training.TrainConfig(**{**cfg.__dict__, "mixed_precision": precision}),
                           tmp_path / f"{precision}{len(runs)}", CONCAT, progress=False, critic=critic)
        hook.remove()
        runs[precision] = h.history
        assert all(p.dtype == torch.float32 for p in c.unet.parameters())
    assert seen == {"no": torch.float32, "bf16": torch.bfloat16}
    # the first step's loss is computed before any update: the same up to bf16 rounding
    assert np.isfinite(runs["bf16"]["loss"]).all()
    assert runs["bf16"]["loss"].iloc[0] == pytest.approx(runs["no"]["loss"].iloc[0], rel=0.05)
    with pytest.raises(ValueError, match="mixed_precision"):
        training.train(pairs, components.build_components(CONCAT, autoencoder_dir),
                       training.TrainConfig(**{**cfg.__dict__, "mixed_precision": "fp8"}), tmp_path / "bad", CONCAT,
                       progress=False, critic=critic)
