"""Range checks for user-given options, made before any work starts (a NaN threshold or a negative
learning rate must be refused up front, not discovered after an hour, or never).

The `*_arg` functions are argparse `type=` converters (torch-free, so parsing stays fast); the
`check_*` functions raise MaskCLIPError for the Python API.
"""
from __future__ import annotations

import argparse
import math
import re

from .errors import MaskCLIPError

_DEVICE = re.compile(r"(auto|cpu|cuda|cuda:\d+|mps)")


def check_probability(value, name: str) -> float:
    """A number in [0, 1] (NaN and infinities refused)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise MaskCLIPError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:  # also False for NaN
        raise MaskCLIPError(f"{name} must lie in [0, 1], got {value!r}")
    return v


def check_positive(value, name: str) -> float:
    """A finite number above 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise MaskCLIPError(f"{name} must be a positive number, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise MaskCLIPError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _arg(check, name: str):
    def convert(text: str):
        try:
            return check(text, name)
        except MaskCLIPError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = name  # argparse names the converter in its messages
    return convert


def probability_arg(name: str):
    """argparse type: a number in [0, 1]."""
    return _arg(check_probability, name)


def positive_float_arg(name: str):
    """argparse type: a finite number above 0."""
    return _arg(check_positive, name)


def int_arg(name: str, minimum: int):
    """argparse type: an integer >= minimum."""
    def check(text, _name):
        try:
            v = int(text)
        except (TypeError, ValueError):
            raise MaskCLIPError(f"{name} must be an integer, got {text!r}") from None
        if v < minimum:
            raise MaskCLIPError(f"{name} must be at least {minimum}, got {v}")
        return v
    return _arg(check, name)


def device_arg(text: str) -> str:
    """argparse type: a device this machine has (auto, cpu, cuda, cuda:N, mps)."""
    try:
        check_device(text)
    except MaskCLIPError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def check_device(device) -> None:
    """Refuse a device this machine cannot use, with what to type instead (before loading anything)."""
    if device is None or not isinstance(device, str):
        return  # a torch.device from the Python API: torch checks it
    device = device.strip()
    if not _DEVICE.fullmatch(device):
        raise MaskCLIPError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if device in ("auto", "cpu"):
        return
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MaskCLIPError(f"device {device!r} was requested but no CUDA GPU is available; use --device cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise MaskCLIPError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} "
                                "CUDA GPU(s), cuda:0 ...")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise MaskCLIPError("device 'mps' (Apple GPU) is not available on this machine; use --device cpu")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def json_value_fits(annotation: str, value) -> bool:
    """Whether a value read from JSON fits a dataclass field's annotation ("float | None", "int",
    "tuple[int, ...]", "tuple[float, float]", "bool", "str"); None only where the annotation allows it."""
    annotation = str(annotation)
    if value is None:
        return "None" in annotation
    if annotation.startswith("tuple"):
        inner = annotation[annotation.index("[") + 1:annotation.rindex("]")].split(",")
        kind = inner[0].strip()
        fits = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if kind == "int" else _is_number
        if not isinstance(value, (list, tuple)) or not all(fits(v) for v in value):
            return False
        return "..." in annotation or len(value) == len(inner)
    if annotation.startswith("bool"):
        return isinstance(value, bool)
    if annotation.startswith("int"):
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation.startswith("float"):
        return _is_number(value)
    if annotation.startswith("str"):
        return isinstance(value, str)
    return True
