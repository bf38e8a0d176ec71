"""Loading open_clip models with weights: an open_clip tag (downloaded once, offline-aware), a local
checkpoint (OpenAI's TorchScript archive or an open_clip state dict) or random weights, with the
activation OpenAI's weights need (QuickGELU) and errors that say what to do instead of tracebacks.
Also the device a model goes to and the image normalisation it was trained with.

The dense feature extraction on top of a loaded model is maskclip.backbone.
"""
from __future__ import annotations

import os
import uuid
import warnings
import zipfile
from pathlib import Path

import open_clip
import torch
from open_clip.transformer import QuickGELU

from .errors import MaskCLIPError, UnsupportedModelError, WeightsUnavailableError
from .validation import check_device

CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(CONFIG_DIR)  # registers the tiny random-weight architectures (maskclip-tiny-*)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present, the CPU otherwise."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MaskCLIPError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu")
    return device


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or Path(value).suffix in {".pt", ".pth", ".bin", ".safetensors", ".npz"}


def _is_torchscript_archive(path: str) -> bool:
    """OpenAI's original .pt files are TorchScript archives (a zip holding code/ and constants.pkl)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


def _hub_error(exc: BaseException | None) -> str:
    return type(exc).__name__ if exc is not None else "unavailable"


def _hub_reachable(repo: str) -> bool:
    """One request through huggingface_hub's own HTTP session (its HF_ENDPOINT, proxies and headers), with its
    configured timeout (HF_HUB_ETAG_TIMEOUT) and no retries: without network `hf_hub_download` retries
    with back-off for ~25 s per file, which a missing network does not deserve."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(f"{constants.ENDPOINT}/api/models/{repo}", timeout=constants.HF_HUB_ETAG_TIMEOUT)
        return True
    except Exception:  # httpx/requests connection errors, timeouts, proxy errors: all mean "not now"
        return False


def _tag_checkpoint(model_name: str, tag: str) -> str | None:
    """The local file of an open_clip tag's weights on the Hugging Face hub (None: a tag not on the hub).

    Weights already in the Hugging Face cache load with no network request (`local_files_only`, the hub's
    own offline path); otherwise they are downloaded by `hf_hub_download`, which honours HF_HUB_OFFLINE,
    HF_ENDPOINT mirrors, proxies and its timeouts. Nothing process-wide is changed.
    """
    from huggingface_hub import constants, hf_hub_download
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    hub = open_clip.get_pretrained_cfg(model_name, tag).get("hf_hub", "")
    if not hub:
        return None
    repo, filename = os.path.split(hub)
    filename = filename or HF_WEIGHTS_NAME
    # the same files open_clip looks for, safetensors first
    candidates = ([HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else
                  [filename[:-4] + ".safetensors"] if filename.endswith((".bin", ".pth")) else []) + [filename]
    for name in candidates:
        try:
            return hf_hub_download(repo, name, local_files_only=True)
        except Exception:
            pass
    last: BaseException | None = None
    if not constants.HF_HUB_OFFLINE and _hub_reachable(repo):
        for name in candidates:
            try:
                return hf_hub_download(repo, name)
            except Exception as exc:
                last = exc
    raise WeightsUnavailableError(_download_failed(model_name, tag, last))


def _download_failed(model_name: str, tag: str, exc: BaseException | None) -> str:
    return (f"could not download the CLIP weights {model_name}/{tag} ({_hub_error(exc)}). Without "
            f"network access, use a local checkpoint file instead (an OpenAI CLIP .pt or an open_clip state "
            f"dict for {model_name}: the annotator's weights field, or --pretrained /path/to/{model_name}.pt "
            f"on the command line), or copy the Hugging Face cache (HF_HOME) from a machine that has "
            f"downloaded it")


# OpenAI's TorchScript archives hold these constants beside the weights; a state dict saved from such an
# archive keeps them, which marks it as OpenAI's.
OPENAI_ARCHIVE_CONSTANTS = ("input_resolution", "context_length", "vocab_size")
CHECKPOINT_QUICK_GELU_KEY = "quick_gelu"  # written by MaskCLIP.save_checkpoint beside "state_dict"


def _checkpoint_quick_gelu(path: str) -> bool:
    """Whether a state-dict checkpoint was trained with QuickGELU, as far as the file tells.

    Our own checkpoints say so explicitly; a state dict that still holds OpenAI's archive constants is
    OpenAI's; a file inside a Hugging Face repository of OpenAI weights (timm's `*.openai` names) too.
    Anything else is taken as GELU (open_clip's own and LAION weights). Cheap: the file is memory-mapped.
    """
    if any(part.lower().endswith(".openai") for part in Path(path).resolve().parts):
        return True
    if Path(path).suffix in (".safetensors", ".npz", ".npy"):
        return False
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # legacy (non-zip) files cannot be memory-mapped
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return False  # the loader below reports what is wrong with the file
    if not isinstance(checkpoint, dict):
        return False
    if CHECKPOINT_QUICK_GELU_KEY in checkpoint:
        return bool(checkpoint[CHECKPOINT_QUICK_GELU_KEY])
    state = checkpoint.get("state_dict", checkpoint)
    return isinstance(state, dict) and any(k in state for k in OPENAI_ARCHIVE_CONSTANTS)


def _load_failure(exc: Exception) -> str:
    """Why a checkpoint did not load, in one short line (torch's refusal of a pickle is ~750 characters)."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError) or "weights only load failed" in str(exc).lower():
        return "it holds objects other than weights and plain data, so it was refused (loading it could run code)"
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 200 else text[:197] + "..."


def uses_quick_gelu(clip_model: torch.nn.Module) -> bool:
    """Whether the model's transformer MLPs use QuickGELU (x * sigmoid(1.702 x), OpenAI's activation)."""
    return any(isinstance(m, QuickGELU) for m in clip_model.modules())


def load_clip(model_name: str, pretrained: str | None, quick_gelu: bool | None = None
              ) -> tuple[torch.nn.Module, str]:
    """Build an open_clip model with weights; returns (model, weights_id).

    `weights_id` identifies the weights in cache signatures: the tag, the checkpoint file's path, size and
    modification time, or a fresh random token for random weights (so their features are never reused by
    another process).

    quick_gelu: the MLP activation. OpenAI's weights were trained with QuickGELU, and open_clip (3.x)
    builds them with nn.GELU unless told, which shifts every feature. None decides from the weights: a
    tag whose open_clip config says so ('openai'), a TorchScript archive (how OpenAI released them), or a
    state dict marked as OpenAI's (see `_checkpoint_quick_gelu`) get QuickGELU; anything else keeps the
    architecture's own activation (the `-quickgelu` configs have QuickGELU). True / False force it.
    """
    if model_name not in open_clip.list_models():
        raise UnsupportedModelError(
            f"unknown model '{model_name}'. open_clip models include ViT-B-16, ViT-B-32, ViT-L-14, RN50, RN101, "
            f"RN50x16 (see open_clip.list_models()); tiny test models: maskclip-tiny-vit, maskclip-tiny-rn")
    activation = {} if quick_gelu is None else {"quick_gelu": bool(quick_gelu)}
    if pretrained is None:
        return open_clip.create_model(model_name, pretrained=None, **activation), f"random:{uuid.uuid4().hex}"

    pretrained = str(pretrained)
    if os.path.isfile(pretrained):
        stat = os.stat(pretrained)
        weights_id = f"file:{os.path.abspath(pretrained)}:{stat.st_size}:{stat.st_mtime_ns}"
        try:
            if _is_torchscript_archive(pretrained):
                activation = activation or {"quick_gelu": True}
                model = open_clip.create_model(model_name, pretrained=None, **activation)
                with warnings.catch_warnings():  # torch deprecates TorchScript; OpenAI's files still are
                    warnings.simplefilter("ignore", FutureWarning)
                    state = torch.jit.load(pretrained, map_location="cpu").state_dict()
                expected = model.state_dict().keys()
                missing = [k for k in expected if k not in state]
                if missing:
                    raise KeyError(f"missing weights {missing[:5]}")
                # archives also hold non-weight constants (input_resolution, attn_mask, ...): ignored
                model.load_state_dict({k: v for k, v in state.items() if k in expected})
            else:
                if not activation and _checkpoint_quick_gelu(pretrained):
                    activation = {"quick_gelu": True}
                model = open_clip.create_model(model_name, pretrained=None, **activation)
                incompatible = open_clip.load_checkpoint(model, pretrained, strict=False)
                unexpected = [k for k in incompatible.unexpected_keys if k not in OPENAI_ARCHIVE_CONSTANTS]
                if incompatible.missing_keys or unexpected:
                    raise KeyError(f"missing weights {incompatible.missing_keys[:5]}, unexpected {unexpected[:5]}")
        except Exception as exc:  # a wrong file is the user's problem to fix: say which file and why
            raise WeightsUnavailableError(
                f"could not load checkpoint '{pretrained}' into {model_name}: {_load_failure(exc)}. Expected an "
                f"OpenAI CLIP .pt file or an open_clip state dict for this architecture") from None
        return model, weights_id
    if _looks_like_path(pretrained):
        raise WeightsUnavailableError(f"checkpoint file not found: {pretrained}")

    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained not in tags:
        raise WeightsUnavailableError(
            f"'{pretrained}' is neither a checkpoint file nor a known weights tag for {model_name} "
            f"(known tags: {', '.join(tags) or 'none'})")
    if not activation and open_clip.get_pretrained_cfg(model_name, pretrained).get("quick_gelu"):
        activation = {"quick_gelu": True}
    try:
        checkpoint = _tag_checkpoint(model_name, pretrained)
        if checkpoint is None:  # a tag downloaded from a URL, not the hub: open_clip fetches it
            model = open_clip.create_model(model_name, pretrained=pretrained, **activation)
        else:
            model = open_clip.create_model(model_name, pretrained=checkpoint, **activation)
            # what open_clip does for a tag: the tag's image normalisation over the architecture's
            from open_clip.model import set_model_preprocess_cfg
            from open_clip.transform import merge_preprocess_dict

            tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
            set_model_preprocess_cfg(model, merge_preprocess_dict(model.visual.preprocess_cfg, tag_cfg))
    except WeightsUnavailableError:
        raise
    except Exception as exc:
        raise WeightsUnavailableError(_download_failed(model_name, pretrained, exc)) from None
    return model, f"tag:{pretrained}"


def clip_mean_std(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The image normalisation the model was trained with (OpenAI's CLIP statistics by default)."""
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    mean = cfg.get("mean", getattr(model.visual, "image_mean", None)) or open_clip.OPENAI_DATASET_MEAN
    std = cfg.get("std", getattr(model.visual, "image_std", None)) or open_clip.OPENAI_DATASET_STD
    return tuple(mean), tuple(std)
