"""The registered version a bulk run applies, resolved once on the driver."""

from __future__ import annotations

from models.config import Config
from models.pyfunc import load_bundle
from models.bundle import TriageBundle


def load_model(config: Config, uri: str | None = None) -> tuple[TriageBundle, dict]:
    """The bundle behind `uri` (default the configured champion alias) and what names it: the URI
    asked for, the registered name and version. A missing model is a clear error, before any work."""
    from serving.loading import open_version

    _, uri, version = open_version(config, uri)
    bundle = load_bundle(f"models:/{version.name}/{version.version}")
    return bundle, {"model_uri": uri, "model_name": version.name, "model_version": str(version.version)}
