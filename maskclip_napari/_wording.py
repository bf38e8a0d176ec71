"""What the annotator says: messages, tooltips and the core's command-line phrasing as the GUI says it.

Messages are functions (they take the values they name) or constants; panels and the widget import them
from here, so wording is changed in one place. No Qt here.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from maskclip.defaults import CLIP_STUDENT_TRAIN_DEFAULTS

# --- the core's command-line phrasing, as the annotator says it -----------------------------------------
GUI_WORDING = (
    (re.compile(r"; use --device cpu"), ": choose the cpu device under 'Model, weights and device'"),
    (re.compile(r", or --pretrained \S+ on the command line"), ""),
    (re.compile(r" \(or pass overwrite=True / --overwrite\)"), ""),
    (re.compile(r"accept the new content \(Project\.accept_image_change\) to start over"),
     "press 'Image changed on disk: start over on the new content'"),
)


def gui_text(text: str) -> str:
    for pattern, replacement in GUI_WORDING:
        text = pattern.sub(replacement, text)
    return text


# --- tooltips (a control's shortcut key is appended to its tooltip) ----------------------------------------
TIPS = {
    "open_folder": "Open a folder of images (its project is kept in a '{subfolder}' folder inside it) or a "
                   "project folder",
    "reviewed": "Verify every pixel of this image: the labels as shown are correct, unlabelled pixels are "
                "background",
    "verify_class": "Verify the pixels of the class selected as the labels layer's label (its mask on this image "
                    "is right as shown)",
    "unverify": "Un-verify every pixel of this image (their labels stay; a segmentation may change them again). "
                "Ctrl+Z undoes it",
    "unverify_class": "Un-verify the pixels of the class selected as the labels layer's label (their labels stay)",
    "next_unverified": "The next image (in list order) that is not verified yet",
    "least_confident": "The image not yet verified where the model was least sure of its labels (mean confidence of "
                       "its last segmentation over the pixels not verified); again: the next least sure",
    "review_filter": "Which images the list shows (and Next / Previous step through); the image shown stays listed",
    "unsure": "Shade the pixels of this image where the model is unsure (its best class has a probability below "
              "the threshold) and no person verified them: from the segmentation shown, else the stored one",
    "unsure_threshold": "A pixel is unsure when its best class's probability is below this",
    "next_region": "Zoom to the next unsure region of this image (largest first; shows the shading)",
    "keys": "Every key the annotator adds, and napari's that remain",
    "wand": "Click a pixel: the connected region whose CLIP features are like it (similarity at least the slider's) "
            "is previewed in cyan; Apply gives it the brush's class and verifies it. Uses the "
            "features of the segmentation shown (no model run); pan with a drag while it is on",
    "wand_similarity": "How alike (cosine of CLIP features) a pixel must be to the clicked one to join the region: "
                       "lower grows it",
    "apply_wand": "Give the previewed region the brush's class and verify it (Ctrl+Z undoes it)",
    "legend": "The project's classes as the labels layer shows them: uncheck a class to hide its pixels there "
              "(they stay labelled and saved)",
    "only_brush": "Show only the pixels of the class you paint with (napari's 'show selected')",
    "class_progress": "Per class: the share of its labelled pixels that are verified, over the whole project",
    "history": "The image's revisions (who or what made its labels, when), to restore an earlier one",
    "restore": "Make the selected revision current again (as a new revision: the labels shown now stay in the "
               "history)",
    "accept_change": "Its labels were made for the old content and are not applied. Starting over clears them "
                     "(they stay in the image's history); restoring the old file brings them back instead.",
    "brush": "The labels layer's selected label: select a class row or press 1-9",
    "dense_mode": "How CLIP's last block makes per-patch features. SCLIP / ClearCLIP / NACLIP (ViT models) give "
                  "cleaner masks than MaskCLIP at the same cost; changing it re-encodes the image once",
    "key_smoothing": "Average class probabilities over patches with similar keys (less noise)",
    "prompt_denoising": "Drop classes whose best pixel is below the threshold (fewer stray classes)",
    "scale": "Images are resized to this short side before encoding (336 is a good default)",
    "segment": "Segment the current image (verified pixels keep their labels)",
    "segment_all": "Segment every image of the project in the background",
    "model": "Any open_clip architecture with a ViT or ModifiedResNet image tower",
    "weights": "An open_clip weights tag (downloaded once, then cached) or a local checkpoint file",
    "checkpoint": "Choose a local checkpoint file",
    "learn": "Verified pixels teach every image: a per-project classifier on CLIP's features starts at the text "
             "prompts and moves toward your corrections as they accumulate (nothing to tune; it refits in the "
             "background after each saved stroke). Classes nobody corrected keep their text score",
    "learn_weight": "This project uses the class prototypes (its 'learn' setting): weight of the learned term "
                    "(0 = text only, 1 = looks only among the classes that have corrections)",
    "taught": "Verified pixels of the class over the project: what 'Learn from corrections' learned from",
    "taught_background": "Confirmed background (verified unlabelled pixels): it teaches the background prompts",
    "export_format": "voc: indexed PNGs + image sets; coco: RLE annotations.json; index: one indexed PNG per image "
                     "+ classes.json",
    "export_val": "Share of the images in the VOC validation split (ImageSets/Segmentation/val.txt; 0 = none). "
                  "With at least two images, a non-zero share keeps one.",
    "export": "Choose a folder; a folder that is not empty asks before files are replaced",
    # training
    "iters": "Training iterations; auto: the measured default for the network (see Advanced → Self-training for "
             "how they are split between the training-free labels and the network's own predictions)",
    "student": "The network trained; auto: the clip student (the CLIP tower itself) on a CPU, DeepLabV3 on a GPU",
    "crop": "Side of the random training crops (smaller: faster, less context)",
    "base": "Images are resized to this short side (then scaled 0.5-2x) for training and to it for refining",
    "imagenet": "Start from torchvision's ImageNet weights (downloaded once); without them training needs many "
                "more iterations",
    "self_training": "When the network starts learning from its own predictions instead of MaskCLIP's labels "
                     "(verified pixels always stay ground truth). A network without ImageNet weights collapses "
                     "onto the commonest classes when it self-trains early.",
    "train_start": "Train in a new run folder (PROJECT/runs/...), then refine the labels",
    "train_cancel": "Stop after the current iteration; a checkpoint is kept for Resume",
    "train_resume": "Continue the last run from its checkpoint, then refine",
    "train_refine": "Relabel every image with the last run's trained network",
}
TRAINING_INTRO = ("Trains a segmentation network on training-free labels (the "
                  f"{CLIP_STUDENT_TRAIN_DEFAULTS['teacher_mode']} mode's for the clip network, the best measured) "
                  "and your verified pixels, then relabels every image with it (verified pixels never change).")

# --- annotator messages ------------------------------------------------------------------------------------
START = "Open a folder of images to start."
NO_PROJECT = "No project open"
OPEN_FIRST = "Open a folder of images first."
STILL_OPENING = "Still opening the project: try again once its first image shows."
ADD_CLASSES_FIRST = "Add at least one class (for example: road, car, tree, sky)."
SELECT_CLASS_FIRST = "Select a class as the labels layer's label first."
BUSY = "Busy: wait for the running job or cancel it."
WEIGHTS_HINT = ("\n\nIn the annotator: open 'Model, weights and device' and choose a local checkpoint file with "
                "the … button.")
COULD_NOT_LOAD = " Could not load: see the message at the top."
SAVE_TARGETS = {"labels": "the labels of {image_id}", "prediction": "the segmentation of {image_id}",
                "settings": "the project settings"}


def could_not_save(kind: str, image_id: str, error) -> str:
    return f"Could not save {SAVE_TARGETS[kind].format(image_id=image_id)}: {error}"


def skipped_files(skipped) -> str:
    """The unreadable files by name (the first few) and why ('' when none)."""
    if not skipped:
        return ""
    shown = "; ".join(f"{Path(p).name} ({r})" for p, r in skipped[:3])
    more = f"; and {len(skipped) - 3} more (maskclip project status lists them)" if len(skipped) > 3 else ""
    return f" Skipped {len(skipped)} unreadable files: {shown}{more}."


def added_images(added: int, present: int) -> str:
    text = f"Added {added} images."
    return text + (f" {present} were already in the project." if present else "")


def opening(name: str) -> str:
    return f"Opening {name}…"


def reading(image_id: str) -> str:
    return f"Reading {image_id}…"


READING_PREFIX = "Reading "


def opened(name: str, count: int, note: str) -> str:
    return f"Opened {name}: {count} images.{note}"


def showing(image_id: str, position: int, count: int) -> str:
    return f"{image_id} ({position}/{count})."


def classes_now(names) -> str:
    return f"Classes: {', '.join(names) or 'none'}."


def nothing_to(done: str, image_id: str) -> str:
    return f"Nothing to {done[:-2].lower()} on {image_id}."


def step_done(done: str, image_id: str) -> str:
    return f"{done} the last edit of {image_id}."


def accepted_change(image_id: str) -> str:
    return f"{image_id}: the new content is the project's; its earlier labels are in its history."


def reviewed(image_id: str, labelled: int, background: int) -> str:
    return f"{image_id}: reviewed: {labelled} labelled and {background} background pixels verified."


def unverified(image_id: str, count: int, name: str | None = None) -> str:
    what = f"'{name}' pixels" if name is not None else "pixels"
    return f"Un-verified {count} {what} of {image_id} (their labels stay; Ctrl+Z undoes it)."


REVIEW_UNSEGMENTED_TITLE = "Mark the whole image verified?"


def review_unsegmented(image_id: str) -> str:
    return (f"{image_id} was never segmented: Reviewed ✓ verifies it as shown, every unlabelled pixel as "
            "background. Mark it verified?")


def class_verified(image_id: str, count: int, name: str) -> str:
    if count == 0:
        return f"{image_id} has no '{name}' pixels: nothing verified."
    return f"{image_id}: its {count} '{name}' pixels verified."


def pixel_count(count: int) -> str:
    """A pixel count short enough for a table cell: 950, 12k, 3.4M."""
    if count < 1000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1000:.0f}k" if count >= 10_000 else f"{count / 1000:.1f}k"
    return f"{count / 1_000_000:.1f}M"


def taught(count: int, name: str) -> str:
    return f"{count:,} verified pixels of {name} taught the learner"


def background_taught(count: int) -> str:
    return f"taught {pixel_count(count)} px"


def updated(image_id: str) -> str:
    return f"{image_id}: MaskCLIP's labels redone with the new setting (verified pixels kept)."


def relearned(image_id: str) -> str:
    return f"{image_id}: learned from your corrections; MaskCLIP's labels redone (verified pixels kept)."


def brush(index: int, name: str | None, colour=None) -> str:
    """The brush line: which class the labels layer paints (napari's label box shows only a number)."""
    if name is None:
        return f"Brush: label {index + 1} (not a class: select one, or press 1-9)"
    r, g, b = colour
    return (f"Brush: <span style='color: rgb({r},{g},{b})'>■</span> {name} "
            f"(label {index + 1}{', key ' + str(index + 1) if index < 9 else ''})")


def progress(verified: int, total: int) -> str:
    return f"{verified} / {total} verified"


def all_verified(total: int) -> str:
    return f"All {total} images are verified."


REVIEW_FILTERS = {"all": "all images", "unverified": "unverified", "partly": "partly verified",
                  "reviewed": "reviewed"}
NO_CONFIDENCE = ("No image left to review has a stored confidence: segment the images first (Segment all); "
                 "a confidence is kept with each segmentation.")


def least_confident(image_id: str, confidence: float, rank: int, count: int) -> str:
    return f"{image_id}: mean confidence {confidence:.2f} (least sure {rank} of {count} not verified)"


def none_match(filter_name: str) -> str:
    return f"No other image is '{filter_name}': choose another filter above the list."


NO_CONFIDENCE_HERE = "No confidence for this image yet: segment it (G) to see where the model is unsure."
NO_UNSURE_REGION = "No unsure region left on this image at this threshold."
UNSURE_SOURCES = {"shown": "the segmentation shown", "stored": "the image's last stored segmentation"}


def unsure_share(share: float, below: float, source: str) -> str:
    return f"Unsure (below {below:.2f}, not verified): {share:.1%} of the image, from {UNSURE_SOURCES[source]}"


def unsure_region(rank: int, count: int, pixels: int) -> str:
    return f"Unsure region {rank} of {count} ({pixels:,} pixels)"


# --- the keyboard help (rows from _shortcuts.help_rows, in the ? dialog and the README) --------------------
SHORTCUT_WORDS = {
    "next_image": "next image (exactly one, also from the image list; follows the list's filter)",
    "previous_image": "previous image",
    "next_unverified": "*Next unverified ▶* (the next image not verified yet)",
    "next_least_confident": "*Least confident ▶* (the image not verified where the model was least sure)",
    "segment_current": "segment the image",
    "mark_reviewed": "*Reviewed ✓*",
    "verify_selected_class": "*Class ✓* (the brush's class)",
    "toggle_key_smoothing": "toggle key smoothing",
    "toggle_prompt_denoising": "toggle prompt denoising",
    "toggle_unsure": "show / hide where the model is unsure (the low-confidence shading)",
    "next_unsure_region": "zoom to the next unsure region of the image",
    "show_keys": "the keyboard help (this list)",
    "toggle_wand": "the feature wand on / off (click a pixel to preview its region)",
    "apply_wand": "*Apply wand ✓* (the previewed region takes the brush's class, verified)",
}
LAYER_KEY_WORDS = {
    "classes": "paint with class 1 … 9",
    "undo": "undo / redo (labels and verified pixels), per image for the session",
    "tools": "napari's tools, in this order: {tools}",
    "new_label": "(napari's new label) says how to pick a class: every label is a class",
}
NAPARI_KEY_WORDS = (  # napari's own keys that still work as napari made them
    ("[ / ]", "napari: smaller / larger brush"),
    ("Space (hold)", "napari: pan and zoom while held"),
    ("B", "napari: paint over unlabelled pixels only (preserve labels)"),
    ("V", "napari: show / hide the selected layer"),
    ("Ctrl+R", "napari: fit the image to the window"),
)
KEYS_TITLE = "Keyboard shortcuts"
KEYS_INTRO = ("The annotator's keys work wherever focus is in the viewer's window (text fields keep the letters "
              "typed into them); the labels layer's keys while the canvas has focus.")


LEGEND_TITLE = "Class legend"


def legend_row(index: int, name: str) -> str:
    return f"{index + 1}  {name}" if index < 9 else f"    {name}"


WAND_ON = "Feature wand: click a pixel to preview its region (drag to pan); W turns it off."
WAND_NEEDS_FEATURES = ("The wand uses the features of the segmentation shown: segment this image first (G) with "
                       "the model loaded.")


def similarity(value: float) -> str:
    return f"similarity ≥ {value:.2f}"


def wand_preview(pixels: int, value: float) -> str:
    return f"Wand: {pixels:,} pixels at similarity ≥ {value:.2f}. Apply (Shift+W) or move the slider."


def wand_applied(pixels: int, name: str, image_id: str) -> str:
    return f"{pixels:,} pixels of {image_id} are now '{name}', verified (Ctrl+Z undoes it)."


def class_progress(progress: dict, colours) -> str:
    """Per class "■ road 12%" (the share of its labelled pixels verified), as rich text."""
    parts = []
    for (name, (labelled, verified)), (r, g, b) in zip(progress.items(), colours):
        share = f"{verified / labelled:.0%}" if labelled else "–"
        parts.append(f"<span style='color: rgb({r},{g},{b})'>■</span>&nbsp;{html.escape(name)}&nbsp;{share}")
    return "Verified per class: " + " · ".join(parts) if parts else ""


REVISIONS_TITLE = "Revisions of the image"


def revisions_of(image_id: str, count: int) -> str:
    return f"{image_id}: {count} revisions kept, newest first (unverified pixels come from the newest that is no edit)."


def restored(image_id: str, rev: int) -> str:
    return f"{image_id}: revision r{rev} restored (a new revision; the previous labels stay in the history)."


NO_NEW_LABEL = "Labels are the project's classes: press 1-9 or pick a class row (add a class for a new label)."
SETTING_NO_MODEL = "Setting saved; no model is loaded, so it applies at the next Segment."


def previewing(what: str) -> str:
    return (f"Preview with the new MaskCLIP setting (confidence layers); the {what} are kept. "
            "Segment image replaces them.")


def replacing(what: str, image_id: str) -> str:
    return f"Segment replaces the {what} of {image_id} with MaskCLIP's (verified pixels are kept)."


def replacing_all(count: int, total: int) -> str:
    return (f"Segment all replaces the unverified labels of {total} images, {count} of them from MaskCLIP+, "
            "an import or a restore (verified pixels are kept).")


def stale_skipped(count: int) -> str:
    return f"{count} images changed on disk since import and are skipped."


LOADING_PREFIX = "Loading "  # the worker's message while the model loads
LOADING_MODEL = "Loading model…"


def loaded(description: str) -> str:
    return f"Loaded {description}."


def job_cancelled(kind: str) -> str:
    return f"{kind}: cancelled."


def job_done(kind: str) -> str:
    return f"{kind}: done."


def job_cancelling(kind: str) -> str:
    return f"{kind}: cancelling after the current image…"


def model_state(description: str, where: str | None = None, on_cpu: bool = False, device: str = "",
                no_gpu: bool = False) -> str:
    """The model line: loaded (where it runs) or not yet (where it will run)."""
    if where is not None:
        if on_cpu:
            return (f"{description} on the CPU (no GPU in use): encoding an image takes seconds; "
                    "redraws of encoded images stay instant.")
        return f"{description} on {where}."
    return f"{description}: loads on first use, runs on {device}." + (" No GPU found." if no_gpu else "")


def exporting(fmt: str, out) -> str:
    return f"Exporting {fmt} to {out}…"


def exported(report, fmt: str, out) -> str:
    text = f"Exported {len(report.exported)} images as {fmt} to {out}."
    if not report.exported:
        text += " No image had labels to export (with 'verified only': no verified image)."
    if fmt == "voc":
        text += f" Split: {len(report.splits['train'])} train, {len(report.splits['val'])} val."
    if report.skipped:
        shown = "; ".join(f"{image_id} ({reason})" for image_id, reason in report.skipped[:3])
        more = f"; and {len(report.skipped) - 3} more" if len(report.skipped) > 3 else ""
        text += f" Skipped {len(report.skipped)}: {shown}{more}."
    return text


EXPORT_NOT_EMPTY_TITLE = "Export folder is not empty"
EXPORT_NOT_EMPTY_INFO = ("Replace the files this export writes there (other files stay as they are), or choose "
                         "another folder?")

# --- training panel messages -------------------------------------------------------------------------------
NO_RUN = "No training run yet."
TRAIN_NEEDS_CLASSES = "Add classes before training."
TRAIN_STARTING = "Starting the training process…"
REFINING = "Refining the labels…"
TRAIN_DONE_REFINING = "Training done; refining the labels…"
TRAIN_DONE_NOT_REFINED = "Training done; the labels were not refined (napari closed). Press Refine."
STOPPED_ON_CLOSE = "The process was stopped because napari closed."
RUN_STATE_NOTES = {"running": " (not running in this session: Resume continues it)",
                   "cancelled": " (Resume continues it)"}


def last_run(name: str, status: str, state: str | None) -> str:
    return f"Last run {name}: {status}{RUN_STATE_NOTES.get(state, '')}"


def cannot_create_run(run_dir, exc) -> str:
    return f"Cannot create the run folder {run_dir}: {exc}"


def cancelling(stage: str) -> str:
    return f"Cancelling the {stage}…"


def train_cancelled(iteration, total) -> str:
    return f"Cancelled at iteration {iteration}/{total}; the checkpoint is kept: Resume continues."


def train_killed(summary: str) -> str:
    return "The training process was killed. " + summary + "\nResume continues from the last checkpoint."


def train_failed(summary: str) -> str:
    return "Training failed:\n" + summary


def refine_failed(summary: str) -> str:
    return "Refining failed:\n" + summary


def refined(summary: dict, skipped: list[str]) -> str:
    note = f" Skipped {len(skipped)} unreadable: {', '.join(skipped[:5])}." if skipped else ""
    return (f"Refined {summary.get('refined', 0)} images ({summary.get('changed_pixels', 0)} pixels changed; "
            "verified pixels kept). The previous labels are in each image's history." + note)


def other_project(root, text: str) -> str:
    return f"{root}: {text}"  # the user opened another project meanwhile
