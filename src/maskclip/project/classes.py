"""The class list and the rest of project.json (background prompts, settings).

Classes carry a permanent uid: renaming keeps it, reordering changes only the current order, removing
drops it for good (re-adding a name gives a new uid), so stored labels, which record uids, never shift
silently. Functions take the Project `p`; the Project's methods run them under the project lock on the
latest project.json (`reload_meta_if_changed`), and `save_meta` undoes the in-memory change when the
write fails, so memory always matches the file.
"""
from __future__ import annotations

import copy
from typing import Mapping, Sequence

from ..labels_io import voc_palette
from ..prompts import MAX_BACKGROUND_PROMPTS, MAX_SYNONYMS
from . import files
from .records import ClassInfo, ProjectError
from .schema import MAX_CLASSES, PROJECT_FILE, check_colour, check_name, deep_merge, settings_problem, \
    validate_meta


def class_from_json(c: dict) -> ClassInfo:
    return ClassInfo(int(c["uid"]), c["name"], tuple(c.get("synonyms", ())), tuple(c["colour"]))


def check_synonyms(synonyms, name) -> tuple[str, ...]:
    if isinstance(synonyms, str):
        synonyms = [synonyms]
    synonyms = list(synonyms)
    if len(synonyms) + 1 > MAX_SYNONYMS:
        raise ProjectError(f"class {name!r}: {len(synonyms)} synonyms; at most {MAX_SYNONYMS - 1} besides the name")
    out = tuple(check_name(s) for s in synonyms)
    return tuple(s for s in dict.fromkeys(out) if s != name)


def load(p, meta: dict) -> None:
    """Take `meta` (project.json's content) as the class list."""
    p._classes = [class_from_json(c) for c in meta["classes"]]
    reindex(p)


def reindex(p) -> None:
    p._name_to_index = {c.name: i for i, c in enumerate(p._classes)}
    p._uid_to_index = {c.uid: i for i, c in enumerate(p._classes)}


def changed(p) -> None:
    reindex(p)
    save_meta(p)


def new_class(p, name, synonyms, colour, existing=None) -> ClassInfo:
    name = check_name(name)
    existing = p._classes if existing is None else existing
    if any(c.name.casefold() == name.casefold() for c in existing):
        raise ProjectError(f"a class named {name!r} already exists")
    if len(existing) >= MAX_CLASSES:
        raise ProjectError(f"at most {MAX_CLASSES} classes are supported (index 255 means unlabelled)")
    if colour is None:
        used = {c.colour for c in existing}
        colour = next(c for c in voc_palette(256)[1:] + [(0, 0, 0)] if c not in used)
    uid = int(p._meta["next_uid"])
    p._meta["next_uid"] = uid + 1
    return ClassInfo(uid, name, check_synonyms(synonyms, name), check_colour(colour))


def _check_free(p, name: str, ignore: int) -> None:
    for j, c in enumerate(p._classes):
        if j != ignore and c.name.casefold() == name.casefold():
            raise ProjectError(f"a class named {c.name!r} already exists")


def add_class(p, name: str, synonyms: Sequence[str], colour: Sequence[int] | None) -> ClassInfo:
    info = new_class(p, name, synonyms, colour)
    p._classes.append(info)
    changed(p)
    return info


def remove_class(p, name: str) -> None:
    del p._classes[p.class_index(name)]
    changed(p)


def rename_class(p, old: str, new: str) -> None:
    i = p.class_index(old)
    new = check_name(new)
    _check_free(p, new, ignore=i)
    c = p._classes[i]
    p._classes[i] = ClassInfo(c.uid, new, c.synonyms, c.colour)
    changed(p)


def reorder_classes(p, names: Sequence[str]) -> None:
    if sorted(names) != sorted(p.class_names):
        raise ProjectError(f"reorder needs every class exactly once: got {list(names)}, have {p.class_names}")
    p._classes = [p._classes[p.class_index(n)] for n in names]
    changed(p)


def set_class_synonyms(p, name: str, synonyms: Sequence[str]) -> None:
    i = p.class_index(name)
    c = p._classes[i]
    p._classes[i] = ClassInfo(c.uid, c.name, check_synonyms(synonyms, c.name), c.colour)
    changed(p)


def set_class_colour(p, name: str, colour: Sequence[int]) -> None:
    i = p.class_index(name)
    c = p._classes[i]
    p._classes[i] = ClassInfo(c.uid, c.name, c.synonyms, check_colour(colour))
    changed(p)


def set_classes_no_save(p, classes) -> None:
    """Replace the class list in memory (names already there keep their uids; new ones get new uids)."""
    old = {c.name: c for c in p._classes}
    specs = []
    for spec in classes:
        if isinstance(spec, Mapping):
            name, syn, col = spec.get("name"), spec.get("synonyms", ()), spec.get("colour", spec.get("color"))
        elif isinstance(spec, str):
            name, syn, col = spec, (), None
        else:
            spec = list(spec)
            if not spec:
                raise ProjectError("empty class entry")
            name, syn, col = spec[0], spec[1:], None
        specs.append((check_name(name), syn, col))
    folded = [n.casefold() for n, _, _ in specs]
    dup = sorted({n for n, _, _ in specs if folded.count(n.casefold()) > 1})
    if dup:
        raise ProjectError(f"class names must be unique: {dup} appear more than once")
    if len(specs) > MAX_CLASSES:
        raise ProjectError(f"at most {MAX_CLASSES} classes are supported (index 255 means unlabelled)")
    result: list[ClassInfo] = []
    for name, syn, col in specs:
        if name in old:
            c = old[name]
            result.append(ClassInfo(c.uid, name, check_synonyms(syn, name) if syn else c.synonyms,
                                    check_colour(col) if col is not None else c.colour))
    for name, syn, col in specs:  # new classes pick colours not used by the kept ones
        if name not in old:
            result.insert([n for n, _, _ in specs].index(name), new_class(p, name, syn, col, result))
    p._classes = result
    reindex(p)


def set_classes(p, classes) -> None:
    set_classes_no_save(p, classes)
    changed(p)


def set_background(p, prompts: Sequence[str]) -> None:
    prompts = list(prompts)
    if len(prompts) > MAX_BACKGROUND_PROMPTS:
        raise ProjectError(f"{len(prompts)} background prompts; at most {MAX_BACKGROUND_PROMPTS} are allowed")
    p._meta["background"] = [check_name(q) for q in prompts]
    save_meta(p)


def update_settings(p, update: Mapping) -> None:
    settings = deep_merge(p._meta["settings"], update)
    problem = settings_problem(settings)
    if problem:
        raise ProjectError(f"cannot save the settings in {p.root / PROJECT_FILE}: {problem}")
    p._meta["settings"] = settings
    save_meta(p)


# --- project.json ------------------------------------------------------------------------------
def reload_meta_if_changed(p) -> None:
    """Take project.json as another process left it (call under the project lock)."""
    path = p.root / PROJECT_FILE
    sig = files.file_sig(path)
    if sig is None or sig == p._meta_sig:
        return
    meta = validate_meta(files.read_json(path, "project file"), path)
    p._meta, p._saved_meta, p._meta_sig = meta, copy.deepcopy(meta), sig
    load(p, meta)


def save_meta(p) -> None:
    """Write project.json; when that fails, undo the in-memory change too (memory matches disk)."""
    p._meta["classes"] = [c.to_json() for c in p._classes]
    try:
        files.write_json(p.root / PROJECT_FILE, p._meta)
    except BaseException:
        p._meta = copy.deepcopy(p._saved_meta)
        load(p, p._meta)
        raise
    p._saved_meta = copy.deepcopy(p._meta)
    p._meta_sig = files.file_sig(p.root / PROJECT_FILE)
