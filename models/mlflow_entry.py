"""MLflow "models from code" entry point: MLflow runs this file to build the pyfunc model."""

import mlflow

from models.pyfunc import ClaimTriageModel

mlflow.models.set_model(ClaimTriageModel())
