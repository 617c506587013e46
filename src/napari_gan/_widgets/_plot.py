"""A live plot of training losses and validation metrics, painted with QPainter.

Not matplotlib: a matplotlib redraw of two panels takes 0.1-0.9 s of the GUI thread
(more while the trainer competes for the CPU), which would freeze napari's canvas several
times a second. Painting a few polylines costs about a millisecond, and the curves are
thinned to the widget's width, so long runs cost no more.
"""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

BACKGROUND = "#262930"   # napari's dark theme
FOREGROUND = "#f0f1f2"
MUTED = "#8a929c"
FRAME = "#5a626c"
COLORS = ["#4fc3f7", "#ffb74d", "#e57373", "#81c784", "#ba68c8", "#fff176"]
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 46, 46, 16, 18


class TrainingPlot(QWidget):
    """Two panels: losses per step (log scale when all are positive) and validation metrics
    per step. The first metric is drawn on the left axis, a second one (e.g. SSIM next to
    PSNR) on a right axis, because their ranges differ."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(260)
        self.losses: dict[str, tuple[list[int], list[float]]] = {}
        self.metrics: dict[str, tuple[list[int], list[float]]] = {}
        self.dirty = False

    # ----------------------------------------------------------------------- data
    def reset(self) -> None:
        self.losses.clear()
        self.metrics.clear()
        self._redraw()

    def add(self, step: int, losses: dict[str, float] | None = None,
            metrics: dict[str, float] | None = None, redraw: bool = True) -> None:
        """Record values; ``redraw=False`` only marks the plot for the next :meth:`redraw`."""
        for store, values in ((self.losses, losses), (self.metrics, metrics)):
            for name, value in (values or {}).items():
                steps, ys = store.setdefault(name, ([], []))
                if steps and steps[-1] == step:   # the final event repeats the last step
                    ys[-1] = float(value)
                else:
                    steps.append(int(step))
                    ys.append(float(value))
        self.dirty = True
        if redraw:
            self._redraw()

    def redraw(self) -> None:
        """Redraw if something was added since the last drawing."""
        if self.dirty:
            self._redraw()

    def _redraw(self) -> None:
        self.dirty = False
        self.update()          # painted in the next paint event

    # -------------------------------------------------------------------- painting
    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.fillRect(self.rect(), QColor(BACKGROUND))
            font = QFont(painter.font())
            font.setPointSizeF(7.5)
            painter.setFont(font)
            half = self.height() / 2
            top = QRectF(0, 0, self.width(), half)
            bottom = QRectF(0, half, self.width(), self.height() - half)
            x_range = _step_range([*self.losses.values(), *self.metrics.values()])
            self._paint_losses(painter, top, x_range)
            self._paint_metrics(painter, bottom, x_range)
        finally:
            painter.end()

    def _paint_losses(self, painter: QPainter, area: QRectF, x_range) -> None:
        box = _plot_box(area)
        _frame(painter, box, "training losses")
        series = [(name, np.asarray(s), np.asarray(y)) for name, (s, y) in self.losses.items() if s]
        if not series:
            return
        log = all((y > 0).all() for _, _, y in series if np.isfinite(y).any())
        ys = [_finite(np.log10(y) if log else y) for _, _, y in series]
        y_range = _value_range(np.concatenate(ys))
        _y_ticks(painter, box, y_range, log, left=True, color=MUTED)
        _x_ticks(painter, box, x_range)
        for i, ((name, steps, _), y) in enumerate(zip(series, ys)):
            _polyline(painter, box, steps, y, x_range, y_range, COLORS[i % len(COLORS)], markers=False)
        _legend(painter, box, [(name, COLORS[i % len(COLORS)]) for i, (name, _, _) in enumerate(series)])

    def _paint_metrics(self, painter: QPainter, area: QRectF, x_range) -> None:
        box = _plot_box(area)
        _frame(painter, box, "validation")
        names = [n for n, (s, _) in self.metrics.items() if s][:2]
        if not names:
            painter.setPen(QColor(MUTED))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, "metrics appear after the first validation")
            return
        for i, name in enumerate(names):
            steps, values = (np.asarray(v) for v in self.metrics[name])
            values = _finite(values)
            color = COLORS[(i + 2) % len(COLORS)]
            y_range = _value_range(values)
            _y_ticks(painter, box, y_range, False, left=i == 0, color=color)
            _polyline(painter, box, steps, values, x_range, y_range, color, markers=True)
        _x_ticks(painter, box, x_range)
        _legend(painter, box, [(n, COLORS[(i + 2) % len(COLORS)]) for i, n in enumerate(names)])


# ------------------------------------------------------------------------ geometry
def _plot_box(area: QRectF) -> QRectF:
    return area.adjusted(MARGIN_LEFT, MARGIN_TOP, -MARGIN_RIGHT, -MARGIN_BOTTOM)


def _step_range(series) -> tuple[float, float]:
    steps = [s for s, _ in series if s]
    if not steps:
        return 0.0, 1.0
    lo, hi = min(s[0] for s in steps), max(s[-1] for s in steps)
    return (float(lo), float(hi)) if hi > lo else (float(lo) - 0.5, float(lo) + 0.5)


def _finite(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, np.nan)


def _value_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(lo) * 0.05, 0.5)
    return lo - pad, hi + pad


def _to_screen(box: QRectF, xs: np.ndarray, ys: np.ndarray, x_range, y_range) -> tuple[np.ndarray, np.ndarray]:
    px = box.left() + (xs - x_range[0]) / (x_range[1] - x_range[0]) * box.width()
    py = box.bottom() - (ys - y_range[0]) / (y_range[1] - y_range[0]) * box.height()
    return px, py


def _thin(n: int, most: int) -> np.ndarray:
    """Indices of at most ``most`` of ``n`` points, the last one included."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(int))


# ------------------------------------------------------------------------ drawing
def _frame(painter: QPainter, box: QRectF, title: str) -> None:
    painter.setPen(QPen(QColor(FRAME), 1))
    painter.drawRect(box)
    painter.setPen(QColor(FOREGROUND))
    painter.drawText(QRectF(box.left(), box.top() - MARGIN_TOP, box.width(), MARGIN_TOP),
                     Qt.AlignmentFlag.AlignCenter, title)


def _polyline(painter: QPainter, box: QRectF, steps, values, x_range, y_range, color: str, markers: bool) -> None:
    keep = _thin(len(steps), max(2, 2 * int(box.width())))
    px, py = _to_screen(box, steps[keep].astype(float), values[keep], x_range, y_range)
    painter.setPen(QPen(QColor(color), 1.2))
    run: list[QPointF] = []
    for x, y in zip(px, py):       # NaN (non-finite losses) breaks the line
        if math.isnan(y):
            _draw_run(painter, run)
            run = []
        else:
            run.append(QPointF(float(x), float(y)))
    _draw_run(painter, run)
    if markers:
        painter.setBrush(QColor(color))
        for x, y in zip(px, py):
            if not math.isnan(y):
                painter.drawEllipse(QPointF(float(x), float(y)), 2.0, 2.0)
        painter.setBrush(Qt.BrushStyle.NoBrush)


def _draw_run(painter: QPainter, points: list[QPointF]) -> None:
    if len(points) > 1:
        painter.drawPolyline(QPolygonF(points))
    elif points:
        painter.drawPoint(points[0])


def _number(value: float) -> str:
    return f"{value:.3g}"


def _y_ticks(painter: QPainter, box: QRectF, y_range, log: bool, left: bool, color: str) -> None:
    painter.setPen(QColor(color))
    for frac in (0.0, 0.5, 1.0):
        value = y_range[0] + frac * (y_range[1] - y_range[0])
        text = _number(10 ** value if log else value)
        y = box.bottom() - frac * box.height()
        if left:
            rect = QRectF(0, y - 7, box.left() - 4, 14)
            painter.drawText(rect, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, text)
        else:
            rect = QRectF(box.right() + 4, y - 7, MARGIN_RIGHT - 4, 14)
            painter.drawText(rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, text)


def _x_ticks(painter: QPainter, box: QRectF, x_range) -> None:
    painter.setPen(QColor(MUTED))
    for frac, align in ((0.0, Qt.AlignmentFlag.AlignLeft), (1.0, Qt.AlignmentFlag.AlignRight)):
        value = x_range[0] + frac * (x_range[1] - x_range[0])
        text = f"step {value:.0f}" if frac else f"{value:.0f}"
        x = box.left() + frac * box.width()
        rect = QRectF(x - 60 if frac else x, box.bottom() + 1, 60, MARGIN_BOTTOM - 2)
        painter.drawText(rect, align | Qt.AlignmentFlag.AlignVCenter, text)


def _legend(painter: QPainter, box: QRectF, entries: list[tuple[str, str]]) -> None:
    y = box.top() + 10
    for name, color in entries:
        painter.setPen(QPen(QColor(color), 2))
        painter.drawLine(QPointF(box.right() - 70, y), QPointF(box.right() - 56, y))
        painter.setPen(QColor(FOREGROUND))
        painter.drawText(QRectF(box.right() - 52, y - 7, 50, 14),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
        y += 12
