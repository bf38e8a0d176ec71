"""The MaskCLIP+ students by name, without importing torch: the annotator's training panel lists them while
the window starts (torch is imported only by the model-loading worker), and `maskclip.train.student` builds
them from these names."""
from __future__ import annotations

CLIP_STUDENT = "clip"  # the CLIP-initialised student (train.student.ClipBackbone): the teacher's own tower
# torchvision students: name -> short description (their builders and ImageNet weights: train.student.STUDENTS)
TORCHVISION_STUDENTS: dict[str, str] = {
    "deeplabv3_resnet101": "DeepLabV3, ResNet-101 (the paper's backbone; GPU)",
    "deeplabv3_resnet50": "DeepLabV3, ResNet-50 (GPU)",
    "deeplabv3_mobilenet_v3_large": "DeepLabV3, MobileNetV3-Large (light)",
    "lraspp_mobilenet_v3_large": "LR-ASPP, MobileNetV3-Large (lightest; CPU)",
}
DESCRIPTIONS: dict[str, str] = {
    CLIP_STUDENT: "CLIP image tower of the teacher (MaskCLIP dense features + light decoder; no download)",
    **TORCHVISION_STUDENTS,
}
STUDENT_NAMES: tuple[str, ...] = tuple(DESCRIPTIONS)
DEFAULT_GPU_STUDENT = "deeplabv3_resnet101"
# CPU: the clip student. Measured on the toy CLIP (bench/results.md, "--compare"): 28.2 +- 0.5 mIoU after 100
# iterations (3 seeds, 2-4 CPU-minutes) against 25.9 for the random-init LR-ASPP (what an offline CPU gets) after 4000
# (12 min). Neither beats its MaskCLIP teacher (29.6) reliably (batch 32, 250+ iterations: +0.5, -0.4, -0.7 on
# three seeds); taught by SCLIP on the teacher's most confident 20% of each class (TrainConfig.confidence_keep)
# with EMA weights it reaches 37.1 +- 0.0 (SCLIP 31.7). The GPU default is unmeasured here.
DEFAULT_CPU_STUDENT = CLIP_STUDENT
