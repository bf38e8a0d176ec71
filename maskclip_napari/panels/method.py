"""The "MaskCLIP" panel: how images are segmented and with which model.

Dense mode, key smoothing, prompt denoising and its threshold, the short side, learning from corrections;
Segment image / Segment all / Cancel and the job's progress bar; the model, weights and device (collapsed)
and the model line. It turns the project's settings into controls (`load_settings`) and back
(`settings_update`), and makes the `Method` and `ModelChoice` a segmentation uses.

Signals: changed (a method control changed: redraw), model_changed (model, weights or device changed),
segment_requested, segment_all_requested, cancel_requested, load_requested.
"""
from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible, QLabeledDoubleSlider

from maskclip.defaults import (DEFAULT_DEVICE, DEFAULT_MODEL, DEFAULT_PRETRAINED, DEFAULT_SCALES, DEVICE_CHOICES,
                               SUGGESTED_MODELS)
from maskclip.dense_modes import DENSE_MODE_LABELS
from maskclip.options import DENSE_MODE_NAMES, MODE_DEFAULTS
from maskclip.settings import LEARN_DEFAULTS, clip_spec, learn_spec, parse_pretrained

from .. import _wording as say
from ._narrow import NarrowCombo
from .._session import Method, ModelChoice
from .._torch_env import loaded_torch

MODELS = SUGGESTED_MODELS
RANDOM_WEIGHTS = "random (untrained, for testing)"


class MethodPanel(QGroupBox):
    changed = Signal()
    model_changed = Signal()
    segment_requested = Signal()
    segment_all_requested = Signal()
    cancel_requested = Signal()
    load_requested = Signal()

    def __init__(self, parent=None):
        super().__init__("MaskCLIP", parent)
        v = QVBoxLayout(self)
        form = QFormLayout()
        toggles = QHBoxLayout()
        self.ks_check = QCheckBox("Key smoothing")
        self.ks_check.setToolTip(say.TIPS["key_smoothing"])
        self.pd_check = QCheckBox("Prompt denoising")
        self.pd_check.setToolTip(say.TIPS["prompt_denoising"])
        toggles.addWidget(self.ks_check)
        toggles.addWidget(self.pd_check)
        form.addRow(toggles)
        # the dense mode: MaskCLIP or a training-free successor (each with its own KS/PD defaults)
        self.dense_mode_combo = NarrowCombo()
        for mode in DENSE_MODE_NAMES:
            self.dense_mode_combo.addItem(DENSE_MODE_LABELS[mode], mode)
        self.dense_mode_combo.setToolTip(say.TIPS["dense_mode"])
        self.dense_mode_combo.currentIndexChanged.connect(self._on_dense_mode_changed)
        form.addRow("Dense mode", self.dense_mode_combo)
        self.pd_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.pd_slider.setRange(0.0, 1.0)
        self.pd_slider.setSingleStep(0.05)
        self.pd_slider.setDecimals(2)
        form.addRow("PD threshold", self.pd_slider)
        self.scale_spin = QSpinBox()
        self.scale_spin.setRange(64, 2048)
        self.scale_spin.setSingleStep(16)
        self.scale_spin.setSuffix(" px")
        self.scale_spin.setToolTip(say.TIPS["scale"])
        form.addRow("Short side", self.scale_spin)
        form.addRow(self._build_learning_row())
        v.addLayout(form)
        for w in (self.ks_check, self.pd_check, self.learn_check):
            w.toggled.connect(self._on_changed)
        for w in (self.pd_slider, self.scale_spin, self.learn_weight):
            w.valueChanged.connect(self._on_changed)

        row = QHBoxLayout()
        self.segment_button = QPushButton("Segment image")
        self.segment_button.setToolTip(say.TIPS["segment"])
        self.segment_all_button = QPushButton("Segment all")
        self.segment_all_button.setToolTip(say.TIPS["segment_all"])
        self.cancel_button = QPushButton("Cancel")
        self.segment_button.clicked.connect(lambda: self.segment_requested.emit())
        self.segment_all_button.clicked.connect(lambda: self.segment_all_requested.emit())
        self.cancel_button.clicked.connect(lambda: self.cancel_requested.emit())
        for b in (self.segment_button, self.segment_all_button, self.cancel_button):
            row.addWidget(b)
        v.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        v.addWidget(self.progress)
        v.addWidget(self._build_model_box())
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        v.addWidget(self.model_label)
        for combo in (self.model_combo, self.weights_combo, self.device_combo):
            combo.currentTextChanged.connect(lambda *_: self.model_changed.emit())

    def _build_learning_row(self) -> QHBoxLayout:
        """'Learn from corrections' with the learner the project's settings name (`settings.learn_spec`, as
        `maskclip project segment --learn-from-verified` uses it). The default text-prior learner has
        nothing to tune; the weight shows only for a project set to the class prototypes."""
        row = QHBoxLayout()
        self.learn_check = QCheckBox("Learn from corrections")
        self.learn_check.setToolTip(say.TIPS["learn"])
        self.learn_weight = QDoubleSpinBox()
        self.learn_weight.setRange(0.0, 1.0)
        self.learn_weight.setSingleStep(0.1)
        self.learn_weight.setDecimals(2)
        self.learn_weight.setToolTip(say.TIPS["learn_weight"])
        self._weight_label = QLabel("weight")
        row.addWidget(self.learn_check)
        row.addWidget(self._weight_label)
        row.addWidget(self.learn_weight)
        self._learner = LEARN_DEFAULTS["learner"]
        self._show_weight()
        return row

    def _show_weight(self) -> None:
        for w in (self._weight_label, self.learn_weight):
            w.setVisible(self._learner == "prototypes")

    def _build_model_box(self) -> QCollapsible:
        model_box = QCollapsible("Model, weights and device")
        inner = QWidget()
        mform = QFormLayout(inner)
        mform.setContentsMargins(0, 0, 0, 0)
        self.model_combo = NarrowCombo()
        self.model_combo.setEditable(True)
        self.model_combo.addItems(MODELS)
        self.model_combo.setToolTip(say.TIPS["model"])
        self.weights_combo = NarrowCombo()
        self.weights_combo.setEditable(True)
        self.weights_combo.addItems([DEFAULT_PRETRAINED, RANDOM_WEIGHTS])
        self.weights_combo.setToolTip(say.TIPS["weights"])
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.setToolTip(say.TIPS["checkpoint"])
        browse.clicked.connect(self._choose_checkpoint)
        wrow = QHBoxLayout()
        wrow.addWidget(self.weights_combo, 1)
        wrow.addWidget(browse)
        self.device_combo = NarrowCombo()
        self.device_combo.addItems(list(DEVICE_CHOICES))
        self.load_button = QPushButton("Load model")
        self.load_button.clicked.connect(lambda: self.load_requested.emit())
        mform.addRow("Architecture", self.model_combo)
        mform.addRow("Weights", wrow)
        mform.addRow("Device", self.device_combo)
        mform.addRow(self.load_button)
        model_box.addWidget(inner)
        return model_box

    # --- controls ---------------------------------------------------------------------------------
    def _on_changed(self, *_):
        self.update_enabled()
        self.changed.emit()

    def update_enabled(self) -> None:
        self.pd_slider.setEnabled(self.pd_check.isChecked())
        self.learn_weight.setEnabled(self.learn_check.isChecked())

    def _on_dense_mode_changed(self, *_):
        """The mode's own KS / PD defaults (the successors' papers use neither), then a redraw."""
        defaults = MODE_DEFAULTS[self.dense_mode()]
        for check, on in ((self.ks_check, defaults.key_smoothing), (self.pd_check, defaults.prompt_denoising)):
            check.blockSignals(True)
            check.setChecked(on)
            check.blockSignals(False)
        self.pd_slider.setEnabled(self.pd_check.isChecked())
        self._on_changed()

    def _choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a CLIP checkpoint",
                                              filter="Checkpoints (*.pt *.pth *.bin *.safetensors);;All files (*)")
        if path:
            self.weights_combo.setCurrentText(path)

    def set_job_state(self, can_segment: bool, can_segment_all: bool, busy: bool) -> None:
        self.segment_button.setEnabled(can_segment)
        self.segment_all_button.setEnabled(can_segment_all)
        self.load_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    # --- settings <-> controls --------------------------------------------------------------------
    def load_settings(self, settings: dict | None) -> None:
        """Show a project's settings (None: the defaults) without emitting any signal."""
        settings = settings or {}
        method = settings.get("method", {})
        model = settings.get("model", {})
        widgets = (self.ks_check, self.pd_check, self.pd_slider, self.scale_spin, self.dense_mode_combo,
                   self.learn_check, self.learn_weight, self.model_combo, self.weights_combo, self.device_combo)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.ks_check.setChecked(bool(method.get("key_smoothing", True)))
            self.pd_check.setChecked(bool(method.get("prompt_denoising", True)))
            self.pd_slider.setValue(float(method.get("pd_threshold", 0.5)))
            self.scale_spin.setValue(int((method.get("scales") or DEFAULT_SCALES)[0]))
            self.dense_mode_combo.setCurrentIndex(max(0, self.dense_mode_combo.findData(model.get("dense_mode"))))
            learn = learn_spec(settings)
            self.learn_check.setChecked(learn["from_verified"])
            self.learn_weight.setValue(learn["weight"])
            self._learner = learn["learner"]
            self._show_weight()
            self.model_combo.setCurrentText(model.get("name", DEFAULT_MODEL))
            weights = model.get("pretrained", DEFAULT_PRETRAINED)
            self.weights_combo.setCurrentText(RANDOM_WEIGHTS if weights is None else str(weights))
            self.device_combo.setCurrentText(settings.get("annotator", {}).get("device", DEFAULT_DEVICE))
        finally:
            for w in widgets:
                w.blockSignals(False)
        self.update_enabled()

    def set_model_choice(self, model: str | None = None, weights: str | None = None,
                         device: str | None = None) -> None:
        """Preset the model controls; None keeps the current value."""
        if model:
            self.model_combo.setCurrentText(model)
        if weights:
            self.weights_combo.setCurrentText(weights)
        if device:
            self.device_combo.setCurrentText(device)

    def model_choice(self) -> ModelChoice:
        weights = self.weights_combo.currentText().strip()
        return ModelChoice(name=self.model_combo.currentText().strip() or DEFAULT_MODEL,
                           weights=None if weights in ("", RANDOM_WEIGHTS) else parse_pretrained(weights),
                           device=self.device_combo.currentText())

    def dense_mode(self) -> str:
        return self.dense_mode_combo.currentData() or "maskclip"

    def learner(self) -> str | None:
        """The learner 'Learn from corrections' uses (the project's setting), None while it is off."""
        return self._learner if self.learn_check.isChecked() else None

    def method(self, project) -> Method:
        """The segmentation method the controls show, for `project`'s classes."""
        return Method(classes=tuple(tuple(c) for c in project.prompts), background=tuple(project.background),
                      key_smoothing=self.ks_check.isChecked(), prompt_denoising=self.pd_check.isChecked(),
                      pd_threshold=round(float(self.pd_slider.value()), 4), scales=(int(self.scale_spin.value()),),
                      dense_mode=self.dense_mode(), other_options=self._other_options(project),
                      learner=self.learner(), learn_weight=round(float(self.learn_weight.value()), 4))

    def _other_options(self, project) -> tuple:
        """SegmentOptions set in the project's settings (CLI or API) that have no control here; the
        mode-dependent ones only while the project's stored mode is shown."""
        spec = clip_spec(project, dense_mode=self.dense_mode())["segment"]
        shown = ("key_smoothing", "prompt_denoising", "pd_threshold")
        return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.items()
                     if k not in shown and k not in ("background", "scales"))

    def settings_update(self, project) -> dict:
        """The project settings the controls show (`Project.update_settings`)."""
        choice = self.model_choice()
        m = self.method(project) if project.classes else None
        update = {"model": {"name": choice.name, "pretrained": choice.weights, "dense_mode": self.dense_mode()},
                  "annotator": {"device": choice.device}}
        if m is not None:
            update["method"] = {"key_smoothing": m.key_smoothing, "prompt_denoising": m.prompt_denoising,
                                "pd_threshold": m.pd_threshold, "scales": list(m.scales)}
        update["learn"] = {"from_verified": self.learn_check.isChecked()}
        if self._learner == "prototypes":  # the text-prior learner has no weight
            update["learn"]["weight"] = round(float(self.learn_weight.value()), 4)
        return update

    # --- the model line ---------------------------------------------------------------------------
    def show_model_state(self, session) -> None:
        """Whether the chosen model is loaded (by `session`) and where it runs (or will run)."""
        choice = self.model_choice()
        if session is not None and session.choice == choice:
            text = say.model_state(choice.describe(), where=session.model.device, on_cpu=session.on_cpu)
        else:  # torch is imported by the first model load (a worker), never here: it takes seconds
            torch = loaded_torch()
            if choice.device == "cpu":
                device = "the CPU"
            elif torch is None:
                device = "the GPU if one is usable, else the CPU"
            else:
                device = "the GPU" if torch.cuda.is_available() else "the CPU"
            text = say.model_state(choice.describe(), device=device,
                                   no_gpu=device == "the CPU" and choice.device == "auto")
        self.model_label.setText(text)

    def note_load_failure(self) -> None:
        self.model_label.setText(self.model_label.text() + say.COULD_NOT_LOAD)
