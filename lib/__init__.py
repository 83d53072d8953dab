"""Multi-domain facial landmark detection with synthetic data: the study's library.

Five packages, one per concern, with one-way imports (enforced by
``tests/test_architecture.py``)::

    core        landmark schemes (68 iBUG, 257 dense), crop, metrics,
                checkpoints, the training scaffold, the predictor interface,
                the face finder, the ImageNet MobileNetV2    imports nothing from lib
    data        dataset readers, data preparation, procedural faces      core
    generator   landmark condition, autoencoder, diffusion model (precision,
                components, pairs, sampling, training), edits, styles,
                synthesis, the training stages                           core, data
    detector    networks (stacked hourglass; MobileNetV2 + PIPNet head; coordinate
                regression; dense label transfer), domain adaptation, heatmaps,
                losses, augmentation,
                training, the detector folder as a predictor             core, data
    evaluation  peer predictors (dlib, mean shape), evaluation and tables,
                alignment, style classifier, figures, the command line,
                the rendered-faces and dense-landmark studies            everything above

``lib.pipeline`` (profiles and notebook stages) imports nothing from the
packages. ``lib.launch`` (``python -m lib.launch``: a generator stage under
``accelerate launch``) is an entry point like the notebooks: it may import
``pipeline``, ``core``, ``data``, ``generator`` and ``detector`` (a stage's critic), not
``evaluation``, and nothing in lib imports it. Only notebooks, the evaluation
command, tests and benchmarks import ``evaluation``; ``generator`` and
``detector`` never import each other. No module imports itself back through
others: the module graph has no cycles.
"""

import warnings

# tqdm.auto (imported by diffusers) warns in a headless notebook kernel without ipywidgets
warnings.filterwarnings("ignore", message="IProgress not found")
