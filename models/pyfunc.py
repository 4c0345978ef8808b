"""The bundle as an MLflow pyfunc model, so the registry can store, load and serve it."""

from __future__ import annotations

import joblib
import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema

from features.validation import ClaimValidationError
from models.bundle import SCORE_COLUMNS, TriageBundle

BUNDLE_ARTIFACT = "bundle"
_MLFLOW_TYPES = {"string": "string", "date": "string", "datetime": "string", "number": "double",
                 "integer": "double", "boolean": "boolean"}


class ClaimTriageModel(mlflow.pyfunc.PythonModel):
    """predict(canonical claims) -> scores and decision; the batch is its own history."""

    def load_context(self, context):
        self.bundle: TriageBundle = joblib.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        report = self.bundle.validate(frame)
        if not report.ok:
            raise ClaimValidationError(report)
        return self.bundle.score(report.claims)


def signature(bundle: TriageBundle) -> ModelSignature:
    """Input: the canonical fields the model was trained with (dates as ISO text); output: scores."""
    inputs = Schema([ColSpec(_MLFLOW_TYPES[f.kind], f.name, required=f.required) for f in bundle.claim_fields])
    outputs = Schema([ColSpec("string" if c in ("claim_id", "decision", "rule_hits") else "double", c)
                      for c in SCORE_COLUMNS])
    return ModelSignature(inputs=inputs, outputs=outputs)


def load_bundle(model_uri: str) -> TriageBundle:
    """The bundle inside a registered model, e.g. models:/claim-triage@champion."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().bundle


def wire_format(claims: pd.DataFrame, bundle: TriageBundle | None = None, fields=None) -> pd.DataFrame:
    """Typed canonical claims as the pyfunc's signature takes them: ISO text dates, float numbers.
    The fields are the bundle's, or `fields` (the whole schema, for a client without a model)."""
    fields = bundle.claim_fields if bundle is not None else fields
    out = claims[[f.name for f in fields if f.name in claims.columns]].copy()
    for f in fields:
        if f.name not in out.columns:
            continue
        if f.kind == "date":
            out[f.name] = out[f.name].dt.strftime("%Y-%m-%d")
        elif f.kind == "datetime":
            out[f.name] = out[f.name].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif f.kind in ("integer", "number"):
            out[f.name] = out[f.name].astype("float64")
        elif f.kind == "boolean":
            out[f.name] = out[f.name].astype(object).where(out[f.name].notna(), None)
    return out
