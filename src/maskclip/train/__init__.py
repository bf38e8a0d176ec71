"""MaskCLIP+ training: a DeepLab student learns from MaskCLIP pseudo labels plus verified pixels, then
self-trains, and its predictions refine a project's labels (docs/architecture.md, "MaskCLIP+").

Modules: student (network with a frozen text-embedding classifier; STUDENT_NAMES = the clip student + the
torchvision STUDENTS), targets (pseudo labels, verified
pixels, self-training, teacher cache), data (items, augmentation, resumable batch plan), loop (training
and run folder), distributed (torchrun/DDP), project_run (the project store as a data source; refine),
inference (the student on whole images; several per forward pass on a GPU).
"""
from .data import AugmentConfig, TrainItem
from .loop import RunFolder, TrainConfig, TrainResult, load_student, train
from .student import CLIP_STUDENT, STUDENT_NAMES, STUDENTS, Student, build_student, random_class_embeddings
from .targets import IGNORE, TeacherCache, guided_target, self_training_target

__all__ = [
    "AugmentConfig", "TrainItem", "RunFolder", "TrainConfig", "TrainResult", "load_student", "train",
    "STUDENTS", "STUDENT_NAMES", "CLIP_STUDENT", "Student", "build_student", "random_class_embeddings", "IGNORE", "TeacherCache",
    "guided_target", "self_training_target",
]
