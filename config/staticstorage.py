"""whitenoise's compressed manifest storage, each static URL computed once per process.

The manifest is read when the process starts and does not change while it runs (a deploy
starts new processes), so a name's URL is the same every time. The dashboard asks for nine
static URLs per view; computing them (name cleaning, manifest lookup, URL quoting) each time
was a measurable share of the view's CPU (docs/benchmarks.md#figures-the-code-cites)."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class ManifestStaticStorage(CompressedManifestStaticFilesStorage):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._urls: dict[str, str] = {}

    def url(self, name, force=False):
        if force:
            return super().url(name, force)
        try:
            return self._urls[name]
        except KeyError:
            pass
        url = super().url(name)  # a name missing from the manifest raises, and is not kept
        if len(self._urls) < 4096:
            self._urls[name] = url
        return url
