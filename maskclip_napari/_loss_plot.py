"""The training loss curve (QPainter: small and with no plotting dependency); its geometry is plain
functions, tested without a display."""
from __future__ import annotations

import math
from typing import Sequence

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

PHASE_COLOURS = {"guided": "#e6a23c", "self-training": "#4a9eff"}


def loss_range(losses: Sequence[float]) -> tuple[float, float, bool]:
    """(low, high, logarithmic) y range of a loss curve: logarithmic when it spans over a factor 20 (the
    first iterations' loss would otherwise flatten the rest)."""
    lo, hi = min(losses), max(losses)
    if lo > 0 and hi / lo > 20:
        return lo, hi, True
    lo = min(0.0, lo)
    return lo, (hi if hi > lo else lo + 1.0), False


def curve_points(records: Sequence[dict], total: int, width: float, height: float) -> list[tuple[float, float]]:
    """Pixel positions of the records' losses in a width x height box (x: iteration 0..total, y: the
    loss_range, high values at the top)."""
    if not records:
        return []
    losses = [float(r["loss"]) for r in records]
    lo, hi, log = loss_range(losses)
    f = math.log10 if log else (lambda v: v)
    span = (f(hi) - f(lo)) or 1.0
    xmax = max(total, records[-1]["iteration"], 1)
    return [(r["iteration"] / xmax * width, height - (f(v) - f(lo)) / span * height) for r, v in zip(records, losses)]


class LossPlot(QWidget):
    """The training loss against the iteration, coloured by phase (guided / self-training), drawn with
    QPainter: small and with no plotting dependency."""

    MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP, MARGIN_RIGHT = 42, 16, 14, 8

    def __init__(self, parent=None):
        super().__init__(parent)
        self.records: list[dict] = []
        self.total = 0
        self.setMinimumHeight(130)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_data(self, records: Sequence[dict], total: int) -> None:
        self.records, self.total = list(records), int(total)
        self.update()

    def paintEvent(self, event):
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().color(QPalette.ColorRole.WindowText)
        faint = QColor(text)
        faint.setAlpha(60)
        font = p.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
        p.setFont(font)
        box = QRectF(self.MARGIN_LEFT, self.MARGIN_TOP, self.width() - self.MARGIN_LEFT - self.MARGIN_RIGHT,
                     self.height() - self.MARGIN_TOP - self.MARGIN_BOTTOM)
        p.setPen(QPen(faint, 1))
        p.drawRect(box)
        p.setPen(text)
        if not self.records:
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, "loss curve: no iterations logged yet")
            p.end()
            return
        losses = [float(r["loss"]) for r in self.records]
        lo, hi, log = loss_range(losses)
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        label_w = self.MARGIN_LEFT - 4
        p.drawText(QRectF(0, box.top() - 7, label_w, 14), right, f"{hi:.3g}")
        p.drawText(QRectF(0, box.bottom() - 7, label_w, 14), right, f"{lo:.3g}")
        p.drawText(QRectF(0, box.center().y() - 7, label_w, 14), right, "log" if log else "loss")
        xmax = max(self.total, self.records[-1]["iteration"], 1)
        p.drawText(QRectF(box.left(), box.bottom() + 1, box.width(), 14), Qt.AlignmentFlag.AlignLeft, "0")
        p.drawText(QRectF(box.left(), box.bottom() + 1, box.width(), 14), Qt.AlignmentFlag.AlignRight,
                   f"{xmax} iterations")
        points = curve_points(self.records, self.total, box.width(), box.height())
        # one path per phase run, joined to the previous point so the curve stays continuous
        prev, path, phase = None, None, None
        for rec, (x, y) in zip(self.records, points):
            pt = QPointF(box.left() + x, box.top() + y)
            if rec.get("phase") != phase:
                if path is not None:
                    self._stroke(p, path, phase)
                phase, path = rec.get("phase"), QPainterPath(prev if prev is not None else pt)
            path.lineTo(pt)
            prev = pt
        self._stroke(p, path, phase)
        # legend
        x = box.right() - 4
        for name in reversed([ph for ph in PHASE_COLOURS if any(r.get("phase") == ph for r in self.records)]):
            w = p.fontMetrics().horizontalAdvance(name)
            p.setPen(QColor(PHASE_COLOURS[name]))
            p.drawText(QRectF(x - w, box.top() + 2, w, 14), right, name)
            x -= w + 10
        p.end()

    @staticmethod
    def _stroke(p: QPainter, path: QPainterPath, phase) -> None:
        p.setPen(QPen(QColor(PHASE_COLOURS.get(phase, "#bbbbbb")), 1.6))
        p.drawPath(path)
