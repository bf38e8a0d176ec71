"""Shared defaults: one home for each value the library, the command line and the annotator agree on.

No torch (or any heavy import) here: the CLI's argument parser, the project store and the annotator read
these before a model is loaded.
"""
from __future__ import annotations

# Label images hold class indices 0..254; this value means "unlabelled" (and "ignore" for losses and
# metrics: the VOC / mmseg convention). A *verified* pixel with this value is confirmed background.
UNLABELLED = 255
MAX_CLASSES = UNLABELLED  # class indices end at UNLABELLED - 1

# The CLIP model and weights used when nothing else is chosen: open_clip's ViT-B-16 with OpenAI's weights.
DEFAULT_MODEL = "ViT-B-16"
DEFAULT_PRETRAINED = "openai"
# Architectures offered by the annotator's model field (any open_clip ViT or ModifiedResNet works).
SUGGESTED_MODELS = ("ViT-B-16", "ViT-B-32", "ViT-L-14", "RN50", "RN101", "maskclip-tiny-vit", "maskclip-tiny-rn")
# How random weights are spelled where a weights tag or a checkpoint path is expected.
RANDOM_WEIGHTS_SPELLINGS = ("none", "random")

DEFAULT_DENSE_MODE = "maskclip"
DEFAULT_SCALES = (336,)  # short side in pixels; the paper's ensemble is (224, 336, 520)
DEFAULT_BACKGROUND = ("building", "ground", "grass", "tree", "sky")  # the official demo's background prompts

# Devices: "auto" picks CUDA when present, the CPU otherwise. DEVICE_CHOICES is what menus offer;
# the command line also accepts cuda:N and mps (maskclip.validation.check_device).
DEFAULT_DEVICE = "auto"
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def auto_device() -> str:
    """The device "auto" stands for on this machine: "cuda" when a CUDA GPU is usable, else "cpu" (imports
    torch, so call it only where a model is about to be loaded)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# `maskclip refine --min-confidence` (refine_project's default): student pixels less sure than this become
# unlabelled. Chosen by measurement: bench/bench_refine_confidence.py (bench/results.md).
REFINE_MIN_CONFIDENCE = 0.0


# `maskclip train`'s defaults per student (TrainConfig fields left unset get them when a new run starts;
# one home for the CLI, the trainer and the annotator's training panel). The clip student (the CPU default)
# gets the recipe measured best on the toy CLIP (bench/results.md, "SCLIP teacher, class-balanced confident
# pixels, mean teacher" and "Refine through the project"): pseudo labels from the SCLIP dense mode (the best
# training-free mode measured), trained only on the teacher's most confident 20% of each class's pixels, the
# EMA of the weights (decay 0.99) is the student; 300 iterations at batch 16. With the project's maskclip mode
# as teacher and no filter the student scored below its own teacher. The torchvision students (GPU) keep the
# paper's settings: the project's dense mode as teacher, every pixel, no EMA, 2000 iterations at batch 8.
# teacher_mode None: the project's dense mode.
CLIP_STUDENT_TRAIN_DEFAULTS = {"teacher_mode": "sclip", "confidence_keep": 0.2, "ema_decay": 0.99,
                               "iters": 300, "batch_size": 16}
TORCHVISION_STUDENT_TRAIN_DEFAULTS = {"teacher_mode": None, "confidence_keep": None, "ema_decay": None,
                                      "iters": 2000, "batch_size": 8}
