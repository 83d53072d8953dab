"""The landmark detector: stacked hourglass, heatmaps, losses, augmentation,
training and the trained folder as a predictor. Imports ``lib.core`` and
``lib.data``; never ``lib.generator``."""
