"""Multi-domain facial landmark detection with synthetic data: the study's library.

Five packages, one per concern, with one-way imports (enforced by
``tests/test_architecture.py``)::

    core        landmark schemes (68 iBUG, 257 dense), crop, metrics,
                checkpoints, the training scaffold, the predictor interface,
                the face finder, the ImageNet MobileNetV2    imports nothing from lib
    data        dataset readers, data preparation, procedural faces      core
    generator   landmark condition, autoencoder, diffusion model, edits,
                styles, synthesis                                        core, data
    detector    networks (stacked hourglass; MobileNetV2 + PIPNet head; coordinate
                regression; dense label transfer), domain adaptation, heatmaps,
                losses, augmentation,
                training, the detector folder as a predictor             core, data
    evaluation  peer predictors (dlib, mean shape), evaluation and tables,
                alignment, style classifier, figures, the command line,
                the rendered-faces and dense-landmark studies            everything above

``lib.pipeline`` (profiles and notebook stages) imports nothing from the
packages. Only notebooks, the evaluation command, tests and benchmarks import
``evaluation``; ``generator`` and ``detector`` never import each other.
"""

import warnings

# tqdm.auto (imported by diffusers) warns in a headless notebook kernel without ipywidgets
warnings.filterwarnings("ignore", message="IProgress not found")
