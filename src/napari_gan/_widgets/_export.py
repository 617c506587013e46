"""The "Export to BioImage Model Zoo" section of Generate Data: the fields of
``napari-gan export``, run in a worker, ending in a notification with the package's path.
The settings a family adds to applying its models (CycleGAN's direction) are fields here too,
built from their declarations, as the command line's options are."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from magicgui.widgets import CheckBox, Container, FileEdit, Label, LineEdit, PushButton

from ._common import InputError, notify_error, notify_info, user_message
from ._fields import Field, make_field
from ._workers import Failure, start_job


class ExportPanel(Container):
    """Fields and a button; ``model_path()`` gives the model chosen in Generate Data."""

    def __init__(self, model_path: Callable[[], Path]):
        from ..core.export import DEFAULT_LICENSE

        self._model_path = model_path
        self.toggle = CheckBox(text="Export to BioImage Model Zoo", value=False)
        self.output = FileEdit(label="Package", mode="w", filter="bioimage.io package (*.zip)",
                               tooltip="The .zip to write (a bioimage.io model package, spec 0.5)")
        self.package_name = LineEdit(label="Name", tooltip="A short name for the model")
        self.package_description = LineEdit(label="Description", tooltip="What the model does, on which images")
        self.authors = LineEdit(label="Authors", tooltip="Names separated by ';'")
        self.license = LineEdit(label="Licence", value=DEFAULT_LICENSE, tooltip="An SPDX identifier")
        self.cite = LineEdit(label="Cite", tooltip="DOIs or web addresses separated by ';' (optional)")
        self.test_input = FileEdit(label="Test input", mode="r", filter="TIFF (*.tif *.tiff)",
                                   tooltip="Optional TIFF; default: a synthetic image in the input's range")
        # the chosen model's family's own apply settings (e.g. direction), by family name
        self.option_fields: dict[str, list[Field]] = {}
        self.family_name: str | None = None
        self.option_box = Container(widgets=[])
        self.option_box.margins = (0, 0, 0, 0)
        self.button = PushButton(text="Export")
        self.message = Label(value="")
        self.fields = Container(widgets=[self.output, self.option_box, self.package_name, self.package_description,
                                         self.authors, self.license, self.cite, self.test_input, self.button,
                                         self.message],
                                visible=False)
        super().__init__(labels=False, widgets=[self.toggle, self.fields])
        self.margins = (0, 0, 0, 0)
        self.message.native.setWordWrap(True)
        self.toggle.changed.connect(self._on_show)
        self.button.changed.connect(self.export)
        self.running = False
        self.last_package: Path | None = None
        self._defaults: tuple[str, str] = ("", "")   # the name and description filled in last

    def _on_show(self, shown: bool) -> None:
        self.fields.visible = bool(shown)
        if shown and not self.package_name.value:
            self.fill_defaults()

    def show_family(self, family) -> None:
        """Show the fields of the settings ``family`` adds to applying its models (none for
        None): they choose what is exported."""
        from ..core.families import own_apply_settings

        name = family.name if family is not None else None
        if name is not None and name not in self.option_fields:
            fields = [f for f in (make_field(d) for d in own_apply_settings(family)) if f is not None]
            for f in fields:
                f.widget.changed.connect(self._refill_defaults)
                self.option_box.append(f.widget)
            self.option_fields[name] = fields
        for family_name, fields in self.option_fields.items():
            for f in fields:
                f.widget.visible = family_name == name
        self.family_name = name
        self._refill_defaults()

    def option_values(self) -> dict:
        """The values of the shown family settings (e.g. ``{"direction": "b2a"}``)."""
        return {f.name: f.get() for f in self.option_fields.get(self.family_name, [])}

    def _refill_defaults(self, *_args) -> None:
        """A name and description still at their defaults follow the chosen model and options."""
        if self.toggle.value and (self.package_name.value, self.package_description.value) == self._defaults:
            self.package_name.value = self.package_description.value = ""
            self.fill_defaults()

    def fill_defaults(self) -> None:
        """The model's default name and description (from its header) where the fields are empty."""
        from ..core.export import default_texts

        try:
            name, description = default_texts(self._model_path(), self.option_values())
        except Exception:  # noqa: BLE001 - no model chosen yet: the fields stay empty
            self._defaults = ("", "")
            return
        self.package_name.value = self.package_name.value or name
        self.package_description.value = self.package_description.value or description
        self._defaults = (name, description)

    @staticmethod
    def _text(value) -> str:
        text = str(value).strip()
        return "" if text in ("", ".") else text

    def request(self) -> dict:
        """The checked fields, as export_bioimageio's arguments (cheap checks only)."""
        output = self._text(self.output.value)
        if not output:
            raise InputError("Choose the .zip file to write in 'Package'.")
        cite = [c.strip() for c in self.cite.value.split(";") if c.strip()]
        test_input = self._text(self.test_input.value) or None
        return dict(model_path=self._model_path(), output_zip=Path(output).expanduser(),
                    name=self.package_name.value, description=self.package_description.value,
                    authors=self.authors.value,
                    license=self.license.value.strip(), cite=cite, test_input=test_input,
                    options=self.option_values())

    def export(self, *_args) -> bool:
        if self.running:
            return False
        try:
            request = self.request()
        except Exception as exc:  # noqa: BLE001 - every problem becomes a notification
            notify_error(user_message(exc, "Cannot export"))
            return False
        self.running = True
        self.button.enabled = False
        self.message.value = "Exporting ..."
        start_job(_export_job, request, on_yield=self._on_message, on_finish=self._on_finish)
        return True

    def _on_message(self, message) -> None:
        if isinstance(message, str):
            self.message.value = message

    def _on_finish(self, result) -> None:
        self.running = False
        self.button.enabled = True
        if isinstance(result, Failure):
            message = user_message(result.error, "Export failed")
            self.message.value = message
            notify_error(message)
            return
        self.last_package = result
        self.message.value = f"Wrote {result}"
        notify_info(f"Exported the model to the bioimage.io package '{result}'.")


def _export_job(request: dict):
    """The worker: write the package (every check and the model file are read here)."""
    from ..core.export import export_bioimageio

    yield "Exporting ..."
    return export_bioimageio(**request)
