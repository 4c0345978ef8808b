"""Start-up: the registered model, its explainer and the claim store, seeded with its training claims."""

from __future__ import annotations

import gc
import logging
import tempfile

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from models.config import Config, load_config
from models.pyfunc import load_bundle
from serving.schemas import EXAMPLE_CLAIM
from serving.live_metrics import LiveMetrics
from serving.scoring import Scorer
from serving.shadow import Challenger, Shadow, shadow_table
from serving.store import ClaimStore

log = logging.getLogger("claimtriage.serving")
EVALUATION_ARTIFACT = "evaluation/claims.parquet"


def model_uri_for(config: Config, uri: str | None = None) -> str:
    return uri or f"models:/{config.registry.model_name}@{config.serving.model_alias}"


def resolve_version(client: MlflowClient, config: Config, uri: str):
    """The registry's model version behind a models:/name@alias or models:/name/version URI."""
    ref = uri.removeprefix("models:/")
    name, _, rest = ref.partition("@") if "@" in ref else ref.partition("/")
    if "@" in ref:
        return client.get_model_version_by_alias(name, rest)
    return client.get_model_version(name, rest)


class StartupError(RuntimeError):
    """The service cannot start with this model and store; the message says why, on one line."""


def open_version(config: Config, uri: str | None = None) -> tuple[MlflowClient, str, object]:
    """The registry client, the model URI asked for and the model version behind it."""
    mlflow.set_tracking_uri(config.tracking_uri)
    mlflow.set_registry_uri(config.tracking_uri)
    client = MlflowClient()
    uri = model_uri_for(config, uri)
    try:
        return client, uri, resolve_version(client, config, uri)
    except MlflowException as err:
        raise StartupError(f"no model version at {uri} in the registry at {config.tracking_uri}: "
                           f"{_first_line(err)}") from None


def open_store(config: Config, client: MlflowClient, version, **options) -> ClaimStore:
    """The claim store, holding the version's training claims: a version trained on another extract
    than the store's first brings its own history (claims already stored are kept as they are)."""
    try:
        store = ClaimStore(config.database_url, **options)
        seeded = store.seed(_training_claims(client, version.run_id), origin="training")
        if seeded:
            log.info("claim store %s seeded with %d training claims", config.database_url, seeded)
    except Exception as err:  # noqa: BLE001 - any failure here stops the start, said on one line
        raise StartupError(f"cannot prepare the claim store {config.database_url} for "
                           f"{version.name} version {version.version}: {_first_line(err)}") from err
    return store


def check_startup(config: Config, uri: str | None = None) -> str:
    """What the service does before it can answer, done once by the command line so that a service
    that cannot start says why and exits, instead of a server restarting its worker for ever."""
    client, uri, version = open_version(config, uri)
    try:
        load_bundle(f"models:/{version.name}/{version.version}")
    except Exception as err:  # noqa: BLE001
        raise StartupError(f"cannot load {uri} (version {version.version}): {_first_line(err)}") from err
    open_store(config, client, version).engine.dispose()
    return f"{version.name} version {version.version}"


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def load_scorer(uri: str | None = None, config: Config | None = None,
                metrics: LiveMetrics | None = None) -> tuple[Scorer, dict]:
    """Everything the service needs, loaded once per process: the champion (or the version `uri`
    names), the claim store, and the challenger to score in its shadow if the registry has one.
    `metrics`, where given, count the decisions and the shadow's."""
    config = config or load_config()
    client, uri, version = open_version(config, uri)
    bundle = load_bundle(f"models:/{version.name}/{version.version}")
    store = open_store(config, client, version, background_checkpoints=True)
    store.history_index()  # built now, not on the first claim
    scorer = Scorer(bundle, str(version.version), store, config.deadlines,
                    max_batch=config.serving.max_batch_claims, max_group=config.serving.max_group_claims,
                    shap_engine=config.serving.shap_engine, max_errors_listed=config.security.max_errors_listed)
    shadow = open_shadow(config, client, version, store, metrics)
    if shadow is not None:
        scorer.add_shadow(shadow)
    if metrics is not None:
        scorer.on_decided = metrics.decided
    run = client.get_run(version.run_id)
    info = {
        "model_uri": uri, "name": version.name, "version": str(version.version), "run_id": version.run_id,
        "trained_at": bundle.metadata.get("trained_at"), "source": bundle.metadata.get("source"),
        "metrics": run.data.metrics, "policy": bundle.policy.describe(),
        "features": bundle.builder.feature_names_, "claim_fields": [f.name for f in bundle.claim_fields],
        "deadlines_hours": {"respond": config.deadlines.respond_hours, "resolve": config.deadlines.resolve_hours},
        "max_batch_claims": scorer.max_batch, "max_group_claims": scorer.max_group,
        "shap_engine": scorer.explainer.engine,
        "record_shapes": scorer.shapes.describe(_canonical_example(scorer)),
        "challenger": None if shadow is None else shadow.describe(),
    }
    # Everything loaded so far lives as long as the process: keep it out of the garbage
    # collector's full passes, which otherwise walk it and stall a request now and then.
    gc.collect()
    gc.freeze()
    return scorer, info


def challenger_version(config: Config, client: MlflowClient, served):
    """The version the challenger alias names, or None: no such alias, or it names the served version."""
    name, alias = served.name, config.registry.challenger_alias
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return None if str(version.version) == str(served.version) else version


def open_shadow(config: Config, client: MlflowClient, served, store: ClaimStore,
                metrics: LiveMetrics | None = None) -> Shadow | None:
    """The challenger scoring in the served version's shadow, or None where there is none. Its
    table is made in any case, so that `claimtriage compare` finds it. A challenger that cannot be
    loaded is logged and left out: the champion serves regardless."""
    table = shadow_table(store.metadata)
    table.create(store.engine, checkfirst=True)
    version = challenger_version(config, client, served)
    if version is None:
        return None
    try:
        bundle = load_bundle(f"models:/{version.name}/{version.version}")
    except Exception as err:  # noqa: BLE001
        log.error("challenger %s version %s cannot be loaded, no shadow: %s", version.name, version.version,
                  _first_line(err))
        return None
    log.info("challenger %s version %s scores in the shadow of version %s", version.name, version.version,
             served.version)
    return Shadow(Challenger(bundle, str(version.version)), store.engine, table,
                  max_queue=config.serving.shadow_queue_claims, max_batch=config.serving.shadow_batch_claims,
                  on_scored=None if metrics is None else metrics.shadow_scored,
                  on_skipped=None if metrics is None else metrics.shadow_skipped.inc)


def _canonical_example(scorer: Scorer) -> dict:
    """A canonical record this version takes: the extract's example through its mapping, or the
    documented example claim with only the fields this version has."""
    shapes = scorer.shapes
    if shapes.mapping is not None and shapes.carried.get("example"):
        claim, errors, _ = shapes.to_canonical(shapes.carried["example"][:1])[0]
        if not errors:
            return claim
    return {name: value for name, value in EXAMPLE_CLAIM.items() if name in shapes.canonical_keys}


def _training_claims(client: MlflowClient, run_id: str) -> pd.DataFrame:
    """The claims the model was trained and tested on: the history new claims are scored against."""
    with tempfile.TemporaryDirectory() as tmp:
        claims = pd.read_parquet(client.download_artifacts(run_id, EVALUATION_ARTIFACT, tmp))
    return claims
