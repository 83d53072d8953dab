"""The landmark-guided diffusion model and what it makes. Imports ``lib.core`` and ``lib.data``.

    condition     the landmark condition: the rendered landmark image, the part channels
    autoencoder   the small profiles' latent space (diffusers' AutoencoderKL)
    precision     the autocast of a mixed_precision setting
    components    the diffusion model's configuration and parts, built from a profile
    pairs         the training pairs (image, landmarks, prompt) at the model's resolution
    sampling      the diffusers pipelines, the generator folder (save, load) and sampling
    training      the diffusion model's training loop
    stages        the training stages of a profile (notebooks 02, 03 and lib.launch)
    edits         landmark edits
    styles        image styles and style prompts
    synthesis     synthetic landmark sets drawn by a generator

The modules build on each other in one direction, each importing only those before it:
precision, autoencoder, components, pairs, sampling, training, synthesis, stages (condition,
edits and styles import none of them); ``tests/test_architecture.py`` checks that lib has no
import cycles.
"""
