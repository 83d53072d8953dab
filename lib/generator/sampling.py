"""The generator as a diffusers pipeline, its folder, and sampling: ``LandmarkPipeline`` (DDIM with
classifier-free guidance for a concat UNet; a ControlNet generator is diffusers' own
``StableDiffusionControlNetPipeline``), save and load, ``generate`` (faces from landmarks, prompts
and seeds, from noise or image-to-image) and sample grids. The unconditional branch of the
guidance is the empty prompt.

A generator is a folder: the full pipeline in diffusers' ``save_pretrained``
layout (``load_generator`` reads it back with diffusers) (or only ``controlnet/`` when the base is a local Stable Diffusion,
named in ``generator.json``), ``history.csv``, ``samples/`` (a grid at fixed
seeds and landmarks every few checkpoints) and ``checkpoints/last.safetensors``
(trainable weights and optimiser state: training resumes from it exactly); ``training`` writes it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, DDPMScheduler, DiffusionPipeline,
                       ImagePipelineOutput, StableDiffusionControlNetImg2ImgPipeline, StableDiffusionControlNetPipeline,
                       UNet2DConditionModel)
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg
from diffusers.utils.torch_utils import randn_tensor

from ..core.progress import track
from .components import Components, concat_input, condition_tensor, ddim, encode_prompts, style_labels, vae_scale_factor
from .precision import autocast


class LandmarkPipeline(DiffusionPipeline):
    """DDIM with classifier-free guidance for a UNet that takes the landmark parts at its
    input (``conditioning: concat``). Called like diffusers' ControlNet pipeline, with
    `image` the (N, len(PARTS), H, W) part channels in [0, 1] (``condition_tensor``).
    With `init_image` ((N, 3, H, W) in [0, 1]) it works as image-to-image, as diffusers'
    img2img pipelines do: the image's latents are noised to `strength` (1: pure noise)
    and only the last ``int(steps * strength)`` DDIM steps are run. `style_prompts`: the
    prompts of the UNet's learned style embeddings, if it has them (``style_labels``).

    Two guidance options beside the scale: `guidance_rescale` (diffusers' ``rescale_noise_cfg``,
    as in ``StableDiffusionPipeline``: the guided prediction rescaled toward the conditional
    one's spread, Lin et al. 2024) and `guidance_min_timestep` (guidance only at timesteps at
    or above it, the unguided model drawing the last, fine steps: the guidance interval of
    Kynkaanniemi et al. 2024). Their defaults leave plain guidance."""
    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(self, vae: AutoencoderKL, text_encoder, tokenizer, unet: UNet2DConditionModel,
                 scheduler: DDIMScheduler, style_prompts: list | None = None):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self.register_to_config(style_prompts=list(style_prompts or []))

    @torch.no_grad()
    def __call__(self, prompt: list[str], image: torch.Tensor, height: int, width: int, num_inference_steps: int = 20,
                 guidance_scale: float = 3.0, generator=None, output_type: str = "np",
                 init_image: torch.Tensor | None = None, strength: float = 1.0, guidance_rescale: float = 0.0,
                 guidance_min_timestep: int = 0) -> ImagePipelineOutput:
        if not 0 < strength <= 1:
            raise ValueError(f"strength {strength}: expected a value in (0, 1]")
        if not 0 <= guidance_rescale <= 1:
            raise ValueError(f"guidance_rescale {guidance_rescale}: expected a value in [0, 1]")
        n, f, device = len(prompt), vae_scale_factor(self.vae), self._execution_device
        guided = guidance_scale > 1
        text = encode_prompts(self.tokenizer, self.text_encoder, list(prompt))
        labels = style_labels(self.config.style_prompts, list(prompt))
        if guided:
            text = torch.cat([encode_prompts(self.tokenizer, self.text_encoder, [""] * n), text])
            labels = None if labels is None else torch.cat([torch.zeros_like(labels), labels])
        labels = None if labels is None else labels.to(device)
        shape = (n, self.vae.config.latent_channels, height // f, width // f)
        noise = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if init_image is None:
            latents = noise * self.scheduler.init_noise_sigma
        else:
            run = min(max(int(num_inference_steps * strength), 1), num_inference_steps)
            timesteps = timesteps[num_inference_steps - run:]
            x = init_image.to(device, self.vae.dtype) * 2 - 1
            clean = self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor
            latents = self.scheduler.add_noise(clean.to(noise), noise, timesteps[:1].repeat(n))
        parts = image.to(device, self.unet.dtype)
        parts = torch.cat([parts, parts]) if guided else parts
        for t in self.progress_bar(timesteps):
            x = torch.cat([latents, latents]) if guided else latents
            x = self.scheduler.scale_model_input(x, t)
            pred = self.unet(concat_input(x, parts, f), t, encoder_hidden_states=text, class_labels=labels).sample.float()
            if guided:
                uncond, cond = pred.chunk(2)
                pred = uncond + (guidance_scale if int(t) >= guidance_min_timestep else 1.0) * (cond - uncond)
                if guidance_rescale > 0:
                    pred = rescale_noise_cfg(pred, cond, guidance_rescale=guidance_rescale)
            latents = self.scheduler.step(pred, t, latents).prev_sample
        images = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        images = (images / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu()
        return ImagePipelineOutput(images=images.numpy() if output_type == "np" else images)


def make_pipeline(c: Components) -> DiffusionPipeline:
    if c.controlnet is None:
        pipe = LandmarkPipeline(vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet,
                                scheduler=ddim(c.scheduler.config), style_prompts=c.style_prompts)
        pipe.set_progress_bar_config(disable=True)
        return pipe
    pipe = StableDiffusionControlNetPipeline(
        vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet, controlnet=c.controlnet,
        scheduler=ddim(c.scheduler.config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_generator(folder: str | Path, c: Components, info: dict | None = None) -> None:
    """diffusers layout: the whole pipeline, or only ``controlnet/`` over a local Stable Diffusion."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if c.base:
        c.controlnet.save_pretrained(folder / "controlnet")
    else:
        make_pipeline(c).save_pretrained(folder)
    (folder / "generator.json").write_text(json.dumps({"base": c.base, **(info or {})}, indent=2))


def load_generator(folder: str | Path) -> DiffusionPipeline:
    """A generator folder as its diffusers pipeline (the ControlNet pipeline, or
    ``LandmarkPipeline`` for a concat generator) with a DDIM scheduler."""
    folder = Path(folder)
    if not (folder / "generator.json").exists():
        raise FileNotFoundError(f"{folder}/generator.json: missing; train the generator first (notebooks 02, 03)")
    info = json.loads((folder / "generator.json").read_text())
    if info["base"]:
        controlnet = ControlNetModel.from_pretrained(folder / "controlnet")
        pipe = StableDiffusionControlNetPipeline.from_pretrained(
            info["base"], controlnet=controlnet, local_files_only=True, safety_checker=None, requires_safety_checker=False)
    else:
        index = json.loads((folder / "model_index.json").read_text())
        cls = LandmarkPipeline if index["_class_name"] == LandmarkPipeline.__name__ else StableDiffusionControlNetPipeline
        pipe = cls.from_pretrained(str(folder), local_files_only=True)
    pipe.scheduler = ddim(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def components_of(pipe: DiffusionPipeline, base: str | None) -> Components:
    return Components(pipe.vae, pipe.unet, getattr(pipe, "controlnet", None), pipe.text_encoder, pipe.tokenizer,
                      DDPMScheduler.from_config(pipe.scheduler.config), base,
                      list(pipe.config.get("style_prompts") or []) or None)


def load_components(folder: str | Path) -> Components:
    return components_of(load_generator(folder), json.loads((Path(folder) / "generator.json").read_text())["base"])


def conditioning_of(pipe: DiffusionPipeline) -> str:
    return "controlnet" if getattr(pipe, "controlnet", None) is not None else "concat"


@torch.inference_mode()
def generate(pipe: DiffusionPipeline, points: np.ndarray, prompts: list[str], seeds: list[int],
             resolution: int, steps: int = 20, guidance: float = 3.0, batch_size: int = 32,
             progress: bool = False, init_images: np.ndarray | None = None, strength: float = 1.0,
             mixed_precision: str = "no", guidance_rescale: float = 0.0, guidance_min_timestep: int = 0) -> np.ndarray:
    """Faces following `points` (N, 68, 2, pixels of a `resolution` image) and `prompts`;
    image i depends only on (points[i], prompts[i], seeds[i]), not on the batch it falls in.
    `mixed_precision` (no | bf16 | fp16): the autocast the networks run under (``autocast``).
    `guidance_rescale`, `guidance_min_timestep`: ``LandmarkPipeline``'s guidance options (a
    concat generator's; a ControlNet generator takes plain guidance only).

    `init_images` ((N, R, R, 3) uint8): image-to-image from them instead of from noise,
    noised to `strength` (warp-first synthesis); a ControlNet generator then runs as
    diffusers' ``StableDiffusionControlNetImg2ImgPipeline`` on the same components."""
    out, conditioning = [], conditioning_of(pipe)
    if init_images is not None and len(init_images) != len(points):
        raise ValueError(f"{len(init_images)} init images for {len(points)} landmark sets")
    strength = max(float(strength), 1.0 / steps)  # at least one denoising step, as LandmarkPipeline runs
    options = {}
    if guidance_rescale or guidance_min_timestep:
        if conditioning != "concat":
            raise ValueError("guidance_rescale and guidance_min_timestep: a concat generator's (LandmarkPipeline) "
                             "options; a ControlNet generator takes plain guidance")
        options = {"guidance_rescale": guidance_rescale, "guidance_min_timestep": guidance_min_timestep}
    img2img = None
    if init_images is not None and conditioning == "controlnet":
        img2img = StableDiffusionControlNetImg2ImgPipeline(**pipe.components, requires_safety_checker=False)
        img2img.set_progress_bar_config(disable=True)
    for i in track(range(0, len(points), batch_size), desc="generate", enabled=progress):
        sl = slice(i, i + batch_size)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[sl]]
        cond = condition_tensor(points[sl], resolution, conditioning)
        kw = dict(prompt=list(prompts[sl]), height=resolution, width=resolution, num_inference_steps=steps,
                  guidance_scale=guidance, generator=gens, output_type="np", **options)
        with autocast(mixed_precision, pipe.device.type):
            images = _draw(pipe, img2img, cond, kw, None if init_images is None else init_images[sl], strength)
        out.append((np.clip(images, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out) if out else np.zeros((0, resolution, resolution, 3), np.uint8)


def _draw(pipe, img2img, cond: torch.Tensor, kw: dict, init_images: np.ndarray | None, strength: float) -> np.ndarray:
    """One batch of `generate`: from noise, or image-to-image from `init_images`."""
    if init_images is None:
        return pipe(image=cond, **kw).images
    init = torch.from_numpy(np.ascontiguousarray(init_images)).permute(0, 3, 1, 2).float() / 255
    if img2img is not None:
        return img2img(image=init, control_image=cond, strength=strength, controlnet_conditioning_scale=1.0,
                       **kw).images
    return pipe(image=cond, init_image=init, strength=strength, **kw).images


def sample_grid(images: np.ndarray, conditions: np.ndarray | None = None, per_row: int = 8) -> np.ndarray:
    """Tile images into one RGB array; with `conditions`, each row of faces is followed by their condition images."""
    blank = np.zeros_like(images[0])

    def row(tiles):
        return np.concatenate(list(tiles) + [blank] * (per_row - len(tiles)), axis=1)

    rows = []
    for i in range(0, len(images), per_row):
        rows.append(row(images[i:i + per_row]))
        if conditions is not None:
            rows.append(row(conditions[i:i + per_row]))
    return np.concatenate(rows, axis=0)
