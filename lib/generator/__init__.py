"""The landmark-guided diffusion model and what it makes: the landmark
condition, the small autoencoder, training and sampling on diffusers, landmark
edits, image styles and synthesis. Imports ``lib.core`` and ``lib.data``."""
