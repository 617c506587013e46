"""A live plot of training losses and validation metrics (matplotlib in Qt)."""

from __future__ import annotations

from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

BACKGROUND = "#262930"   # napari's dark theme
FOREGROUND = "#f0f1f2"
COLORS = ["#4fc3f7", "#ffb74d", "#e57373", "#81c784", "#ba68c8", "#fff176"]


class TrainingPlot(QWidget):
    """Two panels: losses per step (log scale) and validation metrics per step.

    The first metric is drawn on the left axis, a second one (e.g. SSIM next to PSNR) on
    a right axis, because their ranges differ.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4.0, 3.6), facecolor=BACKGROUND, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(260)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.ax_loss, self.ax_metric = self.figure.subplots(2, 1, sharex=True)
        self.ax_metric2 = self.ax_metric.twinx()
        self.losses: dict[str, tuple[list[int], list[float]]] = {}
        self.metrics: dict[str, tuple[list[int], list[float]]] = {}
        self.dirty = False
        self.reset()

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

    # -------------------------------------------------------------------- drawing
    def _style(self, ax, title: str | None = None) -> None:
        ax.set_facecolor(BACKGROUND)
        ax.tick_params(colors=FOREGROUND, labelsize=7)
        for spine in ax.spines.values():
            spine.set_color("#5a626c")
        if title:
            ax.set_title(title, color=FOREGROUND, fontsize=8)

    def _redraw(self) -> None:
        self.dirty = False
        for ax in (self.ax_loss, self.ax_metric, self.ax_metric2):
            ax.clear()
        self._style(self.ax_loss, "training losses")
        self._style(self.ax_metric, "validation")
        self._style(self.ax_metric2)
        self.ax_metric.set_xlabel("step", color=FOREGROUND, fontsize=7)
        positive = True
        for i, (name, (steps, ys)) in enumerate(self.losses.items()):
            self.ax_loss.plot(steps, ys, color=COLORS[i % len(COLORS)], lw=1, label=name)
            positive &= all(y > 0 for y in ys)
        if self.losses:
            if positive:
                self.ax_loss.set_yscale("log")
            self.ax_loss.legend(fontsize=6, loc="upper right", facecolor=BACKGROUND,
                                labelcolor=FOREGROUND, edgecolor="#5a626c")
        names = list(self.metrics)
        handles = []
        for i, name in enumerate(names[:2]):
            ax = self.ax_metric if i == 0 else self.ax_metric2
            steps, ys = self.metrics[name]
            (line,) = ax.plot(steps, ys, "o-", ms=3, lw=1, color=COLORS[(i + 2) % len(COLORS)], label=name)
            ax.set_ylabel(name, color=COLORS[(i + 2) % len(COLORS)], fontsize=7)
            handles.append(line)
        self.ax_metric2.set_visible(len(names) > 1)
        if not names:
            self.ax_metric.text(0.5, 0.5, "metrics appear after the first validation", ha="center",
                                va="center", color="#8a929c", fontsize=7, transform=self.ax_metric.transAxes)
        self.canvas.draw_idle()
